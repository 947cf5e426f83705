//! `cairn backup`: a consistent copy of a store, also while an application
//! has it open and keeps writing.

use std::io::Write;
use std::path::Path;

use anyhow::{anyhow, Result};
use cairn::{Error, Options};

use crate::common::{check_store, finish, progress};

/// Backs up the store in `dir` into `dest`: through the store's own handle
/// when no other process holds it (`Db::backup_to`), lock-free otherwise
/// (`cairn::backup`). Prints what it did.
pub fn backup(dir: &Path, dest: &Path, out: &mut impl Write) -> Result<u8> {
    check_store(dir)?;
    let pb = progress("backing up");
    let opened = Options::new()
        .create_if_missing(false)
        .auto_compact(false)
        .open(dir);
    let (report, live) = match opened {
        Ok(db) => {
            let r = db.backup_to(dest);
            let closed = db.close();
            let report = r.map_err(|e| backup_error(e, dir, dest))?;
            closed
                .map_err(|e| anyhow::Error::new(e).context(format!("closing {}", dir.display())))?;
            (report, false)
        }
        Err(Error::Locked { .. }) => (
            cairn::backup(dir, dest).map_err(|e| backup_error(e, dir, dest))?,
            true,
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("cannot open {}", dir.display())))
        }
    };
    finish(pb);
    writeln!(
        out,
        "backed up {} into {}{}: {} files linked, {} copied ({} bytes), {} keyspaces",
        dir.display(),
        dest.display(),
        if live {
            " (live: another process holds the store)"
        } else {
            ""
        },
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
