//! The automatic compaction loop, run by a background thread.

use std::sync::Arc;
use std::time::Duration;

use super::policy::auto_candidates;
use crate::engine::Core;
use crate::error::Error;
use crate::util::locks::lock;

impl Core {
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
            // Between two compactions, a checkpoint that is due gets its
            // turn (under a steady overwrite load compactions run back to
            // back, and its own thread would rarely find the lock free).
            if self.checkpoint_due() {
                self.checkpoint(crate::engine::CheckpointBy::Background);
            }
            if self.is_poisoned() {
                self.end_stall();
                continue;
            }
            let Some(active) = self.active_id() else {
                return;
            };
            // The index checkpoint's active segment and those after it
            // are replayed in log order after a crash: left alone.
            let may = |id| self.compaction_may_take(id);
            let candidates = auto_candidates(&lock(&self.seg_stats), active, &may, &self.opts);
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
}
