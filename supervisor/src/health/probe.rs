//! Probes of Synapse over its loopback HTTP listener, and the admin-API calls the supervisor
//! makes on its own behalf (server notices).
//!
//! - liveness: `GET /health` answers `OK` (Synapse answers it without touching the database);
//! - database: an admin-API read (`GET /_synapse/admin/v2/users?limit=1`) with the supervisor's
//!   own admin token, which does touch the database.
//!
//! The token comes from a file (`health.admin_token_file`) that first boot writes after Synapse
//! has started, i.e. usually after the supervisor: [`AdminToken`] reads it when it appears or
//! changes, so neither a restart nor a race is needed. A token Synapse rejects (401/403) turns
//! the database probe and notices off until the file changes: a bad credential is not a sick
//! database and must never lead to a restart.

use super::machine::Probe;
use crate::synapse_api::{Method, SynapseApi};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The endpoints the supervisor calls with its own admin token. The calls below and in
/// `accounting::directory::sync` use these, and [`TOKEN_USES`] names them for the page.
pub mod endpoint {
    pub const WHOAMI: &str = "/_matrix/client/v3/account/whoami";
    pub const USERS: &str = "/_synapse/admin/v2/users";
    /// Followed by one account's id.
    pub const USER: &str = "/_synapse/admin/v2/users/";
    pub const MEDIA_STATISTICS: &str = "/_synapse/admin/v1/statistics/users/media";
    pub const SERVER_NOTICE: &str = "/_synapse/admin/v1/send_server_notice";
    /// Followed by one account's id.
    pub const DEACTIVATE: &str = "/_synapse/admin/v1/deactivate/";
    /// Followed by one account's id.
    pub const RESET_PASSWORD: &str = "/_synapse/admin/v1/reset_password/";
    /// `{user_id}` replaced by one account's id.
    pub const OVERRIDE_RATELIMIT: &str = "/_synapse/admin/v1/users/{user_id}/override_ratelimit";
}

/// Whether a use of the token leaves an audit entry (`admin_api_call`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Audited {
    /// Every call, as an entry about the person it reads.
    EachCall,
    /// The first call of each UTC day (a routine read of the whole directory).
    Daily,
    /// Not logged: it reads nothing about a person.
    No,
}

/// One thing the supervisor uses its own admin token for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct TokenUse {
    /// A stable name; the page words each in `http::i18n`.
    pub id: &'static str,
    pub method: &'static str,
    /// Without the query; `{user_id}` stands for one account.
    pub path: &'static str,
    pub audited: Audited,
}

/// Every use of the supervisor's own admin token, for "who can access the data". A new call
/// with the token goes here too (the page's test checks every audited endpoint is listed).
pub const TOKEN_USES: [TokenUse; 12] = [
    TokenUse {
        id: "whoami",
        method: "GET",
        path: endpoint::WHOAMI,
        audited: Audited::No,
    },
    TokenUse {
        id: "database_probe",
        method: "GET",
        path: endpoint::USERS,
        audited: Audited::No,
    },
    TokenUse {
        id: "directory_list",
        method: "GET",
        path: endpoint::USERS,
        audited: Audited::Daily,
    },
    TokenUse {
        id: "account_details",
        method: "GET",
        path: "/_synapse/admin/v2/users/{user_id}",
        audited: Audited::EachCall,
    },
    TokenUse {
        id: "media_statistics",
        method: "GET",
        path: endpoint::MEDIA_STATISTICS,
        audited: Audited::Daily,
    },
    TokenUse {
        id: "notice_admins",
        method: "GET",
        path: endpoint::USERS,
        audited: Audited::No,
    },
    TokenUse {
        id: "server_notice",
        method: "POST",
        path: endpoint::SERVER_NOTICE,
        audited: Audited::No,
    },
    // `invite::synapse`: accounts from the page (an invitation's sign-up, a server admin's
    // deactivation or password reset). Whether a name is free is asked with `account_details`.
    TokenUse {
        id: "create_account",
        method: "PUT",
        path: "/_synapse/admin/v2/users/{user_id}",
        audited: Audited::EachCall,
    },
    TokenUse {
        id: "deactivate_account",
        method: "POST",
        path: "/_synapse/admin/v1/deactivate/{user_id}",
        audited: Audited::EachCall,
    },
    TokenUse {
        id: "reset_password",
        method: "POST",
        path: "/_synapse/admin/v1/reset_password/{user_id}",
        audited: Audited::EachCall,
    },
    // `budget::enforce`: a member whose energy, money or prepaid budget is used up has their
    // messages slowed by Synapse's per-user rate-limit override, removed when it lifts.
    TokenUse {
        id: "slow_messages",
        method: "POST",
        path: endpoint::OVERRIDE_RATELIMIT,
        audited: Audited::EachCall,
    },
    TokenUse {
        id: "restore_messages",
        method: "DELETE",
        path: endpoint::OVERRIDE_RATELIMIT,
        audited: Audited::EachCall,
    },
];

