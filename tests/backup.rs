//! Hot backups: `Db::backup_to` (in the process that holds the store) and
//! `cairn::backup` (lock-free, for a store another process holds).
//!
//! * Under a writer thread and automatic compaction with small segments,
//!   backups are taken again and again: each opens with strict recovery,
//!   verifies clean, and holds every write acknowledged before the backup
//!   was started, with a value the writer wrote for that key (the one
//!   acknowledged or a newer one).
//! * On the simulated file system, a crash at every file operation of a
//!   backup: the source reopens with all its data, and the destination is
//!   either complete (opens, holds everything) or recognisably incomplete
//!   (missing, empty, or refused with `Error::IncompleteBackup`).
//! * The destination rules: a non-empty destination is refused, files and
//!   directories are private, the active segment is copied without its
//!   preallocated zeros, and sealed segments are hard links.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn::{Db, Error, Options, RecoveryMode, SyncPolicy};

/// What the writer has had acknowledged: key → the newest version.
type Acked = Arc<Mutex<BTreeMap<String, u64>>>;

fn value_of(key: &str, version: u64) -> Vec<u8> {
    // A value that names its key and version, padded so that segments fill.
    let mut v = format!("{key}@{version}:").into_bytes();
    v.resize(v.len() + (version % 97) as usize + 20, b'x');
    v
}

fn version_in(key: &str, value: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(value).ok()?;
    let rest = s.strip_prefix(key)?.strip_prefix('@')?;
    let (num, pad) = rest.split_once(':')?;
    let version: u64 = num.parse().ok()?;
    (value == value_of(key, version).as_slice() && !pad.is_empty()).then_some(version)
}

/// Writes versions of 300 keys (in the store and in a keyspace) until told
/// to stop, noting each acknowledged write.
fn writer(db: Db, acked: Acked, stop: Arc<AtomicBool>) -> Result<u64, Error> {
    let ks = db.keyspace("sessions")?;
    let mut version = 0u64;
    while !stop.load(Ordering::Relaxed) {
        version += 1;
        let n = version % 300;
        let (target, key) = if n.is_multiple_of(5) {
            (&ks, format!("ks:{n}"))
        } else {
            (&db, format!("k{n}"))
        };
        target.put(&key, value_of(&key, version))?;
        acked.lock().expect("lock").insert(key, version);
    }
    Ok(version)
}

/// Checks one backup: verify finds nothing (but hints not written yet),
/// it opens strictly, and every key acknowledged before holds that version
/// or a newer one the writer wrote.
fn check_backup(dir: &Path, before: &BTreeMap<String, u64>, last: u64) {
    for store in [dir.to_path_buf(), dir.join("keyspaces").join("sessions")] {
        if !store.exists() {
            continue;
        }
        let report = cairn::verify(&store, false).expect("verify");
        let bad: Vec<_> = report
            .problems
            .iter()
            .filter(|p| p.kind != cairn::ProblemKind::HintMissing)
            .collect();
        assert!(
            bad.is_empty(),
            "verify of {} found {bad:?}",
            store.display()
        );
    }
    let copy = Options::new()
        .recovery_mode(RecoveryMode::Strict)
        .auto_compact(false)
        .open(dir)
        .expect("the backup opens strictly");
    assert!(copy.recovery_report().skipped.is_empty());
    assert_eq!(copy.keyspace_names().expect("names"), ["sessions"]);
    let ks = copy.keyspace("sessions").expect("keyspace");
    for (key, &version) in before {
        let target = if key.starts_with("ks:") { &ks } else { &copy };
        let got = target.get(key).expect("get");
        let got = got.unwrap_or_else(|| panic!("{key} (v{version}) is missing from the backup"));
        let v = version_in(key, &got)
            .unwrap_or_else(|| panic!("{key} holds a value never written to it"));
        assert!(
            v >= version && v <= last,
            "{key}: backup holds v{v}, acknowledged v{version} before the backup"
        );
    }
}

