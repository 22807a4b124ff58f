//! The last hour of power, for the status page's chart: per-minute aggregates in a ring of the
//! 60 closed minutes and the running one, fed with the same pieces as the pending minutes
//! (`LiveObserver::piece`). Pure; the HTTP handlers read it from `LiveMeter`, never the
//! database.
//!
//! The wall clock only labels minutes. If it jumps back by more than the window, the ring
//! starts over (the old labels are meaningless next to the new ones); a small jump back merges
//! into the minute it names, as the pending minutes do.

use super::buckets::{split, Agg};
use super::integrator::Piece;
use std::collections::VecDeque;

/// Closed minutes kept besides the running one.
pub const MINUTES: usize = 60;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentMinutes {
    /// `(minute start in Unix seconds, aggregate)`, strictly increasing by minute.
    ring: VecDeque<(i64, Agg)>,
}

/// One minute of the chart.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinutePower {
    /// Start of the minute, Unix seconds.
    pub minute_s: i64,
    /// Mean power over the metered part of the minute; `None` where nothing was measured
    /// (sensor fault, the supervisor not running).
    pub mean_w: Option<f64>,
}

impl RecentMinutes {
    pub fn add(&mut self, p: &Piece) {
        split(p, |minute, part| self.merge(minute, part));
    }

    fn merge(&mut self, minute: i64, part: &Agg) {
        match self.ring.back_mut() {
            Some((last, agg)) if *last == minute => agg.merge(part),
            Some((last, _)) if minute > *last => self.ring.push_back((minute, *part)),
            Some((last, _)) if minute < *last - (MINUTES as i64) * 60 => {
                self.ring.clear();
                self.ring.push_back((minute, *part));
            }
            Some(_) => match self.ring.binary_search_by_key(&minute, |(m, _)| *m) {
                Ok(i) => self.ring[i].1.merge(part),
                Err(i) => self.ring.insert(i, (minute, *part)),
            },
            None => self.ring.push_back((minute, *part)),
        }
        let newest = self.ring.back().map_or(minute, |(m, _)| *m);
        while self
            .ring
            .front()
            .is_some_and(|(m, _)| *m < newest - (MINUTES as i64) * 60)
        {
            self.ring.pop_front();
        }
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// The hour up to the minute containing `now_s` (Unix seconds): `MINUTES + 1` slots, oldest
    /// first, the last one the running minute.
    pub fn last_hour(&self, now_s: i64) -> Vec<MinutePower> {
        let current = now_s.div_euclid(60) * 60;
        let first = current - (MINUTES as i64) * 60;
        let mut out: Vec<MinutePower> = (0..=MINUTES as i64)
            .map(|i| MinutePower {
                minute_s: first + i * 60,
                mean_w: None,
            })
            .collect();
        for (m, agg) in &self.ring {
            if *m < first || *m > current || agg.measured_seconds <= 0.0 {
                continue;
            }
            if let Some(slot) = out.get_mut(((m - first) / 60) as usize) {
                slot.mean_w = Some(agg.mean_w());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::units::Watts;
    use std::time::Duration;

    use crate::meter::buckets::tests::piece;

    fn gap(end_ms: i64, secs: f64, watts: f64) -> Piece {
        let d = Duration::from_secs_f64(secs);
        Piece {
            end_wall_ms: end_ms,
            duration: d,
            energy: Watts(watts) * d,
            estimated: Watts(watts) * d,
            measured: None,
        }
    }

    fn near(got: Option<f64>, want: f64) -> bool {
        got.is_some_and(|g| (g - want).abs() < 1e-9)
    }

    const T0: i64 = 1_800_000_000_000; // a minute boundary, ms

    #[test]
    fn keeps_the_last_hour_and_the_running_minute() {
        let mut r = RecentMinutes::default();
        // Two hours at 10 s per piece; power rises by 1 W each minute.
        for i in 1..=720 {
            r.add(&piece(T0 + i * 10_000, 10.0, 2.0 + ((i - 1) / 6) as f64));
        }
        assert_eq!(r.len(), MINUTES + 1, "61 minutes, never more");
        // Now is 5 s into minute 120: 120 minutes closed, minute 120 not begun here.
        let now_s = T0 / 1000 + 120 * 60 + 5;
        let h = r.last_hour(now_s);
        assert_eq!(h.len(), MINUTES + 1);
        assert_eq!(h[0].minute_s, T0 / 1000 + 60 * 60);
        assert!(near(h[0].mean_w, 62.0), "{:?}", h[0]);
        assert!(near(h[59].mean_w, 121.0), "{:?}", h[59]);
        assert_eq!(h[60].mean_w, None, "the running minute has no data yet");
    }

    #[test]
    fn the_running_minute_shows_its_mean_so_far() {
        let mut r = RecentMinutes::default();
        r.add(&piece(T0 + 10_000, 10.0, 3.0));
        r.add(&piece(T0 + 20_000, 10.0, 5.0));
        let h = r.last_hour(T0 / 1000 + 25);
        assert!(near(h[60].mean_w, 4.0), "{:?}", h[60]);
        assert!(h[..60].iter().all(|m| m.mean_w.is_none()));
    }

    #[test]
    fn a_minute_with_only_estimated_energy_is_a_gap_in_the_chart() {
        let mut r = RecentMinutes::default();
        r.add(&piece(T0 + 60_000, 60.0, 3.0));
        r.add(&gap(T0 + 120_000, 60.0, 3.0));
        r.add(&piece(T0 + 180_000, 60.0, 3.0));
        let h = r.last_hour(T0 / 1000 + 180);
        assert!(near(h[57].mean_w, 3.0) && near(h[59].mean_w, 3.0));
        assert_eq!(h[58].mean_w, None);
    }

    #[test]
    fn a_wall_clock_jump_back_starts_over_and_a_small_one_merges() {
        let mut r = RecentMinutes::default();
        for i in 1..=10 {
            r.add(&piece(T0 + i * 60_000, 60.0, 3.0));
        }
        // Back by two minutes (NTP correction): merges into the minute it names.
        r.add(&piece(T0 + 8 * 60_000 + 30_000, 30.0, 5.0));
        assert_eq!(r.len(), 10);
        let h = r.last_hour(T0 / 1000 + 10 * 60);
        assert!(near(h[58].mean_w, (3.0 * 60.0 + 5.0 * 30.0) / 90.0));
        // Back by a day (the Pi booted without a clock, then NTP set it): start over.
        r.add(&piece(T0 - 86_400_000, 60.0, 4.0));
        assert_eq!(r.len(), 1);
        let h = r.last_hour((T0 - 86_400_000) / 1000);
        assert!(near(h[59].mean_w, 4.0));
    }
}
