//! Sessions survive crashes: a session workload runs on the simulated file
//! system with a crash at every file operation, then the store is reopened
//! and every acknowledged session change must be there.
//!
//! - `SyncPolicy::Always`: power loss under every damage model (unsynced
//!   data dropped, a random prefix of it kept, torn 512 B / 4 KiB blocks).
//! - `SyncPolicy::EveryMillis`: a process crash (the contract for a power
//!   loss under `EveryMillis` is to lose at most the last interval, which
//!   `tests/crash.rs` covers for the engine).
//!
//! The one operation in flight at the crash may or may not have happened;
//! nothing else may differ, and expired sessions stay expired.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cairn::session::Sessions;
use cairn::{ManualClock, SyncPolicy};
use common::sim::{Damage, SimFs};
use common::simfs::{dir, options, START_MS};

#[derive(Clone, Debug)]
enum Op {
    Create {
        user: Option<&'static str>,
        data: u8,
    },
    Update {
        of: usize,
        data: u8,
    },
    Touch(usize),
    Rotate(usize),
    Revoke(usize),
    RevokeAll(&'static str),
    CreateShort,
    Advance(u64),
}

/// The workload: `of` indexes the sessions created so far (rotations add
/// the new id at the end).
fn workload() -> Vec<Op> {
    use Op::*;
    vec![
        Create {
            user: Some("ada"),
            data: 1,
        },
        Create {
            user: None,
            data: 2,
        },
        Create {
            user: Some("ada"),
            data: 3,
        },
        CreateShort,
        Update { of: 1, data: 20 },
        Touch(0),
        Advance(30),
        Rotate(2),
        Create {
            user: Some("bob"),
            data: 4,
        },
        Revoke(1),
        Update { of: 5, data: 30 },
        RevokeAll("ada"),
        Create {
            user: None,
            data: 5,
        },
        Touch(6),
    ]
}

/// What a session should read as: its data, or gone.
type Model = BTreeMap<String, Option<u8>>;

struct Run {
    /// Session ids in creation order (as `of` indexes them).
    ids: Vec<String>,
    /// Their users.
    users: Vec<Option<&'static str>>,
    model: Model,
    /// Ids whose state the in-flight operation may have changed, with the
    /// state it would leave.
    in_flight: Vec<(String, Option<u8>)>,
}

const TTL: Duration = Duration::from_secs(3600);

/// Runs the workload until an operation fails (the crash point).
fn run(sessions: &Sessions, clock: &ManualClock) -> Run {
    let mut r = Run {
        ids: Vec::new(),
        users: Vec::new(),
        model: Model::new(),
        in_flight: Vec::new(),
    };
    for op in workload() {
        match op {
            Op::Create { user, data } => {
                let id = match user {
                    Some(u) => sessions.create_for_user(u, [data], TTL),
                    None => sessions.create([data], TTL),
                };
                // A create that fails never handed out its id: nothing to
                // check for it.
                let Ok(id) = id else { break };
                r.ids.push(id.as_str().to_string());
                r.users.push(user);
                r.model.insert(id.into_string(), Some(data));
            }
            Op::CreateShort => {
                let Ok(id) = sessions.create([9], Duration::from_millis(10)) else {
                    break;
                };
                r.ids.push(id.as_str().to_string());
                r.users.push(None);
                // Expires before the checks (the clock moves 30 ms first).
                r.model.insert(id.into_string(), None);
            }
            Op::Update { of, data } => {
                let id = r.ids[of].clone();
                match sessions.update(&id, [data]) {
                    Ok(true) => {
                        r.model.insert(id, Some(data));
                    }
                    Ok(false) => panic!("update of a live session refused"),
                    Err(_) => {
                        r.in_flight.push((id, Some(data)));
                        break;
                    }
                }
            }
            Op::Touch(of) => {
                if sessions.touch(&r.ids[of]).is_err() {
                    break;
                }
            }
            Op::Rotate(of) => {
                let old = r.ids[of].clone();
                match sessions.rotate(&old) {
                    Ok(Some(new)) => {
                        let data = r.model.insert(old, None).flatten();
                        r.ids.push(new.as_str().to_string());
                        r.users.push(r.users[of]);
                        r.model.insert(new.into_string(), data);
                    }
                    Ok(None) => panic!("rotate of a live session refused"),
                    Err(_) => {
                        r.in_flight.push((old, None));
                        break;
                    }
                }
            }
            Op::Revoke(of) => {
                let id = r.ids[of].clone();
                match sessions.revoke(&id) {
                    Ok(_) => {
                        r.model.insert(id, None);
                    }
                    Err(_) => {
                        r.in_flight.push((id, None));
                        break;
                    }
                }
            }
            Op::RevokeAll(user) => {
                let theirs: Vec<String> = r
                    .ids
                    .iter()
                    .zip(&r.users)
                    .filter(|(_, u)| **u == Some(user))
                    .map(|(id, _)| id.clone())
                    .collect();
                match sessions.revoke_all_for_user(user) {
                    Ok(_) => {
                        for id in theirs {
                            r.model.insert(id, None);
                        }
                    }
                    Err(_) => {
                        // All or nothing: a batch.
                        r.in_flight.extend(theirs.into_iter().map(|id| (id, None)));
                        break;
                    }
                }
            }
            Op::Advance(ms) => clock.advance(Duration::from_millis(ms)),
        }
    }
    r
}

fn check(sessions: &Sessions, r: &Run, case: &str) {
    let in_flight_applied = r
        .in_flight
        .iter()
        .all(|(id, want)| sessions.get(id).expect("get").map(|s| s.data[0]) == *want);
    for (id, want) in &r.model {
        let got = sessions.get(id).expect("get").map(|s| s.data[0]);
        let alt = r
            .in_flight
            .iter()
            .find(|(i, _)| i == id)
            .filter(|_| in_flight_applied)
            .map(|(_, w)| *w);
        assert!(
            got == *want || alt == Some(got),
            "{case}: session {id} reads {got:?}, acknowledged {want:?}"
        );
    }
    // The index never lists a dead session.
    // A handle is the first 16 characters of its id. Only the write that
    // failed (a create or a rotation whose id was never handed out) can
    // have left a session whose id is unknown here.
    let mut unknown = 0;
    for user in ["ada", "bob"] {
        for (handle, s) in sessions.list_for_user(user).expect("list") {
            assert_eq!(s.user.as_deref(), Some(user), "{case}");
            match r.ids.iter().find(|id| id.starts_with(handle.as_str())) {
                Some(id) => assert!(
                    sessions.get(id).expect("get").is_some(),
                    "{case}: lists a dead session"
                ),
                None => unknown += 1,
            }
        }
    }
    assert!(unknown <= 1, "{case}: lists {unknown} unknown sessions");
}

/// Returns the number of crash states checked and the number of file
/// operations the workload makes after the store is open.
fn sweep(policy: SyncPolicy, damages: &[Damage]) -> (u64, u64) {
    // How many file operations the whole workload takes.
    let total = {
        let sim = SimFs::new();
        let clock = ManualClock::new(START_MS);
        let db = options(&sim, &clock, policy).open(dir()).expect("open");
        let s = Sessions::new(db.keyspace("sessions").expect("keyspace"));
        let opened = sim.op_count();
        let r = run(&s, &clock);
        assert!(r.in_flight.is_empty(), "the workload runs without a crash");
        check(&s, &r, "no crash");
        (opened, sim.op_count())
    };
    let (opened, total) = total;
    let mut cases = 0;
    for at in 0..=total {
        for &damage in damages {
            let sim = SimFs::new();
            let clock = ManualClock::new(START_MS);
            sim.crash_at(Some(at));
            let r = match options(&sim, &clock, policy).open(dir()) {
                Ok(db) => match db.keyspace("sessions") {
                    Ok(ks) => {
                        let s = Sessions::new(ks);
                        let r = run(&s, &clock);
                        drop(s);
                        drop(db);
                        r
                    }
                    Err(_) => continue,
                },
                Err(_) => continue,
            };
            sim.crash(damage, at);
            sim.crash_at(None);
            // Past the short session's TTL, whether or not the workload got to
            // its own clock advance.
            clock.advance(Duration::from_millis(30));
            let db = options(&sim, &clock, policy)
                .open(dir())
                .unwrap_or_else(|e| panic!("reopen after crash at {at} ({damage:?}): {e}"));
            let s = Sessions::new(db.keyspace("sessions").expect("keyspace"));
            check(&s, &r, &format!("{policy:?} crash at op {at}, {damage:?}"));
            // And it keeps working.
            let id = s.create(b"after", TTL).expect("create after crash");
            assert!(s.get(id.as_str()).expect("get").is_some());
            cases += 1;
        }
    }
    (cases, total - opened)
}

#[test]
fn always_keeps_every_acknowledged_session_change_through_power_loss() {
    let damages = [
        Damage::DropUnsynced,
        Damage::Prefix,
        Damage::Torn512,
        Damage::Torn4096,
    ];
    let (n, ops) = sweep(SyncPolicy::Always, &damages);
    assert!(
        n > ops * damages.len() as u64,
        "{n} crash states for {ops} operations"
    );
}

#[test]
fn every_millis_keeps_every_acknowledged_session_change_through_a_process_crash() {
    let (n, ops) = sweep(SyncPolicy::EveryMillis(50), &[Damage::ProcessCrash]);
    assert!(n > ops, "{n} crash states for {ops} operations");
}
