//! The HTML pages: the frame every page shares ([`Frame`]: language, navigation, assets,
//! version) and the overview at `/`. Templates are in `templates/` (askama, compiled in);
//! strings come from [`i18n`](super::i18n). Like every handler, these read the shared live
//! state, never the database.
//!
//! A new page: a [`Page`] variant (its path and nav label), a template that extends
//! `layout.html`, a struct with a `frame: Frame` field, a route in `super::router`.

use super::assets::Asset;
use super::chart::{self, Chart};
use super::i18n::{self, fill, Catalogue, Lang, Said};
use super::member_text::MemberText;
use super::{status_of, AppState, Status, VERSION};
use crate::meter::recent::MinutePower;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Local};

/// The SoC temperature from which the page warns: the Pi 4 firmware starts throttling at 80 °C.
pub const HOT_C: f64 = 80.0;

/// The pages in the navigation, in order ("who can see the data" slots in here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Overview,
    Statement,
    Audit,
    Access,
    About,
    SignIn,
    Setup,
    /// Server and household admins only: in the nav through [`Frame::for_role`].
    Invitations,
    /// The monthly energy report: every signed-in member sees it, server admins switch it.
    Report,
    /// The backups: every signed-in member sees them, server admins start a run.
    Backup,
    /// Budgets and limits: every signed-in member sees their own, admins set them.
    Budget,
    /// Updates: every signed-in member sees them, server admins start or postpone one.
    Update,
    /// The public sign-up with an invitation (`/join/{token}`), never in the nav.
    Join,
}

impl Page {
    pub const NAV: [Page; 5] = [
        Page::Overview,
        Page::Statement,
        Page::Audit,
        Page::Access,
        Page::About,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Page::Overview => "/",
            Page::Statement => "/statement",
            Page::Audit => "/audit",
            Page::SignIn => "/signin",
            Page::Setup => "/setup",
            Page::Invitations => "/invitations",
            Page::Report => "/report",
            Page::Backup => "/backup",
            Page::Budget => "/budget",
            Page::Update => "/update",
            Page::Join => "/join",
            Page::Access => "/access",
            Page::About => "/about",
        }
    }

    fn label(self, t: &Catalogue, m: &MemberText) -> &'static str {
        match self {
            Page::Overview => t.nav_overview,
            Page::Statement => m.nav_statement,
            Page::Audit => m.nav_audit,
            Page::SignIn => m.sign_in,
            Page::Setup => m.setup_title,
            Page::Invitations => m.nav_invitations,
            Page::Report => m.nav_report,
            Page::Backup => m.nav_backup,
            Page::Budget => m.nav_budget,
            Page::Update => m.nav_update,
            Page::Join => m.join_title,
            Page::Access => t.tr.nav_access,
            Page::About => t.tr.nav_about,
        }
    }

    fn title(self, t: &Catalogue, m: &MemberText) -> &'static str {
        match self {
            Page::Overview => t.overview_title,
            Page::Statement => m.statement_title,
            Page::Audit => m.audit_title,
            Page::SignIn => m.signin_title,
            Page::Setup => m.setup_title,
            Page::Invitations => m.invite_title,
            Page::Report => m.report_title,
            Page::Backup => m.backup_title,
            Page::Budget => m.budget_title,
            Page::Update => m.update_title,
            Page::Join => m.join_title,
            Page::Access => t.tr.access_title,
            Page::About => t.tr.about_title,
        }
    }
}

/// Who is signed in, for the header's sign-out form.
#[derive(Debug, Clone)]
pub struct Account {
    pub user_id: String,
    pub csrf: String,
}

#[derive(Debug)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

#[derive(Debug)]
pub struct LangLink {
    pub href: String,
    pub code: &'static str,
    pub label: &'static str,
    pub title: &'static str,
}

/// What `layout.html` needs from every page.
#[derive(Debug)]
pub struct Frame {
    pub lang: Lang,
    pub t: &'static Catalogue,
    /// The signed-in pages' strings.
    pub m: &'static MemberText,
    /// Signed in: the header offers to sign out; else to sign in.
    pub account: Option<Account>,
    pub title: &'static str,
    pub nav: Vec<NavItem>,
    /// Links to the page in the other languages.
    pub langs: Vec<LangLink>,
    pub css: &'static str,
    pub js: &'static str,
    pub icon: &'static str,
    pub version: &'static str,
    /// Local time of rendering, `HH:MM:SS`.
    pub updated: String,
}

