//! A client's long command does not hold up the other clients: a batch
//! that walks every key or moves large values runs off the runtime's
//! worker threads, so a PING from another connection still answers at
//! once. The test server has two worker threads; two clients busy with
//! long batches would hold both if those batches ran on them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_server::config::SyncMode;
use common::TestServer;

/// What the slowest PING may take while the heavy clients run: far below
/// one of their batches (seconds on a debug build), far above a PING.
const PING_BOUND: Duration = Duration::from_millis(300);

/// Runs `batch` in a loop on `clients` connections until the PINGs are
/// done, and returns the slowest PING round trip seen meanwhile, with how
/// many batches had completed.
fn slowest_ping_during(
    server: &TestServer,
    clients: usize,
    batch: impl Fn(&mut redis::Connection) + Send + Sync + 'static,
) -> (Duration, usize) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let batch = Arc::new(batch);
    let mut heavy = Vec::new();
    for _ in 0..clients {
        let mut c = server.client();
        let (stop, done, batch) = (stop.clone(), done.clone(), batch.clone());
        heavy.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                batch(&mut c);
                done.fetch_add(1, Ordering::AcqRel);
            }
        }));
    }
    let mut pinger = server.client();
    // Let the heavy batches start.
    std::thread::sleep(Duration::from_millis(300));
    let mut slowest = Duration::ZERO;
    for _ in 0..10 {
        let started = Instant::now();
        let pong: String = redis::cmd("PING").query(&mut pinger).expect("ping");
        assert_eq!(pong, "PONG");
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(50));
    }
    let completed = done.load(Ordering::Acquire);
    eprintln!("slowest PING {slowest:?}; {completed} heavy batches done meanwhile");
    stop.store(true, Ordering::Release);
    for h in heavy {
        h.join().expect("heavy client");
    }
    (slowest, completed)
}

/// Fills database 0 with `n` small keys, a thousand per MSET.
fn fill(server: &TestServer, n: usize) {
    let mut c = server.client();
    for chunk in 0..n.div_ceil(1000) {
        let mut mset = redis::cmd("MSET");
        for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
            mset.arg(format!("key:{i}")).arg("v");
        }
        let () = mset.query(&mut c).expect("mset");
    }
}

#[test]
fn a_ping_answers_while_clients_walk_every_key() {
    let server = TestServer::start_sync(SyncMode::Everysec);
    fill(&server, 200_000);
    let (slowest, completed) = slowest_ping_during(&server, 2, |c| {
        let mut p = redis::pipe();
        for _ in 0..64 {
            p.cmd("KEYS").arg("nomatch*");
        }
        let found: Vec<Vec<String>> = p.query(c).expect("keys");
        assert!(found.iter().all(Vec::is_empty));
    });
    assert!(
        slowest < PING_BOUND,
        "a PING took {slowest:?} while two clients ran KEYS ({completed} batches done)"
    );
}

#[test]
fn a_ping_answers_while_clients_grow_large_values() {
    let server = TestServer::start_sync(SyncMode::Everysec);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (slowest, completed) = slowest_ping_during(&server, 2, move |c| {
        // Each SETRANGE writes a new 16 MB value.
        let key = format!("big:{}", next.fetch_add(1, Ordering::Relaxed) % 4);
        let mut p = redis::pipe();
        for i in 0..6 {
            p.cmd("SETRANGE").arg(&key).arg(16_000_000 + i).arg("x");
        }
        let lens: Vec<u64> = p.query(c).expect("setrange");
        assert_eq!(lens.last(), Some(&16_000_006));
    });
    assert!(
        slowest < PING_BOUND,
        "a PING took {slowest:?} while two clients ran SETRANGE ({completed} batches done)"
    );
}
