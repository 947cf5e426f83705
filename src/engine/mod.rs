//! The engine behind a [`Db`](crate::Db) handle: the writer, the read path,
//! segment rolling, the expiry sweep and the background thread.

pub(crate) mod txn;

use txn::Txn;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use crate::batch::{Batch, BatchOp};
use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{self, check_key, check_value, Kind, FLAG_BATCH};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, LockGuard, OpenMode, VFile, Vfs};
use crate::index::keydir::{Entry, KeyDir};
use crate::options::{Options, SyncPolicy};
use crate::recovery::{self, RecoveryReport};
use crate::stats::Stats;
use crate::storage::group_commit::{Active, GroupCommit, Pos, SyncError};
use crate::storage::hints;
use crate::storage::segment::Segment;
use crate::storage::space::{start_level, SegStat, SpaceUse};
use crate::storage::tail_cache::TailCache;
use crate::types::{expiry_after, CasConflict, Ttl};
use crate::util::locks::{self, lock};
use crate::util::rand::new_salt;

/// The most record bytes one batch may take (2 GiB).
pub(crate) const MAX_BATCH_BYTES: u64 = 2 << 30;
/// How far ahead of the writes the active segment is zero-filled.
const PREALLOCATE_BYTES: u64 = 4 << 20;

/// A sync mark is written once the durable part of the active segment has
/// grown by this much since the last one. Recovery treats damage before the
/// newest mark's offset as corruption and damage after it as an unsynced
/// tail; marks cost 40 bytes each, so this bounds their overhead to 1%.
const SYNC_MARK_EVERY_BYTES: u64 = 4096;

/// State only the writer touches.
pub(crate) struct Writer {
    active: Arc<Active>,
    /// Bytes of the active segment file that exist and are durable: the
    /// written records plus a zero-filled, fsynced region ahead of them.
    /// Overwriting zeros that are already on disk lets `fdatasync` skip the
    /// file-size metadata update, which makes durable writes much cheaper.
    allocated: u64,
    next_seq: u64,
    buf: Vec<u8>,
    /// Scratch space for per-segment dead-byte updates.
    dead: Vec<(u32, u64)>,
    /// The durable length the newest sync mark in the active segment holds.
    marked: u64,
    /// Bytes of the sync mark at the start of `buf`, if any.
    mark_bytes: u64,
}

impl Writer {
    /// Starts encoding an append: clears the buffer and, when enough of the
    /// active segment has become durable since the last sync mark, encodes
    /// a new one first.
    fn start(&mut self) {
        self.buf.clear();
        self.mark_bytes = 0;
        let synced = self.active.synced.load(Ordering::Acquire);
        if synced >= self.marked + SYNC_MARK_EVERY_BYTES {
            self.encode(Kind::SyncMark, 0, 0, b"", &synced.to_le_bytes());
            self.marked = synced;
            self.mark_bytes = self.buf.len() as u64;
        }
    }

    /// The id of the active segment.
    pub(crate) fn active_id(&self) -> u32 {
        self.active.id
    }

    /// Appends a record to the write buffer; returns the segment offset it
    /// will be written at.
    fn encode(&mut self, kind: Kind, seq: u64, expires: u64, key: &[u8], value: &[u8]) -> u64 {
        self.encode_flagged(kind, 0, seq, expires, key, value)
    }

    /// [`Writer::encode`] with record flags.
    fn encode_flagged(
        &mut self,
        kind: Kind,
        flags: u8,
        seq: u64,
        expires: u64,
        key: &[u8],
        value: &[u8],
    ) -> u64 {
        let offset = self.active.len.load(Ordering::Relaxed) + self.buf.len() as u64;
        record::encode_into(
            &mut self.buf,
            self.active.salt,
            offset,
            kind,
            flags,
            seq,
            expires,
            key,
            value,
        );
        offset
    }
}

/// Work for the background thread.
#[derive(Default)]
struct BgState {
    stop: bool,
    hint_jobs: Vec<u32>,
    /// A segment was sealed since automatic compaction last looked.
    sealed: bool,
}

/// The longest a writer waits for compaction at a time (see
/// [`Core::stall_if_needed`]).
const MAX_STALL: Duration = Duration::from_secs(1);

pub(crate) struct Core {
    pub dir: PathBuf,
    pub opts: Options,
    pub(crate) keydir: KeyDir,
    pub(crate) segments: RwLock<BTreeMap<u32, Arc<Segment>>>,
    pub(crate) seg_stats: Mutex<BTreeMap<u32, SegStat>>,
    writer: Option<Mutex<Writer>>,
    /// The next unused segment id (for the writer and for compaction).
    pub(crate) next_file_id: std::sync::atomic::AtomicU32,
    /// Held while a compaction runs: one at a time.
    pub(crate) compaction: Mutex<()>,
    group: Option<GroupCommit>,
    poisoned: AtomicBool,
    poison_cause: Mutex<Option<String>>,
    closed: AtomicBool,
    lock_file: Mutex<Option<LockGuard>>,
    pub report: RecoveryReport,
    bytes_written: AtomicU64,
    expired_removed: AtomicU64,
    bg: Mutex<BgState>,
    bg_cv: Condvar,
    /// Writers wait (outside the writer lock) while this is set: disk use
    /// is past the space-amplification bound and compaction is catching up.
    stall: AtomicBool,
    stall_lock: Mutex<()>,
    stall_cv: Condvar,
    stalls: AtomicU64,
    stall_ns: AtomicU64,
}

/// Parses a value as Redis does for INCRBY: an optional '-', then digits
/// with no leading zero, fitting an i64.
fn parse_i64(v: &[u8]) -> Result<i64> {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    let ok = !digits.is_empty()
        && v.len() <= 20
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || (digits.len() == 1 && digits.len() == v.len()));
    if !ok {
        return Err(Error::NotAnInteger);
    }
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(Error::NotAnInteger)
}

/// A write to apply to the keydir once its record is on disk.
/// One write of an atomic batch: a put when `value` is set, else a delete.
struct WriteOp<'a> {
    key: &'a [u8],
    value: Option<&'a [u8]>,
    expires: u64,
}

