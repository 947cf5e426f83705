//! Building the keydir from the loaded segments: the highest sequence
//! number wins; tombstones and expired records shadow older versions and
//! are then dropped.

use std::sync::Mutex;

use crate::format::hint::HintEntry;
use crate::format::record;
use crate::index::keydir::{IndexEntry, KeyDir};
use crate::util::locks;

use super::segment_load::SegmentLoad;

/// From this many loaded entries on, open sorts them into the index's memory
/// order before inserting them, and hands the freed memory back to the OS
/// afterwards (below it everything fits in the caches and neither pays;
/// docs/design.md, "Opening (recovery)" has the measurements).
pub(crate) const SORTED_MERGE_MIN_ENTRIES: usize = 1 << 17;

/// Keys up to this long travel inside [`Incoming`].
const INCOMING_INLINE: usize = 16;

/// An entry on its way into the index, with a short key copied along, and
/// what the index does not keep: the sequence number that picks the newest
/// version of a key, and the record's kind and length.
#[derive(Clone, Copy)]
struct Incoming {
    hash: u64,
    seq: u64,
    expires_at_ms: u64,
    offset: u64,
    value_len: u32,
    tombstone: bool,
    file_id: u32,
    /// Where the entry came from (for keys longer than [`INCOMING_INLINE`]).
    load: u32,
    entry: u32,
    key_len: u32,
    key: [u8; INCOMING_INLINE],
}

impl Incoming {
    const EMPTY: Incoming = Incoming {
        hash: 0,
        seq: 0,
        expires_at_ms: 0,
        offset: 0,
        value_len: 0,
        tombstone: false,
        file_id: 0,
        load: 0,
        entry: 0,
        key_len: 0,
        key: [0; INCOMING_INLINE],
    };

    fn new(hash: u64, file_id: u32, load: usize, entry: usize, e: &HintEntry) -> Incoming {
        let mut key = [0u8; INCOMING_INLINE];
        if e.key.len() <= INCOMING_INLINE {
            key[..e.key.len()].copy_from_slice(&e.key);
        }
        Incoming {
            hash,
            seq: e.seq,
            expires_at_ms: e.expires_at_ms,
            offset: e.offset,
            value_len: e.value_len,
            tombstone: e.tombstone,
            file_id,
            load: load as u32,
            entry: entry as u32,
            key_len: e.key.len() as u32,
            key,
        }
    }

    /// What the index keeps of it.
    fn entry(&self) -> IndexEntry {
        IndexEntry {
            expires_at_ms: self.expires_at_ms,
            offset: self.offset,
            file_id: self.file_id,
        }
    }
}

/// What to do with puts whose expiry has passed when the keydir is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExpiredAtOpen {
    /// Drop them, as tombstones (a read-only open: it writes nothing).
    Drop,
    /// Keep them in the keydir, where reads ignore them, for the first
    /// expiry sweep to log their expirations (a writable open).
    Keep,
}

/// The keydir recovery built.
pub(crate) struct BuiltKeyDir {
    pub keydir: KeyDir,
    /// Live record bytes per segment, in the order of the loads.
    pub live: Vec<u64>,
    /// Expired puts kept in the keydir ([`ExpiredAtOpen::Keep`]).
    pub expired_kept: u64,
}

/// Merges loaded segments into `keydir`: the highest sequence number wins;
/// tombstones and expired records shadow older versions, then tombstones
/// are dropped, and expired records too unless `expired` says to keep them.
pub(crate) fn build_keydir(
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
) -> BuiltKeyDir {
    build_keydir_seeded(loads, now_ms, expired, None)
}

/// [`build_keydir`] hashing with `seed` (`None`: a new random one), as
/// `verify` does to compare an index checkpoint with the index rebuilt
/// from hints and segments.
pub(crate) fn build_keydir_seeded(
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
    seed: Option<u64>,
) -> BuiltKeyDir {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    let keydir = match seed {
        Some(seed) => KeyDir::with_capacity_seeded(total, seed),
        None => KeyDir::with_capacity(total),
    };
    merge_into(
        keydir,
        loads,
        now_ms,
        expired,
        total >= SORTED_MERGE_MIN_ENTRIES,
    )
}

