//! Test hooks, compiled only with the `__test_hooks` feature: crash points
//! inside compaction and a deterministic order of file operations. A build
//! without the feature contains none of them: the compaction code calls
//! `util::crash_point!`, which expands to nothing then.

/// A crash point for tests: the compaction stops (returns an error) right
/// after this step, leaving the files as a crash there would.
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

/// The test hooks an `Options` carries.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Hooks {
    /// Where every compaction stops, as a crash there would stop it.
    pub(crate) compaction_stop: Option<CompactionStop>,
    /// File operations in a fixed order (see `Options::deterministic`).
    pub(crate) deterministic: bool,
}
