//! The change feed against a model: a consumer that applies every change
//! to a map ends equal to the store, through batches, TTLs, deletes,
//! compaction and reopens; positions that compaction removed, or that are
//! not in the store's history, give `Error::ChangesLost`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn::feed::{Change, ChangeKind, Changes, FeedStart, Position};
use cairn::{Batch, Clock, Db, Error, ManualClock, Options};
use common::{XorShift, START_MS};

/// key → (value, expiry in unix ms).
type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

fn options(clock: &ManualClock) -> Options {
    Options::new()
        .max_segment_bytes(cairn::MIN_SEGMENT_BYTES)
        .auto_compact(false)
        .expiry_sweep_interval_ms(3_600_000)
        .clock(clock.clone())
}

/// Applies one change to a consumer's copy. Batch boundaries change
/// nothing by themselves; the checks that batches arrive whole are in
/// `Consumer::take`.
fn apply(copy: &mut Model, c: &Change) {
    match &c.kind {
        ChangeKind::Put {
            key,
            value,
            expires_at_ms,
        }
        | ChangeKind::ExpiryChanged {
            key,
            value,
            expires_at_ms,
        } => {
            copy.insert(key.clone(), (value.clone(), *expires_at_ms));
        }
        ChangeKind::Delete { key } | ChangeKind::Expired { key } => {
            copy.remove(key);
        }
        ChangeKind::BatchBegin { .. } | ChangeKind::BatchEnd { .. } => {}
        _ => panic!("a change kind this test does not know: {c:?}"),
    }
}

