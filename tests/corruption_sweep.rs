//! Exhaustive corruption sweeps over a small reference store.
//!
//! The reference store is written through the public API on the simulated
//! file system (`cairn::sim::SimFs`) with `SyncPolicy::Always`: about 50
//! operations (puts, overwrites, deletes, batches, increments, TTL puts, some
//! of them expired by the end, and two large values) in three sealed
//! segments with their hint files and an active segment, over one close and
//! reopen. The active segment holds a sync mark (its first 4 KiB were
//! durable), records after it, the two sync marks of the clean close
//! (which vouch for every record before them), and the zeros the writer
//! preallocated. Large
//! values seal segments early, so the files stay small (about 12 KB in all)
//! and every bit can be flipped. The test knows which operation wrote every
//! record, and the state after every prefix of the operations.
//!
//! Three sweeps, each case on a fresh in-memory copy of the pristine files:
//!
//! * **bit flips**: every bit of every file, one at a time;
//! * **zeroed blocks**: every 4 KiB block of every file, one at a time;
//! * **truncations**: every file cut at every byte offset.
//!
//! A fourth test, [`checkpoint_sweep`], gives the reference store an index
//! checkpoint (a writable open and clean close that change no other file)
//! and flips every bit of it and cuts it at every length: every such open
//! must ignore the checkpoint and read exactly the final state from the
//! hints and segments.
//!
//! Each case is opened in strict mode and every key is read. A case is
//!
//! * **detected** when open refuses it, when a read of the damaged record
//!   fails with `Error::Corruption` (segments loaded from a hint are checked
//!   record by record only when read), or when open cuts the active segment
//!   back and says so in `RecoveryReport::truncated_tail`;
//! * **harmless** when every key reads exactly its newest value: a damaged
//!   hint rebuilt from its segment, a flip in an overwritten record or in
//!   the preallocated zeros (cut, and reported);
//! * **exact prefix** (truncations of the active segment at a record
//!   boundary only): the store equals the state after exactly the
//!   operations whose records are left, with nothing to report;
//! * **wrong** otherwise, which must never happen: a value that is not the
//!   newest, a state that is not the state after some prefix of the
//!   operations, a loss that nothing reports, or an outcome the rules below
//!   forbid.
//!
//! The rules of `docs/format.md` are checked where they pin the outcome
//! down. In the active segment, damage to a record that starts before the
//! durable offset named by an intact sync mark must be refused as
//! corruption; damage after it must be cut back to exactly the operations
//! before the damaged record, and reported; a truncation recovers exactly
//! the operations whose records fit. Damage in a sealed segment is refused,
//! or fails the read of the damaged record, and never changes or loses
//! anything else. A damaged hint is ignored and rewritten from its segment
//! (byte for byte as before, or else a second open must load it). Every
//! case strict mode refuses is opened again with `RecoveryMode::Salvage`,
//! which must open (unless a segment header is damaged), report what it
//! skipped, and return exactly the operations whose records it kept.
//!
//! The test prints the counts per sweep and per kind of file, for example
//! "96720 bit flips: 61632 detected, 34584 harmless, 0 wrong", and fails if
//! any case is wrong. Segment salts are random, so a few counts move by a
//! handful between runs (a truncation that leaves only zero bytes of a
//! record looks like preallocated space). `CAIRN_SWEEP_SHOW=n` prints the
//! first n failures (default 10), `CAIRN_SWEEP_ONLY=flips|zeroed|trunc`
//! runs one sweep, and
//! `CAIRN_SWEEP_CASE="0000000004.seg flip <offset> <bit>"` (or `zero
//! <block>`, `truncate <len>`) replays one case (`CAIRN_SWEEP_OPS=1` also
//! lists the operations and where their records are).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::{Batch, Db, Error, ManualClock, Options, RecoveryMode, SyncPolicy};
use common::format::{self, hint_name, kind, seg_name};
use common::sim::{Rng, SimFs};
use common::simfs::{self, fresh_fs, snapshot, Files, DIR, START_MS};

/// The segment header's length: where the first record starts.
const HEADER: u64 = format::SEGMENT_HEADER_LEN as u64;

/// Key → (value, absolute expiry in unix ms, 0 = none).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;
/// What every key of the universe reads as.
type View = BTreeMap<Vec<u8>, Vec<u8>>;
/// One write of an operation: (key, Some((value, expiry)) for a put, None
/// for a delete).
type Write = (Vec<u8>, Option<(Vec<u8>, u64)>);

/// Small keys `key00`..`key09`, two counters, and two keys with large values.
const KEYS: u64 = 10;

// ----- the reference store -----------------------------------------------------

/// One acknowledged operation: the absolute writes it made, and where its
/// records are.
#[derive(Clone, Debug)]
struct OpRec {
    what: String,
    writes: Vec<Write>,
    /// The segment its records went to, and their byte range there (a sync
    /// mark written in the same append included).
    seg: u32,
    start: u64,
    end: u64,
}

/// A record found in a segment file.
#[derive(Clone, Copy, Debug)]
struct Rec {
    off: u64,
    len: u64,
    kind: u8,
    /// For a sync mark: the durable length it names.
    durable: u64,
}

struct Reference {
    files: Files,
    ops: Vec<OpRec>,
    /// `views[i]`: what every key reads as after the first `i` operations
    /// (at `now`).
    views: Vec<View>,
    /// The clock every case opens with (the clock at the end of the workload).
    now: u64,
    universe: Vec<Vec<u8>>,
    active: u32,
    /// The records of every segment, by segment id.
    records: BTreeMap<u32, Vec<Rec>>,
    /// The end of the last record of every segment.
    logical_end: BTreeMap<u32, u64>,
}

