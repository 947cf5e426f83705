//! Simulated power loss at every file operation.
//!
//! Each workload (plain writes, TTL writes, increments, batches, segment
//! rollover, compaction, a mix of everything) runs on the simulated file
//! system (`cairn::sim::SimFs`) under `SyncPolicy::Always` and under
//! `SyncPolicy::Never` with explicit `sync()` calls. For every file
//! operation index N the run is repeated with a crash at operation N, under
//! every damage model (process crash; unsynced data dropped; a random
//! prefix of it kept; torn at 512 B or 4 KiB with zeros or garbage). A
//! quarter of the crashed states also crash again at a random point of the
//! first recovery. Then the store is reopened and checked:
//!
//! * it opens (no panic, no error);
//! * **durability**: every write acknowledged under `Always`, or covered
//!   by a completed `sync()`, is present;
//! * **prefix**: what every key reads as equals the model after some prefix
//!   of the issued operations (so batches are all-or-nothing, nothing newer
//!   survives while something older is lost, no value is wrong, and no
//!   expired key comes back);
//! * no stray files remain;
//! * the store keeps working: a new write survives another reopen.
//!
//! `CAIRN_CRASH_SEEDS=n` runs n seeds per workload and policy (default 2:
//! over 10,000 crash states); `CAIRN_CRASH_SEEDS=130` (over 1,000,000
//! states) is the long run.
//! A failure prints the case; `CAIRN_CRASH_CASE="<workload> <policy> <seed>
//! <crash_at> <damage>"` replays just that case with a trace of every
//! file operation.

mod common;

use cairn::{ManualClock, SyncPolicy};
use common::sim::{Damage, Rng, SimFs};
use common::simfs::*;

#[derive(Clone, Debug)]
struct Case {
    workload: String,
    policy: SyncPolicy,
    seed: u64,
    crash_at: u64,
    damage: Damage,
    /// A second crash during the first recovery: (operation, damage, seed).
    recovery_crash: Option<(u64, Damage, u64)>,
}

impl Case {
    fn replay_line(&self) -> String {
        format!(
            "CAIRN_CRASH_CASE=\"{} {} {} {} {:?}\"{}",
            self.workload,
            policy_name(self.policy),
            self.seed,
            self.crash_at,
            self.damage,
            self.recovery_crash
                .map_or(String::new(), |(n, d, s)| format!(
                    " (then a crash at recovery op {n}, {d:?}, seed {s})"
                ))
        )
    }
}

fn policy_name(p: SyncPolicy) -> &'static str {
    match p {
        SyncPolicy::Always => "always",
        _ => "never",
    }
}

fn ops_for(name: &str, policy: SyncPolicy, seed: u64) -> Vec<Op> {
    let n = match name {
        "rollover" | "compaction" | "mixed" => 40,
        _ => 30,
    };
    let ops = workload(name, seed, n);
    if policy == SyncPolicy::Always {
        ops
    } else {
        with_syncs(ops, seed)
    }
}

/// Runs `ops` with a crash at `crash_at`; returns (acknowledged prefix,
/// issued prefix, file operations used).
fn run_until_crash(
    sim: &SimFs,
    clock: &ManualClock,
    policy: SyncPolicy,
    ops: &[Op],
    crash_at: Option<u64>,
) -> (usize, usize, u64) {
    sim.crash_at(crash_at);
    let (mut acked, mut issued) = (0, 0);
    if let Ok(db) = options(sim, clock, policy).open(DIR) {
        for (i, op) in ops.iter().enumerate() {
            issued = i + 1;
            match run_op(&db, op, clock) {
                Ok(()) => {
                    if policy == SyncPolicy::Always || matches!(op, Op::Sync) {
                        acked = i + 1;
                    }
                }
                Err(_) => break,
            }
        }
        drop(db);
    }
    (acked, issued, sim.op_count())
}

fn run_case(case: &Case, ops: &[Op], states: &[Model]) -> Result<(), String> {
    let sim = SimFs::new();
    if std::env::var_os("CAIRN_CRASH_CASE").is_some() {
        sim.set_trace(true);
    }
    let clock = ManualClock::new(START_MS);
    let (acked, issued, _) = run_until_crash(&sim, &clock, case.policy, ops, Some(case.crash_at));
    sim.crash(case.damage, case.seed ^ case.crash_at);
    if let Some((n, d, s)) = case.recovery_crash {
        sim.crash_at(Some(n));
        if let Ok(db) = options(&sim, &clock, case.policy).open(DIR) {
            drop(db);
        }
        sim.crash(d, s);
    }
    let result = check_after_crash(&sim, &clock, case.policy, states, acked, issued);
    if result.is_err() && std::env::var_os("CAIRN_CRASH_CASE").is_some() {
        for line in sim.trace() {
            eprintln!("{line}");
        }
    }
    result.map_err(|e| {
        format!(
            "{e}\n  acked {acked}, issued {issued}\n  replay: {}",
            case.replay_line()
        )
    })
}

