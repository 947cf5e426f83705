//! The record encoding: hand-written, fixed-width, little-endian.
//!
//! Every field has an explicit width (`u8`, `u16`, `u32`, `u64`) and is
//! written with `to_le_bytes`; nothing here depends on the host's
//! endianness or pointer width. `docs/format.md` is the byte-for-byte
//! specification of what this module reads and writes.
//!
//! ```text
//! offset size field
//!  0     4    crc32c of: the segment's salt (u32 LE), this record's offset
//!             in the segment (u64 LE), then bytes 4 .. 32 + key_len + value_len
//!  4     1    kind (1 put, 2 tombstone, 3 batch begin, 4 batch commit,
//!             5 sync mark)
//!  5     1    flags (bit 0: the put or tombstone belongs to a batch;
//!             bit 1: a put that only changes the key's expiry; bit 2: a
//!             tombstone written because the key's expiry passed; bit 3:
//!             the key had an index entry when this put or tombstone was
//!             written)
//!  6     2    reserved (0)
//!  8     8    sequence number
//! 16     8    expiry, absolute unix milliseconds (0 = none)
//! 24     4    key length
//! 28     4    value length
//! 32     ..   key bytes, then value bytes
//! ```

use crate::error::{Error, Result};

/// Sequence numbers at or above this are damage: a store would need 2^63
/// writes to reach it, and the headroom means the writer's `next_seq + n`
/// can never overflow.
pub(crate) const MAX_SEQ: u64 = 1 << 63;

/// Flag bit: this put or tombstone is an operation of an atomic batch.
pub(crate) const FLAG_BATCH: u8 = 0x01;

/// Flag bit (format version 2): this put only changes the key's expiry
/// (`Db::expire`, `Db::persist`); its value is the value the key already
/// had. Only on a put, alone or with [`FLAG_BATCH`].
pub(crate) const FLAG_EXPIRY_ONLY: u8 = 0x02;

/// Flag bit (format version 2): this tombstone was written because the
/// key's expiry passed (the expiry sweep), not by a delete. Only on a
/// tombstone, alone.
pub(crate) const FLAG_EXPIRED: u8 = 0x04;

/// The record flags that format version 2 added: a version-1 segment never
/// holds them.
pub(crate) const FLAGS_SINCE_V2: u8 = FLAG_EXPIRY_ONLY | FLAG_EXPIRED;

/// Flag bit (format version 3): when this put or tombstone was written,
/// the key had an entry in the index (live or expired), which this record
/// replaced or removed. Replaying the log after an index checkpoint finds
/// a key's slot by it without reading any older record
/// (`recovery/replay.rs`).
pub(crate) const FLAG_REPLACES: u8 = 0x08;

/// Whether a record of `kind` may carry `flags`: exactly the combinations
/// cairn writes (see `docs/format.md`).
pub(crate) fn flags_allowed(kind: RecordKind, flags: u8) -> bool {
    match kind {
        RecordKind::Put => flags & !(FLAG_BATCH | FLAG_EXPIRY_ONLY | FLAG_REPLACES) == 0,
        RecordKind::Tombstone => matches!(flags & !FLAG_REPLACES, 0 | FLAG_BATCH | FLAG_EXPIRED),
        RecordKind::BatchBegin | RecordKind::BatchCommit | RecordKind::SyncMark => flags == 0,
    }
}

/// Length of the fixed record header.
pub(crate) const RECORD_HEADER_LEN: u32 = 32;

/// Largest key cairn stores, in bytes (64 KiB).
pub const MAX_KEY_BYTES: u32 = 64 * 1024;
/// Largest value cairn stores, in bytes (256 MiB).
pub const MAX_VALUE_BYTES: u32 = 256 * 1024 * 1024;

