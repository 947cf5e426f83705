//! The library API a Redis-protocol server needs (issue 15): deferred
//! fsyncs (`Txn::defer_sync` + `Db::sync`), absolute expiries
//! (`Txn::put_expiring_at`, `Txn::get_with_expiry`, `Db::get_with_expiry`,
//! `Txn::now_unix_ms`), walking the keys (`Db::for_each_key`) and a
//! transaction's own keys (`Txn::written_keys`).
//!
//! The durability tests run on the simulated file system: they count the
//! fsyncs it sees and simulate a power loss while the store is still open
//! (so that nothing the handle does afterwards, such as its drop's final
//! sync, can reach the disk).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cairn::{Db, Error, ManualClock, Options, SyncPolicy, Ttl};
use common::sim::{Damage, SimFs};
use common::simfs::{DIR, START_MS};
use common::TestOptions;

/// The damage models of a power loss (not a mere process crash).
const POWER_LOSSES: [Damage; 4] = [
    Damage::DropUnsynced,
    Damage::Prefix,
    Damage::Torn512,
    Damage::Torn4096,
];

fn options(sim: &SimFs, clock: &ManualClock) -> Options {
    Options::new()
        .on_sim(sim)
        .auto_compact(false)
        .expiry_sweep_interval_ms(0)
        .clock(clock.clone())
        .sync_policy(SyncPolicy::Always)
        .max_segment_bytes(256 * 1024)
}

/// A power loss now, with `db` still open: the simulated disk keeps what
/// `damage` leaves of the unsynced data, and the dead handle is dropped
/// afterwards (its final sync fails on the dead files).
fn power_loss(sim: &SimFs, db: Db, damage: Damage, seed: u64) {
    sim.crash(damage, seed);
    drop(db);
}

/// How many commits the deferred tests make.
const N: usize = 24;

fn key(i: usize) -> String {
    format!("k{i:03}")
}

/// The second key of commit `i`, for every third commit (a batch).
fn batch_key(i: usize) -> Option<String> {
    i.is_multiple_of(3).then(|| format!("b{i:03}"))
}

fn value(i: usize) -> Vec<u8> {
    format!("value {i} {}", "x".repeat(i % 50)).into_bytes()
}

