//! The key commands through the real server: DEL, UNLINK, EXISTS, TYPE,
//! the EXPIRE family, TTL and its kin, PERSIST, KEYS, SCAN, RANDOMKEY,
//! RENAME, RENAMENX, DBSIZE, FLUSHDB and FLUSHALL, with Redis 7.0's
//! replies and error texts (each checked against redis-server 7.0.15).

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_server::config::Config;
use common::{cmd, Raw, TestServer};
use redis::{Connection, FromRedisValue};

/// Runs a command given as words; panics on an error reply.
fn q<T: FromRedisValue>(c: &mut Connection, words: &[&str]) -> T {
    let mut command = redis::cmd(words[0]);
    for w in &words[1..] {
        command.arg(*w);
    }
    command
        .query(c)
        .unwrap_or_else(|e| panic!("{words:?}: {e}"))
}

fn int(c: &mut Connection, words: &[&str]) -> i64 {
    q(c, words)
}

fn set(c: &mut Connection, key: &str, value: &str) {
    let _: () = q(c, &["SET", key, value]);
}

/// Sends a command on a raw connection and checks the exact reply bytes.
fn raw_is(raw: &mut Raw, words: &[&str], want: &str) {
    let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
    let got = raw.roundtrip(&cmd(&args), want);
    assert_eq!(got, want, "{words:?}");
}

fn unix_ms() -> i64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(d.as_millis()).expect("ms fit")
}

#[test]
fn del_unlink_exists_and_type() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "a", "1");
    set(&mut c, "b", "2");
    set(&mut c, "", "empty key");
    // EXISTS counts a key each time it is named.
    assert_eq!(int(&mut c, &["EXISTS", "a", "a", "nokey", "b", ""]), 4);
    let t: String = q(&mut c, &["TYPE", "a"]);
    assert_eq!(t, "string");
    let t: String = q(&mut c, &["TYPE", "nokey"]);
    assert_eq!(t, "none");
    assert_eq!(int(&mut c, &["DEL", "a", "nokey", "a"]), 1);
    assert_eq!(int(&mut c, &["UNLINK", "b", "b", ""]), 2);
    assert_eq!(int(&mut c, &["EXISTS", "a", "b", ""]), 0);
    assert_eq!(int(&mut c, &["DEL", "a"]), 0);
    let v: Option<String> = q(&mut c, &["GET", "a"]);
    assert_eq!(v, None);
    let mut raw = server.raw();
    raw_is(&mut raw, &["TYPE", "nokey"], "+none\r\n");
    raw_is(
        &mut raw,
        &["DEL"],
        "-ERR wrong number of arguments for 'del' command\r\n",
    );
    raw_is(
        &mut raw,
        &["EXISTS"],
        "-ERR wrong number of arguments for 'exists' command\r\n",
    );
    raw_is(
        &mut raw,
        &["TYPE", "a", "b"],
        "-ERR wrong number of arguments for 'type' command\r\n",
    );
}

#[test]
fn expire_nx_xx_gt_lt() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "x", "v");
    // No expiry counts as infinite: GT fails, LT passes.
    let steps: &[(&[&str], i64)] = &[
        (&["EXPIRE", "x", "100", "GT"], 0),
        (&["TTL", "x"], -1),
        (&["EXPIRE", "x", "100", "LT"], 1),
        (&["TTL", "x"], 100),
        (&["EXPIRE", "x", "50", "lt"], 1),
        (&["TTL", "x"], 50),
        (&["EXPIRE", "x", "40", "gt"], 0),
        (&["EXPIRE", "x", "60", "gt"], 1),
        (&["TTL", "x"], 60),
        (&["EXPIRE", "x", "70", "LT"], 0),
        (&["EXPIRE", "x", "10", "NX"], 0),
        (&["EXPIRE", "x", "10", "XX"], 1),
        (&["TTL", "x"], 10),
        (&["PERSIST", "x"], 1),
        (&["EXPIRE", "x", "10", "XX"], 0),
        (&["EXPIRE", "x", "10", "GT"], 0),
        (&["TTL", "x"], -1),
        (&["EXPIRE", "x", "10", "NX"], 1),
        (&["EXPIRE", "x", "20", "NX"], 0),
        (&["TTL", "x"], 10),
        // Repeats are fine, and XX combines with GT.
        (&["EXPIRE", "x", "30", "xx", "XX", "gt"], 1),
        (&["TTL", "x"], 30),
        (&["PEXPIRE", "x", "20000", "XX", "LT"], 1),
        (&["TTL", "x"], 20),
        (&["EXPIREAT", "x", "5000000000", "GT"], 1),
        (&["EXPIRETIME", "x"], 5_000_000_000),
        (&["PEXPIREAT", "x", "4000000000000", "GT"], 0),
        (&["PEXPIREAT", "x", "4000000000000", "LT"], 1),
        (&["PEXPIRETIME", "x"], 4_000_000_000_000),
        // A missing key: 0 whatever the options.
        (&["EXPIRE", "nokey", "10"], 0),
        (&["EXPIRE", "nokey", "10", "LT"], 0),
        (&["PEXPIREAT", "nokey", "1"], 0),
    ];
    for (words, want) in steps {
        assert_eq!(int(&mut c, words), *want, "{words:?}");
    }
    // A time in the past deletes the key and replies 1, LT included (no
    // expiry is infinite); GT against no expiry replies 0 and keeps it.
    set(&mut c, "y", "v");
    assert_eq!(int(&mut c, &["EXPIRE", "y", "-1", "GT"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "y"]), 1);
    assert_eq!(int(&mut c, &["EXPIRE", "y", "-1", "LT"]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "y"]), 0);
    for words in [
        &["EXPIRE", "y", "0"][..],
        &["PEXPIRE", "y", "-5"],
        &["EXPIREAT", "y", "1"],
        &["PEXPIREAT", "y", "0"],
        &["PEXPIREAT", "y", "-9223372036854775808"],
    ] {
        set(&mut c, "y", "v");
        assert_eq!(int(&mut c, words), 1, "{words:?}");
        assert_eq!(int(&mut c, &["EXISTS", "y"]), 0, "{words:?}");
        assert_eq!(int(&mut c, &["TTL", "y"]), -2, "{words:?}");
    }
}

