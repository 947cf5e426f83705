//! Concurrency tests for the modules: the cache's singleflight (blocking
//! and async, with errors, panics and cancelled leaders), session rotation
//! racing reads, sessions created from many threads, rate limiters and
//! idempotency keys under racing callers, and the cache's capacity under
//! concurrent inserts.
//!
//! Every test body takes a [`Fixture`] (a fresh, empty store of one
//! backend) and runs unchanged on each backend: the embedded store and,
//! with the `redis` feature, a real `redis-server`, a 3-master Redis
//! Cluster and `cairn serve` (the `WATCH` path). `on_every_backend!`
//! generates one `#[test]` per body and backend (`embedded::…`,
//! `redis_server::…`, `redis_cluster::…`, `cairn_serve::…`). The servers
//! are shared by the tests that overlap in time (each holds an `Arc`; the
//! last one out kills the processes) and every test has a namespace of its
//! own.
//!
//! Threads are lined up with a `Barrier`. Tests that could hang when the
//! property breaks (a waiter never woken) run their body under a deadline.
//! Where a test has to know that every caller has reached the cache (so
//! that a second load would be a real singleflight failure, not a late
//! arrival), the loader waits until the cache's miss counter shows all of
//! them, then lingers a little.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread;
use std::time::{Duration, Instant};

use cairn::backend::Store;
use cairn::cache::{Cache, CacheOptions, LoadError};
use cairn::limits::{Begin, FixedWindow, Gcra, Idempotency};
use cairn::session::Sessions;
use cairn::{Db, ManualClock, Options, SyncPolicy};
use common::XorShift as Rng;

// ----- backends ----------------------------------------------------------------

const HOUR: Duration = Duration::from_secs(3600);

/// How many times fewer operations the bulk tests run on a server.
const REMOTE_DIVISOR: usize = 5;

/// Where a test's store lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Embedded,
    #[cfg(feature = "redis")]
    RedisServer,
    #[cfg(feature = "redis")]
    RedisCluster,
    #[cfg(feature = "redis")]
    CairnServe,
}

/// One test's store, on one backend: a `Db` in a temporary directory, or
/// a namespace of its own on a shared server.
struct Fixture {
    kind: Kind,
    dir: tempfile::TempDir,
    db: Mutex<Option<Db>>,
    clock: Mutex<Option<ManualClock>>,
    #[cfg(feature = "redis")]
    remote: Option<remote::Remote>,
}

impl Fixture {
    fn new(kind: Kind, test: &str) -> Fixture {
        let _ = test;
        Fixture {
            kind,
            dir: tempfile::tempdir().expect("tempdir"),
            db: Mutex::new(None),
            clock: Mutex::new(None),
            #[cfg(feature = "redis")]
            remote: (kind != Kind::Embedded).then(|| remote::Remote::new(kind, test)),
        }
    }

    /// The store, empty at the first call, with `clock` as its clock (the
    /// backend's own without one).
    fn open(&self, clock: Option<&ManualClock>) -> Store {
        *self.clock.lock().expect("clock") = clock.cloned();
        self.connect()
    }

    /// The same store again, as after a restart: the embedded `Db` is
    /// closed and reopened; a remote one gets new connections.
    fn reopen(&self) -> Store {
        if let Some(db) = self.db.lock().expect("db").take() {
            db.close().expect("close");
        }
        self.connect()
    }

    fn connect(&self) -> Store {
        let clock = self.clock.lock().expect("clock").clone();
        #[cfg(feature = "redis")]
        if let Some(r) = &self.remote {
            return r.open(clock.as_ref());
        }
        let mut o = Options::new().sync_policy(SyncPolicy::Never);
        if let Some(c) = clock {
            o = o.clock(c);
        }
        let db = o.open(self.dir.path()).expect("open store");
        *self.db.lock().expect("db") = Some(db.clone());
        Store::from(db)
    }

    /// `n` operations on the embedded store, fewer on a server, where
    /// each is a network round trip or two (the races are the same; the
    /// run is shorter).
    fn scaled(&self, n: usize) -> usize {
        if self.kind == Kind::Embedded {
            n
        } else {
            n.div_ceil(REMOTE_DIVISOR)
        }
    }
}

/// How many records under `prefix` the store holds.
fn count(store: &Store, prefix: &[u8]) -> usize {
    let mut n = 0;
    store.scan(prefix, |_, _, _| n += 1).expect("scan");
    n
}

/// The session records (`s…`) and user indexes (`u…`) in `store`, less
/// any other key (a remote store also holds the sessions' tag salt).
fn session_keys(store: &Store) -> usize {
    count(store, b"s") + count(store, b"u")
}

#[cfg(feature = "redis")]
mod remote {
    use std::sync::{Arc, Mutex, Weak};

    use cairn::backend::resp::RespOptions;
    use cairn::backend::Store;
    use cairn::ManualClock;

    use super::common::servers::{CairnServe, RedisCluster, RedisServer};
    use super::Kind;

    enum Server {
        Redis(RedisServer),
        Cluster(RedisCluster),
        Serve(CairnServe),
    }

