//! The command line: clap definitions of `cairn` and its subcommands.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::common::parse_ttl;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Inspect and operate cairn data directories",
    after_help = "Exit codes: 0 success, 1 error, 2 bad usage, 3 corruption found, 4 key not found.\n\nExample:\n  cairn set ./data session:1 '{\"user\":42}' --ttl 30m\n  cairn get ./data session:1"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Print the value of a key, raw, to stdout.
    #[command(
        after_help = "Example:\n  cairn get ./data session:1\n  cairn get ./data session:1 --json"
    )]
    Get {
        /// The store directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// Print {"key": ..., "value": ...} as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List keys (and values) in key order, optionally under a prefix.
    #[command(after_help = "Example:\n  cairn scan ./data session: --limit 10")]
    Scan {
        /// The store directory.
        dir: PathBuf,
        /// Only keys starting with this.
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many keys.
        #[arg(long)]
        limit: Option<usize>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Print the remaining time to live of a key.
    #[command(after_help = "Example:\n  cairn ttl ./data session:1")]
    Ttl {
        /// The store directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store a value.
    #[command(
        after_help = "Example:\n  cairn set ./data session:1 '{\"user\":42}' --ttl 30m\n  cairn set ./data lock:job 1 --ttl 10s --nx"
    )]
    Set {
        /// The store directory (created if missing).
        dir: PathBuf,
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Expire after this long: 500ms, 30s, 5m, 1h, 2d.
        #[arg(long, value_parser = parse_ttl, allow_hyphen_values = true)]
        ttl: Option<Duration>,
        /// Only if the key does not exist; prints whether it was set.
        #[arg(long)]
        nx: bool,
    },
    /// Delete keys; prints how many existed.
    #[command(after_help = "Example:\n  cairn del ./data session:1 session:2")]
    Del {
        /// The store directory.
        dir: PathBuf,
        /// The keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// Add to an integer value (Redis INCRBY); prints the result.
    #[command(
        after_help = "Example:\n  cairn incr ./data visits\n  cairn incr ./data visits -- -5"
    )]
    Incr {
        /// The store directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// The amount (default 1).
        #[arg(default_value_t = 1, allow_negative_numbers = true)]
        by: i64,
    },
    /// Set a key's time to live.
    #[command(after_help = "Example:\n  cairn expire ./data session:1 1h")]
    Expire {
        /// The store directory.
        dir: PathBuf,
        /// The key.
        key: String,
        /// 500ms, 30s, 5m, 1h, 2d.
        #[arg(value_parser = parse_ttl, allow_hyphen_values = true)]
        ttl: Duration,
    },
    /// Sizes per segment, totals and what compaction would reclaim (with
    /// keyspaces: a line per keyspace and the totals of all).
    #[command(after_help = "Example:\n  cairn stats ./data\n  cairn stats ./data --json")]
    Stats {
        /// The store directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every record of the segments (then those of each keyspace):
    /// segment, offset, kind, sequence, key, value length, expiry and
    /// checksum status.
    #[command(
        after_help = "Keys (and values, with --values) that are not printable are escaped as \\xNN; --json prints one object per line with bytes that are not UTF-8 in key_b64/value_b64.\n\nExample:\n  cairn dump ./data --segment 3 --from-offset 4096\n  cairn dump ./data --json --values"
    )]
    Dump {
        /// The store directory.
        dir: PathBuf,
        /// Only this segment (of the default keyspace; for a keyspace's,
        /// dump <dir>/keyspaces/<name>).
        #[arg(long)]
        segment: Option<u32>,
        /// Only records at or after this byte offset.
        #[arg(long, default_value_t = 0)]
        from_offset: u64,
        /// Print values too.
        #[arg(long)]
        values: bool,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check every file of a store, read-only: headers, every record's
    /// checksum, hints against their segments, batches, stray files.
    #[command(
        after_help = "Exit code 0: no corruption (torn tails, unusable or missing hints and stray files are listed but are not corruption: the next open deals with them); 3: corruption found; 1: the check itself failed.\n\nExample:\n  cairn verify ./data\n  cairn verify ./data --quick --json"
    )]
    Verify {
        /// The store directory.
        dir: PathBuf,
        /// List at most this many problems.
        #[arg(long)]
        max_errors: Option<usize>,
        /// Trust sealed segments that have a valid hint (no record scan).
        #[arg(long)]
        quick: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite damaged segments (of the store and of each keyspace) with
    /// every record that passes its checksum.
    #[command(
        after_help = "The originals are copied to <dir>.repair-backup-<unix ms> first; each segment is replaced atomically; valid records after a damaged range are kept (a batch only whole). It prints what it drops before dropping it; a second run changes nothing. Dropping a damaged tombstone can bring back an older value of its key from another segment. An index checkpoint (index.ckpt) whose entries differ from the segments (verify's checkpoint-mismatch), or any when a segment is rewritten, is deleted: the next open rebuilds the index from hints and segments, and the next clean close writes a new checkpoint.\n\nExample:\n  cairn repair ./data --dry-run\n  cairn repair ./data"
    )]
    Repair {
        /// The store directory.
        dir: PathBuf,
        /// Only show what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the store without its dead records.
    #[command(
        after_help = "The active segment is sealed first when it holds dead records, so that everything is compacted (automatic compaction leaves it until it fills up).\n\nExample:\n  cairn compact ./data"
    )]
    Compact {
        /// The store directory.
        dir: PathBuf,
    },
    /// Copy the store (keyspaces included) into a new directory, also while
    /// an application has it open and keeps writing.
    #[command(
        after_help = "Sealed segments and hints become hard links (copies on another file system); the active segment is copied up to its last complete record. The store is only read, never changed (no lock is taken, no recovery runs on it). The copy holds every write acknowledged before the command started, opens as a store of its own and passes `cairn verify`. <DEST> must not exist or be empty; until the copy is complete it holds a BACKUP-INCOMPLETE marker and does not open. Restore: stop the application and move the backup into the store's place (or open it where it is).\n\nExample:\n  cairn backup ./data /backups/data-$(date +%F)"
    )]
    Backup {
        /// The store directory.
        dir: PathBuf,
        /// Where the copy goes (a new or empty directory).
        dest: PathBuf,
    },
    /// Write every live key to stdout: as JSON Lines, or as Redis commands
    /// for `redis-cli --pipe` (--format resp).
    #[command(after_help = EXPORT_HELP)]
    Export {
        /// The store directory.
        dir: PathBuf,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// jsonl: one JSON object per key (the root store only); resp:
        /// Redis commands (SELECT, SET … PXAT) of the root store and its
        /// keyspaces, for `redis-cli --pipe`.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// With --format resp: the Redis database of keyspace NAME (N, or
        /// `skip` to leave it out); repeat for several.
        #[arg(long = "keyspace-db", value_name = "NAME=N", value_parser = parse_keyspace_db)]
        keyspace_db: Vec<(String, Option<u32>)>,
    },
    /// Serve the store over the Redis protocol (RESP2/RESP3) until SIGTERM,
    /// SIGINT or SHUTDOWN.
    #[command(after_help = SERVE_HELP)]
    Serve(ServeArgs),
    /// Copy a live store to a Redis or Valkey server (or Cluster): a
    /// snapshot, then every change, until SIGINT/SIGTERM (or caught up,
    /// with --once).
    #[command(after_help = FOLLOW_HELP)]
    Follow(FollowCli),
    /// Read JSON Lines (as written by export) from stdin into the store, or
    /// copy the strings of a Redis or Valkey database (--from).
    #[command(after_help = IMPORT_HELP)]
    Import {
        /// The store directory (created if missing).
        dir: PathBuf,
        /// Copy every string key and its expiry from this Redis or Valkey
        /// database instead of reading stdin:
        /// redis://[[user]:password@]host:port[/db].
        #[arg(long, value_name = "URL")]
        from: Option<String>,
        /// The server of --from is a node of a Redis Cluster: copy the keys
        /// of every master (detected when left out).
        #[arg(long, requires = "from")]
        cluster: bool,
    },
}

