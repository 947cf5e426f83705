//! A writer for measuring `cairn follow` (docs/benchmarks.md):
//!
//! ```text
//! follow_load <dir> fill <n>            # n puts as fast as it can, then exit
//! follow_load <dir> <rate/s> <secs>     # a steady rate of puts for secs seconds
//! ```
//!
//! Puts of 100-byte values over 100,000 keys, `SyncPolicy::EveryMillis(100)`,
//! automatic compaction off (so that a follower's position stays in the log).
//! Build with `cargo build --release -p cairn-cli --example follow_load`.

use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: follow_load <dir> fill <n> | follow_load <dir> <rate/s> <secs>";
    let (Some(dir), Some(a), Some(b)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let num = |s: &str| -> u64 {
        s.parse().unwrap_or_else(|_| {
            eprintln!("{usage}");
            std::process::exit(2)
        })
    };
    let db = cairn::Options::new()
        .sync_policy(cairn::SyncPolicy::EveryMillis(100))
        .auto_compact(false)
        .open(dir)
        .unwrap_or_else(|e| {
            eprintln!("cannot open {dir}: {e}");
            std::process::exit(1)
        });
    let value = [b'v'; 100];
    let put = |i: u64| {
        if let Err(e) = db.put(format!("key:{:06}", i % 100_000), value) {
            eprintln!("put: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    let mut n = 0u64;
    if a == "fill" {
        for i in 0..num(b) {
            put(i);
            n += 1;
        }
    } else {
        let (rate, secs) = (num(a), num(b));
        while start.elapsed() < Duration::from_secs(secs) {
            let due =
                u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX) * rate / 1_000_000;
            while n < due {
                put(n);
                n += 1;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let _ = db.sync();
    let secs = start.elapsed().as_secs_f64();
    eprintln!("wrote {n} puts in {secs:.1} s ({:.0}/s)", n as f64 / secs);
}
