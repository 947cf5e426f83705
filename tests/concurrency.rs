//! Concurrent writers sharing fsyncs (group commit), and readers racing a
//! writer that rolls segments.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use cairn::{Db, Options, SyncPolicy};
use common::XorShift as Rng;

// ----- group commit ------------------------------------------------------------

const WRITERS: usize = 8;
const OPS_PER_WRITER: usize = 120;
const OWN_KEYS: usize = 8;
const SHARED_KEYS: usize = 4;

/// A value names its key, its writer and the writer's op number, so that any
/// value read back can be checked.
fn value_for(key: &str, thread: usize, op: usize) -> String {
    format!("{key}|{thread}|{op}|{}", "#".repeat(op % 23))
}

/// Parses and checks a value made by `value_for`; returns `(thread, op)`.
fn parse_value(key: &str, v: &[u8]) -> (usize, usize) {
    let s = std::str::from_utf8(v).expect("utf-8 value");
    let mut parts = s.split('|');
    assert_eq!(parts.next(), Some(key), "value {s:?} read for key {key:?}");
    let thread: usize = parts.next().and_then(|p| p.parse().ok()).expect("thread");
    let op: usize = parts.next().and_then(|p| p.parse().ok()).expect("op");
    assert_eq!(value_for(key, thread, op), s, "value bytes");
    (thread, op)
}

/// What one writer thread had acknowledged when it finished.
#[derive(Default)]
struct Acked {
    /// Keys only this thread writes, each once.
    unique: Vec<String>,
    /// The last value of each key only this thread overwrites.
    own: BTreeMap<String, String>,
    /// The last op number this thread wrote to each shared key.
    shared: BTreeMap<String, usize>,
}

fn writer(db: Db, t: usize, barrier: Arc<Barrier>, puts: Arc<AtomicU64>) -> Acked {
    let mut acked = Acked::default();
    let mut rng = Rng::new(t as u64 + 1);
    barrier.wait();
    for op in 0..OPS_PER_WRITER {
        let key = match op % 3 {
            0 => format!("unique:{t}:{op}"),
            1 => format!("own:{t}:{}", rng.below(OWN_KEYS as u64)),
            _ => format!("shared:{}", rng.below(SHARED_KEYS as u64)),
        };
        let value = value_for(&key, t, op);
        db.put(&key, &value).expect("put");
        puts.fetch_add(1, Ordering::Relaxed);
        match op % 3 {
            0 => acked.unique.push(key.clone()),
            1 => {
                acked.own.insert(key.clone(), value.clone());
            }
            _ => {
                acked.shared.insert(key.clone(), op);
            }
        }
        // Nobody else writes unique and own keys: they read back exactly.
        if op % 3 != 2 {
            assert_eq!(db.get(&key).expect("get"), Some(value.into_bytes()));
        }
        // A shared key holds some thread's well-formed value.
        let shared = format!("shared:{}", rng.below(SHARED_KEYS as u64));
        if let Some(v) = db.get(&shared).expect("get shared") {
            let (other, other_op) = parse_value(&shared, &v);
            assert!(other < WRITERS && other_op % 3 == 2);
        }
        // Earlier own keys keep their newest value.
        let probe = format!("own:{t}:{}", rng.below(OWN_KEYS as u64));
        assert_eq!(
            db.get(&probe).expect("get own"),
            acked.own.get(&probe).map(|v| v.clone().into_bytes())
        );
    }
    acked
}

fn check_acknowledged(db: &Db, acked: &[Acked], ctx: &str) {
    let mut expected_len = 0;
    for (t, a) in acked.iter().enumerate() {
        for k in &a.unique {
            let v = db
                .get(k)
                .expect("get")
                .unwrap_or_else(|| panic!("{ctx}: lost {k}"));
            assert_eq!(parse_value(k, &v).0, t, "{ctx}");
        }
        for (k, v) in &a.own {
            assert_eq!(
                db.get(k).expect("get"),
                Some(v.clone().into_bytes()),
                "{ctx}: {k}"
            );
        }
        expected_len += a.unique.len() + a.own.len();
    }
    // A shared key ends with the last value some thread wrote to it.
    let mut shared_keys = 0;
    for s in 0..SHARED_KEYS {
        let key = format!("shared:{s}");
        let written = acked.iter().any(|a| a.shared.contains_key(&key));
        match db.get(&key).expect("get") {
            None => assert!(!written, "{ctx}: lost {key}"),
            Some(v) => {
                shared_keys += 1;
                let (t, op) = parse_value(&key, &v);
                assert_eq!(
                    acked[t].shared.get(&key),
                    Some(&op),
                    "{ctx}: {key} holds an older write of thread {t}"
                );
            }
        }
    }
    assert_eq!(db.len().expect("len"), expected_len + shared_keys, "{ctx}");
}

