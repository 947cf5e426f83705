//! Recovery: rebuilding the keydir from hints and segments on open.
//!
//! * Sealed segments are loaded from their hint file when it is valid, and
//!   otherwise scanned record by record (then the hint is rewritten). Any
//!   damage in a sealed segment is [`Error::Corruption`] unless the caller
//!   asked to salvage.
//! * The active (highest-numbered) segment is always scanned. A damaged
//!   record with no valid record after it is a torn tail (the signature of a
//!   crash) and is cut off. A damaged record *followed by* a valid one is
//!   corruption.
//! * A batch without its commit record is discarded whole.
//! * Sequence numbers decide which version of a key wins, never file ids.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::manifest::{self, MANIFEST};
use crate::format::names;
use crate::format::record::{self, Decoded, Kind};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, Vfs};
use crate::index::keydir::{Entry, KeyDir, TOMBSTONE_LEN};
use crate::options::RecoveryMode;
use crate::storage;
use crate::storage::hints;
use crate::util::locks;

/// A damaged byte range that salvage mode skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRange {
    /// The file.
    pub path: PathBuf,
    /// First damaged byte.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// Why the bytes were rejected.
    pub reason: String,
}

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments loaded from a valid hint file.
    pub segments_from_hints: u32,
    /// Segments scanned record by record.
    pub segments_scanned: u32,
    /// A torn tail cut off the active segment: `(file, offset it was cut at, bytes removed)`.
    pub truncated_tail: Option<(PathBuf, u64, u64)>,
    /// Records in an uncommitted batch at the end of the log that were discarded.
    pub discarded_batch_records: u64,
    /// Damaged ranges skipped in [`RecoveryMode::Salvage`](crate::RecoveryMode::Salvage).
    pub skipped: Vec<SkippedRange>,
    /// Stray temporary files removed.
    pub removed_temp_files: u32,
    /// A compaction that stopped after deciding to delete its old segments
    /// was finished (the old segments were deleted).
    pub finished_compaction: bool,
}

/// The result of reading one segment.
pub(crate) struct SegmentLoad {
    pub id: u32,
    /// The segment's logical length: the end of its last good record.
    pub len: u64,
    pub max_seq: u64,
    pub entries: Vec<HintEntry>,
    pub from_hint: bool,
    /// For the active segment: where to cut a torn tail, and how long the file was.
    pub cut: Option<(u64, u64)>,
    pub discarded_batch_records: u64,
    pub skipped: Vec<SkippedRange>,
    /// The active segment's header is missing or all zeros: rewrite it.
    pub needs_header: bool,
    /// The bytes after `len` are all zeros: space preallocated for appends,
    /// not a torn write.
    pub zero_tail: bool,
    /// The segment's salt (from its header).
    pub salt: u32,
    /// Lowest sequence number of a record in the segment (`u64::MAX`: none).
    pub min_seq: u64,
    /// Size of the segment's hint file (0: none).
    pub hint_bytes: u64,
    /// Written by compaction (from its header).
    pub compacted: bool,
}

/// Files found in a store directory.
pub(crate) struct Listing {
    pub segments: Vec<u32>,
    pub temp_files: Vec<PathBuf>,
}

/// Lists segment ids (ascending) and stray temporary files.
pub(crate) fn list_dir(vfs: &dyn Vfs, dir: &Path) -> Result<Listing> {
    let mut segments = Vec::new();
    let mut temp_files = Vec::new();
    for name in vfs.list(dir)? {
        if name.ends_with(names::TMP_SUFFIX) {
            temp_files.push(dir.join(&name));
        } else if let Some((id, suffix)) = names::parse_file_name(&name) {
            if suffix == names::SEGMENT_SUFFIX {
                segments.push(id);
            }
        }
    }
    segments.sort_unstable();
    Ok(Listing {
        segments,
        temp_files,
    })
}

/// Searches for the first offset at or after `from` holding a valid record
/// whose sequence number is above `min_seq`. A record's checksum binds its
/// segment's salt and its offset, so record images inside values, or copied
/// from elsewhere, are never found.
pub(crate) fn find_next_valid(bytes: &[u8], from: usize, min_seq: u64, salt: u32) -> Option<usize> {
    let last = bytes
        .len()
        .saturating_sub(record::RECORD_HEADER_LEN as usize);
    (from..=last).find(|&off| {
        // Cheap rejection first: the kind byte, then the full decode.
        matches!(bytes[off + 4], 1..=4)
            && matches!(
                record::decode(&bytes[off..], salt, off as u64),
                Decoded::Record(r) if r.seq > min_seq
            )
    })
}

