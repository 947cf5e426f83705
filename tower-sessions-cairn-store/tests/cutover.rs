//! A cut-over from the embedded store to a Redis-protocol server (issue
//! 17), done by hand as `cairn follow --modules` does it: an app runs
//! sessions, a rate limiter, idempotency keys, a cache and tower-sessions
//! records on an embedded store; every key of each keyspace is copied
//! (`scan_prefix("")`, `get_with_expiry`, `ModuleKeys::server_key`,
//! `SET … PXAT`) into a real redis-server and into a 3-master Redis
//! Cluster; the modules then open on the RESP backend and find it all.
//!
//! `cargo test -p tower-sessions-cairn-store --all-features --test cutover`

#![cfg(feature = "v0_15")]

#[path = "../../tests/common/servers.rs"]
#[allow(dead_code)]
mod servers;

use std::collections::HashMap;
use std::time::Duration;

use cairn::backend::resp::{RespBackend, RespOptions};
use cairn::backend::Store;
use cairn::cache::Cache;
use cairn::limits::{Begin, Claim, Gcra, Idempotency};
use cairn::module_keys::{ModuleKeys, ModuleLayout};
use cairn::session::{SessionId, Sessions};
use cairn::{Db, Error};
use time::OffsetDateTime;
use tower_sessions_015::session::{Id, Record};
use tower_sessions_015::session_store::SessionStore;
use tower_sessions_cairn_store::CairnStore;

const HOUR: Duration = Duration::from_secs(3600);
const USERS: [&str; 4] = ["ada", "bob", "carol", "dan"];
const SECRET: &[u8] = b"the app's tag secret, from its configuration";

