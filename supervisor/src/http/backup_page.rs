//! The backups on the page (issue 16; the runs are root's, `crate::backup`).
//!
//! - `/backup` (HTML) and `GET /api/v1/backup` (JSON): every signed-in member sees whether the
//!   server is backed up: the last good backup, its size and target, the next run (the timer's
//!   next elapse, from systemd), whether one is running, and each target's state with its last
//!   error. Nothing in it is about a person, so a view is not an audit entry. It reads the
//!   status file hearth-backup.service writes (`backup::run::Status`).
//! - `POST /backup` (form) and `POST /api/v1/backup/run`: a server admin starts a run now
//!   (hearth-backup.service, through systemd; the polkit rule allows it), with the session's
//!   CSRF token. Anyone else gets 403 and a `denied` entry.
//! - The USB disk (server admins): the USB disks plugged in (`crate::backup_usb`), and
//!   `POST /backup/usb` to erase one for the backups after the admin confirmed that disk by its
//!   name and size: the request for the root side, then hearth-backup-setup.service; its progress
//!   from the root side's status file.
//! - The recovery key, once (server admins): when preparing made the key, the root side leaves
//!   it for the page; `GET /backup/key` is a printable page with it (an audit entry),
//!   `POST /backup/key` ("it is on paper") removes it from the box for good.
//!
//! Starting a run, preparing a disk and seeing the key are audit entries (`backup`, detail
//! `what`).

use super::backup_text::BackupText;
use super::i18n::{self, fill, Lang};
use super::invite::{deny, no_store, signed_in_csrf};
use super::member_pages::{error_page, form_viewer, frame, page_viewer, redirect};
use super::pages::{html, Frame, Page};
use super::session::Role;
use super::signin::{self, ApiError, Viewer};
use super::{AppState, Web};
use crate::audit::{Action, NewEntry};
use crate::backup::run::{Status, TargetStatus};
use crate::backup_usb::{self, Disk};
use crate::health::systemd::SystemdUnits;
use crate::health::unit::{ActiveState, JobOutcome, UnitControl};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::task::TaskTracker;

/// The unit a run is, and the timer that starts it nightly.
pub const UNIT: &str = "hearth-backup.service";
pub const TIMER: &str = "hearth-backup.timer";

