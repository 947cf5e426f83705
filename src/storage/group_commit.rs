//! Group commit: concurrent writers share one fdatasync.
//!
//! A writer appends under the writer lock, notes the position it wrote up
//! to, releases the lock and then waits until that position is durable. The
//! first waiter that finds no sync in progress becomes the leader: it reads
//! how far the active segment has been written, fdatasyncs it, and publishes
//! the new durable position to everyone. Writers that appended while the
//! leader was syncing are covered by the next round. A failed sync is never
//! retried: it is recorded, every waiter gets an error and the store is
//! poisoned.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::util::locks::{self, lock};

/// The active segment's file and how far it has been written.
pub(crate) struct ActiveSegment {
    pub id: u32,
    /// The segment's salt, bound into every record's checksum.
    pub salt: u32,
    pub file: Arc<dyn crate::fs::VFile>,
    /// Copy of the newest bytes, for reads without a system call.
    pub tail: Option<std::sync::Arc<crate::storage::tail_cache::TailCache>>,
    /// End of the last complete append.
    pub len: AtomicU64,
    /// How much of the segment a completed fsync has made durable.
    pub synced: AtomicU64,
}

/// A position as one ordered `u64`: segment offsets stay below 4 GiB (see
/// `keydir::MAX_OFFSET`), so (id, offset) packs into the high and low halves.
fn pack(pos: Pos) -> u64 {
    (u64::from(pos.0) << 32) | pos.1.min(u64::from(u32::MAX))
}

/// Bounds of a leader's wait for the writers of a round (see `gather`).
const MIN_GATHER_NS: u64 = 20_000;
const MAX_GATHER_NS: u64 = 1_000_000;

/// A position in the log: (segment id, byte offset). Ordered.
pub(crate) type Pos = (u32, u64);

struct State {
    durable: Pos,
    syncing: bool,
    /// Writers that started waiting since the last round's fsync began
    /// (each has appended by then).
    arrived: u64,
    /// How many writers the last round's fsync was for.
    last_batch: u64,
    /// How long the last fsync took.
    last_sync: Duration,
    /// A leader waits in `gather` until `arrived` reaches this (0: none waits).
    gathering_for: u64,
    /// Followers parked until the next publication (see `publish`).
    waiters: Vec<std::thread::Thread>,
    failed: Option<String>,
}

pub(crate) struct GroupCommit {
    /// Wakes a leader gathering a round (see `gather`).
    gather_cv: Condvar,
    /// `State::durable`, packed by [`pack`], for followers to check without
    /// the lock when they wake.
    durable_packed: AtomicU64,
    /// Bumped at every publication, so that a woken follower knows whether
    /// to look again under the lock.
    epoch: AtomicU64,
    /// Set (for good) when an fsync failed: woken followers check it before
    /// the durable position and go to the lock for the error.
    failed_flag: AtomicBool,
    state: Mutex<State>,

    current: Mutex<Arc<ActiveSegment>>,
    pub fsyncs: AtomicU64,
}

/// What waiting for durability found.
pub(crate) enum SyncError {
    /// This call's own fsync failed.
    Failed(std::io::Error),
    /// An earlier fsync failed; the cause.
    Poisoned(String),
}

