//! Accounts for the whole family: invitations, the public sign-up they open, the welcome page,
//! and a server admin's deactivation and password reset (PRODUCT §1, journeys 1 and 2).
//!
//! - `/invitations` (HTML) and `/api/v1/invitations` (JSON): a server admin or a household
//!   admin makes an invitation (for their household; a server admin chooses any, or none),
//!   sees it once as a link and a QR code, lists the open ones and revokes them. Members get
//!   403 and a `denied` entry. State changes need the session's CSRF token.
//! - `/join/{token}` (HTML) and `/api/v1/signup` (JSON), no session: the invited person
//!   chooses a user name and a password. The invitation is taken before Synapse is asked
//!   (`invite::take`, one SQL statement), given back if Synapse refuses, and completed with
//!   the new member in the household. Refused attempts count in the sign-in limiter's address
//!   bucket; unusable invitations answer 410 with a page that says why.
//! - `/accounts/deactivate|password` and `/api/v1/accounts/deactivate|password`: server
//!   admins only, CSRF, audited before Synapse is asked; the account's page sessions end.
//!
//! Every step is an audit entry: `invitation_created`, `invitation_revoked`, `invitation_used`
//! (about the new member), `signup_refused`, `account_change`, and an `admin_api_call` for
//! each call with the supervisor's token (`invite::synapse`).

use super::i18n::{self, fill, Lang};
use super::member_pages::{error_page, form_viewer, frame, page_viewer, redirect};
use super::member_text::MemberText;
use super::pages::{html, Frame, Page};
use super::session::{self, Role};
use super::setup::valid_localpart;
use super::signin::{self, record, ApiError, Viewer};
use super::{AppState, Web};
use crate::audit::{Action, Actor, NewEntry};
use crate::invite::synapse::{AccountAdmin, AdminError};
use crate::invite::{self, Invitation, State as InvState, Unusable};
use askama::Template;
use axum::extract::{Path, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;

/// The shortest password a new account or a reset may have.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// The limiter's account key for sign-ups (the address bucket is what holds a guesser).
const LIMIT_KEY: &str = "signup";

/// One sign-up at a time talks to Synapse: `PUT` creates or changes an account, so between
/// "is the name free" and the creation no other sign-up from this page may come.
static SIGNUPS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) fn db_failed() -> ApiError {
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "database task failed".into(),
    )
}

fn forbidden_csrf() -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into())
}

/// `viewer` tried `what` and may not: 403, audited as `denied`.
pub(crate) async fn deny(
    web: &Arc<Web>,
    viewer: &Viewer,
    what: &str,
    about: Option<&str>,
    message: &str,
) -> ApiError {
    let mut e = NewEntry::new(viewer.actor(), Action::Denied)
        .detail("what", what)
        .detail("role", viewer.role.as_str());
    if let Some(u) = about.filter(|u| crate::accounting::members::check_user_id(u).is_ok()) {
        e = e.about(u);
    }
    let _ = record(web, vec![e]).await;
    ApiError(StatusCode::FORBIDDEN, message.to_string())
}

/// The household an invitation from `viewer` goes to, given what they asked for (`None` or
/// empty: their own; a server admin's own is none).
fn household_for(viewer: &Viewer, asked: Option<&str>) -> Result<Option<String>, &'static str> {
    let asked = asked.map(str::trim).filter(|h| !h.is_empty());
    match viewer.role {
        Role::ServerAdmin => Ok(asked.map(str::to_string)),
        Role::HouseholdAdmin => {
            let own = viewer.household.as_ref().map(|(h, _)| h.as_str());
            match (asked, own) {
                (None, Some(o)) => Ok(Some(o.to_string())),
                (Some(a), Some(o)) if a == o => Ok(Some(o.to_string())),
                _ => Err("a household admin invites into their own household only"),
            }
        }
        Role::Member => Err("only server admins and household admins may invite"),
    }
}

/// Make an invitation (see the module docs); returns it and its token.
pub async fn create(
    web: &Arc<Web>,
    viewer: &Viewer,
    household: Option<&str>,
    days: Option<u32>,
) -> Result<(Invitation, String), ApiError> {
    let household = match household_for(viewer, household) {
        Ok(h) => h,
        Err(why) => return Err(deny(web, viewer, "invitation", None, why).await),
    };
    let inviter = viewer.user_id.clone();
    let now =
        chrono::DateTime::from_timestamp((web.now_s)(), 0).unwrap_or_else(crate::clock::utc_now);
    web.db(move |db| {
        invite::create(
            db.connection_mut(),
            &inviter,
            household.as_deref(),
            days,
            now,
        )
    })
    .await
    .ok_or_else(db_failed)?
    .map_err(|e| match e {
        invite::InviteError::UnknownHousehold(_) | invite::InviteError::BadDays(_) => {
            ApiError(StatusCode::BAD_REQUEST, e.to_string())
        }
        e => {
            tracing::error!("invitation: {e}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invitation: database error".into(),
            )
        }
    })
}

