//! The RESP backend's operations: read, update (scripts or `WATCH`) and
//! scan (one server or every master of a cluster).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use redis::{ConnectionInfo, ConnectionLike, ErrorKind, RedisError, RedisResult, Value};

use super::conn::{failure, Conn, Failure, Lease, Pool, Target};
use super::keys;
use super::scripts::Scripts;
use super::shared::{Raw, Shared};
use crate::backend::{Change, Snapshot, Update};
use crate::error::{Error, Result};

/// What a scan calls with each key: its name, value length and expiry.
type ScanFn<'a> = dyn FnMut(&[u8], u64, Option<u64>) + 'a;

/// An update gives up after this many conflicting attempts…
const MAX_TRIES: u32 = 1000;
/// …or after this long.
const MAX_CONTENTION: Duration = Duration::from_secs(5);

/// Loads the scripts; `false` if the server has no scripting at all.
///
/// # Errors
/// [`Error::Remote`] if the server cannot be reached or fails otherwise.
pub(crate) fn load_scripts(pool: &Pool, scripts: &Scripts) -> Result<bool> {
    let mut lease = pool.checkout(false)?;
    let r = lease.run(|c| {
        scripts.read.load(c.like())?;
        scripts.apply.load(c.like())
    });
    match r {
        Ok(_) => Ok(true),
        Err(e) if is_unknown_command(&e) => Ok(false),
        Err(e) => Err(pool.remote(&e, false)),
    }
}

fn is_unknown_command(e: &RedisError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("unknown command") || text.contains("unknown subcommand")
}

/// An error for a reply of the wrong shape, naming only its type and
/// length: a reply may hold a module's data (a session), which an error
/// message must not carry into logs.
fn bad_reply(what: &str, v: &Value) -> RedisError {
    let shape = match v {
        Value::Nil => "nil".to_owned(),
        Value::Int(_) => "an integer".to_owned(),
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::SimpleString(t) => format!("a status of {} bytes", t.len()),
        Value::Okay => "OK".to_owned(),
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::Set(a) => format!("a set of {}", a.len()),
        Value::Map(m) => format!("a map of {}", m.len()),
        Value::Double(_) => "a double".to_owned(),
        Value::Boolean(_) => "a boolean".to_owned(),
        Value::ServerError(_) => "an error".to_owned(),
        _ => "another type".to_owned(),
    };
    RedisError::from((
        ErrorKind::TypeError,
        "unexpected reply",
        format!("{what}: {shape}"),
    ))
}

fn int(v: &Value) -> RedisResult<i64> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad_reply("integer", v)),
        other => Err(bad_reply("integer", other)),
    }
}

/// The milliseconds of a script's clock or of a `TIME` reply.
fn time_ms(v: &Value) -> RedisResult<u64> {
    let ms = match v {
        Value::Array(parts) if parts.len() == 2 => {
            let (secs, micros) = (int(&parts[0])?, int(&parts[1])?);
            secs.checked_mul(1000)
                .and_then(|ms| ms.checked_add(micros / 1000))
        }
        other => Some(int(other)?),
    };
    ms.and_then(|ms| u64::try_from(ms).ok())
        .ok_or_else(|| bad_reply("time", v))
}

/// `{now, v1, e1, …}` as the clock and one [`Raw`] per key.
fn parse_read(v: Value, n: usize) -> RedisResult<(u64, Vec<Raw>)> {
    let items = match v {
        Value::Array(items) if items.len() == 1 + 2 * n => items,
        other => return Err(bad_reply("read", &other)),
    };
    let now = time_ms(&items[0])?;
    let mut raws = Vec::with_capacity(n);
    let mut it = items.into_iter().skip(1);
    while let (Some(value), Some(exp)) = (it.next(), it.next()) {
        raws.push(match value {
            Value::Nil => None,
            Value::BulkString(b) => Some((b, int(&exp)?)),
            other => return Err(bad_reply("value", &other)),
        });
    }
    Ok((now, raws))
}

