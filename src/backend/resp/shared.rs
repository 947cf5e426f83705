//! What a backend and its namespaces share: the connections, the
//! scripts, whether the server runs them, and the test clock with the
//! mapping of expiries it implies.

use std::sync::Arc;

use super::conn::{Pool, Target};
use super::scripts::Scripts;
use crate::backend::{Entry, Snapshot};
use crate::util::clock::Clock;

/// How far a test clock's expiries are moved (see `RespOptions::clock`):
/// 2^47 ms, about 4,460 years, so they lie far in the real future for
/// any logical time, yet below the 2^48 ms that `cairn serve` keeps (it
/// stores later expiries as that, which would lose the logical ones). A
/// constant, not a function of the real time at open, so that a backend
/// opened later (an application's restart) reads the expiries an earlier
/// one wrote as they were written.
const SHIFT_MS: i128 = 1 << 47;

/// The largest stored expiry: Lua compares expiries as doubles, exact up
/// to 2^53 ms (285,000 years).
const MAX_PXAT: i128 = (1 << 53) - 1;

/// The largest stored expiry with a test clock: what `cairn serve` keeps
/// (2^48 - 1 ms), so that logical expiries read back as written on every
/// server up to 2^47 ms (the year 6429).
const MAX_SHIFTED_PXAT: i128 = (1 << 48) - 1;

/// A key as read: its value and raw `PEXPIRETIME` (-1 none), or absent.
pub(crate) type Raw = Option<(Vec<u8>, i64)>;

/// A logical clock and the shift between its expiries and the stored ones.
pub(crate) struct TestClock {
    clock: Arc<dyn Clock>,
    shift: i128,
}

impl TestClock {
    /// `clock`, with stored expiries moved by [`SHIFT_MS`].
    pub(crate) fn new(clock: Arc<dyn Clock>) -> TestClock {
        TestClock {
            clock,
            shift: SHIFT_MS,
        }
    }
}

/// What a backend and its namespaces share.
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) scripts: Scripts,
    pub(crate) has_eval: bool,
    pub(crate) clock: Option<TestClock>,
}

impl Shared {
    /// Whether the backend is on a cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.pool.target, Target::Cluster(..))
    }

    /// The clock reading of an operation whose server said `server_ms`.
    pub(crate) fn now(&self, server_ms: u64) -> u64 {
        self.clock
            .as_ref()
            .map_or(server_ms, |t| t.clock.now_unix_ms())
    }

    fn shift(&self) -> i128 {
        self.clock.as_ref().map_or(0, |t| t.shift)
    }

    /// The stored `PXAT` of an expiry.
    pub(crate) fn to_pxat(&self, expires_at_ms: u64) -> i64 {
        let max = if self.clock.is_some() {
            MAX_SHIFTED_PXAT
        } else {
            MAX_PXAT
        };
        let raw = (i128::from(expires_at_ms) + self.shift()).clamp(1, max);
        i64::try_from(raw).unwrap_or(i64::MAX)
    }

    /// The expiry of a stored `PEXPIRETIME` (negative: none).
    pub(crate) fn expiry_of_raw(&self, raw: i64) -> Option<u64> {
        (raw >= 0).then(|| u64::try_from(i128::from(raw) - self.shift()).unwrap_or(0))
    }

    /// The live entry of a raw read at `now`.
    pub(crate) fn entry(&self, now: u64, raw: &Raw) -> Option<Entry> {
        let (value, exp) = raw.as_ref()?;
        if *exp == -2 {
            return None;
        }
        let expires_at_ms = self.expiry_of_raw(*exp);
        if expires_at_ms.is_some_and(|e| e <= now) {
            return None;
        }
        Some(Entry {
            value: value.clone(),
            expires_at_ms,
        })
    }

    pub(crate) fn snapshot(&self, server_now: u64, raws: &[Raw]) -> Snapshot {
        let now_ms = self.now(server_now);
        Snapshot {
            now_ms,
            entries: raws.iter().map(|r| self.entry(now_ms, r)).collect(),
        }
    }
}
