//! What the connections share: the store, the settings, the clients and
//! the counters; and what one connection holds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use crate::config::{Config, SyncMode};
use crate::store::{Store, Syncer};

/// The server's shared state.
pub struct Shared {
    /// The databases.
    pub store: Arc<Store>,
    /// The group-commit syncer (`--sync always`).
    pub syncer: Syncer,
    /// The settings; CONFIG SET changes the ones that can change.
    pub config: RwLock<Config>,
    /// The connected clients, by id.
    pub clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
    /// Counters for INFO.
    pub stats: Stats,
    /// When the server started.
    pub started: Instant,
    /// The next client id.
    pub next_client_id: AtomicU64,
    /// Set by SHUTDOWN or a signal: stop accepting, finish, close.
    pub shutdown: tokio::sync::Notify,
    /// Whether shutdown has begun.
    pub shutting_down: AtomicBool,
    /// The address the server listens on.
    pub local_addr: SocketAddr,
    /// Unix seconds of the last successful sync of everything (LASTSAVE).
    pub last_save: AtomicU64,
}

impl Shared {
    /// The current sync mode.
    pub fn sync_mode(&self) -> SyncMode {
        self.config.read().unwrap_or_else(|e| e.into_inner()).sync
    }

    /// The current `proto-max-bulk-len`, in bytes.
    pub fn proto_max_bulk_len(&self) -> u64 {
        let limit = self
            .config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .proto_max_bulk_len;
        u64::try_from(limit).unwrap_or(u64::MAX)
    }

    /// A copy of the settings.
    pub fn config(&self) -> Config {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts a shutdown: the accept loop and every connection stop.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        self.shutdown.notify_waiters();
    }

    /// The registered clients, sorted by id.
    pub fn client_list(&self) -> Vec<Arc<ClientInfo>> {
        let map = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = map.values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }
}

/// Counters for INFO stats.
#[derive(Default)]
pub struct Stats {
    /// Connections accepted.
    pub connections_received: AtomicU64,
    /// Connections refused for `maxclients`.
    pub rejected_connections: AtomicU64,
    /// Commands run.
    pub commands_processed: AtomicU64,
    /// Bytes read from clients.
    pub net_input_bytes: AtomicU64,
    /// Bytes written to clients.
    pub net_output_bytes: AtomicU64,
    /// Reads that found their key.
    pub keyspace_hits: AtomicU64,
    /// Reads that did not.
    pub keyspace_misses: AtomicU64,
    /// Group-commit fsync rounds.
    pub sync_rounds: AtomicU64,
    /// Errors replied.
    pub error_replies: AtomicU64,
}

/// What CLIENT LIST and CLIENT KILL see of one connection.
pub struct ClientInfo {
    /// The client id (CLIENT ID).
    pub id: u64,
    /// The peer's address.
    pub addr: SocketAddr,
    /// The server's address of the connection.
    pub laddr: SocketAddr,
    /// When it connected.
    pub connected: Instant,
    /// The mutable part.
    pub state: Mutex<ClientState>,
    /// Set by CLIENT KILL: the connection closes.
    pub kill: tokio::sync::Notify,
    /// Whether CLIENT KILL asked it to close.
    pub killed: AtomicBool,
}

/// The part of [`ClientInfo`] that changes.
#[derive(Clone, Debug)]
pub struct ClientState {
    /// CLIENT SETNAME.
    pub name: Vec<u8>,
    /// CLIENT SETINFO LIB-NAME.
    pub lib_name: Vec<u8>,
    /// CLIENT SETINFO LIB-VER.
    pub lib_ver: Vec<u8>,
    /// The selected database.
    pub db: usize,
    /// The protocol version (2 or 3).
    pub proto: u8,
    /// The last command's name.
    pub last_cmd: String,
    /// When the last command ran.
    pub last_active: Instant,
    /// Whether it is inside MULTI.
    pub in_multi: bool,
    /// How many commands it has queued since MULTI.
    pub queued: usize,
}

impl ClientInfo {
    /// A snapshot of the mutable part.
    pub fn snapshot(&self) -> ClientState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A queued command of a MULTI block.
pub type Queued = Vec<Vec<u8>>;

/// One connection's state, owned by its task.
pub struct Client {
    /// What others see of it.
    pub info: Arc<ClientInfo>,
    /// The selected database.
    pub db: usize,
    /// The protocol version, 2 or 3 (HELLO).
    pub proto: u8,
    /// Whether AUTH succeeded (or no password is set).
    pub authenticated: bool,
    /// The commands queued since MULTI, or `None` outside MULTI.
    pub multi: Option<Vec<Queued>>,
    /// Whether a command failed to queue (EXEC then aborts).
    pub multi_failed: bool,
    /// WATCHed keys: database, key, version at WATCH, whether it was live.
    pub watched: Vec<(usize, Vec<u8>, u64, bool)>,
    /// Databases written since the replies were last flushed, one bit each:
    /// under `--sync always` they are synced before the replies go out.
    pub dirty: u32,
    /// Set by QUIT: close after the replies are written.
    pub closing: bool,
    /// Set by a command that must not be answered (SHUTDOWN): its reply
    /// is dropped.
    pub no_reply: bool,
    /// When the connection was made (wall clock).
    pub since: SystemTime,
}

impl Client {
    /// A new client with `info`, authenticated when no password is set.
    pub fn new(info: Arc<ClientInfo>, authenticated: bool) -> Client {
        Client {
            info,
            db: 0,
            proto: 2,
            authenticated,
            multi: None,
            multi_failed: false,
            watched: Vec::new(),
            dirty: 0,
            closing: false,
            no_reply: false,
            since: SystemTime::now(),
        }
    }

    /// Drops every WATCH of this client.
    pub fn unwatch_all(&mut self, shared: &Shared) {
        for (db, key, _, _) in self.watched.drain(..) {
            shared.store.watch.unwatch(db, &key);
        }
    }
}
