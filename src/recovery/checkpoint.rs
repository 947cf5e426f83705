//! The index checkpoint at open: finding it (and, in a writable open,
//! deleting it before anything is written), checking that the directory
//! holds exactly the files it describes, and building the keydir from its
//! slots. Anything that does not check out is a [`CheckpointUse`] reason,
//! and recovery opens from hints and segments instead.
//!
//! The file's bytes are `format/checkpoint.rs`; its writing is
//! `engine/checkpoint.rs`.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::checkpoint::{
    self, DecodeError, Decoded, Header, Layout, SegmentInfo, PROBE_KEY, SHARDS,
};
use crate::format::names;
use crate::format::record::RECORD_HEADER_LEN;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile, Vfs};
use crate::index::keydir::{IndexEntry, KeyDir, Shard, ShardBuilder, SLOT_BYTES};
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;

use super::replay::Summary;
use super::report::CheckpointUse;
use super::RecoveredActive;

/// The checkpoint file of the store in `dir`.
pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join(names::CHECKPOINT_FILE)
}

/// What open found of a checkpoint.
pub(crate) enum Found {
    /// No checkpoint file.
    None,
    /// The file, open for reading, and its length.
    File(Arc<dyn VFile>, u64),
    /// It exists but could not be read.
    Unreadable(io::Error),
}

/// Reads the checkpoint, if there is one. It stays on disk: records
/// written after it are replayed by the next open (`replay.rs`), and one
/// an open cannot use is deleted by it (see `recovery::from_checkpoint`).
///
/// # Errors
/// None today; kept for the open's error path.
pub(crate) fn take(vfs: &dyn Vfs, dir: &Path) -> crate::error::Result<Found> {
    let p = path(dir);
    let opened = vfs.open(&p, OpenMode::Read).and_then(|f| {
        let len = f.len()?;
        Ok((f, len))
    });
    Ok(match opened {
        Ok((f, len)) => Found::File(f, len),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Found::None,
        Err(e) => Found::Unreadable(e),
    })
}

