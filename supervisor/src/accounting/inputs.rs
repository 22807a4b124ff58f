//! From per-minute rows to a statement: the one path the daemon (rows read back from SQLite)
//! and the `account` command (rows from a replayed trace and an access-log file) share. Pure.
//!
//! Rows are the forms the two sources already have: power minutes as `(minute_s, energy_wh,
//! estimated_wh)` (`meter::buckets::Agg`), request weights as [`MinuteWeight`]s in integer ms
//! (`accesslog::MinuteWeights`), CPU shares as `(minute_s, s_i)`. [`minute_inputs`] keeps the
//! rows inside the period and turns them into the model's [`MinuteInput`]s; [`statement`]
//! computes the statement and [`inputs_sha256`], a hash of everything it was computed from, so a
//! closed statement can be recomputed later and compared.

use super::accesslog::MinuteWeight;
use super::members::Members;
use super::model::{
    compute_statement, InputError, MinuteInput, MinuteInputs, Period, StatementInputs,
};
use super::statement::Statement;
use crate::config::{AccountingConfig, BaseWatts, CostPer};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Per-minute rows of one source or the other, in any order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows<'a> {
    /// `(minute_s, energy_wh, estimated_wh)`.
    pub energy: &'a [(i64, f64, f64)],
    /// Request weights in ms, per minute and requester.
    pub weights: &'a [MinuteWeight],
    /// `(minute_s, s_i)`; a minute without one counts as unknown (1).
    pub shares: &'a [(i64, f64)],
}

/// The rows inside `period` as the model's minutes, and how many rows fell outside it.
pub fn minute_inputs(
    members: &Members,
    period: &Period,
    rows: Rows<'_>,
) -> (Vec<MinuteInput>, usize) {
    let inside = |m: i64| m >= period.start_s() && m < period.end_s();
    let mut outside = 0;
    let mut acc = MinuteInputs::new(members);
    for &(minute, e, est) in rows.energy {
        if inside(minute) {
            acc.energy(minute, e, est);
        } else {
            outside += 1;
        }
    }
    for w in rows.weights {
        if !inside(w.minute_s) {
            outside += 1;
            continue;
        }
        // Integer ms as f64: exact, so the sums do not depend on the order.
        let mut listed = 0u64;
        for (name, ms) in &w.by_requester {
            acc.request(w.minute_s, Some(name), *ms as f64);
            listed = listed.saturating_add(*ms);
        }
        let rest = w.total_ms.saturating_sub(listed);
        if rest > 0 {
            acc.request(w.minute_s, None, rest as f64);
        }
    }
    for &(minute, s) in rows.shares {
        if inside(minute) {
            acc.matrix_share(minute, s);
        } else {
            outside += 1;
        }
    }
    (acc.finish(), outside)
}

/// The statement of `inputs` and the hash of those inputs.
pub fn statement(
    inputs: &StatementInputs<'_>,
    config: &AccountingConfig,
) -> Result<(Statement, String), InputError> {
    let s = compute_statement(inputs, config)?;
    Ok((s, inputs_sha256(inputs, config)))
}

