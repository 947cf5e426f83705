//! Options for opening a store.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::util::clock::{Clock, SystemClock};

/// When writes are made durable (fsynced).
///
/// See `docs/durability.md` for exactly what survives a process crash and a
/// power loss under each policy. In short: every acknowledged write survives
/// a *process* crash under every policy (cairn hands each write to the OS
/// before it returns); they differ in what survives a *power loss*.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncPolicy {
    /// Every write is durable before it returns. Concurrent writers share an
    /// fsync (group commit).
    #[default]
    Always,
    /// A background thread fsyncs every `n` milliseconds; a power loss may
    /// lose the writes of the last `n` ms (plus the fsync's own duration).
    EveryMillis(u64),
    /// cairn never fsyncs on its own; the OS writes back when it likes.
    /// [`Db::sync`](crate::Db::sync) still makes everything durable on demand.
    Never,
}

/// What open does with damage that a crash cannot explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open with [`Error::Corruption`], naming the file and offset.
    /// A torn tail on the active segment (the signature of a crash) is still
    /// cut off. This is the default.
    #[default]
    Strict,
    /// Skip damaged records, keep every record that passes its checksum, and
    /// report what was skipped in [`Db::recovery_report`](crate::Db::recovery_report). Hint files are
    /// ignored and every segment is scanned.
    Salvage,
}

