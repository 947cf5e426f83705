//! Backups of store directories: the destination (checked, and marked
//! incomplete until everything in it is durable), linking or copying
//! files, and the lock-free copy of a store that another process may be
//! writing. The in-process backup of an open store
//! ([`Db::backup_to`](crate::Db::backup_to)) uses these pieces too; its
//! engine side is in `engine/backup.rs`. docs/design.md, "Backups", says
//! why each step is safe.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::manifest::{self as manifest_format, MANIFEST};
use crate::format::names::{self, KEYSPACES_DIR};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, RealFs, VFile, Vfs};
use crate::options::RecoveryMode;
use crate::recovery::{self, Listing};

/// The file inside a backup directory that says the backup is not complete
/// yet. It is the first file a backup creates and the last it removes; a
/// store directory holding it does not open.
pub(crate) use crate::format::names::BACKUP_INCOMPLETE as INCOMPLETE_MARKER;

/// How often the lock-free copy lists the store again when the store
/// changed under it (a compaction, usually) before it gives up.
const MAX_ATTEMPTS: u32 = 40;

/// The largest piece of a file copied at once.
const COPY_CHUNK: usize = 1 << 20;

/// What a backup did, from [`Db::backup_to`](crate::Db::backup_to) or
/// [`backup`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Files (sealed segments and hints) that became hard links to the
    /// store's own files: no bytes copied.
    pub files_linked: u64,
    /// Files copied: the active segment of each store, and every file that
    /// could not be linked (another file system, or no hard links).
    pub files_copied: u64,
    /// Bytes copied.
    pub bytes_copied: u64,
    /// Keyspaces backed up (each a store of its own under `keyspaces/`).
    pub keyspaces: u32,
    /// Times the lock-free copy found the store changed under it (a
    /// compaction deleting segments) and listed it again.
    pub retries: u32,
}

/// Makes a consistent copy of the store in `store` (and its keyspaces) in
/// `dest`, without taking the store's lock: for a store that another
/// process holds open and keeps writing. Sealed segments and hints become
/// hard links (copies across file systems); each store's active segment is
/// copied up to its last complete record. The copy holds every write that
/// was acknowledged under a syncing policy (or covered by a completed
/// `sync`) before the call, opens with strict recovery and verifies clean.
///
/// `dest` must not exist or be an empty directory. It is created owner-only
/// and holds a `BACKUP-INCOMPLETE` marker until the copy is complete and
/// durable: a backup cut short by a crash or an error does not open
/// ([`Error::IncompleteBackup`]). In the process that holds the store, use
/// [`Db::backup_to`](crate::Db::backup_to) instead.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path().join("store"))?;
/// db.put("k", "v")?;
/// // Another process would do this while the store is open elsewhere.
/// let report = cairn::backup(dir.path().join("store"), dir.path().join("copy"))?;
/// assert!(report.files_copied >= 1);
/// drop(db);
/// let copy = cairn::Db::open(dir.path().join("copy"))?;
/// assert_eq!(copy.get("k")?, Some(b"v".to_vec()));
/// # Ok::<(), cairn::Error>(())
/// ```
///
/// # Errors
/// [`Error::BackupDestination`] when `dest` exists and is not an empty
/// directory, or lies inside `store` (nothing is written);
/// [`Error::NotAStore`] when `store` holds files and none of cairn's;
/// [`Error::IncompleteBackup`] when `store` (or one of its keyspaces) is a
/// backup that was cut short; [`Error::Io`] when `store` is missing or
/// empty, when it cannot be read, the copy cannot be written, or the store
/// kept changing through every attempt (try again); the destination then
/// keeps its marker.
pub fn backup(store: impl AsRef<Path>, dest: impl AsRef<Path>) -> Result<BackupReport> {
    let (store, dest) = (store.as_ref(), dest.as_ref());
    let vfs = RealFs;
    check_source(&vfs, store)?;
    begin(&vfs, store, dest)?;
    let mut report = BackupReport::default();
    copy_store_tree(&vfs, store, dest, &mut report)?;
    finish(&vfs, dest)?;
    Ok(report)
}

