//! Concurrency: durable writes never stall a single-threaded runtime,
//! concurrent creates never share an id, and parallel requests on one
//! session never bring back a session that was logged out.
#![cfg(feature = "v0_15")]

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use cairn::vfs::{LockGuard, OpenMode, RealFs, VFile, Vfs};
use cairn::{Db, Options, SyncPolicy};
use http::header::{COOKIE, SET_COOKIE};
use http::Request;
use tower::ServiceExt;
use tower_sessions_015::session::{Id, Record};
use tower_sessions_015::{Expiry, Session, SessionManagerLayer, SessionStore};
use tower_sessions_cairn_store::CairnStore;

/// The real file system, with every fsync taking `FSYNC` longer: a slow
/// disk makes a blocked worker thread impossible to miss.
#[derive(Debug)]
struct SlowFsync;

const FSYNC: Duration = Duration::from_millis(150);

#[derive(Debug)]
struct SlowFile(Arc<dyn VFile>);

impl VFile for SlowFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        std::thread::sleep(FSYNC);
        self.0.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        std::thread::sleep(FSYNC);
        self.0.sync_all()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
}

impl Vfs for SlowFsync {
    fn exists(&self, path: &Path) -> bool {
        RealFs.exists(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        Ok(Arc::new(SlowFile(RealFs.open(path, mode)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        RealFs.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path, shared: bool) -> io::Result<Option<LockGuard>> {
        RealFs.try_lock(path, shared)
    }
}

fn router(store: CairnStore) -> Router {
    Router::new()
        .route(
            "/insert",
            get(|s: Session| async move { s.insert("n", 1u64).await.expect("insert") }),
        )
        .route(
            "/incr",
            get(|s: Session| async move {
                let n: u64 = s.get("n").await.expect("get").unwrap_or(0);
                s.insert("n", n + 1).await.expect("insert");
            }),
        )
        .route(
            "/get",
            get(|s: Session| async move { format!("{:?}", s.get::<u64>("n").await.expect("get")) }),
        )
        .route(
            "/logout",
            get(|s: Session| async move { s.flush().await.expect("flush") }),
        )
        .layer(
            SessionManagerLayer::new(store)
                .with_expiry(Expiry::OnInactivity(time::Duration::hours(1))),
        )
}

async fn call(app: &Router, uri: &str, cookie: Option<&str>) -> http::Response<Body> {
    let mut req = Request::builder().uri(uri);
    if let Some(c) = cookie {
        req = req.header(COOKIE, format!("id={c}"));
    }
    app.clone()
        .oneshot(req.body(Body::empty()).expect("request"))
        .await
        .expect("response")
}

fn cookie_of(res: &http::Response<Body>) -> String {
    let h = res
        .headers()
        .get(SET_COOKIE)
        .expect("set-cookie")
        .to_str()
        .expect("ascii");
    h.trim_start_matches("id=")
        .split(';')
        .next()
        .expect("value")
        .to_string()
}

async fn body(res: http::Response<Body>) -> String {
    use http_body_util::BodyExt;
    let b = res.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8(b.to_vec()).expect("utf-8")
}

/// 32 requests that each create a session (one durable write each, under
/// `SyncPolicy::Always`, on a disk whose fsync takes 150 ms) run on a
/// runtime with a single thread, beside a task that ticks every
/// millisecond. If a write blocked the thread, the ticker would stall for
/// at least an fsync; and the writes would take 32 fsyncs one after the
/// other instead of sharing them.
#[test]
fn durable_writes_do_not_stall_a_single_threaded_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::Always)
        .vfs(Arc::new(SlowFsync))
        .open(dir.path())
        .expect("open");
    let store = CairnStore::new(db.keyspace("sessions").expect("keyspace"));
    let app = router(store.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (max_gap, elapsed) = rt.block_on(async move {
        let gaps = Arc::new(Mutex::new(Duration::ZERO));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ticker = {
            let (gaps, stop) = (gaps.clone(), stop.clone());
            tokio::spawn(async move {
                let mut last = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let now = Instant::now();
                    let mut g = gaps.lock().expect("gaps");
                    *g = (*g).max(now - last);
                    last = now;
                }
            })
        };
        // Let the ticker start.
        tokio::time::sleep(Duration::from_millis(5)).await;
        *gaps.lock().expect("gaps") = Duration::ZERO;
        let start = Instant::now();
        let requests: Vec<_> = (0..32)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { call(&app, "/insert", None).await })
            })
            .collect();
        for r in requests {
            let res = r.await.expect("task");
            assert_eq!(res.status(), 200);
        }
        let elapsed = start.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        ticker.await.expect("ticker");
        let gap = *gaps.lock().expect("gaps");
        (gap, elapsed)
    });
    assert_eq!(
        store.db().expect("embedded").len().expect("len"),
        32,
        "every session written"
    );
    assert!(
        max_gap < FSYNC / 2,
        "the runtime's only thread stalled for {max_gap:?} (an fsync takes {FSYNC:?})"
    );
    assert!(
        elapsed < FSYNC * 16,
        "32 durable writes took {elapsed:?}: they did not share fsyncs"
    );
}

