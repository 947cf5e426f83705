//! Helpers shared by the integration tests (`mod common;` in each).
//!
//! * [`format`]: the one independent oracle of the on-disk format
//!   (docs/format.md), shared with the fuzz crate.
//! * [`servers`]: real Redis-protocol servers as child processes
//!   (`redis-server`, a Redis Cluster, `cairn serve`).
//! * [`simfs`]: the simulated-file-system harness of the crash tests.
//! * [`sim`] and [`TestOptions`]: the only places that name cairn's
//!   test machinery (the `cairn-sim` crate, `cairn::vfs` behind the
//!   `unstable-vfs` feature, and the test hooks behind `__test_hooks`).
//!
//! Each test binary uses a subset of them.

#![allow(dead_code)]

pub mod format;
pub mod servers;
#[cfg(feature = "__test_hooks")]
pub mod simfs;

use std::fs;
use std::path::Path;

/// The simulated file system (the `cairn-sim` crate) and cairn's file
/// layer (`cairn::vfs`, unstable).
pub mod sim {
    #[allow(unused_imports)]
    pub use cairn::vfs::{OpenMode, Vfs};
    #[allow(unused_imports)]
    pub use cairn_sim::{Damage, Fault, FaultKind, Rng, SimFs};
}

/// Where compaction stops, for crash tests (a test hook).
#[cfg(feature = "__test_hooks")]
#[allow(unused_imports)]
pub use cairn::CompactionStop;

/// Options for a store on the simulated file system.
#[cfg(feature = "__test_hooks")]
pub trait TestOptions {
    /// Runs the store on `sim`, deterministically (no random salts or
    /// background timing).
    fn on_sim(self, sim: &sim::SimFs) -> cairn::Options;
}

#[cfg(feature = "__test_hooks")]
impl TestOptions for cairn::Options {
    fn on_sim(self, sim: &sim::SimFs) -> cairn::Options {
        self.vfs(std::sync::Arc::new(sim.clone()))
            .deterministic(true)
    }
}

/// Where test clocks start (unix ms).
pub const START_MS: u64 = 1_700_000_000_000;

/// A small xorshift generator: the tests need variety, not quality.
pub struct XorShift(u64);

impl XorShift {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// A number in `0..n`, as a `usize`.
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }
}

/// Copies the files (not the directories) directly in `from` into `to`,
/// creating `to` if needed.
pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("file type").is_file() {
            fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}
