//! The RESP backend against real servers: one `redis-server`, a 3-master
//! Redis Cluster, and `cairn serve` (the `WATCH` path): the backend
//! contract, contention, server-side and logical expiry, and a stopped
//! server.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn::backend::resp::{RespBackend, RespOptions};
use cairn::backend::{Backend, Key, Store};
use cairn::{Error, ManualClock};
use common::servers::{command, CairnServe, RedisCluster, RedisServer};
use common::START_MS;

fn k(name: &str) -> Key {
    Key::new(name.as_bytes().to_vec())
}

fn kt(tag: &str, name: &[u8]) -> Key {
    Key::tagged(tag.as_bytes().to_vec(), name.to_vec())
}

fn put(store: &Store, keys: &[Key], values: &[(usize, &[u8], Option<u64>)]) {
    store
        .update(keys, |u| {
            for (i, v, e) in values {
                u.put(*i, v.to_vec(), *e);
            }
            Ok(())
        })
        .expect("update");
}

fn value(store: &Store, key: &Key) -> Option<Vec<u8>> {
    store.read_one(key).expect("read").1.map(|e| e.value)
}

fn scan_all(store: &Store, prefix: &[u8]) -> BTreeMap<Vec<u8>, (u64, Option<u64>)> {
    let mut out = BTreeMap::new();
    store
        .scan(prefix, |n, len, exp| {
            assert!(
                out.insert(n.to_vec(), (len, exp)).is_none(),
                "scan repeated {n:?}"
            );
        })
        .expect("scan");
    out
}

