//! Read-modify-write transactions: a closure that runs under the writer
//! lock, whose writes become one atomic batch.

use std::cell::Cell;
use std::collections::HashMap;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{expiry_after, Ttl};

thread_local! {
    /// Set while this thread runs a transaction closure (and so holds a
    /// writer lock): a write through any `Db` from here would wait on a
    /// lock this thread may hold.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the current thread as inside a transaction until dropped.
pub(crate) struct Inside(());

impl Inside {
    pub(crate) fn enter() -> Result<Inside> {
        if INSIDE.with(Cell::get) {
            return Err(Error::NestedWrite);
        }
        INSIDE.with(|c| c.set(true));
        Ok(Inside(()))
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        INSIDE.with(|c| c.set(false));
    }
}

/// Refuses a write from inside a transaction closure.
pub(crate) fn check_not_inside() -> Result<()> {
    if INSIDE.with(Cell::get) {
        Err(Error::NestedWrite)
    } else {
        Ok(())
    }
}

/// A pending write: the value and its absolute expiry (Unix ms, 0 for
/// none), or `None` for a delete.
pub(crate) type PendingWrite = (Vec<u8>, Option<(Vec<u8>, u64)>);

/// How a transaction reads the store: a key's live value and expiry.
pub(crate) type ReadLive<'a> = dyn Fn(&[u8]) -> Result<Option<(Vec<u8>, u64)>> + 'a;

/// The view of the store inside [`Db::transaction`](crate::Db::transaction).
///
/// Reads see the store as of the start of the closure plus the closure's
/// own writes; no other writer runs until the closure returns. The writes
/// are applied together, as one atomic batch, when the closure returns
/// `Ok`, and are dropped when it returns `Err`.
pub struct Txn<'a> {
    /// Reads the store's live value of a key and its expiry (Unix ms, 0
    /// for none), under the writer lock the transaction holds.
    read: &'a ReadLive<'a>,
    now: u64,
    writes: Vec<PendingWrite>,
    /// Where each key's write is in `writes`, once there are many.
    index: Option<HashMap<Vec<u8>, usize>>,
    /// Set by [`Txn::defer_sync`]: the commit does not wait for its fsync.
    deferred: bool,
}

/// Past this many writes, pending writes are found through a hash map
/// instead of a linear search.
const INDEX_FROM: usize = 16;

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("pending_writes", &self.writes.len())
            .finish_non_exhaustive()
    }
}

/// The facade cairn's modules use beyond the public API (as on `Db`):
/// the transaction's clock, and reads and writes with absolute expiry
/// times, so that a session's expiry is exactly what it stored.
impl Txn<'_> {
    /// The clock reading taken when the transaction started (Unix ms).
    pub(crate) fn now_ms(&self) -> u64 {
        self.now
    }

    /// The live value of `key` and its expiry (Unix ms, 0 for none).
    pub(crate) fn get_entry(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        match self.pending(key) {
            Some(w) => Ok(w.clone()),
            None => Ok((self.read)(key)?.filter(|(_, e)| *e == 0 || *e > self.now)),
        }
    }

    /// Queues a write with an absolute expiry (Unix ms, 0 for none).
    pub(crate) fn put_raw_expiring_at(&mut self, key: &[u8], value: Vec<u8>, expires: u64) {
        self.set(key, Some((value, expires)));
    }
}

