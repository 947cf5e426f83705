//! Offline tools on a store directory: inspect, verify and repair.

pub(crate) mod inspect;
pub(crate) mod repair;
pub(crate) mod verify;
