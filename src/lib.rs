//! # cairn
//!
//! A persistent, embedded key-value store in the Bitcask design: fast like
//! a cache, durable like a database.
//!
//! * Writes are appended to CRC-checked segment files; an in-memory hash
//!   index (the keydir) points at the newest record of every key, so a read
//!   is one hash lookup and one copy.
//! * TTLs, atomic increments, compare-and-swap, set-if-absent, atomic
//!   batches and prefix scans.
//! * Three sync policies with group commit; the durability contract is in
//!   `docs/durability.md`.
//! * Recovery cuts off a torn tail after a crash and refuses (or, when asked,
//!   salvages) damage that a crash cannot explain.
//!
//! # Layout
//!
//! The source is layered; each folder is a layer and uses only the layers
//! listed before it (`tests/architecture.rs` checks this, and that no two
//! files import each other in a circle). `docs/design.md` has the full map.
//!
//! * `error.rs`, `types.rs`, `batch.rs`, `stats.rs`: the error enum and
//!   plain public value types;
//! * `util/`: lock helpers, randomness, the clock, test hooks;
//! * `format/`: the on-disk format, with no I/O (records, segment header,
//!   hint files, the compaction manifest, file names);
//! * `fs/`: the file layer (`Vfs`), the real file system and memory maps
//!   (the crate's only `unsafe`);
//! * `options.rs`: [`Options`];
//! * `storage/`: reading segments, the tail cache, group commit, hint and
//!   manifest files, space accounting; `index/`: the keydir;
//! * `recovery/`: everything open does before the engine starts;
//! * `tools/`: offline [`verify`], [`repair`] and [`read_segment`];
//! * `engine/`: `Core`, with one file each for open, the write path, the
//!   read path, background work and transactions;
//! * `compaction/`: choosing, classifying, writing, installing, deleting;
//! * `iter.rs`, `db.rs`, `keyspace.rs`: the [`Db`] handle;
//! * `modules/`: [`cache`], [`session`] and [`limits`], on the `Db` API.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! let dir = tempfile::tempdir()?;
//! let db = cairn::Options::new()
//!     .sync_policy(cairn::SyncPolicy::Always)
//!     .open(dir.path())?;
//! db.put("greeting", "hello")?;
//! db.put_with_ttl("session:abc", r#"{"user":1}"#, Duration::from_secs(3600))?;
//! assert_eq!(db.incr("visits", 1)?, 1);
//! assert_eq!(db.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! db.close()?;
//! # Ok::<(), cairn::Error>(())
//! ```
#![deny(missing_docs, clippy::unwrap_used, unsafe_code)]
#![warn(missing_debug_implementations)]

/// The README's code blocks, compiled and run as doc tests (`cargo test
/// --doc`). The guide's (`docs/guide.md`) run in the
/// `tower-sessions-cairn-store` crate, which has the dependencies of its
/// axum section.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

pub mod backend;
mod batch;
mod compaction;
mod db;
mod engine;
mod error;
pub mod feed;
mod format;
mod fs;
#[cfg(feature = "__test_hooks")]
#[doc(hidden)]
pub mod fuzzing;
mod index;
mod iter;
mod keyspace;
mod modules;
mod options;
mod recovery;
mod stats;
mod storage;
mod tools;
mod types;
mod util;

/// The file layer cairn does all its I/O through (unstable: behind the
/// `unstable-vfs` feature, with no semver promise).
///
/// [`Options::vfs`] runs a store on another implementation of [`vfs::Vfs`]
/// than the real file system ([`vfs::RealFs`]); cairn's own tests run it on
/// a simulated one that injects crashes and I/O errors. An implementation
/// must keep the contract each method documents: above all, data that a
/// completed `sync_data`/`sync_all` covers survives a power loss, and a
/// completed `sync_dir` makes the directory's entries durable.
#[cfg(feature = "unstable-vfs")]
pub mod vfs {
    pub use crate::fs::{read_exact_at, write_all_at, LockGuard, OpenMode, RealFs, VFile, Vfs};
}
pub use modules::{cache, limits, module_keys, session};

pub use batch::Batch;
pub use compaction::CompactionStats;
pub use db::Db;
pub use engine::txn::Txn;
pub use error::{Error, Result};
pub use format::names::KEYSPACES_DIR;
pub use format::record::{RecordKind, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use iter::ScanPrefix;
pub use keyspace::MAX_KEYSPACE_NAME_BYTES;
pub use options::{Options, RecoveryMode, SyncPolicy, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use recovery::{CheckpointUse, RecoveryReport, SkippedRange};
pub use stats::{SegmentStats, Stats};
pub use tools::backup::{backup, BackupReport};
pub use tools::inspect::{
    checkpoint_info, hint_path, read_segment, segment_ids, segment_path, CheckpointInfo,
    SegmentEntry, SegmentFiles,
};
pub use tools::repair::{repair, RepairReport};
pub use tools::verify::{verify, Problem, ProblemKind, VerifyReport};
pub use types::{CasConflict, Ttl, MAX_EXPIRY_MS};
pub use util::clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "__test_hooks")]
#[doc(hidden)]
pub use util::hooks::CompactionStop;
