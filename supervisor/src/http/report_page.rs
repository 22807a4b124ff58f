//! The monthly energy report on the page (PRODUCT §1, step 4; `crate::report`).
//!
//! - `/report` (HTML) and `GET /api/v1/report` (JSON): every signed-in member sees whether the
//!   box sends the report, the next report exactly as it will be sent (`report::gather::preview`),
//!   the outbox (each month's report: made, sent, retries, last error) and the token stock.
//!   Nothing in it is about a person, so a view is not an audit entry.
//! - `POST /report` (form) and `POST /api/v1/report {"on": bool}`: a server admin switches it,
//!   with the session's CSRF token. The choice and its `report_choice` entry are one transaction
//!   (`report::outbox::choose`); switching on wakes the sender. Anyone else gets 403 and a
//!   `denied` entry.

use super::i18n::{self, fill, Lang};
use super::invite::{db_failed, deny, no_store, parse, signed_in_csrf};
use super::member_pages::{error_page, form_viewer, frame, page_viewer, redirect};
use super::pages::{html, Frame, Page};
use super::report_text::ReportText;
use super::session::Role;
use super::signin::{self, ApiError, Viewer};
use super::{AppState, Web};
use crate::audit::{Action, NewEntry};
use crate::config::ReportConfig;
use crate::report::gather::{self, Preview, Stage};
use crate::report::outbox;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use report_wire::Hardware;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;

/// What the report's doors need beyond [`Web`].
pub struct Reports {
    pub config: ReportConfig,
    /// The board's class, as the report names it.
    pub hardware: Hardware,
    /// `relay.toml`: present once the box is enrolled at a cooperative (tokens need it).
    pub relay_config: PathBuf,
    /// The sender's wake-up: a pass right after the family opts in.
    pub wake: Arc<tokio::sync::Notify>,
}

/// Where the report stands, for the page and the JSON.
pub struct View {
    pub allowed: bool,
    pub opted_in_at: Option<i64>,
    pub enrolled: bool,
    pub tokens: usize,
    pub outbox: Vec<outbox::Row>,
    /// The next report, or why there is none to show.
    pub preview: Result<Preview, String>,
}

fn reports(web: &Web) -> Result<Arc<Reports>, ApiError> {
    web.reports.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "reports are not part of this server".into(),
        )
    })
}

fn sql_error(e: rusqlite::Error) -> ApiError {
    tracing::error!("report page: {e}");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "report: database error".into(),
    )
}

/// Read where the report stands and make the preview.
pub async fn view(web: &Arc<Web>) -> Result<View, ApiError> {
    let r = reports(web)?;
    let version = gather::synapse_version(web.synapse.base()).await;
    let now_s = (web.now_s)();
    let (config, hardware) = (r.config.clone(), r.hardware);
    let (opted_in_at, tokens, rows, preview) = web
        .db(move |db| {
            let conn = db.connection();
            let opted = outbox::opted_in_at(conn)?;
            let tokens = outbox::unused_tokens_any(conn)?;
            let rows = outbox::all(conn)?;
            let preview =
                gather::preview(db, &config, hardware, version, now_s).map_err(|e| e.to_string());
            Ok::<_, rusqlite::Error>((opted, tokens, rows, preview))
        })
        .await
        .ok_or_else(db_failed)?
        .map_err(sql_error)?;
    Ok(View {
        allowed: r.config.enabled,
        opted_in_at,
        enrolled: r.relay_config.is_file(),
        tokens,
        outbox: rows,
        preview,
    })
}

/// A server admin's choice (see the module docs); `Ok(false)`: it already was so.
pub async fn choose(web: &Arc<Web>, viewer: &Viewer, on: bool) -> Result<bool, ApiError> {
    let r = reports(web)?;
    if viewer.role != Role::ServerAdmin {
        return Err(deny(
            web,
            viewer,
            "report_choice",
            None,
            "only a server admin may switch the report",
        )
        .await);
    }
    let by = NewEntry::new(viewer.actor(), Action::ReportChoice);
    let now_s = (web.now_s)();
    let changed = web
        .db(move |db| outbox::choose(db.connection_mut(), on, by, now_s))
        .await
        .ok_or_else(db_failed)?
        .map_err(|e| {
            tracing::error!("report choice: {e}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "report: database error".into(),
            )
        })?;
    if changed {
        tracing::info!(by = %viewer.user_id, on, "the report was switched");
        if on {
            r.wake.notify_one();
        }
    }
    Ok(changed)
}

pub struct OutboxRow {
    pub month: String,
    pub state: &'static str,
    pub when: String,
    pub attempts: u32,
    pub error: String,
}

#[derive(Template)]
#[template(path = "report.html")]
pub struct ReportPage {
    pub frame: Frame,
    pub t: &'static ReportText,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub allowed: bool,
    pub choice: String,
    pub on: bool,
    pub server_admin: bool,
    pub enrolled: bool,
    pub tokens: String,
    /// The preview's JSON, and what it is.
    pub preview: Option<String>,
    pub preview_notes: Vec<String>,
    pub outbox: Vec<OutboxRow>,
}

