//! Shared harness for the simulated-file-system tests (`tests/crash.rs`,
//! `tests/io_faults.rs`, and the options and directory of
//! `tests/corruption_sweep.rs` and `tests/sessions_durability.rs`):
//! workloads, a reference model, and the checks run after every simulated
//! crash.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn::{Batch, Db, ManualClock, Options, SyncPolicy};

use super::sim::{Damage, OpenMode, Rng, SimFs, Vfs};
use super::TestOptions;

/// Where every test clock starts (unix ms).
pub use super::START_MS;
/// The store directory inside the simulated file system.
pub const DIR: &str = "/sim/db";

/// One operation of a workload.
#[derive(Clone, Debug)]
pub enum Op {
    Put(u8, Vec<u8>),
    PutTtl(u8, Vec<u8>, u64),
    Delete(u8),
    Incr(u8, i64),
    Cas(u8, Option<Vec<u8>>, Vec<u8>),
    Batch(Vec<(u8, Option<Vec<u8>>)>),
    Compact,
    Sync,
    Advance(u64),
}

/// The workloads the crash tests run.
pub const WORKLOADS: [&str; 7] = [
    "writes",
    "ttl",
    "incr",
    "batch",
    "rollover",
    "compaction",
    "mixed",
];

pub fn key(k: u8) -> Vec<u8> {
    if k >= 100 {
        format!("counter{}", k - 100).into_bytes()
    } else {
        format!("key{k}").into_bytes()
    }
}

/// A value unique to (operation index, salt), `len` bytes long, so that a
/// value read back identifies exactly which write produced it.
fn value(i: usize, salt: u64, len: usize) -> Vec<u8> {
    let tag = format!("v{i}.{salt}:");
    let mut v = tag.into_bytes();
    let mut r = Rng::new(i as u64 ^ salt.rotate_left(17));
    while v.len() < len {
        v.push(b'a' + (r.next_u64() % 26) as u8);
    }
    v.truncate(len.max(1));
    v
}

/// A deterministic workload of `n` operations.
pub fn workload(name: &str, seed: u64, n: usize) -> Vec<Op> {
    let mut r = Rng::new(seed ^ 0x5eed);
    let mut ops = Vec::with_capacity(n);
    let small = |r: &mut Rng| 1 + r.below(120) as usize;
    for i in 0..n {
        let k = r.below(6) as u8;
        let op = match name {
            "writes" => match r.below(5) {
                0 => Op::Delete(k),
                _ => Op::Put(k, value(i, seed, small(&mut r))),
            },
            "ttl" => match r.below(6) {
                0 => Op::Advance(1 + r.below(40)),
                1 | 2 => Op::PutTtl(k, value(i, seed, small(&mut r)), 1 + r.below(60)),
                3 => Op::Delete(k),
                _ => Op::Put(k, value(i, seed, small(&mut r))),
            },
            "incr" => match r.below(4) {
                0 => Op::Put(k, value(i, seed, small(&mut r))),
                _ => Op::Incr(100 + r.below(3) as u8, r.below(21) as i64 - 10),
            },
            "batch" => match r.below(3) {
                0 => Op::Put(k, value(i, seed, small(&mut r))),
                _ => {
                    let len = 1 + r.below(5) as usize;
                    Op::Batch(
                        (0..len)
                            .map(|j| {
                                let k = r.below(6) as u8;
                                let v = (r.below(4) != 0)
                                    .then(|| value(i * 10 + j, seed, small(&mut r)));
                                (k, v)
                            })
                            .collect(),
                    )
                }
            },
            "rollover" => match r.below(6) {
                0 => Op::Delete(k),
                _ => Op::Put(k, value(i, seed, 200 + r.below(1400) as usize)),
            },
            "compaction" => match r.below(8) {
                0 => Op::Compact,
                1 => Op::Delete(k),
                2 => Op::PutTtl(k, value(i, seed, small(&mut r)), 1 + r.below(30)),
                3 => Op::Advance(1 + r.below(20)),
                _ => Op::Put(k, value(i, seed, 100 + r.below(900) as usize)),
            },
            _ => match r.below(10) {
                0 => Op::Compact,
                1 => Op::Delete(k),
                2 => Op::PutTtl(k, value(i, seed, small(&mut r)), 1 + r.below(30)),
                3 => Op::Advance(1 + r.below(20)),
                4 => Op::Incr(100 + r.below(2) as u8, 1),
                5 => Op::Cas(
                    k,
                    (r.below(2) == 0).then(|| value(i.saturating_sub(1), seed, 8)),
                    value(i, seed, 8),
                ),
                6 => Op::Batch(vec![
                    (k, Some(value(i, seed, small(&mut r)))),
                    ((k + 1) % 6, None),
                ]),
                _ => Op::Put(k, value(i, seed, 50 + r.below(700) as usize)),
            },
        };
        ops.push(op);
    }
    ops
}

