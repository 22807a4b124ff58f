//! The first-run screen (`/setup`): whoever holds the one-time setup code (first boot writes it
//! to `hearth-setup.txt` on the boot partition, to the console, and to `http.setup_code_file`)
//! creates the family's first Matrix account, a server admin, through the supervisor's own
//! admin token (`PUT /_synapse/admin/v2/users/<id>`). The code is used up with it: the file is
//! removed, and `/setup` says the box is set up. Wrong codes count against the sign-in
//! limiter's address bucket; the creation is an audit entry about the new account.
//!
//! One use only, even at once: the code is checked again and used under one lock
//! ([`SETUP`]) from before Synapse is asked until the file is gone, so of two requests with
//! the right code one creates the account and the other finds the box set up. And setup closes
//! by itself once a server admin other than the supervisor exists (made over SSH, by
//! `provision-admin`, or in Synapse directly; the directory's sync sees it): the code file is
//! removed the next time `/setup` is asked.
//!
//! On the appliance the server's permanent name comes first ([`super::setup_name`]): until it
//! is chosen and Synapse answers, `/setup` shows the name step instead.

use super::i18n::{self, Lang};
use super::member_text::MemberText;
use super::pages::{html, Frame, Page};
use super::signin;
use super::AppState;
use crate::audit::{Action, Actor, NewEntry};
use crate::invite::synapse::{AccountAdmin, AdminError};
use askama::Template;
use axum::extract::State;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::path::Path;

#[derive(Template)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub frame: Frame,
    /// The code is still waiting (else: the box is set up, or the code expired).
    pub open: bool,
    /// The code expired unused ([`crate::setup_expiry`]); a restart makes a new one.
    pub expired: bool,
    pub user: String,
    pub error: Option<String>,
}

/// One setup at a time, from the code's check to its removal.
static SETUP: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The setup lock, for whatever else moves the code file ([`crate::setup_expiry`]).
pub(crate) async fn lock() -> tokio::sync::MutexGuard<'static, ()> {
    SETUP.lock().await
}

/// A server admin other than the supervisor's own account, as the directory last saw them.
async fn other_admin(web: &std::sync::Arc<super::Web>) -> Option<String> {
    use crate::accounting::directory::{server_admins, SUPERVISOR_ACCOUNT};
    let admins = web
        .db(|db| server_admins(db.connection()))
        .await?
        .map_err(|e| tracing::warn!("setup: the directory: {e}"))
        .ok()?;
    admins
        .into_iter()
        .find(|a| a.not_member.as_deref() != Some(SUPERVISOR_ACCOUNT))
        .map(|a| a.user_id)
}

/// The code while setup is open: `None` once it is used, or once another server admin exists
/// (then the code file is removed here, and the journal says so).
async fn open_code(web: &std::sync::Arc<super::Web>) -> Option<String> {
    let code = stored_code(&web.setup_code_file)?;
    let Some(admin) = other_admin(web).await else {
        return Some(code);
    };
    match std::fs::remove_file(&web.setup_code_file) {
        Ok(()) => {
            tracing::info!(admin = %admin, "setup closed: a server admin exists; the setup code is removed");
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::error!(file = %web.setup_code_file.display(), "setup closed, but the code file stays: {e}")
        }
    }
    None
}

/// The code expired unused and nobody has set the box up another way since.
async fn expired_unused(web: &std::sync::Arc<super::Web>) -> bool {
    crate::setup_expiry::expired(&web.setup_code_file) && other_admin(web).await.is_none()
}

/// The code in the file, normalised (`None`: no file or empty, the box is set up).
pub(crate) fn stored_code(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let code = normalise(&text);
    (!code.is_empty()).then_some(code)
}

/// Upper case, without spaces and dashes: `abcd-1234` is `ABCD1234`.
pub fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// A Matrix localpart Synapse accepts for a new account.
pub fn valid_localpart(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._=-/".contains(&b))
}

fn page(lang: Lang, open: bool, user: &str, error: Option<String>, status: StatusCode) -> Response {
    page_with(lang, open, false, user, error, status)
}

fn page_with(
    lang: Lang,
    open: bool,
    expired: bool,
    user: &str,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let p = SetupPage {
        frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
        open,
        expired,
        user: user.chars().take(64).collect(),
        error,
    };
    let mut r = html(lang, p.render());
    *r.status_mut() = status;
    r
}

