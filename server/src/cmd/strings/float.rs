//! INCRBYFLOAT's numbers as Redis has them on x86-64: an x87 80-bit
//! `long double` (a 64-bit significand) parsed as `strtold` does, added
//! with round-to-nearest-even, and printed as `%.17Lf` with the trailing
//! zeros trimmed. Rust has no such type, so every step is computed exactly
//! with big integers and rounded once, which gives Redis's digits.

use std::cmp::Ordering;

use num_bigint::BigUint;

/// The exponent of the lowest significand bit of the smallest subnormal
/// (and of the smallest normal) long double: 2^-16445.
const EMIN: i64 = -16445;
/// The exponent of the lowest significand bit of the largest long double,
/// (2^64 - 1) · 2^16320.
const EMAX: i64 = 16320;
/// Redis refuses a number text of this many bytes or more
/// (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

/// A long double: `±mant · 2^exp` (`mant` 0 is a zero), or an infinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LongDouble {
    /// A finite value.
    Finite {
        /// Whether it is negative.
        neg: bool,
        /// The significand (at most 64 bits).
        mant: u64,
        /// The power of two of its lowest bit.
        exp: i64,
    },
    /// An infinity (of either sign).
    Inf,
}

impl LongDouble {
    /// Parses `text` as Redis's `string2ld`: `strtold` must read all of it,
    /// with no leading space; NaN, an overflow and an underflow to zero are
    /// refused. Decimal, hexadecimal (`0x1.8p3`) and `inf`/`infinity` are
    /// read.
    pub fn parse(text: &[u8]) -> Option<LongDouble> {
        if text.is_empty() || text.len() >= MAX_CHARS {
            return None;
        }
        let (neg, body) = match text[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if body.eq_ignore_ascii_case(b"inf") || body.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble::Inf);
        }
        let (num, den, shift) = if body.len() > 2 && body[0] == b'0' && (body[1] | 0x20) == b'x' {
            parse_hex(&body[2..])?
        } else {
            parse_decimal(body)?
        };
        if num.bits() == 0 {
            return Some(LongDouble::Finite {
                neg,
                mant: 0,
                exp: 0,
            });
        }
        match round(&num, &den, shift) {
            Some((0, _)) | None => None,
            Some((mant, exp)) => Some(LongDouble::Finite { neg, mant, exp }),
        }
    }

    /// The sum, rounded to the nearest long double (an infinity when it
    /// overflows).
    pub fn add(self, other: LongDouble) -> LongDouble {
        let (
            LongDouble::Finite {
                neg: na,
                mant: ma,
                exp: ea,
            },
            LongDouble::Finite {
                neg: nb,
                mant: mb,
                exp: eb,
            },
        ) = (self, other)
        else {
            return LongDouble::Inf;
        };
        if ma == 0 {
            return other;
        }
        if mb == 0 {
            return self;
        }
        let low = ea.min(eb);
        let a = BigUint::from(ma) << usize::try_from(ea - low).unwrap_or(0);
        let b = BigUint::from(mb) << usize::try_from(eb - low).unwrap_or(0);
        let (neg, sum) = if na == nb {
            (na, a + b)
        } else {
            match a.cmp(&b) {
                Ordering::Greater => (na, a - b),
                Ordering::Less => (nb, b - a),
                Ordering::Equal => (false, BigUint::from(0u8)),
            }
        };
        if sum.bits() == 0 {
            return LongDouble::Finite {
                neg: false,
                mant: 0,
                exp: 0,
            };
        }
        match round(&sum, &BigUint::from(1u8), low) {
            Some((mant, exp)) => LongDouble::Finite { neg, mant, exp },
            None => LongDouble::Inf,
        }
    }

    /// Redis's human-friendly text: `%.17Lf`, trailing zeros (and a
    /// trailing point) trimmed, `-0` written `0`. `None` for an infinity.
    pub fn format(self) -> Option<String> {
        let LongDouble::Finite { neg, mant, exp } = self else {
            return None;
        };
        let scaled = BigUint::from(mant) * BigUint::from(10u8).pow(17);
        let fixed = if exp >= 0 {
            scaled << usize::try_from(exp).unwrap_or(0)
        } else {
            let bits = usize::try_from(-exp).unwrap_or(0);
            let q = &scaled >> bits;
            let rest = &scaled - (&q << bits);
            let half = BigUint::from(1u8) << (bits - 1);
            match rest.cmp(&half) {
                Ordering::Greater => q + 1u8,
                Ordering::Equal if q.bit(0) => q + 1u8,
                _ => q,
            }
        };
        let mut digits = fixed.to_string();
        if digits.len() < 18 {
            digits = format!("{}{digits}", "0".repeat(18 - digits.len()));
        }
        let (int, frac) = digits.split_at(digits.len() - 17);
        let frac = frac.trim_end_matches('0');
        let mut out = String::with_capacity(digits.len() + 2);
        if neg && !(int == "0" && frac.is_empty()) {
            out.push('-');
        }
        out.push_str(int);
        if !frac.is_empty() {
            out.push('.');
            out.push_str(frac);
        }
        Some(out)
    }
}

