//! `cairn follow` against real servers: a writer (this process) runs random
//! puts, deletes, TTLs, expiry changes and batches on a store with a
//! keyspace, with a compaction in the middle, while the real `cairn follow`
//! copies it to a redis-server (and to a 3-master Redis Cluster); the
//! follower is killed with SIGKILL twice (once during its snapshot copy)
//! and started again. At the end (writer stopped, `follow --once`) the
//! server holds exactly the store: keys, values, expiries.
//!
//! `CAIRN_FOLLOW_TEST_SECS` sets how long the writer runs (default 10);
//! `CAIRN_FOLLOW_TEST_SEED` replays a run (the seed is printed).

#[path = "../../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn::{Batch, Db, Options};
use servers::{RedisCluster, RedisServer};

/// The keyspace the writer also writes to: named by a number, so it goes
/// to database 1 of a server (and under the prefix `1:` on a cluster).
const KEYSPACE: &str = "1";
/// Keys the writer uses per store.
const KEYS: u64 = 3000;
/// Keys in the store before the follower starts, so that its first
/// snapshot copy takes long enough to be killed in the middle.
const PREFILL: u64 = 40_000;

/// The tests that compare the whole database with the store after a
/// full resync give follow the database: only then does its clean-up
/// delete keys of the (unprefixed) root store the store does not have.
const OWNS: &[&str] = &["--owns-database"];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .expect("clock")
}

