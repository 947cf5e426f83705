//! `cairn import --from redis://…`: the string keys of a Redis or Valkey
//! database (every master of a cluster), with their expiries, into the
//! store.
//!
//! Each node is walked with `SCAN … COUNT 1000`; the keys of one step are
//! read in one pipeline of `MULTI`, `GET`, `PEXPIRETIME` (or `PTTL`),
//! `EXEC` per key, so that a value and its expiry always come from the
//! same moment, and written to the store as one atomic batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use cairn::{Batch, Db};
use redis::{ConnectionAddr, ConnectionInfo, ConnectionLike, IntoConnectionInfo, Value};

use crate::common::{escape, finish, now_ms, open_write, progress};

/// Keys asked for per `SCAN` step.
const SCAN_COUNT: u32 = 1000;
/// A batch is written once its keys and values reach this many bytes
/// (and at the end of each `SCAN` step).
const BATCH_BYTES: usize = 64 << 20;
/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one reply may take (a step reads up to 1,000 values).
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How a node reports a key's expiry.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ExpiryCmd {
    /// `PEXPIRETIME`: absolute unix ms (Redis 7.0+, Valkey).
    Pexpiretime,
    /// `PTTL`: milliseconds left, for older servers.
    Pttl,
}

/// One server to walk.
struct Node {
    conn: redis::Connection,
    /// `host:port`, never the password.
    address: String,
    expiry: ExpiryCmd,
}

/// What the import did, for the summary.
#[derive(Default)]
struct Tally {
    imported: u64,
    expired: u64,
    /// Deleted, expired or changed type between `SCAN` and the read.
    vanished: u64,
    /// Keys that are not strings, by type.
    other_types: BTreeMap<String, u64>,
}

/// Copies the strings of the database at `url` (every master, when it is
/// a cluster or `cluster` says so) into the store at `dir` (created if
/// missing).
pub fn import(dir: &Path, url: &str, cluster: bool) -> Result<u8> {
    let seed_info = parse_url(url)?;
    let seed_addr = addr_text(&seed_info);
    let number = seed_info.redis.db;
    // Connect to database 0 first: a cluster node refuses SELECT.
    let mut first = seed_info.clone();
    first.redis.db = 0;
    let mut seed = connect(&first)?;
    let is_cluster = cluster || cluster_enabled(&mut seed.conn);
    let mut nodes = if is_cluster {
        if number != 0 {
            bail!(
                "{seed_addr}: a Redis Cluster has only database 0; leave /{number} out of the URL"
            );
        }
        cluster_nodes(&mut seed, &first)?
    } else {
        if number != 0 {
            redis::cmd("SELECT")
                .arg(number)
                .query::<()>(&mut seed.conn)
                .map_err(|e| {
                    anyhow!("Redis at {seed_addr}: cannot select database {number}: {e}")
                })?;
        }
        vec![seed]
    };
    let db = open_write(dir, true)?;
    let pb = progress("importing");
    let mut t = Tally::default();
    for node in &mut nodes {
        import_node(&db, node, &mut t, &pb)?;
    }
    finish(pb);
    db.close()?;
    let from = if is_cluster {
        format!("the cluster at {seed_addr} ({} masters)", nodes.len())
    } else {
        format!("{seed_addr} database {number}")
    };
    eprintln!(
        "imported {} string keys from {from} ({} already expired and {} deleted or changed \
         meanwhile: not written)",
        t.imported, t.expired, t.vanished
    );
    let skipped: u64 = t.other_types.values().sum();
    if skipped > 0 {
        let kinds: Vec<String> = t
            .other_types
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        eprintln!(
            "skipped {skipped} keys that are not strings: {} (cairn holds strings only)",
            kinds.join(", ")
        );
    }
    Ok(0)
}

/// The connection settings in `url`, with the password from
/// `REDISCLI_AUTH` when the URL has none. Errors never quote the URL (it
/// may hold a password).
fn parse_url(url: &str) -> Result<ConnectionInfo> {
    let scheme_ok = ["redis://", "valkey://"]
        .iter()
        .any(|s| url.len() >= s.len() && url[..s.len()].eq_ignore_ascii_case(s));
    if !scheme_ok {
        bail!("--from: expected a URL of the form redis://[[user]:password@]host:port[/db]");
    }
    let mut info = url.into_connection_info().map_err(|e| {
        anyhow!(
            "--from: not a valid Redis URL (redis://[[user]:password@]host:port[/db]): {}",
            e.detail().unwrap_or(e.category())
        )
    })?;
    if info.redis.password.is_none() {
        if let Ok(pw) = std::env::var("REDISCLI_AUTH") {
            info.redis.password = Some(pw).filter(|p| !p.is_empty());
        }
    }
    Ok(info)
}

