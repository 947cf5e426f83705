//! Phase 2, **classify**: reading the chosen segments, checking them
//! against the index, and deciding which of their records are kept.

use std::borrow::Cow;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::policy::Plan;
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::names;
use crate::index::keydir::{IndexEntry, MAX_EXPIRY_MS};
use crate::options::RecoveryMode;
use crate::recovery;
use crate::storage::segment::Segment;
use crate::util::locks;

/// A record chosen to go into the output.
pub(super) struct Kept {
    pub(super) key: Vec<u8>,
    pub(super) seq: u64,
    /// Which input holds it: an index into [`Plan::inputs`].
    pub(super) input: usize,
    pub(super) offset: u64,
    pub(super) key_len: u32,
    pub(super) value_len: u32,
    pub(super) expires_at_ms: u64,
    /// The keydir entry to move (live puts); `None` for a tombstone.
    pub(super) live: Option<IndexEntry>,
}

/// What the classification counted; the numbers of the same name in
/// `CompactionStats`.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) bytes_in: u64,
    pub(super) records_copied: u64,
    pub(super) dropped_overwritten: u64,
    pub(super) dropped_deleted: u64,
    pub(super) dropped_expired: u64,
    pub(super) tombstones_kept: u64,
}

/// What phase 2 decided.
#[derive(Default)]
pub(super) struct Classified {
    /// The records to write, in the order the inputs hold them.
    pub(super) kept: Vec<Kept>,
    /// Indices into `kept` in the order to write them: by sequence number,
    /// each record once.
    pub(super) order: Vec<usize>,
    /// Index entries of expired puts that are not copied: removed once the
    /// new segments are installed, so nothing points into deleted files.
    pub(super) forget: Vec<(Vec<u8>, IndexEntry)>,
    pub(super) tally: Tally,
}

/// The index's entry for the key of a record being classified, with the
/// sequence number of the record it points at (read from that record's
/// header: the index does not keep it).
#[derive(Clone, Copy)]
struct Current {
    entry: IndexEntry,
    seq: u64,
}

/// What becomes of one record of an input.
enum Fate {
    /// A live put: copied, and its keydir entry moved.
    Copy(IndexEntry),
    /// Kept as a tombstone (a tombstone, or an expired put), since a
    /// segment that is kept may hold an older version of its key.
    Tombstone,
    Overwritten,
    Deleted,
    Expired,
}

impl Core {
    /// The chosen segments, from the segment table.
    pub(super) fn input_segments(&self, plan: &Plan) -> Result<Vec<Arc<Segment>>> {
        let segs: Vec<Arc<Segment>> = {
            let table = locks::read(&self.segments);
            plan.inputs
                .iter()
                .filter_map(|id| table.get(id).cloned())
                .collect()
        };
        if segs.len() != plan.inputs.len() {
            return Err(Error::Io(io::Error::other("a chosen segment disappeared")));
        }
        Ok(segs)
    }