/// The store's live contents, as the consumer's copy shows them at `now`.
fn live(copy: &Model, now: u64) -> Model {
    copy.iter()
        .filter(|(_, (_, e))| e.is_none_or(|e| e > now))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn store_contents(db: &Db) -> Model {
    let mut m = Model::new();
    for kv in db.scan_prefix("") {
        let (k, _) = kv.expect("scan");
        if let Some((v, e)) = db.get_with_expiry(&k).expect("get") {
            m.insert(k, (v, e));
        }
    }
    m
}

/// A consumer: its copy, its saved position, and the checks on order.
struct Consumer {
    copy: Model,
    saved: Position,
    last_seq: u64,
    open_batch: Option<(u32, u32)>,
}

impl Consumer {
    fn new() -> Consumer {
        Consumer {
            copy: Model::new(),
            saved: Position::START,
            last_seq: 0,
            open_batch: None,
        }
    }

    fn take(&mut self, c: &Change) {
        assert!(c.seq > self.last_seq, "{} after {}", c.seq, self.last_seq);
        self.last_seq = c.seq;
        match c.kind {
            ChangeKind::BatchBegin { ops } => {
                assert!(self.open_batch.is_none(), "a batch inside a batch");
                self.open_batch = Some((ops, 0));
            }
            ChangeKind::BatchEnd { ops } => {
                let (want, seen) = self.open_batch.take().expect("an end without a begin");
                assert_eq!((want, seen), (ops, ops), "a batch not delivered whole");
            }
            _ => {
                if let Some((_, seen)) = &mut self.open_batch {
                    *seen += 1;
                }
            }
        }
        apply(&mut self.copy, c);
    }

    /// Takes every change there is now; returns the error that stopped it.
    fn drain(&mut self, feed: &mut Changes) -> Result<(), Error> {
        while let Some(c) = feed.try_next()? {
            self.take(&c);
        }
        assert!(self.open_batch.is_none(), "a batch left open at the end");
        self.saved = feed.resume_position();
        Ok(())
    }

    /// Starts again from a snapshot and the changes after it.
    fn resync(&mut self, db: &Db) -> Changes {
        let (snapshot, feed) = db.snapshot_then_changes().expect("snapshot");
        self.copy = store_contents(&snapshot);
        self.last_seq = feed.resume_position().seq();
        self.saved = feed.resume_position();
        feed
    }
}

fn random_key(rng: &mut XorShift) -> Vec<u8> {
    format!("k{:02}", rng.below(40)).into_bytes()
}

fn random_value(rng: &mut XorShift) -> Vec<u8> {
    let len = rng.below_usize(300);
    (0..len).map(|_| rng.below(256) as u8).collect()
}

/// One random write.
fn write(db: &Db, rng: &mut XorShift) {
    let key = random_key(rng);
    match rng.below(10) {
        0..=3 => db.put(&key, random_value(rng)).expect("put"),
        4 => db
            .put_with_ttl(
                &key,
                random_value(rng),
                Duration::from_secs(1 + rng.below(20)),
            )
            .expect("put"),
        5 => {
            db.delete(&key).expect("delete");
        }
        6 => {
            db.expire(&key, Duration::from_secs(1 + rng.below(20)))
                .expect("expire");
        }
        7 => {
            db.persist(&key).expect("persist");
        }
        _ => {
            let mut b = Batch::new();
            for _ in 0..1 + rng.below(5) {
                let k = random_key(rng);
                b = if rng.below(3) == 0 {
                    b.delete(k)
                } else {
                    b.put(k, random_value(rng))
                };
            }
            db.write_batch(b).expect("batch");
        }
    }
}

fn check_equal(consumer: &Consumer, db: &Db, now: u64, seed: u64, step: usize) {
    assert_eq!(
        live(&consumer.copy, now),
        store_contents(db),
        "seed {seed}, step {step}: the consumer's copy differs from the store"
    );
}

/// One random run: writes, clock moves, sweeps, compactions, reopens; the
/// consumer drains now and then, resumes from its saved position after a
/// reopen, and resynchronises when (and only when) a compaction removed
/// changes it had not read.
fn run(seed: u64, dir: &Path) -> u32 {
    let mut rng = XorShift::new(seed);
    let clock = ManualClock::new(START_MS);
    let mut db = options(&clock).open(dir).expect("open");
    let mut consumer = Consumer::new();
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    let mut compacted_unread = false;
    let mut lost = 0;
    for step in 0..400 {
        match rng.below(100) {
            0..=74 => write(&db, &mut rng),
            75..=79 => clock.advance(Duration::from_secs(rng.below(10))),
            80..=81 => {
                db.sweep_expired();
            }
            82..=84 => {
                let unread = feed.lag().expect("lag").seqs > 0;
                let stats = db.compact().expect("compact");
                compacted_unread |= unread && stats.segments_in > 0;
            }
            85..=89 => {
                drop(feed);
                db.close().expect("close");
                drop(db);
                db = options(&clock).open(dir).expect("reopen");
                feed = match db.changes(FeedStart::After(consumer.saved)) {
                    Ok(f) => f,
                    Err(Error::ChangesLost { .. }) if compacted_unread => {
                        lost += 1;
                        compacted_unread = false;
                        consumer.resync(&db)
                    }
                    Err(e) => panic!("seed {seed}, step {step}: resume failed: {e}"),
                };
                // Resuming reads on from the saved position.
                consumer.last_seq = consumer.saved.seq();
            }
            _ => match consumer.drain(&mut feed) {
                Ok(()) => {
                    compacted_unread = false;
                    check_equal(&consumer, &db, clock.now_unix_ms(), seed, step);
                }
                Err(Error::ChangesLost { .. }) if compacted_unread => {
                    lost += 1;
                    compacted_unread = false;
                    feed = consumer.resync(&db);
                    check_equal(&consumer, &db, clock.now_unix_ms(), seed, step);
                }
                Err(e) => panic!("seed {seed}, step {step}: {e}"),
            },
        }
    }
    match consumer.drain(&mut feed) {
        Ok(()) => {}
        Err(Error::ChangesLost { .. }) if compacted_unread => {
            feed = consumer.resync(&db);
            consumer.drain(&mut feed).expect("drain after resync");
        }
        Err(e) => panic!("seed {seed}: {e}"),
    }
    check_equal(&consumer, &db, clock.now_unix_ms(), seed, 400);
    lost
}

#[test]
fn a_consumer_applying_the_feed_ends_equal_to_the_store() {
    let mut resyncs = 0;
    for seed in 1..=30 {
        let dir = tempfile::tempdir().expect("tempdir");
        resyncs += run(seed, dir.path());
    }
    // The runs do reach the full resynchronisation path.
    assert!(resyncs > 0, "no run lost a position to compaction");
    eprintln!("{resyncs} resynchronisations after ChangesLost in 30 runs");
}

/// Writes enough to fill several segments.
fn fill(db: &Db, from: u32, n: u32) {
    for i in from..from + n {
        db.put(format!("key{i:05}"), vec![b'x'; 200]).expect("put");
    }
}

#[test]
fn a_position_compaction_removed_is_changes_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = options(&clock).open(dir.path()).expect("open");
    fill(&db, 0, 20);
    let early = db
        .changes(FeedStart::After(Position::START))
        .expect("feed")
        .next()
        .expect("a change")
        .expect("ok")
        .position();
    // Overwrite everything, so compaction drops the first segments whole.
    fill(&db, 0, 20);
    fill(&db, 0, 20);
    db.seal_active_segment().expect("seal");
    let stats = db.compact().expect("compact");
    assert!(stats.segments_in > 0, "{stats:?}");
    match db.changes(FeedStart::After(early)) {
        Err(Error::ChangesLost { reason, .. }) => {
            assert!(reason.contains("compaction"), "{reason}");
        }
        other => panic!("expected ChangesLost, got {other:?}"),
    }
    match db.changes(FeedStart::After(Position::START)) {
        Err(Error::ChangesLost { .. }) => {}
        other => panic!("expected ChangesLost, got {other:?}"),
    }
    // The error says what to do.
    let e = db.changes(FeedStart::After(early)).expect_err("lost");
    assert!(e.to_string().contains("snapshot_then_changes"), "{e}");
}

