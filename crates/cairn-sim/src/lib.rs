//! A simulated file system for crash and fault-injection tests.
//!
//! [`SimFs`] keeps every file in memory and tracks, for each file, the
//! bytes a power loss would keep (those covered by a completed `fsync`) and,
//! for each directory, the entries a power loss would keep (those covered
//! by a completed directory `fsync`). It can
//!
//! * simulate a crash at the Nth file operation ([`SimFs::crash_at`]): that
//!   operation takes effect in memory, returns an error, and every later
//!   operation fails until [`SimFs::crash`] is called;
//! * apply a power loss ([`SimFs::crash`]) under one of several [`Damage`]
//!   models: all unsynced data kept (a process crash), all of it dropped, a
//!   random prefix of it kept, or each 512-byte or 4 KiB block of it kept,
//!   lost, or (in space the file grew into) replaced by zeros or garbage.
//!   Directory operations since the last directory fsync are all forgotten
//!   or, for the partial models, a random prefix of them is kept;
//! * inject I/O errors ([`SimFs::inject`]): EIO on write, EIO on fsync
//!   (which also throws the unsynced data away, as Linux may), ENOSPC on
//!   writes that need new space, and short writes, on the Nth operation,
//!   once or forever.
//!
//! Operations are counted across the whole file system, so a test that does
//! its I/O from one thread (see `Options::deterministic`, behind cairn's
//! `__test_hooks` feature) can
//! replay a failure from its seed and operation index. Handles opened before
//! a crash fail every call afterwards.
//!
//! It implements cairn's file layer ([`cairn::vfs::Vfs`], behind cairn's
//! unstable `unstable-vfs` feature) and is used by cairn's tests and fuzz
//! targets only: it is not published.
#![deny(missing_docs, clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use cairn::vfs::{LockGuard, OpenMode, VFile, Vfs};

/// What a simulated power loss does to data that was not yet durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Nothing is lost: the process died, the machine did not.
    ProcessCrash,
    /// Every unsynced byte and directory change is lost.
    DropUnsynced,
    /// A random prefix of the unsynced bytes of each file, and of the
    /// unsynced changes of each directory, survives.
    Prefix,
    /// Each 512-byte block of unsynced data independently survives, is
    /// lost, or (past the synced length) reads as zeros or garbage.
    Torn512,
    /// As [`Damage::Torn512`] with 4 KiB blocks.
    Torn4096,
}

impl Damage {
    /// Every model.
    pub const ALL: [Damage; 5] = [
        Damage::ProcessCrash,
        Damage::DropUnsynced,
        Damage::Prefix,
        Damage::Torn512,
        Damage::Torn4096,
    ];
}

/// An I/O error to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A write fails with EIO and writes nothing.
    WriteEio,
    /// A file or directory fsync fails with EIO; a file's unsynced data is
    /// thrown away (reads see the last synced contents).
    SyncEio,
    /// A write or resize that needs new space fails with ENOSPC. Overwriting
    /// existing bytes still works.
    Enospc,
    /// A write stores only the first half of its bytes and reports that.
    ShortWrite,
}

impl FaultKind {
    /// Every kind.
    pub const ALL: [FaultKind; 4] = [
        FaultKind::WriteEio,
        FaultKind::SyncEio,
        FaultKind::Enospc,
        FaultKind::ShortWrite,
    ];
}

/// When an injected error fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The error.
    pub kind: FaultKind,
    /// It fires on the first operation it applies to whose index is at
    /// least this.
    pub at_op: u64,
    /// Keep firing on every later operation it applies to (until
    /// [`SimFs::clear_faults`]), instead of once.
    pub forever: bool,
}

#[derive(Clone, Debug)]
enum DirOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

fn apply(map: &mut BTreeMap<String, u64>, op: &DirOp) {
    match op {
        DirOp::Link(name, ino) => {
            map.insert(name.clone(), *ino);
        }
        DirOp::Unlink(name) => {
            map.remove(name);
        }
        DirOp::Rename(from, to) => {
            if let Some(ino) = map.remove(from) {
                map.insert(to.clone(), ino);
            }
        }
    }
}

