//! The transparency site (cooperative/README.md, "The transparency site"): what the seed asks
//! of an operator, on a listener of its own (`[site] listen`). German and English
//! (`?lang=de|en`, else `Accept-Language`, else German); every page as HTML and as JSON
//! (`?format=json` or `Accept: application/json`); an Atom feed of the quarterly reports.
//!
//! - `/` the overview: months of running costs secured, cost per account and month, the
//!   latest quarter's result and energy, the supplier;
//! - `/energy` the aggregates of the boxes' anonymous reports (`aggregates.rs`), per month and
//!   quarter, only over at least k reports, with the noise's 95 % bound;
//! - `/finances` income and expenses by category, per quarter, from the ledger (`ledger.rs`);
//! - `/reports/<YYYY-Qn>` the quarterly report; `/feed.atom` lists them;
//! - `/pages/<name>` the cooperative's Markdown pages (`<pages_dir>/<lang>/<name>.md`).
//!
//! Every request reads the ledger file and the reports afresh (both are small); a bad ledger
//! line is shown on the page as `file:line:field: …` and the rest still renders.

mod html;
pub mod markdown;
pub mod svg;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use crate::aggregates::{self, Aggregates};
use crate::ledger::{Date, Ledger, Quarter};
use crate::store::Store;

/// The pages a cooperative writes, in the order the menu lists them.
pub const PAGES: [&str; 3] = ["legal", "content", "access"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    De,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::De => "de",
            Lang::En => "en",
        }
    }
    fn from_code(s: &str) -> Option<Lang> {
        match s.trim().to_ascii_lowercase().as_str() {
            "de" => Some(Lang::De),
            "en" => Some(Lang::En),
            _ => None,
        }
    }
    /// `Accept-Language`: the first of ours by quality (`de-AT;q=0.8` counts as `de`).
    pub fn negotiate(query: Option<&str>, accept: Option<&str>) -> Lang {
        if let Some(l) = query.and_then(Lang::from_code) {
            return l;
        }
        let mut best: Option<(f32, Lang)> = None;
        for part in accept.unwrap_or("").split(',') {
            let mut it = part.split(';');
            let tag = it.next().unwrap_or("").trim();
            let q = it
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let primary = tag.split('-').next().unwrap_or("");
            if let Some(l) = Lang::from_code(primary) {
                if best.is_none_or(|(bq, _)| q > bq) {
                    best = Some((q, l));
                }
            }
        }
        best.map_or(Lang::De, |(_, l)| l)
    }
    /// The text in this language.
    pub fn t(self, de: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::De => de,
            Lang::En => en,
        }
    }
}

/// What the site needs: the store (reports), the ledger and pages on disk, the threshold.
#[derive(Clone)]
pub struct Site {
    pub store: Store,
    pub ledger: PathBuf,
    pub pages_dir: PathBuf,
    pub k: usize,
    /// The cooperative's name, at the top of every page.
    pub name: String,
    /// Where the site is reached from outside (the feed's links): `https://coop.example`.
    pub base_url: String,
}

/// Everything one page is drawn from, read once per request.
pub struct Snapshot {
    pub aggregates: Aggregates,
    pub ledger: Ledger,
    /// `file:line:field: message`, one per bad line (or the file unreadable).
    pub ledger_errors: Vec<String>,
    pub today: Date,
    pub reports_error: Option<String>,
}

impl Site {
    fn snapshot(&self) -> Snapshot {
        let shown = self.ledger.display().to_string();
        let (ledger, ledger_errors) = match std::fs::read_to_string(&self.ledger) {
            Ok(text) => {
                let (l, e) = Ledger::parse(&text);
                (l, e.iter().map(|e| e.show(&shown)).collect())
            }
            Err(e) => (Ledger::default(), vec![format!("{shown}: {e}")]),
        };
        let (rows, reports_error) = match self.store.reports() {
            Ok(r) => (r, None),
            Err(e) => {
                tracing::warn!("reports: {e}");
                (
                    Vec::new(),
                    Some("the reports cannot be read right now".to_owned()),
                )
            }
        };
        let rows: Vec<aggregates::Row> = rows
            .into_iter()
            .filter_map(|r| {
                aggregates::Row::new(&r.month, &r.hardware, r.members, r.energy_kwh, r.epsilon)
            })
            .collect();
        Snapshot {
            aggregates: aggregates::aggregate(&rows, self.k),
            ledger,
            ledger_errors,
            today: today(),
            reports_error,
        }
    }

    /// The quarters with a report: those of the ledger that have ended.
    fn report_quarters(s: &Snapshot) -> Vec<Quarter> {
        let mut q: Vec<Quarter> = s
            .ledger
            .quarters()
            .into_iter()
            .filter(|q| q.end() < s.today)
            .collect();
        q.reverse();
        q
    }
}

/// Today (UTC), from the wall clock: it only says which quarters have ended.
fn today() -> Date {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    civil(days)
}

/// Days since 1970-01-01 → the date (H. Hinnant's `civil_from_days`).
pub fn civil(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    Date { year, month, day }
}

#[derive(Debug, Deserialize, Default)]
pub struct Params {
    lang: Option<String>,
    format: Option<String>,
}