    /// The server of each kind, while some test holds it.
    static SERVERS: [Mutex<Weak<Server>>; 3] = [
        Mutex::new(Weak::new()),
        Mutex::new(Weak::new()),
        Mutex::new(Weak::new()),
    ];

    /// A namespace of its own on a shared server.
    pub struct Remote {
        server: Arc<Server>,
        namespace: String,
    }

    impl Remote {
        pub fn new(kind: Kind, test: &str) -> Remote {
            let (slot, start): (usize, fn() -> Server) = match kind {
                Kind::RedisServer => (0, || Server::Redis(RedisServer::start())),
                Kind::RedisCluster => (1, || Server::Cluster(RedisCluster::start(3, 0))),
                Kind::CairnServe => (2, || Server::Serve(CairnServe::start())),
                Kind::Embedded => unreachable!("not a server"),
            };
            let mut held = SERVERS[slot].lock().unwrap_or_else(|e| e.into_inner());
            let server = held.upgrade().unwrap_or_else(|| {
                let s = Arc::new(start());
                *held = Arc::downgrade(&s);
                s
            });
            Remote {
                server,
                namespace: test.to_owned(),
            }
        }

        pub fn open(&self, clock: Option<&ManualClock>) -> Store {
            let mut o = match &*self.server {
                Server::Redis(s) => RespOptions::new(&s.url()),
                Server::Cluster(c) => RespOptions::cluster(c.urls()),
                Server::Serve(s) => RespOptions::new(&s.url()),
            };
            if let Some(c) = clock {
                o = o.clock(c.clone());
            }
            Store::from(o.open().expect("connect").namespace(&self.namespace))
        }
    }
}

/// One `#[test]` per body in a module named after the backend.
macro_rules! tests_on {
    ($module:ident, $kind:ident, $($test:ident),*) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::Fixture::new(super::Kind::$kind, stringify!($test)));
                }
            )*
        }
    };
}

/// Runs each body on every backend.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        tests_on!(embedded, Embedded, $($test),*);
        #[cfg(feature = "redis")]
        tests_on!(redis_server, RedisServer, $($test),*);
        #[cfg(feature = "redis")]
        tests_on!(redis_cluster, RedisCluster, $($test),*);
        #[cfg(feature = "redis")]
        tests_on!(cairn_serve, CairnServe, $($test),*);
    };
}

on_every_backend!(
    singleflight_runs_the_loader_once_and_shares_its_value,
    singleflight_shares_one_error_and_caches_nothing,
    singleflight_waiters_take_over_when_the_leader_panics,
    async_singleflight_shares_one_load_across_executors,
    async_singleflight_shares_one_error,
    async_waiters_take_over_when_the_leading_future_is_dropped,
    rotate_racing_get_never_revives_an_old_id_or_leaks_another_session,
    two_threads_rotating_one_id_exactly_one_wins,
    fixed_window_admits_exactly_its_limit_from_many_threads,
    gcra_admits_exactly_its_burst_from_many_threads,
    idempotency_racing_begins_have_one_winner_then_all_see_the_outcome,
    idempotency_racing_completes_and_aborts_have_one_winner,
    a_claim_taken_over_after_its_lease_cannot_complete_or_abort,
    concurrent_creates_give_distinct_gettable_sessions,
    concurrent_creates_for_one_user_lose_no_index_update,
    cache_capacity_holds_under_concurrent_inserts,
    cache_capacity_with_admission_holds_under_concurrent_inserts,
    cache_tiny_capacity_holds_under_concurrent_inserts,
    cache_tiny_capacity_with_admission_holds_under_concurrent_inserts,
);

// ----- helpers -----------------------------------------------------------------

/// Runs `f` on its own thread and fails the test if it has not finished
/// within `limit` (a waiter that is never woken hangs instead of failing).
fn with_deadline<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = mpsc::channel();
    let h = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => {
            h.join().expect("test body thread");
            v
        }
        Err(RecvTimeoutError::Timeout) => {
            panic!("{what}: not finished after {limit:?}: a caller hangs")
        }
        Err(RecvTimeoutError::Disconnected) => match h.join() {
            Err(p) => std::panic::resume_unwind(p),
            Ok(()) => unreachable!("the body sent nothing but returned"),
        },
    }
}

/// Waits until `cond` holds; panics after 10 s.
fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `n` read-through calls have counted their miss, that is,
/// have all reached the point where they choose to load or to wait.
fn wait_for_misses(cache: &Cache, n: usize) {
    wait_until(&format!("{n} misses are counted"), || {
        cache.stats().misses >= n as u64
    });
}

/// A loader error that is neither `Clone` nor `Copy`, so that sharing it
/// can only happen through the cache's `Arc`.
#[derive(Debug)]
struct Boom(usize);

// ----- a minimal executor ------------------------------------------------------

struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread, parking between polls until its waker is
/// woken. A lost wake-up parks forever (hence `with_deadline`).
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// A condition that futures can await, opened once by another thread.
#[derive(Default)]
struct Gate {
    state: Mutex<(bool, Vec<Waker>)>,
}

