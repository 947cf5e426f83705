//! A [tower-sessions](https://docs.rs/tower-sessions) store on
//! [cairn](https://docs.rs/cairn): sessions survive restarts and crashes,
//! with nothing extra to run beside the app; and when the app outgrows one
//! machine, the same store runs on Redis, Valkey (Cluster) or `cairn
//! serve` (see [Backends](#backends)).
//!
//! ```no_run
//! # #[cfg(feature = "v0_15")]
//! # async fn app() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_sessions_015 as tower_sessions; // `tower_sessions` in your app
//! let db = cairn::Db::open("/var/lib/myapp")?; // SyncPolicy::Always by default
//! let store = tower_sessions_cairn_store::CairnStore::new(db.keyspace("sessions")?);
//! let layer = tower_sessions::SessionManagerLayer::new(store);
//! let app: axum::Router = axum::Router::new().layer(layer);
//! # Ok(()) }
//! ```
//!
//! # Backends
//! The store works on any [`cairn::backend::Store`], chosen by
//! configuration, with the same semantics on each:
//!
//! - **Embedded** ([`CairnStore::new`]`(db)`, the same as
//!   [`CairnStore::on`]`(Store::from(db))`): a cairn [`Db`] in the
//!   process, usually a keyspace of its own. Nothing else to run.
//! - **A Redis-protocol server**: Redis, Valkey, a Redis or Valkey
//!   Cluster, or `cairn serve`, through cairn's RESP backend
//!   (`cairn::backend::resp::RespBackend`), which this crate's `redis`
//!   feature turns on (it enables `cairn/redis`):
//!   `tower-sessions-cairn-store = { version = "0.1", features = ["redis"] }`,
//!   then `CairnStore::on(Store::new(backend))`. Each session is one key
//!   (every operation touches that key alone; its hash tag is the first 2
//!   bytes of the key's hash in hex, so no key name starts with `{`),
//!   expiring through the server's own expiry (`PXAT`), so the server
//!   drops expired sessions without the app running.
//!
//! ```
//! use cairn::backend::Store;
//! use tower_sessions_cairn_store::CairnStore;
//!
//! /// The app's sessions, on whichever store the configuration names.
//! fn sessions(store: Store) -> CairnStore {
//!     CairnStore::on(store)
//! }
//! # let dir = tempfile::tempdir()?;
//! let db = cairn::Db::open(dir.path())?;
//! let store = sessions(Store::from(db.keyspace("sessions")?));
//! assert!(store.db().is_some());
//! # Ok::<(), cairn::Error>(())
//! ```
//!
//! What a backend keeps after a crash or a failover is its own: see
//! cairn's `docs/durability.md`.
//!
//! # Versions
//! The `v0_15` feature (the default) implements the traits of
//! tower-sessions 0.15; `v0_14` those of tower-sessions 0.14, which
//! axum-login 0.18 uses. Both can be on at once: one `CairnStore` then
//! works with either.
//!
//! # Semantics
//! - **`create` never overwrites** a session: it writes only if the id is
//!   free (in both key layouts on an embedded store, see below), checked
//!   and written in one atomic update of the backend, and draws a fresh id
//!   on a collision.
//! - **`save` updates only a session that exists.** A session deleted by a
//!   parallel request (a logout, `cycle_id`, `flush`) or expired in the
//!   meantime is not brought back by a request that loaded it earlier; that
//!   request's changes are dropped, and its client gets a new session on
//!   its next request. (Redis's store behaves the same way with `SET XX`;
//!   the SQL stores upsert and would resurrect it.)
//! - **`load` never returns an expired record**: the record's expiry is its
//!   expiry in the backend (a cairn TTL, a Redis `PXAT`), and `load` checks
//!   the exact expiry time too, so not even a record expiring within the
//!   current millisecond, or one found right after a restart, is returned.
//! - **`delete`** removes the session.
//! - **`delete_expired`** costs next to nothing on an embedded store:
//!   cairn drops expired records by itself; it only frees their memory
//!   sooner. On a remote store it does nothing: the server expires the
//!   keys itself.
//!
//! Each operation is one call to the backend: `load` one read of one key,
//! `create`, `save` and `delete` one atomic update (on an embedded store
//! of the session's two keys, see below; on a remote one of its one key).
//!
//! # Encoding
//! Key: SHA-256 of the 16 bytes of the session id (little-endian), on
//! every backend, so the store holds no session id: a leaked backup or a
//! stolen disk gives no id to present as a cookie (finding one from its
//! hash would take guessing 128 random bits). On a Redis-protocol server
//! the key has a hash tag, the hash's first 2 bytes in hex
//! (`prefix{9f04}` + hash), which spreads sessions over a cluster's
//! slots and keeps a hash that starts with `{` from reading as a tag.
//! Value: a format byte (1),
//! the expiry as Unix nanoseconds (i128, little-endian) and its UTC offset
//! in seconds (i32, little-endian), then the data map in MessagePack
//! (rmp-serde), which round-trips every `serde_json::Value`.
//! A value with another format byte is refused with a decode error, so
//! the encoding can change later.
//!
//! # Upgrading from the layout keyed by raw ids
//! Versions before the hash, which ran on embedded stores only, keyed each
//! record by the id's 16 bytes themselves. On an embedded store such
//! records are still read: `load` looks up the hashed
//! key, then the raw one, and moves a live record it finds under the raw
//! key to the hashed key, with the same expiry, in one atomic write (if
//! that write fails, on a read-only store or a full disk, the session is
//! served anyway and logs a warning). `save` writes the hashed key and
//! deletes the raw one in one write; `delete` deletes both; `create`
//! refuses an id taken in either layout. Raw-keyed records nobody loads
//! expire with their TTL, or move at once with
//! [`CairnStore::hash_stored_ids`]. The old records, and the tombstones
//! that delete them (a tombstone names its key), stay in the files until
//! compaction rewrites their segments, and in any backup taken before:
//! after moving them, [`Db::seal_active_segment`] then [`Db::compact`] on
//! the store's `Db` leaves no session id in the files. A remote store was
//! never written in that layout: there the store looks up the hashed key
//! alone.
//!
//! # Blocking
//! No call blocks the async runtime's worker threads. Writes run on
//! tokio's blocking pool (`spawn_blocking`): on an embedded store under
//! [`cairn::SyncPolicy::Always`] a write waits for an fsync (concurrent
//! requests share fsyncs through cairn's group commit), and under any
//! policy a write that fills a segment waits for the segment roll's fsyncs,
//! or for compaction when disk use is far past its target. On a remote
//! store every call, reads too, runs there, as it waits on the network.
//! Reads of an embedded store are an index lookup and a copy from memory
//! or the page cache, and run inline (a read right after a restart may
//! wait for the disk).
//!
//! # When a save finds nothing
//! tower-sessions can save a record whose session is gone from the store:
//! a request that loaded it before a parallel logout, one that ran past the
//! session's expiry, or a handler that calls `clear()` and then inserts on
//! a request whose cookie names a session that no longer exists (the id is
//! then the client's old one). The store writes nothing in those cases and
//! logs a warning (through the `log` facade); the client gets a fresh
//! session on its next request. Call `cycle_id()` at login, as the example
//! does: a login then always creates a new session. Behind tower-sessions'
//! `CachingSessionStore`, whose cache upserts, a logged-out session can
//! come back from the cache; use the store directly (on an embedded store
//! its reads are in-memory lookups already).

