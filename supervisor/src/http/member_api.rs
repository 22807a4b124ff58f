//! The signed-in JSON doors: statements (`/api/v1/members`), the audit log (`/api/v1/audit`)
//! and the maintenance switch (`/api/v1/maintenance`).
//!
//! What a viewer gets is cut to their role before it leaves (`signin::Viewer::may_see`): a
//! member their own row, a household admin the household's members and its total, a server
//! admin everyone. Every view of another person's figures or audit entries is written to the
//! audit log, about that person, BEFORE the answer is sent; if it cannot be written nothing is
//! shown. Asking for someone one may not see is refused (403) and audited as `denied`, folded
//! per session ([`Denials`]): a member who asks a thousand times cannot fill the SD card.

use super::signin::{self, record, ApiError, Viewer};
use super::{AppState, Web};
use crate::accountant::view::{self, MonthView};
use crate::accounting::model::Period;
use crate::audit::{self, Action, NewEntry};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// At most one `denied` entry per session in this long.
pub const DENIAL_WINDOW: Duration = Duration::from_secs(600);

/// The folding of repeated `denied` entries: a session's first refusal in a [`DENIAL_WINDOW`]
/// is written, the ones after it within the window are only counted, and the next entry
/// written for that session carries that count as `folded` (refusals not written since the
/// session's previous `denied` entry). Keyed by the session cookie's hash, in memory only and
/// bounded like the sessions.
#[derive(Debug, Default)]
pub struct Denials {
    map: Mutex<HashMap<[u8; 32], (Instant, u64)>>,
}

impl Denials {
    /// `Some(folded)`: write this refusal, with the count folded before it; `None`: fold it.
    pub fn admit(&self, session: &str) -> Option<u64> {
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::digest(session.as_bytes()).into();
        let now = Instant::now();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= super::session::MAX_SESSIONS {
            map.retain(|_, (start, _)| now.duration_since(*start) < DENIAL_WINDOW);
            if map.len() >= super::session::MAX_SESSIONS {
                // Every window open: the oldest goes (its count is lost, the refusals are not
                // more than that session's next entry would have said).
                if let Some(oldest) = map.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        match map.get_mut(&key) {
            Some((start, folded)) if now.duration_since(*start) < DENIAL_WINDOW => {
                *folded += 1;
                None
            }
            Some((start, folded)) => {
                let n = *folded;
                *start = now;
                *folded = 0;
                Some(n)
            }
            None => {
                map.insert(key, (now, 0));
                Some(0)
            }
        }
    }
}

/// Write a `denied` entry for `viewer`, or fold it ([`Denials`]).
async fn record_denied(web: &Arc<Web>, viewer: &Viewer, entry: NewEntry) {
    let Some(folded) = web.denials.admit(viewer.session_token()) else {
        return;
    };
    let entry = if folded > 0 {
        entry.detail("folded", folded)
    } else {
        entry
    };
    let _ = record(web, vec![entry]).await;
}

/// The month so far is recomputed at most this often: inputs arrive with the meter's batch
/// (every 5 minutes), and a month takes a good fraction of a second on a Pi.
pub const FRESH: Duration = Duration::from_secs(60);

/// Computed months: closed ones for good, the current one for [`FRESH`].
#[derive(Default)]
pub struct MonthCache {
    map: Mutex<HashMap<String, Cached>>,
}

/// When it was computed, and the month.
type Cached = (Instant, Arc<MonthView>);

impl MonthCache {
    fn cached(&self, label: &str) -> Option<Arc<MonthView>> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let (at, v) = map.get(label)?;
        (v.closed || at.elapsed() < FRESH).then(|| v.clone())
    }

    fn put(&self, label: &str, v: Arc<MonthView>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 36 {
            map.clear();
        }
        map.insert(label.to_string(), (Instant::now(), v));
    }
}

/// The month `period` (cached), `None` when it has not begun.
pub async fn month(web: &Arc<Web>, period: Period) -> Result<Option<Arc<MonthView>>, ApiError> {
    if let Some(v) = web.months.cached(period.label()) {
        return Ok(Some(v));
    }
    let now_s = (web.now_s)();
    let w = web.clone();
    let label = period.label().to_string();
    let computed = web
        .db(move |db| view::month_view(db, &period, now_s, w.members.as_ref(), &w.accounting))
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database task failed".into(),
            )
        })?
        .map_err(|e| {
            tracing::error!("statement {label}: {e}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("statement {label}: {e}"),
            )
        })?;
    Ok(computed.map(|v| {
        let v = Arc::new(v);
        web.months.put(&label, v.clone());
        v
    }))
}

