//! The in-memory index (the keydir): the location of the newest record of
//! every key.

pub(crate) mod keydir;
