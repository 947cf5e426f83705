//! The `ops` target: an operation sequence decoded from arbitrary bytes
//! runs against a store on the simulated file system
//! ([`cairn_sim::SimFs`]) and, in lockstep, against a `BTreeMap` model.
//! Every result is compared with the model's: values, `delete`'s "existed",
//! `incr`'s new value or its `NotAnInteger` / `Overflow` error, a
//! compare-and-swap's conflict and the value it reports, TTLs, prefix
//! scans, `InvalidTtl` for a zero TTL, `KeyTooLarge`.
//!
//! Besides the data operations the sequence can advance the clock, sync,
//! compact (all or some sealed segments), sweep expired keys, reopen
//! (cleanly, or read-only), and crash:
//!
//! * `Crash` simulates a power loss (or a process crash) under one of the
//!   damage models of [`Damage`], optionally with a second crash during the
//!   recovery, then reopens;
//! * `CrashAt` arms a crash at the Nth next file operation, and `Fault` an
//!   injected I/O error (EIO on write or fsync, ENOSPC, short write); the
//!   sequence goes on until an operation fails, then the machine crashes
//!   and the store is reopened.
//!
//! After every reopen the store must hold one of the states the model
//! allows. With `SyncPolicy::Always` that is the state after every
//! acknowledged operation (plus, if an operation failed, the state after
//! it too). With `SyncPolicy::Never` a power loss may lose everything since
//! the last point known durable (a successful `sync`, a clean close, an
//! open), but only a suffix: the store must equal the model after some
//! prefix of the operations since then. A process crash loses nothing
//! acknowledged under either policy, unless an injected fsync error threw
//! data away. The state found becomes the model's.
//!
//! The byte format is documented on [`decode`]; [`Enc`] writes it (for
//! seeds). `CAIRN_FUZZ_TRACE=1` prints every operation and its result
//! (`cargo fuzz run ops <crash-file>` to replay one).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn::{Batch, Db, Error, ManualClock, Options, SyncPolicy, Ttl};
use cairn_sim::{Damage, Fault, FaultKind, SimFs};

/// Where the clock starts (unix ms).
pub const START_MS: u64 = 1_700_000_000_000;
/// The store directory in the simulated file system.
pub const DIR: &str = "/fuzz/ops";
/// Most operations run per input.
pub const MAX_OPS: usize = 256;
/// Number of distinct keys.
pub const KEYS: u8 = 10;

/// The key with index `i` (mod [`KEYS`]): the empty key, `k1`..`k7`, a
/// 300-byte key and one with a NUL and a 0xff byte.
pub fn key(i: u8) -> Vec<u8> {
    match i % KEYS {
        0 => Vec::new(),
        8 => vec![b'K'; 300],
        9 => b"k\0\xff".to_vec(),
        n => format!("k{n}").into_bytes(),
    }
}

/// Operation tags (the first byte of an encoded operation, mod the count).
pub mod tag {
    #![allow(missing_docs)]
    pub const PUT: u8 = 0;
    pub const PUT_TTL: u8 = 1;
    pub const PUT_IF_ABSENT: u8 = 2;
    pub const DELETE: u8 = 3;
    pub const GET: u8 = 4;
    pub const TTL: u8 = 5;
    pub const EXPIRE: u8 = 6;
    pub const PERSIST: u8 = 7;
    pub const INCR: u8 = 8;
    pub const CAS: u8 = 9;
    pub const BATCH: u8 = 10;
    pub const SCAN: u8 = 11;
    pub const COMPACT: u8 = 12;
    pub const COMPACT_SOME: u8 = 13;
    pub const ADVANCE: u8 = 14;
    pub const SYNC: u8 = 15;
    pub const SWEEP: u8 = 16;
    pub const REOPEN: u8 = 17;
    pub const REOPEN_READ_ONLY: u8 = 18;
    pub const CRASH: u8 = 19;
    pub const CRASH_AT: u8 = 20;
    pub const FAULT: u8 = 21;
    pub const OVERSIZED_KEY: u8 = 22;
    pub const COUNT: u8 = 23;
}

/// What a compare-and-swap expects.
#[derive(Clone, Debug)]
pub enum CasExpect {
    /// The key is absent.
    Absent,
    /// Whatever the model holds now (so the swap should succeed).
    Current,
    /// This value.
    Value(Vec<u8>),
}

/// One operation of a batch.
#[derive(Clone, Debug)]
pub enum BatchItem {
    /// A put, with a TTL in ms (0: invalid) or none.
    Put(u8, Vec<u8>, Option<u64>),
    /// A deletion.
    Delete(u8),
}

/// A second crash, during the recovery after a crash.
#[derive(Clone, Copy, Debug)]
pub struct RecoveryCrash {
    /// The file operation of the recovery it happens at.
    pub at: u64,
    /// Its damage model.
    pub damage: Damage,
}

