//! The HTTP doors: the status page (`/`, [`pages`]), its assets (`/assets/…`, [`assets`]),
//! the language switch (`/lang/{code}`), `/api/v1/status` (no sign-in, no per-member data) and
//! `/metrics` (Prometheus text). Every response carries the security headers of
//! [`security_headers`].
//!
//! Handlers never touch the database: they read `LiveMeter` and `SharedHealth`.
//! `router(state)` is separate from binding so tests drive it with `tower::ServiceExt::oneshot`.

pub mod assets;
pub mod backup_page;
pub mod backup_text;
pub mod budget_page;
pub mod budget_text;
pub mod chart;
pub mod host;
pub mod i18n;
pub mod invite;
pub mod member_api;
pub mod member_pages;
pub mod member_text;
pub mod name_text;
pub mod pages;
pub mod reach;
pub mod report_page;
pub mod report_text;
pub mod serve;
pub mod session;
pub mod setup;
pub mod setup_name;
pub mod setup_restore;
pub mod signin;
pub mod transparency;
pub mod update_page;
pub mod update_text;

use crate::meter::live::{SensorState, Shared};
use crate::power::SensorKind;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use std::fmt::Write as _;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Clone)]
pub struct AppState {
    pub meter: Shared,
    pub health: crate::health::monitor::SharedHealth,
    pub led: tokio::sync::watch::Receiver<crate::led::Pattern>,
    /// "sysfs", "gpio", "none" (configured off) or "absent" (configured, not on this board).
    pub led_device: &'static str,
    /// The board's signals, refreshed by the owner every few seconds.
    pub device: std::sync::Arc<std::sync::Mutex<crate::device::Device>>,
    /// The electricity price a person set, if any: the page shows the month's cost with it.
    pub tariff: pages::SharedTariff,
    /// Sign-in and member data; `None` in tests of the public doors (then those routes say 503).
    pub web: Option<std::sync::Arc<Web>>,
    /// "Who can access the data" and "what you are getting into" ([`transparency`]).
    pub transparency: crate::transparency::Transparency,
    /// Synapse's database, as first boot chose it (`None` where nothing chose).
    pub synapse_database: Option<crate::config::Database>,
    /// Is the box reachable by its name (refreshed by a task; `None` while no name).
    pub reach: crate::name::reach::SharedReach,
}

/// What the signed-in doors need: their own database connection (the meter's writer is not
/// held up by a page), sessions, the sign-in limiter, Synapse, and the accounting.
pub struct Web {
    /// The page's connection: statements, the directory's roles, audit entries.
    pub db: std::sync::Arc<std::sync::Mutex<crate::storage::Storage>>,
    pub sessions: session::Sessions,
    pub limiter: session::Limiter,
    pub synapse: signin::SynapseLogin,
    pub accounting: crate::config::AccountingConfig,
    pub members: std::sync::Arc<dyn crate::accountant::members::MemberSource>,
    pub maintenance_file: std::path::PathBuf,
    /// Cookies are `Secure` (the page is served over HTTPS by a proxy in front).
    pub https: bool,
    pub months: member_api::MonthCache,
    /// Repeated `denied` entries, folded per session.
    pub denials: member_api::Denials,
    /// Unix seconds now (the wall clock; tests fix it).
    pub now_s: std::sync::Arc<dyn Fn() -> i64 + Send + Sync>,
    /// The supervisor's own Synapse admin token (the first-run screen creates the first admin).
    pub admin_token: crate::health::probe::AdminToken,
    /// The one-time setup code first boot wrote (`/setup`); gone once used.
    pub setup_code_file: std::path::PathBuf,
    /// Peers whose `X-Real-IP`/`X-Forwarded-For` name the client (`signin::client_of`).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The name step of `/setup`; `None` where the name is not chosen on the page.
    pub name: Option<std::sync::Arc<setup_name::NameSetup>>,
    /// The monthly energy report's doors (`/report`); `None`: 404.
    pub reports: Option<std::sync::Arc<report_page::Reports>>,
    /// The backups' doors (`/backup`); `None` where backups are not part of the server.
    pub backups: Option<std::sync::Arc<backup_page::Backups>>,
    /// Budgets, top-ups and the costs (`/budget`, `/costs`); `None`: the page shows the
    /// budgets without the limits now, and changes wake no enforcer.
    pub budgets: Option<std::sync::Arc<budget_page::Budgets>>,
    /// The updates' doors (`/update`); `None` where updates are not part of the server.
    pub updates: Option<std::sync::Arc<update_page::Updates>>,
}

