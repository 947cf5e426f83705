//! The Redis side of `cairn follow`: a connection to one database of a
//! server, or to a Redis Cluster (one connection per node, keys routed by
//! slot); applying operations, reading and writing the follower's state
//! key, and walking the keys already there.

use anyhow::{anyhow, bail, Context, Result};
use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, IntoConnectionInfo};

/// One write to the target: every change of the store becomes one of
/// these, and each sets a key's whole state, so applying one twice (a
/// replay after a kill -9) leaves the same result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `SET key value [PXAT ms]`.
    Set {
        /// The target key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The absolute expiry in unix ms (`PXAT`), if any.
        pxat: Option<u64>,
    },
    /// `DEL key`.
    Del {
        /// The target key.
        key: Vec<u8>,
    },
}

impl Op {
    /// Bytes it sends, roughly (to bound one transaction).
    pub fn size(&self) -> usize {
        match self {
            Op::Set { key, value, .. } => key.len() + value.len() + 32,
            Op::Del { key } => key.len() + 16,
        }
    }

    fn add_to(&self, p: &mut redis::Pipeline) {
        match self {
            Op::Set { key, value, pxat } => {
                let c = p.cmd("SET").arg(key).arg(value);
                if let Some(ms) = pxat {
                    c.arg("PXAT").arg(*ms);
                }
                c.ignore();
            }
            Op::Del { key } => {
                p.cmd("DEL").arg(key).ignore();
            }
        }
    }
}

/// The environment variable with the password when the URL has none
/// (as `redis-cli` and `cairn import --from`): `ps` shows a command line.
pub const PASSWORD_ENV: &str = "REDISCLI_AUTH";

/// Where `--to` points: its connection settings (password included, never
/// printed) and `host:port` for messages.
#[derive(Clone)]
pub struct Url {
    /// The connection settings.
    pub info: ConnectionInfo,
    /// `host:port`, for messages (no password).
    pub addr: String,
    /// Whether the password came from [`PASSWORD_ENV`].
    password_from_env: bool,
}

impl Url {
    /// Parses `redis://[[user]:password@]host:port[/db]`; the password
    /// comes from [`PASSWORD_ENV`] when the URL has none.
    pub fn parse(url: &str) -> Result<Url> {
        let mut parsed = Url::parse_only(url)?;
        if parsed.info.redis.password.is_none() {
            if let Some(pw) = std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty()) {
                parsed.info.redis.password = Some(pw);
                parsed.password_from_env = true;
            }
        }
        Ok(parsed)
    }

    /// The URL to give a client that takes a URL (the RESP backend of
    /// `--modules`): `url` itself, or, with the password from the
    /// environment, the same server with the password in it (in memory
    /// only; never printed).
    pub fn with_password(&self, url: &str) -> Result<String> {
        if !self.password_from_env {
            return Ok(url.to_string());
        }
        let (scheme, host, port, insecure) = match &self.info.addr {
            ConnectionAddr::Tcp(h, p) => ("redis", h, *p, false),
            ConnectionAddr::TcpTls {
                host,
                port,
                insecure,
                ..
            } => ("rediss", host, *port, *insecure),
            ConnectionAddr::Unix(_) => bail!(
                "--to: a unix socket URL with the password in {PASSWORD_ENV}: put the password \
                 in the URL (redis+unix:///path?pass=…) for --modules"
            ),
        };
        let r = &self.info.redis;
        let user = r
            .username
            .as_deref()
            .map(userinfo_escape)
            .unwrap_or_default();
        let pw = r
            .password
            .as_deref()
            .map(userinfo_escape)
            .unwrap_or_default();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let frag = if insecure { "#insecure" } else { "" };
        Ok(format!(
            "{scheme}://{user}:{pw}@{host}:{port}/{}{frag}",
            r.db
        ))
    }

    fn parse_only(url: &str) -> Result<Url> {
        let info = url.into_connection_info().map_err(|e| {
            // The crate's message may quote the URL; say what is wrong
            // without it (it can hold a password).
            anyhow!(
                "--to: not a redis:// URL ({}); expected redis://[[user]:password@]host:port[/db]",
                e.category()
            )
        })?;
        let addr = info.addr.to_string();
        Ok(Url {
            info,
            addr,
            password_from_env: false,
        })
    }

    /// The database the URL names (0 when it names none).
    pub fn db(&self) -> i64 {
        self.info.redis.db
    }

    /// Whether the server is a Redis Cluster node (`CLUSTER INFO` works).
    pub fn is_cluster(&self) -> Result<bool> {
        let mut c = self.connect_db(0)?;
        Ok(redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(&mut c)
            .is_ok_and(|info| info.contains("cluster_state:")))
    }

    fn connect_db(&self, db: i64) -> Result<redis::Connection> {
        let mut info = self.info.clone();
        info.redis.db = db;
        let client = redis::Client::open(info)
            .with_context(|| format!("cannot connect to {}", self.addr))?;
        client
            .get_connection_with_timeout(std::time::Duration::from_secs(10))
            .with_context(|| format!("cannot connect to {} (database {db})", self.addr))
    }
}