/// Hex SHA-256 of the canonical JSON of everything a statement is computed from: the period,
/// the accounting configuration, the members, every minute's inputs, the base-load history and
/// media bytes. Numbers print in their shortest round-trip form, so equal inputs give equal
/// hashes and any change to a stored input changes it.
pub fn inputs_sha256(inputs: &StatementInputs<'_>, config: &AccountingConfig) -> String {
    let members = inputs.members;
    let base = match config.base_watts {
        BaseWatts::Auto => json!("auto"),
        BaseWatts::Fixed(w) => json!(w),
    };
    let per = |p: CostPer| match p {
        CostPer::Month => "month",
        CostPer::Year => "year",
    };
    let minutes: Vec<Value> = inputs
        .minutes
        .iter()
        .map(|m| {
            let weights: Vec<Value> = m
                .weights
                .iter()
                .map(|(idx, a)| {
                    let who = members.get(*idx).map_or("?", |p| p.user_id.as_str());
                    json!([who, a])
                })
                .collect();
            json!([
                m.minute_s,
                m.energy_wh,
                m.estimated_wh,
                m.matrix_share,
                m.total_weight,
                weights
            ])
        })
        .collect();
    let media: BTreeMap<&str, u64> = members
        .members()
        .iter()
        .filter_map(|m| {
            inputs
                .media_bytes
                .get(&m.user_id)
                .map(|b| (m.user_id.as_str(), *b))
        })
        .collect();
    let canonical = json!({
        "period": [inputs.period.label(), inputs.period.start_s(), inputs.period.end_s()],
        "config": {
            "base_watts": base,
            "tariff_per_kwh": config.tariff_per_kwh,
            "currency": config.currency,
            "storage_price_per_gib_month": config.storage_price_per_gib_month,
            "fixed_costs": config.fixed_costs.iter()
                .map(|f| json!([f.name, f.amount, per(f.per)]))
                .collect::<Vec<_>>(),
        },
        "households": members.households().iter()
            .map(|h| json!([h.id, h.name]))
            .collect::<Vec<_>>(),
        "members": members.members().iter()
            .map(|m| json!([m.user_id, m.household, m.joined_s, m.left_s]))
            .collect::<Vec<_>>(),
        "minutes": minutes,
        "history_watts": inputs.history_watts,
        "media_bytes": media,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::members::{Household, Member};
    use std::sync::Arc;

    const NOV: i64 = 1_793_491_200;

    fn alice_and_bob() -> Members {
        Members::new(
            vec![Household {
                id: "h".into(),
                name: "H".into(),
            }],
            ["@alice:x.org", "@bob:x.org"]
                .iter()
                .map(|u| Member {
                    user_id: (*u).into(),
                    household: "h".into(),
                    joined_s: None,
                    left_s: None,
                })
                .collect(),
        )
        .unwrap()
    }

    fn weight(minute_s: i64, by: &[(&str, u64)], unauth: u64) -> MinuteWeight {
        MinuteWeight {
            minute_s,
            total_ms: by.iter().map(|(_, w)| w).sum::<u64>() + unauth,
            requests: by.len() as u64 + u64::from(unauth > 0),
            unauthenticated_ms: unauth,
            by_requester: by.iter().map(|(n, w)| (Arc::from(*n), *w)).collect(),
        }
    }

    #[test]
    fn rows_become_minutes_and_rows_outside_the_period_are_counted() {
        let members = alice_and_bob();
        let period = Period::range(NOV, NOV + 120).unwrap();
        let energy = [
            (NOV, 0.05, 0.01),
            (NOV + 60, 0.04, 0.0),
            (NOV + 120, 9.0, 0.0),
        ];
        let weights = [
            weight(NOV, &[("@alice:x.org", 30), ("example.com", 5)], 4),
            weight(NOV - 60, &[("@bob:x.org", 1)], 0),
        ];
        let shares = [(NOV + 60, 0.25)];
        let (minutes, outside) = minute_inputs(
            &members,
            &period,
            Rows {
                energy: &energy,
                weights: &weights,
                shares: &shares,
            },
        );
        assert_eq!(outside, 2);
        assert_eq!(minutes.len(), 2);
        let alice = members.index("@alice:x.org").unwrap();
        // The federating server and the unauthenticated request count only in R.
        assert_eq!(minutes[0].total_weight, 39.0);
        assert_eq!(minutes[0].weights, vec![(alice, 30.0)]);
        assert_eq!(
            (minutes[0].energy_wh, minutes[0].estimated_wh),
            (0.05, 0.01)
        );
        assert_eq!(minutes[0].matrix_share, None);
        assert_eq!(minutes[1].matrix_share, Some(0.25));
    }

    #[test]
    fn the_hash_changes_with_any_input_and_only_then() {
        let members = alice_and_bob();
        let period = Period::range(NOV, NOV + 120).unwrap();
        let media = BTreeMap::new();
        let energy = [(NOV, 0.05, 0.0)];
        let (minutes, _) = minute_inputs(
            &members,
            &period,
            Rows {
                energy: &energy,
                ..Rows::default()
            },
        );
        let inputs = StatementInputs {
            period: &period,
            members: &members,
            minutes: &minutes,
            history_watts: &[],
            media_bytes: &media,
        };
        let config = AccountingConfig::default();
        let h = inputs_sha256(&inputs, &config);
        assert_eq!(h, inputs_sha256(&inputs, &config));
        assert_eq!(h.len(), 64);
        let mut more = minutes.clone();
        more[0].energy_wh += 1e-15;
        assert_ne!(
            h,
            inputs_sha256(
                &StatementInputs {
                    minutes: &more,
                    ..inputs
                },
                &config
            )
        );
        let dearer = AccountingConfig {
            tariff_per_kwh: 0.31,
            ..config.clone()
        };
        assert_ne!(h, inputs_sha256(&inputs, &dearer));
        assert_ne!(
            h,
            inputs_sha256(
                &StatementInputs {
                    history_watts: &[2.5],
                    ..inputs
                },
                &config
            )
        );
    }
}
