//! Key commands: DEL, UNLINK, EXISTS, TYPE, the EXPIRE family, TTL and
//! its kin, PERSIST, KEYS, SCAN, RANDOMKEY, RENAME, RENAMENX, COPY, MOVE,
//! DBSIZE, FLUSHDB and FLUSHALL, with Redis 7.0's replies and error texts.
//!
//! Every value cairn holds is a string, so TYPE answers `string` or
//! `none`, and SCAN's TYPE filter keeps everything or nothing.
//!
//! The whole-database commands (KEYS, SCAN, DBSIZE, RANDOMKEY) walk the
//! database's index through [`Ops::db`]. Inside EXEC that walk sees the
//! database as committed, without the transaction's own pending writes (a
//! key SET earlier in the same EXEC is not listed, a key deleted earlier
//! still is); FLUSHDB alone also deletes the pending keys.

use std::hash::{BuildHasher, Hasher};

use super::{
    commit_error, heavy, is, mark_dirty, parse_int, store_error, Ctx, Kind, Spec, HEAVY, NO_MULTI,
};
use crate::resp::reply::Reply;
use crate::store::{Ops, DATABASES};

mod copy;
pub mod glob;

/// A key command's table entry (a shorthand for the table below).
const fn spec(
    name: &'static str,
    arity: i32,
    kind: Kind,
    redis_flags: &'static [&'static str],
    keys: (i32, i32, i32),
    handler: super::Handler,
) -> Spec {
    Spec {
        name,
        arity,
        kind,
        flags: 0,
        redis_flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        handler,
    }
}

const W: &[&str] = &["write"];
const WF: &[&str] = &["write", "fast"];
const RF: &[&str] = &["readonly", "fast"];
const R: &[&str] = &["readonly"];
const ONE: (i32, i32, i32) = (1, 1, 1);
const ALL: (i32, i32, i32) = (1, -1, 1);
const NONE: (i32, i32, i32) = (0, 0, 0);

/// The key commands.
pub const COMMANDS: &[Spec] = &[
    spec("del", -2, Kind::Write, W, ALL, del),
    spec("unlink", -2, Kind::Write, WF, ALL, del),
    spec("exists", -2, Kind::Read, RF, ALL, exists),
    spec("type", 2, Kind::Read, RF, ONE, key_type),
    spec("expire", -3, Kind::Write, WF, ONE, expire),
    spec("pexpire", -3, Kind::Write, WF, ONE, pexpire),
    spec("expireat", -3, Kind::Write, WF, ONE, expireat),
    spec("pexpireat", -3, Kind::Write, WF, ONE, pexpireat),
    spec("ttl", 2, Kind::Read, RF, ONE, ttl),
    spec("pttl", 2, Kind::Read, RF, ONE, pttl),
    spec("expiretime", 2, Kind::Read, RF, ONE, expiretime),
    spec("pexpiretime", 2, Kind::Read, RF, ONE, pexpiretime),
    spec("persist", 2, Kind::Write, WF, ONE, persist),
    heavy(spec("keys", 2, Kind::Read, R, NONE, keys)),
    heavy(spec("scan", -2, Kind::Read, R, NONE, scan)),
    heavy(spec("randomkey", 1, Kind::Read, R, NONE, randomkey)),
    heavy(spec("rename", 3, Kind::Write, W, (1, 2, 1), rename)),
    heavy(spec("renamenx", 3, Kind::Write, WF, (1, 2, 1), renamenx)),
    heavy(spec(
        "copy",
        -3,
        Kind::Other,
        &["write", "denyoom"],
        (1, 2, 1),
        copy::copy,
    )),
    heavy(spec("move", 3, Kind::Other, WF, ONE, copy::move_key)),
    heavy(spec("dbsize", 1, Kind::Read, RF, NONE, dbsize)),
    heavy(spec("flushdb", -1, Kind::Write, W, NONE, flushdb)),
    Spec {
        flags: NO_MULTI | HEAVY,
        ..spec("flushall", -1, Kind::Other, W, NONE, flushall)
    },
];