/// The audited use an `admin_api_call` entry's `endpoint` (`GET /path?query`) belongs to.
pub fn audited_use_of(logged: &str) -> Option<&'static TokenUse> {
    let (method, rest) = logged.split_once(' ')?;
    let path = rest.split('?').next().unwrap_or(rest);
    TOKEN_USES
        .iter()
        .find(|u| u.audited != Audited::No && u.method == method && u.path == path)
}

/// Where the supervisor's own admin token comes from.
#[derive(Clone, Debug)]
pub struct AdminToken {
    source: TokenSource,
    state: Arc<Mutex<TokenState>>,
}

#[derive(Clone, Debug)]
enum TokenSource {
    Fixed(Option<String>),
    File(PathBuf),
}

#[derive(Debug, Default)]
struct TokenState {
    /// The file's modification time when last read (None: not read, or absent).
    seen: Option<SystemTime>,
    token: Option<String>,
    /// Synapse said 401/403 for this token.
    rejected: bool,
}

impl AdminToken {
    pub fn none() -> Self {
        Self::fixed(None)
    }

    pub fn fixed(token: Option<String>) -> Self {
        Self {
            source: TokenSource::Fixed(token),
            state: Arc::default(),
        }
    }

    /// Read from `path` now and whenever its modification time changes.
    pub fn file(path: PathBuf) -> Self {
        Self {
            source: TokenSource::File(path),
            state: Arc::default(),
        }
    }

    /// The usable token, if any (one `stat` per call for a file source).
    pub fn get(&self) -> Option<String> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match &self.source {
            TokenSource::Fixed(t) => {
                if st.rejected {
                    return None;
                }
                t.clone()
            }
            TokenSource::File(path) => {
                let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
                if mtime != st.seen {
                    st.seen = mtime;
                    st.rejected = false;
                    st.token = read_token_file(path);
                    match &st.token {
                        Some(_) => {
                            tracing::info!(file = %path.display(), "admin token loaded: database probe and server notices are on")
                        }
                        None => {
                            tracing::info!(file = %path.display(), "no admin token: database probe and server notices are off")
                        }
                    }
                }
                if st.rejected {
                    return None;
                }
                st.token.clone()
            }
        }
    }

    pub(crate) fn reject(&self, status: u16) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !st.rejected {
            tracing::warn!(
                status,
                "Synapse rejected the supervisor's admin token: database probe and server notices are off until the token file changes"
            );
        }
        st.rejected = true;
    }
}

/// The token file's content, read only from a small regular file and never through a link:
/// the folder is user hearth's, and a FIFO or a device planted at the token's name must not
/// hang or exhaust the reading thread (opened `O_NONBLOCK|O_NOFOLLOW`, at most 4 KiB).
fn read_token_file(path: &std::path::Path) -> Option<String> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .ok()?;
    let m = f.metadata().ok()?;
    if !m.is_file() || m.len() > 4096 {
        tracing::warn!(file = %path.display(), "the admin token is not a small regular file: ignored");
        return None;
    }
    let mut text = String::new();
    f.take(4096).read_to_string(&mut text).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

#[derive(Clone)]
pub struct Synapse {
    api: SynapseApi,
    token: AdminToken,
}

