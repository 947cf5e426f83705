//! `cairn`: inspect and operate cairn data directories from the shell.
//!
//! Data goes to stdout, diagnostics to stderr. Exit codes: 0 success,
//! 1 error, 2 bad usage, 3 corruption found, 4 key not found.

use std::io::{self, BufRead, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cairn::{Batch, Db, Error, Options, SyncPolicy, Ttl};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};

/// Exit code: corruption found.
const EXIT_CORRUPTION: u8 = 3;
/// Exit code: the key does not exist.
const EXIT_NOT_FOUND: u8 = 4;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Inspect and operate cairn data directories",
    after_help = "Exit codes: 0 success, 1 error, 2 bad usage, 3 corruption found, 4 key not found.\n\nExample:\n  cairn set ./data session:1 '{\"user\":42}' --ttl 30m\n  cairn get ./data session:1"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, value_parser = parse_duration)]
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
        #[arg(value_parser = parse_duration)]
        ttl: Duration,
    },
    /// Sizes per segment, totals and what compaction would reclaim.
    #[command(after_help = "Example:\n  cairn stats ./data\n  cairn stats ./data --json")]
    Stats {
        /// The store directory.
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print every record of the segments: segment, offset, kind, sequence,
    /// key, value length, expiry and checksum status.
    #[command(
        after_help = "Keys (and values, with --values) that are not printable are escaped as \\xNN; --json prints one object per line with bytes that are not UTF-8 in key_b64/value_b64.\n\nExample:\n  cairn dump ./data --segment 3 --from-offset 4096\n  cairn dump ./data --json --values"
    )]
    Dump {
        /// The store directory.
        dir: PathBuf,
        /// Only this segment.
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
    /// Rewrite damaged segments with every record that passes its checksum.
    #[command(
        after_help = "The originals are copied to <dir>.repair-backup-<unix ms> first; each segment is replaced atomically; valid records after a damaged range are kept (a batch only whole). It prints what it drops before dropping it; a second run changes nothing. Dropping a damaged tombstone can bring back an older value of its key from another segment.\n\nExample:\n  cairn repair ./data --dry-run\n  cairn repair ./data"
    )]
    Repair {
        /// The store directory.
        dir: PathBuf,
        /// Only show what would be dropped.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rewrite the sealed segments without their dead records.
    #[command(after_help = "Example:\n  cairn compact ./data")]
    Compact {
        /// The store directory.
        dir: PathBuf,
    },
    /// Write every live key as JSON Lines to stdout.
    #[command(
        after_help = "Each line: {\"key\": ..., \"value\": ..., \"expires_at_ms\": null | unix ms}; keys or values that are not UTF-8 appear as \"key_b64\" / \"value_b64\".\n\nExample:\n  cairn export ./data > backup.jsonl"
    )]
    Export {
        /// The store directory.
        dir: PathBuf,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Read JSON Lines (as written by export) from stdin into the store.
    #[command(
        after_help = "Lines are written in atomic batches of 1,000. On the first malformed line the import stops, says which line, and keeps everything before it. Records whose expiry has passed are skipped.\n\nExample:\n  cairn import ./data < backup.jsonl"
    )]
    Import {
        /// The store directory (created if missing).
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let corruption = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Corruption { .. })));
            eprintln!("cairn: {e:#}");
            ExitCode::from(if corruption { EXIT_CORRUPTION } else { 1 })
        }
    }
}

/// Parses 500ms, 30s, 5m, 1h, 2d (a bare number is seconds).
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: expected a number and a unit, like 30s"))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1_000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => {
            return Err(format!(
                "bad duration {s:?}: the unit must be ms, s, m, h or d"
            ))
        }
    }
    .ok_or_else(|| format!("duration {s:?} is too large"))?;
    if ms == 0 {
        return Err(format!("duration {s:?} must be more than zero"));
    }
    Ok(Duration::from_millis(ms))
}

/// Whether `dir` looks like a cairn store (so read commands never create
/// files in a directory that is not one).
fn check_store(dir: &Path) -> Result<()> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let is_store = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".seg") && name.len() == 14
        });
    if !is_store {
        bail!(
            "{} is not a cairn store (it holds no segment files)",
            dir.display()
        );
    }
    Ok(())
}

