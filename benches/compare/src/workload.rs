//! The workloads, run inside a child process: one (peer, workload,
//! repetition) per process, so that memory figures and caches of one store
//! never leak into another's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::gen::{self, Rng, Zipf};
use crate::result::{disk_usage, percentiles, proc_status_kb, RunResult};
use crate::store::{Describe, Durability, Store};

/// What the orchestrator asks a child to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Spec {
    /// Peer name.
    pub peer: String,
    /// Workload name.
    pub workload: String,
    /// The store's directory.
    pub dir: PathBuf,
    /// Keys in the loaded store.
    pub keys: u64,
    /// Repetition number.
    pub rep: u32,
    /// Seconds each timed loop runs at most.
    pub secs: f64,
    /// For a server peer: the server's pid (its memory is the store's).
    pub server_pid: Option<u32>,
    /// For a server peer: where it keeps its files.
    pub server_dir: Option<PathBuf>,
}

/// Value size of the point workloads.
pub const VALUE_BYTES: usize = 100;
/// Session document size.
pub const SESSION_BYTES: usize = 1024;
/// Sessions live this long unless touched.
pub const SESSION_TTL_MS: u64 = 30 * 60 * 1000;
/// Counter keys in the rate-limit workload.
pub const COUNTER_KEYS: u64 = 10_000;
/// A rate-limit window.
pub const COUNTER_TTL_MS: u64 = 60_000;
/// Pairs per batch in the bulk load.
pub const BATCH: u64 = 1000;

/// Workloads that run on the store the rep's `load` made.
/// `durable1_loaded` comes right after `load`: durable puts on a store that
/// was just bulk loaded (its hint writing and compaction may still run).
pub const ON_LOADED: &[&str] = &[
    "load",
    "durable1_loaded",
    "get_uniform",
    "get_zipf",
    "mix95",
    "mix50",
    "open",
];
/// Workloads that start from an empty store.
pub const ON_FRESH: &[&str] = &[
    "put",
    "durable1",
    "durable8",
    "session",
    "session_durable",
    "counter",
    "counter_durable",
];

/// How many gets `scale_cold_gets` times after a cold open.
pub const COLD_GETS: u64 = 100_000;

/// The durability class a workload asks every store for.
pub fn durability_of(workload: &str) -> Durability {
    match workload {
        "durable1" | "durable1_loaded" | "durable8" | "session_durable" | "counter_durable" => {
            Durability::Durable
        }
        "session" | "counter" | "scale_write" => Durability::Periodic,
        _ => Durability::Relaxed,
    }
}

/// The server's memory, or this process's.
fn rss_pid(spec: &Spec) -> String {
    spec.server_pid
        .map_or_else(|| "self".to_string(), |p| p.to_string())
}

/// Times a loop of single operations: `op(i)` for i = 0.. until `max_ops`
/// or the time limit, one latency sample per operation, and the harness's
/// once-a-second `sync` for `Periodic` stores that do not sync themselves.
fn timed_loop(
    store: &dyn Store,
    periodic_sync: bool,
    secs: f64,
    max_ops: u64,
    mut op: impl FnMut(u64) -> Result<(), String>,
) -> Result<(u64, f64, Vec<u32>), String> {
    let limit = Duration::from_secs_f64(secs);
    let mut lat: Vec<u32> = Vec::with_capacity(max_ops.min(20_000_000) as usize);
    let rate = clock::ns_per_tick();
    let start = Instant::now();
    let mut last = clock::ticks();
    let mut last_sync = start;
    let mut i = 0;
    while i < max_ops {
        op(i)?;
        let now = clock::ticks();
        lat.push(clock::ns(last, now, rate));
        last = now;
        i += 1;
        if i % 64 == 0 {
            let wall = Instant::now();
            if periodic_sync && wall - last_sync >= Duration::from_secs(1) {
                store.sync()?;
                last_sync = Instant::now();
            }
            if wall - start >= limit {
                break;
            }
            last = clock::ticks();
        }
    }
    Ok((i, start.elapsed().as_secs_f64(), lat))
}

