//! The embedded backend: a module's keys in a [`Db`] (usually a keyspace
//! of one). Tags are not stored: one process holds every key, so an
//! update is atomic as one [`Db::transaction`], whatever its keys.

use crate::backend::{Backend, Change, Entry, Key, Snapshot, Update};
use crate::db::Db;
use crate::error::Result;

/// A [`Db`] as a module's [`Backend`]. `Store::from(db)` builds one.
#[derive(Clone, Debug)]
pub struct Embedded(Db);

/// An expiry as the engine keeps it (0 for none) as the seam's.
fn expiry(e: u64) -> Option<u64> {
    (e != 0).then_some(e)
}

impl Embedded {
    /// The backend over `db`.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let b = cairn::backend::embedded::Embedded::new(db);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn new(db: Db) -> Embedded {
        Embedded(db)
    }
}

/// Refuses a module call that may wait for the store's writer from
/// inside a [`Db::transaction`] closure on this thread (it would wait for
/// itself): a module checks before it takes a lock of its own and then
/// writes.
///
/// # Errors
/// [`Error::NestedWrite`](crate::error::Error::NestedWrite) inside a
/// transaction.
pub(crate) fn check_not_in_transaction() -> Result<()> {
    Db::check_not_in_transaction()
}

impl Embedded {
    /// `key`'s entry if it is live at `now_ms`.
    fn entry_at(&self, key: &Key, now_ms: u64) -> Result<Option<Entry>> {
        Ok(self
            .0
            .read_entry(key.name())?
            .filter(|(_, e)| *e == 0 || *e > now_ms)
            .map(|(value, e)| Entry {
                value,
                expires_at_ms: expiry(e),
            }))
    }

    /// One [`Db::transaction`], whose function may read more keys
    /// ([`Update::read_more`]) under the same writer lock; with `defer`,
    /// the commit does not wait for its fsync (see
    /// [`Backend::update_deferred`]).
    fn apply(
        &self,
        keys: &[Key],
        f: &mut dyn FnMut(&mut Update) -> Result<()>,
        defer: bool,
    ) -> Result<()> {
        self.0.transaction(|tx| {
            let mut entries = Vec::with_capacity(keys.len());
            for k in keys {
                entries.push(tx.get_entry(k.name())?.map(|(value, e)| Entry {
                    value,
                    expires_at_ms: expiry(e),
                }));
            }
            let now_ms = tx.now_ms();
            // The transaction writes nothing before `f` returns, so the
            // store's own read of a key is the transaction's.
            let this = self.clone();
            let reader = Box::new(move |k: &Key| this.entry_at(k, now_ms));
            let mut u = Update::new(Snapshot { now_ms, entries }).with_read_more(keys, reader);
            f(&mut u)?;
            if defer {
                tx.defer_sync();
            }
            let more = u.more_keys().to_vec();
            for (k, c) in keys.iter().chain(&more).zip(u.into_changes()?) {
                match c {
                    Some(Change::Put {
                        value,
                        expires_at_ms,
                    }) => tx.put_raw_expiring_at(k.name(), value, expires_at_ms.unwrap_or(0)),
                    Some(Change::Delete) => tx.delete(k.name()),
                    None => {}
                }
            }
            Ok(())
        })
    }
}

impl Backend for Embedded {
    /// Reads each key from the index, at one clock reading, without the
    /// writer lock: so it never waits for a writer, and works inside a
    /// [`Db::transaction`] closure. Each entry is one write's value and
    /// expiry, but a write of several keys that lands during the read may
    /// be seen in part (see [`Backend::read`]). Like [`Db::get`], it may
    /// also see a write under `SyncPolicy::Always` whose fsync has not
    /// completed yet (its writer has not been answered), which a power
    /// loss would then undo.
    fn read(&self, keys: &[Key]) -> Result<Snapshot> {
        let now_ms = self.0.now_ms();
        let entries = keys
            .iter()
            .map(|k| self.entry_at(k, now_ms))
            .collect::<Result<Vec<_>>>()?;
        Ok(Snapshot { now_ms, entries })
    }

    /// One [`Db::transaction`], whose function may read more keys
    /// ([`Update::read_more`]) under the same writer lock.
    fn update(&self, keys: &[Key], f: &mut dyn FnMut(&mut Update) -> Result<()>) -> Result<()> {
        self.apply(keys, f, false)
    }

    fn update_deferred(
        &self,
        keys: &[Key],
        f: &mut dyn FnMut(&mut Update) -> Result<()>,
    ) -> Result<()> {
        self.apply(keys, f, true)
    }

    fn sync_pending(&self) -> Result<()> {
        // Only `Always` promises durability at return; the other policies
        // never wait for an fsync, deferred or not.
        if self.0.syncs_every_write() {
            self.0.sync()?;
        }
        Ok(())
    }

    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> Result<()> {
        self.0.check_open()?;
        self.0
            .for_each_live_key(prefix, |k, len, e| f(k, u64::from(len), expiry(e)))
    }

    fn is_remote(&self) -> bool {
        false
    }

    fn now_ms(&self) -> Result<u64> {
        self.0.check_open()?;
        Ok(self.0.now_ms())
    }

    fn as_db(&self) -> Option<&Db> {
        Some(&self.0)
    }

    fn is_read_only(&self) -> bool {
        self.0.is_read_only()
    }
}
