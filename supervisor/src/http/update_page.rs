//! Updates on the page (issue 18; the updates themselves are root's, `crate::update::steps`).
//!
//! - `/update` (HTML) and `GET /api/v1/update` (JSON): every signed-in member sees the release
//!   that runs, where the last update stands (from root's `state.json`: writing, on trial,
//!   kept, rolled back and why, interrupted and why), whether a newer release is available with
//!   its release notes in the page's language, and when it will be installed. Nothing in it is
//!   about a person: a view is not an audit entry.
//! - `POST /update` (form, `action` = `now` | `postpone` | `resume`) and `POST
//!   /api/v1/update`: a server admin installs the available release now (hearth-update.service
//!   through systemd; the polkit rule allows it), postpones the nightly update by a week, or
//!   takes the postponement back. CSRF on every form; anyone else gets 403 and a `denied`
//!   entry; each action is an `update` audit entry (detail `what`).
//!
//! The available release is looked for by [`check`], a task of the daemon (the signed manifest
//! at `[update] source`, verified with the image's key: an unverified one is not shown).

use super::i18n::{self, fill, Lang};
use super::invite::{deny, no_store, signed_in_csrf};
use super::member_pages::{error_page, form_viewer, frame, page_viewer, redirect};
use super::pages::{html, Frame, Page};
use super::session::Role;
use super::signin::{self, ApiError, Viewer};
use super::update_text::UpdateText;
use super::{AppState, Web};
use crate::audit::{Action, NewEntry};
use crate::health::systemd::SystemdUnits;
use crate::health::unit::{JobOutcome, UnitControl};
use crate::update::manifest::Manifest;
use crate::update::slots::{self, Slot};
use crate::update::state::{self, Phase, State as UpdateState};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The unit an update is.
pub const UNIT: &str = "hearth-update.service";
/// How long "postpone" postpones.
pub const POSTPONE_S: i64 = 7 * 86_400;

/// Starting an update, as the page asks systemd.
pub trait UpdateUnits: Send + Sync {
    fn start(&self) -> BoxFuture<'_, Result<JobOutcome, String>>;
}

impl UpdateUnits for SystemdUnits {
    fn start(&self) -> BoxFuture<'_, Result<JobOutcome, String>> {
        Box::pin(async move {
            UnitControl::start(self, UNIT)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// What the newest look at the source found.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Offer {
    #[default]
    NotChecked,
    UpToDate,
    Available {
        manifest: Box<Manifest>,
    },
    Failed {
        error: String,
    },
}

/// What the update doors need beyond [`Web`].
pub struct Updates {
    /// Root's `state.json` directory (`[update] state_dir`).
    pub state_dir: PathBuf,
    /// The daemon's postponement: Unix seconds until which the nightly update waits.
    pub postpone_file: PathBuf,
    /// `/proc/cmdline`: the slot that runs.
    pub cmdline: PathBuf,
    pub running_version: String,
    pub commit_after_s: u64,
    /// Whether `[update] source` is set.
    pub source_set: bool,
    pub offer: Arc<Mutex<Offer>>,
    /// `None` where there is no systemd: nothing can be started from the page.
    pub units: Option<Arc<dyn UpdateUnits>>,
    pub tasks: TaskTracker,
}

/// Until when the nightly update is postponed (only a time still ahead counts).
pub fn postponed_until(file: &Path, now_s: i64) -> Option<i64> {
    let until: i64 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    (until > now_s).then_some(until)
}

/// Where updates stand.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub running_version: String,
    pub slot: Option<Slot>,
    pub last: Option<UpdateState>,
    pub offer: Offer,
    pub source_set: bool,
    pub postponed_until: Option<i64>,
    pub commit_after_s: u64,
    #[serde(skip)]
    pub can_act: bool,
}

fn updates(web: &Web) -> Result<Arc<Updates>, ApiError> {
    web.updates.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "updates are not part of this server".into(),
        )
    })
}

