//! Reading the log as a stream: the writer's segments in id order, record
//! by record, through the file layer.
//!
//! Only segments the writer wrote are read (compaction outputs hold old
//! records again, out of order). Sequence numbers are global and grow in
//! log order and follow on with no hole, within a segment and from one
//! writer segment to the next, unless records were removed (compaction
//! deleted a segment, or a salvage open skipped damage): the reader
//! reports a hole as [`Error::ChangesLost`] instead of skipping it.
//!
//! Two ways to know how far the log is complete:
//! * [`Limit::Published`]: the writer is in this process and published its
//!   end (`storage::feed_signal`); nothing past it is read, so no record
//!   is ever seen half-written.
//! * [`Limit::Files`]: another process writes (or nobody does). The reader
//!   reads what the files hold; a record that does not decode at the end
//!   of the newest writer segment is one being written: it waits for it.
//!   Once a newer writer segment exists, the older one is complete (the
//!   writer fsyncs and trims a segment before it creates the next), so
//!   damage in it is corruption.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{self, Decoded, RecordKind, RECORD_HEADER_LEN};
use crate::format::segment::{self, FORMAT_VERSION, SEGMENT_HEADER_LEN};
use crate::fs::{OpenMode, VFile, Vfs};
use crate::storage::feed_signal::LogEnd;

/// How much of a segment one read brings in.
const CHUNK_BYTES: usize = 1 << 20;

/// How far the log is known to be complete.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Limit {
    /// The writer of this process published this end.
    Published(LogEnd),
    /// Whatever the files hold.
    Files,
}

/// One record, owned.
#[derive(Clone, Debug)]
pub(crate) struct Rec {
    pub kind: RecordKind,
    pub flags: u8,
    pub seq: u64,
    pub crc: u32,
    pub expires_at_ms: u64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Its offset in its segment.
    pub at: u64,
}

/// What a read found.
#[derive(Debug)]
pub(crate) enum Next {
    Record(Rec),
    /// Nothing complete past the current position yet.
    Wait,
}

/// The segment being read.
struct Current {
    id: u32,
    path: PathBuf,
    file: Arc<dyn VFile>,
    /// `None` while the header was still being written when it was read.
    salt: Option<u32>,
    /// The segment's format version.
    version: u16,
    /// Where the next record starts.
    offset: u64,
    /// Bytes of the segment from `buf_at`.
    buf: Vec<u8>,
    buf_at: u64,
    /// The file's length when last asked (it only grows while read).
    known_len: u64,
    /// No record has been read from this segment yet.
    fresh: bool,
}

/// A place in the log to come back to: the reader's segment and offset,
/// and the last sequence number it consumed.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mark {
    segment: Option<u32>,
    offset: u64,
    last_seq: Option<u64>,
    fresh: bool,
}

/// A sequential reader of the writer's segments.
pub(crate) struct LogReader {
    dir: PathBuf,
    vfs: Arc<dyn Vfs>,
    cur: Option<Current>,
    /// The sequence number of the last record consumed, when known.
    last_seq: Option<u64>,
    /// Where the last record returned started (to read it again).
    before_last: Mark,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("dir", &self.dir)
            .field("segment", &self.cur.as_ref().map(|c| (c.id, c.offset)))
            .field("last_seq", &self.last_seq)
            .finish()
    }
}

/// A writer segment's header, read.
struct Opened {
    file: Arc<dyn VFile>,
    salt: Option<u32>,
    /// The segment's format version (which record flags it may hold).
    version: u16,
}

impl LogReader {
    /// A reader positioned nowhere yet (see `seek_*`).
    pub(crate) fn new(dir: &Path, vfs: Arc<dyn Vfs>) -> LogReader {
        LogReader {
            dir: dir.to_path_buf(),
            vfs,
            cur: None,
            last_seq: None,
            before_last: Mark {
                segment: None,
                offset: 0,
                last_seq: None,
                fresh: false,
            },
        }
    }

    /// A second reader at the same place, on the same open file (which
    /// compaction may have deleted by name meanwhile).
    pub(crate) fn fork(&self) -> LogReader {
        LogReader {
            dir: self.dir.clone(),
            vfs: self.vfs.clone(),
            cur: self.cur.as_ref().map(|c| Current {
                id: c.id,
                path: c.path.clone(),
                file: c.file.clone(),
                salt: c.salt,
                version: c.version,
                offset: c.offset,
                buf: Vec::new(),
                buf_at: 0,
                known_len: 0,
                fresh: c.fresh,
            }),
            last_seq: self.last_seq,
            before_last: self.before_last,
        }
    }

