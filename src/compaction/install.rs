//! Phases 4 and 5, **install** the new segments and **delete** the old
//! ones: the segment table, the keydir's compare-and-swap, the `COMPACTION`
//! manifest, unlinking the inputs.

use std::sync::Arc;

use super::classify::Classified;
use super::output::{Move, Written};
use super::policy::Plan;
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::format::checkpoint::{Delta, SegmentInfo};
use crate::format::record;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::storage::manifest;
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;
use crate::util;
use crate::util::locks::{self, lock};

impl Core {
    /// Phase 4, install: adds the new segments to the segment table, then
    /// moves each key with a compare-and-swap on its location, only where
    /// the keydir still points at the record that was copied; drops the
    /// index entries of expired puts that were not copied.
    pub(super) fn install(&self, classified: &Classified, written: &Written) -> Result<()> {
        let outputs = &written.outputs;
        let mut opened = Vec::with_capacity(outputs.len());
        for o in outputs {
            match Segment::open_sealed(&*self.opts.vfs, &self.dir, o.id, self.opts.use_mmap, o.salt)
            {
                Ok(seg) => opened.push(Arc::new(seg)),
                Err(e) => {
                    self.discard(outputs);
                    return Err(Error::Io(e));
                }
            }
        }
        for (o, seg) in outputs.iter().zip(opened) {
            locks::write(&self.segments).insert(o.id, seg);
            // Kept tombstones are needed, not dead: counting them as dead
            // would make automatic compaction rewrite them forever.
            lock(&self.seg_stats).insert(
                o.id,
                SegmentSpace {
                    total: o.len,
                    dead: o.len - SEGMENT_HEADER_LEN - o.tombstone_bytes,
                    kept: o.tombstone_bytes,
                    hint: o.hint_bytes,
                    min_seq: o.min_seq,
                    damaged: false,
                },
            );
        }
        self.move_keys(classified, &written.moves);
        for (key, entry) in &classified.forget {
            if self.keydir.remove_if_eq(key, entry) {
                self.count_expired_removed(1);
            }
        }
        util::crash_point!(self.opts, AfterInstall);
        Ok(())
    }

    /// Points each key at its copy where the keydir still points at the
    /// record that was copied (a key written, deleted or expired meanwhile
    /// keeps its newer state), and moves its bytes from dead to live.
    fn move_keys(&self, classified: &Classified, moves: &[Move]) {
        for Move { i, old, new } in moves {
            let k = &classified.kept[*i];
            if self.keydir.replace_if_eq(&k.key, old, *new) {
                let len = record::encoded_len(k.key_len, k.value_len);
                let mut seg_stats = lock(&self.seg_stats);
                if let Some(s) = seg_stats.get_mut(&new.file_id) {
                    s.dead -= len;
                }
                if let Some(s) = seg_stats.get_mut(&old.file_id) {
                    s.dead += len;
                }
            }
        }
    }

    /// What this compaction did, for the index checkpoint: its inputs, its
    /// outputs as installed (with their accounting), and every copy.
    pub(super) fn delta_of(&self, plan: &Plan, written: &Written) -> Delta {
        let stats = lock(&self.seg_stats);
        let outputs = written.outputs.iter().filter_map(|o| {
            let s = stats.get(&o.id)?;
            Some(SegmentInfo {
                id: o.id,
                salt: o.salt,
                data_len: o.len,
                file_len: o.len,
                dead: s.dead,
                kept: s.kept,
                hint: o.hint_bytes,
                min_seq: o.min_seq,
            })
        });
        Delta {
            retired: plan.inputs.clone(),
            written: outputs.collect(),
            moves: written
                .moves
                .iter()
                .map(|m| {
                    (
                        m.old.file_id,
                        m.old.offset as u32,
                        m.new.file_id,
                        m.new.offset as u32,
                    )
                })
                .collect(),
        }
    }

    /// Phase 5, first half: writes the `COMPACTION` manifest naming the
    /// inputs and removes them from the segment table. The caller then
    /// lets go of their bytes and calls [`Core::delete_inputs`].
    pub(super) fn retire_inputs(&self, plan: &Plan) -> Result<()> {
        // The records this compaction dropped as overwritten or deleted are
        // superseded by newer records that may still be unsynced in the
        // active segment (under `SyncPolicy::Never` or `EveryMillis`): make
        // those durable first, or a power loss would lose both the old and
        // the new version.
        self.sync()?;
        manifest::write(&*self.opts.vfs, &self.dir, &plan.inputs)?;
        util::crash_point!(self.opts, AfterManifest);
        let mut table = locks::write(&self.segments);
        let mut seg_stats = lock(&self.seg_stats);
        for id in &plan.inputs {
            table.remove(id);
            seg_stats.remove(id);
        }
        Ok(())
    }

    /// Phase 5, second half: unlinks the inputs and their hints, fsyncs
    /// the directory, deletes the manifest.
    pub(super) fn delete_inputs(&self, plan: &Plan) -> Result<()> {
        // The crash point after the unlinks, before the manifest is
        // deleted: unlink as `manifest::delete_inputs` would, then stop.
        #[cfg(feature = "__test_hooks")]
        if self.opts.hooks.compaction_stop == Some(util::hooks::CompactionStop::AfterUnlink) {
            for &id in &plan.inputs {
                let _ = self
                    .opts
                    .vfs
                    .remove_file(&crate::format::names::hint_path(&self.dir, id));
                let _ = self
                    .opts
                    .vfs
                    .remove_file(&crate::format::names::segment_path(&self.dir, id));
            }
            return Err(Error::Io(std::io::Error::other(
                "compaction stopped for a test",
            )));
        }
        manifest::delete_inputs(&*self.opts.vfs, &self.dir, &plan.inputs)?;
        Ok(())
    }
}
