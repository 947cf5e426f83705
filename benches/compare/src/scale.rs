//! `cairn-compare scale`: open time and memory as the store grows.
//!
//! ```text
//! cairn-compare scale --keys 1000000,10000000,100000000
//!     --peers cairn,lmdb,redb,fjall --reps 3 --out results-scale
//!     [--max-load-secs 1200] [--kill-write-secs 10] [--timeout-secs 1800]
//!     [--keep-page-cache]
//! ```
//!
//! For each key count N (ascending) and each peer, one after the other (so
//! that only one store is on disk at a time):
//!
//! 1. `scale_load`: a child process loads N keys (the `load` workload: 16-byte
//!    keys, 100-byte values, batches of 1000, one sync) and closes the store.
//!    A load still running after `--max-load-secs` is killed (by its pid);
//!    the peer is then recorded as "did not finish" at N and every larger N.
//! 2. `scale_open_clean`, `--reps` times: `sync`, drop the page cache
//!    (`echo 3 > /proc/sys/vm/drop_caches`, needs root; when it fails the
//!    result says so), then a fresh child times the open plus one checked
//!    get, and records resident memory above its baseline per key and its
//!    peak RSS.
//! 3. `scale_cold_gets`, `--reps` times: the page cache is dropped, a fresh
//!    child opens the store and times each of its first 100,000 uniform
//!    random gets (as after a reboot: how soon a restarted store serves at
//!    speed).
//! 4. `--reps` times: `scale_kill_write`, a child opens the store, overwrites
//!    random loaded keys (never key 0) from one thread at full speed with
//!    the `Periodic` durability of the `session` workload, and after
//!    `--kill-write-secs` is killed with SIGKILL by the parent; the bytes it
//!    handed to the OS meanwhile are recorded. Then `scale_open_kill`: the
//!    page cache is dropped and a fresh child times the open as in 2, and
//!    checks key 0 (written by the load, before the kill) in full.
//!
//! The store is then deleted. Results go to `results.jsonl`, and
//! `scale_report` writes `scale.md` and `open_time.svg` next to it.
//!
//! Left out, as in the `run` subcommand's `open_10m`: sled (about 3 GB of
//! memory at 1M keys already), SQLite (random 16-byte keys load at about 13k
//! per second: over 12 minutes for 10M keys, over two hours for 100M, and
//! its open is a file open either way), and Redis (its restart replays the
//! AOF in a server process, timed by `run`'s `open` and `open_10m`).
//! `limit-hints` and `limit-seqread` may be named: they time their clean
//! opens on cairn's store, right after cairn's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::result::{disk_usage, RunResult};
use crate::workload::Spec;

/// The flags of `scale`.
pub struct Args {
    keys: Vec<u64>,
    peers: Vec<String>,
    reps: u32,
    out: PathBuf,
    max_load: Duration,
    kill_write_secs: f64,
    timeout: Duration,
    /// `--keep-page-cache`: do not drop it (smoke runs; the report marks
    /// every figure as taken with a warm cache).
    keep_cache: bool,
}

/// Why a peer does not take part, or `None` if it does.
fn excluded(peer: &str) -> Option<&'static str> {
    match peer {
        "sled" => Some("at 1M keys it already used about 3 GB of memory"),
        "sqlite" | "sqlite-normal" => Some(
            "random 16-byte keys load at about 13k/s (hours at 100M keys), and its open is a file open either way",
        ),
        p if p.starts_with("redis") => Some(
            "its restart replays the AOF in a server process; the run subcommand times it (open, open_10m)",
        ),
        "limit-hashmap" | "limit-fdatasync" | "limit-fdatasync-append" => {
            Some("not a bound on opening")
        }
        _ => None,
    }
}

fn is_limit(peer: &str) -> bool {
    peer.starts_with("limit-")
}

