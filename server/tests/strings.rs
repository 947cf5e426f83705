//! The string commands through the real server: every command and option,
//! Redis 7.0's replies and error texts (taken from redis-server 7.0), expiry,
//! MSET/MSETNX atomicity, and the same commands inside MULTI/EXEC.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use common::TestServer;

/// A raw connection that sends a command and renders its reply as text:
/// `OK`, `(error) ERR …`, `(integer) 5`, `"bulk"`, `(nil)`, `[a, b]`.
struct Conn {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Conn {
    fn new(server: &TestServer) -> Conn {
        Conn::over(server.raw().0)
    }

    fn over(w: TcpStream) -> Conn {
        let r = BufReader::new(w.try_clone().expect("clone"));
        Conn { w, r }
    }

    fn q(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.qb(&args)
    }

    fn qb(&mut self, args: &[&[u8]]) -> String {
        self.w.write_all(&common::cmd(args)).expect("send");
        self.reply()
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read");
        assert!(line.ends_with("\r\n"), "short reply line {line:?}");
        line.truncate(line.len() - 2);
        line
    }

    fn reply(&mut self) -> String {
        let line = self.line();
        let (kind, rest) = line.split_at(1);
        match kind {
            "+" => rest.to_string(),
            "-" => format!("(error) {rest}"),
            ":" => format!("(integer) {rest}"),
            "_" => "(nil)".into(),
            "$" if rest == "-1" => "(nil)".into(),
            "$" => {
                let n: usize = rest.parse().expect("bulk length");
                let mut buf = vec![0; n + 2];
                self.r.read_exact(&mut buf).expect("bulk");
                buf.truncate(n);
                format!("{:?}", String::from_utf8_lossy(&buf))
            }
            "*" if rest == "-1" => "(nil array)".into(),
            "*" => {
                let n: usize = rest.parse().expect("array length");
                let items: Vec<String> = (0..n).map(|_| self.reply()).collect();
                format!("[{}]", items.join(", "))
            }
            _ => panic!("unexpected reply {line:?}"),
        }
    }
}

fn bulk(s: &str) -> String {
    format!("{s:?}")
}

fn int(n: i64) -> String {
    format!("(integer) {n}")
}

fn err(text: &str) -> String {
    format!("(error) {text}")
}

const NIL: &str = "(nil)";
const SYNTAX: &str = "(error) ERR syntax error";
const NOT_INT: &str = "(error) ERR value is not an integer or out of range";
const NOT_FLOAT: &str = "(error) ERR value is not a valid float";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as u64
}

/// The value and absolute expiry of `key` in database 0, read from the
/// store underneath.
fn stored(server: &TestServer, key: &str) -> Option<(Vec<u8>, Option<u64>)> {
    server
        .shared
        .store
        .db(0)
        .expect("db0")
        .get_with_expiry(key)
        .expect("read")
}

/// The milliseconds `key` has left (None: no expiry), from the store.
fn ttl_ms(server: &TestServer, key: &str) -> Option<u64> {
    let (_, at) = stored(server, key).expect("key exists");
    at.map(|at| at.saturating_sub(now_ms()))
}

#[test]
fn set_and_get_through_the_redis_crate() {
    let server = TestServer::start();
    let mut c = server.client();
    let big = "abcd".repeat(1_000_000);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query(&mut c)
        .expect("set");
    let got: String = redis::cmd("GET").arg("big").query(&mut c).expect("get");
    assert_eq!(got, big);
    let _: () = redis::cmd("SET")
        .arg("e")
        .arg("")
        .query(&mut c)
        .expect("set");
    let got: Option<Vec<u8>> = redis::cmd("GET").arg("e").query(&mut c).expect("get");
    assert_eq!(got, Some(Vec::new()));
    let binary = vec![0u8, 255, 13, 10, 0];
    let _: () = redis::cmd("SET")
        .arg("bin")
        .arg(&binary)
        .query(&mut c)
        .expect("set");
    let got: Vec<u8> = redis::cmd("GET").arg("bin").query(&mut c).expect("get");
    assert_eq!(got, binary);
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut c).expect("get");
    assert_eq!(missing, None);
    let n: i64 = redis::cmd("INCRBY")
        .arg("n")
        .arg(5)
        .query(&mut c)
        .expect("incrby");
    assert_eq!(n, 5);
    let f: String = redis::cmd("INCRBYFLOAT")
        .arg("f")
        .arg("10.5")
        .query(&mut c)
        .expect("float");
    assert_eq!(f, "10.5");
    let all: Vec<Option<String>> = redis::cmd("MGET")
        .arg("n")
        .arg("nope")
        .arg("f")
        .query(&mut c)
        .expect("mget");
    assert_eq!(all, vec![Some("5".into()), None, Some("10.5".into())]);
    // MULTI/EXEC through the crate's atomic pipeline.
    let (a, b, g): (i64, i64, String) = redis::pipe()
        .atomic()
        .cmd("INCR")
        .arg("n")
        .cmd("DECRBY")
        .arg("n")
        .arg(10)
        .cmd("GETSET")
        .arg("n")
        .arg("x")
        .query(&mut c)
        .expect("pipeline");
    assert_eq!((a, b, g.as_str()), (6, -4, "-4"));
    drop(c);
    server.stop();
}

