//! The change feed: every committed change of a store, in order, read
//! from its log.
//!
//! A store's log already holds every change in the order it was made;
//! the feed reads it back as a stream. [`Db::changes`](crate::Db::changes)
//! starts one at a [`Position`], at the end of the log ("now") or at its
//! oldest change; [`Db::snapshot_then_changes`](crate::Db::snapshot_then_changes)
//! gives a consistent snapshot and every change after it;
//! [`Db::watch`](crate::Db::watch) gives the changes under a key prefix
//! from now on.
//!
//! * **Order and atomicity.** Changes come in the order of their
//!   sequence numbers, which is the order they were committed in. The
//!   operations of a batch or a transaction come between a
//!   [`ChangeKind::BatchBegin`] and a [`ChangeKind::BatchEnd`], and only
//!   once the whole batch is committed.
//! * **Never a silent gap.** Compaction removes old segments of the log.
//!   A feed whose next change is no longer there (it fell behind, or it
//!   resumes from a position compaction removed) fails with
//!   [`Error::ChangesLost`], as a Redis
//!   replica needs a full resynchronisation: start again from
//!   [`Db::snapshot_then_changes`](crate::Db::snapshot_then_changes).
//!   The same error comes when a position is not in the store's history
//!   at all (the store lost changes the consumer had seen, in a crash
//!   before they were durable), which each position's check detects.
//! * **Expiry.** A key whose TTL passes is reported as
//!   [`ChangeKind::Expired`] when the store removes it: its expiry sweep
//!   (every `Options::expiry_sweep_interval_ms`, 1 s by default, on a
//!   handle that can write) logs the removal. Until then a reader of the
//!   store already sees the key as absent; a consumer keeping its own copy
//!   should honour each [`ChangeKind::Put`]'s `expires_at_ms` itself.
//! * **Writers never wait for a feed.** A feed reads the segment files
//!   itself and takes no lock the writer takes; a slow consumer only falls
//!   behind.
//! * **Another process.** A feed on a snapshot handle
//!   ([`Options::snapshot`](crate::Options::snapshot)) follows the files
//!   of a store that another process has open, seeing its changes as they
//!   reach the files (polling every few milliseconds).

mod reader;
mod start;

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::record::{RecordKind, FLAG_BATCH, FLAG_EXPIRED, FLAG_EXPIRY_ONLY};
use crate::fs::Vfs;
use crate::storage::feed_signal::FeedSignal;

use reader::{Limit, LogReader, Mark, Next, Rec};

/// How often a feed without a writer in its process looks at the files.
const POLL: Duration = Duration::from_millis(5);

/// A feed that has caught up with the writer of its process naps this
/// long, this many times, before it waits to be woken: while writes keep
/// coming, it finds them after a nap and the writer never pays for waking
/// it (a futex call per append, which halved one writer's relaxed put
/// rate with one consumer attached; docs/benchmarks.md).
const NAP: Duration = Duration::from_micros(100);
const NAPS_BEFORE_WAITING: u32 = 5;

/// A place in a store's change feed: right after one change.
///
/// It names the change by its sequence number and by a check (the
/// change's record checksum), so that resuming from it notices a log that
/// no longer holds that change. It prints as `<seq>:<check>` (eight hex
/// digits) and parses back from that.
///
/// ```
/// use cairn::feed::Position;
/// let p: Position = "42:0a1b2c3d".parse()?;
/// assert_eq!(p.seq(), 42);
/// assert_eq!(p.to_string(), "42:0a1b2c3d");
/// assert_eq!(Position::START.seq(), 0);
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    seq: u64,
    /// The change's record checksum; 0 when unknown (not checked).
    check: u32,
}

impl Position {
    /// Before the first change a store ever made.
    pub const START: Position = Position { seq: 0, check: 0 };

