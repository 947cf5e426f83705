//! A minimal `cairn serve` for benchmarks and manual tests, without the
//! CLI: `cargo run -p cairn-server --release --example serve -- DIR [PORT]
//! [always|everysec|no]` (defaults: port 6379, `always`). Listens on
//! 127.0.0.1 and runs until SIGTERM, SIGINT or SHUTDOWN.

use cairn_server::config::{Config, SyncMode};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: serve DIR [PORT] [always|everysec|no]";
    let Some(dir) = args.next() else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let mut config = Config::new(dir);
    if let Some(port) = args.next() {
        match port.parse() {
            Ok(p) => config.port = p,
            Err(_) => {
                eprintln!("serve: PORT: not a port number: {port:?}\n{usage}");
                std::process::exit(2);
            }
        }
    }
    if let Some(sync) = args.next() {
        match SyncMode::parse(&sync) {
            Some(s) => config.sync = s,
            None => {
                eprintln!(
                    "serve: sync mode: expected always, everysec or no, got {sync:?}\n{usage}"
                );
                std::process::exit(2);
            }
        }
    }
    eprintln!(
        "serve: {} on 127.0.0.1:{} (sync {})",
        config.dir.display(),
        config.port,
        config.sync.name()
    );
    if let Err(e) = cairn_server::run(config) {
        eprintln!("serve: {e}");
        std::process::exit(1);
    }
}
