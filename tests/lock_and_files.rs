//! The directory lock (in this process and across processes), read-only
//! handles, file permissions, and what a closed handle does.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::{Batch, Db, Error, Options, SyncPolicy};

/// Set (to a store directory) when this test binary runs as the child of
/// `another_process_holding_the_lock_*`.
const CHILD_DIR_ENV: &str = "CAIRN_TEST_LOCK_CHILD_DIR";
/// "rw" or "ro": how the child opens the store.
const CHILD_MODE_ENV: &str = "CAIRN_TEST_LOCK_CHILD_MODE";
const CHILD_READY: &str = "CAIRN-CHILD-HOLDS-THE-LOCK";

/// Spawning a child process forks this one, and the forked child holds a
/// copy of every open file descriptor until it has exec'd, so it also holds
/// any `LOCK` another test has open at that moment. A test that releases a
/// lock and takes it again in the meantime would see `Error::Locked`. So
/// tests that spawn hold this exclusively, and all others share it.
static FORK_GUARD: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn no_fork_now() -> std::sync::RwLockReadGuard<'static, ()> {
    FORK_GUARD.read().unwrap_or_else(|e| e.into_inner())
}

fn forking() -> std::sync::RwLockWriteGuard<'static, ()> {
    FORK_GUARD.write().unwrap_or_else(|e| e.into_inner())
}

fn assert_locked(r: Result<Db, Error>, dir: &Path, ctx: &str) {
    match r {
        Err(Error::Locked { path }) => assert_eq!(path, dir.join("LOCK"), "{ctx}"),
        Err(e) => panic!("{ctx}: expected Locked, got {e:?}"),
        Ok(_) => panic!("{ctx}: expected Locked, the open succeeded"),
    }
}

fn read_only(dir: &Path) -> Result<Db, Error> {
    Options::new().read_only(true).open(dir)
}

#[test]
fn second_writer_in_the_same_process_is_locked_until_the_first_is_dropped() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    db.put("k", "v").expect("put");
    assert_locked(Db::open(t.path()), t.path(), "second writer");
    assert_locked(read_only(t.path()), t.path(), "reader beside a writer");

    // The lock lives as long as any clone.
    let clone = db.clone();
    drop(db);
    assert_locked(Db::open(t.path()), t.path(), "a clone is still alive");
    let from_thread = std::thread::spawn(move || {
        clone.put("from", "thread").expect("put");
        drop(clone);
    });
    from_thread.join().expect("thread");

    let db = Db::open(t.path()).expect("open after the last clone is dropped");
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(db.get("from").expect("get"), Some(b"thread".to_vec()));
}

#[test]
fn close_releases_the_lock_while_clones_live_on() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    let clone = db.clone();
    db.put("k", "v").expect("put");
    db.close().expect("close");
    let again = Db::open(t.path()).expect("open after close");
    assert_eq!(again.get("k").expect("get"), Some(b"v".to_vec()));
    again.put("k", "w").expect("put");
    // The old handles are closed, and dropping them must not disturb the
    // new one.
    assert!(matches!(clone.get("k"), Err(Error::Closed)));
    drop(clone);
    drop(db);
    again.put("k2", "x").expect("put");
    assert_locked(
        Db::open(t.path()),
        t.path(),
        "the new handle holds the lock",
    );
    drop(again);
    let db = Db::open(t.path()).expect("reopen");
    assert_eq!(db.get("k").expect("get"), Some(b"w".to_vec()));
    assert_eq!(db.get("k2").expect("get"), Some(b"x".to_vec()));
}

