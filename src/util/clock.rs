//! Wall-clock time for expiries, injectable so that TTL tests need not sleep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in unix milliseconds.
///
/// Expiries are stored as absolute unix milliseconds, so the clock must be
/// wall-clock time (or a test's simulation of it).
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the unix epoch.
    fn now_unix_ms(&self) -> u64;
}

/// The system's wall clock. This is the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to, for tests.
///
/// Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// let clock = cairn::ManualClock::new(1_000);
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Options::new().clock(clock.clone()).open(dir.path())?;
/// db.put_with_ttl("k", "v", Duration::from_secs(10))?;
/// clock.advance(Duration::from_secs(10));
/// assert_eq!(db.get("k")?, None);
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock standing at `unix_ms`.
    pub fn new(unix_ms: u64) -> ManualClock {
        ManualClock(Arc::new(AtomicU64::new(unix_ms)))
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `unix_ms`.
    pub fn set(&self, unix_ms: u64) {
        self.0.store(unix_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_unix_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
