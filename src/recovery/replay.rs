//! Replay after an index checkpoint: the records written after its cuts,
//! applied to the index it loaded, without reading any older record but
//! on a rare collision of hash bits (docs/design.md, "Step 2, second
//! half: replay after a crash").
//!
//! The checkpoint's shard `i` holds the index as of offset `cuts[i]` of
//! its active segment `A`. First the slots are moved by the compaction
//! deltas after it ([`relocate`]). The records to replay are those of `A`
//! at or after their key's shard's cut, then every record of the writer
//! segments after `A` ([`scan`], which runs while the slots load). They
//! are grouped by key, in log order (which is sequence order). A key's
//! last record is its state; its first says whether the key had an entry
//! at the cut (`FLAG_REPLACES`), so its slot is found by its hash bits
//! alone when it is the only slot with them ([`apply`]; candidates are
//! read only when several slots share the bits). Afterwards no slot may
//! be left in a segment a compaction retired ([`check_relocated`]).
//!
//! A compaction output the checkpoint does not cover is left out as a
//! copy (its compaction stopped before deleting anything). Anything else
//! unexpected (a segment of an older format, damage, fewer records than
//! the cuts promise, a slot that cannot be matched) rejects the
//! checkpoint, and recovery opens from hints and segments instead.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::checkpoint::{Delta, Header};
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
    /// Slots in segments a compaction retired that replay replaced or
    /// removed.
    pub gone_replaced: u64,
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

/// The records after a checkpoint's cuts, read and grouped by key (no
/// index needed: this runs beside the load of the checkpoint's slots).
pub(crate) struct Scanned {
    /// The checkpoint's active segment, and its lowest and highest cut.
    a: u32,
    min_cut: u64,
    max_cut: u64,
    /// The segments read, in log order.
    loads: Vec<SegmentLoad>,
    /// Each key's records after its cut.
    groups: Vec<Group>,
    /// Uncovered compaction outputs left out (id, salt).
    copies: Vec<(u32, u32)>,
}

/// Replays the log after the checkpoint `h` onto `keydir` (built from its
/// slots, expired entries kept): [`scan`], then [`apply`].
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
    let scanned = scan(vfs, dir, h, ids)?;
    apply(vfs, dir, h, scanned, keydir, seg_stats, read_only)
}

/// Reads the records after the checkpoint `h`'s cuts, for a directory
/// whose segments are `ids`, and groups them by key.
///
/// # Errors
/// Why the checkpoint cannot be used.
pub(crate) fn scan(
    vfs: &dyn Vfs,
    dir: &Path,
    h: &Header,
    ids: &[u32],
) -> std::result::Result<Scanned, NotReplayed> {
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
    // A compaction output the checkpoint does not cover: its compaction
    // stopped before it appended its delta, so before it deleted anything
    // (a compaction that can neither append its delta nor delete the
    // checkpoint stops there too). Its records are copies of records the
    // checkpoint or the replay has where they were: it is left out, all
    // of it dead, until compaction removes it.
    let mut copies = Vec::new();
    let mut replayed_writer = Vec::with_capacity(replayed.len());
    for &id in &replayed {
        let info = header_of(vfs, dir, id)?;
        if info.compacted && id != a {
            copies.push((id, info.salt));
        } else {
            replayed_writer.push(id);
        }
    }
    let replayed = replayed_writer;
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
    let groups = group_by_key(h, a, &loads);
    Ok(Scanned {
        a,
        min_cut,
        max_cut,
        loads,
        groups,
        copies,
    })
}