/// The view, or the error reply for its absence.
macro_rules! ops {
    ($ctx:expr) => {
        match $ctx.ops() {
            Ok(o) => o,
            Err(r) => return r,
        }
    };
}

/// A store result, or its error reply.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return store_error(&e),
        }
    };
}

fn del(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    let mut n = 0;
    for key in &args[1..] {
        if tri!(ops.exists(key)) {
            tri!(ops.delete(key));
            n += 1;
        }
    }
    Reply::Int(n)
}

/// EXISTS counts a key once per time it is named.
fn exists(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    let mut n = 0;
    for key in &args[1..] {
        if tri!(ops.exists(key)) {
            n += 1;
        }
    }
    Reply::Int(n)
}

fn key_type(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    if tri!(ops.exists(&args[1])) {
        Reply::status("string")
    } else {
        Reply::status("none")
    }
}

/// The options of the EXPIRE family.
#[derive(Default, Clone, Copy)]
struct ExpireFlags {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

/// Parses NX, XX, GT and LT as Redis does: every option first, then the
/// conflicts.
fn expire_flags(opts: &[Vec<u8>]) -> Result<ExpireFlags, Reply> {
    let mut f = ExpireFlags::default();
    for opt in opts {
        if is(opt, "nx") {
            f.nx = true;
        } else if is(opt, "xx") {
            f.xx = true;
        } else if is(opt, "gt") {
            f.gt = true;
        } else if is(opt, "lt") {
            f.lt = true;
        } else {
            return Err(Reply::error(format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            )));
        }
    }
    if f.nx && (f.xx || f.gt || f.lt) {
        return Err(Reply::err(
            "ERR NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if f.gt && f.lt {
        return Err(Reply::err(
            "ERR GT and LT options at the same time are not compatible",
        ));
    }
    Ok(f)
}

/// Whether the options let a key whose expiry is `current` (ms, `None`:
/// never) take the new expiry `when`. No expiry counts as infinite.
fn expire_allowed(f: ExpireFlags, current: Option<u64>, when: i64) -> bool {
    let current = current.map(i128::from);
    let when = i128::from(when);
    if f.nx && current.is_some() {
        return false;
    }
    if f.xx && current.is_none() {
        return false;
    }
    if f.gt && current.is_none_or(|c| when <= c) {
        return false;
    }
    if f.lt && current.is_some_and(|c| when >= c) {
        return false;
    }
    true
}

/// EXPIRE, PEXPIRE, EXPIREAT and PEXPIREAT: `seconds` when the argument
/// counts seconds, `relative` when it counts from now; `name` for the
/// error text.
fn expire_generic(
    ctx: &mut Ctx<'_>,
    args: &[Vec<u8>],
    seconds: bool,
    relative: bool,
    name: &str,
) -> Reply {
    let flags = match expire_flags(&args[3..]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let mut when = match parse_int(&args[2]) {
        Ok(w) => w,
        Err(r) => return r,
    };
    let invalid = || Reply::error(format!("ERR invalid expire time in '{name}' command"));
    if seconds {
        when = match when.checked_mul(1000) {
            Some(w) => w,
            None => return invalid(),
        };
    }
    let ops = ops!(ctx);
    let now = i64::try_from(ops.now_ms()).unwrap_or(i64::MAX);
    if relative {
        when = match when.checked_add(now) {
            Some(w) => w,
            None => return invalid(),
        };
    }
    let key = &args[1];
    let Some((value, current)) = tri!(ops.get(key)) else {
        return Reply::Int(0);
    };
    if !expire_allowed(flags, current, when) {
        return Reply::Int(0);
    }
    if when <= now {
        tri!(ops.delete(key));
    } else {
        let at = u64::try_from(when).unwrap_or(u64::MAX);
        tri!(ops.put(key, &value, Some(at)));
    }
    Reply::Int(1)
}

fn expire(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    expire_generic(ctx, args, true, true, "expire")
}

fn pexpire(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    expire_generic(ctx, args, false, true, "pexpire")
}

fn expireat(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    expire_generic(ctx, args, true, false, "expireat")
}

fn pexpireat(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    expire_generic(ctx, args, false, false, "pexpireat")
}

/// TTL, PTTL, EXPIRETIME, PEXPIRETIME: -2 for a missing key, -1 for a key
/// without expiry; seconds are rounded to the nearest, as Redis does.
fn ttl_generic(ctx: &mut Ctx<'_>, args: &[Vec<u8>], ms: bool, absolute: bool) -> Reply {
    let ops = ops!(ctx);
    let now = ops.now_ms();
    let Some((_, expiry)) = tri!(ops.get(&args[1])) else {
        return Reply::Int(-2);
    };
    let Some(at) = expiry else {
        return Reply::Int(-1);
    };
    let left = if absolute {
        i128::from(at)
    } else {
        (i128::from(at) - i128::from(now)).max(0)
    };
    let out = if ms { left } else { (left + 500) / 1000 };
    Reply::Int(i64::try_from(out).unwrap_or(i64::MAX))
}

fn ttl(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    ttl_generic(ctx, args, false, false)
}

fn pttl(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    ttl_generic(ctx, args, true, false)
}

fn expiretime(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    ttl_generic(ctx, args, false, true)
}

fn pexpiretime(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    ttl_generic(ctx, args, true, true)
}

fn persist(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    match tri!(ops.get(&args[1])) {
        Some((value, Some(_))) => {
            tri!(ops.put(&args[1], &value, None));
            Reply::Int(1)
        }
        _ => Reply::Int(0),
    }
}

/// The reply when a pattern needs more matching work than allowed.
fn too_complex() -> Reply {
    Reply::err("ERR pattern too complex: matching it exceeds the server's work limit")
}

/// A MATCH pattern: `None` for everything (the pattern `*` alone, which
/// Redis does not run through its matcher, so it matches the empty key).
fn pattern_of(arg: &[u8]) -> Option<&[u8]> {
    (arg != b"*").then_some(arg)
}

/// Whether `key` passes `pattern`, charging the work to `budget`; `Err`
/// once the budget is spent.
fn key_matches(
    pattern: Option<&[u8]>,
    key: &[u8],
    budget: &mut glob::Budget,
) -> Result<bool, glob::TooComplex> {
    match pattern {
        None => Ok(true),
        Some(p) => {
            budget.grant(p, key.len());
            glob::matches(p, key, budget)
        }
    }
}

/// KEYS: one walk of the index. Inside EXEC it does not see the
/// transaction's pending writes.
fn keys(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    let pattern = pattern_of(&args[1]);
    let mut budget = glob::Budget::default();
    let mut failed = false;
    let mut out = Vec::new();
    tri!(ops.db().for_each_key(b"", |key, _| {
        if failed {
            return;
        }
        match key_matches(pattern, key, &mut budget) {
            Ok(true) => out.push(Reply::Bulk(key.to_vec())),
            Ok(false) => {}
            Err(glob::TooComplex) => failed = true,
        }
    }));
    if failed {
        return too_complex();
    }
    Reply::Array(out)
}

/// SCAN's position of a key: a 64-bit hash with a fixed seed, the same in
/// every process of this build, so a cursor stays valid across restarts.
pub fn scan_hash(key: &[u8]) -> u64 {
    const SEED: u64 = 0x6361_6972_6e5f_7363; // "cairn_sc"
    let mut h = foldhash::fast::FixedState::with_seed(SEED).build_hasher();
    h.write(key);
    h.finish()
}

/// Parses a SCAN cursor as Redis does with C's `strtoul`: no leading
/// space, an optional sign (a `-` wraps around), digits, nothing after;
/// the empty string is 0.
fn parse_cursor(arg: &[u8]) -> Result<u64, Reply> {
    let bad = || Reply::err("ERR invalid cursor");
    let (negative, digits) = match arg.first() {
        Some(b'-') => (true, &arg[1..]),
        Some(b'+') => (false, &arg[1..]),
        _ => (false, arg),
    };
    if digits.is_empty() {
        return if arg.is_empty() { Ok(0) } else { Err(bad()) };
    }
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(if negative { n.wrapping_neg() } else { n })
}

/// SCAN's options.
struct ScanArgs<'a> {
    cursor: u64,
    count: usize,
    pattern: Option<&'a [u8]>,
    /// Whether the TYPE filter (if any) keeps strings.
    strings: bool,
}

fn scan_args(args: &[Vec<u8>]) -> Result<ScanArgs<'_>, Reply> {
    let cursor = parse_cursor(&args[1])?;
    let mut s = ScanArgs {
        cursor,
        count: 10,
        pattern: None,
        strings: true,
    };
    let mut i = 2;
    while i < args.len() {
        let Some(value) = args.get(i + 1) else {
            return Err(Reply::err("ERR syntax error"));
        };
        if is(&args[i], "count") {
            let n = parse_int(value)?;
            if n < 1 {
                return Err(Reply::err("ERR syntax error"));
            }
            s.count = usize::try_from(n).unwrap_or(usize::MAX);
        } else if is(&args[i], "match") {
            s.pattern = pattern_of(value);
        } else if is(&args[i], "type") {
            s.strings = is(value, "string");
        } else {
            return Err(Reply::err("ERR syntax error"));
        }
        i += 2;
    }
    Ok(s)
}

/// The keys of one SCAN call: the `count` matching keys with the smallest
/// hashes at or after `cursor` (every key sharing the last of those
/// hashes too), and the next cursor (0 when no matching key lies beyond).
type ScanPage = (u64, Vec<Vec<u8>>);

/// Finds one SCAN page in a single walk of the index, keeping only the
/// `count` smallest hashes seen (a bounded ordered map).
fn scan_page(ops: &mut dyn Ops, s: &ScanArgs<'_>) -> Result<Result<ScanPage, Reply>, cairn::Error> {
    let mut page: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
    let mut more = false;
    let mut budget = glob::Budget::default();
    let mut failed = false;
    ops.db().for_each_key(b"", |key, _| {
        let h = scan_hash(key);
        if failed || h < s.cursor {
            return;
        }
        if page.len() >= s.count && page.last_key_value().is_some_and(|(&max, _)| h > max) {
            // Beyond the page: only whether it matches decides `more`.
            if !more {
                match key_matches(s.pattern, key, &mut budget) {
                    Ok(m) => more = m,
                    Err(_) => failed = true,
                }
            }
            return;
        }
        match key_matches(s.pattern, key, &mut budget) {
            Ok(true) => {}
            Ok(false) => return,
            Err(_) => {
                failed = true;
                return;
            }
        }
        page.entry(h).or_default().push(key.to_vec());
        if page.len() > s.count {
            page.pop_last();
            more = true;
        }
    })?;
    if failed {
        return Ok(Err(too_complex()));
    }
    let next = match page.last_key_value() {
        Some((&max, _)) if more => max.wrapping_add(1),
        _ => 0,
    };
    Ok(Ok((next, page.into_values().flatten().collect())))
}

/// SCAN with MATCH, COUNT and TYPE.
///
/// The cursor is a position in the space of [`scan_hash`]: a call returns
/// the matching keys whose hash is at or after the cursor, COUNT of them
/// (more when several share the last hash), and the hash after the last
/// one as the next cursor. So, as in Redis, a key present for the whole
/// scan is returned, and on a set of keys that does not change each key is
/// returned exactly once; the server keeps no state between calls, and a
/// cursor survives a restart.
///
/// The cost: every call walks the whole index once (hashing each key, and
/// matching the pattern against those at or after the cursor), so a full
/// scan of N keys with COUNT c costs about N × N / c hash computations.
/// Inside EXEC it does not see the transaction's pending writes.
fn scan(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let s = match scan_args(args) {
        Ok(s) => s,
        Err(r) => return r,
    };
    if !s.strings {
        // Every key is a string: no key of another type anywhere.
        return Reply::Array(vec![Reply::Bulk(b"0".to_vec()), Reply::Array(Vec::new())]);
    }
    let ops = ops!(ctx);
    let (next, keys) = match tri!(scan_page(ops, &s)) {
        Ok(p) => p,
        Err(r) => return r,
    };
    Reply::Array(vec![
        Reply::Bulk(next.to_string().into_bytes()),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
}

/// A random number from the standard library's randomly keyed hasher.
fn random_u64() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// RANDOMKEY: a uniformly chosen live key, or nil. It costs a count of the
/// keys and a walk of the index up to the chosen one. Inside EXEC it does
/// not see the transaction's pending writes.
fn randomkey(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    let len = tri!(ops.db().len());
    if len == 0 {
        return Reply::Nil;
    }
    let target = random_u64() % u64::try_from(len).unwrap_or(u64::MAX);
    let mut seen = 0u64;
    let mut chosen: Option<Vec<u8>> = None;
    tri!(ops.db().for_each_key(b"", |key, _| {
        // Keys may expire or go between the count and the walk: the last
        // key seen stands in when fewer than counted remain.
        if seen <= target {
            chosen = Some(key.to_vec());
        }
        seen += 1;
    }));
    chosen.map_or(Reply::Nil, Reply::Bulk)
}

/// RENAME and RENAMENX: the value moves with its expiry.
fn rename_generic(ctx: &mut Ctx<'_>, args: &[Vec<u8>], nx: bool) -> Reply {
    let ops = ops!(ctx);
    let (src, dst) = (&args[1], &args[2]);
    let Some((value, expiry)) = tri!(ops.get(src)) else {
        return Reply::err("ERR no such key");
    };
    if src == dst {
        return if nx { Reply::Int(0) } else { Reply::OK };
    }
    if nx && tri!(ops.exists(dst)) {
        return Reply::Int(0);
    }
    tri!(ops.delete(src));
    tri!(ops.put(dst, &value, expiry));
    if nx {
        Reply::Int(1)
    } else {
        Reply::OK
    }
}

fn rename(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    rename_generic(ctx, args, false)
}

fn renamenx(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    rename_generic(ctx, args, true)
}

/// DBSIZE: the live keys. Inside EXEC it does not count the
/// transaction's pending writes.
fn dbsize(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    let ops = ops!(ctx);
    let n = tri!(ops.db().len());
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// FLUSHDB's and FLUSHALL's optional ASYNC or SYNC (both do the same
/// here).
fn flush_args(args: &[Vec<u8>]) -> Result<(), Reply> {
    match args {
        [_] => Ok(()),
        [_, mode] if is(mode, "async") || is(mode, "sync") => Ok(()),
        _ => Err(Reply::err("ERR syntax error")),
    }
}

/// FLUSHDB: deletes every key of the current database, inside the
/// command's transaction (so inside EXEC too, pending writes included).
/// As in Redis, it touches the WATCHes of the keys it deletes, not those
/// of keys that did not exist.
fn flushdb(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if let Err(r) = flush_args(args) {
        return r;
    }
    let ops = ops!(ctx);
    let mut keys = ops.pending_keys();
    tri!(ops.db().for_each_key(b"", |key, _| keys.push(key.to_vec())));
    for key in &keys {
        tri!(ops.delete(key));
    }
    Reply::OK
}

/// FLUSHALL: opens every database that exists and empties each in its own
/// transaction (so a crash midway may leave some databases flushed and
/// others not), touching the WATCHes of the keys it deletes.
fn flushall(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if let Err(r) = flush_args(args) {
        return r;
    }
    let shared = ctx.shared;
    let store = &shared.store;
    tri!(store.open_existing());
    for index in 0..DATABASES {
        if store.opened(index).is_none() {
            continue;
        }
        let result = store.write_txn(index, |ops| {
            let mut keys = Vec::new();
            ops.db()
                .for_each_key(b"", |key, _| keys.push(key.to_vec()))?;
            for key in &keys {
                ops.delete(key)?;
            }
            Ok(())
        });
        mark_dirty(shared, ctx.client, index);
        if let Err(e) = result {
            return commit_error(shared, &e);
        }
    }
    Reply::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_like_strtoul() {
        assert_eq!(parse_cursor(b"0").ok(), Some(0));
        assert_eq!(parse_cursor(b"").ok(), Some(0));
        assert_eq!(parse_cursor(b"+7").ok(), Some(7));
        assert_eq!(parse_cursor(b"-1").ok(), Some(u64::MAX));
        assert_eq!(parse_cursor(b"18446744073709551615").ok(), Some(u64::MAX));
        for bad in [
            &b" 0"[..],
            b"0 ",
            b"x",
            b"-",
            b"+",
            b"0x1",
            b"18446744073709551616",
            b"1.5",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expire_options_conflict_as_in_redis() {
        let v = |s: &[&str]| s.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let text = |r: Reply| match r {
            Reply::Error(t) => t.into_owned(),
            other => format!("{other:?}"),
        };
        let nx_and = "ERR NX and XX, GT or LT options at the same time are not compatible";
        for opts in [
            &["nx", "xx"][..],
            &["NX", "gt"],
            &["lt", "nx"],
            &["gt", "lt", "nx"],
        ] {
            assert_eq!(
                expire_flags(&v(opts)).err().map(text).as_deref(),
                Some(nx_and)
            );
        }
        assert_eq!(
            expire_flags(&v(&["gt", "LT"])).err().map(text).as_deref(),
            Some("ERR GT and LT options at the same time are not compatible")
        );
        assert_eq!(
            expire_flags(&v(&["xx", "foo"])).err().map(text).as_deref(),
            Some("ERR Unsupported option foo")
        );
        assert!(expire_flags(&v(&["xx", "XX", "gt"])).is_ok());
    }

    #[test]
    fn expire_conditions() {
        let f = |nx, xx, gt, lt| ExpireFlags { nx, xx, gt, lt };
        assert!(expire_allowed(f(true, false, false, false), None, 5));
        assert!(!expire_allowed(f(true, false, false, false), Some(9), 5));
        assert!(!expire_allowed(f(false, true, false, false), None, 5));
        assert!(expire_allowed(f(false, true, false, false), Some(9), 5));
        // No expiry is infinite: GT never passes, LT always does.
        assert!(!expire_allowed(f(false, false, true, false), None, 5));
        assert!(expire_allowed(f(false, false, false, true), None, 5));
        assert!(expire_allowed(f(false, false, true, false), Some(4), 5));
        assert!(!expire_allowed(f(false, false, true, false), Some(5), 5));
        assert!(expire_allowed(f(false, false, false, true), Some(6), 5));
        assert!(!expire_allowed(f(false, false, false, true), Some(5), 5));
        assert!(!expire_allowed(f(false, true, true, false), Some(5), 5));
    }

    #[test]
    fn scan_hash_is_fixed() {
        // The same in every process: a cursor handed out before a restart
        // still points at the same place after it.
        assert_eq!(scan_hash(b"key:1"), scan_hash(b"key:1"));
        assert_ne!(scan_hash(b"key:1"), scan_hash(b"key:2"));
        let seen: std::collections::HashSet<u64> = (0..10_000)
            .map(|i| scan_hash(format!("k{i}").as_bytes()))
            .collect();
        assert_eq!(seen.len(), 10_000);
    }
}
