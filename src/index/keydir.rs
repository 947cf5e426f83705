//! The keydir: an in-memory hash index from key to the newest record.
//!
//! It is split into shards, each behind its own `RwLock`, so that readers
//! on different keys never contend and a writer blocks only one shard. Keys
//! are hashed once with foldhash (a fast, randomly seeded hasher); 40 bits
//! of that hash pick the shard, the bucket and a tag, and are all a slot
//! keeps of the key. The key itself is only in the log: a lookup takes the
//! slots whose 40 bits match and checks the key in the record each points
//! at (through a [`RecordSource`]), as FASTER does. So the index's size per
//! key does not depend on the key's length.
//!
//! The shards are of staggered size: shard `i` gets a share of the hash
//! space proportional to 2^(i/64), so that the 64 power-of-two tables do not
//! all double at once and the index's load stays near its average at every
//! size (docs/design.md, "Opening without reading every key").

use std::hash::BuildHasher;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashTable;

use crate::error::Result;
use crate::format::record::Header;
use crate::util::locks;

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

/// Where the newest record of a key lives, and when it expires: what a
/// slot holds. The record's sequence number and lengths are in its header
/// (see [`RecordSource::holds_key`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Absolute unix milliseconds; 0 means no expiry. A slot keeps at most
    /// [`MAX_EXPIRY_MS`]: a later expiry (which only a record written
    /// before that limit can carry) comes back as that.
    pub expires_at_ms: u64,
    pub offset: u64,
    pub file_id: u32,
}

impl IndexEntry {
    #[inline]
    pub(crate) fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// Whether both point at the same record (places are never reused:
    /// segment ids only grow).
    #[inline]
    pub(crate) fn same_place(&self, other: &IndexEntry) -> bool {
        self.file_id == other.file_id && self.offset == other.offset
    }
}

/// Where the keydir finds what it does not keep (the key, the sequence
/// number, the value's length): the records its entries point at.
pub(crate) trait RecordSource {
    /// The header of the record `entry` points at if that record is a put
    /// of `key`; `None` if it is another key's.
    ///
    /// # Errors
    /// The record cannot be read or is damaged.
    fn holds_key(&self, entry: &IndexEntry, key: &[u8]) -> Result<Option<Header>>;
}

/// The bits of a key's hash a slot keeps.
const HASH_BITS: u32 = 40;

// ---- The slot's encoding ------------------------------------------------

/// The bytes of a slot (hashbrown adds one control byte per bucket).
pub(crate) const SLOT_BYTES: usize = 19;

/// The latest expiry a slot holds: 6 bytes of unix milliseconds (the year
/// 10889). Writes refuse later ones (`Error::InvalidTtl`).
pub(crate) const MAX_EXPIRY_MS: u64 = crate::types::MAX_EXPIRY_MS;

const _: () = assert!(MAX_EXPIRY_MS < 1 << 48);
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

/// One slot of a shard's table: 40 bits of the key's hash, segment id,
/// offset and expiry, packed with no padding (every field is a byte array,
/// so the slot's alignment is 1). `offset` is 32 bits: a segment never
/// reaches 4 GiB (see `Options::max_segment_bytes`, and recovery refuses
/// longer segment files); `expires_at_ms` is 48 ([`MAX_EXPIRY_MS`]).
#[derive(Clone, Copy)]
struct Slot {
    hash: [u8; 5],
    file_id: [u8; 4],
    offset: [u8; 4],
    expires_at_ms: [u8; 6],
}

impl Slot {
    fn new(h40: u64, e: &IndexEntry) -> Slot {
        let mut hash = [0u8; 5];
        hash.copy_from_slice(&h40.to_le_bytes()[..5]);
        let mut s = Slot {
            hash,
            file_id: [0; 4],
            offset: [0; 4],
            expires_at_ms: [0; 6],
        };
        s.set(e);
        s
    }

    #[inline]
    fn h40(&self) -> u64 {
        let mut b = [0u8; 8];
        b[..5].copy_from_slice(&self.hash);
        u64::from_le_bytes(b)
    }

    #[inline]
    fn entry(&self) -> IndexEntry {
        let mut exp = [0u8; 8];
        exp[..6].copy_from_slice(&self.expires_at_ms);
        IndexEntry {
            expires_at_ms: u64::from_le_bytes(exp),
            offset: u64::from(u32::from_le_bytes(self.offset)),
            file_id: u32::from_le_bytes(self.file_id),
        }
    }

    #[inline]
    fn set(&mut self, e: &IndexEntry) {
        let exp = e.expires_at_ms.min(MAX_EXPIRY_MS);
        self.expires_at_ms.copy_from_slice(&exp.to_le_bytes()[..6]);
        // Checked where entries are made: segment offsets fit in 32 bits.
        debug_assert!(e.offset <= u64::from(u32::MAX));
        self.offset = (e.offset as u32).to_le_bytes();
        self.file_id = e.file_id.to_le_bytes();
    }

    #[inline]
    fn has_ttl(&self) -> bool {
        self.expires_at_ms != [0; 6]
    }
    #[inline]
    fn is_at(&self, e: &IndexEntry) -> bool {
        self.is_place(e.file_id, e.offset)
    }

    /// Whether the slot points at `offset` of segment `file_id`.
    #[inline]
    fn is_place(&self, file_id: u32, offset: u64) -> bool {
        self.file_id == file_id.to_le_bytes()
            && u64::from(u32::from_le_bytes(self.offset)) == offset
    }
}

// ---- End of the slot's encoding -----------------------------------------

/// The 40 bits of a 64-bit key hash a slot keeps.
#[inline]
fn h40_of(hash: u64) -> u64 {
    hash >> (64 - HASH_BITS)
}

