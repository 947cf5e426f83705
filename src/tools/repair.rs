//! Offline repair: rewrite damaged segments with every record that passes
//! its checksum.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::hint;
use crate::format::names;
use crate::format::record::{self, RecordKind, RECORD_HEADER_LEN};
use crate::format::segment;
use crate::fs::{self, LockGuard, OpenMode, RealFs, Vfs};
use crate::options::RecoveryMode;
use crate::recovery::{self, SegmentLoad, SkippedRange};
use crate::util::rand::new_salt;

/// What [`repair`] did (or, in a dry run, would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RepairReport {
    /// Segments rewritten (or to rewrite).
    pub segments: Vec<u32>,
    /// Records kept in those segments.
    pub records_kept: u64,
    /// Damaged ranges dropped.
    pub dropped: Vec<SkippedRange>,
    /// Segments that cannot be repaired (a damaged header: without its salt
    /// no record checksum can be verified), with the reason. When there
    /// are any, [`repair`] rewrites nothing.
    pub unrepairable: Vec<(PathBuf, String)>,
    /// Where the original files were copied before being replaced.
    pub backup: Option<PathBuf>,
    /// The index checkpoint (`index.ckpt`) was deleted (or, in a dry run,
    /// would be): repair drops it, before it changes any other file, when
    /// it rewrites a segment, and when its entries differ from the index
    /// the hints and segments give (what `verify` reports as
    /// `checkpoint-mismatch`). One that open ignores anyway (damaged,
    /// stale) is left: harmless, and the next writable open deletes it.
    /// The next open then builds the index from hints and segments, and
    /// the next clean close writes a new checkpoint.
    pub checkpoint_removed: bool,
}

