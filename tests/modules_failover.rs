//! The modules through a Redis Cluster failover: a 3-master, 3-replica
//! cluster; threads run sessions (create, update, get, get_and_touch,
//! rotate), a fixed-window limiter and idempotency keys in a loop while
//! one master is killed (SIGKILL) and its replica takes over.
//!
//! What must hold: no panic; every failure is a typed
//! [`Error::Remote`] that names the cluster, with `maybe_applied` false
//! for a call that only reads; no call takes longer than [`CALL_LIMIT`];
//! every call succeeds again once the cluster is back (`wait_ok`); and no
//! wrong data: a session that `get` returns holds a value written for that
//! very session, an idempotency key's outcome is the one completed for it,
//! and a limiter admits at most its limit per window.
//!
//! What may happen, and is counted rather than failed: Redis replicates
//! asynchronously, so a write the killed master acknowledged but had not
//! yet sent to its replica is lost when the replica takes over (Redis's
//! documented behaviour, "Redis Cluster consistency guarantees" in its
//! cluster specification). After a failover a session may therefore be
//! gone or hold its previous value, a rotated-away id may be live again,
//! a completed idempotency key may be unclaimed again, and a limiter's
//! window that straddles the failover may admit more than its limit. The
//! test prints these counts with the error count and the recovery time.

#![cfg(feature = "redis")]

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn::backend::resp::RespOptions;
use cairn::backend::Store;
use cairn::limits::{Begin, FixedWindow, Idempotency};
use cairn::session::Sessions;
use cairn::Error;
use common::servers::RedisCluster;
use common::XorShift as Rng;

/// No call may take longer (the client's timeout is 2 s; a command the
/// cluster refuses for now is tried again for up to 5 s).
const CALL_LIMIT: Duration = Duration::from_secs(15);

const HOUR: Duration = Duration::from_secs(3600);

/// How long after `wait_ok` every call must succeed.
const SETTLE: Duration = Duration::from_secs(2);

/// The limiter's allowance per window.
const LIMIT: u64 = 10;

/// How often the limiter threads move to a new client key.
const ROUND_MS: u64 = 200;

/// When things happened, shared by the threads.
struct Timeline {
    start: Instant,
    stop: AtomicBool,
    killed: Mutex<Option<Instant>>,
    ok: Mutex<Option<Instant>>,
}

impl Timeline {
    fn killed(&self) -> Option<Instant> {
        *self.killed.lock().expect("killed")
    }

    fn ok(&self) -> Option<Instant> {
        *self.ok.lock().expect("ok")
    }

    /// Whether a call started at `at` should succeed: [`SETTLE`] after
    /// the cluster said it was whole again (the client may still be
    /// learning the new slot map).
    fn settled(&self, at: Instant) -> bool {
        self.ok().is_some_and(|ok| at > ok + SETTLE)
    }
}

/// What one thread saw.
#[derive(Default, Debug)]
struct Tally {
    calls: u64,
    errors: u64,
    maybe_applied: u64,
    /// When the last error was seen.
    last_error: Option<Instant>,
    /// Acknowledged writes that a later read found undone.
    lost: u64,
    /// Sessions or claims no longer followed after an uncertain write.
    uncertain: u64,
    /// Some errors of calls made after the cluster was whole again.
    late: Vec<String>,
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.calls += o.calls;
        self.errors += o.errors;
        self.maybe_applied += o.maybe_applied;
        self.last_error = self.last_error.max(o.last_error);
        self.lost += o.lost;
        self.uncertain += o.uncertain;
        self.late.extend(o.late.iter().cloned());
    }
}