fn seed() -> u64 {
    let seed = std::env::var("CAIRN_FOLLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| now_ms() | 1);
    eprintln!("seed {seed} (CAIRN_FOLLOW_TEST_SEED={seed} replays it)");
    seed
}

fn write_secs() -> u64 {
    std::env::var("CAIRN_FOLLOW_TEST_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// A key of the writer: binary bytes in some, to check they travel.
fn key(i: u64) -> Vec<u8> {
    let mut k = format!("k{i:05}").into_bytes();
    if i.is_multiple_of(7) {
        k.extend_from_slice(&[0, 0xff, b'\n']);
    }
    k
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(200) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

/// One random operation on `db`.
fn random_op(db: &Db, rng: &mut Rng) {
    let k = key(rng.below(KEYS));
    match rng.below(100) {
        0..=49 => db.put(&k, value(rng)).expect("put"),
        50..=59 => {
            // Short TTLs expire during the run (the store's sweep reports
            // them); long ones stay.
            let ttl = if rng.below(2) == 0 {
                Duration::from_millis(500 + rng.below(3000))
            } else {
                Duration::from_secs(3600 + rng.below(3600))
            };
            db.put_with_ttl(&k, value(rng), ttl).expect("put_with_ttl");
        }
        60..=74 => {
            db.delete(&k).expect("delete");
        }
        75..=79 => {
            db.expire(&k, Duration::from_secs(1800 + rng.below(600)))
                .expect("expire");
        }
        80..=82 => {
            db.persist(&k).expect("persist");
        }
        _ => {
            let mut b = Batch::new();
            for _ in 0..2 + rng.below(8) {
                let k = key(rng.below(KEYS));
                b = match rng.below(3) {
                    0 => b.delete(&k),
                    1 => b.put_with_ttl(&k, value(rng), Duration::from_secs(3600)),
                    _ => b.put(&k, value(rng)),
                };
            }
            db.write_batch(b).expect("write_batch");
        }
    }
}

/// Opens the store as the application does: small segments (so that a
/// compaction removes some of the log), a fast expiry sweep.
fn open_writer(dir: &Path) -> Db {
    Options::new()
        .max_segment_bytes(512 * 1024)
        .expiry_sweep_interval_ms(200)
        .auto_compact(false)
        .open(dir)
        .expect("open store")
}

/// The writer: prefilled already; runs random operations on the root store
/// and the keyspace for `secs`, compacting in the middle.
fn run_writer(db: &Db, secs: u64, seed: u64, stop: &AtomicBool) -> u64 {
    let ks = db.keyspace(KEYSPACE).expect("keyspace");
    let mut rng = Rng(seed);
    let start = Instant::now();
    let (mut ops, mut compacted) = (0u64, false);
    while start.elapsed() < Duration::from_secs(secs) && !stop.load(Ordering::SeqCst) {
        let target = if rng.below(4) == 0 { &ks } else { db };
        random_op(target, &mut rng);
        ops += 1;
        if !compacted && start.elapsed() >= Duration::from_secs(secs) / 2 {
            db.compact().expect("compact");
            ks.compact().expect("compact keyspace");
            compacted = true;
            eprintln!("writer: compacted after {ops} operations");
        }
        if ops.is_multiple_of(20) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    assert!(compacted, "the writer ran too short to compact");
    ops
}

fn prefill(db: &Db, rng: &mut Rng) {
    let ks = db.keyspace(KEYSPACE).expect("keyspace");
    let mut b = Batch::new();
    for i in 0..PREFILL {
        // Keys outside the writer's range: they stay, unchanged.
        let k = format!("p{i:06}");
        b = b.put(k, value(rng));
        if b.len() == 1000 {
            db.write_batch(std::mem::take(&mut b)).expect("prefill");
        }
    }
    for i in 0..KEYS {
        ks.put(key(i), value(rng)).expect("prefill keyspace");
    }
}

/// A running `cairn follow` and what it printed on stderr.
struct Follower {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Follower {
    fn start(dir: &Path, url: &str, extra: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("follow")
            .arg(dir)
            .args(["--to", url, "--lag-every", "1s"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn follow");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  follow: {line}");
                sink.lock().expect("log").push(line);
            }
        });
        Follower { child, log }
    }

    /// Waits (up to 60 s) for a stderr line containing `what`.
    fn wait_for(&mut self, what: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if self
                .log
                .lock()
                .expect("log")
                .iter()
                .any(|l| l.contains(what))
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("cairn follow exited ({status}) before saying {what:?}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!("cairn follow did not say {what:?} within 60 s");
    }

    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM; it must exit 0.
    fn terminate(mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "follow after SIGTERM: {status}");
    }
}

/// Runs `cairn follow --once` to the end; it must exit 0.
fn follow_once(dir: &Path, url: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("follow")
        .arg(dir)
        .args(["--to", url, "--once"])
        .args(extra)
        .output()
        .expect("run cairn follow --once");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "follow --once: {}\n{err}", out.status);
    err
}

/// A store's live keys: value and expiry (unix ms), leaving out keys that
/// expire within `margin` of now (they may be gone on one side only).
type Contents = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn store_contents(db: &Db, margin_ms: u64) -> Contents {
    let mut keys = Vec::new();
    db.for_each_key("", |k, _| keys.push(k.to_vec()))
        .expect("keys");
    let soon = now_ms() + margin_ms;
    let mut out = BTreeMap::new();
    for k in keys {
        if let Some((v, exp)) = db.get_with_expiry(&k).expect("get") {
            if exp.is_none_or(|e| e > soon) {
                out.insert(k, (v, exp));
            }
        }
    }
    out
}

/// Every key of one server database (SCAN), with value and expiry,
/// leaving out the follower's own keys and keys that expire soon.
fn server_contents(con: &mut redis::Connection, margin_ms: u64, into: &mut Contents) {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(con).expect("KEYS");
    let soon = now_ms() + margin_ms;
    for k in keys {
        let own = [&b"cairn-follow:"[..], b"1:cairn-follow:"];
        if own.iter().any(|p| k.starts_with(p)) {
            continue;
        }
        let (v, exp): (Option<Vec<u8>>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&k)
            .cmd("PEXPIRETIME")
            .arg(&k)
            .query(con)
            .expect("GET, PEXPIRETIME");
        let Some(v) = v else { continue };
        let exp = u64::try_from(exp).ok();
        if exp.is_none_or(|e| e > soon) {
            into.insert(k, (v, exp));
        }
    }
}

/// Compares two contents, expiries within a second; panics with the
/// first differences.
fn assert_same(what: &str, db: &Db, store: &Contents, server: &Contents) {
    let mut diffs = Vec::new();
    let mut keys = Vec::new();
    for (k, (v, e)) in store {
        match server.get(k) {
            None => {
                keys.push(k.clone());
                diffs.push(format!("{k:?}: missing on the server"));
            }
            Some((sv, se)) => {
                if sv != v {
                    diffs.push(format!("{k:?}: value differs"));
                }
                let close = match (e, se) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.abs_diff(*b) <= 1000,
                    _ => false,
                };
                if !close || sv != v {
                    keys.push(k.clone());
                }
                if !close {
                    diffs.push(format!(
                        "{k:?}: expiry {e:?} in the store, {se:?} on the server"
                    ));
                }
            }
        }
    }
    for k in server.keys() {
        if !store.contains_key(k) {
            keys.push(k.clone());
            diffs.push(format!("{k:?}: on the server, not in the store"));
        }
    }
    if !keys.is_empty() {
        print_history(db, &keys[..keys.len().min(5)]);
    }
    assert!(
        diffs.is_empty(),
        "{what}: {} differences (store {} keys, server {}), first: {:#?}",
        diffs.len(),
        store.len(),
        server.len(),
        &diffs[..diffs.len().min(10)]
    );
}

/// Prints what the log still holds about `keys` (for a failure message).
fn print_history(db: &Db, keys: &[Vec<u8>]) {
    let Ok(mut feed) = db.changes(cairn::feed::FeedStart::Oldest) else {
        return;
    };
    while let Ok(Some(c)) = feed.try_next() {
        if c.key().is_some_and(|k| keys.iter().any(|x| x == k)) {
            eprintln!("history: {} {:?}", c.seq, c.kind);
        }
    }
}

/// The whole scenario against `url`; `read` gives the server's contents
/// of the root store and of the keyspace.
fn scenario(url: &str, read: &dyn Fn() -> (Contents, Contents)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let seed = seed();
    let mut rng = Rng(seed);
    let db = open_writer(&store);
    prefill(&db, &mut rng);

    // The first follower is killed during its snapshot copy.
    let mut f = Follower::start(&store, url, OWNS);
    f.wait_for("copying the snapshot at");
    std::thread::sleep(Duration::from_millis(rng.below(50)));
    let during_snapshot = !f
        .log
        .lock()
        .expect("log")
        .iter()
        .any(|l| l.contains("root store: snapshot copied"));
    f.kill9();
    assert!(
        during_snapshot,
        "the first follower finished its snapshot copy before the kill"
    );

    let stop = AtomicBool::new(false);
    let secs = write_secs();
    let writer_seed = rng.next();
    std::thread::scope(|s| {
        let writer = s.spawn(|| run_writer(&db, secs, writer_seed, &stop));
        // The second one is killed at a random moment while the writer runs.
        let mut f = Follower::start(&store, url, OWNS);
        f.wait_for("copied");
        std::thread::sleep(Duration::from_millis(500 + rng.below(secs * 400)));
        f.kill9();
        eprintln!("killed the follower while the writer runs");
        // The third runs until the writer stops, then gets SIGTERM.
        let f = Follower::start(&store, url, OWNS);
        let ops = writer.join().expect("writer");
        eprintln!("writer: {ops} operations in {secs} s");
        std::thread::sleep(Duration::from_millis(300));
        let lag_lines = f
            .log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains("; behind: ") && l.ends_with(" s"))
            .count();
        assert!(lag_lines > 0, "the follower printed no lag line");
        f.terminate();
    });
    drop(db);

    let log = follow_once(&store, url, OWNS);
    assert!(log.contains("caught up"), "{log}");
    let reader = Options::new()
        .snapshot(true)
        .open(&store)
        .expect("open the store");
    let (mut server_root, mut server_ks) = read();
    let mut root = store_contents(&reader, 0);
    let mut ks = store_contents(&reader.keyspace(KEYSPACE).expect("keyspace"), 0);
    // Keys that expire while the two sides are read may be gone on one
    // side only: leave out those expiring before the reads ended, plus 2 s.
    let cutoff = now_ms() + 2000;
    for c in [&mut server_root, &mut server_ks, &mut root, &mut ks] {
        c.retain(|_, (_, e)| e.is_none_or(|e| e > cutoff));
    }
    assert!(root.len() as u64 > PREFILL / 2, "{} keys", root.len());
    assert_same("root store", &reader, &root, &server_root);
    let ks_db = reader.keyspace(KEYSPACE).expect("keyspace");
    assert_same("keyspace", &ks_db, &ks, &server_ks);
}

#[test]
fn follow_copies_a_live_store_to_a_server_across_kills() {
    let server = RedisServer::start();
    let url = server.url();
    let client = redis::Client::open(url.as_str()).expect("client");
    scenario(&url, &|| {
        let mut con = client.get_connection().expect("connect");
        let mut root = Contents::new();
        server_contents(&mut con, 0, &mut root);
        redis::cmd("SELECT")
            .arg(1)
            .exec(&mut con)
            .expect("SELECT 1");
        let mut ks = Contents::new();
        server_contents(&mut con, 0, &mut ks);
        (root, ks)
    });
}

#[test]
fn follow_copies_a_live_store_to_a_cluster_across_kills() {
    let cluster = RedisCluster::start(3, 0);
    let urls = cluster.urls();
    scenario(&urls[0], &|| {
        let mut all = Contents::new();
        for u in &urls {
            let mut con = redis::Client::open(u.as_str())
                .and_then(|c| c.get_connection())
                .expect("connect to a node");
            server_contents(&mut con, 0, &mut all);
        }
        let prefix = format!("{KEYSPACE}:").into_bytes();
        let (ks, root): (Contents, Contents) =
            all.into_iter().partition(|(k, _)| k.starts_with(&prefix));
        let ks = ks
            .into_iter()
            .map(|(k, v)| (k[prefix.len()..].to_vec(), v))
            .collect();
        (root, ks)
    });
}

/// The server's keys of database `db` (no TTL check), the follower's own
/// keys left out.
fn server_db(url: &str, db: i64) -> Contents {
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    redis::cmd("SELECT").arg(db).exec(&mut con).expect("SELECT");
    let mut out = Contents::new();
    server_contents(&mut con, 0, &mut out);
    out
}

#[test]
fn follow_resyncs_and_removes_stale_keys_when_compaction_removed_its_position() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new()
        .max_segment_bytes(64 * 1024)
        .auto_compact(false)
        .open(&store)
        .expect("open");
    for i in 0..100 {
        db.put(format!("a{i:03}"), format!("v{i}")).expect("put");
    }
    follow_once(&store, &url, OWNS);
    assert_eq!(server_db(&url, 0).len(), 100);

    // Deletes, then enough writes to seal their segment, then a
    // compaction: the log no longer holds the changes after the position.
    for i in 0..50 {
        db.delete(format!("a{i:03}")).expect("delete");
    }
    for i in 0..2000 {
        db.put(format!("f{i:04}"), [b'x'; 100]).expect("put");
    }
    db.compact().expect("compact");
    let log = follow_once(&store, &url, OWNS);
    assert!(log.contains("full resync"), "{log}");
    assert!(log.contains("removed 50 keys"), "{log}");
    let reader = Options::new().snapshot(true).open(&store).expect("open");
    assert_same(
        "after the resync",
        &reader,
        &store_contents(&reader, 0),
        &server_db(&url, 0),
    );
}