/// The open invitations `viewer` may see: all for a server admin, their own for a household
/// admin; a member gets 403 (audited).
pub async fn list(web: &Arc<Web>, viewer: &Viewer) -> Result<Vec<Invitation>, ApiError> {
    let only = match viewer.role {
        Role::ServerAdmin => None,
        Role::HouseholdAdmin => Some(viewer.user_id.clone()),
        Role::Member => {
            return Err(deny(
                web,
                viewer,
                "invitations",
                None,
                "only server admins and household admins may invite",
            )
            .await)
        }
    };
    let now_s = (web.now_s)();
    web.db(move |db| invite::open(db.connection(), only.as_deref(), now_s))
        .await
        .ok_or_else(db_failed)?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Revoke invitation `id`: its inviter or a server admin.
pub async fn revoke(web: &Arc<Web>, viewer: &Viewer, id: i64) -> Result<(), ApiError> {
    let inv = web
        .db(move |db| invite::get(db.connection(), id))
        .await
        .ok_or_else(db_failed)?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let Some(inv) = inv else {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no invitation {id}"),
        ));
    };
    if viewer.role != Role::ServerAdmin && inv.inviter != viewer.user_id {
        return Err(deny(
            web,
            viewer,
            "revoke invitation",
            None,
            "only its inviter or a server admin may revoke an invitation",
        )
        .await);
    }
    let by = viewer.user_id.clone();
    let now =
        chrono::DateTime::from_timestamp((web.now_s)(), 0).unwrap_or_else(crate::clock::utc_now);
    let revoked = web
        .db(move |db| invite::revoke(db.connection_mut(), id, &by, now))
        .await
        .ok_or_else(db_failed)?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if revoked {
        Ok(())
    } else {
        Err(ApiError(
            StatusCode::GONE,
            format!("invitation {id} is not open any more"),
        ))
    }
}