/// The hash hashbrown sees for a slot, made from its 40 bits alone (so a
/// table grows without reading any key): bits 12..40 pick the bucket (the
/// low 12 picked the shard), and the top 7 are hashbrown's tag.
#[inline]
fn table_hash(h40: u64) -> u64 {
    (h40 >> 12) | ((h40 >> 33) << 57)
}

/// Shard `i`'s share of the hash space, in 4096ths: proportional to
/// 2^(i/64), so that the shards fill (and double) at staggered times.
const STAGGER: [u8; 4096] = stagger();

const fn stagger() -> [u8; 4096] {
    // 2^(1/64), and the weights 2^(i/64) for i in 0..64.
    let step = 1.010_889_286_051_700_5_f64;
    let mut w = [0f64; SHARDS];
    let mut total = 0f64;
    let mut x = 1f64;
    let mut i = 0;
    while i < SHARDS {
        w[i] = x;
        total += x;
        x *= step;
        i += 1;
    }
    let mut table = [0u8; 4096];
    let mut shard = 0usize;
    let mut upto = w[0] / total * 4096.0;
    let mut j = 0;
    while j < 4096 {
        while (j as f64) >= upto && shard + 1 < SHARDS {
            shard += 1;
            upto += w[shard] / total * 4096.0;
        }
        table[j] = shard as u8;
        j += 1;
    }
    table
}

/// The share of the keys shard `i` gets, as a fraction.
fn share_of(i: usize) -> f64 {
    STAGGER.iter().filter(|&&s| usize::from(s) == i).count() as f64 / 4096.0
}

/// The largest segment offset the index can hold.
pub(crate) const MAX_OFFSET: u64 = u32::MAX as u64;

pub(crate) struct Shard {
    table: HashTable<Slot>,
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
    pub(crate) fn for_each(&self, mut f: impl FnMut(&IndexEntry)) {
        for s in self.table.iter() {
            f(&s.entry());
        }
    }

