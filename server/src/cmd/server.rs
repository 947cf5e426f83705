//! Server commands: CONFIG, COMMAND, TIME, SHUTDOWN, SAVE, BGSAVE,
//! BGREWRITEAOF, LASTSAVE and FUNCTION FLUSH.
//!
//! cairn has no snapshot and no separate append-only file: every write is
//! in its log, which is the data. SAVE makes everything durable now;
//! BGSAVE and BGREWRITEAOF compact every database on a background thread
//! (the closest thing to rewriting the AOF).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::client::{help_reply, sub_arity, unknown_subcommand};
use super::keys::glob;
use super::{is, Ctx, Kind, Spec, HEAVY, NO_MULTI};
use crate::config::{Config, SyncMode};
use crate::resp::reply::Reply;
use crate::state::Shared;
use crate::store::{unix_ms, Store, DATABASES};

const fn other(
    name: &'static str,
    arity: i32,
    flags: u8,
    redis_flags: &'static [&'static str],
    handler: super::Handler,
) -> Spec {
    Spec {
        name,
        arity,
        kind: Kind::Other,
        flags,
        redis_flags,
        first_key: 0,
        last_key: 0,
        step: 0,
        handler,
    }
}

/// The server commands.
pub const COMMANDS: &[Spec] = &[
    other("config", -2, 0, &[], config),
    other("command", -1, 0, &["loading", "stale", "sentinel"], command),
    other("time", 1, 0, &["loading", "stale", "fast"], time),
    other("lastsave", 1, 0, &["loading", "stale", "fast"], lastsave),
    other(
        "save",
        1,
        NO_MULTI | HEAVY,
        &["admin", "noscript", "no_async_loading", "no_multi"],
        save,
    ),
    other(
        "bgsave",
        -1,
        HEAVY,
        &["admin", "noscript", "no_async_loading"],
        bgsave,
    ),
    other(
        "bgrewriteaof",
        1,
        HEAVY,
        &["admin", "noscript", "no_async_loading"],
        bgrewriteaof,
    ),
    other(
        "shutdown",
        -1,
        NO_MULTI | HEAVY,
        &[
            "admin",
            "noscript",
            "loading",
            "stale",
            "no_multi",
            "sentinel",
            "allow_busy",
        ],
        shutdown,
    ),
    other("function", -2, 0, &[], function),
];

// ---------------------------------------------------------------- CONFIG

/// Checks a new value and applies it to a copy of the settings.
type Setter = fn(&mut Config, &str) -> Result<(), String>;

/// What CONFIG knows of one setting.
struct Param {
    name: &'static str,
    get: fn(&Config, &Shared) -> String,
    /// Checks and applies a new value to a copy of the settings; `None`
    /// for a setting that cannot change while the server runs.
    set: Option<Setter>,
}

const PARAMS: &[Param] = &[
    Param {
        name: "save",
        get: |_, _| String::new(),
        // No snapshots: every write is already in the log.
        set: Some(|_, _| Ok(())),
    },
    Param {
        name: "appendonly",
        get: |_, _| "yes".into(),
        // cairn's log is always on.
        set: Some(|_, v| yes_no(v).map(|_| ())),
    },
    Param {
        name: "appendfsync",
        get: |c, _| c.sync.name().into(),
        set: Some(set_appendfsync),
    },
    Param {
        name: "databases",
        get: |_, _| DATABASES.to_string(),
        set: None,
    },
    Param {
        name: "maxclients",
        get: |c, _| c.maxclients.to_string(),
        set: Some(|c, v| {
            c.maxclients =
                usize::try_from(int_in(v, 1, i64::from(u32::MAX))?).unwrap_or(usize::MAX);
            Ok(())
        }),
    },
    Param {
        name: "timeout",
        get: |c, _| c.timeout_secs.to_string(),
        set: Some(|c, v| {
            c.timeout_secs = u64::try_from(int_in(v, 0, i64::from(i32::MAX))?).unwrap_or(0);
            Ok(())
        }),
    },
    Param {
        name: "requirepass",
        get: |c, _| c.requirepass.clone().unwrap_or_default(),
        set: Some(|c, v| {
            // Protected mode holds at run time too: a server listening
            // beyond loopback keeps a password.
            if v.is_empty() && c.bind.iter().any(|a| !a.is_loopback()) {
                return Err(
                    "cairn listens on a non-loopback address; it cannot run without a password"
                        .into(),
                );
            }
            c.requirepass = (!v.is_empty()).then(|| v.to_string());
            Ok(())
        }),
    },
    Param {
        name: "bind",
        get: |c, _| {
            c.bind
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        },
        set: None,
    },
    Param {
        name: "port",
        get: |_, s| s.local_addr.port().to_string(),
        set: None,
    },
    Param {
        name: "dir",
        get: |c, _| {
            std::path::absolute(&c.dir)
                .unwrap_or_else(|_| c.dir.clone())
                .display()
                .to_string()
        },
        set: None,
    },
    Param {
        name: "proto-max-bulk-len",
        get: |c, _| c.proto_max_bulk_len.to_string(),
        set: Some(|c, v| {
            c.proto_max_bulk_len = usize::try_from(memory_in(v, 1 << 20)?).unwrap_or(usize::MAX);
            Ok(())
        }),
    },
    Param {
        name: "client-query-buffer-limit",
        get: |c, _| c.client_query_buffer_limit.to_string(),
        set: Some(|c, v| {
            c.client_query_buffer_limit =
                usize::try_from(memory_in(v, 1 << 20)?).unwrap_or(usize::MAX);
            Ok(())
        }),
    },
    Param {
        name: "maxmemory",
        get: |_, _| "0".into(),
        set: None,
    },
    Param {
        name: "maxmemory-policy",
        get: |_, _| "noeviction".into(),
        set: None,
    },
    Param {
        name: "protected-mode",
        get: |c, _| {
            if c.bind.iter().all(std::net::IpAddr::is_loopback) {
                "no"
            } else {
                "yes"
            }
            .into()
        },
        set: None,
    },
];

