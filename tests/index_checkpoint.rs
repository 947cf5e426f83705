//! The index checkpoint (`index.ckpt`): written at a clean close, used by
//! the next open only when the directory holds exactly the files it
//! describes, deleted by a writable open before it writes anything, and
//! never the cause of a wrong or lost value (crashes while it is written
//! or deleted included).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use cairn::{Batch, CheckpointUse, Db, ManualClock, Options, SyncPolicy};
use common::sim::{Damage, OpenMode, SimFs, Vfs};
use common::simfs::{self, DIR};
use common::{XorShift, START_MS};

const CKPT: &str = "index.ckpt";

/// A key's value and expiry (0: none), as the model has it.
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

fn opts(clock: &ManualClock) -> Options {
    Options::new()
        .clock(clock.clone())
        .expiry_sweep_interval_ms(0)
        .auto_compact(false)
        .warm_up_after_open(false)
        .max_segment_bytes(64 * 1024)
}

fn key(i: u64) -> Vec<u8> {
    format!("key-{i:05}").into_bytes()
}

/// Random puts, deletes, puts with a TTL, batches and clock advances on
/// `db`, applied to `m` as well.
fn random_writes(db: &Db, clock: &ManualClock, m: &mut Model, rng: &mut XorShift, n: usize) {
    for step in 0..n {
        let k = key(rng.below(1500));
        let now = cairn::Clock::now_unix_ms(clock);
        match rng.below(10) {
            0 | 1 => {
                db.delete(&k).expect("delete");
                m.remove(&k);
            }
            2 => {
                let ttl = 1 + rng.below(5000);
                let v = format!("ttl-{step}").into_bytes();
                db.put_with_ttl(&k, &v, Duration::from_millis(ttl))
                    .expect("put ttl");
                m.insert(k, (v, now + ttl));
            }
            3 => {
                let mut b = Batch::new();
                for j in 0..4 {
                    let bk = key(rng.below(1500));
                    if j == 3 {
                        b.push_delete(&bk);
                        m.remove(&bk);
                    } else {
                        let v = format!("batch-{step}-{j}").into_bytes();
                        b.push_put(&bk, &v, None);
                        m.insert(bk, (v, 0));
                    }
                }
                db.write_batch(b).expect("batch");
            }
            4 => clock.advance(Duration::from_millis(rng.below(700))),
            _ => {
                let v = vec![b'v'; 20 + rng.below(200) as usize];
                db.put(&k, &v).expect("put");
                m.insert(k, (v, 0));
            }
        }
    }
}

/// Every key of the model (and a few absent ones) reads as the model says
/// at the clock's time, expiry included.
fn check(db: &Db, clock: &ManualClock, m: &Model) {
    let now = cairn::Clock::now_unix_ms(clock);
    for i in 0..1600 {
        let k = key(i);
        let want = m
            .get(&k)
            .filter(|(_, e)| *e == 0 || *e > now)
            .map(|(v, e)| (v.clone(), (*e != 0).then_some(*e)));
        let got = db.get_with_expiry(&k).expect("get");
        assert_eq!(got, want, "{}", String::from_utf8_lossy(&k));
    }
    let live = m.values().filter(|(_, e)| *e == 0 || *e > now).count();
    assert_eq!(db.len().expect("len"), live);
}

#[test]
fn a_clean_close_then_open_uses_it_and_reads_everything_right() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let mut rng = XorShift::new(7);
    for round in 0..4 {
        let db = opts(&clock).open(t.path()).expect("open");
        let want = if round == 0 {
            CheckpointUse::Missing
        } else {
            CheckpointUse::Used
        };
        assert_eq!(db.recovery_report().checkpoint, want, "round {round}");
        // It stays: the records written after it are replayed after a crash.
        assert_eq!(t.path().join(CKPT).exists(), round > 0);
        check(&db, &clock, &m);
        random_writes(&db, &clock, &mut m, &mut rng, 3000);
        check(&db, &clock, &m);
        db.close().expect("close");
        assert!(t.path().join(CKPT).exists());
        clock.advance(Duration::from_millis(900));
    }
    // The same contents without the checkpoint.
    std::fs::remove_file(t.path().join(CKPT)).expect("rm");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Missing);
    check(&db, &clock, &m);
}

