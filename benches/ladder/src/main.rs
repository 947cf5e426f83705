//! The modules' operations on each step of the ladder, side by side:
//! `ladder-bench LABEL=SPEC...` (run.sh starts the servers and passes them).
//!
//! SPEC is `embedded:always` (a `Db` with `SyncPolicy::Always`),
//! `embedded:everysec` (`SyncPolicy::EveryMillis(1000)`), `resp:URL` (one
//! server: redis-server or `cairn serve`) or `cluster:URL,URL,...` (a Redis
//! Cluster through its seed nodes). For each target, with 1 and with 16
//! client threads (`LADDER_THREADS`, default `1,16`), each operation runs
//! for `LADDER_SECS` seconds (default 1.5); it prints ops/s and p99 as
//! markdown tables, one per thread count, a column per target.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::backend::resp::RespOptions;
use cairn::backend::Store;
use cairn::cache::{Cache, CacheOptions};
use cairn::limits::{Begin, FixedWindow, Gcra, Idempotency};
use cairn::session::{SessionId, Sessions};

const HOUR: Duration = Duration::from_secs(3600);
/// Distinct cache keys, limiter keys.
const KEYS: u64 = 10_000;

const OPS: [&str; 8] = [
    "sessions `create_for_user`",
    "sessions `get`",
    "sessions `get_and_touch`",
    "cache `get` (hit)",
    "cache `insert`",
    "`FixedWindow::check`",
    "`Gcra::check`",
    "idempotency `begin` + `complete`",
];

struct Target {
    label: String,
    _dir: Option<tempfile::TempDir>,
    sessions: Sessions,
    cache: Cache,
    window: FixedWindow,
    gcra: Gcra,
    idem: Idempotency,
}

/// One measured cell.
#[derive(Clone, Copy, Default)]
struct Cell {
    ops_per_s: f64,
    p99_us: f64,
    errors: u64,
}

