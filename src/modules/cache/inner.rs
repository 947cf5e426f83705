//! The cache itself: opening, reads, writes with their evictions, and
//! invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::modules::cache::entry::{data_key, ms_of, Stored, DATA, GENERATION, HEADER, KIND_VALUE};
use crate::modules::cache::flight::Flight;
use crate::modules::cache::options::CacheOptions;
use crate::modules::cache::stats::{bump, CacheStats, Counters};
use crate::modules::eviction::Tracker;
use crate::util::locks::lock;
use crate::util::rand::FastRng;

impl CacheOptions {
    /// Opens the cache stored in `db`, usually a keyspace of its own,
    /// loading the keys and sizes of what it already holds (and evicting
    /// at once if that is over the capacity).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::CacheOptions::new().max_bytes(64 << 20).open(db.keyspace("cache")?)?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a jitter outside `0..1`, a negative
    /// beta or a zero capacity; the errors of a write when evicting.
    pub fn open(self, db: Db) -> Result<Cache> {
        if !(0.0..1.0).contains(&self.ttl_jitter)
            || self.early_refresh_beta.is_nan()
            || self.early_refresh_beta < 0.0
            || self.max_entries == Some(0)
            || self.max_bytes == Some(0)
        {
            return Err(Error::InvalidOptions(
                "cache: ttl_jitter must be in 0..1, early_refresh_beta >= 0, capacities > 0".into(),
            ));
        }
        if self.negative_ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidTtl);
        }
        let rng = match self.seed {
            Some(s) => FastRng::with_seed(s),
            None => FastRng::new(),
        };
        let mut tracker = Tracker::new(self.max_entries.unwrap_or(1 << 16), rng.clone());
        db.for_each_live_key(&[DATA], |k, value_len, expires| {
            tracker.upsert(&k[1..], k.len() as u64 - 1 + u64::from(value_len), expires);
            tracker.warm(&k[1..]);
        });
        let cache = Cache(Arc::new(Inner {
            db,
            opts: self,
            tracker: Mutex::new(tracker),
            rng: Mutex::new(rng),
            flights: Mutex::new(HashMap::new()),
            stats: Counters::default(),
        }));
        cache.evict_over_capacity()?;
        Ok(cache)
    }
}

pub(super) struct Inner {
    pub(super) db: Db,
    pub(super) opts: CacheOptions,
    pub(super) tracker: Mutex<Tracker>,
    pub(super) rng: Mutex<FastRng>,
    pub(super) flights: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
    pub(super) stats: Counters,
}

