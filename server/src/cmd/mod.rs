//! The command table and the dispatcher: lookup, arity, AUTH, MULTI
//! queueing, and the view (read or transaction) each command runs on.
//!
//! Each command family has its file and its `COMMANDS` table; a new family
//! (hashes, say) is one more file and one more line in [`all_commands`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::OnceLock;

use crate::config::SyncMode;
use crate::resp::reply::Reply;
use crate::state::{Client, Shared, Stats};
use crate::store::{DbOps, Entry, Ops};

pub mod client;
pub mod connection;
pub mod info;
pub mod keys;
pub mod multi;
pub mod server;
pub mod strings;

/// A command's implementation: the arguments include the command name.
pub type Handler = fn(&mut Ctx<'_>, &[Vec<u8>]) -> Reply;

/// How a command touches the data, which decides the view it runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Reads only: runs on the database directly (inside EXEC, on the
    /// transaction).
    Read,
    /// Writes: runs inside a transaction with a deferred fsync, and under
    /// `--sync always` its reply waits for the group commit.
    Write,
    /// Touches no data through a view (connection and server commands).
    Other,
}

/// Allowed before AUTH (AUTH, HELLO, QUIT).
pub const NO_AUTH: u8 = 1;
/// Refused inside MULTI with "Command not allowed inside a transaction".
pub const NO_MULTI: u8 = 2;
/// Runs at once inside MULTI instead of being queued (EXEC, DISCARD, MULTI,
/// WATCH, QUIT, RESET).
pub const NOT_QUEUED: u8 = 4;
/// May run long (it walks every key, or copies a large value): the
/// connection runs a batch holding it off the runtime's worker threads, so
/// that other clients are still served meanwhile.
pub const HEAVY: u8 = 8;

/// The reply to a failed commit, noting an I/O failure for INFO's
/// `aof_last_write_status` (as a single write does).
pub fn commit_error(shared: &Shared, e: &cairn::Error) -> Reply {
    if is_store_failure(e) {
        shared.store.write_failed.store(true, Ordering::Release);
    }
    store_error(e)
}

/// `spec` with the [`HEAVY`] flag added.
pub const fn heavy(mut spec: Spec) -> Spec {
    spec.flags |= HEAVY;
    spec
}

/// One entry of the command table.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// The lowercase name.
    pub name: &'static str,
    /// Redis's arity: `n` exactly n arguments (with the name), `-n` at
    /// least n.
    pub arity: i32,
    /// How it touches the data.
    pub kind: Kind,
    /// [`NO_AUTH`], [`NO_MULTI`], [`NOT_QUEUED`], [`HEAVY`].
    pub flags: u8,
    /// Redis's command flags, for COMMAND INFO (`write`, `readonly`,
    /// `fast`…).
    pub redis_flags: &'static [&'static str],
    /// The first key argument (0: none), for COMMAND INFO.
    pub first_key: i32,
    /// The last key argument (-1: the last argument).
    pub last_key: i32,
    /// The step between keys.
    pub step: i32,
    /// The implementation.
    pub handler: Handler,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("db", &self.client.db)
            .finish_non_exhaustive()
    }
}

/// What a command runs with.
pub struct Ctx<'a> {
    /// The server's shared state.
    pub shared: &'a Shared,
    /// The connection.
    pub client: &'a mut Client,
    /// The data view: `Some` for [`Kind::Read`] and [`Kind::Write`]
    /// commands, and for every command inside EXEC.
    pub ops: Option<&'a mut dyn Ops>,
}

impl Ctx<'_> {
    /// The data view; an error reply for a command that has none (a bug in
    /// the command table).
    ///
    /// # Errors
    /// `ERR internal error` when the command runs without a view.
    pub fn ops(&mut self) -> Result<&mut dyn Ops, Reply> {
        match self.ops.as_deref_mut() {
            Some(o) => Ok(o),
            None => Err(Reply::err("ERR internal error: command has no data view")),
        }
    }
}

/// Every command family's table.
pub fn all_commands() -> impl Iterator<Item = &'static Spec> {
    connection::COMMANDS
        .iter()
        .chain(multi::COMMANDS)
        .chain(strings::COMMANDS)
        .chain(keys::COMMANDS)
        .chain(server::COMMANDS)
        .chain(client::COMMANDS)
        .chain(info::COMMANDS)
}

fn table() -> &'static HashMap<&'static str, &'static Spec> {
    static TABLE: OnceLock<HashMap<&'static str, &'static Spec>> = OnceLock::new();
    TABLE.get_or_init(|| all_commands().map(|s| (s.name, s)).collect())
}

