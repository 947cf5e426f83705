//! The cache's stampede protection and read-through options, on a manual
//! clock: TTL jitter, stale-while-revalidate, XFetch early refresh,
//! negative caching, and warm restarts.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use cairn::cache::{Cache, CacheOptions};
use cairn::{Db, ManualClock, Options, SyncPolicy};
use common::START_MS;

fn db(dir: &std::path::Path, clock: &ManualClock) -> Db {
    Options::new()
        .sync_policy(SyncPolicy::Never)
        .clock(clock.clone())
        .open(dir)
        .expect("open")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn ttl_jitter_spreads_expiries_within_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let cache = CacheOptions::new()
        .ttl_jitter(0.1)
        .seed(3)
        .open(db(dir.path(), &clock))
        .expect("cache");
    for i in 0..1000u32 {
        cache
            .insert(i.to_be_bytes(), "v", Some(ms(1000)))
            .expect("insert");
    }
    let live = |cache: &Cache| {
        (0..1000u32)
            .filter(|i| cache.get(i.to_be_bytes()).expect("get").is_some())
            .count()
    };
    clock.advance(ms(899));
    assert_eq!(live(&cache), 1000, "none expires before 90% of the TTL");
    clock.advance(ms(101)); // 1000 ms: about half are gone
    let at_ttl = live(&cache);
    assert!(
        (300..700).contains(&at_ttl),
        "{at_ttl} of 1000 live at the nominal TTL"
    );
    clock.advance(ms(101));
    assert_eq!(live(&cache), 0, "all expire by 110% of the TTL");
}

#[test]
fn without_jitter_every_entry_expires_at_its_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let cache = Cache::open(db(dir.path(), &clock)).expect("cache");
    for i in 0..100u32 {
        cache
            .insert(i.to_be_bytes(), "v", Some(ms(1000)))
            .expect("insert");
    }
    clock.advance(ms(999));
    assert!((0..100u32).all(|i| cache.get(i.to_be_bytes()).expect("get").is_some()));
    clock.advance(ms(1));
    assert!((0..100u32).all(|i| cache.get(i.to_be_bytes()).expect("get").is_none()));
}

#[test]
fn stale_while_revalidate_serves_stale_while_one_caller_reloads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let cache = CacheOptions::new()
        .stale_while_revalidate(ms(1000))
        .open(db(dir.path(), &clock))
        .expect("cache");
    let ok = |v: &'static str| move || Ok::<_, std::io::Error>(v.as_bytes().to_vec());
    assert_eq!(
        cache
            .get_or_insert_with("k", ms(100), ok("v1"))
            .expect("load"),
        b"v1"
    );
    clock.advance(ms(150)); // expired, inside the grace window
    assert_eq!(cache.get("k").expect("get"), None, "get never serves stale");

    // Caller A reloads and is held inside its loader; meanwhile B and C are
    // served the stale value at once, without running their loaders.
    let (entered_tx, entered_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let other_loads = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let cache = &cache;
        let a = s.spawn(move || {
            cache.get_or_insert_with("k", ms(100), || {
                entered_tx.send(()).expect("send");
                release_rx.recv().expect("release");
                Ok::<_, std::io::Error>(b"v2".to_vec())
            })
        });
        entered_rx.recv().expect("A is loading");
        for _ in 0..2 {
            let v = cache
                .get_or_insert_with("k", ms(100), || {
                    other_loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, std::io::Error>(b"other".to_vec())
                })
                .expect("stale");
            assert_eq!(v, b"v1", "served the stale value");
        }
        release_tx.send(()).expect("release");
        assert_eq!(a.join().expect("A").expect("load"), b"v2");
    });
    assert_eq!(other_loads.load(Ordering::SeqCst), 0);
    let st = cache.stats();
    assert_eq!(st.stale_serves, 2);
    assert_eq!(st.loads, 2);
    assert_eq!(cache.get("k").expect("get"), Some(b"v2".to_vec()));

    // Past the grace window the entry is gone: a plain miss that loads.
    clock.advance(ms(1200));
    assert_eq!(
        cache
            .get_or_insert_with("k", ms(100), ok("v3"))
            .expect("load"),
        b"v3"
    );
    assert_eq!(cache.stats().stale_serves, 2);
}

