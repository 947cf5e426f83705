//! Recovery: rebuilding the keydir from hints and segments on open.
//!
//! * Sealed segments are loaded from their hint file when it is valid, and
//!   otherwise scanned record by record (then the hint is rewritten). Any
//!   damage in a sealed segment is [`Error::Corruption`] unless the caller
//!   asked to salvage.
//! * The active (highest-numbered) segment is always scanned. A damaged
//!   record with no valid record after it is a torn tail (the signature of a
//!   crash) and is cut off. A damaged record *followed by* a valid one is
//!   corruption.
//! * A batch without its commit record is discarded whole.
//! * Sequence numbers decide which version of a key wins, never file ids.
//!
//! [`recover`] is the list of steps; each lives beside it:
//!
//! * `dir.rs`: creating, locking and listing the directory, stray
//!   temporary files, finding the active segment;
//! * `checkpoint.rs`: the index checkpoint: checking it against the
//!   directory, and the keydir from its slots (an open that cannot use it
//!   deletes it before it writes anything);
//! * `replay.rs`: the records written after a checkpoint, applied to the
//!   keydir it gave;
//! * `interrupted.rs`: finishing an interrupted compaction;
//! * `load.rs`: loading segments (hints or scans) in parallel;
//! * `pin.rs`, `snapshot.rs`: a snapshot's open, on a consistent set of
//!   files held open beside a live writer;
//! * `scan.rs`: scanning one segment: batches, sync marks, damage;
//! * `active.rs`: the active segment's torn tail, and sealing it after
//!   salvage skipped damage in it or when it is of an older format version;
//! * `merge.rs`: building the keydir;
//! * `segments.rs`: per-segment accounting, readers for sealed segments;
//! * `report.rs`, `segment_load.rs`: the types the steps share.
//!
//! [`Error::Corruption`]: crate::Error::Corruption

mod active;
pub(crate) mod checkpoint;
mod dir;
mod interrupted;
mod load;
mod merge;
mod pin;
mod replay;
mod report;
mod scan;
mod segment_load;
mod segments;
mod snapshot;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::error::Result;
use crate::format::segment::SEGMENT_HEADER_LEN;
use crate::fs::{LockGuard, Vfs};
use crate::index::keydir::KeyDir;
use crate::options::Options;
use crate::storage::segment::Segment;
use crate::storage::space::SegmentSpace;

use active::{fix_active_tail, seal_active_if_needed};
use dir::{ensure_dir, list_and_clean, lock_dir};
use interrupted::finish_interrupted;
use load::load_all;
use merge::{build_keydir, ExpiredAtOpen, SORTED_MERGE_MIN_ENTRIES};
use segments::{open_sealed_segments, segment_stats};

pub(crate) use dir::{find_active, is_store, list_dir, Listing};
pub(crate) use load::{dedup_newest, scan_and_write_hint};
pub(crate) use pin::{back_off, io_at, pin, Pinned, PinnedSegment};
pub use report::{CheckpointUse, RecoveryReport, SkippedRange};
pub(crate) use scan::{find_next_valid, scan_segment};
pub(crate) use segment_load::SegmentLoad;

/// What recovery hands the engine.
pub(crate) struct Recovered {
    /// The directory lock (`None` for a snapshot).
    pub lock: Option<LockGuard>,
    pub report: RecoveryReport,
    pub keydir: KeyDir,
    /// Size and dead bytes of every loaded segment.
    pub seg_stats: BTreeMap<u32, SegmentSpace>,
    /// Every segment open for reading but the active one.
    pub segments: BTreeMap<u32, Arc<Segment>>,
    /// The segment to go on writing in (`None`: there is none, or salvage
    /// sealed it).
    pub active: Option<RecoveredActive>,
    /// The next unused segment id.
    pub next_file_id: u32,
    /// The highest sequence number loaded (0: none).
    pub max_seq: u64,
    /// Keys that expired while the store was closed, kept in the keydir
    /// (invisible to reads) for the first expiry sweep to log.
    pub expired_kept: u64,
    /// A segment the open sealed that has no hint yet, for the background
    /// thread to write one.
    pub needs_hint: Option<u32>,
    /// Log bytes no index checkpoint covers: what an open after a crash
    /// now would read besides the checkpoint (all of the log when the open
    /// used none).
    pub log_after_checkpoint: u64,
    /// The size of the checkpoint the open used (0: none).
    pub checkpoint_len: u64,
    /// What the checkpoint the open used and kept covers: its active
    /// segment, and the others.
    pub checkpoint_cover: Option<(u32, Vec<u32>)>,
    /// When loading the segments started (for the log line of open).
    pub started: Instant,
}

