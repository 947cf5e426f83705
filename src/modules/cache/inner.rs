//! The cache itself: opening, reads, writes with their evictions, and
//! invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::embedded::check_not_in_transaction;
use crate::backend::{Key, Store, Update};
use crate::error::{Error, Result};
use crate::modules::cache::entry::{data_key, ms_of, Stored, DATA, GENERATION, HEADER, KIND_VALUE};
use crate::modules::cache::flight::Flight;
use crate::modules::cache::options::CacheOptions;
use crate::modules::cache::stats::{bump, CacheStats, Counters};
use crate::modules::eviction::Tracker;
use crate::util::locks::lock;
use crate::util::rand::FastRng;

impl CacheOptions {
    /// Opens the cache stored in `store`: a `Db` (usually a
    /// keyspace of its own) or any [`Store`]. It loads the keys and sizes
    /// of what the store already holds, with one
    /// [`scan`](Store::scan) (on a remote store, a `SCAN` of its whole
    /// keyspace), and evicts at once if that is over the capacity.
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
    /// beta or a zero capacity; the errors of the scan, and of a write
    /// when evicting.
    pub fn open(self, store: impl Into<Store>) -> Result<Cache> {
        let store = store.into();
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
        store.scan(&[DATA], |name, value_len, expires| {
            if let Some(key) = name.strip_prefix(&[DATA]) {
                tracker.upsert(key, key.len() as u64 + value_len, expires.unwrap_or(0));
                tracker.warm(key);
            }
        })?;
        let cache = Cache(Arc::new(Inner {
            store,
            opts: self,
            tracker: Mutex::new(tracker),
            writes: Mutex::new(()),
            rng: Mutex::new(rng),
            flights: Mutex::new(HashMap::new()),
            stats: Counters::default(),
        }));
        cache.evict_over_capacity()?;
        Ok(cache)
    }
}

pub(super) struct Inner {
    pub(super) store: Store,
    pub(super) opts: CacheOptions,
    pub(super) tracker: Mutex<Tracker>,
    /// Held across each write of this cache: deciding it with the
    /// tracker, writing it to the store and updating the tracker. It keeps
    /// the tracker in step with the store, and orders the flights'
    /// staleness marks with the writes that check them.
    pub(super) writes: Mutex<()>,
    pub(super) rng: Mutex<FastRng>,
    pub(super) flights: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
    pub(super) stats: Counters,
}

/// An entry taken out of the tracker to be evicted: its key, whether it
/// had expired, and what puts it back if the write fails.
pub(super) struct Victim {
    key: Box<[u8]>,
    expired: bool,
    bytes: u64,
    expires: u64,
}

/// Whether a failed write may still have been applied (a remote store
/// that lost the connection while waiting for the reply): the tracker then
/// keeps what the write would have done.
fn maybe_applied(e: &Error) -> bool {
    matches!(
        e,
        Error::Remote {
            maybe_applied: true,
            ..
        }
    )
}

/// A stored expiry as the backend takes it (0: none).
fn expiry(e: u64) -> Option<u64> {
    (e != 0).then_some(e)
}