#[derive(Default, Debug)]
struct Dir {
    live: BTreeMap<String, u64>,
    durable: BTreeMap<String, u64>,
    pending: Vec<DirOp>,
}

#[derive(Default, Debug)]
struct Node {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Write { grows: bool },
    Sync,
    Meta,
}

#[derive(Default, Debug)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    dirs: BTreeMap<PathBuf, Dir>,
    ops: u64,
    crash_at: Option<u64>,
    down: bool,
    epoch: u64,
    faults: Vec<(Fault, bool)>,
    locks: HashMap<PathBuf, (bool, u32)>,
    trace: Option<Vec<String>>,
    syncs: u64,
    /// The disk's size: files reachable from a directory may hold at most
    /// this many bytes in all (`None`: unlimited).
    capacity: Option<u64>,
}

/// What [`State::step`] decided for one operation.
struct Step {
    /// The injected error, if any.
    fault: Option<FaultKind>,
    /// The machine goes down after this operation.
    crash: bool,
}

fn down_error() -> io::Error {
    io::Error::other("simulated power loss: the machine is down")
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("simulated EIO on {what}"))
}

fn enospc() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "simulated ENOSPC")
}

impl State {
    fn step(&mut self, class: Class, what: impl FnOnce() -> String) -> io::Result<Step> {
        if self.down {
            return Err(down_error());
        }
        let n = self.ops;
        self.ops += 1;
        let mut fault = None;
        for (f, fired) in &mut self.faults {
            if n < f.at_op || (*fired && !f.forever) {
                continue;
            }
            let applies = match (f.kind, class) {
                (FaultKind::WriteEio | FaultKind::ShortWrite, Class::Write { .. }) => true,
                (FaultKind::Enospc, Class::Write { grows }) => grows,
                (FaultKind::SyncEio, Class::Sync) => true,
                _ => false,
            };
            if applies && fault.is_none() {
                *fired = true;
                fault = Some(f.kind);
            }
        }
        let crash = self.crash_at == Some(n);
        if let Some(t) = &mut self.trace {
            t.push(format!(
                "{n}: {}{}{}",
                what(),
                fault.map_or(String::new(), |k| format!(" [fault {k:?}]")),
                if crash { " [crash]" } else { "" }
            ));
        }
        Ok(Step { fault, crash })
    }

    fn finish<T>(&mut self, step: &Step, result: io::Result<T>) -> io::Result<T> {
        if step.crash {
            self.down = true;
            return Err(down_error());
        }
        result
    }

    /// Bytes held by files that a directory links to.
    fn used_bytes(&self) -> u64 {
        let mut inos: Vec<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.live.values().copied())
            .collect();
        inos.sort_unstable();
        inos.dedup();
        inos.iter()
            .filter_map(|i| self.nodes.get(i))
            .map(|n| n.data.len() as u64)
            .sum()
    }

    /// How long a file now `len` bytes long may grow on a disk of
    /// [`State::capacity`].
    fn room(&self, len: u64) -> u64 {
        self.capacity
            .map_or(u64::MAX, |c| len + c.saturating_sub(self.used_bytes()))
    }

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(path).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", path.display()),
            )
        })
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (dir, name) = split(path)?;
        self.dir(dir)?.live.get(name).copied().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {}", path.display()),
            )
        })
    }

    fn dir_op(&mut self, dir: &Path, op: DirOp) -> io::Result<()> {
        let d = self.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })?;
        apply(&mut d.live, &op);
        d.pending.push(op);
        Ok(())
    }
}

fn split(path: &Path) -> io::Result<(&Path, &str)> {
    match (path.parent(), path.file_name().and_then(|n| n.to_str())) {
        (Some(d), Some(n)) => Ok((d, n)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad path {}", path.display()),
        )),
    }
}