/// Runs one spec and returns its result (errors are reported in the result).
pub fn run(spec: &Spec) -> RunResult {
    let mut r = RunResult {
        peer: spec.peer.clone(),
        workload: spec.workload.clone(),
        rep: spec.rep,
        keys: spec.keys,
        ..RunResult::default()
    };
    if let Err(e) = run_inner(spec, &mut r) {
        r.error = Some(e);
    }
    r.peak_rss_bytes = proc_status_kb(&rss_pid(spec), "VmHWM:");
    r
}

fn open(spec: &Spec, d: Durability) -> Result<(Box<dyn Store>, Describe), String> {
    let peer = if let Some(limit) = crate::limits::peer(&spec.peer, spec.keys) {
        limit
    } else {
        crate::peers::peer(&spec.peer)
            .ok_or_else(|| format!("unknown or unavailable peer {}", spec.peer))?
    };
    std::fs::create_dir_all(&spec.dir).map_err(|e| e.to_string())?;
    let store = peer.open(&spec.dir, d)?;
    let desc = store.describe();
    Ok((store, desc))
}

fn check_value(i: u64, got: &[u8], expected_len: usize, full: bool) -> Result<(), String> {
    if got.len() != expected_len {
        return Err(format!(
            "key {i}: value of {} bytes, expected {expected_len}",
            got.len()
        ));
    }
    if full && got != gen::value(i, 0, expected_len).as_slice() {
        return Err(format!("key {i}: wrong value"));
    }
    Ok(())
}

