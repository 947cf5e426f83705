//! The index checkpoint file (`index.ckpt`): the keydir's slots as they lie
//! in memory, with what open needs to trust them (no I/O).
//!
//! `docs/format.md` ("Index checkpoint") is the byte-for-byte
//! specification. In short, everything little-endian:
//!
//! ```text
//! header   magic "CAIRNIDX", version, slot length, segment count, hash
//!          seed, probe hash, newest sequence number, written at (unix ms),
//!          the active segment's index, the slot count of each of the 64
//!          shards, each shard's cut (the offset in the active segment up
//!          to which its slots include the log), then one 56-byte entry
//!          per segment; CRC-32C of it all
//! slots    shard by shard, in blocks of at most 1 MiB of whole slots,
//!          each block followed by the CRC-32C of its bytes
//! footer   total slot count, magic "IEND", CRC-32C of the header's CRC,
//!          the count and the magic
//! ```
//!
//! The header alone fixes the file's length, so a decoder checks the
//! length before it trusts anything else and never allocates more than
//! the file's size justifies. What a slot's bytes mean is the keydir's
//! business (`index/keydir.rs`); here they are opaque, `slot_len` each.

use std::fmt;

use crate::format::record::{le_u32, le_u64};

/// The magic bytes at the start of a checkpoint.
const MAGIC: &[u8; 8] = b"CAIRNIDX";
/// The magic bytes of the footer.
const FOOTER_MAGIC: &[u8; 4] = b"IEND";
/// The checkpoint format version this build writes and reads. Version 2
/// added the shards' cuts (a checkpoint written while the store runs);
/// version 1 is not read (an open then falls back to hints).
pub(crate) const VERSION: u16 = 2;
/// The keydir's shard count: the checkpoint lists the slots shard by shard.
pub(crate) const SHARDS: usize = 64;
/// The most bytes of slots in one block.
pub(crate) const BLOCK_BYTES: usize = 1 << 20;
/// The fixed part of the header, before the segment entries.
const FIXED_HEADER_LEN: usize = 52 + 16 * SHARDS;
/// Where the shards' cuts start in the header.
const CUTS_AT: usize = 52 + 8 * SHARDS;
/// One segment entry of the header.
const SEGMENT_ENTRY_LEN: usize = 56;
/// The footer's length.
pub(crate) const FOOTER_LEN: usize = 16;
/// `active` when there is no active segment.
const NO_ACTIVE: u32 = u32::MAX;
/// The fixed string whose hash the header holds (see [`Header::probe`]).
pub(crate) const PROBE_KEY: &[u8] = b"cairn index checkpoint probe";

/// What the checkpoint says about one segment it covers: what must still
/// match the file, and its space accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    pub id: u32,
    /// The salt in the segment's header.
    pub salt: u32,
    /// The end of its last record (header included).
    pub data_len: u64,
    /// The file's length (more than `data_len` only for the active
    /// segment, by its preallocated zeros).
    pub file_len: u64,
    /// Dead record bytes.
    pub dead: u64,
    /// Tombstone bytes compaction had to keep.
    pub kept: u64,
    /// The size of its hint file (0: none).
    pub hint: u64,
    /// The lowest sequence number of a record that can matter in it.
    pub min_seq: u64,
}

/// A checkpoint's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    /// The length of one slot in bytes.
    pub slot_len: u16,
    /// The seed of the keydir's hash.
    pub seed: u64,
    /// The keydir's 64-bit hash of [`PROBE_KEY`] with `seed`: a build whose
    /// hash function differs computes another value and does not use the
    /// checkpoint.
    pub probe: u64,
    /// The newest sequence number in the store.
    pub max_seq: u64,
    /// When the checkpoint was written (unix ms).
    pub written_at_ms: u64,
    /// The active segment's id, if there is one.
    pub active: Option<u32>,
    /// The number of slots of each shard.
    pub shard_slots: [u64; SHARDS],
    /// Each shard's cut: its slots hold every record of the active segment
    /// before this offset and none after it (all the active segment's data
    /// length for a checkpoint written at a clean close; 0 without an
    /// active segment). Replay after a crash applies the records after it.
    pub cuts: [u64; SHARDS],
    /// Every segment the index covers, ascending by id.
    pub segments: Vec<SegmentInfo>,
}