#[test]
fn expire_errors_word_for_word() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw_is(&mut raw, &["SET", "x", "v"], "+OK\r\n");
    let nx = "-ERR NX and XX, GT or LT options at the same time are not compatible\r\n";
    let gtlt = "-ERR GT and LT options at the same time are not compatible\r\n";
    let not_int = "-ERR value is not an integer or out of range\r\n";
    let cases: &[(&[&str], &str)] = &[
        (&["EXPIRE", "x", "10", "nx", "xx"], nx),
        (&["EXPIRE", "x", "10", "NX", "GT"], nx),
        (&["PEXPIRE", "x", "10", "lt", "nx"], nx),
        (&["EXPIRE", "x", "10", "gt", "lt"], gtlt),
        (&["EXPIRE", "nokey", "10", "GT", "LT"], gtlt),
        (
            &["EXPIRE", "x", "10", "foo"],
            "-ERR Unsupported option foo\r\n",
        ),
        // Options are checked before the time.
        (&["EXPIRE", "x", "foo", "nx", "xx"], nx),
        (
            &["EXPIRE", "x", "foo", "bar"],
            "-ERR Unsupported option bar\r\n",
        ),
        (&["EXPIRE", "x", "foo"], not_int),
        (&["EXPIRE", "nokey", "foo"], not_int),
        (&["EXPIRE", "x", ""], not_int),
        (&["EXPIRE", "x", "01"], not_int),
        (&["EXPIRE", "x", "+1"], not_int),
        (&["EXPIRE", "x", " 1"], not_int),
        (&["EXPIRE", "x", "1.5"], not_int),
        (&["PEXPIRE", "x", "99999999999999999999"], not_int),
        (
            &["EXPIRE", "x", "9223372036854775807"],
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        (
            &["EXPIRE", "x", "-9223372036854775807"],
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        // Fits once multiplied, overflows once now is added.
        (
            &["EXPIRE", "x", "9223372036854775"],
            "-ERR invalid expire time in 'expire' command\r\n",
        ),
        (
            &["PEXPIRE", "x", "9223372036854775807"],
            "-ERR invalid expire time in 'pexpire' command\r\n",
        ),
        (
            &["EXPIREAT", "x", "9223372036854775807"],
            "-ERR invalid expire time in 'expireat' command\r\n",
        ),
        (
            &["EXPIRE", "x"],
            "-ERR wrong number of arguments for 'expire' command\r\n",
        ),
        (
            &["PEXPIREAT", "x"],
            "-ERR wrong number of arguments for 'pexpireat' command\r\n",
        ),
        (
            &["TTL"],
            "-ERR wrong number of arguments for 'ttl' command\r\n",
        ),
        (
            &["PERSIST", "x", "y"],
            "-ERR wrong number of arguments for 'persist' command\r\n",
        ),
        (
            &["EXPIRETIME"],
            "-ERR wrong number of arguments for 'expiretime' command\r\n",
        ),
    ];
    for (words, want) in cases {
        raw_is(&mut raw, words, want);
    }
    // None of the failed commands touched the key.
    raw_is(&mut raw, &["TTL", "x"], ":-1\r\n");
    raw_is(&mut raw, &["GET", "x"], "$1\r\nv\r\n");
}

#[test]
fn the_largest_expiry_and_its_rounding() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "x", "v");
    // The largest Redis takes is kept as the latest cairn keeps (2^48 - 1
    // ms, the year 10889).
    assert_eq!(int(&mut c, &["PEXPIREAT", "x", "9223372036854775807"]), 1);
    assert_eq!(int(&mut c, &["PEXPIRETIME", "x"]), (1 << 48) - 1);
    // Seconds round to the nearest.
    assert_eq!(int(&mut c, &["EXPIRETIME", "x"]), 281_474_976_711);
    let pttl = int(&mut c, &["PTTL", "x"]);
    let ttl = int(&mut c, &["TTL", "x"]);
    assert!(pttl > (1 << 48) - 1 - 2_000_000_000_000, "{pttl}");
    assert!((ttl - (pttl + 500) / 1000).abs() <= 1, "{ttl} {pttl}");
    assert_eq!(int(&mut c, &["PEXPIREAT", "x", "5000000000600"]), 1);
    assert_eq!(int(&mut c, &["EXPIRETIME", "x"]), 5_000_000_001);
    assert_eq!(int(&mut c, &["PEXPIREAT", "x", "5000000000400"]), 1);
    assert_eq!(int(&mut c, &["EXPIRETIME", "x"]), 5_000_000_000);
    // TTL rounds: 2300 ms is 2 s, 2700 ms is 3 s, 499 ms is 0 s.
    assert_eq!(int(&mut c, &["PEXPIRE", "x", "2300"]), 1);
    assert_eq!(int(&mut c, &["TTL", "x"]), 2);
    assert_eq!(int(&mut c, &["PEXPIRE", "x", "2700"]), 1);
    assert_eq!(int(&mut c, &["TTL", "x"]), 3);
    assert_eq!(int(&mut c, &["PEXPIRE", "x", "499"]), 1);
    assert_eq!(int(&mut c, &["TTL", "x"]), 0);
}

