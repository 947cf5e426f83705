//! Inputs found by the fuzz targets in `fuzz/`, kept as regression tests.
//!
//! Each test rebuilds the store files the fuzzer made (with the
//! independent encoder of docs/format.md in `tests/common/format.rs`, the
//! one the fuzz targets use, so the tests do not depend on cairn's own) and
//! opens them through the public API.

mod common;

use std::path::Path;

use cairn::{Error, Options};
use common::format::{self, kind, HintEntry, Record};

const SALT: u32 = 0x5a17_9e37;

fn segment_header(id: u32) -> Vec<u8> {
    format::segment_header(id, SALT, 0).to_vec()
}

/// Appends a put record at offset `seg.len()`.
fn push_put(seg: &mut Vec<u8>, seq: u64, key: &[u8], value: &[u8]) {
    push_record(seg, &Record::put(seq, key, value));
}

/// Appends `r` at offset `seg.len()`.
fn push_record(seg: &mut Vec<u8>, r: &Record) {
    format::push_record(seg, SALT, r);
}

/// A hint for a segment of `segment_len` bytes holding one put of `key` at
/// offset 32, with `max_seq` in its trailer.
fn hint(id: u32, segment_len: u64, seq: u64, key: &[u8], value_len: u32, max_seq: u64) -> Vec<u8> {
    hint_with(id, segment_len, &[(seq, key, value_len)], max_seq)
}

/// A hint for a segment of `segment_len` bytes listing `puts` (sequence
/// number, key, value length), every one at offset 32 (the hint does not
/// need to tell the truth), with `max_seq` in its trailer.
fn hint_with(id: u32, segment_len: u64, puts: &[(u64, &[u8], u32)], max_seq: u64) -> Vec<u8> {
    let entries: Vec<HintEntry> = puts
        .iter()
        .map(|&(seq, key, value_len)| HintEntry {
            seq,
            expires: 0,
            offset: 32,
            key: key.to_vec(),
            value_len,
            kind: kind::PUT,
        })
        .collect();
    format::encode_hint(id, SALT, segment_len, max_seq, &entries)
}

/// Opens `dir`; a store that opens must take writes without panicking, and
/// a write it acknowledged must win over the old record after a reopen.
/// Refusing to open with `Corruption` is fine too.
fn open_write_reopen(dir: &Path) {
    let db = match Options::new().open(dir) {
        Ok(db) => db,
        Err(Error::Corruption { .. }) => return,
        Err(e) => panic!("open failed with an unexpected error: {e}"),
    };
    // The impossible record is damage: refused, or (at the tail of the
    // active segment) cut off and reported. It is never used.
    match db.get("k").expect("get") {
        None => assert!(
            db.recovery_report().truncated_tail.is_some(),
            "the record vanished without a report: {:?}",
            db.recovery_report()
        ),
        Some(v) => assert_eq!(v, b"old"),
    }
    let mut acknowledged = None;
    for i in 0..3 {
        let v = format!("new{i}");
        if db.put("k", &v).is_ok() {
            acknowledged = Some(v);
        }
    }
    drop(db);
    let db = Options::new().open(dir).expect("reopen");
    if let Some(v) = acknowledged {
        assert_eq!(
            db.get("k").expect("get").as_deref(),
            Some(v.as_bytes()),
            "an acknowledged write lost to an older record after a reopen"
        );
    }
}

/// Writes `files` (name, bytes) into `dir`.
fn write_files(dir: &Path, files: &[(&str, &[u8])]) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write");
    }
}

