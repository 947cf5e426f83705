//! Real Redis-protocol servers for the tests: `redis-server`, a Redis
//! Cluster of them, and the `cairn serve` binary. Each runs as a child
//! process on a free loopback port in its own temporary directory and is
//! killed (by pid) when dropped. They speak to the servers over plain
//! TCP, so any test binary can use them, with or without the `redis`
//! feature.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a server may take to answer after it starts.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A free loopback port (bound and released: another process could take
/// it in between, which the start-up check would then report).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A free port `p` whose cluster bus port `p + 10000` is free too.
fn free_cluster_port() -> u16 {
    loop {
        let p = free_port();
        if p <= 55_535 && TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

/// Sends one command to `127.0.0.1:port` and returns its reply as text
/// (`+OK`'s `OK`, a bulk string, an integer, or `Err` with an error
/// reply or a network error).
pub fn command(port: u16, args: &[&str]) -> Result<String, String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let line = line.trim_end();
    match line.split_at(line.len().min(1)) {
        ("+", rest) | (":", rest) => Ok(rest.to_owned()),
        ("-", rest) => Err(rest.to_owned()),
        ("$", n) => {
            let n: usize = n.parse().map_err(|_| format!("bad reply {line:?}"))?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf).map_err(|e| e.to_string())?;
            buf.truncate(n);
            String::from_utf8(buf).map_err(|e| e.to_string())
        }
        _ => Err(format!("unexpected reply {line:?}")),
    }
}

/// Polls `ok` every 50 ms until it holds, or panics after `limit` with
/// `what` and the last state it saw.
fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> Result<(), String>) {
    let start = Instant::now();
    loop {
        match ok() {
            Ok(()) => return,
            Err(e) if start.elapsed() > limit => {
                panic!("{what}: still not ready after {limit:?}: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn kill(child: &mut Child) {
    // Child::kill is SIGKILL to this child's own pid.
    let _ = child.kill();
    let _ = child.wait();
}

/// The last lines of a server's log, for a panic message.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Makes sure Debian's `redis-server` and `redis-cli` are on PATH: when
/// one is missing, installs them once with `apt-get` (as `.ci/run` does),
/// so that the README's test command passes on a fresh Debian machine.
/// If that is impossible (not Debian, not root), the start fails with the
/// command to run.
fn ensure_redis_installed() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let found = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    ONCE.call_once(|| {
        if found("redis-server") && found("redis-cli") {
            return;
        }
        eprintln!("redis-server is missing: installing Debian's (apt-get install -y redis-server)");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !apt(&["install", "-y", "redis-server"]) {
            let _ = apt(&["update"]);
            let _ = apt(&["install", "-y", "redis-server"]);
        }
    });
}

/// Starts `redis-server` on `port` in `dir` with `extra` arguments.
fn spawn_redis(dir: &Path, port: u16, extra: &[&str]) -> Child {
    ensure_redis_installed();
    let log = std::fs::File::create(dir.join("redis.log")).expect("create redis.log");
    let port_s = port.to_string();
    let mut args = vec![
        "--port",
        &port_s,
        "--save",
        "",
        "--appendonly",
        "no",
        "--bind",
        "127.0.0.1",
        "--daemonize",
        "no",
    ];
    args.extend_from_slice(extra);
    match Command::new("redis-server")
        .args(&args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup log"))
        .stderr(log)
        .spawn()
    {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "redis-server is not on PATH: install it (`apt-get install -y redis-server`); \
             CI installs it"
        ),
        Err(e) => panic!("cannot start redis-server: {e}"),
    }
}

/// Waits until the server on `port` answers PING, or panics with its log.
fn wait_ping(child: &mut Child, port: u16, log: &Path) {
    wait_until(START_LIMIT, &format!("server on port {port}"), || {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "server on port {port} exited ({status}):\n{}",
                log_tail(log)
            );
        }
        command(port, &["PING"]).map(|_| ())
    });
}

/// A `redis-server` on a free loopback port.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one and waits until it answers PING.
    pub fn start() -> RedisServer {
        RedisServer::start_on(free_port())
    }

    /// Starts one on `port` (e.g. the port of one that was stopped).
    pub fn start_on(port: u16) -> RedisServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = spawn_redis(dir.path(), port, &[]);
        wait_ping(&mut child, port, &dir.path().join("redis.log"));
        RedisServer {
            child,
            port,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// One node of a [`RedisCluster`].
struct Node {
    port: u16,
    child: Option<Child>,
    dir: PathBuf,
}

/// A Redis Cluster of `redis-server`s on free loopback ports.
pub struct RedisCluster {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each,
    /// creates the cluster with `redis-cli --cluster create`, and waits
    /// until every node says `cluster_state:ok`.
    pub fn start(masters: usize, replicas_per_master: usize) -> RedisCluster {
        assert!(masters >= 3, "a Redis Cluster needs at least 3 masters");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut nodes = Vec::new();
        for i in 0..masters * (1 + replicas_per_master) {
            let ndir = dir.path().join(format!("node{i}"));
            std::fs::create_dir(&ndir).expect("mkdir node");
            let port = free_cluster_port();
            let conf = ndir.join("nodes.conf");
            let conf = conf.to_str().expect("utf-8 path");
            let mut child = spawn_redis(
                &ndir,
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf,
                    "--cluster-node-timeout",
                    "1000",
                ],
            );
            wait_ping(&mut child, port, &ndir.join("redis.log"));
            nodes.push(Node {
                port,
                child: Some(child),
                dir: ndir,
            });
        }
        let cluster = RedisCluster { nodes, _dir: dir };
        let addrs: Vec<String> = cluster
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args([
                "--cluster-replicas",
                &replicas_per_master.to_string(),
                "--cluster-yes",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("redis-cli (`apt-get install -y redis-server`): {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster.wait_ok();
        cluster
    }

    /// `redis://127.0.0.1:<port>/` of every node started (masters and
    /// replicas; killed ones included).
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}/", n.port))
            .collect()
    }

    /// The ports of the live masters serving slots, lowest first.
    fn master_ports(&self) -> Vec<u16> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            if let Ok(text) = command(n.port, &["CLUSTER", "NODES"]) {
                let mut ports: Vec<u16> = text
                    .lines()
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split_whitespace().collect();
                        let flags = f.get(2)?;
                        let master = flags.split(',').any(|x| x == "master");
                        let failed = flags.split(',').any(|x| x == "fail" || x == "fail?");
                        if !master || failed || f.len() < 9 {
                            return None;
                        }
                        f.get(1)?
                            .split('@')
                            .next()?
                            .rsplit_once(':')?
                            .1
                            .parse()
                            .ok()
                    })
                    .collect();
                ports.sort_unstable();
                return ports;
            }
        }
        panic!("no cluster node answers CLUSTER NODES")
    }

    /// Kills (SIGKILL) the `i`-th live master (by port order); its
    /// replica, if any, takes over after the node timeout (1 s).
    pub fn kill_master(&mut self, i: usize) {
        let ports = self.master_ports();
        let port = *ports
            .get(i)
            .unwrap_or_else(|| panic!("no master {i} among {ports:?}"));
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("master is ours");
        if let Some(mut c) = node.child.take() {
            kill(&mut c);
        }
    }

    /// Waits (up to 60 s) until every live node says `cluster_state:ok`
    /// and every live replica's link to its master is up (so a master's
    /// writes reach its replica, which can then take over).
    pub fn wait_ok(&self) {
        wait_until(Duration::from_secs(60), "cluster_state:ok", || {
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                let info = command(n.port, &["CLUSTER", "INFO"])?;
                if !info.contains("cluster_state:ok") {
                    return Err(format!(
                        "node {} says {:?}; log:\n{}",
                        n.port,
                        info.lines().next().unwrap_or(""),
                        log_tail(&n.dir.join("redis.log"))
                    ));
                }
                let repl = command(n.port, &["INFO", "replication"])?;
                if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                    return Err(format!("replica {} is not in sync with its master", n.port));
                }
            }
            Ok(())
        });
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                kill(c);
            }
        }
    }
}

