//! Criterion benchmarks of the session, cache and limits modules, beside
//! the raw `Db` calls they are built on.
//!
//! `cargo bench --bench modules` runs them on 100,000 sessions (about 1 KB
//! of data each, as the comparison harness's session workload) and a cache
//! of 100,000 entries of 100 bytes, with `SyncPolicy::Never` so that the
//! figures are the modules' own cost, not the disk's (a durable write costs
//! one `fdatasync` more; see docs/benchmarks.md).

use std::hint::black_box;
use std::time::Duration;

use cairn::cache::CacheOptions;
use cairn::limits::{FixedWindow, Gcra};
use cairn::session::{SessionId, Sessions};
use cairn::{Db, Options, SyncPolicy};
use criterion::{criterion_group, criterion_main, Criterion};

/// Sessions and cache entries: 100,000 under `cargo bench`, 1,000 when
/// `cargo test --all-targets` runs this file as a smoke test.
fn n() -> u64 {
    if std::env::args().any(|a| a == "--bench") {
        100_000
    } else {
        1_000
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn open(path: &std::path::Path) -> Db {
    Options::new()
        .sync_policy(SyncPolicy::Never)
        .open(path)
        .expect("open")
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn sessions(c: &mut Criterion) {
    let n = n();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let s = Sessions::new(db.keyspace("sessions").expect("keyspace"));
    let data = vec![b'x'; 1000];
    let ids: Vec<SessionId> = (0..n)
        .map(|i| {
            s.create_for_user(&format!("user{}", i % 10_000), &data, HOUR)
                .expect("create")
        })
        .collect();
    let raw = db.keyspace("raw").expect("keyspace");
    for i in 0..n {
        raw.put_with_ttl(format!("session:{i:016x}"), &data, HOUR)
            .expect("put");
    }
    let mut g = c.benchmark_group("session");
    let mut i = 0u64;
    g.bench_function("get", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let id = &ids[(splitmix(i) % n) as usize];
            black_box(s.get(id.as_str()).expect("get"))
        })
    });
    g.bench_function("db_get_same_size (baseline)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let k = format!("session:{:016x}", splitmix(i) % n);
            black_box(raw.get(k).expect("get"))
        })
    });
    g.bench_function("get_and_touch", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let id = &ids[(splitmix(i) % n) as usize];
            black_box(s.get_and_touch(id.as_str()).expect("touch"))
        })
    });
    g.bench_function("update", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            let id = &ids[(splitmix(i) % n) as usize];
            black_box(s.update(id.as_str(), &data).expect("update"))
        })
    });
    g.bench_function("create_then_revoke", |b| {
        b.iter(|| {
            let id = s.create(&data, HOUR).expect("create");
            black_box(s.revoke(id.as_str()).expect("revoke"))
        })
    });
    g.bench_function("get_missing", |b| {
        b.iter(|| black_box(s.get("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").expect("get")))
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let n = n();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let cache = CacheOptions::new()
        .max_entries(n)
        .open(db.keyspace("cache").expect("keyspace"))
        .expect("cache");
    let value = vec![b'v'; 100];
    for i in 0..n {
        cache
            .insert(i.to_be_bytes(), &value, Some(HOUR))
            .expect("insert");
    }
    let mut g = c.benchmark_group("cache");
    let mut i = 0u64;
    g.bench_function("get_hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(cache.get((splitmix(i) % n).to_be_bytes()).expect("get"))
        })
    });
    g.bench_function("get_or_insert_with_hit", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(
                cache
                    .get_or_insert_with((splitmix(i) % n).to_be_bytes(), HOUR, || {
                        Ok::<_, std::io::Error>(vec![0u8; 100])
                    })
                    .expect("load"),
            )
        })
    });
    g.bench_function("insert_evicting", |b| {
        let mut j = n;
        b.iter(|| {
            j += 1;
            // Read first, so that the admission check lets it in.
            let k = j.to_be_bytes();
            cache.get(k).expect("get");
            cache.get(k).expect("get");
            cache.insert(k, &value, Some(HOUR)).expect("insert")
        })
    });
    g.finish();
}

fn limits(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = open(dir.path());
    let ks = db.keyspace("limits").expect("keyspace");
    let fw = FixedWindow::new(ks.clone(), "api", u64::MAX / 2, HOUR).expect("fw");
    let gcra = Gcra::new(ks.clone(), "api", 1000, Duration::from_secs(1))
        .expect("gcra")
        .burst(u64::MAX / 4_000_000);
    let mut g = c.benchmark_group("limits");
    let mut i = 0u64;
    g.bench_function("fixed_window_check", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(
                fw.check((splitmix(i) % 10_000).to_be_bytes())
                    .expect("check"),
            )
        })
    });
    g.bench_function("gcra_check", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(
                gcra.check((splitmix(i) % 10_000).to_be_bytes())
                    .expect("check"),
            )
        })
    });
    g.bench_function("db_incr (baseline)", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(
                ks.incr((splitmix(i) % 10_000).to_be_bytes(), 1)
                    .expect("incr"),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, sessions, cache, limits);
criterion_main!(benches);
