//! Recovery: what open does with the files a crash (or bit rot, or a stray
//! copy) leaves behind.
//!
//! The tests write a store through the public API, then edit its files
//! directly (the on-disk format is specified in docs/format.md) and check
//! what the next open sees.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::{
    Batch, Db, Error, ManualClock, Options, RecoveryMode, SyncPolicy, Ttl, MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
};
use common::copy_dir;
use common::format::{
    crc32c, hint_path, kind, le_u32, le_u64, record_checksum_ok, seg_path, Record, RecordHeader,
    SegmentHeader, FORMAT_VERSION, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};

type State = BTreeMap<Vec<u8>, Vec<u8>>;

// ----- helpers ----------------------------------------------------------------

/// Durable writes, small enough segments that preallocation stays cheap.
/// No index checkpoint: these tests check what open finds in hints and
/// segments, which an open from a checkpoint does not read
/// (tests/index_checkpoint.rs covers that).
fn opts() -> Options {
    Options::new()
        .sync_policy(SyncPolicy::Always)
        .max_segment_bytes(64 << 10)
        .expiry_sweep_interval_ms(0)
        .index_checkpoint_at_close(false)
}

/// Tiny segments, to get several of them.
fn small_opts() -> Options {
    opts().max_segment_bytes(4096)
}

/// A segment header for segment `id` in format `version`, salt 0.
fn encode_segment_header(id: u32, version: u16) -> Vec<u8> {
    SegmentHeader {
        version,
        ..SegmentHeader::new(id, 0, 0)
    }
    .encode()
    .to_vec()
}

/// One record found in a segment file.
#[derive(Clone, Debug)]
struct Rec {
    offset: usize,
    len: usize,
    kind: u8,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl Rec {
    fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// The valid records of a segment, in order, stopping at the first thing
/// that is not one (zeros, a torn record, the end of the file).
fn parse_records(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN;
    while let Some(h) = RecordHeader::read(bytes, pos) {
        if h.kind == 0 {
            break;
        }
        let key_len = h.key_len as usize;
        let len = h.record_len() as usize;
        if pos + len > bytes.len() || !record_checksum_ok(bytes, pos, len, le_u32(bytes, 12)) {
            break;
        }
        out.push(Rec {
            offset: pos,
            len,
            kind: h.kind,
            key: bytes[pos + RECORD_HEADER_LEN..pos + RECORD_HEADER_LEN + key_len].to_vec(),
            value: bytes[pos + RECORD_HEADER_LEN + key_len..pos + len].to_vec(),
        });
        pos += len;
    }
    out
}

/// The records of a segment without its sync marks (the close marks a
/// clean close appends among them).
fn data_records(bytes: &[u8]) -> Vec<Rec> {
    let mut recs = parse_records(bytes);
    recs.retain(|r| r.kind != kind::SYNC_MARK);
    recs
}

/// The segment's bytes up to the end of its last record, as a crash right
/// after the last write would leave them: without the preallocated zeros
/// after it, and without the close marks a clean close appends (sync marks
/// at the end that vouch for every byte before them).
fn logical_bytes(path: &Path) -> Vec<u8> {
    let mut b = fs::read(path).expect("read segment");
    let recs = parse_records(&b);
    let marks = recs
        .iter()
        .rev()
        .take_while(|r| r.kind == kind::SYNC_MARK)
        .count();
    let run = &recs[recs.len() - marks..];
    let closed = run.first().is_some_and(|first| {
        run.iter()
            .any(|m| le_u64(&m.value, 0) >= first.offset as u64)
    });
    let kept = if closed {
        &recs[..recs.len() - marks]
    } else {
        &recs[..]
    };
    let end = kept.last().map_or(SEGMENT_HEADER_LEN, Rec::end);
    b.truncate(end);
    b
}

fn segment_ids(dir: &Path) -> Vec<u32> {
    let mut ids: Vec<u32> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let name = e.expect("entry").file_name().into_string().ok()?;
            name.strip_suffix(".seg")?.parse().ok()
        })
        .collect();
    ids.sort_unstable();
    ids
}

/// Cuts the preallocated zeros off the highest segment, as rolling to a new
/// segment does before the new one is created.
fn seal_active(dir: &Path) -> u32 {
    let last = *segment_ids(dir).last().expect("a segment");
    let path = seg_path(dir, last);
    let b = logical_bytes(&path);
    fs::write(&path, b).expect("write");
    last
}

fn fresh_copy(from: &Path) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    copy_dir(from, t.path());
    t
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).expect("read");
    b[at] ^= 0x5a;
    fs::write(path, b).expect("write");
}

/// Everything in the store, through a full scan.
fn dump(db: &Db) -> State {
    db.scan_prefix("")
        .map(|r| r.expect("scan"))
        .collect::<State>()
}

/// Asserts two states are equal, describing the difference briefly.
fn assert_same(got: &State, want: &State, ctx: &str) {
    if got == want {
        return;
    }
    let show = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
    let missing: Vec<_> = want
        .keys()
        .filter(|k| !got.contains_key(*k))
        .map(|k| show(k))
        .collect();
    let extra: Vec<_> = got
        .keys()
        .filter(|k| !want.contains_key(*k))
        .map(|k| show(k))
        .collect();
    let differ: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .map(|(k, v)| {
            format!(
                "{}: want {:?} got {:?}",
                show(k),
                show(v),
                got.get(k).map(|g| show(g))
            )
        })
        .collect();
    panic!(
        "{ctx}: {} keys, want {}; missing {:?}; unexpected {:?}; different {:?}",
        got.len(),
        want.len(),
        &missing[..missing.len().min(10)],
        &extra[..extra.len().min(10)],
        &differ[..differ.len().min(10)]
    );
}