pub async fn view(web: &Arc<Web>) -> Result<View, ApiError> {
    let u = updates(web)?;
    let now_s = (web.now_s)();
    let (dir, cmdline, postpone) = (
        u.state_dir.clone(),
        u.cmdline.clone(),
        u.postpone_file.clone(),
    );
    let (last, slot, postponed) = tokio::task::spawn_blocking(move || {
        let last = state::load(&dir).unwrap_or_else(|e| {
            tracing::warn!("update page: {e}");
            None
        });
        let slot = std::fs::read_to_string(&cmdline)
            .ok()
            .and_then(|l| slots::running(&l).ok());
        (last, slot, postponed_until(&postpone, now_s))
    })
    .await
    .unwrap_or((None, None, None));
    let offer = u.offer.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(View {
        running_version: u.running_version.clone(),
        slot,
        last,
        offer,
        source_set: u.source_set,
        postponed_until: postponed,
        commit_after_s: u.commit_after_s,
        can_act: u.units.is_some(),
    })
}

/// What a server admin may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Act {
    Now,
    Postpone,
    Resume,
}

impl Act {
    fn as_str(self) -> &'static str {
        match self {
            Act::Now => "now",
            Act::Postpone => "postpone",
            Act::Resume => "resume",
        }
    }
}

/// A server admin's action; anyone else gets 403 and a `denied` entry.
pub async fn act(web: &Arc<Web>, viewer: &Viewer, what: Act) -> Result<(), ApiError> {
    let u = updates(web)?;
    if viewer.role != Role::ServerAdmin {
        return Err(deny(
            web,
            viewer,
            "update",
            None,
            "only a server admin may do this",
        )
        .await);
    }
    let units = u.units.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no systemd here: updates run on the appliance".into(),
        )
    })?;
    let now_s = (web.now_s)();
    let file = u.postpone_file.clone();
    let written = tokio::task::spawn_blocking(move || match what {
        // "Now" overrides a postponement: the run itself honours it otherwise.
        Act::Now | Act::Resume => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", file.display()))
            }
            _ => Ok(()),
        },
        Act::Postpone => {
            super::backup_page::write_private(&file, (now_s + POSTPONE_S).to_string().as_bytes())
                .map_err(|e| format!("{}: {e}", file.display()))
        }
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    written.map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("update: {e}")))?;
    signin::record(
        web,
        vec![NewEntry::new(viewer.actor(), Action::Update).detail("what", what.as_str())],
    )
    .await?;
    tracing::info!(by = %viewer.user_id, what = what.as_str(), "updates: a server admin's choice");
    if what == Act::Now {
        u.tasks.spawn(async move {
            match units.start().await {
                Ok(outcome) => tracing::info!(?outcome, "the update from the page ended"),
                Err(e) => tracing::warn!("the update from the page: {e}"),
            }
        });
    }
    Ok(())
}

#[derive(Template)]
#[template(path = "update.html")]
pub struct UpdatePage {
    pub frame: Frame,
    pub t: &'static UpdateText,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub running: String,
    pub last: String,
    pub last_bad: bool,
    pub available: String,
    pub notes: Option<String>,
    pub when: Option<String>,
    pub offered: bool,
    pub postponed: bool,
    pub server_admin: bool,
    pub can_act: bool,
}

/// The last update in words, and whether it went wrong.
pub fn last_words(t: &UpdateText, v: &View) -> (String, bool) {
    let Some(s) = &v.last else {
        return (t.never.to_string(), false);
    };
    let when = i18n::local_time(s.since);
    let why = s.reason.as_deref().unwrap_or("");
    match s.phase {
        Phase::Writing => (fill(t.writing, &[&s.version, &when]), false),
        Phase::Trial => (
            fill(
                t.trial,
                &[&s.version, &v.commit_after_s.div_ceil(60).to_string()],
            ),
            false,
        ),
        Phase::Committed => (
            fill(t.committed, &[&s.version, &when, &s.from_version]),
            false,
        ),
        Phase::RolledBack => (fill(t.rolled_back, &[&s.version, &when, why]), true),
        Phase::Interrupted => (fill(t.interrupted, &[&s.version, &when, why]), true),
    }
}