/// `host:port` of `info`, never its credentials.
fn addr_text(info: &ConnectionInfo) -> String {
    match &info.addr {
        ConnectionAddr::Tcp(h, p) => format!("{h}:{p}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port}"),
        ConnectionAddr::Unix(p) => p.display().to_string(),
    }
}

/// A connection to `info` with the import's timeouts, and how its server
/// reports expiries.
fn connect(info: &ConnectionInfo) -> Result<Node> {
    let address = addr_text(info);
    let fail = |e: redis::RedisError| anyhow!("cannot connect to Redis at {address}: {e}");
    let conn = redis::Client::open(info.clone())
        .and_then(|c| c.get_connection_with_timeout(CONNECT_TIMEOUT))
        .map_err(fail)?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(fail)?;
    let mut node = Node {
        conn,
        address: address.clone(),
        expiry: ExpiryCmd::Pexpiretime,
    };
    // Any answer but "unknown command" (-2, or MOVED in a cluster) means
    // the server has PEXPIRETIME.
    let probe = redis::cmd("PEXPIRETIME")
        .arg("cairn-import-probe")
        .query::<Value>(&mut node.conn);
    match probe {
        Err(e) if is_unknown_command(&e) => node.expiry = ExpiryCmd::Pttl,
        Err(e) if e.kind() != redis::ErrorKind::Moved => {
            return Err(anyhow!("Redis at {address}: {e}"))
        }
        _ => {}
    }
    Ok(node)
}

fn is_unknown_command(e: &redis::RedisError) -> bool {
    e.to_string()
        .to_ascii_lowercase()
        .contains("unknown command")
}

/// Whether the server says it is a cluster node (`INFO cluster`); a
/// server without that section is not.
fn cluster_enabled(conn: &mut redis::Connection) -> bool {
    redis::cmd("INFO")
        .arg("cluster")
        .query::<String>(conn)
        .is_ok_and(|s| s.contains("cluster_enabled:1"))
}

/// A connection to every master of the cluster that `seed` belongs to,
/// with `seed_info`'s credentials. Fails unless the cluster serves every
/// slot (a key on a slot without a master would be missed).
fn cluster_nodes(seed: &mut Node, seed_info: &ConnectionInfo) -> Result<Vec<Node>> {
    let address = seed.address.clone();
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query(&mut seed.conn)
        .map_err(|e| anyhow!("{address} is not a node of a Redis Cluster: {e}"))?;
    if !info.contains("cluster_state:ok") {
        bail!(
            "the cluster at {address} is not ok (CLUSTER INFO does not say cluster_state:ok): \
             some slots have no master, and their keys would be missed; run the import when \
             the cluster is ok"
        );
    }
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut seed.conn)
        .map_err(|e| anyhow!("Redis at {address}: CLUSTER NODES: {e}"))?;
    let masters = parse_masters(&text);
    if masters.is_empty() {
        bail!("the cluster at {address}: CLUSTER NODES lists no master serving slots");
    }
    masters
        .into_iter()
        .map(|(host, port)| {
            let mut info = seed_info.clone();
            let host = if host.is_empty() {
                match &seed_info.addr {
                    ConnectionAddr::Tcp(h, _) => h.clone(),
                    _ => host,
                }
            } else {
                host
            };
            info.addr = ConnectionAddr::Tcp(host, port);
            connect(&info)
        })
        .collect()
}

/// The `host:port` of each master that serves slots in a `CLUSTER NODES`
/// reply (not failed).
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

