//! Energy integration over conversion windows, on a monotonic clock. Pure: no IO, no clock.
//!
//! Each good sample stands for the time since the previous one (`P × Δt`, Δt from the monotonic
//! clock), so the covered time telescopes to exactly the metered time: nothing is created or
//! lost however the polls jitter, and wall-clock jumps cannot enter at all (the wall clock only
//! labels the pieces, see [`Piece::end_wall_ms`]).
//!
//! What was not measured is estimated and said so:
//! - a sensor fault opens a gap; when the sensor is back, the gap's energy is the mean of the
//!   power before and after it times its length, all of it counted as estimated;
//! - a sample that arrives more than two windows after the previous one means conversions were
//!   overwritten unseen; the time beyond its own window is estimated with its power.

use crate::power::Sample;
use crate::units::{Volts, WattHours, Watts};
use std::time::Duration;

/// A stretch of metered time, ready to be put into wall-clock buckets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    /// Wall-clock label (Unix ms) of the end of the stretch.
    pub end_wall_ms: i64,
    pub duration: Duration,
    pub energy: WattHours,
    /// The part of `energy` that was estimated rather than measured.
    pub estimated: WattHours,
    /// The measured sample behind this piece, if any (for min/max/mean figures).
    pub measured: Option<(Watts, Volts)>,
}

/// A closed sensor gap.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub end_wall_ms: i64,
    pub duration: Duration,
    pub estimated: WattHours,
    pub reason: String,
}

/// Running totals since the integrator started.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Totals {
    pub energy: WattHours,
    pub estimated: WattHours,
    pub samples: u64,
    pub peak: Watts,
    pub gap: Duration,
    pub gaps: u64,
}

#[derive(Debug, Clone, Copy)]
struct Last {
    at: Duration,
    watts: Watts,
}

#[derive(Debug, Clone)]
struct OpenGap {
    since: Duration,
    watts_before: Option<Watts>,
    reason: String,
}

/// Consumes samples and faults in monotonic order and emits [`Piece`]s and [`Gap`]s.
#[derive(Debug, Clone)]
pub struct Integrator {
    start: Duration,
    last: Option<Last>,
    gap: Option<OpenGap>,
    totals: Totals,
}

/// Where the integrator's output goes.
pub trait Sink {
    fn piece(&mut self, piece: Piece);
    fn gap(&mut self, _gap: Gap) {}
}

impl<F: FnMut(Piece)> Sink for F {
    fn piece(&mut self, piece: Piece) {
        self(piece)
    }
}

impl Integrator {
    /// Metering starts at monotonic time `start` (when the sensor began converting).
    pub fn new(start: Duration) -> Self {
        Self {
            start,
            last: None,
            gap: None,
            totals: Totals::default(),
        }
    }

    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// The reason of the gap in progress, if the sensor is in fault now.
    pub fn open_gap(&self) -> Option<&str> {
        self.gap.as_ref().map(|g| g.reason.as_str())
    }

    fn anchor(&self) -> Duration {
        self.last.map_or(self.start, |l| l.at)
    }

    fn emit(&mut self, sink: &mut impl Sink, piece: Piece) {
        self.totals.energy += piece.energy;
        self.totals.estimated += piece.estimated;
        sink.piece(piece);
    }

    /// Account a gap: its estimated energy as a piece, and the gap itself.
    fn close_gap(
        &mut self,
        sink: &mut impl Sink,
        end_wall_ms: i64,
        duration: Duration,
        energy: WattHours,
        reason: String,
    ) {
        if !duration.is_zero() {
            self.emit(
                sink,
                Piece {
                    end_wall_ms,
                    duration,
                    energy,
                    estimated: energy,
                    measured: None,
                },
            );
        }
        self.totals.gap += duration;
        self.totals.gaps += 1;
        sink.gap(Gap {
            end_wall_ms,
            duration,
            estimated: energy,
            reason,
        });
    }

