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
//!   Past either, entries are evicted by sampled LFU (see below). On the
//!   embedded store the eviction is written in the same atomic update as
//!   the insert that caused it, so a restart does not bring evicted
//!   entries back (on a remote store, see [Stores](#stores)).
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
//! - **Warm restarts.** Entries live in the store: reopening keeps
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
//! # Stores
//! A cache opens on a [`Store`](crate::backend::Store): a `Db` or a
//! keyspace of one (`open(db)`, `open(db.keyspace("cache")?)`), or a
//! remote store (see [`backend`](crate::backend)). The same calls work
//! on both; what differs:
//!
//! - **The bound is per process.** The capacity is kept by a tracker in
//!   the process (keys, sizes, access frequencies), loaded with one
//!   [`scan`](crate::backend::Store::scan) at open (on a remote store, a
//!   `SCAN` of the server's whole keyspace). On a store shared by several
//!   processes, each one bounds the entries it has seen: its own writes
//!   and what was there when it opened. On Redis or Valkey, the real bound
//!   across processes is the server's own `maxmemory` with
//!   `maxmemory-policy allkeys-lfu`, on a server of the cache's own (an
//!   evicting policy on the server of sessions, idempotency keys or
//!   limits would evict those); set `max_entries` or `max_bytes` there
//!   only to keep one process's share smaller.
//! - **Evictions on a remote store** are one delete per victim after the
//!   insert (a cluster spreads a cache's entries over its slots, so one
//!   atomic update cannot span them): a crash in between leaves the store
//!   over the capacity until the next open evicts.
//! - **Invalidation across processes.** A load that an
//!   [`Cache::invalidate`] overtakes is not cached, within one process;
//!   another process's invalidation does not reach loads running here.
//! - **One write at a time per cache and process.** A cache's writes
//!   (inserts, invalidations) hold a lock of its own across the store's
//!   call, which keeps the tracker in step with the store; reads do not.
//!   On a remote store that is one write in flight per process: open more
//!   than one cache, or use more processes, for more write throughput.
//! - **Async.** [`Cache::get_or_insert_with_async`] runs a remote store's
//!   calls on the library's own threads and awaits them.
//!
//! # Storage
//! Entry `key` is stored under `d` + key, with a 13-byte header (kind,
//! fresh-until time, load time) before the value; the record's own TTL is
//! the end of the stale grace window. Generation counters are stored under
//! `g` + group. Each operation touches one key (an insert and its
//! evictions excepted, on the embedded store), so the keys carry no hash
//! tag: a cluster spreads them over its slots. Give the cache a keyspace
//! (or, on a server, a database) of its own.

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