/// [`build_keydir`], with the sorted merge on or off.
#[cfg(test)]
fn merge_into_keydir(
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
    sort: bool,
) -> BuiltKeyDir {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    merge_into(KeyDir::with_capacity(total), loads, now_ms, expired, sort)
}

/// [`merge_into_keydir`] into `keydir`, presized for the loads' entries.
fn merge_into(
    keydir: KeyDir,
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
    sort: bool,
) -> BuiltKeyDir {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let workers = Workers {
        threads,
        spawn: threads > 1 && total >= 10_000,
    };
    // 1. Every entry's hash, once (threads take segments in turn).
    let hashes = hash_entries(&keydir, loads, workers);
    // 2. The index is filled a group of shards at a time. Threads own
    //    disjoint groups, so no two contend for a shard. Each group's
    //    entries are ordered by hash, newest first, so that the versions of
    //    a key are side by side and the newest is kept (the index keeps no
    //    keys to compare later); tombstones and (unless kept) expired
    //    records shadow older versions and are then left out.
    let groups = if sort { threads * 4 } else { threads }.min(keydir.shard_count());
    let tallies: Vec<Mutex<Tally>> = (0..threads)
        .map(|_| Mutex::new(Tally::new(loads.len())))
        .collect();
    let ids: Vec<u32> = loads.iter().map(|l| l.id).collect();
    workers.run(&|t| {
        let mut count = vec![0usize; if sort { 1 << 16 } else { 0 }];
        let mut tally = Tally::new(loads.len());
        for g in (t..groups).step_by(threads) {
            let in_group = |h: u64| KeyDir::shard_of_hash(h) % groups == g;
            let sorted = if sort {
                sorted_by_memory_order(&keydir, loads, &hashes, &in_group, &mut count)
            } else {
                sorted_plain(loads, &hashes, &in_group)
            };
            let merge = Merge {
                keydir: &keydir,
                loads,
                ids: &ids,
                now_ms,
                expired,
            };
            merge.insert_newest(&sorted, &mut tally);
        }
        *locks::lock(&tallies[t]) = tally;
    });
    drop(hashes);
    let mut live = vec![0u64; loads.len()];
    let mut expired_kept = 0;
    for t in tallies.into_iter().map(locks::into_inner) {
        for (l, n) in live.iter_mut().zip(t.live) {
            *l += n;
        }
        expired_kept += t.expired_kept;
    }
    BuiltKeyDir {
        keydir,
        live,
        expired_kept,
    }
}

/// What one merge thread counted: live record bytes per load, and the
/// expired entries it kept.
struct Tally {
    live: Vec<u64>,
    expired_kept: u64,
}

impl Tally {
    fn new(loads: usize) -> Tally {
        Tally {
            live: vec![0; loads],
            expired_kept: 0,
        }
    }
}

/// The threads of a merge step, and whether to spawn them (small merges
/// run the same steps on this thread).
#[derive(Clone, Copy)]
struct Workers {
    threads: usize,
    spawn: bool,
}

impl Workers {
    /// Runs `f(t)` for every thread number `t`.
    fn run(self, f: &(dyn Fn(usize) + Sync)) {
        if !self.spawn {
            (0..self.threads).for_each(f);
        } else {
            std::thread::scope(|s| {
                for t in 0..self.threads {
                    s.spawn(move || f(t));
                }
            });
        }
    }
}

/// Every entry's hash, per load.
fn hash_entries(keydir: &KeyDir, loads: &[SegmentLoad], workers: Workers) -> Vec<Vec<u64>> {
    let hashes: Vec<Mutex<Vec<u64>>> = loads.iter().map(|_| Mutex::new(Vec::new())).collect();
    workers.run(&|t| {
        for (li, load) in loads.iter().enumerate().skip(t).step_by(workers.threads) {
            let h: Vec<u64> = load.entries.iter().map(|e| keydir.hash(&e.key)).collect();
            *locks::lock(&hashes[li]) = h;
        }
    });
    hashes.into_iter().map(locks::into_inner).collect()
}

