//! The store keeps no session id in its files (issue 14): each record is
//! keyed by SHA-256 of the id's 16 bytes. Records of the old layout, keyed
//! by the raw id, are still read, and are moved to the hashed key by
//! `load` and `save`; `delete` and `create` see both layouts.
//!
//! `cargo test -p tower-sessions-cairn-store --all-features --test
//! hashed_keys` runs the tests for tower-sessions 0.15 and 0.14.

macro_rules! hashed_keys {
    ($module:ident, $ts:ident) => {
        mod $module {
            use std::collections::HashMap;
            use std::path::Path;
            use std::time::Duration;

            use base64::Engine;
            use sha2::{Digest, Sha256};
            use time::OffsetDateTime;
            use $ts::session::{Id, Record};
            use $ts::session_store::{ExpiredDeletion, SessionStore};

            use tower_sessions_cairn_store::CairnStore;

            type Data = HashMap<String, serde_json::Value>;

            fn store() -> (CairnStore, tempfile::TempDir) {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = cairn::Db::open(dir.path()).expect("open");
                (
                    CairnStore::new(db.keyspace("sessions").expect("keyspace")),
                    dir,
                )
            }

            fn data(n: i64) -> Data {
                let mut d = Data::new();
                d.insert("user".into(), serde_json::json!("ada"));
                d.insert("n".into(), serde_json::json!(n));
                d
            }

            fn record(data: Data, expiry_date: OffsetDateTime) -> Record {
                Record {
                    id: Id::default(),
                    data,
                    expiry_date,
                }
            }

            fn in_minutes(m: i64) -> OffsetDateTime {
                OffsetDateTime::now_utc() + time::Duration::minutes(m)
            }

            /// The old layout's key: the id's 16 bytes.
            fn raw_key(id: Id) -> [u8; 16] {
                id.0.to_le_bytes()
            }

            /// The new layout's key: SHA-256 of those bytes.
            fn hashed_key(id: Id) -> [u8; 32] {
                Sha256::digest(id.0.to_le_bytes()).into()
            }

            /// A record's value as the store encodes it (and as the old
            /// layout did): format byte 1, the expiry in Unix nanoseconds
            /// (i128 LE) and its UTC offset in seconds (i32 LE), then the
            /// data in MessagePack. Written independently of the crate.
            fn encode_by_hand(data: &Data, expiry: OffsetDateTime) -> Vec<u8> {
                let mut v = vec![1u8];
                v.extend_from_slice(&expiry.unix_timestamp_nanos().to_le_bytes());
                v.extend_from_slice(&expiry.offset().whole_seconds().to_le_bytes());
                v.extend_from_slice(&rmp_serde::to_vec(data).expect("msgpack"));
                v
            }

            /// Writes sessions the way the store did before issue 14:
            /// under their raw ids, with a TTL up to their expiry.
            fn put_old_layouts(store: &CairnStore, rs: &[Record]) {
                store
                    .db()
                    .expect("embedded")
                    .transaction(|tx| {
                        for r in rs {
                            let left =
                                (r.expiry_date - OffsetDateTime::now_utc()).whole_milliseconds();
                            let ms = u64::try_from(left.max(0)).expect("ms") + 1;
                            let value = encode_by_hand(&r.data, r.expiry_date);
                            tx.put_with_ttl(raw_key(r.id), value, Duration::from_millis(ms))?;
                        }
                        Ok(())
                    })
                    .expect("put old layout");
            }

            fn put_old_layout(store: &CairnStore, r: &Record) {
                put_old_layouts(store, std::slice::from_ref(r));
            }

            fn ttl_left(store: &CairnStore, key: &[u8]) -> Duration {
                match store.db().expect("embedded").ttl(key).expect("ttl") {
                    cairn::Ttl::Expires(d) => d,
                    other => panic!("expected an expiring record, found {other:?}"),
                }
            }

            /// Every form of `id` that would let someone present it: its
            /// 16 bytes (little-endian, as `Id` holds and encodes them),
            /// big-endian, the cookie's base64url, and the decimal i128.
            fn forms(id: Id) -> Vec<(String, Vec<u8>)> {
                let le = id.0.to_le_bytes();
                vec![
                    ("raw little-endian bytes".into(), le.to_vec()),
                    ("big-endian bytes".into(), id.0.to_be_bytes().to_vec()),
                    ("cookie value (Display)".into(), id.to_string().into_bytes()),
                    (
                        "padded base64".into(),
                        base64::engine::general_purpose::STANDARD
                            .encode(le)
                            .into_bytes(),
                    ),
                    ("decimal".into(), id.0.to_string().into_bytes()),
                ]
            }

            fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
                for e in std::fs::read_dir(dir).expect("read_dir") {
                    let e = e.expect("entry");
                    let p = e.path();
                    if e.file_type().expect("file type").is_dir() {
                        files(&p, out);
                    } else {
                        let mut bytes = std::fs::read(&p).expect("read");
                        // Segments are preallocated: skip the zeros at the
                        // end, which hold nothing, to keep the search quick.
                        let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
                        bytes.truncate(end);
                        out.push((p.display().to_string(), bytes));
                    }
                }
            }

            fn assert_no_id_in_files(dir: &Path, ids: &[Id], when: &str) {
                let mut all = Vec::new();
                files(dir, &mut all);
                assert!(
                    all.iter().any(|(_, b)| !b.is_empty()),
                    "{when}: the store wrote nothing"
                );
                // The needles by length, to look each window up once.
                let mut needles: HashMap<usize, HashMap<Vec<u8>, (Id, String)>> = HashMap::new();
                for id in ids {
                    for (form, needle) in forms(*id) {
                        needles
                            .entry(needle.len())
                            .or_default()
                            .insert(needle, (*id, form));
                    }
                }
                for (path, bytes) in &all {
                    for (len, of_len) in &needles {
                        for w in bytes.windows(*len) {
                            if let Some((id, form)) = of_len.get(w) {
                                panic!("{when}: {path} holds session id {id} as its {form}");
                            }
                        }
                    }
                }
            }

            #[tokio::test]
            async fn the_files_hold_no_session_id_after_create_save_and_delete() {
                let (store, dir) = store();
                let mut ids = Vec::new();
                for n in 0..8 {
                    let mut r = record(data(n), in_minutes(30));
                    store.create(&mut r).await.expect("create");
                    r.data.insert("saved".into(), serde_json::json!(true));
                    r.expiry_date = in_minutes(60);
                    store.save(&r).await.expect("save");
                    assert!(store.load(&r.id).await.expect("load").is_some());
                    if n % 4 == 3 {
                        store.delete(&r.id).await.expect("delete");
                    }
                    ids.push(r.id);
                }
                assert_eq!(store.db().expect("embedded").len().expect("len"), 6);
                // SyncPolicy::Always: every write is in the files already.
                assert_no_id_in_files(dir.path(), &ids, "while open");
                // Closing writes the rest (hints) too.
                store.db().expect("embedded").close().expect("close");
                assert_no_id_in_files(dir.path(), &ids, "after close");
            }

            #[tokio::test]
            async fn records_are_keyed_by_the_hash_and_encoded_as_the_old_layout_was() {
                let (store, _dir) = store();
                let mut r = record(data(1), in_minutes(30));
                store.create(&mut r).await.expect("create");
                let db = store.db().expect("embedded");
                assert_eq!(db.get(raw_key(r.id)).expect("get"), None);
                // The hand-written old-layout records below are faithful.
                assert_eq!(
                    db.get(hashed_key(r.id)).expect("get"),
                    Some(encode_by_hand(&r.data, r.expiry_date))
                );
                assert_eq!(db.len().expect("len"), 1);
            }

            #[tokio::test]
            async fn an_old_layout_session_loads_and_moves_to_the_hashed_key() {
                let (store, _dir) = store();
                let r = record(data(7), in_minutes(30));
                put_old_layout(&store, &r);
                let before = ttl_left(&store, &raw_key(r.id));

                let loaded = store.load(&r.id).await.expect("load").expect("found");
                assert_eq!(loaded, r);

                let db = store.db().expect("embedded");
                assert_eq!(db.get(raw_key(r.id)).expect("get"), None, "raw key gone");
                assert_eq!(
                    db.get(hashed_key(r.id)).expect("get"),
                    Some(encode_by_hand(&r.data, r.expiry_date)),
                    "the hashed key holds the record"
                );
                let after = ttl_left(&store, &hashed_key(r.id));
                assert!(after <= before, "{after:?} > {before:?}");
                assert!(
                    before - after < Duration::from_secs(5),
                    "TTL kept: {before:?} then {after:?}"
                );
                assert_eq!(db.len().expect("len"), 1);
                // And it loads again, now from the hashed key.
                assert_eq!(store.load(&r.id).await.expect("load"), Some(r));
            }

            #[tokio::test]
            async fn an_expired_old_layout_session_is_not_loaded() {
                let (store, _dir) = store();
                let r = record(
                    data(7),
                    OffsetDateTime::now_utc() + time::Duration::milliseconds(30),
                );
                put_old_layout(&store, &r);
                tokio::time::sleep(Duration::from_millis(80)).await;
                assert_eq!(store.load(&r.id).await.expect("load"), None);
                assert_eq!(
                    store
                        .db()
                        .expect("embedded")
                        .get(hashed_key(r.id))
                        .expect("get"),
                    None
                );
            }

            #[tokio::test]
            async fn save_moves_an_old_layout_session_to_the_hashed_key() {
                let (store, _dir) = store();
                let mut r = record(data(1), in_minutes(30));
                put_old_layout(&store, &r);
                r.data = data(2);
                r.expiry_date = in_minutes(90);
                store.save(&r).await.expect("save");

                let db = store.db().expect("embedded");
                assert_eq!(db.get(raw_key(r.id)).expect("get"), None, "raw key gone");
                assert_eq!(
                    db.get(hashed_key(r.id)).expect("get"),
                    Some(encode_by_hand(&r.data, r.expiry_date))
                );
                assert!(ttl_left(&store, &hashed_key(r.id)) > Duration::from_secs(89 * 60));
                assert_eq!(db.len().expect("len"), 1);
                assert_eq!(store.load(&r.id).await.expect("load"), Some(r));
            }

            #[tokio::test]
            async fn save_with_a_past_expiry_ends_an_old_layout_session() {
                let (store, _dir) = store();
                let mut r = record(data(1), in_minutes(30));
                put_old_layout(&store, &r);
                r.expiry_date = OffsetDateTime::now_utc() - time::Duration::minutes(1);
                store.save(&r).await.expect("save");
                assert_eq!(store.db().expect("embedded").len().expect("len"), 0);
                assert_eq!(store.load(&r.id).await.expect("load"), None);
            }

            #[tokio::test]
            async fn save_removes_a_leftover_raw_record_beside_the_hashed_one() {
                let (store, _dir) = store();
                let mut r = record(data(1), in_minutes(30));
                store.create(&mut r).await.expect("create");
                let stale = Record {
                    id: r.id,
                    ..record(data(0), in_minutes(30))
                };
                put_old_layout(&store, &stale);
                assert_eq!(store.db().expect("embedded").len().expect("len"), 2);
                r.data = data(2);
                store.save(&r).await.expect("save");
                assert_eq!(
                    store
                        .db()
                        .expect("embedded")
                        .get(raw_key(r.id))
                        .expect("get"),
                    None
                );
                assert_eq!(store.db().expect("embedded").len().expect("len"), 1);
                assert_eq!(store.load(&r.id).await.expect("load"), Some(r));
            }

            #[tokio::test]
            async fn delete_ends_an_old_layout_session() {
                let (store, _dir) = store();
                let r = record(data(1), in_minutes(30));
                put_old_layout(&store, &r);
                let other = record(data(2), in_minutes(30));
                put_old_layout(&store, &other);
                store.delete(&r.id).await.expect("delete");
                assert_eq!(
                    store
                        .db()
                        .expect("embedded")
                        .get(raw_key(r.id))
                        .expect("get"),
                    None
                );
                assert_eq!(store.load(&r.id).await.expect("load"), None);
                // The other session is untouched.
                assert_eq!(store.load(&other.id).await.expect("load"), Some(other));
            }

            #[tokio::test]
            async fn delete_ends_a_session_under_both_keys() {
                let (store, _dir) = store();
                let mut r = record(data(1), in_minutes(30));
                store.create(&mut r).await.expect("create");
                put_old_layout(&store, &r);
                assert_eq!(store.db().expect("embedded").len().expect("len"), 2);
                store.delete(&r.id).await.expect("delete");
                assert_eq!(store.db().expect("embedded").len().expect("len"), 0);
                assert_eq!(store.load(&r.id).await.expect("load"), None);
            }

            #[tokio::test]
            async fn create_does_not_reuse_the_id_of_an_old_layout_session() {
                let (store, _dir) = store();
                let old = record(data(1), in_minutes(30));
                put_old_layout(&store, &old);
                let mut r = Record {
                    id: old.id,
                    ..record(data(2), in_minutes(30))
                };
                store.create(&mut r).await.expect("create");
                assert_ne!(r.id, old.id, "a fresh id");
                assert_eq!(store.load(&old.id).await.expect("load"), Some(old));
                assert_eq!(store.load(&r.id).await.expect("load"), Some(r));
            }

            #[tokio::test]
            async fn hash_stored_ids_moves_every_old_layout_session() {
                let dir = tempfile::tempdir().expect("tempdir");
                let db = cairn::Db::open(dir.path()).expect("open");
                // Compaction only when asked: see the end of the test.
                let opts = cairn::Options::new().auto_compact(false);
                let store = CairnStore::new(db.keyspace_with("sessions", opts).expect("keyspace"));
                let old: Vec<Record> = (0..300).map(|n| record(data(n), in_minutes(30))).collect();
                put_old_layouts(&store, &old);
                let mut new = record(data(-1), in_minutes(30));
                store.create(&mut new).await.expect("create");
                // A leftover raw record beside a moved one, and a key of 16
                // bytes that is not a session: only the first is touched.
                put_old_layout(
                    &store,
                    &Record {
                        id: new.id,
                        ..record(data(-2), in_minutes(30))
                    },
                );
                let foreign = [7u8; 16];
                store
                    .db()
                    .expect("embedded")
                    .put(foreign, "not a session")
                    .expect("put");
                let ttl_before = ttl_left(&store, &raw_key(old[0].id));

                assert_eq!(store.hash_stored_ids().expect("hash_stored_ids"), 300);
                let db = store.db().expect("embedded");
                assert_eq!(db.len().expect("len"), 302);
                for r in &old {
                    assert_eq!(db.get(raw_key(r.id)).expect("get"), None);
                    assert_eq!(
                        db.get(hashed_key(r.id)).expect("get"),
                        Some(encode_by_hand(&r.data, r.expiry_date))
                    );
                }
                assert!(ttl_left(&store, &hashed_key(old[0].id)) <= ttl_before);
                assert!(ttl_left(&store, &hashed_key(old[0].id)) > Duration::from_secs(29 * 60));
                assert_eq!(db.get(raw_key(new.id)).expect("get"), None);
                assert_eq!(store.load(&new.id).await.expect("load"), Some(new.clone()));
                assert_eq!(
                    db.get(foreign).expect("get"),
                    Some(b"not a session".to_vec())
                );
                assert_eq!(store.hash_stored_ids().expect("again"), 0);

                // The old records and the tombstones that delete them still
                // name the ids until compaction rewrites their segments.
                let mut ids: Vec<Id> = old.iter().map(|r| r.id).collect();
                ids.push(new.id);
                db.seal_active_segment().expect("seal");
                // Wait for the background hint of the sealed segment: a
                // hint written after a compaction removed its segment
                // stays behind, keys and all (a race in the engine, see
                // the issue 14 report), which is not what this test is
                // about; for the same reason, no automatic compaction.
                let sealed: Vec<u32> = db
                    .segment_stats()
                    .iter()
                    .filter(|s| !s.active)
                    .map(|s| s.id)
                    .collect();
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while sealed
                    .iter()
                    .any(|id| !cairn::hint_path(db.path(), *id).exists())
                {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no hint for {sealed:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                db.compact().expect("compact");
                assert_no_id_in_files(dir.path(), &ids, "after compaction");
            }

            #[tokio::test]
            async fn delete_expired_covers_both_layouts() {
                let (store, _dir) = store();
                let soon = || OffsetDateTime::now_utc() + time::Duration::milliseconds(40);
                let old = record(data(1), soon());
                put_old_layout(&store, &old);
                let mut new = record(data(2), soon());
                store.create(&mut new).await.expect("create");
                let live = record(data(3), in_minutes(30));
                put_old_layout(&store, &live);
                tokio::time::sleep(Duration::from_millis(100)).await;
                store.delete_expired().await.expect("delete_expired");
                assert_eq!(store.load(&old.id).await.expect("load"), None);
                assert_eq!(store.load(&new.id).await.expect("load"), None);
                assert_eq!(store.db().expect("embedded").len().expect("len"), 1);
                assert_eq!(store.load(&live.id).await.expect("load"), Some(live));
            }
        }
    };
}

#[cfg(feature = "v0_15")]
hashed_keys!(v0_15, tower_sessions_015);

#[cfg(feature = "v0_14")]
hashed_keys!(v0_14, tower_sessions_014);
