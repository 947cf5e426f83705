//! What recovery reports to the caller: [`RecoveryReport`], the
//! [`SkippedRange`]s of a salvage open, and whether the index checkpoint
//! was used ([`CheckpointUse`]).

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
    /// Whether the index came from the index checkpoint (`index.ckpt`,
    /// see [`Options::index_checkpoint_at_close`]) and, if not, why.
    ///
    /// [`Options::index_checkpoint_at_close`]: crate::Options::index_checkpoint_at_close
    pub checkpoint: CheckpointUse,
    /// Log bytes read after the checkpoint's cuts and replayed onto it
    /// ([`CheckpointUse::Replayed`]; 0 otherwise): what the open read
    /// besides the checkpoint.
    pub replayed_log_bytes: u64,
}

/// Whether an open built its index from the index checkpoint, and if not,
/// why. Every case but [`CheckpointUse::Used`] and
/// [`CheckpointUse::Replayed`] opened from hints and segments: slower,
/// never different.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointUse {
    /// There was none: the store is new, or none was written yet (see
    /// `Options::index_checkpoint_at_close` and
    /// `Options::index_checkpoint_every_bytes`).
    #[default]
    Missing,
    /// The index came from it: no hint or segment was read.
    Used,
    /// The index came from it, and the records written after it were
    /// replayed (after a crash, or a checkpoint written while the store
    /// ran; see `Options::index_checkpoint_every_bytes`).
    Replayed,
    /// It could not be read.
    Unreadable,
    /// It did not decode or a checksum failed.
    Damaged,
    /// Written by a build with another format version, slot length or
    /// hash function.
    Incompatible,
    /// The directory's files are not the ones it describes: written,
    /// compacted or repaired since, an interrupted compaction, or another
    /// store's checkpoint.
    Stale,
    /// Not tried: a snapshot opens from hints and segments.
    NotTried,
}

impl CheckpointUse {
    /// A short name: `missing`, `used`, `replayed`, `unreadable`, `damaged`,
    /// `incompatible`, `stale`, `not-tried`.
    ///
    /// ```
    /// assert_eq!(cairn::CheckpointUse::Used.name(), "used");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            CheckpointUse::Missing => "missing",
            CheckpointUse::Used => "used",
            CheckpointUse::Replayed => "replayed",
            CheckpointUse::Unreadable => "unreadable",
            CheckpointUse::Damaged => "damaged",
            CheckpointUse::Incompatible => "incompatible",
            CheckpointUse::Stale => "stale",
            CheckpointUse::NotTried => "not-tried",
        }
    }
}