#[test]
fn a_feed_that_falls_behind_compaction_gets_changes_lost_not_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = options(&clock).open(dir.path()).expect("open");
    fill(&db, 0, 5);
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    assert!(feed.try_next().expect("read").is_some());
    // The feed is in the first segment; compaction removes the ones after.
    fill(&db, 0, 40);
    fill(&db, 0, 40);
    db.seal_active_segment().expect("seal");
    db.compact().expect("compact");
    let mut seen = 1;
    let err = loop {
        match feed.try_next() {
            Ok(Some(_)) => seen += 1,
            Ok(None) => panic!("the feed ended without an error after {seen} changes"),
            Err(e) => break e,
        }
    };
    assert!(matches!(err, Error::ChangesLost { .. }), "{err}");
}

#[test]
fn a_position_of_another_history_is_changes_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.put("a", "1").expect("put");
    db.put("b", "2").expect("put");
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    feed.try_next().expect("read");
    let real = feed.try_next().expect("read").expect("change").position();
    // The same sequence number with another check: a log rewritten after
    // a crash.
    let text = real.to_string();
    let (seq, check) = text.split_once(':').expect("form");
    let other: Position = format!(
        "{seq}:{:08x}",
        u32::from_str_radix(check, 16).expect("hex") ^ 1
    )
    .parse()
    .expect("parse");
    assert!(matches!(
        db.changes(FeedStart::After(other)),
        Err(Error::ChangesLost { .. })
    ));
    // A position ahead of the store.
    let ahead: Position = "99:00000000".parse().expect("parse");
    match db.changes(FeedStart::After(ahead)) {
        Err(Error::ChangesLost { reason, .. }) => assert!(reason.contains("newest"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The largest position there is (found by the fuzzer: it overflowed).
    let last: Position = "18446744073709551615:00000000".parse().expect("parse");
    assert!(matches!(
        db.changes(FeedStart::After(last)),
        Err(Error::ChangesLost { .. })
    ));
    // The real one resumes.
    db.put("c", "3").expect("put");
    let c = db
        .changes(FeedStart::After(real))
        .expect("feed")
        .try_next()
        .expect("read")
        .expect("change");
    assert_eq!(c.key(), Some(&b"c"[..]));
}

#[test]
fn a_position_inside_a_batch_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.write_batch(Batch::new().put("a", "1").put("b", "2"))
        .expect("batch");
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    let begin = feed.try_next().expect("read").expect("begin");
    let op = feed.try_next().expect("read").expect("op");
    assert_eq!(feed.resume_position(), Position::START, "mid-batch");
    for p in [begin.position(), op.position()] {
        assert!(matches!(
            db.changes(FeedStart::After(p)),
            Err(Error::InvalidArgument(_))
        ));
    }
    feed.try_next().expect("read");
    let end = feed.try_next().expect("read").expect("end");
    assert!(matches!(end.kind, ChangeKind::BatchEnd { ops: 2 }));
    assert_eq!(feed.resume_position(), end.position());
    assert!(db.changes(FeedStart::After(end.position())).is_ok());
}

#[test]
fn positions_print_and_parse() {
    for bad in [
        "",
        "1",
        "x:00000000",
        "1:0000000",
        "1:0000000g",
        "-1:00000000",
    ] {
        assert!(
            matches!(bad.parse::<Position>(), Err(Error::InvalidArgument(_))),
            "{bad:?}"
        );
    }
    let p: Position = "18446744073709551615:ffffffff".parse().expect("parse");
    assert_eq!(p.seq(), u64::MAX);
    assert_eq!(p.to_string(), "18446744073709551615:ffffffff");
}

/// A writer thread and a consumer in the same process: the consumer keeps
/// up through segment rolls and ends equal.
#[test]
fn a_consumer_follows_a_concurrent_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = options(&clock).open(dir.path()).expect("open");
    let mut feed = db.changes(FeedStart::Now).expect("feed");
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut rng = XorShift::new(7);
            for _ in 0..3000 {
                write(&db, &mut rng);
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut consumer = Consumer::new();
    loop {
        let finished = done.load(Ordering::SeqCst);
        while let Some(c) = feed.next_timeout(Duration::from_millis(50)).expect("feed") {
            consumer.take(&c);
        }
        if finished {
            break;
        }
    }
    writer.join().expect("writer");
    consumer.drain(&mut feed).expect("drain");
    check_equal(&consumer, &db, clock.now_unix_ms(), 7, 0);
    assert_eq!(feed.lag().expect("lag").seqs, 0);
}

/// A feed on a snapshot handle follows the files of a store another
/// handle writes (as another process would), through rolls.
#[test]
fn a_snapshot_handle_follows_the_files_of_a_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = options(&clock).open(dir.path()).expect("open");
    let mut rng = XorShift::new(11);
    for _ in 0..200 {
        write(&db, &mut rng);
    }
    let snap = Options::new()
        .snapshot(true)
        .clock(clock.clone())
        .open(dir.path())
        .expect("snapshot");
    let (view, mut feed) = snap.snapshot_then_changes().expect("snapshot then changes");
    let mut consumer = Consumer::new();
    consumer.copy = store_contents(&view);
    consumer.last_seq = feed.resume_position().seq();
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut rng = XorShift::new(12);
            for _ in 0..1500 {
                write(&db, &mut rng);
            }
        })
    };
    writer.join().expect("writer");
    // Everything written is in the files; the follower catches up.
    let newest = db
        .changes(FeedStart::Now)
        .expect("feed")
        .resume_position()
        .seq();
    while consumer.last_seq < newest {
        match feed.next_timeout(Duration::from_secs(5)).expect("feed") {
            Some(c) => consumer.take(&c),
            None => panic!("stuck at {} of {newest}", consumer.last_seq),
        }
    }
    assert_eq!(feed.lag().expect("lag").seqs, 0);
    check_equal(&consumer, &db, clock.now_unix_ms(), 12, 0);
}

