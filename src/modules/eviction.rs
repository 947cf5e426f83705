//! The cache's eviction policy: sampled LFU over a count-min sketch.
//!
//! Every access (hit or miss) counts its key in a count-min sketch of
//! 4-bit counters, four per entry, which is halved every `10 × width`
//! counts so that old popularity fades (TinyLFU's aging). To evict, a
//! handful of resident entries are sampled at random and the one with the
//! lowest estimated frequency goes, the least recently used among equals;
//! expired entries go first. This is Redis's sampled eviction with
//! TinyLFU's frequency estimate. The cache adds TinyLFU's admission check
//! (`src/modules/cache/inner.rs`): when full, a new key is stored only if it is estimated
//! to be used more often than the entry it would evict, so a one-off scan
//! does not push out the hot set.

use std::hash::BuildHasher;

use hashbrown::HashMap;

use crate::util::rand::FastRng;

/// How many resident entries an eviction looks at.
pub(crate) const SAMPLES: usize = 8;

/// A count-min sketch of 4-bit counters, 16 per `u64`, 4 rows.
#[derive(Debug)]
struct Sketch {
    rows: [Vec<u64>; 4],
    mask: u64,
    additions: u64,
    reset_at: u64,
}

impl Sketch {
    fn new(counters: u64) -> Sketch {
        // It starts at most 4M counters (8 MiB) and grows with the entries
        // (see `Tracker::upsert`), whatever capacity was asked for.
        let counters = counters.clamp(1024, 1 << 22).next_power_of_two();
        let words = (counters / 16) as usize;
        Sketch {
            rows: std::array::from_fn(|_| vec![0u64; words]),
            mask: counters - 1,
            additions: 0,
            reset_at: counters * 10,
        }
    }

    fn counters(&self) -> u64 {
        self.mask + 1
    }

    fn index(&self, hash: u64, row: usize) -> (usize, u32) {
        let h = hash
            .wrapping_add(row as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15 ^ ((row as u64) << 32 | 0xB5))
            .rotate_left(17 + 7 * row as u32);
        let i = h & self.mask;
        ((i / 16) as usize, ((i % 16) * 4) as u32)
    }

    fn estimate(&self, hash: u64) -> u8 {
        (0..4)
            .map(|r| {
                let (w, shift) = self.index(hash, r);
                ((self.rows[r][w] >> shift) & 0xF) as u8
            })
            .min()
            .unwrap_or(0)
    }

    fn increment(&mut self, hash: u64) {
        let est = self.estimate(hash);
        if est < 15 {
            // Conservative update: raise only the counters at the minimum.
            for r in 0..4 {
                let (w, shift) = self.index(hash, r);
                if (self.rows[r][w] >> shift) & 0xF == u64::from(est) {
                    self.rows[r][w] += 1 << shift;
                }
            }
        }
        self.additions += 1;
        if self.additions >= self.reset_at {
            self.halve();
        }
    }

    fn halve(&mut self) {
        for row in &mut self.rows {
            for w in row.iter_mut() {
                *w = (*w >> 1) & 0x7777_7777_7777_7777;
            }
        }
        self.additions /= 2;
    }
}

#[derive(Debug)]
struct Slot {
    key: Box<[u8]>,
    hash: u64,
    bytes: u64,
    /// Unix ms, 0 for none.
    expires: u64,
    last_access: u64,
}

/// The resident entries, their sizes and the access history.
#[derive(Debug)]
pub(crate) struct Tracker {
    hasher: foldhash::fast::FixedState,
    sketch: Sketch,
    index: HashMap<Box<[u8]>, usize, foldhash::fast::FixedState>,
    slots: Vec<Slot>,
    bytes: u64,
    tick: u64,
    rng: FastRng,
}

impl Tracker {
    /// Hashes are seeded from `rng`: cache keys are often chosen by
    /// clients (URLs), who must not be able to aim at hash collisions.
    pub(crate) fn new(expected_entries: u64, mut rng: FastRng) -> Tracker {
        Tracker {
            hasher: foldhash::fast::FixedState::with_seed(rng.next_u64()),
            // Four counters per entry: fewer collisions, and (the halving
            // interval growing with the width) a memory of 40 accesses per
            // entry; measured better than one per entry on zipfian traces.
            sketch: Sketch::new(expected_entries.saturating_mul(4)),
            index: HashMap::with_hasher(foldhash::fast::FixedState::with_seed(rng.next_u64())),
            slots: Vec::new(),
            bytes: 0,
            tick: 0,
            rng,
        }
    }

    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Counts an access to `key` (resident or not).
    pub(crate) fn record_access(&mut self, key: &[u8]) {
        let h = self.hash(key);
        self.sketch.increment(h);
        self.tick += 1;
        if let Some(&i) = self.index.get(key) {
            self.slots[i].last_access = self.tick;
        }
    }

    /// Counts `key` as used twice: for entries found in the store at open,
    /// which earned their place before the restart, so that they are not
    /// evicted before keys seen once since.
    pub(crate) fn warm(&mut self, key: &[u8]) {
        let h = self.hash(key);
        self.sketch.increment(h);
        self.sketch.increment(h);
    }

    /// The estimated number of recent accesses to `key` (0 to 15).
    pub(crate) fn frequency(&self, key: &[u8]) -> u8 {
        self.sketch.estimate(self.hash(key))
    }

