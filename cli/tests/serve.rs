//! `cairn serve` as a process: the real binary on a free loopback port,
//! driven by the `redis` crate, killed with SIGKILL and stopped with
//! SIGTERM; its settings, config file, TLS and exit codes.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{code, p, stderr, text};

/// A running `cairn serve`.
struct Served {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `cairn serve <dir> --port 0 <args>` and waits for its
    /// listening line.
    fn start(dir: &Path, args: &[&str]) -> Served {
        Served::start_env(dir, args, &[])
    }

    fn start_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Served {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
        cmd.arg("serve").arg(dir).args(["--port", "0"]).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cairn serve");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let log2 = log.clone();
        std::thread::spawn(move || {
            while let Some(Ok(line)) = lines.next() {
                {
                    let mut l = log2.lock().expect("log");
                    l.push_str(&line);
                    l.push('\n');
                }
                if line.contains("listening on") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no listening line; stderr: {}", log.lock().expect("log")));
        let addr = line
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(',').parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Served { child, addr, log }
    }

    fn client(&self) -> redis::Connection {
        redis::Client::open(format!("redis://{}/", self.addr))
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect")
    }

    /// SIGKILL, and wait.
    fn kill9(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("wait");
    }

    /// SIGTERM; the exit status, within 30 s.
    fn term(mut self) -> (ExitStatus, String) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // waited for, so the pid is still its own.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill -TERM");
        let status = wait_for(&mut self.child, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
        let log = self.log.lock().expect("log").clone();
        (status, log)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("the server did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `cairn serve` with `args` that must fail at start: its output.
fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.arg("serve").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("cairn serve should have exited")
        .expect("output")
}

fn open_db0(dir: &Path) -> (cairn::Db, cairn::Db) {
    let root = cairn::Db::open(dir).expect("open the store");
    let db0 = root.keyspace("db0").expect("db0");
    (root, db0)
}

/// Kills the server with SIGKILL once the clients have had `at_least`
/// replies (counted in `acks`) and `then` more time has passed, so that
/// the kill lands mid-run however slow the machine is.
fn kill_after(server: Served, acks: &AtomicUsize, at_least: usize, then: Duration) {
    let start = Instant::now();
    while acks.load(Ordering::Relaxed) < at_least {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "only {} replies in 60 s",
            acks.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(then);
    server.kill9();
}

/// Several clients write in a loop, recording every write acknowledged,
/// until the server dies; returns (key, value) of each acknowledged SET
/// and, per client, the last acknowledged counter value.
fn write_until_killed(server: Served, round: usize, then: Duration) -> Vec<(String, String)> {
    let acks = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..4 {
        let mut c = server.client();
        let acks = acks.clone();
        threads.push(std::thread::spawn(move || {
            let mut acked = Vec::new();
            for i in 0.. {
                let key = format!("r{round}:t{t}:k{i}");
                let value = format!("v{i}");
                let r: redis::RedisResult<String> =
                    redis::cmd("SET").arg(&key).arg(&value).query(&mut c);
                match r {
                    Ok(s) if s == "OK" => acked.push((key, value)),
                    Ok(other) => panic!("SET replied {other}"),
                    Err(_) => break,
                }
                let counter = format!("r{round}:t{t}:last");
                let r: redis::RedisResult<String> =
                    redis::cmd("SET").arg(&counter).arg(i).query(&mut c);
                match r {
                    Ok(_) => acked.push((counter, i.to_string())),
                    Err(_) => break,
                }
                acks.fetch_add(2, Ordering::Relaxed);
            }
            acked
        }));
    }
    kill_after(server, &acks, 200, then);
    threads
        .into_iter()
        .flat_map(|t| t.join().expect("writer"))
        .collect()
}

/// kill -9 under `--sync always`: every SET a client saw `+OK` for is
/// there after the restart (the per-client counter key at least at its
/// last acknowledged value). Three rounds over the same store.
#[test]
fn kill_9_under_always_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let server = Served::start(dir.path(), &["--sync", "always"]);
        let acked = write_until_killed(
            server,
            round,
            Duration::from_millis(50 + 100 * round as u64),
        );
        assert!(
            acked.len() > 20,
            "round {round}: only {} writes acknowledged",
            acked.len()
        );
        let server = Served::start(dir.path(), &[]);
        let mut c = server.client();
        let mut last = std::collections::HashMap::<String, i64>::new();
        for (key, value) in &acked {
            if key.ends_with(":last") {
                let v: i64 = value.parse().expect("counter");
                let e = last.entry(key.clone()).or_insert(v);
                *e = (*e).max(v);
                continue;
            }
            let got: Option<String> = redis::cmd("GET").arg(key).query(&mut c).expect("get");
            assert_eq!(
                got.as_deref(),
                Some(value.as_str()),
                "round {round}: acknowledged {key} lost"
            );
        }
        for (key, v) in last {
            let got: Option<String> = redis::cmd("GET").arg(&key).query(&mut c).expect("get");
            let got: i64 = got.expect("counter key lost").parse().expect("int");
            assert!(
                got >= v,
                "round {round}: {key} is {got}, {v} was acknowledged"
            );
        }
        eprintln!(
            "round {round}: {} acknowledged writes all there",
            acked.len()
        );
        drop(c);
        let (status, log) = server.term();
        assert_eq!(status.code(), Some(0), "{log}");
    }
}

/// MULTI/EXEC blocks that write three keys of one suffix: after kill -9
/// and a restart, every block is whole or absent, and every acknowledged
/// block is whole.
#[test]
fn multi_exec_is_all_or_nothing_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let server = Served::start(dir.path(), &["--sync", "always"]);
        let acks = Arc::new(AtomicUsize::new(0));
        let mut threads = Vec::new();
        for t in 0..3 {
            let mut c = server.client();
            let acks = acks.clone();
            threads.push(std::thread::spawn(move || {
                let mut acked = 0usize;
                let mut tried = 0usize;
                for j in 0.. {
                    let s = format!("r{round}:t{t}:{j}");
                    tried = j + 1;
                    let r: redis::RedisResult<(String, String, String)> = redis::pipe()
                        .atomic()
                        .cmd("SET")
                        .arg(format!("a:{s}"))
                        .arg(&s)
                        .cmd("SET")
                        .arg(format!("b:{s}"))
                        .arg(&s)
                        .cmd("SET")
                        .arg(format!("c:{s}"))
                        .arg(&s)
                        .query(&mut c);
                    if r.is_err() {
                        break;
                    }
                    acked = j + 1;
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                (t, acked, tried)
            }));
        }
        kill_after(
            server,
            &acks,
            60,
            Duration::from_millis(50 + 100 * round as u64),
        );
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect();
        let server = Served::start(dir.path(), &[]);
        let mut c = server.client();
        let (mut whole, mut absent) = (0, 0);
        for (t, acked, tried) in results {
            for j in 0..tried + 1 {
                let s = format!("r{round}:t{t}:{j}");
                let got: Vec<Option<String>> = ["a", "b", "c"]
                    .iter()
                    .map(|p| {
                        redis::cmd("GET")
                            .arg(format!("{p}:{s}"))
                            .query(&mut c)
                            .expect("get")
                    })
                    .collect();
                let n = got
                    .iter()
                    .filter(|v| v.as_deref() == Some(s.as_str()))
                    .count();
                assert!(
                    n == 0 || n == 3,
                    "round {round}: block {s} is partly there: {got:?}"
                );
                if j < acked {
                    assert_eq!(n, 3, "round {round}: acknowledged block {s} lost");
                }
                if n == 3 {
                    whole += 1
                } else {
                    absent += 1
                }
            }
        }
        eprintln!("round {round}: {whole} blocks whole, {absent} absent");
        drop(c);
        assert_eq!(server.term().0.code(), Some(0));
    }
}

/// SIGTERM: exit 0, and the store reopens without recovery work (no torn
/// tail, no discarded batch, no leftover files) holding every write.
#[test]
fn sigterm_exits_0_and_leaves_a_clean_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Served::start(dir.path(), &["--sync", "everysec"]);
    let mut c = server.client();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut c)
            .expect("set");
    }
    // An idle client must not hold the shutdown.
    let _idle = server.client();
    let (status, log) = server.term();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // A clean close ends the active segment with two close marks (a
    // process killed instead leaves its last record last).
    let dump = common::cairn(&["dump", p(&dir.path().join("keyspaces/db0")), "--json"]);
    let lines: Vec<&str> = std::str::from_utf8(&dump.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    assert!(lines.len() > 500, "{}", text(&dump));
    for line in &lines[lines.len() - 2..] {
        assert!(
            line.contains(r#""kind":"sync-mark""#),
            "no close marks: {line}"
        );
    }
    let (root, db0) = open_db0(dir.path());
    for db in [&root, &db0] {
        let rep = db.recovery_report();
        assert_eq!(rep.truncated_tail, None, "{rep:?}");
        assert_eq!(rep.discarded_batch_records, 0, "{rep:?}");
        assert_eq!(rep.removed_temp_files, 0, "{rep:?}");
        assert!(
            rep.skipped.is_empty() && !rep.finished_compaction,
            "{rep:?}"
        );
    }
    for i in 0..500 {
        let v = db0.get(format!("k{i}").as_bytes()).expect("get");
        assert_eq!(v, Some(i.to_string().into_bytes()), "k{i}");
    }
}

#[test]
fn protected_mode_refuses_a_non_loopback_bind_without_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = serve_fails(&[p(dir.path()), "--bind", "0.0.0.0", "--port", "0"], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("0.0.0.0") && err.contains("--requirepass"),
        "{err}"
    );
    // Refused before the store was opened: nothing was created.
    assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 0);
}