#[test]
fn a_feed_ends_when_the_store_closes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    let mut feed = db.changes(FeedStart::Now).expect("feed");
    db.put("a", "1").expect("put");
    let closer = {
        let db = db.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            db.close().expect("close");
        })
    };
    assert!(feed.next().expect("the put").is_ok());
    assert!(feed.next().is_none(), "the iterator ends at close");
    closer.join().expect("closer");
}

#[test]
fn watch_sees_only_its_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.put("session/old", "x").expect("put");
    let mut w = db.watch("session/").expect("watch");
    db.put("user/1", "a").expect("put");
    db.write_batch(Batch::new().put("session/1", "s").put("user/2", "b"))
        .expect("batch");
    db.delete("session/old").expect("delete");
    let a = w
        .next_timeout(Duration::from_secs(5))
        .expect("w")
        .expect("c");
    let b = w
        .next_timeout(Duration::from_secs(5))
        .expect("w")
        .expect("c");
    assert_eq!(a.key(), Some(&b"session/1"[..]));
    assert_eq!(
        b.kind,
        ChangeKind::Delete {
            key: b"session/old".to_vec()
        }
    );
    assert!(w.next_timeout(Duration::ZERO).expect("w").is_none());
}

/// A crash that cut a batch which never committed leaves no hole in the
/// sequence numbers: the writer goes on right after the last committed
/// change, so a feed reads across the cut without `ChangesLost`.
/// (Before, recovery counted the cut batch's numbers and the writer
/// skipped them.)
#[test]
fn a_batch_cut_by_a_crash_leaves_no_hole() {
    use common::format::{push_record, salt_for, segment_header, Record};
    let dir = tempfile::tempdir().expect("tempdir");
    let salt = salt_for(1);
    let mut seg = segment_header(1, salt, 0).to_vec();
    push_record(&mut seg, salt, &Record::put(1, b"a", b"1"));
    push_record(&mut seg, salt, &Record::put(2, b"b", b"2"));
    push_record(&mut seg, salt, &Record::batch_begin(3, 2));
    push_record(&mut seg, salt, &Record::put(4, b"c", b"3").in_batch());
    std::fs::write(common::format::seg_path(dir.path(), 1), &seg).expect("write");
    let db = Db::open(dir.path()).expect("open");
    assert_eq!(db.get("c").expect("get"), None, "the batch never committed");
    db.put("d", "4").expect("put");
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    let mut seqs = Vec::new();
    while let Some(c) = feed.try_next().expect("no hole") {
        seqs.push(c.seq);
    }
    assert_eq!(seqs, vec![1, 2, 3]);
}

