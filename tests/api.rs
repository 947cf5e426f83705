//! API semantics, checked one behaviour at a time.

use std::time::Duration;

use cairn::{Batch, Db, Error, ManualClock, Options, SyncPolicy, Ttl};

fn open_with_clock(dir: &std::path::Path, clock: &ManualClock) -> Db {
    Options::new()
        .clock(clock.clone())
        .expiry_sweep_interval_ms(0)
        .open(dir)
        .expect("open")
}

#[test]
fn put_clears_ttl_and_incr_keeps_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let db = open_with_clock(t.path(), &clock);
    db.put_with_ttl("k", "5", Duration::from_secs(10))
        .expect("put");
    assert_eq!(db.incr("k", 1).expect("incr"), 6);
    assert_eq!(
        db.ttl("k").expect("ttl"),
        Ttl::Expires(Duration::from_secs(10))
    );
    db.put("k", "7").expect("put");
    assert_eq!(db.ttl("k").expect("ttl"), Ttl::Persistent);
    db.put_with_ttl("c", "1", Duration::from_secs(2))
        .expect("put");
    clock.advance(Duration::from_secs(2));
    // An expired counter counts as missing and starts again with no TTL.
    assert_eq!(db.incr("c", 1).expect("incr"), 1);
    assert_eq!(db.ttl("c").expect("ttl"), Ttl::Persistent);
}

#[test]
fn expiry_is_exact_to_the_millisecond_and_survives_reopen() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(5_000);
    let db = open_with_clock(t.path(), &clock);
    db.put_with_ttl("k", "v", Duration::from_millis(100))
        .expect("put");
    clock.advance(Duration::from_millis(99));
    assert!(db.contains_key("k").expect("contains"));
    assert_eq!(
        db.ttl("k").expect("ttl"),
        Ttl::Expires(Duration::from_millis(1))
    );
    drop(db);
    let db = open_with_clock(t.path(), &clock);
    assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"v"[..]));
    clock.advance(Duration::from_millis(1));
    assert_eq!(db.get("k").expect("get"), None);
    assert!(!db.contains_key("k").expect("contains"));
    assert_eq!(db.len().expect("len"), 0);
    assert_eq!(db.scan_prefix("").count(), 0);
    assert_eq!(db.ttl("k").expect("ttl"), Ttl::Missing);
    assert!(
        !db.delete("k").expect("delete"),
        "an expired key does not exist"
    );
    drop(db);
    let db = open_with_clock(t.path(), &clock);
    assert_eq!(
        db.get("k").expect("get"),
        None,
        "expired keys stay expired after reopen"
    );
    assert_eq!(db.len().expect("len"), 0);
}

#[test]
fn expire_and_persist_follow_redis() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(0);
    let db = open_with_clock(t.path(), &clock);
    assert!(!db
        .expire("missing", Duration::from_secs(1))
        .expect("expire"));
    assert!(!db.persist("missing").expect("persist"));
    db.put("k", "v").expect("put");
    assert!(!db.persist("k").expect("persist"), "no TTL to remove");
    assert!(db.expire("k", Duration::from_secs(5)).expect("expire"));
    assert_eq!(
        db.get("k").expect("get").as_deref(),
        Some(&b"v"[..]),
        "value kept"
    );
    assert!(db.persist("k").expect("persist"));
    assert_eq!(db.ttl("k").expect("ttl"), Ttl::Persistent);
    assert!(db.expire("k", Duration::ZERO).expect("expire 0 deletes"));
    assert_eq!(db.get("k").expect("get"), None);
    assert!(matches!(
        db.put_with_ttl("z", "v", Duration::ZERO),
        Err(Error::InvalidTtl)
    ));
    assert!(matches!(
        db.write_batch(
            Batch::new()
                .put("a", "1")
                .put_with_ttl("z", "v", Duration::ZERO)
        ),
        Err(Error::InvalidTtl)
    ));
    assert_eq!(
        db.get("a").expect("get"),
        None,
        "a failed batch writes nothing"
    );
}

#[test]
fn incr_errors_change_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    db.put("text", "abc").expect("put");
    db.put("padded", " 1").expect("put");
    db.put("max", i64::MAX.to_string()).expect("put");
    db.put("min", i64::MIN.to_string()).expect("put");
    let before = db.stats().bytes_written;
    assert!(matches!(db.incr("text", 1), Err(Error::NotAnInteger)));
    assert!(matches!(db.incr("padded", 1), Err(Error::NotAnInteger)));
    assert!(matches!(db.incr("max", 1), Err(Error::Overflow)));
    assert!(matches!(db.incr("min", -1), Err(Error::Overflow)));
    assert_eq!(db.stats().bytes_written, before, "nothing written");
    assert_eq!(
        db.get("max").expect("get"),
        Some(i64::MAX.to_string().into_bytes())
    );
    assert_eq!(db.incr("max", -1).expect("incr"), i64::MAX - 1);
    assert_eq!(db.incr("neg", -5).expect("incr"), -5);
    assert_eq!(db.get("neg").expect("get").as_deref(), Some(&b"-5"[..]));
}

