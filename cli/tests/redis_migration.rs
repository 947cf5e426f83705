//! Moving data between cairn and Redis with the real binaries:
//! `cairn export --format resp | redis-cli --pipe` into a real
//! `redis-server`, and `cairn import --from redis://…` from one (filled by
//! `redis-benchmark` and by scripts) and from a 3-master Redis Cluster.

mod common;
#[allow(dead_code)]
#[path = "../../tests/common/servers.rs"]
mod servers;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{code, p, stderr, text};
use redis::Commands;
use servers::{free_port, CairnServe, RedisCluster, RedisServer};

/// Keys, values and absolute expiries (unix ms).
type Data = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// Expiries may differ by this much (ms): the issue's "within a second".
const SLACK_MS: u64 = 1000;

fn cairn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn")
}

fn cairn_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run cairn")
}

/// `cairn <args> | redis-cli -p <port> --pipe`: cairn's output, and
/// redis-cli's.
fn export_pipe(args: &[&str], port: u16) -> (Output, Output) {
    let mut export = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn cairn export");
    let pipe = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--pipe"])
        .stdin(Stdio::from(export.stdout.take().expect("stdout")))
        .output()
        .expect("run redis-cli --pipe");
    (export.wait_with_output().expect("wait cairn"), pipe)
}

fn connect(port: u16, db: u32) -> redis::Connection {
    redis::Client::open(format!("redis://127.0.0.1:{port}/{db}"))
        .and_then(|c| c.get_connection())
        .expect("connect to redis-server")
}

/// Every string key of database `db` of the server on `port` with its
/// value and expiry.
fn redis_strings(port: u16, db: u32) -> Data {
    let mut c = connect(port, db);
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .arg("TYPE")
            .arg("string")
            .query(&mut c)
            .expect("SCAN");
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort();
    keys.dedup();
    let mut out = Data::new();
    for chunk in keys.chunks(1000) {
        let mut pipe = redis::pipe();
        for k in chunk {
            pipe.cmd("GET").arg(k).cmd("PEXPIRETIME").arg(k);
        }
        let replies: Vec<(Vec<u8>, i64)> = pipe.query(&mut c).expect("GET, PEXPIRETIME");
        for (k, (v, e)) in chunk.iter().zip(replies) {
            let exp = u64::try_from(e).ok();
            out.insert(k.clone(), (v, exp));
        }
    }
    out
}

/// Every live key of a cairn store (or of a handle to one) with its value
/// and expiry.
fn cairn_data(db: &cairn::Db) -> Data {
    let mut keys = Vec::new();
    db.for_each_key("", |k, _| keys.push(k.to_vec()))
        .expect("for_each_key");
    let mut out = Data::new();
    for k in keys {
        if let Some((v, e)) = db.get_with_expiry(&k).expect("get_with_expiry") {
            out.insert(k, (v, e));
        }
    }
    out
}

fn cairn_store(dir: &Path) -> Data {
    let db = cairn::Db::open(dir).expect("open store");
    let data = cairn_data(&db);
    db.close().expect("close");
    data
}

/// Asserts the same keys and values, and expiries within [`SLACK_MS`].
fn assert_same(what: &str, got: &Data, want: &Data) {
    let got_keys: Vec<_> = got.keys().collect();
    let want_keys: Vec<_> = want.keys().collect();
    if got_keys != want_keys {
        let missing: Vec<_> = want
            .keys()
            .filter(|k| !got.contains_key(*k))
            .take(5)
            .collect();
        let extra: Vec<_> = got
            .keys()
            .filter(|k| !want.contains_key(*k))
            .take(5)
            .collect();
        panic!(
            "{what}: {} keys, expected {}; missing e.g. {missing:?}, extra e.g. {extra:?}",
            got.len(),
            want.len()
        );
    }
    for (k, (v, e)) in want {
        let (gv, ge) = &got[k];
        assert!(
            gv == v,
            "{what}: value of {k:?} differs ({} bytes vs {})",
            gv.len(),
            v.len()
        );
        match (ge, e) {
            (None, None) => {}
            (Some(a), Some(b)) => assert!(
                a.abs_diff(*b) <= SLACK_MS,
                "{what}: expiry of {k:?}: {a} vs {b}"
            ),
            _ => panic!("{what}: expiry of {k:?}: {ge:?} vs {e:?}"),
        }
    }
}

