//! Turns `results.jsonl` into `report.md`, `throughput.svg` and `latency.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::result::RunResult;
use crate::store::Durability;
use crate::workload::durability_of;

/// Workloads in report order, with the line that explains each.
const WORKLOADS: &[(&str, &str)] = &[
    ("load", "Bulk load: 1M keys in batches of 1000 (one transaction each, no fsync per batch), one sync at the end. Redis: 1000 SETs pipelined per round trip."),
    ("put", "Non-durable single puts of new keys: one transaction per put, no fsync."),
    ("get_uniform", "Random point reads, uniform over the loaded keys; every read copies the value out."),
    ("get_zipf", "Random point reads, scrambled zipfian (theta 0.99) over the loaded keys."),
    ("mix95", "95% reads, 5% overwrites of loaded keys (no fsync per write), uniform."),
    ("mix50", "50% reads, 50% overwrites of loaded keys (no fsync per write), uniform."),
    ("durable1", "Durable single writes, 1 thread: each put acknowledged only when it is on disk."),
    ("durable1_loaded", "As durable1, on the store the bulk load just made (the next process after the load): new keys, one thread, each put on disk before it returns."),
    ("durable8", "Durable single writes, 8 threads (Redis: 8 connections)."),
    ("session", "Session workload at ≤1 s loss on power loss (cairn EveryMillis(1000), Redis everysec, SQLite NORMAL, others: store's periodic sync or the harness's sync() once a second): create with a 30-minute TTL (1 KB JSON), 10 reads, 1 touch, 1 delete; 1000 sessions active."),
    ("session_durable", "The session workload with every write durable before it returns."),
    ("counter", "Rate-limit counters: increment one of 10k keys (uniform); a new counter gets a 60 s TTL; ≤1 s loss on power loss, as for sessions."),
    ("counter_durable", "The counter workload with every increment durable before it returns."),
    ("open", "Open of the 1M-key store (after a clean close, warm page cache) until the first read returns. Redis: restart until the AOF is loaded."),
    ("load_10m", "Bulk load of 10M keys (as 'load'; once per peer, not repeated)."),
    ("open_10m", "Open of the 10M-key store until the first read returns."),
];

const EMBEDDED: &[&str] = &[
    "redb",
    "fjall",
    "sled",
    "sqlite",
    "sqlite-normal",
    "lmdb",
    "rocksdb",
];

/// Median and spread of one (workload, peer).
struct Agg {
    runs: usize,
    ops: f64,
    ops_min: f64,
    ops_max: f64,
    secs: f64,
    secs_min: f64,
    secs_max: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    rss: f64,
    mem_per_key: Option<f64>,
    disk: Option<f64>,
    settings: String,
    caveat: Option<String>,
    note: Option<String>,
}

/// The median of `v` (the mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// What a process crash (not a power loss) does to acknowledged writes of
/// the stores whose non-durable modes keep writes in their own memory, for
/// the workloads that use those modes. cairn, LMDB, SQLite, RocksDB and
/// Redis hand every write to the OS before they acknowledge it, so a crash
/// of the process loses none of them; these three do not.
fn process_crash_caveat(peer: &str, workload: &str) -> Option<&'static str> {
    // Opens write nothing; durable workloads get every store's durable mode.
    if is_time(workload) || durability_of(workload) == Durability::Durable {
        return None;
    }
    match peer {
        "fjall" => Some("without persist, fjall 3 keeps journal writes in an 8 KiB user-space buffer (BufWriter): a process crash loses acknowledged writes (PersistMode::Buffer per write would hand them to the OS)"),
        "redb" => Some("Durability::None commits are rolled back by a crash of the process, not only of the machine, to the last durable commit"),
        "sled" => Some("sled 0.34 buffers writes in memory until its background flush (every 500 ms, or 1000 ms in the periodic workloads): a process crash loses acknowledged writes"),
        _ => None,
    }
}