#[test]
fn extended_set_options() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    // NX and XX.
    assert_eq!(c.q(&["SET", "foo", "1", "nx"]), "OK");
    assert_eq!(c.q(&["SET", "foo", "2", "NX"]), NIL);
    assert_eq!(c.q(&["GET", "foo"]), bulk("1"));
    assert_eq!(c.q(&["SET", "bar", "1", "xx"]), NIL);
    assert_eq!(c.q(&["GET", "bar"]), NIL);
    assert_eq!(c.q(&["SET", "foo", "2", "XX"]), "OK");
    assert_eq!(c.q(&["GET", "foo"]), bulk("2"));
    // GET, alone and with NX / XX (NX with GET is allowed in 7.0).
    assert_eq!(c.q(&["SET", "foo", "bar2", "GET"]), bulk("2"));
    assert_eq!(c.q(&["GET", "foo"]), bulk("bar2"));
    assert_eq!(c.q(&["SET", "new", "v", "get"]), NIL);
    assert_eq!(c.q(&["GET", "new"]), bulk("v"));
    assert_eq!(c.q(&["SET", "foo", "baz", "GET", "XX"]), bulk("bar2"));
    assert_eq!(c.q(&["GET", "foo"]), bulk("baz"));
    assert_eq!(c.q(&["SET", "none", "v", "GET", "XX"]), NIL);
    assert_eq!(c.q(&["GET", "none"]), NIL);
    assert_eq!(c.q(&["SET", "nx1", "bar", "GET", "NX"]), NIL);
    assert_eq!(c.q(&["GET", "nx1"]), bulk("bar"));
    assert_eq!(c.q(&["SET", "nx1", "baz", "GET", "NX"]), bulk("bar"));
    assert_eq!(c.q(&["GET", "nx1"]), bulk("bar"));
    // Repeating an option is allowed; the last expiry wins.
    assert_eq!(c.q(&["SET", "k", "v", "get", "get", "nx", "nx"]), NIL);
    assert_eq!(c.q(&["SET", "k", "v", "ex", "1000", "ex", "2000"]), "OK");
    let left = ttl_ms(&server, "k").expect("ttl");
    assert!((1_990_000..=2_000_000).contains(&left), "{left}");
    // EX, PX, EXAT, PXAT.
    assert_eq!(c.q(&["SET", "k", "v", "EX", "10"]), "OK");
    assert!((9_000..=10_000).contains(&ttl_ms(&server, "k").expect("ttl")));
    assert_eq!(c.q(&["SET", "k", "v", "px", "10000"]), "OK");
    assert!((9_000..=10_000).contains(&ttl_ms(&server, "k").expect("ttl")));
    let at_s = now_ms() / 1000 + 100;
    assert_eq!(c.q(&["SET", "k", "v", "exat", &at_s.to_string()]), "OK");
    assert_eq!(stored(&server, "k").expect("k").1, Some(at_s * 1000));
    let at_ms = now_ms() + 100_000;
    assert_eq!(c.q(&["SET", "k", "v", "PXAT", &at_ms.to_string()]), "OK");
    assert_eq!(stored(&server, "k").expect("k").1, Some(at_ms));
    // The largest absolute times Redis accepts, kept as the latest cairn
    // keeps (2^48 - 1 ms, the year 10889).
    assert_eq!(c.q(&["SET", "k", "v", "pxat", "9223372036854775807"]), "OK");
    assert_eq!(
        stored(&server, "k").expect("k").1,
        Some(cairn::MAX_EXPIRY_MS)
    );
    assert_eq!(c.q(&["SET", "k", "v", "exat", "9223372036854775"]), "OK");
    // A plain SET drops the TTL; KEEPTTL keeps it.
    assert_eq!(c.q(&["SET", "k", "v", "xx", "px", "50000"]), "OK");
    assert_eq!(c.q(&["SET", "k", "v2", "KEEPTTL"]), "OK");
    assert!((40_000..=50_000).contains(&ttl_ms(&server, "k").expect("ttl")));
    assert_eq!(c.q(&["GET", "k"]), bulk("v2"));
    assert_eq!(c.q(&["SET", "k", "v3"]), "OK");
    assert_eq!(ttl_ms(&server, "k"), None);
    assert_eq!(c.q(&["SET", "fresh", "v", "keepttl"]), "OK");
    assert_eq!(ttl_ms(&server, "fresh"), None);
    drop(c);
    server.stop();
}

#[test]
fn set_errors_are_redis_texts() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    let invalid = err("ERR invalid expire time in 'set' command");
    for bad in [
        &["nx", "xx"][..],
        &["xx", "nx"],
        &["ex", "10", "px", "100"],
        &["px", "10", "exat", "100"],
        &["ex", "10", "keepttl"],
        &["keepttl", "ex", "10"],
        &["keepttl", "pxat", "10"],
        &["ex"],
        &["persist"],
        &["non-existing-option"],
        &["nx", "ex"],
    ] {
        let mut args = vec!["SET", "k", "v"];
        args.extend_from_slice(bad);
        assert_eq!(c.q(&args), SYNTAX, "{bad:?}");
    }
    for (opt, arg) in [
        ("ex", "0"),
        ("ex", "-1"),
        ("px", "0"),
        ("px", "-100"),
        ("exat", "0"),
        ("pxat", "0"),
        ("pxat", "-5"),
        ("ex", "9223372036854775"),
        ("ex", "9223372036854775807"),
        ("px", "9223372036854775807"),
        ("px", "9223372036854000000"),
        ("exat", "9223372036854776"),
    ] {
        assert_eq!(c.q(&["SET", "k", "v", opt, arg]), invalid, "{opt} {arg}");
    }
    for arg in ["abc", "1.5", "", " 1", "+1", "99999999999999999999"] {
        assert_eq!(c.q(&["SET", "k", "v", "ex", arg]), NOT_INT, "{arg:?}");
    }
    // Nothing was written by any of them.
    assert_eq!(c.q(&["GET", "k"]), NIL);
    assert_eq!(
        c.q(&["SET", "k"]),
        err("ERR wrong number of arguments for 'set' command")
    );
    drop(c);
    server.stop();
}

#[test]
fn an_absolute_time_in_the_past_deletes_the_key() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SET", "k", "v"]), "OK");
    assert_eq!(c.q(&["SET", "k", "v2", "pxat", "1"]), "OK");
    assert_eq!(c.q(&["GET", "k"]), NIL);
    assert_eq!(stored(&server, "k"), None);
    assert_eq!(c.q(&["SET", "k", "v3"]), "OK");
    assert_eq!(c.q(&["SET", "k", "v4", "exat", "1", "get"]), bulk("v3"));
    assert_eq!(c.q(&["GET", "k"]), NIL);
    let past = (now_ms() - 10_000).to_string();
    assert_eq!(c.q(&["SET", "k", "v", "pxat", &past]), "OK");
    assert_eq!(c.q(&["GET", "k"]), NIL);
    // GETEX with an absolute time in the past returns the value, then
    // deletes it.
    assert_eq!(c.q(&["SET", "g", "v"]), "OK");
    assert_eq!(c.q(&["GETEX", "g", "pxat", "1"]), bulk("v"));
    assert_eq!(c.q(&["GET", "g"]), NIL);
    assert_eq!(c.q(&["SET", "g", "v"]), "OK");
    assert_eq!(
        c.q(&["GETEX", "g", "exat", &(now_ms() / 1000 - 5).to_string()]),
        bulk("v")
    );
    assert_eq!(stored(&server, "g"), None);
    drop(c);
    server.stop();
}

