//! `cairn stats`: sizes per segment, totals and what compaction would
//! reclaim; with keyspaces, a line per keyspace and the totals of all.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use cairn::{
    CheckpointInfo, CheckpointUse, Db, RecordKind, SegmentEntry, SegmentStats, Stats, VerifyReport,
};
use serde_json::{json, Value};

use crate::common::{finish, now_ms, open_read, progress, store_dirs};

/// Record counts of one segment, from reading its file.
#[derive(Default)]
struct SegCounts {
    records: u64,
    tombstones: u64,
    expired: u64,
    damaged: u64,
    min_seq: Option<u64>,
    max_seq: Option<u64>,
}

/// One segment as `stats` shows it.
struct Row {
    seg: SegmentStats,
    counts: SegCounts,
    /// The active segment (or, read-only, the newest one).
    active: bool,
    /// "valid", "invalid", "none", or "n/a" for the active segment.
    hint: &'static str,
}

/// The totals of one keyspace (or of the default one, or of all).
#[derive(Default)]
struct Totals {
    /// `None` for the store's default keyspace.
    name: Option<String>,
    segments: u64,
    live_keys: u64,
    live_bytes: u64,
    dead_bytes: u64,
    disk_bytes: u64,
    reclaim: u64,
}

impl Totals {
    fn of(name: Option<String>, st: &Stats, reclaim: u64) -> Totals {
        Totals {
            name,
            segments: st.segments,
            live_keys: st.live_keys,
            live_bytes: st.live_bytes,
            dead_bytes: st.dead_bytes,
            disk_bytes: st.disk_bytes,
            reclaim,
        }
    }

    fn add(&mut self, o: &Totals) {
        self.segments += o.segments;
        self.live_keys += o.live_keys;
        self.live_bytes += o.live_bytes;
        self.dead_bytes += o.dead_bytes;
        self.disk_bytes += o.disk_bytes;
        self.reclaim += o.reclaim;
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "segments": self.segments,
            "live_keys": self.live_keys,
            "live_bytes": self.live_bytes,
            "dead_bytes": self.dead_bytes,
            "disk_bytes": self.disk_bytes,
            "compaction_reclaimable_bytes": self.reclaim,
        })
    }
}

/// Prints the statistics of the store at `dir` as a table or one JSON
/// object: its segments and totals, then, when it has keyspaces, the
/// totals of each keyspace and of all of them.
pub fn stats(dir: &Path, json: bool, out: &mut impl Write) -> Result<u8> {
    let db = open_read(dir)?;
    let st = db.stats();
    let checkpoint = cairn::checkpoint_info(dir)?;
    let rows = segment_rows(&db, dir)?;
    let reclaim: u64 = rows
        .iter()
        .filter(|r| !r.active)
        .map(|r| r.seg.dead_bytes)
        .sum();
    let mut keyspaces = Vec::new();
    for (name, path) in store_dirs(dir)?.into_iter().skip(1) {
        let ks = open_read(&path)?;
        keyspaces.push(Totals::of(name, &ks.stats(), reclaimable(&ks)));
    }
    let mut total = Totals::of(None, &st, reclaim);
    for k in &keyspaces {
        total.add(k);
    }
    if json {
        write_json(
            &st,
            &rows,
            reclaim,
            out,
            &keyspaces,
            &total,
            checkpoint.as_ref(),
        )?;
    } else {
        write_table(&st, &rows, reclaim, out)?;
        write_checkpoint(checkpoint.as_ref(), out)?;
        if !keyspaces.is_empty() {
            let default = Totals::of(None, &st, reclaim);
            write_keyspaces(&default, &keyspaces, &total, out)?;
        }
    }
    Ok(0)
}

/// The dead bytes of the segments compaction would rewrite: all but the
/// newest (a read-only handle has no active segment; the newest is it).
fn reclaimable(db: &Db) -> u64 {
    let segs = db.segment_stats();
    let newest = segs.last().map(|s| s.id);
    segs.iter()
        .filter(|s| !s.active && Some(s.id) != newest)
        .map(|s| s.dead_bytes)
        .sum()
}