#[test]
fn a_read_only_open_uses_it_and_keeps_it_and_compaction_works_after_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let mut rng = XorShift::new(8);
    let db = opts(&clock).open(t.path()).expect("open");
    random_writes(&db, &clock, &mut m, &mut rng, 4000);
    db.close().expect("close");
    let bytes = std::fs::read(t.path().join(CKPT)).expect("read");
    for _ in 0..2 {
        let db = opts(&clock).read_only(true).open(t.path()).expect("open");
        assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
        assert_eq!(db.recovery_report().segments_from_hints, 0);
        check(&db, &clock, &m);
        drop(db);
        assert_eq!(std::fs::read(t.path().join(CKPT)).expect("kept"), bytes);
    }
    let db = opts(&clock).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    assert!(db.segment_stats().len() > 3);
    db.compact().expect("compact");
    check(&db, &clock, &m);
    random_writes(&db, &clock, &mut m, &mut rng, 500);
    db.close().expect("close");
    let db = opts(&clock).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    check(&db, &clock, &m);
}

/// A store with a checkpoint, and a copy of that checkpoint's bytes.
fn closed_store(path: &Path, clock: &ManualClock, m: &mut Model, seed: u64) -> Vec<u8> {
    let db = opts(clock).open(path).expect("open");
    random_writes(&db, clock, m, &mut XorShift::new(seed), 2000);
    db.close().expect("close");
    std::fs::read(path.join(CKPT)).expect("checkpoint")
}

#[test]
fn an_older_checkpoint_copied_back_replays_the_writes_after_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let old = closed_store(t.path(), &clock, &mut m, 9);
    // More writes; closed without a checkpoint.
    let db = opts(&clock)
        .index_checkpoint_at_close(false)
        .open(t.path())
        .expect("open");
    let mut rng = XorShift::new(10);
    random_writes(&db, &clock, &mut m, &mut rng, 20);
    db.close().expect("close");
    std::fs::write(t.path().join(CKPT), &old).expect("copy back");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    check(&db, &clock, &m);
    drop(db);
    // Only writes that fill the preallocated zeros (same file length).
    let db = opts(&clock)
        .sync_policy(SyncPolicy::Always)
        .open(t.path())
        .expect("open");
    db.put(key(1), b"x").expect("put");
    db.close().expect("close");
    let fresh = std::fs::read(t.path().join(CKPT)).expect("checkpoint");
    m.insert(key(1), (b"x".to_vec(), 0));
    let db = opts(&clock)
        .index_checkpoint_at_close(false)
        .sync_policy(SyncPolicy::Always)
        .open(t.path())
        .expect("open");
    db.put(key(2), b"y").expect("put");
    m.insert(key(2), (b"y".to_vec(), 0));
    db.close().expect("close");
    std::fs::write(t.path().join(CKPT), &fresh).expect("copy back");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    check(&db, &clock, &m);
}

#[test]
fn another_stores_checkpoint_is_not_used() {
    let (a, b) = (
        tempfile::tempdir().expect("a"),
        tempfile::tempdir().expect("b"),
    );
    let clock = ManualClock::new(START_MS);
    let (mut ma, mut mb) = (Model::new(), Model::new());
    closed_store(a.path(), &clock, &mut ma, 11);
    let other = closed_store(b.path(), &clock, &mut mb, 11);
    std::fs::write(a.path().join(CKPT), &other).expect("copy");
    let db = opts(&clock).read_only(true).open(a.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Stale);
    check(&db, &clock, &ma);
}

