//! One connection: read what the client sent, run every whole command in
//! it, wait for the group commit when a write needs it, and write every
//! reply with one flush.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::cmd;
use crate::resp::parse::{parse_command_resume, Limits, Progress};
use crate::resp::reply::Reply;
use crate::state::{Client, Shared};

/// The most commands parsed before they run: bounds the memory of parsed
/// arguments beyond the read buffer itself.
const MAX_BATCH: usize = 1024;

/// Arguments past this many bytes in one batch make it [heavy](is_heavy):
/// copying and storing them takes long enough to stall other clients.
const HEAVY_BATCH_BYTES: usize = 1 << 20;

/// How much the read buffer grows by at a time.
const READ_CHUNK: usize = 16 << 10;

/// The settings a connection reads on each pass, copied out of the
/// shared settings without cloning them whole.
#[derive(Clone, Copy)]
struct ConnLimits {
    timeout_secs: u64,
    proto_max_bulk_len: usize,
    client_output_buffer_bytes: usize,
    client_query_buffer_limit: usize,
}

impl ConnLimits {
    fn read(shared: &Shared) -> ConnLimits {
        let c = shared.config.read().unwrap_or_else(|e| e.into_inner());
        ConnLimits {
            timeout_secs: c.timeout_secs,
            proto_max_bulk_len: c.proto_max_bulk_len,
            client_output_buffer_bytes: c.client_output_buffer_bytes,
            client_query_buffer_limit: c.client_query_buffer_limit,
        }
    }
}

/// Why a connection's loop ended.
enum End {
    /// The client closed, QUIT, a protocol error, a kill or a shutdown.
    Done,
    /// A write to the client failed.
    Io(std::io::Error),
}

/// Serves one client until it leaves, is killed, or the server stops.
pub async fn serve<S>(mut stream: S, shared: Arc<Shared>, mut client: Client)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let end = run(&mut stream, &shared, &mut client).await;
    if let End::Io(e) = end {
        log::debug!("client {}: {e}", client.info.id);
    }
    let _ = stream.shutdown().await;
    client.unwatch_all(&shared);
}

async fn run<S>(stream: &mut S, shared: &Shared, client: &mut Client) -> End
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Where the parser got to in a command that is not whole yet.
    let mut progress = Progress::default();
    let mut protocol_error: Option<String> = None;
    let info = client.info.clone();
    loop {
        // Registered before the flags are read, so that a shutdown or a
        // kill that comes in between still wakes the read below.
        let shutdown = shared.shutdown.notified();
        let kill = info.kill.notified();
        tokio::pin!(shutdown, kill);
        shutdown.as_mut().enable();
        kill.as_mut().enable();
        if shared.shutting_down.load(Ordering::Acquire)
            || client.info.killed.load(Ordering::Acquire)
        {
            return End::Done;
        }
        let config = ConnLimits::read(shared);
        if buf.capacity() - buf.len() < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK);
        }
        let idle = match config.timeout_secs {
            0 => Duration::from_secs(u64::MAX / 4),
            s => Duration::from_secs(s),
        };
        let n = tokio::select! {
            r = stream.read_buf(&mut buf) => match r {
                Ok(0) | Err(_) => return End::Done,
                Ok(n) => n,
            },
            () = &mut shutdown => return End::Done,
            () = &mut kill => return End::Done,
            () = tokio::time::sleep(idle) => return End::Done,
        };
        if shared.shutting_down.load(Ordering::Acquire)
            || client.info.killed.load(Ordering::Acquire)
        {
            return End::Done;
        }
        shared
            .stats
            .net_input_bytes
            .fetch_add(n as u64, Ordering::Relaxed);
        let limits = Limits {
            max_bulk_len: config.proto_max_bulk_len,
            ..Limits::default()
        };
        // Busy until its replies are ready: a group commit round starting
        // meanwhile waits a little for this connection's writes.
        let busy = shared.syncer.busy();
        let mut pos = 0;
        let mut close = false;
        let mut batch: Vec<Vec<Vec<u8>>>;
        while pos < buf.len() && !close {
            let parsed = parse_batch(&buf, &mut pos, &limits, client.authenticated, &mut progress);
            batch = parsed.0;
            if let Some(e) = parsed.1 {
                protocol_error = Some(e);
                close = true;
            }
            if batch.is_empty() {
                break;
            }
            let mut done = 0;
            while done < batch.len() && !client.closing {
                let bound = config.client_output_buffer_bytes;
                let rest = &batch[done..];
                let mut step = || cmd::execute_batch(shared, client, rest, &mut out, bound);
                done += if is_heavy(rest) {
                    off_worker(step)
                } else {
                    step()
                };
                // Past the bound, the client must read before more run.
                if out.len() >= bound {
                    let _idle = shared.syncer.idle_while(&busy);
                    if let Err(e) = flush(stream, shared, client, &mut out).await {
                        return e;
                    }
                }
            }
            if client.closing {
                close = true;
                protocol_error = None;
            }
        }
        if let Some(text) = protocol_error.take() {
            Reply::error(format!("ERR Protocol error: {text}")).encode(client.proto, &mut out);
        }
        buf.drain(..pos);
        if buf.len() > config.client_query_buffer_limit {
            log::warn!(
                "closing client {}: its query buffer passed {} bytes",
                client.info.id,
                config.client_query_buffer_limit
            );
            close = true;
        }
        drop(busy);
        if let Err(e) = flush(stream, shared, client, &mut out).await {
            return e;
        }
        if close {
            return End::Done;
        }
        if buf.is_empty() && buf.capacity() > 4 * READ_CHUNK {
            buf = Vec::with_capacity(READ_CHUNK);
        }
    }
}

