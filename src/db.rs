//! The public handle.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::batch::Batch;
use crate::engine::Core;
use crate::error::Result;
use crate::iter::ScanPrefix;
use crate::options::Options;
use crate::recovery::RecoveryReport;
use crate::stats::Stats;
use crate::types::{CasConflict, Ttl};
use crate::util::locks::lock;

/// An open cairn store.
///
/// `Db` is a cheap handle: clone it to share the store between threads
/// (`Db` is `Clone + Send + Sync + 'static`). The store stays open until the
/// last clone is dropped or [`Db::close`] is called.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("user:1", "ada")?;
/// assert_eq!(db.get("user:1")?, Some(b"ada".to_vec()));
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone)]
pub struct Db(Arc<Inner>);

pub(crate) struct Inner {
    core: Arc<Core>,
    background: Mutex<Vec<JoinHandle<()>>>,
    /// The options this handle was opened with; keyspaces inherit them.
    pub(crate) opts: Options,
    /// Keyspaces opened through this handle, by name.
    pub(crate) keyspaces: Mutex<std::collections::HashMap<String, Db>>,
}

impl Inner {
    /// Stops the background and compaction threads and waits for them.
    fn stop_threads(&self) {
        self.core.stop_background();
        for h in lock(&self.background).drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop_threads();
        if !self.core.is_poisoned() {
            // A clean shutdown leaves everything durable, as close() would.
            if let Err(e) = self.core.close() {
                log::warn!("closing {} on drop failed: {e}", self.core.dir.display());
            }
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Clone + Send + Sync + 'static>() {}
    assert_send_sync::<Db>();
};

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dir", &self.0.core.dir)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Opens (or creates) the store in `path` with default [`Options`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Options::open`]: [`Error::Locked`](crate::Error::Locked)(crate::Error::Locked) when
    /// another handle holds the directory,
    /// [`Error::Corruption`](crate::Error::Corruption) for damage a crash
    /// cannot explain, [`Error::Io`](crate::Error::Io) otherwise.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Options::new().open(path)
    }