struct PendingBatch {
    begin_offset: u64,
    begin_seq: u64,
    count: u32,
    entries: Vec<HintEntry>,
}

/// Scans a whole segment. `active` selects torn-tail handling.
pub(crate) fn scan_segment(
    path: &Path,
    id: u32,
    bytes: &[u8],
    active: bool,
    mode: RecoveryMode,
) -> Result<SegmentLoad> {
    let mut load = SegmentLoad {
        id,
        len: SEGMENT_HEADER_LEN,
        max_seq: 0,
        entries: Vec::new(),
        from_hint: false,
        cut: None,
        discarded_batch_records: 0,
        skipped: Vec::new(),
        needs_header: false,
        zero_tail: false,
        salt: 0,
        min_seq: u64::MAX,
        hint_bytes: 0,
        compacted: false,
    };
    let header_len = SEGMENT_HEADER_LEN as usize;
    let salt = match segment::header_info(path, bytes, id) {
        Ok(info) => {
            load.compacted = info.compacted;
            info.salt
        }
        Err(e) => {
            // The active segment's header is written and synced before its first
            // record, so a header that is torn, with nothing but zeros after it,
            // means the segment was being created when the process stopped:
            // nothing in it was ever acknowledged.
            let torn_create =
                bytes.len() < header_len || bytes[header_len..].iter().all(|&b| b == 0);
            if active && torn_create && !matches!(e, Error::UnsupportedVersion { .. }) {
                load.needs_header = true;
                load.cut = Some((0, bytes.len() as u64));
                load.len = 0;
                return Ok(load);
            }
            return Err(e);
        }
    };
    load.salt = salt;

    let salvage = mode == RecoveryMode::Salvage;
    let mut pos = header_len;
    let mut last_seq = 0u64;
    let mut pending: Option<PendingBatch> = None;
    let mut good_end = pos as u64; // end of the last record outside an open batch
                                   // How much of the segment sync marks say was durable: damage before
                                   // this point is corruption, damage after it can be an unsynced tail.
    let mut durable = 0u64;

    while pos < bytes.len() {
        if active && bytes[pos..].iter().all(|&b| b == 0) {
            break; // preallocated space (or a zero-filled torn tail)
        }
        let problem: &'static str = match record::decode(&bytes[pos..], salt, pos as u64) {
            Decoded::Record(r) if r.kind == Kind::SyncMark => {
                let offset = pos as u64;
                let mark = (r.value.len() == 8 && r.key.is_empty() && r.seq == 0)
                    .then(|| record::le_u64(r.value, 0))
                    .filter(|&d| d <= offset);
                match mark {
                    Some(d) => {
                        durable = durable.max(d);
                        pos += r.len as usize;
                        if pending.is_none() {
                            good_end = pos as u64;
                        }
                        continue;
                    }
                    None => "malformed sync mark",
                }
            }
            Decoded::Record(r) if r.seq <= last_seq => "sequence number out of order",
            Decoded::Record(r) if r.seq >= record::MAX_SEQ => "sequence number out of range",
            Decoded::Record(r)
                if matches!(r.kind, Kind::Put | Kind::Tombstone)
                    && r.in_batch != pending.is_some() =>
            {
                if r.in_batch {
                    "batch operation without its batch begin record"
                } else {
                    "record inside an open batch is not one of its operations"
                }
            }
            Decoded::Record(r) => {
                let offset = pos as u64;
                last_seq = r.seq;
                load.max_seq = load.max_seq.max(r.seq);
                load.min_seq = load.min_seq.min(r.seq);
                pos += r.len as usize;
                match r.kind {
                    Kind::Put | Kind::Tombstone => {
                        let e = HintEntry {
                            key: r.key.to_vec(),
                            seq: r.seq,
                            expires_at_ms: r.expires_at_ms,
                            offset,
                            value_len: r.value.len() as u32,
                            tombstone: r.kind == Kind::Tombstone,
                        };
                        match pending.as_mut() {
                            Some(b) => b.entries.push(e),
                            None => {
                                load.entries.push(e);
                                good_end = pos as u64;
                            }
                        }
                        continue;
                    }
                    Kind::BatchBegin => {
                        if let Some(b) = pending.take() {
                            // An open batch followed by another one: the first never committed.
                            let why = "batch without a commit record followed by more records";
                            if !salvage {
                                return Err(Error::corruption(path, b.begin_offset, why));
                            }
                            load.skipped.push(SkippedRange {
                                path: path.to_path_buf(),
                                offset: b.begin_offset,
                                len: offset - b.begin_offset,
                                reason: why.into(),
                            });
                        }
                        let count = if r.value.len() >= 4 {
                            record::le_u32(r.value, 0)
                        } else {
                            0
                        };
                        pending = Some(PendingBatch {
                            begin_offset: offset,
                            begin_seq: r.seq,
                            count,
                            entries: Vec::new(),
                        });
                        continue;
                    }
                    Kind::SyncMark => continue, // handled above
                    Kind::BatchCommit => {
                        let ok = match &pending {
                            Some(b) => {
                                r.value.len() >= 12
                                    && record::le_u64(r.value, 0) == b.begin_seq
                                    && record::le_u32(r.value, 8) == b.count
                                    && b.entries.len() as u64 == u64::from(b.count)
                            }
                            None => false,
                        };
                        if ok {
                            if let Some(b) = pending.take() {
                                load.entries.extend(b.entries);
                            }
                            good_end = pos as u64;
                            continue;
                        }
                        let why = "batch commit record does not match its batch";
                        if !salvage {
                            return Err(Error::corruption(path, offset, why));
                        }
                        let start = pending.take().map_or(offset, |b| b.begin_offset);
                        load.skipped.push(SkippedRange {
                            path: path.to_path_buf(),
                            offset: start,
                            len: pos as u64 - start,
                            reason: why.into(),
                        });
                        good_end = pos as u64;
                        continue;
                    }
                }
            }
            Decoded::Truncated => "record is truncated",
            Decoded::Invalid(why) => why,
        };
        // Damage at `pos`. In the active segment, strict mode: a sync mark
        // (before it or anywhere after it) that vouches for these bytes
        // makes it corruption; otherwise it is an unsynced tail, cut here.
        if active && !salvage {
            let vouched = durable.max(durable_after(bytes, pos + 1, salt));
            if (pos as u64) < vouched {
                return Err(Error::corruption(
                    path,
                    pos as u64,
                    format!(
                        "{problem}, in data a sync mark says was durable (up to offset {vouched})"
                    ),
                ));
            }
            if let Some(next) = find_next_valid(bytes, pos + 1, last_seq, salt) {
                log::warn!(
                    "{}: {problem} at offset {pos}, past the last synced offset {vouched}; \
                     discarding the unsynced tail (valid records resume at {next})",
                    path.display()
                );
            }
            break;
        }
        match find_next_valid(bytes, pos + 1, last_seq, salt) {
            Some(next) if salvage => {
                let start = pending.take().map_or(pos as u64, |b| b.begin_offset);
                load.skipped.push(SkippedRange {
                    path: path.to_path_buf(),
                    offset: start,
                    len: next as u64 - start,
                    reason: problem.into(),
                });
                pos = next;
            }
            Some(_) => {
                return Err(Error::corruption(
                    path,
                    pos as u64,
                    format!("{problem}, and valid records follow"),
                ));
            }
            None if active => break,
            None if salvage => {
                let start = pending.take().map_or(pos as u64, |b| b.begin_offset);
                load.skipped.push(SkippedRange {
                    path: path.to_path_buf(),
                    offset: start,
                    len: bytes.len() as u64 - start,
                    reason: problem.into(),
                });
                good_end = start;
                pos = bytes.len();
            }
            None => {
                return Err(Error::corruption(
                    path,
                    pos as u64,
                    format!("{problem} in a sealed segment"),
                ));
            }
        }
    }
    if let Some(b) = pending.take() {
        if !active && !salvage {
            return Err(Error::corruption(
                path,
                b.begin_offset,
                "batch without a commit record in a sealed segment",
            ));
        }
        load.discarded_batch_records += u64::from(b.count.max(b.entries.len() as u32));
        if salvage && !active {
            load.skipped.push(SkippedRange {
                path: path.to_path_buf(),
                offset: b.begin_offset,
                len: bytes.len() as u64 - b.begin_offset,
                reason: "batch without a commit record".into(),
            });
        }
    }
    load.len = good_end;
    if active && good_end < bytes.len() as u64 {
        load.cut = Some((good_end, bytes.len() as u64));
        load.zero_tail = bytes[good_end as usize..].iter().all(|&b| b == 0);
    }
    Ok(load)
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

