//! The name step of `/setup` (issue 12): setup code → choose the server's permanent name →
//! confirm (a checkbox: it can never change) → `StartUnit hearth-name@<name>.service` → "setting
//! up" until Synapse is healthy → the first admin (`setup.rs`, as before).
//!
//! The setup code stays valid until the first admin exists. The name's checks are in
//! `crate::name`; the job runs in the owner's tracker, off the request, and its outcome is kept
//! in memory ([`Job`]): a refused name shows the form again with the reason. Choosing is an
//! audit entry (`server_name_chosen`, the name and the kind of choice; no address).

use super::i18n::{self, fill, Lang};
use super::member_text::MemberText;
use super::name_text::NameText;
use super::pages::{html, Frame, Page};
use super::setup::normalise;
use super::signin;
use super::AppState;
use crate::audit::{Action, Actor, NewEntry};
use crate::health::unit::{JobOutcome, StartUnit};
use crate::name::check::Checker;
use askama::Template;
use axum::extract::State;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio_util::task::TaskTracker;

/// What the name step needs; `None` in `Web` where the name is not chosen on the page.
pub struct NameSetup {
    /// Where the root side writes the chosen name (`/etc/hearth/server_name`).
    pub server_name_file: PathBuf,
    /// Names `<label>.<domain>` under the cooperative's domain, once its relay is set up.
    pub cooperative_domain: Option<String>,
    pub checker: Checker,
    pub units: Arc<dyn StartUnit>,
    /// The cooperative's relay: a cooperative name is enrolled there first (with the family's
    /// enrolment code) and the tunnel started before the name's unit.
    pub relay: Option<crate::config::RelaySettings>,
    /// How long the job waits for the tunnel before it starts the name's unit anyway (the
    /// certificate's http-01 comes through the tunnel; hearth-acme retries if it was early).
    pub relay_wait: std::time::Duration,
    pub job: Mutex<Job>,
    /// The owner's tracker: the job is joined at shutdown.
    pub tasks: TaskTracker,
    /// "Restore from a backup" instead of a new name (`super::setup_restore`).
    pub restore: Option<super::setup_restore::RestoreSetup>,
}

