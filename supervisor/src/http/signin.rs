//! Signing in with the Matrix account: the password is checked by Synapse
//! (`POST /_matrix/client/v3/login`), whether the account is a server admin is asked with that
//! fresh token (`/_synapse/admin/v1/users/<id>/admin` answers only admins), and the token is
//! logged out at once: the page never keeps a Matrix credential. `/api/v1/session` is the JSON
//! door (PRODUCT §4); the HTML form in `member_pages` uses the same [`sign_in`].
//!
//! Every sign-in and every refused password of a known member is an audit entry about that
//! member (they see it); attempts refused by the limiter are not written one by one (an attack
//! must not wear out the SD card), only the moment a limit is reached.

use super::session::{self, Role, Session, COOKIE, DEVICE_COOKIE};
use super::{AppState, Web};
use crate::audit::{self, Action, Actor, NewEntry};
use crate::synapse_api::{segment, Method, SynapseApi, Unreached};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// How long the browser remembers that a member signed in with it (see `session::Limiter`).
const DEVICE_MAX_AGE: Duration = Duration::from_secs(90 * 86_400);

/// Synapse's client API, for signing in.
#[derive(Debug)]
pub struct SynapseLogin {
    api: SynapseApi,
}

/// What Synapse said.
#[derive(Debug, Clone, PartialEq)]
pub enum LoginError {
    /// Wrong user or password, or a deactivated account.
    Refused,
    /// Synapse's own rate limit.
    Limited(Duration),
    /// Synapse did not answer usefully.
    Unavailable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoggedIn {
    pub user_id: String,
    pub server_admin: bool,
}

impl SynapseLogin {
    pub fn new(base: &str, timeout: Duration) -> SynapseLogin {
        SynapseLogin {
            api: SynapseApi::new(base, timeout),
        }
    }

    /// Synapse's base URL.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<LoggedIn, LoginError> {
        let unavailable = |e: Unreached| LoginError::Unavailable(e.0);
        let login = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "hearth status page (signed out at once)",
        });
        let r = self
            .api
            .call(Method::Post, "/_matrix/client/v3/login", None, Some(&login))
            .await
            .map_err(unavailable)?;
        let body = r.json();
        match r.status {
            200 => {}
            429 => {
                let ms = body["retry_after_ms"].as_u64().unwrap_or(5000);
                return Err(LoginError::Limited(Duration::from_millis(ms)));
            }
            // M_FORBIDDEN (wrong password), M_USER_DEACTIVATED, M_INVALID_USERNAME…
            400 | 401 | 403 | 404 => return Err(LoginError::Refused),
            s => return Err(LoginError::Unavailable(format!("login answered {s}"))),
        }
        let (Some(user_id), Some(token)) =
            (body["user_id"].as_str(), body["access_token"].as_str())
        else {
            return Err(LoginError::Unavailable(
                "login answered without a token".into(),
            ));
        };
        let admin_path = format!("/_synapse/admin/v1/users/{}/admin", segment(user_id));
        let server_admin = match self.api.get(&admin_path, Some(token)).await {
            Ok(a) if a.ok() => a.json()["admin"].as_bool().unwrap_or(false),
            _ => false,
        };
        // The page keeps no Matrix credential: the token ends here.
        let out = self
            .api
            .call(
                Method::Post,
                "/_matrix/client/v3/logout",
                Some(token),
                Some(&json!({})),
            )
            .await;
        if !matches!(&out, Ok(a) if a.ok()) {
            tracing::warn!(
                user = user_id,
                "could not log out the sign-in token at Synapse"
            );
        }
        Ok(LoggedIn {
            user_id: user_id.to_string(),
            server_admin,
        })
    }
}

/// A signed-in request: who, in which role, and what they may see.
#[derive(Debug, Clone, PartialEq)]
pub struct Viewer {
    pub user_id: String,
    pub role: Role,
    /// The household a household admin administers, with its members (present and past).
    pub household: Option<(String, Vec<String>)>,
    pub csrf: String,
    /// The session cookie's value (to sign out).
    token: String,
}

impl Viewer {
    #[cfg(test)]
    pub(crate) fn for_test(
        user_id: &str,
        role: Role,
        household: Option<(String, Vec<String>)>,
    ) -> Self {
        Viewer {
            user_id: user_id.to_string(),
            role,
            household,
            csrf: String::new(),
            token: String::new(),
        }
    }

    /// May this viewer see `user_id`'s figures?
    pub fn may_see(&self, user_id: &str) -> bool {
        match self.role {
            Role::ServerAdmin => true,
            Role::HouseholdAdmin => {
                user_id == self.user_id
                    || self
                        .household
                        .as_ref()
                        .is_some_and(|(_, m)| m.iter().any(|u| u == user_id))
            }
            Role::Member => user_id == self.user_id,
        }
    }

