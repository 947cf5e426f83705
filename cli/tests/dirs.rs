//! The `cairn` binary and directories: ones that are not stores, relative
//! paths, a torn newest segment, a garbage segment file, and keyspaces in
//! `stats`, `dump` and `repair`.

use std::fs;
use std::path::Path;

mod common;
use common::*;

/// Flips a bit inside the third record of sealed segment 1.
fn damage_third_record(store: &Path) {
    let seg = store.join("0000000001.seg");
    let mut b = fs::read(&seg).expect("read");
    b[32 + 2 * (32 + 6 + 100) + 40] ^= 0x01;
    fs::write(&seg, &b).expect("write");
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn set_refuses_a_directory_that_is_not_a_store_and_keeps_its_files() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("d");
    fs::create_dir(&d).expect("mkdir");
    fs::write(d.join("report.tmp"), "draft").expect("write");
    let o = cairn(&["set", p(&d), "k", "v"]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("is not a cairn store"), "{err}");
    assert!(err.contains(p(&d)), "{err}");
    assert_eq!(names_in(&d), ["report.tmp"], "nothing created or removed");
    assert_eq!(fs::read(d.join("report.tmp")).expect("read"), b"draft");
}

#[test]
fn verify_says_a_directory_is_not_a_store() {
    let t = tempfile::tempdir().expect("tempdir");
    fs::write(t.path().join("README.md"), "# mine").expect("write");
    for dir in [t.path().to_path_buf(), t.path().join("missing")] {
        let o = cairn(&["verify", p(&dir)]);
        assert_eq!(code(&o), 1, "{}", stdout(&o));
        let err = stderr(&o);
        assert!(
            err.contains("not a cairn store") || err.contains("does not exist"),
            "{err}"
        );
        assert!(err.contains(p(&dir)), "{err}");
    }
    let o = cairn(&["verify", p(t.path())]);
    assert!(stderr(&o).contains("not a cairn store"), "{}", stderr(&o));
}

#[test]
fn repair_works_with_a_bare_relative_path() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("g");
    sealed_store(&store);
    damage_third_record(&store);
    let o = cairn_in(t.path(), &["repair", "g"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("rewrote 1 segments"), "{}", stdout(&o));
    let backups: Vec<String> = names_in(t.path())
        .into_iter()
        .filter(|n| n.starts_with("g.repair-backup-"))
        .collect();
    assert_eq!(backups.len(), 1, "{:?}", names_in(t.path()));
    assert_eq!(code(&cairn(&["verify", p(&store)])), 0);

    // `.` from inside the store: the backup goes next to it, not inside.
    damage_third_record(&store);
    let o = cairn_in(&store, &["repair", "."]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let backups = names_in(t.path())
        .into_iter()
        .filter(|n| n.starts_with("g.repair-backup-"))
        .count();
    assert_eq!(backups, 2, "{:?}", names_in(t.path()));
    assert!(
        !names_in(&store).iter().any(|n| n.contains("repair-backup")),
        "{:?}",
        names_in(&store)
    );
}

#[test]
fn verify_accepts_a_torn_newest_segment() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("db");
    sealed_store(&store);
    let ids = cairn::segment_ids(&store).expect("ids");
    let newest = cairn::segment_path(&store, *ids.last().expect("segments"));
    for bytes in [&b""[..], &b"CAIRNSEG\x01"[..]] {
        fs::write(&newest, bytes).expect("write");
        let o = cairn(&["verify", p(&store)]);
        assert_eq!(code(&o), 0, "{}", stdout(&o));
        assert!(stdout(&o).contains("torn-tail"), "{}", stdout(&o));
        assert!(stdout(&o).contains("torn creation"), "{}", stdout(&o));
        let o = cairn(&["repair", p(&store), "--dry-run"]);
        assert_eq!(code(&o), 0, "{}", stdout(&o));
        assert_eq!(stdout(&o).trim(), "nothing to repair");
        for cmd in ["stats", "dump", "scan"] {
            let o = cairn(&[cmd, p(&store)]);
            assert_eq!(code(&o), 0, "{cmd}: {}", stderr(&o));
        }
    }
}

