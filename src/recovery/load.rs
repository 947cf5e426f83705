//! Loading segments: a sealed one from its hint when the hint checks out,
//! otherwise (and the active one always) by scanning it; in parallel.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::names;
use crate::format::segment::{self, HeaderInfo, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, Vfs};
use crate::options::RecoveryMode;
use crate::storage::hints;
use crate::util::locks;

use super::pin::{io_at, PinnedSegment};
use super::report::SkippedRange;
use super::scan::scan_segment;
use super::segment_load::SegmentLoad;

/// Loads every segment, in parallel unless `sequential`, and returns them
/// in id order. With `pinned` (a snapshot), each segment and hint is read
/// through the file held there, not opened by name.
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_all(
    vfs: &dyn Vfs,
    dir: &Path,
    ids: &[u32],
    active: Option<u32>,
    mode: RecoveryMode,
    read_only: bool,
    sequential: bool,
    pinned: Option<&BTreeMap<u32, PinnedSegment>>,
) -> Result<Vec<SegmentLoad>> {
    let last = active;
    let threads = if sequential {
        1
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 8)
            .min(ids.len().max(1))
    };
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<SegmentLoad>>>> =
        Mutex::new((0..ids.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&id) = ids.get(i) else { break };
                let held = pinned.and_then(|p| p.get(&id));
                let r = load_segment(vfs, dir, id, Some(id) == last, mode, read_only, held);
                let failed = r.is_err();
                locks::lock(&results)[i] = Some(r);
                if failed {
                    next.store(ids.len(), Ordering::Relaxed);
                }
            });
        }
    });
    let results = locks::into_inner(results);
    let mut out = Vec::with_capacity(ids.len());
    for r in results.into_iter().flatten() {
        out.push(r?);
    }
    if out.len() != ids.len() {
        return Err(Error::Io(std::io::Error::other(
            "segment loading stopped early",
        )));
    }
    Ok(out)
}

/// cairn never writes a segment of 4 GiB or more (`max_segment_bytes` is at
/// most 1 GiB), and the index keeps offsets in 32 bits: a longer file is
/// not one of ours.
fn check_segment_len(path: &Path, len: u64) -> Result<()> {
    if len > crate::index::keydir::MAX_OFFSET {
        return Err(Error::corruption(
            path,
            crate::index::keydir::MAX_OFFSET,
            format!("segment file is {len} bytes; cairn never writes one of 4 GiB or more"),
        ));
    }
    Ok(())
}

/// Loads one segment: from its hint when possible, else by scanning (and
/// then, for a clean sealed segment, rewrites its hint).
fn load_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
    active: bool,
    mode: RecoveryMode,
    read_only: bool,
    pinned: Option<&PinnedSegment>,
) -> Result<SegmentLoad> {
    let path = names::segment_path(dir, id);
    // In salvage mode, a truncated sealed segment is reported, not refused.
    let mut truncated: Option<(u64, u64)> = None;
    if !active {
        match from_hint(vfs, dir, &path, id, mode, pinned)? {
            FromHint::Loaded(load) => return Ok(load),
            FromHint::Scan { truncated: t } => truncated = t,
        }
    }
    let bytes = match pinned {
        Some(p) => p.bytes()?,
        None => std::borrow::Cow::Owned(vfs.read(&path).map_err(|e| io_at(&path, e))?),
    };
    check_segment_len(&path, bytes.len() as u64)?;
    let mut load = scan_segment(&path, id, &bytes, active, mode)?;
    if let Some((len, described)) = truncated {
        load.skipped.push(SkippedRange {
            path: path.clone(),
            offset: len,
            len: described - len,
            reason: "the end of the sealed segment is missing (its hint describes more)".into(),
        });
    }
    if !active && !read_only && load.skipped.is_empty() {
        match write_hint(vfs, dir, &load) {
            Ok(n) => load.hint_bytes = n,
            Err(e) => log::warn!("could not write hint for segment {id}: {e}"),
        }
    }
    Ok(load)
}

/// Writes the hint file of a scanned sealed segment: the newest entry of
/// each key. Returns the hint's size.
///
/// # Errors
/// Any I/O error; nothing is left behind but a temporary file that the
/// next open removes.
pub(crate) fn write_hint(vfs: &dyn Vfs, dir: &Path, load: &SegmentLoad) -> std::io::Result<u64> {
    hints::write(
        vfs,
        dir,
        load.id,
        load.salt,
        load.len,
        load.max_seq,
        &dedup_newest(&load.entries),
    )
}

/// Scans the sealed segment `id` (its bytes, strictly) and writes its hint
/// file. Returns the hint's size.
///
/// # Errors
/// [`Error::Corruption`] when the segment does not scan cleanly, or any
/// I/O error.
pub(crate) fn scan_and_write_hint(vfs: &dyn Vfs, dir: &Path, id: u32, bytes: &[u8]) -> Result<u64> {
    let path = names::segment_path(dir, id);
    let load = scan_segment(&path, id, bytes, false, RecoveryMode::Strict)?;
    Ok(write_hint(vfs, dir, &load)?)
}