#[test]
fn ttl_family_on_missing_and_persistent_keys() {
    let server = TestServer::start();
    let mut c = server.client();
    for command in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(int(&mut c, &[command, "nokey"]), -2, "{command}");
    }
    set(&mut c, "x", "hello");
    for command in ["TTL", "PTTL", "EXPIRETIME", "PEXPIRETIME"] {
        assert_eq!(int(&mut c, &[command, "x"]), -1, "{command}");
    }
    assert_eq!(int(&mut c, &["EXPIRE", "x", "10"]), 1);
    let ttl = int(&mut c, &["TTL", "x"]);
    assert!(ttl > 8 && ttl <= 10, "{ttl}");
    let pttl = int(&mut c, &["PTTL", "x"]);
    assert!(pttl > 9000 && pttl <= 10_000, "{pttl}");
    let now = unix_ms();
    let at = int(&mut c, &["PEXPIRETIME", "x"]);
    assert!((at - (now + 10_000)).abs() < 2000, "{at} {now}");
    assert_eq!(int(&mut c, &["EXPIRETIME", "x"]), (at + 500) / 1000);
    // EXPIREAT agrees with EXPIRE.
    let secs = (now / 1000 + 15).to_string();
    assert_eq!(int(&mut c, &["EXPIREAT", "x", &secs]), 1);
    let ttl = int(&mut c, &["TTL", "x"]);
    assert!((13..=15).contains(&ttl), "{ttl}");
    // PERSIST undoes an EXPIRE, and is 0 on missing or persistent keys.
    assert_eq!(int(&mut c, &["EXPIRE", "x", "50"]), 1);
    assert_eq!(int(&mut c, &["TTL", "x"]), 50);
    assert_eq!(int(&mut c, &["PERSIST", "x"]), 1);
    assert_eq!(int(&mut c, &["TTL", "x"]), -1);
    let v: String = q(&mut c, &["GET", "x"]);
    assert_eq!(v, "hello");
    assert_eq!(int(&mut c, &["PERSIST", "x"]), 0);
    assert_eq!(int(&mut c, &["PERSIST", "nokey"]), 0);
}

#[test]
fn short_ttls_expire() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "a", "v");
    set(&mut c, "b", "v");
    set(&mut c, "c", "v");
    set(&mut c, "keep", "v");
    assert_eq!(int(&mut c, &["PEXPIRE", "a", "100"]), 1);
    assert_eq!(int(&mut c, &["EXPIRE", "b", "1"]), 1);
    let at = (unix_ms() + 150).to_string();
    assert_eq!(int(&mut c, &["PEXPIREAT", "c", &at]), 1);
    let pttl = int(&mut c, &["PTTL", "a"]);
    assert!(pttl > 0 && pttl <= 100, "{pttl}");
    let v: Option<String> = q(&mut c, &["GET", "a"]);
    assert_eq!(v.as_deref(), Some("v"));
    assert_eq!(int(&mut c, &["DBSIZE"]), 4);
    std::thread::sleep(Duration::from_millis(250));
    // a and c are gone for every command; b (1 s) is still there.
    let v: Option<String> = q(&mut c, &["GET", "a"]);
    assert_eq!(v, None);
    assert_eq!(int(&mut c, &["EXISTS", "a", "c"]), 0);
    assert_eq!(int(&mut c, &["TTL", "a"]), -2);
    assert_eq!(int(&mut c, &["PTTL", "c"]), -2);
    let t: String = q(&mut c, &["TYPE", "a"]);
    assert_eq!(t, "none");
    let keys: BTreeSet<String> = q(&mut c, &["KEYS", "*"]);
    assert_eq!(keys, ["b", "keep"].map(String::from).into());
    assert_eq!(int(&mut c, &["DBSIZE"]), 2);
    // EXPIRE does not resurrect an expired key (Redis issue #1026).
    assert_eq!(int(&mut c, &["EXPIRE", "a", "10"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "a"]), 0);
    assert_eq!(int(&mut c, &["PERSIST", "c"]), 0);
    let mut raw = server.raw();
    raw_is(&mut raw, &["RENAME", "a", "z"], "-ERR no such key\r\n");
    std::thread::sleep(Duration::from_millis(900));
    assert_eq!(int(&mut c, &["EXISTS", "b"]), 0);
    assert_eq!(int(&mut c, &["EXISTS", "keep"]), 1);
}

#[test]
fn keys_with_patterns() {
    let server = TestServer::start();
    let mut c = server.client();
    for key in ["key_x", "key_y", "key_z", "foo_a", "foo_b", "foo_c"] {
        set(&mut c, key, "hello");
    }
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "foo*"]);
    assert_eq!(k, ["foo_a", "foo_b", "foo_c"].map(String::from).into());
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "*"]);
    assert_eq!(k.len(), 6);
    assert_eq!(int(&mut c, &["DBSIZE"]), 6);
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "*_[ab]"]);
    assert_eq!(k, ["foo_a", "foo_b"].map(String::from).into());
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "key_[^x]"]);
    assert_eq!(k, ["key_y", "key_z"].map(String::from).into());
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "???_?"]);
    assert_eq!(k.len(), 6);
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "nomatch*"]);
    assert!(k.is_empty());
    for key in ["{a}x", "{a}y", "{a}z", "{b}a", "{b}b", "{b}c"] {
        set(&mut c, key, "hello");
    }
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "{a}*"]);
    assert_eq!(k, ["{a}x", "{a}y", "{a}z"].map(String::from).into());
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "*{b}*"]);
    assert_eq!(k, ["{b}a", "{b}b", "{b}c"].map(String::from).into());
    // `*` alone lists the empty key; `**` goes through the matcher, which
    // (as Redis's) never matches an empty string.
    set(&mut c, "", "empty");
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "*"]);
    assert!(k.contains(""));
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "**"]);
    assert!(!k.contains("") && k.len() == 12);
    // Escapes and a literal star.
    set(&mut c, "a*b", "1");
    set(&mut c, "axb", "1");
    let k: Vec<String> = q(&mut c, &["KEYS", "a\\*b"]);
    assert_eq!(k, ["a*b"]);
    // Redis's regression test for nested stars.
    let _: () = q(&mut c, &["FLUSHDB"]);
    set(&mut c, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "1");
    let k: Vec<String> = q(
        &mut c,
        &["KEYS", "a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"],
    );
    assert!(k.is_empty());
    set(&mut c, "dlskeriewrioeuwqoirueioqwrueoqwrueqw", "test");
    let k: BTreeSet<String> = q(&mut c, &["KEYS", "*"]);
    assert_eq!(k.len(), 2);
}

