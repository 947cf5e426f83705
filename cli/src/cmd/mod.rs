//! The subcommands, one module per command or family of commands. Each
//! entry point takes its parsed arguments and stdout and returns the exit
//! code.

pub mod backup;
pub mod compact;
pub mod dump;
pub mod export;
pub mod follow;
pub mod import;
pub mod import_redis;
pub mod keys;
pub mod repair;
pub mod scan;
pub mod serve;
pub mod stats;
pub mod verify;
