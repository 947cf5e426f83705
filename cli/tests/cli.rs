//! Runs the real `cairn` binary: every command on a fresh directory, the
//! exit codes, an export/import round trip, errors, and locking.

use std::time::Duration;

mod common;
use common::*;

#[test]
fn every_command_on_a_fresh_directory() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    assert_eq!(
        code(&cairn(&[
            "set",
            d,
            "session:1",
            "{\"user\":42}",
            "--ttl",
            "30m"
        ])),
        0
    );
    assert_eq!(code(&cairn(&["set", d, "greeting", "hello"])), 0);
    let o = cairn(&["set", d, "greeting", "again", "--nx"]);
    assert_eq!(stdout(&o).trim(), "not set: the key exists");
    let o = cairn(&["get", d, "greeting"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "hello"));
    let o = cairn(&["get", d, "greeting", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["value"], "hello");
    assert_eq!(v["expires_at_ms"], serde_json::Value::Null);
    assert_eq!(stdout(&cairn(&["incr", d, "visits"])).trim(), "1");
    assert_eq!(stdout(&cairn(&["incr", d, "visits", "41"])).trim(), "42");
    assert_eq!(stdout(&cairn(&["incr", d, "visits", "-2"])).trim(), "40");
    let o = cairn(&["ttl", d, "session:1", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["exists"], true);
    assert!(v["ttl_ms"].as_u64().expect("ms") > 29 * 60 * 1000);
    assert_eq!(stdout(&cairn(&["ttl", d, "greeting"])).trim(), "no expiry");
    assert_eq!(code(&cairn(&["expire", d, "greeting", "1h"])), 0);
    assert!(stdout(&cairn(&["ttl", d, "greeting"]))
        .trim()
        .ends_with(" ms"));
    let o = cairn(&["scan", d, "", "--limit", "2"]);
    assert_eq!(stdout(&o).lines().count(), 2);
    let o = cairn(&["scan", d, "session:", "--json"]);
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).expect("json");
    assert_eq!(v["key"], "session:1");
    let o = cairn(&["stats", d]);
    assert_eq!(code(&o), 0);
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.starts_with("live keys") && l.ends_with(" 3")),
        "{}",
        stdout(&o)
    );
    // Every command closed the store cleanly: an index checkpoint of the
    // three keys, which an open would use.
    assert!(
        stdout(&o).lines().any(|l| l.starts_with("index checkpoint")
            && l.contains(", 3 keys;")
            && l.ends_with("an open now uses it")),
        "{}",
        stdout(&o)
    );
    let o = cairn(&["stats", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["live_keys"], 3);
    assert_eq!(v["index_checkpoint"]["keys"], 3, "{v}");
    assert_eq!(v["index_checkpoint"]["open_uses_it"], true, "{v}");
    assert_eq!(v["segments"][0]["active"], true);
    assert_eq!(v["segments"][0]["records"], 6, "{v}");
    assert_eq!(v["segments"][0]["min_seq"], 1);
    assert_eq!(stdout(&cairn(&["del", d, "greeting", "nope"])).trim(), "1");
    let o = cairn(&["compact", d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).starts_with("compacted"));
}

