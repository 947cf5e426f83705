//! Where a module's stored keys go on a Redis-protocol server: the map a
//! cut-over from the embedded store to the RESP backend copies keys by
//! (`cairn follow --modules KEYSPACE=KIND`).
//!
//! On the embedded store a module's key is its name; the backend ignores
//! tags. On a Redis-protocol server the same key is stored under
//! `prefix + "{" + tag + "}" + name` (docs/format.md, "Module keys on a
//! Redis-protocol server"), where the tag depends on the module and, for
//! a user's session index, on the deployment's salt. [`ModuleKeys`] gives
//! each stored name its tag ([`ModuleKeys::key`]) and, with the `redis`
//! feature, the server key (`ModuleKeys::server_key`); values and
//! expiries are copied as they are.
//!
//! ```
//! use cairn::backend::Store;
//! use cairn::module_keys::{ModuleKeys, ModuleLayout};
//! let dir = tempfile::tempdir()?;
//! let db = cairn::Db::open(dir.path())?;
//! // The store the salt is read from (or created in): the target.
//! let keys = ModuleKeys::new(ModuleLayout::parse("cache")?, Store::from(&db));
//! assert_eq!(keys.key(b"dkey")?, cairn::backend::Key::new(b"dkey".to_vec()));
//! # Ok::<(), cairn::Error>(())
//! ```

use sha2::{Digest, Sha256};

use crate::backend::{Key, Store};
use crate::error::{Error, Result};
use crate::modules::session::{salt_key, Sessions};

/// Which module wrote a keyspace, and so how its keys are tagged on a
/// Redis-protocol server.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModuleLayout {
    /// Keys without a tag: the [`cache`](crate::cache),
    /// [`limits`](crate::limits) (rate limits and idempotency keys), and
    /// plain data. A name that starts with `{` has no place on the server
    /// (it would read back as a tag) and is refused.
    Plain,
    /// The [`session`](crate::session) module: each session under its
    /// selector's tag, each user's index under the user's tag.
    Sessions {
        /// The application's [`Sessions::tag_secret`], if it sets one;
        /// without it, the salt stored on the target (created there if
        /// absent, as a `Sessions` on it would).
        tag_secret: Option<Vec<u8>>,
    },
    /// The `tower-sessions-cairn-store` crate: each record under the
    /// SHA-256 of its session id, tagged with the hash's first 2 bytes
    /// ([`tower_sessions_key`]); a record of the older layout keyed by the
    /// raw 16-byte id goes to its hashed key, where the store looks.
    TowerSessions,
}

impl std::fmt::Debug for ModuleLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        match self {
            ModuleLayout::Plain => f.write_str("Plain"),
            ModuleLayout::Sessions { tag_secret } => f
                .debug_struct("Sessions")
                .field("tag_secret", &tag_secret.as_ref().map(|_| "<set>"))
                .finish(),
            ModuleLayout::TowerSessions => f.write_str("TowerSessions"),
        }
    }
}

impl ModuleLayout {
    /// The layout named `kind`: `plain`, `cache`, `limits` or
    /// `idempotency` ([`ModuleLayout::Plain`]), `sessions` (without a tag
    /// secret) or `tower-sessions`.
    ///
    /// ```
    /// use cairn::module_keys::ModuleLayout;
    /// assert_eq!(ModuleLayout::parse("limits")?, ModuleLayout::Plain);
    /// assert!(ModuleLayout::parse("queue").is_err());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming an unknown kind.
    pub fn parse(kind: &str) -> Result<ModuleLayout> {
        match kind {
            "plain" | "cache" | "limits" | "idempotency" => Ok(ModuleLayout::Plain),
            "sessions" => Ok(ModuleLayout::Sessions { tag_secret: None }),
            "tower-sessions" => Ok(ModuleLayout::TowerSessions),
            _ => Err(Error::InvalidArgument(format!(
                "module kind {kind:?}: expected plain, cache, limits, idempotency, sessions \
                 or tower-sessions"
            ))),
        }
    }
}