#[test]
fn short_ttls_expire() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SET", "a", "v", "PX", "150"]), "OK");
    assert_eq!(c.q(&["PSETEX", "b", "150", "v"]), "OK");
    assert_eq!(c.q(&["SET", "c", "v"]), "OK");
    assert_eq!(c.q(&["GETEX", "c", "PX", "150"]), bulk("v"));
    assert_eq!(c.q(&["SET", "d", "10", "PX", "150"]), "OK");
    assert_eq!(c.q(&["INCR", "d"]), int(11));
    assert_eq!(c.q(&["SET", "e", "v", "PX", "150"]), "OK");
    assert_eq!(c.q(&["SET", "e", "w", "KEEPTTL"]), "OK");
    assert_eq!(c.q(&["SET", "f", "v", "PX", "150"]), "OK");
    assert_eq!(c.q(&["APPEND", "f", "w"]), int(2));
    assert_eq!(c.q(&["SET", "p", "v", "PX", "150"]), "OK");
    assert_eq!(c.q(&["GETEX", "p", "PERSIST"]), bulk("v"));
    assert_eq!(
        c.q(&["MGET", "a", "b", "c", "d", "e", "f"]),
        r#"["v", "v", "v", "11", "w", "vw"]"#
    );
    sleep(Duration::from_millis(400));
    assert_eq!(
        c.q(&["MGET", "a", "b", "c", "d", "e", "f", "p"]),
        r#"[(nil), (nil), (nil), (nil), (nil), (nil), "v"]"#
    );
    // Expired keys read as missing everywhere.
    assert_eq!(c.q(&["GETEX", "a"]), NIL);
    assert_eq!(c.q(&["GETDEL", "a"]), NIL);
    assert_eq!(c.q(&["STRLEN", "a"]), int(0));
    assert_eq!(c.q(&["GETRANGE", "a", "0", "-1"]), bulk(""));
    assert_eq!(c.q(&["SETNX", "a", "new"]), int(1));
    assert_eq!(c.q(&["INCR", "d"]), int(1));
    assert_eq!(ttl_ms(&server, "d"), None);
    assert_eq!(c.q(&["SET", "x", "v", "px", "100", "xx"]), NIL);
    drop(c);
    server.stop();
}

#[test]
fn setnx_setex_psetex() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SETNX", "k", "foobared"]), int(1));
    assert_eq!(c.q(&["SETNX", "k", "blabla"]), int(0));
    assert_eq!(c.q(&["GET", "k"]), bulk("foobared"));
    assert_eq!(c.q(&["SET", "v", "10", "ex", "10000"]), "OK");
    assert_eq!(c.q(&["SETNX", "v", "20"]), int(0));
    assert_eq!(c.q(&["GET", "v"]), bulk("10"));
    assert_eq!(c.q(&["SETEX", "x", "12", "test"]), "OK");
    assert_eq!(c.q(&["GET", "x"]), bulk("test"));
    assert!((11_000..=12_000).contains(&ttl_ms(&server, "x").expect("ttl")));
    assert_eq!(c.q(&["PSETEX", "y", "5000", "ms"]), "OK");
    assert!((4_000..=5_000).contains(&ttl_ms(&server, "y").expect("ttl")));
    for (cmd, t) in [
        ("SETEX", "0"),
        ("SETEX", "-10"),
        ("PSETEX", "0"),
        ("PSETEX", "-1"),
    ] {
        let want = format!(
            "(error) ERR invalid expire time in '{}' command",
            cmd.to_ascii_lowercase()
        );
        assert_eq!(c.q(&[cmd, "z", t, "foo"]), want);
    }
    assert_eq!(
        c.q(&["SETEX", "z", "9223372036854775807", "foo"]),
        err("ERR invalid expire time in 'setex' command")
    );
    assert_eq!(c.q(&["SETEX", "z", "abc", "foo"]), NOT_INT);
    assert_eq!(c.q(&["GET", "z"]), NIL);
    assert_eq!(
        c.q(&["SETEX", "z", "10"]),
        err("ERR wrong number of arguments for 'setex' command")
    );
    assert_eq!(
        c.q(&["SETNX", "z"]),
        err("ERR wrong number of arguments for 'setnx' command")
    );
    drop(c);
    server.stop();
}