/// Applies what [`scan`] found to `keydir` (built from the checkpoint
/// `h`'s slots, expired entries kept) and `seg_stats` (its accounting).
/// Cuts a torn tail off the active segment unless `read_only`.
///
/// # Errors
/// Why the checkpoint cannot be used; nothing was written then.
pub(crate) fn apply(
    vfs: &dyn Vfs,
    dir: &Path,
    h: &Header,
    scanned: Scanned,
    keydir: &KeyDir,
    seg_stats: &mut BTreeMap<u32, SegmentSpace>,
    read_only: bool,
) -> std::result::Result<Replayed, NotReplayed> {
    let Scanned {
        a,
        min_cut,
        max_cut,
        mut loads,
        mut groups,
        copies,
    } = scanned;
    for &(id, _) in &copies {
        let path = names::segment_path(dir, id);
        let len = vfs
            .open(&path, OpenMode::Read)
            .and_then(|f| f.len())
            .map_err(|e| io_err(&path, e))?;
        let mut space = SegmentSpace::empty();
        space.total = len;
        space.dead = len.saturating_sub(SEGMENT_HEADER_LEN);
        seg_stats.insert(id, space);
    }
    let src = Files::new(vfs, dir, h, &loads);
    // A segment neither covered nor replayed: one a compaction retired.
    let gone = |id: u32| !src.salts.contains_key(&id);
    // In the order the index lies in memory: the slots are then touched
    // nearly sequentially instead of at random (a cache miss each); and in
    // two threads, each with its own shards.
    groups.sort_unstable_by_key(|g| keydir.slot_order(g.hash));
    let mid = groups.len() / 2;
    let shard_at = |i: usize| KeyDir::shard_of_hash(groups[i].hash);
    let split = (mid..groups.len())
        .find(|&i| i == 0 || shard_at(i) != shard_at(i - 1))
        .unwrap_or(groups.len());
    let (first, second) = groups.split_at(split);
    let run = |part: &[Group]| apply_groups(part, &loads, keydir, &src, &gone);
    let ((mut live, gone_a), (live_b, gone_b)) = std::thread::scope(|sc| {
        let b = sc.spawn(|| run(second));
        let a = run(first);
        let b = b.join().unwrap_or_else(|_| {
            Err(NotReplayed(
                CheckpointUse::Damaged,
                "a replay thread panicked".into(),
            ))
        });
        Ok::<_, NotReplayed>((a?, b?))
    })?;
    for (id, n) in live_b {
        *live.entry(id).or_default() += n;
    }
    let gone_replaced = gone_a + gone_b;
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
        salts: loads
            .iter()
            .map(|l| (l.id, l.salt))
            .chain(copies.iter().copied())
            .collect(),
    };
    let max_seq = loads.iter().map(|l| l.max_seq).max().unwrap_or(0);
    let tail = fix_active_tail(vfs, dir, loads.last_mut(), read_only)?;
    summary.truncated = tail.truncated;
    Ok(Replayed {
        active: loads.last().map(|l| RecoveredActive::of(l, tail.allocated)),
        gone_replaced,
        max_seq,
        summary,
    })
}

