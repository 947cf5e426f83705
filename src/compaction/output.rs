//! Phase 3, **write**: the kept records go into new segments, written as
//! temporary files, fsynced, renamed into place, with their hint files.

use std::borrow::Cow;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::classify::{Classified, Kept};
use crate::engine::Core;
use crate::error::{Error, Result};
use crate::format::hint::HintEntry;
use crate::format::names;
use crate::format::record::{self, RecordKind};
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile, Vfs};
use crate::index::keydir::IndexEntry;
use crate::storage::hints;
use crate::util;
use crate::util::rand::new_salt;

/// One output segment being written.
pub(super) struct Output {
    pub(super) id: u32,
    pub(super) salt: u32,
    tmp: PathBuf,
    file: Arc<dyn VFile>,
    pub(super) len: u64,
    buf: Vec<u8>,
    pub(super) min_seq: u64,
    max_seq: u64,
    /// Bytes of kept tombstones.
    pub(super) tombstone_bytes: u64,
    hints: Vec<HintEntry>,
    /// Bytes of its hint file; 0 if that could not be written.
    pub(super) hint_bytes: u64,
}

/// A keydir entry to move from the record that was copied (`old`) to its
/// copy (`new`), for the key of `kept[i]`.
pub(super) struct Move {
    pub(super) i: usize,
    pub(super) old: IndexEntry,
    pub(super) new: IndexEntry,
}

/// What phase 3 wrote: segments renamed into place but not yet installed.
pub(super) struct Written {
    pub(super) outputs: Vec<Output>,
    pub(super) moves: Vec<Move>,
}

impl Output {
    fn create(vfs: &dyn Vfs, dir: &Path, id: u32) -> io::Result<Output> {
        let tmp = names::compact_temp_path(dir, id);
        let file = vfs.open(&tmp, OpenMode::CreateNew)?;
        let salt = new_salt(id);
        let header = segment::encode_header_flags(id, salt, segment::FLAG_COMPACTED);
        Ok(Output {
            id,
            salt,
            tmp,
            file,
            len: SEGMENT_HEADER_LEN,
            buf: header.to_vec(),
            min_seq: u64::MAX,
            max_seq: 0,
            tombstone_bytes: 0,
            hints: Vec::new(),
            hint_bytes: 0,
        })
    }

    /// Appends `k` (with `value`, empty for a tombstone) to the buffer, and
    /// returns its offset.
    fn append(&mut self, k: &Kept, value: &[u8]) -> u64 {
        let offset = self.len;
        let len = record::encoded_len(k.key_len, k.value_len);
        let kind = match k.live {
            Some(_) => RecordKind::Put,
            None => RecordKind::Tombstone,
        };
        record::encode_into(
            &mut self.buf,
            self.salt,
            offset,
            kind,
            0,
            k.seq,
            k.expires_at_ms,
            &k.key,
            value,
        );
        self.len += len;
        if k.live.is_none() {
            self.tombstone_bytes += len;
        }
        self.min_seq = self.min_seq.min(k.seq);
        self.max_seq = self.max_seq.max(k.seq);
        self.hints.push(HintEntry {
            key: k.key.clone(),
            seq: k.seq,
            expires_at_ms: k.expires_at_ms,
            offset,
            value_len: k.value_len,
            tombstone: k.live.is_none(),
            replaces: false,
        });
        offset
    }

    /// Writes out the buffered bytes that precede `self.len`.
    fn flush(&mut self) -> io::Result<()> {
        let start = self.len - self.buf.len() as u64;
        fs::write_all_at(&*self.file, &self.buf, start)?;
        self.buf.clear();
        Ok(())
    }
}