#[test]
fn repair_names_a_garbage_segment_and_says_to_move_it_aside() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("db");
    sealed_store(&store);
    let garbage = store.join("0000000099.seg");
    fs::write(&garbage, "not a segment at all\n".repeat(20)).expect("write");
    let before: Vec<(String, Vec<u8>)> = names_in(&store)
        .into_iter()
        .map(|n| (n.clone(), fs::read(store.join(&n)).expect("read")))
        .collect();
    let o = cairn(&["repair", p(&store)]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    let text = stdout(&o);
    assert!(!text.contains("nothing to repair"), "{text}");
    assert!(text.contains(p(&garbage)), "{text}");
    assert!(
        text.contains("move the file out of the store directory"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert!(!text.contains("drop:"), "{text}");
    let after: Vec<(String, Vec<u8>)> = names_in(&store)
        .into_iter()
        .map(|n| (n.clone(), fs::read(store.join(&n)).expect("read")))
        .collect();
    assert!(before == after, "repair changed files");
    assert_eq!(names_in(t.path()), ["db"], "no backup was made");
    // Doing as it says makes the store whole.
    fs::rename(&garbage, t.path().join("garbage.seg")).expect("move");
    assert_eq!(code(&cairn(&["verify", p(&store)])), 0);
    assert_eq!(
        stdout(&cairn(&["repair", p(&store)])).trim(),
        "nothing to repair"
    );
}

/// A store with 3 keys in the default keyspace, 2 in `cache` and 5 in
/// `sessions`.
fn store_with_keyspaces(dir: &Path) {
    let db = cairn::Options::new()
        .max_segment_bytes(4096)
        .auto_compact(false)
        .open(dir)
        .expect("open");
    for i in 0..3 {
        db.put(format!("d{i}"), "default").expect("put");
    }
    let cache = db.keyspace("cache").expect("keyspace");
    for i in 0..2 {
        cache.put(format!("c{i}"), "cached").expect("put");
    }
    let sessions = db.keyspace("sessions").expect("keyspace");
    for i in 0..50 {
        sessions
            .put(format!("s{}", i % 5), vec![b's'; 100])
            .expect("put");
    }
    db.close().expect("close");
}

#[test]
fn stats_shows_each_keyspace_and_the_totals() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    store_with_keyspaces(&d);
    let o = cairn(&["stats", p(&d)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let line = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no line for {name}: {text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(line("(default)")[2], "3", "{text}");
    assert_eq!(line("cache")[2], "2", "{text}");
    assert_eq!(line("sessions")[2], "5", "{text}");
    assert_eq!(line("total")[2], "10", "{text}");

    let o = cairn(&["stats", p(&d), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["live_keys"], 3);
    let ks = v["keyspaces"].as_array().expect("keyspaces");
    let names: Vec<_> = ks
        .iter()
        .map(|k| k["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["cache", "sessions"]);
    assert_eq!(ks[1]["live_keys"], 5);
    assert!(ks[1]["dead_bytes"].as_u64().expect("dead") > 0);
    assert_eq!(v["total"]["live_keys"], 10);
    let disk: u64 = ks
        .iter()
        .map(|k| k["disk_bytes"].as_u64().expect("disk"))
        .sum();
    assert_eq!(
        v["total"]["disk_bytes"].as_u64(),
        Some(disk + v["disk_bytes"].as_u64().expect("disk"))
    );

    // A store without keyspaces prints no keyspace table.
    let plain = t.path().join("plain");
    sealed_store(&plain);
    let o = cairn(&["stats", p(&plain)]);
    assert!(!stdout(&o).contains("keyspace"), "{}", stdout(&o));
}

#[test]
fn dump_prints_the_records_of_each_keyspace() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    store_with_keyspaces(&d);
    let o = cairn(&["dump", p(&d), "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut per_keyspace = std::collections::BTreeMap::<String, usize>::new();
    for l in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("json line");
        if v["kind"] == "put" {
            let k = v["keyspace"].as_str().unwrap_or("(default)").to_string();
            *per_keyspace.entry(k).or_default() += 1;
        }
    }
    let want: std::collections::BTreeMap<String, usize> = [
        ("(default)".to_string(), 3),
        ("cache".to_string(), 2),
        ("sessions".to_string(), 50),
    ]
    .into();
    assert_eq!(per_keyspace, want);
    let o = cairn(&["dump", p(&d)]);
    let text = stdout(&o);
    assert!(text.contains("keyspace sessions ("), "{text}");
    assert!(text.contains("keyspace cache ("), "{text}");
}

#[test]
fn repair_repairs_keyspaces_too() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    store_with_keyspaces(&d);
    let ks = d.join("keyspaces").join("sessions");
    let seg = ks.join("0000000001.seg");
    let mut b = fs::read(&seg).expect("read");
    // The third record of the keyspace's first (sealed) segment.
    b[32 + 2 * (32 + 2 + 100) + 40] ^= 0x01;
    fs::write(&seg, &b).expect("write");
    assert_eq!(code(&cairn(&["verify", p(&d)])), 3);
    let o = cairn(&["repair", p(&d), "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains(p(&seg)), "{}", stdout(&o));
    assert!(
        stdout(&o).contains("would rewrite 1 segments"),
        "{}",
        stdout(&o)
    );
    let o = cairn(&["repair", p(&d)]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains("keyspace sessions: rewrote 1 segments"),
        "{}",
        stdout(&o)
    );
    assert_eq!(code(&cairn(&["verify", p(&d)])), 0);
    assert_eq!(
        stdout(&cairn(&["repair", p(&d)])).trim(),
        "nothing to repair"
    );
}
