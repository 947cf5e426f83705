//! Route-level conformance: the behaviours tower-sessions checks for its
//! own stores (written here for this crate), run against `CairnStore` for
//! tower-sessions 0.15 and 0.14, through a real axum `Router` and
//! `SessionManagerLayer`.
//!
//! The suite is one function per tower-sessions version,
//! `vX::run(name, factory)`, that runs every case against stores made by
//! `factory`: a `Fixture` (tests/common) holds a `cairn::backend::Store`
//! with no keys in it, and whatever keeps it alive (a temporary directory,
//! a server). Any backend runs it: the embedded store, an embedded store
//! dressed as a remote one (`common::RemoteLike`), and real
//! Redis-protocol servers through cairn's RESP backend: a `redis-server`,
//! `cairn serve` and a 3-master Redis Cluster (the root crate's
//! `tests/common/servers.rs` starts them as child processes on free
//! loopback ports; each case gets a namespace of its own on the test's
//! server).
//!
//! `cargo test -p tower-sessions-cairn-store --all-features` runs both
//! versions.

mod common;
#[allow(dead_code)]
#[path = "../../tests/common/servers.rs"]
mod servers;

use std::sync::atomic::{AtomicUsize, Ordering};

use cairn::backend::resp::RespOptions;
use cairn::backend::Store;
use common::{stored, Fixture};

/// A factory of fresh stores on one Redis-protocol server (or cluster):
/// each call opens a new namespace.
fn resp(options: impl Fn() -> RespOptions) -> impl Fn() -> Fixture {
    static CASES: AtomicUsize = AtomicUsize::new(0);
    move || {
        let n = CASES.fetch_add(1, Ordering::SeqCst);
        let backend = options().open().expect("connect");
        Fixture {
            store: Store::from(backend.namespace(&format!("case{n}"))),
            _keep: Box::new(()),
        }
    }
}

