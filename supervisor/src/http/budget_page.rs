//! Budgets, top-ups, the costs and the households on the page (issue 17; `crate::budget`).
//!
//! - `GET /budget` (HTML) and `GET /api/v1/budget` (JSON): every signed-in member sees their
//!   own limits now (from the enforcer's last pass), their budgets and their household's
//!   prepaid credit; a household admin also sees and sets their household's budget and its
//!   members' (whether each is limited now: a view of another member's data, audited as
//!   `view_statement`); a server admin sees and sets all, records top-ups, sets the costs and
//!   the households.
//! - `POST /budget` (form) and `POST /api/v1/budget` (JSON): set a budget. A household admin
//!   for another household (or its members), or a member, gets 403 and a `denied` entry.
//! - `POST /budget/topup`, `/budget/costs`, `/budget/households` (forms; `POST
//!   /api/v1/budget/topup` as JSON): a server admin's. Each change is audited in its own
//!   transaction and wakes the enforcer, so limits follow within seconds.

use super::budget_text::BudgetText;
use super::i18n::{self, fill, Lang};
use super::invite::{db_failed, deny, no_store, parse, signed_in_csrf};
use super::member_api::view_entries;
use super::member_pages::{error_page, form_viewer, frame, page_viewer, redirect};
use super::pages::{html, Frame, Page};
use super::session::Role;
use super::signin::{self, ApiError, Viewer};
use super::{AppState, Web};
use crate::accounting::directory::{self, ChangedBy, Listing};
use crate::audit::{Action, NewEntry};
use crate::budget::assess::{Kind, Limits};
use crate::budget::enforce::text::amount;
use crate::budget::socket::SharedLimits;
use crate::budget::{self, Budget, BudgetError, Costs, FixedCostRow, Method, Scope, TopUp};
use crate::config::CostPer;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What the budget doors need beyond [`Web`].
pub struct Budgets {
    /// The enforcer's last pass (what limits whom now).
    pub limits: SharedLimits,
    /// Wakes the enforcer after a change.
    pub wake: Arc<tokio::sync::Notify>,
    /// The configuration file sets a tariff (`[accounting] tariff_per_kwh`).
    pub tariff_in_file: bool,
    /// The overview's tariff, changed here when the costs are.
    pub tariff: super::pages::SharedTariff,
}

const GIB: f64 = (1u64 << 30) as f64;

/// What the page reads from the database.
struct Loaded {
    costs: Costs,
    tariff: Option<f64>,
    currency: String,
    listing: Listing,
    budgets: Vec<(Scope, Budget)>,
    top_ups: BTreeMap<String, Vec<TopUp>>,
}

