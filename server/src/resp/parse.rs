//! The request parser: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and
//! inline (`GET k\r\n`) commands, with Redis's limits and error texts.
//!
//! It follows Redis 7.0's `processMultibulkBuffer` and `processInlineBuffer`
//! byte for byte, including their leniencies, so that a client sees the
//! same replies from `cairn serve` as from Redis:
//! * the first byte decides: `*` starts a multibulk command, anything else
//!   an inline one;
//! * a `*`/`$` line ends at the first `\r`; the byte after it is skipped
//!   unchecked, and so are the two bytes after a bulk's data;
//! * counts are parsed like Redis's `string2ll` (no sign but `-`, no leading
//!   zeros, no spaces, at most 20 characters);
//! * a `*` count of 0 or less is an empty command, which the caller skips;
//! * a NUL byte ends the search for the end of a line, as `strchr` does in
//!   Redis: a line with a NUL before its terminator waits for more input
//!   until it is too big;
//! * an inline line ends at `\n` (an `\r` before it is dropped) and is split
//!   like `sdssplitargs`.
//!
//! The parser never allocates more than the input holds: argument vectors
//! are sized by arguments already found in the buffer, and no argument is
//! copied before the whole command is there.

/// Bounds on what a client may send, as Redis's settings of the same names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest bulk argument (`proto-max-bulk-len`, 512 MiB by default).
    pub max_bulk_len: usize,
    /// The longest inline request, and the longest `*`/`$` count line, still
    /// without its newline (64 KiB, as in Redis).
    pub max_inline_len: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_bulk_len: 512 << 20,
            max_inline_len: 64 << 10,
        }
    }
}

/// A protocol error: the text after `-ERR Protocol error: `. The server
/// replies with it and closes the connection, as Redis does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolError(pub String);

impl ProtocolError {
    fn new(text: &str) -> ProtocolError {
        ProtocolError(text.to_owned())
    }
}

/// The most arguments a client that has not authenticated may send in one
/// multibulk command (hard-coded in Redis 7.0).
pub const UNAUTHENTICATED_MAX_ARGS: i64 = 10;

/// The longest bulk argument a client that has not authenticated may send
/// (hard-coded in Redis 7.0).
pub const UNAUTHENTICATED_MAX_BULK_LEN: i64 = 16384;

/// The largest `*` count Redis accepts (`INT_MAX`).
const MAX_MULTIBULK_LEN: i64 = i32::MAX as i64;

/// Redis's `LONG_STR_SIZE`: a count of this many characters or more is
/// invalid.
const LONG_STR_SIZE: usize = 21;

/// The result of parsing one command.
type Parsed = Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError>;

/// Parses one command from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold a whole command yet, and
/// `Ok(Some((args, consumed)))` when it does: `consumed` bytes make up the
/// command. `args` is empty for an empty inline line or `*0`/`*-1`, which
/// the caller skips. `authenticated` is false for a connection that still
/// has to send AUTH, which Redis holds to tighter bounds.
///
/// Each call parses `buf` from its start. A caller that calls it again and
/// again while a long command with many arguments arrives should use
/// [`parse_command_resume`], which does not look at the same bytes twice.
///
/// # Errors
/// A [`ProtocolError`] with Redis's text for malformed input.
///
/// # Examples
/// ```
/// use cairn_server::resp::parse::{parse_command, Limits};
///
/// let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
/// let (args, used) = parse_command(buf, &Limits::default(), true)?.expect("whole");
/// assert_eq!(args, [b"GET".to_vec(), b"k".to_vec()]);
/// let (args, _) = parse_command(&buf[used..], &Limits::default(), true)?.expect("whole");
/// assert_eq!(args, [b"PING".to_vec()]);
/// assert_eq!(parse_command(b"*1\r\n$4\r\nPI", &Limits::default(), true)?, None);
/// # Ok::<(), cairn_server::resp::parse::ProtocolError>(())
/// ```
pub fn parse_command(buf: &[u8], limits: &Limits, authenticated: bool) -> Parsed {
    parse_command_resume(buf, limits, authenticated, &mut Progress::default())
}

/// How far [`parse_command_resume`] got into a multibulk command that is not
/// whole yet, so that the next call starts there.
///
/// It describes the bytes at the start of the buffer it was used with: start
/// each command with `Progress::default()`. `parse_command_resume` resets it
/// itself when it returns a command or an error, and starts over when the
/// buffer it is given is shorter than the last one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// The declared argument count, 0 while the `*` line is not parsed.
    count: usize,
    /// How many arguments lie whole in the buffer.
    done: usize,
    /// Where the first argument not yet whole starts.
    pos: usize,
    /// The buffer's length at the last call.
    seen_len: usize,
}

