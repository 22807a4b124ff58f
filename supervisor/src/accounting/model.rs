//! The accounting model of PRODUCT §5 as one pure function, [`compute_statement`].
//!
//! No IO and no clock: the daemon (from its stored per-minute rows) and the `account` CLI (from
//! a trace and an access log) hand it the same inputs and get the same statement. Per UTC
//! minute i ([`MinuteInput`]):
//!
//! - `E_i` measured energy (Wh), of which `estimated` was filled in over sensor gaps;
//! - `B_i = min(E_i, P_base·1 min)`, `D_i = E_i − B_i`;
//! - `s_i` the Matrix service's share of busy CPU time (1 when unknown or offline);
//!   `O_i = D_i − D_i·s_i` goes to other services, nobody's bill;
//! - `R_i` the weight of all requests, `a_m,i` of member m's. Requesters that are not members
//!   (unauthenticated, appservices, the supervisor's `@hearth` user, and members outside their
//!   membership) count only in `R_i`, so their work lands in "shared";
//! - `N_i` the members present in minute i ([`Member::present_in`]), so members who join or
//!   leave mid-period are prorated minute by minute.
//!
//! Then `base_m = Σ B_i/N_i`, `direct_m = Σ D_i·s_i·a_m,i/R_i`,
//! `shared_m = Σ D_i·s_i·(1 − Σ_m a_m,i/R_i)/N_i` (all of `D_i·s_i` when `R_i = 0`).
//!
//! **A minute with `N_i = 0`** (before the first member joined, after the last left): its
//! `B_i + D_i·s_i` has nobody to go to and is reported as `unattributed_wh`, and its part of
//! the fixed costs as `unattributed_fixed_cost`; nothing is dropped. So conservation reads
//! `Σ_m total_m + Σ_i O_i + unattributed_wh = Σ_i E_i`; every sum is compensated (Neumaier),
//! and it holds to far better than 1e-9 Wh over a month.
//!
//! Money: `cost_m = total_m/1000·tariff + fixed_m + storage_m`. Fixed costs accrue evenly over
//! each calendar month (a yearly amount is 1/12 a month); each minute's part is split over
//! the members present in it, so `Σ_m fixed_m + unattributed_fixed_cost` is the period's fixed
//! costs. `storage_m = media GiB · price per GiB-month · period_months`.
//!
//! Minutes without a [`MinuteInput`] have `E_i = 0` (nothing was measured: the device was off).

use super::members::{MemberIdx, Members};
use super::statement::{BaseSource, FixedCostLine, HouseholdStatement, MemberStatement, Statement};
use crate::config::{AccountingConfig, BaseWatts, CostPer};
use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat};
use std::collections::{BTreeMap, HashMap};

/// Inputs of one UTC minute.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MinuteInput {
    /// Start of the minute, Unix seconds (a multiple of 60).
    pub minute_s: i64,
    /// E_i, measured energy in Wh (≥ 0).
    pub energy_wh: f64,
    /// The part of `energy_wh` estimated over sensor gaps (0 ≤ estimated ≤ E_i).
    pub estimated_wh: f64,
    /// s_i in 0..=1; `None` when unknown or offline, which counts as 1.
    pub matrix_share: Option<f64>,
    /// R_i, the weight of all requests that finished in this minute (≥ 0).
    pub total_weight: f64,
    /// a_m,i, sparse: only members with requests in this minute. The sum over members is at
    /// most `total_weight`. A member listed twice counts with the sum of both.
    pub weights: Vec<(MemberIdx, f64)>,
}

/// A period of whole UTC minutes, `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    start_s: i64,
    end_s: i64,
    label: String,
}

/// The longest period a statement covers (its per-minute work is linear in this).
pub const MAX_PERIOD_DAYS: i64 = 400;

impl Period {
    /// A calendar month in UTC.
    pub fn month(year: i32, month: u32) -> Result<Period, String> {
        let start = month_start(year, month)
            .ok_or_else(|| format!("{year:04}-{month:02} is not a month"))?;
        let (ny, nm) = next_month(year, month);
        let end = month_start(ny, nm).ok_or_else(|| format!("{ny:04}-{nm:02} is not a month"))?;
        Ok(Period {
            start_s: start,
            end_s: end,
            label: format!("{year:04}-{month:02}"),
        })
    }

    /// `"YYYY-MM"`, a calendar month in UTC.
    pub fn parse_month(s: &str) -> Result<Period, String> {
        let bad = || format!("{s:?} is not a month such as \"2026-11\"");
        let (y, m) = s.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        Period::month(year, month).map_err(|_| bad())
    }

    /// `[start, end)` in Unix seconds, widened to whole minutes (start rounded down, end up);
    /// the label shows the minutes used. A calendar month gets its `YYYY-MM` label.
    pub fn range(start_s: i64, end_s: i64) -> Result<Period, String> {
        let start = start_s.div_euclid(60) * 60;
        let end = end_s.div_euclid(60) * 60 + if end_s % 60 == 0 { 0 } else { 60 };
        if end <= start {
            return Err("the period's end is not after its start".into());
        }
        if end - start > MAX_PERIOD_DAYS * 86_400 {
            return Err(format!("the period is longer than {MAX_PERIOD_DAYS} days"));
        }
        let (s, e) = (rfc3339(start), rfc3339(end));
        if s.is_empty() || e.is_empty() {
            return Err("the period is outside the calendar".into());
        }
        if let Some(d) = DateTime::from_timestamp(start, 0) {
            if let Ok(p) = Period::month(d.year(), d.month()) {
                if p.start_s == start && p.end_s == end {
                    return Ok(p);
                }
            }
        }
        Ok(Period {
            start_s: start,
            end_s: end,
            label: format!("{s}/{e}"),
        })
    }

    pub fn start_s(&self) -> i64 {
        self.start_s
    }

    pub fn end_s(&self) -> i64 {
        self.end_s
    }

    /// `"YYYY-MM"` or `"<start>/<end>"`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whole minutes in the period.
    pub fn minutes(&self) -> usize {
        ((self.end_s - self.start_s) / 60) as usize
    }

    /// The calendar months the period overlaps: `(overlap_start_s, overlap_end_s, month_len_s)`.
    fn month_pieces(&self) -> Vec<(i64, i64, i64)> {
        let mut out = Vec::new();
        let mut t = self.start_s;
        while t < self.end_s {
            let Some(d) = DateTime::from_timestamp(t, 0) else {
                break;
            };
            let (y, m) = (d.year(), d.month());
            let (ny, nm) = next_month(y, m);
            let (Some(ms), Some(me)) = (month_start(y, m), month_start(ny, nm)) else {
                break;
            };
            let end = me.min(self.end_s);
            out.push((t, end, me - ms));
            t = end;
        }
        out
    }

