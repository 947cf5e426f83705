//! cairn-compare: runs the same workloads against cairn and its peers, in
//! the same run, interleaved, and writes a report with tables and plots.
//!
//! ```text
//! cargo run --release -- run [--keys 1000000] [--reps 3] [--secs 5]
//!     [--peers cairn,redb,...] [--workloads load,get_uniform,...]
//!     [--keys-10m 10000000 | --keys-10m 0] [--out results]
//! cargo run --release -- report results/<run>/results.jsonl results/<run>
//! cargo run --release -- scale [--keys 1000000,10000000,100000000]
//!     [--peers cairn,lmdb,redb,fjall] [--reps 3] [--out results-scale]
//!     [--max-load-secs 1200] [--kill-write-secs 10] [--timeout-secs 1800]
//!     [--keep-page-cache]
//! cargo run --release -- scale-report results-scale/<run>/results.jsonl
//! ```
//!
//! `scale` (see `scale.rs`) times opens with the page cache dropped, after
//! a clean close and after kill -9 under write load, at each key count.
//!
//! Each (peer, workload, repetition) runs in its own child process, so that
//! one store's memory and caches never count against another. Within a
//! repetition the workloads run in turn, and for each workload every peer
//! runs once, in an order rotated from one repetition to the next.

mod clock;
mod gen;
mod limits;
mod peers;
mod redis_server;
mod report;
mod result;
mod scale;
mod scale_report;
mod store;
mod workload;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use redis_server::RedisServer;
use result::{disk_usage, proc_status_kb, RunResult};
use workload::{Spec, ON_FRESH, ON_LOADED};

struct Args {
    keys: u64,
    keys_10m: u64,
    reps: u32,
    secs: f64,
    peers: Vec<String>,
    workloads: Vec<String>,
    out: PathBuf,
    timeout: Duration,
}

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        keys: 1_000_000,
        keys_10m: 10_000_000,
        reps: 3,
        secs: 5.0,
        peers: Vec::new(),
        workloads: Vec::new(),
        out: PathBuf::from("results"),
        timeout: Duration::from_secs(1800),
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: String| {
            s.parse::<f64>()
                .map_err(|_| format!("{flag}: not a number: {s}"))
        };
        match flag.as_str() {
            "--keys" => a.keys = num(val()?)? as u64,
            "--keys-10m" => a.keys_10m = num(val()?)? as u64,
            "--reps" => a.reps = num(val()?)? as u32,
            "--secs" => a.secs = num(val()?)?,
            "--timeout-secs" => a.timeout = Duration::from_secs_f64(num(val()?)?),
            "--peers" => a.peers = val()?.split(',').map(str::to_string).collect(),
            "--workloads" => a.workloads = val()?.split(',').map(str::to_string).collect(),
            "--out" => a.out = PathBuf::from(val()?),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if a.peers.is_empty() {
        a.peers = peers::ALL.iter().map(|s| s.to_string()).collect();
    }
    if a.workloads.is_empty() {
        a.workloads = ON_LOADED
            .iter()
            .chain(ON_FRESH)
            .map(|s| s.to_string())
            .collect();
    }
    Ok(a)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let res = match cmd.as_str() {
        "child" => {
            let json = args.next().unwrap_or_default();
            match serde_json::from_str::<Spec>(&json) {
                Ok(spec) => {
                    let r = workload::run(&spec);
                    println!("{}", serde_json::to_string(&r).unwrap_or_default());
                    Ok(())
                }
                Err(e) => Err(format!("bad spec: {e}")),
            }
        }
        "run" => parse(args).and_then(|a| run(&a)),
        "scale" => scale::parse(args).and_then(|a| scale::run(&a)),
        "scale-report" => {
            let results = PathBuf::from(args.next().unwrap_or_default());
            let out = args.next().map_or_else(
                || results.parent().map(Path::to_path_buf).unwrap_or_default(),
                PathBuf::from,
            );
            scale_report::write(&results, &out)
        }
        "report" => {
            let results = PathBuf::from(args.next().unwrap_or_default());
            let out = args.next().map_or_else(
                || results.parent().map(Path::to_path_buf).unwrap_or_default(),
                PathBuf::from,
            );
            report::write(&results, &out)
        }
        _ => Err("usage: cairn-compare run [flags] | report <results.jsonl> [out-dir] | scale [flags] | scale-report <results.jsonl> [out-dir]".into()),
    };
    if let Err(e) = res {
        eprintln!("cairn-compare: {e}");
        std::process::exit(1);
    }
}