/// A pseudo-random byte string (xorshift), so that large values are not
/// one repeated byte.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Fills `db` with binary keys and values: every byte value as a key and
/// as a value, an empty value, a key with CR LF, a 1 MiB value, keys with
/// TTLs, and one key that has already expired.
fn fill_binary(db: &cairn::Db, tag: &str) {
    let hour = Duration::from_secs(3600);
    for b in 0..=255u8 {
        let key = [tag.as_bytes(), &[b]].concat();
        if b % 3 == 0 {
            db.put_with_ttl(&key, [b], hour + Duration::from_secs(u64::from(b)))
                .expect("put");
        } else {
            db.put(&key, [b, b]).expect("put");
        }
    }
    db.put(format!("{tag}:empty"), b"").expect("put");
    if tag == "root" {
        db.put(b"", b"the empty key").expect("put");
    }
    db.put(format!("{tag}:crlf\r\n*1\r\n"), b"$-1\r\n")
        .expect("put");
    db.put(format!("{tag}:large"), noise(7, 1 << 20))
        .expect("put");
    db.put_with_ttl(format!("{tag}:soon"), b"x", Duration::from_millis(1))
        .expect("put");
    std::thread::sleep(Duration::from_millis(5));
}

#[test]
fn export_resp_loads_into_redis_with_every_byte_and_ttl_in_the_right_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    // The store stays open (and locked) in this "application" while the
    // export reads it.
    let app = cairn::Db::open(&data).expect("open");
    fill_binary(&app, "root");
    let numbered = app.keyspace("3").expect("keyspace 3");
    fill_binary(&numbered, "three");
    let sessions = app.keyspace("sessions").expect("keyspace sessions");
    sessions
        .put_with_ttl("s:1", "alice", Duration::from_secs(600))
        .expect("put");
    sessions.put("s:2", "bob").expect("put");
    app.keyspace("cache")
        .expect("keyspace cache")
        .put("page", "html")
        .expect("put");

    let server = RedisServer::start();
    let (export, pipe) = export_pipe(
        &[
            "export",
            p(&data),
            "--format",
            "resp",
            "--keyspace-db",
            "sessions=5",
            "--keyspace-db",
            "cache=skip",
        ],
        server.port(),
    );
    assert_eq!(code(&export), 0, "{}", text(&export));
    let pipe_out = String::from_utf8_lossy(&pipe.stdout);
    assert!(pipe.status.success(), "redis-cli --pipe: {}", text(&pipe));
    assert!(pipe_out.contains("errors: 0"), "{pipe_out}");
    let summary = stderr(&export);
    assert!(
        summary.contains("keyspace \"sessions\" -> database 5: 2 keys"),
        "{summary}"
    );

    assert_same(
        "database 0",
        &redis_strings(server.port(), 0),
        &cairn_data(&app),
    );
    assert_same(
        "database 3",
        &redis_strings(server.port(), 3),
        &cairn_data(&numbered),
    );
    assert_same(
        "database 5",
        &redis_strings(server.port(), 5),
        &cairn_data(&sessions),
    );
    for db in [1, 2, 4, 6] {
        assert!(redis_strings(server.port(), db).is_empty(), "database {db}");
    }
    // Sanity of the comparison itself: what was written is all there.
    let db0 = redis_strings(server.port(), 0);
    assert_eq!(
        db0.len(),
        256 + 4,
        "{:?}",
        db0.keys().take(3).collect::<Vec<_>>()
    );
    assert_eq!(db0[b"root:large".as_slice()].0.len(), 1 << 20);
    assert_eq!(db0[b"".as_slice()].0, b"the empty key");
    assert!(db0[b"root\x00".as_slice()].1.is_some());
    assert!(!db0.contains_key(b"root:soon".as_slice()));
    app.close().expect("close");
}

