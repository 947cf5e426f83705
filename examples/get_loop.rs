//! Profiling aid: `cargo run --release --example get_loop [N] [mmap 0|1]`
//! loads N keys and runs random gets for a few seconds, printing ns/get.
use cairn::{Batch, Options, SyncPolicy};
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
        .unwrap_or(1_000_000);
    let mmap = std::env::args().nth(2).is_none_or(|a| a != "0");
    let dir = tempfile::tempdir()?;
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .use_mmap(mmap)
        .open(dir.path())?;
    let mut i = 0;
    while i < n {
        let mut b = Batch::new();
        for j in i..(i + 1000).min(n) {
            b.push_put(key(j), [b'v'; 100], None);
        }
        db.write_batch(b)?;
        i += 1000;
    }
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
