//! The example app (`examples/axum_sessions.rs`) as a real process, driven
//! over real HTTP: sessions written under `SyncPolicy::Always` survive a
//! `kill -9` and a restart, and sessions that expired meanwhile do not.
//!
//! The example's source is compiled into this test binary
//! (`#[path]` module), which starts itself as the server process: `cargo
//! test --all-targets` builds examples in test mode, so there is no example
//! binary to run. This file has its own `main` (`harness = false`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../examples/axum_sessions.rs"]
mod example;

/// Set in the server process this test starts.
const CHILD_ENV: &str = "AXUM_SESSIONS_EXAMPLE_CHILD";

fn main() {
    if std::env::var_os(CHILD_ENV).is_some() {
        // The example app itself, with the arguments it was given.
        if let Err(e) = example::main() {
            eprintln!("axum_sessions: {e}");
            std::process::exit(1);
        }
        return;
    }
    let name = "sessions_survive_kill_9_and_expired_ones_do_not";
    let started = Instant::now();
    sessions_survive_kill_9_and_expired_ones_do_not();
    println!("test {name} ... ok ({:?})", started.elapsed());
}

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(dir: &Path, idle_secs: u64) -> Server {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env(CHILD_ENV, "1")
            .arg(dir)
            .arg("0")
            .env("SESSION_IDLE_SECS", idle_secs.to_string())
            .env("CAIRN_SYNC", "always")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the first line");
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server { child, addr }
    }

    /// SIGKILL: no destructor, no close, no flush.
    fn kill_9(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-9", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let exit = self.child.wait().expect("wait");
        assert!(!exit.success(), "killed, not exited: {exit:?}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, the `id` cookie it sets (if any), body.
struct Response {
    status: u16,
    set_cookie: Option<String>,
    body: String,
}

/// One HTTP/1.1 request over a fresh connection.
fn request(addr: &str, method: &str, path: &str, cookie: Option<&str>) -> Response {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("connect to {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: id={c}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status");
    let set_cookie = lines
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.trim().strip_prefix("id="))
        .map(|v| v.split(';').next().unwrap_or("").to_string())
        .next();
    // Bodies are short and sent whole (Content-Length), or chunked.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or("").to_string()
    } else {
        body.trim().to_string()
    };
    Response {
        status,
        set_cookie,
        body: body.trim().to_string(),
    }
}

fn login(addr: &str, user: &str) -> String {
    let r = request(addr, "POST", &format!("/login?user={user}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.set_cookie.expect("a session cookie")
}

fn sessions_survive_kill_9_and_expired_ones_do_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Long enough for a restart on a loaded CI machine, short enough to wait out.
    const IDLE_SECS: u64 = 5;

    let server = Server::start(dir.path(), IDLE_SECS);
    // Ada counts to 5; Bob logs in and logs out; Eve counts to 1.
    let ada = login(&server.addr, "ada");
    for n in 1..=5 {
        let r = request(&server.addr, "GET", "/counter", Some(&ada));
        assert_eq!((r.status, r.body.as_str()), (200, n.to_string().as_str()));
    }
    let bob = login(&server.addr, "bob");
    assert_eq!(
        request(&server.addr, "POST", "/logout", Some(&bob)).status,
        200
    );
    let eve = login(&server.addr, "eve");
    assert_eq!(
        request(&server.addr, "GET", "/counter", Some(&eve)).body,
        "1"
    );
    server.kill_9();

    // Right after the restart: Ada's session and counter are there, Bob's
    // logout held.
    let server = Server::start(dir.path(), IDLE_SECS);
    let r = request(&server.addr, "GET", "/counter", Some(&ada));
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, "6"),
        "Ada's session survived"
    );
    let r = request(&server.addr, "GET", "/whoami", Some(&bob));
    assert_eq!(r.status, 401, "Bob logged out before the kill");
    server.kill_9();

    // Eve's session was last used before the first kill: it expires while
    // the app is down, and must not come back at the next start.
    std::thread::sleep(Duration::from_secs(IDLE_SECS + 1));
    let server = Server::start(dir.path(), IDLE_SECS);
    let r = request(&server.addr, "GET", "/whoami", Some(&eve));
    assert_eq!(
        r.status, 401,
        "Eve's session expired while the app was down"
    );
    assert_eq!(
        request(&server.addr, "GET", "/counter", Some(&eve)).status,
        401
    );
    // Ada's too (idle for longer than IDLE_SECS), and a new login works.
    assert_eq!(
        request(&server.addr, "GET", "/whoami", Some(&ada)).status,
        401
    );
    let ada2 = login(&server.addr, "ada");
    assert_ne!(ada2, ada);
    assert_eq!(
        request(&server.addr, "GET", "/counter", Some(&ada2)).body,
        "1"
    );
}