/// The current month (UTC) at `now_s`.
pub fn current_period(now_s: i64) -> Period {
    let t = chrono::DateTime::from_timestamp(now_s, 0).unwrap_or_default();
    let label = t.format("%Y-%m").to_string();
    Period::parse_month(&label)
        .unwrap_or_else(|_| Period::parse_month("1970-01").expect("January 1970 is a month"))
}

/// `?period=YYYY-MM` (default: this month) `&user=@x:y` (default: all one may see).
#[derive(Debug, Deserialize)]
pub struct MembersQuery {
    pub period: Option<String>,
    pub user: Option<String>,
}

/// What the viewer may see of `v`, as the statement JSON (PRODUCT §5) plus `closed` and `days`;
/// and whose figures besides their own it shows.
pub fn visible(v: &MonthView, viewer: &Viewer, only: Option<&str>) -> (Value, Vec<String>) {
    let wanted = |u: &str| viewer.may_see(u) && only.is_none_or(|o| o == u);
    let mut st = v.statement.clone();
    st.members.retain(|m| wanted(&m.user_id));
    let households: BTreeSet<String> = st.members.iter().map(|m| m.household.clone()).collect();
    st.households.retain(|h| {
        viewer.may_see_household(&h.id) && only.is_none() && households.contains(&h.id)
    });
    let others: Vec<String> = st
        .members
        .iter()
        .map(|m| m.user_id.clone())
        .filter(|u| *u != viewer.user_id)
        .collect();
    let days: Vec<Value> = v
        .days
        .iter()
        .map(|d| {
            let members: serde_json::Map<String, Value> = d
                .members
                .iter()
                .filter(|(u, _)| wanted(u))
                .map(|(u, wh)| (u.clone(), json!(wh)))
                .collect();
            json!({"day": d.day, "measured_wh": d.measured_wh, "members": members})
        })
        .collect();
    let mut out = serde_json::to_value(&st).unwrap_or_else(|_| json!({}));
    if let Some(o) = out.as_object_mut() {
        o.insert("closed".into(), json!(v.closed));
        o.insert("days".into(), Value::Array(days));
    }
    (out, others)
}

/// The audit entries for `viewer` having seen the figures of `others`.
pub fn view_entries(
    viewer: &Viewer,
    action: Action,
    others: &[String],
    what: &str,
) -> Vec<NewEntry> {
    others
        .iter()
        .map(|u| {
            NewEntry::new(viewer.actor(), action)
                .about(u)
                .detail("what", what)
                .detail("role", viewer.role.as_str())
        })
        .collect()
}

/// `viewer` asked for `user`'s data and may not see it: 403, audited.
pub async fn deny(web: &Arc<Web>, viewer: &Viewer, user: &str, what: &str) -> ApiError {
    let mut e = NewEntry::new(viewer.actor(), Action::Denied).detail("what", what);
    if crate::accounting::members::check_user_id(user).is_ok() {
        e = e.about(user);
    }
    record_denied(web, viewer, e).await;
    ApiError(
        StatusCode::FORBIDDEN,
        format!("you may not see {what} of {user}"),
    )
}

/// `GET /api/v1/members?period=YYYY-MM`.
pub async fn members(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<MembersQuery>,
) -> Response {
    match members_inner(&state, &headers, q).await {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    r
}

async fn members_inner(
    state: &AppState,
    headers: &HeaderMap,
    q: MembersQuery,
) -> Result<Value, ApiError> {
    let (web, viewer) = signin::signed_in(state, headers).await?;
    let period = match q.period.as_deref() {
        None | Some("") => current_period((web.now_s)()),
        Some(p) => Period::parse_month(p)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("period: {e}")))?,
    };
    if let Some(u) = q.user.as_deref() {
        if !viewer.may_see(u) {
            return Err(deny(&web, &viewer, u, "statement").await);
        }
    }
    let Some(m) = month(&web, period.clone()).await? else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!(
                "no statement for {}: the month has not begun",
                period.label()
            ),
        ));
    };
    let (value, others) = visible(&m, &viewer, q.user.as_deref());
    record(
        &web,
        view_entries(
            &viewer,
            Action::ViewStatement,
            &others,
            &format!("statement {}", period.label()),
        ),
    )
    .await?;
    Ok(value)
}

