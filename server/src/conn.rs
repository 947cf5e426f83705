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
        let mut batch = Vec::new();
        while pos < buf.len() && !close {
            // An unauthenticated client is parsed one command at a time:
            // the parser's bounds depend on whether AUTH has succeeded.
            let most = if client.authenticated { MAX_BATCH } else { 1 };
            while pos < buf.len() && batch.len() < most {
                match parse_command_resume(
                    &buf[pos..],
                    &limits,
                    client.authenticated,
                    &mut progress,
                ) {
                    Ok(None) => break,
                    Ok(Some((args, used))) => {
                        pos += used;
                        if !args.is_empty() {
                            batch.push(args);
                        }
                    }
                    Err(e) => {
                        protocol_error = Some(e.0);
                        close = true;
                        break;
                    }
                }
            }
            if batch.is_empty() {
                break;
            }
            let mut done = 0;
            while done < batch.len() && !client.closing {
                let bound = config.client_output_buffer_bytes;
                done += cmd::execute_batch(shared, client, &batch[done..], &mut out, bound);
                // Past the bound, the client must read before more run.
                if out.len() >= bound {
                    let _idle = shared.syncer.idle_while(&busy);
                    if let Err(e) = flush(stream, shared, client, &mut out).await {
                        return e;
                    }
                }
            }
            batch.clear();
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
