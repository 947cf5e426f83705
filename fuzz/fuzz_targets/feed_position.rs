//! The text form of a change feed position (`<seq>:<8 hex digits>`), as
//! `cairn follow` reads it back from a file or a Redis key: arbitrary text
//! either parses to a position that prints back the same way, or is
//! refused with `InvalidArgument`; nothing panics.
#![no_main]

use cairn::feed::Position;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Position>() {
        Ok(p) => {
            let again: Position = p.to_string().parse().expect("a printed position parses");
            assert_eq!(again, p);
        }
        Err(cairn::Error::InvalidArgument(_)) => {}
        Err(e) => panic!("unexpected error: {e}"),
    }
});
