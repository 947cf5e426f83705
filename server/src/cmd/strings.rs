//! String commands: GET, SET and the rest of Redis's string family.

use super::{Ctx, Kind, Spec};
use crate::resp::reply::Reply;

/// The string commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "get",
        arity: 2,
        kind: Kind::Read,
        flags: 0,
        redis_flags: &["readonly", "fast"],
        first_key: 1,
        last_key: 1,
        step: 1,
        handler: get,
    },
    Spec {
        name: "set",
        arity: -3,
        kind: Kind::Write,
        flags: 0,
        redis_flags: &["write", "denyoom"],
        first_key: 1,
        last_key: 1,
        step: 1,
        handler: set,
    },
];

fn get(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = match ctx.ops() {
        Ok(o) => o,
        Err(r) => return r,
    };
    match ops.get(&args[1]) {
        Ok(Some((v, _))) => Reply::Bulk(v),
        Ok(None) => Reply::Nil,
        Err(e) => super::store_error(&e),
    }
}

fn set(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if args.len() != 3 {
        return Reply::err("ERR syntax error");
    }
    let ops = match ctx.ops() {
        Ok(o) => o,
        Err(r) => return r,
    };
    match ops.put(&args[1], &args[2], None) {
        Ok(()) => Reply::OK,
        Err(e) => super::store_error(&e),
    }
}