/// Runs one call: checks its time and its error's type. `Err(maybe
/// applied)` for a remote error.
fn call<T>(
    tl: &Timeline,
    tally: &mut Tally,
    what: &str,
    reads_only: bool,
    f: impl FnOnce() -> cairn::Result<T>,
) -> Result<T, bool> {
    let started = Instant::now();
    let r = f();
    let took = started.elapsed();
    assert!(took < CALL_LIMIT, "{what} took {took:?}");
    tally.calls += 1;
    match r {
        Ok(v) => Ok(v),
        Err(Error::Remote {
            address,
            message,
            maybe_applied,
        }) => {
            assert!(
                address.starts_with("cluster 127.0.0.1:"),
                "{what}: the error names {address:?}, not the cluster"
            );
            assert!(!message.is_empty());
            assert!(
                !(reads_only && maybe_applied),
                "{what} only reads, yet may have applied a write: {message}"
            );
            assert!(
                !tl.settled(started),
                "{what} failed {:?} after the cluster was whole again: {message}",
                started - tl.ok().expect("ok")
            );
            tally.errors += 1;
            if let Some(ok) = tl.ok() {
                if started > ok && tally.late.len() < 3 {
                    tally
                        .late
                        .push(format!("{what} {:?} after ok: {message}", started - ok));
                }
            }
            tally.maybe_applied += u64::from(maybe_applied);
            tally.last_error = Some(Instant::now());
            Err(maybe_applied)
        }
        Err(e) => panic!("{what}: not a remote error: {e:?}"),
    }
}

/// A session a thread follows: its id and every value written to it.
struct Tracked {
    id: String,
    /// Every value ever sent for this session (the chain of ids shares it).
    written: Arc<HashSet<Vec<u8>>>,
    /// The values a read may return without a lost write: the last one
    /// acknowledged, and any sent since whose answer was lost.
    current: Vec<Vec<u8>>,
}

/// Checks what a read returned for `t`; `false` if it is gone.
fn check_read(t: &Tracked, got: Option<cairn::session::Session>, tally: &mut Tally) -> bool {
    match got {
        Some(s) => {
            assert!(
                t.written.contains(&s.data),
                "session {}: data never written for it: {:?}",
                &t.id[..16],
                String::from_utf8_lossy(&s.data)
            );
            if !t.current.contains(&s.data) {
                tally.lost += 1;
            }
            true
        }
        None => {
            tally.lost += 1;
            false
        }
    }
}

fn session_worker(sessions: &Sessions, tl: &Timeline, t: usize) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng::new(t as u64 + 11);
    let mut live: Vec<Tracked> = Vec::new();
    // Ids rotated away, with the values of their chain.
    let mut retired: Vec<(String, Arc<HashSet<Vec<u8>>>)> = Vec::new();
    let mut n = 0u64;
    while !tl.stop.load(Ordering::SeqCst) {
        n += 1;
        let value = format!("thread {t} value {n}").into_bytes();
        if live.len() < 8 {
            if let Ok(id) = call(tl, &mut tally, "create", false, || {
                sessions.create(&value, HOUR)
            }) {
                live.push(Tracked {
                    id: id.into_string(),
                    written: Arc::new(HashSet::from([value.clone()])),
                    current: vec![value],
                });
            }
            continue;
        }
        let i = rng.below_usize(live.len());
        match rng.below_usize(5) {
            0 => {
                Arc::make_mut(&mut live[i].written).insert(value.clone());
                match call(tl, &mut tally, "update", false, || {
                    sessions.update(&live[i].id, &value)
                }) {
                    Ok(true) => live[i].current = vec![value],
                    Ok(false) => {
                        tally.lost += 1;
                        live.swap_remove(i);
                    }
                    Err(true) => live[i].current.push(value),
                    Err(false) => {}
                }
            }
            1 => match call(tl, &mut tally, "rotate", false, || {
                sessions.rotate(&live[i].id)
            }) {
                Ok(Some(new)) => {
                    let old = std::mem::replace(&mut live[i].id, new.into_string());
                    retired.push((old, live[i].written.clone()));
                }
                Ok(None) => {
                    tally.lost += 1;
                    live.swap_remove(i);
                }
                Err(true) => {
                    // Perhaps rotated, to an id never returned.
                    tally.uncertain += 1;
                    live.swap_remove(i);
                }
                Err(false) => {}
            },
            2 if !retired.is_empty() => {
                let (id, written) = &retired[rng.below_usize(retired.len())];
                if let Ok(Some(s)) = call(tl, &mut tally, "get", true, || sessions.get(id)) {
                    // A rotation lost on failover: the old id is back,
                    // with its own chain's data.
                    assert!(written.contains(&s.data), "a retired id has foreign data");
                    tally.lost += 1;
                }
            }
            k => {
                let got = if k == 3 {
                    call(tl, &mut tally, "get", true, || sessions.get(&live[i].id))
                } else {
                    call(tl, &mut tally, "get_and_touch", false, || {
                        sessions.get_and_touch(&live[i].id)
                    })
                };
                if let Ok(got) = got {
                    if !check_read(&live[i], got, &mut tally) {
                        live.swap_remove(i);
                    }
                }
            }
        }
    }
    tally
}