fn yes_no(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err("argument must be 'yes' or 'no'".into()),
    }
}

/// The store's sync policy is fixed when it is opened, so the mode cannot
/// change while the server runs; setting the current one is accepted.
fn set_appendfsync(c: &mut Config, v: &str) -> Result<(), String> {
    match SyncMode::parse(v) {
        None => Err("argument(s) must be one of the following: everysec, always, no".into()),
        Some(m) if m == c.sync => Ok(()),
        Some(_) => Err(format!(
            "cairn cannot change its sync mode while running (it is '{}'); restart it with --sync {}",
            c.sync.name(),
            v.to_ascii_lowercase()
        )),
    }
}

fn int_in(v: &str, min: i64, max: i64) -> Result<i64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| "argument couldn't be parsed into an integer".to_string())?;
    if n < min || n > max {
        return Err(format!(
            "argument must be between {min} and {max} inclusive"
        ));
    }
    Ok(n)
}

/// A size with Redis's optional unit (`k`, `kb`, `m`, `mb`, `g`, `gb`; `k`
/// is 1000, `kb` 1024), at least `min`.
fn memory_in(v: &str, min: i64) -> Result<i64, String> {
    let lower = v.to_ascii_lowercase();
    let units: [(&str, i64); 6] = [
        ("kb", 1 << 10),
        ("mb", 1 << 20),
        ("gb", 1 << 30),
        ("k", 1000),
        ("m", 1_000_000),
        ("g", 1_000_000_000),
    ];
    let (digits, mul) = units
        .iter()
        .find_map(|(u, m)| lower.strip_suffix(u).map(|d| (d, *m)))
        .unwrap_or((lower.as_str(), 1));
    let n = digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| "argument must be a memory value".to_string())?;
    if n < min {
        return Err(format!(
            "argument must be between {min} and {} inclusive",
            i64::MAX
        ));
    }
    Ok(n)
}

const CONFIG_SUBCOMMANDS: &[(&str, i32)] = &[
    ("get", -3),
    ("set", -4),
    ("resetstat", 2),
    ("rewrite", 2),
    ("help", 2),
];

fn config(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let Some(&(name, arity)) = CONFIG_SUBCOMMANDS.iter().find(|(n, _)| is(&args[1], n)) else {
        return unknown_subcommand("CONFIG", &args[1]);
    };
    if let Err(r) = sub_arity("config", name, arity, args.len()) {
        return r;
    }
    match name {
        "get" => config_get(ctx.shared, &args[2..]),
        "set" => config_set(ctx.shared, &args[2..]),
        "resetstat" => {
            reset_stats(ctx.shared);
            Reply::OK
        }
        "rewrite" => Reply::err("ERR CONFIG REWRITE is not supported by cairn: edit the config file given with --config"),
        _ => help_reply(&[
            "CONFIG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "GET <pattern>",
            "    Return parameters matching the glob-like <pattern> and their values.",
            "SET <directive> <value>",
            "    Set the configuration <directive> to <value>.",
            "RESETSTAT",
            "    Reset statistics reported by the INFO command.",
            "HELP",
            "    Prints this help.",
        ]),
    }
}