/// The highest durable length named by a valid sync mark at or after
/// `from` (0 if none). Used only on damage, so it may be slow.
fn durable_after(bytes: &[u8], from: usize, salt: u32) -> u64 {
    let header = record::RECORD_HEADER_LEN as usize;
    let mut best = 0;
    let mut off = from;
    while off + header <= bytes.len() {
        if matches!(bytes[off + 4], 1..=5) {
            if let Decoded::Record(r) = record::decode(&bytes[off..], salt, off as u64) {
                if r.kind == Kind::SyncMark && r.value.len() == 8 {
                    let d = record::le_u64(r.value, 0);
                    if d <= off as u64 {
                        best = best.max(d);
                    }
                }
                off += r.len as usize;
                continue;
            }
        }
        off += 1;
    }
    best
}

/// Loads one segment: from its hint when possible, else by scanning.
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

fn load_segment(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
    active: bool,
    mode: RecoveryMode,
    read_only: bool,
) -> Result<SegmentLoad> {
    let path = names::segment_path(dir, id);
    // In salvage mode, a truncated sealed segment is reported, not refused.
    let mut truncated: Option<(u64, u64)> = None;
    if !active {
        // The header is read and checked even when a hint is used: it gives
        // the salt the hint must name.
        let file = vfs.open(&path, OpenMode::Read)?;
        let len = file.len()?;
        check_segment_len(&path, len)?;
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        let salt = match fs::read_exact_at(&*file, &mut header, 0) {
            Ok(()) => match segment::header_info(&path, &header, id) {
                Ok(info) => Some(info),
                Err(e) if mode == RecoveryMode::Strict => return Err(e),
                Err(_) => None, // salvage: the scan below decides
            },
            Err(_) => None, // too short: the scan below reports it
        };
        drop(file);
        let hint = match salt.map(|info| hints::read(vfs, dir, id, len, info.salt)) {
            Some(Ok(h)) => h,
            Some(Err(described)) if mode == RecoveryMode::Strict => {
                return Err(Error::corruption(
                    &path,
                    len,
                    format!(
                        "sealed segment is {len} bytes but its hint describes {described}: \
                         the end of the segment is missing"
                    ),
                ))
            }
            Some(Err(described)) => {
                truncated = Some((len, described));
                None
            }
            None => None,
        };
        if let Some(h) = hint.filter(|_| mode == RecoveryMode::Strict) {
            let min_seq = h.entries.iter().map(|e| e.seq).min().unwrap_or(u64::MAX);
            return Ok(SegmentLoad {
                id,
                len,
                max_seq: h.max_seq,
                entries: h.entries,
                from_hint: true,
                cut: None,
                discarded_batch_records: 0,
                skipped: Vec::new(),
                needs_header: false,
                zero_tail: false,
                salt: salt.map_or(0, |h| h.salt),
                min_seq,
                hint_bytes: h.file_len,
                compacted: salt.is_some_and(|h| h.compacted),
            });
        }
    }
    let bytes = vfs.read(&path)?;
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
        match hints::write(
            vfs,
            dir,
            id,
            load.salt,
            load.len,
            load.max_seq,
            &dedup_newest(&load.entries),
        ) {
            Ok(n) => load.hint_bytes = n,
            Err(e) => log::warn!("could not write hint for segment {id}: {e}"),
        }
    }
    Ok(load)
}

