//! Helpers shared by the commands: exit codes, opening a store read-only or
//! for writing (and what an open error says), durations and clock, JSON
//! byte fields, escaping for people, progress spinners.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use cairn::{Db, Error, Options, SyncPolicy, Ttl};
use indicatif::ProgressBar;
use serde_json::Value;

/// Exit code: corruption found.
pub const EXIT_CORRUPTION: u8 = 3;
/// Exit code: the key does not exist.
pub const EXIT_NOT_FOUND: u8 = 4;

/// Says on stderr that `key` does not exist; returns [`EXIT_NOT_FOUND`].
pub fn not_found(key: &str) -> u8 {
    eprintln!("cairn: key {:?} not found", key);
    EXIT_NOT_FOUND
}

/// Parses a time to live: 500ms, 30s, 5m, 1h, 2d (a bare number is
/// seconds). It must be positive and its expiry (now plus the TTL) before
/// 2^48 unix milliseconds (the year 10889), as cairn requires.
pub fn parse_ttl(s: &str) -> std::result::Result<Duration, String> {
    parse_ttl_at(s, now_ms())
}

/// [`parse_ttl`] at the unix time `now_ms`.
fn parse_ttl_at(s: &str, now_ms: u64) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        if s.strip_prefix('-')
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
        {
            return Err(format!("bad TTL {s:?}: a TTL must be positive"));
        }
        return Err(format!(
            "bad TTL {s:?}: expected a number and a unit, like 30s"
        ));
    }
    let too_large = || {
        format!(
            "TTL {s:?} is too large: the expiry must come before 2^48 unix milliseconds (the year 10889)"
        )
    };
    // `num` is all digits, so parsing fails only when it is too large.
    let n: u64 = num.parse().map_err(|_| too_large())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("bad TTL {s:?}: the unit must be ms, s, m, h or d")),
    };
    let ms = n.checked_mul(unit_ms).ok_or_else(too_large)?;
    if ms == 0 {
        return Err(format!("bad TTL {s:?}: a TTL must be positive"));
    }
    if ms > cairn::MAX_EXPIRY_MS.saturating_sub(now_ms) {
        return Err(too_large());
    }
    Ok(Duration::from_millis(ms))
}

/// Whether `dir` looks like a cairn store (so read commands never create
/// files in a directory that is not one).
pub fn check_store(dir: &Path) -> Result<()> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let is_store = !cairn::segment_ids(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .is_empty();
    if !is_store {
        bail!(
            "{} is not a cairn store (it holds no segment files)",
            dir.display()
        );
    }
    Ok(())
}

/// The store at `dir` and each of its keyspaces (`dir/keyspaces/<name>`,
/// each a store of its own), in name order: `(None, dir)` first, then
/// `(Some(name), path)` for every keyspace directory that holds segments.
pub fn store_dirs(dir: &Path) -> Result<Vec<(Option<String>, PathBuf)>> {
    let mut dirs = vec![(None, dir.to_path_buf())];
    let keyspaces = dir.join(cairn::KEYSPACES_DIR);
    if !keyspaces.is_dir() {
        return Ok(dirs);
    }
    let mut found = Vec::new();
    for e in std::fs::read_dir(&keyspaces)
        .with_context(|| format!("cannot read {}", keyspaces.display()))?
    {
        let e = e.with_context(|| format!("cannot read {}", keyspaces.display()))?;
        let path = e.path();
        let holds_segments =
            path.is_dir() && cairn::segment_ids(&path).is_ok_and(|ids| !ids.is_empty());
        if holds_segments {
            found.push((Some(e.file_name().to_string_lossy().into_owned()), path));
        }
    }
    found.sort();
    dirs.extend(found);
    Ok(dirs)
}

/// Opens a store for reading, without taking any lock: a snapshot that
/// works while an application has the store open for writing.
pub fn open_read(dir: &Path) -> Result<Db> {
    check_store(dir)?;
    Options::new()
        .snapshot(true)
        .create_if_missing(false)
        .auto_compact(false)
        .open(dir)
        .map_err(|e| open_error(e, dir))
}

/// Opens a store for writing (creating it when `create`).
pub fn open_write(dir: &Path, create: bool) -> Result<Db> {
    if !create {
        check_store(dir)?;
    }
    Options::new()
        .sync_policy(SyncPolicy::Always)
        .auto_compact(false)
        .open(dir)
        .map_err(|e| open_error(e, dir))
}

/// What a failure to open (or repair) `dir` says: who holds the lock, or
/// the library's error under "cannot open".
pub fn open_error(e: Error, dir: &Path) -> anyhow::Error {
    match e {
        Error::Locked { .. } => anyhow!(
            "{} is open in another process, which holds its lock; stop it or use the application's own interface",
            dir.display()
        ),
        Error::NotAStore { .. } => anyhow!(
            "{} is not a cairn store: it holds other files and none of cairn's, and cairn \
             does not create a store among them; use an empty or new directory",
            dir.display()
        ),
        e => anyhow::Error::new(e).context(format!("cannot open {}", dir.display())),
    }
}

