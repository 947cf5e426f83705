//! Reading a segment file record by record, for inspection tools (the
//! `cairn dump` and `cairn stats` commands). Lock-free and read-only.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::format::names;
use crate::format::record::{self, Decoded, RecordKind, RecordRef};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{RealFs, Vfs};
use crate::recovery;

/// The ids of the segment files (`0000000042.seg`) in the store directory
/// `dir`, ascending. Other files are ignored.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// cairn::Db::open(dir.path())?.close()?;
/// assert_eq!(cairn::segment_ids(dir.path())?, [1]);
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the directory cannot be listed.
pub fn segment_ids(dir: impl AsRef<Path>) -> Result<Vec<u32>> {
    Ok(recovery::list_dir(&RealFs, dir.as_ref())?.segments)
}

/// The path of segment `id`'s file in the store directory `dir`.
///
/// ```
/// let p = cairn::segment_path("/data/store", 42);
/// assert_eq!(p, std::path::Path::new("/data/store/0000000042.seg"));
/// ```
pub fn segment_path(dir: impl AsRef<Path>, id: u32) -> PathBuf {
    names::segment_path(dir.as_ref(), id)
}

/// The path of segment `id`'s hint file in the store directory `dir`.
///
/// ```
/// let p = cairn::hint_path("/data/store", 42);
/// assert_eq!(p, std::path::Path::new("/data/store/0000000042.hint"));
/// ```
pub fn hint_path(dir: impl AsRef<Path>, id: u32) -> PathBuf {
    names::hint_path(dir.as_ref(), id)
}

/// What [`checkpoint_info`] finds of a store's index checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// The file (`index.ckpt` in the store directory).
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was written (unix ms), when its header checks out.
    pub written_at_ms: Option<u64>,
    /// The keys it holds, when its header checks out.
    pub keys: Option<u64>,
    /// Whether an open now would use it ([`CheckpointUse::Used`]) and, if
    /// not, why.
    ///
    /// [`CheckpointUse::Used`]: crate::CheckpointUse::Used
    pub usable: crate::recovery::CheckpointUse,
}

/// The index checkpoint of the store in `dir`, if it has one: its size,
/// age and whether an open now would use it (its checksums and the match
/// rules against the directory's files are checked; nothing is changed).
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("k", "v")?;
/// db.close()?;
/// let info = cairn::checkpoint_info(dir.path())?.expect("written at close");
/// assert_eq!(info.keys, Some(1));
/// assert_eq!(info.usable, cairn::CheckpointUse::Used);
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the directory cannot be listed.
pub fn checkpoint_info(dir: impl AsRef<Path>) -> Result<Option<CheckpointInfo>> {
    let dir = dir.as_ref();
    let path = recovery::checkpoint::path(dir);
    let bytes = match RealFs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(_) => {
            return Ok(Some(CheckpointInfo {
                bytes: std::fs::metadata(&path).map_or(0, |m| m.len()),
                path,
                written_at_ms: None,
                keys: None,
                usable: crate::recovery::CheckpointUse::Unreadable,
            }))
        }
    };
    let listing = recovery::list_dir(&RealFs, dir)?;
    let (header, usable) = recovery::checkpoint::would_use(&RealFs, dir, &bytes, &listing);
    Ok(Some(CheckpointInfo {
        path,
        bytes: bytes.len() as u64,
        written_at_ms: header.as_ref().map(|h| h.0),
        keys: header.map(|h| h.1),
        usable,
    }))
}

/// One entry of [`read_segment`]: a record whose checksum holds, or a
/// damaged range.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SegmentEntry {
    /// A record whose checksum holds.
    Record {
        /// Byte offset in the segment file.
        offset: u64,
        /// What it is.
        kind: RecordKind,
        /// Sequence number (0 for sync marks).
        seq: u64,
        /// Absolute expiry in unix ms (0 = none).
        expires_at_ms: u64,
        /// Part of an atomic batch.
        in_batch: bool,
        /// A put that only changes the key's expiry (`Db::expire`,
        /// `Db::persist`): its value is the one the key already had.
        /// Always `false` in a format-version-1 segment.
        expiry_only: bool,
        /// A tombstone written because the key's expiry passed (the
        /// expiry sweep), not by a delete. Always `false` in a
        /// format-version-1 segment.
        expired: bool,
        /// The key had an index entry when this put or tombstone was
        /// written (format version 3; always `false` before).
        replaces: bool,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// Encoded length (header, key and value).
        len: u64,
    },
    /// Bytes that are not a valid record (damage, or a torn tail).
    Damaged {
        /// Byte offset of the first bad byte.
        offset: u64,
        /// Bytes up to the next valid record (or the end of the file).
        len: u64,
        /// Why the bytes were rejected.
        reason: String,
    },
}

/// Reads segment file `path` record by record, checking every checksum.
/// After damage it resumes at the next valid record. Zeros at the end
/// (space preallocated for appends) end the walk. A segment whose header is
/// damaged comes back as one `Damaged` entry covering the whole file.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("k", "v")?;
/// db.close()?;
/// let entries = cairn::read_segment(dir.path().join("0000000001.seg"))?;
/// assert!(matches!(&entries[0], cairn::SegmentEntry::Record { key, .. } if key == b"k"));
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) when the file cannot be read.
pub fn read_segment(path: impl AsRef<Path>) -> Result<Vec<SegmentEntry>> {
    let path = path.as_ref();
    let bytes = RealFs.read(path).map_err(|e| recovery::io_at(path, e))?;
    let id = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(crate::format::names::parse_file_name)
        .map_or(0, |(id, _)| id);
    Ok(entries_of(path, id, &bytes))
}

