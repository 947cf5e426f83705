//! Model-based tests of the session, limits (rate limits and idempotency
//! keys) and cache modules: random operation sequences, with clock
//! advances and restarts, checked step by step against plain in-memory
//! models.
//!
//! One suite, several backends: every model runs, with the same
//! operations and the same assertions, on the embedded store (clean
//! reopens and simulated process crashes: opening a copy of the files
//! taken while the store is open), and through the RESP backend on a real
//! `redis-server`, a 3-master Redis Cluster and `cairn serve` (each
//! started once per test function; each case gets its own empty key
//! namespace). The few steps whose meaning differs on a remote store say
//! so where they are skipped.
//!
//! `CAIRN_MODEL_CASES=2000 cargo test --release --all-features --test
//! modules_model` runs a longer soak (the default is 64 cases per module
//! on the embedded store); `CAIRN_MODEL_REMOTE_CASES` sets the cases per
//! module on each server (default 16).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn::backend::resp::{RespBackend, RespOptions};
use cairn::backend::{Key, Store};
use cairn::cache::{Cache, CacheOptions};
use cairn::limits::{Begin, Claim, FixedWindow, Gcra, Idempotency};
use cairn::session::{SessionId, Sessions};
use cairn::{Db, ManualClock, Options, SyncPolicy};
use common::servers::{CairnServe, RedisCluster, RedisServer};
use common::START_MS;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Where the modules' keys live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A `Db` in a temporary directory.
    Embedded,
    /// One `redis-server`.
    Redis,
    /// A Redis Cluster of 3 masters (no replicas).
    Cluster,
    /// `cairn serve` (the RESP backend's `WATCH` path).
    CairnServe,
}

impl Kind {
    fn is_remote(self) -> bool {
        self != Kind::Embedded
    }
}

fn env_cases(var: &str, default: u32) -> u32 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Cases per test function: a remote case costs round trips, so servers
/// get fewer by default.
fn cases(kind: Kind) -> u32 {
    if kind.is_remote() {
        env_cases("CAIRN_MODEL_REMOTE_CASES", 16)
    } else {
        env_cases("CAIRN_MODEL_CASES", 64)
    }
}

/// How a step restarts the store.
#[derive(Clone, Copy, Debug)]
enum Restart {
    /// `close()`, then open.
    Clean,
    /// Open a copy of the files taken while the store is open (what a
    /// `kill -9` leaves), then drop the original.
    Crash,
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

/// The server processes of one test function (none for the embedded
/// store), killed when it ends.
#[allow(dead_code)]
enum Process {
    None,
    Redis(RedisServer),
    Cluster(RedisCluster),
    Serve(CairnServe),
}

/// One test function's backend: its server, if any, and a counter that
/// gives each case a fresh key namespace (an empty keyspace without
/// restarting the server).
struct Server {
    kind: Kind,
    urls: Vec<String>,
    next_case: AtomicU64,
    _process: Process,
}

impl Server {
    fn start(kind: Kind) -> Server {
        let (urls, process) = match kind {
            Kind::Embedded => (Vec::new(), Process::None),
            Kind::Redis => {
                let s = RedisServer::start();
                (vec![s.url()], Process::Redis(s))
            }
            Kind::Cluster => {
                let c = RedisCluster::start(3, 0);
                (c.urls(), Process::Cluster(c))
            }
            Kind::CairnServe => {
                let s = CairnServe::start();
                (vec![s.url()], Process::Serve(s))
            }
        };
        Server {
            kind,
            urls,
            next_case: AtomicU64::new(0),
            _process: process,
        }
    }

    /// A new case's store, empty, at `START_MS` on its own clock.
    /// `policy` matters only on the embedded store.
    fn harness(&self, policy: SyncPolicy) -> Harness<'_> {
        let clock = ManualClock::new(START_MS);
        let conn = if self.kind.is_remote() {
            let case = self.next_case.fetch_add(1, Ordering::Relaxed);
            Conn::Remote {
                prefix: format!("model{case}:"),
                backend: None,
            }
        } else {
            let root = tempfile::tempdir().expect("tempdir");
            let dir = root.path().join("0");
            Conn::Embedded {
                root,
                dir,
                gen: 0,
                policy,
                db: None,
            }
        };
        let mut h = Harness {
            server: self,
            clock,
            conn,
        };
        h.open();
        h
    }
}

enum Conn {
    Embedded {
        root: tempfile::TempDir,
        dir: PathBuf,
        gen: u32,
        policy: SyncPolicy,
        db: Option<Db>,
    },
    Remote {
        prefix: String,
        backend: Option<RespBackend>,
    },
}

/// One case's store, which can be restarted, and its clock.
struct Harness<'a> {
    server: &'a Server,
    clock: ManualClock,
    conn: Conn,
}

