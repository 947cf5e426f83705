//! Writing the index checkpoint at a clean close (its bytes are
//! `format/checkpoint.rs`; open reads it in `recovery/checkpoint.rs`).
//!
//! Written to a temporary file, fsynced, renamed into place and the
//! directory fsynced, through the file layer. Nothing depends on it: a
//! failure is logged and leaves no checkpoint, and the next open rebuilds
//! the index from hints and segments.

use std::io;
use std::time::Instant;

use crate::format::checkpoint::{self, Header, SegmentInfo, PROBE_KEY, SHARDS};
use crate::format::names;
use crate::format::segment::{self, SEGMENT_HEADER_LEN};
use crate::fs::{self, OpenMode, VFile};
use crate::index::keydir::SLOT_BYTES;
use crate::util::locks::lock;

use super::{Core, Writer};

/// Bytes gathered before each write to the temporary file.
const WRITE_BYTES: usize = 8 << 20;

impl Core {
    /// Writes the index checkpoint, at a clean close: under the writer
    /// lock (`w`), with the background threads and compaction stopped,
    /// after the close marks are durable. Logs what it did; a failure only
    /// leaves no checkpoint.
    pub(super) fn write_checkpoint(&self, w: &Writer) {
        if !self.opts.index_checkpoint_at_close {
            return;
        }
        let started = Instant::now();
        let header = match self.checkpoint_header(w) {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                log::warn!("no index checkpoint written: {e}");
                return;
            }
        };
        let dir = &self.dir;
        let tmp = dir.join(format!(
            "{}{:08x}{}",
            names::CHECKPOINT_TMP_PREFIX,
            crate::util::rand::new_salt(0),
            names::TMP_SUFFIX
        ));
        let vfs = &*self.opts.vfs;
        let written = (|| {
            let f = vfs.open(&tmp, OpenMode::CreateNew)?;
            let len = self.write_checkpoint_bytes(&*f, &header)?;
            f.sync_all()?;
            drop(f);
            vfs.rename(&tmp, &dir.join(names::CHECKPOINT_FILE))?;
            vfs.sync_dir(dir)?;
            Ok::<u64, io::Error>(len)
        })();
        match written {
            Ok(len) => log::info!(
                "wrote the index checkpoint of {} ({} keys, {len} bytes) in {:?}",
                dir.display(),
                header.total_slots(),
                started.elapsed()
            ),
            Err(e) => {
                // A rename that happened before a failed directory fsync
                // leaves a checkpoint that is complete and matches the
                // files: harmless. The temporary file is removed when it
                // is still there (else the next open removes it).
                let _ = vfs.remove_file(&tmp);
                log::warn!("no index checkpoint written for {}: {e}", dir.display());
            }
        }
    }

    /// The checkpoint's header: the index's hash seed and shard sizes, and
    /// every segment with its salt, lengths and accounting. `None` (logged)
    /// when there is a reason to write none.
    fn checkpoint_header(&self, w: &Writer) -> io::Result<Option<Header>> {
        let stats = lock(&self.seg_stats).clone();
        let vfs = &*self.opts.vfs;
        let mut segments = Vec::with_capacity(stats.len());
        for (&id, s) in &stats {
            if s.damaged {
                log::info!(
                    "no index checkpoint written: segment {id} has damage salvage skipped \
                     (the next open scans it)"
                );
                return Ok(None);
            }
            let path = names::segment_path(&self.dir, id);
            let f = vfs.open(&path, OpenMode::Read)?;
            let file_len = f.len()?;
            let mut head = [0u8; SEGMENT_HEADER_LEN as usize];
            fs::read_exact_at(&*f, &mut head, 0)?;
            let salt = segment::header_info(&path, &head, id)
                .map_err(|e| io::Error::other(e.to_string()))?
                .salt;
            let data_len = s.total.max(SEGMENT_HEADER_LEN);
            let active = id == w.active.id;
            if (active && file_len < data_len) || (!active && file_len != data_len) {
                log::info!(
                    "no index checkpoint written: {} is {file_len} bytes, its records end at {data_len}",
                    path.display()
                );
                return Ok(None);
            }
            // The hint as it is on disk: an open uses the checkpoint only
            // while every hint is still the one the index was built with
            // (deleting a hint that disagrees with its segment must make
            // the next open scan the segment).
            let hint = match vfs
                .open(&names::hint_path(&self.dir, id), OpenMode::Read)
                .and_then(|h| h.len())
            {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            };
            segments.push(SegmentInfo {
                id,
                salt,
                data_len,
                file_len,
                dead: s.dead,
                kept: s.kept,
                hint,
                min_seq: s.min_seq,
            });
        }
        Ok(Some(Header {
            slot_len: SLOT_BYTES as u16,
            seed: self.keydir.seed(),
            probe: self.keydir.hash(PROBE_KEY),
            max_seq: w.next_seq - 1,
            written_at_ms: self.now(),
            active: Some(w.active.id),
            shard_slots: self.keydir.shard_lens(),
            segments,
        }))
    }

    /// Writes the header, every shard's slots and the footer to `f`;
    /// returns the bytes written.
    fn write_checkpoint_bytes(&self, f: &dyn VFile, header: &Header) -> io::Result<u64> {
        let mut buf = checkpoint::encode_header(header);
        let header_crc = checkpoint::header_crc(&buf);
        let mut slots = Vec::new();
        let mut at = 0u64;
        let mut total = 0u64;
        for i in 0..SHARDS {
            slots.clear();
            self.keydir.export_shard(i, &mut slots);
            // Nothing writes while the store closes: the counts hold.
            let n = (slots.len() / SLOT_BYTES) as u64;
            if n != header.shard_slots[i] {
                return Err(io::Error::other("the index changed while it was written"));
            }
            total += n;
            checkpoint::encode_slots(&slots, SLOT_BYTES, &mut buf);
            if buf.len() >= WRITE_BYTES {
                fs::write_all_at(f, &buf, at)?;
                at += buf.len() as u64;
                buf.clear();
            }
        }
        buf.extend_from_slice(&checkpoint::encode_footer(header_crc, total));
        fs::write_all_at(f, &buf, at)?;
        Ok(at + buf.len() as u64)
    }
}