/// The tagged key of a `tower-sessions-cairn-store` record whose key is
/// `hashed` (the SHA-256 of its session id): tag the hash's first 2 bytes
/// in lowercase hex, so that sessions spread over a cluster's slots and a
/// hash starting with `{` is never read as a tag.
///
/// ```
/// let k = cairn::module_keys::tower_sessions_key(&[0x9f; 32]);
/// assert_eq!(k.tag(), Some(&b"9f9f"[..]));
/// assert_eq!(k.name(), &[0x9f; 32][..]);
/// ```
pub fn tower_sessions_key(hashed: &[u8; 32]) -> Key {
    let tag = format!("{:02x}{:02x}", hashed[0], hashed[1]);
    Key::tagged(tag.into_bytes(), hashed.to_vec())
}

/// A [`ModuleLayout`] bound to the store a cut-over copies to: maps each
/// stored name of the module to its tagged [`Key`] there. For
/// [`ModuleLayout::Sessions`] without a secret it reads the target's
/// stored salt once (creating it if absent) and keeps it. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ModuleKeys {
    layout: ModuleLayout,
    /// For the sessions layout: a `Sessions` on the target, whose salt
    /// the index keys take.
    sessions: Option<Sessions>,
}

impl ModuleKeys {
    /// The keys of `layout` on `target` (with the `redis` feature, a
    /// `RespBackend` namespaced as the application will open it:
    /// `Store::from(backend.clone())`). Reads nothing yet.
    ///
    /// ```
    /// use cairn::module_keys::{ModuleKeys, ModuleLayout};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let layout = ModuleLayout::Sessions { tag_secret: Some(vec![7; 32]) };
    /// let keys = ModuleKeys::new(layout, &db);
    /// assert!(keys.key(b"uada")?.tag().is_some());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(layout: ModuleLayout, target: impl Into<Store>) -> ModuleKeys {
        let sessions = match &layout {
            ModuleLayout::Sessions { tag_secret } => {
                let s = Sessions::new(target);
                Some(match tag_secret {
                    Some(secret) => s.tag_secret(secret),
                    None => s,
                })
            }
            _ => None,
        };
        ModuleKeys { layout, sessions }
    }

    /// The layout.
    pub fn layout(&self) -> &ModuleLayout {
        &self.layout
    }

    /// The names the module keeps for itself on the target, which the
    /// embedded store need not hold: the sessions' `tag-salt` (created on
    /// the target when there is no tag secret). A cut-over that removes
    /// the target keys the store lacks must keep these, or the module on
    /// the target makes a new salt and misses every user's index.
    ///
    /// ```
    /// use cairn::module_keys::{ModuleKeys, ModuleLayout};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = ModuleKeys::new(ModuleLayout::parse("sessions")?, &db);
    /// assert_eq!(sessions.reserved_names(), [b"tag-salt".to_vec()]);
    /// let cache = ModuleKeys::new(ModuleLayout::parse("cache")?, &db);
    /// assert!(cache.reserved_names().is_empty());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn reserved_names(&self) -> Vec<Vec<u8>> {
        match self.layout {
            ModuleLayout::Sessions { .. } => vec![salt_key().name().to_vec()],
            ModuleLayout::Plain | ModuleLayout::TowerSessions => Vec::new(),
        }
    }

    /// The key (tag and name) under which the module, opened on the
    /// target, finds what the embedded store holds under `name`.
    ///
    /// ```
    /// use cairn::module_keys::{ModuleKeys, ModuleLayout};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let keys = ModuleKeys::new(ModuleLayout::TowerSessions, &db);
    /// assert_eq!(keys.key(&[0xab; 32])?.tag(), Some(&b"abab"[..]));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Malformed`] for a name the module does not write (a plain
    /// name starting with `{`, a session key of another shape, a
    /// tower-sessions key that is not 32 or 16 bytes); for sessions
    /// without a secret, the errors of reading or creating the target's
    /// salt ([`Error::Remote`] on a server).
    pub fn key(&self, name: &[u8]) -> Result<Key> {
        match (&self.layout, &self.sessions) {
            (ModuleLayout::Sessions { .. }, Some(s)) => s.module_key(name),
            (ModuleLayout::TowerSessions, _) => match name.len() {
                32 => {
                    let mut h = [0u8; 32];
                    h.copy_from_slice(name);
                    Ok(tower_sessions_key(&h))
                }
                16 => Ok(tower_sessions_key(&Sha256::digest(name).into())),
                n => Err(Error::Malformed(format!(
                    "tower-sessions key of {n} bytes: the store writes 32 (the id's hash) \
                     or, in its older layout, 16 (the id)"
                ))),
            },
            _ if name.first() == Some(&b'{') => Err(Error::Malformed(format!(
                "key {:?} starts with '{{': on a Redis-protocol server it would read back \
                 as a hash tag",
                String::from_utf8_lossy(name)
            ))),
            _ => Ok(Key::new(name.to_vec())),
        }
    }

    /// The server key of `name` on `backend` (the target this was made
    /// with): [`ModuleKeys::key`] under the backend's prefix.
    ///
    /// ```no_run
    /// use cairn::backend::{resp::RespOptions, Store};
    /// use cairn::module_keys::{ModuleKeys, ModuleLayout};
    /// let backend = RespOptions::new("redis://127.0.0.1:6379").open()?.namespace("sessions");
    /// let keys = ModuleKeys::new(ModuleLayout::parse("sessions")?, backend.clone());
    /// let server_key = keys.server_key(&backend, b"uada")?; // cairn:sessions:{s:....}uada
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`ModuleKeys::key`], and [`Error::InvalidArgument`] for a key
    /// the backend cannot store.
    #[cfg(feature = "redis")]
    pub fn server_key(
        &self,
        backend: &crate::backend::resp::RespBackend,
        name: &[u8],
    ) -> Result<Vec<u8>> {
        backend.server_key(&self.key(name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Backend, Snapshot, Update};

    /// A target that holds nothing and takes no writes: these layouts
    /// never touch it (the sessions' salt sources are tested in
    /// `modules::session`, beside the fake remote store there).
    #[derive(Debug)]
    struct Empty;

    impl Backend for Empty {
        fn read(&self, keys: &[Key]) -> Result<Snapshot> {
            Ok(Snapshot {
                now_ms: 0,
                entries: vec![None; keys.len()],
            })
        }

        fn update(&self, _: &[Key], _: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()> {
            Err(Error::ReadOnly)
        }

        fn scan(&self, _: &[u8], _: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
            Ok(())
        }

        fn is_remote(&self) -> bool {
            true
        }
    }

    fn keys(layout: ModuleLayout) -> ModuleKeys {
        ModuleKeys::new(layout, Store::new(Empty))
    }

    #[test]
    fn plain_keys_keep_their_name_and_take_no_tag() {
        let k = keys(ModuleLayout::parse("cache").expect("kind"));
        for name in [
            &b"dkey"[..],
            b"gusers",
            b"fapi\0k",
            b"iorder-1",
            b"",
            b"a{b}",
        ] {
            assert_eq!(k.key(name).expect("plain"), Key::new(name.to_vec()));
        }
        let err = k.key(b"{t}x").expect_err("a tag-like name");
        assert!(
            matches!(&err, Error::Malformed(m) if m.contains("{t}x")),
            "{err}"
        );
        for kind in ["plain", "limits", "idempotency"] {
            assert_eq!(
                ModuleLayout::parse(kind).expect("kind"),
                ModuleLayout::Plain
            );
        }
        let err = ModuleLayout::parse("queue").expect_err("unknown");
        assert!(matches!(&err, Error::InvalidArgument(m) if m.contains("queue")));
    }

    #[test]
    fn tower_sessions_keys_go_to_their_hash_tagged() {
        let k = keys(ModuleLayout::TowerSessions);
        let mut hashed = [0u8; 32];
        hashed[0] = b'{';
        hashed[1] = 0x05;
        let key = k.key(&hashed).expect("hashed");
        assert_eq!(key.tag(), Some(&b"7b05"[..]));
        assert_eq!(key.name(), &hashed[..]);
        key.check_tag().expect("a valid tag");
        // The older layout, keyed by the raw id, goes to the id's hash.
        let raw = [3u8; 16];
        let want: [u8; 32] = Sha256::digest(raw).into();
        assert_eq!(k.key(&raw).expect("raw"), tower_sessions_key(&want));
        for n in [0, 15, 17, 31, 33] {
            assert!(
                matches!(k.key(&vec![1; n]), Err(Error::Malformed(_))),
                "{n}"
            );
        }
    }

    #[test]
    fn the_secret_is_never_printed() {
        let layout = ModuleLayout::Sessions {
            tag_secret: Some(b"hunter2".to_vec()),
        };
        assert!(!format!("{layout:?}").contains("hunter2"));
        let k = keys(layout);
        assert!(!format!("{k:?}").contains("hunter2"));
    }
}
