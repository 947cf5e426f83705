//! Helpers shared by the measurement examples (not an example itself).
#![allow(dead_code)]

/// The first argument after the program name, parsed, or `default`.
pub fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// A 16-byte key for index `i`: mixed bits first, so keys spread evenly.
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    k[8..].copy_from_slice(&i.to_be_bytes());
    k
}

/// SplitMix64: a fast, well-mixed pseudo-random sequence.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Loads keys `0..n` with 100-byte values, in batches of 1,000.
pub fn load(db: &cairn::Db, n: u64) -> cairn::Result<()> {
    let mut i = 0;
    while i < n {
        let mut b = cairn::Batch::new();
        for j in i..(i + 1000).min(n) {
            b.push_put(key(j), [b'v'; 100], None);
        }
        db.write_batch(b)?;
        i += 1000;
    }
    Ok(())
}