fn config_get(shared: &Shared, patterns: &[Vec<u8>]) -> Reply {
    let config = shared.config();
    let patterns: Vec<Vec<u8>> = patterns.iter().map(|p| p.to_ascii_lowercase()).collect();
    let pairs = PARAMS
        .iter()
        .filter(|p| {
            patterns
                .iter()
                .any(|pat| glob_match_lower(pat, p.name.as_bytes()))
        })
        .map(|p| (Reply::bulk(p.name), Reply::bulk((p.get)(&config, shared))))
        .collect();
    Reply::Map(pairs)
}

fn config_set(shared: &Shared, pairs: &[Vec<u8>]) -> Reply {
    if !pairs.len().is_multiple_of(2) {
        return Reply::err("ERR syntax error");
    }
    let failed = |name: &str, why: &str| {
        Reply::error(format!(
            "ERR CONFIG SET failed (possibly related to argument '{name}') - {why}"
        ))
    };
    let mut seen: Vec<&'static str> = Vec::new();
    let mut todo = Vec::new();
    for pair in pairs.chunks(2) {
        let name = String::from_utf8_lossy(&pair[0]);
        let Some(param) = PARAMS.iter().find(|p| p.name.eq_ignore_ascii_case(&name)) else {
            return Reply::error(format!(
                "ERR Unknown option or number of arguments for CONFIG SET - '{name}'"
            ));
        };
        let Some(set) = param.set else {
            return failed(param.name, "can't set immutable config");
        };
        if seen.contains(&param.name) {
            return failed(param.name, "duplicate parameter");
        }
        seen.push(param.name);
        todo.push((
            param.name,
            set,
            String::from_utf8_lossy(&pair[1]).into_owned(),
        ));
    }
    // All or nothing: apply to a copy, then publish it.
    let mut guard = shared.config.write().unwrap_or_else(|e| e.into_inner());
    let mut next = guard.clone();
    for (name, set, value) in todo {
        if let Err(why) = set(&mut next, &value) {
            return failed(name, &why);
        }
    }
    *guard = next;
    Reply::OK
}

fn reset_stats(shared: &Shared) {
    let s = &shared.stats;
    for counter in [
        &s.connections_received,
        &s.rejected_connections,
        &s.commands_processed,
        &s.net_input_bytes,
        &s.net_output_bytes,
        &s.keyspace_hits,
        &s.keyspace_misses,
        &s.sync_rounds,
        &s.error_replies,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
}

/// Redis's glob (`*`, `?`, `[abc]`, `[^a-z]`, `\x`), ignoring ASCII case as
/// CONFIG GET and COMMAND LIST FILTERBY PATTERN do: KEYS's bounded matcher
/// ([`glob::matches`]) over both sides lowercased, so that no pattern can
/// make it run long (a pattern too costly to match matches nothing).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    glob_match_lower(&pattern.to_ascii_lowercase(), text)
}

/// [`glob_match`] with the pattern already lowercased.
fn glob_match_lower(pattern: &[u8], text: &[u8]) -> bool {
    let text = text.to_ascii_lowercase();
    let mut budget = glob::Budget::default();
    glob::matches(pattern, &text, &mut budget).unwrap_or(false)
}

// --------------------------------------------------------------- COMMAND

/// The ACL categories Redis gives a command, from its kind, its flags and
/// its family.
fn categories(spec: &Spec) -> Vec<&'static str> {
    let mut cats = Vec::new();
    match spec.kind {
        Kind::Read => cats.push("@read"),
        Kind::Write => cats.push("@write"),
        Kind::Other => {}
    }
    let family = [
        (super::strings::COMMANDS, "@string"),
        (super::keys::COMMANDS, "@keyspace"),
        (super::multi::COMMANDS, "@transaction"),
        (super::connection::COMMANDS, "@connection"),
        (super::client::COMMANDS, "@connection"),
    ]
    .iter()
    .find(|(table, _)| table.iter().any(|s| s.name == spec.name))
    .map_or("@admin", |(_, cat)| cat);
    cats.push(family);
    cats.push(if spec.redis_flags.contains(&"fast") {
        "@fast"
    } else {
        "@slow"
    });
    cats
}

