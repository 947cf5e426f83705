//! What recovery reports to the caller: [`RecoveryReport`] and the
//! [`SkippedRange`]s of a salvage open.

use std::path::PathBuf;

/// A damaged byte range that salvage mode skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRange {
    /// The file.
    pub path: PathBuf,
    /// First damaged byte.
    pub offset: u64,
    /// Number of bytes skipped.
    pub len: u64,
    /// Why the bytes were rejected.
    pub reason: String,
}

/// What recovery found and did when the store was opened.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments loaded from a valid hint file.
    pub segments_from_hints: u32,
    /// Segments scanned record by record.
    pub segments_scanned: u32,
    /// A torn tail cut off the active segment: `(file, offset it was cut at, bytes removed)`.
    pub truncated_tail: Option<(PathBuf, u64, u64)>,
    /// Records in an uncommitted batch at the end of the log that were discarded.
    pub discarded_batch_records: u64,
    /// Damaged ranges skipped in [`RecoveryMode::Salvage`](crate::RecoveryMode::Salvage).
    pub skipped: Vec<SkippedRange>,
    /// Stray temporary files removed.
    pub removed_temp_files: u32,
    /// A compaction that stopped after deciding to delete its old segments
    /// was finished (the old segments were deleted).
    pub finished_compaction: bool,
}