fn budget_error(e: BudgetError) -> ApiError {
    match e {
        BudgetError::Invalid { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        BudgetError::NoHousehold(_) | BudgetError::NoMember(_) => {
            ApiError(StatusCode::NOT_FOUND, e.to_string())
        }
        other => {
            tracing::error!("budget page: {other}");
            ApiError(
                StatusCode::INTERNAL_SERVER_ERROR,
                "budget: database error".into(),
            )
        }
    }
}

async fn load(web: &Arc<Web>) -> Result<Loaded, ApiError> {
    let tariff_in_file = web.budgets.as_ref().is_some_and(|b| b.tariff_in_file);
    let file = web.accounting.clone();
    web.db(move |db| -> Result<Loaded, BudgetError> {
        let conn = db.connection();
        let costs = budget::costs(conn)?;
        let (effective, chosen) = budget::effective(conn, &file, tariff_in_file)?;
        let listing =
            directory::list(conn).map_err(|e| budget::invalid("directory", e.to_string()))?;
        let mut top_ups = BTreeMap::new();
        for h in &listing.households {
            top_ups.insert(h.id.clone(), budget::top_ups(conn, &h.id)?);
        }
        Ok(Loaded {
            costs,
            tariff: chosen.then_some(effective.tariff_per_kwh),
            currency: effective.currency,
            budgets: budget::all(conn)?,
            listing,
            top_ups,
        })
    })
    .await
    .ok_or_else(db_failed)?
    .map_err(budget_error)
}

/// The households `viewer` sees: a server admin all, anyone else their own.
fn own_household(viewer: &Viewer, listing: &Listing) -> Option<String> {
    viewer
        .household
        .as_ref()
        .map(|(h, _)| h.clone())
        .or_else(|| {
            listing
                .households
                .iter()
                .find(|h| {
                    h.members
                        .iter()
                        .any(|m| m.user_id == viewer.user_id && m.left_s.is_none())
                })
                .map(|h| h.id.clone())
        })
}

/// May `viewer` set `scope`'s budget?
fn may_set(viewer: &Viewer, scope: &Scope) -> bool {
    match viewer.role {
        Role::ServerAdmin => true,
        Role::HouseholdAdmin => match (scope, &viewer.household) {
            (Scope::Household(h), Some((own, _))) => h == own,
            (Scope::Member(u), Some((_, members))) => members.contains(u),
            _ => false,
        },
        Role::Member => false,
    }
}

fn scope_label(scope: &Scope) -> String {
    match scope {
        Scope::Household(h) => format!("household {h}"),
        Scope::Member(u) => format!("member {u}"),
    }
}

/// Set a budget for `viewer` (see the module docs). `Ok(false)`: it already was so.
pub async fn set(
    web: &Arc<Web>,
    viewer: &Viewer,
    scope: Scope,
    b: Budget,
) -> Result<bool, ApiError> {
    if !may_set(viewer, &scope) {
        let about = match &scope {
            Scope::Member(u) => Some(u.as_str()),
            Scope::Household(_) => None,
        };
        return Err(deny(
            web,
            viewer,
            &format!("budget of {}", scope_label(&scope)),
            about,
            "you may not change this budget",
        )
        .await);
    }
    let by =
        NewEntry::new(viewer.actor(), Action::LimitChange).detail("role", viewer.role.as_str());
    let changed = web
        .db(move |db| budget::set(db.connection_mut(), &scope, &b, by))
        .await
        .ok_or_else(db_failed)?
        .map_err(budget_error)?;
    wake(web);
    Ok(changed)
}

fn wake(web: &Web) {
    if let Some(b) = &web.budgets {
        b.wake.notify_one();
    }
}

async fn admin_only(web: &Arc<Web>, viewer: &Viewer, what: &str) -> Result<(), ApiError> {
    if viewer.role == Role::ServerAdmin {
        return Ok(());
    }
    Err(deny(web, viewer, what, None, "only a server admin may do this").await)
}

/// Record a top-up (server admins).
pub async fn top_up(
    web: &Arc<Web>,
    viewer: &Viewer,
    household: String,
    amount: f64,
    method: Method,
    note: String,
) -> Result<i64, ApiError> {
    admin_only(web, viewer, "top_up").await?;
    let by = NewEntry::new(viewer.actor(), Action::LimitChange);
    let id = web
        .db(move |db| budget::top_up(db.connection_mut(), &household, amount, method, &note, by))
        .await
        .ok_or_else(db_failed)?
        .map_err(budget_error)?;
    wake(web);
    Ok(id)
}

// ---------------------------------------------------------------------------------------------
// Rendering.

pub struct StandingRow {
    pub kind: &'static str,
    pub whose: &'static str,
    pub used: String,
    pub limit: String,
    pub state: &'static str,
    pub level: u8,
}

pub struct BudgetFormView {
    pub scope: &'static str,
    pub id: String,
    pub label: String,
    pub energy_kwh: String,
    pub money: String,
    pub stored_gib: String,
    pub upload_gib: String,
    pub messages: String,
    pub prepaid: bool,
    pub household: bool,
    /// Admins see whether the member is limited now (`None`: a household's row).
    pub limited: Option<&'static str>,
    pub editable: bool,
}

pub struct TopUpRow {
    pub when: String,
    pub amount: String,
    pub method: &'static str,
    pub note: String,
    pub by: String,
}

pub struct HouseholdView {
    pub id: String,
    pub name: String,
    pub members: String,
    pub top_ups: Vec<TopUpRow>,
}

#[derive(Template)]
#[template(path = "budget.html")]
pub struct BudgetPage {
    pub frame: Frame,
    pub t: &'static BudgetText,
    pub csrf: String,
    pub notice: Option<&'static str>,
    pub assessed: bool,
    pub own: Vec<StandingRow>,
    pub own_limits: Vec<String>,
    pub balance: Option<String>,
    pub forms: Vec<BudgetFormView>,
    pub money_label: String,
    pub money_counts: bool,
    pub server_admin: bool,
    pub households: Vec<HouseholdView>,
    pub member_ids: Vec<String>,
    pub tariff_line: String,
    pub tariff_value: String,
    pub supplier: String,
    pub fixed_costs: String,
}

fn kind_word(t: &BudgetText, k: Kind) -> &'static str {
    match k {
        Kind::Energy => t.kind_energy,
        Kind::Money => t.kind_money,
        Kind::Prepaid => t.kind_prepaid,
        Kind::Stored => t.kind_stored,
        Kind::Uploaded => t.kind_uploaded,
    }
}

