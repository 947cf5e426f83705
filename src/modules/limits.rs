//! Rate limits and idempotency keys that survive restarts.
//!
//! - [`FixedWindow`]: at most `limit` units per window, the window starting
//!   at a key's first request (Redis's `INCR` + `EXPIRE` pattern, in one
//!   atomic write).
//! - [`Gcra`]: the generic cell rate algorithm, a smooth limiter: `limit`
//!   units per period, spread evenly, with bursts of up to `burst`.
//! - [`Idempotency`]: claim an operation exactly once, store its outcome,
//!   and hand that outcome to retries.
//!
//! Each decision is one atomic update of one key through the limiter's
//! [`Store`]: a [`Db::transaction`](crate::Db::transaction) on the
//! embedded store, as durable as its [`SyncPolicy`](crate::SyncPolicy); a
//! compare-and-apply script on a Redis-protocol server (see
//! [`backend`](crate::backend)), judged by the server's clock so that
//! every process and host shares one limit. A refused request writes
//! nothing. Several limiters and idempotency keys
//! can share a keyspace: each one's keys start with its kind and name.
//!
//! ```
//! use std::time::Duration;
//! let dir = tempfile::tempdir()?;
//! let db = cairn::Db::open(dir.path())?;
//! let login = cairn::limits::FixedWindow::new(db.keyspace("limits")?, "login", 5, Duration::from_secs(60))?;
//! for _ in 0..5 {
//!     assert!(login.check("10.0.0.1")?.allowed);
//! }
//! let d = login.check("10.0.0.1")?;
//! assert!(!d.allowed);
//! assert!(d.retry_after > Duration::ZERO);
//! # Ok::<(), cairn::Error>(())
//! ```

use std::time::Duration;

use crate::backend::{Key, Store};
use crate::error::{Error, Result};

/// What a limiter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go ahead (and was counted).
    pub allowed: bool,
    /// The limit the decision was made against.
    pub limit: u64,
    /// How many more units would be allowed right now.
    pub remaining: u64,
    /// When refused, how long until the same request would be allowed;
    /// zero when allowed.
    pub retry_after: Duration,
    /// How long until the limiter is back to its full allowance.
    pub reset_after: Duration,
}

/// The key of limiter `name` of kind `tag` for the caller's `key`: kinds
/// and names never collide, with each other or with idempotency keys.
fn named_key(tag: u8, name: &str, key: &[u8]) -> Key {
    let mut k = Vec::with_capacity(3 + name.len() + key.len());
    k.push(tag);
    k.extend_from_slice(&(name.len() as u16).to_le_bytes());
    k.extend_from_slice(name.as_bytes());
    k.extend_from_slice(key);
    Key::new(k)
}

const TAG_FIXED: u8 = b'f';
const TAG_GCRA: u8 = b'g';
const TAG_IDEMPOTENCY: u8 = b'i';

fn check_name(name: &str) -> Result<()> {
    if name.len() > 255 {
        return Err(Error::InvalidOptions(
            "a limiter name holds at most 255 bytes".into(),
        ));
    }
    Ok(())
}

