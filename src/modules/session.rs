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
//! A session id is 24 bytes (192 bits), base64url-encoded without padding
//! into 32 characters, all from the operating system's CSPRNG. On a
//! remote store (and on the embedded store for a user's session once a
//! [`Sessions::tag_secret`] is set), its first 16 bits are not drawn
//! afresh in two cases (see below): a user's session takes them from a
//! keyed hash of its user name, and a rotated session keeps those of the
//! id it replaces; the other 176 bits are random in every case. Ids are never derived from
//! time or counters. The first 12 bytes (the
//! *selector*) name the record: key `s` + selector. The other 12 bytes
//! (the *verifier*) are never stored: the record holds the SHA-256 hash
//! of the id's 24 bytes, and a lookup compares the hash of the id it is
//! given with it in constant time. A copy of the data files (a leaked
//! backup, a stolen disk) therefore holds no id that would be accepted,
//! and a lookup's timing reveals at most whether a selector exists. The
//! selector alone, as a [`SessionHandle`], names a session in
//! [`Sessions::list_for_user`] without being able to authenticate as it.
//!
//! A record holds a format byte (2), the creation time, the sliding idle
//! TTL, the hash, the user (if any) and the data. Records written before
//! the hash (format 1) hold the verifier itself: they are still read, and
//! rewritten with the hash on their next write (a touch that moves the
//! expiry, an update, a rotation); see the guide's security section for
//! how to purge them at once. The record's own cairn
//! TTL is the session's expiry, so expired sessions are invisible at once,
//! after a restart too, and are dropped by cairn's own sweep and
//! compaction without any job for the application to run. A user's index
//! (key `u` + user) lists the selectors of that user's sessions; it is
//! pruned of dead sessions whenever it is written and never lists them,
//! and its own TTL covers its longest-lived session.
//!
//! # Where the records live
//! [`Sessions::new`] takes any [`Store`]: a [`Db`](crate::Db) or a
//! keyspace of one (embedded), or a remote store. Every change is one
//! atomic [`Store::update`] of the keys it touches. On the embedded store
//! that is one transaction (an operation on a user's session reads the
//! user's index and sessions inside it, see [`Update::read_more`]), as
//! durable as the keyspace's [`SyncPolicy`](crate::SyncPolicy): use
//! `Always` when a session must survive a power loss, `EveryMillis` when
//! losing the last moments of session changes on a power loss is
//! acceptable. Reads ([`Sessions::get`], [`Sessions::list_for_user`])
//! take no writer lock there, so they also work inside a
//! [`Db::transaction`](crate::Db::transaction) closure; a list read while
//! another thread changes the user's sessions may show that change in
//! part (each session as it was or as it is, never a mix of two).
//!
//! On the embedded store tags do not matter, and without a
//! [`Sessions::tag_secret`] every selector is 12 random bytes. On a
//! remote store each key carries a tag (see
//! [`Key::tagged`]) so that a Redis Cluster keeps the keys of one
//! operation in one hash slot:
//!
//! - the tag of a session record `s` + selector is `s:` and the first 2
//!   bytes of the selector in lowercase hex (`s:9f04`);
//! - the tag of a user's index `u` + user is `s:` and the first 2 bytes
//!   of SHA-256(salt || user name) in hex, where the salt is 32 random
//!   bytes of the deployment (below); a session created for a user (or
//!   rotated as one) gets a selector that starts with those 2 bytes, so
//!   its record shares its user's tag, and the other 10 bytes (80 bits)
//!   are random;
//! - a session without a user has a selector of 12 random bytes, so such
//!   sessions spread over the 65,536 tags; rotating one keeps its first 2
//!   bytes (and so its tag).
//!
//! The salt comes from [`Sessions::tag_secret`] (the application's
//! configuration; recommended) or, without one, is drawn from the CSPRNG
//! by the first `Sessions` that needs it and stored, without a tag or an
//! expiry, under the key `tag-salt` (created only if absent, so
//! concurrent processes agree on one); every `Sessions` on that store
//! reads it once and keeps it. Without the salt
//! an id's first 16 bits say nothing about its user's name, so a cookie
//! cannot be used to test guessed names. What remains: the sessions of
//! one user share those 16 bits, so whoever holds two cookies can tell
//! whether they may be the same user's (a false match once in 65,536).
//! A stored salt must not be lost: run the sessions' server with
//! `maxmemory-policy noeviction` (a `volatile-*` policy would evict the
//! sessions and indexes themselves, which all have a TTL). If it is lost
//! anyway (a `FLUSHDB`, a failover right after it was written), the
//! processes already running keep the old salt and new ones write a new
//! one: each side's per-user operations then miss the other side's
//! sessions, and on a cluster an operation on a user's earlier session
//! fails with a cross-slot error, until every process restarts. A
//! [`Sessions::tag_secret`] has no such failure.
//!
//! An operation on a user (creating, rotating or revoking one of their
//! sessions, listing or revoking them all) therefore reads and writes only
//! keys of the user's tag: the index, then the sessions it lists (but for
//! sessions copied from an embedded store outside their user's tag,
//! below). Creation
//! checks inside its update that the new selector is free and draws
//! another if not. The names are the embedded store's keys, unchanged
//! from earlier versions; the embedded store ignores tags, so records
//! written before tags keep working there.
//!
//! # Moving from the embedded store to a remote one
//! A cut-over (`cairn follow`, then reopening the module on the RESP
//! backend) copies each key to where the remote module looks for it
//! (`cairn::module_keys::ModuleKeys`): a session under
//! its selector's tag, a user's index under the user's tag. On a Redis
//! Cluster the two are in one slot only if the session's selector starts
//! with the user's 2 tag bytes, so **an application that may move to a
//! cluster sets [`Sessions::tag_secret`] from day one**, on the embedded
//! store too: with it, the embedded store gives a user's new and rotated
//! sessions selectors that start with the user's tag bytes, exactly as a
//! remote store does, and the copied sessions behave there as if they had
//! been created there.
//!
//! A user's session created without them (before the secret was set, or
//! under another secret or salt) is *outside its user's tag* on the
//! remote store. It is never lost and never mixed up with another user's:
//! [`Sessions::get`], [`Sessions::update`], [`Sessions::get_and_touch`],
//! [`Sessions::revoke`], [`Sessions::revoke_for_user`],
//! [`Sessions::list_for_user`] and [`Sessions::revoke_all_for_user`] work
//! on it, on one server and on a cluster, by splitting what would be one
//! update into updates of one slot each, in an order whose interruption
//! leaves nothing worse than an index that lives longer than it needs or
//! lists a revoked session (lists skip it). Those steps are not atomic
//! with each other: a list or a "log out everywhere" that runs beside
//! them may see a touch or a revocation of such a session in part. Only
//! [`Sessions::rotate`] of such a session fails, with
//! [`Error::InvalidArgument`] naming it: revoke it and create a new
//! session instead. Such sessions go away as they expire; new sessions
//! are never created outside their user's tag.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::backend::{Entry, Key, Store, Update};
use crate::error::{Error, Result};
use crate::util::rand::{b64url_decode, b64url_encode, secure_bytes};

const SELECTOR_BYTES: usize = 12;
const VERIFIER_BYTES: usize = 12;
const ID_BYTES: usize = SELECTOR_BYTES + VERIFIER_BYTES;
const HASH_BYTES: usize = 32;
/// Session records of the first layout: the verifier as it is.
const FORMAT_PLAIN: u8 = 1;
/// Session records that hold the SHA-256 hash of the id instead.
const FORMAT_HASHED: u8 = 2;
/// A user's index.
const INDEX_FORMAT: u8 = 1;
/// Format, flags, creation time, idle TTL, then the secret and the user
/// name's length.
const fn header_len(secret_bytes: usize) -> usize {
    1 + 1 + 8 + 8 + secret_bytes + 2
}
/// The longest user name, in bytes.
pub const MAX_USER_BYTES: usize = 1024;

/// A session id: 32 URL-safe characters carrying 192 bits, at least 176
/// of them random (see the [module docs](self)).
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

    /// The handle of this session, as [`Sessions::list_for_user`] lists
    /// it: for instance to mark the current device in such a list.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let id = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// let listed = sessions.list_for_user("ada")?;
    /// assert_eq!(listed[0].0, id.handle());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn handle(&self) -> SessionHandle {
        // An id is 32 characters, 24 bytes; its first 16 characters encode
        // exactly the 12 bytes of the selector.
        SessionHandle(self.0[..16].to_owned())
    }

    fn new(selector: &[u8; SELECTOR_BYTES], verifier: &[u8; VERIFIER_BYTES]) -> SessionId {
        let mut raw = [0u8; ID_BYTES];
        raw[..SELECTOR_BYTES].copy_from_slice(selector);
        raw[SELECTOR_BYTES..].copy_from_slice(verifier);
        SessionId(b64url_encode(&raw))
    }
}

