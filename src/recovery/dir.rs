//! The store directory: creating it, locking it, listing it, removing
//! stray temporary files, and finding the active segment.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, LockGuard, OpenMode, Vfs};
use crate::options::Options;

/// Creates the store directory if it is missing and the options allow it.
/// An existing directory must be empty or a store (see [`is_store`]),
/// unless the options allow creating a store beside other files.
pub(crate) fn ensure_dir(vfs: &dyn Vfs, dir: &Path, opts: &Options) -> Result<()> {
    if vfs.exists(dir) {
        let entries = vfs.list(dir)?;
        let creating_allowed = opts.create_in_non_empty_dir && !opts.read_only;
        if entries.is_empty() || is_store(&entries) || creating_allowed {
            return Ok(());
        }
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
        });
    }
    if opts.create_if_missing && !opts.read_only {
        crate::fs::create_dir_durably(vfs, dir)?;
        Ok(())
    } else {
        Err(Error::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("store directory {} does not exist", dir.display()),
        )))
    }
}

/// Whether a directory with these entries is a store: it holds a segment,
/// a hint, the compaction manifest or the keyspaces directory, or nothing
/// but cairn's files (a `LOCK` alone is a store that crashed before its
/// first segment was created; a `LOCK` among other files is not enough,
/// as other databases name their lock file so too).
pub(crate) fn is_store(entries: &[String]) -> bool {
    entries.iter().any(|n| names::is_store_evidence(n))
        || entries.iter().all(|n| names::is_store_entry(n))
}

/// Takes the directory lock (shared when read-only; none for a snapshot).
pub(crate) fn lock_dir(vfs: &dyn Vfs, dir: &Path, opts: &Options) -> Result<Option<LockGuard>> {
    let lock_path = dir.join(names::LOCK_FILE);
    if opts.snapshot {
        return Ok(None);
    }
    match vfs.try_lock(&lock_path, opts.read_only)? {
        Some(l) => Ok(Some(l)),
        None => Err(Error::Locked { path: lock_path }),
    }
}

/// Files found in a store directory.
pub(crate) struct Listing {
    /// Every name the directory held.
    pub names: Vec<String>,
    /// Segment ids, ascending.
    pub segments: Vec<u32>,
    /// Ids of the hint files, ascending.
    pub hints: Vec<u32>,
    /// Whether a compaction manifest is there.
    pub manifest: bool,
    /// cairn's temporary files, and hint files whose segment is gone (a
    /// compaction deleted the segment while its hint was being written).
    pub temp_files: Vec<PathBuf>,
}

/// Lists segment and hint ids (ascending), the manifest, and stray files:
/// temporary files and hints without their segment.
pub(crate) fn list_dir(vfs: &dyn Vfs, dir: &Path) -> Result<Listing> {
    let names = vfs.list(dir)?;
    let mut segments = Vec::new();
    let mut hints = Vec::new();
    let mut temp_files = Vec::new();
    for name in &names {
        if names::is_temp_file(name) {
            temp_files.push(dir.join(name));
        } else if let Some((id, suffix)) = names::parse_file_name(name) {
            if suffix == names::SEGMENT_SUFFIX {
                segments.push(id);
            } else if suffix == names::HINT_SUFFIX {
                hints.push(id);
            }
        }
    }
    segments.sort_unstable();
    hints.sort_unstable();
    for &id in &hints {
        if segments.binary_search(&id).is_err() {
            temp_files.push(names::hint_path(dir, id));
        }
    }
    let manifest = names.iter().any(|n| n == crate::format::manifest::MANIFEST);
    Ok(Listing {
        names,
        segments,
        hints,
        manifest,
        temp_files,
    })
}

/// Lists the directory without the segments in `leave_out` and, unless
/// read-only, removes the stray files (temporary files, orphan hints;
/// then syncs the directory if any went). Returns the listing and how many files were removed.
pub(crate) fn list_and_clean(
    vfs: &dyn Vfs,
    dir: &Path,
    leave_out: &[u32],
    read_only: bool,
) -> Result<(Listing, u32)> {
    let mut listing = list_dir(vfs, dir)?;
    listing.segments.retain(|id| !leave_out.contains(id));
    let mut removed = 0;
    if !read_only {
        for t in &listing.temp_files {
            match vfs.remove_file(t) {
                Ok(()) => removed += 1,
                Err(e) => log::warn!("could not remove stray file {}: {e}", t.display()),
            }
        }
        if removed > 0 {
            vfs.sync_dir(dir)?;
        }
    }
    Ok((listing, removed))
}

/// The active segment: the highest-numbered segment that compaction did not
/// write. A segment whose header cannot be read counts as a writer segment
/// (a torn header can only belong to a segment being created by the writer;
/// compaction renames its files into place only once they are complete).
pub(crate) fn find_active(vfs: &dyn Vfs, dir: &Path, ids: &[u32]) -> Option<u32> {
    for &id in ids.iter().rev() {
        let path = names::segment_path(dir, id);
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        let compacted = vfs
            .open(&path, OpenMode::Read)
            .and_then(|f| fs::read_exact_at(&*f, &mut header, 0))
            .ok()
            .and_then(|()| segment::header_info(&path, &header, id).ok())
            .is_some_and(|h| h.compacted);
        if !compacted {
            return Some(id);
        }
    }
    None
}
