//! Offline repair: rewrite damaged segments with every record that passes
//! its checksum.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::hint;
use crate::format::names;
use crate::format::record::{self, Kind, RECORD_HEADER_LEN};
use crate::format::segment;
use crate::fs::{self, OpenMode, RealFs, Vfs};
use crate::options::RecoveryMode;
use crate::recovery::{self, SkippedRange};
use crate::storage::hints;
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
    /// no record checksum can be verified), with the reason.
    pub unrepairable: Vec<(PathBuf, String)>,
    /// Where the original files were copied before being replaced.
    pub backup: Option<PathBuf>,
}

/// Repairs the store in `dir`: every segment that strict recovery refuses
/// is rewritten with every record that passes its checksum, in order,
/// including the valid records that follow a damaged range (a batch is kept
/// only whole). The originals (and their hints) are first copied into a
/// backup directory next to the store (`<dir>.repair-backup-<unix ms>`);
/// each new segment replaces its original atomically, and its hint is
/// rebuilt. A second run finds nothing to do.
///
/// With `dry_run`, nothing is written: the report says what would be
/// dropped.
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
    let lock_path = dir.join(names::LOCK_FILE);
    let _lock = match fs.try_lock(&lock_path, dry_run)? {
        Some(l) => l,
        None => return Err(Error::Locked { path: lock_path }),
    };
    let listing = recovery::list_dir(&fs, dir)?;
    let active = recovery::find_active(&fs, dir, &listing.segments);
    let mut report = RepairReport::default();
    let mut rewrites: Vec<(u32, Vec<u8>)> = Vec::new();
    for &id in &listing.segments {
        let path = names::segment_path(dir, id);
        let bytes = fs.read(&path)?;
        let is_active = Some(id) == active;
        let header = match segment::header_info(&path, &bytes, id) {
            Ok(h) => h,
            Err(e) => {
                report.unrepairable.push((path, e.to_string()));
                continue;
            }
        };
        // A sealed segment shorter than its (authentic) hint lost its end.
        let truncated = !is_active
            && matches!(
                fs.read(&names::hint_path(dir, id)).map(|h| hint::decode(
                    &h,
                    id,
                    bytes.len() as u64,
                    header.salt
                )),
                Ok(Err(hint::SEGMENT_TRUNCATED))
            );
        let strict = recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Strict);
        if strict.is_ok() && !truncated {
            continue;
        }
        let load = recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Salvage)?;
        let salt = new_salt(id);
        let flags = if header.compacted {
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
                (Kind::Tombstone, &[][..])
            } else {
                (Kind::Put, value)
            };
            let at = out.len() as u64;
            record::encode_into(
                &mut out,
                salt,
                at,
                kind,
                0,
                e.seq,
                e.expires_at_ms,
                &e.key,
                value,
            );
        }
        report.segments.push(id);
        report.records_kept += load.entries.len() as u64;
        report.dropped.extend(load.skipped.iter().cloned());
        if truncated && load.skipped.is_empty() {
            report.dropped.push(SkippedRange {
                path: path.clone(),
                offset: bytes.len() as u64,
                len: 0,
                reason: "the end of the sealed segment is missing".into(),
            });
        }
        rewrites.push((id, out));
    }
    if dry_run || rewrites.is_empty() {
        return Ok(report);
    }
    // Back up every file about to change, durably, before changing any.
    let name = dir
        .file_name()
        .map_or_else(|| "store".into(), |n| n.to_string_lossy().into_owned());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let backup = dir
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(format!("{name}.repair-backup-{now}"));
    fs.create_dir_all(&backup)?;
    for (id, _) in &rewrites {
        for path in [names::segment_path(dir, *id), names::hint_path(dir, *id)] {
            let bytes = match fs.read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::Io(e)),
            };
            let to = backup.join(path.file_name().unwrap_or_default());
            let f = fs.open(&to, OpenMode::CreateNew)?;
            fs::write_all_at(&*f, &bytes, 0)?;
            f.sync_all()?;
        }
    }
    fs.sync_dir(&backup)?;
    if let Some(parent) = backup.parent() {
        fs.sync_dir(parent)?;
    }
    report.backup = Some(backup);
    // Swap in each new segment atomically, then write its hint. Until the
    // new hint is in place the old one names the old salt, so it is never
    // used for the new segment.
    for (id, bytes) in &rewrites {
        let path = names::segment_path(dir, *id);
        fs.write_atomic(&path, ".repair-", bytes)?;
        fs.sync_dir(dir)?;
        let is_active = Some(*id) == active;
        if is_active {
            // The active segment has no hint.
            match fs.remove_file(&names::hint_path(dir, *id)) {
                Ok(()) => fs.sync_dir(dir)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(e)),
            }
            continue;
        }
        let load = recovery::scan_segment(&path, *id, bytes, false, RecoveryMode::Strict)?;
        hints::write(
            &fs,
            dir,
            *id,
            load.salt,
            load.len,
            load.max_seq,
            &recovery::dedup_newest(&load.entries),
        )?;
    }
    Ok(report)
}
