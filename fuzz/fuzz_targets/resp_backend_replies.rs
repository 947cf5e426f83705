//! The RESP backend's decoders (`cairn::backend::resp`) on arbitrary
//! bytes: a server's reply to the read script (byte 0 is the number of
//! keys asked for), the same bytes as a `CLUSTER NODES` reply, and a key
//! made of the two halves of the input, encoded and decoded again.
//!
//! Checks besides "no panic, abort, OOM or hang": a key the layout
//! accepts decodes back to its name.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = cairn::fuzzing::resp_backend_replies(data);
});
