//! Hit-ratio benchmark of `cairn::cache` (sampled LFU over a count-min
//! sketch, `src/eviction.rs`) against a plain LRU of the same capacity.
//!
//! ```text
//! CARGO_TARGET_DIR=/tmp/hr-target cargo bench --bench cache_hit_ratio
//! CAIRN_HITRATIO_QUICK=1 cargo bench --bench cache_hit_ratio   # quick, 10x fewer requests
//! cargo test --bench cache_hit_ratio                          # smoke test (CI), 100x fewer, quiet
//! cargo test --bench cache_hit_ratio -- --nocapture            # the smoke test's tables too
//! CAIRN_TEST_VERBOSE=1 cargo test --all-targets               # same
//! cargo bench --bench cache_hit_ratio -- --quick                 # same
//! ```
//!
//! Everything is deterministic: traces come from a SplitMix64 generator with
//! fixed seeds, and the cairn caches are opened with `seed(1)`.
//!
//! # Traces
//! - **zipf-0.99** and **zipf-0.8**: 1,000,000 requests over 100,000 keys,
//!   rank `r` (1-based) drawn with probability proportional to `1 / r^s`
//!   (exact inverse CDF). Ranks are mapped to key ids through a fixed random
//!   permutation of `0..100_000`, so popularity is not correlated with the
//!   key's bytes.
//! - **scan-0.99** and **scan-0.8**: the zipf trace above, unchanged and in
//!   the same order, with a scan inserted after every 50,000th zipf request
//!   (after requests 50k, 100k, ..., 950k: 19 scans). A scan is 20,000
//!   requests for fresh keys, ids `100_000 + j` with `j` counting up across
//!   all scans, so no scan key is ever requested twice. Total 1,380,000
//!   requests, 27.5% of them scan requests (compulsory misses for any
//!   policy). "zipf-only" hit ratios count only the zipf requests, so they
//!   compare directly with the clean trace.
//!
//! A request is `get(key)`; on a miss, `insert(key, 16-byte value, None)`.
//! Keys are the id's 8 big-endian bytes. Capacities are 1%, 5% and 10% of
//! the key space. The cairn cache lives in a `Db` in a fresh temporary
//! directory, opened with `SyncPolicy::Never`.
//!
//! # Warm restart
//! zipf-0.99 at 5%: requests `0..500k` go to a cairn cache, whose `Db` is
//! then closed and reopened from the same directory; the hit ratio is
//! measured over requests `500k..600k`. It is compared with a cairn cache
//! and an LRU that never restarted, and with a cold (empty) cairn cache and
//! a cold LRU, over the same window.
//!
//! Quick mode divides the request count, scan interval, scan length and
//! warm-restart window by 10 (the key space and capacities stay).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cairn::cache::{Cache, CacheOptions};
use cairn::{Db, Options, SyncPolicy};

/// Whether to print the tables and progress: always under `cargo bench`;
/// in the smoke test that `cargo test --all-targets` runs, only when asked
/// (`-- --nocapture`, or `CAIRN_TEST_VERBOSE=1`), so that test output
/// stays quiet. The smoke test checks its numbers either way.
fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| {
        std::env::args().any(|a| a == "--bench" || a == "--nocapture")
            || std::env::var("CAIRN_TEST_VERBOSE").is_ok_and(|v| !v.is_empty() && v != "0")
    })
}

/// `println!` when [`verbose`].
macro_rules! out {
    ($($t:tt)*) => {
        if verbose() {
            println!($($t)*);
        }
    };
}

/// `eprintln!` when [`verbose`].
macro_rules! note {
    ($($t:tt)*) => {
        if verbose() {
            eprintln!($($t)*);
        }
    };
}

const KEYS: u64 = 100_000;
const CAPACITIES: [u64; 3] = [1_000, 5_000, 10_000];
const VALUE: [u8; 16] = *b"cairn-hit-ratio!";
/// Seed of the key permutation; each trace adds its own offset.
const SEED: u64 = 0x5EED_2024_CA1E;
/// The `CacheOptions::seed` of every cairn cache.
const CACHE_SEED: u64 = 1;