#[test]
fn the_position_file_is_private_and_a_new_run_continues_from_it() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let pos = dir.path().join("follow.pos");
    let pos_arg = pos.to_str().expect("utf-8");
    let db = Options::new().open(&store).expect("open");
    db.put("a", "1").expect("put");
    db.put("b", "2").expect("put");
    follow_once(&store, &url, &["--position-file", pos_arg]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&pos)
        .expect("position file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&pos).expect("read");
    assert!(text.contains("root at "), "{text}");

    db.delete("a").expect("delete");
    db.put_with_ttl("c", "3", Duration::from_secs(600))
        .expect("put");
    let log = follow_once(&store, &url, &["--position-file", pos_arg]);
    assert!(log.contains("continuing after"), "{log}");
    let got = server_db(&url, 0);
    assert_eq!(
        got.keys().cloned().collect::<Vec<_>>(),
        [b"b".to_vec(), b"c".to_vec()]
    );
    let exp = got[&b"c".to_vec()].1.expect("c expires");
    assert!(exp.abs_diff(now_ms() + 600_000) < 5_000, "{exp}");
    // Nothing of the follower's own in the target.
    let mut con = redis::Client::open(url.as_str())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let own: Vec<String> = redis::cmd("KEYS")
        .arg("cairn-follow:*")
        .query(&mut con)
        .expect("KEYS");
    assert!(own.is_empty(), "{own:?}");
}

