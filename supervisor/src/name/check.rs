//! Asking the world about a name before it is chosen for good: does it resolve (the DNS, with a
//! timeout), and is it already a Matrix server (then it is taken)? Both behind a seam so tests
//! talk to loopback only: [`Resolve`] (the system resolver, or a table) and [`MatrixProbe`]'s
//! base URL (`https://<name>` on the box, a loopback server in tests).

use super::{parse, Refusal, ServerName};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long the DNS may take to answer.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long each "is it a Matrix server" request may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Name → addresses.
pub trait Resolve: Send + Sync {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>>;
}

/// The system's resolver (`getaddrinfo` through tokio's `lookup_host`).
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((host, 443))
                .await?
                .map(|a| a.ip())
                .collect();
            addrs.sort();
            addrs.dedup();
            Ok(addrs)
        })
    }
}

/// A fixed table (tests): names not in it do not resolve.
#[derive(Default, Clone)]
pub struct TableResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolve for TableResolver {
    fn lookup<'a>(&'a self, host: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
        Box::pin(async move {
            self.0
                .get(host)
                .cloned()
                .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no such name"))
        })
    }
}

/// Resolve `name` within `timeout`: its addresses, or why not (one line).
pub async fn resolve(
    resolver: &dyn Resolve,
    name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(timeout, resolver.lookup(name)).await {
        Ok(Ok(a)) if !a.is_empty() => Ok(a),
        Ok(Ok(_)) => Err("no address".into()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// Asks whether a Matrix server already answers for a name: `GET <base>/.well-known/matrix/server`
/// (`{"m.server": …}`) and `GET <base>/_matrix/key/v2/server` (`{"server_name", "verify_keys"}`).
/// Nothing answering, or anything else answering, is not a Matrix server.
#[derive(Clone)]
pub struct MatrixProbe {
    client: reqwest::Client,
    base: Arc<dyn Fn(&str) -> String + Send + Sync>,
}

impl MatrixProbe {
    /// `https://<name>`. The certificate is not checked: this only asks whether something
    /// answers as a Matrix server, and a server with a bad certificate still holds the name.
    pub fn https() -> MatrixProbe {
        Self::with_base(Arc::new(|name: &str| format!("https://{name}")))
    }

    /// A probe that asks `base(name)` instead (tests: a loopback server).
    pub fn with_base(base: Arc<dyn Fn(&str) -> String + Send + Sync>) -> MatrixProbe {
        let client = crate::http_client::builder()
            .timeout(PROBE_TIMEOUT)
            .tls_danger_accept_invalid_certs(true)
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        MatrixProbe { client, base }
    }

    /// Where a Matrix server answered for `name`, if one did.
    pub async fn matrix_server_at(&self, name: &str) -> Option<String> {
        let base = (self.base)(name);
        let well_known = format!("{base}/.well-known/matrix/server");
        let keys = format!("{base}/_matrix/key/v2/server");
        let (a, b) = tokio::join!(self.json(&well_known), self.json(&keys));
        if a.as_ref().is_some_and(|v| v["m.server"].is_string()) {
            return Some(well_known);
        }
        if b.as_ref()
            .is_some_and(|v| v["server_name"].is_string() && v["verify_keys"].is_object())
        {
            return Some(keys);
        }
        None
    }

    async fn json(&self, url: &str) -> Option<serde_json::Value> {
        let r = self.client.get(url).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }
}

/// A name that passed every check, with the addresses it resolved to.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub name: ServerName,
    pub addresses: Vec<IpAddr>,
}

/// The checks a name must pass before it is chosen: syntax, resolves, not taken.
#[derive(Clone)]
pub struct Checker {
    pub resolver: Arc<dyn Resolve>,
    pub probe: MatrixProbe,
    pub resolve_timeout: Duration,
}

impl Checker {
    /// The box's checker: the system resolver, `https://<name>`.
    pub fn system() -> Checker {
        Checker {
            resolver: Arc::new(SystemResolver),
            probe: MatrixProbe::https(),
            resolve_timeout: RESOLVE_TIMEOUT,
        }
    }

    pub async fn check(&self, input: &str) -> Result<Checked, Refusal> {
        let name = parse(input)?;
        let addresses = resolve(&*self.resolver, name.as_str(), self.resolve_timeout)
            .await
            .map_err(Refusal::Unresolved)?;
        if let Some(at) = self.probe.matrix_server_at(name.as_str()).await {
            return Err(Refusal::Taken(at));
        }
        Ok(Checked { name, addresses })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::json;

    /// A loopback web server: `taken.test` answers as a Matrix server through `.well-known`,
    /// `keys.test` through its key endpoint, `other.test` with a web page, `free.test` 404s.
    pub(crate) async fn loopback_probe() -> MatrixProbe {
        let app = Router::new()
            .route(
                "/taken.test/.well-known/matrix/server",
                get(|| async { Json(json!({"m.server": "matrix.taken.test:443"})) }),
            )
            .route(
                "/keys.test/_matrix/key/v2/server",
                get(|| async {
                    Json(json!({"server_name": "keys.test", "verify_keys": {"ed25519:a": {"key": "x"}}}))
                }),
            )
            .route(
                "/other.test/.well-known/matrix/server",
                get(|| async { "<html>a web site</html>" }),
            )
            .route(
                "/other.test/_matrix/key/v2/server",
                get(|| async { Json(json!({"hello": "world"})) }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        MatrixProbe::with_base(Arc::new(move |name: &str| format!("http://{addr}/{name}")))
    }

    /// Names that resolve to loopback, for the checker in tests.
    pub(crate) fn loopback_resolver(names: &[&str]) -> TableResolver {
        TableResolver(
            names
                .iter()
                .map(|n| (n.to_string(), vec![IpAddr::from([127, 0, 0, 1])]))
                .collect(),
        )
    }

    struct Slow;
    impl Resolve for Slow {
        fn lookup<'a>(&'a self, _: &'a str) -> BoxFuture<'a, std::io::Result<Vec<IpAddr>>> {
            Box::pin(async {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(vec![])
            })
        }
    }

    #[tokio::test]
    async fn a_name_must_resolve_and_be_free() {
        let names = ["free.test", "taken.test", "keys.test", "other.test"];
        let checker = Checker {
            resolver: Arc::new(loopback_resolver(&names)),
            probe: loopback_probe().await,
            resolve_timeout: Duration::from_secs(2),
        };
        let ok = checker.check("Free.Test").await.unwrap();
        assert_eq!(ok.name.as_str(), "free.test");
        assert_eq!(ok.addresses, vec![IpAddr::from([127, 0, 0, 1])]);
        // A web server that is not a Matrix server does not take the name.
        assert!(checker.check("other.test").await.is_ok());
        let taken = checker.check("taken.test").await.unwrap_err();
        assert!(
            matches!(&taken, Refusal::Taken(at) if at.ends_with("/.well-known/matrix/server")),
            "{taken:?}"
        );
        let keys = checker.check("keys.test").await.unwrap_err();
        assert!(
            matches!(&keys, Refusal::Taken(at) if at.ends_with("/_matrix/key/v2/server")),
            "{keys:?}"
        );
        assert_eq!(
            checker.check("nowhere.test").await,
            Err(Refusal::Unresolved("no such name".into()))
        );
        // Syntax first: nothing is asked about a refused name.
        assert_eq!(checker.check("hearth.local").await, Err(Refusal::DotLocal));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resolver_that_never_answers_times_out() {
        let r = resolve(&Slow, "slow.test", Duration::from_secs(5)).await;
        assert_eq!(r, Err("no answer within 5 s".into()));
    }

    #[tokio::test]
    async fn the_system_resolver_answers_for_localhost() {
        let a = resolve(&SystemResolver, "localhost", RESOLVE_TIMEOUT)
            .await
            .unwrap();
        assert!(a.iter().all(|a| a.is_loopback()), "{a:?}");
    }

    #[tokio::test]
    async fn nothing_listening_is_not_a_matrix_server() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let probe = MatrixProbe::with_base(Arc::new(move |_: &str| format!("http://{addr}")));
        assert_eq!(probe.matrix_server_at("free.test").await, None);
    }
}