    /// A good sample taken at monotonic time `at`, wall-clock `wall_ms`.
    pub fn sample(&mut self, at: Duration, wall_ms: i64, s: &Sample, sink: &mut impl Sink) {
        let anchor = self.anchor();
        let at = at.max(anchor);
        let mut own_start = anchor;
        if let Some(gap) = self.gap.take() {
            // The gap ends where this sample's own window begins.
            let gap_end = at.saturating_sub(s.window).max(gap.since);
            let duration = gap_end - gap.since;
            let before = gap.watts_before.unwrap_or(s.watts);
            let mean = Watts((before.0 + s.watts.0) / 2.0);
            let energy = mean * duration;
            let end_wall_ms = wall_ms - ms(at - gap_end);
            self.close_gap(sink, end_wall_ms, duration, energy, gap.reason);
            own_start = gap_end;
        }
        let dt = at - own_start;
        let energy = s.watts * dt;
        // More than two windows since the previous sample: conversions were overwritten unseen.
        let estimated = if dt > s.window * 2 {
            s.watts * (dt - s.window)
        } else {
            WattHours::ZERO
        };
        self.emit(
            sink,
            Piece {
                end_wall_ms: wall_ms,
                duration: dt,
                energy,
                estimated,
                measured: Some((s.watts, s.volts)),
            },
        );
        self.totals.samples += 1;
        if s.watts > self.totals.peak {
            self.totals.peak = s.watts;
        }
        self.last = Some(Last { at, watts: s.watts });
    }

    /// The sensor failed at `at`. Opens a gap (or extends the open one).
    pub fn fault(&mut self, at: Duration, reason: &str) {
        let _ = at;
        if self.gap.is_none() {
            self.gap = Some(OpenGap {
                since: self.anchor(),
                watts_before: self.last.map(|l| l.watts),
                reason: reason.to_string(),
            });
        }
    }