/// Commit `i`: one key, or two in one atomic batch for every third.
fn commit(db: &Db, i: usize, deferred: bool) {
    db.transaction(|tx| {
        if deferred {
            tx.defer_sync();
        }
        tx.put(key(i), value(i));
        if let Some(b) = batch_key(i) {
            tx.put(b, value(i));
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("commit {i}: {e}"));
}

/// How many of the commits `0..N` a reopened store holds, after checking
/// that they are a prefix (what was lost is a suffix), that each holds its
/// value and that no batch is torn.
fn surviving_prefix(db: &Db, case: &str) -> usize {
    let present: Vec<bool> = (0..N)
        .map(|i| {
            let v = db.get(key(i)).expect("get");
            if let Some(v) = &v {
                assert_eq!(v, &value(i), "{case}: {} has a wrong value", key(i));
            }
            if let Some(b) = batch_key(i) {
                let bv = db.get(&b).expect("get");
                assert_eq!(bv, v, "{case}: commit {i} survived only in part");
            }
            v.is_some()
        })
        .collect();
    let n = present.iter().take_while(|p| **p).count();
    assert!(
        present[n..].iter().all(|p| !p),
        "{case}: what survived is not a prefix of the commits: {present:?}"
    );
    n
}

#[test]
fn deferred_commits_return_without_an_fsync_and_a_power_loss_keeps_a_prefix() {
    let mut partial = 0;
    for damage in POWER_LOSSES {
        let seeds = if damage == Damage::DropUnsynced {
            1
        } else {
            12
        };
        for seed in 0..seeds {
            let case = format!("{damage:?}, seed {seed}");
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            let db = options(&sim, &clock).open(DIR).expect("open");
            db.put("base", "durable").expect("put");
            let (syncs, fsyncs) = (sim.sync_count(), db.stats().fsyncs);
            for i in 0..N {
                commit(&db, i, true);
            }
            assert_eq!(sim.sync_count(), syncs, "{case}: a deferred commit fsynced");
            assert_eq!(db.stats().fsyncs, fsyncs, "{case}: fsyncs counted");
            // Other readers already see them.
            assert_eq!(db.get(key(N - 1)).expect("get"), Some(value(N - 1)));
            power_loss(&sim, db, damage, seed);

            let db = options(&sim, &clock).open(DIR).expect("reopen");
            assert_eq!(
                db.get("base").expect("get").as_deref(),
                Some(&b"durable"[..])
            );
            let n = surviving_prefix(&db, &case);
            if damage == Damage::DropUnsynced {
                assert_eq!(n, 0, "{case}: unsynced commits survived");
            }
            if 0 < n && n < N {
                partial += 1;
            }
        }
    }
    // The prefix check saw cases that keep some commits and lose the rest.
    assert!(partial > 0, "no power loss kept only a part of the commits");
}

#[test]
fn after_db_sync_returns_every_deferred_commit_survives_a_power_loss() {
    for damage in POWER_LOSSES {
        for seed in 0..4 {
            let case = format!("{damage:?}, seed {seed}");
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            let db = options(&sim, &clock).open(DIR).expect("open");
            for i in 0..N {
                commit(&db, i, true);
            }
            let syncs = sim.sync_count();
            db.sync().expect("sync");
            assert_eq!(
                sim.sync_count(),
                syncs + 1,
                "{case}: one fsync covers all the deferred commits"
            );
            db.sync().expect("sync");
            assert_eq!(sim.sync_count(), syncs + 1, "{case}: nothing left to sync");
            power_loss(&sim, db, damage, seed);

            let db = options(&sim, &clock).open(DIR).expect("reopen");
            assert_eq!(
                surviving_prefix(&db, &case),
                N,
                "{case}: synced commits lost"
            );
        }
    }
}

#[test]
fn a_commit_without_defer_sync_is_durable_when_it_returns() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock).open(DIR).expect("open");
    for i in 0..N / 2 {
        let syncs = sim.sync_count();
        commit(&db, i, false);
        assert!(
            sim.sync_count() > syncs,
            "commit {i} returned before its fsync"
        );
    }
    // Deferred commits, then one that is not: its fsync covers the earlier
    // ones, which precede it in the log.
    for i in N / 2..N - 1 {
        commit(&db, i, true);
    }
    commit(&db, N - 1, false);
    power_loss(&sim, db, Damage::DropUnsynced, 1);

    let db = options(&sim, &clock).open(DIR).expect("reopen");
    assert_eq!(surviving_prefix(&db, "no defer_sync"), N);
}

#[test]
fn a_deferred_transaction_that_writes_nothing_does_not_fsync() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock).open(DIR).expect("open");
    commit(&db, 0, true);
    let syncs = sim.sync_count();
    // It reads a write that is not durable yet, and writes nothing.
    let read = db
        .transaction(|tx| {
            tx.defer_sync();
            tx.get(key(0))
        })
        .expect("read-only transaction");
    assert_eq!(read, Some(value(0)));
    // A delete of a key that does not exist writes nothing either.
    db.transaction(|tx| {
        tx.defer_sync();
        tx.delete("missing");
        Ok(())
    })
    .expect("delete of a missing key");
    assert_eq!(sim.sync_count(), syncs, "a deferred empty commit fsynced");

    // Without defer_sync, the same read-only transaction waits until what
    // it read is durable.
    db.transaction(|tx| tx.get(key(0)))
        .expect("read-only transaction");
    assert!(
        sim.sync_count() > syncs,
        "the read-only commit did not fsync"
    );
    power_loss(&sim, db, Damage::DropUnsynced, 2);
    let db = options(&sim, &clock).open(DIR).expect("reopen");
    assert_eq!(db.get(key(0)).expect("get"), Some(value(0)));
}