#[test]
fn a_keyspace_without_a_database_is_named_in_the_error() {
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    db.keyspace("sessions")
        .expect("keyspace")
        .put("k", "v")
        .expect("put");
    drop(db);
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("follow")
        .arg(&store)
        .args(["--to", &server.url(), "--once"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("\"sessions\"") && err.contains("--keyspace-db"),
        "{err}"
    );
    let ok = follow_once(&store, &server.url(), &["--keyspace-db", "sessions=4"]);
    assert!(ok.contains("caught up"), "{ok}");
    assert_eq!(server_db(&server.url(), 4).len(), 1);
}

#[test]
fn a_copy_killed_mid_snapshot_leaves_no_key_the_store_deleted_since() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = open_writer(&store);
    let mut rng = Rng(seed());
    let mut b = Batch::new();
    for i in 0..PREFILL {
        b = b.put(format!("p{i:06}"), value(&mut rng));
        if b.len() == 1000 {
            db.write_batch(std::mem::take(&mut b)).expect("prefill");
        }
    }
    let mut f = Follower::start(&store, &url, OWNS);
    f.wait_for("copying the snapshot at");
    std::thread::sleep(Duration::from_millis(150));
    f.kill9();
    let copied = server_db(&url, 0);
    assert!(
        !copied.is_empty() && (copied.len() as u64) < PREFILL,
        "the kill came outside the copy: {} keys copied",
        copied.len()
    );
    // Delete every key the interrupted copy wrote: the next snapshot does
    // not hold them, so only the changes in between can remove them.
    let mut b = Batch::new();
    for k in copied.keys() {
        b = b.delete(k);
    }
    db.write_batch(b).expect("delete");
    let log = follow_once(&store, &url, OWNS);
    assert!(log.contains("was interrupted"), "{log}");
    let reader = Options::new().snapshot(true).open(&store).expect("open");
    assert_same(
        "after the resumed copy",
        &reader,
        &store_contents(&reader, 0),
        &server_db(&url, 0),
    );
}