#[test]
fn a_bad_config_file_exits_1_naming_the_setting_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("cairn.conf");
    for (body, names) in [
        ("port 0\nmaxmemory 1gb\n", ["line 2", "'maxmemory'"]),
        ("appendfsync sometimes\n", ["line 1", "'appendfsync'"]),
        ("maxclients many\n", ["line 1", "'maxclients'"]),
        ("requirepass \"open\n", ["line 1", "unbalanced quotes"]),
    ] {
        std::fs::write(&conf, body).expect("write");
        let out = serve_fails(&[p(dir.path()), "--config", p(&conf)], &[]);
        assert_eq!(code(&out), 1, "{body}: {}", text(&out));
        let err = stderr(&out);
        for n in names {
            assert!(
                err.contains(n) && err.contains("cairn.conf"),
                "{body}: {err}"
            );
        }
    }
    let out = serve_fails(&[p(dir.path()), "--sync", "sometimes"], &[]);
    assert_eq!(code(&out), 2, "{}", text(&out));
    let out = serve_fails(&[p(dir.path()), "--port", "0", "--tls-cert", p(&conf)], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stderr(&out).contains("--tls-key"), "{}", text(&out));
}

/// The file's settings apply, the flags override them, and the password
/// comes from the file or CAIRN_REQUIREPASS.
#[test]
fn the_config_file_and_the_environment_set_what_the_flags_leave() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("cairn.conf");
    // `port 1` would fail (privileged, or taken): --port 0 overrides it.
    std::fs::write(
        &conf,
        "# cairn\nport 1\nrequirepass \"from file\"\nsave \"\"\nappendonly yes\n",
    )
    .expect("write");
    let data = dir.path().join("data");
    let server = Served::start(&data, &["--config", p(&conf)]);
    let mut c = server.client();
    let e = redis::cmd("GET")
        .arg("k")
        .query::<Option<String>>(&mut c)
        .expect_err("noauth");
    assert!(e.to_string().contains("NOAUTH"), "{e}");
    let _: () = redis::cmd("AUTH")
        .arg("from file")
        .query(&mut c)
        .expect("auth");
    assert_eq!(server.term().0.code(), Some(0));

    let server = Served::start_env(
        &data,
        &["--config", p(&conf)],
        &[("CAIRN_REQUIREPASS", "from env")],
    );
    let mut c = server.client();
    assert!(redis::cmd("AUTH")
        .arg("from file")
        .query::<()>(&mut c)
        .is_err());
    let _: () = redis::cmd("AUTH")
        .arg("from env")
        .query(&mut c)
        .expect("auth");
    assert_eq!(server.term().0.code(), Some(0));
}