/// A bounded, durable cache. Cheap to clone; share it between threads.
/// See the [module documentation](super).
#[derive(Clone)]
pub struct Cache(pub(super) Arc<Inner>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("store", &self.0.store)
            .field("opts", &self.0.opts)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Opens a cache in `store` (a `Db`, a keyspace of one,
    /// or any [`Store`]) with default [`CacheOptions`] (no capacity
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
    pub fn open(store: impl Into<Store>) -> Result<Cache> {
        CacheOptions::new().open(store)
    }

    /// The store the cache lives in.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// cache.insert("k", "v", None)?;
    /// // On the embedded store, the entry is the record `d` + key.
    /// let db = cache.store().as_db().expect("embedded");
    /// assert!(db.get("dk")?.is_some());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// Before a call that takes [`Inner::writes`] and then writes: inside
    /// a transaction of the embedded store, the write would fail only
    /// after waiting for the lock, which a writer of this cache may hold
    /// while it waits for the transaction's writer lock.
    pub(super) fn check_can_wait(&self) -> Result<()> {
        if self.0.store.is_remote() {
            Ok(())
        } else {
            check_not_in_transaction()
        }
    }

    /// The backend's clock, without a read: on a remote store this host's
    /// clock, which saves a round trip per write. An entry's freshness
    /// then moves by the host's skew from the server's clock: keep hosts
    /// synchronised (NTP) well within the TTLs you use; a host behind the
    /// server by more than an entry's TTL writes it already expired.
    fn clock(&self) -> Result<u64> {
        self.0.store.now_ms()
    }

    /// Reads the stored entry for `key` and the backend's clock, counting
    /// an expiry seen.
    pub(super) fn read(&self, key: &[u8]) -> Result<(u64, Option<Stored>)> {
        let (now, entry) = self.0.store.read_one(&Key::new(data_key(key)))?;
        match entry {
            Some(e) => Ok((now, Some(Stored::decode(e.value)?))),
            None => {
                let mut t = lock(&self.0.tracker);
                if let Some(exp) = t.expiry_of(key) {
                    if exp != 0 && exp <= now {
                        t.remove(key);
                        bump(&self.0.stats.expirations);
                    }
                }
                Ok((now, None))
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
        lock(&self.0.tracker).record_access(key);
        match self.read(key)? {
            (now, Some(s)) if s.is_fresh(now) => {
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
    /// invalidated), evicting as needed (on the embedded store, in the same
    /// atomic write; see [Stores](super#stores)). When the
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
        self.put_entry(key.as_ref(), KIND_VALUE, value.as_ref(), ttl, 0, None)
    }

    /// Writes an entry and the evictions it causes: on the embedded store
    /// as one atomic update, on a remote one as the entry's update then
    /// one delete per victim (see the [module docs](super#stores)).
    /// With `own` (the flight of a read-through load), nothing is written
    /// if an invalidation or another write of `key` happened since the
    /// load began.
    pub(super) fn put_entry(
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
        self.check_can_wait()?;
        let writing = lock(&self.0.writes);
        if own.is_some_and(|f| f.stale.load(Ordering::Acquire)) {
            // Invalidated or overwritten while loading: the loaded value
            // may be older than that; do not cache it.
            return Ok(());
        }
        let now = self.clock()?;
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
        let size = (key.len() + stored.len()) as u64;
        let mut t = lock(&self.0.tracker);
        if self.0.opts.max_bytes.is_some_and(|m| size > m) {
            drop(t);
            return self.reject_too_large(key, own);
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
        // The tracker is changed before the write, so that a concurrent
        // read never takes the entry for an expired one, and put back if
        // the write fails.
        let before = t.slot_of(key);
        t.upsert(key, size, expires);
        let victims = self.pick_victims(&mut t, now, key);
        drop(t);
        match self.write_with_evictions(key, stored, expires, &victims) {
            Ok(()) => {
                self.count_evicted(&victims);
                // The write is applied and the tracker agrees with it: wait
                // for its fsync outside the cache's lock, so that concurrent
                // inserts share one (group commit), as they did before the
                // cache had its own lock.
                drop(writing);
                self.0.store.sync_pending()
            }
            Err((e, done, written)) => {
                // Put back what the store still holds as it was.
                let (evicted, kept) = victims.split_at(done.min(victims.len()));
                self.count_evicted(evicted);
                let mut t = lock(&self.0.tracker);
                if written == Some(false) {
                    match before {
                        Some((bytes, exp)) => t.upsert(key, bytes, exp),
                        None => {
                            t.remove(key);
                        }
                    }
                }
                Self::restore(&mut t, kept);
                Err(e)
            }
        }
    }

    /// Removes `key` from the tracker and returns its size and expiry as
    /// they were, to put back if the write that follows fails.
    fn untrack(&self, key: &[u8]) -> Option<(u64, u64)> {
        let mut t = lock(&self.0.tracker);
        let before = t.slot_of(key);
        t.remove(key);
        before
    }

    /// An entry larger than `max_bytes` on its own: it could never stay.
    /// Store nothing and evict nothing for it, but drop the value it
    /// replaces, which is no longer the key's latest. Called under
    /// [`Inner::writes`].
    fn reject_too_large(&self, key: &[u8], own: Option<&Flight>) -> Result<()> {
        self.mark_loads_stale(key, own);
        let before = self.untrack(key);
        let held = before.is_some();
        let r = self.0.store.update(&[Key::new(data_key(key))], |u| {
            if held || u.get(0).is_some() {
                u.delete(0);
            }
            Ok(())
        });
        match (&r, before) {
            (Ok(()), _) => bump(&self.0.stats.rejections),
            (Err(e), Some((bytes, exp))) if !maybe_applied(e) => {
                lock(&self.0.tracker).upsert(key, bytes, exp);
            }
            _ => {}
        }
        r
    }

    /// Writes `key`'s entry and deletes the victims' entries: one atomic
    /// update on the embedded store; on a remote one, the entry's update
    /// then [`Cache::delete_names`]. On an error, returns how many victims
    /// were surely deleted and whether the entry was written (`None`:
    /// perhaps).
    fn write_with_evictions(
        &self,
        key: &[u8],
        stored: Vec<u8>,
        expires: u64,
        victims: &[Victim],
    ) -> std::result::Result<(), (Error, usize, Option<bool>)> {
        let store = &self.0.store;
        let mut keys = vec![Key::new(data_key(key))];
        let written = |e: &Error| (!maybe_applied(e)).then_some(false);
        if store.is_remote() {
            // Each key is its own operation: a cluster spreads a cache's
            // entries over its slots, so one update cannot span them.
            store
                .update(&keys, |u| {
                    u.put(0, stored.clone(), expiry(expires));
                    Ok(())
                })
                .map_err(|e| {
                    let w = written(&e);
                    (e, 0, w)
                })?;
            let names: Vec<Vec<u8>> = victims.iter().map(|v| data_key(&v.key)).collect();
            return self
                .delete_names(&names)
                .map_err(|(e, done)| (e, done, Some(true)));
        }
        // One process holds every key: the entry and its evictions are one
        // atomic update, so a crash never leaves the store over capacity.
        // Its durability is waited for by the caller, after the lock.
        keys.extend(victims.iter().map(|v| Key::new(data_key(&v.key))));
        store
            .update_deferred(&keys, |u| {
                u.put(0, stored.clone(), expiry(expires));
                for i in 1..keys.len() {
                    u.delete(i);
                }
                Ok(())
            })
            .map_err(|e| {
                let w = written(&e);
                (e, 0, w)
            })
    }

    /// Deletes the entries named (store names, `d` + key): one atomic
    /// update on the embedded store, one update per key on a remote one.
    /// On an error, returns how many of them were surely deleted (the
    /// first ones; none on the embedded store). A delete that may have
    /// been applied counts as done.
    fn delete_names(&self, names: &[Vec<u8>]) -> std::result::Result<(), (Error, usize)> {
        if names.is_empty() {
            return Ok(());
        }
        let store = &self.0.store;
        let keys: Vec<Key> = names.iter().cloned().map(Key::new).collect();
        let delete_all = |u: &mut Update| {
            for i in 0..u.read_entries().len() {
                u.delete(i);
            }
            Ok(())
        };
        if !store.is_remote() {
            return store.update(&keys, delete_all).map_err(|e| {
                let done = if maybe_applied(&e) { keys.len() } else { 0 };
                (e, done)
            });
        }
        for (i, k) in keys.iter().enumerate() {
            if let Err(e) = store.update(std::slice::from_ref(k), delete_all) {
                let done = if maybe_applied(&e) { i + 1 } else { i };
                return Err((e, done));
            }
        }
        Ok(())
    }

    /// Puts evicted entries back in the tracker after a failed write.
    fn restore(t: &mut Tracker, victims: &[Victim]) {
        for v in victims {
            t.upsert(&v.key, v.bytes, v.expires);
        }
    }

    /// Counts written evictions.
    fn count_evicted(&self, victims: &[Victim]) {
        for v in victims {
            bump(if v.expired {
                &self.0.stats.expirations
            } else {
                &self.0.stats.evictions
            });
        }
    }

    /// Marks a load of `key` in progress (other than `own`) stale. Called
    /// under [`Inner::writes`], like the check in [`Cache::put_entry`].
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

    /// Whether the tracker holds more than the capacity.
    fn over_capacity(&self, t: &Tracker) -> bool {
        let o = &self.0.opts;
        o.max_entries.is_some_and(|m| t.len() > m) || o.max_bytes.is_some_and(|m| t.bytes() > m)
    }

    /// Takes entries out of the tracker until it is within the capacity,
    /// returning them (never `keep`). They are counted once their
    /// deletion is written.
    fn pick_victims(&self, t: &mut Tracker, now: u64, keep: &[u8]) -> Vec<Victim> {
        let mut victims = Vec::new();
        while self.over_capacity(t) {
            let Some((key, expired)) = t.victim(now, keep) else {
                break;
            };
            victims.push(Self::take(t, key, expired));
        }
        victims
    }

    /// Takes `key` out of the tracker as a victim.
    fn take(t: &mut Tracker, key: Box<[u8]>, expired: bool) -> Victim {
        let (bytes, expires) = t.slot_of(&key).unwrap_or((0, 0));
        t.remove(&key);
        Victim {
            key,
            expired,
            bytes,
            expires,
        }
    }

    fn evict_over_capacity(&self) -> Result<()> {
        if self.0.store.is_read_only() {
            return Ok(());
        }
        let _writing = lock(&self.0.writes);
        let needed = {
            let t = lock(&self.0.tracker);
            self.over_capacity(&t)
                || self
                    .0
                    .opts
                    .max_bytes
                    .is_some_and(|m| !t.keys_larger_than(m).is_empty())
        };
        if !needed {
            return Ok(());
        }
        let now = self.clock()?;
        let victims = {
            let mut t = lock(&self.0.tracker);
            // First the entries that could not stay whatever else went
            // (stored under a larger `max_bytes`): evicting others for
            // them would be in vain.
            let large = match self.0.opts.max_bytes {
                Some(m) => t.keys_larger_than(m),
                None => Vec::new(),
            };
            let mut victims: Vec<Victim> = large
                .into_iter()
                .map(|k| Self::take(&mut t, k, false))
                .collect();
            victims.extend(self.pick_victims(&mut t, now, &[]));
            victims
        };
        let names: Vec<Vec<u8>> = victims.iter().map(|v| data_key(&v.key)).collect();
        match self.delete_names(&names) {
            Ok(()) => {
                self.count_evicted(&victims);
                Ok(())
            }
            Err((e, done)) => {
                let (evicted, kept) = victims.split_at(done.min(victims.len()));
                self.count_evicted(evicted);
                Self::restore(&mut lock(&self.0.tracker), kept);
                Err(e)
            }
        }
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
        self.check_can_wait()?;
        let _writing = lock(&self.0.writes);
        self.mark_loads_stale(key, None);
        let before = self.untrack(key);
        let r = self.0.store.update(&[Key::new(data_key(key))], |u| {
            let existed = u.get(0).is_some();
            u.delete(0);
            Ok(existed)
        });
        if let (Err(e), Some((bytes, exp))) = (&r, before) {
            if !maybe_applied(e) {
                lock(&self.0.tracker).upsert(key, bytes, exp);
            }
        }
        r
    }

    /// Removes every entry whose key starts with `prefix`, and returns how
    /// many there were. It walks the whole store with
    /// [`Store::scan`], then deletes what it found; for groups that are
    /// dropped often, use [`Cache::group_key`].
    ///
    /// On the embedded store this is atomic with the cache's other writes
    /// in the process: the deletes are one update. On a remote store the
    /// scan is a `SCAN` of the server's whole keyspace, the deletes are
    /// one command per key, and neither is atomic with inserts made
    /// meanwhile by other processes: an entry another process writes
    /// under the prefix during the call may stay.
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
    /// The errors of the scan and of a write.
    pub fn invalidate_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<u64> {
        let prefix = prefix.as_ref();
        self.check_can_wait()?;
        let _writing = lock(&self.0.writes);
        for (k, f) in lock(&self.0.flights).iter() {
            if k.starts_with(prefix) {
                f.stale.store(true, Ordering::Release);
            }
        }
        let mut names = Vec::new();
        self.0
            .store
            .scan(&data_key(prefix), |name, _, _| names.push(name.to_vec()))?;
        let n = names.len() as u64;
        let removed: Vec<Victim> = {
            let mut t = lock(&self.0.tracker);
            t.keys_with_prefix(prefix)
                .into_iter()
                .map(|k| Self::take(&mut t, k, false))
                .collect()
        };
        match self.delete_names(&names) {
            Ok(()) => Ok(n),
            Err((e, done)) => {
                // Put back the entries the store still holds.
                let still: std::collections::HashSet<&[u8]> =
                    names.iter().skip(done).map(|k| &k[1..]).collect();
                let back: Vec<Victim> = removed
                    .into_iter()
                    .filter(|v| still.contains(&*v.key))
                    .collect();
                Self::restore(&mut lock(&self.0.tracker), &back);
                Err(e)
            }
        }
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
        match self
            .0
            .store
            .read_one(&Key::new(Self::generation_key(group.as_ref())))?
            .1
        {
            None => Ok(0),
            Some(e) => std::str::from_utf8(&e.value)
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
    /// [`Error::NotAnInteger`] if the counter was overwritten,
    /// [`Error::Overflow`] past `i64::MAX`, and the errors of a write.
    pub fn invalidate_group(&self, group: impl AsRef<[u8]>) -> Result<u64> {
        let key = Key::new(Self::generation_key(group.as_ref()));
        let n = self.0.store.update(&[key], |u| {
            let (current, expires) = match u.get(0) {
                None => (0i64, None),
                Some(e) => (
                    std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .ok_or(Error::NotAnInteger)?,
                    e.expires_at_ms,
                ),
            };
            let n = current.checked_add(1).ok_or(Error::Overflow)?;
            u.put(0, n.to_string().into_bytes(), expires);
            Ok(n)
        })?;
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