/// The physical limits (see `limits.rs`).
const LIMITS: &[&str] = &[
    "limit-hashmap",
    "limit-fdatasync",
    "limit-fdatasync-append",
    "limit-seqread",
    "limit-hints",
];

/// Whether a peer can run here: built in, and its server installed.
fn available(peer: &str) -> bool {
    if peer.starts_with("redis") {
        return Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    }
    peer != "rocksdb" || cfg!(feature = "rocksdb")
}

/// Which workloads a peer takes part in. Limits join only where they bound something.
fn runs(peer: &str, workload: &str) -> bool {
    match peer {
        "limit-hashmap" => matches!(workload, "get_uniform" | "get_zipf"),
        "limit-fdatasync" | "limit-fdatasync-append" => {
            matches!(workload, "durable1" | "durable1_loaded")
        }
        "limit-seqread" | "limit-hints" => workload == "open",
        _ => true,
    }
}

struct Runner<'a> {
    args: &'a Args,
    exe: PathBuf,
    log: std::fs::File,
    results: Vec<RunResult>,
}

impl Runner<'_> {
    fn child(&mut self, spec: &Spec, redis: Option<&RedisServer>) -> RunResult {
        child_process(&self.exe, spec, redis, self.args.timeout)
    }

    fn record(&mut self, r: RunResult) {
        let line = serde_json::to_string(&r).unwrap_or_default();
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
        let what = match &r.error {
            Some(e) => format!("ERROR {e}"),
            None if r.workload.starts_with("open") || r.workload.starts_with("load") => {
                format!("{:>10.0} ops/s  {:>8.3} s", r.ops_per_sec, r.secs)
            }
            None => format!(
                "{:>10.0} ops/s  p50 {:>8.2} µs  p99 {:>8.2} µs",
                r.ops_per_sec,
                r.p50_us.unwrap_or(0.0),
                r.p99_us.unwrap_or(0.0)
            ),
        };
        eprintln!("  rep {} {:<16} {:<24} {what}", r.rep, r.workload, r.peer);
        self.results.push(r);
    }
}

/// Runs `spec` in a child process of `exe` and returns what it reports. A
/// child still running after `timeout` is killed (SIGKILL, by its pid) and
/// the result says "timed out".
pub(crate) fn child_process(
    exe: &Path,
    spec: &Spec,
    redis: Option<&RedisServer>,
    timeout: Duration,
) -> RunResult {
    let json = serde_json::to_string(spec).unwrap_or_default();
    let mut cmd = Command::new(exe);
    cmd.arg("child")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = redis {
        let var = if spec.peer == "redis-everysec" {
            "CAIRN_COMPARE_REDIS_EVERYSEC"
        } else {
            "CAIRN_COMPARE_REDIS_ALWAYS"
        };
        cmd.env(var, &s.addr);
    }
    let t = Instant::now();
    let fail = |e: String| RunResult {
        peer: spec.peer.clone(),
        workload: spec.workload.clone(),
        rep: spec.rep,
        keys: spec.keys,
        error: Some(e),
        ..RunResult::default()
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return fail(e.to_string()),
    };
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = stdout.as_mut() {
            let _ = std::io::Read::read_to_string(o, &mut s);
        }
        s
    });
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return fail(format!("timed out after {:?}", timeout));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return fail(e.to_string()),
        }
    }
    let out = reader.join().unwrap_or_default();
    match out.lines().last().map(serde_json::from_str::<RunResult>) {
        Some(Ok(r)) => r,
        _ => fail(format!("child crashed or printed no result: {out}")),
    }
}

pub(crate) fn machine_description() -> String {
    let sh = |c: &str| {
        Command::new("sh")
            .args(["-c", c])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "- CPU: {} ({} cores online)\n- Memory: {}\n- Kernel: {}\n- Disk: {}\n- Redis: {}\n- cairn commit: {}\n- Date: {}",
        sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"),
        sh("nproc"),
        sh("free -h | awk '/Mem:/{print $2}'"),
        sh("uname -sr"),
        sh("df -h . | awk 'NR==2{print $1\", \"$2\" total\"}'"),
        sh("redis-server --version 2>/dev/null | cut -d' ' -f3 || echo not installed"),
        sh("git rev-parse --short HEAD 2>/dev/null"),
        sh("date -u +%Y-%m-%dT%H:%MZ"),
    )
}

