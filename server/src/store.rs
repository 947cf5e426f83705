//! The data behind the server: Redis's 16 databases as the keyspaces
//! `db0` … `db15` of one cairn store, the views commands read and write
//! them through, WATCH's versions, and the group-commit syncer.
//!
//! A write command runs inside [`cairn::Db::transaction`] with its fsync
//! deferred ([`cairn::Txn::defer_sync`]). Under `--sync always` the
//! connection then asks the [`Syncer`] for durability before it sends its
//! replies: one thread runs one [`cairn::Db::sync`] for every connection
//! waiting, while the runtime goes on parsing and appending the next
//! writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use cairn::{Db, Txn};

/// How many databases SELECT accepts (Redis's `databases`).
pub const DATABASES: usize = 16;

/// The root store and its 16 databases, each opened on first use.
pub struct Store {
    root: Db,
    dbs: [OnceLock<Db>; DATABASES],
    open_lock: Mutex<()>,
    /// WATCH's versions of watched keys.
    pub watch: WatchTable,
    /// Per database: write transactions begun, counted before they append.
    begun: [AtomicU64; DATABASES],
    /// Per database: write transactions finished (committed or not).
    finished: [AtomicU64; DATABASES],
    /// Per database: the `finished` count a completed sync covered.
    synced: [AtomicU64; DATABASES],
    /// Set when a write or an fsync failed (INFO's
    /// `aof_last_write_status:err`): the store is poisoned from then on.
    pub write_failed: AtomicBool,
    /// BGSAVE and BGREWRITEAOF's background compaction.
    pub bgsave: BgSave,
}

/// The state of the background compaction BGSAVE and BGREWRITEAOF start
/// (INFO persistence, LASTSAVE).
#[derive(Debug, Default)]
pub struct BgSave {
    /// Whether it runs now.
    pub running: AtomicBool,
    /// Whether the last one failed.
    pub failed: AtomicBool,
    /// Unix seconds when the last successful one finished (0: none yet).
    pub finished_unix_secs: AtomicU64,
}

impl Store {
    /// The store over `root`, whose keyspaces `db0` … `db15` are the
    /// databases.
    pub fn new(root: Db) -> Store {
        Store {
            root,
            dbs: std::array::from_fn(|_| OnceLock::new()),
            open_lock: Mutex::new(()),
            watch: WatchTable::default(),
            begun: std::array::from_fn(|_| AtomicU64::new(0)),
            finished: std::array::from_fn(|_| AtomicU64::new(0)),
            synced: std::array::from_fn(|_| AtomicU64::new(0)),
            write_failed: AtomicBool::new(false),
            bgsave: BgSave::default(),
        }
    }

    /// The root store (which holds no keys of its own).
    pub fn root(&self) -> &Db {
        &self.root
    }

    /// Database `index` (0–15), opened or created on first use.
    ///
    /// # Errors
    /// The errors of opening the keyspace.
    pub fn db(&self, index: usize) -> Result<&Db, cairn::Error> {
        let cell = self
            .dbs
            .get(index)
            .ok_or_else(|| cairn::Error::InvalidOptions(format!("no database {index}")))?;
        if let Some(db) = cell.get() {
            return Ok(db);
        }
        let _guard = self.open_lock.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(db) = cell.get() {
            return Ok(db);
        }
        let db = self.root.keyspace(&format!("db{index}"))?;
        Ok(cell.get_or_init(|| db))
    }

    /// Runs `f` on a [`TxnOps`] view of a write transaction of database
    /// `index` with its fsync
    /// deferred (the connection waits for the [`Syncer`] instead), counted
    /// so that readers can tell whether what they read may not be durable
    /// yet ([`Store::may_be_unsynced`]).
    ///
    /// # Errors
    /// Those of opening the database and of [`cairn::Db::transaction`].
    pub fn write_txn<R>(
        &self,
        index: usize,
        f: impl FnOnce(&mut TxnOps<'_, '_>) -> Result<R, cairn::Error>,
    ) -> Result<R, cairn::Error> {
        let db = self.db(index)?;
        let i = index % DATABASES;
        // Counted before anything is appended: a reader that sees this
        // transaction's writes sees this count too.
        self.begun[i].fetch_add(1, Ordering::SeqCst);
        // Counted as finished however the transaction ends, a panic
        // included: otherwise the database would look unsynced for good.
        let _finished = Finished(&self.finished[i]);
        db.transaction(|tx| {
            tx.defer_sync();
            f(&mut TxnOps {
                tx,
                db,
                index,
                watch: &self.watch,
            })
        })
    }

    /// Whether database `index` may hold writes that are not durable yet:
    /// a write transaction began that no completed sync covers. A reader
    /// under `--sync always` that finds this waits for the group commit
    /// before it replies, so that, as in Redis, no client is shown a write
    /// before it is durable.
    pub fn may_be_unsynced(&self, index: usize) -> bool {
        let i = index % DATABASES;
        self.begun[i].load(Ordering::SeqCst) > self.synced[i].load(Ordering::SeqCst)
    }