/// The command named `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Spec> {
    // Lowercased on the stack: every command is looked up (more than once
    // on the pipeline path), so no allocation here.
    let mut lower = [0u8; 32];
    let lower = lower.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    std::str::from_utf8(lower)
        .ok()
        .and_then(|n| table().get(n).copied())
}

/// Whether `args` (with the name) fits `arity`.
pub fn arity_ok(arity: i32, argc: usize) -> bool {
    let argc = i64::try_from(argc).unwrap_or(i64::MAX);
    if arity >= 0 {
        argc == i64::from(arity)
    } else {
        argc >= -i64::from(arity)
    }
}

/// Redis's error for an unknown command: the name and the start of the
/// arguments, each quoted.
pub fn unknown_command(args: &[Vec<u8>]) -> Reply {
    let name = String::from_utf8_lossy(args.first().map_or(&[][..], |a| &a[..]));
    let name: String = name.chars().take(128).collect();
    let mut rest = String::new();
    for a in args.iter().skip(1) {
        if rest.len() >= 128 {
            break;
        }
        let room = 128 - rest.len();
        let text = String::from_utf8_lossy(a);
        let mut cut = text.len().min(room);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        rest.push('\'');
        rest.push_str(&text[..cut]);
        rest.push_str("' ");
    }
    Reply::error(format!(
        "ERR unknown command '{name}', with args beginning with: {rest}"
    ))
}

/// Redis's error for a wrong number of arguments.
pub fn wrong_arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// A cairn error as a reply.
pub fn store_error(e: &cairn::Error) -> Reply {
    match e {
        cairn::Error::Poisoned { .. } | cairn::Error::Io(_) => {
            Reply::error(format!("MISCONF cairn cannot write to its data files: {e}"))
        }
        _ => Reply::error(format!("ERR {e}")),
    }
}

/// Runs one command and appends its encoded reply to `out`.
pub fn execute(shared: &Shared, client: &mut Client, args: &[Vec<u8>], out: &mut Vec<u8>) {
    let spec = args.first().and_then(|n| lookup(n));
    let reply = dispatch(shared, client, spec, args);
    note_command(client, spec, args);
    emit(shared, client, &reply, out);
}

fn emit(shared: &Shared, client: &mut Client, reply: &Reply, out: &mut Vec<u8>) {
    if reply.is_error() {
        shared.stats.error_replies.fetch_add(1, Ordering::Relaxed);
    }
    shared
        .stats
        .commands_processed
        .fetch_add(1, Ordering::Relaxed);
    if std::mem::take(&mut client.no_reply) {
        return;
    }
    reply.encode(client.proto, out);
}

/// The spec of `args` when it is a write command that can join a group:
/// known, of the right arity, authenticated, outside MULTI.
fn groupable(client: &Client, args: &[Vec<u8>]) -> Option<&'static Spec> {
    if client.multi.is_some() || !client.authenticated {
        return None;
    }
    let spec = lookup(args.first()?)?;
    (spec.kind == Kind::Write && arity_ok(spec.arity, args.len())).then_some(spec)
}

/// Runs the commands of one read from a client, in order, appending each
/// reply to `out`.
///
/// A run of consecutive write commands (a pipeline of SETs, say) runs in
/// one transaction: its writes reach the file in one append, and the
/// group commit makes them durable together. Each command still sees the
/// writes of the ones before it, and replies as it would alone. A write
/// command that fails writes nothing (every handler checks before it
/// writes), so the others are unaffected, as in Redis.
///
/// It stops early, once `out` holds `out_limit` bytes or more (the bound on
/// a client's pending replies; at least one command runs), and returns how
/// many commands it ran: the caller writes the replies, waiting for the
/// client to read them, before it runs the rest.
pub fn execute_batch(
    shared: &Shared,
    client: &mut Client,
    batch: &[Vec<Vec<u8>>],
    out: &mut Vec<u8>,
    out_limit: usize,
) -> usize {
    let mut i = 0;
    while i < batch.len() && !client.closing && (i == 0 || out.len() < out_limit) {
        let run = batch[i..]
            .iter()
            .take_while(|args| groupable(client, args).is_some())
            .count();
        if run < 2 {
            execute(shared, client, &batch[i], out);
            i += 1;
            continue;
        }
        let group = &batch[i..i + run];
        let replies = run_write_group(shared, client, group);
        for (reply, args) in replies.iter().zip(group) {
            note_command(client, args.first().and_then(|n| lookup(n)), args);
            emit(shared, client, reply, out);
        }
        i += run;
    }
    i
}

