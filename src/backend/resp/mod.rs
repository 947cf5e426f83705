//! The RESP backend (feature `redis`): a module's keys on a
//! Redis-protocol server — Redis, Valkey, a Redis or Valkey Cluster, or
//! `cairn serve` — through the `redis` crate's blocking client.
//!
//! - On a server with `EVAL` (Redis, Valkey, a cluster), a
//!   [`read`](Backend::read) is one `EVALSHA` of a read script, and an
//!   [`update`](Backend::update) is that read, the module's function, and
//!   one `EVALSHA` of a compare-and-apply script that writes only if every
//!   key still has the value and expiry it was read with; on a conflict
//!   the update starts over, after a short random pause.
//! - On `cairn serve` (no `EVAL`), a read is one `MULTI … EXEC`, and an
//!   update is `WATCH`, a pipelined read, the function, then
//!   `MULTI … EXEC` (a nil `EXEC` is a conflict).
//!
//! It needs `PEXPIRETIME`: Redis 7.0 or later, Valkey, or `cairn serve`.
//! Every failure is an [`Error::Remote`] naming the server (never its
//! password), with `maybe_applied` set only when a write was sent and its
//! answer lost. The client never resends a command by itself (a resent
//! compare-and-apply would find its own write and look like a conflict);
//! the backend tries again only what cannot have written: a read (once,
//! on a new connection, if a pooled one was found closed by the server)
//! and a command the server refused with an error reply (a redirect, a
//! cluster or node not ready), after which a cluster connection is
//! replaced so that it learns the new slot map.
//!
//! The key layout is in `docs/format.md` ("Module keys on a
//! Redis-protocol server"): `prefix + "{" + tag + "}" + name`, so a tag's
//! keys share a cluster hash slot.

mod conn;
mod keys;
mod ops;
mod scripts;
mod shared;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, Key, Snapshot, Store, Update};
use crate::error::{Error, Result};
use crate::util::clock::Clock;

use conn::Pool;
use scripts::Scripts;
use shared::{Shared, TestClock};

/// The fuzz target's entry into the reply decoders and the key layout:
/// decodes `data` as replies (see `ops::fuzz_replies`), then encodes a key
/// made of its halves (tag, name) and decodes the result, which must give
/// the name back whenever encoding accepted the key.
#[cfg(feature = "__test_hooks")]
pub(crate) fn fuzz_decoders(data: &[u8]) -> usize {
    let found = ops::fuzz_replies(data);
    let (tag, name) = data.split_at(data.len() / 2);
    let key = if tag.first() == Some(&0) {
        Key::new(name.to_vec())
    } else {
        Key::tagged(tag.to_vec(), name.to_vec())
    };
    if let Ok(stored) = keys::encode(b"cairn:", &key) {
        assert_eq!(
            keys::decode(b"cairn:", &stored),
            Some(key.name()),
            "a stored key must decode to its name"
        );
    }
    found
}

/// How to reach a Redis-protocol server or cluster; [`RespOptions::open`]
/// connects.
///
/// ```no_run
/// use cairn::backend::resp::RespOptions;
/// let backend = RespOptions::new("redis://127.0.0.1:6379")
///     .prefix("myapp:")
///     .pool_size(4)
///     .timeout_ms(2_000)
///     .open()?;
/// let store = cairn::backend::Store::from(backend);
/// # Ok::<(), cairn::Error>(())
/// ```
#[must_use]
pub struct RespOptions {
    urls: Vec<String>,
    cluster: bool,
    prefix: String,
    pool_size: usize,
    timeout_ms: u64,
    clock: Option<Arc<dyn Clock>>,
}

impl fmt::Debug for RespOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URLs may hold a password: show only how many there are.
        f.debug_struct("RespOptions")
            .field("urls", &self.urls.len())
            .field("cluster", &self.cluster)
            .field("prefix", &self.prefix)
            .field("pool_size", &self.pool_size)
            .field("timeout_ms", &self.timeout_ms)
            .field("clock", &self.clock.is_some())
            .finish()
    }
}

impl RespOptions {
    /// One server: `redis://[:password@]host:port[/db]`.
    ///
    /// ```
    /// let o = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379/0");
    /// ```
    pub fn new(url: &str) -> RespOptions {
        RespOptions::with(vec![url.to_owned()], false)
    }

    /// A Redis or Valkey Cluster, through some of its nodes (the client
    /// finds the others): any list of URLs (`&[&str]`, `Vec<String>`…).
    ///
    /// ```
    /// let o = cairn::backend::resp::RespOptions::cluster([
    ///     "redis://127.0.0.1:7000",
    ///     "redis://127.0.0.1:7001",
    /// ]);
    /// ```
    pub fn cluster<S: AsRef<str>>(urls: impl IntoIterator<Item = S>) -> RespOptions {
        RespOptions::with(
            urls.into_iter().map(|u| u.as_ref().to_owned()).collect(),
            true,
        )
    }

