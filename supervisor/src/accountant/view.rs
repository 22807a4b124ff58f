//! Statements as the page shows them: a month (closed and frozen, or so far) with its days.
//!
//! The days are computed from the same stored inputs as the month, with the month's base load
//! (`base_watts` of the month's statement, so `auto` is not re-estimated per day): every term of
//! the model is a sum over minutes, so the days of a month add up to the month. Days of a closed
//! month whose minutes were pruned (`minute_retention_days`) are simply absent.

use super::close::{CloseError, Computed};
use super::members::MemberSource;
use crate::accounting::inputs::{self, Rows};
use crate::accounting::model::{InputError, MinuteInput, Period, StatementInputs};
use crate::accounting::statement::Statement;
use crate::config::{AccountingConfig, BaseWatts};
use crate::storage::Storage;
use std::collections::BTreeMap;

/// One UTC day of a month: measured energy and each member's total.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub measured_wh: f64,
    /// user id → total_wh (base + direct + shared).
    pub members: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonthView {
    pub statement: Statement,
    /// Closed and frozen (else: the month so far).
    pub closed: bool,
    pub days: Vec<Day>,
}

fn input_err(period: &Period, source: InputError) -> CloseError {
    CloseError::Input {
        period: period.label().to_string(),
        source,
    }
}

/// The month `month` as of `now_s`: its frozen statement when closed, else the month so far;
/// `None` for a month that has not begun.
pub fn month_view(
    storage: &Storage,
    month: &Period,
    now_s: i64,
    members: &dyn MemberSource,
    config: &AccountingConfig,
) -> Result<Option<MonthView>, CloseError> {
    if let Some(stored) = storage.stored_statement(month.label())? {
        let statement: Statement =
            serde_json::from_str(&stored.json).map_err(|e| CloseError::StoredJson {
                period: month.label().to_string(),
                message: e.to_string(),
            })?;
        let days = days_of(storage, month, members, config, statement.base_watts)?;
        return Ok(Some(MonthView {
            statement,
            closed: true,
            days,
        }));
    }
    if now_s < month.start_s() {
        return Ok(None);
    }
    let end = month.end_s().min(now_s.div_euclid(60) * 60 + 60);
    let so_far = Period::range(month.start_s(), end).map_err(|m| {
        input_err(
            month,
            InputError {
                minute: month.start_s().to_string(),
                message: m,
            },
        )
    })?;
    let Computed { mut statement, .. } =
        super::close::statement_of(storage, &so_far, members, config)?;
    let days = days_of(storage, &so_far, members, config, statement.base_watts)?;
    // The page names the month, not the minutes computed so far.
    statement.period = month.label().to_string();
    Ok(Some(MonthView {
        statement,
        closed: false,
        days,
    }))
}

/// Each UTC day of `period` with base load `base_watts`.
fn days_of(
    storage: &Storage,
    period: &Period,
    members: &dyn MemberSource,
    config: &AccountingConfig,
    base_watts: f64,
) -> Result<Vec<Day>, CloseError> {
    let people = members.members(period)?;
    let stored = storage.accounting_inputs(period.start_s(), period.end_s())?;
    let (minutes, _) = inputs::minute_inputs(
        &people,
        period,
        Rows {
            energy: &stored.energy,
            weights: &stored.weights,
            shares: &stored.shares,
        },
    );
    let config = AccountingConfig {
        base_watts: BaseWatts::Fixed(base_watts.max(0.0)),
        ..config.clone()
    };
    let empty = BTreeMap::new();
    let mut days = Vec::new();
    let mut start = period.start_s();
    while start < period.end_s() {
        let end = ((start.div_euclid(86_400) + 1) * 86_400).min(period.end_s());
        let in_day: Vec<MinuteInput> = minutes
            .iter()
            .filter(|m| m.minute_s >= start && m.minute_s < end)
            .cloned()
            .collect();
        if !in_day.is_empty() {
            let day = Period::range(start, end).map_err(|m| {
                input_err(
                    period,
                    InputError {
                        minute: start.to_string(),
                        message: m,
                    },
                )
            })?;
            let (s, _) = inputs::statement(
                &StatementInputs {
                    period: &day,
                    members: &people,
                    minutes: &in_day,
                    history_watts: &[],
                    media_bytes: &empty,
                },
                &config,
            )
            .map_err(|e| input_err(period, e))?;
            days.push(Day {
                day: chrono::DateTime::from_timestamp(start, 0)
                    .map(|t| t.format("%Y-%m-%d").to_string())
                    .unwrap_or_default(),
                measured_wh: s.measured_wh,
                members: s
                    .members
                    .iter()
                    .map(|m| (m.user_id.clone(), m.total_wh))
                    .collect(),
            });
        }
        start = end;
    }
    Ok(days)
}

