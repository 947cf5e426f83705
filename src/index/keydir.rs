//! The keydir: an in-memory hash index from key to the newest record.
//!
//! It is split into shards, each behind its own `RwLock`, so that readers
//! on different keys never contend and a writer blocks only one shard. Keys
//! are hashed once with foldhash (a fast, randomly seeded hasher) and the
//! same hash picks the shard and the bucket in a `hashbrown::HashTable`.
//! Each slot packs a key of up to 16 bytes and its entry into 45 bytes;
//! longer keys live in a per-shard arena.

use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::format::record;
use crate::util::locks;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Marks a tombstone entry (only present while recovery builds the keydir).
pub(crate) const TOMBSTONE_LEN: u32 = u32::MAX;

/// Where the newest record of a key lives, and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub seq: u64,
    /// Absolute unix milliseconds; 0 means no expiry.
    pub expires_at_ms: u64,
    pub offset: u64,
    pub file_id: u32,
    pub value_len: u32,
}

impl IndexEntry {
    #[inline]
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    #[inline]
    pub(crate) fn is_tombstone(&self) -> bool {
        self.value_len == TOMBSTONE_LEN
    }

    /// Bytes the record takes on disk, given its key length.
    #[inline]
    pub(crate) fn record_len(&self, key_len: usize) -> u64 {
        let v = if self.is_tombstone() {
            0
        } else {
            self.value_len
        };
        record::encoded_len(key_len as u32, v)
    }
}

/// Keys up to this many bytes live inside their slot.
const INLINE: usize = 16;
/// `Slot::key_len` of a key kept in the shard's arena.
const IN_ARENA: u8 = u8::MAX;

/// One slot of a shard's table: a key and its entry, packed into 45 bytes
/// with no padding (every field is a byte array, so the slot's alignment is
/// 1 and a bucket costs 45 bytes plus hashbrown's 1 control byte).
///
/// A key of up to [`INLINE`] bytes is stored in `key`; a longer one lives in
/// the shard's arena and `key[..4]` holds its index there. `offset` is 32
/// bits: a segment never reaches 4 GiB (see `Options::max_segment_bytes`,
/// and recovery refuses longer segment files).
#[derive(Clone, Copy)]
struct Slot {
    key_len: u8,
    key: [u8; INLINE],
    seq: [u8; 8],
    expires_at_ms: [u8; 8],
    offset: [u8; 4],
    file_id: [u8; 4],
    value_len: [u8; 4],
}

impl Slot {
    fn new(key_len: u8, key: [u8; INLINE], e: &IndexEntry) -> Slot {
        let mut s = Slot {
            key_len,
            key,
            seq: [0; 8],
            expires_at_ms: [0; 8],
            offset: [0; 4],
            file_id: [0; 4],
            value_len: [0; 4],
        };
        s.set(e);
        s
    }

    #[inline]
    fn entry(&self) -> IndexEntry {
        IndexEntry {
            seq: u64::from_le_bytes(self.seq),
            expires_at_ms: u64::from_le_bytes(self.expires_at_ms),
            offset: u64::from(u32::from_le_bytes(self.offset)),
            file_id: u32::from_le_bytes(self.file_id),
            value_len: u32::from_le_bytes(self.value_len),
        }
    }

    #[inline]
    fn set(&mut self, e: &IndexEntry) {
        self.seq = e.seq.to_le_bytes();
        self.expires_at_ms = e.expires_at_ms.to_le_bytes();
        // Checked where entries are made: segment offsets fit in 32 bits.
        debug_assert!(e.offset <= u64::from(u32::MAX));
        self.offset = (e.offset as u32).to_le_bytes();
        self.file_id = e.file_id.to_le_bytes();
        self.value_len = e.value_len.to_le_bytes();
    }

    #[inline]
    fn has_ttl(&self) -> bool {
        self.expires_at_ms != [0; 8]
    }

    #[inline]
    fn arena_index(&self) -> Option<usize> {
        (self.key_len == IN_ARENA).then(|| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&self.key[..4]);
            u32::from_le_bytes(b) as usize
        })
    }

    #[inline]
    fn key<'a>(&'a self, arena: &'a [Box<[u8]>]) -> &'a [u8] {
        match self.arena_index() {
            Some(i) => arena.get(i).map_or(&[][..], |k| &k[..]),
            None => &self.key[..usize::from(self.key_len)],
        }
    }
}