#[test]
fn mget_mset_msetnx() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(
        c.q(&["MSET", "x", "10", "y", "foo bar", "z", "x x x\n\n\r\n"]),
        "OK"
    );
    assert_eq!(
        c.q(&["MGET", "x", "y", "z", "nope"]),
        format!("[\"10\", \"foo bar\", {:?}, (nil)]", "x x x\n\n\r\n")
    );
    assert_eq!(
        c.q(&["MSET", "x", "10", "y", "foo bar", "z"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        c.q(&["MSETNX", "x", "20", "y", "foo bar", "z"]),
        err("ERR wrong number of arguments for 'msetnx' command")
    );
    assert_eq!(c.q(&["GET", "x"]), bulk("10"));
    // Same key twice: the last wins.
    assert_eq!(c.q(&["MSET", "x", "xxx", "x", "yyy"]), "OK");
    assert_eq!(c.q(&["GET", "x"]), bulk("yyy"));
    // MSETNX is all or nothing.
    assert_eq!(
        c.q(&["MSETNX", "x1", "xxx", "y2", "yyy", "x", "20"]),
        int(0)
    );
    assert_eq!(c.q(&["MGET", "x1", "y2", "x"]), r#"[(nil), (nil), "yyy"]"#);
    assert_eq!(c.q(&["MSETNX", "x1", "xxx", "y2", "yyy"]), int(1));
    assert_eq!(c.q(&["MGET", "x1", "y2"]), r#"["xxx", "yyy"]"#);
    assert_eq!(c.q(&["MSETNX", "n1", "xxx", "n1", "yyy"]), int(1));
    assert_eq!(c.q(&["GET", "n1"]), bulk("yyy"));
    assert_eq!(c.q(&["MSETNX", "n1", "xxx", "n1", "zzz"]), int(0));
    assert_eq!(c.q(&["GET", "n1"]), bulk("yyy"));
    // MSET drops TTLs.
    assert_eq!(c.q(&["SET", "t", "v", "ex", "100"]), "OK");
    assert_eq!(c.q(&["MSET", "t", "w"]), "OK");
    assert_eq!(ttl_ms(&server, "t"), None);
    // A key cairn cannot store fails the whole MSET: nothing is written.
    let long = "k".repeat(cairn::MAX_KEY_BYTES as usize + 1);
    let reply = c.q(&["MSET", "a1", "1", &long, "2", "a3", "3"]);
    assert!(
        reply.starts_with("(error) ERR key of 65537 bytes")
            && reply.contains(&cairn::MAX_KEY_BYTES.to_string()),
        "{reply}"
    );
    assert_eq!(c.q(&["MGET", "a1", "a3"]), "[(nil), (nil)]");
    let reply = c.q(&["MSETNX", "a1", "1", &long, "2"]);
    assert!(reply.starts_with("(error) ERR key of"), "{reply}");
    assert_eq!(c.q(&["GET", "a1"]), NIL);
    // Reading such a key finds nothing, as it cannot exist.
    assert_eq!(c.q(&["GET", &long]), NIL);
    assert_eq!(c.q(&["MGET", &long, "x"]), r#"[(nil), "yyy"]"#);
    drop(c);
    server.stop();
}

#[test]
fn getset_getdel_getex() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["GETSET", "foo", "xyz"]), NIL);
    assert_eq!(c.q(&["GET", "foo"]), bulk("xyz"));
    assert_eq!(c.q(&["SET", "foo", "bar", "ex", "100"]), "OK");
    assert_eq!(c.q(&["GETSET", "foo", "xyz"]), bulk("bar"));
    assert_eq!(ttl_ms(&server, "foo"), None, "GETSET drops the TTL");
    assert_eq!(c.q(&["GETDEL", "foo"]), bulk("xyz"));
    assert_eq!(c.q(&["GETDEL", "foo"]), NIL);
    assert_eq!(stored(&server, "foo"), None);
    // GETEX.
    assert_eq!(c.q(&["SET", "g", "bar"]), "OK");
    assert_eq!(c.q(&["GETEX", "g"]), bulk("bar"));
    assert_eq!(ttl_ms(&server, "g"), None);
    assert_eq!(c.q(&["GETEX", "g", "ex", "10"]), bulk("bar"));
    assert!((9_000..=10_000).contains(&ttl_ms(&server, "g").expect("ttl")));
    assert_eq!(c.q(&["GETEX", "g", "PX", "20000"]), bulk("bar"));
    assert!((19_000..=20_000).contains(&ttl_ms(&server, "g").expect("ttl")));
    let at = now_ms() / 1000 + 30;
    assert_eq!(c.q(&["GETEX", "g", "EXAT", &at.to_string()]), bulk("bar"));
    assert_eq!(stored(&server, "g").expect("g").1, Some(at * 1000));
    let at = now_ms() + 40_000;
    assert_eq!(c.q(&["GETEX", "g", "pxat", &at.to_string()]), bulk("bar"));
    assert_eq!(stored(&server, "g").expect("g").1, Some(at));
    assert_eq!(c.q(&["GETEX", "g", "ex", "10", "ex", "20"]), bulk("bar"));
    assert!((19_000..=20_000).contains(&ttl_ms(&server, "g").expect("ttl")));
    assert_eq!(c.q(&["GETEX", "g", "persist", "persist"]), bulk("bar"));
    assert_eq!(ttl_ms(&server, "g"), None);
    assert_eq!(c.q(&["GETEX", "g", "persist"]), bulk("bar"));
    // Errors.
    let invalid = err("ERR invalid expire time in 'getex' command");
    for bad in [
        &["non-existent-option"][..],
        &["nx"],
        &["xx"],
        &["get"],
        &["keepttl"],
        &["ex"],
        &["ex", "10", "persist"],
        &["persist", "ex", "10"],
        &["ex", "10", "px", "10"],
    ] {
        let mut args = vec!["GETEX", "g"];
        args.extend_from_slice(bad);
        assert_eq!(c.q(&args), SYNTAX, "{bad:?}");
    }
    for (opt, arg) in [
        ("ex", "0"),
        ("px", "-5"),
        ("exat", "0"),
        ("ex", "9223372036854775"),
    ] {
        assert_eq!(c.q(&["GETEX", "g", opt, arg]), invalid);
    }
    assert_eq!(c.q(&["GETEX", "g", "ex", "x"]), NOT_INT);
    assert_eq!(ttl_ms(&server, "g"), None, "failed GETEX changed nothing");
    // A missing key: nil, and the expiry is not even checked.
    assert_eq!(c.q(&["GETEX", "nokey", "ex", "0"]), NIL);
    assert_eq!(c.q(&["GETEX", "nokey", "nx"]), SYNTAX);
    assert_eq!(
        c.q(&["GETEX"]),
        err("ERR wrong number of arguments for 'getex' command")
    );
    assert_eq!(
        c.q(&["GETDEL", "a", "b"]),
        err("ERR wrong number of arguments for 'getdel' command")
    );
    drop(c);
    server.stop();
}

#[test]
fn append_and_strlen() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["APPEND", "k", "foo"]), int(3));
    assert_eq!(c.q(&["APPEND", "k", "bar"]), int(6));
    assert_eq!(c.q(&["APPEND", "k", ""]), int(6));
    assert_eq!(c.q(&["GET", "k"]), bulk("foobar"));
    assert_eq!(c.q(&["APPEND", "e", ""]), int(0));
    assert_eq!(c.q(&["GET", "e"]), bulk(""));
    assert_eq!(c.q(&["SET", "n", "1"]), "OK");
    assert_eq!(c.q(&["APPEND", "n", "2"]), int(2));
    assert_eq!(c.q(&["GET", "n"]), bulk("12"));
    assert_eq!(c.q(&["INCR", "n"]), int(13));
    assert_eq!(c.q(&["SET", "t", "a", "ex", "100"]), "OK");
    let before = stored(&server, "t").expect("t").1;
    assert_eq!(c.q(&["APPEND", "t", "b"]), int(2));
    assert_eq!(
        stored(&server, "t").expect("t").1,
        before,
        "APPEND keeps the TTL"
    );
    assert_eq!(c.q(&["STRLEN", "notakey"]), int(0));
    assert_eq!(c.q(&["SET", "i", "-555"]), "OK");
    assert_eq!(c.q(&["STRLEN", "i"]), int(4));
    assert_eq!(c.q(&["SET", "s", "foozzz0123456789 baz"]), "OK");
    assert_eq!(c.q(&["STRLEN", "s"]), int(20));
    assert_eq!(
        c.qb(&[b"APPEND", &vec![b'k'; 70_000], b"x"]),
        err("ERR key of 70000 bytes is longer than cairn's limit of 65536 bytes")
    );
    drop(c);
    server.stop();
}

#[test]
fn getrange_and_substr() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["GETRANGE", "mykey", "0", "-1"]), bulk(""));
    assert_eq!(c.q(&["GETRANGE", "mykey", "a", "1"]), NOT_INT);
    assert_eq!(c.q(&["SET", "mykey", "Hello World"]), "OK");
    for (s, e, want) in [
        ("0", "3", "Hell"),
        ("0", "-1", "Hello World"),
        ("-4", "-1", "orld"),
        ("5", "3", ""),
        ("5", "5000", " World"),
        ("-5000", "10000", "Hello World"),
        ("0", "-100", "H"),
        ("1", "-100", ""),
        ("-1", "-100", ""),
        ("-100", "-99", "H"),
        ("-100", "-100", "H"),
        ("-100", "-101", ""),
        ("0", "4294967297", "Hello World"),
        ("-9223372036854775808", "9223372036854775807", "Hello World"),
    ] {
        assert_eq!(c.q(&["GETRANGE", "mykey", s, e]), bulk(want), "{s} {e}");
    }
    assert_eq!(c.q(&["GETRANGE", "mykey", "0", "1.5"]), NOT_INT);
    assert_eq!(c.q(&["SET", "key", "abcde"]), "OK");
    assert_eq!(c.q(&["SUBSTR", "key", "0", "0"]), bulk("a"));
    assert_eq!(c.q(&["SUBSTR", "key", "0", "3"]), bulk("abcd"));
    assert_eq!(c.q(&["SUBSTR", "key", "-4", "-1"]), bulk("bcde"));
    assert_eq!(c.q(&["SUBSTR", "key", "-1", "-3"]), bulk(""));
    assert_eq!(c.q(&["SUBSTR", "key", "7", "8"]), bulk(""));
    assert_eq!(c.q(&["SUBSTR", "nokey", "0", "1"]), bulk(""));
    assert_eq!(
        c.q(&["GETRANGE", "key", "0"]),
        err("ERR wrong number of arguments for 'getrange' command")
    );
    drop(c);
    server.stop();
}

