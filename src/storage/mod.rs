//! Storage on top of the file layer: reading segments, the active
//! segment's tail cache, group commit, hint and manifest files, and the
//! space accounting of every segment.

pub(crate) mod feed_signal;
pub(crate) mod group_commit;
pub(crate) mod hints;
pub(crate) mod manifest;
pub(crate) mod segment;
pub(crate) mod space;
pub(crate) mod tail_cache;