/// Sessions written on the embedded store, followed with `--modules`, are
/// found by `Sessions` on the RESP backend, on a server and on a cluster;
/// a revocation on the embedded store reaches the server through the feed.
fn sessions_cut_over(url: &str, cluster: bool) {
    use cairn::backend::resp::RespOptions;
    use cairn::backend::Store;
    use cairn::session::Sessions;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    db.put("plain", "raw").expect("put");
    let embedded = Sessions::new(Store::from(db.keyspace("sessions").expect("keyspace")));
    let hour = Duration::from_secs(3600);
    let ids: Vec<_> = (0..3)
        .map(|i| {
            embedded
                .create_for_user("ada", format!("ada-{i}"), hour)
                .expect("create")
        })
        .collect();
    let anon = embedded.create(b"anon", hour).expect("create");
    assert!(embedded.revoke(ids[0].as_str()).expect("revoke"));
    let modules = ["--modules", "sessions=sessions"];
    follow_once(&store, url, &modules);

    let backend = if cluster {
        RespOptions::cluster([url])
    } else {
        RespOptions::new(url)
    }
    .open()
    .expect("RESP backend");
    let remote = Sessions::new(Store::from(backend.namespace("sessions")));
    assert!(remote.get(ids[0].as_str()).expect("get").is_none());
    for (i, id) in ids.iter().enumerate().skip(1) {
        let s = remote
            .get(id.as_str())
            .expect("get")
            .expect("session copied");
        assert_eq!(s.user.as_deref(), Some("ada"));
        assert_eq!(s.data, format!("ada-{i}").into_bytes());
    }
    assert_eq!(remote.list_for_user("ada").expect("list").len(), 2);
    assert!(remote.get(anon.as_str()).expect("get").is_some());

    // After the first copy: a logout and a login on the embedded store.
    assert!(embedded.revoke(ids[1].as_str()).expect("revoke"));
    let new = embedded
        .create_for_user("ada", b"new", hour)
        .expect("create");
    let log = follow_once(&store, url, &modules);
    assert!(log.contains("continuing after"), "{log}");
    assert!(remote.get(ids[1].as_str()).expect("get").is_none());
    assert_eq!(
        remote.get(new.as_str()).expect("get").expect("new").data,
        b"new"
    );
    assert_eq!(remote.list_for_user("ada").expect("list").len(), 2);
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect");
    if !cluster {
        let plain: Option<String> = redis::cmd("GET").arg("plain").query(&mut con).expect("GET");
        assert_eq!(plain.as_deref(), Some("raw"));
    }
}