#[test]
fn a_port_in_use_or_a_locked_store_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Served::start(dir.path(), &[]);
    let port = server.addr.port().to_string();
    let other = tempfile::tempdir().expect("tempdir");
    let out = serve_fails(&[p(other.path()), "--port", &port], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(
        stderr(&out).contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{}",
        text(&out)
    );
    let out = serve_fails(&[p(dir.path()), "--port", "0"], &[]);
    assert_eq!(code(&out), 1, "{}", text(&out));
    assert!(stderr(&out).contains("locked"), "{}", text(&out));
    assert_eq!(server.term().0.code(), Some(0));
}

/// TLS with a self-signed certificate made by `openssl req`, through
/// `redis-cli --tls --cacert`; a plain-text client gets nothing.
#[test]
fn tls_serves_redis_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ])
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) is needed for this test");
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let data = dir.path().join("data");
    let server = Served::start(&data, &["--tls-cert", p(&cert), "--tls-key", p(&key)]);
    assert!(server.log.lock().expect("log").contains("with TLS"));
    let port = server.addr.port().to_string();
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args([
                "--tls",
                "--cacert",
                p(&cert),
                "-h",
                "127.0.0.1",
                "-p",
                &port,
            ])
            .args(args)
            .output()
            .expect("redis-cli (Debian's redis-tools) is needed for this test");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&["SET", "k", "over tls"]), "OK");
    assert_eq!(cli(&["GET", "k"]), "over tls");
    // Plain text on the TLS port gets no reply.
    let plain = server.client_plain_attempt();
    assert!(plain.is_err(), "a plain-text PING was answered: {plain:?}");
    assert_eq!(server.term().0.code(), Some(0));
}