/// Runs a run of write commands in one transaction. When one of them
/// fails, or the commit does (a key or value cairn refuses), the group's
/// writes are dropped and each command runs again on its own, so that one
/// bad command fails alone, as in Redis.
fn run_write_group(shared: &Shared, client: &mut Client, group: &[Vec<Vec<u8>>]) -> Vec<Reply> {
    let index = client.db;
    if let Err(e) = shared.store.db(index) {
        return vec![store_error(&e); group.len()];
    }
    let mut one_failed = false;
    let result = shared.store.write_txn(index, |ops| {
        let mut replies = Vec::with_capacity(group.len());
        for args in group {
            let reply = match groupable(client, args) {
                Some(spec) => (spec.handler)(
                    &mut Ctx {
                        shared,
                        client: &mut *client,
                        ops: Some(&mut *ops),
                    },
                    args,
                ),
                None => Reply::err("ERR internal error: not a write command"),
            };
            if reply.is_error() {
                one_failed = true;
                return Err(cairn::Error::InvalidOptions(String::new()));
            }
            replies.push(reply);
        }
        Ok(replies)
    });
    mark_dirty(shared, client, index);
    match result {
        Ok(replies) => replies,
        Err(e) if !one_failed && is_store_failure(&e) => {
            vec![commit_error(shared, &e); group.len()]
        }
        Err(_) => group
            .iter()
            .map(|args| match groupable(client, args) {
                Some(spec) => run_write(shared, client, spec, args),
                None => Reply::err("ERR internal error: not a write command"),
            })
            .collect(),
    }
}

/// Whether `e` means the store cannot write (I/O, poisoned), as opposed
/// to a write it refuses.
fn is_store_failure(e: &cairn::Error) -> bool {
    matches!(e, cairn::Error::Poisoned { .. } | cairn::Error::Io(_))
}

/// Commands whose first argument is a subcommand, shown as `name|sub` in
/// CLIENT LIST's `cmd=` field, as Redis does.
const WITH_SUBCOMMANDS: &[&str] = &["client", "command", "config", "function"];

/// Records what CLIENT LIST shows of the command just run: one uncontended
/// lock per command, no allocation once the name buffer has grown.
fn note_command(client: &Client, spec: Option<&Spec>, args: &[Vec<u8>]) {
    let mut st = client.info.state.lock().unwrap_or_else(|e| e.into_inner());
    st.db = client.db;
    st.proto = client.proto;
    st.in_multi = client.multi.is_some();
    st.queued = client.multi.as_ref().map_or(0, Vec::len);
    st.last_active = std::time::Instant::now();
    st.last_cmd.clear();
    match spec {
        None => st.last_cmd.push_str("NULL"),
        Some(s) => {
            st.last_cmd.push_str(s.name);
            if let Some(sub) = args.get(1).filter(|_| WITH_SUBCOMMANDS.contains(&s.name)) {
                if sub.len() <= 32 && sub.iter().all(u8::is_ascii_graphic) {
                    st.last_cmd.push('|');
                    st.last_cmd
                        .extend(sub.iter().map(|b| char::from(b.to_ascii_lowercase())));
                }
            }
        }
    }
}

fn dispatch(
    shared: &Shared,
    client: &mut Client,
    spec: Option<&'static Spec>,
    args: &[Vec<u8>],
) -> Reply {
    if args.is_empty() {
        return Reply::err("ERR empty command");
    }
    let Some(spec) = spec else {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return unknown_command(args);
    };
    if !arity_ok(spec.arity, args.len()) {
        if client.multi.is_some() {
            client.multi_failed = true;
        }
        return wrong_arity(spec.name);
    }
    if !client.authenticated && spec.flags & NO_AUTH == 0 {
        return Reply::err("NOAUTH Authentication required.");
    }
    if let Some(queue) = client.multi.as_mut() {
        if spec.flags & NO_MULTI != 0 {
            client.multi_failed = true;
            return Reply::err("ERR Command not allowed inside a transaction");
        }
        if spec.flags & NOT_QUEUED == 0 {
            queue.push(args.to_vec());
            return Reply::status("QUEUED");
        }
    }
    run(shared, client, spec, args)
}