/// Deletes the index checkpoint of the store in `dir`, if any, and makes
/// that durable (for the tools that change a closed store's files).
/// Returns whether there was one.
///
/// # Errors
/// Any I/O error but a missing file.
pub(crate) fn remove(vfs: &dyn Vfs, dir: &Path) -> io::Result<bool> {
    match vfs.remove_file(&path(dir)) {
        Ok(()) => {
            vfs.sync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why a checkpoint was not used, with the detail for the log.
pub(crate) struct Rejected {
    pub why: CheckpointUse,
    pub detail: String,
}

impl Rejected {
    fn new(why: CheckpointUse, detail: impl Into<String>) -> Rejected {
        Rejected {
            why,
            detail: detail.into(),
        }
    }

    fn stale(detail: impl Into<String>) -> Rejected {
        Rejected::new(CheckpointUse::Stale, detail)
    }
}

impl From<DecodeError> for Rejected {
    fn from(e: DecodeError) -> Rejected {
        let why = match e {
            DecodeError::UnsupportedVersion(_) => CheckpointUse::Incompatible,
            _ => CheckpointUse::Damaged,
        };
        Rejected::new(why, e.to_string())
    }
}

/// What recovery takes from a checkpoint.
pub(crate) struct FromCheckpoint {
    pub keydir: KeyDir,
    pub seg_stats: BTreeMap<u32, SegmentSpace>,
    pub segments: BTreeMap<u32, Arc<Segment>>,
    pub active: Option<RecoveredActive>,
    pub max_seq: u64,
    pub expired_kept: u64,
    /// What was replayed after it (`None`: nothing was written after it).
    pub replayed: Option<Summary>,
    /// The checkpoint file's size.
    pub checkpoint_len: u64,
    /// Its active segment, and the others it covers after its deltas.
    pub checkpoint_cover: Option<(u32, Vec<u32>)>,
}

/// How the open that loads a checkpoint goes on.
pub(crate) struct LoadOptions {
    /// Expired entries are left out (a read-only open) instead of kept for
    /// the first sweep to log.
    pub drop_expired: bool,
    pub now_ms: u64,
    pub use_mmap: bool,
    /// Replay leaves the files as they are (a torn tail is not cut).
    pub read_only: bool,
}

/// Reads and checks the checkpoint `file` (`len` bytes) against the
/// directory's segments (`ids`, from its listing), builds the keydir from
/// it and replays the records written after it.
///
/// # Errors
/// Why the checkpoint cannot be used.
pub(crate) fn load(
    vfs: &dyn Vfs,
    dir: &Path,
    file: &dyn VFile,
    len: u64,
    ids: &[u32],
    how: &LoadOptions,
) -> Result<FromCheckpoint, Rejected> {
    let read = |at: u64, buf: &mut [u8]| fs::read_exact_at(file, buf, at);
    let (layout, deltas, whole_len) = read_layout(dir, file, len)?;
    let h = &layout.header;
    let now = after_deltas(h, &deltas)?;
    let appended = check_files(vfs, dir, &now, ids)? || !deltas.is_empty();
    // Replay finds a key's slot by its hash bits: every slot stays until
    // it is done, expired or not.
    let build_how = LoadOptions {
        drop_expired: how.drop_expired && !appended,
        ..*how
    };
    // The records after it are read while the slots load.
    let (built, scanned) = std::thread::scope(|sc| {
        let scan = appended.then(|| sc.spawn(|| super::replay::scan(vfs, dir, &now, ids)));
        let built = build_keydir(&layout, &read, &build_how);
        let scanned = scan.map(|t| {
            t.join().unwrap_or_else(|_| {
                Err(super::replay::NotReplayed(
                    CheckpointUse::Damaged,
                    "the replay scan panicked".into(),
                ))
            })
        });
        (built, scanned)
    });
    let (keydir, mut expired) = built?;
    let mut seg_stats: BTreeMap<u32, SegmentSpace> =
        now.segments.iter().map(|s| (s.id, space_of(s))).collect();
    let mut active = now
        .active
        .and_then(|id| now.segments.iter().find(|s| s.id == id))
        .map(|s| RecoveredActive {
            id: s.id,
            len: s.data_len,
            salt: s.salt,
            allocated: s.file_len,
            // A clean close ended it with its close marks (a segment
            // without records gets none).
            closed_clean: s.data_len > SEGMENT_HEADER_LEN,
            file: None,
        });
    let mut max_seq = h.max_seq;
    let mut replayed = None;
    if let Some(scanned) = scanned {
        let scanned = scanned.map_err(|n| Rejected::new(n.0, n.1))?;
        let relocated = super::replay::relocate(&keydir, &deltas);
        let r = super::replay::apply(
            vfs,
            dir,
            &now,
            scanned,
            &keydir,
            &mut seg_stats,
            how.read_only,
        )
        .map_err(|n| Rejected::new(n.0, n.1))?;
        super::replay::check_relocated(&keydir, &relocated, &r, how.now_ms)
            .map_err(|n| Rejected::new(n.0, n.1))?;
        max_seq = max_seq.max(r.max_seq);
        active = r.active;
        if how.drop_expired {
            expired = 0;
            drop_expired(&keydir, how.now_ms);
        }
        replayed = Some(r.summary);
    }
    let active_id = active.as_ref().map(|a| a.id);
    let sealed = ids.iter().copied().filter(|&id| Some(id) != active_id);
    let segments = open_sealed(vfs, dir, sealed, &now, replayed.as_ref(), how.use_mmap)?;
    Ok(FromCheckpoint {
        keydir,
        seg_stats,
        segments,
        active,
        max_seq,
        expired_kept: expired,
        replayed,
        checkpoint_len: whole_len,
        checkpoint_cover: now.active.map(|a| {
            let sealed = now.segments.iter().map(|s| s.id).filter(|&id| id != a);
            (a, sealed.collect())
        }),
    })
}

/// Reads the checkpoint `file`'s header, footer and compaction deltas
/// and checks that this build can use it. Returns its layout, its deltas
/// and its length up to the last whole delta (all of `len` but for a torn
/// last delta, which is left out: see `checkpoint::decode_deltas`).
///
/// # Errors
/// Why the checkpoint cannot be used.
fn read_layout(
    dir: &Path,
    file: &dyn VFile,
    len: u64,
) -> Result<(checkpoint::Layout, Vec<checkpoint::Delta>, u64), Rejected> {
    let unreadable = |e: io::Error| Rejected::new(CheckpointUse::Unreadable, e.to_string());
    let read = |at: u64, buf: &mut [u8]| fs::read_exact_at(file, buf, at);
    let mut prefix = [0u8; 16];
    read(0, &mut prefix[..len.min(16) as usize]).map_err(unreadable)?;
    let mut head = vec![0u8; checkpoint::header_len(&prefix, len)?];
    read(0, &mut head).map_err(unreadable)?;
    let layout = checkpoint::decode_header(&head, len)?;
    let mut footer = [0u8; checkpoint::FOOTER_LEN];
    read(layout.footer_at(), &mut footer).map_err(unreadable)?;
    layout.check_footer(&footer, checkpoint::header_crc(&head))?;
    check_compatible(&layout.header)?;
    let deltas_at = layout.footer_at() + checkpoint::FOOTER_LEN as u64;
    let mut tail = vec![0u8; (len - deltas_at) as usize];
    read(deltas_at, &mut tail).map_err(unreadable)?;
    let decoded = checkpoint::decode_deltas(&tail, deltas_at)?;
    // The checkpoint ends before a torn last delta: a compaction appending
    // to it later finds the file longer than that, and drops the
    // checkpoint instead of appending after the torn bytes.
    if let Some(at) = decoded.torn_at {
        log::info!(
            "{}: leaving out the compaction delta cut short at byte {at} \
             (a compaction stopped while appending it)",
            path(dir).display()
        );
    }
    Ok((layout, decoded.list, decoded.torn_at.unwrap_or(len)))
}

/// Opens the sealed segments `ids` for reading, each with the salt the
/// checkpoint (after its deltas: `now`) or the replay (`replayed`) gives.
///
/// # Errors
/// A segment neither names is stale; one that cannot be opened,
/// unreadable.
fn open_sealed(
    vfs: &dyn Vfs,
    dir: &Path,
    ids: impl Iterator<Item = u32>,
    now: &Header,
    replayed: Option<&Summary>,
    use_mmap: bool,
) -> Result<BTreeMap<u32, Arc<Segment>>, Rejected> {
    let mut segments = BTreeMap::new();
    for id in ids {
        let salt = now
            .segments
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.salt)
            .or_else(|| replayed.and_then(|r| r.salt_of(id)));
        let Some(salt) = salt else {
            return Err(Rejected::stale(format!("segment {id} was not read")));
        };
        let seg = Segment::open_sealed(vfs, dir, id, use_mmap, salt)
            .map_err(|e| Rejected::new(CheckpointUse::Unreadable, e.to_string()))?;
        segments.insert(id, Arc::new(seg));
    }
    Ok(segments)
}

/// A segment's accounting as a checkpoint gives it.
fn space_of(s: &SegmentInfo) -> SegmentSpace {
    SegmentSpace {
        total: s.data_len,
        dead: s.dead,
        kept: s.kept,
        hint: s.hint,
        min_seq: s.min_seq,
        damaged: false,
    }
}

/// The header as it would read after the compactions of `deltas`: their
/// retired segments gone, their written ones added.
///
/// # Errors
/// A delta retires a segment that is not there, or writes one that is.
pub(crate) fn after_deltas(h: &Header, deltas: &[checkpoint::Delta]) -> Result<Header, Rejected> {
    let mut now = h.clone();
    for d in deltas {
        for id in &d.retired {
            let Some(i) = now.segments.iter().position(|s| s.id == *id) else {
                return Err(Rejected::new(
                    CheckpointUse::Damaged,
                    format!("a compaction delta retires segment {id}, which it does not cover"),
                ));
            };
            if Some(*id) == now.active {
                return Err(Rejected::new(
                    CheckpointUse::Damaged,
                    "a compaction delta retires the active segment",
                ));
            }
            now.segments.remove(i);
        }
        for s in &d.written {
            if now.segments.iter().any(|c| c.id == s.id) {
                return Err(Rejected::new(
                    CheckpointUse::Damaged,
                    format!("a compaction delta writes segment {}, which exists", s.id),
                ));
            }
            now.segments.push(*s);
        }
    }
    now.segments.sort_by_key(|s| s.id);
    Ok(now)
}

/// Removes the expired entries (a read-only open after a replay).
fn drop_expired(keydir: &KeyDir, now_ms: u64) {
    for i in 0..keydir.shard_count() {
        keydir
            .write_shard(i)
            .retain(|e| e.is_expired(now_ms), |_| {});
    }
}

/// Decodes a checkpoint and checks that this build can use it: its slot
/// length and its hash function (the probe).
///
/// # Errors
/// Why it cannot be used.
pub(crate) fn decode_and_check(bytes: &[u8]) -> Result<Decoded<'_>, Rejected> {
    let d = checkpoint::decode(bytes)?;
    check_compatible(d.header())?;
    Ok(d)
}

/// Whether this build can use a checkpoint with header `h`: its slot
/// length and its hash function (the probe).
fn check_compatible(h: &Header) -> Result<(), Rejected> {
    if usize::from(h.slot_len) != SLOT_BYTES {
        return Err(Rejected::new(
            CheckpointUse::Incompatible,
            format!(
                "its slots are {} bytes, this build's {SLOT_BYTES}",
                h.slot_len
            ),
        ));
    }
    if KeyDir::hash_with_seed(h.seed, PROBE_KEY) != h.probe {
        return Err(Rejected::new(
            CheckpointUse::Incompatible,
            "written by a build with another hash function",
        ));
    }
    Ok(())
}

/// Reads `buf.len()` bytes at an offset of the checkpoint file.
type ReadAt<'a> = dyn Fn(u64, &mut [u8]) -> io::Result<()> + Sync + 'a;

/// A [`ReadAt`] of a checkpoint in memory.
fn in_memory(bytes: &[u8]) -> impl Fn(u64, &mut [u8]) -> io::Result<()> + Sync + '_ {
    move |at, buf| {
        let at = at as usize;
        bytes
            .get(at..at + buf.len())
            .map(|b| buf.copy_from_slice(b))
            .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
    }
}

