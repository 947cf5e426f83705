//! `cairn backup`: a consistent copy of a store, also while an application
//! has it open and keeps writing; the store itself is never changed.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Result};
use cairn::Error;

use crate::common::{check_store, finish, progress};

/// Backs up the store in `dir` into `dest` with the lock-free copy
/// (`cairn::backup`), whether or not another process holds the store: the
/// store is only read, never opened for writing, so nothing in it changes
/// (no recovery runs on it). Prints what it did.
pub fn backup(dir: &Path, dest: &Path, out: &mut impl Write) -> Result<u8> {
    check_store(dir)?;
    let pb = progress("backing up");
    let report = cairn::backup(dir, dest).map_err(|e| backup_error(e, dir, dest))?;
    finish(pb);
    writeln!(
        out,
        "backed up {} into {}: {} files linked, {} copied ({} bytes), {} keyspaces",
        dir.display(),
        dest.display(),
        report.files_linked,
        report.files_copied,
        report.bytes_copied,
        report.keyspaces
    )?;
    Ok(0)
}

/// The error of a failed backup, naming both directories and, when the
/// destination was started, saying what to do with it.
fn backup_error(e: Error, dir: &Path, dest: &Path) -> anyhow::Error {
    if matches!(e, Error::BackupDestination { .. }) {
        return anyhow::Error::new(e);
    }
    let left = if dest.join("BACKUP-INCOMPLETE").exists() {
        format!(
            "; {} holds an incomplete backup: delete it and try again",
            dest.display()
        )
    } else {
        String::new()
    };
    anyhow!(
        "backing up {} into {} failed: {e}{left}",
        dir.display(),
        dest.display()
    )
}