impl Served {
    /// A PING in plain text: Ok(reply) if the server answered it.
    fn client_plain_attempt(&self) -> Result<String, String> {
        let mut c = redis::Client::open(format!("redis://{}/", self.addr))
            .map_err(|e| e.to_string())?
            .get_connection_with_timeout(Duration::from_secs(5))
            .map_err(|e| e.to_string())?;
        redis::cmd("PING")
            .query::<String>(&mut c)
            .map_err(|e| e.to_string())
    }
}

/// TTLs through restarts of the server process: SET with EX and PX, a
/// clean stop and a kill -9; remaining times go on counting down, expired
/// keys are gone, keys without a TTL keep none.
#[test]
fn ttls_go_on_through_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Served::start(dir.path(), &[]);
    let mut c = server.client();
    let set = |c: &mut redis::Connection, k: &str, opt: &[&str]| {
        let r: String = redis::cmd("SET")
            .arg(k)
            .arg("v")
            .arg(opt)
            .query(c)
            .expect("set");
        assert_eq!(r, "OK");
    };
    set(&mut c, "ex", &["EX", "100"]);
    set(&mut c, "px", &["PX", "10000"]);
    set(&mut c, "short", &["PX", "800"]);
    set(&mut c, "plain", &[]);
    let written = Instant::now();
    drop(c);
    assert_eq!(server.term().0.code(), Some(0));
    std::thread::sleep(Duration::from_millis(1200));

    let server = Served::start(dir.path(), &[]);
    let mut c = server.client();
    let pttl = |c: &mut redis::Connection, k: &str| -> i64 {
        redis::cmd("PTTL").arg(k).query(c).expect("pttl")
    };
    let ttl_ex: i64 = redis::cmd("TTL").arg("ex").query(&mut c).expect("ttl");
    assert!((95..=99).contains(&ttl_ex), "TTL ex = {ttl_ex}");
    let left = pttl(&mut c, "px");
    let most = 10_000 - i64::try_from(written.elapsed().as_millis()).expect("ms");
    assert!(left > 0 && left <= most, "PTTL px = {left}, at most {most}");
    assert_eq!(pttl(&mut c, "short"), -2, "an expired key came back");
    let got: Option<String> = redis::cmd("GET").arg("short").query(&mut c).expect("get");
    assert_eq!(got, None);
    assert_eq!(pttl(&mut c, "plain"), -1);
    drop(c);
    server.kill9();

    let server = Served::start(dir.path(), &[]);
    let mut c = server.client();
    let again = pttl(&mut c, "px");
    assert!(
        again <= left && again > 0,
        "PTTL px went from {left} to {again}"
    );
    assert!(pttl(&mut c, "ex") > 90_000);
    assert_eq!(pttl(&mut c, "plain"), -1);
    drop(c);
    assert_eq!(server.term().0.code(), Some(0));
}

