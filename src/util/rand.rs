//! Randomness: the operating system's CSPRNG for secrets (session ids),
//! and a small fast generator for sampling and jitter, which need no
//! secrecy.

use std::io;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, Result};

/// Fills `buf` from the operating system's CSPRNG (`getrandom(2)` on
/// Linux). Never falls back to a weaker source.
pub(crate) fn secure_bytes(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::Io(io::Error::other(format!(
            "the operating system's random number generator failed: {e}"
        )))
    })
}

/// SplitMix64: statistically good, not for secrets.
#[derive(Debug, Clone)]
pub(crate) struct FastRng(u64);

impl FastRng {
    /// Seeded from the CSPRNG, or from the clock if that fails (the
    /// stream only needs to differ between runs, not to be secret).
    pub(crate) fn new() -> FastRng {
        let mut b = [0u8; 8];
        if secure_bytes(&mut b).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            b = t.to_le_bytes();
        }
        FastRng(u64::from_le_bytes(b))
    }

    pub(crate) fn with_seed(seed: u64) -> FastRng {
        FastRng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `(0, 1]`.
    pub(crate) fn unit_open0(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// Base64url without padding (RFC 4648 section 5).
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding; `None` for anything else (padding,
/// other alphabets, and non-canonical trailing bits).
pub(crate) fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// A fresh random salt for a new segment (or a temporary file name).
pub(crate) fn new_salt(id: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the operating system's randomness.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(id);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    (h.finish() >> 16) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips_and_matches_rfc4648() {
        // RFC 4648 section 10 vectors, unpadded.
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64url_encode(raw.as_bytes()), enc);
            assert_eq!(b64url_decode(enc).as_deref(), Some(raw.as_bytes()));
        }
        assert_eq!(b64url_encode(&[0xfb, 0xff]), "-_8");
        let mut rng = FastRng::with_seed(7);
        for len in 0..64 {
            let v: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            assert_eq!(b64url_decode(&b64url_encode(&v)), Some(v));
        }
        for bad in ["Z", "Zh", "Zm9=", "Zm+v", "Zm9v Y", "Zm9vYh"] {
            assert_eq!(b64url_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn salts_are_random() {
        assert_ne!(new_salt(3), new_salt(3));
    }

    #[test]
    fn secure_bytes_differ() {
        let (mut a, mut b) = ([0u8; 24], [0u8; 24]);
        secure_bytes(&mut a).expect("getrandom");
        secure_bytes(&mut b).expect("getrandom");
        assert_ne!(a, b);
    }

    #[test]
    fn below_stays_in_range() {
        let mut r = FastRng::with_seed(1);
        for n in 1..100 {
            assert!(r.below(n) < n);
        }
        let u = r.unit_open0();
        assert!(u > 0.0 && u <= 1.0);
    }
}
