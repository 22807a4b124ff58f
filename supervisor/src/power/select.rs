//! Which sensor the configuration asks for, built and ready for the sampler thread: the
//! INA219 on the header's bus (found by its device-tree path), the kernel's hwmon driver
//! (reopened while its node has not appeared yet) or the simulator.

use super::hwmon::HwmonSensor;
use super::i2c::LazyBus;
use super::ina219::sim::Ina219Sim;
use super::ina219::Ina219Sensor;
use super::truth::CpuPowerModel;
use super::{PowerSensor, Sample, SensorError, SensorKind};
use crate::clock::SharedClock;
use crate::config::{Backend, PowerConfig};
use crate::units::Volts;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The device node the page names for the configured backend (`None` for the simulator).
pub fn device_node(cfg: &PowerConfig, sys: &Path) -> Option<PathBuf> {
    match cfg.backend {
        Backend::Ina219 => Some(PathBuf::from(format!(
            "/dev/i2c-{}",
            cfg.ina219.i2c_bus.resolve(sys)
        ))),
        Backend::Hwmon => cfg.hwmon_path.clone(),
        Backend::Simulated => None,
    }
}

/// Build the configured sensor. A sensor that cannot be initialised now is returned with its
/// first error: the sampler starts in fault and retries.
pub fn build(
    cfg: &PowerConfig,
    clock: SharedClock,
) -> Result<(Box<dyn PowerSensor>, Option<SensorError>), SensorError> {
    let uv = Volts(cfg.under_voltage_v);
    match cfg.backend {
        Backend::Simulated => {
            let truth = CpuPowerModel::new(
                cfg.simulated.idle_watts,
                cfg.simulated.full_watts,
                cfg.simulated.supply_volts,
                cfg.simulated.source_ohms,
            );
            let sim = Ina219Sim::new(
                Box::new(truth),
                clock.clone(),
                cfg.ina219.shunt_ohms,
                cfg.ina219.address,
            );
            let (s, first) =
                Ina219Sensor::new(sim, cfg.ina219.clone(), uv, SensorKind::Simulated, clock)?;
            Ok((Box::new(s), first.err()))
        }
        Backend::Ina219 => {
            // The header's bus, found once (the daemon restarts with the board).
            let n = cfg.ina219.i2c_bus.resolve(std::path::Path::new("/sys"));
            let ina = crate::config::Ina219Config {
                i2c_bus: crate::config::I2cBus::Number(n),
                ..cfg.ina219.clone()
            };
            let (s, first) =
                Ina219Sensor::new(LazyBus::new(n), ina, uv, SensorKind::Ina219, clock)?;
            Ok((Box::new(s), first.err()))
        }
        Backend::Hwmon => {
            let root = PathBuf::from("/sys/class/hwmon");
            let dir = cfg.hwmon_path.clone().or_else(|| HwmonSensor::find(&root));
            let interval = cfg.hwmon_interval;
            let expect = super::hwmon::Expect {
                shunt_ohms: cfg.ina219.shunt_ohms,
                gain_correction: cfg.ina219.gain_correction,
            };
            let open = move |clock: SharedClock| -> Result<Box<dyn PowerSensor>, SensorError> {
                let dir = dir.clone().ok_or_else(|| SensorError::Sysfs {
                    path: root.display().to_string(),
                    detail: "no hwmon device named ina219 (is the i2c-sensor overlay loaded?)"
                        .into(),
                })?;
                Ok(Box::new(HwmonSensor::open(&dir, interval, clock, expect)?))
            };
            let mut retrying = Retrying {
                open: Box::new(open),
                clock,
                inner: None,
                period: interval,
                last_error: None,
            };
            let first = retrying.reinit().err();
            Ok((Box::new(retrying), first))
        }
    }
}

type Opener = Box<dyn Fn(SharedClock) -> Result<Box<dyn PowerSensor>, SensorError> + Send>;

/// A sensor that may not exist yet (a sysfs node that appears late): reopened on `reinit`.
struct Retrying {
    open: Opener,
    clock: SharedClock,
    inner: Option<Box<dyn PowerSensor>>,
    period: Duration,
    last_error: Option<SensorError>,
}

impl PowerSensor for Retrying {
    fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
        match self.inner.as_mut() {
            Some(s) => s.poll(),
            None => Err(self.last_error.clone().unwrap_or(SensorError::Sysfs {
                path: "hwmon".into(),
                detail: "not open".into(),
            })),
        }
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn reinit(&mut self) -> Result<(), SensorError> {
        match (self.open)(self.clock.clone()) {
            Ok(s) => {
                self.inner = Some(s);
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                self.inner = None;
                self.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
    fn kind(&self) -> SensorKind {
        SensorKind::Hwmon
    }
    fn location(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(|| "hwmon".to_string(), |s| s.location())
    }
}
