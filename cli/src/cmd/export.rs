//! `cairn export`: every live key as JSON Lines on stdout.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use serde_json::{json, Value};

use crate::common::{bytes_field, expires_at, finish, open_read, progress};

/// Writes one `{"key", "value", "expires_at_ms"}` object per live key under
/// `prefix`; says how many on stderr.
pub fn export(dir: &Path, prefix: &str, out: &mut impl Write) -> Result<u8> {
    let db = open_read(dir)?;
    let pb = progress("exporting");
    let mut n = 0u64;
    for kv in db.scan_prefix(prefix) {
        let (k, v) = kv?;
        let mut o = serde_json::Map::new();
        bytes_field(&mut o, "key", &k);
        bytes_field(&mut o, "value", &v);
        o.insert("expires_at_ms".into(), json!(expires_at(&db, &k)?));
        writeln!(out, "{}", Value::Object(o))?;
        n += 1;
        if let Some(pb) = &pb {
            pb.set_message(format!("exported {n} keys"));
        }
    }
    finish(pb);
    eprintln!("exported {n} keys");
    Ok(0)
}