/// The active segment: the highest-numbered segment that compaction did not
/// write. A segment whose header cannot be read counts as a writer segment
/// (a torn header can only belong to a segment being created by the writer;
/// compaction renames its files into place only once they are complete).
pub(crate) fn find_active(vfs: &dyn Vfs, dir: &Path, ids: &[u32]) -> Option<u32> {
    for &id in ids.iter().rev() {
        let path = names::segment_path(dir, id);
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        let compacted = vfs
            .open(&path, OpenMode::Read)
            .and_then(|f| fs::read_exact_at(&*f, &mut header, 0))
            .ok()
            .and_then(|()| segment::header_info(&path, &header, id).ok())
            .is_some_and(|h| h.compacted);
        if !compacted {
            return Some(id);
        }
    }
    None
}

/// From this many loaded entries on, open sorts them into the index's memory
/// order before inserting them, and hands the freed memory back to the OS
/// afterwards (below it everything fits in the caches and neither pays).
pub(crate) const SORTED_MERGE_MIN_ENTRIES: usize = 1 << 17;

/// Keys up to this long travel inside [`Pending`].
const PENDING_INLINE: usize = 16;

/// An entry on its way into the index, with a short key copied along.
#[derive(Clone, Copy)]
struct Pending {
    hash: u64,
    seq: u64,
    expires_at_ms: u64,
    offset: u64,
    value_len: u32,
    file_id: u32,
    /// Where the entry came from (for keys longer than [`PENDING_INLINE`]).
    load: u32,
    entry: u32,
    key_len: u32,
    key: [u8; PENDING_INLINE],
}

