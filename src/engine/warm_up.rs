//! The warm-up after open: a thread that reads the whole log once, newest
//! segment first, so that the first reads after a cold restart find their
//! pages in the page cache (see `Options::warm_up_after_open`, and
//! "Background threads" in docs/design.md).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::format::names;
use crate::fs::{self, OpenMode, VFile};
use crate::storage::tail_cache::TailCache;
use crate::util::locks::{self, lock};

use super::Core;

/// How much the warm-up reads at a time: large enough for the disk to
/// stream, small enough that a close waits at most one such read.
const CHUNK_BYTES: usize = 2 << 20;

/// What the warm-up did, for `Stats`, and what it still has to do first.
#[derive(Default)]
pub(crate) struct WarmUp {
    /// Bytes of segment files read.
    bytes: AtomicU64,
    /// How long it took (0: not finished).
    ns: AtomicU64,
    /// The active segment's tail cache, left empty by the open, to fill
    /// before anything else.
    tail_seed: Mutex<Option<TailSeed>>,
}

impl WarmUp {
    /// A warm-up that first fills `seed`'s tail cache.
    pub(crate) fn with_tail_seed(seed: Option<TailSeed>) -> WarmUp {
        WarmUp {
            tail_seed: Mutex::new(seed),
            ..WarmUp::default()
        }
    }
}

/// The bytes `start..end` of the active segment, which the open did not
/// read into its tail cache (the cache starts empty at `end`): reading
/// up to 16 MiB before returning was more than half of a 1M-key open from
/// a checkpoint with the page cache dropped.
pub(crate) struct TailSeed {
    pub cache: Arc<TailCache>,
    pub file: Arc<dyn VFile>,
    pub start: u64,
    pub end: u64,
}

/// How much of the tail the warm-up reads and hands to the cache at once
/// (the cache's lock is held while it copies that much).
const TAIL_PIECE_BYTES: u64 = 1 << 20;

/// How the warm-up of one segment ended.
enum Ended {
    /// It read the segment, or found it gone (compacted away).
    Segment,
    /// The store is closing: the warm-up stops.
    Stopped,
}

impl Core {
    /// Whether this handle warms up after open: the option, and never when
    /// file operations must happen in a fixed order (the crash tests'
    /// deterministic mode), where a thread reading at its own pace would
    /// change which operation a simulated crash falls on.
    pub(crate) fn warms_up(&self) -> bool {
        self.opts.warm_up_after_open && !self.opts.is_deterministic()
    }

    /// Bytes read by the warm-up so far, and how long it took (zero until
    /// it has finished).
    pub(crate) fn warm_up_progress(&self) -> (u64, Duration) {
        (
            self.warm_up.bytes.load(Ordering::Relaxed),
            Duration::from_nanos(self.warm_up.ns.load(Ordering::Relaxed)),
        )
    }

    /// Reads every segment this handle holds, the newest first, up to the
    /// length it had at open (the active one up to its current end, not
    /// into its preallocated zeros), through the file layer, and throws
    /// the bytes away. Stops at the next chunk once the store is closing;
    /// skips a segment compaction deleted (the bytes are not needed any
    /// more). A failed read only ends that segment's warm-up: it is logged
    /// at debug level, as a read that matters reports its own error.
    pub(crate) fn warm_up(&self) {
        let started = Instant::now();
        let seed = lock(&self.warm_up.tail_seed).take();
        if let Some(seed) = seed {
            self.fill_tail_cache(&seed);
        }
        let ids: Vec<u32> = locks::read(&self.segments).keys().rev().copied().collect();
        let plan: Vec<(u32, u64)> = {
            let stats = lock(&self.seg_stats);
            ids.iter()
                .filter_map(|id| stats.get(id).map(|s| (*id, s.total)))
                .collect()
        };
        let mut buf = vec![0u8; CHUNK_BYTES];
        for (id, len) in plan {
            match self.warm_up_segment(id, len, &mut buf) {
                Ok(Ended::Segment) => {}
                Ok(Ended::Stopped) => {
                    log::debug!(
                        "warm-up of {} stopped by close after {} bytes",
                        self.dir.display(),
                        self.warm_up.bytes.load(Ordering::Relaxed)
                    );
                    return;
                }
                Err(e) => log::debug!(
                    "warm-up of {} skips the rest of segment {id}: {e}",
                    self.dir.display()
                ),
            }
        }
        let took = started.elapsed();
        self.warm_up.ns.store(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1),
            Ordering::Relaxed,
        );
        log::info!(
            "warmed up {}: read {} bytes of segments in {took:?}",
            self.dir.display(),
            self.warm_up.bytes.load(Ordering::Relaxed)
        );
    }

    /// Reads segment `id` up to `len` bytes, a chunk at a time.
    fn warm_up_segment(&self, id: u32, len: u64, buf: &mut [u8]) -> io::Result<Ended> {
        if self.warm_up_stopped() {
            return Ok(Ended::Stopped);
        }
        let path = names::segment_path(&self.dir, id);
        let file = match self.opts.vfs.open(&path, OpenMode::Read) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Ended::Segment),
            Err(e) => return Err(e),
        };
        let mut at = 0u64;
        while at < len {
            if self.warm_up_stopped() {
                return Ok(Ended::Stopped);
            }
            if !locks::read(&self.segments).contains_key(&id) {
                return Ok(Ended::Segment); // compacted away meanwhile
            }
            let want = usize::try_from(len - at).map_or(buf.len(), |n| n.min(buf.len()));
            let n = match file.read_at(&mut buf[..want], at) {
                Ok(0) => break, // shorter than it was: nothing more to read
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            at += n as u64;
            self.warm_up.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(Ended::Segment)
    }

    /// Fills the tail cache the open left empty, newest bytes first, a
    /// piece at a time; stops when the store closes, a read fails (logged
    /// at debug level: reads of those bytes fall back to the file), or the
    /// cache takes no more (the writer moved on to another segment, or
    /// its appends filled it).
    fn fill_tail_cache(&self, seed: &TailSeed) {
        let mut end = seed.end;
        let mut buf = Vec::new();
        while end > seed.start && !self.warm_up_stopped() {
            let from = end.saturating_sub(TAIL_PIECE_BYTES).max(seed.start);
            buf.resize((end - from) as usize, 0);
            if let Err(e) = fs::read_exact_at(&*seed.file, &mut buf, from) {
                log::debug!("{}: filling the tail cache: {e}", self.dir.display());
                return;
            }
            if !seed.cache.prepend(from, &buf) {
                return;
            }
            end = from;
        }
    }

    /// Whether the store is closing (or closed): the warm-up stops.
    fn warm_up_stopped(&self) -> bool {
        lock(&self.bg).stop || self.closed.load(Ordering::Acquire)
    }
}
