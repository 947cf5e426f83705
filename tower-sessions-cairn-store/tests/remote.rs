//! The store on a remote backend (issue 16), checked on `RemoteLike`
//! (tests/common), an embedded store dressed as remote: one key per
//! operation, one round trip per operation, the record's expiry as the
//! backend's, and nothing of the embedded-only maintenance.
//!
//! `cargo test -p tower-sessions-cairn-store --all-features --test remote`

#![cfg(feature = "v0_15")]

mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use cairn::backend::{Key, Store};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tower_sessions_015::session::{Id, Record};
use tower_sessions_015::session_store::{ExpiredDeletion, SessionStore};
use tower_sessions_cairn_store::CairnStore;

use common::RemoteLike;

struct Remote {
    store: CairnStore,
    /// The embedded store under it, to look at from the test's thread.
    inner: Store,
    reads: Arc<std::sync::atomic::AtomicU64>,
    updates: Arc<std::sync::atomic::AtomicU64>,
    _dir: Box<dyn std::any::Any>,
}

impl Remote {
    /// The backend calls made so far: (reads, updates).
    fn calls(&self) -> (u64, u64) {
        (
            self.reads.load(Ordering::Relaxed),
            self.updates.load(Ordering::Relaxed),
        )
    }
}

fn remote() -> Remote {
    let f = common::embedded();
    let inner = f.store.clone();
    let backend = RemoteLike::new(f.store);
    let (reads, updates) = (backend.reads.clone(), backend.updates.clone());
    Remote {
        store: CairnStore::on(Store::new(backend)),
        inner,
        reads,
        updates,
        _dir: f._keep,
    }
}

fn record(minutes: i64) -> Record {
    let mut data = HashMap::new();
    data.insert("user".to_string(), serde_json::json!("ada"));
    Record {
        id: Id::default(),
        data,
        expiry_date: OffsetDateTime::now_utc() + time::Duration::minutes(minutes),
    }
}

/// The key of the session `id` on a remote store: SHA-256 of its 16
/// bytes, tagged with the hash's first 2 bytes in hex.
fn hashed(id: Id) -> Key {
    let h = Sha256::digest(id.0.to_le_bytes());
    Key::tagged(format!("{:02x}{:02x}", h[0], h[1]).into_bytes(), h.to_vec())
}

/// The record's expiry in Unix milliseconds, rounded up.
fn ms(t: OffsetDateTime) -> u64 {
    let nanos = u128::try_from(t.unix_timestamp_nanos()).expect("after 1970");
    u64::try_from(nanos.div_ceil(1_000_000)).expect("ms")
}

#[tokio::test]
async fn each_operation_is_one_call_on_one_hashed_key() {
    let r = remote();
    let mut rec = record(30);
    r.store.create(&mut rec).await.expect("create");
    assert_eq!(r.calls(), (0, 1), "create: one update");
    assert_eq!(
        r.store.load(&rec.id).await.expect("load"),
        Some(rec.clone())
    );
    assert_eq!(r.calls(), (1, 1), "load: one read");
    rec.data.insert("n".into(), serde_json::json!(2));
    r.store.save(&rec).await.expect("save");
    assert_eq!(r.calls(), (1, 2), "save: one update");
    r.store.delete(&rec.id).await.expect("delete");
    assert_eq!(r.calls(), (1, 3), "delete: one update");
    assert_eq!(r.store.load(&rec.id).await.expect("load"), None);
    assert_eq!(r.calls(), (2, 3), "a miss: one read");
}

#[tokio::test]
async fn the_record_expires_on_the_backend_at_its_expiry() {
    let r = remote();
    let mut rec = record(30);
    r.store.create(&mut rec).await.expect("create");
    let store = &r.inner;
    assert_eq!(common::stored(store), 1, "one key, the hashed one");
    let (_, e) = store.read_one(&hashed(rec.id)).expect("read");
    let e = e.expect("stored under the hash of the id");
    assert_eq!(e.expires_at_ms, Some(ms(rec.expiry_date)));

    rec.expiry_date += time::Duration::minutes(5);
    r.store.save(&rec).await.expect("save");
    let (_, e) = store.read_one(&hashed(rec.id)).expect("read");
    assert_eq!(e.expect("saved").expires_at_ms, Some(ms(rec.expiry_date)));

    // Saved with an expiry in the past: gone from the backend.
    rec.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    r.store.save(&rec).await.expect("save");
    assert_eq!(common::stored(store), 0);
}

#[tokio::test]
async fn save_does_not_bring_back_a_deleted_session() {
    let r = remote();
    let mut rec = record(30);
    r.store.create(&mut rec).await.expect("create");
    r.store.delete(&rec.id).await.expect("delete");
    r.store.save(&rec).await.expect("save");
    assert_eq!(r.store.load(&rec.id).await.expect("load"), None);
    assert_eq!(common::stored(&r.inner), 0);
}

#[tokio::test]
async fn create_never_overwrites() {
    let r = remote();
    let mut first = record(30);
    r.store.create(&mut first).await.expect("create");
    let mut second = Record {
        id: first.id,
        ..record(60)
    };
    second.data.insert("other".into(), serde_json::json!(true));
    r.store.create(&mut second).await.expect("create");
    assert_ne!(second.id, first.id, "a fresh id on a collision");
    assert_eq!(r.store.load(&first.id).await.expect("load"), Some(first));
    assert_eq!(r.store.load(&second.id).await.expect("load"), Some(second));
}

#[tokio::test]
async fn embedded_maintenance_is_a_no_op_on_a_remote_store() {
    let r = remote();
    let mut rec = record(30);
    r.store.create(&mut rec).await.expect("create");
    assert!(r.store.db().is_none());
    let before = r.calls();
    assert_eq!(r.store.hash_stored_ids().expect("hash_stored_ids"), 0);
    r.store.delete_expired().await.expect("delete_expired");
    assert_eq!(r.calls(), before, "no call to the backend");
    assert_eq!(r.store.load(&rec.id).await.expect("load"), Some(rec));
}

/// Regression: a session whose id hashed to a first byte of `{` (1 in 256)
/// could be neither created nor loaded on the RESP backend, which refuses
/// an untagged name starting with `{` (it would read back as a hash tag);
/// the e2e benchmark saw 500s on 1 login in about 256.
#[tokio::test]
async fn an_id_whose_hash_starts_with_a_brace_works() {
    let r = remote();
    let id = (1..)
        .map(Id)
        .find(|id| Sha256::digest(id.0.to_le_bytes())[0] == b'{')
        .expect("an id whose SHA-256 starts with '{'");
    let mut rec = record(30);
    rec.id = id;
    r.store.create(&mut rec).await.expect("create");
    assert_eq!(
        r.store.load(&rec.id).await.expect("load"),
        Some(rec.clone())
    );
    rec.data.insert("n".into(), serde_json::json!(2));
    r.store.save(&rec).await.expect("save");
    assert_eq!(
        r.store.load(&rec.id).await.expect("load"),
        Some(rec.clone())
    );
    r.store.delete(&rec.id).await.expect("delete");
    assert_eq!(r.store.load(&rec.id).await.expect("load"), None);
}
