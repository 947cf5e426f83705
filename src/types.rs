//! Small public value types returned by the API.

use std::time::Duration;

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