#[test]
fn sessions_followed_with_modules_are_found_by_the_resp_backend() {
    let server = RedisServer::start();
    sessions_cut_over(&server.url(), false);
    let cluster = RedisCluster::start(3, 0);
    sessions_cut_over(&cluster.urls()[0], true);
}

#[test]
fn a_second_follower_of_the_same_store_and_target_is_refused() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    db.put("a", "1").expect("put");
    let mut f = Follower::start(&store, &url, &[]);
    f.wait_for("snapshot copied");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .arg("follow")
        .arg(&store)
        .args(["--to", &url, "--once"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("another cairn follow"), "{err}");
    // Another name is another position: allowed.
    follow_once(&store, &url, &["--name", "second"]);
    f.kill9();
    // The lock goes with the process, also after SIGKILL.
    follow_once(&store, &url, &[]);
}

fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect")
}

/// Makes the next run copy a new snapshot and clean up, as after a
/// compaction that removed its position: the recorded `at <pos>` becomes
/// `snapshot <pos> clean` (an interrupted resync).
fn force_resync(con: &mut redis::Connection, position_key: &str) {
    let at: String = redis::cmd("GET")
        .arg(position_key)
        .query(con)
        .expect("GET position");
    let pos = at.strip_prefix("at ").expect("an \"at\" position");
    redis::cmd("SET")
        .arg(position_key)
        .arg(format!("snapshot {pos} clean"))
        .exec(con)
        .expect("SET position");
}

#[test]
fn a_resync_keeps_the_sessions_tag_salt_on_the_target() {
    use cairn::backend::resp::RespOptions;
    use cairn::backend::Store;
    use cairn::session::Sessions;
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    let embedded = Sessions::new(Store::from(db.keyspace("sessions").expect("keyspace")));
    let hour = Duration::from_secs(3600);
    let ids: Vec<_> = (0..2)
        .map(|i| {
            embedded
                .create_for_user("ada", format!("ada-{i}"), hour)
                .expect("create")
        })
        .collect();
    let modules = ["--modules", "sessions=sessions"];
    follow_once(&store, &url, &modules);
    let mut con = connect(&url);
    let salt: Option<Vec<u8>> = redis::cmd("GET")
        .arg("cairn:sessions:tag-salt")
        .query(&mut con)
        .expect("GET");
    assert!(salt.is_some(), "follow made the salt on the target");

    force_resync(&mut con, "cairn-follow:default:position:sessions");
    let log = follow_once(&store, &url, &modules);
    assert!(log.contains("copying the snapshot"), "{log}");
    let after: Option<Vec<u8>> = redis::cmd("GET")
        .arg("cairn:sessions:tag-salt")
        .query(&mut con)
        .expect("GET");
    assert_eq!(after, salt, "the resync must keep the salt");
    let backend = RespOptions::new(url.as_str()).open().expect("RESP backend");
    let remote = Sessions::new(Store::from(backend.namespace("sessions")));
    assert_eq!(remote.list_for_user("ada").expect("list").len(), 2);
    for id in &ids {
        assert!(remote.get(id.as_str()).expect("get").is_some());
    }
}