#[test]
fn xfetch_refreshes_hot_entries_before_they_expire() {
    let refreshes = |beta: f64| {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START_MS);
        let cache = CacheOptions::new()
            .early_refresh_beta(beta)
            .seed(11)
            .open(db(dir.path(), &clock))
            .expect("cache");
        let loads = AtomicUsize::new(0);
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            // A slow backend: XFetch refreshes earlier the longer a load took.
            std::thread::sleep(ms(20));
            Ok::<_, std::io::Error>(b"v".to_vec())
        };
        cache.get_or_insert_with("k", ms(1000), load).expect("load");
        // Far from expiry: no early refresh.
        for _ in 0..50 {
            cache.get_or_insert_with("k", ms(1000), load).expect("hit");
        }
        let far = loads.load(Ordering::SeqCst) - 1;
        // 10 ms before expiry, with loads of about 20 ms.
        clock.advance(ms(990));
        for _ in 0..50 {
            cache.get_or_insert_with("k", ms(1000), load).expect("hit");
        }
        let near = loads.load(Ordering::SeqCst) - 1 - far;
        assert_eq!(cache.stats().early_refreshes as usize, far + near);
        (far, near)
    };
    let (far, near) = refreshes(1.0);
    assert_eq!(far, 0, "no refresh 1 s before expiry after a 20 ms load");
    assert!(near >= 1, "refreshed early near expiry");
    assert_eq!(refreshes(0.0), (0, 0), "beta 0 turns it off");
}

#[test]
fn not_found_is_cached_only_with_a_negative_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let d = db(dir.path(), &clock);
    let loads = AtomicUsize::new(0);
    let missing = || {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<Vec<u8>>, std::io::Error>(None)
    };

    let plain = Cache::open(d.keyspace("plain").expect("keyspace")).expect("cache");
    for _ in 0..3 {
        assert_eq!(
            plain
                .get_or_find_with("u", ms(1000), missing)
                .expect("find"),
            None
        );
    }
    assert_eq!(loads.swap(0, Ordering::SeqCst), 3, "not cached by default");
    assert_eq!(plain.stats().entries, 0);

    let neg = CacheOptions::new()
        .negative_ttl(ms(50))
        .open(d.keyspace("negative").expect("keyspace"))
        .expect("cache");
    for _ in 0..3 {
        assert_eq!(
            neg.get_or_find_with("u", ms(1000), missing).expect("find"),
            None
        );
    }
    assert_eq!(
        loads.swap(0, Ordering::SeqCst),
        1,
        "cached for the negative TTL"
    );
    assert_eq!(neg.get("u").expect("get"), None);
    // A loader that always returns a value sees through the cached miss.
    assert_eq!(
        neg.get_or_insert_with("u", ms(1000), || Ok::<_, std::io::Error>(b"now".to_vec()))
            .expect("load"),
        b"now"
    );
    neg.invalidate("u").expect("invalidate");
    neg.get_or_find_with("u", ms(1000), missing).expect("find");
    clock.advance(ms(50));
    neg.get_or_find_with("u", ms(1000), missing).expect("find");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        2,
        "reloaded after the negative TTL"
    );
}

