//! Helpers every layer may use: lock helpers, randomness, the clock, a
//! pool for blocking calls made from async code, and the test hooks.

pub mod clock;
#[cfg(feature = "__test_hooks")]
pub(crate) mod hooks;
pub(crate) mod locks;
pub(crate) mod offload;
pub(crate) mod rand;

/// A crash point: with the `__test_hooks` feature, returns an I/O error
/// from the enclosing function when the options ask compaction to stop
/// after `$step`; without it, nothing.
macro_rules! crash_point {
    ($opts:expr, $step:ident) => {
        #[cfg(feature = "__test_hooks")]
        {
            if $opts.hooks.compaction_stop == Some($crate::util::hooks::CompactionStop::$step) {
                return Err($crate::error::Error::Io(std::io::Error::other(
                    "compaction stopped for a test",
                )));
            }
        }
    };
}
pub(crate) use crash_point;
