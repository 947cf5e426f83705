//! INFO: Redis's sections and field names (server, clients, memory,
//! persistence, stats, replication, cpu, cluster, keyspace), from cairn's
//! own figures.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use super::{Ctx, Kind, Spec, HEAVY};
use crate::resp::reply::Reply;
use crate::state::Shared;
use crate::store::{unix_ms, DATABASES};

/// The Redis version cairn answers as (HELLO, INFO): the one whose
/// behaviour it follows, so that clients that check it accept it.
pub const REDIS_VERSION: &str = "7.0.15";

/// The INFO command.
pub const COMMANDS: &[Spec] = &[Spec {
    name: "info",
    arity: -1,
    kind: Kind::Other,
    // Takes every database's counters (a walk of the keys with a TTL).
    flags: HEAVY,
    redis_flags: &["loading", "stale", "sentinel"],
    first_key: 0,
    last_key: 0,
    step: 0,
    handler: info,
}];

/// Appends one section's fields.
type Section = fn(&Source<'_>, &mut String);

/// The sections, in Redis's order; all of them are in `default`.
const SECTIONS: &[(&str, &str, Section)] = &[
    ("server", "Server", server),
    ("clients", "Clients", clients),
    ("memory", "Memory", memory),
    ("persistence", "Persistence", persistence),
    ("stats", "Stats", stats),
    ("replication", "Replication", replication),
    ("cpu", "CPU", cpu),
    ("cluster", "Cluster", cluster),
    ("keyspace", "Keyspace", keyspace),
];

fn info(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Reply {
    let wanted: Vec<String> = args[1..]
        .iter()
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .collect();
    let all = wanted.is_empty()
        || wanted
            .iter()
            .any(|w| matches!(w.as_str(), "all" | "default" | "everything"));
    let text = render(ctx.shared, |name| all || wanted.iter().any(|w| w == name));
    // The key counts may include writes whose fsync has not finished: the
    // reply waits for the group commit, as a read's does.
    if ctx.shared.sync_mode() == crate::config::SyncMode::Always {
        for (i, _) in open_dbs(ctx.shared) {
            if ctx.shared.store.may_be_unsynced(i) {
                ctx.client.dirty |= 1 << i;
            }
        }
    }
    Reply::Verbatim(text)
}

/// What the sections read: the shared state, and the databases' counters,
/// taken once per INFO (each take walks the index of keys with a TTL).
struct Source<'a> {
    shared: &'a Shared,
    db_stats: std::cell::OnceCell<Vec<(usize, cairn::Stats)>>,
}

impl Source<'_> {
    fn db_stats(&self) -> &[(usize, cairn::Stats)] {
        self.db_stats.get_or_init(|| {
            open_dbs(self.shared)
                .map(|(i, db)| (i, db.stats()))
                .collect()
        })
    }
}

/// The INFO text of the sections `wanted` selects, separated by blank
/// lines as Redis does.
pub fn render(shared: &Shared, wanted: impl Fn(&str) -> bool) -> String {
    let src = Source {
        shared,
        db_stats: std::cell::OnceCell::new(),
    };
    let mut text = String::new();
    for (_, title, section) in SECTIONS.iter().filter(|(n, _, _)| wanted(n)) {
        if !text.is_empty() {
            text.push_str("\r\n");
        }
        let _ = write!(text, "# {title}\r\n");
        section(&src, &mut text);
    }
    text
}

fn field(out: &mut String, name: &str, value: impl std::fmt::Display) {
    let _ = write!(out, "{name}:{value}\r\n");
}

/// `Linux 6.1.0 x86_64`, as Redis's `os` field (uname).
fn os_name() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut os = std::env::consts::OS.to_string();
    os[..1].make_ascii_uppercase();
    format!("{os} {} {}", release.trim(), std::env::consts::ARCH)
}

