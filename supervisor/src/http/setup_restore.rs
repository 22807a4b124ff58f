//! "Restore from a backup" on the setup page of a fresh card (issue 16): instead of choosing a
//! name, the family brings back its server — the same name, accounts, rooms, messages, media,
//! households and access log — from the USB disk or the cooperative's store, with the recovery
//! key they kept on paper.
//!
//! `GET /setup/restore` shows the form while no name is chosen; `POST /setup/restore` checks the
//! setup code (as the name step does), writes the request for the root side
//! (`[backup] restore_request_file`, 0600, `key=value` lines: `repository`, `key`,
//! `credentials`), and starts hearth-restore.service through systemd (the polkit rule allows
//! only that start). The root side reads and removes the request, keeps the key in a root-only
//! runtime folder, restores, and reports in `[backup] restore_status_file` (JSON: `state`
//! running|done|failed, `step`, `error`, `server_name`, `run`), which `/setup` shows while it
//! runs and after it failed. The request never leaves the box and nothing of it is logged.

use super::i18n::{self, fill, Lang};
use super::name_text::NameText;
use super::pages::{html, Frame, Page};
use super::setup_name::{phase, see_setup, NameSetup, Phase};
use super::{signin, AppState};
use askama::Template;
use axum::extract::State;
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The root unit that carries out a request.
pub const UNIT: &str = "hearth-restore.service";

/// What the restore step needs.
#[derive(Debug, Clone)]
pub struct RestoreSetup {
    pub request_file: PathBuf,
    pub status_file: PathBuf,
    /// The USB disk's repository (`[backup] usb_repository`): offered when it is there.
    pub usb_repository: PathBuf,
}

/// What hearth-restore.service says.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct RestoreStatus {
    pub state: String,
    #[serde(default)]
    pub step: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub run: Option<String>,
}

impl RestoreStatus {
    /// `None`: no restore was asked for (no file), or the file is not the root side's JSON.
    pub fn load(path: &Path) -> Option<RestoreStatus> {
        let bytes = std::fs::read(path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The request as the form gave it, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub repository: String,
    pub key: String,
    pub credentials: Option<String>,
}

/// Why a request was refused (shown on the form).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refused {
    NoUsb,
    BadRepository,
    BadKey,
    BadCredentials,
}

/// One line of printable text, at most `max` characters, trimmed.
fn one_line(v: &str, max: usize) -> Option<String> {
    let v = v.trim();
    (!v.is_empty() && v.chars().count() <= max && !v.chars().any(char::is_control))
        .then(|| v.to_string())
}

/// Check the form: the source (`usb`, or the cooperative's store by its address), the key.
pub fn request(setup: &RestoreSetup, f: &RestoreForm) -> Result<Request, Refused> {
    let repository = match f.source.as_str() {
        "usb" => {
            if !setup.usb_repository.join("config").is_file() {
                return Err(Refused::NoUsb);
            }
            setup.usb_repository.display().to_string()
        }
        _ => {
            let r = one_line(f.repository.as_deref().unwrap_or(""), 512)
                .ok_or(Refused::BadRepository)?;
            if !(r.starts_with("rest:https://") || r.starts_with("rest:http://")) {
                return Err(Refused::BadRepository);
            }
            r
        }
    };
    let key = one_line(&f.key, 256).ok_or(Refused::BadKey)?;
    let credentials = match f.credentials.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(c) => Some(
            one_line(c, 256)
                .filter(|c| c.contains(':'))
                .ok_or(Refused::BadCredentials)?,
        ),
    };
    Ok(Request {
        repository,
        key,
        credentials,
    })
}

/// The request file's text: `key=value` lines.
pub fn request_text(r: &Request) -> String {
    let mut t = format!("repository={}\nkey={}\n", r.repository, r.key);
    if let Some(c) = &r.credentials {
        t.push_str(&format!("credentials={c}\n"));
    }
    t
}

/// Written whole and only for this user (0600).
pub fn write_request(path: &Path, r: &Request) -> std::io::Result<()> {
    super::backup_page::write_private(path, request_text(r).as_bytes())
}

#[derive(Debug, Default, Deserialize)]
pub struct RestoreForm {
    #[serde(default)]
    pub code: String,
    /// `usb` or `cooperative`.
    #[serde(default)]
    pub source: String,
    pub repository: Option<String>,
    #[serde(default)]
    pub key: String,
    pub credentials: Option<String>,
}

#[derive(Template)]
#[template(path = "setup_restore.html")]
pub struct RestorePage {
    pub frame: Frame,
    pub n: &'static NameText,
    pub usb_found: bool,
    pub usb_label: String,
    pub source: String,
    pub repository: String,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "setup_restoring.html")]
pub struct RestoringPage {
    pub frame: Frame,
    pub n: &'static NameText,
    pub step: String,
}