/// Adds `Sync` operations for the policies that do not sync every write.
pub fn with_syncs(ops: Vec<Op>, seed: u64) -> Vec<Op> {
    let mut r = Rng::new(seed ^ 0x5c);
    let mut out = Vec::with_capacity(ops.len() + ops.len() / 4);
    for op in ops {
        out.push(op);
        if r.below(5) == 0 {
            out.push(Op::Sync);
        }
    }
    out
}

/// Key → (value, absolute expiry in ms, 0 = none).
pub type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

fn visible<'a>(m: &'a Model, k: &[u8], now: u64) -> Option<&'a Vec<u8>> {
    m.get(k)
        .filter(|(_, exp)| *exp == 0 || *exp > now)
        .map(|(v, _)| v)
}

/// Applies `op` at time `now` to the model.
pub fn apply(m: &mut Model, op: &Op, now: u64) {
    match op {
        Op::Put(k, v) => {
            m.insert(key(*k), (v.clone(), 0));
        }
        Op::PutTtl(k, v, ttl) => {
            m.insert(key(*k), (v.clone(), now + ttl));
        }
        Op::Delete(k) => {
            m.remove(&key(*k));
        }
        Op::Incr(k, d) => {
            let kk = key(*k);
            let (cur, exp) = match m.get(&kk).filter(|(_, e)| *e == 0 || *e > now) {
                Some((v, e)) => (
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(0),
                    *e,
                ),
                None => (0, 0),
            };
            m.insert(kk, ((cur + d).to_string().into_bytes(), exp));
        }
        Op::Cas(k, expected, new) => {
            let kk = key(*k);
            if visible(m, &kk, now) == expected.as_ref() {
                m.insert(kk, (new.clone(), 0));
            }
        }
        Op::Batch(items) => {
            for (k, v) in items {
                match v {
                    Some(v) => {
                        m.insert(key(*k), (v.clone(), 0));
                    }
                    None => {
                        m.remove(&key(*k));
                    }
                }
            }
        }
        Op::Compact | Op::Sync | Op::Advance(_) => {}
    }
}

/// The keys any workload touches.
pub fn universe() -> Vec<Vec<u8>> {
    (0..6u8).chain(100..103).map(key).collect()
}

/// What a key reads as, in the model, at `now`.
pub fn model_view(m: &Model, now: u64) -> BTreeMap<Vec<u8>, Vec<u8>> {
    universe()
        .into_iter()
        .filter_map(|k| visible(m, &k, now).map(|v| (k, v.clone())))
        .collect()
}

/// Options for a store on `sim`.
pub fn options(sim: &SimFs, clock: &ManualClock, policy: SyncPolicy) -> Options {
    Options::new()
        .on_sim(sim)
        .auto_compact(false)
        .expiry_sweep_interval_ms(0)
        .clock(clock.clone())
        .sync_policy(policy)
        .max_segment_bytes(4096)
        // A checkpoint at every other roll: the crash tests run on the
        // running checkpoint, its compaction deltas and replay.
        .index_checkpoint_every_bytes(8192)
        // Below half a segment: a reopen often seals the active segment
        // (a roll at open), and the crash tests cover that too.
        .tail_cache_bytes(2048)
}

/// Runs one operation; `Ok` when the store acknowledged it.
pub fn run_op(db: &Db, op: &Op, clock: &ManualClock) -> Result<(), cairn::Error> {
    match op {
        Op::Put(k, v) => db.put(key(*k), v),
        Op::PutTtl(k, v, ttl) => db.put_with_ttl(key(*k), v, Duration::from_millis(*ttl)),
        Op::Delete(k) => db.delete(key(*k)).map(|_| ()),
        Op::Incr(k, d) => db.incr(key(*k), *d).map(|_| ()),
        Op::Cas(k, expected, new) => db
            .compare_and_swap(key(*k), expected.as_deref(), Some(new.as_slice()))
            .map(|_| ()),
        Op::Batch(items) => {
            let mut b = Batch::new();
            for (k, v) in items {
                match v {
                    Some(v) => b.push_put(key(*k), v, None),
                    None => b.push_delete(key(*k)),
                }
            }
            db.write_batch(b)
        }
        Op::Compact => db.compact().map(|_| ()),
        Op::Sync => db.sync(),
        Op::Advance(ms) => {
            clock.advance(Duration::from_millis(*ms));
            Ok(())
        }
    }
}

/// Model states after each prefix of `ops`: `states[i]` is the state after
/// the first `i` operations, with the clock each operation ran at.
pub fn prefix_states(ops: &[Op]) -> Vec<Model> {
    let mut now = START_MS;
    let mut m = Model::new();
    let mut out = vec![m.clone()];
    for op in ops {
        apply(&mut m, op, now);
        if let Op::Advance(ms) = op {
            now += ms;
        }
        out.push(m.clone());
    }
    out
}