impl Web {
    /// The signed-in doors over the database at `db_path`, signing in at Synapse's `synapse_url`.
    pub fn new(
        db_path: &std::path::Path,
        synapse_url: &str,
        accounting: crate::config::AccountingConfig,
        members: std::sync::Arc<dyn crate::accountant::members::MemberSource>,
        maintenance_file: std::path::PathBuf,
    ) -> Result<Web, crate::storage::StorageError> {
        Ok(Web {
            // Its own connection: a statement being computed does not hold up the meter.
            db: std::sync::Arc::new(std::sync::Mutex::new(crate::storage::Storage::open(
                db_path,
            )?)),
            sessions: Default::default(),
            limiter: Default::default(),
            synapse: signin::SynapseLogin::new(synapse_url, std::time::Duration::from_secs(10)),
            accounting,
            members,
            maintenance_file,
            https: false,
            months: Default::default(),
            denials: Default::default(),
            now_s: std::sync::Arc::new(crate::clock::wall_secs_now),
            admin_token: crate::health::probe::AdminToken::none(),
            setup_code_file: std::path::PathBuf::from(crate::config::DEFAULT_SETUP_CODE_FILE),
            trusted_proxies: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::Ipv6Addr::LOCALHOST.into(),
            ],
            name: None,
            reports: None,
            backups: None,
            budgets: None,
            updates: None,
        })
    }

    /// Run `f` with the page's database connection on a blocking thread.
    pub async fn db<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&mut crate::storage::Storage) -> T + Send + 'static,
    ) -> Option<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let mut g = db.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut g)
        })
        .await
        .ok()
    }
}

impl AppState {
    /// A state with a simulated sensor that has not sampled yet, health not monitored, no LED:
    /// for tests and benchmarks of the doors themselves.
    pub fn minimal(web: Option<std::sync::Arc<Web>>) -> AppState {
        let (_tx, led) = tokio::sync::watch::channel(crate::led::Pattern::Off);
        AppState {
            meter: Shared::new(crate::meter::live::LiveMeter::new(
                SensorKind::Simulated,
                "simulated".into(),
            )),
            health: Default::default(),
            led,
            led_device: "none",
            device: Default::default(),
            tariff: Default::default(),
            web,
            transparency: Default::default(),
            synapse_database: None,
            reach: Default::default(),
        }
    }
}

/// Scripts, styles, images and fetches from this server only; no inline script or style, no
/// framing, no forms to elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; \
form-action 'self'; frame-ancestors 'none'";

/// The headers every response carries.
pub fn security_headers() -> [(header::HeaderName, header::HeaderValue); 4] {
    use header::HeaderValue as V;
    [
        (
            header::CONTENT_SECURITY_POLICY,
            V::from_static(CONTENT_SECURITY_POLICY),
        ),
        (header::X_CONTENT_TYPE_OPTIONS, V::from_static("nosniff")),
        (header::REFERRER_POLICY, V::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, V::from_static("DENY")),
    ]
}

