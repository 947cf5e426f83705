//! Turns the `results.jsonl` of `cairn-compare scale` into `scale.md` (tables)
//! and `open_time.svg` (open time against key count, log–log, one line per
//! store, after a clean close and after kill -9).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::report::{median, read_results};
use crate::result::RunResult;

/// Stores in report order; others follow in the order they appear.
const ORDER: &[&str] = &[
    "cairn",
    "lmdb",
    "redb",
    "fjall",
    "rocksdb",
    "limit-hints",
    "limit-seqread",
];

/// Bytes of key and value in one put of the write phase.
const PUT_BYTES: f64 = 16.0 + crate::workload::VALUE_BYTES as f64;

/// The two opens, with their titles.
const OPENS: &[(&str, &str)] = &[
    ("scale_open_clean", "after a clean close"),
    ("scale_open_kill", "after kill -9 under write load"),
];

fn med(rs: &[&RunResult], f: impl Fn(&RunResult) -> Option<f64>) -> Option<f64> {
    median(rs.iter().filter_map(|r| f(r)).collect())
}

fn keys_label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn secs_label(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.001 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// An axis label for a power of ten seconds.
fn tick_label(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.0} s")
    } else if s >= 1e-3 {
        format!("{:.0} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

fn mb(b: f64) -> String {
    format!("{:.1} MB", b / 1e6)
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "–".into(), f)
}

/// Successful results by (workload, keys, peer).
type Groups<'a> = BTreeMap<(String, u64, String), Vec<&'a RunResult>>;

/// Writes `scale.md` and `open_time.svg` into `out`.
pub fn write(results: &Path, out: &Path) -> Result<(), String> {
    let all = read_results(results)?;
    let mut groups: Groups = BTreeMap::new();
    let mut failed: Vec<&RunResult> = Vec::new();
    let mut peers: Vec<String> = ORDER.iter().map(|s| s.to_string()).collect();
    let mut keys: Vec<u64> = Vec::new();
    for r in &all {
        if !peers.contains(&r.peer) {
            peers.push(r.peer.clone());
        }
        if !keys.contains(&r.keys) {
            keys.push(r.keys);
        }
        if r.error.is_some() {
            failed.push(r);
        } else {
            groups
                .entry((r.workload.clone(), r.keys, r.peer.clone()))
                .or_default()
                .push(r);
        }
    }
    keys.sort_unstable();
    peers.retain(|p| all.iter().any(|r| &r.peer == p));
    let mut md = String::from("# Open time and memory by key count (cairn-compare scale)\n\n");
    let machine = std::fs::read_to_string(out.join("machine.md")).unwrap_or_default();
    let command = std::fs::read_to_string(out.join("command.txt")).unwrap_or_default();
    let _ = writeln!(md, "## Machine\n\n{machine}\n\nCommand: `{command}`\n");
    let opens: Vec<&RunResult> = all
        .iter()
        .filter(|r| r.error.is_none() && r.workload.starts_with("scale_open"))
        .collect();
    let warm = opens
        .iter()
        .filter(|r| r.cache_dropped == Some(false))
        .count();
    if warm == 0 {
        md.push_str("The page cache was dropped (`sync; echo 3 > /proc/sys/vm/drop_caches`) before every open.\n\n");
    } else {
        let _ = writeln!(md, "**The page cache was not dropped before {warm} of {} opens** (`--keep-page-cache`, or not root): those figures, marked ‡, are of a warm cache.\n", opens.len());
    }
    md.push_str("Keys are 16 bytes, values 100 bytes. Open time is from the call to open until the first get (of key 0) returns, in a fresh process; min, median and max over the repetitions. MB/s is the store's size on disk divided by the median open time (how fast the open would have to read to read it all). Memory/key is the resident memory the process gained from just before the open to just after that first get, divided by the keys (for mapped files: the pages touched). Peak RSS is the process's high-water mark.\n\n");
    load_table(&mut md, &groups, &failed, &keys, &peers);
    for (w, title) in OPENS {
        open_table(&mut md, &groups, w, title, &keys, &peers);
    }
    cold_gets_table(&mut md, &groups, &keys, &peers);
    settings(&mut md, &groups, &peers);
    if !failed.is_empty() {
        md.push_str("### Runs that failed or did not finish\n\n");
        for r in &failed {
            let _ = writeln!(
                md,
                "- {} keys, {} / {} (rep {}): {}",
                keys_label(r.keys),
                r.workload,
                r.peer,
                r.rep,
                r.error.clone().unwrap_or_default()
            );
        }
        md.push('\n');
    }
    md.push_str("The plot: `open_time.svg` (median open time against key count, log–log; bars from min to max).\n");
    std::fs::write(out.join("scale.md"), md).map_err(|e| e.to_string())?;
    // The smallest key count whose load did not finish, per store.
    let mut dnf: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &failed {
        if r.workload == "scale_load"
            && r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("did not finish"))
        {
            let at = dnf.entry(r.peer.as_str()).or_insert(r.keys);
            *at = (*at).min(r.keys);
        }
    }
    std::fs::write(
        out.join("open_time.svg"),
        svg(&groups, &keys, &peers, &dnf, warm == 0),
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn load_table(md: &mut String, g: &Groups, failed: &[&RunResult], keys: &[u64], peers: &[String]) {
    md.push_str("### Load\n\nBulk load in a child process: batches of 1000 keys, one transaction each, no fsync per batch, one sync at the end, then a clean close (not timed).\n\n| keys | store | load time | keys/s | size on disk | peak RSS |\n|---|---|---:|---:|---:|---:|\n");
    for &n in keys {
        for p in peers {
            if let Some(rs) = g.get(&("scale_load".into(), n, p.clone())) {
                let _ = writeln!(
                    md,
                    "| {} | {p} | {} | {} | {} | {} |",
                    keys_label(n),
                    opt(med(rs, |r| Some(r.secs)), secs_label),
                    opt(med(rs, |r| Some(r.ops_per_sec)), |x| format!("{x:.0}")),
                    opt(med(rs, |r| r.disk_bytes.map(|d| d as f64)), mb),
                    opt(med(rs, |r| Some(r.peak_rss_bytes as f64)), mb),
                );
            } else if let Some(r) = failed
                .iter()
                .find(|r| r.workload == "scale_load" && r.keys == n && &r.peer == p)
            {
                let what = if r
                    .error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("did not finish"))
                {
                    "did not finish"
                } else {
                    "failed"
                };
                let _ = writeln!(md, "| {} | {p} | {what} | | | |", keys_label(n));
            }
        }
    }
    md.push('\n');
}

fn open_table(md: &mut String, g: &Groups, w: &str, title: &str, keys: &[u64], peers: &[String]) {
    let kill = w == "scale_open_kill";
    let _ = writeln!(md, "### Open {title}\n");
    if kill {
        md.push_str("Before each open a child process opened the store, overwrote random loaded keys from one thread at full speed for the write phase (durability: the peer's periodic mode, see Settings), and was killed with SIGKILL. \"Put before the kill\" is the keys and values it wrote in that phase (puts × 116 bytes, median; the puts are counted every 50 ms, so up to 50 ms of them may be missing); \"handed to write(2)\" is what the process passed to the OS meanwhile (`wchar` of /proc/<pid>/io: log records plus whatever else the store writes then: hints, compaction, pages of a B-tree; not all of it reaches the disk). cairn writes index checkpoints during the phase; what its open replayed after the newest one is listed below the table.\n\n");
        md.push_str("| keys | store | open (median) | min | max | put before the kill (keys + values) | handed to write(2) | puts/s | size on disk | MB/s | memory/key | peak RSS | runs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    } else {
        md.push_str("| keys | store | open (median) | min | max | size on disk | MB/s | memory/key | peak RSS | runs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    }
    for &n in keys {
        for p in peers {
            let Some(rs) = g.get(&(w.to_string(), n, p.clone())) else {
                continue;
            };
            let secs: Vec<f64> = rs.iter().map(|r| r.secs).collect();
            let m = median(secs.clone()).unwrap_or(0.0);
            let lo = secs.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = secs.iter().copied().fold(0.0, f64::max);
            let size = med(rs, |r| r.disk_bytes.map(|d| d as f64));
            let rate = size.map(|s| s / 1e6 / m.max(1e-9));
            let warm = if rs.iter().any(|r| r.cache_dropped == Some(false)) {
                " ‡"
            } else {
                ""
            };
            let mut row = format!(
                "| {} | {p}{warm} | {} | {} | {} |",
                keys_label(n),
                secs_label(m),
                secs_label(lo),
                secs_label(hi)
            );
            if kill {
                let wr = g.get(&("scale_kill_write".into(), n, p.clone()));
                let _ = write!(
                    row,
                    " {} | {} | {} |",
                    opt(
                        wr.and_then(|w| med(w, |r| Some(r.ops as f64 * PUT_BYTES))),
                        mb
                    ),
                    opt(med(rs, |r| r.written_bytes.map(|b| b as f64)), mb),
                    opt(wr.and_then(|w| med(w, |r| Some(r.ops_per_sec))), |x| {
                        format!("{x:.0}")
                    })
                );
            }
            let _ = writeln!(
                row,
                " {} | {} | {} | {} | {} |",
                opt(size, mb),
                opt(rate, |x| format!("{x:.0}")),
                opt(med(rs, |r| r.mem_per_key), |x| format!("{x:.1} B")),
                opt(med(rs, |r| Some(r.peak_rss_bytes as f64)), mb),
                rs.len()
            );
            md.push_str(&row);
        }
    }
    md.push('\n');
    open_notes(md, g, w, keys, peers);
}

/// The first gets after a cold open, per store, and the time reading the
/// whole cairn store takes (`limit-seqread`, when run) for scale.
fn cold_gets_table(md: &mut String, g: &Groups, keys: &[u64], peers: &[String]) {
    let w = "scale_cold_gets";
    if !g.keys().any(|(k, _, _)| k == w) {
        return;
    }
    md.push_str("### The first gets after a cold open\n\n");
    let _ = write!(
        md,
        "The page cache dropped, a fresh process opens the store and times each of its first {} gets (uniform random keys, the value copied out), one at a time: what a store serves right after a reboot. The mean is the wall time of all of them divided by their number; min–max over the repetitions.\n\n",
        crate::workload::COLD_GETS
    );
    md.push_str("| keys | store | mean (median) | min | max | p50 | p99 | all of them took | runs |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let us = |x: f64| format!("{x:.2} µs");
    for &n in keys {
        for p in peers {
            let Some(rs) = g.get(&(w.to_string(), n, p.clone())) else {
                continue;
            };
            let means: Vec<f64> = rs
                .iter()
                .map(|r| r.secs * 1e6 / (r.ops.max(1) as f64))
                .collect();
            let lo = means.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = means.iter().copied().fold(0.0, f64::max);
            let _ = writeln!(
                md,
                "| {} | {p} | {} | {} | {} | {} | {} | {} | {} |",
                keys_label(n),
                opt(median(means.clone()), us),
                us(lo),
                us(hi),
                opt(med(rs, |r| r.p50_us), us),
                opt(med(rs, |r| r.p99_us), us),
                opt(med(rs, |r| Some(r.secs)), secs_label),
                rs.len()
            );
        }
        if let Some(rs) = g.get(&("scale_open_clean".to_string(), n, "limit-seqread".into())) {
            let _ = writeln!(
                md,
                "| {} | reading cairn's whole store (limit-seqread) | | | | | | {} | {} |",
                keys_label(n),
                opt(med(rs, |r| Some(r.secs)), secs_label),
                rs.len()
            );
        }
    }
    md.push('\n');
}

/// What the stores said of each open (cairn: its index checkpoint, and
/// the log it replayed after it), one line per run.
fn open_notes(md: &mut String, g: &Groups, w: &str, keys: &[u64], peers: &[String]) {
    let mut lines = Vec::new();
    for &n in keys {
        for p in peers {
            for r in g.get(&(w.to_string(), n, p.clone())).into_iter().flatten() {
                if let Some(note) = &r.note {
                    lines.push(format!(
                        "- {} {p}, run {}: {} in {}",
                        keys_label(n),
                        r.rep,
                        note,
                        secs_label(r.secs)
                    ));
                }
            }
        }
    }
    if !lines.is_empty() {
        md.push_str("How each open went, as the store reports it:\n\n");
        md.push_str(&lines.join("\n"));
        md.push_str("\n\n");
    }
}

fn settings(md: &mut String, g: &Groups, peers: &[String]) {
    md.push_str("### Settings\n\n| store | phase | settings |\n|---|---|---|\n");
    for p in peers {
        for (w, phase) in [
            ("scale_load", "load"),
            ("scale_kill_write", "write phase before kill -9"),
            ("scale_open_clean", "open"),
        ] {
            if let Some(r) = g
                .iter()
                .find(|((gw, _, gp), _)| gw == w && gp == p)
                .and_then(|(_, rs)| rs.first())
            {
                let _ = writeln!(md, "| {p} | {phase} | {} |", r.settings);
            }
        }
    }
    md.push('\n');
}

const COLORS: &[&str] = &[
    "#d9480f", "#1c7ed6", "#2f9e44", "#9c36b5", "#f08c00", "#868e96", "#495057", "#0c8599",
];

fn color(peers: &[String], p: &str) -> &'static str {
    let i = peers.iter().position(|q| q == p).unwrap_or(0);
    COLORS[i % COLORS.len()]
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One point of a line: keys, median, min and max seconds.
type Point = (f64, f64, f64, f64);

/// Two log–log panels (clean, kill -9) sharing one time axis.
fn svg(
    g: &Groups,
    keys: &[u64],
    peers: &[String],
    dnf: &BTreeMap<&str, u64>,
    dropped: bool,
) -> String {
    // (workload, peer) -> [(keys, median, min, max)]
    let mut lines: BTreeMap<(&str, &str), Vec<Point>> = BTreeMap::new();
    let (mut tmin, mut tmax) = (f64::INFINITY, 0.0f64);
    for (w, _) in OPENS {
        for p in peers {
            for &n in keys {
                let Some(rs) = g.get(&(w.to_string(), n, p.clone())) else {
                    continue;
                };
                let secs: Vec<f64> = rs.iter().map(|r| r.secs.max(1e-6)).collect();
                let m = median(secs.clone()).unwrap_or(1e-6);
                let lo = secs.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = secs.iter().copied().fold(0.0, f64::max);
                tmin = tmin.min(lo);
                tmax = tmax.max(hi);
                lines
                    .entry((w, p.as_str()))
                    .or_default()
                    .push((n as f64, m, lo, hi));
            }
        }
    }
    if lines.is_empty() {
        (tmin, tmax) = (1e-3, 1.0);
    }
    let kmin = keys.first().copied().unwrap_or(1) as f64;
    let kmax = keys.last().copied().unwrap_or(10) as f64;
    let (x0, x1) = (
        kmin.max(1.0).log10().floor(),
        kmax.max(1.0)
            .log10()
            .ceil()
            .max(kmin.max(1.0).log10().floor() + 1.0),
    );
    let (y0, y1) = (
        tmin.log10().floor(),
        tmax.log10().ceil().max(tmin.log10().floor() + 1.0),
    );
    let (pw, ph, left, top, gap) = (420.0, 320.0, 70.0, 70.0, 90.0);
    let width = left + 2.0 * pw + gap + 30.0;
    let legend_h = 20.0 * peers.len() as f64;
    let height = top + ph + 60.0 + legend_h;
    let mut b = String::new();
    let _ = writeln!(
        b,
        r#"<text x="{}" y="24" font-size="15" font-weight="bold" text-anchor="middle">Open time against keys (16-byte keys, 100-byte values; {}; median, bars min–max)</text>"#,
        width / 2.0,
        if dropped {
            "page cache dropped"
        } else {
            "page cache NOT always dropped: see scale.md"
        }
    );
    for (i, (w, title)) in OPENS.iter().enumerate() {
        let px = left + i as f64 * (pw + gap);
        let x = |k: f64| px + pw * (k.log10() - x0) / (x1 - x0);
        let y = |s: f64| top + ph - ph * (s.log10() - y0) / (y1 - y0);
        let _ = writeln!(
            b,
            r##"<text x="{}" y="{}" font-weight="bold" text-anchor="middle">open {}</text><rect x="{px}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>"##,
            px + pw / 2.0,
            top - 10.0,
            esc(title)
        );
        let mut e = x0;
        while e <= x1 + 1e-9 {
            let k = 10f64.powf(e);
            let _ = writeln!(
                b,
                r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1}" stroke="#ddd"/><text x="{0:.1}" y="{2}" text-anchor="middle" font-size="11">{3}</text>"##,
                x(k),
                top + ph,
                top + ph + 16.0,
                keys_label(k.round() as u64)
            );
            e += 1.0;
        }
        let mut e = y0;
        while e <= y1 + 1e-9 {
            let s = 10f64.powf(e);
            let _ = writeln!(
                b,
                r##"<line x1="{px}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#ddd"/><text x="{2}" y="{3:.1}" text-anchor="end" font-size="11">{4}</text>"##,
                y(s),
                px + pw,
                px - 5.0,
                y(s) + 4.0,
                tick_label(s)
            );
            e += 1.0;
        }
        let _ = writeln!(
            b,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">keys</text>"#,
            px + pw / 2.0,
            top + ph + 34.0
        );
        for p in peers {
            let Some(pts) = lines.get(&(*w, p.as_str())) else {
                continue;
            };
            let c = color(peers, p);
            let path: Vec<String> = pts
                .iter()
                .map(|(k, m, _, _)| format!("{:.1},{:.1}", x(*k), y(*m)))
                .collect();
            let _ = writeln!(
                b,
                r#"<polyline points="{}" fill="none" stroke="{c}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for (k, m, lo, hi) in pts {
                let _ = writeln!(
                    b,
                    r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{c}"/><circle cx="{0:.1}" cy="{3:.1}" r="3.5" fill="{c}"><title>{4}: {5} keys, {6}</title></circle>"#,
                    x(*k),
                    y(*lo),
                    y(*hi),
                    y(*m),
                    esc(p),
                    keys_label(*k as u64),
                    secs_label(*m)
                );
            }
        }
    }
    let ly = top + ph + 56.0;
    for (i, p) in peers.iter().enumerate() {
        let yy = ly + 20.0 * i as f64;
        let _ = writeln!(
            b,
            r#"<line x1="{left}" y1="{yy}" x2="{}" y2="{yy}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            left + 24.0,
            color(peers, p),
            left + 30.0,
            yy + 4.0,
            esc(&match dnf.get(p.as_str()) {
                Some(n) => format!(
                    "{p} (its load of {} keys did not finish within --max-load-secs)",
                    keys_label(*n)
                ),
                None => p.clone(),
            })
        );
    }
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>
{b}</svg>
"#
    )
}
