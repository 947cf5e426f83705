//! Shared set-up of the server's integration tests: a real server on a
//! free loopback port over a temporary directory, a `redis` client, and
//! raw TCP for the protocol cases.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use cairn_server::config::{Config, SyncMode};
use cairn_server::state::Shared;

/// A server running on its own thread and runtime.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state, to stop it.
    pub shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    /// The data directory (deleted on drop unless kept).
    pub dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server over a new temporary directory with the default settings
    /// (`--sync always`), on a free port.
    pub fn start() -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = TestServer::start_with(Config::new(dir.path()));
        s.dir = Some(dir);
        s
    }

    /// A server with `config`, on a free port (the port is set to 0).
    pub fn start_with(mut config: Config) -> TestServer {
        config.port = 0;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let server = match cairn_server::Server::bind(config).await {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                        return Err(e.to_string());
                    }
                };
                let _ = tx.send(Ok((server.local_addr(), server.shared())));
                server.serve().await.map_err(|e| e.to_string())
            })
        });
        let (addr, shared) = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server start")
            .expect("server bind");
        TestServer {
            addr,
            shared,
            thread: Some(thread),
            dir: None,
        }
    }

    /// A server with the sync mode `sync`.
    pub fn start_sync(sync: SyncMode) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config::new(dir.path());
        config.sync = sync;
        let mut s = TestServer::start_with(config);
        s.dir = Some(dir);
        s
    }

    /// A `redis` client connection.
    pub fn client(&self) -> redis::Connection {
        let url = format!("redis://{}/", self.addr);
        redis::Client::open(url)
            .expect("client")
            .get_connection_with_timeout(Duration::from_secs(10))
            .expect("connect")
    }

    /// A raw TCP connection with a read timeout.
    pub fn raw(&self) -> Raw {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Raw(s)
    }

    /// Stops the server (as SHUTDOWN does) and waits for it to close the
    /// store; returns the directory.
    pub fn stop(mut self) -> Option<tempfile::TempDir> {
        self.shared.begin_shutdown();
        if let Some(t) = self.thread.take() {
            t.join()
                .expect("server thread")
                .expect("server stopped cleanly");
        }
        self.dir.take()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shared.begin_shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A raw connection: send bytes, read replies as text.
pub struct Raw(pub TcpStream);

impl Raw {
    /// Sends `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("send");
    }

    /// Reads until `want` bytes have arrived or the peer closes; returns
    /// what arrived.
    pub fn read_n(&mut self, want: usize) -> String {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < want {
            match self.0.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Sends `bytes` and reads exactly the length of `expected`, returning
    /// what came.
    pub fn roundtrip(&mut self, bytes: &[u8], expected: &str) -> String {
        self.send(bytes);
        self.read_n(expected.len())
    }

    /// Reads until the peer closes the connection.
    pub fn read_to_close(&mut self) -> String {
        let mut got = Vec::new();
        let _ = self.0.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    }
}

/// Encodes a command as a RESP multibulk.
pub fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}
