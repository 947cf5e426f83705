//! Expiry changes and expirations in the log (format version 2): `expire`
//! and `persist` write puts flagged expiry-only; the expiry sweep (and a
//! delete or compaction that meets an expired key) writes tombstones
//! flagged expired; keys that expired while the store was closed get
//! theirs after a writable open; version-1 segments still open, and a
//! writable open never appends to one.

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use cairn::{Db, Error, ManualClock, Options, RecordKind, SegmentEntry, SyncPolicy};
use common::format::{self, kind, Record, RECORD_FLAG_EXPIRY_ONLY};
use common::{copy_dir, START_MS};

/// A store whose clock the test moves, with no background sweep.
fn open(dir: &Path, clock: &ManualClock) -> Db {
    Options::new()
        .sync_policy(SyncPolicy::Never)
        .clock(clock.clone())
        .expiry_sweep_interval_ms(0)
        .auto_compact(false)
        .open(dir)
        .expect("open")
}

/// A put or tombstone as `read_segment` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    kind: RecordKind,
    seq: u64,
    key: Vec<u8>,
    value: Vec<u8>,
    expires_at_ms: u64,
    expiry_only: bool,
    expired: bool,
}

/// Every put and tombstone of the store's segments, in id then offset order.
fn records(db: &Db) -> Vec<Rec> {
    let mut out = Vec::new();
    for s in db.segment_stats() {
        let entries = db.read_segment(s.id).expect("held").expect("read");
        for e in entries {
            match e {
                SegmentEntry::Record {
                    kind: kind @ (RecordKind::Put | RecordKind::Tombstone),
                    seq,
                    expires_at_ms,
                    expiry_only,
                    expired,
                    key,
                    value,
                    ..
                } => out.push(Rec {
                    kind,
                    seq,
                    key,
                    value,
                    expires_at_ms,
                    expiry_only,
                    expired,
                }),
                SegmentEntry::Record { .. } => {}
                other => panic!("damage in segment {}: {other:?}", s.id),
            }
        }
    }
    out
}

fn expired_tombstones(db: &Db) -> Vec<Vec<u8>> {
    records(db)
        .into_iter()
        .filter(|r| r.kind == RecordKind::Tombstone && r.expired)
        .map(|r| r.key)
        .collect()
}

#[test]
fn expire_and_persist_write_expiry_only_puts() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    db.put("k", "value").expect("put");
    assert!(db.expire("k", Duration::from_secs(60)).expect("expire"));
    assert!(db.persist("k").expect("persist"));
    assert!(!db
        .persist("k")
        .expect("persist without a ttl writes nothing"));
    assert!(!db
        .expire("missing", Duration::from_secs(1))
        .expect("expire of a missing key writes nothing"));
    db.put("gone", "x").expect("put");
    assert!(db.expire("gone", Duration::ZERO).expect("expire 0 deletes"));

    let recs = records(&db);
    let r = |key: &str, kind, expires_at_ms, expiry_only| Rec {
        kind,
        seq: 0,
        key: key.as_bytes().to_vec(),
        value: if kind == RecordKind::Put {
            if key == "k" {
                b"value".to_vec()
            } else {
                b"x".to_vec()
            }
        } else {
            Vec::new()
        },
        expires_at_ms,
        expiry_only,
        expired: false,
    };
    let expected = vec![
        r("k", RecordKind::Put, 0, false),
        r("k", RecordKind::Put, START_MS + 60_000, true),
        r("k", RecordKind::Put, 0, true),
        r("gone", RecordKind::Put, 0, false),
        // An expiry in the past deletes the key, as Redis does: a delete,
        // not an expiration.
        r("gone", RecordKind::Tombstone, 0, false),
    ];
    let got: Vec<Rec> = recs
        .iter()
        .map(|x| Rec {
            seq: 0,
            ..x.clone()
        })
        .collect();
    assert_eq!(got, expected);
    assert!(recs.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"value"[..]));
    drop(db);

    // They read back after a reopen, as the same values and expiries.
    let db = open(t.path(), &clock);
    assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"value"[..]));
    assert_eq!(db.ttl("k").expect("ttl"), cairn::Ttl::Persistent);
    assert_eq!(db.get("gone").expect("get"), None);
}

