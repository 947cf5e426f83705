//! What the engine keeps per segment: its space accounting, and a reader
//! for every sealed one.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::Result;
use crate::format::record;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::fs::Vfs;
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;

use super::segment_load::SegmentLoad;

/// Size, dead and kept bytes of every loaded segment, from the live record
/// bytes the keydir holds in each (`live`, in the order of `loads`).
pub(crate) fn segment_stats(loads: &[SegmentLoad], live: &[u64]) -> BTreeMap<u32, SegmentSpace> {
    let mut seg_stats = BTreeMap::new();
    for (l, &live) in loads.iter().zip(live) {
        let total = l.len.max(SEGMENT_HEADER_LEN);
        // Tombstones in a segment compaction wrote were kept on purpose
        // (see `SegmentSpace::kept`).
        let kept = if l.compacted {
            l.entries
                .iter()
                .filter(|e| e.tombstone)
                .map(|e| record::encoded_len(e.key.len() as u32, 0))
                .sum()
        } else {
            0
        };
        let kept = kept.min(total.saturating_sub(SEGMENT_HEADER_LEN + live));
        seg_stats.insert(
            l.id,
            SegmentSpace {
                total,
                dead: total.saturating_sub(SEGMENT_HEADER_LEN + live + kept),
                kept,
                hint: l.hint_bytes,
                min_seq: if l.skipped.is_empty() { l.min_seq } else { 0 },
                damaged: !l.skipped.is_empty(),
            },
        );
    }
    seg_stats
}

/// Opens every loaded segment but the active one for reading.
pub(crate) fn open_sealed_segments(
    vfs: &dyn Vfs,
    dir: &Path,
    loads: &[SegmentLoad],
    active_id: Option<u32>,
    use_mmap: bool,
) -> Result<BTreeMap<u32, Arc<Segment>>> {
    let mut segments = BTreeMap::new();
    for l in loads {
        if Some(l.id) != active_id {
            segments.insert(
                l.id,
                Arc::new(Segment::open_sealed(vfs, dir, l.id, use_mmap, l.salt)?),
            );
        }
    }
    Ok(segments)
}