#[test]
fn a_hostile_pattern_fails_fast_instead_of_hanging() {
    let server = TestServer::start();
    let mut c = server.client();
    // cairn's keys are at most 64 KiB.
    let long = "a".repeat(60_000);
    set(&mut c, &long, "1");
    set(&mut c, "short", "1");
    // Some 10^9 steps for the long key, even without backtracking
    // further than the last star.
    let pattern = format!("*{}b", "a".repeat(30_000));
    let started = std::time::Instant::now();
    let mut raw = server.raw();
    let want = "-ERR pattern too complex: matching it exceeds the server's work limit\r\n";
    raw_is(&mut raw, &["KEYS", &pattern], want);
    raw_is(&mut raw, &["SCAN", "0", "MATCH", &pattern], want);
    assert!(started.elapsed() < Duration::from_secs(20));
    // The server still answers, and ordinary patterns still work.
    let k: Vec<String> = q(&mut c, &["KEYS", "sh*"]);
    assert_eq!(k, ["short"]);
    let k: Vec<String> = q(&mut c, &["KEYS", "*b"]);
    assert!(k.is_empty());
}

/// A whole SCAN: every key returned (with repeats), and how many calls.
fn scan_all(c: &mut Connection, extra: &[&str]) -> (Vec<String>, usize) {
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    let mut calls = 0;
    loop {
        let mut words = vec!["SCAN", cursor.as_str()];
        words.extend_from_slice(extra);
        let (next, page): (String, Vec<String>) = q(c, &words);
        keys.extend(page);
        calls += 1;
        assert!(calls < 100_000, "SCAN never ends");
        if next == "0" {
            return (keys, calls);
        }
        cursor = next;
    }
}

fn populate(c: &mut Connection, prefix: &str, n: usize) -> Vec<String> {
    let keys: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    for chunk in keys.chunks(1000) {
        let mut p = redis::pipe();
        for k in chunk {
            p.cmd("SET").arg(k).arg("v").ignore();
        }
        let _: () = p.query(c).expect("populate");
    }
    keys
}

#[test]
fn scan_returns_every_key_exactly_once() {
    let server = TestServer::start();
    let mut c = server.client();
    let all = populate(&mut c, "key:", 10_000);
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let expected = sorted(all.clone());
    for (count, want_calls) in [
        (None, 1000),
        (Some(7), 1429),
        (Some(100), 100),
        (Some(999), 11),
        (Some(10_000), 1),
        (Some(1_000_000), 1),
    ] {
        let n = count.map(|n: usize| n.to_string());
        let extra: Vec<&str> = n.iter().flat_map(|n| ["COUNT", n.as_str()]).collect();
        let (keys, calls) = scan_all(&mut c, &extra);
        assert_eq!(sorted(keys), expected, "COUNT {count:?}");
        // COUNT is honoured: full pages until the last.
        assert_eq!(calls, want_calls, "COUNT {count:?}");
    }
    for (pattern, count) in [
        ("key:1??", "10"),
        ("key:*7", "33"),
        ("*9?9", "1"),
        ("key:[0-2]*", "500"),
    ] {
        let (keys, _) = scan_all(&mut c, &["MATCH", pattern, "COUNT", count]);
        let want: Vec<String> = all
            .iter()
            .filter(|k| {
                let mut b = cairn_server::cmd::keys::glob::Budget::default();
                cairn_server::cmd::keys::glob::matches(pattern.as_bytes(), k.as_bytes(), &mut b)
                    .expect("budget")
            })
            .cloned()
            .collect();
        assert!(!want.is_empty());
        assert_eq!(sorted(keys), sorted(want), "MATCH {pattern}");
    }
    // Redis's SCAN MATCH test: key:1?? is 100 keys.
    let (keys, _) = scan_all(&mut c, &["MATCH", "key:1??"]);
    assert_eq!(keys.len(), 100);
    let (keys, calls) = scan_all(&mut c, &["MATCH", "nothing*"]);
    assert!(keys.is_empty());
    assert_eq!(calls, 1);
    // TYPE: everything is a string.
    let (keys, _) = scan_all(&mut c, &["TYPE", "string", "COUNT", "1000"]);
    assert_eq!(keys.len(), 10_000);
    let (keys, _) = scan_all(&mut c, &["type", "STRING", "COUNT", "5000"]);
    assert_eq!(keys.len(), 10_000);
    for other in ["list", "hash", "foo"] {
        let (keys, calls) = scan_all(&mut c, &["TYPE", other]);
        assert!(keys.is_empty());
        assert_eq!(calls, 1);
    }
}

#[test]
fn scan_under_writes_returns_every_key_present_throughout() {
    let server = TestServer::start();
    let mut c = server.client();
    let stable = populate(&mut c, "s", 1000);
    populate(&mut c, "doomed:", 500);
    let mut cursor = "0".to_string();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut round = 0usize;
    loop {
        let (next, page): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "20"]);
        for k in page {
            *seen.entry(k).or_default() += 1;
        }
        // Add 10 keys and remove 10 others at every step.
        for j in 0..10 {
            let added = format!("added:{}", (round * 7919 + j * 104_729) % 5000);
            set(&mut c, &added, "x");
            let doomed = format!("doomed:{}", (round * 10 + j) % 500);
            let _: i64 = q(&mut c, &["DEL", &doomed]);
        }
        round += 1;
        assert!(round < 10_000, "SCAN never ends");
        if next == "0" {
            break;
        }
        cursor = next;
    }
    for k in &stable {
        assert_eq!(seen.get(k), Some(&1), "{k}");
    }
}

