//! Connection commands: PING, ECHO, QUIT, SELECT, AUTH.

use subtle::ConstantTimeEq;

use super::{parse_int, Ctx, Kind, Spec, NOT_QUEUED, NO_AUTH, NO_MULTI};
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
];

fn ping(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    match args.len() {
        1 if ctx.client.multi.is_none() || ctx.client.proto >= 3 => Reply::status("PONG"),
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
    expected.as_bytes().ct_eq(given).into()
}

fn auth(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let (user, pass) = match args.len() {
        2 => (None, &args[1]),
        3 => (Some(&args[1]), &args[2]),
        _ => return Reply::err("ERR syntax error"),
    };
    let Some(expected) = ctx.shared.config().requirepass else {
        if user.is_none() {
            return Reply::err(
                "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            );
        }
        return Reply::err("WRONGPASS invalid username-password pair or user is disabled.");
    };
    let user_ok = user.is_none_or(|u| u == b"default");
    if user_ok && password_matches(&expected, pass) {
        ctx.client.authenticated = true;
        Reply::OK
    } else {
        Reply::err("WRONGPASS invalid username-password pair or user is disabled.")
    }
}
