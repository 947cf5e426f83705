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

mod entry;
mod flight;
mod inner;
mod options;
mod read_through;
mod stats;

pub use flight::LoadError;
pub use inner::Cache;
pub use options::CacheOptions;
pub use stats::CacheStats;