fn render(lang: Lang, viewer: &Viewer, v: View, notice: Option<&'static str>) -> Response {
    let t = UpdateText::of(lang);
    let (last, last_bad) = last_words(t, &v);
    let slot = v.slot.map(|s| s.to_string()).unwrap_or_else(|| "?".into());
    let (available, notes, offered) = match &v.offer {
        _ if !v.source_set => (t.off.to_string(), None, false),
        Offer::NotChecked => (t.not_checked.to_string(), None, false),
        Offer::UpToDate => (t.up_to_date.to_string(), None, false),
        Offer::Failed { error } => (fill(t.check_failed, &[error]), None, false),
        Offer::Available { manifest } => (
            fill(t.available, &[&manifest.version, &manifest.released]),
            Some(match lang {
                Lang::De => manifest.notes.de.clone(),
                Lang::En => manifest.notes.en.clone(),
            }),
            true,
        ),
    };
    let when = match v.postponed_until {
        Some(until) => Some(fill(t.postponed, &[&i18n::local_time(until)])),
        None if offered => Some(t.tonight.to_string()),
        None => None,
    };
    let page = UpdatePage {
        frame: frame(lang, Page::Update, Some(viewer)),
        t,
        csrf: viewer.csrf.clone(),
        notice,
        running: fill(t.running, &[&v.running_version, &slot]),
        last,
        last_bad,
        available,
        notes,
        when,
        offered,
        postponed: v.postponed_until.is_some(),
        server_admin: viewer.role == Role::ServerAdmin,
        can_act: v.can_act && v.source_set,
    };
    no_store(html(lang, page.render()))
}

/// `GET /update` (`?done=now|postpone|resume` after an action says so).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<super::member_pages::Done>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match page_viewer(&state, &headers, Page::Update.path()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = UpdateText::of(lang);
    let notice = match q.done.as_deref() {
        Some("now") => Some(t.started),
        Some("postpone") => Some(t.postponed_done),
        Some("resume") => Some(t.resumed),
        _ => None,
    };
    match view(&web).await {
        Ok(v) => render(lang, &viewer, v, notice),
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Debug, Deserialize)]
pub struct ActForm {
    pub csrf: Option<String>,
    pub action: Act,
}

/// `POST /update` (form): the action, then back to the page.
pub async fn page_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<ActForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) =
        match form_viewer(&state, &headers, Page::Update.path(), f.csrf.as_deref()).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    match act(&web, &viewer, f.action).await {
        Ok(()) => redirect(&format!("/update?done={}", f.action.as_str()), &[]),
        Err(e) if e.0 == StatusCode::FORBIDDEN => {
            error_page(lang, e.0, UpdateText::of(lang).may_not)
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

/// `GET /api/v1/update`.
pub async fn api_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, _viewer) = signin::signed_in(&state, &headers).await?;
        view(&web).await
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub struct ActBody {
    pub action: Act,
}

/// `POST /api/v1/update` `{"action": "now"|"postpone"|"resume"}` → `{"done": "…"}`.
pub async fn api_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(b): Json<ActBody>,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        act(&web, &viewer, b.action).await?;
        Ok::<_, ApiError>(json!({ "done": b.action.as_str() }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

/// The daemon's look for a newer release: at start (after `first`), then every `every`.
pub async fn check(
    source: String,
    options: crate::update::Options,
    offer: Arc<Mutex<Offer>>,
    first: Duration,
    every: Duration,
    cancel: CancellationToken,
) {
    let source = crate::update::Source::parse(&source);
    let mut wait = first;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let found = match crate::update::fetch_manifest(&source, &options).await {
            Ok(m) if m.newer_than(&options.running_version) => Offer::Available {
                manifest: Box::new(m),
            },
            Ok(_) => Offer::UpToDate,
            Err(e) => {
                tracing::warn!("looking for a newer release at {source}: {e}");
                Offer::Failed {
                    error: e.to_string(),
                }
            }
        };
        *offer.lock().unwrap_or_else(|p| p.into_inner()) = found;
    }
}
