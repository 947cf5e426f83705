//! Profiling aid: `cargo run --release --example put_loop [N]` overwrites
//! random keys among N with SyncPolicy::Never and prints ns/put.
use cairn::{Options, SyncPolicy};
use common::key;

mod common;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 100_000);
    let dir = tempfile::tempdir()?;
    let policy = if std::env::var_os("EVERY").is_some() {
        SyncPolicy::EveryMillis(1_000_000)
    } else {
        SyncPolicy::Never
    };
    let db = Options::new().sync_policy(policy).open(dir.path())?;
    let mut x = 1u64;
    for round in 0..3 {
        let t = Instant::now();
        let m = 1_000_000u64;
        for _ in 0..m {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            db.put(key((x >> 11) % n), [b'v'; 100])?;
        }
        println!(
            "round {round}: {:.0} ns/put",
            t.elapsed().as_nanos() as f64 / m as f64
        );
    }
    Ok(())
}