fn render(lang: Lang, viewer: &Viewer, v: View, notice: Option<&'static str>) -> Response {
    let t = ReportText::of(lang);
    let (preview, mut preview_notes) = match v.preview {
        Ok(p) => {
            let stage = match p.stage {
                Stage::Draft => t.stage_draft,
                Stage::Ready => t.stage_ready,
                Stage::SoFar => t.stage_so_far,
            };
            (Some(p.json), vec![fill(stage, &[&p.month])])
        }
        Err(e) => (None, vec![fill(t.preview_failed, &[&e])]),
    };
    if !v.allowed {
        preview_notes.push(t.not_sent_not_allowed.to_string());
    } else if v.opted_in_at.is_none() {
        preview_notes.push(t.not_sent_off.to_string());
    }
    let page = ReportPage {
        frame: frame(lang, Page::Report, Some(viewer)),
        t,
        csrf: viewer.csrf.clone(),
        notice,
        allowed: v.allowed,
        choice: match v.opted_in_at {
            Some(at) => fill(t.choice_on, &[&i18n::local_time(at)]),
            None => t.choice_off.to_string(),
        },
        on: v.opted_in_at.is_some(),
        server_admin: viewer.role == Role::ServerAdmin,
        enrolled: v.enrolled,
        tokens: fill(t.tokens, &[&v.tokens.to_string()]),
        preview,
        preview_notes,
        outbox: v
            .outbox
            .into_iter()
            .rev()
            .map(|r| OutboxRow {
                state: t.state(&r.state),
                when: match r.delivered_at {
                    Some(at) if r.state == "delivered" => {
                        fill(t.delivered_at, &[&i18n::local_time(at)])
                    }
                    _ => fill(t.next_attempt, &[&i18n::local_time(r.next_attempt_at)]),
                },
                attempts: r.attempts,
                error: r.last_error.unwrap_or_default(),
                month: r.month,
            })
            .collect(),
    };
    no_store(html(lang, page.render()))
}

/// `GET /report` (`?done=on|off` after a change says so).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<super::member_pages::Done>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match page_viewer(&state, &headers, Page::Report.path()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = ReportText::of(lang);
    let notice = match q.done.as_deref() {
        Some("on") => Some(t.changed_on),
        Some("off") => Some(t.changed_off),
        _ => None,
    };
    match view(&web).await {
        Ok(v) => render(lang, &viewer, v, notice),
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Debug, Deserialize)]
pub struct ChoiceForm {
    pub csrf: Option<String>,
    /// "on" or "off".
    pub report: Option<String>,
}

/// `POST /report` (form): then back to the page, which says what changed.
pub async fn page_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ChoiceForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) =
        match form_viewer(&state, &headers, Page::Report.path(), f.csrf.as_deref()).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let on = match f.report.as_deref() {
        Some("on") => true,
        Some("off") => false,
        _ => return error_page(lang, StatusCode::BAD_REQUEST, "report: \"on\" or \"off\""),
    };
    match choose(&web, &viewer, on).await {
        Ok(_) => redirect(
            if on {
                "/report?done=on"
            } else {
                "/report?done=off"
            },
            &[],
        ),
        Err(e) if e.0 == StatusCode::FORBIDDEN => {
            error_page(lang, e.0, ReportText::of(lang).may_not)
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

fn view_json(v: View) -> serde_json::Value {
    let (preview, month, stage) = match &v.preview {
        Ok(p) => (
            serde_json::from_str::<serde_json::Value>(&p.json).unwrap_or_default(),
            Some(p.month.clone()),
            Some(match p.stage {
                Stage::Draft => "draft",
                Stage::Ready => "ready",
                Stage::SoFar => "so_far",
            }),
        ),
        Err(_) => (serde_json::Value::Null, None, None),
    };
    json!({
        "allowed": v.allowed,
        "on": v.opted_in_at.is_some(),
        "opted_in_at": v.opted_in_at,
        "enrolled": v.enrolled,
        "unused_tokens": v.tokens,
        "next": {
            "month": month,
            "stage": stage,
            "report": preview,
            "error": v.preview.as_ref().err(),
        },
        "outbox": v.outbox.iter().map(|r| json!({
            "month": r.month,
            "state": r.state,
            "attempts": r.attempts,
            "next_attempt_at": (r.state != "delivered").then_some(r.next_attempt_at),
            "delivered_at": r.delivered_at,
            "last_error": r.last_error,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/report`.
pub async fn api_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, _viewer) = signin::signed_in(&state, &headers).await?;
        Ok::<_, ApiError>(view_json(view(&web).await?))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Choice {
    pub on: bool,
}

/// `POST /api/v1/report {"on": bool}` → `{"on": bool, "changed": bool}`.
pub async fn api_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        let c: Choice = parse(&body)?;
        let changed = choose(&web, &viewer, c.on).await?;
        Ok::<_, ApiError>(json!({ "on": c.on, "changed": changed }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}