fn backups_under_load(policy: SyncPolicy, lock_free: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let db = Options::new()
        .sync_policy(policy)
        .max_segment_bytes(16 * 1024)
        .auto_compact(true)
        .open(&store)
        .expect("open");
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let w = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || writer(db, acked, stop))
    };
    // Compaction also on request, beside the automatic one.
    let c = {
        let (db, stop) = (db.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                db.compact().expect("compact");
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    let waiting = Instant::now();
    while acked.lock().expect("lock").len() < 200 && waiting.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut taken = Vec::new();
    let started = Instant::now();
    for i in 0..12 {
        let before = acked.lock().expect("lock").clone();
        let dest = dir.path().join(format!("backup-{i}"));
        let report = if lock_free {
            cairn::backup(&store, &dest).expect("lock-free backup")
        } else {
            db.backup_to(&dest).expect("backup")
        };
        assert!(report.files_copied >= 1, "{report:?}");
        assert_eq!(report.keyspaces, 1, "{report:?}");
        taken.push((dest, before, report));
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let last = w.join().expect("writer").expect("writes");
    c.join().expect("compactor");
    let stats = db.stats();
    drop(db);
    let linked: u64 = taken.iter().map(|t| t.2.files_linked).sum();
    let retries: u32 = taken.iter().map(|t| t.2.retries).sum();
    assert!(linked > 0, "no sealed segment was linked");
    for (dest, before, _) in &taken {
        assert!(before.len() >= 200, "the writer wrote too little");
        check_backup(dest, before, last);
    }
    eprintln!(
        "{policy:?} lock-free={lock_free}: 12 backups in {:?}, {last} writes, {linked} files linked, {retries} retries; {} segments at the end",
        started.elapsed(),
        stats.segments
    );
}

#[test]
fn backups_under_writes_and_compaction_hold_every_acknowledged_write() {
    backups_under_load(SyncPolicy::Always, false);
    backups_under_load(SyncPolicy::Never, false);
}

#[test]
fn lock_free_backups_under_writes_and_compaction_hold_every_acknowledged_write() {
    backups_under_load(SyncPolicy::Always, true);
    backups_under_load(SyncPolicy::EveryMillis(5), true);
}

#[test]
fn destination_must_be_new_or_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("store")).expect("open");
    db.put("k", "v").expect("put");
    let full = dir.path().join("full");
    std::fs::create_dir(&full).expect("mkdir");
    std::fs::write(full.join("notes.txt"), "mine").expect("write");
    let e = db.backup_to(&full).expect_err("non-empty destination");
    assert!(matches!(e, Error::BackupDestination { .. }), "{e}");
    assert!(e.to_string().contains("full"), "{e}");
    assert_eq!(
        std::fs::read(full.join("notes.txt")).expect("read"),
        b"mine"
    );
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").expect("write");
    let e = db.backup_to(&file).expect_err("a file");
    assert!(matches!(e, Error::BackupDestination { .. }), "{e}");
    let e = cairn::backup(dir.path().join("store"), &full).expect_err("lock-free too");
    assert!(matches!(e, Error::BackupDestination { .. }), "{e}");

    // Not inside the store it copies.
    let e = db
        .backup_to(dir.path().join("store").join("b"))
        .expect_err("inside the store");
    assert!(e.to_string().contains("inside the store"), "{e}");
    let e = db
        .backup_to(dir.path().join("store").join(".").join("b"))
        .expect_err("inside the store, by another name");
    assert!(e.to_string().contains("inside the store"), "{e}");
    let sub = dir.path().join("store").join("keyspaces");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let e = db
        .backup_to(sub.join("..").join("..").join("store").join("x"))
        .expect_err("inside the store, through ..");
    assert!(e.to_string().contains("inside the store"), "{e}");

    // An empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    db.backup_to(&empty).expect("empty destination");
    assert_eq!(
        Db::open(&empty).expect("open").get("k").expect("get"),
        Some(b"v".to_vec())
    );
}