/// Opens `dir`, which must serve `expected` (key, value); a compaction must
/// refuse with `Corruption`, and `expected` must still be served, before
/// and after a reopen. Returns the error's path, offset and reason.
fn compaction_refuses_and_changes_nothing(
    dir: &Path,
    expected: &[(&str, &str)],
) -> (std::path::PathBuf, u64, String) {
    let serves_expected = |db: &cairn::Db, when: &str| {
        for (k, v) in expected {
            assert_eq!(
                db.get(k).expect("get").as_deref(),
                Some(v.as_bytes()),
                "{when}: the store no longer serves {k}"
            );
        }
    };
    let db = Options::new().open(dir).expect("open");
    serves_expected(&db, "after open");
    let refused = match db.compact() {
        Err(Error::Corruption {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        other => panic!("compaction of an inconsistent log went through: {other:?}"),
    };
    serves_expected(&db, "after the refused compaction");
    drop(db);
    let db = Options::new().open(dir).expect("reopen");
    serves_expected(&db, "after a compaction and a reopen");
    refused
}

/// Found by `open_dir`: a record whose sequence number is `u64::MAX`
/// (checksum valid). Open computed the next sequence number as
/// `max_seq + 1` and panicked with "attempt to add with overflow"
/// (src/engine.rs, `next_seq: max_seq + 1`); without overflow checks it
/// wraps to 0, new writes get lower sequence numbers than the old record,
/// and they lose to it at the next open. Sequence numbers just below the
/// maximum overflow on the next write (`w.next_seq += seqs`).
#[test]
fn huge_sequence_number_in_a_segment() {
    for seq in [u64::MAX, u64::MAX - 1, u64::MAX - 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seg = segment_header(1);
        push_put(&mut seg, seq, b"k", b"old");
        std::fs::write(dir.path().join("0000000001.seg"), &seg).expect("write");
        open_write_reopen(dir.path());
    }
}

/// The same through a hint: a sealed segment whose hint's trailer claims
/// the highest sequence number is `u64::MAX` (hint checksum valid).
#[test]
fn huge_max_sequence_number_in_a_hint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg = segment_header(1);
    push_put(&mut seg, 1, b"k", b"old");
    let h = hint(1, seg.len() as u64, 1, b"k", 3, u64::MAX);
    std::fs::write(dir.path().join("0000000001.seg"), &seg).expect("write");
    std::fs::write(dir.path().join("0000000001.hint"), &h).expect("write");
    std::fs::write(dir.path().join("0000000002.seg"), segment_header(2)).expect("write");
    open_write_reopen(dir.path());
}

/// Found by `open_dir` in CI: a sealed segment whose hint (checksum valid)
/// leaves out a tombstone the segment holds, newer than the live version
/// of its key in the active segment. The store opened and served the live
/// version (the index is built from the hint); compaction then read the
/// segment's records, kept the tombstone (an older version lived in a kept
/// segment), and after a reopen the live key was gone. Compaction now
/// refuses, naming the hint, and the contents stay as they were.
#[test]
fn hint_that_leaves_out_a_tombstone_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg1 = segment_header(1);
    push_record(&mut seg1, &Record::tombstone(6, b"a"));
    let h = hint_with(1, seg1.len() as u64, &[], 6);
    let mut seg2 = segment_header(2);
    push_put(&mut seg2, 1, b"a", b"b");
    write_files(
        dir.path(),
        &[
            ("0000000001.seg", &seg1),
            ("0000000001.hint", &h),
            ("0000000002.seg", &seg2),
        ],
    );

    // `verify` compares the hint with the records and names the problem.
    let r = cairn::verify(dir.path(), false).expect("verify");
    let p = r
        .problems
        .iter()
        .find(|p| p.kind == cairn::ProblemKind::HintMismatch)
        .unwrap_or_else(|| panic!("verify missed the hint: {:?}", r.problems));
    assert!(p.path.ends_with("0000000001.hint"), "{p:?}");
    assert!(p.detail.contains("offset 32"), "{p:?}");
    assert!(r.has_corruption());

    let (path, offset, reason) = compaction_refuses_and_changes_nothing(dir.path(), &[("a", "b")]);
    assert!(path.ends_with("0000000001.seg"), "{}", path.display());
    assert_eq!(offset, 32);
    assert!(reason.contains("0000000001.hint"), "{reason}");

    // The way out the error names: without the hint, open scans the
    // segment, the tombstone wins, and compaction goes through.
    std::fs::remove_file(dir.path().join("0000000001.hint")).expect("remove hint");
    let db = Options::new()
        .open(dir.path())
        .expect("open without the hint");
    assert_eq!(db.get("a").expect("get"), None);
    db.compact().expect("compact");
    assert_eq!(db.get("a").expect("get"), None);
    db.put("z", "1").expect("put");
    drop(db);
    // The hints open and compaction wrote describe their segments.
    let r = cairn::verify(dir.path(), false).expect("verify");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.hints >= 1, "{r:?}");
}

