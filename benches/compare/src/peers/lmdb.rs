//! LMDB through heed 0.23: one named database "kv" in an environment with a
//! 64 GiB map (the data file is sparse: the map size only reserves address
//! space), one write transaction per write.
//!
//! `Durable` opens the environment with default flags: every commit is
//! synced (fdatasync) before it returns. `Periodic` and `Relaxed` open it with
//! `MDB_NOSYNC`; `sync` is `mdb_env_sync(force)`. Readahead is left on (the
//! default): LMDB suggests `MDB_NORDAHEAD` only for random reads of a
//! database larger than RAM.

use std::fmt::Display;
use std::path::Path;
use std::sync::{RwLock, RwLockReadGuard};

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, FlagSetMode};

use crate::store::{
    copy_live, counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer,
    Result, Store,
};

/// Opens lmdb stores.
pub struct LmdbPeer;

/// The map size: LMDB's fixed upper bound on the data file.
const MAP_SIZE: usize = 64 << 30;

struct LmdbStore {
    env: Env,
    db: Database<'static, Bytes, Bytes>,
    durability: Durability,
    /// `Durable` only: single writes hold it shared; `put_batch` holds it
    /// exclusively while it turns `MDB_NOSYNC` on for its one commit (heed
    /// exposes no per-transaction `MDB_NOSYNC`, and LMDB wants a single
    /// caller of `mdb_env_set_flags` at a time).
    gate: RwLock<()>,
}

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

impl Peer for LmdbPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir).map_err(e)?;
        let mut opts = EnvOpenOptions::new();
        opts.map_size(MAP_SIZE).max_dbs(1);
        if durability != Durability::Durable {
            // SAFETY: MDB_NOSYNC trades durability (and, on a filesystem that
            // reorders writes, integrity after a system crash) for speed,
            // which is what these modes ask for; `sync` flushes.
            unsafe {
                opts.flags(EnvFlags::NO_SYNC);
            }
        }
        // SAFETY: the directory is this store's own; nothing else maps or
        // modifies its files while it is open.
        let env = unsafe { opts.open(dir) }.map_err(e)?;
        let wtxn = env.write_txn().map_err(e)?;
        let db = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| {
                dbo.create_database::<Bytes, Bytes>(wtxn, Some("kv"))
                    .map(CommitOrAbort::<_, ()>::Commit)
            })
            .map_err(|err: heed::Error| e(err))?
            .commit()
            .ok_or("lmdb: creating the kv database aborted")?;
        Ok(Box::new(LmdbStore {
            env,
            db,
            durability,
            gate: RwLock::new(()),
        }))
    }
}

impl LmdbStore {
    /// Held across a single write in `Durable` mode (see `gate`).
    fn shared(&self) -> Result<Option<RwLockReadGuard<'_, ()>>> {
        if self.durability != Durability::Durable {
            return Ok(None);
        }
        self.gate
            .read()
            .map(Some)
            .map_err(|_| "lmdb gate poisoned".to_string())
    }

    fn insert_all(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut wtxn = self.env.write_txn().map_err(e)?;
        for (k, v) in pairs {
            self.db.put(&mut wtxn, k, v).map_err(e)?;
        }
        wtxn.commit().map_err(e)
    }

    fn set_nosync(&self, on: bool) -> Result<()> {
        let mode = if on {
            FlagSetMode::Enable
        } else {
            FlagSetMode::Disable
        };
        // SAFETY: called only with `gate` held exclusively, so no other
        // thread changes the flags or commits meanwhile.
        unsafe { self.env.set_flags(EnvFlags::NO_SYNC, mode) }.map_err(e)
    }
}

impl Store for LmdbStore {
    fn describe(&self) -> Describe {
        let mode = match self.durability {
            Durability::Durable => {
                "default env flags (each commit fdatasynced before it returns), one write transaction per write; put_batch one transaction with MDB_NOSYNC set for its commit"
            }
            Durability::Periodic => {
                "MDB_NOSYNC, one write transaction per write; sync() (called by the harness once a second) = mdb_env_sync(force); put_batch one transaction"
            }
            Durability::Relaxed => {
                "MDB_NOSYNC, one write transaction per write; sync() = mdb_env_sync(force); put_batch one transaction"
            }
        };
        let caveat = (self.durability == Durability::Periodic).then(|| {
            "MDB_NOSYNC: LMDB documents that a system crash before a sync may corrupt the database unless the filesystem preserves write order"
                .to_string()
        });
        Describe {
            settings: format!(
                "{mode}; map_size 64 GiB (sparse file); reads in a read transaction; readahead on (default); other options default"
            ),
            caveat,
            self_periodic: false,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        if self.durability != Durability::Durable {
            return self.insert_all(pairs);
        }
        let _g = self
            .gate
            .write()
            .map_err(|_| "lmdb gate poisoned".to_string())?;
        self.set_nosync(true)?;
        let r = self.insert_all(pairs);
        self.set_nosync(false)?;
        r
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let _g = self.shared()?;
        let mut wtxn = self.env.write_txn().map_err(e)?;
        self.db.put(&mut wtxn, key, value).map_err(e)?;
        wtxn.commit().map_err(e)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        let rtxn = self.env.read_txn().map_err(e)?;
        match self.db.get(&rtxn, key).map_err(e)? {
            Some(v) => {
                out.extend_from_slice(v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        let _g = self.shared()?;
        let mut wtxn = self.env.write_txn().map_err(e)?;
        self.db.delete(&mut wtxn, key).map_err(e)?;
        wtxn.commit().map_err(e)
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let rtxn = self.env.read_txn().map_err(e)?;
        Ok(copy_live(self.db.get(&rtxn, key).map_err(e)?, out))
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let _g = self.shared()?;
        let mut wtxn = self.env.write_txn().map_err(e)?;
        let now = now_ms();
        let new = match self.db.get(&wtxn, key).map_err(e)? {
            Some(v) => match ttl_unwrap(v) {
                Some((exp, body)) if !expired(exp, now) => Some(ttl_wrap(body, now + ttl_ms)),
                _ => None,
            },
            None => None,
        };
        let Some(new) = new else {
            wtxn.abort();
            return Ok(false);
        };
        self.db.put(&mut wtxn, key, &new).map_err(e)?;
        wtxn.commit().map_err(e)?;
        Ok(true)
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let _g = self.shared()?;
        let mut wtxn = self.env.write_txn().map_err(e)?;
        let (bytes, n) = {
            let old = self.db.get(&wtxn, key).map_err(e)?;
            counter_update(old, ttl_ms, now_ms())
        };
        self.db.put(&mut wtxn, key, &bytes).map_err(e)?;
        wtxn.commit().map_err(e)?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.env.force_sync().map_err(e)
    }
}