fn parse_name(name: &str) -> Option<(u32, &str)> {
    let (id, ext) = name.split_once('.')?;
    (id.len() == 10).then_some(())?;
    Some((id.parse().ok()?, ext))
}

/// Every record of a pristine segment file, up to its zero tail.
fn parse_segment(bytes: &[u8]) -> (Vec<Rec>, u64) {
    let salt = format::le_u32(bytes, 12);
    let mut out = Vec::new();
    let mut pos = HEADER as usize;
    while pos < bytes.len() && bytes[pos..].iter().any(|&b| b != 0) {
        let h = format::decode_record(&bytes[pos..], salt, pos as u64)
            .unwrap_or_else(|| panic!("reference segment does not parse at {pos}"));
        let durable = if h.kind == kind::SYNC_MARK {
            format::le_u64(bytes, pos + format::RECORD_HEADER_LEN)
        } else {
            0
        };
        let len = h.record_len();
        out.push(Rec {
            off: pos as u64,
            len,
            kind: h.kind,
            durable,
        });
        pos += len as usize;
    }
    (out, pos as u64)
}

/// The options of the reference store and of every case. No index
/// checkpoint: the sweeps over segments and hints check what open finds in
/// them (an open that used a checkpoint would read neither);
/// [`checkpoint_sweep`] covers the checkpoint file.
fn options(sim: &SimFs, clock: &ManualClock, max_segment: u64) -> Options {
    simfs::options(sim, clock, SyncPolicy::Always)
        .max_segment_bytes(max_segment)
        .index_checkpoint_at_close(false)
}

fn key_name(i: u64) -> Vec<u8> {
    format!("key{i:02}").into_bytes()
}

/// A value that names the operation that wrote it.
fn value(op: usize, part: usize, len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut v = format!("op{op}.{part}:").into_bytes();
    while v.len() < len {
        v.push(b'a' + rng.below(26) as u8);
    }
    v
}

fn visible(m: &Model, now: u64) -> View {
    m.iter()
        .filter(|(_, (_, exp))| *exp == 0 || *exp > now)
        .map(|(k, (v, _))| (k.clone(), v.clone()))
        .collect()
}

struct Builder {
    rng: Rng,
    clock: ManualClock,
    model: Model,
    ops: Vec<OpRec>,
    /// (segment, end) of the last operation.
    last: (u32, u64),
}

impl Builder {
    fn now(&self) -> u64 {
        cairn::Clock::now_unix_ms(&self.clock)
    }

    /// Runs one random operation (values of at most about `max_value`
    /// bytes) and records what it wrote and where.
    fn step(&mut self, db: &Db, max_value: u64) {
        let i = self.ops.len();
        let r = &mut self.rng;
        let k = key_name(r.below(KEYS));
        let len = |r: &mut Rng| (10 + r.below(max_value.max(11) - 10)) as usize;
        let mut writes = Vec::new();
        let what;
        match r.below(20) {
            0..=8 => {
                let v = value(i, 0, len(r), r);
                db.put(&k, &v).expect("put");
                what = "put";
                writes.push((k, Some((v, 0))));
            }
            9..=11 => {
                db.delete(&k).expect("delete");
                what = "delete";
                writes.push((k, None));
            }
            12 | 13 => {
                // Either long-lived, or gone by the end of the workload.
                let ttl = if r.below(2) == 0 { 3_600_000 } else { 3 };
                let v = value(i, 0, len(r), r);
                db.put_with_ttl(&k, &v, Duration::from_millis(ttl))
                    .expect("put_with_ttl");
                what = "put_with_ttl";
                writes.push((k, Some((v, self.now() + ttl))));
            }
            14 | 15 => {
                let c = format!("counter{}", r.below(2)).into_bytes();
                let delta = r.below(9) as i64 - 3;
                let n = db.incr(&c, delta).expect("incr");
                what = "incr";
                writes.push((c, Some((n.to_string().into_bytes(), 0))));
            }
            16 => {
                self.clock.advance(Duration::from_millis(5));
                let v = value(i, 0, len(r), r);
                db.put(&k, &v).expect("put");
                what = "put (after the clock moved)";
                writes.push((k, Some((v, 0))));
            }
            _ => {
                let mut b = Batch::new();
                for part in 0..2 + r.below(2) as usize {
                    let k = key_name(r.below(KEYS));
                    if r.below(4) == 0 {
                        b.push_delete(&k);
                        writes.push((k, None));
                    } else {
                        let v = value(i, part, len(r), r);
                        b.push_put(&k, &v, None);
                        writes.push((k, Some((v, 0))));
                    }
                }
                db.write_batch(b).expect("write_batch");
                what = "batch";
            }
        }
        self.record(db, what, writes);
    }

    /// A put of `key` whose record is `record_len` bytes long.
    fn put_record_of(&mut self, db: &Db, key: &[u8], record_len: usize) {
        let i = self.ops.len();
        let v = value(
            i,
            0,
            record_len - format::RECORD_HEADER_LEN - key.len(),
            &mut self.rng,
        );
        db.put(key, &v).expect("put");
        self.record(db, "large put", vec![(key.to_vec(), Some((v, 0)))]);
    }

