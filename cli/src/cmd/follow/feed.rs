//! The library's change feed as `follow` uses it. TEMPORARY STAND-IN:
//! `cairn::feed` is not on main yet; this has the announced API so that
//! `follow` builds, and fails at run time. When the feed lands, this file
//! becomes `pub use cairn::feed::{...}` plus `is_changes_lost`.

#![allow(dead_code)]

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use cairn::{Db, Error, Result};

/// A place in the log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Position {
    seq: u64,
    check: u32,
}

impl Position {
    /// Before the first change.
    pub const START: Position = Position { seq: 0, check: 0 };

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{:08x}", self.seq, self.check)
    }
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(s: &str) -> Result<Position> {
        let bad = || Error::InvalidArgument(format!("bad position {s:?}"));
        let (seq, check) = s.split_once(':').ok_or_else(bad)?;
        Ok(Position {
            seq: seq.parse().map_err(|_| bad())?,
            check: u32::from_str_radix(check, 16).map_err(|_| bad())?,
        })
    }
}

/// Where a feed starts.
pub enum FeedStart {
    /// After the newest change.
    Now,
    /// At the oldest change still in the log.
    Oldest,
    /// Right after a position.
    After(Position),
}

/// What a change did.
#[non_exhaustive]
pub enum ChangeKind {
    /// A write.
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// A delete.
    Delete { key: Vec<u8> },
    /// EXPIRE/PERSIST.
    ExpiryChanged {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// The TTL passed.
    Expired { key: Vec<u8> },
    /// A batch starts.
    BatchBegin { ops: u32 },
    /// A batch ends.
    BatchEnd { ops: u32 },
}

/// One change.
pub struct Change {
    /// Its sequence number.
    pub seq: u64,
    /// What it did.
    pub kind: ChangeKind,
}

impl Change {
    /// The position right after it.
    pub fn position(&self) -> Position {
        Position {
            seq: self.seq,
            check: 0,
        }
    }
}

/// How far behind a feed is.
pub struct Lag {
    /// Changes written and not yet returned.
    pub seqs: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// A feed.
pub struct Changes {
    pos: Position,
}

impl Changes {
    /// The next change within `_t`.
    pub fn next_timeout(&mut self, _t: Duration) -> Result<Option<Change>> {
        Err(unavailable())
    }

    /// The next change if there is one.
    pub fn try_next(&mut self) -> Result<Option<Change>> {
        Err(unavailable())
    }

    /// After the last change returned.
    pub fn position(&self) -> Position {
        self.pos
    }

    /// How far behind.
    pub fn lag(&self) -> Lag {
        Lag { seqs: 0, bytes: 0 }
    }
}

impl Iterator for Changes {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        Some(Err(unavailable()))
    }
}

fn unavailable() -> Error {
    Error::InvalidArgument("this build of cairn has no change feed yet".into())
}

/// The feed methods of `Db`.
pub trait DbFeed {
    /// The changes from `start`.
    fn changes(&self, start: FeedStart) -> Result<Changes>;
    /// A snapshot and the changes after it.
    fn snapshot_then_changes(&self) -> Result<(Db, Changes)>;
}

impl DbFeed for Db {
    fn changes(&self, _start: FeedStart) -> Result<Changes> {
        Err(unavailable())
    }

    fn snapshot_then_changes(&self) -> Result<(Db, Changes)> {
        Err(unavailable())
    }
}

/// Whether `e` says the feed cannot continue from the asked position.
pub fn is_changes_lost(_e: &Error) -> bool {
    false
}