#[cfg(unix)]
#[test]
fn backup_is_private_linked_and_without_preallocated_zeros() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let db = Options::new()
        .max_segment_bytes(8 * 1024)
        .auto_compact(false)
        .open(&store)
        .expect("open");
    for i in 0..400 {
        db.put(format!("k{i}"), [b'v'; 100]).expect("put");
    }
    let active = db
        .segment_stats()
        .into_iter()
        .find(|s| s.active)
        .expect("active");
    let active_path = cairn::segment_path(&store, active.id);
    let on_disk = std::fs::metadata(&active_path).expect("stat").len();
    let dest = dir.path().join("b");
    let report = db.backup_to(&dest).expect("backup");
    assert!(report.files_linked > 0, "{report:?}");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dest), 0o700);
    for e in std::fs::read_dir(&dest).expect("list") {
        let p = e.expect("entry").path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
    }
    assert!(!dest.join("BACKUP-INCOMPLETE").exists());
    // The active segment: exactly its records, not the zeros after them.
    let copied = std::fs::metadata(cairn::segment_path(&dest, active.id))
        .expect("stat")
        .len();
    assert_eq!(copied, active.bytes, "the copy ends at the last record");
    assert!(on_disk >= copied, "preallocated: {on_disk} >= {copied}");
    // Sealed segments share their inode with the store's.
    let sealed = db
        .segment_stats()
        .into_iter()
        .find(|s| !s.active)
        .expect("sealed");
    let ino = |p: PathBuf| std::fs::metadata(p).expect("stat").ino();
    assert_eq!(
        ino(cairn::segment_path(&store, sealed.id)),
        ino(cairn::segment_path(&dest, sealed.id))
    );
    // Writing to the copy never reaches the store (its active segment is
    // its own file), and the other way round.
    let copy = Db::open(&dest).expect("open copy");
    copy.put("k0", "changed in the copy").expect("put");
    copy.compact().expect("compact the copy");
    drop(copy);
    db.put("k1", "changed in the store").expect("put");
    drop(db);
    let (db, copy) = (
        Db::open(&store).expect("reopen"),
        Db::open(&dest).expect("reopen"),
    );
    assert_eq!(db.get("k0").expect("get"), Some(vec![b'v'; 100]));
    assert_eq!(copy.get("k1").expect("get"), Some(vec![b'v'; 100]));
    assert_eq!(
        copy.get("k0").expect("get"),
        Some(b"changed in the copy".to_vec())
    );
}

#[test]
fn a_snapshot_handle_backs_up_lock_free_beside_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let db = Options::new()
        .max_segment_bytes(4096)
        .open(&store)
        .expect("open");
    for i in 0..200 {
        db.put(format!("k{i}"), format!("v{i}")).expect("put");
    }
    let snap = Options::new()
        .snapshot(true)
        .open(&store)
        .expect("snapshot");
    let dest = dir.path().join("b");
    snap.backup_to(&dest)
        .expect("backup from a snapshot handle");
    db.put("later", "x").expect("put");
    drop((db, snap));
    let copy = Db::open(&dest).expect("open");
    assert_eq!(copy.len().expect("len"), 200);
    assert_eq!(copy.get("k199").expect("get"), Some(b"v199".to_vec()));
}

/// Across file systems (EXDEV) nothing can be linked: everything is
/// copied. Runs where `/dev/shm` is another file system than the temporary
/// directory (and says so when it cannot).
#[cfg(unix)]
#[test]
fn across_file_systems_every_file_is_copied() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let other = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipped: no /dev/shm ({e})");
            return;
        }
    };
    let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
    if dev(dir.path()) == dev(other.path()) {
        eprintln!("skipped: /dev/shm is on the same file system");
        return;
    }
    let db = Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(dir.path().join("store"))
        .expect("open");
    for i in 0..300 {
        db.put(format!("k{i}"), format!("v{i}")).expect("put");
    }
    let dest = other.path().join("b");
    let report = db.backup_to(&dest).expect("backup");
    assert_eq!(report.files_linked, 0, "{report:?}");
    assert!(report.files_copied > 2, "{report:?}");
    drop(db);
    let copy = Db::open(&dest).expect("open");
    assert_eq!(copy.len().expect("len"), 300);
}

#[test]
fn an_incomplete_backup_does_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path().join("store")).expect("open");
    db.put("k", "v").expect("put");
    let dest = dir.path().join("b");
    db.backup_to(&dest).expect("backup");
    // As a crash during the backup would leave it.
    std::fs::write(dest.join("BACKUP-INCOMPLETE"), "").expect("marker");
    let e = Db::open(&dest).expect_err("incomplete");
    assert!(matches!(e, Error::IncompleteBackup { .. }), "{e}");
    assert!(e.to_string().contains("incomplete backup"), "{e}");
    let e = cairn::verify(&dest, false).expect_err("verify says so too");
    assert!(matches!(e, Error::IncompleteBackup { .. }), "{e}");
    let e = db.backup_to(&dest).expect_err("not over an incomplete one");
    assert!(e.to_string().contains("incomplete backup"), "{e}");
}