/// Parses the flags after `scale`.
pub fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        keys: vec![1_000_000, 10_000_000, 100_000_000],
        peers: ["cairn", "lmdb", "redb", "fjall"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        reps: 3,
        out: PathBuf::from("results-scale"),
        max_load: Duration::from_secs(1200),
        kill_write_secs: 10.0,
        timeout: Duration::from_secs(1800),
        keep_cache: false,
    };
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let num = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("{flag}: not a number ≥ 0: {s}"))
        };
        match flag.as_str() {
            "--keys" => {
                a.keys = val()?
                    .split(',')
                    .map(|s| num(s).map(|x| x as u64))
                    .collect::<Result<_, _>>()?;
            }
            "--peers" => a.peers = val()?.split(',').map(str::to_string).collect(),
            "--reps" => a.reps = num(&val()?)? as u32,
            "--out" => a.out = PathBuf::from(val()?),
            "--max-load-secs" => a.max_load = Duration::from_secs_f64(num(&val()?)?),
            "--kill-write-secs" => a.kill_write_secs = num(&val()?)?,
            "--timeout-secs" => a.timeout = Duration::from_secs_f64(num(&val()?)?),
            "--keep-page-cache" => a.keep_cache = true,
            other => return Err(format!("scale: unknown flag {other}")),
        }
    }
    a.keys.sort_unstable();
    a.keys.dedup();
    if a.keys.is_empty() || a.keys[0] < 2 {
        return Err("scale: --keys needs key counts of at least 2".into());
    }
    if a.reps == 0 {
        return Err("scale: --reps must be at least 1".into());
    }
    let mut peers = Vec::new();
    for p in &a.peers {
        if let Some(why) = excluded(p) {
            eprintln!("scale: leaving out {p}: {why}");
        } else if is_limit(p) && !a.peers.iter().any(|q| q == "cairn") {
            eprintln!(
                "scale: leaving out {p}: it reads cairn's store, and cairn is not in --peers"
            );
        } else if !is_limit(p) && crate::peers::peer(p).is_none() {
            return Err(format!(
                "scale: unknown or unavailable peer {p} (rocksdb needs --features rocksdb)"
            ));
        } else {
            peers.push(p.clone());
        }
    }
    a.peers = peers;
    Ok(a)
}

/// `sync`, then drops the page cache. Returns whether both worked.
fn drop_page_cache() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// `wchar` of `/proc/<pid>/io`: bytes the process passed to write(2) and
/// the like, whether or not they reached the disk yet.
fn wchar(pid: u32) -> Result<u64, String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/io"))
        .map_err(|e| format!("/proc/{pid}/io: {e}"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("/proc/{pid}/io: no wchar"))
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

struct Ctx<'a> {
    a: &'a Args,
    exe: PathBuf,
    log: std::fs::File,
}

impl Ctx<'_> {
    fn spec(&self, peer: &str, workload: &str, dir: &Path, keys: u64, rep: u32) -> Spec {
        Spec {
            peer: peer.to_string(),
            workload: workload.to_string(),
            dir: dir.to_path_buf(),
            keys,
            rep,
            secs: self.a.kill_write_secs,
            server_pid: None,
            server_dir: None,
        }
    }

    fn record(&mut self, r: &RunResult) {
        let line = serde_json::to_string(r).unwrap_or_default();
        let _ = writeln!(self.log, "{line}");
        let _ = self.log.flush();
        let what = match (&r.error, r.workload.as_str()) {
            (Some(e), _) => format!("ERROR {e}"),
            (None, "scale_load") => format!(
                "{:>8.1} s  {:>9.0} keys/s  {:>8.1} MB on disk",
                r.secs,
                r.ops_per_sec,
                mb(r.disk_bytes.unwrap_or(0))
            ),
            (None, "scale_kill_write") => format!(
                "{:>8.1} s  {:>9.0} puts/s  {:>8.1} MB written, then SIGKILL",
                r.secs,
                r.ops_per_sec,
                mb(r.written_bytes.unwrap_or(0))
            ),
            (None, "scale_cold_gets") => format!(
                "{:>8.2} µs mean  p50 {:>7.2} µs  p99 {:>8.2} µs  ({} gets in {:.2} s){}",
                r.secs * 1e6 / (r.ops.max(1) as f64),
                r.p50_us.unwrap_or(0.0),
                r.p99_us.unwrap_or(0.0),
                r.ops,
                r.secs,
                if r.cache_dropped == Some(false) {
                    "  (page cache NOT dropped)"
                } else {
                    ""
                }
            ),
            (None, _) => format!(
                "{:>8.3} s  {:>6.1} B/key  peak RSS {:>7.1} MB{}",
                r.secs,
                r.mem_per_key.unwrap_or(0.0),
                mb(r.peak_rss_bytes),
                if r.cache_dropped == Some(false) {
                    "  (page cache NOT dropped)"
                } else {
                    ""
                }
            ),
        };
        eprintln!(
            "  {:>11} keys  rep {}  {:<17} {:<14} {what}",
            r.keys, r.rep, r.workload, r.peer
        );
    }

    /// Drops the page cache, then times an open in a fresh child.
    fn open(&mut self, peer: &str, workload: &str, dir: &Path, keys: u64, rep: u32) -> RunResult {
        let size = disk_usage(dir);
        let dropped = !self.a.keep_cache && drop_page_cache();
        let spec = self.spec(peer, workload, dir, keys, rep);
        let mut r = crate::child_process(&self.exe, &spec, None, self.a.timeout);
        r.disk_bytes = Some(size);
        r.cache_dropped = Some(dropped);
        r
    }
}