/// Runs `spec` outside MULTI, on the view its kind needs.
pub fn run(shared: &Shared, client: &mut Client, spec: &Spec, args: &[Vec<u8>]) -> Reply {
    match spec.kind {
        Kind::Other => (spec.handler)(
            &mut Ctx {
                shared,
                client,
                ops: None,
            },
            args,
        ),
        Kind::Read => {
            let db = match shared.store.db(client.db) {
                Ok(db) => db,
                Err(e) => return store_error(&e),
            };
            let mut ops = CountingOps {
                inner: DbOps { db },
                stats: &shared.stats,
            };
            let reply = (spec.handler)(
                &mut Ctx {
                    shared,
                    client: &mut *client,
                    ops: Some(&mut ops),
                },
                args,
            );
            // What it read may be a write whose fsync has not finished:
            // the reply waits for the group commit, as it would in Redis.
            let index = client.db;
            if shared.sync_mode() == SyncMode::Always && shared.store.may_be_unsynced(index) {
                client.dirty |= 1 << index;
            }
            reply
        }
        Kind::Write => run_write(shared, client, spec, args),
    }
}

/// The view of a read command outside MULTI: the database, counting INFO's
/// `keyspace_hits` and `keyspace_misses` as Redis does for its reads.
struct CountingOps<'a> {
    inner: DbOps<'a>,
    stats: &'a Stats,
}

impl CountingOps<'_> {
    fn count(&self, hit: bool) {
        let counter = if hit {
            &self.stats.keyspace_hits
        } else {
            &self.stats.keyspace_misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl Ops for CountingOps<'_> {
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn get(&mut self, key: &[u8]) -> Result<Option<Entry>, cairn::Error> {
        let r = self.inner.get(key);
        if let Ok(found) = &r {
            self.count(found.is_some());
        }
        r
    }
    fn exists(&mut self, key: &[u8]) -> Result<bool, cairn::Error> {
        let r = self.inner.exists(key);
        if let Ok(found) = &r {
            self.count(*found);
        }
        r
    }
    fn put(&mut self, key: &[u8], value: &[u8], at: Option<u64>) -> Result<(), cairn::Error> {
        self.inner.put(key, value, at)
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), cairn::Error> {
        self.inner.delete(key)
    }
    fn db(&self) -> &cairn::Db {
        self.inner.db()
    }
}

fn run_write(shared: &Shared, client: &mut Client, spec: &Spec, args: &[Vec<u8>]) -> Reply {
    let index = client.db;
    if let Err(e) = shared.store.db(index) {
        return store_error(&e);
    }
    let mut failed: Option<Reply> = None;
    let result = shared.store.write_txn(index, |ops| {
        let reply = (spec.handler)(
            &mut Ctx {
                shared,
                client: &mut *client,
                ops: Some(&mut *ops),
            },
            args,
        );
        if reply.is_error() {
            // A command that fails writes nothing.
            failed = Some(reply);
            return Err(cairn::Error::InvalidOptions(String::new()));
        }
        Ok(reply)
    });
    mark_dirty(shared, client, index);
    match (result, failed) {
        (_, Some(reply)) => reply,
        (Ok(reply), None) => reply,
        (Err(e), None) => {
            if matches!(e, cairn::Error::Poisoned { .. } | cairn::Error::Io(_)) {
                shared.store.write_failed.store(true, Ordering::Release);
            }
            store_error(&e)
        }
    }
}

/// Under `--sync always`, makes the connection's next flush wait for the
/// group commit of database `index`.
pub fn mark_dirty(shared: &Shared, client: &mut Client, index: usize) {
    if shared.sync_mode() == SyncMode::Always {
        client.dirty |= 1 << index;
    }
}

/// Parses an argument as a Redis integer (`ERR value is not an integer or
/// out of range` otherwise).
///
/// # Errors
/// That error reply.
pub fn parse_int(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .filter(|s| {
            let leading_zero = s.len() > 1 && s.starts_with('0');
            !(s.is_empty() || s.starts_with('+') || leading_zero || s.starts_with("-0"))
        })
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or_else(|| Reply::err("ERR value is not an integer or out of range"))
}

/// Whether `arg` equals `word`, ignoring ASCII case.
pub fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_lowercase_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in all_commands() {
            assert_eq!(s.name, s.name.to_ascii_lowercase());
            assert!(seen.insert(s.name), "{} twice", s.name);
        }
    }

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_int(b"12").ok(), Some(12));
        assert_eq!(parse_int(b"-12").ok(), Some(-12));
        assert_eq!(parse_int(b"0").ok(), Some(0));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1 ",
            b"1.0",
            b"99999999999999999999",
        ] {
            assert!(parse_int(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn unknown_command_text() {
        let args = vec![b"FOO".to_vec(), b"a".to_vec(), b"b".to_vec()];
        assert_eq!(
            unknown_command(&args),
            Reply::error("ERR unknown command 'FOO', with args beginning with: 'a' 'b' ".into())
        );
    }
}
