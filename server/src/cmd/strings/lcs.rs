//! LCS: the longest common subsequence of two strings, with Redis 7.0's
//! options (LEN, IDX, MINMATCHLEN, WITHMATCHLEN) and reply shapes.

use super::{lookup_read, Res};
use crate::cmd::{is, parse_int, Ctx};
use crate::resp::reply::Reply;

/// What LCS was asked for.
#[derive(Default)]
struct LcsArgs {
    len: bool,
    idx: bool,
    with_match_len: bool,
    min_match_len: u64,
}

fn parse_args(opts: &[Vec<u8>]) -> Result<LcsArgs, Reply> {
    let mut a = LcsArgs::default();
    let mut i = 0;
    while i < opts.len() {
        let opt = &opts[i];
        if is(opt, "idx") {
            a.idx = true;
        } else if is(opt, "len") {
            a.len = true;
        } else if is(opt, "withmatchlen") {
            a.with_match_len = true;
        } else if is(opt, "minmatchlen") && i + 1 < opts.len() {
            let n = parse_int(&opts[i + 1])?;
            a.min_match_len = u64::try_from(n).unwrap_or(0);
            i += 1;
        } else {
            return Err(Reply::err("ERR syntax error"));
        }
        i += 1;
    }
    if a.idx && a.len {
        return Err(Reply::err(
            "ERR If you want both the length and indexes, please just use IDX.",
        ));
    }
    Ok(a)
}

/// The table of LCS lengths: `t[i * (b.len() + 1) + j]` is the length of
/// the LCS of `a[..i]` and `b[..j]`.
fn table(a: &[u8], b: &[u8]) -> Vec<u32> {
    let w = b.len() + 1;
    let mut t = vec![0u32; (a.len() + 1) * w];
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            t[i * w + j] = if a[i - 1] == b[j - 1] {
                t[(i - 1) * w + j - 1] + 1
            } else {
                t[(i - 1) * w + j].max(t[i * w + j - 1])
            };
        }
    }
    t
}

/// One matching range: `(a_start, a_end, b_start, b_end)`, inclusive.
type Range = (usize, usize, usize, usize);

/// Walks the table back from the end, as Redis does: the LCS text and the
/// matching ranges, last one first.
fn walk(a: &[u8], b: &[u8], t: &[u32]) -> (Vec<u8>, Vec<Range>) {
    let w = b.len() + 1;
    let total = t[a.len() * w + b.len()] as usize;
    let mut text = vec![0u8; total];
    let mut ranges = Vec::new();
    let mut current: Option<Range> = None;
    let (mut i, mut j, mut k) = (a.len(), b.len(), total);
    while i > 0 && j > 0 {
        let mut emit = false;
        if a[i - 1] == b[j - 1] {
            text[k - 1] = a[i - 1];
            current = match current {
                None => Some((i - 1, i - 1, j - 1, j - 1)),
                Some((s, e, bs, be)) if s == i && bs == j => Some((s - 1, e, bs - 1, be)),
                Some(r) => {
                    emit = true;
                    Some(r)
                }
            };
            if current.is_some_and(|(s, _, bs, _)| s == 0 || bs == 0) {
                emit = true;
            }
            k -= 1;
            i -= 1;
            j -= 1;
        } else {
            if t[(i - 1) * w + j] > t[i * w + j - 1] {
                i -= 1;
            } else {
                j -= 1;
            }
            emit = current.is_some();
        }
        if emit {
            if let Some(r) = current.take() {
                ranges.push(r);
            }
        }
    }
    (text, ranges)
}

fn int(n: usize) -> Reply {
    Reply::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// LCS key1 key2 [LEN] [IDX] [MINMATCHLEN n] [WITHMATCHLEN]; a missing key
/// is an empty string.
pub(super) fn lcs_cmd(ctx: &mut Ctx<'_>, args: &[Vec<u8>]) -> Res {
    let a = lookup_read(ctx, &args[1])?.unwrap_or_default().0;
    let b = lookup_read(ctx, &args[2])?.unwrap_or_default().0;
    let opts = parse_args(&args[3..])?;
    let limit = ctx.shared.proto_max_bulk_len();
    let cells = (a.len() as u128 + 1) * (b.len() as u128 + 1);
    // Values are at most cairn's 256 MiB, so every length fits in a u32.
    if cells * 4 > u128::from(limit) {
        return Err(Reply::err(
            "ERR Insufficient memory, transient memory for LCS exceeds proto-max-bulk-len",
        ));
    }
    let t = table(&a, &b);
    let total = t[a.len() * (b.len() + 1) + b.len()] as usize;
    if opts.len {
        return Ok(int(total));
    }
    let (text, ranges) = walk(&a, &b, &t);
    if !opts.idx {
        return Ok(Reply::Bulk(text));
    }
    let matches = ranges
        .into_iter()
        .filter(|&(s, e, _, _)| (e - s + 1) as u64 >= opts.min_match_len)
        .map(|(s, e, bs, be)| {
            let mut item = vec![
                Reply::Array(vec![int(s), int(e)]),
                Reply::Array(vec![int(bs), int(be)]),
            ];
            if opts.with_match_len {
                item.push(int(e - s + 1));
            }
            Reply::Array(item)
        })
        .collect();
    Ok(Reply::Map(vec![
        (Reply::bulk("matches"), Reply::Array(matches)),
        (Reply::bulk("len"), int(total)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::{table, walk};

    #[test]
    fn redis_documented_example() {
        let (a, b) = (&b"ohmytext"[..], &b"mynewtext"[..]);
        let t = table(a, b);
        let (text, ranges) = walk(a, b, &t);
        assert_eq!(text, b"mytext");
        assert_eq!(ranges, vec![(4, 7, 5, 8), (2, 3, 0, 1)]);
    }

    #[test]
    fn empty_and_disjoint_strings() {
        for (a, b) in [(&b""[..], &b"abc"[..]), (b"abc", b""), (b"abc", b"xyz")] {
            let t = table(a, b);
            let (text, ranges) = walk(a, b, &t);
            assert!(text.is_empty() && ranges.is_empty());
        }
    }
}
