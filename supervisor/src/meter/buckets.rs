//! Per-minute aggregates, labelled by the wall clock. Pure.
//!
//! A [`Piece`] that spans a minute boundary is split in proportion to time (its power is
//! constant). Aggregates merge associatively, so the same minute written twice (a backwards clock
//! jump, a flush while the minute is still running) adds up instead of overwriting.

use super::integrator::Piece;
use std::collections::BTreeMap;

/// What is kept about one minute (or, rolled up, one hour).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Agg {
    pub energy_wh: f64,
    pub estimated_wh: f64,
    /// Seconds of metered time in this bucket (60 for a full minute).
    pub seconds: f64,
    /// Seconds covered by measured samples, the weight of `volt_seconds`.
    pub measured_seconds: f64,
    /// ∫V dt over the measured time: mean volts = volt_seconds / measured_seconds.
    pub volt_seconds: f64,
    pub min_w: f64,
    pub max_w: f64,
    pub samples: u64,
}

impl Default for Agg {
    fn default() -> Self {
        Self {
            energy_wh: 0.0,
            estimated_wh: 0.0,
            seconds: 0.0,
            measured_seconds: 0.0,
            volt_seconds: 0.0,
            min_w: f64::INFINITY,
            max_w: f64::NEG_INFINITY,
            samples: 0,
        }
    }
}

impl Agg {
    pub fn merge(&mut self, o: &Agg) {
        self.energy_wh += o.energy_wh;
        self.estimated_wh += o.estimated_wh;
        self.seconds += o.seconds;
        self.measured_seconds += o.measured_seconds;
        self.volt_seconds += o.volt_seconds;
        self.min_w = self.min_w.min(o.min_w);
        self.max_w = self.max_w.max(o.max_w);
        self.samples += o.samples;
    }

    pub fn mean_w(&self) -> f64 {
        if self.seconds > 0.0 {
            self.energy_wh * 3600.0 / self.seconds
        } else {
            0.0
        }
    }

    pub fn mean_v(&self) -> Option<f64> {
        (self.measured_seconds > 0.0).then(|| self.volt_seconds / self.measured_seconds)
    }

    /// Min and max are only known where something was measured.
    pub fn min_max(&self) -> Option<(f64, f64)> {
        (self.samples > 0).then_some((self.min_w, self.max_w))
    }
}

/// Start of the minute containing `ms` (Unix ms), in Unix seconds.
pub fn minute_of(ms: i64) -> i64 {
    ms.div_euclid(60_000) * 60
}

/// Pending per-minute aggregates, keyed by the minute's start in Unix seconds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Minutes {
    map: BTreeMap<i64, Agg>,
}

impl Minutes {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &Agg)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    pub fn take(&mut self) -> Minutes {
        std::mem::take(self)
    }

    /// Split off the minutes starting at or after `from_s` (Unix seconds): a batch cut at a
    /// minute boundary.
    pub fn split_off(&mut self, from_s: i64) -> Minutes {
        Minutes {
            map: self.map.split_off(&from_s),
        }
    }

    /// Merge another set back in (a failed write goes back into the pending set).
    pub fn merge(&mut self, other: Minutes) {
        for (k, v) in other.map {
            self.map.entry(k).or_default().merge(&v);
        }
    }

    /// Sum of energy in minutes starting at or after `from_s` (Unix seconds).
    pub fn energy_since(&self, from_s: i64) -> f64 {
        self.map.range(from_s..).map(|(_, a)| a.energy_wh).sum()
    }

    pub fn energy(&self) -> f64 {
        self.map.values().map(|a| a.energy_wh).sum()
    }

    /// Add a piece, splitting it over the minutes its wall-clock span touches.
    pub fn add(&mut self, p: &Piece) {
        split(p, |minute, part| {
            self.map.entry(minute).or_default().merge(part)
        });
    }
}

