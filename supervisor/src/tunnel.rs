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
//! api = "https://relay.coop.example:7443" # optional: the cooperative's API (default: the edge)
//! # optional: the box's repository in the cooperative's backup store
//! backup_repository = "rest:https://backup.coop.example/nord/"
//! ```
//!
//! When the cooperative runs a backup store, enrolment's answer carries the box's own account
//! in it; the repository goes into `backup_repository` above and the account, `user:password`
//! on one line, into `backup-store` beside relay.toml (`/var/lib/hearth/backup-store`, 0600),
//! which hearth-backup.service uses for the cooperative's target unless `[backup]
//! cooperative_repository` names another ([`store_credentials`], `backup::run::targets`).
//!
//! While the tunnel is up the service also asks the cooperative for the outside-in check (the
//! cooperative connects back to the box's name as a phone would: DNS, TLS for the name, Matrix)
//! a few seconds after the tunnel comes up, when the certificate changes, every 15 minutes
//! while it passes and sooner while it fails ([`Timing`]); the last answer goes to
//! `/run/hearth-tunnel/check.json` for the page ([`OutsideCheck`]).
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
use hearth_tunnel::check::{CheckReport, CheckRequest};
use hearth_tunnel::client::{self, Status};
use hearth_tunnel::fleet;
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
pub const DEFAULT_CHECK: &str = "/run/hearth-tunnel/check.json";
/// The box's account in the cooperative's backup store: `user:password`, 0600.
pub const DEFAULT_STORE_CREDENTIALS: &str = "/var/lib/hearth/backup-store";
/// The certificate nginx serves (`[name] tls_dir`): a new one is worth a new check.
pub const DEFAULT_CERTIFICATE: &str = "/var/lib/hearth-tls/fullchain.pem";
/// When the box looks up its edges again, and asks for the outside-in check.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The edges' name is looked up again this often (an edge added to or taken out of DNS).
    pub reresolve: Duration,
    /// The next check after one that passed.
    pub every_ok: Duration,
    /// After one that failed: this, doubled each time, at most `failed_max`.
    pub failed_first: Duration,
    pub failed_max: Duration,
    /// The first check after the tunnel came up (the edge registers it a moment after the box
    /// hears yes) or after the certificate changed.
    pub settle: Duration,
    /// How often the loop looks at the tunnel's state and the certificate's time stamp.
    pub tick: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            reresolve: Duration::from_secs(60),
            every_ok: Duration::from_secs(15 * 60),
            failed_first: Duration::from_secs(30),
            failed_max: Duration::from_secs(10 * 60),
            settle: Duration::from_secs(3),
            tick: Duration::from_secs(5),
        }
    }
}
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
    /// The cooperative's API (`https://host:port`); `None`: the control listener, `https://edge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<String>,
    /// Where the outside-in check's last answer goes.
    #[serde(default = "default_check")]
    pub check: PathBuf,
    /// The certificate the box serves, watched for changes.
    #[serde(default = "default_certificate")]
    pub certificate: PathBuf,
    /// The box's repository in the cooperative's backup store (`rest:https://…/<label>/`),
    /// when enrolment gave it one; its account is in [`store_credentials`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_repository: Option<String>,
}

/// Where enrolment keeps the box's backup-store account: `backup-store` beside relay.toml
/// ([`DEFAULT_STORE_CREDENTIALS`] for the default relay.toml).
pub fn store_credentials(relay_config: &Path) -> PathBuf {
    relay_config.with_file_name("backup-store")
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
fn default_check() -> PathBuf {
    DEFAULT_CHECK.into()
}
fn default_certificate() -> PathBuf {
    DEFAULT_CERTIFICATE.into()
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

    /// The cooperative's API: `api`, else the control listener the tunnel dials.
    pub fn api_url(&self) -> String {
        self.api
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.edge))
            .trim_end_matches('/')
            .to_owned()
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
    let stop = CancellationToken::new();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let on_signal = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
        on_signal.cancel();
    });
    run_until(config, Timing::default(), fleet::system_resolver(), stop).await
}