    /// Records an acknowledged operation and where its records went.
    fn record(&mut self, db: &Db, what: &str, mut writes: Vec<Write>) {
        for (k, w) in &writes {
            match w {
                Some(v) => self.model.insert(k.clone(), v.clone()),
                None => self.model.remove(k),
            };
        }
        let active = active_segment(db);
        let start = if active.0 == self.last.0 {
            self.last.1
        } else {
            HEADER
        };
        self.last = active;
        if active.1 == start {
            // Nothing written (a delete of a key that was absent or had
            // expired): nothing for recovery to replay either.
            writes.clear();
        }
        self.ops.push(OpRec {
            what: what.to_string(),
            writes,
            seg: active.0,
            start,
            end: active.1,
        });
    }
}

/// The active segment's id and the end of its records.
fn active_segment(db: &Db) -> (u32, u64) {
    let s = db
        .segment_stats()
        .into_iter()
        .find(|s| s.active)
        .expect("an active segment");
    (s.id, s.bytes)
}

/// The segment size limit after the reopen: room for 4 KiB of durable
/// records, a sync mark and a few records after it.
const ACTIVE_MAX_SEGMENT: u64 = 4608;

fn sealed(db: &Db) -> usize {
    db.segment_stats().iter().filter(|s| !s.active).count()
}

