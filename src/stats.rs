//! Counters describing a store.

/// One segment file, from [`Db::segment_stats`](crate::Db::segment_stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentStats {
    /// The segment id (its file is `NNNNNNNNNN.seg`).
    pub id: u32,
    /// Bytes of records and header (the file can be longer: preallocated zeros).
    pub bytes: u64,
    /// Bytes of records that no longer matter.
    pub dead_bytes: u64,
    /// Lowest sequence number of a record in it (`u64::MAX`: none).
    pub min_seq: u64,
    /// The active segment, the one being appended to.
    pub active: bool,
}

/// A snapshot of a store's counters, from [`Db::stats`](crate::Db::stats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Keys that are present and not expired.
    pub live_keys: u64,
    /// Keys in the index that carry an expiry (a TTL), expired ones the
    /// sweep has not removed yet included: a counter kept as keys are
    /// written, so reading it walks no key.
    pub keys_with_expiry: u64,
    /// Bytes of the records that hold the live keys' current values
    /// (headers, keys and values). Expired records that the sweep has not
    /// yet removed are still counted here.
    pub live_bytes: u64,
    /// Bytes of records that no longer matter: overwritten or deleted
    /// values, tombstones, batch markers and expired records. Compaction
    /// reclaims them.
    pub dead_bytes: u64,
    /// Bytes of all segment files.
    pub disk_bytes: u64,
    /// Number of segment files, the active one included.
    pub segments: u64,
    /// Expired keys removed from memory by reads and the sweep since open.
    pub expired_keys_removed: u64,
    /// Bytes appended to segments since open.
    pub bytes_written: u64,
    /// fsync/fdatasync calls made on data files since open.
    pub fsyncs: u64,
    /// Estimated bytes of memory held by the in-memory index.
    pub keydir_memory_bytes: u64,
    /// Times a write waited for automatic compaction because disk use was
    /// past `compaction_max_space_amplification` (see
    /// [`Options::stall_writes`](crate::Options::stall_writes)).
    pub write_stalls: u64,
    /// Total time writes spent in those waits.
    pub write_stall_time: std::time::Duration,
    /// Bytes of segment files the warm-up after open has read so far (see
    /// [`Options::warm_up_after_open`](crate::Options::warm_up_after_open));
    /// 0 when it is off. Once it has finished, the size of the log at open
    /// minus any segment compaction deleted before the warm-up reached it.
    pub warm_up_bytes_read: u64,
    /// How long the warm-up after open took, from its start (as the open
    /// returns) to its last read;
    /// zero while it runs, when it is off, and when a close stopped it.
    pub warm_up_time: std::time::Duration,
}
