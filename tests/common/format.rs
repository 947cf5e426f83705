//! An independent oracle of cairn's on-disk format, written from the spec
//! in `docs/format.md` and nothing else: it never calls cairn's own
//! encoder or decoder, only the `crc32c` crate (and a bit-by-bit CRC-32C
//! of its own, [`crc32c_bitwise`]).
//!
//! It is the only encoder of the format outside `src/`: the integration
//! tests reach it as `common::format` (`tests/common/mod.rs`), and the fuzz
//! crate compiles this very file as `cairn_fuzz::format` (`fuzz/src/lib.rs`)
//! for its seeds and its checksum "fix-ups" (recomputing the checksums of
//! fuzzer-made bytes, so that mutations reach the logic behind the CRC
//! checks instead of dying at them). Record kinds are named here only
//! ([`kind`]).
//!
//! * Directory: [`seg_name`], [`hint_name`], [`seg_path`], [`hint_path`],
//!   [`MANIFEST_NAME`].
//! * Integers and checksums: [`le_u16`], [`le_u32`], [`le_u64`],
//!   [`try_le_u32`], [`crc32c`], [`crc32c_bitwise`], [`record_checksum`].
//! * Segment header: [`SegmentHeader`], [`segment_header`].
//! * Records: [`Record`] (encodes every kind), [`push_record`],
//!   [`RecordHeader`] (reads one), [`record_checksum_ok`],
//!   [`decode_record`] (validity by the spec), [`fix_record_checksums`].
//! * Hint files: [`HintEntry`], [`encode_hint`], [`fix_hint`].
//! * Compaction manifest: [`encode_manifest`], [`decode_manifest`],
//!   [`manifest_listed_ids`].

use std::path::{Path, PathBuf};

// ----- constants -------------------------------------------------------------

/// Segment header length.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 32;
/// Hint header length.
pub const HINT_HEADER_LEN: usize = 32;
/// Hint trailer length.
pub const HINT_TRAILER_LEN: usize = 24;

/// Magic of a segment header.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNSEG";
/// Magic of a hint header.
pub const HINT_MAGIC: [u8; 8] = *b"CAIRNHNT";
/// Magic at the very end of a hint file.
pub const HINT_END_MAGIC: [u8; 4] = *b"HEND";
/// Magic of a compaction manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"CAIRNCMP";

/// The segment format version cairn writes (2 added the record flags
/// [`RECORD_FLAG_EXPIRY_ONLY`] and [`RECORD_FLAG_EXPIRED`], 3
/// [`RECORD_FLAG_REPLACES`]).
pub const FORMAT_VERSION: u16 = 3;
/// The oldest segment format version cairn reads (1: no record flag but
/// [`RECORD_FLAG_BATCH`]).
pub const OLDEST_READ_VERSION: u16 = 1;
/// The hint format version.
pub const HINT_VERSION: u16 = 2;
/// Checksum algorithm id of CRC-32C.
pub const CHECKSUM_CRC32C: u8 = 1;

/// Segment header flag: written by compaction.
pub const SEGMENT_FLAG_COMPACTED: u8 = 0x01;
/// Record flag: a put or tombstone that is an operation of a batch.
pub const RECORD_FLAG_BATCH: u8 = 0x01;
/// Record flag (format version 2): a put that only changes the key's
/// expiry; alone or with [`RECORD_FLAG_BATCH`], on a put only.
pub const RECORD_FLAG_EXPIRY_ONLY: u8 = 0x02;
/// Record flag (format version 2): a tombstone written because the key's
/// expiry passed; alone, on a tombstone only.
pub const RECORD_FLAG_EXPIRED: u8 = 0x04;
/// Record flag (format version 3): the key had an index entry when this
/// put or tombstone was written; on any put or tombstone flag value.
pub const RECORD_FLAG_REPLACES: u8 = 0x08;

