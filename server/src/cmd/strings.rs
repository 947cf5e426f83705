//! String commands: GET, SET and the rest of Redis's string family, with
//! Redis 7.0's options, replies and error texts.
//!
//! Every handler reads and writes through [`Ops`], so it runs the same on
//! its own and inside EXEC. A write command validates everything (options,
//! numbers, sizes) before its first write, since a failed command must
//! leave nothing behind. Keys and values past cairn's limits
//! ([`cairn::MAX_KEY_BYTES`], [`cairn::MAX_VALUE_BYTES`]) are refused with
//! an error naming the limit; a key too long to be stored reads as missing.

mod bits;
mod float;
mod lcs;

use super::{heavy, is, parse_int, store_error, wrong_arity, Ctx, Kind, Spec};
use crate::resp::reply::Reply;
use crate::store::{Entry, Ops};
use float::LongDouble;

/// A handler's result: the reply, or the error reply that stops it.
type Res = Result<Reply, Reply>;

/// One string command's table entry: Redis's arity, kind, flags and key
/// positions (`first 1, last 1, step 1` unless given).
macro_rules! spec {
    ($name:literal, $arity:expr, $kind:ident, [$($flag:literal),*], $handler:ident) => {
        spec!($name, $arity, $kind, [$($flag),*], $handler, 1, 1, 1)
    };
    ($name:literal, $arity:expr, $kind:ident, [$($flag:literal),*], $handler:ident,
     $first:expr, $last:expr, $step:expr) => {
        Spec {
            name: $name,
            arity: $arity,
            kind: Kind::$kind,
            flags: 0,
            redis_flags: &[$($flag),*],
            first_key: $first,
            last_key: $last,
            step: $step,
            handler: $handler,
        }
    };
}

/// The string commands, with the arity, flags and key positions Redis
/// 7.0's `COMMAND INFO` reports. Those that may copy or scan a value of up
/// to 512 MiB are [`heavy`](super::HEAVY).
pub const COMMANDS: &[Spec] = &[
    spec!("get", 2, Read, ["readonly", "fast"], get),
    spec!("set", -3, Write, ["write", "denyoom"], set),
    spec!("setnx", 3, Write, ["write", "denyoom", "fast"], setnx),
    spec!("setex", 4, Write, ["write", "denyoom"], setex),
    spec!("psetex", 4, Write, ["write", "denyoom"], psetex),
    spec!("mget", -2, Read, ["readonly", "fast"], mget, 1, -1, 1),
    spec!("mset", -3, Write, ["write", "denyoom"], mset, 1, -1, 2),
    spec!("msetnx", -3, Write, ["write", "denyoom"], msetnx, 1, -1, 2),
    spec!("getset", 3, Write, ["write", "denyoom", "fast"], getset),
    spec!("getdel", 2, Write, ["write", "fast"], getdel),
    spec!("getex", -2, Write, ["write", "fast"], getex),
    heavy(spec!(
        "append",
        3,
        Write,
        ["write", "denyoom", "fast"],
        append
    )),
    spec!("strlen", 2, Read, ["readonly", "fast"], strlen),
    heavy(spec!("getrange", 4, Read, ["readonly"], getrange)),
    heavy(spec!("substr", 4, Read, ["readonly"], getrange)),
    heavy(spec!("setrange", 4, Write, ["write", "denyoom"], setrange)),
    spec!("incr", 2, Write, ["write", "denyoom", "fast"], incr),
    spec!("decr", 2, Write, ["write", "denyoom", "fast"], decr),
    spec!("incrby", 3, Write, ["write", "denyoom", "fast"], incrby),
    spec!("decrby", 3, Write, ["write", "denyoom", "fast"], decrby),
    heavy(spec!("setbit", 4, Write, ["write", "denyoom"], setbit)),
    spec!("getbit", 3, Read, ["readonly", "fast"], getbit),
    heavy(spec!("lcs", -3, Read, ["readonly"], lcs, 1, 2, 1)),
    spec!(
        "incrbyfloat",
        3,
        Write,
        ["write", "denyoom", "fast"],
        incrbyfloat
    ),
];

/// Handlers that return [`Res`], wrapped into the table's signature.
macro_rules! handlers {
    ($($name:ident => $imp:path),* $(,)?) => {
        $(
            fn $name(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
                $imp(ctx, args).unwrap_or_else(|e| e)
            }
        )*
    };
}

