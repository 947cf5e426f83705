//! Hint files: a compact index of one sealed segment, so that open does not
//! have to read every value.
//!
//! ```text
//! header (32 bytes)
//!  0  8  magic "CAIRNHNT"
//!  8  2  hint format version (2)
//! 10  1  checksum algorithm (1 = CRC-32C)
//! 11  1  reserved (0)
//! 12  4  salt of the segment this hint describes
//! 16  8  segment id
//! 24  8  length in bytes of the segment file this hint describes
//! entries, one per key (the newest record of that key in the segment),
//! in the order of their records; LEB128 varints, deltas zigzag-encoded
//!  1  kind (1 put, 2 tombstone)
//!  .  varint: sequence number minus the previous entry's (first: minus 0)
//!  .  varint: record offset minus the previous entry's (first: minus 0)
//!  .  varint: expiry (unix ms, 0 = none)
//!  .  varint: key length
//!  .  varint: value length
//!  .  key
//! trailer (24 bytes)
//!  0  8  number of entries
//!  8  8  highest sequence number of any record in the segment
//! 16  4  crc32c of every byte before this field
//! 20  4  magic "HEND"
//! ```
//!
//! A hint is trusted only if its checksum, segment id and segment length all
//! match; otherwise open scans the segment and writes a fresh hint.

use crate::format::record::{self, RecordKind, MAX_KEY_BYTES};
use crate::format::segment::{CHECKSUM_CRC32C, SEGMENT_HEADER_LEN};

const HINT_MAGIC: &[u8; 8] = b"CAIRNHNT";
const TRAILER_MAGIC: &[u8; 4] = b"HEND";
const HEADER_LEN: usize = 32;
/// The smallest entry: a kind byte and five one-byte varints.
const ENTRY_MIN_LEN: usize = 6;
/// Version 1 had fixed-width entries (33 bytes plus the key); version 2
/// packs them into varints, about a third of the size for small keys.
pub(crate) const HINT_VERSION: u16 = 2;

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

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads a varint at `*at`, not past `end`.
fn get_varint(b: &[u8], at: &mut usize, end: usize) -> Result<u64, Rejection> {
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&byte) = b.get(*at).filter(|_| *at < end) else {
            return Err("hint entry runs past the end");
        };
        *at += 1;
        if i == 9 && byte > 1 {
            return Err("hint varint overflows");
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("hint varint overflows")
}
const TRAILER_LEN: usize = 24;

/// One hint entry: where the newest record of a key in a segment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HintEntry {
    pub key: Vec<u8>,
    pub seq: u64,
    pub expires_at_ms: u64,
    pub offset: u64,
    pub value_len: u32,
    pub tombstone: bool,
    /// The record carries `FLAG_REPLACES` (format version 3). Only a scan
    /// knows it: a hint file does not keep it, and an entry read from one
    /// says `false`.
    pub replaces: bool,
}

impl HintEntry {
    /// Whether this entry (from a hint file) says what `scanned` (from a
    /// scan of the segment) says: every field a hint keeps.
    pub(crate) fn describes(&self, scanned: &HintEntry) -> bool {
        self.key == scanned.key
            && self.seq == scanned.seq
            && self.expires_at_ms == scanned.expires_at_ms
            && self.offset == scanned.offset
            && self.value_len == scanned.value_len
            && self.tombstone == scanned.tombstone
    }
}

