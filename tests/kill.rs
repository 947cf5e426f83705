//! Real `kill -9`: a child process writes, the parent kills it at random
//! moments and checks that every acknowledged write survived.
//!
//! The parent test (`kill_9_loses_no_acknowledged_write`) runs this test
//! binary again as a child (`child_writer`, which does nothing unless
//! `CAIRN_KILL_CHILD` names a store directory). The child opens the store on
//! the real file system with `SyncPolicy::Always` and 64 KiB segments, and
//! loops over random operations: puts of values derived from the key and a
//! counter (10 bytes to 2 KiB, so segments roll), deletes, TTL puts,
//! increments, batches, and now and then a full `compact()`. Before each
//! operation it prints what it is about to do, and after the operation
//! returns `Ok` it prints an acknowledgement, one flushed line each, on a
//! pipe to the parent.
//!
//! The parent waits a random 1 to 30 ms (sometimes without even waiting for
//! the child to finish opening the store, so kills also land during
//! recovery), sends SIGKILL, waits for the child, reopens the store itself
//! and reads every key: the store must equal the model of every
//! acknowledged operation, or that model plus the one operation that was in
//! flight (all of a batch or none of it; a compaction changes nothing).
//! TTL puts must still have their TTL. The next cycle's child continues on
//! the same directory with its counter past every value written so far, so
//! recovery after recovery, torn tails cut by an earlier open, and
//! compactions interrupted by the kill are all exercised.
//!
//! `CAIRN_KILL_CYCLES` sets the number of kill cycles (default 200, the CI
//! run, about 20 s in debug). The long run is
//!
//! ```text
//! CAIRN_KILL_CYCLES=5000 cargo test --release --test kill
//! ```
//!
//! `CAIRN_KILL_SEED` replays the parent's random choices (the seed is
//! printed; the kill moments themselves are real time and do not replay).

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cairn::{Batch, Db, Options, SyncPolicy, Ttl};
use common::sim::Rng;

/// The store directory the child writes to (set only for the child).
const CHILD_ENV: &str = "CAIRN_KILL_CHILD";
/// The first counter value the child uses.
const START_ENV: &str = "CAIRN_KILL_START";
/// Seeds the child's choice of operations.
const SEED_ENV: &str = "CAIRN_KILL_CHILD_SEED";

/// Keys the workload touches: `k00`..`k47`, and `n0`..`n2` for increments.
const KEYS: u64 = 48;
const COUNTERS: u64 = 3;
const TTL: Duration = Duration::from_secs(24 * 3600);

fn options() -> Options {
    Options::new()
        .sync_policy(SyncPolicy::Always)
        .max_segment_bytes(64 << 10)
        .auto_compact(false)
}

fn key(i: u64) -> String {
    format!("k{i:02}")
}

fn counter_key(i: u64) -> String {
    format!("n{i}")
}

/// The value written by operation `counter` under `key`: unique to both,
/// 10 bytes to about 2 KiB long.
fn value(key: &str, counter: u64) -> Vec<u8> {
    let mut v = format!("{key}@{counter}:").into_bytes();
    let len = (counter.wrapping_mul(2_654_435_761) >> 7) % 2048;
    let mut r = Rng::new(counter);
    while (v.len() as u64) < len {
        v.push(b'a' + (r.next_u64() % 26) as u8);
    }
    v
}

/// One operation, as the child announces it on a line.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Put(String),
    PutTtl(String),
    Delete(String),
    Incr(String, i64),
    /// (key, true = put / false = delete)
    Batch(Vec<(String, bool)>),
    Compact,
}

impl Op {
    fn encode(&self) -> String {
        match self {
            Op::Put(k) => format!("put {k}"),
            Op::PutTtl(k) => format!("ttl {k}"),
            Op::Delete(k) => format!("del {k}"),
            Op::Incr(k, d) => format!("incr {k} {d}"),
            Op::Batch(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|(k, put)| format!("{}{k}", if *put { '+' } else { '-' }))
                    .collect();
                format!("batch {}", parts.join(" "))
            }
            Op::Compact => "compact".to_string(),
        }
    }

    fn decode(words: &[&str]) -> Option<Op> {
        let arg = |i: usize| words.get(i).map(|s| (*s).to_string());
        Some(match *words.first()? {
            "put" => Op::Put(arg(1)?),
            "ttl" => Op::PutTtl(arg(1)?),
            "del" => Op::Delete(arg(1)?),
            "incr" => Op::Incr(arg(1)?, words.get(2)?.parse().ok()?),
            "batch" => Op::Batch(
                words[1..]
                    .iter()
                    .map(|w| (w[1..].to_string(), w.starts_with('+')))
                    .collect(),
            ),
            "compact" => Op::Compact,
            _ => return None,
        })
    }
}

