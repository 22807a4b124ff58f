//! Budgets and limits a household chooses (issue 17; the seed's "den eigenen Verbrauch
//! technisch begrenzen", "nur so viel Leistung wie bezahlt wurde"), the prepaid top-ups a
//! server admin records, and the costs set on the page (tariff, supplier, fixed costs).
//!
//! - `mod.rs` (this file): the tables of migration 9 (`budget`, `topup`, `cost_setting`), each
//!   change audited in the same transaction (`limit_change` for budgets and top-ups,
//!   `cost_change` for the costs).
//! - `assess.rs`: pure — a month's figures and the budgets → each member's limits and the
//!   budgets' levels (80 %, 100 %).
//! - `enforce.rs`: the task that assesses every minute, publishes the limits Synapse's module
//!   asks for, and sends the notices.
//! - `socket.rs`: the supervisor's side of `hearth_limits.py`, the Synapse module: a UNIX
//!   socket answering `GET /v1/limits/<user id>`.
//!
//! Nothing here deletes or deactivates anything: a used-up budget slows a member's messages and
//! stops their uploads through Synapse, and lifts at the month's turn or with a top-up.

pub mod assess;
pub mod enforce;
pub mod socket;

use crate::audit::{self, Action, NewEntry};
use crate::config::{AccountingConfig, CostPer, FixedCost};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("budget: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("budget: {0}")]
    Audit(#[from] audit::AuditError),
    /// A value a person entered: the field and what is wrong with it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no household {0:?}")]
    NoHousehold(String),
    #[error("{0} is not a member")]
    NoMember(String),
}

pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> BudgetError {
    BudgetError::Invalid {
        field,
        message: message.into(),
    }
}

/// Whose budget: a household's (all its members together) or one member's.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "scope", content = "id", rename_all = "lowercase")]
pub enum Scope {
    Household(String),
    Member(String),
}

impl Scope {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            Scope::Household(h) => ("household", h),
            Scope::Member(m) => ("member", m),
        }
    }
}

/// A used-up budget slows a member's messages through Synapse's per-user rate-limit override:
/// this many in a row, then one a second (the override takes whole messages per second, so
/// one a second is the slowest it can go). A member can always still say something ("I'm
/// fine, call me"); limits slow, never silence.
pub const MIN_BURST: u32 = 1;
pub const MAX_BURST: u32 = 60;
pub const DEFAULT_BURST: u32 = 3;
/// Upper bounds that catch a typo (a TiB of media, a MWh a month), not a family's real choice.
const MAX_BYTES: u64 = 1 << 40;
const MAX_ENERGY_WH: f64 = 1e6;
const MAX_MONEY: f64 = 1e6;

/// One budget. Each `None` sets no limit of its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Energy per calendar month (UTC), Wh (the statement's `total_wh`).
    pub energy_wh: Option<f64>,
    /// Cost per month in the statement's currency; counts only once a tariff is set.
    pub money: Option<f64>,
    /// Media kept in Synapse: the member's (or the household's together).
    pub media_stored_bytes: Option<u64>,
    /// Media each member may upload per calendar month (Synapse counts it).
    pub media_upload_bytes: Option<u64>,
    /// Once an energy, money or prepaid budget is used up: messages in a row, then one a
    /// second.
    pub limited_burst: u32,
    /// Household only: the budget is what was paid (top-ups), not a monthly amount.
    pub prepaid: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            energy_wh: None,
            money: None,
            media_stored_bytes: None,
            media_upload_bytes: None,
            limited_burst: DEFAULT_BURST,
            prepaid: false,
        }
    }
}

