//! Probes of Synapse over its loopback HTTP listener, and the admin-API calls the supervisor
//! makes on its own behalf (server notices).
//!
//! - liveness: `GET /health` answers `OK` (Synapse answers it without touching the database);
//! - database: an admin-API read (`GET /_synapse/admin/v2/users?limit=1`) with the supervisor's
//!   own admin token, which does touch the database.

use super::machine::Probe;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Synapse {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
    token: Option<String>,
}

impl Synapse {
    pub fn new(base: &str, timeout: Duration, token: Option<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        Self {
            client,
            base: base.trim_end_matches('/').to_string(),
            timeout,
            token,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /health`.
    pub async fn liveness(&self) -> Probe {
        let t0 = Instant::now();
        let res = self
            .client
            .get(format!("{}/health", self.base))
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(body) if body.trim() == "OK" => Probe::Answered {
                    latency: t0.elapsed(),
                },
                Ok(body) => Probe::Missed {
                    reason: format!(
                        "/health said {:?}",
                        body.chars().take(40).collect::<String>()
                    ),
                },
                Err(e) => Probe::Missed {
                    reason: describe(&e, self.timeout),
                },
            },
            Ok(r) => Probe::Missed {
                reason: format!("/health answered HTTP {}", r.status().as_u16()),
            },
            Err(e) => Probe::Missed {
                reason: describe(&e, self.timeout),
            },
        }
    }

    /// An admin-API read that touches the database; `None` without a token.
    pub async fn database(&self) -> Option<Probe> {
        let token = self.token.as_ref()?;
        let t0 = Instant::now();
        let res = self
            .client
            .get(format!("{}/_synapse/admin/v2/users?limit=1", self.base))
            .bearer_auth(token)
            .send()
            .await;
        Some(match res {
            Ok(r) if r.status().is_success() => Probe::Answered {
                latency: t0.elapsed(),
            },
            Ok(r) => Probe::Missed {
                reason: format!("admin API answered HTTP {}", r.status().as_u16()),
            },
            Err(e) => Probe::Missed {
                reason: describe(&e, self.timeout),
            },
        })
    }

    /// Send a server notice to every server admin. Returns how many were notified.
    pub async fn notify_admins(&self, body: &str) -> Result<usize, String> {
        let token = self.token.as_ref().ok_or("no admin token")?;
        let list: serde_json::Value = self
            .client
            .get(format!(
                "{}/_synapse/admin/v2/users?admins=true&deactivated=false&limit=100",
                self.base
            ))
            .bearer_auth(token)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let admins: Vec<String> = list["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for user in admins {
            let res = self
                .client
                .post(format!(
                    "{}/_synapse/admin/v1/send_server_notice",
                    self.base
                ))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "user_id": user,
                    "content": {"msgtype": "m.text", "body": body},
                }))
                .send()
                .await
                .and_then(|r| r.error_for_status());
            match res {
                Ok(_) => sent += 1,
                Err(e) => tracing::warn!(%user, "server notice not sent: {e}"),
            }
        }
        Ok(sent)
    }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no answer within {} ms", timeout.as_millis())
    } else if e.is_connect() {
        "connection refused".into()
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;

    async fn serve(app: Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn liveness_answers_misses_and_times_out() {
        let base = serve(
            Router::new()
                .route("/health", get(|| async { "OK" }))
                .route(
                    "/slow/health",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "OK"
                    }),
                )
                .route(
                    "/bad/health",
                    get(|| async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "no") }),
                ),
        )
        .await;
        let t = Duration::from_millis(300);
        assert!(matches!(
            Synapse::new(&base, t, None).liveness().await,
            Probe::Answered { .. }
        ));
        match Synapse::new(&format!("{base}/slow"), t, None)
            .liveness()
            .await
        {
            Probe::Missed { reason } => {
                assert!(reason.contains("no answer within 300 ms"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match Synapse::new(&format!("{base}/bad"), t, None)
            .liveness()
            .await
        {
            Probe::Missed { reason } => assert!(reason.contains("503"), "{reason}"),
            other => panic!("{other:?}"),
        }
        // Nothing listening.
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        match Synapse::new(&format!("http://{free}"), t, None)
            .liveness()
            .await
        {
            Probe::Missed { reason } => assert_eq!(reason, "connection refused"),
            other => panic!("{other:?}"),
        }
        // No token, no database probe.
        assert_eq!(Synapse::new(&base, t, None).database().await, None);
    }
}