#[test]
fn a_reopened_cache_keeps_entries_expiry_and_capacity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    {
        let d = db(dir.path(), &clock);
        let cache = CacheOptions::new()
            .max_entries(10)
            .admission(false)
            .open(d.keyspace("c").expect("keyspace"))
            .expect("cache");
        for i in 0..30u32 {
            let ttl = (i % 2 == 0).then(|| ms(100));
            cache
                .insert(i.to_be_bytes(), [i as u8], ttl)
                .expect("insert");
        }
        assert_eq!(cache.stats().entries, 10);
        d.close().expect("close");
    }
    let d = db(dir.path(), &clock);
    let open = |max: u64| {
        CacheOptions::new()
            .max_entries(max)
            .open(d.keyspace("c").expect("keyspace"))
            .expect("cache")
    };
    let cache = open(10);
    let st = cache.stats();
    assert_eq!(
        (st.entries, st.evictions),
        (10, 0),
        "warm: the same 10 entries"
    );
    let held: Vec<u32> = (0..30u32)
        .filter(|i| cache.get(i.to_be_bytes()).expect("get").is_some())
        .collect();
    assert_eq!(held.len(), 10);
    for i in &held {
        assert_eq!(
            cache.get(i.to_be_bytes()).expect("get"),
            Some(vec![*i as u8])
        );
    }
    clock.advance(ms(100));
    let left = (0..30u32)
        .filter(|i| cache.get(i.to_be_bytes()).expect("get").is_some())
        .count();
    assert_eq!(
        left,
        held.iter().filter(|i| *i % 2 == 1).count(),
        "entries with a TTL expired across the restart"
    );
    drop(cache);
    // A smaller capacity at open evicts at once, durably.
    let small = open(3);
    assert!(small.stats().entries <= 3);
    assert!(d.keyspace("c").expect("keyspace").scan_prefix("d").count() <= 3);
}

/// The ten 100-byte entries of the bound tests, and their keys.
fn ten_entries(cache: &Cache) -> Vec<String> {
    let keys: Vec<String> = (0..10).map(|i| format!("entry-{i}")).collect();
    for k in &keys {
        cache.insert(k, [7u8; 100], None).expect("insert");
    }
    keys
}

/// What the store holds under the cache's entries: count and bytes (key,
/// value and the 13-byte header, as `max_bytes` counts them).
fn stored(cache: &Cache) -> (u64, u64) {
    cache
        .store()
        .as_db()
        .expect("the embedded store")
        .scan_prefix("d")
        .map(|kv| kv.expect("scan"))
        .fold((0, 0), |(n, b), (k, v)| {
            (n + 1, b + (k.len() - 1 + v.len()) as u64)
        })
}

#[test]
fn an_entry_larger_than_max_bytes_is_refused_and_evicts_nothing() {
    for admission in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(START_MS);
        let open = |db: Db| {
            CacheOptions::new()
                .max_bytes(4096)
                .admission(admission)
                .seed(1)
                .open(db)
                .expect("cache")
        };
        let cache = open(db(dir.path(), &clock));
        let keys = ten_entries(&cache);
        let before = cache.stats();
        assert_eq!((before.entries, before.bytes), (10, 10 * (7 + 100 + 13)));
        // Wanted often, so that admission alone would let it in.
        for _ in 0..20 {
            cache.get("huge").expect("get");
        }
        cache
            .insert("huge", vec![1u8; 12 << 10], None)
            .expect("insert");
        let after = cache.stats();
        assert_eq!(
            (after.entries, after.bytes, after.evictions),
            (before.entries, before.bytes, 0),
            "admission {admission}: nothing evicted for a value that cannot stay"
        );
        assert_eq!(after.rejections, before.rejections + 1);
        assert_eq!(cache.get("huge").expect("get").map(|v| v.len()), None);
        for k in &keys {
            assert_eq!(cache.get(k).expect("get"), Some(vec![7u8; 100]), "{k}");
        }
        assert_eq!(stored(&cache), (after.entries, after.bytes));
        // A read-through call returns the value, and keeps nothing either.
        let v = cache
            .get_or_insert_with("loaded", ms(60_000), || {
                Ok::<_, std::io::Error>(vec![2u8; 5000])
            })
            .expect("load");
        assert_eq!(v.len(), 5000);
        assert_eq!(cache.stats().rejections, before.rejections + 2);
        assert_eq!(cache.stats().bytes, before.bytes);
        // The running cache and the reopened one agree.
        let running = (cache.stats().entries, cache.stats().bytes);
        let store = cache.store().as_db().expect("the embedded store").clone();
        drop(cache);
        store.close().expect("close");
        drop(store);
        let cache = open(db(dir.path(), &clock));
        let reopened = cache.stats();
        assert_eq!((reopened.entries, reopened.bytes), running);
        assert_eq!(reopened.evictions, 0);
    }
}