impl Harness<'_> {
    fn open(&mut self) {
        match &mut self.conn {
            Conn::Embedded {
                dir, policy, db, ..
            } => {
                let options = || {
                    Options::new()
                        .sync_policy(*policy)
                        .clock(self.clock.clone())
                        .max_segment_bytes(8192)
                };
                // The other tests of this binary start servers: a child
                // process, between its fork and its exec, holds a copy of
                // every descriptor, and so the lock of a store just closed
                // (a flock is released when its last descriptor closes).
                // Wait for that exec rather than fail the reopen.
                let mut tries = 0;
                let opened = loop {
                    match options().open(&*dir) {
                        Err(cairn::Error::Locked { .. }) if tries < 100 => {
                            tries += 1;
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        r => break r.expect("open"),
                    }
                };
                *db = Some(opened);
            }
            Conn::Remote { prefix, backend } => {
                let options = match self.server.kind {
                    Kind::Cluster => RespOptions::cluster(&self.server.urls),
                    _ => RespOptions::new(&self.server.urls[0]),
                };
                *backend = Some(
                    options
                        .prefix(prefix)
                        .pool_size(2)
                        .clock(self.clock.clone())
                        .open()
                        .expect("connect"),
                );
            }
        }
    }

    /// The store of the module named `name` (a keyspace, or a namespace
    /// on the server).
    fn store(&self, name: &str) -> Store {
        match &self.conn {
            Conn::Embedded { db, .. } => {
                Store::from(db.as_ref().expect("open").keyspace(name).expect("keyspace"))
            }
            Conn::Remote { backend, .. } => {
                Store::from(backend.as_ref().expect("connected").namespace(name))
            }
        }
    }

    /// Restarts the store; the caller has dropped every module object.
    ///
    /// On the embedded store, `how` is a clean close or a process crash.
    /// On a remote store, a restart is what it is for an application
    /// (both kinds alike): the backend is dropped, a new one connects,
    /// and the modules open again (the cache reloads its tracker with
    /// `SCAN`). A crash of the *server* is not part of this test: what
    /// survives one is the server's durability (docs/durability.md).
    fn restart(&mut self, how: Restart) {
        match &mut self.conn {
            Conn::Embedded {
                root, dir, gen, db, ..
            } => match how {
                Restart::Clean => {
                    let db = db.take().expect("open");
                    db.close().expect("close");
                    drop(db);
                }
                Restart::Crash => {
                    *gen += 1;
                    let copy = root.path().join(gen.to_string());
                    copy_dir(dir, &copy);
                    drop(db.take());
                    *dir = copy;
                }
            },
            Conn::Remote { backend, .. } => drop(backend.take()),
        }
        self.open();
    }

    fn advance(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    fn now(&self) -> u64 {
        use cairn::Clock;
        self.clock.now_unix_ms()
    }
}

/// Runs `test` on `cases(kind)` generated values, on one server started
/// for the whole run; a failure panics with the shrunk input.
fn check<S>(kind: Kind, strategy: S, test: impl Fn(&Server, S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let server = Server::start(kind);
    let mut runner = TestRunner::new(Config {
        cases: cases(kind),
        source_file: Some(file!()),
        ..Config::default()
    });
    if let Err(e) = runner.run(&strategy, |v| test(&server, v)) {
        panic!("on {kind:?}: {e}");
    }
}

/// One test function per backend, in a module named `$name`: the same
/// strategy and the same `run_*` function on each.
macro_rules! on_every_backend {
    ($name:ident, $strategy:expr, $run:expr) => {
        mod $name {
            use super::*;

            #[test]
            fn embedded() {
                check(Kind::Embedded, $strategy, $run);
            }

            #[test]
            fn on_redis() {
                check(Kind::Redis, $strategy, $run);
            }

            #[test]
            fn on_cluster() {
                check(Kind::Cluster, $strategy, $run);
            }

            #[test]
            fn on_cairn_serve() {
                check(Kind::CairnServe, $strategy, $run);
            }
        }
    };
}

fn restart_strategy() -> impl Strategy<Value = Restart> {
    prop_oneof![Just(Restart::Clean), Just(Restart::Crash)]
}

/// The embedded store's sync policy. It has no meaning on a remote store
/// (the server decides what reaches its disk): there it is generated
/// and ignored.
fn policy_strategy() -> impl Strategy<Value = SyncPolicy> {
    prop_oneof![
        3 => Just(SyncPolicy::Always),
        1 => Just(SyncPolicy::EveryMillis(5)),
    ]
}

// ----- sessions -------------------------------------------------------------

#[derive(Clone, Debug)]
enum SOp {
    Create {
        user: Option<u8>,
        data: u8,
        ttl: u64,
    },
    Get(usize),
    Touch(usize),
    GetAndTouch(usize),
    Update(usize, u8),
    Rotate(usize),
    Revoke(usize),
    /// `revoke_for_user` with the handle of an id, for a user.
    RevokeHandle(usize, u8),
    RevokeAll(u8),
    List(u8),
    Advance(u64),
    Restart(Restart),
}

fn sop() -> impl Strategy<Value = SOp> {
    prop_oneof![
        4 => (proptest::option::of(0u8..3), any::<u8>(), 1u64..300)
            .prop_map(|(user, data, ttl)| SOp::Create { user, data, ttl }),
        3 => any::<usize>().prop_map(SOp::Get),
        2 => any::<usize>().prop_map(SOp::Touch),
        2 => any::<usize>().prop_map(SOp::GetAndTouch),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(i, d)| SOp::Update(i, d)),
        2 => any::<usize>().prop_map(SOp::Rotate),
        2 => any::<usize>().prop_map(SOp::Revoke),
        1 => (any::<usize>(), 0u8..3).prop_map(|(i, u)| SOp::RevokeHandle(i, u)),
        1 => (0u8..3).prop_map(SOp::RevokeAll),
        2 => (0u8..3).prop_map(SOp::List),
        3 => (0u64..200).prop_map(SOp::Advance),
        1 => restart_strategy().prop_map(SOp::Restart),
    ]
}

#[derive(Clone, Debug)]
struct MSession {
    data: Vec<u8>,
    user: Option<String>,
    created: u64,
    idle: u64,
    expires: u64,
}

const MAX_LIFETIME_MS: u64 = 500;

fn user_name(u: u8) -> String {
    format!("user-{u}")
}

fn run_sessions(
    server: &Server,
    (policy, ops): (SyncPolicy, Vec<SOp>),
) -> Result<(), TestCaseError> {
    let mut h = server.harness(policy);
    let open = |h: &Harness| {
        Sessions::new(h.store("sessions")).max_lifetime(Duration::from_millis(MAX_LIFETIME_MS))
    };
    let mut s = open(&h);
    // Every id handed out, live or not, and the model of the live ones.
    let mut ids: Vec<SessionId> = Vec::new();
    let mut model: BTreeMap<String, MSession> = BTreeMap::new();
    let pick = |ids: &Vec<SessionId>, i: usize| -> Option<SessionId> {
        (!ids.is_empty()).then(|| ids[i % ids.len()].clone())
    };
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.now();
        model.retain(|_, m| m.expires > now);
        match op {
            SOp::Create { user, data, ttl } => {
                let user = user.map(user_name);
                let id = match &user {
                    Some(u) => s.create_for_user(u, [data], Duration::from_millis(ttl)),
                    None => s.create([data], Duration::from_millis(ttl)),
                }
                .expect("create");
                prop_assert!(!model.contains_key(id.as_str()));
                model.insert(
                    id.as_str().to_string(),
                    MSession {
                        data: vec![data],
                        user,
                        created: now,
                        idle: ttl,
                        expires: (now + ttl).min(now + MAX_LIFETIME_MS),
                    },
                );
                ids.push(id);
            }
            SOp::Get(i) => {
                let Some(id) = pick(&ids, i) else { continue };
                let got = s.get(id.as_str()).expect("get");
                match model.get(id.as_str()) {
                    None => prop_assert!(got.is_none(), "step {step}: dead session returned"),
                    Some(m) => {
                        let g = got.expect("live session missing");
                        prop_assert_eq!(&g.data, &m.data);
                        prop_assert_eq!(&g.user, &m.user);
                        prop_assert_eq!(g.created_unix_ms, m.created);
                        prop_assert_eq!(g.expires_unix_ms, m.expires, "step {}", step);
                    }
                }
            }
            SOp::Touch(i) | SOp::GetAndTouch(i) => {
                let Some(id) = pick(&ids, i) else { continue };
                let got = s.get_and_touch(id.as_str()).expect("touch");
                match model.get_mut(id.as_str()) {
                    None => prop_assert!(got.is_none()),
                    Some(m) => {
                        let new = (now + m.idle).min(m.created + MAX_LIFETIME_MS);
                        m.expires = m.expires.max(new);
                        let g = got.expect("live session missing");
                        prop_assert_eq!(&g.data, &m.data);
                        prop_assert_eq!(g.expires_unix_ms, m.expires);
                        prop_assert!(g.expires_unix_ms <= m.created + MAX_LIFETIME_MS);
                    }
                }
            }
            SOp::Update(i, d) => {
                let Some(id) = pick(&ids, i) else { continue };
                let ok = s.update(id.as_str(), [d]).expect("update");
                match model.get_mut(id.as_str()) {
                    None => prop_assert!(!ok),
                    Some(m) => {
                        prop_assert!(ok);
                        m.data = vec![d];
                    }
                }
            }
            SOp::Rotate(i) => {
                let Some(id) = pick(&ids, i) else { continue };
                let new = s.rotate(id.as_str()).expect("rotate");
                match model.remove(id.as_str()) {
                    None => prop_assert!(new.is_none()),
                    Some(m) => {
                        let new = new.expect("rotated");
                        prop_assert_ne!(&new, &id);
                        model.insert(new.as_str().to_string(), m);
                        ids.push(new);
                        prop_assert!(s.get(id.as_str()).expect("get").is_none());
                    }
                }
            }
            SOp::Revoke(i) => {
                let Some(id) = pick(&ids, i) else { continue };
                let ok = s.revoke(id.as_str()).expect("revoke");
                prop_assert_eq!(ok, model.remove(id.as_str()).is_some());
            }
            SOp::RevokeHandle(i, u) => {
                let Some(id) = pick(&ids, i) else { continue };
                let user = user_name(u);
                let ok = s
                    .revoke_for_user(&user, id.handle().as_str())
                    .expect("revoke for user");
                // Only a live session of that very user goes.
                let theirs = model
                    .get(id.as_str())
                    .is_some_and(|m| m.user.as_deref() == Some(user.as_str()));
                prop_assert_eq!(ok, theirs, "step {}", step);
                if theirs {
                    model.remove(id.as_str());
                }
                prop_assert_eq!(
                    s.get(id.as_str()).expect("get").is_some(),
                    model.contains_key(id.as_str())
                );
            }
            SOp::RevokeAll(u) => {
                let user = user_name(u);
                let n = s.revoke_all_for_user(&user).expect("revoke all");
                let before = model.len();
                model.retain(|_, m| m.user.as_deref() != Some(user.as_str()));
                prop_assert_eq!(n, (before - model.len()) as u64);
            }
            SOp::List(u) => {
                let user = user_name(u);
                let listed: BTreeSet<String> = s
                    .list_for_user(&user)
                    .expect("list")
                    .into_iter()
                    .map(|(handle, _)| handle.as_str().to_owned())
                    .collect();
                // A handle is the first 16 characters of its id.
                let want: BTreeSet<String> = model
                    .iter()
                    .filter(|(_, m)| m.user.as_deref() == Some(user.as_str()))
                    .map(|(k, _)| k[..16].to_owned())
                    .collect();
                prop_assert_eq!(listed, want, "step {}", step);
            }
            SOp::Advance(ms) => h.advance(ms),
            SOp::Restart(how) => {
                drop(s);
                h.restart(how);
                s = open(&h);
            }
        }
    }
    Ok(())
}

