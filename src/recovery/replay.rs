//! Replay after an index checkpoint: the records written after its cuts,
//! applied to the index it loaded, without reading any older record but
//! on a rare collision of hash bits (docs/design.md, "Replay after a
//! crash").
//!
//! The checkpoint's shard `i` holds the index as of offset `cuts[i]` of
//! its active segment `A`. The records to replay are those of `A` at or
//! after their key's shard's cut, then every record of the writer
//! segments after `A`. They are grouped by key, in log order (which is
//! sequence order). A key's last record is its state; its first says
//! whether the key had an entry at the cut (`FLAG_REPLACES`), so its slot
//! is found by its hash bits alone: the only slot with them, when there
//! is exactly one (candidates are read only when there are several, or
//! when the key had none and a slot of another key shares its bits).
//!
//! Anything unexpected (a segment of an older format or written by
//! compaction, damage, fewer records than the cuts promise) rejects the
//! checkpoint, and recovery opens from hints and segments instead.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::checkpoint::{Delta, Header};
use crate::format::hint::HintEntry;
use crate::format::names;
use crate::format::record::{self, Decoded, RecordKind, RECORD_HEADER_LEN};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, Vfs};
use crate::index::keydir::{IndexEntry, KeyDir, RecordSource};
use crate::options::RecoveryMode;
use crate::storage::space::SegmentSpace;

use super::active::fix_active_tail;
use super::report::CheckpointUse;
use super::scan::scan_segment_from;
use super::segment_load::SegmentLoad;
use super::RecoveredActive;

/// What replay did.
pub(crate) struct Replayed {
    /// The active segment as the open leaves it.
    pub active: Option<RecoveredActive>,
    /// The highest sequence number replayed (0: none).
    pub max_seq: u64,
    pub summary: Summary,
}

/// What replay read, for the report and the next checkpoint.
pub(crate) struct Summary {
    /// Records read after the cuts.
    pub records: u64,
    /// Log bytes after the lowest cut: what a crash now would replay.
    pub log_bytes: u64,
    /// A torn tail cut off the active segment.
    pub truncated: Option<(std::path::PathBuf, u64, u64)>,
    /// Batch records discarded (an uncommitted batch at the end).
    pub discarded_batch_records: u64,
    /// The salt of every segment read.
    salts: Vec<(u32, u32)>,
}

impl Summary {
    /// The salt of segment `id`, if replay read it.
    pub(crate) fn salt_of(&self, id: u32) -> Option<u32> {
        self.salts.iter().find(|&&(i, _)| i == id).map(|&(_, s)| s)
    }
}

/// Why replay could not be done: the checkpoint is not used.
pub(crate) struct NotReplayed(pub CheckpointUse, pub String);

impl From<Error> for NotReplayed {
    fn from(e: Error) -> NotReplayed {
        NotReplayed(CheckpointUse::Stale, e.to_string())
    }
}