fn build_reference() -> Reference {
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let mut b = Builder {
        rng: Rng::new(0x5eed_c0de),
        clock: clock.clone(),
        model: Model::new(),
        ops: Vec::new(),
        last: (0, 0),
    };
    // Segments are sealed when the next record does not fit, so a large
    // record after a few small ones seals a small segment: that keeps the
    // files (and so the sweep over every bit) small. Segment 1: small
    // records; segment 2: a large value, then small records.
    let db = options(&sim, &clock, 4096).open(DIR).expect("open");
    while active_segment(&db).1 < 1000 {
        b.step(&db, 40);
    }
    let room = 4096 - active_segment(&db).1 as usize;
    b.put_record_of(&db, b"large0", room + 20);
    assert_eq!(active_segment(&db).0, 2);
    while sealed(&db) < 2 {
        b.step(&db, 40);
    }
    // Segment 3: small records, over a close and reopen.
    while active_segment(&db).1 < 600 {
        b.step(&db, 40);
    }
    drop(db);
    let db = options(&sim, &clock, ACTIVE_MAX_SEGMENT)
        .open(DIR)
        .expect("reopen");
    while active_segment(&db).1 < 1100 {
        b.step(&db, 40);
    }
    // Segment 4, the active one: a large value, then small records until
    // 4 KiB of it are durable, so that the writer puts a sync mark in
    // front of the next record, then a few more. Its file is preallocated
    // to `ACTIVE_MAX_SEGMENT + 32` bytes: the records, then zeros.
    let room = (ACTIVE_MAX_SEGMENT - active_segment(&db).1) as usize;
    b.put_record_of(&db, b"large1", room + 20);
    assert_eq!(active_segment(&db).0, 4);
    loop {
        b.step(&db, 30);
        let bytes = sim
            .file_bytes(&Path::new(DIR).join(seg_name(b.last.0)))
            .expect("active");
        let (recs, _) = parse_segment(&bytes);
        let after_mark = recs
            .iter()
            .rev()
            .take_while(|r| r.kind != kind::SYNC_MARK)
            .count();
        if recs.iter().any(|r| r.kind == kind::SYNC_MARK) && after_mark >= 3 {
            break;
        }
    }
    assert_eq!(active_segment(&db).0, 4, "the active segment rolled over");
    drop(db);

    let files = snapshot(&sim);
    let mut records = BTreeMap::new();
    let mut logical_end = BTreeMap::new();
    for (name, bytes) in &files {
        if let Some((id, "seg")) = parse_name(name) {
            let (recs, end) = parse_segment(bytes);
            records.insert(id, recs);
            logical_end.insert(id, end);
        }
    }
    let active = *records.keys().last().expect("segments");
    let mut states = vec![Model::new()];
    let mut m = Model::new();
    for op in &b.ops {
        for (k, w) in &op.writes {
            match w {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
        states.push(m.clone());
    }
    assert_eq!(visible(&m, b.now()), visible(&b.model, b.now()));
    let mut universe: Vec<Vec<u8>> = (0..KEYS).map(key_name).collect();
    for k in ["counter0", "counter1", "large0", "large1"] {
        universe.push(k.as_bytes().to_vec());
    }
    let now = b.now();
    let views = states.iter().map(|m| visible(m, now)).collect();
    let r = Reference {
        files,
        ops: b.ops,
        views,
        now,
        universe,
        active,
        records,
        logical_end,
    };
    r.self_check();
    r
}

impl Reference {
    /// The reference itself opens to the final state, from hints.
    fn self_check(&self) {
        let sealed: Vec<_> = self
            .records
            .keys()
            .filter(|&&id| id != self.active)
            .collect();
        assert!(sealed.len() >= 3, "only {} sealed segments", sealed.len());
        for id in &sealed {
            assert!(
                self.files.contains_key(&hint_name(**id)),
                "segment {id} has no hint"
            );
        }
        assert!(self.records[&self.active]
            .iter()
            .any(|r| r.kind == kind::SYNC_MARK));
        // Every operation's range ends at a record boundary.
        for op in &self.ops {
            let recs = &self.records[&op.seg];
            assert!(
                op.end == HEADER || recs.iter().any(|r| r.off + r.len == op.end),
                "{op:?}"
            );
        }
        let sim = fresh_fs(&self.files);
        let db = self
            .open(&sim, RecoveryMode::Strict)
            .expect("reference opens");
        let rep = db.recovery_report().clone();
        assert_eq!(rep.segments_scanned, 1, "{rep:?}");
        assert_eq!(rep.truncated_tail, None);
        let (seen, errors) = self.read_all(&db);
        assert!(errors.is_empty());
        assert_eq!(&seen, self.view(self.ops.len()));
    }

    fn open(&self, sim: &SimFs, mode: RecoveryMode) -> Result<Db, Error> {
        let clock = ManualClock::new(self.now);
        options(sim, &clock, ACTIVE_MAX_SEGMENT)
            .recovery_mode(mode)
            .open(DIR)
    }

    fn view(&self, prefix: usize) -> &View {
        &self.views[prefix]
    }

    /// What every key reads as, and the keys whose read failed with
    /// `Error::Corruption` (any other error is returned as a failure).
    fn read_all(&self, db: &Db) -> (View, Vec<Vec<u8>>) {
        let mut seen = View::new();
        let mut errors = Vec::new();
        for k in &self.universe {
            match db.get(k) {
                Ok(Some(v)) => {
                    seen.insert(k.clone(), v);
                }
                Ok(None) => {}
                Err(Error::Corruption { .. }) => errors.push(k.clone()),
                Err(e) => panic!("get {} failed with {e}", String::from_utf8_lossy(k)),
            }
        }
        (seen, errors)
    }

    /// The highest prefix whose view agrees with `seen` on every key not in
    /// `errors`.
    fn matching_prefix(&self, seen: &View, errors: &[Vec<u8>]) -> Option<usize> {
        (0..=self.ops.len()).rev().find(|&i| {
            let mut want = self.view(i).clone();
            want.retain(|k, _| !errors.contains(k));
            let mut got = seen.clone();
            got.retain(|k, _| !errors.contains(k));
            want == got
        })
    }

    /// Operations whose data records (sync marks left out) overlap
    /// `[from, to)` of segment `seg`.
    fn ops_touching(&self, seg: u32, from: u64, to: u64) -> Vec<usize> {
        let recs = &self.records[&seg];
        (0..self.ops.len())
            .filter(|&i| {
                let op = &self.ops[i];
                op.seg == seg
                    && recs.iter().any(|r| {
                        r.kind != kind::SYNC_MARK
                            && r.off >= op.start
                            && r.off < op.end
                            && r.off < to
                            && r.off + r.len > from
                    })
            })
            .collect()
    }

    /// The first operation with records in the active segment.
    fn first_active_op(&self) -> usize {
        self.ops
            .iter()
            .position(|o| o.seg == self.active)
            .unwrap_or(self.ops.len())
    }

    /// The operation whose append holds byte `off` of the active segment.
    fn active_op_at(&self, off: u64) -> Option<usize> {
        self.ops
            .iter()
            .position(|o| o.seg == self.active && o.start <= off && off < o.end)
    }
}

// ----- damage cases ------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Damage {
    Flip { offset: usize, bit: u8 },
    Zero { block: usize },
    Truncate { at: usize },
}

impl Damage {
    fn apply(self, pristine: &[u8]) -> Vec<u8> {
        let mut b = pristine.to_vec();
        match self {
            Damage::Flip { offset, bit } => b[offset] ^= 1 << bit,
            Damage::Zero { block } => {
                let end = ((block + 1) * 4096).min(b.len());
                b[block * 4096..end].fill(0);
            }
            Damage::Truncate { at } => b.truncate(at),
        }
        b
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Active,
    Sealed,
    Hint,
    Other,
}

/// How a case came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Strict open refused the files.
    Refused,
    /// Open succeeded; reading the damaged record failed with `Corruption`.
    ReadError,
    /// Open cut the active segment back to a prefix and reported it.
    CutReported,
    /// The active segment was truncated at a record boundary: the store is
    /// exactly the state after the operations whose records remain.
    Prefix,
    /// Every key reads its newest value.
    Harmless,
    /// The damage changed no byte (a zeroed block that was zeros already).
    NoChange,
    /// A wrong value, a state that is no prefix, or an unreported loss.
    Wrong,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum SalvageVerdict {
    /// Salvage opened, reported what it skipped, and returned exactly the
    /// operations whose records it kept.
    Salvaged,
    /// Salvage refused too (a damaged segment header).
    Refused,
    Wrong,
}

#[derive(Default)]
struct Tally {
    cases: u64,
    verdicts: BTreeMap<(FileKind, Verdict), u64>,
    salvage: BTreeMap<SalvageVerdict, u64>,
    failures: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.cases += o.cases;
        for (k, v) in o.verdicts {
            *self.verdicts.entry(k).or_default() += v;
        }
        for (k, v) in o.salvage {
            *self.salvage.entry(k).or_default() += v;
        }
        self.failures.extend(o.failures);
    }

    fn count(&self, f: impl Fn(FileKind, Verdict) -> bool) -> u64 {
        self.verdicts
            .iter()
            .filter(|((k, v), _)| f(*k, *v))
            .map(|(_, n)| n)
            .sum()
    }
}

fn file_kind(r: &Reference, name: &str) -> FileKind {
    match parse_name(name) {
        Some((id, "seg")) if id == r.active => FileKind::Active,
        Some((_, "seg")) => FileKind::Sealed,
        Some((_, "hint")) => FileKind::Hint,
        _ => FileKind::Other,
    }
}

/// What the rules of docs/format.md say must happen, where they say it
/// precisely.
#[derive(Debug)]
enum Expect {
    /// Open must fail with `Corruption`.
    Refused,
    /// Open must succeed with exactly the state after this many operations;
    /// `report`: a cut must be reported in `truncated_tail`.
    Prefix { ops: usize, report: bool },
    /// Refused, or the final state (keys whose read fails aside); no cut.
    NoLoss,
    /// The final state exactly, and the segment scanned instead of its hint.
    Rebuilt,
}

struct Case<'a> {
    name: &'a str,
    kind: FileKind,
    damage: Damage,
    bytes: Vec<u8>,
    /// First and last byte that differ from the pristine file (for a
    /// truncation: the new length, twice).
    changed: Option<(u64, u64)>,
}