#[test]
fn setrange() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SETRANGE", "k", "0", "foo"]), int(3));
    assert_eq!(c.q(&["GET", "k"]), bulk("foo"));
    assert_eq!(c.q(&["SETRANGE", "e", "0", ""]), int(0));
    assert_eq!(c.q(&["GET", "e"]), NIL, "an empty SETRANGE creates nothing");
    assert_eq!(c.q(&["SETRANGE", "e", "600000000", ""]), int(0));
    assert_eq!(c.q(&["SETRANGE", "z", "1", "foo"]), int(4));
    assert_eq!(c.q(&["GET", "z"]), bulk("\0foo"));
    for (off, patch, len, want) in [
        ("0", "b", 3, "boo"),
        ("0", "", 3, "foo"),
        ("1", "b", 3, "fbo"),
        ("4", "bar", 7, "foo\0bar"),
    ] {
        assert_eq!(c.q(&["SET", "s", "foo"]), "OK");
        assert_eq!(c.q(&["SETRANGE", "s", off, patch]), int(len));
        assert_eq!(c.q(&["GET", "s"]), bulk(want));
    }
    assert_eq!(c.q(&["SET", "i", "1234"]), "OK");
    assert_eq!(c.q(&["SETRANGE", "i", "5", "2"]), int(6));
    assert_eq!(c.q(&["GET", "i"]), bulk("1234\u{0}2"));
    // Keeps the TTL.
    assert_eq!(c.q(&["SET", "t", "abc", "px", "100000"]), "OK");
    let before = stored(&server, "t").expect("t").1;
    assert_eq!(c.q(&["SETRANGE", "t", "1", "X"]), int(3));
    assert_eq!(stored(&server, "t").expect("t"), (b"aXc".to_vec(), before));
    // Errors, on a missing and an existing key.
    let out_of_range = err("ERR offset is out of range");
    let too_big = err("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    for key in ["missing", "s"] {
        assert_eq!(c.q(&["SETRANGE", key, "-1", "world"]), out_of_range);
        assert_eq!(c.q(&["SETRANGE", key, "536870908", "world"]), too_big);
        assert_eq!(c.q(&["SETRANGE", key, "9223372036854775807", "A"]), too_big);
        assert_eq!(c.q(&["SETRANGE", key, "2147483647", "A"]), too_big);
        assert_eq!(c.q(&["SETRANGE", key, "x", "A"]), NOT_INT);
    }
    // Within Redis's limit but past cairn's: an error naming cairn's limit,
    // before anything is allocated.
    let reply = c.q(&["SETRANGE", "s", "268435456", "A"]);
    assert_eq!(
        reply,
        err("ERR string exceeds maximum allowed size (cairn's limit of 268435456 bytes per value)")
    );
    assert_eq!(c.q(&["GET", "s"]), bulk("foo\0bar"));
    assert_eq!(c.q(&["GET", "missing"]), NIL);
    drop(c);
    server.stop();
}

#[test]
fn incr_decr_family() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["INCR", "novar"]), int(1));
    assert_eq!(c.q(&["GET", "novar"]), bulk("1"));
    assert_eq!(c.q(&["INCR", "novar"]), int(2));
    assert_eq!(c.q(&["SET", "novar", "100"]), "OK");
    assert_eq!(c.q(&["INCR", "novar"]), int(101));
    assert_eq!(c.q(&["DECR", "novar"]), int(100));
    assert_eq!(c.q(&["SET", "novar", "17179869184"]), "OK");
    assert_eq!(c.q(&["INCR", "novar"]), int(17_179_869_185));
    assert_eq!(c.q(&["SET", "novar", "17179869184"]), "OK");
    assert_eq!(
        c.q(&["INCRBY", "novar", "17179869184"]),
        int(34_359_738_368)
    );
    assert_eq!(c.q(&["SET", "novar", "17179869184"]), "OK");
    assert_eq!(c.q(&["DECRBY", "novar", "17179869185"]), int(-1));
    assert_eq!(c.q(&["DECR", "fresh"]), int(-1));
    for bad in [
        "    11", "11    ", "  11  ", "", "1.5", "abc", "+1", "01", "-0", "1\0",
    ] {
        assert_eq!(c.qb(&[b"SET", b"s", bad.as_bytes()]), "OK");
        assert_eq!(c.q(&["INCR", "s"]), NOT_INT, "{bad:?}");
        assert_eq!(c.q(&["INCRBY", "s", "1"]), NOT_INT, "{bad:?}");
        assert_eq!(c.q(&["INCRBY", "n", bad]), NOT_INT, "{bad:?}");
    }
    assert_eq!(c.q(&["GET", "n"]), NIL);
    let overflow = err("ERR increment or decrement would overflow");
    assert_eq!(c.q(&["SET", "x", "9223372036854775807"]), "OK");
    assert_eq!(c.q(&["INCR", "x"]), overflow);
    assert_eq!(c.q(&["GET", "x"]), bulk("9223372036854775807"));
    assert_eq!(c.q(&["SET", "x", "-9223372036854775808"]), "OK");
    assert_eq!(c.q(&["DECR", "x"]), overflow);
    assert_eq!(c.q(&["SET", "x", "0"]), "OK");
    assert_eq!(
        c.q(&["DECRBY", "x", "-9223372036854775808"]),
        err("ERR decrement would overflow")
    );
    assert_eq!(c.q(&["INCRBY", "x", "-9223372036854775808"]), int(i64::MIN));
    assert_eq!(c.q(&["SET", "x", "-1"]), "OK");
    assert_eq!(c.q(&["DECRBY", "x", "9223372036854775807"]), int(i64::MIN));
    assert_eq!(c.q(&["DECRBY", "x", "9223372036854775807"]), overflow);
    assert_eq!(c.q(&["INCRBY", "x", "9223372036854775808"]), NOT_INT);
    // INCR keeps the TTL.
    assert_eq!(c.q(&["SET", "t", "5", "ex", "100"]), "OK");
    let before = stored(&server, "t").expect("t").1;
    assert!(before.is_some());
    assert_eq!(c.q(&["INCRBY", "t", "5"]), int(10));
    assert_eq!(stored(&server, "t").expect("t"), (b"10".to_vec(), before));
    assert_eq!(
        c.q(&["INCR", "a", "b"]),
        err("ERR wrong number of arguments for 'incr' command")
    );
    drop(c);
    server.stop();
}

