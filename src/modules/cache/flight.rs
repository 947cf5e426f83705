//! Singleflight: one load per key at a time, its outcome shared with
//! the callers that wait for it, threads or futures; and the error of a
//! read-through call.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::Error;
use crate::util::locks;
use crate::util::locks::lock;

/// The error of a read-through call: the loader's own error, shared by
/// every caller that waited for it, or the store's.
#[derive(Debug)]
pub enum LoadError<E> {
    /// The loader failed; nothing was cached.
    Loader(Arc<E>),
    /// The store failed.
    Store(Error),
}

impl<E: std::fmt::Display> std::fmt::Display for LoadError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Loader(e) => write!(f, "cache loader failed: {e}"),
            LoadError::Store(e) => write!(f, "cache store failed: {e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for LoadError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoadError::Loader(e) => Some(&**e),
            LoadError::Store(e) => Some(e),
        }
    }
}

impl<E> From<Error> for LoadError<E> {
    fn from(e: Error) -> Self {
        LoadError::Store(e)
    }
}

pub(super) type Shared = Arc<dyn Any + Send + Sync>;

/// The outcome of a load, shared with waiters.
#[derive(Clone)]
pub(super) enum Outcome {
    Loaded(Option<Arc<Vec<u8>>>),
    Failed(Shared),
    /// The loading caller panicked or was cancelled: wait no more, retry.
    Abandoned,
}

#[derive(Default)]
pub(super) struct FlightState {
    outcome: Option<Outcome>,
    wakers: Vec<Waker>,
}

#[derive(Default)]
pub(super) struct Flight {
    state: Mutex<FlightState>,
    done: Condvar,
    /// Set (under the writer lock) when the key is written or invalidated
    /// while this load runs: its result is then returned but not cached.
    pub(super) stale: std::sync::atomic::AtomicBool,
}

impl Flight {
    pub(super) fn finish(&self, o: Outcome) {
        let wakers = {
            let mut s = lock(&self.state);
            s.outcome = Some(o);
            std::mem::take(&mut s.wakers)
        };
        self.done.notify_all();
        for w in wakers {
            w.wake();
        }
    }

    pub(super) fn wait(&self) -> Outcome {
        let mut s = lock(&self.state);
        loop {
            if let Some(o) = &s.outcome {
                return o.clone();
            }
            s = locks::wait(&self.done, s);
        }
    }
}

/// Waits for a flight without blocking a thread.
pub(super) struct FlightWait(pub(super) Arc<Flight>);

impl Future for FlightWait {
    type Output = Outcome;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let mut s = lock(&self.0.state);
        match &s.outcome {
            Some(o) => Poll::Ready(o.clone()),
            None => {
                if !s.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                    s.wakers.push(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