#[test]
fn the_sweep_logs_expirations_that_survive_reopen() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    for i in 0..1000 {
        db.put_with_ttl(format!("short{i}"), "v", Duration::from_secs(10))
            .expect("put");
    }
    db.put("forever", "v").expect("put");
    db.put_with_ttl("long", "v", Duration::from_secs(100))
        .expect("put");
    let before = db.stats();
    clock.advance(Duration::from_secs(20));
    assert_eq!(db.sweep_expired(), 1000);
    assert_eq!(db.sweep_expired(), 0, "nothing left to log");
    let mut logged = expired_tombstones(&db);
    logged.sort();
    let mut want: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("short{i}").into_bytes())
        .collect();
    want.sort();
    assert_eq!(logged, want);
    let after = db.stats();
    assert_eq!(
        after.expired_keys_removed,
        before.expired_keys_removed + 1000
    );
    assert_eq!(db.len().expect("len"), 2);
    db.close().expect("close");

    // Reopened with the clock set back before the expiry: the tombstones,
    // not the clock, keep the keys gone.
    clock.set(START_MS);
    let db = open(t.path(), &clock);
    for i in (0..1000).step_by(97) {
        assert_eq!(db.get(format!("short{i}")).expect("get"), None, "short{i}");
    }
    assert_eq!(db.len().expect("len"), 2);
    assert_eq!(db.get("long").expect("get").as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_put_racing_the_sweep_is_never_deleted() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    for round in 0..20 {
        let keys: Vec<String> = (0..300).map(|i| format!("r{round}k{i}")).collect();
        for k in &keys {
            db.put_with_ttl(k, "old", Duration::from_millis(1))
                .expect("put");
        }
        clock.advance(Duration::from_millis(2));
        let sweeper = {
            let db = db.clone();
            thread::spawn(move || db.sweep_expired())
        };
        for k in &keys {
            db.put(k, "new").expect("put");
        }
        sweeper.join().expect("sweeper");
        db.sweep_expired();
        for k in &keys {
            assert_eq!(db.get(k).expect("get").as_deref(), Some(&b"new"[..]), "{k}");
        }
    }
    db.close().expect("close");
    let db = open(t.path(), &clock);
    assert_eq!(db.len().expect("len"), 20 * 300);
}

#[test]
fn keys_expired_while_closed_get_their_tombstones_after_open() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    {
        let db = open(t.path(), &clock);
        db.put_with_ttl("a", "1", Duration::from_secs(10))
            .expect("put");
        db.put_with_ttl("b", "2", Duration::from_secs(10))
            .expect("put");
        db.put("c", "3").expect("put");
        db.close().expect("close");
    }
    clock.advance(Duration::from_secs(60));

    // A read-only open writes nothing and serves nothing expired.
    {
        let ro = Options::new()
            .clock(clock.clone())
            .read_only(true)
            .open(t.path())
            .expect("read-only open");
        assert_eq!(ro.get("a").expect("get"), None);
        assert_eq!(ro.sweep_expired(), 0, "dropped at open");
        assert!(expired_tombstones(&ro).is_empty());
    }

    let db = open(t.path(), &clock);
    assert_eq!(
        db.get("a").expect("get"),
        None,
        "invisible before the sweep"
    );
    assert_eq!(db.len().expect("len"), 1);
    assert_eq!(db.sweep_expired(), 2);
    let mut logged = expired_tombstones(&db);
    logged.sort();
    assert_eq!(logged, vec![b"a".to_vec(), b"b".to_vec()]);
    db.close().expect("close");

    // And with the background sweep on, its first round runs at open.
    let t2 = tempfile::tempdir().expect("tempdir");
    {
        let db = open(t2.path(), &clock);
        db.put_with_ttl("x", "1", Duration::from_secs(10))
            .expect("put");
        db.close().expect("close");
    }
    clock.advance(Duration::from_secs(60));
    let db = Options::new()
        .clock(clock.clone())
        .expiry_sweep_interval_ms(3_600_000)
        .open(t2.path())
        .expect("open");
    let deadline = Instant::now() + Duration::from_secs(10);
    while expired_tombstones(&db).is_empty() {
        assert!(
            Instant::now() < deadline,
            "no tombstone from the first sweep"
        );
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(expired_tombstones(&db), vec![b"x".to_vec()]);
}

