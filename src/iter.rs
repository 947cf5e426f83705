//! Prefix scans.

use std::sync::Arc;

use crate::engine::Core;
use crate::error::Result;

/// Iterator returned by [`Db::scan_prefix`](crate::Db::scan_prefix): live
/// `(key, value)` pairs in key order.
pub struct ScanPrefix {
    core: Arc<Core>,
    keys: std::vec::IntoIter<Vec<u8>>,
    error: Option<crate::error::Error>,
}

impl ScanPrefix {
    pub(crate) fn new(core: Arc<Core>, prefix: &[u8]) -> ScanPrefix {
        let (keys, error) = match core.keys_with_prefix(prefix) {
            Ok(k) => (k, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        ScanPrefix {
            core,
            keys: keys.into_iter(),
            error,
        }
    }
}

impl Iterator for ScanPrefix {
    type Item = Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        for key in self.keys.by_ref() {
            match self.core.get(&key) {
                Ok(Some(v)) => return Some(Ok((key, v))),
                Ok(None) => continue, // deleted or expired since the scan began
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.keys.len() + usize::from(self.error.is_some())))
    }
}

impl std::fmt::Debug for ScanPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPrefix")
            .field("remaining", &self.keys.len())
            .finish()
    }
}