    /// The period's length in calendar months: each month contributes the fraction of it that
    /// the period covers (exactly 1 for a calendar month).
    pub fn months(&self) -> f64 {
        let mut s = Sum::default();
        for (a, b, len) in self.month_pieces() {
            s.add((b - a) as f64 / len as f64);
        }
        s.get()
    }
}

fn month_start(year: i32, month: u32) -> Option<i64> {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp())
}

fn next_month(year: i32, month: u32) -> (i32, u32) {
    if month >= 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    }
}

fn rfc3339(s: i64) -> String {
    DateTime::from_timestamp(s, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Everything a statement is computed from, besides the configuration.
#[derive(Debug, Clone, Copy)]
pub struct StatementInputs<'a> {
    pub period: &'a Period,
    pub members: &'a Members,
    /// At most one per minute, each inside the period, in any order.
    pub minutes: &'a [MinuteInput],
    /// 1-minute mean power (W) over the 7 days before the period, for `base_watts = "auto"`.
    /// Non-finite or negative values are left out.
    pub history_watts: &'a [f64],
    /// Media bytes stored per user id; only members are read, a missing member has 0.
    pub media_bytes: &'a BTreeMap<String, u64>,
}

/// An input the model cannot account: which minute, which field, why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("minute {minute}: {message}")]
pub struct InputError {
    /// RFC 3339, or the raw number of seconds if it is not a valid instant.
    pub minute: String,
    pub message: String,
}

fn input_error(minute_s: i64, message: String) -> InputError {
    let t = rfc3339(minute_s);
    InputError {
        minute: if t.is_empty() {
            minute_s.to_string()
        } else {
            t
        },
        message,
    }
}

/// Least history for the automatic base load's percentile: one day of minutes.
pub const MIN_HISTORY_MINUTES: usize = 1440;

/// P_base and where it came from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaseLoad {
    pub watts: f64,
    pub source: BaseSource,
    /// Minute means the automatic value was taken from (0 when configured).
    pub minutes: usize,
}

/// Resolve `base_watts`. `Auto` takes the 10th percentile of `history_watts` when it holds at
/// least a day of minutes; with less, their minimum; with none (the first period), the same
/// rule over the period's own minute means (`E_i · 60` W); with nothing measured, 0 W.
pub fn base_load(config: BaseWatts, history_watts: &[f64], period: &[MinuteInput]) -> BaseLoad {
    if let BaseWatts::Fixed(w) = config {
        return BaseLoad {
            watts: w,
            source: BaseSource::Configured,
            minutes: 0,
        };
    }
    let usable = |v: &f64| v.is_finite() && *v >= 0.0;
    let history: Vec<f64> = history_watts.iter().copied().filter(usable).collect();
    let (pool, from_period) = if history.is_empty() {
        let own: Vec<f64> = period
            .iter()
            .map(|m| m.energy_wh * 60.0)
            .filter(usable)
            .collect();
        (own, true)
    } else {
        (history, false)
    };
    let n = pool.len();
    let long = n >= MIN_HISTORY_MINUTES;
    let watts = if long {
        percentile_10(&pool)
    } else {
        pool.iter().copied().reduce(f64::min)
    };
    let Some(watts) = watts else {
        return BaseLoad {
            watts: 0.0,
            source: BaseSource::AutoNoData,
            minutes: 0,
        };
    };
    let source = match (from_period, long) {
        (true, _) => BaseSource::AutoFromPeriod,
        (false, true) => BaseSource::Auto,
        (false, false) => BaseSource::AutoShortHistory,
    };
    BaseLoad {
        watts,
        source,
        minutes: n,
    }
}

/// The 10th percentile by nearest rank: the smallest value with at least 10 % of the values at
/// or below it (the ⌈0.1·n⌉-th smallest). `None` for no finite values; non-finite ones are
/// left out.
pub fn percentile_10(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    // ⌈n/10⌉ − 1, in integers.
    let k = v.len().div_ceil(10).max(1) - 1;
    let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
    Some(*x)
}

/// Neumaier's compensated sum: a month of small terms adds up without drift.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Sum {
    s: f64,
    c: f64,
}

impl Sum {
    pub(crate) fn add(&mut self, x: f64) {
        let t = self.s + x;
        if self.s.abs() >= x.abs() {
            self.c += (self.s - t) + x;
        } else {
            self.c += (x - t) + self.s;
        }
        self.s = t;
    }