#[test]
fn scan_cursor_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    let mut all = populate(&mut c, "r:", 300);
    let (cursor, mut keys): (String, Vec<String>) = q(&mut c, &["SCAN", "0", "COUNT", "100"]);
    assert_ne!(cursor, "0");
    let (cursor, page): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "100"]);
    keys.extend(page);
    drop(c);
    server.stop();
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    let mut cursor = cursor;
    while cursor != "0" {
        let (next, page): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "COUNT", "100"]);
        keys.extend(page);
        cursor = next;
    }
    keys.sort();
    all.sort();
    assert_eq!(keys, all);
}

#[test]
fn scan_arguments_and_errors() {
    let server = TestServer::start();
    let mut c = server.client();
    for k in ["a", "b", "c"] {
        set(&mut c, k, "1");
    }
    let mut raw = server.raw();
    let syntax = "-ERR syntax error\r\n";
    let cursor = "-ERR invalid cursor\r\n";
    let cases: &[(&[&str], &str)] = &[
        (&["SCAN", "0", "COUNT", "0"], syntax),
        (&["SCAN", "0", "COUNT", "-1"], syntax),
        (&["SCAN", "0", "COUNT"], syntax),
        (&["SCAN", "0", "MATCH"], syntax),
        (&["SCAN", "0", "TYPE"], syntax),
        (&["SCAN", "0", "foo", "bar"], syntax),
        (
            &["SCAN", "0", "COUNT", "x"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (
            &["SCAN", "0", "COUNT", "9223372036854775808"],
            "-ERR value is not an integer or out of range\r\n",
        ),
        (&["SCAN", "x"], cursor),
        (&["SCAN", " 0"], cursor),
        (&["SCAN", "0 "], cursor),
        (&["SCAN", "-"], cursor),
        (&["SCAN", "0x1"], cursor),
        (&["SCAN", "18446744073709551616"], cursor),
        // The cursor is checked before the options.
        (&["SCAN", "x", "COUNT", "0"], cursor),
        (
            &["SCAN"],
            "-ERR wrong number of arguments for 'scan' command\r\n",
        ),
        (
            &["KEYS"],
            "-ERR wrong number of arguments for 'keys' command\r\n",
        ),
        (
            &["KEYS", "a", "b"],
            "-ERR wrong number of arguments for 'keys' command\r\n",
        ),
    ];
    for (words, want) in cases {
        raw_is(&mut raw, words, want);
    }
    // strtoul's cursors: "", "+0" are 0; "-1" is the largest.
    for start in ["", "+0", "0"] {
        let (next, keys): (String, Vec<String>) = q(&mut c, &["SCAN", start]);
        assert_eq!(next, "0");
        assert_eq!(keys.len(), 3, "{start:?}");
    }
    let (next, _): (String, Vec<String>) = q(&mut c, &["SCAN", "-1"]);
    assert_eq!(next, "0");
    let (next, _): (String, Vec<String>) = q(&mut c, &["SCAN", "18446744073709551615"]);
    assert_eq!(next, "0");
    // The last of a repeated option wins.
    let (_, keys): (String, Vec<String>) = q(
        &mut c,
        &[
            "SCAN", "0", "MATCH", "a", "MATCH", "b", "COUNT", "1", "COUNT", "10",
        ],
    );
    assert_eq!(keys, ["b"]);
    let (_, keys): (String, Vec<String>) =
        q(&mut c, &["SCAN", "0", "TYPE", "string", "TYPE", "list"]);
    assert!(keys.is_empty());
    // COUNT bounds a page.
    let (next, keys): (String, Vec<String>) = q(&mut c, &["SCAN", "0", "COUNT", "1"]);
    assert_ne!(next, "0");
    assert_eq!(keys.len(), 1);
}

#[test]
fn randomkey() {
    let server = TestServer::start();
    let mut c = server.client();
    let k: Option<String> = q(&mut c, &["RANDOMKEY"]);
    assert_eq!(k, None);
    set(&mut c, "foo", "x");
    set(&mut c, "bar", "y");
    let mut seen = BTreeSet::new();
    for _ in 0..100 {
        let k: Option<String> = q(&mut c, &["RANDOMKEY"]);
        seen.insert(k.expect("a key"));
    }
    assert_eq!(seen, ["bar", "foo"].map(String::from).into());
    let _: () = q(&mut c, &["FLUSHDB"]);
    set(&mut c, "x", "10");
    let _: i64 = q(&mut c, &["DEL", "x"]);
    let k: Option<String> = q(&mut c, &["RANDOMKEY"]);
    assert_eq!(k, None);
    set(&mut c, "gone", "1");
    let _: i64 = q(&mut c, &["PEXPIRE", "gone", "50"]);
    std::thread::sleep(Duration::from_millis(120));
    let k: Option<String> = q(&mut c, &["RANDOMKEY"]);
    assert_eq!(k, None);
    let mut raw = server.raw();
    raw_is(&mut raw, &["RANDOMKEY"], "$-1\r\n");
    raw_is(
        &mut raw,
        &["RANDOMKEY", "x"],
        "-ERR wrong number of arguments for 'randomkey' command\r\n",
    );
}

#[test]
fn rename_and_renamenx() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "mykey", "hello");
    let _: () = q(&mut c, &["RENAME", "mykey", "mykey1"]);
    let _: () = q(&mut c, &["RENAME", "mykey1", "mykey2"]);
    let v: String = q(&mut c, &["GET", "mykey2"]);
    assert_eq!(v, "hello");
    assert_eq!(int(&mut c, &["EXISTS", "mykey", "mykey1"]), 0);
    // Over an existing key.
    set(&mut c, "mykey", "a");
    set(&mut c, "mykey2", "b");
    let _: () = q(&mut c, &["RENAME", "mykey2", "mykey"]);
    let v: String = q(&mut c, &["GET", "mykey"]);
    assert_eq!(v, "b");
    assert_eq!(int(&mut c, &["EXISTS", "mykey2"]), 0);
    // RENAMENX.
    let _: i64 = q(&mut c, &["DEL", "mykey", "mykey2"]);
    set(&mut c, "mykey", "foobar");
    assert_eq!(int(&mut c, &["RENAMENX", "mykey", "mykey2"]), 1);
    let v: String = q(&mut c, &["GET", "mykey2"]);
    assert_eq!(v, "foobar");
    assert_eq!(int(&mut c, &["EXISTS", "mykey"]), 0);
    set(&mut c, "mykey", "foo");
    assert_eq!(int(&mut c, &["RENAMENX", "mykey", "mykey2"]), 0);
    let a: String = q(&mut c, &["GET", "mykey"]);
    let b: String = q(&mut c, &["GET", "mykey2"]);
    assert_eq!(a + &b, "foofoobar");
    // Same key: OK / 0 when it exists, the error when it does not.
    let _: () = q(&mut c, &["RENAME", "mykey", "mykey"]);
    assert_eq!(int(&mut c, &["RENAMENX", "mykey", "mykey"]), 0);
    let v: String = q(&mut c, &["GET", "mykey"]);
    assert_eq!(v, "foo");
    let mut raw = server.raw();
    raw_is(
        &mut raw,
        &["RENAME", "nokey", "foobar"],
        "-ERR no such key\r\n",
    );
    raw_is(
        &mut raw,
        &["RENAME", "nokey", "nokey"],
        "-ERR no such key\r\n",
    );
    raw_is(
        &mut raw,
        &["RENAMENX", "nokey", "foobar"],
        "-ERR no such key\r\n",
    );
    raw_is(
        &mut raw,
        &["RENAMENX", "nokey", "mykey"],
        "-ERR no such key\r\n",
    );
    raw_is(
        &mut raw,
        &["RENAME", "a"],
        "-ERR wrong number of arguments for 'rename' command\r\n",
    );
    raw_is(
        &mut raw,
        &["RENAMENX", "a", "b", "c"],
        "-ERR wrong number of arguments for 'renamenx' command\r\n",
    );
    assert_eq!(int(&mut c, &["EXISTS", "foobar"]), 0);
}

