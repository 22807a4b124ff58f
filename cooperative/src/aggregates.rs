//! What the site publishes of the boxes' anonymous energy reports: per month and per quarter,
//! the number of reports, total and mean kWh, a distribution, and the same by hardware class
//! and by member bucket — each group and each cell only when at least `k` reports are in it
//! (PRODUCT.md §6: "aggregates only over at least k appliances").
//!
//! The noise's error bound. Each report's kWh carries Laplace noise of scale
//! `b = clamp / ε` (the box clamps its monthly total to `clamp` kWh, the most its board can draw
//! in a month, so one household changes the value by at most `clamp`: sensitivity `clamp`, and
//! `Lap(clamp/ε)` makes one report ε-differentially private). A Laplace variable has variance
//! `2b²`; the noise in a total over n reports has variance `Σ 2bᵢ²`, in a mean `Σ 2bᵢ² / n²`.
//! For n ≥ k (10 by default) the sum of independent Laplace noises is close to normal (its
//! excess kurtosis is 3/n), so the site states ± 1.96·σ as the 95 % bound of the noise:
//! `± 1.96 · √(Σ 2bᵢ²) / n` for a mean. With ε = 1 and a 5 kWh clamp (b = 5), a mean over 10
//! reports is ± 4.4 kWh, over 100 ± 1.4 kWh. The bound covers the added noise only; the clamp
//! (a box over its clamp reports the clamp) and rounding to whole kWh add a small bias that is
//! not in it, and which boxes report at all (opt-in) is not a sample of anything.
//!
//! Pure: plain data in, plain data out; `site/` renders it.

use std::collections::BTreeMap;

use crate::ledger::{Month, Quarter};

/// The figures of one report that the aggregates use (nothing that names a box).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub month: Month,
    pub hardware: String,
    pub members: String,
    /// Noised, clamped, rounded total of the month.
    pub kwh: f64,
    pub epsilon: f64,
    /// The clamp the box applied (kWh): with ε, the noise's scale.
    pub clamp_kwh: f64,
}

impl Row {
    fn variance(&self) -> f64 {
        let b = self.clamp_kwh / self.epsilon;
        2.0 * b * b
    }
}

/// Figures over a set of reports (at least k of them).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Figures {
    pub reports: usize,
    pub total_kwh: f64,
    pub mean_kwh: f64,
    /// ± this many kWh around `mean_kwh` holds the true mean with 95 % (noise only).
    pub mean_error95_kwh: f64,
    /// ± this around `total_kwh`.
    pub total_error95_kwh: f64,
    pub median_kwh: f64,
}

/// A group or a cell: its figures, or withheld because fewer than k reports are in it (how
/// many fewer is not said either).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Cell {
    Published(Figures),
    Withheld,
}

impl Cell {
    pub fn figures(&self) -> Option<&Figures> {
        match self {
            Cell::Published(f) => Some(f),
            Cell::Withheld => None,
        }
    }
}

/// One period (a month `2025-03` or a quarter `2025-Q1`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Period {
    pub period: String,
    pub all: Cell,
    /// Counts in `bins` equal bins of kWh from 0 to `bin_top_kwh` (values outside are counted
    /// in the first or the last); only when `all` is published.
    pub histogram: Option<Histogram>,
    pub by_hardware: BTreeMap<String, Cell>,
    pub by_members: BTreeMap<String, Cell>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Histogram {
    pub bin_top_kwh: f64,
    pub counts: Vec<usize>,
}

pub const BINS: usize = 8;

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn figures(rows: &[&Row], k: usize) -> Cell {
    let n = rows.len();
    if n < k.max(1) {
        return Cell::Withheld;
    }
    let total: f64 = rows.iter().map(|r| r.kwh).sum();
    let var_total: f64 = rows.iter().map(|r| r.variance()).sum();
    let mut v: Vec<f64> = rows.iter().map(|r| r.kwh).collect();
    v.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Cell::Published(Figures {
        reports: n,
        total_kwh: round(total, 1),
        mean_kwh: round(total / n as f64, 2),
        mean_error95_kwh: round(1.96 * var_total.sqrt() / n as f64, 2),
        total_error95_kwh: round(1.96 * var_total.sqrt(), 1),
        median_kwh: round(median, 2),
    })
}

fn histogram(rows: &[&Row]) -> Histogram {
    let top = rows
        .iter()
        .map(|r| r.clamp_kwh)
        .fold(0.0, f64::max)
        .max(1.0);
    let mut counts = vec![0; BINS];
    for r in rows {
        let i = ((r.kwh / top) * BINS as f64).floor();
        let i = if i.is_nan() {
            0
        } else {
            i.clamp(0.0, (BINS - 1) as f64) as usize
        };
        counts[i] += 1;
    }
    Histogram {
        bin_top_kwh: top,
        counts,
    }
}

