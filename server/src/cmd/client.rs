//! CLIENT: ID, SETNAME, GETNAME, SETINFO, LIST, INFO, KILL.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{is, parse_int, wrong_arity, Ctx, Kind, Spec};
use crate::resp::reply::Reply;
use crate::state::{ClientInfo, ClientState};

/// The CLIENT command.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "client",
    arity: -2,
    kind: Kind::Other,
    flags: 0,
    redis_flags: &[],
    first_key: 0,
    last_key: 0,
    step: 0,
    handler: client,
}];

/// Redis's error for a subcommand `sub` that `command` does not have.
pub fn unknown_subcommand(command: &str, sub: &[u8]) -> Reply {
    let sub: String = String::from_utf8_lossy(sub).chars().take(128).collect();
    Reply::error(format!(
        "ERR unknown subcommand '{sub}'. Try {command} HELP."
    ))
}

/// Checks a subcommand's arity (Redis's rules, the command and the
/// subcommand counted); the error names `command|sub`.
pub fn sub_arity(command: &str, sub: &str, arity: i32, argc: usize) -> Result<(), Reply> {
    if super::arity_ok(arity, argc) {
        Ok(())
    } else {
        Err(wrong_arity(&format!("{command}|{sub}")))
    }
}

/// The subcommands: name and arity.
const SUBCOMMANDS: &[(&str, i32)] = &[
    ("id", 2),
    ("setname", 3),
    ("getname", 2),
    ("setinfo", 4),
    ("list", -2),
    ("info", 2),
    ("kill", -3),
    ("help", 2),
];

const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "KILL <ip:port>",
    "    Kill connection made from <ip:port>.",
    "KILL <option> <value> [<option> <value> [...]]",
    "    Kill connections. Options are: ID <id>, ADDR <ip:port>, LADDR <ip:port>,",
    "    TYPE (NORMAL|MASTER|REPLICA|PUBSUB), USER <username>, SKIPME (YES|NO).",
    "LIST [TYPE (NORMAL|MASTER|REPLICA|PUBSUB)] [ID <id> [<id> ...]]",
    "    Return information about client connections.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set the client library's name or version.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Prints this help.",
];

