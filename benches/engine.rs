//! Criterion micro benchmarks of cairn's engine.
//!
//! `cargo bench --bench engine` runs them at 1M keys (16-byte keys, 100-byte
//! values). `CAIRN_BENCH_KEYS=10000000` runs them at 10M keys.

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::{Batch, Db, Options, SyncPolicy};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const VALUE_LEN: usize = 100;

fn keys_count() -> u64 {
    std::env::var("CAIRN_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// A 16-byte key from an index: the index's bytes mixed so keys spread.
fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&splitmix(i).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn value(i: u64) -> [u8; VALUE_LEN] {
    let mut v = [b'v'; VALUE_LEN];
    v[..8].copy_from_slice(&i.to_le_bytes());
    v
}

fn load(path: &Path, n: u64) -> Db {
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .auto_compact(std::env::var_os("AB_NO_COMPACT").is_none())
        .open(path)
        .expect("open");
    let mut i = 0;
    while i < n {
        let mut b = Batch::new();
        for j in i..(i + 1000).min(n) {
            b.push_put(key(j), value(j), None);
        }
        db.write_batch(b).expect("batch");
        i += 1000;
    }
    db.sync().expect("sync");
    db
}

fn point_ops(c: &mut Criterion) {
    let n = keys_count();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = load(dir.path(), n);
    let mut g = c.benchmark_group(format!("ops_{n}_keys"));
    g.throughput(Throughput::Elements(1));
    let mut r = 1u64;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            r = splitmix(r);
            black_box(db.get(key(r % n)).expect("get"))
        })
    });
    g.bench_function("get_miss", |b| {
        b.iter(|| {
            r = splitmix(r);
            black_box(db.get(key(n + r % n)).expect("get"))
        })
    });
    g.bench_function("contains_key", |b| {
        b.iter(|| {
            r = splitmix(r);
            black_box(db.contains_key(key(r % n)).expect("contains"))
        })
    });
    g.bench_function("put_never", |b| {
        b.iter(|| {
            r = splitmix(r);
            let i = r % n;
            db.put(key(i), value(i)).expect("put")
        })
    });
    g.bench_function("put_with_ttl_never", |b| {
        b.iter(|| {
            r = splitmix(r);
            let i = r % n;
            db.put_with_ttl(key(i), value(i), Duration::from_secs(3600))
                .expect("put")
        })
    });
    g.bench_function("incr_never", |b| {
        let mut c = 0u64;
        b.iter(|| {
            c += 1;
            db.incr(format!("counter:{}", c % 10_000), 1).expect("incr")
        })
    });
    g.bench_function("delete_never", |b| {
        b.iter_custom(|iters| {
            for i in 0..iters {
                db.put(format!("del:{i}"), b"x").expect("put");
            }
            let t = Instant::now();
            for i in 0..iters {
                black_box(db.delete(format!("del:{i}")).expect("delete"));
            }
            t.elapsed()
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("write_batch_100_never", |b| {
        b.iter(|| {
            let mut batch = Batch::new();
            for _ in 0..100 {
                r = splitmix(r);
                let i = r % n;
                batch.push_put(key(i), value(i), None);
            }
            db.write_batch(batch).expect("batch")
        })
    });
    g.finish();

    let mut g = c.benchmark_group(format!("scan_{n}_keys"));
    g.sample_size(10);
    for i in 0..100u64 {
        db.put(format!("scan:{i:04}"), value(i)).expect("put");
    }
    g.bench_function("scan_prefix_100_of_all", |b| {
        b.iter(|| black_box(db.scan_prefix("scan:").count()))
    });
    g.finish();
}

fn durable_puts(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_put");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::Always)
        .auto_compact(std::env::var_os("AB_NO_COMPACT").is_none())
        .open(dir.path())
        .expect("open");
    let mut r = 7u64;
    g.bench_function("always_1_thread", |b| {
        b.iter(|| {
            r = splitmix(r);
            db.put(key(r % 100_000), value(r)).expect("put")
        })
    });
    for threads in [2u64, 8] {
        g.bench_function(format!("always_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(threads);
                let counter = Arc::new(AtomicU64::new(0));
                let t = Instant::now();
                std::thread::scope(|s| {
                    for th in 0..threads {
                        let db = db.clone();
                        let counter = counter.clone();
                        s.spawn(move || {
                            for i in 0..per {
                                let k = th * 1_000_000 + i;
                                db.put(key(k), value(k)).expect("put");
                                counter.fetch_add(1, Ordering::Relaxed);
                            }
                        });
                    }
                });
                // Scale to the requested count, since each thread did `per`.
                t.elapsed().mul_f64(iters as f64 / (per * threads) as f64)
            })
        });
    }
    g.finish();
}

fn open_recovery(c: &mut Criterion) {
    let n = keys_count();
    let dir = tempfile::tempdir().expect("tempdir");
    load(dir.path(), n).close().expect("close");
    let mut g = c.benchmark_group(format!("open_{n}_keys"));
    g.sample_size(10);
    g.bench_function("with_hints", |b| {
        b.iter(|| {
            let db = Db::open(dir.path()).expect("open");
            assert_eq!(db.len().expect("len") as u64, n);
            db
        })
    });
    g.bench_function("without_hints", |b| {
        b.iter_batched(
            || {
                for e in std::fs::read_dir(dir.path()).expect("ls").flatten() {
                    if e.path().extension().is_some_and(|x| x == "hint") {
                        std::fs::remove_file(e.path()).expect("rm");
                    }
                }
            },
            |()| {
                let db = Options::new()
                    .read_only(true)
                    .open(dir.path())
                    .expect("open");
                assert_eq!(db.len().expect("len") as u64, n);
                db
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, point_ops, durable_puts, open_recovery);
criterion_main!(benches);
