//! Read-through calls: [`Cache::get_or_insert_with`] and its variants,
//! with singleflight, stale-while-revalidate and early refresh.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::modules::cache::entry::{Stored, KIND_NOT_FOUND, KIND_VALUE};
use crate::modules::cache::flight::{Flight, FlightWait, LoadError, Outcome};
use crate::modules::cache::inner::{Cache, Inner};
use crate::modules::cache::stats::bump;
use crate::util::locks::lock;
use crate::util::offload::offload;

/// The leader's claim on a key's flight: finishing it, or dropping it
/// (panic, cancelled future), releases the waiters.
struct Leader {
    cache: Arc<Inner>,
    key: Vec<u8>,
    flight: Arc<Flight>,
    done: bool,
}

impl Leader {
    fn finish(mut self, o: Outcome) {
        self.release(o);
        self.done = true;
    }

    fn release(&self, o: Outcome) {
        let mut flights = lock(&self.cache.flights);
        if flights
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
        {
            flights.remove(&self.key);
        }
        drop(flights);
        self.flight.finish(o);
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if !self.done {
            self.release(Outcome::Abandoned);
        }
    }
}

/// Whether this caller loads, or waits for another.
enum Role {
    Lead(Leader),
    Wait(Arc<Flight>),
}

/// See [`Cache::plan`].
enum Plan {
    Done(Option<Vec<u8>>),
    Load(Leader),
    Wait(Arc<Flight>),
}

impl Cache {
    /// Becomes the loader of `key`, or finds the caller already loading it.
    fn role(&self, key: &[u8]) -> Role {
        let mut flights = lock(&self.0.flights);
        if let Some(f) = flights.get(key) {
            return Role::Wait(f.clone());
        }
        let flight = Arc::new(Flight::default());
        flights.insert(key.to_vec(), flight.clone());
        Role::Lead(Leader {
            cache: self.0.clone(),
            key: key.to_vec(),
            flight,
            done: false,
        })
    }

    /// Whether XFetch says to refresh a fresh entry now.
    fn early(&self, s: &Stored, now: u64) -> bool {
        let beta = self.0.opts.early_refresh_beta;
        if beta <= 0.0 || s.fresh_until == 0 || s.load_ms == 0 {
            return false;
        }
        let r = lock(&self.0.rng).unit_open0();
        let gap = f64::from(s.load_ms) * beta * -r.ln();
        now as f64 + gap >= s.fresh_until as f64
    }

    /// What a read-through call does first: an answer, or a load to run
    /// (as leader, or waiting), with the stale answer to give if another
    /// caller is already loading.
    fn plan<E>(&self, key: &[u8]) -> Result<Plan, LoadError<E>> {
        // A read-through call may wait for a loader that needs the writer
        // lock: refuse inside a transaction instead of deadlocking.
        self.check_can_wait()?;
        lock(&self.0.tracker).record_access(key);
        let (now, found) = self.read(key)?;
        match found {
            Some(s) if s.is_fresh(now) => {
                if self.early(&s, now) {
                    if let Role::Lead(l) = self.role(key) {
                        bump(&self.0.stats.early_refreshes);
                        bump(&self.0.stats.misses);
                        return Ok(Plan::Load(l));
                    }
                }
                bump(&self.0.stats.hits);
                Ok(Plan::Done(s.answer()))
            }
            Some(stale) => {
                // Within the grace window: one caller reloads, the others
                // get the stale value meanwhile.
                bump(&self.0.stats.misses);
                match self.role(key) {
                    Role::Lead(l) => Ok(Plan::Load(l)),
                    Role::Wait(_) => {
                        bump(&self.0.stats.stale_serves);
                        Ok(Plan::Done(stale.answer()))
                    }
                }
            }
            None => {
                bump(&self.0.stats.misses);
                Ok(match self.role(key) {
                    Role::Lead(l) => Plan::Load(l),
                    Role::Wait(f) => Plan::Wait(f),
                })
            }
        }
    }