fn random_op(r: &mut Rng) -> Op {
    let k = key(r.below(KEYS));
    match r.below(40) {
        0..=19 => Op::Put(k),
        20..=24 => Op::Delete(k),
        25..=28 => Op::PutTtl(k),
        29..=33 => Op::Incr(counter_key(r.below(COUNTERS)), r.below(11) as i64 - 3),
        34..=38 => Op::Batch(
            (0..2 + r.below(5))
                .map(|_| (key(r.below(KEYS)), r.below(4) != 0))
                .collect(),
        ),
        _ => Op::Compact,
    }
}

/// Writes one line to stdout at once and flushes it. (Direct writes to
/// stdout are not captured by the test harness.)
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    out.write_all(format!("\n{line}\n").as_bytes())
        .and_then(|()| out.flush())
        .expect("write to the parent");
}

/// Not a test on its own: the child process of
/// `kill_9_loses_no_acknowledged_write`. It writes until it is killed.
#[test]
#[ignore = "the child process of kill_9_loses_no_acknowledged_write; runs only when it sets CAIRN_KILL_CHILD"]
fn child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let num = |name: &str| -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    let mut counter = num(START_ENV);
    let mut r = Rng::new(num(SEED_ENV));
    let db = options().open(&dir).expect("child: open");
    say("#READY");
    loop {
        let op = random_op(&mut r);
        say(&format!("#W {counter} {}", op.encode()));
        let result = match &op {
            Op::Put(k) => db.put(k, value(k, counter)).map(|()| String::new()),
            Op::PutTtl(k) => db
                .put_with_ttl(k, value(k, counter), TTL)
                .map(|()| String::new()),
            Op::Delete(k) => db.delete(k).map(|_| String::new()),
            Op::Incr(k, d) => db.incr(k, *d).map(|n| format!(" {n}")),
            Op::Batch(items) => {
                let mut b = Batch::new();
                for (k, put) in items {
                    if *put {
                        b.push_put(k, value(k, counter), None);
                    } else {
                        b.push_delete(k);
                    }
                }
                db.write_batch(b).map(|()| String::new())
            }
            Op::Compact => db.compact().map(|_| String::new()),
        };
        let extra = result.unwrap_or_else(|e| panic!("child: {op:?} failed: {e}"));
        say(&format!("#A {counter}{extra}"));
        counter += 1;
    }
}

/// What the parent expects of one key: its value, and whether it has a TTL.
type Model = BTreeMap<String, (Vec<u8>, bool)>;

/// `model` after `op`, the operation numbered `counter`.
fn apply(model: &Model, op: &Op, counter: u64) -> Model {
    let mut m = model.clone();
    match op {
        Op::Put(k) => {
            m.insert(k.clone(), (value(k, counter), false));
        }
        Op::PutTtl(k) => {
            m.insert(k.clone(), (value(k, counter), true));
        }
        Op::Delete(k) => {
            m.remove(k);
        }
        Op::Incr(k, d) => {
            let (cur, ttl) = m.get(k).map_or((0, false), |(v, ttl)| {
                let n = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<i64>().ok())
                    .expect("counters hold integers");
                (n, *ttl)
            });
            m.insert(k.clone(), ((cur + d).to_string().into_bytes(), ttl));
        }
        Op::Batch(items) => {
            for (k, put) in items {
                if *put {
                    m.insert(k.clone(), (value(k, counter), false));
                } else {
                    m.remove(k);
                }
            }
        }
        Op::Compact => {}
    }
    m
}

fn universe() -> Vec<String> {
    (0..KEYS)
        .map(key)
        .chain((0..COUNTERS).map(counter_key))
        .collect()
}