impl Header {
    /// The total number of slots.
    pub(crate) fn total_slots(&self) -> u64 {
        self.shard_slots.iter().sum()
    }

    /// Slots in one full block.
    fn block_slots(&self) -> usize {
        (BLOCK_BYTES / usize::from(self.slot_len.max(1))).max(1)
    }

    /// The bytes shard `i`'s blocks take, CRCs included.
    fn shard_bytes(&self, i: usize) -> Option<u64> {
        let n = self.shard_slots[i];
        let per = self.block_slots() as u64;
        let blocks = n.div_ceil(per);
        n.checked_mul(u64::from(self.slot_len))?
            .checked_add(blocks.checked_mul(4)?)
    }

    /// The header's encoded length.
    fn len(&self) -> usize {
        FIXED_HEADER_LEN + SEGMENT_ENTRY_LEN * self.segments.len() + 4
    }

    /// The whole file's length, as the header fixes it.
    fn file_len(&self) -> Option<u64> {
        let mut n = self.len() as u64 + FOOTER_LEN as u64;
        for i in 0..SHARDS {
            n = n.checked_add(self.shard_bytes(i)?)?;
        }
        Some(n)
    }
}

/// Why a checkpoint's bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The magic is not `CAIRNIDX` (or the file is shorter than it).
    NotACheckpoint,
    /// A format version this build does not read.
    UnsupportedVersion(u16),
    /// Damage: the byte offset and what is wrong.
    Damaged(u64, &'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::NotACheckpoint => write!(f, "not an index checkpoint (bad magic)"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "index checkpoint format version {v} is not supported")
            }
            DecodeError::Damaged(at, why) => write!(f, "damaged at byte offset {at}: {why}"),
        }
    }
}

/// Encodes the header; its last 4 bytes are its CRC, which
/// [`encode_footer`] takes.
pub(crate) fn encode_header(h: &Header) -> Vec<u8> {
    let mut b = Vec::with_capacity(h.len());
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.extend_from_slice(&h.slot_len.to_le_bytes());
    b.extend_from_slice(&(h.segments.len() as u32).to_le_bytes());
    b.extend_from_slice(&h.seed.to_le_bytes());
    b.extend_from_slice(&h.probe.to_le_bytes());
    b.extend_from_slice(&h.max_seq.to_le_bytes());
    b.extend_from_slice(&h.written_at_ms.to_le_bytes());
    let active = h
        .active
        .and_then(|id| h.segments.iter().position(|s| s.id == id))
        .map_or(NO_ACTIVE, |i| i as u32);
    b.extend_from_slice(&active.to_le_bytes());
    for n in h.shard_slots {
        b.extend_from_slice(&n.to_le_bytes());
    }
    for c in h.cuts {
        b.extend_from_slice(&c.to_le_bytes());
    }
    for s in &h.segments {
        encode_segment(s, &mut b);
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Appends one shard's slots (`slots`, whole slots of `slot_len` bytes) to
/// `out` as blocks, each followed by its CRC.
pub(crate) fn encode_slots(slots: &[u8], slot_len: usize, out: &mut Vec<u8>) {
    let block = (BLOCK_BYTES / slot_len.max(1)).max(1) * slot_len;
    for chunk in slots.chunks(block) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(&crc32c::crc32c(chunk).to_le_bytes());
    }
}

/// The footer, bound to the header by its CRC.
pub(crate) fn encode_footer(header_crc: u32, total_slots: u64) -> [u8; FOOTER_LEN] {
    let mut f = [0u8; FOOTER_LEN];
    f[0..8].copy_from_slice(&total_slots.to_le_bytes());
    f[8..12].copy_from_slice(FOOTER_MAGIC);
    let crc = footer_crc(header_crc, &f[0..12]);
    f[12..16].copy_from_slice(&crc.to_le_bytes());
    f
}

fn footer_crc(header_crc: u32, count_and_magic: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header_crc.to_le_bytes()), count_and_magic)
}

/// The CRC at the end of an encoded header.
pub(crate) fn header_crc(encoded_header: &[u8]) -> u32 {
    le_u32(encoded_header, encoded_header.len().saturating_sub(4))
}

