//! The cooperative's services for hearth boxes (cooperative/README.md, ARCHITECTURE.md):
//! this relay — the edge that routes connections for `<name>.<domain>` by SNI into the
//! box's own tunnel without terminating TLS — and its control plane (enrolment).

pub mod aggregates;
pub mod api;
pub mod backup_store;
pub mod check;
pub mod collector;
pub mod config;
pub mod control;
pub mod edge;
pub mod ledger;
pub mod registry;
pub mod site;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// A running cooperative: its bound addresses (port 0 in a config becomes a real port).
pub struct Running {
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub control: SocketAddr,
    pub site: SocketAddr,
    pub registry: registry::Registry,
    pub store: store::Store,
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl Running {
    /// Stops listening and closes every tunnel, as the process's end would.
    pub async fn stop(self) {
        self.stop.cancel();
        self.registry.close_all();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The CAs the outside-in check trusts: `ca_file` only, or Debian's bundle of public CAs.
fn check_tls(ca_file: Option<&std::path::Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let path = ca_file.unwrap_or(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    {
        let cert = cert.map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "{}: no CA certificate in it",
        path.display()
    );
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// Binds every listener and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    // An `OpenError` as it is: `hearth-coop` names the config file in front of it.
    let store = store::Store::open(&config.database, &config.domain)?;
    let read =
        |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    let tls = control::tls_config(&read(&config.control.cert)?, &read(&config.control.key)?)
        .map_err(|e| {
            anyhow::anyhow!(
                "{} / {}: {e}",
                config.control.cert.display(),
                config.control.key.display()
            )
        })?;
    let bind = |a: SocketAddr| async move {
        TcpListener::bind(a)
            .await
            .map_err(|e| anyhow::anyhow!("listen on {a}: {e}"))
    };
    let (https, http, ctl) = (
        bind(config.edge.https_listen).await?,
        bind(config.edge.http_listen).await?,
        bind(config.control.listen).await?,
    );
    let site_listener = bind(config.site.listen).await?;
    let backup_store = match &config.store {
        None => None,
        Some(s) => {
            let accounts = backup_store::Accounts::new(s);
            accounts.prepare()?;
            Some(Arc::new(accounts))
        }
    };
    let registry = registry::Registry::default();
    let control_port = config
        .control
        .public_port
        .unwrap_or(ctl.local_addr()?.port());
    let api = api::router(api::Api {
        store: store.clone(),
        registry: registry.clone(),
        tunnel_endpoint: format!("{}:{control_port}", config.control.name),
        prober: Arc::new(check::Prober {
            tls: check_tls(config.check.ca_file.as_deref())?,
            connect: config.check.connect,
            port: config.check.port,
        }),
        min_interval: Duration::from_secs(config.check.min_interval_s),
        collector: Arc::new(collector::Collector {
            keys: collector::Keys::load(&config.reports.key)?,
            tokens_per_box: config.reports.tokens_per_box,
        }),
        backup_store,
    });
    let control = Arc::new(control::Control {
        store: store.clone(),
        registry: registry.clone(),
        api,
        idle: Duration::from_secs(config.control.idle_timeout_s),
    });
    let running = Running {
        https: https.local_addr()?,
        http: http.local_addr()?,
        control: ctl.local_addr()?,
        site: site_listener.local_addr()?,
        registry: registry.clone(),
        store,
        tasks: TaskTracker::new(),
        stop: CancellationToken::new(),
    };
    let stop = running.stop.clone();
    running.tasks.spawn(edge::serve(
        https,
        edge::Door::Https,
        registry.clone(),
        stop.clone(),
    ));
    running.tasks.spawn(edge::serve(
        http,
        edge::Door::Http,
        registry.clone(),
        stop.clone(),
    ));
    running.tasks.spawn(site::serve(
        site_listener,
        site::Site {
            store: running.store.clone(),
            ledger: config.site.ledger.clone(),
            pages_dir: config.site.pages_dir.clone(),
            k: config.reports.k,
            name: config.site.name.clone(),
            base_url: config.site.base_url.clone(),
        },
        stop.clone(),
    ));
    running
        .tasks
        .spawn(control::serve(ctl, Arc::new(tls), control, stop));
    Ok(running)
}
