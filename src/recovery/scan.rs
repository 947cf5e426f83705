//! Scanning a segment record by record: batches, sync marks, damage
//! (refused, skipped by salvage, or cut off as a torn tail).

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::record::{self, Decoded, RecordKind, RecordRef};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::options::RecoveryMode;

use super::report::SkippedRange;
use super::segment_load::SegmentLoad;

/// Searches for the first offset at or after `from` holding a valid record
/// whose sequence number is above `min_seq`. A record's checksum binds its
/// segment's salt and its offset, so record images inside values, or copied
/// from elsewhere, are never found.
pub(crate) fn find_next_valid(bytes: &[u8], from: usize, min_seq: u64, salt: u32) -> Option<usize> {
    let last = bytes
        .len()
        .saturating_sub(record::RECORD_HEADER_LEN as usize);
    (from..=last).find(|&off| {
        // Cheap rejection first: the kind byte (not a sync mark: its
        // sequence number is 0, never above `min_seq`), then the full decode.
        RecordKind::peek(&bytes[off..]).is_some_and(|k| k != RecordKind::SyncMark)
            && matches!(
                record::decode(&bytes[off..], salt, off as u64),
                Decoded::Record(r) if r.seq > min_seq
            )
    })
}

/// The highest durable length named by a valid sync mark at or after
/// `from` (0 if none). Used only on damage, so it may be slow.
fn durable_after(bytes: &[u8], from: usize, salt: u32) -> u64 {
    let header = record::RECORD_HEADER_LEN as usize;
    let mut best = 0;
    let mut off = from;
    while off + header <= bytes.len() {
        if RecordKind::peek(&bytes[off..]).is_some() {
            if let Decoded::Record(r) = record::decode(&bytes[off..], salt, off as u64) {
                if r.kind == RecordKind::SyncMark && r.value.len() == 8 {
                    let d = record::le_u64(r.value, 0);
                    if d <= off as u64 {
                        best = best.max(d);
                    }
                }
                off += r.len as usize;
                continue;
            }
        }
        off += 1;
    }
    best
}

/// A batch whose commit record has not been read yet.
struct OpenBatch {
    begin_offset: u64,
    begin_seq: u64,
    count: u32,
    entries: Vec<HintEntry>,
}

/// Scans a whole segment. `active` selects torn-tail handling.
pub(crate) fn scan_segment(
    path: &Path,
    id: u32,
    bytes: &[u8],
    active: bool,
    mode: RecoveryMode,
) -> Result<SegmentLoad> {
    scan_segment_from(path, id, bytes, active, mode, SEGMENT_HEADER_LEN as usize)
}

/// Scans a segment from `from`, a record boundary (replay after an index
/// checkpoint, from its cut): the header is checked, and the bytes between
/// it and `from` are not read (they may be zeros).
pub(crate) fn scan_segment_from(
    path: &Path,
    id: u32,
    bytes: &[u8],
    active: bool,
    mode: RecoveryMode,
    from: usize,
) -> Result<SegmentLoad> {
    let mut load = SegmentLoad::empty(id);
    let Some(salt) = read_header(path, id, bytes, active, &mut load)? else {
        return Ok(load);
    };
    let mut scan = Scan {
        path,
        bytes,
        salt,
        version: load.version,
        active,
        salvage: mode == RecoveryMode::Salvage,
        load,
        pos: from.max(SEGMENT_HEADER_LEN as usize),
        last_seq: 0,
        pending: None,
        good_end: (from as u64).max(SEGMENT_HEADER_LEN),
        durable: 0,
        mark_run: None,
    };
    scan.records()?;
    scan.finish()
}

