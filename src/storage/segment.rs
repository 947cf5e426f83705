//! Reading records back from a segment file: sealed segments through a
//! memory map (or `pread`), the active one with `pread` and its tail cache.
//! The header format is in `format/segment.rs`.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{self, RECORD_HEADER_LEN};
use crate::format::segment;
use crate::fs::mmap::Map;
use crate::fs::{self, OpenMode, VFile, Vfs};
use crate::storage::tail_cache::TailCache;
use crate::util::rand::new_salt;

/// Creates segment `id`: header written, file and directory synced.
/// Returns the file and its salt.
pub(crate) fn create(vfs: &dyn Vfs, dir: &Path, id: u32) -> Result<(Arc<dyn VFile>, u32)> {
    let path = names::segment_path(dir, id);
    let salt = new_salt(id);
    let file = vfs.open(&path, OpenMode::CreateNew)?;
    fs::write_all_at(&*file, &segment::encode_header(id, salt), 0)?;
    file.sync_all()?;
    vfs.sync_dir(dir)?;
    Ok((file, salt))
}

/// `len` bytes at `offset` of `file`, or `None` when they cannot be read
/// (the caller then reads the record the careful way, which reports why).
fn read_at(file: &dyn VFile, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    crate::fs::read_exact_at(file, &mut buf, offset).ok()?;
    Some(buf)
}

/// Up to `len` bytes at `offset` of `file`: fewer at the end of the file,
/// `None` when they cannot be read.
fn read_up_to(file: &dyn VFile, offset: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    buf.truncate(got);
    Some(buf)
}

/// How many bytes past the key a read of a value asks for in its first
/// `pread`, since the index does not keep the value's length: a record
/// whose value is at most this long is read in one call.
const READ_AHEAD_BYTES: u64 = 512;

/// How a segment's bytes are read.
enum Source {
    /// A sealed segment, mapped.
    Mapped(Map),
    /// The active segment, or a sealed one with maps turned off.
    File(Arc<dyn VFile>),
    /// The active segment with a cache of its newest bytes.
    ActiveSegment(Arc<dyn VFile>, Arc<TailCache>),
}

/// A segment open for reading.
pub(crate) struct Segment {
    pub path: PathBuf,
    salt: u32,
    source: Source,
}

impl Segment {
    /// A segment read with `pread` through `file`.
    pub(crate) fn with_file(path: PathBuf, file: Arc<dyn VFile>, salt: u32) -> Segment {
        Segment {
            path,
            salt,
            source: Source::File(file),
        }
    }

    /// A sealed segment read through `map`.
    pub(crate) fn with_map(path: PathBuf, map: Map, salt: u32) -> Segment {
        Segment {
            path,
            salt,
            source: Source::Mapped(map),
        }
    }

    /// The active segment, read from `tail` when it holds the bytes and
    /// with `pread` otherwise.
    pub(crate) fn with_tail_cache(
        path: PathBuf,
        file: Arc<dyn VFile>,
        tail: Option<Arc<TailCache>>,
        salt: u32,
    ) -> Segment {
        let source = match tail {
            Some(t) => Source::ActiveSegment(file, t),
            None => Source::File(file),
        };
        Segment { path, salt, source }
    }

    /// A sealed segment: mapped when `use_mmap`, else read with `pread`.
    pub(crate) fn open_sealed(
        vfs: &dyn Vfs,
        dir: &Path,
        id: u32,
        use_mmap: bool,
        salt: u32,
    ) -> io::Result<Segment> {
        let path = names::segment_path(dir, id);
        let file = vfs.open(&path, OpenMode::Read)?;
        let source = match file.as_std() {
            Some(f) if use_mmap && file.len()? > 0 => Source::Mapped(Map::sealed_segment(f)?),
            _ => Source::File(file),
        };
        Ok(Segment { path, salt, source })
    }

