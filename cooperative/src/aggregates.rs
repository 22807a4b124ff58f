//! What the site publishes of the boxes' anonymous energy reports: per month and per quarter,
//! the number of reports, total and mean kWh, a distribution, and the same by hardware class
//! and by member bucket — each group and each cell only when at least `k` reports are in it
//! (PRODUCT.md §6: "aggregates only over at least k appliances").
//!
//! The noise's error bound. Each report's kWh carries Laplace noise of scale `b = clamp / ε`:
//! the box clamps its monthly total to `clamp` kWh, the most its board can draw in that month
//! (`report_wire::Hardware::max_kwh` of the month's hours: the class's supply rating × hours,
//! the one definition box and collector share), so one household changes the value by at most
//! `clamp` (sensitivity `clamp`), and `Lap(clamp/ε)` makes one report ε-differentially
//! private. A Laplace variable has variance `2b²`; the noise in a total over n reports has
//! variance `Σ 2bᵢ²`, in a mean `Σ 2bᵢ² / n²`. Each report brings its own `bᵢ` (its class,
//! its month's length, its ε), so a mixed group — Pi 3 and mini PCs, February and March, ε = 1
//! and ε = 2 — is summed report by report, never with one clamp for all. For n ≥ k (10 by
//! default) the sum of independent Laplace noises is close to normal (its excess kurtosis is
//! at most 3/n, for equal `bᵢ`), so the site states ± 1.96·σ as the 95 % bound of the noise:
//! `± 1.96 · √(Σ 2bᵢ²) / n` for a mean. With ε = 1, Pi 4 boxes in a 31-day month (clamp
//! 15.3 W × 744 h = 11.38 kWh) give ± 10.0 kWh for a mean over 10 reports, ± 3.2 kWh over 100.
//! The bound covers the added noise only: the clamp (only a class-`other` machine drawing
//! more than 65 W can exceed it, and then reports the clamp) and rounding to 0.1 kWh add a
//! small bias that is not in it, and which boxes report at all (opt-in) is not a sample of
//! anything.
//!
//! Pure: plain data in, plain data out; `site/` renders it.

use std::collections::BTreeMap;

use report_wire::Hardware;

use crate::ledger::{Month, Quarter};

/// The figures of one report that the aggregates use (nothing that names a box).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub month: Month,
    pub hardware: Hardware,
    pub members: String,
    /// Noised, clamped, rounded total of the month.
    pub kwh: f64,
    pub epsilon: f64,
    /// The clamp the box applied (kWh), from its class and its month ([`Row::new`]): with ε,
    /// the noise's scale.
    clamp_kwh: f64,
}

impl Row {
    /// A stored report's figures; `None` for a month or class that is not one (the collector
    /// stores only reports `report_wire::parse` accepted, so this does not happen).
    pub fn new(
        month: &str,
        hardware: &str,
        members: String,
        kwh: f64,
        epsilon: f64,
    ) -> Option<Row> {
        let hardware = Hardware::ALL.into_iter().find(|h| h.as_str() == hardware)?;
        let clamp_kwh = hardware.max_kwh(report_wire::month_hours(month)?);
        Some(Row {
            month: Month::parse(month)?,
            hardware,
            members,
            kwh,
            epsilon,
            clamp_kwh,
        })
    }