#[test]
fn a_delete_or_compaction_that_meets_an_expired_key_logs_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    db.put_with_ttl("deleted-late", "v", Duration::from_secs(1))
        .expect("put");
    db.put_with_ttl("compacted", "v", Duration::from_secs(1))
        .expect("put");
    db.put("live", "v").expect("put");
    assert!(db.seal_active_segment().expect("seal"));
    clock.advance(Duration::from_secs(5));
    assert!(!db.delete("deleted-late").expect("delete"), "already gone");
    assert_eq!(expired_tombstones(&db), vec![b"deleted-late".to_vec()]);
    assert!(!db.delete("deleted-late").expect("delete"));
    assert_eq!(expired_tombstones(&db).len(), 1, "logged once");
    db.compact().expect("compact");
    let mut logged = expired_tombstones(&db);
    logged.sort();
    assert_eq!(
        logged,
        vec![b"compacted".to_vec(), b"deleted-late".to_vec()]
    );
    assert_eq!(db.get("live").expect("get").as_deref(), Some(&b"v"[..]));
    db.close().expect("close");
    clock.set(START_MS);
    let db = open(t.path(), &clock);
    assert_eq!(db.get("compacted").expect("get"), None);
    assert_eq!(db.get("deleted-late").expect("get"), None);
    assert_eq!(db.len().expect("len"), 1);
}

/// Found by the model test: a compare-and-swap that deletes a key already
/// expired logs its expiration, as `delete` does, so the sweep has nothing
/// left to count.
#[test]
fn a_compare_and_swap_delete_of_an_expired_key_logs_it_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    db.put("", "").expect("put");
    let batch = cairn::Batch::new().put_with_ttl("b", "", Duration::from_millis(1));
    db.write_batch(batch).expect("batch");
    clock.advance(Duration::from_millis(1));
    db.compare_and_swap("b", None, None)
        .expect("cas")
        .expect("absent matches absent");
    assert_eq!(expired_tombstones(&db), vec![b"b".to_vec()]);
    assert_eq!(db.sweep_expired(), 0, "already logged");
    assert_eq!(expired_tombstones(&db).len(), 1, "logged once");
    db.close().expect("close");
}

#[test]
fn a_closed_handle_sweeps_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    db.put_with_ttl("k", "v", Duration::from_secs(1))
        .expect("put");
    db.close().expect("close");
    clock.advance(Duration::from_secs(5));
    assert_eq!(db.sweep_expired(), 0, "closed");
    assert!(matches!(db.put("k", "v"), Err(Error::Closed)));
}

/// The version-1 fixture of tests/golden.rs opens for writing: its active
/// segment is sealed as it is, new records go to a version-2 segment, and
/// both read back, before and after a reopen.
#[test]
fn a_writable_open_never_appends_to_a_version_1_segment() {
    let t = tempfile::tempdir().expect("tempdir");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v1-close-marks");
    copy_dir(&fixture, t.path());
    let seg1 = format::seg_path(t.path(), 1);
    let original = std::fs::read(&seg1).expect("read");
    assert_eq!(format::le_u16(&original, 8), 1, "the fixture is version 1");
    let clock = ManualClock::new(1_700_000_000_000 + 1_000);
    let db = open(t.path(), &clock);
    assert_eq!(db.get("counter").expect("get").as_deref(), Some(&b"42"[..]));
    assert!(db
        .expire("counter", Duration::from_secs(600))
        .expect("expire"));
    db.put("new", "after the upgrade").expect("put");
    let ids: Vec<u32> = db.segment_stats().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 2]);
    db.close().expect("close");
    assert_eq!(
        std::fs::read(&seg1).expect("read"),
        original,
        "the version-1 segment is untouched"
    );
    assert!(
        format::hint_path(t.path(), 1).exists(),
        "the sealed segment gets its hint"
    );
    let seg2 = std::fs::read(format::seg_path(t.path(), 2)).expect("read");
    assert_eq!(
        format::le_u16(&seg2, 8),
        format::FORMAT_VERSION,
        "new segments are of the current version"
    );
    let db = open(t.path(), &clock);
    assert_eq!(db.get("counter").expect("get").as_deref(), Some(&b"42"[..]));
    assert_eq!(
        db.get("new").expect("get").as_deref(),
        Some(&b"after the upgrade"[..])
    );
    assert_eq!(db.get("b2").expect("get"), Some(vec![0u8, 255, 7]));
    let flagged: Vec<Rec> = records(&db).into_iter().filter(|r| r.expiry_only).collect();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0].key, b"counter");
    assert_eq!(db.len().expect("len"), 7);
}

