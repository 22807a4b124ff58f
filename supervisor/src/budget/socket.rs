//! The supervisor's side of `hearth_limits.py`, the Synapse module that enforces the budgets
//! (overlays/usr/lib/hearth/synapse/): a UNIX socket, mode 0660 in group `hearth-limits`
//! (the supervisor and Synapse are in it, nobody else), answering one request:
//!
//! `GET /v1/limits/<user id>` → 200 `{"user_id", "month_start_ms", "uploaded_max_bytes",
//! "stored_remaining_bytes", "blocked", "info_uri"}` for a member with
//! a budget, 404 for anyone without one, 503 until the first assessment after a start.
//!
//! The module caches an answer for 30 s and, while this socket does not answer, keeps using
//! the last one for up to an hour, then lets Synapse's defaults apply (fail open: a stopped
//! supervisor never breaks the family's uploads or messages). The answer is a member's own
//! data (over budget or not): only the module asks for it, and nothing here is logged.

use super::assess::Limits;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// The limits as the last assessment left them.
#[derive(Debug, Default)]
pub struct Published {
    /// `None` until the first assessment.
    pub month_start_ms: Option<i64>,
    pub info_uri: Option<String>,
    pub members: HashMap<String, Limits>,
}

pub type SharedLimits = Arc<RwLock<Published>>;

/// What the socket says about one member.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// No assessment yet since the start (503).
    NotYet,
    /// No budget applies to them (404).
    NoBudget,
    Limits(serde_json::Value),
}

/// One member's answer, as the module reads it.
pub fn answer(p: &Published, user_id: &str) -> Answer {
    let Some(month_start_ms) = p.month_start_ms else {
        return Answer::NotYet;
    };
    let limits = p
        .members
        .get(user_id)
        .filter(|l| !l.standings.is_empty() || l.uploaded_max_bytes.is_some());
    let Some(l) = limits else {
        return Answer::NoBudget;
    };
    Answer::Limits(json!({
            "user_id": l.user_id,
            "month_start_ms": month_start_ms,
            "uploaded_max_bytes": l.uploaded_max_bytes,
            "stored_remaining_bytes": l.stored_remaining_bytes,
            "blocked": l.blocked,
            "info_uri": p.info_uri,
    }))
}

async fn limits(State(shared): State<SharedLimits>, Path(user): Path<String>) -> Response {
    let p = shared.read().unwrap_or_else(|p| p.into_inner());
    match answer(&p, &user) {
        Answer::Limits(v) => Json(v).into_response(),
        Answer::NoBudget => (StatusCode::NOT_FOUND, "no budget").into_response(),
        Answer::NotYet => (StatusCode::SERVICE_UNAVAILABLE, "not assessed yet").into_response(),
    }
}

pub fn router(shared: SharedLimits) -> Router {
    Router::new()
        .route("/v1/limits/{user}", get(limits))
        .with_state(shared)
}

/// Bind the socket at `path` (a stale one from a crash is replaced), 0660, in `group` when
/// that group exists (else the supervisor's own, and Synapse gets no answer: logged); `None`:
/// the supervisor's own group (a developer's machine).
pub fn bind(
    path: &std::path::Path,
    group: Option<&str>,
) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    let Some(group) = group else {
        return Ok(listener);
    };
    match group_id(group) {
        Some(gid) => {
            rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(std::io::Error::from)?;
        }
        None => tracing::warn!(
            socket = %path.display(),
            "no group {group:?}: Synapse's budget module cannot ask this socket"
        ),
    }
    Ok(listener)
}

/// `group`'s id from `/etc/group`.
fn group_id(group: &str) -> Option<u32> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == group).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// Serve the socket until `token` is cancelled; the socket file is removed at the end.
pub async fn serve(
    listener: tokio::net::UnixListener,
    path: PathBuf,
    shared: SharedLimits,
    token: CancellationToken,
) {
    let app = router(shared);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(token.cancelled_owned())
        .await
    {
        tracing::error!("the budget socket stopped: {e}");
    }
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::assess::{Kind, Standing};
    use crate::budget::Scope;

    #[test]
    fn answers_members_with_a_budget_only_and_nothing_before_the_first_assessment() {
        let mut p = Published::default();
        assert_eq!(answer(&p, "@a:x"), Answer::NotYet);
        p.month_start_ms = Some(1_764_547_200_000);
        p.info_uri = Some("https://family.example/budget".into());
        let limited = Limits {
            user_id: "@a:x".into(),
            throttle_burst: Some(2),
            blocked: true,
            uploaded_max_bytes: None,
            stored_remaining_bytes: Some(0),
            standings: vec![Standing {
                kind: Kind::Energy,
                scope: Scope::Member("@a:x".into()),
                used: 2.0,
                limit: 1.0,
                level: 100,
            }],
        };
        p.members.insert("@a:x".into(), limited);
        p.members.insert(
            "@b:x".into(),
            Limits {
                user_id: "@b:x".into(),
                throttle_burst: None,
                blocked: false,
                uploaded_max_bytes: None,
                stored_remaining_bytes: None,
                standings: vec![],
            },
        );
        let Answer::Limits(a) = answer(&p, "@a:x") else {
            panic!("no limits for @a:x")
        };
        assert_eq!(a["blocked"], true);
        assert_eq!(a["stored_remaining_bytes"], 0);
        assert_eq!(a["month_start_ms"], 1_764_547_200_000i64);
        assert_eq!(answer(&p, "@b:x"), Answer::NoBudget);
        assert_eq!(answer(&p, "@nobody:x"), Answer::NoBudget);
    }
}
