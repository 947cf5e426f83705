//! Opening a store: recovery, then the writer on the active segment.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use crate::error::Result;
use crate::format::names;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::fs::{OpenMode, Vfs};
use crate::options::Options;
use crate::recovery::{self, Recovered};
use crate::storage;
use crate::storage::feed_signal::{FeedSignal, LogEnd};
use crate::storage::group_commit::{ActiveSegment, GroupCommit};
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;
use crate::storage::tail_cache::{self, TailCache};
use crate::util::locks::lock;

use super::warm_up::TailSeed;
use super::{BgState, Core, Writer};

impl Core {
    pub(crate) fn open(dir: &Path, opts: Options) -> Result<Arc<Core>> {
        // A backup cut short is not a store: never open (or write to) it.
        crate::tools::backup::check_complete(&*opts.vfs, dir)?;
        let mut r = recovery::recover(dir, &opts)?;
        let end = LogEnd {
            segment: r.active.as_ref().map_or(0, |a| a.id),
            offset: r.active.as_ref().map_or(SEGMENT_HEADER_LEN, |a| a.len),
            seq: r.max_seq,
        };
        let (writer, group, tail_seed, seal) = if opts.read_only {
            open_active_reader(dir, &opts, &mut r)?;
            (None, None, None, false)
        } else {
            let (writer, group, seed, seal) = start_writer(dir, &opts, &mut r)?;
            (Some(Mutex::new(writer)), Some(group), seed, seal)
        };
        // The writer may have started a new segment.
        let end = match &writer {
            Some(w) => {
                let w = crate::util::locks::lock(w);
                LogEnd {
                    segment: w.active.id,
                    offset: w.active.len.load(std::sync::atomic::Ordering::Acquire),
                    seq: end.seq,
                }
            }
            None => end,
        };
        log::info!(
            "opened {} with {} keys in {:?} ({} segments from hints, {} scanned; \
             {} expired while closed, for the first sweep to log)",
            dir.display(),
            r.keydir.raw_len(),
            r.started.elapsed(),
            r.report.segments_from_hints,
            r.report.segments_scanned,
            r.expired_kept
        );

        let needs_hint = r.needs_hint;
        let core = Arc::new(Core {
            dir: dir.to_path_buf(),
            opts,
            keydir: r.keydir,
            segments: RwLock::new(r.segments),
            seg_stats: Mutex::new(r.seg_stats),
            writer,
            group,
            feed: Arc::new(FeedSignal::new(end)),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(r.lock),
            next_file_id: AtomicU32::new(r.next_file_id),
            compaction: Mutex::new(()),
            checkpointing: AtomicBool::new(false),
            ckpt_cover: Mutex::new(r.checkpoint_cover.map(|(active, sealed)| {
                super::CheckpointCover {
                    active,
                    sealed: sealed.into_iter().collect(),
                }
            })),
            report: r.report,
            bytes_written: AtomicU64::new(0),
            expired_removed: AtomicU64::new(0),
            bg: Mutex::new(BgState {
                sweep_at_start: r.expired_kept > 0,
                ckpt_owed: r.log_after_checkpoint,
                ckpt_len: r.checkpoint_len,
                ..BgState::default()
            }),
            bg_cv: Condvar::new(),
            stall: AtomicBool::new(false),
            stall_lock: Mutex::new(()),
            stall_cv: Condvar::new(),
            stalls: AtomicU64::new(0),
            stall_ns: AtomicU64::new(0),
            warm_up: super::warm_up::WarmUp::with_tail_seed(tail_seed),
        });
        // The hint of a segment the open sealed (as at a roll: inline when
        // tests ask for a fixed order of file operations).
        if let Some(id) = needs_hint {
            if core.opts.is_deterministic() {
                core.write_hint(id);
            } else {
                lock(&core.bg).hint_jobs.push(id);
            }
        }
        if seal {
            core.seal_at_open()?;
        }
        Ok(core)
    }
}