    pub(crate) fn open_with(path: &Path, opts: Options) -> Result<Db> {
        let kept = opts.clone();
        // A snapshot's open copes with a writer in another process by
        // itself (src/recovery/pin.rs): no retry here.
        let core = Core::open(path, opts)?;
        let mut threads = Vec::new();
        let bg_core = core.clone();
        threads.push(
            std::thread::Builder::new()
                .name("cairn-background".into())
                .spawn(move || bg_core.background())?,
        );
        if core.opts.auto_compact && !core.opts.read_only {
            let c = core.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("cairn-compaction".into())
                    .spawn(move || c.auto_compaction())?,
            );
        }
        if core.warms_up() {
            let c = core.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("cairn-warm-up".into())
                    .spawn(move || c.warm_up())?,
            );
        }
        Ok(Db(Arc::new(Inner {
            core,
            background: Mutex::new(threads),
            opts: kept,
            keyspaces: Mutex::new(std::collections::HashMap::new()),
        })))
    }

    /// The sync policy this handle was opened with.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.sync_policy(), cairn::SyncPolicy::Always);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn sync_policy(&self) -> crate::options::SyncPolicy {
        self.0.opts.sync_policy
    }

    /// The engine, for the other public root files (`keyspace.rs`,
    /// `iter.rs`). The modules use the facade below instead.
    pub(crate) fn core(&self) -> &Core {
        &self.0.core
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }

    /// Stores `value` under `key`, replacing any previous value and clearing
    /// any expiry.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put(b"k", b"v")?;
    /// db.put("empty", "")?; // an empty value is a value, not a deletion
    /// assert_eq!(db.get("empty")?, Some(vec![]));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::KeyTooLarge`](crate::Error::KeyTooLarge) /
    /// [`Error::ValueTooLarge`](crate::Error::ValueTooLarge) (nothing is
    /// written), [`Error::Poisoned`](crate::Error::Poisoned) after an earlier
    /// failed write, [`Error::Io`](crate::Error::Io) if the write or its
    /// fsync fails (the handle is then poisoned).
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.core().put(key.as_ref(), value.as_ref(), None)
    }

    /// Stores `value` under `key` with a time-to-live. The expiry is stored
    /// as an absolute time, so it survives restarts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put_with_ttl("session", "data", Duration::from_secs(3600))?;
    /// assert!(db.contains_key("session")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put`], plus [`Error::InvalidTtl`](crate::Error::InvalidTtl)
    /// for a zero `ttl` or one too long to count (such as `Duration::MAX`:
    /// the expiry must come before 2^48 unix milliseconds, the year 10889).
    pub fn put_with_ttl(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<()> {
        self.core().put(key.as_ref(), value.as_ref(), Some(ttl))
    }

    /// The value of `key`, or `None` if it is absent or expired. The record's
    /// checksum is verified on every read.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.get("nope")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Corruption`](crate::Error::Corruption) if the record fails
    /// its checksum, [`Error::Io`](crate::Error::Io) on a read error.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        self.core().get(key.as_ref())
    }

    /// The value of `key` and its absolute expiry in Unix milliseconds
    /// (`None`: it never expires), read together, so the two always belong
    /// to the same write.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// db.put_with_ttl("b", "2", Duration::from_secs(60))?;
    /// assert_eq!(db.get_with_expiry("a")?, Some((b"1".to_vec(), None)));
    /// assert!(matches!(db.get_with_expiry("b")?, Some((_, Some(_)))));
    /// assert_eq!(db.get_with_expiry("c")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::get`].
    pub fn get_with_expiry(&self, key: impl AsRef<[u8]>) -> Result<Option<(Vec<u8>, Option<u64>)>> {
        let core = self.core();
        let now = core.now_ms();
        Ok(core
            .read_live(key.as_ref())?
            .filter(|(_, e)| *e == 0 || *e > now)
            .map(|(v, e)| (v, (e != 0).then_some(e))))
    }

    /// Calls `f` with each live key that starts with `prefix` and its
    /// absolute expiry in Unix milliseconds (`None`: never), in no
    /// particular order, without reading any value. Keys written while it
    /// runs may or may not be seen. It walks the whole index, one shard at
    /// a time, holding that shard's read lock while `f` runs: keep `f`
    /// short, and do not write to this store from it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("user:1", "a")?;
    /// db.put("user:2", "b")?;
    /// db.put("team:1", "c")?;
    /// let mut keys = Vec::new();
    /// db.for_each_key("user:", |k, _expiry| keys.push(k.to_vec()))?;
    /// keys.sort();
    /// assert_eq!(keys, [b"user:1".to_vec(), b"user:2".to_vec()]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Db::close`].
    pub fn for_each_key(
        &self,
        prefix: impl AsRef<[u8]>,
        mut f: impl FnMut(&[u8], Option<u64>),
    ) -> Result<()> {
        let core = self.core();
        core.check_open()?;
        core.for_each_live_key(prefix.as_ref(), |k, _, e| f(k, (e != 0).then_some(e)))
    }

    /// Whether `key` is present and not expired. Reads the index and the
    /// key in its record, not the value.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// assert!(db.contains_key("k")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Db::close`].
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.core().contains_key(key.as_ref())
    }

    /// Deletes `key`. Returns whether it existed (and had not expired).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// assert!(db.delete("k")?);
    /// assert!(!db.delete("k")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.core().delete(key.as_ref())
    }

    /// Adds `delta` to the integer stored at `key` and returns the result,
    /// with Redis `INCRBY` semantics: a missing key counts as 0, the value is
    /// stored as decimal ASCII, and the key keeps its expiry.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.incr("hits", 1)?, 1);
    /// assert_eq!(db.incr("hits", 41)?, 42);
    /// assert_eq!(db.get("hits")?, Some(b"42".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::NotAnInteger`](crate::Error::NotAnInteger) when the value is
    /// not a base-10 `i64`, [`Error::Overflow`](crate::Error::Overflow) on
    /// overflow (nothing changes in either case), and the errors of [`Db::put`].
    pub fn incr(&self, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        self.core().incr(key.as_ref(), delta)
    }

    /// Sets a time-to-live on an existing key. Returns false if the key is
    /// absent. A zero `ttl` deletes the key, as in Redis.
    ///
    /// The log records an expiry change: a put of the key's current value
    /// flagged expiry-only (`SegmentEntry::Record::expiry_only`), not a
    /// plain put.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// assert!(db.expire("k", Duration::from_secs(60))?);
    /// assert!(!db.expire("missing", Duration::from_secs(60))?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put_with_ttl`].
    pub fn expire(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<bool> {
        self.core().expire(key.as_ref(), ttl)
    }

    /// Removes the expiry of `key`. Returns true if the key existed and had
    /// an expiry. Logged as an expiry change, as [`Db::expire`] is.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put_with_ttl("k", "v", Duration::from_secs(60))?;
    /// assert!(db.persist("k")?);
    /// assert_eq!(db.ttl("k")?, cairn::Ttl::Persistent);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn persist(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        self.core().persist(key.as_ref())
    }

    /// The remaining time-to-live of `key`: [`Ttl::Missing`],
    /// [`Ttl::Persistent`] or [`Ttl::Expires`].
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.ttl("k")?, cairn::Ttl::Missing);
    /// db.put_with_ttl("k", "v", Duration::from_secs(60))?;
    /// assert!(matches!(db.ttl("k")?, cairn::Ttl::Expires(d) if d <= Duration::from_secs(60)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Db::close`].
    pub fn ttl(&self, key: impl AsRef<[u8]>) -> Result<Ttl> {
        self.core().ttl(key.as_ref())
    }

    /// Stores `value` only if `key` is absent (Redis `SET NX`), with an
    /// optional time-to-live. Returns whether it was stored. Useful for
    /// locks and idempotency keys.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert!(db.put_if_absent("lock", "me", Some(Duration::from_secs(30)))?);
    /// assert!(!db.put_if_absent("lock", "you", None)?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put_with_ttl`].
    pub fn put_if_absent(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.core().put_if_absent(key.as_ref(), value.as_ref(), ttl)
    }

    /// Atomically replaces the value of `key` if it currently equals
    /// `expected` (`None`: the key is absent). `new` of `None` deletes the
    /// key. A value written this way has no expiry, as with [`Db::put`].
    ///
    /// Returns `Ok(Ok(()))` on success and `Ok(Err(conflict))`, holding the
    /// current value, when it did not match.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert!(db.compare_and_swap("k", None, Some(b"1"))?.is_ok());
    /// let conflict = db.compare_and_swap("k", None, Some(b"2"))?.unwrap_err();
    /// assert_eq!(conflict.current, Some(b"1".to_vec()));
    /// assert!(db.compare_and_swap("k", Some(b"1"), None)?.is_ok());
    /// assert_eq!(db.get("k")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put`].
    pub fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<std::result::Result<(), CasConflict>> {
        self.core().compare_and_swap(key.as_ref(), expected, new)
    }

    /// Applies every operation of `batch`, or none of them, also across a
    /// crash. With [`SyncPolicy::Always`](crate::SyncPolicy::Always) the
    /// whole batch costs one fsync.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.write_batch(cairn::Batch::new().put("a", "1").put("b", "2"))?;
    /// assert_eq!(db.len()?, 2);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::put_with_ttl`]; a key or value over the limit in any
    /// operation fails the whole batch before anything is written, and so
    /// does a batch of more than 2 GiB of records
    /// ([`Error::InvalidOptions`](crate::Error::InvalidOptions)).
    pub fn write_batch(&self, batch: Batch) -> Result<()> {
        self.core().write_batch(&batch)
    }

    /// Iterates over the live keys starting with `prefix`, in byte order,
    /// skipping expired keys. The key set is taken when the scan starts; each
    /// value is read when the iterator reaches it, so a key deleted in
    /// between is skipped and an updated key shows its newer value.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("user:2", "b")?;
    /// db.put("user:1", "a")?;
    /// db.put("order:1", "x")?;
    /// let users: Vec<_> = db.scan_prefix("user:").collect::<Result<_, _>>()?;
    /// assert_eq!(users, vec![(b"user:1".to_vec(), b"a".to_vec()), (b"user:2".to_vec(), b"b".to_vec())]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn scan_prefix(&self, prefix: impl AsRef<[u8]>) -> ScanPrefix {
        ScanPrefix::new(self.0.core.clone(), prefix.as_ref())
    }

    /// Number of live (present, unexpired) keys.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// assert_eq!(db.len()?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Db::close`].
    pub fn len(&self) -> Result<usize> {
        Ok(usize::try_from(self.core().len()?).unwrap_or(usize::MAX))
    }

    /// Whether the store holds no live key.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert!(db.is_empty()?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Closed`](crate::Error::Closed) after [`Db::close`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Makes everything written so far durable (one fdatasync, shared with
    /// concurrent writers).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().sync_policy(cairn::SyncPolicy::Never).open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.sync()?; // now it survives a power loss
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the fsync fails (the handle is then
    /// poisoned; the fsync is never retried), [`Error::Poisoned`](crate::Error::Poisoned)
    /// after an earlier failure.
    pub fn sync(&self) -> Result<()> {
        self.core().sync()
    }

    /// A snapshot of the store's counters.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.put("k", "w")?;
    /// let s = db.stats();
    /// assert_eq!(s.live_keys, 1);
    /// assert!(s.dead_bytes > 0);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.core().stats()
    }

    /// What recovery found and did when this store was opened: segments
    /// loaded from hints or scanned, a torn tail cut off, an uncommitted
    /// batch discarded, and (in salvage mode) damaged ranges skipped.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert!(db.recovery_report().skipped.is_empty());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.0.core.report
    }

    /// The directory this store lives in.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.path(), dir.path());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.0.core.dir
    }

    /// Makes everything durable, stops the background thread and releases
    /// the directory lock. Every clone of this handle then returns
    /// [`Error::Closed`](crate::Error::Closed). Dropping the last clone does
    /// the same implicitly; `close` lets you see the error.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.close()?;
    /// let again = cairn::Db::open(dir.path())?; // the lock is free again
    /// assert_eq!(again.get("k")?, Some(b"v".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) if the final fsync fails,
    /// [`Error::Poisoned`](crate::Error::Poisoned) if an earlier write failed.
    pub fn close(&self) -> Result<()> {
        crate::engine::txn::check_not_inside()?;
        let keyspaces: Vec<Db> = lock(&self.0.keyspaces).values().cloned().collect();
        let mut first_error = None;
        for ks in keyspaces {
            if let Err(e) = ks.close() {
                first_error.get_or_insert(e);
            }
        }
        self.0.stop_threads();
        let r = self.core().close();
        match first_error {
            Some(e) => Err(e),
            None => r,
        }
    }

    /// Rewrites the live records of every sealed segment into new segments
    /// and deletes the old ones, reclaiming the space of overwritten,
    /// deleted and expired records. Reads and writes go on meanwhile; a key
    /// written during the compaction keeps its newest value. Safe against a
    /// crash at any point: the store then holds exactly what it held before
    /// or after. Automatic compaction ([`Options::auto_compact`]) does the
    /// same for fragmented segments in the background.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new()
    ///     .max_segment_bytes(4096)
    ///     .auto_compact(false) // compaction only when asked
    ///     .open(dir.path())?;
    /// for i in 0..200 {
    ///     db.put("counter", i.to_string())?; // 199 dead versions
    /// }
    /// let stats = db.compact()?;
    /// assert!(stats.dropped_overwritten > 0);
    /// assert_eq!(db.get("counter")?, Some(b"199".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`](crate::Error::ReadOnly) on a read-only handle,
    /// [`Error::Corruption`](crate::Error::Corruption) if a segment to
    /// rewrite is damaged (nothing is changed then), and
    /// [`Error::Io`](crate::Error::Io).
    pub fn compact(&self) -> Result<crate::compaction::CompactionStats> {
        crate::engine::txn::check_not_inside()?;
        self.core().compact_all()
    }

    /// Compacts only the sealed segments `ids` (see [`Db::segment_stats`]);
    /// ids that are not sealed segments are ignored. Tombstones and expired
    /// records that may still hide an older version of their key in a
    /// segment left out are kept.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().max_segment_bytes(4096).auto_compact(false).open(dir.path())?;
    /// for i in 0..600 {
    ///     db.put("k", i.to_string())?;
    /// }
    /// let oldest: Vec<u32> = db.segment_stats().iter().filter(|s| !s.active).map(|s| s.id).take(2).collect();
    /// let stats = db.compact_segments(&oldest)?;
    /// assert_eq!(stats.segments_in, 2);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::compact`].
    pub fn compact_segments(&self, ids: &[u32]) -> Result<crate::compaction::CompactionStats> {
        crate::engine::txn::check_not_inside()?;
        let ids = ids.to_vec();
        self.core().compact_with(move |_, _| ids)
    }

    /// Seals the active segment now, as a write does when the segment
    /// reaches [`Options::max_segment_bytes`], and starts a new one, so that
    /// [`Db::compact`] (which never rewrites the active segment) can reclaim
    /// its dead records too. Returns `false`, and does nothing, when the
    /// active segment holds no record yet.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().auto_compact(false).open(dir.path())?;
    /// for i in 0..100 {
    ///     db.put("counter", i.to_string())?; // 99 dead versions
    /// }
    /// assert_eq!(db.compact()?.segments_in, 0); // all in the active segment
    /// assert!(db.seal_active_segment()?);
    /// let stats = db.compact()?;
    /// assert_eq!(stats.dropped_overwritten, 99);
    /// assert_eq!(db.get("counter")?, Some(b"99".to_vec()));
    /// assert!(!db.seal_active_segment()?); // the new one is still empty
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`](crate::Error::ReadOnly) on a read-only handle,
    /// [`Error::Io`](crate::Error::Io) if the fsync of the sealed segment or
    /// the creation of the new one fails (the handle is then poisoned, as
    /// for a failed write).
    pub fn seal_active_segment(&self) -> Result<bool> {
        self.core().seal_active()
    }

    /// Makes a consistent copy of this store, its keyspaces included, in
    /// `dest`, while the store keeps serving reads and writes (a hot
    /// backup). Sealed segments and hints become hard links to the store's
    /// own files (they never change; copies when `dest` is on another file
    /// system), the active segment is copied up to its last complete
    /// record, and everything is fsynced. Compaction waits until the copy
    /// is done.
    ///
    /// The copy holds every write acknowledged before the call (under any
    /// sync policy: the bytes are read, not only what is durable), opens
    /// with strict recovery and passes [`verify`](crate::verify). `dest`
    /// must not exist or be an empty directory; it is created owner-only
    /// and holds a `BACKUP-INCOMPLETE` marker until the copy is complete
    /// and durable, so a backup cut short by a crash or an error never
    /// opens ([`Error::IncompleteBackup`](crate::Error::IncompleteBackup)).
    /// Restore by opening the copy, or by moving it into the store's place
    /// while the application is stopped. On a keyspace handle it backs up
    /// that keyspace alone, as a store of its own.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path().join("store"))?;
    /// db.put("k", "v")?;
    /// db.keyspace("sessions")?.put("s", "1")?;
    /// let report = db.backup_to(dir.path().join("backup-1"))?;
    /// assert_eq!(report.keyspaces, 1);
    /// db.put("k", "newer")?; // the store goes on; the backup does not change
    ///
    /// let copy = cairn::Db::open(dir.path().join("backup-1"))?;
    /// assert_eq!(copy.get("k")?, Some(b"v".to_vec()));
    /// assert_eq!(copy.keyspace("sessions")?.get("s")?, Some(b"1".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::BackupDestination`](crate::Error::BackupDestination) when
    /// `dest` exists and is not an empty directory, or lies inside the store
    /// (nothing is written); [`Error::Closed`](crate::Error::Closed),
    /// [`Error::Poisoned`](crate::Error::Poisoned),
    /// [`Error::NestedWrite`](crate::Error::NestedWrite) inside a
    /// transaction closure; [`Error::Io`](crate::Error::Io) when a file
    /// cannot be read or written (the destination then keeps its marker:
    /// delete it and try again).
    pub fn backup_to(&self, dest: impl AsRef<Path>) -> Result<crate::tools::backup::BackupReport> {
        crate::engine::txn::check_not_inside()?;
        self.core().check_open()?;
        let dest = dest.as_ref();
        let vfs = &*self.0.opts.vfs;
        crate::tools::backup::begin(vfs, self.path(), dest)?;
        let mut report = crate::tools::backup::BackupReport::default();
        self.backup_tree(dest, &mut report)?;
        crate::tools::backup::finish(vfs, dest)?;
        Ok(report)
    }

    /// [`Db::backup_to`] without the marker: this store, then each keyspace
    /// directory (through its open handle if this handle opened it,
    /// lock-free otherwise).
    fn backup_tree(
        &self,
        dest: &Path,
        report: &mut crate::tools::backup::BackupReport,
    ) -> Result<()> {
        use crate::format::names::KEYSPACES_DIR;
        self.core().backup_into(dest, report)?;
        let vfs = &*self.0.opts.vfs;
        let ks_src = self.path().join(KEYSPACES_DIR);
        let Ok(mut names) = vfs.list(&ks_src) else {
            return Ok(());
        };
        names.sort();
        let ks_dest = dest.join(KEYSPACES_DIR);
        crate::tools::backup::keyspaces_dir(vfs, &ks_dest)?;
        for name in names {
            let (from, to) = (ks_src.join(&name), ks_dest.join(&name));
            let open = lock(&self.0.keyspaces).get(&name).cloned();
            match open {
                Some(ks) if ks.core().check_open().is_ok() => ks.backup_tree(&to, report)?,
                _ if vfs.list(&from).is_ok() => {
                    crate::tools::backup::copy_store_tree(vfs, &from, &to, report)?;
                }
                _ => continue, // a file: not a keyspace
            }
            report.keyspaces += 1;
        }
        vfs.sync_dir(&ks_dest)?;
        Ok(())
    }

    /// Per-segment sizes and dead bytes, in id order.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let segs = db.segment_stats();
    /// assert_eq!(segs.len(), 1);
    /// assert!(segs[0].active);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn segment_stats(&self) -> Vec<crate::stats::SegmentStats> {
        self.core().segment_stats()
    }

    /// Every record (and damaged range) of segment `id`, as
    /// [`read_segment`](crate::read_segment) gives them, read through the
    /// file this handle holds open; `None` when the handle holds no segment
    /// `id` (see [`Db::segment_stats`]). On a snapshot, this reads the
    /// segments of its view even after the writer's compaction deleted
    /// their files.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("k", "v")?;
    /// let id = db.segment_stats()[0].id;
    /// let entries = db.read_segment(id).expect("held")?;
    /// assert!(matches!(&entries[0], cairn::SegmentEntry::Record { key, .. } if key == b"k"));
    /// assert!(db.read_segment(id + 1).is_none());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io), naming the file, when it cannot be
    /// read.
    pub fn read_segment(
        &self,
        id: u32,
    ) -> Option<Result<Vec<crate::tools::inspect::SegmentEntry>>> {
        self.core().read_segment(id)
    }

    /// Removes expired keys now, instead of waiting for the background
    /// sweep. Returns how many were removed. Expired keys are invisible
    /// either way; this frees their memory sooner and, on a writable handle,
    /// logs their expirations: one tombstone flagged expired
    /// (`SegmentEntry::Record::expired`) per key, several per write, without
    /// waiting for an fsync. A key written again since it expired is left
    /// alone. A read-only handle only frees the memory. Keys that expired
    /// while the store was closed are removed (and logged) by the first
    /// sweep after a writable open.
    ///
    /// A failure to write the tombstones poisons the handle, as any failed
    /// write does; this returns what was removed before it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.sweep_expired(), 0);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn sweep_expired(&self) -> u64 {
        self.core().sweep_expired()
    }

    /// The store's committed changes in order, from `from` on: see
    /// [`cairn::feed`](crate::feed).
    ///
    /// On a handle that writes, the feed follows this process's writes as
    /// they are committed. On a snapshot handle
    /// ([`Options::snapshot`](crate::Options::snapshot)) it follows the
    /// files of a store another process has open. A feed never makes a
    /// writer wait.
    ///
    /// ```
    /// use cairn::feed::{ChangeKind, FeedStart};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// let mut feed = db.changes(FeedStart::Now)?;
    /// db.write_batch(cairn::Batch::new().put("b", "2").delete("a"))?;
    /// let kinds: Vec<ChangeKind> = (0..4)
    ///     .map(|_| feed.try_next().map(|c| c.expect("a change").kind))
    ///     .collect::<cairn::Result<_>>()?;
    /// assert_eq!(kinds[0], ChangeKind::BatchBegin { ops: 2 });
    /// assert_eq!(kinds[2], ChangeKind::Delete { key: b"a".to_vec() });
    /// assert_eq!(kinds[3], ChangeKind::BatchEnd { ops: 2 });
    ///
    /// // Resume later from a saved position.
    /// let saved = feed.resume_position();
    /// db.put("c", "3")?;
    /// let mut again = db.changes(FeedStart::After(saved))?;
    /// assert_eq!(again.try_next()?.and_then(|c| c.key().map(<[u8]>::to_vec)), Some(b"c".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ChangesLost`](crate::Error::ChangesLost) when the log no
    /// longer holds the changes right after the position (compaction
    /// removed them) or the position is not in this store's history;
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a
    /// position inside a batch; [`Error::Closed`](crate::Error::Closed);
    /// I/O errors and [`Error::Corruption`](crate::Error::Corruption) from
    /// reading the log.
    pub fn changes(&self, from: crate::feed::FeedStart) -> Result<crate::feed::Changes> {
        let core = self.core();
        core.check_open()?;
        let signal = (!core.opts.read_only).then(|| core.feed.clone());
        crate::feed::Changes::open(&core.dir, core.opts.vfs.clone(), signal, from)
    }

    /// A consistent snapshot of the store and every change after it: the
    /// way to build a copy, or to start again after
    /// [`Error::ChangesLost`](crate::Error::ChangesLost).
    ///
    /// The snapshot is a read-only handle on the store as of one moment
    /// (see [`Options::snapshot`](crate::Options::snapshot)); the feed
    /// starts right after the last change it holds, so applying the
    /// snapshot and then the feed's changes gives exactly the store.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use std::time::Duration;
    /// use cairn::feed::ChangeKind;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// let (snapshot, mut feed) = db.snapshot_then_changes()?;
    /// db.put("b", "2")?;
    /// let mut copy = BTreeMap::new();
    /// for kv in snapshot.scan_prefix("") {
    ///     let (k, v) = kv?;
    ///     copy.insert(k, v);
    /// }
    /// while let Some(c) = feed.next_timeout(Duration::from_millis(10))? {
    ///     if let ChangeKind::Put { key, value, .. } = c.kind {
    ///         copy.insert(key, value);
    ///     }
    /// }
    /// assert_eq!(copy.len(), 2);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The errors of opening a snapshot ([`Options::open`](crate::Options::open))
    /// and of [`Db::changes`].
    pub fn snapshot_then_changes(&self) -> Result<(Db, crate::feed::Changes)> {
        let core = self.core();
        core.check_open()?;
        let snapshot = if core.opts.snapshot {
            self.clone()
        } else {
            core.opts
                .clone()
                .snapshot(true)
                // Beside this handle, whose reads keep the pages warm: a
                // second read of the whole log would only compete with it.
                .warm_up_after_open(false)
                .open(&core.dir)?
        };
        let seq = snapshot.core().feed.end().seq;
        let feed = self.changes(crate::feed::FeedStart::After(
            crate::feed::Position::unchecked(seq),
        ))?;
        Ok((snapshot, feed))
    }

    /// The changes to keys under `prefix`, from now on: for consumers in
    /// this process, such as a cache in front of the store or a hook on
    /// session revocations. See [`Db::changes`] for the whole feed.
    ///
    /// ```
    /// use std::time::Duration;
    /// use cairn::feed::ChangeKind;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let mut revoked = db.watch("session/")?;
    /// db.put("session/1", "ada")?;
    /// db.delete("session/1")?;
    /// revoked.next_timeout(Duration::from_secs(5))?; // the put
    /// let c = revoked.next_timeout(Duration::from_secs(5))?.expect("a change");
    /// assert_eq!(c.kind, ChangeKind::Delete { key: b"session/1".to_vec() });
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Db::changes`].
    pub fn watch(&self, prefix: impl AsRef<[u8]>) -> Result<crate::feed::Watch> {
        let changes = self.changes(crate::feed::FeedStart::Now)?;
        Ok(crate::feed::Watch::new(changes, prefix.as_ref().to_vec()))
    }

    /// Runs `f` as one atomic read-modify-write: while it runs no other
    /// write reaches the store, its reads see the store plus its own
    /// writes, and its writes are applied together as one batch when it
    /// returns `Ok` (and discarded when it returns `Err`). The call returns
    /// once the writes are as durable as the [`SyncPolicy`](crate::SyncPolicy)
    /// says, like any write.
    ///
    /// The closure holds the store's write lock: keep it short, and do no
    /// I/O of your own inside it. Reads through the `Db` are allowed, but a
    /// write, `close`, `compact` or cache read-through call through any
    /// `Db` from inside the closure fails with
    /// [`Error::NestedWrite`](crate::Error::NestedWrite) instead of
    /// deadlocking.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("alice", "100")?;
    /// // Move 30 from alice to bob, atomically.
    /// let moved = db.transaction(|tx| {
    ///     let parse = |v: Option<Vec<u8>>| -> i64 {
    ///         v.and_then(|v| String::from_utf8(v).ok()?.parse().ok()).unwrap_or(0)
    ///     };
    ///     let (a, b) = (parse(tx.get("alice")?), parse(tx.get("bob")?));
    ///     if a < 30 {
    ///         return Ok(false);
    ///     }
    ///     tx.put("alice", (a - 30).to_string());
    ///     tx.put("bob", (b + 30).to_string());
    ///     Ok(true)
    /// })?;
    /// assert!(moved);
    /// assert_eq!(db.get("bob")?, Some(b"30".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// Whatever `f` returns, then the errors of [`Db::write_batch`];
    /// [`Error::NestedWrite`](crate::Error::NestedWrite) when called from
    /// inside another transaction's closure.
    pub fn transaction<R>(
        &self,
        f: impl FnOnce(&mut crate::engine::txn::Txn<'_>) -> Result<R>,
    ) -> Result<R> {
        self.core().transact(f)
    }

    /// Deletes every key of this store (not of its keyspaces), as one
    /// atomic batch. It costs a scan of the index and one tombstone per
    /// key; the space comes back at the next compaction.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// db.put("b", "2")?;
    /// assert_eq!(db.clear()?, 2);
    /// assert!(db.is_empty()?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::write_batch`].
    pub fn clear(&self) -> Result<u64> {
        self.delete_prefix(b"")
    }

    /// Deletes every live key that starts with `prefix`, as one atomic
    /// batch, and returns how many there were. Like
    /// [`Db::scan_prefix`], it walks the whole index.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("user:1", "a")?;
    /// db.put("user:2", "b")?;
    /// db.put("team:1", "c")?;
    /// assert_eq!(db.delete_prefix("user:")?, 2);
    /// assert_eq!(db.len()?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::write_batch`].
    pub fn delete_prefix(&self, prefix: impl AsRef<[u8]>) -> Result<u64> {
        let prefix = prefix.as_ref();
        self.transaction(|tx| {
            let mut keys = Vec::new();
            self.for_each_live_key(prefix, |k, _, _| keys.push(k.to_vec()))?;
            for k in &keys {
                tx.delete(k);
            }
            Ok(keys.len() as u64)
        })
    }
}

