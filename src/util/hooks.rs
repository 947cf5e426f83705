//! Test hooks: crash points inside compaction.

/// A crash point for tests: the compaction stops (returns an error) right
/// after this step, leaving the files as a crash there would.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompactionStop {
    /// After the output files are written but before they are fsynced.
    AfterWrite,
    /// After the outputs are renamed into place and the directory fsynced.
    AfterRename,
    /// After the keydir points at the outputs.
    AfterInstall,
    /// After the manifest is durable.
    AfterManifest,
    /// After the old segments are unlinked, before the manifest is deleted.
    AfterUnlink,
}
