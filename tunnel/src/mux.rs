//! One yamux session over the tunnel's TLS connection, driven by its own task.
//!
//! yamux's `Connection` is a poll-based state machine that must be polled for inbound streams
//! to make progress at all; [`spawn`] gives it a task, hands inbound streams out through a
//! channel and opens outbound streams on request through a [`Handle`].

use std::future::poll_fn;
use std::task::Poll;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt};

pub use yamux::Mode;

/// A stream of the session, with tokio's `AsyncRead`/`AsyncWrite`.
pub type Stream = Compat<yamux::Stream>;

type OpenReply = oneshot::Sender<Result<yamux::Stream, yamux::ConnectionError>>;

/// Streams at once per tunnel: a family's phones, a few servers, ACME; more are refused by
/// yamux (the connection survives).
pub const MAX_STREAMS: usize = 256;
/// Inbound streams waiting to be taken before more are reset.
const INBOUND_QUEUE: usize = 32;

pub fn config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(MAX_STREAMS);
    // Each stream may grow its window (auto-tuned to the path's bandwidth-delay product), but
    // all of them together stay under 64 MiB of buffers.
    c.set_max_connection_receive_window(Some(64 * 1024 * 1024));
    c
}

/// Opens streams on a running session.
#[derive(Clone, Debug)]
pub struct Handle {
    requests: mpsc::Sender<OpenReply>,
}

impl Handle {
    pub async fn open(&self) -> std::io::Result<Stream> {
        let (tx, rx) = oneshot::channel();
        let gone = || std::io::Error::new(std::io::ErrorKind::NotConnected, "the tunnel is closed");
        self.requests.send(tx).await.map_err(|_| gone())?;
        match rx.await {
            Ok(Ok(s)) => Ok(s.compat()),
            Ok(Err(e)) => Err(std::io::Error::other(e)),
            Err(_) => Err(gone()),
        }
    }

    /// True once the session's task has ended.
    pub fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }
}

/// Starts the session on `io` (already through TLS and the hello). The task ends when the
/// connection closes or fails; aborting it drops the connection.
pub fn spawn<T>(
    io: T,
    mode: Mode,
) -> (
    Handle,
    mpsc::Receiver<Stream>,
    JoinHandle<Result<(), yamux::ConnectionError>>,
)
where
    T: AsyncIo,
{
    let (req_tx, mut req_rx) = mpsc::channel::<OpenReply>(16);
    let (in_tx, in_rx) = mpsc::channel::<Stream>(INBOUND_QUEUE);
    let mut conn = yamux::Connection::new(io, config(), mode);
    let task = tokio::spawn(async move {
        let mut pending: Option<OpenReply> = None;
        let mut handles_gone = false;
        poll_fn(|cx| loop {
            if pending.is_none() && !handles_gone {
                match req_rx.poll_recv(cx) {
                    Poll::Ready(Some(reply)) => pending = Some(reply),
                    Poll::Ready(None) => handles_gone = true,
                    Poll::Pending => {}
                }
            }
            if let Some(reply) = pending.take() {
                match conn.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        let _ = reply.send(Ok(stream));
                        continue;
                    }
                    Poll::Ready(Err(e)) => {
                        let _ = reply.send(Err(yamux::ConnectionError::Closed));
                        return Poll::Ready(Err(e));
                    }
                    Poll::Pending => pending = Some(reply),
                }
            }
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => {
                    // Nobody takes them fast enough: this one is reset (dropped).
                    let _ = in_tx.try_send(stream.compat());
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        })
        .await
    });
    (Handle { requests: req_tx }, in_rx, task)
}

/// futures' `AsyncRead + AsyncWrite` (what yamux speaks), as tokio-util's `Compat` gives a
/// tokio stream.
pub trait AsyncIo: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static {}
impl<T: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin + Send + 'static> AsyncIo for T {}