/// A store on a fresh directory (kept alive by the returned guard) under
/// `SyncPolicy::EveryMillis(10)`.
fn store_syncing_every_10ms() -> (tempfile::TempDir, CairnStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(SyncPolicy::EveryMillis(10))
        .open(dir.path())
        .expect("open");
    (dir, CairnStore::new(db))
}

/// Every create starts from the same id: the store must detect the
/// collision and hand out a fresh id, never overwriting a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_share_an_id() {
    let (_dir, store) = store_syncing_every_10ms();
    let fixed = Id(42);
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in 0..100u64 {
                    let mut data = HashMap::new();
                    data.insert("who".to_string(), serde_json::json!([t, i]));
                    let mut r = Record {
                        id: fixed,
                        data,
                        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
                    };
                    store.create(&mut r).await.expect("create");
                    out.push((r.id, t, i));
                }
                out
            })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    for (id, t, i) in &all {
        assert!(ids.insert(*id), "id {id} handed out twice");
        let r = store.load(id).await.expect("load").expect("live");
        assert_eq!(r.data["who"], serde_json::json!([t, i]), "overwritten");
    }
    assert_eq!(ids.len(), 800);
    assert!(ids.contains(&fixed), "one create got the id it asked for");
}

/// Parallel requests on one session while one of them logs out: whatever
/// the interleaving, the session is gone at the end. A request that loaded
/// the session before the logout must not save it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_requests_never_undo_a_logout() {
    let (_dir, store) = store_syncing_every_10ms();
    let app = router(store.clone());
    for round in 0..30 {
        let c = cookie_of(&call(&app, "/insert", None).await);
        let tasks: Vec<_> = (0..12)
            .map(|i| {
                let (app, c) = (app.clone(), c.clone());
                tokio::spawn(async move {
                    let uri = if i == 6 { "/logout" } else { "/incr" };
                    call(&app, uri, Some(&c)).await.status()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.expect("task"), 200, "round {round}");
        }
        let id: Id = c.parse().expect("id");
        assert!(
            store.load(&id).await.expect("load").is_none(),
            "round {round}: the logged-out session came back"
        );
        assert_eq!(body(call(&app, "/get", Some(&c)).await).await, "None");
    }
    // Without a logout, parallel increments keep the session valid, and
    // the counter holds a value one of them wrote.
    let c = cookie_of(&call(&app, "/insert", None).await);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (app, c) = (app.clone(), c.clone());
            tokio::spawn(async move { call(&app, "/incr", Some(&c)).await.status() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.expect("task"), 200);
    }
    let v = body(call(&app, "/get", Some(&c)).await).await;
    let n: u64 = v
        .trim_start_matches("Some(")
        .trim_end_matches(')')
        .parse()
        .expect("a counter");
    assert!((2..=17).contains(&n), "counter {n}");
}

/// The store API directly: a save after a delete does nothing.
#[tokio::test]
async fn save_does_not_resurrect_a_deleted_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = CairnStore::new(Db::open(dir.path()).expect("open"));
    let mut r = Record {
        id: Id::default(),
        data: HashMap::new(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    store.create(&mut r).await.expect("create");
    let loaded = store.load(&r.id).await.expect("load").expect("live");
    store.delete(&r.id).await.expect("delete");
    store.save(&loaded).await.expect("save");
    assert!(store.load(&r.id).await.expect("load").is_none());
}