#[test]
fn rename_keeps_the_ttl_and_drops_the_targets() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "src", "foo");
    assert_eq!(int(&mut c, &["EXPIRE", "src", "100"]), 1);
    let before = int(&mut c, &["PEXPIRETIME", "src"]);
    let _: () = q(&mut c, &["RENAME", "src", "dst"]);
    let ttl = int(&mut c, &["TTL", "dst"]);
    assert!(ttl > 95 && ttl <= 100, "{ttl}");
    assert_eq!(int(&mut c, &["PEXPIRETIME", "dst"]), before);
    assert_eq!(int(&mut c, &["TTL", "src"]), -2);
    // A persistent source does not inherit the target's TTL.
    set(&mut c, "p", "foo");
    set(&mut c, "q", "bar");
    assert_eq!(int(&mut c, &["EXPIRE", "q", "100"]), 1);
    let _: () = q(&mut c, &["RENAME", "p", "q"]);
    assert_eq!(int(&mut c, &["TTL", "q"]), -1);
    // RENAMENX moves the TTL too, and the key still expires.
    set(&mut c, "short", "v");
    assert_eq!(int(&mut c, &["PEXPIRE", "short", "100"]), 1);
    assert_eq!(int(&mut c, &["RENAMENX", "short", "moved"]), 1);
    let pttl = int(&mut c, &["PTTL", "moved"]);
    assert!(pttl > 0 && pttl <= 100, "{pttl}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(int(&mut c, &["EXISTS", "moved", "short"]), 0);
}

#[test]
fn dbsize_and_flushdb() {
    let server = TestServer::start();
    let mut c = server.client();
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    populate(&mut c, "k", 50);
    assert_eq!(int(&mut c, &["DBSIZE"]), 50);
    let mut raw = server.raw();
    let syntax = "-ERR syntax error\r\n";
    raw_is(&mut raw, &["FLUSHDB", "foo"], syntax);
    raw_is(&mut raw, &["FLUSHDB", "sync", "async"], syntax);
    raw_is(&mut raw, &["FLUSHALL", "x"], syntax);
    raw_is(&mut raw, &["FLUSHALL", "sync", "sync"], syntax);
    raw_is(
        &mut raw,
        &["DBSIZE", "x"],
        "-ERR wrong number of arguments for 'dbsize' command\r\n",
    );
    assert_eq!(int(&mut c, &["DBSIZE"]), 50);
    raw_is(&mut raw, &["FLUSHDB", "ASYNC"], "+OK\r\n");
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    populate(&mut c, "k", 5);
    raw_is(&mut raw, &["flushdb", "sync"], "+OK\r\n");
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    populate(&mut c, "k", 5);
    raw_is(&mut raw, &["FLUSHDB"], "+OK\r\n");
    raw_is(&mut raw, &["FLUSHDB"], "+OK\r\n");
    let k: Vec<String> = q(&mut c, &["KEYS", "*"]);
    assert!(k.is_empty());
}

#[test]
fn flushdb_and_flushall_across_databases() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    for db in ["0", "3", "9", "15"] {
        let _: () = q(&mut c, &["SELECT", db]);
        set(&mut c, &format!("in{db}"), "v");
    }
    // FLUSHDB empties only the current database.
    let _: () = q(&mut c, &["SELECT", "9"]);
    let _: () = q(&mut c, &["FLUSHDB"]);
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    let _: () = q(&mut c, &["SELECT", "3"]);
    assert_eq!(int(&mut c, &["DBSIZE"]), 1);
    drop(c);
    server.stop();
    // After a restart the databases exist on disk but this server has not
    // opened them: FLUSHALL must still empty every one.
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    let _: () = q(&mut c, &["FLUSHALL", "SYNC"]);
    for db in 0..16 {
        let _: () = q(&mut c, &["SELECT", &db.to_string()]);
        assert_eq!(int(&mut c, &["DBSIZE"]), 0, "db {db}");
    }
    drop(c);
    server.stop();
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    for db in ["0", "3", "15"] {
        let _: () = q(&mut c, &["SELECT", db]);
        assert_eq!(int(&mut c, &["DBSIZE"]), 0, "db {db} after restart");
    }
    // FLUSHALL ASYNC on opened databases, and refused inside MULTI.
    set(&mut c, "again", "v");
    let mut raw = server.raw();
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    raw_is(
        &mut raw,
        &["FLUSHALL"],
        "-ERR Command not allowed inside a transaction\r\n",
    );
    raw_is(&mut raw, &["DISCARD"], "+OK\r\n");
    assert_eq!(int(&mut c, &["DBSIZE"]), 1);
    raw_is(&mut raw, &["FLUSHALL", "async"], "+OK\r\n");
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
}

