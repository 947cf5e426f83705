//! The same session, rate-limit and idempotency code on each step of the
//! ladder: embedded, `cairn serve`, a Redis or Valkey server, a cluster.
//!
//! ```sh
//! cargo run --example ladder --features redis                       # embedded, in a temporary directory
//! REDIS_URL=redis://127.0.0.1:6379 cargo run --example ladder --features redis   # cairn serve, Redis or Valkey
//! REDIS_URL=redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002 \
//!     cargo run --example ladder --features redis                   # a cluster (its seed nodes)
//! ```
//!
//! Only `store()` knows which step it runs on; `app()` is the code an
//! application keeps when it moves up a step.

use std::time::Duration;

use cairn::backend::resp::RespOptions;
use cairn::backend::Store;
use cairn::limits::{Begin, FixedWindow, Idempotency};
use cairn::session::Sessions;

/// Where the modules' keys live: the one thing that changes between steps.
enum Step {
    Embedded(cairn::Db),
    Remote(cairn::backend::resp::RespBackend),
}

impl Step {
    fn from_env(dir: &tempfile::TempDir) -> cairn::Result<Step> {
        Ok(match std::env::var("REDIS_URL") {
            Ok(urls) if urls.contains(',') => {
                let seeds: Vec<&str> = urls.split(',').collect();
                Step::Remote(RespOptions::cluster(&seeds).open()?)
            }
            Ok(url) => Step::Remote(RespOptions::new(&url).open()?),
            Err(_) => Step::Embedded(cairn::Db::open(dir.path())?),
        })
    }

    /// A keyspace of the embedded store, or a namespace on the server.
    fn store(&self, name: &str) -> cairn::Result<Store> {
        Ok(match self {
            Step::Embedded(db) => db.keyspace(name)?.into(),
            Step::Remote(b) => b.namespace(name).into(),
        })
    }

    fn describe(&self) -> String {
        match self {
            Step::Embedded(db) => format!("embedded store in {}", db.path().display()),
            Step::Remote(b) => format!("server {}", b.address()),
        }
    }
}

/// The application's code: the same on every step.
fn app(sessions: &Sessions, login: &FixedWindow, payments: &Idempotency) -> cairn::Result<()> {
    // Five login attempts a minute per address.
    for attempt in 1..=6 {
        let d = login.check("203.0.113.7")?;
        println!(
            "login attempt {attempt}: allowed={} remaining={}",
            d.allowed, d.remaining
        );
    }
    // A session for ada, touched on each request, then "log out everywhere".
    let id = sessions.create_for_user("ada", br#"{"cart":[]}"#, Duration::from_secs(1800))?;
    let s = sessions.get_and_touch(id.as_str())?;
    println!(
        "session of {:?}, expires at {:?}",
        s.as_ref().and_then(|s| s.user.clone()),
        s.map(|s| s.expires_unix_ms)
    );
    let id = sessions
        .rotate(id.as_str())?
        .ok_or(cairn::Error::InvalidArgument("session vanished".into()))?;
    println!(
        "ada has {} session(s)",
        sessions.list_for_user("ada")?.len()
    );
    println!("logged out of {}", sessions.revoke_all_for_user("ada")?);
    println!(
        "old id still valid: {}",
        sessions.get(id.as_str())?.is_some()
    );
    // A payment that runs once, however often the client retries.
    let key = format!("order-{}", std::process::id());
    for _ in 0..2 {
        match payments.begin(&key, Duration::from_secs(3600))? {
            Begin::Started(claim) => {
                println!("charging {key}");
                payments.complete(&claim, b"201 Created")?;
            }
            Begin::InProgress { .. } => println!("{key} is being charged by someone else"),
            Begin::Completed(outcome) => {
                println!("{key} already done: {}", String::from_utf8_lossy(&outcome));
            }
        }
    }
    Ok(())
}

fn main() -> cairn::Result<()> {
    let dir = tempfile::tempdir()?;
    let step = Step::from_env(&dir)?;
    println!("running on the {}", step.describe());
    let limits_store = step.store("limits")?;
    let sessions =
        Sessions::new(step.store("sessions")?).max_lifetime(Duration::from_secs(7 * 24 * 3600));
    // The salt of a user's hash tag on a server: from the configuration,
    // the same in every process (see `Sessions::tag_secret`).
    let tag_secret = std::env::var("SESSION_TAG_SECRET").unwrap_or_else(|_| "ladder-demo".into());
    let sessions = sessions.tag_secret(tag_secret);
    let login = FixedWindow::new(limits_store.clone(), "login", 5, Duration::from_secs(60))?;
    let payments = Idempotency::new(limits_store);
    app(&sessions, &login, &payments)
}
