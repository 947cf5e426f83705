//! An axum app whose sessions live in cairn: log in, count in the session,
//! log out. Sessions survive a restart, and a `kill -9`.
//!
//! ```text
//! cargo run --release -p tower-sessions-cairn-store --example axum_sessions -- DIR [PORT]
//! curl -c jar -b jar -X POST 'http://127.0.0.1:3000/login?user=ada'
//! curl -c jar -b jar http://127.0.0.1:3000/counter      # 1, 2, 3, ...
//! curl -c jar -b jar -X POST http://127.0.0.1:3000/logout
//! ```
//!
//! `SESSION_IDLE_SECS` sets the sliding expiry (default 1800) and
//! `CAIRN_SYNC=everymillis` trades the last 100 ms of session changes on a
//! power loss for speed (the default, `always`, loses nothing acknowledged).
//! The first line on stdout is `listening on http://ADDR`.

use std::collections::HashMap;
use std::io::Write;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use cairn::{Options, SyncPolicy};
use tower_sessions_015::{Expiry, Session, SessionManagerLayer};
use tower_sessions_cairn_store::CairnStore;

async fn login(session: Session, Query(q): Query<HashMap<String, String>>) -> (StatusCode, String) {
    let Some(user) = q.get("user").filter(|u| !u.is_empty()) else {
        return (StatusCode::BAD_REQUEST, "user=NAME is required\n".into());
    };
    // A new id at login, against session fixation.
    if let Err(e) = session.cycle_id().await {
        return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n"));
    }
    let stored = async {
        session.insert("user", user).await?;
        session.insert("counter", 0u64).await
    };
    match stored.await {
        Ok(()) => (StatusCode::OK, format!("hello {user}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn counter(session: Session) -> (StatusCode, String) {
    match session.get::<String>("user").await {
        Ok(Some(_)) => {}
        Ok(None) => return (StatusCode::UNAUTHORIZED, "log in first\n".into()),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
    let n: u64 = match session.get("counter").await {
        Ok(n) => n.unwrap_or(0) + 1,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    };
    match session.insert("counter", n).await {
        Ok(()) => (StatusCode::OK, format!("{n}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn whoami(session: Session) -> (StatusCode, String) {
    match session.get::<String>("user").await {
        Ok(Some(user)) => (StatusCode::OK, format!("{user}\n")),
        Ok(None) => (StatusCode::UNAUTHORIZED, "nobody\n".into()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn logout(session: Session) -> (StatusCode, String) {
    match session.flush().await {
        Ok(()) => (StatusCode::OK, "bye\n".into()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

#[tokio::main]
pub async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: axum_sessions DIR [PORT]")?;
    let port: u16 = args.next().map_or(Ok(3000), |p| p.parse())?;
    let idle: u64 = std::env::var("SESSION_IDLE_SECS").map_or(Ok(1800), |s| s.parse())?;
    let policy = match std::env::var("CAIRN_SYNC").as_deref() {
        Ok("everymillis") => SyncPolicy::EveryMillis(100),
        Ok("always") | Err(_) => SyncPolicy::Always,
        Ok(other) => return Err(format!("CAIRN_SYNC={other}: use always or everymillis").into()),
    };

    // The store: a keyspace of a cairn store. Add these lines to your app.
    let db = Options::new().sync_policy(policy).open(&dir)?;
    let store = CairnStore::new(db.keyspace("sessions")?);
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false) // plain HTTP in this example; keep it on behind TLS
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(idle as i64)));

    let app = Router::new()
        .route("/login", post(login))
        .route("/counter", get(counter))
        .route("/whoami", get(whoami))
        .route("/logout", post(logout))
        .layer(sessions);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    // A clean stop: everything is durable, the lock is released.
    db.close()?;
    Ok(())
}