#[test]
fn flushdb_inside_exec_deletes_the_transactions_own_writes() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "old", "v");
    let mut raw = server.raw();
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    raw_is(&mut raw, &["SET", "new", "v"], "+QUEUED\r\n");
    raw_is(&mut raw, &["FLUSHDB"], "+QUEUED\r\n");
    raw_is(&mut raw, &["SET", "after", "v"], "+QUEUED\r\n");
    raw_is(&mut raw, &["EXEC"], "*3\r\n+OK\r\n+OK\r\n+OK\r\n");
    let keys: Vec<String> = q(&mut c, &["KEYS", "*"]);
    assert_eq!(keys, ["after"]);
}

#[test]
fn key_commands_inside_exec() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "k", "v");
    let mut raw = server.raw();
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    for words in [
        &["EXPIRE", "k", "100"][..],
        &["TTL", "k"],
        &["RENAME", "k", "k2"],
        &["EXISTS", "k", "k2"],
        &["TYPE", "k2"],
        &["PERSIST", "k2"],
        &["PTTL", "k2"],
        &["RENAME", "nokey", "x"],
        &["DEL", "k2"],
        &["DBSIZE"],
    ] {
        raw_is(&mut raw, words, "+QUEUED\r\n");
    }
    // A failing command does not stop the others. DBSIZE inside EXEC sees
    // the database as committed (k was there).
    raw_is(
        &mut raw,
        &["EXEC"],
        "*10\r\n:1\r\n:100\r\n+OK\r\n:1\r\n+string\r\n:1\r\n:-1\r\n-ERR no such key\r\n:1\r\n:1\r\n",
    );
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
}

#[test]
fn flushdb_and_expire_touch_watched_keys() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "w", "v");
    let mut other = server.client();
    let mut raw = server.raw();
    raw_is(&mut raw, &["WATCH", "w"], "+OK\r\n");
    let _: () = q(&mut other, &["FLUSHDB"]);
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    raw_is(&mut raw, &["SET", "x", "1"], "+QUEUED\r\n");
    raw_is(&mut raw, &["EXEC"], "*-1\r\n");
    set(&mut c, "w", "v");
    raw_is(&mut raw, &["WATCH", "w"], "+OK\r\n");
    assert_eq!(int(&mut other, &["EXPIRE", "w", "100"]), 1);
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    raw_is(&mut raw, &["SET", "x", "1"], "+QUEUED\r\n");
    raw_is(&mut raw, &["EXEC"], "*-1\r\n");
    assert_eq!(int(&mut c, &["EXISTS", "x"]), 0);
}

/// As in Redis (unit/multi "FLUSHALL/FLUSHDB does not touch non affected
/// keys"), a flush touches the WATCH of a key it deletes but not of a key
/// that did not exist.
#[test]
fn flushes_touch_only_the_watched_keys_they_delete() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut raw = server.raw();
    for flush in ["FLUSHDB", "FLUSHALL"] {
        set(&mut c, "other", "v");
        raw_is(&mut raw, &["WATCH", "absent"], "+OK\r\n");
        let _: () = q(&mut c, &[flush]);
        raw_is(&mut raw, &["MULTI"], "+OK\r\n");
        raw_is(&mut raw, &["PING"], "+QUEUED\r\n");
        raw_is(&mut raw, &["EXEC"], "*1\r\n+PONG\r\n");
        set(&mut c, "present", "v");
        raw_is(&mut raw, &["WATCH", "present"], "+OK\r\n");
        let _: () = q(&mut c, &[flush]);
        raw_is(&mut raw, &["MULTI"], "+OK\r\n");
        raw_is(&mut raw, &["PING"], "+QUEUED\r\n");
        raw_is(&mut raw, &["EXEC"], "*-1\r\n");
    }
}

#[test]
fn swapdb_is_unknown() {
    let server = TestServer::start();
    let mut raw = server.raw();
    raw_is(
        &mut raw,
        &["SWAPDB", "0", "1"],
        "-ERR unknown command 'SWAPDB', with args beginning with: '0' '1' \r\n",
    );
}

/// The absolute expiry of `key` in database `index`, from the store.
fn expiry_in(server: &TestServer, index: usize, key: &str) -> Option<u64> {
    server
        .shared
        .store
        .db(index)
        .expect("db")
        .get_with_expiry(key)
        .expect("read")
        .expect("key exists")
        .1
}

