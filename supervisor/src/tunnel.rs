//! The box's side of the cooperative's relay (ARCHITECTURE.md, "The relay"): enrolment with a
//! token from the cooperative, and `hearth-tunnel.service`, which keeps the tunnel up
//! (hearth-tunnel's client) and writes its state for the page.
//!
//! `/var/lib/hearth/relay.toml` (written by enrolment, read by the service):
//!
//! ```toml
//! name = "nord.coop.example"              # the box's name under the cooperative's domain
//! edge = "relay.coop.example:7443"        # what to dial (the control listener)
//! ca = "/etc/hearth/relay-ca.pem"         # optional: trust only this CA for the edge
//! ```
//!
//! The key (`/var/lib/hearth/tunnel.key`, 0600) is made on the box at enrolment and never
//! leaves it. Relayed connections go to nginx's relay listeners on loopback
//! (`/usr/lib/hearth/proxy-config`: 127.0.0.1:4443 for TLS, 127.0.0.1:4080 for HTTP, both
//! reading the PROXY header the edge puts first).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use hearth_tunnel::client::{self, Status};
use hearth_tunnel::key::BoxKey;
use hearth_tunnel::proto;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const DEFAULT_CONFIG: &str = "/var/lib/hearth/relay.toml";
pub const DEFAULT_KEY: &str = "/var/lib/hearth/tunnel.key";
pub const DEFAULT_STATUS: &str = "/run/hearth-tunnel/status.json";
/// The unit that keeps the tunnel up.
pub const UNIT: &str = "hearth-tunnel.service";
/// Debian's bundle of the public CAs, for an edge with a public certificate.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    pub name: String,
    pub edge: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    #[serde(default = "default_key")]
    pub key: PathBuf,
    #[serde(default = "default_https_target")]
    pub https_target: SocketAddr,
    #[serde(default = "default_http_target")]
    pub http_target: SocketAddr,
    #[serde(default = "default_status")]
    pub status: PathBuf,
}

fn default_key() -> PathBuf {
    DEFAULT_KEY.into()
}
fn default_https_target() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4443))
}
fn default_http_target() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 4080))
}
fn default_status() -> PathBuf {
    DEFAULT_STATUS.into()
}

impl RelayConfig {
    pub fn load(path: &Path) -> anyhow::Result<RelayConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
        let c: RelayConfig = toml::from_str(&text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(1);
            anyhow::anyhow!(
                "{}:{line}: {}",
                path.display(),
                e.message().trim().replace('\n', " ")
            )
        })?;
        if !proto::valid_name(&c.name) {
            bail!("{}: name: {:?} is not a DNS name", path.display(), c.name);
        }
        let host = c.edge.rsplit_once(':').map(|(h, _)| h).unwrap_or("");
        if ServerName::try_from(host.to_owned()).is_err()
            || c.edge
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
        {
            bail!("{}: edge: {:?} is not HOST:PORT", path.display(), c.edge);
        }
        Ok(c)
    }

    fn edge_host(&self) -> &str {
        self.edge
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.edge)
    }
}

/// The CAs the edge's certificate must chain to: only `ca` when given, else the system's.
fn roots(ca: Option<&Path>) -> anyhow::Result<rustls::RootCertStore> {
    let path = ca.unwrap_or(Path::new(SYSTEM_ROOTS));
    let mut store = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(path).with_context(|| format!("{}", path.display()))?
    {
        let cert = cert.with_context(|| format!("{}", path.display()))?;
        store
            .add(cert)
            .with_context(|| format!("{}: a certificate", path.display()))?;
    }
    if store.is_empty() {
        bail!("{}: no CA certificate in it", path.display());
    }
    Ok(store)
}

fn tls_config(ca: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots(ca)?)
    .with_no_client_auth();
    c.alpn_protocols = vec![proto::ALPN.to_vec()];
    Ok(Arc::new(c))
}