    /// The whole segment's bytes: the map of a sealed segment (no copy),
    /// or else the file read into memory through `vfs`.
    pub(crate) fn all_bytes(&self, vfs: &dyn Vfs) -> io::Result<Cow<'_, [u8]>> {
        match &self.source {
            Source::Mapped(m) => Ok(Cow::Borrowed(m.bytes())),
            _ => vfs.read(&self.path).map(Cow::Owned),
        }
    }

    /// Lets the pages of a mapped segment that a full scan made resident go
    /// (see `Map::release_resident`); nothing for a segment read with pread.
    pub(crate) fn release_resident(&self) {
        if let Source::Mapped(m) = &self.source {
            m.release_resident();
        }
    }

    /// The whole segment's bytes, read through the file this reader holds
    /// (never by name: the file may have been deleted since it was opened).
    pub(crate) fn read_all(&self) -> io::Result<Vec<u8>> {
        match &self.source {
            Source::Mapped(m) => Ok(m.bytes().to_vec()),
            Source::File(f) | Source::ActiveSegment(f, _) => fs::read_to_end(&**f),
        }
    }

    /// Reads the record at `offset`, checks it is a put of `key`, verifies
    /// its checksum, and returns the value.
    ///
    /// # Errors
    /// The record is damaged, is another key's, or cannot be read.
    pub(crate) fn read_value(&self, offset: u64, key: &[u8]) -> Result<Vec<u8>> {
        self.read_value_if_key(offset, key)?
            .ok_or_else(|| self.corrupt(offset, "record does not match its index entry"))
    }

    /// The header of the record at `offset` if it is a put of `key`; `None`
    /// if it is another key's. The index uses it to tell keys apart, since
    /// it keeps only part of their hash. A matching header and key are
    /// enough to say yes (a read checks the whole record); a no is only
    /// given for a record whose checksum holds, so that damage is reported
    /// as damage, never as another key.
    ///
    /// # Errors
    /// The record is damaged, cannot be read, or runs past the end of the
    /// segment.
    pub(crate) fn holds_key(&self, offset: u64, key: &[u8]) -> Result<Option<record::Header>> {
        let head_len = u64::from(RECORD_HEADER_LEN);
        let head = self.with_bytes(offset, head_len, |b| {
            record::parse_header(b)
                .ok()
                .filter(|h| h.kind == record::RecordKind::Put && h.key_len as usize == key.len())
        })?;
        if let Some(h) = head {
            if self.with_bytes(offset, head_len + key.len() as u64, |b| {
                b[RECORD_HEADER_LEN as usize..] == *key
            })? {
                return Ok(Some(h));
            }
        }
        self.with_record(offset, |_| None)
    }

    /// Calls `f` with the key of the put at `offset`, after checking the
    /// whole record against its checksum.
    ///
    /// # Errors
    /// The record is damaged, is not a put, or cannot be read.
    pub(crate) fn with_key<R>(&self, offset: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        self.with_put(offset, |r| f(r.key))
    }

    /// Calls `f` with the put at `offset`, after checking the whole record
    /// against its checksum.
    ///
    /// # Errors
    /// The record is damaged, is not a put, or cannot be read.
    pub(crate) fn with_put<R>(
        &self,
        offset: u64,
        f: impl FnOnce(&record::RecordRef<'_>) -> R,
    ) -> Result<R> {
        let r = self.with_record(offset, |r| {
            (r.kind == record::RecordKind::Put).then(|| f(r))
        })?;
        r.ok_or_else(|| self.corrupt(offset, "the index points at a record that is not a put"))
    }

    /// Calls `f` with the record at `offset`, checked against its checksum.
    ///
    /// # Errors
    /// The record is damaged, cannot be read, or runs past the end of the
    /// segment.
    fn with_record<R>(
        &self,
        offset: u64,
        f: impl FnOnce(&record::RecordRef<'_>) -> R,
    ) -> Result<R> {
        let head_len = u64::from(RECORD_HEADER_LEN);
        let total = self
            .with_bytes(offset, head_len, |b| {
                record::parse_header(b).map(|h| h.len())
            })?
            .map_err(|why| self.corrupt(offset, why))?;
        let decoded = self.with_bytes(offset, total, |b| {
            match record::decode(b, self.salt, offset) {
                record::Decoded::Record(r) => Ok(f(&r)),
                record::Decoded::Truncated => Err("record is truncated"),
                record::Decoded::Invalid(why) => Err(why),
            }
        })?;
        decoded.map_err(|why| self.corrupt(offset, why))
    }

    /// Calls `f` with the `len` bytes at `offset`: from the map, the tail
    /// cache, or read with `pread`.
    fn with_bytes<R>(&self, offset: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        match &self.source {
            Source::Mapped(map) => {
                let bytes = map.bytes();
                let end = offset
                    .checked_add(len)
                    .filter(|&e| e <= bytes.len() as u64)
                    .ok_or_else(|| {
                        self.corrupt(offset, "record runs past the end of the segment")
                    })?;
                Ok(f(&bytes[offset as usize..end as usize]))
            }
            Source::File(file) | Source::ActiveSegment(file, _) => {
                let mut f = Some(f);
                if let Source::ActiveSegment(_, tail) = &self.source {
                    if let Some(Some(r)) = tail.with_bytes(offset, len, |b| f.take().map(|f| f(b)))
                    {
                        return Ok(r);
                    }
                }
                let mut buf = vec![0u8; len as usize];
                crate::fs::read_exact_at(&**file, &mut buf, offset).map_err(|e| {
                    if e.kind() == io::ErrorKind::UnexpectedEof {
                        self.corrupt(offset, "record runs past the end of the segment")
                    } else {
                        let at = format!("{} at offset {offset}: {e}", self.path.display());
                        Error::Io(io::Error::new(e.kind(), at))
                    }
                })?;
                match f.take() {
                    Some(f) => Ok(f(&buf)),
                    None => Err(self.corrupt(offset, "record read twice")),
                }
            }
        }
    }

    /// The value of the put at `offset` if it is `key`'s, its checksum
    /// verified; `None` when the record is another key's (the index found
    /// it by part of the key's hash).
    ///
    /// # Errors
    /// The record is `key`'s but damaged, or cannot be read.
    pub(crate) fn read_value_if_key(&self, offset: u64, key: &[u8]) -> Result<Option<Vec<u8>>> {
        // The usual case, in one look at the record: its header gives the
        // value's length (the index does not keep it), and the value is
        // copied while the key is compared, so that the record's cache
        // misses are not behind the comparison (docs/design.md, "The
        // keydir").
        let looked = match &self.source {
            Source::Mapped(map) => usize::try_from(offset)
                .ok()
                .and_then(|at| map.bytes().get(at..))
                .and_then(|rec| self.quick_value(rec, offset, key)),
            Source::ActiveSegment(file, tail) => {
                let head_len = u64::from(RECORD_HEADER_LEN);
                tail.with_bytes(offset, head_len, |b| record::parse_header(b).ok())
                    .flatten()
                    .and_then(|h| {
                        tail.with_bytes(offset, h.len(), |rec| self.quick_value(rec, offset, key))
                    })
                    .flatten()
                    .or_else(|| self.quick_pread(&**file, offset, key))
            }
            Source::File(file) => self.quick_pread(&**file, offset, key),
        };
        if let Some(found) = looked {
            return found.map(Some);
        }
        // Another key's record, a damaged one, or one past what was read:
        // the careful way, which tells them apart.
        if self.holds_key(offset, key)?.is_none() {
            return Ok(None);
        }
        self.with_record(offset, |r| {
            (r.kind == record::RecordKind::Put && r.key == key).then(|| r.value.to_vec())
        })?
        .map(Some)
        .ok_or_else(|| self.corrupt(offset, "record does not match its index entry"))
    }

    /// The quick look of [`Segment::read_value_if_key`] at `rec`, which
    /// starts with the record at `offset` and may run on past it: the
    /// value when the record is a put of `key` whose checksum holds, an
    /// error when it is `key`'s but damaged, and `None` when it is not
    /// `key`'s, or `rec` does not hold it whole, or its header is damaged
    /// (the careful way then says which).
    #[inline]
    fn quick_value(&self, rec: &[u8], offset: u64, key: &[u8]) -> Option<Result<Vec<u8>>> {
        let head = RECORD_HEADER_LEN as usize;
        let start = head + key.len();
        let h = record::parse_header(rec).ok()?;
        let rec = rec.get(..usize::try_from(h.len()).ok()?)?;
        let value = rec.get(start..)?.to_vec();
        let is_key = h.kind == record::RecordKind::Put
            && h.key_len as usize == key.len()
            && rec[head..start] == *key;
        is_key.then(|| self.check(rec, offset, key).map(|()| value))
    }

    /// [`Segment::quick_value`] of what one `pread` at `offset` gets: the
    /// header, the key and [`READ_AHEAD_BYTES`] more, so that a record
    /// with a value up to that long takes one call (a longer one, a
    /// second).
    fn quick_pread(&self, file: &dyn VFile, offset: u64, key: &[u8]) -> Option<Result<Vec<u8>>> {
        let want = u64::from(RECORD_HEADER_LEN) + key.len() as u64 + READ_AHEAD_BYTES;
        let first = read_up_to(file, offset, want)?;
        // Another key's record (or a damaged header) is not read further
        // here: the careful way says which.
        let total = record::parse_header(&first)
            .ok()
            .filter(|h| h.kind == record::RecordKind::Put && h.key_len as usize == key.len())?
            .len();
        if total <= first.len() as u64 {
            return self.quick_value(&first, offset, key);
        }
        read_at(file, offset, total).and_then(|rec| self.quick_value(&rec, offset, key))
    }

    fn check(&self, rec: &[u8], offset: u64, key: &[u8]) -> Result<()> {
        match record::decode(rec, self.salt, offset) {
            record::Decoded::Record(r) => {
                if r.kind != record::RecordKind::Put || r.key != key {
                    return Err(self.corrupt(offset, "record does not match its index entry"));
                }
                Ok(())
            }
            record::Decoded::Truncated => Err(self.corrupt(offset, "record is truncated")),
            record::Decoded::Invalid(why) => Err(self.corrupt(offset, why)),
        }
    }

    fn corrupt(&self, offset: u64, why: &str) -> Error {
        Error::corruption(&self.path, offset, why)
    }
}
