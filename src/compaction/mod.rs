//! Compaction: rewriting the live records of sealed segments into fresh
//! segments, online and crash-safely.
//!
//! 1. **Choose** sealed segments (never the active one) and note the lowest
//!    sequence number of every segment that is *not* chosen.
//! 2. **Classify** every record of the chosen segments. A put that the
//!    keydir still points at, and that has not expired, is live and is
//!    copied. Everything else is dropped, except a tombstone or an expired
//!    put that may still hide an older version of its key in a segment that
//!    is kept: that one is kept, as a tombstone with its sequence number.
//! 3. **Write** the kept records, in sequence order, into temporary files,
//!    each at most `max_segment_bytes`, with a header flagged "compacted".
//!    fsync them, rename them into place, fsync the directory, write their
//!    hint files.
//! 4. **Install**: add the new segments to the segment table, then move each
//!    key with a compare-and-swap on its location: only where the keydir
//!    still points at the record that was copied. A key written, deleted or
//!    expired meanwhile keeps its newer state.
//! 5. **Delete** the old segments: write the `COMPACTION` manifest naming
//!    them (atomically, fsynced), remove them from the table, unlink them and
//!    their hints, fsync the directory, delete the manifest.
//!
//! A crash before the manifest leaves old and new segments side by side:
//! every record in the new ones is a copy (same key, value and sequence
//! number) of one in the old ones, so the contents are exactly those from
//! before the compaction. A crash after it is finished at the next open,
//! which deletes whatever the manifest names before loading anything.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engine::Core;
use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::names;
use crate::format::record::{self, Kind};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile, Vfs};
use crate::index::keydir::Entry;
use crate::options::RecoveryMode;
use crate::recovery;
use crate::storage::hints;
use crate::storage::manifest;
use crate::storage::segment::Segment;
use crate::storage::space::{level_bytes, start_level, SegStat, SpaceUse, START_FRACTION};
use crate::util;
use crate::util::locks::{self, lock};
use crate::util::rand::new_salt;

/// What a compaction did, from [`Db::compact`](crate::Db::compact).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionStats {
    /// Segments read and replaced.
    pub segments_in: u64,
    /// Segments written.
    pub segments_out: u64,
    /// Bytes of the segments replaced.
    pub bytes_in: u64,
    /// Bytes of the segments written.
    pub bytes_out: u64,
    /// Live records copied.
    pub records_copied: u64,
    /// Records dropped because a newer put replaced them.
    pub dropped_overwritten: u64,
    /// Records dropped because the key was deleted (tombstones included).
    pub dropped_deleted: u64,
    /// Expired records dropped.
    pub dropped_expired: u64,
    /// Tombstones (or expired puts, rewritten as tombstones) kept because a
    /// segment that was not compacted may hold an older version of the key.
    pub tombstones_kept: u64,
    /// Wall-clock time the compaction took.
    pub duration: Duration,
}

/// A record chosen to go into the output.
struct Kept {
    seq: u64,
    input: usize,
    offset: u64,
    key_len: u32,
    value_len: u32,
    expires_at_ms: u64,
    /// The keydir entry to move (live puts); `None` for a tombstone.
    live: Option<Entry>,
}

/// One output segment being written.
struct Output {
    id: u32,
    salt: u32,
    tmp: PathBuf,
    file: Arc<dyn VFile>,
    len: u64,
    buf: Vec<u8>,
    min_seq: u64,
    max_seq: u64,
    /// Bytes of kept tombstones.
    tombstone_bytes: u64,
    hints: Vec<HintEntry>,
}

impl Output {
    fn create(vfs: &dyn Vfs, dir: &Path, id: u32) -> io::Result<Output> {
        let tmp = dir.join(format!(".compact-{id:010}{}", names::TMP_SUFFIX));
        let file = vfs.open(&tmp, OpenMode::CreateNew)?;
        let salt = new_salt(id);
        let header = segment::encode_header_flags(id, salt, segment::FLAG_COMPACTED);
        Ok(Output {
            id,
            salt,
            tmp,
            file,
            len: SEGMENT_HEADER_LEN,
            buf: header.to_vec(),
            min_seq: u64::MAX,
            max_seq: 0,
            tombstone_bytes: 0,
            hints: Vec::new(),
        })
    }

