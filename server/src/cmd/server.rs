//! Server commands: INFO, CONFIG, CLIENT, COMMAND, TIME, DBSIZE, SHUTDOWN
//! and the rest.

use super::Spec;

/// The server commands.
pub const COMMANDS: &[Spec] = &[];