fn read_eval(sh: &Shared, c: &mut Conn, stored: &[Vec<u8>]) -> RedisResult<(u64, Vec<Raw>)> {
    let v = run_script(sh, c, &sh.scripts.read, stored, &[])?;
    parse_read(v, stored.len())
}

/// Runs `lua` on `keys` and `args`; when the keys' slot is migrating and
/// the node answers `ASK` (it did not run the script), runs it once on the
/// node the redirect names, after `ASKING`. The cluster client follows no
/// redirect itself (it would also resend after a timeout; see `Pool`).
fn run_script(
    sh: &Shared,
    c: &mut Conn,
    lua: &super::scripts::Lua,
    keys: &[Vec<u8>],
    args: &[Vec<u8>],
) -> RedisResult<Value> {
    match lua.run(c.like(), keys, args) {
        Err(e) if e.kind() == redis::ErrorKind::Ask => {
            let Some((node, _slot)) = e.redirect_node() else {
                return Err(e);
            };
            let mut target = sh.pool.connect_node(node)?;
            lua.run_asking(&mut target, keys, args)
        }
        r => r,
    }
}

/// `TIME` and each key's `GET` and `PEXPIRETIME`, in one pipeline
/// (`MULTI … EXEC` if `atomic`).
fn read_pipelined(
    c: &mut dyn ConnectionLike,
    stored: &[Vec<u8>],
    atomic: bool,
) -> RedisResult<(u64, Vec<Raw>)> {
    let mut p = redis::pipe();
    if atomic {
        p.atomic();
    }
    p.cmd("TIME");
    for k in stored {
        p.cmd("GET").arg(k).cmd("PEXPIRETIME").arg(k);
    }
    let v: Value = p.query(c)?;
    parse_read(v, stored.len())
}

/// [`Backend::read`](crate::backend::Backend::read) of stored keys.
///
/// # Errors
/// [`Error::Remote`].
pub(crate) fn read(sh: &Shared, stored: &[Vec<u8>]) -> Result<Snapshot> {
    let mut retry = Retry::new();
    loop {
        let mut lease = sh.pool.checkout(retry.fresh)?;
        let r = if sh.has_eval {
            lease.run(|c| read_eval(sh, c, stored))
        } else {
            lease.run(|c| read_pipelined(c.like(), stored, true))
        };
        match r {
            Ok((server_now, raws)) => return Ok(sh.snapshot(server_now, &raws)),
            Err(e) => retry.after(sh, e, lease.reused())?,
        }
    }
}

/// When a call that failed before it could apply anything tries again:
/// at once on a new connection if the pooled one it had was found
/// closed (once per call), and after a pause if the server said it did
/// not run the command and may soon (a redirect after a failover, a
/// cluster still electing), within [`MAX_CONTENTION`]. Never after a
/// failure of a step that may have applied a write.
struct Retry {
    start: Instant,
    tries: u32,
    /// Whether the next attempt takes a new connection.
    fresh: bool,
    stale_retried: bool,
}

impl Retry {
    fn new() -> Retry {
        Retry {
            start: Instant::now(),
            tries: 0,
            fresh: false,
            stale_retried: false,
        }
    }

    /// After a step that applies nothing failed with `e` on a connection
    /// that came from the pool if `reused`: `Ok` (after any pause) to try
    /// again, else the error to return.
    fn after(&mut self, sh: &Shared, e: RedisError, reused: bool) -> Result<()> {
        self.tries += 1;
        self.fresh = false;
        if e.kind() == redis::ErrorKind::Moved {
            // The slot map changed: every pooled connection has the old
            // one. Start again from the seeds.
            sh.pool.clear_idle();
            self.fresh = true;
        }
        match failure(&e) {
            Failure::Closed if reused && !self.stale_retried => {
                self.stale_retried = true;
                self.fresh = true;
                Ok(())
            }
            Failure::NotRun if self.tries < MAX_TRIES && self.start.elapsed() < MAX_CONTENTION => {
                std::thread::sleep(refused_backoff(self.tries));
                Ok(())
            }
            _ => Err(sh.pool.remote(&e, false)),
        }
    }
}