#[test]
fn read_only_handles_share_the_lock_but_exclude_writers() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(t.path()).expect("open");
        db.put("k", "v").expect("put");
        db.put("n", "1").expect("put");
    }
    let r1 = read_only(t.path()).expect("first reader");
    let r2 = read_only(t.path()).expect("second reader");
    assert_eq!(r1.get("k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(r2.get("k").expect("get"), Some(b"v".to_vec()));
    assert_eq!(r2.len().expect("len"), 2);
    assert_locked(Db::open(t.path()), t.path(), "writer beside two readers");

    let read_only_err = |r: Result<(), Error>, what: &str| {
        assert!(matches!(r, Err(Error::ReadOnly)), "{what}: {r:?}");
    };
    read_only_err(r1.put("k", "w"), "put");
    read_only_err(
        r1.put_with_ttl("k", "w", Duration::from_secs(5)),
        "put_with_ttl",
    );
    read_only_err(r1.delete("k").map(drop), "delete");
    read_only_err(r1.incr("n", 1).map(drop), "incr");
    read_only_err(r1.expire("k", Duration::from_secs(5)).map(drop), "expire");
    read_only_err(r1.persist("k").map(drop), "persist");
    read_only_err(
        r1.put_if_absent("new", "v", None).map(drop),
        "put_if_absent",
    );
    read_only_err(
        r1.compare_and_swap("k", Some(b"v"), Some(b"w")).map(drop),
        "compare_and_swap",
    );
    read_only_err(r1.write_batch(Batch::new().put("a", "b")), "write_batch");
    assert_eq!(r1.get("k").expect("get"), Some(b"v".to_vec()), "unchanged");

    drop(r1);
    assert_locked(Db::open(t.path()), t.path(), "writer beside one reader");
    r2.close().expect("close reader");
    let w = Db::open(t.path()).expect("writer once the readers are gone");
    w.put("k", "w").expect("put");
    assert_locked(read_only(t.path()), t.path(), "reader beside a writer");
}

#[test]
fn read_only_open_never_creates_a_store() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    let missing = t.path().join("missing");
    assert!(read_only(&missing).is_err());
    assert!(!missing.exists());
    assert!(Options::new()
        .create_if_missing(false)
        .open(&missing)
        .is_err());
    assert!(!missing.exists());
}

// ----- across processes ------------------------------------------------------

/// Not a test on its own: when the parent test below runs this binary with
/// `CAIRN_TEST_LOCK_CHILD_DIR` set, it opens the store there, says so on
/// stdout, and holds it until its stdin is closed.
#[test]
fn lock_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let read_only = std::env::var(CHILD_MODE_ENV).as_deref() == Ok("ro");
    let db = Options::new()
        .read_only(read_only)
        .open(&dir)
        .expect("child open");
    println!("\n{CHILD_READY}");
    std::io::stdout().flush().expect("flush");
    let mut rest = Vec::new();
    std::io::stdin().read_to_end(&mut rest).expect("stdin");
    drop(db);
}

/// Runs `lock_child_process` in a child process holding `dir` (read-only or
/// not) and calls `check` while it does.
fn with_child_holding(dir: &Path, mode: &str, check: impl FnOnce()) {
    let exe = std::env::current_exe().expect("current_exe");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "lock_child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_MODE_ENV, mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    // libtest prints the test's name on the same line, so look for the marker
    // anywhere; read on a thread so that a broken child cannot hang the test.
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains(CHILD_READY) {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        let status = child.wait().expect("wait");
        panic!("the child ({status}) never reported holding the lock");
    }
    check();
    drop(child.stdin.take()); // EOF: the child drops its handle and exits
    reader.join().expect("reader thread");
    let status = child.wait().expect("wait for child");
    assert!(status.success(), "child failed: {status}");
}

#[test]
fn another_process_holding_the_lock_excludes_this_one() {
    let _serial = forking();
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(t.path()).expect("open");
        db.put("k", "v").expect("put");
    }
    with_child_holding(t.path(), "rw", || {
        assert_locked(Db::open(t.path()), t.path(), "writer in another process");
        assert_locked(
            read_only(t.path()),
            t.path(),
            "reader vs writer in another process",
        );
    });
    let db = Db::open(t.path()).expect("open once the child has exited");
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn a_reader_in_another_process_shares_the_lock_with_readers_only() {
    let _serial = forking();
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = Db::open(t.path()).expect("open");
        db.put("k", "v").expect("put");
    }
    with_child_holding(t.path(), "ro", || {
        assert_locked(
            Db::open(t.path()),
            t.path(),
            "writer vs reader in another process",
        );
        let r = read_only(t.path()).expect("two readers in two processes");
        assert_eq!(r.get("k").expect("get"), Some(b"v".to_vec()));
    });
    Db::open(t.path()).expect("open once the child has exited");
}

// ----- permissions ---------------------------------------------------------------

#[cfg(unix)]
#[test]
fn created_directory_and_files_are_private() {
    let _serial = no_fork_now();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("nested").join("store");
    {
        let db = Options::new()
            .max_segment_bytes(4096)
            .open(&dir)
            .expect("open");
        for i in 0..200 {
            db.put(format!("key{i}"), [b'x'; 100]).expect("put");
        }
    }
    // A second open writes any hint the background thread had not written.
    drop(Db::open(&dir).expect("reopen"));
    assert_eq!(mode(&dir), 0o700, "store directory");
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for e in std::fs::read_dir(&dir).expect("read dir") {
        let p = e.expect("entry").path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let kind = match name.rsplit_once('.') {
            Some((_, ext)) => ext.to_string(),
            None => name.to_string(),
        };
        assert_eq!(mode(&p), 0o600, "{name}");
        *kinds.entry(kind).or_default() += 1;
    }
    assert_eq!(kinds.get("LOCK"), Some(&1), "{kinds:?}");
    assert!(kinds.get("seg").is_some_and(|&n| n > 2), "{kinds:?}");
    assert!(kinds.get("hint").is_some_and(|&n| n > 1), "{kinds:?}");
}