    /// Database `index` if it has been opened, without creating it.
    pub fn opened(&self, index: usize) -> Option<&Db> {
        self.dbs.get(index).and_then(OnceLock::get)
    }

    /// Opens every database that exists on disk, so that INFO keyspace,
    /// FLUSHALL and the syncer see them.
    ///
    /// # Errors
    /// The errors of listing or opening the keyspaces.
    pub fn open_existing(&self) -> Result<(), cairn::Error> {
        for name in self.root.keyspace_names()? {
            if let Some(i) = name
                .strip_prefix("db")
                .and_then(|n| n.parse::<usize>().ok())
            {
                if i < DATABASES && name == format!("db{i}") {
                    self.db(i)?;
                }
            }
        }
        Ok(())
    }

    /// Closes every open database and the root store: everything durable,
    /// the lock released.
    ///
    /// # Errors
    /// The first error of closing.
    pub fn close(&self) -> Result<(), cairn::Error> {
        let mut first = None;
        for db in self.dbs.iter().filter_map(OnceLock::get) {
            if let Err(e) = db.close() {
                first.get_or_insert(e);
            }
        }
        if let Err(e) = self.root.close() {
            first.get_or_insert(e);
        }
        first.map_or(Ok(()), Err)
    }
}

/// Counts a write transaction as finished when dropped.
struct Finished<'a>(&'a AtomicU64);

impl Drop for Finished<'_> {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A key's value and its absolute expiry (Unix ms, `None`: never).
pub type Entry = (Vec<u8>, Option<u64>);

/// What a command reads and writes a database through: the database
/// itself for a read outside MULTI, a transaction for a write and for
/// every command of an EXEC.
pub trait Ops {
    /// The current time in Unix milliseconds (a transaction's start).
    fn now_ms(&self) -> u64;
    /// The live value and expiry of `key`.
    ///
    /// # Errors
    /// cairn's read errors.
    fn get(&mut self, key: &[u8]) -> Result<Option<Entry>, cairn::Error>;
    /// Whether `key` is live.
    ///
    /// # Errors
    /// cairn's read errors.
    fn exists(&mut self, key: &[u8]) -> Result<bool, cairn::Error> {
        Ok(self.get(key)?.is_some())
    }
    /// Writes `value` under `key` expiring at `expires_at_ms`; an expiry
    /// that is not after [`Ops::now_ms`] deletes the key instead, as Redis
    /// does for `SET … PXAT <past>`.
    ///
    /// # Errors
    /// [`cairn::Error::ReadOnly`] through a read-only view.
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), cairn::Error>;
    /// Deletes `key`.
    ///
    /// # Errors
    /// [`cairn::Error::ReadOnly`] through a read-only view.
    fn delete(&mut self, key: &[u8]) -> Result<(), cairn::Error>;
    /// The database underneath, for whole-index walks (KEYS, SCAN, DBSIZE,
    /// RANDOMKEY). Inside a transaction it does not see the transaction's
    /// own pending writes.
    fn db(&self) -> &Db;
    /// The keys this view has written but not yet committed (a
    /// transaction's pending writes), which [`Ops::db`]'s walks do not
    /// see; FLUSHDB deletes them too.
    fn pending_keys(&self) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// A key longer than cairn stores cannot exist: a read of one finds
/// nothing, as a read of any missing key does in Redis (which has no such
/// limit), instead of failing the command (and, in a pipeline group or
/// EXEC, leaving the writes before it).
fn missing_if_too_long<T>(
    key: &[u8],
    read: impl FnOnce(&[u8]) -> Result<Option<T>, cairn::Error>,
) -> Result<Option<T>, cairn::Error> {
    if key.len() > cairn::MAX_KEY_BYTES as usize {
        return Ok(None);
    }
    read(key)
}

/// Reads straight from a database (read-only commands outside MULTI).
pub struct DbOps<'a> {
    /// The database.
    pub db: &'a Db,
}

impl Ops for DbOps<'_> {
    fn now_ms(&self) -> u64 {
        unix_ms()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Entry>, cairn::Error> {
        missing_if_too_long(key, |k| self.db.get_with_expiry(k))
    }
    fn exists(&mut self, key: &[u8]) -> Result<bool, cairn::Error> {
        Ok(
            missing_if_too_long(key, |k| self.db.contains_key(k).map(|b| b.then_some(())))?
                .is_some(),
        )
    }
    fn put(&mut self, _: &[u8], _: &[u8], _: Option<u64>) -> Result<(), cairn::Error> {
        Err(cairn::Error::ReadOnly)
    }
    fn delete(&mut self, _: &[u8]) -> Result<(), cairn::Error> {
        Err(cairn::Error::ReadOnly)
    }
    fn db(&self) -> &Db {
        self.db
    }
}

