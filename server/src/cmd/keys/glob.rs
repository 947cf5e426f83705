//! Redis's glob patterns (KEYS, SCAN MATCH): `*`, `?`, `[abc]`, `[^a]`,
//! `[a-z]` and `\` escapes, with the exact semantics of Redis's
//! `stringmatchlen` (case-sensitive), written anew.
//!
//! Redis matches recursively, one level per `*`; since 7.0.10 it gives up
//! on a `*` once a later `*` has tried every position, which makes the
//! work polynomial. This matcher does the same without recursion: only the
//! innermost `*` is ever retried, so a match costs at most about
//! `pattern.len() × string.len()` steps and the stack stays flat whatever
//! the pattern. On top of that every step is charged to a [`Budget`], so
//! that a hostile pattern over many long keys cannot hold the server: the
//! command fails with [`TooComplex`] instead.
//!
//! Quirks kept from Redis, on purpose:
//! - an empty string matches only the empty pattern (`*` included: KEYS and
//!   SCAN treat the pattern `*` alone as "everything" before matching);
//! - in a class, `]` right after `[` (or `[^`) closes it, so `[]]` is the
//!   empty class followed by `]`; `x-y` is a range even when `y` is `]`
//!   (`[a-]` is the range `]`..`a`); a reversed range is swapped; range
//!   ends compare as C's signed `char`;
//! - an unterminated class (`[ab`) ends at the end of the pattern; a
//!   trailing `\` matches itself.

/// The error when a match would need more steps than its [`Budget`]
/// allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooComplex;

/// Steps a command may spend matching, whatever the keys.
pub const BASE_STEPS: u64 = 10_000_000;
/// Steps granted per byte of each key matched.
const STEPS_PER_KEY_BYTE: u64 = 64;
/// At most this many steps per key for the pattern's own length.
const PATTERN_STEPS_CAP: u64 = 4096;

/// How much matching work a command may still do.
#[derive(Debug, Clone)]
pub struct Budget {
    left: u64,
}

impl Default for Budget {
    fn default() -> Self {
        Budget::new(BASE_STEPS)
    }
}

impl Budget {
    /// A budget of `steps`.
    pub fn new(steps: u64) -> Budget {
        Budget { left: steps }
    }

    /// Adds the allowance for matching `pattern` against one key of
    /// `key_len` bytes: linear in the key, so that ordinary patterns never
    /// run out however many keys there are.
    pub fn grant(&mut self, pattern: &[u8], key_len: usize) {
        let key = u64::try_from(key_len).unwrap_or(u64::MAX);
        let pat = u64::try_from(pattern.len()).unwrap_or(u64::MAX);
        let more = key
            .saturating_add(1)
            .saturating_mul(STEPS_PER_KEY_BYTE)
            .saturating_add(pat.min(PATTERN_STEPS_CAP));
        self.left = self.left.saturating_add(more);
    }

    fn spend(&mut self) -> Result<(), TooComplex> {
        if self.left == 0 {
            return Err(TooComplex);
        }
        self.left -= 1;
        Ok(())
    }
}

/// The byte at `i`, or 0 past the end (Redis's strings end with a NUL,
/// which its matcher reads).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// A byte as C's signed `char`, as Redis compares range ends.
fn signed(b: u8) -> i32 {
    i32::from(b as i8)
}

/// Matches the class that starts at `pattern[p]` (`[`) against `c`;
/// returns whether it matched and the index of the class's last byte.
fn class(
    pattern: &[u8],
    mut p: usize,
    c: u8,
    budget: &mut Budget,
) -> Result<(bool, usize), TooComplex> {
    let plen = pattern.len();
    p += 1;
    let not = at(pattern, p) == b'^';
    if not {
        p += 1;
    }
    let mut matched = false;
    loop {
        budget.spend()?;
        let rest = plen - p;
        let b = at(pattern, p);
        if b == b'\\' && rest >= 2 {
            p += 1;
            matched |= pattern[p] == c;
        } else if b == b']' && rest >= 1 {
            break;
        } else if rest == 0 {
            p -= 1;
            break;
        } else if rest >= 3 && pattern[p + 1] == b'-' {
            let (mut start, mut end) = (signed(pattern[p]), signed(pattern[p + 2]));
            if start > end {
                std::mem::swap(&mut start, &mut end);
            }
            matched |= (start..=end).contains(&signed(c));
            p += 2;
        } else {
            matched |= b == c;
        }
        p += 1;
    }
    Ok((matched != not, p))
}