/// Applies each of `groups` (of records in `loads`) to `keydir`; returns
/// the live bytes they leave in each segment and how many slots in
/// retired segments (`gone`) they replaced or removed.
fn apply_groups(
    groups: &[Group],
    loads: &[SegmentLoad],
    keydir: &KeyDir,
    src: &Files<'_>,
    gone: &(dyn Fn(u32) -> bool + Sync),
) -> std::result::Result<(BTreeMap<u32, u64>, u64), NotReplayed> {
    let mut live = BTreeMap::<u32, u64>::new();
    let mut gone_replaced = 0u64;
    for g in groups {
        let l = &loads[g.last.0 as usize];
        let last = &l.entries[g.last.1 as usize];
        let new = (!last.tombstone).then_some(IndexEntry {
            expires_at_ms: last.expires_at_ms,
            offset: last.offset,
            file_id: l.id,
        });
        let old = keydir
            .replay(g.hash, &last.key, g.replaces, new, src, &|e| {
                gone(e.file_id)
            })
            .map_err(|e| {
                NotReplayed(
                    CheckpointUse::Stale,
                    format!("replaying a record failed: {e}"),
                )
            })?;
        gone_replaced += u64::from(old.is_some_and(|o| gone(o.file_id)));
        if new.is_some() {
            *live.entry(l.id).or_default() +=
                record::encoded_len(last.key.len() as u32, last.value_len);
        }
    }
    Ok((live, gone_replaced))
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
/// retired segments and how many slots are left in them (checked after
/// replay by [`check_relocated`]).
pub(crate) fn relocate(keydir: &KeyDir, deltas: &[Delta]) -> Relocated {
    let mut retired: Vec<u32> = deltas
        .iter()
        .flat_map(|d| d.retired.iter().copied())
        .collect();
    retired.sort_unstable();
    if retired.is_empty() {
        return Relocated { retired, left: 0 };
    }
    // Which delta retired each segment (a table by id), and where each
    // delta copied each record. A copy a later compaction copied again is
    // followed to that delta in turn (at most once per delta: each
    // retires only segments that exist before it).
    let (low, high) = (retired[0], retired[retired.len() - 1]);
    let mut by_segment = vec![usize::MAX; (high - low) as usize + 1];
    for (k, d) in deltas.iter().enumerate() {
        for &id in &d.retired {
            by_segment[(id - low) as usize] = k;
        }
    }
    let place = |f: u32, o: u32| (u64::from(f) << 32) | u64::from(o);
    let moves: Vec<hashbrown::HashMap<u64, u64, foldhash::fast::RandomState>> = deltas
        .iter()
        .map(|d| {
            d.moves
                .iter()
                .map(|&(of, oo, nf, no)| (place(of, oo), place(nf, no)))
                .collect()
        })
        .collect();
    let delta_of = |file_id: u32| {
        let i = file_id.checked_sub(low)? as usize;
        by_segment.get(i).copied().filter(|&k| k != usize::MAX)
    };
    // Two threads, half of the shards each.
    let half = keydir.shard_count() / 2;
    let run = |range: std::ops::Range<usize>| {
        let mut left = 0u64;
        keydir.relocate(range, |file_id, offset| {
            let mut k = delta_of(file_id)?;
            let mut at = place(file_id, u32::try_from(offset).ok()?);
            let mut moved = false;
            for _ in 0..deltas.len() {
                let Some(&to) = moves[k].get(&at) else {
                    break;
                };
                at = to;
                moved = true;
                match delta_of((at >> 32) as u32) {
                    Some(next) => k = next,
                    None => break,
                }
            }
            if !moved {
                left += 1;
            }
            moved.then_some(((at >> 32) as u32, at & u64::from(u32::MAX)))
        });
        left
    };
    let left = std::thread::scope(|sc| {
        let second = sc.spawn(|| run(half..keydir.shard_count()));
        let first = run(0..half);
        // A panic here is a bug: the slots it did not reach stay in
        // retired segments, which `check_relocated` refuses.
        first + second.join().unwrap_or(u64::MAX / 2)
    });
    Relocated { retired, left }
}

/// What [`relocate`] did.
pub(crate) struct Relocated {
    /// The segments the deltas retired, ascending.
    pub retired: Vec<u32>,
    /// Slots it left in them (their records dropped by a compaction).
    pub left: u64,
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
    relocated: &Relocated,
    replayed: &Replayed,
    now_ms: u64,
) -> std::result::Result<(), NotReplayed> {
    let retired = &relocated.retired;
    // Replay replaced (or removed) that many of the slots left behind:
    // when that is all of them, nothing is left to look for.
    if retired.is_empty() || replayed.gone_replaced == relocated.left {
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
struct Group {
    hash: u64,
    /// Its first record carries `FLAG_REPLACES`.
    replaces: bool,
    /// Its last record: the index of its segment in the loads, and its
    /// index in that load's entries.
    last: (u32, u32),
}

/// The records after their shard's cut, grouped by key, in log order.
fn group_by_key(h: &Header, a: u32, loads: &[SegmentLoad]) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    // Indices into `groups`, by the key's hash (the index's own).
    let mut by_key: hashbrown::HashTable<u32> = hashbrown::HashTable::new();
    let key_of = |g: &Group| {
        let l = &loads[g.last.0 as usize];
        &l.entries[g.last.1 as usize].key
    };
    for (li, l) in loads.iter().enumerate() {
        for (ei, e) in l.entries.iter().enumerate() {
            let hash = KeyDir::hash_with_seed(h.seed, &e.key);
            if l.id == a && e.offset < h.cuts[KeyDir::shard_of_hash(hash)] {
                continue; // in the checkpoint already
            }
            let at = (li as u32, ei as u32);
            let found = by_key.find(hash, |&g| {
                let g = &groups[g as usize];
                g.hash == hash && key_of(g) == &e.key
            });
            match found {
                Some(&g) => groups[g as usize].last = at,
                None => {
                    by_key.insert_unique(hash, groups.len() as u32, |&g| groups[g as usize].hash);
                    groups.push(Group {
                        hash,
                        replaces: e.replaces,
                        last: at,
                    });
                }
            }
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
            // Replay asks only about segments that are there.
            return Err(Error::corruption(
                &path,
                entry.offset,
                "an index entry points into a segment that is gone",
            ));
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
