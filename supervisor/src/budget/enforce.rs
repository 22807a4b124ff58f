//! The budgets' task: every [`EVERY`] (and at once when a budget, a top-up or the costs change
//! on the page) it reads the month so far, assesses every member ([`super::assess`]),
//! publishes the limits the Synapse module asks for ([`super::socket`]), and tells members in
//! their notices room, in the language they chose on the page (both when unknown):
//! - once a month per budget kind at 80 % and at 100 % (a jump straight past 80 % sends the
//!   100 % notice only), and
//! - when their limits lift (the month turned, a top-up, a larger budget).
//!
//! What it sent is kept in `budget_notice` and who is throttled in `budget_throttle`, so a
//! restart neither repeats a notice nor misses a lift. A notice that fails (Synapse down) is
//! tried again at the next pass.

use super::assess::{self, Inputs, Kind, Limits, MemberUse, Prepaid};
use super::socket::SharedLimits;
use super::{Budget, BudgetError, Scope};
use crate::accountant::members::MemberSource;
use crate::accounting::directory;
use crate::accounting::statement::Statement;
use crate::config::AccountingConfig;
use crate::health::probe::Synapse;
use crate::http::i18n::Lang;
use crate::storage::Storage;
use rusqlite::{params, Connection};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the budgets are assessed without a change on the page. The month so far's
/// statement is the cost of a pass (about as much as the page's statement, which it caches
/// for a minute); limits follow use within this much.
pub const EVERY: Duration = Duration::from_secs(120);

/// What a pass needs beyond the database.
pub struct Enforcer {
    pub db: PathBuf,
    pub members: Arc<dyn MemberSource>,
    /// The file's `[accounting]`; the page's costs go over it ([`super::effective`]).
    pub accounting: AccountingConfig,
    pub tariff_in_file: bool,
    pub synapse: Synapse,
    pub shared: SharedLimits,
    /// The server's name file: the page that explains a member's budget is
    /// `https://<name>/budget`, the link in the module's `M_USER_LIMIT_EXCEEDED` answer.
    pub name_file: Option<PathBuf>,
}

/// What one pass read from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub month: String,
    pub month_start_s: i64,
    pub currency: String,
    pub uses: Vec<MemberUse>,
    pub budgets: Vec<(Scope, Budget)>,
    pub money_counts: bool,
    pub prepaid: BTreeMap<String, Prepaid>,
    /// Members throttled at the last pass, and at what rate.
    pub throttled: BTreeMap<String, u32>,
    /// (user, kind, level) notices sent this month.
    pub sent: BTreeSet<(String, String, u8)>,
    /// Current members and the page language they chose.
    pub current: BTreeMap<String, Option<Lang>>,
}

fn month_label_of(s: i64) -> Option<(String, i64)> {
    crate::storage::month_of(s).map(|(l, start, _)| (l, start))
}