impl GroupCommit {
    pub(crate) fn new(active: Arc<ActiveSegment>) -> GroupCommit {
        let durable = (active.id, active.len.load(Ordering::Acquire));
        GroupCommit {
            gather_cv: Condvar::new(),
            durable_packed: AtomicU64::new(pack(durable)),
            epoch: AtomicU64::new(0),
            failed_flag: AtomicBool::new(false),
            state: Mutex::new(State {
                durable,
                syncing: false,
                arrived: 0,
                last_batch: 1,
                last_sync: Duration::ZERO,
                gathering_for: 0,
                waiters: Vec::new(),
                failed: None,
            }),
            current: Mutex::new(active),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Before a leader's fsync: when the last round served several writers,
    /// wait until as many have appended again (they are typically on their
    /// way back with their next write), for at most half an fsync's time.
    /// One writer alone never waits. Without this, under steady concurrent
    /// load the rounds alternate between one writer and all the others.
    fn gather<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        let want = st.last_batch;
        if want <= 1 || st.arrived >= want {
            return st;
        }
        let nanos = u64::try_from(st.last_sync.as_nanos() / 2).unwrap_or(u64::MAX);
        let cap = Duration::from_nanos(nanos.clamp(MIN_GATHER_NS, MAX_GATHER_NS));
        let deadline = Instant::now() + cap;
        st.gathering_for = want;
        while st.arrived < want {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = locks::wait_timeout(&self.gather_cv, st, left);
        }
        st.gathering_for = 0;
        st
    }

    /// The active segment, for a sync leader.
    pub(crate) fn current(&self) -> Arc<ActiveSegment> {
        lock(&self.current).clone()
    }

    /// Switches to a new active segment. The caller has already synced the
    /// old one completely and called [`GroupCommit::mark_durable`].
    pub(crate) fn set_current(&self, active: Arc<ActiveSegment>) {
        *lock(&self.current) = active;
    }

    /// Records that everything up to `pos` is durable.
    pub(crate) fn mark_durable(&self, pos: Pos) {
        let mut st = lock(&self.state);
        // After a failed fsync nothing is ever reported durable again.
        if pos > st.durable && st.failed.is_none() {
            st.durable = pos;
        }
        self.publish(st);
    }

    /// Records a failed fsync that did not go through [`GroupCommit::wait_durable`].
    pub(crate) fn mark_failed(&self, cause: String) {
        let mut st = lock(&self.state);
        st.failed.get_or_insert(cause);
        self.publish(st);
    }

    /// Makes `st.durable` (and `st.failed`) visible to waiting followers and
    /// wakes them all; each returns if its write is now durable, or looks
    /// again under the lock (it may lead the next round). Waking followers
    /// one by one with `unpark`, instead of a condition variable whose
    /// waiters must each take the lock again in turn, keeps a round's
    /// wake-ups from queueing behind each other.
    fn publish(&self, mut st: MutexGuard<'_, State>) {
        self.durable_packed
            .store(pack(st.durable), Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let waiters = std::mem::take(&mut st.waiters);
        drop(st);
        for t in waiters {
            t.unpark();
        }
    }

    /// Whether everything written so far is durable.
    pub(crate) fn is_clean(&self) -> bool {
        let active = self.current();
        let written = (active.id, active.len.load(Ordering::Acquire));
        lock(&self.state).durable >= written
    }

    /// Blocks until `target` is durable, leading a sync when none is running.
    pub(crate) fn wait_durable(&self, target: Pos) -> Result<(), SyncError> {
        let mut st = lock(&self.state);
        let mut counted = false;
        loop {
            if let Some(cause) = &st.failed {
                return Err(SyncError::Poisoned(cause.clone()));
            }
            if st.durable >= target {
                return Ok(());
            }
            if !counted {
                st.arrived += 1;
                counted = true;
                if st.gathering_for != 0 && st.arrived >= st.gathering_for {
                    self.gather_cv.notify_one();
                }
            }
            if st.syncing {
                st.waiters.push(std::thread::current());
                let epoch = self.epoch.load(Ordering::Acquire);
                drop(st);
                loop {
                    std::thread::park();
                    if self.failed_flag.load(Ordering::Acquire) {
                        break; // the error is read under the lock
                    }
                    if self.durable_packed.load(Ordering::Acquire) >= pack(target) {
                        return Ok(());
                    }
                    if self.epoch.load(Ordering::Acquire) != epoch {
                        break;
                    }
                }
                st = lock(&self.state);
                continue;
            }
            st.syncing = true;
            st = self.gather(st);
            st.last_batch = std::mem::take(&mut st.arrived).max(1);
            drop(st);
            let active = self.current();
            let upto = active.len.load(Ordering::Acquire);
            let started = Instant::now();
            let result = active.file.sync_data();
            let took = started.elapsed();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            st = lock(&self.state);
            st.syncing = false;
            st.last_sync = took;
            match result {
                Ok(()) => {
                    active.synced.fetch_max(upto, Ordering::AcqRel);
                    if (active.id, upto) > st.durable {
                        st.durable = (active.id, upto);
                    }
                    self.publish(st);
                    st = lock(&self.state);
                }
                Err(e) => {
                    st.failed = Some(format!("fdatasync of segment {} failed: {e}", active.id));
                    self.publish(st);
                    return Err(SyncError::Failed(e));
                }
            }
        }
    }

    /// Runs `sync` (an fsync of the active segment outside the rounds: the
    /// writer sealing or extending it) while no round's fsync runs, so that
    /// an fsync error is never reported to one caller and missed by
    /// another, and never runs it after a failed fsync (no retries). On
    /// success everything up to `pos` is durable.
    pub(crate) fn sync_exclusively(
        &self,
        pos: Pos,
        sync: impl FnOnce() -> std::io::Result<()>,
    ) -> Result<(), SyncError> {
        let mut st = lock(&self.state);
        loop {
            if let Some(cause) = &st.failed {
                return Err(SyncError::Poisoned(cause.clone()));
            }
            if !st.syncing {
                break;
            }
            st.waiters.push(std::thread::current());
            let epoch = self.epoch.load(Ordering::Acquire);
            drop(st);
            while self.epoch.load(Ordering::Acquire) == epoch {
                std::thread::park();
            }
            st = lock(&self.state);
        }
        st.syncing = true;
        drop(st);
        let result = sync();
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let mut st = lock(&self.state);
        st.syncing = false;
        match result {
            Ok(()) => {
                if pos > st.durable {
                    st.durable = pos;
                }
                self.publish(st);
                Ok(())
            }
            Err(e) => {
                st.failed = Some(format!("fsync of segment {} failed: {e}", pos.0));
                self.publish(st);
                Err(SyncError::Failed(e))
            }
        }
    }

    /// Makes everything written so far durable.
    pub(crate) fn sync_all(&self) -> Result<(), SyncError> {
        let active = self.current();
        let target = (active.id, active.len.load(Ordering::Acquire));
        self.wait_durable(target)
    }
}