#[test]
fn incrbyfloat_matches_redis_digits() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["INCRBYFLOAT", "novar", "1"]), bulk("1"));
    assert_eq!(c.q(&["GET", "novar"]), bulk("1"));
    assert_eq!(c.q(&["INCRBYFLOAT", "novar", "0.25"]), bulk("1.25"));
    assert_eq!(c.q(&["GET", "novar"]), bulk("1.25"));
    // Each expected text is what redis-server 7.0 replied.
    for (start, incr, want) in [
        ("1.5", "1.5", "3"),
        ("17179869184", "1.5", "17179869185.5"),
        ("17179869184", "17179869184", "34359738368"),
        ("10.50", "0.1", "10.6"),
        ("5.0e3", "2.0e2", "5200"),
        ("1", "-1.1", "-0.1"),
        ("1e30", "1", "1000000000000000000024696061952"),
        ("0", "1e-17", "0.00000000000000001"),
        ("0", "1e-18", "0"),
        ("0", "-1e-20", "0"),
        ("0", "0x10", "16"),
        ("0", "0x1p3", "8"),
        ("0", ".5", "0.5"),
        ("0", "5.", "5"),
        ("0", "1E2", "100"),
        ("0", "+1", "1"),
        ("0", "3.0000000000000000001", "3"),
        ("0.024390243902439025", "-0.024390243902439025", "0"),
    ] {
        assert_eq!(c.q(&["SET", "f", start]), "OK");
        assert_eq!(
            c.q(&["INCRBYFLOAT", "f", incr]),
            bulk(want),
            "{start} + {incr}"
        );
        assert_eq!(c.q(&["GET", "f"]), bulk(want), "the stored text");
    }
    // Invalid numbers, in the key or the increment.
    for bad in [
        "    11", "11    ", " 11 ", "nan", "abc", "", "1e5000", "1e-5000", "0x", "1e",
    ] {
        assert_eq!(c.q(&["SET", "s", bad]), "OK");
        assert_eq!(c.q(&["INCRBYFLOAT", "s", "1.0"]), NOT_FLOAT, "{bad:?}");
        assert_eq!(c.q(&["INCRBYFLOAT", "fresh", bad]), NOT_FLOAT, "{bad:?}");
    }
    assert_eq!(c.q(&["GET", "fresh"]), NIL);
    // "1\02": the text stops at the NUL, so it is not a number.
    assert_eq!(c.q(&["SET", "foo", "1"]), "OK");
    assert_eq!(c.q(&["SETRANGE", "foo", "2", "2"]), int(3));
    assert_eq!(c.q(&["INCRBYFLOAT", "foo", "1"]), NOT_FLOAT);
    let nan_inf = err("ERR increment would produce NaN or Infinity");
    assert_eq!(c.q(&["SET", "foo", "0"]), "OK");
    assert_eq!(c.q(&["INCRBYFLOAT", "foo", "+inf"]), nan_inf);
    assert_eq!(c.q(&["INCRBYFLOAT", "foo", "-Infinity"]), nan_inf);
    assert_eq!(c.q(&["SET", "foo", "1.1e4932"]), "OK");
    assert_eq!(c.q(&["INCRBYFLOAT", "foo", "1.1e4932"]), nan_inf);
    assert_eq!(c.q(&["GET", "foo"]), bulk("1.1e4932"));
    // Keeps the TTL.
    assert_eq!(c.q(&["SET", "t", "1", "ex", "100"]), "OK");
    let before = stored(&server, "t").expect("t").1;
    assert_eq!(c.q(&["INCRBYFLOAT", "t", "0.5"]), bulk("1.5"));
    assert_eq!(stored(&server, "t").expect("t"), (b"1.5".to_vec(), before));
    drop(c);
    server.stop();
}

#[test]
fn the_commands_inside_multi_exec() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SET", "s", "text"]), "OK");
    assert_eq!(c.q(&["MULTI"]), "OK");
    for cmd in [
        &["SET", "a", "1"][..],
        &["INCR", "a"],
        &["INCRBYFLOAT", "a", "0.5"],
        &["INCR", "s"],
        &["APPEND", "a", "x"],
        &["SET", "a", "v", "GET"],
        &["SETNX", "a", "w"],
        &["MSETNX", "b", "1", "c", "2"],
        &["MSETNX", "c", "3", "d", "4"],
        &["MGET", "a", "b", "c", "d"],
        &["GETEX", "a", "px", "100000"],
        &["SETRANGE", "a", "1", "ZZ"],
        &["GETDEL", "b"],
        &["SET", "e", "v", "ex", "0"],
        &["GETRANGE", "a", "0", "-1"],
        &["STRLEN", "a"],
    ] {
        assert_eq!(c.q(cmd), "QUEUED", "{cmd:?}");
    }
    assert_eq!(
        c.q(&["EXEC"]),
        format!(
            "[OK, {}, {}, {NOT_INT}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}]",
            int(2),
            bulk("2.5"),
            int(4),
            bulk("2.5x"),
            int(0),
            int(1),
            int(0),
            r#"["v", "1", "2", (nil)]"#,
            bulk("v"),
            int(3),
            bulk("1"),
            err("ERR invalid expire time in 'set' command"),
            bulk("vZZ"),
            int(3),
        )
    );
    assert_eq!(
        c.q(&["MGET", "a", "b", "c", "d", "e", "s"]),
        r#"["vZZ", (nil), "2", (nil), (nil), "text"]"#
    );
    let left = ttl_ms(&server, "a").expect("ttl");
    assert!((90_000..=100_000).contains(&left), "{left}");
    // A wrong arity inside MULTI aborts the transaction.
    assert_eq!(c.q(&["MULTI"]), "OK");
    assert_eq!(c.q(&["SET", "x", "1"]), "QUEUED");
    assert_eq!(
        c.q(&["MSET", "x"]),
        err("ERR wrong number of arguments for 'mset' command")
    );
    assert_eq!(
        c.q(&["EXEC"]),
        err("EXECABORT Transaction discarded because of previous errors.")
    );
    assert_eq!(c.q(&["GET", "x"]), NIL);
    // MSET with an odd count passes the table's arity, is queued, and fails
    // alone at EXEC without touching the others.
    assert_eq!(c.q(&["MULTI"]), "OK");
    assert_eq!(c.q(&["MSET", "x", "1", "y"]), "QUEUED");
    assert_eq!(c.q(&["SET", "z", "1"]), "QUEUED");
    assert_eq!(
        c.q(&["EXEC"]),
        format!(
            "[{}, OK]",
            err("ERR wrong number of arguments for 'mset' command")
        )
    );
    assert_eq!(c.q(&["MGET", "x", "y", "z"]), r#"[(nil), (nil), "1"]"#);
    drop(c);
    server.stop();
}

