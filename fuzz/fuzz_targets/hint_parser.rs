//! The hint-file parser on arbitrary bytes.
//!
//! Input: byte 0 flags, bytes 1..5 the segment id, 5..13 the segment
//! length, 13..17 the salt (all LE), then the body.
//! * flags bit 0 clear: the body is the hint file; with bit 1 its header
//!   fields, entry count, checksum and trailer magic are fixed up to match
//!   (so mutations reach the entry parser).
//! * flags bit 0 set: the body describes entries (per entry: key length
//!   (mod 16), kind bit, offset (u16), value length (mod 64), expiry byte,
//!   then the key), which an independent encoder (docs/format.md) turns
//!   into a hint. The parser must accept it exactly when every entry lies
//!   inside the segment's records (at or after the 32-byte header), and must reject it with any one byte changed
//!   (bit 2; position and xor from the last two body bytes).
//!
//! The parser must never panic, hang or allocate by an untrusted count, and
//! never report more entries than fit in the file.
#![no_main]

use cairn::fuzzing::decode_hint;
use cairn_fuzz::format::{self, kind, le_u32, le_u64, HintEntry};
use libfuzzer_sys::fuzz_target;

fn entries_from(body: &[u8]) -> Vec<HintEntry> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 6 <= body.len() && out.len() < 64 {
        let d = &body[at..at + 6];
        let key_len = usize::from(d[0] % 16);
        let key_start = at + 6;
        let key = body[key_start..(key_start + key_len).min(body.len())].to_vec();
        out.push(HintEntry {
            seq: out.len() as u64 + 1,
            expires: u64::from(d[5]),
            offset: u64::from(u16::from_le_bytes([d[2], d[3]])),
            key,
            value_len: u32::from(d[4] % 64),
            kind: if d[1] & 1 == 0 {
                kind::PUT
            } else {
                kind::TOMBSTONE
            },
        });
        at = key_start + key_len;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let flags = data[0];
    let id = le_u32(data, 1);
    let segment_len = le_u64(data, 5);
    let salt = le_u32(data, 13);
    let body = &data[17..];

    if flags & 1 == 0 {
        let mut hint = body.to_vec();
        if flags & 2 != 0 {
            format::fix_hint(&mut hint, id, salt, segment_len);
        }
        let r = decode_hint(&hint, id, segment_len, salt);
        if let Ok(n) = r {
            // The smallest entry is a kind byte and five one-byte varints.
            let max = hint.len().saturating_sub(56) / 6;
            assert!(n <= max, "{n} entries in {} bytes", hint.len());
        }
        assert_eq!(r, decode_hint(&hint, id, segment_len, salt));
        return;
    }

    let entries = entries_from(body);
    let hint = format::encode_hint(id, salt, segment_len, entries.len() as u64, &entries);
    let inside = entries.iter().all(|e| {
        e.offset >= 32 && e.offset + 32 + e.key.len() as u64 + u64::from(e.value_len) <= segment_len
    });
    let r = decode_hint(&hint, id, segment_len, salt);
    if inside {
        assert_eq!(r, Ok(entries.len()), "a valid hint was rejected");
    } else {
        assert!(
            r.is_err(),
            "a hint with an entry outside the segment was accepted"
        );
    }
    if flags & 4 != 0 && body.len() >= 2 {
        let pos = usize::from(u16::from_le_bytes([body[body.len() - 2], 0])) * 7 % hint.len();
        let x = body[body.len() - 1] | 1;
        let mut bad = hint.clone();
        bad[pos] ^= x;
        assert!(
            decode_hint(&bad, id, segment_len, salt).is_err(),
            "a hint with byte {pos} changed was accepted"
        );
    }
});