/// Reads and writes inside a transaction; every write bumps WATCH's
/// version of its key while the transaction holds the writer lock.
pub struct TxnOps<'a, 'b> {
    /// The transaction.
    pub tx: &'a mut Txn<'b>,
    /// The database the transaction runs on.
    pub db: &'a Db,
    /// Its index.
    pub index: usize,
    /// WATCH's versions.
    pub watch: &'a WatchTable,
}

impl Ops for TxnOps<'_, '_> {
    fn now_ms(&self) -> u64 {
        self.tx.now_unix_ms()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Entry>, cairn::Error> {
        missing_if_too_long(key, |k| self.tx.get_with_expiry(k))
    }
    fn put(
        &mut self,
        key: &[u8],
        value: &[u8],
        expires_at_ms: Option<u64>,
    ) -> Result<(), cairn::Error> {
        self.watch.touch(self.index, key);
        match expires_at_ms {
            Some(at) if at <= self.tx.now_unix_ms() => {
                self.tx.delete(key);
                Ok(())
            }
            // Redis takes expiries up to `i64::MAX` ms; cairn keeps them up
            // to the year 10889, which is as far from ever coming.
            _ => self.tx.put_expiring_at(
                key,
                value,
                expires_at_ms.map(|at| at.min(cairn::MAX_EXPIRY_MS)),
            ),
        }
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), cairn::Error> {
        self.watch.touch(self.index, key);
        self.tx.delete(key);
        Ok(())
    }
    fn db(&self) -> &Db {
        self.db
    }
    fn pending_keys(&self) -> Vec<Vec<u8>> {
        self.tx.written_keys().map(<[u8]>::to_vec).collect()
    }
}

/// The current time in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// WATCH's bookkeeping: a version per watched key, bumped by every write of
/// that key (inside the writer's transaction, so that an EXEC that checks
/// the versions inside its own transaction never misses a write).
#[derive(Default)]
pub struct WatchTable {
    /// How many keys are watched; 0 lets writes skip the lock.
    watched: AtomicUsize,
    keys: Mutex<HashMap<(usize, Vec<u8>), Watched>>,
}

#[derive(Default)]
struct Watched {
    version: u64,
    watchers: usize,
}

impl WatchTable {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<(usize, Vec<u8>), Watched>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts watching `key` of database `db`; returns its version now.
    pub fn watch(&self, db: usize, key: &[u8]) -> u64 {
        let mut map = self.map();
        let w = map.entry((db, key.to_vec())).or_default();
        if w.watchers == 0 {
            self.watched.fetch_add(1, Ordering::AcqRel);
        }
        w.watchers += 1;
        w.version
    }