/// Opens a store for reading, without taking any lock: a snapshot that
/// works while an application has the store open for writing.
fn open_read(dir: &Path) -> Result<Db> {
    check_store(dir)?;
    Options::new()
        .snapshot(true)
        .create_if_missing(false)
        .auto_compact(false)
        .open(dir)
        .map_err(|e| open_error(e, dir))
}

/// Opens a store for writing (creating it when `create`).
fn open_write(dir: &Path, create: bool) -> Result<Db> {
    if !create {
        check_store(dir)?;
    }
    Options::new()
        .sync_policy(SyncPolicy::Always)
        .auto_compact(false)
        .open(dir)
        .map_err(|e| open_error(e, dir))
}

fn open_error(e: Error, dir: &Path) -> anyhow::Error {
    match e {
        Error::Locked { .. } => anyhow!(
            "{} is open in another process, which holds its lock; stop it or use the application's own interface",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open {}", dir.display())),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A byte string as JSON fields: `name` when UTF-8, `name_b64` otherwise.
fn bytes_field(obj: &mut serde_json::Map<String, Value>, name: &str, b: &[u8]) {
    match std::str::from_utf8(b) {
        Ok(s) => {
            obj.insert(name.to_string(), Value::String(s.to_string()));
        }
        Err(_) => {
            obj.insert(
                format!("{name}_b64"),
                Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
            );
        }
    }
}

/// Escapes a key for human output: printable ASCII as is, the rest \xNN.
fn escape(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len());
    for &c in b {
        if c.is_ascii_graphic() || c == b' ' {
            if c == b'\\' {
                s.push_str("\\\\");
            } else {
                s.push(c as char);
            }
        } else {
            s.push_str(&format!("\\x{c:02x}"));
        }
    }
    s
}

fn expires_at(db: &Db, key: &[u8]) -> Result<Option<u64>> {
    Ok(match db.ttl(key)? {
        Ttl::Expires(d) => Some(now_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        _ => None,
    })
}

fn progress(what: &str) -> Option<indicatif::ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    Some(pb)
}

fn run(command: Command) -> Result<u8> {
    let out = io::stdout();
    let mut out = BufWriter::new(out.lock());
    let code = match command {
        Command::Get { dir, key, json } => {
            let db = open_read(&dir)?;
            match db.get(&key)? {
                Some(v) if json => {
                    let mut o = serde_json::Map::new();
                    bytes_field(&mut o, "key", key.as_bytes());
                    bytes_field(&mut o, "value", &v);
                    o.insert(
                        "expires_at_ms".into(),
                        json!(expires_at(&db, key.as_bytes())?),
                    );
                    writeln!(out, "{}", Value::Object(o))?;
                    0
                }
                Some(v) => {
                    out.write_all(&v)?;
                    if out_is_terminal() && !v.ends_with(b"\n") {
                        writeln!(out)?;
                    }
                    0
                }
                None => {
                    eprintln!("cairn: key {:?} not found", key);
                    EXIT_NOT_FOUND
                }
            }
        }
        Command::Scan {
            dir,
            prefix,
            limit,
            json,
        } => {
            let db = open_read(&dir)?;
            for (n, kv) in db.scan_prefix(&prefix).enumerate() {
                if limit.is_some_and(|l| n >= l) {
                    break;
                }
                let (k, v) = kv?;
                if json {
                    let mut o = serde_json::Map::new();
                    bytes_field(&mut o, "key", &k);
                    bytes_field(&mut o, "value", &v);
                    writeln!(out, "{}", Value::Object(o))?;
                } else {
                    writeln!(out, "{}\t{}", escape(&k), escape(&v))?;
                }
            }
            0
        }
        Command::Ttl { dir, key, json } => {
            let db = open_read(&dir)?;
            let ttl = db.ttl(&key)?;
            if json {
                let (exists, ms) = match ttl {
                    Ttl::Missing => (false, None),
                    Ttl::Persistent => (true, None),
                    Ttl::Expires(d) => (true, Some(d.as_millis() as u64)),
                };
                writeln!(
                    out,
                    "{}",
                    json!({"key": key, "exists": exists, "ttl_ms": ms})
                )?;
            } else {
                match ttl {
                    Ttl::Missing => {}
                    Ttl::Persistent => writeln!(out, "no expiry")?,
                    Ttl::Expires(d) => writeln!(out, "{} ms", d.as_millis())?,
                }
            }
            if ttl == Ttl::Missing {
                eprintln!("cairn: key {:?} not found", key);
                EXIT_NOT_FOUND
            } else {
                0
            }
        }
        Command::Set {
            dir,
            key,
            value,
            ttl,
            nx,
        } => {
            let db = open_write(&dir, true)?;
            if nx {
                let set = db.put_if_absent(&key, &value, ttl)?;
                writeln!(
                    out,
                    "{}",
                    if set {
                        "set"
                    } else {
                        "not set: the key exists"
                    }
                )?;
            } else {
                match ttl {
                    Some(t) => db.put_with_ttl(&key, &value, t)?,
                    None => db.put(&key, &value)?,
                }
            }
            db.close()?;
            0
        }
        Command::Del { dir, keys } => {
            let db = open_write(&dir, false)?;
            let mut n = 0;
            for k in &keys {
                if db.delete(k)? {
                    n += 1;
                }
            }
            db.close()?;
            writeln!(out, "{n}")?;
            0
        }
        Command::Incr { dir, key, by } => {
            let db = open_write(&dir, true)?;
            let v = db.incr(&key, by)?;
            db.close()?;
            writeln!(out, "{v}")?;
            0
        }
        Command::Expire { dir, key, ttl } => {
            let db = open_write(&dir, false)?;
            let found = db.expire(&key, ttl)?;
            db.close()?;
            if found {
                0
            } else {
                eprintln!("cairn: key {:?} not found", key);
                EXIT_NOT_FOUND
            }
        }
        Command::Stats { dir, json } => {
            let db = open_read(&dir)?;
            stats(&db, &dir, json, &mut out)?;
            0
        }
        Command::Dump {
            dir,
            segment,
            from_offset,
            values,
            json,
        } => {
            check_store(&dir)?;
            dump(&dir, segment, from_offset, values, json, &mut out)?;
            0
        }
        Command::Verify {
            dir,
            max_errors,
            quick,
            json,
        } => {
            check_store(&dir)?;
            let pb = progress("verifying");
            let r = cairn::verify(&dir, quick)?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            let shown = max_errors.unwrap_or(usize::MAX).min(r.problems.len());
            if json {
                let problems: Vec<Value> = r.problems[..shown]
                    .iter()
                    .map(|p| {
                        json!({
                            "kind": p.kind.name(),
                            "corruption": p.kind.is_corruption(),
                            "path": p.path.display().to_string(),
                            "offset": p.offset,
                            "detail": p.detail,
                        })
                    })
                    .collect();
                writeln!(
                    out,
                    "{}",
                    json!({
                        "healthy": !r.has_corruption(),
                        "segments": r.segments,
                        "hints": r.hints,
                        "records": r.records,
                        "problems": problems,
                        "problems_total": r.problems.len(),
                    })
                )?;
            } else {
                for p in &r.problems[..shown] {
                    let at = p
                        .offset
                        .map_or(String::new(), |o| format!(" at offset {o}"));
                    writeln!(
                        out,
                        "{}: {}{at}: {}",
                        p.kind.name(),
                        p.path.display(),
                        p.detail
                    )?;
                }
                if shown < r.problems.len() {
                    writeln!(out, "... and {} more", r.problems.len() - shown)?;
                }
                writeln!(
                    out,
                    "{}: {} segments, {} hints, {} records checked, {} problems",
                    if r.has_corruption() {
                        "CORRUPT"
                    } else {
                        "healthy"
                    },
                    r.segments,
                    r.hints,
                    r.records,
                    r.problems.len()
                )?;
            }
            if r.has_corruption() {
                EXIT_CORRUPTION
            } else {
                0
            }
        }
        Command::Repair { dir, dry_run } => {
            check_store(&dir)?;
            // Show what will be dropped before dropping it.
            let plan = cairn::repair(&dir, true).map_err(|e| open_error(e, &dir))?;
            for d in &plan.dropped {
                writeln!(
                    out,
                    "drop: {} at offset {}, {} bytes: {}",
                    d.path.display(),
                    d.offset,
                    d.len,
                    d.reason
                )?;
            }
            for (p, why) in &plan.unrepairable {
                writeln!(out, "cannot repair: {}: {why}", p.display())?;
            }
            if plan.segments.is_empty() {
                writeln!(out, "nothing to repair")?;
            } else if dry_run {
                writeln!(
                    out,
                    "would rewrite {} segments keeping {} records (dry run: nothing changed)",
                    plan.segments.len(),
                    plan.records_kept
                )?;
            } else {
                out.flush()?;
                let pb = progress("repairing");
                let r = cairn::repair(&dir, false).map_err(|e| open_error(e, &dir))?;
                if let Some(pb) = pb {
                    pb.finish_and_clear();
                }
                writeln!(
                    out,
                    "rewrote {} segments keeping {} records; originals in {}",
                    r.segments.len(),
                    r.records_kept,
                    r.backup
                        .map_or_else(String::new, |b| b.display().to_string())
                )?;
            }
            if plan.unrepairable.is_empty() {
                0
            } else {
                EXIT_CORRUPTION
            }
        }
        Command::Compact { dir } => {
            let db = open_write(&dir, false)?;
            let pb = progress("compacting");
            let s = db.compact()?;
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            db.close()?;
            writeln!(
                out,
                "compacted {} segments ({} bytes) into {} ({} bytes) in {:?}; dropped {} overwritten, {} deleted, {} expired records",
                s.segments_in,
                s.bytes_in,
                s.segments_out,
                s.bytes_out,
                s.duration,
                s.dropped_overwritten,
                s.dropped_deleted,
                s.dropped_expired
            )?;
            0
        }
        Command::Export { dir, prefix } => {
            let db = open_read(&dir)?;
            let pb = progress("exporting");
            let mut n = 0u64;
            for kv in db.scan_prefix(&prefix) {
                let (k, v) = kv?;
                let mut o = serde_json::Map::new();
                bytes_field(&mut o, "key", &k);
                bytes_field(&mut o, "value", &v);
                o.insert("expires_at_ms".into(), json!(expires_at(&db, &k)?));
                writeln!(out, "{}", Value::Object(o))?;
                n += 1;
                if let Some(pb) = &pb {
                    pb.set_message(format!("exported {n} keys"));
                }
            }
            if let Some(pb) = pb {
                pb.finish_and_clear();
            }
            eprintln!("exported {n} keys");
            0
        }
        Command::Import { dir } => {
            let db = open_write(&dir, true)?;
            import(&db)?;
            db.close()?;
            0
        }
    };
    out.flush()?;
    Ok(code)
}

/// Segment ids in `dir`, ascending.
fn segment_ids(dir: &Path) -> Result<Vec<u32>> {
    let mut ids: Vec<u32> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".seg")?;
            (stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()))
                .then(|| stem.parse().ok())
                .flatten()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

fn dump(
    dir: &Path,
    segment: Option<u32>,
    from_offset: u64,
    values: bool,
    json: bool,
    out: &mut impl Write,
) -> Result<()> {
    let ids = segment_ids(dir)?;
    let ids: Vec<u32> = match segment {
        Some(s) if !ids.contains(&s) => bail!("no segment {s} in {}", dir.display()),
        Some(s) => vec![s],
        None => ids,
    };
    for id in ids {
        let path = dir.join(format!("{id:010}.seg"));
        for e in cairn::read_segment(&path)? {
            match e {
                cairn::SegmentEntry::Record {
                    offset,
                    kind,
                    seq,
                    expires_at_ms,
                    in_batch,
                    key,
                    value,
                    ..
                } if offset >= from_offset => {
                    if json {
                        let mut o = serde_json::Map::new();
                        o.insert("segment".into(), json!(id));
                        o.insert("offset".into(), json!(offset));
                        o.insert("kind".into(), json!(kind.name()));
                        o.insert("seq".into(), json!(seq));
                        bytes_field(&mut o, "key", &key);
                        o.insert("value_len".into(), json!(value.len()));
                        o.insert(
                            "expires_at_ms".into(),
                            json!((expires_at_ms != 0).then_some(expires_at_ms)),
                        );
                        o.insert("in_batch".into(), json!(in_batch));
                        o.insert("crc".into(), json!("ok"));
                        if values {
                            bytes_field(&mut o, "value", &value);
                        }
                        writeln!(out, "{}", Value::Object(o))?;
                    } else {
                        let exp = if expires_at_ms == 0 {
                            "-".to_string()
                        } else {
                            expires_at_ms.to_string()
                        };
                        write!(
                            out,
                            "{id:>6} {offset:>10}  {:<12} seq {seq:<8} exp {exp:<13} crc ok  {}{} ({} bytes)",
                            kind.name(),
                            escape(&key),
                            if in_batch { " [batch]" } else { "" },
                            value.len()
                        )?;
                        if values {
                            write!(out, " = {}", escape(&value))?;
                        }
                        writeln!(out)?;
                    }
                }
                cairn::SegmentEntry::Damaged {
                    offset,
                    len,
                    reason,
                } if offset + len > from_offset => {
                    if json {
                        writeln!(
                            out,
                            "{}",
                            json!({"segment": id, "offset": offset, "kind": "damaged", "len": len, "crc": "bad", "reason": reason})
                        )?;
                    } else {
                        writeln!(
                            out,
                            "{id:>6} {offset:>10}  DAMAGED      {len} bytes: {reason}"
                        )?;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn out_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// Record counts of one segment, from reading its file.
#[derive(Default)]
struct SegCounts {
    records: u64,
    tombstones: u64,
    expired: u64,
    damaged: u64,
    min_seq: Option<u64>,
    max_seq: Option<u64>,
}

fn seg_counts(path: &Path, now: u64) -> Result<SegCounts> {
    let mut c = SegCounts::default();
    for e in cairn::read_segment(path)? {
        match e {
            cairn::SegmentEntry::Record {
                kind,
                seq,
                expires_at_ms,
                ..
            } => {
                match kind {
                    cairn::RecordKind::Put => {
                        c.records += 1;
                        if expires_at_ms != 0 && expires_at_ms <= now {
                            c.expired += 1;
                        }
                    }
                    cairn::RecordKind::Tombstone => {
                        c.records += 1;
                        c.tombstones += 1;
                    }
                    _ => {}
                }
                if kind != cairn::RecordKind::SyncMark {
                    c.min_seq = Some(c.min_seq.map_or(seq, |m| m.min(seq)));
                    c.max_seq = Some(c.max_seq.map_or(seq, |m| m.max(seq)));
                }
            }
            cairn::SegmentEntry::Damaged { .. } => c.damaged += 1,
            _ => {}
        }
    }
    Ok(c)
}

fn stats(db: &Db, dir: &Path, json: bool, out: &mut impl Write) -> Result<()> {
    let st = db.stats();
    let segs = db.segment_stats();
    // Hint state per segment, from a quick verification (headers and
    // hints only).
    let check = cairn::verify(dir, true)?;
    let hint_state = |id: u32| -> &'static str {
        let hint = dir.join(format!("{id:010}.hint"));
        match check.problems.iter().find(|p| p.path == hint) {
            Some(p) if p.kind == cairn::ProblemKind::HintMissing => "none",
            Some(_) => "invalid",
            None if hint.exists() => "valid",
            None => "none",
        }
    };
    // A read-only handle has no active segment; the newest one is it.
    let newest = segs.last().map(|s| s.id);
    let is_active = |s: &cairn::SegmentStats| s.active || Some(s.id) == newest;
    let reclaim: u64 = segs
        .iter()
        .filter(|s| !is_active(s))
        .map(|s| s.dead_bytes)
        .sum();
    let pb = progress("reading segments");
    let now = now_ms();
    let mut counts = Vec::with_capacity(segs.len());
    for s in &segs {
        counts.push(seg_counts(&dir.join(format!("{:010}.seg", s.id)), now)?);
    }
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    if json {
        let segments: Vec<Value> = segs
            .iter()
            .zip(&counts)
            .map(|(s, c)| {
                json!({
                    "id": s.id,
                    "bytes": s.bytes,
                    "live_bytes": s.bytes.saturating_sub(32 + s.dead_bytes),
                    "dead_bytes": s.dead_bytes,
                    "records": c.records,
                    "tombstones": c.tombstones,
                    "expired": c.expired,
                    "damaged_ranges": c.damaged,
                    "min_seq": c.min_seq,
                    "max_seq": c.max_seq,
                    "active": is_active(s),
                    "hint": if is_active(s) { "n/a" } else { hint_state(s.id) },
                })
            })
            .collect();
        let v = json!({
            "segments": segments,
            "live_keys": st.live_keys,
            "live_bytes": st.live_bytes,
            "dead_bytes": st.dead_bytes,
            "disk_bytes": st.disk_bytes,
            "compaction_reclaimable_bytes": reclaim,
            "keydir_memory_bytes": st.keydir_memory_bytes,
        });
        writeln!(out, "{v}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>5}  {:>8}  {:>7}  {:>7}  {:>13}  notes",
        "segment", "size", "live", "dead", "dead", "records", "tombst.", "expired", "sequences"
    )?;
    for (s, c) in segs.iter().zip(&counts) {
        let data = s.bytes.saturating_sub(32).max(1);
        let mut notes = Vec::new();
        if is_active(s) {
            notes.push("active".to_string());
        } else {
            notes.push(format!("hint {}", hint_state(s.id)));
        }
        if c.damaged > 0 {
            notes.push(format!("{} damaged ranges", c.damaged));
        }
        let seqs = match (c.min_seq, c.max_seq) {
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "-".to_string(),
        };
        writeln!(
            out,
            "{:>7}  {:>9}  {:>9}  {:>9}  {:>4.0}%  {:>8}  {:>7}  {:>7}  {:>13}  {}",
            s.id,
            human(s.bytes),
            human(s.bytes.saturating_sub(32 + s.dead_bytes)),
            human(s.dead_bytes),
            100.0 * s.dead_bytes as f64 / data as f64,
            c.records,
            c.tombstones,
            c.expired,
            seqs,
            notes.join(", ")
        )?;
    }
    writeln!(out)?;
    writeln!(out, "live keys              {}", st.live_keys)?;
    writeln!(out, "live data              {}", human(st.live_bytes))?;
    writeln!(out, "dead data              {}", human(st.dead_bytes))?;
    writeln!(out, "segment files          {}", human(st.disk_bytes))?;
    writeln!(out, "compaction would free  about {}", human(reclaim))?;
    writeln!(
        out,
        "index memory (est.)    {}",
        human(st.keydir_memory_bytes)
    )?;
    Ok(())
}

/// A byte count for people: `126 B`, `4.0 KiB`, `63.9 MiB`, `1.2 GiB`.
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// One parsed import line: key, value, absolute expiry.
type Line = (Vec<u8>, Vec<u8>, Option<u64>);

fn field(o: &serde_json::Map<String, Value>, name: &str) -> Result<Vec<u8>> {
    if let Some(v) = o.get(name) {
        return v
            .as_str()
            .map(|s| s.as_bytes().to_vec())
            .ok_or_else(|| anyhow!("\"{name}\" must be a string"));
    }
    let b64 = format!("{name}_b64");
    match o.get(&b64) {
        Some(v) => {
            let s = v
                .as_str()
                .ok_or_else(|| anyhow!("\"{b64}\" must be a string"))?;
            base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|e| anyhow!("\"{b64}\" is not valid base64: {e}"))
        }
        None => bail!("missing \"{name}\" (or \"{b64}\")"),
    }
}

fn parse_line(line: &str) -> Result<Line> {
    let v: Value = serde_json::from_str(line).map_err(|e| anyhow!("not JSON: {e}"))?;
    let o = v.as_object().ok_or_else(|| anyhow!("not a JSON object"))?;
    let exp = match o.get("expires_at_ms") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| anyhow!("\"expires_at_ms\" must be a whole number or null"))?,
        ),
    };
    Ok((field(o, "key")?, field(o, "value")?, exp))
}

fn import(db: &Db) -> Result<()> {
    const BATCH: usize = 1000;
    let pb = progress("importing");
    let stdin = io::stdin();
    let mut batch = Batch::new();
    let (mut imported, mut expired) = (0u64, 0u64);
    let flush = |batch: &mut Batch, imported: &mut u64| -> Result<()> {
        let n = batch.len() as u64;
        if n > 0 {
            db.write_batch(std::mem::take(batch))?;
            *imported += n;
        }
        Ok(())
    };
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line.context("cannot read stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let (k, v, exp) = match parse_line(&line) {
            Ok(l) => l,
            Err(e) => {
                flush(&mut batch, &mut imported)?;
                if let Some(pb) = pb {
                    pb.finish_and_clear();
                }
                bail!(
                    "line {}: {e}; stopped there ({imported} records before it were imported)",
                    i + 1
                );
            }
        };
        match exp {
            Some(at) => {
                let now = now_ms();
                if at <= now {
                    expired += 1;
                    continue;
                }
                batch.push_put(k, v, Some(Duration::from_millis(at - now)));
            }
            None => batch.push_put(k, v, None),
        }
        if batch.len() >= BATCH {
            flush(&mut batch, &mut imported)?;
            if let Some(pb) = &pb {
                pb.set_message(format!("imported {imported} records"));
            }
        }
    }
    flush(&mut batch, &mut imported)?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    eprintln!("imported {imported} records ({expired} already expired, skipped)");
    Ok(())
}