/// Found by the `open_dir` fuzz target: a put with sequence number 0
/// (which no writer makes) was handed out as a change numbered 0. It is
/// damage: the feed says so instead.
#[test]
fn a_change_numbered_zero_is_corruption() {
    use common::format::{push_record, salt_for, segment_header, Record};
    let dir = tempfile::tempdir().expect("tempdir");
    let salt = salt_for(1);
    let mut seg = segment_header(1, salt, 0).to_vec();
    push_record(&mut seg, salt, &Record::put(0, b"a", b"1"));
    std::fs::write(common::format::seg_path(dir.path(), 1), &seg).expect("write");
    let db = Options::new()
        .read_only(true)
        .open(dir.path())
        .expect("open");
    let mut feed = db.changes(FeedStart::Oldest).expect("feed");
    match feed.try_next() {
        Err(Error::Corruption { offset, reason, .. }) => {
            assert_eq!(offset, 32);
            assert!(reason.contains("sequence number 0"), "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}

/// Seen by `cairn follow` once: a feed on a snapshot handle, caught up at
/// the end of a sealed segment, moved on into the next one and found a
/// batch not yet whole there; going back to wait for it reopened the
/// sealed segment by name, which compaction had deleted meanwhile, and
/// the feed failed with a spurious `ChangesLost`. It now goes back to
/// the batch's begin record in the segment it reads.
#[test]
fn waiting_for_a_batch_does_not_reopen_a_segment_compaction_deleted() {
    use common::format::{push_record, salt_for, seg_path, segment_header, Record};
    let dir = tempfile::tempdir().expect("tempdir");
    let (s1, s2) = (salt_for(1), salt_for(2));
    let mut seg1 = segment_header(1, s1, 0).to_vec();
    push_record(&mut seg1, s1, &Record::put(1, b"a", b"1"));
    std::fs::write(seg_path(dir.path(), 1), &seg1).expect("write");
    let mut seg2 = segment_header(2, s2, 0).to_vec();
    push_record(&mut seg2, s2, &Record::batch_begin(2, 1));
    push_record(&mut seg2, s2, &Record::put(3, b"b", b"2").in_batch());
    std::fs::write(seg_path(dir.path(), 2), &seg2).expect("write");

    let db = Options::new()
        .snapshot(true)
        .open(dir.path())
        .expect("open");
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    assert_eq!(feed.try_next().expect("put").map(|c| c.seq), Some(1));
    assert_eq!(feed.try_next().expect("the batch is not whole"), None);
    std::fs::remove_file(seg_path(dir.path(), 1)).expect("compaction deletes it");
    assert_eq!(feed.try_next().expect("still waiting, no error"), None);
    push_record(&mut seg2, s2, &Record::batch_commit(4, 2, 1));
    std::fs::write(seg_path(dir.path(), 2), &seg2).expect("write");
    let seqs: Vec<u64> = (0..3)
        .map(|_| feed.try_next().expect("read").expect("change").seq)
        .collect();
    assert_eq!(seqs, vec![2, 3, 4]);
}

/// `expire`/`persist` come as expiry changes, and a key whose TTL passed
/// comes as an expiration once the sweep removes it.
#[test]
fn expiry_changes_and_expirations_are_their_own_kinds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let db = options(&clock).open(dir.path()).expect("open");
    let mut feed = db.changes(FeedStart::Now).expect("feed");
    db.put("k", "v").expect("put");
    db.expire("k", Duration::from_secs(10)).expect("expire");
    db.persist("k").expect("persist");
    db.put_with_ttl("t", "x", Duration::from_secs(5))
        .expect("put");
    clock.advance(Duration::from_secs(6));
    assert_eq!(db.get("t").expect("get"), None, "invisible at once");
    assert_eq!(db.sweep_expired(), 1);
    let kinds: Vec<ChangeKind> = (0..5)
        .map(|_| feed.try_next().expect("read").expect("change").kind)
        .collect();
    assert_eq!(
        kinds[1],
        ChangeKind::ExpiryChanged {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expires_at_ms: Some(START_MS + 10_000)
        }
    );
    assert_eq!(
        kinds[2],
        ChangeKind::ExpiryChanged {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            expires_at_ms: None
        }
    );
    assert_eq!(kinds[4], ChangeKind::Expired { key: b"t".to_vec() });
    assert_eq!(feed.try_next().expect("read"), None);
}

/// Found by review: compaction dropped the store's newest records (a
/// delete and the put it deleted, with an empty active segment), the
/// reopened writer numbered new changes from there again, and a feed
/// resuming before the delete read the new put as the change after its
/// position: the delete was skipped silently. Compaction now keeps the
/// newest record of its inputs (as a tombstone), so numbers keep growing
/// and the resume fails with `ChangesLost`; `snapshot_then_changes` works
/// at once (it failed until the next write).
#[test]
fn compaction_never_lets_sequence_numbers_be_handed_out_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.put("k", "1").expect("put");
    db.put("a", "2").expect("put");
    let mut feed = db.changes(FeedStart::After(Position::START)).expect("feed");
    while feed.try_next().expect("read").is_some() {}
    let saved = feed.resume_position();
    assert_eq!(saved.seq(), 2);
    db.delete("k").expect("delete");
    db.seal_active_segment().expect("seal");
    db.compact().expect("compact");
    let (snapshot, _) = db.snapshot_then_changes().expect("snapshot then changes");
    assert_eq!(snapshot.get("k").expect("get"), None);
    drop((snapshot, feed));
    db.close().expect("close");
    let db = Db::open(dir.path()).expect("reopen");
    db.put("b", "3").expect("put");
    match db.changes(FeedStart::After(saved)) {
        Err(Error::ChangesLost { .. }) => {}
        Ok(mut f) => panic!(
            "resumed without the delete; next change: {:?}",
            f.try_next()
        ),
        Err(e) => panic!("{e}"),
    }
    let newest = db.changes(FeedStart::Now).expect("feed").resume_position();
    assert_eq!(
        newest.seq(),
        4,
        "the put after the reopen is change 4, not 3"
    );
}

/// Found by review: `FeedStart::Now` (and `lag`) on a feed following the
/// files of another process counted a batch still being written: the
/// feed started inside it and then failed on its end, and `lag` never
/// came back to 0 (so `cairn follow --once` never ended).
#[test]
fn now_and_lag_stop_before_a_batch_not_yet_whole() {
    use common::format::{push_record, salt_for, seg_path, segment_header, Record};
    let dir = tempfile::tempdir().expect("tempdir");
    let salt = salt_for(1);
    let mut seg = segment_header(1, salt, 0).to_vec();
    push_record(&mut seg, salt, &Record::put(1, b"a", b"1"));
    push_record(&mut seg, salt, &Record::batch_begin(2, 1));
    push_record(&mut seg, salt, &Record::put(3, b"b", b"2").in_batch());
    std::fs::write(seg_path(dir.path(), 1), &seg).expect("write");
    let db = Options::new()
        .snapshot(true)
        .open(dir.path())
        .expect("open");

    let mut from_start = db.changes(FeedStart::After(Position::START)).expect("feed");
    assert_eq!(from_start.try_next().expect("put").map(|c| c.seq), Some(1));
    assert_eq!(from_start.try_next().expect("waits"), None);
    assert_eq!(
        from_start.lag().expect("lag").seqs,
        0,
        "the batch is not whole"
    );

    let mut now = db.changes(FeedStart::Now).expect("feed");
    assert_eq!(now.resume_position().seq(), 1, "before the batch");
    push_record(&mut seg, salt, &Record::batch_commit(4, 2, 1));
    std::fs::write(seg_path(dir.path(), 1), &seg).expect("write");
    let kinds: Vec<ChangeKind> = (0..3)
        .map(|_| now.try_next().expect("read").expect("change").kind)
        .collect();
    assert_eq!(kinds[0], ChangeKind::BatchBegin { ops: 1 });
    assert_eq!(kinds[2], ChangeKind::BatchEnd { ops: 1 });
}

/// Found by review: a change was published to feeds before the index
/// held it, so a consumer reading the key back could see the value before.
#[test]
fn a_consumer_reading_a_changed_key_back_sees_the_change() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(cairn::SyncPolicy::Never)
        .open(dir.path())
        .expect("open");
    db.put("k", 0u64.to_be_bytes()).expect("put");
    let mut feed = db.changes(FeedStart::Now).expect("feed");
    let writer = {
        let db = db.clone();
        std::thread::spawn(move || {
            for i in 1..=20_000u64 {
                db.put("k", i.to_be_bytes()).expect("put");
            }
        })
    };
    let mut seen = 0;
    while seen < 20_000 {
        let Some(c) = feed.next_timeout(Duration::from_secs(10)).expect("feed") else {
            panic!("stuck at {seen}");
        };
        if let ChangeKind::Put { value, .. } = c.kind {
            let announced = u64::from_be_bytes(value.try_into().expect("8 bytes"));
            let read = db.get("k").expect("get").expect("present");
            let read = u64::from_be_bytes(read.try_into().expect("8 bytes"));
            assert!(
                read >= announced,
                "read {read} after the feed announced {announced}"
            );
            seen = announced;
        }
    }
    writer.join().expect("writer");
}

/// Found by review: `Watch::next_timeout` kept looking while changes
/// outside its prefix kept coming, far past its timeout.
#[test]
fn watch_keeps_its_timeout_under_other_traffic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(cairn::SyncPolicy::Never)
        .open(dir.path())
        .expect("open");
    let mut w = db.watch("session/").expect("watch");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                db.put(format!("other/{}", i % 1000), "x").expect("put");
                i += 1;
            }
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    let t = std::time::Instant::now();
    assert_eq!(
        w.next_timeout(Duration::from_millis(20)).expect("watch"),
        None
    );
    let took = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// The same when the store's newest change was a batch: the commit