impl Synapse {
    pub fn new(base: &str, timeout: Duration, token: AdminToken) -> Self {
        Self {
            api: SynapseApi::new(base, timeout),
            token,
        }
    }

    pub fn has_token(&self) -> bool {
        self.token.get().is_some()
    }

    /// `GET /health`.
    pub async fn liveness(&self) -> Probe {
        let t0 = Instant::now();
        match self.api.get("/health", None).await {
            Ok(a) if a.ok() && a.body.trim() == "OK" => Probe::Answered {
                latency: t0.elapsed(),
            },
            Ok(a) if a.ok() => Probe::Missed {
                reason: format!(
                    "/health said {:?}",
                    a.body.chars().take(40).collect::<String>()
                ),
            },
            Ok(a) => Probe::Missed {
                reason: format!("/health answered HTTP {}", a.status),
            },
            Err(e) => Probe::Missed { reason: e.0 },
        }
    }

    /// An admin-API read that touches the database; `None` without a (valid) token.
    pub async fn database(&self) -> Option<Probe> {
        let token = self.token.get()?;
        let t0 = Instant::now();
        let path = format!("{}?limit=1", endpoint::USERS);
        Some(match self.api.get(&path, Some(&token)).await {
            Ok(a) if a.ok() => Probe::Answered {
                latency: t0.elapsed(),
            },
            Ok(a) if a.refused_token() => {
                self.token.reject(a.status);
                return None;
            }
            Ok(a) => Probe::Missed {
                reason: format!("admin API answered HTTP {}", a.status),
            },
            Err(e) => Probe::Missed { reason: e.0 },
        })
    }

    /// A JSON object from an admin-token `GET`, or why not.
    async fn admin_get(&self, token: &str, path: &str) -> Result<serde_json::Value, String> {
        let a = self.api.get(path, Some(token)).await.map_err(|e| e.0)?;
        if !a.ok() {
            return Err(format!("{path}: HTTP {}", a.status));
        }
        Ok(a.json())
    }

    /// Send one server notice to `user_id` (Synapse's `server_notices` must be configured).
    pub async fn notify(&self, user_id: &str, body: &str) -> Result<(), String> {
        let token = self.token.get().ok_or("no admin token")?;
        let notice = serde_json::json!({
            "user_id": user_id,
            "content": {"msgtype": "m.text", "body": body},
        });
        let a = self
            .api
            .call(
                Method::Post,
                endpoint::SERVER_NOTICE,
                Some(&token),
                Some(&notice),
            )
            .await
            .map_err(|e| e.0)?;
        if a.refused_token() {
            self.token.reject(a.status);
        }
        if a.ok() {
            Ok(())
        } else {
            Err(format!("server notice: HTTP {}", a.status))
        }
    }

    /// Slow `user_id`'s messages to `burst` in a row, then one a second (Synapse's per-user
    /// override of `rc_message`), or with `None` remove the override (Synapse's own rate
    /// again). Returns the HTTP status, for the audit entry the caller writes.
    pub async fn override_ratelimit(
        &self,
        user_id: &str,
        burst: Option<u32>,
    ) -> Result<u16, String> {
        let token = self.token.get().ok_or("no admin token")?;
        let path = endpoint::OVERRIDE_RATELIMIT
            .replace("{user_id}", &crate::synapse_api::segment(user_id));
        let body = burst.map(|b| serde_json::json!({"messages_per_second": 1, "burst_count": b}));
        let method = if burst.is_some() {
            Method::Post
        } else {
            Method::Delete
        };
        let a = self
            .api
            .call(method, &path, Some(&token), body.as_ref())
            .await
            .map_err(|e| e.0)?;
        if a.refused_token() {
            self.token.reject(a.status);
        }
        Ok(a.status)
    }