/// The largest segment offset the index can hold.
pub(crate) const MAX_OFFSET: u64 = u32::MAX as u64;

pub(crate) struct Shard {
    table: HashTable<Slot>,
    /// Keys longer than [`INLINE`], indexed from their slots. Kept dense: a
    /// removal moves the last key into the hole and repoints its slot.
    arena: Vec<Box<[u8]>>,
    /// Entries in this shard that carry an expiry.
    ttl_keys: usize,
}

impl Shard {
    /// Keeps `ttl_keys` right after an entry that had (or had no) expiry
    /// was replaced by `new`.
    fn count_ttl_change(&mut self, had_ttl: bool, new: &IndexEntry) {
        match (had_ttl, new.expires_at_ms != 0) {
            (true, false) => self.ttl_keys -= 1,
            (false, true) => self.ttl_keys += 1,
            _ => {}
        }
    }

    /// Calls `f` for every entry.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &IndexEntry)) {
        for s in self.table.iter() {
            f(s.key(&self.arena), &s.entry());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn ttl_keys(&self) -> usize {
        self.ttl_keys
    }

    /// Removes every entry for which `drop` returns true, handing each to `on_removed`.
    pub(crate) fn retain(
        &mut self,
        mut drop: impl FnMut(&[u8], &IndexEntry) -> bool,
        mut on_removed: impl FnMut(&[u8], &IndexEntry),
    ) {
        let mut removed_ttl = 0usize;
        let mut removed_from_arena = false;
        let Shard { table, arena, .. } = self;
        table.retain(|s| {
            let e = s.entry();
            let k = s.key(arena);
            if drop(k, &e) {
                if e.expires_at_ms != 0 {
                    removed_ttl += 1;
                }
                on_removed(k, &e);
                removed_from_arena |= s.key_len == IN_ARENA;
                false
            } else {
                true
            }
        });
        self.ttl_keys -= removed_ttl;
        if removed_from_arena {
            // Renumber the keys still referenced; the rest are dropped.
            let mut old = std::mem::take(&mut self.arena);
            let mut kept = Vec::with_capacity(old.len());
            for s in self.table.iter_mut() {
                if let Some(i) = s.arena_index() {
                    let idx = kept.len() as u32;
                    kept.push(old.get_mut(i).map(std::mem::take).unwrap_or_default());
                    s.key[..4].copy_from_slice(&idx.to_le_bytes());
                }
            }
            self.arena = kept;
        }
    }
}

#[inline]
fn key_eq(s: &Slot, key: &[u8], arena: &[Box<[u8]>]) -> bool {
    match s.arena_index() {
        Some(i) => arena.get(i).is_some_and(|k| **k == *key),
        None => usize::from(s.key_len) == key.len() && s.key[..key.len()] == *key,
    }
}

/// The sharded index.
pub(crate) struct KeyDir {
    shards: Box<[RwLock<Shard>]>,
    hasher: foldhash::fast::RandomState,
}

impl KeyDir {
    #[cfg(test)]
    pub(crate) fn new() -> KeyDir {
        KeyDir::with_capacity(0)
    }