/// Repairs the store in `dir`: every segment that strict recovery refuses
/// is rewritten with every record that passes its checksum, in order,
/// including the valid records that follow a damaged range (a batch is kept
/// only whole). The originals (and their hints) are first copied into a
/// backup directory next to the store (`<dir>.repair-backup-<unix ms>`);
/// each new segment replaces its original atomically, and its hint is
/// rebuilt. A second run finds nothing to do. An index checkpoint whose
/// entries differ from the segments' is deleted first, and so is any when
/// a segment is rewritten (see [`RepairReport::checkpoint_removed`]).
///
/// With `dry_run`, nothing is written: the report says what would be
/// dropped.
///
/// When a segment cannot be repaired (its header is damaged, or the file
/// is not a segment at all), nothing is rewritten: such a file also
/// decides which segment counts as the newest, and so how the others are
/// read. Move it out of the directory first, then repair again.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// cairn::Db::open(dir.path())?.put("k", "v")?;
/// let report = cairn::repair(dir.path(), false)?;
/// assert!(report.segments.is_empty(), "nothing to repair");
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Locked`] when a handle has the store open, [`Error::Io`].
pub fn repair(dir: impl AsRef<Path>, dry_run: bool) -> Result<RepairReport> {
    let dir = dir.as_ref();
    let fs = RealFs;
    let _lock = lock_store(&fs, dir, dry_run)?;
    let listing = recovery::list_dir(&fs, dir)?;
    let active = recovery::find_active(&fs, dir, &listing.segments);
    let mut report = RepairReport::default();
    let mut rewrites: Vec<(u32, Vec<u8>)> = Vec::new();
    for &id in &listing.segments {
        if let Some(out) = salvage_segment(&fs, dir, id, Some(id) == active, &mut report)? {
            rewrites.push((id, out));
        }
    }
    if !report.unrepairable.is_empty() {
        return Ok(report);
    }
    report.checkpoint_removed = fs.exists(&recovery::checkpoint::path(dir))
        && (!rewrites.is_empty() || checkpoint_mismatches(&fs, dir));
    if dry_run {
        return Ok(report);
    }
    if report.checkpoint_removed {
        recovery::checkpoint::remove(&fs, dir)?;
    }
    if rewrites.is_empty() {
        return Ok(report);
    }
    report.backup = Some(back_up(&fs, dir, &rewrites)?);
    for (id, bytes) in &rewrites {
        swap_in(&fs, dir, *id, bytes, Some(*id) == active)?;
    }
    Ok(report)
}

/// Whether the store's index checkpoint is one an open would use but
/// whose entries differ from the index its hints and segments give (what
/// `verify` reports as `checkpoint-mismatch`).
fn checkpoint_mismatches(fs: &dyn Vfs, dir: &Path) -> bool {
    let Ok(bytes) = fs.read(&recovery::checkpoint::path(dir)) else {
        return false;
    };
    let now = crate::util::clock::Clock::now_unix_ms(&crate::util::clock::SystemClock);
    let checked = recovery::pin(fs, dir, false)
        .and_then(|p| recovery::checkpoint::compare_with_files(fs, dir, &bytes, &p, now, false));
    matches!(checked, Ok(recovery::checkpoint::Checked::Mismatch(_)))
}

/// Takes the store's lock: shared for a dry run, which changes nothing.
fn lock_store(fs: &dyn Vfs, dir: &Path, dry_run: bool) -> Result<LockGuard> {
    let lock_path = dir.join(names::LOCK_FILE);
    match fs.try_lock(&lock_path, dry_run)? {
        Some(l) => Ok(l),
        None => Err(Error::Locked { path: lock_path }),
    }
}

/// The repaired contents of segment `id`, if strict recovery refuses it or
/// it lost its end; what it keeps and drops goes into `report`.
fn salvage_segment(
    fs: &dyn Vfs,
    dir: &Path,
    id: u32,
    is_active: bool,
    report: &mut RepairReport,
) -> Result<Option<Vec<u8>>> {
    let path = names::segment_path(dir, id);
    let bytes = fs.read(&path)?;
    let header = match segment::header_info(&path, &bytes, id) {
        Ok(h) => h,
        // A crash while the writer created its newest segment: open
        // rewrites the header; there is nothing to repair.
        Err(_) if is_active && torn_creation(&path, id, &bytes) => return Ok(None),
        Err(e) => {
            report.unrepairable.push((path, e.to_string()));
            return Ok(None);
        }
    };
    let truncated = !is_active && hint_says_truncated(fs, dir, id, bytes.len() as u64, header.salt);
    let strict = recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Strict);
    if strict.is_ok() && !truncated {
        return Ok(None);
    }
    let load = recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Salvage)?;
    let out = rebuild_segment(id, header.compacted, &bytes, &load);
    report.segments.push(id);
    report.records_kept += load.entries.len() as u64;
    report.dropped.extend(load.skipped.iter().cloned());
    if truncated && load.skipped.is_empty() {
        report.dropped.push(SkippedRange {
            path,
            offset: bytes.len() as u64,
            len: 0,
            reason: "the end of the sealed segment is missing".into(),
        });
    }
    Ok(Some(out))
}

/// Whether the active segment `id`, whose header does not check out, was
/// being created when the process stopped, as open decides.
fn torn_creation(path: &Path, id: u32, bytes: &[u8]) -> bool {
    recovery::scan_segment(path, id, bytes, true, RecoveryMode::Strict)
        .is_ok_and(|l| l.needs_header)
}

/// Whether the (authentic) hint of sealed segment `id` describes a longer
/// segment than `segment_len`: the segment lost its end.
fn hint_says_truncated(fs: &dyn Vfs, dir: &Path, id: u32, segment_len: u64, salt: u32) -> bool {
    matches!(
        fs.read(&names::hint_path(dir, id))
            .map(|h| hint::decode(&h, id, segment_len, salt)),
        Ok(Err(hint::SEGMENT_TRUNCATED))
    )
}

/// A new segment `id` (with a new salt, and the original's compacted flag)
/// holding the records `load` found in `bytes`, in order.
fn rebuild_segment(id: u32, compacted: bool, bytes: &[u8], load: &SegmentLoad) -> Vec<u8> {
    let salt = new_salt(id);
    let flags = if compacted {
        segment::FLAG_COMPACTED
    } else {
        0
    };
    let mut out = segment::encode_header_flags(id, salt, flags).to_vec();
    for e in &load.entries {
        let start = (e.offset + u64::from(RECORD_HEADER_LEN)) as usize;
        let key_end = start + e.key.len();
        let value = &bytes[key_end..key_end + e.value_len as usize];
        let (kind, value) = if e.tombstone {
            (RecordKind::Tombstone, &[][..])
        } else {
            (RecordKind::Put, value)
        };
        let at = out.len() as u64;
        // The flags that say what the record meant (an expiry change, an
        // expiration) stay; the batch flag goes, as the batch records do.
        let flags = bytes[e.offset as usize + 5] & record::FLAGS_SINCE_V2;
        record::encode_into(
            &mut out,
            salt,
            at,
            kind,
            flags,
            e.seq,
            e.expires_at_ms,
            &e.key,
            value,
        );
    }
    out
}

/// Copies every file about to change (each rewritten segment and its hint)
/// into a new backup directory next to the store, durably, before any
/// changes; returns the backup directory.
fn back_up(fs: &dyn Vfs, dir: &Path, rewrites: &[(u32, Vec<u8>)]) -> Result<PathBuf> {
    let backup = backup_path(dir);
    fs.create_dir_all(&backup)?;
    for (id, _) in rewrites {
        for path in [names::segment_path(dir, *id), names::hint_path(dir, *id)] {
            copy_into(fs, &path, &backup)?;
        }
    }
    fs.sync_dir(&backup)?;
    fs.sync_dir(fs::parent_dir(&backup))?;
    Ok(backup)
}

/// `<dir>.repair-backup-<unix ms>`, next to the store (for `.` or a path
/// ending in `..`, next to the directory they name, not inside it).
fn backup_path(dir: &Path) -> PathBuf {
    let named;
    let dir = if dir.file_name().is_some() {
        dir
    } else {
        named = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        &named
    };
    let name = dir
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    fs::parent_dir(dir).join(format!("{name}.repair-backup-{now}"))
}

/// Copies file `path`, if it exists, into directory `to`, and syncs the
/// copy.
fn copy_into(fs: &dyn Vfs, path: &Path, to: &Path) -> Result<()> {
    let bytes = match fs.read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io(e)),
    };
    let f = fs.open(
        &to.join(path.file_name().unwrap_or_default()),
        OpenMode::CreateNew,
    )?;
    fs::write_all_at(&*f, &bytes, 0)?;
    f.sync_all()?;
    Ok(())
}

/// Swaps the new segment `id` in atomically, then writes its hint (the
/// active segment has none). Until the new hint is in place the old one
/// names the old salt, so it is never used for the new segment.
fn swap_in(fs: &dyn Vfs, dir: &Path, id: u32, bytes: &[u8], is_active: bool) -> Result<()> {
    let path = names::segment_path(dir, id);
    fs.write_atomic(&path, names::REPAIR_TMP_PREFIX, bytes)?;
    fs.sync_dir(dir)?;
    if is_active {
        match fs.remove_file(&names::hint_path(dir, id)) {
            Ok(()) => fs.sync_dir(dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io(e)),
        }
        return Ok(());
    }
    recovery::scan_and_write_hint(fs, dir, id, bytes)?;
    Ok(())
}
