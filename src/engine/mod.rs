//! The engine behind a [`Db`](crate::Db) handle: the [`Core`] struct and
//! the few methods every part of it uses. The rest lives beside it:
//!
//! * `open.rs`: opening a store on top of what recovery returns;
//! * `write.rs`: the write path, from a put to its group-commit fsync;
//! * `read.rs`: the read path, from the index to a segment;
//! * `background.rs`: the background thread (periodic fsync, hint files,
//!   the expiry sweep), the write stall and closing;
//! * `checkpoint.rs`: writing the index checkpoint, at a clean close and
//!   while the store runs;
//! * `warm_up.rs`: the warm-up after open (reading the log once, so that
//!   the first reads after a cold restart are served from the page cache);
//! * `txn.rs`: read-modify-write transactions;
//! * `backup.rs`: the consistent copy behind `Db::backup_to`.

mod background;
mod backup;
mod checkpoint;
pub(crate) use checkpoint::CheckpointBy;
mod open;
mod read;
pub(crate) mod txn;
mod warm_up;
mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::fs::LockGuard;
use crate::index::keydir::KeyDir;
use crate::options::Options;
use crate::recovery::RecoveryReport;
use crate::storage::feed_signal::FeedSignal;
use crate::storage::group_commit::{ActiveSegment, GroupCommit};
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;
use crate::util::locks::lock;

/// State only the writer touches.
pub(crate) struct Writer {
    active: Arc<ActiveSegment>,
    /// Bytes of the active segment file that exist and are durable: the
    /// written records plus a zero-filled, fsynced region ahead of them.
    /// Overwriting zeros that are already on disk lets `fdatasync` skip the
    /// file-size metadata update, which makes durable writes much cheaper.
    allocated: u64,
    /// Preallocation ran out of space in this segment: records extend the
    /// file themselves until the next segment (see `Core::preallocate`).
    preallocation_off: bool,
    next_seq: u64,
    buf: Vec<u8>,
    /// Scratch space for per-segment dead-byte updates.
    dead: Vec<(u32, u64)>,
    /// The durable length the newest sync mark in the active segment holds.
    marked: u64,
    /// Bytes of the sync mark at the start of `buf`, if any.
    mark_bytes: u64,
    /// The active segment's length when it ends with the sync marks of a
    /// clean close (0: it does not): a close that wrote nothing since adds
    /// no new ones.
    closed_end: u64,
}

/// The segments an index checkpoint covers (see `Core::ckpt_cover`).
pub(crate) struct CheckpointCover {
    /// Its active segment: replay reads it from its cuts on.
    pub(crate) active: u32,
    /// Every segment it covers but the active one, after its compaction
    /// deltas: their slots are in it, so compaction may rewrite them.
    pub(crate) sealed: std::collections::BTreeSet<u32>,
}

impl CheckpointCover {
    /// Whether compaction may take segment `id` and tell the checkpoint.
    pub(crate) fn allows(&self, id: u32) -> bool {
        id != self.active && self.sealed.contains(&id)
    }
}

/// Work for the background thread.
#[derive(Default)]
struct BgState {
    stop: bool,
    hint_jobs: Vec<u32>,
    /// A segment was sealed since automatic compaction last looked.
    sealed: bool,
    /// Recovery kept keys that expired while the store was closed: the
    /// first expiry sweep runs at once, to log their expirations.
    sweep_at_start: bool,
    /// `bytes_written` when the last index checkpoint was written.
    ckpt_mark: u64,
    /// Log bytes no checkpoint covered at that mark (at open: what the
    /// open replayed, or everything when it used none).
    ckpt_owed: u64,
    /// The size in bytes of the checkpoint on disk (its compaction
    /// deltas included): where the next delta goes.
    ckpt_len: u64,
}