/// Percent-encodes `s` for the user-info part of a URL (every byte but
/// the unreserved ones).
fn userinfo_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

enum Conn {
    Single(redis::Connection),
    Cluster(Box<ClusterConnection>),
}

/// A connection to where one store's keys go.
pub struct Target {
    conn: Conn,
    url: Url,
    /// "database 3 of host:port" or "the cluster at host:port".
    pub label: String,
}

impl Target {
    /// Database `db` of the server at `url`.
    pub fn single(url: &Url, db: i64) -> Result<Target> {
        Ok(Target {
            conn: Conn::Single(url.connect_db(db)?),
            url: url.clone(),
            label: format!("database {db} of {}", url.addr),
        })
    }

    /// The Redis Cluster `url` is a node of.
    pub fn cluster(url: &Url) -> Result<Target> {
        let conn = ClusterClient::new(vec![url.info.clone()])
            .and_then(|c| c.get_connection())
            .with_context(|| format!("cannot connect to the Redis Cluster at {}", url.addr))?;
        Ok(Target {
            conn: Conn::Cluster(Box::new(conn)),
            url: url.clone(),
            label: format!("the cluster at {}", url.addr),
        })
    }

    fn con(&mut self) -> &mut dyn ConnectionLike {
        match &mut self.conn {
            Conn::Single(c) => c,
            Conn::Cluster(c) => &mut **c,
        }
    }

    /// Applies `ops` in order, and then sets `state` (key, value), if
    /// given. On a single server all of it is one `MULTI`/`EXEC`: the
    /// state never disagrees with the data. On a cluster the operations
    /// go in one pipeline (routed per node, in order per key), then the
    /// state is set: a kill in between replays operations, which is
    /// harmless (each sets a key's whole state).
    pub fn apply(&mut self, ops: &[Op], state: Option<(&[u8], &str)>) -> Result<()> {
        let label = self.label.clone();
        match &mut self.conn {
            Conn::Single(c) => {
                let mut p = redis::pipe();
                p.atomic();
                for op in ops {
                    op.add_to(&mut p);
                }
                if let Some((k, v)) = state {
                    p.cmd("SET").arg(k).arg(v).ignore();
                }
                p.query::<()>(c)
                    .with_context(|| format!("writing to {label}"))?;
            }
            Conn::Cluster(c) => {
                if !ops.is_empty() {
                    let mut p = redis::cluster::cluster_pipe();
                    for op in ops {
                        match op {
                            Op::Set { key, value, pxat } => {
                                let cmd = p.cmd("SET").arg(key).arg(value);
                                if let Some(ms) = pxat {
                                    cmd.arg("PXAT").arg(*ms);
                                }
                                cmd.ignore();
                            }
                            Op::Del { key } => {
                                p.cmd("DEL").arg(key).ignore();
                            }
                        }
                    }
                    p.query::<()>(c)
                        .with_context(|| format!("writing to {label}"))?;
                }
                if let Some((k, v)) = state {
                    redis::cmd("SET")
                        .arg(k)
                        .arg(v)
                        .query::<()>(&mut **c)
                        .with_context(|| format!("writing to {label}"))?;
                }
            }
        }
        Ok(())
    }