    /// Writes out the buffered bytes that precede `self.len`.
    fn flush(&mut self) -> io::Result<()> {
        let start = self.len - self.buf.len() as u64;
        fs::write_all_at(&*self.file, &self.buf, start)?;
        self.buf.clear();
        Ok(())
    }
}

/// Which sealed segments automatic compaction should rewrite now, if any.
///
/// Two triggers, either of which starts a compaction:
/// * a sealed segment is fragmented: its dead share reaches
///   `compaction_min_dead_ratio` or its dead bytes `compaction_min_dead_bytes`
///   (Riak's per-file triggers);
/// * the store's space amplification (bytes of sealed segments plus the live
///   bytes of the active one, over all live bytes) passes
///   [`start_level`], half way from 1 to `compaction_max_space_amplification`
///   (the bound); then the most fragmented sealed segments are chosen until
///   the projected amplification is a quarter of the way.
///
/// Sealed segments smaller than `compaction_small_segment_bytes` ride along.
pub(crate) fn auto_candidates(
    stats: &BTreeMap<u32, SegStat>,
    active: u32,
    opts: &crate::Options,
) -> Vec<u32> {
    let data = |s: &SegStat| s.total.saturating_sub(SEGMENT_HEADER_LEN);
    let ratio = |s: &SegStat| s.dead as f64 / data(s).max(1) as f64;
    let sealed: Vec<(u32, &SegStat)> = stats
        .iter()
        .filter(|(id, s)| **id != active && !s.damaged)
        .map(|(id, s)| (*id, s))
        .collect();
    let mut chosen: Vec<u32> = sealed
        .iter()
        .filter(|(_, s)| {
            s.dead > 0
                && (ratio(s) >= opts.compaction_min_dead_ratio
                    || s.dead >= opts.compaction_min_dead_bytes)
        })
        .map(|(id, _)| *id)
        .collect();

    let amp = opts.compaction_max_space_amplification;
    let space = SpaceUse::of(stats, active);
    // `amp` is the bound: start well before it (see START_FRACTION).
    if amp > 0.0 && space.over(start_level(amp)) {
        let goal = level_bytes(
            space.live,
            space.floor,
            1.0 + (amp - 1.0) * START_FRACTION / 2.0,
        ) as u64;
        let mut projected = space.disk.saturating_sub(
            chosen
                .iter()
                .filter_map(|id| stats.get(id))
                .map(SegStat::reclaimable)
                .sum::<u64>(),
        );
        let mut by_ratio: Vec<&(u32, &SegStat)> =
            sealed.iter().filter(|(_, s)| s.dead > 0).collect();
        by_ratio.sort_by(|a, b| ratio(b.1).total_cmp(&ratio(a.1)));
        for (id, s) in by_ratio {
            if projected <= goal {
                break;
            }
            if !chosen.contains(id) {
                chosen.push(*id);
                projected = projected.saturating_sub(s.reclaimable());
            }
        }
    }
    if chosen.is_empty() {
        return chosen;
    }
    for (id, s) in &sealed {
        if s.total < opts.small_segment_bytes() && !chosen.contains(id) {
            chosen.push(*id);
        }
    }
    // Bound one compaction's work: its outputs exist next to its inputs
    // until the swap, so rewriting too much at once is itself a spike in
    // disk use (and a long wait for stalled writers). Take the most
    // fragmented segments first, up to the budget of live bytes to copy.
    let disk_total: u64 = stats.values().map(|s| s.total).sum();
    let budget = opts
        .max_segment_bytes
        .max((disk_total as f64 * (amp.max(1.5) - 1.0) * BATCH_FRACTION) as u64);
    let mut by_value: Vec<(u32, &SegStat)> = chosen
        .iter()
        .filter_map(|id| stats.get(id).map(|s| (*id, s)))
        .collect();
    by_value.sort_by(|a, b| ratio(b.1).total_cmp(&ratio(a.1)).then(a.0.cmp(&b.0)));
    let mut copied = 0u64;
    chosen.clear();
    for (id, s) in by_value {
        let live = s.live();
        if !chosen.is_empty() && copied + live > budget {
            continue;
        }
        copied += live;
        chosen.push(id);
    }
    chosen.sort_unstable();
    chosen
}