handlers! {
    get => get_cmd,
    set => set_cmd,
    setnx => setnx_cmd,
    setex => setex_cmd,
    psetex => psetex_cmd,
    mget => mget_cmd,
    mset => mset_cmd,
    msetnx => msetnx_cmd,
    getset => getset_cmd,
    getdel => getdel_cmd,
    getex => getex_cmd,
    append => append_cmd,
    strlen => strlen_cmd,
    getrange => getrange_cmd,
    setrange => setrange_cmd,
    incr => incr_cmd,
    decr => decr_cmd,
    incrby => incrby_cmd,
    decrby => decrby_cmd,
    incrbyfloat => incrbyfloat_cmd,
    setbit => bits::setbit_cmd,
    getbit => bits::getbit_cmd,
    lcs => lcs::lcs_cmd,
}

// ---------------------------------------------------------------------------
// Reading and writing through a view.

/// The data view of `ctx`.
fn view<'c>(ctx: &'c mut Ctx<'_>) -> Result<&'c mut dyn Ops, Reply> {
    ctx.ops()
}

/// The live entry of `key`; a key longer than cairn stores cannot exist.
fn lookup(ops: &mut dyn Ops, key: &[u8]) -> Result<Option<Entry>, Reply> {
    if key.len() > cairn::MAX_KEY_BYTES as usize {
        return Ok(None);
    }
    ops.get(key).map_err(|e| store_error(&e))
}

/// [`lookup`] for a read command. INFO's `keyspace_hits` and
/// `keyspace_misses` are counted by the read view the dispatcher gives
/// read commands (`cmd::run`), for every read command alike.
fn lookup_read(ctx: &mut Ctx<'_>, key: &[u8]) -> Result<Option<Entry>, Reply> {
    lookup(view(ctx)?, key)
}

/// Refuses a key cairn cannot store, naming the limit.
fn check_key(key: &[u8]) -> Result<(), Reply> {
    let max = cairn::MAX_KEY_BYTES as usize;
    if key.len() > max {
        return Err(Reply::error(format!(
            "ERR key of {} bytes is longer than cairn's limit of {max} bytes",
            key.len()
        )));
    }
    Ok(())
}

/// Refuses a value cairn cannot store, naming the limit.
fn check_value(len: usize) -> Result<(), Reply> {
    let max = cairn::MAX_VALUE_BYTES as usize;
    if len > max {
        return Err(Reply::error(format!(
            "ERR value of {len} bytes is longer than cairn's limit of {max} bytes"
        )));
    }
    Ok(())
}

/// Refuses a string that a command would grow to `size + append` bytes
/// past Redis's `proto-max-bulk-len` (with Redis's text) or past cairn's
/// value limit.
fn check_growth(ctx: &Ctx<'_>, size: u64, append: u64) -> Result<(), Reply> {
    let limit = ctx.shared.proto_max_bulk_len();
    let total = size.checked_add(append);
    match total {
        Some(t) if t <= limit => {}
        _ => {
            return Err(Reply::err(
                "ERR string exceeds maximum allowed size (proto-max-bulk-len)",
            ))
        }
    }
    let max = u64::from(cairn::MAX_VALUE_BYTES);
    if total.is_some_and(|t| t > max) {
        return Err(Reply::error(format!(
            "ERR string exceeds maximum allowed size (cairn's limit of {max} bytes per value)"
        )));
    }
    Ok(())
}

/// Writes `value` under `key` expiring at `expires_at_ms` (an expiry not
/// after now deletes the key, as Redis does for a time in the past).
fn write(
    ops: &mut dyn Ops,
    key: &[u8],
    value: &[u8],
    expires_at_ms: Option<u64>,
) -> Result<(), Reply> {
    check_key(key)?;
    check_value(value.len())?;
    ops.put(key, value, expires_at_ms)
        .map_err(|e| store_error(&e))
}

fn bulk_or_nil(entry: Option<Entry>) -> Reply {
    entry.map_or(Reply::Nil, |(v, _)| Reply::Bulk(v))
}

// ---------------------------------------------------------------------------
// Expiry options.

/// How an expiry argument counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expiry {
    /// EX: seconds from now.
    Ex,
    /// PX: milliseconds from now.
    Px,
    /// EXAT: a Unix time in seconds.
    ExAt,
    /// PXAT: a Unix time in milliseconds.
    PxAt,
}

impl Expiry {
    fn absolute(self) -> bool {
        matches!(self, Expiry::ExAt | Expiry::PxAt)
    }
}

