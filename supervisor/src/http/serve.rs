//! The server loop: the router on a listener, with the limits a page that faces the internet
//! needs (mini-redis `server::run(listener, shutdown)`; linkerd2-proxy's bounded drain).
//!
//! - At most [`Limits::max_connections`] connections at once (a semaphore taken before
//!   `accept`): over the limit, new connections wait in the kernel's backlog, which is bounded,
//!   so a flood never grows the supervisor's memory.
//! - A request's head must arrive within [`Limits::header_timeout`] of the connection being
//!   ready for it: hyper starts that timer when it waits for a request head, on a new connection
//!   and again after every response, so a slowloris that sends its headers byte by byte and an
//!   idle keep-alive connection both end there.
//! - A request is answered within [`Limits::request_timeout`] (503 otherwise, and the connection
//!   closes): a client that sends its body slowly holds one connection for that long at most.
//! - A connection lives at most [`MAX_CONNECTION_AGE`]; then it finishes its request and closes.
//! - Read buffers are capped at [`MAX_BUF`] per connection (request heads larger than that are
//!   refused by hyper with 431).
//! - On shutdown the listener closes, connections finish the request in flight and close,
//!   and whatever is still open after [`Limits::grace`] is dropped.
//!
//! The peer's address is put in the request as `ConnectInfo<SocketAddr>`, as axum's own
//! `serve` does; only the sign-in limiter reads it (`signin::peer`).

use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A connection's read buffer at most (hyper's minimum is 8 KiB). Request heads of browsers
/// with the page's cookies are well under 4 KiB.
pub const MAX_BUF: usize = 16 * 1024;

/// A connection is closed (after its request in flight) this long after it was accepted.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(600);

/// The server's limits (`[http]` in the configuration fills them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 256,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            grace: Duration::from_secs(5),
        }
    }
}

/// Serve `app` on `listener` until `shutdown` completes, then drain for at most `limits.grace`.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let stop = CancellationToken::new();
    let mut conns = JoinSet::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_BUF);
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set holds only live ones.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("http: accept: {e}");
                    tokio::select! {
                        _ = &mut shutdown => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let app = app.clone();
            async move {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                let resp = match tokio::time::timeout(request_timeout, app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => too_slow(),
                };
                Ok::<_, Infallible>(resp)
            }
        });
        let conn = http.serve_connection(TokioIo::new(stream), svc);
        let stop = stop.clone();
        conns.spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let ended = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = stop.cancelled() => None,
                _ = tokio::time::sleep(MAX_CONNECTION_AGE) => None,
            };
            let r = match ended {
                Some(r) => r,
                None => {
                    // Finish the request in flight, then close (the owner bounds the wait).
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(request_timeout, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => return,
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(%peer, "http connection: {e}");
            }
        });
    }
    drop(listener);
    stop.cancel();
    let open = conns.len();
    let drained = tokio::time::timeout(limits.grace, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            of = open,
            "http: closing connections still open after the shutdown grace"
        );
        conns.shutdown().await;
    }
}

/// The answer to a request that took longer than the request timeout.
fn too_slow() -> Response {
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        "the request took too long\n",
    )
        .into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}