    /// The bytes of each chosen segment: its map, or else the file read
    /// whole.
    pub(super) fn read_inputs<'a>(&self, segs: &'a [Arc<Segment>]) -> Result<Vec<Cow<'a, [u8]>>> {
        let mut sources: Vec<Cow<'a, [u8]>> = Vec::with_capacity(segs.len());
        for seg in segs {
            sources.push(seg.all_bytes(&*self.opts.vfs)?);
        }
        Ok(sources)
    }

    /// Phase 2: classifies every record of the chosen segments (`sources`,
    /// in the order of `plan.inputs`), read strictly, as of `now` (unix
    /// milliseconds). Refuses, before any file is written, when a record
    /// disagrees with the index.
    pub(super) fn classify(
        &self,
        plan: &Plan,
        sources: &[Cow<'_, [u8]>],
        now: u64,
    ) -> Result<Classified> {
        let mut out = Classified::default();
        // The newest record of the inputs that is dropped, and the newest
        // kept: see `keep_newest`.
        let mut newest_dropped: Option<(Kept, Dropped)> = None;
        let mut inputs_newest = 0;
        // The newest put or tombstone of the inputs, and whether its key
        // has a live record.
        let mut newest_entry: Option<(u64, bool)> = None;
        for (input, (&id, bytes)) in plan.inputs.iter().zip(sources).enumerate() {
            out.tally.bytes_in += bytes.len() as u64;
            let path = names::segment_path(&self.dir, id);
            let load = recovery::scan_segment(&path, id, bytes, false, RecoveryMode::Strict)?;
            inputs_newest = inputs_newest.max(load.max_seq);
            for e in load.entries {
                // A slot pointing at this record comes with no header: the
                // record is `e`.
                let current =
                    self.keydir
                        .get_near(&e.key, id, e.offset, self)?
                        .map(|(entry, header)| Current {
                            entry,
                            seq: header.map_or(e.seq, |h| h.seq),
                        });
                if newest_entry.is_none_or(|(seq, _)| e.seq > seq) {
                    newest_entry = Some((e.seq, current.is_some()));
                }
                let expired = e.expires_at_ms != 0 && e.expires_at_ms <= now;
                let points_here =
                    current.is_some_and(|c| c.entry.file_id == id && c.entry.offset == e.offset);
                self.check_against_index(&path, id, &e, current, points_here)?;
                if points_here && expired && !e.tombstone {
                    if let Some(cur) = current {
                        out.forget.push((e.key.clone(), cur.entry));
                    }
                }
                // Whether a kept segment may hold an older version of the key.
                let may_shadow = e.seq >= plan.min_seq_kept;
                let live = match fate(&e, current, points_here, expired, may_shadow) {
                    Fate::Copy(entry) => {
                        out.tally.records_copied += 1;
                        Some(entry)
                    }
                    Fate::Tombstone => {
                        out.tally.tombstones_kept += 1;
                        None
                    }
                    dropped => {
                        let why = match dropped {
                            Fate::Overwritten => Dropped::Overwritten,
                            Fate::Deleted => Dropped::Deleted,
                            _ => Dropped::Expired,
                        };
                        why.count(&mut out.tally, 1);
                        // Only a key with no live record may carry the
                        // kept number (see `keep_newest`).
                        if current.is_none()
                            && newest_dropped.as_ref().is_none_or(|(n, _)| e.seq > n.seq)
                        {
                            let kept = Kept {
                                seq: e.seq,
                                input,
                                offset: e.offset,
                                key_len: e.key.len() as u32,
                                value_len: 0,
                                expires_at_ms: 0,
                                live: None,
                                key: e.key,
                            };
                            newest_dropped = Some((kept, why));
                        }
                        continue;
                    }
                };
                out.kept.push(Kept {
                    seq: e.seq,
                    input,
                    offset: e.offset,
                    key_len: e.key.len() as u32,
                    value_len: if live.is_some() { e.value_len } else { 0 },
                    expires_at_ms: if live.is_some() { e.expires_at_ms } else { 0 },
                    live,
                    key: e.key,
                });
            }
        }
        // Only when the inputs hold the store's newest change: else a newer
        // record elsewhere keeps the numbers growing.
        // A live record holding the newest number keeps it wherever it is
        // (a copy left by an interrupted compaction may be outside the
        // inputs).
        let newest_is_live = newest_entry.is_some_and(|(seq, live)| seq == inputs_newest && live);
        if inputs_newest >= self.feed.end().seq && !newest_is_live {
            let empty_key_live = self.keydir.get(b"", self)?.is_some();
            keep_newest(&mut out, newest_dropped, inputs_newest, empty_key_live);
        }
        out.order = self.write_order(plan, &out.kept)?;
        Ok(out)
    }

    /// Refuses a record that disagrees with the index's entry for its key.
    ///
    /// Then the index was built from this segment's hint file, not from its
    /// records, and they disagree: copying or dropping by the records would
    /// change what the store holds (a tombstone the hint left out would
    /// delete a live key at the next open). Refuse, and leave every file as
    /// it is.
    fn check_against_index(
        &self,
        path: &Path,
        id: u32,
        e: &HintEntry,
        current: Option<Current>,
        points_here: bool,
    ) -> Result<()> {
        let Some(c) = current else {
            return Ok(());
        };
        // The index keeps the expiry (at most `MAX_EXPIRY_MS`); the
        // sequence number of the record it points at is read from there.
        let differs = c.entry.expires_at_ms != e.expires_at_ms.min(MAX_EXPIRY_MS);
        if (points_here && differs) || (!points_here && c.seq < e.seq) {
            return Err(Error::corruption(
                path,
                e.offset,
                format!(
                    "compaction refused: the record here (sequence {}, expiry {}) does not \
                     match the index's entry for its key (sequence {}, expiry {}), so the \
                     hint file {} disagrees with its segment; delete that hint file and \
                     reopen, which rebuilds it from the segment",
                    e.seq,
                    e.expires_at_ms,
                    c.seq,
                    c.entry.expires_at_ms,
                    names::hint_path(&self.dir, id).display()
                ),
            ));
        }
        Ok(())
    }

    /// The order to write `kept` in: by sequence number, each record once
    /// (the inputs can hold two copies of a tombstone after an interrupted
    /// compaction).
    ///
    /// Two copies of one record share key and sequence number. Two
    /// different records never share a sequence number in a log cairn
    /// wrote; if they do (crafted files), one segment cannot hold both in
    /// order, and dropping either would lose a key the store serves: refuse.
    fn write_order(&self, plan: &Plan, kept: &[Kept]) -> Result<Vec<usize>> {
        let mut order: Vec<usize> = (0..kept.len()).collect();
        order.sort_unstable_by_key(|&i| kept[i].seq);
        if let Some(w) = order
            .windows(2)
            .find(|w| kept[w[0]].seq == kept[w[1]].seq && kept[w[0]].key != kept[w[1]].key)
        {
            let (a, b) = (&kept[w[0]], &kept[w[1]]);
            return Err(Error::corruption(
                names::segment_path(&self.dir, plan.inputs[b.input]),
                b.offset,
                format!(
                    "compaction refused: this record and the one at offset {} of {} are \
                     different keys with the same sequence number {}",
                    a.offset,
                    names::segment_path(&self.dir, plan.inputs[a.input]).display(),
                    a.seq
                ),
            ));
        }
        order.dedup_by_key(|i| kept[*i].seq);
        Ok(order)
    }
}