fn sessions_on(store: Store, secret: Option<&[u8]>) -> Sessions {
    let s = Sessions::new(store);
    match secret {
        Some(x) => s.tag_secret(x),
        None => s,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the app did on the embedded store, to check on the server.
struct Before {
    /// Each live user session: user, id, data.
    sessions: Vec<(String, SessionId, Vec<u8>)>,
    anon: SessionId,
    revoked: SessionId,
    /// The limiter's remaining allowance after the app's last check.
    remaining: u64,
    pending: Claim,
    tower: Vec<Record>,
}

/// The app on the embedded store.
fn run_app(db: &Db, secret: Option<&[u8]>) -> Before {
    let sessions = sessions_on(Store::from(db.keyspace("sessions").expect("ks")), secret);
    let mut live = Vec::new();
    for user in USERS {
        for i in 0..3 {
            let data = format!("{user}-{i}").into_bytes();
            let id = sessions.create_for_user(user, &data, HOUR).expect("create");
            live.push((user.to_string(), id, data));
        }
    }
    // A login rotates one, a logout revokes another.
    let (user, id, data) = live.remove(0);
    let rotated = sessions.rotate(id.as_str()).expect("rotate").expect("live");
    live.push((user, rotated, data));
    let (_, revoked, _) = live.remove(0);
    assert!(sessions.revoke(revoked.as_str()).expect("revoke"));
    let anon = sessions.create(b"anon", HOUR).expect("create");

    let limits = db.keyspace("limits").expect("ks");
    let gcra = Gcra::new(limits, "api", 10, HOUR).expect("gcra");
    let mut remaining = 0;
    for _ in 0..3 {
        remaining = gcra.check("client-1").expect("check").remaining;
    }

    let idem = Idempotency::new(db.keyspace("idempotency").expect("ks"));
    let Begin::Started(done) = idem.begin("order-1", HOUR).expect("begin") else {
        panic!("a new key");
    };
    assert!(idem.complete(&done, b"201 Created").expect("complete"));
    let Begin::Started(pending) = idem.begin("order-2", HOUR).expect("begin") else {
        panic!("a new key");
    };

    let cache = Cache::open(db.keyspace("cache").expect("ks")).expect("cache");
    for i in 0..20 {
        let ttl = (i % 2 == 0).then_some(HOUR);
        cache
            .insert(format!("k{i}"), format!("v{i}"), ttl)
            .expect("insert");
    }

    let tower = CairnStore::new(db.keyspace("tower").expect("ks"));
    let rt = runtime();
    let mut records = Vec::new();
    for i in 0..10 {
        let mut data = HashMap::new();
        data.insert("n".to_string(), serde_json::json!(i));
        let mut r = Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + time::Duration::hours(1),
        };
        rt.block_on(tower.create(&mut r)).expect("create");
        records.push(r);
    }
    Before {
        sessions: live,
        anon,
        revoked,
        remaining,
        pending,
        tower: records,
    }
}

/// The keyspaces and how their keys map.
fn layouts(secret: Option<&[u8]>) -> Vec<(&'static str, ModuleLayout)> {
    vec![
        (
            "sessions",
            ModuleLayout::Sessions {
                tag_secret: secret.map(<[u8]>::to_vec),
            },
        ),
        ("limits", ModuleLayout::parse("limits").expect("kind")),
        (
            "idempotency",
            ModuleLayout::parse("idempotency").expect("kind"),
        ),
        ("cache", ModuleLayout::parse("cache").expect("kind")),
        (
            "tower",
            ModuleLayout::parse("tower-sessions").expect("kind"),
        ),
    ]
}

/// What `cairn follow` does for a snapshot: every live key of each
/// keyspace, with its value and expiry, to its server key. Returns how
/// many keys it copied.
fn copy(
    db: &Db,
    target: &RespBackend,
    conn: &mut dyn redis::ConnectionLike,
    secret: Option<&[u8]>,
) -> usize {
    let mut n = 0;
    for (ks, layout) in layouts(secret) {
        let src = db.keyspace(ks).expect("ks");
        let backend = target.namespace(ks);
        let keys = ModuleKeys::new(layout, backend.clone());
        for item in src.scan_prefix("") {
            let (name, _) = item.expect("scan");
            let Some((value, expiry)) = src.get_with_expiry(&name).expect("get") else {
                continue;
            };
            let key = keys.server_key(&backend, &name).expect("server key");
            let mut set = redis::cmd("SET");
            set.arg(&key).arg(&value);
            if let Some(ms) = expiry {
                set.arg("PXAT").arg(ms);
            }
            set.query::<()>(conn).expect("SET");
            n += 1;
        }
    }
    n
}

/// The app after the cut-over, on `target`: everything it wrote before
/// is there and works.
fn check_after(target: &RespBackend, before: &Before, secret: Option<&[u8]>) {
    let sessions = sessions_on(Store::from(target.namespace("sessions")), secret);
    for (user, id, data) in &before.sessions {
        let s = sessions
            .get_and_touch(id.as_str())
            .expect("get")
            .unwrap_or_else(|| panic!("{user}'s session lost"));
        assert_eq!(s.user.as_deref(), Some(user.as_str()));
        assert_eq!(&s.data, data);
    }
    assert!(sessions
        .get(before.revoked.as_str())
        .expect("get")
        .is_none());
    let anon = sessions.get_and_touch(before.anon.as_str()).expect("get");
    assert_eq!(anon.expect("anon").data, b"anon");
    for user in USERS {
        let want = before.sessions.iter().filter(|(u, ..)| u == user).count();
        let listed = sessions.list_for_user(user).expect("list");
        assert_eq!(listed.len(), want, "{user}");
    }
    // "Log out that device", a new login, "log out everywhere".
    let (_, bob1, _) = before
        .sessions
        .iter()
        .find(|(u, ..)| u == "bob")
        .expect("bob");
    assert!(sessions
        .revoke_for_user("bob", bob1.handle().as_str())
        .expect("revoke"));
    assert!(sessions.get(bob1.as_str()).expect("get").is_none());
    let new = sessions
        .create_for_user("bob", b"new", HOUR)
        .expect("create");
    let bobs = before.sessions.iter().filter(|(u, ..)| u == "bob").count();
    assert_eq!(sessions.list_for_user("bob").expect("list").len(), bobs);
    let rotated = sessions
        .rotate(new.as_str())
        .expect("rotate")
        .expect("live");
    let (_, carol, _) = before
        .sessions
        .iter()
        .find(|(u, ..)| u == "carol")
        .expect("c");
    match (secret, sessions.rotate(carol.as_str())) {
        (Some(_), r) => assert!(r.expect("rotate").is_some()),
        // Created on the embedded store without the user's tag bytes:
        // rotating it would span two slots.
        (None, Err(Error::InvalidArgument(m))) => assert!(m.contains("tag_secret"), "{m}"),
        (None, r) => panic!("rotating a session outside its user's tag: {r:?}"),
    }
    assert!(sessions.revoke(carol.as_str()).is_ok());
    let adas = before.sessions.iter().filter(|(u, ..)| u == "ada").count();
    assert_eq!(
        sessions.revoke_all_for_user("ada").expect("all"),
        adas as u64
    );
    for (user, id, _) in &before.sessions {
        if user == "ada" {
            assert!(sessions.get(id.as_str()).expect("get").is_none());
        }
    }
    assert!(sessions.list_for_user("ada").expect("list").is_empty());
    assert!(sessions.get(rotated.as_str()).expect("get").is_some());
    assert_eq!(
        sessions.revoke_all_for_user("bob").expect("all"),
        bobs as u64
    );

    let gcra = Gcra::new(target.namespace("limits"), "api", 10, HOUR).expect("gcra");
    let d = gcra.check("client-1").expect("check");
    assert_eq!(
        d.remaining,
        before.remaining - 1,
        "the limiter's count carried over"
    );

    let idem = Idempotency::new(target.namespace("idempotency"));
    assert_eq!(
        idem.begin("order-1", HOUR).expect("begin"),
        Begin::Completed(b"201 Created".to_vec())
    );
    assert!(matches!(
        idem.begin("order-2", HOUR).expect("begin"),
        Begin::InProgress { .. }
    ));
    assert!(idem.complete(&before.pending, b"202").expect("complete"));
    assert_eq!(
        idem.begin("order-2", HOUR).expect("begin"),
        Begin::Completed(b"202".to_vec())
    );

    let cache = Cache::open(target.namespace("cache")).expect("cache");
    for i in 0..20 {
        let v = cache.get(format!("k{i}")).expect("get");
        assert_eq!(v, Some(format!("v{i}").into_bytes()), "k{i}");
    }

    let tower = CairnStore::on(Store::from(target.namespace("tower")));
    let rt = runtime();
    for r in &before.tower {
        let got = rt
            .block_on(tower.load(&r.id))
            .expect("load")
            .expect("found");
        assert_eq!(got.data, r.data);
        assert_eq!(
            got.expiry_date.unix_timestamp(),
            r.expiry_date.unix_timestamp()
        );
    }
}

/// The whole cut-over onto `target` (already holding `prefix`), through
/// `conn`.
fn cut_over(target: &RespBackend, conn: &mut dyn redis::ConnectionLike, secret: Option<&[u8]>) {
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(dir.path()).expect("open");
    let before = run_app(&db, secret);
    let n = copy(&db, target, conn, secret);
    // 11 live user sessions + 4 indexes + 1 anonymous, 1 limiter, 2
    // idempotency keys, 20 cache entries, 10 tower records.
    assert_eq!(n, 16 + 1 + 2 + 20 + 10);
    let salt: Option<Vec<u8>> = redis::cmd("GET")
        .arg(
            target
                .namespace("sessions")
                .server_key(&cairn::backend::Key::new(b"tag-salt".to_vec()))
                .expect("key"),
        )
        .query(conn)
        .expect("GET");
    // Without a secret, the mapping created the salt the app then reads.
    assert_eq!(salt.is_some(), secret.is_none());
    check_after(target, &before, secret);
}

#[test]
fn a_cut_over_to_one_server_loses_nothing() {
    let server = servers::RedisServer::start();
    let mut conn = redis::Client::open(server.url())
        .expect("client")
        .get_connection()
        .expect("connect");
    for (prefix, secret) in [("nosecret:", None), ("secret:", Some(SECRET))] {
        let target = RespOptions::new(&server.url())
            .prefix(prefix)
            .open()
            .expect("open");
        cut_over(&target, &mut conn, secret);
    }
}

#[test]
fn a_cut_over_to_a_cluster_loses_nothing() {
    let cluster = servers::RedisCluster::start(3, 0);
    let mut conn = redis::cluster::ClusterClient::new(cluster.urls())
        .expect("client")
        .get_connection()
        .expect("connect");
    for (prefix, secret) in [("nosecret:", None), ("secret:", Some(SECRET))] {
        let target = RespOptions::cluster(cluster.urls())
            .prefix(prefix)
            .open()
            .expect("open");
        cut_over(&target, &mut conn, secret);
    }
}
