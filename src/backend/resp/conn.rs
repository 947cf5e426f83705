//! Connections of the RESP backend: one server or a cluster, a small pool
//! of them so threads do not queue on one socket, and the mapping of the
//! client's errors to [`Error::Remote`].

use std::sync::Mutex;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, IntoConnectionInfo, RedisError};

use crate::error::{Error, Result};

/// Where the backend connects.
pub(crate) enum Target {
    /// One server.
    Single(redis::Client),
    /// A cluster, and its seeds' connection settings (for the per-master
    /// connections of a scan).
    Cluster(ClusterClient, ConnectionInfo),
}

/// One pooled connection.
pub(crate) enum Conn {
    /// To one server.
    Single(redis::Connection),
    /// To a cluster (itself a set of per-node connections).
    Cluster(ClusterConnection),
}

impl Conn {
    /// The connection as the client's commands take it.
    pub(crate) fn like(&mut self) -> &mut dyn ConnectionLike {
        match self {
            Conn::Single(c) => c,
            Conn::Cluster(c) => c,
        }
    }
}

/// The connections shared by a backend and its namespaces.
pub(crate) struct Pool {
    pub(crate) target: Target,
    /// `host:port` or `cluster host:port,…`: no password.
    pub(crate) address: String,
    pub(crate) timeout: Duration,
    idle: Mutex<Vec<Conn>>,
    size: usize,
}

/// `host:port` of a connection's address (never its credentials).
pub(crate) fn addr_text(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(p) => p.display().to_string(),
    }
}

/// Whether `e` left the connection unusable (it is then dropped).
pub(crate) fn is_broken(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

/// What a failed command says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server answered with an error that says it did not run the
    /// command, and that may pass soon: a redirect (`MOVED`, `ASK`),
    /// `TRYAGAIN`, `CLUSTERDOWN`, `LOADING`, `READONLY`, `MASTERDOWN`, or
    /// no connection to the slot's node (nothing was sent).
    NotRun,
    /// The connection was found closed (end of file, reset, broken pipe):
    /// on a pooled connection, the server had closed it while idle.
    Closed,
    /// Anything else (a timeout, a refusal, another error reply).
    Other,
}

/// Sorts out `e` (see [`Failure`]).
pub(crate) fn failure(e: &RedisError) -> Failure {
    use redis::ErrorKind as K;
    match e.kind() {
        K::Moved
        | K::Ask
        | K::TryAgain
        | K::ClusterDown
        | K::BusyLoadingError
        | K::ReadOnly
        | K::MasterDown
        | K::ClusterConnectionNotFound => Failure::NotRun,
        _ if e.is_connection_dropped() => Failure::Closed,
        _ => Failure::Other,
    }
}

/// Whether a command that failed with `e` may still have run: the request
/// may have left before the connection was lost.
pub(crate) fn may_have_run(e: &RedisError) -> bool {
    !e.is_connection_refusal() && (e.is_io_error() || e.is_timeout() || e.is_connection_dropped())
}

impl Pool {
    /// The pool for `urls` (one server if `cluster` is false).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a URL the client cannot parse.
    pub(crate) fn new(
        urls: &[String],
        cluster: bool,
        size: usize,
        timeout: Duration,
    ) -> Result<Pool> {
        // The URL may hold a password: the message never quotes it.
        let bad = |e: RedisError| {
            Error::InvalidArgument(format!(
                "redis URL: {}",
                e.detail().unwrap_or("cannot parse it")
            ))
        };
        let infos = urls
            .iter()
            .map(|u| u.as_str().into_connection_info().map_err(bad))
            .collect::<Result<Vec<_>>>()?;
        let Some(first) = infos.first().cloned() else {
            return Err(Error::InvalidArgument("redis: no server URL given".into()));
        };
        let (target, address) = if cluster {
            let address = format!(
                "cluster {}",
                infos.iter().map(addr_text).collect::<Vec<_>>().join(",")
            );
            let client = ClusterClient::builder(infos)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                // Never let the client resend a command by itself: a
                // compare-and-apply resent after a timeout would find its
                // own write and report a conflict. The backend retries
                // only what cannot have run (see `Failure`).
                .retries(0)
                .build()
                .map_err(bad)?;
            (Target::Cluster(client, first), address)
        } else {
            let address = addr_text(&first);
            let client = redis::Client::open(first).map_err(bad)?;
            (Target::Single(client), address)
        };
        Ok(Pool {
            target,
            address,
            timeout,
            idle: Mutex::new(Vec::new()),
            size: size.max(1),
        })
    }

    /// An [`Error::Remote`] for `e`; `wrote` says whether the failed
    /// command could write.
    pub(crate) fn remote(&self, e: &RedisError, wrote: bool) -> Error {
        Error::Remote {
            address: self.address.clone(),
            message: e.to_string(),
            maybe_applied: wrote && may_have_run(e),
        }
    }

    /// A new connection to one server, with the pool's timeouts.
    pub(crate) fn connect_one(
        &self,
        client: &redis::Client,
    ) -> redis::RedisResult<redis::Connection> {
        let c = client.get_connection_with_timeout(self.timeout)?;
        c.set_read_timeout(Some(self.timeout))?;
        c.set_write_timeout(Some(self.timeout))?;
        Ok(c)
    }