#[test]
fn a_compaction_never_drops_an_old_version_whose_deferred_successor_is_lost() {
    let key = |j: usize| format!("c{j}");
    let old = |j: usize| format!("old {j} {}", "o".repeat(600)).into_bytes();
    let new = |j: usize| format!("new {j}").into_bytes();
    for damage in POWER_LOSSES {
        for seed in 0..4 {
            let case = format!("{damage:?}, seed {seed}");
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            let db = options(&sim, &clock)
                .max_segment_bytes(4096)
                .open(DIR)
                .expect("open");
            for j in 0..10 {
                db.put(key(j), old(j)).expect("put");
            }
            assert!(db.segment_stats().len() >= 2, "{case}: old versions sealed");
            // Deferred: deletes of the first five keys, new values for the
            // rest, all in the active segment and none durable.
            let syncs = sim.sync_count();
            for j in 0..10 {
                db.transaction(|tx| {
                    tx.defer_sync();
                    if j < 5 {
                        tx.delete(key(j));
                    } else {
                        tx.put(key(j), new(j));
                    }
                    Ok(())
                })
                .expect("deferred commit");
            }
            assert_eq!(sim.sync_count(), syncs, "{case}: a deferred commit fsynced");
            // Compaction drops the old versions from the sealed segments.
            let stats = db.compact().expect("compact");
            assert!(stats.dropped_overwritten > 0, "{case}: nothing dropped");
            power_loss(&sim, db, damage, seed);

            let db = options(&sim, &clock).open(DIR).expect("reopen");
            let state: Vec<Option<Vec<u8>>> =
                (0..10).map(|j| db.get(key(j)).expect("get")).collect();
            // The state after the first `n` deferred commits, for some `n`.
            let after = |n: usize| -> Vec<Option<Vec<u8>>> {
                (0..10)
                    .map(|j| match (j < n, j < 5) {
                        (false, _) => Some(old(j)),
                        (true, true) => None,
                        (true, false) => Some(new(j)),
                    })
                    .collect()
            };
            assert!(
                (0..=10).any(|n| after(n) == state),
                "{case}: the state after the compaction and a power loss is no prefix \
                 of the commits: {:?}",
                state
                    .iter()
                    .map(|v| v
                        .as_ref()
                        .map(|v| String::from_utf8_lossy(&v[..5]).into_owned()))
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// The key and value of writer `t`'s `i`th commit (300 bytes, so that a
/// few dozen commits fill a segment).
fn writer_key(t: usize, i: usize) -> String {
    format!("t{t}:{i:05}")
}

fn writer_value(t: usize, i: usize) -> Vec<u8> {
    let mut v = format!("writer {t} commit {i} ").into_bytes();
    v.resize(300, b'a' + (i % 26) as u8);
    v
}

/// Runs `writers` threads of deferred commits and one that calls
/// `Db::sync` `syncs` times, each after at least `progress` more commits;
/// returns how many commits of each writer had returned before the last
/// sync started.
fn deferred_writers_and_a_syncer(
    db: &Db,
    writers: usize,
    syncs: u64,
    progress: usize,
) -> Vec<usize> {
    const LIMIT: usize = 2_000;
    let done: Vec<AtomicUsize> = (0..writers).map(|_| AtomicUsize::new(0)).collect();
    let stop = AtomicBool::new(false);
    let total =
        |done: &[AtomicUsize]| -> usize { done.iter().map(|d| d.load(Ordering::Acquire)).sum() };
    std::thread::scope(|s| {
        for t in 0..writers {
            let (done, stop) = (&done, &stop);
            s.spawn(move || {
                for i in 0..LIMIT {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    db.transaction(|tx| {
                        tx.defer_sync();
                        tx.put(writer_key(t, i), writer_value(t, i));
                        Ok(())
                    })
                    .unwrap_or_else(|e| panic!("writer {t}, commit {i}: {e}"));
                    done[t].store(i + 1, Ordering::Release);
                }
            });
        }
        let mut covered = Vec::new();
        for _ in 0..syncs {
            let target = total(&done) + progress;
            let deadline = Instant::now() + Duration::from_secs(60);
            while total(&done) < target.min(writers * LIMIT) {
                assert!(Instant::now() < deadline, "the writers stopped");
                std::thread::yield_now();
            }
            covered = done.iter().map(|d| d.load(Ordering::Acquire)).collect();
            db.sync().expect("sync");
        }
        stop.store(true, Ordering::Release);
        covered
    })
}

#[test]
fn a_sync_covers_every_deferred_commit_that_returned_before_it_started() {
    const WRITERS: usize = 3;
    for round in 0..16u64 {
        let damage = POWER_LOSSES[round as usize % POWER_LOSSES.len()];
        let case = format!("round {round} ({damage:?})");
        let sim = SimFs::new();
        let clock = ManualClock::new(START_MS);
        let db = options(&sim, &clock)
            .max_segment_bytes(8 * 1024)
            .open(DIR)
            .expect("open");
        let syncs = 1 + (round * 7) % 13;
        let covered = deferred_writers_and_a_syncer(&db, WRITERS, syncs, 30);
        // The writers went on after the last sync; their later commits may
        // be lost.
        power_loss(&sim, db, damage, round);

        let db = options(&sim, &clock).open(DIR).expect("reopen");
        assert!(
            db.segment_stats().len() >= 2,
            "{case}: the commits the syncs covered span a segment roll"
        );
        for (t, &covered) in covered.iter().enumerate() {
            let mut kept = 0;
            while let Some(v) = db.get(writer_key(t, kept)).expect("get") {
                assert_eq!(v, writer_value(t, kept), "{case}: {}", writer_key(t, kept));
                kept += 1;
            }
            assert!(
                kept >= covered,
                "{case}: writer {t} had {covered} commits returned before the last sync \
                 started, only {kept} survived"
            );
            let mut later = Vec::new();
            db.for_each_key(format!("t{t}:"), |k, _| later.push(k.to_vec()))
                .expect("for_each_key");
            assert_eq!(
                later.len(),
                kept,
                "{case}: writer {t}'s survivors are not a prefix"
            );
        }
    }
}

#[test]
fn put_expiring_at_takes_an_absolute_expiry_or_none() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock).open(DIR).expect("open");
    let at = START_MS + 60_000;
    // The latest expiry the index keeps (6 bytes of unix ms).
    let max = (1u64 << 48) - 1;
    db.put_with_ttl("was-expiring", "old", Duration::from_secs(5))
        .expect("put");
    db.transaction(|tx| {
        assert_eq!(tx.now_unix_ms(), START_MS);
        let now = tx.now_unix_ms();
        tx.put_expiring_at("persistent", "p", None)?;
        // None replaces an expiry: the key becomes persistent.
        tx.put_expiring_at("was-expiring", "new", None)?;
        tx.put_expiring_at("soon", "s", Some(now + 1))?;
        tx.put_expiring_at("later", "l", Some(at))?;
        tx.put_expiring_at("max", "m", Some(max))?;
        // Its own pending writes read back exactly.
        assert_eq!(
            tx.get_with_expiry("persistent")?,
            Some((b"p".to_vec(), None))
        );
        assert_eq!(
            tx.get_with_expiry("was-expiring")?,
            Some((b"new".to_vec(), None))
        );
        assert_eq!(
            tx.get_with_expiry("later")?,
            Some((b"l".to_vec(), Some(at)))
        );
        assert_eq!(tx.get_with_expiry("max")?, Some((b"m".to_vec(), Some(max))));
        assert_eq!(tx.ttl("later")?, Ttl::Expires(Duration::from_secs(60)));
        assert_eq!(tx.get_with_expiry("absent")?, None);
        Ok(())
    })
    .expect("transaction");

    let check = |db: &Db, when: &str| {
        assert_eq!(
            db.get_with_expiry("persistent").expect("get"),
            Some((b"p".to_vec(), None)),
            "{when}"
        );
        assert_eq!(
            db.get_with_expiry("was-expiring").expect("get"),
            Some((b"new".to_vec(), None)),
            "{when}"
        );
        assert_eq!(
            db.get_with_expiry("later").expect("get"),
            Some((b"l".to_vec(), Some(at))),
            "{when}"
        );
        assert_eq!(
            db.get_with_expiry("max").expect("get"),
            Some((b"m".to_vec(), Some(max))),
            "{when}"
        );
        db.transaction(|tx| {
            assert_eq!(
                tx.get_with_expiry("later")?,
                Some((b"l".to_vec(), Some(at)))
            );
            assert_eq!(tx.get_with_expiry("max")?, Some((b"m".to_vec(), Some(max))));
            assert_eq!(
                tx.get_with_expiry("persistent")?,
                Some((b"p".to_vec(), None))
            );
            Ok(())
        })
        .expect("transaction");
        assert_eq!(
            db.ttl("persistent").expect("ttl"),
            Ttl::Persistent,
            "{when}"
        );
    };
    check(&db, "before a reopen");
    assert_eq!(
        db.get_with_expiry("soon").expect("get"),
        Some((b"s".to_vec(), Some(START_MS + 1)))
    );
    db.close().expect("close");
    // From the log.
    let db = options(&sim, &clock).open(DIR).expect("reopen");
    check(&db, "after a reopen");
    // From the compacted segment and its hint file.
    db.compact().expect("compact");
    db.close().expect("close");
    let db = options(&sim, &clock).open(DIR).expect("reopen");
    check(&db, "after compaction and a reopen");
    assert_eq!(
        db.get_with_expiry("soon").expect("get"),
        Some((b"s".to_vec(), Some(START_MS + 1)))
    );
}

#[test]
fn put_expiring_at_refuses_a_time_not_after_now_or_from_2_pow_48_on() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock).open(DIR).expect("open");
    db.put("k", "before").expect("put");
    db.transaction(|tx| {
        let now = tx.now_unix_ms();
        let refused = [
            now,
            now - 1,
            1,
            // 0 is "never" on disk: it must not become a persistent key.
            0,
            // The index keeps 48 bits of expiry.
            1 << 48,
            i64::MAX as u64 + 1,
            u64::MAX,
        ];
        for at in refused {
            assert!(
                matches!(
                    tx.put_expiring_at("k", "after", Some(at)),
                    Err(Error::InvalidTtl)
                ),
                "expiry {at} (now {now}) was not refused"
            );
            // Nothing was queued.
            assert_eq!(tx.get_with_expiry("k")?, Some((b"before".to_vec(), None)));
            assert_eq!(tx.written_keys().count(), 0);
        }
        Ok(())
    })
    .expect("transaction");
    // The error propagates and drops the transaction's writes.
    let r = db.transaction(|tx| {
        tx.put("other", "x");
        let now = tx.now_unix_ms();
        tx.put_expiring_at("k", "after", Some(now))
    });
    assert!(matches!(r, Err(Error::InvalidTtl)), "{r:?}");
    assert_eq!(db.get("other").expect("get"), None);
    assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"before"[..]));
}