/// What the page asks systemd about the backup units.
pub trait BackupUnits: Send + Sync {
    /// When the nightly timer elapses next (Unix s), `None` when it is not scheduled.
    fn next_run(&self) -> BoxFuture<'_, Result<Option<i64>, String>>;
    /// Whether a run is under way.
    fn running(&self) -> BoxFuture<'_, Result<bool, String>>;
    /// Start `unit` (a run, or the disk's preparation) and wait for its job (a oneshot's start
    /// job ends when it is done).
    fn start(&self, unit: &'static str) -> BoxFuture<'_, Result<JobOutcome, String>>;
}

impl BackupUnits for SystemdUnits {
    fn next_run(&self) -> BoxFuture<'_, Result<Option<i64>, String>> {
        Box::pin(async move { self.next_elapse(TIMER).await.map_err(|e| e.to_string()) })
    }
    fn running(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move {
            self.status(UNIT)
                .await
                .map(|s| s.active == ActiveState::Activating)
                .map_err(|e| e.to_string())
        })
    }
    fn start(&self, unit: &'static str) -> BoxFuture<'_, Result<JobOutcome, String>> {
        Box::pin(async move {
            UnitControl::start(self, unit)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// What the backup doors need beyond [`Web`].
pub struct Backups {
    /// `[backup] status_file`: the last runs, per target.
    pub status_file: PathBuf,
    /// `None` where there is no systemd (a developer's machine): no next run, no "back up now".
    pub units: Option<Arc<dyn BackupUnits>>,
    /// The owner's tracker: a run started from the page is awaited there, off the request.
    pub tasks: TaskTracker,
    /// The USB disk's part; `None` where disks are not prepared on the page.
    pub usb: Option<UsbSetup>,
    /// `[backup]`: whether the cooperative's store is a target (configured, or given by the
    /// box's enrolment), so that a server admin can start saving there.
    pub config: Option<crate::config::BackupConfig>,
}

/// Where the USB disk's part reads and writes.
#[derive(Debug, Clone)]
pub struct UsbSetup {
    pub sources: backup_usb::Sources,
    /// `[backup] usb_repository`: there while the prepared disk is plugged in.
    pub repository: PathBuf,
    /// The request for hearth-backup-setup.service (0600, this user's).
    pub request_file: PathBuf,
    /// The root side's progress (JSON: `state`, `step`, `error`, `disk`).
    pub status_file: PathBuf,
    /// The recovery key, left once by the root side for the printable page.
    pub key_file: PathBuf,
}

/// What hearth-backup-setup.service says.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct UsbJob {
    pub state: String,
    #[serde(default)]
    pub step: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub disk: String,
}

impl UsbJob {
    /// The root side's status file; `None` when there is none (or not its JSON).
    pub fn load(path: &std::path::Path) -> Option<UsbJob> {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
}

/// Where the backups stand.
pub struct View {
    pub status: Status,
    pub next_s: Option<i64>,
    pub running: bool,
    pub can_run: bool,
    pub now_s: i64,
    /// The USB disks plugged in (for a server admin's choice).
    pub disks: Vec<Disk>,
    /// The prepared disk is plugged in (its repository is there).
    pub usb_present: bool,
    pub usb_job: Option<UsbJob>,
    /// The recovery key waits to be printed.
    pub key_waiting: bool,
    /// The cooperative's store is a target but has never had a good run: offered to set up.
    pub cooperative_offered: bool,
}

impl View {
    /// The newest good run of any target: its target's name and the run.
    fn last_good(&self) -> Option<(&str, &crate::backup::run::Good)> {
        self.status
            .targets
            .iter()
            .filter_map(|(n, t)| t.last_good.as_ref().map(|g| (n.as_str(), g)))
            .max_by_key(|(_, g)| g.at_s)
    }
}

fn backups(web: &Web) -> Result<Arc<Backups>, ApiError> {
    web.backups.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "backups are not part of this server".into(),
        )
    })
}

/// Read the status file and ask systemd (a failed question is logged and left out).
pub async fn view(web: &Arc<Web>) -> Result<View, ApiError> {
    let b = backups(web)?;
    let file = b.status_file.clone();
    let status = tokio::task::spawn_blocking(move || Status::load(&file))
        .await
        .unwrap_or_default();
    let (mut next_s, mut running) = (None, false);
    if let Some(u) = &b.units {
        let (next, run) = tokio::join!(u.next_run(), u.running());
        next_s = next.unwrap_or_else(|e| {
            tracing::debug!("backup page: the timer: {e}");
            None
        });
        running = run.unwrap_or_else(|e| {
            tracing::debug!("backup page: the unit: {e}");
            false
        });
    }
    let usb = b.usb.clone();
    let config = b.config.clone();
    let never_good = status
        .targets
        .get("cooperative")
        .is_none_or(|t| t.last_good.is_none());
    let cooperative_offered = never_good
        && tokio::task::spawn_blocking(move || {
            config.is_some_and(|c| {
                crate::backup::run::targets(&c)
                    .iter()
                    .any(|t| t.name == "cooperative")
            })
        })
        .await
        .unwrap_or(false);
    let (disks, usb_present, usb_job, key_waiting) = tokio::task::spawn_blocking(move || {
        let Some(u) = usb else {
            return (Vec::new(), false, None, false);
        };
        let job = UsbJob::load(&u.status_file);
        (
            backup_usb::disks(&u.sources),
            u.repository.join("config").is_file(),
            job,
            u.key_file.is_file(),
        )
    })
    .await
    .unwrap_or_default();
    Ok(View {
        status,
        next_s,
        running,
        can_run: b.units.is_some(),
        now_s: (web.now_s)(),
        disks,
        usb_present,
        usb_job,
        key_waiting,
        cooperative_offered,
    })
}

async fn audit(web: &Arc<Web>, viewer: &Viewer, what: &str) -> Result<(), ApiError> {
    signin::record(
        web,
        vec![NewEntry::new(viewer.actor(), Action::Backup).detail("what", what)],
    )
    .await
}

/// Only a server admin; anyone else gets 403 and a `denied` entry.
async fn server_admin(web: &Arc<Web>, viewer: &Viewer, what: &str) -> Result<(), ApiError> {
    if viewer.role == Role::ServerAdmin {
        return Ok(());
    }
    Err(deny(web, viewer, what, None, "only a server admin may do this").await)
}

/// A server admin's "back up now": the run is started and awaited off the request.
pub async fn run_now(web: &Arc<Web>, viewer: &Viewer) -> Result<(), ApiError> {
    let b = backups(web)?;
    server_admin(web, viewer, "backup_run").await?;
    let units = units(&b)?;
    audit(web, viewer, "run").await?;
    tracing::info!(by = %viewer.user_id, "a backup run was started on the page");
    b.tasks.spawn(async move {
        match units.start(UNIT).await {
            Ok(outcome) => tracing::info!(?outcome, "the backup run from the page ended"),
            Err(e) => tracing::warn!("the backup run from the page: {e}"),
        }
    });
    Ok(())
}

fn units(b: &Backups) -> Result<Arc<dyn BackupUnits>, ApiError> {
    b.units.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no systemd here: backups run on the appliance".into(),
        )
    })
}