/// A random pause after the server refused a command for now: up to
/// 10 ms, doubling with each refusal up to 320 ms.
fn refused_backoff(tries: u32) -> Duration {
    Duration::from_micros(random(10_000u64 << tries.min(5)))
}

/// A random number in `0..=max`.
fn random(max: u64) -> u64 {
    let mut seed = [0u8; 8];
    let r = match getrandom::fill(&mut seed) {
        Ok(()) => u64::from_le_bytes(seed),
        Err(_) => u64::from(std::process::id()) ^ max,
    };
    r % (max + 1)
}

/// Runs `f` on what was read: its changes, or `None` if it made none.
fn decide(
    sh: &Shared,
    server_now: u64,
    raws: &[Raw],
    f: &mut dyn FnMut(&mut Update) -> Result<()>,
) -> Result<Option<Vec<Option<Change>>>> {
    let mut u = Update::new(sh.snapshot(server_now, raws));
    f(&mut u)?;
    let read_only = u.is_read_only();
    let changes = u.into_changes()?;
    Ok((!read_only).then_some(changes))
}

/// [`Backend::update`](crate::backend::Backend::update) of stored keys.
///
/// # Errors
/// `f`'s error, or [`Error::Remote`] (also when it gives up under
/// contention).
pub(crate) fn update(
    sh: &Shared,
    stored: &[Vec<u8>],
    f: &mut dyn FnMut(&mut Update) -> Result<()>,
) -> Result<()> {
    let start = Instant::now();
    let mut tries = 0u32;
    let mut retry = Retry::new();
    loop {
        tries += 1;
        let attempt = if sh.has_eval {
            try_eval(sh, stored, f, retry.fresh)?
        } else {
            try_watch(sh, stored, f, retry.fresh)?
        };
        retry.fresh = false;
        match attempt {
            Attempt::Done => return Ok(()),
            Attempt::Conflict => {}
            Attempt::Failed { error, reused } => {
                retry.after(sh, error, reused)?;
                continue;
            }
        }
        if tries >= MAX_TRIES || start.elapsed() >= MAX_CONTENTION {
            return Err(Error::Remote {
                address: sh.pool.address.clone(),
                message: format!(
                    "gave up an update after {tries} conflicting attempts in {} ms: \
                     its keys are under heavy contention",
                    start.elapsed().as_millis()
                ),
                maybe_applied: false,
            });
        }
        std::thread::sleep(backoff(tries));
    }
}

/// A random pause before attempt `tries + 1`: up to 0.1 ms, doubling
/// with each conflict up to 12.8 ms.
fn backoff(tries: u32) -> Duration {
    Duration::from_micros(random(100u64 << tries.min(7)))
}

/// What one attempt of an update came to (its final errors are `Err`).
enum Attempt {
    /// Applied, or nothing to apply.
    Done,
    /// A key changed since it was read: nothing was written.
    Conflict,
    /// A step failed that cannot have applied anything (a read, or an
    /// apply the server refused with an error reply); `reused` if its
    /// connection came from the pool. See [`Retry::after`].
    Failed { error: RedisError, reused: bool },
}