/// A help text as Redis sends one: an array of status lines.
pub fn help_reply(lines: &[&'static str]) -> Reply {
    Reply::Array(lines.iter().map(|l| Reply::status(l)).collect())
}

fn client(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let sub = &args[1];
    let Some(&(name, arity)) = SUBCOMMANDS.iter().find(|(n, _)| is(sub, n)) else {
        return unknown_subcommand("CLIENT", sub);
    };
    if let Err(r) = sub_arity("client", name, arity, args.len()) {
        return r;
    }
    match name {
        "id" => Reply::Int(i64::try_from(ctx.client.info.id).unwrap_or(i64::MAX)),
        "setname" => match set_name(ctx, &args[2]) {
            Ok(()) => Reply::OK,
            Err(r) => r,
        },
        "getname" => {
            let name = ctx.client.info.snapshot().name;
            if name.is_empty() {
                Reply::Nil
            } else {
                Reply::Bulk(name)
            }
        }
        "setinfo" => set_info(ctx, &args[2], &args[3]),
        "list" => list(ctx, args),
        "info" => Reply::Verbatim(describe(ctx, &ctx.client.info, args)),
        "kill" => kill(ctx, args),
        _ => help_reply(HELP),
    }
}

/// Whether `value` may be a client name or library attribute: printable
/// ASCII without spaces, so that CLIENT LIST's lines split on spaces.
fn valid_attr(value: &[u8]) -> bool {
    value.iter().all(|&b| (b'!'..=b'~').contains(&b))
}

/// Sets (or, empty, clears) the connection's name: CLIENT SETNAME and
/// HELLO SETNAME.
///
/// # Errors
/// Redis's error for a name with spaces, newlines or other characters
/// outside printable ASCII.
pub fn set_name(ctx: &mut Ctx<'_>, name: &[u8]) -> Result<(), Reply> {
    if !valid_attr(name) {
        return Err(Reply::err(
            "ERR Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    lock(&ctx.client.info).name = name.to_vec();
    Ok(())
}

fn set_info(ctx: &mut Ctx<'_>, attr: &[u8], value: &[u8]) -> Reply {
    let lib_name = is(attr, "lib-name");
    if !lib_name && !is(attr, "lib-ver") {
        return Reply::error(format!(
            "ERR Unrecognized option '{}'",
            String::from_utf8_lossy(attr)
        ));
    }
    if !valid_attr(value) {
        return Reply::error(format!(
            "ERR {} cannot contain spaces, newlines or special characters.",
            String::from_utf8_lossy(attr)
        ));
    }
    let mut st = lock(&ctx.client.info);
    if lib_name {
        st.lib_name = value.to_vec();
    } else {
        st.lib_ver = value.to_vec();
    }
    Reply::OK
}

fn lock(info: &ClientInfo) -> std::sync::MutexGuard<'_, ClientState> {
    info.state.lock().unwrap_or_else(|e| e.into_inner())
}

fn list(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let mut ids: Option<Vec<u64>> = None;
    let mut i = 2;
    while i < args.len() {
        if is(&args[i], "type") && i + 1 < args.len() {
            let t = &args[i + 1];
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|n| is(t, n))
            {
                return Reply::error(format!(
                    "ERR Unknown client type '{}'",
                    String::from_utf8_lossy(t)
                ));
            }
            if !is(t, "normal") {
                // Every connection of cairn is a normal one.
                ids = Some(Vec::new());
            }
            i += 2;
        } else if is(&args[i], "id") && i + 1 < args.len() {
            let mut wanted = ids.take().unwrap_or_default();
            for a in &args[i + 1..] {
                // Any integer is an id to look for (Redis lists none for 0
                // or -1); anything else is an error.
                match parse_int(a) {
                    Ok(id) => wanted.extend(u64::try_from(id).ok()),
                    Err(_) => return Reply::err("ERR Invalid client ID"),
                }
            }
            ids = Some(wanted);
            i = args.len();
        } else {
            return Reply::err("ERR syntax error");
        }
    }
    let mut text = String::new();
    for info in ctx.shared.client_list() {
        if ids.as_ref().is_some_and(|w| !w.contains(&info.id)) {
            continue;
        }
        text.push_str(&describe(ctx, &info, args));
    }
    Reply::Verbatim(text)
}

/// One line of CLIENT LIST, in Redis 7's field order. The connection
/// running the command is described from its live state; the others from
/// what they recorded after their last command.
fn describe(ctx: &Ctx<'_>, info: &ClientInfo, args: &[Vec<u8>]) -> String {
    let now = Instant::now();
    let mut st = info.snapshot();
    let me = info.id == ctx.client.info.id;
    let mut qbuf = 0;
    if me {
        st.db = ctx.client.db;
        st.proto = ctx.client.proto;
        st.in_multi = ctx.client.multi.is_some();
        st.queued = ctx.client.multi.as_ref().map_or(0, Vec::len);
        st.last_active = now;
        st.last_cmd = format!(
            "client|{}",
            String::from_utf8_lossy(&args[1]).to_lowercase()
        );
        qbuf = request_len(args);
    }
    let mut line = String::with_capacity(256);
    let _ = writeln!(
        line,
        "id={} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub=0 psub=0 ssub=0 multi={} qbuf={qbuf} qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
        info.id,
        info.addr,
        info.laddr,
        String::from_utf8_lossy(&st.name),
        now.duration_since(info.connected).as_secs(),
        now.duration_since(st.last_active).as_secs(),
        if st.in_multi { "x" } else { "N" },
        st.db,
        if st.in_multi {
            i64::try_from(st.queued).unwrap_or(i64::MAX)
        } else {
            -1
        },
        st.last_cmd,
        st.proto,
        String::from_utf8_lossy(&st.lib_name),
        String::from_utf8_lossy(&st.lib_ver),
    );
    line
}

/// The size of `args` sent as a multibulk request (CLIENT LIST's `qbuf`
/// of the connection asking).
fn request_len(args: &[Vec<u8>]) -> usize {
    let digits = |n: usize| n.to_string().len();
    args.iter().fold(3 + digits(args.len()), |acc, a| {
        acc + 1 + digits(a.len()) + 2 + a.len() + 2
    })
}

/// CLIENT KILL's filters.
#[derive(Default)]
struct Filter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    none: bool,
    skip_me: bool,
}

fn parse_kill_filter(args: &[Vec<u8>]) -> Result<Filter, Reply> {
    let mut f = Filter {
        skip_me: true,
        ..Filter::default()
    };
    let mut pairs = args[2..].chunks(2);
    for pair in &mut pairs {
        let [opt, value] = pair else {
            return Err(Reply::err("ERR syntax error"));
        };
        let text = String::from_utf8_lossy(value).into_owned();
        if is(opt, "id") {
            match parse_int(value).ok().and_then(|n| u64::try_from(n).ok()) {
                Some(id) if id > 0 => f.id = Some(id),
                _ => return Err(Reply::err("ERR client-id should be greater than 0")),
            }
        } else if is(opt, "addr") {
            f.addr = Some(text);
        } else if is(opt, "laddr") {
            f.laddr = Some(text);
        } else if is(opt, "type") {
            if !["normal", "master", "replica", "slave", "pubsub"]
                .iter()
                .any(|n| is(value, n))
            {
                return Err(Reply::error(format!("ERR Unknown client type '{text}'")));
            }
            f.none |= !is(value, "normal");
        } else if is(opt, "user") {
            if text != "default" {
                return Err(Reply::error(format!("ERR No such user '{text}'")));
            }
        } else if is(opt, "skipme") {
            f.skip_me = if is(value, "yes") {
                true
            } else if is(value, "no") {
                false
            } else {
                return Err(Reply::err("ERR syntax error"));
            };
        } else {
            return Err(Reply::err("ERR syntax error"));
        }
    }
    Ok(f)
}

/// CLIENT KILL addr:port (the old form: `+OK` or an error) and CLIENT KILL
/// with filters (the number killed). A killed connection closes after the
/// command it is running; the one asking closes after its reply.
fn kill(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let old_form = args.len() == 3;
    let filter = if old_form {
        Filter {
            addr: Some(String::from_utf8_lossy(&args[2]).into_owned()),
            ..Filter::default()
        }
    } else {
        match parse_kill_filter(args) {
            Ok(f) => f,
            Err(r) => return r,
        }
    };
    let mut killed = 0;
    for info in ctx.shared.client_list() {
        let me = info.id == ctx.client.info.id;
        // A connection already killed is on its way out.
        let hit = !filter.none
            && !info.killed.load(Ordering::Acquire)
            && filter.id.is_none_or(|id| id == info.id)
            && filter
                .addr
                .as_ref()
                .is_none_or(|a| *a == info.addr.to_string())
            && filter
                .laddr
                .as_ref()
                .is_none_or(|a| *a == info.laddr.to_string())
            && !(me && filter.skip_me);
        if !hit {
            continue;
        }
        info.killed.store(true, Ordering::Release);
        // A permit, so that a connection busy running a command still sees
        // it when it next waits.
        info.kill.notify_one();
        if me {
            ctx.client.closing = true;
        }
        killed += 1;
    }
    match (old_form, killed) {
        (true, 0) => Reply::err("ERR No such client"),
        (true, _) => Reply::OK,
        (false, n) => Reply::Int(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_ascii_without_spaces() {
        assert!(valid_attr(b"worker-1"));
        assert!(valid_attr(b""));
        for bad in [&b"a b"[..], b"a\nb", "é".as_bytes(), b"\x7f", b"a\tb"] {
            assert!(!valid_attr(bad), "{bad:?}");
        }
    }

    #[test]
    fn request_len_is_the_multibulk_size() {
        // *2\r\n$6\r\nCLIENT\r\n$4\r\nLIST\r\n
        let args = vec![b"CLIENT".to_vec(), b"LIST".to_vec()];
        assert_eq!(request_len(&args), 26);
    }
}