/// kill -9 under `always` while clients INCR their own counters: each
/// counter is at least the last value a client was acknowledged, and at
/// most the number of INCRs it sent.
#[test]
fn kill_9_loses_no_acknowledged_incr() {
    let dir = tempfile::tempdir().expect("tempdir");
    for round in 0..3 {
        let server = Served::start(dir.path(), &["--sync", "always"]);
        let mut threads = Vec::new();
        let acks = Arc::new(AtomicUsize::new(0));
        for t in 0..4 {
            let mut c = server.client();
            let acks = acks.clone();
            threads.push(std::thread::spawn(move || {
                let key = format!("r{round}:n{t}");
                let (mut last, mut sent) = (0i64, 0i64);
                loop {
                    sent += 1;
                    match redis::cmd("INCR").arg(&key).query::<i64>(&mut c) {
                        Ok(v) => {
                            assert_eq!(v, last + 1, "{key}");
                            last = v;
                            acks.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => break,
                    }
                }
                (key, last, sent)
            }));
        }
        kill_after(
            server,
            &acks,
            200,
            Duration::from_millis(50 + 100 * round as u64),
        );
        let results: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("client"))
            .collect();
        let server = Served::start(dir.path(), &[]);
        let mut c = server.client();
        for (key, last, sent) in results {
            let got: Option<i64> = redis::cmd("GET").arg(&key).query(&mut c).expect("get");
            let got = got.unwrap_or(0);
            assert!(
                got >= last && got <= sent,
                "{key} = {got}: acknowledged {last}, sent {sent}"
            );
        }
        drop(c);
        assert_eq!(server.term().0.code(), Some(0));
    }
}

/// SHUTDOWN from a client: exit 0, the data durable.
#[test]
fn shutdown_from_a_client_exits_0_with_the_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Served::start(dir.path(), &["--sync", "no"]);
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut c)
        .expect("set");
    let _ = redis::cmd("SHUTDOWN").query::<()>(&mut c);
    let status = wait_for(&mut server.child, Duration::from_secs(30));
    assert_eq!(
        status.code(),
        Some(0),
        "{}",
        server.log.lock().expect("log")
    );
    drop(server);
    let (_root, db0) = open_db0(dir.path());
    assert_eq!(db0.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
}

/// Regression: the signal handlers were installed after the listening
/// line was printed, so a SIGTERM sent as soon as the server said it was
/// listening killed it with the default action (no clean close).
#[test]
fn sigterm_right_after_the_listening_line_is_a_clean_stop() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..10 {
        let server = Served::start(dir.path(), &[]);
        let (status, log) = server.term();
        assert_eq!(status.code(), Some(0), "{status:?}: {log}");
    }
}
