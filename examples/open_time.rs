//! Measures open and close time:
//! `cargo run --release --example open_time [N] [DIR]`.
//!
//! Loads N keys (16-byte keys, 100-byte values) into a new store in a
//! temporary directory under DIR (default: the system's), closes it, then
//! times five opens of each kind: from the index checkpoint a clean close
//! wrote, from hints (checkpoint moved aside), and without hints (hint
//! files deleted too); and five closes of a writable handle with and
//! without writing the checkpoint. With `CAIRN_DROP_CACHES=1` (as root) the
//! page cache is dropped before each open (`sync; echo 3 >
//! /proc/sys/vm/drop_caches`).
use std::path::{Path, PathBuf};
use std::time::Instant;

use cairn::{CheckpointUse, Db, Options, SyncPolicy};

mod common;

/// Drops the page cache when `CAIRN_DROP_CACHES=1`.
fn drop_caches() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var("CAIRN_DROP_CACHES").is_ok_and(|v| v == "1") {
        std::process::Command::new("sync").status()?;
        std::fs::write("/proc/sys/vm/drop_caches", "3")?;
    }
    Ok(())
}

/// Median, min and max of `times` (ms).
fn summary(mut times: Vec<f64>) -> String {
    times.sort_by(|a, b| a.total_cmp(b));
    format!(
        "median {:.0} ms (min {:.0}, max {:.0})",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let base: PathBuf = common::arg(2, std::env::temp_dir());
    let dir = tempfile::tempdir_in(base)?;
    let dir = dir.path();
    {
        let db = Options::new().sync_policy(SyncPolicy::Never).open(dir)?;
        common::load(&db, n)?;
        db.close()?;
    }
    // Let every hint be written: one open writes any that are missing.
    drop(Db::open(dir)?);
    let ckpt = dir.join("index.ckpt");
    println!(
        "{n} keys: index checkpoint {:.1} MB",
        std::fs::metadata(&ckpt)?.len() as f64 / 1e6
    );
    // Closing a writable handle, with and without the checkpoint.
    for write in [true, false] {
        let mut times = Vec::new();
        for _ in 0..5 {
            let db = Options::new()
                .warm_up_after_open(false)
                .index_checkpoint_at_close(write)
                .open(dir)?;
            let t = Instant::now();
            db.close()?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "close {n} keys {}: {}",
            if write {
                "writing the checkpoint"
            } else {
                "without the checkpoint"
            },
            summary(times)
        );
    }
    drop(Options::new().open(dir)?); // writes the checkpoint again
    open_times(dir, n, "from the checkpoint", CheckpointUse::Used)?;
    std::fs::rename(&ckpt, dir.join("index.ckpt.aside"))?;
    open_times(dir, n, "from hints", CheckpointUse::Missing)?;
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.path().extension().is_some_and(|x| x == "hint") {
            std::fs::remove_file(e.path())?;
        }
    }
    open_times(dir, n, "without hints", CheckpointUse::Missing)?;
    Ok(())
}

/// Five read-only opens (which change nothing), each after dropping the
/// page cache when asked to.
fn open_times(
    dir: &Path,
    n: u64,
    what: &str,
    want: CheckpointUse,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut times = Vec::new();
    for _ in 0..5 {
        drop_caches()?;
        let t = Instant::now();
        let db = Options::new()
            .read_only(true)
            .warm_up_after_open(false)
            .open(dir)?;
        let el = t.elapsed();
        assert_eq!(db.recovery_report().checkpoint, want);
        assert_eq!(db.len()? as u64, n);
        times.push(el.as_secs_f64() * 1000.0);
    }
    println!("open {n} keys {what}: {}", summary(times));
    Ok(())
}
