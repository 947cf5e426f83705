//! `cairn compact`: rewrite the store without its dead records.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::common::{finish, open_write, progress};

/// Compacts the store and prints what compaction did.
///
/// Compaction never rewrites the active segment, so on its own it would
/// leave the dead records of a small store (one segment) where they are. An
/// explicit `compact` rewrites everything, as Redis's `BGREWRITEAOF` does:
/// when the active segment holds dead records, it is sealed first (as when
/// it fills up) and compacted with the others.
pub fn compact(dir: &Path, out: &mut impl Write) -> Result<u8> {
    let db = open_write(dir, false)?;
    let pb = progress("compacting");
    db.sweep_expired();
    let active_dead = db
        .segment_stats()
        .iter()
        .any(|s| s.active && s.dead_bytes > 0);
    let sealed = active_dead && db.seal_active_segment()?;
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
