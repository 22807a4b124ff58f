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