/// What the store holds, for every key of the universe.
fn observe(db: &Db) -> Result<Model, String> {
    let mut out = Model::new();
    for k in universe() {
        let v = db.get(&k).map_err(|e| format!("get {k}: {e}"))?;
        let ttl = db.ttl(&k).map_err(|e| format!("ttl {k}: {e}"))?;
        match (v, ttl) {
            (Some(v), Ttl::Persistent) => {
                out.insert(k, (v, false));
            }
            (Some(v), Ttl::Expires(left)) if left <= TTL => {
                out.insert(k, (v, true));
            }
            (None, Ttl::Missing) => {}
            (v, t) => {
                return Err(format!(
                    "{k}: value {:?} with ttl {t:?}",
                    v.map(|v| brief(&v))
                ))
            }
        }
    }
    Ok(out)
}

fn brief(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.split(':').next().unwrap_or("").to_string()
}

/// The keys on which two models differ.
fn diff(got: &Model, want: &Model) -> String {
    let show = |e: Option<&(Vec<u8>, bool)>| {
        e.map_or("absent".to_string(), |(v, ttl)| {
            format!("{}{}", brief(v), if *ttl { " (ttl)" } else { "" })
        })
    };
    let parts: Vec<String> = universe()
        .into_iter()
        .filter(|k| got.get(k) != want.get(k))
        .map(|k| {
            format!(
                "{k}: store has {}, expected {}",
                show(got.get(&k)),
                show(want.get(&k))
            )
        })
        .collect();
    parts.join("; ")
}

/// What the parent heard from one child.
#[derive(Default)]
struct Heard {
    ready: bool,
    /// Acknowledged operations, in order, with what the child reported (the
    /// result of an increment).
    acked: Vec<(u64, Op, Option<i64>)>,
    /// The operation announced but not acknowledged, if any.
    in_flight: Option<(u64, Op)>,
    /// The highest counter announced.
    last_counter: Option<u64>,
}

/// Reads the child's lines until it dies; `ready` fires once it has opened
/// the store.
fn listen(child: &mut Child, ready: mpsc::Sender<()>) -> JoinHandle<Result<Heard, String>> {
    let stdout = child.stdout.take().expect("child stdout");
    std::thread::spawn(move || {
        let mut h = Heard::default();
        let mut out = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match out.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            // Each line is one small write(2) to a pipe, so a kill cannot
            // split it; a line without its newline is ignored all the same.
            if buf.last() != Some(&b'\n') {
                break;
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            let Some(at) = line.find('#') else { continue };
            let words: Vec<&str> = line[at + 1..].split_whitespace().collect();
            match words.first().copied() {
                Some("READY") => {
                    h.ready = true;
                    let _ = ready.send(());
                }
                Some("W") => {
                    let c: u64 = words
                        .get(1)
                        .and_then(|w| w.parse().ok())
                        .ok_or(format!("bad line {line:?}"))?;
                    let op = Op::decode(&words[2..]).ok_or(format!("bad line {line:?}"))?;
                    if let Some(prev) = &h.in_flight {
                        return Err(format!("{prev:?} was never acknowledged"));
                    }
                    h.in_flight = Some((c, op));
                    h.last_counter = Some(c);
                }
                Some("A") => {
                    let c: u64 = words
                        .get(1)
                        .and_then(|w| w.parse().ok())
                        .ok_or(format!("bad line {line:?}"))?;
                    match h.in_flight.take() {
                        Some((w, op)) if w == c => {
                            let n = words.get(2).and_then(|s| s.parse().ok());
                            h.acked.push((c, op, n));
                        }
                        other => return Err(format!("ack {c} for {other:?}")),
                    }
                }
                _ => {}
            }
        }
        Ok(h)
    })
}