/// Checks the segment header and returns its salt, or `None` when the
/// active segment was being created when the process stopped (`load` then
/// says to rewrite the header).
fn read_header(
    path: &Path,
    id: u32,
    bytes: &[u8],
    active: bool,
    load: &mut SegmentLoad,
) -> Result<Option<u32>> {
    let header_len = SEGMENT_HEADER_LEN as usize;
    match segment::header_info(path, bytes, id) {
        Ok(info) => {
            load.compacted = info.compacted;
            load.salt = info.salt;
            load.version = info.version;
            Ok(Some(info.salt))
        }
        Err(e) => {
            // The active segment's header is written and synced before its first
            // record, so a header that is torn, with nothing but zeros after it,
            // means the segment was being created when the process stopped:
            // nothing in it was ever acknowledged.
            let torn_create =
                bytes.len() < header_len || bytes[header_len..].iter().all(|&b| b == 0);
            if active && torn_create && !matches!(e, Error::UnsupportedVersion { .. }) {
                load.needs_header = true;
                load.version = segment::FORMAT_VERSION; // the header to write
                load.cut = Some((0, bytes.len() as u64));
                load.len = 0;
                return Ok(None);
            }
            Err(e)
        }
    }
}

/// The state of one segment scan.
struct Scan<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    salt: u32,
    /// The segment's format version: a version-1 segment holds no record
    /// flag of version 2.
    version: u16,
    active: bool,
    salvage: bool,
    load: SegmentLoad,
    /// The offset of the next record.
    pos: usize,
    last_seq: u64,
    pending: Option<OpenBatch>,
    /// End of the last record outside an open batch.
    good_end: u64,
    /// How much of the segment sync marks say was durable: damage before
    /// this point is corruption, damage after it can be an unsynced tail.
    durable: u64,
    /// The run of sync marks the scan is in (no other record since):
    /// where it starts, and the highest durable length its marks name.
    /// A run that ends the segment and vouches for everything before it
    /// is what a clean close leaves.
    mark_run: Option<(u64, u64)>,
}

