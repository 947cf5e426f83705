//! The seam between cairn's modules and the store under them.
//!
//! [`session`](crate::session), [`cache`](crate::cache) and
//! [`limits`](crate::modules::limits) are written against one small trait,
//! [`Backend`], and never against the engine. Two backends implement it:
//!
//! - the embedded store: a [`Db`] (or a keyspace of one), through
//!   `From<Db> for Store`;
//! - a Redis-protocol server (Redis, Valkey, a Redis or Valkey Cluster, or
//!   `cairn serve`), through `RespBackend` behind the `redis` feature.
//!
//! So the same module code runs in one process, on one shared server and
//! on a cluster: moving between them is a change of the [`Store`] a module
//! is opened on.
//!
//! # The contract
//! A backend stores [`Entry`]s (a value and an optional absolute expiry in
//! Unix milliseconds) under [`Key`]s, and offers three operations:
//!
//! - [`Backend::read`]: a few keys, with the backend's clock reading; an
//!   expired entry is never returned. Atomic on a remote backend; on the
//!   embedded store each key is read on its own, without waiting for
//!   writers (see [`Backend::read`]).
//! - [`Backend::update`]: read a few keys, let a pure function decide the
//!   changes, and apply them **atomically**: no other writer's change to
//!   those keys lands between the read and the write. A backend may call
//!   the function more than once (an optimistic backend retries after a
//!   conflict); only the last call's changes are applied, and the module
//!   only keeps the last call's result.
//! - [`Backend::scan`]: every live key under a prefix, for the rare
//!   whole-store walks (a cache's capacity at open, prefix invalidation).
//!   Not atomic, and on a remote backend as costly as Redis's `SCAN`.
//!
//! Every key one operation touches must share its [`Key::tag`] (or have
//! none, for an operation on one key): a cluster backend keeps a tag's keys
//! in one hash slot, which is what makes a multi-key operation atomic
//! there. A backend that is not remote ([`Backend::is_remote`]) holds all
//! its keys in one process and ignores tags; the embedded store's updates
//! can also read keys their function discovers as it runs
//! ([`Update::read_more`]), so that an operation whose keys depend on what
//! it reads is still one update there. A third backend (another server,
//! another engine) implements these methods and nothing else;
//! `tests/modules_model.rs`, `tests/modules_concurrency.rs` and
//! `tests/resp_backend.rs` run the modules' suites and the contract
//! against each backend they know.

pub mod embedded;
#[cfg(feature = "redis")]
pub mod resp;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::db::Db;
use crate::error::{Error, Result};

/// A key of a module: its name, and optionally the tag that groups it with
/// the other keys of one operation (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    tag: Option<Vec<u8>>,
    name: Vec<u8>,
}

impl Key {
    /// A key with no tag, for operations on this key alone.
    ///
    /// ```
    /// let k = cairn::backend::Key::new(b"counter".to_vec());
    /// assert_eq!(k.name(), b"counter");
    /// assert!(k.tag().is_none());
    /// ```
    pub fn new(name: Vec<u8>) -> Key {
        Key { tag: None, name }
    }

    /// A key in group `tag`: the keys one operation touches together share
    /// a tag. A tag is at most 32 bytes of ASCII letters, digits, `:`, `-`
    /// or `_` (a backend refuses others with
    /// [`Error::InvalidArgument`]).
    ///
    /// ```
    /// let k = cairn::backend::Key::tagged(b"u42".to_vec(), b"session".to_vec());
    /// assert_eq!(k.tag(), Some(&b"u42"[..]));
    /// ```
    pub fn tagged(tag: Vec<u8>, name: Vec<u8>) -> Key {
        Key {
            tag: Some(tag),
            name,
        }
    }

    /// The key's name within its store.
    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// The key's group, if any.
    pub fn tag(&self) -> Option<&[u8]> {
        self.tag.as_deref()
    }

