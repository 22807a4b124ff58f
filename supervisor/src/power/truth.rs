//! Ground-truth electrical signals that the INA219 simulator measures.
//!
//! A [`GroundTruth`] is the real world on the far side of the shunt: the load-side bus voltage and
//! the current, as functions of time in seconds since the simulator started. The simulator asks
//! for window means because that is what the chip's integrating ADC reports.

/// The load's voltage and current over time (seconds since start).
pub trait GroundTruth: Send {
    /// Mean load-side voltage over `[t0, t1)`, `t1 > t0`. Past the end of a finite signal the last
    /// value holds.
    fn mean_volts(&mut self, t0: f64, t1: f64) -> f64;
    /// Mean current through the shunt over `[t0, t1)`.
    fn mean_amps(&mut self, t0: f64, t1: f64) -> f64;
    /// Where a finite signal ends (a trace's last row), `None` for a live one.
    fn end(&self) -> Option<f64>;
}

use crate::clock::{MonotonicClock, SharedClock};
use crate::units::{Amps, Volts, Watts};
use std::sync::Arc;
use std::time::Duration;

/// A signal that never changes: a fixed simulated load, and the simplest test input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Constant {
    pub volts: Volts,
    pub amps: Amps,
}

impl GroundTruth for Constant {
    fn mean_volts(&mut self, _t0: f64, _t1: f64) -> f64 {
        self.volts.get()
    }
    fn mean_amps(&mut self, _t0: f64, _t1: f64) -> f64 {
        self.amps.get()
    }
    fn end(&self) -> Option<f64> {
        None
    }
}

/// The supply path as the INA219 sees it: a stiff source behind a series resistance (cable,
/// connectors and the shunt), so the load-side voltage droops as the current rises.
///
/// The same model generates the shipped traces (`testdata/traces/generate.py`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SupplyModel {
    /// Open-circuit source voltage.
    pub source: Volts,
    /// Everything between the source and the load's bus-voltage sense point, in ohms.
    pub resistance_ohms: f64,
}

impl SupplyModel {
    /// A 5.1 V Raspberry Pi supply (the official one is rated 5.1 V) through about 0.05 Ω of
    /// USB-C cable and contacts plus the 0.1 Ω shunt of a common INA219 breakout board.
    pub const PI_WITH_SHUNT: SupplyModel = SupplyModel {
        source: Volts(5.10),
        resistance_ohms: 0.15,
    };

    /// The operating point at which a constant-power load draws `watts`: solves
    /// `V = Vs − R·I` with `P = V·I`, i.e. `R·I² − Vs·I + P = 0`, on the high-voltage branch.
    ///
    /// `I = 2P / (Vs + √(Vs² − 4RP))` (the cancellation-free form of the quadratic root). Past
    /// the source's maximum power `Vs²/4R` (43 W for the Pi supply) no operating point exists;
    /// the result is then clamped to that maximum (`I = Vs/2R`). Zero or negative power, and a
    /// non-positive source, give zero current.
    pub fn operating_point(&self, watts: Watts) -> (Volts, Amps) {
        let (vs, r, p) = (self.source.get(), self.resistance_ohms, watts.get());
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if !positive(vs) || !positive(p) {
            return (Volts(if positive(vs) { vs } else { 0.0 }), Amps::ZERO);
        }
        if !positive(r) {
            return (self.source, Amps(p / vs));
        }
        let disc = vs * vs - 4.0 * r * p;
        let amps = if disc > 0.0 {
            2.0 * p / (vs + disc.sqrt())
        } else {
            vs / (2.0 * r)
        };
        (Volts(vs - r * amps), Amps(amps))
    }
}

/// Where the CPU utilisation comes from: the machine's own in the dev daemon, injected in tests.
pub trait CpuUtil: Send {
    /// Busy fraction of all cores together, in `[0, 1]`.
    fn utilisation(&mut self) -> f64;
}

/// A utilisation that never changes (tests, and `--simulate` style fixed loads).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FixedUtil(pub f64);

impl CpuUtil for FixedUtil {
    fn utilisation(&mut self) -> f64 {
        self.0.clamp(0.0, 1.0)
    }
}

/// This machine's CPU utilisation through `sysinfo` (`/proc/stat` on Linux).
///
/// Refreshes at most once per [`SysinfoCpuUtil::REFRESH`] and returns the cached value in
/// between, so a sampler polling every few milliseconds costs one `/proc/stat` read a second.
pub struct SysinfoCpuUtil {
    system: sysinfo::System,
    clock: SharedClock,
    refreshed_at: Duration,
    value: f64,
    refreshes: u64,
}

impl SysinfoCpuUtil {
    pub const REFRESH: Duration = Duration::from_secs(1);