impl Gate {
    fn open(&self) {
        let wakers = {
            let mut s = self.state.lock().expect("gate lock");
            s.0 = true;
            std::mem::take(&mut s.1)
        };
        for w in wakers {
            w.wake();
        }
    }

    fn wait(self: &Arc<Self>) -> GateWait {
        GateWait(self.clone())
    }
}

struct GateWait(Arc<Gate>);

impl Future for GateWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock().expect("gate lock");
        if s.0 {
            Poll::Ready(())
        } else {
            s.1.push(cx.waker().clone());
            Poll::Pending
        }
    }
}

// ----- 1. singleflight, blocking ------------------------------------------------

const FLIGHT_THREADS: usize = 16;

fn singleflight_runs_the_loader_once_and_shares_its_value(fx: &Fixture) {
    let cache = Cache::open(fx.open(None)).expect("cache");
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(FLIGHT_THREADS));
    let handles: Vec<_> = (0..FLIGHT_THREADS)
        .map(|i| {
            let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
            thread::spawn(move || {
                barrier.wait();
                cache.get_or_insert_with("page", HOUR, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    wait_for_misses(&cache, FLIGHT_THREADS);
                    thread::sleep(Duration::from_millis(50));
                    // Each thread's loader returns its own value, so that
                    // "the same value" means "the leader's value".
                    Ok::<_, Boom>(format!("loaded by {i}").into_bytes())
                })
            })
        })
        .collect();
    let results: Vec<Vec<u8>> = handles
        .into_iter()
        .map(|h| h.join().expect("thread").expect("load"))
        .collect();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    assert!(
        results.iter().all(|v| *v == results[0]),
        "threads got different values: {:?}",
        results
            .iter()
            .map(|v| String::from_utf8_lossy(v))
            .collect::<Vec<_>>()
    );
    let s = cache.stats();
    assert_eq!((s.loads, s.load_errors), (1, 0));
    assert_eq!(cache.get("page").expect("get"), Some(results[0].clone()));
}

fn singleflight_shares_one_error_and_caches_nothing(fx: &Fixture) {
    let cache = Cache::open(fx.open(None)).expect("cache");
    let calls = Arc::new(AtomicUsize::new(0));
    let leader = Arc::new(AtomicUsize::new(usize::MAX));
    let barrier = Arc::new(Barrier::new(FLIGHT_THREADS));
    let handles: Vec<_> = (0..FLIGHT_THREADS)
        .map(|i| {
            let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
            let leader = leader.clone();
            thread::spawn(move || {
                barrier.wait();
                cache.get_or_insert_with("page", HOUR, || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    leader.store(i, Ordering::SeqCst);
                    wait_for_misses(&cache, FLIGHT_THREADS);
                    thread::sleep(Duration::from_millis(50));
                    Err::<Vec<u8>, _>(Boom(i))
                })
            })
        })
        .collect();
    let errors: Vec<Arc<Boom>> = handles
        .into_iter()
        .map(|h| match h.join().expect("thread") {
            Err(LoadError::Loader(e)) => e,
            other => panic!("expected the loader's error, got {other:?}"),
        })
        .collect();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    assert_eq!(
        errors[0].0,
        leader.load(Ordering::SeqCst),
        "the leader's error"
    );
    for e in &errors {
        assert!(
            Arc::ptr_eq(e, &errors[0]),
            "waiters got different errors: {:?} and {:?}",
            e,
            errors[0]
        );
    }
    let s = cache.stats();
    assert_eq!((s.loads, s.load_errors, s.entries), (0, 1, 0));
    // Nothing was cached: the next call loads again.
    assert_eq!(cache.get("page").expect("get"), None);
    let v = cache
        .get_or_insert_with("page", HOUR, || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, Boom>(b"second try".to_vec())
        })
        .expect("second load");
    assert_eq!(v, b"second try");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn singleflight_waiters_take_over_when_the_leader_panics(fx: &Fixture) {
    let store = fx.open(None);
    with_deadline("panicking leader", Duration::from_secs(20), move || {
        let cache = Cache::open(store).expect("cache");
        let calls = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(FLIGHT_THREADS));
        let handles: Vec<_> = (0..FLIGHT_THREADS)
            .map(|i| {
                let (cache, calls, barrier) = (cache.clone(), calls.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    catch_unwind(AssertUnwindSafe(|| {
                        cache.get_or_insert_with("page", HOUR, || {
                            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                                wait_for_misses(&cache, FLIGHT_THREADS);
                                thread::sleep(Duration::from_millis(20));
                                panic!("the leader's loader panics (expected by the test)");
                            }
                            // The takeover: wait until every waiter has come
                            // back (one more miss each), so that a second
                            // takeover would be a real failure.
                            wait_for_misses(&cache, 2 * FLIGHT_THREADS - 1);
                            thread::sleep(Duration::from_millis(30));
                            Ok::<_, Boom>(format!("loaded by {i}").into_bytes())
                        })
                    }))
                })
            })
            .collect();
        let mut panicked = 0;
        let mut values = Vec::new();
        for h in handles {
            match h.join().expect("thread") {
                Err(_) => panicked += 1,
                Ok(r) => values.push(r.expect("load")),
            }
        }
        assert_eq!(panicked, 1, "exactly the leader panics");
        assert_eq!(values.len(), FLIGHT_THREADS - 1);
        assert!(values.iter().all(|v| *v == values[0]), "values differ");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "one panicking load and one takeover"
        );
        assert_eq!(cache.get("page").expect("get"), Some(values[0].clone()));
    });
}