fn limits_lines(lang: Lang, t: &BudgetText, l: &Limits) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(r) = l.throttle_burst {
        out.push(fill(t.limited_messages, &[&r.to_string()]));
    }
    if l.blocked {
        out.push(t.uploads_blocked.to_string());
    } else if let Some(left) = l.stored_remaining_bytes {
        out.push(fill(
            t.stored_left,
            &[&amount(lang, Kind::Stored, left as f64, "")],
        ));
    }
    if let Some(u) = l.uploaded_max_bytes {
        out.push(fill(
            t.upload_budget,
            &[&amount(lang, Kind::Uploaded, u as f64, "")],
        ));
    }
    out
}

/// A field of a budget as the form shows it ("" for none).
fn field(v: Option<f64>, digits: usize) -> String {
    v.map(|x| {
        let s = format!("{x:.digits$}");
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    })
    .unwrap_or_default()
}

fn form_view(
    scope: &Scope,
    label: String,
    b: Option<&Budget>,
    limited: Option<&'static str>,
    editable: bool,
) -> BudgetFormView {
    let d = Budget::default();
    let b = b.unwrap_or(&d);
    let (kind, id) = match scope {
        Scope::Household(h) => ("household", h.clone()),
        Scope::Member(u) => ("member", u.clone()),
    };
    BudgetFormView {
        scope: kind,
        id,
        label,
        energy_kwh: field(b.energy_wh.map(|w| w / 1000.0), 3),
        money: field(b.money, 2),
        stored_gib: field(b.media_stored_bytes.map(|x| x as f64 / GIB), 3),
        upload_gib: field(b.media_upload_bytes.map(|x| x as f64 / GIB), 3),
        messages: b.limited_burst.to_string(),
        prepaid: b.prepaid,
        household: kind == "household",
        limited,
        editable,
    }
}