/// One attempt with the scripts: read, decide, compare-and-apply (on a
/// new connection if `fresh`).
fn try_eval(
    sh: &Shared,
    stored: &[Vec<u8>],
    f: &mut dyn FnMut(&mut Update) -> Result<()>,
    fresh: bool,
) -> Result<Attempt> {
    let mut lease = sh.pool.checkout(fresh)?;
    let reused = lease.reused();
    let (server_now, raws) = match lease.run(|c| read_eval(sh, c, stored)) {
        Ok(r) => r,
        Err(error) => return Ok(Attempt::Failed { error, reused }),
    };
    let Some(changes) = decide(sh, server_now, &raws, f)? else {
        return Ok(Attempt::Done);
    };
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(6 * stored.len());
    for (raw, change) in raws.iter().zip(&changes) {
        let (flag, value, exp) = match raw {
            None => ("0", &[][..], -2),
            Some((v, e)) => ("1", &v[..], *e),
        };
        args.extend([flag.into(), value.to_vec(), exp.to_string().into_bytes()]);
        let (kind, value, pxat) = match change {
            None => ("n", &[][..], String::new()),
            Some(Change::Delete) => ("d", &[][..], String::new()),
            Some(Change::Put {
                value,
                expires_at_ms,
            }) => (
                "p",
                &value[..],
                expires_at_ms
                    .map(|e| sh.to_pxat(e).to_string())
                    .unwrap_or_default(),
            ),
        };
        args.extend([kind.into(), value.to_vec(), pxat.into_bytes()]);
    }
    // An error reply that says the script did not run may be tried
    // again; any other failure may have applied it: never resend it.
    match lease
        .run(|c| run_script(sh, c, &sh.scripts.apply, stored, &args))
        .and_then(|v| int(&v))
    {
        Ok(1) => Ok(Attempt::Done),
        Ok(_) => Ok(Attempt::Conflict),
        Err(error) if failure(&error) == Failure::NotRun => Ok(Attempt::Failed {
            error,
            reused: false,
        }),
        Err(e) => Err(sh.pool.remote(&e, true)),
    }
}

/// Ends a `WATCH` on an error path, so the pooled connection is clean.
fn unwatch(lease: &mut Lease<'_>) {
    if lease
        .run(|c| redis::cmd("UNWATCH").query::<()>(c.like()))
        .is_err()
    {
        lease.discard();
    }
    lease.set_dirty(false);
}

/// One attempt with `WATCH` (on a new connection if `fresh`): watch,
/// read, decide, `MULTI` the changes (none if read-only: the empty
/// `EXEC` still checks the read was consistent). A nil `EXEC` is a
/// conflict. The lease is dirty from `WATCH` to `EXEC` or `UNWATCH`, so a
/// panic in `f` drops the connection rather than pool it still watching.
fn try_watch(
    sh: &Shared,
    stored: &[Vec<u8>],
    f: &mut dyn FnMut(&mut Update) -> Result<()>,
    fresh: bool,
) -> Result<Attempt> {
    let mut lease = sh.pool.checkout(fresh)?;
    let reused = lease.reused();
    lease.set_dirty(true);
    let read = lease.run(|c| {
        if !stored.is_empty() {
            redis::cmd("WATCH").arg(stored).query::<()>(c.like())?;
        }
        read_pipelined(c.like(), stored, false)
    });
    let (server_now, raws) = match read {
        Ok(r) => r,
        Err(error) => {
            unwatch(&mut lease);
            return Ok(Attempt::Failed { error, reused });
        }
    };
    let changes = match decide(sh, server_now, &raws, f) {
        Ok(c) => c.unwrap_or_default(),
        Err(e) => {
            unwatch(&mut lease);
            return Err(e);
        }
    };
    let mut p = redis::pipe();
    p.atomic();
    for (k, change) in stored.iter().zip(&changes) {
        match change {
            None => {}
            Some(Change::Delete) => {
                p.cmd("DEL").arg(k).ignore();
            }
            Some(Change::Put {
                value,
                expires_at_ms: None,
            }) => {
                p.cmd("SET").arg(k).arg(value).ignore();
            }
            Some(Change::Put {
                value,
                expires_at_ms: Some(e),
            }) => {
                p.cmd("SET")
                    .arg(k)
                    .arg(value)
                    .arg("PXAT")
                    .arg(sh.to_pxat(*e))
                    .ignore();
            }
        }
    }
    let wrote = !changes.is_empty();
    if !wrote {
        // The client sends nothing for an empty pipeline, which would
        // leave the WATCH on the pooled connection (its next MULTI would
        // fail) and skip the consistency check: queue a PING.
        p.cmd("PING").ignore();
    }
    let r: Value = lease
        .run(|c| p.query(c.like()))
        .map_err(|e| sh.pool.remote(&e, wrote))?;
    // EXEC ended the WATCH.
    lease.set_dirty(false);
    Ok(if matches!(r, Value::Nil) {
        Attempt::Conflict
    } else {
        Attempt::Done
    })
}