/// Parses the whole commands in `buf` from `*pos` on (at most
/// [`MAX_BATCH`]), moving `*pos` past them; returns them and the text of a
/// protocol error that ended the parse, if one did.
fn parse_batch(
    buf: &[u8],
    pos: &mut usize,
    limits: &Limits,
    authenticated: bool,
    progress: &mut Progress,
) -> (Vec<Vec<Vec<u8>>>, Option<String>) {
    // An unauthenticated client is parsed one command at a time: the
    // parser's bounds depend on whether AUTH has succeeded.
    let most = if authenticated { MAX_BATCH } else { 1 };
    let mut batch = Vec::new();
    while *pos < buf.len() && batch.len() < most {
        match parse_command_resume(&buf[*pos..], limits, authenticated, progress) {
            Ok(None) => break,
            Ok(Some((args, used))) => {
                *pos += used;
                if !args.is_empty() {
                    batch.push(args);
                }
            }
            Err(e) => return (batch, Some(e.0)),
        }
    }
    (batch, None)
}

/// Whether running `batch` may take long: it holds a [`cmd::HEAVY`]
/// command (one that walks every key or copies a whole value, or EXEC,
/// whose queue may hold one), or its arguments total more than
/// [`HEAVY_BATCH_BYTES`].
fn is_heavy(batch: &[Vec<Vec<u8>>]) -> bool {
    let mut bytes = 0usize;
    for args in batch {
        let Some(name) = args.first() else { continue };
        if cmd::lookup(name).is_some_and(|s| s.flags & cmd::HEAVY != 0) {
            return true;
        }
        bytes = args.iter().fold(bytes, |n, a| n.saturating_add(a.len()));
    }
    bytes > HEAVY_BATCH_BYTES
}

