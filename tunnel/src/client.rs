//! The box's side: dial the edge, prove the name, then serve the streams the edge opens by
//! connecting each to the box's own listener for it (nginx's relay listeners, which read the
//! PROXY header the edge put first). Redials with backoff whenever the tunnel is lost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustls::pki_types::ServerName;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_util::compat::TokioAsyncReadCompatExt;
use tokio_util::sync::CancellationToken;

use crate::key::BoxKey;
use crate::mux::{self, Mode};
use crate::proto::{self, Hello, StreamKind, Verdict};

/// Time for the TCP connect, the TLS handshake and the hello each.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// A session that lasted this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct Config {
    /// The edge's tunnel listener, `host:port`.
    pub edge: String,
    /// The name on the edge's certificate.
    pub tls_name: ServerName<'static>,
    /// The box's own name (what the edge routes to it).
    pub name: String,
    /// Where a TLS stream for the name goes (nginx's relay listener, PROXY protocol).
    pub https_target: SocketAddr,
    /// Where a plain-HTTP stream goes (nginx's relay listener on the HTTP side).
    pub http_target: SocketAddr,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

/// The tunnel's state, as the page shows it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Starting,
    /// Dialling, or waiting to dial again after `last_error`.
    Connecting {
        attempt: u32,
        last_error: Option<String>,
    },
    /// Up since `since` (Unix seconds), to the edge at `edge`.
    Connected {
        edge: String,
        since: u64,
    },
    /// The edge said no (the name is not this box's, or it was never enrolled): retried slowly.
    Refused {
        reason: String,
    },
}

#[derive(Debug)]
enum DialError {
    Refused(String),
    Failed(String),
}

