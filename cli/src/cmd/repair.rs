//! `cairn repair`: rewrite damaged segments with every record that passes
//! its checksum, after saying what it drops.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use cairn::RepairReport;

use crate::common::{check_store, finish, open_error, progress, EXIT_CORRUPTION};

/// Prints the repair plan, then (unless `dry_run`) repairs. Exit code
/// [`EXIT_CORRUPTION`] when some file cannot be repaired.
pub fn repair(dir: &Path, dry_run: bool, out: &mut impl Write) -> Result<u8> {
    check_store(dir)?;
    // Show what will be dropped before dropping it.
    let plan = cairn::repair(dir, true).map_err(|e| open_error(e, dir))?;
    write_plan(&plan, out)?;
    if plan.segments.is_empty() {
        writeln!(out, "nothing to repair")?;
    } else if dry_run {
        writeln!(
            out,
            "would rewrite {} segments keeping {} records (dry run: nothing changed)",
            plan.segments.len(),
            plan.records_kept
        )?;
    } else {
        out.flush()?;
        let pb = progress("repairing");
        let r = cairn::repair(dir, false).map_err(|e| open_error(e, dir))?;
        finish(pb);
        writeln!(
            out,
            "rewrote {} segments keeping {} records; originals in {}",
            r.segments.len(),
            r.records_kept,
            r.backup
                .map_or_else(String::new, |b| b.display().to_string())
        )?;
    }
    if plan.unrepairable.is_empty() {
        Ok(0)
    } else {
        Ok(EXIT_CORRUPTION)
    }
}

/// What a repair would drop, and what it cannot repair.
fn write_plan(plan: &RepairReport, out: &mut impl Write) -> Result<()> {
    for d in &plan.dropped {
        writeln!(
            out,
            "drop: {} at offset {}, {} bytes: {}",
            d.path.display(),
            d.offset,
            d.len,
            d.reason
        )?;
    }
    for (p, why) in &plan.unrepairable {
        writeln!(out, "cannot repair: {}: {why}", p.display())?;
    }
    Ok(())
}
