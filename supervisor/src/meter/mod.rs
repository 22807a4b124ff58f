//! The meter: a sampling loop that reads a [`PowerSensor`] on conversion-ready and feeds the
//! [`integrator`], whose pieces are bucketed per minute by [`buckets`].
//!
//! The same [`Sampler`] runs the daemon (real monotonic clock, on its own thread) and `replay`
//! (virtual clock, an hour in a fraction of a second).

pub mod buckets;
pub mod integrator;
pub mod live;
pub mod recent;

use crate::clock::SharedClock;
use crate::power::{PowerSensor, Sample, SensorError};
use integrator::{Integrator, Sink, Totals};
use std::time::Duration;

/// How the sampler reports what happens besides pieces and gaps.
pub trait Observer: Sink {
    /// A good sample was read.
    fn sample(&mut self, _sample: &Sample) {}
    /// The sensor is in fault.
    fn fault(&mut self, _error: &SensorError) {}
    /// The loop is alive (called every iteration; the watchdog feeds on it).
    fn alive(&mut self) {}
}

/// Backoff after a failed read or initialisation: 100 ms doubling to 5 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Reads a sensor in step with its conversions.
///
/// Scheduling: conversions complete one period apart. When a poll found the sensor not ready and
/// the next poll, a small step later, found it ready, the sampler knows the completion time to
/// within a step ("bracketed"), and the next completion is one period later: it wakes then and
/// reads with a single poll. The period itself is learnt from successive bracketed completions,
/// because the chip's oscillator is not the datasheet's. After a few unbracketed samples it wakes
/// two steps early to bracket again, so no conversion is ever overwritten unseen. About 1.5 polls
/// per conversion.
pub struct Sampler<S> {
    sensor: S,
    clock: SharedClock,
    integrator: Integrator,
    wall_ms: Box<dyn Fn(Duration) -> i64 + Send>,
}

/// Wake early to re-bracket the conversion phase after this many unbracketed samples.
const REBRACKET_AFTER: u32 = 3;

impl<S: PowerSensor> Sampler<S> {
    /// `wall_ms` maps a monotonic instant of `clock` to the wall clock's Unix ms (labels only).
    pub fn new(
        sensor: S,
        clock: SharedClock,
        wall_ms: Box<dyn Fn(Duration) -> i64 + Send>,
    ) -> Self {
        let start = clock.now();
        Self::with_start(sensor, clock, wall_ms, start)
    }

    /// As `new`, metering from monotonic instant `start` (e.g. 0 for a trace).
    pub fn with_start(
        sensor: S,
        clock: SharedClock,
        wall_ms: Box<dyn Fn(Duration) -> i64 + Send>,
        start: Duration,
    ) -> Self {
        Self {
            sensor,
            clock,
            integrator: Integrator::new(start),
            wall_ms,
        }
    }

    fn step_of(period: Duration) -> Duration {
        (period / 64).max(Duration::from_micros(500))
    }

    pub fn totals(&self) -> Totals {
        self.integrator.totals()
    }

    pub fn sensor(&self) -> &S {
        &self.sensor
    }

    pub fn sensor_mut(&mut self) -> &mut S {
        &mut self.sensor
    }