    /// The sequence number of the change this position comes right after
    /// (0: none).
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn unchecked(seq: u64) -> Position {
        Position { seq, check: 0 }
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
        let bad = || {
            Error::InvalidArgument(format!(
                "change feed position {s:?} is not <sequence number>:<8 hex digits>"
            ))
        };
        let (seq, check) = s.trim().split_once(':').ok_or_else(bad)?;
        if check.len() != 8 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(Position {
            seq: seq.parse().map_err(|_| bad())?,
            check: u32::from_str_radix(check, 16).map_err(|_| bad())?,
        })
    }
}

/// Where [`Db::changes`](crate::Db::changes) starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedStart {
    /// With the first change made after the call.
    Now,
    /// With the oldest change still in the log. What compaction removed
    /// before it is not delivered, so this is for looking at recent
    /// history, not for rebuilding a copy (use
    /// [`Db::snapshot_then_changes`](crate::Db::snapshot_then_changes)).
    Oldest,
    /// Right after the change a [`Position`] names (use
    /// [`Position::START`] for the whole history, which only a store that
    /// never compacted still has).
    After(Position),
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChangeKind {
    /// A key was written. An `expires_at_ms` at or before the current
    /// time means the key is already gone (treat it as a delete).
    Put {
        /// The key.
        key: Vec<u8>,
        /// Its new value.
        value: Vec<u8>,
        /// When it expires (unix milliseconds), if it does.
        expires_at_ms: Option<u64>,
    },
    /// A key was deleted.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
    /// A key's expiry was changed (`Db::expire`, `Db::persist`); its value
    /// is unchanged, and repeated here.
    ExpiryChanged {
        /// The key.
        key: Vec<u8>,
        /// Its value (unchanged).
        value: Vec<u8>,
        /// Its new expiry (unix milliseconds), or `None` for none.
        expires_at_ms: Option<u64>,
    },
    /// The store removed a key whose TTL had passed.
    Expired {
        /// The key.
        key: Vec<u8>,
    },
    /// The changes up to the matching [`ChangeKind::BatchEnd`] are one
    /// atomic batch (or transaction) of `ops` operations.
    BatchBegin {
        /// How many operations follow.
        ops: u32,
    },
    /// The end of a batch.
    BatchEnd {
        /// How many operations it had.
        ops: u32,
    },
}

/// One change from a store's feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number: changes come in increasing order.
    pub seq: u64,
    /// What it did.
    pub kind: ChangeKind,
    check: u32,
}

impl Change {
    /// The position right after this change.
    #[must_use]
    pub fn position(&self) -> Position {
        Position {
            seq: self.seq,
            check: self.check,
        }
    }

    /// The key it changed (`None` for batch boundaries).
    #[must_use]
    pub fn key(&self) -> Option<&[u8]> {
        match &self.kind {
            ChangeKind::Put { key, .. }
            | ChangeKind::Delete { key }
            | ChangeKind::ExpiryChanged { key, .. }
            | ChangeKind::Expired { key } => Some(key),
            ChangeKind::BatchBegin { .. } | ChangeKind::BatchEnd { .. } => None,
        }
    }

    fn of(r: Rec) -> Result<Change> {
        let expiry = (r.expires_at_ms != 0).then_some(r.expires_at_ms);
        let kind = match r.kind {
            RecordKind::Put if r.flags & FLAG_EXPIRY_ONLY != 0 => ChangeKind::ExpiryChanged {
                key: r.key,
                value: r.value,
                expires_at_ms: expiry,
            },
            RecordKind::Put => ChangeKind::Put {
                key: r.key,
                value: r.value,
                expires_at_ms: expiry,
            },
            RecordKind::Tombstone if r.flags & FLAG_EXPIRED != 0 => {
                ChangeKind::Expired { key: r.key }
            }
            RecordKind::Tombstone => ChangeKind::Delete { key: r.key },
            RecordKind::BatchBegin => ChangeKind::BatchBegin {
                ops: count_of(&r.value, 0),
            },
            RecordKind::BatchCommit => ChangeKind::BatchEnd {
                ops: count_of(&r.value, 8),
            },
            RecordKind::SyncMark => {
                return Err(Error::InvalidArgument("a sync mark is not a change".into()))
            }
        };
        Ok(Change {
            seq: r.seq,
            kind,
            check: r.crc,
        })
    }
}