/// The formats of `cairn export`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// JSON Lines.
    Jsonl,
    /// Redis commands in RESP, for `redis-cli --pipe`.
    Resp,
}

/// `NAME=N` or `NAME=skip` of `--keyspace-db`.
fn parse_keyspace_db(s: &str) -> Result<(String, Option<u32>), String> {
    let (name, db) = s.split_once('=').ok_or_else(|| {
        format!("{s:?}: expected NAME=N (a keyspace and a database number) or NAME=skip")
    })?;
    if name.is_empty() {
        return Err(format!("{s:?}: the keyspace name is missing"));
    }
    if db == "skip" {
        return Ok((name.to_string(), None));
    }
    match db.parse::<u32>() {
        Ok(n) if n <= i32::MAX as u32 => Ok((name.to_string(), Some(n))),
        _ => Err(format!(
            "{s:?}: the database must be a whole number from 0 (as Redis's SELECT takes) or `skip`"
        )),
    }
}

const EXPORT_HELP: &str = "JSON Lines (the default): one line per key of the root store, {\"key\": ..., \"value\": ..., \"expires_at_ms\": null | unix ms}; keys or values that are not UTF-8 appear as \"key_b64\" / \"value_b64\".

RESP (--format resp): the root store and its keyspaces as Redis commands that `redis-cli --pipe` loads, binary safe: `SELECT n` before each store's keys, then `SET key value` per key, with `PXAT <unix ms>` for a key that expires (keys already expired are left out). Databases: the root store goes to database 0; a keyspace whose name is a number (\"3\") to that database; any other keyspace needs --keyspace-db NAME=N (or NAME=skip), else the export fails and names it. Two stores that both hold keys may not share a database. A Redis server has databases 0-15 unless its `databases` setting says more; a Redis Cluster has only 0.