fn run_inner(spec: &Spec, r: &mut RunResult) -> Result<(), String> {
    let d = durability_of(&spec.workload);
    let pid = rss_pid(spec);
    let base_rss = proc_status_kb(&pid, "VmRSS:");
    let t_open = Instant::now();
    let (store, desc) = open(spec, d)?;
    let open_secs = t_open.elapsed().as_secs_f64();
    r.settings = desc.settings.clone();
    r.caveat = desc.caveat.clone();
    let periodic_sync = d == Durability::Periodic && !desc.self_periodic;
    let n = spec.keys;
    let mut out = Vec::with_capacity(SESSION_BYTES + 64);
    let (ops, secs, mut lat) = match spec.workload.as_str() {
        "load" | "scale_load" => {
            let mut took = Duration::ZERO;
            let mut i = 0;
            while i < n {
                let end = (i + BATCH).min(n);
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = (i..end)
                    .map(|j| (gen::key(j).to_vec(), gen::value(j, 0, VALUE_BYTES)))
                    .collect();
                let t = Instant::now();
                store.put_batch(&pairs)?;
                took += t.elapsed();
                i = end;
            }
            let t = Instant::now();
            store.sync()?;
            took += t.elapsed();
            (n, took.as_secs_f64(), Vec::new())
        }
        "get_uniform" | "get_zipf" | "mix95" | "mix50" => {
            let zipf = (spec.workload == "get_zipf").then(|| Zipf::new(n, 0.99));
            let mut rng = Rng::new(u64::from(spec.rep) * 7 + 1);
            // Warm up: every store gets the same second (at most the
            // measured time) of uniform reads.
            let warm_until = Instant::now() + Duration::from_secs_f64(spec.secs.min(1.0));
            while Instant::now() < warm_until {
                for _ in 0..256 {
                    let i = rng.below(n);
                    if !store.get(&gen::key(i), &mut out)? {
                        return Err(format!("key {i} missing after load"));
                    }
                }
            }
            let rss = proc_status_kb(&pid, "VmRSS:");
            // A server already holds the data before this process starts:
            // its whole resident set is the store's.
            let base = if spec.server_pid.is_some() {
                0
            } else {
                base_rss
            };
            r.mem_per_key = Some(rss.saturating_sub(base) as f64 / n as f64);
            let write_share = match spec.workload.as_str() {
                "mix95" => 0.05,
                "mix50" => 0.5,
                _ => 0.0,
            };
            let mut ver = 0u64;
            timed_loop(&*store, false, spec.secs, 5_000_000, |k| {
                let i = match &zipf {
                    Some(z) => z.sample(&mut rng),
                    None => rng.below(n),
                };
                if write_share > 0.0 && rng.unit() < write_share {
                    ver += 1;
                    // Same size as the loaded value, so the data set stays put.
                    store.put(&gen::key(i), &gen::value(i, ver, VALUE_BYTES))
                } else {
                    if !store.get(&gen::key(i), &mut out)? {
                        return Err(format!("key {i} missing"));
                    }
                    // Loaded values are checked in full once every 1024 reads
                    // (the mixes overwrite them, so only the length there).
                    check_value(i, &out, VALUE_BYTES, write_share == 0.0 && k % 1024 == 0)
                }
            })?
        }
        "open" => {
            // The open itself was timed above; one read proves it works.
            let t = Instant::now();
            if !store.get(&gen::key(0), &mut out)? {
                return Err("key 0 missing after open".into());
            }
            // The mixes overwrote values, so only the length is known here.
            check_value(0, &out, VALUE_BYTES, false)?;
            let secs = open_secs + t.elapsed().as_secs_f64();
            let rss = proc_status_kb(&pid, "VmRSS:");
            r.mem_per_key = Some(rss.saturating_sub(base_rss) as f64 / n as f64);
            (1, secs, Vec::new())
        }
        "scale_open_clean" | "scale_open_kill" => {
            // Timed as `open`; then key 0 (never overwritten by the write
            // phase before a kill) is checked in full, and 100 random keys
            // (which it may have overwritten) by length.
            let t = Instant::now();
            if !store.get(&gen::key(0), &mut out)? {
                return Err("key 0 missing after open".into());
            }
            let secs = open_secs + t.elapsed().as_secs_f64();
            let rss = proc_status_kb(&pid, "VmRSS:");
            r.mem_per_key = Some(rss.saturating_sub(base_rss) as f64 / n as f64);
            // The limits hold no values, only their length.
            let limit = spec.peer.starts_with("limit-");
            check_value(0, &out, VALUE_BYTES, !limit)?;
            let mut rng = Rng::new(u64::from(spec.rep) + 4242);
            for _ in 0..100 {
                let i = rng.below(n);
                if !store.get(&gen::key(i), &mut out)? {
                    return Err(format!("key {i} missing after open"));
                }
                check_value(i, &out, VALUE_BYTES, false)?;
            }
            r.note = store.open_note();
            (1, secs, Vec::new())
        }
        "scale_cold_gets" => {
            // The first COLD_GETS uniform random gets right after an open
            // with the page cache dropped (as after a reboot), each timed
            // on its own: how soon a restarted store serves at speed.
            let mut rng = Rng::new(u64::from(spec.rep) + 777);
            let res = timed_loop(&*store, false, 600.0, COLD_GETS, |_| {
                let i = rng.below(n);
                if !store.get(&gen::key(i), &mut out)? {
                    return Err(format!("key {i} missing after open"));
                }
                check_value(i, &out, VALUE_BYTES, false)
            })?;
            r.note = store.open_note();
            res
        }
        "scale_write" => scale_write(&*store, periodic_sync, spec, &desc.settings)?,
        "put" => timed_loop(&*store, false, spec.secs, 2_000_000, |i| {
            store.put(&gen::new_key(0, i), &gen::value(i, 0, VALUE_BYTES))
        })?,
        "durable1" | "durable1_loaded" | "durable8" => {
            let before = store.fsyncs();
            let res = if spec.workload != "durable8" {
                // New keys (space 1 on a loaded store, so none is an overwrite).
                let space = u64::from(spec.workload == "durable1_loaded");
                timed_loop(&*store, false, spec.secs, 1_000_000, |i| {
                    store.put(&gen::new_key(space, i), &gen::value(i, 0, VALUE_BYTES))
                })?
            } else {
                durable_threads(&*store, 8, spec.secs)?
            };
            if let (Some(b), Some(a)) = (before, store.fsyncs()) {
                r.note = Some(format!(
                    "{} fsyncs for {} writes ({:.3} per write)",
                    a - b,
                    res.0,
                    (a - b) as f64 / res.0.max(1) as f64
                ));
            }
            res
        }
        "session" | "session_durable" => {
            let (ops, secs, lat, sessions) = sessions(&*store, periodic_sync, spec)?;
            r.note = Some(format!(
                "{:.0} sessions/s (13 operations each)",
                sessions as f64 / secs
            ));
            (ops, secs, lat)
        }
        "counter" | "counter_durable" => {
            let mut rng = Rng::new(u64::from(spec.rep) + 99);
            let mut allowed = 0u64;
            let res = timed_loop(&*store, periodic_sync, spec.secs, 5_000_000, |_| {
                let k = format!("rl:{:05}", rng.below(COUNTER_KEYS));
                let c = store.incr_ttl(k.as_bytes(), COUNTER_TTL_MS)?;
                if c <= 100 {
                    allowed += 1;
                }
                Ok(())
            })?;
            r.note = Some(format!(
                "{allowed} of {} requests allowed (limit 100 per key per window)",
                res.0
            ));
            res
        }
        other => return Err(format!("unknown workload {other}")),
    };
    let t = Instant::now();
    store.close()?;
    let close_secs = t.elapsed().as_secs_f64();
    drop(store);
    if matches!(spec.workload.as_str(), "load" | "scale_load") {
        r.disk_bytes = Some(disk_usage(spec.server_dir.as_deref().unwrap_or(&spec.dir)));
        r.note = Some(format!("close took {close_secs:.2} s (not timed)"));
    }
    r.ops = ops;
    r.secs = secs;
    r.ops_per_sec = if secs > 0.0 { ops as f64 / secs } else { 0.0 };
    let (p50, p99, p999) = percentiles(&mut lat);
    r.p50_us = p50;
    r.p99_us = p99;
    r.p999_us = p999;
    Ok(())
}