#![deny(missing_docs, clippy::unwrap_used)]

/// The code blocks of cairn's guide (`docs/guide.md`), compiled and run as
/// doc tests (`cargo test --doc`). They run here because this is the one
/// crate of the workspace with every dependency they use: cairn, tempfile,
/// and axum and tower-sessions for the guide's axum section.
#[cfg(all(doctest, feature = "v0_15"))]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

use std::collections::HashMap;

use cairn::backend::{Entry, Key, Store, Update};
use cairn::Db;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// The current value format.
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 16 + 4;

/// A tower-sessions store on a cairn [`Store`]: an embedded [`Db`]
/// (usually a keyspace of its own), or a Redis-protocol server through the
/// `redis` feature (see [the crate's docs](crate#backends)). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct CairnStore {
    store: Store,
    /// Whether records of the layout keyed by raw ids can exist: only on
    /// an embedded store (no version wrote that layout anywhere else).
    legacy: bool,
    /// Whether a call can wait on a network.
    remote: bool,
}

impl CairnStore {
    /// A store on the embedded `db`. Give it a keyspace of its own
    /// (`db.keyspace("sessions")?`); its keys are SHA-256 hashes of
    /// session ids (see [the encoding](crate#encoding)). The same as
    /// [`CairnStore::on`]`(Store::from(db))`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let store = tower_sessions_cairn_store::CairnStore::new(db.keyspace("sessions")?);
    /// assert!(store.db().is_some());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(db: Db) -> CairnStore {
        CairnStore::on(Store::from(db))
    }

    /// A store on `store`, whichever backend it is: the embedded one
    /// (`Store::from(db)`) or a Redis-protocol server (see [the crate's
    /// docs](crate#backends)). The backend is a matter of configuration:
    /// the sessions behave the same on each.
    ///
    /// ```
    /// use cairn::backend::Store;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let store = tower_sessions_cairn_store::CairnStore::on(Store::from(db.keyspace("sessions")?));
    /// assert!(!store.store().is_remote());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn on(store: Store) -> CairnStore {
        CairnStore {
            legacy: store.as_db().is_some(),
            remote: store.is_remote(),
            store,
        }
    }

    /// The [`Store`] the sessions live in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The embedded [`Db`] the sessions live in, or `None` on a remote
    /// store.
    pub fn db(&self) -> Option<&Db> {
        self.store.as_db()
    }

    /// Moves every session of the layout keyed by raw session ids
    /// (written by versions before the hash) to its hashed key, with the
    /// same expiry, and returns how many it moved. Sessions of that layout
    /// are read anyway and move when loaded or saved; call this once after
    /// upgrading, so that no session id stays a live key, even of sessions
    /// nobody uses. It blocks: call it before serving, or on tokio's
    /// blocking pool. Keys of 16 bytes whose value is not a session of
    /// this store are left alone. The old records' bytes, and the
    /// tombstones that delete them, stay in the data files until
    /// compaction rewrites their segments (see [the crate's
    /// docs](crate#upgrading-from-the-layout-keyed-by-raw-ids)).
    ///
    /// On a remote store it returns `Ok(0)` at once, without scanning:
    /// only embedded stores were ever written in that layout, so there is
    /// nothing to move.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let store = tower_sessions_cairn_store::CairnStore::new(db.keyspace("sessions")?);
    /// assert_eq!(store.hash_stored_ids()?, 0); // none of the old layout
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of [`Store::scan`] and [`Store::update`].
    pub fn hash_stored_ids(&self) -> cairn::Result<u64> {
        if !self.legacy {
            return Ok(0);
        }
        let mut raw = Vec::new();
        self.store.scan(b"", |key, _, _| {
            if let Ok(key) = <[u8; 16]>::try_from(key) {
                raw.push(key);
            }
        })?;
        let mut moved = 0;
        // In batches, so that no update grows with the store.
        for chunk in raw.chunks(128) {
            let keys: Vec<Key> = chunk
                .iter()
                .flat_map(|raw| Keys::of(*raw).legacy())
                .collect();
            moved += self.store.update(&keys, |u| {
                let mut n = 0;
                for i in 0..chunk.len() {
                    // Only records of this store: a foreign key of 16
                    // bytes is left alone.
                    if u.get(2 * i + 1).is_some_and(|e| decode(&e.value).is_ok())
                        && migrate(u, 2 * i).1
                    {
                        n += 1;
                    }
                }
                Ok(n)
            })?;
        }
        Ok(moved)
    }

    /// Runs `f` on the blocking pool: a write may wait for an fsync, and
    /// any call to a remote store waits on the network.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }
}