impl Budget {
    /// Every value in range, or the first field that is not.
    pub fn check(&self, scope: &Scope) -> Result<(), BudgetError> {
        let amount = |field, v: Option<f64>, max: f64| match v {
            Some(x) if !x.is_finite() || x < 0.0 => Err(invalid(field, "a number of 0 or more")),
            Some(x) if x > max => Err(invalid(field, format!("at most {max}"))),
            _ => Ok(()),
        };
        amount("energy_kwh", self.energy_wh, MAX_ENERGY_WH)?;
        amount("money", self.money, MAX_MONEY)?;
        for (field, v) in [
            ("media_stored_gib", self.media_stored_bytes),
            ("media_upload_gib", self.media_upload_bytes),
        ] {
            if v.is_some_and(|b| b > MAX_BYTES) {
                return Err(invalid(field, "at most 1024 GiB"));
            }
        }
        if !(MIN_BURST..=MAX_BURST).contains(&self.limited_burst) {
            return Err(invalid(
                "throttle_burst",
                format!("{MIN_BURST} to {MAX_BURST}"),
            ));
        }
        if self.prepaid && matches!(scope, Scope::Member(_)) {
            return Err(invalid("prepaid", "households pay, not single members"));
        }
        Ok(())
    }

    /// Sets no limit at all (the row can go).
    pub fn is_empty(&self) -> bool {
        self.energy_wh.is_none()
            && self.money.is_none()
            && self.media_stored_bytes.is_none()
            && self.media_upload_bytes.is_none()
            && !self.prepaid
    }
}

fn to_i64(b: Option<u64>) -> Option<i64> {
    b.map(|b| i64::try_from(b).unwrap_or(i64::MAX))
}

fn exists(conn: &Connection, scope: &Scope) -> Result<(), BudgetError> {
    let (sql, id) = match scope {
        Scope::Household(h) => ("SELECT 1 FROM household WHERE id = ?1", h),
        Scope::Member(m) => (
            "SELECT 1 FROM member WHERE user_id = ?1 AND left_s IS NULL",
            m,
        ),
    };
    if conn.query_row(sql, [id], |_| Ok(())).optional()?.is_none() {
        return Err(match scope {
            Scope::Household(h) => BudgetError::NoHousehold(h.clone()),
            Scope::Member(m) => BudgetError::NoMember(m.clone()),
        });
    }
    Ok(())
}

/// Set (or, with an empty budget, remove) `scope`'s budget, with its `limit_change` entry in
/// the same transaction. `Ok(false)`: it already was so (no entry).
pub fn set(
    conn: &mut Connection,
    scope: &Scope,
    budget: &Budget,
    by: NewEntry,
) -> Result<bool, BudgetError> {
    budget.check(scope)?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    exists(&tx, scope)?;
    if get(&tx, scope)?.as_ref() == Some(budget)
        || (budget.is_empty() && get(&tx, scope)?.is_none())
    {
        return Ok(false);
    }
    let (kind, id) = scope.parts();
    if budget.is_empty() {
        tx.execute(
            "DELETE FROM budget WHERE scope = ?1 AND subject = ?2",
            params![kind, id],
        )?;
    } else {
        tx.execute(
            "INSERT INTO budget (scope, subject, energy_wh, money, media_stored_bytes,
                                 media_upload_bytes, limited_burst, prepaid,
                                 set_by, set_s)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (scope, subject) DO UPDATE SET
               energy_wh = excluded.energy_wh, money = excluded.money,
               media_stored_bytes = excluded.media_stored_bytes,
               media_upload_bytes = excluded.media_upload_bytes,
               limited_burst = excluded.limited_burst,
               prepaid = excluded.prepaid, set_by = excluded.set_by, set_s = excluded.set_s",
            params![
                kind,
                id,
                budget.energy_wh,
                budget.money,
                to_i64(budget.media_stored_bytes),
                to_i64(budget.media_upload_bytes),
                budget.limited_burst,
                budget.prepaid,
                by.actor.as_str(),
                by.time.timestamp(),
            ],
        )?;
    }
    let mut entry = by
        .detail("op", if budget.is_empty() { "remove" } else { "set" })
        .detail("scope", kind)
        .detail(
            "budget",
            serde_json::to_value(budget).unwrap_or(serde_json::Value::Null),
        );
    entry = match scope {
        Scope::Household(h) => entry.detail("household", h.as_str()),
        Scope::Member(m) => entry.about(m),
    };
    audit::append(&tx, &entry)?;
    tx.commit()?;
    Ok(true)
}