/// The write phase before a kill -9 (`cairn-compare scale`): says "ready"
/// and the store's settings on stdout once the store is open, then overwrites random loaded keys
/// other than key 0 (same value size, new versions) at full speed from one
/// thread, printing "progress <puts>" about every 50 ms, until the parent
/// kills it. If no kill comes within `secs` + 120 s (the parent died), it
/// stops and returns normally.
fn scale_write(
    store: &dyn Store,
    periodic_sync: bool,
    spec: &Spec,
    settings: &str,
) -> Result<(u64, f64, Vec<u32>), String> {
    use std::io::Write as _;
    let n = spec.keys.max(2);
    let mut stdout = std::io::stdout();
    let say = |o: &mut std::io::Stdout, s: String| {
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    };
    say(&mut stdout, format!("ready {settings}"));
    let mut rng = Rng::new(u64::from(spec.rep) + 777);
    let start = Instant::now();
    let give_up = Duration::from_secs_f64(spec.secs + 120.0);
    let (mut last_sync, mut last_say) = (start, start);
    let mut i = 0u64;
    loop {
        let k = 1 + rng.below(n - 1);
        store.put(&gen::key(k), &gen::value(k, i + 1, VALUE_BYTES))?;
        i += 1;
        if i.is_multiple_of(64) {
            let now = Instant::now();
            if periodic_sync && now - last_sync >= Duration::from_secs(1) {
                store.sync()?;
                last_sync = Instant::now();
            }
            if now - last_say >= Duration::from_millis(50) {
                say(&mut stdout, format!("progress {i}"));
                last_say = now;
            }
            if now - start >= give_up {
                return Ok((i, start.elapsed().as_secs_f64(), Vec::new()));
            }
        }
    }
}