/// Checks that the directory holds the segments the checkpoint covers,
/// each with its salt, the sealed ones with their length and their hint
/// file (if they had one, the same), the active one at least as long as
/// its cut and of this build's format version; other segments only after
/// the active one. Returns whether anything was written after the
/// checkpoint (records after a cut, or newer segments): then open replays
/// them.
///
/// # Errors
/// What differs.
pub(crate) fn check_files(
    vfs: &dyn Vfs,
    dir: &Path,
    h: &Header,
    ids: &[u32],
) -> Result<bool, Rejected> {
    let covered: Vec<u32> = h.segments.iter().map(|s| s.id).collect();
    let newer: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|id| covered.binary_search(id).is_err())
        .collect();
    let missing = covered.iter().any(|id| ids.binary_search(id).is_err());
    let out_of_place = newer.iter().any(|&id| h.active.is_none_or(|a| id < a));
    if missing || out_of_place {
        return Err(Rejected::stale(format!(
            "it covers segments {covered:?} (active {:?}), the directory holds {ids:?}",
            h.active
        )));
    }
    let mut appended = !newer.is_empty();
    let mut newest_writer_segment = None;
    for s in &h.segments {
        let p = names::segment_path(dir, s.id);
        let stale = |what: String| Rejected::stale(format!("{}: {what}", p.display()));
        let f = vfs
            .open(&p, OpenMode::Read)
            .map_err(|e| stale(e.to_string()))?;
        let len = f.len().map_err(|e| stale(e.to_string()))?;
        let is_active = Some(s.id) == h.active;
        if (is_active && len < s.data_len) || (!is_active && len != s.file_len) {
            return Err(stale(format!("{len} bytes, it covers {}", s.file_len)));
        }
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        fs::read_exact_at(&*f, &mut header, 0).map_err(|e| stale(e.to_string()))?;
        let info = segment::header_info(&p, &header, s.id).map_err(|e| stale(e.to_string()))?;
        if info.salt != s.salt {
            return Err(stale("another salt (a different file)".into()));
        }
        let hint = match vfs
            .open(&names::hint_path(dir, s.id), OpenMode::Read)
            .and_then(|h| h.len())
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(stale(e.to_string())),
        };
        if s.hint != 0 && hint != s.hint {
            // The index may have been built from the hint it replaced (a
            // hint deleted because it disagrees with its segment, say). A
            // hint written since, of a segment that had none, is the
            // background thread's.
            return Err(stale(format!(
                "its hint file is {hint} bytes, it covers one of {}",
                s.hint
            )));
        }
        if !info.compacted {
            newest_writer_segment = Some((s.id, info.version));
        }
        if is_active {
            appended |= len != s.file_len
                || h.cuts.iter().any(|&c| c != s.data_len)
                || !zeros_after(&*f, s.data_len, len).map_err(|e| stale(e.to_string()))?;
        }
    }
    let active = newest_writer_segment.map(|(id, _)| id);
    if active != h.active {
        return Err(Rejected::stale(format!(
            "its active segment is {:?}, the newest it covers is {active:?}",
            h.active
        )));
    }
    if newest_writer_segment.is_some_and(|(_, v)| v != segment::FORMAT_VERSION) {
        return Err(Rejected::stale(
            "the active segment is of an older format version",
        ));
    }
    Ok(appended)
}