/// One line per keyspace (the default one first), then the totals.
fn write_keyspaces(
    default: &Totals,
    keyspaces: &[Totals],
    total: &Totals,
    out: &mut impl Write,
) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "{:<20}  {:>8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}",
        "keyspace", "segments", "keys", "live", "dead", "files", "reclaimable"
    )?;
    let named = keyspaces
        .iter()
        .map(|k| (k.name.as_deref().unwrap_or_default(), k));
    let lines = std::iter::once(("(default)", default))
        .chain(named)
        .chain(std::iter::once(("total", total)));
    for (name, t) in lines {
        writeln!(
            out,
            "{name:<20}  {:>8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>11}",
            t.segments,
            t.live_keys,
            human(t.live_bytes),
            human(t.dead_bytes),
            human(t.disk_bytes),
            human(t.reclaim)
        )?;
    }
    Ok(())
}

/// Every segment with its counts (from reading its file) and hint state.
fn segment_rows(db: &Db, dir: &Path) -> Result<Vec<Row>> {
    let segs = db.segment_stats();
    // Hint state per segment, from a quick verification (headers and
    // hints only).
    let check = cairn::verify(dir, true)?;
    // A read-only handle has no active segment; the newest one is it.
    let newest = segs.last().map(|s| s.id);
    let pb = progress("reading segments");
    let now = now_ms();
    let mut counts = Vec::with_capacity(segs.len());
    for s in &segs {
        // Through the snapshot's own open file: the writer's compaction
        // may have deleted the file since the snapshot opened.
        let entries = match db.read_segment(s.id) {
            Some(r) => r?,
            None => Vec::new(),
        };
        counts.push(seg_counts(entries, now));
    }
    finish(pb);
    Ok(segs
        .into_iter()
        .zip(counts)
        .map(|(seg, counts)| {
            let active = seg.active || Some(seg.id) == newest;
            let hint = if active {
                "n/a"
            } else {
                hint_state(&check, dir, seg.id)
            };
            Row {
                seg,
                counts,
                active,
                hint,
            }
        })
        .collect())
}

/// Whether segment `id` has a valid hint file, by the quick verification.
fn hint_state(check: &VerifyReport, dir: &Path, id: u32) -> &'static str {
    let hint = cairn::hint_path(dir, id);
    match check.problems.iter().find(|p| p.path == hint) {
        Some(p) if p.kind == cairn::ProblemKind::HintMissing => "none",
        Some(_) => "invalid",
        None if hint.exists() => "valid",
        None => "none",
    }
}

/// Counts the records among a segment's `entries` (expired as of `now`).
fn seg_counts(entries: Vec<SegmentEntry>, now: u64) -> SegCounts {
    let mut c = SegCounts::default();
    for e in entries {
        match e {
            SegmentEntry::Record {
                kind,
                seq,
                expires_at_ms,
                ..
            } => {
                match kind {
                    RecordKind::Put => {
                        c.records += 1;
                        if expires_at_ms != 0 && expires_at_ms <= now {
                            c.expired += 1;
                        }
                    }
                    RecordKind::Tombstone => {
                        c.records += 1;
                        c.tombstones += 1;
                    }
                    _ => {}
                }
                if kind != RecordKind::SyncMark {
                    c.min_seq = Some(c.min_seq.map_or(seq, |m| m.min(seq)));
                    c.max_seq = Some(c.max_seq.map_or(seq, |m| m.max(seq)));
                }
            }
            SegmentEntry::Damaged { .. } => c.damaged += 1,
            _ => {}
        }
    }
    c
}

/// Bytes of live records: the segment less its 32-byte header and its dead
/// records.
fn live_bytes(s: &SegmentStats) -> u64 {
    s.bytes.saturating_sub(32 + s.dead_bytes)
}

/// The index checkpoint's line of the table: its size, age and keys, and
/// whether an open now would use it.
fn write_checkpoint(c: Option<&CheckpointInfo>, out: &mut impl Write) -> Result<()> {
    let Some(c) = c else {
        writeln!(
            out,
            "index checkpoint       none (the next clean close writes one)"
        )?;
        return Ok(());
    };
    let age = c.written_at_ms.map_or_else(
        || "age unknown".to_string(),
        |w| format!("written {} s ago", now_ms().saturating_sub(w) / 1000),
    );
    let keys = c.keys.map_or_else(String::new, |k| format!(", {k} keys"));
    let usable = if c.usable == CheckpointUse::Used {
        "an open now uses it".to_string()
    } else {
        format!("an open now ignores it: {}", c.usable.name())
    };
    writeln!(
        out,
        "index checkpoint       {}, {age}{keys}; {usable}",
        human(c.bytes)
    )?;
    Ok(())
}