// ----- closed handles ------------------------------------------------------------

fn assert_closed<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    assert!(matches!(r, Err(Error::Closed)), "{what}: {r:?}");
}

fn assert_every_operation_is_closed(db: &Db) {
    assert_closed(db.get("k"), "get");
    assert_closed(db.contains_key("k"), "contains_key");
    assert_closed(db.ttl("k"), "ttl");
    assert_closed(db.len(), "len");
    assert_closed(db.is_empty(), "is_empty");
    assert_closed(db.put("k", "v"), "put");
    assert_closed(db.put("new", "v"), "put of a new key");
    assert_closed(
        db.put_with_ttl("k", "v", Duration::from_secs(1)),
        "put_with_ttl",
    );
    assert_closed(db.delete("k"), "delete");
    assert_closed(db.delete("absent"), "delete of an absent key");
    assert_closed(db.incr("n", 1), "incr");
    assert_closed(db.expire("k", Duration::from_secs(1)), "expire");
    assert_closed(db.persist("k"), "persist");
    assert_closed(db.put_if_absent("new", "v", None), "put_if_absent");
    assert_closed(
        db.compare_and_swap("k", Some(b"v"), Some(b"w")),
        "compare_and_swap",
    );
    assert_closed(db.write_batch(Batch::new().put("a", "b")), "write_batch");
    assert_closed(db.write_batch(Batch::new()), "empty write_batch");
    assert_closed(db.sync(), "sync");
    let mut scan = db.scan_prefix("");
    assert_closed(scan.next().expect("one item: the error"), "scan_prefix");
    assert!(scan.next().is_none());
}

#[test]
fn after_close_every_clone_returns_closed() {
    let _serial = no_fork_now();
    for policy in [
        SyncPolicy::Always,
        SyncPolicy::EveryMillis(5),
        SyncPolicy::Never,
    ] {
        let t = tempfile::tempdir().expect("tempdir");
        let db = Options::new()
            .sync_policy(policy)
            .open(t.path())
            .expect("open");
        db.put("k", "v").expect("put");
        db.put("n", "1").expect("put");
        let clones: Vec<Db> = (0..3).map(|_| db.clone()).collect();
        let in_thread = db.clone();
        clones[1].close().expect("close through a clone");
        assert_every_operation_is_closed(&db);
        for c in &clones {
            assert_every_operation_is_closed(c);
        }
        std::thread::spawn(move || assert_every_operation_is_closed(&in_thread))
            .join()
            .expect("thread");
        db.close().expect("a second close is fine");
        drop(clones);
        drop(db);
        let db = Db::open(t.path()).expect("reopen");
        assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()), "{policy:?}");
        assert_eq!(db.len().expect("len"), 2, "{policy:?}");
    }
}

#[test]
fn a_closed_read_only_handle_returns_closed() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    drop(Db::open(t.path()).expect("create"));
    let r = read_only(t.path()).expect("read-only");
    let other = r.clone();
    r.close().expect("close");
    assert_every_operation_is_closed(&other);
}

/// `Options::snapshot` opens without any lock while a writer appends,
/// seals (cutting off preallocated space) and compacts; every snapshot
/// opens and reads only values the writer wrote. (It used to fail now and
/// then: the open listed the directory and opened files by name later,
/// after compaction had deleted one or the writer had trimmed the active
/// segment; see the live-read test of the CLI for the same against a
/// writer process.)
#[test]
fn snapshots_open_beside_a_busy_writer() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let t = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .max_segment_bytes(4096)
        // A policy that syncs, so the writer preallocates and trims.
        .sync_policy(cairn::SyncPolicy::EveryMillis(1))
        .open(t.path())
        .expect("open");
    for i in 0..20 {
        db.put(format!("k{i}"), format!("k{i}=0")).expect("put");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let db = db.clone();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 1u64;
            while !stop.load(Ordering::Relaxed) {
                let i = n % 20;
                db.put(format!("k{i}"), format!("k{i}={n}")).expect("put");
                if n.is_multiple_of(500) {
                    db.compact().expect("compact");
                }
                n += 1;
            }
        })
    };
    for _ in 0..400 {
        let snap = Options::new()
            .snapshot(true)
            .open(t.path())
            .expect("a snapshot opens beside the writer");
        for i in 0..20 {
            let v = snap.get(format!("k{i}")).expect("get").expect("present");
            let v = String::from_utf8(v).expect("utf-8");
            assert!(v.starts_with(&format!("k{i}=")), "{v}");
        }
        assert!(snap.put("x", "y").is_err(), "a snapshot is read-only");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
}