#[test]
fn export_resp_with_a_prefix_sends_only_those_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = cairn::Db::open(dir.path()).expect("open");
    db.put("user:1", "a").expect("put");
    db.put_with_ttl("user:2", "b", Duration::from_secs(60))
        .expect("put");
    db.put("order:1", "x").expect("put");
    db.keyspace("1")
        .expect("keyspace")
        .put("user:9", "z")
        .expect("put");
    db.keyspace("1")
        .expect("keyspace")
        .put("other", "z")
        .expect("put");
    db.close().expect("close");

    let server = RedisServer::start();
    let (export, pipe) = export_pipe(
        &[
            "export",
            p(dir.path()),
            "--format",
            "resp",
            "--prefix",
            "user:",
        ],
        server.port(),
    );
    assert_eq!(code(&export), 0, "{}", text(&export));
    assert!(pipe.status.success(), "{}", text(&pipe));
    let db0 = redis_strings(server.port(), 0);
    assert_eq!(
        db0.keys().collect::<Vec<_>>(),
        [b"user:1".as_slice(), b"user:2".as_slice()]
    );
    let db1 = redis_strings(server.port(), 1);
    assert_eq!(db1.keys().collect::<Vec<_>>(), [b"user:9".as_slice()]);
    // The JSON Lines export is unchanged by the new flags' existence.
    let json = cairn(&["export", p(dir.path()), "--prefix", "user:"]);
    assert_eq!(code(&json), 0, "{}", text(&json));
    assert_eq!(String::from_utf8_lossy(&json.stdout).lines().count(), 2);
}