/// Checks the store against `expected` through every read path; `universe`
/// lists keys that may or may not be present.
fn assert_state(db: &Db, expected: &State, universe: &[Vec<u8>], ctx: &str) {
    assert_same(&dump(db), expected, &format!("{ctx}: scan"));
    assert_eq!(db.len().expect("len"), expected.len(), "{ctx}: len");
    for k in universe.iter().chain(expected.keys()) {
        assert_eq!(
            db.get(k).expect("get"),
            expected.get(k).cloned(),
            "{ctx}: get {}",
            String::from_utf8_lossy(k)
        );
        assert_eq!(
            db.contains_key(k).expect("contains_key"),
            expected.contains_key(k),
            "{ctx}: contains_key {}",
            String::from_utf8_lossy(k)
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Del(Vec<u8>),
}

fn put(k: &str, v: &str) -> Op {
    Op::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
}

fn del(k: &str) -> Op {
    Op::Del(k.as_bytes().to_vec())
}

fn apply(state: &mut State, op: &Op) {
    match op {
        Op::Put(k, v) => {
            state.insert(k.clone(), v.clone());
        }
        Op::Del(k) => {
            state.remove(k);
        }
    }
}

fn run(db: &Db, op: &Op) {
    match op {
        Op::Put(k, v) => db.put(k, v).expect("put"),
        Op::Del(k) => assert!(db.delete(k).expect("delete"), "delete of a live key"),
    }
}

fn keys_of(ops: &[Op]) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = ops
        .iter()
        .map(|op| match op {
            Op::Put(k, _) | Op::Del(k) => k.clone(),
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Fills a store with `n` keys `key:NNNN` of about 80 bytes each.
fn fill(db: &Db, n: usize) -> State {
    let mut st = State::new();
    for i in 0..n {
        let k = format!("key:{i:04}").into_bytes();
        let v = format!("value {i} {}", "x".repeat(40 + i % 17)).into_bytes();
        db.put(&k, &v).expect("put");
        st.insert(k, v);
    }
    st
}

/// A multi-segment store with a hint for every sealed segment. Returns its
/// contents and the number of segments.
fn multi_segment_store(dir: &Path, n: usize) -> (State, usize) {
    let mut st = {
        let db = small_opts().open(dir).expect("open");
        let mut st = fill(&db, n);
        // Some overwrites and deletes that reach back into older segments.
        for i in (0..n).step_by(7) {
            let k = format!("key:{i:04}").into_bytes();
            db.put(&k, b"overwritten").expect("put");
            st.insert(k, b"overwritten".to_vec());
        }
        for i in (3..n).step_by(11) {
            let k = format!("key:{i:04}").into_bytes();
            assert!(db.delete(&k).expect("delete"));
            st.remove(&k);
        }
        db.close().expect("close");
        st
    };
    // A second open writes the hints the background thread may not have
    // written before the close.
    let db = small_opts().open(dir).expect("reopen");
    assert_same(&dump(&db), &st, "dump");
    db.put("last", "one").expect("put");
    st.insert(b"last".to_vec(), b"one".to_vec());
    db.close().expect("close");
    let segs = segment_ids(dir).len();
    assert!(segs >= 3, "want several segments, got {segs}");
    for id in 1..segs as u32 {
        assert!(hint_path(dir, id).exists(), "hint {id}");
    }
    (st, segs)
}

// ----- torn tails ---------------------------------------------------------------

/// How many of `recs` are intact in a copy of `bytes` cut at `cut` (and,
/// when `zero_filled`, padded with zeros: a record whose missing bytes were
/// all zeros is then whole again).
fn intact_records(recs: &[Rec], bytes: &[u8], cut: usize, zero_filled: bool) -> usize {
    recs.iter()
        .take_while(|r| {
            r.end() <= cut
                || (zero_filled && bytes[cut.max(r.offset)..r.end()].iter().all(|&b| b == 0))
        })
        .count()
}

/// Ops whose last three records overwrite, delete and add keys.
fn torn_tail_ops() -> Vec<Op> {
    let mut ops: Vec<Op> = (0..10)
        .map(|i| put(&format!("k{i:02}"), &"v".repeat(i * 3)))
        .collect();
    ops.push(put("k03", "the newest k03"));
    ops.push(del("k05"));
    ops.push(put("k10", "a brand new key with a longer value"));
    ops
}

/// Expected content after a crash that kept the first `complete` records.
fn state_after(ops: &[Op], complete: usize) -> State {
    let mut st = State::new();
    for op in &ops[..complete] {
        apply(&mut st, op);
    }
    st
}

/// Cuts the active segment at every byte offset inside the last three records
/// (as a shorter file, and as a torn write into preallocated zeros), then
/// checks open, the report, and that later writes land after the cut.
#[test]
fn torn_tail_at_every_offset_of_the_last_three_records() {
    let src = tempfile::tempdir().expect("tempdir");
    let ops = torn_tail_ops();
    {
        let db = opts().open(src.path()).expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let bytes = logical_bytes(&seg_path(src.path(), 1));
    let recs = parse_records(&bytes);
    assert_eq!(recs.len(), ops.len());
    let end = bytes.len();
    let mut universe = keys_of(&ops);
    universe.push(b"after".to_vec());

    for cut in recs[recs.len() - 3].offset..=end {
        for zero_filled in [false, true] {
            let ctx = format!("cut at {cut} (zero-filled after it: {zero_filled})");
            let complete = intact_records(&recs, &bytes, cut, zero_filled);
            let complete_end = recs[complete - 1].end();
            let mut expected = state_after(&ops, complete);
            let t = tempfile::tempdir().expect("tempdir");
            let seg = seg_path(t.path(), 1);
            let mut file = bytes[..cut].to_vec();
            if zero_filled {
                file.resize(end + 4096, 0);
            }
            fs::write(&seg, &file).expect("write");
            let partial = &file[complete_end.min(file.len())..];

            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
            assert_state(&db, &expected, &universe, &ctx);
            let report = db.recovery_report().clone();
            if partial.iter().any(|&b| b != 0) {
                assert_eq!(
                    report.truncated_tail,
                    Some((
                        seg.clone(),
                        complete_end as u64,
                        (file.len() - complete_end) as u64
                    )),
                    "{ctx}"
                );
            } else {
                // Nothing, or only zeros, after the last record: no torn write.
                assert_eq!(report.truncated_tail, None, "{ctx}");
            }
            assert!(report.skipped.is_empty(), "{ctx}");

            // Later writes must land right after the last complete record.
            db.put("k10", "written after recovery").expect("put");
            db.put("after", "x").expect("put");
            expected.insert(b"k10".to_vec(), b"written after recovery".to_vec());
            expected.insert(b"after".to_vec(), b"x".to_vec());
            assert_state(&db, &expected, &universe, &ctx);
            drop(db);

            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            assert_state(&db, &expected, &universe, &format!("{ctx}, reopened"));
            assert_eq!(db.recovery_report().truncated_tail, None, "{ctx}");
            drop(db);
            let after = data_records(&fs::read(&seg).expect("read"));
            assert_eq!(after.len(), complete + 2, "{ctx}: records in the file");
            assert_eq!(after[complete].offset, complete_end, "{ctx}");
        }
    }
}

#[test]
fn zero_filled_tail_opens_with_the_same_content() {
    let src = tempfile::tempdir().expect("tempdir");
    let ops = torn_tail_ops();
    {
        let db = opts().open(src.path()).expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let bytes = logical_bytes(&seg_path(src.path(), 1));
    let n = parse_records(&bytes).len();
    let expected = state_after(&ops, ops.len());
    let universe = keys_of(&ops);
    for zeros in [1usize, 31, 32, 33, 4096, 1 << 20] {
        let ctx = format!("{zeros} zeros");
        let t = tempfile::tempdir().expect("tempdir");
        let seg = seg_path(t.path(), 1);
        let mut file = bytes.clone();
        file.resize(bytes.len() + zeros, 0);
        fs::write(&seg, &file).expect("write");
        let db = opts().open(t.path()).expect("open");
        assert_state(&db, &expected, &universe, &ctx);
        // Zeros after the last record are space preallocated for appends
        // (docs/format.md): kept, and not reported as a torn tail.
        assert_eq!(db.recovery_report().truncated_tail, None, "{ctx}");
        db.put("new", "after the zeros").expect("put");
        drop(db);
        let db = opts().open(t.path()).expect("reopen");
        let mut exp = expected.clone();
        exp.insert(b"new".to_vec(), b"after the zeros".to_vec());
        assert_state(&db, &exp, &universe, &ctx);
        drop(db);
        let recs = data_records(&fs::read(&seg).expect("read"));
        assert_eq!(recs.len(), n + 1, "{ctx}");
        assert_eq!(
            recs[n].offset,
            bytes.len(),
            "{ctx}: appended after the zeros"
        );
    }
}

/// A torn tail is cut at every offset of a batch: the batch is visible whole
/// or not at all, and what came before it is intact.
#[test]
fn half_written_batch_is_all_or_nothing() {
    let src = tempfile::tempdir().expect("tempdir");
    let before = [put("a", "A1"), put("b", "B1"), put("c", "C1")];
    {
        let db = opts().open(src.path()).expect("open");
        for op in &before {
            run(&db, op);
        }
        db.write_batch(
            Batch::new()
                .put("a", "A2")
                .delete("b")
                .put("d", "D2")
                .put("e", ""),
        )
        .expect("batch");
    }
    let bytes = logical_bytes(&seg_path(src.path(), 1));
    let recs = parse_records(&bytes);
    assert_eq!(recs.len(), 3 + 6, "three puts, begin, four ops, commit");
    assert_eq!(recs[3].kind, 3, "batch begin");
    assert_eq!(recs[8].kind, 4, "batch commit");
    let batch_start = recs[3].offset;
    let batch_end = recs[8].end();
    let mut without = State::new();
    for op in &before {
        apply(&mut without, op);
    }
    let mut with = without.clone();
    with.insert(b"a".to_vec(), b"A2".to_vec());
    with.remove(&b"b"[..]);
    with.insert(b"d".to_vec(), b"D2".to_vec());
    with.insert(b"e".to_vec(), b"".to_vec());
    let universe: Vec<Vec<u8>> = ["a", "b", "c", "d", "e", "z"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();

    for cut in batch_start..=batch_end {
        for zero_filled in [false, true] {
            let ctx = format!("cut at {cut} (zero-filled: {zero_filled})");
            let t = tempfile::tempdir().expect("tempdir");
            let seg = seg_path(t.path(), 1);
            let mut file = bytes[..cut].to_vec();
            if zero_filled {
                file.resize(batch_end + 4096, 0);
            }
            fs::write(&seg, &file).expect("write");
            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: open failed: {e}"));
            // A zero fill can complete a record whose missing bytes were zeros.
            let complete = intact_records(&recs, &bytes, cut, zero_filled);
            let whole = complete == recs.len();
            let mut expected = if whole { with.clone() } else { without.clone() };
            assert_state(&db, &expected, &universe, &ctx);
            let report = db.recovery_report().clone();
            if whole {
                assert_eq!(report.discarded_batch_records, 0, "{ctx}");
                assert_eq!(report.truncated_tail, None, "{ctx}");
            } else if cut > batch_start {
                let begun = u64::from(complete > 3) * 4;
                assert_eq!(report.discarded_batch_records, begun, "{ctx}");
                let cut_len = (file.len() - batch_start) as u64;
                if file[batch_start..].iter().any(|&b| b != 0) {
                    assert_eq!(
                        report.truncated_tail,
                        Some((seg.clone(), batch_start as u64, cut_len)),
                        "{ctx}"
                    );
                }
            }

            db.put("z", "after").expect("put");
            expected.insert(b"z".to_vec(), b"after".to_vec());
            drop(db);
            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            assert_state(&db, &expected, &universe, &format!("{ctx}, reopened"));
            assert_eq!(db.recovery_report().discarded_batch_records, 0, "{ctx}");
        }
    }
}

/// A batch larger than the space left in the segment goes whole into the
/// next one (a batch never spans two segments).
#[test]
fn batch_never_spans_segments() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = small_opts().open(t.path()).expect("open");
    let mut expected = fill(&db, 30);
    let mut batch = Batch::new();
    for i in 0..60 {
        let k = format!("batch:{i:02}").into_bytes();
        let v = vec![b'0' + (i % 10) as u8; 100];
        batch.push_put(&k, &v, None);
        expected.insert(k, v);
    }
    db.write_batch(batch)
        .expect("batch of more than one segment");
    drop(db);
    for id in segment_ids(t.path()) {
        let recs = parse_records(&fs::read(seg_path(t.path(), id)).expect("read"));
        let begins = recs.iter().filter(|r| r.kind == kind::BATCH_BEGIN).count();
        let commits = recs.iter().filter(|r| r.kind == kind::BATCH_COMMIT).count();
        assert_eq!(begins, commits, "segment {id} holds a partial batch");
    }
    let db = small_opts().open(t.path()).expect("reopen");
    assert_same(&dump(&db), &expected, "dump");
}

// ----- damage a crash cannot explain --------------------------------------------

fn corruption(r: Result<Db, Error>) -> (PathBuf, u64, String) {
    match r {
        Err(Error::Corruption {
            path,
            offset,
            reason,
        }) => (path, offset, reason),
        Err(e) => panic!("expected Corruption, got {e:?}"),
        Ok(db) => panic!("expected Corruption, opened with {:?}", dump(&db)),
    }
}

#[test]
fn mid_log_corruption_is_refused_and_salvage_skips_it() {
    // Enough fsynced data that a sync mark (written once 4 KiB more of the
    // segment is durable) vouches for the victims: damage the log says was
    // durable is corruption, not an unsynced tail.
    let src = tempfile::tempdir().expect("tempdir");
    let ops: Vec<Op> = (0..20)
        .map(|i| {
            put(
                &format!("key{i}"),
                &format!("value number {i} {}", "x".repeat(500)),
            )
        })
        .collect();
    {
        let db = opts().open(src.path()).expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let recs = parse_records(&fs::read(seg_path(src.path(), 1)).expect("read"));
    let marks: Vec<&Rec> = recs.iter().filter(|r| r.kind == kind::SYNC_MARK).collect();
    assert!(!marks.is_empty(), "the log holds sync marks");
    let puts: Vec<&Rec> = recs.iter().filter(|r| r.kind == kind::PUT).collect();
    let full = state_after(&ops, ops.len());
    let universe = keys_of(&ops);
    for victim_idx in [0usize, 4, 8] {
        let victim = puts[victim_idx];
        let key_at = victim.offset + RECORD_HEADER_LEN;
        let value_at = key_at + victim.key.len();
        let places = [
            ("crc", victim.offset + 1),
            ("kind", victim.offset + 4),
            ("flags", victim.offset + 5),
            ("seq", victim.offset + 8),
            ("expiry", victim.offset + 20),
            ("key length", victim.offset + 24),
            ("value length", victim.offset + 28),
            ("key", key_at),
            ("value", value_at + 3),
            ("last value byte", victim.end() - 1),
        ];
        for (what, at) in places {
            let ctx = format!("record {victim_idx}, flip in the {what} at {at}");
            let t = fresh_copy(src.path());
            let seg = seg_path(t.path(), 1);
            flip_byte(&seg, at);
            let (path, offset, reason) = corruption(opts().open(t.path()));
            assert_eq!(path, seg, "{ctx}");
            assert_eq!(offset, victim.offset as u64, "{ctx}: {reason}");

            let db = opts()
                .recovery_mode(RecoveryMode::Salvage)
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: salvage failed: {e}"));
            let mut expected = full.clone();
            expected.remove(&victim.key);
            assert_state(&db, &expected, &universe, &ctx);
            let skipped = &db.recovery_report().skipped;
            assert_eq!(skipped.len(), 1, "{ctx}: {skipped:?}");
            assert_eq!(skipped[0].path, seg, "{ctx}");
            assert_eq!(skipped[0].offset, victim.offset as u64, "{ctx}");
            assert_eq!(skipped[0].len, victim.len as u64, "{ctx}");
            assert!(!skipped[0].reason.is_empty());
        }
    }
}

/// Regression (found by the corruption sweep): a sealed segment cut at a
/// record boundary scans clean. Its hint, authentic but describing a longer
/// segment, gives the loss away: strict open refuses, salvage reports it,
/// and the hint is not rewritten to match the damage.
#[test]
fn truncated_sealed_segment_is_refused_not_rebuilt() {
    let src = tempfile::tempdir().expect("tempdir");
    let ops: Vec<Op> = (0..40)
        .map(|i| {
            put(
                &format!("key{}", i % 7),
                &format!("value {i} {}", "z".repeat(200)),
            )
        })
        .collect();
    {
        let db = opts()
            .max_segment_bytes(4096)
            .auto_compact(false)
            .open(src.path())
            .expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let recs = parse_records(&fs::read(seg_path(src.path(), 1)).expect("read"));
    assert!(
        src.path().join("0000000001.hint").exists(),
        "segment 1 is sealed"
    );
    for cut in [
        SEGMENT_HEADER_LEN,
        recs[1].offset,
        recs[recs.len() - 1].offset,
    ] {
        let t = fresh_copy(src.path());
        let seg = seg_path(t.path(), 1);
        let f = fs::OpenOptions::new().write(true).open(&seg).expect("open");
        f.set_len(cut as u64).expect("truncate");
        drop(f);
        let (path, offset, reason) = corruption(opts().open(t.path()));
        assert_eq!((path, offset), (seg.clone(), cut as u64), "{reason}");
        let hint_before = fs::read(t.path().join("0000000001.hint")).expect("hint");
        let db = opts()
            .recovery_mode(RecoveryMode::Salvage)
            .open(t.path())
            .expect("salvage");
        let skipped = &db.recovery_report().skipped;
        assert!(
            skipped
                .iter()
                .any(|s| s.path == seg && s.offset == cut as u64),
            "{skipped:?}"
        );
        drop(db);
        let hint_after = fs::read(t.path().join("0000000001.hint")).expect("hint");
        assert_eq!(hint_before, hint_after, "the hint still tells the truth");
    }
}

/// A power loss can keep some pages of an unsynced write and lose others,
/// leaving a hole followed by valid records. Past the last sync mark that is
/// an unsynced tail: it is cut (the state is a prefix), not refused.
#[test]
fn hole_in_unsynced_tail_is_cut_not_refused() {
    let src = tempfile::tempdir().expect("tempdir");
    let ops: Vec<Op> = (0..6)
        .map(|i| put(&format!("key{i}"), &format!("value number {i}")))
        .collect();
    {
        let db = opts()
            .sync_policy(SyncPolicy::Never)
            .open(src.path())
            .expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    // As a power loss would leave it: without the close marks.
    let src_seg = seg_path(src.path(), 1);
    fs::write(&src_seg, logical_bytes(&src_seg)).expect("write");
    let recs = parse_records(&fs::read(&src_seg).expect("read"));
    assert!(
        recs.iter().all(|r| r.kind == kind::PUT),
        "no sync mark: nothing was synced"
    );
    let universe = keys_of(&ops);
    for victim_idx in [1usize, 3] {
        let victim = &recs[victim_idx];
        for zeroed in [false, true] {
            let ctx = format!("record {victim_idx}, zeroed {zeroed}");
            let t = fresh_copy(src.path());
            let seg = seg_path(t.path(), 1);
            if zeroed {
                let mut b = fs::read(&seg).expect("read");
                b[victim.offset..victim.end()].fill(0);
                fs::write(&seg, b).expect("write");
            } else {
                flip_byte(&seg, victim.offset + RECORD_HEADER_LEN);
            }
            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_state(&db, &state_after(&ops, victim_idx), &universe, &ctx);
            let cut = db.recovery_report().truncated_tail.clone();
            assert_eq!(
                cut.map(|c| (c.0, c.1)),
                Some((seg, victim.offset as u64)),
                "{ctx}"
            );
        }
    }
}

#[test]
fn damaged_active_segment_header_is_corruption() {
    let src = tempfile::tempdir().expect("tempdir");
    {
        let db = opts().open(src.path()).expect("open");
        fill(&db, 5);
    }
    for at in [0usize, 9, 16, 29] {
        let t = fresh_copy(src.path());
        let seg = seg_path(t.path(), 1);
        flip_byte(&seg, at);
        match opts().open(t.path()) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, seg, "flip at {at}"),
            other => panic!("flip at {at}: {:?}", other.map(|db| dump(&db).len())),
        }
    }
}

#[test]
fn damage_in_a_sealed_segment_is_corruption() {
    let src = tempfile::tempdir().expect("tempdir");
    let (full, _) = multi_segment_store(src.path(), 150);
    let seg2 = seg_path(src.path(), 2);
    let recs = parse_records(&fs::read(&seg2).expect("read"));
    assert!(recs.len() >= 3);
    let universe: Vec<Vec<u8>> = full.keys().cloned().collect();

    // A flipped byte in a middle record and in the last record, with the hint
    // deleted so that the segment is scanned.
    for victim in [&recs[recs.len() / 2], &recs[recs.len() - 1]] {
        let ctx = format!("damaged record at {}", victim.offset);
        let t = fresh_copy(src.path());
        let seg = seg_path(t.path(), 2);
        fs::remove_file(hint_path(t.path(), 2)).expect("rm hint");
        flip_byte(&seg, victim.end() - 1);
        let (path, offset, _) = corruption(small_opts().open(t.path()));
        assert_eq!((path, offset), (seg.clone(), victim.offset as u64), "{ctx}");

        let db = small_opts()
            .recovery_mode(RecoveryMode::Salvage)
            .open(t.path())
            .expect("salvage");
        let report = db.recovery_report().clone();
        assert_eq!(report.skipped.len(), 1, "{ctx}: {:?}", report.skipped);
        assert_eq!(report.skipped[0].path, seg);
        assert_eq!(report.skipped[0].offset, victim.offset as u64);
        assert_eq!(report.segments_from_hints, 0, "salvage ignores hints");
        // Every record but the damaged one is kept; the damaged key shows the
        // newest version that survives, or nothing.
        let got = dump(&db);
        for (k, v) in &full {
            if *k != victim.key {
                assert_eq!(got.get(k), Some(v), "{ctx}");
            }
        }
        assert!(got.len() <= full.len() + 1, "{ctx}");
        drop(db);
    }

    // A sealed segment that lost its last byte is not a torn tail.
    let t = fresh_copy(src.path());
    let seg = seg_path(t.path(), 2);
    fs::remove_file(hint_path(t.path(), 2)).expect("rm hint");
    let mut b = fs::read(&seg).expect("read");
    b.pop();
    fs::write(&seg, &b).expect("write");
    let (path, offset, _) = corruption(small_opts().open(t.path()));
    assert_eq!((path, offset), (seg, recs[recs.len() - 1].offset as u64));

    // With a good hint the segment is not read at open, but the damaged
    // record is never returned: reads check every record's CRC.
    let t = fresh_copy(src.path());
    let victim = recs
        .iter()
        .rfind(|r| r.kind == kind::PUT && full.get(&r.key) == Some(&r.value))
        .expect("a live record in segment 2");
    let seg = seg_path(t.path(), 2);
    flip_byte(&seg, victim.end() - 1);
    let db = small_opts().open(t.path()).expect("open with hints");
    match db.get(&victim.key) {
        Err(Error::Corruption { path, offset, .. }) => {
            assert_eq!((path, offset), (seg.clone(), victim.offset as u64));
        }
        other => panic!("read of a damaged record: {other:?}"),
    }
    for k in &universe {
        if *k != victim.key {
            assert_eq!(db.get(k).expect("get").as_ref(), full.get(k));
        }
    }
    let scanned: Vec<_> = db.scan_prefix("").collect();
    assert!(
        scanned.iter().any(|r| r.is_err()),
        "scan reports the damage"
    );
}

// ----- hints ----------------------------------------------------------------------

#[test]
fn bad_hints_fall_back_to_scanning_and_are_rewritten() {
    let src = tempfile::tempdir().expect("tempdir");
    let (full, segs) = multi_segment_store(src.path(), 150);
    let sealed = (segs - 1) as u32;
    {
        let db = small_opts().open(src.path()).expect("open");
        assert_same(&dump(&db), &full, "dump");
        let r = db.recovery_report();
        assert_eq!((r.segments_from_hints, r.segments_scanned), (sealed, 1));
    }
    let good: Vec<Vec<u8>> = (1..=sealed)
        .map(|id| fs::read(hint_path(src.path(), id)).expect("read hint"))
        .collect();

    type Damage = fn(&Path);
    let cases: [(&str, Damage, &[u32]); 8] = [
        (
            "flipped byte",
            |d| {
                let p = hint_path(d, 2);
                let n = fs::metadata(&p).expect("meta").len() as usize;
                flip_byte(&p, n / 2);
            },
            &[2],
        ),
        (
            "flipped segment length",
            |d| flip_byte(&hint_path(d, 2), 24),
            &[2],
        ),
        (
            "truncated to half",
            |d| {
                let p = hint_path(d, 2);
                let b = fs::read(&p).expect("read");
                fs::write(&p, &b[..b.len() / 2]).expect("write");
            },
            &[2],
        ),
        (
            "empty",
            |d| fs::write(hint_path(d, 2), b"").expect("write"),
            &[2],
        ),
        (
            "trailing garbage",
            |d| {
                let p = hint_path(d, 2);
                let mut b = fs::read(&p).expect("read");
                b.extend_from_slice(b"garbage");
                fs::write(&p, &b).expect("write");
            },
            &[2],
        ),
        (
            "deleted",
            |d| fs::remove_file(hint_path(d, 2)).expect("rm"),
            &[2],
        ),
        (
            "segment 1's hint copied over segment 2's",
            |d| {
                fs::copy(hint_path(d, 1), hint_path(d, 2)).expect("copy");
            },
            &[2],
        ),
        (
            "hints of 1 and 2 swapped",
            |d| {
                let a = fs::read(hint_path(d, 1)).expect("read");
                let b = fs::read(hint_path(d, 2)).expect("read");
                fs::write(hint_path(d, 1), b).expect("write");
                fs::write(hint_path(d, 2), a).expect("write");
            },
            &[1, 2],
        ),
    ];
    for (what, damage, bad) in cases {
        let t = fresh_copy(src.path());
        damage(t.path());
        let db = small_opts()
            .open(t.path())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(&dump(&db), &full, what);
        let r = db.recovery_report();
        assert_eq!(
            (r.segments_from_hints, r.segments_scanned),
            (sealed - bad.len() as u32, 1 + bad.len() as u32),
            "{what}"
        );
        for &id in bad {
            assert_eq!(
                fs::read(hint_path(t.path(), id)).expect("rewritten hint"),
                good[id as usize - 1],
                "{what}: hint {id} rewritten"
            );
        }
        drop(db);
        let db = small_opts().open(t.path()).expect("reopen");
        assert_same(&dump(&db), &full, &format!("{what}, reopened"));
        let r = db.recovery_report();
        assert_eq!((r.segments_from_hints, r.segments_scanned), (sealed, 1));
    }

    // Salvage ignores hints altogether and finds the same content.
    let t = fresh_copy(src.path());
    let db = small_opts()
        .recovery_mode(RecoveryMode::Salvage)
        .open(t.path())
        .expect("salvage");
    assert_same(&dump(&db), &full, "dump");
    let r = db.recovery_report();
    assert_eq!(
        (r.segments_from_hints, r.segments_scanned),
        (0, segs as u32)
    );
    assert!(r.skipped.is_empty());
}

// ----- copies of valid records ----------------------------------------------------

#[test]
fn duplicated_records_never_produce_wrong_data() {
    let src = tempfile::tempdir().expect("tempdir");
    let ops = [
        put("a", "a1"),
        put("b", "b1"),
        put("a", "a2"),
        put("c", "c1"),
        del("b"),
        put("d", "d1"),
    ];
    {
        let db = opts().open(src.path()).expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let bytes = logical_bytes(&seg_path(src.path(), 1));
    let recs = parse_records(&bytes);
    let full = state_after(&ops, ops.len());
    let universe = keys_of(&ops);
    let rec_bytes = |i: usize| bytes[recs[i].offset..recs[i].end()].to_vec();

    // Appended at the tail: the last record, an overwritten version of "a",
    // the record of "b" that was deleted; each also followed by zeros.
    for (what, i) in [("last record", 5), ("old a", 0), ("deleted b", 1)] {
        for zeros in [0usize, 4096] {
            let ctx = format!("{what} appended, then {zeros} zeros");
            let t = tempfile::tempdir().expect("tempdir");
            let mut file = bytes.clone();
            file.extend_from_slice(&rec_bytes(i));
            file.resize(file.len() + zeros, 0);
            fs::write(seg_path(t.path(), 1), &file).expect("write");
            let db = opts()
                .open(t.path())
                .unwrap_or_else(|e| panic!("{ctx}: {e}"));
            assert_state(&db, &full, &universe, &ctx);
            db.put("e", "e1").expect("put");
            drop(db);
            let db = opts().open(t.path()).expect("reopen");
            let mut exp = full.clone();
            exp.insert(b"e".to_vec(), b"e1".to_vec());
            assert_state(&db, &exp, &universe, &format!("{ctx}, reopened"));
        }
    }

    // Inserted in the middle, which shifts every later record: the store is
    // refused, or opens with everything, or (when records are bound to their
    // offsets and so everything after the insertion is invalid) with the
    // history up to the insertion and the rest reported as a cut tail. Never
    // a state that the history did not pass through.
    let t = tempfile::tempdir().expect("tempdir");
    let at = recs[3].offset;
    let mut file = bytes[..at].to_vec();
    file.extend_from_slice(&rec_bytes(0));
    file.extend_from_slice(&bytes[at..]);
    fs::write(seg_path(t.path(), 1), &file).expect("write");
    let prefix = state_after(&ops, 3);
    let check = |db: &Db, ctx: &str| {
        let got = dump(db);
        if got != full {
            assert_state(db, &prefix, &universe, ctx);
            let cut = db.recovery_report().truncated_tail.clone();
            assert_eq!(
                cut.map(|c| c.1),
                Some(at as u64),
                "{ctx}: the cut is reported"
            );
        }
    };
    match opts().open(t.path()) {
        Ok(db) => check(&db, "old a inserted mid-log"),
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, at as u64),
        Err(e) => panic!("old a inserted mid-log: {e}"),
    }
    let t = tempfile::tempdir().expect("tempdir");
    fs::write(seg_path(t.path(), 1), &file).expect("write");
    let db = opts()
        .recovery_mode(RecoveryMode::Salvage)
        .open(t.path())
        .expect("salvage");
    check(&db, "old a inserted mid-log, salvaged");
}

/// A record from a sealed segment copied into the active one (non-empty, or
/// holding only its header) cannot bring back an overwritten or deleted value.
#[test]
fn record_copied_from_a_sealed_segment_into_the_active_one() {
    let src = tempfile::tempdir().expect("tempdir");
    let (full, segs) = multi_segment_store(src.path(), 150);
    let seg1 = fs::read(seg_path(src.path(), 1)).expect("read");
    let recs1 = parse_records(&seg1);
    // key:0000 was overwritten later; key:0003 deleted later.
    let copies: Vec<Vec<u8>> = recs1
        .iter()
        .filter(|r| r.key == b"key:0000" || r.key == b"key:0003")
        .map(|r| seg1[r.offset..r.end()].to_vec())
        .collect();
    assert_eq!(copies.len(), 2);
    let universe: Vec<Vec<u8>> = full.keys().cloned().collect();
    let last = segs as u32;
    for new_segment in [false, true] {
        let ctx = format!("copied into a new empty segment: {new_segment}");
        let t = fresh_copy(src.path());
        let (id, mut file) = if new_segment {
            seal_active(t.path());
            (last + 1, encode_segment_header(last + 1, 1))
        } else {
            (last, logical_bytes(&seg_path(t.path(), last)))
        };
        for c in &copies {
            file.extend_from_slice(c);
        }
        fs::write(seg_path(t.path(), id), &file).expect("write");
        let db = small_opts()
            .open(t.path())
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_state(&db, &full, &universe, &ctx);
        db.put("key:0003", "new").expect("put");
        db.put("key:0000", "newer").expect("put");
        let mut exp = full.clone();
        exp.insert(b"key:0003".to_vec(), b"new".to_vec());
        exp.insert(b"key:0000".to_vec(), b"newer".to_vec());
        drop(db);
        let db = small_opts().open(t.path()).expect("reopen");
        assert_state(&db, &exp, &universe, &format!("{ctx}, reopened"));
    }
}

// ----- other files ------------------------------------------------------------------

#[test]
fn stray_temp_files_are_removed_on_open() {
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = opts().open(t.path()).expect("open");
        db.put("k", "v").expect("put");
    }
    let strays = [".hint-abc123.tmp", ".compact-0000000009.tmp"];
    for s in strays {
        fs::write(t.path().join(s), b"half-written").expect("write");
    }
    // Files cairn did not name stay, whatever their suffix.
    let theirs = ["notes.txt", "0000000001.seg.tmp", "whatever.tmp"];
    for s in theirs {
        fs::write(t.path().join(s), b"not ours").expect("write");
    }

    // A read-only open changes nothing on disk.
    let ro = opts().read_only(true).open(t.path()).expect("read-only");
    assert_eq!(ro.recovery_report().removed_temp_files, 0);
    drop(ro);
    for s in strays {
        assert!(t.path().join(s).exists(), "{s}");
    }

    let db = opts().open(t.path()).expect("open");
    assert_eq!(db.recovery_report().removed_temp_files, strays.len() as u32);
    for s in strays {
        assert!(!t.path().join(s).exists(), "{s} removed");
    }
    for s in theirs {
        assert!(t.path().join(s).exists(), "{s} kept");
    }
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn read_only_open_ignores_a_torn_tail_without_cutting_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let ops = torn_tail_ops();
    {
        let db = opts().open(t.path()).expect("open");
        for op in &ops {
            run(&db, op);
        }
    }
    let seg = seg_path(t.path(), 1);
    let bytes = logical_bytes(&seg);
    let torn = &bytes[..bytes.len() - 5];
    fs::write(&seg, torn).expect("write");
    let db = opts().read_only(true).open(t.path()).expect("read-only");
    assert_state(
        &db,
        &state_after(&ops, ops.len() - 1),
        &keys_of(&ops),
        "read-only",
    );
    drop(db);
    assert_eq!(fs::read(&seg).expect("read"), torn, "file unchanged");
}

/// A crash while a new segment was being created leaves an empty file, a
/// torn header, or a header followed by zeros: nothing in it was ever
/// acknowledged, so open rewrites the header and carries on.
#[test]
fn crash_while_creating_a_segment() {
    let src = tempfile::tempdir().expect("tempdir");
    let (full, segs) = multi_segment_store(src.path(), 100);
    let next = segs as u32 + 1;
    let header = encode_segment_header(next, 1);
    assert_eq!(crc32c(&header[..28]), le_u32(&header, 28));
    let variants: [(&str, Vec<u8>); 4] = [
        ("empty file", Vec::new()),
        ("torn header", header[..13].to_vec()),
        ("zeroed header", vec![0u8; 4096]),
        ("header and zeros", {
            let mut h = header.clone();
            h.resize(4096, 0);
            h
        }),
    ];
    for (what, file) in variants {
        let t = fresh_copy(src.path());
        seal_active(t.path());
        let seg = seg_path(t.path(), next);
        fs::write(&seg, &file).expect("write");
        let db = small_opts()
            .open(t.path())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_same(&dump(&db), &full, what);
        db.put("fresh", "value").expect("put");
        drop(db);
        let db = small_opts().open(t.path()).expect("reopen");
        let mut exp = full.clone();
        exp.insert(b"fresh".to_vec(), b"value".to_vec());
        assert_same(&dump(&db), &exp, what);
        drop(db);
        let b = fs::read(&seg).expect("read");
        assert_eq!(&b[..8], b"CAIRNSEG", "{what}");
        assert_eq!(le_u64(&b, 16), u64::from(next), "{what}: segment id");
        assert_eq!(crc32c(&b[..28]), le_u32(&b, 28), "{what}: header checksum");
        // Rewritten at the current version (the header was version 1, or
        // torn): a segment with no record is never sealed for its version.
        assert_eq!(b[8..10], FORMAT_VERSION.to_le_bytes(), "{what}: version");
        assert_eq!(data_records(&b).len(), 1, "{what}");
    }
}

// ----- semantics that must survive a reopen ----------------------------------------

#[test]
fn ttl_expired_while_closed_is_invisible_after_reopen() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_700_000_000_000);
    let o = || small_opts().clock(clock.clone());
    {
        let db = o().open(t.path()).expect("open");
        db.put("t:old", "persistent old version").expect("put");
        db.put("t:keep", "forever").expect("put");
        db.put_with_ttl("t:short", "10s", Duration::from_secs(10))
            .expect("put");
        // Spread the keys over several segments, so some come from hints.
        fill(&db, 60);
        db.put_with_ttl("t:old", "5s", Duration::from_secs(5))
            .expect("put");
        db.put_with_ttl("t:long", "100s", Duration::from_secs(100))
            .expect("put");
        db.write_batch(Batch::new().put_with_ttl("t:batch", "8s", Duration::from_secs(8)))
            .expect("batch");
        assert_eq!(db.scan_prefix("t:").count(), 5);
    }
    clock.advance(Duration::from_secs(20));
    for round in 0..2 {
        let db = o().open(t.path()).expect("reopen");
        let ctx = format!("reopen {round}");
        assert!(segment_ids(t.path()).len() > 1);
        for k in ["t:short", "t:old", "t:batch"] {
            assert_eq!(db.get(k).expect("get"), None, "{ctx}: {k}");
            assert!(!db.contains_key(k).expect("contains"), "{ctx}: {k}");
            assert_eq!(db.ttl(k).expect("ttl"), Ttl::Missing, "{ctx}: {k}");
        }
        assert_eq!(db.len().expect("len"), 60 + 2, "{ctx}");
        let live: Vec<_> = db.scan_prefix("t:").map(|r| r.expect("scan").0).collect();
        assert_eq!(live, vec![b"t:keep".to_vec(), b"t:long".to_vec()], "{ctx}");
        assert_eq!(
            db.ttl("t:long").expect("ttl"),
            Ttl::Expires(Duration::from_secs(80)),
            "{ctx}"
        );
        assert_eq!(db.stats().live_keys, 62, "{ctx}");
    }
}

#[test]
fn empty_value_and_deleted_key_stay_distinct_across_reopen() {
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = small_opts().open(t.path()).expect("open");
        db.put("empty", "").expect("put");
        db.put("deleted", "x").expect("put");
        assert!(db.delete("deleted").expect("delete"));
        db.put("emptied", "not yet").expect("put");
        db.put("emptied", "").expect("put");
        db.put("deleted-empty", "").expect("put");
        assert!(db.delete("deleted-empty").expect("delete"));
        db.write_batch(Batch::new().put("batch-empty", "").delete("empty2"))
            .expect("batch");
        db.put("", "").expect("empty key, empty value");
        // Push everything into sealed segments with hints, then some more
        // into the active segment.
        fill(&db, 60);
        db.put("active-empty", "").expect("put");
        db.put("active-deleted", "y").expect("put");
        assert!(db.delete("active-deleted").expect("delete"));
    }
    for round in 0..3 {
        let db = small_opts().open(t.path()).expect("reopen");
        let ctx = format!("reopen {round}");
        for k in ["empty", "emptied", "batch-empty", "", "active-empty"] {
            assert_eq!(db.get(k).expect("get"), Some(Vec::new()), "{ctx}: {k:?}");
            assert!(db.contains_key(k).expect("contains"), "{ctx}: {k:?}");
        }
        for k in ["deleted", "deleted-empty", "empty2", "active-deleted"] {
            assert_eq!(db.get(k).expect("get"), None, "{ctx}: {k:?}");
            assert!(!db.contains_key(k).expect("contains"), "{ctx}: {k:?}");
        }
        assert_eq!(db.len().expect("len"), 60 + 5, "{ctx}");
        if round == 1 {
            assert!(db.recovery_report().segments_from_hints > 0);
        }
    }
}

#[test]
fn oversized_keys_and_values_write_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = opts().open(t.path()).expect("open");
    db.put("before", "1").expect("put");
    let written = db.stats().bytes_written;
    let big_key = vec![b'k'; MAX_KEY_BYTES as usize + 1];
    let max = MAX_KEY_BYTES as usize;
    let too_large = |r: Result<(), Error>, what: &str| match r {
        Err(Error::KeyTooLarge { len, max: m }) => assert_eq!((len, m), (max + 1, max), "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    too_large(db.put(&big_key, "v"), "put");
    too_large(
        db.put_with_ttl(&big_key, "v", Duration::from_secs(1)),
        "put_with_ttl",
    );
    too_large(
        db.put_if_absent(&big_key, "v", None).map(drop),
        "put_if_absent",
    );
    too_large(db.incr(&big_key, 1).map(drop), "incr");
    too_large(db.delete(&big_key).map(drop), "delete");
    too_large(
        db.compare_and_swap(&big_key, None, Some(b"v")).map(drop),
        "compare_and_swap",
    );
    too_large(
        db.write_batch(Batch::new().put("fine", "1").put(&big_key, "v")),
        "batch",
    );
    too_large(
        db.write_batch(Batch::new().put("fine", "1").delete(&big_key)),
        "batch delete",
    );
    // A zero-filled allocation the size of the limit: calloc'd, never touched.
    let big_value = vec![0u8; MAX_VALUE_BYTES as usize + 1];
    match db.put("v", &big_value) {
        Err(Error::ValueTooLarge { len, max }) => {
            assert_eq!((len, max), (big_value.len(), MAX_VALUE_BYTES as usize));
        }
        other => panic!("{other:?}"),
    }
    drop(big_value);
    assert_eq!(db.stats().bytes_written, written, "nothing was written");
    assert_eq!(db.len().expect("len"), 1);
    assert_eq!(db.get("fine").expect("get"), None);

    // The largest key is fine.
    let max_key = vec![b'm'; MAX_KEY_BYTES as usize];
    db.put(&max_key, "at the limit").expect("put");
    drop(db);
    let db = opts().open(t.path()).expect("reopen");
    assert_eq!(db.len().expect("len"), 2);
    assert_eq!(db.get("fine").expect("get"), None);
    assert_eq!(db.get(&big_key).expect("get"), None);
    assert_eq!(
        db.get(&max_key).expect("get"),
        Some(b"at the limit".to_vec())
    );
    let on_disk: usize = segment_ids(t.path())
        .into_iter()
        .map(|id| data_records(&fs::read(seg_path(t.path(), id)).expect("read")).len())
        .sum();
    assert_eq!(on_disk, 2, "only the two good puts are on disk");
}

// ----- format versions ------------------------------------------------------------

#[test]
fn crc32c_helper_is_castagnoli() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

fn set_version(path: &Path, version: u16) {
    let mut b = fs::read(path).expect("read");
    let header = SegmentHeader {
        version,
        ..SegmentHeader::read(&b).expect("a segment header")
    };
    b[..SEGMENT_HEADER_LEN].copy_from_slice(&header.encode());
    fs::write(path, b).expect("write");
}

#[test]
fn unknown_segment_version_is_refused() {
    let src = tempfile::tempdir().expect("tempdir");
    let (_, segs) = multi_segment_store(src.path(), 100);
    let last = segs as u32;
    // The active segment, and a sealed one with and without its hint: a
    // good hint must not let an unknown version through.
    for (id, drop_hint) in [(last, false), (1, true), (1, false)] {
        for mode in [RecoveryMode::Strict, RecoveryMode::Salvage] {
            let t = fresh_copy(src.path());
            let seg = seg_path(t.path(), id);
            if drop_hint {
                fs::remove_file(hint_path(t.path(), id)).expect("rm hint");
            }
            // The version after the newest this build reads.
            let unknown = FORMAT_VERSION + 1;
            set_version(&seg, unknown);
            match small_opts().recovery_mode(mode).open(t.path()) {
                Err(Error::UnsupportedVersion { path, version }) => {
                    assert_eq!(
                        (path, version),
                        (seg.clone(), unknown),
                        "segment {id} {mode:?}"
                    );
                }
                other => panic!(
                    "segment {id} {mode:?}: {:?}",
                    other.map(|db| dump(&db).len())
                ),
            }
        }
    }
    // An active segment holding only a header of an unknown version is not
    // mistaken for a torn header.
    let t = fresh_copy(src.path());
    seal_active(t.path());
    let seg = seg_path(t.path(), last + 1);
    fs::write(&seg, encode_segment_header(last + 1, 7)).expect("write");
    match small_opts().open(t.path()) {
        Err(Error::UnsupportedVersion { path, version }) => assert_eq!((path, version), (seg, 7)),
        other => panic!("{:?}", other.map(|db| dump(&db).len())),
    }
}

// ----- regressions -----------------------------------------------------------------------

/// Writes `a` = "1", then a value whose bytes hold a complete, valid encoded
/// record (`a` = "evil" with sequence number 2^40), and tears that write the
/// way a crash does: the file ends 10 bytes short of the value's end.
fn torn_write_of_a_value_embedding_a_record(dir: &Path) {
    // Both as records were written before checksums were bound to their
    // segment (checksum over the record alone) and as another segment would
    // hold it (checksum bound to that segment's salt and its offset there).
    let evil = Record::put(1 << 40, b"a", b"evil");
    let plain = evil.encode_unbound();
    let foreign = evil.encode(0xdead_beef, 32);
    let mut value = vec![b'.'; 64];
    value.extend_from_slice(&plain);
    value.extend_from_slice(&[b'.'; 64]);
    value.extend_from_slice(&foreign);
    value.extend_from_slice(&[b'.'; 64]);
    {
        let db = opts().open(dir).expect("open");
        db.put("a", "1").expect("put");
        db.put("blob", &value).expect("put");
    }
    let seg = seg_path(dir, 1);
    let bytes = logical_bytes(&seg);
    fs::write(&seg, &bytes[..bytes.len() - 10]).expect("write");
}

/// Regression (fixed in 6ed62ed by binding checksums to the segment's salt
/// and the record's offset): a value whose bytes contain an encoded record
/// (a cairn segment stored as a value, a dump of records, a crafted value)
/// turned a crash-torn write of that value into "damage followed by a valid
/// record", and strict open refused the store with `Error::Corruption`
/// instead of cutting the torn tail.
#[test]
fn torn_value_embedding_a_record_is_cut_as_a_torn_tail() {
    let t = tempfile::tempdir().expect("tempdir");
    torn_write_of_a_value_embedding_a_record(t.path());
    match opts().open(t.path()) {
        Ok(db) => {
            let expected: State = [(b"a".to_vec(), b"1".to_vec())].into_iter().collect();
            assert_same(&dump(&db), &expected, "dump");
            assert!(db.recovery_report().truncated_tail.is_some());
        }
        Err(e) => panic!("a crash-torn tail must be cut, not refused: {e}"),
    }
}

/// Regression (same fix): salvage applied the record embedded in the torn
/// value as a real write, so `a` read "evil", a value never written to it.
#[test]
fn salvage_never_applies_a_record_embedded_in_a_value() {
    let t = tempfile::tempdir().expect("tempdir");
    torn_write_of_a_value_embedding_a_record(t.path());
    let db = opts()
        .recovery_mode(RecoveryMode::Salvage)
        .open(t.path())
        .expect("salvage");
    assert_eq!(
        db.get("a").expect("get"),
        Some(b"1".to_vec()),
        "salvage applied a record that only exists inside another record's value"
    );
}

/// Every file of `dir` with its bytes, sorted by name.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).expect("read"),
            )
        })
        .collect();
    v.sort();
    v
}

