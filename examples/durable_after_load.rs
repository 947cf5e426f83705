//! Durable single puts right after a bulk load, against the disk's limit,
//! in one process (issue 18, step 4):
//!
//! ```text
//! cargo run --release --example durable_after_load [N] [SECS]
//! ```
//!
//! Loads N keys (16-byte keys, 100-byte values, batches of 1,000,
//! `SyncPolicy::Never`, then a sync), closes, reopens under
//! `SyncPolicy::Always` and puts new keys from one thread for SECS seconds.
//! Beside it, before and after, the limit: 148-byte `pwrite`s (a record's
//! size) into a file pre-filled with zeros, each followed by `fdatasync`.
//! `WARM=0` turns the warm-up after open off.
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use cairn::{Options, SyncPolicy};
use common::key;

mod common;

const RECORD: usize = 148;

fn report(what: &str, mut lat: Vec<u64>, secs: f64) {
    let n = lat.len();
    lat.sort_unstable();
    let p = |q: f64| lat[((n as f64 * q) as usize).min(n - 1)] as f64 / 1000.0;
    println!(
        "{what:<28} {:>7.0} ops/s  p50 {:>7.1} µs  p99 {:>8.1} µs  max {:>8.1} µs",
        n as f64 / secs,
        p(0.5),
        p(0.99),
        p(1.0)
    );
}

/// Timed loop of `op` for `secs`: one latency sample per call.
fn timed(secs: f64, mut op: impl FnMut(u64)) -> (Vec<u64>, f64) {
    let start = Instant::now();
    let mut lat = Vec::new();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        let t = Instant::now();
        op(i);
        lat.push(t.elapsed().as_nanos() as u64);
        i += 1;
    }
    (lat, start.elapsed().as_secs_f64())
}

fn limit(dir: &std::path::Path, secs: f64) -> std::io::Result<(Vec<u64>, f64)> {
    let path = dir.join("limit");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    let zeros = vec![0u8; 64 << 20];
    f.write_all(&zeros)?;
    f.sync_all()?;
    let rec = [b'r'; RECORD];
    let r = timed(secs, |i| {
        let at = (i * RECORD as u64) % (zeros.len() as u64 - RECORD as u64);
        f.write_all_at(&rec, at).expect("pwrite");
        f.sync_data().expect("fdatasync");
    });
    std::fs::remove_file(&path)?;
    Ok(r)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let secs: f64 = common::arg(2, 3.0);
    let warm = std::env::var("WARM").map_or(true, |v| v != "0");
    let base = tempfile::tempdir_in("/var/tmp")?;
    let (lat, s) = limit(base.path(), secs)?;
    report("limit (before)", lat, s);

    let dir = base.path().join("db");
    let t = Instant::now();
    let db = Options::new().sync_policy(SyncPolicy::Never).open(&dir)?;
    common::load(&db, n)?;
    db.sync()?;
    db.close()?;
    println!("loaded {n} keys in {:.2} s", t.elapsed().as_secs_f64());

    let t = Instant::now();
    let db = Options::new()
        .sync_policy(SyncPolicy::Always)
        .warm_up_after_open(warm)
        .open(&dir)?;
    println!("reopened in {:.3} s", t.elapsed().as_secs_f64());
    let (lat, s) = timed(secs, |i| {
        db.put(key(n + i), [b'v'; 100]).expect("put");
    });
    report("cairn after load (Always)", lat, s);
    let st = db.stats();
    println!("stats after: {st:?}");
    db.close()?;

    let (lat, s) = limit(base.path(), secs)?;
    report("limit (after)", lat, s);
    Ok(())
}