/// Names a session without being able to authenticate as it: the first
/// 16 characters of its [`SessionId`] (the selector), as
/// [`Sessions::list_for_user`] returns it. Show it on a "your devices"
/// page and pass it back to [`Sessions::revoke_for_user`]; the store holds
/// no full ids to list (see the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHandle(String);

impl SessionHandle {
    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn new(selector: &[u8; SELECTOR_BYTES]) -> SessionHandle {
        SessionHandle(b64url_encode(selector))
    }
}

impl std::fmt::Display for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SessionHandle {
    fn as_ref(&self) -> &str {
        &self.0
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

/// Durable sessions in one [`Store`]. Cheap to clone; share it between
/// threads.
#[derive(Clone, Debug)]
pub struct Sessions {
    store: Store,
    max_lifetime_ms: Option<u64>,
    /// The remote store's tag salt, once read.
    salt: std::sync::Arc<SaltCell>,
    /// Whether the salt comes from [`Sessions::tag_secret`] (then user
    /// selectors carry the user's tag bytes on the embedded store too).
    tag_secret: bool,
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

/// A handle's selector, or `None` if `handle` is not a well-formed one.
fn parse_handle(handle: &str) -> Option<[u8; SELECTOR_BYTES]> {
    if handle.len() != 16 {
        return None;
    }
    b64url_decode(handle)?.try_into().ok()
}

/// What a record keeps to check an id by.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Secret {
    /// Format 1, written before the hash: the verifier as it is.
    Plain([u8; VERIFIER_BYTES]),
    /// SHA-256 of the id's 24 bytes (selector, then verifier).
    Hashed([u8; HASH_BYTES]),
}

/// SHA-256 of an id's 24 bytes. The verifier holds 96 random bits, so
/// the hash needs no salt and no slow key derivation: there is nothing to
/// guess from it.
fn id_hash(selector: &[u8; SELECTOR_BYTES], verifier: &[u8; VERIFIER_BYTES]) -> [u8; HASH_BYTES] {
    let mut h = Sha256::new();
    h.update(selector);
    h.update(verifier);
    h.finalize().into()
}

impl Secret {
    fn of(selector: &[u8; SELECTOR_BYTES], verifier: &[u8; VERIFIER_BYTES]) -> Secret {
        Secret::Hashed(id_hash(selector, verifier))
    }

    /// Whether `id` is the session's id, in constant time.
    fn accepts(&self, id: &Parsed) -> bool {
        match self {
            Secret::Plain(v) => v.ct_eq(&id.verifier).into(),
            Secret::Hashed(h) => h.ct_eq(&id_hash(&id.selector, &id.verifier)).into(),
        }
    }
}

/// How far past a touch's new expiry the index of a session outside its
/// user's tag is covered first (see [`Sessions::get_and_touch`]).
const OUTSIDE_COVER_MARGIN_MS: u64 = 1_000;

/// How many leading bytes of a selector pick its key's tag.
const TAG_BYTES: usize = 2;

/// The tag of the keys whose selector starts with `prefix` (and, on a
/// remote store, of the index of the user whose prefix it is; see
/// [`Sessions::user_prefix`]): `s:` and 4 hex digits.
fn tag_of(prefix: &[u8; TAG_BYTES]) -> Vec<u8> {
    format!("s:{:02x}{:02x}", prefix[0], prefix[1]).into_bytes()
}

/// The first [`TAG_BYTES`] of a selector.
fn prefix_of(selector: &[u8; SELECTOR_BYTES]) -> [u8; TAG_BYTES] {
    [selector[0], selector[1]]
}

/// The bytes of a store's tag salt.
const SALT_BYTES: usize = 32;
/// The format byte of the stored salt.
const SALT_FORMAT: u8 = 1;

/// The key of a remote store's tag salt: no tag, and a name that no
/// session (`s` + selector) or index (`u` + user) takes.
pub(crate) fn salt_key() -> Key {
    Key::new(b"tag-salt".to_vec())
}

fn decode_salt(v: &[u8]) -> Result<[u8; SALT_BYTES]> {
    match v.split_first() {
        Some((&SALT_FORMAT, salt)) => salt
            .try_into()
            .map_err(|_| Error::Malformed("session tag salt: wrong length".into())),
        _ => Err(Error::Malformed("session tag salt: unknown format".into())),
    }
}

fn encode_salt(salt: &[u8; SALT_BYTES]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + SALT_BYTES);
    v.push(SALT_FORMAT);
    v.extend_from_slice(salt);
    v
}

/// The leading bytes of `user`'s selectors on a remote store: the first
/// [`TAG_BYTES`] of SHA-256(salt || user), so that a user's sessions and
/// index share a tag, users spread over tags, and an id tells nothing
/// about its user's name to whoever does not hold the salt.
fn salted_prefix(salt: &[u8; SALT_BYTES], user: &str) -> [u8; TAG_BYTES] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(user.as_bytes());
    let h = h.finalize();
    [h[0], h[1]]
}

/// The tag salt derived from an application's [`Sessions::tag_secret`]:
/// SHA-256 of a fixed label and the secret.
fn secret_salt(secret: &[u8]) -> [u8; SALT_BYTES] {
    let mut h = Sha256::new();
    h.update(b"cairn session tag salt\0");
    h.update(secret);
    h.finalize().into()
}

/// The error of an operation that would hold a session outside its
/// user's tag and the user's index in one update (see
/// `Sessions::outside`): only a rotation of such a session.
fn outside_tag_error(user: &str, sel: &[u8; SELECTOR_BYTES]) -> Error {
    Error::InvalidArgument(format!(
        "session {} of user {user:?} is outside the user's tag on this remote store (it was \
         created on an embedded store without Sessions::tag_secret, or under another secret \
         or salt): rotating it would span two Redis Cluster slots; revoke it and create a new \
         session instead",
        SessionHandle::new(sel)
    ))
}

/// A remote store's tag salt once read, shared by the clones of one
/// [`Sessions`]. Its `Debug` does not show it.
#[derive(Default)]
struct SaltCell(std::sync::OnceLock<[u8; SALT_BYTES]>);

impl std::fmt::Debug for SaltCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.0.get().is_some() {
            "read"
        } else {
            "not read"
        };
        write!(f, "SaltCell({state})")
    }
}

/// A fresh selector: `prefix`, then random bytes (80 bits); all random
/// (96 bits) without a prefix.
fn new_selector(prefix: Option<[u8; TAG_BYTES]>) -> Result<[u8; SELECTOR_BYTES]> {
    let mut s = [0u8; SELECTOR_BYTES];
    secure_bytes(&mut s)?;
    if let Some(p) = prefix {
        s[..TAG_BYTES].copy_from_slice(&p);
    }
    Ok(s)
}

/// The key of a session record: name `s` + selector, tag [`tag_of`] its
/// selector's first bytes.
fn session_key(selector: &[u8; SELECTOR_BYTES]) -> Key {
    let mut k = Vec::with_capacity(1 + SELECTOR_BYTES);
    k.push(b's');
    k.extend_from_slice(selector);
    Key::tagged(tag_of(&prefix_of(selector)), k)
}

/// The key of a user's index: name `u` + user, tag [`tag_of`] `prefix`
/// (the user's on a remote store), no tag without one.
fn user_key(user: &str, prefix: Option<[u8; TAG_BYTES]>) -> Key {
    let mut k = Vec::with_capacity(1 + user.len());
    k.push(b'u');
    k.extend_from_slice(user.as_bytes());
    match prefix {
        Some(p) => Key::tagged(tag_of(&p), k),
        None => Key::new(k),
    }
}

/// An engine-style expiry (0 for none) as the seam's.
fn expiry(e: u64) -> Option<u64> {
    (e != 0).then_some(e)
}

/// What one run of an update's function decided.
enum Step<R> {
    /// Done: the changes it made stand.
    Done(R),
    /// Nothing changed; run the operation again (with a fresh selector),
    /// with this user's index among the keys (the record belongs to this
    /// user, or to none).
    Retry(Option<String>),
}

/// The record at `entry` if `id` opens it, with its expiry (0 for none).
/// The record returned holds the hash, whatever its stored layout, so that
/// writing it back stores the hashed layout.
fn open(entry: Option<&Entry>, id: &Parsed) -> Result<Option<(Record, u64)>> {
    let Some(e) = entry else {
        return Ok(None);
    };
    let mut rec = Record::decode(&e.value)?;
    if !rec.secret.accepts(id) {
        return Ok(None);
    }
    rec.secret = Secret::of(&id.selector, &id.verifier);
    Ok(Some((rec, e.expires_at_ms.unwrap_or(0))))
}

