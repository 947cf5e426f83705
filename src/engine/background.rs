//! Background work: the background thread (periodic fsync, hint files for
//! sealed segments, the expiry sweep), the write stall, and closing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::names;

use crate::index::keydir::IndexEntry;
use crate::recovery::{self};
use crate::storage::space::{start_level, StoreSpace};
use crate::util::locks::{self, lock};

use super::checkpoint::CheckpointBy;
use super::Core;

/// The most expired tombstones the sweep appends at once (one write).
const EXPIRED_PER_APPEND: usize = 512;
/// The most key bytes of expired tombstones the sweep appends at once.
const EXPIRED_KEY_BYTES_PER_APPEND: usize = 256 * 1024;

/// Splits the sweep's expired entries into the chunks it appends at once:
/// at most [`EXPIRED_PER_APPEND`] keys and about
/// [`EXPIRED_KEY_BYTES_PER_APPEND`] key bytes each (one key always fits),
/// so that the writer lock is held briefly and one write stays small.
fn chunks_of_expired(
    expired: &[(Vec<u8>, IndexEntry)],
) -> impl Iterator<Item = &[(Vec<u8>, IndexEntry)]> {
    let mut rest = expired;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut bytes = 0usize;
        let n = rest
            .iter()
            .take(EXPIRED_PER_APPEND)
            .take_while(|(k, _)| {
                let fits = bytes == 0 || bytes + k.len() <= EXPIRED_KEY_BYTES_PER_APPEND;
                bytes += k.len().max(1);
                fits
            })
            .count();
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// How often the background thread looks whether an index checkpoint is
/// due (see `Options::index_checkpoint_every_bytes`).
const CHECKPOINT_CHECK_EVERY: Duration = Duration::from_millis(100);

/// The longest a writer waits for compaction at a time (see
/// [`Core::stall_if_needed`]).
const MAX_STALL: Duration = Duration::from_secs(1);

impl Core {
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
        StoreSpace::of(&lock(&self.seg_stats), active).over(level(max))
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
    pub(super) fn after_seal(&self) {
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
    pub(super) fn stall_if_needed(&self) {
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

    pub(crate) fn count_expired_removed(&self, n: u64) {
        self.expired_removed.fetch_add(n, Ordering::Relaxed);
    }

    /// Removes expired entries, one shard at a time, and returns how many.
    ///
    /// On a writable handle each removal is logged: an expired tombstone
    /// ([`FLAG_EXPIRED`](crate::format::record::FLAG_EXPIRED)) per key,
    /// appended through the write path (see [`Core::log_expired`]), so that
    /// the change feed reports the expiration. A read-only handle (or a
    /// poisoned one, which can write nothing) only removes them from memory.
    pub(crate) fn sweep_expired(&self) -> u64 {
        self.sweep_expired_at(self.now())
    }

    /// [`Core::sweep_expired`] of the entries expired at `now` (unix ms).
    pub(crate) fn sweep_expired_at(&self, now: u64) -> u64 {
        if self.writer.is_none() || self.is_poisoned() {
            return self.sweep_expired_in_memory(now);
        }
        let mut removed = 0u64;
        for i in 0..self.keydir.shard_count() {
            if self.keydir.read_shard(i).ttl_keys() == 0 {
                continue;
            }
            // Collected under the shard's read lock, logged under the writer
            // lock (taken after the shard lock is let go: the write path
            // takes shard locks under the writer lock).
            let expired = self.expired_in_shard(i, now);
            for chunk in chunks_of_expired(&expired) {
                match self.log_expired(chunk) {
                    Ok(n) => removed += n,
                    Err(e) => {
                        // Closed meanwhile, or called inside a transaction
                        // (which holds the writer lock): the keys stay for
                        // a later sweep. Anything else poisoned the handle.
                        if !matches!(e, Error::Closed | Error::NestedWrite) {
                            log::warn!("the expiry sweep could not log expirations: {e}");
                        }
                        self.count_expired_removed(removed);
                        return removed;
                    }
                }
            }
        }
        self.count_expired_removed(removed);
        removed
    }

    /// Appends an expired tombstone for each `(key, entry)` whose index
    /// entry is still that expired record (the same place: a write that
    /// replaced it since is never deleted), in one append, and
    /// removes them from the index. Returns how many it wrote. Does not
    /// wait for an fsync: losing the tombstones loses nothing, as the
    /// put's own expiry still hides the key.
    ///
    /// # Errors
    /// As any write: the handle is closed, read-only or poisoned, or the
    /// append failed (which poisons it).
    pub(crate) fn log_expired(&self, expired: &[(Vec<u8>, IndexEntry)]) -> Result<u64> {
        let mut w = self.writer()?;
        self.log_expired_locked(&mut w, expired)
    }

    /// The expired entries of shard `i`, with their keys read from their
    /// records (under the shard's read lock, then the segment table's: the
    /// lock order everywhere). A key that cannot be read is left for a
    /// later sweep.
    fn expired_in_shard(&self, i: usize, now: u64) -> Vec<(Vec<u8>, IndexEntry)> {
        let mut expired = Vec::new();
        let shard = self.keydir.read_shard(i);
        let segs = locks::read(&self.segments);
        shard.for_each(|e| {
            if !e.is_expired(now) {
                return;
            }
            match segs
                .get(&e.file_id)
                .map(|s| s.with_key(e.offset, <[u8]>::to_vec))
            {
                Some(Ok(key)) => expired.push((key, *e)),
                Some(Err(err)) => log::warn!("the expiry sweep could not read a key: {err}"),
                None => log::warn!(
                    "the expiry sweep found an entry in segment {} that is not open",
                    e.file_id
                ),
            }
        });
        expired
    }

    /// Removes expired entries from memory only, one shard at a time.
    fn sweep_expired_in_memory(&self, now: u64) -> u64 {
        let mut removed = 0u64;
        for i in 0..self.keydir.shard_count() {
            if self.keydir.read_shard(i).ttl_keys() == 0 {
                continue;
            }
            let mut dead = BTreeMap::<u32, u64>::new();
            let mut shard = self.keydir.write_shard(i);
            // Lock order: a shard, then the segment table.
            let segs = locks::read(&self.segments);
            shard.retain(
                |e| e.is_expired(now),
                |e| {
                    removed += 1;
                    let len = segs
                        .get(&e.file_id)
                        .and_then(|s| s.with_put(e.offset, |r| r.len).ok())
                        .unwrap_or(0);
                    *dead.entry(e.file_id).or_default() += len;
                },
            );
            drop(segs);
            drop(shard);
            let mut stats = lock(&self.seg_stats);
            for (id, d) in dead {
                if let Some(s) = stats.get_mut(&id) {
                    s.dead += d;
                }
            }
        }
        self.count_expired_removed(removed);
        removed
    }

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

    /// The background loop: periodic fsync (EveryMillis), the expiry sweep,
    /// hint files for newly sealed segments and index checkpoints while
    /// the store runs. Returns when stopped.
    pub(crate) fn background(self: &Arc<Self>) {
        let sync_every = self.opts.sync_interval();
        let sweep_every = match self.opts.expiry_sweep_interval_ms {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        };
        let mut next_sync = sync_every.map(|d| Instant::now() + d);
        // How often the thread looks whether an index checkpoint is due.
        // (Deterministic mode writes them at a roll instead.)
        let ckpt_every = (self.opts.index_checkpoint_every_bytes > 0
            && self.writer.is_some()
            && !self.opts.is_deterministic())
        .then_some(CHECKPOINT_CHECK_EVERY);
        let mut next_ckpt = ckpt_every.map(|d| Instant::now() + d);
        let sweep_at_start = std::mem::take(&mut lock(&self.bg).sweep_at_start);
        let mut next_sweep = sweep_every.map(|d| {
            if sweep_at_start {
                Instant::now()
            } else {
                Instant::now() + d
            }
        });
        loop {
            let jobs = {
                let mut bg = lock(&self.bg);
                loop {
                    if bg.stop {
                        // Hints of segments sealed just before the stop
                        // are still written: the next open then reads
                        // them instead of scanning, and `verify` finds
                        // every sealed segment with its hint.
                        let jobs = std::mem::take(&mut bg.hint_jobs);
                        drop(bg);
                        for id in jobs {
                            self.write_hint(id);
                        }
                        return;
                    }
                    if !bg.hint_jobs.is_empty() {
                        break;
                    }
                    let now = Instant::now();
                    let due = [next_sync, next_sweep, next_ckpt]
                        .into_iter()
                        .flatten()
                        .min();
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
            if let (Some(t), Some(d)) = (next_ckpt, ckpt_every) {
                if t <= now {
                    if self.checkpoint_due() {
                        self.start_checkpoint();
                    }
                    next_ckpt = Some(Instant::now() + d);
                }
            }
        }
    }

    /// Writes an index checkpoint in a thread of its own, unless one is
    /// being written: it takes a while on a large store (190 MB at 10
    /// million keys), and the periodic fsync must not wait for it.
    fn start_checkpoint(self: &Arc<Self>) {
        if self.checkpointing.swap(true, Ordering::AcqRel) {
            return;
        }
        let core = self.clone();
        let started = std::thread::Builder::new()
            .name("cairn-checkpoint".into())
            .spawn(move || {
                core.checkpoint(CheckpointBy::Background);
                core.checkpointing.store(false, Ordering::Release);
            });
        if let Err(e) = started {
            self.checkpointing.store(false, Ordering::Release);
            log::warn!("could not start the index checkpoint thread: {e}");
        }
    }

    /// Scans a sealed segment and writes its hint file.
    ///
    /// A compaction may retire the segment meanwhile. It removes the
    /// segment from the table before it unlinks the segment and its hint,
    /// so a hint renamed into place after that unlink is seen here, by the
    /// second look at the table, and removed (else it would outlive its
    /// segment, keys and all; recovery removes such a hint after a crash).
    pub(super) fn write_hint(&self, id: u32) {
        let vfs = &*self.opts.vfs;
        // A sealed segment is mapped or open already: scan its bytes rather
        // than reading the whole file into memory a second time.
        let Some(seg) = locks::read(&self.segments).get(&id).cloned() else {
            return; // retired by a compaction: no hint
        };
        let result = seg
            .all_bytes(vfs)
            .map_err(Error::Io)
            .and_then(|bytes| recovery::scan_and_write_hint(vfs, &self.dir, id, &bytes));
        // The scan read every page of the segment through its map: let them
        // go from this process's resident memory (they stay cached).
        seg.release_resident();
        match result {
            Ok(n) => self.note_hint(id, n),
            Err(e) => log::warn!("could not write the hint of segment {id}: {e}"),
        }
        if !locks::read(&self.segments).contains_key(&id) {
            let hint = names::hint_path(&self.dir, id);
            match vfs.remove_file(&hint) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("could not remove {}: {e}", hint.display()),
            }
        }
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
                let mut w = lock(w);
                self.closed.store(true, Ordering::Release);
                if self.is_poisoned() {
                    Err(self.poisoned_error())
                } else {
                    let synced = self
                        .group
                        .as_ref()
                        .map_or(Ok(()), |g| self.sync_result(g.sync_all(), g.current().id));
                    if synced.is_ok() && self.write_close_marks(&mut w) && !self.is_poisoned() {
                        // Everything is durable and nothing can write
                        // any more: the index as it is describes the files.
                        self.write_checkpoint(&w);
                    }
                    synced
                }
            }
            None => {
                self.closed.store(true, Ordering::Release);
                Ok(())
            }
        };
        self.stop_background();
        self.feed.close();
        lock(&self.lock_file).take();
        result
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::chunks_of_expired;
    use crate::index::keydir::IndexEntry;
    use crate::options::Options;
    use crate::util::clock::ManualClock;

    /// The sweep collects an expired entry, then a put replaces it before
    /// the sweep takes the writer lock: the put must survive, and nothing
    /// is logged for the key.
    #[test]
    fn a_put_after_the_collection_is_not_deleted() {
        let t = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(1_000_000);
        let db = Options::new()
            .clock(clock.clone())
            .expiry_sweep_interval_ms(0)
            .open(t.path())
            .expect("open");
        db.put_with_ttl("k", "old", Duration::from_millis(10))
            .expect("put");
        clock.advance(Duration::from_millis(20));
        let core = db.core();
        let stale = core.keydir.get(b"k", core).expect("read").expect("entry");
        assert!(stale.is_expired(core.now()));
        db.put("k", "new").expect("put");
        assert_eq!(core.log_expired(&[(b"k".to_vec(), stale)]).expect("log"), 0);
        assert_eq!(db.get("k").expect("get").as_deref(), Some(&b"new"[..]));
        // The entry it collected, still there: logged.
        db.put_with_ttl("j", "old", Duration::from_millis(10))
            .expect("put");
        clock.advance(Duration::from_millis(20));
        let current = core.keydir.get(b"j", core).expect("read").expect("entry");
        assert_eq!(
            core.log_expired(&[(b"j".to_vec(), current)]).expect("log"),
            1
        );
        assert!(core.keydir.get(b"j", core).expect("read").is_none());
    }

    #[test]
    fn expired_entries_are_appended_in_bounded_chunks() {
        let e = IndexEntry {
            expires_at_ms: 1,
            offset: 32,
            file_id: 1,
        };
        let small: Vec<(Vec<u8>, IndexEntry)> = (0..1200u32)
            .map(|i| (i.to_le_bytes().to_vec(), e))
            .collect();
        let sizes: Vec<usize> = chunks_of_expired(&small).map(<[_]>::len).collect();
        assert_eq!(sizes, vec![512, 512, 176]);
        let big: Vec<(Vec<u8>, IndexEntry)> = (0..10u8).map(|i| (vec![i; 60_000], e)).collect();
        let sizes: Vec<usize> = chunks_of_expired(&big).map(<[_]>::len).collect();
        assert_eq!(sizes, vec![4, 4, 2]);
        assert_eq!(chunks_of_expired(&[]).count(), 0);
    }
}