/// Checks that `dest` does not exist or is an empty directory (and is not
/// inside `store`, as far as the paths show), creates it
/// (0700) and puts the incomplete marker in it, durably, before anything
/// else goes in.
pub(crate) fn begin(vfs: &dyn Vfs, store: &Path, dest: &Path) -> Result<()> {
    let bad = |reason: String| Error::BackupDestination {
        path: dest.to_path_buf(),
        reason,
    };
    if inside(dest, store) {
        return Err(bad(format!(
            "it is inside the store {} it would copy",
            store.display()
        )));
    }
    if vfs.exists(dest) {
        let entries = vfs
            .list(dest)
            .map_err(|e| bad(format!("it exists and is not a directory ({e})")))?;
        if entries.iter().any(|n| n == INCOMPLETE_MARKER) {
            return Err(bad(
                "it holds an incomplete backup; delete it first".to_string()
            ));
        }
        if !entries.is_empty() {
            return Err(bad(
                "it exists and is not empty; give a new or empty directory".to_string(),
            ));
        }
    }
    fs::create_dir_durably(vfs, dest)?;
    let marker = vfs.open(&dest.join(INCOMPLETE_MARKER), OpenMode::CreateNew)?;
    marker.sync_all()?;
    drop(marker);
    vfs.sync_dir(dest)?;
    Ok(())
}

/// Whether `dest` lies inside `store`: by the paths as given, or, where
/// they exist on the real file system, as resolved (`./data/b` is inside
/// `data`; so is `data/new/b` before `data/new` exists). A guard against a
/// mistake, not a security check.
fn inside(dest: &Path, store: &Path) -> bool {
    if dest.starts_with(store) {
        return true;
    }
    let Ok(store) = std::fs::canonicalize(store) else {
        return false;
    };
    // The nearest ancestor of `dest` that exists, resolved, with the rest
    // of `dest` (not created yet) appended.
    let dest = std::path::absolute(dest).unwrap_or_else(|_| dest.to_path_buf());
    for ancestor in dest.ancestors() {
        if let Ok(resolved) = std::fs::canonicalize(ancestor) {
            let rest = dest.strip_prefix(ancestor).unwrap_or(Path::new(""));
            return resolved.join(rest).starts_with(&store);
        }
    }
    false
}

/// Checks that `store`, the source of a lock-free backup, is a store: it
/// exists, is not empty, holds cairn's files (the rule open uses) and is
/// not a backup cut short.
fn check_source(vfs: &dyn Vfs, store: &Path) -> Result<()> {
    let entries = vfs.list(store).map_err(|e| {
        let e = fs::named(store, &e);
        Error::Io(io::Error::new(
            e.kind(),
            format!("cannot read the store directory: {e}"),
        ))
    })?;
    if entries.is_empty() {
        return Err(Error::Io(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is empty: there is no store to back up", store.display()),
        )));
    }
    if !recovery::is_store(&entries) {
        return Err(Error::NotAStore {
            path: store.to_path_buf(),
        });
    }
    check_complete(vfs, store)
}

/// Makes the backup complete: every entry of `dest` durable, then the
/// marker removed, durably. (Each store's own directory was synced after
/// its files were.)
pub(crate) fn finish(vfs: &dyn Vfs, dest: &Path) -> Result<()> {
    vfs.sync_dir(dest)?;
    vfs.remove_file(&dest.join(INCOMPLETE_MARKER))?;
    vfs.sync_dir(dest)?;
    Ok(())
}

/// Refuses a directory that holds an incomplete backup, or a keyspace of
/// one: only the backup's top directory holds the marker, so each
/// `<dir>/keyspaces/<name>` above `dir` (as the path spells it, made
/// absolute) is checked too.
pub(crate) fn check_complete(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    let refuse = |path: &Path| Error::IncompleteBackup {
        path: path.to_path_buf(),
    };
    if vfs.exists(&dir.join(INCOMPLETE_MARKER)) {
        return Err(refuse(dir));
    }
    let mut at = lexical_absolute(dir);
    while let Some(parent) = at.parent() {
        if parent.file_name().is_none_or(|n| n != KEYSPACES_DIR) {
            break;
        }
        let Some(owner) = parent.parent() else { break };
        if vfs.exists(&owner.join(INCOMPLETE_MARKER)) {
            return Err(refuse(owner));
        }
        at = owner.to_path_buf();
    }
    Ok(())
}

/// `path` made absolute (against the current directory) with `.` and `..`
/// resolved by the names alone, as far as that can be done.
fn lexical_absolute(path: &Path) -> PathBuf {
    use std::path::Component;
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for c in full.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push(c);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// Creates a directory of the backup (`keyspaces/`), owner-only, with a
/// durable entry, unless it exists.
pub(crate) fn keyspaces_dir(vfs: &dyn Vfs, dir: &Path) -> Result<()> {
    if !vfs.exists(dir) {
        fs::create_dir_durably(vfs, dir)?;
    }
    Ok(())
}

/// Creates the directory of one store inside the backup (the backup itself
/// or `keyspaces/<name>`), owner-only, with a durable entry, and its empty
/// `LOCK` file, as an open would (`Db::keyspace_names` lists the keyspaces
/// that have one). The caller fsyncs `dest` once the store's files are in.
pub(crate) fn store_dir(vfs: &dyn Vfs, dest: &Path) -> Result<()> {
    keyspaces_dir(vfs, dest)?;
    match vfs.open(&dest.join(names::LOCK_FILE), OpenMode::CreateNew) {
        Ok(f) => f.sync_all()?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::Io(e)),
    }
    Ok(())
}

