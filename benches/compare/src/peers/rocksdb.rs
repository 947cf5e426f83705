//! STUB: to be written.

use std::path::Path;

use crate::store::{Durability, Peer, Result, Store};

/// Opens rocksdb stores.
pub struct RocksPeer;

impl Peer for RocksPeer {
    fn open(&self, _dir: &Path, _durability: Durability) -> Result<Box<dyn Store>> {
        Err("not written yet".into())
    }
}
