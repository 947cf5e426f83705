//! Offline verification of a store directory: every header, every record's
//! checksum, hints against their segments, batches, stray files. Read-only,
//! lock-free: it never changes a file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::hint;
use crate::format::manifest;
use crate::format::names;
use crate::format::segment;
use crate::fs::{RealFs, Vfs};
use crate::options::RecoveryMode;
use crate::recovery;

/// What kind of problem [`verify`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// Damage a crash cannot explain: open refuses the store (strict) and
    /// salvage would skip the bytes.
    Corruption,
    /// The end of the active segment is a partial write from a crash; the
    /// next read-write open cuts it off. Also a torn creation: an active
    /// segment whose header a crash cut short (or left torn, with only
    /// zeros after it), which the next read-write open rewrites. Not
    /// corruption.
    TornTail,
    /// A hint file that cannot be used (it is ignored and rebuilt from its
    /// segment at the next read-write open). Not corruption.
    HintUnusable,
    /// A sealed segment without a hint file (open scans it instead).
    HintMissing,
    /// An authentic hint file (checksum, salt and id check out) that open
    /// would use, but that does not describe its segment's records: the
    /// store would serve other contents than its log holds (a bug or a
    /// crafted file, not a crash). Counted as corruption; deleting the hint
    /// file makes the next open scan the segment and write a new one.
    HintMismatch,
    /// A file cairn did not expect (a temporary file left by a crash is
    /// removed at the next read-write open).
    StrayFile,
    /// A compaction stopped before it deleted its old segments; the next
    /// read-write open finishes it.
    UnfinishedCompaction,
    /// An index checkpoint (`index.ckpt`) that open would not use: damaged,
    /// of another version, or not describing the files in the directory
    /// (open then builds the index from hints and segments, and a
    /// read-write open deletes it). Not corruption.
    CheckpointUnusable,
    /// An index checkpoint that checks out and matches the directory's
    /// files, so that open would use it, but whose entries differ from the
    /// index the hints and segments give: the store would serve other
    /// contents than its log holds (a bug or a crafted file). Counted as
    /// corruption; deleting it (`cairn repair` does) makes the next open
    /// use the hints and segments.
    CheckpointMismatch,
}

impl ProblemKind {
    /// Whether this problem means the data is damaged.
    pub fn is_corruption(self) -> bool {
        matches!(
            self,
            ProblemKind::Corruption | ProblemKind::HintMismatch | ProblemKind::CheckpointMismatch
        )
    }

    /// A short name: `corruption`, `torn-tail`, `hint-unusable`,
    /// `hint-missing`, `hint-mismatch`, `stray-file`,
    /// `unfinished-compaction`, `checkpoint-unusable`, `checkpoint-mismatch`.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Corruption => "corruption",
            ProblemKind::TornTail => "torn-tail",
            ProblemKind::HintUnusable => "hint-unusable",
            ProblemKind::HintMissing => "hint-missing",
            ProblemKind::HintMismatch => "hint-mismatch",
            ProblemKind::StrayFile => "stray-file",
            ProblemKind::UnfinishedCompaction => "unfinished-compaction",
            ProblemKind::CheckpointUnusable => "checkpoint-unusable",
            ProblemKind::CheckpointMismatch => "checkpoint-mismatch",
        }
    }
}

/// One problem [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The kind.
    pub kind: ProblemKind,
    /// The file.
    pub path: PathBuf,
    /// The byte offset in the file, when the problem has one.
    pub offset: Option<u64>,
    /// What is wrong, in words.
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u32,
    /// Records whose checksum was verified (puts and tombstones).
    pub records: u64,
    /// Hint files checked.
    pub hints: u32,
    /// Problems, in file order.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether any problem is corruption.
    pub fn has_corruption(&self) -> bool {
        self.problems.iter().any(|p| p.kind.is_corruption())
    }
}

