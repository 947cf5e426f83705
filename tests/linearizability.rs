//! Linearizability of concurrent `get`, `put`, `delete`, `incr` and
//! `compare_and_swap`.
//!
//! Many small histories run on one store: in each, 2 to 4 threads start
//! together (a spinning barrier) and issue 3 to 5 operations each, with a
//! little jitter between them, on 1 or 2 keys of the history's own key
//! prefix (a register, written with unique values, and a counter, for
//! `incr`). Each call is stamped with a ticket from one global atomic
//! counter taken just before the call and just after it returns, so "A
//! returned before B was invoked" is exact. Meanwhile the store rolls
//! 64 KiB segments, automatic compaction runs, and another thread compacts
//! in a loop, so reads race with keys moving between files.
//!
//! Every history is then checked with a Wing–Gong–Lowe search: is there a
//! total order of the operations, consistent with their real-time order,
//! in which a sequential model of the key (the semantics of `src/db.rs`)
//! returns exactly what each call returned? Operations on different keys
//! are independent, so each key's sub-history is checked on its own
//! (linearizability is compositional); the search memoizes (set of
//! operations linearized, model state).
//!
//! `CAIRN_LIN_HISTORIES=n` sets the number of histories (default 10,000,
//! with `SyncPolicy::Never`; a fiftieth of that, at least 50, run again
//! under `SyncPolicy::Always`). The test prints how many histories and
//! operations it checked, and how many histories had calls on one key
//! that overlapped in time. A self-test makes sure the checker rejects
//! histories that are not linearizable.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cairn::{Db, Options, SyncPolicy};

// ----- the sequential model --------------------------------------------------

/// What a key holds: its value, or `None` when absent.
type State = Option<Vec<u8>>;

/// An operation on one key, as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Get,
    Put(Vec<u8>),
    Delete,
    Incr(i64),
    Cas {
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ret {
    Value(Option<Vec<u8>>),
    Unit,
    Existed(bool),
    Incr(Result<i64, IncrError>),
    Cas(Result<(), Option<Vec<u8>>>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IncrError {
    NotAnInteger,
    Overflow,
}

/// Parses like Redis INCRBY (and `cairn`): a canonical base-10 i64.
fn parse_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// The sequential specification: the state after `call` and its result.
fn step(state: &State, call: &Call) -> (State, Ret) {
    match call {
        Call::Get => (state.clone(), Ret::Value(state.clone())),
        Call::Put(v) => (Some(v.clone()), Ret::Unit),
        Call::Delete => (None, Ret::Existed(state.is_some())),
        Call::Incr(d) => {
            let cur = match state {
                None => Some(0),
                Some(v) => parse_int(v),
            };
            match cur {
                None => (state.clone(), Ret::Incr(Err(IncrError::NotAnInteger))),
                Some(c) => match c.checked_add(*d) {
                    None => (state.clone(), Ret::Incr(Err(IncrError::Overflow))),
                    Some(n) => (Some(n.to_string().into_bytes()), Ret::Incr(Ok(n))),
                },
            }
        }
        Call::Cas { expected, new } => {
            if state == expected {
                (new.clone(), Ret::Cas(Ok(())))
            } else {
                (state.clone(), Ret::Cas(Err(state.clone())))
            }
        }
    }
}

// ----- the checker -------------------------------------------------------------

/// One completed operation of a history.
#[derive(Clone, Debug)]
struct Event {
    thread: usize,
    key: usize,
    call: Call,
    ret: Ret,
    /// Ticket taken just before the call.
    invoked: u64,
    /// Ticket taken just after it returned.
    returned: u64,
}

/// Whether the operations of one key, starting from `init`, are
/// linearizable (Wing & Gong's search with Lowe's memoization).
fn linearizable(events: &[&Event], init: &State) -> bool {
    assert!(events.len() <= 64, "history too long for the checker");
    let n = events.len();
    let all: u64 = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
    let mut seen: HashSet<(u64, State)> = HashSet::new();
    // Depth-first: (operations linearized so far, state after them).
    let mut stack: Vec<(u64, State)> = vec![(0, init.clone())];
    while let Some((done, state)) = stack.pop() {
        if done == all {
            return true;
        }
        if !seen.insert((done, state.clone())) {
            continue;
        }
        // An operation can go next only if no other pending operation
        // returned before it was invoked.
        let horizon = (0..n)
            .filter(|&i| done & (1 << i) == 0)
            .map(|i| events[i].returned)
            .min()
            .unwrap_or(u64::MAX);
        for (i, e) in events.iter().enumerate() {
            if done & (1 << i) != 0 || e.invoked > horizon {
                continue;
            }
            let (next, ret) = step(&state, &e.call);
            if ret == e.ret {
                stack.push((done | (1 << i), next));
            }
        }
    }
    false
}

/// A history: the initial state of each key and the events.
struct History {
    index: usize,
    init: Vec<State>,
    events: Vec<Event>,
}

impl History {
    /// Whether two threads' operations on the same key overlapped in time.
    fn has_overlap(&self) -> bool {
        self.events.iter().any(|a| {
            self.events.iter().any(|b| {
                a.thread != b.thread
                    && a.key == b.key
                    && a.invoked < b.returned
                    && b.invoked < a.returned
            })
        })
    }

    /// Checks every key's sub-history; returns the first key that fails.
    fn check(&self) -> Result<(), usize> {
        for (k, init) in self.init.iter().enumerate() {
            let sub: Vec<&Event> = self.events.iter().filter(|e| e.key == k).collect();
            if !linearizable(&sub, init) {
                return Err(k);
            }
        }
        Ok(())
    }
}

struct Bytes<'a>(&'a Option<Vec<u8>>);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => write!(f, "absent"),
            Some(v) => write!(f, "{:?}", String::from_utf8_lossy(v)),
        }
    }
}