/// Run sizes (divided by 10 in quick mode).
struct Config {
    quick: bool,
    requests: usize,
    scan_every: usize,
    scan_len: usize,
    warm_window: usize,
}

impl Config {
    fn from_env() -> Config {
        let quick = std::env::args().any(|a| a == "--quick")
            || std::env::var("CAIRN_HITRATIO_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        // `cargo bench` passes --bench; `cargo test --all-targets` runs this
        // binary without it, as a smoke test of 100x fewer requests.
        let smoke = !std::env::args().any(|a| a == "--bench");
        let div = if smoke {
            100
        } else if quick {
            10
        } else {
            1
        };
        Config {
            quick: quick || smoke,
            requests: 1_000_000 / div,
            scan_every: 50_000 / div,
            scan_len: 20_000 / div,
            warm_window: 100_000 / div,
        }
    }
}

// ---------------------------------------------------------------- traces

/// SplitMix64 (Steele, Lea, Flood 2014).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`, `n > 0`.
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

/// Zipf over ranks `0..n` by inverse CDF.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u64, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n as usize);
        let mut sum = 0.0;
        for r in 1..=n {
            sum += 1.0 / (r as f64).powf(s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }

    /// The probability mass of the `c` most popular keys: the hit ratio of
    /// an oracle that pins them (the best a policy can do on an
    /// independent-reference trace, in the long run).
    fn top_mass(&self, c: u64) -> f64 {
        self.cdf[(c as usize).min(self.cdf.len()) - 1]
    }
}

struct Trace {
    name: String,
    /// Key ids; ids `>= KEYS` are scan keys.
    ids: Vec<u64>,
    /// The zipf this trace draws from, for the oracle column.
    zipf_s: f64,
}

/// A random permutation of `0..KEYS`: rank -> key id.
fn permutation() -> Vec<u64> {
    let mut rng = SplitMix64(SEED);
    let mut p: Vec<u64> = (0..KEYS).collect();
    for i in (1..p.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        p.swap(i, j);
    }
    p
}

fn zipf_trace(zipf: &Zipf, s: f64, perm: &[u64], requests: usize, seed: u64) -> Trace {
    let mut rng = SplitMix64(seed);
    let ids = (0..requests).map(|_| perm[zipf.sample(&mut rng)]).collect();
    Trace {
        name: format!("zipf-{s}"),
        ids,
        zipf_s: s,
    }
}

/// `base` with a scan of `scan_len` fresh keys after every `every`th
/// request (not after the last one).
fn scan_polluted(base: &Trace, every: usize, scan_len: usize) -> Trace {
    let scans = (base.ids.len() - 1) / every;
    let mut ids = Vec::with_capacity(base.ids.len() + scans * scan_len);
    let mut fresh = KEYS;
    for (i, &id) in base.ids.iter().enumerate() {
        if i > 0 && i % every == 0 {
            ids.extend(fresh..fresh + scan_len as u64);
            fresh += scan_len as u64;
        }
        ids.push(id);
    }
    Trace {
        name: format!("scan-{}", base.zipf_s),
        ids,
        zipf_s: base.zipf_s,
    }
}

// ---------------------------------------------------------------- policies

/// A cache replayed against a trace: `access` answers hit or miss, and
/// inserts the key on a miss.
trait Policy {
    fn access(&mut self, id: u64) -> bool;
}

const NIL: u32 = u32::MAX;

struct Node {
    key: u64,
    prev: u32,
    next: u32,
}

/// O(1) LRU: a hash map to slots of a doubly linked list kept in a `Vec`.
/// `head` is the most recently used, `tail` the next victim.
struct Lru {
    cap: usize,
    map: HashMap<u64, u32>,
    nodes: Vec<Node>,
    head: u32,
    tail: u32,
}

impl Lru {
    fn new(cap: usize) -> Lru {
        assert!(cap > 0 && cap < NIL as usize);
        Lru {
            cap,
            map: HashMap::with_capacity(cap),
            nodes: Vec::with_capacity(cap),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = {
            let n = &self.nodes[i as usize];
            (n.prev, n.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n as usize].prev = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        {
            let n = &mut self.nodes[i as usize];
            n.prev = NIL;
            n.next = old;
        }
        match old {
            NIL => self.tail = i,
            o => self.nodes[o as usize].prev = i,
        }
        self.head = i;
    }

    /// Keys from most to least recently used (for the self-check).
    fn order(&self) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.nodes.len());
        let mut i = self.head;
        while i != NIL {
            out.push(self.nodes[i as usize].key);
            i = self.nodes[i as usize].next;
        }
        out
    }
}

impl Policy for Lru {
    fn access(&mut self, id: u64) -> bool {
        if let Some(&i) = self.map.get(&id) {
            if i != self.head {
                self.unlink(i);
                self.push_front(i);
            }
            return true;
        }
        let i = if self.nodes.len() < self.cap {
            self.nodes.push(Node {
                key: id,
                prev: NIL,
                next: NIL,
            });
            (self.nodes.len() - 1) as u32
        } else {
            let t = self.tail;
            self.unlink(t);
            let old = std::mem::replace(&mut self.nodes[t as usize].key, id);
            self.map.remove(&old);
            t
        };
        self.push_front(i);
        self.map.insert(id, i);
        false
    }
}

/// Checks `Lru` against an obviously correct O(n) LRU.
fn check_lru() {
    let mut rng = SplitMix64(7);
    for cap in [1usize, 2, 3, 17] {
        let mut lru = Lru::new(cap);
        let mut model: Vec<u64> = Vec::new(); // most recent first
        for _ in 0..20_000 {
            let k = rng.below(40);
            let expect_hit = match model.iter().position(|&m| m == k) {
                Some(p) => {
                    model.remove(p);
                    true
                }
                None => {
                    model.truncate(cap - 1);
                    false
                }
            };
            model.insert(0, k);
            assert_eq!(lru.access(k), expect_hit, "LRU self-check, cap {cap}");
            assert_eq!(lru.order(), model, "LRU self-check, cap {cap}");
            assert_eq!(lru.map.len(), model.len());
        }
    }
}

struct Cairn {
    cache: Cache,
}

impl Policy for Cairn {
    fn access(&mut self, id: u64) -> bool {
        let key = id.to_be_bytes();
        if self.cache.get(key).expect("cache get").is_some() {
            return true;
        }
        self.cache.insert(key, VALUE, None).expect("cache insert");
        false
    }
}

fn open_db(dir: &Path) -> Db {
    Options::new()
        .sync_policy(SyncPolicy::Never)
        .open(dir)
        .expect("open db")
}

fn open_cairn(db: &Db, cap: u64) -> Cairn {
    let cache = CacheOptions::new()
        .max_entries(cap)
        .seed(CACHE_SEED)
        .open(db.clone())
        .expect("open cache");
    Cairn { cache }
}

// ---------------------------------------------------------------- replay

#[derive(Clone, Copy, Default)]
struct Counts {
    hits: u64,
    requests: u64,
    zipf_hits: u64,
    zipf_requests: u64,
}

impl Counts {
    fn ratio(&self) -> f64 {
        self.hits as f64 / self.requests.max(1) as f64
    }

