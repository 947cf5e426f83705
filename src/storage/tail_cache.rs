//! An in-memory copy of the newest bytes of the active segment.
//!
//! Sealed segments are read through memory maps, but the active segment is
//! read with `pread`, and a system call costs about a microsecond on a
//! virtual machine: more than the whole rest of a read. Recently written
//! keys are the ones read most (sessions, cache entries), so the writer
//! also copies every append into this cache, and reads of the last
//! `Options::tail_cache_bytes` of the active segment are served from memory
//! without a system call. Older parts of the active segment fall back to
//! `pread`. It is plain safe Rust: a `RwLock` over a deque of chunks.

use std::collections::VecDeque;
use std::sync::RwLock;

use std::sync::Arc;

use crate::error::Result;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::fs::{self, VFile};
use crate::util::locks;

const CHUNK: u64 = 1 << 20;

struct Inner {
    /// File offset of the first byte of `chunks[0]`; a multiple of CHUNK.
    base: u64,
    /// Each chunk holds CHUNK bytes except the last, which may be shorter.
    chunks: VecDeque<Vec<u8>>,
    /// File offset just past the last cached byte.
    end: u64,
}

impl Inner {
    /// An empty cache whose next byte is at `offset`.
    fn empty_at(offset: u64) -> Inner {
        let base = offset - offset % CHUNK;
        let mut chunks = VecDeque::new();
        chunks.push_back(vec![0u8; (offset - base) as usize]);
        Inner {
            // Bytes before `offset` in the first chunk are not valid.
            base: if offset == base { base } else { offset },
            chunks,
            end: offset,
        }
    }
}

/// The cache of one active segment.
pub(crate) struct TailCache {
    inner: RwLock<Inner>,
    max_chunks: usize,
}

impl TailCache {
    /// A cache holding about `capacity` bytes, starting empty at `offset`.
    pub(crate) fn new(capacity: u64, offset: u64) -> TailCache {
        TailCache {
            inner: RwLock::new(Inner::empty_at(offset)),
            max_chunks: capacity.div_ceil(CHUNK).max(1) as usize + 1,
        }
    }

    /// Records `bytes` written at `offset`, which must be the cache's end.
    /// A gap (which the writer never produces) resets the cache.
    pub(crate) fn append(&self, offset: u64, mut bytes: &[u8]) {
        let mut g = locks::write(&self.inner);
        if offset != g.end {
            *g = Inner::empty_at(offset);
        }
        while !bytes.is_empty() {
            let need_new = g.chunks.back().is_none_or(|c| c.len() as u64 == CHUNK);
            if need_new {
                g.chunks.push_back(Vec::with_capacity(CHUNK as usize));
                while g.chunks.len() > self.max_chunks {
                    // The first chunk may have started mid-chunk; the next
                    // one starts at the following multiple of CHUNK.
                    let first = g.base - g.base % CHUNK;
                    g.chunks.pop_front();
                    g.base = first + CHUNK;
                }
            }
            let Some(last) = g.chunks.back_mut() else {
                return;
            };
            let room = (CHUNK as usize) - last.len();
            let n = room.min(bytes.len());
            last.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            g.end += n as u64;
        }
    }

    /// Records `bytes`, which lie in the file right before the cache's
    /// first byte (at `offset..offset + bytes.len()`, ending where the
    /// cache starts): how an open fills the cache in the background instead
    /// of reading the segment's tail before it returns. Returns false, and
    /// changes nothing, when they do not end where the cache starts (an
    /// append reset it, or it dropped its oldest chunk) or when they would
    /// take it past its capacity.
    pub(crate) fn prepend(&self, offset: u64, bytes: &[u8]) -> bool {
        let mut g = locks::write(&self.inner);
        let Some(end) = offset.checked_add(bytes.len() as u64) else {
            return false;
        };
        if end != g.base || bytes.is_empty() {
            return false;
        }
        let first = g.base - g.base % CHUNK;
        let new_chunks = if offset >= first {
            0
        } else {
            (first - offset).div_ceil(CHUNK) as usize
        };
        if g.chunks.len() + new_chunks > self.max_chunks {
            return false;
        }
        let mut at = g.base; // bytes[..at - offset] are still to place
        while at > offset {
            let start = at - at % CHUNK;
            let (lo, chunk_start) = if at.is_multiple_of(CHUNK) {
                // A new chunk in front, for [at - CHUNK, at).
                let chunk_start = at - CHUNK;
                g.chunks.push_front(vec![0u8; CHUNK as usize]);
                (offset.max(chunk_start), chunk_start)
            } else {
                (offset.max(start), start)
            };
            let Some(chunk) = g.chunks.front_mut() else {
                return false;
            };
            let src = &bytes[(lo - offset) as usize..(at - offset) as usize];
            chunk[(lo - chunk_start) as usize..(at - chunk_start) as usize].copy_from_slice(src);
            at = lo;
        }
        g.base = offset;
        true
    }