/// The tunnel and the outside-in checks until `stop`.
pub async fn run_until(
    config: RelayConfig,
    times: Timing,
    resolver: fleet::Resolver,
    stop: CancellationToken,
) -> anyhow::Result<()> {
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
    let cancel = stop.child_token();
    let key = Arc::new(key);
    let (edges_tx, mut edges_rx) = watch::channel(fleet::EdgeStates::new());
    let task = tokio::spawn(fleet::run(
        cfg,
        resolver,
        times.reresolve,
        key.clone(),
        tls,
        tx,
        edges_tx,
        cancel.clone(),
    ));
    let checker = tokio::spawn(check_loop(
        config.clone(),
        key,
        api_client(config.ca.as_deref(), Duration::from_secs(60))?,
        rx.clone(),
        times,
        cancel.clone(),
    ));
    loop {
        let status = rx.borrow_and_update().clone();
        let edges = edges_rx.borrow_and_update().clone();
        if let Err(e) = write_status(&config.status, &config.name, &status, &edges) {
            tracing::warn!("{e:#}");
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { break },
            r = edges_rx.changed() => if r.is_err() { break },
            _ = stop.cancelled() => break,
        }
    }
    cancel.cancel();
    let _ = task.await;
    let _ = checker.await;
    Ok(())
}

/// An HTTPS client for the cooperative's API: only `ca` when given, else the public CAs.
/// No idle connection is kept: the API is asked every few minutes at most, and an edge
/// serving thousands of boxes should not hold a pooled connection for each.
pub fn api_client(ca: Option<&Path>, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut builder = crate::http_client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).with_context(|| format!("{}", ca.display()))?;
        builder = builder
            .tls_certs_only([reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("{}", ca.display()))?]);
    }
    Ok(builder.build()?)
}

/// `check.json`: the last outside-in check the box asked for, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutsideCheck {
    /// Unix seconds: when the box asked.
    pub asked_at: i64,
    /// The cooperative's answer; `None` when there was none (`error` says why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<CheckReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl OutsideCheck {
    pub fn reachable(&self) -> bool {
        self.report.as_ref().is_some_and(CheckReport::reachable)
    }
}

pub(crate) fn unix_now() -> i64 {
    crate::clock::wall_secs_now().max(0)
}

/// Asks the cooperative to look at `name` from outside. `Ok(None)`: asked too soon (429),
/// nothing learnt.
pub async fn ask_check(
    client: &reqwest::Client,
    api: &str,
    key: &BoxKey,
    name: &str,
) -> Result<Option<CheckReport>, String> {
    let req = CheckRequest::signed(key, name, unix_now());
    let resp = client
        .post(format!("{api}/api/v1/check"))
        .json(&req)
        .send()
        .await
        .map_err(|e| format!("the cooperative at {api}: {}", error_chain(&e)))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        return Ok(None);
    }
    if !status.is_success() {
        let reason = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        return Err(format!(
            "the cooperative refused the check ({status}): {reason}"
        ));
    }
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| format!("the cooperative's answer: {e}"))
}

/// An error and its causes on one line (reqwest's own message hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Timing {
    /// When the next check is due after one with this outcome (`failures` in a row so far).
    fn next_after(&self, reachable: bool, failures: u32) -> Duration {
        if reachable {
            self.every_ok
        } else {
            self.failed_first
                .saturating_mul(1 << failures.saturating_sub(1).min(16))
                .min(self.failed_max)
        }
    }
}