#[test]
fn empty_key_and_empty_value_are_distinct_from_absent() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    db.put("", "").expect("put");
    assert_eq!(db.get("").expect("get"), Some(Vec::new()));
    assert!(db.contains_key("").expect("contains"));
    assert!(db
        .compare_and_swap("", Some(b""), Some(b"x"))
        .expect("cas")
        .is_ok());
    assert!(db
        .compare_and_swap("none", Some(b""), Some(b"x"))
        .expect("cas")
        .is_err());
    db.close().expect("close");
    let db = Db::open(t.path()).expect("reopen");
    assert_eq!(db.get("").expect("get").as_deref(), Some(&b"x"[..]));
}

#[test]
fn size_limits_are_typed_errors_and_write_nothing() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    let big_key = vec![b'k'; cairn::MAX_KEY_BYTES as usize + 1];
    let max_key = vec![b'k'; cairn::MAX_KEY_BYTES as usize];
    let before = db.stats().bytes_written;
    assert!(matches!(
        db.put(&big_key, "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        db.delete(&big_key),
        Err(Error::KeyTooLarge { .. })
    ));
    assert!(matches!(
        db.write_batch(Batch::new().put("ok", "v").put(&big_key, "v")),
        Err(Error::KeyTooLarge { .. })
    ));
    assert_eq!(db.stats().bytes_written, before);
    assert_eq!(db.get("ok").expect("get"), None);
    db.put(&max_key, "v").expect("a key at the limit is fine");
    assert_eq!(db.get(&max_key).expect("get").as_deref(), Some(&b"v"[..]));
    let msg = Error::ValueTooLarge { len: 10, max: 5 }.to_string();
    assert!(msg.contains("10") && msg.contains('5'), "{msg}");
}

#[test]
fn batch_later_ops_win_and_apply_together() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    db.put("gone", "x").expect("put");
    db.write_batch(
        Batch::new()
            .put("a", "1")
            .put("a", "2")
            .delete("gone")
            .put("b", "3")
            .delete("b"),
    )
    .expect("batch");
    assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get("gone").expect("get"), None);
    assert_eq!(db.get("b").expect("get"), None);
    db.write_batch(Batch::new())
        .expect("empty batch is a no-op");
    drop(db);
    let db = Db::open(t.path()).expect("reopen");
    assert_eq!(db.get("a").expect("get").as_deref(), Some(&b"2"[..]));
    assert_eq!(db.len().expect("len"), 1);
}

#[test]
fn scan_prefix_is_sorted_and_skips_deleted() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    for k in ["p:3", "p:1", "q:1", "p:2", "p"] {
        db.put(k, k).expect("put");
    }
    let mut it = db.scan_prefix("p:");
    db.delete("p:2").expect("delete");
    let keys: Vec<Vec<u8>> = it.by_ref().map(|r| r.expect("item").0).collect();
    assert_eq!(keys, vec![b"p:1".to_vec(), b"p:3".to_vec()]);
    let all: Vec<Vec<u8>> = db.scan_prefix("").map(|r| r.expect("item").0).collect();
    assert_eq!(
        all,
        vec![
            b"p".to_vec(),
            b"p:1".to_vec(),
            b"p:3".to_vec(),
            b"q:1".to_vec()
        ]
    );
}

#[test]
fn every_sync_policy_keeps_data_across_reopen() {
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
        for i in 0..100u32 {
            db.put(i.to_be_bytes(), i.to_le_bytes()).expect("put");
        }
        db.sync().expect("sync");
        drop(db);
        let db = Options::new()
            .sync_policy(policy)
            .open(t.path())
            .expect("reopen");
        assert_eq!(db.len().expect("len"), 100, "{policy:?}");
        assert_eq!(
            db.get(7u32.to_be_bytes()).expect("get"),
            Some(7u32.to_le_bytes().to_vec())
        );
    }
}

