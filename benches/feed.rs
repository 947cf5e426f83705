//! The change feed: how fast one consumer reads it, against reading the
//! same log bytes with no decoding (the machine's limit for this work),
//! and what consumers cost writers.
//!
//! `cargo bench --bench feed` (16-byte keys, 100-byte values):
//! 1. feed throughput: 1M puts logged, then one consumer reads them all,
//!    through a writer handle and through a snapshot handle (as another
//!    process would), beside a plain sequential `pread` of the same
//!    segment files;
//! 2. one writer's put rate, durable (`SyncPolicy::Always`) and relaxed
//!    (`SyncPolicy::Never`), with 0, 1 and 8 consumers following it.
//!
//! `FEED_BENCH_KEYS` and `FEED_BENCH_SECS` change the sizes;
//! `FEED_BENCH_ONLY=feed` or `=writers` runs one part.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::feed::{FeedStart, Position};
use cairn::{Db, Options, SyncPolicy};

const VALUE_LEN: usize = 100;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [b'v'; VALUE_LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

/// Logs `n` puts (as single puts, so each is its own change).
fn load(path: &Path, n: u64) {
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .auto_compact(false)
        .open(path)
        .expect("open");
    for i in 0..n {
        db.put(key(i), value(i)).expect("put");
    }
    db.close().expect("close");
}

/// Reads every segment file front to back in 1 MiB `read`s: the bytes
/// the feed must read, with nothing decoded.
fn raw_read(path: &Path) -> u64 {
    let mut total = 0;
    let mut buf = vec![0u8; 1 << 20];
    let mut names: Vec<_> = std::fs::read_dir(path)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    names.sort();
    for p in names {
        let mut f = std::fs::File::open(&p).expect("open");
        loop {
            let n = f.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
            std::hint::black_box(&buf[..n]);
        }
    }
    total
}

fn consume_all(db: &Db, n: u64) -> Duration {
    let t = Instant::now();
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    let mut seen = 0;
    while seen < n {
        match feed.next_timeout(Duration::from_secs(5)).expect("feed") {
            Some(c) => {
                std::hint::black_box(&c);
                seen += 1;
            }
            None => panic!("the feed stopped at {seen} of {n}"),
        }
    }
    t.elapsed()
}

fn feed_throughput(n: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    load(dir.path(), n);
    // Warm the page cache, then time the plain read.
    raw_read(dir.path());
    let t = Instant::now();
    let bytes = raw_read(dir.path());
    let raw = t.elapsed();
    println!("## Feed throughput: {n} puts of 16 + {VALUE_LEN} bytes ({bytes} bytes of log)");
    println!("| reader | time | changes/s | MB/s |");
    println!("|---|---|---|---|");
    let mbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    println!(
        "| sequential read of the segment files, nothing decoded (limit) | {raw:.2?} | {:.0} | {:.0} |",
        n as f64 / raw.as_secs_f64(),
        mbs(raw)
    );
    let db = Options::new()
        .auto_compact(false)
        .open(dir.path())
        .expect("open");
    let d = consume_all(&db, n);
    println!(
        "| `Db::changes` on the writer's handle | {d:.2?} | {:.0} | {:.0} |",
        n as f64 / d.as_secs_f64(),
        mbs(d)
    );
    drop(db);
    let snap = Options::new()
        .snapshot(true)
        .open(dir.path())
        .expect("snapshot");
    let d = consume_all(&snap, n);
    println!(
        "| `Db::changes` on a snapshot handle (another process) | {d:.2?} | {:.0} | {:.0} |",
        n as f64 / d.as_secs_f64(),
        mbs(d)
    );
    println!();
}

/// One writer for `secs` with `consumers` following; returns puts/s, the
/// slowest consumer's changes/s and its lag at the end.
fn writer_with_consumers(policy: SyncPolicy, consumers: usize, secs: f64) -> (f64, f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(policy)
        .auto_compact(false)
        .open(dir.path())
        .expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for _ in 0..consumers {
        let mut feed = db.changes(FeedStart::Now).expect("feed");
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(c) = feed.next_timeout(Duration::from_millis(20)).expect("feed") {
                    std::hint::black_box(&c);
                    n += 1;
                }
            }
            let lag = feed.lag().expect("lag").seqs;
            (n, lag)
        }));
    }
    let t = Instant::now();
    let mut i = 0u64;
    while t.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            db.put(key(i), value(i)).expect("put");
            i += 1;
        }
    }
    let elapsed = t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let mut slowest = (u64::MAX, 0);
    for h in handles {
        let (n, lag) = h.join().expect("consumer");
        if n < slowest.0 {
            slowest = (n, lag);
        }
    }
    let per_consumer = if consumers == 0 {
        0.0
    } else {
        slowest.0 as f64 / elapsed
    };
    (i as f64 / elapsed, per_consumer, slowest.1)
}

fn writers(secs: f64) {
    println!("## One writer with consumers attached ({secs} s per row)");
    println!(
        "| sync policy | consumers | puts/s | slowest consumer, changes/s | its lag at the end |"
    );
    println!("|---|---|---|---|---|");
    for (name, policy) in [("Always", SyncPolicy::Always), ("Never", SyncPolicy::Never)] {
        for consumers in [0, 1, 8] {
            let (puts, per, lag) = writer_with_consumers(policy, consumers, secs);
            println!(
                "| {name} | {consumers} | {puts:.0} | {} | {} |",
                if consumers == 0 {
                    "-".to_string()
                } else {
                    format!("{per:.0}")
                },
                if consumers == 0 {
                    "-".to_string()
                } else {
                    lag.to_string()
                }
            );
        }
    }
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; there is nothing to filter.
    let n = env_u64("FEED_BENCH_KEYS", 1_000_000);
    let secs = env_u64("FEED_BENCH_SECS", 5) as f64;
    let only = std::env::var("FEED_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "feed" {
        feed_throughput(n);
    }
    if only.is_empty() || only == "writers" {
        writers(secs);
    }
}