/// The length of the header of a checkpoint that covers `segments`
/// segments.
pub(crate) fn header_len_for(segments: usize) -> usize {
    FIXED_HEADER_LEN + SEGMENT_ENTRY_LEN * segments + 4
}

/// Where everything is in a checkpoint file, from its header and length:
/// each shard's blocks, and the footer.
#[derive(Debug)]
pub(crate) struct Layout {
    pub header: Header,
    /// Where each shard's blocks start, and how many bytes they take (CRCs
    /// included).
    shards: [(u64, u64); SHARDS],
    /// Where the footer starts.
    footer_at: u64,
}

/// The length of the header that starts with `prefix` (at least its first
/// 16 bytes), checked against the file's length `file_len`; the caller
/// then reads that much and calls [`decode_header`].
///
/// # Errors
/// Not a checkpoint, another version, or a segment count larger than the
/// file.
pub(crate) fn header_len(prefix: &[u8], file_len: u64) -> Result<usize, DecodeError> {
    if prefix.len() < MAGIC.len() || &prefix[..8] != MAGIC {
        return Err(DecodeError::NotACheckpoint);
    }
    // The version first: another version's header has another length.
    if let [a, b, ..] = prefix[8..] {
        let version = u16::from_le_bytes([a, b]);
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
    }
    let min = (FIXED_HEADER_LEN + 4 + FOOTER_LEN) as u64;
    if prefix.len() < 16 || file_len < min {
        return Err(DecodeError::Damaged(0, "shorter than a header"));
    }
    let count = u64::from(le_u32(prefix, 12));
    // Bounded by the file's size before anything is allocated for it.
    if count > (file_len - min) / SEGMENT_ENTRY_LEN as u64 {
        return Err(DecodeError::Damaged(
            12,
            "segment count larger than the file",
        ));
    }
    Ok(header_len_for(count as usize))
}

/// Decodes the header (`head`: the file's first [`header_len`] bytes or
/// more) of a checkpoint file of `file_len` bytes: magic, version, CRC,
/// sane values, and the file's length as the header fixes it.
///
/// # Errors
/// [`DecodeError`] for anything that does not check out.
pub(crate) fn decode_header(head: &[u8], file_len: u64) -> Result<Layout, DecodeError> {
    let header_len = header_len(head, file_len)?;
    if head.len() < header_len {
        return Err(DecodeError::Damaged(0, "header cut short"));
    }
    let count = (header_len - FIXED_HEADER_LEN - 4) / SEGMENT_ENTRY_LEN;
    if crc32c::crc32c(&head[..header_len - 4]) != le_u32(head, header_len - 4) {
        return Err(DecodeError::Damaged(0, "header checksum mismatch"));
    }
    let header = header_fields(head, count)?;
    check_header(&header)?;
    let expected = header
        .file_len()
        .ok_or(DecodeError::Damaged(52, "slot counts overflow"))?;
    // Compaction deltas may follow the footer (see [`Delta`]).
    if expected > file_len {
        return Err(DecodeError::Damaged(
            file_len,
            "shorter than its header says (truncated)",
        ));
    }
    let mut shards = [(0u64, 0u64); SHARDS];
    let mut at = header_len as u64;
    for (i, s) in shards.iter_mut().enumerate() {
        // Fits: the total was checked against the file's length.
        let n = header.shard_bytes(i).unwrap_or(0);
        *s = (at, n);
        at += n;
    }
    Ok(Layout {
        header,
        shards,
        footer_at: at,
    })
}

impl Layout {
    /// Where shard `i`'s blocks start in the file, and their length.
    pub(crate) fn shard_span(&self, i: usize) -> (u64, u64) {
        self.shards[i]
    }

    /// Where the footer starts (it is [`FOOTER_LEN`] bytes).
    pub(crate) fn footer_at(&self) -> u64 {
        self.footer_at
    }

    /// The bytes of one full block with its CRC: a shard read in pieces
    /// of a multiple of this, from its start, gives whole blocks.
    pub(crate) fn block_stride(&self) -> usize {
        self.header.block_slots() * usize::from(self.header.slot_len) + 4
    }