/// One compaction copies at most this fraction of (bound - 1) x disk bytes
/// (and at least one segment's worth).
const BATCH_FRACTION: f64 = 0.125;

impl Core {
    /// Compacts every sealed segment.
    pub(crate) fn compact_all(&self) -> Result<CompactionStats> {
        self.compact_with(|stats, active| {
            stats.keys().copied().filter(|id| *id != active).collect()
        })
    }

    /// The automatic compaction loop: checks the segments every
    /// `compaction_interval_ms` and compacts those past the triggers.
    /// Returns when the store is closed.
    pub(crate) fn auto_compaction(self: &Arc<Self>) {
        let every = Duration::from_millis(self.opts.compaction_interval_ms);
        // Right after a compaction, look again at once: a writer may have
        // sealed more segments meanwhile.
        let mut again = false;
        loop {
            if !again && self.wait_for_compaction_work(every) {
                return;
            }
            again = false;
            if self.is_poisoned() {
                self.end_stall();
                continue;
            }
            let Some(active) = self.active_id() else {
                return;
            };
            let candidates = auto_candidates(&lock(&self.seg_stats), active, &self.opts);
            if candidates.is_empty() {
                // Nothing to do would help: never keep writers waiting.
                self.end_stall();
                continue;
            }
            let result = self.compact_with(|_, _| candidates);
            // Writers wait for one compaction, or, while disk use is still
            // past the bound itself, until it is back under it.
            if result.is_err() || !self.over_space_level(|max| max) {
                self.end_stall();
            }
            match result {
                Ok(s) => {
                    log::debug!("automatic compaction: {s:?}");
                    again = s.segments_in > 0;
                }
                Err(Error::Closed) => return,
                Err(e) => {
                    self.end_stall();
                    log::warn!("automatic compaction failed: {e}; retrying later");
                    if self.wait_for_stop(every * 10) {
                        return;
                    }
                }
            }
        }
    }

