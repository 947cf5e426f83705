//! Reading and writing hint files (their format is in `format/hint.rs`).

use std::io;
use std::path::Path;

use crate::format::hint::{decode, encode, Hint, HintEntry, SEGMENT_TRUNCATED};
use crate::format::names;
use crate::format::record;
use crate::fs::Vfs;

/// Atomically writes a hint file for segment `id`: a temporary file in the
/// directory, fsync, rename over the final name, fsync the directory.
pub(crate) fn write(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
    salt: u32,
    segment_len: u64,
    max_seq: u64,
    entries: &[HintEntry],
) -> io::Result<u64> {
    let bytes = encode(id, salt, segment_len, max_seq, entries);
    vfs.write_atomic(&names::hint_path(dir, id), names::HINT_TMP_PREFIX, &bytes)?;
    vfs.sync_dir(dir)?;
    Ok(bytes.len() as u64)
}

/// Reads and checks the hint of segment `id`, if there is a usable one.
///
/// # Errors
/// The hint's own length (`Err(len)`) when it is authentic but describes a
/// longer segment than the file: the sealed segment was truncated.
pub(crate) fn read(
    vfs: &dyn Vfs,
    dir: &Path,
    id: u32,
    segment_len: u64,
    salt: u32,
) -> Result<Option<Hint>, u64> {
    let path = names::hint_path(dir, id);
    checked(&path, vfs.read(&path), id, segment_len, salt)
}

/// Checks the hint of segment `id` read from `path` (`bytes`: what reading
/// it gave), as [`read`].
///
/// # Errors
/// As [`read`].
pub(crate) fn checked(
    path: &Path,
    bytes: io::Result<Vec<u8>>,
    id: u32,
    segment_len: u64,
    salt: u32,
) -> Result<Option<Hint>, u64> {
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            log::warn!(
                "cannot read hint {}: {e}; scanning the segment",
                path.display()
            );
            return Ok(None);
        }
    };
    match decode(&bytes, id, segment_len, salt) {
        Ok(v) => Ok(Some(v)),
        Err(SEGMENT_TRUNCATED) => Err(record::le_u64(&bytes, 24)),
        Err(why) => {
            log::warn!(
                "ignoring hint {}: {why}; scanning the segment",
                path.display()
            );
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::hint::tests::sample;
    use crate::fs::RealFs;

    #[test]
    fn write_then_read() {
        let t = tempfile::tempdir().expect("tempdir");
        let n = write(&RealFs, t.path(), 3, 9, 1000, 3, &sample()).expect("write");
        assert_eq!(
            n,
            std::fs::metadata(names::hint_path(t.path(), 3))
                .expect("meta")
                .len()
        );
        let fs = RealFs;
        assert_eq!(
            read(&fs, t.path(), 3, 1000, 9).map(|h| h.map(|h| h.entries)),
            Ok(Some(sample()))
        );
        assert_eq!(read(&fs, t.path(), 3, 1001, 9), Ok(None));
        // An authentic hint of a longer segment: the segment was truncated.
        assert_eq!(read(&fs, t.path(), 3, 999, 9), Err(1000));
        assert_eq!(read(&fs, t.path(), 3, 1000, 8), Ok(None));
        assert_eq!(read(&fs, t.path(), 4, 1000, 9), Ok(None));
    }
}
