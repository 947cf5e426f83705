//! The write path: encoding records, appending them to the active
//! segment, updating the index, rolling to a new segment, and waiting for
//! the group-commit fsync.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::batch::{Batch, BatchOp};
use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{
    self, check_key, check_value, RecordKind, FLAG_BATCH, FLAG_EXPIRED, FLAG_EXPIRY_ONLY,
};
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::fs;
use crate::index::keydir::IndexEntry;
use crate::options::SyncPolicy;
use crate::storage;
use crate::storage::feed_signal::LogEnd;
use crate::storage::group_commit::{ActiveSegment, Pos, SyncError};
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;
use crate::storage::tail_cache::{self};
use crate::types::{expiry_after, CasConflict};
use crate::util::locks::{self, lock};

use super::txn::Txn;
use super::{Core, Writer};

/// The most record bytes one batch may take (2 GiB).
pub(crate) const MAX_BATCH_BYTES: u64 = 2 << 30;
/// How far ahead of the writes the active segment is zero-filled.
const PREALLOCATE_BYTES: u64 = 4 << 20;

/// A sync mark is written once the durable part of the active segment has
/// grown by this much since the last one. Recovery treats damage before the
/// newest mark's offset as corruption and damage after it as an unsynced
/// tail; marks cost 40 bytes each, so this bounds their overhead to 1%.
const SYNC_MARK_EVERY_BYTES: u64 = 4096;

impl Writer {
    /// Starts encoding an append: clears the buffer and, when enough of the
    /// active segment has become durable since the last sync mark, encodes
    /// a new one first.
    fn start(&mut self) {
        self.buf.clear();
        self.mark_bytes = 0;
        let synced = self.active.synced.load(Ordering::Acquire);
        if synced >= self.marked + SYNC_MARK_EVERY_BYTES {
            self.encode(RecordKind::SyncMark, 0, 0, b"", &synced.to_le_bytes());
            self.marked = synced;
            self.mark_bytes = self.buf.len() as u64;
        }
    }

    /// Appends a record to the write buffer; returns the segment offset it
    /// will be written at.
    fn encode(
        &mut self,
        kind: RecordKind,
        seq: u64,
        expires: u64,
        key: &[u8],
        value: &[u8],
    ) -> u64 {
        self.encode_flagged(kind, 0, seq, expires, key, value)
    }