/// Walks one node with `SCAN` and imports each step's keys.
fn import_node(
    db: &Db,
    node: &mut Node,
    t: &mut Tally,
    pb: &Option<indicatif::ProgressBar>,
) -> Result<()> {
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .query(&mut node.conn)
            .map_err(|e| anyhow!("Redis at {}: SCAN: {e}", node.address))?;
        if !keys.is_empty() {
            import_keys(db, node, keys, t)?;
            if let Some(pb) = pb {
                pb.set_message(format!("imported {} keys", t.imported));
            }
        }
        if next == 0 {
            return Ok(());
        }
        cursor = next;
    }
}

/// Reads `keys` (value and expiry of each in one `MULTI`) and writes the
/// live strings among them in atomic batches.
fn import_keys(db: &Db, node: &mut Node, keys: Vec<Vec<u8>>, t: &mut Tally) -> Result<()> {
    let expiry_cmd = match node.expiry {
        ExpiryCmd::Pexpiretime => "PEXPIRETIME",
        ExpiryCmd::Pttl => "PTTL",
    };
    let mut packed = Vec::new();
    for k in &keys {
        redis::cmd("MULTI").write_packed_command(&mut packed);
        redis::cmd("GET").arg(k).write_packed_command(&mut packed);
        redis::cmd(expiry_cmd)
            .arg(k)
            .write_packed_command(&mut packed);
        redis::cmd("EXEC").write_packed_command(&mut packed);
    }
    let replies = node
        .conn
        .req_packed_commands(&packed, 0, 4 * keys.len())
        .map_err(|e| anyhow!("Redis at {}: reading keys: {e}", node.address))?;
    if replies.len() != 4 * keys.len() {
        bail!(
            "Redis at {}: {} replies to {} commands",
            node.address,
            replies.len(),
            4 * keys.len()
        );
    }
    let now = now_ms();
    let mut batch = Batch::new();
    let mut bytes = 0usize;
    let mut not_strings = Vec::new();
    for (k, r) in keys.into_iter().zip(replies.chunks(4)) {
        let (value, exp) = match read_reply(&node.address, &k, &r[3])? {
            Read::String(v, exp) => (v, exp),
            Read::Missing => {
                t.vanished += 1;
                continue;
            }
            Read::WrongType => {
                not_strings.push(k);
                continue;
            }
        };
        let at = match (exp, node.expiry) {
            (-1, _) => None,
            (e, ExpiryCmd::Pexpiretime) if e >= 0 => Some(e.unsigned_abs()),
            (e, ExpiryCmd::Pttl) if e >= 0 => Some(now.saturating_add(e.unsigned_abs())),
            // -2 beside a value cannot happen inside MULTI; treat as gone.
            _ => {
                t.vanished += 1;
                continue;
            }
        };
        let ttl = match at {
            Some(at) if at <= now => {
                t.expired += 1;
                continue;
            }
            // cairn keeps expiries up to 2^48 ms (the year 10889); Redis
            // allows later ones, which are as good as never.
            Some(at) => Some(Duration::from_millis(
                at.min(cairn::MAX_EXPIRY_MS).saturating_sub(now),
            )),
            None => None,
        };
        check_limits(&node.address, &k, &value)?;
        bytes += k.len() + value.len();
        batch.push_put(k, value, ttl);
        if bytes >= BATCH_BYTES {
            write(db, &mut batch, t)?;
            bytes = 0;
        }
    }
    write(db, &mut batch, t)?;
    count_types(node, not_strings, t)
}

/// What one key's `EXEC` said.
enum Read {
    /// A string and the expiry command's answer.
    String(Vec<u8>, i64),
    /// No such key any more.
    Missing,
    /// The key holds another type.
    WrongType,
}

/// Decodes the `EXEC` reply `[GET's, PEXPIRETIME's]` for `key`; a refused
/// transaction (a redirect while the cluster moves slots, an
/// out-of-memory refusal) is an error naming the key.
fn read_reply(address: &str, key: &[u8], exec: &Value) -> Result<Read> {
    let refused = |what: String| {
        anyhow!(
            "Redis at {address}: reading key \"{}\" failed: {what}; nothing after it was \
             imported (run the import again: keys already copied are overwritten)",
            shown(key)
        )
    };
    let Value::Array(items) = exec else {
        return Err(refused(match exec {
            e @ Value::ServerError(_) => server_error(e),
            other => format!("unexpected reply to EXEC: {}", kind(other)),
        }));
    };
    match items.as_slice() {
        [Value::BulkString(v), Value::Int(e)] => Ok(Read::String(v.clone(), *e)),
        [Value::Nil, _] => Ok(Read::Missing),
        [Value::ServerError(e), _] if e.code() == "WRONGTYPE" => Ok(Read::WrongType),
        [e @ Value::ServerError(_), _] | [_, e @ Value::ServerError(_)] => {
            Err(refused(server_error(e)))
        }
        _ => Err(refused(format!("unexpected reply to EXEC: {}", kind(exec)))),
    }
}