/// What a record in a segment is: its kind byte (see `docs/format.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// A value for a key.
    Put = 1,
    /// A deletion marker.
    Tombstone = 2,
    /// Starts an atomic batch; the value holds the number of operations (u32 LE).
    BatchBegin = 3,
    /// Ends an atomic batch; the value holds the begin record's sequence
    /// number (u64 LE) and the number of operations (u32 LE).
    BatchCommit = 4,
    /// A sync mark: the value holds how many bytes of the segment were
    /// durable (fsynced) when it was written (u64 LE). Key empty, sequence
    /// number 0. Recovery treats damage before that point as corruption and
    /// damage after it as an unsynced tail.
    SyncMark = 5,
}

impl RecordKind {
    /// A short lowercase name: `put`, `tombstone`, `batch-begin`,
    /// `batch-commit`, `sync-mark`.
    ///
    /// ```
    /// assert_eq!(cairn::RecordKind::Tombstone.name(), "tombstone");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Put => "put",
            RecordKind::Tombstone => "tombstone",
            RecordKind::BatchBegin => "batch-begin",
            RecordKind::BatchCommit => "batch-commit",
            RecordKind::SyncMark => "sync-mark",
        }
    }

    pub(crate) fn from_u8(b: u8) -> Option<RecordKind> {
        match b {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Tombstone),
            3 => Some(RecordKind::BatchBegin),
            4 => Some(RecordKind::BatchCommit),
            5 => Some(RecordKind::SyncMark),
            _ => None,
        }
    }

    /// The kind named by the kind byte of the record header at the start of
    /// `b`, if it names one: a cheap check before a full decode.
    pub(crate) fn peek(b: &[u8]) -> Option<RecordKind> {
        b.get(4).copied().and_then(RecordKind::from_u8)
    }
}

/// A decoded record borrowing from the buffer it was read from.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordRef<'a> {
    pub kind: RecordKind,
    pub seq: u64,
    pub expires_at_ms: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
    /// The record is an operation of an atomic batch.
    pub in_batch: bool,
    /// A put that only changes the key's expiry ([`FLAG_EXPIRY_ONLY`]).
    pub expiry_only: bool,
    /// A tombstone written because the key expired ([`FLAG_EXPIRED`]).
    pub expired: bool,
    /// The key had an index entry when this was written ([`FLAG_REPLACES`]).
    pub replaces: bool,
    /// Total encoded length (header + key + value).
    pub len: u64,
}

impl RecordRef<'_> {
    /// Whether the record carries a flag of format version 2
    /// ([`FLAGS_SINCE_V2`]), which a version-1 segment never holds.
    pub(crate) fn has_flags_since_v2(&self) -> bool {
        self.expiry_only || self.expired
    }
}

/// Sets [`FLAG_REPLACES`] in the encoded put or tombstone at the start of
/// `rec` (a whole record, as [`encode_into`] wrote it for `offset` in a
/// segment salted `salt`) and updates its checksum.
pub(crate) fn mark_replaces(rec: &mut [u8], salt: u32, offset: u64) {
    rec[5] |= FLAG_REPLACES;
    let crc = checksum(salt, offset, &rec[4..]);
    rec[..4].copy_from_slice(&crc.to_le_bytes());
}

/// The outcome of decoding the bytes at some offset.
#[derive(Debug)]
pub(crate) enum Decoded<'a> {
    /// A complete record whose checksum matches.
    Record(RecordRef<'a>),
    /// The header is plausible but the record runs past the end of the data:
    /// a partial write, if it is at the end of a log.
    Truncated,
    /// The bytes are not a valid record.
    Invalid(&'static str),
}

/// The checksum of a record: CRC-32C over the segment's salt, the record's
/// offset in the segment, and the record from its kind byte to the end.
///
/// Binding the salt and the offset into the checksum means that a record's
/// bytes are only valid where they were written: a record image stored
/// inside a value, copied to another offset, or taken from another segment
/// never checks out, so recovery cannot mistake it for a real record.
#[inline]
pub(crate) fn checksum(salt: u32, offset: u64, body: &[u8]) -> u32 {
    let mut prefix = [0u8; 12];
    prefix[..4].copy_from_slice(&salt.to_le_bytes());
    prefix[4..].copy_from_slice(&offset.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&prefix), body)
}