/// One operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// `put`.
    Put(u8, Vec<u8>),
    /// `put_with_ttl`, TTL in ms (0 must fail with `InvalidTtl`).
    PutTtl(u8, Vec<u8>, u64),
    /// `put_if_absent`.
    PutIfAbsent(u8, Vec<u8>, Option<u64>),
    /// `delete`.
    Delete(u8),
    /// `get`.
    Get(u8),
    /// `ttl`.
    Ttl(u8),
    /// `expire`, TTL in ms (0 deletes).
    Expire(u8, u64),
    /// `persist`.
    Persist(u8),
    /// `incr`.
    Incr(u8, i64),
    /// `compare_and_swap` (new value `None` deletes).
    Cas(u8, CasExpect, Option<Vec<u8>>),
    /// `write_batch`.
    Batch(Vec<BatchItem>),
    /// The same items through `Db::transaction`, which first reads every
    /// item's key.
    Txn(Vec<BatchItem>),
    /// `scan_prefix`.
    Scan(Vec<u8>),
    /// `compact`.
    Compact,
    /// `compact_segments` of the sealed segments picked by a bit mask.
    CompactSome(u8),
    /// Moves the clock forward (ms).
    Advance(u64),
    /// `sync`.
    Sync,
    /// `sweep_expired`.
    Sweep,
    /// Drop and open again.
    Reopen,
    /// Drop, open read-only and check, drop, open again.
    ReopenReadOnly,
    /// A simulated crash now, then open.
    Crash(Damage, u64, Option<RecoveryCrash>),
    /// A crash at the Nth next file operation.
    CrashAt(u64, Damage, u64),
    /// An injected I/O error at the Nth next file operation.
    Fault(FaultKind, u64, bool),
    /// A put with a key over the limit.
    OversizedKey,
}

/// Reads bytes, yielding zeros once the input is exhausted.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    fn u64(&mut self) -> u64 {
        let mut a = [0u8; 8];
        for b in &mut a {
            *b = self.u8();
        }
        u64::from_le_bytes(a)
    }

    fn damage(&mut self) -> Damage {
        Damage::ALL[usize::from(self.u8()) % Damage::ALL.len()]
    }

    /// A value (see [`decode`] for the encoding).
    fn value(&mut self, op_index: usize) -> Vec<u8> {
        let b = self.u8();
        match b {
            0..=63 => self.bytes(usize::from(b)),
            64..=127 => (i64::from(b) - 96).to_string().into_bytes(),
            128 => Vec::new(),
            129 => i64::MAX.to_string().into_bytes(),
            130 => i64::MIN.to_string().into_bytes(),
            131 => b"-0".to_vec(),
            132 => b"007".to_vec(),
            133 => pattern(op_index, 3000),
            134 => pattern(op_index, 5000),
            _ => format!("v{op_index}.{b}").into_bytes(),
        }
    }

    fn ttl_opt(&mut self) -> Option<u64> {
        match self.u8() {
            0 => None,
            b => Some(u64::from(b) - 1),
        }
    }
}

/// A `len`-byte value unique to `seed`.
fn pattern(seed: usize, len: usize) -> Vec<u8> {
    let mut v = format!("p{seed}:").into_bytes();
    let mut x = seed as u64 ^ 0x9e37_79b9_7f4a_7c15;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v.truncate(len);
    v
}

/// The run's configuration, from the first input byte.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `SyncPolicy::Always` (bit 0 clear) or `Never`.
    pub policy: SyncPolicy,
    /// Bit 1: no tail cache.
    pub tail_cache: bool,
    /// Bit 2: 4 KiB segments, else 16 KiB.
    pub segment_bytes: u64,
}