    /// [`Writer::encode`] with record flags.
    fn encode_flagged(
        &mut self,
        kind: RecordKind,
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

/// Whether a write failed for want of space (ENOSPC, a quota, the file
/// size limit), rather than an I/O error.
fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

/// Sets [`record::FLAG_REPLACES`] on each record of `applied` (encoded in
/// `w.buf`, which goes to `offset` of the active segment) whose key had an
/// index entry just before it (`was`, from [`Core::entries_before`]): the
/// flag says so to replay after an index checkpoint
/// (`recovery/replay.rs`). Under the writer lock, where the index changes
/// (compaction only moves entries, and the expired ones it drops are in
/// the segments it retires, which replay accounts for). Recomputes each
/// flagged record's checksum: one more pass over an overwrite's bytes.
fn mark_replacing(
    w: &mut Writer,
    offset: u64,
    applied: &[Applied<'_>],
    was: &[Option<(IndexEntry, u64)>],
) {
    let salt = w.active.salt;
    for (a, was) in applied.iter().zip(was) {
        if was.is_none() {
            continue;
        }
        let (at, len) = a.record_span();
        let start = (at - offset) as usize;
        record::mark_replaces(&mut w.buf[start..start + len as usize], salt, at);
    }
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

/// One write as the engine appends it, whatever asked for it (a batch or a
/// transaction): a put when `value` is set, else a delete; `expires` is
/// absolute (Unix ms, 0 for none).
struct WriteOp<'a> {
    key: &'a [u8],
    value: Option<&'a [u8]>,
    expires: u64,
}

/// A change to apply to the keydir once its record is on disk.
enum Applied<'a> {
    /// A put, whose record takes `len` bytes.
    Put {
        key: &'a [u8],
        entry: IndexEntry,
        len: u64,
    },
    /// A delete, whose tombstone is at `at` in the active segment.
    Delete { key: &'a [u8], at: u64 },
}

impl Applied<'_> {
    fn key(&self) -> &[u8] {
        match self {
            Applied::Put { key, .. } | Applied::Delete { key, .. } => key,
        }
    }

    /// Where its record is in the active segment, and its length.
    fn record_span(&self) -> (u64, u64) {
        match self {
            Applied::Put { entry, len, .. } => (entry.offset, *len),
            Applied::Delete { key, at } => (*at, record::encoded_len(key.len() as u32, 0)),
        }
    }

    /// The key's entry once this is applied.
    fn new_entry(&self) -> Option<IndexEntry> {
        match self {
            Applied::Put { entry, .. } => Some(*entry),
            Applied::Delete { .. } => None,
        }
    }

    /// The key's entry once this is applied, with its record's length.
    fn new_record(&self) -> Option<(IndexEntry, u64)> {
        match self {
            Applied::Put { entry, len, .. } => Some((*entry, *len)),
            Applied::Delete { .. } => None,
        }
    }
}

impl Core {
    /// The entry each of `applied`'s keys has before they are applied, in
    /// order, with the length of the record it points at (from the header
    /// the lookup reads to check the key): a key that an earlier one of
    /// them changes has that one's.
    fn entries_before(&self, applied: &[Applied<'_>]) -> Result<Vec<Option<(IndexEntry, u64)>>> {
        let mut was = Vec::with_capacity(applied.len());
        let mut seen: hashbrown::HashMap<&[u8], usize, foldhash::fast::RandomState> =
            hashbrown::HashMap::default();
        for (i, a) in applied.iter().enumerate() {
            let earlier = if applied.len() > 1 {
                seen.insert(a.key(), i)
            } else {
                None
            };
            was.push(match earlier {
                Some(j) => applied[j].new_record(),
                None => self
                    .keydir
                    .get_with_header(a.key(), self)?
                    .map(|(e, h)| (e, h.len())),
            });
        }
        Ok(was)
    }

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
        // Each key's entry before this write, looked up before anything is
        // written: a record that cannot be read fails the write cleanly.
        let was = self.entries_before(applied)?;
        let len = w.buf.len() as u64;
        let offset = w.active.len.load(Ordering::Relaxed);
        mark_replacing(w, offset, applied, &was);
        if offset + len > w.allocated {
            self.preallocate(w, offset + len)?;
        }
        if let Err(e) = fs::write_all_at(&*w.active.file, &w.buf, offset) {
            self.poison(format!("write to segment {} failed: {e}", w.active.id));
            let path = names::segment_path(&self.dir, w.active.id);
            let e = fs::named(&path, &e);
            return Err(Error::Io(io::Error::new(
                e.kind(),
                format!("writing {len} bytes failed: {e}"),
            )));
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
        for (a, was) in applied.iter().zip(was) {
            let key = a.key();
            // A compaction may have moved the record since (`apply_at` then
            // finds it again): a copy of the same length.
            let was_len = was.map_or(0, |(_, len)| len);
            let was = was.map(|(e, _)| e);
            let old = match self.keydir.apply_at(key, was, a.new_entry(), self) {
                Ok(old) => old,
                Err(e) => {
                    // The record is written but the index could not take it.
                    self.poison(format!("updating the index after a write failed: {e}"));
                    return Err(e);
                }
            };
            if let Some(old) = old {
                dead.push((old.file_id, was_len));
            }
        }
        {
            let mut stats = lock(&self.seg_stats);
            let own = stats.entry(w.active.id).or_insert_with(SegmentSpace::empty);
            own.total = end;
            own.min_seq = own.min_seq.min(w.next_seq - seqs);
            for &(id, d) in &dead {
                if let Some(s) = stats.get_mut(&id) {
                    s.dead += d;
                }
            }
        }
        w.dead = dead;
        // Only now that reads see them: a consumer told of a change and
        // reading the key back must find it (or something newer).
        self.feed.publish(LogEnd {
            segment: w.active.id,
            offset: end,
            seq: w.next_seq - 1,
        });
        Ok((w.active.id, end))
    }

    /// Extends the active segment with durable zeros so that it holds at
    /// least `needed` bytes. Only for policies that fsync: without fsyncs
    /// the zeros would buy nothing.
    ///
    /// Preallocation is only an optimisation. When the disk has no room
    /// for the zeros, the space they took is given back (the file is cut
    /// to its size before) and preallocation stops until the next segment:
    /// records then extend the file themselves, and a write fails only
    /// when the record itself does not fit.
    fn preallocate(&self, w: &mut Writer, needed: u64) -> Result<()> {
        if self.opts.sync_policy == SyncPolicy::Never || w.preallocation_off {
            return Ok(());
        }
        let step = PREALLOCATE_BYTES.min(self.opts.max_segment_bytes);
        let target = needed.max(w.allocated + step);
        let zeros = [0u8; 64 * 1024];
        let before = w.allocated.max(w.active.len.load(Ordering::Relaxed));
        let mut at = before;
        let written = (|| {
            while at < target {
                let n = (target - at).min(zeros.len() as u64);
                fs::write_all_at(&*w.active.file, &zeros[..n as usize], at)?;
                at += n;
            }
            Ok(())
        })();
        match written {
            Ok(()) => {}
            Err(e) if is_out_of_space(&e) => {
                self.give_back(w, before, &e);
                return Ok(());
            }
            Err(e) => {
                self.poison(format!(
                    "extending segment {} with zeros failed: {e}",
                    w.active.id
                ));
                return Err(Error::Io(e));
            }
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

    /// Preallocating ran out of space: cuts the zeros it wrote (the file
    /// was `before` bytes long) and stops preallocating in this segment.
    /// Only zeros lie past `before`, so if the cut fails too, they stay,
    /// harmless: recovery keeps zeros after the last record as space.
    fn give_back(&self, w: &mut Writer, before: u64, e: &io::Error) {
        w.preallocation_off = true;
        let id = w.active.id;
        match w.active.file.set_len(before) {
            Ok(()) => log::warn!(
                "no room to preallocate segment {id} ({e}); records extend it as they come"
            ),
            Err(cut) => log::warn!(
                "no room to preallocate segment {id} ({e}), and cutting the zeros \
                 back to {before} bytes failed ({cut}); records extend it as they come"
            ),
        }
    }

    /// At a clean close, once everything written is durable: appends two
    /// sync marks that vouch for every byte before them and fsyncs them, so
    /// that the next open refuses (or salvages) damage anywhere in the
    /// active segment instead of cutting it as an unsynced tail. Two, so
    /// that damage in one of them plus damage in the records still leaves a
    /// mark that vouches for the records. A segment that already ends with
    /// them, or holds no record, gets none.
    ///
    /// The marks only add protection: nothing acknowledged depends on
    /// them, so a failure to write or fsync them is logged, not returned
    /// (the fsync is still never retried, and nothing is written after it).
    /// Returns whether the segment now ends as a clean close leaves it:
    /// with durable close marks, or holding no record.
    pub(super) fn write_close_marks(&self, w: &mut Writer) -> bool {
        let Some(group) = &self.group else {
            return false;
        };
        let len = w.active.len.load(Ordering::Acquire);
        if self.is_poisoned() {
            return false;
        }
        if len <= SEGMENT_HEADER_LEN || w.closed_end == len {
            return true;
        }
        w.buf.clear();
        for _ in 0..2 {
            w.encode(RecordKind::SyncMark, 0, 0, b"", &len.to_le_bytes());
        }
        let id = w.active.id;
        if let Err(e) = fs::write_all_at(&*w.active.file, &w.buf, len) {
            log::warn!("could not write the close marks of segment {id}: {e}");
            return false;
        }
        let end = len + w.buf.len() as u64;
        if let Some(t) = &w.active.tail {
            t.append(len, &w.buf);
        }
        w.active.len.store(end, Ordering::Release);
        self.feed.publish(LogEnd {
            segment: id,
            offset: end,
            seq: w.next_seq - 1,
        });
        if let Some(s) = lock(&self.seg_stats).get_mut(&id) {
            s.total = end;
            s.dead += end - len; // marks are dead bytes, as in `append`
        }
        let file = w.active.file.clone();
        match group.sync_exclusively((id, end), || file.sync_data()) {
            Ok(()) => {
                w.closed_end = end;
                true
            }
            Err(SyncError::Failed(e)) => {
                log::warn!("could not fsync the close marks of segment {id}: {e}");
                false
            }
            Err(SyncError::Poisoned(_)) => false,
        }
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

    /// What a commit whose fsync the caller defers still waits for: a
    /// stall while compaction catches up.
    fn finish_deferred(&self) {
        if self.stall.load(Ordering::Relaxed) {
            self.stall_if_needed();
        }
    }

    /// Poisons the handle on a failed (or earlier failed) fsync.
    pub(super) fn sync_result(&self, r: std::result::Result<(), SyncError>, id: u32) -> Result<()> {
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

    /// Waits until everything up to `pos` (segment id, offset) is durable:
    /// joins the group commit, which either finds that a running fsync
    /// covers `pos` or runs one for every writer waiting. A failed fsync
    /// poisons the handle and is never retried. Read-only handles have no
    /// group commit and return at once.
    pub(super) fn wait(&self, pos: Pos) -> Result<()> {
        let Some(g) = &self.group else { return Ok(()) };
        self.sync_result(g.wait_durable(pos), pos.0)
    }

    /// Seals the active segment now, as when it fills up, if it holds any
    /// record; returns whether it did.
    pub(crate) fn seal_active(&self) -> Result<bool> {
        let mut w = self.writer()?;
        if w.active.len.load(Ordering::Acquire) <= SEGMENT_HEADER_LEN {
            return Ok(false);
        }
        self.roll(&mut w)?;
        Ok(true)
    }

    /// Seals the active segment an open took over, as at a roll: called by
    /// [`Core::open`] when `open::seals_at_open` says so, before any write.
    /// A new segment that cannot be created (a full disk, say) leaves the
    /// old one active, as an open without this step would: the open still
    /// serves reads, and writes as far as the disk allows.
    pub(super) fn seal_at_open(&self) -> Result<()> {
        let w = self.writer.as_ref().ok_or(Error::ReadOnly)?;
        self.roll_to_new(&mut lock(w), true)
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

    /// Seals the active segment and makes a new one active, in three
    /// ordered steps (numbered below): the old segment's tail durable and
    /// its preallocated zeros cut off; the new segment created with a
    /// durable header and directory entry; the old segment's hint file
    /// queued for the background thread. A failure poisons the handle.
    fn roll(&self, w: &mut Writer) -> Result<()> {
        self.roll_to_new(w, false)
    }

    /// [`Core::roll`]; `at_open`: for [`Core::seal_at_open`].
    fn roll_to_new(&self, w: &mut Writer, at_open: bool) -> Result<()> {
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
        let (file, salt) = match storage::segment::create(&*self.opts.vfs, &self.dir, id) {
            Ok(f) => f,
            Err(e) if at_open => return self.keep_active(w, id, old_len, &e),
            Err(e) => {
                self.poison(format!("creating segment {id} failed: {e}"));
                return Err(e);
            }
        };
        let path = names::segment_path(&self.dir, id);
        let tail = tail_cache::seeded(self.opts.tail_cache_bytes, &*file, SEGMENT_HEADER_LEN)?;
        let reader = Segment::with_tail_cache(path, file.clone(), tail.clone(), salt);
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
        lock(&self.seg_stats).insert(id, SegmentSpace::empty());
        let active = Arc::new(ActiveSegment {
            id,
            salt,
            file,
            tail,
            len: AtomicU64::new(SEGMENT_HEADER_LEN),
            synced: AtomicU64::new(SEGMENT_HEADER_LEN),
        });
        group.set_current(active.clone());
        group.mark_durable((id, SEGMENT_HEADER_LEN));
        self.feed.publish(LogEnd {
            segment: id,
            offset: SEGMENT_HEADER_LEN,
            seq: w.next_seq - 1,
        });
        w.active = active;
        w.allocated = SEGMENT_HEADER_LEN;
        w.preallocation_off = false;
        w.marked = 0;
        // The close marks were the old segment's.
        w.closed_end = 0;
        // 3. The hint of the sealed segment is written in the background
        //    (inline when tests ask for a fixed order of file operations).
        if self.opts.is_deterministic() {
            self.write_hint(old.id);
            // So is a running checkpoint that is due, for the crash tests.
            if self.checkpoint_due() {
                self.checkpoint(super::checkpoint::CheckpointBy::Roll(w));
            }
        } else {
            lock(&self.bg).hint_jobs.push(old.id);
            self.bg_cv.notify_all();
        }
        // At open, compaction is left to its own schedule: the open of a
        // store that was just killed has enough to read without it.
        if !at_open {
            self.after_seal();
        }
        Ok(())
    }

    /// After `create` of segment `id` failed with `e` in a roll at open:
    /// removes what it left (durably, so that no newer segment is found
    /// beside the old one after a crash) and keeps the old segment active.
    /// Step 1 of the roll cut its preallocated zeros, so it is allocated
    /// up to `old_len`. The segment has no tail cache in this handle (the
    /// open left it out, expecting the seal): its reads take a `pread`.
    /// A removal that fails poisons the handle.
    fn keep_active(&self, w: &mut Writer, id: u32, old_len: u64, e: &Error) -> Result<()> {
        let vfs = &*self.opts.vfs;
        let removed = match vfs.remove_file(&names::segment_path(&self.dir, id)) {
            Err(r) if r.kind() != io::ErrorKind::NotFound => Err(r),
            _ => vfs.sync_dir(&self.dir),
        };
        if let Err(r) = removed {
            let cause = format!("creating segment {id} failed ({e}), then removing it: {r}");
            self.poison(cause);
            return Err(r.into());
        }
        log::warn!(
            "{}: could not start a new segment at open ({e}); writes go on in segment {}",
            self.dir.display(),
            w.active.id
        );
        w.allocated = old_len;
        Ok(())
    }

    fn encode_put<'k>(
        w: &mut Writer,
        flags: u8,
        seq: u64,
        expires: u64,
        key: &'k [u8],
        value: &[u8],
    ) -> Applied<'k> {
        let offset = w.encode_flagged(RecordKind::Put, flags, seq, expires, key, value);
        let entry = IndexEntry {
            expires_at_ms: expires,
            offset,
            file_id: w.active.id,
        };
        let len = record::encoded_len(key.len() as u32, value.len() as u32);
        Applied::Put { key, entry, len }
    }

    /// Writes one put under the writer lock; returns the position to wait for.
    fn put_locked(&self, w: &mut Writer, key: &[u8], value: &[u8], expires: u64) -> Result<Pos> {
        self.put_flagged_locked(w, 0, key, value, expires)
    }

    /// [`Core::put_locked`] with record flags.
    fn put_flagged_locked(
        &self,
        w: &mut Writer,
        flags: u8,
        key: &[u8],
        value: &[u8],
        expires: u64,
    ) -> Result<Pos> {
        self.maybe_roll(w, record::encoded_len(key.len() as u32, value.len() as u32))?;
        w.start();
        let seq = w.next_seq;
        let put = Self::encode_put(w, flags, seq, expires, key, value);
        self.append(w, 1, &[put], 0)
    }

    /// Under the writer lock: appends an expired tombstone
    /// ([`FLAG_EXPIRED`]) for each `(key, entry)` whose index entry still
    /// points at that entry's record, all in one write, and removes
    /// them from the index. Returns how many it wrote (none: no write).
    ///
    /// The tombstones take sequence numbers and count as dead bytes like
    /// any tombstone, and the records they replace become dead; nothing
    /// waits for their fsync (see [`Core::log_expired`]).
    pub(super) fn log_expired_locked(
        &self,
        w: &mut Writer,
        expired: &[(Vec<u8>, IndexEntry)],
    ) -> Result<u64> {
        // Still the same record: a put or delete since then (under the
        // writer lock, which this holds) moved the entry. So does a
        // compaction that copied the record: the next sweep finds it there.
        let mut still: Vec<&[u8]> = Vec::with_capacity(expired.len());
        for (k, e) in expired {
            if self.keydir.get(k, self)?.is_some_and(|c| c.same_place(e)) {
                still.push(k);
            }
        }
        if still.is_empty() {
            return Ok(0);
        }
        let total: u64 = still
            .iter()
            .map(|k| record::encoded_len(k.len() as u32, 0))
            .sum();
        self.maybe_roll(w, total)?;
        w.start();
        let first = w.next_seq;
        let mut applied = Vec::with_capacity(still.len());
        for (i, key) in still.iter().enumerate() {
            let seq = first + i as u64;
            let at = w.encode_flagged(RecordKind::Tombstone, FLAG_EXPIRED, seq, 0, key, b"");
            applied.push(Applied::Delete { key, at });
        }
        let n = still.len() as u64;
        self.append(w, n, &applied, total)?;
        Ok(n)
    }

    /// Writes one tombstone under the writer lock.
    fn delete_locked(&self, w: &mut Writer, key: &[u8]) -> Result<Pos> {
        let len = record::encoded_len(key.len() as u32, 0);
        self.maybe_roll(w, len)?;
        w.start();
        let seq = w.next_seq;
        let at = w.encode(RecordKind::Tombstone, seq, 0, key, b"");
        self.append(w, 1, &[Applied::Delete { key, at }], len)
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
            match self.keydir.get(key, self)? {
                None => return Ok(false),
                Some(e) if e.is_expired(self.now()) => {
                    // Already invisible: nothing to delete, but its
                    // expiration is logged as the sweep would (without
                    // waiting for an fsync).
                    let n = self.log_expired_locked(&mut w, &[(key.to_vec(), e)])?;
                    self.count_expired_removed(n);
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
            if self.live_entry(key)?.is_some() {
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

    /// Rewrites the live value of `key` with a new expiry: a put flagged
    /// [`FLAG_EXPIRY_ONLY`] (or, for `None`, a plain tombstone: an expiry
    /// in the past deletes the key, as Redis does).
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
                Some(x) => self.put_flagged_locked(&mut w, FLAG_EXPIRY_ONLY, key, &v, x)?,
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
                    // its expiration is logged as the sweep would.
                    if let Some(e) = self.keydir.get(key, self)? {
                        if e.is_expired(self.now()) {
                            let n = self.log_expired_locked(&mut w, &[(key.to_vec(), e)])?;
                            self.count_expired_removed(n);
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
        w.encode(RecordKind::BatchBegin, begin, 0, b"", &count.to_le_bytes());
        let mut dead = record::encoded_len(0, 4);
        let mut applied = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let seq = begin + 1 + i as u64;
            match op.value {
                Some(value) => {
                    applied.push(Self::encode_put(
                        w, FLAG_BATCH, seq, op.expires, op.key, value,
                    ));
                }
                None => {
                    let at =
                        w.encode_flagged(RecordKind::Tombstone, FLAG_BATCH, seq, 0, op.key, b"");
                    dead += record::encoded_len(op.key.len() as u32, 0);
                    applied.push(Applied::Delete { key: op.key, at });
                }
            }
        }
        let mut commit = [0u8; 12];
        commit[..8].copy_from_slice(&begin.to_le_bytes());
        commit[8..].copy_from_slice(&count.to_le_bytes());
        let commit_seq = begin + 1 + u64::from(count);
        w.encode(RecordKind::BatchCommit, commit_seq, 0, b"", &commit);
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
            let deferred = tx.is_deferred();
            let writes = tx.into_writes();
            // A delete of a key with no entry at all changes nothing.
            let mut kept = Vec::with_capacity(writes.len());
            for (k, v) in writes {
                if v.is_some() || self.keydir.get(&k, self)?.is_some() {
                    kept.push((k, v));
                }
            }
            let writes = kept;
            if writes.is_empty() {
                drop(w);
                if self.opts.sync_policy == crate::options::SyncPolicy::Always && !deferred {
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
            (pos, r, deferred)
        };
        let (pos, r, deferred) = pos;
        if deferred {
            self.finish_deferred();
        } else {
            self.finish(pos)?;
        }
        Ok(r)
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