/// The engine behind every clone of a [`Db`](crate::Db): the index, the
/// segments, the writer and the background work of one open store.
///
/// Where its methods live: opening in `open.rs`, the write path in
/// `write.rs`, the read path in `read.rs`, the background thread, the
/// expiry sweep, the write stall and closing in `background.rs`, and
/// compaction in `compaction/`.
pub(crate) struct Core {
    // Identity and configuration.
    /// The store directory.
    pub(crate) dir: PathBuf,
    /// The options the store was opened with.
    pub(crate) opts: Options,
    /// What recovery found and did at open.
    pub(crate) report: RecoveryReport,
    /// The directory lock (`None` for a snapshot, and once closed).
    lock_file: Mutex<Option<LockGuard>>,

    // The data: the index, the segments and their accounting.
    /// Where the newest record of every key is.
    pub(crate) keydir: KeyDir,
    /// Every segment open for reading, by id (the active one included).
    pub(crate) segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    /// Size and dead bytes of every segment (see [`SegmentSpace`]).
    pub(crate) seg_stats: Mutex<BTreeMap<u32, SegmentSpace>>,
    /// The next unused segment id (for the writer and for compaction).
    pub(crate) next_file_id: AtomicU32,

    // The write path.
    /// The writer's state, behind the writer lock (`None`: read-only).
    writer: Option<Mutex<Writer>>,
    /// Group commit: the fsyncs of the active segment, shared by every
    /// writer waiting for one (`None`: read-only).
    group: Option<GroupCommit>,
    /// Where the log ends, for change-feed readers in this process.
    pub(crate) feed: Arc<FeedSignal>,

    // Health.
    /// Set after a failed write or fsync: every later write fails.
    poisoned: AtomicBool,
    /// Why the handle was poisoned.
    poison_cause: Mutex<Option<String>>,
    /// Set by `close`: every later call fails with `Error::Closed`.
    closed: AtomicBool,

    // Background work and the write stall.
    /// Held while a compaction runs: one at a time.
    pub(crate) compaction: Mutex<()>,
    /// A thread is writing an index checkpoint (see `Core::checkpoint`).
    checkpointing: AtomicBool,
    /// What the index checkpoint on disk covers, while there is one this
    /// handle keeps up to date (`None`: none). Automatic compaction takes
    /// only segments it covers: replay reads the others in log order.
    pub(crate) ckpt_cover: Mutex<Option<CheckpointCover>>,
    /// Work for the background thread, and its stop flag.
    bg: Mutex<BgState>,
    /// Wakes the background thread and automatic compaction.
    bg_cv: Condvar,
    /// Writers wait (outside the writer lock) while this is set: disk use
    /// is past the space-amplification bound and compaction is catching up.
    stall: AtomicBool,
    /// The lock `stall_cv` waits with.
    stall_lock: Mutex<()>,
    /// Wakes writers waiting in a stall.
    stall_cv: Condvar,

    // Counters for `Stats`.
    /// Record bytes appended since open.
    bytes_written: AtomicU64,
    /// Expired keys removed from the index since open.
    expired_removed: AtomicU64,
    /// Writes that waited in a stall.
    stalls: AtomicU64,
    /// Time writes spent waiting in stalls.
    stall_ns: AtomicU64,
    /// What the warm-up after open has read.
    warm_up: warm_up::WarmUp,
}

impl Core {
    fn now(&self) -> u64 {
        self.opts.clock.now_unix_ms()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn poison(&self, cause: String) {
        log::error!("cairn store {} is poisoned: {cause}", self.dir.display());
        lock(&self.poison_cause).get_or_insert(cause.clone());
        self.poisoned.store(true, Ordering::Release);
        if let Some(g) = &self.group {
            g.mark_failed(cause);
        }
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned {
            cause: lock(&self.poison_cause).clone().unwrap_or_default(),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Locks the writer after checking that writes are allowed.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        crate::engine::txn::check_not_inside()?;
        self.check_open()?;
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let guard = lock(w);
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        self.check_open()?;
        Ok(guard)
    }
}