/// The link of a token, on the name the inviter's browser reached the page by.
pub fn link(headers: &HeaderMap, web: &Web, token: &str) -> String {
    let scheme = if session::over_https(headers, web.https) {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("hearth.local");
    format!("{scheme}://{host}/join/{token}")
}

/// Why a sign-up did not create an account.
#[derive(Debug, Clone, PartialEq)]
pub enum Refused {
    Limited(std::time::Duration),
    Unknown,
    Gone(InvState),
    CrossSite,
    BadUser,
    BadPassword,
    Taken(String),
    Unavailable,
}

impl Refused {
    pub fn status(&self) -> StatusCode {
        match self {
            Refused::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refused::Unknown => StatusCode::NOT_FOUND,
            Refused::Gone(_) => StatusCode::GONE,
            Refused::CrossSite => StatusCode::FORBIDDEN,
            Refused::BadUser | Refused::BadPassword => StatusCode::BAD_REQUEST,
            Refused::Taken(_) => StatusCode::CONFLICT,
            Refused::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// In words, in `lang`.
    pub fn message(&self, lang: Lang) -> String {
        let m = MemberText::of(lang);
        match self {
            Refused::Limited(d) => fill(m.signin_limited, &[&d.as_secs().max(1).to_string()]),
            Refused::Unknown => m.join_unknown.into(),
            Refused::Gone(InvState::Expired) => m.join_expired.into(),
            Refused::Gone(InvState::Revoked) => m.join_revoked.into(),
            Refused::Gone(_) => m.join_used.into(),
            Refused::CrossSite => m.signin_cross_site.into(),
            Refused::BadUser => m.setup_bad_user.into(),
            Refused::BadPassword => m.setup_bad_password.into(),
            Refused::Taken(_) => m.setup_user_exists.into(),
            Refused::Unavailable => m.signin_unavailable.into(),
        }
    }
}

/// A new member.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    pub user_id: String,
    pub localpart: String,
    pub server_name: String,
    pub household: Option<String>,
}

/// A user name as typed (`Alice`, `@alice`, `@alice:server`) → the localpart.
pub fn localpart_of(user: &str) -> String {
    let u = user.trim();
    let u = u.strip_prefix('@').unwrap_or(u);
    u.split(':').next().unwrap_or(u).to_lowercase()
}

/// The refusal's audit entry (about nobody: the account does not exist, or is someone else's).
fn refused_entry(reason: &str, invitation: Option<i64>) -> NewEntry {
    let e = NewEntry::new(Actor::System, Action::SignupRefused).detail("reason", reason);
    match invitation {
        Some(id) => e.detail("invitation", id),
        None => e,
    }
}

/// A failed attempt for the limiter; the moment it empties a bucket is worth an entry.
async fn count_failure(
    web: &Arc<Web>,
    addr: Option<IpAddr>,
    reason: &str,
    invitation: Option<i64>,
) {
    let emptied = web.limiter.failed(addr, LIMIT_KEY);
    if invitation.is_some() || emptied {
        let reason = if emptied {
            format!("{reason}_limit_reached")
        } else {
            reason.to_string()
        };
        let _ = record(web, vec![refused_entry(&reason, invitation)]).await;
    }
}

/// Where the invitation of `token` stands, for the sign-up page (read only).
pub async fn lookup(web: &Arc<Web>, token: &str) -> Result<Result<Invitation, Refused>, ApiError> {
    let t = token.to_string();
    let now_s = (web.now_s)();
    let inv = web
        .db(move |db| invite::find(db.connection(), &t))
        .await
        .ok_or_else(db_failed)?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(match inv {
        None => Err(Refused::Unknown),
        Some(i) => match i.state(now_s) {
            InvState::Open => Ok(i),
            s => Err(Refused::Gone(s)),
        },
    })
}

/// Create the account of an invitation (see the module docs).
pub async fn sign_up(
    web: &Arc<Web>,
    addr: Option<IpAddr>,
    token: &str,
    user: &str,
    password: &str,
) -> Result<Joined, Refused> {
    if let Err(l) = web.limiter.check(addr, LIMIT_KEY, true) {
        return Err(Refused::Limited(l.retry_after));
    }
    let token = token.trim();
    if token.is_empty() || token.len() > 128 {
        count_failure(web, addr, "unknown_invitation", None).await;
        return Err(Refused::Unknown);
    }
    // Gone or unknown comes first: a dead link says so whatever was typed.
    match lookup(web, token).await {
        Ok(Ok(_)) => {}
        Ok(Err(Refused::Unknown)) => {
            count_failure(web, addr, "unknown_invitation", None).await;
            return Err(Refused::Unknown);
        }
        Ok(Err(r)) => {
            let id = web
                .db({
                    let t = token.to_string();
                    move |db| {
                        invite::find(db.connection(), &t)
                            .ok()
                            .flatten()
                            .map(|i| i.id)
                    }
                })
                .await
                .flatten();
            if let Refused::Gone(s) = &r {
                count_failure(web, addr, s.as_str(), id).await;
            }
            return Err(r);
        }
        Err(_) => return Err(Refused::Unavailable),
    }
    let localpart = localpart_of(user);
    if !valid_localpart(&localpart) {
        return Err(Refused::BadUser);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS || password.len() > 1024 {
        return Err(Refused::BadPassword);
    }
    let admin = AccountAdmin::new(web.synapse.base(), &web.admin_token).map_err(|e| {
        tracing::warn!("sign-up: {e}");
        Refused::Unavailable
    })?;
    let server_name = admin.server_name().await.map_err(|e| {
        tracing::warn!("sign-up: {e}");
        Refused::Unavailable
    })?;
    let user_id = format!("@{localpart}:{server_name}");
    if crate::accounting::members::check_user_id(&user_id).is_err() {
        return Err(Refused::BadUser);
    }

    let _one_at_a_time = SIGNUPS.lock().await;
    let now_s = (web.now_s)();
    let t = token.to_string();
    let taken = web
        .db(move |db| invite::take(db.connection_mut(), &t, now_s))
        .await
        .ok_or(Refused::Unavailable)?
        .map_err(|e| {
            tracing::error!("sign-up: {e}");
            Refused::Unavailable
        })?;
    let inv = match taken {
        Ok(i) => i,
        Err(Unusable::Unknown) => {
            count_failure(web, addr, "unknown_invitation", None).await;
            return Err(Refused::Unknown);
        }
        Err(Unusable::Gone(i, s)) => {
            count_failure(web, addr, s.as_str(), Some(i.id)).await;
            return Err(Refused::Gone(s));
        }
    };
    let mut calls = Vec::new();
    let created = admin.create(&user_id, password, &mut calls).await;
    if let Err(e) = created {
        let id = inv.id;
        let _ = web
            .db(move |db| invite::give_back(db.connection(), id))
            .await;
        let (refusal, reason) = match e {
            AdminError::Exists => (Refused::Taken(localpart.clone()), "name_taken"),
            e => {
                tracing::warn!(user = %user_id, "sign-up: {e}");
                (Refused::Unavailable, "synapse_refused")
            }
        };
        calls.push(refused_entry(reason, Some(inv.id)).detail("name", localpart.as_str()));
        let _ = record(web, calls).await;
        if matches!(refusal, Refused::Taken(_)) {
            web.limiter.failed(addr, LIMIT_KEY);
        }
        return Err(refusal);
    }
    let _ = record(web, calls).await;
    let now = chrono::DateTime::from_timestamp(now_s, 0).unwrap_or_else(crate::clock::utc_now);
    let (inv2, uid) = (inv.clone(), user_id.clone());
    let household = match web
        .db(move |db| invite::complete(db.connection_mut(), &inv2, &uid, now))
        .await
    {
        Some(Ok(h)) => h,
        other => {
            // The account exists and the invitation stays taken; the directory sync will
            // count the member (without the household, which an admin can set).
            tracing::error!(user = %user_id, "sign-up: recording the new member failed: {other:?}");
            None
        }
    };
    tracing::info!(user = %user_id, invitation = inv.id, "a new member joined with an invitation");
    Ok(Joined {
        user_id,
        localpart,
        server_name,
        household,
    })
}

/// What a server admin does to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountOp {
    Deactivate,
    ResetPassword,
}

impl AccountOp {
    fn as_str(self) -> &'static str {
        match self {
            AccountOp::Deactivate => "deactivate",
            AccountOp::ResetPassword => "reset_password",
        }
    }
}

/// Deactivate `user_id` or set its password (server admins only; audited before Synapse is
/// asked; the account's page sessions end).
pub async fn change_account(
    web: &Arc<Web>,
    viewer: &Viewer,
    user_id: &str,
    op: AccountOp,
    password: Option<&str>,
) -> Result<(), ApiError> {
    if viewer.role != Role::ServerAdmin {
        return Err(deny(
            web,
            viewer,
            op.as_str(),
            Some(user_id),
            "only a server admin may change accounts",
        )
        .await);
    }
    let user_id = user_id.trim();
    if crate::accounting::members::check_user_id(user_id).is_err() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("user_id: {user_id:?} is not a Matrix user id such as @alice:example.org"),
        ));
    }
    if op == AccountOp::Deactivate && user_id == viewer.user_id {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "you cannot deactivate your own account here".into(),
        ));
    }
    if op == AccountOp::ResetPassword
        && password.is_none_or(|p| p.chars().count() < MIN_PASSWORD_CHARS || p.len() > 1024)
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("password: at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let admin = AccountAdmin::new(web.synapse.base(), &web.admin_token)
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    // No entry, no change.
    record(
        web,
        vec![NewEntry::new(viewer.actor(), Action::AccountChange)
            .about(user_id)
            .detail("op", op.as_str())],
    )
    .await?;
    let mut calls = Vec::new();
    let r = match op {
        AccountOp::Deactivate => admin.deactivate(user_id, &mut calls).await,
        AccountOp::ResetPassword => {
            admin
                .reset_password(user_id, password.unwrap_or_default(), &mut calls)
                .await
        }
    };
    let _ = record(web, calls).await;
    match r {
        Ok(()) => {
            web.sessions.remove_user(user_id);
            tracing::info!(user = %user_id, by = %viewer.user_id, op = op.as_str(), "account changed");
            Ok(())
        }
        Err(AdminError::NotFound) => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no account {user_id}"),
        )),
        Err(e) => {
            tracing::warn!(user = %user_id, "{}: {e}", op.as_str());
            Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                "Synapse did not do it; try again shortly".into(),
            ))
        }
    }
}

