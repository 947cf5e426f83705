//! Offline verification of a store directory: every header, every record's
//! checksum, hints against their segments, batches, stray files. Read-only,
//! lock-free: it never changes a file.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::hint;
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
    /// next read-write open cuts it off. Not corruption.
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
}

impl ProblemKind {
    /// Whether this problem means the data is damaged.
    pub fn is_corruption(self) -> bool {
        matches!(self, ProblemKind::Corruption | ProblemKind::HintMismatch)
    }

    /// A short name: `corruption`, `torn-tail`, `hint-unusable`,
    /// `hint-missing`, `hint-mismatch`, `stray-file`,
    /// `unfinished-compaction`.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::Corruption => "corruption",
            ProblemKind::TornTail => "torn-tail",
            ProblemKind::HintUnusable => "hint-unusable",
            ProblemKind::HintMissing => "hint-missing",
            ProblemKind::HintMismatch => "hint-mismatch",
            ProblemKind::StrayFile => "stray-file",
            ProblemKind::UnfinishedCompaction => "unfinished-compaction",
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
/// follows it), each hint against its segment, and the files present.
/// With `quick`, sealed segments that have a valid hint are not read
/// record by record.
///
/// It takes no lock and changes nothing, so it can run beside a writer
/// (whose newest, still-growing record may then show as a torn tail).
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
/// [`Error::Io`] when the directory cannot be read; problems in the files
/// are reported, not returned as errors.
pub fn verify(dir: impl AsRef<Path>, quick: bool) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let vfs = RealFs;
    let mut report = VerifyReport::default();
    let mut names = vfs.list(dir)?;
    names.sort();
    for name in &names {
        if name == names::KEYSPACES_DIR && std::path::Path::new(&dir.join(name)).is_dir() {
            // Each keyspace is a store of its own: verify it the same way.
            let mut subs = vfs.list(&dir.join(name))?;
            subs.sort();
            for sub in subs {
                let path = dir.join(name).join(&sub);
                if !path.is_dir() {
                    report.problems.push(Problem {
                        kind: ProblemKind::StrayFile,
                        path,
                        offset: None,
                        detail: "not a keyspace directory".into(),
                    });
                    continue;
                }
                let r = verify(path, quick)?;
                report.segments += r.segments;
                report.records += r.records;
                report.hints += r.hints;
                report.problems.extend(r.problems);
            }
            continue;
        }
        let known = name == names::LOCK_FILE
            || name == crate::format::manifest::MANIFEST
            || names::parse_file_name(name).is_some();
        if name == crate::format::manifest::MANIFEST {
            report.problems.push(Problem {
                kind: ProblemKind::UnfinishedCompaction,
                path: dir.join(name),
                offset: None,
                detail: "a compaction stopped before deleting the segments this manifest names"
                    .into(),
            });
        } else if !known {
            report.problems.push(Problem {
                kind: ProblemKind::StrayFile,
                path: dir.join(name),
                offset: None,
                detail: if name.ends_with(names::TMP_SUFFIX) {
                    "temporary file left by a crash".into()
                } else {
                    "not a cairn file".into()
                },
            });
        }
    }
    let listing = recovery::list_dir(&vfs, dir)?;
    let active = recovery::find_active(&vfs, dir, &listing.segments);
    for &id in &listing.segments {
        report.segments += 1;
        let path = names::segment_path(dir, id);
        let is_active = Some(id) == active;
        let bytes = vfs.read(&path)?;
        let salt = match segment::header_info(&path, &bytes, id) {
            Ok(h) => Some(h.salt),
            Err(e) => {
                report.problems.push(problem_of(e, &path));
                None
            }
        };
        let hint_path = names::hint_path(dir, id);
        let mut hint_ok = None;
        if !is_active {
            match vfs.read(&hint_path) {
                Ok(h) => {
                    report.hints += 1;
                    if let Some(salt) = salt {
                        match hint::decode(&h, id, bytes.len() as u64, salt) {
                            Ok(h) => hint_ok = Some(h),
                            Err(hint::SEGMENT_TRUNCATED) => report.problems.push(Problem {
                                kind: ProblemKind::Corruption,
                                path: path.clone(),
                                offset: Some(bytes.len() as u64),
                                detail: "the end of the sealed segment is missing: its hint describes a longer file".into(),
                            }),
                            Err(why) => report.problems.push(Problem {
                                kind: ProblemKind::HintUnusable,
                                path: hint_path.clone(),
                                offset: None,
                                detail: why.into(),
                            }),
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    report.problems.push(Problem {
                        kind: ProblemKind::HintMissing,
                        path: hint_path.clone(),
                        offset: None,
                        detail: "sealed segment without a hint file".into(),
                    });
                }
                Err(e) => return Err(Error::Io(e)),
            }
        }
        if salt.is_none() || (quick && hint_ok.is_some()) {
            continue;
        }
        // Strict first, to classify; then salvage, to find every damaged
        // range and count the records that are fine.
        let strict = recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Strict);
        match &strict {
            Ok(load) => {
                if let Some((at, len)) = load.cut.filter(|_| !load.zero_tail) {
                    report.problems.push(Problem {
                        kind: ProblemKind::TornTail,
                        path: path.clone(),
                        offset: Some(at),
                        detail: format!(
                            "{} bytes after the last complete record (a partial write; the next open cuts them)",
                            len - at
                        ),
                    });
                }
                report.records += load.entries.len() as u64;
                if let Some(why) = hint_ok.as_ref().and_then(|h| hint_mismatch(h, load)) {
                    report.problems.push(Problem {
                        kind: ProblemKind::HintMismatch,
                        path: hint_path.clone(),
                        offset: None,
                        detail: why,
                    });
                }
            }
            Err(_) => {
                match recovery::scan_segment(&path, id, &bytes, is_active, RecoveryMode::Salvage) {
                    Ok(load) => {
                        report.records += load.entries.len() as u64;
                        for s in &load.skipped {
                            report.problems.push(Problem {
                                kind: ProblemKind::Corruption,
                                path: path.clone(),
                                offset: Some(s.offset),
                                detail: format!("{} ({} bytes)", s.reason, s.len),
                            });
                        }
                        if load.skipped.is_empty() {
                            if let Err(e) = strict {
                                report.problems.push(problem_of(e, &path));
                            }
                        }
                    }
                    Err(e) => report.problems.push(problem_of(e, &path)),
                }
            }
        }
    }
    Ok(report)
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
            Some(h) if *h != e => {
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