/// The absolute expiry (Unix ms) that `arg` means for `kind`, checked as
/// Redis checks it: a number, positive, seconds at most `i64::MAX / 1000`,
/// and `now + ms` not overflowing.
fn expiry_ms(arg: &[u8], kind: Expiry, now: u64, command: &str) -> Result<u64, Reply> {
    let n = parse_int(arg)?;
    let invalid = || Reply::error(format!("ERR invalid expire time in '{command}' command"));
    let seconds = matches!(kind, Expiry::Ex | Expiry::ExAt);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if seconds { n * 1000 } else { n };
    let at = if kind.absolute() {
        ms
    } else {
        i64::try_from(now)
            .ok()
            .and_then(|now| ms.checked_add(now))
            .ok_or_else(invalid)?
    };
    u64::try_from(at).map_err(|_| invalid())
}

/// The options of SET (`for_set`) or GETEX, parsed as Redis 7.0 parses
/// them: NX/XX exclude each other, one expiry kind (repeating it is
/// allowed, the last wins), KEEPTTL (SET) or PERSIST (GETEX) excludes an
/// expiry.
#[derive(Debug, Default)]
struct Options<'a> {
    nx: bool,
    xx: bool,
    get: bool,
    keepttl: bool,
    persist: bool,
    expire: Option<(Expiry, &'a [u8])>,
}

fn parse_options<'a>(opts: &'a [Vec<u8>], for_set: bool) -> Result<Options<'a>, Reply> {
    let syntax = || Reply::err("ERR syntax error");
    let mut o = Options::default();
    let mut i = 0;
    while i < opts.len() {
        let opt = &opts[i][..];
        let next = opts.get(i + 1).map(|v| &v[..]);
        let kind = if is(opt, "ex") {
            Some(Expiry::Ex)
        } else if is(opt, "px") {
            Some(Expiry::Px)
        } else if is(opt, "exat") {
            Some(Expiry::ExAt)
        } else if is(opt, "pxat") {
            Some(Expiry::PxAt)
        } else {
            None
        };
        if let Some(kind) = kind {
            let other_kind = o.expire.is_some_and(|(k, _)| k != kind);
            match next {
                Some(arg) if !o.keepttl && !o.persist && !other_kind => {
                    o.expire = Some((kind, arg));
                    i += 2;
                    continue;
                }
                _ => return Err(syntax()),
            }
        }
        if for_set && is(opt, "nx") && !o.xx {
            o.nx = true;
        } else if for_set && is(opt, "xx") && !o.nx {
            o.xx = true;
        } else if for_set && is(opt, "get") {
            o.get = true;
        } else if for_set && is(opt, "keepttl") && o.expire.is_none() {
            o.keepttl = true;
        } else if !for_set && is(opt, "persist") && o.expire.is_none() {
            o.persist = true;
        } else {
            return Err(syntax());
        }
        i += 1;
    }
    Ok(o)
}

// ---------------------------------------------------------------------------
// GET, SET and their relatives.

fn get_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    Ok(bulk_or_nil(lookup_read(ctx, &args[1])?))
}

/// What SET does after its options are parsed: Redis's
/// `setGenericCommand`.
struct SetArgs<'a> {
    key: &'a [u8],
    value: &'a [u8],
    opts: Options<'a>,
    command: &'a str,
    /// The reply when the value was written and GET was not asked.
    ok: Reply,
    /// The reply when NX/XX stopped the write and GET was not asked.
    aborted: Reply,
}

fn set_generic(ctx: &mut Ctx<'_>, a: SetArgs<'_>) -> Res {
    check_key(a.key)?;
    check_value(a.value.len())?;
    let now = view(ctx)?.now_ms();
    let expires = match a.opts.expire {
        Some((kind, arg)) => Some(expiry_ms(arg, kind, now, a.command)?),
        None => None,
    };
    let old = if a.opts.get {
        lookup_read(ctx, a.key)?
    } else {
        lookup(view(ctx)?, a.key)?
    };
    let found = old.is_some();
    let reply_old = |old: Option<Entry>| bulk_or_nil(old);
    if (a.opts.nx && found) || (a.opts.xx && !found) {
        return Ok(if a.opts.get {
            reply_old(old)
        } else {
            a.aborted
        });
    }
    let expires = match (expires, &old) {
        (None, Some((_, ttl))) if a.opts.keepttl => *ttl,
        (e, _) => e,
    };
    write(view(ctx)?, a.key, a.value, expires)?;
    Ok(if a.opts.get { reply_old(old) } else { a.ok })
}

