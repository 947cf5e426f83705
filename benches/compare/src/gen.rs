//! Deterministic keys, values and request distributions.

/// splitmix64: a fast, well-mixed 64-bit hash of a counter.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The 16-byte key number `i` of the loaded key set: random-looking bytes.
pub fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(i).to_le_bytes());
    k[8..].copy_from_slice(&mix(i ^ 0x5555_5555_5555_5555).to_le_bytes());
    k
}

/// A fresh key that is not in the loaded set (for inserts of new keys).
pub fn new_key(thread: u64, i: u64) -> [u8; 16] {
    key((1 << 62) | (thread << 40) | i)
}

/// A `len`-byte value for key `i`, version `ver`.
pub fn value(i: u64, ver: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut x = mix(i.wrapping_mul(31).wrapping_add(ver));
    while v.len() < len {
        x = mix(x);
        let b = x.to_le_bytes();
        let n = (len - v.len()).min(8);
        v.extend_from_slice(&b[..n]);
    }
    v
}

/// A session's JSON document of about `len` bytes.
pub fn session_json(i: u64, len: usize) -> Vec<u8> {
    let mut s = format!(
        "{{\"user_id\":{},\"csrf\":\"{:016x}{:016x}\",\"roles\":[\"user\"],\"cart\":[",
        mix(i) % 1_000_000,
        mix(i + 1),
        mix(i + 2)
    );
    let mut n = 0u64;
    while s.len() + 40 < len {
        s.push_str(&format!(
            "{{\"sku\":{},\"qty\":{}}},",
            mix(i + n) % 100_000,
            n % 5 + 1
        ));
        n += 1;
    }
    if s.ends_with(',') {
        s.pop();
    }
    s.push_str("]}");
    while s.len() < len {
        s.insert(s.len() - 1, ' ');
    }
    s.into_bytes()
}

/// xorshift64*: the per-thread request generator.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (never zero inside).
    pub fn new(seed: u64) -> Rng {
        Rng(mix(seed) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// YCSB's zipfian generator (Gray et al., "Quickly generating billion-record
/// synthetic databases"), with the popular items scattered over the key
/// space by a hash, as YCSB's "scrambled zipfian" does.
pub struct Zipf {
    n: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipf {
    /// Items `0..n` with skew `theta` (YCSB uses 0.99).
    pub fn new(n: u64, theta: f64) -> Zipf {
        let zeta = |k: u64| (1..=k).map(|i| 1.0 / (i as f64).powf(theta)).sum::<f64>();
        let zetan = zeta(n);
        let zeta2 = zeta(2);
        let alpha = 1.0 / (1.0 - theta);
        let eta = (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Zipf {
            n,
            theta,
            alpha,
            zetan,
            eta,
        }
    }

    /// The next item, scrambled into `0..n`.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let uz = u * self.zetan;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            ((self.n as f64) * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64
        };
        mix(rank.min(self.n - 1) ^ 0xabcd) % self.n
    }
}
