//! The index checkpoint decoder (`index.ckpt`, docs/format.md "Index
//! checkpoint") on arbitrary bytes.
//!
//! Input: byte 0 flags, then the file. With flags bit 0, the header's CRC,
//! every slot block's CRC and the footer are recomputed (as far as the
//! header's counts fit the bytes, the footer taken to end the file), so
//! that mutations reach the slots. Compaction deltas after the footer are
//! reached by mutation of the unfixed input.
//!
//! The decoder must never panic, hang or allocate by an untrusted count;
//! what it accepts must hold no more entries than slots, and no more slots
//! than the file's size allows; and the same bytes must decode the same.
#![no_main]

use cairn::fuzzing::decode_checkpoint;
use cairn_fuzz::format::crc32c;
use libfuzzer_sys::fuzz_target;

const FIXED: usize = 1076;
const SEGMENT: usize = 56;
const FOOTER: usize = 16;

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Recomputes the checksums an independent reading of the layout gives.
fn fix(b: &mut [u8]) {
    if b.len() < FIXED + 4 + FOOTER {
        return;
    }
    let count = u32_at(b, 12) as usize;
    if count > (b.len() - FIXED - 4 - FOOTER) / SEGMENT {
        return;
    }
    let header_len = FIXED + SEGMENT * count + 4;
    let crc = crc32c(&b[..header_len - 4]);
    b[header_len - 4..header_len].copy_from_slice(&crc.to_le_bytes());
    let slot = usize::from(u16::from_le_bytes([b[10], b[11]])).max(1);
    let per = ((1 << 20) / slot).max(1);
    let body_end = b.len() - FOOTER;
    let mut at = header_len;
    let mut total = 0u64;
    for i in 0..64 {
        let mut n = u64_at(b, 52 + 8 * i) as usize;
        total = total.wrapping_add(n as u64);
        while n > 0 {
            let k = n.min(per);
            let Some(end) = (k * slot).checked_add(at).filter(|e| e + 4 <= body_end) else {
                return;
            };
            let c = crc32c(&b[at..end]);
            b[end..end + 4].copy_from_slice(&c.to_le_bytes());
            at = end + 4;
            n -= k;
        }
    }
    let f = b.len() - FOOTER;
    b[f..f + 8].copy_from_slice(&total.to_le_bytes());
    b[f + 8..f + 12].copy_from_slice(b"IEND");
    let mut bound = crc.to_le_bytes().to_vec();
    bound.extend_from_slice(&b[f..f + 12]);
    let c = crc32c(&bound);
    b[f + 12..f + 16].copy_from_slice(&c.to_le_bytes());
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let mut bytes = body.to_vec();
    if flags & 1 != 0 {
        fix(&mut bytes);
    }
    let r = decode_checkpoint(&bytes);
    if let Ok(n) = r {
        let slot = usize::from(u16::from_le_bytes([bytes[10], bytes[11]])).max(1);
        assert!(n as usize <= bytes.len() / slot, "{n} entries in {} bytes", bytes.len());
    }
    assert_eq!(r, decode_checkpoint(&bytes));
});
