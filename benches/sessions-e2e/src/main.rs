//! The benchmark app: `sessions-e2e STORE PORT DIR`.
//!
//! STORE is one of `cairn-always`, `cairn-everysec` (SyncPolicy::
//! EveryMillis(1000)), `redis` (a Redis server already listening on
//! `REDIS_PORT`, default 6390; its `appendfsync` is the run script's
//! business), `cairn-redis` (the cairn store on cairn's RESP backend,
//! against that same Redis server), `sqlite-full` and `sqlite-normal` (WAL, with that
//! `synchronous`), and `memory` (tower-sessions' `MemoryStore`: the
//! ceiling, with no durability at all). The routes are a realistic session mix: `POST /login`
//! creates a session with a profile of about 1 KB, `GET /read` reads it,
//! `GET /update` bumps a counter in it, `POST /logout` ends it.

use std::str::FromStr;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tower_sessions::{Expiry, Session, SessionManagerLayer, SessionStore};

fn profile(user: &str) -> Value {
    json!({
        "user": user,
        "email": format!("{user}@example.com"),
        "roles": ["reader", "writer"],
        "locale": "en-GB",
        "theme": "dark",
        "cart": [{"sku": "A-1", "qty": 1}, {"sku": "B-7", "qty": 3}],
        "csrf": "3q2+7w8d9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4",
        "bio": "x".repeat(700),
    })
}

async fn login(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> StatusCode {
    let user = q.get("user").cloned().unwrap_or_else(|| "anon".into());
    let r = async {
        session.insert("profile", profile(&user)).await?;
        session.insert("counter", 0u64).await
    };
    match r.await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn read(session: Session) -> (StatusCode, String) {
    match session.get::<Value>("profile").await {
        Ok(Some(p)) => (StatusCode::OK, p["user"].as_str().unwrap_or("").to_string()),
        Ok(None) => (StatusCode::UNAUTHORIZED, String::new()),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
    }
}

async fn update(session: Session) -> StatusCode {
    let n: u64 = match session.get("counter").await {
        Ok(Some(n)) => n,
        Ok(None) => return StatusCode::UNAUTHORIZED,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR,
    };
    match session.insert("counter", n + 1).await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn app<S: SessionStore + Clone>(store: S) -> Router {
    Router::new()
        .route("/login", post(login))
        .route("/read", get(read))
        .route("/update", get(update))
        .route("/logout", post(logout))
        .layer(
            SessionManagerLayer::new(store)
                .with_secure(false)
                .with_expiry(Expiry::OnInactivity(time::Duration::minutes(30))),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let store = args.next().ok_or("usage: sessions-e2e STORE PORT DIR")?;
    let port: u16 = args.next().ok_or("PORT")?.parse()?;
    let dir = args.next().ok_or("DIR")?;
    let router = match store.as_str() {
        "cairn-always" | "cairn-everysec" => {
            let policy = if store == "cairn-always" {
                cairn::SyncPolicy::Always
            } else {
                cairn::SyncPolicy::EveryMillis(1000)
            };
            let db = cairn::Options::new().sync_policy(policy).open(&dir)?;
            app(tower_sessions_cairn_store::CairnStore::new(
                db.keyspace("sessions")?,
            ))
        }
        "redis" => {
            use tower_sessions_redis_store::fred::prelude::*;
            let redis_port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6390".into());
            let config = Config::from_url(&format!("redis://127.0.0.1:{redis_port}"))?;
            let pool = Pool::new(config, None, None, None, 4)?;
            pool.connect();
            pool.wait_for_connect().await?;
            app(tower_sessions_redis_store::RedisStore::new(pool))
        }
        // The cairn store on the same Redis server as `redis`.
        "cairn-redis" => {
            let redis_port = std::env::var("REDIS_PORT").unwrap_or_else(|_| "6390".into());
            let backend =
                cairn::backend::resp::RespOptions::new(&format!("redis://127.0.0.1:{redis_port}"))
                    .pool_size(16)
                    .open()?;
            app(tower_sessions_cairn_store::CairnStore::on(
                backend.namespace("sessions").into(),
            ))
        }
        "sqlite-full" | "sqlite-normal" => {
            use tower_sessions_sqlx_store::sqlx::sqlite::{
                SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
            };
            let sync = if store == "sqlite-full" {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            };
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{dir}/sessions.db"))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(sync);
            let pool = SqlitePool::connect_with(opts).await?;
            let s = tower_sessions_sqlx_store::SqliteStore::new(pool);
            s.migrate().await?;
            app(s)
        }
        // The ceiling: tower-sessions' in-memory store, no durability.
        "memory" => app(tower_sessions::MemoryStore::default()),
        other => return Err(format!("unknown store {other}").into()),
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router).await?;
    Ok(())
}