on_every_backend!(
    sessions_match_the_model,
    (policy_strategy(), proptest::collection::vec(sop(), 1..60)),
    run_sessions
);

// ----- limits ---------------------------------------------------------------

#[derive(Clone, Debug)]
enum LOp {
    Fixed { key: u8, cost: u64 },
    Gcra { key: u8 },
    Advance(u64),
    Restart(Restart),
}

fn lop() -> impl Strategy<Value = LOp> {
    prop_oneof![
        4 => (0u8..3, 1u64..4).prop_map(|(key, cost)| LOp::Fixed { key, cost }),
        4 => (0u8..3).prop_map(|key| LOp::Gcra { key }),
        3 => (0u64..400).prop_map(LOp::Advance),
        1 => restart_strategy().prop_map(LOp::Restart),
    ]
}

const FW_LIMIT: u64 = 5;
const FW_WINDOW_MS: u64 = 1000;
const GCRA_LIMIT: u64 = 4;
const GCRA_PERIOD_MS: u64 = 1000;
const GCRA_BURST: u64 = 2;

fn run_limits(server: &Server, ops: Vec<LOp>) -> Result<(), TestCaseError> {
    let mut h = server.harness(SyncPolicy::Always);
    let open = |h: &Harness| {
        let ks = h.store("limits");
        let fw = FixedWindow::new(
            ks.clone(),
            "fw",
            FW_LIMIT,
            Duration::from_millis(FW_WINDOW_MS),
        )
        .expect("fixed window");
        let g = Gcra::new(
            ks,
            "gcra",
            GCRA_LIMIT,
            Duration::from_millis(GCRA_PERIOD_MS),
        )
        .expect("gcra")
        .burst(GCRA_BURST);
        (fw, g)
    };
    let (mut fw, mut g) = open(&h);
    // Fixed window model: key -> (count, window end).
    let mut windows: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    // GCRA: every allowed request's time, per key.
    let mut allowed: BTreeMap<u8, Vec<u64>> = BTreeMap::new();
    let interval = GCRA_PERIOD_MS / GCRA_LIMIT;
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.now();
        match op {
            LOp::Fixed { key, cost } => {
                let d = fw.check_n([key], cost).expect("check");
                let w = windows.entry(key).or_insert((0, now + FW_WINDOW_MS));
                if w.1 <= now {
                    *w = (0, now + FW_WINDOW_MS);
                }
                let ok = w.0 + cost <= FW_LIMIT;
                prop_assert_eq!(d.allowed, ok, "step {}", step);
                if ok {
                    w.0 += cost;
                    prop_assert_eq!(d.retry_after, Duration::ZERO);
                } else {
                    prop_assert_eq!(d.retry_after, Duration::from_millis(w.1 - now));
                }
                prop_assert_eq!(d.remaining, FW_LIMIT - w.0);
                prop_assert_eq!(d.reset_after, Duration::from_millis(w.1 - now));
                if w.0 == 0 {
                    windows.remove(&key);
                }
            }
            LOp::Gcra { key } => {
                let d = g.check([key]).expect("check");
                let times = allowed.entry(key).or_default();
                if d.allowed {
                    times.push(now);
                    // Never more than the burst plus what the rate allows,
                    // over any span ending now.
                    for (i, &t) in times.iter().enumerate() {
                        let in_span = (times.len() - i) as u64;
                        let cap = GCRA_BURST + (now - t) / interval;
                        prop_assert!(
                            in_span <= cap,
                            "step {}: {} allowed since {}, cap {}",
                            step,
                            in_span,
                            t,
                            cap
                        );
                    }
                    prop_assert_eq!(d.retry_after, Duration::ZERO);
                } else {
                    // Refused: it must be that the last BURST allowed
                    // requests are too recent for one more.
                    let n = times.len();
                    prop_assert!(
                        n as u64 >= GCRA_BURST,
                        "step {}: refused with only {} allowed ever",
                        step,
                        n
                    );
                    prop_assert!(d.retry_after > Duration::ZERO);
                    prop_assert!(d.retry_after <= Duration::from_millis(interval * GCRA_BURST));
                }
            }
            LOp::Advance(ms) => h.advance(ms),
            LOp::Restart(how) => {
                drop((fw, g));
                h.restart(how);
                (fw, g) = open(&h);
            }
        }
    }
    // After a full quiet period, the whole burst is available again.
    h.advance(GCRA_PERIOD_MS + FW_WINDOW_MS);
    for _ in 0..GCRA_BURST {
        prop_assert!(g.check([0u8]).expect("check").allowed);
    }
    prop_assert!(fw.check_n([0u8], FW_LIMIT).expect("check").allowed);
    Ok(())
}