/// Encoded length of a record with these key and value lengths.
#[inline]
pub(crate) fn encoded_len(key_len: u32, value_len: u32) -> u64 {
    u64::from(RECORD_HEADER_LEN) + u64::from(key_len) + u64::from(value_len)
}

/// Appends one encoded record to `buf`; the record will be stored at
/// `offset` in a segment whose salt is `salt`.
///
/// The caller has checked the key and value against the limits, so their
/// lengths fit in a `u32`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn encode_into(
    buf: &mut Vec<u8>,
    salt: u32,
    offset: u64,
    kind: RecordKind,
    flags: u8,
    seq: u64,
    expires_at_ms: u64,
    key: &[u8],
    value: &[u8],
) {
    let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let value_len = u32::try_from(value.len()).unwrap_or(u32::MAX);
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]); // crc, filled in below
    buf.push(kind as u8);
    buf.push(flags);
    buf.extend_from_slice(&0u16.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&expires_at_ms.to_le_bytes());
    buf.extend_from_slice(&key_len.to_le_bytes());
    buf.extend_from_slice(&value_len.to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = checksum(salt, offset, &buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

#[inline]
fn le_u16(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

#[inline]
pub(crate) fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

#[inline]
pub(crate) fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The parsed fixed header, before the checksum has been verified.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Header {
    pub crc: u32,
    pub kind: RecordKind,
    pub flags: u8,
    pub seq: u64,
    pub expires_at_ms: u64,
    pub key_len: u32,
    pub value_len: u32,
}

impl Header {
    pub(crate) fn len(&self) -> u64 {
        encoded_len(self.key_len, self.value_len)
    }
}

/// Parses and bounds-checks a record header. Lengths are untrusted until the
/// checksum has been verified, so they are only compared with the limits
/// here, never used to allocate.
pub(crate) fn parse_header(b: &[u8]) -> Result<Header, &'static str> {
    if b.len() < RECORD_HEADER_LEN as usize {
        return Err("short header");
    }
    let kind = RecordKind::from_u8(b[4]).ok_or("unknown record kind")?;
    let flags = b[5];
    if !flags_allowed(kind, flags) || le_u16(b, 6) != 0 {
        return Err("reserved header bits set");
    }
    let key_len = le_u32(b, 24);
    let value_len = le_u32(b, 28);
    if key_len > MAX_KEY_BYTES {
        return Err("key length above the limit");
    }
    if value_len > MAX_VALUE_BYTES {
        return Err("value length above the limit");
    }
    Ok(Header {
        crc: le_u32(b, 0),
        kind,
        flags,
        seq: le_u64(b, 8),
        expires_at_ms: le_u64(b, 16),
        key_len,
        value_len,
    })
}

/// Decodes the record at the start of `b`, which lies at `offset` in a
/// segment whose salt is `salt`, verifying its checksum.
pub(crate) fn decode(b: &[u8], salt: u32, offset: u64) -> Decoded<'_> {
    if b.len() < RECORD_HEADER_LEN as usize {
        // A partial header: only an all-zero or empty remainder is a clean
        // end; anything else is a torn write. Both are "not a record".
        return if b.iter().all(|&x| x == 0) {
            Decoded::Invalid("zero-filled tail")
        } else {
            Decoded::Truncated
        };
    }
    let h = match parse_header(b) {
        Ok(h) => h,
        Err(why) => return Decoded::Invalid(why),
    };
    let total = h.len();
    if total > b.len() as u64 {
        return Decoded::Truncated;
    }
    let end = total as usize;
    if checksum(salt, offset, &b[4..end]) != h.crc {
        return Decoded::Invalid("checksum mismatch");
    }
    let key_end = RECORD_HEADER_LEN as usize + h.key_len as usize;
    Decoded::Record(RecordRef {
        kind: h.kind,
        seq: h.seq,
        expires_at_ms: h.expires_at_ms,
        key: &b[RECORD_HEADER_LEN as usize..key_end],
        value: &b[key_end..end],
        in_batch: h.flags & FLAG_BATCH != 0,
        expiry_only: h.flags & FLAG_EXPIRY_ONLY != 0,
        expired: h.flags & FLAG_EXPIRED != 0,
        replaces: h.flags & FLAG_REPLACES != 0,
        len: total,
    })
}

/// Checks a key against [`MAX_KEY_BYTES`].
pub(crate) fn check_key(key: &[u8]) -> Result<()> {
    if key.len() > MAX_KEY_BYTES as usize {
        return Err(Error::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_BYTES as usize,
        });
    }
    Ok(())
}