#[test]
fn a_missing_or_changed_segment_makes_it_stale_a_newer_one_is_replayed() {
    let clock = ManualClock::new(START_MS);
    let seg = |p: &Path, id: u32| p.join(format!("{id:010}.seg"));
    // A sealed segment gone (with its hint).
    let t = tempfile::tempdir().expect("tempdir");
    closed_store(t.path(), &clock, &mut Model::new(), 12);
    std::fs::remove_file(seg(t.path(), 1)).expect("rm");
    let _ = std::fs::remove_file(t.path().join("0000000001.hint"));
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Stale);
    drop(db);
    // An extra segment: the active one sealed and a new one started,
    // nothing else written.
    let t = tempfile::tempdir().expect("tempdir");
    let mut m = Model::new();
    let old = closed_store(t.path(), &clock, &mut m, 13);
    let before = cairn::segment_ids(t.path()).expect("ids");
    let db = opts(&clock)
        .index_checkpoint_at_close(false)
        .open(t.path())
        .expect("open");
    assert!(db.seal_active_segment().expect("seal"));
    db.put(key(1), b"z").expect("put");
    m.insert(key(1), (b"z".to_vec(), 0));
    db.close().expect("close");
    let after = cairn::segment_ids(t.path()).expect("ids");
    assert_eq!(after.len(), before.len() + 1);
    std::fs::write(t.path().join(CKPT), &old).expect("copy back");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    check(&db, &clock, &m);
    drop(db);
    // A hint deleted (the remedy for a hint that disagrees with its
    // segment): the index may have been built from it.
    let t = tempfile::tempdir().expect("tempdir");
    let mut m = Model::new();
    closed_store(t.path(), &clock, &mut m, 15);
    std::fs::remove_file(t.path().join("0000000001.hint")).expect("rm hint");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Stale);
    assert!(db.recovery_report().segments_scanned >= 2);
    check(&db, &clock, &m);
    drop(db);
    // A sealed segment one byte longer.
    let t = tempfile::tempdir().expect("tempdir");
    closed_store(t.path(), &clock, &mut Model::new(), 14);
    let mut bytes = std::fs::read(seg(t.path(), 1)).expect("read");
    bytes.push(0);
    std::fs::write(seg(t.path(), 1), &bytes).expect("write");
    let r = opts(&clock).read_only(true).open(t.path());
    if let Ok(db) = r {
        assert_ne!(db.recovery_report().checkpoint, CheckpointUse::Used);
    }
}

#[test]
fn after_a_power_loss_the_open_replays_what_came_after_it() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let o = || simfs::options(&sim, &clock, SyncPolicy::Always);
    let db = o().open(DIR).expect("open");
    for i in 0..200u64 {
        db.put(key(i), format!("a{i}")).expect("put");
    }
    db.close().expect("close");
    assert!(sim.file_bytes(&Path::new(DIR).join(CKPT)).is_some());
    let db = o().open(DIR).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    for i in 100..300u64 {
        db.put(key(i), format!("b{i}")).expect("put");
    }
    // Power loss without a close: the checkpoint of the close is loaded
    // and the puts after it replayed.
    std::mem::forget(db);
    sim.crash(Damage::DropUnsynced, 1);
    let db = o().open(DIR).expect("reopen");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    // 200 puts of about 50 bytes each were written after it.
    let replayed = db.recovery_report().replayed_log_bytes;
    assert!((8_000..40_000).contains(&replayed), "{replayed}");
    for i in 0..300u64 {
        let want = if i < 100 {
            format!("a{i}")
        } else {
            format!("b{i}")
        };
        assert_eq!(db.get(key(i)).expect("get"), Some(want.into_bytes()));
    }
}

/// The store of the crash tests below: a few segments, closed cleanly once
/// (so that it has a checkpoint), and the model of its contents.
fn crash_store(sim: &SimFs, clock: &ManualClock) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let db = simfs::options(sim, clock, SyncPolicy::Always)
        .open(DIR)
        .expect("open");
    let mut m = BTreeMap::new();
    for i in 0..60u64 {
        let v = format!("value-{i}-{}", "x".repeat(100)).into_bytes();
        db.put(key(i % 40), &v).expect("put");
        m.insert(key(i % 40), v);
    }
    db.delete(key(3)).expect("delete");
    m.remove(&key(3));
    db.close().expect("close");
    m
}