/// Read what a pass needs at `now_s`. With no budget at all it stops early: no statement is
/// computed for nothing.
pub fn read(
    storage: &Storage,
    members: &dyn MemberSource,
    file: &AccountingConfig,
    tariff_in_file: bool,
    now_s: i64,
) -> Result<Snapshot, BudgetError> {
    let conn = storage.connection();
    let (month, month_start_s) =
        month_label_of(now_s).ok_or_else(|| super::invalid("now", "out of range"))?;
    let (config, money_counts) = super::effective(conn, file, tariff_in_file)?;
    let budgets = super::all(conn)?;
    let current = directory::current_languages(conn)
        .map_err(|e| super::invalid("directory", e.to_string()))?
        .into_iter()
        .map(|(u, l)| (u, l.as_deref().and_then(Lang::from_code)))
        .collect();
    let throttled = throttled(conn)?;
    let sent = sent(conn, &month)?;
    let mut snap = Snapshot {
        month,
        month_start_s,
        currency: config.currency.clone(),
        uses: Vec::new(),
        budgets,
        money_counts,
        prepaid: BTreeMap::new(),
        throttled,
        sent,
        current,
    };
    if snap.budgets.is_empty() {
        return Ok(snap);
    }
    let so_far = crate::accountant::close::month_so_far(storage, now_s, members, &config)
        .map_err(|e| super::invalid("statement", e.to_string()))?
        .statement;
    let stored =
        directory::media_bytes_now(conn).map_err(|e| super::invalid("directory", e.to_string()))?;
    // Every current member, with the household the directory gives them; the month's
    // figures where the statement has them (a member with no minutes yet used nothing).
    let listing = directory::list(conn).map_err(|e| super::invalid("directory", e.to_string()))?;
    let mut household_of: BTreeMap<String, Option<String>> = BTreeMap::new();
    for h in &listing.households {
        for m in h.members.iter().filter(|m| m.left_s.is_none()) {
            household_of.insert(m.user_id.clone(), Some(h.id.clone()));
        }
    }
    for m in listing.unassigned.iter().filter(|m| m.left_s.is_none()) {
        household_of.insert(m.user_id.clone(), None);
    }
    snap.uses = household_of
        .into_iter()
        .map(|(user_id, household)| {
            let line = so_far.members.iter().find(|m| m.user_id == user_id);
            MemberUse {
                energy_wh: line.map_or(0.0, |m| m.total_wh),
                cost: line.map_or(0.0, |m| m.cost),
                stored_bytes: stored.get(&user_id).copied().unwrap_or(0),
                uploaded_bytes: None,
                user_id,
                household,
            }
        })
        .collect();
    for (scope, b) in &snap.budgets {
        if let (Scope::Household(h), true) = (scope, b.prepaid) {
            let p = prepaid(storage, h, &snap.month, &so_far)?;
            snap.prepaid.insert(h.clone(), p);
        }
    }
    Ok(snap)
}

/// A prepaid household's account: its top-ups, and its statements' cost from the month of
/// the first top-up through the month so far.
fn prepaid(
    storage: &Storage,
    household: &str,
    month: &str,
    so_far: &Statement,
) -> Result<Prepaid, BudgetError> {
    let top_ups = super::top_ups(storage.connection(), household)?;
    let paid = top_ups.iter().map(|t| t.amount).sum();
    let cost_in = |s: &Statement| {
        s.households
            .iter()
            .filter(|h| h.id == household)
            .map(|h| h.cost)
            .sum::<f64>()
    };
    let mut spent = cost_in(so_far);
    if let Some((first, _)) = top_ups.first().and_then(|t| month_label_of(t.at_s)) {
        let mut m = first;
        while m.as_str() < month {
            if let Some(stored) = storage
                .stored_statement(&m)
                .map_err(|e| super::invalid("statement", e.to_string()))?
            {
                if let Ok(s) = serde_json::from_str::<Statement>(&stored.json) {
                    spent += cost_in(&s);
                }
            }
            m = next_month(&m);
        }
    }
    Ok(Prepaid { paid, spent })
}

fn next_month(m: &str) -> String {
    let (y, mo) = m.split_once('-').unwrap_or(("9999", "12"));
    let (y, mo): (i32, u32) = (y.parse().unwrap_or(9999), mo.parse().unwrap_or(12));
    if mo >= 12 {
        format!("{:04}-01", y + 1)
    } else {
        format!("{y:04}-{:02}", mo + 1)
    }
}

