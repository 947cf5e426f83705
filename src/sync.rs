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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// The active segment's file and how far it has been written.
pub(crate) struct Active {
    pub id: u32,
    /// The segment's salt, bound into every record's checksum.
    pub salt: u32,
    pub file: Arc<dyn crate::vfs::VFile>,
    /// Copy of the newest bytes, for reads without a system call.
    pub tail: Option<std::sync::Arc<crate::tailcache::TailCache>>,
    /// End of the last complete append.
    pub len: AtomicU64,
    /// How much of the segment a completed fsync has made durable.
    pub synced: AtomicU64,
}

/// How long a sync leader waits at most for writers that are appending.
const LEADER_WAIT_US: u64 = 200;

/// A writer counted as appending (see [`GroupCommit::appending`]).
pub(crate) struct Appending<'a>(&'a AtomicU64);

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A position in the log: (segment id, byte offset). Ordered.
pub(crate) type Pos = (u32, u64);

struct State {
    durable: Pos,
    syncing: bool,
    failed: Option<String>,
}

pub(crate) struct GroupCommit {
    /// Writers between asking for the writer lock and releasing it.
    appending: AtomicU64,
    state: Mutex<State>,
    cv: Condvar,
    current: Mutex<Arc<Active>>,
    pub fsyncs: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What waiting for durability found.
pub(crate) enum SyncError {
    /// This call's own fsync failed.
    Failed(std::io::Error),
    /// An earlier fsync failed; the cause.
    Poisoned(String),
}

impl GroupCommit {
    pub(crate) fn new(active: Arc<Active>) -> GroupCommit {
        let durable = (active.id, active.len.load(Ordering::Acquire));
        GroupCommit {
            appending: AtomicU64::new(0),
            state: Mutex::new(State {
                durable,
                syncing: false,
                failed: None,
            }),
            cv: Condvar::new(),
            current: Mutex::new(active),
            fsyncs: AtomicU64::new(0),
        }
    }

    /// Counts a writer as appending until the returned value is dropped.
    pub(crate) fn appending(&self) -> Appending<'_> {
        self.appending.fetch_add(1, Ordering::AcqRel);
        Appending(&self.appending)
    }

    /// The active segment, for a sync leader.
    pub(crate) fn current(&self) -> Arc<Active> {
        lock(&self.current).clone()
    }

    /// Switches to a new active segment. The caller has already synced the
    /// old one completely and called [`GroupCommit::mark_durable`].
    pub(crate) fn set_current(&self, active: Arc<Active>) {
        *lock(&self.current) = active;
    }

    /// Records that everything up to `pos` is durable.
    pub(crate) fn mark_durable(&self, pos: Pos) {
        let mut st = lock(&self.state);
        if pos > st.durable {
            st.durable = pos;
        }
        drop(st);
        self.cv.notify_all();
    }

    /// Records a failed fsync that did not go through [`GroupCommit::wait_durable`].
    pub(crate) fn mark_failed(&self, cause: String) {
        let mut st = lock(&self.state);
        st.failed.get_or_insert(cause);
        drop(st);
        self.cv.notify_all();
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
        loop {
            if let Some(cause) = &st.failed {
                return Err(SyncError::Poisoned(cause.clone()));
            }
            if st.durable >= target {
                return Ok(());
            }
            if st.syncing {
                st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            st.syncing = true;
            drop(st);
            // Writers already appending join this fsync instead of waiting a
            // whole round for the next one. A lone writer finds none and
            // syncs at once; the wait is bounded in any case.
            let t = std::time::Instant::now();
            while self.appending.load(Ordering::Acquire) > 0
                && t.elapsed() < std::time::Duration::from_micros(LEADER_WAIT_US)
            {
                std::thread::yield_now();
            }
            let active = self.current();
            let upto = active.len.load(Ordering::Acquire);
            let result = active.file.sync_data();
            self.fsyncs.fetch_add(1, Ordering::Relaxed);
            st = lock(&self.state);
            st.syncing = false;
            match result {
                Ok(()) => {
                    active.synced.fetch_max(upto, Ordering::AcqRel);
                    if (active.id, upto) > st.durable {
                        st.durable = (active.id, upto);
                    }
                    self.cv.notify_all();
                }
                Err(e) => {
                    st.failed = Some(format!("fdatasync of segment {} failed: {e}", active.id));
                    self.cv.notify_all();
                    return Err(SyncError::Failed(e));
                }
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