/// A record with a version-2 flag in a version-1 segment was written by no
/// cairn: corruption (named with its file and offset), not a record. The
/// segment is sealed here (segment 2 is the active one): in the active
/// segment, damage past the last sync mark is cut as an unsynced tail.
#[test]
fn version_2_flags_in_a_version_1_segment_are_damage() {
    let t = tempfile::tempdir().expect("tempdir");
    let salt = 0x1234_5678;
    let mut h = format::SegmentHeader::new(1, salt, 0);
    h.version = 1;
    let mut seg = h.encode().to_vec();
    let flagged_at = {
        format::push_record(&mut seg, salt, &Record::put(1, b"a", b"1"));
        let at = seg.len();
        let r = Record::put(2, b"a", b"1")
            .expiring(START_MS + 1_000)
            .with_flags(RECORD_FLAG_EXPIRY_ONLY);
        format::push_record(&mut seg, salt, &r);
        at
    };
    format::push_record(&mut seg, salt, &Record::put(3, b"b", b"2"));
    assert_eq!(seg[flagged_at + 4], kind::PUT);
    std::fs::write(format::seg_path(t.path(), 1), &seg).expect("write");
    let active = format::segment_header(2, salt ^ 1, 0);
    std::fs::write(format::seg_path(t.path(), 2), active).expect("write");

    let entries = cairn::read_segment(format::seg_path(t.path(), 1)).expect("read");
    assert!(
        entries
            .iter()
            .any(|e| matches!(e, SegmentEntry::Damaged { offset, reason, .. }
            if *offset == flagged_at as u64 && reason.contains("version"))),
        "{entries:?}"
    );
    let clock = ManualClock::new(START_MS);
    match Options::new().clock(clock.clone()).open(t.path()) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!(path, format::seg_path(t.path(), 1));
            assert_eq!(offset, flagged_at as u64);
        }
        other => panic!("expected corruption, got {:?}", other.map(|_| ())),
    }

    // The same bytes in a version-2 segment are a valid expiry change.
    let mut v2 = seg.clone();
    v2[..32].copy_from_slice(&format::segment_header(1, salt, 0));
    std::fs::write(format::seg_path(t.path(), 1), &v2).expect("write");
    let db = Options::new()
        .clock(clock)
        .read_only(true)
        .open(t.path())
        .expect("open");
    assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"1"[..]));
}

/// Pitfall 6 with an expired tombstone: put in one segment, its expired
/// tombstone in a later one, compact the later one only. The tombstone is
/// kept (an older version lives in a segment that stays), so a reopen with
/// the clock set back before the expiry still finds the key absent.
#[test]
fn compaction_keeps_an_expired_tombstone_that_shadows_a_kept_segment() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = open(t.path(), &clock);
    db.put_with_ttl("k", "v", Duration::from_secs(10))
        .expect("put");
    assert!(db.seal_active_segment().expect("seal"));
    clock.advance(Duration::from_secs(20));
    assert_eq!(db.sweep_expired(), 1);
    db.put("other", "x").expect("put");
    assert!(db.seal_active_segment().expect("seal"));
    let ids: Vec<u32> = db.segment_stats().iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    let s = db.compact_segments(&[2]).expect("compact segment 2");
    assert_eq!(s.tombstones_kept, 1, "{s:?}");
    db.close().expect("close");
    clock.set(START_MS);
    let db = open(t.path(), &clock);
    assert_eq!(
        db.get("k").expect("get"),
        None,
        "the put in segment 1 stays hidden"
    );
    assert_eq!(db.get("other").expect("get").as_deref(), Some(&b"x"[..]));
}