/// COMMAND INFO's entry for `spec`, in Redis 7's shape: name, arity,
/// flags, first key, last key, step, ACL categories, tips, key specs,
/// subcommands.
fn command_info(spec: &Spec) -> Reply {
    let statuses =
        |items: &[&'static str]| Reply::Set(items.iter().map(|s| Reply::status(s)).collect());
    Reply::Array(vec![
        Reply::bulk(spec.name),
        Reply::Int(i64::from(spec.arity)),
        statuses(spec.redis_flags),
        Reply::Int(i64::from(spec.first_key)),
        Reply::Int(i64::from(spec.last_key)),
        Reply::Int(i64::from(spec.step)),
        statuses(&categories(spec)),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
        Reply::Set(Vec::new()),
    ])
}

/// COMMAND DOCS's entry: the group, as `redis-cli` reads it for its help.
fn command_docs(spec: &Spec) -> Reply {
    let group = categories(spec)
        .iter()
        .find(|c| !matches!(**c, "@read" | "@write" | "@fast" | "@slow"))
        .map_or("server", |c| match *c {
            "@keyspace" => "generic",
            "@admin" => "server",
            other => &other[1..],
        });
    Reply::Map(vec![
        (Reply::bulk("summary"), Reply::bulk("")),
        (Reply::bulk("since"), Reply::bulk("1.0.0")),
        (Reply::bulk("group"), Reply::bulk(group)),
    ])
}

fn sorted_commands() -> Vec<&'static Spec> {
    let mut all: Vec<_> = super::all_commands().collect();
    all.sort_by_key(|s| s.name);
    all
}

const COMMAND_SUBCOMMANDS: &[(&str, i32)] = &[
    ("count", 2),
    ("info", -2),
    ("docs", -2),
    ("list", -2),
    ("getkeys", -4),
    ("help", 2),
];

fn command(_: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if args.len() == 1 {
        return Reply::Array(sorted_commands().into_iter().map(command_info).collect());
    }
    let Some(&(name, arity)) = COMMAND_SUBCOMMANDS.iter().find(|(n, _)| is(&args[1], n)) else {
        return unknown_subcommand("COMMAND", &args[1]);
    };
    if let Err(r) = sub_arity("command", name, arity, args.len()) {
        return r;
    }
    match name {
        "count" => Reply::Int(i64::try_from(super::all_commands().count()).unwrap_or(0)),
        "info" if args.len() == 2 => {
            Reply::Array(sorted_commands().into_iter().map(command_info).collect())
        }
        "info" => Reply::Array(
            args[2..]
                .iter()
                .map(|n| super::lookup(n).map_or(Reply::Nil, command_info))
                .collect(),
        ),
        "docs" if args.len() == 2 => Reply::Map(
            sorted_commands()
                .into_iter()
                .map(|s| (Reply::bulk(s.name), command_docs(s)))
                .collect(),
        ),
        "docs" => Reply::Map(
            args[2..]
                .iter()
                .filter_map(|n| super::lookup(n))
                .map(|s| (Reply::bulk(s.name), command_docs(s)))
                .collect(),
        ),
        "list" => command_list(&args[2..]),
        "getkeys" => getkeys(&args[2..]),
        _ => help_reply(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands in this server.",
            "LIST [FILTERBY (MODULE <module-name>|ACLCAT <category>|PATTERN <pattern>)]",
            "    Return a list of all commands in this server.",
            "INFO [<command-name> ...]",
            "    Return details about the given commands, or all of them.",
            "GETKEYS <full-command>",
            "    Return the keys from a full Redis command.",
            "DOCS [<command-name> ...]",
            "    Return documentation details about the given commands, or all of them.",
            "HELP",
            "    Prints this help.",
        ]),
    }
}

/// COMMAND GETKEYS: the key arguments of a full command, from its first
/// key, last key and step.
fn getkeys(full: &[Vec<u8>]) -> Reply {
    let Some(spec) = super::lookup(&full[0]) else {
        return Reply::err("ERR Invalid command specified");
    };
    if spec.first_key <= 0 {
        return Reply::err("ERR The command has no key arguments");
    }
    if !super::arity_ok(spec.arity, full.len()) {
        return Reply::err("ERR Invalid number of arguments specified for command");
    }
    let argc = i64::try_from(full.len()).unwrap_or(i64::MAX);
    let first = i64::from(spec.first_key);
    let last = match i64::from(spec.last_key) {
        l if l < 0 => argc + l,
        l => l.min(argc - 1),
    };
    let step = usize::try_from(spec.step.max(1)).unwrap_or(1);
    let (Ok(first), Ok(last)) = (usize::try_from(first), usize::try_from(last)) else {
        return Reply::Array(Vec::new());
    };
    Reply::Array(
        full.iter()
            .take(last + 1)
            .skip(first)
            .step_by(step)
            .map(|k| Reply::bulk(k.clone()))
            .collect(),
    )
}