on_every_backend!(
    limits_match_the_model,
    proptest::collection::vec(lop(), 1..80),
    run_limits
);

// ----- cache ----------------------------------------------------------------

#[derive(Clone, Debug)]
enum COp {
    Insert {
        key: u8,
        value: u8,
        ttl: Option<u64>,
    },
    Get(u8),
    Load {
        key: u8,
        value: u8,
        fail: bool,
    },
    Invalidate(u8),
    InvalidatePrefix(u8),
    GroupInsert {
        group: u8,
        key: u8,
        value: u8,
    },
    GroupGet {
        group: u8,
        key: u8,
    },
    InvalidateGroup(u8),
    Advance(u64),
    Restart(Restart),
}

fn cop() -> impl Strategy<Value = COp> {
    prop_oneof![
        4 => (0u8..12, any::<u8>(), proptest::option::of(1u64..300))
            .prop_map(|(key, value, ttl)| COp::Insert { key, value, ttl }),
        4 => (0u8..12).prop_map(COp::Get),
        3 => (0u8..12, any::<u8>(), proptest::bool::weighted(0.2))
            .prop_map(|(key, value, fail)| COp::Load { key, value, fail }),
        1 => (0u8..12).prop_map(COp::Invalidate),
        1 => (0u8..3).prop_map(COp::InvalidatePrefix),
        2 => (0u8..2, 0u8..3, any::<u8>()).prop_map(|(group, key, value)| COp::GroupInsert { group, key, value }),
        2 => (0u8..2, 0u8..3).prop_map(|(group, key)| COp::GroupGet { group, key }),
        1 => (0u8..2).prop_map(COp::InvalidateGroup),
        2 => (0u64..200).prop_map(COp::Advance),
        1 => restart_strategy().prop_map(COp::Restart),
    ]
}