/// Options for opening a store, as a by-value builder ending in [`Options::open`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let db = cairn::Options::new()
///     .sync_policy(cairn::SyncPolicy::EveryMillis(10))
///     .max_segment_bytes(8 << 20)
///     .open(dir.path())?;
/// db.put("k", "v")?;
/// # Ok::<(), cairn::Error>(())
/// ```
#[derive(Clone)]
pub struct Options {
    pub(crate) sync_policy: SyncPolicy,
    pub(crate) max_segment_bytes: u64,
    pub(crate) recovery_mode: RecoveryMode,
    pub(crate) read_only: bool,
    pub(crate) snapshot: bool,
    pub(crate) create_if_missing: bool,
    pub(crate) create_in_non_empty_dir: bool,
    pub(crate) use_mmap: bool,
    pub(crate) expiry_sweep_interval_ms: u64,
    pub(crate) tail_cache_bytes: u64,
    pub(crate) auto_compact: bool,
    pub(crate) compaction_min_dead_ratio: f64,
    pub(crate) compaction_min_dead_bytes: u64,
    pub(crate) compaction_max_space_amplification: f64,
    pub(crate) compaction_small_segment_bytes: u64,
    pub(crate) compaction_max_bytes_per_sec: u64,
    pub(crate) compaction_interval_ms: u64,
    pub(crate) stall_writes: bool,
    pub(crate) warm_up_after_open: bool,
    pub(crate) index_checkpoint_at_close: bool,
    pub(crate) index_checkpoint_every_bytes: u64,
    pub(crate) clock: Arc<dyn Clock>,
    /// The file layer: the real file system unless `Options::vfs` says
    /// otherwise.
    pub(crate) vfs: Arc<dyn crate::fs::Vfs>,
    /// Test hooks (the `__test_hooks` feature).
    #[cfg(feature = "__test_hooks")]
    pub(crate) hooks: crate::util::hooks::Hooks,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("sync_policy", &self.sync_policy)
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("recovery_mode", &self.recovery_mode)
            .field("read_only", &self.read_only)
            .field("snapshot", &self.snapshot)
            .field("create_if_missing", &self.create_if_missing)
            .field("create_in_non_empty_dir", &self.create_in_non_empty_dir)
            .field("use_mmap", &self.use_mmap)
            .field("expiry_sweep_interval_ms", &self.expiry_sweep_interval_ms)
            .field("tail_cache_bytes", &self.tail_cache_bytes)
            .field("auto_compact", &self.auto_compact)
            .field("compaction_min_dead_ratio", &self.compaction_min_dead_ratio)
            .field("compaction_min_dead_bytes", &self.compaction_min_dead_bytes)
            .field(
                "compaction_max_space_amplification",
                &self.compaction_max_space_amplification,
            )
            .field(
                "compaction_small_segment_bytes",
                &self.small_segment_bytes(),
            )
            .field(
                "compaction_max_bytes_per_sec",
                &self.compaction_max_bytes_per_sec,
            )
            .field("compaction_interval_ms", &self.compaction_interval_ms)
            .field("stall_writes", &self.stall_writes)
            .field("warm_up_after_open", &self.warm_up_after_open)
            .field("index_checkpoint_at_close", &self.index_checkpoint_at_close)
            .field(
                "index_checkpoint_every_bytes",
                &self.index_checkpoint_every_bytes,
            )
            .finish_non_exhaustive()
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// `compaction_small_segment_bytes` not set: derived from `max_segment_bytes`.
const AUTO: u64 = u64::MAX;
/// The default of [`Options::index_checkpoint_every_bytes`].
const DEFAULT_INDEX_CHECKPOINT_EVERY_BYTES: u64 = 64 << 20;

/// Smallest accepted `max_segment_bytes`.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest accepted `max_segment_bytes` (1 GiB).
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

impl Options {
    /// The defaults: [`SyncPolicy::Always`], 64 MiB segments, strict
    /// recovery, read-write, create the directory if missing, memory-mapped
    /// sealed segments, expiry sweep every second, a 16 MiB cache of the
    /// active segment's tail, the system clock.
    pub fn new() -> Options {
        Options {
            sync_policy: SyncPolicy::Always,
            max_segment_bytes: 64 << 20,
            recovery_mode: RecoveryMode::Strict,
            read_only: false,
            snapshot: false,
            create_if_missing: true,
            create_in_non_empty_dir: false,
            use_mmap: true,
            expiry_sweep_interval_ms: 1000,
            tail_cache_bytes: 16 << 20,
            auto_compact: true,
            compaction_min_dead_ratio: 0.4,
            compaction_min_dead_bytes: 128 << 20,
            compaction_max_space_amplification: 1.5,
            compaction_small_segment_bytes: AUTO,
            compaction_max_bytes_per_sec: 0,
            compaction_interval_ms: 1000,
            stall_writes: true,
            warm_up_after_open: true,
            index_checkpoint_at_close: true,
            index_checkpoint_every_bytes: DEFAULT_INDEX_CHECKPOINT_EVERY_BYTES,
            clock: Arc::new(SystemClock),
            vfs: Arc::new(crate::fs::RealFs),
            #[cfg(feature = "__test_hooks")]
            hooks: crate::util::hooks::Hooks::default(),
        }
    }

    /// When writes are fsynced. Default: [`SyncPolicy::Always`].
    #[must_use]
    pub fn sync_policy(mut self, policy: SyncPolicy) -> Options {
        self.sync_policy = policy;
        self
    }

    /// The size at which the active segment is sealed and a new one started.
    /// A single record larger than this still goes into one segment.
    /// Between [`MIN_SEGMENT_BYTES`] and [`MAX_SEGMENT_BYTES`]; default 64 MiB.
    #[must_use]
    pub fn max_segment_bytes(mut self, bytes: u64) -> Options {
        self.max_segment_bytes = bytes;
        self
    }

    /// What open does with damage a crash cannot explain. Default: [`RecoveryMode::Strict`].
    #[must_use]
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Options {
        self.recovery_mode = mode;
        self
    }

    /// Open read-only, with a shared lock: several read-only handles (in
    /// any process) may coexist, but not with a writer. Nothing on disk is
    /// changed, not even a torn tail, which is ignored instead. Default: false.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Options {
        self.read_only = read_only;
        self
    }