pub fn router(state: AppState) -> Router {
    let mut app = Router::new()
        .route(pages::Page::Overview.path(), get(pages::index))
        .route("/lang/{code}", get(pages::switch_lang))
        .route(
            pages::Page::SignIn.path(),
            get(member_pages::signin_page).post(member_pages::signin_post),
        )
        .route("/signout", axum::routing::post(member_pages::signout_post))
        .route(
            pages::Page::Setup.path(),
            get(setup::setup_page).post(setup::setup_post),
        )
        .route("/setup/name", axum::routing::post(setup_name::name_post))
        .route(
            "/setup/restore",
            get(setup_restore::restore_get).post(setup_restore::restore_post),
        )
        .route(
            "/setup/name/confirm",
            axum::routing::post(setup_name::confirm_post),
        )
        .route(
            pages::Page::Statement.path(),
            get(member_pages::statement_page),
        )
        .route(pages::Page::Audit.path(), get(member_pages::audit_page))
        .route("/assets/{file}", get(assets::serve))
        .route("/api/v1/status", get(status))
        .route(
            "/api/v1/session",
            get(signin::get_session)
                .post(signin::post_session)
                .delete(signin::delete_session),
        )
        .route("/api/v1/members", get(member_api::members))
        .route("/api/v1/audit", get(member_api::audit))
        .route("/api/v1/audit/hash", get(member_api::audit_hash))
        .route(
            "/api/v1/maintenance",
            axum::routing::post(member_api::maintenance),
        )
        .route(
            pages::Page::Invitations.path(),
            get(invite::page).post(invite::page_create),
        )
        .route(
            "/invitations/{id}/revoke",
            axum::routing::post(invite::page_revoke),
        )
        .route(
            "/accounts/deactivate",
            axum::routing::post(invite::page_deactivate),
        )
        .route(
            "/accounts/password",
            axum::routing::post(invite::page_password),
        )
        .route("/join/{token}", get(invite::join).post(invite::join_post))
        .route(
            "/api/v1/invitations",
            get(invite::api_list).post(invite::api_create),
        )
        .route(
            "/api/v1/invitations/{id}",
            axum::routing::delete(invite::api_revoke),
        )
        .route("/api/v1/signup", axum::routing::post(invite::api_signup))
        .route(
            "/api/v1/accounts/deactivate",
            axum::routing::post(invite::api_deactivate),
        )
        .route(
            "/api/v1/accounts/password",
            axum::routing::post(invite::api_password),
        )
        .route(
            pages::Page::Report.path(),
            get(report_page::page).post(report_page::page_post),
        )
        .route(
            "/api/v1/report",
            get(report_page::api_get).post(report_page::api_post),
        )
        .route(
            pages::Page::Backup.path(),
            get(backup_page::page).post(backup_page::page_post),
        )
        .route("/backup/usb", axum::routing::post(backup_page::usb_post))
        .route(
            "/backup/cooperative",
            axum::routing::post(backup_page::cooperative_post),
        )
        .route(
            "/backup/key",
            get(backup_page::key_page).post(backup_page::key_post),
        )
        .route("/api/v1/backup", get(backup_page::api_get))
        .route(
            pages::Page::Update.path(),
            get(update_page::page).post(update_page::page_post),
        )
        .route(
            "/api/v1/update",
            get(update_page::api_get).post(update_page::api_post),
        )
        .route(
            pages::Page::Budget.path(),
            get(budget_page::page).post(budget_page::page_post),
        )
        .route(
            "/budget/topup",
            axum::routing::post(budget_page::topup_post),
        )
        .route(
            "/budget/costs",
            axum::routing::post(budget_page::costs_post),
        )
        .route(
            "/budget/households",
            axum::routing::post(budget_page::households_post),
        )
        .route(
            "/api/v1/budget",
            get(budget_page::api_get).post(budget_page::api_post),
        )
        .route(
            "/api/v1/budget/topup",
            axum::routing::post(budget_page::api_topup),
        )
        .route(
            "/api/v1/backup/run",
            axum::routing::post(backup_page::api_run),
        )
        .route("/metrics", get(metrics))
        .merge(
            // Who can access the data: for the members (it names accounts and keys), so
            // behind the sign-in.
            Router::new()
                .route(pages::Page::Access.path(), get(transparency::access_page))
                .route("/api/v1/access", get(transparency::access_json))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    member_pages::require_session,
                )),
        )
        .route(pages::Page::About.path(), get(transparency::about_index))
        .route("/about/{name}", get(transparency::about_page))
        .with_state(state.clone());
    for (name, value) in security_headers() {
        app = app.layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            name, value,
        ));
    }
    harden(app, state)
}

/// The most any request body may be: the JSON and form doors take a name, a password, a
/// switch; nothing here takes an upload.
pub const BODY_LIMIT: usize = 8 * 1024;

/// What every door gets besides its own handling: bodies over [`BODY_LIMIT`] refused with 413
/// (at once when `Content-Length` says so, else as soon as the limit is read), `no-store` on
/// what a signed-in member sees ([`private`]), and the client's address for the limiter
/// (`signin::client_addr`).
fn harden(app: Router, state: AppState) -> Router {
    app.layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(no_store))
        .layer(axum::middleware::from_fn_with_state(
            state,
            signin::client_addr,
        ))
}

