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

    /// Forget the months not yet closed (the costs or households changed on the page).
    pub fn clear(&self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, (_, v)| v.closed);
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
        .db(move |db| {
            // The page's costs over the file's (crate::budget::effective).
            let tariff_in_file = w.budgets.as_ref().is_some_and(|b| b.tariff_in_file);
            let accounting =
                crate::budget::effective(db.connection(), &w.accounting, tariff_in_file)
                    .map(|(c, _)| c)
                    .unwrap_or_else(|_| w.accounting.clone());
            view::month_view(db, &period, now_s, w.members.as_ref(), &accounting)
        })
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

/// The whole box's figures of a statement: with the viewer's own (and those they may see) they
/// would give the rest of the box by subtraction.
const DEVICE_FIELDS: [&str; 6] = [
    "measured_wh",
    "other_services_wh",
    "estimated_wh",
    "base_wh",
    "dynamic_wh",
    "unattributed_wh",
];

/// Whether the whole box's figures would give away one person's: the members the viewer may
/// not see who used the box in the period are exactly one (PRODUCT §6: per-member figures only
/// to that member, their household's admin and the server admins). None (the viewer sees all,
/// or is alone) or at least two (a sum of several) leave no single person's figure to derive.
pub fn device_withheld<'a>(
    may_see: impl Fn(&str) -> bool,
    used: impl IntoIterator<Item = (&'a str, f64)>,
) -> bool {
    used.into_iter()
        .filter(|(u, wh)| *wh > 0.0 && !may_see(u))
        .count()
        == 1
}