fn count_of(v: &[u8], at: usize) -> u32 {
    v.get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// How far a feed is behind the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lag {
    /// Changes in the log the feed has not returned yet.
    pub seqs: u64,
    /// The newest change in the log (its sequence number).
    pub newest_seq: u64,
}

/// A store's committed changes in order, from a start point on: see the
/// [module docs](self).
///
/// As an [`Iterator`] it blocks until the next change (and ends when the
/// store's last handle closes; a feed on a snapshot handle never ends);
/// [`Changes::next_timeout`] and [`Changes::try_next`] bound the wait.
pub struct Changes {
    reader: LogReader,
    /// The writer of this process, when there is one.
    signal: Option<Arc<FeedSignal>>,
    queue: VecDeque<Change>,
    /// After the last complete unit returned.
    position: Position,
    /// A reader that runs ahead to find the newest change (`lag` on a
    /// feed without a writer in this process).
    skim: Option<LogReader>,
}

impl fmt::Debug for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Changes")
            .field("reader", &self.reader)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl Changes {
    /// A feed on the store in `dir`, from `from`. `signal` is the writer's
    /// when it is in this process.
    pub(crate) fn open(
        dir: &Path,
        vfs: Arc<dyn Vfs>,
        signal: Option<Arc<FeedSignal>>,
        from: FeedStart,
    ) -> Result<Changes> {
        let mut reader = LogReader::new(dir, vfs);
        let limit = match &signal {
            Some(s) => Limit::Published(s.end()),
            None => Limit::Files,
        };
        let position = match from {
            FeedStart::Now => match limit {
                Limit::Published(e) => {
                    reader.seek_end(e.segment, e.offset, e.seq)?;
                    Position::unchecked(e.seq)
                }
                Limit::Files => {
                    start::end_of_files(&mut reader)?;
                    Position::unchecked(reader.last_seq().unwrap_or(0))
                }
            },
            FeedStart::Oldest => {
                start::oldest(&mut reader)?;
                Position::START
            }
            FeedStart::After(p) => {
                start::after(&mut reader, p, limit)?;
                p
            }
        };
        Ok(Changes {
            reader,
            signal,
            queue: VecDeque::new(),
            position,
            skim: None,
        })
    }

    /// The position after the last change returned; while a batch is being
    /// returned, the position before it (a batch resumes whole).
    #[must_use]
    pub fn resume_position(&self) -> Position {
        self.position
    }

    /// The next change, waiting at most `timeout` for one; `Ok(None)` when
    /// none came in time (or the store closed).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cairn::feed::{ChangeKind, FeedStart};
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let mut feed = db.changes(FeedStart::Now)?;
    /// db.put("k", "v")?;
    /// let c = feed.next_timeout(Duration::from_secs(5))?.expect("a change");
    /// assert!(matches!(c.kind, ChangeKind::Put { ref key, .. } if key == b"k"));
    /// assert_eq!(feed.next_timeout(Duration::ZERO)?, None);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::ChangesLost`] when the next change is no longer in the log
    /// (compaction removed it: start again from a snapshot);
    /// [`Error::Corruption`] for damage in the log; I/O errors.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        // The clock is read only once there is nothing to return at once.
        let mut deadline = None;
        let mut idle = 0;
        loop {
            if let Some(c) = self.pop() {
                return Ok(Some(c));
            }
            let seen = self.signal.as_ref().map(|s| s.end());
            if self.fill(seen)? {
                continue;
            }
            if timeout.is_zero() {
                return Ok(None);
            }
            let now = Instant::now();
            let deadline = *deadline.get_or_insert(now + timeout);
            if now >= deadline {
                return Ok(None);
            }
            match (&self.signal, seen) {
                (Some(s), Some(seen)) => {
                    if s.is_closed() && s.end() == seen {
                        return Ok(None);
                    }
                    if idle < NAPS_BEFORE_WAITING {
                        // A short nap costs the writer nothing; a waiting
                        // reader costs each append a wake-up.
                        idle += 1;
                        std::thread::sleep(NAP.min(deadline - now));
                    } else {
                        s.wait_past(seen, deadline - now);
                    }
                }
                _ => std::thread::sleep(POLL.min(deadline - now)),
            }
        }
    }

    /// The next change if one is there now.
    ///
    /// ```
    /// use cairn::feed::FeedStart;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let mut feed = db.changes(FeedStart::Now)?;
    /// assert!(feed.try_next()?.is_none());
    /// db.delete("k")?; // nothing to delete: nothing logged
    /// db.put("k", "v")?;
    /// assert_eq!(feed.try_next()?.map(|c| c.seq), Some(1));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Changes::next_timeout`].
    pub fn try_next(&mut self) -> Result<Option<Change>> {
        self.next_timeout(Duration::ZERO)
    }

    /// How far behind the log this feed is.
    ///
    /// ```
    /// use cairn::feed::FeedStart;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let mut feed = db.changes(FeedStart::Now)?;
    /// db.put("a", "1")?;
    /// db.put("b", "2")?;
    /// assert_eq!(feed.lag()?.seqs, 2);
    /// feed.try_next()?;
    /// feed.try_next()?;
    /// assert_eq!(feed.lag()?.seqs, 0);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// On a feed without a writer in this process, the errors of reading
    /// the log ahead ([`Error::Corruption`], I/O).
    pub fn lag(&mut self) -> Result<Lag> {
        let newest = match &self.signal {
            Some(s) => s.end().seq,
            None => self.skim_to_end()?,
        };
        let newest = newest.max(self.position.seq);
        Ok(Lag {
            seqs: newest - self.position.seq,
            newest_seq: newest,
        })
    }

    /// Reads ahead (without returning anything) to the end of the files:
    /// the newest change of a whole unit (a batch still being written, or
    /// one that never committed, does not count).
    fn skim_to_end(&mut self) -> Result<u64> {
        if self.skim.is_none() {
            self.skim = Some(self.reader.fork());
        }
        let Some(s) = self.skim.as_mut() else {
            return Ok(0);
        };
        match s.read_whole_units(Limit::Files) {
            Ok(newest) => Ok(newest.unwrap_or(0)),
            Err(e) => {
                self.skim = None;
                Err(e)
            }
        }
    }

    fn pop(&mut self) -> Option<Change> {
        let c = self.queue.pop_front()?;
        let inside = match c.kind {
            ChangeKind::BatchBegin { .. } => true,
            ChangeKind::BatchEnd { .. } => false,
            _ => !self.queue.is_empty(),
        };
        if !inside {
            self.position = c.position();
        }
        Some(c)
    }

    /// Reads the next unit (one change, or a whole batch) into the queue.
    /// Returns whether it did.
    fn fill(&mut self, seen: Option<crate::storage::feed_signal::LogEnd>) -> Result<bool> {
        let limit = seen.map_or(Limit::Files, Limit::Published);
        loop {
            let rec = match self.reader.next(limit)? {
                Next::Record(r) => r,
                Next::Wait => return Ok(false),
            };
            match rec.kind {
                RecordKind::SyncMark => continue,
                RecordKind::BatchBegin => {
                    // Where to come back to if the batch is not whole yet:
                    // its begin record, in the segment just read (the
                    // reader may have left a segment compaction deleted).
                    let start = self.reader.before_last();
                    return self.fill_batch(rec, start, limit);
                }
                RecordKind::BatchCommit => {
                    return Err(self.damage("a batch end without its begin"));
                }
                _ if rec.flags & FLAG_BATCH != 0 => {
                    return Err(self.damage("a batch operation outside a batch"));
                }
                _ => {
                    self.queue.push_back(Change::of(rec)?);
                    return Ok(true);
                }
            }
        }
    }

    /// Reads a batch whose begin record is `begin` up to its commit; puts
    /// the reader back at `start` when the commit is not there yet.
    fn fill_batch(&mut self, begin: Rec, start: Mark, limit: Limit) -> Result<bool> {
        let mut ops = vec![Change::of(begin)?];
        loop {
            let rec = match self.reader.next(limit)? {
                Next::Record(r) => r,
                Next::Wait => {
                    self.reader.reset(start)?;
                    return Ok(false);
                }
            };
            match rec.kind {
                RecordKind::BatchCommit => {
                    ops.push(Change::of(rec)?);
                    self.queue.extend(ops);
                    return Ok(true);
                }
                RecordKind::Put | RecordKind::Tombstone if rec.flags & FLAG_BATCH != 0 => {
                    ops.push(Change::of(rec)?);
                }
                _ => return Err(self.damage("a batch cut short by another record")),
            }
        }
    }

    fn damage(&self, why: &str) -> Error {
        let (id, at) = self.reader.at().unwrap_or((0, 0));
        Error::corruption(
            crate::format::names::segment_path(self.reader.dir(), id),
            at,
            format!("change feed: {why}"),
        )
    }
}