impl Frame {
    pub fn new(lang: Lang, page: Page, now: DateTime<Local>) -> Frame {
        let t = lang.t();
        let m = MemberText::of(lang);
        Frame {
            lang,
            t,
            m,
            account: None,
            title: page.title(t, m),
            nav: Page::NAV
                .iter()
                .map(|p| NavItem {
                    href: p.path(),
                    label: p.label(t, m),
                    current: *p == page,
                })
                .collect(),
            langs: i18n::ALL
                .into_iter()
                .filter(|l| *l != lang)
                .map(|l| LangLink {
                    href: format!("/lang/{}?next={}", l.code(), page.path()),
                    code: l.code(),
                    label: l.t().language_name,
                    title: l.t().switch_title,
                })
                .collect(),
            css: Asset::Css.url(),
            js: Asset::Js.url(),
            icon: Asset::Icon.url(),
            version: VERSION,
            updated: now.format("%H:%M:%S").to_string(),
        }
    }
}

impl Frame {
    /// The nav for a signed-in `role`: server and household admins also get the invitations
    /// page (after the access log); members do not see a door they may not use. Everyone
    /// signed in sees the energy report (what leaves the box is every member's business).
    pub fn for_role(mut self, role: super::session::Role, page: Page) -> Frame {
        use super::session::Role;
        let mut at = self
            .nav
            .iter()
            .position(|n| n.href == Page::Audit.path())
            .map_or(self.nav.len(), |i| i + 1);
        if matches!(role, Role::ServerAdmin | Role::HouseholdAdmin) {
            self.nav.insert(
                at,
                NavItem {
                    href: Page::Invitations.path(),
                    label: self.m.nav_invitations,
                    current: page == Page::Invitations,
                },
            );
            at += 1;
        }
        self.nav.insert(
            at,
            NavItem {
                href: Page::Report.path(),
                label: self.m.nav_report,
                current: page == Page::Report,
            },
        );
        self.nav.insert(
            at + 1,
            NavItem {
                href: Page::Backup.path(),
                label: self.m.nav_backup,
                current: page == Page::Backup,
            },
        );
        // Budgets: everyone signed in sees their own limits there.
        self.nav.insert(
            at + 2,
            NavItem {
                href: Page::Budget.path(),
                label: self.m.nav_budget,
                current: page == Page::Budget,
            },
        );
        self.nav.insert(
            at + 3,
            NavItem {
                href: Page::Update.path(),
                label: self.m.nav_update,
                current: page == Page::Update,
            },
        );
        self
    }

    /// The language links come back to `path` (a page whose path has more than its
    /// [`Page::path`], such as `/join/{token}`).
    pub fn back_to(mut self, path: &str) -> Frame {
        for l in &mut self.langs {
            l.href = format!("/lang/{}?next={path}", l.code);
        }
        self
    }
}

/// The tariff the page multiplies the month's energy with: only when a person set one (on the
/// budget page, or `[accounting] tariff_per_kwh`); a default price would be a made-up cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Tariff {
    pub per_kwh: f64,
    /// ISO 4217.
    pub currency: String,
}

/// The tariff now: set at start from the database and the file, changed by the budget page.
pub type SharedTariff = std::sync::Arc<std::sync::RwLock<Option<Tariff>>>;

pub fn shared_tariff(t: Option<Tariff>) -> SharedTariff {
    std::sync::Arc::new(std::sync::RwLock::new(t))
}

#[derive(Debug)]
pub struct Warning {
    /// `alert` (act now) or `note` (happened, worth knowing).
    pub level: &'static str,
    pub title: &'static str,
    pub text: String,
}