    /// Metering ends at `at` (shutdown, end of a trace). The time since the last sample is
    /// estimated with the last power; an open gap is closed with the power before it.
    pub fn finish(&mut self, at: Duration, wall_ms: i64, sink: &mut impl Sink) {
        let anchor = self.anchor();
        let at = at.max(anchor);
        let dt = at - anchor;
        if let Some(gap) = self.gap.take() {
            let energy = gap.watts_before.map_or(WattHours::ZERO, |w| w * dt);
            self.close_gap(sink, wall_ms, dt, energy, gap.reason);
        } else if let Some(last) = self.last {
            // The tail after the last conversion: the conversion in progress, not yet readable.
            if !dt.is_zero() {
                let energy = last.watts * dt;
                self.emit(
                    sink,
                    Piece {
                        end_wall_ms: wall_ms,
                        duration: dt,
                        energy,
                        estimated: WattHours::ZERO,
                        measured: None,
                    },
                );
            }
        }
        self.last = Some(Last {
            at,
            watts: self.last.map_or(Watts::ZERO, |l| l.watts),
        });
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::SampleFlags;
    use crate::units::Amps;

    fn sample(watts: f64, window_ms: u64) -> Sample {
        Sample {
            volts: Volts(5.0),
            amps: Amps(watts / 5.0),
            watts: Watts(watts),
            window: Duration::from_millis(window_ms),
            flags: SampleFlags::default(),
        }
    }

    #[derive(Default)]
    struct Collect {
        pieces: Vec<Piece>,
        gaps: Vec<Gap>,
    }
    impl Sink for Collect {
        fn piece(&mut self, p: Piece) {
            self.pieces.push(p);
        }
        fn gap(&mut self, g: Gap) {
            self.gaps.push(g);
        }
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn constant_power_integrates_exactly_whatever_the_poll_jitter() {
        let mut i = Integrator::new(Duration::ZERO);
        let mut out = Collect::default();
        let mut t = Duration::ZERO;
        for k in 0..3600u64 {
            // Irregular intervals averaging one second.
            t += Duration::from_millis(if k % 2 == 0 { 700 } else { 1300 });
            i.sample(t, 0, &sample(3.6, 1000), &mut out);
        }
        let total = i.totals();
        assert!((total.energy.0 - 3.6).abs() < 1e-9, "{:?}", total.energy);
        assert_eq!(total.estimated, WattHours::ZERO);
        assert_eq!(total.samples, 3600);
        let covered: Duration = out.pieces.iter().map(|p| p.duration).sum();
        assert_eq!(covered, t);
    }

    #[test]
    fn a_gap_is_filled_with_the_neighbouring_mean_and_counted_as_estimated() {
        let mut i = Integrator::new(Duration::ZERO);
        let mut out = Collect::default();
        i.sample(S(1), 1_000, &sample(2.0, 1000), &mut out);
        i.fault(S(2), "NACK");
        i.fault(S(5), "NACK");
        assert_eq!(i.open_gap(), Some("NACK"));
        // Back at t = 11 s: its own window is [10, 11]; the gap is [1, 10].
        i.sample(S(11), 11_000, &sample(4.0, 1000), &mut out);
        assert_eq!(i.open_gap(), None);
        let t = i.totals();
        let gap_wh = 3.0 * 9.0 / 3600.0;
        assert!((t.estimated.0 - gap_wh).abs() < 1e-12);
        let want = (2.0 * 1.0 + gap_wh * 3600.0 + 4.0 * 1.0) / 3600.0;
        assert!((t.energy.0 - want).abs() < 1e-12);
        assert_eq!(t.gap, S(9));
        assert_eq!(out.gaps.len(), 1);
        assert_eq!(out.gaps[0].reason, "NACK");
        assert_eq!(out.gaps[0].end_wall_ms, 10_000);
    }

    #[test]
    fn a_late_sample_estimates_the_conversions_it_did_not_see() {
        let mut i = Integrator::new(Duration::ZERO);
        let mut out = Collect::default();
        i.sample(Duration::from_millis(100), 0, &sample(3.0, 100), &mut out);
        // Next one 1 s later: 900 ms were not measured.
        i.sample(Duration::from_millis(1100), 0, &sample(3.0, 100), &mut out);
        let t = i.totals();
        assert!((t.energy.0 - 3.0 * 1.1 / 3600.0).abs() < 1e-12);
        assert!((t.estimated.0 - 3.0 * 0.9 / 3600.0).abs() < 1e-12);
    }

    #[test]
    fn finish_closes_an_open_gap_with_the_power_before_it() {
        let mut i = Integrator::new(Duration::ZERO);
        let mut out = Collect::default();
        i.sample(S(1), 0, &sample(6.0, 1000), &mut out);
        i.fault(S(2), "timeout");
        i.finish(S(3601), 0, &mut out);
        let t = i.totals();
        assert!((t.energy.0 - 6.0 * 3601.0 / 3600.0).abs() < 1e-9);
        assert!((t.estimated.0 - 6.0).abs() < 1e-9);
        assert_eq!(t.gap, S(3600));
    }

    #[test]
    fn a_sensor_that_never_answered_estimates_nothing_but_records_the_gap() {
        let mut i = Integrator::new(Duration::ZERO);
        let mut out = Collect::default();
        i.fault(S(1), "NACK");
        i.finish(S(60), 0, &mut out);
        assert_eq!(i.totals().energy, WattHours::ZERO);
        assert_eq!(i.totals().gap, S(60));
        assert_eq!(out.gaps.len(), 1);
    }

    #[test]
    fn wall_clock_jumps_do_not_change_energy() {
        // Same monotonic sequence, wildly different wall labels: same energy.
        let run = |walls: &[i64]| {
            let mut i = Integrator::new(Duration::ZERO);
            let mut out = Collect::default();
            for (k, w) in walls.iter().enumerate() {
                i.sample(S(k as u64 + 1), *w, &sample(5.0, 1000), &mut out);
            }
            i.totals().energy
        };
        let steady: Vec<i64> = (1..=100).map(|k| k * 1000).collect();
        let jumpy: Vec<i64> = (1..=100)
            .map(|k| {
                if k < 50 {
                    k * 1000
                } else {
                    1_800_000_000_000 + k * 1000
                }
            })
            .collect();
        let back: Vec<i64> = (1..=100)
            .map(|k| if k < 50 { k * 1000 } else { -k })
            .collect();
        assert_eq!(run(&steady), run(&jumpy));
        assert_eq!(run(&steady), run(&back));
    }
}