fn observed(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    observed_n(db, 40)
}

/// The values of the first `n` keys.
fn observed_n(db: &Db, n: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    (0..n)
        .filter_map(|i| db.get(key(i)).expect("get").map(|v| (key(i), v)))
        .collect()
}

/// A crash at every file operation of a close that writes the checkpoint
/// (and of the open before it), under every damage model: the next open
/// returns every acknowledged write, with or without the checkpoint.
#[test]
fn a_crash_at_every_operation_of_writing_or_deleting_it_loses_nothing() {
    let damages = [
        Damage::DropUnsynced,
        Damage::ProcessCrash,
        Damage::Prefix,
        Damage::Torn512,
        Damage::Torn4096,
    ];
    let mut crashes = 0;
    for (d, damage) in damages.into_iter().enumerate() {
        let mut at = 0u64;
        loop {
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            let before = crash_store(&sim, &clock);
            let mut after = before.clone();
            after.insert(key(5), b"after".to_vec());
            sim.crash_at(Some(sim.op_count() + at));
            // Open (which deletes the checkpoint), one acknowledged write,
            // and a close that writes a new one.
            let opened = simfs::options(&sim, &clock, SyncPolicy::Always)
                .open(DIR)
                .and_then(|db| db.put(key(5), b"after").map(|()| db));
            let acked = opened.is_ok();
            let mut done = false;
            match opened {
                Ok(db) => {
                    let closed = db.close();
                    done = !sim.is_down();
                    if done {
                        closed.expect("close");
                    }
                    drop(db);
                }
                Err(e) => assert!(sim.is_down(), "the open failed without a crash: {e}"),
            }
            sim.crash(damage, at * 8 + d as u64);
            let db = simfs::options(&sim, &clock, SyncPolicy::Always)
                .open(DIR)
                .unwrap_or_else(|e| panic!("{damage:?} at {at}: reopen failed: {e}"));
            let seen = observed(&db);
            assert!(
                seen == after || (!acked && seen == before),
                "{damage:?} at {at}: the reopened store differs (acked {acked}, done {done}, checkpoint {:?})",
                db.recovery_report().checkpoint
            );
            if done {
                // Closed cleanly: the next open used its checkpoint.
                assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
            }
            drop(db);
            crashes += 1;
            if done {
                break;
            }
            at += 1;
        }
    }
    assert!(crashes > 40, "only {crashes} crash points");
}

/// A checkpoint written at close is used by the next open of the same
/// files on the simulated file system too (the crash test above would
/// pass without any checkpoint at all).
#[test]
fn the_simulated_close_writes_one_the_next_open_uses() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let m = crash_store(&sim, &clock);
    let names = sim.list(Path::new(DIR)).expect("list");
    assert!(names.iter().any(|n| n == CKPT), "{names:?}");
    let db = simfs::options(&sim, &clock, SyncPolicy::Always)
        .read_only(true)
        .open(DIR)
        .expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    assert_eq!(observed(&db), m);
}