#[test]
fn read_commands_count_hits_and_misses() {
    use std::sync::atomic::Ordering;
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    let stats = &server.shared.stats;
    assert_eq!(c.q(&["SET", "k", "v"]), "OK");
    let (h0, m0) = (
        stats.keyspace_hits.load(Ordering::Relaxed),
        stats.keyspace_misses.load(Ordering::Relaxed),
    );
    assert_eq!(c.q(&["MGET", "k", "nope", "k"]), r#"["v", (nil), "v"]"#);
    assert_eq!(c.q(&["GET", "nope"]), NIL);
    assert_eq!(stats.keyspace_hits.load(Ordering::Relaxed) - h0, 2);
    assert_eq!(stats.keyspace_misses.load(Ordering::Relaxed) - m0, 2);
    drop(c);
    server.stop();
}

/// Debian's redis-server 7.0 on a free loopback port, killed (by its pid)
/// when dropped.
struct RealRedis {
    child: Child,
    port: u16,
}

impl RealRedis {
    /// `None` when no redis-server 7.0 is installed.
    fn start() -> Option<RealRedis> {
        let version = Command::new("redis-server")
            .arg("--version")
            .output()
            .ok()?;
        if !String::from_utf8_lossy(&version.stdout).contains("v=7.0.") {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        let redis = RealRedis { child, port };
        for _ in 0..200 {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            sleep(Duration::from_millis(25));
        }
        None
    }

    fn conn(&self) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis-server");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Conn::over(s)
    }
}

impl Drop for RealRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A xorshift generator: the same commands on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const KEYS: [&str; 3] = ["a", "b", "c"];
const VALUES: &[&str] = &[
    "1",
    "-5",
    "0",
    "",
    "abc",
    "10.5",
    "1e3",
    "1e30",
    "0.1",
    "-0.0",
    "1.5e-5",
    "\u{0}\u{1}",
    "17179869184",
    "-1.1",
    ".5",
    "5.",
    "9223372036854775807",
    "-9223372036854775808",
    " 1",
    "0x10",
    "inf",
    "x y",
    "007",
    "-0",
    "3.14",
];
const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "-3",
    "100",
    "abc",
    "",
    "1.5",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967297",
    "+1",
    "01",
];
const OPTIONS: &[&str] = &[
    "nx", "xx", "get", "keepttl", "ex", "px", "exat", "pxat", "persist", "EX", "Get", "bogus",
];
/// Expiry arguments whose outcome does not depend on timing: relative
/// times are long or invalid, absolute ones far or in the past.
const TIMES: &[&str] = &[
    "100000",
    "100000",
    "100000",
    "0",
    "-1",
    "abc",
    "9223372036854775",
    "9223372036854775807",
];
const COMMANDS: &[&str] = &[
    "get",
    "set",
    "setnx",
    "setex",
    "psetex",
    "mget",
    "mset",
    "msetnx",
    "getset",
    "getdel",
    "getex",
    "append",
    "strlen",
    "getrange",
    "substr",
    "setrange",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
];

/// Up to `max` random options of SET or GETEX, each expiry option usually
/// with an argument.
fn random_options(rng: &mut Rng, max: u64, args: &mut Vec<String>) {
    for _ in 0..rng.next() % (max + 1) {
        let opt = rng.pick(OPTIONS);
        args.push(opt.into());
        let lower = opt.to_ascii_lowercase();
        if ["ex", "px", "exat", "pxat"].contains(&lower.as_str()) && !rng.next().is_multiple_of(8) {
            let t = rng.pick(TIMES);
            let t = if lower.ends_with("at") && t == "100000" {
                "1"
            } else {
                t
            };
            args.push(t.into());
        }
    }
}

/// A random string command over three keys.
fn random_command(rng: &mut Rng) -> Vec<String> {
    let name = rng.pick(COMMANDS);
    let mut args = vec![name.to_string(), rng.pick(&KEYS).to_string()];
    match name {
        "set" => {
            args.push(rng.pick(VALUES).into());
            random_options(rng, 3, &mut args);
        }
        "getex" => random_options(rng, 2, &mut args),
        "setnx" | "getset" | "append" | "incrbyfloat" => args.push(rng.pick(VALUES).into()),
        "setex" | "psetex" => {
            args.push(rng.pick(TIMES).into());
            args.push(rng.pick(VALUES).into());
        }
        "mget" => {
            for _ in 0..rng.next() % 4 {
                args.push(rng.pick(&KEYS).into());
            }
        }
        "mset" | "msetnx" => {
            for j in 0..rng.next() % 5 {
                let from = if j.is_multiple_of(2) {
                    VALUES
                } else {
                    &KEYS[..]
                };
                args.push(rng.pick(from).into());
            }
        }
        "getrange" | "substr" => {
            args.push(rng.pick(INTS).into());
            args.push(rng.pick(INTS).into());
        }
        "setrange" => {
            args.push(rng.pick(&["0", "1", "3", "10", "-1", "abc"]).into());
            args.push(rng.pick(VALUES).into());
        }
        "incrby" | "decrby" => args.push(rng.pick(INTS).into()),
        _ => {}
    }
    args
}

/// The values and TTLs (in whole seconds, -1 none, -2 missing) of the
/// three keys, on cairn and on Redis (whose expiries past cairn's latest
/// count as that).
fn states(server: &TestServer, ours: &mut Conn, real: &mut Conn) -> (String, String) {
    let mut o = ours.q(&["MGET", "a", "b", "c"]);
    let mut r = real.q(&["MGET", "a", "b", "c"]);
    for key in KEYS {
        let mine = match stored(server, key) {
            None => -2,
            Some((_, None)) => -1,
            Some((_, Some(at))) => (at.saturating_sub(now_ms()) / 1000) as i64,
        };
        let pttl: i64 = real
            .q(&["PTTL", key])
            .trim_start_matches("(integer) ")
            .parse()
            .expect("PTTL");
        // cairn keeps expiries up to 2^48 ms (the year 10889): a later
        // one of Redis's is kept as that.
        let pttl =
            pttl.min(i64::try_from(cairn::MAX_EXPIRY_MS.saturating_sub(now_ms())).unwrap_or(0));
        let theirs = if pttl >= 0 { pttl / 1000 } else { pttl };
        // A second boundary may fall between the two readings.
        let theirs = if (mine - theirs).abs() <= 1 {
            mine
        } else {
            theirs
        };
        o.push_str(&format!(" {key}:{mine}"));
        r.push_str(&format!(" {key}:{theirs}"));
    }
    (o, r)
}