/// Checks a value against [`MAX_VALUE_BYTES`].
pub(crate) fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_BYTES as usize {
        return Err(Error::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_BYTES as usize,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: u32 = 0x5eed_1234;
    const AT: u64 = 32;

    fn one(kind: RecordKind, seq: u64, exp: u64, k: &[u8], v: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        encode_into(&mut b, SALT, AT, kind, 0, seq, exp, k, v);
        b
    }

    fn decode(b: &[u8]) -> Decoded<'_> {
        super::decode(b, SALT, AT)
    }

    #[test]
    fn a_record_is_only_valid_where_it_was_written() {
        let b = one(RecordKind::Put, 7, 0, b"key", b"value");
        assert!(matches!(super::decode(&b, SALT, AT), Decoded::Record(_)));
        assert!(matches!(
            super::decode(&b, SALT, AT + 1),
            Decoded::Invalid(_)
        ));
        assert!(matches!(
            super::decode(&b, SALT ^ 1, AT),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn round_trip() {
        let b = one(RecordKind::Put, 7, 1234, b"key", b"value");
        assert_eq!(b.len() as u64, encoded_len(3, 5));
        match decode(&b) {
            Decoded::Record(r) => {
                assert_eq!(r.kind, RecordKind::Put);
                assert_eq!(r.seq, 7);
                assert_eq!(r.expires_at_ms, 1234);
                assert_eq!(r.key, b"key");
                assert_eq!(r.value, b"value");
                assert_eq!(r.len, b.len() as u64);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn empty_key_and_value_round_trip() {
        let b = one(RecordKind::Put, 1, 0, b"", b"");
        assert!(matches!(decode(&b), Decoded::Record(r) if r.key.is_empty() && r.value.is_empty()));
    }

    #[test]
    fn zeros_never_decode() {
        for n in [0usize, 1, 31, 32, 33, 4096] {
            let z = vec![0u8; n];
            assert!(!matches!(decode(&z), Decoded::Record(_)), "{n}");
        }
    }

    #[test]
    fn every_truncation_is_not_a_record() {
        let b = one(RecordKind::Put, 9, 0, b"abc", b"defgh");
        for cut in 0..b.len() {
            assert!(
                !matches!(decode(&b[..cut]), Decoded::Record(_)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let b = one(RecordKind::Put, 9, 5, b"abc", b"defgh");
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut c = b.clone();
                c[i] ^= 1 << bit;
                assert!(
                    !matches!(decode(&c), Decoded::Record(_)),
                    "byte {i} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn lengths_are_bounded_before_use() {
        let mut b = one(RecordKind::Put, 1, 0, b"k", b"v");
        b[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&b), Decoded::Invalid(_)));
    }

    fn flagged(kind: RecordKind, flags: u8) -> Vec<u8> {
        let mut b = Vec::new();
        encode_into(&mut b, SALT, AT, kind, flags, 3, 0, b"k", b"");
        b
    }

    #[test]
    fn expiry_flags_round_trip() {
        let cases = [
            (RecordKind::Put, FLAG_EXPIRY_ONLY, false, true, false),
            (
                RecordKind::Put,
                FLAG_EXPIRY_ONLY | FLAG_BATCH,
                true,
                true,
                false,
            ),
            (RecordKind::Tombstone, FLAG_EXPIRED, false, false, true),
            (RecordKind::Put, FLAG_BATCH, true, false, false),
            (RecordKind::Tombstone, 0, false, false, false),
        ];
        for (kind, flags, in_batch, expiry_only, expired) in cases {
            match decode(&flagged(kind, flags)) {
                Decoded::Record(r) => {
                    assert_eq!(r.kind, kind);
                    assert_eq!(
                        (r.in_batch, r.expiry_only, r.expired),
                        (in_batch, expiry_only, expired),
                        "{kind:?} {flags:#04x}"
                    );
                }
                other => panic!("{kind:?} {flags:#04x}: {other:?}"),
            }
        }
    }

    #[test]
    fn only_the_written_flag_combinations_decode() {
        let kinds = [
            RecordKind::Put,
            RecordKind::Tombstone,
            RecordKind::BatchBegin,
            RecordKind::BatchCommit,
            RecordKind::SyncMark,
        ];
        let mut accepted = Vec::new();
        for kind in kinds {
            for flags in 0..=u8::MAX {
                if matches!(decode(&flagged(kind, flags)), Decoded::Record(_)) {
                    accepted.push((kind, flags));
                }
            }
        }
        let r = FLAG_REPLACES;
        let expected = vec![
            (RecordKind::Put, 0),
            (RecordKind::Put, FLAG_BATCH),
            (RecordKind::Put, FLAG_EXPIRY_ONLY),
            (RecordKind::Put, FLAG_EXPIRY_ONLY | FLAG_BATCH),
            (RecordKind::Put, r),
            (RecordKind::Put, r | FLAG_BATCH),
            (RecordKind::Put, r | FLAG_EXPIRY_ONLY),
            (RecordKind::Put, r | FLAG_EXPIRY_ONLY | FLAG_BATCH),
            (RecordKind::Tombstone, 0),
            (RecordKind::Tombstone, FLAG_BATCH),
            (RecordKind::Tombstone, FLAG_EXPIRED),
            (RecordKind::Tombstone, r),
            (RecordKind::Tombstone, r | FLAG_BATCH),
            (RecordKind::Tombstone, r | FLAG_EXPIRED),
            (RecordKind::BatchBegin, 0),
            (RecordKind::BatchCommit, 0),
            (RecordKind::SyncMark, 0),
        ];
        assert_eq!(accepted, expected);
        // Refused: an expired tombstone in a batch, expiry-only on a
        // tombstone, expired on a put, both at once.
        for (kind, flags) in [
            (RecordKind::Tombstone, FLAG_EXPIRED | FLAG_BATCH),
            (RecordKind::Tombstone, FLAG_EXPIRY_ONLY),
            (RecordKind::Put, FLAG_EXPIRED),
            (RecordKind::Put, FLAG_EXPIRED | FLAG_EXPIRY_ONLY),
        ] {
            assert!(
                matches!(decode(&flagged(kind, flags)), Decoded::Invalid(_)),
                "{kind:?} {flags:#04x}"
            );
        }
    }

    #[test]
    fn golden_bytes() {
        let b = one(RecordKind::Put, 1, 0, b"a", b"b");
        let expected_tail: [u8; 30] = [
            1, 0, 0, 0, // kind, flags, reserved
            1, 0, 0, 0, 0, 0, 0, 0, // seq
            0, 0, 0, 0, 0, 0, 0, 0, // expiry
            1, 0, 0, 0, // key len
            1, 0, 0, 0, // value len
            b'a', b'b',
        ];
        assert_eq!(&b[4..], &expected_tail);
        let mut covered = Vec::new();
        covered.extend_from_slice(&SALT.to_le_bytes());
        covered.extend_from_slice(&AT.to_le_bytes());
        covered.extend_from_slice(&expected_tail);
        assert_eq!(
            u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            crc32c::crc32c(&covered)
        );
    }
}