/// Decodes an input into its configuration and operations.
///
/// ```text
/// byte 0      config: bit 0 SyncPolicy::Never (else Always), bit 1 no tail
///             cache, bit 2 16 KiB segments (else 4 KiB)
/// then ops    tag byte (mod tag::COUNT), then its arguments:
///   key       1 byte, mod 10 (see key())
///   value     1 byte b: b < 64 literal of b bytes that follow; 64..=127
///             the decimal b - 96; 128 empty; 129 i64::MAX; 130 i64::MIN;
///             131 "-0"; 132 "007"; 133 3000 bytes; 134 5000 bytes;
///             else a value unique to the operation
///   ttl       1 byte, milliseconds (0 is invalid)
///   ttl opt   1 byte: 0 none, else b - 1 ms
///   PUT k v | PUT_TTL k v ttl | PUT_IF_ABSENT k v ttlopt | DELETE k |
///   GET k | TTL k | EXPIRE k ttl | PERSIST k |
///   INCR k d (1 byte: < 200 is d - 100; 200 i64::MAX; 201 i64::MIN;
///            else 8 bytes LE) |
///   CAS k e (0 absent, 1 current, else a value follows) n (0 delete,
///            else a value follows) |
///   BATCH n (bits 0-6 mod 6; bit 7 set: as a Db::transaction that first reads
///            every item's key) then n × (kind: 0 delete k, 1 put k v,
///            2 put k v ttl) |
///   SCAN p (0 "", 1 "k", else key p) | COMPACT | COMPACT_SOME mask |
///   ADVANCE ms (1 byte; 255 means 100,000 ms) | SYNC | SWEEP | REOPEN |
///   REOPEN_READ_ONLY | CRASH damage seed r (bit 7: crash again at
///   recovery operation r & 31, damage Damage::ALL[r >> 5 & 3]) |
///   CRASH_AT n damage seed | FAULT kind n (bit 7 of kind: forever) |
///   OVERSIZED_KEY
/// ```
pub fn decode(data: &[u8]) -> (Config, Vec<Op>) {
    let mut r = Reader { data, pos: 0 };
    let c = r.u8();
    let config = Config {
        policy: if c & 1 == 0 {
            SyncPolicy::Always
        } else {
            SyncPolicy::Never
        },
        tail_cache: c & 2 == 0,
        segment_bytes: if c & 4 == 0 { 4096 } else { 16384 },
    };
    let mut ops = Vec::new();
    while !r.done() && ops.len() < MAX_OPS {
        let i = ops.len();
        let op = match r.u8() % tag::COUNT {
            tag::PUT => Op::Put(r.u8(), r.value(i)),
            tag::PUT_TTL => Op::PutTtl(r.u8(), r.value(i), u64::from(r.u8())),
            tag::PUT_IF_ABSENT => Op::PutIfAbsent(r.u8(), r.value(i), r.ttl_opt()),
            tag::DELETE => Op::Delete(r.u8()),
            tag::GET => Op::Get(r.u8()),
            tag::TTL => Op::Ttl(r.u8()),
            tag::EXPIRE => Op::Expire(r.u8(), u64::from(r.u8())),
            tag::PERSIST => Op::Persist(r.u8()),
            tag::INCR => {
                let k = r.u8();
                let d = match r.u8() {
                    b @ 0..=199 => i64::from(b) - 100,
                    200 => i64::MAX,
                    201 => i64::MIN,
                    _ => r.u64() as i64,
                };
                Op::Incr(k, d)
            }
            tag::CAS => {
                let k = r.u8();
                let e = match r.u8() {
                    0 => CasExpect::Absent,
                    1 => CasExpect::Current,
                    _ => CasExpect::Value(r.value(i)),
                };
                let n = match r.u8() {
                    0 => None,
                    _ => Some(r.value(i)),
                };
                Op::Cas(k, e, n)
            }
            tag::BATCH => {
                let b = r.u8();
                let n = (b & 0x7f) % 6;
                let items = (0..n)
                    .map(|j| match r.u8() % 3 {
                        0 => BatchItem::Delete(r.u8()),
                        1 => BatchItem::Put(r.u8(), r.value(1000 + i * 8 + usize::from(j)), None),
                        _ => BatchItem::Put(
                            r.u8(),
                            r.value(1000 + i * 8 + usize::from(j)),
                            Some(u64::from(r.u8())),
                        ),
                    })
                    .collect();
                // The high bit of the count byte runs it as a transaction.
                if b & 0x80 != 0 {
                    Op::Txn(items)
                } else {
                    Op::Batch(items)
                }
            }
            tag::SCAN => Op::Scan(match r.u8() {
                0 => Vec::new(),
                1 => b"k".to_vec(),
                p => key(p),
            }),
            tag::COMPACT => Op::Compact,
            tag::COMPACT_SOME => Op::CompactSome(r.u8()),
            tag::ADVANCE => Op::Advance(match r.u8() {
                255 => 100_000,
                b => u64::from(b),
            }),
            tag::SYNC => Op::Sync,
            tag::SWEEP => Op::Sweep,
            tag::REOPEN => Op::Reopen,
            tag::REOPEN_READ_ONLY => Op::ReopenReadOnly,
            tag::CRASH => {
                let d = r.damage();
                let seed = u64::from(r.u8());
                let rc = r.u8();
                let again = (rc & 0x80 != 0).then(|| RecoveryCrash {
                    at: u64::from(rc & 31),
                    damage: Damage::ALL[usize::from(rc >> 5 & 3)],
                });
                Op::Crash(d, seed, again)
            }
            tag::CRASH_AT => Op::CrashAt(u64::from(r.u8()), r.damage(), u64::from(r.u8())),
            tag::FAULT => {
                let k = r.u8();
                let kind = FaultKind::ALL[usize::from(k & 3)];
                Op::Fault(kind, u64::from(r.u8()), k & 0x80 != 0)
            }
            _ => Op::OversizedKey,
        };
        ops.push(op);
    }
    (config, ops)
}

