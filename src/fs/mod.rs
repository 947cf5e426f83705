//! The file layer: every file-system operation cairn performs goes through
//! [`Vfs`] and [`VFile`].
//!
//! Production uses [`RealFs`], a thin wrapper over `std::fs` (plus
//! `tempfile` for atomic replacement). Tests plug in
//! `SimFs` (the `cairn-sim` crate in `crates/`), which keeps files in
//! memory, tracks which bytes and directory entries are durable, and can
//! simulate a power loss or inject I/O errors at any operation.
//!
//! The traits are public as `cairn::vfs` behind the unstable `unstable-vfs`
//! feature only; they are not part of the stable API.

use std::any::Any;
use std::fmt;
use std::fs::{File, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::format::names;

pub(crate) mod mmap;

/// Permission bits for files cairn creates (owner read/write).
pub(crate) const FILE_MODE: u32 = 0o600;
/// Permission bits for directories cairn creates (owner only).
pub(crate) const DIR_MODE: u32 = 0o700;

/// How [`Vfs::open`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// An existing file, read-only.
    Read,
    /// An existing file, for reading and writing.
    ReadWrite,
    /// A new private file (0600) that must not exist yet.
    CreateNew,
    /// An existing file, or a new private one, for reading and writing
    /// (cairn itself does not use it; other file layers may).
    #[cfg_attr(not(feature = "unstable-vfs"), allow(dead_code))]
    OpenOrCreate,
}

/// A held directory lock; dropping it releases the lock.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// Creates `dir` and fsyncs its parent, so that the new directory's entry
/// survives a power loss too; missing ancestors are created one by one,
/// outermost first, each followed by an fsync of its own parent (else a
/// power loss could forget an ancestor, and `dir` with it).
///
/// # Errors
/// Any I/O error.
pub(crate) fn create_dir_durably(vfs: &dyn Vfs, dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|a| a.parent().is_some() && !a.as_os_str().is_empty() && !vfs.exists(a))
        .collect();
    for ancestor in missing.into_iter().rev() {
        vfs.create_dir_all(ancestor)?;
        vfs.sync_dir(parent_dir(ancestor))?;
    }
    vfs.create_dir_all(dir)?;
    vfs.sync_dir(parent_dir(dir))
}

/// The directory that holds `path`: its parent, or `.` for a bare relative
/// name such as `g` (whose parent is the empty path, which cannot be
/// opened or fsynced).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `e` with `path` in front of its message, of the same
/// [`io::ErrorKind`], so that every I/O error names the file it is about.
///
/// The OS error code (`raw_os_error`) is not kept: callers match on the
/// kind. A message that names `path` already is kept as it is, so that a
/// path is never shown twice.
pub(crate) fn named(path: &Path, e: &io::Error) -> io::Error {
    let msg = e.to_string();
    let shown = path.display().to_string();
    if msg.contains(&shown) {
        io::Error::new(e.kind(), msg)
    } else {
        io::Error::new(e.kind(), format!("{shown}: {msg}"))
    }
}

/// An error of `kind` about `file`, named when the file knows its path.
fn file_error(file: &dyn VFile, kind: io::ErrorKind) -> io::Error {
    let e = io::Error::from(kind);
    match file.path() {
        Some(path) => named(path, &e),
        None => e,
    }
}

/// A file system, as cairn uses it.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Whether `path` exists.
    fn exists(&self, path: &Path) -> bool;
    /// Creates `dir` and its missing parents, owner-only (0700).
    ///
    /// # Errors
    /// Any I/O error.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries of `dir` (names that are not UTF-8 are
    /// left out: cairn never creates them).
    ///
    /// # Errors
    /// Any I/O error.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens a file.
    ///
    /// # Errors
    /// Any I/O error; `NotFound` when the file is missing.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>>;
    /// Renames `from` to `to`, replacing `to`.
    ///
    /// # Errors
    /// Any I/O error.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    ///
    /// # Errors
    /// Any I/O error; `NotFound` when the file is missing.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the creations, renames and deletions in `dir` durable.
    ///
    /// # Errors
    /// Any I/O error.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the lock file at `path` (created 0600 if missing, unless
    /// `shared` and it does not exist). `None` when another handle holds it.
    ///
    /// # Errors
    /// Any I/O error.
    fn try_lock(&self, path: &Path, shared: bool) -> io::Result<Option<LockGuard>>;

    /// Makes `to` a new name (a hard link) for the existing file `from`;
    /// `to` must not exist. The caller fsyncs `to`'s directory. Backups use
    /// it for files that never change (sealed segments, hints) and copy
    /// when it fails. The default says it is unsupported.
    ///
    /// # Errors
    /// Any I/O error; `NotFound` when `from` is missing, `Unsupported`
    /// when the file system has no hard links.
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let _ = (from, to);
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Atomically replaces `path` with a file holding `bytes`: a temporary
    /// file in the same directory (named `tmp_prefix`, 8 random letters or
    /// digits, `.tmp`), written, fsynced and renamed over `path`. The caller
    /// fsyncs the directory. Open removes a temporary file left by a crash
    /// only if its name is one of cairn's own, so `tmp_prefix` is one of
    /// the prefixes in `format/names.rs`.
    ///
    /// # Errors
    /// Any I/O error; the temporary file is removed on failure when possible.
    fn write_atomic(&self, path: &Path, tmp_prefix: &str, bytes: &[u8]) -> io::Result<()> {
        let dir = parent_dir(path);
        let tmp = dir.join(format!(
            "{tmp_prefix}{:08x}{}",
            crate::util::rand::new_salt(0),
            names::TMP_SUFFIX
        ));
        let result = (|| {
            let f = self.open(&tmp, OpenMode::CreateNew)?;
            write_all_at(&*f, bytes, 0)?;
            f.sync_all()?;
            drop(f);
            self.rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = self.remove_file(&tmp);
        }
        result
    }

    /// Reads a whole file.
    ///
    /// # Errors
    /// Any I/O error.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let f = self.open(path, OpenMode::Read)?;
        let len = usize::try_from(f.len()?).map_err(|_| io::ErrorKind::OutOfMemory)?;
        let mut buf = vec![0u8; len];
        read_exact_at(&*f, &mut buf, 0)?;
        Ok(buf)
    }
}

