//! The read path: from the index to a segment, and the store's counters.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{check_key, Header};

use crate::index::keydir::{IndexEntry, RecordSource};
use crate::stats::Stats;
use crate::types::Ttl;
use crate::util::locks::{self, lock};

use super::Core;

impl RecordSource for Core {
    fn holds_key(&self, entry: &IndexEntry, key: &[u8]) -> Result<Option<Header>> {
        let segs = locks::read(&self.segments);
        match segs.get(&entry.file_id) {
            Some(seg) => seg.holds_key(entry.offset, key),
            None => Err(missing_segment(&self.dir, entry)),
        }
    }
}

/// The error of an index entry that points into a segment not open.
fn missing_segment(dir: &std::path::Path, e: &IndexEntry) -> Error {
    Error::corruption(
        names::segment_path(dir, e.file_id),
        e.offset,
        "the index points into a segment that does not exist",
    )
}

impl Core {
    /// Reads the value an entry points at.
    fn read_entry(&self, key: &[u8], mut entry: IndexEntry) -> Result<Option<Vec<u8>>> {
        // A segment can disappear between the index lookup and the read only
        // if compaction moved the key; look it up again then.
        for _ in 0..64 {
            {
                let segs = locks::read(&self.segments);
                if let Some(seg) = segs.get(&entry.file_id) {
                    return seg.read_value(entry.offset, key).map(Some);
                }
            }
            match self.keydir.get(key, self)? {
                Some(e) if !self.expired(&e) => entry = e,
                _ => return Ok(None),
            }
        }
        Err(missing_segment(&self.dir, &entry))
    }

    /// Whether `e` has expired. The clock is read only for an entry with
    /// an expiry: most have none, and a clock read is a fair part of a get.
    #[inline]
    fn expired(&self, e: &IndexEntry) -> bool {
        e.expires_at_ms != 0 && e.is_expired(self.now())
    }