/// Writes inputs in the format of [`decode`] (for seeds).
#[derive(Clone, Debug, Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    /// Starts an input with this config byte.
    pub fn new(config: u8) -> Enc {
        Enc(vec![config])
    }
    /// Appends raw bytes.
    pub fn raw(mut self, b: &[u8]) -> Enc {
        self.0.extend_from_slice(b);
        self
    }
    /// A literal value (< 64 bytes) as a value argument.
    pub fn lit(v: &[u8]) -> Vec<u8> {
        assert!(v.len() < 64);
        let mut out = vec![v.len() as u8];
        out.extend_from_slice(v);
        out
    }
    /// Appends an operation: its tag then its arguments.
    pub fn op(self, tag: u8, args: &[u8]) -> Enc {
        self.raw(&[tag]).raw(args)
    }
}

/// Key → (value, absolute expiry in ms, 0 = never).
pub type Model = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

fn visible<'a>(m: &'a Model, k: &[u8], now: u64) -> Option<&'a (Vec<u8>, u64)> {
    m.get(k).filter(|(_, exp)| *exp == 0 || *exp > now)
}

/// What every key reads as: key → (value, expiry).
type View = BTreeMap<Vec<u8>, (Vec<u8>, u64)>;

fn view(m: &Model, now: u64) -> View {
    (0..KEYS)
        .filter_map(|i| {
            let k = key(i);
            visible(m, &k, now).cloned().map(|e| (k, e))
        })
        .collect()
}

/// Parses like Redis INCRBY: canonical base-10 i64 only.
fn parse_int(v: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(v).ok()?;
    let n: i64 = s.parse().ok()?;
    (n.to_string() == s).then_some(n)
}

/// An operation's result, comparable between the store and the model.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Res {
    Unit,
    Bool(bool),
    Int(i64),
    Val(Option<Vec<u8>>),
    Ttl(Ttl),
    Cas(Result<(), Option<Vec<u8>>>),
    Scan(Vec<(Vec<u8>, Vec<u8>)>),
    /// What a transaction read before writing.
    Reads(Vec<Option<Vec<u8>>>),
    InvalidTtl,
    NotAnInteger,
    Overflow,
    KeyTooLarge,
    ReadOnly,
    /// Any other error (only allowed when a crash or a fault is armed).
    Other(String),
}

fn res<T>(r: Result<T, Error>, f: impl FnOnce(T) -> Res) -> Res {
    match r {
        Ok(v) => f(v),
        Err(Error::InvalidTtl) => Res::InvalidTtl,
        Err(Error::NotAnInteger) => Res::NotAnInteger,
        Err(Error::Overflow) => Res::Overflow,
        Err(Error::KeyTooLarge { .. }) => Res::KeyTooLarge,
        Err(Error::ReadOnly) => Res::ReadOnly,
        Err(e) => Res::Other(e.to_string()),
    }
}

