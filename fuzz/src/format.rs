//! An independent encoder for cairn's on-disk format (docs/format.md), for
//! building seed inputs and for "fix-ups": recomputing the checksums of
//! fuzzer-made bytes so that mutations reach the logic behind the CRC
//! checks instead of dying at them.

/// Segment header length.
pub const SEGMENT_HEADER_LEN: usize = 32;
/// Record header length.
pub const RECORD_HEADER_LEN: usize = 32;
/// Hint header length.
pub const HINT_HEADER_LEN: usize = 32;
/// Hint trailer length.
pub const HINT_TRAILER_LEN: usize = 24;

/// CRC-32C (Castagnoli).
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Little-endian u32 at `at` (0 when out of range).
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// Little-endian u64 at `at` (0 when out of range).
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// A deterministic salt for segment `id` in generated inputs.
pub fn salt_for(id: u32) -> u32 {
    0x5a17_0000 ^ id.wrapping_mul(0x9e37_79b9)
}

/// A valid segment header.
pub fn segment_header(id: u32, salt: u32, flags: u8) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[0..8].copy_from_slice(b"CAIRNSEG");
    h[8..10].copy_from_slice(&1u16.to_le_bytes());
    h[10] = 1;
    h[11] = flags;
    h[12..16].copy_from_slice(&salt.to_le_bytes());
    h[16..24].copy_from_slice(&u64::from(id).to_le_bytes());
    let crc = crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A record's checksum: CRC-32C of salt, offset, then the record from byte 4.
pub fn record_checksum(salt: u32, offset: u64, body: &[u8]) -> u32 {
    let mut prefix = [0u8; 12];
    prefix[..4].copy_from_slice(&salt.to_le_bytes());
    prefix[4..].copy_from_slice(&offset.to_le_bytes());
    crc32c::crc32c_append(crc32c(&prefix), body)
}

/// Record kinds.
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
}

#[allow(clippy::too_many_arguments)]
/// Appends a record that will sit at offset `buf.len()` of a segment whose
/// salt is `salt` (so `buf` must hold the segment from its first byte).
pub fn push_record(
    buf: &mut Vec<u8>,
    salt: u32,
    kind: u8,
    flags: u8,
    seq: u64,
    expires: u64,
    key: &[u8],
    value: &[u8],
) {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; 4]);
    buf.push(kind);
    buf.push(flags);
    buf.extend_from_slice(&[0u8; 2]);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&expires.to_le_bytes());
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(value);
    let crc = record_checksum(salt, start as u64, &buf[start + 4..]);
    buf[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Walks the records of a segment (from offset 32) and rewrites each
/// checksum to match, as long as the headers have a known kind and lengths
/// that fit in the file. Returns how many records were fixed.
pub fn fix_record_checksums(seg: &mut [u8]) -> usize {
    if seg.len() < SEGMENT_HEADER_LEN {
        return 0;
    }
    let salt = le_u32(seg, 12);
    let mut pos = SEGMENT_HEADER_LEN;
    let mut n = 0;
    while pos + RECORD_HEADER_LEN <= seg.len() {
        let kind = seg[pos + 4];
        if !(1..=5).contains(&kind) {
            break;
        }
        let total = RECORD_HEADER_LEN as u64
            + u64::from(le_u32(seg, pos + 24))
            + u64::from(le_u32(seg, pos + 28));
        if total > (seg.len() - pos) as u64 {
            break;
        }
        let end = pos + total as usize;
        let crc = record_checksum(salt, pos as u64, &seg[pos + 4..end]);
        seg[pos..pos + 4].copy_from_slice(&crc.to_le_bytes());
        pos = end;
        n += 1;
    }
    n
}

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
    /// Kind: 1 put, 2 tombstone.
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

/// Encodes a hint file (hint format version 2: varint entries, sequence
/// numbers and offsets as zigzag deltas from the previous entry).
pub fn encode_hint(
    id: u32,
    salt: u32,
    segment_len: u64,
    max_seq: u64,
    entries: &[HintEntry],
) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"CAIRNHNT");
    b.extend_from_slice(&2u16.to_le_bytes());
    b.push(1);
    b.push(0);
    b.extend_from_slice(&salt.to_le_bytes());
    b.extend_from_slice(&u64::from(id).to_le_bytes());
    b.extend_from_slice(&segment_len.to_le_bytes());
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
    b.extend_from_slice(b"HEND");
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
    bytes[0..8].copy_from_slice(b"CAIRNHNT");
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    bytes[10] = 1;
    bytes[11] = 0;
    bytes[12..16].copy_from_slice(&salt.to_le_bytes());
    bytes[16..24].copy_from_slice(&u64::from(id).to_le_bytes());
    bytes[24..32].copy_from_slice(&segment_len.to_le_bytes());
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
    bytes[t + 20..].copy_from_slice(b"HEND");
}

/// Encodes a compaction manifest naming `ids`.
pub fn encode_manifest(ids: &[u32]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"CAIRNCMP");
    b.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        b.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_records_decode() {
        let salt = salt_for(1);
        let mut seg = segment_header(1, salt, 0).to_vec();
        push_record(&mut seg, salt, kind::PUT, 0, 1, 0, b"a", b"b");
        let r = cairn::fuzzing::decode_record(&seg[32..], salt, 32);
        assert_eq!(r, Some((1, 1, 1, 1, 34)));
        assert_eq!(
            cairn::fuzzing::scan_segment(&seg, false, false).ok(),
            Some(1)
        );
        let mut broken = seg.clone();
        broken[0] ^= 1;
        broken[40] = 7;
        broken[0] ^= 1;
        assert!(cairn::fuzzing::decode_record(&broken[32..], salt, 32).is_none());
        assert_eq!(fix_record_checksums(&mut broken), 1);
        assert!(cairn::fuzzing::decode_record(&broken[32..], salt, 32).is_some());
    }

    #[test]
    fn generated_hints_decode() {
        let e = HintEntry {
            seq: 1,
            expires: 0,
            offset: 32,
            key: b"a".to_vec(),
            value_len: 1,
            kind: kind::PUT,
        };
        let h = encode_hint(1, 7, 66, 1, &[e]);
        assert_eq!(cairn::fuzzing::decode_hint(&h, 1, 66, 7), Ok(1));
        let mut g = h.clone();
        g[40] ^= 0xff; // the offset field of the entry
        g[16] = 9; // the id
        assert!(cairn::fuzzing::decode_hint(&g, 1, 66, 7).is_err());
        g[40] ^= 0xff;
        fix_hint(&mut g, 1, 7, 66);
        assert_eq!(g, h);
    }
}