/// The active segment as recovery left it.
pub(crate) struct RecoveredActive {
    pub id: u32,
    /// Its length: the end of its last good record (at least the header).
    pub len: u64,
    pub salt: u32,
    /// How much of its file exists and is durable (see `Writer::allocated`).
    pub allocated: u64,
    /// It ends with the sync marks of a clean close.
    pub closed_clean: bool,
    /// A snapshot's active segment: the file it holds open (read it
    /// through this, never by name).
    pub file: Option<Arc<dyn crate::fs::VFile>>,
}

impl RecoveredActive {
    fn of(load: &SegmentLoad, allocated: u64) -> RecoveredActive {
        RecoveredActive {
            id: load.id,
            len: load.len.max(SEGMENT_HEADER_LEN),
            salt: load.salt,
            allocated,
            closed_clean: load.closed_clean,
            file: None,
        }
    }
}

/// Opens the store directory as far as the engine's writer: every step
/// below runs in this order, and the crash tests depend on the order of
/// their file operations.
pub(crate) fn recover(dir: &Path, opts: &Options) -> Result<Recovered> {
    if opts.snapshot {
        let mut r = snapshot::recover_snapshot(dir, opts)?;
        r.report.checkpoint = CheckpointUse::NotTried;
        return Ok(r);
    }
    let vfs: &dyn Vfs = &*opts.vfs;
    ensure_dir(vfs, dir, opts)?;
    let lock = lock_dir(vfs, dir, opts)?;
    // The index checkpoint, if there is one (kept when it is used, deleted
    // below when it cannot be).
    let found = checkpoint::take(vfs, dir)?;
    let (finished_compaction, leave_out) = finish_interrupted(vfs, dir, opts.read_only)?;
    let (listing, removed_temp_files) = list_and_clean(vfs, dir, &leave_out, opts.read_only)?;
    let now = opts.clock.now_unix_ms();
    let started = Instant::now();
    // A compaction finished here (or left out, read-only) is one the
    // checkpoint knows of by its delta, or it no longer matches the files.
    let used = match from_checkpoint(vfs, dir, found, &listing, opts, now) {
        Ok(c) => c,
        Err(why) => {
            // One that cannot be used goes, before anything is written: a
            // later open must never take it for a valid one.
            if !opts.read_only && !matches!(why, CheckpointUse::Missing) {
                checkpoint::remove(vfs, dir)?;
            }
            let mut r = recover_from_files(vfs, dir, opts, &listing, now)?;
            r.lock = lock;
            r.started = started;
            r.report.finished_compaction = finished_compaction;
            r.report.removed_temp_files = removed_temp_files;
            r.report.checkpoint = why;
            return Ok(r);
        }
    };
    let mut report = RecoveryReport {
        removed_temp_files,
        finished_compaction,
        checkpoint: CheckpointUse::Used,
        ..RecoveryReport::default()
    };
    let mut log_after_checkpoint = 0;
    match &used.replayed {
        None => log::info!("{}: the index came from its checkpoint", dir.display()),
        Some(r) => {
            log::info!(
                "{}: the index came from its checkpoint and {} records ({} bytes) after it",
                dir.display(),
                r.records,
                r.log_bytes
            );
            report.checkpoint = CheckpointUse::Replayed;
            report.replayed_log_bytes = r.log_bytes;
            report.truncated_tail = r.truncated.clone();
            report.discarded_batch_records = r.discarded_batch_records;
            report.segments_scanned = 0;
            log_after_checkpoint = r.log_bytes;
        }
    }
    Ok(Recovered {
        lock,
        report,
        log_after_checkpoint,
        checkpoint_len: used.checkpoint_len,
        checkpoint_cover: used.checkpoint_cover,
        keydir: used.keydir,
        seg_stats: used.seg_stats,
        segments: used.segments,
        active: used.active,
        next_file_id: listing.segments.last().map_or(1, |&m| m + 1),
        max_seq: used.max_seq,
        expired_kept: used.expired_kept,
        needs_hint: None,
        started,
    })
}

