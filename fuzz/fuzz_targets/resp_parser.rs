//! The RESP request parser (`cairn_server::resp::parse`) on arbitrary bytes.
//!
//! Input: byte 0 flags (bit 0: the client is authenticated; bit 1: small
//! limits, so the "too big" and bulk-length bounds are reached), bytes 1..3
//! a split point (LE u16, modulo the stream's length), then the stream the
//! client sends.
//!
//! The stream is fed as the connection feeds it: parse, consume, repeat,
//! until the parser needs more input or reports a protocol error. That is
//! done with the whole stream in the buffer, with it arriving in two
//! pieces, with [`parse_command`] and with [`parse_command_resume`].
//!
//! Checks besides "no panic, abort, OOM or hang": a command consumes at
//! least one byte and no more than the buffer holds, and its arguments fit
//! in what it consumed; both entry points and every way of splitting the
//! stream give the same commands and the same error (while no line can get
//! too big, which in Redis too depends on how much has arrived); the
//! commands, encoded again as multibulk, parse back to themselves.
#![no_main]

use cairn_server::resp::parse::{
    parse_command, parse_command_resume, Limits, Progress, ProtocolError,
};
use libfuzzer_sys::fuzz_target;

type Commands = Vec<Vec<Vec<u8>>>;

/// Parses and consumes commands from `buf` until more input is needed, with
/// [`parse_command_resume`] going on from `progress` if `resume`, else from
/// the start of the buffer. Returns the error that ended the stream, if any.
fn drain(
    buf: &mut Vec<u8>,
    limits: &Limits,
    authenticated: bool,
    resume: bool,
    progress: &mut Progress,
    out: &mut Commands,
) -> Option<ProtocolError> {
    loop {
        if !resume {
            *progress = Progress::default();
        }
        let fresh = *progress == Progress::default();
        let parsed = parse_command_resume(buf, limits, authenticated, progress);
        // From the start of the buffer, the one-shot parser must agree.
        if fresh {
            assert_eq!(parse_command(buf, limits, authenticated), parsed);
        }
        match parsed {
            Ok(Some((args, used))) => {
                assert!(
                    used > 0 && used <= buf.len(),
                    "consumed {used} of {}",
                    buf.len()
                );
                let arg_bytes: usize = args.iter().map(Vec::len).sum();
                assert!(arg_bytes <= used, "{arg_bytes} argument bytes from {used}");
                assert_eq!(*progress, Progress::default());
                buf.drain(..used);
                if !args.is_empty() {
                    out.push(args);
                }
            }
            Ok(None) => return None,
            Err(e) => return Some(e),
        }
    }
}

/// Feeds `stream` in two pieces, split at `split`.
fn run(
    stream: &[u8],
    split: usize,
    limits: &Limits,
    authenticated: bool,
    resume: bool,
) -> (Commands, Option<ProtocolError>) {
    let mut commands = Vec::new();
    let mut progress = Progress::default();
    let (first, second) = stream.split_at(split);
    let mut buf = first.to_vec();
    let mut error = drain(
        &mut buf,
        limits,
        authenticated,
        resume,
        &mut progress,
        &mut commands,
    );
    if error.is_none() {
        buf.extend_from_slice(second);
        error = drain(
            &mut buf,
            limits,
            authenticated,
            resume,
            &mut progress,
            &mut commands,
        );
    }
    (commands, error)
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

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((split, stream)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let authenticated = flags & 1 != 0;
    let limits = if flags & 2 != 0 {
        Limits {
            max_bulk_len: 32,
            max_inline_len: 8,
        }
    } else {
        Limits::default()
    };
    let split = usize::from(u16::from_le_bytes(*split)) % (stream.len() + 1);

    let whole = run(stream, stream.len(), &limits, authenticated, false);
    for resume in [false, true] {
        let parts = run(stream, split, &limits, authenticated, resume);
        if stream.len() <= limits.max_inline_len {
            assert_eq!(parts, whole, "split at {split}, resume {resume}");
        }
    }

    // The commands found, sent again as multibulk, are found again.
    let again: Vec<u8> = whole.0.iter().flat_map(|c| encode(c)).collect();
    let big = Limits {
        max_bulk_len: again.len(),
        max_inline_len: Limits::default().max_inline_len,
    };
    let (commands, error) = run(&again, again.len(), &big, true, false);
    assert_eq!(error, None);
    assert_eq!(commands, whole.0);
});