fn set_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let opts = parse_options(&args[3..], true)?;
    set_generic(
        ctx,
        SetArgs {
            key: &args[1],
            value: &args[2],
            opts,
            command: "set",
            ok: Reply::OK,
            aborted: Reply::Nil,
        },
    )
}

fn setnx_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    set_generic(
        ctx,
        SetArgs {
            key: &args[1],
            value: &args[2],
            opts: Options {
                nx: true,
                ..Options::default()
            },
            command: "setnx",
            ok: Reply::Int(1),
            aborted: Reply::Int(0),
        },
    )
}

fn setex_generic(ctx: &mut Ctx<'_>, args: &[Vec<u8>], kind: Expiry, command: &str) -> Res {
    set_generic(
        ctx,
        SetArgs {
            key: &args[1],
            value: &args[3],
            opts: Options {
                expire: Some((kind, &args[2])),
                ..Options::default()
            },
            command,
            ok: Reply::OK,
            aborted: Reply::Nil,
        },
    )
}

fn setex_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    setex_generic(ctx, args, Expiry::Ex, "setex")
}

fn psetex_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    setex_generic(ctx, args, Expiry::Px, "psetex")
}

fn mget_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let mut out = Vec::with_capacity(args.len() - 1);
    for key in &args[1..] {
        out.push(bulk_or_nil(lookup_read(ctx, key)?));
    }
    Ok(Reply::Array(out))
}

/// Checks MSET's and MSETNX's pairs: an even count, and every key and
/// value storable.
fn check_pairs(args: &[Vec<u8>], name: &str) -> Result<(), Reply> {
    if args.len().is_multiple_of(2) {
        return Err(wrong_arity(name));
    }
    for pair in args[1..].chunks(2) {
        check_key(&pair[0])?;
        check_value(pair[1].len())?;
    }
    Ok(())
}

fn mset_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    check_pairs(args, "mset")?;
    let ops = view(ctx)?;
    for pair in args[1..].chunks(2) {
        write(ops, &pair[0], &pair[1], None)?;
    }
    Ok(Reply::OK)
}

fn msetnx_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    check_pairs(args, "msetnx")?;
    let ops = view(ctx)?;
    for pair in args[1..].chunks(2) {
        if lookup(ops, &pair[0])?.is_some() {
            return Ok(Reply::Int(0));
        }
    }
    for pair in args[1..].chunks(2) {
        write(ops, &pair[0], &pair[1], None)?;
    }
    Ok(Reply::Int(1))
}

fn getset_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    check_key(&args[1])?;
    check_value(args[2].len())?;
    let old = lookup_read(ctx, &args[1])?;
    write(view(ctx)?, &args[1], &args[2], None)?;
    Ok(bulk_or_nil(old))
}

fn getdel_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let old = lookup_read(ctx, &args[1])?;
    if old.is_some() {
        view(ctx)?.delete(&args[1]).map_err(|e| store_error(&e))?;
    }
    Ok(bulk_or_nil(old))
}

fn getex_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let opts = parse_options(&args[2..], false)?;
    let Some((value, ttl)) = lookup_read(ctx, &args[1])? else {
        return Ok(Reply::Nil);
    };
    let ops = view(ctx)?;
    let now = ops.now_ms();
    if let Some((kind, arg)) = opts.expire {
        let at = expiry_ms(arg, kind, now, "getex")?;
        write(ops, &args[1], &value, Some(at))?;
    } else if opts.persist && ttl.is_some() {
        write(ops, &args[1], &value, None)?;
    }
    Ok(Reply::Bulk(value))
}

// ---------------------------------------------------------------------------
// Substrings.

fn append_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    check_key(&args[1])?;
    let old = lookup(view(ctx)?, &args[1])?;
    let (mut value, ttl) = match old {
        Some((v, ttl)) => {
            check_growth(ctx, v.len() as u64, args[2].len() as u64)?;
            (v, ttl)
        }
        None => (Vec::new(), None),
    };
    value.extend_from_slice(&args[2]);
    write(view(ctx)?, &args[1], &value, ttl)?;
    Ok(Reply::Int(i64::try_from(value.len()).unwrap_or(i64::MAX)))
}

fn strlen_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let len = lookup_read(ctx, &args[1])?.map_or(0, |(v, _)| v.len());
    Ok(Reply::Int(i64::try_from(len).unwrap_or(i64::MAX)))
}

