//! Opening a snapshot: recovery's steps on a consistent set of files held
//! open ([`pin`](super::pin)), changing nothing on disk, beside a writer
//! that may be appending, sealing and compacting in another process.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::names;
use crate::options::Options;
use crate::storage::segment::Segment;

use super::active::fix_active_tail;
use super::dir::ensure_dir;
use super::load::load_all;
use super::merge::{build_keydir, ExpiredAtOpen};
use super::pin::{back_off, pin, Pinned};
use super::segment_load::SegmentLoad;
use super::segments::segment_stats;
use super::{report_of, Recovered, RecoveredActive};

/// How many times damage in the active segment sends the open back to the
/// listing. A reader can see a record the writer is still writing (torn
/// at a page boundary) with a sync mark written after it: damage that
/// vanishes when read again. Damage that stays is reported.
const ACTIVE_DAMAGE_RETRIES: u32 = 5;

/// Recovery for [`Options::snapshot`]: the store as of the moment its
/// directory was listed, with the writer's active segment taken up to its
/// last complete record. Bounded: the listing is retried as [`pin`] says,
/// and damage in the active segment [`ACTIVE_DAMAGE_RETRIES`] times.
pub(super) fn recover_snapshot(dir: &Path, opts: &Options) -> Result<Recovered> {
    ensure_dir(&*opts.vfs, dir, opts)?;
    let mut attempt = 0;
    loop {
        let pinned = pin(&*opts.vfs, dir, opts.use_mmap)?;
        let active = pinned.find_active();
        let active_path = active.map(|id| names::segment_path(dir, id));
        match load_pinned(dir, opts, pinned, active) {
            Err(Error::Corruption { ref path, .. })
                if Some(path) == active_path.as_ref() && attempt < ACTIVE_DAMAGE_RETRIES =>
            {
                attempt += 1;
                back_off(attempt);
            }
            r => return r,
        }
    }
}

/// Loads the held segments (but those of a compaction deleting its
/// inputs) and builds the index.
fn load_pinned(
    dir: &Path,
    opts: &Options,
    pinned: Pinned,
    active_id: Option<u32>,
) -> Result<Recovered> {
    let ids: Vec<u32> = pinned
        .segments
        .keys()
        .copied()
        .filter(|id| !pinned.manifest_inputs.contains(id))
        .collect();
    let now = opts.clock.now_unix_ms();
    let started = Instant::now();
    let mut loads = load_all(
        &*opts.vfs,
        dir,
        &ids,
        active_id,
        opts.recovery_mode,
        true,
        opts.is_deterministic(),
        Some(&pinned.segments),
    )?;
    let active = loads.iter().position(|l| Some(l.id) == active_id);
    let tail = fix_active_tail(&*opts.vfs, dir, active.map(|i| &mut loads[i]), true)?;
    let report = report_of(false, 0, tail.truncated, &loads);
    let built = build_keydir(&loads, now, ExpiredAtOpen::Drop);
    let (keydir, live) = (built.keydir, built.live);
    let seg_stats = segment_stats(&loads, &live);
    let active = active.map(|i| RecoveredActive {
        file: pinned.segments.get(&loads[i].id).and_then(|p| p.file()),
        ..RecoveredActive::of(&loads[i], tail.allocated)
    });
    let segments = held_sealed(&loads, active_id, pinned);
    Ok(Recovered {
        lock: None,
        report,
        keydir,
        seg_stats,
        segments,
        active,
        next_file_id: ids.last().map_or(1, |&m| m + 1),
        max_seq: loads.iter().map(|l| l.max_seq).max().unwrap_or(0),
        expired_kept: 0,
        needs_hint: None,
        log_after_checkpoint: 0,
        checkpoint_len: 0,
        checkpoint_cover: None,
        started,
    })
}

/// A reader for every loaded segment but the active one, through what the
/// pinned set holds: the map of a segment below the active one, or the
/// open file. The active segment is never mapped: the writer may still cut
/// it short (sealing it cuts off its preallocated zeros), and a map of a
/// file cut short raises `SIGBUS`.
fn held_sealed(
    loads: &[SegmentLoad],
    active_id: Option<u32>,
    mut pinned: Pinned,
) -> BTreeMap<u32, Arc<Segment>> {
    loads
        .iter()
        .filter(|l| Some(l.id) != active_id)
        .filter_map(|l| {
            let p = pinned.segments.remove(&l.id)?;
            Some((l.id, Arc::new(p.into_segment(l.salt))))
        })
        .collect()
}