/// A small deterministic random number generator (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// The in-memory simulated file system. Cloning gives another handle to the
/// same file system.
#[derive(Clone, Debug, Default)]
pub struct SimFs {
    st: Arc<Mutex<State>>,
}

impl SimFs {
    /// An empty file system.
    pub fn new() -> SimFs {
        SimFs::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counted operations so far (since creation or the last crash).
    pub fn op_count(&self) -> u64 {
        self.state().ops
    }

    /// Completed file and directory fsyncs so far.
    pub fn sync_count(&self) -> u64 {
        self.state().syncs
    }

    /// Crash at operation `n` (counted from now on the same counter as
    /// [`SimFs::op_count`]); `None` disarms.
    pub fn crash_at(&self, n: Option<u64>) {
        self.state().crash_at = n;
    }

    /// Whether a crash point was reached and the machine is down.
    pub fn is_down(&self) -> bool {
        self.state().down
    }

    /// Arms an injected error.
    pub fn inject(&self, fault: Fault) {
        self.state().faults.push((fault, false));
    }

    /// Disarms every injected error ("the disk has space again").
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Sets the disk's size: a write that would make the files hold more
    /// than `bytes` in all stores what fits and reports a short write, or
    /// fails with ENOSPC when nothing fits; growing a file with `set_len`
    /// past it fails with ENOSPC. Overwriting and shrinking always work.
    /// `None` (the default) is unlimited.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity = bytes;
    }

    /// Starts (or stops) recording a line per counted operation.
    pub fn set_trace(&self, on: bool) {
        self.state().trace = on.then(Vec::new);
    }

    /// The recorded operations.
    pub fn trace(&self) -> Vec<String> {
        self.state().trace.clone().unwrap_or_default()
    }

    /// Simulates a power loss (or, with [`Damage::ProcessCrash`], a process
    /// crash) now, with randomness from `seed`. Afterwards the file system
    /// holds what the damage model leaves, every earlier handle and lock is
    /// dead, injected errors and the crash point are cleared and the
    /// operation counter restarts at 0.
    pub fn crash(&self, damage: Damage, seed: u64) {
        let mut rng = Rng::new(seed);
        let mut st = self.state();
        let garbage = rng.below(2) == 0;
        let mut reachable = Vec::new();
        for d in st.dirs.values_mut() {
            let keep = match damage {
                Damage::ProcessCrash => d.pending.len() as u64,
                Damage::DropUnsynced => 0,
                _ => rng.below(d.pending.len() as u64 + 1),
            };
            let mut map = d.durable.clone();
            for op in &d.pending[..keep as usize] {
                apply(&mut map, op);
            }
            reachable.extend(map.values().copied());
            d.live = map.clone();
            d.durable = map;
            d.pending.clear();
        }
        let mut nodes = HashMap::new();
        reachable.sort_unstable();
        reachable.dedup();
        for ino in reachable {
            if let Some(mut n) = st.nodes.remove(&ino) {
                let data = damaged(&n.durable, &n.data, damage, garbage, &mut rng);
                n.durable = data.clone();
                n.data = data;
                nodes.insert(ino, n);
            }
        }
        st.nodes = nodes;
        st.down = false;
        st.crash_at = None;
        st.faults.clear();
        st.locks.clear();
        st.epoch += 1;
        st.ops = 0;
        if let Some(t) = &mut st.trace {
            t.push(format!("-- crash ({damage:?}, seed {seed})"));
        }
    }

    /// The bytes of a file, as a read would see them now.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.state();
        let ino = st.lookup(path).ok()?;
        st.nodes.get(&ino).map(|n| n.data.clone())
    }

    /// Replaces a file's bytes, durably (for corruption tests).
    pub fn set_file_bytes(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.state();
        let ino = st.lookup(path)?;
        let n = st.nodes.entry(ino).or_default();
        n.data = bytes.to_vec();
        n.durable = bytes.to_vec();
        Ok(())
    }
}

