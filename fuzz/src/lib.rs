//! Shared code of cairn's fuzz targets: the input formats (how arbitrary
//! bytes become a store directory or an operation sequence), an
//! independent encoder of the on-disk format for checksum fix-ups and
//! seeds, and the bodies of the `open_dir` and `ops` targets, so that the
//! seed generator (`cargo run --example gen_seeds`) can run them too.
#![warn(missing_docs)]

pub mod dir;
pub mod format;
pub mod open_dir;
pub mod ops;