/// The `cairn` binary: next to the test executable's directory, or built
/// once (`cargo build -p cairn-cli --bin cairn`) into the same target
/// directory.
pub fn cairn_binary() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = built.as_ref() {
        return p.clone();
    }
    let exe = std::env::current_exe().expect("current_exe");
    // …/target/<profile>/deps/<test> → …/target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let candidates = [
        profile_dir.join("cairn"),
        target_dir.join("debug").join("cairn"),
    ];
    let found = candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "-p", "cairn-cli", "--bin", "cairn"])
                .env("CARGO_TARGET_DIR", &target_dir)
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(
                status.success(),
                "cargo build -p cairn-cli --bin cairn failed"
            );
            candidates
                .iter()
                .find(|p| p.is_file())
                .cloned()
                .unwrap_or_else(|| panic!("no cairn binary in {candidates:?} after building it"))
        });
    *built = Some(found.clone());
    found
}

/// The real `cairn serve` on a free loopback port.
pub struct CairnServe {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl CairnServe {
    /// Starts `cairn serve <tmpdir> --port <free>` and waits until it
    /// answers PING.
    pub fn start() -> CairnServe {
        CairnServe::start_on(free_port())
    }

    /// Starts one on `port` (e.g. the port of one that was stopped), on
    /// a new, empty directory.
    pub fn start_on(port: u16) -> CairnServe {
        let bin = cairn_binary();
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("serve.log");
        let log = std::fs::File::create(&log_path).expect("create serve.log");
        let mut child = Command::new(&bin)
            .arg("serve")
            .arg(dir.path().join("data"))
            .args(["--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        wait_ping(&mut child, port, &log_path);
        CairnServe {
            child,
            port,
            _dir: dir,
        }
    }

    /// `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for CairnServe {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}
