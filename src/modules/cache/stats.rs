//! The cache's counters, and what [`Cache::stats`](super::Cache::stats)
//! reports.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters, see [`CacheStats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) loads: AtomicU64,
    pub(super) load_errors: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) expirations: AtomicU64,
    pub(super) stale_serves: AtomicU64,
    pub(super) early_refreshes: AtomicU64,
    pub(super) rejections: AtomicU64,
}

/// What a [`Cache`](super::Cache) has done since it was opened, and what it holds.
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
    /// ([`CacheOptions::admission`](super::CacheOptions::admission)), and entries larger than
    /// [`CacheOptions::max_bytes`](super::CacheOptions::max_bytes) on their own.
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

pub(super) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}