    /// The value of `key`, if it exists.
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let label = self.label.clone();
        redis::cmd("GET")
            .arg(key)
            .query(self.con())
            .with_context(|| format!("reading from {label}"))
    }

    /// Calls `f` with the keys matching the glob `pattern`, a SCAN step at
    /// a time (on a cluster: on every master), until `f` returns false.
    pub fn for_each_key(
        &mut self,
        pattern: &[u8],
        f: &mut dyn FnMut(&[Vec<u8>]) -> Result<bool>,
    ) -> Result<()> {
        let label = self.label.clone();
        let mut conns = Vec::new();
        match &mut self.conn {
            Conn::Single(c) => return scan(c, pattern, &label, f).map(|_| ()),
            Conn::Cluster(c) => {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query(&mut **c)
                    .with_context(|| format!("CLUSTER NODES on {label}"))?;
                for (host, port) in masters(&nodes) {
                    let mut info = self.url.info.clone();
                    info.addr = match info.addr {
                        ConnectionAddr::TcpTls {
                            insecure,
                            tls_params,
                            ..
                        } => ConnectionAddr::TcpTls {
                            host: host.clone(),
                            port,
                            insecure,
                            tls_params,
                        },
                        _ => ConnectionAddr::Tcp(host.clone(), port),
                    };
                    let conn = redis::Client::open(info)
                        .and_then(|c| c.get_connection())
                        .with_context(|| format!("cannot connect to master {host}:{port}"))?;
                    conns.push((format!("master {host}:{port}"), conn));
                }
            }
        }
        for (l, mut c) in conns {
            if !scan(&mut c, pattern, &l, f)? {
                break;
            }
        }
        Ok(())
    }

    /// Deletes `keys`, one `DEL` each (a multi-key `DEL` would cross
    /// slots on a cluster).
    pub fn delete(&mut self, keys: &[Vec<u8>]) -> Result<()> {
        let ops: Vec<Op> = keys.iter().map(|k| Op::Del { key: k.clone() }).collect();
        self.apply(&ops, None)
    }
}

/// SCANs one server with MATCH `pattern`; false when `f` said stop.
fn scan(
    c: &mut redis::Connection,
    pattern: &[u8],
    label: &str,
    f: &mut dyn FnMut(&[Vec<u8>]) -> Result<bool>,
) -> Result<bool> {
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query(c)
            .with_context(|| format!("SCAN on {label}"))?;
        if !keys.is_empty() && !f(&keys)? {
            return Ok(false);
        }
        if next == 0 {
            return Ok(true);
        }
        cursor = next;
    }
}

/// The `(host, port)` of every master that serves slots, from `CLUSTER
/// NODES` text.
fn masters(nodes: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in nodes.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let flags: Vec<&str> = flags.split(',').collect();
        if !flags.contains(&"master") || flags.iter().any(|x| x.starts_with("fail")) {
            continue;
        }
        let hostport = addr.split('@').next().unwrap_or_default();
        if let Some((host, port)) = hostport.rsplit_once(':') {
            if let Ok(port) = port.parse() {
                out.push((host.to_string(), port));
            }
        }
    }
    out
}

/// `s` with the glob characters of SCAN's MATCH escaped.
pub fn glob_escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 1);
    for &b in s {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Fails unless `url` names database 0 (a cluster has no other).
pub fn check_cluster_db(url: &Url) -> Result<()> {
    if url.db() != 0 {
        bail!(
            "--to names database {} but {} is a Redis Cluster, which has only database 0",
            url.db(),
            url.addr
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{glob_escape, masters, Url};
    use redis::IntoConnectionInfo;

    #[test]
    fn a_password_from_the_environment_goes_into_the_backend_url() {
        let mut url = Url::parse_only("redis://u@127.0.0.1:6380/3").expect("url");
        assert_eq!(url.with_password("x").expect("url"), "x");
        url.info.redis.password = Some("p@ss:w/rd%".to_string());
        url.password_from_env = true;
        let built = url.with_password("unused").expect("url");
        let info = built.as_str().into_connection_info().expect("parse");
        assert_eq!(info.redis.password.as_deref(), Some("p@ss:w/rd%"));
        assert_eq!(info.redis.username.as_deref(), Some("u"));
        assert_eq!(info.redis.db, 3);
        assert_eq!(info.addr.to_string(), "127.0.0.1:6380");
    }

    #[test]
    fn masters_come_from_cluster_nodes_text() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001 master - 0 0 2 connected 5461-10922\n\
                    c3 127.0.0.1:7002@17002 slave a1 0 0 1 connected\n\
                    d4 127.0.0.1:7003@17003 master,fail - 0 0 3 connected\n";
        assert_eq!(
            masters(text),
            [
                ("127.0.0.1".to_string(), 7000),
                ("127.0.0.1".to_string(), 7001)
            ]
        );
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape(b"a*b?[c]\\"), b"a\\*b\\?\\[c\\]\\\\".to_vec());
        assert_eq!(glob_escape(b"plain:"), b"plain:".to_vec());
    }
}
