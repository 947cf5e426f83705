//! Durable sessions for a web app: `cargo run --release --example sessions [DIR]`.
//!
//! Logs a user in on two devices, serves a few requests (each one reads and
//! touches the session), rotates the id after a privilege change, then logs
//! out everywhere. Run it twice with the same DIR: the sessions left by the
//! first run are found by the second, whose "restart" line lists them.

use std::time::Duration;

use cairn::session::Sessions;
use cairn::{Options, SyncPolicy};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp;
    let dir = match std::env::args_os().nth(1) {
        Some(d) => std::path::PathBuf::from(d),
        None => {
            tmp = tempfile::tempdir()?;
            tmp.path().to_path_buf()
        }
    };
    // Sessions are secrets and logins must survive a power loss: Always.
    let db = Options::new().sync_policy(SyncPolicy::Always).open(&dir)?;
    let sessions =
        Sessions::new(db.keyspace("sessions")?).max_lifetime(Duration::from_secs(7 * 24 * 3600));
    let idle = Duration::from_secs(30 * 60);

    let left = sessions.list_for_user("ada")?;
    println!(
        "restart: {} session(s) of ada found in {}",
        left.len(),
        dir.display()
    );

    let laptop = sessions.create_for_user("ada", br#"{"device":"laptop","cart":[]}"#, idle)?;
    let phone = sessions.create_for_user("ada", br#"{"device":"phone","cart":[]}"#, idle)?;
    println!("login on two devices: {laptop} and {phone:?} (Debug hides the id)");

    for request in 0..3 {
        let s = sessions
            .get_and_touch(laptop.as_str())?
            .ok_or("session vanished")?;
        println!(
            "request {request}: {} bytes of session data, sliding expiry {:?}",
            s.data.len(),
            s.idle_ttl
        );
    }
    sessions.update(laptop.as_str(), br#"{"device":"laptop","cart":["book"]}"#)?;

    // A privilege change: give the session a new id, invalidate the old.
    let laptop2 = sessions
        .rotate(laptop.as_str())?
        .ok_or("session vanished")?;
    assert!(sessions.get(laptop.as_str())?.is_none());
    println!("rotated: the old id is dead, the new one carries the cart");

    let listed = sessions.list_for_user("ada")?;
    println!("ada has {} live sessions", listed.len());

    if std::env::args_os().nth(1).is_some() {
        println!(
            "kept the sessions in {}; run again to see them",
            dir.display()
        );
        return Ok(());
    }
    let n = sessions.revoke_all_for_user("ada")?;
    assert!(sessions.get(laptop2.as_str())?.is_none());
    println!("logged out everywhere: {n} sessions revoked");
    Ok(())
}