impl Options {
    /// Opens (or creates) the store in `path` with these options.
    ///
    /// # Errors
    /// [`Error::Locked`](crate::Error::Locked) if another handle holds the directory,
    /// [`Error::Corruption`](crate::Error::Corruption) if a data file is damaged in a way a crash
    /// cannot explain (in [`RecoveryMode::Strict`](crate::RecoveryMode::Strict)),
    /// [`Error::InvalidOptions`](crate::Error::InvalidOptions) for out-of-range options,
    /// [`Error::NotAStore`](crate::Error::NotAStore) for a directory that holds
    /// other files and none of cairn's (see
    /// [`Options::create_in_non_empty_dir`]), and
    /// [`Error::Io`](crate::Error::Io) for operating-system errors.
    pub fn open(self, path: impl AsRef<Path>) -> Result<Db> {
        self.validate()?;
        Db::open_with(path.as_ref(), self)
    }
}

/// The facade cairn's modules (`cache`, `session`, `limits`) use beyond
/// the public API. They never reach the engine itself: what they need is
/// here, so that another backend can offer the same.
impl Db {
    /// The store clock's reading (Unix ms), as expiries see it.
    pub(crate) fn now_ms(&self) -> u64 {
        self.core().now_ms()
    }

    /// The live value of `key` and its expiry (Unix ms, 0 for none), as a
    /// transaction reads it; a caller with an earlier clock reading of its
    /// own also compares the expiry with it. Takes no lock a writer holds.
    pub(crate) fn read_entry(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        self.core().read_live(key)
    }