    /// Run until `stop()` says so or, with `until`, until the clock reaches it; then close the
    /// books (`finish`) at that instant.
    pub fn run(
        &mut self,
        obs: &mut impl Observer,
        stop: &dyn Fn() -> bool,
        until: Option<Duration>,
        initial_fault: Option<SensorError>,
    ) {
        let period = self.sensor.period();
        let step = Self::step_of(period);
        let mut need_reinit = false;
        let mut backoff = BACKOFF_MIN;
        let mut est = period;
        let mut next = self.clock.now() + period.saturating_sub(step * 2);
        let mut polls_this_cycle = 0u32;
        let mut unbracketed = 0u32;
        let mut samples = 0u64;
        // The last bracketed completion time and the sample count then.
        let mut last_bracket: Option<(Duration, u64)> = None;
        // How early a re-bracketing wake-up comes; doubles while it still finds the sensor ready.
        let mut margin = step * 2;
        if let Some(e) = initial_fault {
            self.on_error(obs, &e);
            need_reinit = true;
            next = self.clock.now() + backoff;
        }
        loop {
            obs.alive();
            if stop() {
                break;
            }
            let now = self.clock.now();
            if let Some(end) = until {
                if now >= end {
                    break;
                }
                next = next.min(end);
            }
            if next > now {
                // Sleep in slices of at most a second so a stop request is seen promptly.
                self.clock.sleep((next - now).min(Duration::from_secs(1)));
                continue;
            }
            if need_reinit {
                match self.sensor.reinit() {
                    Ok(()) => {
                        need_reinit = false;
                        backoff = BACKOFF_MIN;
                        last_bracket = None;
                        next = now + est.saturating_sub(step * 2);
                    }
                    Err(e) => {
                        self.on_error(obs, &e);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        next = now + backoff;
                    }
                }
                continue;
            }
            polls_this_cycle += 1;
            match self.sensor.poll() {
                Ok(Some(s)) => {
                    let at = self.clock.now();
                    samples += 1;
                    // Bracketed: the previous poll, one step ago, found it not ready.
                    let bracketed = polls_this_cycle > 1;
                    polls_this_cycle = 0;
                    let completed = at.saturating_sub(step / 2);
                    if bracketed {
                        unbracketed = 0;
                        margin = step * 2;
                        if let Some((prev, n)) = last_bracket {
                            let k = (samples - n).max(1) as u32;
                            let measured = completed.saturating_sub(prev) / k;
                            // Trust only plausible figures (no conversion lost in between).
                            if measured > period.mul_f64(0.8) && measured < period.mul_f64(1.2) {
                                est = if measured > est {
                                    est + (measured - est) / 4
                                } else {
                                    est - (est - measured) / 4
                                };
                            }
                        }
                        last_bracket = Some((completed, samples));
                    } else {
                        unbracketed += 1;
                    }
                    if s.flags.is_fault() {
                        let e = SensorError::Implausible {
                            at: self.sensor.location(),
                            detail: "current above the shunt's full scale; use a smaller shunt (hardware/README.md)".into(),
                        };
                        self.on_error(obs, &e);
                    } else {
                        backoff = BACKOFF_MIN;
                        let wall = (self.wall_ms)(at);
                        self.integrator.sample(at, wall, &s, obs);
                        obs.sample(&s);
                    }
                    next = if bracketed {
                        completed + est + step / 2
                    } else if unbracketed >= REBRACKET_AFTER {
                        let wake = at + est.saturating_sub(margin);
                        margin = (margin * 2).min(est / 2);
                        wake
                    } else {
                        at + est
                    };
                }
                Ok(None) => next = self.clock.now() + step,
                Err(e) => {
                    polls_this_cycle = 0;
                    self.on_error(obs, &e);
                    need_reinit = true;
                    next = self.clock.now() + backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        let at = match until {
            Some(end) => end,
            None => self.clock.now(),
        };
        let wall = (self.wall_ms)(at);
        self.integrator.finish(at, wall, obs);
    }

    fn on_error(&mut self, obs: &mut impl Observer, e: &SensorError) {
        let at = self.clock.now();
        if self.integrator.open_gap().is_none() {
            tracing::warn!(sensor = %self.sensor.location(), "sensor fault: {e}");
        }
        self.integrator.fault(at, &e.to_string());
        obs.fault(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::config::Ina219Config;
    use crate::meter::integrator::{Gap, Piece};
    use crate::power::ina219::sim::Ina219Sim;
    use crate::power::ina219::Ina219Sensor;
    use crate::power::truth::Constant;
    use crate::power::SensorKind;
    use crate::units::{Amps, Volts};
    use std::sync::Arc;

    /// A sensor whose `period()` is off by a factor, as if the chip's oscillator ran fast or slow.
    struct Skewed<S> {
        inner: S,
        skew: f64,
        polls: u64,
    }

    impl<S: PowerSensor> PowerSensor for Skewed<S> {
        fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
            self.polls += 1;
            self.inner.poll()
        }
        fn period(&self) -> Duration {
            self.inner.period().mul_f64(self.skew)
        }
        fn reinit(&mut self) -> Result<(), SensorError> {
            self.inner.reinit()
        }
        fn kind(&self) -> SensorKind {
            self.inner.kind()
        }
        fn location(&self) -> String {
            self.inner.location()
        }
    }

    #[derive(Default)]
    struct Record {
        gaps: Vec<Gap>,
        faults: Vec<String>,
    }
    impl Sink for Record {
        fn piece(&mut self, _p: Piece) {}
        fn gap(&mut self, g: Gap) {
            self.gaps.push(g);
        }
    }
    impl Observer for Record {
        fn fault(&mut self, e: &SensorError) {
            self.faults.push(e.to_string());
        }
    }

    fn run(volts: f64, amps: f64, skew: f64, secs: f64) -> (Totals, u64, Record) {
        let clock = Arc::new(VirtualClock::new());
        let cfg = Ina219Config::default();
        let truth = Constant {
            volts: Volts(volts),
            amps: Amps(amps),
        };
        let sim = Ina219Sim::new(Box::new(truth), clock.clone(), cfg.shunt_ohms, cfg.address);
        let (sensor, first) =
            Ina219Sensor::new(sim, cfg, Volts(4.63), SensorKind::Simulated, clock.clone()).unwrap();
        first.unwrap();
        let sensor = Skewed {
            inner: sensor,
            skew,
            polls: 0,
        };
        let mut sampler = Sampler::with_start(sensor, clock, Box::new(|_| 0), Duration::ZERO);
        let mut rec = Record::default();
        sampler.run(
            &mut rec,
            &|| false,
            Some(Duration::from_secs_f64(secs)),
            None,
        );
        (sampler.totals(), sampler.sensor().polls, rec)
    }

    #[test]
    fn reads_every_conversion_with_few_polls_even_with_a_drifting_oscillator() {
        // One minute = 874 full cycles of 68.632 ms. The chip's real period may differ from the
        // datasheet's by a few per cent: every conversion must still be read, none overwritten.
        for skew in [1.0, 0.95, 0.98, 1.02, 1.05] {
            let (t, polls, rec) = run(5.0, 0.5, skew, 60.0);
            assert_eq!(t.samples, 874, "skew {skew}");
            assert_eq!(t.estimated.0, 0.0, "skew {skew}: nothing estimated");
            assert!(rec.gaps.is_empty());
            assert!(
                (t.energy.0 - 2.5 / 60.0).abs() < 1e-9,
                "skew {skew}: {:?}",
                t.energy
            );
            let per = polls as f64 / t.samples as f64;
            assert!(per < 2.5, "skew {skew}: {per:.2} polls per conversion");
        }
    }

    #[test]
    fn over_range_current_is_a_gap_whose_reason_suggests_a_smaller_shunt() {
        // 4 A through the default 0.1 Ω shunt saturates the 320 mV range.
        let (t, _, rec) = run(5.0, 4.0, 1.0, 5.0);
        assert_eq!(t.samples, 0);
        assert_eq!(rec.gaps.len(), 1);
        assert!(
            rec.gaps[0].reason.contains("smaller shunt"),
            "{}",
            rec.gaps[0].reason
        );
        assert!(rec.faults.iter().all(|f| f.contains("full scale")));
    }
}
