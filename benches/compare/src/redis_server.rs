//! Starting and stopping Debian's `redis-server` on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server with AOF persistence.
pub struct RedisServer {
    child: Child,
    /// `127.0.0.1:port`.
    pub addr: String,
    /// Its pid.
    pub pid: u32,
    /// Its directory.
    pub dir: PathBuf,
    port: u16,
    everysec: bool,
}

fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Sends one inline command and returns the first line of the reply (and,
/// for a bulk reply, its body).
fn ask(addr: &str, cmd: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(format!("{cmd}\r\n").as_bytes())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line)?;
    if let Some(n) = line
        .strip_prefix('$')
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        let mut body = vec![0u8; n + 2];
        std::io::Read::read_exact(&mut r, &mut body)?;
        line.push_str(&String::from_utf8_lossy(&body));
    }
    Ok(line)
}

impl RedisServer {
    /// Starts a server on a free port, keeping its files in `dir` (which may
    /// hold an AOF from an earlier run: the server loads it). Returns once
    /// the server answers and has finished loading, with the time that took.
    pub fn start(dir: &Path, everysec: bool) -> Result<(RedisServer, Duration), String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let port = free_port().map_err(|e| e.to_string())?;
        Self::start_on(dir, port, everysec)
    }

    fn start_on(dir: &Path, port: u16, everysec: bool) -> Result<(RedisServer, Duration), String> {
        let t = Instant::now();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--dir", &dir.to_string_lossy()])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args([
                "--appendfsync",
                if everysec { "everysec" } else { "always" },
            ])
            .args(["--daemonize", "no"])
            .args(["--logfile", &dir.join("redis.log").to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot start redis-server (apt-get install redis-server): {e}")
            })?;
        let addr = format!("127.0.0.1:{port}");
        let pid = child.id();
        let server = RedisServer {
            child,
            addr: addr.clone(),
            pid,
            dir: dir.to_path_buf(),
            port,
            everysec,
        };
        let mut server = server;
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!(
                    "redis-server exited ({status}): {}",
                    tail.join(" | ")
                ));
            }
            // PING answers -LOADING until the AOF is loaded; INFO can answer
            // before loading has begun, so both must say "ready".
            if ask(&addr, "PING").is_ok_and(|r| r.starts_with("+PONG")) {
                if let Ok(info) = ask(&addr, "INFO persistence") {
                    if info.contains("loading:0") {
                        break;
                    }
                }
            }
            if t.elapsed() > Duration::from_secs(600) {
                return Err("redis-server did not come up in 10 minutes".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok((server, t.elapsed()))
    }

    /// Stops the server (SHUTDOWN flushes and fsyncs the AOF) and waits for it.
    pub fn stop(mut self) {
        let _ = ask(&self.addr, "SHUTDOWN NOSAVE");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the server and starts it again on the same directory and port;
    /// returns the new server and the time from spawn to "loaded".
    pub fn restart(self) -> Result<(RedisServer, Duration), String> {
        let (dir, port, everysec) = (self.dir.clone(), self.port, self.everysec);
        self.stop();
        Self::start_on(&dir, port, everysec)
    }
}

impl RedisServer {
    /// Keys in the server's database (to check that a restart loaded them).
    pub fn dbsize(&self) -> Result<u64, String> {
        let r = ask(&self.addr, "DBSIZE").map_err(|e| e.to_string())?;
        r.trim()
            .strip_prefix(':')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("DBSIZE answered {r:?}"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
