//! Measures open time: `cargo run --release --example open_time [N]`.
//!
//! Loads N keys (16-byte keys, 100-byte values), closes, then times five
//! opens with hints and five without (hint files deleted before each).
use std::time::Instant;

use cairn::{Db, Options, SyncPolicy};

mod common;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let dir = tempfile::tempdir()?;
    {
        let db = Options::new()
            .sync_policy(SyncPolicy::Never)
            .open(dir.path())?;
        common::load(&db, n)?;
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
