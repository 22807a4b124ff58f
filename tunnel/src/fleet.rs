//! Several edges: a cooperative runs its edges behind one name in DNS (ARCHITECTURE.md, "The
//! relay"). The box keeps a tunnel to every address that name resolves to, so whichever edge a
//! phone reaches holds a tunnel to the box and no edge has to know where another's boxes are.
//! The name is looked up again every `reresolve`: an edge added to DNS gets a tunnel, one taken
//! out loses it. A failed lookup keeps the tunnels there are.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::client::{self, Config, Status};
use crate::key::BoxKey;

/// Looks up `host:port`.
pub type Resolver = Arc<
    dyn Fn(String, u16) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<SocketAddr>>> + Send>>
        + Send
        + Sync,
>;

/// The system's resolver (getaddrinfo through tokio).
pub fn system_resolver() -> Resolver {
    Arc::new(|host, port| {
        Box::pin(async move {
            Ok(tokio::net::lookup_host((host.as_str(), port))
                .await?
                .collect())
        })
    })
}

/// Each edge's state, by address.
pub type EdgeStates = BTreeMap<SocketAddr, Status>;

/// The box's state over all its edges: connected when any tunnel is up (a phone reaching
/// another edge still gets through once that one's tunnel is back); refused when none is up
/// and an edge said no (they share one name table); else connecting, or starting.
pub fn combine(edges: &EdgeStates) -> Status {
    let up: Vec<(&str, u64)> = edges
        .values()
        .filter_map(|s| match s {
            Status::Connected { edge, since } => Some((edge.as_str(), *since)),
            _ => None,
        })
        .collect();
    if !up.is_empty() {
        return Status::Connected {
            edge: up.iter().map(|(e, _)| *e).collect::<Vec<_>>().join(", "),
            since: up.iter().map(|(_, s)| *s).min().unwrap_or(0),
        };
    }
    if let Some(reason) = edges.values().find_map(|s| match s {
        Status::Refused { reason } => Some(reason.clone()),
        _ => None,
    }) {
        return Status::Refused { reason };
    }
    let connecting: Vec<(u32, Option<&String>)> = edges
        .values()
        .filter_map(|s| match s {
            Status::Connecting {
                attempt,
                last_error,
            } => Some((*attempt, last_error.as_ref())),
            _ => None,
        })
        .collect();
    if connecting.is_empty() {
        return Status::Starting;
    }
    Status::Connecting {
        attempt: connecting.iter().map(|(a, _)| *a).max().unwrap_or(0),
        last_error: connecting.iter().find_map(|(_, e)| e.cloned()),
    }
}

struct Edge {
    status: watch::Receiver<Status>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// Keeps a tunnel to each of `cfg.edge`'s addresses until `cancel`; the combined state in
/// `status`, each edge's in `edges`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: Config,
    resolver: Resolver,
    reresolve: Duration,
    key: Arc<BoxKey>,
    tls: Arc<rustls::ClientConfig>,
    status: watch::Sender<Status>,
    edges: watch::Sender<EdgeStates>,
    cancel: CancellationToken,
) {
    let (host, port) = match cfg.edge.rsplit_once(':').and_then(|(h, p)| {
        Some((
            h.trim_matches(['[', ']']).to_owned(),
            p.parse::<u16>().ok()?,
        ))
    }) {
        Some(hp) => hp,
        None => {
            status.send_replace(Status::Connecting {
                attempt: 0,
                last_error: Some(format!("{}: not HOST:PORT", cfg.edge)),
            });
            return cancel.cancelled().await;
        }
    };
    let changed = Arc::new(Notify::new());
    let mut running: BTreeMap<SocketAddr, Edge> = BTreeMap::new();
    let mut lookup_error: Option<String> = None;
    let mut tick = tokio::time::interval(reresolve);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                match tokio::time::timeout(Duration::from_secs(10), resolver(host.clone(), port)).await {
                    Ok(Ok(mut addrs)) if !addrs.is_empty() => {
                        addrs.sort();
                        addrs.dedup();
                        lookup_error = None;
                        failures = 0;
                        running.retain(|addr, e| {
                            let keep = addrs.contains(addr);
                            if !keep {
                                tracing::info!(edge = %addr, "no longer in DNS: tunnel closed");
                                e.cancel.cancel();
                                e.task.abort();
                            }
                            keep
                        });
                        for addr in addrs {
                            running.entry(addr).or_insert_with(|| {
                                start(&cfg, addr, &key, &tls, &changed, &cancel)
                            });
                        }
                    }
                    outcome => {
                        let why = match outcome {
                            Ok(Ok(_)) => "no address".to_owned(),
                            Ok(Err(e)) => e.to_string(),
                            Err(_) => "no DNS answer within 10 s".to_owned(),
                        };
                        tracing::info!(host = %host, error = %why, "cannot look up the edges");
                        lookup_error = Some(format!("{host}: {why}"));
                        failures += 1;
                        // Without any tunnel, look again soon (1, 2, 4 … s up to `reresolve`).
                        if running.is_empty() {
                            let soon = Duration::from_secs(1 << failures.min(6)).min(reresolve);
                            tick.reset_after(soon);
                        }
                    }
                }
            }
            _ = changed.notified() => {}
        }
        let states: EdgeStates = running
            .iter()
            .map(|(a, e)| (*a, e.status.borrow().clone()))
            .collect();
        let combined = match (&lookup_error, states.is_empty()) {
            (Some(e), true) => Status::Connecting {
                attempt: failures,
                last_error: Some(e.clone()),
            },
            _ => combine(&states),
        };
        status.send_if_modified(|s| {
            let differs = *s != combined;
            *s = combined;
            differs
        });
        edges.send_if_modified(|s| {
            let differs = *s != states;
            *s = states;
            differs
        });
    }
    for e in running.into_values() {
        e.cancel.cancel();
        let _ = e.task.await;
    }
}