fn usb(b: &Backups) -> Result<UsbSetup, ApiError> {
    b.usb.clone().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "USB disks are not prepared on this server's page".into(),
        )
    })
}

/// Why a disk was not prepared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DiskRefused {
    /// Not plugged in (any more), or not the size the admin saw.
    Gone,
    /// A partition of it is mounted.
    InUse,
    /// The box did not tick "erase it".
    NotConfirmed,
    /// A preparation is under way.
    Busy,
}

/// A server admin's "erase this disk for the backups": checked against the disks plugged in
/// now, then the request and hearth-backup-setup.service.
pub async fn prepare_disk(
    web: &Arc<Web>,
    viewer: &Viewer,
    disk: &str,
    bytes: u64,
    confirmed: bool,
) -> Result<Result<(), DiskRefused>, ApiError> {
    let b = backups(web)?;
    server_admin(web, viewer, "backup_prepare_disk").await?;
    let u = usb(&b)?;
    let units = units(&b)?;
    if !confirmed {
        return Ok(Err(DiskRefused::NotConfirmed));
    }
    let (disk, u2) = (disk.to_string(), u.clone());
    let checked =
        tokio::task::spawn_blocking(move || -> Result<Result<Disk, DiskRefused>, String> {
            let busy = UsbJob::load(&u2.status_file).is_some_and(|j| j.state == "running");
            if busy {
                return Ok(Err(DiskRefused::Busy));
            }
            let Some(d) = backup_usb::disks(&u2.sources)
                .into_iter()
                .find(|d| d.name == disk && d.bytes == bytes)
            else {
                return Ok(Err(DiskRefused::Gone));
            };
            if d.mounted {
                return Ok(Err(DiskRefused::InUse));
            }
            write_private(&u2.request_file, backup_usb::request_text(&d).as_bytes())
                .map_err(|e| format!("{}: {e}", u2.request_file.display()))?;
            Ok(Ok(d))
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| {
            tracing::error!("backup disk request: {e}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("backup disk: {e}"),
            )
        })?;
    let d = match checked {
        Ok(d) => d,
        Err(why) => return Ok(Err(why)),
    };
    signin::record(
        web,
        vec![NewEntry::new(viewer.actor(), Action::Backup)
            .detail("what", "prepare_disk")
            .detail("disk", d.describe())],
    )
    .await?;
    tracing::info!(by = %viewer.user_id, disk = %d.name, "a USB disk is being prepared for backups");
    b.tasks.spawn(async move {
        match units.start(backup_usb::UNIT).await {
            Ok(outcome) => tracing::info!(?outcome, "preparing the backup disk ended"),
            Err(e) => tracing::warn!("preparing the backup disk: {e}"),
        }
    });
    Ok(Ok(()))
}

/// A server admin's "save to the cooperative's store too": the request and
/// hearth-backup-setup.service (which makes the repository there, and the key if none exists).
pub async fn setup_cooperative(web: &Arc<Web>, viewer: &Viewer) -> Result<bool, ApiError> {
    let b = backups(web)?;
    server_admin(web, viewer, "backup_setup_cooperative").await?;
    let u = usb(&b)?;
    let units = units(&b)?;
    let v = view(web).await?;
    if !v.cooperative_offered {
        return Ok(false);
    }
    if v.usb_job.is_some_and(|j| j.state == "running") {
        return Ok(false);
    }
    let file = u.request_file.clone();
    tokio::task::spawn_blocking(move || {
        write_private(&file, backup_usb::COOPERATIVE_REQUEST.as_bytes())
            .map_err(|e| format!("{}: {e}", file.display()))
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r)
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, format!("backup: {e}")))?;
    audit(web, viewer, "setup_cooperative").await?;
    tracing::info!(by = %viewer.user_id, "the cooperative's store is being set up for backups");
    b.tasks.spawn(async move {
        match units.start(backup_usb::UNIT).await {
            Ok(outcome) => tracing::info!(?outcome, "setting up the cooperative's store ended"),
            Err(e) => tracing::warn!("setting up the cooperative's store: {e}"),
        }
    });
    Ok(true)
}