/// Keys `k<prefix digit><n>`: three prefixes.
fn ckey(k: u8) -> Vec<u8> {
    format!("k{}{}", k % 3, k).into_bytes()
}

const CACHE_MAX_ENTRIES: u64 = 6;

fn run_cache(server: &Server, ops: Vec<COp>) -> Result<(), TestCaseError> {
    let mut h = server.harness(SyncPolicy::Always);
    let open = |h: &Harness| -> Cache {
        CacheOptions::new()
            .max_entries(CACHE_MAX_ENTRIES)
            .seed(7)
            .open(h.store("cache"))
            .expect("cache")
    };
    let mut c = open(&h);
    // The latest value written under each key and its expiry (0: none). A
    // read may miss (eviction), but what it returns must be this.
    let mut model: BTreeMap<Vec<u8>, (u8, u64)> = BTreeMap::new();
    let mut gens: BTreeMap<u8, u64> = BTreeMap::new();
    let check_get = |c: &Cache,
                     model: &BTreeMap<Vec<u8>, (u8, u64)>,
                     key: &[u8],
                     now: u64,
                     step: usize|
     -> Result<(), TestCaseError> {
        let got = c.get(key).expect("get");
        if let Some(v) = got {
            match model.get(key) {
                Some((want, exp)) if *exp == 0 || *exp > now => {
                    prop_assert_eq!(v, vec![*want], "step {}", step);
                }
                other => prop_assert!(
                    false,
                    "step {}: cache returned {:?}, model has {:?}",
                    step,
                    v,
                    other
                ),
            }
        }
        Ok(())
    };
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.now();
        match op {
            COp::Insert { key, value, ttl } => {
                c.insert(ckey(key), [value], ttl.map(Duration::from_millis))
                    .expect("insert");
                model.insert(ckey(key), (value, ttl.map_or(0, |t| now + t)));
            }
            COp::Get(key) => check_get(&c, &model, &ckey(key), now, step)?,
            COp::Load { key, value, fail } => {
                let k = ckey(key);
                let mut ran = false;
                let r = c.get_or_insert_with(&k, Duration::from_millis(100), || {
                    ran = true;
                    if fail {
                        Err("boom")
                    } else {
                        Ok(vec![value])
                    }
                });
                let live = model.get(&k).filter(|(_, e)| *e == 0 || *e > now).copied();
                match (r, live) {
                    (Ok(v), Some((want, _))) if !ran => prop_assert_eq!(v, vec![want]),
                    (Ok(v), _) => {
                        prop_assert!(ran && !fail, "step {}", step);
                        prop_assert_eq!(v, vec![value]);
                        model.insert(k, (value, now + 100));
                    }
                    (Err(_), _) => {
                        prop_assert!(ran && fail, "step {}: error without a failing loader", step);
                    }
                }
            }
            COp::Invalidate(key) => {
                c.invalidate(ckey(key)).expect("invalidate");
                model.remove(&ckey(key));
            }
            COp::InvalidatePrefix(p) => {
                let prefix = format!("k{p}").into_bytes();
                c.invalidate_prefix(&prefix).expect("invalidate prefix");
                model.retain(|k, _| !k.starts_with(&prefix));
            }
            COp::GroupInsert { group, key, value } => {
                let gk = c.group_key([b'g', group], [key]).expect("group key");
                c.insert(&gk, [value], None).expect("insert");
                model.insert(gk, (value, 0));
            }
            COp::GroupGet { group, key } => {
                let gk = c.group_key([b'g', group], [key]).expect("group key");
                check_get(&c, &model, &gk, now, step)?;
            }
            COp::InvalidateGroup(group) => {
                let n = c.invalidate_group([b'g', group]).expect("invalidate group");
                let g = gens.entry(group).or_insert(0);
                *g += 1;
                prop_assert_eq!(n, *g);
                // Old generations' keys are unreachable: drop them from
                // the model so that a stale read would be caught.
                let gen_prefix = vec![b'g', group, 0];
                model.retain(|k, _| !k.starts_with(&gen_prefix));
            }
            COp::Advance(ms) => h.advance(ms),
            COp::Restart(how) => {
                let running = stored_entries(&c);
                drop(c);
                h.restart(how);
                c = open(&h);
                // The reopened cache holds what the running one left, and
                // has nothing to evict.
                prop_assert_eq!(&stored_entries(&c), &running, "step {}", step);
                let st = c.stats();
                prop_assert_eq!((st.entries, st.bytes), size_of(&running), "step {}", step);
                prop_assert_eq!(st.evictions, 0, "step {}: the reopen evicted", step);
            }
        }
        let st = c.stats();
        prop_assert!(
            st.entries <= CACHE_MAX_ENTRIES,
            "step {}: {} entries",
            step,
            st.entries
        );
        // Evictions are written: the store never holds more than the
        // capacity either (entries are stored under `d` + key).
        let stored = stored_entries(&c).len() as u64;
        prop_assert!(
            stored <= CACHE_MAX_ENTRIES,
            "step {}: {} entries stored",
            step,
            stored
        );
    }
    Ok(())
}