    /// Calls `f` for every entry, with the hash bits its slot keeps (see
    /// [`KeyDir::hash_bits`]).
    pub(crate) fn for_each_hashed(&self, mut f: impl FnMut(u64, &IndexEntry)) {
        for s in self.table.iter() {
            f(s.h40(), &s.entry());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn ttl_keys(&self) -> usize {
        self.ttl_keys
    }

    /// Removes every entry for which `drop` returns true, handing each to
    /// `on_removed`.
    pub(crate) fn retain(
        &mut self,
        mut drop: impl FnMut(&IndexEntry) -> bool,
        mut on_removed: impl FnMut(&IndexEntry),
    ) {
        let mut removed_ttl = 0usize;
        self.table.retain(|s| {
            let e = s.entry();
            if drop(&e) {
                if e.expires_at_ms != 0 {
                    removed_ttl += 1;
                }
                on_removed(&e);
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
    /// Each shard's bucket count when it was presized (for the memory
    /// order of a bulk load).
    presized_buckets: [u64; SHARDS],
    /// foldhash with a per-store seed (see "The index checkpoint" below).
    hasher: foldhash::fast::FixedState,
    seed: u64,
}

impl KeyDir {
    #[cfg(test)]
    pub(crate) fn new() -> KeyDir {
        KeyDir::with_capacity(0)
    }

    /// An index with room for about `keys` keys without growing, hashing
    /// with a new random seed.
    pub(crate) fn with_capacity(keys: usize) -> KeyDir {
        KeyDir::with_capacity_seeded(keys, crate::util::rand::FastRng::new().next_u64())
    }

    /// [`KeyDir::with_capacity`] with the hash seed `seed`.
    pub(crate) fn with_capacity_seeded(keys: usize, seed: u64) -> KeyDir {
        let mut presized_buckets = [1u64; SHARDS];
        let shards = (0..SHARDS)
            .map(|i| {
                let want = (keys as f64 * share_of(i)).ceil() as usize;
                let table = HashTable::with_capacity(want);
                presized_buckets[i] = buckets_of(&table);
                RwLock::new(Shard { table, ttl_keys: 0 })
            })
            .collect();
        KeyDir {
            shards,
            presized_buckets,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            seed,
        }
    }

    /// The 64-bit hash of `key` (what [`KeyDir::insert_unique_hashed`] and
    /// [`KeyDir::memory_order`] take).
    #[inline]
    pub(crate) fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The hash bits a slot of `key` keeps: a slot whose bits differ from
    /// those of the key in its record was made for another key (a hint
    /// file that disagrees with its segment).
    #[inline]
    pub(crate) fn hash_bits(&self, key: &[u8]) -> u64 {
        h40_of(self.hash(key))
    }

    /// The shard a 64-bit key hash belongs to.
    #[inline]
    pub(crate) fn shard_of_hash(hash: u64) -> usize {
        usize::from(STAGGER[(h40_of(hash) & 0xfff) as usize])
    }

    /// A coarse position of `hash` in the index's memory as presized: its
    /// shard, then the top 10 bits of its home bucket, as a number below
    /// 2^16. Inserting many keys in this order touches the tables nearly
    /// sequentially instead of at random, which is what bounds a large load.
    pub(crate) fn memory_order(&self, hash: u64) -> u16 {
        let shard = Self::shard_of_hash(hash);
        let buckets = self.presized_buckets[shard];
        let bits = buckets.trailing_zeros(); // a power of two
        let home = table_hash(h40_of(hash)) & (buckets - 1);
        let top = if bits > 10 {
            home >> (bits - 10)
        } else {
            home << (10 - bits)
        };
        ((shard as u64) << 10 | top) as u16
    }

    /// Where `hash`'s slot would lie in this index's memory as presized:
    /// its shard, then its home bucket (for touching many slots in order).
    pub(crate) fn slot_order(&self, hash: u64) -> u64 {
        let shard = Self::shard_of_hash(hash);
        let home = table_hash(h40_of(hash)) & (self.presized_buckets[shard] - 1);
        ((shard as u64) << 48) | home
    }

    /// The entry of the first slot whose hash bits match `key`'s: nearly
    /// always `key`'s own, but the caller must check the key in the record
    /// (and call [`KeyDir::get`] when it differs).
    #[inline]
    pub(crate) fn candidate(&self, key: &[u8]) -> Option<IndexEntry> {
        let h40 = h40_of(self.hash(key));
        let shard = locks::read(self.shard_of_h40(h40));
        shard
            .table
            .find(table_hash(h40), |s| s.h40() == h40)
            .map(Slot::entry)
    }

    #[inline]
    fn shard_of_h40(&self, h40: u64) -> &RwLock<Shard> {
        &self.shards[usize::from(STAGGER[(h40 & 0xfff) as usize])]
    }

    /// The entry of `key`, if any (expired or not: the caller decides).
    ///
    /// # Errors
    /// A record a candidate slot points at cannot be read.
    pub(crate) fn get(&self, key: &[u8], src: &dyn RecordSource) -> Result<Option<IndexEntry>> {
        Ok(self.get_with_header(key, src)?.map(|(e, _)| e))
    }

    /// [`KeyDir::get`], with the header of the record the entry points at
    /// (read to check the key, so it costs nothing more): its sequence
    /// number and length, which the slot does not keep. The header is as
    /// read, before the record's checksum is verified (a read of the value
    /// verifies it).
    ///
    /// # Errors
    /// As [`KeyDir::get`].
    pub(crate) fn get_with_header(
        &self,
        key: &[u8],
        src: &dyn RecordSource,
    ) -> Result<Option<(IndexEntry, Header)>> {
        let h40 = h40_of(self.hash(key));
        let shard = locks::read(self.shard_of_h40(h40));
        find(&shard.table, h40, key, src).map(|s| s.map(|(s, h)| (s.entry(), h)))
    }

    /// [`KeyDir::get_with_header`] for a key whose record at
    /// `file_id`/`offset` the caller is reading (compaction): a slot
    /// pointing right there is the key's, found without reading any record,
    /// and comes with no header (the caller has that record).
    ///
    /// # Errors
    /// As [`KeyDir::get`].
    pub(crate) fn get_near(
        &self,
        key: &[u8],
        file_id: u32,
        offset: u64,
        src: &dyn RecordSource,
    ) -> Result<Option<(IndexEntry, Option<Header>)>> {
        let h40 = h40_of(self.hash(key));
        let shard = locks::read(self.shard_of_h40(h40));
        let here = shard.table.find(table_hash(h40), |s| {
            s.h40() == h40 && s.is_place(file_id, offset)
        });
        match here {
            Some(s) => Ok(Some((s.entry(), None))),
            None => find(&shard.table, h40, key, src).map(|s| s.map(|(s, h)| (s.entry(), Some(h)))),
        }
    }

    /// Sets the entry of `key`, returning the one it replaced (the write
    /// path uses [`KeyDir::apply_at`]).
    ///
    /// # Errors
    /// A record a candidate slot points at cannot be read; nothing changed.
    #[cfg(test)]
    pub(crate) fn insert(
        &self,
        key: &[u8],
        entry: IndexEntry,
        src: &dyn RecordSource,
    ) -> Result<Option<IndexEntry>> {
        let h40 = h40_of(self.hash(key));
        let mut shard = locks::write(self.shard_of_h40(h40));
        let old = match find(&shard.table, h40, key, src)? {
            Some((at, _)) => {
                let at = at.entry();
                let slot = shard
                    .table
                    .find_mut(table_hash(h40), |s| s.h40() == h40 && s.is_at(&at));
                if let Some(s) = slot {
                    s.set(&entry);
                }
                Some(at)
            }
            None => {
                shard
                    .table
                    .insert_unique(table_hash(h40), Slot::new(h40, &entry), |s| {
                        table_hash(s.h40())
                    });
                None
            }
        };
        shard.count_ttl_change(old.is_some_and(|o| o.expires_at_ms != 0), &entry);
        Ok(old)
    }

    /// Sets (`Some`) or removes (`None`) the entry of `key`, whose entry
    /// was `was` when the caller looked it up with [`KeyDir::get`] (under
    /// the writer lock, which it still holds: no other slot for the key can
    /// have appeared since). Finds the slot by its place, reading no key,
    /// unless a compaction moved it meanwhile. Returns the replaced entry.
    ///
    /// # Errors
    /// The slot moved and a record a candidate slot points at cannot be
    /// read; nothing changed.
    pub(crate) fn apply_at(
        &self,
        key: &[u8],
        was: Option<IndexEntry>,
        new: Option<IndexEntry>,
        src: &dyn RecordSource,
    ) -> Result<Option<IndexEntry>> {
        let h40 = h40_of(self.hash(key));
        let mut shard = locks::write(self.shard_of_h40(h40));
        let at = match was {
            None => None,
            Some(w) => {
                let moved = shard
                    .table
                    .find(table_hash(h40), |s| s.h40() == h40 && s.is_at(&w))
                    .is_none();
                if moved {
                    find(&shard.table, h40, key, src)?.map(|(s, _)| s.entry())
                } else {
                    Some(w)
                }
            }
        };
        Ok(put_slot(&mut shard, h40, at, new))
    }

    /// Replay after an index checkpoint (`recovery/replay.rs`): makes
    /// `key`'s entry `new` (`None`: removes it), where `key` had an entry
    /// at the checkpoint's cut exactly when `replaced` (the
    /// `FLAG_REPLACES` of its first record after the cut). That entry is
    /// found without reading when it is the only slot with the key's hash
    /// bits. Otherwise the candidates' records are read through `src`,
    /// except those `gone` says are no longer anywhere (a record a
    /// compaction dropped as dead: its key's newer record is after the
    /// cut); when no record read holds the key, the one such candidate is
    /// the key's. Returns the entry it replaced or removed.
    ///
    /// # Errors
    /// A candidate's record cannot be read, or `replaced` finds no slot (or
    /// several gone ones) for the key: the checkpoint does not match the
    /// log, and the caller falls back to an open from hints.
    pub(crate) fn replay(
        &self,
        hash: u64,
        key: &[u8],
        replaced: bool,
        new: Option<IndexEntry>,
        src: &dyn RecordSource,
        gone: &dyn Fn(&IndexEntry) -> bool,
    ) -> Result<Option<IndexEntry>> {
        let h40 = h40_of(hash);
        let mut shard = locks::write(self.shard_of_h40(h40));
        let mut matching = shard
            .table
            .iter_hash(table_hash(h40))
            .filter(|s| s.h40() == h40)
            .map(Slot::entry);
        let (first, second) = (matching.next(), matching.next());
        drop(matching);
        let old = match (replaced, first, second) {
            (_, None, _) => None,
            (true, Some(only), None) => Some(only),
            _ => {
                let candidates: Vec<IndexEntry> = shard
                    .table
                    .iter_hash(table_hash(h40))
                    .filter(|s| s.h40() == h40)
                    .map(Slot::entry)
                    .collect();
                let mut unknown = Vec::new();
                let mut holder = None;
                for c in &candidates {
                    if gone(c) {
                        unknown.push(*c);
                    } else if src.holds_key(c, key)?.is_some() {
                        holder = Some(*c);
                        break;
                    }
                }
                match (holder, unknown.as_slice()) {
                    (Some(h), _) => Some(h),
                    (None, [one]) if replaced => Some(*one),
                    // Without `replaced` the key had no entry: a candidate
                    // is its own only if its record says so (a guard
                    // against an entry removed without a record).
                    _ => None,
                }
            }
        };
        if replaced && old.is_none() {
            return Err(crate::error::Error::Io(std::io::Error::other(
                "a replayed record replaced an entry the checkpoint does not hold",
            )));
        }
        put_slot(&mut shard, h40, old, new);
        Ok(old)
    }

    /// Moves every slot of the shards `range` for which
    /// `to(segment, offset)` names a new place there (replay of a
    /// compaction after an index checkpoint).
    pub(crate) fn relocate(
        &self,
        range: std::ops::Range<usize>,
        mut to: impl FnMut(u32, u64) -> Option<(u32, u64)>,
    ) {
        for shard in &self.shards[range] {
            let mut shard = locks::write(shard);
            for s in shard.table.iter_mut() {
                let e = s.entry();
                if let Some((file_id, offset)) = to(e.file_id, e.offset) {
                    s.set(&IndexEntry {
                        file_id,
                        offset,
                        ..e
                    });
                }
            }
        }
    }

    /// Adds an entry for a key known to have none (recovery, after it kept
    /// only the newest record of each key), by the key's 64-bit hash.
    pub(crate) fn insert_unique_hashed(&self, hash: u64, entry: IndexEntry) {
        let h40 = h40_of(hash);
        let mut shard = locks::write(self.shard_of_h40(h40));
        shard
            .table
            .insert_unique(table_hash(h40), Slot::new(h40, &entry), |s| {
                table_hash(s.h40())
            });
        if entry.expires_at_ms != 0 {
            shard.ttl_keys += 1;
        }
    }

    /// Removes `key`, returning its entry.
    ///
    /// # Errors
    /// A record a candidate slot points at cannot be read; nothing changed.
    #[cfg(test)]
    pub(crate) fn remove(&self, key: &[u8], src: &dyn RecordSource) -> Result<Option<IndexEntry>> {
        let h40 = h40_of(self.hash(key));
        let mut shard = locks::write(self.shard_of_h40(h40));
        let Some(at) = find(&shard.table, h40, key, src)?.map(|(s, _)| s.entry()) else {
            return Ok(None);
        };
        Ok(remove_at(&mut shard, h40, &at))
    }

    /// Replaces the entry of `key` with `new` only if it is still exactly
    /// `expected` (a compare-and-swap on the record's location). Returns
    /// whether it did. No key is read: two live entries never share a place.
    pub(crate) fn replace_if_eq(&self, key: &[u8], expected: &IndexEntry, new: IndexEntry) -> bool {
        let h40 = h40_of(self.hash(key));
        let mut shard = locks::write(self.shard_of_h40(h40));
        let Some(s) = shard.table.find_mut(table_hash(h40), |s| {
            s.h40() == h40 && s.entry() == *expected
        }) else {
            return false;
        };
        s.set(&new);
        shard.count_ttl_change(expected.expires_at_ms != 0, &new);
        true
    }

    /// Removes `key` only if its entry is still exactly `expected`.
    pub(crate) fn remove_if_eq(&self, key: &[u8], expected: &IndexEntry) -> bool {
        let h40 = h40_of(self.hash(key));
        let mut shard = locks::write(self.shard_of_h40(h40));
        let found = shard
            .table
            .find(table_hash(h40), |s| {
                s.h40() == h40 && s.entry() == *expected
            })
            .is_some();
        found && remove_at(&mut shard, h40, expected).is_some()
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
                s.for_each(|e| {
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

    /// Heap bytes held by the index: the tables' allocations.
    pub(crate) fn memory_bytes(&self) -> u64 {
        (0..SHARDS)
            .map(|i| self.read_shard(i).table.allocation_size() as u64)
            .sum()
    }
}

// ---------------------------------------------------------------------
// The index checkpoint (`format/checkpoint.rs`): slots as bytes, a shard's
// slots exported in memory order, and shards rebuilt from them without
// reading any key. Only `Slot::to_bytes` and `Slot::from_bytes` know the
// slot's fields.
//
// The hash is foldhash's with a 64-bit seed of the store's (random, kept
// in the checkpoint so that its slots' hash bits stay valid; an open
// without one draws a new seed) and foldhash's fixed shared seed:
// `FixedState::with_seed(seed)` is `SeedableRandomState::with_seed(seed,
// SharedSeed::global_fixed())` in 8 bytes.
// ---------------------------------------------------------------------

const _: () = assert!(SHARDS == crate::format::checkpoint::SHARDS);

impl Slot {
    /// The slot's bytes, as they lie in memory.
    fn to_bytes(self) -> [u8; SLOT_BYTES] {
        let mut b = [0u8; SLOT_BYTES];
        let mut at = 0;
        for f in [
            &self.hash[..],
            &self.file_id,
            &self.offset,
            &self.expires_at_ms,
        ] {
            b[at..at + f.len()].copy_from_slice(f);
            at += f.len();
        }
        b
    }

    /// The slot of [`Slot::to_bytes`]'s bytes (`b` is [`SLOT_BYTES`] long).
    fn from_bytes(b: &[u8]) -> Slot {
        fn take<const N: usize>(b: &[u8], at: &mut usize) -> [u8; N] {
            let mut f = [0u8; N];
            f.copy_from_slice(&b[*at..*at + N]);
            *at += N;
            f
        }
        let at = &mut 0;
        Slot {
            hash: take(b, at),
            file_id: take(b, at),
            offset: take(b, at),
            expires_at_ms: take(b, at),
        }
    }
}

impl KeyDir {
    /// The seed of this index's hash.
    pub(crate) fn seed(&self) -> u64 {
        self.seed
    }

    /// The 64-bit hash of `key` with seed `seed`: what an index with that
    /// seed computes (a checkpoint's probe is checked with it).
    pub(crate) fn hash_with_seed(seed: u64, key: &[u8]) -> u64 {
        foldhash::fast::FixedState::with_seed(seed).hash_one(key)
    }

    /// Appends the bytes of shard `i`'s slots to `out`, in the table's
    /// memory order.
    pub(crate) fn export_shard(&self, i: usize, out: &mut Vec<u8>) {
        let shard = self.read_shard(i);
        out.reserve(shard.len() * SLOT_BYTES);
        for s in shard.table.iter() {
            out.extend_from_slice(&s.to_bytes());
        }
    }

    /// An index of the shards `shards` (all [`SHARDS`] of them, in order,
    /// each built by a [`ShardBuilder`] of its number), hashing with `seed`.
    pub(crate) fn from_shards(seed: u64, shards: Vec<Shard>) -> KeyDir {
        debug_assert_eq!(shards.len(), SHARDS);
        let mut presized_buckets = [1u64; SHARDS];
        for (b, s) in presized_buckets.iter_mut().zip(&shards) {
            *b = buckets_of(&s.table);
        }
        KeyDir {
            shards: shards.into_iter().map(RwLock::new).collect(),
            presized_buckets,
            hasher: foldhash::fast::FixedState::with_seed(seed),
            seed,
        }
    }
}

/// Builds one shard from a checkpoint's slot bytes, inserting each slot by
/// its stored hash bits into a table presized for them.
pub(crate) struct ShardBuilder {
    index: usize,
    shard: Shard,
}

impl ShardBuilder {
    /// Shard `index`, with room for `slots` slots.
    pub(crate) fn new(index: usize, slots: usize) -> ShardBuilder {
        ShardBuilder {
            index,
            shard: Shard {
                table: HashTable::with_capacity(slots),
                ttl_keys: 0,
            },
        }
    }

    /// Adds the slots in `bytes` (whole slots of [`SLOT_BYTES`]). `accept`
    /// sees each slot's entry: `Ok(true)` keeps it, `Ok(false)` leaves it
    /// out, `Err` refuses the checkpoint.
    ///
    /// # Errors
    /// `bytes` is not whole slots, a slot belongs to another shard, or
    /// `accept` refused one.
    pub(crate) fn add(
        &mut self,
        bytes: &[u8],
        mut accept: impl FnMut(&IndexEntry) -> std::result::Result<bool, &'static str>,
    ) -> std::result::Result<(), &'static str> {
        if !bytes.len().is_multiple_of(SLOT_BYTES) {
            return Err("a block that is not whole slots");
        }
        for b in bytes.chunks_exact(SLOT_BYTES) {
            let s = Slot::from_bytes(b);
            let h40 = s.h40();
            if usize::from(STAGGER[(h40 & 0xfff) as usize]) != self.index {
                return Err("a slot in another shard than its hash bits pick");
            }
            let e = s.entry();
            if !accept(&e)? {
                continue;
            }
            if s.has_ttl() {
                self.shard.ttl_keys += 1;
            }
            self.shard
                .table
                .insert_unique(table_hash(h40), s, |s| table_hash(s.h40()));
        }
        Ok(())
    }

    /// The shard built.
    pub(crate) fn finish(self) -> Shard {
        self.shard
    }
}

/// A table's bucket count (hashbrown keeps at most 7/8 of them full).
fn buckets_of(table: &HashTable<Slot>) -> u64 {
    (table.capacity().saturating_mul(8).div_ceil(7))
        .next_power_of_two()
        .max(1) as u64
}

/// The slot of `key` in `table`: a slot with its hash bits whose record
/// holds the key, with that record's header.
fn find<'t>(
    table: &'t HashTable<Slot>,
    h40: u64,
    key: &[u8],
    src: &dyn RecordSource,
) -> Result<Option<(&'t Slot, Header)>> {
    let mut failed = None;
    let mut header = None;
    let found = table.find(table_hash(h40), |s| {
        if s.h40() != h40 || failed.is_some() {
            return false;
        }
        match src.holds_key(&s.entry(), key) {
            Ok(Some(h)) => {
                header = Some(h);
                true
            }
            Ok(None) => false,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    });
    match (failed, found, header) {
        (Some(e), _, _) => Err(e),
        (None, Some(s), Some(h)) => Ok(Some((s, h))),
        _ => Ok(None),
    }
}

/// Makes the slot at `old` (the key's, found by the caller) hold `new`,
/// removes it (`new` is `None`), or adds a slot for `new` when the key had
/// none. Returns the entry replaced or removed.
fn put_slot(
    shard: &mut Shard,
    h40: u64,
    old: Option<IndexEntry>,
    new: Option<IndexEntry>,
) -> Option<IndexEntry> {
    match (old, new) {
        (Some(old), Some(e)) => {
            if let Some(s) = shard
                .table
                .find_mut(table_hash(h40), |s| s.h40() == h40 && s.is_at(&old))
            {
                let had = s.has_ttl();
                s.set(&e);
                shard.count_ttl_change(had, &e);
            }
            Some(old)
        }
        (Some(old), None) => remove_at(shard, h40, &old),
        (None, Some(e)) => {
            shard
                .table
                .insert_unique(table_hash(h40), Slot::new(h40, &e), |s| table_hash(s.h40()));
            if e.expires_at_ms != 0 {
                shard.ttl_keys += 1;
            }
            None
        }
        (None, None) => None,
    }
}

/// Removes the slot at `at`'s place; returns its entry.
fn remove_at(shard: &mut Shard, h40: u64, at: &IndexEntry) -> Option<IndexEntry> {
    let slot = match shard
        .table
        .find_entry(table_hash(h40), |s| s.h40() == h40 && s.is_at(at))
    {
        Ok(o) => o.remove().0,
        Err(_) => return None,
    };
    if slot.has_ttl() {
        shard.ttl_keys -= 1;
    }
    Some(slot.entry())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;

    /// The key and sequence number of the record at each place.
    type Records = HashMap<(u32, u64), (Vec<u8>, u64)>;

    /// A log in memory: its records, and the next free offset.
    #[derive(Default)]
    struct FakeLog {
        records: RefCell<Records>,
        next: RefCell<u64>,
    }

    impl FakeLog {
        /// An entry for a new record of `key`, at a fresh place.
        fn record(&self, key: &[u8], seq: u64, exp: u64) -> IndexEntry {
            let mut next = self.next.borrow_mut();
            *next += 64;
            self.records
                .borrow_mut()
                .insert((1, *next), (key.to_vec(), seq));
            IndexEntry {
                expires_at_ms: exp,
                offset: *next,
                file_id: 1,
            }
        }

        /// The sequence number of the record `e` points at.
        fn seq(&self, e: &IndexEntry) -> u64 {
            self.records
                .borrow()
                .get(&(e.file_id, e.offset))
                .map_or(0, |r| r.1)
        }
    }

    /// A source whose every read fails.
    struct Broken;

    impl RecordSource for Broken {
        fn holds_key(&self, _: &IndexEntry, _: &[u8]) -> Result<Option<Header>> {
            Err(crate::error::Error::Io(std::io::Error::other("gone")))
        }
    }

    impl RecordSource for FakeLog {
        fn holds_key(&self, e: &IndexEntry, key: &[u8]) -> Result<Option<Header>> {
            let records = self.records.borrow();
            let Some((k, seq)) = records.get(&(e.file_id, e.offset)) else {
                return Ok(None);
            };
            Ok((&k[..] == key).then_some(Header {
                crc: 0,
                kind: crate::format::record::RecordKind::Put,
                flags: 0,
                seq: *seq,
                expires_at_ms: e.expires_at_ms,
                key_len: k.len() as u32,
                value_len: 3,
            }))
        }
    }

    #[test]
    fn a_checkpoint_of_the_slots_rebuilds_the_same_index() {
        let log = FakeLog::default();
        let kd = KeyDir::with_capacity_seeded(0, 77);
        for i in 0..5000u32 {
            let k = i.to_le_bytes();
            let e = log.record(
                &k,
                u64::from(i) + 1,
                if i % 3 == 0 { 1000 + u64::from(i) } else { 0 },
            );
            assert_eq!(kd.insert(&k, e, &log).ok(), Some(None));
        }
        let mut shards = Vec::new();
        for i in 0..SHARDS {
            let n = kd.read_shard(i).len();
            let mut bytes = Vec::new();
            kd.export_shard(i, &mut bytes);
            assert_eq!(bytes.len(), n * SLOT_BYTES);
            let mut b = ShardBuilder::new(i, n);
            b.add(&bytes, |_| Ok(true)).expect("adds");
            shards.push(b.finish());
        }
        let back = KeyDir::from_shards(kd.seed(), shards);
        assert_eq!(back.raw_len(), 5000);
        assert_eq!(back.ttl_len(), kd.ttl_len());
        assert_eq!(KeyDir::hash_with_seed(77, b"x"), kd.hash(b"x"));
        for i in 0..5000u32 {
            let k = i.to_le_bytes();
            assert_eq!(back.get(&k, &log).ok(), kd.get(&k, &log).ok(), "{i}");
        }
        // A slot put into another shard is refused.
        let mut bytes = Vec::new();
        kd.export_shard(0, &mut bytes);
        let mut wrong = ShardBuilder::new(1, 10);
        assert!(wrong.add(&bytes[..SLOT_BYTES], |_| Ok(true)).is_err());
        assert!(wrong.add(&bytes[..SLOT_BYTES - 1], |_| Ok(true)).is_err());
    }

    #[test]
    fn slot_is_compact() {
        assert_eq!(std::mem::size_of::<Slot>(), SLOT_BYTES);
        assert_eq!(SLOT_BYTES, 19);
        assert_eq!(std::mem::align_of::<Slot>(), 1);
    }

    /// The slot keeps 6 bytes of expiry: every expiry up to the limit comes
    /// back as it went in, a later one (an old record's) as the limit.
    #[test]
    fn the_slot_keeps_expiries_up_to_the_limit() {
        for exp in [0, 1, 1_764_900_000_000, MAX_EXPIRY_MS - 1, MAX_EXPIRY_MS] {
            let e = IndexEntry {
                expires_at_ms: exp,
                offset: u64::from(u32::MAX),
                file_id: u32::MAX,
            };
            let s = Slot::new(0xff_ffff_ffff, &e);
            assert_eq!(s.entry(), e);
            assert_eq!(s.h40(), 0xff_ffff_ffff);
            assert_eq!(s.has_ttl(), exp != 0);
        }
        for exp in [MAX_EXPIRY_MS + 1, i64::MAX as u64, u64::MAX] {
            let e = IndexEntry {
                expires_at_ms: exp,
                offset: 7,
                file_id: 1,
            };
            assert_eq!(Slot::new(1, &e).entry().expires_at_ms, MAX_EXPIRY_MS);
        }
    }

    /// A lookup by key hands back the header of the record it checked.
    #[test]
    fn get_with_header_gives_the_records_header() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let a = log.record(b"a", 41, 0);
        kd.insert_unique_hashed(kd.hash(b"a"), a);
        let (e, h) = kd
            .get_with_header(b"a", &log)
            .ok()
            .flatten()
            .expect("found");
        assert_eq!((e, h.seq, h.key_len), (a, 41, 1));
        // By place: no header (the caller has the record).
        let near = kd.get_near(b"a", a.file_id, a.offset, &log).ok().flatten();
        assert!(matches!(near, Some((e, None)) if e == a));
        // Elsewhere: the header of the record the index points at.
        let near = kd
            .get_near(b"a", a.file_id, a.offset + 1, &log)
            .ok()
            .flatten();
        assert!(matches!(near, Some((e, Some(h))) if e == a && h.seq == 41));
    }

    #[test]
    fn every_shard_gets_a_share_and_they_grow_apart() {
        let shares: Vec<f64> = (0..SHARDS).map(share_of).collect();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert!(shares.iter().all(|&s| s > 0.0));
        // The largest share is about twice the smallest.
        let ratio = shares[SHARDS - 1] / shares[0];
        assert!((1.8..2.2).contains(&ratio), "ratio {ratio}");
    }

    #[test]
    fn insert_get_remove() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let long = vec![7u8; 100];
        let (a1, l2, e3) = (
            log.record(b"a", 1, 0),
            log.record(&long, 2, 0),
            log.record(b"", 3, 0),
        );
        assert_eq!(kd.insert(b"a", a1, &log).ok(), Some(None));
        assert_eq!(kd.insert(&long, l2, &log).ok(), Some(None));
        assert_eq!(kd.insert(b"", e3, &log).ok(), Some(None));
        assert_eq!(kd.get(b"a", &log).ok(), Some(Some(a1)));
        assert_eq!(kd.get(&long, &log).ok(), Some(Some(l2)));
        assert_eq!(kd.get(b"", &log).ok(), Some(Some(e3)));
        assert_eq!(kd.candidate(b"a"), Some(a1));
        let a4 = log.record(b"a", 4, 0);
        assert_eq!(kd.insert(b"a", a4, &log).ok(), Some(Some(a1)));
        assert_eq!(kd.remove(b"a", &log).ok(), Some(Some(a4)));
        assert_eq!(kd.get(b"a", &log).ok(), Some(None));
        assert_eq!(kd.raw_len(), 2);
    }

    #[test]
    fn ttl_counting_and_live_len() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let ins = |k: &[u8], e| kd.insert(k, e, &log).ok();
        ins(b"a", log.record(b"a", 1, 100));
        ins(b"b", log.record(b"b", 2, 0));
        let c = log.record(b"c", 3, 50);
        ins(b"c", c);
        assert_eq!(kd.live_len(10), 3);
        assert_eq!(kd.live_len(60), 2);
        assert_eq!(kd.live_len(100), 1);
        assert_eq!(kd.ttl_len(), 2);
        ins(b"a", log.record(b"a", 4, 0));
        assert_eq!(kd.live_len(100), 2);
        assert_eq!(kd.ttl_len(), 1);
        assert!(kd.remove_if_eq(b"c", &c));
        assert!(!kd.remove_if_eq(b"b", &log.record(b"b", 9, 0)));
        assert_eq!(kd.ttl_len(), 0);
    }

    /// Keys whose 40 hash bits collide are told apart by the log: forced
    /// here by a source that sees every key as distinct while the index is
    /// fed entries for many keys.
    #[test]
    fn a_model_of_inserts_removals_and_retain() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let mut model: HashMap<Vec<u8>, IndexEntry> = HashMap::new();
        let key = |i: u64| {
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
            let k = key(x % 500);
            match x % 4 {
                0 => assert_eq!(kd.remove(&k, &log).ok(), Some(model.remove(&k))),
                1 => {
                    if let Some(c) = model.get(&k).copied() {
                        assert!(kd.remove_if_eq(&k, &c));
                        model.remove(&k);
                    }
                }
                _ => {
                    let exp = if x.is_multiple_of(3) { step + 10 } else { 0 };
                    let e = log.record(&k, step, exp);
                    assert_eq!(
                        kd.insert(&k, e, &log).ok(),
                        Some(model.insert(k.clone(), e))
                    );
                }
            }
            if step % 5000 == 4999 {
                let cut = step - 2000;
                for i in 0..kd.shard_count() {
                    kd.write_shard(i).retain(|e| log.seq(e) < cut, |_| {});
                }
                model.retain(|_, e| log.seq(e) >= cut);
            }
        }
        assert_eq!(kd.raw_len(), model.len() as u64);
        for (k, e) in &model {
            assert_eq!(kd.get(k, &log).ok(), Some(Some(*e)));
        }
        let ttl: usize = (0..kd.shard_count())
            .map(|i| kd.read_shard(i).ttl_keys())
            .sum();
        assert_eq!(ttl, model.values().filter(|e| e.expires_at_ms != 0).count());
    }

    /// Two keys with the same 40 hash bits: each is found by its record.
    #[test]
    fn colliding_hash_bits_are_told_apart_by_the_record() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let a = log.record(b"a", 1, 0);
        let b = log.record(b"b", 2, 0);
        // Both slots under a's hash bits, as if "b" hashed like "a".
        let h = kd.hash(b"a");
        kd.insert_unique_hashed(h, a);
        kd.insert_unique_hashed(h, b);
        let h40 = h40_of(h);
        let shard = kd.read_shard(KeyDir::shard_of_hash(h));
        let found = |k: &[u8]| {
            find(&shard.table, h40, k, &log)
                .ok()
                .flatten()
                .map(|(s, _)| s.entry())
        };
        assert_eq!(found(b"a"), Some(a));
        assert_eq!(found(b"b"), Some(b));
        assert_eq!(found(b"c"), None);
    }

    /// Replay after a checkpoint (`KeyDir::replay`), with keys forced to
    /// share hash bits: the only slot with a key's bits is taken without a
    /// read when the record says it replaces one; otherwise candidates are
    /// read, so another key's slot is never touched.
    #[test]
    fn replay_finds_the_right_slot_among_colliding_ones() {
        let none_gone = |_: &IndexEntry| false;
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let h = kd.hash(b"a");
        let a = log.record(b"a", 1, 0);
        kd.insert_unique_hashed(h, a);
        // The only slot with the bits, and the record replaces one: no read.
        let a2 = log.record(b"a", 2, 0);
        assert_eq!(
            kd.replay(h, b"a", true, Some(a2), &Broken, &none_gone).ok(),
            Some(Some(a))
        );
        // "b" had no entry and shares the bits: the candidate is read (a
        // guard), and "b" gets a slot of its own.
        let b = log.record(b"b", 3, 0);
        assert!(kd
            .replay(h, b"b", false, Some(b), &Broken, &none_gone)
            .is_err());
        assert_eq!(
            kd.replay(h, b"b", false, Some(b), &log, &none_gone).ok(),
            Some(None)
        );
        // Two slots with the bits: each key's is told apart by its record.
        let b2 = log.record(b"b", 4, 0);
        assert!(kd
            .replay(h, b"b", true, Some(b2), &Broken, &none_gone)
            .is_err());
        assert_eq!(
            kd.replay(h, b"b", true, Some(b2), &log, &none_gone).ok(),
            Some(Some(b))
        );
        // A candidate whose record is gone (a compaction dropped it) is the
        // key's when no record read holds the key...
        let is_a2 = |e: &IndexEntry| e.same_place(&a2);
        let a3 = log.record(b"a", 5, 0);
        assert_eq!(
            kd.replay(h, b"a", true, Some(a3), &log, &is_a2).ok(),
            Some(Some(a2))
        );
        // ...and never a key's that had no entry.
        let is_a3 = |e: &IndexEntry| e.same_place(&a3);
        let c = log.record(b"c", 6, 0);
        assert_eq!(
            kd.replay(h, b"c", false, Some(c), &log, &is_a3).ok(),
            Some(None)
        );
        assert_eq!(kd.raw_len(), 3);
        assert!(kd.replay(h, b"c", true, None, &log, &none_gone).is_ok());
        assert_eq!(
            kd.replay(h, b"a", true, None, &log, &none_gone).ok(),
            Some(Some(a3))
        );
        let shard = kd.read_shard(KeyDir::shard_of_hash(h));
        let found = |k: &[u8]| {
            find(&shard.table, h40_of(h), k, &log)
                .ok()
                .flatten()
                .map(|(s, _)| s.entry())
        };
        assert_eq!(
            (found(b"a"), found(b"b"), found(b"c")),
            (None, Some(b2), None)
        );
        drop(shard);
        // A record that says it replaced an entry the index lacks, or two
        // gone candidates and none that holds the key: the checkpoint does
        // not match the log.
        let d = log.record(b"d", 7, 0);
        assert!(kd
            .replay(kd.hash(b"d"), b"d", true, Some(d), &log, &none_gone)
            .is_err());
        let e1 = log.record(b"e", 8, 0);
        let e2 = log.record(b"f", 9, 0);
        kd.insert_unique_hashed(h, e1);
        kd.insert_unique_hashed(h, e2);
        let all_gone = |_: &IndexEntry| true;
        let e3 = log.record(b"e", 10, 0);
        assert!(kd.replay(h, b"e", true, Some(e3), &log, &all_gone).is_err());
    }

    #[test]
    fn a_failing_source_is_an_error_and_changes_nothing() {
        let log = FakeLog::default();
        let kd = KeyDir::new();
        let a = log.record(b"a", 1, 0);
        assert_eq!(kd.insert(b"a", a, &log).ok(), Some(None));
        assert!(kd.get(b"a", &Broken).is_err());
        assert!(kd.insert(b"a", log.record(b"a", 2, 0), &Broken).is_err());
        assert!(kd.remove(b"a", &Broken).is_err());
        assert_eq!(kd.get(b"a", &log).ok(), Some(Some(a)));
    }
}