macro_rules! conformance {
    ($module:ident, $ts:ident) => {
        mod $module {
            use axum::body::Body;
            use axum::routing::get;
            use axum::Router;
            use http::header::{COOKIE, SET_COOKIE};
            use http::{Request, StatusCode};
            use http_body_util::BodyExt;
            use tower::ServiceExt;
            use $ts::cookie::{Cookie, SameSite};
            use $ts::{Expiry, Session, SessionManagerLayer};

            use cairn::backend::resp::RespOptions;
            use tower_sessions_cairn_store::CairnStore;

            use super::{common, stored, Fixture};

            /// What makes a case's store.
            type Factory<'a> = &'a dyn Fn() -> Fixture;

            /// A running case.
            type Case<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>>;

            /// Runs every case of the suite on stores made by `factory`;
            /// `name` (the backend's) prefixes the failing case's name.
            pub async fn run(name: &str, factory: Factory<'_>) {
                let cases: [(&str, fn(Factory<'_>) -> Case<'_>); 15] = [
                    ("no_data_no_session", |f| Box::pin(no_data_no_session(f))),
                    (
                        "inserting_creates_a_session_with_the_cookie_attributes",
                        |f| Box::pin(inserting_creates_a_session_with_the_cookie_attributes(f)),
                    ),
                    ("without_max_age_the_cookie_has_none", |f| {
                        Box::pin(without_max_age_the_cookie_has_none(f))
                    }),
                    ("data_persists_across_requests", |f| {
                        Box::pin(data_persists_across_requests(f))
                    }),
                    ("a_fresh_session_has_no_value", |f| {
                        Box::pin(a_fresh_session_has_no_value(f))
                    }),
                    ("an_unknown_id_gets_a_new_session", |f| {
                        Box::pin(an_unknown_id_gets_a_new_session(f))
                    }),
                    ("a_malformed_cookie_is_replaced", |f| {
                        Box::pin(a_malformed_cookie_is_replaced(f))
                    }),
                    ("modify_and_remove", |f| Box::pin(modify_and_remove(f))),
                    ("cycle_id_keeps_the_data_and_kills_the_old_id", |f| {
                        Box::pin(cycle_id_keeps_the_data_and_kills_the_old_id(f))
                    }),
                    ("flush_ends_the_session", |f| {
                        Box::pin(flush_ends_the_session(f))
                    }),
                    ("flush_keeps_the_domain", |f| {
                        Box::pin(flush_keeps_the_domain(f))
                    }),
                    ("set_expiry_moves_max_age", |f| {
                        Box::pin(set_expiry_moves_max_age(f))
                    }),
                    ("change_expiry_type", |f| Box::pin(change_expiry_type(f))),
                    ("a_session_expires_after_its_max_age", |f| {
                        Box::pin(a_session_expires_after_its_max_age(f))
                    }),
                    (
                        "always_save_moves_the_sliding_expiry_and_keeps_a_fixed_one",
                        |f| {
                            Box::pin(always_save_moves_the_sliding_expiry_and_keeps_a_fixed_one(
                                f,
                            ))
                        },
                    ),
                ];
                for (case, f) in cases {
                    eprintln!("{name}: {case}");
                    f(factory).await;
                }
            }

            #[tokio::test]
            async fn on_the_embedded_store() {
                run("embedded", &common::embedded).await;
            }

            /// The store as it runs on a remote backend: one key per
            /// operation, functions run twice, calls off the runtime.
            #[tokio::test]
            async fn on_a_remote_like_store() {
                run("remote-like", &common::remote_like).await;
            }

            #[tokio::test]
            async fn on_redis_server() {
                let server = super::servers::RedisServer::start();
                let url = server.url();
                run("redis-server", &super::resp(|| RespOptions::new(&url))).await;
            }

            /// `cairn serve`: updates through `WATCH … MULTI … EXEC`.
            #[tokio::test]
            async fn on_cairn_serve() {
                let server = super::servers::CairnServe::start();
                let url = server.url();
                run("cairn serve", &super::resp(|| RespOptions::new(&url))).await;
            }

            #[tokio::test]
            async fn on_a_redis_cluster() {
                let cluster = super::servers::RedisCluster::start(3, 0);
                let urls = cluster.urls();
                run(
                    "redis cluster",
                    &super::resp(|| RespOptions::cluster(&urls)),
                )
                .await;
            }

            struct App {
                router: Router,
                store: CairnStore,
                _keep: Box<dyn std::any::Any>,
            }

            fn app(
                factory: Factory<'_>,
                max_age: Option<time::Duration>,
                domain: Option<&str>,
            ) -> App {
                let Fixture { store, _keep } = factory();
                let store = CairnStore::on(store);
                let mut layer = SessionManagerLayer::new(store.clone()).with_secure(true);
                if let Some(m) = max_age {
                    layer = layer.with_expiry(Expiry::OnInactivity(m));
                }
                if let Some(d) = domain {
                    layer = layer.with_domain(d.to_string());
                }
                let router = Router::new()
                    .route("/", get(|_: Session| async { "" }))
                    .route(
                        "/insert",
                        get(|s: Session| async move { s.insert("foo", 42).await.expect("insert") }),
                    )
                    .route(
                        "/get",
                        get(|s: Session| async move {
                            format!(
                                "{}",
                                s.get::<usize>("foo").await.expect("get").expect("value")
                            )
                        }),
                    )
                    .route(
                        "/get_value",
                        get(|s: Session| async move {
                            format!("{:?}", s.get_value("foo").await.expect("get"))
                        }),
                    )
                    .route(
                        "/remove_value",
                        get(|s: Session| async move {
                            s.remove_value("foo").await.expect("remove");
                        }),
                    )
                    .route(
                        "/cycle_id",
                        get(|s: Session| async move { s.cycle_id().await.expect("cycle") }),
                    )
                    .route(
                        "/flush",
                        get(|s: Session| async move { s.flush().await.expect("flush") }),
                    )
                    .route(
                        "/set_expiry",
                        get(|s: Session| async move {
                            let at = time::OffsetDateTime::now_utc() + time::Duration::days(1);
                            s.set_expiry(Some(Expiry::AtDateTime(at)));
                        }),
                    )
                    .route(
                        "/remove_expiry",
                        get(|s: Session| async move {
                            s.set_expiry(Some(Expiry::OnSessionEnd));
                        }),
                    )
                    .layer(layer);
                App {
                    router,
                    store,
                    _keep,
                }
            }

            async fn call(
                app: &App,
                uri: &str,
                cookie: Option<&Cookie<'_>>,
            ) -> http::Response<Body> {
                let mut req = Request::builder().uri(uri);
                if let Some(c) = cookie {
                    req = req.header(COOKIE, c.encoded().to_string());
                }
                app.router
                    .clone()
                    .oneshot(req.body(Body::empty()).expect("request"))
                    .await
                    .expect("response")
            }

            fn set_cookie(res: &http::Response<Body>) -> Option<Cookie<'static>> {
                let h = res.headers().get(SET_COOKIE)?.to_str().expect("ascii");
                Some(Cookie::parse_encoded(h.to_string()).expect("cookie"))
            }

            async fn body(res: http::Response<Body>) -> String {
                let b = res.into_body().collect().await.expect("body").to_bytes();
                String::from_utf8(b.to_vec()).expect("utf-8")
            }

            const HOUR: time::Duration = time::Duration::hours(1);

            async fn no_data_no_session(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let res = call(&app, "/", None).await;
                assert_eq!(res.status(), StatusCode::OK);
                assert!(
                    res.headers().get(SET_COOKIE).is_none(),
                    "no data, no cookie"
                );
                assert_eq!(stored(app.store.store()), 0, "nothing stored");
            }

            async fn inserting_creates_a_session_with_the_cookie_attributes(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let res = call(&app, "/insert", None).await;
                assert_eq!(res.status(), StatusCode::OK);
                let c = set_cookie(&res).expect("a session cookie");
                assert_eq!(c.name(), "id");
                assert_eq!(c.http_only(), Some(true));
                assert_eq!(c.same_site(), Some(SameSite::Strict));
                assert_eq!(c.secure(), Some(true));
                assert_eq!(c.path(), Some("/"));
                let max_age = c.max_age().expect("max-age");
                assert!(max_age <= HOUR && max_age > HOUR - time::Duration::seconds(5));
                assert_eq!(stored(app.store.store()), 1, "one session stored");
            }

            async fn without_max_age_the_cookie_has_none(factory: Factory<'_>) {
                let app = app(factory, None, None);
                let res = call(&app, "/insert", None).await;
                let c = set_cookie(&res).unwrap_or_else(|| panic!("no session cookie: {res:?}"));
                assert_eq!(c.max_age(), None);
                assert_eq!(c.http_only(), Some(true));
            }

            async fn data_persists_across_requests(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let res = call(&app, "/get", Some(&c)).await;
                assert_eq!(res.status(), StatusCode::OK);
                assert!(
                    res.headers().get(SET_COOKIE).is_none(),
                    "unchanged: no new cookie"
                );
                assert_eq!(body(res).await, "42");
            }

            async fn a_fresh_session_has_no_value(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                assert_eq!(body(call(&app, "/get_value", None).await).await, "None");
            }

            async fn an_unknown_id_gets_a_new_session(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let bogus = Cookie::new("id", "AAAAAAAAAAAAAAAAAAAAAA");
                let res = call(&app, "/insert", Some(&bogus)).await;
                assert_eq!(res.status(), StatusCode::OK);
                let c = set_cookie(&res).expect("cookie");
                assert_ne!(c.value(), bogus.value(), "never adopts a client-chosen id");
            }

            async fn a_malformed_cookie_is_replaced(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let bad = Cookie::new("id", "not base64 at all!");
                let res = call(&app, "/", Some(&bad)).await;
                assert_eq!(res.status(), StatusCode::OK);
                let c = set_cookie(&res).expect("cookie");
                assert_ne!(c.value(), bad.value());
            }

            async fn modify_and_remove(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                call(&app, "/remove_value", Some(&c)).await;
                assert_eq!(body(call(&app, "/get_value", Some(&c)).await).await, "None");
            }

            async fn cycle_id_keeps_the_data_and_kills_the_old_id(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let old = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let res = call(&app, "/cycle_id", Some(&old)).await;
                let new = set_cookie(&res).expect("a new cookie");
                assert_ne!(new.value(), old.value());
                assert_eq!(body(call(&app, "/get", Some(&new)).await).await, "42");
                assert_eq!(
                    body(call(&app, "/get_value", Some(&old)).await).await,
                    "None",
                    "the old id is dead"
                );
                assert_eq!(stored(app.store.store()), 1, "one session stored");
            }

            async fn flush_ends_the_session(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let res = call(&app, "/flush", Some(&c)).await;
                let gone = set_cookie(&res).expect("a removal cookie");
                assert_eq!(gone.value(), "");
                assert_eq!(gone.max_age(), Some(time::Duration::ZERO));
                assert_eq!(gone.path(), Some("/"));
                assert_eq!(body(call(&app, "/get_value", Some(&c)).await).await, "None");
                assert_eq!(stored(app.store.store()), 0, "deleted from the store");
            }

            async fn flush_keeps_the_domain(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), Some("localhost"));
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let gone = set_cookie(&call(&app, "/flush", Some(&c)).await).expect("cookie");
                assert_eq!(gone.value(), "");
                assert_eq!(gone.domain(), Some("localhost"));
            }

            async fn set_expiry_moves_max_age(factory: Factory<'_>) {
                let app = app(factory, Some(HOUR), None);
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let first = c.max_age().expect("max-age");
                assert!((first - HOUR).abs() <= time::Duration::seconds(1));
                let c2 = set_cookie(&call(&app, "/set_expiry", Some(&c)).await).expect("cookie");
                let day = time::Duration::days(1);
                assert!((c2.max_age().expect("max-age") - day).abs() <= time::Duration::seconds(1));
            }

            async fn change_expiry_type(factory: Factory<'_>) {
                let app_ = app(factory, None, None);
                let c = set_cookie(&call(&app_, "/insert", None).await).expect("cookie");
                assert_eq!(c.max_age(), None);
                let c = set_cookie(&call(&app_, "/set_expiry", Some(&c)).await).expect("cookie");
                let day = time::Duration::days(1);
                assert!((c.max_age().expect("max-age") - day).abs() <= time::Duration::seconds(1));

                let app_ = app(factory, Some(HOUR), None);
                let c = set_cookie(&call(&app_, "/insert", None).await).expect("cookie");
                assert!(c.max_age().is_some());
                let c = set_cookie(&call(&app_, "/remove_expiry", Some(&c)).await).expect("cookie");
                assert_eq!(c.max_age(), None);
            }

            async fn a_session_expires_after_its_max_age(factory: Factory<'_>) {
                let max_age = std::time::Duration::from_secs(2);
                let app = app(factory, Some(time::Duration::seconds(2)), None);
                let start = std::time::Instant::now();
                let c = set_cookie(&call(&app, "/insert", None).await).expect("cookie");
                let live = body(call(&app, "/get_value", Some(&c)).await).await;
                // On a loaded machine the durable create can take long:
                // check liveness only when the max age cannot have passed.
                if start.elapsed() < max_age {
                    assert_eq!(live, "Some(Number(42))");
                }
                tokio::time::sleep(max_age + std::time::Duration::from_millis(500)).await;
                assert_eq!(
                    body(call(&app, "/get_value", Some(&c)).await).await,
                    "None",
                    "expired"
                );
            }

            /// tower-sessions' `always_save` saves every request: the store
            /// must keep the expiry to the nanosecond for a sliding expiry
            /// to move, and keep it exactly for a fixed one.
            async fn always_save_moves_the_sliding_expiry_and_keeps_a_fixed_one(
                factory: Factory<'_>,
            ) {
                use $ts::session::Id;
                use $ts::SessionStore;
                for (expiry, moves) in [
                    (Expiry::OnInactivity(HOUR), true),
                    (Expiry::OnSessionEnd, true),
                    (
                        Expiry::AtDateTime(time::OffsetDateTime::now_utc() + HOUR),
                        false,
                    ),
                ] {
                    let Fixture { store, _keep } = factory();
                    let store = CairnStore::on(store);
                    let layer = SessionManagerLayer::new(store.clone())
                        .with_always_save(true)
                        .with_expiry(expiry);
                    let router = Router::new()
                        .route(
                            "/",
                            get(
                                |s: Session| async move { s.insert("k", 1).await.expect("insert") },
                            ),
                        )
                        .layer(layer);
                    let app = App {
                        router,
                        store: store.clone(),
                        _keep,
                    };
                    let c = set_cookie(&call(&app, "/", None).await).expect("cookie");
                    let id: Id = c.value().parse().expect("id");
                    let r1 = store.load(&id).await.expect("load").expect("live");
                    let res = call(&app, "/", Some(&c)).await;
                    if let Some(c2) = set_cookie(&res) {
                        assert_eq!(c2.value(), c.value(), "the id stays");
                    }
                    let r2 = store.load(&id).await.expect("load").expect("live");
                    assert_eq!(r1.data, r2.data);
                    if moves {
                        assert!(r1.expiry_date < r2.expiry_date, "{expiry:?}");
                    } else {
                        assert_eq!(r1.expiry_date, r2.expiry_date, "{expiry:?}");
                    }
                }
            }
        }
    };
}