/// The bytes GETRANGE returns: Redis's index rules (negative from the
/// end, clamped, empty when start is past end).
fn substring(value: &[u8], start: i64, end: i64) -> &[u8] {
    let len = i64::try_from(value.len()).unwrap_or(i64::MAX);
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return &[];
    }
    let start = if start < 0 { len + start } else { start }.max(0);
    let end = if end < 0 { len + end } else { end }.clamp(0, len - 1);
    if start > end {
        return &[];
    }
    let (Ok(s), Ok(e)) = (usize::try_from(start), usize::try_from(end)) else {
        return &[];
    };
    &value[s..=e]
}

fn getrange_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let start = parse_int(&args[2])?;
    let end = parse_int(&args[3])?;
    let Some((value, _)) = lookup_read(ctx, &args[1])? else {
        return Ok(Reply::Bulk(Vec::new()));
    };
    Ok(Reply::Bulk(substring(&value, start, end).to_vec()))
}

fn setrange_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let offset = parse_int(&args[2])?;
    let Ok(offset) = u64::try_from(offset) else {
        return Err(Reply::err("ERR offset is out of range"));
    };
    let patch = &args[3];
    check_key(&args[1])?;
    let old = lookup(view(ctx)?, &args[1])?;
    let (mut value, ttl) = match old {
        Some((v, ttl)) => (v, ttl),
        None if patch.is_empty() => return Ok(Reply::Int(0)),
        None => (Vec::new(), None),
    };
    if patch.is_empty() {
        return Ok(Reply::Int(i64::try_from(value.len()).unwrap_or(i64::MAX)));
    }
    check_growth(ctx, offset, patch.len() as u64)?;
    // check_growth bounds offset + len by cairn's value limit.
    let start = usize::try_from(offset).map_err(|_| Reply::err("ERR offset is out of range"))?;
    let end = start + patch.len();
    if value.len() < end {
        value.resize(end, 0);
    }
    value[start..end].copy_from_slice(patch);
    write(view(ctx)?, &args[1], &value, ttl)?;
    Ok(Reply::Int(i64::try_from(value.len()).unwrap_or(i64::MAX)))
}

// ---------------------------------------------------------------------------
// Counters.

/// Adds `delta` to the integer at `key` (0 when missing), keeping its TTL.
fn incr_by(ctx: &mut Ctx<'_>, key: &[u8], delta: i64) -> Res {
    check_key(key)?;
    let ops = view(ctx)?;
    let (old, ttl) = match lookup(ops, key)? {
        Some((v, ttl)) => (parse_int(&v)?, ttl),
        None => (0, None),
    };
    let new = old
        .checked_add(delta)
        .ok_or_else(|| Reply::err("ERR increment or decrement would overflow"))?;
    write(ops, key, new.to_string().as_bytes(), ttl)?;
    Ok(Reply::Int(new))
}

fn incr_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    incr_by(ctx, &args[1], 1)
}

fn decr_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    incr_by(ctx, &args[1], -1)
}

fn incrby_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let delta = parse_int(&args[2])?;
    incr_by(ctx, &args[1], delta)
}

fn decrby_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let delta = parse_int(&args[2])?;
    let Some(delta) = delta.checked_neg() else {
        return Err(Reply::err("ERR decrement would overflow"));
    };
    incr_by(ctx, &args[1], delta)
}