/// A backup of a backup that was cut short is refused, naming it: the
/// copy would have no marker and look complete with data missing. So is a
/// backup of one of its keyspaces.
#[test]
fn a_backup_of_an_incomplete_backup_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let db = Options::new()
        .max_segment_bytes(4096)
        .open(&store)
        .expect("open");
    let ks = db.keyspace("ks").expect("keyspace");
    for i in 0..200 {
        db.put(format!("k{i}"), vec![b'x'; 100]).expect("put");
        ks.put(format!("k{i}"), "v").expect("put");
    }
    let b1 = dir.path().join("b1");
    db.backup_to(&b1).expect("backup");
    // As a crash part-way through the backup would leave it.
    std::fs::write(b1.join("BACKUP-INCOMPLETE"), "").expect("marker");
    std::fs::remove_file(b1.join("0000000001.seg")).expect("remove");
    let b2 = dir.path().join("b2");
    let e = cairn::backup(&b1, &b2).expect_err("an incomplete source");
    assert!(
        matches!(&e, Error::IncompleteBackup { path } if *path == b1),
        "{e}"
    );
    assert!(!b2.exists(), "nothing is written");
    let e = cairn::backup(b1.join("keyspaces").join("ks"), &b2).expect_err("its keyspace");
    assert!(
        matches!(&e, Error::IncompleteBackup { path } if *path == b1),
        "{e}"
    );
    assert!(!b2.exists(), "nothing is written");
}

/// Only the top directory of a backup holds its marker: a keyspace of a
/// backup cut short does not open or verify either, by any spelling of
/// its path.
#[test]
fn a_keyspace_of_an_incomplete_backup_does_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .max_segment_bytes(4096)
        .open(dir.path().join("store"))
        .expect("open");
    let ks = db.keyspace("ks").expect("keyspace");
    for i in 0..200 {
        ks.put(format!("k{i}"), vec![b'x'; 100]).expect("put");
    }
    let b = dir.path().join("b");
    db.backup_to(&b).expect("backup");
    let ks_dir = b.join("keyspaces").join("ks");
    assert_eq!(
        Db::open(&ks_dir).expect("complete").len().expect("len"),
        200
    );
    // A crash in the middle of the keyspace's copy: a sealed segment missing.
    std::fs::write(b.join("BACKUP-INCOMPLETE"), "").expect("marker");
    std::fs::remove_file(ks_dir.join("0000000001.seg")).expect("remove");
    let _ = std::fs::remove_file(ks_dir.join("0000000001.hint"));
    for path in [
        ks_dir.clone(),
        ks_dir.join("."),
        b.join("keyspaces").join("..").join("keyspaces").join("ks"),
    ] {
        let e = Db::open(&path).expect_err("a keyspace of an incomplete backup");
        assert!(
            matches!(e, Error::IncompleteBackup { .. }),
            "{}: {e}",
            path.display()
        );
        assert!(e.to_string().contains(&*b.to_string_lossy()), "{e}");
        let e = cairn::verify(&path, false).expect_err("verify says so too");
        assert!(matches!(e, Error::IncompleteBackup { .. }), "{e}");
    }
}

/// The source of a lock-free backup must be a store: a directory of other
/// files is refused (`NotAStore`, as open refuses it), a missing or empty
/// one with an error that names it (once). Nothing is written.
#[test]
fn a_backup_source_must_be_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("b");
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("mkdir");
    std::fs::write(home.join("notes.txt"), "mine").expect("write");
    let e = cairn::backup(&home, &dest).expect_err("not a store");
    assert!(
        matches!(&e, Error::NotAStore { path } if *path == home),
        "{e}"
    );
    assert!(!dest.exists());

    let missing = dir.path().join("missing");
    let e = cairn::backup(&missing, &dest).expect_err("missing");
    let msg = e.to_string();
    let shown = missing.display().to_string();
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == std::io::ErrorKind::NotFound),
        "{e:?}"
    );
    assert_eq!(msg.matches(&shown).count(), 1, "{msg}");
    assert!(!dest.exists());

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    let e = cairn::backup(&empty, &dest).expect_err("empty");
    assert!(
        e.to_string().contains("empty") && e.to_string().contains(&*empty.to_string_lossy()),
        "{e}"
    );
    assert!(!dest.exists());
}