#[test]
fn get_with_expiry_does_not_return_an_expired_key() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock).open(DIR).expect("open");
    db.transaction(|tx| {
        let now = tx.now_unix_ms();
        tx.put_expiring_at("k", "v", Some(now + 10))
    })
    .expect("transaction");
    clock.advance(Duration::from_millis(9));
    assert_eq!(
        db.get_with_expiry("k").expect("get"),
        Some((b"v".to_vec(), Some(START_MS + 10)))
    );
    clock.advance(Duration::from_millis(1));
    assert_eq!(db.get_with_expiry("k").expect("get"), None);
    db.transaction(|tx| {
        assert_eq!(tx.now_unix_ms(), START_MS + 10);
        assert_eq!(tx.get_with_expiry("k")?, None);
        Ok(())
    })
    .expect("transaction");
    // Nor after a reopen.
    db.close().expect("close");
    let db = options(&sim, &clock).open(DIR).expect("reopen");
    assert_eq!(db.get_with_expiry("k").expect("get"), None);
}

/// Everything `for_each_key` reports for `prefix`, after checking that it
/// reports no key twice.
fn walk(db: &Db, prefix: &str) -> BTreeMap<Vec<u8>, Option<u64>> {
    let mut seen = Vec::new();
    db.for_each_key(prefix, |k, e| seen.push((k.to_vec(), e)))
        .expect("for_each_key");
    let n = seen.len();
    let map: BTreeMap<_, _> = seen.into_iter().collect();
    assert_eq!(map.len(), n, "prefix {prefix:?}: a key was reported twice");
    map
}