/// The wall clock in unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The absolute expiry of `key` in unix ms, if it has one.
pub fn expires_at(db: &Db, key: &[u8]) -> Result<Option<u64>> {
    Ok(match db.ttl(key)? {
        Ttl::Expires(d) => Some(now_ms() + u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        _ => None,
    })
}

/// A byte string as JSON fields: `name` when UTF-8, `name_b64` otherwise.
pub fn bytes_field(obj: &mut serde_json::Map<String, Value>, name: &str, b: &[u8]) {
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
pub fn escape(b: &[u8]) -> String {
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

/// Whether stdout is a terminal.
pub fn out_is_terminal() -> bool {
    io::stdout().is_terminal()
}

/// A spinner saying `what` on stderr, when stderr is a terminal.
pub fn progress(what: &str) -> Option<ProgressBar> {
    if !io::stderr().is_terminal() {
        return None;
    }
    let pb = ProgressBar::new_spinner();
    pb.set_message(what.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    Some(pb)
}

/// Removes a spinner from [`progress`], if there is one.
pub fn finish(pb: Option<ProgressBar>) {
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
}

/// The Redis database a keyspace named by a number goes to by itself
/// (`cairn export --format resp`, `cairn follow`): all ASCII digits, at
/// most `i32::MAX`.
pub fn numbered_database(name: &str) -> Option<u32> {
    match name.parse::<u32>() {
        Ok(n) if name.bytes().all(|b| b.is_ascii_digit()) && n <= i32::MAX as u32 => Some(n),
        _ => None,
    }
}

/// Fails unless the store has keyspace `name` (given with `flag`).
pub fn check_keyspace(root: &Db, names: &[String], name: &str, flag: &str) -> Result<()> {
    if !names.iter().any(|n| n == name) {
        bail!(
            "{flag} {name}=…: {} has no keyspace {name:?} (its keyspaces: {})",
            root.path().display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(())
}

/// Keyspace `name` of `root`, refused when it has keyspaces of its own
/// (`command` names the command to run on it instead).
pub fn flat_keyspace(root: &Db, name: &str, command: &str) -> Result<Db> {
    let db = root.keyspace(name)?;
    let nested = db.keyspace_names()?;
    if !nested.is_empty() {
        bail!(
            "keyspace {name:?} has keyspaces of its own ({}); {command} one level at a time: \
             cairn {command} {} …",
            nested.join(", "),
            db.path().display()
        );
    }
    Ok(db)
}

/// The error for keyspaces (already quoted) that no rule gives a Redis
/// database.
pub fn unmapped_keyspaces(quoted: &[String]) -> anyhow::Error {
    anyhow!(
        "no Redis database for keyspace {}: only a keyspace named by a number goes to that \
         database by itself; give each a database with --keyspace-db NAME=N, or leave it out \
         with --keyspace-db NAME=skip",
        quoted.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::parse_ttl_at;
    use std::time::Duration;

    const NOW: u64 = 1_800_000_000_000;

    fn err(s: &str) -> String {
        parse_ttl_at(s, NOW).expect_err(s)
    }

    #[test]
    fn ttls_parse_with_their_units() {
        for (s, ms) in [
            ("500ms", 500),
            ("30s", 30_000),
            ("30", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("2d", 172_800_000),
        ] {
            assert_eq!(parse_ttl_at(s, NOW), Ok(Duration::from_millis(ms)), "{s}");
        }
    }

    #[test]
    fn negative_and_zero_ttls_must_be_positive() {
        for s in ["-5s", "-5", "-1ms", "0s", "0"] {
            assert!(err(s).contains("a TTL must be positive"), "{s}: {}", err(s));
        }
    }

    #[test]
    fn ttls_past_what_cairn_accepts_are_too_large() {
        let last_ms = (1u64 << 48) - 1 - NOW;
        assert_eq!(
            parse_ttl_at(&format!("{last_ms}ms"), NOW),
            Ok(Duration::from_millis(last_ms))
        );
        for s in [
            format!("{}ms", last_ms + 1),
            format!("{}ms", i64::MAX as u64 - NOW),
            "99999999999999999999s".to_string(),
            "18446744073709551s".to_string(),
            "18446744073709551615ms".to_string(),
            "9223372036854775807s".to_string(),
        ] {
            assert!(err(&s).contains("too large"), "{s}: {}", err(&s));
        }
    }

    #[test]
    fn malformed_ttls_say_what_is_expected() {
        assert!(err("abc").contains("expected a number and a unit"));
        assert!(err("").contains("expected a number and a unit"));
        assert!(err("5y").contains("the unit must be"));
        assert!(err("1.5s").contains("the unit must be"));
    }
}