    fn with(urls: Vec<String>, cluster: bool) -> RespOptions {
        RespOptions {
            urls,
            cluster,
            prefix: "cairn:".into(),
            pool_size: 8,
            timeout_ms: 5_000,
            clock: None,
        }
    }

    /// The namespace of every key (default `cairn:`). It may not contain
    /// `{` or `}` (they would change the keys' cluster hash tag):
    /// [`RespOptions::open`] refuses one that does.
    ///
    /// ```
    /// let o = cairn::backend::resp::RespOptions::new("redis://127.0.0.1").prefix("app1:");
    /// ```
    pub fn prefix(mut self, prefix: &str) -> RespOptions {
        prefix.clone_into(&mut self.prefix);
        self
    }

    /// How many idle connections to keep (default 8, at least 1).
    ///
    /// ```
    /// let o = cairn::backend::resp::RespOptions::new("redis://127.0.0.1").pool_size(2);
    /// ```
    pub fn pool_size(mut self, n: usize) -> RespOptions {
        self.pool_size = n;
        self
    }

    /// The connect, read and write timeout (default 5000 ms, at least 1).
    /// A call on one server never waits much longer on an unresponsive
    /// one. A step that cannot have written anything (a read, or a
    /// command the server refused with `MOVED`, `TRYAGAIN`, `CLUSTERDOWN`,
    /// `LOADING`…, e.g. while a replica takes over from a failed master)
    /// is tried again after a short pause, for up to 5 s in all; a
    /// write whose answer was lost is never sent again (the error says
    /// `maybe_applied`).
    ///
    /// ```
    /// let o = cairn::backend::resp::RespOptions::new("redis://127.0.0.1").timeout_ms(500);
    /// ```
    pub fn timeout_ms(mut self, ms: u64) -> RespOptions {
        self.timeout_ms = ms;
        self
    }

    /// A logical clock for tests (e.g. a [`ManualClock`](crate::ManualClock)
    /// moved by hours).
    ///
    /// **Without a clock** (the default), the clock is the server's
    /// `TIME`, and expiries are stored as they are (`SET … PXAT`), so the
    /// server expires keys by itself, with or without cairn running.
    ///
    /// **With a clock**, `now` comes from it, and the server, which
    /// expires keys by its own real clock, is kept out of the way: stored
    /// expiries are moved far into the real future (by a constant 2^47 ms,
    /// about 4,460 years, so a backend opened later reads them as
    /// written) and moved back on read, and an entry whose logical expiry
    /// is at or before the logical now is treated as absent. Logical
    /// expiries past 2^47 ms (the year 6429) are stored as that limit
    /// (`cairn serve` keeps expiries up to 2^48 ms). Such a store's
    /// expiries mean nothing to another client.
    ///
    /// ```
    /// let clock = cairn::ManualClock::new(1_000);
    /// let o = cairn::backend::resp::RespOptions::new("redis://127.0.0.1").clock(clock);
    /// ```
    pub fn clock(mut self, clock: impl Clock + 'static) -> RespOptions {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Connects, and finds whether the server runs scripts (`EVAL`);
    /// `cairn serve` does not, and gets the `WATCH` path.
    ///
    /// ```no_run
    /// let b = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379").open()?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a prefix with `{` or `}`, or a URL
    /// the client cannot parse; [`Error::Remote`] if the server cannot be
    /// reached, refuses the connection, or is a cluster without `EVAL`.
    pub fn open(self) -> Result<RespBackend> {
        if self.prefix.contains(['{', '}']) {
            return Err(Error::InvalidArgument(format!(
                "redis key prefix {:?}: it may not contain '{{' or '}}'",
                self.prefix
            )));
        }
        let timeout = Duration::from_millis(self.timeout_ms.max(1));
        let pool = Pool::new(&self.urls, self.cluster, self.pool_size, timeout)?;
        let scripts = Scripts::new();
        let has_eval = ops::load_scripts(&pool, &scripts)?;
        if self.cluster && !has_eval {
            return Err(Error::Remote {
                address: pool.address.clone(),
                message: "the cluster does not run scripts (EVAL), which a cluster backend needs"
                    .into(),
                maybe_applied: false,
            });
        }
        let clock = self.clock.map(TestClock::new);
        Ok(RespBackend(Arc::new(Inner {
            shared: Arc::new(Shared {
                pool,
                scripts,
                has_eval,
                clock,
            }),
            prefix: self.prefix.into_bytes(),
        })))
    }
}

struct Inner {
    shared: Arc<Shared>,
    prefix: Vec<u8>,
}

/// A module's [`Backend`] on a Redis-protocol server or cluster. Cheap to
/// clone; `Store::from(backend)` makes it a module's store.
///
/// ```no_run
/// use cairn::backend::{resp::RespOptions, Key, Store};
/// let store = Store::from(RespOptions::new("redis://127.0.0.1:6379").open()?);
/// store.update(&[Key::new(b"n".to_vec())], |u| {
///     u.put(0, b"1".to_vec(), None);
///     Ok(())
/// })?;
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone)]
pub struct RespBackend(Arc<Inner>);