/// Whether only zeros (or nothing) follow byte `at` of `f`, a file of
/// `len` bytes, for a record header's length: no record was appended there.
fn zeros_after(f: &dyn VFile, at: u64, len: u64) -> io::Result<bool> {
    let n = len.saturating_sub(at).min(u64::from(RECORD_HEADER_LEN));
    let mut tail = vec![0u8; n as usize];
    fs::read_exact_at(f, &mut tail, at)?;
    Ok(tail.iter().all(|&b| b == 0))
}

/// Blocks read at a time while the keydir is built.
const BLOCKS_PER_READ: usize = 4;

/// Builds the keydir from the checkpoint's slots, read through `read` a
/// few blocks at a time, checking every block's CRC and every slot's
/// place: two threads, each reading and inserting half of the slots (by
/// shard), so that one's reading overlaps the other's inserting. Returns
/// it and the number of expired entries kept.
fn build_keydir(
    layout: &Layout,
    read: &ReadAt<'_>,
    how: &LoadOptions,
) -> Result<(KeyDir, u64), Rejected> {
    let h = &layout.header;
    let places = Places::of(h);
    // The shards split where half of the slots are behind.
    let total = h.total_slots();
    let mut behind = 0u64;
    let split = h
        .shard_slots
        .iter()
        .position(|&n| {
            behind += n;
            behind * 2 >= total
        })
        .map_or(SHARDS, |i| i + 1);
    let stride = layout.block_stride();
    let build = |range: std::ops::Range<usize>| -> Result<(Vec<Shard>, u64), Rejected> {
        let mut expired = 0u64;
        let mut shards = Vec::with_capacity(range.len());
        let mut buf = Vec::new();
        for i in range {
            let mut b = ShardBuilder::new(i, h.shard_slots[i] as usize);
            let (start, len) = layout.shard_span(i);
            let mut at = 0u64;
            while at < len {
                let n = (len - at).min((stride * BLOCKS_PER_READ) as u64) as usize;
                buf.resize(n, 0);
                read(start + at, &mut buf)
                    .map_err(|e| Rejected::new(CheckpointUse::Unreadable, e.to_string()))?;
                for block in layout.blocks(&buf, start + at) {
                    b.add(block?, |e| places.accept(e, how, &mut expired))
                        .map_err(|why| Rejected::new(CheckpointUse::Damaged, why))?;
                }
                at += n as u64;
            }
            shards.push(b.finish());
        }
        Ok((shards, expired))
    };
    let (first, second) = if total >= 100_000 {
        std::thread::scope(|s| {
            let second = s.spawn(|| build(split..SHARDS));
            let first = build(0..split);
            let second = second.join().unwrap_or_else(|_| {
                Err(Rejected::new(CheckpointUse::Damaged, "a loader panicked"))
            });
            (first, second)
        })
    } else {
        (build(0..split), build(split..SHARDS))
    };
    let ((mut shards, e1), (rest, e2)) = (first?, second?);
    shards.extend(rest);
    Ok((KeyDir::from_shards(h.seed, shards), e1 + e2))
}

