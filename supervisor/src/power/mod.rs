//! Power sensors: what the meter reads, behind one trait.
//!
//! Backends: [`ina219`] (the real driver over an I2C bus: rppal on the Pi, the register-level
//! simulator elsewhere) and [`hwmon`] (the kernel's `ina2xx` driver through sysfs). [`truth`] holds
//! the ground-truth signals the simulator measures; [`trace`] reads trace CSV files.

pub mod hwmon;
pub mod i2c;
pub mod ina219;
pub mod select;
pub mod trace;
pub mod truth;

use crate::units::{Amps, Volts, Watts};
use std::time::Duration;

/// Bus voltage under which the Pi's own under-voltage detector trips (about 4.63 V).
pub const PI_UNDER_VOLTAGE: Volts = Volts(4.63);

/// One completed conversion, as the sensor reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Load-side bus voltage.
    pub volts: Volts,
    /// Current through the shunt, gain-corrected.
    pub amps: Amps,
    /// Power: for the INA219 `volts * amps` computed by us in f64 from the raw registers; for
    /// hwmon the driver's `power1_input` (finer than its whole-mA current with a 0.1 Ω shunt).
    pub watts: Watts,
    /// The time this reading stands for: the conversion window (both channels) for the INA219,
    /// the poll interval for hwmon.
    pub window: Duration,
    pub flags: SampleFlags,
}

/// Conditions that make a sample untrustworthy or worth a warning.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SampleFlags {
    /// The shunt voltage sat at the end of its range: the real current may be higher.
    pub over_range: bool,
    /// The chip's own current/power arithmetic overflowed (OVF bit). Informational: hearth
    /// reads the shunt and bus voltage registers, which OVF does not invalidate (only the
    /// current and power registers, which hearth never uses).
    pub math_overflow: bool,
    /// Bus voltage below [`PI_UNDER_VOLTAGE`].
    pub under_voltage: bool,
}

impl SampleFlags {
    /// A sample whose value cannot be trusted for energy: treated as a sensor fault (a gap).
    /// Only saturation is: a saturated shunt hides the real current.
    pub fn is_fault(self) -> bool {
        self.over_range
    }
}

/// Which kind of sensor produced the figures; shown on the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SensorKind {
    Ina219,
    Hwmon,
    Simulated,
}

/// Why a read produced no sample. The daemon treats every variant as data: a gap, not a crash.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SensorError {
    #[error("I2C bus {bus}: {detail}")]
    Bus { bus: String, detail: String },
    #[error("sensor at {at} did not complete a conversion for {waited:?}")]
    Stalled { at: String, waited: Duration },
    #[error("sensor at {at}: implausible reading: {detail}")]
    Implausible { at: String, detail: String },
    #[error("sensor at {at}: cannot initialise: {detail}")]
    Init { at: String, detail: String },
    #[error("{path}: {detail}")]
    Sysfs { path: String, detail: String },
}

/// A source of power samples.
///
/// `poll` is cheap and non-blocking in spirit: it returns `Ok(None)` when no new conversion has
/// completed since the last sample; the sampler calls it again after a short wait.
pub trait PowerSensor: Send {
    fn poll(&mut self) -> Result<Option<Sample>, SensorError>;
    /// Expected time between two samples; the sampler sleeps about this long between polls.
    fn period(&self) -> Duration;
    /// Bring the sensor back into a known state after a fault (reset, reconfigure, recalibrate).
    fn reinit(&mut self) -> Result<(), SensorError>;
    fn kind(&self) -> SensorKind;
    /// Where the sensor is, for messages (`i2c-1@0x40`, a sysfs path).
    fn location(&self) -> String;
}

impl PowerSensor for Box<dyn PowerSensor> {
    fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
        (**self).poll()
    }
    fn period(&self) -> Duration {
        (**self).period()
    }
    fn reinit(&mut self) -> Result<(), SensorError> {
        (**self).reinit()
    }
    fn kind(&self) -> SensorKind {
        (**self).kind()
    }
    fn location(&self) -> String {
        (**self).location()
    }
}