/// `hearth-tunnel.service`: keeps the tunnel up until SIGTERM, the state in `status`.
pub async fn run(config: RelayConfig) -> anyhow::Result<()> {
    let key = BoxKey::load_or_create(&config.key)?;
    let tls = tls_config(config.ca.as_deref())?;
    let tls_name = ServerName::try_from(config.edge_host().to_owned())?;
    let cfg = client::Config {
        edge: config.edge.clone(),
        tls_name,
        name: config.name.clone(),
        https_target: config.https_target,
        http_target: config.http_target,
        ping_interval: Duration::from_secs(5),
        ping_timeout: Duration::from_secs(5),
        backoff_min: Duration::from_secs(1),
        backoff_max: Duration::from_secs(60),
    };
    let (tx, mut rx) = watch::channel(Status::Starting);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(client::run(cfg, Arc::new(key), tls, tx, cancel.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let status = rx.borrow_and_update().clone();
        if let Err(e) = write_status(&config.status, &config.name, &status) {
            tracing::warn!("{e:#}");
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    cancel.cancel();
    let _ = task.await;
    Ok(())
}

/// The state file the page reads: `{"name", "state", ...}`, replaced atomically.
pub fn write_status(path: &Path, name: &str, status: &Status) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(status)?;
    v["name"] = serde_json::Value::from(name);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{v}\n")).with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// What the page knows of the tunnel: the status file, as written by [`write_status`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelState {
    pub name: String,
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl TunnelState {
    pub fn connected(&self) -> bool {
        self.state == "connected"
    }
}

/// Reads the status file; an absent file is `Err` with "not running".
pub fn read_status(path: &Path) -> Result<TunnelState, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err("not running".into()),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Debug, Deserialize)]
struct EnrolAnswer {
    name: String,
    tunnel: String,
}

/// Enrols this box with the cooperative at `api` (its control listener, `https://host:port`):
/// makes the key if there is none, claims `label`, writes `config_path`. Returns the name.
pub async fn enrol(
    api: &str,
    token: &str,
    label: &str,
    ca: Option<&Path>,
    key_path: &Path,
    config_path: &Path,
) -> anyhow::Result<String> {
    let key = BoxKey::load_or_create(key_path)?;
    let mut builder = crate::http_client::builder().timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
        builder = builder
            .tls_certs_only([reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}", ca.display()))?]);
    }
    let client = builder.build()?;
    let url = format!("{}/api/v1/enrol", api.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .json(&serde_json::json!({"token": token, "label": label, "public_key": proto::encode(key.public())}))
        .send()
        .await
        .with_context(|| format!("the cooperative at {api}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("the cooperative refused the enrolment ({status}): {reason}");
    }
    let answer: EnrolAnswer = serde_json::from_str(&body).context("the cooperative's answer")?;
    let config = RelayConfig {
        name: answer.name.clone(),
        edge: answer.tunnel,
        ca: ca.map(Path::to_path_buf),
        key: key_path.to_path_buf(),
        https_target: default_https_target(),
        http_target: default_http_target(),
        status: default_status(),
    };
    let tmp = config_path.with_extension("tmp");
    std::fs::write(&tmp, toml::to_string(&config)?)
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, config_path).with_context(|| format!("{}", config_path.display()))?;
    Ok(answer.name)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_config_enrolment_writes_reads_back_and_mistakes_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        let c = RelayConfig {
            name: "nord.coop.test".into(),
            edge: "relay.coop.test:7443".into(),
            ca: None,
            key: default_key(),
            https_target: default_https_target(),
            http_target: default_http_target(),
            status: default_status(),
        };
        std::fs::write(&path, toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(RelayConfig::load(&path).unwrap(), c);
        std::fs::write(
            &path,
            "name = \"nord.coop.test\"\nedge = \"relay.coop.test\"\n",
        )
        .unwrap();
        let e = RelayConfig::load(&path).unwrap_err().to_string();
        assert!(
            e.contains("relay.toml: edge:") && e.contains("HOST:PORT"),
            "{e}"
        );
        std::fs::write(
            &path,
            "name = \"nord.coop.test\"\nedge = \"relay.coop.test:1\"\nport = 3\n",
        )
        .unwrap();
        let e = RelayConfig::load(&path).unwrap_err().to_string();
        assert!(e.contains("relay.toml:3:") && e.contains("port"), "{e}");
    }

    #[test]
    fn the_status_file_names_the_box_and_its_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status.json");
        write_status(
            &path,
            "nord.coop.test",
            &Status::Connected {
                edge: "10.0.0.1:7443".into(),
                since: 7,
            },
        )
        .unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "nord.coop.test", "state": "connected", "edge": "10.0.0.1:7443", "since": 7})
        );
    }
}