/// `num / den · 2^shift` rounded to nearest-even into a significand of at
/// most 64 bits and the exponent of its lowest bit (subnormal below
/// [`EMIN`]); `None` past the largest long double.
fn round(num: &BigUint, den: &BigUint, shift: i64) -> Option<(u64, i64)> {
    let approx = i64::try_from(num.bits()).ok()? - i64::try_from(den.bits()).ok()? + shift;
    if approx > EMAX + 66 {
        return None;
    }
    let mut exp = (approx - 64).max(EMIN);
    loop {
        let up = shift - exp;
        let (n, d) = if up >= 0 {
            (num << usize::try_from(up).ok()?, den.clone())
        } else {
            (num.clone(), den << usize::try_from(-up).ok()?)
        };
        let q = &n / &d;
        if q.bits() > 64 {
            exp += 1;
            continue;
        }
        let rest = n - &q * &d;
        let mut mant = q.iter_u64_digits().next().unwrap_or(0);
        let round_up = match (rest << 1usize).cmp(&d) {
            Ordering::Greater => true,
            Ordering::Equal => mant & 1 == 1,
            Ordering::Less => false,
        };
        if round_up {
            mant = mant.wrapping_add(1);
            if mant == 0 {
                mant = 1 << 63;
                exp += 1;
            }
        }
        return (exp <= EMAX).then_some((mant, exp));
    }
}

/// Decimal digits with an optional point and exponent: the value as
/// `num / den · 2^0`. Magnitudes that surely overflow or underflow are
/// refused before any big power is computed.
fn parse_decimal(body: &[u8]) -> Option<(BigUint, BigUint, i64)> {
    let mant_end = body
        .iter()
        .position(|&c| c == b'e' || c == b'E')
        .unwrap_or(body.len());
    let (mant, exp_part) = body.split_at(mant_end);
    let mut digits = Vec::with_capacity(mant.len());
    let mut frac_digits: i64 = 0;
    let mut seen_point = false;
    for &c in mant {
        match c {
            b'0'..=b'9' => {
                digits.push(c);
                if seen_point {
                    frac_digits += 1;
                }
            }
            b'.' if !seen_point => seen_point = true,
            _ => return None,
        }
    }
    if digits.is_empty() {
        return None;
    }
    let exp10 = exponent(exp_part)?;
    let first = digits.iter().position(|&c| c != b'0');
    let Some(first) = first else {
        return Some((BigUint::from(0u8), BigUint::from(1u8), 0));
    };
    let significant = &digits[first..];
    let scale = exp10.saturating_sub(frac_digits);
    let len = i64::try_from(significant.len()).ok()?;
    // The value lies in [10^(len-1+scale), 10^(len+scale)); long doubles
    // end near 1.19e4932 and their smallest half-subnormal is near 1.8e-4951.
    if len.saturating_add(scale) > 4934 || len.saturating_add(scale) < -4952 {
        return None;
    }
    let n = BigUint::parse_bytes(significant, 10)?;
    let ten = BigUint::from(10u8);
    if scale >= 0 {
        Some((
            n * ten.pow(u32::try_from(scale).ok()?),
            BigUint::from(1u8),
            0,
        ))
    } else {
        Some((n, ten.pow(u32::try_from(-scale).ok()?), 0))
    }
}

