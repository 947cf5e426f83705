//! Small file-system helpers: private permissions, directory fsync, names.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

/// Permission bits for files cairn creates (owner read/write).
pub(crate) const FILE_MODE: u32 = 0o600;
/// Permission bits for directories cairn creates (owner only).
pub(crate) const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) with owner-only permissions.
pub(crate) fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(DIR_MODE);
    }
    b.create(dir)
}

/// Options for creating a new private file that must not exist yet.
pub(crate) fn create_new_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o.open(path)
}

/// Opens (creating if needed) a private file for reading and writing.
pub(crate) fn open_or_create_private(path: &Path) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(FILE_MODE);
    }
    o.open(path)
}

/// Makes the directory entries of `dir` durable (creations, renames and
/// deletions inside it).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Writes all of `buf` at `offset`.
pub(crate) fn write_all_at(file: &File, buf: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.write_all_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0usize;
        while done < buf.len() {
            let n = file.seek_write(&buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            done += n;
        }
        Ok(())
    }
}

/// Reads exactly `buf.len()` bytes at `offset`.
pub(crate) fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(buf, offset)
    }
    #[cfg(windows)]
    {
        use std::os::windows::fs::FileExt;
        let mut done = 0usize;
        while done < buf.len() {
            let n = file.seek_read(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            done += n;
        }
        Ok(())
    }
}

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

    #[cfg(unix)]
    #[test]
    fn created_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        create_dir_private(&d).expect("mkdir");
        let m = fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o700);
        let f = d.join("f");
        create_new_private(&f).expect("create");
        let m = fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
}