/// The model's answer to `op` at `now`, and the model after it.
fn model_step(m: &Model, op: &Op, now: u64) -> (Res, Model) {
    let mut post = m.clone();
    let r = match op {
        Op::Put(k, v) => {
            post.insert(key(*k), (v.clone(), 0));
            Res::Unit
        }
        Op::PutTtl(_, _, 0) => Res::InvalidTtl,
        Op::PutTtl(k, v, ttl) => {
            post.insert(key(*k), (v.clone(), now + ttl));
            Res::Unit
        }
        Op::PutIfAbsent(_, _, Some(0)) => Res::InvalidTtl,
        Op::PutIfAbsent(k, v, ttl) => {
            let kk = key(*k);
            let absent = visible(m, &kk, now).is_none();
            if absent {
                post.insert(kk, (v.clone(), ttl.map_or(0, |t| now + t)));
            }
            Res::Bool(absent)
        }
        Op::Delete(k) => {
            let kk = key(*k);
            let existed = visible(m, &kk, now).is_some();
            post.remove(&kk);
            Res::Bool(existed)
        }
        Op::Get(k) => Res::Val(visible(m, &key(*k), now).map(|(v, _)| v.clone())),
        Op::Ttl(k) => Res::Ttl(match visible(m, &key(*k), now) {
            None => Ttl::Missing,
            Some((_, 0)) => Ttl::Persistent,
            Some((_, e)) => Ttl::Expires(Duration::from_millis(e - now)),
        }),
        Op::Expire(k, ttl) => {
            let kk = key(*k);
            match visible(m, &kk, now).cloned() {
                None => Res::Bool(false),
                Some((v, _)) => {
                    if *ttl == 0 {
                        post.remove(&kk);
                    } else {
                        post.insert(kk, (v, now + ttl));
                    }
                    Res::Bool(true)
                }
            }
        }
        Op::Persist(k) => {
            let kk = key(*k);
            match visible(m, &kk, now).cloned() {
                Some((v, e)) if e != 0 => {
                    post.insert(kk, (v, 0));
                    Res::Bool(true)
                }
                _ => Res::Bool(false),
            }
        }
        Op::Incr(k, d) => {
            let kk = key(*k);
            let (cur, exp) = match visible(m, &kk, now) {
                None => (Some(0), 0),
                Some((v, e)) => (parse_int(v), *e),
            };
            match cur {
                None => Res::NotAnInteger,
                Some(c) => match c.checked_add(*d) {
                    None => Res::Overflow,
                    Some(n) => {
                        post.insert(kk, (n.to_string().into_bytes(), exp));
                        Res::Int(n)
                    }
                },
            }
        }
        Op::Cas(k, e, n) => {
            let kk = key(*k);
            let cur = visible(m, &kk, now).map(|(v, _)| v.clone());
            let expected = match e {
                CasExpect::Absent => None,
                CasExpect::Current => cur.clone(),
                CasExpect::Value(v) => Some(v.clone()),
            };
            if cur == expected {
                match n {
                    Some(v) => {
                        post.insert(kk, (v.clone(), 0));
                    }
                    None => {
                        post.remove(&kk);
                    }
                }
                Res::Cas(Ok(()))
            } else {
                Res::Cas(Err(cur))
            }
        }
        Op::Batch(items) | Op::Txn(items) => {
            if items
                .iter()
                .any(|i| matches!(i, BatchItem::Put(_, _, Some(0))))
            {
                Res::InvalidTtl
            } else {
                let reads: Vec<Option<Vec<u8>>> = items
                    .iter()
                    .map(|i| match i {
                        BatchItem::Put(k, ..) | BatchItem::Delete(k) => {
                            visible(m, &key(*k), now).map(|(v, _)| v.clone())
                        }
                    })
                    .collect();
                for i in items {
                    match i {
                        BatchItem::Put(k, v, ttl) => {
                            post.insert(key(*k), (v.clone(), ttl.map_or(0, |t| now + t)));
                        }
                        BatchItem::Delete(k) => {
                            post.remove(&key(*k));
                        }
                    }
                }
                if matches!(op, Op::Txn(_)) {
                    Res::Reads(reads)
                } else {
                    Res::Unit
                }
            }
        }
        Op::Scan(p) => Res::Scan(
            view(m, now)
                .into_iter()
                .filter(|(k, _)| k.starts_with(p))
                .map(|(k, (v, _))| (k, v))
                .collect(),
        ),
        Op::OversizedKey => Res::KeyTooLarge,
        _ => Res::Unit,
    };
    (r, post)
}

fn is_write(op: &Op) -> bool {
    matches!(
        op,
        Op::Put(..)
            | Op::PutTtl(..)
            | Op::PutIfAbsent(..)
            | Op::Delete(_)
            | Op::Expire(..)
            | Op::Persist(_)
            | Op::Incr(..)
            | Op::Cas(..)
            | Op::Batch(_)
            | Op::Txn(_)
    )
}

/// The store, the model and the simulated machine.
struct Harness {
    sim: SimFs,
    clock: ManualClock,
    config: Config,
    db: Option<Db>,
    model: Model,
    /// Model states since the last point known durable: `hist[0]` is
    /// durable, the last one is `model`.
    hist: Vec<Model>,
    /// A crash point or fault is armed; the damage model and seed of the
    /// crash that follows the first failure.
    armed: Option<(Damage, u64)>,
    /// An injected fault may have thrown unsynced data away.
    faulted: bool,
    /// Since the last open after a crash, or that had to choose among
    /// several states, until the next sweep: the store may hold more
    /// expired keys than the model. A writable open keeps keys that expired
    /// while the store was closed for its first sweep to log, and the state
    /// chosen is only known to read the same: it may predate keys that have
    /// expired since.
    sweep_count_unknown: bool,
    /// The simulated machine crashed since the store was last opened.
    crashed: bool,
    /// Index of the operation running (for messages).
    at: usize,
}

impl Harness {
    fn options(&self) -> Options {
        let o = Options::new()
            .vfs(Arc::new(self.sim.clone()))
            .deterministic(true)
            .auto_compact(false)
            .expiry_sweep_interval_ms(0)
            .clock(self.clock.clone())
            .sync_policy(self.config.policy)
            .max_segment_bytes(self.config.segment_bytes);
        if self.config.tail_cache {
            o
        } else {
            o.tail_cache_bytes(0)
        }
    }

    fn now(&self) -> u64 {
        cairn::Clock::now_unix_ms(&self.clock)
    }

    fn db(&self) -> &Db {
        self.db.as_ref().expect("the store is open")
    }