/// The name unit's job, as far as this process knows.
#[derive(Debug, Clone, PartialEq)]
pub enum Job {
    Idle,
    Running {
        name: String,
    },
    Done {
        name: String,
    },
    /// systemd's job result (`failed`, …) or why it could not be asked.
    Failed {
        name: String,
        why: Why,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Why {
    Result { result: String, unit: String },
    Error(String),
}

impl NameSetup {
    pub fn new(
        server_name_file: PathBuf,
        cooperative_domain: Option<String>,
        checker: Checker,
        units: Arc<dyn StartUnit>,
        tasks: TaskTracker,
    ) -> NameSetup {
        NameSetup {
            server_name_file,
            cooperative_domain,
            checker,
            units,
            relay: None,
            relay_wait: std::time::Duration::from_secs(20),
            job: Mutex::new(Job::Idle),
            tasks,
            restore: None,
        }
    }

    /// The setup page offers a restore from a backup too.
    pub fn with_restore(
        mut self,
        restore: Option<super::setup_restore::RestoreSetup>,
    ) -> NameSetup {
        self.restore = restore;
        self
    }

    /// Names under the cooperative's domain are enrolled with its relay first.
    pub fn with_relay(mut self, relay: Option<crate::config::RelaySettings>) -> NameSetup {
        self.relay = relay;
        self
    }

    fn job(&self) -> Job {
        self.job.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_job(&self, job: Job) {
        *self.job.lock().unwrap_or_else(|p| p.into_inner()) = job;
    }
}

/// Where `/setup` stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// Choose the name (with the reason the last attempt failed).
    Name(Option<Why>),
    /// The name is chosen (or being set up); Synapse is not healthy yet.
    SettingUp { name: String, job_running: bool },
    /// Create the first admin.
    Admin,
}

/// Synapse answers (or health is not watched here).
fn synapse_ready(state: &AppState) -> bool {
    use crate::health::machine::Health;
    state
        .health
        .get()
        .as_ref()
        .is_none_or(|r| matches!(r.state, Health::Healthy | Health::Degraded))
}

pub fn phase(state: &AppState) -> Phase {
    let Some(setup) = state.web.as_ref().and_then(|w| w.name.clone()) else {
        return Phase::Admin;
    };
    let job = setup.job();
    if let Job::Running { name } = &job {
        return Phase::SettingUp {
            name: name.clone(),
            job_running: true,
        };
    }
    let chosen = crate::name::chosen(&setup.server_name_file).or(match &job {
        Job::Done { name } => Some(name.clone()),
        _ => None,
    });
    match chosen {
        Some(_) if synapse_ready(state) => Phase::Admin,
        Some(name) => Phase::SettingUp {
            name,
            job_running: false,
        },
        None => Phase::Name(match job {
            Job::Failed { why, .. } => Some(why),
            _ => None,
        }),
    }
}

#[derive(Template)]
#[template(path = "setup_name.html")]
pub struct NamePage {
    pub frame: Frame,
    pub n: &'static NameText,
    pub cooperative_domain: Option<String>,
    /// The cooperative's relay is configured: its enrolment code is asked for.
    pub token_field: bool,
    pub kind: String,
    pub label: String,
    pub domain: String,
    pub error: Option<String>,
    /// A restore from a backup is offered.
    pub restore: bool,
}

#[derive(Template)]
#[template(path = "setup_confirm.html")]
pub struct ConfirmPage {
    pub frame: Frame,
    pub n: &'static NameText,
    pub lead: String,
    pub resolves: String,
    pub code: String,
    pub kind: String,
    pub name: String,
    /// The cooperative's enrolment code, carried to the confirmation (empty: none).
    pub token: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup_progress.html")]
pub struct ProgressPage {
    pub frame: Frame,
    pub n: &'static NameText,
    pub title: String,
    pub job_running: bool,
    pub synapse: String,
}

fn respond(lang: Lang, rendered: Result<String, askama::Error>, status: StatusCode) -> Response {
    let mut r = html(lang, rendered);
    *r.status_mut() = status;
    r
}

fn why_text(n: &NameText, why: &Why) -> String {
    match why {
        Why::Result { result, unit } => fill(n.job_refused, &[result, unit]),
        Why::Error(e) => fill(n.job_error, &[e]),
    }
}

/// The name form.
pub fn name_page(
    lang: Lang,
    setup: &NameSetup,
    form: Option<&NameForm>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let p = NamePage {
        frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
        n: NameText::of(lang),
        cooperative_domain: setup.cooperative_domain.clone(),
        token_field: setup.relay.is_some(),
        kind: form
            .map(|f| f.kind.clone())
            .filter(|k| k == "cooperative" && setup.cooperative_domain.is_some())
            .unwrap_or_else(|| "own".into()),
        label: form
            .and_then(|f| f.label.as_deref())
            .unwrap_or("")
            .chars()
            .take(63)
            .collect(),
        domain: form
            .and_then(|f| f.domain.as_deref())
            .unwrap_or("")
            .chars()
            .take(253)
            .collect(),
        error,
        restore: setup.restore.is_some(),
    };
    respond(lang, p.render(), status)
}

/// `GET /setup` while the name is not chosen, or Synapse is not up yet.
pub fn page_for(state: &AppState, lang: Lang) -> Option<Response> {
    let setup = state.web.as_ref()?.name.clone()?;
    let n = NameText::of(lang);
    match phase(state) {
        Phase::Admin => None,
        Phase::Name(why) => Some(name_page(
            lang,
            &setup,
            None,
            why.map(|w| why_text(n, &w)),
            StatusCode::OK,
        )),
        Phase::SettingUp { name, job_running } => {
            let synapse = state
                .health
                .get()
                .as_ref()
                .map(|r| r.reason.clone())
                .unwrap_or_default();
            let p = ProgressPage {
                frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
                n,
                title: fill(n.progress_title, &[&name]),
                job_running,
                synapse,
            };
            let mut r = respond(lang, p.render(), StatusCode::OK);
            // Reload without script (the page's CSP allows none inline).
            r.headers_mut()
                .insert(header::REFRESH, HeaderValue::from_static("5"));
            Some(r)
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct NameForm {
    pub code: String,
    #[serde(default)]
    pub kind: String,
    pub label: Option<String>,
    pub domain: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    pub code: String,
    pub kind: String,
    pub name: String,
    pub token: Option<String>,
    pub understood: Option<String>,
}

/// The enrolment code as typed: trimmed, at most 64 characters.
fn token_of(t: Option<&str>) -> String {
    t.unwrap_or("").trim().chars().take(64).collect()
}

pub(crate) fn see_setup() -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/setup"));
    r
}

/// The code check shared by both steps: same origin, the limiter, the code itself.
/// `Some(response)`: refused, with the page to answer with.
pub(crate) fn authorised(
    web: &super::Web,
    parts: &Parts,
    code: &str,
    lang: Lang,
    fail: impl Fn(String, StatusCode) -> Response,
) -> Option<Response> {
    let m = MemberText::of(lang);
    let Some(stored) = super::setup::stored_code(&web.setup_code_file) else {
        return Some(see_setup());
    };
    if !signin::same_origin(&parts.headers) {
        return Some(fail(m.signin_cross_site.into(), StatusCode::FORBIDDEN));
    }
    let addr = signin::peer(parts);
    if let Err(l) = web.limiter.check(addr, "setup", true) {
        return Some(fail(
            i18n::fill(
                m.signin_limited,
                &[&l.retry_after.as_secs().max(1).to_string()],
            ),
            StatusCode::TOO_MANY_REQUESTS,
        ));
    }
    if !super::session::same(&normalise(code), &stored) {
        web.limiter.failed(addr, "setup");
        return Some(fail(m.setup_wrong_code.into(), StatusCode::UNAUTHORIZED));
    }
    None
}

/// The name the form asks for: `<label>.<cooperative domain>` or the family's own domain.
fn wanted(
    setup: &NameSetup,
    kind: &str,
    label: &str,
    domain: &str,
    n: &NameText,
) -> Result<String, String> {
    match kind {
        "cooperative" => {
            let Some(coop) = &setup.cooperative_domain else {
                return Err(n.cooperative_unavailable.into());
            };
            let label = label.trim().to_ascii_lowercase();
            if label.is_empty()
                || !label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(n.cooperative_bad_label.into());
            }
            Ok(format!("{label}.{coop}"))
        }
        _ => Ok(domain.to_string()),
    }
}

/// `POST /setup/name`: check the code and the name; on success, the confirmation.
pub async fn name_post(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<NameForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let n = NameText::of(lang);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let Some(setup) = web.name.clone() else {
        return see_setup();
    };
    if !matches!(phase(&state), Phase::Name(_)) {
        return see_setup();
    }
    let fail = |msg: String, status| name_page(lang, &setup, Some(&f), Some(msg), status);
    if let Some(r) = authorised(&web, &parts, &f.code, lang, fail) {
        return r;
    }
    let input = match wanted(
        &setup,
        &f.kind,
        f.label.as_deref().unwrap_or(""),
        f.domain.as_deref().unwrap_or(""),
        n,
    ) {
        Ok(i) => i,
        Err(msg) => return name_page(lang, &setup, Some(&f), Some(msg), StatusCode::BAD_REQUEST),
    };
    let token = token_of(f.token.as_deref());
    if f.kind == "cooperative" && setup.relay.is_some() && token.is_empty() {
        return name_page(
            lang,
            &setup,
            Some(&f),
            Some(n.cooperative_token_missing.into()),
            StatusCode::BAD_REQUEST,
        );
    }
    match setup.checker.check(&input).await {
        Err(r) => {
            tracing::info!(name = %input, refused = r.code(), "setup: name refused");
            name_page(
                lang,
                &setup,
                Some(&f),
                Some(n.refusal(&r)),
                StatusCode::BAD_REQUEST,
            )
        }
        Ok(checked) => {
            let addrs = checked
                .addresses
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let p = ConfirmPage {
                frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
                n,
                lead: fill(n.confirm_lead, &[checked.name.as_str()]),
                resolves: fill(n.confirm_resolves, &[&addrs]),
                code: f.code.chars().take(64).collect(),
                kind: if f.kind == "cooperative" {
                    "cooperative"
                } else {
                    "own"
                }
                .into(),
                name: checked.name.to_string(),
                token: if f.kind == "cooperative" {
                    token
                } else {
                    String::new()
                },
                error: None,
            };
            respond(lang, p.render(), StatusCode::OK)
        }
    }
}

/// `POST /setup/name/confirm`: the name can never change, understood: start the name unit.
pub async fn confirm_post(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<ConfirmForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let n = NameText::of(lang);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let Some(setup) = web.name.clone() else {
        return see_setup();
    };
    if !matches!(phase(&state), Phase::Name(_)) {
        return see_setup();
    }
    let form = NameForm {
        code: String::new(),
        kind: f.kind.clone(),
        label: None,
        domain: Some(f.name.clone()),
        token: None,
    };
    let to_name_form =
        |msg: String, status| name_page(lang, &setup, Some(&form), Some(msg), status);
    if let Some(r) = authorised(&web, &parts, &f.code, lang, to_name_form) {
        return r;
    }
    if f.understood.as_deref() != Some("on") {
        let p = ConfirmPage {
            frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
            n,
            lead: fill(n.confirm_lead, &[&f.name]),
            resolves: String::new(),
            code: f.code.chars().take(64).collect(),
            kind: f.kind.clone(),
            name: f.name.chars().take(253).collect(),
            token: token_of(f.token.as_deref()),
            error: Some(n.confirm_missing.into()),
        };
        return respond(lang, p.render(), StatusCode::BAD_REQUEST);
    }
    // The world may have changed since the confirmation was shown: check again.
    let kind = if f.kind == "cooperative" {
        "cooperative"
    } else {
        "own"
    };
    if kind == "cooperative"
        && !setup
            .cooperative_domain
            .as_ref()
            .is_some_and(|d| f.name.ends_with(&format!(".{d}")))
    {
        return to_name_form(n.cooperative_unavailable.into(), StatusCode::BAD_REQUEST);
    }
    // A cooperative name is claimed with the family's enrolment code (when the relay is set up).
    let enrol = match (&setup.relay, kind) {
        (Some(relay), "cooperative") => {
            let token = token_of(f.token.as_deref());
            if token.is_empty() {
                return to_name_form(n.cooperative_token_missing.into(), StatusCode::BAD_REQUEST);
            }
            Some((relay.clone(), token))
        }
        _ => None,
    };
    let checked = match setup.checker.check(&f.name).await {
        Ok(c) => c,
        Err(r) => return to_name_form(n.refusal(&r), StatusCode::BAD_REQUEST),
    };
    let name = checked.name.to_string();
    {
        let mut job = setup.job.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(*job, Job::Running { .. } | Job::Done { .. })
            || crate::name::chosen(&setup.server_name_file).is_some()
        {
            return see_setup();
        }
        *job = Job::Running { name: name.clone() };
    }
    // No entry, no change: the choice is in the audit log before the unit starts.
    let entry = NewEntry::new(Actor::System, Action::ServerNameChosen)
        .detail("name", name.as_str())
        .detail("choice", kind)
        .detail("with", "setup code");
    if signin::record(&web, vec![entry]).await.is_err() {
        setup.set_job(Job::Idle);
        return to_name_form(n.audit_failed.into(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let unit = crate::name::unit(&name);
    tracing::info!(%name, %unit, "setup: the server's name is chosen; starting its unit");
    let s = setup.clone();
    let domain = setup.cooperative_domain.clone().unwrap_or_default();
    setup.tasks.spawn(async move {
        if let Some((relay, token)) = enrol {
            let label = name
                .strip_suffix(&format!(".{domain}"))
                .unwrap_or(&name)
                .to_string();
            if let Err(why) = enrol_and_connect(&s, &relay, &token, &label, &name).await {
                tracing::warn!(%name, "setup: the cooperative's relay: {why}");
                s.set_job(Job::Failed {
                    name,
                    why: Why::Error(why),
                });
                return;
            }
        }
        let job = match s.units.start_unit(&unit).await {
            Ok(JobOutcome::Done) => {
                tracing::info!(%unit, "the name unit is done");
                Job::Done { name }
            }
            Ok(outcome) => {
                let result = match outcome {
                    JobOutcome::Other(s) => s,
                    o => format!("{o:?}").to_lowercase(),
                };
                tracing::warn!(%unit, %result, "the name unit's job did not finish");
                Job::Failed {
                    name,
                    why: Why::Result { result, unit },
                }
            }
            Err(e) => {
                tracing::warn!(%unit, "starting the name unit: {e}");
                Job::Failed {
                    name,
                    why: Why::Error(e.to_string()),
                }
            }
        };
        s.set_job(job);
    });
    see_setup()
}

/// Claims the name with the cooperative, starts the tunnel and waits (at most
/// `relay_wait`) until it is up: the certificate comes through it.
async fn enrol_and_connect(
    s: &NameSetup,
    relay: &crate::config::RelaySettings,
    token: &str,
    label: &str,
    name: &str,
) -> Result<(), String> {
    let enrolled = crate::tunnel::enrol(
        &relay.api,
        token,
        label,
        relay.ca.as_deref(),
        &relay.key,
        &relay.config,
    )
    .await
    .map_err(|e| format!("{e:#}"))?;
    if enrolled != name {
        return Err(format!(
            "the cooperative gave the name {enrolled}, not {name}"
        ));
    }
    tracing::info!(%name, "setup: enrolled with the cooperative's relay; starting the tunnel");
    match s.units.start_unit(crate::tunnel::UNIT).await {
        Ok(JobOutcome::Done) => {}
        Ok(other) => return Err(format!("{}: {other:?}", crate::tunnel::UNIT)),
        Err(e) => return Err(format!("{}: {e}", crate::tunnel::UNIT)),
    }
    let deadline = tokio::time::Instant::now() + s.relay_wait;
    while tokio::time::Instant::now() < deadline {
        if crate::tunnel::read_status(&relay.status).is_ok_and(|st| st.connected()) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    tracing::warn!(%name, "setup: the tunnel is not up yet; going on (the certificate will be retried)");
    Ok(())
}

#[cfg(test)]
mod tests;