/// What the hint of a sealed segment allows.
enum FromHint {
    /// The segment, loaded from its hint.
    Loaded(SegmentLoad),
    /// Scan the segment. In salvage mode, an authentic hint that describes
    /// more than the file holds gives `(file length, length described)`.
    Scan { truncated: Option<(u64, u64)> },
}

/// Loads a sealed segment from its hint when the hint checks out (strict
/// mode only). An authentic hint describing a longer segment than the file
/// is corruption in strict mode.
fn from_hint(
    vfs: &dyn Vfs,
    dir: &Path,
    path: &Path,
    id: u32,
    mode: RecoveryMode,
    pinned: Option<&PinnedSegment>,
) -> Result<FromHint> {
    let (len, info) = sealed_header(vfs, path, id, mode, pinned)?;
    let read_hint = |salt| match pinned {
        Some(p) => hints::checked(&p.hint_path, p.hint_bytes(vfs), id, len, salt),
        None => hints::read(vfs, dir, id, len, salt),
    };
    let hint = match info.map(|info| read_hint(info.salt)) {
        Some(Ok(h)) => h,
        Some(Err(described)) if mode == RecoveryMode::Strict => {
            return Err(Error::corruption(
                path,
                len,
                format!(
                    "sealed segment is {len} bytes but its hint describes {described}: \
                     the end of the segment is missing"
                ),
            ))
        }
        Some(Err(described)) => {
            return Ok(FromHint::Scan {
                truncated: Some((len, described)),
            })
        }
        None => None,
    };
    let Some(h) = hint.filter(|_| mode == RecoveryMode::Strict) else {
        return Ok(FromHint::Scan { truncated: None });
    };
    let min_seq = h.entries.iter().map(|e| e.seq).min().unwrap_or(u64::MAX);
    Ok(FromHint::Loaded(SegmentLoad {
        len,
        max_seq: h.max_seq,
        entries: h.entries,
        from_hint: true,
        salt: info.map_or(0, |h| h.salt),
        min_seq,
        hint_bytes: h.file_len,
        compacted: info.is_some_and(|h| h.compacted),
        version: info.map_or(0, |h| h.version),
        ..SegmentLoad::empty(id)
    }))
}

/// A sealed segment's file length and header. The header is read and
/// checked even when a hint is used: it gives the salt the hint must name.
/// `None`: unreadable in salvage mode, or too short (the scan decides).
fn sealed_header(
    vfs: &dyn Vfs,
    path: &Path,
    id: u32,
    mode: RecoveryMode,
    pinned: Option<&PinnedSegment>,
) -> Result<(u64, Option<HeaderInfo>)> {
    let (len, header) = match pinned {
        Some(p) => (p.len()?, p.header()),
        None => {
            let file = vfs.open(path, OpenMode::Read).map_err(|e| io_at(path, e))?;
            let len = file.len().map_err(|e| io_at(path, e))?;
            let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
            let read = fs::read_exact_at(&*file, &mut header, 0);
            (len, read.ok().map(|()| header))
        }
    };
    check_segment_len(path, len)?;
    let info = match header {
        Some(header) => match segment::header_info(path, &header, id) {
            Ok(info) => Some(info),
            Err(e) if mode == RecoveryMode::Strict => return Err(e),
            Err(_) => None, // salvage: the scan below decides
        },
        None => None, // too short: the scan below reports it
    };
    Ok((len, info))
}

/// Keeps only the newest entry of each key (for writing a hint).
pub(crate) fn dedup_newest(entries: &[HintEntry]) -> Vec<HintEntry> {
    let mut newest: hashbrown::HashMap<&[u8], usize, foldhash::fast::RandomState> =
        hashbrown::HashMap::with_capacity_and_hasher(entries.len(), Default::default());
    for (i, e) in entries.iter().enumerate() {
        newest
            .entry(e.key.as_slice())
            .and_modify(|j| {
                if entries[*j].seq < e.seq {
                    *j = i;
                }
            })
            .or_insert(i);
    }
    let mut idx: Vec<usize> = newest.into_values().collect();
    idx.sort_unstable_by_key(|&i| entries[i].offset);
    idx.into_iter().map(|i| entries[i].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dedup_keeps_newest() {
        let e = |k: &[u8], s| HintEntry {
            key: k.to_vec(),
            seq: s,
            expires_at_ms: 0,
            offset: s * 10,
            value_len: 0,
            tombstone: false,
            replaces: false,
        };
        let d = dedup_newest(&[e(b"a", 1), e(b"b", 2), e(b"a", 3)]);
        assert_eq!(d, vec![e(b"b", 2), e(b"a", 3)]);
    }
}