/// The page, and the other members whose "limited now" it shows (to audit).
fn build(
    lang: Lang,
    viewer: &Viewer,
    l: &Loaded,
    published: &crate::budget::socket::Published,
    notice: Option<&'static str>,
) -> (BudgetPage, Vec<String>) {
    let t = BudgetText::of(lang);
    let own_household = own_household(viewer, &l.listing);
    let mine = published.members.get(&viewer.user_id);
    let own = mine
        .map(|m| {
            m.standings
                .iter()
                .map(|s| StandingRow {
                    kind: kind_word(t, s.kind),
                    whose: match s.scope {
                        Scope::Household(_) => t.of_household,
                        Scope::Member(_) => t.of_member,
                    },
                    used: amount(lang, s.kind, s.used, &l.currency),
                    limit: amount(lang, s.kind, s.limit, &l.currency),
                    state: match s.level {
                        100 => t.state_100,
                        80 => t.state_80,
                        _ => t.state_ok,
                    },
                    level: s.level,
                })
                .collect()
        })
        .unwrap_or_default();
    let balance = mine
        .and_then(|m| m.standings.iter().find(|s| s.kind == Kind::Prepaid))
        .map(|s| {
            fill(
                t.balance,
                &[
                    &lang.money(s.limit, &l.currency),
                    &lang.money(s.used, &l.currency),
                    &lang.money(s.limit - s.used, &l.currency),
                ],
            )
        });
    let own_limits = mine.map(|m| limits_lines(lang, t, m)).unwrap_or_default();
    let budget_of = |s: &Scope| l.budgets.iter().find(|(x, _)| x == s).map(|(_, b)| b);
    let mut forms = Vec::new();
    let mut viewed = Vec::new();
    for h in &l.listing.households {
        let visible = viewer.role == Role::ServerAdmin || own_household.as_deref() == Some(&h.id);
        if !visible {
            continue;
        }
        let hs = Scope::Household(h.id.clone());
        forms.push(form_view(
            &hs,
            format!("{} ({})", h.name, h.id),
            budget_of(&hs),
            None,
            may_set(viewer, &hs),
        ));
        for m in h.members.iter().filter(|m| m.left_s.is_none()) {
            let ms = Scope::Member(m.user_id.clone());
            let editable = may_set(viewer, &ms);
            // Whether someone else is limited now is theirs to know: shown to who may set it.
            let limited = (editable || m.user_id == viewer.user_id).then(|| {
                if m.user_id != viewer.user_id {
                    viewed.push(m.user_id.clone());
                }
                match published.members.get(&m.user_id) {
                    Some(x) if x.limited() => t.limited_now,
                    _ => t.not_limited,
                }
            });
            if editable || m.user_id == viewer.user_id {
                forms.push(form_view(
                    &ms,
                    m.user_id.clone(),
                    budget_of(&ms),
                    limited,
                    editable,
                ));
            }
        }
    }
    // Members without a household: a server admin sets theirs; they see their own.
    for m in &l.listing.unassigned {
        if m.left_s.is_some() {
            continue;
        }
        let ms = Scope::Member(m.user_id.clone());
        if viewer.role == Role::ServerAdmin || m.user_id == viewer.user_id {
            let limited = match published.members.get(&m.user_id) {
                Some(x) if x.limited() => t.limited_now,
                _ => t.not_limited,
            };
            if m.user_id != viewer.user_id {
                viewed.push(m.user_id.clone());
            }
            forms.push(form_view(
                &ms,
                m.user_id.clone(),
                budget_of(&ms),
                Some(limited),
                may_set(viewer, &ms),
            ));
        }
    }
    let server_admin = viewer.role == Role::ServerAdmin;
    let households = l
        .listing
        .households
        .iter()
        .filter(|h| server_admin || own_household.as_deref() == Some(&h.id))
        .map(|h| HouseholdView {
            id: h.id.clone(),
            name: h.name.clone(),
            members: h
                .members
                .iter()
                .filter(|m| m.left_s.is_none())
                .map(|m| m.user_id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            top_ups: l
                .top_ups
                .get(&h.id)
                .map(|v| {
                    v.iter()
                        .rev()
                        .map(|x| TopUpRow {
                            when: i18n::local_time(x.at_s),
                            amount: lang.money(x.amount, &l.currency),
                            method: match x.method {
                                Method::Cash => t.cash,
                                Method::Transfer => t.transfer,
                            },
                            note: x.note.clone(),
                            by: x.by.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect();
    let mut member_ids: Vec<String> = l
        .listing
        .households
        .iter()
        .flat_map(|h| h.members.iter())
        .chain(l.listing.unassigned.iter())
        .filter(|m| m.left_s.is_none())
        .map(|m| m.user_id.clone())
        .collect();
    member_ids.sort();
    let page = BudgetPage {
        frame: frame(lang, Page::Budget, Some(viewer)),
        t,
        csrf: viewer.csrf.clone(),
        notice,
        assessed: published.month_start_ms.is_some(),
        own,
        own_limits,
        balance,
        forms,
        money_label: fill(t.money, &[&l.currency]),
        money_counts: l.tariff.is_some(),
        server_admin,
        households,
        member_ids: if server_admin { member_ids } else { Vec::new() },
        tariff_line: match l.tariff {
            Some(x) => fill(t.tariff_is, &[&lang.money(x, &l.currency)]),
            None => t.no_tariff.to_string(),
        },
        tariff_value: field(l.costs.tariff_per_kwh, 4),
        supplier: l.costs.supplier.clone().unwrap_or_default(),
        fixed_costs: l
            .costs
            .fixed_costs
            .iter()
            .map(|f| {
                format!(
                    "{}; {}; {}",
                    f.name,
                    field(Some(f.amount), 2),
                    match f.per {
                        CostPer::Month => "month",
                        CostPer::Year => "year",
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n"),
    };
    (page, viewed)
}

fn published(web: &Web) -> crate::budget::socket::Published {
    match &web.budgets {
        Some(b) => {
            let p = b.limits.read().unwrap_or_else(|p| p.into_inner());
            crate::budget::socket::Published {
                month_start_ms: p.month_start_ms,
                info_uri: p.info_uri.clone(),
                members: p.members.clone(),
            }
        }
        None => Default::default(),
    }
}

/// `GET /budget` (`?done=…` after a change says what happened).
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<super::member_pages::Done>,
) -> Response {
    let lang = i18n::of_request(&headers);
    let (web, viewer) = match page_viewer(&state, &headers, Page::Budget.path()).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let t = BudgetText::of(lang);
    let notice = match q.done.as_deref() {
        Some("saved") => Some(t.saved),
        Some("unchanged") => Some(t.unchanged),
        Some("topup") => Some(t.topped_up),
        Some("costs") => Some(t.costs_saved),
        Some("households") => Some(t.households_saved),
        _ => None,
    };
    let loaded = match load(&web).await {
        Ok(l) => l,
        Err(e) => return error_page(lang, e.0, &e.1),
    };
    let (page, viewed) = build(lang, &viewer, &loaded, &published(&web), notice);
    if let Err(e) = signin::record(
        &web,
        view_entries(&viewer, Action::ViewStatement, &viewed, "budget limits"),
    )
    .await
    {
        return error_page(lang, e.0, &e.1);
    }
    no_store(html(lang, page.render()))
}

/// A number a person typed: empty is none, a comma is a decimal point.
fn number(field: &'static str, v: Option<&str>) -> Result<Option<f64>, ApiError> {
    let v = v.map(str::trim).filter(|s| !s.is_empty());
    match v {
        None => Ok(None),
        Some(s) => s
            .replace(',', ".")
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .map(Some)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("{field}: {s:?} is not a number of 0 or more"),
                )
            }),
    }
}

#[derive(Debug, Deserialize)]
pub struct BudgetForm {
    pub csrf: Option<String>,
    pub scope: Option<String>,
    pub id: Option<String>,
    pub energy_kwh: Option<String>,
    pub money: Option<String>,
    pub stored_gib: Option<String>,
    pub upload_gib: Option<String>,
    pub throttle_burst: Option<String>,
    pub prepaid: Option<String>,
}

fn scope_of(kind: Option<&str>, id: Option<&str>) -> Result<Scope, ApiError> {
    let id = id.map(str::trim).unwrap_or_default().to_string();
    match kind {
        Some("household") if !id.is_empty() => Ok(Scope::Household(id)),
        Some("member") if !id.is_empty() => Ok(Scope::Member(id)),
        _ => Err(ApiError(
            StatusCode::BAD_REQUEST,
            "scope: \"household\" or \"member\", with an id".into(),
        )),
    }
}

impl BudgetForm {
    fn budget(&self) -> Result<(Scope, Budget), ApiError> {
        let scope = scope_of(self.scope.as_deref(), self.id.as_deref())?;
        let bytes = |field, v: Option<&str>| -> Result<Option<u64>, ApiError> {
            Ok(number(field, v)?.map(|g| (g * GIB).round() as u64))
        };
        let messages = match self.throttle_burst.as_deref().map(str::trim) {
            None | Some("") => budget::DEFAULT_BURST,
            Some(s) => s.parse().map_err(|_| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("throttle_burst: {s:?} is not a whole number"),
                )
            })?,
        };
        Ok((
            scope,
            Budget {
                energy_wh: number("energy_kwh", self.energy_kwh.as_deref())?.map(|k| k * 1000.0),
                money: number("money", self.money.as_deref())?,
                media_stored_bytes: bytes("stored_gib", self.stored_gib.as_deref())?,
                media_upload_bytes: bytes("upload_gib", self.upload_gib.as_deref())?,
                limited_burst: messages,
                prepaid: self.prepaid.is_some(),
            },
        ))
    }
}

fn form_error(lang: Lang, e: ApiError) -> Response {
    if e.0 == StatusCode::FORBIDDEN {
        return error_page(lang, e.0, BudgetText::of(lang).may_not);
    }
    error_page(lang, e.0, &e.1)
}

/// A form of this page: signed in with the form's CSRF token, `action` does the change and
/// names what `?done=` says, then back to the page; a refusal is its error page.
async fn form_action<F, Fut>(
    state: &AppState,
    headers: &HeaderMap,
    csrf: Option<&str>,
    action: F,
) -> Response
where
    F: FnOnce(Arc<Web>, Viewer) -> Fut,
    Fut: std::future::Future<Output = Result<&'static str, ApiError>>,
{
    let lang = i18n::of_request(headers);
    let (web, viewer) = match form_viewer(state, headers, Page::Budget.path(), csrf).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match action(web, viewer).await {
        Ok(done) => redirect(&format!("/budget?done={done}"), &[]),
        Err(e) => form_error(lang, e),
    }
}

/// `POST /budget` (form).
pub async fn page_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<BudgetForm>,
) -> Response {
    let csrf = f.csrf.clone();
    form_action(
        &state,
        &headers,
        csrf.as_deref(),
        |web, viewer| async move {
            let (scope, b) = f.budget()?;
            Ok(if set(&web, &viewer, scope, b).await? {
                "saved"
            } else {
                "unchanged"
            })
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct TopUpForm {
    pub csrf: Option<String>,
    pub household: Option<String>,
    pub amount: Option<String>,
    pub method: Option<String>,
    pub note: Option<String>,
}

fn method_of(s: Option<&str>) -> Result<Method, ApiError> {
    s.and_then(Method::parse).ok_or_else(|| {
        ApiError(
            StatusCode::BAD_REQUEST,
            "method: \"cash\" or \"transfer\"".into(),
        )
    })
}

/// `POST /budget/topup` (form, server admins).
pub async fn topup_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<TopUpForm>,
) -> Response {
    let csrf = f.csrf.clone();
    form_action(
        &state,
        &headers,
        csrf.as_deref(),
        |web, viewer| async move {
            let amount = number("amount", f.amount.as_deref())?
                .ok_or_else(|| ApiError(StatusCode::BAD_REQUEST, "amount: missing".into()))?;
            let method = method_of(f.method.as_deref())?;
            let (household, note) = (f.household.unwrap_or_default(), f.note.unwrap_or_default());
            top_up(&web, &viewer, household, amount, method, note).await?;
            Ok("topup")
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct CostsForm {
    pub csrf: Option<String>,
    pub tariff: Option<String>,
    pub supplier: Option<String>,
    pub fixed_costs: Option<String>,
}

/// `name; amount; month|year` per line.
fn fixed_costs(text: &str) -> Result<Vec<FixedCostRow>, ApiError> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let bad = |what: &str| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("fixed costs, line {}: {what}", i + 1),
                )
            };
            let parts: Vec<&str> = l.split(';').map(str::trim).collect();
            let [name, amount, per] = parts[..] else {
                return Err(bad("name; amount; month or year"));
            };
            let amount = number("amount", Some(amount))
                .map_err(|_| bad("the amount is not a number"))?
                .unwrap_or(0.0);
            let per = match per {
                "month" | "Monat" => CostPer::Month,
                "year" | "Jahr" => CostPer::Year,
                _ => return Err(bad("month or year")),
            };
            Ok(FixedCostRow {
                name: name.to_string(),
                amount,
                per,
            })
        })
        .collect()
}

/// `POST /budget/costs` (form, server admins).
pub async fn costs_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<CostsForm>,
) -> Response {
    let csrf = f.csrf.clone();
    form_action(
        &state,
        &headers,
        csrf.as_deref(),
        |web, viewer| async move {
            admin_only(&web, &viewer, "costs").await?;
            let costs = Costs {
                tariff_per_kwh: number("tariff", f.tariff.as_deref())?,
                supplier: f
                    .supplier
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from),
                fixed_costs: fixed_costs(f.fixed_costs.as_deref().unwrap_or_default())?,
                set_by: None,
                set_s: None,
            };
            let by = NewEntry::new(viewer.actor(), Action::CostChange);
            let tariff_in_file = web.budgets.as_ref().is_some_and(|b| b.tariff_in_file);
            let file = web.accounting.clone();
            let now = web
                .db(move |db| {
                    budget::set_costs(db.connection_mut(), &costs, by)?;
                    budget::effective(db.connection(), &file, tariff_in_file)
                })
                .await
                .ok_or_else(db_failed)?
                .map_err(budget_error)?;
            if let Some(b) = &web.budgets {
                *b.tariff.write().unwrap_or_else(|p| p.into_inner()) =
                    now.1.then(|| super::pages::Tariff {
                        per_kwh: now.0.tariff_per_kwh,
                        currency: now.0.currency.clone(),
                    });
            }
            // Statements of the month so far are computed afresh with the new tariff.
            web.months.clear();
            wake(&web);
            Ok("costs")
        },
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct HouseholdsForm {
    pub csrf: Option<String>,
    /// "add" or "assign".
    pub op: Option<String>,
    pub id: Option<String>,
    pub name: Option<String>,
    pub user: Option<String>,
    pub household: Option<String>,
}

/// `POST /budget/households` (form, server admins): add a household, or move a member.
pub async fn households_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(f): Form<HouseholdsForm>,
) -> Response {
    let csrf = f.csrf.clone();
    form_action(
        &state,
        &headers,
        csrf.as_deref(),
        |web, viewer| async move {
            admin_only(&web, &viewer, "households").await?;
            let by = ChangedBy {
                actor: viewer.actor(),
                os_uid: None,
            };
            let now = chrono::DateTime::from_timestamp((web.now_s)(), 0).unwrap_or_default();
            let op = f.op.clone().unwrap_or_default();
            let (id, name, user, household) = (
                f.id.clone().unwrap_or_default(),
                f.name.clone().unwrap_or_default(),
                f.user.clone().unwrap_or_default(),
                f.household.clone().unwrap_or_default(),
            );
            web.db(move |db| match op.as_str() {
                "add" => {
                    directory::add_household(db.connection_mut(), id.trim(), name.trim(), &by, now)
                        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
                }
                "assign" => {
                    directory::assign(db.connection_mut(), user.trim(), household.trim(), &by, now)
                        .map(|_| ())
                        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))
                }
                _ => Err(ApiError(
                    StatusCode::BAD_REQUEST,
                    "op: \"add\" or \"assign\"".into(),
                )),
            })
            .await
            .ok_or_else(db_failed)??;
            web.months.clear();
            wake(&web);
            Ok("households")
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// JSON.

/// `GET /api/v1/budget`: the viewer's limits now, the budgets they see, the costs.
pub async fn api_get(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let r = async {
        let (web, viewer) = signin::signed_in(&state, &headers).await?;
        let loaded = load(&web).await?;
        let p = published(&web);
        let own_household = own_household(&viewer, &loaded.listing);
        let visible = |s: &Scope| match s {
            Scope::Household(h) => {
                viewer.role == Role::ServerAdmin || own_household.as_deref() == Some(h.as_str())
            }
            Scope::Member(u) => *u == viewer.user_id || may_set(&viewer, s),
        };
        let budgets: Vec<_> = loaded
            .budgets
            .iter()
            .filter(|(s, _)| visible(s))
            .map(|(s, b)| json!({"scope": s, "budget": b, "editable": may_set(&viewer, s)}))
            .collect();
        Ok::<_, ApiError>(json!({
            "assessed": p.month_start_ms.is_some(),
            "limits": p.members.get(&viewer.user_id),
            "budgets": budgets,
            "costs": {
                "tariff_per_kwh": loaded.tariff,
                "currency": loaded.currency,
                "supplier": loaded.costs.supplier,
                "fixed_costs": loaded.costs.fixed_costs,
            },
            "top_ups": own_household
                .as_ref()
                .filter(|_| viewer.role != Role::ServerAdmin)
                .map(|h| json!({h.clone(): loaded.top_ups.get(h)}))
                .unwrap_or_else(|| json!(loaded.top_ups)),
        }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetBody {
    pub scope: String,
    pub id: String,
    pub budget: Budget,
}

/// `POST /api/v1/budget {"scope", "id", "budget": {…}}` → `{"changed": bool}`.
pub async fn api_post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        let b: SetBody = parse(&body)?;
        let scope = scope_of(Some(&b.scope), Some(&b.id))?;
        let changed = set(&web, &viewer, scope, b.budget).await?;
        Ok::<_, ApiError>(json!({ "changed": changed }))
    }
    .await;
    match r {
        Ok(v) => no_store(Json(v).into_response()),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpBody {
    pub household: String,
    pub amount: f64,
    pub method: String,
    #[serde(default)]
    pub note: String,
}

/// `POST /api/v1/budget/topup {"household", "amount", "method", "note"}` → `{"id"}`.
pub async fn api_topup(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let r = async {
        let (web, viewer) = signed_in_csrf(&state, &headers).await?;
        let b: TopUpBody = parse(&body)?;
        let method = method_of(Some(&b.method))?;
        let id = top_up(&web, &viewer, b.household, b.amount, method, b.note).await?;
        Ok::<_, ApiError>(json!({ "id": id }))
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
    fn a_household_admin_may_set_their_household_and_its_members_only() {
        let v = Viewer::for_test(
            "@ha:x",
            Role::HouseholdAdmin,
            Some(("mueller".into(), vec!["@ha:x".into(), "@kid:x".into()])),
        );
        assert!(may_set(&v, &Scope::Household("mueller".into())));
        assert!(may_set(&v, &Scope::Member("@kid:x".into())));
        assert!(!may_set(&v, &Scope::Household("schmidt".into())));
        assert!(!may_set(&v, &Scope::Member("@other:x".into())));
        let m = Viewer::for_test("@kid:x", Role::Member, None);
        assert!(!may_set(&m, &Scope::Member("@kid:x".into())));
        let a = Viewer::for_test("@admin:x", Role::ServerAdmin, None);
        assert!(may_set(&a, &Scope::Household("schmidt".into())));
    }

    #[test]
    fn forms_read_german_and_english_numbers_and_empty_means_no_limit() {
        let f = BudgetForm {
            csrf: None,
            scope: Some("household".into()),
            id: Some("mueller".into()),
            energy_kwh: Some("12,5".into()),
            money: Some("".into()),
            stored_gib: Some("0.5".into()),
            upload_gib: None,
            throttle_burst: Some("3".into()),
            prepaid: Some("on".into()),
        };
        let (s, b) = f.budget().unwrap();
        assert_eq!(s, Scope::Household("mueller".into()));
        assert_eq!(b.energy_wh, Some(12_500.0));
        assert_eq!(b.money, None);
        assert_eq!(b.media_stored_bytes, Some(1 << 29));
        assert_eq!(b.limited_burst, 3);
        assert!(b.prepaid);
        let bad = BudgetForm {
            energy_kwh: Some("viel".into()),
            ..f
        };
        let e = bad.budget().unwrap_err();
        assert!(e.1.starts_with("energy_kwh:"), "{}", e.1);
    }

    #[test]
    fn fixed_costs_are_read_line_by_line_and_a_bad_line_is_named() {
        let rows = fixed_costs("Domain; 12; year\n\nSD-Karte; 1,50; Monat\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].per, CostPer::Month);
        assert_eq!(rows[1].amount, 1.5);
        let e = fixed_costs("Domain; 12; year\nStrom 5 month").unwrap_err();
        assert!(e.1.contains("line 2"), "{}", e.1);
    }
}