/// `POST /backup/cooperative` (form): then back to the page.
pub async fn cooperative_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<RunForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) =
        match form_viewer(&state, &headers, Page::Backup.path(), f.csrf.as_deref()).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    match setup_cooperative(&web, &viewer).await {
        Ok(_) => redirect("/backup?done=cooperative", &[]),
        Err(e) if e.0 == StatusCode::FORBIDDEN => {
            error_page(lang, e.0, BackupText::of(lang).may_not)
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

/// A file only this user may read (0600), written whole: temporary file, synced, renamed.
pub(crate) fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Bytes in words: `8.7 MB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < UNITS.len() {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

pub struct TargetRow {
    pub name: String,
    pub last_good: String,
    pub size: String,
    pub state: String,
    pub ok: bool,
}

#[derive(Template)]
#[template(path = "backup.html")]
pub struct BackupPage {
    pub frame: Frame,
    pub t: &'static BackupText,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub set_up: bool,
    pub summary: String,
    pub warning: Option<String>,
    pub next: String,
    pub running: bool,
    pub server_admin: bool,
    pub can_run: bool,
    pub targets: Vec<TargetRow>,
    /// The USB disk's part, for a server admin.
    pub usb: Option<UsbPart>,
    pub key_waiting: bool,
    pub cooperative_offered: bool,
}

pub struct DiskRow {
    pub name: String,
    pub bytes: u64,
    /// The erase checkbox's words, or why it is not offered.
    pub words: String,
    pub offered: bool,
}

pub struct UsbPart {
    pub present: bool,
    pub job: Option<String>,
    pub job_failed: bool,
    pub disks: Vec<DiskRow>,
    pub error: Option<&'static str>,
}

fn state_of(t: &BackupText, s: &TargetStatus) -> (String, bool) {
    if s.absent {
        (t.state_absent.to_string(), false)
    } else if let Some(e) = &s.error {
        (fill(t.state_failed, &[e]), false)
    } else if s.last_good.is_some() {
        (t.state_ok.to_string(), true)
    } else {
        (t.state_none.to_string(), false)
    }
}

fn usb_part(t: &BackupText, v: &View, error: Option<&'static str>) -> UsbPart {
    let (job, job_failed) = match &v.usb_job {
        Some(j) if j.state == "running" => (Some(fill(t.usb_preparing, &[&j.step])), false),
        Some(j) if j.state == "failed" => (
            Some(fill(t.usb_failed, &[j.error.as_deref().unwrap_or(&j.step)])),
            true,
        ),
        _ => (None, false),
    };
    UsbPart {
        present: v.usb_present,
        job,
        job_failed,
        disks: v
            .disks
            .iter()
            .map(|d| {
                let (words, offered) = if d.prepared {
                    (fill(t.usb_prepared, &[&d.describe()]), false)
                } else if d.mounted {
                    (fill(t.usb_in_use, &[&d.describe()]), false)
                } else {
                    (fill(t.usb_erase, &[&d.describe()]), true)
                };
                DiskRow {
                    name: d.name.clone(),
                    bytes: d.bytes,
                    words,
                    offered,
                }
            })
            .collect(),
        error,
    }
}

fn render(lang: Lang, viewer: &Viewer, v: View, notice: Option<&'static str>) -> Response {
    render_with(lang, viewer, v, notice, None, StatusCode::OK)
}

fn render_with(
    lang: Lang,
    viewer: &Viewer,
    v: View,
    notice: Option<&'static str>,
    usb_error: Option<&'static str>,
    status: StatusCode,
) -> Response {
    let t = BackupText::of(lang);
    let admin = viewer.role == Role::ServerAdmin;
    let summary = match v.last_good() {
        Some((target, g)) => fill(
            t.last_good,
            &[&i18n::local_time(g.at_s), &size(g.bytes), &t.target(target)],
        ),
        None => t.no_good_yet.to_string(),
    };
    let good_at = v.last_good().map(|(_, g)| g.at_s);
    let set_up = !v.status.targets.is_empty();
    let warning = match good_at {
        _ if !set_up => None,
        Some(at) if v.now_s - at >= crate::backup_watch::FAILING_FOR_S => {
            Some(fill(t.stale, &[&((v.now_s - at) / 86_400).to_string()]))
        }
        _ => None,
    };
    let page = BackupPage {
        frame: frame(lang, Page::Backup, Some(viewer)),
        t,
        csrf: viewer.csrf.clone(),
        notice,
        set_up,
        summary,
        warning,
        next: match v.next_s {
            Some(s) => fill(t.next, &[&i18n::local_time(s)]),
            None => t.next_unknown.to_string(),
        },
        running: v.running,
        server_admin: admin,
        can_run: v.can_run,
        usb: (admin && v.can_run).then(|| usb_part(t, &v, usb_error)),
        cooperative_offered: admin && v.can_run && v.cooperative_offered,
        key_waiting: admin && v.key_waiting,
        targets: v
            .status
            .targets
            .iter()
            .map(|(name, s)| {
                let (state, ok) = state_of(t, s);
                TargetRow {
                    name: t.target(name),
                    last_good: s
                        .last_good
                        .as_ref()
                        .map(|g| i18n::local_time(g.at_s))
                        .unwrap_or_default(),
                    size: s
                        .last_good
                        .as_ref()
                        .map(|g| fill(t.size, &[&size(g.bytes), &size(g.added)]))
                        .unwrap_or_default(),
                    state,
                    ok,
                }
            })
            .collect(),
    };
    let mut r = no_store(html(lang, page.render()));
    *r.status_mut() = status;
    r
}

/// `GET /backup` (`?done=started` after "back up now" says so).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<super::member_pages::Done>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match page_viewer(&state, &headers, Page::Backup.path()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = BackupText::of(lang);
    let notice = match q.done.as_deref() {
        Some("started") => Some(t.started),
        Some("usb") => Some(t.usb_started),
        Some("key") => Some(t.key_removed),
        Some("cooperative") => Some(t.cooperative_started),
        _ => None,
    };
    match view(&web).await {
        Ok(v) => render(lang, &viewer, v, notice),
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Debug, Deserialize)]
pub struct RunForm {
    pub csrf: Option<String>,
}

/// `POST /backup` (form): start a run, then back to the page.
pub async fn page_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<RunForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) =
        match form_viewer(&state, &headers, Page::Backup.path(), f.csrf.as_deref()).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    match run_now(&web, &viewer).await {
        Ok(()) => redirect("/backup?done=started", &[]),
        Err(e) if e.0 == StatusCode::FORBIDDEN => {
            error_page(lang, e.0, BackupText::of(lang).may_not)
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Debug, Deserialize)]
pub struct DiskForm {
    pub csrf: Option<String>,
    #[serde(default)]
    pub disk: String,
    #[serde(default)]
    pub bytes: u64,
    /// The "erase it" checkbox.
    pub erase: Option<String>,
}

/// `POST /backup/usb` (form): erase the chosen disk for the backups, then back to the page.
pub async fn usb_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<DiskForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let t = BackupText::of(lang);
    let (web, viewer) =
        match form_viewer(&state, &headers, Page::Backup.path(), f.csrf.as_deref()).await {
            Ok(x) => x,
            Err(r) => return r,
        };
    let outcome = prepare_disk(
        &web,
        &viewer,
        &f.disk,
        f.bytes,
        f.erase.as_deref() == Some("on"),
    )
    .await;
    let why = match outcome {
        Ok(Ok(())) => return redirect("/backup?done=usb", &[]),
        Ok(Err(why)) => why,
        Err(e) if e.0 == StatusCode::FORBIDDEN => return error_page(lang, e.0, t.may_not),
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let msg = match why {
        DiskRefused::Gone => t.refused_gone,
        DiskRefused::InUse => t.refused_in_use,
        DiskRefused::NotConfirmed => t.refused_not_confirmed,
        DiskRefused::Busy => t.refused_busy,
    };
    match view(&web).await {
        Ok(v) => render_with(lang, &viewer, v, None, Some(msg), StatusCode::BAD_REQUEST),
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

#[derive(Template)]
#[template(path = "backup_key.html")]
pub struct KeyPage {
    pub frame: Frame,
    pub t: &'static BackupText,
    pub csrf: String,
    pub key: Option<String>,
    pub server: String,
    pub date: String,
}

/// `GET /backup/key`: the recovery key on a printable page, while it waits on the box (server
/// admins; an audit entry each time it is shown).
pub async fn key_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let t = BackupText::of(lang);
    let (web, viewer) = match page_viewer(&state, &headers, "/backup/key").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = async {
        let b = backups(&web)?;
        server_admin(&web, &viewer, "backup_key").await?;
        let u = usb(&b)?;
        let file = u.key_file.clone();
        let key = tokio::task::spawn_blocking(move || {
            std::fs::read_to_string(&file)
                .ok()
                .map(|k| k.trim().to_string())
                .filter(|k| !k.is_empty())
        })
        .await
        .unwrap_or_default();
        if key.is_some() {
            audit(&web, &viewer, "key_shown").await?;
        }
        Ok::<_, ApiError>(key)
    }
    .await;
    let key = match r {
        Ok(k) => k,
        Err(e) if e.0 == StatusCode::FORBIDDEN => return error_page(lang, e.0, t.may_not),
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let server = state
        .web
        .as_ref()
        .and_then(|w| w.name.as_ref())
        .and_then(|n| crate::name::chosen(&n.server_name_file))
        .unwrap_or_default();
    let page = KeyPage {
        frame: frame(lang, Page::Backup, Some(&viewer)),
        t,
        csrf: viewer.csrf.clone(),
        key,
        server: fill(t.key_server, &[&server]),
        date: fill(
            t.key_date,
            &[&crate::clock::local_now().format("%Y-%m-%d").to_string()],
        ),
    };
    no_store(html(lang, page.render()))
}

/// `POST /backup/key` (form): the key is on paper; it leaves the box for good.
pub async fn key_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<RunForm>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match form_viewer(&state, &headers, "/backup/key", f.csrf.as_deref()).await
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let r = async {
        let b = backups(&web)?;
        server_admin(&web, &viewer, "backup_key").await?;
        let file = usb(&b)?.key_file;
        tokio::task::spawn_blocking(move || match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(format!("{}: {e}", file.display()))
            }
            _ => Ok(()),
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r)
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))
    }
    .await;
    match r {
        Ok(()) => {
            tracing::info!(by = %viewer.user_id, "the recovery key is on paper: removed from the box");
            redirect("/backup?done=key", &[])
        }
        Err(e) if e.0 == StatusCode::FORBIDDEN => {
            error_page(lang, e.0, BackupText::of(lang).may_not)
        }
        Err(e) => error_page(lang, e.0, &e.1),
    }
}

fn view_json(v: &View) -> serde_json::Value {
    let last_good = v.last_good().map(|(target, g)| {
        json!({"target": target, "run": g.run, "at": g.at_s, "bytes": g.bytes, "added": g.added})
    });
    json!({
        "set_up": !v.status.targets.is_empty(),
        "running": v.running,
        "next_run_at": v.next_s,
        "last_good": last_good,
        "targets": v.status.targets.iter().map(|(name, s)| json!({
            "name": name,
            "absent": s.absent,
            "last_attempt_at": s.last_attempt_s,
            "last_good": s.last_good.as_ref().map(|g| json!({
                "run": g.run, "at": g.at_s, "bytes": g.bytes, "added": g.added,
            })),
            "error": s.error,
        })).collect::<Vec<_>>(),
    })
}

/// `GET /api/v1/backup`.
pub async fn api_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, _viewer) = signin::signed_in(&state, &headers).await?;
        Ok::<_, ApiError>(view_json(&view(&web).await?))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/backup/run` → `{"started": true}`.
pub async fn api_run(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        run_now(&web, &viewer).await?;
        Ok::<_, ApiError>(json!({ "started": true }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(8_700_000), "8.7 MB");
        assert_eq!(size(1_250_000_000), "1.2 GB");
    }
}
