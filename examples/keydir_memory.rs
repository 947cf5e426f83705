//! Measures the memory cost per key of the in-memory index.
//!
//! `cargo run --release --example keydir_memory [N] [KEY_BYTES] [DIR]` loads
//! N keys (default 1,000,000) of KEY_BYTES bytes (default 16, at least 16)
//! with 100-byte values, and prints the process RSS
//! growth per key (Linux, from /proc/self/status) next to cairn's own
//! estimate from `Stats::keydir_memory_bytes`. Values live on disk, so the
//! RSS growth is the index plus allocator overhead.
//!
//! With DIR, the keys are loaded into DIR and the store closed; a second
//! run with the same DIR (a fresh process) opens it and prints the RSS
//! growth of the open alone: what issue 18's memory goal measures.

use cairn::{Options, SyncPolicy};

mod common;

fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Loads keys `0..n` of `key_bytes` bytes (the 16-byte key of
/// `common::key`, padded) with 100-byte values, in batches of 1,000.
fn load(db: &cairn::Db, n: u64, key_bytes: usize) -> cairn::Result<()> {
    let mut k = vec![b'k'; key_bytes];
    let mut i = 0;
    while i < n {
        let mut b = cairn::Batch::new();
        for j in i..(i + 1000).min(n) {
            k[..16].copy_from_slice(&common::key(j));
            b.push_put(&k[..], [b'v'; 100], None);
        }
        db.write_batch(b)?;
        i += 1000;
    }
    Ok(())
}

/// Loads the keys into `dir` when it holds no store; else opens it (in
/// this fresh process) and prints the RSS growth of the open.
fn in_dir(
    dir: &std::path::Path,
    n: u64,
    key_bytes: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let opts = Options::new()
        .sync_policy(SyncPolicy::Never)
        .use_mmap(false)
        .warm_up_after_open(false);
    if cairn::segment_ids(dir).map_or(true, |ids| ids.is_empty()) {
        let db = opts.open(dir)?;
        load(&db, n, key_bytes)?;
        db.close()?;
        // The next open finds every hint file written.
        drop(Options::new().open(dir)?);
        println!(
            "loaded {n} keys of {key_bytes} bytes into {}",
            dir.display()
        );
        return Ok(());
    }
    let before = rss_bytes().unwrap_or(0);
    let db = opts.open(dir)?;
    let after = rss_bytes().unwrap_or(0);
    let keys = db.len()?;
    println!(
        "fresh open of {keys} keys: RSS growth {} bytes = {:.1} bytes/key; estimate {:.1} bytes/key",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / keys as f64,
        db.stats().keydir_memory_bytes as f64 / keys as f64
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = common::arg(1, 1_000_000);
    let key_bytes: usize = common::arg::<usize>(2, 16).max(16);
    if let Some(dir) = std::env::args().nth(3) {
        return in_dir(std::path::Path::new(&dir), n, key_bytes);
    }
    let dir = tempfile::tempdir()?;
    // Maps are turned off so that page-cache pages of mapped segments do not
    // count towards RSS: what is measured is the index alone.
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .use_mmap(false)
        .open(dir.path())?;
    let before = rss_bytes().unwrap_or(0);
    load(&db, n, key_bytes)?;
    // Let the background thread finish the hint files of sealed segments
    // (it reads each sealed segment once) before measuring.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let after = rss_bytes().unwrap_or(0);
    let s = db.stats();
    println!("keys: {n} of {key_bytes} bytes");
    println!(
        "RSS growth: {} bytes = {:.1} bytes/key",
        after.saturating_sub(before),
        after.saturating_sub(before) as f64 / n as f64
    );
    println!(
        "keydir estimate: {} bytes = {:.1} bytes/key",
        s.keydir_memory_bytes,
        s.keydir_memory_bytes as f64 / n as f64
    );
    drop(db);

    // The same after a reopen, when the index is rebuilt from hints and segments.
    let before = rss_bytes().unwrap_or(0);
    let db = Options::new().use_mmap(false).open(dir.path())?;
    let after = rss_bytes().unwrap_or(0);
    println!(
        "after reopen: RSS growth {:.1} bytes/key, estimate {:.1} bytes/key",
        after.saturating_sub(before) as f64 / n as f64,
        db.stats().keydir_memory_bytes as f64 / n as f64
    );
    Ok(())
}