// ----- 2. singleflight, async ----------------------------------------------------

const ASYNC_THREADS: usize = 8;

fn async_singleflight_shares_one_load_across_executors(fx: &Fixture) {
    let store = fx.open(None);
    with_deadline("async singleflight", Duration::from_secs(20), move || {
        let cache = Cache::open(store).expect("cache");
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::default());
        let barrier = Arc::new(Barrier::new(ASYNC_THREADS));
        let handles: Vec<_> = (0..ASYNC_THREADS)
            .map(|i| {
                let (cache, calls, gate, barrier) =
                    (cache.clone(), calls.clone(), gate.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    block_on(cache.get_or_insert_with_async("page", HOUR, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.wait().await;
                        Ok::<_, Boom>(format!("loaded by {i}").into_bytes())
                    }))
                })
            })
            .collect();
        // Every caller has chosen to load or to wait, and the leader's
        // future is pending on the gate: let it finish.
        wait_for_misses(&cache, ASYNC_THREADS);
        wait_until("the loader started", || calls.load(Ordering::SeqCst) >= 1);
        thread::sleep(Duration::from_millis(30));
        gate.open();
        let values: Vec<Vec<u8>> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("load"))
            .collect();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the loader ran more than once"
        );
        assert!(values.iter().all(|v| *v == values[0]), "values differ");
        assert_eq!(cache.stats().loads, 1);
    });
}

fn async_singleflight_shares_one_error(fx: &Fixture) {
    let store = fx.open(None);
    with_deadline(
        "async singleflight error",
        Duration::from_secs(20),
        move || {
            let cache = Cache::open(store).expect("cache");
            let calls = Arc::new(AtomicUsize::new(0));
            let leader = Arc::new(AtomicUsize::new(usize::MAX));
            let gate = Arc::new(Gate::default());
            let barrier = Arc::new(Barrier::new(ASYNC_THREADS));
            let handles: Vec<_> = (0..ASYNC_THREADS)
                .map(|i| {
                    let (cache, calls, gate, barrier) =
                        (cache.clone(), calls.clone(), gate.clone(), barrier.clone());
                    let leader = leader.clone();
                    thread::spawn(move || {
                        barrier.wait();
                        block_on(cache.get_or_insert_with_async("page", HOUR, || async move {
                            calls.fetch_add(1, Ordering::SeqCst);
                            leader.store(i, Ordering::SeqCst);
                            gate.wait().await;
                            Err::<Vec<u8>, _>(Boom(i))
                        }))
                    })
                })
                .collect();
            wait_for_misses(&cache, ASYNC_THREADS);
            wait_until("the loader started", || calls.load(Ordering::SeqCst) >= 1);
            thread::sleep(Duration::from_millis(30));
            gate.open();
            let errors: Vec<Arc<Boom>> = handles
                .into_iter()
                .map(|h| match h.join().expect("thread") {
                    Err(LoadError::Loader(e)) => e,
                    other => panic!("expected the loader's error, got {other:?}"),
                })
                .collect();
            assert_eq!(calls.load(Ordering::SeqCst), 1);
            assert_eq!(
                errors[0].0,
                leader.load(Ordering::SeqCst),
                "the leader's error"
            );
            assert!(errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])));
            assert_eq!(cache.stats().entries, 0);
            assert_eq!(cache.get("page").expect("get"), None);
        },
    );
}

fn async_waiters_take_over_when_the_leading_future_is_dropped(fx: &Fixture) {
    let store = fx.open(None);
    with_deadline("dropped async leader", Duration::from_secs(20), move || {
        let cache = Cache::open(store).expect("cache");
        let calls = Arc::new(AtomicUsize::new(0));
        let waiters = ASYNC_THREADS - 1;
        let start = Arc::new(Barrier::new(ASYNC_THREADS));

        let leader = {
            let (cache, calls, start) = (cache.clone(), calls.clone(), start.clone());
            thread::spawn(move || {
                let never = Arc::new(Gate::default());
                let mut fut = Box::pin(cache.get_or_insert_with_async("page", HOUR, || {
                    let calls = calls.clone();
                    async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        never.wait().await;
                        Ok::<_, Boom>(b"never".to_vec())
                    }
                }));
                let mut cx = Context::from_waker(Waker::noop());
                // On a remote store the first polls await the offloaded
                // read; poll until the loader runs.
                let polled = Instant::now();
                while calls.load(Ordering::SeqCst) == 0 {
                    assert!(fut.as_mut().poll(&mut cx).is_pending());
                    assert!(polled.elapsed() < Duration::from_secs(10), "no load");
                    thread::sleep(Duration::from_millis(1));
                }
                assert_eq!(calls.load(Ordering::SeqCst), 1, "this future leads");
                start.wait();
                wait_for_misses(&cache, 1 + waiters);
                thread::sleep(Duration::from_millis(20));
                drop(fut); // cancelled mid-load
            })
        };
        let handles: Vec<_> = (0..waiters)
            .map(|i| {
                let (cache, calls, start) = (cache.clone(), calls.clone(), start.clone());
                thread::spawn(move || {
                    start.wait();
                    let c = cache.clone();
                    block_on(cache.get_or_insert_with_async("page", HOUR, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        // Wait for every waiter's second attempt.
                        wait_for_misses(&c, 1 + 2 * waiters);
                        thread::sleep(Duration::from_millis(30));
                        Ok::<_, Boom>(format!("loaded by {i}").into_bytes())
                    }))
                })
            })
            .collect();
        leader.join().expect("leader thread");
        let values: Vec<Vec<u8>> = handles
            .into_iter()
            .map(|h| h.join().expect("thread").expect("load"))
            .collect();
        assert!(values.iter().all(|v| *v == values[0]), "values differ");
        assert_ne!(values[0], b"never");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the cancelled load and exactly one takeover"
        );
    });
}