    /// [`Error::Closed`](crate::error::Error::Closed) after [`Db::close`].
    pub(crate) fn check_open(&self) -> Result<()> {
        self.core().check_open()
    }

    /// Calls `f` with each live key starting with `prefix`, its value
    /// length and its expiry (Unix ms, 0 for none), without reading values.
    pub(crate) fn for_each_live_key(
        &self,
        prefix: &[u8],
        f: impl FnMut(&[u8], u32, u64),
    ) -> Result<()> {
        self.core().for_each_live_key(prefix, f)
    }

    /// Whether every write waits for an fsync (`SyncPolicy::Always`).
    pub(crate) fn syncs_every_write(&self) -> bool {
        matches!(self.0.opts.sync_policy, crate::options::SyncPolicy::Always)
    }

    /// Whether this handle was opened read-only (or as a snapshot).
    pub(crate) fn is_read_only(&self) -> bool {
        self.0.opts.read_only
    }

    /// Refuses a write from inside a transaction closure on this thread
    /// ([`Error::NestedWrite`](crate::Error::NestedWrite)).
    pub(crate) fn check_not_in_transaction() -> Result<()> {
        crate::engine::txn::check_not_inside()
    }
}

#[cfg(feature = "serde")]
impl Db {
    /// Stores a typed value, encoded with postcard.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put_typed("point", &(1i32, 2i32))?;
    /// assert_eq!(db.get_typed::<(i32, i32)>("point")?, Some((1, 2)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Serde`](crate::Error::Serde) if encoding fails, and the errors of [`Db::put`].
    pub fn put_typed<T: serde::Serialize + ?Sized>(
        &self,
        key: impl AsRef<[u8]>,
        value: &T,
    ) -> Result<()> {
        let bytes = postcard::to_stdvec(value)?;
        self.put(key, bytes)
    }