/// Whether `string` matches the glob `pattern`, as Redis's
/// `stringmatchlen` decides, charging each step to `budget`.
///
/// # Errors
/// [`TooComplex`] when the budget runs out.
pub fn matches(pattern: &[u8], string: &[u8], budget: &mut Budget) -> Result<bool, TooComplex> {
    let (plen, slen) = (pattern.len(), string.len());
    let (mut p, mut s) = (0usize, 0usize);
    // The innermost `*`: the pattern index after it, and the string index
    // the rest of the pattern was last tried at.
    let mut star: Option<(usize, usize)> = None;
    loop {
        let ok = if p < plen && s < slen {
            budget.spend()?;
            let c = string[s];
            let ok = match pattern[p] {
                b'*' => {
                    while p + 1 < plen && pattern[p + 1] == b'*' {
                        p += 1;
                    }
                    if p + 1 == plen {
                        return Ok(true);
                    }
                    star = Some((p + 1, s));
                    p += 1;
                    continue;
                }
                b'?' => true,
                b'[' => {
                    let (m, end) = class(pattern, p, c, budget)?;
                    p = end;
                    m
                }
                b'\\' => {
                    if plen - p >= 2 {
                        p += 1;
                    }
                    pattern[p] == c
                }
                b => b == c,
            };
            if ok {
                s += 1;
                p += 1;
                if s == slen {
                    while at(pattern, p) == b'*' && p < plen {
                        p += 1;
                    }
                    p == plen
                } else {
                    continue;
                }
            } else {
                false
            }
        } else {
            p == plen && s == slen
        };
        if ok {
            return Ok(true);
        }
        // Retry the rest after the innermost `*` one byte later; once it
        // has tried every position, no earlier `*` can help (a longer match
        // for it would only start the rest later).
        match star {
            Some((sp, ss)) if ss + 1 < slen => {
                star = Some((sp, ss + 1));
                p = sp;
                s = ss + 1;
            }
            _ => return Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &[u8], string: &[u8]) -> bool {
        matches(pattern, string, &mut Budget::default()).expect("within budget")
    }

    /// Each case was checked against redis-server 7.0.15 (`SET` the string,
    /// then `KEYS` the pattern).
    #[test]
    fn matches_like_redis() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (br"a*", br"abc", true),
            (br"a*", br"a", true),
            (br"*a", br"a", true),
            (br"*", br"x", true),
            (br"**", br"x", true),
            (br"?", br"x", true),
            (br"?", br"xy", false),
            (br"??", br"xy", true),
            (br"a?c", br"abc", true),
            (br"a?c", br"ac", false),
            (br"[abc]", br"b", true),
            (br"[abc]", br"d", false),
            (br"[^abc]", br"d", true),
            (br"[^abc]", br"a", false),
            (br"[a-c]", br"b", true),
            (br"[a-c]", br"d", false),
            (br"[c-a]", br"b", true),
            (br"[a-]", br"-", false),
            (br"[a-]", br"b", false),
            (br"[a-]]", br"b]", false),
            (br"[a-]]", br"b", false),
            (br"[]", br"x", false),
            (br"[]]", br"]", false),
            (br"[\]]", br"]", true),
            (br"[\\]", br"\", true),
            (br"[a", br"a", true),
            (br"[a", br"b", false),
            (br"[^", br"z", true),
            (br"[", br"x", false),
            (br"ab[", br"ab", false),
            (br"a\*", br"a*", true),
            (br"a\*", br"ab", false),
            (br"a\", br"a\", true),
            (br"\?", br"?", true),
            (br"\?", br"x", false),
            (br"*b", br"ab", true),
            (br"*b", br"abb", true),
            (br"*b", br"aba", false),
            (br"a*b*c", br"axxbyyc", true),
            (br"a*b*c", br"axxbyy", false),
            (br"a*?", br"a", false),
            (br"a*?", br"ab", true),
            (br"?*", br"x", true),
            (br"*?", br"x", true),
            (br"*a*a*b", br"aaaaaaaab", true),
            (br"*a*a*b", br"aaaaaaaa", false),
            (br"h[ae]llo", br"hallo", true),
            (br"h[^e]llo", br"hallo", true),
            (br"h[^e]llo", br"hello", false),
            (br"h[a-b]llo", br"hbllo", true),
            (br"[[]", br"[", true),
            (br"[-a]", br"-", true),
            (br"[a-b-c]", br"-", true),
            (br"[a-b-c]", br"c", true),
            (br"[ab-]", br"-", false),
            (br"*[b]", br"ab", true),
            (br"foo*bar", br"foobar", true),
            (br"foo*bar", br"foobazbar", true),
            (br"foo*bar", br"foobarbaz", false),
            (br"key:1??", br"key:123", true),
            (br"key:1??", br"key:12", false),
            (br"{a}*", br"{a}x", true),
            (br"*{b}*", br"{b}a", true),
        ];
        for (pattern, string, want) in cases {
            assert_eq!(
                m(pattern, string),
                *want,
                "{:?} against {:?}",
                String::from_utf8_lossy(pattern),
                String::from_utf8_lossy(string)
            );
        }
    }

    #[test]
    fn empty_strings_and_patterns() {
        assert!(m(b"", b""));
        assert!(!m(b"", b"a"));
        // Redis's matcher never matches the empty string against `*`;
        // KEYS and SCAN special-case the pattern `*`.
        assert!(!m(b"*", b""));
        assert!(!m(b"?", b""));
    }

    #[test]
    fn ranges_compare_as_signed_chars() {
        // 0xff is -1 as a C char: [a-\xff] is the range -1..='a'.
        assert!(m(b"[a-\xff]", b"0"));
        assert!(m(b"[a-\xff]", b"\xff"));
        assert!(!m(b"[a-\xff]", b"b"));
        assert!(!m(b"[a-\xff]", b"\x80"));
        assert!(m(b"[\x80-\xff]", b"\x90"));
    }

    #[test]
    fn binary_bytes_and_nul() {
        assert!(m(b"a\0*", b"a\0bc"));
        assert!(!m(b"a\0*", b"abc"));
        assert!(m(b"[\0]", b"\0"));
    }

    #[test]
    fn nested_stars_stay_fast() {
        // Redis's regression test for exponential matching.
        let key = [b'a'; 40];
        let pattern = b"a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b";
        let mut budget = Budget::new(1_000_000);
        assert_eq!(matches(pattern, &key, &mut budget), Ok(false));
        // A long one: quadratic at worst, well within a small budget.
        let key = vec![b'a'; 2000];
        let pattern: Vec<u8> = b"*a".repeat(500).into_iter().chain(*b"b").collect();
        let mut budget = Budget::new(10_000_000);
        assert_eq!(matches(&pattern, &key, &mut budget), Ok(false));
    }

    #[test]
    fn a_hostile_pattern_runs_out_of_budget() {
        let key = vec![b'a'; 100_000];
        let mut pattern = b"*".to_vec();
        pattern.extend(std::iter::repeat_n(b'a', 50_000));
        pattern.push(b'b');
        let mut budget = Budget::new(1_000_000);
        assert_eq!(matches(&pattern, &key, &mut budget), Err(TooComplex));
    }

    #[test]
    fn the_grant_is_linear_in_the_key() {
        let mut budget = Budget::new(0);
        budget.grant(b"k*", 10);
        assert_eq!(budget.left, 11 * STEPS_PER_KEY_BYTE + 2);
        let long = vec![b'x'; 100_000];
        let mut budget = Budget::new(0);
        budget.grant(&long, 0);
        assert_eq!(budget.left, STEPS_PER_KEY_BYTE + PATTERN_STEPS_CAP);
    }
}