    fn zipf_ratio(&self) -> f64 {
        self.zipf_hits as f64 / self.zipf_requests.max(1) as f64
    }
}

fn replay(p: &mut impl Policy, ids: &[u64]) -> Counts {
    let mut c = Counts::default();
    for &id in ids {
        let hit = p.access(id);
        c.requests += 1;
        c.hits += u64::from(hit);
        if id < KEYS {
            c.zipf_requests += 1;
            c.zipf_hits += u64::from(hit);
        }
    }
    c
}

/// Checks that the bench's hit count agrees with the cache's own stats,
/// and that the cache respects its capacity.
fn check_cairn(c: &Cairn, counts: &Counts, cap: u64) -> u64 {
    let s = c.cache.stats();
    assert_eq!(s.hits, counts.hits, "cache stats disagree on hits");
    assert_eq!(s.misses, counts.requests - counts.hits);
    assert!(
        s.entries <= cap,
        "{} entries over capacity {cap}",
        s.entries
    );
    s.evictions
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

struct Row {
    trace: String,
    requests: usize,
    cap: u64,
    oracle: f64,
    lru: Counts,
    lru_time: Duration,
    cairn: Counts,
    cairn_time: Duration,
    cairn_evictions: u64,
}

fn main() {
    let started = Instant::now();
    let cfg = Config::from_env();
    check_lru();

    let perm = permutation();
    let mut traces = Vec::new();
    let mut zipfs = Vec::new();
    for (n, s) in [0.99, 0.8].into_iter().enumerate() {
        let zipf = Zipf::new(KEYS, s);
        let t = zipf_trace(&zipf, s, &perm, cfg.requests, SEED + 1 + n as u64);
        let scan = scan_polluted(&t, cfg.scan_every, cfg.scan_len);
        traces.push(t);
        traces.push(scan);
        zipfs.push((s, zipf));
    }
    let zipf_of = |s: f64| &zipfs.iter().find(|z| z.0 == s).expect("zipf").1;

    out!("# cairn::cache hit ratio vs LRU\n");
    out!(
        "{} keys, {} zipf requests per trace, scans of {} fresh keys after every {} zipf \
         requests, trace seeds {:#x}+, cache seed {CACHE_SEED}, value {} bytes{}.\n",
        KEYS,
        cfg.requests,
        cfg.scan_len,
        cfg.scan_every,
        SEED,
        VALUE.len(),
        if cfg.quick {
            " — QUICK MODE (10x smaller, numbers are only a smoke test)"
        } else {
            ""
        },
    );

    let mut rows = Vec::new();
    for t in &traces {
        for cap in CAPACITIES {
            let start = Instant::now();
            let lru = replay(&mut Lru::new(cap as usize), &t.ids);
            let lru_time = start.elapsed();

            let dir = tempfile::tempdir().expect("tempdir");
            let db = open_db(dir.path());
            let mut c = open_cairn(&db, cap);
            let start = Instant::now();
            let cairn = replay(&mut c, &t.ids);
            let cairn_time = start.elapsed();
            let cairn_evictions = check_cairn(&c, &cairn, cap);
            drop(c);
            db.close().expect("close");

            note!(
                "{:<10} cap {:>6}: LRU {} ({}), cairn {} ({})",
                t.name,
                cap,
                pct(lru.ratio()),
                secs(lru_time),
                pct(cairn.ratio()),
                secs(cairn_time)
            );
            rows.push(Row {
                trace: t.name.clone(),
                requests: t.ids.len(),
                cap,
                oracle: zipf_of(t.zipf_s).top_mass(cap),
                lru,
                lru_time,
                cairn,
                cairn_time,
                cairn_evictions,
            });
        }
    }

    out!("## Hit ratio per (trace, capacity, policy)\n");
    out!(
        "| trace | requests | capacity | policy | hit ratio (all requests) | hit ratio (zipf requests only) | evictions | wall time |"
    );
    out!("|---|---:|---:|---|---:|---:|---:|---:|");
    for r in &rows {
        for (policy, c, t, ev) in [
            (
                "LRU",
                r.lru,
                r.lru_time,
                (r.lru.requests - r.lru.hits).saturating_sub(r.cap),
            ),
            ("cairn", r.cairn, r.cairn_time, r.cairn_evictions),
        ] {
            out!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.trace,
                r.requests,
                r.cap,
                policy,
                pct(c.ratio()),
                pct(c.zipf_ratio()),
                ev,
                secs(t)
            );
        }
    }

    out!("\n## cairn vs LRU (zipf requests only)\n");
    out!(
        "Oracle: the probability mass of the `capacity` most popular keys (static optimum). \
         Δ in percentage points.\n"
    );
    out!("| trace | capacity | oracle | LRU | cairn | Δ cairn − LRU |");
    out!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        out!(
            "| {} | {} | {} | {} | {} | {:+.2} |",
            r.trace,
            r.cap,
            pct(r.oracle),
            pct(r.lru.zipf_ratio()),
            pct(r.cairn.zipf_ratio()),
            (r.cairn.zipf_ratio() - r.lru.zipf_ratio()) * 100.0
        );
    }

