//! Durable sessions: create, read, touch, update, rotate and revoke
//! sessions by id, with a per-user index for "log out everywhere".
//!
//! ```
//! use std::time::Duration;
//! let dir = tempfile::tempdir()?;
//! let db = cairn::Db::open(dir.path())?;
//! let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?)
//!     .max_lifetime(Duration::from_secs(7 * 24 * 3600));
//! let id = sessions.create_for_user("ada", br#"{"cart":[]}"#, Duration::from_secs(1800))?;
//! let s = sessions.get_and_touch(id.as_str())?.expect("live");
//! assert_eq!(s.data, br#"{"cart":[]}"#);
//! let id = sessions.rotate(id.as_str())?.expect("rotated"); // after login
//! assert_eq!(sessions.list_for_user("ada")?.len(), 1);
//! assert_eq!(sessions.revoke_all_for_user("ada")?, 1); // log out everywhere
//! assert!(sessions.get(id.as_str())?.is_none());
//! # Ok::<(), cairn::Error>(())
//! ```
//!
//! # How sessions are stored
//! A session id is 24 bytes from the operating system's CSPRNG (192
//! bits), base64url-encoded without padding into 32 characters. Ids are
//! never derived from time or counters. The first 12 bytes (the
//! *selector*) name the record: key `s` + selector. The other 12 bytes
//! (the *verifier*) are stored inside the record and compared in constant
//! time. A lookup's timing can therefore reveal at most whether a selector
//! exists, never anything about the verifier, so timing does not make
//! guessing easier. The data files hold the verifiers, like any session
//! store's: they are created private (0600) for this reason.
//!
//! A record holds a format byte, the creation time, the sliding idle TTL,
//! the verifier, the user (if any) and the data; the record's own cairn
//! TTL is the session's expiry, so expired sessions are invisible at once,
//! after a restart too, and are dropped by cairn's own sweep and
//! compaction without any job for the application to run. A user's index
//! (key `u` + user) lists the selectors of that user's sessions; it is
//! pruned of dead sessions whenever it is written and never lists them,
//! and its own TTL covers its longest-lived session.
//!
//! Every change is one atomic write (a [`Db::transaction`]), as durable as
//! the keyspace's [`SyncPolicy`](crate::SyncPolicy): use `Always` when a
//! session must survive a power loss, `EveryMillis` when losing the last
//! moments of session changes on a power loss is acceptable.

use std::time::Duration;

use crate::db::Db;
use crate::engine::txn::Txn;
use crate::error::{Error, Result};
use crate::util::rand::{b64url_decode, b64url_encode, constant_time_eq, secure_bytes};

const SELECTOR_BYTES: usize = 12;
const VERIFIER_BYTES: usize = 12;
const ID_BYTES: usize = SELECTOR_BYTES + VERIFIER_BYTES;
const FORMAT: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 8 + VERIFIER_BYTES + 2;
/// The longest user name, in bytes.
pub const MAX_USER_BYTES: usize = 1024;

/// A session id: 32 URL-safe characters carrying 192 random bits.
///
/// `Debug` shows only its first characters, so that ids do not end up in
/// logs whole; `Display` and [`SessionId::as_str`] give the full id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// The id as text, for a cookie.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    fn new(selector: &[u8; SELECTOR_BYTES], verifier: &[u8; VERIFIER_BYTES]) -> SessionId {
        let mut raw = [0u8; ID_BYTES];
        raw[..SELECTOR_BYTES].copy_from_slice(selector);
        raw[SELECTOR_BYTES..].copy_from_slice(verifier);
        SessionId(b64url_encode(&raw))
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionId({}…)", &self.0[..self.0.len().min(6)])
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The application's data.
    pub data: Vec<u8>,
    /// The user it was created for, if any.
    pub user: Option<String>,
    /// When it was created (Unix milliseconds). Rotation keeps it.
    pub created_unix_ms: u64,
    /// When it expires unless touched (Unix milliseconds).
    pub expires_unix_ms: u64,
    /// The sliding expiry: each touch moves the expiry to this far from
    /// now (never past the maximum lifetime).
    pub idle_ttl: Duration,
}