/// What is left of a file whose synced contents are `old` and whose
/// contents in memory are `new`, after a power loss under `damage`.
fn damaged(old: &[u8], new: &[u8], damage: Damage, garbage: bool, rng: &mut Rng) -> Vec<u8> {
    if old == new {
        return new.to_vec();
    }
    let block = match damage {
        Damage::ProcessCrash => return new.to_vec(),
        Damage::DropUnsynced => return old.to_vec(),
        Damage::Prefix => 1,
        Damage::Torn512 => 512,
        Damage::Torn4096 => 4096,
    };
    if new.len() < old.len() {
        // An unsynced truncation either happened or did not.
        let base = if rng.below(2) == 0 { old } else { new };
        return base.to_vec();
    }
    let (olen, nlen) = (old.len() as u64, new.len() as u64);
    if block == 1 {
        // Writes reach the disk in offset order: a prefix of the changes.
        let first_diff = old.iter().zip(new).take_while(|(a, b)| a == b).count() as u64;
        let k = first_diff + rng.below(nlen - first_diff + 1);
        let mut out = new[..k as usize].to_vec();
        if k < olen {
            out.extend_from_slice(&old[k as usize..]);
        }
        return out;
    }
    // The length after the crash: the synced one, the new one, or a block
    // boundary between them.
    let len = match rng.below(3) {
        0 => olen,
        1 => nlen,
        _ => (olen + rng.below(nlen - olen + 1)).min(nlen),
    };
    let mut out = vec![0u8; len as usize];
    let mut at = 0u64;
    while at < len {
        let end = (at - at % block + block).min(len);
        let (a, e) = (at as usize, end as usize);
        let same = e <= old.len() && old[a..e] == new[a..e];
        let choice = if same { 0 } else { rng.below(3) };
        match choice {
            0 => out[a..e].copy_from_slice(&new[a..e]),
            _ if e <= old.len() => out[a..e].copy_from_slice(&old[a..e]),
            _ => {
                // Space the file grew into: old bytes where there were any,
                // then zeros or garbage.
                let keep = old.len().clamp(a, e);
                if a < keep {
                    out[a..keep].copy_from_slice(&old[a..keep]);
                }
                if garbage {
                    for b in &mut out[keep..e] {
                        *b = rng.next_u64() as u8;
                    }
                }
            }
        }
        at = end;
    }
    out
}

#[derive(Debug)]
struct SimFile {
    st: Arc<Mutex<State>>,
    ino: u64,
    epoch: u64,
    writable: bool,
    name: String,
}

impl SimFile {
    fn state(&self) -> io::Result<MutexGuard<'_, State>> {
        let st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch != self.epoch {
            return Err(io::Error::other(
                "simulated file handle from before a crash",
            ));
        }
        Ok(st)
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.writable {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "file opened read-only",
            ))
        }
    }
}

