//! Space accounting: the size, dead bytes and hint size of every segment,
//! and the store's space amplification as automatic compaction and the
//! write stall see it.

use std::collections::BTreeMap;

use crate::format::segment::SEGMENT_HEADER_LEN;

/// Size accounting of one segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SegmentSpace {
    /// Bytes in the file (header included).
    pub total: u64,
    /// Bytes of records that no longer matter.
    pub dead: u64,
    /// Bytes of tombstones compaction had to keep (an older segment may
    /// still hold a version they hide): not live, but not reclaimable by
    /// rewriting this segment either, so they do not count as dead.
    pub kept: u64,
    /// Bytes of the segment's hint file (0: none yet). Counted as disk use.
    pub hint: u64,
    /// Lowest sequence number of any record that can matter in the segment
    /// (`u64::MAX` when it holds none). Compaction may drop a tombstone or an
    /// expired record only if every segment it keeps has a higher one.
    pub min_seq: u64,
    /// A salvage open skipped damaged ranges in the segment: compaction
    /// leaves it alone (its scan is strict), and its `min_seq` is 0 (what
    /// the damage hid is unknown), so no tombstone that might shadow it is
    /// dropped.
    pub damaged: bool,
}

impl SegmentSpace {
    pub(crate) fn empty() -> SegmentSpace {
        SegmentSpace {
            total: SEGMENT_HEADER_LEN,
            dead: 0,
            kept: 0,
            hint: 0,
            min_seq: u64::MAX,
            damaged: false,
        }
    }

    /// Bytes of records that hold live keys' current values.
    pub(crate) fn live(&self) -> u64 {
        self.total
            .saturating_sub(SEGMENT_HEADER_LEN + self.dead + self.kept)
    }

    /// The share of the hint file that describes dead records.
    fn dead_hint(&self) -> u64 {
        let data = self.total.saturating_sub(SEGMENT_HEADER_LEN).max(1);
        (self.hint as u128 * u128::from(self.dead.min(data)) / u128::from(data)) as u64
    }

    /// What compaction could reclaim by rewriting this sealed segment: its
    /// dead records and their share of its hint file.
    pub(crate) fn reclaimable(&self) -> u64 {
        self.dead + self.dead_hint()
    }

    /// What a sealed segment would take on disk with nothing dead: its live
    /// records, kept tombstones and their share of the hint file. Space
    /// amplification is disk use over this, so a hint file's size relative
    /// to its records (large for tiny values) never by itself looks like
    /// garbage that compaction should chase.
    pub(crate) fn needed(&self) -> u64 {
        (self.live() + self.kept + self.hint).saturating_sub(self.dead_hint())
    }
}

/// Automatic compaction (and the write stall) starts this fraction of the
/// way from 1 to `compaction_max_space_amplification`, and aims at half of
/// that. The rest of the way is headroom for the writes that arrive while a
/// compaction runs, for the active segment, and for a compaction's outputs,
/// which exist next to its inputs until the swap.
pub(crate) const START_FRACTION: f64 = 0.5;

/// The space amplification at which automatic compaction starts.
pub(crate) fn start_level(max_amplification: f64) -> f64 {
    1.0 + (max_amplification - 1.0) * START_FRACTION
}

/// Disk use of the store at space amplification `factor`: `factor` times
/// the `live` record bytes, but never less than `floor` (what the files
/// would take with nothing dead, hint files included) plus half of the
/// same margin. Hint files are disk use, so they count; but when they are
/// large next to the records (tiny values) the floor keeps compaction from
/// chasing an amplification it cannot reach.
pub(crate) fn level_bytes(live: u64, floor: u64, factor: f64) -> f64 {
    let live = live as f64;
    (factor * live).max(floor as f64 + (factor - 1.0) * live / 2.0)
}

/// The store's space use, as automatic compaction and the write stall see
/// it: disk use is the sealed segments with their hints plus the active
/// segment's live records; `floor` is what that would be with nothing dead
/// (see `SegmentSpace::needed`).
pub(crate) struct StoreSpace {
    pub live: u64,
    pub floor: u64,
    pub disk: u64,
    pub sealed_dead: u64,
}

impl StoreSpace {
    pub(crate) fn of(stats: &BTreeMap<u32, SegmentSpace>, active: u32) -> StoreSpace {
        let mut u = StoreSpace {
            live: 0,
            floor: 0,
            disk: 0,
            sealed_dead: 0,
        };
        for (id, s) in stats {
            u.live += s.live();
            if *id == active {
                u.floor += s.live();
                u.disk += s.live();
            } else {
                u.floor += s.needed();
                u.disk += s.total + s.hint;
                u.sealed_dead += s.dead;
            }
        }
        u
    }

    /// Whether disk use is past amplification `factor` (see `level_bytes`),
    /// with enough dead bytes for compaction to act on.
    pub(crate) fn over(&self, factor: f64) -> bool {
        self.live > 0
            && self.sealed_dead >= MIN_DEAD_FOR_AMPLIFICATION
            && self.disk as f64 > level_bytes(self.live, self.floor, factor)
    }
}

/// Space amplification alone starts no compaction for less dead data than this.
pub(crate) const MIN_DEAD_FOR_AMPLIFICATION: u64 = 64 * 1024;