/// The outside-in check's schedule (module docs), while the tunnel is up.
pub async fn check_loop(
    config: RelayConfig,
    key: Arc<BoxKey>,
    client: reqwest::Client,
    status: watch::Receiver<Status>,
    times: Timing,
    cancel: CancellationToken,
) {
    let api = config.api_url();
    let mut tick = tokio::time::interval(times.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut due: Option<tokio::time::Instant> = None;
    let mut cert = modified(&config.certificate);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = tokio::time::Instant::now();
        if !matches!(*status.borrow(), Status::Connected { .. }) {
            due = None;
            continue;
        }
        let cert_now = modified(&config.certificate);
        if cert_now != cert {
            cert = cert_now;
            due = Some(now + times.settle);
        }
        let when = *due.get_or_insert(now + times.settle);
        if now < when {
            continue;
        }
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            r = ask_check(&client, &api, &key, &config.name) => r,
        };
        let result = match outcome {
            Ok(None) => {
                due = Some(now + times.failed_first);
                continue;
            }
            Ok(Some(report)) => OutsideCheck {
                asked_at: unix_now(),
                report: Some(report),
                error: None,
            },
            Err(e) => OutsideCheck {
                asked_at: unix_now(),
                report: None,
                error: Some(e),
            },
        };
        let reachable = result.reachable();
        failures = if reachable { 0 } else { failures + 1 };
        tracing::info!(
            reachable,
            error = result
                .error
                .as_deref()
                .or(result.report.as_ref().and_then(|r| r.error.as_deref()))
                .unwrap_or(""),
            "outside-in check"
        );
        if let Err(e) = write_json(&config.check, &result) {
            tracing::warn!("{e:#}");
        }
        due = Some(tokio::time::Instant::now() + times.next_after(reachable, failures));
    }
}

/// `path`, replaced atomically.
fn write_json(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{}\n", serde_json::to_string(value)?))
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// Where the page looks for the check's answer: `check.json` beside the tunnel's status file
/// (both in hearth-tunnel.service's runtime directory).
pub fn check_file(status: &Path) -> PathBuf {
    status.with_file_name("check.json")
}

/// Reads `check.json`; `Ok(None)`: no check yet.
pub fn read_check(path: &Path) -> Result<Option<OutsideCheck>, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The state file the page reads: `{"name", "state", ..., "edges": [{"address", "state",
/// ...}]}` (the combined state, then each edge's), replaced atomically.
pub fn write_status(
    path: &Path,
    name: &str,
    status: &Status,
    edges: &fleet::EdgeStates,
) -> anyhow::Result<()> {
    let mut v = serde_json::to_value(status)?;
    v["name"] = serde_json::Value::from(name);
    let mut list = Vec::new();
    for (address, s) in edges {
        let mut e = serde_json::to_value(s)?;
        e["address"] = serde_json::Value::from(address.to_string());
        list.push(e);
    }
    v["edges"] = serde_json::Value::from(list);
    write_json(path, &v)
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
    /// Each edge the box keeps a tunnel to (a cooperative may run several behind one name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeState>,
}

/// One edge's tunnel, in the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeState {
    pub address: String,
    pub state: String,
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
    /// The box's account in the cooperative's backup store (cooperatives without one, and
    /// older ones, send none).
    #[serde(default)]
    store: Option<StoreAccount>,
}

/// The cooperative's backup store as the enrolment's answer gives it.
#[derive(Deserialize)]
struct StoreAccount {
    repository: String,
    user: String,
    password: String,
}

impl std::fmt::Debug for StoreAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreAccount({}, {}, ***)", self.repository, self.user)
    }
}