    /// Stops one watch of `key` of database `db`.
    pub fn unwatch(&self, db: usize, key: &[u8]) {
        let mut map = self.map();
        let k = (db, key.to_vec());
        if let Some(w) = map.get_mut(&k) {
            w.watchers = w.watchers.saturating_sub(1);
            if w.watchers == 0 {
                map.remove(&k);
                self.watched.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// The version of a watched key (0 if nobody watches it).
    pub fn version(&self, db: usize, key: &[u8]) -> u64 {
        self.map().get(&(db, key.to_vec())).map_or(0, |w| w.version)
    }

    /// Records a write of `key` of database `db`.
    pub fn touch(&self, db: usize, key: &[u8]) {
        if self.watched.load(Ordering::Acquire) == 0 {
            return;
        }
        if let Some(w) = self.map().get_mut(&(db, key.to_vec())) {
            w.version += 1;
        }
    }
}

/// A request to the syncer: the databases to make durable (a bit each)
/// and where to say it is done.
type SyncRequest = (u32, tokio::sync::oneshot::Sender<Result<(), String>>);

/// Group commit for `--sync always`: one thread that fsyncs every database
/// some connection waits on, once for all the connections waiting, and
/// answers each on a oneshot, so that no runtime thread blocks on an fsync.
#[derive(Clone)]
pub struct Syncer {
    requests: mpsc::Sender<SyncRequest>,
    busy: Arc<AtomicUsize>,
}

/// The longest a round waits for busy connections to join it.
const MAX_GATHER: std::time::Duration = std::time::Duration::from_micros(500);

impl Syncer {
    /// Starts the syncer thread over `store`. It stops when every
    /// [`Syncer`] clone is dropped.
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(store: Arc<Store>) -> std::io::Result<Syncer> {
        let (tx, rx) = mpsc::channel::<SyncRequest>();
        let busy = Arc::new(AtomicUsize::new(0));
        let busy2 = busy.clone();
        std::thread::Builder::new()
            .name("cairn-syncer".into())
            .spawn(move || run_syncer(&store, &rx, &busy2))?;
        Ok(Syncer { requests: tx, busy })
    }

    /// Marks a connection as running commands it read (until the guard
    /// drops): a round of the group commit that starts meanwhile waits a
    /// little for it, so that one fsync covers more connections.
    pub fn busy(&self) -> BusyGuard {
        self.busy.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.busy.clone())
    }

    /// Waits until every write made so far to the databases in `mask` (bit
    /// `i` for database `i`) is durable.
    ///
    /// # Errors
    /// The text of a failed fsync; the store is then poisoned, and the
    /// caller must not acknowledge the writes.
    pub async fn sync(&self, mask: u32) -> Result<(), String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.requests.send((mask, tx)).is_err() {
            return Err("the syncer has stopped".into());
        }
        rx.await
            .unwrap_or_else(|_| Err("the syncer has stopped".into()))
    }
}

/// See [`Syncer::busy`].
pub struct BusyGuard(Arc<AtomicUsize>);

/// See [`Syncer::idle_while`].
pub struct IdleGuard(Arc<AtomicUsize>);

impl Drop for IdleGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

impl Syncer {
    /// Counts a busy connection as idle until the guard drops: while it
    /// waits for a mid-batch flush (its own group commit among them).
    pub fn idle_while(&self, busy: &BusyGuard) -> IdleGuard {
        busy.0.fetch_sub(1, Ordering::AcqRel);
        IdleGuard(busy.0.clone())
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn run_syncer(store: &Store, rx: &mpsc::Receiver<SyncRequest>, busy: &AtomicUsize) {
    // How long the last fsync took: a round waits at most that long (and
    // at most MAX_GATHER) for busy connections, as PostgreSQL's
    // commit_delay does, so that waiting never costs more than the fsync
    // it saves.
    let mut last_fsync = std::time::Duration::ZERO;
    while let Ok(first) = rx.recv() {
        let mut mask = first.0;
        let mut waiters = vec![first.1];
        let started = std::time::Instant::now();
        let gather = last_fsync.min(MAX_GATHER);
        loop {
            while let Ok((m, w)) = rx.try_recv() {
                mask |= m;
                waiters.push(w);
            }
            let waited = started.elapsed();
            if busy.load(Ordering::Acquire) == 0 || waited >= gather {
                break;
            }
            match rx.recv_timeout(gather - waited) {
                Ok((m, w)) => {
                    mask |= m;
                    waiters.push(w);
                }
                Err(_) => break,
            }
        }
        let fsync_started = std::time::Instant::now();
        let mut result = Ok(());
        for i in (0..DATABASES).filter(|i| mask & (1 << i) != 0) {
            if let Some(db) = store.opened(i) {
                // Every transaction finished by now has appended; the
                // sync below covers it.
                let finished = store.finished[i].load(Ordering::SeqCst);
                if let Err(e) = db.sync() {
                    log::error!("fsync of database {i} failed: {e}");
                    store.write_failed.store(true, Ordering::Release);
                    result = Err(format!("fsync of database {i} failed: {e}"));
                } else {
                    store.synced[i].fetch_max(finished, Ordering::SeqCst);
                }
            }
        }
        last_fsync = fsync_started.elapsed();
        for w in waiters {
            let _ = w.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = cairn::Db::open(dir.path()).expect("open");
        (dir, Store::new(root))
    }

    /// A write transaction that panics still counts as finished, so a sync
    /// round can bring the database back to "synced" (before, `finished`
    /// was skipped by the unwind and every later read waited for a sync).
    #[test]
    fn a_panicking_write_still_counts_as_finished() {
        let (_dir, store) = store();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = store.write_txn(0, |_| -> Result<(), cairn::Error> { panic!("handler") });
        }));
        assert!(r.is_err());
        assert_eq!(
            store.begun[0].load(Ordering::SeqCst),
            store.finished[0].load(Ordering::SeqCst)
        );
        // What the syncer does after a successful sync.
        let finished = store.finished[0].load(Ordering::SeqCst);
        store.synced[0].fetch_max(finished, Ordering::SeqCst);
        assert!(!store.may_be_unsynced(0));
    }

    #[test]
    fn a_write_is_unsynced_until_a_sync_covers_it() {
        let (_dir, store) = store();
        assert!(!store.may_be_unsynced(0));
        store
            .write_txn(0, |ops| ops.put(b"k", b"v", None))
            .expect("write");
        assert!(store.may_be_unsynced(0));
        assert!(!store.may_be_unsynced(1));
        let finished = store.finished[0].load(Ordering::SeqCst);
        store.db(0).expect("db").sync().expect("sync");
        store.synced[0].fetch_max(finished, Ordering::SeqCst);
        assert!(!store.may_be_unsynced(0));
    }
}