// ---------------------------------------------------------------- JSON

pub(crate) fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) async fn signed_in_csrf(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Arc<Web>, Viewer), ApiError> {
    let (web, viewer) = signin::signed_in(state, headers).await?;
    if !viewer.csrf_ok(headers, None) {
        return Err(forbidden_csrf());
    }
    Ok((web, viewer))
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[serde(default)]
    pub household: Option<String>,
    #[serde(default)]
    pub days: Option<u32>,
}

/// `POST /api/v1/invitations {"household"?, "days"?}` → 201 with the link (shown once).
pub async fn api_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        let b: NewInvitation = if body.is_empty() {
            NewInvitation::default()
        } else {
            parse(&body)?
        };
        let (inv, token) = create(&web, &viewer, b.household.as_deref(), b.days).await?;
        let link = link(&headers, &web, &token);
        let now_s = (web.now_s)();
        let qr = invite::qr::svg(&link, MemberText::of(Lang::En).invite_qr);
        Ok::<_, ApiError>(json!({
            "invitation": inv.to_json(now_s),
            "token": token,
            "link": link,
            "qr_svg": qr,
        }))
    }
    .await;
    match r {
        Ok(v) => no_store((StatusCode::CREATED, Json(v)).into_response()),
        Err(e) => e.into_response(),
    }
}

