//! The segment file header (no I/O).
//!
//! A segment is `dir/NNNNNNNNNN.seg`: a 32-byte header followed by records
//! (see `record.rs`). The highest-numbered segment is the active one and is
//! read with `pread`; all others are sealed, never modified again, and read
//! through a memory map (or `pread` when maps are turned off).
//!
//! ```text
//! offset size field
//!  0     8    magic "CAIRNSEG"
//!  8     2    format version (3; 1 and 2 are still read)
//! 10     1    checksum algorithm (1 = CRC-32C, Castagnoli)
//! 11     1    flags (bit 0: written by compaction)
//! 12     4    salt: random, bound into every record's checksum
//! 16     8    segment id
//! 24     4    reserved (0)
//! 28     4    crc32c of bytes 0..28
//! ```

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::record;

/// Length of the segment header.
pub(crate) const SEGMENT_HEADER_LEN: u64 = 32;
/// Magic bytes at the start of every segment.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"CAIRNSEG";
/// The format version this build writes. Version 2 added the record flags
/// `FLAG_EXPIRY_ONLY` and `FLAG_EXPIRED` (see `record.rs`); a version-1
/// segment never holds them, and a build that reads only version 1 refuses
/// a version-2 segment with `UnsupportedVersion` instead of calling its
/// flags corruption. Version 3 added `FLAG_REPLACES`, which replay after
/// an index checkpoint relies on: the checkpoint is used only when every
/// record replayed is in a version-3 segment.
pub(crate) const FORMAT_VERSION: u16 = 3;
/// The oldest format version this build reads.
pub(crate) const OLDEST_READ_VERSION: u16 = 1;
/// Checksum algorithm id for CRC-32C.
pub(crate) const CHECKSUM_CRC32C: u8 = 1;

/// Header flag: the segment was written by compaction (it is never the
/// active segment, whatever its id).
pub(crate) const FLAG_COMPACTED: u8 = 1;

/// What a segment header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeaderInfo {
    pub salt: u32,
    pub compacted: bool,
    /// The format version (1 to 3): which record flags the segment may hold.
    pub version: u16,
}

/// Encodes the header of segment `id` with `salt` and `flags`.
pub(crate) fn encode_header_flags(
    id: u32,
    salt: u32,
    flags: u8,
) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = encode_header(id, salt);
    h[11] = flags;
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Encodes the header of a writer segment `id` with `salt`.
pub(crate) fn encode_header(id: u32, salt: u32) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[0..8].copy_from_slice(SEGMENT_MAGIC);
    h[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[10] = CHECKSUM_CRC32C;
    h[12..16].copy_from_slice(&salt.to_le_bytes());
    h[16..24].copy_from_slice(&u64::from(id).to_le_bytes());
    let crc = crc32c::crc32c(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns the segment's salt. `bytes` holds
/// at least the header.
#[cfg(test)]
pub(crate) fn check_header(path: &Path, bytes: &[u8], id: u32) -> Result<u32> {
    header_info(path, bytes, id).map(|h| h.salt)
}

/// Checks a segment header and returns what it says.
pub(crate) fn header_info(path: &Path, bytes: &[u8], id: u32) -> Result<HeaderInfo> {
    if bytes.len() < SEGMENT_HEADER_LEN as usize {
        return Err(Error::corruption(path, 0, "segment header is incomplete"));
    }
    if &bytes[0..8] != SEGMENT_MAGIC {
        return Err(Error::corruption(
            path,
            0,
            "not a cairn segment (bad magic)",
        ));
    }
    if crc32c::crc32c(&bytes[0..28]) != record::le_u32(bytes, 28) {
        return Err(Error::corruption(
            path,
            0,
            "segment header checksum mismatch",
        ));
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if !(OLDEST_READ_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(Error::UnsupportedVersion {
            path: path.to_path_buf(),
            version,
        });
    }
    if bytes[10] != CHECKSUM_CRC32C {
        return Err(Error::corruption(
            path,
            10,
            format!("unknown checksum algorithm id {}", bytes[10]),
        ));
    }
    let stored = record::le_u64(bytes, 16);
    if stored != u64::from(id) {
        return Err(Error::corruption(
            path,
            16,
            format!("header names segment {stored}, file name says {id}"),
        ));
    }
    if bytes[11] & !FLAG_COMPACTED != 0 {
        return Err(Error::corruption(
            path,
            11,
            format!("unknown segment flags {:#04x}", bytes[11]),
        ));
    }
    Ok(HeaderInfo {
        salt: record::le_u32(bytes, 12),
        compacted: bytes[11] & FLAG_COMPACTED != 0,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_checks() {
        let p = Path::new("/x/0000000003.seg");
        let h = encode_header(3, 0xabcd_0123);
        assert_eq!(check_header(p, &h, 3).expect("valid"), 0xabcd_0123);
        assert!(matches!(
            check_header(p, &h, 4),
            Err(Error::Corruption { .. })
        ));
        let mut bad = h;
        bad[0] = b'X';
        assert!(matches!(
            check_header(p, &bad, 3),
            Err(Error::Corruption { offset: 0, .. })
        ));
        let with_version = |v: u16| {
            let mut b = h;
            b[8..10].copy_from_slice(&v.to_le_bytes());
            let crc = crc32c::crc32c(&b[0..28]);
            b[28..32].copy_from_slice(&crc.to_le_bytes());
            b
        };
        for v in [0u16, 4, 0x0100] {
            assert!(
                matches!(
                    check_header(p, &with_version(v), 3),
                    Err(Error::UnsupportedVersion { version, .. }) if version == v
                ),
                "version {v}"
            );
        }
        let v1 = header_info(p, &with_version(1), 3).expect("version 1 is read");
        assert_eq!((v1.version, v1.salt), (1, 0xabcd_0123));
        let v2 = header_info(p, &with_version(2), 3).expect("version 2 is read");
        assert_eq!(v2.version, 2);
        let v3 = header_info(p, &h, 3).expect("version 3");
        assert_eq!(v3.version, 3);
        assert!(check_header(p, &h[..10], 3).is_err());
    }

    #[test]
    fn new_headers_are_version_3() {
        let h = encode_header(7, 0x0102_0304);
        let expected: [u8; 28] = [
            b'C', b'A', b'I', b'R', b'N', b'S', b'E', b'G', // magic
            3, 0, // format version 3
            1, // CRC-32C
            0, // flags
            0x04, 0x03, 0x02, 0x01, // salt
            7, 0, 0, 0, 0, 0, 0, 0, // segment id
            0, 0, 0, 0, // reserved
        ];
        assert_eq!(&h[..28], &expected);
        assert_eq!(&h[28..], &crc32c::crc32c(&expected).to_le_bytes());
        let c = encode_header_flags(7, 0x0102_0304, FLAG_COMPACTED);
        assert_eq!(&c[8..12], &[3, 0, 1, FLAG_COMPACTED]);
    }
}