#[test]
fn export_resp_refuses_a_keyspace_without_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = cairn::Db::open(dir.path()).expect("open");
    db.put("k", "v").expect("put");
    db.keyspace("cache")
        .expect("ks")
        .put("k", "v")
        .expect("put");
    db.keyspace("sessions")
        .expect("ks")
        .put("k", "v")
        .expect("put");
    db.keyspace("0").expect("ks").put("k", "v").expect("put");
    db.close().expect("close");
    let d = p(dir.path());

    let out = cairn(&["export", d, "--format", "resp", "--keyspace-db", "0=7"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        out.stdout.is_empty(),
        "nothing may reach stdout: {}",
        text(&out)
    );
    let err = stderr(&out);
    for needle in ["\"cache\"", "\"sessions\"", "--keyspace-db"] {
        assert!(err.contains(needle), "{needle}: {err}");
    }

    // Keyspace "0" and the root store both hold keys: database 0 twice.
    let out = cairn(&[
        "export",
        d,
        "--format",
        "resp",
        "--keyspace-db",
        "cache=1",
        "--keyspace-db",
        "sessions=2",
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("the root store and keyspace \"0\" would both go to Redis database 0"),
        "{err}"
    );

    let out = cairn(&["export", d, "--format", "resp", "--keyspace-db", "nope=1"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        stderr(&out).contains("no keyspace \"nope\""),
        "{}",
        text(&out)
    );

    let out = cairn(&["export", d, "--keyspace-db", "cache=1"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stderr(&out).contains("--format resp"), "{}", text(&out));

    for bad in ["cache", "cache=x", "=1", "cache=-1"] {
        let out = cairn(&["export", d, "--format", "resp", "--keyspace-db", bad]);
        assert_eq!(code(&out), 2, "{bad}: {}", text(&out));
    }

    let out = cairn(&[
        "export",
        d,
        "--format",
        "resp",
        "--keyspace-db",
        "cache=skip",
        "--keyspace-db",
        "sessions=2",
        "--keyspace-db",
        "0=3",
    ]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let select = |n: &str| format!("*2\r\n$6\r\nSELECT\r\n${}\r\n{n}\r\n", n.len());
    let stdout = String::from_utf8_lossy(&out.stdout);
    for n in ["0", "2", "3"] {
        assert!(stdout.contains(&select(n)), "SELECT {n}: {stdout:?}");
    }
    assert!(!stdout.contains(&select("1")), "{stdout:?}");
}

/// Writes binary keys, TTLs, keys about to expire and keys of other types
/// into database `db` of the server on `port`.
fn fill_redis(port: u16, db: u32) {
    let mut c = connect(port, db);
    let mut pipe = redis::pipe();
    let now = servers_now_ms();
    for b in 0..=255u8 {
        let key = [b"bin:".as_slice(), &[b, b'\r', b'\n', b]].concat();
        let value = [&[b][..], b"\x00\r\n", &[b]].concat();
        match b % 4 {
            0 => pipe
                .cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PX")
                .arg(3_600_000),
            1 => pipe
                .cmd("SET")
                .arg(&key)
                .arg(&value)
                .arg("PXAT")
                .arg(now + 86_400_000 + u64::from(b)),
            _ => pipe.cmd("SET").arg(&key).arg(&value),
        };
    }
    pipe.cmd("SET").arg(b"empty".as_slice()).arg(b"".as_slice());
    pipe.cmd("SET")
        .arg(b"".as_slice())
        .arg(b"the empty key".as_slice());
    pipe.cmd("SET")
        .arg(b"large".as_slice())
        .arg(noise(3, 1 << 20));
    pipe.cmd("SET").arg("gone-soon").arg("x").arg("PX").arg(1);
    pipe.cmd("HSET").arg("a:hash").arg("f").arg("v");
    pipe.cmd("RPUSH").arg("a:list").arg("x").arg("y");
    pipe.cmd("SADD").arg("a:set").arg("m");
    pipe.cmd("ZADD").arg("a:zset").arg(1).arg("m");
    pipe.cmd("XADD").arg("a:stream").arg("*").arg("f").arg("v");
    pipe.cmd("HSET").arg("b:hash").arg("f").arg("v");
    let _: Vec<redis::Value> = pipe.query(&mut c).expect("fill");
    std::thread::sleep(Duration::from_millis(20));
}

fn servers_now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

#[test]
fn import_copies_a_benchmark_and_binary_keys_with_ttls_and_skips_other_types() {
    let server = RedisServer::start();
    let port = server.port().to_string();
    let bench = Command::new("redis-benchmark")
        .args([
            "-p", &port, "-t", "set", "-n", "20000", "-r", "100000", "-d", "100", "-q",
        ])
        .output()
        .expect("run redis-benchmark");
    assert!(bench.status.success(), "redis-benchmark: {}", text(&bench));
    fill_redis(server.port(), 0);
    // Another database, which the import of database 0 must not read.
    connect(server.port(), 2)
        .set::<_, _, ()>("only-in-2", "x")
        .expect("set");

    let want = redis_strings(server.port(), 0);
    assert!(
        want.len() > 15_000,
        "redis-benchmark wrote {} keys",
        want.len()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = cairn(&["import", p(&data), "--from", &server.url()]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("imported {} string keys", want.len())),
        "{err}"
    );
    assert!(
        err.contains("skipped 6 keys that are not strings") && err.contains("hash 2"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out));
    let got = cairn_store(&data);
    assert_same("store after import", &got, &want);
    assert!(got.contains_key(b"bin:\x00\r\n\x00".as_slice()));
    assert!(!got.contains_key(b"gone-soon".as_slice()));
    assert_eq!(got[b"".as_slice()].0, b"the empty key");
    assert_eq!(got[b"large".as_slice()].0.len(), 1 << 20);

    // Database 2 alone, into another store.
    let other = dir.path().join("two");
    let out = cairn(&["import", p(&other), "--from", &format!("{}2", server.url())]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_same(
        "database 2",
        &cairn_store(&other),
        &redis_strings(server.port(), 2),
    );
    assert_eq!(cairn_store(&other).len(), 1);
}

/// A `redis-server` started with extra arguments, killed when dropped.
struct CustomRedis {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CustomRedis {
    fn start(extra: &[&str]) -> CustomRedis {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--bind", "127.0.0.1"])
            .args(extra)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let start = std::time::Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        CustomRedis {
            child,
            port,
            _dir: dir,
        }
    }
}

impl Drop for CustomRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn import_falls_back_to_pttl_on_a_server_without_pexpiretime() {
    let server = CustomRedis::start(&["--rename-command", "PEXPIRETIME", ""]);
    let mut c = connect(server.port, 0);
    let mut want = Data::new();
    let now = servers_now_ms();
    for i in 0..50u64 {
        let key = format!("k{i}").into_bytes();
        let at = now + 60_000 + i * 1000;
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .arg("PXAT")
            .arg(at)
            .query(&mut c)
            .expect("set");
        want.insert(key, (i.to_string().into_bytes(), Some(at)));
    }
    let _: () = c.set("forever", "f").expect("set");
    want.insert(b"forever".to_vec(), (b"f".to_vec(), None));
    let no_cmd = redis::cmd("PEXPIRETIME").arg("k1").query::<i64>(&mut c);
    assert!(no_cmd.is_err(), "PEXPIRETIME should be gone: {no_cmd:?}");

    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("redis://127.0.0.1:{}", server.port);
    let out = cairn(&["import", p(dir.path()), "--from", &url]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_same("store after a PTTL import", &cairn_store(dir.path()), &want);
}

#[test]
fn import_with_a_password_never_prints_it_and_names_the_address() {
    let server = CustomRedis::start(&["--requirepass", "s3cret-pw"]);
    let mut c = redis::Client::open(format!("redis://:s3cret-pw@127.0.0.1:{}/", server.port))
        .and_then(|c| c.get_connection())
        .expect("connect");
    let _: () = c.set("k", "v").expect("set");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = p(dir.path());
    let addr = format!("127.0.0.1:{}", server.port);

    let out = cairn(&["import", d, "--from", &format!("redis://:s3cret-pw@{addr}")]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert!(!text(&out).contains("s3cret"), "{}", text(&out));
    assert_eq!(cairn_store(dir.path()).len(), 1);

    let out = cairn(&["import", d, "--from", &format!("redis://:wrong-pw@{addr}")]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let all = text(&out);
    assert!(all.contains(&addr) && !all.contains("wrong-pw"), "{all}");

    let out = cairn_env(
        &["import", d, "--from", &format!("redis://{addr}")],
        &[("REDISCLI_AUTH", "s3cret-pw")],
    );
    assert_eq!(code(&out), 0, "{}", text(&out));

    let closed = free_port();
    let out = cairn(&[
        "import",
        d,
        "--from",
        &format!("redis://:pw@127.0.0.1:{closed}"),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let all = text(&out);
    assert!(all.contains(&format!("127.0.0.1:{closed}")), "{all}");
    assert!(!all.contains(":pw@"), "{all}");

    // A connection failure creates no store.
    let fresh = dir.path().join("fresh");
    let out = cairn(&[
        "import",
        p(&fresh),
        "--from",
        &format!("redis://127.0.0.1:{closed}"),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(!fresh.exists());

    let out = cairn(&["import", d, "--from", "http://:pw@x:1"]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stderr(&out).contains("redis://") && !text(&out).contains("pw@"));
}

#[test]
fn import_from_a_three_master_cluster_copies_every_master() {
    let cluster = RedisCluster::start(3, 0);
    let urls = cluster.urls();
    let client = redis::cluster::ClusterClient::new(urls.clone()).expect("cluster client");
    let mut c = client.get_connection().expect("cluster connection");
    let now = servers_now_ms();
    let mut want = Data::new();
    for i in 0..3000u64 {
        let key = [b"key".as_slice(), &i.to_be_bytes()].concat();
        let value = noise(i, (i % 200) as usize);
        let at = (i % 3 == 0).then_some(now + 3_600_000 + i);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(&value);
        if let Some(at) = at {
            cmd.arg("PXAT").arg(at);
        }
        let _: () = cmd.query(&mut c).expect("set");
        want.insert(key, (value, at));
    }
    for i in 0..10 {
        let _: () = redis::cmd("HSET")
            .arg(format!("hash{i}"))
            .arg("f")
            .arg("v")
            .query(&mut c)
            .expect("hset");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    // The cluster is detected from one node's URL.
    let out = cairn(&["import", p(dir.path()), "--from", &urls[1]]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("imported 3000 string keys") && err.contains("3 masters"),
        "{err}"
    );
    assert!(
        err.contains("skipped 10 keys that are not strings: hash 10"),
        "{err}"
    );
    assert_same(
        "store after a cluster import",
        &cairn_store(dir.path()),
        &want,
    );

    // A cluster has database 0 only.
    let out = cairn(&[
        "import",
        p(dir.path()),
        "--cluster",
        "--from",
        &format!("{}1", urls[0]),
    ]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stderr(&out).contains("only database 0"), "{}", text(&out));
}

#[test]
fn a_store_goes_through_cairn_serve_and_back_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let db = cairn::Db::open(&data).expect("open");
    fill_binary(&db, "x");
    let want = cairn_data(&db);
    db.close().expect("close");

    let serve = CairnServe::start();
    let (export, pipe) = export_pipe(&["export", p(&data), "--format", "resp"], serve.port());
    assert_eq!(code(&export), 0, "{}", text(&export));
    assert!(
        String::from_utf8_lossy(&pipe.stdout).contains("errors: 0"),
        "{}",
        text(&pipe)
    );
    let back = dir.path().join("back");
    let out = cairn(&["import", p(&back), "--from", &serve.url()]);
    assert_eq!(code(&out), 0, "{}", text(&out));
    assert_same("store after cairn serve", &cairn_store(&back), &want);
}