    /// Whether `key` is resident.
    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        self.index.contains_key(key)
    }

    /// Records that `key` is resident with `bytes` and `expires`.
    pub(crate) fn upsert(&mut self, key: &[u8], bytes: u64, expires: u64) {
        self.tick += 1;
        if let Some(&i) = self.index.get(key) {
            let s = &mut self.slots[i];
            self.bytes = self.bytes - s.bytes + bytes;
            s.bytes = bytes;
            s.expires = expires;
            s.last_access = self.tick;
            return;
        }
        if self.slots.len() as u64 * 4 > self.sketch.counters() {
            // Keep about four counters per entry: grow (the history
            // restarts).
            self.sketch = Sketch::new(self.sketch.counters() * 2);
        }
        let hash = self.hash(key);
        self.index.insert(key.into(), self.slots.len());
        self.slots.push(Slot {
            key: key.into(),
            hash,
            bytes,
            expires,
            last_access: self.tick,
        });
        self.bytes += bytes;
    }

    /// Forgets `key`; returns whether it was resident.
    pub(crate) fn remove(&mut self, key: &[u8]) -> bool {
        let Some(i) = self.index.remove(key) else {
            return false;
        };
        let s = self.slots.swap_remove(i);
        self.bytes -= s.bytes;
        if let Some(moved) = self.slots.get(i) {
            if let Some(ix) = self.index.get_mut(&moved.key) {
                *ix = i;
            }
        }
        true
    }

    /// `key`'s recorded size and expiry, if it is resident: what
    /// [`Tracker::upsert`] takes to put it back after a failed write.
    pub(crate) fn slot_of(&self, key: &[u8]) -> Option<(u64, u64)> {
        self.index
            .get(key)
            .map(|&i| (self.slots[i].bytes, self.slots[i].expires))
    }

    /// Whether `key` is resident, and its recorded expiry.
    pub(crate) fn expiry_of(&self, key: &[u8]) -> Option<u64> {
        self.index.get(key).map(|&i| self.slots[i].expires)
    }

    /// Picks the entry to evict: among a few sampled at random, an expired
    /// one if any (returned with `true`), else the least frequent, then the
    /// least recently used. `keep` is never picked.
    pub(crate) fn victim(&mut self, now: u64, keep: &[u8]) -> Option<(Box<[u8]>, bool)> {
        let n = self.slots.len() as u64;
        if n == 0 || (n == 1 && &*self.slots[0].key == keep) {
            return None;
        }
        let mut best: Option<(usize, (u8, u64))> = None;
        // With few entries, look at all of them instead of sampling.
        let all = n as usize <= SAMPLES;
        for j in 0..SAMPLES.min(n as usize) {
            let i = if all { j } else { self.rng.below(n) as usize };
            let s = &self.slots[i];
            if &*s.key == keep {
                continue;
            }
            if s.expires != 0 && s.expires <= now {
                return Some((s.key.clone(), true));
            }
            let score = (self.sketch.estimate(s.hash), s.last_access);
            if best.is_none_or(|(_, b)| score < b) {
                best = Some((i, score));
            }
        }
        let i = match best {
            Some((i, _)) => i,
            // Every sample hit `keep`: take the first other entry.
            None => self.slots.iter().position(|s| &*s.key != keep)?,
        };
        Some((self.slots[i].key.clone(), false))
    }

    /// Keys of the entries larger than `bytes` on their own.
    pub(crate) fn keys_larger_than(&self, bytes: u64) -> Vec<Box<[u8]>> {
        self.slots
            .iter()
            .filter(|s| s.bytes > bytes)
            .map(|s| s.key.clone())
            .collect()
    }

    /// Keys starting with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Vec<Box<[u8]>> {
        self.slots
            .iter()
            .filter(|s| s.key.starts_with(prefix))
            .map(|s| s.key.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sketch_counts_and_ages() {
        let mut s = Sketch::new(1024);
        for _ in 0..5 {
            s.increment(42);
        }
        assert_eq!(s.estimate(42), 5);
        assert!(s.estimate(43) <= 1);
        for _ in 0..40 {
            s.increment(7);
        }
        assert_eq!(s.estimate(7), 15, "saturates at 15");
        s.halve();
        assert_eq!(s.estimate(42), 2);
        assert_eq!(s.estimate(7), 7);
    }

    #[test]
    fn tracker_keeps_sizes_and_indexes_consistent() {
        let mut t = Tracker::new(16, FastRng::with_seed(3));
        let mut model = std::collections::HashMap::new();
        let mut rng = FastRng::with_seed(9);
        for step in 0..20_000u64 {
            let k = (rng.below(300)).to_le_bytes();
            match rng.below(3) {
                0 | 1 => {
                    let b = rng.below(100);
                    t.upsert(&k, b, 0);
                    model.insert(k, b);
                }
                _ => {
                    assert_eq!(t.remove(&k), model.remove(&k).is_some(), "step {step}");
                }
            }
            assert_eq!(t.len(), model.len() as u64);
            assert_eq!(t.bytes(), model.values().sum::<u64>());
        }
        for k in model.keys() {
            assert!(t.expiry_of(k).is_some());
        }
    }

    #[test]
    fn victims_prefer_expired_then_rare() {
        let mut t = Tracker::new(16, FastRng::with_seed(5));
        t.upsert(b"hot", 1, 0);
        t.upsert(b"cold", 1, 0);
        for _ in 0..10 {
            t.record_access(b"hot");
        }
        assert_eq!(
            t.victim(0, b"").map(|v| v.0.to_vec()),
            Some(b"cold".to_vec())
        );
        t.upsert(b"old", 1, 5);
        let mut expired_seen = false;
        for _ in 0..50 {
            if let Some((k, true)) = t.victim(10, b"") {
                assert_eq!(&*k, b"old");
                expired_seen = true;
            }
        }
        assert!(expired_seen);
        for _ in 0..50 {
            assert_ne!(
                t.victim(0, b"cold").map(|v| v.0.to_vec()),
                Some(b"cold".to_vec())
            );
        }
    }
}