/// A bounded, durable cache. Cheap to clone; share it between threads.
/// See the [module documentation](super).
#[derive(Clone)]
pub struct Cache(pub(super) Arc<Inner>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("db", &self.0.db)
            .field("opts", &self.0.opts)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens a cache in `db` with default [`CacheOptions`] (no capacity
    /// limit).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db.keyspace("cache")?)?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`CacheOptions::open`].
    pub fn open(db: Db) -> Result<Cache> {
        CacheOptions::new().open(db)
    }

    /// The store the cache lives in.
    pub fn db(&self) -> &Db {
        &self.0.db
    }

    pub(super) fn now(&self) -> u64 {
        self.0.db.now_ms()
    }

    /// Reads the stored entry for `key`, counting an expiry seen.
    pub(super) fn read(&self, key: &[u8], now: u64) -> Result<Option<Stored>> {
        match self.0.db.get(data_key(key))? {
            Some(v) => Ok(Some(Stored::decode(v)?)),
            None => {
                let mut t = lock(&self.0.tracker);
                if let Some(exp) = t.expiry_of(key) {
                    if exp != 0 && exp <= now {
                        t.remove(key);
                        bump(&self.0.stats.expirations);
                    }
                }
                Ok(None)
            }
        }
    }

    /// The fresh value of `key`, counting a hit or a miss (a cached "not
    /// found" is a hit that returns `None`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// cache.insert("k", "v", Some(Duration::from_secs(60)))?;
    /// assert_eq!(cache.get("k")?, Some(b"v".to_vec()));
    /// assert_eq!(cache.get("other")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Corruption`] when the entry cannot be read,
    /// [`Error::Malformed`] when it was not written by a cache.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        let now = self.now();
        lock(&self.0.tracker).record_access(key);
        match self.read(key, now)? {
            Some(s) if s.is_fresh(now) => {
                bump(&self.0.stats.hits);
                Ok(s.answer())
            }
            _ => {
                bump(&self.0.stats.misses);
                Ok(None)
            }
        }
    }

    /// Stores `value` under `key` for `ttl` (`None`: until evicted or
    /// invalidated), evicting as needed in the same atomic write. When the
    /// cache is full, a new key may be refused by the admission check
    /// ([`CacheOptions::admission`]); that is not an error.
    ///
    /// An entry larger than [`CacheOptions::max_bytes`] on its own (key,
    /// value and the 13-byte header) is not stored either, and is not an
    /// error: a cache may always decline to keep a value, as moka's and
    /// quick-cache's do. Nothing is evicted for it, the key's previous
    /// value is dropped (a later [`Cache::get`] misses rather than return
    /// a value older than this write), and it counts in
    /// [`CacheStats::rejections`]. The read-through calls
    /// ([`Cache::get_or_insert_with`] and the others) behave the same way
    /// and still return the loaded value.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::CacheOptions::new().max_entries(2).open(db)?;
    /// cache.insert("a", "v", None)?;
    /// cache.insert("b", "v", None)?;
    /// cache.get("c")?; // a miss, but it counts: "c" is now wanted more than "a" or "b"
    /// cache.insert("c", "v", None)?;
    /// assert_eq!(cache.stats().entries, 2);
    /// assert_eq!(cache.stats().evictions, 1);
    /// cache.insert("d", "v", None)?; // never asked for: not admitted
    /// assert_eq!(cache.stats().rejections, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTtl`] for a zero `ttl`, [`Error::KeyTooLarge`] /
    /// [`Error::ValueTooLarge`], and the errors of a write.
    pub fn insert(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<()> {
        self.store(key.as_ref(), KIND_VALUE, value.as_ref(), ttl, 0, None)
    }

    /// Writes an entry and the evictions it causes, as one batch.
    /// With `own` (the flight of a read-through load), nothing is written
    /// if an invalidation or another write of `key` happened since the
    /// load began.
    pub(super) fn store(
        &self,
        key: &[u8],
        kind: u8,
        value: &[u8],
        ttl: Option<Duration>,
        load_ms: u32,
        own: Option<&Flight>,
    ) -> Result<()> {
        if ttl.is_some_and(|t| t.is_zero()) {
            return Err(Error::InvalidTtl);
        }
        let now = self.now();
        let fresh_until = match ttl {
            None => 0,
            Some(t) => {
                // Rounded up: a TTL under a millisecond still lives 1 ms.
                let mut t = ms_of(t).max(1);
                if self.0.opts.ttl_jitter > 0.0 {
                    let u = lock(&self.0.rng).unit_open0() * 2.0 - 1.0;
                    t = ((t as f64) * (1.0 + u * self.0.opts.ttl_jitter)).max(1.0) as u64;
                }
                now.saturating_add(t)
            }
        };
        let expires = if fresh_until == 0 {
            0
        } else {
            fresh_until.saturating_add(self.0.opts.stale_ms)
        };
        let mut stored = Vec::with_capacity(HEADER + value.len());
        stored.push(kind);
        stored.extend_from_slice(&fresh_until.to_le_bytes());
        stored.extend_from_slice(&load_ms.to_le_bytes());
        stored.extend_from_slice(value);
        let dk = data_key(key);
        crate::format::record::check_key(&dk)?;
        crate::format::record::check_value(&stored)?;
        // Under the writer lock: the tracker changes only when the write
        // goes ahead, and no invalidation can slip in between.
        self.0.db.transaction(|tx| {
            if own.is_some_and(|f| f.stale.load(Ordering::Acquire)) {
                // Invalidated or overwritten while loading: the loaded
                // value may be older than that; do not cache it.
                return Ok(());
            }
            let size = (key.len() + stored.len()) as u64;
            let mut t = lock(&self.0.tracker);
            if self.0.opts.max_bytes.is_some_and(|m| size > m) {
                // It could never stay: store nothing and evict nothing for
                // it, but drop the value it replaces, which is no longer
                // the key's latest.
                bump(&self.0.stats.rejections);
                self.mark_loads_stale(key, own);
                let held = t.remove(key);
                drop(t);
                if held || tx.get_entry(&dk)?.is_some() {
                    tx.delete(&dk);
                }
                return Ok(());
            }
            if self.0.opts.admission && !t.contains(key) && self.would_overflow(&t, size) {
                if let Some((victim, false)) = t.victim(now, key) {
                    if t.frequency(key) <= t.frequency(&victim) {
                        bump(&self.0.stats.rejections);
                        return Ok(());
                    }
                }
            }
            self.mark_loads_stale(key, own);
            t.upsert(key, size, expires);
            let victims = self.pick_victims(&mut t, now, key);
            drop(t);
            tx.put_raw_expiring_at(&dk, stored, expires);
            for v in &victims {
                tx.delete(data_key(v));
            }
            Ok(())
        })
    }

    /// Marks a load of `key` in progress (other than `own`) stale. Called
    /// under the writer lock, like the check in [`Cache::store`].
    pub(super) fn mark_loads_stale(&self, key: &[u8], own: Option<&Flight>) {
        if let Some(f) = lock(&self.0.flights).get(key) {
            if own.is_none_or(|o| !std::ptr::eq(o, &**f)) {
                f.stale.store(true, Ordering::Release);
            }
        }
    }

    /// Whether adding an entry of `size` bytes goes past the capacity.
    fn would_overflow(&self, t: &Tracker, size: u64) -> bool {
        let o = &self.0.opts;
        o.max_entries.is_some_and(|m| t.len() + 1 > m)
            || o.max_bytes.is_some_and(|m| t.bytes() + size > m)
    }

    /// Removes entries from the tracker until it is within the capacity,
    /// returning them (never `keep`).
    fn pick_victims(&self, t: &mut Tracker, now: u64, keep: &[u8]) -> Vec<Box<[u8]>> {
        let o = &self.0.opts;
        let mut victims = Vec::new();
        while o.max_entries.is_some_and(|m| t.len() > m)
            || o.max_bytes.is_some_and(|m| t.bytes() > m)
        {
            let Some((v, expired)) = t.victim(now, keep) else {
                break;
            };
            t.remove(&v);
            bump(if expired {
                &self.0.stats.expirations
            } else {
                &self.0.stats.evictions
            });
            victims.push(v);
        }
        victims
    }

    fn evict_over_capacity(&self) -> Result<()> {
        if self.0.db.is_read_only() {
            return Ok(());
        }
        self.0.db.transaction(|tx| {
            let victims = {
                let mut t = lock(&self.0.tracker);
                // First the entries that could not stay whatever else went
                // (stored under a larger `max_bytes`): evicting others for
                // them would be in vain.
                let mut victims = match self.0.opts.max_bytes {
                    Some(m) => t.keys_larger_than(m),
                    None => Vec::new(),
                };
                for v in &victims {
                    t.remove(v);
                    bump(&self.0.stats.evictions);
                }
                victims.extend(self.pick_victims(&mut t, tx.now_ms(), &[]));
                victims
            };
            for v in &victims {
                tx.delete(data_key(v));
            }
            Ok(())
        })
    }

    /// Removes `key`. Returns whether it was cached.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// cache.insert("k", "v", None)?;
    /// assert!(cache.invalidate("k")?);
    /// assert_eq!(cache.get("k")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a write.
    pub fn invalidate(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        let key = key.as_ref();
        let dk = data_key(key);
        crate::format::record::check_key(&dk)?;
        self.0.db.transaction(|tx| {
            self.mark_loads_stale(key, None);
            lock(&self.0.tracker).remove(key);
            let existed = tx.get_entry(&dk)?.is_some();
            tx.delete(&dk);
            Ok(existed)
        })
    }

    /// Removes every entry whose key starts with `prefix`, atomically, and
    /// returns how many there were. It walks the whole index; for groups
    /// that are dropped often, use [`Cache::group_key`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// cache.insert("user:1:profile", "a", None)?;
    /// cache.insert("user:1:avatar", "b", None)?;
    /// cache.insert("user:2:profile", "c", None)?;
    /// assert_eq!(cache.invalidate_prefix("user:1:")?, 2);
    /// assert_eq!(cache.stats().entries, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a write.
    pub fn invalidate_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<u64> {
        let dk = data_key(prefix.as_ref());
        self.0.db.transaction(|tx| {
            for (k, f) in lock(&self.0.flights).iter() {
                if k.starts_with(&dk[1..]) {
                    f.stale.store(true, Ordering::Release);
                }
            }
            let mut t = lock(&self.0.tracker);
            for k in t.keys_with_prefix(&dk[1..]) {
                t.remove(&k);
            }
            drop(t);
            let mut n = 0;
            self.0.db.for_each_live_key(&dk, |k, _, _| {
                tx.delete(k);
                n += 1;
            });
            Ok(n)
        })
    }

    fn generation_key(group: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + group.len());
        k.push(GENERATION);
        k.extend_from_slice(group);
        k
    }

    /// The current generation of `group` (0 until first invalidated).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// assert_eq!(cache.generation("products")?, 0);
    /// cache.invalidate_group("products")?;
    /// assert_eq!(cache.generation("products")?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAnInteger`] if the counter was overwritten, and read
    /// errors.
    pub fn generation(&self, group: impl AsRef<[u8]>) -> Result<u64> {
        match self.0.db.get(Self::generation_key(group.as_ref()))? {
            None => Ok(0),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::NotAnInteger),
        }
    }

    /// The cache key for `key` in `group` at the group's current
    /// generation: `group`, a 0 byte, the generation (8 bytes,
    /// little-endian), then `key`. After [`Cache::invalidate_group`], the
    /// same call gives a new key, so the group's old entries are never
    /// read again; they leave by eviction or expiry.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// let k = cache.group_key("products", "42")?;
    /// cache.insert(&k, "a product page", None)?;
    /// cache.invalidate_group("products")?; // O(1), however many entries
    /// assert_eq!(cache.get(cache.group_key("products", "42")?)?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Cache::generation`].
    pub fn group_key(&self, group: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<Vec<u8>> {
        let group = group.as_ref();
        let key = key.as_ref();
        let g = self.generation(group)?;
        let mut k = Vec::with_capacity(group.len() + 9 + key.len());
        k.extend_from_slice(group);
        k.push(0);
        k.extend_from_slice(&g.to_le_bytes());
        k.extend_from_slice(key);
        Ok(k)
    }

    /// Invalidates every entry of `group` in O(1), by moving the group to
    /// its next generation; returns the new generation.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// assert_eq!(cache.invalidate_group("g")?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::incr`].
    pub fn invalidate_group(&self, group: impl AsRef<[u8]>) -> Result<u64> {
        let n = self.0.db.incr(Self::generation_key(group.as_ref()), 1)?;
        Ok(n.max(0) as u64)
    }

    /// Counters and current size.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// cache.get("k")?;
    /// assert_eq!(cache.stats().misses, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn stats(&self) -> CacheStats {
        let s = &self.0.stats;
        let (entries, bytes) = {
            let t = lock(&self.0.tracker);
            (t.len(), t.bytes())
        };
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CacheStats {
            hits: l(&s.hits),
            misses: l(&s.misses),
            loads: l(&s.loads),
            load_errors: l(&s.load_errors),
            evictions: l(&s.evictions),
            expirations: l(&s.expirations),
            stale_serves: l(&s.stale_serves),
            early_refreshes: l(&s.early_refreshes),
            rejections: l(&s.rejections),
            entries,
            bytes,
        }
    }
}