/// Found by `open_dir`: salvage skipped a damaged record inside the active
/// segment and then appended new writes after it. The damage stayed in the
/// middle of the live log: a later strict open cut the log at it, losing
/// every acknowledged write made after the salvage open (and bringing back
/// a key deleted then); and the fuzzer built a damaged record whose image
/// the appended bytes completed, so the next open read it as valid. A
/// salvage open now seals such a segment and writes into a new one.
#[test]
fn salvage_never_appends_after_damage_in_the_active_segment() {
    use cairn::RecoveryMode;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg = segment_header(1);
    push_put(&mut seg, 1, b"a", b"b");
    let damaged_at = seg.len();
    push_put(&mut seg, 2, b"k", b"vvvv");
    let last = seg.len() - 1;
    seg[last] ^= 0xff; // its checksum no longer matches
    push_put(&mut seg, 3, b"c", b"d");
    std::fs::write(dir.path().join("0000000001.seg"), &seg).expect("write");
    let salvage = || Options::new().recovery_mode(RecoveryMode::Salvage);

    let db = salvage().open(dir.path()).expect("salvage open");
    let skipped = &db.recovery_report().skipped;
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].offset, damaged_at as u64);
    assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"b"[..]));
    assert_eq!(db.get("c").expect("get").as_deref(), Some(&b"d"[..]));
    db.put("x", "1").expect("put");
    assert!(db.delete("a").expect("delete"));
    // Compaction leaves the damaged segment alone instead of failing.
    db.compact().expect("compact");
    drop(db);
    assert!(
        dir.path().join("0000000002.seg").exists(),
        "the writes after the salvage open went to a new segment"
    );
    assert_eq!(
        std::fs::read(dir.path().join("0000000001.seg")).expect("read"),
        seg,
        "the damaged segment was sealed as it was"
    );

    // Strict refuses the damage by name instead of cutting the log there.
    match Options::new().open(dir.path()) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert!(path.ends_with("0000000001.seg"), "{}", path.display());
            assert_eq!(offset, damaged_at as u64);
        }
        Err(e) => panic!("strict open failed with an unexpected error: {e}"),
        Ok(db) => panic!(
            "strict open accepted the damage: a = {:?}, x = {:?}",
            db.get("a"),
            db.get("x")
        ),
    }
    // Salvage again: everything acknowledged is there, the delete holds.
    let db = salvage().open(dir.path()).expect("salvage reopen");
    assert_eq!(db.get("a").expect("get"), None);
    assert_eq!(db.get("c").expect("get").as_deref(), Some(&b"d"[..]));
    assert_eq!(db.get("x").expect("get").as_deref(), Some(&b"1"[..]));
}

/// Found by `open_dir`: two sealed segments holding different keys under
/// the same sequence number (checksums valid). Compaction writes each
/// record once, by sequence number, to drop the second copy of a record
/// that an interrupted compaction leaves behind; here that dropped a live
/// key, which was gone after a reopen. Compaction now refuses, naming both
/// records, and the store keeps serving both keys.
#[test]
fn different_keys_with_one_sequence_number_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg1 = segment_header(1);
    push_put(&mut seg1, 1, b"a", b"x");
    let mut seg2 = segment_header(2);
    push_put(&mut seg2, 1, b"b", b"y");
    write_files(
        dir.path(),
        &[
            ("0000000001.seg", &seg1),
            ("0000000002.seg", &seg2),
            ("0000000003.seg", &segment_header(3)),
        ],
    );
    let (_, _, reason) =
        compaction_refuses_and_changes_nothing(dir.path(), &[("a", "x"), ("b", "y")]);
    assert!(reason.contains("same sequence number 1"), "{reason}");
}

/// Found by `open_dir` after the two fixes above: a hint (checksum valid)
/// that gives a put a later expiry than its record has. Open served the key
/// as live; compaction, reading the record, found it expired and dropped
/// it, and after a reopen the key was gone. The check compares expiry and
/// value length too.
#[test]
fn hint_with_another_expiry_than_its_record_and_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg1 = segment_header(1);
    push_record(&mut seg1, &Record::put(1, b"k", b"v").expiring(1_000)); // expired in 1970
    let h = hint_with(1, seg1.len() as u64, &[(1, b"k", 1)], 1);
    write_files(
        dir.path(),
        &[
            ("0000000001.seg", &seg1),
            ("0000000001.hint", &h),
            ("0000000002.seg", &segment_header(2)),
        ],
    );
    let (_, offset, reason) = compaction_refuses_and_changes_nothing(dir.path(), &[("k", "v")]);
    assert_eq!(offset, 32);
    assert!(reason.contains("expiry 1000"), "{reason}");
}

/// Found by `open_dir` with the index that keeps no keys: a hint (checksum
/// valid) that names another key than its record holds. The entry was
/// made under the hint's key; a scan read the record's key, whose get did
/// not find the entry, and left the key out in silence (`len()` counted
/// it). A scan now reports the disagreement as corruption, naming the hint.
#[test]
fn hint_naming_another_key_than_its_record_fails_a_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut seg1 = segment_header(1);
    push_put(&mut seg1, 1, b"real", b"v");
    let h = hint_with(1, seg1.len() as u64, &[(1, b"told", 1)], 1);
    write_files(
        dir.path(),
        &[
            ("0000000001.seg", &seg1),
            ("0000000001.hint", &h),
            ("0000000002.seg", &segment_header(2)),
        ],
    );
    let db = Options::new().open(dir.path()).expect("open");
    assert_eq!(db.len().expect("len"), 1);
    let scanned: Vec<_> = db.scan_prefix("").collect();
    match scanned.as_slice() {
        [Err(Error::Corruption { path, reason, .. })] => {
            assert!(path.ends_with("0000000001.seg"), "{path:?}");
            assert!(reason.contains("0000000001.hint"), "{reason}");
        }
        other => panic!("expected one corruption error, got {other:?}"),
    }
    // Neither key is served as something it is not.
    assert!(db.get("told").is_err() || db.get("told").expect("get").is_none());
    assert_eq!(db.get("real").expect("get"), None);
}
