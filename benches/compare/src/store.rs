//! The interface every store under test implements.
//!
//! Keys are 16 bytes and values 100 bytes (1 KB for sessions) unless a
//! workload says otherwise. Stores without native expiry keep an 8-byte
//! little-endian "expires at" (unix ms, 0 = never) in front of the value,
//! through [`ttl_wrap`] and [`ttl_unwrap`]; their `get_live` checks it, just
//! as an application on that store would.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Errors from a store, as text: the harness only reports them.
pub type Result<T> = std::result::Result<T, String>;

/// How hard a store works to make a write durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Durability {
    /// No fsync per write; writes reach the OS (or the store's buffer) only.
    /// The harness calls `sync` once at the end of a bulk load.
    Relaxed,
    /// Up to about one second of acknowledged writes may be lost on power
    /// loss: Redis `everysec`, cairn `EveryMillis(1000)`. Stores without such
    /// a mode get `sync` from the harness once a second, inside the timed loop.
    Periodic,
    /// Every acknowledged write is on disk (fsync / fdatasync) before it returns.
    Durable,
}

/// What a store says about the mode it was opened in, for the report.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Describe {
    /// Settings used, as the report prints them.
    pub settings: String,
    /// Set when the store's mode is weaker than asked for (for example sled,
    /// whose flush does not fsync), saying why.
    pub caveat: Option<String>,
    /// True when the store syncs once a second on its own in `Periodic`, so
    /// the harness must not call `sync` for it.
    pub self_periodic: bool,
}

/// One store under test, opened on a directory.
pub trait Store: Send + Sync {
    /// The settings and caveats of this instance.
    fn describe(&self) -> Describe;

    /// Writes all pairs in one transaction / batch, with the store's
    /// `Relaxed` durability (the harness calls `sync` after the last one).
    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()>;

    /// One write, one transaction, with the durability the store was opened with.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Reads a value into `out` (cleared first). Returns whether it was found.
    /// Values must be copied out: no borrowed return.
    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;

    /// Deletes a key, one transaction.
    fn delete(&self, key: &[u8]) -> Result<()>;

    /// Writes a value that expires `ttl_ms` from now.
    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()>;

    /// Reads a value that has not expired into `out`. Returns whether found.
    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;

    /// Moves the expiry of a live key to `ttl_ms` from now (a session
    /// "touch"). Returns whether the key was live.
    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool>;

    /// Rate-limit counter: atomically adds 1 to the counter at `key` and
    /// returns the new count. A new (or expired) counter starts at 1 and
    /// expires `ttl_ms` from now; an existing one keeps its expiry.
    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64>;

    /// Makes every write so far durable.
    fn sync(&self) -> Result<()>;

    /// The store's own count of fsync/fdatasync calls so far, where it
    /// keeps one (cairn does), to check "one fsync per durable write".
    fn fsyncs(&self) -> Option<u64> {
        None
    }

    /// What the store says of how its open went, where it says anything
    /// (cairn: whether its index checkpoint was used, and how much log it
    /// replayed after it).
    fn open_note(&self) -> Option<String> {
        None
    }

    /// Flushes and closes (called before measuring disk use and before a
    /// reopen). The default does nothing beyond `sync`.
    fn close(&self) -> Result<()> {
        self.sync()
    }
}

/// Opens one kind of store.
pub trait Peer {
    /// Opens (creating if needed) the store in `dir` with the given durability.
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>>;
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `expires_at` (LE u64) followed by the value.
pub fn ttl_wrap(value: &[u8], expires_at_ms: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + value.len());
    v.extend_from_slice(&expires_at_ms.to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// Splits a wrapped value into its expiry and payload; `None` if it is too short.
pub fn ttl_unwrap(stored: &[u8]) -> Option<(u64, &[u8])> {
    let head: [u8; 8] = stored.get(..8)?.try_into().ok()?;
    Some((u64::from_le_bytes(head), &stored[8..]))
}

/// True when a wrapped expiry has passed.
pub fn expired(expires_at_ms: u64, now: u64) -> bool {
    expires_at_ms != 0 && expires_at_ms <= now
}

/// Copies the payload of a wrapped value into `out` (cleared first) if it
/// has not expired; returns whether it did. The `get_live` of every store
/// without native expiry.
pub fn copy_live(stored: Option<&[u8]>, out: &mut Vec<u8>) -> bool {
    out.clear();
    match stored.and_then(ttl_unwrap) {
        Some((exp, body)) if !expired(exp, now_ms()) => {
            out.extend_from_slice(body);
            true
        }
        _ => false,
    }
}

/// The counter update shared by stores that emulate `incr_ttl` in a
/// read-modify-write transaction: returns the new stored bytes and count.
pub fn counter_update(old: Option<&[u8]>, ttl_ms: u64, now: u64) -> (Vec<u8>, i64) {
    if let Some((exp, body)) = old.and_then(ttl_unwrap) {
        if !expired(exp, now) {
            if let Ok(b) = <[u8; 8]>::try_from(body) {
                let n = i64::from_le_bytes(b) + 1;
                return (ttl_wrap(&n.to_le_bytes(), exp), n);
            }
        }
    }
    (ttl_wrap(&1i64.to_le_bytes(), now + ttl_ms), 1)
}
