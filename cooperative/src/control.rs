//! The control listener: one TLS port under the cooperative's own name. A box's tunnel
//! (ALPN `hearth-tunnel/1`) is checked against the name table and registered; anything else
//! (`http/1.1`) is the HTTP API (enrolment, health).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hearth_tunnel::edge::{self, Tunnel};
use hearth_tunnel::proto;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::registry::Registry;
use crate::store::Store;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS server config of the control listener: its certificate, both protocols.
pub fn tls_config(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem).collect::<Result<Vec<_>, _>>()?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem)?;
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    c.alpn_protocols = vec![proto::ALPN.to_vec(), b"http/1.1".to_vec()];
    Ok(c)
}

pub struct Control {
    pub store: Store,
    pub registry: Registry,
    pub api: Router,
    pub idle: Duration,
}

pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    control: Arc<Control>,
    stop: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("control: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, control) = (acceptor.clone(), control.clone());
        tokio::spawn(async move {
            if let Err(e) = connection(tcp, acceptor, control).await {
                tracing::debug!("control: {e}");
            }
        });
    }
}

async fn connection(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    control: Arc<Control>,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_owned())?
        .map_err(|e| format!("TLS: {e}"))?;
    if tls.get_ref().1.alpn_protocol() == Some(proto::ALPN) {
        let claim = match edge::read_hello(&mut tls, HELLO_TIMEOUT).await {
            Ok(c) => c,
            Err(reason) => {
                edge::refuse(&mut tls, &reason).await;
                return Err(reason);
            }
        };
        let store = control.store.clone();
        let name = claim.name.clone();
        let owner = tokio::task::spawn_blocking(move || store.key_for(&name))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string());
        let refusal = match owner {
            Ok(Some(key)) if key == claim.public_key => None,
            Ok(Some(_)) => Some(format!("{} belongs to another box", claim.name)),
            Ok(None) => Some(format!(
                "{} is not enrolled with this cooperative",
                claim.name
            )),
            Err(e) => Some(format!("the cooperative cannot check the name now ({e})")),
        };
        if let Some(reason) = refusal {
            edge::refuse(&mut tls, &reason).await;
            return Err(reason);
        }
        let tunnel = Tunnel::accept(tls, claim, control.idle)
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!(name = %tunnel.name, "tunnel up");
        control.registry.insert(tunnel);
        return Ok(());
    }
    // The HTTP API.
    let app = control.api.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let app = app.clone();
        async move {
            let req = req.map(axum::body::Body::new);
            let resp = match tokio::time::timeout(REQUEST_TIMEOUT, app.oneshot(req)).await {
                Ok(Ok(r)) => r,
                Ok(Err(never)) => match never {},
                Err(_) => axum::response::IntoResponse::into_response((
                    hyper::StatusCode::REQUEST_TIMEOUT,
                    "too slow\n",
                )),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    // One request per connection: the API is asked now and then (an enrolment, a check every
    // 15 minutes), and thousands of boxes' idle keep-alive connections would cost the edge a
    // socket and buffers each.
    http.timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(64 * 1024);
    http.serve_connection(TokioIo::new(tls), svc)
        .await
        .map_err(|e| e.to_string())
}
