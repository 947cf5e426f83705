//! A bounded cache that is still warm after a restart.
//!
//! ```
//! use std::time::Duration;
//! let dir = tempfile::tempdir()?;
//! let db = cairn::Db::open(dir.path())?;
//! let cache = cairn::cache::CacheOptions::new()
//!     .max_entries(10_000)
//!     .stale_while_revalidate(Duration::from_secs(30))
//!     .open(db.keyspace("cache")?)?;
//! let page = cache.get_or_insert_with("/about", Duration::from_secs(60), || {
//!     Ok::<_, std::io::Error>(b"<h1>About</h1>".to_vec()) // render or fetch here
//! })?;
//! assert_eq!(page, b"<h1>About</h1>");
//! assert_eq!(cache.stats().misses, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What it does
//! - **Capacity.** `max_entries` and/or `max_bytes` (key plus value bytes,
//!   plus a 13-byte header per entry).
//!   Past either, entries are evicted by sampled LFU (see below) and the
//!   eviction is written to the store in the same atomic batch as the
//!   insert that caused it, so a restart does not bring evicted entries
//!   back.
//! - **Read-through with singleflight.** [`Cache::get_or_insert_with`] and
//!   [`Cache::get_or_insert_with_async`]: concurrent misses on one key run
//!   the loader once; the others wait for its result or its error. Errors
//!   are never cached; "not found" results are, for
//!   [`CacheOptions::negative_ttl`], through [`Cache::get_or_find_with`].
//! - **Stampede protection.** TTL jitter, stale-while-revalidate (within a
//!   grace window after expiry, one caller refreshes while the others are
//!   served the stale value) and probabilistic early refresh (XFetch).
//! - **Invalidation.** [`Cache::invalidate`], [`Cache::invalidate_prefix`],
//!   and generation keys ([`Cache::group_key`], [`Cache::invalidate_group`])
//!   that drop a whole group in O(1).
//! - **Warm restarts.** Entries live in a cairn store: reopening keeps
//!   them, with their expiry. Access frequencies are not stored, so the
//!   eviction order starts afresh.
//!
//! # Eviction
//! Every access counts its key in a count-min sketch (4-bit counters, four
//! per entry, halved every 10 accesses per counter, as in TinyLFU, so that
//! old popularity fades). An eviction samples 8 resident entries and
//! removes an expired one if it finds one, else the least frequent, the
//! least recently used among equals (Redis's sampled eviction, with
//! TinyLFU's frequency estimate). When the cache is full, a new key is
//! admitted only if it is estimated to be used more often than the entry it
//! would evict (TinyLFU's admission; [`CacheOptions::admission`]). Entries
//! found in the store at open count as used twice. `docs/benchmarks.md`
//! compares the hit ratio with LRU's on zipfian and scan-polluted traces,
//! and across a restart.
//!
//! # Storage
//! Entry `key` is stored under `d` + key, with a 13-byte header (kind,
//! fresh-until time, load time) before the value; the record's own TTL is
//! the end of the stale grace window. Generation counters are stored under
//! `g` + group. Give the cache a keyspace of its own.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::db::Db;
use crate::error::{Error, Result};
use crate::modules::eviction::Tracker;
use crate::util::locks;
use crate::util::locks::lock;
use crate::util::rand::FastRng;

const DATA: u8 = b'd';
const GENERATION: u8 = b'g';
const HEADER: usize = 13;
const KIND_VALUE: u8 = 0;
const KIND_NOT_FOUND: u8 = 1;

/// Options for a [`Cache`], as a by-value builder ending in
/// [`CacheOptions::open`].
#[derive(Clone, Debug)]
pub struct CacheOptions {
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    ttl_jitter: f64,
    stale_ms: u64,
    negative_ttl: Option<Duration>,
    early_refresh_beta: f64,
    seed: Option<u64>,
    admission: bool,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions::new()
    }
}

impl CacheOptions {
    /// No capacity limit, no jitter, no stale serving, no negative caching,
    /// no early refresh.
    pub fn new() -> CacheOptions {
        CacheOptions {
            max_entries: None,
            max_bytes: None,
            ttl_jitter: 0.0,
            stale_ms: 0,
            negative_ttl: None,
            early_refresh_beta: 0.0,
            seed: None,
            admission: true,
        }
    }

    /// Evicts when the cache holds more than `entries` entries.
    #[must_use]
    pub fn max_entries(mut self, entries: u64) -> CacheOptions {
        self.max_entries = Some(entries);
        self
    }

