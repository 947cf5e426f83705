//! What loading one segment found: the type every recovery step shares.

use crate::format::hint::HintEntry;
use crate::format::segment::SEGMENT_HEADER_LEN;

use super::report::SkippedRange;

/// The result of reading one segment.
pub(crate) struct SegmentLoad {
    pub id: u32,
    /// The segment's logical length: the end of its last good record.
    pub len: u64,
    pub max_seq: u64,
    pub entries: Vec<HintEntry>,
    pub from_hint: bool,
    /// For the active segment: where to cut a torn tail, and how long the file was.
    pub cut: Option<(u64, u64)>,
    pub discarded_batch_records: u64,
    pub skipped: Vec<SkippedRange>,
    /// The active segment's header is missing or all zeros: rewrite it.
    pub needs_header: bool,
    /// The bytes after `len` are all zeros: space preallocated for appends,
    /// not a torn write.
    pub zero_tail: bool,
    /// The segment's salt (from its header).
    pub salt: u32,
    /// Lowest sequence number of a record in the segment (`u64::MAX`: none).
    pub min_seq: u64,
    /// Size of the segment's hint file (0: none).
    pub hint_bytes: u64,
    /// Written by compaction (from its header).
    pub compacted: bool,
    /// The segment's format version (from its header; 0 when it could not
    /// be read, which salvage allows for a sealed segment).
    pub version: u16,
    /// The active segment ends with the sync marks of a clean close, which
    /// vouch for every byte before them.
    pub closed_clean: bool,
}

impl SegmentLoad {
    /// A scan of segment `id` that has found nothing yet.
    pub(crate) fn empty(id: u32) -> SegmentLoad {
        SegmentLoad {
            id,
            len: SEGMENT_HEADER_LEN,
            max_seq: 0,
            entries: Vec::new(),
            from_hint: false,
            cut: None,
            discarded_batch_records: 0,
            skipped: Vec::new(),
            needs_header: false,
            zero_tail: false,
            salt: 0,
            min_seq: u64::MAX,
            hint_bytes: 0,
            compacted: false,
            version: 0,
            closed_clean: false,
        }
    }
}