fn expectation(r: &Reference, c: &Case) -> Expect {
    match c.kind {
        FileKind::Hint => Expect::Rebuilt,
        FileKind::Sealed | FileKind::Other => Expect::NoLoss,
        FileKind::Active => {
            let end = r.logical_end[&r.active];
            let Some((first, last)) = c.changed else {
                return Expect::Prefix {
                    ops: r.ops.len(),
                    report: false,
                };
            };
            if let Damage::Truncate { at } = c.damage {
                let at = at as u64;
                // A torn header with nothing after it: the segment was being
                // created; nothing in it counts.
                let ops = if at < HEADER {
                    r.first_active_op()
                } else {
                    r.ops
                        .iter()
                        .position(|o| o.seg == r.active && o.end > at)
                        .unwrap_or(r.ops.len())
                };
                return Expect::Prefix { ops, report: false };
            }
            if first < HEADER {
                return Expect::Refused;
            }
            if first >= end {
                // Garbage in the preallocated zeros: cut, nothing lost.
                return Expect::Prefix {
                    ops: r.ops.len(),
                    report: true,
                };
            }
            // The record holding the first damaged byte, and the durable
            // offset the intact sync marks name.
            let recs = &r.records[&r.active];
            let damaged = recs
                .iter()
                .find(|x| x.off <= first && first < x.off + x.len)
                .expect("a record holds the damaged byte");
            let durable = recs
                .iter()
                .filter(|x| x.kind == kind::SYNC_MARK && (x.off > last || x.off + x.len <= first))
                .map(|x| x.durable)
                .max()
                .unwrap_or(0);
            if damaged.off < durable {
                Expect::Refused
            } else {
                // Past the last operation: the marks of the clean close,
                // cut with nothing lost.
                let ops = r.active_op_at(damaged.off).unwrap_or(r.ops.len());
                // Zeroing from a record boundary to the end of the file
                // looks like preallocated space: nothing to report.
                let zero_tail = matches!(c.damage, Damage::Zero { .. })
                    && c.bytes[damaged.off as usize..].iter().all(|&b| b == 0);
                Expect::Prefix {
                    ops,
                    report: !zero_tail,
                }
            }
        }
    }
}

/// A value, shortened to the tag naming the operation that wrote it.
fn short(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.split(':').next().unwrap_or("").to_string()
}

/// The keys on which `got` and `want` differ.
fn diff(got: &View, want: &View) -> String {
    let mut keys: Vec<&Vec<u8>> = got.keys().chain(want.keys()).collect();
    keys.sort();
    keys.dedup();
    let show = |v: Option<&Vec<u8>>| v.map_or("absent".to_string(), |v| short(v));
    let parts: Vec<String> = keys
        .into_iter()
        .filter(|k| got.get(*k) != want.get(*k))
        .map(|k| {
            format!(
                "{}: read {}, expected {}",
                String::from_utf8_lossy(k),
                show(got.get(k)),
                show(want.get(k))
            )
        })
        .collect();
    format!("[{}]", parts.join("; "))
}

/// The report, without the fields that are always empty here.
fn brief_report(r: &cairn::RecoveryReport) -> String {
    let skipped: Vec<String> = r
        .skipped
        .iter()
        .map(|s| {
            format!(
                "{}@{}+{} ({})",
                file_name(&s.path),
                s.offset,
                s.len,
                s.reason
            )
        })
        .collect();
    format!(
        "report: {} from hints, {} scanned, tail cut {:?}, skipped {skipped:?}",
        r.segments_from_hints,
        r.segments_scanned,
        r.truncated_tail
            .as_ref()
            .map(|(p, at, n)| format!("{}@{at}+{n}", file_name(p)))
    )
}

fn file_name(p: &Path) -> &str {
    p.file_name().and_then(|n| n.to_str()).unwrap_or("?")
}

fn describe(c: &Case) -> String {
    format!("{} {:?} ({:?})", c.name, c.damage, c.kind)
}