/// Longest key.
pub const MAX_KEY_LEN: u32 = 65_536;
/// Longest value.
pub const MAX_VALUE_LEN: u32 = 268_435_456;

/// File name of the compaction manifest.
pub const MANIFEST_NAME: &str = "COMPACTION";

/// Record kinds (byte 4 of a record).
pub mod kind {
    /// A put.
    pub const PUT: u8 = 1;
    /// A tombstone.
    pub const TOMBSTONE: u8 = 2;
    /// Batch begin.
    pub const BATCH_BEGIN: u8 = 3;
    /// Batch commit.
    pub const BATCH_COMMIT: u8 = 4;
    /// Sync mark.
    pub const SYNC_MARK: u8 = 5;

    /// Whether `k` is one of the kinds above.
    pub fn is_known(k: u8) -> bool {
        (PUT..=SYNC_MARK).contains(&k)
    }
}

// ----- the directory -----------------------------------------------------------

/// `NNNNNNNNNN.seg`.
pub fn seg_name(id: u32) -> String {
    format!("{id:010}.seg")
}

/// `NNNNNNNNNN.hint`.
pub fn hint_name(id: u32) -> String {
    format!("{id:010}.hint")
}

/// The path of segment `id` in `dir`.
pub fn seg_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(seg_name(id))
}

/// The path of the hint of segment `id` in `dir`.
pub fn hint_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(hint_name(id))
}

// ----- integers and checksums ----------------------------------------------------

/// Little-endian u16 at `at`; panics when out of range.
pub fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

