//! What the writer tells change-feed readers in the same process: where
//! the log's complete records end, and that there is more to read.
//!
//! The writer never waits for a reader. It publishes its end position
//! through a sequence lock (two atomics and a counter, no lock taken), and
//! wakes readers only when one is waiting: the condition variable's
//! mutex is taken only then, so a store with no waiting reader pays two
//! atomic stores and a load per append.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::util::locks::lock;

/// Where the writer's log ends, as last published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogEnd {
    /// The active segment.
    pub segment: u32,
    /// The end of its last complete append: every record before it is
    /// whole, and a batch is never cut by it.
    pub offset: u64,
    /// The sequence number of the newest record before it (0: none yet).
    pub seq: u64,
}

/// The writer's published end, and the readers' wake-up.
#[derive(Debug)]
pub(crate) struct FeedSignal {
    /// Even while `end`/`seq` are stable; odd while the writer changes them.
    version: AtomicU64,
    /// Segment id (high 32 bits) and offset (low 32; segments are < 4 GiB).
    end: AtomicU64,
    seq: AtomicU64,
    /// Readers blocked in [`FeedSignal::wait_past`].
    waiters: AtomicUsize,
    lock: Mutex<()>,
    cv: Condvar,
    /// Set when the store closes: waiting readers return.
    closed: AtomicBool,
}

impl FeedSignal {
    /// A signal whose log ends at `end`.
    pub(crate) fn new(end: LogEnd) -> FeedSignal {
        FeedSignal {
            version: AtomicU64::new(0),
            end: AtomicU64::new(pack(end.segment, end.offset)),
            seq: AtomicU64::new(end.seq),
            waiters: AtomicUsize::new(0),
            lock: Mutex::new(()),
            cv: Condvar::new(),
            closed: AtomicBool::new(false),
        }
    }

    /// The writer's side (under the writer lock: one publisher at a
    /// time): the log now ends at `end`. Wakes waiting readers.
    pub(crate) fn publish(&self, end: LogEnd) {
        let v = self.version.load(Ordering::Relaxed);
        self.version.store(v + 1, Ordering::Relaxed);
        std::sync::atomic::fence(Ordering::Release);
        self.end
            .store(pack(end.segment, end.offset), Ordering::Relaxed);
        self.seq.store(end.seq, Ordering::Relaxed);
        self.version.store(v + 2, Ordering::Release);
        self.wake();
    }

    /// Wakes every waiting reader (for a new end, or the close).
    fn wake(&self) {
        // SeqCst pairs with the reader's increment of `waiters` followed by
        // its read of the end: either the reader sees the new end, or this
        // load sees the reader and wakes it under the mutex it waits with.
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _g = lock(&self.lock);
            self.cv.notify_all();
        }
    }

    /// The store closed: waiting readers return, and no reader waits again.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _g = lock(&self.lock);
        self.cv.notify_all();
    }

    /// Whether the store closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The end as last published, read consistently.
    pub(crate) fn end(&self) -> LogEnd {
        loop {
            let v1 = self.version.load(Ordering::Acquire);
            let end = self.end.load(Ordering::Relaxed);
            let seq = self.seq.load(Ordering::Relaxed);
            std::sync::atomic::fence(Ordering::Acquire);
            let v2 = self.version.load(Ordering::Relaxed);
            if v1 == v2 && v1.is_multiple_of(2) {
                let (segment, offset) = unpack(end);
                return LogEnd {
                    segment,
                    offset,
                    seq,
                };
            }
            std::hint::spin_loop();
        }
    }

    /// Waits until the end differs from `seen`, the store closes, or
    /// `timeout` passes; returns the end then.
    pub(crate) fn wait_past(&self, seen: LogEnd, timeout: Duration) -> LogEnd {
        if timeout.is_zero() || self.is_closed() {
            return self.end();
        }
        let deadline = std::time::Instant::now() + timeout;
        let mut g = lock(&self.lock);
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // Pairs with the fence in `wake`: either this reader's read of the
        // end below sees the writer's new end, or the writer sees it waiting.
        std::sync::atomic::fence(Ordering::SeqCst);
        let end = loop {
            let end = self.end();
            let now = std::time::Instant::now();
            if end != seen || self.is_closed() || now >= deadline {
                break end;
            }
            g = match self.cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        };
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        drop(g);
        end
    }
}

fn pack(segment: u32, offset: u64) -> u64 {
    (u64::from(segment) << 32) | (offset & 0xFFFF_FFFF)
}

fn unpack(v: u64) -> (u32, u64) {
    ((v >> 32) as u32, v & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn at(segment: u32, offset: u64, seq: u64) -> LogEnd {
        LogEnd {
            segment,
            offset,
            seq,
        }
    }

    #[test]
    fn publishes_and_reads_back() {
        let s = FeedSignal::new(at(1, 32, 0));
        assert_eq!(s.end(), at(1, 32, 0));
        s.publish(at(7, 4_000_000_000, 99));
        assert_eq!(s.end(), at(7, 4_000_000_000, 99));
    }

    #[test]
    fn a_waiting_reader_wakes_on_publish_and_on_close() {
        let s = Arc::new(FeedSignal::new(at(1, 32, 0)));
        let r = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_past(at(1, 32, 0), Duration::from_secs(30)))
        };
        while s.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        s.publish(at(1, 80, 1));
        assert_eq!(r.join().expect("reader"), at(1, 80, 1));

        let r = {
            let s = s.clone();
            std::thread::spawn(move || s.wait_past(at(1, 80, 1), Duration::from_secs(30)))
        };
        while s.waiters.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        s.close();
        assert_eq!(r.join().expect("reader"), at(1, 80, 1));
        assert!(s.is_closed());
    }

    #[test]
    fn a_wait_times_out_with_the_same_end() {
        let s = FeedSignal::new(at(1, 32, 0));
        let t = std::time::Instant::now();
        assert_eq!(
            s.wait_past(at(1, 32, 0), Duration::from_millis(20)),
            at(1, 32, 0)
        );
        assert!(t.elapsed() >= Duration::from_millis(20));
    }
}
