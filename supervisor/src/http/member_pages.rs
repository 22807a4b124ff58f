//! The signed-in HTML pages: `/signin` (a form; no script needed), `/signout`, `/statement`
//! and `/audit`. They use the same doors as the JSON API (`signin::sign_in`,
//! `member_api::month`, `member_api::audit_page`), so what a role may see and what is audited
//! is decided in one place. Without a session the pages send the browser to `/signin`.
//!
//! Per-member figures are shown by month and by day, never finer (PRODUCT §6); the charts show
//! the viewer's own energy only, so they need no audit entry.

use super::i18n::{self, fill, Lang};
use super::member_api::{self, visible};
use super::member_text::MemberText;
use super::pages::{html, local_path, Account, Frame, Page};
use super::signin::{self, Refusal, Viewer};
use super::AppState;
use crate::accounting::model::Period;
use crate::audit::{Action, Actor};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use chrono::Local;
use serde::Deserialize;
use std::fmt::Write as _;

/// Energy in words: Wh below 1 kWh (two decimals below 10 Wh), else kWh.
pub fn energy(lang: Lang, wh: f64) -> String {
    if wh.abs() < 10.0 {
        format!("{} Wh", lang.num(wh, 2))
    } else if wh.abs() < 1000.0 {
        format!("{} Wh", lang.num(wh, 1))
    } else {
        format!("{} kWh", lang.num(wh / 1000.0, 2))
    }
}

pub(crate) fn frame(lang: Lang, page: Page, viewer: Option<&Viewer>) -> Frame {
    let mut f = Frame::new(lang, page, crate::clock::local_now());
    if let Some(v) = viewer {
        f = f.for_role(v.role, page);
    }
    f.account = viewer.map(|v| Account {
        user_id: v.user_id.clone(),
        csrf: v.csrf.clone(),
    });
    f
}

/// `?done=…`: what a page's form changed, for the page it redirects back to to say.
#[derive(Debug, serde::Deserialize)]
pub struct Done {
    pub done: Option<String>,
}

pub(crate) fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn to_signin(next: &str) -> Response {
    let mut to = String::from("/signin?next=");
    for b in next.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            to.push(b as char);
        } else {
            let _ = write!(to, "%{b:02X}");
        }
    }
    redirect(&to, &[])
}

pub(crate) fn error_page(lang: Lang, status: StatusCode, message: &str) -> Response {
    let mut r = html(
        lang,
        Ok(format!(
            "<!doctype html><meta charset=utf-8><title>hearth</title><p>{}</p><p><a href=\"/\">hearth</a></p>",
            askama_escape(message)
        )),
    );
    *r.status_mut() = status;
    r
}