/// Makes `to` a hard link to `from` (a file that never changes), or a copy
/// when linking fails for any reason but `from` missing (another file
/// system, no hard links); then fsyncs it. `NotFound` when `from` is gone.
pub(crate) fn link_or_copy(
    vfs: &dyn Vfs,
    from: &Path,
    to: &Path,
    report: &mut BackupReport,
) -> io::Result<()> {
    match vfs.hard_link(from, to) {
        Ok(()) => {
            vfs.open(to, OpenMode::Read)?.sync_all()?;
            report.files_linked += 1;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(e),
        Err(e) => {
            log::debug!(
                "could not link {} ({e}); copying it instead",
                from.display()
            );
            let src = vfs.open(from, OpenMode::Read)?;
            let len = src.len()?;
            copy_prefix(vfs, &*src, to, len, report)
        }
    }
}

/// Copies the first `len` bytes of `src` into the new file `to` (0600) and
/// fsyncs it.
pub(crate) fn copy_prefix(
    vfs: &dyn Vfs,
    src: &dyn VFile,
    to: &Path,
    len: u64,
    report: &mut BackupReport,
) -> io::Result<()> {
    let out = vfs.open(to, OpenMode::CreateNew)?;
    let mut buf = vec![0u8; COPY_CHUNK.min(usize::try_from(len).unwrap_or(COPY_CHUNK))];
    let mut at = 0u64;
    while at < len {
        let n = buf
            .len()
            .min(usize::try_from(len - at).unwrap_or(buf.len()));
        fs::read_exact_at(src, &mut buf[..n], at).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "reading {} bytes at offset {at} to copy into {}: {e}",
                    n,
                    to.display()
                ),
            )
        })?;
        fs::write_all_at(&*out, &buf[..n], at)?;
        at += n as u64;
    }
    out.sync_all()?;
    report.files_copied += 1;
    report.bytes_copied += len;
    Ok(())
}

/// The lock-free copy of the store in `src` into `dest`, then of each of its
/// keyspaces into `dest/keyspaces/<name>`.
pub(crate) fn copy_store_tree(
    vfs: &dyn Vfs,
    src: &Path,
    dest: &Path,
    report: &mut BackupReport,
) -> Result<()> {
    // A backup cut short (or a keyspace of one) is not copied: the copy
    // would look complete.
    check_complete(vfs, src)?;
    copy_store_files(vfs, src, dest, report)?;
    let ks_src = src.join(KEYSPACES_DIR);
    let Ok(mut names) = vfs.list(&ks_src) else {
        return Ok(());
    };
    names.sort();
    let ks_dest = dest.join(KEYSPACES_DIR);
    keyspaces_dir(vfs, &ks_dest)?;
    for name in names {
        let from = ks_src.join(&name);
        if vfs.list(&from).is_err() {
            continue; // not a directory: not a keyspace
        }
        copy_store_tree(vfs, &from, &ks_dest.join(&name), report)?;
        report.keyspaces += 1;
    }
    vfs.sync_dir(&ks_dest)?;
    Ok(())
}

/// The lock-free copy of one store directory (without its keyspaces): lists
/// it until the listing is consistent, links what is sealed, copies the
/// active segment up to its last complete record, and starts over (after a
/// short sleep, a bounded number of times) when a file vanished meanwhile.
pub(crate) fn copy_store_files(
    vfs: &dyn Vfs,
    src: &Path,
    dest: &Path,
    report: &mut BackupReport,
) -> Result<()> {
    store_dir(vfs, dest)?;
    for attempt in 0..MAX_ATTEMPTS {
        if attempt > 0 {
            report.retries += 1;
            std::thread::sleep(Duration::from_millis(1 << attempt.min(6)));
        }
        let mut created = Vec::new();
        let last = attempt + 1 == MAX_ATTEMPTS;
        if copy_once(vfs, src, dest, &mut created, report, last)? {
            vfs.sync_dir(dest)?;
            return Ok(());
        }
        for path in created {
            if let Err(e) = vfs.remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    return Err(Error::Io(e));
                }
            }
        }
    }
    Err(Error::Io(io::Error::other(format!(
        "the store {} kept changing while it was being backed up ({MAX_ATTEMPTS} attempts); try again",
        src.display()
    ))))
}

