//! `cairn export`: every live key as JSON Lines, or as Redis commands in
//! RESP for `redis-cli --pipe`, on stdout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use cairn::Db;
use serde_json::{json, Value};

use crate::args::ExportFormat;
use crate::common::{
    bytes_field, check_keyspace, expires_at, finish, flat_keyspace, numbered_database, open_read,
    progress, unmapped_keyspaces,
};

/// Writes the store at `dir` to `out` in `format`: the keys under
/// `prefix`; `keyspace_db` maps keyspaces to Redis databases (`None`:
/// leave the keyspace out) for [`ExportFormat::Resp`].
pub fn export(
    dir: &Path,
    prefix: &str,
    format: ExportFormat,
    keyspace_db: &[(String, Option<u32>)],
    out: &mut impl Write,
) -> Result<u8> {
    match format {
        ExportFormat::Jsonl => {
            if !keyspace_db.is_empty() {
                bail!(
                    "--keyspace-db is for --format resp: JSON Lines hold the root store's keys only"
                );
            }
            export_jsonl(dir, prefix, out)
        }
        ExportFormat::Resp => export_resp(dir, prefix, keyspace_db, out),
    }
}

/// Writes one `{"key", "value", "expires_at_ms"}` object per live key under
/// `prefix`; says how many on stderr.
fn export_jsonl(dir: &Path, prefix: &str, out: &mut impl Write) -> Result<u8> {
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

/// One store of the export and the Redis database its keys go to.
struct Source {
    /// "the root store" or "keyspace \"name\"", for messages.
    label: String,
    db: Db,
    number: u32,
    /// Its live keys under the prefix, sorted.
    keys: Vec<Vec<u8>>,
}

/// Writes the root store and its keyspaces as `SELECT` and `SET` commands.
fn export_resp(
    dir: &Path,
    prefix: &str,
    keyspace_db: &[(String, Option<u32>)],
    out: &mut impl Write,
) -> Result<u8> {
    let root = open_read(dir)?;
    let mut sources = plan(&root, keyspace_db)?;
    for s in &mut sources {
        s.db.for_each_key(prefix, |k, _| s.keys.push(k.to_vec()))?;
        s.keys.sort_unstable();
    }
    sources.retain(|s| !s.keys.is_empty());
    check_shared_databases(&sources)?;
    let pb = progress("exporting");
    let (mut total, mut gone) = (0u64, 0u64);
    let mut lines = Vec::new();
    for s in &sources {
        resp_command(out, &[b"SELECT", s.number.to_string().as_bytes()])?;
        let mut n = 0u64;
        for k in &s.keys {
            // Value and expiry of one write, read together; a key that
            // expired or was deleted since the key walk is left out.
            match s.db.get_with_expiry(k)? {
                None => {
                    gone += 1;
                    continue;
                }
                Some((v, None)) => resp_command(out, &[b"SET", k, &v])?,
                Some((v, Some(at))) => {
                    resp_command(out, &[b"SET", k, &v, b"PXAT", at.to_string().as_bytes()])?
                }
            }
            n += 1;
            if let Some(pb) = pb.as_ref().filter(|_| n.is_multiple_of(1000)) {
                pb.set_message(format!("exported {} keys", total + n));
            }
        }
        total += n;
        lines.push(format!("  {} -> database {}: {n} keys", s.label, s.number));
    }
    finish(pb);
    eprintln!("exported {total} keys as Redis commands");
    for l in lines {
        eprintln!("{l}");
    }
    if gone > 0 {
        eprintln!("  ({gone} keys expired or were deleted during the export: left out)");
    }
    Ok(0)
}

/// The stores to export and their databases: the root store to 0, each
/// keyspace to its `--keyspace-db` entry, else to the number that is its
/// name. Fails naming every keyspace that has no database, a
/// `--keyspace-db` entry for a keyspace that does not exist, and a
/// keyspace that has keyspaces of its own.
fn plan(root: &Db, keyspace_db: &[(String, Option<u32>)]) -> Result<Vec<Source>> {
    let names = root.keyspace_names()?;
    let mut map = BTreeMap::new();
    for (name, db) in keyspace_db {
        check_keyspace(root, &names, name, "--keyspace-db")?;
        if map.insert(name.clone(), *db).is_some() {
            bail!("--keyspace-db names keyspace {name:?} twice");
        }
    }
    let mut sources = vec![Source {
        label: "the root store".into(),
        db: root.clone(),
        number: 0,
        keys: Vec::new(),
    }];
    let mut unmapped = Vec::new();
    for name in &names {
        let number = match map.get(name) {
            Some(None) => continue,
            Some(Some(n)) => *n,
            None => match numbered_database(name) {
                Some(n) => n,
                None => {
                    unmapped.push(format!("{name:?}"));
                    continue;
                }
            },
        };
        let db = flat_keyspace(root, name, "export")?;
        sources.push(Source {
            label: format!("keyspace {name:?}"),
            db,
            number,
            keys: Vec::new(),
        });
    }
    if !unmapped.is_empty() {
        return Err(unmapped_keyspaces(&unmapped));
    }
    for s in &sources {
        if s.number > 15 {
            eprintln!(
                "note: {} goes to database {}: a Redis server has databases 0-15 unless its \
                 `databases` setting says more",
                s.label, s.number
            );
        }
    }
    Ok(sources)
}

/// Fails when two stores that both hold keys would go to one database.
fn check_shared_databases(sources: &[Source]) -> Result<()> {
    let mut by_db: BTreeMap<u32, &str> = BTreeMap::new();
    for s in sources {
        if let Some(other) = by_db.insert(s.number, &s.label) {
            bail!(
                "{other} and {} would both go to Redis database {}, mixing their keys; give one \
                 of them another database with --keyspace-db NAME=N",
                s.label,
                s.number
            );
        }
    }
    Ok(())
}

/// One command as a RESP array of bulk strings (binary safe).
fn resp_command(out: &mut impl Write, args: &[&[u8]]) -> std::io::Result<()> {
    write!(out, "*{}\r\n", args.len())?;
    for a in args {
        write!(out, "${}\r\n", a.len())?;
        out.write_all(a)?;
        out.write_all(b"\r\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resp_command;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        resp_command(&mut out, &[b"SET", b"k\r\n", b""]).expect("write");
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$0\r\n\r\n");
    }
}