impl fmt::Display for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "history {}:", self.index)?;
        for (k, init) in self.init.iter().enumerate() {
            writeln!(f, "  key {k} starts {}", Bytes(init))?;
        }
        let mut events: Vec<&Event> = self.events.iter().collect();
        events.sort_by_key(|e| e.invoked);
        let base = events.first().map_or(0, |e| e.invoked);
        for e in events {
            writeln!(
                f,
                "  [{:>3} .. {:>3}] thread {} key {}: {:?} -> {:?}",
                e.invoked - base,
                e.returned - base,
                e.thread,
                e.key,
                e.call,
                e.ret
            )?;
        }
        Ok(())
    }
}

#[test]
fn checker_rejects_what_is_not_linearizable() {
    let ev = |thread, call, ret, invoked, returned| Event {
        thread,
        key: 0,
        call,
        ret,
        invoked,
        returned,
    };
    let a = || Some(b"a".to_vec());
    let check = |events: &[Event], init: State| {
        let refs: Vec<&Event> = events.iter().collect();
        linearizable(&refs, &init)
    };

    // A get that starts after a put returned must see it.
    let stale = [
        ev(0, Call::Put(b"a".to_vec()), Ret::Unit, 0, 1),
        ev(1, Call::Get, Ret::Value(None), 2, 3),
    ];
    assert!(!check(&stale, None), "a stale read was accepted");
    // Overlapping, the get may see either state.
    for seen in [None, a()] {
        let overlapping = [
            ev(0, Call::Put(b"a".to_vec()), Ret::Unit, 0, 3),
            ev(1, Call::Get, Ret::Value(seen), 1, 2),
        ];
        assert!(
            check(&overlapping, None),
            "an overlapping read was rejected"
        );
    }
    // Two increments cannot both return 1; in either order they return 1, 2.
    let lost_update = [
        ev(0, Call::Incr(1), Ret::Incr(Ok(1)), 0, 3),
        ev(1, Call::Incr(1), Ret::Incr(Ok(1)), 1, 2),
    ];
    assert!(!check(&lost_update, None), "a lost increment was accepted");
    let counted = [
        ev(0, Call::Incr(1), Ret::Incr(Ok(2)), 0, 3),
        ev(1, Call::Incr(1), Ret::Incr(Ok(1)), 1, 2),
    ];
    assert!(check(&counted, None));
    // Two compare-and-swaps from absent cannot both succeed.
    let double = [
        ev(
            0,
            Call::Cas {
                expected: None,
                new: Some(b"x".to_vec()),
            },
            Ret::Cas(Ok(())),
            0,
            3,
        ),
        ev(
            1,
            Call::Cas {
                expected: None,
                new: Some(b"y".to_vec()),
            },
            Ret::Cas(Ok(())),
            1,
            2,
        ),
    ];
    assert!(!check(&double, None), "two winning compare-and-swaps");
    // A conflict must report a value the key held at some point in time.
    let conflict = [
        ev(0, Call::Put(b"a".to_vec()), Ret::Unit, 0, 1),
        ev(
            1,
            Call::Cas {
                expected: None,
                new: Some(b"y".to_vec()),
            },
            Ret::Cas(Err(Some(b"b".to_vec()))),
            2,
            3,
        ),
    ];
    assert!(
        !check(&conflict, None),
        "a conflict reported a value never written"
    );
    // A delete that reports the key missing right after a put is wrong...
    let delete = [
        ev(0, Call::Put(b"a".to_vec()), Ret::Unit, 0, 1),
        ev(1, Call::Delete, Ret::Existed(false), 2, 3),
    ];
    assert!(!check(&delete, None));
    // ... but fine when another delete could have gone first.
    let deletes = [
        ev(0, Call::Put(b"a".to_vec()), Ret::Unit, 0, 1),
        ev(1, Call::Delete, Ret::Existed(false), 2, 5),
        ev(2, Call::Delete, Ret::Existed(true), 3, 4),
    ];
    assert!(check(&deletes, None));
    // Increments of a value that is not an integer fail and change nothing.
    let not_int = [
        ev(
            0,
            Call::Incr(1),
            Ret::Incr(Err(IncrError::NotAnInteger)),
            0,
            1,
        ),
        ev(1, Call::Get, Ret::Value(a()), 2, 3),
    ];
    assert!(check(&not_int, a()));
    assert!(!check(&not_int, Some(b"7".to_vec())));
    // Real-time order across threads, with three threads and a write that
    // "un-happens": once a later read saw the new value, an even later
    // read must not see the old one.
    let flicker = [
        ev(0, Call::Put(b"b".to_vec()), Ret::Unit, 0, 10),
        ev(1, Call::Get, Ret::Value(Some(b"b".to_vec())), 1, 2),
        ev(2, Call::Get, Ret::Value(a()), 3, 4),
    ];
    assert!(!check(&flicker, a()), "a read went back in time");
}

