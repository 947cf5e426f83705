//! The server's settings: command-line flags, a config file in
//! `redis.conf`'s `name value` form, and CONFIG GET/SET.

use std::net::IpAddr;
use std::path::PathBuf;

/// When writes become durable, as Redis's `appendfsync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Every write is durable before its reply is sent; connections share
    /// each fsync (group commit).
    Always,
    /// Durable within about a second (cairn's `EveryMillis(1000)`).
    Everysec,
    /// The operating system writes back when it likes.
    No,
}

impl SyncMode {
    /// The name used by `--sync` and CONFIG (`appendfsync`).
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Everysec => "everysec",
            SyncMode::No => "no",
        }
    }

    /// Parses `always`, `everysec` or `no` (any case).
    pub fn parse(s: &str) -> Option<SyncMode> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(SyncMode::Always),
            "everysec" => Some(SyncMode::Everysec),
            "no" => Some(SyncMode::No),
            _ => None,
        }
    }

    /// The cairn sync policy the store is opened with.
    pub fn policy(self) -> cairn::SyncPolicy {
        match self {
            SyncMode::Always => cairn::SyncPolicy::Always,
            SyncMode::Everysec => cairn::SyncPolicy::EveryMillis(1000),
            SyncMode::No => cairn::SyncPolicy::Never,
        }
    }
}

/// The server's settings. [`Config::new`] gives Redis's defaults where
/// Redis has one, and cairn's safe ones elsewhere.
#[derive(Clone, Debug)]
pub struct Config {
    /// The data directory.
    pub dir: PathBuf,
    /// The addresses to listen on (loopback by default).
    pub bind: Vec<IpAddr>,
    /// The TCP port (6379; 0 picks a free one).
    pub port: u16,
    /// When writes become durable.
    pub sync: SyncMode,
    /// The password clients must AUTH with; `None`: no AUTH.
    pub requirepass: Option<String>,
    /// The most clients connected at once (Redis's 10000).
    pub maxclients: usize,
    /// Close a client idle this many seconds (0: never, Redis's default).
    pub timeout_secs: u64,
    /// The most bytes a client's unparsed input may hold (1 GiB, as Redis).
    pub client_query_buffer_limit: usize,
    /// The longest bulk argument (512 MiB, as Redis's
    /// `proto-max-bulk-len`).
    pub proto_max_bulk_len: usize,
    /// Past this many bytes of replies not yet written to a client, the
    /// connection stops running its commands until the client reads
    /// (64 MiB).
    pub client_output_buffer_bytes: usize,
    /// A PEM certificate chain: with `tls_key`, the port speaks TLS.
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// The file the settings were read from, if any (CONFIG REWRITE is not
    /// supported).
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// The defaults for a server over `dir`: 127.0.0.1:6379, `always`, no
    /// password, 10000 clients, no idle timeout, no TLS.
    pub fn new(dir: impl Into<PathBuf>) -> Config {
        Config {
            dir: dir.into(),
            bind: vec![IpAddr::from([127, 0, 0, 1])],
            port: 6379,
            sync: SyncMode::Always,
            requirepass: None,
            maxclients: 10_000,
            timeout_secs: 0,
            client_query_buffer_limit: 1 << 30,
            proto_max_bulk_len: 512 << 20,
            client_output_buffer_bytes: 64 << 20,
            tls_cert: None,
            tls_key: None,
            config_file: None,
        }
    }
}