/// What the store reads, for every key of the universe.
pub fn observed(db: &Db) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    for k in universe() {
        match db.get(&k) {
            Ok(Some(v)) => {
                out.insert(k, v);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("get {:?} failed: {e}", String::from_utf8_lossy(&k))),
        }
    }
    Ok(out)
}

/// The index of a prefix in `lo..=hi` whose model view at `now` equals
/// `seen`.
pub fn matching_prefix(
    states: &[Model],
    lo: usize,
    hi: usize,
    now: u64,
    seen: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Option<usize> {
    (lo..=hi.min(states.len() - 1)).find(|&i| model_view(&states[i], now) == *seen)
}

/// Files in the store directory that should not be there after an open.
pub fn stray_files(sim: &SimFs) -> Vec<String> {
    sim.list(Path::new(DIR))
        .unwrap_or_default()
        .into_iter()
        .filter(|n| {
            let ok = n == "LOCK"
                || n == "index.ckpt"
                || ((n.ends_with(".seg") || n.ends_with(".hint"))
                    && n.len() >= 14
                    && n[..10].bytes().all(|b| b.is_ascii_digit()));
            !ok
        })
        .collect()
}

pub fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

/// Describes a value briefly for failure messages.
pub fn brief(m: &BTreeMap<Vec<u8>, Vec<u8>>) -> String {
    let parts: Vec<String> = m
        .iter()
        .map(|(k, v)| {
            let v = String::from_utf8_lossy(v);
            let v: String = v.chars().take(12).collect();
            format!("{}={v}", String::from_utf8_lossy(k))
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// Reopens the store after a crash and checks it: it opens; what it reads
/// equals the model after some prefix in `acked..=issued`; no stray files;
/// a new write survives a power loss and another reopen.
pub fn check_after_crash(
    sim: &SimFs,
    clock: &ManualClock,
    policy: SyncPolicy,
    states: &[Model],
    acked: usize,
    issued: usize,
) -> Result<(), String> {
    let db = options(sim, clock, policy)
        .open(DIR)
        .map_err(|e| format!("reopen failed: {e}"))?;
    let now = clock.now_ms();
    let seen = observed(&db)?;
    let Some(k) = matching_prefix(states, acked, issued, now, &seen) else {
        let near: Vec<String> = (acked..=issued.min(states.len() - 1))
            .map(|i| format!("    after {i} ops: {}", brief(&model_view(&states[i], now))))
            .collect();
        return Err(format!(
            "recovered state {} is not the state after any prefix of {acked}..={issued} operations:\n{}",
            brief(&seen),
            near.join("\n")
        ));
    };
    let stray = stray_files(sim);
    if !stray.is_empty() {
        return Err(format!("stray files after reopen: {stray:?}"));
    }
    // The store keeps working, and a new write survives another restart.
    db.put(key(0), b"after the crash")
        .and_then(|()| db.sync())
        .map_err(|e| format!("write after reopen failed: {e}"))?;
    drop(db);
    sim.crash(Damage::DropUnsynced, 7);
    let db = options(sim, clock, policy)
        .open(DIR)
        .map_err(|e| format!("second reopen failed: {e}"))?;
    let mut expected = model_view(&states[k], now);
    expected.insert(key(0), b"after the crash".to_vec());
    let again = observed(&db)?;
    if again != expected {
        return Err(format!(
            "after a write and another restart: {} instead of {}",
            brief(&again),
            brief(&expected)
        ));
    }
    Ok(())
}

pub trait NowMs {
    fn now_ms(&self) -> u64;
}

impl NowMs for ManualClock {
    fn now_ms(&self) -> u64 {
        cairn::Clock::now_unix_ms(self)
    }
}

/// The files of a store directory by name, with their bytes.
pub type Files = BTreeMap<String, Vec<u8>>;

/// A simulated file system holding exactly `files` in [`DIR`], durably.
pub fn fresh_fs(files: &Files) -> SimFs {
    let sim = SimFs::new();
    let dir = Path::new(DIR);
    sim.create_dir_all(dir).expect("mkdir");
    for (name, bytes) in files {
        let path = dir.join(name);
        drop(sim.open(&path, OpenMode::CreateNew).expect("create"));
        // Durable contents in one step (faster than writes and an fsync).
        sim.set_file_bytes(&path, bytes).expect("fill");
    }
    sim.sync_dir(dir).expect("sync dir");
    sim
}

/// The files of [`DIR`] in `sim`, with their bytes.
pub fn snapshot(sim: &SimFs) -> Files {
    let dir = Path::new(DIR);
    sim.list(dir)
        .expect("list")
        .into_iter()
        .map(|n| {
            let b = sim.file_bytes(&dir.join(&n)).expect("file bytes");
            (n, b)
        })
        .collect()
}
