//! The warm-up after open (`Options::warm_up_after_open`): a background
//! thread reads every segment once, through the file layer, newest first,
//! stops promptly at close, skips segments compaction deleted meanwhile,
//! and runs for every kind of open that serves reads.
//!
//! The store runs on the real file system behind a file layer that sees
//! which reads the warm-up thread (named `cairn-warm-up`) makes, and can
//! make each of them slow, so that a close or a compaction lands while
//! the warm-up is still reading.

mod common;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::vfs::{LockGuard, RealFs, VFile};
use cairn::{Db, Options, SyncPolicy};
use common::sim::{OpenMode, Vfs};

/// The name cairn gives the warm-up thread.
const WARM_UP_THREAD: &str = "cairn-warm-up";

/// A read the warm-up thread made: file, offset, bytes read.
type Read = (PathBuf, u64, usize);

/// The real file system, watching the warm-up thread's reads.
#[derive(Debug, Default)]
struct Watched {
    /// Every read the warm-up thread made, in order.
    reads: Mutex<Vec<Read>>,
    /// How long each of its reads takes at least.
    delay: Duration,
    /// Reads of segment files made by a thread while it counts them (see
    /// [`counting_reads`]).
    counted: Mutex<Vec<PathBuf>>,
}

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's reads of segment files recorded in
/// `Watched::counted`.
fn counting_reads<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

impl Watched {
    fn slow(delay: Duration) -> Arc<Watched> {
        Arc::new(Watched {
            delay,
            ..Watched::default()
        })
    }

    fn reads(&self) -> Vec<Read> {
        self.reads.lock().expect("reads").clone()
    }

    fn bytes(&self) -> u64 {
        self.reads().iter().map(|r| r.2 as u64).sum()
    }
}

#[derive(Debug)]
struct WatchedFile {
    inner: Arc<dyn VFile>,
    path: PathBuf,
    fs: Arc<Watched>,
}

fn in_warm_up() -> bool {
    std::thread::current().name() == Some(WARM_UP_THREAD)
}

impl VFile for WatchedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        if !in_warm_up() {
            let segment = self.path.extension().is_some_and(|e| e == "seg");
            if segment && COUNTING.with(|c| c.get()) {
                self.fs
                    .counted
                    .lock()
                    .expect("counted")
                    .push(self.path.clone());
            }
            return self.inner.read_at(buf, offset);
        }
        std::thread::sleep(self.fs.delay);
        let n = self.inner.read_at(buf, offset)?;
        self.fs
            .reads
            .lock()
            .expect("reads")
            .push((self.path.clone(), offset, n));
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> std::io::Result<()> {
        self.inner.sync_data()
    }
    fn sync_all(&self) -> std::io::Result<()> {
        self.inner.sync_all()
    }
    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.inner.set_len(len)
    }
    fn len(&self) -> std::io::Result<u64> {
        self.inner.len()
    }
    fn as_std(&self) -> Option<&std::fs::File> {
        self.inner.as_std()
    }
    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

/// The file layer handed to cairn (a newtype, so that the watcher can be
/// shared with the test).
#[derive(Debug, Clone)]
struct WatchedFs(Arc<Watched>);

