//! After a clean close, damage anywhere in the active segment is refused
//! (strict) or salvaged, never cut silently (issue 14, bug 3).
//!
//! A store is written on the simulated file system and closed. Then every
//! bit of the last 640 bytes of the active segment's records (the close marks
//! among them), and the first bytes of its preallocated zeros, are flipped
//! one at a time. Each case is opened:
//!
//! * strict: either every key reads its value, or open fails with
//!   `Error::Corruption` naming the active segment;
//! * salvage: open succeeds, and no key is lost but the one whose record
//!   holds the flipped bit, and only with the loss reported.
//!
//! Before clean closes vouched for the newest bytes, the strict open cut
//! the log at the damaged record and silently dropped it and every record
//! after it.

mod common;

use cairn::{Db, Error, Options, RecoveryMode, SyncPolicy};
use common::format::{self, seg_name, RecordHeader, SegmentHeader};
use common::sim::SimFs;
use common::simfs::{fresh_fs, snapshot, Files, DIR};
use common::TestOptions;

const KEYS: u64 = 400;
const SEGMENT_BYTES: u64 = 16 * 1024;

/// No index checkpoint: an open that uses one does not read the active
/// segment (damage is then found by the read of the damaged record, as in
/// a sealed segment loaded from its hint); these tests check what an open
/// that scans it does.
fn options(sim: &SimFs, mode: RecoveryMode) -> Options {
    Options::new()
        .index_checkpoint_at_close(false)
        .max_segment_bytes(SEGMENT_BYTES)
        .sync_policy(SyncPolicy::Always)
        .recovery_mode(mode)
        .on_sim(sim)
}

fn key(i: u64) -> Vec<u8> {
    format!("key{i:05}").into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    format!("value {i} {}", "x".repeat((i % 37) as usize)).into_bytes()
}

/// The records of a segment: (offset, length, key), up to the first bytes
/// that are not a record (the preallocated zeros).
fn records(seg: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
    let salt = SegmentHeader::read(seg).expect("segment header").salt;
    let mut at = format::SEGMENT_HEADER_LEN;
    let mut out = Vec::new();
    while let Some(h) = format::decode_record(&seg[at..], salt, at as u64) {
        let len = h.record_len() as usize;
        let k = &seg[at + format::RECORD_HEADER_LEN..][..h.key_len as usize];
        out.push((at, len, k.to_vec()));
        at += len;
    }
    out
}

/// Keys that do not read back as written (missing, or a failed read).
fn lost(db: &Db) -> Vec<Vec<u8>> {
    (0..KEYS)
        .filter(|&i| !matches!(db.get(key(i)), Ok(Some(v)) if v == value(i)))
        .map(key)
        .collect()
}

/// Writes the store and closes it; returns its files and the name of the
/// active segment.
fn reference() -> (Files, String) {
    let sim = SimFs::new();
    let db = options(&sim, RecoveryMode::Strict).open(DIR).expect("open");
    for i in 0..KEYS {
        db.put(key(i), value(i)).expect("put");
    }
    let active = db
        .segment_stats()
        .into_iter()
        .find(|s| s.active)
        .expect("active segment");
    assert!(active.id >= 2, "the store has a sealed segment");
    assert!(active.bytes > 8192, "the active segment holds sync marks");
    db.close().expect("close");
    let files = snapshot(&sim);
    (files, seg_name(active.id))
}

/// Opens a damaged copy of `files` in both modes and checks the rules.
/// Returns a description of what went wrong, if anything.
fn check_case(files: &Files, seg: &str, damaged_key: Option<&[u8]>) -> Option<String> {
    let sim = fresh_fs(files);
    match options(&sim, RecoveryMode::Strict).open(DIR) {
        Ok(db) => {
            let l = lost(&db);
            if !l.is_empty() {
                let rep = db.recovery_report();
                return Some(format!(
                    "strict open lost {} keys (first {:?}), report {:?}",
                    l.len(),
                    String::from_utf8_lossy(&l[0]),
                    rep.truncated_tail
                ));
            }
        }
        Err(Error::Corruption { path, .. }) => {
            if !path.ends_with(seg) {
                return Some(format!("corruption names {}", path.display()));
            }
        }
        Err(e) => return Some(format!("strict open: unexpected error {e}")),
    }
    let sim = fresh_fs(files);
    let db = match options(&sim, RecoveryMode::Salvage).open(DIR) {
        Ok(db) => db,
        Err(e) => return Some(format!("salvage open failed: {e}")),
    };
    let l = lost(&db);
    let rep = db.recovery_report();
    let reported = !rep.skipped.is_empty() || rep.truncated_tail.is_some();
    if l.iter().any(|k| Some(&k[..]) != damaged_key) {
        return Some(format!("salvage lost {} keys: {:?}", l.len(), l.first()));
    }
    if !l.is_empty() && !reported {
        return Some("salvage lost the damaged record without reporting it".into());
    }
    None
}