/// The keys one operation on the session `k` touches: its hashed key, and
/// where the old layout can exist (`legacy`) its raw key too (positions 0
/// and 1).
fn op_keys(legacy: bool, k: Keys) -> Vec<Key> {
    if legacy {
        k.legacy().to_vec()
    } else {
        vec![k.hashed_key()]
    }
}

impl From<Store> for CairnStore {
    fn from(store: Store) -> CairnStore {
        CairnStore::on(store)
    }
}

impl From<Db> for CairnStore {
    fn from(db: Db) -> CairnStore {
        CairnStore::new(db)
    }
}

/// An error before it is turned into a version's `session_store::Error`.
#[derive(Debug)]
enum StoreError {
    Encode(String),
    Decode(String),
    Backend(String),
}

impl From<cairn::Error> for StoreError {
    fn from(e: cairn::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

type Data = HashMap<String, serde_json::Value>;

fn encode(data: &Data, expiry: OffsetDateTime) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(HEADER + 64);
    v.push(FORMAT);
    v.extend_from_slice(&expiry.unix_timestamp_nanos().to_le_bytes());
    v.extend_from_slice(&expiry.offset().whole_seconds().to_le_bytes());
    rmp_serde::encode::write(&mut v, data).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(v)
}

fn decode(v: &[u8]) -> Result<(Data, OffsetDateTime), StoreError> {
    let bad = |why: String| StoreError::Decode(why);
    if v.len() < HEADER {
        return Err(bad(format!(
            "a session value of {} bytes is too short",
            v.len()
        )));
    }
    if v[0] != FORMAT {
        return Err(bad(format!("unknown session value format {}", v[0])));
    }
    let mut n = [0u8; 16];
    n.copy_from_slice(&v[1..17]);
    let mut o = [0u8; 4];
    o.copy_from_slice(&v[17..21]);
    let offset = time::UtcOffset::from_whole_seconds(i32::from_le_bytes(o))
        .map_err(|e| bad(format!("bad UTC offset: {e}")))?;
    let expiry = OffsetDateTime::from_unix_timestamp_nanos(i128::from_le_bytes(n))
        .map_err(|e| bad(format!("bad expiry: {e}")))?
        .to_offset(offset);
    let data = rmp_serde::from_slice(&v[HEADER..]).map_err(|e| bad(e.to_string()))?;
    Ok((data, expiry))
}

/// The record's expiry as the backend's: Unix milliseconds, rounded up;
/// `None` if it has passed.
fn expires_at_ms(expiry: OffsetDateTime) -> Option<u64> {
    if expiry <= OffsetDateTime::now_utc() {
        return None;
    }
    let nanos = u128::try_from(expiry.unix_timestamp_nanos()).ok()?;
    Some(u64::try_from(nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX))
}

/// Where a session is stored: under SHA-256 of its id's 16 bytes, and,
/// in the layout before that, under the 16 bytes themselves (still read,
/// and moved to the hashed key, on an embedded store). 32 bytes and 16:
/// the two never collide.
#[derive(Clone, Copy, Debug)]
struct Keys {
    hashed: [u8; 32],
    raw: [u8; 16],
}

impl Keys {
    /// The keys of the session whose id has these 16 bytes.
    fn of(raw: [u8; 16]) -> Keys {
        Keys {
            hashed: Sha256::digest(raw).into(),
            raw,
        }
    }

