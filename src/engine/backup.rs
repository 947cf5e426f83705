//! The engine side of [`Db::backup_to`](crate::Db::backup_to): a
//! consistent copy of one open store, made while it keeps serving writes.
//!
//! * Compaction is held off while the sealed segments are linked (its lock
//!   is taken first, as `close` does), so no segment is deleted or added
//!   behind the copy's back; reads and writes go on.
//! * Under the writer lock, for an instant: the active segment and how far
//!   it is written, and every other segment in the table (all sealed: a
//!   segment is trimmed and fsynced before it leaves the writer).
//! * Sealed segments and their hints become hard links (copies when linking
//!   fails); the active segment is copied up to that length, never beyond
//!   (no preallocated zeros), so the copy ends at a complete record.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::Core;
use crate::error::Result;
use crate::format::names;
use crate::tools::backup::{self, BackupReport};
use crate::util::locks::{self, lock};

impl Core {
    /// Copies this store's files (not its keyspaces) into `dest`, which
    /// exists. A handle without a writer (read-only, snapshot) copies
    /// lock-free, as for a store another process writes.
    pub(crate) fn backup_into(&self, dest: &Path, report: &mut BackupReport) -> Result<()> {
        self.check_open()?;
        let vfs = &*self.opts.vfs;
        if self.writer.is_none() {
            return backup::copy_store_files(vfs, &self.dir, dest, report);
        }
        backup::store_dir(vfs, dest)?;
        let no_compaction = lock(&self.compaction);
        let (active, len, sealed) = {
            let w = self.writer()?;
            let active = w.active.clone();
            let len = active.len.load(Ordering::Acquire);
            let sealed: Vec<u32> = locks::read(&self.segments)
                .keys()
                .copied()
                .filter(|&id| id != active.id)
                .collect();
            (active, len, sealed)
        };
        for id in sealed {
            let (from, to) = (
                names::segment_path(&self.dir, id),
                names::segment_path(dest, id),
            );
            backup::link_or_copy(vfs, &from, &to, report)
                .map_err(|e| crate::recovery::io_at(&from, e))?;
            let hint = names::hint_path(&self.dir, id);
            match backup::link_or_copy(vfs, &hint, &names::hint_path(dest, id), report) {
                // Not written yet (the background thread writes it): open
                // scans the segment instead.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                r => r.map_err(|e| crate::recovery::io_at(&hint, e))?,
            }
        }
        // The active segment is read through the writer's own handle, so
        // compaction may go on: even if the segment is sealed, compacted
        // and unlinked meanwhile, its bytes stay readable.
        drop(no_compaction);
        let to = names::segment_path(dest, active.id);
        backup::copy_prefix(vfs, &*active.file, &to, len, report)
            .map_err(|e| crate::recovery::io_at(&names::segment_path(&self.dir, active.id), e))?;
        vfs.sync_dir(dest)?;
        Ok(())
    }
}
