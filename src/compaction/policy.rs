//! Phase 1, **choose**: which sealed segments a compaction rewrites, both
//! when asked ([`Plan`]) and for automatic compaction
//! ([`auto_candidates`]).

use std::collections::BTreeMap;

use crate::engine::Core;
use crate::error::Result;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::storage::space::{level_bytes, start_level, SegmentSpace, StoreSpace, START_FRACTION};
use crate::util::locks::lock;

/// The segments one compaction rewrites.
pub(super) struct Plan {
    /// The chosen sealed segments, sorted, without duplicates.
    pub(super) inputs: Vec<u32>,
    /// The lowest sequence number of every segment that is *not* chosen
    /// (`u64::MAX` if there is none): a record at or above it may still
    /// hide an older version of its key in a segment that is kept.
    pub(super) min_seq_kept: u64,
}

impl Core {
    /// Phase 1, choose: the sealed segments that `choose` picks from the
    /// segment statistics (given the active segment's id), never the active
    /// one, nor one with skipped damage.
    pub(super) fn choose(
        &self,
        choose: impl FnOnce(&BTreeMap<u32, SegmentSpace>, u32) -> Vec<u32>,
    ) -> Result<Plan> {
        let w = self.writer()?;
        let active = self.active_id().ok_or(crate::error::Error::ReadOnly)?;
        let seg_stats = lock(&self.seg_stats);
        let mut inputs = choose(&seg_stats, active);
        // A segment in which a salvage open skipped damage is left as it
        // is (`cairn repair` rewrites it): compaction reads its inputs
        // strictly, so that damage never passes for a missing record.
        inputs.retain(|id| *id != active && seg_stats.get(id).is_some_and(|s| !s.damaged));
        inputs.sort_unstable();
        inputs.dedup();
        let min_seq_kept = seg_stats
            .iter()
            .filter(|(id, _)| inputs.binary_search(id).is_err())
            .map(|(_, s)| s.min_seq)
            .min()
            .unwrap_or(u64::MAX);
        drop(w);
        Ok(Plan {
            inputs,
            min_seq_kept,
        })
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
/// Only segments `may_take` allows are chosen (not those the index
/// checkpoint's replay reads in log order: `Core::compaction_may_take`).
pub(super) fn auto_candidates(
    stats: &BTreeMap<u32, SegmentSpace>,
    active: u32,
    may_take: &dyn Fn(u32) -> bool,
    opts: &crate::options::Options,
) -> Vec<u32> {
    let data = |s: &SegmentSpace| s.total.saturating_sub(SEGMENT_HEADER_LEN);
    let ratio = |s: &SegmentSpace| s.dead as f64 / data(s).max(1) as f64;
    let sealed: Vec<(u32, &SegmentSpace)> = stats
        .iter()
        .filter(|(id, s)| **id != active && may_take(**id) && !s.damaged)
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
    let space = StoreSpace::of(stats, active);
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
                .map(SegmentSpace::reclaimable)
                .sum::<u64>(),
        );
        let mut by_ratio: Vec<&(u32, &SegmentSpace)> =
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
    let mut by_value: Vec<(u32, &SegmentSpace)> = chosen
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
