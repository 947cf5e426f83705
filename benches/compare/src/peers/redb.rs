//! redb 4: one table, one write transaction per write.
//!
//! `Durable` commits with `Durability::Immediate` (redb's default: fsync
//! before `commit` returns). `Periodic` and `Relaxed` commit with
//! `Durability::None`, which redb documents as "not persisted to disk unless
//! followed by a commit with `Durability::Immediate`": `sync` is such a
//! commit (an empty one), so the harness's once-a-second `sync` bounds the
//! loss in `Periodic`.

use std::fmt::Display;
use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use crate::store::{
    copy_live, counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer,
    Result, Store,
};

/// Opens redb stores.
pub struct RedbPeer;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

struct RedbStore {
    db: Database,
    durability: Durability,
}

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

impl Peer for RedbPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir).map_err(e)?;
        let db = Database::create(dir.join("kv.redb")).map_err(e)?;
        // Create the table once, durably, so that read transactions find it.
        let txn = db.begin_write().map_err(e)?;
        txn.open_table(TABLE).map_err(e)?;
        txn.commit().map_err(e)?;
        Ok(Box::new(RedbStore { db, durability }))
    }
}

impl RedbStore {
    /// A write transaction with the durability of this store's mode, or
    /// `Durability::None` when `relaxed`.
    fn begin(&self, relaxed: bool) -> Result<WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(e)?;
        let d = if !relaxed && self.durability == Durability::Durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        };
        txn.set_durability(d).map_err(e)?;
        Ok(txn)
    }
}

impl Store for RedbStore {
    fn describe(&self) -> Describe {
        let mode = match self.durability {
            Durability::Durable => {
                "Durability::Immediate (fsync before commit returns), one write transaction per write"
            }
            Durability::Periodic => {
                "Durability::None, one write transaction per write; sync() (called by the harness once a second) = an empty Durability::Immediate commit"
            }
            Durability::Relaxed => {
                "Durability::None, one write transaction per write; sync() = an empty Durability::Immediate commit"
            }
        };
        Describe {
            settings: format!(
                "{mode}; put_batch one Durability::None transaction; reads in a read transaction; other options default"
            ),
            caveat: None,
            self_periodic: false,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let txn = self.begin(true)?;
        {
            let mut t = txn.open_table(TABLE).map_err(e)?;
            for (k, v) in pairs {
                t.insert(k.as_slice(), v.as_slice()).map_err(e)?;
            }
        }
        txn.commit().map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let txn = self.begin(false)?;
        {
            let mut t = txn.open_table(TABLE).map_err(e)?;
            t.insert(key, value).map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(TABLE).map_err(e)?;
        match t.get(key).map_err(e)? {
            Some(v) => {
                out.extend_from_slice(v.value());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let txn = self.begin(false)?;
        {
            let mut t = txn.open_table(TABLE).map_err(e)?;
            t.remove(key).map_err(e)?;
        }
        txn.commit().map_err(e)
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let txn = self.db.begin_read().map_err(e)?;
        let t = txn.open_table(TABLE).map_err(e)?;
        let v = t.get(key).map_err(e)?;
        Ok(copy_live(v.as_ref().map(|g| g.value()), out))
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let txn = self.begin(false)?;
        let live = {
            let mut t = txn.open_table(TABLE).map_err(e)?;
            let now = now_ms();
            let new = match t.get(key).map_err(e)? {
                Some(v) => match ttl_unwrap(v.value()) {
                    Some((exp, body)) if !expired(exp, now) => Some(ttl_wrap(body, now + ttl_ms)),
                    _ => None,
                },
                None => None,
            };
            match new {
                Some(n) => {
                    t.insert(key, n.as_slice()).map_err(e)?;
                    true
                }
                None => false,
            }
        };
        if live {
            txn.commit().map_err(e)?;
        } else {
            txn.abort().map_err(e)?;
        }
        Ok(live)
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let txn = self.begin(false)?;
        let n = {
            let mut t = txn.open_table(TABLE).map_err(e)?;
            let (bytes, n) = {
                let old = t.get(key).map_err(e)?;
                counter_update(old.as_ref().map(|g| g.value()), ttl_ms, now_ms())
            };
            t.insert(key, bytes.as_slice()).map_err(e)?;
            n
        };
        txn.commit().map_err(e)?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        // An empty durable commit persists every earlier Durability::None one.
        let mut txn = self.db.begin_write().map_err(e)?;
        txn.set_durability(redb::Durability::Immediate).map_err(e)?;
        txn.commit().map_err(e)
    }
}
