//! The record decoder and the segment scanner on arbitrary bytes.
//!
//! Input: byte 0 flags (bit 0 prepend a valid segment header for segment 1
//! with the salt below; bit 1 recompute the record checksums; bit 2 the
//! scanned segment is the active one), bytes 1..5 the salt (LE), bytes 5..13
//! the record's offset (LE), then the bytes.
//!
//! Properties, besides not panicking, aborting, hanging or running out of
//! memory:
//! * a decoded record lies inside the input, its fields are those of its
//!   header, its checksum verifies with an independent implementation of
//!   docs/format.md, and it decodes the same from a buffer that ends with
//!   it;
//! * conversely, bytes that form a valid record by docs/format.md decode;
//! * a scan finds at most one entry per 32 bytes, is deterministic, and in
//!   a sealed segment strict mode succeeding implies salvage mode finds the
//!   same entries; salvage mode never refuses a segment with a valid header.
#![no_main]

use cairn::fuzzing::{decode_record, scan_segment};
use cairn_fuzz::format::{self, le_u32, le_u64};
use libfuzzer_sys::fuzz_target;

/// Whether `b` starts with a valid record by docs/format.md (by the
/// independent oracle, not cairn's decoder); its length if so.
fn valid_by_spec(b: &[u8], salt: u32, offset: u64) -> Option<u64> {
    format::decode_record(b, salt, offset).map(|h| h.record_len())
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 13 {
        return;
    }
    let flags = data[0];
    let salt = le_u32(data, 1);
    let offset = le_u64(data, 5);
    let bytes = &data[13..];

    // The record decoder.
    let decoded = decode_record(bytes, salt, offset);
    if let Some((kind, seq, key_len, value_len, len)) = decoded {
        assert!(len <= bytes.len() as u64, "record longer than its input");
        assert_eq!(len, 32 + key_len as u64 + value_len as u64);
        assert!(format::kind::is_known(kind));
        assert_eq!(kind, bytes[4]);
        assert_eq!(seq, le_u64(bytes, 8));
        assert_eq!(key_len as u32, le_u32(bytes, 24));
        assert_eq!(value_len as u32, le_u32(bytes, 28));
        assert!(key_len <= cairn::MAX_KEY_BYTES as usize);
        assert!(value_len <= cairn::MAX_VALUE_BYTES as usize);
        assert_eq!(
            format::record_checksum(salt, offset, &bytes[4..len as usize]),
            le_u32(bytes, 0),
            "accepted a record whose checksum does not verify"
        );
        assert_eq!(decode_record(&bytes[..len as usize], salt, offset), decoded);
        assert_eq!(
            decode_record(&bytes[..len as usize - 1], salt, offset),
            None,
            "a record decoded from a buffer one byte short of it"
        );
    }
    assert_eq!(
        decoded.map(|d| d.4),
        valid_by_spec(bytes, salt, offset),
        "the decoder disagrees with docs/format.md"
    );

    // The segment scanner.
    let with_header = flags & 1 != 0;
    let mut seg = if with_header {
        format::segment_header(1, salt, 0).to_vec()
    } else {
        Vec::new()
    };
    seg.extend_from_slice(bytes);
    if flags & 2 != 0 {
        format::fix_record_checksums(&mut seg);
    }
    let active = flags & 4 != 0;
    let max_entries = seg.len().saturating_sub(32) / 32;
    let mut results = Vec::new();
    for salvage in [false, true] {
        let r = scan_segment(&seg, active, salvage);
        if let Ok(n) = &r {
            assert!(*n <= max_entries, "more entries than records fit");
        }
        let again = scan_segment(&seg, active, salvage);
        assert_eq!(
            r.as_ref().ok(),
            again.as_ref().ok(),
            "the scan is not deterministic"
        );
        if salvage && with_header {
            assert!(
                r.is_ok(),
                "salvage refused a segment with a valid header: {:?}",
                r.err()
            );
        }
        results.push(r.ok());
    }
    if !active {
        if let Some(n) = results[0] {
            assert_eq!(results[1], Some(n), "strict and salvage scans disagree");
        }
    }
});
