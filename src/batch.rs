//! Atomic write batches.

use std::time::Duration;

/// One operation of a [`Batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BatchOp {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
        ttl: Option<Duration>,
    },
    Delete {
        key: Vec<u8>,
    },
}

/// A group of writes applied all together or not at all, also across a
/// crash: after recovery either every operation of the batch is visible or
/// none is. Later operations on the same key win.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Db::open(dir.path())?;
/// db.put("old", "x")?;
/// db.write_batch(
///     cairn::Batch::new()
///         .put("a", "1")
///         .put_with_ttl("b", "2", std::time::Duration::from_secs(60))
///         .delete("old"),
/// )?;
/// assert_eq!(db.get("a")?.as_deref(), Some(&b"1"[..]));
/// assert_eq!(db.get("old")?, None);
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    pub(crate) ops: Vec<BatchOp>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds a put of `value` under `key` (without expiry).
    #[must_use]
    pub fn put(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Batch {
        self.push_put(key, value, None);
        self
    }

    /// Adds a put that expires `ttl` after the batch is written. A zero
    /// `ttl`, or one too long to count (see
    /// [`Db::put_with_ttl`](crate::Db::put_with_ttl)), makes
    /// [`Db::write_batch`](crate::Db::write_batch) fail with
    /// [`Error::InvalidTtl`](crate::Error::InvalidTtl).
    #[must_use]
    pub fn put_with_ttl(
        mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Duration,
    ) -> Batch {
        self.push_put(key, value, Some(ttl));
        self
    }

    /// Adds a deletion of `key`.
    #[must_use]
    pub fn delete(mut self, key: impl AsRef<[u8]>) -> Batch {
        self.push_delete(key);
        self
    }

    /// Adds a put, for building a batch in a loop.
    pub fn push_put(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) {
        self.ops.push(BatchOp::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            ttl,
        });
    }

    /// Adds a deletion, for building a batch in a loop.
    pub fn push_delete(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push(BatchOp::Delete {
            key: key.as_ref().to_vec(),
        });
    }

    /// Number of operations in the batch.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
