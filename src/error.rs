//! The one error type of cairn.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in cairn.
///
/// The enum is `#[non_exhaustive]`: match the cases you handle and keep a
/// wildcard arm for the rest.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error.
    Io(io::Error),
    /// A data or hint file failed a check that a crash cannot explain: a
    /// checksum failure followed by valid records, damage in a sealed
    /// segment, an unknown header or a record that does not match its index
    /// entry. Nothing was repaired or dropped; open the store with
    /// [`RecoveryMode::Salvage`](crate::RecoveryMode::Salvage) to skip the
    /// damaged records.
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// The byte offset of the damage inside `path`.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// The file was written by a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        version: u16,
    },
    /// Another handle, in this process or another one, holds the directory's
    /// lock.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A key longer than [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES). Nothing was written.
    KeyTooLarge {
        /// The key's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A value longer than [`MAX_VALUE_BYTES`](crate::MAX_VALUE_BYTES). Nothing was written.
    ValueTooLarge {
        /// The value's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `incr` found a value that is not a base-10 signed 64-bit integer.
    /// Nothing was changed.
    NotAnInteger,
    /// `incr` would overflow an `i64`. Nothing was changed.
    Overflow,
    /// A time-to-live of zero was given where a live key is being written,
    /// or an expiry (now plus the TTL, or an absolute expiry) at or after
    /// 2^48 unix milliseconds, in the year 10889: the index keeps expiries
    /// in 48 bits. Nothing was written.
    InvalidTtl,
    /// An earlier write or fsync failed, so this handle refuses every further
    /// write until the store is reopened. Reads still work.
    Poisoned {
        /// What failed first.
        cause: String,
    },
    /// The directory exists, is not empty and holds none of cairn's files,
    /// so it is not a store and open did not make it one. Nothing was
    /// created or changed in it. Open an empty or new directory, or allow
    /// creating a store beside the other files with
    /// [`Options::create_in_non_empty_dir`](crate::Options::create_in_non_empty_dir).
    NotAStore {
        /// The directory.
        path: PathBuf,
    },
    /// The store was opened read-only.
    ReadOnly,
    /// [`Db::close`](crate::Db::close) was called on this store.
    Closed,
    /// An option has a value cairn cannot work with.
    InvalidOptions(String),
    /// A write through a [`Db`](crate::Db) was attempted on the thread that
    /// is running a [`Db::transaction`](crate::Db::transaction) closure;
    /// write through the [`Txn`](crate::Txn) instead. Nothing was written.
    NestedWrite,
    /// A value stored by one of cairn's modules ([`session`](crate::session),
    /// [`cache`](crate::cache), [`limits`](crate::modules::limits)) could not be
    /// decoded: it was written by something else under the module's keys.
    Malformed(String),
    /// A backup could not be written to this destination: it exists and
    /// is not an empty directory, or it is not a directory. Nothing was
    /// written there.
    BackupDestination {
        /// The destination.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The directory holds a backup that was interrupted before it was
    /// complete (its `BACKUP-INCOMPLETE` marker is still there): it is not
    /// opened. Delete it and take the backup again.
    IncompleteBackup {
        /// The backup directory.
        path: PathBuf,
    },
    /// A typed value could not be encoded or decoded (the `serde` feature).
    #[cfg(feature = "serde")]
    Serde(postcard::Error),
    /// An argument a module or backend was given is not one it can use
    /// (the message names it). Nothing was written.
    InvalidArgument(String),
    /// A remote store (a Redis-protocol server or cluster behind a module's
    /// [`Store`](crate::backend::Store)) could not be reached or refused a
    /// command. Whether a write that failed this way was applied is
    /// unknown unless `applied` says it was not.
    Remote {
        /// The server or cluster, as configured (no password).
        address: String,
        /// What went wrong: the server's error text or the network error.
        message: String,
        /// `false` when the command certainly did not run (a refused
        /// connection, a script that aborted before writing); `true` when
        /// it may have (a connection lost while waiting for the reply).
        maybe_applied: bool,
    },
    /// A change feed cannot go on from a position: the log no longer holds
    /// the changes after it (compaction removed them), or the position is
    /// not in this store's history (the store lost changes the consumer
    /// had seen, in a crash before they were durable). As a Redis replica
    /// then needs a full resynchronisation, start again from
    /// [`Db::snapshot_then_changes`](crate::Db::snapshot_then_changes).
    ChangesLost {
        /// The store.
        dir: PathBuf,
        /// The position (or the change) the feed was at.
        position: String,
        /// What the log holds instead.
        reason: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Corruption {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corruption in {} at byte offset {offset}: {reason}",
                path.display()
            ),
            Error::UnsupportedVersion { path, version } => write!(
                f,
                "{} has format version {version}, which this build of cairn does not read",
                path.display()
            ),
            Error::Locked { path } => write!(
                f,
                "the store is locked by another handle ({} is held); close it first",
                path.display()
            ),
            Error::KeyTooLarge { len, max } => {
                write!(f, "key of {len} bytes is longer than the limit of {max} bytes")
            }
            Error::ValueTooLarge { len, max } => write!(
                f,
                "value of {len} bytes is longer than the limit of {max} bytes"
            ),
            Error::NotAnInteger => {
                write!(f, "value is not an integer or out of range of a signed 64-bit integer")
            }
            Error::Overflow => write!(f, "increment or decrement would overflow"),
            Error::InvalidTtl => write!(
                f,
                "a time-to-live must be greater than zero, and its expiry (now plus the time-to-live) before 2^48 unix milliseconds (the year 10889)"
            ),
            Error::Poisoned { cause } => write!(
                f,
                "the store refuses writes after an earlier write or fsync failed ({cause}); reopen it"
            ),
            Error::NotAStore { path } => write!(
                f,
                "{} is not a cairn store: it holds other files and none of cairn's; \
                 use an empty or new directory, or allow a store beside those files \
                 with Options::create_in_non_empty_dir(true)",
                path.display()
            ),
            Error::ReadOnly => write!(f, "the store was opened read-only"),
            Error::Closed => write!(f, "the store has been closed"),
            Error::InvalidOptions(msg) => write!(f, "invalid options: {msg}"),
            Error::NestedWrite => write!(
                f,
                "a write through the Db inside its own transaction closure would deadlock; write through the Txn"
            ),
            Error::Malformed(what) => write!(f, "malformed module value: {what}"),
            Error::BackupDestination { path, reason } => write!(
                f,
                "cannot back up into {}: {reason}",
                path.display()
            ),
            Error::IncompleteBackup { path } => write!(
                f,
                "{} holds an incomplete backup (it was interrupted); delete it and take the backup again",
                path.display()
            ),
            #[cfg(feature = "serde")]
            Error::Serde(e) => write!(f, "could not encode or decode a typed value: {e}"),
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Remote {
                address,
                message,
                maybe_applied,
            } => {
                write!(f, "remote store {address}: {message}")?;
                if *maybe_applied {
                    write!(f, " (the last write may or may not have been applied)")?;
                }
                Ok(())
            }
            Error::ChangesLost {
                dir,
                position,
                reason,
            } => write!(
                f,
                "the change feed of {} cannot go on after {position}: {reason}; start again \
                 from a snapshot (Db::snapshot_then_changes)",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            #[cfg(feature = "serde")]
            Error::Serde(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Io(e)
    }
}

#[cfg(feature = "serde")]
impl From<postcard::Error> for Error {
    fn from(e: postcard::Error) -> Self {
        Error::Serde(e)
    }
}

impl Error {
    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_file_and_offset() {
        let e = Error::corruption("/d/0000000001.seg", 96, "checksum mismatch");
        let text = e.to_string();
        assert!(text.contains("0000000001.seg"), "{text}");
        assert!(text.contains("96"), "{text}");
    }

    #[test]
    fn io_error_is_the_source() {
        use std::error::Error as _;
        let e: Error = io::Error::other("disk on fire").into();
        assert!(e.source().is_some());
        assert!(e.to_string().contains("disk on fire"));
    }
}