/// What becomes of a record `e` of an input, given the index's entry for
/// its key (`current`, which may point at `e` itself), whether it has
/// expired, and whether a kept segment may hold an older version of its key.
fn fate(
    e: &HintEntry,
    current: Option<Current>,
    points_here: bool,
    expired: bool,
    may_shadow: bool,
) -> Fate {
    // The index holds a newer record, or this very record in another file:
    // a copy left by a compaction that stopped before deleting its inputs
    // has the same sequence number.
    let newer_exists = current.is_some_and(|c| c.seq > e.seq || (c.seq == e.seq && !points_here));
    if !e.tombstone && points_here && !expired {
        // `points_here` means the index has an entry.
        return current.map_or(Fate::Tombstone, |c| Fate::Copy(c.entry));
    }
    if newer_exists {
        return if e.tombstone {
            Fate::Deleted
        } else {
            Fate::Overwritten
        };
    }
    if e.tombstone || expired {
        return if may_shadow {
            Fate::Tombstone
        } else if e.tombstone {
            Fate::Deleted
        } else {
            Fate::Expired
        };
    }
    // A put, not expired, that the index does not point at and that
    // nothing newer replaced: the key has no index entry (one elsewhere is
    // newer, or was refused above), so a newer tombstone or expired put
    // hides it.
    Fate::Deleted
}

/// Keeps the inputs' newest sequence number when no kept record carries
/// it (the caller checks that the inputs hold the store's newest change,
/// and that no live record holds that number).
///
/// Recovery starts the writer's sequence numbers right after the newest
/// record it finds. Were compaction to drop the store's newest records
/// (say a delete and the put it deleted, in a sealed segment, with an
/// empty active segment), a reopened writer would number new changes with
/// numbers already handed out, and a change feed resuming right before
/// them would read the new changes as the old ones, missing the delete.
///
/// So one dropped record is kept as a tombstone that carries the inputs'
/// newest number (a batch's commit number, when the newest change was a
/// batch: commit records are not copied). It is the newest dropped record
/// *whose key has no live record* (no index entry), so the tombstone hides
/// nothing, whatever number it carries; a key with a live record is never
/// chosen, since its tombstone could outrank the live record (or an
/// identical copy of it left by an interrupted compaction) at the next
/// open.
///
/// The tombstone is of the empty key when that key has no live record
/// either, so that no deleted key's bytes stay on disk for it (a deleted
/// secret, such as an old session id, must not survive compaction).
fn keep_newest(
    out: &mut Classified,
    candidate: Option<(Kept, Dropped)>,
    inputs_newest: u64,
    empty_key_live: bool,
) {
    let Some((mut newest, why)) = candidate else {
        return;
    };
    if out.kept.iter().any(|k| k.seq >= inputs_newest) {
        return;
    }
    why.count(&mut out.tally, -1);
    out.tally.tombstones_kept += 1;
    newest.seq = inputs_newest;
    if !empty_key_live {
        newest.key = Vec::new();
        newest.key_len = 0;
    }
    out.kept.push(newest);
}

/// Why a record was dropped: which count of the [`Tally`] it is in.
#[derive(Clone, Copy)]
enum Dropped {
    Overwritten,
    Deleted,
    Expired,
}

impl Dropped {
    fn count(self, t: &mut Tally, by: i64) {
        let n = match self {
            Dropped::Overwritten => &mut t.dropped_overwritten,
            Dropped::Deleted => &mut t.dropped_deleted,
            Dropped::Expired => &mut t.dropped_expired,
        };
        *n = n.saturating_add_signed(by);
    }
}
