//! Writing the index checkpoint: at a clean close, and while the store
//! runs (its bytes are `format/checkpoint.rs`; open reads it in
//! `recovery/checkpoint.rs` and replays the log after it in
//! `recovery/replay.rs`).
//!
//! The index is copied one shard at a time, each under the writer lock,
//! which is where the index changes: each shard's copy is the index as of
//! a known place in the active segment, its *cut*. The file is written to
//! a temporary file, the log up to the cuts made durable, then the file
//! fsynced, renamed into place and the directory fsynced, through the file
//! layer. Nothing depends on it: a failure is logged and leaves the last
//! checkpoint, and an open that cannot use a checkpoint rebuilds the index
//! from hints and segments.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::MutexGuard;
use std::time::Instant;

use crate::format::checkpoint::{self, Delta, Header, SegmentInfo, PROBE_KEY, SHARDS};
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile};
use crate::index::keydir::SLOT_BYTES;
use crate::util::locks::lock;

use super::{CheckpointCover, Core, Writer};

/// Bytes gathered before each write to the temporary file.
const WRITE_BYTES: usize = 8 << 20;

/// Who writes a checkpoint, and so how it reaches the writer.
#[derive(Clone, Copy)]
pub(crate) enum CheckpointBy<'a> {
    /// A clean close, holding the writer lock (and compaction's), after
    /// the close marks are durable.
    Close(&'a Writer),
    /// A roll in deterministic mode, holding the writer lock.
    Roll(&'a Writer),
    /// The background thread, holding nothing.
    Background,
}

/// One shard's copy: its slots and its cut.
struct ShardCopy {
    cut: u64,
    max_seq: u64,
}

/// What the copies of all shards made of the header.
struct Dumped {
    shard_slots: [u64; SHARDS],
    cuts: [u64; SHARDS],
    max_seq: u64,
    slots_end: u64,
}

impl Core {
    /// Writes the index checkpoint, at a clean close: under the writer
    /// lock (`w`), with the background threads and compaction stopped,
    /// after the close marks are durable. Logs what it did; a failure only
    /// leaves no checkpoint.
    pub(super) fn write_checkpoint(&self, w: &Writer) {
        if self.opts.index_checkpoint_at_close {
            self.checkpoint(CheckpointBy::Close(w));
        }
    }

    /// Writes an index checkpoint now (see [`CheckpointBy`]); returns
    /// whether it did. Logs what it did, or why not: nothing depends on it.
    pub(crate) fn checkpoint(&self, by: CheckpointBy<'_>) -> bool {
        // A compaction changes the segments under the copy: a running
        // checkpoint waits for the next chance (a close holds the lock).
        let _no_compaction = match by {
            CheckpointBy::Close(_) => None,
            _ => match self.compaction.try_lock() {
                // A close sets `closed` under this lock: past this check,
                // the close waits for the checkpoint to be done.
                Ok(g) if !self.closed.load(Ordering::Acquire) => Some(g),
                _ => return false,
            },
        };
        let started = Instant::now();
        let bytes_mark = self.bytes_written.load(Ordering::Relaxed);
        let tmp = self.dir.join(format!(
            "{}{:08x}{}",
            names::CHECKPOINT_TMP_PREFIX,
            crate::util::rand::new_salt(0),
            names::TMP_SUFFIX
        ));
        let vfs = &*self.opts.vfs;
        let written = self.checkpoint_into(&tmp, by);
        match written {
            Ok(Some((len, keys, cover))) => {
                self.checkpoint_written(cover, bytes_mark, len);
                log::info!(
                    "wrote the index checkpoint of {} ({keys} keys, {len} bytes) in {:?}",
                    self.dir.display(),
                    started.elapsed()
                );
                true
            }
            Ok(None) => {
                let _ = vfs.remove_file(&tmp);
                false
            }
            Err(e) => {
                // A rename that happened before a failed directory fsync
                // leaves a checkpoint that is complete and matches the
                // files: harmless. The temporary file is removed when it
                // is still there (else the next open removes it).
                let _ = vfs.remove_file(&tmp);
                log::warn!(
                    "no index checkpoint written for {}: {e}",
                    self.dir.display()
                );
                false
            }
        }
    }

    /// Writes the checkpoint to `tmp` and renames it into place; returns
    /// its length, key count and active segment, or `None` (logged) when
    /// there is a reason to write none.
    fn checkpoint_into(
        &self,
        tmp: &std::path::Path,
        by: CheckpointBy<'_>,
    ) -> io::Result<Option<(u64, u64, CheckpointCover)>> {
        let vfs = &*self.opts.vfs;
        let ids: Vec<u32> = lock(&self.seg_stats).keys().copied().collect();
        let active = match by {
            CheckpointBy::Close(w) | CheckpointBy::Roll(w) => w.active.id,
            CheckpointBy::Background => match self.lock_writer() {
                Some(w) => w.active.id,
                None => return Ok(None),
            },
        };
        let f = vfs.open(tmp, OpenMode::CreateNew)?;
        let header_len = checkpoint::header_len_for(ids.len()) as u64;
        let Some(dumped) = self.write_shards(&*f, header_len, active, by)? else {
            return Ok(None);
        };
        // The log the slots include is durable before the checkpoint is:
        // a crash never leaves a checkpoint ahead of the log.
        let max_cut = dumped.cuts.iter().copied().max().unwrap_or(0);
        if !matches!(by, CheckpointBy::Close(_)) && self.wait((active, max_cut)).is_err() {
            return Ok(None);
        }
        let Some(header) = self.checkpoint_header(&ids, active, &dumped)? else {
            return Ok(None);
        };
        let head = checkpoint::encode_header(&header);
        if head.len() as u64 != header_len {
            return Err(io::Error::other("the checkpoint header changed length"));
        }
        fs::write_all_at(&*f, &head, 0)?;
        let footer = checkpoint::encode_footer(checkpoint::header_crc(&head), header.total_slots());
        fs::write_all_at(&*f, &footer, dumped.slots_end)?;
        f.sync_all()?;
        drop(f);
        vfs.rename(tmp, &self.dir.join(names::CHECKPOINT_FILE))?;
        vfs.sync_dir(&self.dir)?;
        let cover = CheckpointCover {
            active,
            sealed: ids.iter().copied().filter(|&id| id != active).collect(),
        };
        Ok(Some((
            dumped.slots_end + footer.len() as u64,
            header.total_slots(),
            cover,
        )))
    }

    /// Notes a checkpoint written when `bytes_mark` bytes had been
    /// written since open, `len` bytes long, covering `cover`: the next
    /// one is due a bound's worth of log later.
    fn checkpoint_written(&self, cover: CheckpointCover, bytes_mark: u64, len: u64) {
        // Lock order: `ckpt_cover`, then `bg` (as `checkpoint_compacted`).
        let mut c = lock(&self.ckpt_cover);
        *c = Some(cover);
        let mut bg = lock(&self.bg);
        bg.ckpt_mark = bytes_mark;
        bg.ckpt_owed = 0;
        bg.ckpt_len = len;
    }

    /// Whether a running checkpoint is due: the log written since the last
    /// one (or not covered by one at open) passed
    /// [`Options::index_checkpoint_every_bytes`] or half the last one's
    /// size (so checkpoints cost at most two bytes per byte of log).
    ///
    /// [`Options::index_checkpoint_every_bytes`]: crate::Options::index_checkpoint_every_bytes
    pub(crate) fn checkpoint_due(&self) -> bool {
        let every = self.opts.index_checkpoint_every_bytes;
        if every == 0 || self.writer.is_none() || self.is_poisoned() {
            return false;
        }
        let written = self.bytes_written.load(Ordering::Relaxed);
        let bg = lock(&self.bg);
        let since = written
            .saturating_sub(bg.ckpt_mark)
            .saturating_add(bg.ckpt_owed);
        since >= every.max(bg.ckpt_len / 2)
    }

    /// Whether automatic compaction may take segment `id`: one the index
    /// checkpoint covers (not its active segment, nor one after it that
    /// replay reads in log order), or any while there is no checkpoint or
    /// none is written while the store runs.
    pub(crate) fn compaction_may_take(&self, id: u32) -> bool {
        // With no checkpoints while running, none would come to cover the
        // newer segments: compaction takes any, and drops the checkpoint
        // of the last close when it takes one that is not covered.
        self.opts.index_checkpoint_every_bytes == 0
            || lock(&self.ckpt_cover).as_ref().is_none_or(|c| c.allows(id))
    }

    /// Called by a compaction (holding its lock) after it installed its
    /// output and before it deletes anything: appends what it did to the
    /// checkpoint on disk as a delta (`format/checkpoint.rs`, [`Delta`])
    /// and makes it durable, so that the checkpoint still describes the
    /// files once the inputs are gone. When the compaction took a segment
    /// replay needs in order (one at or after the checkpoint's active
    /// segment: an explicit `compact`), or the append fails, the
    /// checkpoint is deleted instead and a new one made due.
    ///
    /// # Errors
    /// Neither could be done: the compaction must stop before it deletes
    /// anything (an open then leaves its outputs out as copies).
    pub(crate) fn checkpoint_compacted(&self, delta: &Delta) -> crate::error::Result<()> {
        let mut cover = lock(&self.ckpt_cover);
        let Some(c) = cover.as_mut() else {
            return Ok(());
        };
        let path = self.dir.join(names::CHECKPOINT_FILE);
        let vfs = &*self.opts.vfs;
        let appended = if delta.retired.iter().all(|&id| c.allows(id)) {
            let at = lock(&self.bg).ckpt_len;
            let bytes = checkpoint::encode_delta(delta);
            let written = vfs.open(&path, OpenMode::ReadWrite).and_then(|f| {
                if f.len()? != at {
                    return Err(io::Error::other("the checkpoint is not the one written"));
                }
                fs::write_all_at(&*f, &bytes, at)?;
                f.sync_all()
            });
            match written {
                Ok(()) => {
                    lock(&self.bg).ckpt_len = at + bytes.len() as u64;
                    for id in &delta.retired {
                        c.sealed.remove(id);
                    }
                    c.sealed.extend(delta.written.iter().map(|s| s.id));
                    true
                }
                Err(e) => {
                    log::warn!("could not add a compaction to {}: {e}", path.display());
                    false
                }
            }
        } else {
            false
        };
        if !appended {
            // Unusable once the inputs are gone: deleted before they are.
            *cover = None;
            lock(&self.bg).ckpt_owed = u64::MAX / 2;
            match vfs
                .remove_file(&path)
                .and_then(|()| vfs.sync_dir(&self.dir))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let e = fs::named(&path, &e);
                    log::warn!("could not remove {}: {e}", path.display());
                    return Err(crate::error::Error::Io(e));
                }
            }
        }
        Ok(())
    }

    /// The writer lock, unless the store is closed or poisoned.
    fn lock_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        let w = lock(self.writer.as_ref()?);
        (!self.is_poisoned() && !self.closed.load(Ordering::Acquire)).then_some(w)
    }

    /// Copies shard `i` into `out` with its cut, under the writer lock
    /// (held by the caller, or taken here). `None`: the active segment is
    /// no longer `active` (a roll), or the store closed.
    fn copy_shard(
        &self,
        i: usize,
        active: u32,
        by: CheckpointBy<'_>,
        out: &mut Vec<u8>,
    ) -> Option<ShardCopy> {
        let copy = |w: &Writer, out: &mut Vec<u8>| {
            if w.active.id != active {
                return None;
            }
            out.clear();
            self.keydir.export_shard(i, out);
            Some(ShardCopy {
                cut: w.active.len.load(Ordering::Acquire),
                max_seq: w.next_seq - 1,
            })
        };
        match by {
            CheckpointBy::Close(w) | CheckpointBy::Roll(w) => copy(w, out),
            CheckpointBy::Background => copy(&*self.lock_writer()?, out),
        }
    }

    /// Writes every shard's slots to `f` from `at`, in blocks; returns the
    /// shards' counts and cuts, or `None` (logged) when the active segment
    /// changed meanwhile.
    fn write_shards(
        &self,
        f: &dyn VFile,
        mut at: u64,
        active: u32,
        by: CheckpointBy<'_>,
    ) -> io::Result<Option<Dumped>> {
        let mut d = Dumped {
            shard_slots: [0; SHARDS],
            cuts: [0; SHARDS],
            max_seq: 0,
            slots_end: 0,
        };
        let mut slots = Vec::new();
        let mut buf = Vec::new();
        for i in 0..SHARDS {
            let Some(c) = self.copy_shard(i, active, by, &mut slots) else {
                log::debug!("no index checkpoint: the active segment changed while it was copied");
                return Ok(None);
            };
            d.shard_slots[i] = (slots.len() / SLOT_BYTES) as u64;
            d.cuts[i] = c.cut;
            d.max_seq = d.max_seq.max(c.max_seq);
            checkpoint::encode_slots(&slots, SLOT_BYTES, &mut buf);
            if buf.len() >= WRITE_BYTES {
                fs::write_all_at(f, &buf, at)?;
                at += buf.len() as u64;
                buf.clear();
            }
        }
        fs::write_all_at(f, &buf, at)?;
        d.slots_end = at + buf.len() as u64;
        Ok(Some(d))
    }

    /// The checkpoint's header: the index's hash seed, the shards' sizes
    /// and cuts, and every segment of `ids` (the segments when the copy
    /// started) with its salt, lengths and accounting. `None` (logged)
    /// when there is a reason to write none.
    fn checkpoint_header(
        &self,
        ids: &[u32],
        active: u32,
        d: &Dumped,
    ) -> io::Result<Option<Header>> {
        let stats = lock(&self.seg_stats).clone();
        let vfs = &*self.opts.vfs;
        let max_cut = d.cuts.iter().copied().max().unwrap_or(0);
        let mut segments = Vec::with_capacity(ids.len());
        for &id in ids {
            let Some(s) = stats.get(&id) else {
                log::debug!("no index checkpoint: segment {id} went away while it was written");
                return Ok(None);
            };
            if s.damaged {
                log::info!(
                    "no index checkpoint written: segment {id} has damage salvage skipped \
                     (the next open scans it)"
                );
                return Ok(None);
            }
            let path = names::segment_path(&self.dir, id);
            let f = vfs.open(&path, OpenMode::Read)?;
            let file_len = f.len()?;
            let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
            fs::read_exact_at(&*f, &mut head, 0)?;
            let salt = segment::header_info(&path, &head, id)
                .map_err(|e| io::Error::other(e.to_string()))?
                .salt;
            let is_active = id == active;
            let data_len = if is_active {
                max_cut
            } else {
                s.total.max(SEGMENT_HEADER_LEN)
            };
            if (is_active && file_len < data_len) || (!is_active && file_len != data_len) {
                log::info!(
                    "no index checkpoint written: {} is {file_len} bytes, its records end at {data_len}",
                    path.display()
                );
                return Ok(None);
            }
            // The hint as it is on disk: an open uses the checkpoint only
            // while a hint it had is still the one the index was built
            // with (deleting a hint that disagrees with its segment must
            // make the next open scan the segment).
            let hint = match vfs
                .open(&names::hint_path(&self.dir, id), OpenMode::Read)
                .and_then(|h| h.len())
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            segments.push(SegmentInfo {
                id,
                salt,
                data_len,
                file_len,
                dead: s.dead,
                kept: s.kept,
                hint,
                min_seq: s.min_seq,
            });
        }
        Ok(Some(Header {
            slot_len: SLOT_BYTES as u16,
            seed: self.keydir.seed(),
            probe: self.keydir.hash(PROBE_KEY),
            max_seq: d.max_seq,
            written_at_ms: self.now(),
            active: Some(active),
            shard_slots: d.shard_slots,
            cuts: d.cuts,
            segments,
        }))
    }
}