/// The `COMPACTION` manifest's inputs, if there is a readable one.
fn read_manifest(vfs: &dyn Vfs, dir: &Path) -> io::Result<Option<Vec<u32>>> {
    match vfs.read(&dir.join(MANIFEST)) {
        Ok(b) => Ok(manifest_format::decode(&b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// A listing of `src` that a running compaction cannot have made
/// inconsistent, or `None` (list again). Reading a directory while files
/// come and go may miss some of them, so: the manifest is read before,
/// between and after two listings and must be the same each time, and both
/// listings must name the same segments. Then the second listing holds, of
/// every compaction, all its inputs, or (with the manifest naming them,
/// which the next open deletes, so they are left out) all its outputs.
/// docs/design.md, "Backups", has the argument and its one assumption.
fn consistent_listing(vfs: &dyn Vfs, src: &Path) -> Result<Option<(Listing, Vec<u32>)>> {
    let m0 = read_manifest(vfs, src)?;
    let l0 = recovery::list_dir(vfs, src)?;
    let m1 = read_manifest(vfs, src)?;
    let l1 = recovery::list_dir(vfs, src)?;
    let m2 = read_manifest(vfs, src)?;
    if m0 != m1 || m1 != m2 || l0.segments != l1.segments {
        return Ok(None);
    }
    Ok(Some((l1, m2.unwrap_or_default())))
}

/// One attempt of [`copy_store_files`]; `Ok(false)`: a file vanished or the
/// listing was not consistent, start over (after removing `created`).
fn copy_once(
    vfs: &dyn Vfs,
    src: &Path,
    dest: &Path,
    created: &mut Vec<PathBuf>,
    report: &mut BackupReport,
    last: bool,
) -> Result<bool> {
    let Some((files, retired)) = consistent_listing(vfs, src)? else {
        return Ok(false);
    };
    let segments: Vec<u32> = files
        .segments
        .iter()
        .copied()
        .filter(|id| !retired.contains(id))
        .collect();
    // The writer appends to the newest writer segment: it is copied, never
    // linked (a later open of the backup appends to it).
    let active = recovery::find_active(vfs, src, &segments);
    for &id in segments.iter().filter(|&&id| Some(id) != active) {
        let to = names::segment_path(dest, id);
        match link_or_copy(vfs, &names::segment_path(src, id), &to, report) {
            Ok(()) => created.push(to),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::Io(e)),
        }
        if files.hints.contains(&id) {
            let to = names::hint_path(dest, id);
            match link_or_copy(vfs, &names::hint_path(src, id), &to, report) {
                Ok(()) => created.push(to),
                // Optional: without it, open scans the segment.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }
    if let Some(id) = active {
        let to = names::segment_path(dest, id);
        if !copy_active(vfs, &names::segment_path(src, id), id, &to, report, last)? {
            return Ok(false);
        }
        created.push(to);
    }
    Ok(true)
}

/// Copies the active segment `id` up to the end of its last complete
/// record (or batch): what recovery would keep of it. `Ok(false)`: it
/// vanished, or a concurrent append made the read look damaged: try again
/// (unless this is the `last` attempt: damage is then returned).
fn copy_active(
    vfs: &dyn Vfs,
    from: &Path,
    id: u32,
    to: &Path,
    report: &mut BackupReport,
    last: bool,
) -> Result<bool> {
    let bytes = match vfs.read(from) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::Io(e)),
    };
    let load = match recovery::scan_segment(from, id, &bytes, true, RecoveryMode::Strict) {
        Ok(l) => l,
        Err(Error::Corruption { .. }) if !last => return Ok(false),
        Err(e) => return Err(e),
    };
    let out: Vec<u8> = if load.needs_header {
        // Being created: an empty segment with a fresh header.
        let salt = crate::util::rand::new_salt(id);
        segment::encode_header(id, salt).to_vec()
    } else {
        let len = usize::try_from(load.len.max(SEGMENT_HEADER_LEN)).unwrap_or(bytes.len());
        bytes[..len.min(bytes.len())].to_vec()
    };
    let f = vfs.open(to, OpenMode::CreateNew)?;
    fs::write_all_at(&*f, &out, 0)?;
    f.sync_all()?;
    report.files_copied += 1;
    report.bytes_copied += out.len() as u64;
    Ok(true)
}
