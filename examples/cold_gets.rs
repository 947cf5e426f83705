//! Gets right after a cold restart, with and without the warm-up after
//! open (`Options::warm_up_after_open`):
//!
//! ```sh
//! sudo cargo run --release --example cold_gets -- [N] [REPS] [DIR] [WHAT]
//! ```
//!
//! WHAT is `all` (the default), `cold`, `warm` or `puts`: which of the
//! three parts below to run.
//!
//! Loads N keys (16-byte keys, 100-byte values; default 1,000,000) into a
//! new store under DIR (default /var/tmp), closes it, then REPS times
//! (default 3), for the warm-up on and off, each in a fresh open: drops
//! the page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`, needs root;
//! a warning says when it fails, and the figures are then warm ones),
//! opens, and times the first 100,000 random gets (mean, p50, p99), the
//! open and the warm-up. Then two checks: random gets once the warm-up is
//! over against the same without it (warm page cache both), and durable
//! puts (`SyncPolicy::Always`) made while the warm-up runs against the
//! same with it off.
use std::path::Path;
use std::time::{Duration, Instant};

use cairn::{Db, Options, SyncPolicy};

mod common;

/// Gets timed right after open.
const COLD_GETS: usize = 100_000;
/// Gets timed for the warm comparison.
const WARM_GETS: usize = 1_000_000;
/// Durable puts timed while the warm-up runs.
const PUTS: usize = 2_000;

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    match std::fs::write("/proc/sys/vm/drop_caches", "3\n") {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "WARNING: could not drop the page cache ({e}; needs root): \
                 the 'cold' figures below are warm ones"
            );
            false
        }
    }
}

/// Mean, p50 and p99 of `ns`, in µs.
fn summary(ns: &mut [u64]) -> (f64, f64, f64) {
    ns.sort_unstable();
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64;
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)] as f64;
    (mean / 1e3, at(0.50) / 1e3, at(0.99) / 1e3)
}

/// Times `count` random gets, each on its own.
fn timed_gets(db: &Db, n: u64, count: usize, seed: u64) -> Result<Vec<u64>, cairn::Error> {
    let mut ns = Vec::with_capacity(count);
    for i in 0..count {
        let k = common::key(common::splitmix(seed ^ i as u64) % n);
        let t = Instant::now();
        let v = db.get(k)?;
        ns.push(t.elapsed().as_nanos() as u64);
        assert!(v.is_some_and(|v| v.len() == 100), "a loaded key is missing");
    }
    Ok(ns)
}

fn opts(warm_up: bool) -> Options {
    Options::new()
        .sync_policy(SyncPolicy::Never)
        .warm_up_after_open(warm_up)
}

/// Waits for the warm-up to finish; returns what it read and its time.
fn wait_for_warm_up(db: &Db) -> (u64, Duration) {
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let s = db.stats();
        if !s.warm_up_time.is_zero() || Instant::now() > until {
            return (s.warm_up_bytes_read, s.warm_up_time);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "warm-up on "
    } else {
        "warm-up off"
    }
}

fn cold_rounds(dir: &Path, n: u64, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    for rep in 0..reps {
        for warm_up in [true, false] {
            drop_caches();
            let t = Instant::now();
            let db = opts(warm_up).open(dir)?;
            let open = t.elapsed();
            let t = Instant::now();
            let mut ns = timed_gets(&db, n, COLD_GETS, rep as u64 * 1000 + 1)?;
            let gets = t.elapsed();
            let (mean, p50, p99) = summary(&mut ns);
            let (bytes, took) = if warm_up {
                wait_for_warm_up(&db)
            } else {
                (0, Duration::ZERO)
            };
            println!(
                "rep {rep} {}: open {:.3} s; first {COLD_GETS} gets: mean {mean:.2} µs, \
                 p50 {p50:.2}, p99 {p99:.2} ({:.3} s in all); warm-up read {:.0} MB in {:.3} s",
                on_off(warm_up),
                open.as_secs_f64(),
                gets.as_secs_f64(),
                bytes as f64 / 1e6,
                took.as_secs_f64()
            );
            db.close()?;
        }
    }
    Ok(())
}

/// Warm gets once the warm-up is over, against the same without it.
fn warm_rounds(dir: &Path, n: u64) -> Result<(), Box<dyn std::error::Error>> {
    for warm_up in [true, false, true, false] {
        let db = opts(warm_up).open(dir)?;
        if warm_up {
            wait_for_warm_up(&db);
        }
        // Touch every page once, so that both runs measure warm gets.
        timed_gets(&db, n, WARM_GETS, 99)?;
        let mut ns = timed_gets(&db, n, WARM_GETS, 7)?;
        let (mean, p50, p99) = summary(&mut ns);
        println!(
            "warm gets, {}: mean {:.0} ns, p50 {:.0}, p99 {:.0}",
            on_off(warm_up),
            mean * 1e3,
            p50 * 1e3,
            p99 * 1e3
        );
        db.close()?;
    }
    Ok(())
}

/// Durable puts right after a cold open, while the warm-up runs.
fn put_rounds(dir: &Path, n: u64, reps: usize) -> Result<(), Box<dyn std::error::Error>> {
    for warm_up in (0..reps).flat_map(|_| [true, false]) {
        drop_caches();
        let db = opts(warm_up).sync_policy(SyncPolicy::Always).open(dir)?;
        let mut ns = Vec::with_capacity(PUTS);
        let t = Instant::now();
        for i in 0..PUTS as u64 {
            let k = common::key(common::splitmix(i ^ 0xabc) % n);
            let t = Instant::now();
            db.put(k, [b'p'; 100])?;
            ns.push(t.elapsed().as_nanos() as u64);
        }
        let all = t.elapsed();
        let during = db.stats().warm_up_time.is_zero() && warm_up;
        let (mean, p50, p99) = summary(&mut ns);
        let (_, took) = if warm_up {
            wait_for_warm_up(&db)
        } else {
            (0, Duration::ZERO)
        };
        println!(
            "{PUTS} durable puts after a cold open, {}: mean {mean:.0} µs, p50 {p50:.0}, \
             p99 {p99:.0} ({:.3} s; warm-up {:.3} s{})",
            on_off(warm_up),
            all.as_secs_f64(),
            took.as_secs_f64(),
            if during {
                ", still running at the last put"
            } else {
                ""
            }
        );
        db.close()?;
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let reps: usize = common::arg(2, 3);
    let parent: String = common::arg(3, "/var/tmp".to_string());
    let dir = tempfile::Builder::new()
        .prefix("cairn-cold-gets-")
        .tempdir_in(parent)?;
    let t = Instant::now();
    {
        let db = opts(false).open(dir.path())?;
        common::load(&db, n)?;
        db.close()?;
    }
    // Let every hint be written: one open writes any that are missing.
    opts(false).open(dir.path())?.close()?;
    let log: u64 = std::fs::read_dir(dir.path())?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    println!(
        "loaded {n} keys (16-byte keys, 100-byte values) in {:.1} s; {:.0} MB of segments",
        t.elapsed().as_secs_f64(),
        log as f64 / 1e6
    );
    let what: String = common::arg(4, "all".to_string());
    if what == "all" || what == "cold" {
        cold_rounds(dir.path(), n, reps)?;
    }
    if what == "all" || what == "warm" {
        warm_rounds(dir.path(), n)?;
    }
    if what == "all" || what == "puts" {
        // The puts change the store: last.
        put_rounds(dir.path(), n, reps)?;
    }
    Ok(())
}