    /// [`Cache::plan`] for a caller that needs a value: a cached "not
    /// found" (from `get_or_find_with`) is loaded like a miss.
    fn plan_value<E>(&self, key: &[u8]) -> Result<Plan, LoadError<E>> {
        Ok(match self.plan::<E>(key)? {
            Plan::Done(None) => match self.role(key) {
                Role::Lead(l) => Plan::Load(l),
                Role::Wait(f) => Plan::Wait(f),
            },
            p => p,
        })
    }

    /// Stores a loader's result and shares it with the waiters.
    fn settle<E: Send + Sync + 'static>(
        &self,
        leader: Leader,
        loaded: std::result::Result<Option<Vec<u8>>, E>,
        ttl: Duration,
        took: Duration,
    ) -> Result<Option<Vec<u8>>, LoadError<E>> {
        match loaded {
            Err(e) => {
                bump(&self.0.stats.load_errors);
                let e = Arc::new(e);
                leader.finish(Outcome::Failed(e.clone()));
                Err(LoadError::Loader(e))
            }
            Ok(v) => {
                bump(&self.0.stats.loads);
                let load_ms = u32::try_from(took.as_millis()).unwrap_or(u32::MAX).max(1);
                let key = leader.key.clone();
                let stored = match &v {
                    Some(v) => self.put_entry(
                        &key,
                        KIND_VALUE,
                        v,
                        Some(ttl),
                        load_ms,
                        Some(&leader.flight),
                    ),
                    None => match self.0.opts.negative_ttl {
                        Some(nt) => self.put_entry(
                            &key,
                            KIND_NOT_FOUND,
                            b"",
                            Some(nt),
                            load_ms,
                            Some(&leader.flight),
                        ),
                        None => Ok(()),
                    },
                };
                let shared = v.map(Arc::new);
                leader.finish(Outcome::Loaded(shared.clone()));
                stored?;
                Ok(shared.map(Arc::unwrap_or_clone))
            }
        }
    }

    /// What a waiter makes of the leader's outcome; `None`: retry.
    fn waited<E: Send + Sync + 'static>(
        o: Outcome,
    ) -> Option<Result<Option<Vec<u8>>, LoadError<E>>> {
        match o {
            Outcome::Loaded(v) => Some(Ok(v.map(Arc::unwrap_or_clone))),
            Outcome::Failed(e) => match e.downcast::<E>() {
                Ok(e) => Some(Err(LoadError::Loader(e))),
                // A loader with another error type: load for ourselves.
                Err(_) => None,
            },
            Outcome::Abandoned => None,
        }
    }

    /// The value of `key`, or else the result of `loader`, cached for
    /// `ttl`. Concurrent misses on the same key run one loader; the others
    /// wait and share its value or its error. A loader error is returned
    /// and not cached.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// let v = cache.get_or_insert_with("k", Duration::from_secs(60), || Ok::<_, std::io::Error>(b"loaded".to_vec()))?;
    /// assert_eq!(v, b"loaded");
    /// let again = cache.get_or_insert_with("k", Duration::from_secs(60), || -> Result<Vec<u8>, std::io::Error> {
    ///     unreachable!("cached")
    /// })?;
    /// assert_eq!(again, b"loaded");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`LoadError::Loader`] with the loader's error (its own, or the one
    /// it waited for), [`LoadError::Store`] when the store fails.
    pub fn get_or_insert_with<E: Send + Sync + 'static>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: impl FnOnce() -> std::result::Result<Vec<u8>, E>,
    ) -> Result<Vec<u8>, LoadError<E>> {
        let key = key.as_ref();
        loop {
            match self.plan_value::<E>(key)? {
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader().map(Some);
                    let v = self.settle(leader, loaded, ttl, start.elapsed())?;
                    return Ok(v.unwrap_or_default());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(f.wait()) {
                        match r? {
                            Some(v) => return Ok(v),
                            None => continue,
                        }
                    }
                }
                Plan::Done(Some(v)) => return Ok(v),
                // plan_value never answers "not found".
                Plan::Done(None) => continue,
            }
        }
    }

    /// As [`Cache::get_or_insert_with`] for a loader that can answer "not
    /// found" (`Ok(None)`). That answer is cached for
    /// [`CacheOptions::negative_ttl`](super::CacheOptions::negative_ttl) when it is set, and not cached
    /// otherwise.
    ///
    /// ```
    /// # use std::time::Duration;
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Db::open(dir.path())?;
    /// let cache = cairn::cache::CacheOptions::new().negative_ttl(Duration::from_secs(5)).open(db)?;
    /// let lookup = || Ok::<_, std::io::Error>(None); // no such user
    /// assert_eq!(cache.get_or_find_with("user:9", Duration::from_secs(60), lookup)?, None);
    /// let again = cache.get_or_find_with("user:9", Duration::from_secs(60), || -> Result<Option<Vec<u8>>, std::io::Error> {
    ///     unreachable!("the miss is cached")
    /// })?;
    /// assert_eq!(again, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Cache::get_or_insert_with`].
    pub fn get_or_find_with<E: Send + Sync + 'static>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: impl FnOnce() -> std::result::Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, LoadError<E>> {
        let key = key.as_ref();
        loop {
            match self.plan::<E>(key)? {
                Plan::Done(v) => return Ok(v),
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader();
                    return self.settle(leader, loaded, ttl, start.elapsed());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(f.wait()) {
                        return r;
                    }
                }
            }
        }
    }

    /// [`Cache::get_or_insert_with`] for async code: the loader is a
    /// future, and waiting for another caller's load does not block a
    /// thread. It works on any executor.
    ///
    /// On a remote store ([`Store::is_remote`](crate::backend::Store::is_remote)),
    /// the store's calls (the first read, the final write) run on a small
    /// pool of threads of the library's own and are awaited, so the
    /// network never blocks the executor. On the embedded store they run
    /// inline: the read is a memory lookup, and the write blocks for as
    /// long as a write takes under the store's
    /// [`SyncPolicy`](crate::SyncPolicy): open caches with
    /// `SyncPolicy::EveryMillis` or `Never`, where it is a memory copy.
    /// If the loading future is dropped, a waiter takes over the load.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # fn block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     struct W(std::thread::Thread);
    /// #     impl std::task::Wake for W { fn wake(self: std::sync::Arc<Self>) { self.0.unpark() } }
    /// #     let waker = std::sync::Arc::new(W(std::thread::current())).into();
    /// #     let mut cx = std::task::Context::from_waker(&waker);
    /// #     let mut f = std::pin::pin!(f);
    /// #     loop { if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; } std::thread::park(); }
    /// # }
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().sync_policy(cairn::SyncPolicy::EveryMillis(100)).open(dir.path())?;
    /// let cache = cairn::cache::Cache::open(db)?;
    /// let v = block_on(cache.get_or_insert_with_async("k", Duration::from_secs(60), || async {
    ///     Ok::<_, std::io::Error>(b"fetched".to_vec())
    /// }))?;
    /// assert_eq!(v, b"fetched");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Cache::get_or_insert_with`].
    pub async fn get_or_insert_with_async<E, F, Fut>(
        &self,
        key: impl AsRef<[u8]>,
        ttl: Duration,
        loader: F,
    ) -> Result<Vec<u8>, LoadError<E>>
    where
        E: Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<Vec<u8>, E>>,
    {
        let key = key.as_ref();
        let remote = self.0.store.is_remote();
        loop {
            let plan = if remote {
                let (cache, key) = (self.clone(), key.to_vec());
                offload(move || Ok(cache.plan_value::<E>(&key))).await??
            } else {
                self.plan_value::<E>(key)?
            };
            match plan {
                Plan::Load(leader) => {
                    let start = Instant::now();
                    let loaded = loader().await.map(Some);
                    let took = start.elapsed();
                    let v = if remote {
                        let cache = self.clone();
                        offload(move || Ok(cache.settle(leader, loaded, ttl, took))).await??
                    } else {
                        self.settle(leader, loaded, ttl, took)?
                    };
                    return Ok(v.unwrap_or_default());
                }
                Plan::Wait(f) => {
                    if let Some(r) = Self::waited::<E>(FlightWait(f).await) {
                        if let Some(v) = r? {
                            return Ok(v);
                        }
                    }
                }
                Plan::Done(Some(v)) => return Ok(v),
                // plan_value never answers "not found".
                Plan::Done(None) => {}
            }
        }
    }
}