    /// An index with room for about `keys` keys without growing.
    pub(crate) fn with_capacity(keys: usize) -> KeyDir {
        let per_shard = keys.div_ceil(SHARDS);
        let shards = (0..SHARDS)
            .map(|_| {
                RwLock::new(Shard {
                    table: HashTable::with_capacity(per_shard),
                    arena: Vec::new(),
                    ttl_keys: 0,
                })
            })
            .collect();
        KeyDir {
            shards,
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// A coarse position of `hash` in the index's memory when each shard
    /// has `buckets` buckets (see [`KeyDir::buckets_per_shard`]): its shard,
    /// then the top 10 bits of its home bucket, as a number below 2^16.
    /// Inserting many keys in this order touches the tables nearly
    /// sequentially instead of at random, which is what bounds a large merge.
    pub(crate) fn memory_order_in(hash: u64, buckets: u64) -> u16 {
        let bits = buckets.trailing_zeros(); // buckets is a power of two
        let home = hash & (buckets - 1);
        let top = if bits > 10 {
            home >> (bits - 10)
        } else {
            home << (10 - bits)
        };
        ((Self::shard_index(hash) as u64) << 10 | top) as u16
    }

    /// Buckets per shard (every shard was presized alike); hashbrown's home
    /// bucket of a hash is `hash & (buckets - 1)`.
    pub(crate) fn buckets_per_shard(&self) -> u64 {
        locks::read(&self.shards[0])
            .table
            .capacity()
            .saturating_mul(8)
            .div_ceil(7)
            .next_power_of_two()
            .max(1) as u64
    }

    #[inline]
    fn shard_of(&self, hash: u64) -> &RwLock<Shard> {
        // hashbrown uses the low bits for the bucket and the top 7 for tags;
        // take the shard from bits in between.
        &self.shards[Self::shard_index(hash)]
    }

    /// The entry of `key`, if any (expired or not: the caller decides).
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<IndexEntry> {
        let h = self.hash(key);
        let shard = locks::read(self.shard_of(h));
        let arena = &shard.arena;
        shard
            .table
            .find(h, |s| key_eq(s, key, arena))
            .map(Slot::entry)
    }

    /// Sets the entry of `key`, returning the one it replaced.
    pub(crate) fn insert(&self, key: &[u8], entry: IndexEntry) -> Option<IndexEntry> {
        let h = self.hash(key);
        let mut shard = locks::write(self.shard_of(h));
        let old = self.upsert(&mut shard, h, key, |cur| {
            if let Some(c) = cur {
                let old = c.entry();
                c.set(&entry);
                (Some(old), None)
            } else {
                (None, Some(entry))
            }
        });
        shard.count_ttl_change(old.is_some_and(|o| o.expires_at_ms != 0), &entry);
        old
    }

    /// Finds `key`'s slot and lets `f` update it (`Some(slot)`) or decide
    /// what to insert (`None`: return the entry to insert as the second
    /// value). Returns `f`'s first value.
    fn upsert<R>(
        &self,
        shard: &mut Shard,
        h: u64,
        key: &[u8],
        f: impl FnOnce(Option<&mut Slot>) -> (R, Option<IndexEntry>),
    ) -> R {
        let hasher = &self.hasher;
        let Shard { table, arena, .. } = shard;
        let arena_ro: &Vec<Box<[u8]>> = arena;
        match table.entry(
            h,
            |s| key_eq(s, key, arena_ro),
            |s| hasher.hash_one(s.key(arena_ro)),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => f(Some(o.get_mut())).0,
            hashbrown::hash_table::Entry::Vacant(v) => {
                let (r, new) = f(None);
                if let Some(e) = new {
                    let mut inline = [0u8; INLINE];
                    let len = if key.len() <= INLINE {
                        inline[..key.len()].copy_from_slice(key);
                        key.len() as u8
                    } else {
                        let idx = u32::try_from(arena.len()).unwrap_or(u32::MAX);
                        inline[..4].copy_from_slice(&idx.to_le_bytes());
                        arena.push(key.into());
                        IN_ARENA
                    };
                    v.insert(Slot::new(len, inline, &e));
                }
                r
            }
        }
    }

    /// Sets the entry of `key` unless the present one has a higher sequence
    /// number. Used while recovery merges segments in any order.
    #[cfg(test)]
    pub(crate) fn insert_if_newer(&self, key: &[u8], entry: IndexEntry) {
        let (h, _) = self.locate(key);
        self.insert_if_newer_hashed(h, key, entry);
    }

    /// The hash of `key` and the index of its shard.
    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> (u64, usize) {
        let h = self.hash(key);
        (h, Self::shard_index(h))
    }

    /// The shard a hash belongs to.
    #[inline]
    pub(crate) fn shard_of_hash(hash: u64) -> usize {
        Self::shard_index(hash)
    }

    #[inline]
    fn shard_index(hash: u64) -> usize {
        ((hash >> 40) as usize) & (SHARDS - 1)
    }

    /// [`KeyDir::insert_if_newer`] with the hash from [`KeyDir::locate`].
    pub(crate) fn insert_if_newer_hashed(&self, h: u64, key: &[u8], entry: IndexEntry) {
        let mut shard = locks::write(self.shard_of(h));
        let changed = self.upsert(&mut shard, h, key, |cur| match cur {
            Some(c) => {
                if u64::from_le_bytes(c.seq) > entry.seq {
                    return (None, None);
                }
                let had = c.has_ttl();
                c.set(&entry);
                (Some(had), None)
            }
            None => (Some(false), Some(entry)),
        });
        if let Some(had_ttl) = changed {
            shard.count_ttl_change(had_ttl, &entry);
        }
    }

    /// Removes the slot of `key` for which `also` holds; returns its entry.
    fn remove_where(&self, key: &[u8], also: impl Fn(&IndexEntry) -> bool) -> Option<IndexEntry> {
        let h = self.hash(key);
        let mut shard = locks::write(self.shard_of(h));
        let Shard {
            table,
            arena,
            ttl_keys,
        } = &mut *shard;
        let slot = {
            let arena_ro: &Vec<Box<[u8]>> = arena;
            match table.find_entry(h, |s| key_eq(s, key, arena_ro) && also(&s.entry())) {
                Ok(o) => o.remove().0,
                Err(_) => return None,
            }
        };
        if slot.has_ttl() {
            *ttl_keys -= 1;
        }
        if let Some(i) = slot.arena_index() {
            // Keep the arena dense: the last key moves into the hole.
            arena.swap_remove(i);
            if let Some(moved) = arena.get(i) {
                let from = arena.len() as u32;
                let mh = self.hasher.hash_one(&moved[..]);
                if let Some(s) = table.find_mut(mh, |s| s.arena_index() == Some(from as usize)) {
                    s.key[..4].copy_from_slice(&(i as u32).to_le_bytes());
                }
            }
        }
        Some(slot.entry())
    }

    /// Removes `key`, returning its entry.
    pub(crate) fn remove(&self, key: &[u8]) -> Option<IndexEntry> {
        self.remove_where(key, |_| true)
    }

    /// Replaces the entry of `key` with `new` only if it is still exactly
    /// `expected` (a compare-and-swap on the record's location). Returns
    /// whether it did.
    pub(crate) fn replace_if_eq(&self, key: &[u8], expected: &IndexEntry, new: IndexEntry) -> bool {
        let h = self.hash(key);
        let mut shard = locks::write(self.shard_of(h));
        let Shard { table, arena, .. } = &mut *shard;
        let arena_ro: &Vec<Box<[u8]>> = arena;
        let Some(s) = table.find_mut(h, |s| key_eq(s, key, arena_ro) && s.entry() == *expected)
        else {
            return false;
        };
        s.set(&new);
        shard.count_ttl_change(expected.expires_at_ms != 0, &new);
        true
    }

    /// Removes `key` only if its entry is still exactly `expected`.
    pub(crate) fn remove_if_eq(&self, key: &[u8], expected: &IndexEntry) -> bool {
        self.remove_where(key, |e| e == expected).is_some()
    }

    pub(crate) fn shard_count(&self) -> usize {
        SHARDS
    }

    pub(crate) fn read_shard(&self, i: usize) -> RwLockReadGuard<'_, Shard> {
        locks::read(&self.shards[i])
    }

    pub(crate) fn write_shard(&self, i: usize) -> RwLockWriteGuard<'_, Shard> {
        locks::write(&self.shards[i])
    }