    /// The hashed key, tagged with its first 2 bytes in hex: on a
    /// Redis-protocol server an untagged name may not start with `{`
    /// (it would read as a hash tag), which one hash in 256 does, and the
    /// tags spread sessions over a cluster's slots. An embedded store
    /// ignores tags: there the key is the hash alone.
    fn hashed_key(&self) -> Key {
        cairn::module_keys::tower_sessions_key(&self.hashed)
    }

    /// Both keys, hashed first. Only an embedded store, which has no
    /// slots, is given both in one operation.
    fn legacy(&self) -> [Key; 2] {
        [self.hashed_key(), Key::new(self.raw.to_vec())]
    }
}

/// Creates the session under `id`, or under fresh ids from `fresh` until
/// one is free (in both layouts on an embedded store); returns the id
/// used. One update per id tried.
fn create_sync<I: Copy>(
    store: &Store,
    mut id: I,
    keys: impl Fn(I) -> Vec<Key>,
    fresh: impl Fn() -> I,
    value: Vec<u8>,
    expires_at_ms: u64,
) -> Result<I, StoreError> {
    loop {
        let created = store.update(&keys(id), |u| {
            if u.read_entries().iter().any(Option::is_some) {
                return Ok(false);
            }
            // The function may run again: it keeps its copy.
            u.put(0, value.clone(), Some(expires_at_ms));
            Ok(true)
        })?;
        if created {
            return Ok(id);
        }
        id = fresh();
    }
}

/// Replaces the session under `keys` if it is still there, in either
/// layout; a session of the old layout moves to the hashed key in the
/// same write. An expiry that has passed (`None`) deletes it.
fn save_sync(
    store: &Store,
    keys: &[Key],
    value: Vec<u8>,
    expires_at_ms: Option<u64>,
) -> Result<(), StoreError> {
    let found = store.update(keys, |u| {
        if u.read_entries().iter().all(Option::is_none) {
            return Ok(false);
        }
        if u.get(1).is_some() {
            u.delete(1);
        }
        match expires_at_ms {
            // An expiry at or before the backend's clock deletes.
            Some(at) => u.put(0, value.clone(), Some(at)),
            // Saved with an expiry in the past: it is over.
            None => u.delete(0),
        }
        Ok(true)
    })?;
    if !found {
        log::warn!(
            "tower-sessions saved a session that is not in the store (logged out, expired, or a \
             client's stale id); nothing was written"
        );
    }
    Ok(())
}

/// Deletes the session under `keys`, in both layouts, in one write.
fn delete_sync(store: &Store, keys: &[Key]) -> Result<(), StoreError> {
    store.update(keys, |u| {
        for i in 0..u.read_entries().len() {
            if u.get(i).is_some() {
                u.delete(i);
            }
        }
        Ok(())
    })?;
    Ok(())
}

/// Moves the session of the old layout at position `i + 1` of `u`, if
/// any, to the hashed key at `i`, with the same expiry; a record already
/// under the hashed key (a parallel request moved it) wins and the raw one
/// is dropped. Returns the value now under the hashed key, and whether a
/// record moved.
fn migrate(u: &mut Update, i: usize) -> (Option<Vec<u8>>, bool) {
    if let Some(e) = u.get(i) {
        let v = e.value.clone();
        if u.get(i + 1).is_some() {
            u.delete(i + 1);
        }
        return (Some(v), false);
    }
    // Deleted or expired meanwhile.
    let Some(Entry {
        value,
        expires_at_ms,
    }) = u.get(i + 1).cloned()
    else {
        return (None, false);
    };
    u.put(i, value.clone(), expires_at_ms);
    u.delete(i + 1);
    (Some(value), true)
}

/// The session in `v`, unless it has expired.
fn live(v: &[u8]) -> Result<Option<(Data, OffsetDateTime)>, StoreError> {
    let (data, expiry) = decode(v)?;
    // The backend's expiry was rounded up to a millisecond, and its clock
    // may differ from ours: check the exact time too.
    if expiry <= OffsetDateTime::now_utc() {
        return Ok(None);
    }
    Ok(Some((data, expiry)))
}

impl CairnStore {
    /// The live session under `k`, if any: one read. On an embedded store
    /// a session of the old layout is moved to its hashed key first.
    async fn load_keys(&self, k: Keys) -> Result<Option<(Data, OffsetDateTime)>, StoreError> {
        let hashed = k.hashed_key();
        if self.remote {
            let entry = self.blocking(move |s| Ok(s.read_one(&hashed)?.1)).await?;
            return match entry {
                Some(e) => live(&e.value),
                None => Ok(None),
            };
        }
        // An index lookup and a copy from memory or the page cache.
        if let Some(e) = self.store.read_one(&hashed)?.1 {
            return live(&e.value);
        }
        if !self.legacy {
            return Ok(None);
        }
        let Some(old) = self.store.read_one(&Key::new(k.raw.to_vec()))?.1 else {
            return Ok(None);
        };
        if live(&old.value)?.is_none() {
            return Ok(None);
        }
        let moved = self
            .blocking(move |s| Ok(s.update(&k.legacy(), |u| Ok(migrate(u, 0).0))?))
            .await;
        match moved {
            Ok(Some(moved)) => live(&moved),
            Ok(None) => Ok(None),
            // A read-only store, a full disk: serve the session anyway;
            // its next save moves it.
            Err(e) => {
                log::warn!(
                    "could not move a session of the old layout (keyed by its id) to its \
                     hashed key: {e:?}; it moves on its next save"
                );
                live(&old.value)
            }
        }
    }
}

/// Implements one tower-sessions version's traits for [`CairnStore`].
macro_rules! impl_store {
    ($core:ident) => {
        use $core::session::{Id, Record};
        use $core::session_store::{self, ExpiredDeletion, SessionStore};

        use crate::{
            create_sync, delete_sync, encode, expires_at_ms, op_keys, save_sync, CairnStore, Keys,
            StoreError,
        };

        fn convert(e: StoreError) -> session_store::Error {
            match e {
                StoreError::Encode(m) => session_store::Error::Encode(m),
                StoreError::Decode(m) => session_store::Error::Decode(m),
                StoreError::Backend(m) => session_store::Error::Backend(m),
            }
        }

        fn keys(id: Id) -> Keys {
            Keys::of(id.0.to_le_bytes())
        }

        #[async_trait::async_trait]
        impl SessionStore for CairnStore {
            async fn create(&self, record: &mut Record) -> session_store::Result<()> {
                // Already expired: nothing to keep (and nothing to load).
                let Some(at) = expires_at_ms(record.expiry_date) else {
                    return Ok(());
                };
                let value = encode(&record.data, record.expiry_date).map_err(convert)?;
                let (id, legacy) = (record.id, self.legacy);
                let id = self
                    .blocking(move |s| {
                        let ks = move |id| op_keys(legacy, keys(id));
                        create_sync(s, id, ks, Id::default, value, at)
                    })
                    .await
                    .map_err(convert)?;
                record.id = id;
                Ok(())
            }

            async fn save(&self, record: &Record) -> session_store::Result<()> {
                let value = encode(&record.data, record.expiry_date).map_err(convert)?;
                let at = expires_at_ms(record.expiry_date);
                let ks = op_keys(self.legacy, keys(record.id));
                self.blocking(move |s| save_sync(s, &ks, value, at))
                    .await
                    .map_err(convert)
            }

            async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
                Ok(self
                    .load_keys(keys(*id))
                    .await
                    .map_err(convert)?
                    .map(|(data, expiry_date)| Record {
                        id: *id,
                        data,
                        expiry_date,
                    }))
            }

            async fn delete(&self, id: &Id) -> session_store::Result<()> {
                let ks = op_keys(self.legacy, keys(*id));
                self.blocking(move |s| delete_sync(s, &ks))
                    .await
                    .map_err(convert)
            }
        }

        #[async_trait::async_trait]
        impl ExpiredDeletion for CairnStore {
            /// Expired sessions are already invisible. On an embedded
            /// store cairn's own sweep and compaction drop them, and this
            /// frees their memory now; on a remote store the server
            /// expires them itself, and this does nothing.
            async fn delete_expired(&self) -> session_store::Result<()> {
                if self.db().is_none() {
                    return Ok(());
                }
                self.blocking(|s| {
                    if let Some(db) = s.as_db() {
                        db.sweep_expired();
                    }
                    Ok(())
                })
                .await
                .map_err(convert)
            }
        }
    };
}

