//! Opening a store: recovery, then the writer on the active segment.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::format::names;
use crate::format::record::{self};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, Vfs};
use crate::options::Options;
use crate::recovery::{self, RecoveryReport};
use crate::storage;
use crate::storage::group_commit::{Active, GroupCommit};
use crate::storage::segment::Segment;
use crate::storage::space::SegStat;
use crate::storage::tail_cache::{self};
use crate::util::rand::new_salt;

use super::{BgState, Core, Writer};

impl Core {
    pub(crate) fn open(dir: &Path, opts: Options) -> Result<Arc<Core>> {
        let vfs: &dyn Vfs = &*opts.vfs;
        if !vfs.exists(dir) {
            if opts.create_if_missing && !opts.read_only {
                vfs.create_dir_all(dir)?;
                // The new directory's own entry must survive a power loss too.
                if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                    vfs.sync_dir(parent)?;
                }
            } else {
                return Err(Error::Io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("store directory {} does not exist", dir.display()),
                )));
            }
        }
        let lock_path = dir.join(names::LOCK_FILE);
        let lock_file = if opts.snapshot {
            None
        } else {
            match vfs.try_lock(&lock_path, opts.read_only)? {
                Some(l) => Some(l),
                None => return Err(Error::Locked { path: lock_path }),
            }
        };

        let (finished_compaction, leave_out) =
            recovery::finish_interrupted(vfs, dir, opts.read_only)?;
        let mut report = RecoveryReport {
            finished_compaction,
            ..RecoveryReport::default()
        };
        let mut listing = recovery::list_dir(vfs, dir)?;
        listing.segments.retain(|id| !leave_out.contains(id));
        if !opts.read_only {
            for t in &listing.temp_files {
                match vfs.remove_file(t) {
                    Ok(()) => report.removed_temp_files += 1,
                    Err(e) => log::warn!("could not remove stray file {}: {e}", t.display()),
                }
            }
            if report.removed_temp_files > 0 {
                vfs.sync_dir(dir)?;
            }
        }
        let now = opts.clock.now_unix_ms();
        let started = Instant::now();
        let mut active_id = recovery::find_active(vfs, dir, &listing.segments);
        let mut loads = recovery::load_all(
            vfs,
            dir,
            &listing.segments,
            active_id,
            opts.recovery_mode,
            opts.read_only,
            opts.is_deterministic(),
        )?;
        let mut active_idx = loads.iter().position(|l| Some(l.id) == active_id);

        // Fix up the active segment. `allocated` is how much of its file
        // exists and is durable (see `Writer::allocated`).
        let mut allocated = SEGMENT_HEADER_LEN;
        if let Some(last) = active_idx.map(|i| &mut loads[i]) {
            let path = names::segment_path(dir, last.id);
            allocated = last.len.max(SEGMENT_HEADER_LEN);
            if let Some((cut_at, file_len)) = last.cut {
                if last.zero_tail && !last.needs_header {
                    // Zeros preallocated ahead of the writes: keep them.
                    allocated = file_len;
                } else if !opts.read_only {
                    let f = vfs.open(&path, OpenMode::ReadWrite)?;
                    if last.needs_header {
                        f.set_len(0)?;
                        last.salt = new_salt(last.id);
                        fs::write_all_at(&*f, &segment::encode_header(last.id, last.salt), 0)?;
                        last.len = SEGMENT_HEADER_LEN;
                    } else {
                        f.set_len(cut_at)?;
                    }
                    f.sync_all()?;
                    log::warn!(
                        "cut a torn tail of {} bytes off {} at offset {cut_at}",
                        file_len - cut_at,
                        path.display()
                    );
                }
                if !last.zero_tail || last.needs_header {
                    report.truncated_tail = Some((path, cut_at, file_len - cut_at));
                }
            }
        }
        // Salvage skipped damage inside the active segment. Appending after
        // it would leave damaged bytes in the middle of the live log: a
        // later strict open would cut the log there (losing every write
        // made after this open), and appended bytes could complete the
        // image of a damaged record. Seal the segment as it is, cut to its
        // last record, and write into a fresh one: damage in a sealed
        // segment is refused by strict opens and skipped by salvage ones.
        if let Some(last) = active_idx
            .map(|i| &loads[i])
            .filter(|l| !opts.read_only && !l.skipped.is_empty())
        {
            let path = names::segment_path(dir, last.id);
            let f = vfs.open(&path, OpenMode::ReadWrite)?;
            let end = last.len.max(SEGMENT_HEADER_LEN);
            if f.len()? > end {
                f.set_len(end)?;
            }
            f.sync_all()?;
            log::warn!(
                "salvage: sealed {} with its damaged ranges; new writes go to a new segment",
                path.display()
            );
            active_id = None;
            active_idx = None;
        }
        for l in &loads {
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

        let (keydir, live) = recovery::build_keydir(&loads, now);
        let mut next_file_id = listing.segments.last().map_or(1, |&m| m + 1);
        let max_seq = loads.iter().map(|l| l.max_seq).max().unwrap_or(0);
        let mut seg_stats = BTreeMap::new();
        for (l, live) in loads.iter().zip(&live) {
            let total = l.len.max(SEGMENT_HEADER_LEN);
            // Tombstones in a segment compaction wrote were kept on purpose
            // (see `SegStat::kept`).
            let kept = if l.compacted {
                l.entries
                    .iter()
                    .filter(|e| e.tombstone)
                    .map(|e| record::encoded_len(e.key.len() as u32, 0))
                    .sum()
            } else {
                0
            };
            let kept = kept.min(total.saturating_sub(SEGMENT_HEADER_LEN + live));
            seg_stats.insert(
                l.id,
                SegStat {
                    total,
                    dead: total.saturating_sub(SEGMENT_HEADER_LEN + live + kept),
                    kept,
                    hint: l.hint_bytes,
                    min_seq: if l.skipped.is_empty() { l.min_seq } else { 0 },
                    damaged: !l.skipped.is_empty(),
                },
            );
        }
        let mut segments = BTreeMap::new();
        for l in &loads {
            if Some(l.id) != active_id {
                segments.insert(
                    l.id,
                    Arc::new(Segment::open_sealed(vfs, dir, l.id, opts.use_mmap, l.salt)?),
                );
            }
        }

        let (writer, group) = if opts.read_only {
            if let Some(l) = active_idx.map(|i| &loads[i]) {
                let path = names::segment_path(dir, l.id);
                let f = vfs.open(&path, OpenMode::Read)?;
                segments.insert(l.id, Arc::new(Segment::with_file(path, f, l.salt)));
            }
            (None, None)
        } else {
            let (id, len, salt) = match active_idx.map(|i| &loads[i]) {
                Some(l) => (l.id, l.len.max(SEGMENT_HEADER_LEN), l.salt),
                None => {
                    let id = next_file_id;
                    next_file_id += 1;
                    let (_, salt) = storage::segment::create(vfs, dir, id)?;
                    seg_stats.insert(id, SegStat::empty());
                    (id, SEGMENT_HEADER_LEN, salt)
                }
            };
            let path = names::segment_path(dir, id);
            let file = vfs.open(&path, OpenMode::ReadWrite)?;
            if active_idx.is_some() {
                // What recovery read may be only in the page cache (after a
                // process crash). Make it durable: the group commit and the
                // sync marks count it as synced from here on.
                file.sync_data()?;
            }
            let tail = tail_cache::seeded(opts.tail_cache_bytes, &*file, len)?;
            segments.insert(
                id,
                Arc::new(Segment::active(path, file.clone(), tail.clone(), salt)),
            );
            let active = Arc::new(Active {
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
                next_seq: max_seq + 1,
                allocated: if active_idx.is_none() {
                    SEGMENT_HEADER_LEN
                } else {
                    allocated
                },
                buf: Vec::with_capacity(4096),
                dead: Vec::new(),
                marked: 0,
                mark_bytes: 0,
            };
            (Some(Mutex::new(writer)), Some(GroupCommit::new(active)))
        };
        // Recovery's buffers (every hint entry, with its key) are gone now;
        // hand the memory they took back to the OS, when it was much.
        let loaded: usize = loads.iter().map(|l| l.entries.len()).sum();
        drop(loads);
        if loaded >= recovery::SORTED_MERGE_MIN_ENTRIES {
            crate::fs::mmap::release_free_memory();
        }
        log::info!(
            "opened {} with {} keys in {:?} ({} segments from hints, {} scanned)",
            dir.display(),
            keydir.raw_len(),
            started.elapsed(),
            report.segments_from_hints,
            report.segments_scanned
        );

        Ok(Arc::new(Core {
            dir: dir.to_path_buf(),
            opts,
            keydir,
            segments: RwLock::new(segments),
            seg_stats: Mutex::new(seg_stats),
            writer,
            group,
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            closed: AtomicBool::new(false),
            lock_file: Mutex::new(lock_file),
            next_file_id: std::sync::atomic::AtomicU32::new(next_file_id),
            compaction: Mutex::new(()),
            report,
            bytes_written: AtomicU64::new(0),
            expired_removed: AtomicU64::new(0),
            bg: Mutex::new(BgState::default()),
            bg_cv: Condvar::new(),
            stall: AtomicBool::new(false),
            stall_lock: Mutex::new(()),
            stall_cv: Condvar::new(),
            stalls: AtomicU64::new(0),
            stall_ns: AtomicU64::new(0),
        }))
    }
}