    /// Checks the tag's alphabet and length.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the tag.
    pub fn check_tag(&self) -> Result<()> {
        match &self.tag {
            Some(t)
                if t.is_empty()
                    || t.len() > 32
                    || !t
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_')) =>
            {
                Err(Error::InvalidArgument(format!(
                    "key tag {:?}: a tag is 1 to 32 ASCII letters, digits, ':', '-' or '_'",
                    String::from_utf8_lossy(t)
                )))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Key");
        if let Some(t) = &self.tag {
            d.field("tag", &String::from_utf8_lossy(t));
        }
        d.field("name", &String::from_utf8_lossy(&self.name))
            .finish()
    }
}

/// A stored value and its absolute expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The value.
    pub value: Vec<u8>,
    /// When it expires (Unix milliseconds), or `None` if it does not.
    pub expires_at_ms: Option<u64>,
}

/// What a [`Backend::read`] saw: the backend's clock and the entries of
/// the keys asked for, in their order (`None` for absent or expired).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The backend's clock when it read (Unix milliseconds).
    pub now_ms: u64,
    /// The live entries, one per key asked for.
    pub entries: Vec<Option<Entry>>,
}

/// One change an [`Update`] makes to one of its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Store `value`, expiring at `expires_at_ms` (none if `None`).
    Put {
        /// The new value.
        value: Vec<u8>,
        /// The new absolute expiry (Unix milliseconds).
        expires_at_ms: Option<u64>,
    },
    /// Remove the key.
    Delete,
}

/// How a backend that supports [`Update::read_more`] reads a key the
/// update's function names as it runs: the key's live entry at the
/// update's clock, read under the same exclusion as the update's own keys.
pub type ReadMore = Box<dyn FnMut(&Key) -> Result<Option<Entry>> + Send + Sync>;

/// The view an update's function works on: the entries of its keys as
/// read, and the changes it decides, addressed by the key's position in
/// the slice given to [`Backend::update`] (then, on a backend that
/// supports it, the keys [`Update::read_more`] added).
pub struct Update {
    now_ms: u64,
    entries: Vec<Option<Entry>>,
    changes: Vec<Option<Change>>,
    bad_index: Option<usize>,
    /// The reader of [`Update::read_more`], with the position of each key
    /// name the update has (to find a key named again).
    more: Option<(ReadMore, HashMap<Vec<u8>, usize>)>,
    /// The keys [`Update::read_more`] added, in their positions' order.
    more_keys: Vec<Key>,
}

impl fmt::Debug for Update {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Update")
            .field("now_ms", &self.now_ms)
            .field("entries", &self.entries)
            .field("changes", &self.changes)
            .field("bad_index", &self.bad_index)
            .field("reads_more", &self.more.is_some())
            .field("more_keys", &self.more_keys)
            .finish()
    }
}

impl Update {
    /// The view of `snapshot`, with no changes yet. Backends build it.
    ///
    /// ```
    /// use cairn::backend::{Snapshot, Update};
    /// let u = Update::new(Snapshot { now_ms: 5, entries: vec![None] });
    /// assert_eq!(u.now_ms(), 5);
    /// ```
    pub fn new(snapshot: Snapshot) -> Update {
        let n = snapshot.entries.len();
        Update {
            now_ms: snapshot.now_ms,
            entries: snapshot.entries,
            changes: vec![None; n],
            bad_index: None,
            more: None,
            more_keys: Vec::new(),
        }
    }

