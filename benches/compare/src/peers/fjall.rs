//! fjall 3: one keyspace in a plain (non-transactional) `Database`.
//!
//! Every fjall write reaches the OS (its journal is flushed to the page
//! cache) before it returns; durability comes from `Database::persist`.
//! fjall 3 has no periodic-fsync option (fjall 2's `fsync_ms` is gone), so in
//! `Periodic` the harness calls `sync` once a second.
//!
//! `touch` and `incr_ttl` are a read then a write under a mutex of this
//! adapter, which is how fjall's own `SingleWriterTxDatabase` makes a
//! read-modify-write atomic (one writer lock); the plain `Database` is kept so
//! that `put`/`get`/`delete` take fjall's ordinary write and read paths
//! rather than a transaction each. Plain writes do not take that mutex, which
//! is equivalent here: no workload mixes plain writes and counters on a key.

use std::fmt::Display;
use std::path::Path;
use std::sync::Mutex;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::store::{
    copy_live, counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer,
    Result, Store,
};

/// Opens fjall stores.
pub struct FjallPeer;

struct FjallStore {
    db: Database,
    ks: Keyspace,
    durability: Durability,
    /// Serializes `touch` and `incr_ttl`.
    rmw: Mutex<()>,
}

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

impl Peer for FjallPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        let db = Database::builder(dir).open().map_err(e)?;
        let ks = db
            .keyspace("kv", KeyspaceCreateOptions::default)
            .map_err(e)?;
        Ok(Box::new(FjallStore {
            db,
            ks,
            durability,
            rmw: Mutex::new(()),
        }))
    }
}

impl FjallStore {
    /// After each single write: fdatasync the journal in `Durable` mode.
    fn written(&self) -> Result<()> {
        if self.durability == Durability::Durable {
            self.db.persist(PersistMode::SyncData).map_err(e)?;
        }
        Ok(())
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.rmw
            .lock()
            .map_err(|_| "fjall adapter mutex poisoned".to_string())
    }
}

impl Store for FjallStore {
    fn describe(&self) -> Describe {
        let mode = match self.durability {
            Durability::Durable => {
                "each write then Database::persist(PersistMode::SyncData) (fdatasync of the journal)"
            }
            Durability::Periodic => {
                "no persist per write (journal flushed to the OS); sync() (called by the harness once a second: fjall 3 has no periodic fsync) = persist(PersistMode::SyncAll)"
            }
            Durability::Relaxed => {
                "no persist per write (journal flushed to the OS); sync() = persist(PersistMode::SyncAll)"
            }
        };
        Describe {
            settings: format!(
                "plain Database, one keyspace; {mode}; put_batch one write batch, not persisted; touch/incr_ttl read+write under one writer mutex; other options default"
            ),
            caveat: None,
            self_periodic: false,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = self.db.batch();
        for (k, v) in pairs {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        b.commit().map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.ks.insert(key, value).map_err(e)?;
        self.written()
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match self.ks.get(key).map_err(e)? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.ks.remove(key).map_err(e)?;
        self.written()
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_live(self.ks.get(key).map_err(e)?.as_deref(), out))
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let _g = self.lock()?;
        let now = now_ms();
        let new = match self.ks.get(key).map_err(e)? {
            Some(v) => match ttl_unwrap(&v) {
                Some((exp, body)) if !expired(exp, now) => Some(ttl_wrap(body, now + ttl_ms)),
                _ => None,
            },
            None => None,
        };
        match new {
            Some(n) => {
                self.ks.insert(key, n).map_err(e)?;
                self.written()?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let _g = self.lock()?;
        let old = self.ks.get(key).map_err(e)?;
        let (bytes, n) = counter_update(old.as_deref(), ttl_ms, now_ms());
        self.ks.insert(key, bytes).map_err(e)?;
        self.written()?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(e)
    }
}
