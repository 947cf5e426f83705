//! Measures open time: `cargo run --release --example open_time [N]`.
//!
//! Loads N keys (16-byte keys, 100-byte values), closes, then times five
//! opens with hints and five without (hint files deleted before each).
use std::time::Instant;

use cairn::{Batch, Db, Options, SyncPolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir()?;
    {
        let db = Options::new()
            .sync_policy(SyncPolicy::Never)
            .open(dir.path())?;
        let mut i = 0;
        while i < n {
            let mut b = Batch::new();
            for j in i..(i + 1000).min(n) {
                let mut k = [0u8; 16];
                k[..8].copy_from_slice(&j.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                k[8..].copy_from_slice(&j.to_be_bytes());
                b.push_put(k, [b'v'; 100], None);
            }
            db.write_batch(b)?;
            i += 1000;
        }
        db.close()?;
    }
    // Let every hint be written: one open writes any that are missing.
    drop(Db::open(dir.path())?);
    for hints in [true, false] {
        let mut times = Vec::new();
        for _ in 0..5 {
            if !hints {
                for e in std::fs::read_dir(dir.path())?.flatten() {
                    if e.path().extension().is_some_and(|x| x == "hint") {
                        std::fs::remove_file(e.path())?;
                    }
                }
            }
            let t = Instant::now();
            let db = Options::new().read_only(!hints).open(dir.path())?;
            let el = t.elapsed();
            assert_eq!(db.len()? as u64, n);
            times.push(el.as_secs_f64() * 1000.0);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!(
            "open {n} keys {}: median {:.0} ms (min {:.0}, max {:.0})",
            if hints { "with hints" } else { "without hints" },
            times[2],
            times[0],
            times[4]
        );
    }
    Ok(())
}