/// Little-endian u32 at `at`; panics when out of range.
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Little-endian u64 at `at`; panics when out of range.
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Little-endian u32 at `at`, `None` when out of range (for fuzzer-made
/// bytes).
pub fn try_le_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// CRC-32C (Castagnoli), by the `crc32c` crate.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// CRC-32C computed bit by bit exactly as docs/format.md states it
/// (reflected polynomial `0x82F63B78`, initial value and final XOR
/// `0xFFFFFFFF`), independent of the `crc32c` crate that cairn uses too.
pub fn crc32c_bitwise(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A record's checksum: CRC-32C of the segment's salt (u32), the record's
/// offset in the segment (u64), then the record from its byte 4 to the end
/// of its value (`body`).
pub fn record_checksum(salt: u32, offset: u64, body: &[u8]) -> u32 {
    let mut prefix = [0u8; 12];
    prefix[..4].copy_from_slice(&salt.to_le_bytes());
    prefix[4..].copy_from_slice(&offset.to_le_bytes());
    crc32c::crc32c_append(crc32c(&prefix), body)
}

/// A deterministic salt for segment `id` in generated inputs.
pub fn salt_for(id: u32) -> u32 {
    0x5a17_0000 ^ id.wrapping_mul(0x9e37_79b9)
}

// ----- segment header ------------------------------------------------------------

/// The fields of a segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Bytes 0..8, [`SEGMENT_MAGIC`].
    pub magic: [u8; 8],
    /// Format version.
    pub version: u16,
    /// Checksum algorithm id.
    pub checksum_algorithm: u8,
    /// Flags ([`SEGMENT_FLAG_COMPACTED`]).
    pub flags: u8,
    /// The segment's salt.
    pub salt: u32,
    /// The segment id.
    pub id: u64,
    /// Reserved, 0.
    pub reserved: u32,
    /// The stored checksum (bytes 28..32); [`SegmentHeader::encode`]
    /// ignores it and writes the right one.
    pub checksum: u32,
}

impl SegmentHeader {
    /// A valid header (version [`FORMAT_VERSION`], CRC-32C, reserved 0)
    /// for segment `id`.
    pub fn new(id: u32, salt: u32, flags: u8) -> SegmentHeader {
        let mut h = SegmentHeader {
            magic: SEGMENT_MAGIC,
            version: FORMAT_VERSION,
            checksum_algorithm: CHECKSUM_CRC32C,
            flags,
            salt,
            id: u64::from(id),
            reserved: 0,
            checksum: 0,
        };
        h.checksum = le_u32(&h.encode(), 28);
        h
    }

    /// The 32 bytes, with the checksum of the other fields.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut h = [0u8; SEGMENT_HEADER_LEN];
        h[0..8].copy_from_slice(&self.magic);
        h[8..10].copy_from_slice(&self.version.to_le_bytes());
        h[10] = self.checksum_algorithm;
        h[11] = self.flags;
        h[12..16].copy_from_slice(&self.salt.to_le_bytes());
        h[16..24].copy_from_slice(&self.id.to_le_bytes());
        h[24..28].copy_from_slice(&self.reserved.to_le_bytes());
        let crc = crc32c(&h[0..28]);
        h[28..32].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The fields as stored at the start of `b` (unchecked); `None` when
    /// `b` is shorter than a header.
    pub fn read(b: &[u8]) -> Option<SegmentHeader> {
        (b.len() >= SEGMENT_HEADER_LEN).then(|| SegmentHeader {
            magic: b[0..8].try_into().expect("8 bytes"),
            version: le_u16(b, 8),
            checksum_algorithm: b[10],
            flags: b[11],
            salt: le_u32(b, 12),
            id: le_u64(b, 16),
            reserved: le_u32(b, 24),
            checksum: le_u32(b, 28),
        })
    }

    /// Whether the stored checksum of the header at the start of `b` is
    /// the CRC-32C of its first 28 bytes.
    pub fn checksum_ok(b: &[u8]) -> bool {
        b.len() >= SEGMENT_HEADER_LEN && le_u32(b, 28) == crc32c(&b[0..28])
    }
}

/// A valid segment header (version [`FORMAT_VERSION`]).
pub fn segment_header(id: u32, salt: u32, flags: u8) -> [u8; SEGMENT_HEADER_LEN] {
    SegmentHeader::new(id, salt, flags).encode()
}

// ----- records -------------------------------------------------------------------

/// A record to encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its kind ([`kind`]).
    pub kind: u8,
    /// Flags ([`RECORD_FLAG_BATCH`], [`RECORD_FLAG_EXPIRY_ONLY`],
    /// [`RECORD_FLAG_EXPIRED`]).
    pub flags: u8,
    /// Sequence number.
    pub seq: u64,
    /// Expiry, unix ms, 0 = never.
    pub expires: u64,
    /// The key.
    pub key: Vec<u8>,
    /// The value.
    pub value: Vec<u8>,
}