fn u64_value(v: &[u8], what: &str) -> Result<u64> {
    let b: [u8; 8] = v
        .try_into()
        .map_err(|_| Error::Malformed(format!("{what}: expected 8 bytes, found {}", v.len())))?;
    Ok(u64::from_le_bytes(b))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A fixed-window counter: at most `limit` units per `window` per key,
/// each key's window starting at its first request.
#[derive(Clone, Debug)]
pub struct FixedWindow {
    store: Store,
    name: String,
    limit: u64,
    window_ms: u64,
}

impl FixedWindow {
    /// A limiter named `name` in `db`, allowing `limit` units per `window`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let api = cairn::limits::FixedWindow::new(db, "api", 100, Duration::from_secs(1))?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a zero `limit`, a window under a
    /// millisecond or a name over 255 bytes.
    pub fn new(
        store: impl Into<Store>,
        name: &str,
        limit: u64,
        window: Duration,
    ) -> Result<FixedWindow> {
        check_name(name)?;
        if limit == 0 || ms(window) == 0 {
            return Err(Error::InvalidOptions(
                "a fixed window needs a limit above zero and a window of at least 1 ms".into(),
            ));
        }
        Ok(FixedWindow {
            store: store.into(),
            name: name.to_string(),
            limit,
            window_ms: ms(window),
        })
    }

    /// Counts one unit for `key` if the window allows it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let l = cairn::limits::FixedWindow::new(db, "api", 2, Duration::from_secs(1))?;
    /// assert_eq!(l.check("k")?.remaining, 1);
    /// assert_eq!(l.check("k")?.remaining, 0);
    /// assert!(!l.check("k")?.allowed);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// The errors of a write, [`Error::KeyTooLarge`], and
    /// [`Error::Malformed`] if something else wrote under the limiter's keys.
    pub fn check(&self, key: impl AsRef<[u8]>) -> Result<Decision> {
        self.check_n(key, 1)
    }

    /// Counts `cost` units for `key` if the window allows all of them
    /// (nothing is counted otherwise).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let l = cairn::limits::FixedWindow::new(db, "bytes", 1000, Duration::from_secs(1))?;
    /// assert!(l.check_n("k", 800)?.allowed);
    /// assert!(!l.check_n("k", 300)?.allowed);
    /// assert!(l.check_n("k", 200)?.allowed);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`FixedWindow::check`].
    pub fn check_n(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision> {
        let k = named_key(TAG_FIXED, &self.name, key.as_ref());
        self.store.update(std::slice::from_ref(&k), |tx| {
            let now = tx.now_ms();
            let (count, expires) = match tx.get(0) {
                Some(e) => (
                    u64_value(&e.value, "fixed-window counter")?,
                    // A counter without an expiry was not written here:
                    // give it a window rather than keep it forever.
                    e.expires_at_ms
                        .unwrap_or_else(|| now.saturating_add(self.window_ms)),
                ),
                None => (0, now.saturating_add(self.window_ms)),
            };
            let reset_after = Duration::from_millis(expires.saturating_sub(now));
            let after = count.saturating_add(cost);
            if after > self.limit {
                return Ok(Decision {
                    allowed: false,
                    limit: self.limit,
                    remaining: self.limit.saturating_sub(count),
                    retry_after: if cost > self.limit {
                        Duration::MAX
                    } else {
                        reset_after
                    },
                    reset_after,
                });
            }
            tx.put(0, after.to_le_bytes().to_vec(), Some(expires));
            Ok(Decision {
                allowed: true,
                limit: self.limit,
                remaining: self.limit - after,
                retry_after: Duration::ZERO,
                reset_after,
            })
        })
    }
}

/// The generic cell rate algorithm: `limit` units per `period`, spread
/// evenly (one every `period / limit`), with bursts of up to `burst`
/// units (by default `limit`). It keeps one timestamp per key.
#[derive(Clone, Debug)]
pub struct Gcra {
    store: Store,
    name: String,
    limit: u64,
    /// The emission interval, in microseconds.
    interval_us: u64,
    burst: u64,
}

impl Gcra {
    /// A limiter named `name` in `db`, allowing `limit` units per `period`
    /// with bursts of up to `limit`.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let l = cairn::limits::Gcra::new(db, "api", 10, Duration::from_secs(1))?.burst(2);
    /// assert!(l.check("k")?.allowed);
    /// assert!(l.check("k")?.allowed);
    /// let d = l.check("k")?; // the burst is spent: one more every 100 ms
    /// assert!(!d.allowed);
    /// assert!(d.retry_after <= Duration::from_millis(100));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a zero `limit`, or a `period` shorter
    /// than `limit` milliseconds (the clock counts milliseconds, so one key
    /// can be allowed at most 1000 units a second).
    pub fn new(store: impl Into<Store>, name: &str, limit: u64, period: Duration) -> Result<Gcra> {
        check_name(name)?;
        let period_us = u64::try_from(period.as_micros()).unwrap_or(u64::MAX);
        // The store's clock counts milliseconds: a finer interval would be
        // enforced as 1 ms and admit far less than asked.
        if limit == 0 || period_us / limit < 1000 {
            return Err(Error::InvalidOptions(
                "GCRA needs a limit above zero and at least 1 ms per unit (at most 1000 per second)".into(),
            ));
        }
        Ok(Gcra {
            store: store.into(),
            name: name.to_string(),
            limit,
            interval_us: period_us / limit,
            burst: limit,
        })
    }

    /// Sets the largest burst (at least 1).
    #[must_use]
    pub fn burst(mut self, burst: u64) -> Gcra {
        self.burst = burst.max(1);
        self
    }

    /// Admits one unit for `key` if the rate allows it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let l = cairn::limits::Gcra::new(db, "api", 3, Duration::from_secs(3))?;
    /// assert_eq!(l.check("k")?.remaining, 2);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`FixedWindow::check`].
    pub fn check(&self, key: impl AsRef<[u8]>) -> Result<Decision> {
        self.check_n(key, 1)
    }

    /// Admits `cost` units for `key` if the rate allows all of them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let l = cairn::limits::Gcra::new(db, "api", 10, Duration::from_secs(1))?;
    /// assert!(l.check_n("k", 10)?.allowed);
    /// assert!(!l.check_n("k", 1)?.allowed);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`FixedWindow::check`].
    pub fn check_n(&self, key: impl AsRef<[u8]>, cost: u64) -> Result<Decision> {
        let k = named_key(TAG_GCRA, &self.name, key.as_ref());
        let t = self.interval_us;
        let capacity = t.saturating_mul(self.burst);
        self.store.update(std::slice::from_ref(&k), |tx| {
            let now = tx.now_ms().saturating_mul(1000);
            let tat = match tx.get(0) {
                Some(e) => u64_value(&e.value, "GCRA timestamp")?.max(now),
                None => now,
            };
            let new_tat = tat.saturating_add(t.saturating_mul(cost));
            // The earliest time at which `new_tat` fits in the burst.
            let allow_at = new_tat.saturating_sub(capacity);
            let us = Duration::from_micros;
            if now < allow_at || cost > self.burst {
                return Ok(Decision {
                    allowed: false,
                    limit: self.burst,
                    remaining: capacity.saturating_sub(tat - now) / t,
                    retry_after: if cost > self.burst {
                        Duration::MAX
                    } else {
                        us(allow_at - now)
                    },
                    reset_after: us(tat - now),
                });
            }
            // Kept until the bucket is full again; then it can go.
            let expires_ms = new_tat.div_ceil(1000).max(now / 1000 + 1);
            tx.put(0, new_tat.to_le_bytes().to_vec(), Some(expires_ms));
            Ok(Decision {
                allowed: true,
                limit: self.burst,
                remaining: capacity.saturating_sub(new_tat - now) / t,
                retry_after: Duration::ZERO,
                reset_after: us(new_tat - now),
            })
        })
    }

    /// The limit per period this limiter was made with.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// What [`Idempotency::begin`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// This caller claimed the operation: run it, then pass the claim to
    /// [`Idempotency::complete`] (or [`Idempotency::abort`] on failure).
    Started(Claim),
    /// An earlier attempt claimed it and has not completed yet.
    InProgress {
        /// When that attempt claimed it (Unix milliseconds).
        started_unix_ms: u64,
    },
    /// An earlier attempt completed it with this outcome.
    Completed(Vec<u8>),
}

/// A claim on an idempotency key, returned by [`Idempotency::begin`]. Only
/// its holder can complete or abort the operation: a worker whose lease
/// ran out and was taken over cannot overwrite or release the new claim.
#[derive(Clone, PartialEq, Eq)]
pub struct Claim {
    key: Vec<u8>,
    token: u64,
}

impl Claim {
    /// The idempotency key claimed.
    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("key", &String::from_utf8_lossy(&self.key))
            .finish_non_exhaustive()
    }
}

/// Idempotency keys: each key's operation runs once, and retries get its
/// stored outcome.
#[derive(Clone, Debug)]
pub struct Idempotency {
    store: Store,
    lease_ms: Option<u64>,
}

const CLAIMED: u8 = 0;
const DONE: u8 = 1;

impl Idempotency {
    /// Idempotency keys stored in `db`, usually a keyspace of their own.
    /// A claim lasts as long as the key's TTL unless a lease is set.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let idem = cairn::limits::Idempotency::new(db.keyspace("idempotency")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(store: impl Into<Store>) -> Idempotency {
        Idempotency {
            store: store.into(),
            lease_ms: None,
        }
    }

    /// A claim that has not completed within `lease` may be taken over by
    /// a later [`Idempotency::begin`] (the first worker is presumed dead;
    /// its claim no longer completes or aborts anything).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Idempotency {
        self.lease_ms = Some(ms(lease).max(1));
        self
    }

    /// Claims `key` for `ttl` (which also bounds how long the outcome is
    /// kept), or reports the earlier attempt's state.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cairn::limits::{Begin, Idempotency};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let idem = Idempotency::new(db);
    /// let day = Duration::from_secs(86_400);
    /// let Begin::Started(claim) = idem.begin("order-42", day)? else { panic!("new key") };
    /// assert!(matches!(idem.begin("order-42", day)?, Begin::InProgress { .. }));
    /// idem.complete(&claim, b"201 Created")?;
    /// assert_eq!(idem.begin("order-42", day)?, Begin::Completed(b"201 Created".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTtl`] for a zero `ttl`, the errors of a write, and
    /// [`Error::Malformed`] if something else wrote under `key`.
    pub fn begin(&self, key: impl AsRef<[u8]>, ttl: Duration) -> Result<Begin> {
        if ttl.is_zero() {
            return Err(Error::InvalidTtl);
        }
        let key = key.as_ref();
        let stored = idem_key(key);
        let mut t = [0u8; 8];
        crate::util::rand::secure_bytes(&mut t)?;
        let token = u64::from_le_bytes(t);
        self.store.update(std::slice::from_ref(&stored), |tx| {
            let now = tx.now_ms();
            if let Some(e) = tx.get(0) {
                let r = decode(&e.value)?;
                if r.state == DONE {
                    return Ok(Begin::Completed(r.outcome.to_vec()));
                }
                let stale = self
                    .lease_ms
                    .is_some_and(|l| now >= r.started.saturating_add(l));
                if !stale {
                    return Ok(Begin::InProgress {
                        started_unix_ms: r.started,
                    });
                }
            }
            let expires = crate::types::expiry_after(now, ttl)?;
            tx.put(0, encode(CLAIMED, now, token, b""), Some(expires));
            Ok(Begin::Started(Claim {
                key: key.to_vec(),
                token,
            }))
        })
    }

    /// Stores the outcome of the operation `claim` holds, keeping the TTL
    /// given to [`Idempotency::begin`]. Returns `false` (and stores
    /// nothing) when the claim no longer holds: the key expired, was
    /// aborted, completed, or taken over after the lease ran out.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cairn::limits::{Begin, Idempotency};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let idem = Idempotency::new(db);
    /// let Begin::Started(claim) = idem.begin("k", Duration::from_secs(60))? else { panic!() };
    /// assert!(idem.complete(&claim, b"done")?);
    /// assert!(!idem.complete(&claim, b"again")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Idempotency::begin`].
    pub fn complete(&self, claim: &Claim, outcome: impl AsRef<[u8]>) -> Result<bool> {
        let stored = idem_key(&claim.key);
        let outcome = outcome.as_ref();
        self.store.update(std::slice::from_ref(&stored), |tx| {
            let Some(e) = tx.get(0) else {
                return Ok(false);
            };
            let r = decode(&e.value)?;
            if r.state != CLAIMED || r.token != claim.token {
                return Ok(false);
            }
            let v = encode(DONE, r.started, r.token, outcome);
            let expires = e.expires_at_ms;
            tx.put(0, v, expires);
            Ok(true)
        })
    }

    /// Releases `claim` after a failed attempt, so that a retry can start
    /// over. Returns whether the claim still held; a completed outcome is
    /// never removed.
    ///
    /// ```
    /// # use std::time::Duration;
    /// use cairn::limits::{Begin, Idempotency};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let idem = Idempotency::new(db);
    /// let Begin::Started(claim) = idem.begin("k", Duration::from_secs(60))? else { panic!() };
    /// assert!(idem.abort(&claim)?);
    /// assert!(matches!(idem.begin("k", Duration::from_secs(60))?, Begin::Started(_)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Idempotency::begin`].
    pub fn abort(&self, claim: &Claim) -> Result<bool> {
        let stored = idem_key(&claim.key);
        self.store
            .update(std::slice::from_ref(&stored), |tx| match tx.get(0) {
                Some(e) => {
                    let r = decode(&e.value)?;
                    if r.state == CLAIMED && r.token == claim.token {
                        tx.delete(0);
                        Ok(true)
                    } else {
                        Ok(false)
                    }
                }
                None => Ok(false),
            })
    }
}

fn idem_key(key: &[u8]) -> Key {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(TAG_IDEMPOTENCY);
    k.extend_from_slice(key);
    Key::new(k)
}

struct IdemRecord<'a> {
    state: u8,
    started: u64,
    token: u64,
    outcome: &'a [u8],
}

fn encode(state: u8, started: u64, token: u64, outcome: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(17 + outcome.len());
    v.push(state);
    v.extend_from_slice(&started.to_le_bytes());
    v.extend_from_slice(&token.to_le_bytes());
    v.extend_from_slice(outcome);
    v
}

fn decode(v: &[u8]) -> Result<IdemRecord<'_>> {
    if v.len() < 17 || v[0] > DONE {
        return Err(Error::Malformed("idempotency record".into()));
    }
    Ok(IdemRecord {
        state: v[0],
        started: u64_value(&v[1..9], "idempotency record")?,
        token: u64_value(&v[9..17], "idempotency record")?,
        outcome: &v[17..],
    })
}