/// For the fuzz target: the keydir `d`'s slots build (its probe
/// unchecked), and how many entries it holds.
///
/// # Errors
/// Why the slots were refused.
#[cfg(feature = "__test_hooks")]
pub(crate) fn entries_for_fuzzing(bytes: &[u8], d: &Decoded<'_>) -> Result<u64, String> {
    if usize::from(d.header().slot_len) != SLOT_BYTES {
        return Err("another slot length".into());
    }
    let how = LoadOptions {
        drop_expired: false,
        now_ms: 0,
        use_mmap: false,
        read_only: true,
    };
    let (k, _) = build_keydir(&d.layout, &in_memory(bytes), &how).map_err(|r| r.detail)?;
    let n = k.raw_len();
    if n > d.header().total_slots() {
        return Err("more entries than slots".into());
    }
    Ok(n)
}

/// The segments a checkpoint covers, for checking each slot's place: a
/// table by id when the ids are close together, else a sorted list.
struct Places {
    min_id: u32,
    /// The data length of segment `min_id + i` (0: not covered).
    by_id: Vec<u64>,
    /// Every segment's id and data length, when their ids are too far
    /// apart for `by_id`.
    list: Vec<(u32, u64)>,
}

impl Places {
    fn of(h: &Header) -> Places {
        let min_id = h.segments.first().map_or(0, |s| s.id);
        let max_id = h.segments.last().map_or(0, |s| s.id);
        // Ids are ascending; the table is at most 1M entries (a
        // store has far fewer segments, and their ids stay close).
        let span = (max_id - min_id) as usize + 1;
        if span > 1 << 20 {
            return Places {
                min_id,
                by_id: Vec::new(),
                list: h.segments.iter().map(|s| (s.id, s.data_len)).collect(),
            };
        }
        let mut by_id = vec![0u64; span];
        for s in &h.segments {
            by_id[(s.id - min_id) as usize] = s.data_len;
        }
        Places {
            min_id,
            by_id,
            list: Vec::new(),
        }
    }