fn command_list(opts: &[Vec<u8>]) -> Reply {
    let keep: Box<dyn Fn(&Spec) -> bool> = match opts {
        [] => Box::new(|_| true),
        [f, kind, value] if is(f, "filterby") => {
            let value = value.clone();
            if is(kind, "pattern") {
                Box::new(move |s| glob_match(&value, s.name.as_bytes()))
            } else if is(kind, "aclcat") {
                Box::new(move |s| {
                    categories(s)
                        .iter()
                        .any(|c| c.as_bytes()[1..].eq_ignore_ascii_case(&value))
                })
            } else if is(kind, "module") {
                Box::new(|_| false)
            } else {
                return Reply::err("ERR syntax error");
            }
        }
        _ => return Reply::err("ERR syntax error"),
    };
    Reply::Array(
        sorted_commands()
            .into_iter()
            .filter(|s| keep(s))
            .map(|s| Reply::bulk(s.name))
            .collect(),
    )
}

// ------------------------------------------------------ time and saving

fn time(_: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::bulk(now.as_secs().to_string()),
        Reply::bulk(now.subsec_micros().to_string()),
    ])
}

fn lastsave(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    Reply::Int(i64::try_from(last_save(ctx.shared)).unwrap_or(i64::MAX))
}

/// Makes every write so far durable: every open database and the root
/// store. On success, LASTSAVE moves to now.
///
/// # Errors
/// The first error of an fsync (the store is then poisoned).
pub fn sync_everything(shared: &Shared) -> Result<(), cairn::Error> {
    let mut first = None;
    for db in (0..DATABASES).filter_map(|i| shared.store.opened(i)) {
        if let Err(e) = db.sync() {
            first.get_or_insert(e);
        }
    }
    if let Err(e) = shared.store.root().sync() {
        first.get_or_insert(e);
    }
    if let Some(e) = first {
        shared.store.write_failed.store(true, Ordering::Release);
        return Err(e);
    }
    shared.last_save.store(unix_ms() / 1000, Ordering::Release);
    Ok(())
}

fn save(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    match sync_everything(ctx.shared) {
        Ok(()) => Reply::OK,
        Err(e) => super::store_error(&e),
    }
}

fn bgsave(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let schedule = match args.len() {
        1 => false,
        2 if is(&args[1], "schedule") => true,
        _ => return Reply::err("ERR syntax error"),
    };
    if !start_compaction(ctx.shared) {
        if schedule {
            return Reply::status("Background saving scheduled");
        }
        return Reply::err("ERR Background save already in progress");
    }
    Reply::status("Background saving started")
}

fn bgrewriteaof(ctx: &mut Ctx<'_>, _: &[Vec<u8>]) -> Reply {
    if !start_compaction(ctx.shared) {
        return Reply::err("ERR Background append only file rewriting already in progress");
    }
    Reply::status("Background append only file rewriting started")
}

/// Compacts every open database on a thread of its own, then makes it
/// durable; `false` when a compaction already runs.
fn start_compaction(shared: &Shared) -> bool {
    let bg = &shared.store.bgsave;
    if bg
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    let store: Arc<Store> = shared.store.clone();
    let started = std::thread::Builder::new()
        .name("cairn-bgsave".into())
        .spawn(move || {
            let ok = compact_all(&store);
            let bg = &store.bgsave;
            if ok {
                bg.finished_unix_secs
                    .store(unix_ms() / 1000, Ordering::Release);
            }
            bg.failed.store(!ok, Ordering::Release);
            bg.running.store(false, Ordering::Release);
        });
    if let Err(e) = started {
        log::error!("cannot start the background compaction: {e}");
        bg.failed.store(true, Ordering::Release);
        bg.running.store(false, Ordering::Release);
    }
    true
}

/// Compacts and syncs every open database; whether all went well.
fn compact_all(store: &Store) -> bool {
    let mut ok = true;
    for (i, db) in (0..DATABASES).filter_map(|i| store.opened(i).map(|db| (i, db))) {
        match db.compact().and_then(|_| db.sync()) {
            Ok(()) => {}
            // The server is shutting down and closed the store.
            Err(cairn::Error::Closed) => return false,
            Err(e) => {
                log::error!("background compaction of database {i} failed: {e}");
                ok = false;
            }
        }
    }
    ok
}