    /// The clamp of this report: its class's supply rating × its month's hours.
    pub fn clamp_kwh(&self) -> f64 {
        self.clamp_kwh
    }

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
            group(|r| r.hardware.as_str())
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
        Row::new(month, hw, members.into(), kwh, 1.0).unwrap()
    }

    #[test]
    fn the_clamp_is_report_wires_of_the_class_and_the_month() {
        assert_eq!(
            row("2025-01", "pi5", "1", 0.0).clamp_kwh(),
            25.5 * 744.0 / 1000.0
        );
        assert_eq!(
            row("2024-02", "pi3", "1", 0.0).clamp_kwh(),
            12.75 * 696.0 / 1000.0
        );
        assert_eq!(
            row("2025-02", "other", "1", 0.0).clamp_kwh(),
            65.0 * 672.0 / 1000.0
        );
        for (month, hw) in [("2025-13", "pi4"), ("2025-01", "pi6"), ("25-01", "pi4")] {
            assert!(
                Row::new(month, hw, "1".into(), 1.0, 1.0).is_none(),
                "{month} {hw}"
            );
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
        // b = 25.5 W × 744 h = 18.972 kWh, var = 2b² per report,
        // σ(mean) = √(100·2b²)/100 = 2.683; × 1.96 = 5.26.
        assert_eq!(f.mean_error95_kwh, 5.26);
        assert_eq!(f.total_error95_kwh, 525.9);
        let ten: Vec<Row> = (0..10).map(|_| row("2025-01", "pi5", "1", 3.0)).collect();
        let f = aggregate(&ten, 10).months[0].all.figures().unwrap().clone();
        assert_eq!(f.mean_error95_kwh, 16.63);
    }

    #[test]
    fn a_mixed_group_sums_each_reports_own_noise() {
        // A quarter of Pi 3 reports from January (744 h) and February 2024 (696 h), ε = 1, and
        // mini PCs from March (744 h) with ε = 2: bᵢ = clampᵢ/εᵢ, report by report.
        let mut rows = Vec::new();
        for _ in 0..6 {
            rows.push(row("2024-01", "pi3", "1", 5.0));
            rows.push(row("2024-02", "pi3", "1", 5.0));
        }
        for _ in 0..8 {
            rows.push(Row::new("2024-03", "other", "2-5".into(), 20.0, 2.0).unwrap());
        }
        let q = aggregate(&rows, 10).quarters[0].clone();
        let f = q.all.figures().unwrap();
        let b = |w: f64, h: f64, e: f64| w * h / 1000.0 / e;
        let sum = 6.0 * 2.0 * b(12.75, 744.0, 1.0).powi(2)
            + 6.0 * 2.0 * b(12.75, 696.0, 1.0).powi(2)
            + 8.0 * 2.0 * b(65.0, 744.0, 2.0).powi(2);
        assert_eq!(f.mean_error95_kwh, round(1.96 * sum.sqrt() / 20.0, 2));
        assert_eq!(f.mean_error95_kwh, 10.45);
        assert_eq!(f.total_error95_kwh, 209.1);
        // Each cell with its own reports: the Pi 3 cell's bound knows nothing of the mini PCs.
        let pi3 = q.by_hardware["pi3"].figures().unwrap();
        let pi3_sum =
            6.0 * 2.0 * b(12.75, 744.0, 1.0).powi(2) + 6.0 * 2.0 * b(12.75, 696.0, 1.0).powi(2);
        assert_eq!(pi3.mean_error95_kwh, round(1.96 * pi3_sum.sqrt() / 12.0, 2));
        // The histogram reaches to the largest clamp in the group.
        assert_eq!(q.histogram.unwrap().bin_top_kwh, 65.0 * 744.0 / 1000.0);
    }

    /// A xorshift's uniform draws in [0, 1), and a Laplace draw of scale `b` from one.
    fn laplace_source() -> impl FnMut(f64) -> f64 {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        move |b| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            -b * u.signum() * (1.0 - 2.0 * u.abs()).ln()
        }
    }

    #[test]
    fn the_bound_holds_for_real_laplace_noise() {
        // Simulated: 2000 means over 20 noised reports; about 95 % within the bound.
        let mut laplace = laplace_source();
        let (b, n, trials) = (Hardware::Pi4.max_kwh(744.0), 20, 2000);
        let bound = 1.96 * (n as f64 * 2.0 * b * b).sqrt() / n as f64;
        let mut inside = 0;
        for _ in 0..trials {
            let sum: f64 = (0..n).map(|_| laplace(b)).sum();
            if (sum / n as f64).abs() <= bound {
                inside += 1;
            }
        }
        let share = f64::from(inside) / f64::from(trials);
        assert!((0.93..=0.97).contains(&share), "{share}");
    }

    #[test]
    fn the_mixed_bound_holds_for_real_laplace_noise() {
        // The group of a_mixed_group_sums_each_reports_own_noise, noised for real 2000 times:
        // the mean's noise stays within the bound the site states about 95 % of the time (one
        // clamp for all, the smallest or the largest, would be far off either way).
        let mut rows = Vec::new();
        for _ in 0..6 {
            rows.push(row("2024-01", "pi3", "1", 0.0));
            rows.push(row("2024-02", "pi3", "1", 0.0));
        }
        for _ in 0..8 {
            rows.push(Row::new("2024-03", "other", "1".into(), 0.0, 2.0).unwrap());
        }
        let refs: Vec<&Row> = rows.iter().collect();
        let bound = figures(&refs, 10).figures().unwrap().mean_error95_kwh;
        let mut laplace = laplace_source();
        let trials = 2000;
        let mut inside = 0;
        for _ in 0..trials {
            let sum: f64 = rows
                .iter()
                .map(|r| laplace(r.clamp_kwh() / r.epsilon))
                .sum();
            if (sum / rows.len() as f64).abs() <= bound {
                inside += 1;
            }
        }
        let share = f64::from(inside) / f64::from(trials);
        assert!((0.93..=0.97).contains(&share), "{share}");
    }
}
