//! Synapse's HTTP API, spoken from this one module: the health probe (`health::probe`), the
//! member directory (`accounting::directory::sync`), the page's account calls
//! (`invite::synapse`) and sign-in (`http::signin`) each say *what* to ask; how a request is
//! made, with which client, timeout and token, and how a failure to reach Synapse is worded,
//! is decided here once. The admin-token calls and their audit rules are listed in
//! `health::probe::TOKEN_USES`; `tests/architecture.rs` keeps reqwest out of those modules.

use serde_json::Value;
use std::time::Duration;

/// One Synapse, by its base URL (loopback: no proxy is ever asked).
#[derive(Clone, Debug)]
pub struct SynapseApi {
    client: reqwest::Client,
    base: String,
    timeout: Duration,
}

/// A request that got no answer: Synapse was not reached, did not answer in time, or its
/// answer could not be read. Worded for the log and the page's health reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unreached(pub String);

/// What Synapse answered: its status and body (empty when the body could not be read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// The token was refused (not a valid token, or not a server admin's).
    pub fn refused_token(&self) -> bool {
        matches!(self.status, 401 | 403)
    }
}

/// The HTTP methods hearth uses with Synapse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SynapseApi {
    /// `timeout` bounds the connection and the whole request.
    pub fn new(base: &str, timeout: Duration) -> SynapseApi {
        let client = crate::http_client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .no_proxy()
            .build()
            .unwrap_or_default();
        SynapseApi {
            client,
            base: base.trim_end_matches('/').to_string(),
            timeout,
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `method path_and_query`, with `token` as the bearer and `body` as JSON.
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, Unreached> {
        let url = format!("{}{path_and_query}", self.base);
        let mut req = match method {
            Method::Get => self.client.get(url),
            Method::Put => self.client.put(url),
            Method::Post => self.client.post(url),
            Method::Delete => self.client.delete(url),
        };
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| self.describe(&e))?;
        let status = res.status().as_u16();
        let body = res.text().await.map_err(|e| self.describe(&e))?;
        Ok(Answer { status, body })
    }

    /// `GET path_and_query`.
    pub async fn get(
        &self,
        path_and_query: &str,
        token: Option<&str>,
    ) -> Result<Answer, Unreached> {
        self.call(Method::Get, path_and_query, token, None).await
    }

    fn describe(&self, e: &reqwest::Error) -> Unreached {
        Unreached(if e.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else if e.is_connect() {
            "connection refused (is Synapse running?)".into()
        } else {
            e.to_string()
        })
    }
}

/// `%`-encoding for one path segment (a user id in an admin-API path).
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::routing::{get, put};
    use axum::Router;

    /// A fake Synapse on a free loopback port; its base URL (the probe's tests use it too).
    pub(crate) async fn serve(app: Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn answers_carry_status_and_body_and_failures_are_worded() {
        let base = serve(
            Router::new()
                .route(
                    "/who",
                    get(|h: axum::http::HeaderMap| async move {
                        match h.get("authorization").and_then(|v| v.to_str().ok()) {
                            Some("Bearer t") => (axum::http::StatusCode::OK, "{\"a\":1}"),
                            _ => (axum::http::StatusCode::UNAUTHORIZED, "{}"),
                        }
                    }),
                )
                .route("/echo", put(|body: String| async move { body }))
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        "late"
                    }),
                ),
        )
        .await;
        let api = SynapseApi::new(&format!("{base}/"), Duration::from_millis(300));
        assert_eq!(api.base(), base);
        let a = api.get("/who", Some("t")).await.unwrap();
        assert!(a.ok() && a.json()["a"] == 1);
        let a = api.get("/who", None).await.unwrap();
        assert!(a.refused_token() && !a.ok());
        let a = api
            .call(
                Method::Put,
                "/echo",
                None,
                Some(&serde_json::json!({"x": "ü"})),
            )
            .await
            .unwrap();
        assert_eq!(a.json()["x"], "ü");
        assert_eq!(a.body, "{\"x\":\"ü\"}");
        let e = api.get("/slow", None).await.unwrap_err();
        assert_eq!(e.0, "no answer within 300 ms");
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = SynapseApi::new(&format!("http://{free}"), Duration::from_millis(300))
            .get("/health", None)
            .await
            .unwrap_err();
        assert_eq!(e.0, "connection refused (is Synapse running?)");
    }

    #[test]
    fn a_user_id_is_one_segment() {
        assert_eq!(segment("@anna:family.example"), "%40anna%3Afamily.example");
        assert_eq!(segment("a/b c"), "a%2Fb%20c");
    }
}