/// The checkpoint `bytes` with the last slot of its first non-empty shard
/// left out, and its counts and checksums made to match (a crafted file
/// that checks out: open would use it and lose a key).
fn without_one_slot(bytes: &[u8]) -> Vec<u8> {
    use common::format::crc32c;
    let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
    let slot = usize::from(u16::from_le_bytes([bytes[10], bytes[11]]));
    let header_len = 1076 + 56 * u32_at(12) as usize + 4;
    let shard = (0..64).find(|&i| u64_at(52 + 8 * i) > 0).expect("a slot");
    let n = u64_at(52 + 8 * shard) as usize;
    assert!(n * slot < 1 << 20, "one block");
    let mut out = bytes[..header_len].to_vec();
    out[52 + 8 * shard..60 + 8 * shard].copy_from_slice(&(n as u64 - 1).to_le_bytes());
    let crc = crc32c(&out[..header_len - 4]);
    out[header_len - 4..].copy_from_slice(&crc.to_le_bytes());
    let block = &bytes[header_len..header_len + (n - 1) * slot];
    out.extend_from_slice(block);
    if n > 1 {
        out.extend_from_slice(&crc32c(block).to_le_bytes());
    }
    let rest_at = header_len + n * slot + 4;
    out.extend_from_slice(&bytes[rest_at..bytes.len() - 16]);
    let total = u64_at(bytes.len() - 16) - 1;
    let mut footer = total.to_le_bytes().to_vec();
    footer.extend_from_slice(b"IEND");
    let mut bound = crc.to_le_bytes().to_vec();
    bound.extend_from_slice(&footer);
    footer.extend_from_slice(&crc32c(&bound).to_le_bytes());
    out.extend_from_slice(&footer);
    out
}

#[test]
fn verify_checks_it_stats_shows_it_and_repair_drops_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let good = closed_store(t.path(), &clock, &mut m, 15);
    let r = cairn::verify(t.path(), false).expect("verify");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let info = cairn::checkpoint_info(t.path())
        .expect("info")
        .expect("one");
    assert_eq!(info.usable, CheckpointUse::Used);
    assert_eq!(info.bytes, good.len() as u64);
    assert_eq!(info.written_at_ms, Some(cairn::Clock::now_unix_ms(&clock)));
    // A sound checkpoint: repair has nothing to do.
    let r = cairn::repair(t.path(), false).expect("repair");
    assert!(!r.checkpoint_removed && r.segments.is_empty());
    assert!(t.path().join(CKPT).exists());

    // Damaged: unusable, not corruption; open ignores it.
    let mut damaged = good.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    std::fs::write(t.path().join(CKPT), &damaged).expect("write");
    let r = cairn::verify(t.path(), false).expect("verify");
    let kinds: Vec<_> = r.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [cairn::ProblemKind::CheckpointUnusable],
        "{:?}",
        r.problems
    );
    assert!(!r.has_corruption());
    let info = cairn::checkpoint_info(t.path())
        .expect("info")
        .expect("one");
    assert_eq!(info.usable, CheckpointUse::Damaged);

    // Crafted: it checks out and matches the files, but lacks a key.
    let crafted = without_one_slot(&good);
    std::fs::write(t.path().join(CKPT), &crafted).expect("write");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    drop(db);
    let r = cairn::verify(t.path(), false).expect("verify");
    let kinds: Vec<_> = r.problems.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [cairn::ProblemKind::CheckpointMismatch],
        "{:?}",
        r.problems
    );
    assert!(r.has_corruption());
    assert_eq!(r.problems[0].path, t.path().join(CKPT));

    // Repair drops it (a dry run only says so).
    assert!(
        cairn::repair(t.path(), true)
            .expect("dry")
            .checkpoint_removed
    );
    assert!(t.path().join(CKPT).exists());
    assert!(
        cairn::repair(t.path(), false)
            .expect("repair")
            .checkpoint_removed
    );
    assert!(!t.path().join(CKPT).exists());
    assert!(cairn::checkpoint_info(t.path()).expect("info").is_none());
    let r = cairn::verify(t.path(), false).expect("verify");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    check(&db, &clock, &m);
}

/// A temporary checkpoint left by a crash during close is a stray file: a
/// read-only open leaves it (and still uses the checkpoint), a writable
/// open removes it.
#[test]
fn a_leftover_temporary_checkpoint_is_removed_by_a_writable_open() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let bytes = closed_store(t.path(), &clock, &mut m, 16);
    let tmp = t.path().join(".ckpt-a1B2c3D4.tmp");
    std::fs::write(&tmp, &bytes[..bytes.len() / 2]).expect("write");
    let db = opts(&clock).read_only(true).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    assert_eq!(db.recovery_report().removed_temp_files, 0);
    drop(db);
    assert!(tmp.exists());
    let db = opts(&clock).open(t.path()).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    assert_eq!(db.recovery_report().removed_temp_files, 1);
    assert!(!tmp.exists());
    check(&db, &clock, &m);
}