/// Durable sessions in one keyspace. Cheap to clone; share it between
/// threads.
#[derive(Clone, Debug)]
pub struct Sessions {
    db: Db,
    max_lifetime_ms: Option<u64>,
}

struct Parsed {
    selector: [u8; SELECTOR_BYTES],
    verifier: [u8; VERIFIER_BYTES],
}

fn parse_id(id: &str) -> Option<Parsed> {
    if id.len() != 32 {
        return None;
    }
    let raw = b64url_decode(id)?;
    let mut p = Parsed {
        selector: [0; SELECTOR_BYTES],
        verifier: [0; VERIFIER_BYTES],
    };
    p.selector.copy_from_slice(raw.get(..SELECTOR_BYTES)?);
    p.verifier
        .copy_from_slice(raw.get(SELECTOR_BYTES..ID_BYTES)?);
    Some(p)
}

fn session_key(selector: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + SELECTOR_BYTES);
    k.push(b's');
    k.extend_from_slice(selector);
    k
}

fn user_key(user: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + user.len());
    k.push(b'u');
    k.extend_from_slice(user.as_bytes());
    k
}

/// A decoded session record.
struct Record {
    created: u64,
    idle_ms: u64,
    verifier: [u8; VERIFIER_BYTES],
    user: Option<String>,
    data: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let user = self.user.as_deref().unwrap_or("");
        let mut v = Vec::with_capacity(HEADER + user.len() + self.data.len());
        v.push(FORMAT);
        v.push(u8::from(self.user.is_some()));
        v.extend_from_slice(&self.created.to_le_bytes());
        v.extend_from_slice(&self.idle_ms.to_le_bytes());
        v.extend_from_slice(&self.verifier);
        v.extend_from_slice(&(user.len() as u16).to_le_bytes());
        v.extend_from_slice(user.as_bytes());
        v.extend_from_slice(&self.data);
        v
    }

    fn decode(v: &[u8]) -> Result<Record> {
        let bad = |why: &str| Error::Malformed(format!("session record: {why}"));
        if v.len() < HEADER {
            return Err(bad("shorter than its header"));
        }
        if v[0] != FORMAT {
            return Err(bad(&format!("unknown format {}", v[0])));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut verifier = [0u8; VERIFIER_BYTES];
        verifier.copy_from_slice(&v[18..18 + VERIFIER_BYTES]);
        let user_len = usize::from(u16::from_le_bytes([v[HEADER - 2], v[HEADER - 1]]));
        let rest = &v[HEADER..];
        if rest.len() < user_len {
            return Err(bad("user name runs past the end"));
        }
        let user = match v[1] {
            0 => None,
            1 => Some(
                String::from_utf8(rest[..user_len].to_vec())
                    .map_err(|_| bad("user name is not UTF-8"))?,
            ),
            f => return Err(bad(&format!("unknown flags {f}"))),
        };
        Ok(Record {
            created: u64_at(2),
            idle_ms: u64_at(10),
            verifier,
            user,
            data: rest[user_len..].to_vec(),
        })
    }

    fn session(self, expires: u64) -> Session {
        Session {
            data: self.data,
            user: self.user,
            created_unix_ms: self.created,
            expires_unix_ms: expires,
            idle_ttl: Duration::from_millis(self.idle_ms),
        }
    }
}

/// A user's index: the selectors of their sessions.
fn decode_index(v: &[u8]) -> Result<Vec<[u8; SELECTOR_BYTES]>> {
    if v.first() != Some(&FORMAT) || !(v.len() - 1).is_multiple_of(SELECTOR_BYTES) {
        return Err(Error::Malformed("session user index".into()));
    }
    Ok(v[1..]
        .chunks_exact(SELECTOR_BYTES)
        .map(|c| {
            let mut s = [0u8; SELECTOR_BYTES];
            s.copy_from_slice(c);
            s
        })
        .collect())
}

fn encode_index(sels: &[[u8; SELECTOR_BYTES]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + sels.len() * SELECTOR_BYTES);
    v.push(FORMAT);
    for s in sels {
        v.extend_from_slice(s);
    }
    v
}

/// Whole milliseconds, rounded up: a TTL under a millisecond still lives
/// 1 ms instead of being born expired.
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

