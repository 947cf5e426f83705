//! Redis with AOF persistence, over loopback, through a small RESP client.
//!
//! The harness starts the server (see `redis_server.rs`) and passes its
//! address in `CAIRN_COMPARE_REDIS_ALWAYS` / `CAIRN_COMPARE_REDIS_EVERYSEC`.
//! Each thread that uses the store takes its own connection from a pool, so
//! a single-threaded workload uses exactly one connection and sends one
//! request at a time; only `put_batch` pipelines (1000 SETs per round trip).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Mutex;

use crate::store::{Describe, Durability, Peer, Result, Store};

/// A Redis server started by the harness, with a fixed `appendfsync`.
pub struct RedisPeer {
    addr: String,
    everysec: bool,
}

impl RedisPeer {
    /// The server named by the environment, if the harness started one.
    pub fn from_env(everysec: bool) -> Option<RedisPeer> {
        let var = if everysec {
            "CAIRN_COMPARE_REDIS_EVERYSEC"
        } else {
            "CAIRN_COMPARE_REDIS_ALWAYS"
        };
        let addr = std::env::var(var).ok()?;
        Some(RedisPeer { addr, everysec })
    }
}

struct Conn {
    r: BufReader<TcpStream>,
    w: BufWriter<TcpStream>,
}

/// A RESP reply, as much of it as the harness needs.
#[derive(Debug)]
enum Reply {
    Ok,
    Int(i64),
    Bulk(Option<Vec<u8>>),
}

impl Conn {
    fn connect(addr: &str) -> Result<Conn> {
        let s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        let r = BufReader::new(s.try_clone().map_err(|e| e.to_string())?);
        Ok(Conn {
            r,
            w: BufWriter::with_capacity(1 << 16, s),
        })
    }

    fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        let w = &mut self.w;
        let io = |e: std::io::Error| e.to_string();
        write!(w, "*{}\r\n", args.len()).map_err(io)?;
        for a in args {
            write!(w, "${}\r\n", a.len()).map_err(io)?;
            w.write_all(a).map_err(io)?;
            w.write_all(b"\r\n").map_err(io)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.w.flush().map_err(|e| e.to_string())
    }

    fn line(&mut self) -> Result<Vec<u8>> {
        let mut l = Vec::new();
        self.r
            .read_until(b'\n', &mut l)
            .map_err(|e| e.to_string())?;
        if l.len() < 3 || !l.ends_with(b"\r\n") {
            return Err("redis: connection closed or bad reply".into());
        }
        l.truncate(l.len() - 2);
        Ok(l)
    }

    fn reply(&mut self) -> Result<Reply> {
        let l = self.line()?;
        let num = |b: &[u8]| -> Result<i64> {
            std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| "redis: bad number".to_string())
        };
        match l[0] {
            b'+' => Ok(Reply::Ok),
            b'-' => Err(format!("redis: {}", String::from_utf8_lossy(&l[1..]))),
            b':' => Ok(Reply::Int(num(&l[1..])?)),
            b'$' => {
                let n = num(&l[1..])?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                let mut v = vec![0u8; n as usize + 2];
                self.r.read_exact(&mut v).map_err(|e| e.to_string())?;
                v.truncate(n as usize);
                Ok(Reply::Bulk(Some(v)))
            }
            _ => Err(format!(
                "redis: unexpected reply {:?}",
                String::from_utf8_lossy(&l)
            )),
        }
    }

    fn call(&mut self, args: &[&[u8]]) -> Result<Reply> {
        self.send(args)?;
        self.flush()?;
        self.reply()
    }
}

struct RedisStore {
    addr: String,
    everysec: bool,
    pool: Mutex<Vec<Conn>>,
}

impl RedisStore {
    fn with<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T>) -> Result<T> {
        let taken = self.pool.lock().map_err(|_| "poisoned")?.pop();
        let mut c = match taken {
            Some(c) => c,
            None => Conn::connect(&self.addr)?,
        };
        let out = f(&mut c);
        if out.is_ok() {
            self.pool.lock().map_err(|_| "poisoned")?.push(c);
        }
        out
    }
}

fn int(r: Reply) -> Result<i64> {
    match r {
        Reply::Int(n) => Ok(n),
        other => Err(format!("redis: expected an integer, got {other:?}")),
    }
}

impl Peer for RedisPeer {
    fn open(&self, _dir: &Path, _durability: Durability) -> Result<Box<dyn Store>> {
        let s = RedisStore {
            addr: self.addr.clone(),
            everysec: self.everysec,
            pool: Mutex::new(Vec::new()),
        };
        s.with(|c| c.call(&[b"PING"]).map(|_| ()))?;
        Ok(Box::new(s))
    }
}

impl Store for RedisStore {
    fn describe(&self) -> Describe {
        let (mode, caveat) = if self.everysec {
            (
                "appendfsync everysec",
                Some("appendfsync everysec: a write is acknowledged before it is fsynced; a power loss can lose about the last 1-2 s".to_string()),
            )
        } else {
            ("appendfsync always", None)
        };
        Describe {
            settings: format!("redis-server 7, appendonly yes, {mode}, save '' (no RDB), loopback TCP, one connection per client thread, one request per round trip (bulk load: 1000 SETs pipelined per round trip)"),
            caveat,
            self_periodic: true,
        }
    }

    fn put_batch(&self, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.with(|c| {
            for (k, v) in pairs {
                c.send(&[b"SET", k, v])?;
            }
            c.flush()?;
            for _ in pairs {
                c.reply()?;
            }
            Ok(())
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.with(|c| c.call(&[b"SET", key, value]).map(|_| ()))
    }

    fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        out.clear();
        self.with(|c| match c.call(&[b"GET", key])? {
            Reply::Bulk(Some(v)) => {
                *out = v;
                Ok(true)
            }
            Reply::Bulk(None) => Ok(false),
            other => Err(format!("redis: GET gave {other:?}")),
        })
    }

    fn delete(&self, key: &[u8]) -> Result<()> {
        self.with(|c| c.call(&[b"DEL", key]).map(|_| ()))
    }

    fn put_ttl(&self, key: &[u8], value: &[u8], ttl_ms: u64) -> Result<()> {
        let ttl = ttl_ms.to_string();
        self.with(|c| {
            c.call(&[b"SET", key, value, b"PX", ttl.as_bytes()])
                .map(|_| ())
        })
    }

    fn get_live(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        self.get(key, out)
    }

    fn touch(&self, key: &[u8], ttl_ms: u64) -> Result<bool> {
        let ttl = ttl_ms.to_string();
        self.with(|c| Ok(int(c.call(&[b"PEXPIRE", key, ttl.as_bytes()])?)? == 1))
    }

    fn incr_ttl(&self, key: &[u8], ttl_ms: u64) -> Result<i64> {
        let ttl = ttl_ms.to_string();
        self.with(|c| {
            let n = int(c.call(&[b"INCR", key])?)?;
            if n == 1 {
                c.call(&[b"PEXPIRE", key, ttl.as_bytes()])?;
            }
            Ok(n)
        })
    }

    fn sync(&self) -> Result<()> {
        // With appendfsync always every acknowledged write is already
        // fsynced; with everysec the server fsyncs on its own schedule.
        // Either way a round trip makes sure earlier writes were processed.
        self.with(|c| match c.call(&[b"PING"])? {
            Reply::Ok => Ok(()),
            other => Err(format!("redis: PING gave {other:?}")),
        })
    }
}
