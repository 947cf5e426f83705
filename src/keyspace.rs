//! Keyspaces: independent named stores inside one store's directory.
//!
//! A keyspace is a complete store of its own (segments, hints, index,
//! lock, compaction) in `<dir>/keyspaces/<name>/`, opened with the parent's
//! options unless others are given. Keys of different keyspaces never
//! collide, and each one is counted, scanned, cleared and compacted on its
//! own. A write batch or transaction covers one keyspace.

use crate::db::Db;
use crate::error::{Error, Result};
use crate::format::names::KEYSPACES_DIR;
use crate::options::Options;
use crate::util::locks::lock;

/// The longest keyspace name, in bytes.
pub const MAX_KEYSPACE_NAME_BYTES: usize = 64;

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEYSPACE_NAME_BYTES
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidOptions(format!(
            "keyspace name {name:?}: use 1 to {MAX_KEYSPACE_NAME_BYTES} ASCII letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

impl Db {
    /// The keyspace `name` of this store, created on first use with this
    /// store's options. Every call with the same name returns a handle to
    /// the same keyspace, which stays open until this store is closed or
    /// dropped.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let sessions = db.keyspace("sessions")?;
    /// let cache = db.keyspace("cache")?;
    /// sessions.put("k", "a session")?;
    /// cache.put("k", "a cached page")?;
    /// assert_eq!(sessions.get("k")?, Some(b"a session".to_vec()));
    /// assert_eq!(db.get("k")?, None); // the default keyspace is separate too
    /// assert_eq!(cache.len()?, 1);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for a name that is empty, longer than
    /// [`MAX_KEYSPACE_NAME_BYTES`] or has characters other than ASCII
    /// letters, digits, `_`, `-` and `.`; otherwise as [`Options::open`].
    pub fn keyspace(&self, name: &str) -> Result<Db> {
        let opts = self.inner().opts.clone().create_if_missing(true);
        self.open_keyspace(name, opts, false)
    }

    /// The keyspace `name`, opened with `options` (for example a cache
    /// with [`SyncPolicy::EveryMillis`](crate::SyncPolicy) beside sessions
    /// with [`SyncPolicy::Always`](crate::SyncPolicy)). If the keyspace is
    /// already open through this handle, the open one is returned and
    /// `options` are ignored.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = db.keyspace_with(
    ///     "cache",
    ///     cairn::Options::new().sync_policy(cairn::SyncPolicy::EveryMillis(100)),
    /// )?;
    /// cache.put("k", "v")?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Db::keyspace`]. A read-only store opens its keyspaces read-only
    /// whatever `options` say; the file layer and the clock are always the
    /// parent's.
    pub fn keyspace_with(&self, name: &str, options: Options) -> Result<Db> {
        self.open_keyspace(name, options, true)
    }

    fn open_keyspace(&self, name: &str, mut opts: Options, own: bool) -> Result<Db> {
        check_name(name)?;
        self.core().check_open()?;
        let mut open = lock(&self.inner().keyspaces);
        if let Some(db) = open.get(name) {
            return Ok(db.clone());
        }
        let parent = &self.inner().opts;
        if own {
            // Keep what must match the parent: the file layer, the clock and
            // read-only-ness.
            opts.vfs = parent.vfs.clone();
            opts.clock = parent.clock.clone();
            opts.read_only |= parent.read_only;
            opts.snapshot |= parent.snapshot;
        }
        let dir = self.path().join(KEYSPACES_DIR);
        if !parent.read_only && !opts.vfs.exists(&dir) {
            crate::fs::create_dir_durably(&*opts.vfs, &dir)?;
        }
        let db = opts.open(dir.join(name))?;
        open.insert(name.to_string(), db.clone());
        Ok(db)
    }

    /// The names of the keyspaces stored in this store's directory, sorted.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// db.keyspace("b")?;
    /// db.keyspace("a")?;
    /// assert_eq!(db.keyspace_names()?, ["a", "b"]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the directory cannot be listed.
    pub fn keyspace_names(&self) -> Result<Vec<String>> {
        let dir = self.path().join(KEYSPACES_DIR);
        let vfs = &self.inner().opts.vfs;
        if !vfs.exists(&dir) {
            return Ok(Vec::new());
        }
        let mut names: Vec<String> = vfs
            .list(&dir)?
            .into_iter()
            .filter(|n| {
                check_name(n).is_ok()
                    && vfs.exists(&dir.join(n).join(crate::format::names::LOCK_FILE))
            })
            .collect();
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn names() {
        for ok in ["sessions", "a", "cache-v2", "x_y.z", &"n".repeat(64)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "sp ace",
            "é",
            &"n".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
