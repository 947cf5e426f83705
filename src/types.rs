//! Small public value types returned by the API.

use std::time::Duration;

use crate::error::{Error, Result};

/// What `Db::ttl` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// The key does not exist (or has expired).
    Missing,
    /// The key exists and never expires.
    Persistent,
    /// The key exists and expires after this much more time.
    Expires(Duration),
}

/// A failed [`Db::compare_and_swap`](crate::Db::compare_and_swap): the
/// current value did not match the expected one. Nothing was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasConflict {
    /// The value found instead (`None`: the key was absent).
    pub current: Option<Vec<u8>>,
}

impl std::fmt::Display for CasConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.current {
            Some(v) => write!(
                f,
                "compare-and-swap conflict: the key holds a different value ({} bytes)",
                v.len()
            ),
            None => write!(f, "compare-and-swap conflict: the key is absent"),
        }
    }
}

impl std::error::Error for CasConflict {}

/// The latest expiry cairn accepts, in unix milliseconds: 2^48 - 1, in the
/// year 10889, since the index keeps an expiry in 6 bytes. A write with a
/// later one fails with [`Error::InvalidTtl`]. (Redis allows up to
/// `i64::MAX`; a server that takes Redis's expiries can store later ones
/// as this, which never comes either.)
///
/// ```
/// assert_eq!(cairn::MAX_EXPIRY_MS, (1 << 48) - 1);
/// ```
pub const MAX_EXPIRY_MS: u64 = (1 << 48) - 1;

/// Absolute expiry for a TTL from `now_ms`; sub-millisecond TTLs round up.
///
/// # Errors
/// [`Error::InvalidTtl`] for a zero TTL, or one that ends after
/// [`MAX_EXPIRY_MS`] (such as `Duration::MAX`).
pub(crate) fn expiry_after(now_ms: u64, ttl: Duration) -> Result<u64> {
    if ttl.is_zero() {
        return Err(Error::InvalidTtl);
    }
    let mut ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if Duration::from_millis(ms) < ttl {
        ms = ms.saturating_add(1);
    }
    match now_ms.checked_add(ms) {
        Some(at) if at <= MAX_EXPIRY_MS => Ok(at),
        _ => Err(Error::InvalidTtl),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rounds_up_and_rejects_zero() {
        assert!(matches!(
            expiry_after(1000, Duration::ZERO),
            Err(Error::InvalidTtl)
        ));
        assert_eq!(
            expiry_after(1000, Duration::from_micros(1)).ok(),
            Some(1001)
        );
        assert_eq!(
            expiry_after(1000, Duration::from_millis(5)).ok(),
            Some(1005)
        );
    }

    #[test]
    fn expiry_must_fit_in_48_bits_of_milliseconds() {
        // The index keeps 6 bytes of expiry: the last millisecond is 2^48 - 1.
        let last = (1u64 << 48) - 1;
        assert_eq!(
            expiry_after(1000, Duration::from_millis(last - 1000)).ok(),
            Some(last)
        );
        for ttl in [
            Duration::from_millis(last - 999),
            Duration::from_millis(i64::MAX as u64 - 1000),
            Duration::from_millis(u64::MAX),
            Duration::MAX,
        ] {
            assert!(
                matches!(expiry_after(1000, ttl), Err(Error::InvalidTtl)),
                "{ttl:?}"
            );
        }
    }
}