/// `GET /api/v1/invitations`: the open invitations the caller may see.
pub async fn api_list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, viewer) = signin::signed_in(&state, &headers).await?;
        let now_s = (web.now_s)();
        let open = list(&web, &viewer).await?;
        Ok::<_, ApiError>(json!({
            "invitations": open.iter().map(|i| i.to_json(now_s)).collect::<Vec<_>>(),
        }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /api/v1/invitations/{id}` → 204.
pub async fn api_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        revoke(&web, &viewer, id).await
    }
    .await;
    match r {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct SignupBody {
    pub token: String,
    pub user: String,
    pub password: String,
}

/// `POST /api/v1/signup {"token","user","password"}` (no session) → 201
/// `{"user_id","server_name","household"}`.
pub async fn api_signup(
    State(state): State<AppState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Response {
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let b: SignupBody = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if !signin::same_origin(&parts.headers) {
        return ApiError(StatusCode::FORBIDDEN, Refused::CrossSite.message(Lang::En))
            .into_response();
    }
    match sign_up(&web, signin::peer(&parts), &b.token, &b.user, &b.password).await {
        Ok(j) => no_store(
            (
                StatusCode::CREATED,
                Json(json!({"user_id": j.user_id, "server_name": j.server_name, "household": j.household})),
            )
                .into_response(),
        ),
        Err(r) => {
            let mut resp = ApiError(r.status(), r.message(Lang::En)).into_response();
            if let Refused::Limited(d) = r {
                if let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string()) {
                    resp.headers_mut().insert(header::RETRY_AFTER, v);
                }
            }
            resp
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AccountBody {
    pub user_id: String,
    #[serde(default)]
    pub password: Option<String>,
}

async fn api_account(
    state: AppState,
    headers: HeaderMap,
    body: axum::body::Bytes,
    op: AccountOp,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        let b: AccountBody = parse(&body)?;
        change_account(&web, &viewer, &b.user_id, op, b.password.as_deref()).await?;
        Ok::<_, ApiError>(json!({"user_id": b.user_id, "done": op.as_str()}))
    }
    .await;
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/accounts/deactivate {"user_id"}` (server admins, CSRF).
pub async fn api_deactivate(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    api_account(state, headers, body, AccountOp::Deactivate).await
}

/// `POST /api/v1/accounts/password {"user_id","password"}` (server admins, CSRF).
pub async fn api_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    api_account(state, headers, body, AccountOp::ResetPassword).await
}

// ---------------------------------------------------------------- HTML

/// The invitation just made, shown once.
#[derive(Debug)]
pub struct Created {
    pub link: String,
    pub qr: String,
    pub expires: String,
}

#[derive(Debug)]
pub struct OpenRow {
    pub id: i64,
    pub by: String,
    pub household: String,
    pub expires: String,
}

#[derive(Template)]
#[template(path = "invitations.html")]
pub struct InvitationsPage {
    pub frame: Frame,
    pub csrf: String,
    pub created: Option<Created>,
    pub error: Option<String>,
    pub notice: Option<String>,
    /// A server admin chooses among these (id, name); `""` is none.
    pub households: Vec<(String, String)>,
    /// A household admin's own household (its name).
    pub own_household: Option<String>,
    /// (days, label).
    pub days: Vec<(u32, String)>,
    pub open: Vec<OpenRow>,
    pub server_admin: bool,
    /// Current members, for a server admin's account forms (user id, the viewer's own).
    pub accounts: Vec<(String, bool)>,
}

async fn invitations_page(
    web: &Arc<Web>,
    viewer: &Viewer,
    lang: Lang,
    created: Option<Created>,
    error: Option<String>,
    notice: Option<String>,
    status: StatusCode,
) -> Response {
    let m = MemberText::of(lang);
    if viewer.role == Role::Member {
        return error_page(lang, StatusCode::FORBIDDEN, m.invite_may_not);
    }
    let open = match list(web, viewer).await {
        Ok(o) => o,
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let listing = web
        .db(|db| crate::accounting::directory::list(db.connection()).ok())
        .await
        .flatten()
        .unwrap_or_default();
    let name_of = |id: &str| {
        listing
            .households
            .iter()
            .find(|h| h.id == id)
            .map_or_else(|| id.to_string(), |h| h.name.clone())
    };
    let server_admin = viewer.role == Role::ServerAdmin;
    let mut accounts: Vec<String> = if server_admin {
        listing
            .households
            .iter()
            .flat_map(|h| h.members.iter())
            .chain(listing.unassigned.iter())
            .filter(|m| m.left_s.is_none())
            .map(|m| m.user_id.clone())
            .collect()
    } else {
        Vec::new()
    };
    accounts.sort();
    let accounts = accounts
        .into_iter()
        .map(|u| {
            let me = u == viewer.user_id;
            (u, me)
        })
        .collect();
    let page = InvitationsPage {
        frame: frame(lang, Page::Invitations, Some(viewer)),
        csrf: viewer.csrf.clone(),
        created,
        error,
        notice,
        households: if server_admin {
            listing
                .households
                .iter()
                .map(|h| (h.id.clone(), h.name.clone()))
                .collect()
        } else {
            Vec::new()
        },
        own_household: viewer.household.as_ref().map(|(h, _)| name_of(h)),
        days: [7u32, 3, 2, 1]
            .into_iter()
            .map(|d| {
                (
                    d,
                    if d == 1 {
                        m.invite_one_day.to_string()
                    } else {
                        fill(m.invite_n_days, &[&d.to_string()])
                    },
                )
            })
            .collect(),
        open: open
            .iter()
            .map(|i| OpenRow {
                id: i.id,
                by: i.inviter.clone(),
                household: i
                    .household
                    .as_deref()
                    .map_or_else(|| m.invite_no_household.to_string(), name_of),
                expires: i18n::local_time(i.expires_s),
            })
            .collect(),
        server_admin,
        accounts,
    };
    let mut r = html(lang, page.render());
    *r.status_mut() = status;
    no_store(r)
}

/// `GET /invitations`.
pub async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match page_viewer(&state, &headers, Page::Invitations.path()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    invitations_page(&web, &viewer, lang, None, None, None, StatusCode::OK).await
}

#[derive(Debug, Deserialize)]
pub struct InviteForm {
    pub csrf: Option<String>,
    pub household: Option<String>,
    pub days: Option<u32>,
}

/// `POST /invitations` (form): the new invitation, shown once.
pub async fn page_create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<InviteForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let m = MemberText::of(lang);
    let (web, viewer) = match form_viewer(
        &state,
        &headers,
        Page::Invitations.path(),
        f.csrf.as_deref(),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    match create(&web, &viewer, f.household.as_deref(), f.days).await {
        Ok((inv, token)) => {
            let link = link(&headers, &web, &token);
            let created = Created {
                qr: invite::qr::svg(&link, m.invite_qr).unwrap_or_default(),
                link,
                expires: i18n::local_time(inv.expires_s),
            };
            invitations_page(
                &web,
                &viewer,
                lang,
                Some(created),
                None,
                None,
                StatusCode::CREATED,
            )
            .await
        }
        Err(e) if viewer.role == Role::Member => error_page(lang, e.0, m.invite_may_not),
        Err(e) => invitations_page(&web, &viewer, lang, None, Some(e.1), None, e.0).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

/// `POST /invitations/{id}/revoke` (form).
pub async fn page_revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Form(f): Form<CsrfForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match form_viewer(
        &state,
        &headers,
        Page::Invitations.path(),
        f.csrf.as_deref(),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    match revoke(&web, &viewer, id).await {
        Ok(()) => redirect(Page::Invitations.path(), &[]),
        Err(e) => invitations_page(&web, &viewer, lang, None, Some(e.1), None, e.0).await,
    }
}

#[derive(Debug, Deserialize)]
pub struct AccountForm {
    pub csrf: Option<String>,
    pub user_id: String,
    pub password: Option<String>,
}

async fn page_account(
    state: AppState,
    headers: HeaderMap,
    f: AccountForm,
    op: AccountOp,
) -> Response {
    let lang = i18n::of_request(&headers);
    let m = MemberText::of(lang);
    let (web, viewer) = match form_viewer(
        &state,
        &headers,
        Page::Invitations.path(),
        f.csrf.as_deref(),
    )
    .await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    match change_account(&web, &viewer, &f.user_id, op, f.password.as_deref()).await {
        Ok(()) => {
            let notice = fill(
                match op {
                    AccountOp::Deactivate => m.accounts_deactivated,
                    AccountOp::ResetPassword => m.accounts_password_set,
                },
                &[f.user_id.trim()],
            );
            invitations_page(
                &web,
                &viewer,
                lang,
                None,
                None,
                Some(notice),
                StatusCode::OK,
            )
            .await
        }
        Err(e) => {
            let msg = match e.0 {
                StatusCode::FORBIDDEN => m.accounts_only_admins.to_string(),
                StatusCode::NOT_FOUND => m.accounts_not_found.to_string(),
                StatusCode::BAD_REQUEST if op == AccountOp::ResetPassword => {
                    m.setup_bad_password.to_string()
                }
                _ => e.1,
            };
            if viewer.role == Role::ServerAdmin {
                invitations_page(&web, &viewer, lang, None, Some(msg), None, e.0).await
            } else {
                error_page(lang, e.0, &msg)
            }
        }
    }
}

/// `POST /accounts/deactivate` (form: `csrf`, `user_id`).
pub async fn page_deactivate(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    page_account(state, headers, f, AccountOp::Deactivate).await
}

/// `POST /accounts/password` (form: `csrf`, `user_id`, `password`).
pub async fn page_password(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<AccountForm>,
) -> Response {
    page_account(state, headers, f, AccountOp::ResetPassword).await
}

#[derive(Template)]
#[template(path = "join.html")]
pub struct JoinPage {
    pub frame: Frame,
    pub action: String,
    /// Why the invitation cannot be used (then no form).
    pub gone: Option<String>,
    /// "You are invited to the Matrix server …".
    pub lead: String,
    /// "You will belong to the household …".
    pub household: Option<String>,
    pub user: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "welcome.html")]
pub struct WelcomePage {
    pub frame: Frame,
    /// "Your account … is ready."
    pub lead: String,
    pub localpart: String,
    pub server_name: String,
}

/// The server's name for the sign-up page: Synapse's, else the name the browser used.
async fn server_name_for(web: &Web, headers: &HeaderMap) -> String {
    if let Ok(a) = AccountAdmin::new(web.synapse.base(), &web.admin_token) {
        if let Ok(n) = a.server_name().await {
            return n;
        }
    }
    headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .unwrap_or_default()
}

async fn household_name(web: &Arc<Web>, id: Option<String>) -> Option<String> {
    let id = id?;
    let listing = web
        .db(|db| crate::accounting::directory::list(db.connection()).ok())
        .await
        .flatten()
        .unwrap_or_default();
    Some(
        listing
            .households
            .into_iter()
            .find(|h| h.id == id)
            .map_or(id, |h| h.name),
    )
}

fn join_frame(lang: Lang, token: &str) -> Frame {
    Frame::new(lang, Page::Join, crate::clock::local_now()).back_to(&format!("/join/{token}"))
}

fn join_token_ok(token: &str) -> bool {
    !token.is_empty() && token.len() <= 128 && token.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// What the sign-up form shows besides the invitation: why it cannot be used, or the name
/// typed and why it was refused, and the invitation's household.
#[derive(Debug, Default)]
struct JoinView {
    gone: Option<Refused>,
    user: String,
    error: Option<String>,
    household: Option<String>,
}

async fn join_page(
    web: &Arc<Web>,
    headers: &HeaderMap,
    lang: Lang,
    token: &str,
    v: JoinView,
) -> Response {
    let JoinView {
        gone,
        user,
        error,
        household,
    } = v;
    let status = gone.as_ref().map_or(
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        Refused::status,
    );
    let page = JoinPage {
        frame: join_frame(lang, if join_token_ok(token) { token } else { "" }),
        action: format!("/join/{token}"),
        gone: gone.map(|g| g.message(lang)),
        lead: fill(
            MemberText::of(lang).join_lead,
            &[&server_name_for(web, headers).await],
        ),
        household: household_name(web, household)
            .await
            .map(|h| fill(MemberText::of(lang).join_household, &[&h])),
        user: user.chars().take(64).collect(),
        error,
    };
    let mut r = html(lang, page.render());
    *r.status_mut() = status;
    no_store(r)
}

/// `GET /join/{token}`: the sign-up form, or why the invitation cannot be used (410).
pub async fn join(
    State(state): State<AppState>,
    parts: Parts,
    Path(token): Path<String>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let addr = signin::peer(&parts);
    if let Err(l) = web.limiter.check(addr, LIMIT_KEY, true) {
        let r = Refused::Limited(l.retry_after);
        return error_page(lang, r.status(), &r.message(lang));
    }
    if !join_token_ok(&token) {
        count_failure(&web, addr, "unknown_invitation", None).await;
        let v = JoinView {
            gone: Some(Refused::Unknown),
            ..Default::default()
        };
        return join_page(&web, &parts.headers, lang, "", v).await;
    }
    match lookup(&web, &token).await {
        Ok(Ok(inv)) => {
            let v = JoinView {
                household: inv.household,
                ..Default::default()
            };
            join_page(&web, &parts.headers, lang, &token, v).await
        }
        Ok(Err(r)) => {
            if r == Refused::Unknown {
                count_failure(&web, addr, "unknown_invitation", None).await;
            }
            let v = JoinView {
                gone: Some(r),
                ..Default::default()
            };
            join_page(&web, &parts.headers, lang, &token, v).await
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Debug, Deserialize)]
pub struct JoinForm {
    pub user: String,
    pub password: String,
    pub password2: String,
}

/// `POST /join/{token}` (form): the account, then the welcome page.
pub async fn join_post(
    State(state): State<AppState>,
    Path(token): Path<String>,
    parts: Parts,
    Form(f): Form<JoinForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let token = if join_token_ok(&token) {
        token
    } else {
        String::new()
    };
    let user = localpart_of(&f.user);
    if !signin::same_origin(&parts.headers) {
        let r = Refused::CrossSite;
        return error_page(lang, r.status(), &r.message(lang));
    }
    if f.password != f.password2 {
        let household = match lookup(&web, &token).await {
            Ok(Ok(i)) => i.household,
            _ => None,
        };
        let v = JoinView {
            user,
            error: Some(Refused::BadPassword.message(lang)),
            household,
            ..Default::default()
        };
        return join_page(&web, &parts.headers, lang, &token, v).await;
    }
    match sign_up(&web, signin::peer(&parts), &token, &f.user, &f.password).await {
        Ok(j) => {
            let page = WelcomePage {
                frame: Frame::new(lang, Page::Join, crate::clock::local_now()).back_to("/signin"),
                lead: fill(MemberText::of(lang).welcome_lead, &[&j.user_id]),
                localpart: j.localpart,
                server_name: j.server_name,
            };
            let mut r = html(lang, page.render());
            *r.status_mut() = StatusCode::CREATED;
            no_store(r)
        }
        Err(r @ (Refused::Unknown | Refused::Gone(_))) => {
            let v = JoinView {
                gone: Some(r),
                ..Default::default()
            };
            join_page(&web, &parts.headers, lang, &token, v).await
        }
        Err(Refused::Limited(d)) => {
            let r = Refused::Limited(d);
            error_page(lang, r.status(), &r.message(lang))
        }
        Err(r) => {
            let household = match lookup(&web, &token).await {
                Ok(Ok(i)) => i.household,
                _ => None,
            };
            let v = JoinView {
                user,
                error: Some(r.message(lang)),
                household,
                ..Default::default()
            };
            let mut resp = join_page(&web, &parts.headers, lang, &token, v).await;
            *resp.status_mut() = r.status();
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_folded_to_a_localpart() {
        assert_eq!(localpart_of(" @Alice:example.org "), "alice");
        assert_eq!(localpart_of("bob"), "bob");
        assert!(valid_localpart(&localpart_of("Oma.Erna")));
        assert!(!valid_localpart(&localpart_of("oma erna")));
    }

    #[test]
    fn join_tokens_are_hex_and_short() {
        assert!(join_token_ok(&"ab".repeat(32)));
        assert!(!join_token_ok(""));
        assert!(!join_token_ok("../x"));
        assert!(!join_token_ok(&"a".repeat(200)));
    }

    #[test]
    fn a_link_uses_the_name_the_browser_came_by_and_refuses_odd_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let web = Web::new(
            &dir.path().join("hearth.db"),
            "http://127.0.0.1:9",
            Default::default(),
            std::sync::Arc::new(crate::accountant::members::Directory::new("/nonexistent")),
            "/nonexistent".into(),
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "family.example.org".parse().unwrap());
        assert_eq!(
            link(&h, &web, "ab12"),
            "http://family.example.org/join/ab12"
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            link(&h, &web, "ab12"),
            "https://family.example.org/join/ab12"
        );
        h.insert(header::HOST, "evil.org/x?".parse().unwrap());
        assert_eq!(link(&h, &web, "ab12"), "https://hearth.local/join/ab12");
    }
}