fn restore_setup(state: &AppState) -> Option<(std::sync::Arc<NameSetup>, RestoreSetup)> {
    let setup = state.web.as_ref()?.name.clone()?;
    let r = setup.restore.clone()?;
    Some((setup, r))
}

fn form_page(
    lang: Lang,
    r: &RestoreSetup,
    f: Option<&RestoreForm>,
    error: Option<String>,
    status: StatusCode,
) -> Response {
    let usb_found = r.usb_repository.join("config").is_file();
    let p = RestorePage {
        frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
        n: NameText::of(lang),
        usb_found,
        usb_label: fill(
            NameText::of(lang).restore_usb,
            &[&r.usb_repository.display().to_string()],
        ),
        source: f
            .map(|f| f.source.clone())
            .filter(|s| s == "usb" || s == "cooperative")
            .unwrap_or_else(|| if usb_found { "usb" } else { "cooperative" }.into()),
        repository: f
            .and_then(|f| f.repository.as_deref())
            .unwrap_or("")
            .chars()
            .take(512)
            .collect(),
        error,
    };
    let mut resp = html(lang, p.render());
    *resp.status_mut() = status;
    resp
}

/// How long a request the root side has not taken yet counts as a restore that is starting
/// (hearth-restore.service takes it within a second; one that never starts shows the form
/// again after this).
pub const STARTING: std::time::Duration = std::time::Duration::from_secs(60);

/// A request written and not yet taken (the root side's status is not written yet).
fn starting(r: &RestoreSetup) -> bool {
    std::fs::metadata(&r.request_file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age < STARTING)
}

/// What `/setup` shows while a restore runs or after it failed; `None`: no restore under way.
pub fn page_for(state: &AppState, lang: Lang) -> Option<Response> {
    let (_, r) = restore_setup(state)?;
    let n = NameText::of(lang);
    let st = match RestoreStatus::load(&r.status_file) {
        Some(st) if st.state != "running" && starting(&r) => RestoreStatus {
            state: "running".into(),
            ..RestoreStatus::default()
        },
        Some(st) => st,
        None if starting(&r) => RestoreStatus {
            state: "running".into(),
            ..RestoreStatus::default()
        },
        None => return None,
    };
    match st.state.as_str() {
        "running" => {
            let p = RestoringPage {
                frame: Frame::new(lang, Page::Setup, crate::clock::local_now()),
                n,
                step: st.step,
            };
            let mut resp = html(lang, p.render());
            resp.headers_mut()
                .insert(header::REFRESH, HeaderValue::from_static("5"));
            Some(resp)
        }
        "failed" if matches!(phase(state), Phase::Name(_)) => Some(form_page(
            lang,
            &r,
            None,
            Some(fill(
                n.restore_failed,
                &[st.error.as_deref().unwrap_or(&st.step)],
            )),
            StatusCode::OK,
        )),
        _ => None,
    }
}

/// `GET /setup/restore`: the form, while no name is chosen.
pub async fn restore_get(State(state): State<AppState>, parts: Parts) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let Some((_, r)) = restore_setup(&state) else {
        return see_setup();
    };
    if !matches!(phase(&state), Phase::Name(_)) {
        return see_setup();
    }
    if let Some(resp) = page_for(&state, lang) {
        return resp;
    }
    form_page(lang, &r, None, None, StatusCode::OK)
}

