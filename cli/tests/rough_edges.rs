//! The CLI's error messages and rough edges: an I/O error names its file
//! and prints the OS message once, TTLs are checked as Redis checks them,
//! `incr` names its key, and `compact` reclaims a one-segment store.

mod common;
use common::*;

#[test]
fn an_io_error_names_its_file_and_prints_the_os_message_once() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let db = cairn::Options::new()
        .max_segment_bytes(4096)
        .open(&d)
        .expect("open");
    for i in 0..100 {
        db.put(format!("key{i:03}"), vec![b'x'; 100]).expect("put");
    }
    db.close().expect("close");
    // A directory in place of the oldest segment (and no hint for it):
    // reading it fails with EISDIR, whoever runs the test.
    let id = cairn::segment_ids(&d).expect("ids")[0];
    let seg = d.join(format!("{id:010}.seg"));
    std::fs::remove_file(&seg).expect("rm");
    let _ = std::fs::remove_file(seg.with_extension("hint"));
    std::fs::create_dir(&seg).expect("mkdir");
    let os_message = std::io::Error::from_raw_os_error(21).to_string();
    for args in [vec!["get", p(&d), "key001"], vec!["set", p(&d), "k", "v"]] {
        let o = cairn(&args);
        assert_eq!(code(&o), 1, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(&*seg.to_string_lossy()), "{err}");
        assert_eq!(err.matches(&os_message).count(), 1, "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn negative_ttls_must_be_positive_in_every_spelling() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    assert_eq!(code(&cairn(&["set", d, "k", "v"])), 0);
    for args in [
        vec!["set", d, "k2", "v", "--ttl", "-5s"],
        vec!["set", d, "k2", "v", "--ttl=-5s"],
        vec!["set", d, "k2", "v", "--ttl", "0s"],
        vec!["expire", d, "k", "-5s"],
        vec!["expire", d, "k", "--", "-5s"],
    ] {
        let o = cairn(&args);
        let err = stderr(&o);
        assert_eq!(code(&o), 2, "{args:?}: {err}");
        assert!(err.contains("a TTL must be positive"), "{args:?}: {err}");
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
    }
    assert_eq!(code(&cairn(&["get", d, "k2"])), 4);
    assert_eq!(stdout(&cairn(&["ttl", d, "k"])).trim(), "no expiry");
}

#[test]
fn ttls_redis_would_refuse_are_too_large() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    assert_eq!(code(&cairn(&["set", d, "k", "v"])), 0);
    // 2^64 ms does not parse; 2^64/1000 s does but its expiry does not fit
    // an i64 of ms (it used to be stored and printed as 2^64 - 1 ms); so
    // does i64::MAX ms, once now is added.
    for ttl in [
        "99999999999999999999s",
        "18446744073709551s",
        "9223372036854775807ms",
        "106751991167d",
    ] {
        for args in [
            vec!["set", d, "k2", "v", "--ttl", ttl],
            vec!["expire", d, "k", ttl],
        ] {
            let o = cairn(&args);
            let err = stderr(&o);
            assert_eq!(code(&o), 2, "{args:?}: {err}");
            assert!(err.contains("too large"), "{args:?}: {err}");
        }
    }
    assert_eq!(code(&cairn(&["get", d, "k2"])), 4);
    assert_eq!(stdout(&cairn(&["ttl", d, "k"])).trim(), "no expiry");
    // A long TTL that fits is kept as given.
    assert_eq!(code(&cairn(&["set", d, "k3", "v", "--ttl", "36500d"])), 0);
    let ms: u64 = stdout(&cairn(&["ttl", d, "k3"]))
        .trim()
        .trim_end_matches(" ms")
        .parse()
        .expect("a ttl in ms");
    let asked = 36_500 * 86_400_000u64;
    assert!(ms <= asked && ms > asked - 60_000, "{ms}");
}

#[test]
fn incr_on_a_value_that_is_not_an_integer_names_the_key() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    assert_eq!(code(&cairn(&["set", d, "visits", "many"])), 0);
    let o = cairn(&["incr", d, "visits"]);
    assert_eq!(code(&o), 1);
    let err = stderr(&o);
    assert!(err.contains("\"visits\""), "{err}");
    assert!(err.contains("not an integer"), "{err}");
    assert_eq!(stdout(&cairn(&["get", d, "visits"])), "many");
}

/// `dead_bytes` of `cairn stats --json`.
fn dead_bytes(d: &str) -> u64 {
    let o = cairn(&["stats", d, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["dead_bytes"].as_u64().expect("dead_bytes")
}

#[test]
fn compact_reclaims_the_dead_records_of_a_one_segment_store() {
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    for i in 0..5 {
        assert_eq!(code(&cairn(&["set", d, "k", &format!("v{i}")])), 0);
    }
    assert_eq!(code(&cairn(&["set", d, "gone", "x"])), 0);
    assert_eq!(code(&cairn(&["del", d, "gone"])), 0);
    assert!(dead_bytes(d) > 0);
    let o = cairn(&["compact", d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let said = stdout(&o);
    assert!(!said.contains("compacted 0 segments"), "{said}");
    assert!(said.contains("dropped 4 overwritten"), "{said}");
    // What is left dead: the number of the store's newest change (the
    // delete of "gone"), kept by a 32-byte tombstone of the empty key so
    // that it is never handed out again (docs/design.md, "The change feed").
    assert_eq!(dead_bytes(d), 32);
    assert_eq!(stdout(&cairn(&["get", d, "k"])), "v4");
    assert_eq!(code(&cairn(&["get", d, "gone"])), 4);
    let o = cairn(&["verify", d]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    // Nothing dead any more: a second compact has nothing to seal.
    let o = cairn(&["compact", d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!stdout(&o).contains("sealed"), "{}", stdout(&o));
}

#[test]
fn compact_does_not_seal_for_close_marks_alone() {
    // Each `set` is a process that closes cleanly and leaves close marks,
    // which count as dead bytes; no record is dead.
    let t = tempfile::tempdir().expect("tempdir");
    let d = t.path().join("db");
    let d = p(&d);
    for k in ["a", "b", "c"] {
        assert_eq!(code(&cairn(&["set", d, k, "v"])), 0);
    }
    assert!(dead_bytes(d) > 0);
    let o = cairn(&["compact", d]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("nothing to compact"), "{}", stdout(&o));
    assert_eq!(cairn::segment_ids(t.path().join("db")).expect("ids"), [1]);
}