/// Newest first among equal hashes. Two records of a key with the same
/// sequence number (copies left by an interrupted compaction, or crafted
/// files) are told apart by place, the highest segment id and then offset
/// first, so that every open picks the same one.
fn by_hash_newest_first(a: &Incoming, b: &Incoming) -> std::cmp::Ordering {
    a.hash
        .cmp(&b.hash)
        .then(b.seq.cmp(&a.seq))
        .then(b.file_id.cmp(&a.file_id))
        .then(b.offset.cmp(&a.offset))
}

/// One group's entries ordered by hash, newest first (small stores, which
/// fit in the caches).
fn sorted_plain(
    loads: &[SegmentLoad],
    hashes: &[Vec<u64>],
    in_group: &dyn Fn(u64) -> bool,
) -> Vec<Incoming> {
    let mut sorted = Vec::new();
    for (li, (load, hs)) in loads.iter().zip(hashes).enumerate() {
        for (ei, (e, &h)) in load.entries.iter().zip(hs).enumerate() {
            if in_group(h) {
                sorted.push(Incoming::new(h, load.id, li, ei, e));
            }
        }
    }
    sorted.sort_unstable_by(by_hash_newest_first);
    sorted
}

/// One group's entries in the order in which they land in the tables: a
/// counting sort (`count` is its table) by coarse memory position, then by
/// hash and newest first within each position, with what the insert needs
/// copied alongside, so that the inserts touch the tables nearly
/// sequentially and read their input sequentially.
fn sorted_by_memory_order(
    keydir: &KeyDir,
    loads: &[SegmentLoad],
    hashes: &[Vec<u64>],
    in_group: &dyn Fn(u64) -> bool,
    count: &mut [usize],
) -> Vec<Incoming> {
    count.iter_mut().for_each(|c| *c = 0);
    for hs in hashes {
        for &h in hs.iter().filter(|&&h| in_group(h)) {
            count[usize::from(keydir.memory_order(h))] += 1;
        }
    }
    let mut start = 0usize;
    let mut starts = Vec::with_capacity(count.len() + 1);
    for c in count.iter_mut() {
        let n = *c;
        *c = start;
        starts.push(start);
        start += n;
    }
    starts.push(start);
    let mut sorted = vec![Incoming::EMPTY; start];
    for (li, (load, hs)) in loads.iter().zip(hashes).enumerate() {
        for (ei, (e, &h)) in load.entries.iter().zip(hs).enumerate() {
            if in_group(h) {
                let at = &mut count[usize::from(keydir.memory_order(h))];
                sorted[*at] = Incoming::new(h, load.id, li, ei, e);
                *at += 1;
            }
        }
    }
    for w in starts.windows(2) {
        if w[1] - w[0] > 1 {
            sorted[w[0]..w[1]].sort_unstable_by(by_hash_newest_first);
        }
    }
    sorted
}

/// Inserting one group's sorted entries.
struct Merge<'a> {
    keydir: &'a KeyDir,
    loads: &'a [SegmentLoad],
    /// The loads' segment ids (sorted: `loads` is).
    ids: &'a [u32],
    now_ms: u64,
    expired: ExpiredAtOpen,
}

