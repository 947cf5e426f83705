//! `cairn serve`: the Redis-protocol server (`cairn_server`) over a store,
//! with its settings from the config file, the environment and the flags.

use std::os::unix::fs::PermissionsExt;

use anyhow::{anyhow, bail, Result};
use cairn_server::config::{read_config_file, Config, SyncMode};
use cairn_server::ServerError;

use crate::args::ServeArgs;

/// The environment variable that sets the password (below the flag, above
/// the config file).
pub const REQUIREPASS_ENV: &str = "CAIRN_REQUIREPASS";

/// Runs the server until a signal or SHUTDOWN; 0 after a clean shutdown.
pub fn serve(args: ServeArgs) -> Result<u8> {
    let config = settings(args)?;
    log::set_max_level(log_level());
    let _ = log::set_logger(&STDERR_LOGGER);
    match cairn_server::run(config.clone()) {
        Ok(()) => {
            eprintln!("cairn serve: stopped; the store is closed");
            Ok(0)
        }
        Err(ServerError::Store(e)) => {
            Err(anyhow!(e).context(format!("cannot serve the store {}", config.dir.display())))
        }
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The settings: defaults, then the config file, then CAIRN_REQUIREPASS,
/// then the flags.
fn settings(args: ServeArgs) -> Result<Config> {
    let mut config = Config::new("");
    if let Some(path) = &args.config {
        read_config_file(path, &mut config).map_err(|e| anyhow!(e))?;
        if config.requirepass.is_some() {
            warn_if_readable(path);
        }
    }
    if let Ok(pass) = std::env::var(REQUIREPASS_ENV) {
        config.requirepass = Some(pass).filter(|p| !p.is_empty());
    }
    if let Some(dir) = args.dir {
        config.dir = dir;
    }
    if config.dir.as_os_str().is_empty() {
        bail!("no store directory: give `cairn serve <dir>` or `dir` in the config file");
    }
    if !args.bind.is_empty() {
        config.bind = args.bind;
    }
    if let Some(port) = args.port {
        config.port = port;
    }
    if let Some(sync) = args.sync {
        config.sync = SyncMode::parse(&sync).ok_or_else(|| anyhow!("--sync: {sync}"))?;
    }
    if let Some(pass) = args.requirepass {
        config.requirepass = Some(pass).filter(|p| !p.is_empty());
    }
    if let Some(n) = args.maxclients {
        config.maxclients = n;
    }
    if let Some(secs) = args.timeout {
        config.timeout_secs = secs;
    }
    if let Some(cert) = args.tls_cert {
        config.tls_cert = Some(cert);
    }
    if let Some(key) = args.tls_key {
        config.tls_key = Some(key);
    }
    Ok(config)
}

/// Warns when a config file that holds the password is readable by others.
fn warn_if_readable(path: &std::path::Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "cairn serve: warning: {} holds the password and other users can read it (chmod 600 it)",
                path.display()
            );
        }
    }
}

/// `CAIRN_LOG=error|warn|info|debug` (warn by default).
fn log_level() -> log::LevelFilter {
    std::env::var("CAIRN_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(log::LevelFilter::Warn)
}

/// Prints the server's log records to stderr, one line each.
struct StderrLogger;

static STDERR_LOGGER: StderrLogger = StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "cairn serve: {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}