fn row_budget(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Budget> {
    let bytes = |i| -> rusqlite::Result<Option<u64>> {
        Ok(r.get::<_, Option<i64>>(i)?
            .map(|b| u64::try_from(b).unwrap_or(0)))
    };
    Ok(Budget {
        energy_wh: r.get(at)?,
        money: r.get(at + 1)?,
        media_stored_bytes: bytes(at + 2)?,
        media_upload_bytes: bytes(at + 3)?,
        limited_burst: r.get(at + 4)?,
        prepaid: r.get(at + 5)?,
    })
}

const COLUMNS: &str = "energy_wh, money, media_stored_bytes, media_upload_bytes, \
                       limited_burst, prepaid";

/// `scope`'s budget, if it has one.
pub fn get(conn: &Connection, scope: &Scope) -> Result<Option<Budget>, BudgetError> {
    let (kind, id) = scope.parts();
    Ok(conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM budget WHERE scope = ?1 AND subject = ?2"),
            params![kind, id],
            |r| row_budget(r, 0),
        )
        .optional()?)
}

/// Every budget.
pub fn all(conn: &Connection) -> Result<Vec<(Scope, Budget)>, BudgetError> {
    let mut st = conn.prepare(&format!(
        "SELECT scope, subject, {COLUMNS} FROM budget ORDER BY scope, subject"
    ))?;
    let rows = st.query_map([], |r| {
        let scope: String = r.get(0)?;
        let id: String = r.get(1)?;
        let scope = if scope == "household" {
            Scope::Household(id)
        } else {
            Scope::Member(id)
        };
        Ok((scope, row_budget(r, 2)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How a top-up was paid: hearth takes no payments itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Cash,
    Transfer,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Cash => "cash",
            Method::Transfer => "transfer",
        }
    }

    pub fn parse(s: &str) -> Option<Method> {
        match s {
            "cash" => Some(Method::Cash),
            "transfer" => Some(Method::Transfer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopUp {
    pub id: i64,
    pub household: String,
    pub amount: f64,
    pub method: Method,
    pub note: String,
    pub by: String,
    pub at_s: i64,
}

/// Record money a household paid (a server admin, after it arrived), audited in the same
/// transaction.
pub fn top_up(
    conn: &mut Connection,
    household: &str,
    amount: f64,
    method: Method,
    note: &str,
    by: NewEntry,
) -> Result<i64, BudgetError> {
    if !amount.is_finite() || amount <= 0.0 || amount > MAX_MONEY {
        return Err(invalid(
            "amount",
            format!("more than 0, at most {MAX_MONEY}"),
        ));
    }
    let note = note.trim();
    if note.chars().count() > 200 || note.chars().any(char::is_control) {
        return Err(invalid("note", "one line of at most 200 characters"));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    exists(&tx, &Scope::Household(household.to_string()))?;
    tx.execute(
        "INSERT INTO topup (household, amount, method, note, by_user, at_s)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            household,
            amount,
            method.as_str(),
            note,
            by.actor.as_str(),
            by.time.timestamp()
        ],
    )?;
    let id = tx.last_insert_rowid();
    audit::append(
        &tx,
        &by.detail("op", "top_up")
            .detail("household", household)
            .detail("amount", amount)
            .detail("method", method.as_str()),
    )?;
    tx.commit()?;
    Ok(id)
}

/// A household's top-ups, oldest first.
pub fn top_ups(conn: &Connection, household: &str) -> Result<Vec<TopUp>, BudgetError> {
    let mut st = conn.prepare(
        "SELECT id, household, amount, method, note, by_user, at_s FROM topup
         WHERE household = ?1 ORDER BY at_s, id",
    )?;
    let rows = st.query_map([household], |r| {
        Ok(TopUp {
            id: r.get(0)?,
            household: r.get(1)?,
            amount: r.get(2)?,
            method: Method::parse(&r.get::<_, String>(3)?).unwrap_or(Method::Cash),
            note: r.get(4)?,
            by: r.get(5)?,
            at_s: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The costs set on the page. They win over the configuration file's `[accounting]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Costs {
    /// Currency units per kWh; `None`: nobody set one on the page.
    pub tariff_per_kwh: Option<f64>,
    pub supplier: Option<String>,
    pub fixed_costs: Vec<FixedCostRow>,
    pub set_by: Option<String>,
    pub set_s: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedCostRow {
    pub name: String,
    pub amount: f64,
    pub per: CostPer,
}

/// The costs as set on the page (all `None` when never set).
pub fn costs(conn: &Connection) -> Result<Costs, BudgetError> {
    let row = conn
        .query_row(
            "SELECT tariff_per_kwh, supplier, fixed_costs, set_by, set_s FROM cost_setting
             WHERE id = 1",
            [],
            |r| {
                Ok((
                    r.get::<_, Option<f64>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    Ok(match row {
        None => Costs::default(),
        Some((tariff, supplier, fixed, by, at)) => Costs {
            tariff_per_kwh: tariff,
            supplier,
            // Written by `set_costs` only; a row it cannot read counts as none.
            fixed_costs: serde_json::from_str(&fixed).unwrap_or_default(),
            set_by: Some(by),
            set_s: Some(at),
        },
    })
}

/// Set the costs (a server admin), audited as `cost_change` in the same transaction.
pub fn set_costs(conn: &mut Connection, costs: &Costs, by: NewEntry) -> Result<(), BudgetError> {
    match costs.tariff_per_kwh {
        Some(t) if !t.is_finite() || !(0.0..=10.0).contains(&t) => {
            return Err(invalid("tariff", "0 to 10 per kWh"));
        }
        _ => {}
    }
    if let Some(s) = &costs.supplier {
        report_wire::check_supplier(s).map_err(|m| invalid("supplier", m))?;
    }
    if costs.fixed_costs.len() > 20 {
        return Err(invalid("fixed_costs", "at most 20"));
    }
    for f in &costs.fixed_costs {
        if f.name.trim().is_empty() || f.name.chars().count() > 80 {
            return Err(invalid("fixed_costs.name", "1 to 80 characters"));
        }
        if !f.amount.is_finite() || f.amount < 0.0 || f.amount > MAX_MONEY {
            return Err(invalid("fixed_costs.amount", "a number of 0 or more"));
        }
    }
    let fixed = serde_json::to_string(&costs.fixed_costs).unwrap_or_else(|_| "[]".into());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO cost_setting (id, tariff_per_kwh, supplier, fixed_costs, set_by, set_s)
         VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET tariff_per_kwh = excluded.tariff_per_kwh,
           supplier = excluded.supplier, fixed_costs = excluded.fixed_costs,
           set_by = excluded.set_by, set_s = excluded.set_s",
        params![
            costs.tariff_per_kwh,
            costs.supplier,
            fixed,
            by.actor.as_str(),
            by.time.timestamp()
        ],
    )?;
    let e = NewEntry {
        action: Action::CostChange,
        ..by
    }
    .detail("tariff_per_kwh", costs.tariff_per_kwh)
    .detail("supplier", costs.supplier.clone())
    .detail(
        "fixed_costs",
        serde_json::from_str::<serde_json::Value>(&fixed).unwrap_or_default(),
    );
    audit::append(&tx, &e)?;
    tx.commit()?;
    Ok(())
}

/// The accounting the statements use: the file's `[accounting]` with the page's costs over it.
/// The second value: is there a tariff a person chose (on the page, or in the file)? Until
/// there is, nothing is shown as a cost and money budgets do not count.
pub fn effective(
    conn: &Connection,
    file: &AccountingConfig,
    file_tariff_set: bool,
) -> Result<(AccountingConfig, bool), BudgetError> {
    let c = costs(conn)?;
    let mut out = file.clone();
    if c.set_s.is_some() {
        out.fixed_costs = c
            .fixed_costs
            .iter()
            .map(|f| FixedCost {
                name: f.name.clone(),
                amount: f.amount,
                per: f.per,
            })
            .collect();
    }
    match c.tariff_per_kwh {
        Some(t) => {
            out.tariff_per_kwh = t;
            Ok((out, true))
        }
        None => Ok((out, file_tariff_set)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::directory::{self, ChangedBy};
    use crate::audit::Actor;

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hearth.db");
        drop(crate::storage::Storage::open(&path).unwrap());
        let mut conn = crate::storage::open_connection(&path).unwrap();
        directory::add_household(
            &mut conn,
            "mueller",
            "Familie Müller",
            &ChangedBy::cli(),
            chrono::Utc::now(),
        )
        .unwrap();
        (dir, conn)
    }

    fn by() -> NewEntry {
        NewEntry::new(
            Actor::User("@admin:example.org".into()),
            Action::LimitChange,
        )
    }

    #[test]
    fn a_budget_is_set_audited_changed_and_removed() {
        let (_d, mut conn) = db();
        let h = Scope::Household("mueller".into());
        let b = Budget {
            energy_wh: Some(5000.0),
            ..Budget::default()
        };
        assert!(set(&mut conn, &h, &b, by()).unwrap());
        assert!(!set(&mut conn, &h, &b, by()).unwrap(), "the same again");
        assert_eq!(get(&conn, &h).unwrap(), Some(b));
        assert!(set(&mut conn, &h, &Budget::default(), by()).unwrap());
        assert_eq!(get(&conn, &h).unwrap(), None);
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM audit_log WHERE action = 'limit_change'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn bad_budgets_name_their_field() {
        let (_d, mut conn) = db();
        let h = Scope::Household("mueller".into());
        for (b, field) in [
            (
                Budget {
                    energy_wh: Some(-1.0),
                    ..Budget::default()
                },
                "energy_kwh",
            ),
            (
                Budget {
                    money: Some(f64::NAN),
                    ..Budget::default()
                },
                "money",
            ),
            (
                Budget {
                    limited_burst: 0,
                    ..Budget::default()
                },
                "throttle_burst",
            ),
        ] {
            match set(&mut conn, &h, &b, by()) {
                Err(BudgetError::Invalid { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let prepaid_member = Budget {
            prepaid: true,
            ..Budget::default()
        };
        assert!(matches!(
            prepaid_member.check(&Scope::Member("@a:x".into())),
            Err(BudgetError::Invalid {
                field: "prepaid",
                ..
            })
        ));
        assert!(matches!(
            set(
                &mut conn,
                &Scope::Household("nobody".into()),
                &Budget {
                    energy_wh: Some(1.0),
                    ..Budget::default()
                },
                by()
            ),
            Err(BudgetError::NoHousehold(_))
        ));
    }

    #[test]
    fn top_ups_add_up_and_are_audited() {
        let (_d, mut conn) = db();
        top_up(&mut conn, "mueller", 10.0, Method::Cash, "Oma", by()).unwrap();
        top_up(&mut conn, "mueller", 5.5, Method::Transfer, "", by()).unwrap();
        assert!(matches!(
            top_up(&mut conn, "mueller", 0.0, Method::Cash, "", by()),
            Err(BudgetError::Invalid {
                field: "amount",
                ..
            })
        ));
        let t = top_ups(&conn, "mueller").unwrap();
        assert_eq!(t.iter().map(|t| t.amount).sum::<f64>(), 15.5);
        assert_eq!(t[0].method, Method::Cash);
    }

    #[test]
    fn the_pages_tariff_wins_over_the_files_and_counts_as_chosen() {
        let (_d, mut conn) = db();
        let file = AccountingConfig::default();
        let (c, chosen) = effective(&conn, &file, false).unwrap();
        assert!(!chosen, "the shipped placeholder is nobody's choice");
        assert_eq!(c.tariff_per_kwh, file.tariff_per_kwh);
        let costs = Costs {
            tariff_per_kwh: Some(0.42),
            supplier: Some("Stadtwerke Musterstadt".into()),
            fixed_costs: vec![FixedCostRow {
                name: "Domain".into(),
                amount: 12.0,
                per: CostPer::Year,
            }],
            ..Costs::default()
        };
        set_costs(&mut conn, &costs, by()).unwrap();
        let (c, chosen) = effective(&conn, &file, false).unwrap();
        assert!(chosen);
        assert_eq!(c.tariff_per_kwh, 0.42);
        assert_eq!(c.fixed_costs.len(), 1);
        assert!(matches!(
            set_costs(
                &mut conn,
                &Costs {
                    tariff_per_kwh: Some(-1.0),
                    ..Costs::default()
                },
                by()
            ),
            Err(BudgetError::Invalid {
                field: "tariff",
                ..
            })
        ));
    }
}