    /// The data length of segment `id`, if covered.
    fn data_len(&self, id: u32) -> Option<u64> {
        if !self.list.is_empty() {
            let i = self.list.binary_search_by_key(&id, |&(id, _)| id).ok()?;
            return Some(self.list[i].1);
        }
        let i = id.checked_sub(self.min_id)? as usize;
        self.by_id.get(i).copied().filter(|&n| n > 0)
    }

    /// Whether entry `e` is kept (a read-only open leaves expired ones
    /// out; a writable one keeps and counts them).
    fn accept(
        &self,
        e: &IndexEntry,
        how: &LoadOptions,
        expired: &mut u64,
    ) -> Result<bool, &'static str> {
        match self.data_len(e.file_id) {
            Some(len) if e.offset >= SEGMENT_HEADER_LEN && e.offset < len => {}
            Some(_) => return Err("a slot points outside its segment's records"),
            None => return Err("a slot points into a segment it does not cover"),
        }
        if e.is_expired(how.now_ms) {
            if how.drop_expired {
                return Ok(false);
            }
            *expired += 1;
        }
        Ok(true)
    }
}

/// For `cairn stats`: when the checkpoint `bytes` was written and how many
/// keys it holds (when its header checks out), and whether an open of the
/// directory as `listing` lists it would use it.
pub(crate) fn would_use(
    vfs: &dyn Vfs,
    dir: &Path,
    bytes: &[u8],
    listing: &super::Listing,
) -> (Option<(u64, u64)>, CheckpointUse) {
    let d = match decode_and_check(bytes) {
        Ok(d) => d,
        Err(r) => return (None, r.why),
    };
    let about = Some((d.header().written_at_ms, d.header().total_slots()));
    if d.check_all_blocks().is_err() {
        return (about, CheckpointUse::Damaged);
    }
    if listing.manifest {
        return (about, CheckpointUse::Stale);
    }
    let now = match after_deltas(d.header(), &d.deltas) {
        Ok(h) => h,
        Err(r) => return (about, r.why),
    };
    match check_files(vfs, dir, &now, &listing.segments) {
        Ok(false) if d.deltas.is_empty() => (about, CheckpointUse::Used),
        Ok(_) => (about, CheckpointUse::Replayed),
        Err(r) => (about, r.why),
    }
}

/// What `verify` found of a checkpoint.
pub(crate) enum Checked {
    /// It matches the files, and its entries are the index the files give.
    Fine,
    /// Open would not use it (damaged, incompatible or stale): why.
    Unusable(String),
    /// Open would use it, but its entries differ from the index rebuilt
    /// from hints and segments: the first difference.
    Mismatch(String),
}