    pub(crate) fn get(self) -> f64 {
        self.s + self.c
    }
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Relative slack for "the members' weights are part of the total": rounding in the caller's
/// sums, never a real excess.
const WEIGHT_SLACK: f64 = 1e-9;

/// The statement of one period: the one entry point of the model.
pub fn compute_statement(
    inputs: &StatementInputs<'_>,
    config: &AccountingConfig,
) -> Result<Statement, InputError> {
    let StatementInputs {
        period,
        members,
        minutes,
        history_watts,
        media_bytes,
    } = *inputs;
    let n = period.minutes();
    let start = period.start_s();
    let people = members.members();

    // Each member's minutes in the period, [lo, hi) as minute indices, and N_i.
    let ranges: Vec<(usize, usize)> = people
        .iter()
        .map(|m| {
            let lo = m
                .joined_s
                .map_or(0, |j| (j - start).div_euclid(60).clamp(0, n as i64));
            let hi = m.left_s.map_or(n as i64, |l| {
                (l - start).div_euclid(60) + i64::from((l - start).rem_euclid(60) != 0)
            });
            let hi = hi.clamp(0, n as i64);
            (lo as usize, (hi.max(lo)) as usize)
        })
        .collect();
    let mut count = vec![0u32; n + 1];
    {
        let mut diff = vec![0i64; n + 1];
        for &(lo, hi) in &ranges {
            diff[lo] += 1;
            diff[hi] -= 1;
        }
        let mut running = 0i64;
        for i in 0..n {
            running += diff[i];
            count[i] = running as u32;
        }
    }
    let present = |m: usize, i: usize| ranges[m].0 <= i && i < ranges[m].1;

    let base = base_load(config.base_watts, history_watts, minutes);
    let base_wh_per_minute = base.watts / 60.0;

    // Per minute, what each present member gets of the base and of the shared part.
    let mut base_pm = vec![0.0f64; n];
    let mut shared_pm = vec![0.0f64; n];
    let mut seen = vec![false; n];
    let mut direct = vec![Sum::default(); people.len()];
    let (mut measured, mut estimated, mut other) = (Sum::default(), Sum::default(), Sum::default());
    let (mut base_total, mut dynamic_total, mut unattributed) =
        (Sum::default(), Sum::default(), Sum::default());

    for row in minutes {
        let t = row.minute_s;
        let bad = |m: String| input_error(t, m);
        if t.rem_euclid(60) != 0 {
            return Err(bad("does not start on a whole minute".into()));
        }
        if t < start || t >= period.end_s() {
            return Err(bad(format!("is outside the period {}", period.label())));
        }
        let i = ((t - start) / 60) as usize;
        if std::mem::replace(&mut seen[i], true) {
            return Err(bad("appears twice".into()));
        }
        let e = row.energy_wh;
        if !(e.is_finite() && e >= 0.0) {
            return Err(bad(format!("energy_wh: {e} is out of range; allowed ≥ 0")));
        }
        let est = row.estimated_wh;
        if !(est.is_finite() && est >= 0.0 && est <= e * (1.0 + 1e-12)) {
            return Err(bad(format!(
                "estimated_wh: {est} is out of range; allowed 0 to energy_wh ({e})"
            )));
        }
        let s = row.matrix_share.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&s) {
            return Err(bad(format!(
                "matrix_share: {s} is out of range; allowed 0 to 1"
            )));
        }
        let r = row.total_weight;
        if !(r.is_finite() && r >= 0.0) {
            return Err(bad(format!(
                "total_weight: {r} is out of range; allowed ≥ 0"
            )));
        }
        let mut listed = Sum::default();
        for &(m, a) in &row.weights {
            if m.0 as usize >= people.len() {
                return Err(bad(format!("weights: no member with index {}", m.0)));
            }
            if !(a.is_finite() && a >= 0.0) {
                return Err(bad(format!("weights: {a} is out of range; allowed ≥ 0")));
            }
            listed.add(a);
        }
        let listed = listed.get();
        if listed > r * (1.0 + WEIGHT_SLACK) + f64::MIN_POSITIVE {
            return Err(bad(format!(
                "weights: the members' weights ({listed}) exceed total_weight ({r})"
            )));
        }
        // Within the slack, the larger of the two: the fractions never add up past 1.
        let r_eff = r.max(listed);

        let b = e.min(base_wh_per_minute);
        let d = e - b;
        let matrix = d * s;
        measured.add(e);
        estimated.add(est);
        base_total.add(b);
        dynamic_total.add(d);
        other.add(d - matrix);

        let n_i = count[i];
        if n_i == 0 {
            unattributed.add(b);
            unattributed.add(matrix);
            continue;
        }
        let mut attributed = Sum::default();
        if r_eff > 0.0 {
            for &(m, a) in &row.weights {
                let m = m.0 as usize;
                if a > 0.0 && present(m, i) {
                    let x = matrix * a / r_eff;
                    direct[m].add(x);
                    attributed.add(x);
                }
            }
        }
        let shared = (matrix - attributed.get()).max(0.0);
        base_pm[i] = b / f64::from(n_i);
        shared_pm[i] = shared / f64::from(n_i);
    }

    // Fixed costs: evenly over each calendar month, each minute's part over those present.
    let monthly: f64 = {
        let mut s = Sum::default();
        for fc in &config.fixed_costs {
            s.add(monthly_amount(fc.amount, fc.per));
        }
        s.get()
    };
    let mut fixed_pm = vec![0.0f64; n];
    let mut unattributed_fixed = Sum::default();
    if monthly > 0.0 {
        for (a, b, len) in period.month_pieces() {
            let per_minute = monthly * 60.0 / len as f64;
            let (ia, ib) = (((a - start) / 60) as usize, ((b - start) / 60) as usize);
            for i in ia..ib {
                match count[i] {
                    0 => unattributed_fixed.add(per_minute),
                    k => fixed_pm[i] = per_minute / f64::from(k),
                }
            }
        }
    }

    let months = period.months();
    let mut member_lines = Vec::with_capacity(people.len());
    for (m, person) in people.iter().enumerate() {
        let (lo, hi) = ranges[m];
        let (mut bm, mut sm, mut fm) = (Sum::default(), Sum::default(), Sum::default());
        for i in lo..hi {
            bm.add(base_pm[i]);
            sm.add(shared_pm[i]);
            fm.add(fixed_pm[i]);
        }
        let (base_wh, direct_wh, shared_wh) = (bm.get(), direct[m].get(), sm.get());
        let mut total = Sum::default();
        total.add(base_wh);
        total.add(direct_wh);
        total.add(shared_wh);
        let total_wh = total.get();
        let media = media_bytes.get(&person.user_id).copied().unwrap_or(0);
        let energy_cost = total_wh / 1000.0 * config.tariff_per_kwh;
        let fixed_cost = fm.get();
        let storage_cost = media as f64 / GIB * config.storage_price_per_gib_month * months;
        member_lines.push(MemberStatement {
            user_id: person.user_id.clone(),
            household: person.household.clone(),
            base_wh,
            direct_wh,
            shared_wh,
            total_wh,
            media_bytes: media,
            cost: energy_cost + fixed_cost + storage_cost,
            energy_cost,
            fixed_cost,
            storage_cost,
            minutes_present: hi - lo,
        });
    }

    let mut by_household: HashMap<&str, (Sum, Sum, usize)> = HashMap::new();
    for line in &member_lines {
        let h = by_household.entry(line.household.as_str()).or_default();
        h.0.add(line.total_wh);
        h.1.add(line.cost);
        h.2 += 1;
    }
    let households = members
        .households()
        .iter()
        .map(|h| {
            let (wh, cost, k) = by_household.get(h.id.as_str()).copied().unwrap_or_default();
            HouseholdStatement {
                id: h.id.clone(),
                name: h.name.clone(),
                total_wh: wh.get(),
                cost: cost.get(),
                member_count: k,
            }
        })
        .collect();

    Ok(Statement {
        period: period.label().to_string(),
        start: rfc3339(period.start_s()),
        end: rfc3339(period.end_s()),
        measured_wh: measured.get(),
        other_services_wh: other.get(),
        estimated_wh: estimated.get(),
        base_wh: base_total.get(),
        dynamic_wh: dynamic_total.get(),
        unattributed_wh: unattributed.get(),
        members: member_lines,
        households,
        tariff: config.tariff_per_kwh,
        currency: config.currency.clone(),
        base_watts: base.watts,
        base_source: base.source,
        base_history_minutes: base.minutes,
        minutes: n,
        minutes_measured: minutes.len(),
        period_months: months,
        fixed_costs: config
            .fixed_costs
            .iter()
            .map(|fc| FixedCostLine {
                name: fc.name.clone(),
                amount: fc.amount,
                per: fc.per,
                period_amount: monthly_amount(fc.amount, fc.per) * months,
            })
            .collect(),
        storage_price_per_gib_month: config.storage_price_per_gib_month,
        unattributed_fixed_cost: unattributed_fixed.get(),
    })
}

