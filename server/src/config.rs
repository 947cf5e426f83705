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

/// Settings of a `redis.conf`-style file that cairn ignores: they have no
/// meaning here (RDB and AOF tuning, replication, data-type encodings, the
/// process's daemonizing and logging) and ignoring them changes nothing a
/// client can see. Any other unknown name is an error.
pub const IGNORED_SETTINGS: &[&str] = &[
    "protected-mode",
    "tcp-backlog",
    "tcp-keepalive",
    "daemonize",
    "supervised",
    "pidfile",
    "loglevel",
    "logfile",
    "syslog-enabled",
    "syslog-ident",
    "syslog-facility",
    "always-show-logo",
    "set-proc-title",
    "proc-title-template",
    "save",
    "stop-writes-on-bgsave-error",
    "rdbcompression",
    "rdbchecksum",
    "dbfilename",
    "rdb-del-sync-files",
    "rdb-save-incremental-fsync",
    "appendonly",
    "appendfilename",
    "appenddirname",
    "no-appendfsync-on-rewrite",
    "auto-aof-rewrite-percentage",
    "auto-aof-rewrite-min-size",
    "aof-load-truncated",
    "aof-use-rdb-preamble",
    "aof-timestamp-enabled",
    "aof-rewrite-incremental-fsync",
    "replica-serve-stale-data",
    "replica-read-only",
    "repl-diskless-sync",
    "repl-diskless-sync-delay",
    "repl-diskless-sync-max-replicas",
    "repl-diskless-load",
    "repl-disable-tcp-nodelay",
    "replica-priority",
    "replica-lazy-flush",
    "acllog-max-len",
    "lazyfree-lazy-eviction",
    "lazyfree-lazy-expire",
    "lazyfree-lazy-server-del",
    "lazyfree-lazy-user-del",
    "lazyfree-lazy-user-flush",
    "oom-score-adj",
    "oom-score-adj-values",
    "disable-thp",
    "slowlog-log-slower-than",
    "slowlog-max-len",
    "latency-monitor-threshold",
    "notify-keyspace-events",
    "hash-max-listpack-entries",
    "hash-max-listpack-value",
    "hash-max-ziplist-entries",
    "hash-max-ziplist-value",
    "list-max-listpack-size",
    "list-max-ziplist-size",
    "list-compress-depth",
    "set-max-intset-entries",
    "set-max-listpack-entries",
    "set-max-listpack-value",
    "zset-max-listpack-entries",
    "zset-max-listpack-value",
    "zset-max-ziplist-entries",
    "zset-max-ziplist-value",
    "hll-sparse-max-bytes",
    "stream-node-max-bytes",
    "stream-node-max-entries",
    "activerehashing",
    "activedefrag",
    "client-output-buffer-limit",
    "hz",
    "dynamic-hz",
    "jemalloc-bg-thread",
    "lua-time-limit",
    "busy-reply-threshold",
];

/// Reads a `redis.conf`-style file into `config`: one `name value…` per
/// line, `#` comments, values in double quotes (with `\n`, `\xHH`, `\"`
/// escapes) or single quotes. The names understood are `bind` (one or more
/// addresses; a leading `-` is accepted, `*` is every IPv4 address, `::*`
/// every IPv6 one), `port`, `appendfsync`, `requirepass`, `maxclients`,
/// `timeout`, `tls-cert-file`, `tls-key-file`, `dir`,
/// `client-query-buffer-limit` and `proto-max-bulk-len` (with Redis's
/// units: `1gb`, `512mb`, `64k`); the names in [`IGNORED_SETTINGS`] are
/// skipped. Relative paths (`dir`, the TLS files) are taken from the
/// file's own directory. Only the settings the file names change.
///
/// ```
/// use cairn_server::config::{read_config_file, Config, SyncMode};
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("cairn.conf");
/// std::fs::write(&path, "# cairn\nport 6380\nappendfsync everysec\nsave \"\"\n")?;
/// let mut config = Config::new("/var/lib/cairn");
/// read_config_file(&path, &mut config)?;
/// assert_eq!((config.port, config.sync), (6380, SyncMode::Everysec));
///
/// std::fs::write(&path, "port 6380\nmaxmemory 1gb\n")?;
/// let e = read_config_file(&path, &mut config).unwrap_err();
/// assert!(e.ends_with("line 2: unknown setting 'maxmemory'"), "{e}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// A message naming the file and line: a file that cannot be read, an
/// unknown setting, a bad value, unbalanced quotes.
pub fn read_config_file(path: &std::path::Path, config: &mut Config) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(std::path::Path::new("."));
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |msg: String| format!("{} line {}: {msg}", path.display(), i + 1);
        let args = split_args(line).ok_or_else(|| at("unbalanced quotes".into()))?;
        let Some((name, values)) = args.split_first() else {
            continue;
        };
        apply_setting(config, &name.to_ascii_lowercase(), values, base).map_err(at)?;
    }
    config.config_file = Some(path.to_path_buf());
    Ok(())
}

