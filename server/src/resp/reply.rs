//! Replies, and their encoding in RESP2 and RESP3.

use std::borrow::Cow;

/// One reply to a command, encoded for the connection's protocol version
/// by [`Reply::encode`]. RESP3-only types fall back as Redis 7 does for a
/// RESP2 connection: a map becomes a flat array, a double a bulk string, a
/// boolean an integer, a set an array, a verbatim string a bulk string.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `+text`: a status such as `OK`.
    Status(Cow<'static, str>),
    /// `-text`: an error; the text starts with its code (`ERR`, `WRONGTYPE`,
    /// `NOAUTH`…).
    Error(Cow<'static, str>),
    /// `:n`.
    Int(i64),
    /// `$len` and the bytes.
    Bulk(Vec<u8>),
    /// A missing value: `$-1` in RESP2, `_` in RESP3.
    Nil,
    /// A missing array (an aborted EXEC): `*-1` in RESP2, `_` in RESP3.
    NilArray,
    /// `*n` and the elements.
    Array(Vec<Reply>),
    /// `%n` and the pairs in RESP3; a flat array of 2n in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `~n` in RESP3; an array in RESP2.
    Set(Vec<Reply>),
    /// `,x` in RESP3; a bulk string in RESP2.
    Double(f64),
    /// `#t`/`#f` in RESP3; `:1`/`:0` in RESP2.
    Bool(bool),
    /// `=len\r\ntxt:…` in RESP3; a bulk string in RESP2 (INFO, CLIENT LIST).
    Verbatim(String),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Status(Cow::Borrowed("OK"));

    /// An error reply from a static text.
    pub fn err(text: &'static str) -> Reply {
        Reply::Error(Cow::Borrowed(text))
    }

    /// An error reply from a formatted text.
    pub fn error(text: String) -> Reply {
        Reply::Error(Cow::Owned(text))
    }

    /// A bulk string reply from anything byte-like.
    pub fn bulk(b: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(b.into())
    }

    /// A simple status reply.
    pub fn status(text: &'static str) -> Reply {
        Reply::Status(Cow::Borrowed(text))
    }

    /// Whether this is an error reply.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply for protocol `proto` (2 or 3).
    pub fn encode(&self, proto: u8, out: &mut Vec<u8>) {
        let resp3 = proto >= 3;
        match self {
            Reply::Status(s) => line(out, b'+', sanitize(s).as_bytes()),
            Reply::Error(s) => line(out, b'-', sanitize(s).as_bytes()),
            Reply::Int(n) => int_line(out, b':', *n),
            Reply::Bulk(b) => bulk(out, b),
            Reply::Nil if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::Nil => out.extend_from_slice(b"$-1\r\n"),
            Reply::NilArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Reply::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                int_line(out, b'*', items.len() as i64);
                for r in items {
                    r.encode(proto, out);
                }
            }
            Reply::Set(items) => {
                int_line(out, if resp3 { b'~' } else { b'*' }, items.len() as i64);
                for r in items {
                    r.encode(proto, out);
                }
            }
            Reply::Map(pairs) => {
                if resp3 {
                    int_line(out, b'%', pairs.len() as i64);
                } else {
                    int_line(out, b'*', 2 * pairs.len() as i64);
                }
                for (k, v) in pairs {
                    k.encode(proto, out);
                    v.encode(proto, out);
                }
            }
            Reply::Double(x) => {
                let text = format_double(*x);
                if resp3 {
                    line(out, b',', text.as_bytes());
                } else {
                    bulk(out, text.as_bytes());
                }
            }
            Reply::Bool(b) if resp3 => {
                out.extend_from_slice(if *b { b"#t\r\n" } else { b"#f\r\n" })
            }
            Reply::Bool(b) => int_line(out, b':', i64::from(*b)),
            Reply::Verbatim(s) if resp3 => {
                int_line(out, b'=', s.len() as i64 + 4);
                out.extend_from_slice(b"txt:");
                out.extend_from_slice(s.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Reply::Verbatim(s) => bulk(out, s.as_bytes()),
        }
    }
}

/// A status or error text with its newlines replaced by spaces, as Redis
/// does, so that it stays one protocol line.
fn sanitize(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n') {
        Cow::Owned(s.replace(['\r', '\n'], " "))
    } else {
        Cow::Borrowed(s)
    }
}

fn line(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

fn int_line(out: &mut Vec<u8>, tag: u8, n: i64) {
    out.push(tag);
    let mut buf = itoa_buf(n);
    out.append(&mut buf);
    out.extend_from_slice(b"\r\n");
}

fn itoa_buf(n: i64) -> Vec<u8> {
    n.to_string().into_bytes()
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    int_line(out, b'$', b.len() as i64);
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// A double as Redis 7 prints one in RESP3: `inf`, `-inf`, `nan`, or the
/// shortest text that reads back as the same number.
pub fn format_double(x: f64) -> String {
    if x.is_nan() {
        "nan".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "inf" } else { "-inf" }.to_string()
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, proto: u8) -> String {
        let mut out = Vec::new();
        r.encode(proto, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn resp2_and_resp3_encodings() {
        assert_eq!(enc(&Reply::OK, 2), "+OK\r\n");
        assert_eq!(enc(&Reply::err("ERR x"), 2), "-ERR x\r\n");
        assert_eq!(enc(&Reply::Int(-3), 2), ":-3\r\n");
        assert_eq!(enc(&Reply::bulk("hi"), 2), "$2\r\nhi\r\n");
        assert_eq!(enc(&Reply::bulk(""), 2), "$0\r\n\r\n");
        assert_eq!(enc(&Reply::Nil, 2), "$-1\r\n");
        assert_eq!(enc(&Reply::Nil, 3), "_\r\n");
        assert_eq!(enc(&Reply::NilArray, 2), "*-1\r\n");
        let map = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        assert_eq!(enc(&map, 2), "*2\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&map, 3), "%1\r\n$1\r\na\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 3), ",1.5\r\n");
        assert_eq!(enc(&Reply::Double(1.5), 2), "$3\r\n1.5\r\n");
        assert_eq!(enc(&Reply::Bool(true), 3), "#t\r\n");
        assert_eq!(enc(&Reply::Bool(true), 2), ":1\r\n");
        assert_eq!(enc(&Reply::Verbatim("x".into()), 3), "=5\r\ntxt:x\r\n");
        assert_eq!(enc(&Reply::error("ERR a\r\nb".into()), 2), "-ERR a  b\r\n");
    }
}