    /// Calls `f` on the cached bytes `offset..offset + len` without copying
    /// them when they lie in one chunk (the common case); otherwise on a
    /// copy. `None` when the range is not cached.
    pub(crate) fn with_bytes<R>(
        &self,
        offset: u64,
        len: u64,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        {
            let g = locks::read(&self.inner);
            let end = offset.checked_add(len)?;
            if offset < g.base || end > g.end {
                return None;
            }
            let first = g.base - g.base % CHUNK;
            let idx = ((offset - first) / CHUNK) as usize;
            let within = ((offset - first) % CHUNK) as usize;
            let chunk = g.chunks.get(idx)?;
            if let Some(bytes) = chunk.get(within..within + len as usize) {
                return Some(f(bytes));
            }
        }
        self.read(offset, len).map(|b| f(&b))
    }

    /// Copies `len` bytes at `offset` out of the cache, if it holds them all.
    pub(crate) fn read(&self, offset: u64, len: u64) -> Option<Vec<u8>> {
        let g = locks::read(&self.inner);
        let end = offset.checked_add(len)?;
        if offset < g.base || end > g.end {
            return None;
        }
        let first = g.base - g.base % CHUNK;
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        while at < end {
            let idx = ((at - first) / CHUNK) as usize;
            let within = ((at - first) % CHUNK) as usize;
            let chunk = g.chunks.get(idx)?;
            let n = (chunk.len() - within).min((end - at) as usize);
            out.extend_from_slice(&chunk[within..within + n]);
            at += n as u64;
        }
        Some(out)
    }
}

/// Where a cache of `capacity` bytes over a segment whose records end at
/// `len` starts when it holds their newest bytes (never in the header).
pub(crate) fn seed_start(capacity: u64, len: u64) -> u64 {
    len.saturating_sub(capacity)
        .max(SEGMENT_HEADER_LEN.min(len))
}