#[test]
fn for_each_key_reports_each_live_key_with_the_prefix_once() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let db = options(&sim, &clock)
        .max_segment_bytes(16 * 1024)
        .open(DIR)
        .expect("open");
    let far = START_MS + 3_600_000;
    let mut expected: BTreeMap<Vec<u8>, Option<u64>> = BTreeMap::new();
    for i in 0..600u32 {
        let (k, v) = (format!("user:{i}"), format!("value {i}"));
        let expiry = match i % 5 {
            0 => Some(START_MS + 100), // expires below
            1 => Some(far),
            _ => None,
        };
        db.transaction(|tx| tx.put_expiring_at(&k, &v, expiry))
            .expect("put");
        if !i.is_multiple_of(5) {
            expected.insert(k.into_bytes(), expiry);
        }
    }
    // Overwritten keys are reported once, with their latest expiry;
    // deleted ones not at all.
    for i in (2..600).step_by(10) {
        db.put(format!("user:{i}"), "again").expect("put");
        expected.insert(format!("user:{i}").into_bytes(), None);
    }
    for i in (3..600).step_by(10) {
        db.delete(format!("user:{i}")).expect("delete");
        expected.remove(format!("user:{i}").as_bytes());
    }
    let mut others = BTreeMap::new();
    for k in ["user", "use", "users:1", "team:1", "team:2", ""] {
        if !k.is_empty() {
            db.put(k, "x").expect("put");
            others.insert(k.as_bytes().to_vec(), None);
        }
    }
    clock.advance(Duration::from_millis(100));

    assert_eq!(walk(&db, "user:"), expected);
    let mut all = expected.clone();
    all.extend(others);
    assert_eq!(walk(&db, ""), all);
    assert_eq!(db.stats().live_keys, all.len() as u64);
    assert!(walk(&db, "nobody:").is_empty());
    let team: BTreeSet<Vec<u8>> = walk(&db, "team:").into_keys().collect();
    assert_eq!(
        team,
        BTreeSet::from([b"team:1".to_vec(), b"team:2".to_vec()])
    );

    // The same after a reopen (the sealed segments from their hint files).
    db.close().expect("close");
    let db = options(&sim, &clock).open(DIR).expect("reopen");
    assert!(
        db.segment_stats().len() >= 2,
        "the keys span several segments"
    );
    assert_eq!(walk(&db, "user:"), expected);

    db.close().expect("close");
    let mut called = false;
    let r = db.for_each_key("", |_, _| called = true);
    assert!(matches!(r, Err(Error::Closed)), "{r:?}");
    assert!(!called, "for_each_key ran on a closed store");
}