/// Replays the log after the checkpoint `h` onto `keydir` (built from its
/// slots, expired entries kept) and `seg_stats` (its accounting), for a
/// directory whose segments are `ids`. Cuts a torn tail off the active
/// segment unless `read_only`.
///
/// # Errors
/// Why the checkpoint cannot be used; nothing was written then.
pub(crate) fn replay(
    vfs: &dyn Vfs,
    dir: &Path,
    h: &Header,
    ids: &[u32],
    keydir: &KeyDir,
    seg_stats: &mut BTreeMap<u32, SegmentSpace>,
    read_only: bool,
) -> std::result::Result<Replayed, NotReplayed> {
    let stale = |why: String| NotReplayed(CheckpointUse::Stale, why);
    let Some(a) = h.active else {
        return Err(stale("it names no active segment".into()));
    };
    let min_cut = h.cuts.iter().copied().min().unwrap_or(SEGMENT_HEADER_LEN);
    let max_cut = h.cuts.iter().copied().max().unwrap_or(SEGMENT_HEADER_LEN);
    // The checkpoint's active segment and every segment after it that it
    // does not cover (one a compaction wrote is covered, by the header or
    // a delta): the log after the cuts, in order.
    let covered = |id: u32| h.segments.iter().any(|s| s.id == id);
    let replayed: Vec<u32> = ids
        .iter()
        .copied()
        .filter(|&id| id == a || (id > a && !covered(id)))
        .collect();
    for &id in &replayed {
        // A compaction output the checkpoint does not cover (one whose
        // delta a crash prevented): its records are out of log order.
        if header_of(vfs, dir, id)?.compacted {
            return Err(stale(format!(
                "segment {id} was written by a compaction after it"
            )));
        }
    }
    let last = *replayed.last().unwrap_or(&a);
    let mut loads = Vec::with_capacity(replayed.len());
    for &id in &replayed {
        let from = if id == a { min_cut } else { SEGMENT_HEADER_LEN };
        let load = scan_from(vfs, dir, id, id == last, from)?;
        if load.version != segment::FORMAT_VERSION || load.compacted {
            return Err(stale(format!(
                "segment {id} is of format version {} or written by compaction",
                load.version
            )));
        }
        if !load.skipped.is_empty() || load.needs_header {
            return Err(stale(format!("segment {id} is damaged")));
        }
        if id == a && load.len < max_cut {
            return Err(stale(format!(
                "segment {id} ends at {}, before the checkpoint's cut {max_cut}",
                load.len
            )));
        }
        loads.push(load);
    }
    let groups = group_by_key(keydir, h, a, &loads);
    let src = Files::new(vfs, dir, h, &loads);
    let mut live = BTreeMap::<u32, u64>::new();
    for (key, g) in &groups {
        let new = (!g.last.tombstone).then_some(IndexEntry {
            expires_at_ms: g.last.expires_at_ms,
            offset: g.last.offset,
            file_id: g.file,
        });
        keydir
            .replay(g.hash, key, g.replaces, new, &src)
            .map_err(|e| stale(format!("replaying a record failed: {e}")))?;
        if new.is_some() {
            *live.entry(g.file).or_default() +=
                record::encoded_len(key.len() as u32, g.last.value_len);
        }
    }
    account(seg_stats, a, max_cut, &loads, &live);
    drop(groups);
    let mut summary = Summary {
        records: loads.iter().map(|l| l.entries.len() as u64).sum(),
        log_bytes: loads
            .iter()
            .map(|l| l.len.saturating_sub(if l.id == a { min_cut } else { 0 }))
            .sum(),
        truncated: None,
        discarded_batch_records: loads.iter().map(|l| l.discarded_batch_records).sum(),
        salts: loads.iter().map(|l| (l.id, l.salt)).collect(),
    };
    let max_seq = loads.iter().map(|l| l.max_seq).max().unwrap_or(0);
    let tail = fix_active_tail(vfs, dir, loads.last_mut(), read_only)?;
    summary.truncated = tail.truncated;
    Ok(Replayed {
        active: loads.last().map(|l| RecoveredActive::of(l, tail.allocated)),
        max_seq,
        summary,
    })
}

/// The header of segment `id`.
fn header_of(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
) -> std::result::Result<segment::HeaderInfo, NotReplayed> {
    let path = names::segment_path(dir, id);
    let f = vfs
        .open(&path, OpenMode::Read)
        .map_err(|e| io_err(&path, e))?;
    let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
    fs::read_exact_at(&*f, &mut head, 0).map_err(|e| io_err(&path, e))?;
    Ok(segment::header_info(&path, &head, id)?)
}

/// Reads segment `id` (from `from` on: the bytes before are not read) and
/// scans it, strictly.
fn scan_from(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
    active: bool,
    from: u64,
) -> std::result::Result<SegmentLoad, NotReplayed> {
    let path = names::segment_path(dir, id);
    let f = vfs
        .open(&path, OpenMode::Read)
        .map_err(|e| io_err(&path, e))?;
    let len = f.len().map_err(|e| io_err(&path, e))?;
    if len > u64::from(u32::MAX) || from > len {
        return Err(NotReplayed(
            CheckpointUse::Stale,
            format!("{} is {len} bytes, its cut is at {from}", path.display()),
        ));
    }
    let mut bytes = vec![0u8; len as usize];
    let head = (SEGMENT_HEADER_LEN as usize).min(bytes.len());
    fs::read_exact_at(&*f, &mut bytes[..head], 0).map_err(|e| io_err(&path, e))?;
    fs::read_exact_at(&*f, &mut bytes[from as usize..], from).map_err(|e| io_err(&path, e))?;
    Ok(scan_segment_from(
        &path,
        id,
        &bytes,
        active,
        RecoveryMode::Strict,
        from as usize,
    )?)
}

