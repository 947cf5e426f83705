//! Running a blocking call off an async caller's thread.
//!
//! The library has no async runtime of its own, yet its async entry points
//! (`Cache::get_or_insert_with_async`) must not block an executor's worker
//! while a remote store answers. [`offload`] hands a blocking job to a
//! small pool of named threads, started on first use and shared by the
//! process, and returns a future that the job completes through the
//! awaiting task's [`Waker`]: no busy waiting, and it works on any
//! executor. A job that panics does not take its worker with it: the
//! panic is caught and the future resolves to an error.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::util::locks::lock;

/// How many threads the pool runs: remote calls mostly wait on the
/// network, so a few threads keep several in flight.
const THREADS: usize = 4;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool: a channel its workers take jobs from. `None` if no worker
/// could be started.
fn pool() -> Option<&'static Mutex<Sender<Job>>> {
    static POOL: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cairn-offload-{i}"))
                .spawn(move || work(&rx));
            if spawned.is_ok() {
                started += 1;
            }
        }
        (started > 0).then(|| Mutex::new(tx))
    })
    .as_ref()
}

/// A worker: runs jobs until the channel closes (it never does: the
/// sender lives in a static).
fn work(rx: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only to take one job, not while it runs.
        let job = lock(rx).recv();
        match job {
            // `run` catches the job's panic: the worker lives on.
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Where a job leaves its result for the future.
struct Slot<T> {
    result: Option<Result<T>>,
    waker: Option<Waker>,
}

/// The future of an [`offload`]ed job: its result, or an error if it
/// panicked or could not be started.
pub(crate) struct Offload<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

impl<T> Future for Offload<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let mut s = lock(&self.slot);
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    s.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

/// What a panic's payload says, for the error.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string payload".to_owned())
}

/// Runs `job` on the offload pool; the returned future resolves to its
/// result. If the future is dropped first, the job still runs to its end
/// and its result is dropped there.
///
/// # Errors
/// The future resolves to [`Error::Io`] if `job` panicked, or if the
/// pool has no thread (none could be started).
pub(crate) fn offload<T, F>(job: F) -> Offload<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
    }));
    let done = slot.clone();
    let run: Job = Box::new(move || {
        let r = catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|p| {
            Err(Error::Io(std::io::Error::other(format!(
                "a job run off the async caller's thread panicked: {}",
                panic_message(&*p)
            ))))
        });
        let waker = {
            let mut s = lock(&done);
            s.result = Some(r);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    });
    let sent = pool().is_some_and(|tx| lock(tx).send(run).is_ok());
    if !sent {
        lock(&slot).result = Some(Err(Error::Io(std::io::Error::other(
            "no thread to run a blocking call off the async caller's thread",
        ))));
    }
    Offload { slot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::time::{Duration, Instant};

    /// Wakes by unparking the test's thread, and counts its wake-ups.
    struct Unpark(std::thread::Thread, AtomicUsize);

    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.unpark();
        }
    }

    /// Polls `f` to its end, parking between polls; returns the output
    /// and how many times it was polled.
    fn block_on<F: Future>(f: F) -> (F::Output, usize) {
        let w = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
        let waker = Waker::from(w);
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        let mut polls = 0;
        loop {
            polls += 1;
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return (v, polls);
            }
            std::thread::park();
        }
    }

    #[test]
    fn runs_the_job_elsewhere_and_returns_its_result() {
        let me = std::thread::current().id();
        let (r, _) = block_on(offload(move || {
            let name = std::thread::current().name().map(str::to_owned);
            Ok((std::thread::current().id() != me, name))
        }));
        let (elsewhere, name) = r.expect("job");
        assert!(elsewhere);
        assert!(name.is_some_and(|n| n.starts_with("cairn-offload-")));
    }

    #[test]
    fn a_pending_future_is_woken_not_spun() {
        let f = offload(|| {
            std::thread::sleep(Duration::from_millis(200));
            Ok(7)
        });
        let start = Instant::now();
        let (r, polls) = block_on(f);
        assert_eq!(r.expect("job"), 7);
        assert!(start.elapsed() >= Duration::from_millis(150));
        // Once pending, once ready (a spurious unpark may add one or two).
        assert!(polls <= 4, "{polls} polls");
    }

    #[test]
    fn first_poll_returns_at_once() {
        let f = offload(|| {
            std::thread::sleep(Duration::from_millis(300));
            Ok(())
        });
        let w = Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
        let waker = Waker::from(w.clone());
        let mut cx = Context::from_waker(&waker);
        let mut f = std::pin::pin!(f);
        let start = Instant::now();
        assert!(f.as_mut().poll(&mut cx).is_pending());
        assert!(start.elapsed() < Duration::from_millis(200));
        while f.as_mut().poll(&mut cx).is_pending() {
            std::thread::park();
        }
        assert!(
            w.1.load(Ordering::SeqCst) >= 1,
            "completed through the waker"
        );
    }

    #[test]
    fn a_panicking_job_is_an_error_and_the_pool_survives() {
        // More panics than threads: if a panic killed its worker, the
        // later jobs would never run.
        for i in 0..(THREADS * 2) {
            let (r, _) = block_on(offload(move || -> Result<()> { panic!("job {i} broke") }));
            match r {
                Err(Error::Io(e)) => {
                    assert!(e.to_string().contains(&format!("job {i} broke")), "{e}")
                }
                other => panic!("expected an I/O error, got {other:?}"),
            }
        }
        let (r, _) = block_on(offload(|| Ok(1 + 1)));
        assert_eq!(r.expect("job after panics"), 2);
    }

    #[test]
    fn many_jobs_at_once_all_finish() {
        let futures: Vec<_> = (0..64u64)
            .map(|i| {
                offload(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(i * 2)
                })
            })
            .collect();
        let sum: u64 = futures
            .into_iter()
            .map(|f| block_on(f).0.expect("job"))
            .sum();
        assert_eq!(sum, (0..64u64).map(|i| i * 2).sum());
    }

    #[test]
    fn a_dropped_future_lets_the_job_finish() {
        let ran = Arc::new(AtomicUsize::new(0));
        let r2 = ran.clone();
        drop(offload(move || {
            std::thread::sleep(Duration::from_millis(20));
            r2.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }));
        // The pool still works, and runs the dropped job to its end.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ran.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            let _ = block_on(offload(|| Ok(())));
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(ran.load(Ordering::SeqCst), 1);
    }
}