/// Keeps the tunnel up until `cancel`.
pub async fn run(
    cfg: Config,
    key: Arc<BoxKey>,
    tls: Arc<rustls::ClientConfig>,
    status: watch::Sender<Status>,
    cancel: CancellationToken,
) {
    let mut backoff = cfg.backoff_min;
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let dialled = tokio::select! {
            _ = cancel.cancelled() => return,
            r = dial(&cfg, &key, &tls) => r,
        };
        let wait = match dialled {
            Ok(session) => {
                let since = Instant::now();
                status.send_replace(Status::Connected {
                    edge: session.peer.clone(),
                    since: unix_now(),
                });
                tracing::info!(edge = %session.peer, "tunnel up");
                let abort = session.task.abort_handle();
                let reason = tokio::select! {
                    _ = cancel.cancelled() => {
                        abort.abort();
                        return;
                    }
                    reason = session.serve(&cfg) => reason,
                };
                tracing::warn!(%reason, "tunnel lost");
                status.send_replace(Status::Connecting {
                    attempt: 0,
                    last_error: Some(reason),
                });
                attempt = 0;
                if since.elapsed() >= STABLE_AFTER {
                    backoff = cfg.backoff_min;
                    // A path that worked for a while: try again at once (a new address).
                    Duration::from_millis(100)
                } else {
                    next(&mut backoff, cfg.backoff_max)
                }
            }
            Err(DialError::Refused(reason)) => {
                tracing::warn!(%reason, "the edge refused the tunnel");
                status.send_replace(Status::Refused { reason });
                backoff = cfg.backoff_max;
                jitter(cfg.backoff_max)
            }
            Err(DialError::Failed(reason)) => {
                tracing::info!(%reason, attempt, "cannot reach the edge");
                status.send_replace(Status::Connecting {
                    attempt,
                    last_error: Some(reason),
                });
                next(&mut backoff, cfg.backoff_max)
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// This backoff with jitter, and doubles it for the next time.
fn next(backoff: &mut Duration, max: Duration) -> Duration {
    let wait = jitter(*backoff);
    *backoff = (*backoff * 2).min(max);
    wait
}

/// 50–100 % of `d`, so that many boxes after an edge restart do not all dial at once.
fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Session {
    peer: String,
    handle: mux::Handle,
    inbound: tokio::sync::mpsc::Receiver<mux::Stream>,
    task: tokio::task::JoinHandle<Result<(), yamux::ConnectionError>>,
}

async fn dial(
    cfg: &Config,
    key: &BoxKey,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Session, DialError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| DialError::Failed(format!("{what}: {e}"));
    let tcp = timeout(STEP_TIMEOUT, TcpStream::connect(&cfg.edge))
        .await
        .map_err(|e| failed(&format!("connect to {}", cfg.edge), &e))?
        .map_err(|e| failed(&format!("connect to {}", cfg.edge), &e))?;
    let peer = tcp
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| cfg.edge.clone());
    let _ = tcp.set_nodelay(true);
    let mut stream = timeout(
        STEP_TIMEOUT,
        TlsConnector::from(tls.clone()).connect(cfg.tls_name.clone(), tcp),
    )
    .await
    .map_err(|e| failed("TLS with the edge", &e))?
    .map_err(|e| failed("TLS with the edge", &e))?;
    let (_, conn) = stream.get_ref();
    if conn.alpn_protocol() != Some(proto::ALPN) {
        return Err(DialError::Failed(
            "the edge does not speak hearth-tunnel/1 (ALPN)".into(),
        ));
    }
    let mut exporter = [0u8; 32];
    conn.export_keying_material(&mut exporter, proto::EXPORTER_LABEL, None)
        .map_err(|e| failed("TLS exporter", &e))?;
    let hello = Hello::new(&cfg.name, key, &exporter);
    let verdict: Verdict = timeout(STEP_TIMEOUT, async {
        proto::write_line(&mut stream, &hello).await?;
        proto::read_line(&mut stream).await
    })
    .await
    .map_err(|e| failed("hello", &e))?
    .map_err(|e| failed("hello", &e))?;
    if !verdict.ok {
        return Err(DialError::Refused(
            verdict.error.unwrap_or_else(|| "no reason given".into()),
        ));
    }
    let (handle, inbound, task) = mux::spawn(stream.compat(), Mode::Client);
    Ok(Session {
        peer,
        handle,
        inbound,
        task,
    })
}

impl Session {
    /// Serves the edge's streams until the tunnel is lost; says why.
    async fn serve(mut self, cfg: &Config) -> String {
        let pinger = ping_loop(self.handle.clone(), cfg.ping_interval, cfg.ping_timeout);
        tokio::pin!(pinger);
        let reason = loop {
            tokio::select! {
                stream = self.inbound.recv() => match stream {
                    Some(stream) => {
                        let (https, http) = (cfg.https_target, cfg.http_target);
                        tokio::spawn(async move {
                            if let Err(e) = forward(stream, https, http).await {
                                tracing::debug!(error = %e, "relayed connection ended");
                            }
                        });
                    }
                    None => break "the edge closed the tunnel".to_owned(),
                },
                reason = &mut pinger => break reason,
                r = &mut self.task => break match r {
                    Ok(Ok(())) => "the edge closed the tunnel".to_owned(),
                    Ok(Err(e)) => format!("tunnel failed: {e}"),
                    Err(e) => format!("tunnel task: {e}"),
                },
            }
        };
        self.task.abort();
        reason
    }
}

/// Pings the edge every `interval`; returns why when one is not answered within `wait`.
async fn ping_loop(handle: mux::Handle, interval: Duration, wait: Duration) -> String {
    let mut n: u64 = 0;
    loop {
        tokio::time::sleep(interval).await;
        n = n.wrapping_add(1);
        let ping = async {
            let mut s = handle.open().await?;
            let mut msg = [0u8; 9];
            msg[0] = StreamKind::Ping as u8;
            msg[1..].copy_from_slice(&n.to_be_bytes());
            s.write_all(&msg).await?;
            s.flush().await?;
            let mut back = [0u8; 8];
            s.read_exact(&mut back).await?;
            if back != msg[1..] {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "wrong answer",
                ));
            }
            let _ = s.shutdown().await;
            Ok::<(), std::io::Error>(())
        };
        match timeout(wait, ping).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return format!("ping failed: {e}"),
            Err(_) => return format!("no answer to a ping within {} s", wait.as_secs_f32()),
        }
    }
}

/// One relayed connection: its kind, then both ways to the listener for that kind.
async fn forward(
    mut stream: mux::Stream,
    https: SocketAddr,
    http: SocketAddr,
) -> std::io::Result<()> {
    let kind = timeout(STEP_TIMEOUT, stream.read_u8())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no stream kind"))??;
    let target = match StreamKind::from_byte(kind) {
        Some(StreamKind::Https) => https,
        Some(StreamKind::Http) => http,
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("stream kind {kind}"),
            ))
        }
    };
    let mut local = TcpStream::connect(target).await?;
    let _ = local.set_nodelay(true);
    tokio::io::copy_bidirectional(&mut stream, &mut local).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_ceiling_with_jitter_below_it() {
        let mut b = Duration::from_secs(1);
        let max = Duration::from_secs(60);
        let waits: Vec<Duration> = (0..10).map(|_| next(&mut b, max)).collect();
        assert_eq!(b, max);
        assert!(waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_secs(1));
        assert!(waits.iter().all(|w| *w <= max));
        assert!(waits[9] >= Duration::from_secs(30));
    }

    #[test]
    fn status_serialises_for_the_page() {
        let s = serde_json::to_value(Status::Connected {
            edge: "10.0.0.1:7443".into(),
            since: 5,
        })
        .unwrap();
        assert_eq!(
            s,
            serde_json::json!({"state": "connected", "edge": "10.0.0.1:7443", "since": 5})
        );
        let s = serde_json::to_value(Status::Refused {
            reason: "not yours".into(),
        })
        .unwrap();
        assert_eq!(s["state"], "refused");
    }
}