/// Runs `f`, which may take long, without holding up the other tasks of
/// this worker thread: on a multi-threaded runtime the thread hands its
/// queue to another before `f` runs ([`tokio::task::block_in_place`]). On
/// a current-thread runtime, where that is not possible, `f` just runs.
fn off_worker<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Writes the pending replies, after the group commit of every database
/// they wrote to under `--sync always`. When that fsync fails, the replies
/// are dropped and the connection closes: no write is acknowledged unless
/// it is durable.
async fn flush<S>(
    stream: &mut S,
    shared: &Shared,
    client: &mut Client,
    out: &mut Vec<u8>,
) -> Result<(), End>
where
    S: AsyncWrite + Unpin,
{
    if client.dirty != 0 {
        let mask = std::mem::take(&mut client.dirty);
        shared.stats.sync_rounds.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = shared.syncer.sync(mask).await {
            log::error!("closing client {} unanswered: {e}", client.info.id);
            out.clear();
            return Err(End::Done);
        }
    }
    if out.is_empty() {
        return Ok(());
    }
    shared
        .stats
        .net_output_bytes
        .fetch_add(out.len() as u64, Ordering::Relaxed);
    let idle = match shared
        .config
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .timeout_secs
    {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let r = write_out(stream, out, idle, &client.info).await;
    out.clear();
    if out.capacity() > 4 * READ_CHUNK {
        *out = Vec::with_capacity(READ_CHUNK);
    }
    r.map_err(End::Io)
}

/// Writes `out`, as `write_all` does, but gives up when no byte could be
/// written for `idle` (the `timeout` setting: Redis counts a write as
/// interaction, so a client that stops reading is idle) or when CLIENT
/// KILL closes the client: a client that never reads cannot hold its
/// connection and its pending replies forever.
async fn write_out<S>(
    stream: &mut S,
    out: &[u8],
    idle: Option<Duration>,
    info: &crate::state::ClientInfo,
) -> std::io::Result<()>
where
    S: AsyncWrite + Unpin,
{
    let kill = info.kill.notified();
    tokio::pin!(kill);
    kill.as_mut().enable();
    let mut pos = 0;
    while pos < out.len() {
        let stalled = async {
            match idle {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        // Biased: a client killed (by itself, say) while its socket takes
        // the bytes still gets its replies, as in Redis; only a write that
        // cannot go on gives way to the kill.
        let n = tokio::select! {
            biased;
            r = stream.write(&out[pos..]) => r?,
            () = stalled => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client read none of its replies within the timeout",
                ))
            }
            () = &mut kill => {
                return Err(std::io::Error::other("killed while its replies were pending"))
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        pos += n;
    }
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&[u8]]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.to_vec()).collect()
    }

    #[test]
    fn heavy_batches() {
        let small = args(&[b"SET", b"k", b"v"]);
        assert!(!is_heavy(&[small.clone(), args(&[b"get", b"k"])]));
        assert!(is_heavy(&[small.clone(), args(&[b"keys", b"*"])]));
        assert!(is_heavy(&[args(&[b"FlushAll"])]));
        assert!(is_heavy(&[args(&[b"exec"])]));
        assert!(!is_heavy(&[args(&[b"nosuchcommand"])]));
        // Size alone: one big argument, or many that add up.
        let big = vec![b'x'; HEAVY_BATCH_BYTES + 1];
        assert!(is_heavy(&[args(&[b"SET", b"k", &big])]));
        let part = vec![b'x'; HEAVY_BATCH_BYTES / 4];
        let four = vec![args(&[b"SET", b"k", &part]); 4];
        assert!(is_heavy(&four));
        assert!(!is_heavy(&four[..3]));
    }

    #[test]
    fn long_commands_are_flagged_heavy() {
        let flagged =
            |name: &str| cmd::lookup(name.as_bytes()).is_some_and(|s| s.flags & cmd::HEAVY != 0);
        for name in [
            "keys",
            "scan",
            "randomkey",
            "dbsize",
            "flushdb",
            "flushall",
            "info",
            "lcs",
            "setrange",
            "append",
            "getrange",
            "setbit",
            "copy",
            "move",
            "rename",
            "save",
            "shutdown",
            "exec",
        ] {
            assert!(flagged(name), "{name}");
        }
        for name in ["get", "set", "mget", "mset", "incr", "del", "ping", "multi"] {
            assert!(!flagged(name), "{name}");
        }
    }

    #[test]
    fn off_worker_runs_on_any_runtime() {
        assert_eq!(off_worker(|| 1), 1);
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(current.block_on(async { off_worker(|| 2) }), 2);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        let r = multi.block_on(async { tokio::spawn(async { off_worker(|| 3) }).await });
        assert_eq!(r.ok(), Some(3));
    }
}