impl Sessions {
    /// Sessions stored in `db`, usually a keyspace of their own
    /// (`db.keyspace("sessions")?`), with no maximum lifetime.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(db: Db) -> Sessions {
        Sessions {
            db,
            max_lifetime_ms: None,
        }
    }

    /// Sets an absolute maximum lifetime: no session outlives its creation
    /// by more than `lifetime`, however often it is touched (rotation keeps
    /// the creation time). OWASP recommends one for every application.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?)
    ///     .max_lifetime(Duration::from_secs(12 * 3600));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Duration) -> Sessions {
        self.max_lifetime_ms = Some(ms(lifetime).max(1));
        self
    }

    /// The store the sessions live in.
    pub fn db(&self) -> &Db {
        &self.db
    }

    fn cap(&self, created: u64, expires: u64) -> u64 {
        match self.max_lifetime_ms {
            Some(m) => expires.min(created.saturating_add(m)),
            None => expires,
        }
    }

    /// Creates a session holding `data` that expires `ttl` from now unless
    /// touched, and returns its new id.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"{}", Duration::from_secs(1800))?;
    /// assert_eq!(id.as_str().len(), 32);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidTtl`] for a zero `ttl`, [`Error::ValueTooLarge`],
    /// [`Error::Io`] when the CSPRNG or the write fails.
    pub fn create(&self, data: impl AsRef<[u8]>, ttl: Duration) -> Result<SessionId> {
        self.create_inner(None, data.as_ref(), ttl)
    }

    /// As [`Sessions::create`], and lists the session in `user`'s index
    /// (see [`Sessions::list_for_user`]).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create_for_user("ada", b"{}", Duration::from_secs(1800))?;
    /// assert_eq!(sessions.get(id.as_str())?.and_then(|s| s.user).as_deref(), Some("ada"));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::create`]; [`Error::InvalidOptions`] for a user name
    /// longer than [`MAX_USER_BYTES`].
    pub fn create_for_user(
        &self,
        user: &str,
        data: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Result<SessionId> {
        if user.len() > MAX_USER_BYTES {
            return Err(Error::InvalidOptions(format!(
                "a session user name holds at most {MAX_USER_BYTES} bytes"
            )));
        }
        self.create_inner(Some(user), data.as_ref(), ttl)
    }

    fn create_inner(&self, user: Option<&str>, data: &[u8], ttl: Duration) -> Result<SessionId> {
        if ttl.is_zero() {
            return Err(Error::InvalidTtl);
        }
        let mut selector = [0u8; SELECTOR_BYTES];
        let mut verifier = [0u8; VERIFIER_BYTES];
        secure_bytes(&mut verifier)?;
        self.db.transaction(|tx| {
            // A collision of 96 random bits does not happen in practice;
            // never overwrite a session if it does.
            loop {
                secure_bytes(&mut selector)?;
                if tx.get_entry(&session_key(&selector))?.is_none() {
                    break;
                }
            }
            let now = tx.now_ms();
            let rec = Record {
                created: now,
                idle_ms: ms(ttl),
                verifier,
                user: user.map(str::to_owned),
                data: data.to_vec(),
            };
            let expires = self.cap(now, now.saturating_add(ms(ttl)));
            tx.put_expiring_at(&session_key(&selector), rec.encode(), expires);
            if let Some(user) = user {
                self.index_add(tx, user, selector, expires)?;
            }
            Ok(())
        })?;
        Ok(SessionId::new(&selector, &verifier))
    }

    /// Reads a session record inside a transaction, checking the verifier.
    fn read_tx(&self, tx: &Txn<'_>, id: &Parsed) -> Result<Option<(Record, u64)>> {
        let Some((v, expires)) = tx.get_entry(&session_key(&id.selector))? else {
            return Ok(None);
        };
        let rec = Record::decode(&v)?;
        Ok(constant_time_eq(&rec.verifier, &id.verifier).then_some((rec, expires)))
    }

    /// Adds `selector` to `user`'s index, dropping dead sessions from it,
    /// and keeps the index alive at least until `expires`.
    fn index_add(
        &self,
        tx: &mut Txn<'_>,
        user: &str,
        selector: [u8; SELECTOR_BYTES],
        expires: u64,
    ) -> Result<()> {
        let key = user_key(user);
        let (mut sels, idx_exp) = match tx.get_entry(&key)? {
            Some((v, e)) => (decode_index(&v)?, e),
            None => (Vec::new(), 0),
        };
        let mut live = Vec::with_capacity(sels.len() + 1);
        for s in sels.drain(..) {
            if tx.get_entry(&session_key(&s))?.is_some() {
                live.push(s);
            }
        }
        live.push(selector);
        tx.put_expiring_at(&key, encode_index(&live), idx_exp.max(expires));
        Ok(())
    }

    /// Removes `selectors` (and dead sessions) from `user`'s index.
    fn index_remove(
        &self,
        tx: &mut Txn<'_>,
        user: &str,
        gone: &[u8; SELECTOR_BYTES],
    ) -> Result<()> {
        let key = user_key(user);
        let Some((v, exp)) = tx.get_entry(&key)? else {
            return Ok(());
        };
        let mut live = Vec::new();
        for s in decode_index(&v)? {
            if &s != gone && tx.get_entry(&session_key(&s))?.is_some() {
                live.push(s);
            }
        }
        if live.is_empty() {
            tx.delete(&key);
        } else {
            tx.put_expiring_at(&key, encode_index(&live), exp);
        }
        Ok(())
    }

    /// Keeps `user`'s index alive at least until `expires`. To spare a
    /// write on most touches, it is extended by twice what is needed.
    fn index_cover(&self, tx: &mut Txn<'_>, user: &str, expires: u64, now: u64) -> Result<()> {
        let key = user_key(user);
        if let Some((v, exp)) = tx.get_entry(&key)? {
            if exp != 0 && exp < expires {
                let slack = expires.saturating_sub(now);
                tx.put_expiring_at(&key, v, expires.saturating_add(slack));
            }
        }
        Ok(())
    }

    /// The session `id`, or `None` if it is unknown, expired or revoked
    /// (or `id` is not a well-formed id).
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"hello", Duration::from_secs(60))?;
    /// assert_eq!(sessions.get(id.as_str())?.map(|s| s.data), Some(b"hello".to_vec()));
    /// assert_eq!(sessions.get("not-an-id")?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] / [`Error::Corruption`] when the record cannot be
    /// read, [`Error::Malformed`] when it was not written by this module.
    pub fn get(&self, id: &str) -> Result<Option<Session>> {
        let Some(p) = parse_id(id) else {
            return Ok(None);
        };
        let Some((v, expires)) = self.db.read_live(&session_key(&p.selector))? else {
            return Ok(None);
        };
        let rec = Record::decode(&v)?;
        if !constant_time_eq(&rec.verifier, &p.verifier) {
            return Ok(None);
        }
        Ok(Some(rec.session(expires)))
    }

    /// Extends the session's sliding expiry to its idle TTL from now
    /// (never past the maximum lifetime). Returns whether it was live.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"", Duration::from_secs(60))?;
    /// assert!(sessions.touch(id.as_str())?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::get`], and the errors of a write.
    pub fn touch(&self, id: &str) -> Result<bool> {
        Ok(self.get_and_touch(id)?.is_some())
    }

    /// [`Sessions::get`] and [`Sessions::touch`] in one atomic call: the
    /// session with its new expiry.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"x", Duration::from_secs(60))?;
    /// let s = sessions.get_and_touch(id.as_str())?.expect("live");
    /// assert_eq!(s.data, b"x");
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::touch`].
    pub fn get_and_touch(&self, id: &str) -> Result<Option<Session>> {
        let Some(p) = parse_id(id) else {
            return Ok(None);
        };
        self.db.transaction(|tx| {
            let Some((rec, expires)) = self.read_tx(tx, &p)? else {
                return Ok(None);
            };
            let now = tx.now_ms();
            let new = self.cap(rec.created, now.saturating_add(rec.idle_ms));
            if new <= expires {
                return Ok(Some(rec.session(expires)));
            }
            tx.put_expiring_at(&session_key(&p.selector), rec.encode(), new);
            if let Some(user) = &rec.user {
                self.index_cover(tx, user, new, now)?;
            }
            Ok(Some(rec.session(new)))
        })
    }

    /// Replaces the session's data, keeping its expiry. Returns whether it
    /// was live.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"old", Duration::from_secs(60))?;
    /// assert!(sessions.update(id.as_str(), b"new")?);
    /// assert_eq!(sessions.get(id.as_str())?.map(|s| s.data), Some(b"new".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::touch`]; [`Error::ValueTooLarge`].
    pub fn update(&self, id: &str, data: impl AsRef<[u8]>) -> Result<bool> {
        let Some(p) = parse_id(id) else {
            return Ok(false);
        };
        self.db.transaction(|tx| {
            let Some((mut rec, expires)) = self.read_tx(tx, &p)? else {
                return Ok(false);
            };
            rec.data = data.as_ref().to_vec();
            tx.put_expiring_at(&session_key(&p.selector), rec.encode(), expires);
            Ok(true)
        })
    }

    /// Gives the session a new id and invalidates the old one, atomically:
    /// the data, user, creation time and expiry stay. Call it after a login
    /// or a privilege change, against session fixation. `None` if the
    /// session was not live.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let old = sessions.create(b"cart", Duration::from_secs(60))?;
    /// let new = sessions.rotate(old.as_str())?.expect("live");
    /// assert!(sessions.get(old.as_str())?.is_none());
    /// assert_eq!(sessions.get(new.as_str())?.map(|s| s.data), Some(b"cart".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::create`].
    pub fn rotate(&self, id: &str) -> Result<Option<SessionId>> {
        let Some(p) = parse_id(id) else {
            return Ok(None);
        };
        let mut verifier = [0u8; VERIFIER_BYTES];
        secure_bytes(&mut verifier)?;
        self.db.transaction(|tx| {
            let Some((mut rec, expires)) = self.read_tx(tx, &p)? else {
                return Ok(None);
            };
            let mut selector = [0u8; SELECTOR_BYTES];
            loop {
                secure_bytes(&mut selector)?;
                if selector != p.selector && tx.get_entry(&session_key(&selector))?.is_none() {
                    break;
                }
            }
            tx.delete(session_key(&p.selector));
            rec.verifier = verifier;
            tx.put_expiring_at(&session_key(&selector), rec.encode(), expires);
            if let Some(user) = &rec.user {
                self.index_remove(tx, user, &p.selector)?;
                self.index_add(tx, user, selector, expires)?;
            }
            Ok(Some(SessionId::new(&selector, &verifier)))
        })
    }

    /// Ends the session. Returns whether it was live.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create(b"", Duration::from_secs(60))?;
    /// assert!(sessions.revoke(id.as_str())?);
    /// assert!(!sessions.revoke(id.as_str())?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::touch`].
    pub fn revoke(&self, id: &str) -> Result<bool> {
        let Some(p) = parse_id(id) else {
            return Ok(false);
        };
        self.db.transaction(|tx| {
            let Some((rec, _)) = self.read_tx(tx, &p)? else {
                return Ok(false);
            };
            tx.delete(session_key(&p.selector));
            if let Some(user) = &rec.user {
                self.index_remove(tx, user, &p.selector)?;
            }
            Ok(true)
        })
    }

    /// The live sessions of `user` (created with
    /// [`Sessions::create_for_user`]), oldest first. Never lists an expired
    /// or revoked session.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let phone = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// let laptop = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// sessions.revoke(phone.as_str())?;
    /// let ids: Vec<_> = sessions.list_for_user("ada")?.into_iter().map(|(id, _)| id).collect();
    /// assert_eq!(ids, [laptop]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::get`].
    pub fn list_for_user(&self, user: &str) -> Result<Vec<(SessionId, Session)>> {
        let Some(v) = self.db.get(user_key(user))? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for sel in decode_index(&v)? {
            let key = session_key(&sel);
            let Some(v) = self.db.get(&key)? else {
                continue;
            };
            let rec = Record::decode(&v)?;
            if rec.user.as_deref() != Some(user) {
                continue;
            }
            let id = SessionId::new(&sel, &rec.verifier);
            if let Some(s) = self.get(id.as_str())? {
                out.push((id, s));
            }
        }
        out.sort_by_key(|(_, s)| s.created_unix_ms);
        Ok(out)
    }

    /// Revokes every session of `user` ("log out everywhere"), atomically,
    /// and returns how many were live.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let a = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// assert_eq!(sessions.revoke_all_for_user("ada")?, 2);
    /// assert!(sessions.get(a.as_str())?.is_none());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::touch`].
    pub fn revoke_all_for_user(&self, user: &str) -> Result<u64> {
        self.db.transaction(|tx| {
            let key = user_key(user);
            let Some((v, _)) = tx.get_entry(&key)? else {
                return Ok(0);
            };
            let mut n = 0;
            for sel in decode_index(&v)? {
                let skey = session_key(&sel);
                if tx.get_entry(&skey)?.is_some() {
                    tx.delete(&skey);
                    n += 1;
                }
            }
            tx.delete(&key);
            Ok(n)
        })
    }
}

