//! The connection and server commands through the real server: HELLO and
//! RESP3, AUTH and NOAUTH, RESET, CLIENT, INFO, CONFIG, COMMAND, TIME,
//! SAVE and BGSAVE, FUNCTION FLUSH and SHUTDOWN, with Redis 7.0's replies.

mod common;

use std::time::{Duration, Instant};

use cairn_server::config::Config;
use common::{cmd, Raw, TestServer};

/// Sends one command and reads what arrives within a short wait (enough
/// for a local server), as text.
fn ask(raw: &mut Raw, args: &[&str]) -> String {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    raw.send(&cmd(&args));
    read_reply(raw)
}

/// Reads one complete reply (of any RESP type) from `raw`.
fn read_reply(raw: &mut Raw) -> String {
    use std::io::Read;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if complete(&got).is_some() {
            break;
        }
        match raw.0.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// The length of the first complete RESP value in `b`, if it is all there.
fn complete(b: &[u8]) -> Option<usize> {
    let end = b.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&b[1..end]).ok()?;
    let after = end + 2;
    match b.first()? {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' => Some(after),
        b'$' | b'=' => {
            let n: i64 = head.parse().ok()?;
            if n < 0 {
                return Some(after);
            }
            let n = usize::try_from(n).ok()?;
            (b.len() >= after + n + 2).then_some(after + n + 2)
        }
        b'*' | b'~' | b'%' => {
            let n: i64 = head.parse().ok()?;
            let items = if b[0] == b'%' { 2 * n } else { n };
            let mut at = after;
            for _ in 0..items.max(0) {
                at += complete(&b[at..])?;
            }
            Some(at)
        }
        _ => None,
    }
}

fn q<T: redis::FromRedisValue>(c: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<T> {
    let mut command = redis::cmd(args[0]);
    for a in &args[1..] {
        command.arg(*a);
    }
    command.query(c)
}

fn err_text(e: &redis::RedisError) -> String {
    // The redis crate splits the code from the message; put them back.
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        (Some(code), None) => code.to_string(),
        _ => e.to_string(),
    }
}

fn with_password() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::new(dir.path());
    config.requirepass = Some("secret".into());
    let mut s = TestServer::start_with(config);
    s.dir = Some(dir);
    s
}

const HELLO_NOAUTH: &str = "-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";
const WRONGPASS: &str = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";

