//! The active segment after loading: cutting its torn tail, and sealing it
//! when a salvage open skipped damage in it or it is of an older format
//! version.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, Vfs};
use crate::util::rand::new_salt;

use super::segment_load::SegmentLoad;

/// What fixing up the active segment's tail left.
pub(crate) struct ActiveTail {
    /// How much of the active segment's file exists and is durable (see
    /// `Writer::allocated`).
    pub allocated: u64,
    /// A torn tail cut off (or, read-only, found): `(file, offset, bytes)`.
    pub truncated: Option<(PathBuf, u64, u64)>,
}

/// Fixes up the active segment: cuts a torn tail (or rewrites a torn
/// header) unless read-only, and keeps a zero-filled preallocated tail.
pub(crate) fn fix_active_tail(
    vfs: &dyn Vfs,
    dir: &Path,
    active: Option<&mut SegmentLoad>,
    read_only: bool,
) -> Result<ActiveTail> {
    let mut tail = ActiveTail {
        allocated: SEGMENT_HEADER_LEN,
        truncated: None,
    };
    let Some(last) = active else {
        return Ok(tail);
    };
    let path = names::segment_path(dir, last.id);
    if !read_only && holds_no_record_of_older_version(last) {
        upgrade_empty_header(vfs, &path, last)?;
        return Ok(tail);
    }
    tail.allocated = last.len.max(SEGMENT_HEADER_LEN);
    if let Some((cut_at, file_len)) = last.cut {
        if last.zero_tail && !last.needs_header {
            // Zeros preallocated ahead of the writes: keep them.
            tail.allocated = file_len;
        } else if !read_only {
            cut_torn_tail(vfs, &path, last, cut_at, file_len)?;
        }
        if !last.zero_tail || last.needs_header {
            tail.truncated = Some((path, cut_at, file_len - cut_at));
        }
    }
    Ok(tail)
}

/// Whether the active segment is of an older format version and holds no
/// record (only its header, perhaps zeros after it): its header can be
/// rewritten at the current version instead of sealing an empty segment.
fn holds_no_record_of_older_version(last: &SegmentLoad) -> bool {
    last.version != 0
        && last.version < segment::FORMAT_VERSION
        && !last.needs_header
        && last.skipped.is_empty()
        && last.len <= SEGMENT_HEADER_LEN
        && last.max_seq == 0
}

/// Rewrites the header of an active segment of an older version that holds
/// no record at the current version (with a new salt), dropping any zeros
/// after it. Nothing in it was ever acknowledged, so a crash here is
/// harmless: an empty file or a torn header followed by zeros is a segment
/// being created, which the next open rewrites the same way.
fn upgrade_empty_header(vfs: &dyn Vfs, path: &Path, last: &mut SegmentLoad) -> Result<()> {
    let f = vfs.open(path, OpenMode::ReadWrite)?;
    f.set_len(0)?;
    last.salt = new_salt(last.id);
    fs::write_all_at(&*f, &segment::encode_header(last.id, last.salt), 0)?;
    f.sync_all()?;
    last.len = SEGMENT_HEADER_LEN;
    last.cut = None;
    last.zero_tail = false;
    last.closed_clean = false;
    log::info!(
        "{}: rewrote the header of this empty segment at format version {}",
        path.display(),
        segment::FORMAT_VERSION
    );
    last.version = segment::FORMAT_VERSION;
    Ok(())
}

/// Cuts the active segment's file at `cut_at`, or rewrites its header
/// (with a new salt) when the segment was being created; then fsyncs it.
fn cut_torn_tail(
    vfs: &dyn Vfs,
    path: &Path,
    last: &mut SegmentLoad,
    cut_at: u64,
    file_len: u64,
) -> Result<()> {
    let f = vfs.open(path, OpenMode::ReadWrite)?;
    if last.needs_header {
        f.set_len(0)?;
        last.salt = new_salt(last.id);
        fs::write_all_at(&*f, &segment::encode_header(last.id, last.salt), 0)?;
        last.len = SEGMENT_HEADER_LEN;
    } else {
        f.set_len(cut_at)?;
    }
    f.sync_all()?;
    log::warn!(
        "cut a torn tail of {} bytes off {} at offset {cut_at}",
        file_len - cut_at,
        path.display()
    );
    Ok(())
}

/// Why a read-write open does not go on writing in the active segment it
/// recovered, if it does not.
fn reason_to_seal(last: &SegmentLoad) -> Option<&'static str> {
    if !last.skipped.is_empty() {
        // Appending after damage is unsafe: see docs/design.md, "Opening
        // (recovery)".
        Some("salvage: sealed it with its damaged ranges")
    } else if last.version < segment::FORMAT_VERSION {
        // The writer's records may carry flags an older version does not
        // have; the segment's header says which flags it may hold, and
        // rewriting a header in place could tear it.
        Some("sealed it, as it is of an older format version")
    } else {
        None
    }
}

/// A read-write open seals the active segment as it is, cut to its last
/// record, when new writes must go to a fresh segment: salvage skipped
/// damage inside it, or it is of an older format version (see
/// [`reason_to_seal`]). Returns whether it did.
pub(crate) fn seal_active_if_needed(
    vfs: &dyn Vfs,
    dir: &Path,
    active: Option<&SegmentLoad>,
    read_only: bool,
) -> Result<bool> {
    let Some((last, why)) = active
        .filter(|_| !read_only)
        .and_then(|l| reason_to_seal(l).map(|why| (l, why)))
    else {
        return Ok(false);
    };
    let path = names::segment_path(dir, last.id);
    let f = vfs.open(&path, OpenMode::ReadWrite)?;
    let end = last.len.max(SEGMENT_HEADER_LEN);
    if f.len()? > end {
        f.set_len(end)?;
    }
    f.sync_all()?;
    remove_stale_hint(vfs, dir, last.id)?;
    if last.skipped.is_empty() {
        log::info!("{}: {why}; new writes go to a new segment", path.display());
    } else {
        log::warn!("{}: {why}; new writes go to a new segment", path.display());
    }
    Ok(true)
}

/// Removes the hint file of the active segment `id` being sealed, if it has
/// one, and makes the removal durable. An active segment only has a hint
/// when the segment after it was lost in a crash; that hint may describe
/// more of the segment than recovery kept (a cut torn tail), and a sealed
/// segment whose hint describes more is refused as truncated. The next
/// open scans the segment instead (or a crash before this leaves it the
/// active segment, whose hint is never read).
fn remove_stale_hint(vfs: &dyn Vfs, dir: &Path, id: u32) -> Result<()> {
    match vfs.remove_file(&names::hint_path(dir, id)) {
        Ok(()) => {
            vfs.sync_dir(dir)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}