fn aggregate(rs: &[&RunResult]) -> Agg {
    let f = |g: &dyn Fn(&RunResult) -> f64| -> Vec<f64> { rs.iter().map(|r| g(r)).collect() };
    let o = |g: &dyn Fn(&RunResult) -> Option<f64>| -> Option<f64> {
        median(rs.iter().filter_map(|r| g(r)).collect())
    };
    let ops = f(&|r| r.ops_per_sec);
    let secs = f(&|r| r.secs);
    let min = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    Agg {
        runs: rs.len(),
        ops: median(ops.clone()).unwrap_or(0.0),
        ops_min: min(&ops),
        ops_max: max(&ops),
        secs: median(secs.clone()).unwrap_or(0.0),
        secs_min: min(&secs),
        secs_max: max(&secs),
        p50: o(&|r| r.p50_us),
        p99: o(&|r| r.p99_us),
        p999: o(&|r| r.p999_us),
        rss: median(f(&|r| r.peak_rss_bytes as f64)).unwrap_or(0.0),
        mem_per_key: o(&|r| r.mem_per_key),
        disk: o(&|r| r.disk_bytes.map(|d| d as f64)),
        settings: rs.first().map(|r| r.settings.clone()).unwrap_or_default(),
        caveat: rs.iter().find_map(|r| r.caveat.clone()),
        note: rs.iter().find_map(|r| r.note.clone()),
    }
}

fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

fn bytes(x: f64) -> String {
    if x >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", x / (1024.0 * 1024.0 * 1024.0))
    } else {
        format!("{:.0} MiB", x / (1024.0 * 1024.0))
    }
}

fn us(x: Option<f64>) -> String {
    match x {
        Some(v) if v >= 1000.0 => format!("{:.1} ms", v / 1000.0),
        Some(v) if v >= 10.0 => format!("{v:.0} µs"),
        Some(v) => format!("{v:.2} µs"),
        None => "–".into(),
    }
}

fn is_time(w: &str) -> bool {
    w.starts_with("open")
}

type Table = BTreeMap<String, BTreeMap<String, Agg>>;