#[test]
fn an_oversized_overwrite_drops_the_old_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let cache = CacheOptions::new()
        .max_bytes(4096)
        .open(db(dir.path(), &clock))
        .expect("cache");
    let keys = ten_entries(&cache);
    cache
        .insert(&keys[3], vec![1u8; 5000], Some(ms(60_000)))
        .expect("insert");
    // Never the value the insert replaced.
    assert_eq!(cache.get(&keys[3]).expect("get").map(|v| v.len()), None);
    let st = cache.stats();
    assert_eq!((st.entries, st.evictions, st.rejections), (9, 0, 1));
    assert_eq!(stored(&cache), (st.entries, st.bytes));
    // An entry exactly at the bound fits, evicting what it must.
    let exact = 4096 - (keys[3].len() as u64 + 13);
    cache
        .insert(&keys[3], vec![5u8; exact as usize], None)
        .expect("insert");
    assert_eq!(
        cache.get(&keys[3]).expect("get").map(|v| v.len() as u64),
        Some(exact)
    );
    assert_eq!(cache.stats().bytes, 4096);
    assert_eq!(cache.stats().rejections, 1);
}

#[test]
fn a_reopen_with_a_smaller_bound_evicts_only_what_cannot_stay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let open = |max_bytes: u64| {
        CacheOptions::new()
            .max_bytes(max_bytes)
            .seed(1)
            .open(db(dir.path(), &clock))
            .expect("cache")
    };
    let cache = open(1 << 20);
    // The large entry first: the oldest, the first an LRU order would take
    // were it not for its size.
    cache
        .insert("huge", vec![1u8; 12 << 10], None)
        .expect("insert");
    let keys = ten_entries(&cache);
    let store = cache.store().as_db().expect("the embedded store").clone();
    drop(cache);
    store.close().expect("close");
    drop(store);
    // Under 4096 bytes, the ten small entries (1200 bytes) fit; the large
    // one alone does not, and goes without taking any other with it.
    let cache = open(4096);
    let st = cache.stats();
    assert_eq!((st.entries, st.bytes, st.evictions), (10, 1200, 1));
    for k in &keys {
        assert!(cache.get(k).expect("get").is_some(), "{k}");
    }
    assert_eq!(stored(&cache), (10, 1200));
}

// ----- the async path on a remote store ---------------------------------

/// A remote store's stand-in: the embedded store behind the public
/// `Backend` trait, reporting `is_remote()` and taking `delay` per call, as
/// a network round trip would. It records the threads its calls ran on.
#[derive(Debug)]
struct SlowRemote {
    inner: cairn::backend::embedded::Embedded,
    delay: Duration,
    threads: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    /// How many more updates succeed (`u64::MAX`: all); the others fail,
    /// having written nothing.
    updates_left: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl SlowRemote {
    fn new(db: Db, delay: Duration) -> SlowRemote {
        SlowRemote {
            inner: cairn::backend::embedded::Embedded::new(db),
            delay,
            threads: Default::default(),
            updates_left: std::sync::Arc::new(u64::MAX.into()),
        }
    }

    fn called(&self) {
        let name = std::thread::current().name().map(str::to_owned);
        self.threads.lock().expect("threads").push(name);
        std::thread::sleep(self.delay);
    }
}

impl cairn::backend::Backend for SlowRemote {
    fn read(&self, keys: &[cairn::backend::Key]) -> cairn::Result<cairn::backend::Snapshot> {
        self.called();
        self.inner.read(keys)
    }

    fn update(
        &self,
        keys: &[cairn::backend::Key],
        f: &mut dyn FnMut(&mut cairn::backend::Update) -> cairn::Result<()>,
    ) -> cairn::Result<()> {
        self.called();
        let left = self.updates_left.load(Ordering::SeqCst);
        if left != u64::MAX {
            self.updates_left
                .store(left.saturating_sub(1), Ordering::SeqCst);
        }
        if left == 0 {
            return Err(cairn::Error::Remote {
                address: "test".into(),
                message: "refused".into(),
                maybe_applied: false,
            });
        }
        self.inner.update(keys, f)
    }