/// Runs one case; returns the verdicts, and a failure description.
fn run_case(r: &Reference, c: &Case) -> (Verdict, Option<SalvageVerdict>, Option<String>) {
    if c.changed.is_none() && !matches!(c.damage, Damage::Truncate { .. }) {
        return (Verdict::NoChange, None, None);
    }
    let mut files = r.files.clone();
    files.insert(c.name.to_string(), c.bytes.clone());
    let expect = expectation(r, c);
    let sim = fresh_fs(&files);
    let fail = |why: String| {
        (
            Verdict::Wrong,
            None,
            Some(format!("{}: {why}", describe(c))),
        )
    };
    let db = match r.open(&sim, RecoveryMode::Strict) {
        Err(e) => {
            if !matches!(
                e,
                Error::Corruption { .. } | Error::UnsupportedVersion { .. }
            ) {
                return fail(format!("open failed with an unexpected error: {e}"));
            }
            if let Expect::Prefix { ops, .. } = expect {
                return fail(format!(
                    "open refused ({e}), but the rules say it recovers the first {ops} of {} operations",
                    r.ops.len()
                ));
            }
            if let Expect::Rebuilt = expect {
                return fail(format!("open refused ({e}) a damaged hint"));
            }
            let (sv, why) = salvage(r, &files, c);
            return (Verdict::Refused, Some(sv), why);
        }
        Ok(db) => db,
    };
    let rep = db.recovery_report().clone();
    let (seen, errors) = r.read_all(&db);
    let n = r.ops.len();
    let fin = r.view(n);
    let what = || {
        format!(
            "differences from the final state {} (read errors on {:?}); the state after {:?} of {n} operations matches; {}",
            diff(&seen, fin),
            errors.iter().map(|k| String::from_utf8_lossy(k)).collect::<Vec<_>>(),
            r.matching_prefix(&seen, &errors),
            brief_report(&rep)
        )
    };
    match expect {
        Expect::Refused => fail(format!(
            "open succeeded, but the damage lies before a durable sync mark and must be refused as corruption; {}", what()
        )),
        Expect::Prefix { ops, report } => {
            if !errors.is_empty() || &seen != r.view(ops) {
                let lost: Vec<String> = r.ops[ops..]
                    .iter()
                    .take(3)
                    .map(|o| format!("{}@{}..{}", o.what, o.start, o.end))
                    .collect();
                return fail(format!(
                    "expected the state after {ops} operations (next: {lost:?}); {}",
                    what()
                ));
            }
            if report && rep.truncated_tail.is_none() {
                return fail(format!("a cut was not reported; {}", what()));
            }
            if ops == n {
                (Verdict::Harmless, None, None)
            } else if rep.truncated_tail.is_some() {
                (Verdict::CutReported, None, None)
            } else {
                (Verdict::Prefix, None, None)
            }
        }
        Expect::Rebuilt => {
            if !errors.is_empty() || &seen != fin {
                return fail(format!("a damaged hint changed what is read; {}", what()));
            }
            if rep.segments_scanned < 2 || rep.truncated_tail.is_some() {
                return fail(format!(
                    "the damaged hint was not noticed and rebuilt; {}",
                    what()
                ));
            }
            // The hint was rewritten from the segment. Byte for byte the
            // same as before (hints are encoded deterministically) proves it
            // cheaply; otherwise, the next open must use it.
            drop(db);
            if sim.file_bytes(&Path::new(DIR).join(c.name)).as_ref() == r.files.get(c.name) {
                return (Verdict::Harmless, None, None);
            }
            let again = match r.open(&sim, RecoveryMode::Strict) {
                Ok(db) => db,
                Err(e) => return fail(format!("second open failed: {e}")),
            };
            let rep2 = again.recovery_report().clone();
            let (seen2, errors2) = r.read_all(&again);
            if rep2.segments_scanned != 1 || !errors2.is_empty() || &seen2 != fin {
                return fail(format!(
                    "after the rebuild, a second open: {}, differences {}",
                    brief_report(&rep2),
                    diff(&seen2, fin)
                ));
            }
            (Verdict::Harmless, None, None)
        }
        Expect::NoLoss => {
            if rep.truncated_tail.is_some() {
                return fail(format!(
                    "damage outside the active segment cut it; {}",
                    what()
                ));
            }
            if r.matching_prefix(&seen, &errors) != Some(n) {
                return fail(format!(
                    "damage outside the active segment was accepted and lost or changed data; {}",
                    what()
                ));
            }
            if errors.is_empty() {
                (Verdict::Harmless, None, None)
            } else {
                (Verdict::ReadError, None, None)
            }
        }
    }
}