#[test]
fn ping_echo_select_quit() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(ask(&mut raw, &["PING"]), "+PONG\r\n");
    assert_eq!(ask(&mut raw, &["ping", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(
        ask(&mut raw, &["PING", "a", "b"]),
        "-ERR wrong number of arguments for 'ping' command\r\n"
    );
    assert_eq!(ask(&mut raw, &["ECHO", "x y"]), "$3\r\nx y\r\n");
    assert_eq!(
        ask(&mut raw, &["ECHO"]),
        "-ERR wrong number of arguments for 'echo' command\r\n"
    );
    assert_eq!(ask(&mut raw, &["SELECT", "15"]), "+OK\r\n");
    assert_eq!(
        ask(&mut raw, &["SELECT", "16"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["SELECT", "-1"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["SELECT", "a"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    // Past a C int, Redis's own text (redis-server 7.0.15).
    assert_eq!(
        ask(&mut raw, &["SELECT", "4294967296"]),
        "-ERR value is out of range, value must between -2147483648 and 2147483647\r\n"
    );
    raw.send(&cmd(&[b"QUIT", b"x"]));
    assert_eq!(raw.read_to_close(), "+OK\r\n");
}

#[test]
fn auth_without_a_password_is_redis_nopass_user() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert_eq!(
        ask(&mut raw, &["AUTH", "x"]),
        "-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n"
    );
    // Redis's default user is `nopass`: any password is accepted for it.
    assert_eq!(ask(&mut raw, &["AUTH", "default", "x"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["AUTH", "other", "x"]), WRONGPASS);
    assert_eq!(
        ask(&mut raw, &["AUTH", "a", "b", "c"]),
        "-ERR syntax error\r\n"
    );
    let hello = ask(&mut raw, &["HELLO", "3", "AUTH", "default", "whatever"]);
    assert!(hello.starts_with("%7\r\n"), "{hello}");
}

#[test]
fn auth_and_noauth_with_a_password() {
    let server = with_password();
    let mut raw = server.raw();
    assert_eq!(
        ask(&mut raw, &["GET", "a"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(ask(&mut raw, &["HELLO"]), HELLO_NOAUTH);
    assert_eq!(ask(&mut raw, &["HELLO", "3"]), HELLO_NOAUTH);
    assert_eq!(ask(&mut raw, &["HELLO", "3", "SETNAME", "a"]), HELLO_NOAUTH);
    assert_eq!(ask(&mut raw, &["AUTH", "wrong"]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["AUTH", "default", "wrong"]), WRONGPASS);
    assert_eq!(ask(&mut raw, &["AUTH", "bob", "secret"]), WRONGPASS);
    assert_eq!(
        ask(&mut raw, &["HELLO", "3", "AUTH", "default", "wrong"]),
        WRONGPASS
    );
    assert_eq!(
        ask(&mut raw, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    // HELLO with AUTH authenticates and switches to RESP3 at once.
    let hello = ask(
        &mut raw,
        &["HELLO", "3", "AUTH", "default", "secret", "SETNAME", "w1"],
    );
    assert!(hello.starts_with("%7\r\n"), "{hello}");
    assert_eq!(ask(&mut raw, &["GET", "missing"]), "_\r\n");
    assert_eq!(ask(&mut raw, &["CLIENT", "GETNAME"]), "$2\r\nw1\r\n");
    // RESET logs out when a password is set, and is allowed before AUTH.
    assert_eq!(ask(&mut raw, &["RESET"]), "+RESET\r\n");
    assert_eq!(
        ask(&mut raw, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(ask(&mut raw, &["RESET"]), "+RESET\r\n");
    assert_eq!(ask(&mut raw, &["AUTH", "secret"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["GET", "missing"]), "$-1\r\n");

    // The redis crate authenticates from the URL.
    let url = format!("redis://:secret@{}/", server.addr);
    let mut c = redis::Client::open(url)
        .expect("client")
        .get_connection()
        .expect("connect");
    let pong: String = q(&mut c, &["PING"]).expect("ping");
    assert_eq!(pong, "PONG");
}

#[test]
fn hello_replies_as_redis_7() {
    let server = TestServer::start();
    let mut raw = server.raw();
    let id = ask(&mut raw, &["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim_end();
    let resp2 = format!(
        "*14\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    );
    assert_eq!(ask(&mut raw, &["HELLO"]), resp2);
    assert_eq!(ask(&mut raw, &["HELLO", "2"]), resp2);
    assert_eq!(
        ask(&mut raw, &["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["HELLO", "1"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["HELLO", "abc"]),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["HELLO", "3", "FOO"]),
        "-ERR Syntax error in HELLO option 'FOO'\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["HELLO", "3", "AUTH", "default"]),
        "-ERR Syntax error in HELLO option 'AUTH'\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["HELLO", "3", "SETNAME", "a b"]),
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    // A failed HELLO leaves the protocol as it was.
    assert_eq!(ask(&mut raw, &["GET", "nope"]), "$-1\r\n");
    let resp3 = format!(
        "%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:{id}\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n"
    );
    assert_eq!(ask(&mut raw, &["HELLO", "3"]), resp3);
    // RESP3 from then on: nulls, maps, verbatim strings.
    assert_eq!(ask(&mut raw, &["GET", "nope"]), "_\r\n");
    assert_eq!(
        ask(&mut raw, &["CONFIG", "GET", "databases"]),
        "%1\r\n$9\r\ndatabases\r\n$2\r\n16\r\n"
    );
    let info = ask(&mut raw, &["INFO", "server"]);
    assert!(info.starts_with('='), "{info}");
    assert!(
        info.contains("\r\ntxt:# Server\r\nredis_version:7.0.15\r\n"),
        "{info}"
    );
    let list = ask(&mut raw, &["CLIENT", "LIST"]);
    assert!(list.starts_with('=') && list.contains("txt:id="), "{list}");
    let info = ask(&mut raw, &["COMMAND", "INFO", "get"]);
    assert!(
        info.starts_with("*1\r\n*10\r\n$3\r\nget\r\n:2\r\n~2\r\n+readonly\r\n+fast\r\n"),
        "{info}"
    );
    // HELLO 2 goes back.
    assert_eq!(ask(&mut raw, &["HELLO", "2"]), resp2);
    assert_eq!(ask(&mut raw, &["GET", "nope"]), "$-1\r\n");
}

#[test]
fn reset_returns_to_a_fresh_connection() {
    let server = TestServer::start();
    let mut raw = server.raw();
    assert!(ask(&mut raw, &["HELLO", "3", "SETNAME", "n"]).starts_with('%'));
    assert_eq!(ask(&mut raw, &["SELECT", "2"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["WATCH", "k"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["MULTI"]), "+OK\r\n");
    assert_eq!(ask(&mut raw, &["SET", "k", "v"]), "+QUEUED\r\n");
    assert_eq!(ask(&mut raw, &["RESET"]), "+RESET\r\n");
    // RESP2 again, no transaction, database 0, no name.
    assert_eq!(ask(&mut raw, &["GET", "k"]), "$-1\r\n");
    assert_eq!(ask(&mut raw, &["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(ask(&mut raw, &["CLIENT", "GETNAME"]), "$-1\r\n");
    let me = ask(&mut raw, &["CLIENT", "INFO"]);
    assert!(
        me.contains(" db=0 ") && me.contains(" multi=-1 ") && me.contains(" resp=2 "),
        "{me}"
    );
    assert_eq!(ask(&mut raw, &["SELECT", "2"]), "+OK\r\n");
    assert_eq!(
        ask(&mut raw, &["GET", "k"]),
        "$-1\r\n",
        "the queued SET never ran"
    );
}

#[test]
fn client_id_names_and_info() {
    let server = TestServer::start();
    let mut c = server.client();
    let id: i64 = q(&mut c, &["CLIENT", "ID"]).expect("id");
    assert!(id > 0);
    let name: Option<String> = q(&mut c, &["CLIENT", "GETNAME"]).expect("getname");
    assert_eq!(name, None);
    let _: () = q(&mut c, &["CLIENT", "SETNAME", "worker-1"]).expect("setname");
    let name: Option<String> = q(&mut c, &["CLIENT", "GETNAME"]).expect("getname");
    assert_eq!(name.as_deref(), Some("worker-1"));
    for bad in ["a b", "a\nb", "é"] {
        let e = q::<()>(&mut c, &["CLIENT", "SETNAME", bad]).expect_err(bad);
        assert_eq!(
            err_text(&e),
            "ERR Client names cannot contain spaces, newlines or special characters."
        );
    }
    let _: () = q(&mut c, &["CLIENT", "SETNAME", ""]).expect("clear");
    let name: Option<String> = q(&mut c, &["CLIENT", "GETNAME"]).expect("getname");
    assert_eq!(name, None);
    let _: () = q(&mut c, &["CLIENT", "SETINFO", "LIB-NAME", "mylib"]).expect("lib-name");
    let _: () = q(&mut c, &["CLIENT", "SETINFO", "lib-ver", "1.2.3"]).expect("lib-ver");
    let e = q::<()>(&mut c, &["CLIENT", "SETINFO", "foo", "x"]).expect_err("foo");
    assert_eq!(err_text(&e), "ERR Unrecognized option 'foo'");
    let e = q::<()>(&mut c, &["CLIENT", "SETINFO", "lib-name", "a b"]).expect_err("space");
    assert_eq!(
        err_text(&e),
        "ERR lib-name cannot contain spaces, newlines or special characters."
    );
    let e = q::<()>(&mut c, &["CLIENT", "ID", "x"]).expect_err("arity");
    assert_eq!(
        err_text(&e),
        "ERR wrong number of arguments for 'client|id' command"
    );
    let e = q::<()>(&mut c, &["CLIENT", "SETNAME"]).expect_err("arity");
    assert_eq!(
        err_text(&e),
        "ERR wrong number of arguments for 'client|setname' command"
    );
    let e = q::<()>(&mut c, &["CLIENT", "foo", "bar"]).expect_err("unknown");
    assert_eq!(
        err_text(&e),
        "ERR unknown subcommand 'foo'. Try CLIENT HELP."
    );
    let e = q::<()>(&mut c, &["CLIENT"]).expect_err("arity");
    assert_eq!(
        err_text(&e),
        "ERR wrong number of arguments for 'client' command"
    );
    let help: Vec<String> = q(&mut c, &["CLIENT", "HELP"]).expect("help");
    assert!(help[0].starts_with("CLIENT <subcommand>"));

    let _: () = q(&mut c, &["SELECT", "3"]).expect("select");
    let me: String = q(&mut c, &["CLIENT", "INFO"]).expect("info");
    let fields: Vec<&str> = me
        .trim_end()
        .split(' ')
        .map(|f| f.split('=').next().unwrap_or(""))
        .collect();
    assert_eq!(
        fields,
        [
            "id",
            "addr",
            "laddr",
            "fd",
            "name",
            "age",
            "idle",
            "flags",
            "db",
            "sub",
            "psub",
            "ssub",
            "multi",
            "qbuf",
            "qbuf-free",
            "argv-mem",
            "multi-mem",
            "rbs",
            "rbp",
            "obl",
            "oll",
            "omem",
            "tot-mem",
            "events",
            "cmd",
            "user",
            "redir",
            "resp",
            "lib-name",
            "lib-ver"
        ]
    );
    assert!(me.starts_with(&format!("id={id} addr=127.0.0.1:")), "{me}");
    assert!(me.contains(&format!(" laddr={} ", server.addr)), "{me}");
    for want in [
        " name= ",
        " flags=N ",
        " db=3 ",
        " multi=-1 ",
        " cmd=client|info ",
        " user=default ",
        " resp=2 ",
        " lib-name=mylib ",
        " lib-ver=1.2.3\n",
    ] {
        assert!(me.contains(want), "{want} in {me}");
    }
}

#[test]
fn client_list_shows_every_connection() {
    let server = TestServer::start();
    let mut a = server.client();
    let mut b = server.client();
    let a_id: i64 = q(&mut a, &["CLIENT", "ID"]).expect("id");
    let b_id: i64 = q(&mut b, &["CLIENT", "ID"]).expect("id");
    let _: () = q(&mut b, &["CLIENT", "SETNAME", "bee"]).expect("setname");
    let _: () = q(&mut b, &["SELECT", "5"]).expect("select");
    let _: () = q(&mut b, &["MULTI"]).expect("multi");
    let _: () = q(&mut b, &["PING"]).expect("queued");
    let list: String = q(&mut a, &["CLIENT", "LIST"]).expect("list");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines[0].starts_with(&format!("id={a_id} ")), "{list}");
    let bee = lines[1];
    assert!(bee.starts_with(&format!("id={b_id} ")), "{list}");
    for want in [
        " name=bee ",
        " db=5 ",
        " flags=x ",
        " multi=1 ",
        " cmd=ping ",
    ] {
        assert!(bee.contains(want), "{want} in {bee}");
    }
    let only_b: String = q(&mut a, &["CLIENT", "LIST", "ID", &b_id.to_string()]).expect("list id");
    assert_eq!(only_b.lines().count(), 1);
    assert!(only_b.starts_with(&format!("id={b_id} ")));
    let none: String = q(&mut a, &["CLIENT", "LIST", "TYPE", "pubsub"]).expect("list type");
    assert_eq!(none, "");
    let normal: String = q(&mut a, &["CLIENT", "LIST", "TYPE", "normal"]).expect("list type");
    assert_eq!(normal.lines().count(), 2);
    let e = q::<()>(&mut a, &["CLIENT", "LIST", "foo"]).expect_err("syntax");
    assert_eq!(err_text(&e), "ERR syntax error");
    let e = q::<()>(&mut a, &["CLIENT", "LIST", "TYPE", "foo"]).expect_err("type");
    assert_eq!(err_text(&e), "ERR Unknown client type 'foo'");
}

/// Waits until `raw`'s peer closes the connection; whether it did.
fn closed(raw: &mut Raw) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 64];
    matches!(raw.0.read(&mut buf), Ok(0))
}

#[test]
fn client_kill_closes_the_other_connection() {
    let server = TestServer::start();
    let mut killer = server.raw();
    // The old form: CLIENT KILL ip:port.
    let mut victim = server.raw();
    let addr = victim.0.local_addr().expect("addr").to_string();
    assert_eq!(ask(&mut victim, &["PING"]), "+PONG\r\n");
    assert_eq!(ask(&mut killer, &["CLIENT", "KILL", &addr]), "+OK\r\n");
    assert!(closed(&mut victim), "the killed connection closes");
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", &addr]),
        "-ERR No such client\r\n"
    );
    // The new form by ID, and by ADDR.
    let mut victim = server.raw();
    let id = ask(&mut victim, &["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim_end().to_string();
    assert_eq!(ask(&mut killer, &["CLIENT", "KILL", "ID", &id]), ":1\r\n");
    assert!(closed(&mut victim));
    assert_eq!(ask(&mut killer, &["CLIENT", "KILL", "ID", &id]), ":0\r\n");
    let mut victim = server.raw();
    assert_eq!(ask(&mut victim, &["PING"]), "+PONG\r\n");
    let addr = victim.0.local_addr().expect("addr").to_string();
    assert_eq!(
        ask(
            &mut killer,
            &["CLIENT", "KILL", "ADDR", &addr, "SKIPME", "yes"]
        ),
        ":1\r\n"
    );
    assert!(closed(&mut victim));
    // LADDR matches every connection to the server's address; SKIPME
    // (default yes) spares the one asking.
    let mut victim = server.raw();
    assert_eq!(ask(&mut victim, &["PING"]), "+PONG\r\n");
    let laddr = server.addr.to_string();
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", "LADDR", &laddr]),
        ":1\r\n"
    );
    assert!(closed(&mut victim));
    assert_eq!(ask(&mut killer, &["PING"]), "+PONG\r\n");
    // Errors as Redis.
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", "ID", "x"]),
        "-ERR client-id should be greater than 0\r\n"
    );
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", "FOO", "x"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        ask(
            &mut killer,
            &["CLIENT", "KILL", "ID", "1", "SKIPME", "maybe"]
        ),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", "USER", "x"]),
        "-ERR No such user 'x'\r\n"
    );
    // SKIPME no kills the one asking too, after its reply.
    let me = ask(&mut killer, &["CLIENT", "ID"]);
    let me = me.trim_start_matches(':').trim_end().to_string();
    assert_eq!(
        ask(&mut killer, &["CLIENT", "KILL", "ID", &me, "SKIPME", "no"]),
        ":1\r\n"
    );
    assert!(closed(&mut killer));
}

fn info_fields(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split(':').next())
        .map(str::to_string)
        .collect()
}

/// Fields INFO must have, by Redis's names (and cairn's own).
const INFO_FIELDS: &[&str] = &[
    "redis_version",
    "cairn_version",
    "redis_mode",
    "os",
    "arch_bits",
    "process_id",
    "run_id",
    "tcp_port",
    "uptime_in_seconds",
    "uptime_in_days",
    "executable",
    "config_file",
    "connected_clients",
    "maxclients",
    "blocked_clients",
    "used_memory",
    "used_memory_human",
    "used_memory_rss",
    "maxmemory",
    "maxmemory_policy",
    "mem_allocator",
    "loading",
    "rdb_last_save_time",
    "rdb_bgsave_in_progress",
    "aof_enabled",
    "aof_last_write_status",
    "cairn_sync",
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "rejected_connections",
    "expired_keys",
    "keyspace_hits",
    "keyspace_misses",
    "role",
    "used_cpu_sys",
    "used_cpu_user",
    "cluster_enabled",
    "db0",
    "db2",
];

#[test]
fn info_sections_and_field_names() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "a", "1"]).expect("set");
    let _: () = q(&mut c, &["SELECT", "2"]).expect("select");
    let _: () = q(&mut c, &["SET", "b", "1"]).expect("set");
    let _: () = q(&mut c, &["SET", "c", "1"]).expect("set");
    let all: String = q(&mut c, &["INFO"]).expect("info");
    let titles: Vec<&str> = all.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(
        titles,
        [
            "# Server",
            "# Clients",
            "# Memory",
            "# Persistence",
            "# Stats",
            "# Replication",
            "# CPU",
            "# Cluster",
            "# Keyspace"
        ]
    );
    assert!(
        all.contains("\r\n\r\n# Clients\r\n"),
        "sections are separated by a blank line"
    );
    let fields = info_fields(&all);
    for want in INFO_FIELDS {
        assert!(fields.iter().any(|f| f == want), "{want} in {all}");
    }
    let value = |name: &str| -> String {
        all.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(value("redis_version"), "7.0.15");
    assert_eq!(value("redis_mode"), "standalone");
    assert_eq!(value("tcp_port"), server.addr.port().to_string());
    assert_eq!(value("process_id"), std::process::id().to_string());
    assert_eq!(value("connected_clients"), "1");
    assert_eq!(value("maxclients"), "10000");
    assert_eq!(value("aof_enabled"), "1");
    assert_eq!(value("aof_last_write_status"), "ok");
    assert_eq!(value("cairn_sync"), "always");
    assert_eq!(value("role"), "master");
    assert_eq!(value("run_id").len(), 40);
    assert!(value("used_memory").parse::<u64>().expect("used_memory") > 0);
    assert!(value("total_commands_processed").parse::<u64>().expect("n") >= 5);
    assert_eq!(value("db0"), "keys=1,expires=0,avg_ttl=0");
    assert_eq!(value("db2"), "keys=2,expires=0,avg_ttl=0");

    // Keys with a TTL count in `expires`. `avg_ttl` is 0: the counts come
    // from counters, without walking the keys (Redis's own is a sampled
    // estimate).
    let db0 = server.shared.store.db(0).expect("db0");
    db0.put_with_ttl("t1", "1", Duration::from_secs(100))
        .expect("ttl");
    db0.put_with_ttl("t2", "1", Duration::from_secs(200))
        .expect("ttl");
    let ks: String = q(&mut c, &["INFO", "keyspace"]).expect("info keyspace");
    let db0_line = ks.lines().nth(1).unwrap_or_default();
    assert_eq!(db0_line, "db0:keys=3,expires=2,avg_ttl=0", "{ks}");
    assert!(
        ks.starts_with("# Keyspace\r\n") && ks.contains("\r\ndb2:keys=2,"),
        "{ks}"
    );
    let two: String = q(&mut c, &["INFO", "SERVER", "clients"]).expect("two sections");
    let titles: Vec<&str> = two.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(titles, ["# Server", "# Clients"]);
    for everything in ["all", "default", "everything"] {
        let text: String = q(&mut c, &["INFO", everything]).expect("info");
        assert_eq!(
            text.lines().filter(|l| l.starts_with('#')).count(),
            9,
            "{everything}"
        );
    }
    let nothing: String = q(&mut c, &["INFO", "foo"]).expect("unknown section");
    assert_eq!(nothing, "");
}

#[test]
fn info_counts_keyspace_hits_and_misses() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "a", "1"]).expect("set");
    let counts = |c: &mut redis::Connection| -> (String, String) {
        let text: String = q(c, &["INFO", "stats"]).expect("info");
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap_or_default()
                .to_string()
        };
        (get("keyspace_hits"), get("keyspace_misses"))
    };
    assert_eq!(counts(&mut c), ("0".into(), "0".into()));
    let _: Option<String> = q(&mut c, &["GET", "a"]).expect("hit");
    let _: Option<String> = q(&mut c, &["GET", "a"]).expect("hit");
    let _: Option<String> = q(&mut c, &["GET", "b"]).expect("miss");
    assert_eq!(counts(&mut c), ("2".into(), "1".into()));
    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]).expect("resetstat");
    assert_eq!(counts(&mut c), ("0".into(), "0".into()));
}

#[test]
fn config_get_and_set() {
    let server = TestServer::start();
    let mut c = server.client();
    let got: Vec<String> = q(
        &mut c,
        &[
            "CONFIG",
            "GET",
            "save",
            "appendonly",
            "appendfsync",
            "databases",
            "maxmemory",
        ],
    )
    .expect("get");
    let map: std::collections::HashMap<String, String> = got
        .chunks(2)
        .map(|p| (p[0].clone(), p[1].clone()))
        .collect();
    assert_eq!(map["save"], "");
    assert_eq!(map["appendonly"], "yes");
    assert_eq!(map["appendfsync"], "always");
    assert_eq!(map["databases"], "16");
    assert_eq!(map["maxmemory"], "0");
    let port: Vec<String> = q(&mut c, &["CONFIG", "GET", "port"]).expect("port");
    assert_eq!(port, ["port".to_string(), server.addr.port().to_string()]);
    let max: Vec<String> = q(&mut c, &["CONFIG", "GET", "*MAX*"]).expect("glob");
    let names: Vec<&String> = max.iter().step_by(2).collect();
    for want in [
        "maxclients",
        "proto-max-bulk-len",
        "maxmemory",
        "maxmemory-policy",
    ] {
        assert!(names.iter().any(|n| *n == want), "{want} in {names:?}");
    }
    let none: Vec<String> = q(&mut c, &["CONFIG", "GET", "nope"]).expect("none");
    assert!(none.is_empty());

    let _: () = q(
        &mut c,
        &["CONFIG", "SET", "maxclients", "100", "timeout", "300"],
    )
    .expect("set");
    let got: Vec<String> = q(&mut c, &["CONFIG", "GET", "maxclients", "timeout"]).expect("get");
    assert!(
        got.windows(2).any(|w| w == ["maxclients", "100"]),
        "{got:?}"
    );
    assert!(got.windows(2).any(|w| w == ["timeout", "300"]), "{got:?}");
    let _: () = q(&mut c, &["CONFIG", "SET", "proto-max-bulk-len", "2mb"]).expect("set");
    let got: Vec<String> = q(&mut c, &["CONFIG", "GET", "proto-max-bulk-len"]).expect("get");
    assert_eq!(got[1], (2 << 20).to_string());
    let _: () = q(&mut c, &["CONFIG", "SET", "save", "", "appendonly", "yes"]).expect("no-ops");
    let _: () = q(&mut c, &["CONFIG", "SET", "appendfsync", "always"]).expect("same mode");
}

#[test]
fn config_set_errors_as_redis() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "maxclients", "100"]).expect("set");

    for (args, want) in [
        (
            vec!["CONFIG", "SET", "foo", "bar"],
            "ERR Unknown option or number of arguments for CONFIG SET - 'foo'",
        ),
        (
            vec!["CONFIG", "SET", "maxclients"],
            "ERR wrong number of arguments for 'config|set' command",
        ),
        (vec!["CONFIG", "SET", "maxclients", "100", "timeout"], "ERR syntax error"),
        (
            vec!["CONFIG", "SET", "maxclients", "abc"],
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - argument couldn't be parsed into an integer",
        ),
        (
            vec!["CONFIG", "SET", "maxclients", "1", "maxclients", "2"],
            "ERR CONFIG SET failed (possibly related to argument 'maxclients') - duplicate parameter",
        ),
        (
            vec!["CONFIG", "SET", "timeout", "-1"],
            "ERR CONFIG SET failed (possibly related to argument 'timeout') - argument must be between 0 and 2147483647 inclusive",
        ),
        (
            vec!["CONFIG", "SET", "appendfsync", "foo"],
            "ERR CONFIG SET failed (possibly related to argument 'appendfsync') - argument(s) must be one of the following: everysec, always, no",
        ),
        (
            vec!["CONFIG", "SET", "databases", "3"],
            "ERR CONFIG SET failed (possibly related to argument 'databases') - can't set immutable config",
        ),
        (
            vec!["CONFIG", "SET", "proto-max-bulk-len", "1"],
            "ERR CONFIG SET failed (possibly related to argument 'proto-max-bulk-len') - argument must be between 1048576 and 9223372036854775807 inclusive",
        ),
        (vec!["CONFIG", "FOO"], "ERR unknown subcommand 'FOO'. Try CONFIG HELP."),
        (
            vec!["CONFIG", "GET"],
            "ERR wrong number of arguments for 'config|get' command",
        ),
    ] {
        let e = q::<()>(&mut c, &args).expect_err(want);
        assert_eq!(err_text(&e), want, "{args:?}");
    }
    let e = q::<()>(&mut c, &["CONFIG", "SET", "appendfsync", "everysec"]).expect_err("mode");
    assert!(
        err_text(&e).contains("cannot change its sync mode while running"),
        "{e}"
    );
    // A failed CONFIG SET changes nothing, not even its valid pairs.
    let _ = q::<()>(
        &mut c,
        &["CONFIG", "SET", "maxclients", "7", "timeout", "x"],
    );
    let got: Vec<String> = q(&mut c, &["CONFIG", "GET", "maxclients"]).expect("get");
    assert_eq!(got[1], "100");
    let e = q::<()>(&mut c, &["CONFIG", "REWRITE"]).expect_err("rewrite");
    assert!(
        err_text(&e).starts_with("ERR CONFIG REWRITE is not supported"),
        "{e}"
    );
}

#[test]
fn config_resetstat_and_requirepass() {
    let server = TestServer::start();
    let mut c = server.client();
    // RESETSTAT zeroes INFO's counters.
    let _: () = q(&mut c, &["CONFIG", "RESETSTAT"]).expect("resetstat");
    let stats: String = q(&mut c, &["INFO", "stats"]).expect("info");
    assert!(
        stats.contains("\r\ntotal_commands_processed:1\r\n"),
        "{stats}"
    );

    // requirepass applies to new connections at once.
    let _: () = q(&mut c, &["CONFIG", "SET", "requirepass", "pw"]).expect("requirepass");
    let mut other = server.raw();
    assert_eq!(
        ask(&mut other, &["PING"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(ask(&mut other, &["AUTH", "pw"]), "+OK\r\n");
    let pong: String = q(&mut c, &["PING"]).expect("still authenticated");
    assert_eq!(pong, "PONG");
    let _: () = q(&mut c, &["CONFIG", "SET", "requirepass", ""]).expect("no password");
    let mut third = server.raw();
    assert_eq!(ask(&mut third, &["PING"]), "+PONG\r\n");
}

#[test]
fn config_set_maxclients_refuses_extra_connections() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["CONFIG", "SET", "maxclients", "1"]).expect("set");
    let mut extra = server.raw();
    assert_eq!(
        extra.read_to_close(),
        "-ERR max number of clients reached\r\n"
    );
    let info: String = q(&mut c, &["INFO", "stats"]).expect("info");
    assert!(info.contains("\r\nrejected_connections:1\r\n"), "{info}");
}

#[test]
fn command_count_info_docs_list() {
    let server = TestServer::start();
    let mut c = server.client();
    let count: i64 = q(&mut c, &["COMMAND", "COUNT"]).expect("count");
    let list: Vec<String> = q(&mut c, &["COMMAND", "LIST"]).expect("list");
    assert_eq!(usize::try_from(count).ok(), Some(list.len()));
    for name in [
        "get", "set", "ping", "hello", "client", "info", "config", "command", "shutdown",
    ] {
        assert!(list.iter().any(|n| n == name), "{name}");
    }
    let all: Vec<redis::Value> = q(&mut c, &["COMMAND"]).expect("command");
    assert_eq!(all.len(), list.len());
    let ping: Vec<String> =
        q(&mut c, &["COMMAND", "LIST", "FILTERBY", "PATTERN", "pin*"]).expect("filter");
    assert_eq!(ping, ["ping"]);
    let e = q::<()>(&mut c, &["COMMAND", "LIST", "FILTERBY", "foo", "x"]).expect_err("syntax");
    assert_eq!(err_text(&e), "ERR syntax error");

    let info: Vec<redis::Value> =
        q(&mut c, &["COMMAND", "INFO", "get", "nope", "SET"]).expect("info");
    assert_eq!(info.len(), 3);
    assert_eq!(info[1], redis::Value::Nil);
    let redis::Value::Array(get) = &info[0] else {
        panic!("{info:?}")
    };
    assert_eq!(get.len(), 10);
    assert_eq!(get[0], redis::Value::BulkString(b"get".to_vec()));
    assert_eq!(get[1], redis::Value::Int(2));
    assert_eq!(
        get[2],
        redis::Value::Array(vec![
            redis::Value::SimpleString("readonly".into()),
            redis::Value::SimpleString("fast".into())
        ])
    );
    assert_eq!(
        &get[3..6],
        &[
            redis::Value::Int(1),
            redis::Value::Int(1),
            redis::Value::Int(1)
        ]
    );
    let redis::Value::Array(set) = &info[2] else {
        panic!("{info:?}")
    };
    assert_eq!(set[1], redis::Value::Int(-3));

    let docs: Vec<redis::Value> = q(&mut c, &["COMMAND", "DOCS", "get", "nope"]).expect("docs");
    assert_eq!(docs.len(), 2, "one name and its docs: {docs:?}");
    let nothing: Vec<redis::Value> = q(&mut c, &["COMMAND", "DOCS", "nope"]).expect("docs");
    assert!(nothing.is_empty());
    let keys: Vec<String> =
        q(&mut c, &["COMMAND", "GETKEYS", "del", "a", "b", "c"]).expect("getkeys");
    assert_eq!(keys, ["a", "b", "c"]);
    let keys: Vec<String> = q(&mut c, &["COMMAND", "GETKEYS", "GET", "k"]).expect("getkeys");
    assert_eq!(keys, ["k"]);
    for (args, want) in [
        (
            vec!["COMMAND", "GETKEYS", "nope", "a"],
            "ERR Invalid command specified",
        ),
        (
            vec!["COMMAND", "GETKEYS", "echo", "a"],
            "ERR The command has no key arguments",
        ),
        (
            vec!["COMMAND", "GETKEYS", "get", "a", "b"],
            "ERR Invalid number of arguments specified for command",
        ),
        (
            vec!["COMMAND", "GETKEYS", "get"],
            "ERR wrong number of arguments for 'command|getkeys' command",
        ),
    ] {
        let e = q::<()>(&mut c, &args).expect_err(want);
        assert_eq!(err_text(&e), want);
    }
    let e = q::<()>(&mut c, &["COMMAND", "FOO"]).expect_err("unknown");
    assert_eq!(
        err_text(&e),
        "ERR unknown subcommand 'FOO'. Try COMMAND HELP."
    );
}

#[test]
fn time_saves_and_function_flush() {
    let server = TestServer::start();
    let mut c = server.client();
    let (secs, micros): (String, String) = q(&mut c, &["TIME"]).expect("time");
    let secs: u64 = secs.parse().expect("secs");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(secs.abs_diff(now) <= 2);
    assert!(micros.parse::<u32>().expect("micros") < 1_000_000);
    let e = q::<()>(&mut c, &["TIME", "x"]).expect_err("arity");
    assert_eq!(
        err_text(&e),
        "ERR wrong number of arguments for 'time' command"
    );

    let before: u64 = q(&mut c, &["LASTSAVE"]).expect("lastsave");
    assert!(before.abs_diff(now) <= 2);
    let _: () = q(&mut c, &["SET", "k", "v"]).expect("set");
    let ok: String = q(&mut c, &["SAVE"]).expect("save");
    assert_eq!(ok, "OK");
    let started: String = q(&mut c, &["BGSAVE"]).expect("bgsave");
    assert_eq!(started, "Background saving started");
    wait_for_bgsave(&mut c);
    let started: String = q(&mut c, &["BGREWRITEAOF"]).expect("bgrewriteaof");
    assert_eq!(started, "Background append only file rewriting started");
    wait_for_bgsave(&mut c);
    let info: String = q(&mut c, &["INFO", "persistence"]).expect("info");
    assert!(info.contains("\r\nrdb_last_bgsave_status:ok\r\n"), "{info}");
    let e = q::<()>(&mut c, &["BGSAVE", "x"]).expect_err("syntax");
    assert_eq!(err_text(&e), "ERR syntax error");
    let v: String = q(&mut c, &["GET", "k"]).expect("get");
    assert_eq!(v, "v");

    let ok: String = q(&mut c, &["FUNCTION", "FLUSH"]).expect("flush");
    assert_eq!(ok, "OK");
    let ok: String = q(&mut c, &["FUNCTION", "FLUSH", "async"]).expect("flush async");
    assert_eq!(ok, "OK");
    let e = q::<()>(&mut c, &["FUNCTION", "FLUSH", "x"]).expect_err("flush x");
    assert_eq!(
        err_text(&e),
        "ERR FUNCTION FLUSH only supports SYNC|ASYNC option"
    );
    let e = q::<()>(&mut c, &["FUNCTION", "FLUSH", "a", "b"]).expect_err("flush a b");
    assert_eq!(
        err_text(&e),
        "ERR unknown subcommand or wrong number of arguments for 'FLUSH'. Try FUNCTION HELP."
    );
    let e = q::<()>(&mut c, &["FUNCTION", "x"]).expect_err("function x");
    assert_eq!(
        err_text(&e),
        "ERR unknown subcommand 'x'. Try FUNCTION HELP."
    );
}

fn wait_for_bgsave(c: &mut redis::Connection) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: String = q(c, &["INFO", "persistence"]).expect("info");
        if info.contains("\r\nrdb_bgsave_in_progress:0\r\n") {
            return;
        }
        assert!(Instant::now() < deadline, "BGSAVE did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn shutdown_stops_the_server_and_the_data_survives() {
    let server = TestServer::start();
    let mut c = server.client();
    let _: () = q(&mut c, &["SET", "kept", "yes"]).expect("set");
    let _: () = q(&mut c, &["SELECT", "7"]).expect("select");
    let _: () = q(&mut c, &["SET", "in7", "also"]).expect("set");
    let mut raw = server.raw();
    assert_eq!(ask(&mut raw, &["SHUTDOWN", "FOO"]), "-ERR syntax error\r\n");
    assert_eq!(
        ask(&mut raw, &["SHUTDOWN", "NOSAVE", "SAVE"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["SHUTDOWN", "ABORT", "NOW"]),
        "-ERR syntax error\r\n"
    );
    assert_eq!(
        ask(&mut raw, &["SHUTDOWN", "ABORT"]),
        "-ERR No shutdown in progress.\r\n"
    );
    assert_eq!(ask(&mut raw, &["MULTI"]), "+OK\r\n");
    assert_eq!(
        ask(&mut raw, &["SHUTDOWN"]),
        "-ERR Command not allowed inside a transaction\r\n"
    );
    assert_eq!(ask(&mut raw, &["DISCARD"]), "+OK\r\n");
    // As Redis: no reply, the connection closes, the server stops.
    raw.send(&cmd(&[b"SHUTDOWN", b"NOSAVE"]));
    assert_eq!(raw.read_to_close(), "");
    let addr = server.addr;
    let dir = server.stop().expect("dir");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "the server no longer listens"
    );
    let server = TestServer::start_with(Config::new(dir.path()));
    let mut c = server.client();
    let v: String = q(&mut c, &["GET", "kept"]).expect("get");
    assert_eq!(v, "yes");
    let _: () = q(&mut c, &["SELECT", "7"]).expect("select");
    let v: String = q(&mut c, &["GET", "in7"]).expect("get");
    assert_eq!(v, "also");
    drop(c);
    server.stop();
}

/// The reply to a failed commit (a write group, EXEC, FLUSHALL) notes an
/// I/O failure for INFO's `aof_last_write_status`, and only an I/O one.
#[test]
fn a_failed_commit_sets_aof_last_write_status() {
    let server = TestServer::start();
    let mut c = server.client();
    let status = |c: &mut redis::Connection| -> String {
        let text: String = q(c, &["INFO", "persistence"]).expect("info");
        text.lines()
            .find_map(|l| l.strip_prefix("aof_last_write_status:"))
            .unwrap_or_default()
            .to_string()
    };
    let refused = cairn::Error::InvalidOptions("not an I/O failure".into());
    let reply = cairn_server::cmd::commit_error(&server.shared, &refused);
    assert!(reply.is_error());
    assert_eq!(status(&mut c), "ok");
    let io = cairn::Error::Io(std::io::Error::other("disk gone"));
    let reply = cairn_server::cmd::commit_error(&server.shared, &io);
    assert!(reply.is_error());
    assert_eq!(status(&mut c), "err");
}