/// Encodes a hint file for segment `id` of `segment_len` bytes.
pub(crate) fn encode(
    id: u32,
    salt: u32,
    segment_len: u64,
    max_seq: u64,
    entries: &[HintEntry],
) -> Vec<u8> {
    let body: usize = entries.iter().map(|e| 16 + e.key.len()).sum();
    let mut b = Vec::with_capacity(HEADER_LEN + body + TRAILER_LEN);
    b.extend_from_slice(HINT_MAGIC);
    b.extend_from_slice(&HINT_VERSION.to_le_bytes());
    b.push(CHECKSUM_CRC32C);
    b.push(0);
    b.extend_from_slice(&salt.to_le_bytes());
    b.extend_from_slice(&u64::from(id).to_le_bytes());
    b.extend_from_slice(&segment_len.to_le_bytes());
    let (mut seq, mut offset) = (0u64, 0u64);
    for e in entries {
        b.push(if e.tombstone {
            RecordKind::Tombstone as u8
        } else {
            RecordKind::Put as u8
        });
        put_varint(&mut b, zigzag(e.seq.wrapping_sub(seq) as i64));
        put_varint(&mut b, zigzag(e.offset.wrapping_sub(offset) as i64));
        put_varint(&mut b, e.expires_at_ms);
        put_varint(&mut b, e.key.len() as u64);
        put_varint(&mut b, u64::from(e.value_len));
        b.extend_from_slice(&e.key);
        (seq, offset) = (e.seq, e.offset);
    }
    b.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    b.extend_from_slice(&max_seq.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b.extend_from_slice(TRAILER_MAGIC);
    b
}

/// Why a hint was not used.
pub(crate) type Rejection = &'static str;

/// An authentic hint (checksum, salt and id check out) that describes a
/// longer segment than the file: the sealed segment lost its end.
pub(crate) const SEGMENT_TRUNCATED: Rejection =
    "hint describes a longer segment than the file: the segment was truncated";

/// Decodes a hint file, checking it against the segment it claims to describe.
/// A decoded hint: its entries and the segment's highest sequence number.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hint {
    pub entries: Vec<HintEntry>,
    pub max_seq: u64,
    /// Size of the hint file.
    pub file_len: u64,
}