/// Opens a case strict mode refused with `RecoveryMode::Salvage`.
fn salvage(r: &Reference, files: &Files, c: &Case) -> (SalvageVerdict, Option<String>) {
    let sim = fresh_fs(files);
    let db = match r.open(&sim, RecoveryMode::Salvage) {
        Err(_) => return (SalvageVerdict::Refused, None),
        Ok(db) => db,
    };
    let rep = db.recovery_report().clone();
    let (seen, errors) = r.read_all(&db);
    let wrong = |why: String| {
        (
            SalvageVerdict::Wrong,
            Some(format!("{} salvage: {why}", describe(c))),
        )
    };
    if rep.skipped.is_empty() && rep.truncated_tail.is_none() {
        return wrong(format!(
            "strict open refused, salvage reported nothing; {}",
            brief_report(&rep)
        ));
    }
    // The operations salvage dropped: those with a record in a skipped
    // range or in a cut tail.
    let mut dropped = Vec::new();
    for s in &rep.skipped {
        if let Some((id, "seg")) = parse_name(file_name(&s.path)) {
            dropped.extend(r.ops_touching(id, s.offset, s.offset + s.len));
        }
    }
    // A truncation removed the records past the cut: salvage cannot
    // report what is not there.
    if let (Damage::Truncate { at }, Some((id, "seg"))) = (c.damage, parse_name(c.name)) {
        dropped.extend(r.ops_touching(id, at as u64, u64::MAX));
    }
    if let Some((path, at, _)) = &rep.truncated_tail {
        if path != &PathBuf::from(DIR).join(seg_name(r.active)) {
            return wrong(format!(
                "cut a file other than the active segment; {}",
                brief_report(&rep)
            ));
        }
        dropped.extend(r.ops_touching(r.active, *at, u64::MAX));
    }
    let mut m = Model::new();
    for (i, op) in r.ops.iter().enumerate() {
        if dropped.contains(&i) {
            continue;
        }
        for (k, w) in &op.writes {
            match w {
                Some(v) => m.insert(k.clone(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    let mut want = visible(&m, r.now);
    want.retain(|k, _| !errors.contains(k));
    let mut got = seen;
    got.retain(|k, _| !errors.contains(k));
    if got != want || !errors.is_empty() {
        let dropped: Vec<String> = dropped
            .iter()
            .map(|&i| {
                format!(
                    "{i} ({} at {}..{})",
                    r.ops[i].what, r.ops[i].start, r.ops[i].end
                )
            })
            .collect();
        return wrong(format!(
            "expected every operation but {dropped:?}; differences {} (read errors on {} keys); {}",
            diff(&got, &want),
            errors.len(),
            brief_report(&rep)
        ));
    }
    (SalvageVerdict::Salvaged, None)
}

/// Runs every case of a sweep on two threads.
fn sweep(r: &Reference, label: &str, cases: &[(String, Damage)]) -> Tally {
    let next = AtomicUsize::new(0);
    let total = Mutex::new(Tally::default());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut t = Tally::default();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, damage)) = cases.get(i) else {
                        break;
                    };
                    let pristine = &r.files[name];
                    let bytes = damage.apply(pristine);
                    let changed = match damage {
                        Damage::Truncate { at } => Some((*at as u64, *at as u64)),
                        Damage::Flip { offset, .. } => Some((*offset as u64, *offset as u64)),
                        Damage::Zero { .. } => {
                            let diff: Vec<usize> = (0..bytes.len())
                                .filter(|&j| bytes[j] != pristine[j])
                                .collect();
                            diff.first()
                                .map(|&f| (f as u64, *diff.last().unwrap_or(&f) as u64))
                        }
                    };
                    let c = Case {
                        name,
                        kind: file_kind(r, name),
                        damage: *damage,
                        bytes,
                        changed,
                    };
                    // A panic inside cairn is a failure of this case, not
                    // of the whole sweep.
                    let (v, sv, failure) =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(r, &c)))
                            .unwrap_or_else(|p| {
                                let msg = p
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_default();
                                (
                                    Verdict::Wrong,
                                    None,
                                    Some(format!("{}: panicked: {msg}", describe(&c))),
                                )
                            });
                    t.cases += 1;
                    *t.verdicts.entry((c.kind, v)).or_default() += 1;
                    if let Some(sv) = sv {
                        *t.salvage.entry(sv).or_default() += 1;
                    }
                    if let Some(f) = failure {
                        t.failures.push(f);
                    }
                }
                total.lock().unwrap_or_else(|e| e.into_inner()).merge(t);
            });
        }
    });
    let t = total.into_inner().unwrap_or_else(|e| e.into_inner());
    let detected = t.count(|_, v| {
        matches!(
            v,
            Verdict::Refused | Verdict::ReadError | Verdict::CutReported
        )
    });
    let harmless = t.count(|_, v| matches!(v, Verdict::Harmless | Verdict::NoChange));
    let prefix = t.count(|_, v| v == Verdict::Prefix);
    let wrong = t.count(|_, v| v == Verdict::Wrong);
    let salvage_wrong = t.salvage.get(&SalvageVerdict::Wrong).copied().unwrap_or(0);
    let mut line = format!(
        "{} {label}: {detected} detected, {harmless} harmless, ",
        t.cases
    );
    if prefix > 0 {
        let _ = write!(
            line,
            "{prefix} exact prefix (active segment cut at a record boundary), "
        );
    }
    let _ = write!(line, "{wrong} wrong");
    eprintln!("{line}");
    for kind in [
        FileKind::Sealed,
        FileKind::Hint,
        FileKind::Active,
        FileKind::Other,
    ] {
        let parts: Vec<String> = t
            .verdicts
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, v), n)| format!("{v:?} {n}"))
            .collect();
        if !parts.is_empty() {
            eprintln!("    {kind:?}: {}", parts.join(", "));
        }
    }
    if !t.salvage.is_empty() {
        let parts: Vec<String> = t
            .salvage
            .iter()
            .map(|(v, n)| format!("{v:?} {n}"))
            .collect();
        eprintln!(
            "    salvage of the refused cases: {} ({salvage_wrong} wrong)",
            parts.join(", ")
        );
    }
    t
}