impl Core {
    /// Phase 3: writes the kept records, in sequence order, into temporary
    /// files, fsyncs them, renames them into place, fsyncs the directory,
    /// writes their hint files. On failure nothing new is left behind.
    pub(super) fn write_outputs(
        &self,
        classified: &Classified,
        sources: &[Cow<'_, [u8]>],
    ) -> Result<Written> {
        let mut outputs: Vec<Output> = Vec::new();
        let mut moves: Vec<Move> = Vec::new();
        let result = self.write_records(classified, sources, &mut outputs, &mut moves);
        if let Err(e) = result {
            for o in &outputs {
                let _ = self.opts.vfs.remove_file(&o.tmp);
            }
            return Err(e);
        }
        util::crash_point!(self.opts, AfterWrite);
        let durable = (|| -> io::Result<()> {
            for o in &outputs {
                o.file.sync_all()?;
            }
            for o in &outputs {
                self.opts
                    .vfs
                    .rename(&o.tmp, &names::segment_path(&self.dir, o.id))?;
            }
            self.opts.vfs.sync_dir(&self.dir)
        })();
        if let Err(e) = durable {
            self.discard(&outputs);
            return Err(Error::Io(e));
        }
        for o in &mut outputs {
            o.hint_bytes = match hints::write(
                &*self.opts.vfs,
                &self.dir,
                o.id,
                o.salt,
                o.len,
                o.max_seq,
                &o.hints,
            ) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!(
                        "could not write the hint of compacted segment {}: {e}",
                        o.id
                    );
                    0
                }
            };
        }
        util::crash_point!(self.opts, AfterRename);
        Ok(Written { outputs, moves })
    }

    /// Removes the new segments again (temporary files, segments, hints).
    ///
    /// Until the new segments are installed, a failure removes them again:
    /// a segment on disk that the store does not track could hold the only
    /// older version of a key whose tombstone a later compaction drops.
    pub(super) fn discard(&self, outputs: &[Output]) {
        for o in outputs {
            let _ = self.opts.vfs.remove_file(&o.tmp);
            let _ = self
                .opts
                .vfs
                .remove_file(&names::hint_path(&self.dir, o.id));
            let _ = self
                .opts
                .vfs
                .remove_file(&names::segment_path(&self.dir, o.id));
        }
        let _ = self.opts.vfs.sync_dir(&self.dir);
    }

    /// Writes the records of `classified.order` into new temporary files,
    /// each at most `max_segment_bytes`, and notes the keydir moves. On
    /// error, `outputs` holds every file created so far.
    fn write_records(
        &self,
        classified: &Classified,
        sources: &[Cow<'_, [u8]>],
        outputs: &mut Vec<Output>,
        moves: &mut Vec<Move>,
    ) -> Result<()> {
        let limit = self.opts.compaction_max_bytes_per_sec;
        let started = Instant::now();
        let mut written = 0u64;
        for &i in &classified.order {
            let k = &classified.kept[i];
            let len = record::encoded_len(k.key_len, k.value_len);
            let need_new = outputs.last().is_none_or(|o| {
                o.len > SEGMENT_HEADER_LEN && o.len + len > self.opts.max_segment_bytes
            });
            if need_new {
                if let Some(o) = outputs.last_mut() {
                    o.flush()?;
                }
                let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
                outputs.push(Output::create(&*self.opts.vfs, &self.dir, id)?);
            }
            let Some(o) = outputs.last_mut() else {
                continue;
            };
            let value = match k.live {
                Some(_) => {
                    let src = &sources[k.input];
                    let start = (k.offset
                        + u64::from(record::RECORD_HEADER_LEN)
                        + u64::from(k.key_len)) as usize;
                    &src[start..start + k.value_len as usize]
                }
                None => &[][..],
            };
            let offset = o.append(k, value);
            if let Some(old) = k.live {
                let new = IndexEntry {
                    expires_at_ms: k.expires_at_ms,
                    offset,
                    file_id: o.id,
                };
                moves.push(Move { i, old, new });
            }
            if o.buf.len() >= 1 << 20 {
                o.flush()?;
            }
            written += len;
            throttle(limit, started, written);
        }
        if let Some(o) = outputs.last_mut() {
            o.flush()?;
        }
        Ok(())
    }
}

/// Sleeps so that `written` bytes since `started` stay within `limit`
/// bytes a second (0: no limit).
fn throttle(limit: u64, started: Instant, written: u64) {
    if limit > 0 {
        let due = Duration::from_secs_f64(written as f64 / limit as f64);
        let elapsed = started.elapsed();
        if due > elapsed + Duration::from_millis(5) {
            std::thread::sleep(due - elapsed);
        }
    }
}