    /// Checks the footer (its [`FOOTER_LEN`] bytes).
    ///
    /// # Errors
    /// It does not match the header.
    pub(crate) fn check_footer(&self, footer: &[u8], header_crc: u32) -> Result<(), DecodeError> {
        if footer.len() != FOOTER_LEN
            || &footer[8..12] != FOOTER_MAGIC
            || footer_crc(header_crc, &footer[0..12]) != le_u32(footer, 12)
            || le_u64(footer, 0) != self.header.total_slots()
        {
            return Err(DecodeError::Damaged(
                self.footer_at,
                "footer does not match its header",
            ));
        }
        Ok(())
    }

    /// The slot bytes of the blocks in `piece`, a part of a shard's blocks
    /// that starts at a block and holds whole blocks (see
    /// [`Layout::block_stride`]) and starts at `offset` in the file, each
    /// checked against its CRC.
    pub(crate) fn blocks<'a>(
        &self,
        piece: &'a [u8],
        offset: u64,
    ) -> impl Iterator<Item = Result<&'a [u8], DecodeError>> + 'a {
        let block = self.block_stride() - 4;
        let mut at = 0usize;
        std::iter::from_fn(move || {
            if at >= piece.len() {
                return None;
            }
            let here = offset + at as u64;
            if piece.len() - at < 4 {
                at = piece.len();
                return Some(Err(DecodeError::Damaged(here, "a block cut short")));
            }
            let n = block.min(piece.len() - at - 4);
            let data = &piece[at..at + n];
            let crc = le_u32(piece, at + n);
            at += n + 4;
            if crc32c::crc32c(data) == crc {
                Some(Ok(data))
            } else {
                Some(Err(DecodeError::Damaged(
                    here,
                    "slot block checksum mismatch",
                )))
            }
        })
    }
}

/// A whole checkpoint file in memory whose header, length and footer check
/// out; each shard's blocks are checked as they are read
/// ([`Decoded::shard_blocks`]).
#[derive(Debug)]
pub(crate) struct Decoded<'a> {
    pub layout: Layout,
    bytes: &'a [u8],
    /// The compaction deltas after the footer, in order (a torn last one
    /// left out, as an open leaves it out).
    pub deltas: Vec<Delta>,
}

impl<'a> Decoded<'a> {
    /// The header.
    pub(crate) fn header(&self) -> &Header {
        &self.layout.header
    }

    /// Shard `i`'s slot bytes, block by block, each checked against its
    /// CRC (an error names the block's offset in the file).
    pub(crate) fn shard_blocks(
        &self,
        i: usize,
    ) -> impl Iterator<Item = Result<&'a [u8], DecodeError>> + 'a + use<'a, '_> {
        let (at, n) = self.layout.shard_span(i);
        let piece: &'a [u8] = &self.bytes[at as usize..(at + n) as usize];
        self.layout.blocks(piece, at)
    }

    /// Checks every block of every shard (what open does while it builds
    /// the index, for the tools and tests that only check).
    pub(crate) fn check_all_blocks(&self) -> Result<(), DecodeError> {
        for i in 0..SHARDS {
            for b in self.shard_blocks(i) {
                b?;
            }
        }
        Ok(())
    }
}

/// Decodes a whole checkpoint file: header (magic, version, CRC, sane
/// values), the file's length as the header fixes it, and the footer. The
/// slot blocks are checked later, as they are read.
///
/// # Errors
/// [`DecodeError`] for anything that does not check out.
pub(crate) fn decode(bytes: &[u8]) -> Result<Decoded<'_>, DecodeError> {
    let layout = decode_header(bytes, bytes.len() as u64)?;
    let header_len = layout.shards[0].0 as usize;
    let end = layout.footer_at as usize + FOOTER_LEN;
    let footer = &bytes[layout.footer_at as usize..end];
    layout.check_footer(footer, le_u32(bytes, header_len - 4))?;
    let deltas = decode_deltas(&bytes[end..], end as u64)?;
    Ok(Decoded {
        layout,
        bytes,
        deltas: deltas.list,
    })
}

