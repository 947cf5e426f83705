//! The stores under test, by name.

use crate::store::Peer;

pub mod cairn;
pub mod fjall;
pub mod lmdb;
pub mod redb;
pub mod redis;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
pub mod sled;
pub mod sqlite;

/// Every peer name the harness knows, in report order.
pub const ALL: &[&str] = &[
    "cairn",
    "redb",
    "fjall",
    "sled",
    "sqlite",
    "sqlite-normal",
    "lmdb",
    "rocksdb",
    "redis-always",
    "redis-everysec",
];

/// The peer called `name`, if it is built in.
pub fn peer(name: &str) -> Option<Box<dyn Peer>> {
    Some(match name {
        "cairn" => Box::new(cairn::CairnPeer),
        "redb" => Box::new(redb::RedbPeer),
        "fjall" => Box::new(fjall::FjallPeer),
        "sled" => Box::new(sled::SledPeer),
        "sqlite" => Box::new(sqlite::SqlitePeer {
            force_normal: false,
        }),
        "sqlite-normal" => Box::new(sqlite::SqlitePeer { force_normal: true }),
        "lmdb" => Box::new(lmdb::LmdbPeer),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(rocksdb::RocksPeer),
        "redis-always" => Box::new(redis::RedisPeer::from_env(false)?),
        "redis-everysec" => Box::new(redis::RedisPeer::from_env(true)?),
        _ => return None,
    })
}