/// An error reply as the server sent it: its code and message.
fn server_error(v: &Value) -> String {
    match v {
        Value::ServerError(e) => match e.details() {
            Some(d) => format!("{} {d}", e.code()),
            None => e.code().to_string(),
        },
        other => kind(other),
    }
}

/// The shape of a reply, never its content (it may hold data).
fn kind(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("an array of {}", a.len()),
        Value::BulkString(b) => format!("a string of {} bytes", b.len()),
        Value::Int(_) => "an integer".into(),
        Value::Nil => "nil".into(),
        _ => "another type".into(),
    }
}

/// A key for a message: escaped, at most 100 bytes of it.
fn shown(key: &[u8]) -> String {
    let s = escape(&key[..key.len().min(100)]);
    if key.len() > 100 {
        format!("{s}… ({} bytes)", key.len())
    } else {
        s
    }
}

/// Fails for a key or value cairn cannot hold, naming the key.
fn check_limits(address: &str, key: &[u8], value: &[u8]) -> Result<()> {
    let (klim, vlim) = (
        cairn::MAX_KEY_BYTES as usize,
        cairn::MAX_VALUE_BYTES as usize,
    );
    if key.len() > klim || value.len() > vlim {
        bail!(
            "Redis at {address}: key \"{}\" ({} bytes, value {} bytes) is over cairn's limits \
             (keys up to {klim} bytes, values up to {vlim} bytes); the import stopped there",
            shown(key),
            key.len(),
            value.len()
        );
    }
    Ok(())
}

/// Writes `batch` (if not empty) as one atomic batch.
fn write(db: &Db, batch: &mut Batch, t: &mut Tally) -> Result<()> {
    if !batch.is_empty() {
        let n = batch.len() as u64;
        db.write_batch(std::mem::take(batch))?;
        t.imported += n;
    }
    Ok(())
}

/// Counts the keys that are not strings by their `TYPE` (one pipeline).
fn count_types(node: &mut Node, keys: Vec<Vec<u8>>, t: &mut Tally) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut p = redis::pipe();
    for k in &keys {
        p.cmd("TYPE").arg(k);
    }
    let types: Vec<String> = p
        .query(&mut node.conn)
        .map_err(|e| anyhow!("Redis at {}: TYPE: {e}", node.address))?;
    for ty in types {
        match ty.as_str() {
            // Deleted since, or a string now: it changed while we read.
            "none" | "string" => t.vanished += 1,
            _ => *t.other_types.entry(ty).or_default() += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn url_errors_never_quote_the_password() {
        for url in [
            "http://:hunter2@host:1",
            "redis://:hunter2@host:1/notanumber",
            "redis://:hunter2@:1",
        ] {
            let e = parse_url(url).expect_err(url).to_string();
            assert!(!e.contains("hunter2"), "{url}: {e}");
            assert!(e.contains("--from"), "{url}: {e}");
        }
        let info = parse_url("redis://:hunter2@10.0.0.5:6380/3").expect("parse");
        assert_eq!(addr_text(&info), "10.0.0.5:6380");
        assert_eq!(info.redis.db, 3);
    }

    #[test]
    fn an_exec_reply_is_read_by_shape() {
        let ok = Value::Array(vec![Value::BulkString(b"v".to_vec()), Value::Int(-1)]);
        assert!(matches!(read_reply("a", b"k", &ok), Ok(Read::String(v, -1)) if v == b"v"));
        let gone = Value::Array(vec![Value::Nil, Value::Int(-2)]);
        assert!(matches!(read_reply("a", b"k", &gone), Ok(Read::Missing)));
        let e = read_reply("a", b"k\x01", &Value::Int(3))
            .err()
            .expect("error");
        let e = e.to_string();
        assert!(e.contains("k\\x01") && e.contains("an integer"), "{e}");
    }
}