/// Applies one setting of a config file.
fn apply_setting(
    config: &mut Config,
    name: &str,
    values: &[String],
    base: &std::path::Path,
) -> Result<(), String> {
    if IGNORED_SETTINGS.contains(&name) {
        return Ok(());
    }
    if name == "bind" {
        if values.is_empty() {
            return Err("'bind' needs at least one address".into());
        }
        config.bind = values
            .iter()
            .map(|v| parse_bind(v).map_err(|e| format!("'bind': {e}")))
            .collect::<Result<_, _>>()?;
        return Ok(());
    }
    let [value] = values else {
        return Err(format!("'{name}' takes one value, got {}", values.len()));
    };
    let bad = |what: &str| format!("'{name}': {what}, got '{value}'");
    match name {
        "port" => config.port = value.parse().map_err(|_| bad("expected a port (0-65535)"))?,
        "appendfsync" => {
            config.sync = SyncMode::parse(value).ok_or_else(|| bad("expected always, everysec or no"))?;
        }
        "requirepass" => config.requirepass = Some(value.clone()).filter(|p| !p.is_empty()),
        "maxclients" => {
            config.maxclients = value
                .parse()
                .ok()
                .filter(|&n: &usize| n >= 1)
                .ok_or_else(|| bad("expected a number of clients (at least 1)"))?;
        }
        "timeout" => config.timeout_secs = value.parse().map_err(|_| bad("expected seconds"))?,
        "tls-cert-file" => config.tls_cert = Some(base.join(value)),
        "tls-key-file" => config.tls_key = Some(base.join(value)),
        "dir" => config.dir = base.join(value),
        "client-query-buffer-limit" => {
            config.client_query_buffer_limit = parse_memory(value).ok_or_else(|| bad("expected a size such as 1gb"))?;
        }
        "proto-max-bulk-len" => {
            config.proto_max_bulk_len = parse_memory(value).ok_or_else(|| bad("expected a size such as 512mb"))?;
        }
        "databases" if value == "16" => {}
        "databases" => return Err(bad("cairn serve has 16 databases")),
        "tls-port" => {
            return Err("'tls-port': cairn serve speaks TLS on 'port' when 'tls-cert-file' and 'tls-key-file' are set".into())
        }
        _ => return Err(format!("unknown setting '{name}'")),
    }
    Ok(())
}

/// A `bind` address: an IP, optionally with Redis's leading `-` (skip it
/// if unavailable: here it must be available), `*` or `::*`.
fn parse_bind(s: &str) -> Result<IpAddr, String> {
    let s = s.strip_prefix('-').unwrap_or(s);
    match s {
        "*" => Ok(IpAddr::from([0, 0, 0, 0])),
        "::*" => Ok(IpAddr::from([0u16; 8])),
        _ => s.parse().map_err(|_| format!("'{s}' is not an IP address")),
    }
}

/// A size with Redis's units: `k`/`m`/`g` are powers of 1000, `kb`/`mb`/`gb`
/// of 1024 (any case); `None` for anything else.
///
/// ```
/// use cairn_server::config::parse_memory;
/// assert_eq!(parse_memory("1gb"), Some(1 << 30));
/// assert_eq!(parse_memory("64k"), Some(64_000));
/// assert_eq!(parse_memory("lots"), None);
/// ```
pub fn parse_memory(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let (digits, unit) = lower.split_at(
        lower
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(lower.len()),
    );
    let mult: usize = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1 << 10,
        "m" => 1_000_000,
        "mb" => 1 << 20,
        "g" => 1_000_000_000,
        "gb" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

/// Splits a config line into words as Redis does: spaces separate words;
/// `"…"` allows `\n \r \t \b \a \\ \" \xHH` escapes, `'…'` only `\'`; a
/// closing quote must end the word. `None` for unbalanced quotes.
///
/// ```
/// use cairn_server::config::split_args;
/// assert_eq!(
///     split_args(r#"requirepass "two words""#),
///     Some(vec!["requirepass".to_string(), "two words".to_string()])
/// );
/// assert_eq!(split_args(r#"requirepass "open"#), None);
/// ```
pub fn split_args(line: &str) -> Option<Vec<String>> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Some(out);
        }
        let mut word = Vec::new();
        match b[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    let c = *b.get(i)?;
                    if c == q {
                        i += 1;
                        if b.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                            return None;
                        }
                        break;
                    }
                    if c == b'\\' && q == b'\'' && b.get(i + 1) == Some(&b'\'') {
                        word.push(b'\'');
                        i += 2;
                    } else if c == b'\\' && q == b'"' {
                        let (byte, used) = unescape(&b[i + 1..])?;
                        word.push(byte);
                        i += 1 + used;
                    } else {
                        word.push(c);
                        i += 1;
                    }
                }
            }
            _ => {
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    word.push(b[i]);
                    i += 1;
                }
            }
        }
        out.push(String::from_utf8_lossy(&word).into_owned());
    }
}

