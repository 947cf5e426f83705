//! cairn itself.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use cairn::limits::FixedWindow;
use cairn::{Batch, Db, Options, SyncPolicy};

use crate::store::{Describe, Durability, Peer, Result, Store};

/// Opens cairn stores with default options but the sync policy.
pub struct CairnPeer;

struct CairnStore {
    db: Db,
    durability: Durability,
    /// The rate-limit counter of `incr_ttl`, for its window length.
    window: Mutex<Option<(u64, FixedWindow)>>,
}

fn e(err: cairn::Error) -> String {
    err.to_string()
}

impl Peer for CairnPeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        let policy = match durability {
            Durability::Durable => SyncPolicy::Always,
            Durability::Periodic => SyncPolicy::EveryMillis(1000),
            Durability::Relaxed => SyncPolicy::Never,
        };
        let db = Options::new().sync_policy(policy).open(dir).map_err(e)?;
        Ok(Box::new(CairnStore {
            db,
            durability,
            window: Mutex::new(None),
        }))
    }
}

impl Store for CairnStore {
    fn open_note(&self) -> Option<String> {
        let r = self.db.recovery_report();
        Some(format!(
            "index checkpoint {}; {:.1} MB of log replayed",
            r.checkpoint.name(),
            r.replayed_log_bytes as f64 / 1e6
        ))
    }

    fn describe(&self) -> Describe {
        let settings = match self.durability {
            Durability::Durable => "SyncPolicy::Always (fdatasync before each write returns; concurrent writers share one: group commit)",
            Durability::Periodic => "SyncPolicy::EveryMillis(1000) (each write handed to the OS before it returns; fdatasync once a second)",
            Durability::Relaxed => "SyncPolicy::Never (each write handed to the OS before it returns; no fsync until sync())",
        };
        Describe {
            settings: format!("{settings}; other options default"),
            caveat: None,
            self_periodic: true,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = Batch::new();
        for (k, v) in pairs {
            b.push_put(k, v, None);
        }
        self.db.write_batch(b).map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put(key, value).map_err(e)
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        match self.db.get(key).map_err(e)? {
            Some(v) => {
                *out = v;
                Ok(true)
            }
            None => {
                out.clear();
                Ok(false)
            }
        }
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.db.delete(key).map(|_| ()).map_err(e)
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.db
            .put_with_ttl(key, value, Duration::from_millis(ttl_ms))
            .map_err(e)
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.get(key, out)
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        self.db
            .expire(key, Duration::from_millis(ttl_ms))
            .map_err(e)
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        // cairn's rate-limit module: Redis's INCR + EXPIRE pattern (the
        // first increment of a window sets its expiry, later ones keep it)
        // in one atomic write, so one fsync under `Always`. With no limit,
        // every request is counted, as in the other stores.
        let window = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            match &*w {
                Some((ms, fw)) if *ms == ttl_ms => fw.clone(),
                _ => {
                    let fw = FixedWindow::new(
                        self.db.clone(),
                        "rl",
                        u64::MAX,
                        Duration::from_millis(ttl_ms),
                    )
                    .map_err(e)?;
                    *w = Some((ttl_ms, fw.clone()));
                    fw
                }
            }
        };
        let d = window.check(key).map_err(e)?;
        Ok(i64::try_from(u64::MAX - d.remaining).unwrap_or(i64::MAX))
    }

    fn fsyncs(&self) -> Option<u64> {
        Some(self.db.stats().fsyncs)
    }

    fn sync(&self) -> Result<()> {
        self.db.sync().map_err(e)
    }

    fn close(&self) -> Result<()> {
        self.db.close().map_err(e)
    }
}