/// The tail cache of an active segment whose records end at `len`, seeded
/// with the newest bytes already in `file`; `None` when `capacity` is 0.
pub(crate) fn seeded(capacity: u64, file: &dyn VFile, len: u64) -> Result<Option<Arc<TailCache>>> {
    if capacity == 0 {
        return Ok(None);
    }
    let start = seed_start(capacity, len);
    let cache = TailCache::new(capacity, start);
    let mut buf = vec![0u8; (len - start) as usize];
    fs::read_exact_at(file, &mut buf, start)?;
    cache.append(start, &buf);
    Ok(Some(Arc::new(cache)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(from: u64, len: u64) -> Vec<u8> {
        (from..from + len).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn bytes_prepended_in_pieces_read_back_with_later_appends() {
        // Empty at an offset inside a chunk, as an open leaves it; an
        // append, then the older bytes in pieces, newest first.
        let len = 3 * CHUNK + 100;
        let c = TailCache::new(8 * CHUNK, len);
        c.append(len, &pattern(len, 50));
        let mut base = len;
        for piece in [CHUNK / 3, CHUNK, 7, CHUNK + 5, 2 * CHUNK] {
            let from = base.saturating_sub(piece).max(32);
            assert!(
                c.prepend(from, &pattern(from, base - from)),
                "piece {piece}"
            );
            base = from;
            assert_eq!(
                c.read(base, len + 50 - base),
                Some(pattern(base, len + 50 - base))
            );
            assert_eq!(c.read(base - 1, 2), None, "before the start");
        }
        assert_eq!(base, 32);
        assert_eq!(
            c.with_bytes(CHUNK - 3, 10, <[u8]>::to_vec),
            Some(pattern(CHUNK - 3, 10))
        );
        c.append(len + 50, &pattern(len + 50, CHUNK));
        assert_eq!(
            c.read(32, len + 50 + CHUNK - 32),
            Some(pattern(32, len + 50 + CHUNK - 32))
        );
    }

    #[test]
    fn a_prepend_that_does_not_end_at_the_start_or_does_not_fit_changes_nothing() {
        let c = TailCache::new(2 * CHUNK, 4 * CHUNK + 10);
        assert!(!c.prepend(4 * CHUNK, &pattern(4 * CHUNK, 5)), "a gap");
        assert!(!c.prepend(4 * CHUNK, &[]), "nothing");
        // Three chunks in front would pass the capacity (2 chunks + 1).
        let from = CHUNK;
        assert!(!c.prepend(from, &pattern(from, 3 * CHUNK + 10)));
        assert_eq!(c.read(4 * CHUNK, 10), None, "nothing was added");
        assert!(c.prepend(3 * CHUNK, &pattern(3 * CHUNK, CHUNK + 10)));
        assert_eq!(
            c.read(3 * CHUNK, CHUNK + 10),
            Some(pattern(3 * CHUNK, CHUNK + 10))
        );
        // An append that resets the cache makes an old piece not fit.
        c.append(9 * CHUNK, &pattern(9 * CHUNK, 5));
        assert!(!c.prepend(2 * CHUNK, &pattern(2 * CHUNK, CHUNK)));
        assert_eq!(c.read(9 * CHUNK, 5), Some(pattern(9 * CHUNK, 5)));
    }

    #[test]
    fn reads_back_what_was_appended_across_chunks() {
        let c = TailCache::new(4 * CHUNK, 32);
        let mut at = 32;
        for len in [10u64, CHUNK, 3 * CHUNK / 2, 7] {
            c.append(at, &pattern(at, len));
            at += len;
        }
        assert_eq!(c.read(32, 10), Some(pattern(32, 10)));
        assert_eq!(c.read(40, CHUNK + 5), Some(pattern(40, CHUNK + 5)));
        assert_eq!(c.read(at - 7, 7), Some(pattern(at - 7, 7)));
        assert_eq!(c.read(at - 7, 8), None, "past the end");
        assert_eq!(c.read(0, 8), None, "before the start");
        // The borrowed path (inside one chunk) and the copying one (across
        // chunks) see the same bytes.
        assert_eq!(c.with_bytes(32, 10, <[u8]>::to_vec), Some(pattern(32, 10)));
        assert_eq!(
            c.with_bytes(40, CHUNK + 5, <[u8]>::to_vec),
            Some(pattern(40, CHUNK + 5))
        );
        assert_eq!(c.with_bytes(at - 7, 8, <[u8]>::to_vec), None);
    }

    #[test]
    fn old_bytes_are_evicted() {
        let c = TailCache::new(2 * CHUNK, 0);
        let total = 6 * CHUNK + 123;
        let mut at = 0;
        while at < total {
            let len = 4096.min(total - at);
            c.append(at, &pattern(at, len));
            at += len;
        }
        assert_eq!(c.read(0, 10), None);
        assert_eq!(
            c.read(total - 2 * CHUNK, 2 * CHUNK),
            Some(pattern(total - 2 * CHUNK, 2 * CHUNK))
        );
        assert!(c.inner.read().map(|g| g.chunks.len()).unwrap_or(0) <= 4);
    }

    #[test]
    fn a_gap_resets() {
        let c = TailCache::new(CHUNK, 0);
        c.append(0, &pattern(0, 100));
        c.append(200, &pattern(200, 100));
        assert_eq!(c.read(0, 10), None);
        assert_eq!(c.read(200, 100), Some(pattern(200, 100)));
    }
}
