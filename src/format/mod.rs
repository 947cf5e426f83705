//! The on-disk format, with no I/O: records, the segment header, hint
//! files, the compaction manifest, the index checkpoint and file names. `docs/format.md` is the
//! byte-for-byte specification.

pub(crate) mod checkpoint;
pub(crate) mod hint;
pub(crate) mod manifest;
pub(crate) mod names;
pub(crate) mod record;
pub(crate) mod segment;
