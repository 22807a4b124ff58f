//! `hearth-supervisor replay`: the offline measurement path.
//!
//! A trace drives the register-level INA219 simulator in virtual time; the same driver, sampler
//! and integrator as the daemon read it. An hour replays in a fraction of a second.

use crate::clock::{SharedClock, VirtualClock};
use crate::config::Config;
use crate::meter::buckets::Minutes;
use crate::meter::integrator::{Piece, Sink};
use crate::meter::{Observer, Sampler};
use crate::power::ina219::sim::Ina219Sim;
use crate::power::ina219::Ina219Sensor;
use crate::power::trace::Trace;
use crate::power::{SensorError, SensorKind};
use crate::units::Volts;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// What `replay` prints (PRODUCT.md §4), one JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReplayReport {
    pub energy_wh: f64,
    pub duration_s: f64,
    pub samples: u64,
    pub mean_w: f64,
    pub peak_w: f64,
    pub gap_s: f64,
}

/// Replay a trace through the daemon's measurement path. `faults` may inject bus faults at
/// given virtual times (tests); the daemon's code handles them as it would live.
pub fn replay(trace: Trace, config: &Config) -> Result<ReplayReport, SensorError> {
    replay_with(trace, config, |_| {})
}

/// As [`replay`], with access to the simulator's fault handle before the run starts.
pub fn replay_with(
    trace: Trace,
    config: &Config,
    setup: impl FnOnce(&mut ReplayHooks),
) -> Result<ReplayReport, SensorError> {
    replay_inner(trace, config, 0, setup).map(|(report, _)| report)
}

/// As [`replay`], with the energy in per-minute buckets (the daemon's `meter::buckets`)
/// labelled by wall-clock time `start_wall_ms + t` (Unix ms of the trace's `t_s = 0`): the
/// `account` command's power minutes.
pub fn replay_minutes(
    trace: Trace,
    config: &Config,
    start_wall_ms: i64,
) -> Result<(ReplayReport, Minutes), SensorError> {
    replay_inner(trace, config, start_wall_ms, |_| {})
}

fn replay_inner(
    trace: Trace,
    config: &Config,
    start_wall_ms: i64,
    setup: impl FnOnce(&mut ReplayHooks),
) -> Result<(ReplayReport, Minutes), SensorError> {
    let vclock = Arc::new(VirtualClock::new());
    let clock: SharedClock = vclock.clone();
    let duration_s = trace.duration_s();
    let cfg = &config.power;
    let sim = Ina219Sim::new(
        Box::new(trace),
        clock.clone(),
        cfg.ina219.shunt_ohms,
        cfg.ina219.address,
    );
    let faults = sim.faults();
    let (sensor, first) = Ina219Sensor::new(
        sim,
        cfg.ina219.clone(),
        Volts(cfg.under_voltage_v),
        SensorKind::Simulated,
        clock.clone(),
    )?;
    first?;
    let mut hooks = ReplayHooks {
        faults,
        clock: vclock,
        schedule: Vec::new(),
    };
    setup(&mut hooks);
    let mut sampler = Sampler::with_start(
        sensor,
        clock,
        // Labels rounded up to the ms: a piece starts at `end − duration`, so no sliver of
        // the first one falls before `start_wall_ms` (outside the `account` period).
        Box::new(move |t| {
            i64::try_from(t.as_nanos().div_ceil(1_000_000))
                .unwrap_or(i64::MAX)
                .saturating_add(start_wall_ms)
        }),
        Duration::ZERO,
    );
    let mut obs = FaultSchedule {
        hooks,
        minutes: Minutes::default(),
    };
    sampler.run(
        &mut obs,
        &|| false,
        Some(Duration::from_secs_f64(duration_s)),
        None,
    );
    let t = sampler.totals();
    let report = ReplayReport {
        energy_wh: t.energy.0,
        duration_s,
        samples: t.samples,
        mean_w: if duration_s > 0.0 {
            t.energy.0 * 3600.0 / duration_s
        } else {
            0.0
        },
        peak_w: t.peak.0,
        gap_s: t.gap.as_secs_f64(),
    };
    Ok((report, obs.minutes))
}

/// Fault injection for replays: at each virtual time, set (or clear) a bus fault.
pub struct ReplayHooks {
    pub faults: crate::power::ina219::sim::FaultHandle,
    pub clock: Arc<VirtualClock>,
    /// `(from, to, fault)`: the fault holds in `[from, to)` of virtual time.
    pub schedule: Vec<(Duration, Duration, crate::power::ina219::sim::BusFault)>,
}

struct FaultSchedule {
    hooks: ReplayHooks,
    minutes: Minutes,
}

impl Sink for FaultSchedule {
    fn piece(&mut self, piece: Piece) {
        self.minutes.add(&piece);
    }
}

impl Observer for FaultSchedule {
    fn alive(&mut self) {
        use crate::clock::Clock;
        let now = self.hooks.clock.now();
        let active = self
            .hooks
            .schedule
            .iter()
            .find(|(from, to, _)| *from <= now && now < *to)
            .map(|(_, _, f)| f.clone());
        self.hooks.faults.set(active);
    }
}
