//! Writing the `COMPACTION` manifest and deleting the segments it names
//! (its format is in `format/manifest.rs`).

use std::io;
use std::path::Path;

use crate::format::manifest::{self, MANIFEST};
use crate::format::names;
use crate::fs::Vfs;

/// Atomically writes the manifest naming `inputs`, and fsyncs the directory.
pub(crate) fn write(vfs: &dyn Vfs, dir: &Path, inputs: &[u32]) -> io::Result<()> {
    let b = manifest::encode(inputs);
    vfs.write_atomic(&dir.join(MANIFEST), names::MANIFEST_TMP_PREFIX, &b)?;
    vfs.sync_dir(dir)
}

/// Deletes the segments (and hints) named by `ids`, then the manifest.
pub(crate) fn delete_inputs(vfs: &dyn Vfs, dir: &Path, ids: &[u32]) -> io::Result<()> {
    for &id in ids {
        for path in [names::hint_path(dir, id), names::segment_path(dir, id)] {
            match vfs.remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    vfs.sync_dir(dir)?;
    match vfs.remove_file(&dir.join(MANIFEST)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    vfs.sync_dir(dir)
}