/// A user's index as an update on the user's sessions sees it, and where
/// its keys are: the index is key `at`, and each session the index lists
/// or the operation names is key `positions[selector]`.
struct Index<'a> {
    user: &'a str,
    /// The position of the index's key.
    at: usize,
    /// Each selector the index lists or the operation names, and its
    /// key's position.
    positions: HashMap<[u8; SELECTOR_BYTES], usize>,
    /// The selectors the index lists, `None` without an index.
    listed: Option<Vec<[u8; SELECTOR_BYTES]>>,
    /// The index's expiry.
    expires: Option<u64>,
}

impl<'a> Index<'a> {
    /// On a store whose updates read keys as they go
    /// ([`Update::read_more`], the embedded store): reads `user`'s index
    /// (key `ukey`) and every session it lists into `u`, beside the
    /// sessions `known` the update already has (with their positions).
    fn read_in(
        u: &mut Update,
        user: &'a str,
        ukey: &Key,
        known: &[([u8; SELECTOR_BYTES], usize)],
    ) -> Result<Index<'a>> {
        let at = u.read_more(ukey)?;
        let listed = u.get(at).map(|e| decode_index(&e.value)).transpose()?;
        let expires = u.get(at).and_then(|e| e.expires_at_ms);
        let mut positions: HashMap<_, _> = known.iter().copied().collect();
        for sel in listed.iter().flatten() {
            if !positions.contains_key(sel) {
                let i = u.read_more(&session_key(sel))?;
                positions.insert(*sel, i);
            }
        }
        Ok(Index {
            user,
            at,
            positions,
            listed,
            expires,
        })
    }

    /// The position of `sel`'s key (out of range, so refused by the
    /// update, if the operation did not name it).
    fn pos(&self, sel: &[u8; SELECTOR_BYTES]) -> usize {
        self.positions.get(sel).copied().unwrap_or(usize::MAX)
    }

    /// Rewrites the index: the sessions it lists that are live, less
    /// `gone`, plus `added` (a selector and its expiry, which the index
    /// then covers). Deletes the index when it would list none.
    fn write(
        &self,
        u: &mut Update,
        gone: Option<&[u8; SELECTOR_BYTES]>,
        added: Option<([u8; SELECTOR_BYTES], u64)>,
    ) {
        let listed = self.listed.as_deref().unwrap_or(&[]);
        // A listed session the update did not read (on a remote store,
        // one outside the user's tag, see `Sessions::outside_user_tag`)
        // is kept: nothing here says it is dead.
        let mut live: Vec<[u8; SELECTOR_BYTES]> = listed
            .iter()
            .filter(|s| {
                Some(*s) != gone
                    && (!self.positions.contains_key(*s) || u.get(self.pos(s)).is_some())
            })
            .copied()
            .collect();
        match added {
            Some((sel, expires)) => {
                // A removal that empties the index deletes it, and an
                // index written afresh expires with its session.
                let kept = if gone.is_some() && live.is_empty() {
                    0
                } else {
                    self.expires.unwrap_or(0)
                };
                live.push(sel);
                u.put(self.at, encode_index(&live), Some(kept.max(expires)));
            }
            None if self.listed.is_none() => {}
            None if live.is_empty() => u.delete(self.at),
            None => u.put(self.at, encode_index(&live), self.expires),
        }
    }
}

/// A decoded session record.
struct Record {
    created: u64,
    idle_ms: u64,
    secret: Secret,
    user: Option<String>,
    data: Vec<u8>,
}

impl Record {
    /// Encodes the record; the writes of this module only ever hold a
    /// [`Secret::Hashed`] (see [`open`]).
    fn encode(&self) -> Vec<u8> {
        let (format, secret): (u8, &[u8]) = match &self.secret {
            Secret::Plain(v) => (FORMAT_PLAIN, v),
            Secret::Hashed(h) => (FORMAT_HASHED, h),
        };
        let user = self.user.as_deref().unwrap_or("");
        let mut v = Vec::with_capacity(header_len(secret.len()) + user.len() + self.data.len());
        v.push(format);
        v.push(u8::from(self.user.is_some()));
        v.extend_from_slice(&self.created.to_le_bytes());
        v.extend_from_slice(&self.idle_ms.to_le_bytes());
        v.extend_from_slice(secret);
        v.extend_from_slice(&(user.len() as u16).to_le_bytes());
        v.extend_from_slice(user.as_bytes());
        v.extend_from_slice(&self.data);
        v
    }

