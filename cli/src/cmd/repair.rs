//! `cairn repair`: rewrite damaged segments with every record that passes
//! its checksum, after saying what it drops. Each keyspace is repaired as
//! the store of its own that it is.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use cairn::RepairReport;

use crate::common::{check_store, finish, open_error, progress, store_dirs, EXIT_CORRUPTION};

/// Prints the repair plan of the store and of each keyspace, then (unless
/// `dry_run`) repairs. Exit code [`EXIT_CORRUPTION`] when some file cannot
/// be repaired.
pub fn repair(dir: &Path, dry_run: bool, out: &mut impl Write) -> Result<u8> {
    check_store(dir)?;
    // Show what will be dropped before dropping it.
    let mut plans: Vec<(Option<String>, PathBuf, RepairReport)> = Vec::new();
    for (name, path) in store_dirs(dir)? {
        let plan = cairn::repair(&path, true).map_err(|e| open_error(e, &path))?;
        write_plan(&plan, out)?;
        plans.push((name, path, plan));
    }
    let segments: usize = plans.iter().map(|(_, _, p)| p.segments.len()).sum();
    let records: u64 = plans.iter().map(|(_, _, p)| p.records_kept).sum();
    let unrepairable = plans.iter().any(|(_, _, p)| !p.unrepairable.is_empty());
    let checkpoints = plans
        .iter()
        .filter(|(_, _, p)| p.checkpoint_removed)
        .count();
    if unrepairable {
        writeln!(
            out,
            "nothing was changed: move the files that cannot be repaired aside first (a file \
             that is not a segment also decides which segment is the newest), then run \
             `cairn repair` again"
        )?;
    } else if segments == 0 && checkpoints == 0 {
        writeln!(out, "nothing to repair")?;
    } else if dry_run {
        if segments > 0 {
            writeln!(
                out,
                "would rewrite {segments} segments keeping {records} records (dry run: nothing changed)"
            )?;
        } else {
            writeln!(
                out,
                "would delete the index checkpoint (dry run: nothing changed)"
            )?;
        }
    } else {
        out.flush()?;
        let to_do = plans
            .iter()
            .filter(|(_, _, p)| !p.segments.is_empty() || p.checkpoint_removed);
        for (name, path, _) in to_do {
            let pb = progress("repairing");
            let r = cairn::repair(path, false).map_err(|e| open_error(e, path))?;
            finish(pb);
            let which = name
                .as_ref()
                .map_or_else(String::new, |n| format!("keyspace {n}: "));
            if r.checkpoint_removed {
                writeln!(
                    out,
                    "{which}deleted the index checkpoint (the next open rebuilds the index from \
                     hints and segments; the next clean close writes a new one)"
                )?;
            }
            if r.segments.is_empty() {
                continue;
            }
            writeln!(
                out,
                "{which}rewrote {} segments keeping {} records; originals in {}",
                r.segments.len(),
                r.records_kept,
                r.backup
                    .map_or_else(String::new, |b| b.display().to_string())
            )?;
        }
    }
    Ok(if unrepairable { EXIT_CORRUPTION } else { 0 })
}

/// What a repair would drop, or else what it cannot repair (and what to do
/// about that): until those files are moved aside, what it would drop is
/// not known (they change which segment counts as the newest).
fn write_plan(plan: &RepairReport, out: &mut impl Write) -> Result<()> {
    let dropped = if plan.unrepairable.is_empty() {
        &plan.dropped[..]
    } else {
        &[]
    };
    for d in dropped {
        writeln!(
            out,
            "drop: {} at offset {}, {} bytes: {}",
            d.path.display(),
            d.offset,
            d.len,
            d.reason
        )?;
    }
    if plan.checkpoint_removed && plan.unrepairable.is_empty() {
        writeln!(
            out,
            "drop: the index checkpoint (index.ckpt), which differs from the segments or \
             would be stale after the rewrite: open then rebuilds the index from hints and \
             segments, and the next clean close writes a new one"
        )?;
    }
    for (p, why) in &plan.unrepairable {
        writeln!(
            out,
            "cannot repair: {}: {why}. Its header is not a cairn segment header, so none of \
             its records can be checked (it may not be cairn's at all): move the file out of \
             the store directory (keep it for inspection)",
            p.display()
        )?;
    }
    Ok(())
}