on_every_backend!(
    cache_matches_the_model,
    proptest::collection::vec(cop(), 1..80),
    run_cache
);

// ----- the cache's byte bound -----------------------------------------------

#[derive(Clone, Debug)]
enum BOp {
    Insert {
        key: u8,
        value: u8,
        len: usize,
        ttl: Option<u64>,
    },
    Load {
        key: u8,
        value: u8,
        len: usize,
    },
    Get(u8),
    Invalidate(u8),
    Advance(u64),
    Restart(Restart),
}

const CACHE_MAX_BYTES: u64 = 300;

/// Value lengths: mostly small, some near the bound, some past it.
fn value_len() -> impl Strategy<Value = usize> {
    prop_oneof![6 => 0usize..80, 2 => 200usize..290, 2 => 290usize..400]
}

fn bop() -> impl Strategy<Value = BOp> {
    prop_oneof![
        5 => (0u8..12, any::<u8>(), value_len(), proptest::option::of(1u64..300))
            .prop_map(|(key, value, len, ttl)| BOp::Insert { key, value, len, ttl }),
        2 => (0u8..12, any::<u8>(), value_len())
            .prop_map(|(key, value, len)| BOp::Load { key, value, len }),
        3 => (0u8..12).prop_map(BOp::Get),
        1 => (0u8..12).prop_map(BOp::Invalidate),
        2 => (0u64..200).prop_map(BOp::Advance),
        2 => restart_strategy().prop_map(BOp::Restart),
    ]
}