/// For `verify`: decodes the checkpoint `bytes`, checks every block and
/// its deltas, and, unless a writer has the store open (`live`: then the
/// files move on while they are read), the match rules against the held
/// files `pinned`, and compares its entries after the replay an open
/// would do (hash bits, place and expiry) with the index rebuilt from
/// their hints and segments with the same hash seed.
///
/// # Errors
/// A held file cannot be read.
pub(crate) fn compare_with_files(
    vfs: &dyn Vfs,
    dir: &Path,
    bytes: &[u8],
    pinned: &super::Pinned,
    now_ms: u64,
    live: bool,
) -> crate::error::Result<Checked> {
    let d = match decode_and_check(bytes) {
        Ok(d) => d,
        Err(r) => return Ok(Checked::Unusable(r.detail)),
    };
    if let Err(e) = d.check_all_blocks() {
        return Ok(Checked::Unusable(e.to_string()));
    }
    let now = match after_deltas(d.header(), &d.deltas) {
        Ok(h) => h,
        Err(r) => return Ok(Checked::Unusable(r.detail)),
    };
    if live {
        // Beside a writer: the bytes check out; what they describe moves.
        return Ok(Checked::Fine);
    }
    if pinned.listing.manifest {
        return Ok(Checked::Unusable("a compaction was interrupted".into()));
    }
    let ids: Vec<u32> = pinned.segments.keys().copied().collect();
    let appended = match check_files(vfs, dir, &now, &ids) {
        Ok(a) => a || !d.deltas.is_empty(),
        Err(r) => return Ok(Checked::Unusable(r.detail)),
    };
    let how = LoadOptions {
        drop_expired: false,
        now_ms,
        use_mmap: false,
        read_only: true,
    };
    let from_checkpoint = match build_keydir(&d.layout, &in_memory(bytes), &how) {
        Ok((k, _)) => k,
        Err(r) => return Ok(Checked::Unusable(r.detail)),
    };
    if appended {
        // The records after it, replayed as an open would (read-only).
        let mut stats = BTreeMap::new();
        let relocated = super::replay::relocate(&from_checkpoint, &d.deltas);
        let replayed =
            super::replay::replay(vfs, dir, &now, &ids, &from_checkpoint, &mut stats, true)
                .and_then(|r| {
                    super::replay::check_relocated(&from_checkpoint, &relocated, &r, now_ms)
                });
        if let Err(n) = replayed {
            return Ok(Checked::Unusable(n.1));
        }
    }
    let loads = super::load::load_all(
        vfs,
        dir,
        &ids,
        pinned.find_active(),
        crate::options::RecoveryMode::Strict,
        true,
        false,
        Some(&pinned.segments),
    )?;
    let rebuilt = super::merge::build_keydir_seeded(
        &loads,
        now_ms,
        super::merge::ExpiredAtOpen::Keep,
        Some(d.header().seed),
    )
    .keydir;
    Ok(match first_difference(&from_checkpoint, &rebuilt) {
        None => Checked::Fine,
        Some(d) => Checked::Mismatch(d),
    })
}

/// The first entry (hash bits, segment, offset, expiry) in one index and
/// not the other, if any.
fn first_difference(a: &KeyDir, b: &KeyDir) -> Option<String> {
    let entries = |k: &KeyDir, i: usize| {
        let mut v = Vec::new();
        k.read_shard(i).for_each_hashed(|h, e| {
            v.push((h, e.file_id, e.offset, e.expires_at_ms));
        });
        v.sort_unstable();
        v
    };
    for i in 0..SHARDS {
        let (x, y) = (entries(a, i), entries(b, i));
        if x == y {
            continue;
        }
        let only = |x: &[(u64, u32, u64, u64)], y: &[(u64, u32, u64, u64)]| {
            x.iter().find(|e| y.binary_search(e).is_err()).copied()
        };
        let describe =
            |(_, f, o, exp): (u64, u32, u64, u64)| format!("segment {f} offset {o} (expiry {exp})");
        return Some(match (only(&x, &y), only(&y, &x)) {
            (Some(e), _) => format!(
                "it holds an entry at {} that the hints and segments do not give",
                describe(e)
            ),
            (None, Some(e)) => format!(
                "it lacks the entry at {} that the hints and segments give",
                describe(e)
            ),
            (None, None) => format!("shard {i} holds entries twice"),
        });
    }
    None
}
