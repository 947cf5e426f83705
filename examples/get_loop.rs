//! Profiling aid: `cargo run --release --example get_loop [N] [mmap 0|1]`
//! loads N keys and runs random gets for a few seconds, printing ns/get.
use cairn::{Options, SyncPolicy};
use common::key;

mod common;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let mmap = std::env::args().nth(2).is_none_or(|a| a != "0");
    let dir = tempfile::tempdir()?;
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .use_mmap(mmap)
        .open(dir.path())?;
    common::load(&db, n)?;
    let mut x = 1u64;
    for round in 0..3 {
        let t = Instant::now();
        let m = 3_000_000u64;
        let mut found = 0u64;
        for _ in 0..m {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if db.get(key((x >> 11) % n))?.is_some() {
                found += 1;
            }
        }
        println!(
            "round {round}: {:.0} ns/get ({found} found)",
            t.elapsed().as_nanos() as f64 / m as f64
        );
    }
    Ok(())
}