#[test]
fn every_millis_fsyncs_in_the_background() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::EveryMillis(10))
        .open(t.path())
        .expect("open");
    let before = db.stats().fsyncs;
    db.put("k", "v").expect("put");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while db.stats().fsyncs == before {
        assert!(
            std::time::Instant::now() < deadline,
            "no background fsync within 5 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn never_policy_does_not_fsync_on_writes() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::Never)
        .open(t.path())
        .expect("open");
    for i in 0..50u32 {
        db.put(i.to_be_bytes(), "v").expect("put");
    }
    assert_eq!(db.stats().fsyncs, 0);
    db.sync().expect("sync");
    assert_eq!(db.stats().fsyncs, 1);
}

#[test]
fn sweep_removes_expired_keys_and_counts_them_dead() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(0);
    let db = open_with_clock(t.path(), &clock);
    for i in 0..100u32 {
        db.put_with_ttl(i.to_be_bytes(), [0u8; 100], Duration::from_secs(1))
            .expect("put");
    }
    db.put("keep", "v").expect("put");
    let before = db.stats();
    clock.advance(Duration::from_secs(1));
    assert_eq!(db.sweep_expired(), 100);
    let after = db.stats();
    assert_eq!(after.live_keys, 1);
    assert_eq!(after.expired_keys_removed, 100);
    assert!(after.dead_bytes >= before.dead_bytes + 100 * 100);
    assert!(after.live_bytes < 200, "{after:?}");
}

/// Found by the `ops` fuzz target: deleting an expired key through
/// `compare_and_swap(key, None, None)` forgets it at once, as `delete` does,
/// so that a later sweep has nothing left to count for it.
#[test]
fn expired_keys_are_forgotten_by_delete_and_by_swap_to_absent() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(0);
    let db = open_with_clock(t.path(), &clock);
    db.put_with_ttl("a", "1", Duration::from_millis(9))
        .expect("put");
    db.put_with_ttl("b", "1", Duration::from_millis(9))
        .expect("put");
    clock.advance(Duration::from_millis(39));
    assert!(!db.delete("a").expect("delete"));
    assert_eq!(db.compare_and_swap("b", None, None).expect("cas"), Ok(()));
    assert_eq!(db.stats().expired_keys_removed, 2);
    assert_eq!(db.sweep_expired(), 0);
    assert_eq!(db.get("b").expect("get"), None);
}

#[test]
fn stats_track_writes() {
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    db.put("a", "1").expect("put");
    db.put("a", "2").expect("put");
    db.delete("a").expect("delete");
    db.put("b", "3").expect("put");
    let s = db.stats();
    assert_eq!(s.live_keys, 1);
    assert_eq!(s.segments, 1);
    assert_eq!(s.live_bytes, 32 + 1 + 1);
    assert_eq!(s.dead_bytes, 3 * 34 - 1, "two puts of a and a tombstone");
    assert_eq!(s.bytes_written, 4 * 34 - 1);
    assert!(s.fsyncs >= 4, "Always fsyncs every write: {s:?}");
    assert!(s.keydir_memory_bytes > 0);
}

#[test]
fn stats_count_keys_with_expiry() {
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let db = open_with_clock(t.path(), &clock);
    db.put("plain", "v").expect("put");
    db.put_with_ttl("a", "v", Duration::from_secs(10))
        .expect("put");
    db.put_with_ttl("b", "v", Duration::from_secs(100))
        .expect("put");
    assert_eq!(db.stats().keys_with_expiry, 2);
    db.put("a", "w").expect("put clears a's expiry");
    assert_eq!(db.stats().keys_with_expiry, 1);
    db.put_with_ttl("plain", "v", Duration::from_secs(5))
        .expect("put");
    db.delete("b").expect("delete");
    let s = db.stats();
    assert_eq!(s.keys_with_expiry, 1);
    assert_eq!(s.live_keys, 2);
}

#[test]
fn invalid_options_are_rejected() {
    let t = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Options::new().max_segment_bytes(10).open(t.path()),
        Err(Error::InvalidOptions(_))
    ));
    assert!(matches!(
        Options::new()
            .sync_policy(SyncPolicy::EveryMillis(0))
            .open(t.path()),
        Err(Error::InvalidOptions(_))
    ));
    let missing = t.path().join("nope");
    assert!(matches!(
        Options::new().create_if_missing(false).open(&missing),
        Err(Error::Io(_))
    ));
}

#[cfg(feature = "serde")]
#[test]
fn typed_values_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Session {
        user: u64,
        roles: Vec<String>,
    }
    let t = tempfile::tempdir().expect("tempdir");
    let db = Db::open(t.path()).expect("open");
    let s = Session {
        user: 7,
        roles: vec!["admin".into()],
    };
    db.put_typed("s", &s).expect("put");
    assert_eq!(db.get_typed::<Session>("s").expect("get"), Some(s));
    db.put("bad", [0xffu8; 3]).expect("put");
    assert!(matches!(
        db.get_typed::<Session>("bad"),
        Err(Error::Serde(_))
    ));
}

