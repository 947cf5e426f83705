//! sled 0.34: one tree.
//!
//! sled's `flush` writes its log with `sync_file_range(WAIT_BEFORE | WRITE |
//! WAIT_AFTER)` (pagecache/iobuf.rs), not fsync: the data reaches the device
//! but neither the device's cache nor the file's metadata is flushed, so a
//! per-write `flush` is not a durable commit (also seen under strace). Its
//! background flusher (`flush_every_ms`) does call `sync_all` after each
//! round (flusher.rs), so `Periodic` uses it: `flush_every_ms(Some(1000))`.
//! `sync` here flushes and then fsyncs the `db` file itself, so that `sync`
//! and `close` really are durable.
//!
//! `touch` and `incr_ttl` are atomic through sled's compare-and-swap
//! (`compare_and_swap`, `update_and_fetch`).

use std::fmt::Display;
use std::fs::File;
use std::path::{Path, PathBuf};

use sled::{Batch, Config, Db, Tree};

use crate::store::{
    copy_live, counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer,
    Result, Store,
};

/// Opens sled stores.
pub struct SledPeer;

struct SledStore {
    _db: Db,
    tree: Tree,
    /// sled's single data file, fsynced by `sync`.
    file: PathBuf,
    durability: Durability,
}

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

/// sled's default background flush interval.
const DEFAULT_FLUSH_MS: u64 = 500;

fn flush_ms(durability: Durability) -> u64 {
    match durability {
        Durability::Periodic => 1000,
        Durability::Durable | Durability::Relaxed => DEFAULT_FLUSH_MS,
    }
}

impl Peer for SledPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        let db = Config::new()
            .path(dir)
            .flush_every_ms(Some(flush_ms(durability)))
            .open()
            .map_err(e)?;
        let tree = db.open_tree("kv").map_err(e)?;
        Ok(Box::new(SledStore {
            _db: db,
            tree,
            file: dir.join("db"),
            durability,
        }))
    }
}

impl SledStore {
    /// After each single write: `flush` in `Durable` mode.
    fn written(&self) -> Result<()> {
        if self.durability == Durability::Durable {
            self.tree.flush().map_err(e)?;
        }
        Ok(())
    }
}

impl Store for SledStore {
    fn describe(&self) -> Describe {
        let ms = flush_ms(self.durability);
        let mode = match self.durability {
            Durability::Durable => format!("Tree::flush() after each write; background flush_every_ms={ms} (default)"),
            Durability::Periodic => format!("no flush per write; sled's background flusher flush_every_ms={ms} (flush + fsync of the db file each round)"),
            Durability::Relaxed => format!("no flush per write; background flush_every_ms={ms} (default)"),
        };
        let caveat = match self.durability {
            Durability::Durable => Some(
                "sled 0.34's flush() does not fsync (it uses sync_file_range, observed under strace): a write is not durable when it returns, only after the background flusher's fsync (every 500 ms)"
                    .to_string(),
            ),
            _ => None,
        };
        Describe {
            settings: format!(
                "one tree; {mode}; put_batch one apply_batch, not flushed; touch/incr_ttl by compare-and-swap; sync() = flush() + fsync of the db file; other options default"
            ),
            caveat,
            self_periodic: self.durability == Durability::Periodic,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = Batch::default();
        for (k, v) in pairs {
            b.insert(k.as_slice(), v.as_slice());
        }
        self.tree.apply_batch(b).map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value).map_err(e)?;
        self.written()
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        match self.tree.get(key).map_err(e)? {
            Some(v) => {
                out.extend_from_slice(&v);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.tree.remove(key).map_err(e)?;
        self.written()
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(copy_live(self.tree.get(key).map_err(e)?.as_deref(), out))
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        loop {
            let Some(cur) = self.tree.get(key).map_err(e)? else {
                return Ok(false);
            };
            let now = now_ms();
            let new = match ttl_unwrap(&cur) {
                Some((exp, body)) if !expired(exp, now) => ttl_wrap(body, now + ttl_ms),
                _ => return Ok(false),
            };
            if self
                .tree
                .compare_and_swap(key, Some(&cur), Some(new))
                .map_err(e)?
                .is_ok()
            {
                self.written()?;
                return Ok(true);
            }
            // Lost a race with another writer: read again.
        }
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let now = now_ms();
        let mut n = 0;
        self.tree
            .update_and_fetch(key, |old| {
                let (bytes, count) = counter_update(old, ttl_ms, now);
                n = count;
                Some(bytes)
            })
            .map_err(e)?;
        self.written()?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.tree.flush().map_err(e)?;
        // flush() stops at sync_file_range; fsync the file sled wrote.
        File::open(&self.file).and_then(|f| f.sync_all()).map_err(e)
    }
}