    warm_restart(&cfg, &traces[0]);

    out!("\nTotal wall time: {}", secs(started.elapsed()));
}

/// Section 3: a cache restarted halfway through zipf-0.99 at 5%.
fn warm_restart(cfg: &Config, t: &Trace) {
    let cap = CAPACITIES[1];
    let half = t.ids.len() / 2;
    let before = &t.ids[..half];
    let window = &t.ids[half..half + cfg.warm_window];
    let head = cfg.warm_window / 10;
    let mut rows: Vec<(String, Counts, Counts, Duration, String)> = Vec::new();
    let mut add = |name: &str, p: &mut dyn FnMut(&[u64]) -> Counts, note: String| {
        let start = Instant::now();
        let first = p(&window[..head]);
        let rest = p(&window[head..]);
        let elapsed = start.elapsed();
        let all = Counts {
            hits: first.hits + rest.hits,
            requests: first.requests + rest.requests,
            zipf_hits: first.zipf_hits + rest.zipf_hits,
            zipf_requests: first.zipf_requests + rest.zipf_requests,
        };
        rows.push((name.to_string(), first, all, elapsed, note));
    };

    // Never restarted: the first half, then the window, in one cache.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let mut c = open_cairn(&db, cap);
        replay(&mut c, before);
        let before_stats = c.cache.stats();
        add(
            "cairn, never restarted",
            &mut |ids| replay(&mut c, ids),
            format!("{} entries before the window", before_stats.entries),
        );
        drop(c);
        db.close().expect("close");
    }
    // Warm restart: the first half, close, reopen the directory, the window.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let entries_before = {
            let db = open_db(dir.path());
            let mut c = open_cairn(&db, cap);
            replay(&mut c, before);
            let n = c.cache.stats().entries;
            drop(c);
            db.close().expect("close");
            n
        };
        let db = open_db(dir.path());
        let reopen = Instant::now();
        let mut c = open_cairn(&db, cap);
        let reopen_time = reopen.elapsed();
        let after = c.cache.stats();
        assert_eq!(
            after.entries, entries_before,
            "entries lost across the restart"
        );
        add(
            "cairn, warm restart",
            &mut |ids| replay(&mut c, ids),
            format!(
                "{} entries before close, {} after reopen (cache open {:.1} ms)",
                entries_before,
                after.entries,
                reopen_time.as_secs_f64() * 1e3
            ),
        );
        drop(c);
        db.close().expect("close");
    }
    // Cold cairn: an empty directory.
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = open_db(dir.path());
        let mut c = open_cairn(&db, cap);
        add(
            "cairn, cold (empty dir)",
            &mut |ids| replay(&mut c, ids),
            String::new(),
        );
        drop(c);
        db.close().expect("close");
    }
    {
        let mut lru = Lru::new(cap as usize);
        replay(&mut lru, before);
        add(
            "LRU, never restarted",
            &mut |ids| replay(&mut lru, ids),
            String::new(),
        );
    }
    {
        let mut lru = Lru::new(cap as usize);
        add(
            "LRU, cold (in memory)",
            &mut |ids| replay(&mut lru, ids),
            String::new(),
        );
    }

    out!(
        "\n## Warm restart ({}, capacity {}, restart after request {}, window {}..{})\n",
        t.name,
        cap,
        half,
        half,
        half + cfg.warm_window
    );
    out!(
        "| cache | hit ratio, first {} of the window | hit ratio, whole window ({} requests) | wall time (window) | notes |",
        head, cfg.warm_window
    );
    out!("|---|---:|---:|---:|---|");
    for (name, first, all, time, note) in &rows {
        out!(
            "| {} | {} | {} | {} | {} |",
            name,
            pct(first.ratio()),
            pct(all.ratio()),
            secs(*time),
            note
        );
    }
}