#[test]
fn group_commit_shares_fsyncs_and_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || {
        Options::new()
            .sync_policy(SyncPolicy::Always)
            .expiry_sweep_interval_ms(0)
    };
    let db = opts().open(dir.path()).expect("open");
    let barrier = Arc::new(Barrier::new(WRITERS));
    let puts = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..WRITERS)
        .map(|t| {
            let (db, barrier, puts) = (db.clone(), barrier.clone(), puts.clone());
            std::thread::spawn(move || writer(db, t, barrier, puts))
        })
        .collect();
    let acked: Vec<Acked> = handles
        .into_iter()
        .map(|h| h.join().expect("writer thread"))
        .collect();
    let elapsed = started.elapsed();
    let puts = puts.load(Ordering::Relaxed);
    assert_eq!(puts, (WRITERS * OPS_PER_WRITER) as u64);
    let fsyncs = db.stats().fsyncs;
    eprintln!("{puts} durable puts from {WRITERS} threads: {fsyncs} fsyncs in {elapsed:?}");
    assert!(fsyncs > 0);
    assert!(
        fsyncs < puts,
        "group commit should share fsyncs: {fsyncs} fsyncs for {puts} puts"
    );
    check_acknowledged(&db, &acked, "live");
    drop(db);
    let db = opts().open(dir.path()).expect("reopen");
    check_acknowledged(&db, &acked, "after reopen");
}

// ----- readers while a writer rolls segments -----------------------------------

const KEYS: u64 = 40;

fn key_name(k: u64) -> String {
    format!("key:{k:02}")
}

/// Version `n` of key `n % KEYS`: names its key and version, and has a
/// length that varies with the version.
fn versioned_value(n: u64) -> Vec<u8> {
    let key = key_name(n % KEYS);
    let fill = char::from(b'a' + (n % 26) as u8);
    format!("{key}|{n}|{}", fill.to_string().repeat((n % 150) as usize)).into_bytes()
}

/// Checks a value read for key `k` and returns its version.
fn check_versioned(k: u64, v: &[u8]) -> u64 {
    let s = std::str::from_utf8(v).expect("utf-8");
    let n: u64 = s
        .split('|')
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("malformed value {s:?} for {}", key_name(k)));
    assert_eq!(n % KEYS, k, "value {s:?} read for {}", key_name(k));
    assert_eq!(v, versioned_value(n), "value bytes of version {n}");
    n
}

fn readers_during_rolls(policy: SyncPolicy, use_mmap: bool, writes: u64) {
    let ctx = format!("{policy:?}, mmap {use_mmap}");
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = || {
        Options::new()
            .sync_policy(policy)
            .max_segment_bytes(4096)
            .use_mmap(use_mmap)
            .expiry_sweep_interval_ms(0)
            // Automatic compaction checks every 5 ms, so readers also run
            // while segments are compacted away under them.
            .compaction_interval_ms(5)
    };
    let db = opts().open(dir.path()).expect("open");
    // The newest acknowledged version of each key (0: none yet).
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));

    let readers: Vec<_> = (0..3u64)
        .map(|r| {
            let (db, acked, done) = (db.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(100 + r);
                let mut seen = vec![0u64; KEYS as usize];
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    if r == 0 && reads % 50 == 49 {
                        // A scan: every value it yields is at least as new as
                        // what was acknowledged before it started.
                        let floor: Vec<u64> =
                            acked.iter().map(|a| a.load(Ordering::Acquire)).collect();
                        for item in db.scan_prefix("key:") {
                            let (key, v) = item.expect("scan during rolls");
                            let k: u64 = std::str::from_utf8(&key[4..])
                                .expect("utf-8")
                                .parse()
                                .expect("key number");
                            assert!(check_versioned(k, &v) >= floor[k as usize]);
                        }
                    }
                    let k = rng.below(KEYS);
                    let floor = acked[k as usize].load(Ordering::Acquire);
                    match db.get(key_name(k)).expect("get during rolls") {
                        None => assert_eq!(floor, 0, "{} vanished", key_name(k)),
                        Some(v) => {
                            let n = check_versioned(k, &v);
                            assert!(n >= floor, "stale read of {}: {n} < {floor}", key_name(k));
                            assert!(n >= seen[k as usize], "read went back in time");
                            seen[k as usize] = n;
                        }
                    }
                    if floor > 0 {
                        assert!(db.contains_key(key_name(k)).expect("contains_key"));
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    for n in 1..=writes {
        db.put(key_name(n % KEYS), versioned_value(n)).expect("put");
        acked[(n % KEYS) as usize].store(n, Ordering::Release);
    }
    done.store(true, Ordering::Release);
    let reads: u64 = readers
        .into_iter()
        .map(|h| h.join().expect("reader thread"))
        .sum();
    let stats = db.stats();
    eprintln!(
        "{ctx}: {writes} writes, {reads} reads, {} segments, {} bytes written",
        stats.segments, stats.bytes_written
    );
    assert!(
        stats.bytes_written > 10 * 4096,
        "{ctx}: the writer should have rolled many times"
    );
    assert!(reads > 0);

    let check = |db: &Db, when: &str| {
        for k in 0..KEYS {
            let want = acked[k as usize].load(Ordering::Acquire);
            let v = db.get(key_name(k)).expect("get").expect("present");
            assert_eq!(
                check_versioned(k, &v),
                want,
                "{ctx} {when}: {}",
                key_name(k)
            );
        }
        assert_eq!(db.len().expect("len"), KEYS as usize);
    };
    check(&db, "live");
    drop(db);
    let db = opts().open(dir.path()).expect("reopen");
    check(&db, "after reopen");
}

#[test]
fn readers_never_see_errors_or_wrong_values_while_segments_roll_durable() {
    readers_during_rolls(SyncPolicy::Always, true, 1500);
}

#[test]
fn readers_never_see_errors_or_wrong_values_while_segments_roll_unsynced() {
    readers_during_rolls(SyncPolicy::Never, true, 4000);
}

#[test]
fn readers_never_see_errors_or_wrong_values_while_segments_roll_without_maps() {
    readers_during_rolls(SyncPolicy::Never, false, 4000);
}