impl Iterator for Changes {
    type Item = Result<Change>;

    /// Blocks until the next change. Ends when the store's last handle in
    /// this process closes (a feed on a snapshot handle never ends).
    fn next(&mut self) -> Option<Result<Change>> {
        loop {
            match self.next_timeout(Duration::from_secs(1)) {
                Ok(Some(c)) => return Some(Ok(c)),
                Ok(None) => {
                    if self.signal.as_ref().is_some_and(|s| s.is_closed()) {
                        return None;
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The changes under a key prefix, from the moment it was made: see
/// [`Db::watch`](crate::Db::watch). Batch boundaries are left out; every
/// item names a key.
#[derive(Debug)]
pub struct Watch {
    changes: Changes,
    prefix: Vec<u8>,
}

impl Watch {
    pub(crate) fn new(changes: Changes, prefix: Vec<u8>) -> Watch {
        Watch { changes, prefix }
    }

    /// The next change under the prefix, waiting at most `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let mut w = db.watch("session/")?;
    /// db.put("other", "x")?;
    /// db.put("session/1", "y")?;
    /// let c = w.next_timeout(Duration::from_secs(5))?.expect("a change");
    /// assert_eq!(c.key(), Some(&b"session/1"[..]));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Changes::next_timeout`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Change>> {
        let deadline = Instant::now() + timeout;
        let mut past_deadline = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.changes.next_timeout(left)? {
                None => return Ok(None),
                Some(c) if c.key().is_some_and(|k| k.starts_with(&self.prefix)) => {
                    return Ok(Some(c))
                }
                // Changes outside the prefix may keep coming: past the
                // deadline, only a bounded number more is looked at.
                Some(_) if left.is_zero() => {
                    past_deadline += 1;
                    if past_deadline > 1024 {
                        return Ok(None);
                    }
                }
                Some(_) => {}
            }
        }
    }

    /// The position after the last change looked at (under the prefix or
    /// not).
    #[must_use]
    pub fn resume_position(&self) -> Position {
        self.changes.resume_position()
    }
}

impl Iterator for Watch {
    type Item = Result<Change>;

    /// Blocks until the next change under the prefix; ends when the store
    /// closes.
    fn next(&mut self) -> Option<Result<Change>> {
        loop {
            match self.changes.next()? {
                Ok(c) if c.key().is_some_and(|k| k.starts_with(&self.prefix)) => {
                    return Some(Ok(c))
                }
                Ok(_) => {}
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