/// A fixed cost per calendar month: a year's amount is spread evenly over its 12 months.
fn monthly_amount(amount: f64, per: CostPer) -> f64 {
    match per {
        CostPer::Month => amount,
        CostPer::Year => amount / 12.0,
    }
}

/// Collects per-minute inputs from stored rows or parsed log lines, in any order, into
/// [`MinuteInput`]s: energy, CPU share and requests each keyed by the instant they belong to.
#[derive(Debug)]
pub struct MinuteInputs<'a> {
    members: &'a Members,
    minutes: BTreeMap<i64, MinuteInput>,
}

impl<'a> MinuteInputs<'a> {
    pub fn new(members: &'a Members) -> Self {
        Self {
            members,
            minutes: BTreeMap::new(),
        }
    }

    fn at(&mut self, at_s: i64) -> &mut MinuteInput {
        let minute_s = at_s.div_euclid(60) * 60;
        self.minutes.entry(minute_s).or_insert_with(|| MinuteInput {
            minute_s,
            ..MinuteInput::default()
        })
    }

    /// Energy measured in the minute containing `at_s` (adds up if called again).
    pub fn energy(&mut self, at_s: i64, energy_wh: f64, estimated_wh: f64) {
        let m = self.at(at_s);
        m.energy_wh += energy_wh;
        m.estimated_wh += estimated_wh;
    }

    /// The Matrix service's share of busy CPU time in the minute containing `at_s`.
    pub fn matrix_share(&mut self, at_s: i64, share: f64) {
        self.at(at_s).matrix_share = Some(share);
    }

    /// A request that finished at `at_s` with `weight`, by `requester` (`None`:
    /// unauthenticated). Requesters that are not members count only in the total.
    pub fn request(&mut self, at_s: i64, requester: Option<&str>, weight: f64) {
        let idx = requester.and_then(|r| self.members.index(r));
        let m = self.at(at_s);
        m.total_weight += weight;
        if let Some(idx) = idx {
            match m.weights.iter_mut().find(|(k, _)| *k == idx) {
                Some((_, w)) => *w += weight,
                None => m.weights.push((idx, weight)),
            }
        }
    }

