//! WATCH, MULTI/EXEC and pipeline groups: the cases a review found, each
//! checked to fail before its fix.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{cmd, TestServer};

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

/// Optimistic increments from several clients: the counter must equal the
/// number of EXECs that succeeded. A WATCH that registered while another
/// client's write was appended but not yet committed missed it, and two
/// clients both "won" (the review saw 657 successes and a counter of 649).
#[test]
fn watch_never_misses_a_write_in_flight() {
    let server = TestServer::start_sync(cairn_server::config::SyncMode::Everysec);
    let wins = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let mut c = server.client();
            let wins = wins.clone();
            std::thread::spawn(move || {
                for _ in 0..150 {
                    let _: () = q(&mut c, &["WATCH", "counter"]).expect("watch");
                    let now: Option<i64> = q(&mut c, &["GET", "counter"]).expect("get");
                    let next = (now.unwrap_or(0) + 1).to_string();
                    let _: () = q(&mut c, &["MULTI"]).expect("multi");
                    let _: String = q(&mut c, &["SET", "counter", &next]).expect("queued");
                    let r: Option<Vec<String>> = q(&mut c, &["EXEC"]).expect("exec");
                    if r.is_some() {
                        wins.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Plain writers to the same key, so that writes are in flight while
    // the watchers register.
    let mut w = server.client();
    for i in 0..300 {
        let _: () = q(&mut w, &["SET", "other", &i.to_string()]).expect("set");
    }
    for t in threads {
        t.join().expect("thread");
    }
    let mut c = server.client();
    let counter: i64 = q(&mut c, &["GET", "counter"]).expect("get");
    assert_eq!(counter as u64, wins.load(Ordering::Relaxed));
}

/// A key in another database that expires after WATCH aborts EXEC, as in
/// Redis.
#[test]
fn a_watched_key_expiring_in_another_database_aborts_exec() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SELECT", "1"]).expect("select");
    let _: () = q(&mut c, &["SET", "wk", "v", "PX", "150"]).expect("set");
    let _: () = q(&mut c, &["WATCH", "wk"]).expect("watch");
    let _: () = q(&mut c, &["SELECT", "0"]).expect("select");
    let _: () = q(&mut c, &["MULTI"]).expect("multi");
    let _: String = q(&mut c, &["SET", "x", "1"]).expect("queued");
    std::thread::sleep(Duration::from_millis(300));
    let r: Option<Vec<String>> = q(&mut c, &["EXEC"]).expect("exec");
    assert_eq!(r, None);
    let x: Option<String> = q(&mut c, &["GET", "x"]).expect("get");
    assert_eq!(x, None);
}

/// A key longer than cairn stores cannot exist, so DEL of one counts 0 and
/// fails nothing: in a pipeline, the DEL of the keys before it stands
/// (before the fix it replied an error and still deleted `a`).
#[test]
fn del_of_a_key_too_long_to_exist_is_a_miss() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "a", "1"]).expect("set");
    let long = "k".repeat(70_000);
    let mut raw = server.raw();
    let mut pipeline = cmd(&[b"DEL", b"a", long.as_bytes()]);
    pipeline.extend(cmd(&[b"SET", b"x", b"1"]));
    pipeline.extend(cmd(&[b"EXISTS", long.as_bytes()]));
    pipeline.extend(cmd(&[b"TTL", long.as_bytes()]));
    let expected = ":1\r\n+OK\r\n:0\r\n:-2\r\n";
    assert_eq!(raw.roundtrip(&pipeline, expected), expected);
}

/// One command of a pipeline that cairn refuses at commit (a RENAME to a
/// key longer than it stores) fails alone; the writes after it in the same
/// pipeline are made (before the fix, all three replied the error and
/// none was written).
#[test]
fn one_refused_write_fails_alone_in_a_pipeline() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "src", "v"]).expect("set");
    let long = "d".repeat(70_000);
    let mut raw = server.raw();
    let mut pipeline = cmd(&[b"SET", b"before", b"1"]);
    pipeline.extend(cmd(&[b"RENAME", b"src", long.as_bytes()]));
    pipeline.extend(cmd(&[b"SET", b"after", b"1"]));
    pipeline.extend(cmd(&[b"INCR", b"ctr"]));
    raw.send(&pipeline);
    let mut got = String::new();
    while !got.ends_with("+OK\r\n:1\r\n") {
        let more = raw.read_n(1);
        assert!(!more.is_empty(), "connection closed after {got:?}");
        got.push_str(&more);
    }
    assert!(got.starts_with("+OK\r\n-ERR "), "{got:?}");
    assert_eq!(got.matches("\r\n").count(), 4, "{got:?}");
    let src: Option<String> = q(&mut c, &["GET", "src"]).expect("get");
    assert_eq!(src.as_deref(), Some("v"));
    let after: Option<String> = q(&mut c, &["GET", "after"]).expect("get");
    assert_eq!(after.as_deref(), Some("1"));
}

/// Protected mode holds at run time: CONFIG SET cannot take the password
/// away from a server that listens beyond loopback. (Checked on the
/// settings themselves: tests never bind outside 127.0.0.0/8.)
#[test]
fn config_set_cannot_drop_the_password_beyond_loopback() {
    let server = TestServer::start();
    let mut c = server.client();
    {
        let mut config = server
            .shared
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner());
        config.bind = vec![std::net::IpAddr::from([192, 0, 2, 1])];
        config.requirepass = Some("s3cret".into());
    }
    let _: () = q(&mut c, &["AUTH", "s3cret"]).expect("auth");
    let err = q::<()>(&mut c, &["CONFIG", "SET", "requirepass", ""]).expect_err("refused");
    assert!(
        err.to_string().contains("non-loopback"),
        "unexpected error: {err}"
    );
    let pass: Vec<String> = q(&mut c, &["CONFIG", "GET", "requirepass"]).expect("get");
    assert_eq!(pass, ["requirepass", "s3cret"]);
}