impl fmt::Debug for RespBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RespBackend")
            .field("address", &self.0.shared.pool.address)
            .field("prefix", &String::from_utf8_lossy(&self.0.prefix))
            .field("eval", &self.0.shared.has_eval)
            .field("test_clock", &self.0.shared.clock.is_some())
            .finish()
    }
}

impl RespBackend {
    /// The same connections, with keys under `prefix + name + ":"`
    /// (as [`Db::keyspace`](crate::Db::keyspace) does for a `Db`). A `{`,
    /// `}` or `%` in `name` is stored as `%7B`, `%7D` or `%25`, so the
    /// prefix never holds a hash tag and two names never share one.
    ///
    /// ```no_run
    /// let b = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379").open()?;
    /// let sessions = b.namespace("sessions");
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn namespace(&self, name: &str) -> RespBackend {
        let mut prefix = self.0.prefix.clone();
        for b in name.bytes() {
            match b {
                b'{' => prefix.extend_from_slice(b"%7B"),
                b'}' => prefix.extend_from_slice(b"%7D"),
                b'%' => prefix.extend_from_slice(b"%25"),
                _ => prefix.push(b),
            }
        }
        prefix.push(b':');
        RespBackend(Arc::new(Inner {
            shared: self.0.shared.clone(),
            prefix,
        }))
    }

    /// The prefix of this backend's keys on the server.
    ///
    /// ```no_run
    /// let b = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379").open()?;
    /// assert_eq!(b.namespace("a{b}").prefix(), b"cairn:a%7Bb%7D:");
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn prefix(&self) -> &[u8] {
        &self.0.prefix
    }

    /// The key under which this backend stores `key` on the server:
    /// `prefix + "{" + tag + "}" + name`, or `prefix + name` without a
    /// tag (docs/format.md, "Module keys on a Redis-protocol server").
    ///
    /// ```no_run
    /// use cairn::backend::{resp::RespOptions, Key};
    /// let b = RespOptions::new("redis://127.0.0.1:6379").open()?.namespace("cache");
    /// let k = b.server_key(&Key::tagged(b"t1".to_vec(), b"n".to_vec()))?;
    /// assert_eq!(k, b"cairn:cache:{t1}n");
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a bad tag, or an untagged name that
    /// starts with `{`.
    pub fn server_key(&self, key: &Key) -> Result<Vec<u8>> {
        keys::encode(&self.0.prefix, key)
    }

    /// The server or cluster, as configured (no password).
    ///
    /// ```no_run
    /// let b = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379").open()?;
    /// assert_eq!(b.address(), "127.0.0.1:6379");
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn address(&self) -> &str {
        &self.0.shared.pool.address
    }

    /// Whether the server runs scripts (else updates use `WATCH`).
    ///
    /// ```no_run
    /// let b = cairn::backend::resp::RespOptions::new("redis://127.0.0.1:6379").open()?;
    /// assert!(b.has_eval());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn has_eval(&self) -> bool {
        self.0.shared.has_eval
    }
}

impl Backend for RespBackend {
    fn read(&self, keys: &[Key]) -> Result<Snapshot> {
        let stored = keys::encode_all(&self.0.prefix, keys, self.0.shared.is_cluster())?;
        ops::read(&self.0.shared, &stored)
    }

    fn update(&self, keys: &[Key], f: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()> {
        let stored = keys::encode_all(&self.0.prefix, keys, self.0.shared.is_cluster())?;
        ops::update(&self.0.shared, &stored, f)
    }

    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
        ops::scan(&self.0.shared, &self.0.prefix, prefix, f)
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn now_ms(&self) -> Result<u64> {
        // The test clock if there is one, else this host's clock: no round
        // trip, at the price of this host's skew from the server's.
        Ok(self
            .0
            .shared
            .now(crate::util::clock::SystemClock.now_unix_ms()))
    }
}

impl From<RespBackend> for Store {
    fn from(b: RespBackend) -> Store {
        Store::new(b)
    }
}