    /// The minutes, in time order.
    pub fn finish(self) -> Vec<MinuteInput> {
        self.minutes.into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::members::{Household, Member};
    use crate::config::FixedCost;
    use proptest::prelude::*;

    /// 2026-11-01T00:00:00Z.
    const NOV: i64 = 1_793_491_200;

    fn member(user: &str, household: &str, joined: Option<i64>, left: Option<i64>) -> Member {
        Member {
            user_id: user.into(),
            household: household.into(),
            joined_s: joined,
            left_s: left,
        }
    }

    fn members(list: Vec<Member>) -> Members {
        let mut hs: Vec<&str> = list.iter().map(|m| m.household.as_str()).collect();
        hs.sort_unstable();
        hs.dedup();
        let hs = hs
            .into_iter()
            .map(|h| Household {
                id: h.into(),
                name: format!("House {h}"),
            })
            .collect();
        Members::new(hs, list).unwrap()
    }

    fn fixed(watts: f64) -> AccountingConfig {
        AccountingConfig {
            base_watts: BaseWatts::Fixed(watts),
            ..AccountingConfig::default()
        }
    }

    fn statement(
        period: &Period,
        members: &Members,
        minutes: &[MinuteInput],
        config: &AccountingConfig,
    ) -> Statement {
        compute_statement(
            &StatementInputs {
                period,
                members,
                minutes,
                history_watts: &[],
                media_bytes: &BTreeMap::new(),
            },
            config,
        )
        .unwrap()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * (1.0 + a.abs().max(b.abs()))
    }

    #[track_caller]
    fn assert_close(got: f64, want: f64) {
        assert!(close(got, want), "got {got}, want {want}");
    }

    /// Two minutes, two members (alice and bob, one household), every term by hand.
    ///
    /// P_base = 120 W, so at most 120 W · 1 min = 2 Wh of a minute is base.
    ///
    /// Minute 0: E = 5 Wh, s = 0.8, requests: alice 3, an unauthenticated one 1 (R = 4).
    ///   B = min(5, 2) = 2, D = 3, D·s = 2.4, O = 3 − 2.4 = 0.6.
    ///   base: 2 / 2 = 1 each. direct_alice = 2.4 · 3/4 = 1.8.
    ///   shared = 2.4 · (1 − 3/4) / 2 = 0.3 each.
    /// Minute 1: E = 1.5 Wh, s unknown (1), no requests.
    ///   B = min(1.5, 2) = 1.5, D = 0. base: 0.75 each; nothing direct or shared.
    /// alice: base 1.75, direct 1.8, shared 0.3, total 3.85.
    /// bob:   base 1.75, direct 0,   shared 0.3, total 2.05.
    /// Conservation: 3.85 + 2.05 + O 0.6 = 6.5 = 5 + 1.5.
    ///
    /// Money (November has 30 days = 43 200 minutes, so the period is 1/21 600 of it):
    ///   tariff 0.30/kWh: alice 3.85/1000·0.3 = 0.001155, bob 2.05/1000·0.3 = 0.000615.
    ///   fixed 21 600/month → 1.0 on the period, 0.5 each (both present both minutes).
    ///   storage 5 400/GiB-month, alice stores 2 GiB: 2 · 5 400 / 21 600 = 0.5.
    ///   alice 0.001155 + 0.5 + 0.5 = 1.001155; bob 0.000615 + 0.5 = 0.500615.
    ///   household: 5.9 Wh, 1.50177.
    #[test]
    fn worked_example_two_minutes_two_members() {
        let ms = members(vec![
            member("@bob:x.org", "h", None, None),
            member("@alice:x.org", "h", None, None),
        ]);
        let alice = ms.index("@alice:x.org").unwrap();
        let period = Period::range(NOV, NOV + 120).unwrap();
        let minutes = [
            MinuteInput {
                minute_s: NOV,
                energy_wh: 5.0,
                estimated_wh: 0.5,
                matrix_share: Some(0.8),
                total_weight: 4.0,
                weights: vec![(alice, 3.0)],
            },
            MinuteInput {
                minute_s: NOV + 60,
                energy_wh: 1.5,
                ..MinuteInput::default()
            },
        ];
        let config = AccountingConfig {
            base_watts: BaseWatts::Fixed(120.0),
            tariff_per_kwh: 0.30,
            currency: "EUR".into(),
            storage_price_per_gib_month: 5400.0,
            fixed_costs: vec![FixedCost {
                name: "rent".into(),
                amount: 21_600.0,
                per: CostPer::Month,
            }],
            ..AccountingConfig::default()
        };
        let media = BTreeMap::from([("@alice:x.org".to_string(), 2 * 1024 * 1024 * 1024)]);
        let s = compute_statement(
            &StatementInputs {
                period: &period,
                members: &ms,
                minutes: &minutes,
                history_watts: &[],
                media_bytes: &media,
            },
            &config,
        )
        .unwrap();
        assert_eq!(s.period, "2026-11-01T00:00:00Z/2026-11-01T00:02:00Z");
        assert_close(s.measured_wh, 6.5);
        assert_close(s.estimated_wh, 0.5);
        assert_close(s.base_wh, 3.5);
        assert_close(s.dynamic_wh, 3.0);
        assert_close(s.other_services_wh, 0.6);
        assert_close(s.unattributed_wh, 0.0);
        assert_eq!(s.base_source, BaseSource::Configured);
        let (a, b) = (&s.members[0], &s.members[1]);
        assert_eq!(a.user_id, "@alice:x.org");
        assert_eq!(b.user_id, "@bob:x.org");
        for (got, want) in [
            (a.base_wh, 1.75),
            (a.direct_wh, 1.8),
            (a.shared_wh, 0.3),
            (a.total_wh, 3.85),
            (b.base_wh, 1.75),
            (b.direct_wh, 0.0),
            (b.shared_wh, 0.3),
            (b.total_wh, 2.05),
            (a.energy_cost, 0.001155),
            (a.fixed_cost, 0.5),
            (a.storage_cost, 0.5),
            (a.cost, 1.001155),
            (b.cost, 0.500615),
            (s.period_months, 1.0 / 21_600.0),
            (s.fixed_costs[0].period_amount, 1.0),
            (s.households[0].total_wh, 5.9),
            (s.households[0].cost, 1.50177),
        ] {
            assert_close(got, want);
        }
        assert_eq!(a.media_bytes, 2 * 1024 * 1024 * 1024);
        assert_eq!(s.households[0].member_count, 2);
        assert_eq!((s.minutes, s.minutes_measured), (2, 2));
    }

    #[test]
    fn statement_json_has_the_fields_of_product_5() {
        let ms = members(vec![member("@a:x.org", "h", None, None)]);
        let s = statement(
            &Period::parse_month("2026-11").unwrap(),
            &ms,
            &[],
            &AccountingConfig::default(),
        );
        let v = serde_json::to_value(&s).unwrap();
        for key in [
            "period",
            "measured_wh",
            "other_services_wh",
            "estimated_wh",
            "members",
            "households",
            "tariff",
            "currency",
        ] {
            assert!(v.get(key).is_some(), "{key} in {v}");
        }
        for key in [
            "user_id",
            "household",
            "base_wh",
            "direct_wh",
            "shared_wh",
            "total_wh",
            "media_bytes",
            "cost",
        ] {
            assert!(v["members"][0].get(key).is_some(), "members[].{key}");
        }
        for key in ["id", "total_wh", "cost"] {
            assert!(v["households"][0].get(key).is_some(), "households[].{key}");
        }
        assert_eq!(v["period"], "2026-11");
        assert_eq!(v["currency"], "EUR");
        assert_eq!(v["base_source"], "auto_no_data");
        let back: Statement = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }

    /// Nobody was a member in minute 0: its base and Matrix energy and its fixed costs are shown
    /// as unattributed, not dropped and not loaded onto the member who came later.
    #[test]
    fn a_minute_without_members_is_unattributed() {
        let ms = members(vec![member("@a:x.org", "h", Some(NOV + 60), None)]);
        let minutes = [
            MinuteInput {
                minute_s: NOV,
                energy_wh: 3.0,
                matrix_share: Some(0.5),
                ..MinuteInput::default()
            },
            MinuteInput {
                minute_s: NOV + 60,
                energy_wh: 3.0,
                matrix_share: Some(0.5),
                ..MinuteInput::default()
            },
        ];
        let mut config = fixed(60.0); // 1 Wh a minute of base
        config.fixed_costs = vec![FixedCost {
            name: "x".into(),
            amount: 43_200.0, // 1 per minute in November
            per: CostPer::Month,
        }];
        let s = statement(
            &Period::range(NOV, NOV + 120).unwrap(),
            &ms,
            &minutes,
            &config,
        );
        // Minute 0: B 1 + D·s 1 unattributed, O 1. Minute 1: all of B + D·s to the member.
        assert_close(s.unattributed_wh, 2.0);
        assert_close(s.other_services_wh, 2.0);
        assert_close(s.members[0].total_wh, 2.0);
        assert_eq!(s.members[0].minutes_present, 1);
        assert_close(s.unattributed_fixed_cost, 1.0);
        assert_close(s.members[0].fixed_cost, 1.0);
    }

    /// Carol leaves half-way, Dave joins then, Bob stays: N is 2 all month. With the same
    /// energy every minute and no requests, Carol and Dave each get half of Bob's base, shared
    /// energy and fixed costs.
    #[test]
    fn members_who_join_or_leave_mid_month_are_prorated() {
        let half = NOV + 15 * 86_400;
        let ms = members(vec![
            member("@bob:x.org", "h", None, None),
            member("@carol:x.org", "h", None, Some(half)),
            member("@dave:x.org", "k", Some(half), None),
        ]);
        let period = Period::parse_month("2026-11").unwrap();
        let minutes: Vec<MinuteInput> = (0..period.minutes() as i64)
            .map(|i| MinuteInput {
                minute_s: NOV + 60 * i,
                energy_wh: 0.06,
                ..MinuteInput::default()
            })
            .collect();
        let mut config = fixed(2.4); // 0.04 Wh base a minute
        config.fixed_costs = vec![FixedCost {
            name: "domain".into(),
            amount: 12.0,
            per: CostPer::Year,
        }];
        let s = statement(&period, &ms, &minutes, &config);
        let [bob, carol, dave] = &s.members[..] else {
            panic!("three members")
        };
        assert_close(carol.base_wh, bob.base_wh / 2.0);
        assert_close(dave.base_wh, bob.base_wh / 2.0);
        assert_close(dave.shared_wh, bob.shared_wh / 2.0);
        assert_close(bob.base_wh, 43_200.0 * 0.04 / 2.0);
        assert_close(bob.fixed_cost, 0.5);
        assert_close(dave.fixed_cost, 0.25);
        assert_eq!(carol.minutes_present, 21_600);
        // Households sum their members.
        assert_eq!(s.households[0].id, "h");
        assert_close(s.households[0].total_wh, bob.total_wh + carol.total_wh);
        assert_close(s.households[1].cost, dave.cost);
    }

    #[test]
    fn bad_minutes_are_named() {
        let ms = members(vec![member("@a:x.org", "h", None, None)]);
        let period = Period::range(NOV, NOV + 120).unwrap();
        let ok = MinuteInput {
            minute_s: NOV,
            energy_wh: 1.0,
            total_weight: 1.0,
            ..MinuteInput::default()
        };
        let cases = [
            (
                vec![MinuteInput {
                    minute_s: NOV + 1,
                    ..ok.clone()
                }],
                "does not start on a whole minute",
            ),
            (
                vec![MinuteInput {
                    minute_s: NOV + 120,
                    ..ok.clone()
                }],
                "is outside the period 2026-11-01T00:00:00Z/2026-11-01T00:02:00Z",
            ),
            (vec![ok.clone(), ok.clone()], "appears twice"),
            (
                vec![MinuteInput {
                    energy_wh: f64::NAN,
                    ..ok.clone()
                }],
                "energy_wh: NaN is out of range",
            ),
            (
                vec![MinuteInput {
                    energy_wh: -1.0,
                    ..ok.clone()
                }],
                "energy_wh: -1 is out of range",
            ),
            (
                vec![MinuteInput {
                    estimated_wh: 2.0,
                    ..ok.clone()
                }],
                "estimated_wh: 2 is out of range; allowed 0 to energy_wh (1)",
            ),
            (
                vec![MinuteInput {
                    matrix_share: Some(1.5),
                    ..ok.clone()
                }],
                "matrix_share: 1.5 is out of range",
            ),
            (
                vec![MinuteInput {
                    total_weight: -1.0,
                    ..ok.clone()
                }],
                "total_weight: -1 is out of range",
            ),
            (
                vec![MinuteInput {
                    weights: vec![(MemberIdx(7), 1.0)],
                    ..ok.clone()
                }],
                "weights: no member with index 7",
            ),
            (
                vec![MinuteInput {
                    weights: vec![(MemberIdx(0), 2.0)],
                    ..ok.clone()
                }],
                "weights: the members' weights (2) exceed total_weight (1)",
            ),
        ];
        for (minutes, want) in cases {
            let e = compute_statement(
                &StatementInputs {
                    period: &period,
                    members: &ms,
                    minutes: &minutes,
                    history_watts: &[],
                    media_bytes: &BTreeMap::new(),
                },
                &fixed(1.0),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("minute 2026-11-01T00:0"), "{e}");
            assert!(e.contains(want), "got {e}, want …{want}");
        }
    }

    #[test]
    fn periods() {
        let p = Period::parse_month("2026-02").unwrap();
        assert_eq!(p.minutes(), 28 * 1440);
        assert_eq!(p.label(), "2026-02");
        assert_eq!(p.months(), 1.0);
        let dec = Period::parse_month("2026-12").unwrap();
        assert_eq!(
            dec.end_s(),
            Period::parse_month("2027-01").unwrap().start_s()
        );
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(Period::parse_month(bad).is_err(), "{bad}");
        }
        // Whole minutes, widened; a range that is a calendar month is labelled as one.
        let r = Period::range(NOV + 30, NOV + 90).unwrap();
        assert_eq!((r.start_s(), r.end_s()), (NOV, NOV + 120));
        let nov = Period::range(NOV, NOV + 30 * 86_400).unwrap();
        assert_eq!(nov.label(), "2026-11");
        // Half of November and half of December: one month.
        let across = Period::range(NOV + 15 * 86_400, NOV + (30 + 15) * 86_400 + 43_200).unwrap();
        assert_close(across.months(), 0.5 + 15.5 / 31.0);
        assert!(Period::range(NOV, NOV).is_err());
        assert!(Period::range(NOV, NOV + 401 * 86_400).is_err());
    }