#[test]
fn a_resync_leaves_keys_follow_never_wrote() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    db.put("a", "1").expect("put");
    db.put("b", "2").expect("put");
    let mut con = connect(&url);
    redis::cmd("SET")
        .arg("other-app:x")
        .arg("theirs")
        .exec(&mut con)
        .expect("SET");
    let log = follow_once(&store, &url, &[]);
    assert!(log.contains("leaves the others"), "{log}");
    db.delete("a").expect("delete");

    // A resync of the unprefixed root store: the other app's key is
    // counted and left.
    force_resync(&mut con, "cairn-follow:default:position");
    let log = follow_once(&store, &url, &[]);
    assert!(log.contains("left 1 keys"), "{log}");
    assert!(log.contains("--owns-database"), "{log}");
    let got = server_db(&url, 0);
    assert_eq!(got[&b"other-app:x".to_vec()].0, b"theirs");
    assert!(got.contains_key(b"b".as_slice()));

    // Within --prefix the clean-up removes what the store lacks, and only
    // there.
    db.put("app:1", "x").expect("put");
    db.put("app:2", "y").expect("put");
    let prefix = ["--prefix", "app:", "--name", "p"];
    follow_once(&store, &url, &prefix);
    db.delete("app:1").expect("delete");
    redis::cmd("SET")
        .arg("app:zzz")
        .arg("stale")
        .exec(&mut con)
        .expect("SET");
    force_resync(&mut con, "cairn-follow:p:position");
    let log = follow_once(&store, &url, &prefix);
    assert!(log.contains("removed 1 keys"), "{log}");
    let got = server_db(&url, 0);
    assert!(!got.contains_key(b"app:1".as_slice()));
    assert!(!got.contains_key(b"app:zzz".as_slice()));
    assert!(got.contains_key(b"app:2".as_slice()));
    assert!(got.contains_key(b"other-app:x".as_slice()));

    // --owns-database: the whole database is the store's.
    force_resync(&mut con, "cairn-follow:default:position");
    let log = follow_once(&store, &url, OWNS);
    assert!(log.contains("removed 1 keys"), "{log}");
    let got = server_db(&url, 0);
    assert!(!got.contains_key(b"other-app:x".as_slice()));
    assert!(!got.contains_key(b"a".as_slice()));
    assert!(got.contains_key(b"b".as_slice()));
}

#[test]
fn the_password_comes_from_rediscli_auth() {
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let db = Options::new().open(&store).expect("open");
    db.put("k", "v").expect("put");
    let hour = Duration::from_secs(3600);
    let id = cairn::session::Sessions::new(cairn::backend::Store::from(
        db.keyspace("sessions").expect("keyspace"),
    ))
    .create_for_user("ada", b"x", hour)
    .expect("create");
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret")
        .exec(&mut connect(&url))
        .expect("CONFIG SET requirepass");
    let run = |auth: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("follow").arg(&store).args(["--to", &url, "--once"]);
        // The RESP backend of --modules takes the password too.
        c.args(["--modules", "sessions=sessions"]);
        c.env_remove("REDISCLI_AUTH");
        if let Some(pw) = auth {
            c.env("REDISCLI_AUTH", pw);
        }
        c.output().expect("run")
    };
    let out = run(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let out = run(Some("wrong"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        !err.contains("wrong"),
        "the password is never printed: {err}"
    );
    let out = run(Some("s3cret"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        !err.contains("s3cret"),
        "the password is never printed: {err}"
    );
    let authed = format!("redis://:s3cret@127.0.0.1:{}/", server.port());
    assert_eq!(server_db(&authed, 0)[&b"k".to_vec()].0, b"v");
    let backend = cairn::backend::resp::RespOptions::new(&authed)
        .open()
        .expect("RESP backend");
    let remote =
        cairn::session::Sessions::new(cairn::backend::Store::from(backend.namespace("sessions")));
    assert!(remote.get(id.as_str()).expect("get").is_some());
}

#[test]
fn a_planted_lock_file_is_refused() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let server = RedisServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("data");
    let locks = dir.path().join("run");
    std::fs::create_dir(&locks).expect("mkdir");
    let db = Options::new().open(&store).expect("open");
    db.put("k", "v").expect("put");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .arg("follow")
            .arg(&store)
            .args(["--to", &url, "--once"])
            .env("TMPDIR", &locks)
            .output()
            .expect("run")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<_> = std::fs::read_dir(&locks)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".lock"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let lock = &found[0];
    let meta = std::fs::metadata(lock).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // A symlink planted where the lock goes is never followed.
    let victim = dir.path().join("victim");
    std::fs::remove_file(lock).expect("rm");
    std::os::unix::fs::symlink(&victim, lock).expect("symlink");
    let out = run();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("lock file"), "{err}");
    assert!(!victim.exists(), "the symlink was followed");

    // A lock file another user made is refused.
    std::fs::remove_file(lock).expect("rm");
    std::fs::write(lock, b"").expect("write");
    let path = std::ffi::CString::new(lock.to_str().expect("utf-8")).expect("cstring");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // SAFETY: chown(2) of a file of this test, with a valid C string.
        assert_eq!(unsafe { libc::chown(path.as_ptr(), 65534, 65534) }, 0);
        assert_eq!(std::fs::metadata(lock).expect("meta").uid(), 65534);
        let out = run();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("not owned"), "{err}");
    }
}