fn open(label: &str, spec: &str) -> cairn::Result<Target> {
    let mut dir = None;
    let stores: [Store; 3] = if let Some(mode) = spec.strip_prefix("embedded:") {
        let policy = match mode {
            "always" => cairn::SyncPolicy::Always,
            "everysec" => cairn::SyncPolicy::EveryMillis(1000),
            other => return Err(cairn::Error::InvalidArgument(format!("sync {other}"))),
        };
        let d = tempfile::tempdir()?;
        let db = cairn::Options::new().sync_policy(policy).open(d.path())?;
        dir = Some(d);
        [
            db.keyspace("sessions")?.into(),
            db.keyspace("cache")?.into(),
            db.keyspace("limits")?.into(),
        ]
    } else {
        let opts = if let Some(urls) = spec.strip_prefix("cluster:") {
            RespOptions::cluster(urls.split(','))
        } else if let Some(url) = spec.strip_prefix("resp:") {
            RespOptions::new(url)
        } else {
            return Err(cairn::Error::InvalidArgument(format!("target {spec}")));
        };
        // A connection per client thread, so that none is opened per call.
        let b = opts.pool_size(16).open()?;
        [
            b.namespace("sessions").into(),
            b.namespace("cache").into(),
            b.namespace("limits").into(),
        ]
    };
    let [s, c, l] = stores;
    Ok(Target {
        label: label.to_owned(),
        _dir: dir,
        sessions: Sessions::new(s),
        cache: CacheOptions::new().open(c)?,
        window: FixedWindow::new(l.clone(), "bench", u64::MAX / 4, Duration::from_secs(60))?,
        gcra: Gcra::new(l.clone(), "bench", 1000, Duration::from_secs(1))?.burst(1 << 40),
        idem: Idempotency::new(l),
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Runs `op(thread, i)` on `threads` threads for `secs`; ops/s and p99.
fn measure(
    threads: usize,
    secs: f64,
    op: &(dyn Fn(usize, u64) -> cairn::Result<()> + Sync),
) -> Cell {
    let all = Mutex::new(Vec::new());
    let errors = AtomicU64::new(0);
    let first_error = Mutex::new(None::<String>);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (all, errors, first_error) = (&all, &errors, &first_error);
            s.spawn(move || {
                let mut lat = Vec::with_capacity(1 << 16);
                let mut i = 0u64;
                loop {
                    let t0 = Instant::now();
                    if t0 >= end {
                        break;
                    }
                    if let Err(e) = op(t, i) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert(e.to_string());
                    }
                    lat.push(t0.elapsed().as_nanos() as u64);
                    i += 1;
                }
                all.lock().unwrap().extend(lat);
            });
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = all.into_inner().unwrap();
    if let Some(e) = first_error.into_inner().unwrap() {
        eprintln!("  error (first of {}): {e}", errors.load(Ordering::Relaxed));
    }
    lat.sort_unstable();
    let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or(0);
    Cell {
        ops_per_s: lat.len() as f64 / elapsed,
        p99_us: p99 as f64 / 1000.0,
        errors: errors.load(Ordering::Relaxed),
    }
}

/// Every operation of `t` with `threads` threads.
fn run_target(t: &Target, threads: usize, secs: f64, run: u64) -> Vec<Cell> {
    let data = vec![b'x'; 1000];
    let value = vec![b'v'; 100];
    let mut cells = Vec::new();
    // Sessions: the ids created here are read and touched next.
    let ids: Mutex<Vec<SessionId>> = Mutex::new(Vec::new());
    cells.push(measure(threads, secs, &|th, i| {
        let user = format!("user{}", splitmix(run ^ (th as u64) << 32 ^ i) % KEYS);
        let id = t.sessions.create_for_user(&user, &data, HOUR)?;
        if i < 20_000 {
            ids.lock().unwrap().push(id);
        }
        Ok(())
    }));
    let ids = ids.into_inner().unwrap();
    let pick =
        |th: usize, i: u64| &ids[(splitmix((th as u64) << 40 ^ i) % ids.len() as u64) as usize];
    cells.push(measure(threads, secs, &|th, i| {
        t.sessions
            .get(pick(th, i).as_str())?
            .ok_or(cairn::Error::InvalidArgument("no session".into()))?;
        Ok(())
    }));
    cells.push(measure(threads, secs, &|th, i| {
        t.sessions
            .get_and_touch(pick(th, i).as_str())?
            .ok_or(cairn::Error::InvalidArgument("no session".into()))?;
        Ok(())
    }));
    // Cache: every key is present before the hits are measured.
    let ckey = |th: usize, i: u64| format!("item:{}", splitmix((th as u64) << 40 ^ i) % KEYS);
    for k in 0..KEYS {
        if t.cache
            .insert(format!("item:{k}"), &value, Some(HOUR))
            .is_err()
        {
            break;
        }
    }
    cells.push(measure(threads, secs, &|th, i| {
        t.cache
            .get(ckey(th, i))?
            .ok_or(cairn::Error::InvalidArgument("cache miss".into()))?;
        Ok(())
    }));
    cells.push(measure(threads, secs, &|th, i| {
        t.cache.insert(ckey(th, i), &value, Some(HOUR))
    }));
    let lkey = |th: usize, i: u64| format!("10.0.{}", splitmix((th as u64) << 40 ^ i) % KEYS);
    cells.push(measure(threads, secs, &|th, i| {
        let d = t.window.check(lkey(th, i))?;
        assert!(d.allowed);
        Ok(())
    }));
    cells.push(measure(threads, secs, &|th, i| {
        let d = t.gcra.check(lkey(th, i))?;
        assert!(d.allowed);
        Ok(())
    }));
    cells.push(measure(threads, secs, &|th, i| match t
        .idem
        .begin(format!("order-{run}-{threads}-{th}-{i}"), HOUR)?
    {
        Begin::Started(claim) => {
            t.idem.complete(&claim, b"201 Created")?;
            Ok(())
        }
        _ => Err(cairn::Error::InvalidArgument("key already claimed".into())),
    }));
    cells
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secs: f64 = std::env::var("LADDER_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let thread_counts: Vec<usize> = std::env::var("LADDER_THREADS")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .map(|s| s.trim().parse())
        .collect::<Result<_, _>>()?;
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let mut targets = Vec::new();
    for arg in std::env::args().skip(1) {
        let (label, spec) = arg
            .split_once('=')
            .ok_or("usage: ladder-bench LABEL=SPEC...")?;
        targets.push(open(label, spec)?);
    }
    let load_before = loadavg();
    // results[target][threads][op]
    let mut results = Vec::new();
    for t in &targets {
        let mut per = Vec::new();
        for &n in &thread_counts {
            eprintln!("{} with {n} thread(s), load {}", t.label, loadavg());
            per.push(run_target(t, n, secs, run));
        }
        results.push(per);
    }
    println!(
        "{} s per cell; load average (1, 5, 15 min) {load_before} before, {} after",
        secs,
        loadavg()
    );
    for (ti, &n) in thread_counts.iter().enumerate() {
        println!("\n**{n} client thread(s)**: ops/s, p99 in µs\n");
        let mut head = "| operation |".to_owned();
        let mut rule = "|---|".to_owned();
        for t in &targets {
            head.push_str(&format!(" {} |", t.label));
            rule.push_str("---:|");
        }
        println!("{head}\n{rule}");
        for (oi, op) in OPS.iter().enumerate() {
            let mut row = format!("| {op} |");
            for r in &results {
                let c: Cell = r[ti][oi];
                let err = if c.errors > 0 {
                    format!(" ({} errors)", c.errors)
                } else {
                    String::new()
                };
                row.push_str(&format!(
                    " {} / {}{err} |",
                    fmt_ops(c.ops_per_s),
                    fmt_us(c.p99_us)
                ));
            }
            println!("{row}");
        }
    }
    Ok(())
}

fn fmt_ops(x: f64) -> String {
    if x >= 100_000.0 {
        format!("{:.0}k", x / 1000.0)
    } else if x >= 1000.0 {
        format!("{:.1}k", x / 1000.0)
    } else {
        format!("{x:.0}")
    }
}

fn fmt_us(x: f64) -> String {
    if x >= 1000.0 {
        format!("{:.1} ms", x / 1000.0)
    } else if x >= 10.0 {
        format!("{x:.0} µs")
    } else {
        format!("{x:.1} µs")
    }
}
