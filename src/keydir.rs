//! The keydir: an in-memory hash index from key to the newest record.
//!
//! It is split into shards, each behind its own `RwLock`, so that readers
//! on different keys never contend and a writer blocks only one shard. Keys
//! are hashed once with foldhash (a fast, randomly seeded hasher) and the
//! same hash picks the shard and the bucket in a `hashbrown::HashTable`.
//! Keys up to 22 bytes are stored inline, with no allocation of their own.

use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::record;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
const INLINE: usize = 22;

/// Marks a tombstone entry (only present while recovery builds the keydir).
pub(crate) const TOMBSTONE_LEN: u32 = u32::MAX;

/// Where the newest record of a key lives, and when it expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub seq: u64,
    /// Absolute unix milliseconds; 0 means no expiry.
    pub expires_at_ms: u64,
    pub offset: u64,
    pub file_id: u32,
    pub value_len: u32,
}

impl Entry {
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

/// A key, inline when short.
#[derive(Clone)]
pub(crate) enum KeyBuf {
    Inline { len: u8, data: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl KeyBuf {
    pub(crate) fn new(key: &[u8]) -> KeyBuf {
        if key.len() <= INLINE {
            let mut data = [0u8; INLINE];
            data[..key.len()].copy_from_slice(key);
            KeyBuf::Inline {
                len: key.len() as u8,
                data,
            }
        } else {
            KeyBuf::Heap(key.into())
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            KeyBuf::Inline { len, data } => &data[..usize::from(*len)],
            KeyBuf::Heap(b) => b,
        }
    }
}

pub(crate) struct Shard {
    table: HashTable<(KeyBuf, Entry)>,
    /// Entries in this shard that carry an expiry.
    ttl_keys: usize,
}

impl Shard {
    /// Keeps `ttl_keys` right after an entry that had (or had no) expiry
    /// was replaced by `new`.
    fn count_ttl_change(&mut self, had_ttl: bool, new: &Entry) {
        match (had_ttl, new.expires_at_ms != 0) {
            (true, false) => self.ttl_keys -= 1,
            (false, true) => self.ttl_keys += 1,
            _ => {}
        }
    }

    /// Calls `f` for every entry.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&[u8], &Entry)) {
        for (k, e) in self.table.iter() {
            f(k.as_slice(), e);
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
        mut drop: impl FnMut(&[u8], &Entry) -> bool,
        mut on_removed: impl FnMut(&[u8], &Entry),
    ) {
        let mut removed_ttl = 0usize;
        self.table.retain(|(k, e)| {
            if drop(k.as_slice(), e) {
                if e.expires_at_ms != 0 {
                    removed_ttl += 1;
                }
                on_removed(k.as_slice(), e);
                false
            } else {
                true
            }
        });
        self.ttl_keys -= removed_ttl;
    }
}

/// The sharded index.
pub(crate) struct KeyDir {
    shards: Box<[RwLock<Shard>]>,
    hasher: foldhash::fast::RandomState,
}

fn read_lock<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
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

    #[inline]
    fn shard_of(&self, hash: u64) -> &RwLock<Shard> {
        // hashbrown uses the low bits for the bucket and the top 7 for tags;
        // take the shard from bits in between.
        &self.shards[Self::shard_index(hash)]
    }

    /// The entry of `key`, if any (expired or not: the caller decides).
    #[inline]
    pub(crate) fn get(&self, key: &[u8]) -> Option<Entry> {
        let h = self.hash(key);
        let shard = read_lock(self.shard_of(h));
        shard
            .table
            .find(h, |(k, _)| k.as_slice() == key)
            .map(|(_, e)| *e)
    }

    /// Sets the entry of `key`, returning the one it replaced.
    pub(crate) fn insert(&self, key: &[u8], entry: Entry) -> Option<Entry> {
        let h = self.hash(key);
        let mut shard = write_lock(self.shard_of(h));
        let hasher = &self.hasher;
        let old = match shard.table.entry(
            h,
            |(k, _)| k.as_slice() == key,
            |(k, _)| hasher.hash_one(k.as_slice()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let old = o.get().1;
                o.get_mut().1 = entry;
                Some(old)
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert((KeyBuf::new(key), entry));
                None
            }
        };
        shard.count_ttl_change(old.is_some_and(|o| o.expires_at_ms != 0), &entry);
        old
    }

    /// Sets the entry of `key` unless the present one has a higher sequence
    /// number. Used while recovery merges segments in any order.
    #[cfg(test)]
    pub(crate) fn insert_if_newer(&self, key: &[u8], entry: Entry) {
        let (h, _) = self.locate(key);
        self.insert_if_newer_hashed(h, key, entry);
    }

    /// The hash of `key` and the index of its shard.
    #[inline]
    pub(crate) fn locate(&self, key: &[u8]) -> (u64, usize) {
        let h = self.hash(key);
        (h, Self::shard_index(h))
    }

    #[inline]
    fn shard_index(hash: u64) -> usize {
        ((hash >> 40) as usize) & (SHARDS - 1)
    }

    /// [`KeyDir::insert_if_newer`] with the hash from [`KeyDir::locate`].
    pub(crate) fn insert_if_newer_hashed(&self, h: u64, key: &[u8], entry: Entry) {
        let mut shard = write_lock(self.shard_of(h));
        let hasher = &self.hasher;
        let had_ttl = match shard.table.entry(
            h,
            |(k, _)| k.as_slice() == key,
            |(k, _)| hasher.hash_one(k.as_slice()),
        ) {
            hashbrown::hash_table::Entry::Occupied(mut o) => {
                let cur = &mut o.get_mut().1;
                if cur.seq > entry.seq {
                    return;
                }
                let had = cur.expires_at_ms != 0;
                *cur = entry;
                had
            }
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert((KeyBuf::new(key), entry));
                false
            }
        };
        shard.count_ttl_change(had_ttl, &entry);
    }