    /// May this viewer see the household `id`'s totals?
    pub fn may_see_household(&self, id: &str) -> bool {
        match self.role {
            Role::ServerAdmin => true,
            Role::HouseholdAdmin => self.household.as_ref().is_some_and(|(h, _)| h == id),
            Role::Member => false,
        }
    }

    pub fn audit_viewer(&self) -> audit::Viewer<'_> {
        match (self.role, &self.household) {
            (Role::ServerAdmin, _) => audit::Viewer::ServerAdmin,
            (Role::HouseholdAdmin, Some((_, members))) => audit::Viewer::HouseholdAdmin {
                user: &self.user_id,
                members,
            },
            _ => audit::Viewer::Member {
                user: &self.user_id,
            },
        }
    }

    pub fn actor(&self) -> Actor {
        Actor::User(self.user_id.clone())
    }

    /// The session cookie's value (keys what is kept per session, such as
    /// `member_api::Denials`; never written anywhere).
    pub fn session_token(&self) -> &str {
        &self.token
    }

    /// The request carries this session's CSRF token (header `X-CSRF-Token`, or `form` from a
    /// form field).
    pub fn csrf_ok(&self, headers: &HeaderMap, form: Option<&str>) -> bool {
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or(form);
        given.is_some_and(|g| session::same(g, &self.csrf))
    }
}

/// A JSON error: `{"error": "…"}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

pub fn unavailable() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "sign-in is not available on this server".into(),
    )
}

pub fn web(state: &AppState) -> Result<Arc<Web>, ApiError> {
    state.web.clone().ok_or_else(unavailable)
}

/// The role: Synapse's admin flag first, then administering a household.
fn role_of(server_admin: bool, household_admin: bool) -> Role {
    if server_admin {
        Role::ServerAdmin
    } else if household_admin {
        Role::HouseholdAdmin
    } else {
        Role::Member
    }
}

/// The session of this request, with its role resolved now from the member directory: a
/// household-admin change applies at once, a server admin whose admin flag the last sync saw
/// dropped is one no longer, and the session of an account the sync saw deactivated (or
/// otherwise no longer a member) ends. An account the directory has not seen yet keeps what
/// Synapse said at sign-in. `Ok(None)`: not signed in.
pub async fn viewer(web: &Arc<Web>, headers: &HeaderMap) -> Result<Option<Viewer>, ApiError> {
    use crate::accounting::directory::{self, Standing};
    let Some(token) = session::cookie(headers, COOKIE) else {
        return Ok(None);
    };
    let Some(s) = web.sessions.get(token) else {
        return Ok(None);
    };
    let user = s.user_id.clone();
    let found = web
        .db(move |db| {
            let conn = db.connection();
            directory::standing(conn, &user)
                .and_then(|st| Ok((st, directory::administered(conn, &user)?)))
                .map_err(|e| e.to_string())
        })
        .await
        .ok_or_else(|| {
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "database task failed".into(),
            )
        })?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let (standing, household) = found;
    let server_admin = s.server_admin
        && match standing {
            Standing::Member { server_admin } => server_admin,
            Standing::NonmemberAdmin | Standing::Unknown => true,
            Standing::Left => false,
        };
    if standing == Standing::Left {
        web.sessions.remove(token);
        return Ok(None);
    }
    let role = role_of(server_admin, household.is_some());
    Ok(Some(Viewer {
        user_id: s.user_id,
        role,
        household,
        csrf: s.csrf,
        token: token.to_string(),
    }))
}

/// The viewer, or 401.
pub async fn signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(Arc<Web>, Viewer), ApiError> {
    let web = web(state)?;
    match viewer(&web, headers).await? {
        Some(v) => Ok((web, v)),
        None => Err(ApiError(StatusCode::UNAUTHORIZED, "sign in first".into())),
    }
}

/// Append audit entries on the page's connection. A failure is logged, and the caller decides
/// whether the request may go on without its entry (a view of another member's data may not).
pub async fn record(web: &Arc<Web>, entries: Vec<NewEntry>) -> Result<(), ApiError> {
    if entries.is_empty() {
        return Ok(());
    }
    let r = web
        .db(move |db| -> Result<(), String> {
            let tx = db
                .connection_mut()
                .transaction()
                .map_err(|e| e.to_string())?;
            for e in &entries {
                audit::append(&tx, e).map_err(|e| e.to_string())?;
            }
            tx.commit().map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|| Err("database task failed".into()));
    r.map_err(|e| {
        tracing::error!("audit log: {e}");
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the audit log cannot be written, so nothing is shown".into(),
        )
    })
}

/// The address of the request's client (for the limiter only): [`client_of`] as
/// [`client_addr`] found it, else the TCP peer.
pub fn peer(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ClientAddr>()
        .map(|c| c.0)
        .or_else(|| {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_canonical())
        })
}

