//! The `COMPACTION` manifest: the segments a finished compaction replaced,
//! which the next open deletes if the compaction was cut short (no I/O).

use crate::format::record;

/// The manifest's file name inside a store directory.
pub(crate) const MANIFEST: &str = "COMPACTION";
const MANIFEST_MAGIC: &[u8; 8] = b"CAIRNCMP";

/// Encodes a manifest naming the segments `inputs`.
pub(crate) fn encode(inputs: &[u32]) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 4 * inputs.len());
    b.extend_from_slice(MANIFEST_MAGIC);
    b.extend_from_slice(&(inputs.len() as u32).to_le_bytes());
    for id in inputs {
        b.extend_from_slice(&id.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Decodes a manifest; `None` when it is damaged.
pub(crate) fn decode(bytes: &[u8]) -> Option<Vec<u32>> {
    if bytes.len() < 16 || &bytes[..8] != MANIFEST_MAGIC {
        return None;
    }
    let body = &bytes[..bytes.len() - 4];
    if crc32c::crc32c(body) != record::le_u32(bytes, bytes.len() - 4) {
        return None;
    }
    let n = record::le_u32(bytes, 8) as usize;
    if body.len() != 12 + 4 * n {
        return None;
    }
    Some((0..n).map(|i| record::le_u32(body, 12 + 4 * i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trip_and_rejects_damage() {
        let b = encode(&[3, 4, 9]);
        assert_eq!(decode(&b), Some(vec![3, 4, 9]));
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 1;
            assert_eq!(decode(&c), None, "flip {i}");
        }
        assert_eq!(decode(&b[..b.len() - 1]), None);
    }
}