    /// Removes `key`, returning its entry.
    pub(crate) fn remove(&self, key: &[u8]) -> Option<Entry> {
        let h = self.hash(key);
        let mut shard = write_lock(self.shard_of(h));
        let old = match shard.table.find_entry(h, |(k, _)| k.as_slice() == key) {
            Ok(o) => Some(o.remove().0 .1),
            Err(_) => None,
        };
        if old.is_some_and(|o| o.expires_at_ms != 0) {
            shard.ttl_keys -= 1;
        }
        old
    }

    /// Replaces the entry of `key` with `new` only if it is still exactly
    /// `expected` (a compare-and-swap on the record's location). Returns
    /// whether it did.
    pub(crate) fn replace_if_eq(&self, key: &[u8], expected: &Entry, new: Entry) -> bool {
        let h = self.hash(key);
        let mut shard = write_lock(self.shard_of(h));
        let Some((_, e)) = shard
            .table
            .find_mut(h, |(k, e)| k.as_slice() == key && e == expected)
        else {
            return false;
        };
        *e = new;
        shard.count_ttl_change(expected.expires_at_ms != 0, &new);
        true
    }

    /// Removes `key` only if its entry is still exactly `expected`.
    pub(crate) fn remove_if_eq(&self, key: &[u8], expected: &Entry) -> bool {
        let h = self.hash(key);
        let mut shard = write_lock(self.shard_of(h));
        let removed = match shard
            .table
            .find_entry(h, |(k, e)| k.as_slice() == key && e == expected)
        {
            Ok(o) => {
                o.remove();
                true
            }
            Err(_) => false,
        };
        if removed && expected.expires_at_ms != 0 {
            shard.ttl_keys -= 1;
        }
        removed
    }

    pub(crate) fn shard_count(&self) -> usize {
        SHARDS
    }

    pub(crate) fn read_shard(&self, i: usize) -> RwLockReadGuard<'_, Shard> {
        read_lock(&self.shards[i])
    }

    pub(crate) fn write_shard(&self, i: usize) -> RwLockWriteGuard<'_, Shard> {
        write_lock(&self.shards[i])
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

    /// Total entries, expired or not.
    pub(crate) fn raw_len(&self) -> u64 {
        (0..SHARDS).map(|i| self.read_shard(i).len() as u64).sum()
    }

    /// Estimated heap bytes held by the index.
    pub(crate) fn memory_bytes(&self) -> u64 {
        let slot = std::mem::size_of::<(KeyBuf, Entry)>() as u64 + 1;
        let mut total = 0u64;
        for i in 0..SHARDS {
            let s = self.read_shard(i);
            total += s.table.capacity() as u64 * slot;
            s.for_each(|k, _| {
                if k.len() > INLINE {
                    total += k.len() as u64;
                }
            });
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, exp: u64) -> Entry {
        Entry {
            seq,
            expires_at_ms: exp,
            offset: 32,
            file_id: 1,
            value_len: 3,
        }
    }

    #[test]
    fn slot_is_compact() {
        assert_eq!(std::mem::size_of::<KeyBuf>(), 24);
        assert_eq!(std::mem::size_of::<Entry>(), 32);
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
        kd.insert(b"a", e(4, 0));
        assert_eq!(kd.live_len(100), 2);
        assert!(kd.remove_if_eq(b"c", &e(3, 50)));
        assert!(!kd.remove_if_eq(b"b", &e(9, 0)));
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
}
