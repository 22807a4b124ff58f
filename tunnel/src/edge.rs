//! The edge's side of one tunnel: check the box's hello, run the session, answer its pings,
//! open a stream for each relayed connection, and notice when the box is gone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;

use crate::mux::{self, Mode};
use crate::proto::{self, Hello, StreamKind, Verdict};

/// A box's claim, checked against its TLS session; the caller checks it against the name table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub name: String,
    pub public_key: Vec<u8>,
}

/// Reads the hello (within `wait`) and checks its signature over this TLS session.
pub async fn read_hello<S>(tls: &mut TlsStream<S>, wait: Duration) -> Result<Claim, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut exporter = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut exporter, proto::EXPORTER_LABEL, None)
        .map_err(|e| format!("TLS exporter: {e}"))?;
    let hello: Hello = timeout(wait, proto::read_line(tls))
        .await
        .map_err(|_| "no hello in time".to_owned())?
        .map_err(|e| format!("hello: {e}"))?;
    let public_key = hello.verified_key(&exporter).map_err(str::to_owned)?;
    Ok(Claim {
        name: hello.name,
        public_key,
    })
}

/// Says no, with a reason the box shows its family.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(tls: &mut TlsStream<S>, reason: &str) {
    let verdict = Verdict {
        ok: false,
        error: Some(reason.to_owned()),
    };
    let _ = timeout(Duration::from_secs(5), async {
        proto::write_line(tls, &verdict).await?;
        tls.shutdown().await
    })
    .await;
}

/// A box's live tunnel at this edge.
#[derive(Debug)]
pub struct Tunnel {
    pub name: String,
    handle: mux::Handle,
    gone: CancellationToken,
    abort: tokio::task::AbortHandle,
    started: Instant,
}

impl Tunnel {
    /// Says yes and starts the session; the tunnel closes itself when the box has not pinged
    /// for `idle` (a dead path), when the connection ends, or on [`Tunnel::close`].
    pub async fn accept<S>(
        mut tls: TlsStream<S>,
        claim: Claim,
        idle: Duration,
    ) -> std::io::Result<Arc<Tunnel>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        proto::write_line(
            &mut tls,
            &Verdict {
                ok: true,
                error: None,
            },
        )
        .await?;
        let (handle, mut inbound, task) = mux::spawn(tls.compat(), Mode::Server);
        let gone = CancellationToken::new();
        let started = Instant::now();
        let last_ping = Arc::new(AtomicU64::new(0));
        let tunnel = Arc::new(Tunnel {
            name: claim.name,
            handle,
            gone: gone.clone(),
            abort: task.abort_handle(),
            started,
        });
        // The session's end is the tunnel's end.
        let g = gone.clone();
        tokio::spawn(async move {
            let _ = task.await;
            g.cancel();
        });
        // Pings in, answered; the only streams a box may open.
        let g = gone.clone();
        let abort = tunnel.abort.clone();
        tokio::spawn(async move {
            loop {
                let since = Duration::from_millis(last_ping.load(Ordering::Relaxed));
                let deadline = started + since + idle;
                tokio::select! {
                    _ = g.cancelled() => return,
                    _ = tokio::time::sleep_until(deadline.into()) => {
                        if Duration::from_millis(last_ping.load(Ordering::Relaxed)) == since {
                            abort.abort();
                            return;
                        }
                    }
                    s = inbound.recv() => match s {
                        Some(mut s) => {
                            let lp = last_ping.clone();
                            tokio::spawn(async move {
                                if answer_ping(&mut s).await.is_ok() {
                                    lp.store(started.elapsed().as_millis() as u64, Ordering::Relaxed);
                                }
                            });
                        }
                        None => return,
                    },
                }
            }
        });
        Ok(tunnel)
    }

    /// A new stream to the box for one relayed connection of `kind`.
    pub async fn open(&self, kind: StreamKind) -> std::io::Result<mux::Stream> {
        let mut s = self.handle.open().await?;
        s.write_all(&[kind as u8]).await?;
        Ok(s)
    }

    /// How long the tunnel has been up.
    pub fn age(&self) -> Duration {
        self.started.elapsed()
    }

    pub fn close(&self) {
        self.abort.abort();
        self.gone.cancel();
    }

    pub fn is_closed(&self) -> bool {
        self.gone.is_cancelled()
    }

    /// Resolves when the tunnel has ended.
    pub async fn closed(&self) {
        self.gone.cancelled().await
    }
}

async fn answer_ping(s: &mut mux::Stream) -> std::io::Result<()> {
    let mut msg = [0u8; 9];
    timeout(Duration::from_secs(10), s.read_exact(&mut msg))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "ping"))??;
    if StreamKind::from_byte(msg[0]) != Some(StreamKind::Ping) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a box may only ping",
        ));
    }
    s.write_all(&msg[1..]).await?;
    s.shutdown().await
}
