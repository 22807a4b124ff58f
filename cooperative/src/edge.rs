//! The public side of the edge: port 443 routes TLS connections by their server name (SNI)
//! without terminating them, port 80 routes plain HTTP by its Host header (ACME's http-01
//! challenges and redirects, answered by the box). Each relayed connection becomes a stream
//! in the box's tunnel, starting with a PROXY protocol v2 header that carries the client's
//! address, then the client's bytes as they came.

use std::net::SocketAddr;
use std::time::Duration;

use hearth_tunnel::proto::StreamKind;
use ppp::v2::{Builder, Command, Protocol, Version};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// Time a client has to send its ClientHello or request head.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest ClientHello (post-quantum key shares make them ~2 KiB today) or request head.
pub const MAX_FIRST_BYTES: usize = 16 * 1024;
/// A fatal TLS alert, unrecognized_name (RFC 6066): "no box answers for this name".
const ALERT_UNRECOGNIZED_NAME: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Https,
    Http,
}

/// Accepts on `listener` until `stop`, relaying every connection by name.
pub async fn serve(listener: TcpListener, door: Door, registry: Registry, stop: CancellationToken) {
    loop {
        let (client, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("edge {door:?}: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            if let Err(e) = relay(client, peer, door, &registry).await {
                // No client address in the log: the cooperative does not keep them.
                tracing::debug!("edge {door:?}: {e}");
            }
        });
    }
}

async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    door: Door,
    registry: &Registry,
) -> Result<(), String> {
    let local = client.local_addr().map_err(|e| e.to_string())?;
    let _ = client.set_nodelay(true);
    let first = tokio::time::timeout(FIRST_BYTES_TIMEOUT, async {
        match door {
            Door::Https => client_hello_name(&mut client).await,
            Door::Http => request_host(&mut client).await,
        }
    })
    .await
    .map_err(|_| "nothing to route by within the time".to_owned())??;
    let (name, bytes) = first;
    let Some(tunnel) = name.as_deref().and_then(|n| registry.get(n)) else {
        match door {
            Door::Https => {
                let _ = client.write_all(&ALERT_UNRECOGNIZED_NAME).await;
            }
            Door::Http => {
                let _ = client
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
                          Content-Length: 38\r\nConnection: close\r\n\r\nNo hearth box answers for this name.\r\n",
                    )
                    .await;
            }
        }
        return Err(format!("no tunnel for {name:?}"));
    };
    let kind = match door {
        Door::Https => StreamKind::Https,
        Door::Http => StreamKind::Http,
    };
    let mut stream = tunnel
        .open(kind)
        .await
        .map_err(|e| format!("open a stream to {}: {e}", tunnel.name))?;
    let header = proxy_header(peer, local)?;
    stream.write_all(&header).await.map_err(|e| e.to_string())?;
    stream.write_all(&bytes).await.map_err(|e| e.to_string())?;
    tokio::io::copy_bidirectional(&mut client, &mut stream)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// PROXY protocol v2 for a TCP connection from `client` to `local`.
pub fn proxy_header(client: SocketAddr, local: SocketAddr) -> Result<Vec<u8>, String> {
    // Both of one family: an IPv4 client on a dual-stack socket shows as ::ffff:a.b.c.d.
    let norm = |a: SocketAddr| match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::from((v4, v6.port())),
            None => a,
        },
        v4 => v4,
    };
    let (client, mut local) = (norm(client), norm(local));
    if client.is_ipv4() != local.is_ipv4() {
        local = if client.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], local.port()))
        } else {
            SocketAddr::from(([0u16; 8], local.port()))
        };
    }
    Builder::with_addresses(
        Version::Two | Command::Proxy,
        Protocol::Stream,
        (client, local),
    )
    .build()
    .map_err(|e| format!("PROXY header: {e}"))
}

