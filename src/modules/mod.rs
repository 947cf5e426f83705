//! The modules built on the public [`Db`](crate::Db) API: durable sessions,
//! a restart-surviving bounded cache, rate limits and idempotency keys.

pub mod cache;
mod eviction;
pub mod limits;
pub mod module_keys;
pub mod session;