/// The index and the segments' accounting from the checkpoint `found`,
/// when it matches the directory; else why not (logged).
fn from_checkpoint(
    vfs: &dyn Vfs,
    dir: &Path,
    found: checkpoint::Found,
    listing: &Listing,
    opts: &Options,
    now: u64,
) -> std::result::Result<checkpoint::FromCheckpoint, CheckpointUse> {
    let (file, len) = match found {
        checkpoint::Found::None => return Err(CheckpointUse::Missing),
        checkpoint::Found::Unreadable(e) => {
            log::info!("not using the index checkpoint: {e}");
            return Err(CheckpointUse::Unreadable);
        }
        checkpoint::Found::File(f, len) => (f, len),
    };
    let path = checkpoint::path(dir);
    let how = checkpoint::LoadOptions {
        drop_expired: opts.read_only,
        now_ms: now,
        use_mmap: opts.use_mmap,
        read_only: opts.read_only,
    };
    let loaded = checkpoint::load(vfs, dir, &*file, len, &listing.segments, &how);
    loaded.map_err(|r| {
        log::info!(
            "not using {} ({}): {}; opening from hints and segments",
            path.display(),
            r.why.name(),
            r.detail
        );
        r.why
    })
}

/// Opens from hints and segments: loads every segment (from its hint or by
/// scanning it), fixes up the active segment and builds the keydir.
fn recover_from_files(
    vfs: &dyn Vfs,
    dir: &Path,
    opts: &Options,
    listing: &Listing,
    now: u64,
) -> Result<Recovered> {
    let active_id = find_active(vfs, dir, &listing.segments);
    let mut loads = load_all(
        vfs,
        dir,
        &listing.segments,
        active_id,
        opts.recovery_mode,
        opts.read_only,
        opts.is_deterministic(),
        None,
    )?;
    let mut active = loads.iter().position(|l| Some(l.id) == active_id);
    let tail = fix_active_tail(vfs, dir, active.map(|i| &mut loads[i]), opts.read_only)?;
    let mut needs_hint = None;
    if seal_active_if_needed(vfs, dir, active.map(|i| &loads[i]), opts.read_only)? {
        // Sealed for its format version, not for damage: it gets a hint
        // like any sealed segment (a damaged one is scanned at each open).
        needs_hint = active
            .map(|i| &loads[i])
            .filter(|l| l.skipped.is_empty())
            .map(|l| l.id);
        active = None;
    }
    let report = report_of(false, 0, tail.truncated, &loads);
    // A writable open keeps the keys that expired while the store was
    // closed, so that the first expiry sweep logs their expirations.
    let expired = if opts.read_only {
        ExpiredAtOpen::Drop
    } else {
        ExpiredAtOpen::Keep
    };
    let built = build_keydir(&loads, now, expired);
    let (keydir, live) = (built.keydir, built.live);
    let seg_stats = segment_stats(&loads, &live);
    let active_id = active.map(|i| loads[i].id);
    let segments = open_sealed_segments(vfs, dir, &loads, active_id, opts.use_mmap)?;
    let recovered = Recovered {
        lock: None,
        report,
        keydir,
        seg_stats,
        segments,
        active: active.map(|i| RecoveredActive::of(&loads[i], tail.allocated)),
        next_file_id: listing.segments.last().map_or(1, |&m| m + 1),
        max_seq: loads.iter().map(|l| l.max_seq).max().unwrap_or(0),
        expired_kept: built.expired_kept,
        needs_hint,
        log_after_checkpoint: loads.iter().map(|l| l.len).sum(),
        checkpoint_len: 0,
        checkpoint_cover: None,
        started: Instant::now(),
    };
    release_memory(loads);
    Ok(recovered)
}

/// The report of what recovery found and did, with every range salvage
/// skipped logged.
fn report_of(
    finished_compaction: bool,
    removed_temp_files: u32,
    truncated_tail: Option<(PathBuf, u64, u64)>,
    loads: &[SegmentLoad],
) -> RecoveryReport {
    let mut report = RecoveryReport {
        finished_compaction,
        removed_temp_files,
        truncated_tail,
        ..RecoveryReport::default()
    };
    for l in loads {
        if l.from_hint {
            report.segments_from_hints += 1;
        } else {
            report.segments_scanned += 1;
        }
        report.discarded_batch_records += l.discarded_batch_records;
        report.skipped.extend(l.skipped.iter().cloned());
    }
    for s in &report.skipped {
        log::warn!(
            "salvage skipped {} bytes of {} at offset {}: {}",
            s.len,
            s.path.display(),
            s.offset,
            s.reason
        );
    }
    report
}

/// Drops recovery's buffers (every hint entry, with its key) and hands the
/// memory they took back to the OS, when it was much.
fn release_memory(loads: Vec<SegmentLoad>) {
    let loaded: usize = loads.iter().map(|l| l.entries.len()).sum();
    drop(loads);
    if loaded >= SORTED_MERGE_MIN_ENTRIES {
        crate::fs::mmap::release_free_memory();
    }
}