    /// Where the last record returned started: [`LogReader::reset`] to it
    /// reads it again. It is in the segment being read, so going back
    /// never reopens a file.
    pub(crate) fn before_last(&self) -> Mark {
        self.before_last
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The sequence number of the last record consumed, when known.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// Says the next record read must follow `seq` (nothing read yet).
    pub(crate) fn set_last_seq(&mut self, seq: u64) {
        self.last_seq = Some(seq);
    }

    /// The segment and offset the next record is read from.
    pub(crate) fn at(&self) -> Option<(u32, u64)> {
        self.cur.as_ref().map(|c| (c.id, c.offset))
    }

    /// Goes back to `m` (taken in the same segment or an earlier one that
    /// is still held or still exists).
    pub(crate) fn reset(&mut self, m: Mark) -> Result<()> {
        self.last_seq = m.last_seq;
        match (m.segment, &mut self.cur) {
            (Some(id), Some(c)) if c.id == id => {
                c.offset = m.offset;
                c.fresh = m.fresh;
            }
            (Some(id), _) => {
                self.open_at(id, m.offset)?;
                if let Some(c) = &mut self.cur {
                    c.fresh = m.fresh;
                }
            }
            (None, _) => self.cur = None,
        }
        Ok(())
    }

    /// The segment ids in the directory, in order.
    fn segment_ids(&self) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self
            .vfs
            .list(&self.dir)
            .map_err(|e| Error::Io(crate::fs::named(&self.dir, &e)))?
            .iter()
            .filter_map(|n| names::parse_file_name(n))
            .filter(|(_, s)| *s == names::SEGMENT_SUFFIX)
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// The writer segments in the directory, in id order.
    pub(crate) fn writer_segments(&self) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for id in self.segment_ids()? {
            if let Some(Some(_)) = self.open_segment(id)? {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The first writer segment above `id`.
    fn next_writer_after(&self, id: u32) -> Result<Option<u32>> {
        for s in self.segment_ids()?.into_iter().filter(|&s| s > id) {
            if let Some(Some(_)) = self.open_segment(s)? {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Opens segment `id`: `Ok(None)` when it is gone, `Ok(Some(None))`
    /// when compaction wrote it, `Ok(Some(Some(_)))` for a writer segment.
    /// A header that does not read whole is a segment being created: it
    /// counts as a writer segment with nothing in it yet.
    fn open_segment(&self, id: u32) -> Result<Option<Option<Opened>>> {
        let path = names::segment_path(&self.dir, id);
        let file = match self.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Io(crate::fs::named(&path, &e))),
        };
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        let n = read_some(&*file, &mut h, 0).map_err(|e| Error::Io(crate::fs::named(&path, &e)))?;
        if n < h.len() {
            return Ok(Some(Some(Opened {
                file,
                salt: None,
                version: FORMAT_VERSION,
            })));
        }
        match segment::header_info(&path, &h, id) {
            Ok(info) if info.compacted => Ok(Some(None)),
            Ok(info) => Ok(Some(Some(Opened {
                file,
                salt: Some(info.salt),
                version: info.version,
            }))),
            // A torn header with only zeros after it: a create in progress.
            Err(Error::Corruption { .. }) if h.iter().all(|&b| b == 0) => Ok(Some(Some(Opened {
                file,
                salt: None,
                version: FORMAT_VERSION,
            }))),
            Err(e) => Err(e),
        }
    }

    /// Makes writer segment `id` current, at `offset`.
    fn open_at(&mut self, id: u32, offset: u64) -> Result<()> {
        let Some(Some(o)) = self.open_segment(id)? else {
            return Err(self.lost(format!(
                "segment {id} was removed (compaction) while the feed read it"
            )));
        };
        self.cur = Some(Current {
            id,
            path: names::segment_path(&self.dir, id),
            file: o.file,
            salt: o.salt,
            version: o.version,
            offset,
            buf: Vec::new(),
            buf_at: 0,
            known_len: 0,
            fresh: offset <= SEGMENT_HEADER_LEN,
        });
        Ok(())
    }

    /// Starts at the beginning of writer segment `id`, with `last_seq`
    /// the sequence number just before it (when known).
    pub(crate) fn seek_segment_start(&mut self, id: u32, last_seq: Option<u64>) -> Result<()> {
        self.open_at(id, SEGMENT_HEADER_LEN)?;
        self.last_seq = last_seq;
        Ok(())
    }

    /// [`LogReader::seek_segment_start`], or `false` when the segment is
    /// gone (compaction deleted it since the directory was listed) or was
    /// not written by the writer.
    pub(crate) fn try_seek_segment_start(
        &mut self,
        id: u32,
        last_seq: Option<u64>,
    ) -> Result<bool> {
        if !matches!(self.open_segment(id)?, Some(Some(_))) {
            return Ok(false);
        }
        match self.seek_segment_start(id, last_seq) {
            Ok(()) => Ok(true),
            Err(Error::ChangesLost { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Starts at `offset` of writer segment `id` (a published end), right
    /// after the record numbered `last_seq`.
    pub(crate) fn seek_end(&mut self, id: u32, offset: u64, last_seq: u64) -> Result<()> {
        self.open_at(id, offset)?;
        if let Some(c) = &mut self.cur {
            c.fresh = false;
        }
        self.last_seq = Some(last_seq);
        Ok(())
    }

    /// The error for a position the log no longer (or never) had.
    pub(crate) fn lost(&self, reason: String) -> Error {
        Error::ChangesLost {
            dir: self.dir.clone(),
            position: self
                .last_seq
                .map_or("the start".into(), |s| format!("change {s}")),
            reason,
        }
    }

    /// Reads the next record (sync marks included), or says there is none
    /// complete yet. Checks sequence numbers as it goes.
    pub(crate) fn next(&mut self, limit: Limit) -> Result<Next> {
        loop {
            if self.cur.is_none() {
                match self.first_segment()? {
                    Some(id) => self.seek_segment_start(id, self.last_seq)?,
                    None => return Ok(Next::Wait),
                }
            }
            if let Some(r) = self.read_here(limit)? {
                return self.accept(r).map(Next::Record);
            }
            let Some(next) = self.next_segment(limit)? else {
                return self.caught_up(limit);
            };
            if matches!(limit, Limit::Files) {
                // The writer sealed this segment (fsynced, cut to its last
                // record) before it created the next: read what is left.
                if let Some(r) = self.read_here(limit)? {
                    return self.accept(r).map(Next::Record);
                }
            }
            let last = self.last_seq;
            self.seek_segment_start(next, last)?;
        }
    }

    /// At the published end, every change up to the published one has been
    /// read, unless the log lost some: compaction removed writer segments
    /// between this reader and the end.
    fn caught_up(&mut self, limit: Limit) -> Result<Next> {
        match (limit, self.last_seq) {
            (Limit::Published(e), Some(last)) if last < e.seq => Err(self.lost(format!(
                "changes {} to {} are no longer in the log (compaction removed them)",
                last + 1,
                e.seq
            ))),
            (Limit::Files, _) => {
                // Bytes read ahead of the writer are not kept while waiting.
                if let Some(c) = &mut self.cur {
                    c.buf.clear();
                }
                Ok(Next::Wait)
            }
            _ => Ok(Next::Wait),
        }
    }

    /// The writer segment after the current one, once the current one is
    /// complete.
    fn next_segment(&self, limit: Limit) -> Result<Option<u32>> {
        let Some(c) = &self.cur else { return Ok(None) };
        match limit {
            Limit::Published(e) if e.segment <= c.id => Ok(None),
            _ => self.next_writer_after(c.id),
        }
    }

    /// Reads every record there is now, then goes back to the begin
    /// record of a batch still open at the end (one being written, or one
    /// a crash left without its commit): the reader stops after the last
    /// whole unit. Returns the sequence number of that unit's last record.
    pub(crate) fn read_whole_units(&mut self, limit: Limit) -> Result<Option<u64>> {
        let mut open: Option<Mark> = None;
        let mut last_whole = self.last_seq;
        while let Next::Record(r) = self.next(limit)? {
            match r.kind {
                RecordKind::SyncMark => {}
                RecordKind::BatchBegin => open = Some(self.before_last),
                RecordKind::BatchCommit => {
                    open = None;
                    last_whole = Some(r.seq);
                }
                _ if open.is_some() => {}
                _ => last_whole = Some(r.seq),
            }
        }
        if let Some(m) = open {
            self.reset(m)?;
        }
        Ok(last_whole)
    }

    /// The oldest writer segment, if any.
    fn first_segment(&self) -> Result<Option<u32>> {
        Ok(self.writer_segments()?.first().copied())
    }

    /// Checks a record's sequence number against the last one and takes it.
    fn accept(&mut self, r: Rec) -> Result<Rec> {
        self.before_last = Mark {
            segment: self.cur.as_ref().map(|c| c.id),
            offset: r.at,
            last_seq: self.last_seq,
            fresh: self.cur.as_ref().is_some_and(|c| c.fresh),
        };
        if r.kind == RecordKind::SyncMark {
            return Ok(r); // not a change: no sequence number
        }
        if r.seq == 0 {
            let path = self
                .cur
                .as_ref()
                .map_or(self.dir.clone(), |c| c.path.clone());
            return Err(Error::corruption(
                path,
                r.at,
                "change feed: a change with sequence number 0",
            ));
        }
        let fresh = self.cur.as_ref().is_some_and(|c| c.fresh);
        if let Some(c) = &mut self.cur {
            c.fresh = false;
        }
        if let Some(last) = self.last_seq {
            if r.seq <= last {
                return Err(self.lost(format!(
                    "the log holds change {} after change {last}: it was rewritten after a crash \
                     that lost changes this feed had seen",
                    r.seq
                )));
            }
            if r.seq != last + 1 {
                let why = if fresh {
                    "compaction removed them, or a salvage open skipped damage"
                } else {
                    "a salvage open skipped damage in this segment, or a crash cut a batch that \
                     never committed before cairn stopped counting such batches"
                };
                return Err(self.lost(format!(
                    "changes {} to {} are not in the log ({why}); the next one there is {}",
                    last + 1,
                    r.seq - 1,
                    r.seq
                )));
            }
        }
        self.last_seq = Some(r.seq);
        Ok(r)
    }

    /// How far the current segment may be read, to read up to `need`:
    /// the file's length is asked again only when `need` is past it.
    fn readable_end(c: &mut Current, limit: Limit, need: u64) -> Result<u64> {
        match limit {
            Limit::Published(e) if e.segment == c.id => Ok(e.offset),
            Limit::Published(e) if e.segment < c.id => Ok(c.offset),
            _ => {
                if c.known_len < need {
                    c.known_len = c
                        .file
                        .len()
                        .map_err(|e| Error::Io(crate::fs::named(&c.path, &e)))?;
                }
                Ok(c.known_len)
            }
        }
    }

    /// The record at the current offset, if one is complete there.
    ///
    /// Without a published end, bytes read ahead earlier may predate the
    /// writer's append (zeros, half a record): anything but a record from
    /// them is checked again against fresh bytes.
    fn read_here(&mut self, limit: Limit) -> Result<Option<Rec>> {
        let buffered = self.cur.as_ref().is_some_and(|c| !c.buf.is_empty());
        match self.read_here_once(limit) {
            Ok(Some(r)) => Ok(Some(r)),
            first if buffered && matches!(limit, Limit::Files) => {
                if let Some(c) = &mut self.cur {
                    c.buf.clear();
                }
                drop(first);
                self.read_here_once(limit)
            }
            first => first,
        }
    }

    /// [`LogReader::read_here`] with the bytes buffered so far.
    fn read_here_once(&mut self, limit: Limit) -> Result<Option<Rec>> {
        let Some(c) = self.cur.as_mut() else {
            return Ok(None);
        };
        let at = c.offset;
        let end = Self::readable_end(c, limit, at + u64::from(RECORD_HEADER_LEN))?;
        if at + u64::from(RECORD_HEADER_LEN) > end {
            return Ok(None);
        }
        if c.salt.is_none() {
            // The header was still being written when the segment opened.
            let (id, fresh) = (c.id, c.fresh);
            self.open_at(id, at)?;
            if let Some(c) = &mut self.cur {
                c.fresh = fresh;
            }
        }
        let Some(c) = self.cur.as_mut() else {
            return Ok(None);
        };
        let Some(salt) = c.salt else { return Ok(None) };
        if !fill(c, at, u64::from(RECORD_HEADER_LEN), end)? {
            return Ok(None);
        }
        let rel = (at - c.buf_at) as usize;
        let len = match record::parse_header(&c.buf[rel..]) {
            Ok(h) => h.len(),
            Err(why) => return self.not_a_record(limit, why),
        };
        let end = Self::readable_end(c, limit, at + len)?;
        if at + len > end {
            return Ok(None);
        }
        if !fill(c, at, len, end)? {
            return Ok(None);
        }
        let rel = (at - c.buf_at) as usize;
        let bytes = &c.buf[rel..rel + len as usize];
        match record::decode(bytes, salt, at) {
            Decoded::Record(_) if c.version < 2 && bytes[5] & record::FLAGS_SINCE_V2 != 0 => {
                Err(Error::corruption(
                    c.path.clone(),
                    at,
                    "change feed: a record flag of format version 2 in a version-1 segment",
                ))
            }
            Decoded::Record(r) => {
                let rec = Rec {
                    kind: r.kind,
                    flags: bytes[5],
                    seq: r.seq,
                    crc: record::le_u32(bytes, 0),
                    expires_at_ms: r.expires_at_ms,
                    key: r.key.to_vec(),
                    value: r.value.to_vec(),
                    at,
                };
                c.offset = at + len;
                Ok(Some(rec))
            }
            Decoded::Truncated => Ok(None),
            Decoded::Invalid(why) => self.not_a_record(limit, why),
        }
    }

    /// Bytes at the offset that are not a record: a record being written
    /// (or the preallocated zeros after the last one) in the writer's
    /// segment of another process, or damage.
    fn not_a_record(&self, limit: Limit, why: &str) -> Result<Option<Rec>> {
        let Some(c) = &self.cur else { return Ok(None) };
        let published = matches!(limit, Limit::Published(e) if e.segment == c.id);
        if !published && !self.has_newer_writer_segment(c.id)? {
            return Ok(None);
        }
        if !published && why == "zero-filled tail" && self.ends_in_zeros(c)? {
            // A segment sealed right after a crash can end in zeros
            // recovery kept as space; nothing follows them.
            return Ok(None);
        }
        Err(Error::corruption(
            c.path.clone(),
            c.offset,
            format!("change feed: {why}"),
        ))
    }

    /// Whether everything from the current offset to the end is zeros.
    fn ends_in_zeros(&self, c: &Current) -> Result<bool> {
        let len = c
            .file
            .len()
            .map_err(|e| Error::Io(crate::fs::named(&c.path, &e)))?;
        let mut at = c.offset;
        let mut buf = vec![0u8; 64 * 1024];
        while at < len {
            let n = read_some(&*c.file, &mut buf, at)
                .map_err(|e| Error::Io(crate::fs::named(&c.path, &e)))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            at += n as u64;
        }
        Ok(true)
    }

    fn has_newer_writer_segment(&self, id: u32) -> Result<bool> {
        Ok(self.next_writer_after(id)?.is_some())
    }
}

/// Makes `c.buf` hold `len` bytes from segment offset `at` (reading up
/// to `end`). Returns `false` when the file holds fewer: a writer
/// recovering from a crash cut its tail, so nothing complete is there.
fn fill(c: &mut Current, at: u64, len: u64, end: u64) -> Result<bool> {
    let have = c.buf_at <= at && at + len <= c.buf_at + c.buf.len() as u64;
    if have {
        return Ok(true);
    }
    let want = (len as usize).max(CHUNK_BYTES).min((end - at) as usize);
    c.buf.resize(want, 0);
    let mut got = 0;
    while got < want {
        let n = read_some(&*c.file, &mut c.buf[got..], at + got as u64)
            .map_err(|e| Error::Io(crate::fs::named(&c.path, &e)))?;
        if n == 0 {
            break;
        }
        got += n;
    }
    c.buf.truncate(got);
    c.buf_at = at;
    Ok(got as u64 >= len)
}

/// One `read_at`, retried on interruption.
fn read_some(file: &dyn VFile, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    loop {
        match file.read_at(buf, at) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