    /// Open read-only **without any lock**, to inspect a store that another
    /// process (or handle) has open for writing. Implies `read_only(true)`.
    /// Default: false.
    ///
    /// What a snapshot guarantees, beside a live writer:
    ///
    /// * **It opens.** Sealing, the trim of a sealed segment's preallocated
    ///   space, and compaction deleting segments do not make the open fail:
    ///   it holds every file open from the moment it lists the directory,
    ///   and lists again (a bounded number of times, with short sleeps)
    ///   when a compaction or a deletion happened in between.
    /// * **A consistent view as of one moment during the open**: every
    ///   write acknowledged before the open started, in the order written
    ///   (batches whole or not at all), up to the writer's last complete
    ///   record when the snapshot read it; nothing written later. A record
    ///   the writer is still appending is left out like a torn tail.
    /// * **It stays readable**: reads through the handle (`get`, scans)
    ///   use the files it holds, so a compaction deleting them afterwards
    ///   changes nothing. The writer's active segment, which the writer
    ///   cuts short when it seals it, is read with `pread`, never mapped.
    ///
    /// Nothing on disk is changed. Damage that is really there is still
    /// reported ([`Error::Corruption`](crate::Error::Corruption)) as on any
    /// open.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let writer = cairn::Db::open(dir.path())?;
    /// writer.put("k", "v")?;
    /// let snap = cairn::Options::new().snapshot(true).open(dir.path())?;
    /// assert_eq!(snap.get("k")?, Some(b"v".to_vec()));
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn snapshot(mut self, snapshot: bool) -> Options {
        self.snapshot = snapshot;
        if snapshot {
            self.read_only = true;
        }
        self
    }

    /// Create the directory when it does not exist (with mode 0700). Default: true.
    #[must_use]
    pub fn create_if_missing(mut self, create: bool) -> Options {
        self.create_if_missing = create;
        self
    }