/// [`parse_command`] for a buffer that grows between calls: it goes on from
/// where the last call on the same command stopped (`progress`), so a
/// command that arrives in many reads costs time in proportion to its
/// length, not to its length times the number of reads.
///
/// `buf` must start with the same bytes as at the last call with this
/// `progress`, and may have grown at its end; see [`Progress`].
///
/// # Errors
/// A [`ProtocolError`] with Redis's text for malformed input.
///
/// # Examples
/// ```
/// use cairn_server::resp::parse::{parse_command_resume, Limits, Progress};
///
/// let limits = Limits::default();
/// let mut progress = Progress::default();
/// let whole = b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n";
/// assert_eq!(parse_command_resume(&whole[..15], &limits, true, &mut progress)?, None);
/// let (args, used) =
///     parse_command_resume(whole, &limits, true, &mut progress)?.expect("whole");
/// assert_eq!((args, used), (vec![b"ECHO".to_vec(), b"hi".to_vec()], whole.len()));
/// # Ok::<(), cairn_server::resp::parse::ProtocolError>(())
/// ```
pub fn parse_command_resume(
    buf: &[u8],
    limits: &Limits,
    authenticated: bool,
    progress: &mut Progress,
) -> Parsed {
    if buf.len() < progress.seen_len || progress.pos > buf.len() {
        *progress = Progress::default();
    }
    let parsed = match buf.first() {
        None => Ok(None),
        Some(b'*') => multibulk(buf, limits, authenticated, progress),
        Some(_) => inline(buf, limits),
    };
    if matches!(parsed, Ok(None)) {
        progress.seen_len = buf.len();
    } else {
        *progress = Progress::default();
    }
    parsed
}

/// Where a `*`/`$` line ends.
enum Line {
    /// Its `\r` is at this index, and the byte after it is in the buffer.
    End(usize),
    /// Its `\r` is the last byte of the buffer.
    Partial,
    /// No `\r` before the end of the buffer or a NUL byte.
    Unterminated,
}

/// Finds the end of the line that starts at `start`, as Redis's
/// `strchr(p, '\r')` and its check that the buffer holds one more byte.
fn line_end(buf: &[u8], start: usize) -> Line {
    let rest = buf.get(start..).unwrap_or_default();
    match memchr::memchr2(b'\r', 0, rest) {
        Some(i) if rest[i] == b'\r' => {
            if i + 2 <= rest.len() {
                Line::End(start + i)
            } else {
                Line::Partial
            }
        }
        _ => Line::Unterminated,
    }
}

/// One argument of a multibulk command.
enum Bulk {
    /// Its data is `buf[start..start + len]`; the next one starts at `next`.
    Whole {
        start: usize,
        len: usize,
        next: usize,
    },
    /// The buffer ends before its data does.
    Incomplete,
}

/// Parses the `$` line at `pos` and finds its data.
fn bulk_at(
    buf: &[u8],
    pos: usize,
    limits: &Limits,
    authenticated: bool,
) -> Result<Bulk, ProtocolError> {
    let cr = match line_end(buf, pos) {
        Line::End(cr) => cr,
        Line::Partial => return Ok(Bulk::Incomplete),
        Line::Unterminated => {
            if buf.len().saturating_sub(pos) > limits.max_inline_len {
                return Err(ProtocolError::new("too big bulk count string"));
            }
            return Ok(Bulk::Incomplete);
        }
    };
    // The line is whole, so `pos < cr < buf.len()`.
    let first = buf.get(pos).copied().unwrap_or(b'\r');
    if first != b'$' {
        return Err(ProtocolError(format!(
            "expected '$', got '{}'",
            printable(first)
        )));
    }
    let len = match string2ll(buf.get(pos + 1..cr).unwrap_or_default()) {
        Some(n) if n >= 0 && u64::try_from(n).ok() <= u64::try_from(limits.max_bulk_len).ok() => n,
        _ => return Err(ProtocolError::new("invalid bulk length")),
    };
    if len > UNAUTHENTICATED_MAX_BULK_LEN && !authenticated {
        return Err(ProtocolError::new("unauthenticated bulk length"));
    }
    let Ok(len) = usize::try_from(len) else {
        return Err(ProtocolError::new("invalid bulk length"));
    };
    let start = cr + 2;
    // The data and the two bytes after it (which Redis skips unchecked).
    match start.checked_add(len).and_then(|end| end.checked_add(2)) {
        Some(next) if next <= buf.len() => Ok(Bulk::Whole { start, len, next }),
        _ => Ok(Bulk::Incomplete),
    }
}