fn start(
    cfg: &Config,
    addr: SocketAddr,
    key: &Arc<BoxKey>,
    tls: &Arc<rustls::ClientConfig>,
    changed: &Arc<Notify>,
    cancel: &CancellationToken,
) -> Edge {
    tracing::info!(edge = %addr, "an edge: dialling");
    let (tx, rx) = watch::channel(Status::Starting);
    let cancel = cancel.child_token();
    let cfg = Config {
        edge: addr.to_string(),
        ..cfg.clone()
    };
    let mut watch_rx = rx.clone();
    let notify = changed.clone();
    let client_cancel = cancel.clone();
    let (key, tls) = (key.clone(), tls.clone());
    let task = tokio::spawn(async move {
        let client = client::run(cfg, key, tls, tx, client_cancel);
        let forward = async {
            while watch_rx.changed().await.is_ok() {
                notify.notify_one();
            }
        };
        tokio::join!(client, forward);
    });
    changed.notify_one();
    Edge {
        status: rx,
        cancel,
        task,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 7443))
    }

    #[test]
    fn one_tunnel_up_is_enough_and_a_refusal_is_said_when_none_is() {
        let mut e = EdgeStates::new();
        assert_eq!(combine(&e), Status::Starting);
        e.insert(
            a(1),
            Status::Connecting {
                attempt: 3,
                last_error: Some("connect to 192.0.2.1:7443: refused".into()),
            },
        );
        e.insert(a(2), Status::Starting);
        assert_eq!(
            combine(&e),
            Status::Connecting {
                attempt: 3,
                last_error: Some("connect to 192.0.2.1:7443: refused".into())
            }
        );
        e.insert(
            a(2),
            Status::Connected {
                edge: "192.0.2.2:7443".into(),
                since: 20,
            },
        );
        assert_eq!(
            combine(&e),
            Status::Connected {
                edge: "192.0.2.2:7443".into(),
                since: 20
            }
        );
        e.insert(
            a(1),
            Status::Connected {
                edge: "192.0.2.1:7443".into(),
                since: 30,
            },
        );
        assert_eq!(
            combine(&e),
            Status::Connected {
                edge: "192.0.2.1:7443, 192.0.2.2:7443".into(),
                since: 20
            }
        );
        let mut r = EdgeStates::new();
        r.insert(
            a(1),
            Status::Refused {
                reason: "not enrolled".into(),
            },
        );
        r.insert(
            a(2),
            Status::Connecting {
                attempt: 1,
                last_error: None,
            },
        );
        assert_eq!(
            combine(&r),
            Status::Refused {
                reason: "not enrolled".into()
            }
        );
    }
}