    fn scan(&self, prefix: &[u8], f: &mut dyn FnMut(&[u8], u64, Option<u64>)) -> cairn::Result<()> {
        self.called();
        self.inner.scan(prefix, f)
    }

    fn is_remote(&self) -> bool {
        true
    }
}

/// Wakes the polling thread, and counts the wake-ups.
struct Unpark(std::thread::Thread, AtomicUsize);

impl std::task::Wake for Unpark {
    fn wake(self: std::sync::Arc<Self>) {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// A one-thread executor for `futures`, polled in turn until all are
/// done; returns their outputs and the longest single poll.
fn run_all<F: std::future::Future>(futures: Vec<F>) -> (Vec<F::Output>, Duration) {
    use std::task::{Context, Poll};
    let unpark = std::sync::Arc::new(Unpark(std::thread::current(), AtomicUsize::new(0)));
    let waker = std::task::Waker::from(unpark);
    let mut cx = Context::from_waker(&waker);
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut longest = Duration::ZERO;
    while out.iter().any(Option::is_none) {
        for (f, o) in futures.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                let start = std::time::Instant::now();
                if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                    *o = Some(v);
                }
                longest = longest.max(start.elapsed());
            }
        }
        if out.iter().any(Option::is_none) {
            std::thread::park_timeout(Duration::from_millis(50));
        }
    }
    (out.into_iter().flatten().collect(), longest)
}

#[test]
fn the_async_path_awaits_a_remote_store_off_the_executor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let delay = Duration::from_millis(150);
    let remote = SlowRemote::new(db(dir.path(), &clock), delay);
    let threads = remote.threads.clone();
    let store = cairn::backend::Store::new(remote);
    assert!(store.is_remote());
    let cache = Cache::open(store).expect("cache");
    threads.lock().expect("threads").clear();
    let loads = AtomicUsize::new(0);
    let call = || {
        cache.get_or_insert_with_async("page", Duration::from_secs(60), || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(b"fetched".to_vec())
        })
    };
    // Two callers of one key on one executor thread: the store's calls
    // take `delay` each, and no poll waits for them.
    // The future can move between a multi-threaded executor's workers.
    fn send<T: Send>(t: T) -> T {
        t
    }
    let (got, longest) = run_all(vec![send(call()), call()]);
    for v in got {
        assert_eq!(v.expect("load"), b"fetched");
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for both callers");
    assert!(
        longest < delay / 2,
        "a poll blocked for {longest:?} (the store takes {delay:?})"
    );
    // Every call reached the store from the library's own threads.
    let seen = std::mem::take(&mut *threads.lock().expect("threads"));
    assert!(seen.len() >= 3, "a read each, and the write: {seen:?}");
    assert!(
        seen.iter().all(|n| n
            .as_deref()
            .is_some_and(|n| n.starts_with("cairn-offload-"))),
        "{seen:?}"
    );
    // A hit is awaited the same way, and the sync API sees the entry.
    let (got, longest) = run_all(vec![call()]);
    assert_eq!(
        got.into_iter().next().map(|r| r.expect("hit")),
        Some(b"fetched".to_vec())
    );
    assert!(longest < delay / 2, "a poll blocked for {longest:?}");
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert_eq!(cache.get("page").expect("get"), Some(b"fetched".to_vec()));
}

/// Entries the embedded store under a test double holds, by cache key.
fn held(db: &Db) -> Vec<Vec<u8>> {
    db.scan_prefix("d")
        .map(|kv| kv.expect("scan").0[1..].to_vec())
        .collect()
}