enum Applied<'a> {
    Put { key: &'a [u8], entry: Entry },
    Delete { key: &'a [u8] },
}

impl Core {
    // ----- open -------------------------------------------------------------

    pub(crate) fn open(dir: &Path, opts: Options) -> Result<Arc<Core>> {
        let vfs: &dyn Vfs = &*opts.vfs;
        if !vfs.exists(dir) {
            if opts.create_if_missing && !opts.read_only {
                vfs.create_dir_all(dir)?;
                // The new directory's own entry must survive a power loss too.
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    vfs.sync_dir(parent)?;
                }
            } else {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("store directory {} does not exist", dir.display()),
                )));
            }
        }
        let lock_path = dir.join(names::LOCK_FILE);
        let lock_file = if opts.snapshot {
            None
        } else {
            match vfs.try_lock(&lock_path, opts.read_only)? {
                Some(l) => Some(l),
                None => return Err(Error::Locked { path: lock_path }),
            }
        };

        let (finished_compaction, leave_out) =
            recovery::finish_interrupted(vfs, dir, opts.read_only)?;
        let mut report = RecoveryReport {
            finished_compaction,
            ..RecoveryReport::default()
        };
        let mut listing = recovery::list_dir(vfs, dir)?;
        listing.segments.retain(|id| !leave_out.contains(id));
        if !opts.read_only {
            for t in &listing.temp_files {
                match vfs.remove_file(t) {
                    Ok(()) => report.removed_temp_files += 1,
                    Err(e) => log::warn!("could not remove stray file {}: {e}", t.display()),
                }
            }
            if report.removed_temp_files > 0 {
                vfs.sync_dir(dir)?;
            }
        }
        let now = opts.clock.now_unix_ms();
        let started = Instant::now();
        let mut active_id = recovery::find_active(vfs, dir, &listing.segments);
        let mut loads = recovery::load_all(
            vfs,
            dir,
            &listing.segments,
            active_id,
            opts.recovery_mode,
            opts.read_only,
            opts.deterministic,
        )?;
        let mut active_idx = loads.iter().position(|l| Some(l.id) == active_id);

        // Fix up the active segment. `allocated` is how much of its file
        // exists and is durable (see `Writer::allocated`).
        let mut allocated = SEGMENT_HEADER_LEN;
        if let Some(last) = active_idx.map(|i| &mut loads[i]) {
            let path = names::segment_path(dir, last.id);
            allocated = last.len.max(SEGMENT_HEADER_LEN);
            if let Some((cut_at, file_len)) = last.cut {
                if last.zero_tail && !last.needs_header {
                    // Zeros preallocated ahead of the writes: keep them.
                    allocated = file_len;
                } else if !opts.read_only {
                    let f = vfs.open(&path, OpenMode::ReadWrite)?;
                    if last.needs_header {
                        f.set_len(0)?;
                        last.salt = new_salt(last.id);
                        fs::write_all_at(&*f, &segment::encode_header(last.id, last.salt), 0)?;
                        last.len = SEGMENT_HEADER_LEN;
                    } else {
                        f.set_len(cut_at)?;
                    }
                    f.sync_all()?;
                    log::warn!(
                        "cut a torn tail of {} bytes off {} at offset {cut_at}",
                        file_len - cut_at,
                        path.display()
                    );
                }
                if !last.zero_tail || last.needs_header {
                    report.truncated_tail = Some((path, cut_at, file_len - cut_at));
                }
            }
        }
        // Salvage skipped damage inside the active segment. Appending after
        // it would leave damaged bytes in the middle of the live log: a
        // later strict open would cut the log there (losing every write
        // made after this open), and appended bytes could complete the
        // image of a damaged record. Seal the segment as it is, cut to its
        // last record, and write into a fresh one: damage in a sealed
        // segment is refused by strict opens and skipped by salvage ones.
        if let Some(last) = active_idx
            .map(|i| &loads[i])
            .filter(|l| !opts.read_only && !l.skipped.is_empty())
        {
            let path = names::segment_path(dir, last.id);
            let f = vfs.open(&path, OpenMode::ReadWrite)?;
            let end = last.len.max(SEGMENT_HEADER_LEN);
            if f.len()? > end {
                f.set_len(end)?;
            }
            f.sync_all()?;
            log::warn!(
                "salvage: sealed {} with its damaged ranges; new writes go to a new segment",
                path.display()
            );
            active_id = None;
            active_idx = None;
        }
        for l in &loads {
            if l.from_hint {
                report.segments_from_hints += 1;
            } else {
                report.segments_scanned += 1;
            }
            report.discarded_batch_records += l.discarded_batch_records;
            report.skipped.extend(l.skipped.iter().cloned());
        }
        for s in &report.skipped {
            log::warn!(
                "salvage skipped {} bytes of {} at offset {}: {}",
                s.len,
                s.path.display(),
                s.offset,
                s.reason
            );
        }

        let (keydir, live) = recovery::build_keydir(&loads, now);
        let mut next_file_id = listing.segments.last().map_or(1, |&m| m + 1);
        let max_seq = loads.iter().map(|l| l.max_seq).max().unwrap_or(0);
        let mut seg_stats = BTreeMap::new();
        for (l, live) in loads.iter().zip(&live) {
            let total = l.len.max(SEGMENT_HEADER_LEN);
            // Tombstones in a segment compaction wrote were kept on purpose
            // (see `SegStat::kept`).
            let kept = if l.compacted {
                l.entries
                    .iter()
                    .filter(|e| e.tombstone)
                    .map(|e| record::encoded_len(e.key.len() as u32, 0))
                    .sum()
            } else {
                0
            };
            let kept = kept.min(total.saturating_sub(SEGMENT_HEADER_LEN + live));
            seg_stats.insert(
                l.id,
                SegStat {
                    total,
                    dead: total.saturating_sub(SEGMENT_HEADER_LEN + live + kept),
                    kept,
                    hint: l.hint_bytes,
                    min_seq: if l.skipped.is_empty() { l.min_seq } else { 0 },
                    damaged: !l.skipped.is_empty(),
                },
            );
        }
        let mut segments = BTreeMap::new();
        for l in &loads {
            if Some(l.id) != active_id {
                segments.insert(
                    l.id,
                    Arc::new(Segment::open_sealed(vfs, dir, l.id, opts.use_mmap, l.salt)?),
                );
            }
        }

        let (writer, group) = if opts.read_only {
            if let Some(l) = active_idx.map(|i| &loads[i]) {
                let path = names::segment_path(dir, l.id);
                let f = vfs.open(&path, OpenMode::Read)?;
                segments.insert(l.id, Arc::new(Segment::with_file(path, f, l.salt)));
            }
            (None, None)
        } else {
            let (id, len, salt) = match active_idx.map(|i| &loads[i]) {
                Some(l) => (l.id, l.len.max(SEGMENT_HEADER_LEN), l.salt),
                None => {
                    let id = next_file_id;
                    next_file_id += 1;
                    let (_, salt) = create_segment(vfs, dir, id)?;
                    seg_stats.insert(id, SegStat::empty());
                    (id, SEGMENT_HEADER_LEN, salt)
                }
            };
            let path = names::segment_path(dir, id);
            let file = vfs.open(&path, OpenMode::ReadWrite)?;
            if active_idx.is_some() {
                // What recovery read may be only in the page cache (after a
                // process crash). Make it durable: the group commit and the
                // sync marks count it as synced from here on.
                file.sync_data()?;
            }
            let tail = new_tail_cache(&opts, &*file, len)?;
            segments.insert(
                id,
                Arc::new(Segment::active(path, file.clone(), tail.clone(), salt)),
            );
            let active = Arc::new(Active {
                id,
                salt,
                file,
                tail,
                len: AtomicU64::new(len),
                synced: AtomicU64::new(len),
            });
            let writer = Writer {
                active: active.clone(),
                // Below 2^63: recovery treats larger sequence numbers as damage.
                next_seq: max_seq + 1,
                allocated: if active_idx.is_none() {
                    SEGMENT_HEADER_LEN
                } else {
                    allocated
                },
                buf: Vec::with_capacity(4096),
                dead: Vec::new(),
                marked: 0,
                mark_bytes: 0,
            };
            (Some(Mutex::new(writer)), Some(GroupCommit::new(active)))
        };
        // Recovery's buffers (every hint entry, with its key) are gone now;
        // hand the memory they took back to the OS, when it was much.
        let loaded: usize = loads.iter().map(|l| l.entries.len()).sum();
        drop(loads);
        if loaded >= recovery::SORTED_MERGE_MIN_ENTRIES {
            crate::fs::mmap::release_free_memory();
        }
        log::info!(
            "opened {} with {} keys in {:?} ({} segments from hints, {} scanned)",
            dir.display(),
            keydir.raw_len(),
            started.elapsed(),
            report.segments_from_hints,
            report.segments_scanned
        );

        Ok(Arc::new(Core {
            dir: dir.to_path_buf(),
            opts,
            keydir,
            segments: RwLock::new(segments),
            seg_stats: Mutex::new(seg_stats),
            writer,
            group,
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(lock_file),
            next_file_id: std::sync::atomic::AtomicU32::new(next_file_id),
            compaction: Mutex::new(()),
            report,
            bytes_written: AtomicU64::new(0),
            expired_removed: AtomicU64::new(0),
            bg: Mutex::new(BgState::default()),
            bg_cv: Condvar::new(),
            stall: AtomicBool::new(false),
            stall_lock: Mutex::new(()),
            stall_cv: Condvar::new(),
            stalls: AtomicU64::new(0),
            stall_ns: AtomicU64::new(0),
        }))
    }

    fn now(&self) -> u64 {
        self.opts.clock.now_unix_ms()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    // ----- poisoning --------------------------------------------------------

    fn poison(&self, cause: String) {
        log::error!("cairn store {} is poisoned: {cause}", self.dir.display());
        lock(&self.poison_cause).get_or_insert(cause.clone());
        self.poisoned.store(true, Ordering::Release);
        if let Some(g) = &self.group {
            g.mark_failed(cause);
        }
    }

    fn poisoned_error(&self) -> Error {
        Error::Poisoned {
            cause: lock(&self.poison_cause).clone().unwrap_or_default(),
        }
    }

    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// Locks the writer after checking that writes are allowed.
    pub(crate) fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        crate::engine::txn::check_not_inside()?;
        self.check_open()?;
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        let guard = lock(w);
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        self.check_open()?;
        Ok(guard)
    }

    // ----- back-pressure ----------------------------------------------------

    /// Whether the files on disk (sealed segments and their hints, plus the
    /// active segment's live bytes) are past `level` times the live data,
    /// with enough dead bytes for compaction to act on. At a seal, past the
    /// level where automatic compaction starts
    /// ([`start_level`]), writers wait for the next
    /// compaction; past `compaction_max_space_amplification` itself they
    /// wait until compaction brings disk use back under it.
    pub(crate) fn over_space_level(&self, level: impl Fn(f64) -> f64) -> bool {
        let max = self.opts.compaction_max_space_amplification;
        if !self.opts.auto_compact || max == 0.0 {
            return false;
        }
        let Some(active) = self.active_id() else {
            return false;
        };
        SpaceUse::of(&lock(&self.seg_stats), active).over(level(max))
    }

    /// Records the size of segment `id`'s hint file (disk use).
    pub(crate) fn note_hint(&self, id: u32, bytes: u64) {
        if let Some(s) = lock(&self.seg_stats).get_mut(&id) {
            s.hint = bytes;
        }
    }

    /// Called by the writer when it seals a segment: wakes automatic
    /// compaction and, when disk use is past the level where compaction
    /// starts, makes writers wait for the next compaction to finish
    /// (a RocksDB-style write stall, outside the writer lock) so that a
    /// writer running flat out cannot seal segments faster than compaction
    /// reclaims them.
    fn after_seal(&self) {
        if !self.opts.auto_compact {
            return;
        }
        if self.opts.stall_writes && self.over_space_level(start_level) {
            self.stall.store(true, Ordering::Release);
        }
        lock(&self.bg).sealed = true;
        self.bg_cv.notify_all();
    }

    /// Waits while writes are stalled, at most [`MAX_STALL`].
    fn stall_if_needed(&self) {
        let started = Instant::now();
        let guard = lock(&self.stall_lock);
        drop(locks::wait_timeout_while(
            &self.stall_cv,
            guard,
            MAX_STALL,
            |()| self.stall.load(Ordering::Acquire) && !self.closed.load(Ordering::Acquire),
        ));
        self.stalls.fetch_add(1, Ordering::Relaxed);
        self.stall_ns.fetch_add(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Ends a write stall (a compaction finished or failed, there is
    /// nothing to compact, or the store is closing).
    pub(crate) fn end_stall(&self) {
        if self.stall.swap(false, Ordering::AcqRel) {
            let _g = lock(&self.stall_lock);
            self.stall_cv.notify_all();
        }
    }

    /// For automatic compaction: waits up to `timeout` for a sealed segment
    /// or a stop. Returns whether the store stopped.
    pub(crate) fn wait_for_compaction_work(&self, timeout: Duration) -> bool {
        let bg = lock(&self.bg);
        let mut bg = locks::wait_timeout_while(&self.bg_cv, bg, timeout, |b| !b.stop && !b.sealed);
        bg.sealed = false;
        bg.stop
    }

    // ----- reads ------------------------------------------------------------

    /// Reads the value an entry points at.
    fn read_entry(&self, key: &[u8], mut entry: Entry) -> Result<Option<Vec<u8>>> {
        // A segment can disappear between the index lookup and the read only
        // if compaction moved the key; look it up again then.
        for _ in 0..64 {
            {
                let segs = locks::read(&self.segments);
                if let Some(seg) = segs.get(&entry.file_id) {
                    return seg.read_value(entry.offset, key, entry.value_len).map(Some);
                }
            }
            match self.keydir.get(key) {
                Some(e) if !e.is_expired(self.now()) => entry = e,
                _ => return Ok(None),
            }
        }
        Err(Error::corruption(
            names::segment_path(&self.dir, entry.file_id),
            entry.offset,
            "the index points into a segment that does not exist",
        ))
    }

    /// The live entry of `key`, if any.
    fn live_entry(&self, key: &[u8]) -> Option<Entry> {
        self.keydir.get(key).filter(|e| !e.is_expired(self.now()))
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        match self.live_entry(key) {
            Some(e) => self.read_entry(key, e),
            None => Ok(None),
        }
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        Ok(self.live_entry(key).is_some())
    }

    pub(crate) fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.check_open()?;
        let now = self.now();
        Ok(match self.keydir.get(key) {
            Some(e) if !e.is_expired(now) => {
                if e.expires_at_ms == 0 {
                    Ttl::Persistent
                } else {
                    Ttl::Expires(Duration::from_millis(e.expires_at_ms - now))
                }
            }
            _ => Ttl::Missing,
        })
    }

    pub(crate) fn len(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.keydir.live_len(self.now()))
    }

    /// Sorted live keys starting with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.check_open()?;
        let mut keys = Vec::new();
        self.for_each_live_key(prefix, |k, _, _| keys.push(k.to_vec()));
        keys.sort_unstable();
        Ok(keys)
    }

    // ----- writes -----------------------------------------------------------

    /// Appends the encoded records in `w.buf` (which take `seqs` sequence
    /// numbers), then applies `applied` to the keydir. Returns the position
    /// to wait for.
    fn append(
        &self,
        w: &mut Writer,
        seqs: u64,
        applied: &[Applied<'_>],
        dead_now: u64,
    ) -> Result<Pos> {
        let len = w.buf.len() as u64;
        let offset = w.active.len.load(Ordering::Relaxed);
        if offset + len > w.allocated {
            self.preallocate(w, offset + len)?;
        }
        if let Err(e) = fs::write_all_at(&*w.active.file, &w.buf, offset) {
            self.poison(format!("write to segment {} failed: {e}", w.active.id));
            return Err(Error::Io(e));
        }
        let end = offset + len;
        if let Some(t) = &w.active.tail {
            t.append(offset, &w.buf);
        }
        w.active.len.store(end, Ordering::Release);
        w.next_seq += seqs;
        self.bytes_written.fetch_add(len, Ordering::Relaxed);

        // Bytes that stopped mattering, per segment (reusing a buffer).
        let mut dead = std::mem::take(&mut w.dead);
        dead.clear();
        dead.push((w.active.id, dead_now + w.mark_bytes));
        for a in applied {
            let (key, old) = match a {
                Applied::Put { key, entry } => (key, self.keydir.insert(key, *entry)),
                Applied::Delete { key } => (key, self.keydir.remove(key)),
            };
            if let Some(old) = old {
                dead.push((old.file_id, old.record_len(key.len())));
            }
        }
        {
            let mut stats = lock(&self.seg_stats);
            let own = stats.entry(w.active.id).or_insert_with(SegStat::empty);
            own.total = end;
            own.min_seq = own.min_seq.min(w.next_seq - seqs);
            for &(id, d) in &dead {
                if let Some(s) = stats.get_mut(&id) {
                    s.dead += d;
                }
            }
        }
        w.dead = dead;
        Ok((w.active.id, end))
    }

    /// Extends the active segment with durable zeros so that it holds at
    /// least `needed` bytes. Only for policies that fsync: without fsyncs
    /// the zeros would buy nothing.
    fn preallocate(&self, w: &mut Writer, needed: u64) -> Result<()> {
        if self.opts.sync_policy == SyncPolicy::Never {
            return Ok(());
        }
        let step = PREALLOCATE_BYTES.min(self.opts.max_segment_bytes);
        let target = needed.max(w.allocated + step);
        let zeros = [0u8; 64 * 1024];
        let mut at = w.allocated.max(w.active.len.load(Ordering::Relaxed));
        let written = (|| {
            while at < target {
                let n = (target - at).min(zeros.len() as u64);
                fs::write_all_at(&*w.active.file, &zeros[..n as usize], at)?;
                at += n;
            }
            Ok(())
        })();
        if let Err(e) = written {
            self.poison(format!(
                "extending segment {} with zeros failed: {e}",
                w.active.id
            ));
            return Err(Error::Io(e));
        }
        // The size change must be durable; the fsync runs between
        // group-commit rounds, and reports nothing new as durable.
        let file = w.active.file.clone();
        let synced = match &self.group {
            Some(g) => g.sync_exclusively((w.active.id, 0), || file.sync_all()),
            None => file.sync_all().map_err(SyncError::Failed),
        };
        self.sync_result(synced, w.active.id)?;
        w.allocated = target;
        Ok(())
    }

    /// Waits for durability according to the sync policy (and, when the
    /// writer sealed a segment past the space bound, for compaction).
    fn finish(&self, pos: Pos) -> Result<()> {
        if self.stall.load(Ordering::Relaxed) {
            self.stall_if_needed();
        }
        if self.opts.sync_policy == SyncPolicy::Always {
            self.wait(pos)?;
        }
        Ok(())
    }

    /// Poisons the handle on a failed (or earlier failed) fsync.
    fn sync_result(&self, r: std::result::Result<(), SyncError>, id: u32) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            Err(SyncError::Failed(e)) => {
                self.poison(format!("fsync of segment {id} failed: {e}"));
                Err(Error::Io(e))
            }
            Err(SyncError::Poisoned(cause)) => {
                self.poison(cause.clone());
                Err(Error::Poisoned { cause })
            }
        }
    }

    fn wait(&self, pos: Pos) -> Result<()> {
        let Some(g) = &self.group else { return Ok(()) };
        self.sync_result(g.wait_durable(pos), pos.0)
    }

    /// Seals the active segment and starts a new one when `incoming` more
    /// bytes would push it past the limit.
    fn maybe_roll(&self, w: &mut Writer, incoming: u64) -> Result<()> {
        let len = w.active.len.load(Ordering::Relaxed);
        if len <= SEGMENT_HEADER_LEN || len + incoming <= self.opts.max_segment_bytes {
            return Ok(());
        }
        self.roll(w)
    }

    fn roll(&self, w: &mut Writer) -> Result<()> {
        let old = w.active.clone();
        let old_len = old.len.load(Ordering::Acquire);
        // 1. The old segment's tail is durable before anything goes into the
        //    new one, so a crash can never keep newer writes and lose older.
        //    Preallocated zeros are cut off first: a sealed segment ends at
        //    its last record.
        //    The fsync runs between group-commit rounds (never beside one,
        //    never after a failed one).
        let group = self.group.as_ref().ok_or(Error::ReadOnly)?;
        let trim = w.allocated > old_len;
        let sealed = group.sync_exclusively((old.id, old_len), || {
            if trim {
                old.file.set_len(old_len).and_then(|()| old.file.sync_all())
            } else {
                old.file.sync_data()
            }
        });
        self.sync_result(sealed, old.id)?;
        // 2. The new segment's header and directory entry are durable before
        //    its first record.
        let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
        let (file, salt) = match create_segment(&*self.opts.vfs, &self.dir, id) {
            Ok(f) => f,
            Err(e) => {
                self.poison(format!("creating segment {id} failed: {e}"));
                return Err(e);
            }
        };
        let path = names::segment_path(&self.dir, id);
        let tail = new_tail_cache(&self.opts, &*file, SEGMENT_HEADER_LEN)?;
        let reader = Segment::active(path, file.clone(), tail.clone(), salt);
        let sealed = match Segment::open_sealed(
            &*self.opts.vfs,
            &self.dir,
            old.id,
            self.opts.use_mmap,
            old.salt,
        ) {
            Ok(s) => s,
            Err(e) => {
                log::warn!(
                    "could not map sealed segment {}: {e}; reading it with pread",
                    old.id
                );
                Segment::with_file(
                    names::segment_path(&self.dir, old.id),
                    old.file.clone(),
                    old.salt,
                )
            }
        };
        {
            let mut segs = locks::write(&self.segments);
            segs.insert(old.id, Arc::new(sealed));
            segs.insert(id, Arc::new(reader));
        }
        lock(&self.seg_stats).insert(id, SegStat::empty());
        let active = Arc::new(Active {
            id,
            salt,
            file,
            tail,
            len: AtomicU64::new(SEGMENT_HEADER_LEN),
            synced: AtomicU64::new(SEGMENT_HEADER_LEN),
        });
        group.set_current(active.clone());
        group.mark_durable((id, SEGMENT_HEADER_LEN));
        w.active = active;
        w.allocated = SEGMENT_HEADER_LEN;
        w.marked = 0;
        // 3. The hint of the sealed segment is written in the background
        //    (inline when tests ask for a fixed order of file operations).
        if self.opts.deterministic {
            self.write_hint(old.id);
        } else {
            lock(&self.bg).hint_jobs.push(old.id);
            self.bg_cv.notify_all();
        }
        self.after_seal();
        Ok(())
    }

    fn encode_put(
        w: &mut Writer,
        flags: u8,
        seq: u64,
        expires: u64,
        key: &[u8],
        value: &[u8],
    ) -> Entry {
        let offset = w.encode_flagged(Kind::Put, flags, seq, expires, key, value);
        Entry {
            seq,
            expires_at_ms: expires,
            offset,
            file_id: w.active.id,
            value_len: value.len() as u32,
        }
    }

    /// Writes one put under the writer lock; returns the position to wait for.
    fn put_locked(&self, w: &mut Writer, key: &[u8], value: &[u8], expires: u64) -> Result<Pos> {
        self.maybe_roll(w, record::encoded_len(key.len() as u32, value.len() as u32))?;
        w.start();
        let seq = w.next_seq;
        let entry = Self::encode_put(w, 0, seq, expires, key, value);
        self.append(w, 1, &[Applied::Put { key, entry }], 0)
    }

    /// Writes one tombstone under the writer lock.
    fn delete_locked(&self, w: &mut Writer, key: &[u8]) -> Result<Pos> {
        let len = record::encoded_len(key.len() as u32, 0);
        self.maybe_roll(w, len)?;
        w.start();
        let seq = w.next_seq;
        w.encode(Kind::Tombstone, seq, 0, key, b"");
        self.append(w, 1, &[Applied::Delete { key }], len)
    }

    /// Reads the live value of `key` for a read-modify-write.
    fn current(&self, key: &[u8]) -> Result<Option<(Entry, Vec<u8>)>> {
        match self.live_entry(key) {
            Some(e) => Ok(self.read_entry(key, e)?.map(|v| (e, v))),
            None => Ok(None),
        }
    }

    pub(crate) fn put(&self, key: &[u8], value: &[u8], ttl: Option<Duration>) -> Result<()> {
        check_key(key)?;
        check_value(value)?;
        let expires = match ttl {
            Some(t) => expiry_after(self.now(), t)?,
            None => 0,
        };
        let pos = {
            let mut w = self.writer()?;
            self.put_locked(&mut w, key, value, expires)?
        };
        self.finish(pos)
    }

    pub(crate) fn delete(&self, key: &[u8]) -> Result<bool> {
        check_key(key)?;
        let pos = {
            let mut w = self.writer()?;
            match self.keydir.get(key) {
                None => return Ok(false),
                Some(e) if e.is_expired(self.now()) => {
                    // Already invisible, and its record stays expired on
                    // disk: forget it without writing anything.
                    self.forget_expired(key, &e);
                    return Ok(false);
                }
                Some(_) => self.delete_locked(&mut w, key)?,
            }
        };
        self.finish(pos).map(|()| true)
    }

    pub(crate) fn put_if_absent(
        &self,
        key: &[u8],
        value: &[u8],
        ttl: Option<Duration>,
    ) -> Result<bool> {
        check_key(key)?;
        check_value(value)?;
        if ttl.is_some_and(|t| t.is_zero()) {
            // As Redis `SET NX EX 0`: invalid whether or not the key exists.
            return Err(Error::InvalidTtl);
        }
        let pos = {
            let mut w = self.writer()?;
            if self.live_entry(key).is_some() {
                return Ok(false);
            }
            let expires = match ttl {
                Some(t) => expiry_after(self.now(), t)?,
                None => 0,
            };
            self.put_locked(&mut w, key, value, expires)?
        };
        self.finish(pos).map(|()| true)
    }

    pub(crate) fn incr(&self, key: &[u8], delta: i64) -> Result<i64> {
        check_key(key)?;
        let (pos, n) = {
            let mut w = self.writer()?;
            let (cur, expires) = match self.current(key)? {
                Some((e, v)) => (parse_i64(&v)?, e.expires_at_ms),
                None => (0, 0),
            };
            let n = cur.checked_add(delta).ok_or(Error::Overflow)?;
            let text = n.to_string();
            (self.put_locked(&mut w, key, text.as_bytes(), expires)?, n)
        };
        self.finish(pos).map(|()| n)
    }

    /// Rewrites the live value of `key` with a new expiry.
    fn set_expiry(&self, key: &[u8], expires: Option<u64>, only_if_ttl: bool) -> Result<bool> {
        check_key(key)?;
        let pos = {
            let mut w = self.writer()?;
            let Some((e, v)) = self.current(key)? else {
                return Ok(false);
            };
            if only_if_ttl && e.expires_at_ms == 0 {
                return Ok(false);
            }
            match expires {
                Some(x) => self.put_locked(&mut w, key, &v, x)?,
                None => self.delete_locked(&mut w, key)?,
            }
        };
        self.finish(pos).map(|()| true)
    }

    pub(crate) fn expire(&self, key: &[u8], ttl: Duration) -> Result<bool> {
        if ttl.is_zero() {
            // As Redis: an expiry in the past deletes the key.
            return self.set_expiry(key, None, false);
        }
        let at = expiry_after(self.now(), ttl)?;
        self.set_expiry(key, Some(at), false)
    }

    pub(crate) fn persist(&self, key: &[u8]) -> Result<bool> {
        self.set_expiry(key, Some(0), true)
    }

    pub(crate) fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<std::result::Result<(), CasConflict>> {
        check_key(key)?;
        if let Some(v) = new {
            check_value(v)?;
        }
        let pos = {
            let mut w = self.writer()?;
            let current = self.current(key)?.map(|(_, v)| v);
            if current.as_deref() != expected {
                return Ok(Err(CasConflict { current }));
            }
            match (new, current.is_some()) {
                (Some(v), _) => self.put_locked(&mut w, key, v, 0)?,
                (None, true) => self.delete_locked(&mut w, key)?,
                (None, false) => {
                    // As `delete`: an expired entry is already invisible;
                    // forget it without writing anything.
                    if let Some(e) = self.keydir.get(key) {
                        if e.is_expired(self.now()) {
                            self.forget_expired(key, &e);
                        }
                    }
                    return Ok(Ok(()));
                }
            }
        };
        self.finish(pos).map(|()| Ok(()))
    }

    pub(crate) fn write_batch(&self, batch: &Batch) -> Result<()> {
        if batch.ops.is_empty() {
            self.check_open()?;
            return Ok(());
        }
        for op in &batch.ops {
            if let BatchOp::Put { ttl: Some(t), .. } = op {
                if t.is_zero() {
                    return Err(Error::InvalidTtl);
                }
            }
        }
        let pos = {
            let mut w = self.writer()?;
            let now = self.now();
            let mut ops = Vec::with_capacity(batch.ops.len());
            for op in &batch.ops {
                ops.push(match op {
                    BatchOp::Put { key, value, ttl } => WriteOp {
                        key,
                        value: Some(value),
                        expires: match ttl {
                            Some(t) => expiry_after(now, *t)?,
                            None => 0,
                        },
                    },
                    BatchOp::Delete { key } => WriteOp {
                        key,
                        value: None,
                        expires: 0,
                    },
                });
            }
            self.write_ops_locked(&mut w, &ops)?
        };
        self.finish(pos)
    }

    /// Appends `ops` as one atomic batch under the writer lock (expiry times
    /// are absolute Unix milliseconds, 0 for none).
    fn write_ops_locked(&self, w: &mut Writer, ops: &[WriteOp<'_>]) -> Result<Pos> {
        let count = u32::try_from(ops.len())
            .map_err(|_| Error::InvalidOptions("a batch holds at most 2^32-1 operations".into()))?;
        let mut total = 2 * record::encoded_len(0, 12);
        for op in ops {
            check_key(op.key)?;
            let value_len = match op.value {
                Some(v) => {
                    check_value(v)?;
                    v.len() as u32
                }
                None => 0,
            };
            total += record::encoded_len(op.key.len() as u32, value_len);
        }
        // A batch starts a fresh segment when it does not fit, so this keeps
        // every record offset below 4 GiB (the index holds 32-bit offsets).
        if total > MAX_BATCH_BYTES {
            return Err(Error::InvalidOptions(format!(
                "a batch holds at most {MAX_BATCH_BYTES} bytes of records; this one needs {total}"
            )));
        }
        self.maybe_roll(w, total)?;
        w.start();
        let begin = w.next_seq;
        w.encode(Kind::BatchBegin, begin, 0, b"", &count.to_le_bytes());
        let mut dead = record::encoded_len(0, 4);
        let mut applied = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let seq = begin + 1 + i as u64;
            match op.value {
                Some(value) => {
                    let entry = Self::encode_put(w, FLAG_BATCH, seq, op.expires, op.key, value);
                    applied.push(Applied::Put { key: op.key, entry });
                }
                None => {
                    w.encode_flagged(Kind::Tombstone, FLAG_BATCH, seq, 0, op.key, b"");
                    dead += record::encoded_len(op.key.len() as u32, 0);
                    applied.push(Applied::Delete { key: op.key });
                }
            }
        }
        let mut commit = [0u8; 12];
        commit[..8].copy_from_slice(&begin.to_le_bytes());
        commit[8..].copy_from_slice(&count.to_le_bytes());
        let commit_seq = begin + 1 + u64::from(count);
        w.encode(Kind::BatchCommit, commit_seq, 0, b"", &commit);
        dead += record::encoded_len(0, 12);
        self.append(w, u64::from(count) + 2, &applied, dead)
    }

    /// Runs `f` under the writer lock: its reads see no concurrent write,
    /// and its writes are appended as one atomic batch (a single record when
    /// it makes one write), then waited for as the sync policy says.
    pub(crate) fn transact<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<R> {
        let pos = {
            let mut w = self.writer()?;
            let _inside = crate::engine::txn::Inside::enter()?;
            let read = |k: &[u8]| self.read_live(k);
            let mut tx = Txn::new(&read, self.now());
            let r = f(&mut tx)?;
            let mut writes = tx.into_writes();
            // A delete of a key with no entry at all changes nothing.
            writes.retain(|(k, v)| v.is_some() || self.keydir.get(k).is_some());
            if writes.is_empty() {
                drop(w);
                if self.opts.sync_policy == crate::options::SyncPolicy::Always {
                    // What the closure read may be another writer's record
                    // that is not durable yet: a decision made on it must
                    // not be acknowledged before it is.
                    self.sync()?;
                }
                return Ok(r);
            }
            let ops: Vec<WriteOp<'_>> = writes
                .iter()
                .map(|(k, v)| WriteOp {
                    key: k,
                    value: v.as_ref().map(|(v, _)| v.as_slice()),
                    expires: v.as_ref().map_or(0, |(_, e)| *e),
                })
                .collect();
            let pos = if let [op] = ops.as_slice() {
                match op.value {
                    Some(v) => {
                        check_key(op.key)?;
                        check_value(v)?;
                        self.put_locked(&mut w, op.key, v, op.expires)?
                    }
                    None => {
                        check_key(op.key)?;
                        self.delete_locked(&mut w, op.key)?
                    }
                }
            } else {
                self.write_ops_locked(&mut w, &ops)?
            };
            (pos, r)
        };
        self.finish(pos.0)?;
        Ok(pos.1)
    }

    /// The live value of `key` and its expiry (Unix ms, 0 for none), for a
    /// read inside [`Core::transact`].
    pub(crate) fn read_live(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        self.check_open()?;
        check_key(key)?;
        Ok(self.current(key)?.map(|(e, v)| (v, e.expires_at_ms)))
    }

    /// Calls `f` with each live key starting with `prefix`, its value length
    /// and its expiry (Unix ms, 0 for none), without reading values.
    pub(crate) fn for_each_live_key(&self, prefix: &[u8], mut f: impl FnMut(&[u8], u32, u64)) {
        let now = self.now();
        for i in 0..self.keydir.shard_count() {
            let shard = self.keydir.read_shard(i);
            shard.for_each(|key, e| {
                if key.starts_with(prefix) && !e.is_expired(now) {
                    f(key, e.value_len, e.expires_at_ms);
                }
            });
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.now()
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.check_open()?;
        let Some(g) = &self.group else { return Ok(()) };
        if self.is_poisoned() {
            return Err(self.poisoned_error());
        }
        let a = g.current();
        self.wait((a.id, a.len.load(Ordering::Acquire)))
    }

    // ----- expiry -----------------------------------------------------------

    pub(crate) fn count_expired_removed(&self, n: u64) {
        self.expired_removed.fetch_add(n, Ordering::Relaxed);
    }

    fn forget_expired(&self, key: &[u8], e: &Entry) {
        if self.keydir.remove_if_eq(key, e) {
            self.expired_removed.fetch_add(1, Ordering::Relaxed);
            if let Some(s) = lock(&self.seg_stats).get_mut(&e.file_id) {
                s.dead += e.record_len(key.len());
            }
        }
    }

    /// Removes expired entries from memory, one shard at a time.
    pub(crate) fn sweep_expired(&self) -> u64 {
        let now = self.now();
        let mut removed = 0u64;
        for i in 0..self.keydir.shard_count() {
            if self.keydir.read_shard(i).ttl_keys() == 0 {
                continue;
            }
            let mut dead = BTreeMap::<u32, u64>::new();
            self.keydir.write_shard(i).retain(
                |_, e| e.is_expired(now),
                |k, e| {
                    removed += 1;
                    *dead.entry(e.file_id).or_default() += e.record_len(k.len());
                },
            );
            let mut stats = lock(&self.seg_stats);
            for (id, d) in dead {
                if let Some(s) = stats.get_mut(&id) {
                    s.dead += d;
                }
            }
        }
        self.expired_removed.fetch_add(removed, Ordering::Relaxed);
        removed
    }

    // ----- stats, close -----------------------------------------------------

    pub(crate) fn stats(&self) -> Stats {
        let now = self.now();
        let seg = lock(&self.seg_stats).clone();
        let mut st = Stats {
            live_keys: self.keydir.live_len(now),
            segments: seg.len() as u64,
            expired_keys_removed: self.expired_removed.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            fsyncs: self
                .group
                .as_ref()
                .map_or(0, |g| g.fsyncs.load(Ordering::Relaxed)),
            keydir_memory_bytes: self.keydir.memory_bytes(),
            write_stalls: self.stalls.load(Ordering::Relaxed),
            write_stall_time: Duration::from_nanos(self.stall_ns.load(Ordering::Relaxed)),
            ..Stats::default()
        };
        for s in seg.values() {
            st.disk_bytes += s.total;
            st.dead_bytes += s.dead + s.kept;
            st.live_bytes += s.live();
        }
        st
    }

    pub(crate) fn segment_stats(&self) -> Vec<crate::SegmentStats> {
        let active = self.active_id();
        lock(&self.seg_stats)
            .iter()
            .map(|(id, s)| crate::SegmentStats {
                id: *id,
                bytes: s.total,
                dead_bytes: s.dead,
                min_seq: s.min_seq,
                active: Some(*id) == active,
            })
            .collect()
    }

    /// Flushes, marks the store closed and releases the directory lock.
    pub(crate) fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Let a compaction in progress finish first: nothing may touch the
        // directory once its lock is released.
        self.stop_background();
        let _no_compaction = lock(&self.compaction);
        let result = match &self.writer {
            Some(w) => {
                let _w = lock(w);
                self.closed.store(true, Ordering::Release);
                if self.is_poisoned() {
                    Err(self.poisoned_error())
                } else {
                    self.group
                        .as_ref()
                        .map_or(Ok(()), |g| self.sync_result(g.sync_all(), g.current().id))
                }
            }
            None => {
                self.closed.store(true, Ordering::Release);
                Ok(())
            }
        };
        self.stop_background();
        lock(&self.lock_file).take();
        result
    }

    // ----- background -------------------------------------------------------

    /// Waits up to `timeout` for the store to stop; returns whether it has.
    pub(crate) fn wait_for_stop(&self, timeout: Duration) -> bool {
        let bg = lock(&self.bg);
        if bg.stop {
            return true;
        }
        let bg = locks::wait_timeout_while(&self.bg_cv, bg, timeout, |b| !b.stop);
        bg.stop
    }

    /// The active segment's id (`None` when read-only).
    pub(crate) fn active_id(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.current().id)
    }

    pub(crate) fn stop_background(&self) {
        lock(&self.bg).stop = true;
        self.bg_cv.notify_all();
        self.end_stall();
    }

    /// The background loop: periodic fsync (EveryMillis), the expiry sweep
    /// and hint files for newly sealed segments. Returns when stopped.
    pub(crate) fn background(self: &Arc<Self>) {
        let sync_every = self.opts.sync_interval();
        let sweep_every = match self.opts.expiry_sweep_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let mut next_sync = sync_every.map(|d| Instant::now() + d);
        let mut next_sweep = sweep_every.map(|d| Instant::now() + d);
        loop {
            let jobs = {
                let mut bg = lock(&self.bg);
                loop {
                    if bg.stop {
                        return;
                    }
                    if !bg.hint_jobs.is_empty() {
                        break;
                    }
                    let now = Instant::now();
                    let due = [next_sync, next_sweep].into_iter().flatten().min();
                    match due {
                        Some(t) if t <= now => break,
                        Some(t) => {
                            bg = locks::wait_timeout(&self.bg_cv, bg, t - now);
                        }
                        None => {
                            bg = locks::wait(&self.bg_cv, bg);
                        }
                    }
                }
                std::mem::take(&mut bg.hint_jobs)
            };
            for id in jobs {
                self.write_hint(id);
            }
            let now = Instant::now();
            if let (Some(t), Some(d)) = (next_sync, sync_every) {
                if t <= now {
                    if let Some(g) = &self.group {
                        if !self.is_poisoned() && !g.is_clean() {
                            let a = g.current();
                            let _ = self.wait((a.id, a.len.load(Ordering::Acquire)));
                        }
                    }
                    next_sync = Some(now + d);
                }
            }
            if let (Some(t), Some(d)) = (next_sweep, sweep_every) {
                if t <= now {
                    self.sweep_expired();
                    next_sweep = Some(Instant::now() + d);
                }
            }
        }
    }

    /// Scans a sealed segment and writes its hint file.
    fn write_hint(&self, id: u32) {
        let path = names::segment_path(&self.dir, id);
        // A sealed segment is normally mapped already: scan the map rather
        // than reading the whole file into memory a second time.
        let seg = locks::read(&self.segments).get(&id).cloned();
        let result = match seg.as_ref().and_then(|s| s.mapped_bytes()) {
            Some(bytes) => Ok(std::borrow::Cow::Borrowed(bytes)),
            None => self
                .opts
                .vfs
                .read(&path)
                .map(std::borrow::Cow::Owned)
                .map_err(Error::Io),
        }
        .and_then(|bytes| {
            recovery::scan_segment(&path, id, &bytes, false, crate::RecoveryMode::Strict)
        })
        .and_then(|load| {
            hints::write(
                &*self.opts.vfs,
                &self.dir,
                id,
                load.salt,
                load.len,
                load.max_seq,
                &recovery::dedup_newest(&load.entries),
            )
            .map_err(Error::Io)
        });
        match result {
            Ok(n) => self.note_hint(id, n),
            Err(e) => log::warn!("could not write the hint of segment {id}: {e}"),
        }
    }
}

