//! Single-key commands: `get` and `ttl` (read-only), `set`, `del`, `incr`
//! and `expire` (which open the store for writing).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn::Ttl;
use serde_json::{json, Value};

use crate::common::{bytes_field, expires_at, not_found, open_read, open_write, out_is_terminal};

/// `cairn get`: the value, raw (or as JSON with its expiry).
pub fn get(dir: &Path, key: &str, json: bool, out: &mut impl Write) -> Result<u8> {
    let db = open_read(dir)?;
    let Some(v) = db.get(key)? else {
        return Ok(not_found(key));
    };
    if json {
        let mut o = serde_json::Map::new();
        bytes_field(&mut o, "key", key.as_bytes());
        bytes_field(&mut o, "value", &v);
        o.insert(
            "expires_at_ms".into(),
            json!(expires_at(&db, key.as_bytes())?),
        );
        writeln!(out, "{}", Value::Object(o))?;
    } else {
        out.write_all(&v)?;
        if out_is_terminal() && !v.ends_with(b"\n") {
            writeln!(out)?;
        }
    }
    Ok(0)
}

/// `cairn ttl`: the remaining time to live.
pub fn ttl(dir: &Path, key: &str, json: bool, out: &mut impl Write) -> Result<u8> {
    let db = open_read(dir)?;
    let ttl = db.ttl(key)?;
    if json {
        let (exists, ms) = match ttl {
            Ttl::Missing => (false, None),
            Ttl::Persistent => (true, None),
            Ttl::Expires(d) => (true, Some(d.as_millis() as u64)),
        };
        writeln!(
            out,
            "{}",
            json!({"key": key, "exists": exists, "ttl_ms": ms})
        )?;
    } else {
        match ttl {
            Ttl::Missing => {}
            Ttl::Persistent => writeln!(out, "no expiry")?,
            Ttl::Expires(d) => writeln!(out, "{} ms", d.as_millis())?,
        }
    }
    if ttl == Ttl::Missing {
        Ok(not_found(key))
    } else {
        Ok(0)
    }
}

/// `cairn set`: store a value, optionally with a TTL or only if absent.
pub fn set(
    dir: &Path,
    key: &str,
    value: &str,
    ttl: Option<Duration>,
    nx: bool,
    out: &mut impl Write,
) -> Result<u8> {
    let db = open_write(dir, true)?;
    if nx {
        let set = db.put_if_absent(key, value, ttl)?;
        writeln!(
            out,
            "{}",
            if set {
                "set"
            } else {
                "not set: the key exists"
            }
        )?;
    } else {
        match ttl {
            Some(t) => db.put_with_ttl(key, value, t)?,
            None => db.put(key, value)?,
        }
    }
    db.close()?;
    Ok(0)
}

/// `cairn del`: delete keys; prints how many existed.
pub fn del(dir: &Path, keys: &[String], out: &mut impl Write) -> Result<u8> {
    let db = open_write(dir, false)?;
    let mut n = 0;
    for k in keys {
        if db.delete(k)? {
            n += 1;
        }
    }
    db.close()?;
    writeln!(out, "{n}")?;
    Ok(0)
}

/// `cairn incr`: add to an integer value; prints the result.
pub fn incr(dir: &Path, key: &str, by: i64, out: &mut impl Write) -> Result<u8> {
    let db = open_write(dir, true)?;
    let v = db
        .incr(key, by)
        .with_context(|| format!("cannot increment key {key:?}"))?;
    db.close()?;
    writeln!(out, "{v}")?;
    Ok(0)
}

/// `cairn expire`: set a key's time to live.
pub fn expire(dir: &Path, key: &str, ttl: Duration) -> Result<u8> {
    let db = open_write(dir, false)?;
    let found = db.expire(key, ttl)?;
    db.close()?;
    if found {
        Ok(0)
    } else {
        Ok(not_found(key))
    }
}