#[test]
fn corruption_sweeps() {
    let started = Instant::now();
    let r = build_reference();
    let sizes: Vec<String> = r
        .files
        .iter()
        .map(|(n, b)| format!("{n} {}", b.len()))
        .collect();
    eprintln!(
        "reference store: {} operations; files: {}; active segment {} (records end at {}, sync marks at {:?})",
        r.ops.len(),
        sizes.join(", "),
        r.active,
        r.logical_end[&r.active],
        r.records[&r.active]
            .iter()
            .filter(|x| x.kind == kind::SYNC_MARK)
            .map(|x| (x.off, x.durable))
            .collect::<Vec<_>>()
    );
    if let Ok(spec) = std::env::var("CAIRN_SWEEP_CASE") {
        let f: Vec<&str> = spec.split_whitespace().collect();
        let num = |i: usize| -> usize {
            f.get(i).and_then(|s| s.parse().ok()).expect(
                "CAIRN_SWEEP_CASE=\"<file> flip <offset> <bit> | zero <block> | truncate <len>\"",
            )
        };
        let damage = match f.get(1).copied() {
            Some("flip") => Damage::Flip {
                offset: num(2),
                bit: num(3) as u8,
            },
            Some("zero") => Damage::Zero { block: num(2) },
            _ => Damage::Truncate { at: num(2) },
        };
        if std::env::var_os("CAIRN_SWEEP_OPS").is_some() {
            for (i, op) in r.ops.iter().enumerate() {
                let w: Vec<String> = op
                    .writes
                    .iter()
                    .map(|(k, w)| match w {
                        Some((v, exp)) => {
                            format!("{}={} exp {exp}", String::from_utf8_lossy(k), short(v))
                        }
                        None => format!("del {}", String::from_utf8_lossy(k)),
                    })
                    .collect();
                eprintln!(
                    "op {i}: {} seg {} {}..{} {w:?}",
                    op.what, op.seg, op.start, op.end
                );
            }
            eprintln!("now {}", r.now);
        }
        let t = sweep(&r, "replayed case", &[(f[0].to_string(), damage)]);
        for f in &t.failures {
            eprintln!("FAILED: {f}");
        }
        assert!(t.failures.is_empty());
        return;
    }
    let names: Vec<&String> = r.files.keys().collect();
    let mut flips = Vec::new();
    let mut zeros = Vec::new();
    let mut cuts = Vec::new();
    for name in &names {
        let len = r.files[*name].len();
        for offset in 0..len {
            for bit in 0..8 {
                flips.push(((*name).clone(), Damage::Flip { offset, bit }));
            }
        }
        for block in 0..len.div_ceil(4096) {
            zeros.push(((*name).clone(), Damage::Zero { block }));
        }
        for at in 0..len {
            cuts.push(((*name).clone(), Damage::Truncate { at }));
        }
    }
    let only = std::env::var("CAIRN_SWEEP_ONLY").unwrap_or_default();
    let mut all = Tally::default();
    for (label, cases) in [
        ("bit flips", &flips),
        ("zeroed 4 KiB blocks", &zeros),
        ("truncations", &cuts),
    ] {
        if only.is_empty() || label.contains(only.as_str()) {
            all.merge(sweep(&r, label, cases));
        }
    }
    eprintln!("corruption sweeps took {:?}", started.elapsed());
    if !all.failures.is_empty() {
        let show: usize = std::env::var("CAIRN_SWEEP_SHOW")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        for f in all.failures.iter().take(show) {
            eprintln!("FAILED: {f}\n");
        }
        panic!(
            "{} of {} corruption cases went wrong; first: {}",
            all.failures.len(),
            all.cases,
            all.failures[0]
        );
    }
}

/// Every bit flip and every truncation of the reference store's index
/// checkpoint: open (read-only, so that the pristine files stay; a
/// writable open for every truncation) ignores the damaged checkpoint,
/// never panics, and reads exactly the final state.
#[test]
fn checkpoint_sweep() {
    let started = Instant::now();
    let r = build_reference();
    let sim = fresh_fs(&r.files);
    let clock = ManualClock::new(r.now);
    // A tail cache that holds the active segment: the open does not seal
    // it, so only the checkpoint is new.
    let db = options(&sim, &clock, ACTIVE_MAX_SEGMENT)
        .tail_cache_bytes(1 << 20)
        .index_checkpoint_at_close(true)
        .open(DIR)
        .expect("open");
    db.close().expect("close");
    drop(db);
    let mut files = snapshot(&sim);
    let ckpt = files.remove("index.ckpt").expect("a checkpoint");
    assert_eq!(files, r.files, "the open and close changed other files");
    let fin = r.view(r.ops.len()).clone();
    let open = |bytes: &[u8], read_only: bool| -> Result<cairn::CheckpointUse, String> {
        let mut f = files.clone();
        f.insert("index.ckpt".to_string(), bytes.to_vec());
        let sim = fresh_fs(&f);
        let clock = ManualClock::new(r.now);
        let db = options(&sim, &clock, ACTIVE_MAX_SEGMENT)
            .read_only(read_only)
            .open(DIR)
            .map_err(|e| format!("open failed: {e}"))?;
        let (seen, errors) = r.read_all(&db);
        if !errors.is_empty() || seen != fin {
            return Err(format!("read {}", diff(&seen, &fin)));
        }
        Ok(db.recovery_report().checkpoint)
    };
    assert_eq!(open(&ckpt, true), Ok(cairn::CheckpointUse::Used));
    let mut cases: Vec<(usize, Option<u8>)> = (0..ckpt.len()).map(|at| (at, None)).collect();
    for at in 0..ckpt.len() {
        cases.extend((0..8).map(|bit| (at, Some(bit))));
    }
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(at, bit)) = cases.get(i) else {
                    break;
                };
                let (what, bytes, read_only) = match bit {
                    None => (format!("truncated to {at}"), ckpt[..at].to_vec(), false),
                    Some(b) => {
                        let mut x = ckpt.clone();
                        x[at] ^= 1 << b;
                        (format!("bit {b} of byte {at} flipped"), x, true)
                    }
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    open(&bytes, read_only)
                }))
                .unwrap_or_else(|_| Err("panicked".into()));
                match outcome {
                    Ok(u) if u != cairn::CheckpointUse::Used => {}
                    Ok(_) => failures.lock().expect("lock").push(format!("{what}: used")),
                    Err(e) => failures.lock().expect("lock").push(format!("{what}: {e}")),
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    eprintln!(
        "index checkpoint of {} bytes: {} cases ({} truncations, {} bit flips), {} wrong, in {:?}",
        ckpt.len(),
        cases.len(),
        ckpt.len(),
        ckpt.len() * 8,
        failures.len(),
        started.elapsed()
    );
    for f in failures.iter().take(10) {
        eprintln!("FAILED: {f}");
    }
    assert!(failures.is_empty());
}
