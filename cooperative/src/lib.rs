//! The cooperative's services for hearth boxes (cooperative/README.md, ARCHITECTURE.md):
//! this relay — the edge that routes connections for `<name>.<domain>` by SNI into the
//! box's own tunnel without terminating TLS — and its control plane (enrolment).

pub mod api;
pub mod config;
pub mod control;
pub mod edge;
pub mod registry;
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

/// Binds every listener and starts serving.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    let store = store::Store::open(&config.database, &config.domain)
        .map_err(|e| anyhow::anyhow!("{}: {e}", config.database.display()))?;
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
    let registry = registry::Registry::default();
    let control_port = config
        .control
        .public_port
        .unwrap_or(ctl.local_addr()?.port());
    let api = api::router(api::Api {
        store: store.clone(),
        registry: registry.clone(),
        tunnel_endpoint: format!("{}:{control_port}", config.control.name),
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
    running
        .tasks
        .spawn(control::serve(ctl, Arc::new(tls), control, stop));
    Ok(running)
}