/// An open file.
#[allow(clippy::len_without_is_empty)]
pub trait VFile: Send + Sync + fmt::Debug {
    /// Reads at `offset`; returns how many bytes were read (0 at the end).
    ///
    /// # Errors
    /// Any I/O error.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes at `offset`; returns how many bytes were written.
    ///
    /// # Errors
    /// Any I/O error.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`.
    ///
    /// # Errors
    /// Any I/O error. The unsynced data may be lost: never retry.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`.
    ///
    /// # Errors
    /// Any I/O error. The unsynced data may be lost: never retry.
    fn sync_all(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    ///
    /// # Errors
    /// Any I/O error.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's length.
    ///
    /// # Errors
    /// Any I/O error.
    fn len(&self) -> io::Result<u64>;
    /// The real file behind this one, if any (for memory maps).
    fn as_std(&self) -> Option<&File> {
        None
    }
    /// The file's path, if known: errors that [`read_exact_at`] and
    /// [`write_all_at`] make up themselves (an unexpected end of file, a
    /// write of zero bytes) name it.
    fn path(&self) -> Option<&Path> {
        None
    }
}

/// Writes all of `buf` at `offset`.
///
/// # Errors
/// Any I/O error; `WriteZero` when the file takes no more bytes.
pub fn write_all_at(file: &dyn VFile, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, offset) {
            Ok(0) => return Err(file_error(file, io::ErrorKind::WriteZero)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes at `offset`.
///
/// # Errors
/// Any I/O error; `UnexpectedEof` when the file is shorter.
pub fn read_exact_at(file: &dyn VFile, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(file_error(file, io::ErrorKind::UnexpectedEof)),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads `file` from its start up to the length it has when the read
/// starts. A file that another process shortens meanwhile (a writer
/// sealing its active segment cuts off the preallocated zeros) gives the
/// bytes that are left instead of failing.
///
/// # Errors
/// Any I/O error.
pub(crate) fn read_to_end(file: &dyn VFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?).map_err(|_| io::ErrorKind::OutOfMemory)?;
    let mut buf = vec![0u8; len];
    let mut at = 0;
    while at < len {
        match file.read_at(&mut buf[at..], at as u64) {
            Ok(0) => break,
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(at);
    Ok(buf)
}

/// The real file system. Every error it returns names the file or
/// directory it is about, and keeps the [`io::ErrorKind`].
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

/// A real file, with its path for error messages.
#[derive(Debug)]
struct RealFile {
    file: File,
    path: PathBuf,
}

impl RealFile {
    /// `r` with the file's path in its error.
    #[inline]
    fn named<T>(&self, r: io::Result<T>) -> io::Result<T> {
        r.map_err(|e| named(&self.path, &e))
    }
}

impl VFile for RealFile {
    #[inline]
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::read_at(&self.file, buf, offset);
        #[cfg(windows)]
        let r = std::os::windows::fs::FileExt::seek_read(&self.file, buf, offset);
        self.named(r)
    }

    #[inline]
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        #[cfg(unix)]
        let r = std::os::unix::fs::FileExt::write_at(&self.file, buf, offset);
        #[cfg(windows)]
        let r = std::os::windows::fs::FileExt::seek_write(&self.file, buf, offset);
        self.named(r)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.named(self.file.sync_data())
    }

    fn sync_all(&self) -> io::Result<()> {
        self.named(self.file.sync_all())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.named(self.file.set_len(len))
    }

    fn len(&self) -> io::Result<u64> {
        self.named(self.file.metadata()).map(|m| m.len())
    }

    fn as_std(&self) -> Option<&File> {
        Some(&self.file)
    }

    fn path(&self) -> Option<&Path> {
        Some(&self.path)
    }
}

impl Vfs for RealFs {
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(DIR_MODE);
        }
        b.create(dir).map_err(|e| named(dir, &e))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        let name_dir = |e| named(dir, &e);
        for ent in std::fs::read_dir(dir).map_err(name_dir)? {
            if let Ok(name) = ent.map_err(name_dir)?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut o = std::fs::OpenOptions::new();
        match mode {
            OpenMode::Read => o.read(true),
            OpenMode::ReadWrite => o.read(true).write(true),
            OpenMode::CreateNew => o.read(true).write(true).create_new(true),
            OpenMode::OpenOrCreate => o.read(true).write(true).create(true).truncate(false),
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            o.mode(FILE_MODE);
        }
        let file = o.open(path).map_err(|e| named(path, &e))?;
        Ok(Arc::new(RealFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("renaming {} to {}: {e}", from.display(), to.display()),
            )
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path).map_err(|e| named(path, &e))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        #[cfg(unix)]
        {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| named(dir, &e))
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(())
        }
    }

    fn try_lock(&self, path: &Path, shared: bool) -> io::Result<Option<LockGuard>> {
        let name_lock = |e| named(path, &e);
        let file = if shared && path.exists() {
            File::open(path).map_err(name_lock)?
        } else {
            let mut o = std::fs::OpenOptions::new();
            o.read(true).write(true).create(true).truncate(false);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                o.mode(FILE_MODE);
            }
            o.open(path).map_err(name_lock)?
        };
        let locked = if shared {
            file.try_lock_shared()
        } else {
            file.try_lock()
        };
        match locked {
            Ok(()) => Ok(Some(Box::new(file))),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(name_lock(e)),
        }
    }