#[derive(Default)]
struct Totals {
    cycles: u64,
    acked_ops: u64,
    keys_checked: u64,
    in_flight_landed: u64,
    in_flight_lost: u64,
    killed_before_ready: u64,
    killed_in_compaction: u64,
    torn_tails_cut: u64,
    compactions_finished_at_open: u64,
    read_only_checks: u64,
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    let cycles: u64 = std::env::var("CAIRN_KILL_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seed: u64 = std::env::var("CAIRN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("kill -9 test: {cycles} cycles, CAIRN_KILL_SEED={seed}");
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("db");
    let exe = std::env::current_exe().expect("current_exe");
    let mut model = Model::new();
    let mut next_counter = 0u64;
    let mut t = Totals::default();
    for cycle in 0..cycles {
        let stderr_path = tmp.path().join("child.stderr");
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "child_writer",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .env(START_ENV, next_counter.to_string())
            .env(SEED_ENV, rng.next_u64().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn the child");
        let (ready_tx, ready_rx) = mpsc::channel();
        let listener = listen(&mut child, ready_tx);
        // Mostly kill while the child writes, 1 to 30 ms after it opened
        // the store; one cycle in eight, 0 to 15 ms after it started, which
        // often lands while it opens (and recovers) the store.
        if rng.below(8) != 0 {
            if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "cycle {cycle}: the child never opened the store:\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(1 + rng.below(30)));
        } else {
            std::thread::sleep(Duration::from_millis(rng.below(16)));
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "cycle {cycle}: the child exited by itself ({status}):\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait for the child");
        let heard = listener
            .join()
            .expect("listener thread")
            .unwrap_or_else(|e| panic!("cycle {cycle}: garbled child output: {e}"));

        // The model of everything acknowledged, checked against what the
        // child itself saw.
        for (c, op, reported) in &heard.acked {
            model = apply(&model, op, *c);
            if let (Op::Incr(k, _), Some(n)) = (op, reported) {
                let want = model.get(k).map(|(v, _)| v.clone());
                assert_eq!(
                    want,
                    Some(n.to_string().into_bytes()),
                    "cycle {cycle}: the child's increment of {k} (op {c}) disagrees with the model"
                );
            }
        }
        t.acked_ops += heard.acked.len() as u64;
        if !heard.ready {
            t.killed_before_ready += 1;
        }
        if matches!(heard.in_flight, Some((_, Op::Compact))) {
            t.killed_in_compaction += 1;
        }
        let with_in_flight = heard
            .in_flight
            .as_ref()
            .map(|(c, op)| apply(&model, op, *c));

        // Half the checks open the store read-only, which repairs nothing:
        // the next child then recovers the crash itself.
        let read_only = rng.below(2) == 0;
        if read_only {
            t.read_only_checks += 1;
        }
        let db = options()
            .read_only(read_only)
            .open(&dir)
            .unwrap_or_else(|e| {
                panic!(
                    "cycle {cycle} (CAIRN_KILL_SEED={seed}): reopening after kill -9 failed: {e}"
                )
            });
        let rep = db.recovery_report().clone();
        if rep.truncated_tail.is_some() {
            t.torn_tails_cut += 1;
        }
        if rep.finished_compaction {
            t.compactions_finished_at_open += 1;
        }
        assert!(
            rep.skipped.is_empty(),
            "cycle {cycle}: strict open skipped {:?}",
            rep.skipped
        );
        let seen = observe(&db).unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        t.keys_checked += universe().len() as u64;
        if seen == model {
            if heard.in_flight.is_some() && with_in_flight.as_ref() != Some(&model) {
                t.in_flight_lost += 1;
            }
        } else if with_in_flight.as_ref() == Some(&seen) {
            t.in_flight_landed += 1;
            model = seen;
        } else {
            panic!(
                "cycle {cycle} (CAIRN_KILL_SEED={seed}): after kill -9 the store, opened {}, \
                 differs from every acknowledged write ({} acknowledged this cycle, in flight: \
                 {:?}): {}\nrecovery report: {rep:?}\nstore directory kept at {}",
                if read_only { "read-only" } else { "read-write" },
                heard.acked.len(),
                heard.in_flight,
                diff(&seen, &model),
                keep(tmp).display()
            );
        }
        drop(db);
        next_counter = heard.last_counter.map_or(next_counter, |c| c + 1);
        t.cycles += 1;
    }
    eprintln!(
        "kill -9: {} cycles in {:?}: {} acknowledged operations, all present; {} key reads checked; \
         in-flight operation landed {} times, lost {} times; {} kills before the store was open, \
         {} during a compaction; {} checks read-only (the next child recovered); reopen cut {} \
         torn tails and finished {} compactions",
        t.cycles,
        started.elapsed(),
        t.acked_ops,
        t.keys_checked,
        t.in_flight_landed,
        t.in_flight_lost,
        t.killed_before_ready,
        t.killed_in_compaction,
        t.read_only_checks,
        t.torn_tails_cut,
        t.compactions_finished_at_open
    );
    assert!(t.acked_ops > 0, "no operation was ever acknowledged");
}

/// Keeps a temporary directory for a post-mortem.
fn keep(tmp: tempfile::TempDir) -> std::path::PathBuf {
    let p = tmp.path().to_path_buf();
    std::mem::forget(tmp);
    p
}