/// A byte as Redis's `%c` shows it in an error reply: `\r` and `\n` become
/// spaces (so the reply stays one line), and a byte above 0x7f, which Redis
/// sends raw, becomes the character of the same number (Latin-1).
fn printable(byte: u8) -> char {
    match byte {
        b'\r' | b'\n' => ' ',
        _ => char::from(byte),
    }
}

/// Parses a multibulk command; `buf` starts with `*`.
fn multibulk(buf: &[u8], limits: &Limits, authenticated: bool, progress: &mut Progress) -> Parsed {
    if progress.count == 0 {
        let cr = match line_end(buf, 0) {
            Line::End(cr) => cr,
            Line::Partial => return Ok(None),
            Line::Unterminated => {
                if buf.len() > limits.max_inline_len {
                    return Err(ProtocolError::new("too big mbulk count string"));
                }
                return Ok(None);
            }
        };
        let count = match string2ll(buf.get(1..cr).unwrap_or_default()) {
            Some(n) if n <= MAX_MULTIBULK_LEN => n,
            _ => return Err(ProtocolError::new("invalid multibulk length")),
        };
        if count > UNAUTHENTICATED_MAX_ARGS && !authenticated {
            return Err(ProtocolError::new("unauthenticated multibulk length"));
        }
        let Ok(count @ 1..) = usize::try_from(count) else {
            // `*0` and any negative count: an empty command.
            return Ok(Some((Vec::new(), cr + 2)));
        };
        *progress = Progress {
            count,
            done: 0,
            pos: cr + 2,
            seen_len: 0,
        };
    }
    while progress.done < progress.count {
        match bulk_at(buf, progress.pos, limits, authenticated)? {
            Bulk::Whole { next, .. } => {
                progress.pos = next;
                progress.done += 1;
            }
            Bulk::Incomplete => return Ok(None),
        }
    }
    collect(buf, limits, authenticated, progress.count)
}

/// Copies out the `count` arguments of a multibulk command that lies whole
/// in `buf`.
fn collect(buf: &[u8], limits: &Limits, authenticated: bool, count: usize) -> Parsed {
    // Every argument takes at least 6 bytes (`$0\r\n\r\n`), and all of them
    // were found in the buffer: the count is bounded by the input.
    let mut args = Vec::with_capacity(count);
    let mut pos = match line_end(buf, 0) {
        Line::End(cr) => cr + 2,
        _ => return Ok(None),
    };
    for _ in 0..count {
        match bulk_at(buf, pos, limits, authenticated)? {
            Bulk::Whole { start, len, next } => {
                args.push(buf.get(start..start + len).unwrap_or_default().to_vec());
                pos = next;
            }
            // Cannot happen: the same bytes were found whole before.
            Bulk::Incomplete => return Ok(None),
        }
    }
    Ok(Some((args, pos)))
}

/// Redis's `string2ll`: a decimal `i64` with an optional `-`, no leading
/// zeros (but `0` itself), no `+`, no spaces, fewer than 21 characters.
fn string2ll(text: &[u8]) -> Option<i64> {
    if text.is_empty() || text.len() >= LONG_STR_SIZE {
        return None;
    }
    if text == b"0" {
        return Some(0);
    }
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    match digits.first() {
        Some(b'1'..=b'9') => {}
        _ => return None,
    }
    let mut value: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(value)
    } else {
        i64::try_from(value).ok()
    }
}

/// Parses an inline command; `buf` does not start with `*`.
fn inline(buf: &[u8], limits: &Limits) -> Parsed {
    match memchr::memchr2(b'\n', 0, buf) {
        Some(newline) if buf[newline] == b'\n' => {
            let mut end = newline;
            if end > 0 && buf[end - 1] == b'\r' {
                end -= 1;
            }
            let line = buf.get(..end).unwrap_or_default();
            match split_args(line) {
                Some(args) => Ok(Some((args, newline + 1))),
                None => Err(ProtocolError::new("unbalanced quotes in request")),
            }
        }
        _ => {
            if buf.len() > limits.max_inline_len {
                Err(ProtocolError::new("too big inline request"))
            } else {
                Ok(None)
            }
        }
    }
}