/// [`Backend::scan`](crate::backend::Backend::scan) of the names under
/// `name_prefix` of the keys under `prefix`.
///
/// # Errors
/// [`Error::Remote`].
pub(crate) fn scan(
    sh: &Shared,
    prefix: &[u8],
    name_prefix: &[u8],
    f: &mut ScanFn<'_>,
) -> Result<()> {
    let patterns = keys::scan_patterns(prefix, name_prefix);
    let mut seen = HashSet::new();
    let mut node = NodeScan {
        sh,
        prefix,
        name_prefix,
        seen: &mut seen,
        f,
    };
    match &sh.pool.target {
        Target::Single(_) => {
            // A scan that starts over reports no key twice (`seen`).
            let mut retry = Retry::new();
            'again: loop {
                let mut lease = sh.pool.checkout(retry.fresh)?;
                for p in &patterns {
                    if let Err(e) = lease.run(|c| node.scan(c.like(), p)) {
                        retry.after(sh, e, lease.reused())?;
                        continue 'again;
                    }
                }
                break;
            }
        }
        Target::Cluster(_, seed) => {
            for info in cluster_masters(sh, seed)? {
                let mut conn = redis::Client::open(info)
                    .and_then(|client| sh.pool.connect_one(&client))
                    .map_err(|e| sh.pool.remote(&e, false))?;
                for p in &patterns {
                    node.scan(&mut conn, p)
                        .map_err(|e| sh.pool.remote(&e, false))?;
                }
            }
        }
    }
    Ok(())
}

/// A scan's state across nodes and patterns.
struct NodeScan<'a> {
    sh: &'a Shared,
    prefix: &'a [u8],
    name_prefix: &'a [u8],
    /// The stored keys already reported (`SCAN` may repeat one).
    seen: &'a mut HashSet<Vec<u8>>,
    f: &'a mut ScanFn<'a>,
}