The store is read from a snapshot (no lock): it may be open in an application that keeps writing. Counts go to stderr, never into the output.

Example:
  cairn export ./data > backup.jsonl
  cairn export ./data --format resp --keyspace-db sessions=1 | redis-cli -p 6379 --pipe";

const IMPORT_HELP: &str = "From stdin: lines are written in atomic batches of 1,000. On the first malformed line the import stops, says which line, and keeps everything before it. Records whose expiry has passed are skipped.

From Redis or Valkey (--from redis://[[user]:password@]host:port[/db]): SCAN walks the database (every master of a cluster), each key's value and expiry are read together (MULTI: GET, PEXPIRETIME; PTTL on a server without PEXPIRETIME) and written in atomic batches of the keys of one SCAN step. Keys that are not strings (hashes, lists, sets, ...) are skipped and counted by type; keys that expire or are deleted meanwhile are not written. Keys already in the store are overwritten; others stay. The password can come from the REDISCLI_AUTH environment variable instead of the URL (which `ps` shows); it is never printed.

Example:
  cairn import ./data < backup.jsonl
  REDISCLI_AUTH=secret cairn import ./data --from redis://10.0.0.5:6379/2
  cairn import ./data --from redis://127.0.0.1:7000 --cluster";

const SERVE_HELP: &str = "Flags override the config file, which takes redis.conf's `name value` lines: bind, port, appendfsync, requirepass, maxclients, timeout, tls-cert-file, tls-key-file, dir, client-query-buffer-limit, proto-max-bulk-len (settings of Redis that mean nothing here, such as save or appendonly, are ignored; any other name is an error). Relative paths in the file are taken from the file's directory.

The password: --requirepass is visible to every user in `ps`; prefer `requirepass` in a config file of mode 0600, or the CAIRN_REQUIREPASS environment variable (a flag still overrides it).

Listening beyond loopback needs a password (protected mode). Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT or SHUTDOWN: commands in flight finish, everything is made durable, the store is closed); 1 for bad settings, a port in use, or a store that cannot be opened.

Example:
  cairn serve ./data
  cairn serve ./data --port 6380 --sync everysec
  CAIRN_REQUIREPASS=secret cairn serve ./data --bind 0.0.0.0 --tls-cert cert.pem --tls-key key.pem
  cairn serve --config /etc/cairn/cairn.conf";

const FOLLOW_HELP: &str = "The store is read from a snapshot (no lock): an application may have it open and keep writing. follow copies the store's keys first, then applies every change of its change feed in order: a put is SET (with PXAT for an expiry; an expiry already past is DEL), a delete or an expired key is DEL, an expiry change is SET of the value with its new expiry, and a batch is one MULTI/EXEC (on a cluster: applied key by key, in order).

Position: by default in the target, under the key cairn-follow:<name>:position (--position-key), written in the same MULTI/EXEC as the changes it covers; or in a file (--position-file, replaced atomically, mode 0600). A new run continues where the last one stopped, also after kill -9 (a replayed change sets the same state again). If the store no longer has the changes after the position (compaction removed them), follow copies a new snapshot and then deletes the target keys the store no longer has, but only where it owns the keys: under --prefix, a keyspace's NAME: on a cluster, a module keyspace's cairn:NAME:. A store without such a prefix (the root store, a keyspace in a database of its own) shares its database with whatever else is there: follow counts the keys the store does not have and leaves them, unless --owns-database says the databases are follow's alone. Its own cairn-follow: keys and the sessions' tag-salt are always kept.

Keyspaces: each keyspace is followed too, with its own position: the root store goes to the URL's database (0 if none), a keyspace named by a number to that database, any other needs --keyspace-db NAME=N (or NAME=skip), as for `cairn export --format resp`. A Redis Cluster has only database 0: there a keyspace's keys get the prefix NAME:.

Modules (--modules NAME=KIND): the keys of keyspace NAME, written by one of cairn's modules on the embedded store, go to the URL's database under the keys the RESP backend's namespace(NAME) reads (`cairn:NAME:` + the module's hash tag + the name; docs/format.md). The sessions' tag secret, if the application sets one (Sessions::tag_secret), comes from the environment variable CAIRN_SESSIONS_TAG_SECRET; without it, the salt stored on the server (created there if absent). --prefix does not apply to module keyspaces.