/// Reads until the ClientHello is complete; its server name (lower case) and every byte read.
pub async fn client_hello_name<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(Option<String>, Vec<u8>), String> {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut bytes = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    loop {
        let n = r.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the ClientHello was complete".into());
        }
        bytes.extend_from_slice(&chunk[..n]);
        if bytes.len() > MAX_FIRST_BYTES {
            return Err("ClientHello too large".into());
        }
        acceptor
            .read_tls(&mut &chunk[..n])
            .map_err(|e| format!("not TLS: {e}"))?;
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                let name = accepted
                    .client_hello()
                    .server_name()
                    .map(|s| s.to_ascii_lowercase());
                return Ok((name, bytes));
            }
            Ok(None) => continue,
            Err((e, _)) => return Err(format!("not a TLS ClientHello: {e}")),
        }
    }
}

/// Reads an HTTP/1 request head; its Host without the port (lower case) and every byte read.
pub async fn request_host<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<(Option<String>, Vec<u8>), String> {
    let mut bytes = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = r.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the request head was complete".into());
        }
        bytes.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&bytes) {
            Ok(httparse::Status::Complete(_)) => {
                let host = req
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("host"))
                    .and_then(|h| std::str::from_utf8(h.value).ok())
                    .map(|h| {
                        h.trim()
                            .rsplit_once(':')
                            .map_or(h.trim(), |(host, _)| host)
                            .to_ascii_lowercase()
                    });
                return Ok((host, bytes));
            }
            Ok(httparse::Status::Partial) if bytes.len() <= MAX_FIRST_BYTES => continue,
            Ok(httparse::Status::Partial) => return Err("request head too large".into()),
            Err(e) => return Err(format!("not HTTP: {e}")),
        }
    }
}

/// Whether these bytes start like TLS records (handshake, alert, change cipher spec,
/// application data; version 3.x): what the edge may see of a relayed HTTPS connection.
pub fn looks_like_tls_record(bytes: &[u8]) -> bool {
    bytes.len() >= 5 && (0x14..=0x17).contains(&bytes[0]) && bytes[1] == 0x03
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn the_host_header_without_its_port() {
        let mut r: &[u8] =
            b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nHost: Nord.Coop.Test:80\r\n\r\n";
        let (host, bytes) = request_host(&mut r).await.unwrap();
        assert_eq!(host.as_deref(), Some("nord.coop.test"));
        assert!(bytes.ends_with(b"\r\n\r\n"));
        let mut r: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert_eq!(request_host(&mut r).await.unwrap().0, None);
        let mut r: &[u8] = b"\x16\x03\x01garbage\r\n\r\n";
        assert!(request_host(&mut r).await.is_err());
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 20_000]].concat();
        let mut r: &[u8] = &long;
        assert!(request_host(&mut r).await.is_err());
    }

    #[tokio::test]
    async fn plain_http_on_the_tls_door_is_refused() {
        let mut r: &[u8] = b"GET / HTTP/1.1\r\nHost: nord.coop.test\r\n\r\n";
        assert!(client_hello_name(&mut r).await.is_err());
    }

    #[test]
    fn proxy_headers_keep_the_clients_address_in_one_family() {
        let h = proxy_header(
            "203.0.113.7:5555".parse().unwrap(),
            "[::ffff:10.0.0.1]:443".parse().unwrap(),
        )
        .unwrap();
        let parsed = ppp::v2::Header::try_from(&h[..]).unwrap();
        assert_eq!(
            parsed.addresses,
            ppp::v2::Addresses::IPv4(ppp::v2::IPv4::new(
                [203, 0, 113, 7],
                [10, 0, 0, 1],
                5555,
                443
            ))
        );
        let h = proxy_header(
            "[2001:db8::7]:5555".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        )
        .unwrap();
        assert!(matches!(
            ppp::v2::Header::try_from(&h[..]).unwrap().addresses,
            ppp::v2::Addresses::IPv6(_)
        ));
    }
}