/// COPY as Redis 7.0's unit/keyspace tests it, with the replies and error
/// texts of redis-server 7.0.15.
#[test]
fn copy_within_and_across_databases() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut raw = server.raw();
    set(&mut c, "a", "va");
    assert_eq!(int(&mut c, &["COPY", "a", "b"]), 1);
    assert_eq!(q::<String>(&mut c, &["GET", "b"]), "va");
    assert_eq!(int(&mut c, &["COPY", "a", "b"]), 0, "b exists");
    set(&mut c, "a", "va2");
    assert_eq!(int(&mut c, &["COPY", "a", "b", "REPLACE"]), 1);
    assert_eq!(q::<String>(&mut c, &["GET", "b"]), "va2");
    assert_eq!(int(&mut c, &["COPY", "missing", "b", "REPLACE"]), 0);
    assert_eq!(q::<String>(&mut c, &["GET", "b"]), "va2");
    // To another database, with the TTL; none when the source has none.
    let _: () = q(&mut c, &["PEXPIRE", "a", "100000"]);
    let at = expiry_in(&server, 0, "a");
    assert!(at.is_some());
    assert_eq!(int(&mut c, &["COPY", "a", "a", "DB", "3"]), 1);
    assert_eq!(expiry_in(&server, 3, "a"), at);
    assert_eq!(int(&mut c, &["COPY", "b", "c", "db", "3"]), 1);
    assert_eq!(expiry_in(&server, 3, "c"), None);
    assert_eq!(int(&mut c, &["COPY", "a", "c", "DB", "3"]), 0);
    assert_eq!(int(&mut c, &["COPY", "a", "c", "DB", "3", "REPLACE"]), 1);
    let _: () = q(&mut c, &["SELECT", "3"]);
    assert_eq!(q::<String>(&mut c, &["GET", "c"]), "va2");
    assert_eq!(
        int(&mut c, &["COPY", "c", "b", "DB", "0"]),
        0,
        "b exists in 0"
    );
    assert_eq!(int(&mut c, &["COPY", "c", "d", "DB", "0"]), 1);
    let _: () = q(&mut c, &["SELECT", "0"]);
    // Errors.
    let same = "-ERR source and destination objects are the same\r\n";
    raw_is(&mut raw, &["COPY", "a", "a"], same);
    raw_is(&mut raw, &["COPY", "a", "a", "DB", "0"], same);
    raw_is(
        &mut raw,
        &["COPY", "a", "b", "DB", "16"],
        "-ERR DB index is out of range\r\n",
    );
    raw_is(
        &mut raw,
        &["COPY", "a", "b", "DB", "-1"],
        "-ERR DB index is out of range\r\n",
    );
    raw_is(
        &mut raw,
        &["COPY", "a", "b", "DB", "x"],
        "-ERR value is not an integer or out of range\r\n",
    );
    raw_is(
        &mut raw,
        &["COPY", "a", "b", "DB", "4294967296"],
        "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n",
    );
    raw_is(&mut raw, &["COPY", "a", "b", "DB"], "-ERR syntax error\r\n");
    raw_is(
        &mut raw,
        &["COPY", "a", "b", "foo"],
        "-ERR syntax error\r\n",
    );
    raw_is(
        &mut raw,
        &["COPY", "a"],
        "-ERR wrong number of arguments for 'copy' command\r\n",
    );
}

#[test]
fn move_between_databases() {
    let server = TestServer::start();
    let mut c = server.client();
    let mut raw = server.raw();
    set(&mut c, "k", "v");
    let _: () = q(&mut c, &["PEXPIRE", "k", "100000"]);
    let at = expiry_in(&server, 0, "k");
    assert_eq!(int(&mut c, &["MOVE", "k", "10"]), 1);
    assert_eq!(int(&mut c, &["EXISTS", "k"]), 0);
    assert_eq!(int(&mut c, &["DBSIZE"]), 0);
    assert_eq!(expiry_in(&server, 10, "k"), at, "the TTL moves too");
    assert_eq!(int(&mut c, &["MOVE", "k", "10"]), 0, "missing here");
    // A key that exists in the target stays where it is.
    set(&mut c, "k", "here");
    assert_eq!(int(&mut c, &["MOVE", "k", "10"]), 0);
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "here");
    let _: () = q(&mut c, &["SELECT", "10"]);
    assert_eq!(q::<String>(&mut c, &["GET", "k"]), "v");
    let _: () = q(&mut c, &["SELECT", "0"]);
    raw_is(
        &mut raw,
        &["MOVE", "k", "0"],
        "-ERR source and destination objects are the same\r\n",
    );
    raw_is(
        &mut raw,
        &["MOVE", "k", "16"],
        "-ERR DB index is out of range\r\n",
    );
    raw_is(
        &mut raw,
        &["MOVE", "k", "notanumber"],
        "-ERR value is not an integer or out of range\r\n",
    );
    // Moving touches the watchers of the source key.
    let mut watcher = server.raw();
    raw_is(&mut watcher, &["WATCH", "k"], "+OK\r\n");
    let _: () = q(&mut c, &["DEL", "k"]);
    set(&mut c, "k2", "x");
    raw_is(&mut watcher, &["MULTI"], "+OK\r\n");
    raw_is(&mut watcher, &["SET", "y", "1"], "+QUEUED\r\n");
    raw_is(&mut watcher, &["EXEC"], "*-1\r\n");
    raw_is(&mut watcher, &["WATCH", "k2"], "+OK\r\n");
    assert_eq!(int(&mut c, &["MOVE", "k2", "4"]), 1);
    raw_is(&mut watcher, &["MULTI"], "+OK\r\n");
    raw_is(&mut watcher, &["SET", "y", "1"], "+QUEUED\r\n");
    raw_is(&mut watcher, &["EXEC"], "*-1\r\n");
}

/// Inside EXEC every command runs in the current database's transaction:
/// COPY within it works, a write to another database is refused (and the
/// other commands still run).
#[test]
fn copy_and_move_inside_exec() {
    let server = TestServer::start();
    let mut c = server.client();
    set(&mut c, "a", "v");
    let mut raw = server.raw();
    raw_is(&mut raw, &["MULTI"], "+OK\r\n");
    for words in [
        &["COPY", "a", "b"][..],
        &["COPY", "a", "b", "DB", "2"],
        &["MOVE", "a", "2"],
        &["GET", "b"],
    ] {
        raw_is(&mut raw, words, "+QUEUED\r\n");
    }
    let refused =
        "-ERR cairn serve cannot write to another database inside MULTI (COPY with DB, MOVE)\r\n";
    raw_is(
        &mut raw,
        &["EXEC"],
        &format!("*4\r\n:1\r\n{refused}{refused}$1\r\nv\r\n"),
    );
    assert_eq!(q::<String>(&mut c, &["GET", "b"]), "v");
    assert_eq!(int(&mut c, &["EXISTS", "a"]), 1);
}