// ----- 3. session rotation racing reads ----------------------------------------

fn rotate_racing_get_never_revives_an_old_id_or_leaks_another_session(fx: &Fixture) {
    const CHAINS: usize = 3;
    const ROTATIONS: usize = 300;
    const READERS: usize = 4;
    let sessions = Sessions::new(fx.open(None));
    let data = |c: usize| format!("data of chain {c}").into_bytes();
    let user = |c: usize| format!("user-{c}");
    // history[c][j + 1] is what rotate(history[c][j]) returned; an id is
    // pushed only after its rotate call returned.
    let history: Arc<Vec<Mutex<Vec<String>>>> = Arc::new(
        (0..CHAINS)
            .map(|c| {
                let id = sessions
                    .create_for_user(&user(c), data(c), HOUR)
                    .expect("create");
                Mutex::new(vec![id.into_string()])
            })
            .collect(),
    );
    let rotators_left = Arc::new(AtomicUsize::new(CHAINS));
    let barrier = Arc::new(Barrier::new(CHAINS + READERS));

    let rotators: Vec<_> = (0..CHAINS)
        .map(|c| {
            let (sessions, history, left, barrier) = (
                sessions.clone(),
                history.clone(),
                rotators_left.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                barrier.wait();
                for _ in 0..ROTATIONS {
                    let cur = history[c].lock().expect("history").last().cloned();
                    let cur = cur.expect("non-empty");
                    let new = sessions.rotate(&cur).expect("rotate").expect("live");
                    history[c].lock().expect("history").push(new.into_string());
                }
                left.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let (sessions, history, left, barrier) = (
                sessions.clone(),
                history.clone(),
                rotators_left.clone(),
                barrier.clone(),
            );
            thread::spawn(move || {
                let mut rng = Rng::new(r as u64 + 1);
                let (mut checks, mut retired_checks) = (0usize, 0usize);
                barrier.wait();
                // While the rotators run, and at least 200 checks each (on a
                // fast build the rotators can finish before a reader starts).
                while left.load(Ordering::SeqCst) > 0 || checks < 200 {
                    let c = rng.below_usize(CHAINS);
                    // Decide whether the id is retired *before* reading it.
                    let (id, retired) = {
                        let h = history[c].lock().expect("history");
                        // Mostly recent ids, where the races are.
                        let back = rng.below_usize(4.min(h.len()));
                        let j = if rng.below_usize(4) == 0 {
                            rng.below_usize(h.len())
                        } else {
                            h.len() - 1 - back
                        };
                        (h[j].clone(), j + 1 < h.len())
                    };
                    let got = if rng.below_usize(2) == 0 {
                        sessions.get(&id).expect("get")
                    } else {
                        sessions.get_and_touch(&id).expect("get_and_touch")
                    };
                    if retired {
                        retired_checks += 1;
                        assert!(
                            got.is_none(),
                            "chain {c}: an id whose rotation had returned is still live"
                        );
                    }
                    if let Some(s) = got {
                        assert_eq!(s.data, data(c), "chain {c}: another session's data");
                        assert_eq!(s.user.as_deref(), Some(user(c).as_str()));
                    }
                    checks += 1;
                }
                (checks, retired_checks)
            })
        })
        .collect();
    for h in rotators {
        h.join().expect("rotator");
    }
    let (mut checks, mut retired_checks) = (0, 0);
    for h in readers {
        let (c, r) = h.join().expect("reader");
        checks += c;
        retired_checks += r;
    }
    assert!(
        checks > 0 && retired_checks > 0,
        "the readers checked nothing"
    );

    for (c, h) in history.iter().enumerate() {
        let h = h.lock().expect("history");
        assert_eq!(h.len(), ROTATIONS + 1);
        assert_eq!(
            h.iter().collect::<HashSet<_>>().len(),
            h.len(),
            "an id came twice"
        );
        let (last, old) = h.split_last().expect("non-empty");
        for id in old {
            assert_eq!(
                sessions.get(id).expect("get"),
                None,
                "chain {c}: old id live"
            );
        }
        let s = sessions
            .get(last)
            .expect("get")
            .expect("the last id is live");
        assert_eq!(s.data, data(c));
        let listed: Vec<String> = sessions
            .list_for_user(&user(c))
            .expect("list")
            .into_iter()
            .map(|(handle, _)| handle.as_str().to_owned())
            .collect();
        // A handle is the first 16 characters of its id.
        assert_eq!(listed, [last[..16].to_owned()], "chain {c}: the user index");
    }
    // One live session record per chain, no leftovers.
    assert_eq!(count(sessions.store(), b"s"), CHAINS);
}

fn two_threads_rotating_one_id_exactly_one_wins(fx: &Fixture) {
    const ROUNDS: usize = 200;
    let sessions = Sessions::new(fx.open(None));
    for round in 0..ROUNDS {
        let user = format!("user-{}", round % 5);
        let id = sessions
            .create_for_user(&user, format!("round {round}"), HOUR)
            .expect("create");
        let barrier = Barrier::new(2);
        let results: Vec<Option<String>> = thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        sessions
                            .rotate(id.as_str())
                            .expect("rotate")
                            .map(|i| i.into_string())
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("thread")).collect()
        });
        let winners: Vec<&String> = results.iter().flatten().collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert_eq!(sessions.get(id.as_str()).expect("get"), None);
        let s = sessions.get(winners[0]).expect("get").expect("live");
        assert_eq!(s.data, format!("round {round}").into_bytes());
    }
    // Every user's index lists exactly its live sessions.
    let mut listed = 0;
    for u in 0..5 {
        listed += sessions
            .list_for_user(&format!("user-{u}"))
            .expect("list")
            .len();
    }
    assert_eq!(listed, ROUNDS);
    assert_eq!(session_keys(sessions.store()), ROUNDS + 5);
}