    /// Reads a typed value stored with [`Db::put_typed`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// assert_eq!(db.get_typed::<u64>("missing")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Serde`](crate::Error::Serde) if the bytes do not decode as
    /// `T`, and the errors of [`Db::get`].
    pub fn get_typed<T: serde::de::DeserializeOwned>(
        &self,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>> {
        match self.get(key)? {
            Some(b) => Ok(Some(postcard::from_bytes(&b)?)),
            None => Ok(None),
        }
    }
}

/// Compaction against a record the index keeps cut to its expiry limit:
/// through the whole handle, so it lives here (compaction is a layer below).
#[cfg(test)]
mod compaction_tests {
    use std::time::Duration;

    use super::Db;
    use crate::index::keydir::MAX_EXPIRY_MS;
    use crate::options::Options;
    use crate::types::Ttl;
    use crate::util::clock::ManualClock;

    /// A record whose expiry is past what a slot keeps (written before
    /// that limit existed, or by a module's saturating arithmetic through
    /// the raw path) is served, compacted (the index's expiry is the
    /// record's, cut to the limit: not a disagreement) and reopened.
    #[test]
    fn a_record_expiring_past_the_slots_limit_is_kept_and_compacted() {
        let t = tempfile::tempdir().expect("tempdir");
        let now = 1_764_900_000_000;
        let opts = Options::new()
            .clock(ManualClock::new(now))
            .auto_compact(false);
        let db = opts.clone().open(t.path()).expect("open");
        db.transaction(|tx| {
            tx.put_raw_expiring_at(b"far", b"v".to_vec(), u64::MAX);
            Ok(())
        })
        .expect("write");
        let check = |db: &Db| {
            assert_eq!(db.get("far").expect("get").as_deref(), Some(&b"v"[..]));
            assert_eq!(
                db.ttl("far").expect("ttl"),
                Ttl::Expires(Duration::from_millis(MAX_EXPIRY_MS - now))
            );
        };
        check(&db);
        db.put("other", "1").expect("put");
        db.put("other", "2").expect("put");
        db.seal_active_segment().expect("seal");
        db.compact()
            .expect("compaction takes the record as the index has it");
        check(&db);
        drop(db);
        let db = opts.open(t.path()).expect("reopen");
        check(&db);
    }
}
