//! `cairn import`: JSON Lines (as written by `export`) from stdin into the
//! store, in atomic batches.

use std::io::{self, BufRead};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cairn::{Batch, Db};
use serde_json::Value;

use crate::common::{finish, now_ms, open_write, progress};

/// Lines per atomic batch.
const BATCH: usize = 1000;

/// One parsed import line: key, value, absolute expiry.
type Line = (Vec<u8>, Vec<u8>, Option<u64>);

/// Imports stdin into the store at `dir` (created if missing).
pub fn import(dir: &Path) -> Result<u8> {
    let db = open_write(dir, true)?;
    import_lines(&db)?;
    db.close()?;
    Ok(0)
}

/// A byte string from field `name`, or base64 from `name_b64`.
fn field(o: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>> {
    if let Some(v) = o.get(name) {
        return v
            .as_str()
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| anyhow!("\"{name}\" must be a string"));
    }
    let b64 = format!("{name}_b64");
    match o.get(&b64) {
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| anyhow!("\"{b64}\" must be a string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| anyhow!("\"{b64}\" is not valid base64: {e}"))
        }
        None => bail!("missing \"{name}\" (or \"{b64}\")"),
    }
}

/// One line of an export: key, value and absolute expiry.
fn parse_line(line: &str) -> Result<Line> {
    let v: Value = serde_json::from_str(line).map_err(|e| anyhow!("not JSON: {e}"))?;
    let o = v.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let exp = match o.get("expires_at_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| anyhow!("\"expires_at_ms\" must be a whole number or null"))?,
        ),
    };
    Ok((field(o, "key")?, field(o, "value")?, exp))
}

/// Reads stdin line by line into batches of [`BATCH`]; stops at the first
/// malformed line, keeping everything before it.
fn import_lines(db: &Db) -> Result<()> {
    let pb = progress("importing");
    let stdin = io::stdin();
    let mut batch = Batch::new();
    let (mut imported, mut expired) = (0u64, 0u64);
    let flush = |batch: &mut Batch, imported: &mut u64| -> Result<()> {
        let n = batch.len() as u64;
        if n > 0 {
            db.write_batch(std::mem::take(batch))?;
            *imported += n;
        }
        Ok(())
    };
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let (k, v, exp) = match parse_line(&line) {
            Ok(l) => l,
            Err(e) => {
                flush(&mut batch, &mut imported)?;
                finish(pb);
                bail!(
                    "line {}: {e}; stopped there ({imported} records before it were imported)",
                    i + 1
                );
            }
        };
        match exp {
            Some(at) => {
                let now = now_ms();
                if at <= now {
                    expired += 1;
                    continue;
                }
                batch.push_put(k, v, Some(Duration::from_millis(at - now)));
            }
            None => batch.push_put(k, v, None),
        }
        if batch.len() >= BATCH {
            flush(&mut batch, &mut imported)?;
            if let Some(pb) = &pb {
                pb.set_message(format!("imported {imported} records"));
            }
        }
    }
    flush(&mut batch, &mut imported)?;
    finish(pb);
    eprintln!("imported {imported} records ({expired} already expired, skipped)");
    Ok(())
}
