//! Finishing a compaction that stopped after writing its manifest.

use std::io;
use std::path::Path;

use crate::error::{Error, Result};
use crate::format::manifest::{self, MANIFEST};
use crate::fs::Vfs;
use crate::storage;

/// At open: finishes a compaction that stopped after its manifest was
/// written, by deleting the segments it names. Returns whether it did, and
/// (read-only) the segments to leave out instead.
pub(crate) fn finish_interrupted(
    vfs: &dyn Vfs,
    dir: &Path,
    read_only: bool,
) -> Result<(bool, Vec<u32>)> {
    let path = dir.join(MANIFEST);
    let bytes = match vfs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((false, Vec::new())),
        Err(e) => return Err(Error::Io(e)),
    };
    if read_only {
        // A read-only handle may not delete, so it leaves the manifest's
        // segments out instead: the deletion may have been cut short after
        // removing some of them (say, the one holding a tombstone), and
        // loading the rest could bring back what they hid. Their live
        // records are all in the compaction's outputs.
        return Ok((false, manifest::decode(&bytes).unwrap_or_default()));
    }
    match manifest::decode(&bytes) {
        Some(ids) => {
            log::info!(
                "finishing an interrupted compaction: deleting {} old segments",
                ids.len()
            );
            storage::manifest::delete_inputs(vfs, dir, &ids)?;
        }
        None => {
            // It is renamed into place whole, so this is not a crash: with
            // it unreadable, keep every segment (which is always safe).
            log::warn!(
                "ignoring an unreadable compaction manifest {}",
                path.display()
            );
            vfs.remove_file(&path)?;
            vfs.sync_dir(dir)?;
        }
    }
    Ok((true, Vec::new()))
}