impl Scan<'_> {
    /// The record loop: reads records until the end, the zeros of a
    /// preallocated tail, or damage that ends the scan.
    fn records(&mut self) -> Result<()> {
        while self.pos < self.bytes.len() {
            if self.active && self.bytes[self.pos..].iter().all(|&b| b == 0) {
                break; // preallocated space (or a zero-filled torn tail)
            }
            if let Some(problem) = self.next_record()? {
                if !self.damage(problem)? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// Takes the record at `pos` and moves past it, or returns what is
    /// wrong with it (the damage is at `pos`).
    fn next_record(&mut self) -> Result<Option<&'static str>> {
        let bytes = self.bytes;
        let r = match record::decode(&bytes[self.pos..], self.salt, self.pos as u64) {
            Decoded::Record(r) => r,
            Decoded::Truncated => return Ok(Some("record is truncated")),
            Decoded::Invalid(why) => return Ok(Some(why)),
        };
        if self.version < 2 && r.has_flags_since_v2() {
            return Ok(Some(
                "record flags of format version 2 in a version-1 segment",
            ));
        }
        if self.version < 3 && r.replaces {
            return Ok(Some(
                "a record flag of format version 3 in an older segment",
            ));
        }
        if r.kind == RecordKind::SyncMark {
            return Ok(self.sync_mark(&r));
        }
        if let Some(problem) = self.out_of_place(&r) {
            return Ok(Some(problem));
        }
        self.accept(&r)?;
        Ok(None)
    }

    /// A sync mark: raises the durable length it vouches for.
    fn sync_mark(&mut self, r: &RecordRef) -> Option<&'static str> {
        let offset = self.pos as u64;
        let mark = (r.value.len() == 8 && r.key.is_empty() && r.seq == 0)
            .then(|| record::le_u64(r.value, 0))
            .filter(|&d| d <= offset);
        let Some(d) = mark else {
            return Some("malformed sync mark");
        };
        self.durable = self.durable.max(d);
        let run = self.mark_run.get_or_insert((offset, d));
        run.1 = run.1.max(d);
        self.pos += r.len as usize;
        if self.pending.is_none() {
            self.good_end = self.pos as u64;
        }
        None
    }

    /// What makes a valid record wrong where it stands, if anything: its
    /// sequence number, or its batch flag against the open batch.
    fn out_of_place(&self, r: &RecordRef) -> Option<&'static str> {
        if r.seq <= self.last_seq {
            Some("sequence number out of order")
        } else if r.seq >= record::MAX_SEQ {
            Some("sequence number out of range")
        } else if matches!(r.kind, RecordKind::Put | RecordKind::Tombstone)
            && r.in_batch != self.pending.is_some()
        {
            Some(if r.in_batch {
                "batch operation without its batch begin record"
            } else {
                "record inside an open batch is not one of its operations"
            })
        } else {
            None
        }
    }

    /// Takes a record that is in its place.
    fn accept(&mut self, r: &RecordRef) -> Result<()> {
        let offset = self.pos as u64;
        self.mark_run = None;
        self.last_seq = r.seq;
        // A batch counts once its commit (whose sequence number is above
        // its operations') is accepted: one that never commits leaves no
        // hole in the numbers the writer goes on with, so the change feed
        // sees them gapless.
        if !r.in_batch && r.kind != RecordKind::BatchBegin {
            self.load.max_seq = self.load.max_seq.max(r.seq);
        }
        self.load.min_seq = self.load.min_seq.min(r.seq);
        self.pos += r.len as usize;
        match r.kind {
            RecordKind::Put | RecordKind::Tombstone => {
                let e = HintEntry {
                    key: r.key.to_vec(),
                    seq: r.seq,
                    expires_at_ms: r.expires_at_ms,
                    offset,
                    value_len: r.value.len() as u32,
                    tombstone: r.kind == RecordKind::Tombstone,
                    replaces: r.replaces,
                };
                match self.pending.as_mut() {
                    Some(b) => b.entries.push(e),
                    None => {
                        self.load.entries.push(e);
                        self.good_end = self.pos as u64;
                    }
                }
                Ok(())
            }
            RecordKind::BatchBegin => self.begin_batch(r, offset),
            RecordKind::BatchCommit => self.commit_batch(r, offset),
            RecordKind::SyncMark => Ok(()), // handled in `next_record`
        }
    }

    fn begin_batch(&mut self, r: &RecordRef, offset: u64) -> Result<()> {
        if let Some(b) = self.pending.take() {
            // An open batch followed by another one: the first never committed.
            let why = "batch without a commit record followed by more records";
            if !self.salvage {
                return Err(Error::corruption(self.path, b.begin_offset, why));
            }
            self.skip(b.begin_offset, offset - b.begin_offset, why);
        }
        let count = if r.value.len() >= 4 {
            record::le_u32(r.value, 0)
        } else {
            0
        };
        self.pending = Some(OpenBatch {
            begin_offset: offset,
            begin_seq: r.seq,
            count,
            entries: Vec::new(),
        });
        Ok(())
    }

    /// A commit record: applies the open batch whole if it matches, else
    /// the batch is damage.
    fn commit_batch(&mut self, r: &RecordRef, offset: u64) -> Result<()> {
        let ok = self.pending.as_ref().is_some_and(|b| {
            r.value.len() >= 12
                && record::le_u64(r.value, 0) == b.begin_seq
                && record::le_u32(r.value, 8) == b.count
                && b.entries.len() as u64 == u64::from(b.count)
        });
        if ok {
            if let Some(b) = self.pending.take() {
                self.load.entries.extend(b.entries);
            }
            self.good_end = self.pos as u64;
            return Ok(());
        }
        let why = "batch commit record does not match its batch";
        if !self.salvage {
            return Err(Error::corruption(self.path, offset, why));
        }
        let start = self.pending.take().map_or(offset, |b| b.begin_offset);
        self.skip(start, self.pos as u64 - start, why);
        self.good_end = self.pos as u64;
        Ok(())
    }

    /// Damage at `pos`: an error, a skipped range (salvage) or the end of
    /// the log. Returns whether the scan goes on.
    fn damage(&mut self, problem: &'static str) -> Result<bool> {
        if self.active && !self.salvage {
            self.unsynced_tail(problem)?;
            return Ok(false);
        }
        let pos = self.pos;
        match find_next_valid(self.bytes, pos + 1, self.last_seq, self.salt) {
            Some(next) if self.salvage => {
                let start = self.damage_start();
                self.skip(start, next as u64 - start, problem);
                self.pos = next;
                Ok(true)
            }
            Some(_) => Err(Error::corruption(
                self.path,
                pos as u64,
                format!("{problem}, and valid records follow"),
            )),
            None if self.active => Ok(false),
            None if self.salvage => {
                let start = self.damage_start();
                self.skip(start, self.bytes.len() as u64 - start, problem);
                self.good_end = start;
                Ok(false)
            }
            None => Err(Error::corruption(
                self.path,
                pos as u64,
                format!("{problem} in a sealed segment"),
            )),
        }
    }

    /// Damage in the active segment, strict mode: a sync mark (before it or
    /// anywhere after it) that vouches for these bytes makes it corruption;
    /// otherwise it is an unsynced tail, cut here.
    fn unsynced_tail(&self, problem: &'static str) -> Result<()> {
        let (bytes, pos) = (self.bytes, self.pos);
        let vouched = self.durable.max(durable_after(bytes, pos + 1, self.salt));
        if (pos as u64) < vouched {
            return Err(Error::corruption(
                self.path,
                pos as u64,
                format!("{problem}, in data a sync mark says was durable (up to offset {vouched})"),
            ));
        }
        if let Some(next) = find_next_valid(bytes, pos + 1, self.last_seq, self.salt) {
            log::warn!(
                "{}: {problem} at offset {pos}, past the last synced offset {vouched}; \
                 discarding the unsynced tail (valid records resume at {next})",
                self.path.display()
            );
        }
        Ok(())
    }

    /// Where skipped damage starts: at the open batch's begin record (which
    /// it closes), or at `pos`.
    fn damage_start(&mut self) -> u64 {
        self.pending
            .take()
            .map_or(self.pos as u64, |b| b.begin_offset)
    }

    fn skip(&mut self, offset: u64, len: u64, reason: &str) {
        self.load.skipped.push(SkippedRange {
            path: self.path.to_path_buf(),
            offset,
            len,
            reason: reason.into(),
        });
    }

    /// After the last record: a batch still open never committed; then the
    /// segment's length, and the active segment's tail to cut.
    fn finish(mut self) -> Result<SegmentLoad> {
        let file_len = self.bytes.len() as u64;
        if let Some(b) = self.pending.take() {
            if !self.active && !self.salvage {
                return Err(Error::corruption(
                    self.path,
                    b.begin_offset,
                    "batch without a commit record in a sealed segment",
                ));
            }
            self.load.discarded_batch_records += u64::from(b.count.max(b.entries.len() as u32));
            if self.salvage && !self.active {
                let why = "batch without a commit record";
                self.skip(b.begin_offset, file_len - b.begin_offset, why);
            }
        }
        let good_end = self.good_end;
        self.load.len = good_end;
        if self.active && good_end < file_len {
            self.load.cut = Some((good_end, file_len));
            self.load.zero_tail = self.bytes[good_end as usize..].iter().all(|&b| b == 0);
        }
        self.load.closed_clean = self.active
            && (good_end == file_len || self.load.zero_tail)
            && self.mark_run.is_some_and(|(start, d)| d >= start);
        Ok(self.load)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const SALT: u32 = 0x1234_5678;

    /// Appends a record at the end of `b`, as the writer would (puts and
    /// tombstones between a batch's begin and commit carry the batch flag).
    fn encode_into(b: &mut Vec<u8>, kind: RecordKind, seq: u64, exp: u64, key: &[u8], v: &[u8]) {
        let at = b.len() as u64;
        record::encode_into(b, SALT, at, kind, 0, seq, exp, key, v);
    }

    fn encode_batch_op(b: &mut Vec<u8>, kind: RecordKind, seq: u64, key: &[u8], v: &[u8]) {
        let at = b.len() as u64;
        record::encode_into(b, SALT, at, kind, record::FLAG_BATCH, seq, 0, key, v);
    }

    fn seg(records: &[(RecordKind, u64, &[u8], &[u8])]) -> Vec<u8> {
        let mut b = segment::encode_header(1, SALT).to_vec();
        for (k, s, key, v) in records {
            encode_into(&mut b, *k, *s, 0, key, v);
        }
        b
    }

    fn p() -> PathBuf {
        PathBuf::from("/d/0000000001.seg")
    }

    /// Appends a sync mark saying everything before it is durable.
    fn mark(b: &mut Vec<u8>) {
        let at = b.len() as u64;
        encode_into(b, RecordKind::SyncMark, 0, 0, b"", &at.to_le_bytes());
    }

    #[test]
    fn clean_segment() {
        let b = seg(&[
            (RecordKind::Put, 1, b"a", b"1"),
            (RecordKind::Tombstone, 2, b"a", b""),
        ]);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 2);
        assert_eq!(l.len, b.len() as u64);
        assert_eq!(l.cut, None);
        assert_eq!(l.max_seq, 2);
    }

    #[test]
    fn torn_tail_is_cut_at_every_offset() {
        let b = seg(&[
            (RecordKind::Put, 1, b"a", b"1"),
            (RecordKind::Put, 2, b"b", b"22"),
            (RecordKind::Put, 3, b"c", b"333"),
        ]);
        let first_end = 32 + 34;
        for cut in first_end..b.len() {
            let l = scan_segment(&p(), 1, &b[..cut], true, RecoveryMode::Strict).expect("scan");
            let n = l.entries.len();
            assert!(n >= 1 && l.len <= cut as u64, "cut {cut}");
            if l.len < cut as u64 {
                assert_eq!(l.cut, Some((l.len, cut as u64)));
            }
        }
    }

    #[test]
    fn middle_corruption_is_an_error_and_salvage_skips_it() {
        let mut b = seg(&[
            (RecordKind::Put, 1, b"a", b"1"),
            (RecordKind::Put, 2, b"b", b"22"),
            (RecordKind::Put, 3, b"c", b"333"),
        ]);
        let second = 66 + 33; // inside record 2's value
                              // With no sync mark past it, the damage can be a power loss that
                              // lost one page of an unsynced write: an unsynced tail, cut.
        let mut c = b.clone();
        c[second] ^= 0xff;
        let l = scan_segment(&p(), 1, &c, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.cut, Some((66, c.len() as u64)));
        // A sync mark says it was durable: corruption.
        mark(&mut b);
        let mut c = b.clone();
        c[second] ^= 0xff;
        match scan_segment(&p(), 1, &c, true, RecoveryMode::Strict) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 66),
            other => panic!("{:?}", other.map(|l| l.entries.len())),
        }
        // The record right before the mark: nothing valid follows but the
        // mark itself, which still vouches for it.
        let mut last = b.clone();
        last[b.len() - 41] ^= 0xff;
        match scan_segment(&p(), 1, &last, true, RecoveryMode::Strict) {
            Err(Error::Corruption { offset, .. }) => assert_eq!(offset, 101),
            other => panic!("{:?}", other.map(|l| l.entries.len())),
        }
        let l = scan_segment(&p(), 1, &c, true, RecoveryMode::Salvage).expect("salvage");
        let keys: Vec<_> = l.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(keys, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(l.skipped.len(), 1);
        assert_eq!(l.skipped[0].offset, 66);
    }

    #[test]
    fn uncommitted_batch_is_discarded() {
        let mut b = seg(&[(RecordKind::Put, 1, b"a", b"1")]);
        let keep = b.len();
        encode_into(
            &mut b,
            RecordKind::BatchBegin,
            2,
            0,
            b"",
            &2u32.to_le_bytes(),
        );
        encode_batch_op(&mut b, RecordKind::Put, 3, b"x", b"1");
        encode_batch_op(&mut b, RecordKind::Put, 4, b"y", b"1");
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.cut, Some((keep as u64, b.len() as u64)));
        let mut commit = Vec::new();
        commit.extend_from_slice(&2u64.to_le_bytes());
        commit.extend_from_slice(&2u32.to_le_bytes());
        encode_into(&mut b, RecordKind::BatchCommit, 5, 0, b"", &commit);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.entries.len(), 3);
        assert_eq!(l.cut, None);
    }

    #[test]
    fn salvage_never_makes_a_batch_partly_visible() {
        let mut b = seg(&[(RecordKind::Put, 1, b"a", b"1")]);
        encode_into(
            &mut b,
            RecordKind::BatchBegin,
            2,
            0,
            b"",
            &3u32.to_le_bytes(),
        );
        encode_batch_op(&mut b, RecordKind::Put, 3, b"x", b"1");
        let damaged = b.len();
        encode_batch_op(&mut b, RecordKind::Put, 4, b"y", b"1");
        encode_batch_op(&mut b, RecordKind::Put, 5, b"z", b"1");
        let mut commit = Vec::new();
        commit.extend_from_slice(&2u64.to_le_bytes());
        commit.extend_from_slice(&3u32.to_le_bytes());
        encode_into(&mut b, RecordKind::BatchCommit, 6, 0, b"", &commit);
        encode_into(&mut b, RecordKind::Put, 7, 0, b"after", b"1");
        mark(&mut b);
        b[damaged + 40] ^= 0xff; // inside y's record
        assert!(matches!(
            scan_segment(&p(), 1, &b, true, RecoveryMode::Strict),
            Err(Error::Corruption { .. })
        ));
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Salvage).expect("salvage");
        let keys: Vec<_> = l.entries.iter().map(|e| e.key.clone()).collect();
        assert_eq!(
            keys,
            vec![b"a".to_vec(), b"after".to_vec()],
            "{:?}",
            l.skipped
        );
    }

    #[test]
    fn sealed_segment_damage_is_an_error() {
        let b = seg(&[
            (RecordKind::Put, 1, b"a", b"1"),
            (RecordKind::Put, 2, b"b", b"22"),
        ]);
        let cut = &b[..b.len() - 1];
        assert!(matches!(
            scan_segment(&p(), 1, cut, false, RecoveryMode::Strict),
            Err(Error::Corruption { .. })
        ));
    }

    /// Appends the two marks of a clean close: both vouch for every byte
    /// before the first.
    fn close_marks(b: &mut Vec<u8>) -> u64 {
        let at = b.len() as u64;
        encode_into(b, RecordKind::SyncMark, 0, 0, b"", &at.to_le_bytes());
        encode_into(b, RecordKind::SyncMark, 0, 0, b"", &at.to_le_bytes());
        at
    }

    #[test]
    fn close_marks_vouch_for_everything_before_them() {
        let mut b = seg(&[
            (RecordKind::Put, 1, b"a", b"1"),
            (RecordKind::Put, 2, b"b", b"22"),
        ]);
        let last = 66; // the second record
        let at = close_marks(&mut b);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert!(l.closed_clean);
        assert_eq!((l.entries.len(), l.len), (2, b.len() as u64));
        let mut zeros = b.clone();
        zeros.extend_from_slice(&[0u8; 512]);
        let l = scan_segment(&p(), 1, &zeros, true, RecoveryMode::Strict).expect("scan");
        assert!(l.closed_clean, "preallocated zeros after the marks");
        // The last record damaged: refused, also with either mark damaged.
        for mark in [None, Some(at), Some(at + 40)] {
            let mut c = b.clone();
            c[last + 33] ^= 1;
            if let Some(m) = mark {
                c[m as usize + 10] ^= 1;
            }
            match scan_segment(&p(), 1, &c, true, RecoveryMode::Strict) {
                Err(Error::Corruption { offset, .. }) => assert_eq!(offset, last as u64),
                other => panic!("{mark:?}: {:?}", other.map(|l| l.entries.len())),
            }
        }
        // A damaged mark: cut there, no record lost, not a clean end.
        let mut c = b.clone();
        c[at as usize + 10] ^= 1;
        let l = scan_segment(&p(), 1, &c, true, RecoveryMode::Strict).expect("scan");
        assert_eq!((l.entries.len(), l.cut), (2, Some((at, b.len() as u64))));
        assert!(!l.closed_clean);
        // Records after the marks (a reopened writer): not a clean end.
        encode_into(&mut b, RecordKind::Put, 3, 0, b"c", b"3");
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert!(!l.closed_clean);
        assert_eq!(l.entries.len(), 3);
        // An ordinary mark that vouches only for older bytes: not a clean end.
        let mut m = seg(&[(RecordKind::Put, 1, b"a", b"1")]);
        encode_into(
            &mut m,
            RecordKind::SyncMark,
            0,
            0,
            b"",
            &32u64.to_le_bytes(),
        );
        let l = scan_segment(&p(), 1, &m, true, RecoveryMode::Strict).expect("scan");
        assert!(!l.closed_clean);
    }

    #[test]
    fn zero_tail_is_cut() {
        let mut b = seg(&[(RecordKind::Put, 1, b"a", b"1")]);
        let n = b.len();
        b.extend_from_slice(&[0u8; 4096]);
        let l = scan_segment(&p(), 1, &b, true, RecoveryMode::Strict).expect("scan");
        assert_eq!(l.len, n as u64);
        assert_eq!(l.entries.len(), 1);
    }
}