/// record's number is not handed out again either.
#[test]
fn compaction_keeps_a_compacted_batch_commit_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open");
    db.put("k", "1").expect("put");
    db.write_batch(Batch::new().delete("k")).expect("batch"); // 2, 3, 4
    let end = db.changes(FeedStart::Now).expect("feed").resume_position();
    assert_eq!(end.seq(), 4);
    db.seal_active_segment().expect("seal");
    db.compact().expect("compact");
    db.close().expect("close");
    let db = Db::open(dir.path()).expect("reopen");
    db.put("b", "2").expect("put");
    let newest = db.changes(FeedStart::Now).expect("feed").resume_position();
    assert_eq!(newest.seq(), 5, "the commit's number 4 is not reused");
    // A consumer at the batch's end resumes with nothing missing.
    let mut feed = db.changes(FeedStart::After(end)).expect("resume");
    assert_eq!(feed.try_next().expect("read").map(|c| c.seq), Some(5));
}

/// Found by the second review: `FeedStart::Now` on files, when the newest
/// writer segment starts with a batch not yet whole, gave position 0.
#[test]
fn now_before_a_batch_at_a_segment_start() {
    use common::format::{push_record, salt_for, seg_path, segment_header, Record};
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path();
    let s1 = salt_for(1);
    let mut seg = segment_header(1, s1, 0).to_vec();
    push_record(&mut seg, s1, &Record::put(1, b"a", b"1"));
    std::fs::write(seg_path(dir, 1), &seg).expect("write");
    let s2 = salt_for(2);
    let mut seg2 = segment_header(2, s2, 0).to_vec();
    push_record(&mut seg2, s2, &Record::batch_begin(2, 1));
    push_record(&mut seg2, s2, &Record::put(3, b"b", b"2").in_batch());
    std::fs::write(seg_path(dir, 2), &seg2).expect("write");
    let db = Options::new().snapshot(true).open(dir).expect("open");
    let now = db.changes(FeedStart::Now).expect("feed");
    assert_eq!(
        now.resume_position().seq(),
        1,
        "Now lands before the open batch"
    );
}