fn parse_case(s: &str) -> Case {
    let f: Vec<&str> = s.split_whitespace().collect();
    assert!(
        f.len() >= 5,
        "CAIRN_CRASH_CASE needs: workload policy seed crash_at damage"
    );
    Case {
        workload: f[0].to_string(),
        policy: if f[1] == "always" {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        },
        seed: f[2].parse().expect("seed"),
        crash_at: f[3].parse().expect("crash_at"),
        damage: *Damage::ALL
            .iter()
            .find(|d| format!("{d:?}") == f[4])
            .expect("damage"),
        recovery_crash: None,
    }
}

#[test]
fn crash_at_every_file_operation() {
    if let Ok(s) = std::env::var("CAIRN_CRASH_CASE") {
        let case = parse_case(&s);
        let ops = ops_for(&case.workload, case.policy, case.seed);
        let states = prefix_states(&ops);
        if let Err(e) = run_case(&case, &ops, &states) {
            panic!("{e}");
        }
        return;
    }
    let seeds: u64 = std::env::var("CAIRN_CRASH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let mut states_run = 0u64;
    let mut failures = Vec::new();
    for seed in 0..seeds {
        for workload in WORKLOADS {
            for policy in [SyncPolicy::Always, SyncPolicy::Never] {
                let ops = ops_for(workload, policy, seed);
                let states = prefix_states(&ops);
                // A clean run tells how many file operations the workload
                // (plus the final close) performs.
                let sim = SimFs::new();
                let clock = ManualClock::new(START_MS);
                let (_, _, total) = run_until_crash(&sim, &clock, policy, &ops, None);
                // ... and how many the recovery after it performs.
                sim.crash(Damage::ProcessCrash, 0);
                drop(options(&sim, &clock, policy).open(DIR));
                let recovery_ops = sim.op_count().max(1);
                let mut rng = Rng::new(seed ^ 0xc0ffee);
                for crash_at in 0..=total {
                    for damage in Damage::ALL {
                        let recovery_crash = (rng.below(4) == 0).then(|| {
                            let d = Damage::ALL[rng.below(5) as usize];
                            (rng.below(recovery_ops), d, rng.next_u64())
                        });
                        let case = Case {
                            workload: workload.to_string(),
                            policy,
                            seed,
                            crash_at,
                            damage,
                            recovery_crash,
                        };
                        states_run += 1 + u64::from(recovery_crash.is_some());
                        if let Err(e) = run_case(&case, &ops, &states) {
                            failures.push(e);
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "crash states run: {states_run}, failures: {}",
        failures.len()
    );
    if !failures.is_empty() {
        let show: usize = std::env::var("CAIRN_CRASH_SHOW")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5);
        for f in failures.iter().take(show) {
            eprintln!("FAILED: {f}\n");
        }
        panic!(
            "{} of {states_run} crash states failed; first: {}",
            failures.len(),
            failures[0]
        );
    }
    // The default run is the CI run: it must cover at least 10,000 states.
    assert!(
        states_run >= 10_000 * seeds / 2,
        "only {states_run} crash states"
    );
}

/// Regression (found by the kill -9 test): a compaction killed while it
/// deleted its inputs, then a *read-only* open. The read-only handle may
/// not finish the deletion; it must leave every input the manifest names
/// out, or an older put in an input that survived comes back although the
/// input holding its tombstone is gone.
#[test]
fn read_only_open_after_a_partly_finished_input_deletion() {
    // Builds the store; returns it with the file-operation count reached.
    fn build(sim: &SimFs, clock: &ManualClock) -> (cairn::Db, u64) {
        let db = options(sim, clock, SyncPolicy::Always)
            .open(DIR)
            .expect("open");
        db.put("victim", "old").expect("put");
        for i in 0..60u32 {
            db.put(format!("filler{}", i % 5), [b'x'; 200])
                .expect("put");
        }
        // The old put moves into a compacted segment with a high id.
        db.compact().expect("compact");
        db.delete("victim").expect("delete");
        for i in 0..60u32 {
            db.put(format!("filler{}", i % 5), [b'y'; 200])
                .expect("put");
        }
        let n = sim.op_count();
        (db, n)
    }
    // A first run finds the first segment unlink of the second compaction.
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    sim.set_trace(true);
    let (db, before) = build(&sim, &clock);
    db.compact().expect("compact");
    let unlink_at = sim
        .trace()
        .iter()
        .filter_map(|l| {
            let (n, what) = l.split_once(": ")?;
            let n: u64 = n.trim().parse().ok()?;
            (n >= before && what.starts_with("unlink") && what.ends_with(".seg")).then_some(n)
        })
        .next()
        .expect("the compaction unlinks a segment");
    drop(db);
    // The second run crashes right after that unlink.
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let (db, again) = build(&sim, &clock);
    assert_eq!(again, before, "the file operations are deterministic");
    sim.crash_at(Some(unlink_at));
    assert!(db.compact().is_err(), "the crash point is inside compact()");
    drop(db);
    sim.crash(Damage::ProcessCrash, 0);
    let ro = options(&sim, &clock, SyncPolicy::Always)
        .read_only(true)
        .open(DIR)
        .expect("read-only open");
    assert_eq!(
        ro.get("victim").expect("get"),
        None,
        "a deleted key came back"
    );
    drop(ro);
    let rw = options(&sim, &clock, SyncPolicy::Always)
        .open(DIR)
        .expect("open");
    assert_eq!(rw.get("victim").expect("get"), None);
    assert!(rw.recovery_report().finished_compaction);
}