impl<'a> Txn<'a> {
    /// A transaction that reads the store through `read`, as of `now`
    /// (Unix ms).
    pub(crate) fn new(read: &'a ReadLive<'a>, now: u64) -> Txn<'a> {
        Txn {
            read,
            now,
            writes: Vec::new(),
            index: None,
            deferred: false,
        }
    }

    /// Whether [`Txn::defer_sync`] was called.
    pub(crate) fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// The queued writes, in the order of their first write.
    pub(crate) fn into_writes(self) -> Vec<PendingWrite> {
        self.writes
    }

    fn position(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(key).copied(),
            None => self.writes.iter().position(|(k, _)| k == key),
        }
    }

    fn pending(&self, key: &[u8]) -> Option<&Option<(Vec<u8>, u64)>> {
        self.position(key).map(|i| &self.writes[i].1)
    }

    fn set(&mut self, key: &[u8], w: Option<(Vec<u8>, u64)>) {
        if let Some(i) = self.position(key) {
            self.writes[i].1 = w;
            return;
        }
        if let Some(ix) = &mut self.index {
            ix.insert(key.to_vec(), self.writes.len());
        }
        self.writes.push((key.to_vec(), w));
        if self.index.is_none() && self.writes.len() >= INDEX_FROM {
            self.index = Some(
                self.writes
                    .iter()
                    .enumerate()
                    .map(|(i, (k, _))| (k.clone(), i))
                    .collect(),
            );
        }
    }

    /// The value of `key`, including this transaction's own writes.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.transaction(|tx| {
    ///     assert_eq!(tx.get("k")?, None);
    ///     tx.put("k", "v");
    ///     assert_eq!(tx.get("k")?, Some(b"v".to_vec()));
    ///     Ok(())
    /// })?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`], or [`Error::Io`] / [`Error::Corruption`] when
    /// the value cannot be read.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        Ok(self.get_entry(key.as_ref())?.map(|(v, _)| v))
    }

    /// The time-to-live of `key`, including this transaction's own writes.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.transaction(|tx| {
    ///     assert_eq!(tx.ttl("k")?, cairn::Ttl::Persistent);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Txn::get`].
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl> {
        Ok(match self.get_entry(key.as_ref())? {
            None => Ttl::Missing,
            Some((_, 0)) => Ttl::Persistent,
            Some((_, e)) => Ttl::Expires(Duration::from_millis(e.saturating_sub(self.now))),
        })
    }

    /// Queues a put of `value` under `key` with no expiry.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.transaction(|tx| {
    ///     tx.put("a", "1");
    ///     tx.put("b", "2");
    ///     Ok(())
    /// })?;
    /// assert_eq!(db.get("b")?, Some(b"2".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.set(key.as_ref(), Some((value.as_ref().to_vec(), 0)));
    }

    /// Queues a put of `value` under `key` that expires `ttl` after the
    /// transaction started.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.transaction(|tx| tx.put_with_ttl("k", "v", Duration::from_secs(60)))?;
    /// assert!(matches!(db.ttl("k")?, cairn::Ttl::Expires(_)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTtl`] for a zero `ttl` or one too long to count
    /// (see [`Db::put_with_ttl`](crate::Db::put_with_ttl)).
    pub fn put_with_ttl(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<()> {
        let expires = expiry_after(self.now, ttl)?;
        self.set(key.as_ref(), Some((value.as_ref().to_vec(), expires)));
        Ok(())
    }

    /// Queues a delete of `key`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// db.transaction(|tx| {
    ///     let v = tx.get("a")?.unwrap_or_default();
    ///     tx.delete("a");
    ///     tx.put("b", v);
    ///     Ok(())
    /// })?;
    /// assert_eq!(db.get("a")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.set(key.as_ref(), None);
    }

    /// The clock reading taken when the transaction started, in Unix
    /// milliseconds: the "now" against which its reads drop expired keys
    /// and its TTLs are counted.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let now = db.transaction(|tx| Ok(tx.now_unix_ms()))?;
    /// assert!(now > 1_600_000_000_000);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn now_unix_ms(&self) -> u64 {
        self.now
    }

    /// The value of `key` and its absolute expiry in Unix milliseconds
    /// (`None`: it never expires), including this transaction's own writes.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.transaction(|tx| {
    ///     assert_eq!(tx.get_with_expiry("k")?, Some((b"v".to_vec(), None)));
    ///     Ok(())
    /// })?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Txn::get`].
    pub fn get_with_expiry(&self, key: impl AsRef<[u8]>) -> Result<Option<(Vec<u8>, Option<u64>)>> {
        Ok(self
            .get_entry(key.as_ref())?
            .map(|(v, e)| (v, (e != 0).then_some(e))))
    }

    /// Queues a put of `value` under `key` that expires at the absolute
    /// time `expires_at_unix_ms` (`None`: never), as Redis's `PXAT` and
    /// `KEEPTTL` need.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.transaction(|tx| {
    ///     let at = tx.now_unix_ms() + 60_000;
    ///     tx.put_expiring_at("k", "v", Some(at))
    /// })?;
    /// assert!(matches!(db.ttl("k")?, cairn::Ttl::Expires(_)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTtl`] when `expires_at_unix_ms` is not after
    /// [`Txn::now_unix_ms`] or is later than the largest expiry cairn
    /// counts (2^48 - 1 unix milliseconds, in the year 10889).
    pub fn put_expiring_at(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        expires_at_unix_ms: Option<u64>,
    ) -> Result<()> {
        let expires = match expires_at_unix_ms {
            None => 0,
            Some(at) if at > self.now && at <= crate::types::MAX_EXPIRY_MS => at,
            Some(_) => return Err(Error::InvalidTtl),
        };
        self.set(key.as_ref(), Some((value.as_ref().to_vec(), expires)));
        Ok(())
    }

    /// The keys this transaction has written so far (puts and deletes),
    /// in the order of their first write. A command that must act on
    /// every key of the store, such as a server's FLUSHDB inside a
    /// transaction, needs these as well as [`Db::for_each_key`](crate::Db::for_each_key),
    /// which does not see pending writes.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.transaction(|tx| {
    ///     tx.put("a", "1");
    ///     tx.delete("b");
    ///     let keys: Vec<&[u8]> = tx.written_keys().collect();
    ///     assert_eq!(keys, [&b"a"[..], &b"b"[..]]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn written_keys(&self) -> impl Iterator<Item = &[u8]> {
        self.writes.iter().map(|(k, _)| k.as_slice())
    }

    /// Lets the commit return without waiting for its fsync under
    /// [`SyncPolicy::Always`](crate::SyncPolicy::Always) (under the other
    /// policies a commit never waits). The writes are then durable once a
    /// later [`Db::sync`](crate::Db::sync) returns; many callers' syncs
    /// share one fsync. This is how a server acknowledges a whole pipeline
    /// of writes after a single fsync: commit each, sync once, then reply.
    /// Until that sync returns, a power loss may lose the writes, and other
    /// readers already see them.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// for i in 0..3 {
    ///     db.transaction(|tx| {
    ///         tx.defer_sync();
    ///         tx.put(format!("k{i}"), "v");
    ///         Ok(())
    ///     })?;
    /// }
    /// db.sync()?; // one fsync makes all three durable
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn defer_sync(&mut self) {
        self.deferred = true;
    }
}
