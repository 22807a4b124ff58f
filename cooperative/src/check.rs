//! The outside-in check: a box asks the cooperative to connect back to its name from outside
//! its home, as a phone would, and to say what it saw — the name resolves, TLS is valid for
//! the name (against the public CAs, or the configured ones), Matrix answers
//! `/_matrix/client/versions`. The request is signed with the box's key (the one its name is
//! enrolled with), so nobody can make the cooperative probe names for them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Each step's time limit.
const STEP: Duration = Duration::from_secs(10);

pub use hearth_tunnel::check::{transcript, CheckReport, CheckRequest, MAX_SKEW_S};

pub struct Prober {
    pub tls: Arc<rustls::ClientConfig>,
    /// Connect here instead of resolving the name (tests on loopback).
    pub connect: Option<SocketAddr>,
    pub port: u16,
}

impl Prober {
    /// Looks at `name` from here, step by step; stops at the first failure.
    pub async fn probe(&self, name: &str, now: i64) -> CheckReport {
        let mut r = CheckReport {
            name: name.to_owned(),
            checked_at: now,
            resolves: false,
            addresses: Vec::new(),
            tls_ok: false,
            tls_not_after: None,
            matrix_ok: false,
            error: None,
        };
        let addrs: Vec<SocketAddr> = match self.connect {
            Some(a) => vec![a],
            None => {
                match tokio::time::timeout(STEP, tokio::net::lookup_host((name, self.port))).await {
                    Ok(Ok(a)) => a.collect(),
                    Ok(Err(e)) => return fail(r, format!("{name} does not resolve: {e}")),
                    Err(_) => {
                        return fail(
                            r,
                            format!("{name}: no DNS answer within {} s", STEP.as_secs()),
                        )
                    }
                }
            }
        };
        if addrs.is_empty() {
            return fail(r, format!("{name} resolves to no address"));
        }
        r.resolves = true;
        r.addresses = addrs.iter().map(|a| a.ip().to_string()).collect();
        let Ok(server_name) = ServerName::try_from(name.to_owned()) else {
            return fail(r, format!("{name} is not a DNS name"));
        };
        let tcp = match tokio::time::timeout(STEP, TcpStream::connect(&addrs[..])).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return fail(r, format!("no connection to {name}:{}: {e}", self.port)),
            Err(_) => {
                return fail(
                    r,
                    format!(
                        "no connection to {name}:{} within {} s",
                        self.port,
                        STEP.as_secs()
                    ),
                )
            }
        };
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let mut tls = match tokio::time::timeout(STEP, connector.connect(server_name, tcp)).await {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return fail(r, format!("TLS for {name}: {e}")),
            Err(_) => {
                return fail(
                    r,
                    format!("TLS for {name}: no handshake within {} s", STEP.as_secs()),
                )
            }
        };
        r.tls_ok = true;
        r.tls_not_after = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
            .map(|(_, c)| c.validity().not_after.timestamp());
        let req = format!(
            "GET /_matrix/client/versions HTTP/1.1\r\nHost: {name}\r\nUser-Agent: hearth-cooperative-check\r\nConnection: close\r\n\r\n"
        );
        let mut answer = Vec::new();
        let read = async {
            tls.write_all(req.as_bytes()).await?;
            (&mut tls).take(256 * 1024).read_to_end(&mut answer).await
        };
        if let Err(e) = tokio::time::timeout(STEP, read)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        {
            // A close without TLS's close_notify after the whole answer is common; judge the bytes.
            if answer.is_empty() {
                return fail(r, format!("Matrix on {name}: {e}"));
            }
        }
        let text = String::from_utf8_lossy(&answer);
        let status_ok = text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        // The body may be chunked: find the JSON object in it.
        let json = body
            .find('{')
            .and_then(|i| body.rfind('}').map(|j| &body[i..=j]));
        let versions = json
            .and_then(|j| serde_json::from_str::<serde_json::Value>(j).ok())
            .is_some_and(|v| v["versions"].as_array().is_some_and(|a| !a.is_empty()));
        if !(status_ok && versions) {
            let first = text
                .lines()
                .next()
                .unwrap_or("no answer")
                .chars()
                .take(100)
                .collect::<String>();
            return fail(
                r,
                format!("Matrix on {name} does not answer /_matrix/client/versions ({first})"),
            );
        }
        r.matrix_ok = true;
        r
    }
}

fn fail(mut r: CheckReport, why: String) -> CheckReport {
    r.error = Some(why);
    r
}
