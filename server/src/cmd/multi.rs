//! MULTI, EXEC, DISCARD, WATCH, UNWATCH.
//!
//! EXEC runs the whole queue inside one [`cairn::Db::transaction`]: its
//! writes are one atomic batch on disk, so a crash keeps all of them or
//! none. As in Redis, a command that fails at run time does not stop the
//! others. WATCH's versions are checked inside that transaction, under the
//! writer lock, so no write can slip between the check and the commands.

use super::{
    commit_error, lookup, mark_dirty, store_error, Ctx, Kind, Spec, HEAVY, NOT_QUEUED, NO_MULTI,
};
use crate::resp::reply::Reply;
use crate::store::Ops;

/// The transaction commands.
pub const COMMANDS: &[Spec] = &[
    Spec {
        name: "multi",
        arity: 1,
        kind: Kind::Other,
        flags: NOT_QUEUED,
        redis_flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: multi,
    },
    Spec {
        name: "exec",
        arity: 1,
        kind: Kind::Other,
        // Its queue may hold any heavy command.
        flags: NOT_QUEUED | HEAVY,
        redis_flags: &["noscript", "loading", "stale", "skip_slowlog"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: exec,
    },
    Spec {
        name: "discard",
        arity: 1,
        kind: Kind::Other,
        flags: NOT_QUEUED,
        redis_flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: discard,
    },
    Spec {
        name: "watch",
        arity: -2,
        kind: Kind::Other,
        flags: NOT_QUEUED,
        redis_flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 1,
        last_key: -1,
        step: 1,
        handler: watch,
    },
    Spec {
        name: "unwatch",
        arity: 1,
        kind: Kind::Other,
        flags: 0,
        redis_flags: &["noscript", "loading", "stale", "fast", "allow_busy"],
        first_key: 0,
        last_key: 0,
        step: 0,
        handler: unwatch,
    },
];

fn multi(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::err("ERR MULTI calls can not be nested");
    }
    ctx.client.multi = Some(Vec::new());
    ctx.client.multi_failed = false;
    Reply::OK
}

fn discard(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    if ctx.client.multi.take().is_none() {
        return Reply::err("ERR DISCARD without MULTI");
    }
    ctx.client.multi_failed = false;
    ctx.client.unwatch_all(ctx.shared);
    Reply::OK
}

fn watch(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if ctx.client.multi.is_some() {
        return Reply::err("ERR WATCH inside MULTI is not allowed");
    }
    let index = ctx.client.db;
    let shared = ctx.shared;
    let client = &mut *ctx.client;
    let db = match shared.store.db(index) {
        Ok(db) => db,
        Err(e) => return store_error(&e),
    };
    // Registered under the writer lock (a transaction that writes nothing,
    // so it neither fsyncs nor counts as a write): a writer that has
    // already written one of the keys but not yet committed holds that
    // lock, so the watch waits for it and then reads its write; every
    // writer after it bumps the version.
    let result = db.transaction(|tx| {
        tx.defer_sync();
        for key in &args[1..] {
            if client
                .watched
                .iter()
                .any(|(d, k, _, _)| *d == index && k == key)
            {
                continue;
            }
            // Read before registering: a failed read leaves no watch behind.
            let live = key.len() <= cairn::MAX_KEY_BYTES as usize && tx.get(key)?.is_some();
            let version = shared.store.watch.watch(index, key);
            client.watched.push((index, key.clone(), version, live));
        }
        Ok(())
    });
    match result {
        Ok(()) => Reply::OK,
        Err(e) => store_error(&e),
    }
}

fn unwatch(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    ctx.client.unwatch_all(ctx.shared);
    Reply::OK
}

fn exec(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    let Some(queue) = ctx.client.multi.take() else {
        return Reply::err("ERR EXEC without MULTI");
    };
    if std::mem::take(&mut ctx.client.multi_failed) {
        ctx.client.unwatch_all(ctx.shared);
        return Reply::err("EXECABORT Transaction discarded because of previous errors.");
    }
    let index = ctx.client.db;
    let shared = ctx.shared;
    if let Err(e) = shared.store.db(index) {
        ctx.client.unwatch_all(shared);
        return store_error(&e);
    }
    let client = &mut *ctx.client;
    let watched = client.watched.clone();
    let result = shared.store.write_txn(index, |ops| {
        for (d, key, version, live) in &watched {
            let touched = shared.store.watch.version(*d, key) != *version;
            let gone = *live
                && if *d == index {
                    !ops.exists(key)?
                } else {
                    // Another database: its own writer lock is not held, but
                    // a key that expired there is still seen as gone.
                    !shared.store.db(*d)?.contains_key(key)?
                };
            if touched || gone {
                return Ok(Reply::NilArray);
            }
        }
        let mut replies = Vec::with_capacity(queue.len());
        for args in &queue {
            let reply = match args.first().and_then(|n| lookup(n)) {
                Some(spec) if spec.flags & NO_MULTI == 0 => (spec.handler)(
                    &mut Ctx {
                        shared,
                        client: &mut *client,
                        ops: Some(&mut *ops),
                    },
                    args,
                ),
                _ => Reply::err("ERR Command not allowed inside a transaction"),
            };
            replies.push(reply);
        }
        Ok(Reply::Array(replies))
    });
    ctx.client.unwatch_all(shared);
    mark_dirty(shared, ctx.client, index);
    match result {
        Ok(r) => r,
        Err(e) => commit_error(shared, &e),
    }
}