/// The closed months, oldest first (labels `YYYY-MM`).
pub fn closed_months(storage: &Storage) -> Result<Vec<String>, CloseError> {
    Ok(storage.statement_periods()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accountant::close::tests::{access, members};
    use crate::accounting::accesslog::MinuteWeights;
    use crate::meter::buckets::Minutes;
    use crate::meter::integrator::Piece;
    use crate::storage::AcctBatch;
    use crate::units::{Volts, WattHours, Watts};

    /// 2026-11-01T00:00:00Z.
    const NOV: i64 = 1_793_491_200;

    /// Two hours around midnight from Nov 2 to Nov 3, power rising from 3 to 5 W; alice works
    /// before midnight, bob after.
    fn store(db: &mut Storage) -> i64 {
        let start = NOV + 2 * 86_400 - 3600;
        let mut power = Minutes::default();
        let d = std::time::Duration::from_secs(60);
        let mut weights = MinuteWeights::new();
        let mut shares = Vec::new();
        for i in 0..120 {
            let m = start + 60 * i;
            let w = 3.0 + 2.0 * i as f64 / 120.0;
            power.add(&Piece {
                end_wall_ms: (m + 60) * 1000,
                duration: d,
                energy: Watts(w) * d,
                estimated: WattHours::ZERO,
                measured: Some((Watts(w), Volts(5.0))),
            });
            let who = if i < 60 { "@alice:x.org" } else { "@bob:x.org" };
            weights.ingest_line(&access(m + 1, who, 20)).unwrap();
            shares.push((m, 0.6));
        }
        let batch = AcctBatch {
            weights: weights.drain_all(),
            shares,
            cursor: None,
        };
        db.write_batch_with(&power, &[], &batch).unwrap();
        start + 120 * 60
    }

    #[test]
    fn the_days_of_a_month_add_up_to_the_month_with_its_own_base_load() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Storage::open(&dir.path().join("hearth.db")).unwrap();
        let end = store(&mut db);
        let nov = Period::parse_month("2026-11").unwrap();
        // `auto` with no history: the month's base is found once and used for every day.
        let config = AccountingConfig::default();
        assert!(month_view(&db, &nov, NOV - 1, &members(), &config)
            .unwrap()
            .is_none());
        let v = month_view(&db, &nov, end + 600, &members(), &config)
            .unwrap()
            .unwrap();
        assert!(!v.closed);
        assert_eq!(v.statement.period, "2026-11");
        let days: Vec<&str> = v.days.iter().map(|d| d.day.as_str()).collect();
        assert_eq!(days, ["2026-11-02", "2026-11-03"]);
        for m in &v.statement.members {
            let sum: f64 = v.days.iter().map(|d| d.members[&m.user_id]).sum();
            assert!(
                (sum - m.total_wh).abs() < 1e-9,
                "{}: {sum} vs {}",
                m.user_id,
                m.total_wh
            );
        }
        let measured: f64 = v.days.iter().map(|d| d.measured_wh).sum();
        assert!((measured - v.statement.measured_wh).abs() < 1e-9);
        // Alice worked the first day, bob the second: the days say so.
        let (d1, d2) = (&v.days[0].members, &v.days[1].members);
        assert!(d1["@alice:x.org"] > d1["@bob:x.org"]);
        assert!(d2["@bob:x.org"] > d2["@alice:x.org"]);
    }
}
