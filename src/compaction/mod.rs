//! Compaction: rewriting the live records of sealed segments into fresh
//! segments, online and crash-safely.
//!
//! 1. **Choose** sealed segments (never the active one) and note the lowest
//!    sequence number of every segment that is *not* chosen.
//! 2. **Classify** every record of the chosen segments, after a sweep of the
//!    keys expired by then (which logs their expirations). A put that the
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

mod auto;
mod classify;
mod install;
mod output;
mod policy;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::Core;
use crate::error::Result;
use crate::storage::space::SegmentSpace;
use crate::util::locks::lock;

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

impl Core {
    /// Compacts every sealed segment.
    pub(crate) fn compact_all(&self) -> Result<CompactionStats> {
        self.compact_with(|stats, active| {
            stats.keys().copied().filter(|id| *id != active).collect()
        })
    }

    /// Compacts the sealed segments that `choose` picks from the segment
    /// statistics (given the active segment's id), in the phases above.
    /// The crash points for tests (`compaction_stop`) are checked inside
    /// the phases, each right after the file operation it is named for.
    pub(crate) fn compact_with(
        &self,
        choose: impl FnOnce(&BTreeMap<u32, SegmentSpace>, u32) -> Vec<u32>,
    ) -> Result<CompactionStats> {
        let _one_at_a_time = lock(&self.compaction);
        let started = Instant::now();

        // 1. Choose.
        let plan = self.choose(choose)?;
        if plan.inputs.is_empty() {
            return Ok(CompactionStats {
                duration: started.elapsed(),
                ..CompactionStats::default()
            });
        }

        // 2. Classify. Keys expired by now are swept first, which logs their
        //    expirations (expired tombstones in the active segment) and so
        //    leaves none for compaction to drop without a trace; a key
        //    that expires after `now` is classified as live.
        let now = self.opts.clock.now_unix_ms();
        self.sweep_expired_at(now);
        let segs = self.input_segments(&plan)?;
        let sources = self.read_inputs(&segs)?;
        let classified = self.classify(&plan, &sources, now)?;

        // 3. Write (crash points `AfterWrite`, `AfterRename`).
        let written = self.write_outputs(&classified, &sources)?;

        // 4. Install (crash point `AfterInstall`).
        self.install(&classified, &written)?;
        // The index checkpoint learns of it before anything is deleted.
        self.checkpoint_compacted(&self.delta_of(&plan, &written))?;

        // 5. Delete (crash points `AfterManifest`, `AfterUnlink`): the
        //    manifest first and out of the table, then, once their bytes
        //    are let go, the files.
        self.retire_inputs(&plan)?;
        drop(sources);
        drop(segs);
        self.delete_inputs(&plan)?;

        let t = &classified.tally;
        let stats = CompactionStats {
            segments_in: plan.inputs.len() as u64,
            segments_out: written.outputs.len() as u64,
            bytes_in: t.bytes_in,
            bytes_out: written.outputs.iter().map(|o| o.len).sum(),
            records_copied: t.records_copied,
            dropped_overwritten: t.dropped_overwritten,
            dropped_deleted: t.dropped_deleted,
            dropped_expired: t.dropped_expired,
            tombstones_kept: t.tombstones_kept,
            duration: started.elapsed(),
        };
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
}