fn throttled(conn: &Connection) -> Result<BTreeMap<String, u32>, BudgetError> {
    let mut st = conn.prepare("SELECT user_id, burst FROM budget_throttle")?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn sent(conn: &Connection, month: &str) -> Result<BTreeSet<(String, String, u8)>, BudgetError> {
    let mut st = conn.prepare("SELECT user_id, kind, level FROM budget_notice WHERE month = ?1")?;
    let rows = st.query_map([month], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a pass does after assessing (pure, so the decisions are tested without Synapse).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Notices to send: the member, the text, and the rows to note once it is sent.
    pub notices: Vec<Notice>,
    /// Throttles to note (new or another rate).
    pub throttle: Vec<(String, u32)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub user_id: String,
    pub body: String,
    /// (kind, level) rows for `budget_notice`; empty for a lift.
    pub levels: Vec<(String, u8)>,
    /// A lift: the `budget_throttle` row goes once this is sent.
    pub lifts: bool,
}

/// The notices and throttle changes that follow from `limits` after `snap`.
pub fn plan(snap: &Snapshot, limits: &[Limits]) -> Plan {
    let mut out = Plan {
        notices: Vec::new(),
        throttle: Vec::new(),
    };
    for l in limits {
        let Some(lang) = snap.current.get(&l.user_id) else {
            continue;
        };
        // The highest level of each kind (a household and a member budget of one kind: the
        // one further along speaks).
        let mut by_kind: BTreeMap<Kind, &assess::Standing> = BTreeMap::new();
        for s in &l.standings {
            let e = by_kind.entry(s.kind).or_insert(s);
            if s.level > e.level {
                *e = s;
            }
        }
        for (kind, s) in by_kind {
            let new: Vec<u8> = [80u8, 100]
                .into_iter()
                .filter(|lvl| *lvl <= s.level)
                .filter(|lvl| {
                    !snap
                        .sent
                        .contains(&(l.user_id.clone(), kind.as_str().to_string(), *lvl))
                })
                .collect();
            let Some(&top) = new.last() else { continue };
            out.notices.push(Notice {
                user_id: l.user_id.clone(),
                body: text::reached(*lang, s, top, l, &snap.currency),
                levels: new
                    .into_iter()
                    .map(|lvl| (kind.as_str().to_string(), lvl))
                    .collect(),
                lifts: false,
            });
        }
        if let Some(r) = l.throttle_burst {
            if snap.throttled.get(&l.user_id) != Some(&r) {
                out.throttle.push((l.user_id.clone(), r));
            }
        }
    }
    // Lifts: throttled at the last pass, not now (the month turned, a top-up, a new budget).
    for user in snap.throttled.keys() {
        let still = limits
            .iter()
            .any(|l| &l.user_id == user && l.throttle_burst.is_some());
        if !still {
            let lang = snap.current.get(user).copied().flatten();
            out.notices.push(Notice {
                user_id: user.clone(),
                body: text::lifted(lang),
                levels: Vec::new(),
                lifts: true,
            });
        }
    }
    out
}

/// One pass at `now_s`: read, assess, publish, then notices. Returns how many notices went.
pub async fn tick(e: &Enforcer, now_s: i64) -> Result<usize, BudgetError> {
    let (db, members, file, in_file) = (
        e.db.clone(),
        e.members.clone(),
        e.accounting.clone(),
        e.tariff_in_file,
    );
    let snap = tokio::task::spawn_blocking(move || {
        let storage = Storage::open(&db).map_err(|e| super::invalid("database", e.to_string()))?;
        read(&storage, members.as_ref(), &file, in_file, now_s)
    })
    .await
    .map_err(|e| super::invalid("task", e.to_string()))??;
    let limits = assess::assess(&Inputs {
        members: &snap.uses,
        budgets: &snap.budgets,
        money_counts: snap.money_counts,
        prepaid: &snap.prepaid,
    });
    {
        let mut p = e.shared.write().unwrap_or_else(|p| p.into_inner());
        p.month_start_ms = Some(snap.month_start_s * 1000);
        p.info_uri = e
            .name_file
            .as_deref()
            .and_then(crate::name::chosen)
            .map(|n| format!("https://{n}/budget"));
        p.members = limits
            .iter()
            .map(|l| (l.user_id.clone(), l.clone()))
            .collect::<HashMap<_, _>>();
    }
    let plan = plan(&snap, &limits);
    // Synapse first: a throttle is noted only once Synapse holds it, a lift only once Synapse
    // let go (and only then is the member told). Each call is an audit entry about the member.
    let mut calls = Vec::new();
    let mut throttled = Vec::new();
    for (user, burst) in &plan.throttle {
        match e.synapse.override_ratelimit(user, Some(*burst)).await {
            Ok(status) => {
                calls.push(call_entry(user, "POST", status));
                if (200..300).contains(&status) {
                    throttled.push((user.clone(), *burst));
                } else {
                    tracing::warn!(%user, "Synapse refused to slow the messages: HTTP {status}");
                }
            }
            Err(err) => tracing::warn!(%user, "messages not slowed, next pass tries again: {err}"),
        }
    }
    let mut sent = Vec::new();
    for n in &plan.notices {
        if n.lifts {
            match e.synapse.override_ratelimit(&n.user_id, None).await {
                // 404: Synapse has no override (someone removed it): lifted all the same.
                Ok(status) => {
                    calls.push(call_entry(&n.user_id, "DELETE", status));
                    if !((200..300).contains(&status) || status == 404) {
                        tracing::warn!(user = %n.user_id, "Synapse kept the slowed messages: HTTP {status}");
                        continue;
                    }
                }
                Err(err) => {
                    tracing::warn!(user = %n.user_id, "messages not restored, next pass tries again: {err}");
                    continue;
                }
            }
        }
        match e.synapse.notify(&n.user_id, &n.body).await {
            Ok(()) => sent.push(n.clone()),
            // A lift whose notice failed is still a lift: the row goes, the words do not.
            Err(_) if n.lifts => sent.push(Notice {
                levels: Vec::new(),
                ..n.clone()
            }),
            Err(err) => {
                tracing::warn!(user = %n.user_id, "budget notice not sent, next pass tries again: {err}")
            }
        }
    }
    let count = sent.len();
    let (db, month) = (e.db.clone(), snap.month.clone());
    tokio::task::spawn_blocking(move || -> Result<(), BudgetError> {
        let mut conn = crate::storage::open_connection(&db)
            .map_err(|e| super::invalid("database", e.to_string()))?;
        let tx = conn.transaction()?;
        for c in &calls {
            crate::audit::append(&tx, c)?;
        }
        for n in &sent {
            for (kind, level) in &n.levels {
                tx.execute(
                    "INSERT OR IGNORE INTO budget_notice (month, user_id, kind, level, sent_s)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![month, n.user_id, kind, level, now_s],
                )?;
            }
            if n.lifts {
                tx.execute(
                    "DELETE FROM budget_throttle WHERE user_id = ?1",
                    [&n.user_id],
                )?;
            }
        }
        for (user, burst) in &throttled {
            tx.execute(
                "INSERT INTO budget_throttle (user_id, burst, since_s) VALUES (?1, ?2, ?3)
                 ON CONFLICT (user_id) DO UPDATE SET burst = excluded.burst",
                params![user, burst, now_s],
            )?;
        }
        tx.commit()?;
        Ok(())
    })
    .await
    .map_err(|e| super::invalid("task", e.to_string()))??;
    Ok(count)
}

/// The `admin_api_call` entry for one use of the override.
fn call_entry(user: &str, method: &str, status: u16) -> crate::audit::NewEntry {
    crate::audit::NewEntry::new(
        crate::audit::Actor::System,
        crate::audit::Action::AdminApiCall,
    )
    .about(user)
    .detail(
        "endpoint",
        format!(
            "{method} {}",
            crate::health::probe::endpoint::OVERRIDE_RATELIMIT
        ),
    )
    .detail("status", status)
}

/// Assess every [`EVERY`] and whenever `wake` is notified, until cancelled.
pub async fn run(e: Enforcer, wake: Arc<tokio::sync::Notify>, cancel: CancellationToken) {
    let mut t = tokio::time::interval(EVERY);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = t.tick() => {}
            _ = wake.notified() => {}
        }
        match tick(&e, crate::clock::wall_secs_now()).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(notices = n, "budget notices sent");
                }
                failing = false;
            }
            Err(err) => {
                if !failing {
                    tracing::error!("assessing the budgets failed, trying again: {err}");
                }
                failing = true;
            }
        }
    }
}