fn server(src: &Source<'_>, out: &mut String) {
    let shared = src.shared;
    let config = shared.config();
    let uptime = shared.started.elapsed().as_secs();
    field(out, "redis_version", REDIS_VERSION);
    field(out, "cairn_version", env!("CARGO_PKG_VERSION"));
    field(out, "redis_git_sha1", "00000000");
    field(out, "redis_git_dirty", 0);
    field(out, "redis_mode", "standalone");
    field(out, "os", os_name());
    field(out, "arch_bits", usize::BITS);
    field(out, "multiplexing_api", "tokio");
    field(out, "process_id", std::process::id());
    field(out, "process_supervised", "no");
    field(out, "run_id", run_id(shared));
    field(out, "tcp_port", shared.local_addr.port());
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    field(out, "server_time_usec", now_us);
    field(out, "uptime_in_seconds", uptime);
    field(out, "uptime_in_days", uptime / 86_400);
    field(out, "hz", 10);
    field(out, "configured_hz", 10);
    let exe = std::env::current_exe().map_or(String::new(), |p| p.display().to_string());
    field(out, "executable", exe);
    let file = config
        .config_file
        .map_or(String::new(), |p| p.display().to_string());
    field(out, "config_file", file);
    field(out, "io_threads_active", 0);
}

/// A 40-hex-digit id of this run, as Redis's `run_id`: the process and the
/// server's start, so that it changes at every restart.
fn run_id(shared: &Shared) -> String {
    let started_ms = unix_ms()
        .saturating_sub(u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX));
    let seed = (u64::from(std::process::id()) << 32) ^ started_ms;
    let mix = |x: u64| {
        let x = (x ^ (x >> 33)).wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        let x = (x ^ (x >> 33)).wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        x ^ (x >> 33)
    };
    let (a, b, c) = (mix(seed), mix(seed ^ 1), mix(seed ^ 2));
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

fn clients(src: &Source<'_>, out: &mut String) {
    let shared = src.shared;
    let config = shared.config();
    field(out, "connected_clients", shared.client_list().len());
    field(out, "cluster_connections", 0);
    field(out, "maxclients", config.maxclients);
    field(out, "client_recent_max_input_buffer", 0);
    field(out, "client_recent_max_output_buffer", 0);
    field(out, "blocked_clients", 0);
    field(out, "tracking_clients", 0);
    field(out, "clients_in_timeout_table", 0);
}

/// The resident set size of this process, from `/proc/self/status`.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb.saturating_mul(1024))
}

/// Bytes as Redis prints them for humans: `512B`, `1.50K`, `2.00M`…
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["K", "M", "G", "T", "P"];
    if n < 1024 {
        return format!("{n}B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut x = n as f64 / 1024.0;
    let mut unit = 0;
    while x >= 1024.0 && unit < UNITS.len() - 1 {
        x /= 1024.0;
        unit += 1;
    }
    format!("{x:.2}{}", UNITS[unit])
}

fn memory(src: &Source<'_>, out: &mut String) {
    let rss = rss_bytes();
    let index: u64 = src
        .db_stats()
        .iter()
        .map(|(_, s)| s.keydir_memory_bytes)
        .sum();
    // cairn has no allocator statistics: the process's resident size is
    // the honest figure for what it uses.
    field(out, "used_memory", rss);
    field(out, "used_memory_human", human_bytes(rss));
    field(out, "used_memory_rss", rss);
    field(out, "used_memory_rss_human", human_bytes(rss));
    field(out, "cairn_index_memory", index);
    field(out, "cairn_index_memory_human", human_bytes(index));
    field(out, "maxmemory", 0);
    field(out, "maxmemory_human", "0B");
    field(out, "maxmemory_policy", "noeviction");
    field(out, "mem_allocator", "libc");
}

fn persistence(src: &Source<'_>, out: &mut String) {
    let shared = src.shared;
    let bg = shared.store.bgsave.running.load(Ordering::Acquire);
    let bg_status = if shared.store.bgsave.failed.load(Ordering::Acquire) {
        "err"
    } else {
        "ok"
    };
    let write_status = if shared.store.write_failed.load(Ordering::Acquire) {
        "err"
    } else {
        "ok"
    };
    field(out, "loading", 0);
    field(out, "async_loading", 0);
    field(out, "rdb_changes_since_last_save", 0);
    field(out, "rdb_bgsave_in_progress", u8::from(bg));
    field(out, "rdb_last_save_time", super::server::last_save(shared));
    field(out, "rdb_last_bgsave_status", bg_status);
    field(out, "aof_enabled", 1);
    field(out, "aof_rewrite_in_progress", u8::from(bg));
    field(out, "aof_rewrite_scheduled", 0);
    field(out, "aof_last_bgrewrite_status", bg_status);
    field(out, "aof_last_write_status", write_status);
    field(out, "cairn_sync", shared.sync_mode().name());
}

fn stats(src: &Source<'_>, out: &mut String) {
    let shared = src.shared;
    let s = &shared.stats;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let expired: u64 = src
        .db_stats()
        .iter()
        .map(|(_, s)| s.expired_keys_removed)
        .sum();
    field(
        out,
        "total_connections_received",
        get(&s.connections_received),
    );
    field(out, "total_commands_processed", get(&s.commands_processed));
    field(out, "instantaneous_ops_per_sec", 0);
    field(out, "total_net_input_bytes", get(&s.net_input_bytes));
    field(out, "total_net_output_bytes", get(&s.net_output_bytes));
    field(out, "instantaneous_input_kbps", "0.00");
    field(out, "instantaneous_output_kbps", "0.00");
    field(out, "rejected_connections", get(&s.rejected_connections));
    field(out, "expired_keys", expired);
    field(out, "evicted_keys", 0);
    field(out, "keyspace_hits", get(&s.keyspace_hits));
    field(out, "keyspace_misses", get(&s.keyspace_misses));
    field(out, "pubsub_channels", 0);
    field(out, "pubsub_patterns", 0);
    field(out, "total_error_replies", get(&s.error_replies));
    field(out, "cairn_sync_rounds", get(&s.sync_rounds));
}

fn replication(_: &Source<'_>, out: &mut String) {
    field(out, "role", "master");
    field(out, "connected_slaves", 0);
    field(out, "master_failover_state", "no-failover");
    field(out, "master_repl_offset", 0);
}

/// This process's CPU time (user, system) in seconds, from
/// `/proc/self/stat` (Linux counts it in 1/100 s).
fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which may hold spaces: state is
    // the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let secs = |i: usize| ticks.get(i).copied().unwrap_or(0) as f64 / 100.0;
    (secs(0), secs(1))
}