/// Split a piece over the minutes its wall-clock span touches, in proportion to time (its power
/// is constant): `f(minute start in Unix seconds, the part in that minute)`, oldest first. A
/// measured sample is counted once, in the minute where its piece ends; a zero-length piece
/// only counts as seen.
pub fn split(p: &Piece, mut f: impl FnMut(i64, &Agg)) {
    let total_ms = p.duration.as_secs_f64() * 1000.0;
    if total_ms <= 0.0 {
        if let Some((w, _)) = p.measured {
            let part = Agg {
                samples: 1,
                min_w: w.0,
                max_w: w.0,
                ..Agg::default()
            };
            f(minute_of(p.end_wall_ms), &part);
        }
        return;
    }
    let end = p.end_wall_ms as f64;
    let start = end - total_ms;
    let mut cursor = start;
    while cursor < end {
        let minute = minute_of(cursor.floor() as i64);
        let next = ((minute + 60) * 1000) as f64;
        let upto = next.min(end);
        let frac = (upto - cursor) / total_ms;
        let secs = (upto - cursor) / 1000.0;
        let mut part = Agg {
            energy_wh: p.energy.0 * frac,
            estimated_wh: p.estimated.0 * frac,
            seconds: secs,
            ..Agg::default()
        };
        if let Some((w, v)) = p.measured {
            part.measured_seconds = secs;
            part.volt_seconds = v.0 * secs;
            part.min_w = w.0;
            part.max_w = w.0;
            if upto >= end {
                part.samples = 1;
            }
        }
        f(minute, &part);
        cursor = upto;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::units::{Volts, WattHours, Watts};
    use std::time::Duration;

    /// A measured piece of `secs` at `watts`, ending at wall `end_ms` (also used by `recent`).
    pub(crate) fn piece(end_ms: i64, secs: f64, watts: f64) -> Piece {
        let d = Duration::from_secs_f64(secs);
        Piece {
            end_wall_ms: end_ms,
            duration: d,
            energy: Watts(watts) * d,
            estimated: WattHours::ZERO,
            measured: Some((Watts(watts), Volts(5.0))),
        }
    }

    #[test]
    fn a_piece_across_a_minute_boundary_is_split_by_time() {
        let mut m = Minutes::default();
        // 90 s at 3.6 W ending at 00:02:00 → 30 s in minute 0, 60 s in minute 1.
        m.add(&piece(120_000, 90.0, 3.6));
        let got: Vec<(i64, f64, f64)> =
            m.iter().map(|(k, a)| (k, a.energy_wh, a.seconds)).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0);
        assert!((got[0].1 - 0.03).abs() < 1e-12 && (got[0].2 - 30.0).abs() < 1e-9);
        assert_eq!(got[1].0, 60);
        assert!((got[1].1 - 0.06).abs() < 1e-12 && (got[1].2 - 60.0).abs() < 1e-9);
        assert!((m.energy() - 0.09).abs() < 1e-12);
        // One sample, counted once.
        assert_eq!(m.iter().map(|(_, a)| a.samples).sum::<u64>(), 1);
    }

    #[test]
    fn the_same_minute_twice_adds_up() {
        let mut m = Minutes::default();
        m.add(&piece(30_000, 10.0, 2.0));
        m.add(&piece(30_000, 10.0, 4.0)); // the clock went back
        let (_, a) = m.iter().next().unwrap();
        assert_eq!(a.samples, 2);
        assert!((a.seconds - 20.0).abs() < 1e-9);
        assert_eq!(a.min_max(), Some((2.0, 4.0)));
        assert!((a.mean_w() - 3.0).abs() < 1e-9);
        assert_eq!(a.mean_v(), Some(5.0));
    }

    #[test]
    fn negative_wall_times_before_the_epoch_bucket_correctly() {
        assert_eq!(minute_of(-1), -60);
        assert_eq!(minute_of(59_999), 0);
        assert_eq!(minute_of(60_000), 60);
    }

    #[test]
    fn merging_sets_is_the_same_as_adding_to_one() {
        let mut a = Minutes::default();
        let mut b = Minutes::default();
        let mut both = Minutes::default();
        for k in 0..50 {
            let p = piece(k * 7_000, 7.0, 1.0 + k as f64);
            if k % 3 == 0 {
                a.add(&p)
            } else {
                b.add(&p)
            }
            both.add(&p);
        }
        a.merge(b);
        assert_eq!(a.len(), both.len());
        assert!((a.energy() - both.energy()).abs() < 1e-12);
    }
}