fn io_err(path: &Path, e: io::Error) -> NotReplayed {
    NotReplayed(
        CheckpointUse::Unreadable,
        format!("{}: {e}", path.display()),
    )
}

/// Moves the slots that point into segments the compactions of `deltas`
/// retired to where those compactions copied their records. Returns the
/// retired segments (a slot still in one is checked after replay by
/// [`check_relocated`]).
pub(crate) fn relocate(keydir: &KeyDir, deltas: &[Delta]) -> Vec<u32> {
    let mut retired: Vec<u32> = deltas
        .iter()
        .flat_map(|d| d.retired.iter().copied())
        .collect();
    retired.sort_unstable();
    if retired.is_empty() {
        return retired;
    }
    // Where each original place ended up, through every delta in order
    // (a copy may be copied again by a later compaction).
    type Place = (u32, u32);
    let mut to: hashbrown::HashMap<Place, Place, foldhash::fast::RandomState> =
        hashbrown::HashMap::default();
    let mut from: hashbrown::HashMap<Place, Place, foldhash::fast::RandomState> =
        hashbrown::HashMap::default();
    for d in deltas {
        for &(of, oo, nf, no) in &d.moves {
            let origin = from.remove(&(of, oo)).unwrap_or((of, oo));
            to.insert(origin, (nf, no));
            from.insert((nf, no), origin);
        }
    }
    drop(from);
    keydir.relocate(|file_id, offset| {
        if retired.binary_search(&file_id).is_err() {
            return None;
        }
        let (f, o) = *to.get(&(file_id, u32::try_from(offset).ok()?))?;
        Some((f, u64::from(o)))
    });
    retired
}

/// After replay, no slot may point into a retired segment: one whose
/// record a compaction dropped as dead was replaced by the replay (its
/// newer record is after the cut), and one of an expired record that a
/// compaction dropped without a trace is removed here. Anything else means
/// the checkpoint does not match the log.
///
/// # Errors
/// A live slot points into a retired segment.
pub(crate) fn check_relocated(
    keydir: &KeyDir,
    retired: &[u32],
    now_ms: u64,
) -> std::result::Result<(), NotReplayed> {
    if retired.is_empty() {
        return Ok(());
    }
    let gone = |e: &IndexEntry| retired.binary_search(&e.file_id).is_ok();
    let mut left = 0u64;
    for i in 0..keydir.shard_count() {
        let mut shard = keydir.write_shard(i);
        shard.retain(|e| gone(e) && e.is_expired(now_ms), |_| {});
        shard.for_each(|e| left += u64::from(gone(e)));
    }
    if left > 0 {
        return Err(NotReplayed(
            CheckpointUse::Stale,
            format!("{left} entries point into segments a compaction deleted"),
        ));
    }
    Ok(())
}

/// One key's records after its cut.
struct Group<'a> {
    hash: u64,
    /// Its first record carries `FLAG_REPLACES`.
    replaces: bool,
    /// Its last record, and the segment it is in.
    last: &'a HintEntry,
    file: u32,
}

/// The records after their shard's cut, grouped by key, in log order.
fn group_by_key<'a>(
    keydir: &KeyDir,
    h: &Header,
    a: u32,
    loads: &'a [SegmentLoad],
) -> hashbrown::HashMap<&'a [u8], Group<'a>, foldhash::fast::RandomState> {
    let mut groups: hashbrown::HashMap<&[u8], Group<'_>, foldhash::fast::RandomState> =
        hashbrown::HashMap::default();
    for l in loads {
        for e in &l.entries {
            let hash = keydir.hash(&e.key);
            if l.id == a && e.offset < h.cuts[KeyDir::shard_of_hash(hash)] {
                continue; // in the checkpoint already
            }
            groups
                .entry(&e.key)
                .and_modify(|g| {
                    g.last = e;
                    g.file = l.id;
                })
                .or_insert(Group {
                    hash,
                    replaces: e.replaces,
                    last: e,
                    file: l.id,
                });
        }
    }
    groups
}