/// `user:password` into `path`, 0600 from its first byte, replacing the file whole.
fn write_credentials(path: &Path, account: &StoreAccount) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let fine = |s: &str| !s.is_empty() && !s.contains(['\n', '\r']);
    if !fine(&account.user) || account.user.contains(':') || !fine(&account.password) {
        bail!("the cooperative's answer: store: not a user and a password");
    }
    if !account.repository.starts_with("rest:") {
        bail!(
            "the cooperative's answer: store: {:?} is not a REST repository",
            account.repository
        );
    }
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("{}", tmp.display()))?;
    f.write_all(format!("{}:{}\n", account.user, account.password).as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("{}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

/// Enrols this box with the cooperative at `api` (its control listener, `https://host:port`):
/// makes the key if there is none, claims `label`, writes `config_path` (and, when the
/// cooperative gives the box a backup store, its account into [`store_credentials`]). Returns
/// the name.
pub async fn enrol(
    api: &str,
    token: &str,
    label: &str,
    ca: Option<&Path>,
    key_path: &Path,
    config_path: &Path,
) -> anyhow::Result<String> {
    let key = BoxKey::load_or_create(key_path)?;
    let client = api_client(ca, Duration::from_secs(30))?;
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
    // The account first: once relay.toml names the repository, its account is there.
    let credentials = store_credentials(config_path);
    match &answer.store {
        Some(account) => write_credentials(&credentials, account)?,
        None => match std::fs::remove_file(&credentials) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("{}", credentials.display())),
        },
    }
    let config = RelayConfig {
        name: answer.name.clone(),
        edge: answer.tunnel,
        ca: ca.map(Path::to_path_buf),
        key: key_path.to_path_buf(),
        https_target: default_https_target(),
        http_target: default_http_target(),
        status: default_status(),
        api: Some(api.trim_end_matches('/').to_owned()),
        check: default_check(),
        certificate: default_certificate(),
        backup_repository: answer.store.map(|s| s.repository),
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
            api: None,
            check: default_check(),
            certificate: default_certificate(),
            backup_repository: Some("rest:https://backup.coop.test/nord/".into()),
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
        let up = Status::Connected {
            edge: "10.0.0.1:7443".into(),
            since: 7,
        };
        let mut edges = fleet::EdgeStates::new();
        edges.insert("10.0.0.1:7443".parse().unwrap(), up.clone());
        edges.insert(
            "10.0.0.2:7443".parse().unwrap(),
            Status::Connecting {
                attempt: 2,
                last_error: Some("connect to 10.0.0.2:7443: refused".into()),
            },
        );
        write_status(&path, "nord.coop.test", &up, &edges).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"name": "nord.coop.test", "state": "connected", "edge": "10.0.0.1:7443", "since": 7,
            "edges": [
                {"address": "10.0.0.1:7443", "state": "connected", "edge": "10.0.0.1:7443", "since": 7},
                {"address": "10.0.0.2:7443", "state": "connecting", "attempt": 2, "last_error": "connect to 10.0.0.2:7443: refused"},
            ]})
        );
        let t = read_status(&path).unwrap();
        assert!(t.connected());
        assert_eq!(t.edges.len(), 2);
        assert_eq!(t.edges[1].state, "connecting");
    }

    /// A CA and a certificate it issued for `names`: (CA PEM, certificate PEM, key DER, key PEM).
    fn issue(names: &[&str]) -> (String, String, Vec<u8>, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (
            ca.pem(),
            cert.pem(),
            key.serialize_der(),
            key.serialize_pem(),
        )
    }

    /// The box's nginx and Synapse, as far as the check sees them: the PROXY v2 header the edge
    /// sends first, TLS for the box's name, `/_matrix/client/versions` (or a 502 while `down`).
    async fn matrix_listener(
        cert_pem: &str,
        key_der: Vec<u8>,
        down: Arc<std::sync::atomic::AtomicBool>,
    ) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .map(Result::unwrap)
                .collect();
        let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            certs,
            rustls::pki_types::PrivateKeyDer::Pkcs8(key_der.into()),
        )
        .unwrap();
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let (acceptor, down) = (acceptor.clone(), down.clone());
                tokio::spawn(async move {
                    // PROXY v2: 12-byte signature, version/command, family, length, addresses.
                    let mut head = [0u8; 16];
                    if s.read_exact(&mut head).await.is_err() || &head[..4] != b"\r\n\r\n" {
                        return;
                    }
                    let mut rest = vec![0u8; u16::from_be_bytes([head[14], head[15]]) as usize];
                    if s.read_exact(&mut rest).await.is_err() {
                        return;
                    }
                    let Ok(mut tls) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut req = [0u8; 2048];
                    let _ = tls.read(&mut req).await;
                    let resp = if down.load(std::sync::atomic::Ordering::SeqCst) {
                        "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n".to_string()
                    } else {
                        let body = r#"{"versions":["v1.12"]}"#;
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                    };
                    let _ = tls.write_all(resp.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        addr
    }

    async fn wait_check(path: &Path, f: impl Fn(&OutsideCheck) -> bool) -> OutsideCheck {
        for _ in 0..300 {
            if let Ok(Some(c)) = read_check(path) {
                if f(&c) {
                    return c;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "no such check in {}: {:?}",
            path.display(),
            read_check(path)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_box_asks_the_cooperative_to_look_from_outside_and_keeps_the_answer_for_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // The cooperative's control name and the box's name, each from its own CA.
        let (coop_ca, coop_cert, _, coop_key) = issue(&["localhost"]);
        let (box_ca, box_cert, box_key, _) = issue(&["nord.coop.test"]);
        std::fs::write(d.join("coop-ca.pem"), &coop_ca).unwrap();
        std::fs::write(d.join("coop-cert.pem"), &coop_cert).unwrap();
        std::fs::write(d.join("coop-key.pem"), coop_key).unwrap();
        std::fs::write(d.join("box-ca.pem"), &box_ca).unwrap();
        // The edge's 443 must be known before the cooperative starts: the check connects there
        // (in a deployment: wherever the name resolves), and through the tunnel to the box.
        let https = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut coop_config = cooperative::Config {
            domain: "coop.test".into(),
            database: d.join("coop.sqlite3"),
            ..Default::default()
        };
        coop_config.edge.https_listen = https;
        coop_config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
        coop_config.control.listen = "127.0.0.1:0".parse().unwrap();
        coop_config.site.listen = "127.0.0.1:0".parse().unwrap();
        coop_config.control.name = "localhost".into();
        coop_config.control.cert = d.join("coop-cert.pem");
        coop_config.control.key = d.join("coop-key.pem");
        coop_config.check.ca_file = Some(d.join("box-ca.pem"));
        coop_config.check.connect = Some(https);
        coop_config.check.min_interval_s = 1;
        let coop = cooperative::start(&coop_config).await.unwrap();

        let token = coop.store.issue_token("Familie Nord").unwrap();
        let api = format!("https://localhost:{}", coop.control.port());
        let name = enrol(
            &api,
            &token,
            "nord",
            Some(&d.join("coop-ca.pem")),
            &d.join("tunnel.key"),
            &d.join("relay.toml"),
        )
        .await
        .unwrap();
        assert_eq!(name, "nord.coop.test");
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut config = RelayConfig::load(&d.join("relay.toml")).unwrap();
        assert_eq!(config.api_url(), api, "enrolment remembers the API");
        config.https_target = matrix_listener(&box_cert, box_key, down.clone()).await;
        config.status = d.join("status.json");
        config.check = d.join("check.json");
        config.certificate = d.join("fullchain.pem");
        std::fs::write(&config.certificate, &box_cert).unwrap();
        let times = Timing {
            reresolve: Duration::from_secs(60),
            every_ok: Duration::from_secs(3600),
            failed_first: Duration::from_millis(300),
            failed_max: Duration::from_secs(1),
            settle: Duration::from_millis(200),
            tick: Duration::from_millis(100),
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_until(
            config.clone(),
            times,
            fleet::system_resolver(),
            stop.clone(),
        ));

        // Up: the cooperative went round through the edge and the tunnel, as a phone would.
        let ok = wait_check(&config.check, |c| c.report.is_some()).await;
        let report = ok.report.clone().unwrap();
        assert!(ok.reachable(), "{ok:?}");
        assert_eq!(report.name, "nord.coop.test");
        assert_eq!(report.addresses, vec!["127.0.0.1".to_string()]);
        assert!(report.tls_not_after.unwrap() > report.checked_at);
        assert!(read_status(&config.status).unwrap().connected());

        // Synapse stops answering; a new certificate makes the box ask again at once (not in
        // an hour): the page learns what a phone would meet, and the box keeps asking sooner.
        down.store(true, std::sync::atomic::Ordering::SeqCst);
        std::fs::File::options()
            .write(true)
            .open(&config.certificate)
            .unwrap()
            .set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        let bad = wait_check(&config.check, |c| {
            c.asked_at >= ok.asked_at && !c.reachable()
        })
        .await;
        let report = bad.report.clone().unwrap();
        assert!(
            report.resolves && report.tls_ok && !report.matrix_ok,
            "{bad:?}"
        );
        assert!(
            report
                .error
                .as_deref()
                .unwrap()
                .contains("does not answer /_matrix/client/versions"),
            "{bad:?}"
        );
        // Back: the next (sooner) check sees it.
        down.store(false, std::sync::atomic::Ordering::SeqCst);
        let again = wait_check(&config.check, |c| c.reachable()).await;
        assert!(again.asked_at >= bad.asked_at);

        // The cooperative gone: the tunnel is down, nobody is asked; the last answer stays with
        // its time for the page (which shows the tunnel's state beside it).
        coop.stop().await;
        for _ in 0..100 {
            if !read_status(&config.status).unwrap().connected() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!read_status(&config.status).unwrap().connected());
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(read_check(&config.check).unwrap(), Some(again));
        stop.cancel();
        task.await.unwrap().unwrap();
    }

    /// A phone at `edge` (an edge's 443) asking for `name`'s Matrix versions, trusting `ca`.
    async fn phone(edge: SocketAddr, name: &str, ca: &str) -> Result<String, String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(edge)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    async fn until<F: std::future::Future<Output = bool>>(what: &str, f: impl Fn() -> F) {
        for _ in 0..200 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never: {what}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_box_keeps_a_tunnel_to_every_edge_in_dns_so_any_edge_reaches_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (coop_ca, coop_cert, _, coop_key) = issue(&["localhost"]);
        let (box_ca, box_cert, box_key, _) = issue(&["nord.coop.test"]);
        std::fs::write(d.join("coop-ca.pem"), &coop_ca).unwrap();
        std::fs::write(d.join("coop-cert.pem"), &coop_cert).unwrap();
        std::fs::write(d.join("coop-key.pem"), coop_key).unwrap();
        // Edges share one name table (SQLite here; PostgreSQL in a deployment: the
        // cooperative's own tests run both) and one control name, each on its own address.
        let edge = || {
            let mut c = cooperative::Config {
                domain: "coop.test".into(),
                database: d.join("coop.sqlite3"),
                ..Default::default()
            };
            c.edge.https_listen = "127.0.0.1:0".parse().unwrap();
            c.edge.http_listen = "127.0.0.1:0".parse().unwrap();
            c.control.listen = "127.0.0.1:0".parse().unwrap();
            c.site.listen = "127.0.0.1:0".parse().unwrap();
            c.control.name = "localhost".into();
            c.control.cert = d.join("coop-cert.pem");
            c.control.key = d.join("coop-key.pem");
            c
        };
        let a = cooperative::start(&edge()).await.unwrap();
        let b = cooperative::start(&edge()).await.unwrap();
        let token = a.store.issue_token("Familie Nord").unwrap();
        enrol(
            &format!("https://localhost:{}", a.control.port()),
            &token,
            "nord",
            Some(&d.join("coop-ca.pem")),
            &d.join("tunnel.key"),
            &d.join("relay.toml"),
        )
        .await
        .unwrap();
        let mut config = RelayConfig::load(&d.join("relay.toml")).unwrap();
        config.https_target = matrix_listener(&box_cert, box_key, Default::default()).await;
        config.status = d.join("status.json");
        config.check = d.join("check.json");
        config.certificate = d.join("fullchain.pem");
        // The edges' name in DNS: a and b.
        let dns = Arc::new(std::sync::Mutex::new(vec![a.control, b.control]));
        let lookup = dns.clone();
        let resolver: fleet::Resolver = Arc::new(move |_, _| {
            let v = lookup.lock().unwrap().clone();
            Box::pin(async move { Ok(v) })
        });
        let times = Timing {
            reresolve: Duration::from_millis(200),
            ..Timing::default()
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(run_until(config.clone(), times, resolver, stop.clone()));
        let name = "nord.coop.test";
        let status = || {
            read_status(&config.status).unwrap_or_else(|_| TunnelState {
                name: String::new(),
                state: String::new(),
                edge: None,
                since: None,
                last_error: None,
                reason: None,
                edges: Vec::new(),
            })
        };
        until("both edges hold the tunnel", || async {
            a.registry.get(name).is_some() && b.registry.get(name).is_some()
        })
        .await;
        // A phone reaching either edge gets the box, with the box's own certificate.
        for e in [&a, &b] {
            let answer = phone(e.https, name, &box_ca).await.unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        until("the status file lists both", || async {
            let s = status();
            s.edges.len() == 2 && s.edges.iter().all(|e| e.state == "connected")
        })
        .await;
        assert!(status().connected());

        // Edge a goes down: the box is still reachable through b, and says which edge is gone.
        a.stop().await;
        until("a's tunnel is seen lost", || async {
            status().edges.iter().any(|e| e.state == "connecting")
        })
        .await;
        assert!(status().connected());
        assert!(phone(b.https, name, &box_ca)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200"));

        // The cooperative takes a out of DNS and adds c: the box follows.
        let c = cooperative::start(&edge()).await.unwrap();
        *dns.lock().unwrap() = vec![b.control, c.control];
        until("c holds the tunnel", || async {
            c.registry.get(name).is_some()
        })
        .await;
        until("the status file follows DNS", || async {
            let s = status();
            let mut got: Vec<String> = s.edges.iter().map(|e| e.address.clone()).collect();
            got.sort();
            let mut want = vec![b.control.to_string(), c.control.to_string()];
            want.sort();
            got == want && s.edges.iter().all(|e| e.state == "connected")
        })
        .await;
        assert!(phone(c.https, name, &box_ca)
            .await
            .unwrap()
            .starts_with("HTTP/1.1 200"));
        stop.cancel();
        task.await.unwrap().unwrap();
        b.stop().await;
        c.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn enrolment_keeps_the_store_account_and_the_backup_goes_there_unless_configured() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (coop_ca, coop_cert, _, coop_key) = issue(&["localhost"]);
        std::fs::write(d.join("coop-ca.pem"), &coop_ca).unwrap();
        std::fs::write(d.join("coop-cert.pem"), &coop_cert).unwrap();
        std::fs::write(d.join("coop-key.pem"), coop_key).unwrap();
        let mut c = cooperative::Config {
            domain: "coop.test".into(),
            database: d.join("coop.sqlite3"),
            store: Some(cooperative::config::StoreConfig {
                url: "https://backup.coop.test/".into(),
                htpasswd: d.join("htpasswd"),
            }),
            ..Default::default()
        };
        c.edge.https_listen = "127.0.0.1:0".parse().unwrap();
        c.edge.http_listen = "127.0.0.1:0".parse().unwrap();
        c.control.listen = "127.0.0.1:0".parse().unwrap();
        c.site.listen = "127.0.0.1:0".parse().unwrap();
        c.control.name = "localhost".into();
        c.control.cert = d.join("coop-cert.pem");
        c.control.key = d.join("coop-key.pem");
        let coop = cooperative::start(&c).await.unwrap();
        let api = format!("https://localhost:{}", coop.control.port());
        let box_dir = d.join("box");
        std::fs::create_dir(&box_dir).unwrap();
        let relay_toml = box_dir.join("relay.toml");
        let enrol_as_nord = |token: String| {
            let (api, ca, key, relay_toml) = (
                api.clone(),
                d.join("coop-ca.pem"),
                box_dir.join("tunnel.key"),
                relay_toml.clone(),
            );
            async move {
                enrol(&api, &token, "nord", Some(&ca), &key, &relay_toml)
                    .await
                    .unwrap()
            }
        };
        let token = coop.store.issue_token("Familie Nord").unwrap();
        assert_eq!(enrol_as_nord(token.clone()).await, "nord.coop.test");

        // The account: `user:password` on one line, 0600, beside relay.toml; the repository
        // in relay.toml.
        let credentials = store_credentials(&relay_toml);
        assert_eq!(credentials, box_dir.join("backup-store"));
        assert_eq!(
            store_credentials(Path::new(DEFAULT_CONFIG)),
            Path::new(DEFAULT_STORE_CREDENTIALS)
        );
        let meta = std::fs::metadata(&credentials).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let text = std::fs::read_to_string(&credentials).unwrap();
        let (user, password) = text.strip_suffix('\n').unwrap().split_once(':').unwrap();
        assert_eq!(user, "nord");
        assert!(
            password.len() >= 32 && !password.contains(['\n', ':']),
            "{text}"
        );
        let htpasswd = std::fs::read_to_string(d.join("htpasswd")).unwrap();
        assert!(htpasswd.starts_with("nord:$2b$") && !htpasswd.contains(password));
        let relay = RelayConfig::load(&relay_toml).unwrap();
        assert_eq!(
            relay.backup_repository.as_deref(),
            Some("rest:https://backup.coop.test/nord/")
        );
        assert!(std::fs::read_to_string(&relay_toml)
            .unwrap()
            .contains("backup_repository = \"rest:https://backup.coop.test/nord/\""));

        // hearth-backup.service's targets: the enrolled store, with its account and the CA the
        // box trusts for the cooperative.
        let supervisor_toml = |backup: &str| {
            format!(
                "[name]\nrelay_config = \"{}\"\n[backup]\nusb_repository = \"{}\"\n{backup}",
                relay_toml.display(),
                d.join("usb/hearth").display()
            )
        };
        let config = crate::config::Config::parse("supervisor.toml", &supervisor_toml("")).unwrap();
        let targets = crate::backup::run::targets(&config.backup);
        let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
        assert_eq!(names, ["usb", "cooperative"]);
        let coop_target = &targets[1];
        assert!(coop_target.present);
        assert_eq!(
            coop_target.repo.location,
            "rest:https://backup.coop.test/nord/"
        );
        assert_eq!(
            coop_target.repo.credentials_file.as_deref(),
            Some(credentials.as_path())
        );
        assert_eq!(
            coop_target.repo.ca_file.as_deref(),
            Some(d.join("coop-ca.pem").as_path())
        );
        assert_eq!(coop_target.repo.key_file, config.backup.key_file);

        // A configured store wins over the enrolled one.
        let config = crate::config::Config::parse(
            "supervisor.toml",
            &supervisor_toml(
                "cooperative_repository = \"rest:https://other.example/family/\"\n\
                 cooperative_credentials_file = \"/etc/hearth/backup/other\"\n",
            ),
        )
        .unwrap();
        let targets = crate::backup::run::targets(&config.backup);
        assert_eq!(targets.len(), 2);
        assert_eq!(
            targets[1].repo.location,
            "rest:https://other.example/family/"
        );
        assert_eq!(
            targets[1].repo.credentials_file.as_deref(),
            Some(Path::new("/etc/hearth/backup/other"))
        );
        assert_eq!(targets[1].repo.ca_file, None);

        // Enrolled again: a new password replaces the file whole, still 0600.
        enrol_as_nord(token).await;
        let again = std::fs::read_to_string(&credentials).unwrap();
        assert!(again.starts_with("nord:") && again != text, "{again}");
        let meta = std::fs::metadata(&credentials).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        coop.stop().await;

        // Not enrolled: no cooperative target (without a configured one).
        std::fs::remove_file(&relay_toml).unwrap();
        let config = crate::config::Config::parse("supervisor.toml", &supervisor_toml("")).unwrap();
        let names: Vec<&str> = crate::backup::run::targets(&config.backup)
            .iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["usb"]);
    }

    #[test]
    fn a_failing_check_is_asked_again_sooner_and_sooner_up_to_a_limit() {
        let t = Timing::default();
        assert_eq!(t.next_after(true, 0), Duration::from_secs(900));
        assert_eq!(t.next_after(false, 1), Duration::from_secs(30));
        assert_eq!(t.next_after(false, 2), Duration::from_secs(60));
        assert_eq!(t.next_after(false, 4), Duration::from_secs(240));
        assert_eq!(t.next_after(false, 5), Duration::from_secs(480));
        assert_eq!(t.next_after(false, 6), Duration::from_secs(600));
        assert_eq!(t.next_after(false, 60), Duration::from_secs(600));
    }
}