/// The request's language and whether it wants JSON.
struct Ask {
    lang: Lang,
    json: bool,
}

fn ask(q: &Params, headers: &HeaderMap) -> Ask {
    let h = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    let json = match q.format.as_deref() {
        Some("json") => true,
        Some(_) => false,
        None => h(header::ACCEPT).is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|f| f.trim().starts_with("application/json"))
        }),
    };
    Ask {
        lang: Lang::negotiate(q.lang.as_deref(), h(header::ACCEPT_LANGUAGE)),
        json,
    }
}

pub fn router(site: Site) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/energy", get(energy))
        .route("/finances", get(finances))
        .route("/reports/{quarter}", get(quarter))
        .route("/pages/{name}", get(page))
        .route("/feed.atom", get(feed))
        .fallback(not_found)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(site)
}

/// No script, nothing from elsewhere: the pages are text, inline SVG and one inline style.
async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::VARY,
        HeaderValue::from_static("Accept, Accept-Language"),
    );
    r
}

async fn snap(site: &Site) -> Result<Snapshot, Response> {
    let s = site.clone();
    tokio::task::spawn_blocking(move || s.snapshot())
        .await
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
}

fn respond(a: &Ask, json: serde_json::Value, html: String) -> Response {
    if a.json {
        axum::Json(json).into_response()
    } else {
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_LANGUAGE, a.lang.code()),
            ],
            html,
        )
            .into_response()
    }
}

macro_rules! try_snap {
    ($site:expr) => {
        match snap(&$site).await {
            Ok(s) => s,
            Err(r) => return r,
        }
    };
}

async fn overview(State(site): State<Site>, Query(q): Query<Params>, h: HeaderMap) -> Response {
    let a = ask(&q, &h);
    let s = try_snap!(site);
    let (json, page) = html::overview(&site, &s, a.lang);
    respond(&a, json, page)
}

async fn energy(State(site): State<Site>, Query(q): Query<Params>, h: HeaderMap) -> Response {
    let a = ask(&q, &h);
    let s = try_snap!(site);
    let (json, page) = html::energy(&site, &s, a.lang);
    respond(&a, json, page)
}

async fn finances(State(site): State<Site>, Query(q): Query<Params>, h: HeaderMap) -> Response {
    let a = ask(&q, &h);
    let s = try_snap!(site);
    let (json, page) = html::finances(&site, &s, a.lang);
    respond(&a, json, page)
}

async fn quarter(
    State(site): State<Site>,
    Path(quarter): Path<String>,
    Query(q): Query<Params>,
    h: HeaderMap,
) -> Response {
    let a = ask(&q, &h);
    let Some(qr) = Quarter::parse(&quarter) else {
        return not_found().await;
    };
    let s = try_snap!(site);
    if !Site::report_quarters(&s).contains(&qr) {
        return not_found().await;
    }
    let (json, page) = html::quarter(&site, &s, qr, a.lang);
    respond(&a, json, page)
}

async fn page(
    State(site): State<Site>,
    Path(name): Path<String>,
    Query(q): Query<Params>,
    h: HeaderMap,
) -> Response {
    let a = ask(&q, &h);
    if !PAGES.contains(&name.as_str()) {
        return not_found().await;
    }
    // The visitor's language, else the other one (the cooperative's words beat nothing).
    let mut found = None;
    for l in [
        a.lang,
        if a.lang == Lang::De {
            Lang::En
        } else {
            Lang::De
        },
    ] {
        let path = site.pages_dir.join(l.code()).join(format!("{name}.md"));
        match std::fs::read_to_string(&path) {
            Ok(t) => {
                found = Some((l, t));
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!("{}: {e}", path.display());
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "this page cannot be read",
                )
                    .into_response();
            }
        }
    }
    let Some((written_in, text)) = found else {
        return not_found().await;
    };
    let (json, page) = html::markdown_page(&site, &name, written_in, &text, a.lang);
    respond(&a, json, page)
}

async fn feed(State(site): State<Site>) -> Response {
    let s = try_snap!(site);
    (
        [(header::CONTENT_TYPE, "application/atom+xml; charset=utf-8")],
        html::atom(&site, &s),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "not found / nicht gefunden\n",
    )
        .into_response()
}

/// Serves the site on `listener` until `stop`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    site: Site,
    stop: tokio_util::sync::CancellationToken,
) {
    let app = router(site);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
    {
        tracing::error!("the site: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_from_the_query_then_the_header_then_german() {
        assert_eq!(Lang::negotiate(Some("en"), Some("de")), Lang::En);
        assert_eq!(
            Lang::negotiate(Some("xx"), Some("en-GB,en;q=0.9")),
            Lang::En
        );
        assert_eq!(
            Lang::negotiate(None, Some("fr, en;q=0.5, de-AT;q=0.8")),
            Lang::De
        );
        assert_eq!(Lang::negotiate(None, Some("fr")), Lang::De);
        assert_eq!(Lang::negotiate(None, None), Lang::De);
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil(0).to_string(), "1970-01-01");
        assert_eq!(civil(19_782).to_string(), "2024-02-29");
        assert_eq!(civil(20_088).to_string(), "2024-12-31");
    }
}