fn askama_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The signed-in viewer of a page request, or what to answer instead: the sign-in form (coming
/// back to `path` afterwards) or the error.
pub(crate) async fn page_viewer(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> Result<(std::sync::Arc<super::Web>, Viewer), Response> {
    let web = signin::web(state).map_err(IntoResponse::into_response)?;
    match signin::viewer(&web, headers).await {
        Ok(Some(v)) => Ok((web, v)),
        Ok(None) => Err(to_signin(path)),
        Err(e) => Err(e.into_response()),
    }
}

/// The signed-in viewer of a form post on `path` whose CSRF token (`csrf`, the form's field,
/// or the header) is this session's; else the response: the sign-in form, or a 403 page that
/// says the form was stale.
pub(crate) async fn form_viewer(
    state: &AppState,
    headers: &HeaderMap,
    path: &str,
    csrf: Option<&str>,
) -> Result<(std::sync::Arc<super::Web>, Viewer), Response> {
    let (web, viewer) = page_viewer(state, headers, path).await?;
    if !viewer.csrf_ok(headers, csrf) {
        let lang = super::i18n::of_request(headers);
        let m = super::member_text::MemberText::of(lang);
        return Err(error_page(lang, StatusCode::FORBIDDEN, m.form_stale));
    }
    Ok((web, viewer))
}

/// Middleware: only signed-in members pass; a page request goes to the sign-in form, an API
/// request gets 401.
pub async fn require_session(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let signed_in = match &state.web {
        Some(web) => matches!(signin::viewer(web, req.headers()).await, Ok(Some(_))),
        None => false,
    };
    if signed_in {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    if path.starts_with("/api/") {
        signin::ApiError(StatusCode::UNAUTHORIZED, "sign in first".into()).into_response()
    } else {
        to_signin(&path)
    }
}

#[derive(Template)]
#[template(path = "signin.html")]
pub struct SignInPage {
    pub frame: Frame,
    pub next: String,
    pub user: String,
    pub error: Option<String>,
    /// The first-run screen is still waiting for its code: link to it.
    pub setup_open: bool,
}

fn setup_open(state: &AppState) -> bool {
    state
        .web
        .as_ref()
        .is_some_and(|w| std::fs::metadata(&w.setup_code_file).is_ok_and(|m| m.len() > 0))
}

#[derive(Debug, Deserialize)]
pub struct NextQuery {
    pub next: Option<String>,
}

/// `GET /signin`.
pub async fn signin_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<NextQuery>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let page = SignInPage {
        frame: frame(lang, Page::SignIn, None),
        next: local_path(q.next.as_deref()).to_string(),
        user: String::new(),
        error: None,
        setup_open: setup_open(&state),
    };
    html(lang, page.render())
}

#[derive(Debug, Deserialize)]
pub struct SignInForm {
    pub user: String,
    pub password: String,
    pub next: Option<String>,
}

/// `POST /signin` (form): on success to `next`, else the form again with the reason.
pub async fn signin_post(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<SignInForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let m = MemberText::of(lang);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let next = local_path(f.next.as_deref()).to_string();
    let next = if next == "/" {
        "/statement".to_string()
    } else {
        next
    };
    match signin::sign_in(
        &web,
        signin::peer(&parts),
        &parts.headers,
        &f.user,
        &f.password,
    )
    .await
    {
        Ok(s) => redirect(&next, &s.cookies),
        Err(r) => {
            let error = match &r {
                Refusal::BadRequest(_) => m.signin_bad.to_string(),
                Refusal::CrossSite => m.signin_cross_site.to_string(),
                Refusal::WrongPassword => m.signin_wrong.to_string(),
                Refusal::Limited(d) => fill(m.signin_limited, &[&d.as_secs().max(1).to_string()]),
                Refusal::Unavailable => m.signin_unavailable.to_string(),
            };
            let page = SignInPage {
                frame: frame(lang, Page::SignIn, None),
                next,
                user: f.user.chars().take(255).collect(),
                error: Some(error),
                setup_open: setup_open(&state),
            };
            let mut resp = html(lang, page.render());
            *resp.status_mut() = r.status();
            if let Refusal::Limited(d) = r {
                if let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /signout` (form with the CSRF token).
pub async fn signout_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    match signin::viewer(&web, &headers).await {
        Ok(Some(v)) if v.csrf_ok(&headers, f.csrf.as_deref()) => {
            let cookies = signin::sign_out(&web, &v, &headers);
            redirect("/", &cookies)
        }
        Ok(Some(_)) => error_page(lang, StatusCode::FORBIDDEN, "missing or wrong CSRF token"),
        _ => redirect("/", &[]),
    }
}

/// One bar of a chart.
#[derive(Debug)]
pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub title: String,
}

/// A small server-drawn bar chart (no script, no inline style: the CSP allows neither).
#[derive(Debug)]
pub struct Bars {
    pub width: u32,
    pub height: u32,
    pub bars: Vec<Bar>,
    /// (x, text) under the bars.
    pub labels: Vec<(String, String)>,
    /// The value at the top line.
    pub top: String,
    pub summary: String,
}

impl Bars {
    /// `values`: (label, short label or "", Wh).
    pub fn new(lang: Lang, values: &[(String, String, f64)]) -> Bars {
        let (width, height, top_pad, bottom) = (640u32, 180u32, 16.0, 24.0);
        let max = values.iter().map(|v| v.2).fold(0.0f64, f64::max);
        let scale = if max > 0.0 { max } else { 1.0 };
        let n = values.len().max(1) as f64;
        let slot = f64::from(width) / n;
        let usable = f64::from(height) - top_pad - bottom;
        let bars = values
            .iter()
            .enumerate()
            .map(|(i, (label, _, wh))| {
                let h = (wh.max(0.0) / scale) * usable;
                Bar {
                    x: format!("{:.1}", i as f64 * slot + slot * 0.15),
                    y: format!("{:.1}", top_pad + usable - h),
                    w: format!("{:.1}", slot * 0.7),
                    h: format!("{:.1}", h),
                    title: format!("{label}: {}", energy(lang, *wh)),
                }
            })
            .collect();
        let labels = values
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.1.is_empty())
            .map(|(i, v)| (format!("{:.1}", i as f64 * slot + slot / 2.0), v.1.clone()))
            .collect();
        let total: f64 = values.iter().map(|v| v.2).sum();
        Bars {
            width,
            height,
            bars,
            labels,
            top: energy(lang, max),
            summary: format!(
                "{} × {}: {}",
                values.len(),
                energy(lang, max),
                energy(lang, total)
            ),
        }
    }
}

/// A member's figures, formatted.
#[derive(Debug)]
pub struct Row {
    pub user_id: String,
    pub household: String,
    pub base: String,
    pub direct: String,
    pub shared: String,
    pub total: String,
    pub cost: String,
    pub media: String,
    pub me: bool,
}

#[derive(Debug)]
pub struct MonthLink {
    pub label: String,
    pub href: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "statement.html")]
pub struct StatementPage {
    pub frame: Frame,
    pub role: &'static str,
    pub heading: String,
    pub months: Vec<MonthLink>,
    pub own: Option<Row>,
    pub not_member: bool,
    pub rows: Vec<Row>,
    pub households: Vec<(String, String, String)>,
    pub device: Vec<(&'static str, String)>,
    pub days: Option<Bars>,
    pub by_month: Option<Bars>,
    /// What the viewer's prepaid household paid and used (the budgets' last pass).
    pub prepaid: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PeriodQuery {
    pub period: Option<String>,
}

/// One member's line; `currency` empty: no tariff was set, the cost is a dash.
fn row(lang: Lang, m: &serde_json::Value, currency: &str, me: &str) -> Row {
    let f = |k: &str| m[k].as_f64().unwrap_or(0.0);
    let user_id = m["user_id"].as_str().unwrap_or_default().to_string();
    Row {
        me: user_id == me,
        household: m["household"].as_str().unwrap_or_default().to_string(),
        base: energy(lang, f("base_wh")),
        direct: energy(lang, f("direct_wh")),
        shared: energy(lang, f("shared_wh")),
        total: energy(lang, f("total_wh")),
        cost: if currency.is_empty() {
            "—".to_string()
        } else {
            lang.money(f("cost"), currency)
        },
        media: format!("{} MB", lang.num(f("media_bytes") / 1e6, 1)),
        user_id,
    }
}

/// `GET /statement?period=YYYY-MM`.
pub async fn statement_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let m = MemberText::of(lang);
    let (web, viewer) = match page_viewer(&state, &headers, "/statement").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let now_s = (web.now_s)();
    let current = member_api::current_period(now_s);
    let period = match q.period.as_deref() {
        None | Some("") => current.clone(),
        Some(p) => match Period::parse_month(p) {
            Ok(p) => p,
            Err(e) => return error_page(lang, StatusCode::BAD_REQUEST, &format!("period: {e}")),
        },
    };
    // The closed months (their stored statements) for the month links and the months chart.
    let closed = web
        .db(|db| {
            let labels = db.statement_periods().unwrap_or_default();
            labels
                .into_iter()
                .rev()
                .take(12)
                .filter_map(|l| {
                    let s = db.stored_statement(&l).ok()??;
                    let st: crate::accounting::statement::Statement =
                        serde_json::from_str(&s.json).ok()?;
                    Some((l, st))
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
    let mut months: Vec<MonthLink> = closed
        .iter()
        .rev()
        .map(|(l, _)| MonthLink {
            label: l.clone(),
            href: format!("/statement?period={l}"),
            current: *l == period.label(),
        })
        .collect();
    if !months.iter().any(|l| l.label == current.label()) {
        months.push(MonthLink {
            label: current.label().to_string(),
            href: "/statement".into(),
            current: current.label() == period.label(),
        });
    }
    let month = match member_api::month(&web, period.clone()).await {
        Ok(m) => m,
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let mut page = StatementPage {
        frame: frame(lang, Page::Statement, Some(&viewer)),
        role: m.role(viewer.role),
        heading: m.statement_none.to_string(),
        months,
        own: None,
        not_member: false,
        rows: Vec::new(),
        households: Vec::new(),
        device: Vec::new(),
        days: None,
        by_month: None,
        prepaid: web.budgets.as_ref().and_then(|b| {
            let p = b.limits.read().unwrap_or_else(|p| p.into_inner());
            let s = p
                .members
                .get(&viewer.user_id)?
                .standings
                .iter()
                .find(|s| s.kind == crate::budget::assess::Kind::Prepaid)?;
            let currency = web.accounting.currency.as_str();
            Some(fill(
                m.prepaid_line,
                &[
                    &lang.money(s.limit, currency),
                    &lang.money(s.used, currency),
                    &lang.money(s.limit - s.used, currency),
                ],
            ))
        }),
    };
    let own_by_month: Vec<(String, String, f64)> = closed
        .iter()
        .rev()
        .map(|(l, st)| {
            let wh = st
                .members
                .iter()
                .find(|x| x.user_id == viewer.user_id)
                .map_or(0.0, |x| x.total_wh);
            (l.clone(), l.get(5..).unwrap_or(l).to_string(), wh)
        })
        .collect();
    if !own_by_month.is_empty() {
        page.by_month = Some(Bars::new(lang, &own_by_month));
    }
    if let Some(v) = month {
        let (value, others) = visible(&v, &viewer, None);
        if let Err(e) = signin::record(
            &web,
            member_api::view_entries(
                &viewer,
                Action::ViewStatement,
                &others,
                &format!("statement {}", period.label()),
            ),
        )
        .await
        {
            return error_page(lang, e.0, &e.1);
        }
        let currency = v.statement.currency.clone();
        // No cost is shown until a person set a tariff (the shipped one is a placeholder).
        let costs_shown = web
            .budgets
            .as_ref()
            .is_none_or(|b| b.tariff.read().unwrap_or_else(|p| p.into_inner()).is_some());
        page.heading = fill(
            if v.closed {
                m.statement_closed
            } else {
                m.statement_so_far
            },
            &[period.label()],
        );
        let members = value["members"].as_array().cloned().unwrap_or_default();
        page.own = members
            .iter()
            .find(|x| x["user_id"] == viewer.user_id.as_str())
            .map(|x| {
                row(
                    lang,
                    x,
                    if costs_shown { &currency } else { "" },
                    &viewer.user_id,
                )
            });
        page.not_member = page.own.is_none();
        if members.len() > 1 || (members.len() == 1 && page.own.is_none()) {
            page.rows = members
                .iter()
                .map(|x| {
                    row(
                        lang,
                        x,
                        if costs_shown { &currency } else { "" },
                        &viewer.user_id,
                    )
                })
                .collect();
        }
        page.households = value["households"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|h| {
                (
                    h["name"].as_str().unwrap_or_default().to_string(),
                    energy(lang, h["total_wh"].as_f64().unwrap_or(0.0)),
                    if costs_shown {
                        lang.money(h["cost"].as_f64().unwrap_or(0.0), &currency)
                    } else {
                        "—".to_string()
                    },
                )
            })
            .collect();
        let s = &v.statement;
        // The whole box's energy only where it gives away no single person's
        // (member_api::device_withheld): `visible` left it out then.
        let device_wh = |f: &str| value[f].as_f64().map(|wh| energy(lang, wh));
        page.device = match (
            device_wh("measured_wh"),
            device_wh("other_services_wh"),
            device_wh("estimated_wh"),
        ) {
            (Some(measured), Some(other), Some(estimated)) => vec![
                (m.measured, measured),
                (m.other_services, other),
                (m.estimated, estimated),
            ],
            _ => vec![(m.measured, m.device_withheld.to_string())],
        };
        page.device.push((
            m.base_load,
            fill(
                m.base_load_value,
                &[
                    &format!("{} W", lang.num(s.base_watts, 2)),
                    &format!("{:?}", s.base_source).to_lowercase(),
                ],
            ),
        ));
        let days: Vec<(String, String, f64)> = v
            .days
            .iter()
            .map(|d| {
                let wh = d.members.get(&viewer.user_id).copied().unwrap_or(0.0);
                let short = d
                    .day
                    .get(8..)
                    .unwrap_or("")
                    .trim_start_matches('0')
                    .to_string();
                let short = if short == "1" || short.parse::<u32>().is_ok_and(|n| n % 5 == 0) {
                    short
                } else {
                    String::new()
                };
                (d.day.clone(), short, wh)
            })
            .collect();
        if !days.is_empty() {
            page.days = Some(Bars::new(lang, &days));
        }
    }
    html(lang, page.render())
}

/// One audit entry, in words.
#[derive(Debug)]
pub struct EntryRow {
    pub seq: u64,
    pub time_iso: String,
    pub time: String,
    pub actor: String,
    pub action: &'static str,
    pub subject: String,
    pub detail: String,
    pub about_me: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub frame: Frame,
    pub head_seq: u64,
    pub head_hash: String,
    pub entries: Vec<EntryRow>,
    pub older: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct BeforeQuery {
    pub before: Option<u64>,
}

/// `GET /audit?before=SEQ`.
pub async fn audit_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<BeforeQuery>,
) -> Response {
    const PAGE: u32 = 50;
    let lang = i18n::of_request(&headers);
    let m = MemberText::of(lang);
    let (web, viewer) = match page_viewer(&state, &headers, "/audit").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (entries, head) = match member_api::audit_page(&web, &viewer, q.before, PAGE).await {
        Ok(x) => x,
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let older = (entries.len() as u32 == PAGE)
        .then(|| entries.last().map(|e| format!("/audit?before={}", e.seq)))
        .flatten();
    let rows = entries
        .iter()
        .map(|e| EntryRow {
            seq: e.seq,
            time_iso: e.time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            time: e
                .time
                .with_timezone(&Local)
                .format("%Y-%m-%d %H:%M")
                .to_string(),
            actor: match &e.actor {
                Actor::User(u) => u.clone(),
                Actor::System => m.audit_system.to_string(),
                Actor::Cli => m.audit_cli.to_string(),
            },
            action: m.action(e.action),
            about_me: e.subject.as_deref() == Some(viewer.user_id.as_str()),
            subject: e.subject.clone().unwrap_or_default(),
            detail: e
                .detail
                .iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
        .collect();
    let page = AuditPage {
        frame: frame(lang, Page::Audit, Some(&viewer)),
        head_seq: head.seq,
        head_hash: head.hash.to_string(),
        entries: rows,
        older,
    };
    html(lang, page.render())
}
