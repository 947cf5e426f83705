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
pub mod cache;
mod clock;
mod compaction;
mod db;
mod engine;
mod error;
mod eviction;
mod fsutil;
#[doc(hidden)]
pub mod fuzzing;
mod hint;
mod inspect;
mod iter;
mod keydir;
mod keyspace;
pub mod limits;
mod mmap;
mod options;
mod rand;
mod record;
mod recovery;
mod repair;
mod segment;
pub mod session;
#[doc(hidden)]
pub mod sim;
mod stats;
mod sync;
mod tailcache;
mod txn;
mod verify;
#[doc(hidden)]
pub mod vfs;

pub use batch::Batch;
pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::CompactionStats;
#[doc(hidden)]
pub use compaction::CompactionStop;
pub use db::Db;
pub use engine::{CasConflict, Ttl};
pub use error::{Error, Result};
pub use inspect::{read_segment, RecordKind, SegmentEntry};
pub use iter::ScanPrefix;
pub use keyspace::{KEYSPACES_DIR, MAX_KEYSPACE_NAME_BYTES};
pub use options::{Options, RecoveryMode, SyncPolicy, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES};
pub use record::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use recovery::{RecoveryReport, SkippedRange};
pub use repair::{repair, RepairReport};
pub use stats::{SegmentStats, Stats};
pub use txn::Txn;
pub use verify::{verify, Problem, ProblemKind, VerifyReport};