    /// Evicts when the entries' keys and values, plus a 13-byte header
    /// per entry, add up to more than `bytes`. An entry larger than that
    /// on its own is never stored, and evicts nothing (see
    /// [`Cache::insert`]).
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> CacheOptions {
        self.max_bytes = Some(bytes);
        self
    }

    /// Spreads each TTL uniformly over ±`fraction` of itself (0.1 for
    /// ±10%), so that entries written together do not expire together.
    #[must_use]
    pub fn ttl_jitter(mut self, fraction: f64) -> CacheOptions {
        self.ttl_jitter = fraction;
        self
    }

    /// Keeps entries for `grace` after they expire: a read-through call
    /// then returns the stale value at once while exactly one caller
    /// reloads it. Plain [`Cache::get`] never returns stale values.
    #[must_use]
    pub fn stale_while_revalidate(mut self, grace: Duration) -> CacheOptions {
        self.stale_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Caches "not found" answers of [`Cache::get_or_find_with`] for `ttl`.
    #[must_use]
    pub fn negative_ttl(mut self, ttl: Duration) -> CacheOptions {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Probabilistic early refresh (XFetch, Vattani et al., VLDB 2015): a
    /// read-through call reloads a fresh entry early with a probability
    /// that grows as expiry nears and with how long the last load took.
    /// `beta` 1.0 is the paper's default; larger refreshes earlier; 0
    /// (the default) turns it off.
    #[must_use]
    pub fn early_refresh_beta(mut self, beta: f64) -> CacheOptions {
        self.early_refresh_beta = beta;
        self
    }

    /// TinyLFU admission (on by default): when the cache is full, a new key
    /// is stored only if it is estimated to be used more often than the
    /// entry it would evict; otherwise the write is skipped (a read-through
    /// call still returns the loaded value) and counted in
    /// [`CacheStats::rejections`]. This is what keeps one-off scans from
    /// flushing the hot set. `false` stores every write and evicts for it,
    /// as Redis does.
    #[must_use]
    pub fn admission(mut self, on: bool) -> CacheOptions {
        self.admission = on;
        self
    }

    /// Seeds the cache's random choices (eviction samples, jitter,
    /// XFetch), for reproducible tests and benchmarks.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> CacheOptions {
        self.seed = Some(seed);
        self
    }

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

/// Counters, see [`CacheStats`].
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    loads: AtomicU64,
    load_errors: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
    stale_serves: AtomicU64,
    early_refreshes: AtomicU64,
    rejections: AtomicU64,
}

/// What a [`Cache`] has done since it was opened, and what it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Reads that found a fresh entry (a cached "not found" included).
    pub hits: u64,
    /// Reads that found no fresh entry.
    pub misses: u64,
    /// Loader calls that succeeded.
    pub loads: u64,
    /// Loader calls that failed (never cached).
    pub load_errors: u64,
    /// Entries removed to stay within the capacity.
    pub evictions: u64,
    /// Entries found expired (by a read or by eviction).
    pub expirations: u64,
    /// Stale values served while another caller reloaded them.
    pub stale_serves: u64,
    /// Loads started early by XFetch.
    pub early_refreshes: u64,
    /// Writes not stored: new keys refused by the admission check
    /// ([`CacheOptions::admission`]), and entries larger than
    /// [`CacheOptions::max_bytes`] on their own.
    pub rejections: u64,
    /// Entries held now.
    pub entries: u64,
    /// Key and value bytes held now.
    pub bytes: u64,
}

impl CacheStats {
    /// `hits / (hits + misses)`, or 0 before any read.
    pub fn hit_ratio(&self) -> f64 {
        let n = self.hits + self.misses;
        if n == 0 {
            0.0
        } else {
            self.hits as f64 / n as f64
        }
    }
}

/// The error of a read-through call: the loader's own error, shared by
/// every caller that waited for it, or the store's.
#[derive(Debug)]
pub enum LoadError<E> {
    /// The loader failed; nothing was cached.
    Loader(Arc<E>),
    /// The store failed.
    Store(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Loader(e) => write!(f, "cache loader failed: {e}"),
            LoadError::Store(e) => write!(f, "cache store failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(e) => Some(&**e),
            LoadError::Store(e) => Some(e),
        }
    }
}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Store(e)
    }
}

type Shared = Arc<dyn Any + Send + Sync>;

/// The outcome of a load, shared with waiters.
#[derive(Clone)]
enum Outcome {
    Loaded(Option<Arc<Vec<u8>>>),
    Failed(Shared),
    /// The loading caller panicked or was cancelled: wait no more, retry.
    Abandoned,
}

