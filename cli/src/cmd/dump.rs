//! `cairn dump`: every record of the segments, one line each (or one JSON
//! object each), damaged ranges included; then those of each keyspace.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use cairn::SegmentEntry;
use serde_json::{json, Value};

use crate::common::{bytes_field, check_store, escape, store_dirs};

/// Which records `dump` prints, and how.
struct Shape {
    from_offset: u64,
    values: bool,
    json: bool,
    /// The keyspace being dumped (`None`: the default one).
    keyspace: Option<String>,
}

/// Prints the records of `segment` (or of every segment, then those of
/// every keyspace) at or after `from_offset`. With `segment`, only the
/// default keyspace's segment of that id (a keyspace's directory,
/// `<dir>/keyspaces/<name>`, can be dumped as a store of its own).
pub fn dump(
    dir: &Path,
    segment: Option<u32>,
    from_offset: u64,
    values: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<u8> {
    check_store(dir)?;
    let mut shape = Shape {
        from_offset,
        values,
        json,
        keyspace: None,
    };
    let stores = if segment.is_some() {
        vec![(None, dir.to_path_buf())]
    } else {
        store_dirs(dir)?
    };
    for (name, path) in stores {
        if let Some(n) = &name {
            if !json {
                writeln!(out, "keyspace {n} ({}):", path.display())?;
            }
        }
        shape.keyspace = name;
        dump_store(&path, segment, &shape, out)?;
    }
    Ok(0)
}

/// Prints the records of one store directory (the default keyspace or
/// another one).
fn dump_store(dir: &Path, segment: Option<u32>, shape: &Shape, out: &mut impl Write) -> Result<()> {
    // Every file held open first: a writer in another process may delete
    // segments (compaction) while they are printed.
    let files = cairn::SegmentFiles::open(dir)?;
    for id in chosen_segments(&files, dir, segment)? {
        let Some(entries) = files.read(id) else {
            continue;
        };
        for e in entries? {
            match &e {
                SegmentEntry::Record { offset, .. } if *offset >= shape.from_offset => {
                    write_record(id, &e, shape, out)?;
                }
                SegmentEntry::Damaged {
                    offset,
                    len,
                    reason,
                } if offset + len > shape.from_offset => {
                    write_damaged(id, *offset, *len, reason, shape, out)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// `segment` if the store has it, or every segment.
fn chosen_segments(
    files: &cairn::SegmentFiles,
    dir: &Path,
    segment: Option<u32>,
) -> Result<Vec<u32>> {
    let ids = files.ids();
    Ok(match segment {
        Some(s) if !ids.contains(&s) => bail!("no segment {s} in {}", dir.display()),
        Some(s) => vec![s],
        None => ids,
    })
}

/// One valid record of segment `id`.
fn write_record(id: u32, e: &SegmentEntry, shape: &Shape, out: &mut impl Write) -> Result<()> {
    let SegmentEntry::Record {
        offset,
        kind,
        seq,
        expires_at_ms,
        in_batch,
        expiry_only,
        expired,
        replaces,
        key,
        value,
        ..
    } = e
    else {
        return Ok(());
    };
    if shape.json {
        let mut o = serde_json::Map::new();
        if let Some(k) = &shape.keyspace {
            o.insert("keyspace".into(), json!(k));
        }
        o.insert("segment".into(), json!(id));
        o.insert("offset".into(), json!(offset));
        o.insert("kind".into(), json!(kind.name()));
        o.insert("seq".into(), json!(seq));
        bytes_field(&mut o, "key", key);
        o.insert("value_len".into(), json!(value.len()));
        o.insert(
            "expires_at_ms".into(),
            json!((*expires_at_ms != 0).then_some(expires_at_ms)),
        );
        o.insert("in_batch".into(), json!(in_batch));
        o.insert("expiry_only".into(), json!(expiry_only));
        o.insert("expired".into(), json!(expired));
        o.insert("replaces".into(), json!(replaces));
        o.insert("crc".into(), json!("ok"));
        if shape.values {
            bytes_field(&mut o, "value", value);
        }
        writeln!(out, "{}", Value::Object(o))?;
        return Ok(());
    }
    let exp = if *expires_at_ms == 0 {
        "-".to_string()
    } else {
        expires_at_ms.to_string()
    };
    write!(
        out,
        "{id:>6} {offset:>10}  {:<12} seq {seq:<8} exp {exp:<13} crc ok  {}{}{}{}{} ({} bytes)",
        kind.name(),
        escape(key),
        if *in_batch { " [batch]" } else { "" },
        if *expiry_only { " [expiry-only]" } else { "" },
        if *expired { " [expired]" } else { "" },
        if *replaces { " [replaces]" } else { "" },
        value.len()
    )?;
    if shape.values {
        write!(out, " = {}", escape(value))?;
    }
    writeln!(out)?;
    Ok(())
}

/// A damaged range of segment `id`.
fn write_damaged(
    id: u32,
    offset: u64,
    len: u64,
    reason: &str,
    shape: &Shape,
    out: &mut impl Write,
) -> Result<()> {
    if shape.json {
        let mut v = json!({"segment": id, "offset": offset, "kind": "damaged", "len": len, "crc": "bad", "reason": reason});
        if let (Some(k), Some(o)) = (&shape.keyspace, v.as_object_mut()) {
            o.insert("keyspace".into(), json!(k));
        }
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "{id:>6} {offset:>10}  DAMAGED      {len} bytes: {reason}"
        )?;
    }
    Ok(())
}
