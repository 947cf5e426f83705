//! `cairn compact`: rewrite the sealed segments without their dead records.

use std::io::Write;
use std::path::Path;

use anyhow::Result;

use crate::common::{finish, open_write, progress};

/// Compacts the store and prints what compaction did.
pub fn compact(dir: &Path, out: &mut impl Write) -> Result<u8> {
    let db = open_write(dir, false)?;
    let pb = progress("compacting");
    let s = db.compact()?;
    finish(pb);
    db.close()?;
    writeln!(
        out,
        "compacted {} segments ({} bytes) into {} ({} bytes) in {:?}; dropped {} overwritten, {} deleted, {} expired records",
        s.segments_in,
        s.bytes_in,
        s.segments_out,
        s.bytes_out,
        s.duration,
        s.dropped_overwritten,
        s.dropped_deleted,
        s.dropped_expired
    )?;
    Ok(0)
}
