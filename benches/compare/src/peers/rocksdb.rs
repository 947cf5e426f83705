//! RocksDB (rust-rocksdb 0.25): the default column family, default options
//! but `create_if_missing`, the WAL on.
//!
//! `Durable` writes with `WriteOptions::set_sync(true)` (the WAL is synced
//! before the write returns; concurrent sync writers share one sync through
//! RocksDB's write groups). `Periodic` and `Relaxed` write with `sync=false`
//! (the WAL write reaches the OS); RocksDB has no periodic WAL fsync of its
//! own, so `sync` is `flush_wal(true)` and the harness calls it once a second
//! in `Periodic`.
//!
//! `touch` and `incr_ttl` are a read then a write under a mutex of this
//! adapter (a plain `DB` has no read-modify-write; `TransactionDB` would put
//! every plain write through its lock manager). Plain writes do not take that
//! mutex, which is equivalent here: no workload mixes plain writes and
//! counters on a key.

use std::fmt::Display;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rocksdb::{Options, WriteBatch, WriteOptions, DB};

use crate::store::{
    copy_live, counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer,
    Result, Store,
};

/// Opens rocksdb stores.
pub struct RocksPeer;

struct RocksStore {
    db: DB,
    /// For single writes: `sync` as the durability asks.
    write: WriteOptions,
    /// For `put_batch`: never `sync`.
    batch: WriteOptions,
    durability: Durability,
    /// Serializes `touch` and `incr_ttl`.
    rmw: Mutex<()>,
}

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

impl Peer for RocksPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        let db = DB::open(&opts, dir).map_err(e)?;
        let mut write = WriteOptions::default();
        write.set_sync(durability == Durability::Durable);
        let mut batch = WriteOptions::default();
        batch.set_sync(false);
        Ok(Box::new(RocksStore {
            db,
            write,
            batch,
            durability,
            rmw: Mutex::new(()),
        }))
    }
}

impl RocksStore {
    fn lock(&self) -> Result<MutexGuard<'_, ()>> {
        self.rmw
            .lock()
            .map_err(|_| "rocksdb adapter mutex poisoned".to_string())
    }

    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match self.db.get_pinned(key).map_err(e)? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

impl Store for RocksStore {
    fn describe(&self) -> Describe {
        let mode = match self.durability {
            Durability::Durable => "WriteOptions sync=true (WAL fsynced before each write returns)",
            Durability::Periodic => {
                "WriteOptions sync=false; sync() (called by the harness once a second: RocksDB has no periodic WAL fsync) = flush_wal(true)"
            }
            Durability::Relaxed => "WriteOptions sync=false; sync() = flush_wal(true)",
        };
        Describe {
            settings: format!(
                "{mode}; WAL on, one write per put; put_batch one WriteBatch with sync=false; touch/incr_ttl get+put under one writer mutex; close() = flush_wal(true) + memtable flush; other options default (create_if_missing)"
            ),
            caveat: None,
            self_periodic: false,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = WriteBatch::default();
        for (k, v) in pairs {
            b.put(k, v);
        }
        self.db.write_opt(b, &self.batch).map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.write).map_err(e)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.read(key, out)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.delete_opt(key, &self.write).map_err(e)
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_live(
            self.db.get_pinned(key).map_err(e)?.as_deref(),
            out,
        ))
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let _g = self.lock()?;
        let mut cur = Vec::new();
        if !self.read(key, &mut cur)? {
            return Ok(false);
        }
        let now = now_ms();
        match ttl_unwrap(&cur) {
            Some((exp, body)) if !expired(exp, now) => {
                let new = ttl_wrap(body, now + ttl_ms);
                self.put(key, &new)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let _g = self.lock()?;
        let mut cur = Vec::new();
        let found = self.read(key, &mut cur)?;
        let (bytes, n) = counter_update(found.then_some(cur.as_slice()), ttl_ms, now_ms());
        self.put(key, &bytes)?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(e)
    }

    fn close(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(e)?;
        // Memtables to SST files, so that the files on disk hold the data
        // and not only the WAL.
        self.db.flush().map_err(e)
    }
}
