//! A slow or hostile client cannot exhaust the server: `maxclients`, the
//! query buffer limit, the bound on pending replies, the idle timeout, and
//! a shutdown that neither waits on idle clients nor on clients that do
//! not read.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_server::config::Config;
use common::{cmd, TestServer};

fn server_with(f: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path());
    f(&mut config);
    let mut s = TestServer::start_with(config);
    s.dir = Some(dir);
    s
}

#[test]
fn the_client_past_maxclients_is_refused_and_closed() {
    let server = server_with(|c| c.maxclients = 2);
    let mut a = server.raw();
    let mut b = server.raw();
    assert_eq!(a.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
    assert_eq!(b.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
    let mut c = server.raw();
    assert_eq!(c.read_to_close(), "-ERR max number of clients reached\r\n");
    assert_eq!(
        server
            .shared
            .stats
            .rejected_connections
            .load(Ordering::Relaxed),
        1
    );
    // A place frees up when a client leaves.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut d = server.raw();
        d.send(b"PING\r\n");
        let got = d.read_n(7);
        if got == "+PONG\r\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no place after a client left: {got}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(b.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
}

#[test]
fn an_endless_bulk_is_cut_at_the_query_buffer_limit() {
    let limit = 1 << 20;
    let server = server_with(|c| c.client_query_buffer_limit = limit);
    let mut raw = server.raw();
    raw.0
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    raw.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$400000000\r\n");
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0usize;
    let closed = loop {
        match raw.0.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) => break e,
        }
        assert!(
            sent < 64 << 20,
            "the server took {sent} bytes of one bulk past a limit of {limit}"
        );
    };
    assert!(
        matches!(
            closed.kind(),
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
        ),
        "the server did not close the connection: {closed} after {sent} bytes"
    );
    assert!(sent > limit, "closed after only {sent} bytes");
    // The server goes on serving others.
    let mut other = server.raw();
    assert_eq!(other.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
}

/// A client pipelines GETs of a big value and never reads: the server runs
/// a bounded number of them (what fits the pending-replies bound and the
/// sockets' buffers), then stops reading until the client reads; every
/// reply then arrives.
#[test]
fn a_client_that_does_not_read_holds_a_bounded_number_of_replies() {
    let bound = 1 << 20;
    let server = server_with(|c| c.client_output_buffer_bytes = bound);
    let value = vec![b'v'; 256 << 10];
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut c)
        .expect("set");
    let before = server
        .shared
        .stats
        .commands_processed
        .load(Ordering::Relaxed);
    let gets = 2000;
    let mut raw = server.raw();
    let one = cmd(&[b"GET", b"big"]);
    raw.send(&one.repeat(gets));
    // Unbounded, the server would run all 2000 (500 MiB of replies) at once.
    std::thread::sleep(Duration::from_millis(1500));
    let ran = server
        .shared
        .stats
        .commands_processed
        .load(Ordering::Relaxed)
        - before;
    assert!(
        ran < 200,
        "{ran} GETs of 256 KiB ran for a client that reads nothing (bound {bound})"
    );
    // Reading lets it go on to the end.
    let header = format!("${}\r\n", value.len());
    let reply_len = header.len() + value.len() + 2;
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0usize;
    while total < gets * reply_len {
        let n = raw.0.read(&mut buf).expect("read replies");
        assert!(n > 0, "closed after {total} bytes");
        total += n;
    }
    assert_eq!(total, gets * reply_len);
    let ran = server
        .shared
        .stats
        .commands_processed
        .load(Ordering::Relaxed)
        - before;
    assert_eq!(ran, gets as u64);
}

#[test]
fn an_idle_client_is_closed_after_the_timeout_and_a_busy_one_is_not() {
    let server = server_with(|c| c.timeout_secs = 1);
    let mut busy = server.raw();
    let mut idle = server.raw();
    assert_eq!(idle.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
    let start = Instant::now();
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(busy.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
    }
    assert_eq!(idle.read_to_close(), "");
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(2400), "{waited:?}");
    let mut again = server.raw();
    let t = Instant::now();
    assert_eq!(again.read_to_close(), "");
    let idle_for = t.elapsed();
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_secs(5),
        "closed after {idle_for:?} with a timeout of 1 s"
    );
}