/// Whether the answer to a request for `path` may hold what a member sees: every answer to a
/// signed-in browser and every JSON door and signed-in page, except the public status, the
/// metrics and the assets (which have their own caching and hold nothing personal).
pub fn private(path: &str, signed_in: bool) -> bool {
    use pages::Page;
    let public = path == "/api/v1/status" || path == "/metrics" || path.starts_with("/assets/");
    let members = path.starts_with("/api/")
        || [
            Page::SignIn,
            Page::Setup,
            Page::Statement,
            Page::Audit,
            Page::Access,
        ]
        .iter()
        .any(|p| p.path() == path)
        || path == "/signout";
    !public && (signed_in || members)
}

/// `Cache-Control: no-store` on [`private`] answers: no shared or browser cache keeps them.
async fn no_store(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let signed_in = session::cookie(req.headers(), session::COOKIE).is_some();
    let private = private(req.uri().path(), signed_in);
    let mut resp = next.run(req).await;
    if private {
        resp.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    resp
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Status {
    pub health: Health,
    pub power: Power,
    pub energy: Energy,
    pub device: crate::device::Device,
    pub led: &'static str,
    pub led_device: &'static str,
    pub version: &'static str,
    /// The server's name and whether the box is reachable by it (`null` while no name is
    /// chosen). Nothing per member.
    pub name: Option<crate::name::reach::Reach>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Health {
    /// `healthy|starting|degraded|down|failed`; `unknown` when health is not monitored.
    pub state: &'static str,
    /// Why, in words (e.g. "crash loop: 6 restarts within 10 min; …").
    pub reason: String,
    /// Synapse's database as first boot chose it: `postgresql`, `sqlite`, or null where
    /// nothing chose (a developer's machine).
    pub database: Option<&'static str>,
    pub units: Vec<UnitHealth>,
    /// RFC 3339, UTC.
    pub last_restart: Option<String>,
    pub maintenance: bool,
    /// No name chosen yet: the box waits for `/setup` (`state` is `starting`).
    pub awaiting_setup: bool,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct UnitHealth {
    pub name: String,
    pub state: &'static str,
    pub active_state: &'static str,
    pub sub_state: String,
    pub restarts: u32,
    pub supervisor_restarts: u32,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Power {
    pub watts: Option<f64>,
    pub volts: Option<f64>,
    pub amps: Option<f64>,
    /// `ok`, `fault`, `simulated` (a healthy simulated sensor) or `starting`.
    pub sensor: &'static str,
    pub fault: Option<String>,
    pub warnings: Vec<&'static str>,
    pub location: String,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Energy {
    pub today_wh: f64,
    pub month_wh: f64,
}

fn health_of(state: &AppState) -> Health {
    let database = state.synapse_database.map(|d| d.as_str());
    let h = state.health.get();
    match h.as_ref() {
        None => Health {
            state: "unknown",
            reason: String::new(),
            database,
            units: Vec::new(),
            last_restart: None,
            maintenance: false,
            awaiting_setup: false,
        },
        Some(r) => Health {
            state: r.state.as_str(),
            reason: r.reason.clone(),
            database,
            units: r
                .units
                .iter()
                .map(|u| UnitHealth {
                    name: u.name.clone(),
                    state: u.view.state.as_str(),
                    active_state: u.view.active.as_str(),
                    sub_state: u.view.sub.clone(),
                    restarts: u.view.restarts,
                    supervisor_restarts: u.view.supervisor_restarts,
                })
                .collect(),
            last_restart: r.last_restart_ms.and_then(|ms| {
                chrono::DateTime::from_timestamp_millis(ms)
                    .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            }),
            maintenance: r.maintenance,
            awaiting_setup: r.awaiting_setup,
        },
    }
}

pub fn status_of(state: &AppState) -> Status {
    let health = health_of(state);
    let led = state.led.borrow().as_str();
    let device = state.device.lock().map(|d| d.clone()).unwrap_or_default();
    let m = state.meter.lock();
    let (sensor, fault) = match &m.state {
        SensorState::Fault { reason, .. } => (
            if m.sensor_absent() { "absent" } else { "fault" },
            Some(reason.clone()),
        ),
        SensorState::Starting => ("starting", None),
        SensorState::Ok if m.kind == SensorKind::Simulated => ("simulated", None),
        SensorState::Ok => ("ok", None),
    };
    let live = if fault.is_none() { m.latest } else { None };
    let mut warnings = Vec::new();
    if let Some(s) = live {
        if s.flags.under_voltage {
            warnings.push("under_voltage");
        }
    }
    let e = m.energy();
    Status {
        health,
        device,
        power: Power {
            watts: live.map(|s| round(s.watts.0, 3)),
            volts: live.map(|s| round(s.volts.0, 3)),
            amps: live.map(|s| round(s.amps.0, 4)),
            sensor,
            fault,
            warnings,
            location: m.location.clone(),
        },
        energy: Energy {
            today_wh: round(e.today_wh, 3),
            month_wh: round(e.month_wh, 3),
        },
        led,
        led_device: state.led_device,
        version: VERSION,
        name: state
            .reach
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

fn round(v: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (v * f).round() / f
}

async fn status(State(s): State<AppState>) -> Json<Status> {
    Json(status_of(&s))
}

async fn metrics(State(s): State<AppState>) -> Response {
    let synapse = s.health.get().as_ref().map(|r| {
        let up = matches!(
            r.state,
            crate::health::machine::Health::Healthy | crate::health::machine::Health::Degraded
        );
        let restarts = r.units.first().map_or(0, |u| u.view.restarts);
        let by_us = r.units.first().map_or(0, |u| u.view.supervisor_restarts);
        (up, restarts, by_us)
    });
    let (latest, fault, samples, gaps, energy, pending_estimated, stored_estimated) = {
        let m = s.meter.lock();
        let fault = matches!(m.state, SensorState::Fault { .. });
        let pending_est: f64 = m
            .pending
            .iter()
            .chain(m.in_flight.iter())
            .map(|(_, a)| a.estimated_wh)
            .sum();
        (
            m.latest,
            fault,
            m.samples,
            m.gap_count,
            m.energy(),
            pending_est,
            m.stored.lifetime_estimated_wh,
        )
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    if let (Some(l), false) = (latest, fault) {
        gauge(
            "hearth_power_watts",
            "Board power draw (latest conversion).",
            "gauge",
            l.watts.0,
        );
        gauge(
            "hearth_bus_volts",
            "Supply voltage at the board (INA219 bus).",
            "gauge",
            l.volts.0,
        );
        gauge(
            "hearth_current_amps",
            "Supply current (INA219 shunt).",
            "gauge",
            l.amps.0,
        );
    }
    gauge(
        "hearth_sensor_up",
        "1 when the power sensor reads, 0 in fault.",
        "gauge",
        if fault { 0.0 } else { 1.0 },
    );
    gauge(
        "hearth_energy_wh_total",
        "Energy metered since the database was created.",
        "counter",
        energy.lifetime_wh,
    );
    gauge(
        "hearth_energy_estimated_wh_total",
        "Part of hearth_energy_wh_total estimated over sensor gaps.",
        "counter",
        stored_estimated + pending_estimated,
    );
    gauge(
        "hearth_energy_today_wh",
        "Energy metered today (local time).",
        "gauge",
        energy.today_wh,
    );
    gauge(
        "hearth_sensor_samples_total",
        "Conversions read since the supervisor started.",
        "counter",
        samples as f64,
    );
    gauge(
        "hearth_sensor_gaps_total",
        "Sensor gaps closed since the supervisor started.",
        "counter",
        gaps as f64,
    );
    if let Some((up, restarts, by_us)) = synapse {
        gauge(
            "hearth_synapse_up",
            "1 when Synapse answers its probes (healthy or degraded).",
            "gauge",
            if up { 1.0 } else { 0.0 },
        );
        gauge(
            "hearth_synapse_restarts_total",
            "Times Synapse came back after stopping or crashing.",
            "counter",
            f64::from(restarts),
        );
        gauge(
            "hearth_synapse_supervisor_restarts_total",
            "Restarts and starts of Synapse the supervisor asked for.",
            "counter",
            f64::from(by_us),
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::live::LiveMeter;
    use crate::power::{Sample, SampleFlags};
    use crate::units::{Amps, Volts, Watts};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    fn state() -> (AppState, Shared) {
        let meter = Shared::new(LiveMeter::new(SensorKind::Ina219, "i2c-1@0x40".into()));
        let (_tx, led) = tokio::sync::watch::channel(crate::led::Pattern::Steady);
        let st = AppState {
            meter: meter.clone(),
            health: Default::default(),
            led,
            led_device: "absent",
            device: Default::default(),
            tariff: Default::default(),
            web: None,
            transparency: Default::default(),
            synapse_database: None,
            reach: Default::default(),
        };
        (st, meter)
    }

    async fn get(app: Router, path: &str) -> (StatusCode, String, String) {
        let res = app
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let ctype = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ctype, String::from_utf8(body.to_vec()).unwrap())
    }

    fn sample(w: f64, v: f64) -> Sample {
        Sample {
            volts: Volts(v),
            amps: Amps(w / v),
            watts: Watts(w),
            window: std::time::Duration::from_millis(68),
            flags: SampleFlags {
                under_voltage: v < 4.63,
                ..Default::default()
            },
        }
    }

    #[tokio::test]
    async fn status_reports_live_power_and_the_contract_shape() {
        let (st, meter) = state();
        {
            let mut m = meter.lock();
            m.latest = Some(sample(3.2, 5.05));
            m.state = SensorState::Ok;
        }
        let (code, ctype, body) = get(router(st), "/api/v1/status").await;
        assert_eq!(code, StatusCode::OK);
        assert!(ctype.starts_with("application/json"));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["power"]["sensor"], "ok");
        assert_eq!(v["power"]["watts"], 3.2);
        assert_eq!(v["power"]["volts"], 5.05);
        assert_eq!(v["health"]["state"], "unknown");
        assert!(v["energy"]["today_wh"].is_number() && v["energy"]["month_wh"].is_number());
        assert_eq!(v["power"]["warnings"], serde_json::json!([]));
    }

    #[tokio::test]
    async fn a_sensor_whose_device_node_is_missing_is_absent() {
        let (st, meter) = state();
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("i2c-1");
        {
            let mut m = meter.lock();
            m.device_node = Some(node.clone());
            m.state = SensorState::Fault {
                reason: "cannot open the I2C bus".into(),
                since_ms: 0,
            };
        }
        let (_, _, body) = get(router(st.clone()), "/api/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["power"]["sensor"], "absent");
        assert!(v["power"]["watts"].is_null());
        // The bus appears (I2C enabled, sensor plugged in) but the chip does not answer: a fault.
        std::fs::write(&node, "").unwrap();
        let (_, _, body) = get(router(st), "/api/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["power"]["sensor"], "fault");
    }

    #[tokio::test]
    async fn a_sensor_fault_shows_as_fault_without_stale_figures() {
        let (st, meter) = state();
        {
            let mut m = meter.lock();
            m.latest = Some(sample(3.2, 5.05));
            m.state = SensorState::Fault {
                reason: "I2C bus i2c-1@0x40: NoAcknowledge".into(),
                since_ms: 0,
            };
        }
        let (_, _, body) = get(router(st.clone()), "/api/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["power"]["sensor"], "fault");
        assert!(v["power"]["watts"].is_null());
        assert!(v["power"]["fault"]
            .as_str()
            .unwrap()
            .contains("NoAcknowledge"));
        let (_, _, metrics) = get(router(st), "/metrics").await;
        assert!(metrics.contains("\nhearth_sensor_up 0\n"));
        assert!(
            !metrics.contains("hearth_power_watts"),
            "no stale power in metrics"
        );
    }

    #[tokio::test]
    async fn under_voltage_is_a_warning() {
        let (st, meter) = state();
        {
            let mut m = meter.lock();
            m.latest = Some(sample(3.2, 4.5));
            m.state = SensorState::Ok;
        }
        let (_, _, body) = get(router(st), "/api/v1/status").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["power"]["warnings"], serde_json::json!(["under_voltage"]));
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let (st, meter) = state();
        {
            let mut m = meter.lock();
            m.latest = Some(sample(3.2, 5.05));
            m.state = SensorState::Ok;
        }
        let (code, ctype, body) = get(router(st), "/metrics").await;
        assert_eq!(code, StatusCode::OK);
        assert!(ctype.starts_with("text/plain; version=0.0.4"));
        for name in [
            "hearth_power_watts",
            "hearth_energy_wh_total",
            "hearth_sensor_up",
            "hearth_sensor_samples_total",
        ] {
            assert!(
                body.contains(&format!("# TYPE {name} ")),
                "{name} in {body}"
            );
        }
        // Every sample line parses as `name value`.
        for line in body.lines().filter(|l| !l.starts_with('#')) {
            let mut it = line.split(' ');
            let (name, value) = (it.next().unwrap(), it.next().unwrap());
            assert!(name.starts_with("hearth_"), "{line}");
            value.parse::<f64>().unwrap();
        }
    }
}