    fn decode(v: &[u8]) -> Result<Record> {
        let bad = |why: &str| Error::Malformed(format!("session record: {why}"));
        let secret_bytes = match v.first() {
            None => return Err(bad("empty")),
            Some(&FORMAT_PLAIN) => VERIFIER_BYTES,
            Some(&FORMAT_HASHED) => HASH_BYTES,
            Some(f) => return Err(bad(&format!("unknown format {f}"))),
        };
        let header = header_len(secret_bytes);
        if v.len() < header {
            return Err(bad("shorter than its header"));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let raw = &v[18..18 + secret_bytes];
        let secret = if secret_bytes == HASH_BYTES {
            let mut h = [0u8; HASH_BYTES];
            h.copy_from_slice(raw);
            Secret::Hashed(h)
        } else {
            let mut p = [0u8; VERIFIER_BYTES];
            p.copy_from_slice(raw);
            Secret::Plain(p)
        };
        let user_len = usize::from(u16::from_le_bytes([v[header - 2], v[header - 1]]));
        let rest = &v[header..];
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
            secret,
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
    if v.first() != Some(&INDEX_FORMAT) || !(v.len() - 1).is_multiple_of(SELECTOR_BYTES) {
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
    v.push(INDEX_FORMAT);
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
    /// Sessions stored in `store`: a [`Db`](crate::Db), usually a keyspace
    /// of its own (`db.keyspace("sessions")?`), or any other [`Store`].
    /// No maximum lifetime.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(store: impl Into<Store>) -> Sessions {
        Sessions {
            store: store.into(),
            max_lifetime_ms: None,
            salt: std::sync::Arc::default(),
            tag_secret: false,
        }
    }

    /// Derives the salt of a remote store's user tags from `secret` (32 or
    /// more random bytes from the application's configuration, the same
    /// in every process) instead of a salt stored on the server. Set it
    /// on every remote deployment: a stored salt that is lost (a
    /// `FLUSHDB`, an eviction, a failover right after it was created)
    /// leaves the processes already running on the old salt and new ones
    /// on a new one, and per-user operations (`list_for_user`,
    /// `revoke_all_for_user`) then miss the other salt's sessions until
    /// every process restarts. On the embedded store, which does not use
    /// tags, it gives a user's new and rotated sessions selectors that
    /// start with the user's tag bytes, so that a later cut-over to a
    /// cluster keeps each user's sessions in their index's slot (see the
    /// [module docs](self#moving-from-the-embedded-store-to-a-remote-one)):
    /// set it from day one on a store that may move to a cluster. Changing
    /// the secret on a remote store has the same effect as losing the
    /// stored salt: sessions created for a user before the change are no
    /// longer found through that user's index.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// # let secret_from_config = [7u8; 32];
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?)
    ///     .tag_secret(secret_from_config);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn tag_secret(mut self, secret: impl AsRef<[u8]>) -> Sessions {
        let cell = SaltCell::default();
        let _ = cell.0.set(secret_salt(secret.as_ref()));
        self.salt = std::sync::Arc::new(cell);
        self.tag_secret = true;
        self
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
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// assert!(!sessions.store().is_remote());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `attempt` until it is done. It is first given no user, then
    /// the user each retry names; every retry means that a selector
    /// collided or that another writer changed the keys in between.
    fn run<R>(&self, mut attempt: impl FnMut(Option<&str>) -> Result<Step<R>>) -> Result<R> {
        let mut user = None;
        loop {
            match attempt(user.as_deref())? {
                Step::Done(r) => return Ok(r),
                Step::Retry(u) => user = u,
            }
        }
    }

    /// The store's tag salt (see the [module docs](self)): read once per
    /// `Sessions` (its clones share it), and created if the store has
    /// none, by an update that writes it only if it is still absent, so
    /// that every `Sessions` on the store uses the same salt.
    fn salt(&self) -> Result<[u8; SALT_BYTES]> {
        if let Some(salt) = self.salt.0.get() {
            return Ok(*salt);
        }
        let key = salt_key();
        let salt = match self.store.read_one(&key)? {
            (_, Some(e)) => decode_salt(&e.value)?,
            (_, None) => {
                let mut fresh = [0u8; SALT_BYTES];
                secure_bytes(&mut fresh)?;
                self.store
                    .update(std::slice::from_ref(&key), |u| match u.get(0) {
                        Some(e) => decode_salt(&e.value),
                        None => {
                            u.put(0, encode_salt(&fresh), None);
                            Ok(fresh)
                        }
                    })?
            }
        };
        Ok(*self.salt.0.get_or_init(|| salt))
    }

    /// The leading bytes of `user`'s selectors and the tag of their index
    /// on a remote store ([`salted_prefix`]); `None` on a store that is
    /// not remote, which ignores tags: there selectors are wholly random.
    fn user_prefix(&self, user: &str) -> Result<Option<[u8; TAG_BYTES]>> {
        if !self.store.is_remote() {
            return Ok(None);
        }
        Ok(Some(salted_prefix(&self.salt()?, user)))
    }

    /// The leading bytes of a new selector of `user`'s: the user's tag
    /// bytes on a remote store, and on the embedded store too when the
    /// application set a [`Sessions::tag_secret`], so that a cut-over to
    /// a cluster finds the user's sessions in their index's slot; `None`
    /// (wholly random) otherwise.
    fn selector_prefix(&self, user: &str) -> Result<Option<[u8; TAG_BYTES]>> {
        if self.store.is_remote() || self.tag_secret {
            return Ok(Some(salted_prefix(&self.salt()?, user)));
        }
        Ok(None)
    }

    /// The key of one of this module's stored keys (`name` as the
    /// embedded store holds it) on a remote store: its tag, with the
    /// user's tag for an index taken from this `Sessions`' salt (its
    /// [`Sessions::tag_secret`], or the salt stored in its store, read or
    /// created as the module would). For a cut-over
    /// (`cairn::module_keys::ModuleKeys`).
    ///
    /// # Errors
    /// [`Error::Malformed`] for a name this module does not write, and
    /// the errors of reading or creating the stored salt.
    pub(crate) fn module_key(&self, name: &[u8]) -> Result<Key> {
        match name.split_first() {
            Some((b's', sel)) if sel.len() == SELECTOR_BYTES => {
                let mut s = [0u8; SELECTOR_BYTES];
                s.copy_from_slice(sel);
                Ok(session_key(&s))
            }
            Some((b'u', user)) => {
                let user = std::str::from_utf8(user).map_err(|_| {
                    Error::Malformed(format!(
                        "session index key {:?}: the user name is not UTF-8",
                        String::from_utf8_lossy(name)
                    ))
                })?;
                Ok(user_key(user, Some(salted_prefix(&self.salt()?, user))))
            }
            _ if name == salt_key().name() => Ok(salt_key()),
            _ => Err(Error::Malformed(format!(
                "key {:?} is not one the session module writes (s + 12-byte selector, \
                 u + user, tag-salt)",
                String::from_utf8_lossy(name)
            ))),
        }
    }

    /// The key of `user`'s index.
    fn user_key(&self, user: &str) -> Result<Key> {
        Ok(user_key(user, self.user_prefix(user)?))
    }

    /// Whether, on a remote store, `sel` is outside `user`'s tag: a
    /// session of the user's created where selectors did not carry the
    /// user's tag bytes (on the embedded store without a
    /// [`Sessions::tag_secret`], or under another secret or salt) and
    /// copied here by a cut-over. One update cannot hold it and the
    /// user's index (on a cluster they are in different slots), so the
    /// operations on it are split (see the module docs). Only asked once
    /// the salt is known (after [`Sessions::user_key`]); `false` on the
    /// embedded store.
    fn outside(&self, user: &str, sel: &[u8; SELECTOR_BYTES]) -> bool {
        match (self.store.is_remote(), self.salt.0.get()) {
            (true, Some(salt)) => salted_prefix(salt, user) != prefix_of(sel),
            _ => false,
        }
    }

    /// Whether `sel` is outside `user`'s tag ([`Sessions::outside`]),
    /// reading the salt first if needed.
    fn outside_user_tag(&self, user: &str, sel: &[u8; SELECTOR_BYTES]) -> Result<bool> {
        if !self.store.is_remote() {
            return Ok(false);
        }
        self.salt()?;
        Ok(self.outside(user, sel))
    }

    /// Takes `sel` out of `user`'s index (a session outside the user's
    /// tag, deleted first by its own update).
    fn unlist(&self, user: &str, sel: &[u8; SELECTOR_BYTES]) -> Result<()> {
        self.run(|_| {
            self.with_user(user, &[], |u, ix| {
                ix.write(u, Some(sel), None);
                Ok(Step::Done(()))
            })
        })
    }

    /// Deletes the session `sel` if `user`'s; an update of its key alone.
    fn delete_users(&self, user: &str, sel: &[u8; SELECTOR_BYTES]) -> Result<bool> {
        self.store.update(&[session_key(sel)], |u| {
            let Some(e) = u.get(0) else {
                return Ok(false);
            };
            if Record::decode(&e.value)?.user.as_deref() != Some(user) {
                return Ok(false);
            }
            u.delete(0);
            Ok(true)
        })
    }

    /// The key of `user`'s index inside an update whose function reads
    /// more keys: only a store that is not remote offers that, so the key
    /// has no tag and needs no salt (no call to the store).
    fn local_user_key(user: &str) -> Key {
        user_key(user, None)
    }

    /// One update on `user`'s index and the sessions it lists, plus the
    /// sessions `extra` names (all under the user's tag, as long as they
    /// were created for that user).
    ///
    /// Where updates read keys as they go (the embedded store), that is
    /// one update that reads the sessions the index lists from inside.
    /// Elsewhere it reads the index first to know the keys, and reads
    /// again if the index names a session the update did not read.
    fn with_user<R>(
        &self,
        user: &str,
        extra: &[[u8; SELECTOR_BYTES]],
        mut f: impl FnMut(&mut Update, &Index<'_>) -> Result<Step<R>>,
    ) -> Result<Step<R>> {
        let mut named = Vec::with_capacity(extra.len());
        for s in extra {
            if !named.iter().any(|(n, _)| n == s) {
                named.push((*s, named.len()));
            }
        }
        if !self.store.is_remote() {
            let keys: Vec<Key> = named.iter().map(|(s, _)| session_key(s)).collect();
            let ukey = Self::local_user_key(user);
            let step = self.store.update(&keys, |u| {
                if !u.can_read_more() {
                    return Ok(None);
                }
                let ix = Index::read_in(u, user, &ukey, &named)?;
                f(u, &ix).map(Some)
            })?;
            if let Some(step) = step {
                return Ok(step);
            }
        }
        let ukey = self.user_key(user)?;
        if let Some(s) = extra.iter().find(|s| self.outside(user, s)) {
            return Err(outside_tag_error(user, s));
        }
        loop {
            let mut sels = extra.to_vec();
            if let (_, Some(e)) = self.store.read_one(&ukey)? {
                let listed = decode_index(&e.value)?;
                sels.extend(listed.into_iter().filter(|s| !self.outside(user, s)));
            }
            let mut positions = HashMap::with_capacity(sels.len());
            sels.retain(|s| {
                let fresh = !positions.contains_key(s);
                if fresh {
                    positions.insert(*s, positions.len() + 1);
                }
                fresh
            });
            let keys: Vec<Key> = std::iter::once(ukey.clone())
                .chain(sels.iter().map(session_key))
                .collect();
            let step = self.store.update(&keys, |u| {
                let listed = u.get(0).map(|e| decode_index(&e.value)).transpose()?;
                if listed
                    .iter()
                    .flatten()
                    .any(|s| !positions.contains_key(s) && !self.outside(user, s))
                {
                    return Ok(None);
                }
                let ix = Index {
                    user,
                    at: 0,
                    positions: positions.clone(),
                    expires: u.get(0).and_then(|e| e.expires_at_ms),
                    listed,
                };
                f(u, &ix).map(Some)
            })?;
            if let Some(step) = step {
                return Ok(step);
            }
        }
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
    /// [`Error::Io`] when the CSPRNG or the write fails, [`Error::Remote`]
    /// when a remote store fails.
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
        let mut verifier = [0u8; VERIFIER_BYTES];
        secure_bytes(&mut verifier)?;
        let idle_ms = ms(ttl);
        let prefix = match user {
            Some(name) => self.selector_prefix(name)?,
            None => None,
        };
        self.run(|_| {
            let selector = new_selector(prefix)?;
            // The new key is read in the update: a collision of 80 (or 96)
            // random bits does not happen in practice, but never overwrite
            // a session if it does.
            let step = |u: &mut Update, ix: Option<&Index<'_>>| {
                let i = ix.map_or(0, |ix| ix.pos(&selector));
                if u.get(i).is_some() {
                    return Ok(Step::Retry(None));
                }
                let now = u.now_ms();
                let rec = Record {
                    created: now,
                    idle_ms,
                    secret: Secret::of(&selector, &verifier),
                    user: user.map(str::to_owned),
                    data: data.to_vec(),
                };
                let expires = self.cap(now, now.saturating_add(idle_ms));
                u.put(i, rec.encode(), Some(expires));
                if let Some(ix) = ix {
                    ix.write(u, None, Some((selector, expires)));
                }
                Ok(Step::Done(SessionId::new(&selector, &verifier)))
            };
            match user {
                None => self
                    .store
                    .update(&[session_key(&selector)], |u| step(u, None)),
                Some(name) => self.with_user(name, &[selector], |u, ix| step(u, Some(ix))),
            }
        })
    }

    /// Keeps the index (key `at` of `u`) alive at least until `expires`.
    /// To spare a write on most touches, it is extended by twice what is
    /// needed.
    fn index_cover(u: &mut Update, at: usize, expires: u64) {
        let now = u.now_ms();
        let Some(e) = u.get(at) else {
            return;
        };
        if let Some(exp) = e.expires_at_ms {
            if exp < expires {
                let slack = expires.saturating_sub(now);
                let value = e.value.clone();
                u.put(at, value, Some(expires.saturating_add(slack)));
            }
        }
    }

    /// One run of [`Sessions::get_and_touch`] on `[session]`, or on
    /// `[session, index]` with `user`. Where the update reads keys as it
    /// goes, a first run that finds a user's session reads the index from
    /// inside instead of asking for another run.
    ///
    /// With `alone`, the session is touched without its index (which the
    /// caller covered already).
    fn touch_step(
        &self,
        u: &mut Update,
        id: &Parsed,
        user: Option<&str>,
        alone: bool,
    ) -> Result<Step<Option<Session>>> {
        let Some((rec, expires)) = open(u.get(0), id)? else {
            return Ok(Step::Done(None));
        };
        let new = self.cap(rec.created, u.now_ms().saturating_add(rec.idle_ms));
        if new <= expires {
            return Ok(Step::Done(Some(rec.session(expires))));
        }
        let index = if alone {
            None
        } else if rec.user.as_deref() == user {
            user.map(|_| 1)
        } else if let (None, Some(name), true) = (user, rec.user.as_deref(), u.can_read_more()) {
            Some(u.read_more(&Self::local_user_key(name))?)
        } else {
            return Ok(Step::Retry(rec.user));
        };
        u.put(0, rec.encode(), Some(new));
        if let Some(at) = index {
            Self::index_cover(u, at, new);
        }
        Ok(Step::Done(Some(rec.session(new))))
    }

    /// One run of [`Sessions::rotate`] to `new` (with `verifier`), on
    /// `[old, new]`, or on a user's keys with `ix`. Where the update reads
    /// keys as it goes, a first run that finds a user's session reads the
    /// user's index and sessions from inside.
    fn rotate_step(
        u: &mut Update,
        old: &Parsed,
        new: &[u8; SELECTOR_BYTES],
        verifier: &[u8; VERIFIER_BYTES],
        ix: Option<&Index<'_>>,
    ) -> Result<Step<Option<SessionId>>> {
        let (i, j) = ix.map_or((0, 1), |ix| (ix.pos(&old.selector), ix.pos(new)));
        let Some((mut rec, expires)) = open(u.get(i), old)? else {
            return Ok(Step::Done(None));
        };
        let name = rec.user.clone();
        let read_in;
        let ix = match (ix, name.as_deref()) {
            (None, Some(user))
                if u.can_read_more() && *new != old.selector && u.get(j).is_none() =>
            {
                let known = [(old.selector, i), (*new, j)];
                read_in = Index::read_in(u, user, &Self::local_user_key(user), &known)?;
                Some(&read_in)
            }
            _ => ix,
        };
        if rec.user.as_deref() != ix.map(|ix| ix.user) || *new == old.selector || u.get(j).is_some()
        {
            return Ok(Step::Retry(rec.user));
        }
        u.delete(i);
        rec.secret = Secret::of(new, verifier);
        u.put(j, rec.encode(), expiry(expires));
        if let Some(ix) = ix {
            ix.write(u, Some(&old.selector), Some((*new, expires)));
        }
        Ok(Step::Done(Some(SessionId::new(new, verifier))))
    }

    /// One run of [`Sessions::revoke`] on `[session]`, or on a user's keys
    /// with `ix`; reads the user's keys from inside where it can, as
    /// [`Sessions::rotate_step`].
    fn revoke_step(u: &mut Update, id: &Parsed, ix: Option<&Index<'_>>) -> Result<Step<bool>> {
        let i = ix.map_or(0, |ix| ix.pos(&id.selector));
        let Some((rec, _)) = open(u.get(i), id)? else {
            return Ok(Step::Done(false));
        };
        let name = rec.user.clone();
        let read_in;
        let ix = match (ix, name.as_deref()) {
            (None, Some(user)) if u.can_read_more() => {
                let known = [(id.selector, i)];
                read_in = Index::read_in(u, user, &Self::local_user_key(user), &known)?;
                Some(&read_in)
            }
            _ => ix,
        };
        if rec.user.as_deref() != ix.map(|ix| ix.user) {
            return Ok(Step::Retry(rec.user));
        }
        u.delete(i);
        if let Some(ix) = ix {
            ix.write(u, Some(&id.selector), None);
        }
        Ok(Step::Done(true))
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
    /// read, [`Error::Malformed`] when it was not written by this module,
    /// [`Error::Remote`] when a remote store fails.
    pub fn get(&self, id: &str) -> Result<Option<Session>> {
        let Some(p) = parse_id(id) else {
            return Ok(None);
        };
        let (_, entry) = self.store.read_one(&session_key(&p.selector))?;
        Ok(open(entry.as_ref(), &p)?.map(|(rec, expires)| rec.session(expires)))
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
        // A session without a user is one key; a user's needs their index
        // too, which a first run finds out.
        let key = session_key(&p.selector);
        self.run(|user| match user {
            None => self.store.update(std::slice::from_ref(&key), |u| {
                self.touch_step(u, &p, None, false)
            }),
            Some(name) if self.outside_user_tag(name, &p.selector)? => {
                // Outside the user's tag: cover the session in the index
                // first, then touch it alone. A crash in between leaves
                // an index that lives longer than it needs, nothing worse.
                let (_, e) = self.store.read_one(&key)?;
                let Some((rec, _)) = open(e.as_ref(), &p)? else {
                    return Ok(Step::Done(None));
                };
                self.store.update(&[self.user_key(name)?], |u| {
                    let new = self.cap(rec.created, u.now_ms().saturating_add(rec.idle_ms));
                    // A margin for the touch's own, later, clock reading.
                    Self::index_cover(u, 0, new.saturating_add(OUTSIDE_COVER_MARGIN_MS));
                    Ok(())
                })?;
                self.store.update(std::slice::from_ref(&key), |u| {
                    self.touch_step(u, &p, None, true)
                })
            }
            Some(name) => self
                .store
                .update(&[key.clone(), self.user_key(name)?], |u| {
                    self.touch_step(u, &p, Some(name), false)
                }),
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
        self.store.update(&[session_key(&p.selector)], |u| {
            let Some((mut rec, expires)) = open(u.get(0), &p)? else {
                return Ok(false);
            };
            rec.data = data.as_ref().to_vec();
            u.put(0, rec.encode(), expiry(expires));
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
    /// As [`Sessions::create`]; on a remote store,
    /// [`Error::InvalidArgument`] for a user's session that a cut-over
    /// copied from an embedded store outside its user's tag (see the
    /// [module docs](self#moving-from-the-embedded-store-to-a-remote-one)).
    pub fn rotate(&self, id: &str) -> Result<Option<SessionId>> {
        let Some(p) = parse_id(id) else {
            return Ok(None);
        };
        let mut verifier = [0u8; VERIFIER_BYTES];
        secure_bytes(&mut verifier)?;
        // On a remote store the new selector keeps the tag: the user's for
        // a user's session (found out by a first run), the old selector's
        // otherwise. Elsewhere tags do not matter: it is wholly random.
        let remote = self.store.is_remote();
        // With a tag secret on the embedded store, a user's session also
        // moves to a selector with the user's tag bytes; the first run
        // does it all there, so find the user first (a record's user
        // never changes).
        let known_user = match (remote, self.tag_secret) {
            (false, true) => match self.get(id)? {
                Some(s) => s.user,
                None => return Ok(None),
            },
            _ => None,
        };
        self.run(|user| {
            let prefix = match user.or(known_user.as_deref()) {
                Some(name) => self.selector_prefix(name)?,
                None => remote.then(|| prefix_of(&p.selector)),
            };
            let selector = new_selector(prefix)?;
            match user {
                None => self
                    .store
                    .update(&[session_key(&p.selector), session_key(&selector)], |u| {
                        Self::rotate_step(u, &p, &selector, &verifier, None)
                    }),
                Some(name) => self.with_user(name, &[p.selector, selector], |u, ix| {
                    Self::rotate_step(u, &p, &selector, &verifier, Some(ix))
                }),
            }
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
        self.run(|user| match user {
            None => self.store.update(&[session_key(&p.selector)], |u| {
                Self::revoke_step(u, &p, None)
            }),
            Some(name) if self.outside_user_tag(name, &p.selector)? => {
                // Outside the user's tag: delete the session, then take
                // it out of the index (a crash in between leaves the
                // index listing a dead session, which lists skip).
                let gone = self.store.update(&[session_key(&p.selector)], |u| {
                    if open(u.get(0), &p)?.is_none() {
                        return Ok(false);
                    }
                    u.delete(0);
                    Ok(true)
                })?;
                if gone {
                    self.unlist(name, &p.selector)?;
                }
                Ok(Step::Done(gone))
            }
            Some(name) => self.with_user(name, &[p.selector], |u, ix| {
                Self::revoke_step(u, &p, Some(ix))
            }),
        })
    }

    /// The live sessions of `user` (created with
    /// [`Sessions::create_for_user`]), oldest first, each with its
    /// [`SessionHandle`]. Never lists an expired or revoked session.
    ///
    /// A handle names a session but cannot authenticate as it: the store
    /// keeps only hashes of the ids, so it has no ids to list. Compare a
    /// handle with [`SessionId::handle`] to find the current session, and
    /// revoke another with [`Sessions::revoke_for_user`].
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let phone = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// let laptop = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// sessions.revoke(phone.as_str())?;
    /// let handles: Vec<_> = sessions.list_for_user("ada")?.into_iter().map(|(h, _)| h).collect();
    /// assert_eq!(handles, [laptop.handle()]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::get`].
    pub fn list_for_user(&self, user: &str) -> Result<Vec<(SessionHandle, Session)>> {
        let (_, Some(index)) = self.store.read_one(&self.user_key(user)?)? else {
            return Ok(Vec::new());
        };
        let sels = decode_index(&index.value)?;
        if sels.is_empty() {
            return Ok(Vec::new());
        }
        // One read of the sessions under the user's tag, and on a remote
        // store one of each session outside it (copied by a cut-over).
        let (sels, outside): (Vec<_>, Vec<_>) =
            sels.into_iter().partition(|s| !self.outside(user, s));
        let keys: Vec<Key> = sels.iter().map(session_key).collect();
        let mut entries = self.store.backend().read(&keys)?.entries;
        for sel in &outside {
            entries.push(self.store.read_one(&session_key(sel))?.1);
        }
        let mut out = Vec::new();
        for (sel, entry) in sels.iter().chain(&outside).zip(entries) {
            let Some(e) = entry else {
                continue;
            };
            let rec = Record::decode(&e.value)?;
            if rec.user.as_deref() != Some(user) {
                continue;
            }
            out.push((
                SessionHandle::new(sel),
                rec.session(e.expires_at_ms.unwrap_or(0)),
            ));
        }
        out.sort_by_key(|(_, s)| s.created_unix_ms);
        Ok(out)
    }

    /// Ends the session of `user` named by `handle` (from
    /// [`Sessions::list_for_user`]): "log out that device". Returns whether
    /// it was live; a handle of another user's session, or one that is not
    /// well formed, revokes nothing.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// let phone = sessions.create_for_user("ada", b"", Duration::from_secs(60))?;
    /// let handle = phone.handle();
    /// assert!(!sessions.revoke_for_user("bob", handle.as_str())?);
    /// assert!(sessions.revoke_for_user("ada", handle.as_str())?);
    /// assert!(sessions.get(phone.as_str())?.is_none());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Sessions::touch`].
    pub fn revoke_for_user(&self, user: &str, handle: &str) -> Result<bool> {
        let Some(selector) = parse_handle(handle) else {
            return Ok(false);
        };
        // On a remote store a session of `user` outside the user's tag
        // (copied by a cut-over) cannot share an update with the index:
        // delete it alone, then take it out of the index.
        if self.outside_user_tag(user, &selector)? {
            if !self.delete_users(user, &selector)? {
                return Ok(false);
            }
            self.unlist(user, &selector)?;
            return Ok(true);
        }
        self.run(|_| {
            self.with_user(user, &[selector], |u, ix| {
                let i = ix.pos(&selector);
                let Some(e) = u.get(i) else {
                    return Ok(Step::Done(false));
                };
                if Record::decode(&e.value)?.user.as_deref() != Some(user) {
                    return Ok(Step::Done(false));
                }
                u.delete(i);
                ix.write(u, Some(&selector), None);
                Ok(Step::Done(true))
            })
        })
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
        // On a remote store, the sessions outside the user's tag (copied
        // by a cut-over; no new ones are made) go first, each alone; then
        // the index and the others, atomically.
        let mut outside = 0;
        if self.store.is_remote() {
            if let (_, Some(e)) = self.store.read_one(&self.user_key(user)?)? {
                for sel in decode_index(&e.value)? {
                    if self.outside(user, &sel) && self.delete_users(user, &sel)? {
                        outside += 1;
                    }
                }
            }
        }
        let inside = self.run(|_| {
            self.with_user(user, &[], |u, ix| {
                if ix.listed.is_none() {
                    return Ok(Step::Done(0));
                }
                // With no session named by the operation, the sessions
                // read are exactly those the index lists.
                let mut n = 0;
                for &i in ix.positions.values() {
                    if u.get(i).is_some() {
                        u.delete(i);
                        n += 1;
                    }
                }
                u.delete(ix.at);
                Ok(Step::Done(n))
            })
        })?;
        Ok(outside + inside)
    }

    /// Rewrites every live session record of the first layout (written
    /// before this version, holding the verifier as it is) with the hash
    /// instead, and returns how many it rewrote. Sessions are read in
    /// either layout, and each is rewritten on its next write anyway; call
    /// this once after upgrading to stop storing any verifier at once. The
    /// old records' bytes stay in the data files until compaction rewrites
    /// their segments (see the guide's security section).
    ///
    /// On a remote store it reads nothing and returns 0: the first layout
    /// predates the remote stores, so sessions there were never written
    /// in it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = cairn::session::Sessions::new(db.keyspace("sessions")?);
    /// assert_eq!(sessions.hash_stored_verifiers()?, 0); // none of the old layout
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Malformed`] for a record this module did not write, and
    /// the errors of a write.
    pub fn hash_stored_verifiers(&self) -> Result<u64> {
        if self.store.is_remote() {
            return Ok(0);
        }
        let mut sels = Vec::new();
        self.store.scan(b"s", |name, _, _| {
            if let Ok(sel) = <[u8; SELECTOR_BYTES]>::try_from(&name[1..]) {
                sels.push(sel);
            }
        })?;
        let mut n = 0;
        // In batches, so that no update grows with the store. The batches
        // mix tags, which only the embedded store (that ignores them)
        // allows.
        for chunk in sels.chunks(256) {
            let keys: Vec<Key> = chunk.iter().map(session_key).collect();
            n += self.store.update(&keys, |u| {
                let mut n = 0;
                for (i, selector) in chunk.iter().enumerate() {
                    let Some(e) = u.get(i) else {
                        continue;
                    };
                    let mut rec = Record::decode(&e.value)?;
                    let Secret::Plain(verifier) = &rec.secret else {
                        continue;
                    };
                    rec.secret = Secret::of(selector, verifier);
                    let expires = e.expires_at_ms;
                    u.put(i, rec.encode(), expires);
                    n += 1;
                }
                Ok(n)
            })?;
        }
        Ok(n)
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
    use crate::backend::{Backend, Change, Snapshot};
    use std::collections::{BTreeMap, BTreeSet};
    use std::sync::{Arc, Mutex};
    use std::time::{SystemTime, UNIX_EPOCH};

    /// What a [`Tags`] backend holds, shared with its test.
    #[derive(Debug, Default)]
    struct State {
        map: Mutex<BTreeMap<Vec<u8>, Entry>>,
        /// The tags of each operation's keys, in order.
        seen: Mutex<Vec<BTreeSet<Option<Vec<u8>>>>>,
        /// Entries the next update stores just before it reads, as
        /// another writer would between an operation's read and update.
        meddle: Mutex<Vec<(Vec<u8>, Entry)>>,
    }

    /// A backend in memory (one lock makes each update atomic) that
    /// records the tags of every operation's keys, and can claim to be
    /// remote.
    #[derive(Debug)]
    struct Tags {
        state: Arc<State>,
        remote: bool,
    }

    impl Tags {
        fn now_ms() -> u64 {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
            u64::try_from(d.as_millis()).expect("ms")
        }

        fn snapshot(map: &BTreeMap<Vec<u8>, Entry>, keys: &[Key]) -> Snapshot {
            let now_ms = Self::now_ms();
            let entries = keys
                .iter()
                .map(|k| {
                    map.get(k.name())
                        .filter(|e| e.expires_at_ms.is_none_or(|x| x > now_ms))
                        .cloned()
                })
                .collect();
            Snapshot { now_ms, entries }
        }

        fn record(&self, keys: &[Key]) {
            let tags = keys.iter().map(|k| k.tag().map(<[u8]>::to_vec)).collect();
            self.state.seen.lock().expect("lock").push(tags);
        }
    }

    impl Backend for Tags {
        fn read(&self, keys: &[Key]) -> Result<Snapshot> {
            self.record(keys);
            Ok(Self::snapshot(&self.state.map.lock().expect("lock"), keys))
        }

        fn update(&self, keys: &[Key], f: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()> {
            self.record(keys);
            let mut map = self.state.map.lock().expect("lock");
            map.extend(self.state.meddle.lock().expect("lock").drain(..));
            let mut u = Update::new(Self::snapshot(&map, keys));
            f(&mut u)?;
            for (k, c) in keys.iter().zip(u.into_changes()?) {
                match c {
                    Some(Change::Put {
                        value,
                        expires_at_ms,
                    }) => {
                        map.insert(
                            k.name().to_vec(),
                            Entry {
                                value,
                                expires_at_ms,
                            },
                        );
                    }
                    Some(Change::Delete) => {
                        map.remove(k.name());
                    }
                    None => {}
                }
            }
            Ok(())
        }

        fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
            for (k, e) in self.state.map.lock().expect("lock").iter() {
                if k.starts_with(prefix) {
                    f(k, e.value.len() as u64, e.expires_at_ms);
                }
            }
            Ok(())
        }

        fn is_remote(&self) -> bool {
            self.remote
        }
    }

    fn tagged_sessions(remote: bool) -> (Sessions, Arc<State>) {
        let state = Arc::new(State::default());
        let store = Store::new(Tags {
            state: Arc::clone(&state),
            remote,
        });
        (Sessions::new(store), state)
    }

    fn selector_of(id: &SessionId) -> [u8; SELECTOR_BYTES] {
        parse_id(id.as_str()).expect("id").selector
    }

    #[test]
    fn user_tags_on_a_remote_store_depend_on_its_salt() {
        let hour = Duration::from_secs(3600);
        let users = ["ada", "bob"];
        let prefixes = |s: &Sessions| {
            users.map(|u| {
                let id = s.create_for_user(u, b"", hour).expect("create");
                prefix_of(&selector_of(&id))
            })
        };
        let (a, state_a) = tagged_sessions(true);
        let (b, _) = tagged_sessions(true);
        let pa = prefixes(&a);
        // Two stores, two salts: the same users get other tags (both
        // alike by chance once in 2^32).
        assert_ne!(pa, prefixes(&b));
        let salt = state_a
            .map
            .lock()
            .expect("lock")
            .get(&b"tag-salt"[..])
            .map(|e| (e.value.clone(), e.expires_at_ms))
            .expect("the salt is stored");
        assert_eq!(salt.0.len(), 1 + SALT_BYTES);
        assert_eq!(salt.1, None, "the salt never expires");
        // A new Sessions on the same store reads the same salt.
        let again = Sessions::new(a.store().clone());
        assert_eq!(prefixes(&again), pa);
        assert_eq!(again.list_for_user("ada").expect("list").len(), 2);
        assert_eq!(prefixes(&a), pa);
    }

    #[test]
    fn a_users_sessions_and_index_share_one_tag() {
        for remote in [false, true] {
            let (sessions, state) = tagged_sessions(remote);
            let hour = Duration::from_secs(3600);
            let mut ids = Vec::new();
            for user in ["ada", "bob", "carol"] {
                for _ in 0..4 {
                    let id = sessions.create_for_user(user, b"d", hour).expect("create");
                    ids.push((user, id));
                }
            }
            let (user, first) = ids[0].clone();
            let rotated = sessions.rotate(first.as_str()).expect("rotate");
            ids[0] = (user, rotated.expect("live"));
            for (user, id) in &ids {
                let key = session_key(&selector_of(id));
                key.check_tag().expect("a valid tag");
                if remote {
                    let prefix = sessions.user_prefix(user).expect("prefix");
                    assert_eq!(Some(prefix_of(&selector_of(id))), prefix, "{user}");
                    let ukey = sessions.user_key(user).expect("key");
                    assert_eq!(key.tag(), ukey.tag(), "{user}");
                }
                let touched = sessions.get_and_touch(id.as_str()).expect("touch");
                assert_eq!(touched.and_then(|s| s.user).as_deref(), Some(*user));
                assert!(sessions.update(id.as_str(), b"e").expect("update"));
            }
            assert_eq!(sessions.list_for_user("ada").expect("list").len(), 4);
            assert!(sessions.revoke(ids[1].1.as_str()).expect("revoke"));
            let handle = ids[2].1.handle();
            if remote {
                // Another user's handle is refused without a read that
                // would span two tags.
                let other = sessions.revoke_for_user("bob", handle.as_str());
                assert!(!other.expect("revoke"));
            }
            assert!(sessions
                .revoke_for_user("ada", handle.as_str())
                .expect("revoke"));
            assert_eq!(sessions.list_for_user("ada").expect("list").len(), 2);
            assert_eq!(sessions.revoke_all_for_user("bob").expect("revoke all"), 4);
            if remote {
                // Reads nothing (an embedded store's migration mixes tags,
                // which only the embedded store allows).
                assert_eq!(sessions.hash_stored_verifiers().expect("hash"), 0);
            }
            let seen = state.seen.lock().expect("lock");
            assert!(seen.len() > 30, "{} operations", seen.len());
            if !remote {
                // Tags do not matter on a store that is not remote.
                continue;
            }
            let untagged = BTreeSet::from([None]);
            for tags in seen.iter().filter(|t| **t != untagged) {
                assert_eq!(tags.len(), 1, "one operation spans tags {tags:?}");
                assert!(tags.iter().all(Option::is_some), "an untagged key");
            }
            // Only the salt's key has no tag: read, then created.
            assert_eq!(seen.iter().filter(|t| **t == untagged).count(), 2);
            let users: BTreeSet<_> = ["ada", "bob", "carol"]
                .iter()
                .map(|u| sessions.user_key(u).expect("key").tag().map(<[u8]>::to_vec))
                .collect();
            assert_eq!(users.len(), 3, "three users, three tags (for these names)");
        }
    }

    /// Copies every entry of `from` into `to` under the name of its key
    /// on `to` as `keys` maps it (the fake stores by name; tags are
    /// checked by the callers), and returns the keys it mapped to.
    fn copy_through(keys: &Sessions, from: &State, to: &State) -> BTreeMap<Vec<u8>, Key> {
        let entries: Vec<_> = from.map.lock().expect("lock").clone().into_iter().collect();
        let mut mapped = BTreeMap::new();
        for (name, e) in entries {
            let key = keys.module_key(&name).expect("a session module key");
            assert_eq!(key.name(), &name[..], "names are kept");
            to.map.lock().expect("lock").insert(name.clone(), e);
            mapped.insert(name, key);
        }
        mapped
    }

    /// A remote fake store, and `Sessions` on it (with `secret`).
    fn remote_sessions(secret: Option<&[u8]>) -> (Store, Sessions, Arc<State>) {
        let state = Arc::new(State::default());
        let store = Store::new(Tags {
            state: Arc::clone(&state),
            remote: true,
        });
        let s = Sessions::new(store.clone());
        let s = match secret {
            Some(x) => s.tag_secret(x),
            None => s,
        };
        (store, s, state)
    }

    #[test]
    fn embedded_selectors_carry_the_users_tag_bytes_with_a_tag_secret() {
        let secret = [7u8; 32];
        let salt = secret_salt(&secret);
        let hour = Duration::from_secs(3600);
        let (plain, _) = tagged_sessions(false);
        let (with, _) = tagged_sessions(false);
        let with = with.tag_secret(secret);
        let mut random_hits = 0;
        for i in 0..32 {
            let user = format!("user{i}");
            let want = salted_prefix(&salt, &user);
            let id = with.create_for_user(&user, b"", hour).expect("create");
            assert_eq!(prefix_of(&selector_of(&id)), want, "{user}");
            let id = with.rotate(id.as_str()).expect("rotate").expect("live");
            assert_eq!(prefix_of(&selector_of(&id)), want, "{user}: rotated");
            assert_eq!(with.list_for_user(&user).expect("list").len(), 1);
            let id = plain.create_for_user(&user, b"", hour).expect("create");
            random_hits += usize::from(prefix_of(&selector_of(&id)) == want);
        }
        // Without the secret, selectors stay wholly random.
        assert!(random_hits < 2, "{random_hits}");
        // A session without a user is rotated as before.
        let id = with.create(b"", hour).expect("create");
        assert!(with.rotate(id.as_str()).expect("rotate").is_some());
    }

    #[test]
    fn module_keys_map_every_session_key_as_the_remote_module_looks_it_up() {
        let secret = b"the application's configured secret".to_vec();
        let hour = Duration::from_secs(3600);
        // Both salt sources: the application's secret, and (no secret)
        // the salt stored on the target, created by the mapping or found
        // there.
        for (secret, salt_first) in [(Some(secret), false), (None, false), (None, true)] {
            let (app, embedded) = tagged_sessions(false);
            let app = match &secret {
                Some(x) => app.tag_secret(x),
                None => app,
            };
            let mut ids = Vec::new();
            for user in ["ada", "bob", "ünïcode"] {
                for _ in 0..3 {
                    ids.push((user, app.create_for_user(user, b"d", hour).expect("create")));
                }
            }
            let anon = app.create(b"anon", hour).expect("create");
            let (target, remote, state) = remote_sessions(secret.as_deref());
            if salt_first {
                // A process on the target made the salt before the copy.
                remote.user_key("someone").expect("salt");
            }
            // What `ModuleKeys` maps a sessions keyspace with.
            let keys = match &secret {
                Some(x) => Sessions::new(target.clone()).tag_secret(x),
                None => Sessions::new(target.clone()),
            };
            let mapped = copy_through(&keys, &embedded, &state);
            // Exactly the keys the remote module uses.
            for (user, id) in &ids {
                let sel = selector_of(id);
                let mut name = vec![b's'];
                name.extend_from_slice(&sel);
                assert_eq!(mapped[&name], session_key(&sel));
                let ukey = remote.user_key(user).expect("key");
                assert_eq!(mapped[ukey.name()], ukey, "{user}");
                if secret.is_some() {
                    assert_eq!(mapped[&name].tag(), ukey.tag(), "{user}: one slot");
                }
            }
            // The stored salt the mapping read or made is the module's.
            if secret.is_none() {
                let fresh = Sessions::new(target.clone());
                assert_eq!(
                    fresh.user_key("ada").expect("key"),
                    remote.user_key("ada").expect("key")
                );
            }
            assert_eq!(keys.module_key(b"tag-salt").expect("salt key"), salt_key());
            for bad in [&b"x"[..], b"s123", b"u\xff", b""] {
                assert!(
                    matches!(keys.module_key(bad), Err(Error::Malformed(_))),
                    "{bad:?}"
                );
            }
            // The module on the target finds everything.
            for (user, id) in &ids {
                let s = remote
                    .get_and_touch(id.as_str())
                    .expect("get")
                    .expect("live");
                assert_eq!(s.user.as_deref(), Some(*user));
            }
            assert!(remote.get(anon.as_str()).expect("get").is_some());
            assert_eq!(remote.list_for_user("ada").expect("list").len(), 3);
            let handle = ids[3].1.handle();
            assert!(remote
                .revoke_for_user("bob", handle.as_str())
                .expect("revoke"));
            assert!(remote.revoke(ids[4].1.as_str()).expect("revoke"));
            assert_eq!(remote.list_for_user("bob").expect("list").len(), 1);
            let new = remote.create_for_user("ada", b"new", hour).expect("create");
            assert_eq!(remote.list_for_user("ada").expect("list").len(), 4);
            if secret.is_none() {
                // Created without the user's tag bytes: rotating one would
                // span two slots, a clear error.
                let err = remote.rotate(ids[0].1.as_str()).expect_err("outside");
                assert!(
                    matches!(&err, Error::InvalidArgument(m) if m.contains("tag_secret")),
                    "{err}"
                );
                assert!(remote.get(ids[0].1.as_str()).expect("get").is_some());
            } else {
                assert!(remote.rotate(ids[0].1.as_str()).expect("rotate").is_some());
            }
            assert!(remote.rotate(new.as_str()).expect("rotate").is_some());
            assert_eq!(remote.revoke_all_for_user("ada").expect("revoke all"), 4);
            assert!(remote.list_for_user("ada").expect("list").is_empty());
            for (user, id) in &ids {
                if *user == "ada" {
                    assert!(remote.get(id.as_str()).expect("get").is_none());
                }
            }
            // No operation on the target spanned two tags.
            for tags in state.seen.lock().expect("lock").iter() {
                assert!(tags.len() <= 1, "one operation spans tags {tags:?}");
            }
        }
    }

    #[test]
    fn sessions_without_a_user_spread_over_tags() {
        let (sessions, state) = tagged_sessions(true);
        let hour = Duration::from_secs(3600);
        let mut tags = BTreeSet::new();
        for _ in 0..64 {
            let id = sessions.create(b"", hour).expect("create");
            tags.insert(session_key(&selector_of(&id)).tag().map(<[u8]>::to_vec));
            // Rotation keeps the tag, so that it is one operation.
            let new = sessions.rotate(id.as_str()).expect("rotate").expect("live");
            assert_eq!(prefix_of(&selector_of(&new)), prefix_of(&selector_of(&id)));
            assert_ne!(selector_of(&new), selector_of(&id));
        }
        // 64 draws from 65536 tags: all distinct but for a 3% chance of one
        // collision; far fewer would mean the tags are not random.
        assert!(tags.len() >= 60, "{} tags", tags.len());
        for op in state.seen.lock().expect("lock").iter() {
            assert_eq!(op.len(), 1, "one operation spans tags {op:?}");
        }
    }

    #[test]
    fn a_session_listed_between_the_read_and_the_update_is_not_missed() {
        let (sessions, state) = tagged_sessions(false);
        let hour = Duration::from_secs(3600);
        let a = sessions.create_for_user("ada", b"a", hour).expect("create");
        let b = sessions.create_for_user("ada", b"b", hour).expect("create");
        let c = sessions.create_for_user("ada", b"c", hour).expect("create");
        let entry = |key: &Key| {
            let map = state.map.lock().expect("lock");
            (
                key.name().to_vec(),
                map.get(key.name()).cloned().expect("stored"),
            )
        };
        // The index listing all three, and c's record, as they are now.
        let later = vec![
            entry(&sessions.user_key("ada").expect("key")),
            entry(&session_key(&selector_of(&c))),
        ];
        assert!(sessions.revoke(c.as_str()).expect("revoke"));
        // Another writer brings c back after revoke_all_for_user read an
        // index without it: its update must notice, and read again.
        *state.meddle.lock().expect("lock") = later;
        assert_eq!(sessions.revoke_all_for_user("ada").expect("revoke all"), 3);
        for id in [&a, &b, &c] {
            assert!(sessions.get(id.as_str()).expect("get").is_none());
        }
        assert!(state.map.lock().expect("lock").is_empty());
    }

    #[test]
    fn record_round_trips_and_rejects_garbage() {
        for (secret, format) in [
            (Secret::Plain([3; VERIFIER_BYTES]), FORMAT_PLAIN),
            (
                Secret::of(&[1; SELECTOR_BYTES], &[3; VERIFIER_BYTES]),
                FORMAT_HASHED,
            ),
        ] {
            let r = Record {
                created: 7,
                idle_ms: 9,
                secret: secret.clone(),
                user: Some("ada".into()),
                data: b"data".to_vec(),
            };
            let enc = r.encode();
            assert_eq!(enc[0], format);
            let d = Record::decode(&enc).expect("decode");
            assert_eq!((d.created, d.idle_ms, &d.secret), (7, 9, &secret));
            assert_eq!(
                (d.user.as_deref(), d.data.as_slice()),
                (Some("ada"), &b"data"[..])
            );
            let header = if format == FORMAT_PLAIN {
                header_len(VERIFIER_BYTES)
            } else {
                header_len(HASH_BYTES)
            };
            for cut in 0..header + 3 {
                assert!(Record::decode(&enc[..cut]).is_err(), "cut at {cut}");
            }
            let mut bad = enc.clone();
            bad[0] = 3;
            assert!(Record::decode(&bad).is_err());
        }
    }

    #[test]
    fn secrets_accept_only_their_id() {
        let id = Parsed {
            selector: [1; SELECTOR_BYTES],
            verifier: [2; VERIFIER_BYTES],
        };
        let mut wrong = Parsed {
            selector: [1; SELECTOR_BYTES],
            verifier: [2; VERIFIER_BYTES],
        };
        wrong.verifier[11] ^= 1;
        for secret in [
            Secret::Plain([2; VERIFIER_BYTES]),
            Secret::of(&[1; 12], &[2; 12]),
        ] {
            assert!(secret.accepts(&id));
            assert!(!secret.accepts(&wrong));
        }
        // The hash covers the selector too.
        let mut other = Parsed {
            selector: [1; SELECTOR_BYTES],
            verifier: [2; VERIFIER_BYTES],
        };
        other.selector[0] = 9;
        assert!(!Secret::of(&[1; 12], &[2; 12]).accepts(&other));
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
        assert_eq!(id.handle(), SessionHandle::new(&[1; SELECTOR_BYTES]));
        assert_eq!(
            parse_handle(id.handle().as_str()),
            Some([1; SELECTOR_BYTES])
        );
        assert_eq!(parse_handle(id.as_str()), None);
        assert_eq!(parse_handle("too short"), None);
    }
}