impl Vfs for WatchedFs {
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn create_dir_all(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> std::io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> std::io::Result<Arc<dyn VFile>> {
        let inner = RealFs.open(path, mode)?;
        Ok(Arc::new(WatchedFile {
            inner,
            path: path.to_path_buf(),
            fs: self.0.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> std::io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path, shared: bool) -> std::io::Result<Option<LockGuard>> {
        RealFs.try_lock(path, shared)
    }
    fn hard_link(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        RealFs.hard_link(from, to)
    }
}

fn watched(fs: &Arc<Watched>) -> Options {
    Options::new().vfs(Arc::new(WatchedFs(fs.clone())))
}

/// Writes `keys` keys of 100-byte values (each written `rounds` times) into
/// a store of `segment_bytes` segments, and closes it.
fn fill(dir: &Path, keys: u32, rounds: u32, segment_bytes: u64) {
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .max_segment_bytes(segment_bytes)
        .auto_compact(false)
        .warm_up_after_open(false)
        .open(dir)
        .expect("open to fill");
    for r in 0..rounds {
        for i in 0..keys {
            db.put(format!("key{i:08}"), format!("{r:04}{:096}", i))
                .expect("put");
        }
    }
    db.close().expect("close after fill");
}

/// The log as the handle holds it: (segment id, bytes of records and
/// header) per segment.
fn log_of(db: &Db) -> Vec<(u32, u64)> {
    db.segment_stats().iter().map(|s| (s.id, s.bytes)).collect()
}

/// Waits until the warm-up of `db` reports that it has finished.
fn wait_for_warm_up(db: &Db) -> cairn::Stats {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = db.stats();
        if !s.warm_up_time.is_zero() {
            return s;
        }
        assert!(
            Instant::now() < until,
            "the warm-up did not finish within 60 s: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn segment_id(path: &Path) -> u32 {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".seg"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the warm-up read {}, not a segment", path.display()))
}

/// Checks that `reads` cover every segment of `log` from its first byte to
/// its end, each once, front to back, the newest segment first, after the
/// reads that fill a writable handle's tail cache (the active segment's
/// newest bytes, newest first, from its end back to its records' start).
/// Returns how many bytes those took.
fn check_reads_cover(reads: &[Read], log: &[(u32, u64)]) -> u64 {
    let (tail, reads) = split_tail_fill(reads, log);
    let mut order: Vec<u32> = Vec::new();
    let mut next: std::collections::BTreeMap<u32, u64> = Default::default();
    for (path, offset, n) in reads {
        let id = segment_id(path);
        if order.last() != Some(&id) {
            assert!(
                !order.contains(&id),
                "segment {id} was read twice: {order:?}"
            );
            order.push(id);
        }
        let at = next.entry(id).or_insert(0);
        assert_eq!(*offset, *at, "segment {id} was not read front to back");
        *at += *n as u64;
    }
    let mut newest_first: Vec<u32> = log.iter().map(|(id, _)| *id).collect();
    newest_first.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order, newest_first, "segments read out of order");
    for (id, bytes) in log {
        assert_eq!(next.get(id), Some(bytes), "segment {id}: bytes read");
    }
    tail
}

/// The bytes of the leading reads that filled the tail cache, and the
/// reads after them. Those reads are of the newest segment, each ending
/// where the one before began, the first at the segment's end, the last at
/// its first record (32: the cache is larger than these segments).
fn split_tail_fill<'r>(reads: &'r [Read], log: &[(u32, u64)]) -> (u64, &'r [Read]) {
    let Some(&(active, len)) = log.iter().max_by_key(|(id, _)| *id) else {
        return (0, reads);
    };
    let mut end = len;
    let mut i = 0;
    while let Some((path, offset, n)) = reads.get(i) {
        if segment_id(path) != active || *offset == 0 || *offset + *n as u64 != end {
            break;
        }
        end = *offset;
        i += 1;
    }
    assert!(
        i == 0 || end == 32,
        "the tail cache's fill stopped at {end}, not at the first record"
    );
    (len - end, &reads[i..])
}

#[test]
fn the_warm_up_reads_every_segment_once_newest_first() {
    let t = tempfile::tempdir().expect("tempdir");
    fill(t.path(), 3000, 2, 64 << 10);
    let fs = Watched::slow(Duration::ZERO);
    let db = watched(&fs).open(t.path()).expect("open");
    let s = wait_for_warm_up(&db);
    let log = log_of(&db);
    assert!(
        log.len() > 5,
        "the store should have many segments: {log:?}"
    );
    let total: u64 = log.iter().map(|(_, b)| b).sum();
    assert_eq!(s.warm_up_bytes_read, total, "{s:?}");
    let tail = check_reads_cover(&fs.reads(), &log);
    assert!(tail > 0, "a writable open fills the tail cache");
    assert_eq!(fs.bytes(), total + tail);
    // The sealed segments are read to their end; the active one up to its
    // records, not into its preallocated zeros.
    for st in db.segment_stats() {
        let on_disk = std::fs::metadata(common::format::seg_path(t.path(), st.id))
            .expect("segment")
            .len();
        if st.active {
            assert!(st.bytes <= on_disk);
        } else {
            assert_eq!(st.bytes, on_disk, "segment {}", st.id);
        }
    }
    assert_eq!(
        db.get("key00000007").expect("get").as_deref(),
        Some(format!("0001{:096}", 7).as_bytes())
    );
    db.close().expect("close");
}

#[test]
fn close_right_after_open_does_not_wait_for_the_warm_up() {
    let t = tempfile::tempdir().expect("tempdir");
    // About 40 segments; at 100 ms a read the warm-up would take 4 s.
    fill(t.path(), 20_000, 1, 64 << 10);
    let fs = Watched::slow(Duration::from_millis(100));
    let db = watched(&fs).open(t.path()).expect("open");
    let total: u64 = log_of(&db).iter().map(|(_, b)| b).sum();
    let until = Instant::now() + Duration::from_secs(30);
    while db.stats().warm_up_bytes_read == 0 {
        assert!(Instant::now() < until, "the warm-up never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    db.close().expect("close");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "close took {took:?}");
    let s = db.stats();
    assert!(s.warm_up_bytes_read < total / 2, "{s:?} of {total}");
    assert!(s.warm_up_time.is_zero(), "a stopped warm-up has no time");
    // Dropping the last handle stops it as promptly.
    let fs = Watched::slow(Duration::from_millis(100));
    let db = watched(&fs).open(t.path()).expect("open");
    let started = Instant::now();
    drop(db);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "drop took {took:?}");
    let read = fs.bytes();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(fs.bytes(), read, "the warm-up went on after the drop");
}

#[test]
fn with_the_option_off_nothing_is_read() {
    let t = tempfile::tempdir().expect("tempdir");
    fill(t.path(), 2000, 1, 64 << 10);
    let fs = Watched::slow(Duration::ZERO);
    let db = watched(&fs)
        .warm_up_after_open(false)
        .open(t.path())
        .expect("open");
    std::thread::sleep(Duration::from_millis(300));
    let s = db.stats();
    assert_eq!(s.warm_up_bytes_read, 0, "{s:?}");
    assert!(s.warm_up_time.is_zero());
    assert!(fs.reads().is_empty());
    db.close().expect("close");
    // The same store with the option on is read (the check above can fail).
    let db = watched(&fs).open(t.path()).expect("open");
    assert!(wait_for_warm_up(&db).warm_up_bytes_read > 0);
}

#[test]
fn a_compaction_that_deletes_segments_during_the_warm_up_is_no_error() {
    let t = tempfile::tempdir().expect("tempdir");
    // Every key written 4 times: three quarters of the log is dead.
    fill(t.path(), 2000, 4, 64 << 10);
    // About 18 segments at 100 ms a read: the compaction, right after the
    // open, ends long before the warm-up reaches the oldest ones.
    let fs = Watched::slow(Duration::from_millis(100));
    let db = watched(&fs)
        .auto_compact(false)
        .open(t.path())
        .expect("open");
    let before = log_of(&db);
    let total: u64 = before.iter().map(|(_, b)| b).sum();
    let c = db.compact().expect("compact during the warm-up");
    assert!(c.segments_in > 5, "{c:?}");
    let s = wait_for_warm_up(&db);
    let after: Vec<u32> = log_of(&db).iter().map(|(id, _)| *id).collect();
    let deleted: Vec<u32> = before
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !after.contains(id))
        .collect();
    assert!(!deleted.is_empty());
    // It read less than the log it started with: the deleted segments it
    // had not reached yet were skipped, not read (and not an error).
    assert!(s.warm_up_bytes_read < total, "{s:?} of {total}");
    let read_ids: Vec<u32> = fs.reads().iter().map(|r| segment_id(&r.0)).collect();
    assert!(
        deleted.iter().any(|id| !read_ids.contains(id)),
        "no deleted segment was skipped"
    );
    for i in (0..2000).step_by(97) {
        assert_eq!(
            db.get(format!("key{i:08}")).expect("get"),
            Some(format!("0003{:096}", i).into_bytes())
        );
    }
    db.close().expect("close");
}

#[test]
fn read_only_snapshot_and_keyspace_opens_warm_up_too() {
    let t = tempfile::tempdir().expect("tempdir");
    fill(t.path(), 3000, 1, 64 << 10);
    {
        let ks = Options::new()
            .warm_up_after_open(false)
            .open(t.path())
            .expect("open");
        let k = ks.keyspace("sessions").expect("keyspace");
        for i in 0..1000 {
            k.put(format!("s{i}"), [7u8; 100]).expect("put");
        }
        ks.close().expect("close");
    }
    // Read-only.
    let fs = Watched::slow(Duration::ZERO);
    let db = watched(&fs).read_only(true).open(t.path()).expect("open");
    let s = wait_for_warm_up(&db);
    check_reads_cover(&fs.reads(), &log_of(&db));
    assert!(s.warm_up_bytes_read > 0);
    db.close().expect("close");
    // A snapshot, beside a writer that keeps writing.
    let writer = Options::new()
        .warm_up_after_open(false)
        .open(t.path())
        .expect("open");
    writer.put("after", "x").expect("put");
    let fs = Watched::slow(Duration::ZERO);
    let snap = watched(&fs)
        .snapshot(true)
        .open(t.path())
        .expect("snapshot");
    writer.put("later", "y").expect("put");
    let s = wait_for_warm_up(&snap);
    let log = log_of(&snap);
    assert_eq!(
        s.warm_up_bytes_read,
        log.iter().map(|(_, b)| b).sum::<u64>()
    );
    check_reads_cover(&fs.reads(), &log);
    assert_eq!(snap.get("after").expect("get"), Some(b"x".to_vec()));
    snap.close().expect("close");
    writer.close().expect("close");
    // A keyspace is a store of its own: it warms up its own segments.
    let fs = Watched::slow(Duration::ZERO);
    let db = watched(&fs).open(t.path()).expect("open");
    wait_for_warm_up(&db);
    let k = db.keyspace("sessions").expect("keyspace");
    let s = wait_for_warm_up(&k);
    let log = log_of(&k);
    assert_eq!(
        s.warm_up_bytes_read,
        log.iter().map(|(_, b)| b).sum::<u64>()
    );
    let in_keyspace = fs
        .reads()
        .iter()
        .filter(|r| r.0.starts_with(k.path()))
        .count();
    assert!(in_keyspace > 0);
    db.close().expect("close");
}

/// A writable open seals an active segment longer than the tail cache and
/// starts a new one, so that gets of keys written before the open read a
/// map, not the file (a `pread` each, for the part past the cache). One
/// that fits the cache stays active; a read-only open changes nothing.
#[test]
fn a_reopen_seals_an_active_segment_the_tail_cache_cannot_hold() {
    let t = tempfile::tempdir().expect("tempdir");
    // About 290 KB of records, all in the active segment.
    fill(t.path(), 2000, 1, 4 << 20);
    let fs = Watched::slow(Duration::ZERO);
    let small_cache = || {
        watched(&fs)
            .tail_cache_bytes(64 << 10)
            .warm_up_after_open(false)
    };
    let active = |db: &Db| {
        let s = db.segment_stats();
        let a = s.iter().find(|s| s.active).expect("an active segment");
        (a.id, a.bytes, s.len())
    };
    let check_all = |db: &Db| {
        for i in 0..2000 {
            let v = db.get(format!("key{i:08}")).expect("get");
            assert_eq!(v, Some(format!("0000{i:096}").into_bytes()), "key {i}");
        }
    };
    let ro = watched(&fs)
        .read_only(true)
        .open(t.path())
        .expect("read-only open");
    let ids: Vec<u32> = ro.segment_stats().iter().map(|s| s.id).collect();
    assert_eq!(ids, [1], "read-only: as it was");
    drop(ro);

    let db = small_cache().open(t.path()).expect("open");
    let (id, bytes, count) = active(&db);
    assert_eq!((id, count), (2, 2), "segment 1 sealed, 2 new");
    assert_eq!(bytes, 32, "the new segment holds only its header");
    counting_reads(|| check_all(&db));
    let reads = fs.counted.lock().expect("counted").clone();
    assert!(reads.is_empty(), "gets read the file: {reads:?}");
    db.put("after", "reopen").expect("put");
    db.close().expect("close");

    // The new active segment fits the cache: it stays active.
    let db = small_cache().open(t.path()).expect("second open");
    assert_eq!(active(&db).0, 2);
    check_all(&db);
    drop(db);
    // So does a large one under a larger cache.
    let db = watched(&fs)
        .tail_cache_bytes(1 << 20)
        .max_segment_bytes(4 << 20)
        .open(t.path())
        .expect("third open");
    assert_eq!(active(&db).0, 2);
    for i in 0..4000 {
        db.put(format!("more{i:08}"), [7u8; 100]).expect("put");
    }
    drop(db);
    let db = small_cache().open(t.path()).expect("fourth open");
    assert_eq!(active(&db).0, 3, "segment 2 outgrew the small cache");
    check_all(&db);
    assert_eq!(
        db.get("after").expect("get").as_deref(),
        Some(&b"reopen"[..])
    );
}

/// The crash tests' deterministic mode never warms up: a thread reading
/// at its own pace would move the operation a simulated crash falls on.
#[cfg(feature = "__test_hooks")]
#[test]
fn the_deterministic_test_mode_does_not_warm_up() {
    use common::TestOptions;
    let sim = common::sim::SimFs::new();
    let db = Options::new().on_sim(&sim).open("/sim/db").expect("open");
    for i in 0..100 {
        db.put(format!("k{i}"), "v").expect("put");
    }
    db.close().expect("close");
    let db = Options::new().on_sim(&sim).open("/sim/db").expect("open");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(db.stats().warm_up_bytes_read, 0);
    db.close().expect("close");
    // Without it, the same store on the same file system is read.
    let db = Options::new()
        .vfs(Arc::new(sim.clone()))
        .open("/sim/db")
        .expect("open");
    assert!(wait_for_warm_up(&db).warm_up_bytes_read > 0);
}