/// The entries of segment `id`, whose file `path` holds `bytes` (see
/// [`read_segment`]).
pub(crate) fn entries_of(path: &Path, id: u32, bytes: &[u8]) -> Vec<SegmentEntry> {
    match segment::header_info(path, bytes, id) {
        Ok(h) => walk_records(bytes, h.salt, h.version),
        Err(e) => vec![SegmentEntry::Damaged {
            offset: 0,
            len: bytes.len() as u64,
            reason: format!("segment header: {e}"),
        }],
    }
}

/// The segment files of a store directory, held open: a consistent set
/// that stays readable while an application writes to the store in
/// another process (its compaction may delete files meanwhile). For
/// inspection tools that read files rather than open the store (the
/// `cairn dump` command).
///
/// The set is the store's segments as they were at one moment while
/// [`SegmentFiles::open`] ran; the writer's active segment is read as it is
/// when [`SegmentFiles::read`] reads it.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("k", "v")?;
/// let files = cairn::SegmentFiles::open(dir.path())?;
/// assert_eq!(files.ids(), [1]);
/// let entries = files.read(1).expect("segment 1 is held")?;
/// assert!(matches!(&entries[0], cairn::SegmentEntry::Record { key, .. } if key == b"k"));
/// # Ok::<(), cairn::Error>(())
/// ```
pub struct SegmentFiles {
    pinned: recovery::Pinned,
}

impl std::fmt::Debug for SegmentFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentFiles")
            .field("ids", &self.ids())
            .finish_non_exhaustive()
    }
}

impl SegmentFiles {
    /// Lists the store directory `dir` and opens every segment file in it
    /// (listing again if a writer deleted one in between, a bounded number
    /// of times).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// cairn::Db::open(dir.path())?.close()?;
    /// assert_eq!(cairn::SegmentFiles::open(dir.path())?.ids(), [1]);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io), naming the directory or file, when
    /// one cannot be read, or when the directory kept changing.
    pub fn open(dir: impl AsRef<Path>) -> Result<SegmentFiles> {
        Ok(SegmentFiles {
            pinned: recovery::pin(&RealFs, dir.as_ref(), true)?,
        })
    }

    /// The ids of the segments held, ascending.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let files = cairn::SegmentFiles::open(dir.path())?;
    /// assert!(files.ids().is_empty());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    pub fn ids(&self) -> Vec<u32> {
        self.pinned.segments.keys().copied().collect()
    }

    /// The entries of segment `id`, as [`read_segment`] gives them; `None`
    /// when `id` is not held.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// cairn::Db::open(dir.path())?.close()?;
    /// let files = cairn::SegmentFiles::open(dir.path())?;
    /// assert!(files.read(7).is_none());
    /// assert!(files.read(1).expect("held")?.is_empty());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io), naming the file, when it cannot be
    /// read.
    pub fn read(&self, id: u32) -> Option<Result<Vec<SegmentEntry>>> {
        let held = self.pinned.segments.get(&id)?;
        Some(held.bytes().map(|bytes| entries_of(&held.path, id, &bytes)))
    }
}

/// The records and damaged ranges of a segment's `bytes` after its header,
/// up to its end or to the zeros that end it. A record with a flag of format
/// version 2 in a segment of `version` 1 is damage, as recovery says.
fn walk_records(bytes: &[u8], salt: u32, version: u16) -> Vec<SegmentEntry> {
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_LEN as usize;
    while pos < bytes.len() {
        if bytes[pos..].iter().all(|&b| b == 0) {
            break;
        }
        let reason = match record::decode(&bytes[pos..], salt, pos as u64) {
            Decoded::Record(r) if version < 2 && r.has_flags_since_v2() => {
                "record flags of format version 2 in a version-1 segment".to_string()
            }
            Decoded::Record(r) => {
                out.push(record_entry(pos as u64, &r));
                pos += r.len as usize;
                continue;
            }
            Decoded::Invalid(why) => why.to_string(),
            Decoded::Truncated => "record is truncated".to_string(),
        };
        // Resume at the next valid record.
        let next = crate::recovery::find_next_valid(bytes, pos + 1, 0, salt).unwrap_or(bytes.len());
        out.push(SegmentEntry::Damaged {
            offset: pos as u64,
            len: (next - pos) as u64,
            reason,
        });
        pos = next;
    }
    out
}

/// The entry for record `r`, found at `offset`.
fn record_entry(offset: u64, r: &RecordRef<'_>) -> SegmentEntry {
    SegmentEntry::Record {
        offset,
        kind: r.kind,
        seq: r.seq,
        expires_at_ms: r.expires_at_ms,
        in_batch: r.in_batch,
        expiry_only: r.expiry_only,
        expired: r.expired,
        replaces: r.replaces,
        key: r.key.to_vec(),
        value: r.value.to_vec(),
        len: r.len,
    }
}