#[test]
fn written_keys_lists_puts_and_deletes_in_order_of_first_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.put("a", "0").expect("put");
    db.transaction(|tx| {
        assert_eq!(tx.written_keys().count(), 0);
        tx.put("c", "1");
        tx.delete("a");
        tx.put("b", "2");
        tx.put("c", "3"); // a second write keeps its first place
        tx.delete("b");
        tx.put("a", "4");
        tx.delete("missing"); // changes nothing in the store, but was written
        let keys: Vec<&[u8]> = tx.written_keys().collect();
        assert_eq!(keys, [&b"c"[..], b"a", b"b", b"missing"]);
        // Past the size at which pending writes get a hash index.
        for i in 0..40 {
            tx.put(format!("n{i:02}"), "x");
        }
        tx.put("n05", "y");
        tx.delete("c");
        let mut expected: Vec<Vec<u8>> = ["c", "a", "b", "missing"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        expected.extend((0..40).map(|i| format!("n{i:02}").into_bytes()));
        let keys: Vec<Vec<u8>> = tx.written_keys().map(<[u8]>::to_vec).collect();
        assert_eq!(keys, expected);
        Ok(())
    })
    .expect("transaction");
    assert_eq!(db.get("c").expect("get"), None);
    assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"4"[..]));
    // A new transaction starts with none.
    db.transaction(|tx| {
        assert_eq!(tx.written_keys().count(), 0);
        Ok(())
    })
    .expect("transaction");
}