    /// Number of entries that are not expired at `now_ms`.
    pub(crate) fn live_len(&self, now_ms: u64) -> u64 {
        let mut n = 0u64;
        for i in 0..SHARDS {
            let s = self.read_shard(i);
            if s.ttl_keys == 0 {
                n += s.len() as u64;
            } else {
                s.for_each(|_, e| {
                    if !e.is_expired(now_ms) {
                        n += 1;
                    }
                });
            }
        }
        n
    }

    /// Entries that carry an expiry, expired or not: the shards' counters,
    /// no walk.
    pub(crate) fn ttl_len(&self) -> u64 {
        (0..SHARDS)
            .map(|i| self.read_shard(i).ttl_keys as u64)
            .sum()
    }

    /// Total entries, expired or not.
    pub(crate) fn raw_len(&self) -> u64 {
        (0..SHARDS).map(|i| self.read_shard(i).len() as u64).sum()
    }

    /// Estimated heap bytes held by the index.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let mut total = 0u64;
        for i in 0..SHARDS {
            let s = self.read_shard(i);
            total += s.table.allocation_size() as u64;
            total += (s.arena.capacity() * std::mem::size_of::<Box<[u8]>>()) as u64;
            // Each long key's own allocation, rounded as malloc does.
            total += s
                .arena
                .iter()
                .map(|k| (k.len() as u64 + 8).next_multiple_of(16).max(32))
                .sum::<u64>();
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, exp: u64) -> IndexEntry {
        IndexEntry {
            seq,
            expires_at_ms: exp,
            offset: 32,
            file_id: 1,
            value_len: 3,
        }
    }

