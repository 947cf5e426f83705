//! A store directory built from arbitrary bytes (segments, hints, a
//! compaction manifest, stray temporary files; see `cairn_fuzz::dir`) on
//! the simulated file system, opened in strict, salvage and read-only mode.
//! Nothing may panic, and what opens must read back consistently, take
//! writes and reopen (see `cairn_fuzz::open_dir`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::open_dir::run(data);
});