    /// Send a server notice to every server admin. Returns how many were notified.
    pub async fn notify_admins(&self, body: &str) -> Result<usize, String> {
        let token = self.token.get().ok_or("no admin token")?;
        // The supervisor's own account is a server admin too; it does not notify itself.
        let me = self.admin_get(&token, endpoint::WHOAMI).await?;
        let me = me["user_id"].as_str().unwrap_or_default().to_string();
        let list = self
            .admin_get(
                &token,
                &format!(
                    "{}?admins=true&deactivated=false&limit=100",
                    endpoint::USERS
                ),
            )
            .await?;
        let admins: Vec<String> = list["users"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["name"].as_str().map(String::from))
                    .filter(|name| *name != me)
                    .collect()
            })
            .unwrap_or_default();
        let mut sent = 0;
        for user in admins {
            match self.notify(&user, body).await {
                Ok(()) => sent += 1,
                Err(e) => tracing::warn!(%user, "server notice not sent: {e}"),
            }
        }
        Ok(sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synapse_api::tests::serve;
    use axum::routing::get;
    use axum::Router;

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
            Synapse::new(&base, t, AdminToken::none()).liveness().await,
            Probe::Answered { .. }
        ));
        match Synapse::new(&format!("{base}/slow"), t, AdminToken::none())
            .liveness()
            .await
        {
            Probe::Missed { reason } => {
                assert!(reason.contains("no answer within 300 ms"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        match Synapse::new(&format!("{base}/bad"), t, AdminToken::none())
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
        match Synapse::new(&format!("http://{free}"), t, AdminToken::none())
            .liveness()
            .await
        {
            Probe::Missed { reason } => {
                assert_eq!(reason, "connection refused (is Synapse running?)")
            }
            other => panic!("{other:?}"),
        }
        // No token, no database probe.
        assert_eq!(
            Synapse::new(&base, t, AdminToken::none()).database().await,
            None
        );
    }

    #[tokio::test]
    async fn database_probe_uses_a_token_file_that_appears_later() {
        let base = serve(Router::new().route(
            "/_synapse/admin/v2/users",
            get(|headers: axum::http::HeaderMap| async move {
                match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                    Some("Bearer good") => (axum::http::StatusCode::OK, "{}"),
                    _ => (axum::http::StatusCode::UNAUTHORIZED, "{}"),
                }
            }),
        ))
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin_token");
        let s = Synapse::new(
            &base,
            Duration::from_secs(2),
            AdminToken::file(file.clone()),
        );
        // Before first boot has written it: no probe.
        assert_eq!(s.database().await, None);
        assert!(!s.has_token());
        // Written: the probe runs.
        std::fs::write(&file, "good\n").unwrap();
        assert!(matches!(s.database().await, Some(Probe::Answered { .. })));
        // A token Synapse rejects is not a database failure: no probe at all.
        std::fs::write(&file, "stale").unwrap();
        set_mtime_forward(&file);
        assert_eq!(s.database().await, None);
        assert!(!s.has_token());
        // A new token (the file changes) is tried again.
        std::fs::write(&file, "good").unwrap();
        assert!(matches!(s.database().await, Some(Probe::Answered { .. })));
    }

    #[test]
    fn a_fifo_or_a_link_at_the_tokens_name_is_no_token_and_does_not_hang() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin_token");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &file,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .unwrap();
        let token = AdminToken::file(file.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let t = token.clone();
        std::thread::spawn(move || tx.send(t.get()).unwrap());
        let got = rx.recv_timeout(Duration::from_secs(10));
        if got.is_err() {
            // Unblock the reader before failing, so the test process can end.
            let _ = std::fs::OpenOptions::new().write(true).open(&file);
        }
        assert_eq!(got, Ok(None), "reading a FIFO as the token hung");
        std::fs::remove_file(&file).unwrap();
        let real = dir.path().join("elsewhere");
        std::fs::write(&real, "secret").unwrap();
        std::os::unix::fs::symlink(&real, &file).unwrap();
        assert_eq!(AdminToken::file(file.clone()).get(), None);
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, "good\n").unwrap();
        assert_eq!(AdminToken::file(file).get().as_deref(), Some("good"));
    }

    /// Writes within one mtime tick would look unchanged; move the time on explicitly.
    fn set_mtime_forward(path: &std::path::Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        let now = f.metadata().unwrap().modified().unwrap();
        f.set_modified(now + Duration::from_secs(1)).unwrap();
    }
}