    /// Create a new store in a directory that already holds other files
    /// (none of them cairn's). By default open refuses such a directory
    /// with [`Error::NotAStore`], so that a mistyped path (a source tree, a
    /// home directory) is never turned into a store. cairn never deletes or
    /// changes a file it did not name, with this option or without it;
    /// `verify` lists the other files as stray. A directory that is empty,
    /// missing or already a store opens either way. Read-only and snapshot
    /// opens never create a store, so this option does not apply to them.
    /// Default: false.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// std::fs::write(dir.path().join("notes.txt"), "mine")?;
    /// assert!(matches!(
    ///     cairn::Db::open(dir.path()),
    ///     Err(cairn::Error::NotAStore { .. })
    /// ));
    /// let db = cairn::Options::new()
    ///     .create_in_non_empty_dir(true)
    ///     .open(dir.path())?;
    /// db.put("k", "v")?;
    /// assert!(dir.path().join("notes.txt").exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn create_in_non_empty_dir(mut self, allow: bool) -> Options {
        self.create_in_non_empty_dir = allow;
        self
    }

    /// Read sealed segments through memory maps (default) or with `pread`.
    /// See the SAFETY notes in `docs/design.md` for when to turn maps off.
    #[must_use]
    pub fn use_mmap(mut self, use_mmap: bool) -> Options {
        self.use_mmap = use_mmap;
        self
    }

    /// How often the background sweep removes expired keys from memory, in
    /// milliseconds; 0 turns the sweep off (expired keys stay invisible
    /// regardless). Default: 1000.
    #[must_use]
    pub fn expiry_sweep_interval_ms(mut self, ms: u64) -> Options {
        self.expiry_sweep_interval_ms = ms;
        self
    }

    /// How many of the newest bytes of the active segment are also kept in
    /// memory, so that reads of recently written keys need no system call
    /// (the active segment is otherwise read with `pread`). 0 turns the
    /// cache off. Default: 16 MiB.
    ///
    /// A writable open that finds an active segment with more records than
    /// this seals it and starts a new one, so that the keys written before
    /// the open are read through the sealed segment's map, none with
    /// `pread` (with [`Options::use_mmap`] on and the cache on).
    #[must_use]
    pub fn tail_cache_bytes(mut self, bytes: u64) -> Options {
        self.tail_cache_bytes = bytes;
        self
    }

    /// Run compaction automatically in a background thread when a sealed
    /// segment is fragmented enough (see the `compaction_*` options).
    /// Default: true. [`Db::compact`](crate::Db::compact) works either way.
    #[must_use]
    pub fn auto_compact(mut self, on: bool) -> Options {
        self.auto_compact = on;
        self
    }

    /// Automatic compaction starts when a sealed segment has at least this
    /// share of dead bytes (overwritten, deleted or expired records).
    /// Default: 0.4, as Riak's bitcask.
    #[must_use]
    pub fn compaction_min_dead_ratio(mut self, ratio: f64) -> Options {
        self.compaction_min_dead_ratio = ratio;
        self
    }

    /// Automatic compaction also starts when a sealed segment has at least
    /// this many dead bytes. Default: 128 MiB.
    #[must_use]
    pub fn compaction_min_dead_bytes(mut self, bytes: u64) -> Options {
        self.compaction_min_dead_bytes = bytes;
        self
    }

    /// Automatic compaction also starts when the bytes of the sealed
    /// segments plus the live bytes of the active one exceed this multiple
    /// of all live bytes; it then rewrites the most fragmented segments.
    /// 0 turns this trigger off. Default: 1.5.
    #[must_use]
    pub fn compaction_max_space_amplification(mut self, factor: f64) -> Options {
        self.compaction_max_space_amplification = factor;
        self
    }

    /// When automatic compaction runs, sealed segments smaller than this are
    /// rewritten along with the fragmented ones, so that small segments get
    /// merged. Default: a quarter of `max_segment_bytes`, at most 16 MiB.
    #[must_use]
    pub fn compaction_small_segment_bytes(mut self, bytes: u64) -> Options {
        self.compaction_small_segment_bytes = bytes;
        self
    }

    /// Caps the rate at which compaction writes, in bytes per second, so
    /// that it does not starve foreground I/O. 0 means no cap (the default).
    #[must_use]
    pub fn compaction_max_bytes_per_sec(mut self, bytes: u64) -> Options {
        self.compaction_max_bytes_per_sec = bytes;
        self
    }

    /// Write back-pressure. When automatic compaction is on and, as the
    /// writer seals a segment, the segment files take more than
    /// `compaction_max_space_amplification` times the live data, writes
    /// wait (up to one second at a time) until compaction has caught up, so
    /// that a writer running flat out cannot outgrow compaction (RocksDB
    /// calls this a write stall). [`Stats::write_stalls`](crate::Stats)
    /// counts the waits. Default: on.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new().stall_writes(false).open(dir.path())?;
    /// assert_eq!(db.stats().write_stalls, 0);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn stall_writes(mut self, on: bool) -> Options {
        self.stall_writes = on;
        self
    }

    /// Read the whole log once in the background after open, so that the
    /// first reads after a cold restart (a reboot, a page cache that was
    /// dropped) find their pages in memory instead of paying one disk read
    /// each. Default: on.
    ///
    /// A thread reads every segment front to back, the newest first
    /// (recent data is read most), a few MiB at a time through the file
    /// layer, and throws the bytes away: only the operating system's page
    /// cache keeps them, so it costs no memory of the process. It starts
    /// with every open that serves reads (writable, read-only, snapshot,
    /// and each keyspace), skips segments that compaction deleted
    /// meanwhile and stops at the next chunk when the store is closed or
    /// dropped. It competes with other I/O while it runs: measured on a
    /// virtual disk (docs/benchmarks.md), the 148 MB log of 1M keys with
    /// 100-byte values is read in about 0.1 s and the first 100,000 random
    /// gets after a dropped page cache average 2 µs instead of 20; at 10M
    /// keys the read takes about 1.2 s, during which durable writes were
    /// several times slower. [`Stats::warm_up_bytes_read`](crate::Stats) and
    /// [`Stats::warm_up_time`](crate::Stats) show what it did.
    ///
    /// Turn it off for a store much larger than the memory the page cache
    /// can use: the read would only push out pages that were in use, and
    /// reads would stay cold anyway; and for a large store that must take
    /// durable writes at full speed the moment it opens. Reads are correct
    /// either way; this only changes how fast the first ones are. The test
    /// hook that makes file operations happen in a fixed order (for the
    /// crash simulator) turns it off too.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new()
    ///     .warm_up_after_open(false)
    ///     .open(dir.path())?;
    /// assert_eq!(db.stats().warm_up_bytes_read, 0);
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn warm_up_after_open(mut self, on: bool) -> Options {
        self.warm_up_after_open = on;
        self
    }

    /// Whether a clean close of a writable handle writes an index
    /// checkpoint (`index.ckpt`): the in-memory index as it is, so that the
    /// next open loads it instead of rebuilding it from every hint file.
    /// Default: on.
    ///
    /// The next open uses it only when the directory holds exactly the
    /// files it describes (same segments, salts and lengths, nothing
    /// written since); otherwise, or when it is damaged, open logs why and
    /// rebuilds the index from hints and segments as without it: slower,
    /// never different. Records written after it are replayed on top of
    /// it (see [`Options::index_checkpoint_every_bytes`]).
    /// [`RecoveryReport::checkpoint`](crate::RecoveryReport) says whether
    /// an open used it. Writing it adds to close the time to write the
    /// index's slots (33 bytes a key) and two fsyncs; docs/benchmarks.md
    /// ("Open from an index checkpoint") has the figures.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new()
    ///     .index_checkpoint_at_close(false)
    ///     .open(dir.path())?;
    /// db.put("k", "v")?;
    /// db.close()?;
    /// assert!(!dir.path().join("index.ckpt").exists());
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn index_checkpoint_at_close(mut self, on: bool) -> Options {
        self.index_checkpoint_at_close = on;
        self
    }

    /// How many bytes of log a running store writes between two index
    /// checkpoints: the bound on what an open after a crash replays. 0
    /// writes none while the store runs. Default: 64 MiB.
    ///
    /// A checkpoint is written once the log written since the last one
    /// passes this or half the last checkpoint's size, whichever is larger
    /// (so checkpoints cost at most two bytes of writing per byte of log:
    /// at 10 million keys a checkpoint is 190 MB, and one is written every
    /// 95 MB of log); compactions append what they moved to it. It
    /// copies the index one shard at a time, holding the writer lock for
    /// each copy (about a millisecond per shard at 10 million keys), then
    /// writes and fsyncs the file off the write path. An open after a crash
    /// then loads it and applies only the records written after it
    /// instead of reading every hint file; the checkpoint and the records
    /// after it must match the files exactly, or the open falls back to
    /// hints and segments: slower, never different.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new()
    ///     .index_checkpoint_every_bytes(0)
    ///     .open(dir.path())?;
    /// db.put("k", "v")?;
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[must_use]
    pub fn index_checkpoint_every_bytes(mut self, bytes: u64) -> Options {
        self.index_checkpoint_every_bytes = bytes;
        self
    }

    /// How often automatic compaction checks the segments, in milliseconds,
    /// when no segment has been sealed (it also looks each time the writer
    /// seals one). Default: 1000.
    #[must_use]
    pub fn compaction_interval_ms(mut self, ms: u64) -> Options {
        self.compaction_interval_ms = ms;
        self
    }

    /// The file layer to use instead of the real file system (unstable:
    /// behind the `unstable-vfs` feature). cairn's tests run stores on a
    /// simulated file system this way. A file layer that has no real files
    /// behind it turns memory maps off by itself.
    ///
    /// ```
    /// # #[cfg(feature = "unstable-vfs")] {
    /// let dir = tempfile::tempdir()?;
    /// let db = cairn::Options::new()
    ///     .vfs(std::sync::Arc::new(cairn::vfs::RealFs))
    ///     .open(dir.path())?;
    /// db.put("k", "v")?;
    /// # }
    /// # Ok::<(), cairn::Error>(())
    /// ```
    #[cfg(feature = "unstable-vfs")]
    #[must_use]
    pub fn vfs(mut self, vfs: Arc<dyn crate::fs::Vfs>) -> Options {
        self.vfs = vfs;
        self
    }

    /// Test hook (`__test_hooks`): make every compaction stop after
    /// `step`, as if the process had crashed there.
    #[cfg(feature = "__test_hooks")]
    #[doc(hidden)]
    #[must_use]
    pub fn compaction_stop(mut self, step: Option<crate::util::hooks::CompactionStop>) -> Options {
        self.hooks.compaction_stop = step;
        self
    }

    /// Test hook (`__test_hooks`): perform all I/O in a fixed order, so
    /// that a simulated crash at the Nth file operation can be replayed.
    /// Recovery loads segments one at a time, hint files for sealed
    /// segments are written by the writer when it rolls, not by the
    /// background thread, and there is no warm-up after open.
    #[cfg(feature = "__test_hooks")]
    #[doc(hidden)]
    #[must_use]
    pub fn deterministic(mut self, on: bool) -> Options {
        self.hooks.deterministic = on;
        self
    }

    /// The clock used for expiries. Default: [`SystemClock`].
    #[must_use]
    pub fn clock(mut self, clock: impl Clock) -> Options {
        self.clock = Arc::new(clock);
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.max_segment_bytes) {
            return Err(Error::InvalidOptions(format!(
                "max_segment_bytes must be between {MIN_SEGMENT_BYTES} and {MAX_SEGMENT_BYTES}, got {}",
                self.max_segment_bytes
            )));
        }
        if !(self.compaction_min_dead_ratio > 0.0 && self.compaction_min_dead_ratio <= 1.0) {
            return Err(Error::InvalidOptions(format!(
                "compaction_min_dead_ratio must be in (0, 1], got {}",
                self.compaction_min_dead_ratio
            )));
        }
        let amp = self.compaction_max_space_amplification;
        if !(amp == 0.0 || amp > 1.0) {
            return Err(Error::InvalidOptions(format!(
                "compaction_max_space_amplification must be 0 (off) or above 1, got {amp}"
            )));
        }
        if self.compaction_interval_ms == 0 {
            return Err(Error::InvalidOptions(
                "compaction_interval_ms must be at least 1".into(),
            ));
        }
        if let SyncPolicy::EveryMillis(0) = self.sync_policy {
            return Err(Error::InvalidOptions(
                "SyncPolicy::EveryMillis needs at least 1 ms; use SyncPolicy::Always for per-write durability".into(),
            ));
        }
        Ok(())
    }

    /// The small-segment threshold in effect.
    pub(crate) fn small_segment_bytes(&self) -> u64 {
        if self.compaction_small_segment_bytes == AUTO {
            (self.max_segment_bytes / 4).min(16 << 20)
        } else {
            self.compaction_small_segment_bytes
        }
    }

    /// Whether file operations must happen in a fixed order (a test hook;
    /// always `false` without the `__test_hooks` feature).
    pub(crate) fn is_deterministic(&self) -> bool {
        #[cfg(feature = "__test_hooks")]
        {
            self.hooks.deterministic
        }
        #[cfg(not(feature = "__test_hooks"))]
        {
            false
        }
    }

    pub(crate) fn sync_interval(&self) -> Option<Duration> {
        match self.sync_policy {
            SyncPolicy::EveryMillis(n) => Some(Duration::from_millis(n)),
            _ => None,
        }
    }
}