#[cfg(feature = "v0_15")]
conformance!(v0_15, tower_sessions_015);

#[cfg(feature = "v0_14")]
conformance!(v0_14, tower_sessions_014);

/// A session whose key (SHA-256 of its id) starts with `{`: on a
/// Redis-protocol server an untagged key may not (it would read as a hash
/// tag), so one session in 256 could not be saved there until the key got
/// a tag of its own.
#[cfg(feature = "v0_15")]
#[tokio::test]
async fn a_session_whose_hash_starts_with_a_brace_is_saved_on_a_server() {
    use sha2::{Digest, Sha256};
    use tower_sessions_015::session::{Id, Record};
    use tower_sessions_015::session_store::SessionStore;
    use tower_sessions_cairn_store::CairnStore;

    let id = (1..10_000i128)
        .find(|n| Sha256::digest(n.to_le_bytes())[0] == b'{')
        .expect("an id whose hash starts with '{'");
    let server = servers::RedisServer::start();
    let store = CairnStore::on(Store::from(
        RespOptions::new(&server.url()).open().expect("connect"),
    ));
    let mut data = std::collections::HashMap::new();
    data.insert("k".to_owned(), serde_json::json!(1));
    let mut record = Record {
        id: Id(id),
        data,
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut record).await.expect("create");
    assert_eq!(record.id, Id(id), "a free id is kept");
    store.save(&record).await.expect("save");
    let loaded = store.load(&Id(id)).await.expect("load").expect("live");
    assert_eq!(loaded.data, record.data);
    store.delete(&Id(id)).await.expect("delete");
    assert!(store.load(&Id(id)).await.expect("load").is_none());
}
