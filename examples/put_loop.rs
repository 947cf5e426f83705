//! Profiling aid: `cargo run --release --example put_loop [N]` overwrites
//! random keys among N with SyncPolicy::Never and prints ns/put.
use cairn::{Options, SyncPolicy};
use std::time::Instant;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
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