    /// The live entry of `key`, if any.
    pub(super) fn live_entry(&self, key: &[u8]) -> Result<Option<IndexEntry>> {
        Ok(self.keydir.get(key, self)?.filter(|e| !self.expired(e)))
    }

    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        // The first slot with the key's hash bits is nearly always the
        // key's own: read it and check the key in one go.
        if let Some(e) = self.keydir.candidate(key) {
            if !self.expired(&e) {
                let segs = locks::read(&self.segments);
                if let Some(seg) = segs.get(&e.file_id) {
                    if let Some(v) = seg.read_value_if_key(e.offset, key)? {
                        return Ok(Some(v));
                    }
                }
            }
        }
        match self.live_entry(key)? {
            Some(e) => self.read_entry(key, e),
            None => Ok(None),
        }
    }

    pub(crate) fn contains_key(&self, key: &[u8]) -> Result<bool> {
        self.check_open()?;
        Ok(self.live_entry(key)?.is_some())
    }

    pub(crate) fn ttl(&self, key: &[u8]) -> Result<Ttl> {
        self.check_open()?;
        let now = self.now();
        Ok(match self.keydir.get(key, self)? {
            Some(e) if !e.is_expired(now) => {
                if e.expires_at_ms == 0 {
                    Ttl::Persistent
                } else {
                    Ttl::Expires(Duration::from_millis(e.expires_at_ms - now))
                }
            }
            _ => Ttl::Missing,
        })
    }

    pub(crate) fn len(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.keydir.live_len(self.now()))
    }

    /// Sorted live keys starting with `prefix`.
    pub(crate) fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.check_open()?;
        let mut keys = Vec::new();
        self.for_each_live_key(prefix, |k, _, _| keys.push(k.to_vec()))?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// Reads the live value of `key` for a read-modify-write.
    pub(super) fn current(&self, key: &[u8]) -> Result<Option<(IndexEntry, Vec<u8>)>> {
        match self.live_entry(key)? {
            Some(e) => Ok(self.read_entry(key, e)?.map(|v| (e, v))),
            None => Ok(None),
        }
    }

    /// The live value of `key` and its expiry (Unix ms, 0 for none), for a
    /// read inside [`Core::transact`].
    pub(crate) fn read_live(&self, key: &[u8]) -> Result<Option<(Vec<u8>, u64)>> {
        self.check_open()?;
        check_key(key)?;
        Ok(self.current(key)?.map(|(e, v)| (v, e.expires_at_ms)))
    }

    /// Calls `f` with each live key starting with `prefix`, its value length
    /// and its expiry (Unix ms, 0 for none), without copying values. The
    /// keys are read from the records (the index keeps none): a shard's
    /// entries are taken in file order, so the log is read nearly
    /// sequentially.
    ///
    /// # Errors
    /// A key cannot be read from its record.
    pub(crate) fn for_each_live_key(
        &self,
        prefix: &[u8],
        mut f: impl FnMut(&[u8], u32, u64),
    ) -> Result<()> {
        let now = self.now();
        let mut entries = Vec::new();
        for i in 0..self.keydir.shard_count() {
            // The shard's read lock keeps its entries current, and the
            // segment table's keeps their segments open, while the keys
            // are read.
            let shard = self.keydir.read_shard(i);
            entries.clear();
            shard.for_each_hashed(|bits, e| {
                if !e.is_expired(now) {
                    entries.push((bits, *e));
                }
            });
            entries.sort_unstable_by_key(|(_, e)| (e.file_id, e.offset));
            let segs = locks::read(&self.segments);
            for (bits, e) in &entries {
                let seg = segs
                    .get(&e.file_id)
                    .ok_or_else(|| missing_segment(&self.dir, e))?;
                let ours = seg.with_put(e.offset, |r| {
                    let ours = self.keydir.hash_bits(r.key) == *bits;
                    if ours && r.key.starts_with(prefix) {
                        f(r.key, r.value.len() as u32, e.expires_at_ms);
                    }
                    ours
                })?;
                if !ours {
                    // A get of this record's key would not find the entry:
                    // report it rather than leave the key out.
                    return Err(Error::corruption(
                        names::segment_path(&self.dir, e.file_id),
                        e.offset,
                        format!(
                            "the index entry for the record here was loaded for another key: \
                             the hint file {} disagrees with its segment; delete that hint \
                             file and reopen, which rebuilds it from the segment",
                            names::hint_path(&self.dir, e.file_id).display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    pub(crate) fn now_ms(&self) -> u64 {
        self.now()
    }

    pub(crate) fn stats(&self) -> Stats {
        let now = self.now();
        let (warm_up_bytes_read, warm_up_time) = self.warm_up_progress();
        let seg = lock(&self.seg_stats).clone();
        let mut st = Stats {
            live_keys: self.keydir.live_len(now),
            keys_with_expiry: self.keydir.ttl_len(),
            segments: seg.len() as u64,
            expired_keys_removed: self.expired_removed.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            fsyncs: self
                .group
                .as_ref()
                .map_or(0, |g| g.fsyncs.load(Ordering::Relaxed)),
            keydir_memory_bytes: self.keydir.memory_bytes(),
            write_stalls: self.stalls.load(Ordering::Relaxed),
            write_stall_time: Duration::from_nanos(self.stall_ns.load(Ordering::Relaxed)),
            warm_up_bytes_read,
            warm_up_time,
            ..Stats::default()
        };
        for s in seg.values() {
            st.disk_bytes += s.total;
            st.dead_bytes += s.dead + s.kept;
            st.live_bytes += s.live();
        }
        st
    }

    /// The entries of segment `id` as this handle holds it (`None`: it
    /// holds no such segment).
    pub(crate) fn read_segment(
        &self,
        id: u32,
    ) -> Option<Result<Vec<crate::tools::inspect::SegmentEntry>>> {
        let seg = locks::read(&self.segments).get(&id).cloned()?;
        Some(
            seg.read_all()
                .map_err(|e| crate::recovery::io_at(&seg.path, e))
                .map(|b| crate::tools::inspect::entries_of(&seg.path, id, &b)),
        )
    }

    pub(crate) fn segment_stats(&self) -> Vec<crate::stats::SegmentStats> {
        let active = self.active_id();
        lock(&self.seg_stats)
            .iter()
            .map(|(id, s)| crate::stats::SegmentStats {
                id: *id,
                bytes: s.total,
                dead_bytes: s.dead,
                min_seq: s.min_seq,
                active: Some(*id) == active,
            })
            .collect()
    }
}
