//! A read-through cache that is warm after a restart:
//! `cargo run --release --example cache [DIR]`.
//!
//! Serves "pages" through `get_or_insert_with` with a slow loader, shows
//! singleflight (8 threads miss the same key, the loader runs once),
//! bounded size with durable eviction, group invalidation, and the
//! counters. Run it twice with the same DIR to see the second run start
//! warm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::cache::CacheOptions;
use cairn::{Options, SyncPolicy};

fn render(page: &str, loads: &AtomicUsize) -> Result<Vec<u8>, std::io::Error> {
    loads.fetch_add(1, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(20)); // a slow backend
    Ok(format!("<html>{page}</html>").into_bytes())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match std::env::args_os().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    // A cache can lose its last 100 ms on a power loss: EveryMillis.
    let db = Options::new()
        .sync_policy(SyncPolicy::EveryMillis(100))
        .open(&dir)?;
    let cache = CacheOptions::new()
        .max_entries(100)
        .ttl_jitter(0.1)
        .stale_while_revalidate(Duration::from_secs(30))
        .open(db.keyspace("cache")?)?;
    println!(
        "opened with {} cached pages from an earlier run",
        cache.stats().entries
    );
    let loads = Arc::new(AtomicUsize::new(0));
    let ttl = Duration::from_secs(300);

    let t = Instant::now();
    // A skewed mix: every other request is for one of 10 popular pages,
    // the rest for 150 pages seen once each.
    for i in 0..300 {
        let page = if i % 2 == 0 {
            format!("/popular/{}", i % 10)
        } else {
            format!("/page/{i}")
        };
        cache.get_or_insert_with(&page, ttl, || render(&page, &loads))?;
    }
    println!(
        "300 requests over 160 pages in {:?}: {} loads, {} entries kept (max 100)",
        t.elapsed(),
        loads.load(Ordering::Relaxed),
        cache.stats().entries
    );

    // Singleflight: 8 threads miss the same key at once.
    let before = loads.load(Ordering::Relaxed);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loads) = (cache.clone(), loads.clone());
            std::thread::spawn(move || {
                cache.get_or_insert_with("/hot", ttl, || render("/hot", &loads))
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "thread panicked")??;
    }
    println!(
        "8 concurrent misses on /hot: the loader ran {} time(s)",
        loads.load(Ordering::Relaxed) - before
    );

    // Generation keys: invalidate a whole group in O(1).
    let k = cache.group_key("products", "42")?;
    cache.insert(&k, "a product", Some(ttl))?;
    cache.invalidate_group("products")?;
    assert_eq!(cache.get(cache.group_key("products", "42")?)?, None);
    println!("invalidated the products group");

    let s = cache.stats();
    println!(
        "stats: {} hits, {} misses ({:.0}% hits), {} loads, {} evictions, {} entries, {} bytes",
        s.hits,
        s.misses,
        100.0 * s.hit_ratio(),
        s.loads,
        s.evictions,
        s.entries,
        s.bytes
    );
    db.close()?;
    Ok(())
}
