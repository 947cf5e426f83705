//! Key commands: DEL, EXISTS, TTL and expiry, KEYS, SCAN and the rest.

use super::{Ctx, Kind, Spec};
use crate::resp::reply::Reply;

/// The key commands.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "del",
    arity: -2,
    kind: Kind::Write,
    flags: 0,
    redis_flags: &["write"],
    first_key: 1,
    last_key: -1,
    step: 1,
    handler: del,
}];

fn del(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let ops = match ctx.ops() {
        Ok(o) => o,
        Err(r) => return r,
    };
    let mut n = 0;
    for key in &args[1..] {
        match ops.exists(key) {
            Ok(true) => {
                if let Err(e) = ops.delete(key) {
                    return super::store_error(&e);
                }
                n += 1;
            }
            Ok(false) => {}
            Err(e) => return super::store_error(&e),
        }
    }
    Reply::Int(n)
}