A second follower of the same store, target and position on this machine is refused: a lock file cairn-follow-<hash>.lock in the temporary directory ($TMPDIR, else /tmp), never opened through a symlink and refused unless it is the user's own.

The password: from the REDISCLI_AUTH environment variable when the URL has none (a URL on the command line is visible to every user in `ps`); it is never printed.

Lag: every --lag-every, a line on stderr per store: the changes written and not yet applied, and the seconds since the oldest of them was first seen. Exit codes: 0 after SIGINT/SIGTERM (the current step finishes and its position is recorded) or, with --once, when caught up; 1 on an error.

Example:
  cairn follow ./data --to redis://127.0.0.1:6379
  cairn follow ./data --to redis://10.0.0.5:7000 --cluster --position-file follow.pos
  cairn follow ./data --to redis://127.0.0.1:6379/2 --keyspace-db sessions=3 --once
  REDISCLI_AUTH=secret cairn follow ./data --to redis://10.0.0.5:6379";

/// The flags of `cairn follow`.
#[derive(Args)]
pub struct FollowCli {
    /// The store directory.
    pub dir: PathBuf,
    /// The server: redis://[[user]:password@]host:port[/db] (any node of a
    /// cluster); the password from REDISCLI_AUTH when the URL has none.
    #[arg(long, value_name = "URL")]
    pub to: String,
    /// The target is a Redis Cluster (else asked with CLUSTER INFO).
    #[arg(long)]
    pub cluster: bool,
    /// The follower's name, in its default position key.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// The key of the position in the target [default:
    /// cairn-follow:<name>:position].
    #[arg(long, value_name = "KEY", conflicts_with = "position_file")]
    pub position_key: Option<String>,
    /// Record the position in this file instead of the target.
    #[arg(long, value_name = "FILE")]
    pub position_file: Option<PathBuf>,
    /// Only keys starting with this.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Apply everything up to the current end, then exit 0.
    #[arg(long, alias = "until-caught-up")]
    pub once: bool,
    /// How often to print the lag: 500ms, 10s, 1m.
    #[arg(long, value_parser = parse_ttl, default_value = "10s", value_name = "DURATION")]
    pub lag_every: Duration,
    /// The Redis database of keyspace NAME (N, or `skip` to leave it out);
    /// repeat for several.
    #[arg(long = "keyspace-db", value_name = "NAME=N", value_parser = parse_keyspace_db)]
    pub keyspace_db: Vec<(String, Option<u32>)>,
    /// Keyspace NAME holds a module's keys (KIND: sessions, cache,
    /// limits, idempotency, tower-sessions, plain): copy them to the
    /// server keys the RESP backend's `namespace(NAME)` reads; repeat for
    /// several.
    #[arg(long = "modules", value_name = "NAME=KIND", value_parser = parse_module)]
    pub modules: Vec<(String, String)>,
    /// The target databases hold nothing but what follow writes: a full
    /// resync of a store without a key prefix there (the root store, a
    /// keyspace in a database of its own) deletes every key the store
    /// does not have. Without it such keys are counted and left.
    #[arg(long)]
    pub owns_database: bool,
}

/// `NAME=KIND` of `--modules`.
fn parse_module(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, kind)) if !name.is_empty() && !kind.is_empty() => {
            cairn::module_keys::ModuleLayout::parse(kind).map_err(|e| e.to_string())?;
            Ok((name.to_string(), kind.to_string()))
        }
        _ => Err(format!(
            "{s:?}: expected NAME=KIND (a keyspace and sessions, cache, limits, idempotency, \
             tower-sessions or plain)"
        )),
    }
}

/// The flags of `cairn serve`; each one left out keeps the config file's
/// value, or the default.
#[derive(Args)]
pub struct ServeArgs {
    /// The store directory (created if missing; or `dir` in the config file).
    pub dir: Option<PathBuf>,
    /// An address to listen on; repeat for several [default: 127.0.0.1].
    #[arg(long = "bind", value_name = "ADDR")]
    pub bind: Vec<std::net::IpAddr>,
    /// The TCP port; 0 picks a free one [default: 6379].
    #[arg(long)]
    pub port: Option<u16>,
    /// When writes are durable: always (before the reply), everysec, no
    /// [default: always].
    #[arg(long, value_parser = ["always", "everysec", "no"])]
    pub sync: Option<String>,
    /// The password clients must AUTH with (visible in `ps`: prefer the
    /// config file or CAIRN_REQUIREPASS).
    #[arg(long, value_name = "PASS")]
    pub requirepass: Option<String>,
    /// The most clients connected at once [default: 10000].
    #[arg(long, value_name = "N")]
    pub maxclients: Option<usize>,
    /// Close a client idle this many seconds; 0: never [default: 0].
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// A PEM certificate chain: with --tls-key, the port speaks TLS.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A redis.conf-style file of settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}