    /// Opens the store, crashing again (with `again`) if the recovery hits
    /// a second crash point, and checks that it holds one of `candidates`;
    /// that state becomes the model's.
    fn open_checked(&mut self, candidates: Vec<Model>, again: Option<RecoveryCrash>, seed: u64) {
        if let Some(rc) = again {
            self.sim.crash_at(Some(self.sim.op_count() + rc.at));
        }
        let db = loop {
            match self.options().open(DIR) {
                Ok(db) => break db,
                Err(e) if self.sim.is_down() => {
                    let d = again.map_or(Damage::ProcessCrash, |rc| rc.damage);
                    self.sim.crash(d, seed ^ 0xa5);
                    self.crashed = true;
                    let _ = e;
                }
                Err(e) => panic!("op {}: open failed: {e}", self.at),
            }
        };
        self.sim.crash_at(None);
        let now = self.now();
        let mut seen = View::new();
        for i in 0..KEYS {
            let k = key(i);
            let v = db
                .get(&k)
                .unwrap_or_else(|e| panic!("op {}: get failed: {e}", self.at));
            let t = db.ttl(&k).expect("ttl");
            match (v, t) {
                (None, Ttl::Missing) => {}
                (Some(v), Ttl::Persistent) => {
                    seen.insert(k, (v, 0));
                }
                (Some(v), Ttl::Expires(d)) => {
                    seen.insert(k, (v, now + d.as_millis() as u64));
                }
                (v, t) => panic!("op {}: get {v:?} disagrees with ttl {t:?}", self.at),
            }
        }
        // After a crash too: an expired tombstone that was not durable
        // (nothing waits for one) is lost, and its key, still expired, is
        // back in the index for the next sweep, while the model (which
        // removed it) cannot tell.
        self.sweep_count_unknown |= candidates.len() > 1 || self.crashed;
        self.crashed = false;
        let Some(found) = candidates.iter().find(|c| view(c, now) == seen) else {
            let views: Vec<String> = candidates
                .iter()
                .map(|c| format!("  {:?}", brief(&view(c, now))))
                .collect();
            panic!(
                "op {}: the recovered state {:?} is none of the {} allowed:\n{}",
                self.at,
                brief(&seen),
                candidates.len(),
                views.join("\n")
            );
        };
        let scan: Vec<(Vec<u8>, Vec<u8>)> = db
            .scan_prefix("")
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("op {}: scan after open failed: {e}", self.at));
        let want: Vec<(Vec<u8>, Vec<u8>)> = seen
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        assert_eq!(scan, want, "op {}: scan after open", self.at);
        assert_eq!(
            db.len().expect("len"),
            seen.len(),
            "op {}: len after open",
            self.at
        );
        self.model = found.clone();
        self.hist = vec![self.model.clone()];
        self.armed = None;
        self.faulted = false;
        self.db = Some(db);
    }

    /// The states a crash may leave: everything since the last durable
    /// point after a power loss (or an injected fault), only the current
    /// state after a process crash; plus `extra`, the state after an
    /// operation that failed.
    fn candidates(&self, damage: Damage, extra: Option<Model>) -> Vec<Model> {
        let mut c = if damage != Damage::ProcessCrash || self.faulted {
            self.hist.clone()
        } else {
            vec![self.model.clone()]
        };
        c.extend(extra);
        c
    }

    /// Crashes the machine now (before the handle is dropped, so its close
    /// cannot make anything durable), then reopens and checks.
    fn crash(
        &mut self,
        damage: Damage,
        seed: u64,
        extra: Option<Model>,
        again: Option<RecoveryCrash>,
    ) {
        let candidates = self.candidates(damage, extra);
        if trace() {
            eprintln!(
                "op {}: crash ({damage:?}, seed {seed}, then {again:?}); {} states allowed",
                self.at,
                candidates.len()
            );
        }
        self.sim.crash(damage, seed);
        self.crashed = true;
        drop(self.db.take());
        self.open_checked(candidates, again, seed);
    }

    /// After an operation failed (with a crash or fault armed).
    fn crash_after_failure(&mut self, post: Option<Model>) {
        let (damage, seed) = self.armed.unwrap_or((Damage::ProcessCrash, 0));
        self.crash(damage, seed, post, None);
    }

    /// Compares a result with the model's; on a match the model moves on.
    fn check(&mut self, op: &Op, expected: Res, post: Model, actual: Res) {
        if trace() {
            eprintln!(
                "op {}: {} -> {}",
                self.at,
                short(&format!("{op:?}")),
                short(&format!("{actual:?}"))
            );
        }
        if actual == expected {
            self.model = post;
            if is_write(op) {
                if self.config.policy == SyncPolicy::Always {
                    self.hist = vec![self.model.clone()];
                } else {
                    self.hist.push(self.model.clone());
                }
            }
            return;
        }
        if matches!(actual, Res::Other(_)) && (self.armed.is_some() || self.faulted) {
            self.crash_after_failure(is_write(op).then_some(post));
            return;
        }
        panic!(
            "op {} {}: the store returned {}, the model {}",
            self.at,
            short(&format!("{op:?}")),
            short(&format!("{actual:?}")),
            short(&format!("{expected:?}"))
        );
    }

    fn run_op(&mut self, op: &Op) {
        if self.sim.is_down() {
            // A crash point was reached by an operation whose failure was
            // not reported (a hint write, say).
            self.crash_after_failure(None);
        }
        let now = self.now();
        let (expected, post) = model_step(&self.model, op, now);
        let db = self.db().clone();
        let actual = match op {
            Op::Put(k, v) => res(db.put(key(*k), v), |()| Res::Unit),
            Op::PutTtl(k, v, t) => res(
                db.put_with_ttl(key(*k), v, Duration::from_millis(*t)),
                |()| Res::Unit,
            ),
            Op::PutIfAbsent(k, v, t) => res(
                db.put_if_absent(key(*k), v, t.map(Duration::from_millis)),
                Res::Bool,
            ),
            Op::Delete(k) => res(db.delete(key(*k)), Res::Bool),
            Op::Get(k) => res(db.get(key(*k)), Res::Val),
            Op::Ttl(k) => res(db.ttl(key(*k)), Res::Ttl),
            Op::Expire(k, t) => res(db.expire(key(*k), Duration::from_millis(*t)), Res::Bool),
            Op::Persist(k) => res(db.persist(key(*k)), Res::Bool),
            Op::Incr(k, d) => res(db.incr(key(*k), *d), Res::Int),
            Op::Cas(k, e, n) => {
                let cur = visible(&self.model, &key(*k), now).map(|(v, _)| v.clone());
                let expected_value = match e {
                    CasExpect::Absent => None,
                    CasExpect::Current => cur,
                    CasExpect::Value(v) => Some(v.clone()),
                };
                res(
                    db.compare_and_swap(key(*k), expected_value.as_deref(), n.as_deref()),
                    |r| Res::Cas(r.map_err(|c| c.current)),
                )
            }
            Op::Batch(items) => {
                let mut b = Batch::new();
                for i in items {
                    match i {
                        BatchItem::Put(k, v, t) => {
                            b.push_put(key(*k), v, t.map(Duration::from_millis));
                        }
                        BatchItem::Delete(k) => b.push_delete(key(*k)),
                    }
                }
                res(db.write_batch(b), |()| Res::Unit)
            }
            Op::Txn(items) => res(
                db.transaction(|tx| {
                    let reads = items
                        .iter()
                        .map(|i| match i {
                            BatchItem::Put(k, ..) | BatchItem::Delete(k) => tx.get(key(*k)),
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    for i in items {
                        match i {
                            BatchItem::Put(k, v, None) => tx.put(key(*k), v),
                            BatchItem::Put(k, v, Some(t)) => {
                                tx.put_with_ttl(key(*k), v, Duration::from_millis(*t))?;
                            }
                            BatchItem::Delete(k) => tx.delete(key(*k)),
                        }
                    }
                    Ok(reads)
                }),
                Res::Reads,
            ),
            Op::Scan(p) => res(db.scan_prefix(p).collect::<Result<Vec<_>, _>>(), Res::Scan),
            Op::Compact => res(db.compact(), |_| Res::Unit),
            Op::CompactSome(mask) => {
                let ids: Vec<u32> = db
                    .segment_stats()
                    .iter()
                    .filter(|s| !s.active)
                    .enumerate()
                    .filter(|(i, _)| mask >> (i % 8) & 1 == 1)
                    .map(|(_, s)| s.id)
                    .collect();
                res(db.compact_segments(&ids), |_| Res::Unit)
            }
            Op::Advance(ms) => {
                self.clock.advance(Duration::from_millis(*ms));
                Res::Unit
            }
            Op::Sync => {
                let r = res(db.sync(), |()| Res::Unit);
                if r == Res::Unit {
                    self.hist = vec![self.model.clone()];
                }
                r
            }
            Op::Sweep => {
                let removed = db.sweep_expired();
                let expired = self
                    .model
                    .values()
                    .filter(|(_, e)| *e != 0 && *e <= now)
                    .count() as u64;
                assert!(
                    removed <= expired || self.sweep_count_unknown,
                    "op {}: sweep removed {removed} keys, only {expired} can have expired",
                    self.at
                );
                // A sweep that may have failed part way (an armed crash
                // point or fault) may leave some for the next one.
                if !self.faulted && self.armed.is_none() {
                    self.sweep_count_unknown = false;
                }
                Res::Unit
            }
            Op::Reopen => {
                drop(db);
                self.reopen(false);
                return;
            }
            Op::ReopenReadOnly => {
                drop(db);
                self.reopen(true);
                return;
            }
            Op::Crash(d, seed, again) => {
                drop(db);
                self.crash(*d, *seed, None, *again);
                return;
            }
            Op::CrashAt(n, d, seed) => {
                if self.armed.is_none() {
                    self.sim.crash_at(Some(self.sim.op_count() + n));
                    self.armed = Some((*d, *seed));
                }
                Res::Unit
            }
            Op::Fault(kind, n, forever) => {
                self.sim.inject(Fault {
                    kind: *kind,
                    at_op: self.sim.op_count() + n,
                    forever: *forever,
                });
                self.faulted = true;
                Res::Unit
            }
            Op::OversizedKey => res(
                db.put(vec![b'x'; cairn::MAX_KEY_BYTES as usize + 1], "v"),
                |()| Res::Unit,
            ),
        };
        drop(db);
        self.check(op, expected, post, actual);
    }

    /// Closes the store and opens it again (read-only first, if asked).
    fn reopen(&mut self, read_only_first: bool) {
        drop(self.db.take());
        if self.sim.is_down() || self.armed.is_some() || self.faulted {
            // The close may have hit the crash point or a fault: treat it
            // as a crash.
            let (damage, seed) = self.armed.unwrap_or((Damage::ProcessCrash, 0));
            let candidates = self.candidates(damage, None);
            self.sim.crash(damage, seed);
            self.crashed = true;
            self.open_checked(candidates, None, seed);
            return;
        }
        if read_only_first {
            let db = self
                .options()
                .read_only(true)
                .open(DIR)
                .unwrap_or_else(|e| panic!("op {}: read-only open failed: {e}", self.at));
            let now = self.now();
            for i in 0..KEYS {
                let k = key(i);
                let want = visible(&self.model, &k, now).map(|(v, _)| v.clone());
                assert_eq!(
                    db.get(&k).expect("get"),
                    want,
                    "op {}: read-only get",
                    self.at
                );
            }
            assert!(matches!(db.put("x", "y"), Err(Error::ReadOnly)));
            drop(db);
        }
        let candidates = vec![self.model.clone()];
        self.open_checked(candidates, None, 0);
    }

    /// The final check: the store holds exactly the model, also after a
    /// clean reopen.
    fn finish(&mut self) {
        if self.sim.is_down() || self.armed.is_some() || self.faulted {
            self.crash_after_failure(None);
        }
        let now = self.now();
        let db = self.db().clone();
        for i in 0..KEYS {
            let k = key(i);
            let want = visible(&self.model, &k, now).map(|(v, _)| v.clone());
            assert_eq!(db.get(&k).expect("get"), want, "final get");
        }
        drop(db);
        self.reopen(false);
    }
}

/// Whether `CAIRN_FUZZ_TRACE` asks for a line per operation.
fn trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("CAIRN_FUZZ_TRACE").is_some())
}