/// A destination inside the store under a spelling that does not start
/// with the store's path, whose parent does not exist yet, is refused too.
#[test]
fn a_destination_inside_the_store_is_refused_before_its_parent_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let db = Db::open(&store).expect("open");
    db.put("k", "v").expect("put");
    std::fs::create_dir(dir.path().join("other")).expect("mkdir");
    let dest = dir
        .path()
        .join("other")
        .join("..")
        .join("store")
        .join("new")
        .join("b");
    let e = db.backup_to(&dest).expect_err("inside the store");
    assert!(e.to_string().contains("inside the store"), "{e}");
    let e = cairn::backup(&store, &dest).expect_err("inside the store, lock-free");
    assert!(e.to_string().contains("inside the store"), "{e}");
    assert!(!store.join("new").exists(), "nothing is written");
}

/// A compaction cut short after its manifest, with one of its inputs (the
/// one holding a tombstone) already gone: the lock-free copy leaves out
/// every input the manifest names, as the next open would, instead of
/// bringing the deleted key back from the input that is left.
#[cfg(feature = "__test_hooks")]
#[test]
fn lock_free_backup_honours_an_interrupted_compactions_manifest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("store");
    let opts = || {
        Options::new()
            .max_segment_bytes(4096)
            .auto_compact(false)
            .compaction_stop(Some(common::CompactionStop::AfterManifest))
    };
    let db = opts().open(&store).expect("open");
    let active = |db: &Db| {
        db.segment_stats()
            .into_iter()
            .find(|s| s.active)
            .expect("active")
            .id
    };
    let fill = |db: &Db, tag: &str| {
        let first = active(db);
        let mut i = 0;
        while active(db) == first {
            db.put(format!("{tag}{i}"), [b'x'; 100]).expect("put");
            i += 1;
        }
    };
    db.put("gone", "old value").expect("put");
    let with_put = active(&db);
    fill(&db, "a");
    assert!(db.delete("gone").expect("delete"));
    let with_tombstone = active(&db);
    assert_ne!(with_put, with_tombstone);
    fill(&db, "b");
    db.compact()
        .expect_err("compaction stops after its manifest");
    drop(db);
    assert!(store.join("COMPACTION").exists());
    std::fs::remove_file(cairn::segment_path(&store, with_tombstone)).expect("rm");
    let _ = std::fs::remove_file(cairn::hint_path(&store, with_tombstone));

    let dest = dir.path().join("b");
    cairn::backup(&store, &dest).expect("backup");
    assert!(!dest.join("COMPACTION").exists());
    assert!(!cairn::segment_path(&dest, with_put).exists());
    let copy = Db::open(&dest).expect("open the backup");
    assert_eq!(
        copy.get("gone").expect("get"),
        None,
        "a deleted key came back"
    );
    assert_eq!(copy.get("a0").expect("get"), Some(vec![b'x'; 100]));
    let source = Db::open(&store).expect("open the store");
    assert_eq!(source.get("gone").expect("get"), None);
}

#[cfg(feature = "__test_hooks")]
mod crash {
    use super::*;
    use common::sim::{Damage, SimFs, Vfs};
    use common::TestOptions;

    const SRC: &str = "/sim/db";
    const DEST: &str = "/sim/backup";

    fn opts(sim: &SimFs) -> Options {
        Options::new()
            .on_sim(sim)
            .auto_compact(false)
            .expiry_sweep_interval_ms(0)
            .max_segment_bytes(4096)
    }

    /// A store with sealed segments (some compacted, with hints), an
    /// active one with preallocated space, and a keyspace; what it holds.
    fn setup(sim: &SimFs) -> (Db, BTreeMap<String, Vec<u8>>) {
        let db = opts(sim).open(SRC).expect("open");
        let ks = db.keyspace("ks").expect("keyspace");
        let mut model = BTreeMap::new();
        for i in 0..120u32 {
            let key = format!("k{}", i % 40);
            let value = format!("{key}-{i}-{}", "x".repeat((i % 50) as usize));
            db.put(&key, &value).expect("put");
            model.insert(key, value.into_bytes());
            if i == 80 {
                db.compact().expect("compact");
            }
        }
        ks.put("kk", "in the keyspace").expect("put");
        model.insert("ks/kk".into(), b"in the keyspace".to_vec());
        (db, model)
    }

    fn contents(db: &Db) -> BTreeMap<String, Vec<u8>> {
        let mut m: BTreeMap<String, Vec<u8>> = db
            .scan_prefix("")
            .map(|r| {
                let (k, v) = r.expect("scan");
                (String::from_utf8(k).expect("utf8"), v)
            })
            .collect();
        let ks = db.keyspace("ks").expect("keyspace");
        if let Some(v) = ks.get("kk").expect("get") {
            m.insert("ks/kk".into(), v);
        }
        m
    }