#[cfg(feature = "v0_15")]
mod v0_15 {
    impl_store!(tower_sessions_core_015);
}

#[cfg(feature = "v0_14")]
mod v0_14 {
    impl_store!(tower_sessions_core_014);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_garbage_is_refused() {
        let mut data = Data::new();
        data.insert("n".into(), serde_json::json!(42));
        data.insert("f".into(), serde_json::json!(1.0));
        data.insert("neg".into(), serde_json::json!(i64::MIN));
        data.insert("big".into(), serde_json::json!(u64::MAX));
        data.insert(
            "nested".into(),
            serde_json::json!({"a": [1, "two", null, true, {"b": -0.5}], "é": ""}),
        );
        let expiry = OffsetDateTime::now_utc()
            .to_offset(time::UtcOffset::from_hms(2, 30, 0).expect("offset"));
        let v = encode(&data, expiry).expect("encode");
        let (d, e) = decode(&v).expect("decode");
        assert_eq!(d, data);
        assert_eq!(e, expiry);
        assert_eq!(e.offset(), expiry.offset());
        assert_eq!(e.nanosecond(), expiry.nanosecond());
        for cut in 0..HEADER {
            assert!(decode(&v[..cut]).is_err());
        }
        let mut other = v.clone();
        other[0] = 2;
        assert!(matches!(decode(&other), Err(StoreError::Decode(_))));
        let mut junk = v[..HEADER].to_vec();
        junk.extend_from_slice(&[0xc1, 0xff]);
        assert!(matches!(decode(&junk), Err(StoreError::Decode(_))));
    }

    #[test]
    fn expiries_round_up_and_the_past_has_none() {
        let now = OffsetDateTime::now_utc();
        assert_eq!(expires_at_ms(now - time::Duration::seconds(1)), None);
        assert_eq!(expires_at_ms(OffsetDateTime::UNIX_EPOCH), None);
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(4_000_000_000_000_000_001).expect("2096");
        assert_eq!(expires_at_ms(at), Some(4_000_000_000_001));
        let at =
            OffsetDateTime::from_unix_timestamp_nanos(4_000_000_000_000_000_000).expect("2096");
        assert_eq!(expires_at_ms(at), Some(4_000_000_000_000));
        let later = now + time::Duration::minutes(30);
        let ms = expires_at_ms(later).expect("future");
        let exact = later.unix_timestamp_nanos();
        assert!(
            i128::from(ms) * 1_000_000 >= exact && i128::from(ms) * 1_000_000 < exact + 1_000_000
        );
    }
}