/// `threads` writers, each putting new keys durably, for `secs`.
fn durable_threads(
    store: &dyn Store,
    threads: u64,
    secs: f64,
) -> Result<(u64, f64, Vec<u32>), String> {
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let results: Vec<Result<(u64, Vec<u32>), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let stop = Arc::clone(&stop);
                s.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 20);
                    let rate = clock::ns_per_tick();
                    let mut last = clock::ticks();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        store.put(&gen::new_key(t + 1, i), &gen::value(i, t, VALUE_BYTES))?;
                        let now = clock::ticks();
                        lat.push(clock::ns(last, now, rate));
                        last = now;
                        i += 1;
                    }
                    Ok((i, lat))
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("writer thread panicked".into()))
            })
            .collect()
    });
    let secs = start.elapsed().as_secs_f64();
    let mut ops = 0;
    let mut all = Vec::new();
    for res in results {
        let (n, lat) = res?;
        ops += n;
        all.extend(lat);
    }
    Ok((ops, secs, all))
}

/// The session workload: 1000 active sessions; a request picks one at
/// random. A session is created (put with a TTL, ~1 KB of JSON), read on 10
/// requests, its TTL touched once (after the 5th read), and deleted at
/// logout, when a new one takes its place: 13 operations per session, each
/// timed as one request.
fn sessions(
    store: &dyn Store,
    periodic_sync: bool,
    spec: &Spec,
) -> Result<(u64, f64, Vec<u32>, u64), String> {
    const ACTIVE: usize = 1000;
    let mut rng = Rng::new(u64::from(spec.rep) + 1234);
    let mut ids: Vec<Option<([u8; 22], u64)>> = vec![None; ACTIVE];
    let mut reads = [0u8; ACTIVE];
    let mut next = 0u64;
    let mut done = 0u64;
    let mut out = Vec::with_capacity(SESSION_BYTES + 64);
    // Documents are made before the clock starts: formatting JSON is the
    // application's cost, not the store's.
    let docs: Vec<Vec<u8>> = (0..256)
        .map(|i| gen::session_json(i, SESSION_BYTES))
        .collect();
    let mut doc: Option<(u64, &[u8])> = None;
    let (ops, secs, lat) = timed_loop(store, periodic_sync, spec.secs, 20_000_000, |_| {
        let slot = rng.below(ACTIVE as u64) as usize;
        match ids[slot] {
            None => {
                // 128 random bits, URL-safe base64: 22 characters.
                let mut id = [0u8; 22];
                let bits = u128::from(rng.next()) << 64 | u128::from(rng.next());
                const ALPHABET: &[u8; 64] =
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
                for (j, c) in id.iter_mut().enumerate() {
                    *c = ALPHABET[((bits >> (6 * j)) & 63) as usize];
                }
                let body = &docs[(next % 256) as usize];
                store.put_ttl(&id, body, SESSION_TTL_MS)?;
                ids[slot] = Some((id, next));
                doc = Some((next, body));
                next += 1;
                reads[slot] = 0;
            }
            Some((id, n)) => {
                // Steps 0-4 and 6-10 read, 5 touches, 11 logs out.
                let step = reads[slot];
                reads[slot] += 1;
                if step == 5 {
                    if !store.touch(&id, SESSION_TTL_MS)? {
                        return Err(format!("session {n}: touch found nothing"));
                    }
                } else if step == 11 {
                    store.delete(&id)?;
                    ids[slot] = None;
                    done += 1;
                } else {
                    if !store.get_live(&id, &mut out)? {
                        return Err(format!("session {n} missing"));
                    }
                    if out.len() != SESSION_BYTES {
                        return Err(format!("session {n}: {} bytes", out.len()));
                    }
                    if let Some((dn, body)) = &doc {
                        if *dn == n && out != *body {
                            return Err(format!("session {n}: wrong data"));
                        }
                    }
                }
            }
        }
        Ok(())
    })?;
    Ok((ops, secs, lat, done))
}