/// Hexadecimal digits (after `0x`) with an optional point and binary
/// exponent (`p`): the value as `num / 1 · 2^shift`.
fn parse_hex(body: &[u8]) -> Option<(BigUint, BigUint, i64)> {
    let mant_end = body
        .iter()
        .position(|&c| c == b'p' || c == b'P')
        .unwrap_or(body.len());
    let (mant, exp_part) = body.split_at(mant_end);
    let mut digits = Vec::with_capacity(mant.len());
    let mut frac_digits: i64 = 0;
    let mut seen_point = false;
    for &c in mant {
        if c.is_ascii_hexdigit() {
            digits.push(c);
            if seen_point {
                frac_digits += 1;
            }
        } else if c == b'.' && !seen_point {
            seen_point = true;
        } else {
            return None;
        }
    }
    if digits.is_empty() {
        return None;
    }
    let exp2 = exponent(exp_part)?;
    let n = BigUint::parse_bytes(&digits, 16)?;
    if n.bits() == 0 {
        return Some((n, BigUint::from(1u8), 0));
    }
    let shift = exp2.saturating_sub(frac_digits.saturating_mul(4));
    let top = i64::try_from(n.bits()).ok()?.saturating_add(shift);
    if !(EMIN - 2..=EMAX + 66).contains(&top) {
        return None;
    }
    Some((n, BigUint::from(1u8), shift))
}

/// The exponent part of a number (`e`/`E`/`p`/`P` then an optional sign and
/// decimal digits; empty: 0), saturating as Redis's `strtold` does for a
/// huge exponent; `None` when it has no digits or a stray byte.
fn exponent(exp_part: &[u8]) -> Option<i64> {
    let Some(e) = exp_part.get(1..) else {
        return Some(0);
    };
    let (neg, digits) = match e.first() {
        Some(b'-') => (true, &e[1..]),
        Some(b'+') => (false, &e[1..]),
        _ => (false, e),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        n = n.saturating_mul(10).saturating_add(i64::from(c - b'0'));
    }
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(a: &str, b: &str) -> Option<String> {
        let x = LongDouble::parse(a.as_bytes())?;
        let y = LongDouble::parse(b.as_bytes())?;
        x.add(y).format()
    }

    #[test]
    fn sums_print_as_redis_prints_them() {
        // Each expected text is what Redis 7.0 on x86-64 replied.
        assert_eq!(sum("10.50", "0.1").as_deref(), Some("10.6"));
        assert_eq!(sum("5.0e3", "2.0e2").as_deref(), Some("5200"));
        assert_eq!(
            sum("1e30", "1").as_deref(),
            Some("1000000000000000000024696061952")
        );
        assert_eq!(sum("0", "1e-17").as_deref(), Some("0.00000000000000001"));
        assert_eq!(sum("0", "1e-18").as_deref(), Some("0"));
        assert_eq!(sum("0", "-1e-20").as_deref(), Some("0"));
        assert_eq!(sum("0", "-0.0").as_deref(), Some("0"));
        assert_eq!(sum("0", "0x1p3").as_deref(), Some("8"));
        assert_eq!(sum("0", "3.0000000000000000001").as_deref(), Some("3"));
        assert_eq!(sum("1", "-1.1").as_deref(), Some("-0.1"));
        assert_eq!(sum("17179869184", "1.5").as_deref(), Some("17179869185.5"));
    }

    #[test]
    fn parse_refuses_what_string2ld_refuses() {
        for bad in [
            "", " 1", "1 ", "nan", "-nan", "1e5000", "1e-5000", "0x", "1e", "1e+", ".", "abc",
            "1.2.3", "0x1p", "--1", "1\0",
        ] {
            assert_eq!(LongDouble::parse(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(LongDouble::parse(&[b'1'; MAX_CHARS]), None);
        for good in [
            "inf",
            "-Infinity",
            "+1",
            ".5",
            "5.",
            "1E2",
            "0e999999999999",
            "-0",
        ] {
            assert!(LongDouble::parse(good.as_bytes()).is_some(), "{good:?}");
        }
    }

    #[test]
    fn overflow_is_infinity() {
        let max = LongDouble::Finite {
            neg: false,
            mant: u64::MAX,
            exp: EMAX,
        };
        assert_eq!(max.add(max), LongDouble::Inf);
        assert!(max.format().is_some());
        assert_eq!(LongDouble::Inf.add(max), LongDouble::Inf);
    }
}
