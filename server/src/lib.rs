//! `cairn serve`: a Redis-protocol server over a cairn store.
//!
//! Every Redis client works with it unchanged: it speaks RESP2 and RESP3,
//! answers Redis 7's string, key, transaction, connection and server
//! commands with Redis's replies and error texts, and keeps its data in a
//! cairn store on disk. See the "Server" section of `docs/guide.md`.
#![deny(missing_docs, clippy::unwrap_used)]

pub mod resp;
