//! Disk use under a steady update-heavy workload, with automatic compaction.
//!
//! `cargo run --release --example disk_use [WRITES] [SEGMENT_BYTES] [WRITES_PER_SEC]`
//!
//! The same 100,000 keys are overwritten again and again with 100-byte
//! values; 10% of writes delete a key and 10% carry a short TTL (1 to 10
//! seconds of simulated time; the clock moves 20 us per write). Every
//! 250,000 writes it prints a row: live bytes (records that hold the live
//! keys' current values), bytes of segment files on disk, their ratio, and
//! the number of segments. Defaults: 5,000,000 writes, 4 MiB segments, no
//! rate limit (the writer runs flat out). Automatic compaction checks every
//! `INTERVAL_MS` milliseconds (default 200) with a space-amplification
//! bound of `AMP` (default 1.5, the library's default). `VALUE_BYTES`
//! changes the value size (default 100).

use std::time::{Duration, Instant};

use cairn::{ManualClock, Options, SyncPolicy};
use common::splitmix;

mod common;

/// Bytes of segment files, and of every file in the directory (segments,
/// hints, compaction's temporary outputs, the lock file).
fn disk_bytes(dir: &std::path::Path) -> (u64, u64) {
    let mut seg = 0;
    let mut all = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        all += len;
        if e.path().extension().is_some_and(|x| x == "seg") {
            seg += len;
        }
    }
    (seg, all)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let writes: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(5_000_000);
    let segment: u64 = std::env::args()
        .nth(2)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(4 << 20);
    let rate: u64 = std::env::args()
        .nth(3)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(0);
    let value_len: usize = std::env::var("VALUE_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let keys = 100_000u64;
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(1_700_000_000_000);
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .max_segment_bytes(segment)
        .compaction_small_segment_bytes(segment / 4)
        .compaction_max_space_amplification(
            std::env::var("AMP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1.5),
        )
        .expiry_sweep_interval_ms(200)
        .compaction_interval_ms(
            std::env::var("INTERVAL_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200),
        )
        .clock(clock.clone())
        .open(dir.path())?;
    println!(
        "segment size {segment} bytes, {keys} keys, {value_len}-byte values, {} writes/s",
        if rate == 0 {
            "unlimited".to_string()
        } else {
            rate.to_string()
        }
    );
    println!(
        "| writes | live keys | live MiB | segment MiB | segments / live | all files / live | segments | write stalls |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    let mut worst = 0f64;
    let mut worst_all = 0f64;
    let value = vec![b'v'; value_len];
    for i in 1..=writes {
        let r = splitmix(i);
        let key = format!("key:{:08}", r % keys);
        match (r >> 32) % 10 {
            0 => {
                db.delete(&key)?;
            }
            1 => db.put_with_ttl(
                &key,
                &value,
                Duration::from_millis(1_000 + (r >> 40) % 9_000),
            )?,
            _ => db.put(&key, &value)?,
        }
        clock.advance(Duration::from_micros(20));
        if rate > 0 && i % 1000 == 0 {
            let due = Duration::from_secs_f64(i as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if i % 10_000 == 0 {
            let s = db.stats();
            let (disk, all) = disk_bytes(dir.path());
            let live = s.live_bytes.max(1) as f64;
            let ratio = disk as f64 / live;
            if i >= writes / 5 {
                worst = worst.max(ratio);
                worst_all = worst_all.max(all as f64 / live);
            }
            if i % 250_000 == 0 {
                println!(
                    "| {i} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {} | {} |",
                    s.live_keys,
                    s.live_bytes as f64 / 1048576.0,
                    disk as f64 / 1048576.0,
                    ratio,
                    all as f64 / live,
                    s.segments,
                    s.write_stalls
                );
            }
        }
    }
    println!(
        "worst over samples every 10,000 writes after the first 20%: segments/live {worst:.2}, all files/live {worst_all:.2} ({:?} in all, {:.0} writes/s, {} write stalls, {:?} stalled)",
        started.elapsed(),
        writes as f64 / started.elapsed().as_secs_f64(),
        db.stats().write_stalls,
        db.stats().write_stall_time,
    );
    Ok(())
}