// ----- 4. limiters ---------------------------------------------------------------

const LIMIT_THREADS: usize = 8;
const CHECKS_PER_THREAD: usize = 50;

/// Runs `check` from `LIMIT_THREADS` threads, `CHECKS_PER_THREAD` times
/// each, and returns the `remaining` of every allowed decision.
fn hammer(check: impl Fn() -> cairn::limits::Decision + Send + Sync) -> (Vec<u64>, usize) {
    let barrier = Barrier::new(LIMIT_THREADS);
    let decisions: Vec<cairn::limits::Decision> = thread::scope(|s| {
        let hs: Vec<_> = (0..LIMIT_THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    (0..CHECKS_PER_THREAD).map(|_| check()).collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let mut allowed: Vec<u64> = decisions
        .iter()
        .filter(|d| d.allowed)
        .map(|d| d.remaining)
        .collect();
    allowed.sort_unstable();
    let refused = decisions.iter().filter(|d| !d.allowed).count();
    for d in decisions.iter().filter(|d| !d.allowed) {
        assert_eq!(d.remaining, 0, "a refusal with allowance left: {d:?}");
        assert!(d.retry_after > Duration::ZERO);
    }
    (allowed, refused)
}

fn fixed_window_admits_exactly_its_limit_from_many_threads(fx: &Fixture) {
    let clock = ManualClock::new(1_700_000_000_000);
    let fw = FixedWindow::new(fx.open(Some(&clock)), "api", 100, HOUR).expect("limiter");
    let (allowed, refused) = hammer(|| fw.check("client").expect("check"));
    assert_eq!(allowed.len(), 100, "allowed");
    assert_eq!(refused, LIMIT_THREADS * CHECKS_PER_THREAD - 100);
    // Each admission saw the count left by the one before it.
    assert_eq!(allowed, (0..100).collect::<Vec<u64>>());
    assert!(!fw.check("client").expect("check").allowed);
    assert!(fw.check("other").expect("check").allowed);
}

fn gcra_admits_exactly_its_burst_from_many_threads(fx: &Fixture) {
    let clock = ManualClock::new(1_700_000_000_000);
    let gcra = Gcra::new(fx.open(Some(&clock)), "api", 50, HOUR).expect("limiter");
    let (allowed, refused) = hammer(|| gcra.check("client").expect("check"));
    assert_eq!(allowed.len(), 50, "allowed");
    assert_eq!(refused, LIMIT_THREADS * CHECKS_PER_THREAD - 50);
    assert_eq!(allowed, (0..50).collect::<Vec<u64>>());
    // One more unit after one emission interval (72 s), not before.
    clock.advance(Duration::from_secs(71));
    assert!(!gcra.check("client").expect("check").allowed);
    clock.advance(Duration::from_secs(1));
    assert!(gcra.check("client").expect("check").allowed);
}

// ----- 5. idempotency keys ---------------------------------------------------------

fn idempotency_racing_begins_have_one_winner_then_all_see_the_outcome(fx: &Fixture) {
    const THREADS: usize = 8;
    const ROUNDS: usize = 50;
    let clock = ManualClock::new(1_700_000_000_000);
    let idem = Idempotency::new(fx.open(Some(&clock)));
    let barrier = Barrier::new(THREADS);
    // Per thread, per round: (first begin, whether it completed, begin after).
    type Round = (Begin, bool, Begin);
    let per_thread: Vec<Vec<Round>> = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (idem, barrier) = (&idem, &barrier);
                s.spawn(move || {
                    let mut out = Vec::new();
                    for round in 0..ROUNDS {
                        let key = format!("order-{round}");
                        barrier.wait();
                        let first = idem.begin(&key, HOUR).expect("begin");
                        barrier.wait();
                        let completed = match &first {
                            Begin::Started(claim) => idem
                                .complete(claim, format!("outcome {round} by {t}"))
                                .expect("complete"),
                            _ => false,
                        };
                        barrier.wait();
                        let after = idem.begin(&key, HOUR).expect("begin");
                        out.push((first, completed, after));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    for round in 0..ROUNDS {
        let rows: Vec<&Round> = per_thread.iter().map(|r| &r[round]).collect();
        let winners: Vec<usize> = (0..THREADS)
            .filter(|&t| matches!(rows[t].0, Begin::Started(_)))
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        let w = winners[0];
        assert!(rows[w].1, "round {round}: the winner's complete failed");
        for (t, row) in rows.iter().enumerate() {
            if t != w {
                assert_eq!(
                    row.0,
                    Begin::InProgress {
                        started_unix_ms: 1_700_000_000_000
                    },
                    "round {round}, thread {t}"
                );
            }
            assert_eq!(
                row.2,
                Begin::Completed(format!("outcome {round} by {w}").into_bytes()),
                "round {round}, thread {t}"
            );
        }
    }
}

fn idempotency_racing_completes_and_aborts_have_one_winner(fx: &Fixture) {
    const ROUNDS: usize = 200;
    let idem = Idempotency::new(fx.open(None));
    for round in 0..ROUNDS {
        let key = format!("k{round}");
        let Begin::Started(claim) = idem.begin(&key, HOUR).expect("begin") else {
            panic!("round {round}: a fresh key must start");
        };
        let barrier = Barrier::new(2);
        // Two completes race; on odd rounds a complete races an abort.
        let (a, b) = thread::scope(|s| {
            let a = s.spawn(|| {
                barrier.wait();
                idem.complete(&claim, b"A").expect("complete")
            });
            let b = s.spawn(|| {
                barrier.wait();
                if round % 2 == 0 {
                    idem.complete(&claim, b"B").expect("complete")
                } else {
                    idem.abort(&claim).expect("abort")
                }
            });
            (a.join().expect("a"), b.join().expect("b"))
        });
        assert!(
            a ^ b,
            "round {round}: exactly one must win, got {a} and {b}"
        );
        let after = idem.begin(&key, HOUR).expect("begin");
        match (round % 2, a) {
            (_, true) => assert_eq!(after, Begin::Completed(b"A".to_vec()), "round {round}"),
            (0, false) => assert_eq!(after, Begin::Completed(b"B".to_vec()), "round {round}"),
            // The abort won: a retry starts over.
            _ => assert!(
                matches!(after, Begin::Started(_)),
                "round {round}: {after:?}"
            ),
        }
    }
}

fn a_claim_taken_over_after_its_lease_cannot_complete_or_abort(fx: &Fixture) {
    let clock = ManualClock::new(1_700_000_000_000);
    let idem = Idempotency::new(fx.open(Some(&clock))).lease(Duration::from_secs(10));
    let Begin::Started(first) = idem.begin("pay", HOUR).expect("begin") else {
        panic!("fresh key");
    };
    clock.advance(Duration::from_secs(11));
    let Begin::Started(second) = idem.begin("pay", HOUR).expect("begin") else {
        panic!("the lease ran out: a retry takes over");
    };
    // The first worker was only slow: it must not release or overwrite the
    // second one's claim.
    assert!(!idem.abort(&first).expect("abort"));
    assert!(!idem.complete(&first, b"first").expect("complete"));
    assert!(matches!(
        idem.begin("pay", HOUR).expect("begin"),
        Begin::InProgress { .. }
    ));
    assert!(idem.complete(&second, b"second").expect("complete"));
    assert_eq!(
        idem.begin("pay", HOUR).expect("begin"),
        Begin::Completed(b"second".to_vec())
    );
}

// ----- 6. creating sessions from many threads --------------------------------------

fn concurrent_creates_give_distinct_gettable_sessions(fx: &Fixture) {
    const THREADS: usize = 8;
    let per_thread = fx.scaled(500);
    let sessions = Sessions::new(fx.open(None));
    let barrier = Barrier::new(THREADS);
    let created: Vec<(String, Vec<u8>)> = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (sessions, barrier) = (&sessions, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..per_thread)
                        .map(|i| {
                            let data = format!("thread {t} session {i}").into_bytes();
                            let id = sessions.create(&data, HOUR).expect("create");
                            (id.into_string(), data)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    let ids: HashSet<&str> = created.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), THREADS * per_thread, "duplicate ids");
    for (id, data) in &created {
        let s = sessions
            .get(id)
            .expect("get")
            .expect("created session is live");
        assert_eq!(&s.data, data);
    }
    assert_eq!(count(sessions.store(), b""), THREADS * per_thread);
}

fn concurrent_creates_for_one_user_lose_no_index_update(fx: &Fixture) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 40;
    let sessions = Sessions::new(fx.open(None));
    let barrier = Barrier::new(THREADS);
    let created: HashSet<String> = thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|t| {
                let (sessions, barrier) = (&sessions, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..PER_THREAD)
                        .map(|i| {
                            sessions
                                .create_for_user("ada", format!("{t}/{i}"), HOUR)
                                .expect("create")
                                .into_string()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(created.len(), THREADS * PER_THREAD);
    let listed: HashSet<String> = sessions
        .list_for_user("ada")
        .expect("list")
        .into_iter()
        .map(|(handle, _)| handle.as_str().to_owned())
        .collect();
    assert_eq!(
        listed.len(),
        created.len(),
        "sessions missing from the index"
    );
    // A handle is the first 16 characters of its id.
    let created: HashSet<String> = created.iter().map(|id| id[..16].to_owned()).collect();
    assert_eq!(listed, created);
    assert_eq!(
        sessions.revoke_all_for_user("ada").expect("revoke all"),
        (THREADS * PER_THREAD) as u64
    );
    assert_eq!(session_keys(sessions.store()), 0);
}

// ----- 7. cache capacity under concurrent inserts -----------------------------------

fn cache_opts(max_entries: u64, admission: bool) -> CacheOptions {
    CacheOptions::new()
        .max_entries(max_entries)
        .admission(admission)
        .seed(7)
}

/// Entries the cache's store actually holds.
fn stored_entries(cache: &Cache) -> usize {
    count(cache.store(), b"d")
}

/// Inserts `threads × per_thread` distinct keys from `threads` threads into
/// a cache of `max_entries`, then checks that the cache's count, the
/// store's content and a reopened cache agree. With the admission check,
/// most inserts of never-read keys are refused; without it, every insert
/// evicts.
fn check_capacity(
    fx: &Fixture,
    max_entries: u64,
    threads: usize,
    per_thread: usize,
    admission: bool,
) {
    let per_thread = fx.scaled(per_thread);
    let cache = cache_opts(max_entries, admission)
        .open(fx.open(None))
        .expect("cache");
    let barrier = Barrier::new(threads);
    thread::scope(|s| {
        for t in 0..threads {
            let (cache, barrier) = (&cache, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..per_thread {
                    cache
                        .insert(format!("t{t}-k{i}"), [b'v'; 32], None)
                        .expect("insert");
                }
            });
        }
    });
    let stats = cache.stats();
    let stored = stored_entries(&cache);
    assert!(
        stats.entries <= max_entries,
        "{} entries over a capacity of {max_entries}",
        stats.entries
    );
    assert_eq!(
        stored as u64, stats.entries,
        "the store holds {stored} entries, the cache counts {} (evictions {})",
        stats.entries, stats.evictions
    );
    assert_eq!(
        stats.evictions + stats.entries + stats.rejections,
        (threads * per_thread) as u64,
        "every insert is held, evicted or refused admission"
    );
    drop(cache);

    let cache = cache_opts(max_entries, admission)
        .open(fx.reopen())
        .expect("reopen cache");
    let reopened = cache.stats();
    assert_eq!(
        (reopened.entries, reopened.evictions),
        (stats.entries, 0),
        "after a restart: evictions were not durable"
    );
    assert_eq!(stored_entries(&cache) as u64, stats.entries);
}

fn cache_capacity_holds_under_concurrent_inserts(fx: &Fixture) {
    check_capacity(fx, 100, 8, 500, false);
}

fn cache_capacity_with_admission_holds_under_concurrent_inserts(fx: &Fixture) {
    check_capacity(fx, 100, 8, 500, true);
}

/// The same with a capacity smaller than the number of writers, so that an
/// insert's victim is often another thread's insert still in flight.
fn cache_tiny_capacity_holds_under_concurrent_inserts(fx: &Fixture) {
    check_capacity(fx, 4, 8, 500, false);
}

fn cache_tiny_capacity_with_admission_holds_under_concurrent_inserts(fx: &Fixture) {
    check_capacity(fx, 4, 8, 500, true);
}

#[test]
fn helpers_detect_what_they_should() {
    // with_deadline must fail on a hang, or the hang tests could not fail.
    let hung = catch_unwind(|| {
        with_deadline("a sleeper", Duration::from_millis(50), || {
            thread::sleep(Duration::from_millis(500))
        })
    });
    assert!(hung.is_err());
    // block_on must return a value whose waker fires from another thread.
    let gate = Arc::new(Gate::default());
    let opener = {
        let gate = gate.clone();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            gate.open();
        })
    };
    let flag = AtomicBool::new(false);
    block_on(async {
        gate.wait().await;
        flag.store(true, Ordering::SeqCst);
    });
    opener.join().expect("opener");
    assert!(flag.load(Ordering::SeqCst));
}