    #[test]
    fn slot_is_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), 45);
        assert_eq!(std::mem::align_of::<Slot>(), 1);
    }

    #[test]
    fn insert_get_remove() {
        let kd = KeyDir::new();
        let long = vec![7u8; 100];
        assert_eq!(kd.insert(b"a", e(1, 0)), None);
        assert_eq!(kd.insert(&long, e(2, 0)), None);
        assert_eq!(kd.insert(b"", e(3, 0)), None);
        assert_eq!(kd.get(b"a"), Some(e(1, 0)));
        assert_eq!(kd.get(&long), Some(e(2, 0)));
        assert_eq!(kd.get(b""), Some(e(3, 0)));
        assert_eq!(kd.insert(b"a", e(4, 0)), Some(e(1, 0)));
        assert_eq!(kd.remove(b"a"), Some(e(4, 0)));
        assert_eq!(kd.get(b"a"), None);
        assert_eq!(kd.raw_len(), 2);
    }

    #[test]
    fn ttl_counting_and_live_len() {
        let kd = KeyDir::new();
        kd.insert(b"a", e(1, 100));
        kd.insert(b"b", e(2, 0));
        kd.insert(b"c", e(3, 50));
        assert_eq!(kd.live_len(10), 3);
        assert_eq!(kd.live_len(60), 2);
        assert_eq!(kd.live_len(100), 1);
        assert_eq!(kd.ttl_len(), 2);
        kd.insert(b"a", e(4, 0));
        assert_eq!(kd.live_len(100), 2);
        assert_eq!(kd.ttl_len(), 1);
        assert!(kd.remove_if_eq(b"c", &e(3, 50)));
        assert!(!kd.remove_if_eq(b"b", &e(9, 0)));
        assert_eq!(kd.ttl_len(), 0);
        let ttl: usize = (0..kd.shard_count())
            .map(|i| kd.read_shard(i).ttl_keys())
            .sum();
        assert_eq!(ttl, 0);
    }

    #[test]
    fn insert_if_newer_keeps_highest_seq() {
        let kd = KeyDir::new();
        kd.insert_if_newer(b"k", e(5, 0));
        kd.insert_if_newer(b"k", e(3, 0));
        assert_eq!(kd.get(b"k").map(|x| x.seq), Some(5));
        kd.insert_if_newer(b"k", e(6, 0));
        assert_eq!(kd.get(b"k").map(|x| x.seq), Some(6));
    }

    /// Long keys live in the arena, which removals and `retain` keep dense:
    /// every key must still be found, with its own entry, after any mix.
    #[test]
    fn arena_keys_survive_removals_and_retain() {
        let kd = KeyDir::new();
        let mut model = std::collections::HashMap::new();
        let key = |i: u64| {
            // Lengths 0..=40 so that inline and arena keys mix.
            let len = (i * 7 % 41) as usize;
            let mut k = i.to_le_bytes().repeat(6);
            k.truncate(len.max(8));
            k
        };
        let mut x = 12345u64;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let i = x % 500;
            let k = key(i);
            match x % 4 {
                0 => {
                    assert_eq!(kd.remove(&k), model.remove(&k));
                }
                1 => {
                    let cur = model.get(&k).copied();
                    if let Some(c) = cur {
                        assert!(kd.remove_if_eq(&k, &c));
                        model.remove(&k);
                    }
                }
                _ => {
                    let e = e(step, if x.is_multiple_of(3) { step + 10 } else { 0 });
                    assert_eq!(kd.insert(&k, e), model.insert(k.clone(), e));
                }
            }
            if step % 5000 == 4999 {
                let cut = step - 2000;
                for i in 0..kd.shard_count() {
                    kd.write_shard(i).retain(|_, e| e.seq < cut, |_, _| {});
                }
                model.retain(|_, e| e.seq >= cut);
            }
        }
        assert_eq!(kd.raw_len(), model.len() as u64);
        for (k, e) in &model {
            assert_eq!(kd.get(k), Some(*e));
        }
        let mut seen = 0;
        for i in 0..kd.shard_count() {
            kd.read_shard(i).for_each(|k, e| {
                assert_eq!(model.get(k), Some(e));
                seen += 1;
            });
        }
        assert_eq!(seen, model.len());
        let ttl: usize = (0..kd.shard_count())
            .map(|i| kd.read_shard(i).ttl_keys())
            .sum();
        assert_eq!(ttl, model.values().filter(|e| e.expires_at_ms != 0).count());
    }
}
