//! Offline tools on a store directory: inspect, verify, repair and backup.

pub(crate) mod backup;
pub(crate) mod inspect;
pub(crate) mod repair;
pub(crate) mod verify;