/// The backend contract, on any RESP backend (`b` is fresh: its keys are
/// its own).
fn contract(b: &RespBackend) {
    let store = Store::from(b.clone());
    assert!(store.is_remote());
    // Absent keys, and the clock.
    let s = b.read(&[kt("t1", b"a"), kt("t1", b"b")]).expect("read");
    assert!(s.now_ms > 1_600_000_000_000, "now {}", s.now_ms);
    assert_eq!(s.entries, vec![None, None]);

    // Two keys of one tag, one with an expiry, written together.
    let keys = [kt("t1", b"a"), kt("t1", b"b\0\xff}{")];
    let exp = s.now_ms + 60_000;
    put(&store, &keys, &[(0, b"1", None), (1, b"2", Some(exp))]);
    let s = b.read(&keys).expect("read");
    assert_eq!(
        s.entries[0]
            .as_ref()
            .map(|e| (&e.value[..], e.expires_at_ms)),
        Some((&b"1"[..], None))
    );
    assert_eq!(
        s.entries[1]
            .as_ref()
            .map(|e| (&e.value[..], e.expires_at_ms)),
        Some((&b"2"[..], Some(exp)))
    );

    // A function's error writes nothing; a read-only update writes nothing.
    let err = store.update(&keys, |u| -> cairn::Result<()> {
        u.delete(0);
        Err(Error::InvalidArgument("no".into()))
    });
    assert!(matches!(err, Err(Error::InvalidArgument(_))), "{err:?}");
    assert_eq!(value(&store, &keys[0]).as_deref(), Some(&b"1"[..]));
    let seen = store
        .update(&keys, |u| Ok(u.get(1).map(|e| e.value.clone())))
        .expect("update");
    assert_eq!(seen.as_deref(), Some(&b"2"[..]));

    // Delete, and a put whose expiry is already past (a delete too).
    store
        .update(&keys, |u| {
            u.delete(0);
            let now = u.now_ms();
            u.put(1, b"gone".to_vec(), Some(now));
            Ok(())
        })
        .expect("update");
    assert_eq!(b.read(&keys).expect("read").entries, vec![None, None]);

    // A cross-tag update is refused before anything is sent.
    let mixed = [kt("t1", b"x"), kt("t2", b"y")];
    let err = store.update(&mixed, |u| {
        u.put(0, b"v".to_vec(), None);
        Ok(())
    });
    assert!(
        matches!(&err, Err(Error::InvalidArgument(m)) if m.contains("different tags")),
        "{err:?}"
    );
    assert!(matches!(b.read(&mixed), Err(Error::InvalidArgument(_))));
    assert_eq!(value(&store, &mixed[0]), None);
    let bad = store.read_one(&kt("bad tag", b"n"));
    assert!(matches!(bad, Err(Error::InvalidArgument(_))), "{bad:?}");

    // Scan: names under a prefix, tagged or not, with lengths and expiries.
    put(&store, &[k("s:u1")], &[(0, b"abc", None)]);
    put(
        &store,
        &[kt("g", b"s:t1"), kt("g", b"s:t2")],
        &[(0, b"12345", Some(exp)), (1, b"", None)],
    );
    put(&store, &[k("r:other")], &[(0, b"x", None)]);
    put(&store, &[k("s*?[x]")], &[(0, b"glob", None)]);
    let got = scan_all(&store, b"s:");
    let want: BTreeMap<Vec<u8>, (u64, Option<u64>)> = [
        (b"s:u1".to_vec(), (3, None)),
        (b"s:t1".to_vec(), (5, Some(exp))),
        (b"s:t2".to_vec(), (0, None)),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    assert_eq!(
        scan_all(&store, b"s*?[").len(),
        1,
        "glob characters are literal"
    );
    assert_eq!(scan_all(&store, b"").len(), 5);

    // A namespace sees its own keys only.
    let ns = Store::from(b.namespace("inner"));
    assert_eq!(value(&ns, &k("s:u1")), None);
    put(&ns, &[k("s:u1")], &[(0, b"ns", None)]);
    assert_eq!(value(&store, &k("s:u1")).as_deref(), Some(&b"abc"[..]));
    assert_eq!(value(&ns, &k("s:u1")).as_deref(), Some(&b"ns"[..]));
    assert_eq!(scan_all(&ns, b"").len(), 1);
}

/// 8 threads × 200 increments of one counter: exactly 1600.
fn contention(b: &RespBackend) {
    let store = Store::from(b.namespace("contention"));
    let key = Arc::new([kt("c", b"counter")]);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, key) = (store.clone(), key.clone());
            std::thread::spawn(move || {
                for _ in 0..200 {
                    store
                        .update(&key[..], |u| {
                            let n: u64 = u
                                .get(0)
                                .map(|e| String::from_utf8_lossy(&e.value).parse().expect("number"))
                                .unwrap_or(0);
                            u.put(0, (n + 1).to_string().into_bytes(), None);
                            Ok(())
                        })
                        .expect("increment");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(value(&store, &key[0]).as_deref(), Some(&b"1600"[..]));
}

fn open(url: &str) -> RespBackend {
    RespOptions::new(url)
        .prefix("t:")
        .timeout_ms(5_000)
        .open()
        .expect("open")
}

#[test]
fn single_server_contract_and_contention() {
    let server = RedisServer::start();
    let b = open(&server.url());
    assert!(b.has_eval());
    assert_eq!(b.address(), format!("127.0.0.1:{}", server.port()));
    contract(&b);
    // After SCRIPT FLUSH, EVALSHA gets NOSCRIPT and the backend falls back
    // to EVAL.
    assert_eq!(
        command(server.port(), &["SCRIPT", "FLUSH"]).as_deref(),
        Ok("OK")
    );
    let store = Store::from(b.namespace("flushed"));
    put(&store, &[k("a")], &[(0, b"1", None)]);
    assert_eq!(value(&store, &k("a")).as_deref(), Some(&b"1"[..]));
    contention(&b);
}

#[test]
fn cluster_contract_spreads_tags_over_masters() {
    let cluster = RedisCluster::start(3, 0);
    let urls = cluster.urls();
    let b = RespOptions::cluster(cluster.urls())
        .prefix("t:")
        .open()
        .expect("open cluster");
    assert!(
        b.address().starts_with("cluster 127.0.0.1:"),
        "{}",
        b.address()
    );
    contract(&b);
    // Forty tags land in different slots, so on every master; scan finds
    // them all.
    let store = Store::from(b.namespace("spread"));
    for i in 0..40 {
        let name = format!("n{i}");
        put(
            &store,
            &[kt(&format!("tag{i}"), name.as_bytes())],
            &[(0, b"v", None)],
        );
    }
    assert_eq!(scan_all(&store, b"n").len(), 40);
    let per_node: Vec<u64> = urls
        .iter()
        .map(|u| {
            let port = u.trim_end_matches('/').rsplit(':').next().expect("port");
            command(port.parse().expect("port"), &["DBSIZE"])
                .expect("DBSIZE")
                .parse()
                .expect("int")
        })
        .collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "keys per master: {per_node:?}"
    );
    contention(&b);
}

/// Regression: on `cairn serve` (the `WATCH` path) an update that wrote
/// nothing left its `WATCH` on the pooled connection (the `redis` crate
/// sends nothing for an empty `MULTI` pipeline), so once the watched key
/// changed, that connection's next read (a `MULTI … EXEC`) came back nil:
/// `unexpected reply - TypeError: read: nil` (seen by benches/ladder).
#[test]
fn cairn_serve_a_read_only_update_leaves_no_watch_behind() {
    let server = CairnServe::start();
    // One connection, so the read reuses the update's.
    let store = Store::from(
        RespOptions::new(&server.url())
            .prefix("t:")
            .pool_size(1)
            .open()
            .expect("open"),
    );
    let other = Store::from(open(&server.url()));
    put(&other, &[k("a")], &[(0, b"1", None)]);
    store
        .update(&[k("a")], |u| Ok(u.get(0).is_some()))
        .expect("read-only update");
    put(&other, &[k("a")], &[(0, b"2", None)]);
    assert_eq!(value(&store, &k("a")).as_deref(), Some(&b"2"[..]));
}

#[test]
fn cairn_serve_contract_and_contention_through_watch() {
    let server = CairnServe::start();
    let b = open(&server.url());
    assert!(
        !b.has_eval(),
        "cairn serve has no EVAL: the WATCH path is under test"
    );
    contract(&b);
    contention(&b);
}

#[test]
fn an_expiry_is_enforced_by_the_server_itself() {
    let server = RedisServer::start();
    let b = open(&server.url());
    let store = Store::from(b.clone());
    let key = k("short");
    let now = store.read_one(&key).expect("read").0;
    put(
        &store,
        std::slice::from_ref(&key),
        &[(0, b"v", Some(now + 200))],
    );
    let pttl: i64 = command(server.port(), &["PTTL", "t:short"])
        .expect("PTTL")
        .parse()
        .expect("int");
    assert!((1..=200).contains(&pttl), "PTTL {pttl}");
    std::thread::sleep(Duration::from_millis(400));
    // The key is gone on the server, not merely hidden by cairn.
    assert_eq!(
        command(server.port(), &["EXISTS", "t:short"]).as_deref(),
        Ok("0")
    );
    assert_eq!(value(&store, &key), None);
}

#[test]
fn a_test_clock_hides_logically_expired_entries() {
    let server = RedisServer::start();
    let clock = ManualClock::new(START_MS);
    let b = RespOptions::new(&server.url())
        .prefix("t:")
        .clock(clock.clone())
        .open()
        .expect("open");
    let store = Store::from(b.clone());
    let keys = [kt("c", b"a"), kt("c", b"b")];
    let exp = START_MS + 3_600_000;
    put(&store, &keys, &[(0, b"1", Some(exp)), (1, b"2", None)]);
    let s = b.read(&keys).expect("read");
    assert_eq!(s.now_ms, START_MS);
    assert_eq!(
        s.entries[0].as_ref().and_then(|e| e.expires_at_ms),
        Some(exp)
    );
    assert_eq!(scan_all(&store, b"").get(&b"a"[..]), Some(&(1, Some(exp))));

    clock.advance(Duration::from_secs(2 * 3600));
    let s = b.read(&keys).expect("read");
    assert_eq!(s.now_ms, START_MS + 2 * 3_600_000);
    assert!(
        s.entries[0].is_none(),
        "logically expired: {:?}",
        s.entries[0]
    );
    assert!(s.entries[1].is_some());
    assert_eq!(scan_all(&store, b"").len(), 1);
    // Still on the server (its real clock is years behind the stored
    // expiry), yet an update sees it absent and can write it again.
    assert_eq!(
        command(server.port(), &["EXISTS", "t:{c}a"]).as_deref(),
        Ok("1")
    );
    let was = store
        .update(&keys, |u| {
            let was = u.get(0).is_some();
            u.put(0, b"new".to_vec(), None);
            Ok(was)
        })
        .expect("update");
    assert!(!was);
    assert_eq!(value(&store, &keys[0]).as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_stopped_server_is_a_remote_error_and_a_restarted_one_serves_again() {
    let server = RedisServer::start();
    let port = server.port();
    let b = RespOptions::new(&server.url())
        .prefix("t:")
        .timeout_ms(500)
        .open()
        .expect("open");
    let store = Store::from(b.clone());
    put(&store, &[k("n")], &[(0, b"1", None)]);
    drop(server);

    let start = Instant::now();
    match store.read_one(&k("n")) {
        Err(Error::Remote {
            address,
            maybe_applied,
            ..
        }) => {
            assert_eq!(address, format!("127.0.0.1:{port}"));
            assert!(!maybe_applied);
        }
        other => panic!("read from a stopped server: {other:?}"),
    }
    let err = store.update(&[k("n")], |u| {
        u.delete(0);
        Ok(())
    });
    assert!(matches!(err, Err(Error::Remote { .. })), "{err:?}");
    assert!(matches!(
        store.scan(b"", |_, _, _| {}),
        Err(Error::Remote { .. })
    ));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );

    let _again = RedisServer::start_on(port);
    put(&store, &[k("n")], &[(0, b"2", None)]);
    assert_eq!(value(&store, &k("n")).as_deref(), Some(&b"2"[..]));
}

#[test]
fn no_password_is_shown_and_bad_options_are_refused() {
    let server = RedisServer::start();
    let url = format!("redis://:s3cret-pw@127.0.0.1:{}/", server.port());
    let opts = RespOptions::new(&url);
    assert!(!format!("{opts:?}").contains("s3cret"));
    // The server has no password: AUTH fails, and the error names the
    // address, not the password.
    let err = opts.open().expect_err("AUTH without a configured password");
    assert!(matches!(&err, Error::Remote { .. }), "{err:?}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
    assert!(!format!("{err:?}").contains("s3cret"), "{err:?}");

    let b = open(&server.url());
    assert!(!format!("{b:?}").contains("s3cret"));
    for prefix in ["a{b", "a}b"] {
        let r = RespOptions::new(&server.url()).prefix(prefix).open();
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{prefix}: {r:?}"
        );
    }
    assert_eq!(b.namespace("x{%}").prefix(), b"t:x%7B%25%7D:");
    let r = RespOptions::new("not a url").open();
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
}

#[test]
fn a_cluster_failover_is_a_remote_error_at_worst_then_serves_again() {
    let mut cluster = RedisCluster::start(3, 1);
    let b = RespOptions::cluster(cluster.urls())
        .prefix("t:")
        .timeout_ms(1_000)
        .open()
        .expect("open");
    let store = Store::from(b);
    let keys: Vec<Key> = (0..30).map(|i| kt(&format!("f{i}"), b"v")).collect();
    for (i, key) in keys.iter().enumerate() {
        put(
            &store,
            std::slice::from_ref(key),
            &[(0, i.to_string().as_bytes(), None)],
        );
    }
    // Replication is asynchronous: let the replicas catch up first.
    std::thread::sleep(Duration::from_millis(500));
    cluster.kill_master(0);

    let start = Instant::now();
    let mut errors = 0;
    'retry: loop {
        for (i, key) in keys.iter().enumerate() {
            let call = Instant::now();
            let r = store.update(std::slice::from_ref(key), |u| {
                let v = u.get(0).map(|e| e.value.clone());
                u.put(0, i.to_string().into_bytes(), None);
                Ok(v)
            });
            assert!(
                call.elapsed() < Duration::from_secs(30),
                "one call took {:?}",
                call.elapsed()
            );
            match r {
                Ok(v) => assert_eq!(
                    v,
                    Some(i.to_string().into_bytes()),
                    "key {i} after failover"
                ),
                Err(e @ Error::Remote { .. }) => {
                    if errors % 20 == 0 {
                        eprintln!("{:?} key {i}: {e}", start.elapsed());
                    }
                    errors += 1;
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "no failover in 60 s"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                    continue 'retry;
                }
                Err(e) => panic!("during failover: {e:?}"),
            }
        }
        break;
    }
    cluster.wait_ok();
    eprintln!(
        "failover: {errors} remote errors, served again after {:?}",
        start.elapsed()
    );
    let mut n = 0;
    store
        .scan(b"", |_, _, _| n += 1)
        .expect("scan after failover");
    assert_eq!(n, 30);
}

/// A fake server that answers the handshake, `SCRIPT LOAD` and the read
/// script (one absent key), and never answers the compare-and-apply
/// script (or, if `hang_reads`, the read script either).
fn silent_server(hang_reads: bool) -> u16 {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            std::thread::spawn(move || {
                let mut w = conn.try_clone().expect("clone");
                let mut r = BufReader::new(conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let n: usize = line.trim_start_matches('*').trim().parse().unwrap_or(0);
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let mut len = String::new();
                        let _ = r.read_line(&mut len);
                        let len: usize = len.trim_start_matches('$').trim().parse().unwrap_or(0);
                        let mut buf = vec![0; len + 2];
                        let _ = r.read_exact(&mut buf);
                        buf.truncate(len);
                        args.push(String::from_utf8_lossy(&buf).to_uppercase());
                    }
                    let reply: &[u8] = match args.first().map(String::as_str) {
                        Some("SCRIPT") => b"$40\r\n0000000000000000000000000000000000000000\r\n",
                        Some("EVALSHA") if args.len() == 4 && !hang_reads => {
                            b"*3\r\n:1700000000000\r\n$-1\r\n:-2\r\n"
                        }
                        Some("EVALSHA") => {
                            std::thread::sleep(Duration::from_secs(30));
                            return;
                        }
                        _ => b"+OK\r\n",
                    };
                    if w.write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn a_server_that_stops_answering_is_a_timeout_and_says_whether_a_write_may_have_landed() {
    let port = silent_server(false);
    let b = RespOptions::new(&format!("redis://127.0.0.1:{port}/"))
        .timeout_ms(300)
        .open()
        .expect("open");
    let store = Store::from(b);
    let start = Instant::now();
    // The read answers; the write is sent and never acknowledged.
    let err = store.update(&[k("n")], |u| {
        u.put(0, b"1".to_vec(), None);
        Ok(())
    });
    assert!(
        matches!(
            err,
            Err(Error::Remote {
                maybe_applied: true,
                ..
            })
        ),
        "{err:?}"
    );
    // A read that times out sent no write: nothing may have landed.
    let port = silent_server(true);
    let b = RespOptions::new(&format!("redis://127.0.0.1:{port}/"))
        .timeout_ms(300)
        .open()
        .expect("open");
    let err = Store::from(b).update(&[k("n")], |u| {
        u.put(0, b"1".to_vec(), None);
        Ok(())
    });
    assert!(
        matches!(
            err,
            Err(Error::Remote {
                maybe_applied: false,
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "took {:?}",
        start.elapsed()
    );
}

/// Regression: a test clock's stored expiries were shifted by the real
/// time at open, so a backend opened again (an application's restart)
/// read every expiry moved by the real time between the two opens: a
/// session's expiry changed, and an entry written before it expired
/// logically came back after it.
#[test]
fn a_test_clock_reads_the_same_expiries_after_reconnecting() {
    let server = RedisServer::start();
    let clock = ManualClock::new(START_MS);
    let open = || {
        RespOptions::new(&server.url())
            .prefix("r:")
            .clock(clock.clone())
            .open()
            .expect("open")
    };
    let key = kt("c", b"a");
    let exp = START_MS + 100;
    put(
        &Store::from(open()),
        std::slice::from_ref(&key),
        &[(0, b"1", Some(exp))],
    );
    // Real time passes between the two connections; logical time does not.
    std::thread::sleep(Duration::from_millis(30));
    let again = Store::from(open());
    let (now, e) = again.read_one(&key).expect("read");
    assert_eq!(now, START_MS);
    assert_eq!(e.and_then(|e| e.expires_at_ms), Some(exp));
    assert_eq!(scan_all(&again, b"").get(&b"a"[..]), Some(&(1, Some(exp))));
    clock.advance(Duration::from_millis(100));
    assert_eq!(value(&again, &key), None, "logically expired");
}

/// A read-only update on the `WATCH` path (`cairn serve`) must end its
/// `WATCH`: left on the pooled connection, it made the next read there
/// (`MULTI … EXEC`) fail with a nil `EXEC` once another client had
/// changed the key.
#[test]
fn a_read_only_update_through_watch_leaves_no_watch_behind() {
    let server = CairnServe::start();
    let b = RespOptions::new(&server.url())
        .pool_size(1)
        .open()
        .expect("open");
    assert!(!b.has_eval());
    let store = Store::from(b);
    let other = Store::from(RespOptions::new(&server.url()).open().expect("open"));
    let key = [k("watched")];
    put(&store, &key, &[(0, b"before", None)]);
    let had = store
        .update(&key, |u| Ok(u.get(0).is_some()))
        .expect("read-only update");
    assert!(had);
    put(&other, &key, &[(0, b"after", None)]);
    assert_eq!(value(&store, &key[0]), Some(b"after".to_vec()));
}

/// The ports of a cluster's nodes.
fn ports(cluster: &RedisCluster) -> Vec<u16> {
    cluster
        .urls()
        .iter()
        .map(|u| {
            u.trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        })
        .collect()
}

/// Regression: the cluster client resent a compare-and-apply script by
/// itself after a response timeout. The resend found the key already
/// changed (by the first send), answered "conflict", and the update ran
/// its function again on top of its own write: one increment applied
/// twice, reported as a success.
#[test]
fn a_timed_out_apply_on_a_cluster_is_never_resent() {
    let cluster = RedisCluster::start(3, 0);
    let ports = ports(&cluster);
    let b = RespOptions::cluster(cluster.urls())
        .timeout_ms(300)
        .open()
        .expect("open");
    let store = Store::from(b);
    let key = [k("counter")];
    let runs = std::sync::atomic::AtomicUsize::new(0);
    let r = store.update(&key, |u| {
        if runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            // Between the read and the compare-and-apply, the server
            // stalls for longer than the response timeout.
            for p in &ports {
                let _ = command(*p, &["CLIENT", "PAUSE", "1000", "ALL"]);
            }
        }
        let n: u64 = u
            .get(0)
            .map(|e| String::from_utf8_lossy(&e.value).parse().expect("int"))
            .unwrap_or(0);
        u.put(0, (n + 1).to_string().into_bytes(), None);
        Ok(n + 1)
    });
    // Let the pause end before reading.
    std::thread::sleep(Duration::from_millis(1_200));
    let stored = value(&store, &key[0]);
    let runs = runs.load(std::sync::atomic::Ordering::SeqCst);
    // The paused server may run the script once or drop it with the
    // closed connection; it must never be applied twice.
    assert!(
        matches!(stored.as_deref(), None | Some(b"1")),
        "stored {stored:?}: update returned {r:?}, its function ran {runs} times"
    );
    assert!(
        matches!(
            r,
            Err(Error::Remote {
                maybe_applied: true,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(runs, 1);
}

/// Regression: after the server closed its idle connections (its
/// `timeout`, a restart, `CLIENT KILL`), each pooled connection failed
/// one later call with "unexpected end of file".
#[test]
fn calls_after_the_server_closed_idle_connections_succeed() {
    let server = RedisServer::start();
    let store = Store::from(
        RespOptions::new(&server.url())
            .pool_size(2)
            .open()
            .expect("open"),
    );
    let key = [k("k")];
    put(&store, &key, &[(0, b"1", None)]);
    // Two idle connections in the pool.
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| value(&store, &key[0]));
        }
    });
    for round in 0..2 {
        command(server.port(), &["CLIENT", "KILL", "TYPE", "normal"]).expect("kill");
        std::thread::sleep(Duration::from_millis(100));
        let r = store.read_one(&key[0]);
        assert!(
            r.is_ok(),
            "round {round}: read on a stale connection: {r:?}"
        );
        let r = store.update(&key, |u| {
            u.put(0, b"2".to_vec(), None);
            Ok(())
        });
        assert!(
            r.is_ok(),
            "round {round}: update on a stale connection: {r:?}"
        );
        assert!(store.scan(b"", |_, _, _| {}).is_ok(), "round {round}: scan");
    }
}

/// The same through `WATCH` (`cairn serve`), after a restart.
#[test]
fn calls_through_watch_after_a_restart_succeed() {
    let server = CairnServe::start();
    let port = server.port();
    let store = Store::from(
        RespOptions::new(&server.url())
            .pool_size(1)
            .open()
            .expect("open"),
    );
    let key = [k("k")];
    put(&store, &key, &[(0, b"1", None)]);
    drop(server);
    let _again = CairnServe::start_on(port);
    let r = store.update(&key, |u| {
        u.put(0, b"2".to_vec(), None);
        Ok(())
    });
    assert!(
        r.is_ok(),
        "update through WATCH on a stale connection: {r:?}"
    );
    drop(_again);
    let _third = CairnServe::start_on(port);
    let r = store.read_one(&key[0]);
    assert!(r.is_ok(), "read on a stale connection: {r:?}");
}

/// Regression: a panic in an update's function on the `WATCH` path put
/// the connection back in the pool with its `WATCH` still on, and the
/// next read there failed once another client had changed the key.
#[test]
fn a_panic_in_an_update_through_watch_leaves_no_watch_behind() {
    let server = CairnServe::start();
    let b = RespOptions::new(&server.url())
        .pool_size(1)
        .open()
        .expect("open");
    assert!(!b.has_eval());
    let store = Store::from(b);
    let other = Store::from(RespOptions::new(&server.url()).open().expect("open"));
    let key = [k("watched")];
    put(&store, &key, &[(0, b"before", None)]);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        store.update(&key, |_| -> cairn::Result<()> {
            panic!("the function panics")
        })
    }));
    assert!(panicked.is_err());
    put(&other, &key, &[(0, b"after", None)]);
    assert_eq!(value(&store, &key[0]), Some(b"after".to_vec()));
}

/// Regression: with the cluster client's own retries off (so it never
/// resends a write), nothing followed an `ASK` redirect, so during a
/// resharding every read and update of a key already moved failed after
/// the backend's 5 s of retries. The slot is left mid-migration here, as
/// `redis-cli --cluster reshard` leaves it while it moves keys.
#[test]
fn a_key_in_a_migrating_slot_is_read_and_updated_through_ask() {
    let cluster = RedisCluster::start(3, 0);
    let ports: Vec<u16> = cluster
        .urls()
        .iter()
        .map(|u| {
            u.trim_end_matches('/')
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port in url")
        })
        .collect();
    let cli = |port: u16, args: &[&str]| command(port, args).expect("redis-cli");
    let store = Store::from(
        RespOptions::cluster(cluster.urls())
            .prefix("ask:")
            .open()
            .expect("open"),
    );
    let key = kt("x", b"k");
    put(&store, std::slice::from_ref(&key), &[(0, b"v", None)]);
    let slot = cli(ports[0], &["CLUSTER", "KEYSLOT", "x"]);
    let src = *ports
        .iter()
        .find(|p| cli(**p, &["CLUSTER", "COUNTKEYSINSLOT", &slot]) == "1")
        .expect("the slot's master");
    let dst = *ports.iter().find(|p| **p != src).expect("another master");
    let stored = "ask:{x}k"; // the layout of docs/format.md
    let src_id = cli(src, &["CLUSTER", "MYID"]);
    let dst_id = cli(dst, &["CLUSTER", "MYID"]);
    cli(dst, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &src_id]);
    cli(src, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &dst_id]);
    let moved = cli(
        src,
        &[
            "MIGRATE",
            "127.0.0.1",
            &dst.to_string(),
            stored,
            "0",
            "5000",
        ],
    );
    assert_eq!(moved, "OK", "MIGRATE");
    let t = Instant::now();
    assert_eq!(value(&store, &key), Some(b"v".to_vec()));
    put(&store, std::slice::from_ref(&key), &[(0, b"w", None)]);
    assert_eq!(value(&store, &key), Some(b"w".to_vec()));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "ASK followed at once, not after retries: {:?}",
        t.elapsed()
    );
}

/// Sessions on a remote store with an application-supplied tag secret
/// store no salt on the server (so none can be lost and split the
/// processes onto two salts), and a second `Sessions` (another process)
/// finds and revokes the first one's sessions.
#[test]
fn sessions_with_a_tag_secret_keep_no_salt_on_the_server() {
    use cairn::session::Sessions;
    let server = RedisServer::start();
    let open = || {
        let b = RespOptions::new(&server.url())
            .prefix("ts:")
            .open()
            .expect("open");
        Sessions::new(Store::from(b)).tag_secret([9u8; 32])
    };
    let a = open();
    let id = a
        .create_for_user("ada", b"x", Duration::from_secs(60))
        .expect("create");
    assert_eq!(
        command(server.port(), &["EXISTS", "ts:tag-salt"]).as_deref(),
        Ok("0"),
        "no salt stored"
    );
    let b = open();
    assert_eq!(b.list_for_user("ada").expect("list").len(), 1);
    assert_eq!(b.revoke_all_for_user("ada").expect("revoke all"), 1);
    assert!(a.get(id.as_str()).expect("get").is_none());
}