/// Runs `scale` and writes its report.
pub fn run(a: &Args) -> Result<(), String> {
    let stamp = Command::new("date")
        .arg("+%Y%m%d-%H%M%S")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|_| "run".into());
    let out = std::path::absolute(&a.out)
        .map_err(|e| e.to_string())?
        .join(stamp);
    let data = out.join("data");
    std::fs::create_dir_all(&data).map_err(|e| e.to_string())?;
    std::fs::write(out.join("machine.md"), crate::machine_description())
        .map_err(|e| e.to_string())?;
    let cmdline: Vec<String> = std::env::args().collect();
    std::fs::write(out.join("command.txt"), cmdline.join(" ")).map_err(|e| e.to_string())?;
    if a.keep_cache {
        eprintln!("scale: --keep-page-cache: opens will be timed with a warm cache");
    } else if !drop_page_cache() {
        eprintln!("scale: WARNING: cannot drop the page cache (needs root): opens will be timed with a warm cache, and the report will say so");
    }
    let mut c = Ctx {
        a,
        exe: std::env::current_exe().map_err(|e| e.to_string())?,
        log: std::fs::File::create(out.join("results.jsonl")).map_err(|e| e.to_string())?,
    };
    eprintln!("cairn-compare scale: writing to {}", out.display());
    let stores: Vec<&String> = a.peers.iter().filter(|p| !is_limit(p)).collect();
    let limits: Vec<&String> = a.peers.iter().filter(|p| is_limit(p)).collect();
    // Peers whose load did not finish in time at a smaller N.
    let mut dnf: Vec<(String, u64)> = Vec::new();
    for &n in &a.keys {
        for p in &stores {
            if let Some((_, at)) = dnf.iter().find(|(q, _)| q == *p) {
                let r = RunResult {
                    peer: p.to_string(),
                    workload: "scale_load".into(),
                    keys: n,
                    error: Some(format!(
                        "did not finish: its load of {at} keys took longer than --max-load-secs"
                    )),
                    ..RunResult::default()
                };
                c.record(&r);
                continue;
            }
            let dir = data.join(format!("{p}-{n}"));
            if !one_store(&mut c, p, &limits, n, &dir) {
                dnf.push((p.to_string(), n));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    crate::scale_report::write(&out.join("results.jsonl"), &out)?;
    eprintln!(
        "cairn-compare scale: report in {} and {}",
        out.join("scale.md").display(),
        out.join("open_time.svg").display()
    );
    Ok(())
}

/// Loads, opens clean and opens after kill -9 one peer at `n` keys.
/// Returns false if its load did not finish within `--max-load-secs`.
fn one_store(c: &mut Ctx, peer: &str, limits: &[&String], n: u64, dir: &Path) -> bool {
    let spec = c.spec(peer, "scale_load", dir, n, 0);
    let t = Instant::now();
    let mut load = crate::child_process(&c.exe, &spec, None, c.a.max_load);
    let wall = t.elapsed().as_secs_f64();
    if let Some(e) = &load.error {
        let timed_out = e.starts_with("timed out");
        if timed_out {
            load.error = Some(format!(
                "did not finish: load stopped (SIGKILL) after --max-load-secs {} ({e})",
                c.a.max_load.as_secs_f64()
            ));
        }
        c.record(&load);
        return !timed_out;
    }
    load.note = Some(format!(
        "{}; child process wall time {wall:.1} s (open, load, sync, close)",
        load.note.take().unwrap_or_default()
    ));
    c.record(&load);
    for rep in 0..c.a.reps {
        let r = c.open(peer, "scale_open_clean", dir, n, rep);
        c.record(&r);
    }
    for rep in 0..c.a.reps {
        let r = c.open(peer, "scale_cold_gets", dir, n, rep);
        c.record(&r);
    }
    if peer == "cairn" {
        for l in limits {
            for rep in 0..c.a.reps {
                let r = c.open(l, "scale_open_clean", dir, n, rep);
                c.record(&r);
            }
        }
    }
    for rep in 0..c.a.reps {
        let w = kill_phase(c, peer, dir, n, rep);
        c.record(&w);
        if w.error.is_some() {
            continue;
        }
        let mut r = c.open(peer, "scale_open_kill", dir, n, rep);
        r.written_bytes = w.written_bytes;
        c.record(&r);
    }
    true
}

/// The write phase: a child opens the store and overwrites keys until it
/// is killed with SIGKILL `--kill-write-secs` after it said it was ready.
fn kill_phase(c: &mut Ctx, peer: &str, dir: &Path, n: u64, rep: u32) -> RunResult {
    let mut r = RunResult {
        peer: peer.to_string(),
        workload: "scale_kill_write".into(),
        rep,
        keys: n,
        ..RunResult::default()
    };
    if let Err(e) = write_then_kill(c, peer, dir, n, rep, &mut r) {
        r.error = Some(e);
    }
    r
}

/// What the write phase saw before the kill.
struct Written {
    puts: u64,
    wchar: u64,
    secs: f64,
    settings: String,
    disk_before: u64,
}

fn write_then_kill(
    c: &Ctx,
    peer: &str,
    dir: &Path,
    n: u64,
    rep: u32,
    r: &mut RunResult,
) -> Result<(), String> {
    let spec = c.spec(peer, "scale_write", dir, n, rep);
    let json = serde_json::to_string(&spec).map_err(|e| e.to_string())?;
    let mut child = Command::new(&c.exe)
        .arg("child")
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| e.to_string())?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no stdout from the child")?;
    let (tx, rx) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(l) = line else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let seen = watch(c, pid, dir, &rx);
    // SIGKILL, by pid, whatever happened.
    let _ = child.kill();
    let _ = child.wait();
    drop(rx);
    let _ = reader.join();
    let w = seen?;
    let disk_after = disk_usage(dir);
    r.ops = w.puts;
    r.secs = w.secs;
    r.ops_per_sec = w.puts as f64 / w.secs.max(1e-9);
    r.written_bytes = Some(w.wchar);
    r.disk_bytes = Some(disk_after);
    r.settings = w.settings;
    r.note = Some(format!(
        "about {} puts ({:.1} MB of keys and values) in {:.1} s, then SIGKILL; {:.1} MB handed to write(2) (wchar); disk use {:.1} → {:.1} MB",
        w.puts,
        mb(w.puts * (16 + crate::workload::VALUE_BYTES as u64)),
        w.secs,
        mb(w.wchar),
        mb(w.disk_before),
        mb(disk_after)
    ));
    Ok(())
}

/// Waits for the child's "ready", then lets it write for
/// `--kill-write-secs`, following its progress lines.
fn watch(c: &Ctx, pid: u32, dir: &Path, rx: &mpsc::Receiver<String>) -> Result<Written, String> {
    let first = rx.recv_timeout(c.a.timeout);
    let settings = match first {
        Ok(l) => match l.strip_prefix("ready") {
            Some(s) => s.trim().to_string(),
            None => {
                // The child's last line is its result: it failed.
                let why = serde_json::from_str::<RunResult>(&l)
                    .ok()
                    .and_then(|x| x.error)
                    .unwrap_or(l);
                return Err(format!("write phase: {why}"));
            }
        },
        Err(RecvTimeoutError::Timeout) => {
            return Err(format!(
                "write phase: the store did not open within {:?}",
                c.a.timeout
            ))
        }
        Err(RecvTimeoutError::Disconnected) => {
            return Err("write phase: the child exited before the store was open".into())
        }
    };
    let w0 = wchar(pid)?;
    let disk_before = disk_usage(dir);
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs_f64(c.a.kill_write_secs);
    let mut puts = 0u64;
    let mut progress = |l: &str| -> Result<(), String> {
        match l.strip_prefix("progress ").and_then(|x| x.parse().ok()) {
            Some(x) => {
                puts = x;
                Ok(())
            }
            None => Err(format!("write phase ended before the kill: {l}")),
        }
    };
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(l) => progress(&l)?,
            Err(RecvTimeoutError::Timeout) => break,
            Err(RecvTimeoutError::Disconnected) => {
                return Err("write phase: the child exited before the kill".into())
            }
        }
    }
    let w1 = wchar(pid)?;
    let secs = t0.elapsed().as_secs_f64();
    while let Ok(l) = rx.try_recv() {
        progress(&l)?;
    }
    Ok(Written {
        puts,
        wchar: w1.saturating_sub(w0),
        secs,
        settings,
        disk_before,
    })
}
