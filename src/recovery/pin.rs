//! A consistent set of a live store's files, for the readers that take no
//! lock (snapshots, `verify`, the inspection tools) while a writer in
//! another process seals segments and compaction deletes them.
//!
//! The directory is listed, every segment file (and hint) listed is opened
//! at once and kept open, the compaction manifest (if any) is read, and the
//! directory is listed again. The set is kept when nothing it depends on
//! changed in between: no listed segment went missing, no compaction
//! manifest appeared or went, and no segment appeared below the newest one
//! listed (a new segment above it is the writer rolling over, or the
//! output of a compaction whose inputs are all held: neither changes the
//! view). Otherwise it starts again after a short sleep, a bounded number
//! of times. Once held, a file stays readable whatever the writer does to
//! its name, so the set is the store as it was at the first listing; only
//! the writer's active segment still grows (readers take it up to the last
//! complete record they read) and is cut back to its last record when the
//! writer seals it (which only removes preallocated zeros).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::manifest::{self, MANIFEST};
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile, Vfs};

/// How many times [`pin`] lists the directory before it gives up.
const ATTEMPTS: u32 = 100;
/// The longest sleep between two attempts (they start at 1 ms and double).
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// One segment file held open, with its hint file when it had one.
pub(crate) struct PinnedSegment {
    pub id: u32,
    pub path: PathBuf,
    pub file: Arc<dyn VFile>,
    pub hint_path: PathBuf,
    /// The hint file (`None`: there was none when the segment was opened).
    pub hint: Option<Arc<dyn VFile>>,
}

impl PinnedSegment {
    /// The segment's bytes (see [`fs::read_to_end`]); errors name the file.
    pub(crate) fn bytes(&self) -> Result<Vec<u8>> {
        fs::read_to_end(&*self.file).map_err(|e| io_at(&self.path, e))
    }

    /// The hint's bytes: `NotFound` when there is no hint.
    pub(crate) fn hint_bytes(&self) -> io::Result<Vec<u8>> {
        match &self.hint {
            Some(h) => fs::read_to_end(&**h),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }
}

/// A consistent set of a store's files, held open.
pub(crate) struct Pinned {
    /// Every segment file listed, by id.
    pub segments: BTreeMap<u32, PinnedSegment>,
    /// The segments named by the manifest of a compaction that is deleting
    /// its inputs (empty when there is none, or it cannot be read).
    pub manifest_inputs: Vec<u32>,
    /// Every name the directory listing held.
    pub names: Vec<String>,
}

impl Pinned {
    /// The active segment: the newest one that compaction did not write
    /// (as `find_active`, through the open files).
    pub(crate) fn find_active(&self) -> Option<u32> {
        self.segments.values().rev().find_map(|s| {
            let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
            let compacted = fs::read_exact_at(&*s.file, &mut header, 0)
                .ok()
                .and_then(|()| segment::header_info(&s.path, &header, s.id).ok())
                .is_some_and(|h| h.compacted);
            (!compacted).then_some(s.id)
        })
    }
}

/// An I/O error that names its file.
pub(crate) fn io_at(path: &Path, e: io::Error) -> Error {
    Error::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Sleeps before attempt `attempt` (1 ms, 2 ms, 4 ms, ... up to
/// [`MAX_BACKOFF`]).
pub(crate) fn back_off(attempt: u32) {
    let ms = 1u64 << attempt.min(6);
    std::thread::sleep(Duration::from_millis(ms).min(MAX_BACKOFF));
}

/// Holds a consistent set of the files of the store in `dir` (see the
/// module documentation).
///
/// # Errors
/// [`Error::Io`] naming the directory or file that could not be read, or
/// when the directory kept changing through every attempt.
pub(crate) fn pin(vfs: &dyn Vfs, dir: &Path) -> Result<Pinned> {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            back_off(attempt);
        }
        if let Some(p) = try_pin(vfs, dir)? {
            return Ok(p);
        }
    }
    Err(Error::Io(io::Error::other(format!(
        "{}: the store's files kept changing while they were listed ({ATTEMPTS} attempts)",
        dir.display()
    ))))
}

/// What a listing says about the files a pinned set depends on.
struct Shape {
    segments: Vec<u32>,
    manifest: bool,
}

fn list(vfs: &dyn Vfs, dir: &Path) -> Result<(Vec<String>, Shape)> {
    let names = vfs.list(dir).map_err(|e| io_at(dir, e))?;
    let mut segments: Vec<u32> = names
        .iter()
        .filter_map(|n| names::parse_file_name(n))
        .filter(|&(_, suffix)| suffix == names::SEGMENT_SUFFIX)
        .map(|(id, _)| id)
        .collect();
    segments.sort_unstable();
    let manifest = names.iter().any(|n| n == MANIFEST);
    Ok((names, Shape { segments, manifest }))
}

/// One attempt: `None` when the directory changed under it.
fn try_pin(vfs: &dyn Vfs, dir: &Path) -> Result<Option<Pinned>> {
    let (names, before) = list(vfs, dir)?;
    let mut segments = BTreeMap::new();
    for &id in &before.segments {
        let path = names::segment_path(dir, id);
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path, e)),
        };
        let hint_path = names::hint_path(dir, id);
        let hint = vfs.open(&hint_path, OpenMode::Read).ok();
        segments.insert(
            id,
            PinnedSegment {
                id,
                path,
                file,
                hint_path,
                hint,
            },
        );
    }
    let mut manifest_inputs = Vec::new();
    if before.manifest {
        let path = dir.join(MANIFEST);
        match vfs.read(&path) {
            // Unreadable: keep every segment, as a read-write open would.
            Ok(b) => manifest_inputs = manifest::decode(&b).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path, e)),
        }
    }
    let (_, after) = list(vfs, dir)?;
    let newest = before.segments.last().copied().unwrap_or(0);
    let stable = after.manifest == before.manifest
        && before
            .segments
            .iter()
            .all(|id| after.segments.binary_search(id).is_ok())
        && after
            .segments
            .iter()
            .all(|id| *id > newest || before.segments.binary_search(id).is_ok());
    Ok(stable.then_some(Pinned {
        segments,
        manifest_inputs,
        names,
    }))
}