/// The space accounting stays exact through overwrites of other lengths,
/// deletes, batches that write one key twice, rewrites of the expiry,
/// `incr`, and the expiry sweep, across segment seals and a reopen: the
/// index no longer keeps a record's length, so the write path takes the
/// replaced record's from its header, and recovery from the hint files.
#[test]
fn live_and_dead_bytes_stay_exact_through_overwrites() {
    use std::collections::BTreeMap;
    let t = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(1_000_000);
    let opts = Options::new()
        .clock(clock.clone())
        .sync_policy(SyncPolicy::Never)
        .max_segment_bytes(4096)
        .auto_compact(false)
        .expiry_sweep_interval_ms(0);
    let db = opts.clone().open(t.path()).expect("open");
    // key -> (value, has a TTL)
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, bool)> = BTreeMap::new();
    let check = |db: &Db, model: &BTreeMap<Vec<u8>, (Vec<u8>, bool)>, at: &str| {
        let s = db.stats();
        let live: u64 = model
            .iter()
            .map(|(k, (v, _))| 32 + k.len() as u64 + v.len() as u64)
            .sum();
        assert_eq!(s.live_bytes, live, "{at}: live bytes");
        assert_eq!(
            s.disk_bytes - s.dead_bytes - s.live_bytes,
            32 * s.segments,
            "{at}: dead bytes ({s:?})"
        );
    };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for step in 0..600u64 {
        let key = format!("key{}", next(24)).into_bytes();
        let value = vec![b'v'; next(300) as usize];
        match next(8) {
            0 => {
                db.delete(&key).expect("delete");
                model.remove(&key);
            }
            1 => {
                db.put_with_ttl(&key, &value, Duration::from_secs(60))
                    .expect("put ttl");
                model.insert(key, (value, true));
            }
            2 => {
                // One key twice in a batch: the second replaces the first.
                let other = format!("key{}", next(24)).into_bytes();
                let short = vec![b's'; next(50) as usize];
                db.write_batch(
                    Batch::new()
                        .put(&key, &value)
                        .delete(&other)
                        .put(&key, &short),
                )
                .expect("batch");
                model.remove(&other);
                model.insert(key, (short, false));
            }
            3 => {
                if db.expire(&key, Duration::from_secs(30)).expect("expire") {
                    model.get_mut(&key).expect("in the model").1 = true;
                }
            }
            4 => {
                let n = db.incr(b"counter", 1_000_003).expect("incr");
                model.insert(b"counter".to_vec(), (n.to_string().into_bytes(), false));
            }
            _ => {
                db.put(&key, &value).expect("put");
                model.insert(key, (value, false));
            }
        }
        if step % 50 == 49 {
            check(&db, &model, &format!("step {step}"));
        }
    }
    check(&db, &model, "before the sweep");
    clock.advance(Duration::from_secs(61));
    db.sweep_expired();
    model.retain(|_, (_, ttl)| !*ttl);
    check(&db, &model, "after the sweep");
    drop(db);
    let db = opts.open(t.path()).expect("reopen");
    check(&db, &model, "after a reopen");
    for (k, (v, _)) in &model {
        assert_eq!(db.get(k).expect("get").as_deref(), Some(&v[..]));
    }
}

/// Without maps or the tail cache every read is a `pread`, and the index
/// no longer knows the value's length: the first read asks for the header,
/// the key and 512 bytes more, and a longer record takes a second. Values
/// on both sides of that, in sealed segments and the active one, at the
/// end of a file (where the first read comes back short), read back whole.
#[test]
fn values_of_every_length_read_back_through_pread() {
    let t = tempfile::tempdir().expect("tempdir");
    let opts = Options::new()
        .use_mmap(false)
        .tail_cache_bytes(0)
        .sync_policy(SyncPolicy::Never)
        .max_segment_bytes(64 << 10);
    let db = opts.clone().open(t.path()).expect("open");
    let lens = [0usize, 1, 100, 479, 480, 481, 511, 512, 513, 4096, 70_000];
    let value = |i: usize, len: usize| (0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<u8>>();
    for round in 0..3 {
        for (i, &len) in lens.iter().enumerate() {
            let key = format!("k{i}");
            db.put(&key, value(i + round, len)).expect("put");
            // The newest record ends the active segment: read it there.
            assert_eq!(db.get(&key).expect("get"), Some(value(i + round, len)));
        }
    }
    for (i, &len) in lens.iter().enumerate() {
        assert_eq!(
            db.get(format!("k{i}")).expect("get"),
            Some(value(i + 2, len))
        );
    }
    drop(db);
    let db = opts.open(t.path()).expect("reopen");
    for (i, &len) in lens.iter().enumerate() {
        let key = format!("k{i}");
        assert_eq!(db.get(&key).expect("get"), Some(value(i + 2, len)));
        // A read-modify-write reads the value the same way.
        assert!(matches!(db.incr(&key, 1), Err(Error::NotAnInteger)));
    }
}
