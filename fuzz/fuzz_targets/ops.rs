//! Operation sequences (put, TTLs, delete, incr, compare-and-swap, batches,
//! compaction, clock, sync, reopen, crashes with every damage model, crash
//! points and injected I/O errors) on the simulated file system, checked
//! against a `BTreeMap` model (see `cairn_fuzz::ops`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cairn_fuzz::ops::run(data);
});