/// The notices' words (a Matrix notice is plain text; both languages when the member's is not
/// known).
pub mod text {
    use super::super::assess::{Kind, Limits, Standing};
    use super::super::Scope;
    use crate::http::i18n::Lang;

    /// An amount of a budget's kind in words: kWh, money, GiB (the page says it the same way).
    pub fn amount(lang: Lang, kind: Kind, v: f64, currency: &str) -> String {
        match kind {
            Kind::Energy => format!("{} kWh", lang.num(v / 1000.0, 2)),
            Kind::Money | Kind::Prepaid => lang.money(v, currency),
            Kind::Stored | Kind::Uploaded => {
                format!("{} GiB", lang.num(v / f64::from(1u32 << 30), 2))
            }
        }
    }

    fn one(lang: Lang, s: &Standing, level: u8, l: &Limits, currency: &str) -> String {
        let (used, limit) = (
            amount(lang, s.kind, s.used, currency),
            amount(lang, s.kind, s.limit, currency),
        );
        let whose = match (&s.scope, lang) {
            (Scope::Household(_), Lang::En) => "your household's",
            (Scope::Household(_), Lang::De) => "des Haushalts",
            (Scope::Member(_), Lang::En) => "your",
            (Scope::Member(_), Lang::De) => "dein",
        };
        let what = match (s.kind, lang) {
            (Kind::Energy, Lang::En) => "energy budget this month",
            (Kind::Energy, Lang::De) => "Energie-Budget diesen Monat",
            (Kind::Money, Lang::En) => "cost budget this month",
            (Kind::Money, Lang::De) => "Kosten-Budget diesen Monat",
            (Kind::Prepaid, Lang::En) => "prepaid credit",
            (Kind::Prepaid, Lang::De) => "Guthaben",
            (Kind::Stored, Lang::En) => "storage for pictures and files",
            (Kind::Stored, Lang::De) => "Speicher für Bilder und Dateien",
            (Kind::Uploaded, Lang::En) => "uploads this month",
            (Kind::Uploaded, Lang::De) => "Uploads diesen Monat",
        };
        let head = match (lang, &s.scope) {
            (Lang::En, _) => format!("hearth: {used} of {limit} used ({whose} {what})."),
            (Lang::De, Scope::Household(_)) => {
                format!("hearth: {used} von {limit} verbraucht ({what} {whose}).")
            }
            (Lang::De, Scope::Member(_)) => {
                format!("hearth: {used} von {limit} verbraucht ({whose} {what}).")
            }
        };
        let then = match (level, s.kind, lang) {
            (80, _, Lang::En) => "Nothing is limited yet.".to_string(),
            (80, _, Lang::De) => "Noch ist nichts begrenzt.".to_string(),
            (_, Kind::Stored, Lang::En) => {
                "New pictures and files that do not fit are refused; everything stored stays."
                    .to_string()
            }
            (_, Kind::Stored, Lang::De) => {
                "Neue Bilder und Dateien, die nicht mehr passen, werden abgelehnt; alles Gespeicherte bleibt."
                    .to_string()
            }
            (_, Kind::Uploaded, Lang::En) => {
                "Uploads wait for next month; messages go on as usual.".to_string()
            }
            (_, Kind::Uploaded, Lang::De) => {
                "Uploads gehen erst nächsten Monat wieder; Nachrichten gehen weiter wie immer."
                    .to_string()
            }
            (_, _, Lang::En) => format!(
                "Until the month turns or the budget grows, Synapse slows your messages ({} in a row, then one a second) and takes no pictures or files. Nothing is deleted.",
                l.throttle_burst.unwrap_or(0)
            ),
            (_, _, Lang::De) => format!(
                "Bis der Monat wechselt oder das Budget wächst, bremst Synapse deine Nachrichten ({} hintereinander, dann eine pro Sekunde) und nimmt keine Bilder oder Dateien an. Nichts wird gelöscht.",
                l.throttle_burst.unwrap_or(0)
            ),
        };
        let then = if s.kind == Kind::Prepaid && level == 100 {
            match lang {
                Lang::En => format!(
                    "Until a top-up, Synapse slows your messages ({} in a row, then one a second) and takes no pictures or files. Nothing is deleted.",
                    l.throttle_burst.unwrap_or(0)
                ),
                Lang::De => format!(
                    "Bis zur nächsten Einzahlung bremst Synapse deine Nachrichten ({} hintereinander, dann eine pro Sekunde) und nimmt keine Bilder oder Dateien an. Nichts wird gelöscht.",
                    l.throttle_burst.unwrap_or(0)
                ),
            }
        } else {
            then
        };
        format!("{head} {then}")
    }