/// Shortens the byte arrays in a `Debug` rendering: `[118, 49, 46, 50]`
/// becomes `b"v1.2"`, long ones are cut.
fn short(debug: &str) -> String {
    let mut out = String::new();
    let mut rest = debug;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let Some(j) = tail.find(']') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let bytes: Option<Vec<u8>> = tail[..j]
            .split(", ")
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().ok())
            .collect();
        match bytes {
            Some(b) => {
                let text: String = b
                    .iter()
                    .take(24)
                    .flat_map(|&c| std::ascii::escape_default(c))
                    .map(char::from)
                    .collect();
                let more = if b.len() > 24 {
                    format!("...({} bytes)", b.len())
                } else {
                    String::new()
                };
                out.push_str(&format!("b\"{text}{more}\""));
            }
            None => {
                out.push('[');
                rest = tail;
                continue;
            }
        }
        rest = &tail[j + 1..];
    }
    out.push_str(rest);
    out
}

/// Short description of a view for failure messages.
fn brief(v: &View) -> String {
    let parts: Vec<String> = v
        .iter()
        .map(|(k, (val, exp))| {
            let k = String::from_utf8_lossy(&k[..k.len().min(8)]).into_owned();
            let val = String::from_utf8_lossy(&val[..val.len().min(12)]).into_owned();
            if *exp == 0 {
                format!("{k}={val}")
            } else {
                format!("{k}={val}@{exp}")
            }
        })
        .collect();
    format!("{{{}}}", parts.join(", "))
}

/// The target's body.
pub fn run(data: &[u8]) {
    let (config, ops) = decode(data);
    let sim = SimFs::new();
    let clock = ManualClock::new(START_MS);
    let mut h = Harness {
        sim,
        clock,
        config,
        db: None,
        model: Model::new(),
        hist: vec![Model::new()],
        armed: None,
        faulted: false,
        sweep_count_unknown: false,
        crashed: false,
        at: 0,
    };
    h.open_checked(vec![Model::new()], None, 0);
    for (i, op) in ops.iter().enumerate() {
        h.at = i;
        h.run_op(op);
    }
    h.at = ops.len();
    h.finish();
}