    fn connect(&self) -> redis::RedisResult<Conn> {
        match &self.target {
            Target::Single(client) => Ok(Conn::Single(self.connect_one(client)?)),
            Target::Cluster(client, _) => {
                let c = client.get_connection()?;
                c.set_read_timeout(Some(self.timeout))?;
                c.set_write_timeout(Some(self.timeout))?;
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// An idle connection, or a new one if there is none or `fresh`.
    ///
    /// # Errors
    /// [`Error::Remote`] if no connection could be made.
    pub(crate) fn checkout(&self, fresh: bool) -> Result<Lease<'_>> {
        let idle = if fresh {
            None
        } else {
            self.idle.lock().map(|mut v| v.pop()).unwrap_or(None)
        };
        let reused = idle.is_some();
        let conn = match idle {
            Some(c) => c,
            None => self.connect().map_err(|e| self.remote(&e, false))?,
        };
        Ok(Lease {
            pool: self,
            conn: Some(conn),
            reused,
            dirty: false,
        })
    }

    /// A new connection to one node of the cluster (`host:port`, as a
    /// redirect names it), with the seeds' settings (password, TLS) and
    /// the pool's timeouts.
    ///
    /// # Errors
    /// The client's, or a client error outside a cluster.
    pub(crate) fn connect_node(&self, node: &str) -> redis::RedisResult<redis::Connection> {
        let bad = || {
            RedisError::from((
                redis::ErrorKind::ClientError,
                "bad redirect",
                node.to_owned(),
            ))
        };
        let Target::Cluster(_, seed) = &self.target else {
            return Err(bad());
        };
        let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let client = redis::Client::open(with_addr(seed, host, port))?;
        self.connect_one(&client)
    }

    /// Drops every idle connection (after one was found closed, the
    /// others likely are too; after a `MOVED`, their slot maps are old).
    pub(crate) fn clear_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}

/// A connection on loan from a [`Pool`]: back to the pool when dropped,
/// unless a command broke it or it was left dirty (a drop guard: a panic
/// or an early return between [`Lease::set_dirty`] and its undoing
/// drops the connection).
pub(crate) struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Whether the connection came from the pool (the server may have
    /// closed it while it was idle).
    reused: bool,
    /// Whether the connection holds state (a `WATCH`) that the next user
    /// must not inherit.
    dirty: bool,
}

impl Lease<'_> {
    /// Whether the connection came from the pool rather than being new.
    pub(crate) fn reused(&self) -> bool {
        self.reused
    }

    /// Marks the connection as holding state (`true`, e.g. after `WATCH`)
    /// or clean again (`false`, after `EXEC` or `UNWATCH`): a dirty one
    /// is never returned to the pool.
    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }

    /// Runs `f` on the connection; an error that broke the connection
    /// drops it (the next checkout reconnects), as does any error on a
    /// cluster (a new cluster connection loads the slot map afresh, which
    /// is how a redirect after a failover is learnt).
    pub(crate) fn run<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(RedisError::from((
                redis::ErrorKind::IoError,
                "connection already dropped",
            )));
        };
        let r = f(conn);
        if let Err(e) = &r {
            if is_broken(e) {
                self.conn = None;
                if failure(e) == Failure::Closed {
                    self.pool.clear_idle();
                }
            } else if matches!(conn, Conn::Cluster(_)) {
                self.conn = None;
            }
        }
        r
    }

    /// Drops the connection instead of returning it to the pool.
    pub(crate) fn discard(&mut self) {
        self.conn = None;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.dirty {
            return;
        }
        if let Some(c) = self.conn.take() {
            if let Ok(mut idle) = self.pool.idle.lock() {
                if idle.len() < self.pool.size {
                    idle.push(c);
                }
            }
        }
    }
}

/// `seed`'s settings (password, database, TLS) for the node `host:port`.
pub(crate) fn with_addr(seed: &ConnectionInfo, host: &str, port: u16) -> ConnectionInfo {
    let mut info = seed.clone();
    info.addr = match &seed.addr {
        ConnectionAddr::TcpTls {
            insecure,
            tls_params,
            ..
        } => ConnectionAddr::TcpTls {
            host: host.to_owned(),
            port,
            insecure: *insecure,
            tls_params: tls_params.clone(),
        },
        _ => ConnectionAddr::Tcp(host.to_owned(), port),
    };
    if host.is_empty() {
        info.addr = seed.addr.clone();
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_sorted_by_whether_the_command_ran() {
        use redis::ErrorKind as K;
        for kind in [
            K::Moved,
            K::Ask,
            K::TryAgain,
            K::ClusterDown,
            K::BusyLoadingError,
        ] {
            let e = RedisError::from((kind, "refused"));
            assert_eq!(failure(&e), Failure::NotRun, "{e}");
            assert!(!may_have_run(&e), "{e}");
        }
        for kind in [
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
        ] {
            let e = RedisError::from(std::io::Error::from(kind));
            assert_eq!(failure(&e), Failure::Closed, "{e}");
            assert!(may_have_run(&e), "{e}");
        }
        let timeout = RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut));
        assert_eq!(failure(&timeout), Failure::Other);
        assert!(may_have_run(&timeout));
        let script = RedisError::from((K::ResponseError, "ERR", "script error".to_owned()));
        assert_eq!(failure(&script), Failure::Other);
    }
}