fn period(name: String, rows: &[&Row], k: usize) -> Period {
    let all = figures(rows, k);
    let group = |key: fn(&Row) -> &str| {
        let mut g: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
        for r in rows {
            g.entry(key(r).to_owned()).or_default().push(r);
        }
        g.into_iter()
            .map(|(name, rs)| (name, figures(&rs, k)))
            .collect::<BTreeMap<_, _>>()
    };
    let published = matches!(all, Cell::Published(_));
    Period {
        period: name,
        histogram: published.then(|| histogram(rows)),
        // A withheld period shows no cells either (they would add up to its figures).
        by_hardware: if published {
            group(|r| &r.hardware)
        } else {
            BTreeMap::new()
        },
        by_members: if published {
            group(|r| &r.members)
        } else {
            BTreeMap::new()
        },
        all,
    }
}

/// Every month and every quarter that has reports, newest first.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Aggregates {
    pub k: usize,
    pub months: Vec<Period>,
    pub quarters: Vec<Period>,
}

pub fn aggregate(rows: &[Row], k: usize) -> Aggregates {
    let mut months: BTreeMap<Month, Vec<&Row>> = BTreeMap::new();
    let mut quarters: BTreeMap<Quarter, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        months.entry(r.month).or_default().push(r);
        quarters.entry(r.month.quarter()).or_default().push(r);
    }
    Aggregates {
        k,
        months: months
            .into_iter()
            .rev()
            .map(|(m, rs)| period(m.to_string(), &rs, k))
            .collect(),
        quarters: quarters
            .into_iter()
            .rev()
            .map(|(q, rs)| period(q.to_string(), &rs, k))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(month: &str, hw: &str, members: &str, kwh: f64) -> Row {
        Row {
            month: Month::parse(month).unwrap(),
            hardware: hw.into(),
            members: members.into(),
            kwh,
            epsilon: 1.0,
            clamp_kwh: 5.0,
        }
    }

    #[test]
    fn groups_and_cells_under_k_are_withheld() {
        let mut rows = Vec::new();
        for i in 0..12 {
            rows.push(row("2025-01", "pi5", "2-5", 3.0 + f64::from(i % 3)));
        }
        for _ in 0..3 {
            rows.push(row("2025-01", "pi4", "1", 2.0));
        }
        // February: nine reports, one short of k.
        for _ in 0..9 {
            rows.push(row("2025-02", "pi5", "2-5", 3.0));
        }
        let a = aggregate(&rows, 10);
        assert_eq!(a.months.len(), 2);
        let feb = &a.months[0];
        assert_eq!(feb.period, "2025-02");
        assert_eq!(feb.all, Cell::Withheld);
        assert!(feb.by_hardware.is_empty() && feb.histogram.is_none());
        let jan = &a.months[1];
        let f = jan.all.figures().unwrap();
        assert_eq!(f.reports, 15);
        assert_eq!(f.total_kwh, 12.0 * 4.0 + 6.0);
        assert_eq!(jan.by_hardware["pi4"], Cell::Withheld);
        assert_eq!(jan.by_hardware["pi5"].figures().unwrap().reports, 12);
        assert_eq!(jan.by_members["1"], Cell::Withheld);
        assert_eq!(
            jan.histogram.as_ref().unwrap().counts.iter().sum::<usize>(),
            15
        );
        // The quarter holds both months: 24 reports, pi4's three still withheld.
        let q = &a.quarters[0];
        assert_eq!(q.period, "2025-Q1");
        assert_eq!(q.all.figures().unwrap().reports, 24);
        assert_eq!(q.by_hardware["pi4"], Cell::Withheld);
        // Nothing in the JSON says how many reports a withheld cell has.
        let json = serde_json::to_string(&q.by_hardware["pi4"]).unwrap();
        assert_eq!(json, r#"{"status":"withheld"}"#);
    }

    #[test]
    fn the_error_bound_is_the_laplace_noise_of_the_mean_at_95_percent() {
        let rows: Vec<Row> = (0..100).map(|_| row("2025-01", "pi5", "1", 3.0)).collect();
        let f = aggregate(&rows, 10).months[0]
            .all
            .figures()
            .unwrap()
            .clone();
        // b = 5, var = 50 per report, σ(mean) = √(100·50)/100 = 0.707; × 1.96 = 1.39.
        assert_eq!(f.mean_error95_kwh, 1.39);
        let ten: Vec<Row> = (0..10).map(|_| row("2025-01", "pi5", "1", 3.0)).collect();
        let f = aggregate(&ten, 10).months[0].all.figures().unwrap().clone();
        assert_eq!(f.mean_error95_kwh, 4.38);
    }

    #[test]
    fn the_bound_holds_for_real_laplace_noise() {
        // Simulated: 2000 means over 20 noised reports; about 95 % within the bound.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let (b, n, trials) = (5.0, 20, 2000);
        let bound = 1.96 * (n as f64 * 2.0 * b * b).sqrt() / n as f64;
        let mut inside = 0;
        for _ in 0..trials {
            let mut sum = 0.0;
            for _ in 0..n {
                let u = uniform() - 0.5;
                sum += -b * u.signum() * (1.0 - 2.0 * u.abs()).ln();
            }
            if (sum / n as f64).abs() <= bound {
                inside += 1;
            }
        }
        let share = f64::from(inside) / f64::from(trials);
        assert!((0.93..=0.97).contains(&share), "{share}");
    }
}
