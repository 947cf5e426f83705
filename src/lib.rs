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

mod batch;
mod compaction;
mod db;
mod engine;
mod error;
mod format;
#[doc(hidden)]
pub mod fs;
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

#[doc(hidden)]
pub use fs as vfs;
#[doc(hidden)]
pub use fs::sim;
pub use modules::{cache, limits, session};

pub use batch::Batch;
pub use compaction::CompactionStats;
pub use db::Db;
pub use engine::txn::Txn;
pub use error::{Error, Result};
pub use format::names::KEYSPACES_DIR;
pub use format::record::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use iter::ScanPrefix;
pub use keyspace::MAX_KEYSPACE_NAME_BYTES;
pub use options::{Options, RecoveryMode, SyncPolicy, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use recovery::{RecoveryReport, SkippedRange};
pub use stats::{SegmentStats, Stats};
pub use tools::inspect::{read_segment, RecordKind, SegmentEntry};
pub use tools::repair::{repair, RepairReport};
pub use tools::verify::{verify, Problem, ProblemKind, VerifyReport};
pub use types::{CasConflict, Ttl};
pub use util::clock::{Clock, ManualClock, SystemClock};
#[doc(hidden)]
pub use util::hooks::CompactionStop;
