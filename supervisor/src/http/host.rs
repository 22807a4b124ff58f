//! The `Host` check: the page answers only for its own names (421 Misdirected Request
//! otherwise). Against DNS rebinding: a page on `evil.example` whose name an attacker points
//! at the box's address afterwards reaches the box with `Host: evil.example`, and is refused.
//!
//! Allowed: the configured public names (`[http] public_names` and the server's name that the
//! setup writes to `server_name_file`), `hearth.local`, `localhost`, and IP addresses, each with
//! or without a port. An IP address cannot be rebound (a browser only sends one when the address
//! is what was typed), so `http://192.168.1.23/` and `http://[::1]:8080/` work on any box
//! without knowing its addresses. A request without `Host` (HTTP/1.0, not a browser) passes: a
//! rebinding attack needs a browser, and browsers always send it.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

/// The names the page always answers for.
pub const ALWAYS: [&str; 2] = ["hearth.local", "localhost"];

/// The names the page answers for (lower case, without a trailing dot).
#[derive(Debug, Clone, PartialEq)]
pub struct Allowed {
    names: Vec<String>,
    /// The server name's file: a name chosen on `/setup` while the daemon runs counts at once
    /// (read only for a `Host` that is not one of `names`).
    name_file: Option<std::path::PathBuf>,
}

impl Allowed {
    pub fn new(public_names: &[String]) -> Allowed {
        let mut names: Vec<String> = ALWAYS.iter().map(|n| n.to_string()).collect();
        for n in public_names {
            if let Some(n) = crate::config::host_name(n) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        Allowed {
            names,
            name_file: None,
        }
    }

    /// Also the name in `path` (the server name's file), whenever it is read.
    pub fn with_name_file(mut self, path: Option<std::path::PathBuf>) -> Allowed {
        self.name_file = path;
        self
    }

    fn chosen_name(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.name_file.as_ref()?).ok()?;
        crate::config::host_name(text.lines().next()?)
    }

    /// Whether a `Host` header's value names this server.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        let port_ok = |p: &str| p.is_empty() || p.strip_prefix(':').is_some_and(is_port);
        if let Some(rest) = host.strip_prefix('[') {
            return rest
                .split_once(']')
                .is_some_and(|(a, p)| a.parse::<Ipv6Addr>().is_ok() && port_ok(p));
        }
        let (name, port) = match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        };
        if port.is_some_and(|p| !is_port(p)) {
            return false;
        }
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&name) || self.chosen_name().is_some_and(|n| n == name)
    }
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// The middleware: 421 for a `Host` that is not ours.
pub async fn check(State(allowed): State<Arc<Allowed>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).map(|v| v.to_str());
    match host {
        None => next.run(req).await,
        Some(Ok(h)) if allowed.allows(h) => next.run(req).await,
        Some(_) => {
            let mut r = (
                StatusCode::MISDIRECTED_REQUEST,
                "this server does not answer for that name\n",
            )
                .into_response();
            r.headers_mut().insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            r
        }
    }
}

/// `app` answering only for `allowed`.
pub fn guard(app: Router, allowed: Allowed) -> Router {
    app.layer(axum::middleware::from_fn_with_state(
        Arc::new(allowed),
        check,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_chosen_while_running_counts_at_once() {
        let dir = tempfile_dir();
        let file = dir.join("server_name");
        let allowed = Allowed::new(&[]).with_name_file(Some(file.clone()));
        assert!(!allowed.allows("family.example.org"));
        std::fs::write(&file, "family.example.org\n").unwrap();
        assert!(allowed.allows("family.example.org"));
        assert!(allowed.allows("FAMILY.example.org:443"));
        assert!(!allowed.allows("other.example.org"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!(
            "hearth-host-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
    use axum::body::Body;
    use tower::ServiceExt;

    fn app() -> Router {
        let state = crate::http::AppState::minimal(None);
        guard(
            crate::http::router(state),
            Allowed::new(&["family.example.org".into()]),
        )
    }

    async fn status_for(host: Option<&str>) -> StatusCode {
        let mut req = axum::http::Request::get("/api/v1/status");
        if let Some(h) = host {
            req = req.header(header::HOST, h);
        }
        app()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
            .status()
    }

    #[tokio::test]
    async fn a_host_that_is_not_ours_is_misdirected() {
        for host in [
            "evil.example",
            "evil.example:80",
            "family.example.org.evil.example",
            "hearth.local.evil.example",
            "example.org",
            "family.example.org:http",
            "[::1",
            "localhost:99999999",
            "",
        ] {
            assert_eq!(
                status_for(Some(host)).await,
                StatusCode::MISDIRECTED_REQUEST,
                "{host:?}"
            );
        }
    }

    #[tokio::test]
    async fn our_names_and_addresses_are_answered() {
        for host in [
            "family.example.org",
            "Family.Example.Org.",
            "family.example.org:443",
            "hearth.local",
            "hearth.local:80",
            "localhost",
            "localhost:8080",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:8080",
            "192.168.178.23",
        ] {
            assert_eq!(status_for(Some(host)).await, StatusCode::OK, "{host:?}");
        }
        assert_eq!(
            status_for(None).await,
            StatusCode::OK,
            "no Host: no browser"
        );
    }
}