/// One write of the replay tests, applied to the store and to the model
/// (whether or not the store acknowledged it); returns whether it did.
fn replay_op(db: &Db, rng: &mut XorShift, step: u64, m: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> bool {
    let k = key(rng.below(60));
    let v = format!("v{step}-{}", "y".repeat(rng.below(80) as usize)).into_bytes();
    match rng.below(14) {
        0 | 6 => {
            m.remove(&k);
            db.delete(&k).is_ok()
        }
        7 => {
            // The two oldest sealed segments: a compaction the checkpoint
            // learns of as a delta (when they precede its active segment).
            let ids: Vec<u32> = db
                .segment_stats()
                .iter()
                .filter(|s| !s.active)
                .map(|s| s.id)
                .take(2)
                .collect();
            ids.is_empty() || db.compact_segments(&ids).is_ok()
        }
        8 if step.is_multiple_of(5) => db.compact().is_ok(),
        1 => {
            let k2 = key(rng.below(60));
            let mut b = Batch::new();
            b.push_put(&k, &v, None);
            b.push_delete(&k2);
            m.insert(k, v);
            m.remove(&k2);
            db.write_batch(b).is_ok()
        }
        _ => {
            m.insert(k.clone(), v.clone());
            db.put(&k, &v).is_ok()
        }
    }
}

/// Checkpoints written while the store runs (here at every roll, as the
/// deterministic mode does), with compactions the checkpoint learns of as
/// deltas, then a crash at every 7th file operation of the writes and
/// compactions after them, under three damage models: the next open
/// replays the records after the newest checkpoint and returns every
/// acknowledged write and nothing else; many of those opens used the
/// checkpoint, some through a compaction delta.
#[test]
fn a_crash_anywhere_after_running_checkpoints_replays_exactly() {
    let damages = [Damage::DropUnsynced, Damage::ProcessCrash, Damage::Torn512];
    let o = |sim: &SimFs, clock: &ManualClock| {
        simfs::options(sim, clock, SyncPolicy::Always).index_checkpoint_every_bytes(1)
    };
    let (mut replayed, mut runs) = (0, 0);
    let mut uses = BTreeMap::<String, u32>::new();
    let mut with_delta = 0;
    for (d, damage) in damages.into_iter().enumerate() {
        for at in (0..400u64).step_by(7) {
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            let mut m = BTreeMap::new();
            let mut rng = XorShift::new(100 + at);
            let db = o(&sim, &clock).open(DIR).expect("open");
            for step in 0..150 {
                assert!(replay_op(&db, &mut rng, step, &mut m), "before the crash");
            }
            let before = m.clone();
            sim.crash_at(Some(sim.op_count() + at));
            let mut pending = None;
            for step in 150..400 {
                let mut next = m.clone();
                let mut r = XorShift::new(rng.below(u64::MAX));
                if !replay_op(&db, &mut r, step, &mut next) {
                    pending = Some(next);
                    break;
                }
                m = next;
            }
            std::mem::forget(db);
            // Whether the checkpoint holds a compaction delta ("IDLT").
            let delta = sim
                .file_bytes(&Path::new(DIR).join(CKPT))
                .is_some_and(|b| b.windows(4).any(|w| w == b"IDLT"));
            sim.crash(damage, at * 8 + d as u64);
            let db = o(&sim, &clock)
                .open(DIR)
                .unwrap_or_else(|e| panic!("{damage:?} at {at}: reopen failed: {e}"));
            let seen = observed_n(&db, 60);
            if seen != m && pending.as_ref() != Some(&seen) {
                let diff: Vec<_> = (0..60)
                    .map(key)
                    .filter(|k| seen.get(k) != m.get(k))
                    .map(|k| {
                        format!(
                                "{}: seen {:?} acked {:?} pending {:?}",
                                String::from_utf8_lossy(&k),
                                seen.get(&k)
                                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(8)])
                                        .into_owned()),
                                m.get(&k)
                                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(8)])
                                        .into_owned()),
                                pending
                                    .as_ref()
                                    .and_then(|p| p.get(&k))
                                    .map(|v| String::from_utf8_lossy(&v[..v.len().min(8)])
                                        .into_owned()),
                            )
                    })
                    .collect();
                panic!(
                    "{damage:?} at {at}: the reopened store differs (checkpoint {:?}, {} keys before the crash): {diff:#?}",
                    db.recovery_report().checkpoint,
                    before.len()
                );
            }
            let replay = db.recovery_report().checkpoint == CheckpointUse::Replayed;
            replayed += u32::from(replay);
            with_delta += u32::from(replay && delta);
            *uses
                .entry(format!("{:?}", db.recovery_report().checkpoint))
                .or_insert(0) += 1;
            runs += 1;
            // The next open after this one's writes replays again.
            db.put(key(7), b"again").expect("put");
            m = seen;
            m.insert(key(7), b"again".to_vec());
            std::mem::forget(db);
            sim.crash(Damage::DropUnsynced, at);
            let db = o(&sim, &clock).open(DIR).expect("reopen");
            assert_eq!(observed_n(&db, 60), m, "{damage:?} at {at}: second reopen");
        }
    }
    // The rest: crashes after an explicit compaction of every segment
    // (which drops the checkpoint) and before the next one.
    assert!(
        replayed * 2 > runs && with_delta * 2 > replayed,
        "only {replayed} of {runs} opens replayed, {with_delta} through a compaction delta: {uses:?}"
    );
}