impl VFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let st = self.state()?;
        let data = st.nodes.get(&self.ino).map_or(&[][..], |n| &n.data[..]);
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        if start >= data.len() {
            return Ok(0);
        }
        let n = buf.len().min(data.len() - start);
        buf[..n].copy_from_slice(&data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.check_writable()?;
        let mut st = self.state()?;
        let len = st.nodes.get(&self.ino).map_or(0, |n| n.data.len() as u64);
        let grows = offset + buf.len() as u64 > len;
        let step = st.step(Class::Write { grows }, || {
            format!("write {} @{offset} +{}", self.name, buf.len())
        })?;
        let mut n = match step.fault {
            Some(FaultKind::WriteEio) => return st.finish(&step, Err(eio("write"))),
            Some(FaultKind::Enospc) => return st.finish(&step, Err(enospc())),
            Some(FaultKind::ShortWrite) => buf.len() / 2,
            _ => buf.len(),
        };
        if grows {
            let fits = st.room(len).saturating_sub(offset);
            if fits == 0 {
                return st.finish(&step, Err(enospc()));
            }
            n = n.min(usize::try_from(fits).unwrap_or(usize::MAX));
        }
        let node = st.nodes.entry(self.ino).or_default();
        let end = offset as usize + n;
        if node.data.len() < end {
            node.data.resize(end, 0);
        }
        node.data[offset as usize..end].copy_from_slice(&buf[..n]);
        st.finish(&step, Ok(n))
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut st = self.state()?;
        let step = st.step(Class::Sync, || format!("fsync {}", self.name))?;
        let node = st.nodes.entry(self.ino).or_default();
        if step.fault == Some(FaultKind::SyncEio) {
            node.data = node.durable.clone();
            return st.finish(&step, Err(eio("fsync")));
        }
        node.durable = node.data.clone();
        st.syncs += 1;
        st.finish(&step, Ok(()))
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let mut st = self.state()?;
        let cur = st.nodes.get(&self.ino).map_or(0, |n| n.data.len() as u64);
        let step = st.step(Class::Write { grows: len > cur }, || {
            format!("set_len {} {len}", self.name)
        })?;
        match step.fault {
            Some(FaultKind::WriteEio) => return st.finish(&step, Err(eio("truncate"))),
            Some(FaultKind::Enospc) => return st.finish(&step, Err(enospc())),
            _ if len > cur && len > st.room(cur) => return st.finish(&step, Err(enospc())),
            _ => {}
        }
        st.nodes
            .entry(self.ino)
            .or_default()
            .data
            .resize(len as usize, 0);
        st.finish(&step, Ok(()))
    }

    fn len(&self) -> io::Result<u64> {
        let st = self.state()?;
        Ok(st.nodes.get(&self.ino).map_or(0, |n| n.data.len() as u64))
    }
}

struct SimLock {
    st: Arc<Mutex<State>>,
    path: PathBuf,
    epoch: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.st.lock().unwrap_or_else(|e| e.into_inner());
        if st.epoch != self.epoch {
            return;
        }
        if let Some(l) = st.locks.get_mut(&self.path) {
            l.1 -= 1;
            if l.1 == 0 {
                st.locks.remove(&self.path);
            }
        }
    }
}

