//! The only module with `unsafe`: read-only memory maps of sealed segments,
//! and one call that returns freed heap memory to the OS.
//!
//! # SAFETY argument
//!
//! `memmap2::Mmap::map` is unsafe because the mapped file could be changed
//! or truncated while the map is alive, which would make the `&[u8]` it
//! hands out change under Rust's feet (or raise `SIGBUS` on truncation).
//! cairn maps a segment only once it is *sealed*, and sealed segments are
//! never written, truncated or renamed by cairn again: compaction writes new
//! files and deletes old ones, and an unlinked file stays valid for as long
//! as it is mapped. Other cairn handles are kept out by the directory lock
//! (exclusive for writers, shared for read-only opens). A snapshot
//! (`Options::snapshot`, `verify`, `SegmentFiles`) takes no lock, so a
//! writer may run beside it: it maps only segments *below* the active one
//! it found, which the writer sealed (and cut to their last record) before
//! it created the next segment, and which no cairn process writes or cuts
//! short again (`repair` renames a new file over a segment; the writer's
//! own open cuts only its active segment, never one below it); the active
//! segment is read with `pread` (see `recovery/pin.rs`). So the only way
//! the bytes can change is a process outside cairn writing into its data files,
//! which the documentation (docs/design.md) rules out, as LMDB, redb and
//! every other store that maps its files do. Every value read through the
//! map is also checked against its record's CRC before it is returned.
//! Users who cannot rule that out set `Options::use_mmap(false)`, and cairn
//! then reads sealed segments with `pread` like the active one.

use std::fs::File;
use std::io;

/// A read-only map of a whole sealed segment.
pub(crate) struct Map {
    inner: memmap2::Mmap,
}

impl Map {
    /// Maps `file` read-only. The caller guarantees that the file is a sealed
    /// segment (see the module's SAFETY argument).
    pub(crate) fn sealed_segment(file: &File) -> io::Result<Map> {
        // SAFETY: see the module documentation: sealed segments are never
        // modified by cairn again.
        #[allow(unsafe_code)]
        let inner = unsafe { memmap2::MmapOptions::new().map(file)? };
        #[cfg(unix)]
        {
            // Point reads are random; read-ahead only wastes page cache.
            let _ = inner.advise(memmap2::Advice::Random);
        }
        Ok(Map { inner })
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.inner
    }

    /// Drops this process's page-table entries for the whole map
    /// (`MADV_DONTNEED`), so that pages read once for a scan (the hint
    /// writer reads every byte of a newly sealed segment) stop counting in
    /// the process's resident memory. The pages stay in the page cache; the
    /// next read through the map faults them in again, with the same bytes.
    pub(crate) fn release_resident(&self) {
        #[cfg(unix)]
        {
            // SAFETY: this is a read-only, shared (MAP_SHARED) map of a
            // sealed segment, which cairn never modifies (see the module's
            // SAFETY argument). For such a map, MADV_DONTNEED only removes
            // the page-table entries: a later access, from any thread and
            // through any borrow of `bytes()`, faults in the page again
            // from the page cache or the file, with exactly the bytes it had.
            // (The zero-fill MADV_DONTNEED is known for applies to private
            // and anonymous maps only.) No byte a reader can see changes.
            #[allow(unsafe_code)]
            let r = unsafe {
                self.inner
                    .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
            };
            if let Err(e) = r {
                log::debug!("madvise(DONTNEED) of a sealed segment failed: {e}");
            }
        }
    }
}

/// Asks the C allocator to return free heap pages to the OS.
///
/// Opening a large store builds temporary buffers (every hint entry with its
/// key: about 90 bytes per key) while the index is allocated; glibc keeps
/// most of that memory after it is freed, because it lies below live
/// allocations or in the loader threads' arenas. `malloc_trim` releases the
/// free pages of every arena. Measured at 10M keys: resident memory after
/// open fell from about 97 to about 80 bytes per key (docs/benchmarks.md).
///
/// # SAFETY
///
/// `malloc_trim` only releases memory that glibc's allocator itself knows to
/// be free; it takes the allocator's own locks and is safe to call from any
/// thread at any time. It touches no Rust object.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: see above.
    unsafe {
        libc::malloc_trim(0);
    }
}