/// Whether a writable open seals the active segment it takes over (of
/// `len` bytes) and starts a new one: when the tail cache cannot hold all
/// of its records. Reads of the active segment past the cache take a
/// `pread` (about a microsecond here, more than the rest of a get), while
/// a sealed segment is read through its map; after a reopen, a get of a key
/// written before it would otherwise pay that for the whole older part of
/// the segment. The sealed segment is at least `tail_cache_bytes` long, so
/// reopening does not leave small segments behind.
fn seals_at_open(opts: &Options, len: u64) -> bool {
    opts.use_mmap
        && opts.tail_cache_bytes > 0
        && len.saturating_sub(SEGMENT_HEADER_LEN) > opts.tail_cache_bytes
}

/// Read-only: opens the active segment, if any, for reading (a snapshot
/// reads it through the file recovery held open).
fn open_active_reader(dir: &Path, opts: &Options, r: &mut Recovered) -> Result<()> {
    if let Some(a) = &r.active {
        let path = names::segment_path(dir, a.id);
        let f = match &a.file {
            Some(f) => f.clone(),
            None => opts.vfs.open(&path, OpenMode::Read)?,
        };
        r.segments
            .insert(a.id, Arc::new(Segment::with_file(path, f, a.salt)));
    }
    Ok(())
}

/// The writer and its group commit, on the active segment recovery left,
/// or on a new segment; the part of its tail the warm-up is to read into
/// the tail cache (when there is a warm-up: else the open reads it); and
/// whether the open is to seal that segment ([`seals_at_open`]).
fn start_writer(
    dir: &Path,
    opts: &Options,
    r: &mut Recovered,
) -> Result<(Writer, GroupCommit, Option<TailSeed>, bool)> {
    let vfs: &dyn Vfs = &*opts.vfs;
    let (id, len, salt, allocated, closed_clean) = match &r.active {
        Some(a) => (a.id, a.len, a.salt, a.allocated, a.closed_clean),
        None => {
            let id = r.next_file_id;
            r.next_file_id += 1;
            let (_, salt) = storage::segment::create(vfs, dir, id)?;
            r.seg_stats.insert(id, SegmentSpace::empty());
            (id, SEGMENT_HEADER_LEN, salt, SEGMENT_HEADER_LEN, false)
        }
    };
    let path = names::segment_path(dir, id);
    let file = vfs.open(&path, OpenMode::ReadWrite)?;
    if r.active.is_some() {
        // What recovery read may be only in the page cache (after a
        // process crash). Make it durable: the group commit and the
        // sync marks count it as synced from here on.
        file.sync_data()?;
    }
    let warm_up = opts.warm_up_after_open && !opts.is_deterministic();
    let seal = seals_at_open(opts, len);
    let (tail, seed) = if seal {
        // Sealed before the open returns: nothing to cache.
        (None, None)
    } else if warm_up && opts.tail_cache_bytes > 0 {
        let cache = Arc::new(TailCache::new(opts.tail_cache_bytes, len));
        let start = tail_cache::seed_start(opts.tail_cache_bytes, len);
        let seed = (start < len).then(|| TailSeed {
            cache: cache.clone(),
            file: file.clone(),
            start,
            end: len,
        });
        (Some(cache), seed)
    } else {
        (
            tail_cache::seeded(opts.tail_cache_bytes, &*file, len)?,
            None,
        )
    };
    r.segments.insert(
        id,
        Arc::new(Segment::with_tail_cache(
            path,
            file.clone(),
            tail.clone(),
            salt,
        )),
    );
    let active = Arc::new(ActiveSegment {
        id,
        salt,
        file,
        tail,
        len: AtomicU64::new(len),
        synced: AtomicU64::new(len),
    });
    let writer = Writer {
        active: active.clone(),
        // Below 2^63: recovery treats larger sequence numbers as damage.
        next_seq: r.max_seq + 1,
        allocated,
        preallocation_off: false,
        buf: Vec::with_capacity(4096),
        dead: Vec::new(),
        marked: 0,
        mark_bytes: 0,
        closed_end: if closed_clean { len } else { 0 },
    };
    Ok((writer, GroupCommit::new(active), seed, seal))
}