#[test]
fn exit_codes_and_one_line_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    assert_eq!(code(&cairn(&["set", d, "k", "v"])), 0);
    // 4: not found.
    let o = cairn(&["get", d, "missing"]);
    assert_eq!(code(&o), 4);
    assert_eq!(stderr(&o).lines().count(), 1);
    assert_eq!(code(&cairn(&["ttl", d, "missing"])), 4);
    assert_eq!(code(&cairn(&["expire", d, "missing", "1s"])), 4);
    // 2: bad usage, bad TTL strings.
    assert_eq!(code(&cairn(&["frobnicate", d])), 2);
    assert_eq!(code(&cairn(&["set", d, "k", "v", "--ttl", "3 parsecs"])), 2);
    assert_eq!(code(&cairn(&["set", d, "k", "v", "--ttl", "0s"])), 2);
    // 1: errors, one line, no panic or backtrace.
    for args in [
        vec!["get", "/nonexistent/cairn-dir", "k"],
        vec!["incr", d, "k"],
    ] {
        let o = cairn(&args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"));
    }
    // A directory that is not a store is refused by read commands and left
    // untouched.
    let empty = tempfile::tempdir().expect("tempdir");
    std::fs::write(empty.path().join("notes.txt"), "mine").expect("write");
    for cmd in ["get", "scan", "stats", "ttl", "export"] {
        let mut args = vec![cmd, p(empty.path())];
        if cmd == "get" || cmd == "ttl" {
            args.push("k");
        }
        let o = cairn(&args);
        assert_eq!(code(&o), 1, "{cmd}");
        assert!(
            stderr(&o).contains("not a cairn store"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    let names: Vec<_> = std::fs::read_dir(empty.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("notes.txt")]);
    // --version and --help with an example.
    assert_eq!(code(&cairn(&["--version"])), 0);
    for cmd in [
        "get", "scan", "ttl", "set", "del", "incr", "expire", "stats", "compact", "export",
        "import", "follow",
    ] {
        let o = cairn(&[cmd, "--help"]);
        assert!(
            stdout(&o).contains("Example:"),
            "{cmd} --help has an example"
        );
    }
}

#[test]
fn corruption_exits_3() {
    let t = tempfile::tempdir().expect("tempdir");
    sealed_store_keyed(t.path(), |i| format!("key{i}"));
    let seg = t.path().join("0000000001.seg");
    let _ = std::fs::remove_file(t.path().join("0000000001.hint"));
    let mut b = std::fs::read(&seg).expect("read");
    b[100] ^= 0x40;
    std::fs::write(&seg, b).expect("write");
    let o = cairn(&["stats", p(t.path())]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("0000000001.seg"), "{}", stderr(&o));
}

#[test]
fn export_import_round_trip_loses_nothing() {
    let src = tempfile::tempdir().expect("tempdir");
    let db = cairn::Options::new().open(src.path()).expect("open");
    db.put(b"\xff\x00binary", b"\x00\x01\x02").expect("put");
    db.put("empty value", "").expect("put");
    db.put("", "empty key").expect("put");
    db.put_with_ttl("session", "s", Duration::from_secs(3600))
        .expect("put");
    db.put("unicode ✓", "värde").expect("put");
    db.close().expect("close");
    drop(db);
    let o = cairn(&["export", p(src.path())]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let dst = tempfile::tempdir().expect("tempdir");
    let o = cairn_stdin(&["import", p(dst.path())], &o.stdout);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let db = cairn::Options::new().open(dst.path()).expect("open");
    assert_eq!(
        db.get(b"\xff\x00binary").expect("get"),
        Some(b"\x00\x01\x02".to_vec())
    );
    assert_eq!(db.get("empty value").expect("get"), Some(Vec::new()));
    assert_eq!(db.get("").expect("get"), Some(b"empty key".to_vec()));
    assert_eq!(
        db.get("unicode ✓").expect("get"),
        Some("värde".as_bytes().to_vec())
    );
    match db.ttl("session").expect("ttl") {
        cairn::Ttl::Expires(d) => assert!(d > Duration::from_secs(3500)),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.len().expect("len"), 5);
}

#[test]
fn import_stops_at_the_first_malformed_line_and_keeps_what_came_before() {
    let dst = tempfile::tempdir().expect("tempdir");
    let input = b"{\"key\":\"a\",\"value\":\"1\"}\n{\"key\":\"b\",\"value\":\"2\"}\nnot json\n{\"key\":\"c\",\"value\":\"3\"}\n";
    let o = cairn_stdin(&["import", p(dst.path())], input);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
    let db = cairn::Options::new().open(dst.path()).expect("open");
    assert_eq!(db.get("b").expect("get"), Some(b"2".to_vec()));
    assert_eq!(db.get("c").expect("get"), None);
}

#[test]
fn write_commands_on_a_locked_directory_say_who_holds_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = cairn::Options::new().open(t.path()).expect("open");
    db.put("k", "v").expect("put");
    let o = cairn(&["set", p(t.path()), "k", "w"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("another process"), "{}", stderr(&o));
    drop(db);
}

#[test]
fn inspection_works_while_another_process_holds_the_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = cairn::Options::new()
        .max_segment_bytes(4096)
        .open(t.path())
        .expect("open");
    for i in 0..200 {
        db.put(format!("key{i:03}"), format!("value {i}"))
            .expect("put");
    }
    db.put_with_ttl("session", "s", Duration::from_secs(60))
        .expect("put");
    let d = p(t.path());
    let before = std::fs::read_dir(t.path()).expect("list").count();
    let o = cairn(&["get", d, "key007"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "value 7"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&cairn(&["scan", d, "key1"])).lines().count(), 100);
    assert_eq!(code(&cairn(&["ttl", d, "session"])), 0);
    let o = cairn(&["stats", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["live_keys"], 201);
    assert_eq!(stdout(&cairn(&["export", d])).lines().count(), 201);
    // The writer goes on, and nothing the inspection did got in its way.
    db.put("after", "inspection").expect("put");
    drop(db);
    assert_eq!(stdout(&cairn(&["get", d, "after"])), "inspection");
    assert!(std::fs::read_dir(t.path()).expect("list").count() >= before);
}

#[test]
fn verify_reports_a_flipped_byte_with_file_and_offset() {
    let t = tempfile::tempdir().expect("tempdir");
    sealed_store(t.path());
    let d = p(t.path());
    let o = cairn(&["verify", d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).starts_with("healthy"), "{}", stdout(&o));
    // Flip one byte inside the third record of sealed segment 1.
    let seg = t.path().join("0000000001.seg");
    let mut b = std::fs::read(&seg).expect("read");
    let third = 32 + 2 * (32 + 6 + 100);
    b[third + 40] ^= 0x01;
    std::fs::write(&seg, b).expect("write");
    let o = cairn(&["verify", d]);
    assert_eq!(code(&o), 3, "{}", stdout(&o));
    let line = format!("corruption: {} at offset {third}", seg.display());
    assert!(stdout(&o).contains(&line), "{}", stdout(&o));
    let o = cairn(&["verify", d, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("json");
    assert_eq!(v["healthy"], false);
    assert_eq!(v["problems"][0]["offset"], third);
    // Quick mode trusts the valid hint and does not read the records.
    assert_eq!(code(&cairn(&["verify", d, "--quick"])), 0);
}

#[test]
fn dump_lists_records_and_damage() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = cairn::Options::new().open(t.path()).expect("open");
    db.put("a", "1").expect("put");
    db.put_with_ttl("b\x01", "2", Duration::from_secs(60))
        .expect("put");
    db.delete("a").expect("delete");
    db.write_batch(cairn::Batch::new().put("c", "3"))
        .expect("batch");
    db.close().expect("close");
    drop(db);
    let d = p(t.path());
    let o = cairn(&["dump", d, "--values"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    // Six records, then the two sync marks of the clean close.
    assert_eq!(lines.len(), 8, "{text}");
    assert!(
        lines[6].contains("sync-mark") && lines[7].contains("sync-mark"),
        "{text}"
    );
    assert!(
        lines[0].contains("put") && lines[0].contains("a (1 bytes) = 1"),
        "{text}"
    );
    assert!(lines[1].contains("b\\x01"), "escaped key: {text}");
    assert!(lines[2].contains("tombstone"), "{text}");
    assert!(lines[3].contains("batch-begin"), "{text}");
    assert!(lines[4].contains("[batch]"), "{text}");
    let o = cairn(&["dump", d, "--json", "--from-offset", "40"]);
    let first: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().next().expect("a line")).expect("json");
    assert_eq!(first["kind"], "put");
    assert_eq!(first["crc"], "ok");
    assert!(first["offset"].as_u64().expect("offset") >= 40);
    // Damage shows up with its offset.
    let seg = t.path().join("0000000001.seg");
    let mut b = std::fs::read(&seg).expect("read");
    b[32 + 33] ^= 0xff;
    std::fs::write(&seg, b).expect("write");
    let o = cairn(&["dump", d]);
    assert!(stdout(&o).contains("32  DAMAGED"), "{}", stdout(&o));
    assert_eq!(code(&cairn(&["dump", d, "--segment", "9"])), 1);
}

#[test]
fn repair_keeps_every_other_record_and_is_idempotent() {
    let t = tempfile::tempdir().expect("tempdir");
    let store = t.path().join("db");
    sealed_store(&store);
    let d = p(&store);
    // Damage the third record of sealed segment 1.
    let seg = store.join("0000000001.seg");
    let mut b = std::fs::read(&seg).expect("read");
    let third = 32 + 2 * (32 + 6 + 100);
    b[third + 40] ^= 0x01;
    std::fs::write(&seg, &b).expect("write");
    assert_eq!(code(&cairn(&["verify", d])), 3);
    // A dry run says what it would drop and changes nothing.
    let o = cairn(&["repair", d, "--dry-run"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("at offset {third}")),
        "{}",
        stdout(&o)
    );
    assert_eq!(std::fs::read(&seg).expect("read"), b);
    // The repair.
    let o = cairn(&["repair", d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("rewrote 1 segments"), "{}", stdout(&o));
    let backups: Vec<_> = std::fs::read_dir(t.path())
        .expect("list")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("db.repair-backup-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read(backups[0].path().join("0000000001.seg")).expect("backup"),
        b,
        "the original is backed up"
    );
    let o = cairn(&["verify", d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(
        !stdout(&o).contains("hint-missing") && !stdout(&o).contains("hint-unusable"),
        "the hint was rebuilt: {}",
        stdout(&o)
    );
    let db = cairn::Options::new()
        .open(&store)
        .expect("open after repair");
    assert_eq!(
        db.recovery_report().segments_scanned,
        1,
        "only the active segment is scanned"
    );
    for i in 0..100 {
        let got = db.get(format!("key{i:03}")).expect("get");
        if i == 2 {
            assert_eq!(got, None, "the damaged record is gone");
        } else {
            assert_eq!(got, Some(vec![b'x'; 100]), "key{i:03}");
        }
    }
    drop(db);
    // A second run changes nothing.
    let o = cairn(&["repair", d]);
    assert_eq!(stdout(&o).trim(), "nothing to repair");
}
