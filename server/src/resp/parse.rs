//! The request parser: multibulk (`*2\r\n$3\r\nGET\r\n$1\r\nk\r\n`) and
//! inline (`GET k\r\n`) commands, with Redis's limits and error texts.

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

/// Parses one command from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold a whole command yet, and
/// `Ok(Some((args, consumed)))` when it does: `consumed` bytes make up the
/// command. `args` is empty for an empty inline line or `*0`/`*-1`, which
/// the caller skips. `authenticated` is false for a connection that still
/// has to send AUTH, which Redis holds to tighter bounds.
///
/// # Errors
/// A [`ProtocolError`] with Redis's text for malformed input.
pub fn parse_command(
    buf: &[u8],
    limits: &Limits,
    authenticated: bool,
) -> Result<Option<(Vec<Vec<u8>>, usize)>, ProtocolError> {
    // A minimal multibulk-only parser until the full one lands.
    let _ = (limits, authenticated);
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if buf[0] != b'*' {
        let line = std::str::from_utf8(&buf[..nl])
            .unwrap_or("")
            .trim_end_matches('\r');
        let args = line
            .split_ascii_whitespace()
            .map(|a| a.as_bytes().to_vec())
            .collect();
        return Ok(Some((args, nl + 1)));
    }
    let n: usize = std::str::from_utf8(&buf[1..nl])
        .ok()
        .and_then(|t| t.trim_end_matches('\r').parse().ok())
        .ok_or_else(|| ProtocolError("invalid multibulk length".into()))?;
    let mut pos = nl + 1;
    let mut args = Vec::new();
    for _ in 0..n {
        let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let len: usize = std::str::from_utf8(&buf[pos + 1..pos + nl])
            .ok()
            .and_then(|t| t.trim_end_matches('\r').parse().ok())
            .ok_or_else(|| ProtocolError("invalid bulk length".into()))?;
        pos += nl + 1;
        if buf.len() < pos + len + 2 {
            return Ok(None);
        }
        args.push(buf[pos..pos + len].to_vec());
        pos += len + 2;
    }
    Ok(Some((args, pos)))
}
