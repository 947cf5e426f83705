//! Directories that are not (only) a store: open never deletes a file cairn
//! did not name, and never turns a directory holding other files into a
//! store unless asked to.

use std::fs;
use std::path::Path;

use cairn::{Db, Error, Options};

/// The names in `dir`, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn assert_not_a_store(r: Result<Db, Error>, dir: &Path, ctx: &str) {
    match r {
        Err(Error::NotAStore { path }) => {
            assert_eq!(path, dir, "{ctx}");
            let text = Error::NotAStore { path }.to_string();
            assert!(text.contains(&dir.display().to_string()), "{ctx}: {text}");
            assert!(text.contains("not a cairn store"), "{ctx}: {text}");
            assert!(text.contains("create_in_non_empty_dir"), "{ctx}: {text}");
        }
        Err(e) => panic!("{ctx}: expected NotAStore, got {e:?}"),
        Ok(_) => panic!("{ctx}: expected NotAStore, the open succeeded"),
    }
}

#[test]
fn a_directory_with_other_files_is_refused_and_left_untouched() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    fs::write(d.join("report.tmp"), "draft").expect("write");
    fs::create_dir(d.join(".git")).expect("mkdir");
    fs::write(d.join("README.md"), "# mine").expect("write");
    let before = entries(d);

    assert_not_a_store(Db::open(d), d, "read-write");
    assert_not_a_store(Options::new().read_only(true).open(d), d, "read-only");
    assert_not_a_store(Options::new().snapshot(true).open(d), d, "snapshot");
    // The option does not make a read-only open create anything.
    assert_not_a_store(
        Options::new()
            .create_in_non_empty_dir(true)
            .read_only(true)
            .open(d),
        d,
        "read-only with the option",
    );
    assert_eq!(entries(d), before, "nothing created, nothing removed");
    assert_eq!(fs::read(d.join("report.tmp")).expect("read"), b"draft");
}

#[test]
fn a_lock_file_among_other_files_is_not_a_store() {
    // A LevelDB directory also has a LOCK.
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    for f in ["LOCK", "CURRENT", "MANIFEST-000001", "000003.log"] {
        fs::write(d.join(f), "").expect("write");
    }
    assert_not_a_store(Db::open(d), d, "leveldb-like");
    assert_eq!(entries(d).len(), 4);
}

#[test]
fn the_option_creates_a_store_beside_other_files_and_keeps_them() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    fs::write(d.join("report.tmp"), "draft").expect("write");
    fs::write(d.join("notes.txt"), "mine").expect("write");
    let db = Options::new()
        .create_in_non_empty_dir(true)
        .open(d)
        .expect("open with the option");
    db.put("k", "v").expect("put");
    db.close().expect("close");
    // Now it is a store: it opens without the option, and the other files
    // are still there, unchanged.
    let db = Db::open(d).expect("reopen");
    assert_eq!(db.get("k").expect("get"), Some(b"v".to_vec()));
    drop(db);
    assert_eq!(fs::read(d.join("report.tmp")).expect("read"), b"draft");
    assert_eq!(fs::read(d.join("notes.txt")).expect("read"), b"mine");
    let report = cairn::verify(d, false).expect("verify");
    assert!(!report.has_corruption(), "{report:?}");
    let strays: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.kind == cairn::ProblemKind::StrayFile)
        .map(|p| p.path.clone())
        .collect();
    assert_eq!(strays, [d.join("notes.txt"), d.join("report.tmp")]);
}

#[test]
fn empty_missing_and_lock_only_directories_open() {
    let t = tempfile::tempdir().expect("tempdir");
    let empty = t.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    Db::open(&empty).expect("empty dir").close().expect("close");
    let missing = t.path().join("a/b");
    Db::open(&missing)
        .expect("missing dir")
        .close()
        .expect("close");
    // A crash between taking the lock and creating the first segment
    // leaves only LOCK.
    let lock_only = t.path().join("lock-only");
    fs::create_dir(&lock_only).expect("mkdir");
    fs::write(lock_only.join("LOCK"), "").expect("write");
    Db::open(&lock_only)
        .expect("lock only")
        .close()
        .expect("close");
    // A store holding a file of the user's still opens.
    fs::write(empty.join("notes.txt"), "mine").expect("write");
    Db::open(&empty).expect("store with a foreign file");
}

#[test]
fn open_removes_only_the_temporary_files_cairn_names() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let db = Db::open(d).expect("open");
    db.put("k", "v").expect("put");
    db.close().expect("close");
    let ours = [
        ".compact-0000000007.tmp",
        ".hint-Ab3xYz.tmp",
        ".hint-0123abcd.tmp",
        ".manifest-a1B2c3.tmp",
        ".repair-q9Q9q9q9.tmp",
    ];
    let theirs = [
        "report.tmp",
        "0000000001.seg.tmp",
        ".hint-x.tmp",
        ".compact-7.tmp",
        "data.tmp",
    ];
    for f in ours.iter().chain(&theirs) {
        fs::write(d.join(f), "x").expect("write");
    }
    let db = Db::open(d).expect("reopen");
    assert_eq!(db.recovery_report().removed_temp_files, ours.len() as u32);
    drop(db);
    let left = entries(d);
    for f in ours {
        assert!(
            !left.contains(&f.to_string()),
            "{f} should be removed: {left:?}"
        );
    }
    for f in theirs {
        assert!(left.contains(&f.to_string()), "{f} was removed: {left:?}");
    }
}

#[test]
fn a_keyspace_directory_with_other_files_is_refused() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path();
    let db = Db::open(d).expect("open");
    let ks = d.join(cairn::KEYSPACES_DIR).join("sessions");
    fs::create_dir_all(&ks).expect("mkdir");
    fs::write(ks.join("notes.txt"), "mine").expect("write");
    assert_not_a_store(db.keyspace("sessions"), &ks, "keyspace");
    assert_eq!(entries(&ks), ["notes.txt"]);
    db.keyspace("cache").expect("a new keyspace is created");
}
