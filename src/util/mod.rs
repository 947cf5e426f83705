//! Helpers every layer may use: lock helpers, randomness, the clock, and
//! the test hooks.

pub mod clock;
pub(crate) mod hooks;
pub(crate) mod locks;
pub(crate) mod rand;
