//! SQLite (bundled, through rusqlite) in WAL mode: `kv(k BLOB PRIMARY KEY,
//! v BLOB) WITHOUT ROWID`, one connection behind a mutex (a rusqlite
//! `Connection` is `Send` but not `Sync`; SQLite allows one writer at a time
//! anyway).
//!
//! `synchronous=FULL` in WAL mode fsyncs the WAL at every commit; `NORMAL`
//! (SQLite's recommended setting for WAL) does not, and syncs only at
//! checkpoints. `sync` is `PRAGMA wal_checkpoint(FULL)`: it syncs the WAL,
//! copies it into the database file and syncs that, so every commit so far is
//! on disk when it returns.

use std::fmt::Display;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, TransactionBehavior};

use crate::store::{
    counter_update, expired, now_ms, ttl_unwrap, ttl_wrap, Describe, Durability, Peer, Result,
    Store,
};

/// Opens SQLite stores (WAL mode). `force_normal` keeps
/// `synchronous=NORMAL` even when `Durable` is asked for.
pub struct SqlitePeer {
    /// Use `synchronous=NORMAL` whatever the durability asked for.
    pub force_normal: bool,
}

struct SqliteStore {
    conn: Mutex<Connection>,
    durability: Durability,
    /// `synchronous=FULL` (else `NORMAL`).
    full: bool,
}

const PUT: &str = "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)";
const GET: &str = "SELECT v FROM kv WHERE k = ?1";
const DEL: &str = "DELETE FROM kv WHERE k = ?1";
const UPD: &str = "UPDATE kv SET v = ?2 WHERE k = ?1";

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

impl Peer for SqlitePeer {
    fn open(&self, dir: &Path, durability: Durability) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(dir).map_err(e)?;
        let conn = Connection::open(dir.join("kv.sqlite")).map_err(e)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .map_err(e)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(format!("sqlite: journal_mode=WAL refused (got {mode})"));
        }
        let full = durability == Durability::Durable && !self.force_normal;
        set_synchronous(&conn, full).map_err(e)?;
        // The default page cache is 2 MiB, far below the data set; the other
        // stores use the OS page cache without limit, so give SQLite 256 MiB
        // (SQLite's documentation: "PRAGMA cache_size").
        conn.pragma_update(None, "cache_size", -262_144)
            .map_err(e)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID",
        )
        .map_err(e)?;
        Ok(Box::new(SqliteStore {
            conn: Mutex::new(conn),
            durability,
            full,
        }))
    }
}

fn set_synchronous(conn: &Connection, full: bool) -> rusqlite::Result<()> {
    conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })
}

/// Reads the value of `key` into `out` (cleared first).
fn read_into(conn: &Connection, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
    out.clear();
    let mut st = conn.prepare_cached(GET).map_err(e)?;
    let mut rows = st.query([key]).map_err(e)?;
    let Some(row) = rows.next().map_err(e)? else {
        return Ok(false);
    };
    match row.get_ref(0).map_err(e)? {
        ValueRef::Blob(b) => out.extend_from_slice(b),
        ValueRef::Null => {}
        _ => return Err("sqlite: value is not a blob".into()),
    }
    Ok(true)
}

fn insert_all(conn: &mut Connection, pairs: &[(Vec<u8>, Vec<u8>)]) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut st = tx.prepare_cached(PUT)?;
        for (k, v) in pairs {
            st.execute(params![k, v])?;
        }
    }
    tx.commit()
}

impl SqliteStore {
    fn lock(&self) -> Result<MutexGuard<'_, Connection>> {
        self.conn
            .lock()
            .map_err(|_| "sqlite connection mutex poisoned".to_string())
    }

    fn exec(&self, sql: &str, params: &[&dyn rusqlite::ToSql]) -> Result<()> {
        let conn = self.lock()?;
        let mut st = conn.prepare_cached(sql).map_err(e)?;
        st.execute(params).map_err(e)?;
        Ok(())
    }

    fn checkpoint(&self, mode: &str) -> Result<()> {
        let conn = self.lock()?;
        let busy: i64 = conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| r.get(0))
            .map_err(e)?;
        if busy != 0 {
            return Err(format!("sqlite: wal_checkpoint({mode}) could not complete"));
        }
        Ok(())
    }
}

impl Store for SqliteStore {
    fn describe(&self) -> Describe {
        let sync = if self.full {
            "synchronous=FULL (WAL fsynced at each commit)"
        } else {
            "synchronous=NORMAL (no fsync per commit)"
        };
        let periodic = if self.durability == Durability::Periodic {
            " (called by the harness once a second)"
        } else {
            ""
        };
        let batch = if self.full {
            "put_batch one transaction with synchronous=NORMAL for its duration"
        } else {
            "put_batch one transaction"
        };
        let caveat = (self.durability == Durability::Durable && !self.full).then(|| {
            "synchronous=NORMAL in WAL mode: a commit is not fsynced; a power loss can lose recent commits"
                .to_string()
        });
        Describe {
            settings: format!(
                "journal_mode=WAL, {sync}, one transaction per write, one Mutex<Connection> shared by all threads, prepare_cached statements; {batch}; touch/incr_ttl in one BEGIN IMMEDIATE transaction; sync(){periodic} = PRAGMA wal_checkpoint(FULL); close() = wal_checkpoint(TRUNCATE); cache_size=256 MiB; other pragmas default"
            ),
            caveat,
            self_periodic: false,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut conn = self.lock()?;
        if self.full {
            set_synchronous(&conn, false).map_err(e)?;
        }
        let r = insert_all(&mut conn, pairs);
        if self.full {
            set_synchronous(&conn, true).map_err(e)?;
        }
        r.map_err(e)
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.exec(PUT, params![key, value])
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let conn = self.lock()?;
        read_into(&conn, key, out)
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.exec(DEL, params![key])
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        self.put(key, &ttl_wrap(value, now_ms() + ttl_ms))
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        if !self.get(key, out)? {
            return Ok(false);
        }
        let live = match ttl_unwrap(out) {
            Some((exp, _)) => !expired(exp, now_ms()),
            None => false,
        };
        if live {
            out.drain(..8);
        } else {
            out.clear();
        }
        Ok(live)
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut cur = Vec::new();
        let now = now_ms();
        let new = if read_into(&tx, key, &mut cur)? {
            match ttl_unwrap(&cur) {
                Some((exp, body)) if !expired(exp, now) => Some(ttl_wrap(body, now + ttl_ms)),
                _ => None,
            }
        } else {
            None
        };
        let Some(new) = new else {
            // Nothing written: the dropped transaction rolls back.
            return Ok(false);
        };
        tx.prepare_cached(UPD)
            .and_then(|mut st| st.execute(params![key, new]))
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let mut conn = self.lock()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut cur = Vec::new();
        let found = read_into(&tx, key, &mut cur)?;
        let (bytes, n) = counter_update(found.then_some(cur.as_slice()), ttl_ms, now_ms());
        tx.prepare_cached(PUT)
            .and_then(|mut st| st.execute(params![key, bytes]))
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.checkpoint("FULL")
    }

    fn close(&self) -> Result<()> {
        self.checkpoint("TRUNCATE")
    }
}
