//! `cairn compact`: rewrite the store without its dead records.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use cairn::{Db, RecordKind, SegmentEntry};

use crate::common::{finish, open_write, progress};

/// Compacts the store and prints what compaction did.
///
/// Compaction never rewrites the active segment, so on its own it would
/// leave the dead records of a small store (one segment) where they are. An
/// explicit `compact` rewrites everything, as Redis's `BGREWRITEAOF` does:
/// when the active segment holds dead records, it is sealed first (as when
/// it fills up) and compacted with the others. Sync marks count as dead
/// bytes too, but alone they are no reason to seal.
pub fn compact(dir: &Path, out: &mut impl Write) -> Result<u8> {
    let db = open_write(dir, false)?;
    let pb = progress("compacting");
    db.sweep_expired();
    let sealed = active_holds_dead_records(&db)? && db.seal_active_segment()?;
    let s = db.compact()?;
    finish(pb);
    db.close()?;
    if s.segments_in == 0 {
        writeln!(out, "nothing to compact: no segment holds dead records")?;
        return Ok(0);
    }
    writeln!(
        out,
        "compacted {} segments ({} bytes{}) into {} ({} bytes) in {:?}; dropped {} overwritten, {} deleted, {} expired records",
        s.segments_in,
        s.bytes_in,
        if sealed {
            ", the active segment sealed first"
        } else {
            ""
        },
        s.segments_out,
        s.bytes_out,
        s.duration,
        s.dropped_overwritten,
        s.dropped_deleted,
        s.dropped_expired
    )?;
    Ok(0)
}

/// Whether the active segment's dead bytes are more than its sync marks
/// (which count as dead too): whether it holds overwritten, deleted or
/// expired records.
fn active_holds_dead_records(db: &Db) -> Result<bool> {
    let Some(active) = db.segment_stats().into_iter().find(|s| s.active) else {
        return Ok(false);
    };
    if active.dead_bytes == 0 {
        return Ok(false);
    }
    let Some(entries) = db.read_segment(active.id) else {
        return Ok(false);
    };
    let mark_bytes: u64 = entries?
        .iter()
        .filter_map(|e| match e {
            SegmentEntry::Record {
                kind: RecordKind::SyncMark,
                len,
                ..
            } => Some(*len),
            _ => None,
        })
        .sum();
    Ok(active.dead_bytes > mark_bytes)
}