#[test]
fn on_a_remote_store_the_bound_invalidation_and_generations_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let d = db(dir.path(), &clock);
    let open = |d: &Db| {
        CacheOptions::new()
            .max_entries(4)
            .admission(false)
            .seed(3)
            .open(cairn::backend::Store::new(SlowRemote::new(
                d.clone(),
                Duration::ZERO,
            )))
            .expect("cache")
    };
    let cache = open(&d);
    for i in 0..10 {
        cache
            .insert(format!("k{i}"), "v", Some(ms(60_000)))
            .expect("insert");
        // Evictions are separate deletes here, written before the insert
        // returns: the store is within the bound after each call.
        assert!(held(&d).len() <= 4, "after k{i}: {:?}", held(&d));
    }
    let st = cache.stats();
    assert_eq!((st.entries, st.evictions), (4, 6));
    assert_eq!(held(&d).len(), 4);
    // A reopen loads the tracker with a scan, and agrees.
    drop(cache);
    let cache = open(&d);
    assert_eq!(cache.stats().entries, 4);
    assert_eq!(cache.stats().evictions, 0);
    let n = cache.invalidate_prefix("k").expect("invalidate prefix");
    assert_eq!(n, 4);
    assert_eq!(cache.stats().entries, 0);
    assert!(held(&d).is_empty());
    // Generations move with updates.
    let k = cache.group_key("g", "1").expect("group key");
    cache.insert(&k, "a", None).expect("insert");
    assert_eq!(cache.invalidate_group("g").expect("invalidate group"), 1);
    assert_eq!(cache.invalidate_group("g").expect("invalidate group"), 2);
    assert_eq!(cache.generation("g").expect("generation"), 2);
    assert_eq!(
        cache
            .get(cache.group_key("g", "1").expect("group key"))
            .expect("get"),
        None
    );
}

#[test]
fn a_failed_write_leaves_the_tracker_as_the_store_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let d = db(dir.path(), &clock);
    let remote = SlowRemote::new(d.clone(), Duration::ZERO);
    let left = remote.updates_left.clone();
    let cache = CacheOptions::new()
        .max_entries(2)
        .admission(false)
        .open(cairn::backend::Store::new(remote))
        .expect("cache");
    cache.insert("a", "1", None).expect("insert");
    cache.insert("b", "2", None).expect("insert");
    let before = cache.stats();
    left.store(0, Ordering::SeqCst);
    // An insert that would evict, an invalidation and a prefix
    // invalidation: each fails, and the tracker does not move.
    assert!(cache.insert("c", "3", None).is_err());
    assert!(cache.invalidate("a").is_err());
    assert!(cache.invalidate_prefix("").is_err());
    let after = cache.stats();
    assert_eq!((after.entries, after.bytes), (before.entries, before.bytes));
    assert_eq!(after.evictions, before.evictions);
    left.store(u64::MAX, Ordering::SeqCst);
    assert_eq!(held(&d), [b"a".to_vec(), b"b".to_vec()]);
    // The next insert evicts one of the two the store really holds.
    cache.insert("c", "3", None).expect("insert");
    assert_eq!(cache.stats().entries, 2);
    assert_eq!(held(&d).len(), 2);
    assert_eq!(cache.stats().evictions, 1);
}

#[test]
fn a_remote_eviction_that_fails_halfway_leaves_the_tracker_as_the_store_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(START_MS);
    let d = db(dir.path(), &clock);
    let remote = SlowRemote::new(d.clone(), Duration::ZERO);
    let left = remote.updates_left.clone();
    // Three entries of 1 + 13 + 10 bytes fill it.
    let cache = CacheOptions::new()
        .max_bytes(72)
        .admission(false)
        .open(cairn::backend::Store::new(remote))
        .expect("cache");
    for k in ["a", "b", "c"] {
        cache.insert(k, [0u8; 10], None).expect("insert");
    }
    // 44 bytes more: two of them go. The insert is written, the first
    // eviction too, the second fails.
    left.store(2, Ordering::SeqCst);
    assert!(cache.insert("d", [0u8; 30], None).is_err());
    left.store(u64::MAX, Ordering::SeqCst);
    let held = held(&d);
    assert_eq!(held.len(), 3, "{held:?}");
    assert!(held.contains(&b"d".to_vec()));
    let st = cache.stats();
    assert_eq!((st.entries, st.bytes), (3, 44 + 24 + 24));
    assert_eq!(st.evictions, 1);
}