impl Vfs for SimFs {
    fn exists(&self, path: &Path) -> bool {
        let st = self.state();
        st.dirs.contains_key(path) || st.lookup(path).is_ok()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        if st.down {
            return Err(down_error());
        }
        // Directories are durable as soon as they exist (a simplification:
        // cairn fsyncs the parent of a directory it creates).
        for d in dir.ancestors() {
            st.dirs.entry(d.to_path_buf()).or_default();
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.state();
        let mut names: Vec<String> = st.dir(dir)?.live.keys().cloned().collect();
        // Sub-directories are entries too, as on a real file system.
        for d in st.dirs.keys() {
            if d.parent() == Some(dir) {
                if let Some(n) = d.file_name().and_then(|n| n.to_str()) {
                    names.push(n.to_string());
                }
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn VFile>> {
        let mut st = self.state();
        let (dir, name) = split(path)?;
        let existing = st.dir(dir)?.live.get(name).copied();
        let ino = match (mode, existing) {
            (OpenMode::CreateNew, Some(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", path.display()),
                ))
            }
            (_, Some(ino)) => ino,
            (OpenMode::Read | OpenMode::ReadWrite, None) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no file {}", path.display()),
                ))
            }
            (OpenMode::CreateNew | OpenMode::OpenOrCreate, None) => {
                let step = st.step(Class::Meta, || format!("create {}", path.display()))?;
                st.next_ino += 1;
                let ino = st.next_ino;
                st.nodes.insert(ino, Node::default());
                st.dir_op(dir, DirOp::Link(name.to_string(), ino))?;
                st.finish(&step, Ok(()))?;
                ino
            }
        };
        Ok(Arc::new(SimFile {
            st: self.st.clone(),
            ino,
            epoch: st.epoch,
            writable: mode != OpenMode::Read,
            name: name.to_string(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        let step = st.step(Class::Meta, || {
            format!("rename {} -> {}", from.display(), to.display())
        })?;
        let ino = st.lookup(from)?;
        let (fd, fname) = split(from)?;
        let (td, tname) = split(to)?;
        if fd == td {
            st.dir_op(fd, DirOp::Rename(fname.to_string(), tname.to_string()))?;
        } else {
            st.dir_op(td, DirOp::Link(tname.to_string(), ino))?;
            st.dir_op(fd, DirOp::Unlink(fname.to_string()))?;
        }
        st.finish(&step, Ok(()))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut st = self.state();
        let step = st.step(Class::Meta, || format!("unlink {}", path.display()))?;
        st.lookup(path)?;
        let (dir, name) = split(path)?;
        st.dir_op(dir, DirOp::Unlink(name.to_string()))?;
        st.finish(&step, Ok(()))
    }

    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.state();
        let step = st.step(Class::Meta, || {
            format!("link {} -> {}", from.display(), to.display())
        })?;
        let ino = st.lookup(from)?;
        let (td, tname) = split(to)?;
        if st.dir(td)?.live.contains_key(tname) {
            return st.finish(
                &step,
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", to.display()),
                )),
            );
        }
        st.dir_op(td, DirOp::Link(tname.to_string(), ino))?;
        st.finish(&step, Ok(()))
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.state();
        let step = st.step(Class::Sync, || format!("fsync dir {}", dir.display()))?;
        if step.fault == Some(FaultKind::SyncEio) {
            return st.finish(&step, Err(eio("directory fsync")));
        }
        let d = st.dirs.get_mut(dir).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no directory {}", dir.display()),
            )
        })?;
        d.durable = d.live.clone();
        d.pending.clear();
        st.syncs += 1;
        st.finish(&step, Ok(()))
    }

    fn try_lock(&self, path: &Path, shared: bool) -> io::Result<Option<LockGuard>> {
        if !(shared && self.exists(path)) {
            drop(self.open(path, OpenMode::OpenOrCreate)?);
        }
        let mut st = self.state();
        let epoch = st.epoch;
        match st.locks.get_mut(path) {
            Some((exclusive, n)) => {
                if *exclusive || !shared {
                    return Ok(None);
                }
                *n += 1;
            }
            None => {
                st.locks.insert(path.to_path_buf(), (!shared, 1));
            }
        }
        Ok(Some(Box::new(SimLock {
            st: self.st.clone(),
            path: path.to_path_buf(),
            epoch,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn::vfs::write_all_at;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn unsynced_data_and_entries_are_lost() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).expect("mkdir");
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).expect("create");
        write_all_at(&*f, b"hello", 0).expect("write");
        f.sync_data().expect("sync");
        // Synced data, but the entry was never synced: gone.
        fs.crash(Damage::DropUnsynced, 1);
        assert!(!fs.exists(&p("/d/a")));

        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).expect("create");
        write_all_at(&*f, b"hello", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(&p("/d")).expect("sync dir");
        write_all_at(&*f, b" world", 5).expect("write");
        fs.crash(Damage::DropUnsynced, 1);
        assert_eq!(fs.file_bytes(&p("/d/a")).as_deref(), Some(&b"hello"[..]));
        // The old handle is dead.
        assert!(f.len().is_err());
    }

    #[test]
    fn hard_links_share_the_file_and_their_entry_needs_a_directory_sync() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).expect("mkdir");
        fs.create_dir_all(&p("/e/sub")).expect("mkdir");
        assert_eq!(fs.list(&p("/e")).expect("list"), ["sub"]);
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).expect("create");
        write_all_at(&*f, b"sealed", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(&p("/d")).expect("sync dir");
        fs.hard_link(&p("/d/a"), &p("/e/a")).expect("link");
        assert_eq!(fs.file_bytes(&p("/e/a")).as_deref(), Some(&b"sealed"[..]));
        let e = fs.hard_link(&p("/d/a"), &p("/e/a")).expect_err("exists");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let e = fs
            .hard_link(&p("/d/nope"), &p("/e/b"))
            .expect_err("missing");
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        // Unlinking one name keeps the other.
        fs.remove_file(&p("/d/a")).expect("unlink");
        assert_eq!(fs.file_bytes(&p("/e/a")).as_deref(), Some(&b"sealed"[..]));
        // The new entry was never synced: a power loss forgets it.
        fs.crash(Damage::DropUnsynced, 1);
        assert!(!fs.exists(&p("/e/a")));
        assert!(fs.exists(&p("/d/a")));
    }

    #[test]
    fn process_crash_keeps_everything() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).expect("mkdir");
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).expect("create");
        write_all_at(&*f, b"abc", 0).expect("write");
        fs.rename(&p("/d/a"), &p("/d/b")).expect("rename");
        fs.crash(Damage::ProcessCrash, 1);
        assert_eq!(fs.file_bytes(&p("/d/b")).as_deref(), Some(&b"abc"[..]));
        assert!(!fs.exists(&p("/d/a")));
    }

    #[test]
    fn torn_models_keep_only_old_or_new_bytes_or_fill() {
        let old = vec![1u8; 1000];
        let mut new = old.clone();
        new.extend(vec![2u8; 9000]);
        new[100] = 3;
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            for damage in [Damage::Prefix, Damage::Torn512, Damage::Torn4096] {
                let out = damaged(&old, &new, damage, seed % 2 == 0, &mut rng);
                assert!(out.len() >= old.len() && out.len() <= new.len());
                for (i, &b) in out.iter().enumerate() {
                    let o = old.get(i).copied();
                    let ok =
                        Some(b) == o || b == new[i] || (o.is_none() && damage != Damage::Prefix);
                    assert!(ok, "seed {seed} {damage:?} byte {i}");
                }
            }
        }
    }

    #[test]
    fn crash_point_and_faults() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).expect("mkdir");
        let f = fs.open(&p("/d/a"), OpenMode::CreateNew).expect("create");
        fs.inject(Fault {
            kind: FaultKind::ShortWrite,
            at_op: 0,
            forever: false,
        });
        assert_eq!(f.write_at(b"abcd", 0).expect("short"), 2);
        assert_eq!(f.write_at(b"cd", 2).expect("full"), 2);
        fs.inject(Fault {
            kind: FaultKind::SyncEio,
            at_op: 0,
            forever: false,
        });
        assert!(f.sync_data().is_err());
        assert_eq!(
            f.len().expect("len"),
            0,
            "a failed fsync drops unsynced data"
        );
        write_all_at(&*f, b"xy", 0).expect("write");
        f.sync_data().expect("sync");
        fs.inject(Fault {
            kind: FaultKind::Enospc,
            at_op: 0,
            forever: true,
        });
        assert!(f.write_at(b"z", 2).is_err(), "growing needs space");
        assert_eq!(f.write_at(b"z", 1).expect("overwrite"), 1);
        fs.clear_faults();
        let n = fs.op_count();
        fs.crash_at(Some(n + 1));
        write_all_at(&*f, b"1", 0).expect("op n");
        assert!(f.write_at(b"2", 0).is_err(), "op n+1 crashes");
        assert!(fs.is_down());
        assert!(f.sync_data().is_err());
        fs.crash(Damage::ProcessCrash, 0);
        assert!(!fs.is_down());
    }

    #[test]
    fn locks_exclude_and_die_with_a_crash() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).expect("mkdir");
        let l = fs.try_lock(&p("/d/LOCK"), false).expect("lock");
        assert!(l.is_some());
        assert!(fs.try_lock(&p("/d/LOCK"), true).expect("lock").is_none());
        fs.crash(Damage::ProcessCrash, 0);
        assert!(fs.try_lock(&p("/d/LOCK"), false).expect("lock").is_some());
        drop(l);
    }
}
