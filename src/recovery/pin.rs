//! A consistent set of a live store's files, for the readers that take no
//! lock (snapshots, `verify`, the inspection tools) while a writer in
//! another process seals segments and compaction deletes them.
//!
//! The directory is listed, every segment file listed is opened at once
//! and kept open (the segments below the active one are memory-mapped
//! instead, when maps are on: a map keeps the file as well, and takes no
//! file descriptor), the compaction manifest (if any) is read, and the
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

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::manifest::{self, MANIFEST};
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::mmap::Map;
use crate::fs::{self, OpenMode, VFile, Vfs};
use crate::storage::segment::Segment;

/// How many times [`pin`] lists the directory before it gives up.
const ATTEMPTS: u32 = 100;
/// The longest sleep between two attempts (they start at 1 ms and double).
const MAX_BACKOFF: Duration = Duration::from_millis(50);

/// How a pinned segment is held.
enum Held {
    /// Open, read with `pread` (the active segment, which the writer may
    /// still cut short, and any segment when maps are off).
    File(Arc<dyn VFile>),
    /// Mapped: a segment below the active one, which no cairn process
    /// writes or cuts short again (see `fs/mmap.rs`).
    Mapped(Map),
}

/// One segment file held open.
pub(crate) struct PinnedSegment {
    pub id: u32,
    pub path: PathBuf,
    held: Held,
    /// Its hint file's path. Hints are read by name: one that is gone (its
    /// segment was compacted away meanwhile) only means a scan of the held
    /// segment instead.
    pub hint_path: PathBuf,
}

impl PinnedSegment {
    /// The segment's bytes: the map, or the file read up to the length it
    /// has when the read starts (see [`fs::read_to_end`]). Errors name the
    /// file.
    pub(crate) fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        match &self.held {
            Held::Mapped(m) => Ok(Cow::Borrowed(m.bytes())),
            Held::File(f) => fs::read_to_end(&**f)
                .map(Cow::Owned)
                .map_err(|e| io_at(&self.path, e)),
        }
    }

    /// The segment file's length. Errors name the file.
    pub(crate) fn len(&self) -> Result<u64> {
        match &self.held {
            Held::Mapped(m) => Ok(m.bytes().len() as u64),
            Held::File(f) => f.len().map_err(|e| io_at(&self.path, e)),
        }
    }

    /// The segment's header bytes (`None`: the file is shorter).
    pub(crate) fn header(&self) -> Option<[u8; SEGMENT_HEADER_LEN as usize]> {
        let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
        match &self.held {
            Held::Mapped(m) => {
                header.copy_from_slice(m.bytes().get(..SEGMENT_HEADER_LEN as usize)?)
            }
            Held::File(f) => fs::read_exact_at(&**f, &mut header, 0).ok()?,
        }
        Some(header)
    }

    /// The hint's bytes, read by name (`NotFound`: there is none).
    pub(crate) fn hint_bytes(&self, vfs: &dyn Vfs) -> io::Result<Vec<u8>> {
        vfs.read(&self.hint_path)
    }

    /// The open file, unless the segment is mapped.
    pub(crate) fn file(&self) -> Option<Arc<dyn VFile>> {
        match &self.held {
            Held::File(f) => Some(f.clone()),
            Held::Mapped(_) => None,
        }
    }

    /// A reader of the segment, through what is held (its salt from its
    /// header).
    pub(crate) fn into_segment(self, salt: u32) -> Segment {
        match self.held {
            Held::Mapped(m) => Segment::with_map(self.path, m, salt),
            Held::File(f) => Segment::with_file(self.path, f, salt),
        }
    }

    /// Whether the header says compaction wrote the segment (`false` when
    /// it cannot be read: a segment being created belongs to the writer).
    fn compacted(&self) -> bool {
        self.header()
            .and_then(|h| segment::header_info(&self.path, &h, self.id).ok())
            .is_some_and(|h| h.compacted)
    }
}

/// A consistent set of a store's files, held open.
pub(crate) struct Pinned {
    /// Every segment file listed, by id.
    pub segments: BTreeMap<u32, PinnedSegment>,
    /// The segments named by the manifest of a compaction that is deleting
    /// its inputs (empty when there is none, or it cannot be read).
    pub manifest_inputs: Vec<u32>,
    /// The directory listing the set was taken from.
    pub listing: super::dir::Listing,
}

impl Pinned {
    /// The active segment: the newest one that compaction did not write
    /// (as `find_active`, through the open files).
    pub(crate) fn find_active(&self) -> Option<u32> {
        self.segments
            .values()
            .rev()
            .find(|s| !s.compacted())
            .map(|s| s.id)
    }
}

/// An I/O error that names its file.
pub(crate) fn io_at(path: &Path, e: io::Error) -> Error {
    Error::Io(fs::named(path, &e))
}

/// Sleeps before attempt `attempt` (counted from 1: 1 ms, 2 ms, 4 ms, ...
/// up to [`MAX_BACKOFF`]; [`ATTEMPTS`] of them take about 5 s in all).
pub(crate) fn back_off(attempt: u32) {
    let ms = 1u64 << attempt.saturating_sub(1).min(6);
    std::thread::sleep(Duration::from_millis(ms).min(MAX_BACKOFF));
}

/// Holds a consistent set of the files of the store in `dir` (see the
/// module documentation); `map` maps the segments below the active one.
///
/// # Errors
/// [`Error::Io`] naming the directory or file that could not be read, or
/// when the directory kept changing through every attempt.
pub(crate) fn pin(vfs: &dyn Vfs, dir: &Path, map: bool) -> Result<Pinned> {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            back_off(attempt);
        }
        if let Some(p) = try_pin(vfs, dir, map)? {
            return Ok(p);
        }
    }
    Err(Error::Io(io::Error::other(format!(
        "{}: the store's files kept changing while they were listed ({ATTEMPTS} attempts)",
        dir.display()
    ))))
}

/// One attempt: `None` when the directory changed under it.
fn try_pin(vfs: &dyn Vfs, dir: &Path, map: bool) -> Result<Option<Pinned>> {
    let before = super::dir::list_dir(vfs, dir)?;
    let mut segments = BTreeMap::new();
    // Newest first: once the active segment is found, those below it are
    // sealed and may be mapped.
    let mut below_active = false;
    for &id in before.segments.iter().rev() {
        let path = names::segment_path(dir, id);
        let file = match vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_at(&path, e)),
        };
        let held = match file.as_std() {
            Some(f) if map && below_active && f.metadata().is_ok_and(|m| m.len() > 0) => {
                Map::sealed_segment(f).map_or_else(|_| Held::File(file.clone()), Held::Mapped)
            }
            _ => Held::File(file),
        };
        let seg = PinnedSegment {
            id,
            hint_path: names::hint_path(dir, id),
            path,
            held,
        };
        below_active = below_active || !seg.compacted();
        segments.insert(id, seg);
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
    let after = super::dir::list_dir(vfs, dir)?;
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
        listing: before,
    }))
}