#[test]
fn damage_after_a_clean_close_is_never_cut_silently() {
    let (files, seg) = reference();
    let pristine = &files[&seg];
    let recs = records(pristine);
    let end = recs
        .last()
        .map_or(format::SEGMENT_HEADER_LEN, |r| r.0 + r.1);
    assert!(
        pristine[end..].iter().all(|&b| b == 0),
        "the records end where the zeros start"
    );
    let from = end.saturating_sub(640);
    let to = (end + 32).min(pristine.len());
    let mut failures = Vec::new();
    let mut cases = 0;
    for at in from..to {
        let damaged_key = recs
            .iter()
            .find(|r| r.0 <= at && at < r.0 + r.1)
            .map(|r| r.2.as_slice())
            .filter(|k| !k.is_empty());
        for bit in 0..8 {
            let mut files = files.clone();
            if let Some(b) = files.get_mut(&seg) {
                b[at] ^= 1 << bit;
            }
            cases += 1;
            if let Some(why) = check_case(&files, &seg, damaged_key) {
                failures.push(format!("byte {at} (end {end}) bit {bit}: {why}"));
            }
        }
    }
    println!(
        "{cases} bit flips near the end of {seg}: {} wrong",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases wrong, e.g.:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
}

/// The writer goes on appending after the close marks; a later clean close
/// vouches for the new records too, and the old marks stay harmless.
#[test]
fn reopen_append_close_is_protected_again() {
    let sim = SimFs::new();
    for round in 0..3u64 {
        let db = options(&sim, RecoveryMode::Strict).open(DIR).expect("open");
        for i in (round * 40)..(round * 40 + 40) {
            db.put(key(i), value(i)).expect("put");
        }
        db.close().expect("close");
    }
    let sim2 = fresh_fs(&snapshot(&sim));
    let db = options(&sim2, RecoveryMode::Strict)
        .open(DIR)
        .expect("open");
    assert!(
        lost(&db).len() == (KEYS - 120) as usize,
        "the 120 keys are there"
    );
    drop(db);
    // An open and close that writes nothing adds nothing.
    let before = snapshot(&sim);
    let db = options(&sim, RecoveryMode::Strict).open(DIR).expect("open");
    db.close().expect("close");
    assert_eq!(
        snapshot(&sim),
        before,
        "a close after no writes changed files"
    );
    let seg = seg_name(1);
    assert_eq!(before.keys().filter(|n| n.ends_with(".seg")).count(), 1);
    let recs = records(&before[&seg]);
    let marks = |b: &[u8]| {
        records(b)
            .iter()
            .filter(|r| {
                RecordHeader::read(b, r.0).is_some_and(|h| h.kind == format::kind::SYNC_MARK)
            })
            .count()
    };
    assert!(marks(&before[&seg]) >= 6, "two marks per close");
    // The marks of the first two closes are in the middle of the log now;
    // flip a bit in each of the last 30 data records: always refused.
    let data: Vec<_> = recs.iter().filter(|r| !r.2.is_empty()).collect();
    for r in data.iter().rev().take(30) {
        let mut files = before.clone();
        if let Some(b) = files.get_mut(&seg) {
            b[r.0 + format::RECORD_HEADER_LEN] ^= 1;
        }
        for read_only in [false, true] {
            let sim = fresh_fs(&files);
            match options(&sim, RecoveryMode::Strict)
                .read_only(read_only)
                .open(DIR)
            {
                Err(Error::Corruption { offset, .. }) => assert_eq!(offset, r.0 as u64),
                Ok(_) => panic!("damage at {} opened (read-only: {read_only})", r.0),
                Err(e) => panic!("damage at {}: {e}", r.0),
            }
        }
    }
    let h = RecordHeader::read(&before[&seg], recs[0].0).expect("header");
    assert_eq!(h.kind, format::kind::PUT);
}

/// A clean close after a roll writes close marks even when the new active
/// segment ends exactly where the previous session's active segment ended
/// (its marks once made the writer think it had nothing to vouch for).
#[test]
fn a_close_after_a_roll_protects_the_new_segment() {
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let open = || {
        Options::new()
            .index_checkpoint_at_close(false)
            .sync_policy(SyncPolicy::Never)
            .auto_compact(false)
            .open(dir)
            .expect("open")
    };
    let seg_len = |id: u32| {
        std::fs::metadata(dir.join(seg_name(id)))
            .expect("segment")
            .len()
    };
    let db = open();
    for i in 0..10 {
        db.put(format!("k{i}"), [b'a'; 100]).expect("put");
    }
    db.close().expect("close");
    let first_end = seg_len(1); // ten records and two close marks
    let db = open();
    assert!(db.seal_active_segment().expect("seal"));
    let start = seg_len(2);
    for i in 0..10 {
        db.put(format!("k{i}"), [b'b'; 100]).expect("put");
    }
    let record = (seg_len(2) - start) / 10; // 2-byte key, 100-byte value
    let overhead = record - 102;
    // One more record that makes segment 2 end exactly at `first_end`.
    let value_len = first_end - seg_len(2) - overhead - 2;
    db.put("zz", vec![b'c'; value_len as usize]).expect("put");
    assert_eq!(seg_len(2), first_end);
    db.close().expect("close");
    assert!(seg_len(2) > first_end, "no close marks after the roll");
    // Damage in the last record: refused, never cut silently.
    let path = dir.join(seg_name(2));
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[first_end as usize - 5] ^= 1;
    std::fs::write(&path, &bytes).expect("write");
    match Options::new().open(dir) {
        Err(Error::Corruption { path: p, .. }) => assert_eq!(p, path),
        Err(e) => panic!("unexpected error: {e}"),
        Ok(db) => panic!(
            "opened: zz = {:?}, report {:?}",
            db.get("zz").expect("get").map(|v| v.len()),
            db.recovery_report()
        ),
    }
}