#[cfg(feature = "serde")]
impl Sessions {
    /// [`Sessions::create`] with typed data, encoded with postcard.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create_typed(&("ada".to_string(), 3u32), Duration::from_secs(60))?;
    /// let data: Option<(String, u32)> = sessions.get_typed(id.as_str())?;
    /// assert_eq!(data, Some(("ada".to_string(), 3)));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::create`]; [`Error::Serde`] when `data` cannot be
    /// encoded.
    pub fn create_typed<T: serde::Serialize + ?Sized>(
        &self,
        data: &T,
        ttl: Duration,
    ) -> Result<SessionId> {
        self.create(postcard::to_stdvec(data).map_err(Error::Serde)?, ttl)
    }

    /// [`Sessions::get`], decoding the data.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create_typed(&vec![1u8, 2], Duration::from_secs(60))?;
    /// assert_eq!(sessions.get_typed::<Vec<u8>>(id.as_str())?, Some(vec![1, 2]));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::get`]; [`Error::Serde`] when the data does not decode
    /// as a `T`.
    pub fn get_typed<T: serde::de::DeserializeOwned>(&self, id: &str) -> Result<Option<T>> {
        match self.get(id)? {
            Some(s) => Ok(Some(postcard::from_bytes(&s.data).map_err(Error::Serde)?)),
            None => Ok(None),
        }
    }