/// The client's address, put in the request by [`client_addr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Who the client is. Behind the TLS proxy on the box every TCP peer is 127.0.0.1, so the
/// proxy names the client: `X-Real-IP` (the proxy sets it to the address it was reached from),
/// else the rightmost address in `X-Forwarded-For` that is not itself a trusted proxy (the
/// one the proxy appended). These headers count only when the TCP peer is one of `trusted`;
/// from anyone else they are the client's own words and are ignored.
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return peer;
    }
    let mut real = headers.get_all("x-real-ip").iter();
    if let (Some(v), None) = (real.next(), real.next()) {
        if let Some(ip) = v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return ip.to_canonical();
        }
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for entry in forwarded.iter().rev() {
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) if is_trusted(&ip.to_canonical()) => continue,
            Ok(ip) => return ip.to_canonical(),
            // Garbage where the proxy's entry should be: the proxy itself is all we know.
            Err(_) => break,
        }
    }
    peer
}

/// The middleware that resolves [`ClientAddr`] once per request, with the proxies the
/// configuration trusts (none without the signed-in doors).
pub async fn client_addr(
    State(state): State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let trusted = state
            .web
            .as_ref()
            .map_or(&[][..], |w| &w.trusted_proxies[..]);
        let ip = client_of(peer.ip(), req.headers(), trusted);
        req.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(req).await
}

/// A sign-in POST from another site (login CSRF) is refused. Browsers say where a request
/// comes from in `Sec-Fetch-Site`; those that do not, in `Origin` (which is `null` for our own
/// forms, because every page is served with `Referrer-Policy: no-referrer`). A client that sends
/// neither (curl, the JSON API) is no browser and cannot be tricked into posting.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
    if let Some(site) = get("sec-fetch-site") {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = get("origin") else {
        return true;
    };
    let origin_host = origin.split_once("://").map(|(_, h)| h);
    origin_host.is_some() && origin_host == get("host")
}

/// Why a sign-in did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    BadRequest(&'static str),
    CrossSite,
    WrongPassword,
    Limited(Duration),
    Unavailable,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::CrossSite => StatusCode::FORBIDDEN,
            Refusal::WrongPassword => StatusCode::UNAUTHORIZED,
            Refusal::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Refusal::BadRequest(m) => (*m).to_string(),
            Refusal::CrossSite => "sign-in from another site refused".into(),
            Refusal::WrongPassword => "wrong user name or password".into(),
            Refusal::Limited(d) => {
                format!("too many attempts; try again in {} s", d.as_secs().max(1))
            }
            Refusal::Unavailable => "Synapse is not answering; try again shortly".into(),
        }
    }
}

/// A new session and the cookies that carry it.
#[derive(Debug)]
pub struct SignedIn {
    pub session: Session,
    pub role: Role,
    pub cookies: Vec<String>,
}