/// `POST /setup/restore`: the code, the source and the key; then the root side restores.
pub async fn restore_post(
    State(state): State<AppState>,
    parts: Parts,
    Form(f): Form<RestoreForm>,
) -> Response {
    let lang = i18n::of_request(&parts.headers);
    let n = NameText::of(lang);
    let web = match signin::web(&state) {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let Some((setup, r)) = restore_setup(&state) else {
        return see_setup();
    };
    if !matches!(phase(&state), Phase::Name(_))
        || RestoreStatus::load(&r.status_file).is_some_and(|s| s.state == "running")
        || starting(&r)
    {
        return see_setup();
    }
    let fail = |msg: String, status| form_page(lang, &r, Some(&f), Some(msg), status);
    if let Some(resp) = super::setup_name::authorised(&web, &parts, &f.code, lang, fail) {
        return resp;
    }
    let req = match request(&r, &f) {
        Ok(req) => req,
        Err(why) => {
            let msg = match why {
                Refused::NoUsb => n.restore_no_usb,
                Refused::BadRepository => n.restore_bad_repository,
                Refused::BadKey => n.restore_bad_key,
                Refused::BadCredentials => n.restore_bad_credentials,
            };
            return form_page(
                lang,
                &r,
                Some(&f),
                Some(msg.into()),
                StatusCode::BAD_REQUEST,
            );
        }
    };
    let file = r.request_file.clone();
    let written = tokio::task::spawn_blocking(move || write_request(&file, &req)).await;
    if let Err(e) = written
        .map_err(|e| e.to_string())
        .and_then(|w| w.map_err(|e| e.to_string()))
    {
        tracing::error!(file = %r.request_file.display(), "restore request: {e}");
        return form_page(
            lang,
            &r,
            Some(&f),
            Some(fill(n.restore_start_failed, &[&e])),
            StatusCode::INTERNAL_SERVER_ERROR,
        );
    }
    tracing::info!(source = %f.source, "setup: a restore from a backup was asked for");
    // The job ends when the restore does (minutes): awaited off the request; the page follows
    // the root side's status file.
    let units = setup.units.clone();
    setup.tasks.spawn(async move {
        match units.start_unit(UNIT).await {
            Ok(outcome) => tracing::info!(?outcome, "{UNIT} ended"),
            Err(e) => tracing::warn!("starting {UNIT}: {e}"),
        }
    });
    see_setup()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(dir: &Path) -> RestoreSetup {
        RestoreSetup {
            request_file: dir.join("restore-request"),
            status_file: dir.join("status.json"),
            usb_repository: dir.join("usb/hearth"),
        }
    }

    fn form(source: &str, repository: &str, key: &str, credentials: &str) -> RestoreForm {
        RestoreForm {
            code: "X".into(),
            source: source.into(),
            repository: Some(repository.into()),
            key: key.into(),
            credentials: Some(credentials.into()),
        }
    }

    #[test]
    fn a_request_names_a_repository_there_is_and_a_key_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        let key = "ABCD-EFGH-IJKL-MNOP";
        assert_eq!(request(&s, &form("usb", "", key, "")), Err(Refused::NoUsb));
        std::fs::create_dir_all(&s.usb_repository).unwrap();
        std::fs::write(s.usb_repository.join("config"), "x").unwrap();
        let usb = request(&s, &form("usb", "ignored", &format!(" {key}\n"), "")).unwrap();
        assert_eq!(usb.repository, s.usb_repository.display().to_string());
        assert_eq!(usb.key, key);
        let coop = request(
            &s,
            &form(
                "cooperative",
                "rest:https://backup.coop.example/box7/",
                key,
                "box7:pw",
            ),
        )
        .unwrap();
        assert_eq!(coop.credentials.as_deref(), Some("box7:pw"));
        for (f, why) in [
            (form("cooperative", "/etc", key, ""), Refused::BadRepository),
            (form("cooperative", "", key, ""), Refused::BadRepository),
            (
                form("cooperative", "rest:https://x/\nkey=evil", key, ""),
                Refused::BadRepository,
            ),
            (form("usb", "", "", ""), Refused::BadKey),
            (form("usb", "", "ABCD\nrepository=/x", ""), Refused::BadKey),
            (form("usb", "", key, "no-colon"), Refused::BadCredentials),
        ] {
            assert_eq!(request(&s, &f), Err(why), "{f:?}");
        }
    }

    #[test]
    fn the_request_file_is_for_its_owner_only_and_says_each_thing_once() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("restore-request");
        let r = Request {
            repository: "rest:https://backup.coop.example/box7/".into(),
            key: "ABCD-EFGH".into(),
            credentials: Some("box7:pw".into()),
        };
        write_request(&p, &r).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "repository=rest:https://backup.coop.example/box7/\nkey=ABCD-EFGH\ncredentials=box7:pw\n"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A second request replaces the first.
        write_request(
            &p,
            &Request {
                credentials: None,
                ..r
            },
        )
        .unwrap();
        assert!(!std::fs::read_to_string(&p).unwrap().contains("credentials"));
    }

    #[test]
    fn a_request_not_yet_taken_is_a_restore_starting() {
        let dir = tempfile::tempdir().unwrap();
        let s = setup(dir.path());
        assert!(!starting(&s));
        let r = Request {
            repository: "rest:https://x/".into(),
            key: "K".into(),
            credentials: None,
        };
        write_request(&s.request_file, &r).unwrap();
        assert!(starting(&s), "just written");
        // An hour old: the root side never took it; the form comes back.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&s.request_file)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!starting(&s));
    }

    #[test]
    fn the_status_file_is_read_as_the_root_side_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("status.json");
        assert_eq!(RestoreStatus::load(&p), None);
        std::fs::write(
            &p,
            r#"{"state":"failed","step":"opening the backup","error":"the key does not open it"}"#,
        )
        .unwrap();
        let st = RestoreStatus::load(&p).unwrap();
        assert_eq!(st.state, "failed");
        assert_eq!(st.error.as_deref(), Some("the key does not open it"));
        std::fs::write(&p, "not json").unwrap();
        assert_eq!(RestoreStatus::load(&p), None);
    }
}