/// Checks a store directory without opening it: every segment header and
/// record checksum (in salvage mode, so that damage does not hide what
/// follows it), each hint against its segment, the index checkpoint (if
/// any) against the files and against the index their hints and segments
/// give, and the files present.
/// With `quick`, sealed segments that have a valid hint are not read
/// record by record.
///
/// It takes no lock and changes nothing, so it can run beside a writer in
/// another process: like a snapshot ([`Options::snapshot`]), it checks a
/// consistent set of the store's files, held open from the moment they are
/// listed (a segment the writer's compaction deletes meanwhile is still
/// checked as it was), with the writer's active segment taken up to its
/// last complete record. The writer's newest, still-growing record may
/// then show as a torn tail, a segment sealed a moment ago as one without
/// its hint, a running compaction as an unfinished one with temporary
/// files, and the hint of a segment that compaction just deleted as a
/// stray file (none of these is corruption). Damage found in the
/// active segment is checked again (a few times, briefly) before it is
/// reported, since a record the writer is writing can look damaged to a
/// reader for a moment.
///
/// [`Options::snapshot`]: crate::Options::snapshot
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("k", "v")?;
/// db.close()?;
/// let report = cairn::verify(dir.path(), false)?;
/// assert!(report.problems.is_empty());
/// assert_eq!(report.records, 1);
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`] when the directory cannot be read;
/// [`Error::IncompleteBackup`] for a backup that was cut short. Problems in
/// the files are reported, not returned as errors.
pub fn verify(dir: impl AsRef<Path>, quick: bool) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let vfs = RealFs;
    crate::tools::backup::check_complete(&vfs, dir)?;
    let mut attempt = 0;
    loop {
        let pinned = recovery::pin(&vfs, dir, true)?;
        let active = pinned.find_active();
        let mut report = VerifyReport::default();
        check_dir_entries(&vfs, dir, &pinned.listing.names, quick, &mut report)?;
        report_orphan_hints(&pinned, &mut report);
        for seg in pinned.segments.values() {
            check_segment(&vfs, seg, Some(seg.id) == active, quick, &mut report)?;
        }
        check_checkpoint(&vfs, dir, &pinned, &mut report)?;
        let active_path = active.map(|id| names::segment_path(dir, id));
        let active_damaged = report
            .problems
            .iter()
            .any(|p| p.kind.is_corruption() && Some(&p.path) == active_path.as_ref());
        if !active_damaged || attempt == ACTIVE_DAMAGE_RETRIES {
            return Ok(report);
        }
        attempt += 1;
        recovery::back_off(attempt);
    }
}

/// How many times damage in the active segment is checked again before it
/// is reported (see [`verify`]).
const ACTIVE_DAMAGE_RETRIES: u32 = 3;

/// Reports each hint whose segment is not in the listing: a compaction
/// deleted the segment while its hint was being written. Open removes it.
fn report_orphan_hints(pinned: &recovery::Pinned, report: &mut VerifyReport) {
    let stray = &pinned.listing.temp_files;
    for path in stray
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "hint"))
    {
        report.push(
            ProblemKind::StrayFile,
            path,
            None,
            "the hint of a segment that no longer exists; the next open removes it",
        );
    }
}

impl VerifyReport {
    /// Records a problem.
    fn push(
        &mut self,
        kind: ProblemKind,
        path: &Path,
        offset: Option<u64>,
        detail: impl Into<String>,
    ) {
        self.problems.push(Problem {
            kind,
            path: path.to_path_buf(),
            offset,
            detail: detail.into(),
        });
    }

    /// Adds the counts and problems of a keyspace's report to this one.
    fn absorb(&mut self, other: VerifyReport) {
        self.segments += other.segments;
        self.records += other.records;
        self.hints += other.hints;
        self.problems.extend(other.problems);
    }
}

/// Goes through the directory's entries in name order: verifies the
/// keyspaces directory, and reports an unfinished compaction's manifest and
/// every file cairn does not expect.
fn check_dir_entries(
    vfs: &dyn Vfs,
    dir: &Path,
    listed: &[String],
    quick: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut entries = listed.to_vec();
    entries.sort();
    for name in &entries {
        let path = dir.join(name);
        if name == names::KEYSPACES_DIR && path.is_dir() {
            verify_keyspaces(vfs, &path, quick, report)?;
        } else if name == manifest::MANIFEST {
            report.push(
                ProblemKind::UnfinishedCompaction,
                &path,
                None,
                "a compaction is deleting the segments this manifest names, or stopped before it did (the next read-write open finishes it)",
            );
        } else if name != names::LOCK_FILE
            && name != names::CHECKPOINT_FILE
            && names::parse_file_name(name).is_none()
        {
            let detail = if names::is_temp_file(name) {
                "a temporary file: a running compaction's or hint writer's, or left by a crash (the next read-write open removes it)"
            } else {
                "not a cairn file"
            };
            report.push(ProblemKind::StrayFile, &path, None, detail);
        }
    }
    Ok(())
}

/// Checks the index checkpoint, when there is one (see
/// [`ProblemKind::CheckpointUnusable`] and
/// [`ProblemKind::CheckpointMismatch`]).
fn check_checkpoint(
    vfs: &dyn Vfs,
    dir: &Path,
    pinned: &recovery::Pinned,
    report: &mut VerifyReport,
) -> Result<()> {
    if !pinned
        .listing
        .names
        .iter()
        .any(|n| n == names::CHECKPOINT_FILE)
    {
        return Ok(());
    }
    let path = recovery::checkpoint::path(dir);
    let bytes = match vfs.read(&path) {
        Ok(b) => b,
        // Deleted meanwhile by a writer's open: nothing to check.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            report.push(ProblemKind::CheckpointUnusable, &path, None, e.to_string());
            return Ok(());
        }
    };
    let now = crate::util::clock::Clock::now_unix_ms(&crate::util::clock::SystemClock);
    // A writer holds the directory: its checkpoint, log and compactions
    // move on while this reads them, so only the checkpoint's own bytes
    // are checked (a probe of the lock, let go at once).
    // (Only a lock file that exists is probed: the probe must not make one.)
    let has_lock = pinned.listing.names.iter().any(|n| n == names::LOCK_FILE);
    let live = has_lock && matches!(vfs.try_lock(&dir.join(names::LOCK_FILE), true), Ok(None));
    match recovery::checkpoint::compare_with_files(vfs, dir, &bytes, pinned, now, live)? {
        recovery::checkpoint::Checked::Fine => {}
        recovery::checkpoint::Checked::Unusable(why) => report.push(
            ProblemKind::CheckpointUnusable,
            &path,
            None,
            format!("open ignores this index checkpoint: {why}"),
        ),
        recovery::checkpoint::Checked::Mismatch(why) => report.push(
            ProblemKind::CheckpointMismatch,
            &path,
            None,
            format!(
                "this index checkpoint matches the files but not their contents: {why} \
                 (delete it, or run `cairn repair`)"
            ),
        ),
    }
    Ok(())
}

/// Each keyspace is a store of its own: verifies it the same way.
fn verify_keyspaces(
    vfs: &dyn Vfs,
    keyspaces: &Path,
    quick: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut subs = vfs.list(keyspaces)?;
    subs.sort();
    for sub in subs {
        let path = keyspaces.join(&sub);
        if path.is_dir() {
            report.absorb(verify(path, quick)?);
        } else {
            report.push(
                ProblemKind::StrayFile,
                &path,
                None,
                "not a keyspace directory",
            );
        }
    }
    Ok(())
}

/// A segment file read whole, with the path of its hint.
struct SegmentFile {
    id: u32,
    path: PathBuf,
    hint_path: PathBuf,
    bytes: Vec<u8>,
    is_active: bool,
}

impl SegmentFile {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn scan(&self, mode: RecoveryMode) -> Result<recovery::SegmentLoad> {
        recovery::scan_segment(&self.path, self.id, &self.bytes, self.is_active, mode)
    }
}

/// Checks segment `id`: its header, its hint (when sealed), and, unless
/// `quick` and the hint is usable, every record.
fn check_segment(
    vfs: &dyn Vfs,
    held: &recovery::PinnedSegment,
    is_active: bool,
    quick: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    report.segments += 1;
    let id = held.id;
    let seg = SegmentFile {
        id,
        bytes: held.bytes()?.into_owned(),
        hint_path: held.hint_path.clone(),
        path: held.path.clone(),
        is_active,
    };
    let salt = match segment::header_info(&seg.path, &seg.bytes, id) {
        Ok(h) => Some(h.salt),
        Err(_) if is_active && torn_creation(&seg, report) => return Ok(()),
        Err(e) => {
            report.problems.push(problem_of(e, &seg.path));
            None
        }
    };
    let hint = if is_active {
        None
    } else {
        check_hint(held.hint_bytes(vfs), &seg, salt, report)?
    };
    if salt.is_none() || (quick && hint.is_some()) {
        return Ok(());
    }
    check_records(&seg, hint.as_ref(), report);
    Ok(())
}

/// Whether the active segment, whose header does not check out, is one
/// that was being created when the process stopped (a short header, or a
/// torn one with only zeros after it), as open decides: then it is reported
/// as a torn tail, since open accepts it and rewrites the header.
fn torn_creation(seg: &SegmentFile, report: &mut VerifyReport) -> bool {
    match seg.scan(RecoveryMode::Strict) {
        Ok(load) if load.needs_header => {
            let header = if seg.len() < segment::SEGMENT_HEADER_LEN {
                format!(
                    "{} of its {} header bytes",
                    seg.len(),
                    segment::SEGMENT_HEADER_LEN
                )
            } else {
                "a torn header, then only zeros".to_string()
            };
            let detail = format!(
                "torn creation: the segment was being created when the process stopped \
                 ({header}, no records); the next read-write open rewrites its header"
            );
            report.push(ProblemKind::TornTail, &seg.path, Some(0), detail);
            true
        }
        _ => false,
    }
}

/// Reads the hint of a sealed segment and checks it against the segment's
/// length and salt (when its header gave one): the hint, if open would use
/// it.
fn check_hint(
    hint_bytes: std::io::Result<Vec<u8>>,
    seg: &SegmentFile,
    salt: Option<u32>,
    report: &mut VerifyReport,
) -> Result<Option<hint::Hint>> {
    let bytes = match hint_bytes {
        Ok(b) => b,
        // The segment was compacted away while this ran (it is checked as it
        // was, held open), and its hint went with it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !seg.path.exists() => {
            return Ok(None);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            report.push(
                ProblemKind::HintMissing,
                &seg.hint_path,
                None,
                "sealed segment without a hint file",
            );
            return Ok(None);
        }
        Err(e) => return Err(recovery::io_at(&seg.hint_path, e)),
    };
    report.hints += 1;
    let Some(salt) = salt else {
        return Ok(None);
    };
    match hint::decode(&bytes, seg.id, seg.len(), salt) {
        Ok(h) => return Ok(Some(h)),
        Err(hint::SEGMENT_TRUNCATED) => report.push(
            ProblemKind::Corruption,
            &seg.path,
            Some(seg.len()),
            "the end of the sealed segment is missing: its hint describes a longer file",
        ),
        Err(why) => report.push(ProblemKind::HintUnusable, &seg.hint_path, None, why),
    }
    Ok(None)
}

/// Checks every record of a segment whose header is sound. Strict first, to
/// classify; then salvage, to find every damaged range and count the
/// records that are fine.
fn check_records(seg: &SegmentFile, hint: Option<&hint::Hint>, report: &mut VerifyReport) {
    match seg.scan(RecoveryMode::Strict) {
        Ok(load) => check_sound_load(seg, &load, hint, report),
        Err(strict) => check_salvaged(seg, strict, report),
    }
}

/// Reports the damaged ranges of a segment that strict recovery refused
/// (with `strict`, its error), and counts the records that are fine.
fn check_salvaged(seg: &SegmentFile, strict: Error, report: &mut VerifyReport) {
    let load = match seg.scan(RecoveryMode::Salvage) {
        Ok(load) => load,
        Err(e) => {
            report.problems.push(problem_of(e, &seg.path));
            return;
        }
    };
    report.records += load.entries.len() as u64;
    for s in &load.skipped {
        let detail = format!("{} ({} bytes)", s.reason, s.len);
        report.push(ProblemKind::Corruption, &seg.path, Some(s.offset), detail);
    }
    if load.skipped.is_empty() {
        report.problems.push(problem_of(strict, &seg.path));
    }
}

/// Reports what a segment that strict recovery accepts can still have: a
/// torn tail, and a hint that does not describe its records.
fn check_sound_load(
    seg: &SegmentFile,
    load: &recovery::SegmentLoad,
    hint: Option<&hint::Hint>,
    report: &mut VerifyReport,
) {
    if let Some((at, len)) = load.cut.filter(|_| !load.zero_tail) {
        let detail = format!(
            "{} bytes after the last complete record (a partial write; the next open cuts them)",
            len - at
        );
        report.push(ProblemKind::TornTail, &seg.path, Some(at), detail);
    }
    report.records += load.entries.len() as u64;
    if let Some(why) = hint.and_then(|h| hint_mismatch(h, load)) {
        report.push(ProblemKind::HintMismatch, &seg.hint_path, None, why);
    }
}

/// How an authentic hint disagrees with the records of its segment, if it
/// does: it must list, for every key, the newest record of the key in the
/// segment (as open would find by scanning), and the segment's highest
/// sequence number.
fn hint_mismatch(hint: &hint::Hint, load: &recovery::SegmentLoad) -> Option<String> {
    let scanned = recovery::dedup_newest(&load.entries);
    let hinted = recovery::dedup_newest(&hint.entries);
    let by_key: std::collections::HashMap<&[u8], &hint::HintEntry> =
        hinted.iter().map(|e| (e.key.as_slice(), e)).collect();
    for e in &scanned {
        match by_key.get(e.key.as_slice()) {
            None => {
                return Some(format!(
                    "the hint leaves out the newest record of a key in its segment \
                     (the {} at segment offset {}, sequence {})",
                    if e.tombstone { "tombstone" } else { "put" },
                    e.offset,
                    e.seq
                ))
            }
            Some(h) if !h.describes(e) => {
                return Some(format!(
                    "the hint misdescribes the record at segment offset {} (sequence {}): \
                     it says offset {}, sequence {}",
                    e.offset, e.seq, h.offset, h.seq
                ))
            }
            Some(_) => {}
        }
    }
    if hinted.len() != scanned.len() {
        let known: std::collections::HashSet<&[u8]> =
            scanned.iter().map(|e| e.key.as_slice()).collect();
        if let Some(h) = hinted.iter().find(|h| !known.contains(h.key.as_slice())) {
            return Some(format!(
                "the hint lists a record the segment does not hold (offset {}, sequence {})",
                h.offset, h.seq
            ));
        }
    }
    (hint.max_seq != load.max_seq).then(|| {
        format!(
            "the hint says the segment's highest sequence number is {}, the records say {}",
            hint.max_seq, load.max_seq
        )
    })
}

fn problem_of(e: Error, path: &Path) -> Problem {
    match e {
        Error::Corruption {
            path,
            offset,
            reason,
        } => Problem {
            kind: ProblemKind::Corruption,
            path,
            offset: Some(offset),
            detail: reason,
        },
        e => Problem {
            kind: ProblemKind::Corruption,
            path: path.to_path_buf(),
            offset: None,
            detail: e.to_string(),
        },
    }
}