    /// One case: a backup (through the writer's handle, or lock-free
    /// through a snapshot handle beside it) with a crash at its `n`th file
    /// operation, then a power loss under `damage`. Returns the outcome, and
    /// whether the backup ran to its end without reaching operation `n`.
    fn crash_case(n: u64, damage: Damage, lock_free: bool) -> (&'static str, bool) {
        let sim = SimFs::new();
        let (db, model) = setup(&sim);
        let snap = lock_free.then(|| opts(&sim).snapshot(true).open(SRC).expect("snapshot"));
        sim.crash_at(Some(sim.op_count() + n));
        let result = snap.as_ref().unwrap_or(&db).backup_to(DEST);
        let crashed = sim.is_down();
        drop((db, snap));
        sim.crash(damage, n);
        let case = format!("lock-free={lock_free}: crash at backup op {n} ({damage:?})");
        let db = opts(&sim)
            .open(SRC)
            .unwrap_or_else(|e| panic!("{case}: source: {e}"));
        assert!(contents(&db) == model, "{case}: the source lost data");
        drop(db);
        let listed = sim.list(Path::new(DEST)).unwrap_or_default();
        let outcome = if listed.is_empty() {
            "missing or empty"
        } else {
            match opts(&sim).open(DEST) {
                Err(Error::IncompleteBackup { .. }) => {
                    let ks = Path::new(DEST).join("keyspaces").join("ks");
                    if sim.exists(&ks) {
                        match opts(&sim).open(&ks) {
                            Err(Error::IncompleteBackup { .. }) => {}
                            Err(e) => panic!("{case}: its keyspace: {e}"),
                            Ok(_) => panic!("{case}: a keyspace of an incomplete backup opens"),
                        }
                    }
                    "refused as incomplete"
                }
                Err(e) => panic!("{case}: the backup neither opens nor is refused: {e}"),
                Ok(copy) => {
                    let got = contents(&copy);
                    assert!(
                        got == model,
                        "{case}: the backup holds {} keys, not the {}: {:?}",
                        got.len(),
                        model.len(),
                        got.keys().collect::<Vec<_>>()
                    );
                    "complete"
                }
            }
        };
        if crashed {
            assert!(result.is_err(), "{case}: a crashed backup reported success");
        } else {
            result.unwrap_or_else(|e| panic!("{case}: backup failed without a crash: {e}"));
            assert_eq!(outcome, "complete", "{case}");
        }
        (outcome, !crashed)
    }

    /// A backup into directories that do not exist yet makes each new
    /// directory's entry durable: every new directory's parent is fsynced.
    /// (SimFs keeps directories durable as soon as they exist, so the
    /// fsyncs are checked, not a power loss.)
    #[test]
    fn a_backup_into_new_nested_directories_fsyncs_each_parent() {
        let sim = SimFs::new();
        let (db, _) = setup(&sim);
        sim.set_trace(true);
        db.backup_to("/sim/x/y/z/backup").expect("backup");
        let trace = sim.trace();
        for parent in ["/sim", "/sim/x", "/sim/x/y", "/sim/x/y/z"] {
            let synced = format!("fsync dir {parent}");
            assert!(
                trace.iter().any(|t| t.ends_with(&synced)),
                "{parent} not fsynced: {trace:?}"
            );
        }
    }

    #[test]
    fn a_crash_at_every_backup_operation_leaves_the_source_whole_and_the_copy_complete_or_refused()
    {
        for lock_free in [false, true] {
            let mut outcomes = BTreeMap::<&str, u32>::new();
            let mut n = 0u64;
            'points: loop {
                for damage in Damage::ALL {
                    let (outcome, finished) = crash_case(n, damage, lock_free);
                    *outcomes.entry(outcome).or_default() += 1;
                    if finished {
                        break 'points;
                    }
                }
                n += 1;
            }
            eprintln!("lock-free={lock_free}: {n} crash points x 5 damage models: {outcomes:?}");
            assert!(n > 10, "the backup did only {n} file operations");
            assert!(outcomes.get("refused as incomplete").copied().unwrap_or(0) > 0);
            assert!(outcomes.get("complete").copied().unwrap_or(0) > 0);
        }
    }
}