/// One escape after a `\` inside double quotes: the byte and how many
/// bytes it used.
fn unescape(rest: &[u8]) -> Option<(u8, usize)> {
    let c = *rest.first()?;
    let hex = |c: u8| (c as char).to_digit(16);
    if c == b'x' {
        if let (Some(h), Some(l)) = (
            rest.get(1).and_then(|&c| hex(c)),
            rest.get(2).and_then(|&c| hex(c)),
        ) {
            return Some((u8::try_from(h * 16 + l).ok()?, 3));
        }
    }
    let byte = match c {
        b'n' => b'\n',
        b'r' => b'\r',
        b't' => b'\t',
        b'b' => 8,
        b'a' => 7,
        other => other,
    };
    Some((byte, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_quotes_split_as_redis_does() {
        assert_eq!(
            split_args(r#"bind 127.0.0.1 -::1"#),
            Some(vec!["bind".into(), "127.0.0.1".into(), "-::1".into()])
        );
        assert_eq!(
            split_args(r#"requirepass "a b\"c\x41""#),
            Some(vec!["requirepass".into(), "a b\"cA".into()])
        );
        assert_eq!(
            split_args(r"requirepass 'it\'s'"),
            Some(vec!["requirepass".into(), "it's".into()])
        );
        assert_eq!(split_args(r#"requirepass "open"#), None);
        assert_eq!(split_args(r#"requirepass "a"b"#), None);
    }

    #[test]
    fn sizes_take_redis_units() {
        assert_eq!(parse_memory("1gb"), Some(1 << 30));
        assert_eq!(parse_memory("64K"), Some(64_000));
        assert_eq!(parse_memory("10"), Some(10));
        assert_eq!(parse_memory("1tb"), None);
        assert_eq!(parse_memory("mb"), None);
    }

    #[test]
    fn a_file_sets_what_it_names_and_names_the_bad_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cairn.conf");
        std::fs::write(
            &path,
            "# comment\n\nbind 127.0.0.1 ::1\nport 7000\nappendfsync everysec\nrequirepass \"s3 cret\"\n\
             maxclients 5\ntimeout 30\ndir data\ntls-cert-file c.pem\ntls-key-file k.pem\nsave \"\"\n\
             client-query-buffer-limit 1mb\n",
        )
        .expect("write");
        let mut c = Config::new("/elsewhere");
        read_config_file(&path, &mut c).expect("read");
        assert_eq!(
            c.bind,
            vec![
                IpAddr::from([127, 0, 0, 1]),
                "::1".parse::<IpAddr>().expect("ip")
            ]
        );
        assert_eq!(
            (c.port, c.sync, c.maxclients, c.timeout_secs),
            (7000, SyncMode::Everysec, 5, 30)
        );
        assert_eq!(c.requirepass.as_deref(), Some("s3 cret"));
        assert_eq!(c.dir, dir.path().join("data"));
        assert_eq!(c.tls_cert, Some(dir.path().join("c.pem")));
        assert_eq!(c.client_query_buffer_limit, 1 << 20);

        std::fs::write(&path, "port 7000\nmaxmemory 1gb\n").expect("write");
        let e = read_config_file(&path, &mut Config::new("/x")).expect_err("unknown");
        assert!(e.contains("line 2") && e.contains("'maxmemory'"), "{e}");
        std::fs::write(&path, "appendfsync sometimes\n").expect("write");
        let e = read_config_file(&path, &mut Config::new("/x")).expect_err("bad value");
        assert!(
            e.contains("line 1") && e.contains("'appendfsync'") && e.contains("sometimes"),
            "{e}"
        );
    }
}