/// `?before=SEQ&limit=N`.
#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub before: Option<u64>,
    pub limit: Option<u32>,
}

/// `GET /api/v1/audit`: the entries the caller may see, newest first, and the chain's head.
pub async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let r = match signin::signed_in(&state, &headers).await {
        Ok((web, viewer)) => audit_page(&web, &viewer, q.before, q.limit.unwrap_or(50)).await,
        Err(e) => Err(e),
    };
    match r {
        Ok((entries, head)) => no_store(
            Json(json!({
                "head": {"seq": head.seq, "hash": head.hash.to_string()},
                "entries": entries.iter().map(entry_json).collect::<Vec<_>>(),
            }))
            .into_response(),
        ),
        Err(e) => e.into_response(),
    }
}

pub fn entry_json(e: &audit::Entry) -> Value {
    json!({
        "seq": e.seq,
        "time": e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "actor": e.actor.as_str(),
        "action": e.action.as_str(),
        "subject": e.subject,
        "detail": e.detail,
        "hash": e.hash.to_string(),
    })
}

/// The entries `viewer` may see and the head; views of entries about others are audited.
pub async fn audit_page(
    web: &Arc<Web>,
    viewer: &Viewer,
    before: Option<u64>,
    limit: u32,
) -> Result<(Vec<audit::Entry>, audit::Head), ApiError> {
    let v = viewer.clone();
    let (entries, head) = web
        .db(move |db| -> Result<_, audit::AuditError> {
            let conn = db.connection();
            Ok((
                audit::entries_visible_to(conn, &v.audit_viewer(), limit, before)?,
                audit::head(conn)?,
            ))
        })
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database task failed".into(),
            )
        })?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let others: BTreeSet<String> = entries
        .iter()
        .filter_map(|e| e.subject.clone())
        .filter(|s| *s != viewer.user_id)
        .collect();
    let others: Vec<String> = others.into_iter().collect();
    record(
        web,
        view_entries(viewer, Action::ViewAudit, &others, "audit entries"),
    )
    .await?;
    Ok((entries, head))
}

#[derive(Debug, Deserialize)]
pub struct MaintenanceBody {
    pub on: bool,
}

/// `POST /api/v1/maintenance {"on": true|false}`: server admins, with the CSRF token.
pub async fn maintenance(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let (web, viewer) = signin::signed_in(&state, &headers).await?;
        if !viewer.csrf_ok(&headers, None) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token".into(),
            ));
        }
        let b: MaintenanceBody = serde_json::from_slice(&body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))?;
        set_maintenance(&web, &viewer, b.on).await?;
        Ok(json!({"maintenance": b.on}))
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Switch maintenance mode (server admins only), audited.
pub async fn set_maintenance(web: &Arc<Web>, viewer: &Viewer, on: bool) -> Result<(), ApiError> {
    if viewer.role != super::session::Role::ServerAdmin {
        record_denied(
            web,
            viewer,
            NewEntry::new(viewer.actor(), Action::Denied).detail("what", "maintenance"),
        )
        .await;
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only a server admin may switch maintenance mode".into(),
        ));
    }
    record(
        web,
        vec![NewEntry::new(viewer.actor(), Action::Maintenance).detail("on", on)],
    )
    .await?;
    let file = web.maintenance_file.clone();
    let r = tokio::task::spawn_blocking(move || {
        if on {
            crate::storage::write_atomically(&file, b"on\n")
        } else {
            match std::fs::remove_file(&file) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
    })
    .await;
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{}: {e}", web.maintenance_file.display()),
        )),
        Err(_) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "task failed".into(),
        )),
    }
}