/// Regression: the shutdown waited for every connection forever, so a
/// client that pipelined big GETs and never read kept the server (and its
/// store lock) alive.
#[test]
fn a_client_that_does_not_read_does_not_hold_the_shutdown() {
    let server = server_with(|c| c.client_output_buffer_bytes = 1 << 20);
    let mut c = server.client();
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(vec![b'v'; 256 << 10])
        .query(&mut c)
        .expect("set");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("1")
        .query(&mut c)
        .expect("set");
    let mut raw = server.raw();
    raw.send(&cmd(&[b"GET", b"big"]).repeat(2000));
    let _idle = server.raw();
    std::thread::sleep(Duration::from_millis(500));
    let (tx, rx) = std::sync::mpsc::channel();
    let stopper = std::thread::spawn(move || {
        let dir = server.stop();
        let _ = tx.send(());
        dir
    });
    let limit = cairn_server::SHUTDOWN_GRACE + Duration::from_secs(10);
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("the shutdown took longer than {limit:?}"));
    let dir = stopper.join().expect("stopper").expect("dir");
    // Closed cleanly: the store opens (the lock was released) with the data.
    let root = cairn::Db::open(dir.path()).expect("reopen");
    let db0 = root.keyspace("db0").expect("db0");
    assert_eq!(db0.get(b"k").expect("get").as_deref(), Some(&b"1"[..]));
    drop(raw);
}

/// SHUTDOWN's order: idle connections are closed at once; a connection in
/// the middle of a pipeline finishes what it has read, with every reply
/// written; then the store is closed, holding exactly the writes
/// acknowledged.
#[test]
fn a_shutdown_finishes_the_pipeline_in_flight_and_closes_idle_clients() {
    let server = TestServer::start();
    let mut idle = server.raw();
    assert_eq!(idle.roundtrip(b"PING\r\n", "+PONG\r\n"), "+PONG\r\n");
    let mut busy = server.raw();
    let n = 20_000;
    let mut pipeline = Vec::new();
    for i in 0..n {
        pipeline.extend_from_slice(&cmd(&[b"SET", format!("k{i}").as_bytes(), b"v"]));
    }
    let shared = server.shared.clone();
    let writer = {
        let mut s = busy.0.try_clone().expect("clone");
        std::thread::spawn(move || {
            let _ = s.write_all(&pipeline);
        })
    };
    std::thread::sleep(Duration::from_millis(30));
    shared.begin_shutdown();
    let start = Instant::now();
    assert_eq!(idle.read_to_close(), "", "the idle client was not closed");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    let replies = busy.read_to_close();
    let _ = writer.join();
    let acked = replies.len() / 5;
    assert_eq!(replies, "+OK\r\n".repeat(acked), "a reply cut or wrong");
    let dir = server.stop().expect("dir");
    let root = cairn::Db::open(dir.path()).expect("reopen");
    let db0 = root.keyspace("db0").expect("db0");
    let mut present = 0;
    for i in 0..n {
        if db0.get(format!("k{i}").as_bytes()).expect("get").is_some() {
            assert!(
                i < acked,
                "k{i} is there but only {acked} SETs were acknowledged"
            );
            present += 1;
        }
    }
    assert_eq!(
        present, acked,
        "acknowledged SETs missing after the shutdown"
    );
    assert!(acked > 0, "no SET ran before the shutdown");
    eprintln!("{acked} of {n} SETs ran before the shutdown");
}

/// With `timeout`, a client that stops reading its replies is closed once
/// no byte could be written to it for that long, as Redis counts writes as
/// interaction: it must not hold its place (and its pending replies)
/// forever by never reading.
#[test]
fn a_client_that_stops_reading_is_closed_after_the_timeout() {
    let server = server_with(|c| {
        c.timeout_secs = 1;
        c.client_output_buffer_bytes = 1 << 20;
    });
    let mut raw = server.raw();
    let value = vec![b'v'; 256 << 10];
    let set = cmd(&[b"SET", b"big", &value]);
    assert_eq!(raw.roundtrip(&set, "+OK\r\n"), "+OK\r\n");
    raw.send(&cmd(&[b"GET", b"big"]).repeat(2000));
    let start = Instant::now();
    while !server.shared.client_list().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "a client that reads nothing is still connected after {:?} with a timeout of 1 s",
            start.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}