impl Pending {
    const EMPTY: Pending = Pending {
        hash: 0,
        seq: 0,
        expires_at_ms: 0,
        offset: 0,
        value_len: 0,
        file_id: 0,
        load: 0,
        entry: 0,
        key_len: 0,
        key: [0; PENDING_INLINE],
    };

    fn new(hash: u64, file_id: u32, load: usize, entry: usize, e: &HintEntry) -> Pending {
        let mut key = [0u8; PENDING_INLINE];
        if e.key.len() <= PENDING_INLINE {
            key[..e.key.len()].copy_from_slice(&e.key);
        }
        Pending {
            hash,
            seq: e.seq,
            expires_at_ms: e.expires_at_ms,
            offset: e.offset,
            value_len: if e.tombstone {
                TOMBSTONE_LEN
            } else {
                e.value_len
            },
            file_id,
            load: load as u32,
            entry: entry as u32,
            key_len: e.key.len() as u32,
            key,
        }
    }

    fn entry(&self) -> Entry {
        Entry {
            seq: self.seq,
            expires_at_ms: self.expires_at_ms,
            offset: self.offset,
            file_id: self.file_id,
            value_len: self.value_len,
        }
    }
}

/// Loads every segment, in parallel unless `sequential`, and returns them
/// in id order.
pub(crate) fn load_all(
    vfs: &dyn Vfs,
    dir: &Path,
    ids: &[u32],
    active: Option<u32>,
    mode: RecoveryMode,
    read_only: bool,
    sequential: bool,
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
                let r = load_segment(vfs, dir, id, Some(id) == last, mode, read_only);
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

/// Merges loaded segments into `keydir`: the highest sequence number wins;
/// tombstones and expired records shadow older versions and are then dropped.
/// Returns the live record bytes per segment, in the order of `loads`.
pub(crate) fn build_keydir(loads: &[SegmentLoad], now_ms: u64) -> (KeyDir, Vec<u64>) {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    merge_into_keydir(loads, now_ms, total >= SORTED_MERGE_MIN_ENTRIES)
}

/// [`build_keydir`], with the sorted merge on or off.
fn merge_into_keydir(loads: &[SegmentLoad], now_ms: u64, sort: bool) -> (KeyDir, Vec<u64>) {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    let keydir = KeyDir::with_capacity(total);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let parallel = |f: &(dyn Fn(usize) + Sync)| {
        if threads == 1 || total < 10_000 {
            (0..threads).for_each(f);
        } else {
            std::thread::scope(|s| {
                for t in 0..threads {
                    s.spawn(move || f(t));
                }
            });
        }
    };
    // 1. Every entry's hash, once (threads take segments in turn).
    let hashes: Vec<Mutex<Vec<u64>>> = loads.iter().map(|_| Mutex::new(Vec::new())).collect();
    parallel(&|t| {
        for (li, load) in loads.iter().enumerate().skip(t).step_by(threads) {
            let h: Vec<u64> = load
                .entries
                .iter()
                .map(|e| keydir.locate(&e.key).0)
                .collect();
            *locks::lock(&hashes[li]) = h;
        }
    });
    let hashes: Vec<Vec<u64>> = hashes.into_iter().map(locks::into_inner).collect();
    // 2. The index is merged a group of shards at a time; each group's
    //    entries are first put in the order in which they land in the
    //    tables, with what the insert needs copied alongside, so that the
    //    inserts touch the tables nearly sequentially and read their input
    //    sequentially. At 10M keys (a 770 MB index, 900 MB of hint entries)
    //    inserting in segment order was bound by random memory accesses.
    //    Threads own disjoint groups, so no two contend for a shard; the
    //    newest record wins whatever the order (`insert_if_newer`).
    //    Small stores (which fit in the caches) skip the sort.
    let groups = if sort { threads * 4 } else { threads }.min(keydir.shard_count());
    let buckets = keydir.buckets_per_shard();
    parallel(&|t| {
        let mut count = vec![0usize; if sort { 1 << 16 } else { 0 }];
        for g in (t..groups).step_by(threads) {
            let in_group = |h: u64| KeyDir::shard_of_hash(h) % groups == g;
            if !sort {
                for (load, hs) in loads.iter().zip(&hashes) {
                    for (e, &h) in load.entries.iter().zip(hs) {
                        if in_group(h) {
                            let p = Pending::new(h, load.id, 0, 0, e);
                            keydir.insert_if_newer_hashed(h, &e.key, p.entry());
                        }
                    }
                }
                continue;
            }
            count.iter_mut().for_each(|c| *c = 0);
            for hs in &hashes {
                for &h in hs.iter().filter(|&&h| in_group(h)) {
                    count[usize::from(KeyDir::memory_order_in(h, buckets))] += 1;
                }
            }
            let mut start = 0usize;
            for c in count.iter_mut() {
                let n = *c;
                *c = start;
                start += n;
            }
            let mut sorted = vec![Pending::EMPTY; start];
            for (li, (load, hs)) in loads.iter().zip(&hashes).enumerate() {
                for (ei, (e, &h)) in load.entries.iter().zip(hs).enumerate() {
                    if in_group(h) {
                        let at = &mut count[usize::from(KeyDir::memory_order_in(h, buckets))];
                        sorted[*at] = Pending::new(h, load.id, li, ei, e);
                        *at += 1;
                    }
                }
            }
            for p in &sorted {
                let long;
                let key = if p.key_len as usize <= PENDING_INLINE {
                    &p.key[..p.key_len as usize]
                } else {
                    long = &loads[p.load as usize].entries[p.entry as usize].key;
                    &long[..]
                };
                keydir.insert_if_newer_hashed(p.hash, key, p.entry());
            }
        }
    });
    drop(hashes);
    // `loads` is sorted by id, so a binary search finds a segment's slot.
    let ids: Vec<u32> = loads.iter().map(|l| l.id).collect();
    let mut live = vec![0u64; loads.len()];
    for i in 0..keydir.shard_count() {
        keydir.write_shard(i).retain(
            |k, e| {
                let dead = e.is_tombstone() || e.is_expired(now_ms);
                if !dead {
                    if let Ok(j) = ids.binary_search(&e.file_id) {
                        live[j] += e.record_len(k.len());
                    }
                }
                dead
            },
            |_, _| {},
        );
    }
    (keydir, live)
}

/// At open: finishes a compaction that stopped after its manifest was
/// written, by deleting the segments it names. Returns whether it did, and
/// (read-only) the segments to leave out instead.
pub(crate) fn finish_interrupted(
    vfs: &dyn Vfs,
    dir: &Path,
    read_only: bool,
) -> Result<(bool, Vec<u32>)> {
    let path = dir.join(MANIFEST);
    let bytes = match vfs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((false, Vec::new())),
        Err(e) => return Err(Error::Io(e)),
    };
    if read_only {
        // A read-only handle may not delete, so it leaves the manifest's
        // segments out instead: the deletion may have been cut short after
        // removing some of them (say, the one holding a tombstone), and
        // loading the rest could bring back what they hid. Their live
        // records are all in the compaction's outputs.
        return Ok((false, manifest::decode(&bytes).unwrap_or_default()));
    }
    match manifest::decode(&bytes) {
        Some(ids) => {
            log::info!(
                "finishing an interrupted compaction: deleting {} old segments",
                ids.len()
            );
            storage::manifest::delete_inputs(vfs, dir, &ids)?;
        }
        None => {
            // It is renamed into place whole, so this is not a crash: with
            // it unreadable, keep every segment (which is always safe).
            log::warn!(
                "ignoring an unreadable compaction manifest {}",
                path.display()
            );
            vfs.remove_file(&path)?;
            vfs.sync_dir(dir)?;
        }
    }
    Ok((true, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0x1234_5678;

    /// Appends a record at the end of `b`, as the writer would (puts and
    /// tombstones between a batch's begin and commit carry the batch flag).
    fn encode_into(b: &mut Vec<u8>, kind: Kind, seq: u64, exp: u64, key: &[u8], v: &[u8]) {
        let at = b.len() as u64;
        record::encode_into(b, SALT, at, kind, 0, seq, exp, key, v);
    }

    fn encode_batch_op(b: &mut Vec<u8>, kind: Kind, seq: u64, key: &[u8], v: &[u8]) {
        let at = b.len() as u64;
        record::encode_into(b, SALT, at, kind, record::FLAG_BATCH, seq, 0, key, v);
    }

    fn seg(records: &[(Kind, u64, &[u8], &[u8])]) -> Vec<u8> {
        let mut b = segment::encode_header(1, SALT).to_vec();
        for (k, s, key, v) in records {
            encode_into(&mut b, *k, *s, 0, key, v);
        }
        b
    }

    fn p() -> PathBuf {
        PathBuf::from("/d/0000000001.seg")
    }

    /// Appends a sync mark saying everything before it is durable.
    fn mark(b: &mut Vec<u8>) {
        let at = b.len() as u64;
        encode_into(b, Kind::SyncMark, 0, 0, b"", &at.to_le_bytes());
    }

    #[test]
    fn clean_segment() {
        let b = seg(&[(Kind::Put, 1, b"a", b"1"), (Kind::Tombstone, 2, b"a", b"")]);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.len, b.len() as u64);
        assert_eq!(l.cut, None);
        assert_eq!(l.max_seq, 2);
    }

    #[test]
    fn torn_tail_is_cut_at_every_offset() {
        let b = seg(&[
            (Kind::Put, 1, b"a", b"1"),
            (Kind::Put, 2, b"b", b"22"),
            (Kind::Put, 3, b"c", b"333"),
        ]);
        let first_end = 32 + 34;
        for cut in first_end..b.len() {
            let l = scan_segment(&p(), 1, &b[..cut], true, RecoveryMode::Strict).expect("scan");
            let n = l.entries.len();
            assert!(n >= 1 && l.len <= cut as u64, "cut {cut}");
            if l.len < cut as u64 {
                assert_eq!(l.cut, Some((l.len, cut as u64)));
            }
        }
    }

    #[test]
    fn middle_corruption_is_an_error_and_salvage_skips_it() {
        let mut b = seg(&[
            (Kind::Put, 1, b"a", b"1"),
            (Kind::Put, 2, b"b", b"22"),
            (Kind::Put, 3, b"c", b"333"),
        ]);
        let second = 66 + 33; // inside record 2's value
                              // With no sync mark past it, the damage can be a power loss that
                              // lost one page of an unsynced write: an unsynced tail, cut.
        let mut c = b.clone();
        c[second] ^= 0xff;
        let l = scan_segment(&p(), 1, &c, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.cut, Some((66, c.len() as u64)));
        // A sync mark says it was durable: corruption.
        mark(&mut b);
        let mut c = b.clone();
        c[second] ^= 0xff;
        match scan_segment(&p(), 1, &c, true, RecoveryMode::Strict) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 66),
            other => panic!("{:?}", other.map(|l| l.entries.len())),
        }
        // The record right before the mark: nothing valid follows but the
        // mark itself, which still vouches for it.
        let mut last = b.clone();
        last[b.len() - 41] ^= 0xff;
        match scan_segment(&p(), 1, &last, true, RecoveryMode::Strict) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 101),
            other => panic!("{:?}", other.map(|l| l.entries.len())),
        }
        let l = scan_segment(&p(), 1, &c, true, RecoveryMode::Salvage).expect("salvage");
        let keys: Vec<_> = l.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(l.skipped.len(), 1);
        assert_eq!(l.skipped[0].offset, 66);
    }

    #[test]
    fn uncommitted_batch_is_discarded() {
        let mut b = seg(&[(Kind::Put, 1, b"a", b"1")]);
        let keep = b.len();
        encode_into(&mut b, Kind::BatchBegin, 2, 0, b"", &2u32.to_le_bytes());
        encode_batch_op(&mut b, Kind::Put, 3, b"x", b"1");
        encode_batch_op(&mut b, Kind::Put, 4, b"y", b"1");
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.cut, Some((keep as u64, b.len() as u64)));
        let mut commit = Vec::new();
        commit.extend_from_slice(&2u64.to_le_bytes());
        commit.extend_from_slice(&2u32.to_le_bytes());
        encode_into(&mut b, Kind::BatchCommit, 5, 0, b"", &commit);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.cut, None);
    }

    #[test]
    fn salvage_never_makes_a_batch_partly_visible() {
        let mut b = seg(&[(Kind::Put, 1, b"a", b"1")]);
        encode_into(&mut b, Kind::BatchBegin, 2, 0, b"", &3u32.to_le_bytes());
        encode_batch_op(&mut b, Kind::Put, 3, b"x", b"1");
        let damaged = b.len();
        encode_batch_op(&mut b, Kind::Put, 4, b"y", b"1");
        encode_batch_op(&mut b, Kind::Put, 5, b"z", b"1");
        let mut commit = Vec::new();
        commit.extend_from_slice(&2u64.to_le_bytes());
        commit.extend_from_slice(&3u32.to_le_bytes());
        encode_into(&mut b, Kind::BatchCommit, 6, 0, b"", &commit);
        encode_into(&mut b, Kind::Put, 7, 0, b"after", b"1");
        mark(&mut b);
        b[damaged + 40] ^= 0xff; // inside y's record
        assert!(matches!(
            scan_segment(&p(), 1, &b, true, RecoveryMode::Strict),
            Err(Error::Corruption { .. })
        ));
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Salvage).expect("salvage");
        let keys: Vec<_> = l.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            keys,
            vec![b"a".to_vec(), b"after".to_vec()],
            "{:?}",
            l.skipped
        );
    }

    #[test]
    fn sealed_segment_damage_is_an_error() {
        let b = seg(&[(Kind::Put, 1, b"a", b"1"), (Kind::Put, 2, b"b", b"22")]);
        let cut = &b[..b.len() - 1];
        assert!(matches!(
            scan_segment(&p(), 1, cut, false, RecoveryMode::Strict),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn zero_tail_is_cut() {
        let mut b = seg(&[(Kind::Put, 1, b"a", b"1")]);
        let n = b.len();
        b.extend_from_slice(&[0u8; 4096]);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.len, n as u64);
        assert_eq!(l.entries.len(), 1);
    }

    #[test]
    fn dedup_keeps_newest() {
        let e = |k: &[u8], s| HintEntry {
            key: k.to_vec(),
            seq: s,
            expires_at_ms: 0,
            offset: s * 10,
            value_len: 0,
            tombstone: false,
        };
        let d = dedup_newest(&[e(b"a", 1), e(b"b", 2), e(b"a", 3)]);
        assert_eq!(d, vec![e(b"b", 2), e(b"a", 3)]);
    }

    /// The sorted merge (large stores) and the plain one (small stores)
    /// build the same index from the same loads: newest sequence number wins
    /// in any order, tombstones and expired records shadow and then vanish,
    /// long keys (arena) and short ones (inline) alike.
    #[test]
    fn sorted_and_plain_merges_agree() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut seq = 0;
        let loads: Vec<SegmentLoad> = (1..=4u32)
            .map(|id| {
                let entries = (0..3000)
                    .map(|_| {
                        let k = next() % 2000;
                        let mut key = k.to_le_bytes().to_vec();
                        if k % 3 == 0 {
                            key.extend_from_slice(&[7u8; 20]); // an arena key
                        }
                        seq += 1;
                        let r = next();
                        HintEntry {
                            key,
                            seq,
                            expires_at_ms: if r % 7 == 0 {
                                50
                            } else if r % 5 == 0 {
                                500
                            } else {
                                0
                            },
                            offset: (r % 1000) * 64,
                            value_len: (r % 100) as u32,
                            tombstone: r % 11 == 0,
                        }
                    })
                    .collect();
                SegmentLoad {
                    id,
                    len: 1 << 20,
                    max_seq: 0,
                    entries,
                    from_hint: true,
                    cut: None,
                    discarded_batch_records: 0,
                    skipped: Vec::new(),
                    needs_header: false,
                    zero_tail: false,
                    salt: 0,
                    min_seq: 0,
                    hint_bytes: 0,
                    compacted: false,
                }
            })
            .collect();
        let (sorted, live_sorted) = merge_into_keydir(&loads, 100, true);
        let (plain, live_plain) = merge_into_keydir(&loads, 100, false);
        assert_eq!(live_sorted, live_plain);
        assert_eq!(sorted.raw_len(), plain.raw_len());
        assert!(plain.raw_len() > 500);
        let mut seen = 0;
        for i in 0..plain.shard_count() {
            plain.read_shard(i).for_each(|k, e| {
                assert_eq!(sorted.get(k), Some(*e));
                assert!(!e.is_tombstone() && !e.is_expired(100));
                seen += 1;
            });
        }
        assert_eq!(seen as u64, plain.raw_len());
    }
}