fn cpu(_: &Source<'_>, out: &mut String) {
    let (user, sys) = cpu_seconds();
    field(out, "used_cpu_sys", format!("{sys:.6}"));
    field(out, "used_cpu_user", format!("{user:.6}"));
    field(out, "used_cpu_sys_children", "0.000000");
    field(out, "used_cpu_user_children", "0.000000");
}

fn cluster(_: &Source<'_>, out: &mut String) {
    field(out, "cluster_enabled", 0);
}

/// The databases opened so far (every one that exists on disk is opened
/// at start).
fn open_dbs(shared: &Shared) -> impl Iterator<Item = (usize, &cairn::Db)> {
    (0..DATABASES).filter_map(|i| shared.store.opened(i).map(|db| (i, db)))
}

/// The keyspace section, from the databases' counters: no key is walked,
/// so INFO costs the same on a million keys as on ten. `avg_ttl` is 0
/// (Redis's own is an estimate from sampled keys; 0 is what it reports
/// before it has sampled any).
fn keyspace(src: &Source<'_>, out: &mut String) {
    for (i, st) in src.db_stats() {
        let _ = write!(out, "{}", keyspace_line(*i, st));
    }
}

/// One database's keyspace line, or nothing for an empty database. The
/// keys with an expiry are counted expired ones included until the sweep
/// removes them, so they are capped at the live keys.
fn keyspace_line(index: usize, st: &cairn::Stats) -> String {
    let keys = st.live_keys;
    if keys == 0 {
        return String::new();
    }
    let expires = st.keys_with_expiry.min(keys);
    format!("db{index}:keys={keys},expires={expires},avg_ttl=0\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_as_redis() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.50K");
        assert_eq!(human_bytes(3 << 20), "3.00M");
        assert_eq!(human_bytes(5 << 30), "5.00G");
    }

    #[test]
    fn keyspace_line_from_counters() {
        let mut st = cairn::Stats::default();
        assert_eq!(keyspace_line(0, &st), "");
        st.live_keys = 5;
        st.keys_with_expiry = 2;
        assert_eq!(keyspace_line(3, &st), "db3:keys=5,expires=2,avg_ttl=0\r\n");
        // Expired keys not yet swept are not counted past the live keys.
        st.keys_with_expiry = 9;
        assert_eq!(keyspace_line(1, &st), "db1:keys=5,expires=5,avg_ttl=0\r\n");
    }
}