/// The index checkpoint as JSON (`null` when there is none).
fn checkpoint_json(c: Option<&CheckpointInfo>) -> Value {
    c.map_or(Value::Null, |c| {
        json!({
            "bytes": c.bytes,
            "written_at_ms": c.written_at_ms,
            "keys": c.keys,
            "open_uses_it": c.usable == CheckpointUse::Used,
            "state": c.usable.name(),
        })
    })
}

/// The statistics as one JSON object: the default keyspace's at the top
/// level, each keyspace's totals in `keyspaces`, all of them in `total`.
fn write_json(
    st: &Stats,
    rows: &[Row],
    reclaim: u64,
    out: &mut impl Write,
    keyspaces: &[Totals],
    total: &Totals,
    checkpoint: Option<&CheckpointInfo>,
) -> Result<()> {
    let segments: Vec<Value> = rows
        .iter()
        .map(|r| {
            let (s, c) = (&r.seg, &r.counts);
            json!({
                "id": s.id,
                "bytes": s.bytes,
                "live_bytes": live_bytes(s),
                "dead_bytes": s.dead_bytes,
                "records": c.records,
                "tombstones": c.tombstones,
                "expired": c.expired,
                "damaged_ranges": c.damaged,
                "min_seq": c.min_seq,
                "max_seq": c.max_seq,
                "active": r.active,
                "hint": r.hint,
            })
        })
        .collect();
    let mut total_json = total.json();
    if let Some(o) = total_json.as_object_mut() {
        o.remove("name");
    }
    let v = json!({
        "segments": segments,
        "live_keys": st.live_keys,
        "live_bytes": st.live_bytes,
        "dead_bytes": st.dead_bytes,
        "disk_bytes": st.disk_bytes,
        "compaction_reclaimable_bytes": reclaim,
        "keydir_memory_bytes": st.keydir_memory_bytes,
        "index_checkpoint": checkpoint_json(checkpoint),
        "keyspaces": keyspaces.iter().map(Totals::json).collect::<Vec<_>>(),
        "total": total_json,
    });
    writeln!(out, "{v}")?;
    Ok(())
}

/// The statistics as a table of segments, then the totals.
fn write_table(st: &Stats, rows: &[Row], reclaim: u64, out: &mut impl Write) -> Result<()> {
    writeln!(
        out,
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>5}  {:>8}  {:>7}  {:>7}  {:>13}  notes",
        "segment", "size", "live", "dead", "dead", "records", "tombst.", "expired", "sequences"
    )?;
    for r in rows {
        write_row(r, out)?;
    }
    writeln!(out)?;
    writeln!(out, "live keys              {}", st.live_keys)?;
    writeln!(out, "live data              {}", human(st.live_bytes))?;
    writeln!(out, "dead data              {}", human(st.dead_bytes))?;
    writeln!(out, "segment files          {}", human(st.disk_bytes))?;
    writeln!(out, "compaction would free  about {}", human(reclaim))?;
    writeln!(
        out,
        "index memory (est.)    {}",
        human(st.keydir_memory_bytes)
    )?;
    Ok(())
}

/// One segment's line of the table.
fn write_row(r: &Row, out: &mut impl Write) -> Result<()> {
    let (s, c) = (&r.seg, &r.counts);
    let data = s.bytes.saturating_sub(32).max(1);
    let mut notes = Vec::new();
    if r.active {
        notes.push("active".to_string());
    } else {
        notes.push(format!("hint {}", r.hint));
    }
    if c.damaged > 0 {
        notes.push(format!("{} damaged ranges", c.damaged));
    }
    let seqs = match (c.min_seq, c.max_seq) {
        (Some(a), Some(b)) => format!("{a}..{b}"),
        _ => "-".to_string(),
    };
    writeln!(
        out,
        "{:>7}  {:>9}  {:>9}  {:>9}  {:>4.0}%  {:>8}  {:>7}  {:>7}  {:>13}  {}",
        s.id,
        human(s.bytes),
        human(live_bytes(s)),
        human(s.dead_bytes),
        100.0 * s.dead_bytes as f64 / data as f64,
        c.records,
        c.tombstones,
        c.expired,
        seqs,
        notes.join(", ")
    )?;
    Ok(())
}

/// A byte count for people: `126 B`, `4.0 KiB`, `63.9 MiB`, `1.2 GiB`.
fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}
