//! The names of the files in a store directory (no I/O).

use std::path::{Path, PathBuf};

use crate::format::manifest::MANIFEST;

/// The sub-directory of a store that holds its keyspaces.
pub const KEYSPACES_DIR: &str = "keyspaces";

/// The name of the lock file inside a store directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// The marker a backup holds until it is complete and durable.
pub(crate) const BACKUP_INCOMPLETE: &str = "BACKUP-INCOMPLETE";
/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of hint files.
pub(crate) const HINT_SUFFIX: &str = ".hint";
/// Suffix of temporary files. Only the temporary files cairn names (see
/// [`is_temp_file`]) are removed at open, never any other `.tmp` file.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// Prefix of the temporary file a hint is written to before its rename.
pub(crate) const HINT_TMP_PREFIX: &str = ".hint-";
/// Prefix of the temporary file the compaction manifest is written to.
pub(crate) const MANIFEST_TMP_PREFIX: &str = ".manifest-";
/// Prefix of the temporary file `repair` writes a new segment to.
pub(crate) const REPAIR_TMP_PREFIX: &str = ".repair-";
/// The index checkpoint (`format/checkpoint.rs`): written at a clean close,
/// deleted by the next writable open before it writes anything.
pub(crate) const CHECKPOINT_FILE: &str = "index.ckpt";
/// Prefix of the temporary file the index checkpoint is written to.
pub(crate) const CHECKPOINT_TMP_PREFIX: &str = ".ckpt-";
/// Prefix of a compaction output segment until it is renamed into place.
const COMPACT_TMP_PREFIX: &str = ".compact-";
/// The length of the random part of an atomic write's temporary file name
/// (`Vfs::write_atomic`): 8 letters or digits (earlier versions of cairn
/// left tempfile's default of 6).
pub(crate) const TMP_RANDOM_LEN: usize = 8;

/// `dir/0000000042.seg`
pub(crate) fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}{SEGMENT_SUFFIX}"))
}

/// `dir/0000000042.hint`
pub(crate) fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}{HINT_SUFFIX}"))
}

/// `dir/.compact-0000000042.tmp`: compaction output segment 42 while it is
/// being written.
pub(crate) fn compact_temp_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{COMPACT_TMP_PREFIX}{id:010}{TMP_SUFFIX}"))
}

/// Whether `name` is one of the temporary files cairn writes, exactly:
/// `.compact-` and a 10-digit id, or `.hint-`, `.manifest-`, `.repair-` or `.ckpt-`
/// and 6 to 8 ASCII letters or digits (what `Vfs::write_atomic` adds),
/// each followed by `.tmp`. Open removes these, and only these.
pub(crate) fn is_temp_file(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(TMP_SUFFIX) else {
        return false;
    };
    if let Some(id) = stem.strip_prefix(COMPACT_TMP_PREFIX) {
        return id.len() == 10 && id.bytes().all(|b| b.is_ascii_digit());
    }
    [
        HINT_TMP_PREFIX,
        MANIFEST_TMP_PREFIX,
        REPAIR_TMP_PREFIX,
        CHECKPOINT_TMP_PREFIX,
    ]
    .iter()
    .filter_map(|p| stem.strip_prefix(p))
    .any(|r| {
        (6..=TMP_RANDOM_LEN).contains(&r.len()) && r.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// Whether `name`, an entry of a directory, is one cairn puts in a store
/// directory: the lock, a segment, a hint, the compaction manifest, the
/// keyspaces directory, the index checkpoint, one of its temporary files or
/// the marker of a backup being written.
pub(crate) fn is_store_entry(name: &str) -> bool {
    name == LOCK_FILE
        || name == BACKUP_INCOMPLETE
        || name == CHECKPOINT_FILE
        || is_store_evidence(name)
        || is_temp_file(name)
}

/// Whether the entry `name` shows that its directory is a store: a
/// segment, a hint, the compaction manifest or the keyspaces directory. (A
/// `LOCK` alone is no proof: other databases name their lock file so too.)
pub(crate) fn is_store_evidence(name: &str) -> bool {
    name == KEYSPACES_DIR || name == MANIFEST || parse_file_name(name).is_some()
}

/// Parses `0000000042.seg` or `0000000042.hint` into `(42, suffix)`.
pub(crate) fn parse_file_name(name: &str) -> Option<(u32, &'static str)> {
    for suffix in [SEGMENT_SUFFIX, HINT_SUFFIX] {
        if let Some(stem) = name.strip_suffix(suffix) {
            if stem.len() == 10 && stem.bytes().all(|b| b.is_ascii_digit()) {
                return stem.parse().ok().map(|id| (id, suffix));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = Path::new("/x");
        let p = segment_path(d, 42);
        assert_eq!(p, Path::new("/x/0000000042.seg"));
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        assert_eq!(parse_file_name(name), Some((42, SEGMENT_SUFFIX)));
        assert_eq!(parse_file_name("0000000042.hint"), Some((42, HINT_SUFFIX)));
        assert_eq!(parse_file_name("42.seg"), None);
        assert_eq!(parse_file_name("00000000x2.seg"), None);
        assert_eq!(parse_file_name("0000000042.seg.tmp"), None);
    }

    #[test]
    fn only_cairns_own_temporary_files_are_temporary() {
        let compact = compact_temp_path(Path::new("/x"), 42);
        let name = compact
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert_eq!(name, ".compact-0000000042.tmp");
        for ours in [
            name,
            ".hint-Ab3xYz.tmp",
            ".hint-0123abcd.tmp",
            ".manifest-a1B2c3.tmp",
            ".repair-zzzzzzzz.tmp",
            ".ckpt-a1B2c3d4.tmp",
        ] {
            assert!(is_temp_file(ours), "{ours}");
            assert!(is_store_entry(ours), "{ours}");
        }
        for theirs in [
            "report.tmp",
            ".tmp",
            "x.tmp",
            ".hint-.tmp",
            ".hint-abc.tmp",
            ".hint-abcdefghi.tmp",
            ".hint-ab-def.tmp",
            ".compact-42.tmp",
            ".compact-000000004x.tmp",
            "0000000042.seg.tmp",
            ".hint-Ab3xYz.tmp.swp",
            "hint-Ab3xYz.tmp",
        ] {
            assert!(!is_temp_file(theirs), "{theirs}");
        }
    }

    #[test]
    fn store_entries() {
        for e in [
            "LOCK",
            "0000000001.seg",
            "0000000001.hint",
            "COMPACTION",
            "keyspaces",
            "index.ckpt",
        ] {
            assert!(is_store_entry(e), "{e}");
        }
        assert!(!is_store_evidence("LOCK"));
        for e in ["report.tmp", ".git", "README.md", "CURRENT", "1.seg"] {
            assert!(!is_store_entry(e), "{e}");
        }
    }
}