    /// Reads the utilisation once now (the average since boot, as the first estimate) and
    /// then at most once per second of the real monotonic clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(MonotonicClock::new()))
    }

    /// As [`SysinfoCpuUtil::new`], timing the refreshes with `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        let mut system = sysinfo::System::new();
        system.refresh_cpu_usage();
        let value = percent_to_fraction(system.global_cpu_usage());
        Self {
            refreshed_at: clock.now(),
            system,
            clock,
            value,
            refreshes: 1,
        }
    }
}

impl Default for SysinfoCpuUtil {
    fn default() -> Self {
        Self::new()
    }
}

fn percent_to_fraction(percent: f32) -> f64 {
    let f = f64::from(percent) / 100.0;
    if f.is_finite() {
        f.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl CpuUtil for SysinfoCpuUtil {
    fn utilisation(&mut self) -> f64 {
        let now = self.clock.now();
        if now.saturating_sub(self.refreshed_at) >= Self::REFRESH {
            self.system.refresh_cpu_usage();
            self.value = percent_to_fraction(self.system.global_cpu_usage());
            self.refreshed_at = now;
            self.refreshes += 1;
        }
        self.value
    }
}

/// The live dev-machine signal: a Raspberry Pi 4 whose load follows this machine's CPU.
///
/// Power is linear in utilisation between 2.7 W idle and 6.4 W with all four cores busy. Those
/// are Jeff Geerling's published Pi 4 B measurements (pidramble.com power-consumption
/// benchmarks: 540 mA idle, 1280 mA under `stress --cpu 4`, at 5 V); linearity in between is an
/// assumption (real boards are close to linear in busy cores, less so in frequency scaling).
/// The volts and amps then come from the supply model, so they droop together as on the bench.
///
/// The signal is live: every window reports the operating point at the current utilisation
/// (windows are a conversion long, far shorter than the one-second utilisation refresh).
/// `mean_volts` and `mean_amps` for the same window use the same operating point.
pub struct CpuPowerModel {
    util: Box<dyn CpuUtil>,
    idle: Watts,
    full_load: Watts,
    supply: SupplyModel,
    /// The last window asked for and its operating point.
    last: Option<((f64, f64), (Volts, Amps))>,
}

impl CpuPowerModel {
    /// Raspberry Pi 4 B, idle (see the type's documentation for the source).
    pub const PI4_IDLE: Watts = Watts(2.7);
    /// Raspberry Pi 4 B with all four cores at 100 %.
    pub const PI4_FULL_LOAD: Watts = Watts(6.4);

    /// The live model as configured: `idle_watts` at 0 %, `full_watts` with all cores busy,
    /// a `supply_volts` source behind `source_ohms`, driven by this machine's utilisation
    /// through `sysinfo`. The dev default, `new(2.7, 6.4, 5.10, 0.15)`, has the figures of [`Self::pi4`].
    pub fn new(idle_watts: f64, full_watts: f64, supply_volts: f64, source_ohms: f64) -> Self {
        Self::with_util(
            Box::new(SysinfoCpuUtil::new()),
            Watts(idle_watts),
            Watts(full_watts),
            SupplyModel {
                source: Volts(supply_volts),
                resistance_ohms: source_ohms,
            },
        )
    }

    /// Any board and supply, driven by any utilisation source (tests inject theirs here).
    pub fn with_util(
        util: Box<dyn CpuUtil>,
        idle: Watts,
        full_load: Watts,
        supply: SupplyModel,
    ) -> Self {
        Self {
            util,
            idle,
            full_load,
            supply,
            last: None,
        }
    }

    /// A Raspberry Pi 4 B on [`SupplyModel::PI_WITH_SHUNT`], driven by `util`.
    pub fn pi4(util: Box<dyn CpuUtil>) -> Self {
        Self::with_util(
            util,
            Self::PI4_IDLE,
            Self::PI4_FULL_LOAD,
            SupplyModel::PI_WITH_SHUNT,
        )
    }

    /// Board power at a utilisation in `[0, 1]` (clamped).
    pub fn watts_at(&self, utilisation: f64) -> Watts {
        let u = if utilisation.is_finite() {
            utilisation.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Watts(self.idle.get() + (self.full_load.get() - self.idle.get()) * u)
    }

    /// Load-side volts and amps at a utilisation in `[0, 1]`.
    pub fn operating_point_at(&self, utilisation: f64) -> (Volts, Amps) {
        self.supply.operating_point(self.watts_at(utilisation))
    }

    fn operating_point_for(&mut self, t0: f64, t1: f64) -> (Volts, Amps) {
        match self.last {
            Some((window, point)) if window == (t0, t1) => point,
            _ => {
                let utilisation = self.util.utilisation();
                let point = self.operating_point_at(utilisation);
                self.last = Some(((t0, t1), point));
                point
            }
        }
    }
}

impl GroundTruth for CpuPowerModel {
    fn mean_volts(&mut self, t0: f64, t1: f64) -> f64 {
        self.operating_point_for(t0, t1).0.get()
    }
    fn mean_amps(&mut self, t0: f64, t1: f64) -> f64 {
        self.operating_point_for(t0, t1).1.get()
    }
    fn end(&self) -> Option<f64> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use std::sync::Mutex;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn constant_is_constant_and_endless() {
        let mut c = Constant {
            volts: Volts(5.05),
            amps: Amps(0.6),
        };
        assert_eq!(c.mean_volts(-1.0, 1e6), 5.05);
        assert_eq!(c.mean_amps(3.0, 3.1), 0.6);
        assert_eq!(c.end(), None);
    }

    #[test]
    fn supply_model_solves_the_droop() {
        let s = SupplyModel::PI_WITH_SHUNT;
        for p in [0.001, 2.7, 6.4, 15.0, 43.0] {
            let (v, a) = s.operating_point(Watts(p));
            assert!(close(v.get() * a.get(), p, 1e-12), "P at {p}");
            assert!(close(v.get(), 5.10 - 0.15 * a.get(), 1e-12), "V at {p}");
        }
        // Beyond the 43.35 W maximum: clamped to the maximum power point.
        let (v, a) = s.operating_point(Watts(100.0));
        assert!(close(a.get(), 17.0, 1e-12) && close(v.get(), 2.55, 1e-12));
        assert_eq!(s.operating_point(Watts(0.0)), (Volts(5.10), Amps::ZERO));
        let stiff = SupplyModel {
            source: Volts(5.0),
            resistance_ohms: 0.0,
        };
        assert_eq!(stiff.operating_point(Watts(5.0)), (Volts(5.0), Amps(1.0)));
    }

    #[test]
    fn cpu_model_spans_pi4_idle_to_full_load_with_droop() {
        for (u, watts) in [(0.0, 2.7), (1.0, 6.4), (0.5, 4.55)] {
            let mut m = CpuPowerModel::pi4(Box::new(FixedUtil(u)));
            let (v, a) = (m.mean_volts(0.0, 0.068), m.mean_amps(0.0, 0.068));
            assert!(close(v * a, watts, 1e-12), "util {u}: {v} V × {a} A");
            assert!(close(v, 5.10 - 0.15 * a, 1e-12));
            assert!(v < 5.10);
            assert_eq!(m.end(), None);
        }
        // Full load droops to about 4.904 V at 1.305 A.
        let (v, a) = CpuPowerModel::pi4(Box::new(FixedUtil(1.0))).operating_point_at(1.0);
        assert!(close(v.get(), 4.904, 1e-3) && close(a.get(), 1.305, 1e-3));
        // Out-of-range utilisation is clamped.
        let m = CpuPowerModel::pi4(Box::new(FixedUtil(0.0)));
        assert_eq!(m.watts_at(1.7), Watts(6.4));
        assert_eq!(m.watts_at(f64::NAN), Watts(2.7));
        // The configured constructor measures this machine; whatever its load, the operating
        // point lies on the configured line and droops.
        let mut live = CpuPowerModel::new(3.0, 8.0, 5.0, 0.2);
        let (v, a) = (live.mean_volts(0.0, 0.1), live.mean_amps(0.0, 0.1));
        assert!(
            (3.0 - 1e-9..=8.0 + 1e-9).contains(&(v * a)),
            "{v} V × {a} A"
        );
        assert!(close(v, 5.0 - 0.2 * a, 1e-12));
    }

    /// A utilisation that tests can change while the model owns it.
    struct Shared(Arc<Mutex<f64>>);
    impl CpuUtil for Shared {
        fn utilisation(&mut self) -> f64 {
            self.0.lock().map(|g| *g).unwrap_or(0.0)
        }
    }

    #[test]
    fn volts_and_amps_of_one_window_share_one_operating_point() {
        let u = Arc::new(Mutex::new(0.0));
        let mut m = CpuPowerModel::pi4(Box::new(Shared(u.clone())));
        let v = m.mean_volts(1.0, 1.068);
        if let Ok(mut g) = u.lock() {
            *g = 1.0;
        }
        let a = m.mean_amps(1.0, 1.068);
        assert!(close(v * a, 2.7, 1e-12));
        // The next window sees the new load.
        let (v, a) = (m.mean_volts(1.068, 1.136), m.mean_amps(1.068, 1.136));
        assert!(close(v * a, 6.4, 1e-12));
    }

    #[test]
    fn sysinfo_util_refreshes_at_most_once_a_second() {
        let clock = Arc::new(VirtualClock::new());
        let mut u = SysinfoCpuUtil::with_clock(clock.clone());
        for _ in 0..100 {
            let x = u.utilisation();
            assert!((0.0..=1.0).contains(&x));
            clock.advance(Duration::from_millis(9));
        }
        // 0.9 s of virtual time: only the initial read.
        assert_eq!(u.refreshes, 1);
        clock.advance(Duration::from_millis(100));
        u.utilisation();
        u.utilisation();
        assert_eq!(u.refreshes, 2);
    }
}