/// The cache's entries as the store holds them: key to value (with its
/// 13-byte header).
fn stored_entries(c: &Cache) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let store = c.store();
    let mut names = Vec::new();
    store
        .scan(b"d", |name, _, _| names.push(name.to_vec()))
        .expect("scan");
    let mut out = BTreeMap::new();
    for name in names {
        // A scan may list an entry that has expired since: a read does not.
        if let (_, Some(e)) = store.read_one(&Key::new(name.clone())).expect("read") {
            out.insert(name[1..].to_vec(), e.value);
        }
    }
    out
}

/// Entries and bytes as `max_bytes` counts them.
fn size_of(entries: &BTreeMap<Vec<u8>, Vec<u8>>) -> (u64, u64) {
    let bytes = entries
        .iter()
        .map(|(k, v)| (k.len() + v.len()) as u64)
        .sum();
    (entries.len() as u64, bytes)
}

/// A `max_bytes` cache without admission (so that every entry that fits is
/// stored): the bound holds after every step, in memory and in the store
/// (on a remote store the bound is per process: this test has one, so the
/// store holds no more; caches of several processes sharing a namespace
/// could);
/// an entry that cannot fit is never stored and evicts nothing; a reopen
/// finds exactly what the running cache left, and evicts nothing.
fn run_cache_bytes(server: &Server, ops: Vec<BOp>) -> Result<(), TestCaseError> {
    let mut h = server.harness(SyncPolicy::Always);
    let open = |h: &Harness| -> Cache {
        CacheOptions::new()
            .max_bytes(CACHE_MAX_BYTES)
            .admission(false)
            .seed(11)
            .open(h.store("cache"))
            .expect("cache")
    };
    let mut c = open(&h);
    // The latest value written under each key and its expiry (0: none).
    let mut model: BTreeMap<Vec<u8>, (Vec<u8>, u64)> = BTreeMap::new();
    let fits = |key: &[u8], len: usize| (key.len() + 13 + len) as u64 <= CACHE_MAX_BYTES;
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.now();
        let before = c.stats();
        match op {
            BOp::Insert {
                key,
                value,
                len,
                ttl,
            } => {
                let (k, v) = (ckey(key), vec![value; len]);
                c.insert(&k, &v, ttl.map(Duration::from_millis))
                    .expect("insert");
                let got = c.get(&k).expect("get");
                if fits(&k, len) {
                    prop_assert_eq!(got, Some(v.clone()), "step {}: a value that fits", step);
                } else {
                    prop_assert_eq!(got, None, "step {}: a value past the bound", step);
                    let st = c.stats();
                    prop_assert_eq!(st.rejections, before.rejections + 1);
                    prop_assert_eq!(st.evictions, before.evictions, "step {}", step);
                }
                model.insert(k, (v, ttl.map_or(0, |t| now + t)));
            }
            BOp::Load { key, value, len } => {
                let k = ckey(key);
                let mut ran = false;
                let got = c
                    .get_or_insert_with(&k, Duration::from_millis(100), || {
                        ran = true;
                        Ok::<_, std::io::Error>(vec![value; len])
                    })
                    .expect("load");
                if ran {
                    prop_assert_eq!(&got, &vec![value; len]);
                    if !fits(&k, len) {
                        prop_assert_eq!(c.stats().evictions, before.evictions);
                    }
                    model.insert(k, (got, now + 100));
                } else {
                    let live = model.get(&k).filter(|(_, e)| *e == 0 || *e > now);
                    prop_assert_eq!(Some(&got), live.map(|(v, _)| v), "step {}", step);
                }
            }
            BOp::Get(key) => {
                let k = ckey(key);
                if let Some(v) = c.get(&k).expect("get") {
                    let live = model.get(&k).filter(|(_, e)| *e == 0 || *e > now);
                    prop_assert_eq!(Some(&v), live.map(|(v, _)| v), "step {}", step);
                }
            }
            BOp::Invalidate(key) => {
                c.invalidate(ckey(key)).expect("invalidate");
                model.remove(&ckey(key));
            }
            BOp::Advance(ms) => h.advance(ms),
            BOp::Restart(how) => {
                let running = stored_entries(&c);
                drop(c);
                h.restart(how);
                c = open(&h);
                let reopened = stored_entries(&c);
                prop_assert_eq!(
                    &reopened,
                    &running,
                    "step {}: the reopen changed the entries",
                    step
                );
                let st = c.stats();
                prop_assert_eq!((st.entries, st.bytes), size_of(&reopened), "step {}", step);
                prop_assert_eq!(st.evictions, 0, "step {}: the reopen evicted", step);
            }
        }
        let st = c.stats();
        prop_assert!(
            st.bytes <= CACHE_MAX_BYTES,
            "step {}: {} bytes",
            step,
            st.bytes
        );
        let (n, bytes) = size_of(&stored_entries(&c));
        prop_assert!(
            bytes <= CACHE_MAX_BYTES,
            "step {}: {} bytes stored",
            step,
            bytes
        );
        // The running cache counts what the store holds (and, until it
        // notices, entries that expired since).
        prop_assert!(
            n <= st.entries && bytes <= st.bytes,
            "step {}: stored {} entries, {} bytes; the cache counts {:?}",
            step,
            n,
            bytes,
            st
        );
    }
    Ok(())
}

