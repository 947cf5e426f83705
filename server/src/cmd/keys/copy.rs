//! COPY and MOVE, which may write to another database than the current
//! one.
//!
//! Each database is a keyspace of its own, so a write to two of them is
//! two transactions. Outside MULTI they run one after the other, never one
//! inside the other (two clients moving keys in opposite directions must
//! not wait for each other): MOVE first writes the key to the target, then
//! deletes it from the source if it is still the value it copied (if
//! another client changed it in between, that write counts as coming after
//! the MOVE). A crash between the two leaves the key in both databases,
//! never in neither. Inside EXEC, whose commands all run in the current
//! database's transaction, COPY within the current database works and a
//! write to another database is refused.

use crate::cmd::{is, mark_dirty, parse_int, store_error, Ctx};
use crate::resp::reply::Reply;
use crate::store::{Entry, Ops, DATABASES};

/// The reply of a write to another database inside EXEC.
const NOT_IN_MULTI: &str =
    "ERR cairn serve cannot write to another database inside MULTI (COPY with DB, MOVE)";

/// A database index argument, with Redis's two errors.
fn db_index(arg: &[u8]) -> Result<usize, Reply> {
    let n = parse_int(arg)?;
    if i32::try_from(n).is_err() {
        return Err(Reply::err(
            "ERR value is out of range, value must between -2147483648 and 2147483647",
        ));
    }
    usize::try_from(n)
        .ok()
        .filter(|&i| i < DATABASES)
        .ok_or_else(|| Reply::err("ERR DB index is out of range"))
}

/// The live entry of `key`; a key longer than cairn stores cannot exist.
fn read(ops: &mut dyn Ops, key: &[u8]) -> Result<Option<Entry>, Reply> {
    if key.len() > cairn::MAX_KEY_BYTES as usize {
        return Ok(None);
    }
    ops.get(key).map_err(|e| store_error(&e))
}

/// Runs `f` in a transaction of database `index` (outside EXEC), with its
/// fsync deferred to the connection's group commit; an error reply from
/// `f` drops its writes.
fn in_db<R>(
    ctx: &mut Ctx<'_>,
    index: usize,
    f: impl FnOnce(&mut dyn Ops) -> Result<R, Reply>,
) -> Result<R, Reply> {
    let shared = ctx.shared;
    shared.store.db(index).map_err(|e| store_error(&e))?;
    let mut failed = None;
    let result = shared.store.write_txn(index, |ops| {
        f(ops).map_err(|reply| {
            failed = Some(reply);
            cairn::Error::InvalidOptions(String::new())
        })
    });
    mark_dirty(shared, ctx.client, index);
    match (result, failed) {
        (_, Some(reply)) => Err(reply),
        (Ok(r), None) => Ok(r),
        (Err(e), None) => {
            if matches!(e, cairn::Error::Poisoned { .. } | cairn::Error::Io(_)) {
                shared
                    .store
                    .write_failed
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            Err(store_error(&e))
        }
    }
}

/// Writes `entry` under `key` unless the key exists and `replace` is not
/// set: whether it wrote.
fn put_new(ops: &mut dyn Ops, key: &[u8], entry: &Entry, replace: bool) -> Result<bool, Reply> {
    if key.len() > cairn::MAX_KEY_BYTES as usize {
        return Err(Reply::error(format!(
            "ERR key of {} bytes is longer than cairn's limit of {} bytes",
            key.len(),
            cairn::MAX_KEY_BYTES
        )));
    }
    if !replace && ops.exists(key).map_err(|e| store_error(&e))? {
        return Ok(false);
    }
    ops.put(key, &entry.0, entry.1)
        .map_err(|e| store_error(&e))?;
    Ok(true)
}

/// COPY source destination [DB index] [REPLACE]: 1 when copied, with the
/// source's TTL.
pub(super) fn copy(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    copy_cmd(ctx, args).unwrap_or_else(|e| e)
}

fn copy_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let here = ctx.client.db;
    let (mut target, mut replace) = (here, false);
    let mut i = 3;
    while i < args.len() {
        if is(&args[i], "replace") {
            replace = true;
        } else if is(&args[i], "db") && i + 1 < args.len() {
            target = db_index(&args[i + 1])?;
            i += 1;
        } else {
            return Err(Reply::err("ERR syntax error"));
        }
        i += 1;
    }
    let (src, dst) = (&args[1], &args[2]);
    if target == here && src == dst {
        return Err(Reply::err(
            "ERR source and destination objects are the same",
        ));
    }
    let copy_here = |ops: &mut dyn Ops| -> Result<bool, Reply> {
        match read(ops, src)? {
            Some(entry) => put_new(ops, dst, &entry, replace),
            None => Ok(false),
        }
    };
    let copied = if let Some(ops) = ctx.ops.as_deref_mut() {
        if target != here {
            return Err(Reply::err(NOT_IN_MULTI));
        }
        copy_here(ops)?
    } else if target == here {
        in_db(ctx, here, copy_here)?
    } else {
        let Some(entry) = in_db(ctx, here, |ops| read(ops, src))? else {
            return Ok(Reply::Int(0));
        };
        in_db(ctx, target, |ops| put_new(ops, dst, &entry, replace))?
    };
    Ok(Reply::Int(i64::from(copied)))
}

/// MOVE key db: 1 when the key moved to database `db` with its TTL, 0 when
/// it is missing here or exists there.
pub(super) fn move_key(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    move_cmd(ctx, args).unwrap_or_else(|e| e)
}

fn move_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Result<Reply, Reply> {
    let here = ctx.client.db;
    let target = db_index(&args[2])?;
    if target == here {
        return Err(Reply::err(
            "ERR source and destination objects are the same",
        ));
    }
    if ctx.ops.is_some() {
        return Err(Reply::err(NOT_IN_MULTI));
    }
    let key = &args[1];
    let Some(entry) = in_db(ctx, here, |ops| read(ops, key))? else {
        return Ok(Reply::Int(0));
    };
    if !in_db(ctx, target, |ops| put_new(ops, key, &entry, false))? {
        return Ok(Reply::Int(0));
    }
    in_db(ctx, here, |ops| {
        if read(ops, key)?.as_ref() == Some(&entry) {
            ops.delete(key).map_err(|e| store_error(&e))?;
        }
        Ok(())
    })?;
    Ok(Reply::Int(1))
}

#[cfg(test)]
mod tests {
    use super::db_index;
    use crate::resp::reply::Reply;

    #[test]
    fn database_indexes_fail_as_in_redis() {
        assert_eq!(db_index(b"0").ok(), Some(0));
        assert_eq!(db_index(b"15").ok(), Some(15));
        let range = Err(Reply::err("ERR DB index is out of range"));
        assert_eq!(db_index(b"16"), range);
        assert_eq!(db_index(b"-1"), range);
        let nan = Err(Reply::err("ERR value is not an integer or out of range"));
        assert_eq!(db_index(b"x"), nan);
        assert_eq!(db_index(b"99999999999999999999"), nan);
        assert_eq!(
            db_index(b"4294967296"),
            Err(Reply::err(
                "ERR value is out of range, value must between -2147483648 and 2147483647"
            ))
        );
    }
}