/// `cairn repair` rewrites a damaged segment with its valid records: an
/// expiry change and an expiration stay flagged as such.
#[test]
fn repair_keeps_the_expiry_flags() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("store");
    let clock = ManualClock::new(START_MS);
    let db = open(&dir, &clock);
    db.put("victim", "some bytes to damage").expect("put");
    db.put_with_ttl("k", "v", Duration::from_secs(10))
        .expect("put");
    assert!(db.expire("k", Duration::from_secs(60)).expect("expire"));
    db.put_with_ttl("gone", "v", Duration::from_secs(10))
        .expect("put");
    clock.advance(Duration::from_secs(30));
    assert_eq!(db.sweep_expired(), 1);
    db.put("after", "z").expect("put");
    assert!(db.seal_active_segment().expect("seal"));
    db.close().expect("close");

    let seg = format::seg_path(&dir, 1);
    let victim = cairn::read_segment(&seg)
        .expect("read")
        .into_iter()
        .find_map(|e| match e {
            SegmentEntry::Record { offset, key, .. } if key == b"victim" => Some(offset),
            _ => None,
        })
        .expect("the victim record");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[victim as usize + 32 + 6 + 3] ^= 0x40; // a byte of its value
    std::fs::write(&seg, &bytes).expect("write");

    let report = cairn::repair(&dir, false).expect("repair");
    assert_eq!(report.segments, vec![1], "{report:?}");
    let flags: Vec<(Vec<u8>, RecordKind, bool, bool)> = cairn::read_segment(&seg)
        .expect("read")
        .into_iter()
        .filter_map(|e| match e {
            SegmentEntry::Record {
                kind: kind @ (RecordKind::Put | RecordKind::Tombstone),
                key,
                expiry_only,
                expired,
                ..
            } => Some((key, kind, expiry_only, expired)),
            _ => None,
        })
        .collect();
    let k = |s: &str| s.as_bytes().to_vec();
    assert_eq!(
        flags,
        vec![
            (k("k"), RecordKind::Put, false, false),
            (k("k"), RecordKind::Put, true, false),
            (k("gone"), RecordKind::Put, false, false),
            (k("gone"), RecordKind::Tombstone, false, true),
            (k("after"), RecordKind::Put, false, false),
        ]
    );
    let db = open(&dir, &clock);
    assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"v"[..]));
    assert_eq!(db.get("gone").expect("get"), None);
    assert_eq!(db.get("victim").expect("get"), None, "dropped by repair");
}

/// Found by the `open_dir` fuzz target. A version-1 active segment that has
/// a hint (the segment after it was lost in a crash) and a torn tail: the
/// open cuts the tail and seals the segment, so its stale hint, which
/// describes the uncut length, must go, or the next open refuses the
/// segment as truncated.
#[test]
fn sealing_a_version_1_active_segment_drops_its_stale_hint() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    {
        let db = open(t.path(), &clock);
        for i in 0..5 {
            db.put(format!("k{i}"), format!("value {i}")).expect("put");
        }
        assert!(db.seal_active_segment().expect("seal"));
        db.close().expect("close");
    }
    let (seg1, hint1) = (
        format::seg_path(t.path(), 1),
        format::hint_path(t.path(), 1),
    );
    assert!(hint1.exists(), "the sealed segment has its hint");
    // Segment 2 lost (its directory entry never became durable).
    std::fs::remove_file(format::seg_path(t.path(), 2)).expect("rm");
    let _ = std::fs::remove_file(format::hint_path(t.path(), 2));
    // Segment 1 as version 1 wrote it, with a torn last record.
    let mut b = std::fs::read(&seg1).expect("read");
    let mut h = format::SegmentHeader::read(&b).expect("header");
    h.version = 1;
    b[..32].copy_from_slice(&h.encode());
    let last = b.len() - 3;
    b[last] ^= 0x55;
    std::fs::write(&seg1, &b).expect("write");

    let db = open(t.path(), &clock);
    assert_eq!(db.get("k4").expect("get"), None, "the torn record is cut");
    assert_eq!(db.get("k3").expect("get").as_deref(), Some(&b"value 3"[..]));
    db.put("after", "x").expect("put");
    db.close().expect("close");
    // Without the index checkpoint the close wrote, so that the open
    // reads the hints.
    std::fs::remove_file(t.path().join("index.ckpt")).expect("rm checkpoint");
    let db = open(t.path(), &clock);
    assert_eq!(db.get("k3").expect("get").as_deref(), Some(&b"value 3"[..]));
    assert_eq!(db.get("after").expect("get").as_deref(), Some(&b"x"[..]));
    let r = db.recovery_report();
    assert_eq!(
        r.segments_from_hints, 1,
        "a fresh hint for segment 1: {r:?}"
    );
}