/// The hint files in `dir` whose segment file is missing.
fn orphan_hints(dir: &Path) -> Vec<String> {
    let names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names
        .iter()
        .filter_map(|n| n.strip_suffix(".hint"))
        .filter(|stem| !names.contains(&format!("{stem}.seg")))
        .map(|stem| format!("{stem}.hint"))
        .collect()
}

#[test]
fn no_hint_outlives_its_segment() {
    // A segment sealed and compacted away at once: its hint, written by the
    // background thread meanwhile, must not stay behind with its keys.
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .auto_compact(false)
        .open(t.path())
        .expect("open");
    for round in 0..200 {
        db.put("k", format!("v{round}")).expect("put");
        db.put(format!("secret-{round}"), "x").expect("put");
        db.delete(format!("secret-{round}")).expect("delete");
        assert!(db.seal_active_segment().expect("seal"));
        db.compact().expect("compact");
    }
    db.close().expect("close");
    assert_eq!(orphan_hints(t.path()), Vec::<String>::new());
    let report = cairn::verify(t.path(), false).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn an_orphan_hint_is_reported_by_verify_and_removed_by_open() {
    let _serial = no_fork_now();
    let t = tempfile::tempdir().expect("tempdir");
    {
        let db = Options::new()
            .auto_compact(false)
            .open(t.path())
            .expect("open");
        db.put("k", "v").expect("put");
        assert!(db.seal_active_segment().expect("seal"));
        db.close().expect("close");
    }
    let hint = t.path().join("0000000001.hint");
    let orphan = t.path().join("0000000042.hint");
    std::fs::copy(&hint, &orphan).expect("copy the hint");
    let report = cairn::verify(t.path(), false).expect("verify");
    assert!(
        report.problems.iter().any(|p| p.path == orphan),
        "{:?}",
        report.problems
    );
    let db = Db::open(t.path()).expect("reopen");
    assert_eq!(db.recovery_report().removed_temp_files, 1);
    assert!(!orphan.exists());
    assert!(hint.exists());
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
    // A read-only open changes nothing: (re)create it and look.
    drop(db);
    std::fs::copy(&hint, &orphan).expect("copy the hint");
    drop(read_only(t.path()).expect("read-only open"));
    assert!(orphan.exists());
}

/// The file descriptors of this process open on files inside `dir`.
#[cfg(target_os = "linux")]
fn fds_inside(dir: &Path) -> usize {
    let dir = dir.canonicalize().expect("canonical dir");
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

/// A snapshot holds the files of its view (so a compaction deleting them
/// changes nothing for it) without holding a file descriptor per segment:
/// the segments below the active one are mapped.
#[cfg(target_os = "linux")]
#[test]
fn a_snapshot_reads_deleted_segments_and_holds_few_descriptors() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .max_segment_bytes(4096)
        .sync_policy(SyncPolicy::Never)
        .auto_compact(false)
        .open(t.path())
        .expect("open");
    let value = |i: u32, round: u32| format!("{i}:{round}:{}", "x".repeat(60));
    for i in 0..6000 {
        db.put(format!("k{i}"), value(i, 0)).expect("put");
    }
    let segments = cairn::segment_ids(t.path()).expect("ids").len();
    assert!(segments > 100, "{segments} segments");
    let before = fds_inside(t.path());
    let snap = Options::new()
        .snapshot(true)
        .open(t.path())
        .expect("snapshot");
    let held = fds_inside(t.path()) - before;
    assert!(
        held <= 2,
        "the snapshot holds {held} descriptors for {segments} segments"
    );
    // Every record the snapshot indexes goes dead and compaction deletes
    // the files.
    for i in 0..6000 {
        db.put(format!("k{i}"), value(i, 1)).expect("overwrite");
    }
    db.compact().expect("compact");
    assert!(
        !cairn::segment_path(t.path(), 1).exists(),
        "segment 1 deleted"
    );
    for i in (0..6000).step_by(7) {
        let got = snap
            .get(format!("k{i}"))
            .expect("get from a deleted segment");
        assert_eq!(got, Some(value(i, 0).into_bytes()));
    }
    let n = snap.scan_prefix("k").count();
    assert_eq!(n, 6000);
}
