//! `cairn serve`: a Redis-protocol server over a cairn store.
//!
//! Every Redis client works with it unchanged: it speaks RESP2 and RESP3,
//! answers Redis 7's string, key, transaction, connection and server
//! commands with Redis's replies and error texts, and keeps its data in a
//! cairn store on disk. See the "Server" section of `docs/guide.md`.
//!
//! ```no_run
//! let config = cairn_server::config::Config::new("/var/lib/cairn");
//! cairn_server::run(config)?; // until SIGTERM, SIGINT or SHUTDOWN
//! # Ok::<(), cairn_server::ServerError>(())
//! ```
#![deny(missing_docs, clippy::unwrap_used)]

pub mod cmd;
pub mod config;
pub mod conn;
pub mod resp;
pub mod state;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::config::Config;
use crate::state::{Client, ClientInfo, ClientState, Shared};
use crate::store::{Store, Syncer};

/// Why the server could not start or stopped with an error.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is invalid or unsafe (such as listening beyond loopback
    /// without a password).
    Config(String),
    /// The store could not be opened or closed.
    Store(cairn::Error),
    /// A socket could not be bound, or another I/O error.
    Io(String, std::io::Error),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Config(m) => write!(f, "{m}"),
            ServerError::Store(e) => write!(f, "{e}"),
            ServerError::Io(what, e) => write!(f, "{what}: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Checks the settings before anything is opened: protected mode (a
/// non-loopback address needs a password), at least one address and one
/// client, and TLS's certificate and key given together.
///
/// # Errors
/// [`ServerError::Config`] naming the setting.
pub fn check_config(config: &Config) -> Result<(), ServerError> {
    if config.bind.is_empty() {
        return Err(ServerError::Config("--bind: no address given".into()));
    }
    let exposed: Vec<String> = config
        .bind
        .iter()
        .filter(|a| !a.is_loopback())
        .map(ToString::to_string)
        .collect();
    if !exposed.is_empty() && config.requirepass.as_deref().is_none_or(str::is_empty) {
        return Err(ServerError::Config(format!(
            "refusing to listen on {} without a password: anyone who can reach it could read and change every key. \
             Set --requirepass (or `requirepass` in the config file), or bind to 127.0.0.1",
            exposed.join(", ")
        )));
    }
    if config.maxclients == 0 {
        return Err(ServerError::Config(
            "--maxclients: must be at least 1".into(),
        ));
    }
    match (&config.tls_cert, &config.tls_key) {
        (Some(_), None) => Err(ServerError::Config(
            "--tls-cert is set but --tls-key (tls-key-file) is not: TLS needs both".into(),
        )),
        (None, Some(_)) => Err(ServerError::Config(
            "--tls-key is set but --tls-cert (tls-cert-file) is not: TLS needs both".into(),
        )),
        _ => Ok(()),
    }
}

/// How long a shutdown waits for connections to finish their commands and
/// write their replies (a client that does not read its replies would
/// otherwise hold the shutdown forever); the rest are then dropped.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Server {
    /// Opens the store and binds the listening sockets, so that the caller
    /// knows the address before serving.
    ///
    /// # Errors
    /// [`ServerError`] for unsafe settings, a store that cannot be opened,
    /// or an address that cannot be bound.
    pub async fn bind(config: Config) -> Result<Server, ServerError> {
        check_config(&config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(ServerError::Config)?),
            _ => None,
        };
        // The sockets first: a port in use must not cost a store recovery.
        let mut listeners = Vec::new();
        for ip in &config.bind {
            let addr = SocketAddr::new(*ip, config.port);
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| ServerError::Io(format!("cannot listen on {addr}"), e))?;
            listeners.push(l);
        }
        let local_addr = listeners[0]
            .local_addr()
            .map_err(|e| ServerError::Io("local address".into(), e))?;
        let root = cairn::Options::new()
            .sync_policy(config.sync.policy())
            .open(&config.dir)
            .map_err(ServerError::Store)?;
        let store = Arc::new(Store::new(root));
        if let Err(e) = store.open_existing() {
            let _ = store.close();
            return Err(ServerError::Store(e));
        }
        let syncer = Syncer::start(store.clone())
            .map_err(|e| ServerError::Io("starting the syncer thread".into(), e))?;
        let shared = Arc::new(Shared {
            store,
            syncer,
            config: RwLock::new(config),
            clients: Mutex::new(Default::default()),
            stats: Default::default(),
            started: Instant::now(),
            next_client_id: AtomicU64::new(1),
            shutdown: tokio::sync::Notify::new(),
            shutting_down: AtomicBool::new(false),
            local_addr,
            last_save: AtomicU64::new(store::unix_ms() / 1000),
        });
        Ok(Server {
            shared,
            listeners,
            tls,
        })
    }

    /// Every address the server listens on, one per `bind` address (with
    /// `port 0`, each has a port of its own).
    ///
    /// ```
    /// # tokio::runtime::Runtime::new()?.block_on(async {
    /// let dir = tempfile::tempdir()?;
    /// let mut config = cairn_server::config::Config::new(dir.path());
    /// config.port = 0;
    /// let server = cairn_server::Server::bind(config).await?;
    /// assert_eq!(server.local_addrs(), vec![server.local_addr()]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The first address the server listens on (with the port picked when
    /// the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    /// The shared state, for stopping the server from outside
    /// ([`Shared::begin_shutdown`]).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Serves until a shutdown begins (SHUTDOWN, or
    /// [`Shared::begin_shutdown`]), then waits for the connections to
    /// finish their commands and closes the store cleanly.
    ///
    /// # Errors
    /// [`ServerError::Store`] when the store cannot be closed cleanly.
    pub async fn serve(self) -> Result<(), ServerError> {
        let Server {
            shared,
            listeners,
            tls,
        } = self;
        let mut tasks = tokio::task::JoinSet::new();
        for l in listeners {
            tasks.spawn(accept_loop(l, shared.clone(), tls.clone()));
        }
        // Each accept loop stops accepting at the shutdown (dropping its
        // socket), then waits for its connections: idle ones close at
        // once, busy ones finish the commands they have read, wait for
        // their group commit and write their replies.
        while tasks.join_next().await.is_some() {}
        // Everything durable, hint files written, the lock released.
        shared.store.close().map_err(ServerError::Store)
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // Registered before the flag is read, so that a shutdown that
        // begins in between still wakes this loop.
        let shutdown = shared.shutdown.notified();
        tokio::pin!(shutdown);
        shutdown.as_mut().enable();
        if shared.shutting_down.load(Ordering::Acquire) {
            break;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                log::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let laddr = stream.local_addr().unwrap_or(shared.local_addr);
        shared
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let config = shared.config();
        let client = register(&shared, addr, laddr, &config);
        if client.is_none() {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
        }
        conns.spawn(connection(stream, shared.clone(), client, tls.clone()));
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        log::warn!(
            "shutdown: {} connection(s) still busy after {:?} (a client not reading its replies?); closing them",
            conns.len(),
            SHUTDOWN_GRACE
        );
        conns.shutdown().await;
        shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One accepted connection: the TLS handshake if TLS is on, then the
/// client's commands, or the `maxclients` refusal when `client` is `None`.
async fn connection(
    stream: tokio::net::TcpStream,
    shared: Arc<Shared>,
    client: Option<Client>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let id = client.as_ref().map(|c| c.info.id);
    match tls {
        None => match client {
            Some(client) => conn::serve(stream, shared.clone(), client).await,
            None => refuse(stream).await,
        },
        Some(acceptor) => {
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            match (handshake.await, client) {
                (Ok(Ok(s)), Some(client)) => conn::serve(s, shared.clone(), client).await,
                (Ok(Ok(s)), None) => refuse(s).await,
                (Ok(Err(e)), _) => log::debug!("TLS handshake failed: {e}"),
                (Err(_), _) => log::debug!("TLS handshake timed out"),
            }
        }
    }
    if let Some(id) = id {
        shared
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Adds a client to the registry, or `None` at `maxclients`.
fn register(
    shared: &Arc<Shared>,
    addr: SocketAddr,
    laddr: SocketAddr,
    config: &Config,
) -> Option<Client> {
    let mut map = shared.clients.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= config.maxclients {
        return None;
    }
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(ClientInfo {
        id,
        addr,
        laddr,
        connected: Instant::now(),
        state: Mutex::new(ClientState {
            name: Vec::new(),
            lib_name: Vec::new(),
            lib_ver: Vec::new(),
            db: 0,
            proto: 2,
            last_cmd: "NULL".into(),
            last_active: Instant::now(),
            in_multi: false,
            queued: 0,
        }),
        kill: tokio::sync::Notify::new(),
        killed: AtomicBool::new(false),
    });
    map.insert(id, info.clone());
    let authenticated = config.requirepass.as_deref().is_none_or(str::is_empty);
    Some(Client::new(info, authenticated))
}

async fn refuse<S: tokio::io::AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::AsyncWriteExt;
    let _ = stream
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
    let _ = stream.shutdown().await;
}

/// Runs a server until SIGTERM, SIGINT or SHUTDOWN, on a runtime of its
/// own; the store is closed cleanly before it returns.
///
/// # Errors
/// As [`Server::bind`] and [`Server::serve`].
pub fn run(config: Config) -> Result<(), ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cairn-serve")
        .build()
        .map_err(|e| ServerError::Io("starting the runtime".into(), e))?;
    rt.block_on(async {
        // The handlers first: a SIGTERM that comes while the store opens,
        // or right after the listening line, must stop the server cleanly
        // rather than kill it with the default action.
        let signals = Signals::install()
            .map_err(|e| ServerError::Io("installing the signal handlers".into(), e))?;
        let server = Server::bind(config).await?;
        eprintln!("{}", listening_line(&server));
        let shared = server.shared();
        tokio::spawn(async move {
            signals.wait().await;
            shared.begin_shutdown();
        });
        server.serve().await
    })
}

/// The line `run` prints once it listens: the addresses, TLS, the data
/// directory and the sync mode.
fn listening_line(server: &Server) -> String {
    let addrs: Vec<String> = server
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    let config = server.shared.config();
    format!(
        "cairn serve: listening on {}{} (dir {}, sync {}, pid {})",
        addrs.join(", "),
        if server.tls.is_some() {
            " with TLS"
        } else {
            ""
        },
        config.dir.display(),
        config.sync.name(),
        std::process::id()
    )
}

/// SIGTERM and SIGINT, caught from the moment they are installed.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.int.recv() => {},
        }
    }
}