    /// 80 % or 100 % of a budget.
    pub fn reached(
        lang: Option<Lang>,
        s: &Standing,
        level: u8,
        l: &Limits,
        currency: &str,
    ) -> String {
        match lang {
            Some(lang) => one(lang, s, level, l, currency),
            None => format!(
                "{}\n\n{}",
                one(Lang::De, s, level, l, currency),
                one(Lang::En, s, level, l, currency)
            ),
        }
    }

    /// The limits are gone.
    pub fn lifted(lang: Option<Lang>) -> String {
        const DE: &str = "hearth: Deine Begrenzung ist aufgehoben: Nachrichten, Bilder und Dateien gehen wieder wie gewohnt.";
        const EN: &str =
            "hearth: Your limits are lifted: messages, pictures and files work as usual again.";
        match lang {
            Some(Lang::De) => DE.into(),
            Some(Lang::En) => EN.into(),
            None => format!("{DE}\n\n{EN}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::assess::Standing;

    fn snap(current: &[(&str, Option<Lang>)]) -> Snapshot {
        Snapshot {
            month: "2026-12".into(),
            month_start_s: 0,
            currency: "EUR".into(),
            uses: vec![],
            budgets: vec![],
            money_counts: true,
            prepaid: BTreeMap::new(),
            throttled: BTreeMap::new(),
            sent: BTreeSet::new(),
            current: current.iter().map(|(u, l)| (u.to_string(), *l)).collect(),
        }
    }

    fn limits(user: &str, kind: Kind, level: u8, rate: Option<u32>) -> Limits {
        Limits {
            user_id: user.into(),
            throttle_burst: rate,
            blocked: rate.is_some(),
            uploaded_max_bytes: None,
            stored_remaining_bytes: None,
            standings: vec![Standing {
                kind,
                scope: Scope::Member(user.into()),
                used: 1.0,
                limit: 1.0,
                level,
            }],
        }
    }

    #[test]
    fn each_level_is_told_once_a_month_and_a_jump_past_80_tells_100_only() {
        let mut s = snap(&[("@a:x", Some(Lang::De))]);
        let l = [limits("@a:x", Kind::Energy, 100, Some(2))];
        let p = plan(&s, &l);
        assert_eq!(p.notices.len(), 1);
        assert!(
            p.notices[0].body.contains("(2 hintereinander"),
            "{}",
            p.notices[0].body
        );
        assert!(
            !p.notices[0].body.contains("Your"),
            "German only: {}",
            p.notices[0].body
        );
        assert_eq!(
            p.notices[0].levels,
            vec![("energy".into(), 80), ("energy".into(), 100)]
        );
        assert_eq!(p.throttle, vec![("@a:x".to_string(), 2)]);
        // Sent and noted: the next pass says nothing.
        s.sent.insert(("@a:x".into(), "energy".into(), 80));
        s.sent.insert(("@a:x".into(), "energy".into(), 100));
        s.throttled.insert("@a:x".into(), 2);
        let p = plan(&s, &l);
        assert!(p.notices.is_empty() && p.throttle.is_empty(), "{p:?}");
    }

    #[test]
    fn a_lift_is_told_when_a_throttle_ends_and_unknown_languages_get_both() {
        let mut s = snap(&[("@a:x", None)]);
        s.throttled.insert("@a:x".into(), 2);
        let p = plan(&s, &[limits("@a:x", Kind::Energy, 0, None)]);
        assert_eq!(p.notices.len(), 1);
        assert!(p.notices[0].lifts);
        assert!(p.notices[0].body.contains("aufgehoben") && p.notices[0].body.contains("lifted"));
    }

    #[test]
    fn former_members_get_no_notices() {
        let s = snap(&[]);
        assert!(plan(&s, &[limits("@gone:x", Kind::Stored, 100, None)])
            .notices
            .is_empty());
    }

    #[test]
    fn months_follow_each_other() {
        assert_eq!(next_month("2026-11"), "2026-12");
        assert_eq!(next_month("2026-12"), "2027-01");
    }
}