/// What the viewer may see of `v`, as the statement JSON (PRODUCT §5) plus `closed`, `days`
/// and `device_withheld`; and whose figures besides their own it shows. The whole box's figures
/// (the month's and each day's `measured_wh`) are `null` where [`device_withheld`].
pub fn visible(v: &MonthView, viewer: &Viewer, only: Option<&str>) -> (Value, Vec<String>) {
    let month_withheld = device_withheld(
        |u| viewer.may_see(u),
        v.statement
            .members
            .iter()
            .map(|m| (m.user_id.as_str(), m.total_wh)),
    );
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
            let withheld = device_withheld(
                |u| viewer.may_see(u),
                d.members.iter().map(|(u, wh)| (u.as_str(), *wh)),
            );
            let measured = if withheld {
                Value::Null
            } else {
                json!(d.measured_wh)
            };
            json!({"day": d.day, "measured_wh": measured, "members": members})
        })
        .collect();
    let mut out = serde_json::to_value(&st).unwrap_or_else(|_| json!({}));
    if let Some(o) = out.as_object_mut() {
        o.insert("closed".into(), json!(v.closed));
        o.insert("days".into(), Value::Array(days));
        o.insert("device_withheld".into(), json!(month_withheld));
        if month_withheld {
            for f in DEVICE_FIELDS {
                o.insert(f.into(), Value::Null);
            }
        }
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

#[derive(Debug, Deserialize)]
pub struct HashQuery {
    pub seq: u64,
}

/// `GET /api/v1/audit/hash?seq=N` (signed in): the chain's hash after entry N, so that a head
/// noted earlier (the browser's, a monthly notice's) can be checked against the log as it is
/// now; 404 when the log has no such entry any more. A hash tells nothing about an entry.
pub async fn audit_hash(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<HashQuery>,
) -> Response {
    let web = match signin::signed_in(&state, &headers).await {
        Ok((web, _)) => web,
        Err(e) => return e.into_response(),
    };
    let seq = q.seq;
    let got = web.db(move |db| audit::hash_at(db.connection(), seq)).await;
    match got {
        Some(Ok(Some(hash))) => {
            no_store(Json(json!({"seq": seq, "hash": hash.to_string()})).into_response())
        }
        Some(Ok(None)) => {
            ApiError(StatusCode::NOT_FOUND, format!("seq: no entry {seq}")).into_response()
        }
        Some(Err(e)) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        None => ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "database task failed".into(),
        )
        .into_response(),
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
    record(web, vec![crate::maintenance::entry(viewer.actor(), on)]).await?;
    let file = web.maintenance_file.clone();
    let r = tokio::task::spawn_blocking(move || crate::maintenance::set(&file, on)).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accountant::view::Day;
    use crate::http::session::Role;

    fn member(user: &str, household: &str, total_wh: f64) -> Value {
        json!({"user_id": user, "household": household, "base_wh": 1.0, "direct_wh": total_wh - 1.0,
               "shared_wh": 0.0, "total_wh": total_wh, "media_bytes": 0, "cost": 0.0,
               "energy_cost": 0.0, "fixed_cost": 0.0, "storage_cost": 0.0, "minutes_present": 60})
    }

    /// A month on a box with `members` (user, household, Wh): 100 Wh measured, of which 10 Wh
    /// other services and 5 Wh unattributed.
    fn month(members: &[(&str, &str, f64)]) -> MonthView {
        let statement = serde_json::from_value(json!({
            "period": "2026-11", "start": "2026-11-01T00:00:00Z", "end": "2026-12-01T00:00:00Z",
            "measured_wh": 100.0, "other_services_wh": 10.0, "estimated_wh": 0.0, "base_wh": 30.0,
            "dynamic_wh": 55.0, "unattributed_wh": 5.0,
            "members": members.iter().map(|(u, h, wh)| member(u, h, *wh)).collect::<Vec<_>>(),
            "households": [], "tariff": 0.3, "currency": "EUR", "base_watts": 2.5,
            "base_source": "configured", "base_history_minutes": 0, "minutes": 60,
            "minutes_measured": 60, "period_months": 1.0, "fixed_costs": [],
            "storage_price_per_gib_month": 0.0, "unattributed_fixed_cost": 0.0
        }))
        .unwrap();
        // Each day's figures of the members this month has.
        let day = |d: &str, who: &[(&str, f64)]| Day {
            day: d.to_string(),
            measured_wh: 50.0,
            members: who
                .iter()
                .filter(|(u, _)| members.iter().any(|(m, _, _)| m == u))
                .map(|(u, wh)| (u.to_string(), *wh))
                .collect(),
        };
        MonthView {
            statement,
            closed: true,
            days: vec![
                // Both others used the box on the 1st; only bob on the 2nd.
                day(
                    "2026-11-01",
                    &[("@alice:t", 10.0), ("@bob:t", 20.0), ("@carol:t", 5.0)],
                ),
                day(
                    "2026-11-02",
                    &[("@alice:t", 10.0), ("@bob:t", 15.0), ("@carol:t", 0.0)],
                ),
            ],
        }
    }

    fn device(v: &Value) -> Vec<Value> {
        DEVICE_FIELDS.iter().map(|f| v[*f].clone()).collect()
    }

    #[test]
    fn a_member_of_two_sees_no_whole_box_figure_that_gives_the_other_away() {
        let v = month(&[("@alice:t", "a", 40.0), ("@bob:t", "b", 45.0)]);
        let alice = Viewer::for_test("@alice:t", Role::Member, None);
        let (out, others) = visible(&v, &alice, None);
        assert!(others.is_empty());
        assert_eq!(out["device_withheld"], json!(true));
        assert!(device(&out).iter().all(Value::is_null), "{out}");
        assert!(out["days"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["measured_wh"].is_null()));
        // 100 - 10 - 5 - 40 = bob's 45: nothing in the answer carries 100, 10 or 5 any more.
        let text = out.to_string();
        assert!(!text.contains("\"measured_wh\":100"), "{text}");
        assert!(!text.contains("@bob:t"));

        // A server admin sees everyone: all figures.
        let admin = Viewer::for_test("@root:t", Role::ServerAdmin, None);
        let (out, _) = visible(&v, &admin, None);
        assert_eq!(out["device_withheld"], json!(false));
        assert_eq!(out["measured_wh"], json!(100.0));
        assert_eq!(out["days"][1]["measured_wh"], json!(50.0));
    }

    #[test]
    fn two_others_make_a_sum_not_a_person_but_each_day_is_checked_alone() {
        let v = month(&[
            ("@alice:t", "a", 20.0),
            ("@bob:t", "b", 35.0),
            ("@carol:t", "c", 5.0),
        ]);
        let alice = Viewer::for_test("@alice:t", Role::Member, None);
        let (out, _) = visible(&v, &alice, None);
        assert_eq!(out["device_withheld"], json!(false));
        assert_eq!(out["measured_wh"], json!(100.0));
        assert_eq!(
            out["days"][0]["measured_wh"],
            json!(50.0),
            "bob and carol on the 1st"
        );
        assert!(
            out["days"][1]["measured_wh"].is_null(),
            "only bob on the 2nd"
        );

        // A household admin who sees bob: carol is the one left, so the month is withheld.
        let hh = Viewer::for_test(
            "@alice:t",
            Role::HouseholdAdmin,
            Some(("a".into(), vec!["@alice:t".into(), "@bob:t".into()])),
        );
        let (out, others) = visible(&v, &hh, None);
        assert_eq!(others, vec!["@bob:t".to_string()]);
        assert_eq!(out["device_withheld"], json!(true));
        assert!(device(&out).iter().all(Value::is_null));
        assert!(
            out["days"][0]["measured_wh"].is_null(),
            "carol alone beyond alice's view"
        );
        assert!(
            !out["days"][1]["measured_wh"].is_null(),
            "carol used nothing on the 2nd"
        );
    }

    #[test]
    fn alone_on_the_box_a_member_sees_it_all() {
        let v = month(&[("@alice:t", "a", 85.0)]);
        let alice = Viewer::for_test("@alice:t", Role::Member, None);
        let (out, _) = visible(&v, &alice, None);
        assert_eq!(out["device_withheld"], json!(false));
        assert_eq!(out["measured_wh"], json!(100.0));
    }
}
