//! The names of the files in a store directory (no I/O).

use std::path::{Path, PathBuf};

/// The sub-directory of a store that holds its keyspaces.
pub const KEYSPACES_DIR: &str = "keyspaces";

/// The name of the lock file inside a store directory.
pub(crate) const LOCK_FILE: &str = "LOCK";
/// Suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".seg";
/// Suffix of hint files.
pub(crate) const HINT_SUFFIX: &str = ".hint";
/// Suffix of temporary files; any left at open are removed.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// `dir/0000000042.seg`
pub(crate) fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}{SEGMENT_SUFFIX}"))
}

/// `dir/0000000042.hint`
pub(crate) fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:010}{HINT_SUFFIX}"))
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
}