    fn write_atomic(&self, path: &Path, tmp_prefix: &str, bytes: &[u8]) -> io::Result<()> {
        // tempfile creates the file 0600 with a unique name, and removes it
        // if anything below fails.
        let dir = parent_dir(path);
        let mut tmp = tempfile::Builder::new()
            .prefix(tmp_prefix)
            .rand_bytes(names::TMP_RANDOM_LEN)
            .suffix(names::TMP_SUFFIX)
            .tempfile_in(dir)
            .map_err(|e| named(dir, &e))?;
        let written = tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all());
        written.map_err(|e| named(tmp.path(), &e))?;
        tmp.persist(path).map_err(|e| named(path, &e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Asserts that `r` failed with `kind` and a message naming `path`.
    fn names<T: fmt::Debug>(r: io::Result<T>, kind: io::ErrorKind, path: &Path) {
        let e = r.expect_err("an error");
        assert_eq!(e.kind(), kind, "{e}");
        let text = e.to_string();
        assert!(text.contains(&*path.to_string_lossy()), "{text}");
    }

    #[test]
    fn real_fs_errors_name_their_file_and_keep_their_kind() {
        use io::ErrorKind::{IsADirectory, NotFound, UnexpectedEof};
        let t = tempfile::tempdir().expect("tempdir");
        let missing = t.path().join("0000000007.seg");
        names(RealFs.open(&missing, OpenMode::Read), NotFound, &missing);
        names(RealFs.read(&missing), NotFound, &missing);
        names(RealFs.remove_file(&missing), NotFound, &missing);
        names(RealFs.list(&missing), NotFound, &missing);
        names(RealFs.sync_dir(&missing), NotFound, &missing);
        names(
            RealFs.rename(&missing, &t.path().join("b")),
            NotFound,
            &missing,
        );
        let in_missing = missing.join("x.hint");
        names(
            RealFs.write_atomic(&in_missing, ".h-", b"x"),
            NotFound,
            &missing,
        );
        names(RealFs.try_lock(&in_missing, false), NotFound, &in_missing);

        // A directory where a file should be: open succeeds on Linux, the
        // read fails.
        let dir = t.path().join("0000000008.seg");
        RealFs.create_dir_all(&dir).expect("mkdir");
        match RealFs.open(&dir, OpenMode::Read) {
            Ok(f) => names(f.read_at(&mut [0u8; 8], 0), IsADirectory, &dir),
            Err(e) => assert!(e.to_string().contains(&*dir.to_string_lossy()), "{e}"),
        }

        // A file shorter than a read: the end of file names it too.
        let short = t.path().join("0000000009.seg");
        let f = RealFs.open(&short, OpenMode::CreateNew).expect("create");
        write_all_at(&*f, b"abc", 0).expect("write");
        names(read_exact_at(&*f, &mut [0u8; 8], 0), UnexpectedEof, &short);
    }

    #[cfg(unix)]
    #[test]
    fn created_files_are_private() {
        use crate::format::names::LOCK_FILE;
        use std::fs;
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/b");
        RealFs.create_dir_all(&d).expect("mkdir");
        let m = fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o700);
        let f = d.join("f");
        RealFs.open(&f, OpenMode::CreateNew).expect("create");
        let m = fs::metadata(&f).expect("meta").permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
        RealFs
            .write_atomic(&d.join("g"), ".g-", b"x")
            .expect("atomic");
        let m = fs::metadata(d.join("g"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o600);
        drop(RealFs.try_lock(&d.join(LOCK_FILE), false).expect("lock"));
        let m = fs::metadata(d.join(LOCK_FILE))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(m, 0o600);
    }
}