impl NodeScan<'_> {
    /// `SCAN … MATCH pattern` on one node, with each batch's lengths and
    /// expiries in one pipeline.
    fn scan(&mut self, c: &mut dyn ConnectionLike, pattern: &[u8]) -> RedisResult<()> {
        let mut cursor = 0u64;
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query(c)?;
            let batch: Vec<Vec<u8>> = batch
                .into_iter()
                .filter(|k| {
                    keys::decode(self.prefix, k).is_some_and(|n| n.starts_with(self.name_prefix))
                        && !self.seen.contains(k)
                })
                .collect();
            if !batch.is_empty() {
                let mut p = redis::pipe();
                for k in &batch {
                    p.cmd("STRLEN").arg(k).cmd("PEXPIRETIME").arg(k);
                }
                let meta: Vec<i64> = p.query(c)?;
                let now = self.sh.now(0);
                for (k, m) in batch.into_iter().zip(meta.chunks(2)) {
                    let (len, exp) = (m[0], m.get(1).copied().unwrap_or(-2));
                    let expiry = self.sh.expiry_of_raw(exp);
                    let live =
                        exp != -2 && (self.sh.clock.is_none() || expiry.is_none_or(|e| e > now));
                    if live {
                        if let Some(name) = keys::decode(self.prefix, &k) {
                            (self.f)(name, u64::try_from(len).unwrap_or(0), expiry);
                        }
                        self.seen.insert(k);
                    }
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// The connection settings of every master of the cluster.
fn cluster_masters(sh: &Shared, seed: &ConnectionInfo) -> Result<Vec<ConnectionInfo>> {
    let mut retry = Retry::new();
    let text: String = loop {
        let mut lease = sh.pool.checkout(retry.fresh)?;
        match lease.run(|c| redis::cmd("CLUSTER").arg("NODES").query(c.like())) {
            Ok(text) => break text,
            Err(e) => retry.after(sh, e, lease.reused())?,
        }
    };
    let masters = parse_masters(&text);
    if masters.is_empty() {
        return Err(Error::Remote {
            address: sh.pool.address.clone(),
            message: "CLUSTER NODES lists no live master".into(),
            maybe_applied: false,
        });
    }
    Ok(masters
        .into_iter()
        .map(|(host, port)| super::conn::with_addr(seed, &host, port))
        .collect())
}

/// The `host:port` of each master serving slots in a `CLUSTER NODES`
/// reply, skipping those marked failed.
fn parse_masters(text: &str) -> Vec<(String, u16)> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags: Vec<&str> = fields.get(2)?.split(',').collect();
            if !flags.contains(&"master")
                || flags.contains(&"fail")
                || flags.contains(&"noaddr")
                || fields.len() < 9
            {
                return None;
            }
            let addr = fields.get(1)?.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// The fuzz target's entry (`cairn::fuzzing::resp_backend_replies`): the
/// first byte is a key count, the rest a server's reply to the read
/// script; then the same bytes as a `CLUSTER NODES` reply. Neither may
/// panic, whatever the bytes.
#[cfg(feature = "__test_hooks")]
pub(crate) fn fuzz_replies(data: &[u8]) -> usize {
    let Some((&n, reply)) = data.split_first() else {
        return 0;
    };
    let mut found = 0;
    if let Ok(v) = redis::parse_redis_value(reply) {
        if let Ok((_, raws)) = parse_read(v, usize::from(n)) {
            found += raws.len();
        }
    }
    found + parse_masters(&String::from_utf8_lossy(reply)).len()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the message quoted the whole reply, which may hold a
    /// module's data (a session).
    #[test]
    fn a_bad_reply_names_its_type_and_length_only() {
        let v = Value::Array(vec![Value::BulkString(b"secret-session-data".to_vec())]);
        let text = bad_reply("read", &v).to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("an array of 1"), "{text}");
        let text = bad_reply("integer", &Value::BulkString(b"secret".to_vec())).to_string();
        assert!(!text.contains("secret"), "{text}");
        assert!(text.contains("a string of 6 bytes"), "{text}");
    }

    #[test]
    fn parse_masters_keeps_live_masters_with_slots() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,host1 master - 0 0 2 connected 5461-10922
c3 127.0.0.1:7002@17002 master,fail - 0 0 3 connected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 0 1 connected
e5 127.0.0.1:7004@17004 master - 0 0 0 connected
";
        assert_eq!(
            parse_masters(text),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001)
            ]
        );
    }

    #[test]
    fn parse_read_maps_values_and_expiries() {
        let v = Value::Array(vec![
            Value::Int(1_000),
            Value::BulkString(b"v".to_vec()),
            Value::Int(-1),
            Value::Nil,
            Value::Int(-2),
        ]);
        let (now, raws) = parse_read(v, 2).expect("parse");
        assert_eq!(now, 1_000);
        assert_eq!(raws, vec![Some((b"v".to_vec(), -1)), None]);
        let time = Value::Array(vec![
            Value::BulkString(b"12".to_vec()),
            Value::BulkString(b"345678".to_vec()),
        ]);
        assert_eq!(time_ms(&time).expect("time"), 12_345);
        let huge = Value::Array(vec![Value::Int(i64::MAX), Value::Int(0)]);
        assert!(
            time_ms(&huge).is_err(),
            "an absurd TIME is an error, not an overflow"
        );
        assert!(time_ms(&Value::Int(-1)).is_err());
        assert!(parse_read(Value::Array(vec![Value::Int(1)]), 1).is_err());
    }
}
