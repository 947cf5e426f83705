//! Connection commands: PING, ECHO, QUIT, SELECT, AUTH, HELLO, RESET.

use subtle::ConstantTimeEq;

use super::{is, parse_int, Ctx, Kind, Spec, NOT_QUEUED, NO_AUTH, NO_MULTI};
use crate::resp::reply::Reply;
use crate::store::DATABASES;

/// The connection commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "ping",
        arity: -1,
        kind: Kind::Other,
        flags: 0,
        redis_flags: &["fast", "sentinel"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: ping,
    },
    Spec {
        name: "echo",
        arity: 2,
        kind: Kind::Other,
        flags: 0,
        redis_flags: &["fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: echo,
    },
    Spec {
        name: "quit",
        arity: -1,
        kind: Kind::Other,
        flags: NO_AUTH | NOT_QUEUED,
        redis_flags: &[
            "allow_busy",
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: quit,
    },
    Spec {
        name: "select",
        arity: 2,
        kind: Kind::Other,
        // Every command of an EXEC runs on one database's transaction.
        flags: NO_MULTI,
        redis_flags: &["loading", "stale", "fast"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: select,
    },
    Spec {
        name: "auth",
        arity: -2,
        kind: Kind::Other,
        flags: NO_AUTH,
        redis_flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "sentinel",
            "allow_busy",
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: auth,
    },
    Spec {
        name: "hello",
        arity: -1,
        kind: Kind::Other,
        flags: NO_AUTH,
        redis_flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "sentinel",
            "allow_busy",
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: hello,
    },
    Spec {
        name: "reset",
        arity: 1,
        kind: Kind::Other,
        flags: NO_AUTH | NOT_QUEUED,
        redis_flags: &[
            "noscript",
            "loading",
            "stale",
            "fast",
            "no_auth",
            "allow_busy",
        ],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: reset,
    },
];

fn ping(_: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    match args.len() {
        1 => Reply::status("PONG"),
        2 => Reply::bulk(args[1].clone()),
        _ => super::wrong_arity("ping"),
    }
}

fn echo(_: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    Reply::bulk(args[1].clone())
}

fn quit(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    ctx.client.closing = true;
    Reply::OK
}

fn select(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let index = match parse_int(&args[1]) {
        Ok(i) => i,
        Err(r) => return r,
    };
    if i32::try_from(index).is_err() {
        // Redis reads the index as a C int first.
        return Reply::err(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        );
    }
    match usize::try_from(index) {
        Ok(i) if i < DATABASES => {
            ctx.client.db = i;
            Reply::OK
        }
        _ => Reply::err("ERR DB index is out of range"),
    }
}

/// Whether `given` is the password, compared in constant time.
pub fn password_matches(expected: &str, given: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    // Digests of equal length: the time taken says nothing about the
    // password's length or its first differing byte (as Redis, which
    // compares SHA-256 digests too).
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given);
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// The password set with `requirepass`; `None` when there is none (an
/// empty password means none, as in Redis).
fn required_password(ctx: &Ctx<'_>) -> Option<String> {
    ctx.shared.config().requirepass.filter(|p| !p.is_empty())
}

const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";

/// Checks `user` (Redis's only user, `default`) and `pass`. Without a
/// password the default user takes any password, as Redis's `nopass` user
/// does.
fn check_credentials(ctx: &Ctx<'_>, user: &[u8], pass: &[u8]) -> bool {
    let user_ok = user == b"default";
    match required_password(ctx) {
        None => user_ok,
        Some(expected) => {
            // Compare the password even for a wrong user, so that the time
            // taken does not say which of the two was wrong.
            let pass_ok = password_matches(&expected, pass);
            user_ok && pass_ok
        }
    }
}

fn auth(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1][..]), &args[2]),
        _ => return Reply::err("ERR syntax error"),
    };
    if user.is_none() && required_password(ctx).is_none() {
        return Reply::err(
            "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
        );
    }
    if check_credentials(ctx, user.unwrap_or(b"default"), pass) {
        ctx.client.authenticated = true;
        Reply::OK
    } else {
        Reply::err(WRONGPASS)
    }
}

/// HELLO's options after the protocol version.
struct HelloArgs<'a> {
    proto: Option<u8>,
    auth: Option<(&'a [u8], &'a [u8])>,
    name: Option<&'a [u8]>,
}

fn parse_hello(args: &[Vec<u8>]) -> Result<HelloArgs<'_>, Reply> {
    let mut h = HelloArgs {
        proto: None,
        auth: None,
        name: None,
    };
    if let Some(v) = args.get(1) {
        let v = parse_int(v)
            .map_err(|_| Reply::err("ERR Protocol version is not an integer or out of range"))?;
        h.proto = match v {
            2 => Some(2),
            3 => Some(3),
            _ => return Err(Reply::err("NOPROTO unsupported protocol version")),
        };
    }
    let mut i = 2;
    while i < args.len() {
        let more = args.len() - 1 - i;
        if is(&args[i], "auth") && more >= 2 {
            h.auth = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if is(&args[i], "setname") && more >= 1 {
            h.name = Some(&args[i + 1]);
            i += 2;
        } else {
            return Err(Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(&args[i])
            )));
        }
    }
    Ok(h)
}

fn hello(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let h = match parse_hello(args) {
        Ok(h) => h,
        Err(r) => return r,
    };
    if let Some((user, pass)) = h.auth {
        if !check_credentials(ctx, user, pass) {
            return Reply::err(WRONGPASS);
        }
        ctx.client.authenticated = true;
    }
    if !ctx.client.authenticated {
        return Reply::err(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time",
        );
    }
    if let Some(name) = h.name {
        if let Err(r) = super::client::set_name(ctx, name) {
            return r;
        }
    }
    if let Some(p) = h.proto {
        ctx.client.proto = p;
    }
    hello_reply(ctx)
}

/// The map HELLO answers with, as Redis 7 does.
fn hello_reply(ctx: &Ctx<'_>) -> Reply {
    let pair = |k: &str, v: Reply| (Reply::bulk(k), v);
    Reply::Map(vec![
        pair("server", Reply::bulk("redis")),
        pair("version", Reply::bulk(super::info::REDIS_VERSION)),
        pair("proto", Reply::Int(i64::from(ctx.client.proto))),
        pair(
            "id",
            Reply::Int(i64::try_from(ctx.client.info.id).unwrap_or(i64::MAX)),
        ),
        pair("mode", Reply::bulk("standalone")),
        pair("role", Reply::bulk("master")),
        pair("modules", Reply::Array(Vec::new())),
    ])
}

/// RESET: as a new connection, as Redis does: out of MULTI, no WATCH,
/// database 0, RESP2, no name, and no longer authenticated when a password
/// is set.
fn reset(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    ctx.client.multi = None;
    ctx.client.multi_failed = false;
    ctx.client.unwatch_all(ctx.shared);
    ctx.client.db = 0;
    ctx.client.proto = 2;
    ctx.client.authenticated = required_password(ctx).is_none();
    ctx.client
        .info
        .state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .name
        .clear();
    Reply::status("RESET")
}