    /// Lets the function read keys it discovers as it runs
    /// ([`Update::read_more`]) through `reader`. Only a backend that holds
    /// its writers off for the whole update, so that a key read late is
    /// read as atomically as `keys` (the update's keys, in order), may
    /// offer it: the embedded store does, a remote store does not.
    ///
    /// ```
    /// use cairn::backend::{Key, Snapshot, Update};
    /// let mut u = Update::new(Snapshot { now_ms: 0, entries: vec![None] })
    ///     .with_read_more(&[Key::new(b"a".to_vec())], Box::new(|_| Ok(None)));
    /// assert!(u.can_read_more());
    /// assert_eq!(u.read_more(&Key::new(b"b".to_vec()))?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn with_read_more(mut self, keys: &[Key], reader: ReadMore) -> Update {
        let mut names = HashMap::with_capacity(keys.len());
        for (i, k) in keys.iter().enumerate() {
            names.entry(k.name().to_vec()).or_insert(i);
        }
        self.more = Some((reader, names));
        self
    }

    /// Whether [`Update::read_more`] works in this update: on the
    /// embedded store; never on a remote one, whose keys must all be
    /// known before the update starts.
    pub fn can_read_more(&self) -> bool {
        self.more.is_some()
    }

    /// Reads `key` too, as part of this update (as atomically as its own
    /// keys), and returns its position for [`Update::get`],
    /// [`Update::put`] and [`Update::delete`]. A key the update already
    /// has (by name) keeps its position. Tags are not checked: only a
    /// backend that ignores them offers this.
    ///
    /// ```
    /// use cairn::backend::{Entry, Key, Snapshot, Update};
    /// let e = Entry { value: b"v".to_vec(), expires_at_ms: None };
    /// let seen = e.clone();
    /// let a = Key::new(b"a".to_vec());
    /// let mut u = Update::new(Snapshot { now_ms: 0, entries: vec![None] })
    ///     .with_read_more(std::slice::from_ref(&a), Box::new(move |_| Ok(Some(seen.clone()))));
    /// assert_eq!(u.read_more(&a)?, 0);
    /// let i = u.read_more(&Key::new(b"b".to_vec()))?;
    /// assert_eq!((i, u.get(i)), (1, Some(&e)));
    /// u.delete(i);
    /// assert_eq!(u.more_keys(), [Key::new(b"b".to_vec())]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the backend does not offer it
    /// (see [`Update::can_read_more`]); the backend's read errors.
    pub fn read_more(&mut self, key: &Key) -> Result<usize> {
        let Some((reader, names)) = &mut self.more else {
            return Err(Error::InvalidArgument(format!(
                "update: this backend reads only the keys given to the update, not {key:?}"
            )));
        };
        if let Some(&i) = names.get(key.name()) {
            return Ok(i);
        }
        let entry = reader(key)?.filter(|e| e.expires_at_ms.is_none_or(|x| x > self.now_ms));
        let i = self.entries.len();
        names.insert(key.name().to_vec(), i);
        self.entries.push(entry);
        self.changes.push(None);
        self.more_keys.push(key.clone());
        Ok(i)
    }

    /// The keys [`Update::read_more`] added, in order: their positions
    /// follow the update's own keys.
    pub fn more_keys(&self) -> &[Key] {
        &self.more_keys
    }

    /// The backend's clock (Unix milliseconds) as the update started.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Key `i`'s entry as read (changes made by this update are not
    /// seen), or `None` if absent, expired or out of range.
    ///
    /// ```
    /// use cairn::backend::{Entry, Snapshot, Update};
    /// let e = Entry { value: b"v".to_vec(), expires_at_ms: None };
    /// let u = Update::new(Snapshot { now_ms: 0, entries: vec![Some(e.clone())] });
    /// assert_eq!(u.get(0), Some(&e));
    /// assert_eq!(u.get(1), None);
    /// ```
    pub fn get(&self, i: usize) -> Option<&Entry> {
        self.entries.get(i).and_then(Option::as_ref)
    }

    /// Stores `value` under key `i`, expiring at `expires_at_ms`. An
    /// expiry at or before [`Update::now_ms`] deletes the key instead.
    ///
    /// ```
    /// use cairn::backend::{Snapshot, Update};
    /// let mut u = Update::new(Snapshot { now_ms: 0, entries: vec![None] });
    /// u.put(0, b"v".to_vec(), Some(1_000));
    /// assert_eq!(u.changes().count(), 1);
    /// ```
    pub fn put(&mut self, i: usize, value: Vec<u8>, expires_at_ms: Option<u64>) {
        let change = match expires_at_ms {
            Some(e) if e <= self.now_ms => Change::Delete,
            _ => Change::Put {
                value,
                expires_at_ms,
            },
        };
        self.set(i, change);
    }

    /// Removes key `i`.
    ///
    /// ```
    /// use cairn::backend::{Change, Snapshot, Update};
    /// let mut u = Update::new(Snapshot { now_ms: 0, entries: vec![None] });
    /// u.delete(0);
    /// assert_eq!(u.changes().next(), Some((0, &Change::Delete)));
    /// ```
    pub fn delete(&mut self, i: usize) {
        self.set(i, Change::Delete);
    }

    fn set(&mut self, i: usize, change: Change) {
        match self.changes.get_mut(i) {
            Some(c) => *c = Some(change),
            None => self.bad_index = Some(i),
        }
    }

    /// The changes decided so far, by key position.
    pub fn changes(&self) -> impl Iterator<Item = (usize, &Change)> {
        self.changes
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (i, c)))
    }

    /// Whether the update changes nothing (a backend need not write).
    pub fn is_read_only(&self) -> bool {
        self.changes.iter().all(Option::is_none)
    }

    /// The entries as read (with those of [`Update::more_keys`] after the
    /// update's own), for an optimistic backend's check that they are
    /// unchanged before it writes.
    pub fn read_entries(&self) -> &[Option<Entry>] {
        &self.entries
    }

    /// The changes by key position, for the backend to apply.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the function addressed a key position
    /// outside the update's keys.
    pub fn into_changes(self) -> Result<Vec<Option<Change>>> {
        match self.bad_index {
            Some(i) => Err(Error::InvalidArgument(format!(
                "update: key position {i} is outside its {} keys",
                self.changes.len()
            ))),
            None => Ok(self.changes),
        }
    }
}

