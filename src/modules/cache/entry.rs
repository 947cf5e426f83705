//! How an entry is stored: key `d` + key, a 13-byte header before the
//! value; generation counters under `g` + group.

use std::time::Duration;

use crate::error::{Error, Result};

pub(super) const DATA: u8 = b'd';
pub(super) const GENERATION: u8 = b'g';
pub(super) const HEADER: usize = 13;
pub(super) const KIND_VALUE: u8 = 0;
pub(super) const KIND_NOT_FOUND: u8 = 1;

/// A stored entry, decoded.
pub(super) struct Stored {
    pub(super) kind: u8,
    pub(super) fresh_until: u64,
    pub(super) load_ms: u32,
    pub(super) value: Vec<u8>,
}

impl Stored {
    pub(super) fn decode(mut v: Vec<u8>) -> Result<Stored> {
        if v.len() < HEADER || v[0] > KIND_NOT_FOUND {
            return Err(Error::Malformed("cache entry".into()));
        }
        let mut fu = [0u8; 8];
        fu.copy_from_slice(&v[1..9]);
        let mut lm = [0u8; 4];
        lm.copy_from_slice(&v[9..13]);
        let kind = v[0];
        v.drain(..HEADER);
        Ok(Stored {
            kind,
            fresh_until: u64::from_le_bytes(fu),
            load_ms: u32::from_le_bytes(lm),
            value: v,
        })
    }

    pub(super) fn is_fresh(&self, now: u64) -> bool {
        self.fresh_until == 0 || now < self.fresh_until
    }

    pub(super) fn answer(self) -> Option<Vec<u8>> {
        (self.kind == KIND_VALUE).then_some(self.value)
    }
}

pub(super) fn data_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(DATA);
    k.extend_from_slice(key);
    k
}

pub(super) fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
