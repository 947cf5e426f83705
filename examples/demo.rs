//! A tour of cairn on a fresh directory: `cargo run --release --example demo [DIR]`.
//!
//! Without DIR it uses a new temporary directory. Run it twice with the same
//! DIR to see the data, the counter and the TTLs survive the restart.

use std::time::{Duration, Instant};

use cairn::{Batch, Options, SyncPolicy, Ttl};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match std::env::args_os().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    println!("cairn demo in {}", dir.display());

    let t = Instant::now();
    let db = Options::new().sync_policy(SyncPolicy::Always).open(&dir)?;
    let report = db.recovery_report();
    println!(
        "opened in {:?}: {} live keys ({} segments from hints, {} scanned)",
        t.elapsed(),
        db.len()?,
        report.segments_from_hints,
        report.segments_scanned
    );

    // A session with a sliding TTL, as a web app would keep it.
    let sid = "session:4f9a1c";
    if let Some(data) = db.get(sid)? {
        println!(
            "found session from an earlier run: {}",
            String::from_utf8_lossy(&data)
        );
    }
    db.put_with_ttl(
        sid,
        r#"{"user":42,"cart":[7,9]}"#,
        Duration::from_secs(30 * 60),
    )?;
    if let Ttl::Expires(left) = db.ttl(sid)? {
        println!("session expires in {}s", left.as_secs());
    }

    // A counter that survives restarts.
    let runs = db.incr("demo:runs", 1)?;
    println!("this demo has run {runs} time(s) on this directory");

    // An idempotency key: only the first request with this key does the work.
    let first = db.put_if_absent("idem:order-1001", "done", Some(Duration::from_secs(86_400)))?;
    println!("idempotency key taken by this run: {first}");

    // An atomic batch and a prefix scan.
    db.write_batch(
        Batch::new()
            .put("user:1", "ada")
            .put("user:2", "grace")
            .put_with_ttl("user:3", "temp", Duration::from_secs(60)),
    )?;
    for item in db.scan_prefix("user:") {
        let (k, v) = item?;
        println!(
            "  {} = {}",
            String::from_utf8_lossy(&k),
            String::from_utf8_lossy(&v)
        );
    }

    // Compare-and-set.
    let cas = db.compare_and_swap("config:version", None, Some(b"1"))?;
    println!("config created by compare-and-swap: {}", cas.is_ok());

    // Durable writes per second with group commit, one thread.
    let t = Instant::now();
    let n = 200;
    for i in 0..n {
        db.put(format!("bench:{i}"), [0u8; 100])?;
    }
    let el = t.elapsed();
    println!(
        "{n} durable puts in {el:?} ({:.0}/s, each fsynced before it returned)",
        n as f64 / el.as_secs_f64()
    );

    let s = db.stats();
    println!(
        "stats: {} live keys, {} live bytes, {} dead bytes, {} segment(s), {} fsyncs",
        s.live_keys, s.live_bytes, s.dead_bytes, s.segments, s.fsyncs
    );
    db.close()?;
    Ok(())
}
