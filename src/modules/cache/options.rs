//! The cache's options: a by-value builder ([`CacheOptions::open`] is in
//! `inner.rs`, next to the cache it opens).

use std::time::Duration;

/// Options for a [`Cache`](super::Cache), as a by-value builder ending in
/// [`CacheOptions::open`].
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub(super) max_entries: Option<u64>,
    pub(super) max_bytes: Option<u64>,
    pub(super) ttl_jitter: f64,
    pub(super) stale_ms: u64,
    pub(super) negative_ttl: Option<Duration>,
    pub(super) early_refresh_beta: f64,
    pub(super) seed: Option<u64>,
    pub(super) admission: bool,
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
    /// [`Cache::insert`](super::Cache::insert)).
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
    /// reloads it. Plain [`Cache::get`](super::Cache::get) never returns stale values.
    #[must_use]
    pub fn stale_while_revalidate(mut self, grace: Duration) -> CacheOptions {
        self.stale_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Caches "not found" answers of [`Cache::get_or_find_with`](super::Cache::get_or_find_with) for `ttl`.
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
    /// [`CacheStats::rejections`](super::CacheStats::rejections). This is what keeps one-off scans from
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
}