#[derive(Debug)]
pub struct Cost {
    pub value: String,
    pub note: String,
    pub tariff: f64,
    pub currency: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct Overview {
    pub frame: Frame,
    /// What the script compares with `/api/v1/status` to know when the words are stale.
    pub sig: String,
    pub health_state: &'static str,
    pub health: &'static Said,
    pub reason: String,
    pub maintenance: bool,
    /// `(RFC 3339, local "YYYY-MM-DD HH:MM")`.
    pub last_restart: Option<(String, String)>,
    pub led: &'static str,
    pub led_words: &'static str,
    pub warnings: Vec<Warning>,
    pub watts: String,
    pub volts: Option<String>,
    pub today: String,
    pub month: String,
    pub cost: Option<Cost>,
    pub chart: Chart,
    pub sensor: &'static str,
    pub sensor_words: &'static str,
    pub sensor_fault: Option<String>,
    pub temperature: Option<String>,
    pub storage: Option<String>,
    /// Synapse's database, in words (where first boot chose it).
    pub database: Option<&'static str>,
    /// No name yet: the box waits for `/setup`.
    pub awaiting_setup: bool,
    pub n: &'static super::name_text::NameText,
    /// "Reachable?", once a name is chosen.
    pub reach: Vec<super::reach::Row>,
}

/// The status line the script compares: `state|reason|sensor|led`.
pub fn signature(s: &Status) -> String {
    format!(
        "{}|{}|{}|{}",
        s.health.state, s.health.reason, s.power.sensor, s.led
    )
}

fn gb(lang: Lang, bytes: u64) -> String {
    format!("{}\u{a0}GB", lang.num(bytes as f64 / 1e9, 1))
}

fn warnings(s: &Status, lang: Lang) -> Vec<Warning> {
    let t = lang.t();
    let d = &s.device;
    let mut out = Vec::new();
    let alert = |said: &Said, text: String| Warning {
        level: "alert",
        title: said.title,
        text,
    };
    if s.power.sensor == "fault" {
        out.push(alert(
            &t.warn_sensor_fault,
            t.warn_sensor_fault.text.to_string(),
        ));
    }
    let throttled = d.throttled.unwrap_or_default();
    let under_now = d.under_voltage == Some(true)
        || throttled.under_voltage
        || s.power.warnings.contains(&"under_voltage");
    if under_now {
        out.push(alert(
            &t.warn_under_voltage,
            t.warn_under_voltage.text.to_string(),
        ));
    } else if throttled.under_voltage_occurred {
        out.push(Warning {
            level: "note",
            title: t.warn_under_voltage_since_boot.title,
            text: t.warn_under_voltage_since_boot.text.to_string(),
        });
    }
    if let Some(c) = d.soc_temp_c {
        if c >= HOT_C || throttled.soft_temp_limit {
            out.push(alert(
                &t.warn_hot,
                fill(t.warn_hot.text, &[&lang.num(c, 0)]),
            ));
        }
    }
    if d.disk_low {
        let free = d.disk_free_bytes.map_or("–".into(), |b| gb(lang, b));
        out.push(alert(&t.warn_disk, fill(t.warn_disk.text, &[&free])));
    }
    // What needs acting on now comes before what happened since boot.
    out.sort_by_key(|w| w.level != "alert");
    out
}

/// The overview, from the status the API also serves and the last hour of minutes.
pub fn overview(
    s: &Status,
    hour: &[MinutePower],
    tariff: Option<&Tariff>,
    lang: Lang,
    now: DateTime<Local>,
) -> Overview {
    let t = lang.t();
    let month_kwh = s.energy.month_wh / 1000.0;
    let cost = tariff.map(|tf| Cost {
        value: lang.money(month_kwh * tf.per_kwh, &tf.currency),
        note: fill(t.cost_note, &[&lang.money(tf.per_kwh, &tf.currency)]),
        tariff: tf.per_kwh,
        currency: tf.currency.clone(),
    });
    let last_restart = s.health.last_restart.as_ref().and_then(|iso| {
        DateTime::parse_from_rfc3339(iso).ok().map(|d| {
            (
                iso.clone(),
                d.with_timezone(&Local).format("%Y-%m-%d %H:%M").to_string(),
            )
        })
    });
    // No light on this box: say so, and draw the dot dark rather than a pattern nobody sees.
    let (led, led_words) = match s.led_device {
        "absent" => ("off", t.led_absent),
        "none" => ("off", t.led_none),
        _ => (s.led, t.led(s.led)),
    };
    Overview {
        frame: Frame::new(lang, Page::Overview, now),
        sig: signature(s),
        health_state: s.health.state,
        health: if s.health.awaiting_setup {
            &super::name_text::NameText::of(lang).waiting
        } else {
            t.health(s.health.state)
        },
        reason: s.health.reason.clone(),
        maintenance: s.health.maintenance,
        last_restart,
        led,
        led_words,
        warnings: warnings(s, lang),
        watts: s.power.watts.map_or("–".into(), |w| lang.num(w, 2)),
        volts: s.power.volts.map(|v| lang.num(v, 2)),
        today: lang.num(s.energy.today_wh / 1000.0, 3),
        month: lang.num(month_kwh, 3),
        cost,
        chart: chart::chart(hour, lang),
        sensor: s.power.sensor,
        sensor_words: t.sensor(s.power.sensor),
        sensor_fault: s.power.fault.clone(),
        temperature: s.device.soc_temp_c.map(|c| lang.num(c, 0)),
        storage: match (s.device.disk_free_bytes, s.device.disk_total_bytes) {
            (Some(f), Some(tot)) if tot > 0 => {
                Some(fill(t.storage_value, &[&gb(lang, f), &gb(lang, tot)]))
            }
            _ => None,
        },
        database: s.health.database.map(|d| match d {
            "sqlite" => t.database_sqlite,
            _ => t.database_postgresql,
        }),
        awaiting_setup: s.health.awaiting_setup,
        n: super::name_text::NameText::of(lang),
        reach: s.name.as_ref().map_or_else(Vec::new, |r| {
            super::reach::rows(r, lang, now.with_timezone(&chrono::Utc))
        }),
    }
}

/// The signed-in account of a request, for the header (the session only; no database).
pub fn account_of(s: &AppState, headers: &HeaderMap) -> Option<Account> {
    let web = s.web.as_ref()?;
    let token = super::session::cookie(headers, super::session::COOKIE)?;
    let session = web.sessions.get(token)?;
    Some(Account {
        user_id: session.user_id,
        csrf: session.csrf,
    })
}

/// A rendered page with the headers every page carries (the security headers are added to
/// every response by the router).
pub fn html(lang: Lang, rendered: Result<String, askama::Error>) -> Response {
    match rendered {
        Ok(body) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                (
                    header::CONTENT_LANGUAGE,
                    HeaderValue::from_static(lang.code()),
                ),
                (
                    header::VARY,
                    HeaderValue::from_static("Accept-Language, Cookie"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("rendering a page: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered; see the supervisor's log\n",
            )
                .into_response()
        }
    }
}

/// `GET /`.
pub async fn index(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let lang = i18n::of_request(&headers);
    let status = status_of(&s);
    let now_ms = crate::clock::wall_ms_now();
    let hour = s.meter.lock().recent.last_hour(now_ms.div_euclid(1000));
    let tariff = s.tariff.read().unwrap_or_else(|p| p.into_inner()).clone();
    let mut page = overview(
        &status,
        &hour,
        tariff.as_ref(),
        lang,
        crate::clock::local_now(),
    );
    page.frame.account = account_of(&s, &headers);
    html(lang, page.render())
}

#[derive(Debug, serde::Deserialize)]
pub struct Next {
    next: Option<String>,
}

/// Only a path on this server: `/…`, not `//host` or `/\host`, which browsers take for
/// another site.
pub fn local_path(next: Option<&str>) -> &str {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.starts_with("/\\")
                && !p.chars().any(|c| c.is_control()) =>
        {
            p
        }
        _ => "/",
    }
}

/// `GET /lang/{code}?next=/path`: remember the language in a cookie and go back. A plain link,
/// so the switch works without script.
pub async fn switch_lang(Path(code): Path<String>, Query(q): Query<Next>) -> Response {
    let Some(lang) = Lang::from_code(&code) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no page language {code:?}; there are de and en\n"),
        )
            .into_response();
    };
    let cookie = format!(
        "{}={}; Path=/; Max-Age=31536000; SameSite=Strict; HttpOnly",
        i18n::COOKIE,
        lang.code()
    );
    let to = local_path(q.next.as_deref());
    match (HeaderValue::from_str(to), HeaderValue::from_str(&cookie)) {
        (Ok(location), Ok(cookie)) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, location),
                (header::SET_COOKIE, cookie),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        _ => (StatusCode::BAD_REQUEST, "bad next path\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::machine::Health;
    use crate::health::monitor::HealthReport;
    use crate::meter::integrator::Piece;
    use crate::meter::live::{LiveMeter, SensorState, Shared};
    use crate::power::{Sample, SampleFlags, SensorKind};
    use crate::units::{Amps, Volts, WattHours, Watts};
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    fn state(tariff: Option<Tariff>) -> AppState {
        let meter = Shared::new(LiveMeter::new(SensorKind::Ina219, "i2c-1@0x40".into()));
        {
            let mut m = meter.lock();
            m.state = SensorState::Ok;
            m.latest = Some(Sample {
                volts: Volts(5.08),
                amps: Amps(3.2 / 5.08),
                watts: Watts(3.2),
                window: std::time::Duration::from_millis(68),
                flags: SampleFlags::default(),
            });
        }
        let (_tx, led) = tokio::sync::watch::channel(crate::led::Pattern::Steady);
        AppState {
            meter,
            health: Default::default(),
            led,
            led_device: "sysfs",
            device: Default::default(),
            tariff: shared_tariff(tariff),
            web: None,
            transparency: Default::default(),
            synapse_database: None,
            reach: Default::default(),
        }
    }

    struct Got {
        status: StatusCode,
        headers: HeaderMap,
        body: String,
    }

    async fn get(st: &AppState, path: &str, headers: &[(&str, &str)]) -> Got {
        let mut req = Request::get(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = super::super::router(st.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        Got {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    fn header<'a>(g: &'a Got, name: &str) -> &'a str {
        g.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn the_overview_speaks_english_by_default_and_german_when_asked() {
        let st = state(None);
        let en = get(&st, "/", &[]).await;
        assert_eq!(en.status, StatusCode::OK);
        assert_eq!(header(&en, "content-language"), "en");
        assert!(header(&en, "content-type").starts_with("text/html"));
        assert!(en.body.contains("<html lang=\"en\""));
        assert!(en.body.contains("Power now"), "{}", en.body);
        assert!(en.body.contains(">3.20</span>"), "live watts");
        assert!(en.body.contains(">5.08</span>&nbsp;V"), "supply volts");
        assert!(en.body.contains(&format!("hearth version {VERSION}")));
        assert!(en.body.contains("href=\"/lang/de?next=/\""), "the switch");

        let de = get(&st, "/", &[("accept-language", "de-DE,de;q=0.9,en;q=0.5")]).await;
        assert_eq!(header(&de, "content-language"), "de");
        assert!(de.body.contains("<html lang=\"de\""));
        assert!(de.body.contains("Leistung jetzt"));
        assert!(de.body.contains(">3,20</span>"), "a decimal comma");
        assert!(de.body.contains("href=\"/lang/en?next=/\""));
        assert!(header(&de, "vary").contains("Accept-Language"));

        // The cookie wins over the browser.
        let en = get(
            &st,
            "/",
            &[("accept-language", "de-DE"), ("cookie", "lang=en")],
        )
        .await;
        assert!(en.body.contains("Power now"));
    }

    #[tokio::test]
    async fn the_page_and_the_status_say_which_database_first_boot_chose() {
        let mut st = state(None);
        let r = get(&st, "/", &[]).await;
        assert!(
            !r.body.contains("data-field=\"database\""),
            "nothing chose: no line"
        );
        let r = get(&st, "/api/v1/status", &[]).await;
        assert!(r.body.contains("\"database\":null"), "{}", r.body);

        st.synapse_database = Some(crate::config::Database::Sqlite);
        let r = get(&st, "/", &[]).await;
        assert!(
            r.body.contains(
                "Messages stored in</dt><dd data-field=\"database\">SQLite (chosen at first boot"
            ),
            "{}",
            r.body
        );
        let r = get(&st, "/", &[("accept-language", "de")]).await;
        assert!(r
            .body
            .contains("Nachrichten gespeichert in</dt><dd data-field=\"database\">SQLite"));
        let r = get(&st, "/api/v1/status", &[]).await;
        assert!(r.body.contains("\"database\":\"sqlite\""), "{}", r.body);

        st.synapse_database = Some(crate::config::Database::Postgresql);
        let r = get(&st, "/", &[]).await;
        assert!(r
            .body
            .contains("<dd data-field=\"database\">PostgreSQL</dd>"));
    }

    #[tokio::test]
    async fn the_switch_sets_a_strict_cookie_and_goes_back_to_a_local_page() {
        let st = state(None);
        let r = get(&st, "/lang/de?next=/", &[]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(header(&r, "location"), "/");
        let cookie = header(&r, "set-cookie");
        assert!(cookie.starts_with("lang=de;"), "{cookie}");
        assert!(cookie.contains("SameSite=Strict") && cookie.contains("Path=/"));
        let r = get(&st, "/lang/en?next=//evil.example/", &[]).await;
        assert_eq!(header(&r, "location"), "/");
        let r = get(&st, "/lang/fr", &[]).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(header(&r, "set-cookie").is_empty());
    }

    #[tokio::test]
    async fn every_response_carries_the_security_headers() {
        let st = state(None);
        for path in ["/", "/api/v1/status", "/metrics", Asset::Css.url(), "/nope"] {
            let r = get(&st, path, &[]).await;
            let csp = header(&r, "content-security-policy");
            assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
            assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
            assert_eq!(header(&r, "x-content-type-options"), "nosniff", "{path}");
            assert_eq!(header(&r, "referrer-policy"), "no-referrer", "{path}");
            assert_eq!(header(&r, "x-frame-options"), "DENY", "{path}");
        }
    }

    #[tokio::test]
    async fn the_page_needs_nothing_the_policy_forbids_and_its_assets_are_served() {
        let st = state(None);
        let page = get(&st, "/", &[]).await.body;
        // No inline script or style: everything the CSP allows comes from /assets/.
        for (i, _) in page.match_indices("<script") {
            let tag = &page[i..page[i..].find('>').unwrap() + i];
            assert!(tag.contains(" src=\"/assets/"), "inline script: {tag}");
        }
        assert!(!page.contains("style="), "inline style attribute");
        assert!(!page.contains("<style"), "inline style element");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "external"
        );
        assert!(!page.contains("http-equiv"), "no meta refresh");
        for a in Asset::ALL {
            assert!(page.contains(a.url()), "{} linked", a.url());
            let r = get(&st, a.url(), &[]).await;
            assert_eq!(r.status, StatusCode::OK, "{}", a.url());
            assert!(header(&r, "cache-control").contains("immutable"));
            assert!(!r.body.is_empty());
        }
        assert_eq!(
            get(&st, "/assets/app.0000000000.css", &[]).await.status,
            StatusCode::NOT_FOUND,
            "an old hash is not served as if current"
        );
        assert_eq!(
            header(&get(&st, Asset::Js.url(), &[]).await, "content-type"),
            "text/javascript; charset=utf-8"
        );
    }

    #[tokio::test]
    async fn the_cost_is_shown_only_with_a_configured_tariff_and_for_the_whole_device() {
        let st = state(Some(Tariff {
            per_kwh: 0.30,
            currency: "EUR".into(),
        }));
        st.meter.lock().stored.since_month_wh = 2500.0;
        let en = get(&st, "/", &[]).await.body;
        assert!(en.contains("Cost this month"));
        assert!(en.contains(">€0.75</span>"), "2.5 kWh × €0.30");
        assert!(en.contains("The whole box at €0.30 per kWh"));
        let de = get(&st, "/", &[("accept-language", "de")]).await.body;
        assert!(de.contains(">0,75\u{a0}€</span>"), "{de}");

        let none = get(&state(None), "/", &[]).await.body;
        assert!(!none.contains("Cost this month"), "no made-up price");
    }

    #[tokio::test]
    async fn health_is_said_in_words_with_the_reason_and_the_light() {
        let st = state(None);
        *st.health.get() = Some(HealthReport {
            state: Health::Failed,
            reason: "crash loop: 6 restarts within 10 min".into(),
            units: Vec::new(),
            last_restart_ms: Some(1_795_651_200_000),
            maintenance: false,
            awaiting_setup: false,
        });
        let (tx, led) = tokio::sync::watch::channel(crate::led::Pattern::Failure);
        let st = AppState { led, ..st };
        let en = get(&st, "/", &[]).await.body;
        assert!(en.contains("A person is needed"));
        assert!(en.contains("Technical detail: crash loop: 6 restarts within 10 min"));
        assert!(en.contains("class=\"state state-failed\""));
        assert!(en.contains("long, then three short flashes"));
        assert!(en.contains("datetime=\"2026-11-26T00:00:00Z\""));
        assert!(en.contains("data-sig=\"failed|crash loop: 6 restarts within 10 min|ok|failure\""));
        let de = get(&st, "/", &[("accept-language", "de")]).await.body;
        assert!(de.contains("Ein Mensch wird gebraucht"));
        drop(tx);
    }

    #[tokio::test]
    async fn a_sensor_fault_and_device_trouble_are_warnings_in_plain_words() {
        let st = state(None);
        st.meter.lock().state = SensorState::Fault {
            reason: "I2C bus i2c-1@0x40: NoAcknowledge".into(),
            since_ms: 0,
        };
        *st.device.lock().unwrap() = crate::device::Device {
            disk_free_bytes: Some(1_200_000_000),
            disk_total_bytes: Some(32_000_000_000),
            disk_low: true,
            soc_temp_c: Some(82.4),
            under_voltage: Some(true),
            throttled: None,
        };
        let en = get(&st, "/", &[]).await.body;
        assert!(en.contains("The power sensor does not answer"));
        assert!(en.contains("fault: I2C bus i2c-1@0x40: NoAcknowledge"));
        assert!(en.contains("data-field=\"watts\">–<"), "no stale power");
        assert!(en.contains("The power supply is too weak"));
        assert!(en.contains("82 °C: it slows itself down"));
        assert!(en.contains("Only 1.2\u{a0}GB left"));
        let de = get(&st, "/", &[("accept-language", "de")]).await.body;
        assert!(de.contains("Speicher fast voll") && de.contains("Nur noch 1,2\u{a0}GB frei"));
        assert!(de.contains("Das Netzteil ist zu schwach"));

        // What happened since boot is a note, after what needs acting on now.
        *st.device.lock().unwrap() = crate::device::Device {
            disk_free_bytes: Some(1_200_000_000),
            disk_total_bytes: Some(32_000_000_000),
            disk_low: true,
            throttled: Some(crate::device::Throttled {
                under_voltage_occurred: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        st.meter.lock().state = SensorState::Ok;
        let en = get(&st, "/", &[]).await.body;
        let disk = en.find("Storage almost full").unwrap();
        let since = en.find("The power supply was too weak").unwrap();
        assert!(disk < since, "alerts first");
        assert!(en.contains("class=\"warn warn-note\"><strong>The power supply was too weak"));
        assert!(!en.contains("The power supply is too weak"));

        // A healthy board has no warnings section at all.
        let calm = get(&state(None), "/", &[]).await.body;
        assert!(!calm.contains("class=\"warnings\""));
    }

    #[tokio::test]
    async fn the_chart_draws_the_last_hour_from_the_live_minutes() {
        let st = state(None);
        let now = crate::clock::wall_ms_now();
        {
            let mut m = st.meter.lock();
            // 30 minutes at 3 W then 10 at 4.5 W, up to now.
            for i in 0..40i64 {
                let watts = if i < 30 { 3.0 } else { 4.5 };
                let d = std::time::Duration::from_secs(60);
                m.recent.add(&Piece {
                    end_wall_ms: now - (39 - i) * 60_000,
                    duration: d,
                    energy: Watts(watts) * d,
                    estimated: WattHours::ZERO,
                    measured: Some((Watts(watts), Volts(5.0))),
                });
            }
        }
        let en = get(&st, "/", &[]).await.body;
        let line = en
            .split("<polyline class=\"line\" points=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("a line");
        assert!(line.split(' ').count() >= 39, "{line}");
        assert!(en.contains("role=\"img\" aria-labelledby=\"chart-title chart-desc\""));
        assert!(en.contains("highest 4.50\u{a0}W"), "text alternative");
    }
}
