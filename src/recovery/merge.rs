//! Building the keydir from the loaded segments: the highest sequence
//! number wins; tombstones and expired records shadow older versions and
//! are then dropped.

use std::sync::Mutex;

use crate::format::hint::HintEntry;
use crate::index::keydir::{IndexEntry, KeyDir, TOMBSTONE_LEN};
use crate::util::locks;

use super::segment_load::SegmentLoad;

/// From this many loaded entries on, open sorts them into the index's memory
/// order before inserting them, and hands the freed memory back to the OS
/// afterwards (below it everything fits in the caches and neither pays;
/// docs/design.md, "Opening (recovery)" has the measurements).
pub(crate) const SORTED_MERGE_MIN_ENTRIES: usize = 1 << 17;

/// Keys up to this long travel inside [`Incoming`].
const INCOMING_INLINE: usize = 16;

/// An entry on its way into the index, with a short key copied along.
#[derive(Clone, Copy)]
struct Incoming {
    hash: u64,
    seq: u64,
    expires_at_ms: u64,
    offset: u64,
    value_len: u32,
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

    fn entry(&self) -> IndexEntry {
        IndexEntry {
            seq: self.seq,
            expires_at_ms: self.expires_at_ms,
            offset: self.offset,
            file_id: self.file_id,
            value_len: self.value_len,
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
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    merge_into_keydir(loads, now_ms, expired, total >= SORTED_MERGE_MIN_ENTRIES)
}

/// [`build_keydir`], with the sorted merge on or off.
fn merge_into_keydir(
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
    sort: bool,
) -> BuiltKeyDir {
    let total: usize = loads.iter().map(|l| l.entries.len()).sum();
    let keydir = KeyDir::with_capacity(total);
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
    // 2. The index is merged a group of shards at a time. Threads own
    //    disjoint groups, so no two contend for a shard; the newest record
    //    wins whatever the order (`insert_if_newer`).
    let groups = if sort { threads * 4 } else { threads }.min(keydir.shard_count());
    workers.run(&|t| {
        let mut count = vec![0usize; if sort { 1 << 16 } else { 0 }];
        for g in (t..groups).step_by(threads) {
            let in_group = |h: u64| KeyDir::shard_of_hash(h) % groups == g;
            if sort {
                insert_sorted(&keydir, loads, &hashes, &in_group, &mut count);
            } else {
                insert_plain(&keydir, loads, &hashes, &in_group);
            }
        }
    });
    drop(hashes);
    // 3. Tombstones and (unless kept) expired records out; live bytes per
    //    segment (a kept expired record is live until the sweep logs it).
    let (live, expired_kept) = drop_dead(&keydir, loads, now_ms, expired);
    BuiltKeyDir {
        keydir,
        live,
        expired_kept,
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
            let h: Vec<u64> = load
                .entries
                .iter()
                .map(|e| keydir.locate(&e.key).0)
                .collect();
            *locks::lock(&hashes[li]) = h;
        }
    });
    hashes.into_iter().map(locks::into_inner).collect()
}

/// Inserts one group's entries in segment order (small stores, which fit
/// in the caches).
fn insert_plain(
    keydir: &KeyDir,
    loads: &[SegmentLoad],
    hashes: &[Vec<u64>],
    in_group: &dyn Fn(u64) -> bool,
) {
    for (load, hs) in loads.iter().zip(hashes) {
        for (e, &h) in load.entries.iter().zip(hs) {
            if in_group(h) {
                let p = Incoming::new(h, load.id, 0, 0, e);
                keydir.insert_if_newer_hashed(h, &e.key, p.entry());
            }
        }
    }
}

/// Inserts one group's entries in the order in which they land in the
/// tables: a counting sort (`count` is its table) puts them in that order,
/// with what the insert needs copied alongside, so that the inserts touch
/// the tables nearly sequentially and read their input sequentially.
fn insert_sorted(
    keydir: &KeyDir,
    loads: &[SegmentLoad],
    hashes: &[Vec<u64>],
    in_group: &dyn Fn(u64) -> bool,
    count: &mut [usize],
) {
    let buckets = keydir.buckets_per_shard();
    count.iter_mut().for_each(|c| *c = 0);
    for hs in hashes {
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
    let mut sorted = vec![Incoming::EMPTY; start];
    for (li, (load, hs)) in loads.iter().zip(hashes).enumerate() {
        for (ei, (e, &h)) in load.entries.iter().zip(hs).enumerate() {
            if in_group(h) {
                let at = &mut count[usize::from(KeyDir::memory_order_in(h, buckets))];
                sorted[*at] = Incoming::new(h, load.id, li, ei, e);
                *at += 1;
            }
        }
    }
    for p in &sorted {
        let long;
        let key = if p.key_len as usize <= INCOMING_INLINE {
            &p.key[..p.key_len as usize]
        } else {
            long = &loads[p.load as usize].entries[p.entry as usize].key;
            &long[..]
        };
        keydir.insert_if_newer_hashed(p.hash, key, p.entry());
    }
}

/// Removes tombstones and (unless kept) expired entries from the index;
/// returns the live record bytes per segment, in the order of `loads`, and
/// how many expired entries were kept.
fn drop_dead(
    keydir: &KeyDir,
    loads: &[SegmentLoad],
    now_ms: u64,
    expired: ExpiredAtOpen,
) -> (Vec<u64>, u64) {
    // `loads` is sorted by id, so a binary search finds a segment's slot.
    let ids: Vec<u32> = loads.iter().map(|l| l.id).collect();
    let mut live = vec![0u64; loads.len()];
    let mut kept = 0u64;
    for i in 0..keydir.shard_count() {
        keydir.write_shard(i).retain(
            |k, e| {
                let is_expired = e.is_expired(now_ms) && !e.is_tombstone();
                if is_expired && expired == ExpiredAtOpen::Keep {
                    kept += 1;
                }
                let dead = e.is_tombstone() || (is_expired && expired == ExpiredAtOpen::Drop);
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
    (live, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

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