#[derive(Default)]
struct FlightState {
    outcome: Option<Outcome>,
    wakers: Vec<Waker>,
}

#[derive(Default)]
struct Flight {
    state: Mutex<FlightState>,
    done: Condvar,
    /// Set (under the writer lock) when the key is written or invalidated
    /// while this load runs: its result is then returned but not cached.
    stale: std::sync::atomic::AtomicBool,
}

impl Flight {
    fn finish(&self, o: Outcome) {
        let wakers = {
            let mut s = lock(&self.state);
            s.outcome = Some(o);
            std::mem::take(&mut s.wakers)
        };
        self.done.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    fn wait(&self) -> Outcome {
        let mut s = lock(&self.state);
        loop {
            if let Some(o) = &s.outcome {
                return o.clone();
            }
            s = locks::wait(&self.done, s);
        }
    }
}

/// Waits for a flight without blocking a thread.
struct FlightWait(Arc<Flight>);

impl Future for FlightWait {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut s = lock(&self.0.state);
        match &s.outcome {
            Some(o) => Poll::Ready(o.clone()),
            None => {
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// The leader's claim on a key's flight: finishing it, or dropping it
/// (panic, cancelled future), releases the waiters.
struct Leader<'a> {
    cache: &'a Inner,
    key: Vec<u8>,
    flight: Arc<Flight>,
    done: bool,
}

impl Leader<'_> {
    fn finish(mut self, o: Outcome) {
        self.release(o);
        self.done = true;
    }

    fn release(&self, o: Outcome) {
        let mut flights = lock(&self.cache.flights);
        if flights
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.key);
        }
        drop(flights);
        self.flight.finish(o);
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.release(Outcome::Abandoned);
        }
    }
}

/// Whether this caller loads, or waits for another.
enum Role<'a> {
    Lead(Leader<'a>),
    Wait(Arc<Flight>),
}

/// A stored entry, decoded.
struct Stored {
    kind: u8,
    fresh_until: u64,
    load_ms: u32,
    value: Vec<u8>,
}

impl Stored {
    fn decode(mut v: Vec<u8>) -> Result<Stored> {
        if v.len() < HEADER || v[0] > KIND_NOT_FOUND {
            return Err(Error::Malformed("cache entry".into()));
        }
        let mut fu = [0u8; 8];
        fu.copy_from_slice(&v[1..9]);
        let mut lm = [0u8; 4];
        lm.copy_from_slice(&v[9..13]);
        let kind = v[0];
        v.drain(..HEADER);
        Ok(Stored {
            kind,
            fresh_until: u64::from_le_bytes(fu),
            load_ms: u32::from_le_bytes(lm),
            value: v,
        })
    }

    fn is_fresh(&self, now: u64) -> bool {
        self.fresh_until == 0 || now < self.fresh_until
    }

    fn answer(self) -> Option<Vec<u8>> {
        (self.kind == KIND_VALUE).then_some(self.value)
    }
}

struct Inner {
    db: Db,
    opts: CacheOptions,
    tracker: Mutex<Tracker>,
    rng: Mutex<FastRng>,
    flights: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
    stats: Counters,
}

/// A bounded, durable cache. Cheap to clone; share it between threads.
/// See the [module documentation](self).
#[derive(Clone)]
pub struct Cache(Arc<Inner>);

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("db", &self.0.db)
            .field("opts", &self.0.opts)
            .finish_non_exhaustive()
    }
}

fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
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

    fn now(&self) -> u64 {
        self.0.db.now_ms()
    }

    /// Reads the stored entry for `key`, counting an expiry seen.
    fn read(&self, key: &[u8], now: u64) -> Result<Option<Stored>> {
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
    fn store(
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
            tx.put_expiring_at(&dk, stored, expires);
            for v in &victims {
                tx.delete(data_key(v));
            }
            Ok(())
        })
    }

    /// Marks a load of `key` in progress (other than `own`) stale. Called
    /// under the writer lock, like the check in [`Cache::store`].
    fn mark_loads_stale(&self, key: &[u8], own: Option<&Flight>) {
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

    /// Becomes the loader of `key`, or finds the caller already loading it.
    fn role(&self, key: &[u8]) -> Role<'_> {
        let mut flights = lock(&self.0.flights);
        if let Some(f) = flights.get(key) {
            return Role::Wait(f.clone());
        }
        let flight = Arc::new(Flight::default());
        flights.insert(key.to_vec(), flight.clone());
        Role::Lead(Leader {
            cache: &self.0,
            key: key.to_vec(),
            flight,
            done: false,
        })
    }

    /// Whether XFetch says to refresh a fresh entry now.
    fn early(&self, s: &Stored, now: u64) -> bool {
        let beta = self.0.opts.early_refresh_beta;
        if beta <= 0.0 || s.fresh_until == 0 || s.load_ms == 0 {
            return false;
        }
        let r = lock(&self.0.rng).unit_open0();
        let gap = f64::from(s.load_ms) * beta * -r.ln();
        now as f64 + gap >= s.fresh_until as f64
    }

    /// What a read-through call does first: an answer, or a load to run
    /// (as leader, or waiting), with the stale answer to give if another
    /// caller is already loading.
    fn plan<E>(&self, key: &[u8]) -> Result<Plan<'_>, LoadError<E>> {
        // A read-through call may wait for a loader that needs the writer
        // lock: refuse inside a transaction instead of deadlocking.
        Db::check_not_in_transaction()?;
        let now = self.now();
        lock(&self.0.tracker).record_access(key);
        let found = self.read(key, now)?;
        match found {
            Some(s) if s.is_fresh(now) => {
                if self.early(&s, now) {
                    if let Role::Lead(l) = self.role(key) {
                        bump(&self.0.stats.early_refreshes);
                        bump(&self.0.stats.misses);
                        return Ok(Plan::Load(l));
                    }
                }
                bump(&self.0.stats.hits);
                Ok(Plan::Done(s.answer()))
            }
            Some(stale) => {
                // Within the grace window: one caller reloads, the others
                // get the stale value meanwhile.
                bump(&self.0.stats.misses);
                match self.role(key) {
                    Role::Lead(l) => Ok(Plan::Load(l)),
                    Role::Wait(_) => {
                        bump(&self.0.stats.stale_serves);
                        Ok(Plan::Done(stale.answer()))
                    }
                }
            }
            None => {
                bump(&self.0.stats.misses);
                Ok(match self.role(key) {
                    Role::Lead(l) => Plan::Load(l),
                    Role::Wait(f) => Plan::Wait(f),
                })
            }
        }
    }

    /// [`Cache::plan`] for a caller that needs a value: a cached "not
    /// found" (from `get_or_find_with`) is loaded like a miss.
    fn plan_value<E>(&self, key: &[u8]) -> Result<Plan<'_>, LoadError<E>> {
        Ok(match self.plan::<E>(key)? {
            Plan::Done(None) => match self.role(key) {
                Role::Lead(l) => Plan::Load(l),
                Role::Wait(f) => Plan::Wait(f),
            },
            p => p,
        })
    }

    /// Stores a loader's result and shares it with the waiters.
    fn settle<E: Send + Sync + 'static>(
        &self,
        leader: Leader<'_>,
        loaded: std::result::Result<Option<Vec<u8>>, E>,
        ttl: Duration,
        took: Duration,
    ) -> Result<Option<Vec<u8>>, LoadError<E>> {
        match loaded {
            Err(e) => {
                bump(&self.0.stats.load_errors);
                let e = Arc::new(e);
                leader.finish(Outcome::Failed(e.clone()));
                Err(LoadError::Loader(e))
            }
            Ok(v) => {
                bump(&self.0.stats.loads);
                let load_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX).max(1);
                let key = leader.key.clone();
                let stored = match &v {
                    Some(v) => self.store(
                        &key,
                        KIND_VALUE,
                        v,
                        Some(ttl),
                        load_ms,
                        Some(&leader.flight),
                    ),
                    None => match self.0.opts.negative_ttl {
                        Some(nt) => self.store(
                            &key,
                            KIND_NOT_FOUND,
                            b"",
                            Some(nt),
                            load_ms,
                            Some(&leader.flight),
                        ),
                        None => Ok(()),
                    },
                };
                let shared = v.map(Arc::new);
                leader.finish(Outcome::Loaded(shared.clone()));
                stored?;
                Ok(shared.map(Arc::unwrap_or_clone))
            }
        }
    }

    /// What a waiter makes of the leader's outcome; `None`: retry.
    fn waited<E: Send + Sync + 'static>(
        o: Outcome,
    ) -> Option<Result<Option<Vec<u8>>, LoadError<E>>> {
        match o {
            Outcome::Loaded(v) => Some(Ok(v.map(Arc::unwrap_or_clone))),
            Outcome::Failed(e) => match e.downcast::<E>() {
                Ok(e) => Some(Err(LoadError::Loader(e))),
                // A loader with another error type: load for ourselves.
                Err(_) => None,
            },
            Outcome::Abandoned => None,
        }
    }

    /// The value of `key`, or else the result of `loader`, cached for
    /// `ttl`. Concurrent misses on the same key run one loader; the others
    /// wait and share its value or its error. A loader error is returned
    /// and not cached.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// let v = cache.get_or_insert_with("k", Duration::from_secs(60), || Ok::<_, std::io::Error>(b"loaded".to_vec()))?;
    /// assert_eq!(v, b"loaded");
    /// let again = cache.get_or_insert_with("k", Duration::from_secs(60), || -> Result<Vec<u8>, std::io::Error> {
    ///     unreachable!("cached")
    /// })?;
    /// assert_eq!(again, b"loaded");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LoadError::Loader`] with the loader's error (its own, or the one
    /// it waited for), [`LoadError::Store`] when the store fails.
    pub fn get_or_insert_with<E: Send + Sync + 'static>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: impl FnOnce() -> std::result::Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, LoadError<E>> {
        let key = key.as_ref();
        loop {
            match self.plan_value::<E>(key)? {
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader().map(Some);
                    let v = self.settle(leader, loaded, ttl, start.elapsed())?;
                    return Ok(v.unwrap_or_default());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(f.wait()) {
                        match r? {
                            Some(v) => return Ok(v),
                            None => continue,
                        }
                    }
                }
                Plan::Done(Some(v)) => return Ok(v),
                // plan_value never answers "not found".
                Plan::Done(None) => continue,
            }
        }
    }

    /// As [`Cache::get_or_insert_with`] for a loader that can answer "not
    /// found" (`Ok(None)`). That answer is cached for
    /// [`CacheOptions::negative_ttl`] when it is set, and not cached
    /// otherwise.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::CacheOptions::new().negative_ttl(Duration::from_secs(5)).open(db)?;
    /// let lookup = || Ok::<_, std::io::Error>(None); // no such user
    /// assert_eq!(cache.get_or_find_with("user:9", Duration::from_secs(60), lookup)?, None);
    /// let again = cache.get_or_find_with("user:9", Duration::from_secs(60), || -> Result<Option<Vec<u8>>, std::io::Error> {
    ///     unreachable!("the miss is cached")
    /// })?;
    /// assert_eq!(again, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Cache::get_or_insert_with`].
    pub fn get_or_find_with<E: Send + Sync + 'static>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: impl FnOnce() -> std::result::Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, LoadError<E>> {
        let key = key.as_ref();
        loop {
            match self.plan::<E>(key)? {
                Plan::Done(v) => return Ok(v),
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader();
                    return self.settle(leader, loaded, ttl, start.elapsed());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(f.wait()) {
                        return r;
                    }
                }
            }
        }
    }

    /// [`Cache::get_or_insert_with`] for async code: the loader is a
    /// future, and waiting for another caller's load does not block a
    /// thread. It works on any executor. Writing the loaded value to the
    /// store does block for as long as a write takes under the store's
    /// [`SyncPolicy`](crate::SyncPolicy): open caches with
    /// `SyncPolicy::EveryMillis` or `Never`, where it is a memory copy.
    /// If the loading future is dropped, a waiter takes over the load.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct W(std::thread::Thread);
    /// #     impl std::task::Wake for W { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(W(std::thread::current())).into();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().sync_policy(cairn::SyncPolicy::EveryMillis(100)).open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// let v = block_on(cache.get_or_insert_with_async("k", Duration::from_secs(60), || async {
    ///     Ok::<_, std::io::Error>(b"fetched".to_vec())
    /// }))?;
    /// assert_eq!(v, b"fetched");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Cache::get_or_insert_with`].
    pub async fn get_or_insert_with_async<E, F, Fut>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: F,
    ) -> Result<Vec<u8>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<u8>, E>>,
    {
        let key = key.as_ref();
        loop {
            match self.plan_value::<E>(key)? {
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader().await.map(Some);
                    let v = self.settle(leader, loaded, ttl, start.elapsed())?;
                    return Ok(v.unwrap_or_default());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(FlightWait(f).await) {
                        if let Some(v) = r? {
                            return Ok(v);
                        }
                    }
                }
                Plan::Done(Some(v)) => return Ok(v),
                // plan_value never answers "not found".
                Plan::Done(None) => {}
            }
        }
    }
}

/// See [`Cache::plan`].
enum Plan<'a> {
    Done(Option<Vec<u8>>),
    Load(Leader<'a>),
    Wait(Arc<Flight>),
}