impl Record {
    /// A record of `kind` with no flags and no expiry.
    pub fn new(kind: u8, seq: u64, key: &[u8], value: &[u8]) -> Record {
        Record {
            kind,
            flags: 0,
            seq,
            expires: 0,
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    /// A put.
    pub fn put(seq: u64, key: &[u8], value: &[u8]) -> Record {
        Record::new(kind::PUT, seq, key, value)
    }

    /// A tombstone.
    pub fn tombstone(seq: u64, key: &[u8]) -> Record {
        Record::new(kind::TOMBSTONE, seq, key, b"")
    }

    /// A batch begin record of a batch of `count` operations.
    pub fn batch_begin(seq: u64, count: u32) -> Record {
        Record::new(kind::BATCH_BEGIN, seq, b"", &count.to_le_bytes())
    }

    /// A batch commit record of the batch begun by the record with
    /// sequence number `begin_seq`, of `count` operations.
    pub fn batch_commit(seq: u64, begin_seq: u64, count: u32) -> Record {
        let mut value = begin_seq.to_le_bytes().to_vec();
        value.extend_from_slice(&count.to_le_bytes());
        Record::new(kind::BATCH_COMMIT, seq, b"", &value)
    }

    /// A sync mark naming the durable length `durable`.
    pub fn sync_mark(durable: u64) -> Record {
        Record::new(kind::SYNC_MARK, 0, b"", &durable.to_le_bytes())
    }

    /// The same record, expiring at `at_ms` (unix ms).
    pub fn expiring(mut self, at_ms: u64) -> Record {
        self.expires = at_ms;
        self
    }

    /// The same record with the batch flag: an operation of a batch.
    pub fn in_batch(mut self) -> Record {
        self.flags |= RECORD_FLAG_BATCH;
        self
    }

    /// The same record with these flags.
    pub fn with_flags(mut self, flags: u8) -> Record {
        self.flags = flags;
        self
    }

    /// Its encoded length, `32 + K + V`.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// The record with `checksum` in its first 4 bytes.
    pub fn encode_with_checksum(&self, checksum: u32) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&checksum.to_le_bytes());
        b.push(self.kind);
        b.push(self.flags);
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.seq.to_le_bytes());
        b.extend_from_slice(&self.expires.to_le_bytes());
        b.extend_from_slice(&(self.key.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.value.len() as u32).to_le_bytes());
        b.extend_from_slice(&self.key);
        b.extend_from_slice(&self.value);
        b
    }

    /// The record as it is valid at `offset` of a segment with `salt`.
    pub fn encode(&self, salt: u32, offset: u64) -> Vec<u8> {
        let mut b = self.encode_with_checksum(0);
        let crc = record_checksum(salt, offset, &b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The record with a checksum over its bytes 4.. alone, as records were
    /// written before checksums were bound to their segment's salt and
    /// their offset: valid nowhere.
    pub fn encode_unbound(&self) -> Vec<u8> {
        let mut b = self.encode_with_checksum(0);
        let crc = crc32c(&b[4..]);
        b[0..4].copy_from_slice(&crc.to_le_bytes());
        b
    }
}

/// Appends `r` at offset `seg.len()` of a segment whose salt is `salt`
/// (`seg` holds the segment from its first byte).
pub fn push_record(seg: &mut Vec<u8>, salt: u32, r: &Record) {
    let offset = seg.len() as u64;
    seg.extend_from_slice(&r.encode(salt, offset));
}

/// The fields of a record header as stored (unchecked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Bytes 0..4.
    pub checksum: u32,
    /// Byte 4.
    pub kind: u8,
    /// Byte 5.
    pub flags: u8,
    /// Bytes 6..8.
    pub reserved: u16,
    /// Sequence number.
    pub seq: u64,
    /// Expiry, unix ms.
    pub expires: u64,
    /// Key length.
    pub key_len: u32,
    /// Value length.
    pub value_len: u32,
}

impl RecordHeader {
    /// The header at `at` of `b`; `None` when fewer than 32 bytes are left.
    pub fn read(b: &[u8], at: usize) -> Option<RecordHeader> {
        if at.checked_add(RECORD_HEADER_LEN)? > b.len() {
            return None;
        }
        Some(RecordHeader {
            checksum: le_u32(b, at),
            kind: b[at + 4],
            flags: b[at + 5],
            reserved: le_u16(b, at + 6),
            seq: le_u64(b, at + 8),
            expires: le_u64(b, at + 16),
            key_len: le_u32(b, at + 24),
            value_len: le_u32(b, at + 28),
        })
    }

    /// The length of the whole record, `32 + K + V`.
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.key_len) + u64::from(self.value_len)
    }
}

/// Whether the `len` bytes at `at` of segment `seg` (inside it) pass their
/// record checksum in a segment with `salt`.
pub fn record_checksum_ok(seg: &[u8], at: usize, len: usize, salt: u32) -> bool {
    le_u32(seg, at) == record_checksum(salt, at as u64, &seg[at + 4..at + len])
}