/// `GET /setup`.
pub async fn setup_page(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let (open, expired) = match &state.web {
        Some(w) => match open_code(w).await {
            Some(_) => (true, false),
            None => (false, expired_unused(w).await),
        },
        None => (false, false),
    };
    if open {
        // Before the first admin: a restore under way (or failed), the server's name, and
        // Synapse's first start.
        if let Some(r) = super::setup_restore::page_for(&state, lang) {
            return r;
        }
        if let Some(r) = super::setup_name::page_for(&state, lang) {
            return r;
        }
    }
    page_with(lang, open, expired, "", None, StatusCode::OK)
}

#[derive(Debug, Deserialize)]
pub struct SetupForm {
    pub code: String,
    pub user: String,
    pub password: String,
    pub password2: String,
}

/// `POST /setup`.
pub async fn setup_post(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<SetupForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let m = MemberText::of(lang);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let _one_at_a_time = SETUP.lock().await;
    let Some(code) = open_code(&web).await else {
        let expired = expired_unused(&web).await;
        return page_with(lang, false, expired, "", None, StatusCode::GONE);
    };
    let user = f.user.trim().trim_start_matches('@').to_lowercase();
    let err = |msg: &str, status| page(lang, true, &user, Some(msg.to_string()), status);
    if !signin::same_origin(&parts.headers) {
        return err(m.signin_cross_site, StatusCode::FORBIDDEN);
    }
    let addr = signin::peer(&parts);
    if let Err(l) = web.limiter.check(addr, "setup", true) {
        return err(
            &i18n::fill(
                m.signin_limited,
                &[&l.retry_after.as_secs().max(1).to_string()],
            ),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    if !super::session::same(&normalise(&f.code), &code) {
        web.limiter.failed(addr, "setup");
        return err(m.setup_wrong_code, StatusCode::UNAUTHORIZED);
    }
    if super::setup_name::phase(&state) != super::setup_name::Phase::Admin {
        return err(
            super::name_text::NameText::of(lang).name_first,
            StatusCode::CONFLICT,
        );
    }
    if !valid_localpart(&user) {
        return err(m.setup_bad_user, StatusCode::BAD_REQUEST);
    }
    if f.password.chars().count() < 10 || f.password != f.password2 {
        return err(m.setup_bad_password, StatusCode::BAD_REQUEST);
    }
    let mut calls = Vec::new();
    let created = create_admin(&web, &user, &f.password, &mut calls).await;
    match created {
        Ok(user_id) => {
            // The code is used up: nobody else can use it, even if the audit write below fails.
            if let Err(e) = std::fs::remove_file(&web.setup_code_file) {
                tracing::error!(file = %web.setup_code_file.display(), "setup code used but not removed: {e}");
            }
            let entry = NewEntry::new(Actor::System, Action::AdminApiCall)
                .about(&user_id)
                .detail("what", "first server admin created with the setup code");
            calls.push(entry);
            let _ = signin::record(&web, calls).await;
            tracing::info!(user = %user_id, "setup: first server admin created; the setup code is used up");
            let mut r = StatusCode::SEE_OTHER.into_response();
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/signin"));
            r
        }
        Err(AdminError::Exists) => {
            let _ = signin::record(&web, calls).await;
            err(m.setup_user_exists, StatusCode::CONFLICT)
        }
        Err(why) => {
            let _ = signin::record(&web, calls).await;
            tracing::warn!("setup: {why}");
            err(m.signin_unavailable, StatusCode::SERVICE_UNAVAILABLE)
        }
    }
}

/// Create `@user:<server>` as a server admin with the supervisor's admin token (never over an
/// existing account: `AccountAdmin::create_account` asks first). Its admin-API calls are
/// audited with the rest of the request's entries.
async fn create_admin(
    web: &super::Web,
    user: &str,
    password: &str,
    calls: &mut Vec<NewEntry>,
) -> Result<String, AdminError> {
    let admin = AccountAdmin::new(web.synapse.base(), &web.admin_token)?;
    let user_id = format!("@{user}:{}", admin.server_name().await?);
    admin
        .create_account(&user_id, password, true, calls)
        .await?;
    Ok(user_id)
}