// ----- the workload --------------------------------------------------------------

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Most threads in a history.
const THREADS: usize = 4;

/// An operation as planned; compare-and-swaps pick their expected value at
/// run time from what the thread last saw of the key.
#[derive(Clone, Debug)]
enum Planned {
    Get,
    Put(Vec<u8>),
    Delete,
    Incr(i64),
    /// Expect what this thread last saw of the key (or `None` when it saw
    /// nothing yet, or when `absent`), write `new`.
    Cas {
        absent: bool,
        new: Option<Vec<u8>>,
    },
}

struct Plan {
    /// Key kinds: `true` for a counter.
    counters: Vec<bool>,
    init: Vec<State>,
    /// Per thread: (key, operation).
    threads: Vec<Vec<(usize, Planned)>>,
}

fn plan(index: usize, seed: u64) -> Plan {
    let mut r = Rng(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let keys = 1 + r.below(2) as usize;
    let counters: Vec<bool> = (0..keys)
        .map(|k| if keys == 2 { k == 1 } else { r.below(2) == 0 })
        .collect();
    let init: Vec<State> = counters
        .iter()
        .map(|&c| match (c, r.below(3)) {
            (_, 0) => None,
            (true, _) => Some(r.below(10).to_string().into_bytes()),
            (false, _) => Some(b"init".to_vec()),
        })
        .collect();
    let nthreads = 2 + r.below(THREADS as u64 - 1) as usize;
    let mut fresh = 0u64;
    let mut threads = Vec::new();
    for t in 0..nthreads {
        let nops = 3 + r.below(3) as usize;
        let mut ops = Vec::new();
        for _ in 0..nops {
            let k = r.below(keys as u64) as usize;
            fresh += 1;
            let value = |r: &mut Rng| -> Vec<u8> {
                if counters[k] {
                    (r.below(20) as i64 - 5).to_string().into_bytes()
                } else {
                    format!("t{t}.{fresh}").into_bytes()
                }
            };
            let op = if counters[k] {
                match r.below(20) {
                    0..=4 => Planned::Get,
                    5..=12 => Planned::Incr(match r.below(16) {
                        0 => i64::MAX,
                        _ => r.below(9) as i64 - 3,
                    }),
                    13..=14 => Planned::Put(value(&mut r)),
                    15 => Planned::Delete,
                    _ => Planned::Cas {
                        absent: r.below(4) == 0,
                        new: Some(value(&mut r)),
                    },
                }
            } else {
                match r.below(20) {
                    0..=5 => Planned::Get,
                    6..=10 => Planned::Put(value(&mut r)),
                    11..=13 => Planned::Delete,
                    14 => Planned::Incr(1),
                    _ => Planned::Cas {
                        absent: r.below(4) == 0,
                        new: (r.below(5) != 0).then(|| value(&mut r)),
                    },
                }
            };
            ops.push((k, op));
        }
        threads.push(ops);
    }
    Plan {
        counters,
        init,
        threads,
    }
}

fn key_name(history: usize, k: usize) -> Vec<u8> {
    format!("h{history}/k{k}").into_bytes()
}

/// The global ticket counter.
static TICKETS: AtomicU64 = AtomicU64::new(0);

fn ticket() -> u64 {
    TICKETS.fetch_add(1, Ordering::SeqCst)
}

/// Runs one thread's operations of history `index`.
fn run_thread(
    db: &Db,
    index: usize,
    thread: usize,
    ops: &[(usize, Planned)],
    out: &mut Vec<Event>,
) {
    let mut last_seen: Vec<State> = vec![None; 2];
    let mut jitter = Rng((index * THREADS + thread) as u64);
    for (k, planned) in ops {
        // A little jitter, so that the interleavings vary.
        for _ in 0..jitter.below(256) {
            std::hint::spin_loop();
        }
        let key = key_name(index, *k);
        let call = match planned {
            Planned::Get => Call::Get,
            Planned::Put(v) => Call::Put(v.clone()),
            Planned::Delete => Call::Delete,
            Planned::Incr(d) => Call::Incr(*d),
            Planned::Cas { absent, new } => Call::Cas {
                expected: if *absent { None } else { last_seen[*k].clone() },
                new: new.clone(),
            },
        };
        let invoked = ticket();
        let ret = match &call {
            Call::Get => Ret::Value(db.get(&key).expect("get")),
            Call::Put(v) => {
                db.put(&key, v).expect("put");
                Ret::Unit
            }
            Call::Delete => Ret::Existed(db.delete(&key).expect("delete")),
            Call::Incr(d) => Ret::Incr(match db.incr(&key, *d) {
                Ok(n) => Ok(n),
                Err(cairn::Error::NotAnInteger) => Err(IncrError::NotAnInteger),
                Err(cairn::Error::Overflow) => Err(IncrError::Overflow),
                Err(e) => panic!("incr failed: {e}"),
            }),
            Call::Cas { expected, new } => Ret::Cas(
                db.compare_and_swap(&key, expected.as_deref(), new.as_deref())
                    .expect("compare_and_swap")
                    .map_err(|c| c.current),
            ),
        };
        let returned = ticket();
        match &ret {
            Ret::Value(v) => last_seen[*k] = v.clone(),
            Ret::Cas(Err(cur)) => last_seen[*k] = cur.clone(),
            Ret::Cas(Ok(())) => {
                if let Call::Cas { new, .. } = &call {
                    last_seen[*k] = new.clone();
                }
            }
            Ret::Incr(Ok(n)) => last_seen[*k] = Some(n.to_string().into_bytes()),
            _ => {}
        }
        out.push(Event {
            thread,
            key: *k,
            call,
            ret,
            invoked,
            returned,
        });
    }
}

/// What a run checked.
#[derive(Default)]
struct Checked {
    histories: usize,
    operations: usize,
    /// Histories in which operations of different threads on one key
    /// overlapped in time.
    concurrent: usize,
}

/// Runs `count` histories (numbered from `first`) on a fresh store under
/// `policy` and checks them.
fn run_histories(policy: SyncPolicy, first: usize, count: usize, seed: u64) -> Checked {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Options::new()
        .sync_policy(policy)
        .max_segment_bytes(64 * 1024)
        .compaction_interval_ms(20)
        .open(dir.path())
        .expect("open");
    let plans: Vec<Plan> = (first..first + count).map(|i| plan(i, seed)).collect();
    // The workers start each history together through a spinning barrier
    // of their own (yielding, so that they also make progress on 2 cores):
    // waking threads that sleep on a `Barrier` takes longer than a whole
    // history, and their operations would hardly ever overlap. Worker 0
    // sets up the history's keys before it arrives.
    let arrived = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let events: Mutex<Vec<Vec<Event>>> = Mutex::new(vec![Vec::new(); count]);
    let compactions = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Compaction racing with everything.
        let compactor = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                db.compact().expect("compact");
                compactions.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let (db, plans, events, arrived) = (&db, &plans, &events, &arrived);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for (h, p) in plans.iter().enumerate() {
                        if t == 0 {
                            for (k, init) in p.init.iter().enumerate() {
                                if let Some(v) = init {
                                    db.put(key_name(first + h, k), v).expect("put");
                                }
                            }
                        }
                        arrived.fetch_add(1, Ordering::AcqRel);
                        while arrived.load(Ordering::Acquire) < (h + 1) * THREADS {
                            std::thread::yield_now();
                        }
                        if let Some(ops) = p.threads.get(t) {
                            run_thread(db, first + h, t, ops, &mut mine);
                            events.lock().expect("events")[h].append(&mut mine);
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        stop.store(true, Ordering::Relaxed);
        compactor.join().expect("compactor");
    });
    let events = events.into_inner().expect("events");
    let mut checked = Checked {
        histories: count,
        ..Checked::default()
    };
    for (h, (p, events)) in plans.iter().zip(events).enumerate() {
        checked.operations += events.len();
        let history = History {
            index: first + h,
            init: p.init.clone(),
            events,
        };
        checked.concurrent += usize::from(history.has_overlap());
        if let Err(k) = history.check() {
            panic!(
                "not linearizable ({policy:?}), key {k} ({}):\n{history}",
                if p.counters[k] { "counter" } else { "register" }
            );
        }
    }
    assert!(
        compactions.load(Ordering::Relaxed) > 0,
        "no compaction ran during the histories"
    );
    db.close().expect("close");
    checked
}

#[test]
fn concurrent_operations_are_linearizable() {
    let n: usize = std::env::var("CAIRN_LIN_HISTORIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let seed = 0x11ea_7ab1e;
    let started = Instant::now();
    let never = run_histories(SyncPolicy::Never, 0, n, seed);
    let always = run_histories(SyncPolicy::Always, n, (n / 50).max(50), seed);
    let histories = never.histories + always.histories;
    let concurrent = never.concurrent + always.concurrent;
    eprintln!(
        "linearizability: {histories} histories ({} with SyncPolicy::Never, {} with Always), \
         {} operations checked, {concurrent} histories with overlapping operations on a key, \
         in {:.1?}",
        never.histories,
        always.histories,
        never.operations + always.operations,
        started.elapsed()
    );
    assert!(histories >= n);
    // The point is concurrency. On an idle 2-core machine about a third of
    // the histories have calls on one key that overlap in time, on a loaded
    // one less than a tenth; hardly any would mean the threads no longer
    // run together.
    assert!(
        concurrent * 100 >= histories,
        "only {concurrent} of {histories} histories had overlapping operations"
    );
}