/// Check the password with Synapse and open a session (see the module docs).
pub async fn sign_in(
    web: &Arc<Web>,
    addr: Option<IpAddr>,
    headers: &HeaderMap,
    user: &str,
    password: &str,
) -> Result<SignedIn, Refusal> {
    if user.trim().is_empty() || user.len() > 255 {
        return Err(Refusal::BadRequest(
            "user: give a Matrix user name such as alice",
        ));
    }
    if password.is_empty() || password.len() > 1024 {
        return Err(Refusal::BadRequest("password: empty or too long"));
    }
    if !same_origin(headers) {
        return Err(Refusal::CrossSite);
    }
    let remembered = web
        .limiter
        .remembers(session::cookie(headers, DEVICE_COOKIE), user);
    if let Err(l) = web.limiter.check(addr, user, remembered) {
        return Err(Refusal::Limited(l.retry_after));
    }
    match web.synapse.login(user, password).await {
        Ok(ok) => {
            web.limiter.give_back(addr, user, remembered);
            let Some((token, session)) = web.sessions.create(&ok.user_id, ok.server_admin) else {
                return Err(Refusal::Unavailable);
            };
            let user_id = ok.user_id.clone();
            let household = web
                .db(move |db| {
                    crate::accounting::directory::administered(db.connection(), &user_id)
                        .ok()
                        .flatten()
                })
                .await
                .flatten();
            let role = role_of(ok.server_admin, household.is_some());
            if let Ok(actor) = Actor::user(&ok.user_id) {
                let entry = NewEntry::new(actor, Action::SignIn)
                    .about(&ok.user_id)
                    .detail("role", role.as_str());
                // A sign-in whose entry cannot be written does not happen.
                if record(web, vec![entry]).await.is_err() {
                    web.sessions.remove(&token);
                    return Err(Refusal::Unavailable);
                }
            }
            // The language the member reads the page in is the one their notices speak
            // (budget::enforce); a member only, nothing else is changed.
            let (user, lang) = (ok.user_id.clone(), super::i18n::of_request(headers).code());
            let _ = web
                .db(move |db| {
                    if let Err(e) =
                        crate::accounting::directory::set_language(db.connection(), &user, lang)
                    {
                        tracing::warn!("noting the page's language: {e}");
                    }
                })
                .await;
            let secure = session::over_https(headers, web.https);
            Ok(SignedIn {
                cookies: vec![
                    session::set_cookie(COOKIE, &token, session::ABSOLUTE, secure),
                    session::set_cookie(
                        DEVICE_COOKIE,
                        &web.limiter.device_cookie(&ok.user_id),
                        DEVICE_MAX_AGE,
                        secure,
                    ),
                ],
                session,
                role,
            })
        }
        Err(LoginError::Refused) => {
            let limit_reached = web.limiter.failed(addr, user);
            // The member this name means, if it is one (no made-up names in the log).
            let name = user.trim().to_string();
            let subject = web
                .db(move |db| {
                    let known = crate::accounting::directory::known_accounts(db.connection())
                        .unwrap_or_default();
                    known.into_iter().find(|id| {
                        if name.starts_with('@') {
                            *id == name
                        } else {
                            session::account_key(id) == session::account_key(&name)
                        }
                    })
                })
                .await
                .flatten();
            let mut entry = NewEntry::new(Actor::System, Action::SignInFailed).detail(
                "reason",
                if limit_reached {
                    "wrong_password_limit_reached"
                } else {
                    "wrong_password"
                },
            );
            if let Some(s) = &subject {
                entry = entry.about(s);
            } else {
                entry = entry.detail("account", "not a member");
            }
            let _ = record(web, vec![entry]).await;
            Err(Refusal::WrongPassword)
        }
        Err(LoginError::Limited(d)) => {
            // Synapse did not judge the password: the attempt costs nothing here.
            web.limiter.give_back(addr, user, remembered);
            Err(Refusal::Limited(d))
        }
        Err(LoginError::Unavailable(why)) => {
            web.limiter.give_back(addr, user, remembered);
            tracing::warn!("sign-in: Synapse: {why}");
            Err(Refusal::Unavailable)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

/// `GET /api/v1/session` and the answer of a sign-in.
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub user_id: String,
    pub role: Role,
    pub household: Option<String>,
    /// Echo it in `X-CSRF-Token` on every state change.
    pub csrf: String,
}

fn with_cookies(mut r: Response, cookies: &[String]) -> Response {
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub fn refusal_response(r: &Refusal) -> Response {
    let mut resp = ApiError(r.status(), r.message()).into_response();
    if let Refusal::Limited(d) = r {
        if let Ok(v) = HeaderValue::from_str(&d.as_secs().max(1).to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// `POST /api/v1/session` `{"user","password"}`.
pub async fn post_session(
    State(state): State<AppState>,
    parts: Parts,
    body: axum::body::Bytes,
) -> Response {
    let web = match web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let creds: Credentials = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return ApiError(StatusCode::BAD_REQUEST, format!("body: {e}")).into_response();
        }
    };
    match sign_in(
        &web,
        peer(&parts),
        &parts.headers,
        &creds.user,
        &creds.password,
    )
    .await
    {
        Ok(s) => with_cookies(
            Json(SessionInfo {
                user_id: s.session.user_id.clone(),
                role: s.role,
                household: None,
                csrf: s.session.csrf.clone(),
            })
            .into_response(),
            &s.cookies,
        ),
        Err(r) => refusal_response(&r),
    }
}

/// `GET /api/v1/session`: who is signed in here (401 if nobody).
pub async fn get_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match signed_in(&state, &headers).await {
        Ok((_, v)) => with_cookies(
            Json(SessionInfo {
                household: v.household.as_ref().map(|(h, _)| h.clone()),
                user_id: v.user_id,
                role: v.role,
                csrf: v.csrf,
            })
            .into_response(),
            &[],
        ),
        Err(e) => e.into_response(),
    }
}

/// Sign out: forget the session and clear its cookie.
pub fn sign_out(web: &Web, v: &Viewer, headers: &HeaderMap) -> Vec<String> {
    web.sessions.remove(&v.token);
    vec![session::set_cookie(
        COOKIE,
        "",
        Duration::ZERO,
        session::over_https(headers, web.https),
    )]
}

/// `DELETE /api/v1/session` (with the CSRF token).
pub async fn delete_session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (web, v) = match signed_in(&state, &headers).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    if !v.csrf_ok(&headers, None) {
        return ApiError(StatusCode::FORBIDDEN, "missing or wrong CSRF token".into())
            .into_response();
    }
    let cookies = sign_out(&web, &v, &headers);
    with_cookies(StatusCode::NO_CONTENT.into_response(), &cookies)
}
