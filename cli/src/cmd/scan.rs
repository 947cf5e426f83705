//! `cairn scan`: keys and values in key order under a prefix.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::common::{bytes_field, escape, open_read};

/// Prints up to `limit` keys under `prefix` with their values, tab
/// separated and escaped, or as one JSON object per line.
pub fn scan(
    dir: &Path,
    prefix: &str,
    limit: Option<usize>,
    json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    let db = open_read(dir)?;
    for (n, kv) in db.scan_prefix(prefix).enumerate() {
        if limit.is_some_and(|l| n >= l) {
            break;
        }
        let (k, v) = kv?;
        if json {
            let mut o = serde_json::Map::new();
            bytes_field(&mut o, "key", &k);
            bytes_field(&mut o, "value", &v);
            writeln!(out, "{}", Value::Object(o))?;
        } else {
            writeln!(out, "{}\t{}", escape(&k), escape(&v))?;
        }
    }
    Ok(0)
}