fn run(a: &Args) -> Result<(), String> {
    let stamp = Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "run".into());
    // Absolute: redis-server changes into its directory before it opens
    // the log file given to it.
    let base = std::path::absolute(&a.out).map_err(|e| e.to_string())?;
    let out = base.join(stamp);
    let data = out.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    let mut peers: Vec<String> = a.peers.iter().filter(|p| available(p)).cloned().collect();
    for p in &a.peers {
        if !available(p) {
            eprintln!("skipping {p}: not available (rocksdb needs --features rocksdb; redis needs redis-server)");
        }
    }
    // The physical limits run beside the stores, in the same rotation (two
    // of them read the cairn store, so only when cairn runs).
    let limits = if peers.iter().any(|p| p == "cairn") {
        LIMITS
    } else {
        &[]
    };
    for l in limits {
        peers.push(l.to_string());
    }
    std::fs::write(out.join("machine.md"), machine_description()).map_err(|e| e.to_string())?;
    let cmdline: Vec<String> = std::env::args().collect();
    std::fs::write(out.join("command.txt"), cmdline.join(" ")).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(out.join("results.jsonl")).map_err(|e| e.to_string())?;
    let mut r = Runner {
        args: a,
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        log,
        results: Vec::new(),
    };
    eprintln!("cairn-compare: writing to {}", out.display());
    let wants = |w: &str| a.workloads.iter().any(|x| x == w);
    for rep in 0..a.reps {
        let mut order = peers.clone();
        let shift = rep as usize % order.len().max(1);
        order.rotate_left(shift);
        let rep_dir = data.join(format!("rep{rep}"));
        let mut servers: Vec<(String, RedisServer)> = Vec::new();
        for p in order.iter().filter(|p| p.starts_with("redis")) {
            let (s, _) = RedisServer::start(&rep_dir.join(p), p == "redis-everysec")?;
            servers.push((p.clone(), s));
        }
        let cairn_dir = rep_dir.join("cairn");
        for w in ON_LOADED.iter().filter(|w| wants(w)) {
            for p in order.iter().filter(|p| runs(p, w)) {
                let server_idx = servers.iter().position(|(n, _)| n == p);
                if *w == "open" {
                    if let Some(i) = server_idx {
                        let (name, s) = servers.remove(i);
                        let (rr, back) = time_restart(s, &name, "open", rep, a.keys);
                        if let Some(s) = back {
                            servers.insert(i, (name, s));
                        }
                        r.record(rr);
                        continue;
                    }
                }
                let dir = if p == "limit-seqread" || p == "limit-hints" {
                    cairn_dir.clone()
                } else {
                    rep_dir.join(p)
                };
                let server = server_idx.map(|i| &servers[i].1);
                let spec = Spec {
                    peer: p.clone(),
                    workload: w.to_string(),
                    dir,
                    keys: a.keys,
                    rep,
                    secs: a.secs,
                    server_pid: server.map(|s| s.pid),
                    server_dir: server.map(|s| s.dir.clone()),
                };
                let res = r.child(&spec, server);
                r.record(res);
            }
        }
        for (_, s) in servers.drain(..) {
            s.stop();
        }
        for w in ON_FRESH.iter().filter(|w| wants(w)) {
            for p in order.iter().filter(|p| runs(p, w)) {
                let dir = rep_dir.join(format!("fresh-{p}-{w}"));
                let server = if p.starts_with("redis") {
                    Some(RedisServer::start(&dir, p == "redis-everysec")?.0)
                } else {
                    None
                };
                let spec = Spec {
                    peer: p.clone(),
                    workload: w.to_string(),
                    dir: dir.clone(),
                    keys: a.keys,
                    rep,
                    secs: a.secs,
                    server_pid: server.as_ref().map(|s| s.pid),
                    server_dir: server.as_ref().map(|s| s.dir.clone()),
                };
                let res = r.child(&spec, server.as_ref());
                if let Some(s) = server {
                    s.stop();
                }
                r.record(res);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        let _ = std::fs::remove_dir_all(&rep_dir);
    }
    if a.keys_10m > 0 && wants("open") {
        open_10m(&mut r, &peers, &data.join("10m"))?;
    }
    let _ = std::fs::remove_dir_all(&data);
    report::write(&out.join("results.jsonl"), &out)?;
    eprintln!(
        "cairn-compare: report in {}",
        out.join("report.md").display()
    );
    Ok(())
}

/// Restarts a Redis server and times it until the AOF is loaded, checking
/// that it holds `keys` keys. Returns the result and the running server.
fn time_restart(
    s: RedisServer,
    name: &str,
    workload: &str,
    rep: u32,
    keys: u64,
) -> (RunResult, Option<RedisServer>) {
    let mut rr = RunResult {
        peer: name.to_string(),
        workload: workload.to_string(),
        rep,
        keys,
        ops: 1,
        ..RunResult::default()
    };
    let restarted = s.restart().and_then(|(s, took)| match s.dbsize() {
        Ok(n) if n >= keys => Ok((s, took)),
        Ok(n) => Err(format!("restarted server holds {n} keys, not {keys}")),
        Err(e) => Err(e),
    });
    match restarted {
        Ok((s, took)) => {
            rr.secs = took.as_secs_f64();
            rr.ops_per_sec = 1.0 / rr.secs;
            rr.peak_rss_bytes = proc_status_kb(&s.pid.to_string(), "VmHWM:");
            rr.settings = "redis-server restart: spawn until PING answers and INFO says loading:0 (replays the AOF)".into();
            rr.disk_bytes = Some(disk_usage(&s.dir));
            (rr, Some(s))
        }
        Err(e) => {
            rr.error = Some(e);
            (rr, None)
        }
    }
}

/// Loads a store of `keys_10m` keys per peer once, then times its open
/// `reps` times. Left out: sled (at 1M keys it already used about 3 GB) and
/// SQLite (random 16-byte keys load at about 13k/s, so a 10M store takes
/// over 12 minutes to build, and its open is a file open either way), and the
/// second Redis configuration (same files).
fn open_10m(r: &mut Runner, peers: &[String], data: &Path) -> Result<(), String> {
    let a = r.args;
    let set: Vec<&String> = peers
        .iter()
        .filter(|p| {
            !matches!(
                p.as_str(),
                "sled" | "redis-always" | "sqlite" | "sqlite-normal"
            )
        })
        .filter(|p| {
            !p.starts_with("limit-") || p.as_str() == "limit-seqread" || p.as_str() == "limit-hints"
        })
        .collect();
    let mut loaded: Vec<(String, Option<RedisServer>)> = Vec::new();
    for p in &set {
        if p.starts_with("limit-") {
            continue;
        }
        let dir = data.join(p.as_str());
        let server = if p.starts_with("redis") {
            Some(RedisServer::start(&dir, true)?.0)
        } else {
            None
        };
        let spec = Spec {
            peer: p.to_string(),
            workload: "load".into(),
            dir,
            keys: a.keys_10m,
            rep: 0,
            secs: a.secs,
            server_pid: server.as_ref().map(|s| s.pid),
            server_dir: server.as_ref().map(|s| s.dir.clone()),
        };
        let mut res = r.child(&spec, server.as_ref());
        res.workload = "load_10m".into();
        let ok = res.error.is_none();
        r.record(res);
        if ok {
            loaded.push((p.to_string(), server));
        }
    }
    for rep in 0..a.reps {
        for p in &set {
            if p.starts_with("limit-") {
                if !loaded.iter().any(|(n, _)| n == "cairn") {
                    continue;
                }
            } else if !loaded.iter().any(|(n, _)| n == *p) {
                continue;
            }
            if let Some(i) = loaded.iter().position(|(n, s)| n == *p && s.is_some()) {
                let (name, s) = loaded.remove(i);
                let (rr, back) = match s {
                    Some(s) => time_restart(s, &name, "open_10m", rep, a.keys_10m),
                    None => continue,
                };
                loaded.insert(i, (name, back));
                r.record(rr);
                continue;
            }
            let dir = if p.starts_with("limit-") {
                data.join("cairn")
            } else {
                data.join(p.as_str())
            };
            let spec = Spec {
                peer: p.to_string(),
                workload: "open".into(),
                dir,
                keys: a.keys_10m,
                rep,
                secs: a.secs,
                server_pid: None,
                server_dir: None,
            };
            let mut res = r.child(&spec, None);
            res.workload = "open_10m".into();
            r.record(res);
        }
    }
    for (_, s) in loaded {
        if let Some(s) = s {
            s.stop();
        }
    }
    Ok(())
}