/// LASTSAVE: the last SAVE, shutdown sync or finished BGSAVE.
pub fn last_save(shared: &Shared) -> u64 {
    shared.last_save.load(Ordering::Acquire).max(
        shared
            .store
            .bgsave
            .finished_unix_secs
            .load(Ordering::Acquire),
    )
}

// -------------------------------------------------------------- SHUTDOWN

fn shutdown(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let (mut save, mut nosave, mut force, mut abort) = (false, false, false, false);
    for a in &args[1..] {
        if is(a, "save") {
            save = true;
        } else if is(a, "nosave") {
            nosave = true;
        } else if is(a, "now") {
            // No wait for replicas: there are none.
        } else if is(a, "force") {
            force = true;
        } else if is(a, "abort") {
            abort = true;
        } else {
            return Reply::err("ERR syntax error");
        }
    }
    if (save && nosave) || (abort && args.len() > 2) {
        return Reply::err("ERR syntax error");
    }
    if abort {
        return Reply::err("ERR No shutdown in progress.");
    }
    // NOSAVE skips nothing: cairn's log is the data, and it is synced
    // whatever the flags say.
    if let Err(e) = sync_everything(ctx.shared) {
        log::error!("SHUTDOWN: cannot make everything durable: {e}");
        if !force {
            return Reply::err("ERR Errors trying to SHUTDOWN. Check logs.");
        }
    }
    log::info!("SHUTDOWN asked by client {}", ctx.client.info.id);
    ctx.shared.begin_shutdown();
    // As Redis: no reply, the connection closes.
    ctx.client.closing = true;
    ctx.client.no_reply = true;
    Reply::OK
}

// -------------------------------------------------------------- FUNCTION

fn function(_: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    if !is(&args[1], "flush") {
        return unknown_subcommand("FUNCTION", &args[1]);
    }
    match args.len() {
        2 => Reply::OK,
        3 if is(&args[2], "async") || is(&args[2], "sync") => Reply::OK,
        3 => Reply::err("ERR FUNCTION FLUSH only supports SYNC|ASYNC option"),
        _ => Reply::error(format!(
            "ERR unknown subcommand or wrong number of arguments for '{}'. Try FUNCTION HELP.",
            String::from_utf8_lossy(&args[1])
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_as_redis() {
        assert!(glob_match(b"*", b"maxclients"));
        assert!(glob_match(b"*max*", b"proto-max-bulk-len"));
        assert!(glob_match(b"MAXCLIENTS", b"maxclients"));
        assert!(glob_match(b"max?lients", b"maxclients"));
        assert!(glob_match(b"[lm]axclients", b"maxclients"));
        assert!(glob_match(b"[^x]axclients", b"maxclients"));
        assert!(glob_match(b"[a-z]axclients", b"maxclients"));
        assert!(!glob_match(b"max", b"maxclients"));
        assert!(!glob_match(b"[^m]axclients", b"maxclients"));
        assert!(!glob_match(
            b"a*b*c*d*e*f*g*h*",
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
        assert!(glob_match(b"\\MAX*", b"maxclients"));
        assert!(glob_match(b"[K-N]ax*", b"maxclients"));
    }

    /// A pattern whose naive matching is exponential answers at once.
    #[test]
    fn hostile_glob_is_bounded() {
        let mut pattern = b"*?".repeat(1000);
        pattern.push(b'Q');
        let started = std::time::Instant::now();
        for name in ["proto-max-bulk-len", "client-query-buffer-limit"] {
            assert!(!glob_match(&pattern, name.as_bytes()));
        }
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn memory_units_as_redis() {
        assert_eq!(memory_in("2mb", 1).ok(), Some(2 << 20));
        assert_eq!(memory_in("1gb", 1).ok(), Some(1 << 30));
        assert_eq!(memory_in("3k", 1).ok(), Some(3000));
        assert_eq!(memory_in("1048576", 1).ok(), Some(1 << 20));
        assert!(memory_in("1", 1 << 20).is_err());
        assert!(memory_in("x", 1).is_err());
    }

    #[test]
    fn every_command_has_a_category() {
        for spec in super::super::all_commands() {
            assert!(categories(spec).len() >= 2, "{}", spec.name);
        }
    }
}