/// Admissions per (round, window end in unix s).
type Windows = Mutex<HashMap<(u64, u64), u64>>;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

fn limiter_worker(fw: &FixedWindow, tl: &Timeline, windows: &Windows) -> Tally {
    let mut tally = Tally::default();
    while !tl.stop.load(Ordering::SeqCst) {
        let round = tl.start.elapsed().as_millis() as u64 / ROUND_MS;
        let key = format!("client {round}");
        let asked = unix_ms();
        if let Ok(d) = call(tl, &mut tally, "check", false, || fw.check(&key)) {
            if d.allowed {
                // The window's end, to the second (the servers share this
                // machine's clock).
                let end = (asked + d.reset_after.as_millis() as u64 + 500) / 1000;
                *windows
                    .lock()
                    .expect("windows")
                    .entry((round, end))
                    .or_default() += 1;
            }
        }
    }
    tally
}

fn idempotency_worker(idem: &Idempotency, tl: &Timeline) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0u64;
    while !tl.stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("order {n}");
        let outcome = format!("outcome {n}").into_bytes();
        let Ok(begin) = call(tl, &mut tally, "begin", false, || idem.begin(&key, HOUR)) else {
            continue;
        };
        let Begin::Started(claim) = begin else {
            panic!("{key}: a fresh key did not start: {begin:?}");
        };
        match call(tl, &mut tally, "complete", false, || {
            idem.complete(&claim, &outcome)
        }) {
            Ok(true) => {}
            Ok(false) => {
                // The claim was lost on failover.
                tally.lost += 1;
                continue;
            }
            Err(_) => {
                tally.uncertain += 1;
                continue;
            }
        }
        match call(tl, &mut tally, "begin again", false, || {
            idem.begin(&key, HOUR)
        }) {
            Ok(Begin::Completed(v)) => assert_eq!(v, outcome, "{key}: another outcome"),
            Ok(_) => tally.lost += 1,
            Err(_) => {}
        }
    }
    tally
}

