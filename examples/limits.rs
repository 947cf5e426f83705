//! Rate limits and idempotency keys that survive a restart:
//! `cargo run --release --example limits`.
//!
//! A login limiter (5 attempts a minute per IP, fixed window), an API
//! limiter (GCRA: 10 requests a second, bursts of 5), and a payment handler
//! that runs each idempotency key once. The store is closed and reopened in
//! the middle: the limits and the stored outcome are still there.

use std::time::Duration;

use cairn::limits::{Begin, FixedWindow, Gcra, Idempotency};
use cairn::Db;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    {
        let db = Db::open(dir.path())?;
        let ks = db.keyspace("limits")?;
        let login = FixedWindow::new(ks.clone(), "login", 5, Duration::from_secs(60))?;
        for attempt in 1..=6 {
            let d = login.check("203.0.113.7")?;
            println!(
                "login attempt {attempt}: allowed={} remaining={} retry_after={:?}",
                d.allowed, d.remaining, d.retry_after
            );
        }
        let api = Gcra::new(ks, "api", 10, Duration::from_secs(1))?.burst(5);
        let allowed = (0..8)
            .filter(|_| api.check("client-1").is_ok_and(|d| d.allowed))
            .count();
        println!("API: {allowed} of 8 back-to-back requests allowed (burst 5)");

        let idem = Idempotency::new(db.keyspace("idempotency")?);
        match idem.begin("payment-9f2c", Duration::from_secs(24 * 3600))? {
            Begin::Started(claim) => {
                // ... charge the card here ...
                idem.complete(&claim, b"201 charged 12.00 EUR")?;
                println!("payment-9f2c: charged");
            }
            other => println!("payment-9f2c: {other:?}"),
        }
        db.close()?;
    }
    println!("-- restart --");
    let db = Db::open(dir.path())?;
    let login = FixedWindow::new(db.keyspace("limits")?, "login", 5, Duration::from_secs(60))?;
    let d = login.check("203.0.113.7")?;
    println!(
        "login after restart: allowed={} (the window survived), retry in {:?}",
        d.allowed, d.retry_after
    );
    let idem = Idempotency::new(db.keyspace("idempotency")?);
    match idem.begin("payment-9f2c", Duration::from_secs(24 * 3600))? {
        Begin::Completed(out) => println!(
            "payment-9f2c retried: not charged again, answer {:?}",
            String::from_utf8_lossy(&out)
        ),
        other => println!("payment-9f2c retried: {other:?}"),
    }
    Ok(())
}