/// C's `isspace` in the C locale.
fn is_space(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The value of a hexadecimal digit.
fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Splits an inline line into arguments as Redis's `sdssplitargs`: blanks
/// separate arguments; `"…"` takes `\n \r \t \b \a`, `\xHH` and `\<any>`
/// escapes; `'…'` takes `\'`; a closing quote must be followed by a blank
/// or the end. `None` for unbalanced quotes. `line` holds no NUL byte.
fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    // The byte at `i`, 0 past the end (the C string's terminator).
    let at = |i: usize| line.get(i).copied().unwrap_or(0);
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut arg = Vec::new();
        let (mut in_double, mut in_single) = (false, false);
        loop {
            let c = at(i);
            let mut done = false;
            if in_double {
                let hex = (hex_value(at(i + 2)), hex_value(at(i + 3)));
                if let (b'\\', b'x', (Some(high), Some(low))) = (c, at(i + 1), hex) {
                    arg.push(high * 16 + low);
                    i += 3;
                } else if c == b'\\' && at(i + 1) != 0 {
                    i += 1;
                    arg.push(match at(i) {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if at(i + 1) != 0 && !is_space(at(i + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    arg.push(c);
                }
            } else if in_single {
                if c == b'\\' && at(i + 1) == b'\'' {
                    i += 1;
                    arg.push(b'\'');
                } else if c == b'\'' {
                    if at(i + 1) != 0 && !is_space(at(i + 1)) {
                        return None;
                    }
                    done = true;
                } else if c == 0 {
                    return None;
                } else {
                    arg.push(c);
                }
            } else {
                match c {
                    b' ' | b'\n' | b'\r' | b'\t' | 0 => done = true,
                    b'"' => in_double = true,
                    b'\'' => in_single = true,
                    _ => arg.push(c),
                }
            }
            if at(i) != 0 {
                i += 1;
            }
            if done {
                break;
            }
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    type Commands = Vec<Vec<Vec<u8>>>;

    fn args(list: &[&[u8]]) -> Vec<Vec<u8>> {
        list.iter().map(|a| a.to_vec()).collect()
    }

    fn err(text: &str) -> Parsed {
        Err(ProtocolError(text.to_owned()))
    }

    fn auth_parse(buf: &[u8]) -> Parsed {
        parse_command(buf, &Limits::default(), true)
    }

    /// What the connection does: appends each chunk to its buffer, then
    /// parses and consumes commands until it needs more input. Returns the
    /// non-empty commands, the error that ended it if any, and the bytes
    /// left over.
    fn drive(
        input: &[u8],
        chunk: usize,
        limits: &Limits,
        authenticated: bool,
        resume: bool,
    ) -> (Commands, Option<ProtocolError>, Vec<u8>) {
        let mut buf = Vec::new();
        let mut commands = Vec::new();
        let mut progress = Progress::default();
        for piece in input.chunks(chunk.max(1)) {
            buf.extend_from_slice(piece);
            loop {
                let parsed = if resume {
                    parse_command_resume(&buf, limits, authenticated, &mut progress)
                } else {
                    parse_command(&buf, limits, authenticated)
                };
                match parsed {
                    Ok(Some((command, used))) => {
                        assert!(
                            used > 0 && used <= buf.len(),
                            "consumed {used} of {}",
                            buf.len()
                        );
                        buf.drain(..used);
                        if !command.is_empty() {
                            commands.push(command);
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return (commands, Some(e), buf),
                }
            }
        }
        (commands, None, buf)
    }

    fn encode(command: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", command.len()).into_bytes();
        for arg in command {
            out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            out.extend_from_slice(arg);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn the_resp_specs_request_examples() {
        // "Sending commands to a Redis server" in the RESP specification.
        let llen = b"*2\r\n$4\r\nLLEN\r\n$6\r\nmylist\r\n";
        assert_eq!(
            auth_parse(llen),
            Ok(Some((args(&[b"LLEN", b"mylist"]), llen.len())))
        );
        // Its inline commands.
        assert_eq!(auth_parse(b"PING\r\n"), Ok(Some((args(&[b"PING"]), 6))));
        assert_eq!(
            auth_parse(b"EXISTS somekey\r\n"),
            Ok(Some((args(&[b"EXISTS", b"somekey"]), 16)))
        );
        // The empty bulk string, and binary data with CR LF inside.
        let set = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$4\r\na\r\nb\r\n";
        assert_eq!(
            auth_parse(set),
            Ok(Some((args(&[b"SET", b"", b"a\r\nb"]), set.len())))
        );
    }

    #[test]
    fn a_pipeline_parses_command_by_command() {
        let input =
            b"*1\r\n$4\r\nPING\r\nSET k v\r\n*0\r\n\r\n*-1\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        let (commands, error, rest) = drive(input, input.len(), &Limits::default(), true, false);
        assert_eq!(error, None);
        assert!(rest.is_empty());
        assert_eq!(
            commands,
            [
                args(&[b"PING"]),
                args(&[b"SET", b"k", b"v"]),
                args(&[b"GET", b"k"])
            ]
        );
    }

    #[test]
    fn every_split_point_gives_the_same_commands() {
        let mut input = Vec::new();
        input.extend_from_slice(b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$10\r\n0123456789\r\n");
        input.extend_from_slice(b"PING\r\n\r\n*0\r\nECHO \"a b\\x41\" 'c'\n");
        input.extend_from_slice(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nQU");
        let limits = Limits::default();
        let whole = drive(&input, input.len(), &limits, true, false);
        assert_eq!(whole.0.len(), 4);
        assert_eq!(whole.0[2], args(&[b"ECHO", b"a bA", b"c"]));
        assert_eq!(whole.2, b"*1\r\n$4\r\nQU");
        for resume in [false, true] {
            for chunk in 1..=input.len() {
                assert_eq!(
                    drive(&input, chunk, &limits, true, resume),
                    whole,
                    "chunk {chunk}"
                );
            }
            // Split in two at every point.
            for at in 0..=input.len() {
                let (first, second) = input.split_at(at);
                let mut buf = first.to_vec();
                let mut progress = Progress::default();
                let mut commands = Vec::new();
                let mut feed = |buf: &mut Vec<u8>, progress: &mut Progress| loop {
                    let parsed = if resume {
                        parse_command_resume(buf, &limits, true, progress)
                    } else {
                        parse_command(buf, &limits, true)
                    };
                    match parsed.expect("valid input") {
                        Some((command, used)) => {
                            buf.drain(..used);
                            if !command.is_empty() {
                                commands.push(command);
                            }
                        }
                        None => break,
                    }
                };
                feed(&mut buf, &mut progress);
                buf.extend_from_slice(second);
                feed(&mut buf, &mut progress);
                assert_eq!(
                    (commands, buf),
                    (whole.0.clone(), whole.2.clone()),
                    "split at {at}"
                );
            }
        }
    }

    #[test]
    fn an_error_comes_as_soon_as_its_line_is_in_even_mid_command() {
        // Redis reports a bad line before the rest of the command arrives.
        assert_eq!(
            auth_parse(b"*3\r\n$3\r\nSET\r\nxyz\r\n"),
            err("expected '$', got 'x'")
        );
        // ... but waits for the line's end first.
        assert_eq!(auth_parse(b"*3\r\n$3\r\nSET\r\nxyz"), Ok(None));
        assert_eq!(auth_parse(b"*3\r\n$3\r\nSET\r\nxyz\r"), Ok(None));
        let input = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$x\r\n$1\r\nk\r\n";
        for chunk in 1..=input.len() {
            for resume in [false, true] {
                let (commands, error, _) = drive(input, chunk, &Limits::default(), true, resume);
                assert_eq!(commands, [args(&[b"PING"])]);
                assert_eq!(error, Some(ProtocolError("invalid bulk length".into())));
            }
        }
    }

    #[test]
    fn multibulk_error_texts_are_redis_s() {
        // Each reply as redis-server 7.0.15 gave it for the same bytes.
        let cases: &[(&[u8], &str)] = &[
            (b"*1\n$4\r\nPING\r\n", "invalid multibulk length"),
            (b"*\r\n", "invalid multibulk length"),
            (b"*-0\r\n", "invalid multibulk length"),
            (b"*01\r\n", "invalid multibulk length"),
            (b"*+1\r\n", "invalid multibulk length"),
            (b"* 1\r\n", "invalid multibulk length"),
            (b"*1 \r\n", "invalid multibulk length"),
            (b"*x\r\n", "invalid multibulk length"),
            (b"*2147483648\r\n", "invalid multibulk length"),
            (b"*99999999999999999999\r\n", "invalid multibulk length"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$\r\n", "invalid bulk length"),
            (b"*1\r\n$ 3\r\nfoo\r\n", "invalid bulk length"),
            (b"*1\r\n$3 \r\nfoo\r\n", "invalid bulk length"),
            (b"*1\r\n$03\r\nfoo\r\n", "invalid bulk length"),
            (b"*1\r\n$536870913\r\n", "invalid bulk length"),
            (b"*1\r\n$9223372036854775808\r\n", "invalid bulk length"),
            (b"*1\r\nfoo\r\n", "expected '$', got 'f'"),
            (b"*1\r\n\r\n", "expected '$', got ' '"),
            (b"*1\r\n\n\r\n", "expected '$', got ' '"),
            (b"*1\r\n*1\r\n", "expected '$', got '*'"),
            (b"*2\r\n$1\r\na\r\n:1\r\n", "expected '$', got ':'"),
        ];
        for (input, text) in cases {
            assert_eq!(auth_parse(input), err(text), "{}", input.escape_ascii());
        }
        // Redis sends a byte above 0x7f raw; a `String` holds its Latin-1
        // character.
        assert_eq!(
            auth_parse(b"*1\r\n\xff\r\n"),
            err("expected '$', got '\u{ff}'")
        );
    }

    #[test]
    fn counts_at_their_bounds() {
        // INT_MAX arguments and a 512 MiB bulk are accepted: they wait for
        // their data, and allocate nothing for it.
        assert_eq!(auth_parse(b"*2147483647\r\n"), Ok(None));
        assert_eq!(auth_parse(b"*1\r\n$536870912\r\n"), Ok(None));
        assert_eq!(auth_parse(b"*1\r\n$536870912\r\nabc"), Ok(None));
        // Every count of zero or less is an empty command.
        for input in [
            &b"*0\r\n"[..],
            b"*-1\r\n",
            b"*-5\r\n",
            b"*-9223372036854775808\r\n",
        ] {
            assert_eq!(auth_parse(input), Ok(Some((Vec::new(), input.len()))));
        }
        assert_eq!(
            auth_parse(b"*-9223372036854775809\r\n"),
            err("invalid multibulk length")
        );
        let limits = Limits {
            max_bulk_len: 3,
            ..Limits::default()
        };
        assert_eq!(
            parse_command(b"*1\r\n$3\r\nabc\r\n", &limits, true),
            Ok(Some((args(&[b"abc"]), 13)))
        );
        assert_eq!(
            parse_command(b"*1\r\n$4\r\n", &limits, true),
            err("invalid bulk length")
        );
    }

    #[test]
    fn string2ll_is_redis_s() {
        assert_eq!(string2ll(b"0"), Some(0));
        assert_eq!(string2ll(b"-1"), Some(-1));
        assert_eq!(string2ll(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(string2ll(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [
            &b""[..],
            b"-",
            b"-0",
            b"00",
            b"01",
            b"+1",
            b" 1",
            b"1 ",
            b"1a",
            b"9223372036854775808",
            b"-9223372036854775809",
            b"18446744073709551616",
            b"000000000000000000001",
        ] {
            assert_eq!(string2ll(bad), None, "{}", bad.escape_ascii());
        }
    }

    #[test]
    fn redis_s_leniencies_are_kept() {
        // The byte after a line's `\r` and the two after a bulk are skipped
        // unchecked (redis-server 7.0.15 answers PONG to each).
        assert_eq!(
            auth_parse(b"*1\rX$4\r\nPING\r\n"),
            Ok(Some((args(&[b"PING"]), 14)))
        );
        assert_eq!(
            auth_parse(b"*1\r\n$4\r\nPINGXY"),
            Ok(Some((args(&[b"PING"]), 14)))
        );
        assert_eq!(
            auth_parse(b"*1\r\n$4\rY\r\n\r\nZZ"),
            Ok(Some((args(&[b"\r\n\r\n"]), 14)))
        );
        // A NUL byte before a line's end: Redis's `strchr` stops there, so
        // the request waits until it is too big.
        assert_eq!(auth_parse(b"*1\0\r\n"), Ok(None));
        assert_eq!(auth_parse(b"*1\r\n$4\0\r\nPING\r\n"), Ok(None));
        assert_eq!(auth_parse(b"PING\0\r\n"), Ok(None));
        assert_eq!(auth_parse(b"ECHO a\0b\r\n"), Ok(None));
        let mut long = b"PING\0".to_vec();
        long.resize(64 * 1024 + 1, b'\n');
        assert_eq!(auth_parse(&long), err("too big inline request"));
        // NUL inside a bulk is data.
        assert_eq!(
            auth_parse(b"*1\r\n$3\r\na\0b\r\n"),
            Ok(Some((args(&[b"a\0b"]), 13)))
        );
    }

    #[test]
    fn too_big_lines() {
        let limits = Limits::default();
        let max = limits.max_inline_len;
        // Without a newline, up to max bytes wait; one more is an error.
        let mut inline = vec![b'A'; max];
        assert_eq!(auth_parse(&inline), Ok(None));
        inline.push(b'A');
        assert_eq!(auth_parse(&inline), err("too big inline request"));
        // A line longer than that is fine once its newline is there.
        inline.extend_from_slice(b"\r\n");
        let (command, used) = auth_parse(&inline).expect("ok").expect("whole");
        assert_eq!((command[0].len(), used), (max + 1, max + 3));

        let mut count = b"*1".to_vec();
        count.resize(max, b'1');
        assert_eq!(auth_parse(&count), Ok(None));
        count.push(b'1');
        assert_eq!(auth_parse(&count), err("too big mbulk count string"));

        let mut bulk = b"*1\r\n$1".to_vec();
        bulk.resize(max + 4, b'1');
        assert_eq!(auth_parse(&bulk), Ok(None));
        bulk.push(b'1');
        assert_eq!(auth_parse(&bulk), err("too big bulk count string"));

        let small = Limits {
            max_inline_len: 4,
            ..Limits::default()
        };
        assert_eq!(parse_command(b"PING", &small, true), Ok(None));
        assert_eq!(
            parse_command(b"PINGS", &small, true),
            err("too big inline request")
        );
    }

    #[test]
    fn unauthenticated_clients_are_bounded() {
        let limits = Limits::default();
        let ten = encode(&vec![b"x".to_vec(); 10]);
        assert!(matches!(parse_command(&ten, &limits, false), Ok(Some(_))));
        let eleven = encode(&vec![b"x".to_vec(); 11]);
        assert!(matches!(parse_command(&eleven, &limits, true), Ok(Some(_))));
        assert_eq!(
            parse_command(&eleven, &limits, false),
            err("unauthenticated multibulk length")
        );
        // The count alone is enough, as in Redis's own test.
        assert_eq!(
            parse_command(b"*100\r\n", &limits, false),
            err("unauthenticated multibulk length")
        );
        let big = encode(&[vec![b'v'; 16384]]);
        assert!(matches!(parse_command(&big, &limits, false), Ok(Some(_))));
        let bigger = encode(&[vec![b'v'; 16385]]);
        assert!(matches!(parse_command(&bigger, &limits, true), Ok(Some(_))));
        assert_eq!(
            parse_command(&bigger, &limits, false),
            err("unauthenticated bulk length")
        );
        assert_eq!(
            parse_command(b"*1\r\n$100000000\r\n", &limits, false),
            err("unauthenticated bulk length")
        );
        // A length that is invalid anyway says so first.
        assert_eq!(
            parse_command(b"*1\r\n$536870913\r\n", &limits, false),
            err("invalid bulk length")
        );
        assert_eq!(
            parse_command(b"*2147483648\r\n", &limits, false),
            err("invalid multibulk length")
        );
        // Inline requests have no such bound in Redis.
        let inline = [b"x ".repeat(20), b"\r\n".to_vec()].concat();
        assert_eq!(
            parse_command(&inline, &limits, false).map(|p| p.map(|c| c.0.len())),
            Ok(Some(20))
        );
    }

    #[test]
    fn inline_lines() {
        // Each as redis-server 7.0.15 split it (seen through ECHO).
        let cases: &[(&[u8], &[&[u8]])] = &[
            (b"\r\n", &[]),
            (b"\n", &[]),
            (b"   \t \r\n", &[]),
            (b"\x0b\x0cPING\r\n", &[b"PING"]),
            (b"PING\n", &[b"PING"]),
            (b"  SET  k\tv  \r\n", &[b"SET", b"k", b"v"]),
            (b"ECHO a\rb\n", &[b"ECHO", b"a", b"b"]),
            (b"ECHO a\x0bb\r\n", &[b"ECHO", b"a\x0bb"]),
            (b"ECHO \"a\\x41\\n\"\r\n", &[b"ECHO", b"aA\n"]),
            (
                b"ECHO \"\\n\\r\\t\\b\\a\"\r\n",
                &[b"ECHO", b"\n\r\t\x08\x07"],
            ),
            (b"ECHO \"\\xfF\\x4\"\r\n", &[b"ECHO", b"\xffx4"]),
            (b"ECHO \"\\q\\\"\\\\\"\r\n", &[b"ECHO", b"q\"\\"]),
            (b"ECHO \"\"\r\n", &[b"ECHO", b""]),
            (b"ECHO 'a\\'b'\r\n", &[b"ECHO", b"a'b"]),
            (b"ECHO 'a\\nb'\r\n", &[b"ECHO", b"a\\nb"]),
            (b"ECHO 'a\"b' \"c'd\"\r\n", &[b"ECHO", b"a\"b", b"c'd"]),
            (b"ECHO a\"b c\"\r\n", &[b"ECHO", b"ab c"]),
            (b"ECHO ab'c d'\r\n", &[b"ECHO", b"abc d"]),
            (b"ECHO \"a\"\x0bX\r\n", &[b"ECHO", b"a", b"X"]),
            (b"ECHO \"a\"\r\r\n", &[b"ECHO", b"a"]),
            (b"SET k \xc3\xa9\r\n", &[b"SET", b"k", b"\xc3\xa9"]),
        ];
        for (input, expected) in cases {
            let expected = args(expected);
            assert_eq!(
                auth_parse(input),
                Ok(Some((expected, input.len()))),
                "{}",
                input.escape_ascii()
            );
        }
        for bad in [
            &b"ECHO \"abc\r\n"[..],
            b"ECHO \"a\"b\r\n",
            b"ECHO 'a'b\r\n",
            b"ECHO 'abc\n",
            b"ECHO \"abc\\\"\r\n",
            b"\"\n",
        ] {
            assert_eq!(
                auth_parse(bad),
                err("unbalanced quotes in request"),
                "{}",
                bad.escape_ascii()
            );
        }
        // Only the line is consumed.
        assert_eq!(auth_parse(b"PING\r\nPI"), Ok(Some((args(&[b"PING"]), 6))));
        assert_eq!(auth_parse(b"PING\r"), Ok(None));
        assert_eq!(auth_parse(b""), Ok(None));
    }

    #[test]
    fn a_stale_progress_is_dropped() {
        let limits = Limits::default();
        let mut progress = Progress::default();
        let first = b"*2\r\n$3\r\nGET\r\n$1\r\n";
        assert_eq!(
            parse_command_resume(first, &limits, true, &mut progress),
            Ok(None)
        );
        // A shorter buffer cannot be the same one grown: start over.
        let other = b"*1\r\n$1\r\nk\r\n";
        assert_eq!(
            parse_command_resume(other, &limits, true, &mut progress),
            Ok(Some((args(&[b"k"]), other.len())))
        );
        assert_eq!(progress, Progress::default());
    }

    proptest! {
        #[test]
        fn multibulk_round_trips(
            commands in prop::collection::vec(
                prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 0..8),
                1..6,
            ),
            chunk in 1usize..64,
            resume: bool,
        ) {
            let input: Vec<u8> = commands.iter().flat_map(|c| encode(c)).collect();
            let (parsed, error, rest) = drive(&input, chunk, &Limits::default(), true, resume);
            let expected: Commands = commands.into_iter().filter(|c| !c.is_empty()).collect();
            prop_assert_eq!(error, None);
            prop_assert!(rest.is_empty());
            prop_assert_eq!(parsed, expected);
        }

        #[test]
        fn any_bytes_parse_alike_whole_and_split(
            input in prop::collection::vec(
                prop_oneof![
                    Just(b'*'), Just(b'$'), Just(b'\r'), Just(b'\n'), Just(b'1'),
                    Just(b'"'), Just(b'\''), Just(b'\\'), Just(b' '), any::<u8>(),
                ],
                0..200,
            ),
            chunk in 1usize..32,
        ) {
            // No line gets too big: whether one does depends on how much
            // has arrived without its newline, in Redis too.
            let limits = Limits { max_bulk_len: 64, max_inline_len: 1024 };
            // How much is buffered when an error is seen depends on the
            // reads; the commands before it and the error do not.
            let outcome = |(commands, error, rest): (Commands, Option<ProtocolError>, Vec<u8>)| {
                let rest = if error.is_none() { rest } else { Vec::new() };
                (commands, error, rest)
            };
            let whole = outcome(drive(&input, input.len(), &limits, false, false));
            prop_assert_eq!(outcome(drive(&input, chunk, &limits, false, false)), whole.clone());
            prop_assert_eq!(outcome(drive(&input, chunk, &limits, false, true)), whole);
        }
    }
}