/// A process killed while a compaction appended its delta leaves the
/// delta cut short at the end of the checkpoint (a large `write` stops
/// part way when the process gets SIGKILL). That compaction had deleted
/// nothing: the open leaves the torn delta out and replays from the
/// checkpoint (before, it refused the whole checkpoint as damaged and read
/// every hint). A compaction in that handle does not append behind the
/// torn bytes, and the opens after it find every value.
#[test]
fn a_compaction_delta_cut_short_by_a_kill_is_left_out() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let o = || simfs::options(&sim, &clock, SyncPolicy::Always).index_checkpoint_every_bytes(1);
    let path = Path::new(DIR).join(CKPT);
    let deltas_in = |b: &[u8]| b.windows(4).filter(|w| *w == b"IDLT").count();
    let mut m = BTreeMap::new();
    let mut rng = XorShift::new(11);
    let db = o().open(DIR).expect("open");
    let mut step = 0;
    // Until the checkpoint on disk holds a delta.
    while sim.file_bytes(&path).is_none_or(|b| deltas_in(&b) == 0) {
        assert!(replay_op(&db, &mut rng, step, &mut m), "step {step}");
        step += 1;
        assert!(step < 5000, "no compaction delta after 5000 writes");
    }
    std::mem::forget(db);
    sim.crash(Damage::ProcessCrash, 1);
    // A torn next delta: the first 30 bytes of a copy of the last one.
    let bytes = sim.file_bytes(&path).expect("checkpoint");
    let last = bytes
        .windows(4)
        .rposition(|w| w == b"IDLT")
        .expect("a delta");
    let torn = bytes[last..].len().min(30);
    let f = sim
        .open(&path, OpenMode::ReadWrite)
        .expect("open checkpoint");
    f.write_at(&bytes[last..last + torn], bytes.len() as u64)
        .expect("append");
    drop(f);

    let db = o().open(DIR).expect("open after the kill");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    assert_eq!(observed_n(&db, 60), m);
    // A compaction of the oldest segments (which the checkpoint covers)
    // right away, then another kill: a delta appended behind the torn
    // bytes would make the checkpoint damaged; the compaction drops the
    // checkpoint instead.
    let oldest: Vec<u32> = db.segment_stats().iter().take(2).map(|s| s.id).collect();
    db.compact_segments(&oldest).expect("compact");
    std::mem::forget(db);
    sim.crash(Damage::ProcessCrash, 2);
    let db = o().open(DIR).expect("open after the second kill");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Missing);
    assert_eq!(observed_n(&db, 60), m);
    // Writes, compactions and checkpoints go on as before.
    for _ in 0..300 {
        assert!(replay_op(&db, &mut rng, step, &mut m), "step {step}");
        step += 1;
    }
    std::mem::forget(db);
    sim.crash(Damage::ProcessCrash, 3);
    let db = o().open(DIR).expect("open after the third kill");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    assert_eq!(observed_n(&db, 60), m);
}

