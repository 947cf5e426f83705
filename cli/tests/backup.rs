//! `cairn backup`, run as the real binary: of a closed store (which it
//! leaves unchanged, byte for byte), and of a store that this test process
//! holds open while a thread keeps writing and compacting. Each copy passes
//! `cairn verify` and holds every write acknowledged before the command
//! started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;
use common::*;

/// `cairn verify` on the backup and on its keyspaces: exit 0.
fn verify_clean(dest: &Path) {
    let o = cairn(&["verify", p(dest)]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "verify {}: {}",
        dest.display(),
        text(&o)
    );
    let ks = dest.join("keyspaces");
    if let Ok(entries) = std::fs::read_dir(&ks) {
        for e in entries {
            let path = e.expect("entry").path();
            let o = cairn(&["verify", p(&path)]);
            assert_eq!(
                o.status.code(),
                Some(0),
                "verify {}: {}",
                path.display(),
                text(&o)
            );
        }
    }
}

#[test]
fn backup_of_a_closed_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("store");
    {
        let db = cairn::Options::new()
            .max_segment_bytes(4096)
            .open(&store)
            .expect("open");
        for i in 0..300 {
            db.put(format!("key{i:03}"), format!("value {i}"))
                .expect("put");
        }
        db.keyspace("sessions")
            .expect("ks")
            .put("s", "1")
            .expect("put");
    }
    let dest = t.path().join("backups").join("one");
    let o = cairn(&["backup", p(&store), p(&dest)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("backed up") && out.contains("1 keyspaces"),
        "{out}"
    );
    assert!(!out.contains("live"), "{out}");
    verify_clean(&dest);
    let copy = cairn::Db::open(&dest).expect("open backup");
    assert_eq!(copy.len().expect("len"), 300);
    assert_eq!(
        copy.get("key123").expect("get"),
        Some(b"value 123".to_vec())
    );
    let ks = copy.keyspace("sessions").expect("ks");
    assert_eq!(ks.get("s").expect("get"), Some(b"1".to_vec()));

    // The same destination again: refused, naming it, nothing changed.
    let o = cairn(&["backup", p(&store), p(&dest)]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not empty") && err.contains(p(&dest)), "{err}");
}

#[test]
fn live_backup_of_a_store_another_process_holds() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("store");
    let db = cairn::Options::new()
        .max_segment_bytes(8 * 1024)
        .auto_compact(true)
        .sync_policy(cairn::SyncPolicy::EveryMillis(5))
        .open(&store)
        .expect("open");
    let ks = db.keyspace("sessions").expect("ks");
    let acked: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, acked, stop) = (db.clone(), acked.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut v = 0u64;
            while !stop.load(Ordering::Relaxed) {
                v += 1;
                let key = format!("k{}", v % 500);
                let target = if v.is_multiple_of(7) { &ks } else { &db };
                let key = if v.is_multiple_of(7) {
                    format!("ks:{key}")
                } else {
                    key
                };
                target.put(&key, format!("{key}={v}")).expect("put");
                acked.lock().expect("lock").insert(key, v);
                if v.is_multiple_of(2000) {
                    db.compact().expect("compact");
                }
            }
            v
        })
    };
    while acked.lock().expect("lock").len() < 300 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut taken = Vec::new();
    for i in 0..5 {
        let before = acked.lock().expect("lock").clone();
        let dest = t.path().join(format!("backup-{i}"));
        let o = cairn(&["backup", p(&store), p(&dest)]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("backed up"), "{out}");
        taken.push((dest, before));
    }
    stop.store(true, Ordering::Relaxed);
    let last = writer.join().expect("writer");
    drop(db);
    for (dest, before) in &taken {
        verify_clean(dest);
        let copy = cairn::Db::open(dest).expect("open backup");
        let ks = copy.keyspace("sessions").expect("ks");
        for (key, &v) in before {
            let target = if key.starts_with("ks:") { &ks } else { &copy };
            let got = target
                .get(key)
                .expect("get")
                .unwrap_or_else(|| panic!("{key} missing"));
            let got = String::from_utf8(got).expect("utf8");
            let (k, n) = got.split_once('=').expect("a written value");
            let n: u64 = n.parse().expect("a version");
            assert!(
                k == key && n >= v && n <= last,
                "{key}: {got}, acknowledged v{v}"
            );
        }
    }
}

/// Every file under `dir` (relative path) with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let path = e.expect("entry").path();
            let name = path
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            if path.is_dir() {
                todo.push(path.clone());
                out.insert(format!("{name}/"), Vec::new());
            } else {
                out.insert(name, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

/// A backup only reads the store: no recovery runs on it (a stray temp
/// file stays), and no file changes, not even by a byte.
#[test]
fn backup_leaves_the_store_unchanged() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("s");
    let o = cairn(&["set", p(&store), "k", "v"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    std::fs::write(store.join(".hint-abcdef.tmp"), "stray").expect("write");
    let before = snapshot(&store);
    let dest = t.path().join("d");
    let o = cairn(&["backup", p(&store), p(&dest)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(store.join(".hint-abcdef.tmp").exists());
    assert!(snapshot(&store) == before, "the store changed");
    let copy = cairn::Db::open(&dest).expect("open backup");
    assert_eq!(copy.get("k").expect("get"), Some(b"v".to_vec()));
}