    /// Compacts the sealed segments that `choose` picks from the segment
    /// statistics (given the active segment's id).
    pub(crate) fn compact_with(
        &self,
        choose: impl FnOnce(&BTreeMap<u32, SegStat>, u32) -> Vec<u32>,
    ) -> Result<CompactionStats> {
        let _one_at_a_time = lock(&self.compaction);
        let started = Instant::now();
        let mut stats = CompactionStats::default();

        // 1. Choose.
        let (inputs, min_seq_kept) = {
            let w = self.writer()?;
            let active = w.active_id();
            let seg_stats = lock(&self.seg_stats);
            let mut inputs = choose(&seg_stats, active);
            // A segment in which a salvage open skipped damage is left as it
            // is (`cairn repair` rewrites it): compaction reads its inputs
            // strictly, so that damage never passes for a missing record.
            inputs.retain(|id| *id != active && seg_stats.get(id).is_some_and(|s| !s.damaged));
            inputs.sort_unstable();
            inputs.dedup();
            let min_kept = seg_stats
                .iter()
                .filter(|(id, _)| inputs.binary_search(id).is_err())
                .map(|(_, s)| s.min_seq)
                .min()
                .unwrap_or(u64::MAX);
            drop(w);
            (inputs, min_kept)
        };
        if inputs.is_empty() {
            stats.duration = started.elapsed();
            return Ok(stats);
        }

        // 2. Classify.
        let now = self.opts.clock.now_unix_ms();
        let segs: Vec<Arc<Segment>> = {
            let table = locks::read(&self.segments);
            inputs
                .iter()
                .filter_map(|id| table.get(id).cloned())
                .collect()
        };
        if segs.len() != inputs.len() {
            return Err(Error::Io(io::Error::other("a chosen segment disappeared")));
        }
        let mut sources: Vec<Cow<'_, [u8]>> = Vec::with_capacity(segs.len());
        for (seg, &id) in segs.iter().zip(&inputs) {
            let bytes = match seg.mapped_bytes() {
                Some(b) => Cow::Borrowed(b),
                None => Cow::Owned(self.opts.vfs.read(&names::segment_path(&self.dir, id))?),
            };
            sources.push(bytes);
        }
        let mut kept: Vec<Kept> = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        // Index entries of expired puts that are not copied: removed once the
        // new segments are installed, so nothing points into deleted files.
        let mut forget: Vec<(Vec<u8>, Entry)> = Vec::new();
        for (input, (&id, bytes)) in inputs.iter().zip(&sources).enumerate() {
            stats.bytes_in += bytes.len() as u64;
            let path = names::segment_path(&self.dir, id);
            let load = recovery::scan_segment(&path, id, bytes, false, RecoveryMode::Strict)?;
            for e in load.entries {
                let current = self.keydir.get(&e.key);
                let expired = e.expires_at_ms != 0 && e.expires_at_ms <= now;
                let points_here = current.is_some_and(|c| c.file_id == id && c.offset == e.offset);
                // The index was built from this segment's hint file, not from
                // its records, and they disagree: copying or dropping by the
                // records would change what the store holds (a tombstone the
                // hint left out would delete a live key at the next open).
                // Refuse, and leave every file as it is.
                if let Some(c) = current {
                    let differs = c.seq != e.seq
                        || c.expires_at_ms != e.expires_at_ms
                        || c.value_len != e.value_len;
                    if (points_here && differs) || (!points_here && c.seq < e.seq) {
                        return Err(Error::corruption(
                            path,
                            e.offset,
                            format!(
                                "compaction refused: the record here (sequence {}, expiry {}, {} value \
                                 bytes) does not match the index's entry for its key (sequence {}, \
                                 expiry {}, {} bytes), so the hint file {} disagrees with its segment; \
                                 delete that hint file and reopen, which rebuilds it from the segment",
                                e.seq,
                                e.expires_at_ms,
                                e.value_len,
                                c.seq,
                                c.expires_at_ms,
                                c.value_len,
                                names::hint_path(&self.dir, id).display()
                            ),
                        ));
                    }
                }
                // The index holds a newer record, or this very record in
                // another file: a copy left by a compaction that stopped
                // before deleting its inputs has the same sequence number.
                let newer_exists =
                    current.is_some_and(|c| c.seq > e.seq || (c.seq == e.seq && !points_here));
                if points_here && expired && !e.tombstone {
                    if let Some(c) = current {
                        forget.push((e.key.clone(), c));
                    }
                }
                // Whether a kept segment may hold an older version of the key.
                let may_shadow = e.seq >= min_seq_kept;
                let keep = if !e.tombstone && points_here && !expired {
                    current
                } else if newer_exists {
                    stats.dropped_overwritten += u64::from(!e.tombstone);
                    stats.dropped_deleted += u64::from(e.tombstone);
                    continue;
                } else if e.tombstone || expired {
                    if may_shadow {
                        None // keep as a tombstone
                    } else {
                        if e.tombstone {
                            stats.dropped_deleted += 1;
                        } else {
                            stats.dropped_expired += 1;
                        }
                        continue;
                    }
                } else {
                    // A put, not expired, that the index does not point at
                    // and that nothing newer replaced: the key has no index
                    // entry (one elsewhere is newer, or was refused above),
                    // so a newer tombstone or expired put hides it.
                    stats.dropped_deleted += 1;
                    continue;
                };
                if keep.is_none() {
                    stats.tombstones_kept += 1;
                } else {
                    stats.records_copied += 1;
                }
                kept.push(Kept {
                    seq: e.seq,
                    input,
                    offset: e.offset,
                    key_len: e.key.len() as u32,
                    value_len: if keep.is_some() { e.value_len } else { 0 },
                    expires_at_ms: if keep.is_some() { e.expires_at_ms } else { 0 },
                    live: keep,
                });
                keys.push(e.key);
            }
        }

        // 3. Write, in sequence order, each record once (the inputs can hold
        // two copies of a tombstone after an interrupted compaction).
        let mut order: Vec<usize> = (0..kept.len()).collect();
        order.sort_unstable_by_key(|&i| kept[i].seq);
        // Two copies of one record share key and sequence number. Two
        // different records never share a sequence number in a log cairn
        // wrote; if they do (crafted files), one segment cannot hold both in
        // order, and dropping either would lose a key the store serves.
        if let Some(w) = order
            .windows(2)
            .find(|w| kept[w[0]].seq == kept[w[1]].seq && keys[w[0]] != keys[w[1]])
        {
            let (a, b) = (&kept[w[0]], &kept[w[1]]);
            return Err(Error::corruption(
                names::segment_path(&self.dir, inputs[b.input]),
                b.offset,
                format!(
                    "compaction refused: this record and the one at offset {} of {} are \
                     different keys with the same sequence number {}",
                    a.offset,
                    names::segment_path(&self.dir, inputs[a.input]).display(),
                    a.seq
                ),
            ));
        }
        order.dedup_by_key(|i| kept[*i].seq);
        let mut outputs: Vec<Output> = Vec::new();
        let mut moves: Vec<(usize, Entry, Entry)> = Vec::new();
        let result = self.write_outputs(&kept, &keys, &order, &sources, &mut outputs, &mut moves);
        if let Err(e) = result {
            for o in &outputs {
                let _ = self.opts.vfs.remove_file(&o.tmp);
            }
            return Err(e);
        }
        util::crash_point!(self.opts, AfterWrite);
        // Until the new segments are installed, a failure removes them again:
        // a segment on disk that the store does not track could hold the
        // only older version of a key whose tombstone a later compaction
        // drops.
        let discard = |outputs: &[Output]| {
            for o in outputs {
                let _ = self.opts.vfs.remove_file(&o.tmp);
                let _ = self
                    .opts
                    .vfs
                    .remove_file(&names::hint_path(&self.dir, o.id));
                let _ = self
                    .opts
                    .vfs
                    .remove_file(&names::segment_path(&self.dir, o.id));
            }
            let _ = self.opts.vfs.sync_dir(&self.dir);
        };
        let durable = (|| -> io::Result<()> {
            for o in &outputs {
                o.file.sync_all()?;
            }
            for o in &outputs {
                self.opts
                    .vfs
                    .rename(&o.tmp, &names::segment_path(&self.dir, o.id))?;
            }
            self.opts.vfs.sync_dir(&self.dir)
        })();
        if let Err(e) = durable {
            discard(&outputs);
            return Err(Error::Io(e));
        }
        let mut hint_bytes = Vec::with_capacity(outputs.len());
        for o in &outputs {
            match hints::write(
                &*self.opts.vfs,
                &self.dir,
                o.id,
                o.salt,
                o.len,
                o.max_seq,
                &o.hints,
            ) {
                Ok(n) => hint_bytes.push(n),
                Err(e) => {
                    hint_bytes.push(0);
                    log::warn!(
                        "could not write the hint of compacted segment {}: {e}",
                        o.id
                    );
                }
            }
        }
        util::crash_point!(self.opts, AfterRename);

        // 4. Install.
        let mut opened = Vec::with_capacity(outputs.len());
        for o in &outputs {
            match Segment::open_sealed(&*self.opts.vfs, &self.dir, o.id, self.opts.use_mmap, o.salt)
            {
                Ok(seg) => opened.push(Arc::new(seg)),
                Err(e) => {
                    discard(&outputs);
                    return Err(Error::Io(e));
                }
            }
        }
        for ((o, seg), hint) in outputs.iter().zip(opened).zip(hint_bytes) {
            locks::write(&self.segments).insert(o.id, seg);
            // Kept tombstones are needed, not dead: counting them as dead
            // would make automatic compaction rewrite them forever.
            lock(&self.seg_stats).insert(
                o.id,
                SegStat {
                    total: o.len,
                    dead: o.len - SEGMENT_HEADER_LEN - o.tombstone_bytes,
                    kept: o.tombstone_bytes,
                    hint,
                    min_seq: o.min_seq,
                    damaged: false,
                },
            );
            stats.bytes_out += o.len;
        }
        stats.segments_out = outputs.len() as u64;
        for (i, old, new) in &moves {
            let key = &keys[*i];
            if self.keydir.replace_if_eq(key, old, *new) {
                let len = new.record_len(key.len());
                let mut seg_stats = lock(&self.seg_stats);
                if let Some(s) = seg_stats.get_mut(&new.file_id) {
                    s.dead -= len;
                }
                if let Some(s) = seg_stats.get_mut(&old.file_id) {
                    s.dead += len;
                }
            }
        }
        for (key, entry) in &forget {
            if self.keydir.remove_if_eq(key, entry) {
                self.count_expired_removed(1);
            }
        }
        util::crash_point!(self.opts, AfterInstall);

        // 5. Delete the old segments. The records this compaction dropped
        //    as overwritten or deleted are superseded by newer records that
        //    may still be unsynced in the active segment (under
        //    `SyncPolicy::Never` or `EveryMillis`): make those durable first,
        //    or a power loss would lose both the old and the new version.
        self.sync()?;
        manifest::write(&*self.opts.vfs, &self.dir, &inputs)?;
        util::crash_point!(self.opts, AfterManifest);
        {
            let mut table = locks::write(&self.segments);
            let mut seg_stats = lock(&self.seg_stats);
            for id in &inputs {
                table.remove(id);
                seg_stats.remove(id);
            }
        }
        drop(sources);
        drop(segs);
        // The crash point after the unlinks, before the manifest is
        // deleted: unlink as `delete_inputs` would, then stop.
        #[cfg(feature = "__test_hooks")]
        if self.opts.hooks.compaction_stop == Some(util::hooks::CompactionStop::AfterUnlink) {
            for &id in &inputs {
                let _ = self.opts.vfs.remove_file(&names::hint_path(&self.dir, id));
                let _ = self
                    .opts
                    .vfs
                    .remove_file(&names::segment_path(&self.dir, id));
            }
            return Err(Error::Io(io::Error::other("compaction stopped for a test")));
        }
        manifest::delete_inputs(&*self.opts.vfs, &self.dir, &inputs)?;
        stats.segments_in = inputs.len() as u64;
        stats.duration = started.elapsed();
        log::info!(
            "compacted {} segments ({} bytes) into {} ({} bytes) in {:?}",
            stats.segments_in,
            stats.bytes_in,
            stats.segments_out,
            stats.bytes_out,
            stats.duration
        );
        Ok(stats)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_outputs(
        &self,
        kept: &[Kept],
        keys: &[Vec<u8>],
        order: &[usize],
        sources: &[Cow<'_, [u8]>],
        outputs: &mut Vec<Output>,
        moves: &mut Vec<(usize, Entry, Entry)>,
    ) -> Result<()> {
        let limit = self.opts.compaction_max_bytes_per_sec;
        let started = Instant::now();
        let mut written = 0u64;
        for &i in order {
            let k = &kept[i];
            let key = &keys[i];
            let len = record::encoded_len(k.key_len, k.value_len);
            let need_new = outputs.last().is_none_or(|o| {
                o.len > SEGMENT_HEADER_LEN && o.len + len > self.opts.max_segment_bytes
            });
            if need_new {
                if let Some(o) = outputs.last_mut() {
                    o.flush()?;
                }
                let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
                outputs.push(Output::create(&*self.opts.vfs, &self.dir, id)?);
            }
            let Some(o) = outputs.last_mut() else {
                continue;
            };
            let offset = o.len;
            let (kind, value) = match k.live {
                Some(_) => {
                    let src = &sources[k.input];
                    let start = (k.offset
                        + u64::from(record::RECORD_HEADER_LEN)
                        + u64::from(k.key_len)) as usize;
                    (Kind::Put, &src[start..start + k.value_len as usize])
                }
                None => (Kind::Tombstone, &[][..]),
            };
            record::encode_into(
                &mut o.buf,
                o.salt,
                offset,
                kind,
                0,
                k.seq,
                k.expires_at_ms,
                key,
                value,
            );
            o.len += len;
            if k.live.is_none() {
                o.tombstone_bytes += len;
            }
            o.min_seq = o.min_seq.min(k.seq);
            o.max_seq = o.max_seq.max(k.seq);
            o.hints.push(HintEntry {
                key: key.clone(),
                seq: k.seq,
                expires_at_ms: k.expires_at_ms,
                offset,
                value_len: k.value_len,
                tombstone: k.live.is_none(),
            });
            if let Some(old) = k.live {
                let new = Entry {
                    seq: k.seq,
                    expires_at_ms: k.expires_at_ms,
                    offset,
                    file_id: o.id,
                    value_len: k.value_len,
                };
                moves.push((i, old, new));
            }
            if o.buf.len() >= 1 << 20 {
                o.flush()?;
            }
            written += len;
            if limit > 0 {
                let due = Duration::from_secs_f64(written as f64 / limit as f64);
                let elapsed = started.elapsed();
                if due > elapsed + Duration::from_millis(5) {
                    std::thread::sleep(due - elapsed);
                }
            }
        }
        if let Some(o) = outputs.last_mut() {
            o.flush()?;
        }
        Ok(())
    }
}
