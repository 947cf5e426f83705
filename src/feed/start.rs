//! Where a feed starts: placing a [`LogReader`] right after a position,
//! at the end of the log, or at its oldest change.

use crate::error::{Error, Result};
use crate::format::record::{RecordKind, FLAG_BATCH};

use super::reader::{Limit, LogReader, Next};
use super::Position;

/// The first sequence number in writer segment `id`, if it holds a record
/// (sync marks do not count) and is still there. Reads from its start.
fn first_seq(r: &mut LogReader, id: u32, limit: Limit) -> Result<Option<u64>> {
    if !r.try_seek_segment_start(id, None)? {
        return Ok(None);
    }
    loop {
        match r.next(limit)? {
            Next::Record(_) if r.at().map(|(s, _)| s) != Some(id) => return Ok(None),
            Next::Record(rec) if rec.kind == RecordKind::SyncMark => continue,
            Next::Record(rec) => return Ok(Some(rec.seq)),
            Next::Wait => return Ok(None),
        }
    }
}

/// Places `r` at the oldest change still in the log.
pub(crate) fn oldest(r: &mut LogReader) -> Result<()> {
    if let Some(&id) = r.writer_segments()?.first() {
        r.seek_segment_start(id, None)?;
    }
    Ok(())
}

/// Places `r` right after `pos`, checking that the log still holds every
/// change after it and that `pos` is in this log's history.
pub(crate) fn after(r: &mut LogReader, pos: Position, limit: Limit) -> Result<()> {
    let newest = match limit {
        Limit::Published(e) => Some(e.seq),
        Limit::Files => None,
    };
    let segments = r.writer_segments()?;
    // The change right after `pos` (no change comes after u64::MAX).
    let next = pos.seq.saturating_add(1);
    // The writer segment that holds `pos` (the last one starting at or
    // before it), else one that starts right after it.
    let mut holder = None;
    let mut starts_next = None;
    let mut oldest = None;
    for &id in &segments {
        let Some(first) = first_seq(r, id, limit)? else {
            continue; // empty, or deleted by compaction meanwhile
        };
        oldest.get_or_insert(first);
        if first <= pos.seq {
            holder = Some((id, first));
        } else {
            if first == next {
                starts_next = Some(id);
            }
            break;
        }
    }
    match (holder, starts_next) {
        // Read to `pos` and check it is the same change.
        (Some((id, first)), _) => {
            r.seek_segment_start(id, Some(first - 1))?;
            skip_through(r, pos, limit)
        }
        // `pos` itself is gone (compaction removed its segment), but the
        // log goes on right after it: nothing is missing.
        (None, Some(id)) => r.seek_segment_start(id, Some(pos.seq)),
        (None, None) => match oldest {
            // No writer segment holds a change: the next one written must
            // be the one after `pos` (the reader checks it), and with the
            // writer in this process that is known now.
            None => match newest {
                Some(n) if n > pos.seq => Err(lost(
                    r,
                    pos,
                    format!(
                        "changes {next} to {n} are no longer in the log (compaction removed \
                         them)"
                    ),
                )),
                Some(n) if n < pos.seq => Err(ahead(r, pos, n)),
                _ => start_of_first(r, &segments, pos),
            },
            Some(o) => Err(lost(
                r,
                pos,
                format!(
                    "the oldest change still in the log is {o}; the ones before it were \
                     removed by compaction"
                ),
            )),
        },
    }
}

/// Places `r` at the start of the first writer segment, after `pos`.
fn start_of_first(r: &mut LogReader, segments: &[u32], pos: Position) -> Result<()> {
    match segments.first() {
        Some(&id) => r.seek_segment_start(id, Some(pos.seq)),
        None => {
            r.set_last_seq(pos.seq);
            Ok(())
        }
    }
}

/// Reads up to and including the record numbered `pos.seq`, which must be
/// there, be the same record (its checksum) and not lie inside a batch.
fn skip_through(r: &mut LogReader, pos: Position, limit: Limit) -> Result<()> {
    loop {
        let rec = match r.next(limit)? {
            Next::Record(rec) => rec,
            Next::Wait => {
                let newest = r.last_seq().unwrap_or(0);
                return Err(ahead(r, pos, newest));
            }
        };
        if rec.kind == RecordKind::SyncMark {
            continue;
        }
        if rec.seq < pos.seq {
            continue;
        }
        if rec.seq > pos.seq {
            return Err(lost(
                r,
                pos,
                format!(
                    "the log has no change {}: it goes on from an earlier change to {}",
                    pos.seq, rec.seq
                ),
            ));
        }
        if pos.check != 0 && rec.crc != pos.check {
            return Err(lost(
                r,
                pos,
                format!(
                    "change {} in the log is not the one this position names (its check \
                     differs): the store lost changes in a crash and wrote others",
                    pos.seq
                ),
            ));
        }
        if rec.kind == RecordKind::BatchBegin || rec.flags & FLAG_BATCH != 0 {
            return Err(Error::InvalidArgument(format!(
                "position {pos} in {} is inside a batch; resume from the position of a \
                 batch's end (or of any change outside a batch)",
                r.dir().display()
            )));
        }
        return Ok(());
    }
}

fn ahead(r: &LogReader, pos: Position, newest: u64) -> Error {
    lost(
        r,
        pos,
        format!(
            "the newest change in the log is {newest}: the store lost changes this position \
             had seen (a crash before they were durable)"
        ),
    )
}

fn lost(r: &LogReader, pos: Position, reason: String) -> Error {
    Error::ChangesLost {
        dir: r.dir().to_path_buf(),
        position: pos.to_string(),
        reason,
    }
}

/// Places `r` at the end of the log as the files hold it: after the last
/// complete record of the newest writer segment that has one.
pub(crate) fn end_of_files(r: &mut LogReader) -> Result<()> {
    let segments = r.writer_segments()?;
    let mut start = segments.first().map(|&id| (id, None));
    for &id in segments.iter().rev() {
        if let Some(first) = first_seq(r, id, Limit::Files)? {
            // The change before the segment's first is known: a batch not
            // yet whole at its start still leaves the position right.
            start = Some((id, Some(first - 1)));
            break;
        }
    }
    if let Some((id, before)) = start {
        r.seek_segment_start(id, before)?;
        r.read_whole_units(Limit::Files)?;
    }
    Ok(())
}