/// The header of the record at the start of `b`, which sits at `offset`
/// of a segment with `salt`, when the record is valid by docs/format.md:
/// a known kind, flags 0 (or, on a put: batch, expiry-only, or both; on a
/// tombstone: batch, or expired alone), reserved bytes 0, lengths within the limits and within `b`, and a
/// matching checksum.
pub fn decode_record(b: &[u8], salt: u32, offset: u64) -> Option<RecordHeader> {
    let h = RecordHeader::read(b, 0)?;
    let flags = h.flags & !RECORD_FLAG_REPLACES;
    let flags_ok = match h.kind {
        kind::PUT => [
            0,
            RECORD_FLAG_BATCH,
            RECORD_FLAG_EXPIRY_ONLY,
            RECORD_FLAG_EXPIRY_ONLY | RECORD_FLAG_BATCH,
        ]
        .contains(&flags),
        kind::TOMBSTONE => [0, RECORD_FLAG_BATCH, RECORD_FLAG_EXPIRED].contains(&flags),
        _ => h.flags == 0,
    };
    let lens_ok = h.key_len <= MAX_KEY_LEN && h.value_len <= MAX_VALUE_LEN;
    let len = h.record_len();
    if !(kind::is_known(h.kind) && flags_ok && h.reserved == 0 && lens_ok && len <= b.len() as u64)
    {
        return None;
    }
    (record_checksum(salt, offset, &b[4..len as usize]) == h.checksum).then_some(h)
}