/// The results in a `results.jsonl` (lines that do not parse are skipped).
pub fn read_results(results: &Path) -> Result<Vec<RunResult>, String> {
    let text =
        std::fs::read_to_string(results).map_err(|e| format!("{}: {e}", results.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Writes the report next to the results.
pub fn write(results: &Path, out: &Path) -> Result<(), String> {
    let all = read_results(results)?;
    let mut grouped: BTreeMap<(String, String), Vec<&RunResult>> = BTreeMap::new();
    let mut errors = Vec::new();
    for r in &all {
        if let Some(e) = &r.error {
            errors.push(format!(
                "- {} / {} (rep {}): {e}",
                r.workload, r.peer, r.rep
            ));
            continue;
        }
        grouped
            .entry((r.workload.clone(), r.peer.clone()))
            .or_default()
            .push(r);
    }
    let mut table: Table = BTreeMap::new();
    for ((w, p), rs) in &grouped {
        let mut a = aggregate(rs);
        if a.caveat.is_none() {
            a.caveat = process_crash_caveat(p, w).map(str::to_string);
        }
        table.entry(w.clone()).or_default().insert(p.clone(), a);
    }
    let peer_order: Vec<String> = {
        let mut v: Vec<String> = crate::peers::ALL.iter().map(|s| s.to_string()).collect();
        for l in [
            "limit-hashmap",
            "limit-fdatasync",
            "limit-fdatasync-append",
            "limit-seqread",
            "limit-hints",
        ] {
            v.push(l.into());
        }
        v
    };
    let mut md = String::new();
    let machine = std::fs::read_to_string(out.join("machine.md")).unwrap_or_default();
    let command = std::fs::read_to_string(out.join("command.txt")).unwrap_or_default();
    let _ = writeln!(md, "## Machine\n\n{machine}\n\nCommand: `{command}`\n");
    let _ = writeln!(md, "Figures are medians over the repetitions; \"spread\" is the lowest and highest. Latencies are per operation. \"cairn ×\" is cairn's throughput divided by the peer's (for opens: the peer's time divided by cairn's), so above 1 means cairn is faster. Memory per key is the resident memory the store added after open and a 1 s warm-up, divided by the keys (for mapped files it includes the mapped pages that were touched). Peak RSS is the process's (Redis: the server's) high-water mark.\n");
    md.push_str(&targets(&table));
    for (w, desc) in WORKLOADS {
        let Some(rows) = table.get(*w) else { continue };
        let _ = writeln!(md, "### {w}\n\n{desc}\n");
        let cairn = rows.get("cairn");
        if is_time(w) {
            let _ = writeln!(md, "| store | time (median) | spread | cairn × | peak RSS | memory/key | runs |\n|---|---:|---:|---:|---:|---:|---:|");
        } else {
            let _ = writeln!(md, "| store | ops/s (median) | spread | cairn × | p50 | p99 | p999 | peak RSS | memory/key | disk | runs |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        }
        for p in &peer_order {
            let Some(a) = rows.get(p) else { continue };
            let name = if a.caveat.is_some() {
                format!("{p} †")
            } else {
                p.clone()
            };
            // Runs before the server-RSS fix recorded 0 for Redis.
            let mem = match a.mem_per_key {
                Some(m) if !(p.starts_with("redis") && m < 1.0) => format!("{m:.0} B"),
                _ => "–".into(),
            };
            if is_time(w) {
                let ratio = cairn.map_or("–".into(), |c| format!("{:.2}", a.secs / c.secs));
                let _ = writeln!(
                    md,
                    "| {name} | {:.3} s | {:.3}–{:.3} | {ratio} | {} | {mem} | {} |",
                    a.secs,
                    a.secs_min,
                    a.secs_max,
                    bytes(a.rss),
                    a.runs
                );
            } else {
                let ratio = cairn.map_or("–".into(), |c| format!("{:.2}", c.ops / a.ops));
                let disk = a.disk.map_or("–".into(), bytes);
                let _ = writeln!(
                    md,
                    "| {name} | {} | {}–{} | {ratio} | {} | {} | {} | {} | {mem} | {disk} | {} |",
                    si(a.ops),
                    si(a.ops_min),
                    si(a.ops_max),
                    us(a.p50),
                    us(a.p99),
                    us(a.p999),
                    bytes(a.rss),
                    a.runs
                );
            }
        }
        let notes: Vec<String> = peer_order
            .iter()
            .filter_map(|p| {
                rows.get(p)
                    .and_then(|a| a.note.as_ref().map(|n| format!("{p}: {n}")))
            })
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\nNotes: {}.", notes.join("; "));
        }
        md.push('\n');
    }
    // Settings and caveats, once per peer and workload kind.
    let _ = writeln!(
        md,
        "### Settings\n\n| store | workload | settings | caveat |\n|---|---|---|---|"
    );
    for p in &peer_order {
        let mut seen: Vec<String> = Vec::new();
        for (w, _) in WORKLOADS {
            let Some(a) = table.get(*w).and_then(|rows| rows.get(p)) else {
                continue;
            };
            if seen.contains(&a.settings) {
                continue;
            }
            seen.push(a.settings.clone());
            let _ = writeln!(
                md,
                "| {p} | {w} | {} | {} |",
                a.settings,
                a.caveat.clone().unwrap_or_default()
            );
        }
    }
    md.push_str("\n† the store's mode is weaker than the workload asks for, or than cairn's in the same workload (a crash of the process loses acknowledged writes); see the caveat.\n");
    if !errors.is_empty() {
        let _ = writeln!(md, "\n### Runs that failed\n\n{}", errors.join("\n"));
    }
    std::fs::write(out.join("report.md"), md).map_err(|e| e.to_string())?;
    std::fs::write(
        out.join("throughput.svg"),
        throughput_svg(&table, &peer_order),
    )
    .map_err(|e| e.to_string())?;
    std::fs::write(out.join("latency.svg"), latency_svg(&table, &peer_order))
        .map_err(|e| e.to_string())?;
    Ok(())
}

fn best<'a>(rows: &'a BTreeMap<String, Agg>, among: &[&str]) -> Option<(&'a str, &'a Agg)> {
    rows.iter()
        .filter(|(p, _)| among.contains(&p.as_str()))
        .max_by(|a, b| a.1.ops.total_cmp(&b.1.ops))
        .map(|(p, a)| (p.as_str(), a))
}

/// The issue's targets, checked against this run.
fn targets(t: &Table) -> String {
    let mut s = String::from("## Targets\n\n| target | measured | met |\n|---|---|---|\n");
    let get = |w: &str, p: &str| t.get(w).and_then(|r| r.get(p));
    let mut row = |name: &str, measured: String, met: Option<bool>| {
        let m = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(s, "| {name} | {measured} | {m} |");
    };
    if let (Some(rows), Some(c)) = (t.get("get_uniform"), get("get_uniform", "cairn")) {
        if let Some((bp, b)) = best(rows, EMBEDDED) {
            let r = c.ops / b.ops;
            row(
                "Point get ≥ 3× the fastest embedded peer",
                format!(
                    "cairn {} ops/s, {bp} {} ops/s: {r:.2}×",
                    si(c.ops),
                    si(b.ops)
                ),
                Some(r >= 3.0),
            );
        }
        if let Some(h) = get("get_uniform", "limit-hashmap") {
            let r = h.ops / c.ops;
            row(
                "Point get within 2× of HashMap + copy",
                format!(
                    "HashMap {} ops/s, cairn {}: limit is {r:.2}× faster",
                    si(h.ops),
                    si(c.ops)
                ),
                Some(r <= 2.0),
            );
        }
    }
    for w in ["put", "load"] {
        if let (Some(rows), Some(c)) = (t.get(w), get(w, "cairn")) {
            if let Some((bp, b)) = best(rows, EMBEDDED) {
                let r = c.ops / b.ops;
                row(
                    &format!("Non-durable put ({w}) ≥ 2× the fastest embedded peer"),
                    format!("cairn {}, {bp} {}: {r:.2}×", si(c.ops), si(b.ops)),
                    Some(r >= 2.0),
                );
            }
            // The same, among peers whose writes also survive a process crash.
            let equal: Vec<&str> = EMBEDDED
                .iter()
                .copied()
                .filter(|p| rows.get(*p).is_some_and(|a| a.caveat.is_none()))
                .collect();
            if let Some((bp, b)) = best(rows, &equal) {
                let r = c.ops / b.ops;
                row(
                    &format!("… ({w}) against the peers whose writes also survive a process crash"),
                    format!("cairn {}, {bp} {}: {r:.2}×", si(c.ops), si(b.ops)),
                    Some(r >= 2.0),
                );
            }
        }
    }
    if let (Some(c), Some(l)) = (get("durable1", "cairn"), get("durable1", "limit-fdatasync")) {
        let r = c.ops / l.ops;
        row(
            "Durable 1-thread put ≥ 0.9× raw fdatasync rate",
            format!(
                "cairn {}/s, pwrite+fdatasync {}/s: {r:.2}× ({})",
                si(c.ops),
                si(l.ops),
                c.note.clone().unwrap_or_default()
            ),
            Some(r >= 0.9),
        );
    }
    if let (Some(c), Some(l)) = (
        get("durable1_loaded", "cairn"),
        get("durable1_loaded", "limit-fdatasync"),
    ) {
        let r = c.ops / l.ops;
        row(
            "Durable 1-thread put right after a bulk load ≥ 0.9× raw fdatasync rate",
            format!(
                "cairn {}/s, pwrite+fdatasync {}/s: {r:.2}×",
                si(c.ops),
                si(l.ops)
            ),
            Some(r >= 0.9),
        );
    }
    if let (Some(c1), Some(c8)) = (get("durable1", "cairn"), get("durable8", "cairn")) {
        let r = c8.ops / c1.ops;
        row(
            "Durable 8-thread put ≥ 5× cairn's 1-thread rate",
            format!("{}/s vs {}/s: {r:.2}×", si(c8.ops), si(c1.ops)),
            Some(r >= 5.0),
        );
    }
    for w in ["session", "counter"] {
        for peer in ["redis-everysec", "sqlite-normal"] {
            if let (Some(c), Some(p)) = (get(w, "cairn"), get(w, peer)) {
                let r = c.ops / p.ops;
                row(
                    &format!("{w} ≥ 10× {peer}"),
                    format!("cairn {}/s, {peer} {}/s: {r:.1}×", si(c.ops), si(p.ops)),
                    Some(r >= 10.0),
                );
            }
        }
    }
    match (get("open_10m", "cairn"), get("open_10m", "limit-hints")) {
        (Some(c), Some(l)) => {
            let r = c.secs / l.secs;
            row(
                "Open 10M keys ≤ 2× reading the hints + HashMap insert",
                format!("cairn {:.2} s, limit {:.2} s: {r:.2}×", c.secs, l.secs),
                Some(r <= 2.0),
            );
        }
        _ => row(
            "Open 10M keys ≤ 2× reading the hints + HashMap insert",
            "–".into(),
            None,
        ),
    }
    match get("open_10m", "cairn").and_then(|c| c.mem_per_key.map(|m| (m, c))) {
        Some((m, _)) => {
            let over = m - 16.0;
            row(
                "Memory ≤ 64 B per key beyond the 16 key bytes, 10M keys",
                format!("{m:.0} B/key resident after open: {over:.0} B beyond the key"),
                Some(over <= 64.0),
            );
        }
        None => row(
            "Memory ≤ 64 B per key beyond the 16 key bytes, 10M keys",
            "–".into(),
            None,
        ),
    }
    s.push('\n');
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel per workload, a bar per store, each panel on its own linear scale.
fn throughput_svg(t: &Table, order: &[String]) -> String {
    let (w, label_w, bar_h, gap) = (900.0, 170.0, 14.0, 4.0);
    let mut body = String::new();
    let mut y = 30.0;
    for (wl, _) in WORKLOADS {
        let Some(rows) = t.get(*wl) else { continue };
        let time = is_time(wl);
        let vals: Vec<(String, f64)> = order
            .iter()
            .filter_map(|p| {
                rows.get(p).map(|a| {
                    let label = if a.caveat.is_some() {
                        format!("{p} †")
                    } else {
                        p.clone()
                    };
                    (label, if time { a.secs } else { a.ops })
                })
            })
            .collect();
        let max = vals.iter().map(|v| v.1).fold(0.0, f64::max).max(1e-9);
        let unit = if time {
            "seconds (lower is better)"
        } else {
            "ops/s (higher is better)"
        };
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold">{wl}: {unit}</text>"#
        );
        y += 8.0;
        for (p, v) in vals {
            let len = (w - label_w - 90.0) * v / max;
            let color = if p.as_str() == "cairn" {
                "#d9480f"
            } else if p.starts_with("limit") {
                "#868e96"
            } else {
                "#1c7ed6"
            };
            let txt = if time { format!("{v:.3} s") } else { si(v) };
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{label_w}" y="{y}" width="{len:.1}" height="{bar_h}" fill="{color}"/><text x="{}" y="{}">{txt}</text>"#,
                label_w - 6.0,
                y + bar_h - 3.0,
                esc(&p),
                label_w + len + 4.0,
                y + bar_h - 3.0
            );
            y += bar_h + gap;
        }
        y += 22.0;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{y}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>{body}</svg>"#
    )
}

/// p50 / p99 / p999 per store for the single-operation workloads, on a log scale.
fn latency_svg(t: &Table, order: &[String]) -> String {
    let (w, label_w, bar_h) = (900.0, 170.0, 5.0);
    let (lo, hi) = (0.1f64, 100_000.0f64); // µs
    let x = |v: f64| {
        label_w
            + (w - label_w - 30.0) * ((v.max(lo).log10() - lo.log10()) / (hi.log10() - lo.log10()))
    };
    let mut body = String::new();
    let mut y = 30.0;
    // Every single-operation workload, in report order.
    let single = WORKLOADS
        .iter()
        .map(|(w, _)| *w)
        .filter(|w| !is_time(w) && !w.starts_with("load"));
    for wl in single {
        let Some(rows) = t.get(wl) else { continue };
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" font-weight="bold">{wl}: latency per operation, µs, log scale (bars: p50, p99, p999)</text>"#
        );
        y += 8.0;
        let top = y;
        for p in order {
            let Some(a) = rows.get(p) else { continue };
            let _ = writeln!(
                body,
                r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
                label_w - 6.0,
                y + 12.0,
                esc(p)
            );
            for (v, c) in [(a.p50, "#2f9e44"), (a.p99, "#f08c00"), (a.p999, "#e03131")] {
                if let Some(v) = v {
                    let _ = writeln!(
                        body,
                        r#"<rect x="{label_w}" y="{y}" width="{:.1}" height="{bar_h}" fill="{c}"/>"#,
                        x(v) - label_w
                    );
                }
                y += bar_h;
            }
            y += 3.0;
        }
        for tick in [0.1, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0] {
            let _ = writeln!(
                body,
                r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{y}" stroke="#ccc"/><text x="{0:.1}" y="{1}" text-anchor="middle" font-size="10">{tick}</text>"##,
                x(tick),
                y + 10.0
            );
        }
        y += 34.0;
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{y}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>{body}</svg>"#
    )
}