/// The background thread writes checkpoints while the store runs; a copy
/// of the directory taken while it is open (what a kill -9 leaves) opens
/// from the newest one and the records after it, with every value right.
#[test]
fn the_background_thread_writes_checkpoints_a_killed_store_replays() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let mut m = Model::new();
    let mut rng = XorShift::new(21);
    let db = opts(&clock)
        .index_checkpoint_every_bytes(32 * 1024)
        .open(t.path())
        .expect("open");
    random_writes(&db, &clock, &mut m, &mut rng, 3000);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !t.path().join(CKPT).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    random_writes(&db, &clock, &mut m, &mut rng, 500);
    // Writes stop; the copy is what a kill -9 now would leave. The
    // background thread may write another checkpoint meanwhile: the copy
    // takes the checkpoint first, so it is never newer than the segments.
    let copy = tempfile::tempdir().expect("copy");
    let mut names: Vec<_> = std::fs::read_dir(t.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort_by_key(|n| n != CKPT);
    for n in names {
        if n == "LOCK" || n.to_string_lossy().ends_with(".tmp") {
            continue;
        }
        if let Ok(b) = std::fs::read(t.path().join(&n)) {
            std::fs::write(copy.path().join(&n), b).expect("write");
        }
    }
    let reopened = opts(&clock).open(copy.path()).expect("open the copy");
    assert_eq!(
        reopened.recovery_report().checkpoint,
        CheckpointUse::Replayed
    );
    check(&reopened, &clock, &m);
    drop(reopened);
    db.close().expect("close");
}

/// With no checkpoints while running, the one a clean close wrote is
/// still replayed after a crash; a compaction of segments written since
/// (which replay would need in log order) drops it first, so the outputs
/// of that compaction are never taken for leftover copies.
#[test]
fn without_running_checkpoints_compacting_new_segments_drops_the_old_one() {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let o = || simfs::options(&sim, &clock, SyncPolicy::Always).index_checkpoint_every_bytes(0);
    let db = o().open(DIR).expect("open");
    let mut m = BTreeMap::new();
    let mut rng = XorShift::new(31);
    for step in 0..100 {
        assert!(replay_op(&db, &mut rng, step, &mut m));
    }
    db.close().expect("close");
    let db = o().open(DIR).expect("open");
    assert_eq!(db.recovery_report().checkpoint, CheckpointUse::Used);
    let before: Vec<u32> = db.segment_stats().iter().map(|s| s.id).collect();
    for step in 100..300 {
        let k = key(rng.below(60));
        let v = format!("w{step}").into_bytes();
        db.put(&k, &v).expect("put");
        m.insert(k, v);
    }
    // The sealed segments written since the close: in the replay region.
    let newer: Vec<u32> = db
        .segment_stats()
        .iter()
        .filter(|s| !s.active && !before.contains(&s.id))
        .map(|s| s.id)
        .collect();
    assert!(!newer.is_empty(), "{newer:?}");
    db.compact_segments(&newer).expect("compact");
    assert!(sim.file_bytes(&Path::new(DIR).join(CKPT)).is_none());
    std::mem::forget(db);
    sim.crash(Damage::DropUnsynced, 3);
    let db = o().open(DIR).expect("reopen");
    assert_ne!(db.recovery_report().checkpoint, CheckpointUse::Replayed);
    assert_eq!(observed_n(&db, 60), m);
}