/// Walks the records of a segment (from offset 32) and rewrites each
/// checksum to match, as long as the headers have a known kind and lengths
/// that fit in the file. Returns how many records were fixed.
pub fn fix_record_checksums(seg: &mut [u8]) -> usize {
    let Some(header) = SegmentHeader::read(seg) else {
        return 0;
    };
    let mut pos = SEGMENT_HEADER_LEN;
    let mut n = 0;
    while let Some(h) = RecordHeader::read(seg, pos) {
        if !kind::is_known(h.kind) {
            break;
        }
        let total = h.record_len();
        if total > (seg.len() - pos) as u64 {
            break;
        }
        let end = pos + total as usize;
        let crc = record_checksum(header.salt, pos as u64, &seg[pos + 4..end]);
        seg[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end;
        n += 1;
    }
    n
}

// ----- hint files ----------------------------------------------------------------

/// One hint entry.
#[derive(Clone, Debug)]
pub struct HintEntry {
    /// Sequence number.
    pub seq: u64,
    /// Expiry (unix ms, 0 = none).
    pub expires: u64,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// The key.
    pub key: Vec<u8>,
    /// Value length.
    pub value_len: u32,
    /// Kind: [`kind::PUT`] or [`kind::TOMBSTONE`].
    pub kind: u8,
}

fn put_varint(b: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        b.push((v as u8) | 0x80);
        v >>= 7;
    }
    b.push(v as u8);
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

/// Reads a LEB128 varint (at most 10 bytes); `None` past `end`.
fn get_varint(b: &[u8], at: &mut usize, end: usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        if *at >= end {
            return None;
        }
        let byte = b[*at];
        *at += 1;
        v |= u64::from(byte & 0x7f).checked_shl(7 * i).unwrap_or(0);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// The 32-byte hint header for segment `id`.
fn hint_header(id: u32, salt: u32, segment_len: u64) -> [u8; HINT_HEADER_LEN] {
    let mut h = [0u8; HINT_HEADER_LEN];
    h[0..8].copy_from_slice(&HINT_MAGIC);
    h[8..10].copy_from_slice(&HINT_VERSION.to_le_bytes());
    h[10] = CHECKSUM_CRC32C;
    h[11] = 0;
    h[12..16].copy_from_slice(&salt.to_le_bytes());
    h[16..24].copy_from_slice(&u64::from(id).to_le_bytes());
    h[24..32].copy_from_slice(&segment_len.to_le_bytes());
    h
}

/// Encodes a hint file (hint format version 2: varint entries, sequence
/// numbers and offsets as zigzag deltas from the previous entry's) for
/// segment `id` with `salt`, `segment_len` bytes long, with `max_seq` in
/// the trailer.
pub fn encode_hint(
    id: u32,
    salt: u32,
    segment_len: u64,
    max_seq: u64,
    entries: &[HintEntry],
) -> Vec<u8> {
    let mut b = hint_header(id, salt, segment_len).to_vec();
    let (mut seq, mut offset) = (0u64, 0u64);
    for e in entries {
        b.push(e.kind);
        put_varint(&mut b, zigzag(e.seq.wrapping_sub(seq) as i64));
        put_varint(&mut b, zigzag(e.offset.wrapping_sub(offset) as i64));
        put_varint(&mut b, e.expires);
        put_varint(&mut b, e.key.len() as u64);
        put_varint(&mut b, u64::from(e.value_len));
        b.extend_from_slice(&e.key);
        (seq, offset) = (e.seq, e.offset);
    }
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    b.extend_from_slice(&max_seq.to_le_bytes());
    let crc = crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(&HINT_END_MAGIC);
    b
}

/// Makes fuzzer-made hint bytes pass the header, trailer and checksum
/// checks for segment `id` (`salt`, `segment_len`): the header fields are
/// overwritten, the entry count is set when the entries parse exactly up to
/// the trailer, and the checksum and trailer magic are recomputed.
pub fn fix_hint(bytes: &mut Vec<u8>, id: u32, salt: u32, segment_len: u64) {
    if bytes.len() < HINT_HEADER_LEN + HINT_TRAILER_LEN {
        bytes.resize(HINT_HEADER_LEN + HINT_TRAILER_LEN, 0);
    }
    bytes[..HINT_HEADER_LEN].copy_from_slice(&hint_header(id, salt, segment_len));
    let t = bytes.len() - HINT_TRAILER_LEN;
    let mut at = HINT_HEADER_LEN;
    let mut count = 0u64;
    'entries: while at < t {
        at += 1; // kind
        let mut key_len = 0;
        for i in 0..5 {
            match get_varint(bytes, &mut at, t) {
                Some(v) if i == 3 => key_len = v,
                Some(_) => {}
                None => break 'entries,
            }
        }
        at = at.saturating_add(usize::try_from(key_len).unwrap_or(usize::MAX));
        count += 1;
    }
    if at == t {
        bytes[t..t + 8].copy_from_slice(&count.to_le_bytes());
    }
    let crc = crc32c(&bytes[..t + 16]);
    bytes[t + 16..t + 20].copy_from_slice(&crc.to_le_bytes());
    bytes[t + 20..].copy_from_slice(&HINT_END_MAGIC);
}

// ----- compaction manifest ---------------------------------------------------------

/// Encodes a compaction manifest naming `ids`.
pub fn encode_manifest(ids: &[u32]) -> Vec<u8> {
    let mut b = MANIFEST_MAGIC.to_vec();
    b.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        b.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The segment ids a manifest lists, read without checking its magic,
/// length or checksum; panics when it is shorter than its count says.
pub fn manifest_listed_ids(b: &[u8]) -> Vec<u32> {
    let n = le_u32(b, 8) as usize;
    (0..n).map(|i| le_u32(b, 12 + 4 * i)).collect()
}

/// The segment ids of a valid manifest, or what is wrong with it (its
/// magic, its length for its count, or its checksum).
pub fn decode_manifest(b: &[u8]) -> Result<Vec<u32>, String> {
    if b.get(..8) != Some(&MANIFEST_MAGIC[..]) {
        return Err("manifest magic".to_string());
    }
    let n = try_le_u32(b, 8).ok_or("manifest length")? as usize;
    if b.len() != 12 + 4 * n + 4 {
        return Err(format!("manifest length {} for {n} ids", b.len()));
    }
    if crc32c(&b[..b.len() - 4]) != le_u32(b, b.len() - 4) {
        return Err("manifest checksum".to_string());
    }
    Ok(manifest_listed_ids(b))
}