#[test]
fn the_modules_survive_a_master_failover_without_wrong_data() {
    let mut cluster = RedisCluster::start(3, 1);
    let store = Store::from(
        RespOptions::cluster(cluster.urls())
            .timeout_ms(2_000)
            .open()
            .expect("open")
            .namespace("failover"),
    );
    let sessions = Sessions::new(store.clone());
    let fw = FixedWindow::new(store.clone(), "api", LIMIT, HOUR).expect("limiter");
    let idem = Idempotency::new(store.clone());
    let tl = Arc::new(Timeline {
        start: Instant::now(),
        stop: AtomicBool::new(false),
        killed: Mutex::new(None),
        ok: Mutex::new(None),
    });
    let windows: Arc<Windows> = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel::<Tally>();
    let mut handles = Vec::new();
    for t in 0..3 {
        let (sessions, tl, tx) = (sessions.clone(), tl.clone(), tx.clone());
        handles.push(thread::spawn(move || {
            let _ = tx.send(session_worker(&sessions, &tl, t));
        }));
    }
    for _ in 0..2 {
        let (fw, tl, windows, tx) = (fw.clone(), tl.clone(), windows.clone(), tx.clone());
        handles.push(thread::spawn(move || {
            let _ = tx.send(limiter_worker(&fw, &tl, &windows));
        }));
    }
    {
        let (idem, tl, tx) = (idem.clone(), tl.clone(), tx.clone());
        handles.push(thread::spawn(move || {
            let _ = tx.send(idempotency_worker(&idem, &tl));
        }));
    }
    drop(tx);
    thread::sleep(Duration::from_secs(2));
    cluster.kill_master(0);
    let killed = Instant::now();
    *tl.killed.lock().expect("killed") = Some(killed);
    cluster.wait_ok();
    let recovered = killed.elapsed();
    *tl.ok.lock().expect("ok") = Some(Instant::now());
    // Long enough after the cluster is whole to see every call succeed.
    thread::sleep(SETTLE + Duration::from_secs(3));
    tl.stop.store(true, Ordering::SeqCst);
    // A worker stuck in a call fails the test here (its thread is left
    // behind) instead of hanging it.
    let deadline = Instant::now() + CALL_LIMIT + Duration::from_secs(5);
    let mut tally = Tally::default();
    for _ in 0..handles.len() {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(t) => tally.add(&t),
            Err(RecvTimeoutError::Timeout) => {
                panic!("a worker is still in a call {CALL_LIMIT:?} after the stop: a hang")
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    for h in handles {
        if let Err(p) = h.join() {
            std::panic::resume_unwind(p);
        }
    }
    let killed = tl.killed().expect("killed");
    let ok = tl.ok().expect("ok");

    // The limiter: at most its limit per window, except in a round that
    // overlaps the failover, where a lost count may admit more.
    let kill_round = (killed - tl.start).as_millis() as u64 / ROUND_MS;
    let ok_round = (ok - tl.start).as_millis() as u64 / ROUND_MS;
    let mut over = 0;
    let mut rounds_checked = 0;
    for (&(round, end), &admitted) in windows.lock().expect("windows").iter() {
        if (kill_round.saturating_sub(1)..=ok_round + 1).contains(&round) {
            over += admitted.saturating_sub(LIMIT);
        } else {
            rounds_checked += 1;
            assert!(
                admitted <= LIMIT,
                "round {round}, window ending {end}: {admitted} admitted, limit {LIMIT}"
            );
        }
    }
    assert!(rounds_checked > 0, "no limiter round outside the failover");

    // Everything works after the failover.
    let id = sessions.create(b"after", HOUR).expect("create after");
    assert_eq!(
        sessions.get(id.as_str()).expect("get").map(|s| s.data),
        Some(b"after".to_vec())
    );
    assert!(fw.check("after").expect("check").allowed);
    let Begin::Started(claim) = idem.begin("after", HOUR).expect("begin") else {
        panic!("a fresh key must start");
    };
    assert!(idem.complete(&claim, b"done").expect("complete"));

    let last_error = tally
        .last_error
        .map(|e| format!("{:.1} s", (e.max(killed) - killed).as_secs_f64()))
        .unwrap_or_else(|| "none".into());
    eprintln!(
        "failover: {} calls, {} remote errors ({} maybe applied), last error {} after \
         the kill, cluster whole again after {:.1} s; counted, not failed: {} lost \
         acknowledged writes, {} uncertain, {} over-admissions in rounds {}..={}",
        tally.calls,
        tally.errors,
        tally.maybe_applied,
        last_error,
        recovered.as_secs_f64(),
        tally.lost,
        tally.uncertain,
        over,
        kill_round.saturating_sub(1),
        ok_round + 1
    );
    for l in &tally.late {
        eprintln!("late: {l}");
    }
    assert!(tally.calls > 100, "the workers hardly ran: {tally:?}");
}
