//! The meter: a sampling loop that reads a [`PowerSensor`] on conversion-ready and feeds the
//! [`integrator`], whose pieces are bucketed per minute by [`buckets`].
//!
//! The same [`Sampler`] runs the daemon (real monotonic clock, on its own thread) and `replay`
//! (virtual clock, an hour in a fraction of a second).

pub mod buckets;
pub mod integrator;
pub mod live;

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
/// Scheduling: after a sample at `r`, the next conversion completes about one period later. The
/// sampler wakes `lead` before that and polls in small steps until the sensor is ready, so it reads
/// each conversion soon after it completes and never lets one be overwritten unseen. `lead` adapts
/// to the chip's own oscillator: if the first poll of a cycle is already ready (we were late), the
/// lead grows; if several polls were needed, it shrinks.
pub struct Sampler<S> {
    sensor: S,
    clock: SharedClock,
    integrator: Integrator,
    wall_ms: Box<dyn Fn(Duration) -> i64 + Send>,
    lead: Duration,
}

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
        let step = Self::step_of(sensor.period());
        Self {
            sensor,
            clock,
            integrator: Integrator::new(start),
            wall_ms,
            lead: step,
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
        let mut next = self.clock.now() + period.saturating_sub(self.lead);
        let mut polls_this_cycle = 0u32;
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
                        next = now + period.saturating_sub(self.lead);
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
                    if polls_this_cycle == 1 {
                        self.lead = (self.lead + step).min(period / 2);
                    } else if polls_this_cycle > 3 {
                        self.lead = self.lead.saturating_sub(step / 2);
                    }
                    polls_this_cycle = 0;
                    if s.flags.is_fault() {
                        let e = SensorError::Implausible {
                            at: self.sensor.location(),
                            detail: if s.flags.over_range {
                                "current above the shunt's full scale; use a smaller shunt (hardware/README.md)".into()
                            } else {
                                "the chip's current/power arithmetic overflowed; use a smaller shunt or a larger max_current_a".into()
                            },
                        };
                        self.on_error(obs, &e);
                    } else {
                        backoff = BACKOFF_MIN;
                        let wall = (self.wall_ms)(at);
                        self.integrator.sample(at, wall, &s, obs);
                        obs.sample(&s);
                    }
                    next = at + period.saturating_sub(self.lead);
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