/// What one compaction changed, appended to the checkpoint before the
/// compaction deleted anything: the segments it retired, the ones it
/// wrote, and where each record it copied went. Replay applies the deltas
/// in order to the slots, so a checkpoint outlives compactions.
///
/// ```text
/// magic "IDLT", retired count (u32), written count (u32), move count (u32)
/// retired ids (u32 each), written segments (56 bytes each, as in the
/// header), moves (old segment u32, old offset u32, new segment u32, new
/// offset u32), CRC-32C of all of it
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Delta {
    pub retired: Vec<u32>,
    pub written: Vec<SegmentInfo>,
    /// `(old segment, old offset, new segment, new offset)` of each copy.
    pub moves: Vec<(u32, u32, u32, u32)>,
}

/// The magic at the start of a delta.
const DELTA_MAGIC: &[u8; 4] = b"IDLT";
/// A delta's fixed part: magic, counts, CRC.
const DELTA_FIXED_LEN: usize = 20;

/// Encodes a delta.
pub(crate) fn encode_delta(d: &Delta) -> Vec<u8> {
    let mut b = Vec::with_capacity(
        DELTA_FIXED_LEN
            + 4 * d.retired.len()
            + SEGMENT_ENTRY_LEN * d.written.len()
            + 16 * d.moves.len(),
    );
    b.extend_from_slice(DELTA_MAGIC);
    for n in [d.retired.len(), d.written.len(), d.moves.len()] {
        b.extend_from_slice(&(n as u32).to_le_bytes());
    }
    for id in &d.retired {
        b.extend_from_slice(&id.to_le_bytes());
    }
    for s in &d.written {
        encode_segment(s, &mut b);
    }
    for &(a, b1, c, e) in &d.moves {
        for v in [a, b1, c, e] {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// The deltas after a checkpoint's footer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Deltas {
    /// The whole deltas, in order.
    pub list: Vec<Delta>,
    /// Where a last delta cut short by the end of the file starts, if one
    /// is: a compaction stopped while appending it (a process killed in
    /// the middle of the write), so it never reached its manifest and
    /// deleted nothing. Such a delta is left out; see [`decode_deltas`].
    pub torn_at: Option<u64>,
}

/// Decodes the deltas in `b`, which starts at `offset` of the file.
///
/// A last delta that the end of `b` cuts short (its magic, or as much of
/// it as there is, and fewer bytes than its counts say) is not an error:
/// it is reported in [`Deltas::torn_at`] and left out. The compaction
/// that appended it had not made it durable, so it had not written its
/// manifest or deleted its inputs: the checkpoint without it still
/// describes the files (and an open checks them against it).
///
/// # Errors
/// A delta that is not last is cut short, or a magic or CRC is wrong.
pub(crate) fn decode_deltas(mut b: &[u8], mut offset: u64) -> Result<Deltas, DecodeError> {
    let mut out = Deltas::default();
    while !b.is_empty() {
        if b.len() < DELTA_FIXED_LEN && DELTA_MAGIC.starts_with(&b[..b.len().min(4)]) {
            out.torn_at = Some(offset);
            return Ok(out);
        }
        if b.len() < DELTA_FIXED_LEN || &b[..4] != DELTA_MAGIC {
            return Err(DecodeError::Damaged(offset, "not a compaction delta"));
        }
        let count = |at: usize| le_u32(b, at) as u64;
        let len = 16u64 + 4 * count(4) + SEGMENT_ENTRY_LEN as u64 * count(8) + 16 * count(12);
        if len + 4 > b.len() as u64 {
            out.torn_at = Some(offset);
            return Ok(out);
        }
        let len = len as usize;
        if crc32c::crc32c(&b[..len]) != le_u32(b, len) {
            return Err(DecodeError::Damaged(
                offset,
                "compaction delta checksum mismatch",
            ));
        }
        let mut at = 16;
        let mut d = Delta::default();
        for _ in 0..count(4) {
            d.retired.push(le_u32(b, at));
            at += 4;
        }
        for _ in 0..count(8) {
            d.written.push(decode_segment(b, at));
            at += SEGMENT_ENTRY_LEN;
        }
        for _ in 0..count(12) {
            d.moves.push((
                le_u32(b, at),
                le_u32(b, at + 4),
                le_u32(b, at + 8),
                le_u32(b, at + 12),
            ));
            at += 16;
        }
        out.list.push(d);
        b = &b[len + 4..];
        offset += len as u64 + 4;
    }
    Ok(out)
}

/// Appends the 56-byte entry of segment `s`.
fn encode_segment(s: &SegmentInfo, b: &mut Vec<u8>) {
    b.extend_from_slice(&s.id.to_le_bytes());
    b.extend_from_slice(&s.salt.to_le_bytes());
    for v in [s.data_len, s.file_len, s.dead, s.kept, s.hint, s.min_seq] {
        b.extend_from_slice(&v.to_le_bytes());
    }
}

/// The 56-byte segment entry at `at` of `b`.
fn decode_segment(b: &[u8], at: usize) -> SegmentInfo {
    let v = |j: usize| le_u64(b, at + 8 + 8 * j);
    SegmentInfo {
        id: le_u32(b, at),
        salt: le_u32(b, at + 4),
        data_len: v(0),
        file_len: v(1),
        dead: v(2),
        kept: v(3),
        hint: v(4),
        min_seq: v(5),
    }
}

/// The header's fields (its CRC checked, `count` bounded).
fn header_fields(b: &[u8], count: usize) -> Result<Header, DecodeError> {
    let active = le_u32(b, 48);
    let mut shard_slots = [0u64; SHARDS];
    for (i, n) in shard_slots.iter_mut().enumerate() {
        *n = le_u64(b, 52 + 8 * i);
    }
    let mut cuts = [0u64; SHARDS];
    for (i, c) in cuts.iter_mut().enumerate() {
        *c = le_u64(b, CUTS_AT + 8 * i);
    }
    let mut segments = Vec::with_capacity(count);
    for k in 0..count {
        segments.push(decode_segment(b, FIXED_HEADER_LEN + SEGMENT_ENTRY_LEN * k));
    }
    let active = match active {
        NO_ACTIVE => None,
        i => Some(
            segments
                .get(i as usize)
                .ok_or(DecodeError::Damaged(
                    48,
                    "active segment index out of range",
                ))?
                .id,
        ),
    };
    Ok(Header {
        slot_len: u16::from_le_bytes([b[10], b[11]]),
        seed: le_u64(b, 16),
        probe: le_u64(b, 24),
        max_seq: le_u64(b, 32),
        written_at_ms: le_u64(b, 40),
        active,
        shard_slots,
        cuts,
        segments,
    })
}

/// The values a writer never produces: refused even with a good CRC.
fn check_header(h: &Header) -> Result<(), DecodeError> {
    if h.slot_len == 0 {
        return Err(DecodeError::Damaged(10, "slot length 0"));
    }
    if h.max_seq >= 1 << 63 {
        return Err(DecodeError::Damaged(32, "sequence number of 2^63 or more"));
    }
    let mut last = None;
    for (k, s) in h.segments.iter().enumerate() {
        let at = (FIXED_HEADER_LEN + SEGMENT_ENTRY_LEN * k) as u64;
        if last.is_some_and(|l| l >= s.id) {
            return Err(DecodeError::Damaged(at, "segments not in ascending order"));
        }
        last = Some(s.id);
        if s.data_len > s.file_len || s.file_len > u64::from(u32::MAX) {
            return Err(DecodeError::Damaged(at, "segment lengths out of range"));
        }
        if Some(s.id) != h.active && s.data_len != s.file_len {
            return Err(DecodeError::Damaged(at, "a sealed segment with a tail"));
        }
    }
    let active_len = h
        .active
        .and_then(|id| h.segments.iter().find(|s| s.id == id))
        .map_or(0, |s| s.data_len);
    let lowest = if h.active.is_some() {
        crate::format::segment::SEGMENT_HEADER_LEN
    } else {
        0
    };
    for (i, &c) in h.cuts.iter().enumerate() {
        if c < lowest || c > active_len {
            return Err(DecodeError::Damaged(
                (CUTS_AT + 8 * i) as u64,
                "a shard's cut outside the active segment's data",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLOT: usize = 7;

    fn header(slots: [u64; SHARDS]) -> Header {
        Header {
            slot_len: SLOT as u16,
            seed: 0x1234_5678_9abc_def0,
            probe: 42,
            max_seq: 99,
            written_at_ms: 1_700_000_000_000,
            active: Some(3),
            shard_slots: slots,
            cuts: [500; SHARDS],
            segments: vec![
                SegmentInfo {
                    id: 1,
                    salt: 11,
                    data_len: 4096,
                    file_len: 4096,
                    dead: 100,
                    kept: 0,
                    hint: 300,
                    min_seq: 1,
                },
                SegmentInfo {
                    id: 3,
                    salt: 33,
                    data_len: 500,
                    file_len: 8192,
                    dead: 0,
                    kept: 7,
                    hint: 0,
                    min_seq: 50,
                },
            ],
        }
    }

    /// A checkpoint of `slots` per shard, slot bytes made from their
    /// shard and position.
    fn encode(h: &Header) -> Vec<u8> {
        let mut out = encode_header(h);
        let crc = header_crc(&out);
        for (i, &n) in h.shard_slots.iter().enumerate() {
            let slots: Vec<u8> = (0..n as usize * SLOT).map(|j| (i * 31 + j) as u8).collect();
            encode_slots(&slots, SLOT, &mut out);
        }
        out.extend_from_slice(&encode_footer(crc, h.total_slots()));
        out
    }

    fn small() -> (Header, Vec<u8>) {
        let mut slots = [0u64; SHARDS];
        slots[0] = 3;
        slots[5] = 1;
        slots[63] = 2;
        let h = header(slots);
        let b = encode(&h);
        (h, b)
    }

    #[test]
    fn round_trip() {
        let (h, b) = small();
        let d = decode(&b).expect("decodes");
        assert_eq!(*d.header(), h);
        d.check_all_blocks().expect("blocks check");
        let shard0: Vec<u8> = d
            .shard_blocks(0)
            .flat_map(|b| b.expect("ok").to_vec())
            .collect();
        assert_eq!(shard0, (0..3 * SLOT).map(|j| j as u8).collect::<Vec<_>>());
        assert_eq!(d.shard_blocks(1).count(), 0);
        let no_active = Header {
            active: None,
            segments: vec![h.segments[0]],
            cuts: [0; SHARDS],
            ..h.clone()
        };
        assert_eq!(
            decode(&encode(&no_active))
                .expect("decodes")
                .header()
                .clone(),
            no_active
        );
    }

    #[test]
    fn a_shard_longer_than_a_block_is_split_and_checked_per_block() {
        let mut slots = [0u64; SHARDS];
        let per = (BLOCK_BYTES / SLOT) as u64;
        slots[7] = per * 2 + 5;
        let h = header(slots);
        let mut b = encode(&h);
        let d = decode(&b).expect("decodes");
        let sizes: Vec<usize> = d.shard_blocks(7).map(|b| b.expect("ok").len()).collect();
        assert_eq!(
            sizes,
            vec![per as usize * SLOT, per as usize * SLOT, 5 * SLOT]
        );
        // Damage in the second block: the first still checks, the second not.
        let at = d.layout.shard_span(7).0 as usize + per as usize * SLOT + 4 + 10;
        b[at] ^= 1;
        let d = decode(&b).expect("the header still decodes");
        let r: Vec<bool> = d.shard_blocks(7).map(|b| b.is_ok()).collect();
        assert_eq!(r, vec![true, false, true]);
        assert!(d.check_all_blocks().is_err());
    }

    #[test]
    fn every_truncation_and_extension_is_an_error() {
        let (_, b) = small();
        for n in 0..b.len() {
            assert!(decode(&b[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = b.clone();
        longer.push(0);
        assert!(decode(&longer).is_err());
    }

    #[test]
    fn every_bit_flip_is_an_error() {
        let (_, b) = small();
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut x = b.clone();
                x[i] ^= 1 << bit;
                let caught = match decode(&x) {
                    Err(_) => true,
                    Ok(d) => d.check_all_blocks().is_err(),
                };
                assert!(caught, "flip of bit {bit} of byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn values_no_writer_produces_are_refused_despite_a_good_crc() {
        let (h, _) = small();
        let mut sealed_tail = h.clone();
        sealed_tail.segments[0].file_len += 1;
        let mut unordered = h.clone();
        unordered.segments.swap(0, 1);
        let mut huge = h.clone();
        huge.shard_slots[0] = u64::MAX / 2;
        let mut seq = h.clone();
        seq.max_seq = 1 << 63;
        let mut cut_past = h.clone();
        cut_past.cuts[7] = 501;
        let mut cut_in_header = h.clone();
        cut_in_header.cuts[0] = 31;
        for bad in [sealed_tail, unordered, huge, seq, cut_past, cut_in_header] {
            assert!(decode(&encode_lossy(&bad)).is_err(), "{bad:?}");
        }
        let mut v = encode(&h);
        v[8] = 1;
        assert_eq!(decode(&v).err(), Some(DecodeError::UnsupportedVersion(1)));
        assert_eq!(decode(b"CAIRNSEG").err(), Some(DecodeError::NotACheckpoint));
    }

    /// The header and footer of `h` without its slots (for counts too
    /// large to encode).
    fn encode_lossy(h: &Header) -> Vec<u8> {
        let mut out = encode_header(h);
        let crc = header_crc(&out);
        out.extend_from_slice(&encode_footer(crc, h.total_slots()));
        out
    }

    fn two_deltas() -> (Vec<Delta>, Vec<u8>) {
        let seg = |id| SegmentInfo {
            id,
            salt: 7,
            data_len: 100,
            file_len: 100,
            dead: 0,
            kept: 0,
            hint: 0,
            min_seq: 1,
        };
        let d = vec![
            Delta {
                retired: vec![1, 2],
                written: vec![seg(9)],
                moves: vec![(1, 32, 9, 32), (2, 64, 9, 80)],
            },
            Delta {
                retired: vec![9],
                written: vec![seg(10), seg(11)],
                moves: vec![(9, 32, 10, 32)],
            },
        ];
        let mut b = encode_delta(&d[0]);
        b.extend_from_slice(&encode_delta(&d[1]));
        (d, b)
    }

    #[test]
    fn deltas_round_trip() {
        let (d, b) = two_deltas();
        let got = decode_deltas(&b, 1000).expect("decode");
        assert_eq!(got.list, d);
        assert_eq!(got.torn_at, None);
    }

    /// A process killed while appending a delta leaves it cut short at the
    /// end: the deltas before it are read, it is left out and reported.
    /// Anything else that does not check out is damage.
    #[test]
    fn a_last_delta_cut_short_is_left_out_and_all_else_is_damage() {
        let (d, b) = two_deltas();
        let first = encode_delta(&d[0]).len();
        for n in 0..b.len() {
            let got = decode_deltas(&b[..n], 1000).expect("a cut is a torn tail");
            let (whole, torn) = if n < first {
                (0, n > 0)
            } else {
                (1, n > first)
            };
            assert_eq!(got.list, d[..whole].to_vec(), "cut at {n}");
            let at = if whole == 0 {
                1000
            } else {
                1000 + first as u64
            };
            assert_eq!(got.torn_at, torn.then_some(at), "cut at {n}");
        }
        // A flipped bit is an error, or (in a count, which then claims more
        // bytes than there are) reads as a torn tail: the deltas before it
        // and none changed. The open then checks the files against the
        // checkpoint without it, as after a real torn tail.
        for i in 0..b.len() {
            for bit in 0..8 {
                let mut x = b.clone();
                x[i] ^= 1 << bit;
                if let Ok(got) = decode_deltas(&x, 0) {
                    let whole = got.list.len();
                    assert!(got.torn_at.is_some(), "bit {bit} of byte {i}");
                    assert_eq!(got.list, d[..whole].to_vec(), "bit {bit} of byte {i}");
                    let count = if whole == 0 {
                        4..16
                    } else {
                        first + 4..first + 16
                    };
                    assert!(count.contains(&i), "bit {bit} of byte {i}");
                }
            }
        }
        // Bytes that are no delta, or a torn delta followed by another,
        // are errors.
        for junk in [&[0u8][..], b"X", b"IDLX", b"IDL\0"] {
            let mut x = b.clone();
            x.extend_from_slice(junk);
            assert!(decode_deltas(&x, 0).is_err(), "{junk:?} after the deltas");
        }
        let mut x = b[..first - 3].to_vec();
        x.extend_from_slice(&encode_delta(&d[1]));
        assert!(decode_deltas(&x, 0).is_err(), "a torn delta, then another");
    }
}