on_every_backend!(
    cache_byte_bound_holds_at_every_step_and_across_reopens,
    proptest::collection::vec(bop(), 1..80),
    run_cache_bytes
);

// ----- idempotency keys -----------------------------------------------------

#[derive(Clone, Debug)]
enum IOp {
    Begin { key: u8, ttl: u64 },
    Complete { claim: usize, outcome: u8 },
    Abort { claim: usize },
    Advance(u64),
    Restart(Restart),
}

fn iop() -> impl Strategy<Value = IOp> {
    prop_oneof![
        4 => (0u8..3, 1u64..400).prop_map(|(key, ttl)| IOp::Begin { key, ttl }),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(claim, outcome)| IOp::Complete { claim, outcome }),
        1 => any::<usize>().prop_map(|claim| IOp::Abort { claim }),
        3 => (0u64..150).prop_map(IOp::Advance),
        1 => restart_strategy().prop_map(IOp::Restart),
    ]
}

const LEASE_MS: u64 = 100;

#[derive(Clone, Debug)]
enum IState {
    /// Claimed by claim number `by`.
    Claimed {
        by: usize,
        started: u64,
    },
    Done(u8),
}

fn run_idempotency(server: &Server, ops: Vec<IOp>) -> Result<(), TestCaseError> {
    let mut h = server.harness(SyncPolicy::Always);
    let open = |h: &Harness| {
        Idempotency::new(h.store("idempotency")).lease(Duration::from_millis(LEASE_MS))
    };
    let mut idem = open(&h);
    // key -> (state, expiry); every claim handed out, with its key.
    let mut model: BTreeMap<u8, (IState, u64)> = BTreeMap::new();
    let mut claims: Vec<(u8, Claim)> = Vec::new();
    for (step, op) in ops.into_iter().enumerate() {
        let now = h.now();
        model.retain(|_, (_, exp)| *exp > now);
        match op {
            IOp::Begin { key, ttl } => {
                let got = idem
                    .begin([key], Duration::from_millis(ttl))
                    .expect("begin");
                match model.get(&key) {
                    Some((IState::Done(o), _)) => {
                        prop_assert_eq!(got, Begin::Completed(vec![*o]), "step {}", step);
                    }
                    Some((IState::Claimed { started, .. }, _)) if now < started + LEASE_MS => {
                        prop_assert_eq!(
                            got,
                            Begin::InProgress {
                                started_unix_ms: *started
                            },
                            "step {}",
                            step
                        );
                    }
                    _ => {
                        let Begin::Started(claim) = got else {
                            return Err(TestCaseError::fail(format!(
                                "step {step}: {got:?}, expected Started"
                            )));
                        };
                        prop_assert_eq!(claim.key(), &[key][..]);
                        model.insert(
                            key,
                            (
                                IState::Claimed {
                                    by: claims.len(),
                                    started: now,
                                },
                                now + ttl,
                            ),
                        );
                        claims.push((key, claim));
                    }
                }
            }
            IOp::Complete { claim, outcome } => {
                if claims.is_empty() {
                    continue;
                }
                let i = claim % claims.len();
                let (key, c) = &claims[i];
                let ok = idem.complete(c, [outcome]).expect("complete");
                let holds =
                    matches!(model.get(key), Some((IState::Claimed { by, .. }, _)) if *by == i);
                prop_assert_eq!(ok, holds, "step {}", step);
                if holds {
                    if let Some(e) = model.get_mut(key) {
                        e.0 = IState::Done(outcome);
                    }
                }
            }
            IOp::Abort { claim } => {
                if claims.is_empty() {
                    continue;
                }
                let i = claim % claims.len();
                let (key, c) = &claims[i];
                let ok = idem.abort(c).expect("abort");
                let holds =
                    matches!(model.get(key), Some((IState::Claimed { by, .. }, _)) if *by == i);
                prop_assert_eq!(ok, holds, "step {}", step);
                if holds {
                    model.remove(key);
                }
            }
            IOp::Advance(ms) => h.advance(ms),
            IOp::Restart(how) => {
                drop(idem);
                h.restart(how);
                idem = open(&h);
            }
        }
    }
    Ok(())
}

on_every_backend!(
    idempotency_matches_the_model,
    proptest::collection::vec(iop(), 1..60),
    run_idempotency
);