/// What a module's store implements (see the [module docs](self)).
pub trait Backend: Send + Sync + fmt::Debug {
    /// The entries of `keys` (which must share a tag), each judged live
    /// against one reading of the backend's clock, returned with it.
    ///
    /// Every entry is one write's value with that write's expiry. Whether
    /// the entries are also of one instant depends on the backend:
    ///
    /// - a remote backend reads the keys atomically (one script, or
    ///   `MULTI`/`EXEC`, on the server): no write lands between them;
    /// - the embedded store reads them one by one from its index, without
    ///   the writer lock, so that a read never queues behind writers and
    ///   works inside a [`Db::transaction`] closure: a write of several of
    ///   the keys that lands during the read may be seen in part.
    ///
    /// A caller that needs several keys as of one instant on every backend
    /// reads them with [`Backend::update`] (and changes nothing).
    ///
    /// # Errors
    /// The backend's own: I/O, network, a closed store.
    fn read(&self, keys: &[Key]) -> Result<Snapshot>;

    /// Reads `keys` (which must share a tag), runs `f` on them and applies
    /// the changes it made, atomically. An error from `f` aborts the
    /// update with nothing written. `f` may run more than once.
    ///
    /// # Errors
    /// `f`'s error, or the backend's own.
    fn update(&self, keys: &[Key], f: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()>;

    /// [`Backend::update`], except that the caller completes its
    /// durability with [`Backend::sync_pending`], outside its own locks,
    /// so that concurrent callers share one fsync. Until then a power loss
    /// may lose the update (a crash of the process does not). The default
    /// is [`Backend::update`], durable when it returns.
    ///
    /// # Errors
    /// As [`Backend::update`].
    fn update_deferred(
        &self,
        keys: &[Key],
        f: &mut dyn FnMut(&mut Update) -> Result<()>,
    ) -> Result<()> {
        self.update(keys, f)
    }

    /// Makes the updates this thread applied with
    /// [`Backend::update_deferred`] as durable as a plain update would
    /// have been. The default does nothing.
    ///
    /// # Errors
    /// The backend's own (a failed fsync poisons an embedded store).
    fn sync_pending(&self) -> Result<()> {
        Ok(())
    }

    /// Calls `f` with the name, value length and expiry of every live key
    /// whose name starts with `prefix` (tags are not part of names).
    ///
    /// # Errors
    /// The backend's own.
    #[allow(clippy::type_complexity)] // one callback, spelled out for implementers
    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()>;

    /// Whether a call can wait on a network (async callers then run it off
    /// their executor's threads).
    fn is_remote(&self) -> bool;

    /// A clock reading (Unix milliseconds) without reading any key, for
    /// decisions that tolerate a few milliseconds of skew (a cache entry's
    /// freshness). The embedded store's clock; on a remote store, the
    /// test clock if one is set, else this host's clock (an update's own
    /// [`Update::now_ms`] is the server's). The default reads no key
    /// through [`Backend::read`].
    ///
    /// # Errors
    /// The backend's own.
    fn now_ms(&self) -> Result<u64> {
        Ok(self.read(&[])?.now_ms)
    }

    /// The embedded store, when this backend is one.
    fn as_db(&self) -> Option<&Db> {
        None
    }

    /// Whether the store refuses writes.
    fn is_read_only(&self) -> bool {
        false
    }
}

/// A shared handle to a module's [`Backend`]. Cheap to clone.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// let store = cairn::backend::Store::from(db.keyspace("sessions")?);
/// let sessions = cairn::session::Sessions::new(store);
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Backend>);