/// `cairn::verify` classifies: a torn tail, a broken hint and a stray
/// temporary file are listed but are not corruption; a flipped byte in a
/// sealed segment is corruption at its record's offset; nothing is changed.
#[test]
fn verify_lists_problems_and_changes_nothing() {
    use cairn::ProblemKind;
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = opts()
            .max_segment_bytes(4096)
            .auto_compact(false)
            .open(t.path())
            .expect("open");
        for i in 0..60 {
            db.put(format!("key{i:03}"), vec![b'x'; 100]).expect("put");
        }
    }
    let clean = cairn::verify(t.path(), false).expect("verify");
    assert!(clean.problems.is_empty(), "{:?}", clean.problems);
    assert_eq!(clean.records, 60);
    // A torn tail on the active segment, a stray file, a broken hint.
    let segs: Vec<u32> = (1..)
        .take_while(|i| seg_path(t.path(), *i).exists())
        .collect();
    let active = seg_path(t.path(), *segs.last().expect("segments"));
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .expect("open");
    std::io::Write::write_all(&mut f, &[7u8; 20]).expect("append");
    drop(f);
    fs::write(t.path().join(".hint-x.tmp"), b"junk").expect("write");
    flip_byte(&t.path().join("0000000001.hint"), 40);
    let before = files_of(t.path());
    let r = cairn::verify(t.path(), false).expect("verify");
    let kinds: Vec<ProblemKind> = r.problems.iter().map(|p| p.kind).collect();
    assert!(kinds.contains(&ProblemKind::TornTail), "{:?}", r.problems);
    assert!(kinds.contains(&ProblemKind::StrayFile), "{:?}", r.problems);
    assert!(
        kinds.contains(&ProblemKind::HintUnusable),
        "{:?}",
        r.problems
    );
    assert!(!r.has_corruption(), "{:?}", r.problems);
    // Corruption in a sealed segment.
    flip_byte(&seg_path(t.path(), 1), 32 + 138 + 50);
    let r = cairn::verify(t.path(), false).expect("verify");
    let c: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.kind.is_corruption())
        .collect();
    assert_eq!(c.len(), 1, "{:?}", r.problems);
    assert_eq!(
        (c[0].path.clone(), c[0].offset),
        (seg_path(t.path(), 1), Some(32 + 138))
    );
    assert_eq!(r.records, 59, "every other record is still checked");
    let after = files_of(t.path());
    assert_eq!(
        before.len(),
        after.len(),
        "verify creates and deletes nothing"
    );
}
