//! Stores for the tests: a [`Fixture`] on the embedded backend, and one
//! on [`RemoteLike`], an embedded store dressed as a remote one that
//! holds the store to the contract a real remote backend enforces.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn::backend::{Backend, Key, Snapshot, Store, Update};

/// A store for one test, and what keeps it alive.
pub struct Fixture {
    /// The store, with no keys in it.
    pub store: Store,
    /// Dropped when the test is over.
    pub _keep: Box<dyn std::any::Any>,
}

/// An embedded store in a keyspace of a new temporary directory.
pub fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = cairn::Db::open(dir.path()).expect("open");
    Fixture {
        store: Store::from(db.keyspace("sessions").expect("keyspace")),
        _keep: Box::new(dir),
    }
}

/// A [`RemoteLike`] store on a new temporary directory.
pub fn remote_like() -> Fixture {
    let f = embedded();
    Fixture {
        store: Store::new(RemoteLike::new(f.store)),
        _keep: f._keep,
    }
}

/// How many keys `store` holds: the sessions stored.
pub fn stored(store: &Store) -> usize {
    let mut n = 0;
    store.scan(b"", |_, _, _| n += 1).expect("scan");
    n
}

/// An embedded store that behaves as a remote backend may, and checks
/// what a remote backend needs:
/// - it says it is remote and has no `Db`;
/// - it refuses an operation on several keys that do not share a tag
///   (a cluster could not run it atomically);
/// - it runs every update's function twice, dropping the first run's
///   changes, as an optimistic backend does after a conflict;
/// - it panics if called on the thread that made it: in a
///   `#[tokio::test]` (a current-thread runtime) that is the runtime's one
///   worker, which a call waiting on the network would stall.
#[derive(Debug)]
pub struct RemoteLike {
    inner: Store,
    async_thread: std::thread::ThreadId,
    /// Updates run.
    pub updates: Arc<AtomicU64>,
    /// Reads run.
    pub reads: Arc<AtomicU64>,
}

impl RemoteLike {
    /// `inner` dressed as remote.
    pub fn new(inner: Store) -> RemoteLike {
        RemoteLike {
            inner,
            async_thread: std::thread::current().id(),
            updates: Arc::default(),
            reads: Arc::default(),
        }
    }

    fn check(&self, keys: &[Key]) -> cairn::Result<()> {
        assert_ne!(
            std::thread::current().id(),
            self.async_thread,
            "a remote call on the runtime's thread"
        );
        if keys.len() > 1
            && keys
                .iter()
                .any(|k| k.tag().is_none() || k.tag() != keys[0].tag())
        {
            return Err(cairn::Error::InvalidArgument(format!(
                "keys {keys:?} do not share a tag"
            )));
        }
        // As cairn's RESP backend: an untagged name starting with `{`
        // would read back as a hash tag, and is refused.
        if let Some(k) = keys
            .iter()
            .find(|k| k.tag().is_none() && k.name().first() == Some(&b'{'))
        {
            return Err(cairn::Error::InvalidArgument(format!(
                "key {k:?}: an untagged name may not start with '{{' on a Redis-protocol server"
            )));
        }
        keys.iter().try_for_each(Key::check_tag)
    }
}

impl Backend for RemoteLike {
    fn read(&self, keys: &[Key]) -> cairn::Result<Snapshot> {
        self.check(keys)?;
        self.reads.fetch_add(1, Ordering::Relaxed);
        self.inner.backend().read(keys)
    }

    fn update(
        &self,
        keys: &[Key],
        f: &mut dyn FnMut(&mut Update) -> cairn::Result<()>,
    ) -> cairn::Result<()> {
        self.check(keys)?;
        self.updates.fetch_add(1, Ordering::Relaxed);
        // The try that lost to a conflict: its changes are dropped.
        let mut lost = Update::new(self.inner.backend().read(keys)?);
        f(&mut lost)?;
        self.inner.backend().update(keys, f)
    }

    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> cairn::Result<()> {
        self.inner.backend().scan(prefix, f)
    }

    fn is_remote(&self) -> bool {
        true
    }
}