pub(crate) fn decode(
    bytes: &[u8],
    id: u32,
    segment_len: u64,
    salt: u32,
) -> Result<Hint, Rejection> {
    if bytes.len() < HEADER_LEN + TRAILER_LEN {
        return Err("hint file too short");
    }
    if &bytes[0..8] != HINT_MAGIC {
        return Err("bad hint magic");
    }
    let t = bytes.len() - TRAILER_LEN;
    if &bytes[t + 20..] != TRAILER_MAGIC {
        return Err("bad hint trailer");
    }
    if crc32c::crc32c(&bytes[..t + 16]) != record::le_u32(bytes, t + 16) {
        return Err("hint checksum mismatch");
    }
    if u16::from_le_bytes([bytes[8], bytes[9]]) != HINT_VERSION || bytes[10] != CHECKSUM_CRC32C {
        return Err("hint version or checksum algorithm not supported");
    }
    if record::le_u32(bytes, 12) != salt {
        return Err("hint names another incarnation of the segment (salt differs)");
    }
    if record::le_u64(bytes, 16) != u64::from(id) {
        return Err("hint names another segment");
    }
    let described = record::le_u64(bytes, 24);
    if described > segment_len {
        return Err(SEGMENT_TRUNCATED);
    }
    if described != segment_len {
        return Err("hint describes a segment of another length");
    }
    let count = record::le_u64(bytes, t);
    // Every entry takes at least ENTRY_MIN_LEN bytes: bound before allocating.
    if count > ((t - HEADER_LEN) / ENTRY_MIN_LEN) as u64 {
        return Err("hint entry count is impossible");
    }
    let mut out = Vec::with_capacity(count as usize);
    let mut at = HEADER_LEN;
    let (mut seq, mut offset) = (0u64, 0u64);
    for _ in 0..count {
        let kind = *bytes
            .get(at)
            .filter(|_| at < t)
            .ok_or("hint entry runs past the end")?;
        at += 1;
        let tombstone = match RecordKind::from_u8(kind) {
            Some(RecordKind::Put) => false,
            Some(RecordKind::Tombstone) => true,
            _ => return Err("hint entry has a bad kind"),
        };
        seq = seq.wrapping_add(unzigzag(get_varint(bytes, &mut at, t)?) as u64);
        offset = offset.wrapping_add(unzigzag(get_varint(bytes, &mut at, t)?) as u64);
        let expires_at_ms = get_varint(bytes, &mut at, t)?;
        let key_len = get_varint(bytes, &mut at, t)?;
        let value_len = get_varint(bytes, &mut at, t)?;
        if key_len > u64::from(MAX_KEY_BYTES) || value_len > u64::from(record::MAX_VALUE_BYTES) {
            return Err("hint entry length above the limit");
        }
        let (key_len, value_len) = (key_len as u32, value_len as u32);
        if seq >= record::MAX_SEQ {
            return Err("hint entry sequence number out of range");
        }
        if offset < SEGMENT_HEADER_LEN
            || offset.saturating_add(record::encoded_len(key_len, value_len)) > segment_len
        {
            return Err("hint entry points outside the segment's records");
        }
        let key_end = at + key_len as usize;
        if key_end > t {
            return Err("hint key runs past the end");
        }
        out.push(HintEntry {
            key: bytes[at..key_end].to_vec(),
            seq,
            expires_at_ms,
            offset,
            value_len,
            tombstone,
            replaces: false,
        });
        at = key_end;
    }
    if at != t {
        return Err("hint has trailing bytes");
    }
    let max_seq = record::le_u64(bytes, t + 8);
    if max_seq >= record::MAX_SEQ || out.iter().any(|e| e.seq > max_seq) {
        return Err("hint maximum sequence number out of range");
    }
    Ok(Hint {
        entries: out,
        max_seq,
        file_len: bytes.len() as u64,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Three entries: a put, an expiring put with an empty key, a tombstone.
    pub(crate) fn sample() -> Vec<HintEntry> {
        vec![
            HintEntry {
                key: b"a".to_vec(),
                seq: 1,
                expires_at_ms: 0,
                offset: 32,
                value_len: 3,
                tombstone: false,
                replaces: false,
            },
            HintEntry {
                key: b"".to_vec(),
                seq: 2,
                expires_at_ms: 99,
                offset: 68,
                value_len: 0,
                tombstone: false,
                replaces: false,
            },
            HintEntry {
                key: b"gone".to_vec(),
                seq: 3,
                expires_at_ms: 0,
                offset: 100,
                value_len: 0,
                tombstone: true,
                replaces: false,
            },
        ]
    }

    #[test]
    fn round_trip() {
        let e = sample();
        let b = encode(7, 9, 1000, 42, &e);
        assert_eq!(
            decode(&b, 7, 1000, 9).expect("decodes"),
            Hint {
                entries: e,
                max_seq: 42,
                file_len: b.len() as u64,
            }
        );
    }

    #[test]
    fn golden_entry_bytes() {
        let e = HintEntry {
            key: b"a".to_vec(),
            seq: 5,
            expires_at_ms: 300,
            offset: 32,
            value_len: 3,
            tombstone: false,
            replaces: false,
        };
        let b = encode(7, 9, 1000, 5, &[e]);
        assert_eq!(&b[8..10], &[2, 0], "hint format version 2");
        // kind, zigzag(5), zigzag(32), varint(300) = ac 02, key length, value length, key
        assert_eq!(
            &b[HEADER_LEN..b.len() - TRAILER_LEN],
            &[1, 10, 64, 0xac, 0x02, 1, 3, b'a']
        );
        // A large delta backwards (zigzag) and a ten-byte varint round-trip.
        let f = HintEntry {
            key: Vec::new(),
            seq: 1,
            expires_at_ms: u64::MAX,
            offset: 33,
            value_len: 0,
            tombstone: true,
            replaces: false,
        };
        let mut g = f.clone();
        g.offset = 32;
        g.seq = 9;
        let b = encode(7, 9, 1000, 9, &[f.clone(), g.clone()]);
        assert_eq!(decode(&b, 7, 1000, 9).expect("decodes").entries, vec![f, g]);
    }

    #[test]
    fn rejects_other_segment_or_length() {
        let b = encode(7, 9, 1000, 3, &sample());
        assert!(decode(&b, 8, 1000, 9).is_err());
        assert!(decode(&b, 7, 1000, 10).is_err());
        assert!(decode(&b, 7, 999, 9).is_err());
    }

    #[test]
    fn rejects_every_truncation_and_bit_flip() {
        let b = encode(7, 9, 1000, 3, &sample());
        for cut in 0..b.len() {
            assert!(decode(&b[..cut], 7, 1000, 9).is_err(), "cut {cut}");
        }
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x10;
            assert!(decode(&c, 7, 1000, 9).is_err(), "flip {i}");
        }
    }
}