/// The tail cache of an active segment whose records end at `len`, seeded
/// with the newest bytes already in the file.
fn new_tail_cache(opts: &Options, file: &dyn VFile, len: u64) -> Result<Option<Arc<TailCache>>> {
    if opts.tail_cache_bytes == 0 {
        return Ok(None);
    }
    let start = len
        .saturating_sub(opts.tail_cache_bytes)
        .max(SEGMENT_HEADER_LEN.min(len));
    let cache = TailCache::new(opts.tail_cache_bytes, start);
    let mut buf = vec![0u8; (len - start) as usize];
    fs::read_exact_at(file, &mut buf, start)?;
    cache.append(start, &buf);
    Ok(Some(Arc::new(cache)))
}

/// Creates segment `id`: header written, file and directory synced.
fn create_segment(vfs: &dyn Vfs, dir: &Path, id: u32) -> Result<(Arc<dyn VFile>, u32)> {
    let path = names::segment_path(dir, id);
    let salt = new_salt(id);
    let file = vfs.open(&path, OpenMode::CreateNew)?;
    fs::write_all_at(&*file, &segment::encode_header(id, salt), 0)?;
    file.sync_all()?;
    vfs.sync_dir(dir)?;
    Ok((file, salt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_like_redis() {
        assert_eq!(parse_i64(b"0").ok(), Some(0));
        assert_eq!(parse_i64(b"-12").ok(), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807").ok(), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808").ok(), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
            b"abc",
        ] {
            assert!(
                matches!(parse_i64(bad), Err(Error::NotAnInteger)),
                "{:?}",
                bad
            );
        }
    }
}