/// Random string commands, alone and inside MULTI/EXEC, give the same
/// replies, values and TTLs on cairn as on redis-server 7.0. Skipped when
/// redis-server 7.0 is not installed.
#[test]
fn random_commands_match_redis_server_7_0() {
    let Some(redis) = RealRedis::start() else {
        eprintln!("skipped: no redis-server 7.0 on this machine");
        return;
    };
    let server = TestServer::start();
    let mut ours = Conn::new(&server);
    let mut real = redis.conn();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..6000 {
        let args = random_command(&mut rng);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let batch: Vec<&[&str]> = if i % 3 == 2 {
            vec![&["MULTI"], &args, &["INCR", "c"], &args, &["EXEC"]]
        } else {
            vec![&args]
        };
        for cmd in batch {
            assert_eq!(ours.q(cmd), real.q(cmd), "command {i}: {cmd:?}");
        }
        let (o, r) = states(&server, &mut ours, &mut real);
        assert_eq!(o, r, "state after command {i}: {args:?}");
    }
    drop(ours);
    server.stop();
}

/// SETBIT and GETBIT, as Redis 7.0's unit/type/string tests them and with
/// the error texts of redis-server 7.0.15.
#[test]
fn setbit_and_getbit() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["SETBIT", "k", "1", "1"]), int(0));
    assert_eq!(c.q(&["GET", "k"]), bulk("@"));
    assert_eq!(c.q(&["SETBIT", "k", "1", "1"]), int(1));
    assert_eq!(c.q(&["SETBIT", "k", "1", "0"]), int(1));
    assert_eq!(c.q(&["GET", "k"]), bulk("\0"));
    // Clearing a bit of a missing key still creates it, zero-filled.
    assert_eq!(c.q(&["SETBIT", "z", "100", "0"]), int(0));
    assert_eq!(c.q(&["STRLEN", "z"]), int(13));
    assert_eq!(c.q(&["SET", "s", "`"]), "OK");
    for (bit, want) in [(0, 0), (1, 1), (2, 1), (3, 0), (8, 0), (100, 0), (10000, 0)] {
        assert_eq!(
            c.q(&["GETBIT", "s", &bit.to_string()]),
            int(want),
            "bit {bit}"
        );
    }
    assert_eq!(c.q(&["SETBIT", "s", "2", "0"]), int(1));
    assert_eq!(c.q(&["SETBIT", "s", "7", "1"]), int(0));
    assert_eq!(c.q(&["GET", "s"]), bulk("A"));
    assert_eq!(c.q(&["GETBIT", "missing", "5"]), int(0));
    // Keeps the TTL.
    assert_eq!(c.q(&["SET", "t", "a", "px", "100000"]), "OK");
    let before = stored(&server, "t").expect("t").1;
    assert_eq!(c.q(&["SETBIT", "t", "6", "1"]), int(0));
    assert_eq!(stored(&server, "t").expect("t"), (b"c".to_vec(), before));
    // Errors.
    let offset = err("ERR bit offset is not an integer or out of range");
    for bad in ["-1", "x", "+1", "01", "4294967296"] {
        assert_eq!(c.q(&["SETBIT", "k", bad, "1"]), offset, "{bad}");
        assert_eq!(c.q(&["GETBIT", "k", bad]), offset, "{bad}");
    }
    let bit = err("ERR bit is not an integer or out of range");
    for bad in ["-1", "2", "10", "x", "+1", "01"] {
        assert_eq!(c.q(&["SETBIT", "k", "0", bad]), bit, "{bad}");
    }
    assert_eq!(
        c.q(&["SETBIT", "k"]),
        err("ERR wrong number of arguments for 'setbit' command")
    );
    // proto-max-bulk-len bounds the offset's byte, as in Redis.
    assert_eq!(c.q(&["CONFIG", "SET", "proto-max-bulk-len", "1mb"]), "OK");
    assert_eq!(c.q(&["SETBIT", "k", "8388608", "1"]), offset);
    assert_eq!(c.q(&["GETBIT", "k", "8388608"]), offset);
    assert_eq!(c.q(&["SETBIT", "k", "8388607", "1"]), int(0));
    assert_eq!(c.q(&["STRLEN", "k"]), int(1 << 20));
    drop(c);
    server.stop();
}

/// LCS with each option, as Redis 7.0's documentation and unit tests run
/// it; the replies were taken from redis-server 7.0.15.
#[test]
fn lcs() {
    let server = TestServer::start();
    let mut c = Conn::new(&server);
    assert_eq!(c.q(&["MSET", "a", "ohmytext", "b", "mynewtext"]), "OK");
    assert_eq!(c.q(&["LCS", "a", "b"]), bulk("mytext"));
    assert_eq!(c.q(&["LCS", "a", "b", "LEN"]), int(6));
    assert_eq!(c.q(&["LCS", "a", "b", "LEN", "WITHMATCHLEN"]), int(6));
    assert_eq!(
        c.q(&["LCS", "a", "b", "IDX"]),
        "[\"matches\", [[[(integer) 4, (integer) 7], [(integer) 5, (integer) 8]], \
         [[(integer) 2, (integer) 3], [(integer) 0, (integer) 1]]], \"len\", (integer) 6]"
    );
    assert_eq!(
        c.q(&["LCS", "a", "b", "IDX", "MINMATCHLEN", "4", "WITHMATCHLEN"]),
        "[\"matches\", [[[(integer) 4, (integer) 7], [(integer) 5, (integer) 8], \
         (integer) 4]], \"len\", (integer) 6]"
    );
    assert_eq!(
        c.q(&["LCS", "a", "b", "idx", "minmatchlen", "-5", "withmatchlen"]),
        "[\"matches\", [[[(integer) 4, (integer) 7], [(integer) 5, (integer) 8], \
         (integer) 4], [[(integer) 2, (integer) 3], [(integer) 0, (integer) 1], \
         (integer) 2]], \"len\", (integer) 6]"
    );
    assert_eq!(c.q(&["LCS", "a", "missing"]), bulk(""));
    assert_eq!(c.q(&["LCS", "x", "y", "LEN"]), int(0));
    assert_eq!(
        c.q(&["LCS", "a", "b", "LEN", "IDX"]),
        err("ERR If you want both the length and indexes, please just use IDX.")
    );
    assert_eq!(c.q(&["LCS", "a", "b", "foo"]), SYNTAX);
    assert_eq!(c.q(&["LCS", "a", "b", "MINMATCHLEN"]), SYNTAX);
    assert_eq!(c.q(&["LCS", "a", "b", "MINMATCHLEN", "x"]), NOT_INT);
    assert_eq!(
        c.q(&["LCS", "a"]),
        err("ERR wrong number of arguments for 'lcs' command")
    );
    // The table it needs is bounded by proto-max-bulk-len, as in Redis.
    assert_eq!(c.q(&["CONFIG", "SET", "proto-max-bulk-len", "1mb"]), "OK");
    let long = "a".repeat(600);
    assert_eq!(c.q(&["SET", "long", &long]), "OK");
    assert_eq!(
        c.q(&["LCS", "long", "long", "LEN"]),
        err("ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len")
    );
    drop(c);
    server.stop();
}