impl Merge<'_> {
    fn key<'k>(&'k self, p: &'k Incoming) -> &'k [u8] {
        if p.key_len as usize <= INCOMING_INLINE {
            &p.key[..p.key_len as usize]
        } else {
            &self.loads[p.load as usize].entries[p.entry as usize].key
        }
    }

    /// Inserts the newest version of each key of `sorted` (ordered by hash,
    /// newest first) unless it is a tombstone, or an expired put that is
    /// not kept; counts live bytes and kept expired entries in `tally`.
    fn insert_newest(&self, sorted: &[Incoming], tally: &mut Tally) {
        let mut run_start = 0;
        let mut chosen: Vec<usize> = Vec::new();
        for i in 0..sorted.len() {
            if sorted[i].hash != sorted[run_start].hash {
                run_start = i;
                chosen.clear();
            }
            // The first of a run with this key is its newest version
            // (different keys with one hash share a run).
            let p = &sorted[i];
            let key = self.key(p);
            if chosen.iter().any(|&j| self.key(&sorted[j]) == key) {
                continue;
            }
            chosen.push(i);
            self.insert_one(p, key.len(), tally);
        }
    }

    fn insert_one(&self, p: &Incoming, key_len: usize, tally: &mut Tally) {
        if p.tombstone {
            return;
        }
        let e = p.entry();
        if e.is_expired(self.now_ms) {
            if self.expired == ExpiredAtOpen::Drop {
                return;
            }
            tally.expired_kept += 1;
        }
        if let Ok(j) = self.ids.binary_search(&e.file_id) {
            tally.live[j] += record::encoded_len(key_len as u32, p.value_len);
        }
        self.keydir.insert_unique_hashed(p.hash, e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `open_dir` fuzz target: two records of one key with the
    /// same sequence number (crafted files) must give the same winner at
    /// every open, whatever order the merge sees them in: the one in the
    /// higher segment.
    #[test]
    fn a_tie_in_sequence_numbers_goes_to_the_higher_segment() {
        let entry = |offset: u64, value_len: u32| HintEntry {
            key: b"c".to_vec(),
            seq: 8,
            expires_at_ms: 0,
            offset,
            value_len,
            tombstone: false,
            replaces: false,
        };
        let load = |id: u32, e: HintEntry| SegmentLoad {
            len: 1 << 20,
            entries: vec![e],
            from_hint: true,
            min_seq: 0,
            ..SegmentLoad::empty(id)
        };
        for sort in [false, true] {
            for _ in 0..20 {
                let loads = vec![load(1, entry(96, 2)), load(2, entry(32, 3))];
                let built = merge_into_keydir(&loads, 0, ExpiredAtOpen::Drop, sort);
                let mut all = Vec::new();
                for i in 0..built.keydir.shard_count() {
                    built
                        .keydir
                        .read_shard(i)
                        .for_each(|e| all.push((e.file_id, e.offset)));
                }
                assert_eq!(all, vec![(2, 32)], "sorted merge: {sort}");
            }
        }
    }

    /// The sorted merge (large stores) and the plain one (small stores)
    /// build the same index from the same loads: newest sequence number wins
    /// in any order, tombstones and expired records shadow and then vanish,
    /// long keys (read from their loads) and short ones (copied along) alike.
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
                            key.extend_from_slice(&[7u8; 20]); // longer than what travels inline
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
                            replaces: false,
                        }
                    })
                    .collect();
                SegmentLoad {
                    len: 1 << 20,
                    entries,
                    from_hint: true,
                    min_seq: 0,
                    ..SegmentLoad::empty(id)
                }
            })
            .collect();
        let drop = ExpiredAtOpen::Drop;
        let BuiltKeyDir {
            keydir: sorted,
            live: live_sorted,
            ..
        } = merge_into_keydir(&loads, 100, drop, true);
        let BuiltKeyDir {
            keydir: plain,
            live: live_plain,
            ..
        } = merge_into_keydir(&loads, 100, drop, false);
        assert_eq!(live_sorted, live_plain);
        assert_eq!(sorted.raw_len(), plain.raw_len());
        assert!(plain.raw_len() > 500);
        // Both hold the same entries (no two live records share a place),
        // each the newest version of its key, neither a tombstone nor
        // expired.
        let entries = |kd: &KeyDir| {
            let mut all = Vec::new();
            for i in 0..kd.shard_count() {
                kd.read_shard(i)
                    .for_each(|e| all.push((e.file_id, e.offset, e.expires_at_ms)));
            }
            all.sort_unstable();
            all
        };
        let mut newest: std::collections::HashMap<&[u8], &HintEntry> =
            std::collections::HashMap::new();
        let mut place: std::collections::HashMap<u64, u32> = std::collections::HashMap::new();
        for l in &loads {
            for e in &l.entries {
                place.insert(e.seq, l.id);
                let n = newest.entry(&e.key).or_insert(e);
                if e.seq > n.seq {
                    *n = e;
                }
            }
        }
        let mut want: Vec<(u32, u64, u64)> = newest
            .values()
            .filter(|e| !e.tombstone && (e.expires_at_ms == 0 || e.expires_at_ms > 100))
            .map(|e| (place[&e.seq], e.offset, e.expires_at_ms))
            .collect();
        want.sort_unstable();
        assert_eq!(entries(&plain), want);
        assert_eq!(entries(&sorted), want);
    }
}