    /// [`Sessions::update`] with typed data.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create_typed(&1u32, Duration::from_secs(60))?;
    /// assert!(sessions.update_typed(id.as_str(), &2u32)?);
    /// assert_eq!(sessions.get_typed::<u32>(id.as_str())?, Some(2));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::update`]; [`Error::Serde`].
    pub fn update_typed<T: serde::Serialize + ?Sized>(&self, id: &str, data: &T) -> Result<bool> {
        self.update(id, postcard::to_stdvec(data).map_err(Error::Serde)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        let r = Record {
            created: 7,
            idle_ms: 9,
            verifier: [3; VERIFIER_BYTES],
            user: Some("ada".into()),
            data: b"data".to_vec(),
        };
        let d = Record::decode(&r.encode()).expect("decode");
        assert_eq!(
            (d.created, d.idle_ms, d.verifier),
            (7, 9, [3; VERIFIER_BYTES])
        );
        assert_eq!(
            (d.user.as_deref(), d.data.as_slice()),
            (Some("ada"), &b"data"[..])
        );
        let enc = r.encode();
        for cut in 0..HEADER + 3 {
            assert!(Record::decode(&enc[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = enc.clone();
        bad[0] = 2;
        assert!(Record::decode(&bad).is_err());
    }

    #[test]
    fn ids_parse_only_when_well_formed() {
        let id = SessionId::new(&[1; SELECTOR_BYTES], &[2; VERIFIER_BYTES]);
        let p = parse_id(id.as_str()).expect("parse");
        assert_eq!((p.selector, p.verifier), ([1; 12], [2; 12]));
        assert!(id
            .as_str()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert!(parse_id(&id.as_str()[1..]).is_none());
        assert!(parse_id(&format!("{}=", &id.as_str()[1..])).is_none());
        assert!(!format!("{id:?}").contains(id.as_str()));
    }
}