/// Updates the segments' accounting for what was replayed: segment `a`
/// grows from `max_cut` and every later one is new; their bytes are dead
/// but for the records the index now points at (`live`, by segment). The
/// records the replay replaced in the covered segments are not counted
/// as dead (their lengths would take a read each): compaction finds them
/// when it copies the segment.
fn account(
    seg_stats: &mut BTreeMap<u32, SegmentSpace>,
    a: u32,
    max_cut: u64,
    loads: &[SegmentLoad],
    live: &BTreeMap<u32, u64>,
) {
    for l in loads {
        let live_here = live.get(&l.id).copied().unwrap_or(0);
        let total = l.len.max(SEGMENT_HEADER_LEN);
        let s = seg_stats.entry(l.id).or_insert_with(SegmentSpace::empty);
        if l.id == a {
            let grown = total.saturating_sub(max_cut);
            // Live bytes before `max_cut` were live in the checkpoint's
            // accounting already; only what grew is new.
            let live_after: u64 = l
                .entries
                .iter()
                .filter(|e| e.offset >= max_cut)
                .map(|e| record::encoded_len(e.key.len() as u32, e.value_len))
                .sum::<u64>()
                .min(live_here);
            s.dead += grown.saturating_sub(live_after);
        } else {
            s.dead = total.saturating_sub(SEGMENT_HEADER_LEN + live_here);
            s.min_seq = l.min_seq;
        }
        s.total = total;
    }
}

/// Reads the records of candidate slots (the rare case of several slots
/// with a key's hash bits, or a slot with the bits of a key that had
/// none): one `pread` of the whole record, its checksum verified. Files
/// are opened as needed.
struct Files<'a> {
    vfs: &'a dyn Vfs,
    dir: &'a Path,
    /// The salt of every segment a slot may point into.
    salts: BTreeMap<u32, u32>,
}

impl<'a> Files<'a> {
    fn new(vfs: &'a dyn Vfs, dir: &'a Path, h: &Header, loads: &[SegmentLoad]) -> Files<'a> {
        let covered = h.segments.iter().map(|s| (s.id, s.salt));
        // A slot replay already moved may point into a replayed segment.
        let replayed = loads.iter().map(|l| (l.id, l.salt));
        Files {
            vfs,
            dir,
            salts: covered.chain(replayed).collect(),
        }
    }
}

impl RecordSource for Files<'_> {
    fn holds_key(&self, entry: &IndexEntry, key: &[u8]) -> Result<Option<record::Header>> {
        let path = names::segment_path(self.dir, entry.file_id);
        let Some(&salt) = self.salts.get(&entry.file_id) else {
            // A slot left in a segment a compaction retired, its record
            // dropped: not this key's (a key whose record replaces one
            // finds no slot then, and the checkpoint is not used).
            return Ok(None);
        };
        let f = self.vfs.open(&path, OpenMode::Read)?;
        let mut head = [0u8; RECORD_HEADER_LEN as usize];
        fs::read_exact_at(&*f, &mut head, entry.offset)?;
        let h = record::parse_header(&head)
            .map_err(|why| Error::corruption(&path, entry.offset, why))?;
        if h.kind != RecordKind::Put || h.key_len as usize != key.len() {
            return Ok(None);
        }
        let mut rec = vec![0u8; h.len() as usize];
        fs::read_exact_at(&*f, &mut rec, entry.offset)?;
        match record::decode(&rec, salt, entry.offset) {
            Decoded::Record(r) if r.key == key => Ok(Some(h)),
            Decoded::Record(_) => Ok(None),
            _ => Err(Error::corruption(&path, entry.offset, "damaged record")),
        }
    }
}
