//! Entry points for fuzz targets into the decoders that are otherwise
//! private. Not part of the stable API.

use std::path::Path;

use crate::format::record::{self, Decoded};
use crate::options::RecoveryMode;

/// What [`decode_record`] found: (kind byte, sequence number, key length,
/// value length, encoded length).
pub type DecodedRecord = (u8, u64, usize, usize, u64);

/// Decodes the record at the start of `bytes`, as stored at `offset` in a
/// segment whose salt is `salt`. `None` when it is not a valid record.
pub fn decode_record(bytes: &[u8], salt: u32, offset: u64) -> Option<DecodedRecord> {
    match record::decode(bytes, salt, offset) {
        Decoded::Record(r) => Some((r.kind as u8, r.seq, r.key.len(), r.value.len(), r.len)),
        Decoded::Truncated | Decoded::Invalid(_) => None,
    }
}

/// Parses a hint file for segment `id` (of `segment_len` bytes, salt
/// `salt`); returns how many entries it holds, or why it was rejected.
///
/// # Errors
/// The reason the hint is unusable.
pub fn decode_hint(bytes: &[u8], id: u32, segment_len: u64, salt: u32) -> Result<usize, String> {
    crate::format::hint::decode(bytes, id, segment_len, salt)
        .map(|h| h.entries.len())
        .map_err(|e| e.to_string())
}

/// Decodes `bytes` as an index checkpoint and, when its slots are this
/// build's length, builds the index from them as open does (every block's
/// CRC and every slot's place checked; the probe hash is not, so that
/// mutated inputs reach the slots). Returns the number of entries.
///
/// # Errors
/// Why the checkpoint was refused.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<u64, String> {
    let d = crate::format::checkpoint::decode(bytes).map_err(|e| e.to_string())?;
    crate::recovery::checkpoint::entries_for_fuzzing(bytes, &d)
}

/// Scans `bytes` as segment 1 (active or sealed, strict or salvage);
/// returns the number of entries found.
///
/// # Errors
/// What recovery would report.
pub fn scan_segment(bytes: &[u8], active: bool, salvage: bool) -> crate::error::Result<usize> {
    let mode = if salvage {
        RecoveryMode::Salvage
    } else {
        RecoveryMode::Strict
    };
    crate::recovery::scan_segment(Path::new("0000000001.seg"), 1, bytes, active, mode)
        .map(|l| l.entries.len())
}

/// Decodes `data` as the RESP backend's server replies (a read script's
/// reply, `CLUSTER NODES`) and round-trips a key made of it through the
/// key layout; returns how many entries it decoded. Panics only on a
/// round trip that loses the name (a bug).
#[cfg(feature = "redis")]
pub fn resp_backend_replies(data: &[u8]) -> usize {
    crate::backend::resp::fuzz_decoders(data)
}