    #[test]
    fn the_builder_routes_requests_by_member() {
        let ms = members(vec![member("@a:x.org", "h", None, None)]);
        let mut b = MinuteInputs::new(&ms);
        b.request(NOV + 61, Some("@a:x.org"), 0.5);
        b.request(NOV + 62, Some("@a:x.org"), 0.25);
        b.request(NOV + 70, Some("@hearth:x.org"), 1.0);
        b.request(NOV + 80, None, 1.0);
        b.energy(NOV + 5, 0.1, 0.0);
        b.energy(NOV + 119, 0.2, 0.05);
        b.matrix_share(NOV + 60, 0.9);
        let rows = b.finish();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].minute_s, NOV);
        assert_eq!(rows[0].matrix_share, None);
        assert_eq!(rows[1].minute_s, NOV + 60);
        assert_eq!(rows[1].total_weight, 2.75);
        assert_eq!(rows[1].weights, vec![(MemberIdx(0), 0.75)]);
        assert_eq!(rows[1].matrix_share, Some(0.9));
        assert_eq!(rows[1].estimated_wh, 0.05);
    }

    #[test]
    fn auto_base_load_and_its_fallbacks() {
        let day: Vec<f64> = (0..1440).map(|i| 2.0 + (i % 100) as f64 / 100.0).collect();
        let b = base_load(BaseWatts::Auto, &day, &[]);
        assert_eq!(b.source, BaseSource::Auto);
        assert_eq!(b.minutes, 1440);
        // 1440 values, 15 of each hundredth from 2.00: the 144th smallest is 2.09.
        assert_close(b.watts, 2.09);

        let short = base_load(BaseWatts::Auto, &[3.0, 2.5, f64::NAN, 4.0], &[]);
        assert_eq!(
            (short.source, short.watts, short.minutes),
            (BaseSource::AutoShortHistory, 2.5, 3)
        );

        let own = [
            MinuteInput {
                minute_s: NOV,
                energy_wh: 0.05,
                ..MinuteInput::default()
            },
            MinuteInput {
                minute_s: NOV + 60,
                energy_wh: 0.04,
                ..MinuteInput::default()
            },
        ];
        let first = base_load(BaseWatts::Auto, &[], &own);
        assert_eq!(first.source, BaseSource::AutoFromPeriod);
        assert_close(first.watts, 2.4);

        let none = base_load(BaseWatts::Auto, &[], &[]);
        assert_eq!((none.source, none.watts), (BaseSource::AutoNoData, 0.0));

        let conf = base_load(BaseWatts::Fixed(1.5), &day, &own);
        assert_eq!((conf.source, conf.watts), (BaseSource::Configured, 1.5));
    }

    // ------------------------------------------------------------------------------------
    // Properties.

    /// A random small world: members with optional join/leave minutes, minutes with random
    /// energy, CPU share and requests (members' and others').
    /// (minute index, E, estimated fraction of E, s, members' weights, others' weight).
    type Row = (usize, f64, f64, Option<f64>, Vec<f64>, f64);

    #[derive(Debug, Clone)]
    struct World {
        minutes_n: usize,
        people: Vec<(Option<usize>, Option<usize>)>,
        rows: Vec<Row>,
        base: BaseWatts,
        fixed: Vec<(f64, CostPer)>,
        media: Vec<u64>,
    }

    fn world() -> impl Strategy<Value = World> {
        (1usize..240, 1usize..6).prop_flat_map(|(n, k)| {
            let people = prop::collection::vec(
                (prop::option::of(0..n + 10), prop::option::of(0..n + 10)),
                k,
            );
            let row = (
                0..n,
                0.0f64..20.0,
                0.0f64..1.0,
                prop::option::of(0.0f64..=1.0),
                prop::collection::vec(prop_oneof![Just(0.0), 0.0f64..5.0], k),
                prop_oneof![Just(0.0), 0.0f64..5.0],
            );
            let rows = prop::collection::vec(row, 0..n.min(120) + 1);
            let base = prop_oneof![
                Just(BaseWatts::Auto),
                (0.0f64..600.0).prop_map(BaseWatts::Fixed)
            ];
            let fixed = prop::collection::vec(
                (
                    0.0f64..100.0,
                    prop_oneof![Just(CostPer::Month), Just(CostPer::Year)],
                ),
                0..3,
            );
            let media = prop::collection::vec(0u64..(8 << 30), k);
            (Just(n), people, rows, base, fixed, media).prop_map(
                |(minutes_n, people, rows, base, fixed, media)| World {
                    minutes_n,
                    people,
                    rows,
                    base,
                    fixed,
                    media,
                },
            )
        })
    }

    struct Built {
        period: Period,
        members: Members,
        minutes: Vec<MinuteInput>,
        config: AccountingConfig,
        media: BTreeMap<String, u64>,
    }

    fn build(w: &World) -> Built {
        let at = |i: usize| NOV + 60 * i as i64;
        let people = w
            .people
            .iter()
            .enumerate()
            .map(|(n, &(j, l))| {
                // Joined and left order: swap so left is after joined.
                let (j, l) = match (j, l) {
                    (Some(a), Some(b)) if b <= a => (Some(b), Some(a + 1)),
                    other => other,
                };
                member(
                    &format!("@m{n}:x.org"),
                    &format!("h{}", n % 2),
                    j.map(|j| at(j) + 17),
                    l.map(at),
                )
            })
            .collect();
        let members = members(people);
        let mut seen = std::collections::BTreeSet::new();
        let mut minutes = Vec::new();
        for (i, e, est, s, weights, others) in &w.rows {
            if !seen.insert(*i) {
                continue;
            }
            let weights: Vec<(MemberIdx, f64)> = weights
                .iter()
                .enumerate()
                .filter(|(_, a)| **a > 0.0)
                .map(|(m, a)| (MemberIdx(m as u32), *a))
                .collect();
            let total = weights.iter().map(|(_, a)| a).sum::<f64>() + others;
            minutes.push(MinuteInput {
                minute_s: at(*i),
                energy_wh: *e,
                estimated_wh: e * est,
                matrix_share: *s,
                total_weight: total,
                weights,
            });
        }
        let config = AccountingConfig {
            base_watts: w.base,
            fixed_costs: w
                .fixed
                .iter()
                .map(|&(amount, per)| FixedCost {
                    name: "c".into(),
                    amount,
                    per,
                })
                .collect(),
            storage_price_per_gib_month: 0.05,
            ..AccountingConfig::default()
        };
        let media = members
            .members()
            .iter()
            .zip(&w.media)
            .map(|(m, b)| (m.user_id.clone(), *b))
            .collect();
        Built {
            period: Period::range(NOV, at(w.minutes_n)).unwrap(),
            members,
            minutes,
            config,
            media,
        }
    }

    fn run(b: &Built) -> Statement {
        compute_statement(
            &StatementInputs {
                period: &b.period,
                members: &b.members,
                minutes: &b.minutes,
                history_watts: &[],
                media_bytes: &b.media,
            },
            &b.config,
        )
        .unwrap()
    }

    fn conservation_error(s: &Statement, minutes: &[MinuteInput]) -> f64 {
        let mut lhs = Sum::default();
        for m in &s.members {
            lhs.add(m.total_wh);
        }
        lhs.add(s.other_services_wh);
        lhs.add(s.unattributed_wh);
        let mut rhs = Sum::default();
        for m in minutes {
            rhs.add(m.energy_wh);
        }
        (lhs.get() - rhs.get()).abs()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn energy_is_conserved_and_no_share_is_negative(w in world()) {
            let b = build(&w);
            let s = run(&b);
            prop_assert!(conservation_error(&s, &b.minutes) <= 1e-9);
            prop_assert!(s.other_services_wh >= 0.0 && s.unattributed_wh >= 0.0);
            for m in &s.members {
                prop_assert!(m.base_wh >= 0.0 && m.direct_wh >= 0.0 && m.shared_wh >= 0.0, "{m:?}");
                prop_assert!(m.cost >= 0.0);
            }
            prop_assert!(close(s.base_wh + s.dynamic_wh, s.measured_wh));
            // The model's minute ranges agree with `Member::present_in`.
            for (line, m) in s.members.iter().zip(b.members.members()) {
                let present = (0..w.minutes_n)
                    .filter(|&i| m.present_in(NOV + 60 * i as i64))
                    .count();
                prop_assert_eq!(line.minutes_present, present);
            }
        }

        #[test]
        fn money_is_conserved(w in world()) {
            let b = build(&w);
            let s = run(&b);
            let mut billed = Sum::default();
            for m in &s.members {
                billed.add(m.cost);
            }
            billed.add(s.unattributed_fixed_cost);
            let energy = (s.measured_wh - s.other_services_wh - s.unattributed_wh) / 1000.0 * s.tariff;
            let months = (b.period.end_s() - b.period.start_s()) as f64 / (30.0 * 86_400.0);
            let fixed: f64 = w.fixed.iter().map(|&(a, per)| match per {
                CostPer::Month => a,
                CostPer::Year => a / 12.0,
            }).sum::<f64>() * months;
            let storage: f64 = b.media.values().map(|&m| m as f64 / GIB * 0.05 * months).sum();
            let want = energy + fixed + storage;
            prop_assert!((billed.get() - want).abs() <= 1e-9 * (1.0 + want), "{} vs {want}", billed.get());
            // Households sum their members.
            let mut hh = Sum::default();
            for h in &s.households {
                hh.add(h.cost);
            }
            let mut mm = Sum::default();
            for m in &s.members {
                mm.add(m.cost);
            }
            prop_assert!(close(hh.get(), mm.get()));
        }

        /// More activity by member m in one minute (its weight and the total both up by δ)
        /// never lowers m's total and never raises anyone else's.
        #[test]
        fn more_activity_never_lowers_own_total_nor_raises_others(
            w in world(), pick in any::<prop::sample::Index>(), who in any::<prop::sample::Index>(),
            delta in 0.001f64..10.0,
        ) {
            let b = build(&w);
            prop_assume!(!b.minutes.is_empty());
            let before = run(&b);
            let row = pick.index(b.minutes.len());
            let m = who.index(b.members.members().len());
            prop_assume!(b.members.members()[m].present_in(b.minutes[row].minute_s));
            let mut more = Built { minutes: b.minutes.clone(), ..build(&w) };
            let r = &mut more.minutes[row];
            r.total_weight += delta;
            match r.weights.iter_mut().find(|(k, _)| k.0 as usize == m) {
                Some((_, a)) => *a += delta,
                None => r.weights.push((MemberIdx(m as u32), delta)),
            }
            let after = run(&more);
            for (k, (x, y)) in before.members.iter().zip(&after.members).enumerate() {
                if k == m {
                    prop_assert!(y.total_wh >= x.total_wh - 1e-12, "own {} -> {}", x.total_wh, y.total_wh);
                } else {
                    prop_assert!(y.total_wh <= x.total_wh + 1e-12, "other {} -> {}", x.total_wh, y.total_wh);
                }
            }
        }

        /// A twin who joins at minute j gets exactly what the always-present member got from
        /// minute j on: the statement over [j, end) for the other is the twin's over the whole.
        #[test]
        fn a_late_joiner_is_prorated(
            n in 2usize..200, j in 1usize..199, base in 0.0f64..300.0,
            energy in prop::collection::vec(0.0f64..10.0, 200),
            act in prop::collection::vec(0.0f64..3.0, 200),
        ) {
            let j = j.min(n - 1);
            let at = |i: usize| NOV + 60 * i as i64;
            let ms = members(vec![
                member("@early:x.org", "h", None, None),
                member("@late:x.org", "h", Some(at(j)), None),
            ]);
            let rows = |from: usize| -> Vec<MinuteInput> {
                (from..n).map(|i| {
                    // Equal activity by both twins once both are members.
                    let w = if i >= j { act[i] } else { 0.0 };
                    MinuteInput {
                        minute_s: at(i),
                        energy_wh: energy[i],
                        total_weight: 2.0 * w + 1.0,
                        weights: vec![(MemberIdx(0), w), (MemberIdx(1), w)],
                        ..MinuteInput::default()
                    }
                }).collect()
            };
            let config = fixed(base);
            let whole = statement(&Period::range(at(0), at(n)).unwrap(), &ms, &rows(0), &config);
            let tail = statement(&Period::range(at(j), at(n)).unwrap(), &ms, &rows(j), &config);
            let late = &whole.members[1];
            prop_assert_eq!(late.minutes_present, n - j);
            prop_assert!(close(late.base_wh, tail.members[0].base_wh));
            prop_assert!(close(late.total_wh, tail.members[0].total_wh));
            prop_assert!(close(tail.members[0].total_wh, tail.members[1].total_wh));
        }

        #[test]
        fn auto_base_load_is_the_10th_percentile(
            values in prop::collection::vec(0.0f64..20.0, 1440..3000),
        ) {
            let b = base_load(BaseWatts::Auto, &values, &[]);
            prop_assert_eq!(b.source, BaseSource::Auto);
            let n = values.len();
            let at_or_below = values.iter().filter(|&&v| v <= b.watts).count();
            let at_or_above = values.iter().filter(|&&v| v >= b.watts).count();
            prop_assert!(at_or_below * 10 >= n, "{at_or_below} of {n} at or below");
            prop_assert!(at_or_above * 10 >= 9 * n, "{at_or_above} of {n} at or above");
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            prop_assert_eq!(b.watts, sorted[n.div_ceil(10) - 1]);
        }
    }

    /// A month of minutes, 50 members: conservation to 1e-9 Wh where rounding would show.
    #[test]
    fn a_month_conserves_energy_to_a_nanowatt_hour() {
        let (period, members, minutes) = synthetic_month();
        let s = statement(&period, &members, &minutes, &AccountingConfig::default());
        assert_eq!(s.minutes_measured, 43_200);
        let err = conservation_error(&s, &minutes);
        assert!(err <= 1e-9, "conservation error {err} Wh");
        assert!(s.measured_wh > 1000.0);
    }

    fn synthetic_month() -> (Period, Members, Vec<MinuteInput>) {
        let period = Period::parse_month("2026-11").unwrap();
        let people = (0..50)
            .map(|n| {
                let joined = (n == 7).then_some(NOV + 9 * 86_400 + 1234);
                let left = (n == 8).then_some(NOV + 20 * 86_400 + 99);
                member(
                    &format!("@u{n:02}:x.org"),
                    &format!("h{}", n % 10),
                    joined,
                    left,
                )
            })
            .collect();
        let members = members(people);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64
        };
        let minutes = (0..period.minutes() as i64)
            .map(|i| {
                let e = (2.7 + 3.0 * next()) / 60.0 + 1e-7 * next();
                let mut weights = Vec::new();
                let mut total = 0.3 * next();
                for _ in 0..(next() * 4.0) as usize {
                    let w = 0.1 * next();
                    weights.push((MemberIdx((next() * 50.0) as u32), w));
                    total += w;
                }
                MinuteInput {
                    minute_s: NOV + 60 * i,
                    energy_wh: e,
                    estimated_wh: 0.0,
                    matrix_share: Some(next()),
                    total_weight: total,
                    weights,
                }
            })
            .collect();
        (period, members, minutes)
    }
}