impl Store {
    /// A handle to `backend`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let store = cairn::backend::Store::new(cairn::backend::embedded::Embedded::new(db));
    /// assert!(!store.is_remote());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(backend: impl Backend + 'static) -> Store {
        Store(Arc::new(backend))
    }

    /// The backend.
    pub fn backend(&self) -> &dyn Backend {
        &*self.0
    }

    /// The embedded store, when the backend is one.
    pub fn as_db(&self) -> Option<&Db> {
        self.0.as_db()
    }

    /// Whether calls can wait on a network.
    pub fn is_remote(&self) -> bool {
        self.0.is_remote()
    }

    /// Whether the store refuses writes.
    pub fn is_read_only(&self) -> bool {
        self.0.is_read_only()
    }

    /// [`Backend::now_ms`]: a clock reading that reads no key.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = cairn::backend::Store::from(cairn::Db::open(dir.path())?);
    /// assert!(store.now_ms()? > 1_600_000_000_000);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::now_ms`].
    pub fn now_ms(&self) -> Result<u64> {
        self.0.now_ms()
    }

    /// [`Backend::read`] of one key: the clock and its entry.
    ///
    /// ```
    /// use cairn::backend::{Key, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::from(cairn::Db::open(dir.path())?);
    /// let (_now, e) = store.read_one(&Key::new(b"k".to_vec()))?;
    /// assert!(e.is_none());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::read`].
    pub fn read_one(&self, key: &Key) -> Result<(u64, Option<Entry>)> {
        let s = self.0.read(std::slice::from_ref(key))?;
        Ok((s.now_ms, s.entries.into_iter().next().flatten()))
    }

    /// [`Backend::update`] with a function that returns a result: the
    /// result of its last run.
    ///
    /// ```
    /// use cairn::backend::{Key, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::from(cairn::Db::open(dir.path())?);
    /// let k = [Key::new(b"n".to_vec())];
    /// let was = store.update(&k, |u| {
    ///     let had = u.get(0).is_some();
    ///     u.put(0, b"1".to_vec(), None);
    ///     Ok(had)
    /// })?;
    /// assert!(!was);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::update`].
    pub fn update<R>(&self, keys: &[Key], f: impl FnMut(&mut Update) -> Result<R>) -> Result<R> {
        with_result(f, |g| self.0.update(keys, g))
    }

    /// [`Backend::update_deferred`] with a function that returns a
    /// result; call [`Store::sync_pending`] afterwards.
    ///
    /// ```
    /// use cairn::backend::{Key, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::from(cairn::Db::open(dir.path())?);
    /// store.update_deferred(&[Key::new(b"n".to_vec())], |u| {
    ///     u.put(0, b"1".to_vec(), None);
    ///     Ok(())
    /// })?;
    /// store.sync_pending()?; // durable from here on
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::update`].
    pub fn update_deferred<R>(
        &self,
        keys: &[Key],
        f: impl FnMut(&mut Update) -> Result<R>,
    ) -> Result<R> {
        with_result(f, |g| self.0.update_deferred(keys, g))
    }

    /// [`Backend::sync_pending`].
    ///
    /// # Errors
    /// As [`Backend::sync_pending`].
    pub fn sync_pending(&self) -> Result<()> {
        self.0.sync_pending()
    }

    /// [`Backend::scan`].
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.put("a1", "x")?;
    /// let mut n = 0;
    /// cairn::backend::Store::from(db).scan(b"a", |_, _, _| n += 1)?;
    /// assert_eq!(n, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Backend::scan`].
    pub fn scan(&self, prefix: &[u8], mut f: impl FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
        self.0.scan(prefix, &mut f)
    }
}

/// Runs `call` (an update through the object-safe trait) with a function
/// that keeps `f`'s result, and returns the result of its last run.
fn with_result<R>(
    mut f: impl FnMut(&mut Update) -> Result<R>,
    call: impl FnOnce(&mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()>,
) -> Result<R> {
    let mut out = None;
    call(&mut |u| {
        out = Some(f(u)?);
        Ok(())
    })?;
    out.ok_or_else(|| {
        Error::InvalidArgument("update: the backend never ran the update's function".into())
    })
}

impl From<Db> for Store {
    fn from(db: Db) -> Store {
        Store::new(embedded::Embedded::new(db))
    }
}

impl From<&Db> for Store {
    fn from(db: &Db) -> Store {
        Store::from(db.clone())
    }
}