fn incrbyfloat_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let key = &args[1];
    check_key(key)?;
    let ops = view(ctx)?;
    let not_float = || Reply::err("ERR value is not a valid float");
    let (old, ttl) = match lookup(ops, key)? {
        Some((v, ttl)) => (LongDouble::parse(&v).ok_or_else(not_float)?, ttl),
        None => (LongDouble::parse(b"0").ok_or_else(not_float)?, None),
    };
    let incr = LongDouble::parse(&args[2]).ok_or_else(not_float)?;
    let text = old
        .add(incr)
        .format()
        .ok_or_else(|| Reply::err("ERR increment would produce NaN or Infinity"))?;
    write(ops, key, text.as_bytes(), ttl)?;
    Ok(Reply::Bulk(text.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, s: i64, e: i64) -> String {
        String::from_utf8_lossy(substring(v.as_bytes(), s, e)).into_owned()
    }

    #[test]
    fn kinds_agree_with_redis_flags() {
        for spec in COMMANDS {
            let readonly = spec.redis_flags.contains(&"readonly");
            let write = spec.redis_flags.contains(&"write");
            assert!(readonly != write, "{}", spec.name);
            let want = if readonly { Kind::Read } else { Kind::Write };
            assert_eq!(spec.kind, want, "{}", spec.name);
            assert_eq!(spec.first_key, 1, "{}", spec.name);
        }
    }

    #[test]
    fn sizes_past_cairns_limits_are_refused_naming_the_limit() {
        let max_key = cairn::MAX_KEY_BYTES as usize;
        let max_value = cairn::MAX_VALUE_BYTES as usize;
        assert!(check_key(&vec![b'k'; max_key]).is_ok());
        assert_eq!(
            check_key(&vec![b'k'; max_key + 1]),
            Err(Reply::error(format!(
                "ERR key of {} bytes is longer than cairn's limit of {max_key} bytes",
                max_key + 1
            )))
        );
        assert!(check_value(max_value).is_ok());
        assert_eq!(
            check_value(max_value + 1),
            Err(Reply::error(format!(
                "ERR value of {} bytes is longer than cairn's limit of {max_value} bytes",
                max_value + 1
            )))
        );
    }

    #[test]
    fn substring_follows_redis_index_rules() {
        let hw = "Hello World";
        assert_eq!(range(hw, 0, 3), "Hell");
        assert_eq!(range(hw, 0, -1), hw);
        assert_eq!(range(hw, -4, -1), "orld");
        assert_eq!(range(hw, 5, 3), "");
        assert_eq!(range(hw, 5, 5000), " World");
        assert_eq!(range(hw, -5000, 10000), hw);
        assert_eq!(range(hw, 0, -100), "H");
        assert_eq!(range(hw, 1, -100), "");
        assert_eq!(range(hw, -1, -100), "");
        assert_eq!(range(hw, -100, -99), "H");
        assert_eq!(range(hw, -100, -100), "H");
        assert_eq!(range(hw, -100, -101), "");
        assert_eq!(range("bar", 0, 4_294_967_297), "bar");
        assert_eq!(range("", 0, -1), "");
        assert_eq!(range("abc", i64::MIN, i64::MAX), "abc");
        assert_eq!(range("abc", i64::MAX, i64::MIN), "");
    }

    #[test]
    fn set_options_parse_as_redis_7_0() {
        let args = |s: &[&str]| s.iter().map(|a| a.as_bytes().to_vec()).collect::<Vec<_>>();
        let ok = |s: &[&str], set: bool| parse_options(&args(s), set).is_ok();
        assert!(ok(&["nx", "get"], true));
        assert!(ok(&["ex", "1", "ex", "2"], true));
        assert!(ok(&["get", "get", "nx", "nx"], true));
        assert!(ok(&["persist", "persist"], false));
        assert!(!ok(&["nx", "xx"], true));
        assert!(!ok(&["ex", "1", "px", "2"], true));
        assert!(!ok(&["ex", "1", "keepttl"], true));
        assert!(!ok(&["keepttl", "ex", "1"], true));
        assert!(!ok(&["ex"], true));
        assert!(!ok(&["nx"], false));
        assert!(!ok(&["keepttl"], false));
        assert!(!ok(&["persist"], true));
        assert!(!ok(&["ex", "1", "persist"], false));
        assert!(!ok(&["persist", "ex", "1"], false));
    }

    #[test]
    fn expiry_arithmetic_never_overflows() {
        let now = 1_700_000_000_000;
        assert_eq!(
            expiry_ms(b"10", Expiry::Ex, now, "set").ok(),
            Some(now + 10_000)
        );
        assert_eq!(
            expiry_ms(b"10", Expiry::Px, now, "set").ok(),
            Some(now + 10)
        );
        assert_eq!(
            expiry_ms(b"10", Expiry::ExAt, now, "set").ok(),
            Some(10_000)
        );
        assert_eq!(
            expiry_ms(b"9223372036854775807", Expiry::PxAt, now, "set").ok(),
            Some(i64::MAX as u64)
        );
        for (arg, kind) in [
            ("0", Expiry::Ex),
            ("-1", Expiry::Px),
            ("0", Expiry::PxAt),
            ("9223372036854775", Expiry::Ex),
            ("9223372036854776", Expiry::ExAt),
            ("9223372036854775807", Expiry::Px),
        ] {
            assert_eq!(
                expiry_ms(arg.as_bytes(), kind, now, "set"),
                Err(Reply::err("ERR invalid expire time in 'set' command")),
                "{arg} {kind:?}"
            );
        }
    }
}
