//! The INA219 on I2C, through the `ina219` driver crate. Only `power/ina219/` knows its registers.
//!
//! [`Ina219Sensor`] is generic over the embedded-hal 1.0 I2C bus: `rppal::i2c::I2c` on the Pi,
//! [`sim::Ina219Sim`] everywhere else. The very same code path reads both.
//!
//! Power is computed here as `V_bus × V_shunt / R_shunt` in f64 from the shunt and bus registers.
//! The chip's own current and power registers are integer-truncated (the power LSB is 20 current
//! LSBs, 2 mW for a 0.1 Ω shunt) and would bias every sample low; the calibration register is still
//! programmed per the datasheet so the chip's registers stay meaningful to other tools.

pub mod sim;

use crate::clock::SharedClock;
use crate::config::{Adc, Ina219Config};
use crate::power::{PowerSensor, Sample, SampleFlags, SensorError, SensorKind};
use crate::units::{Amps, Volts};
use embedded_hal::i2c::I2c;
use ina219::address::Address;
use ina219::calibration::{IntCalibration, MicroAmpere};
use ina219::configuration::{
    BusVoltageRange, Configuration, MeasuredSignals, OperatingMode, Resolution, ShuntVoltageRange,
};
use ina219::errors::MeasurementError;
use ina219::SyncIna219;
use std::fmt::Debug;
use std::time::Duration;

/// How many conversion periods without a conversion-ready flag count as a stalled chip.
const STALL_PERIODS: u32 = 4;

/// The calibration the datasheet (SBOS448G §8.5.1) derives from the shunt and the largest
/// expected current.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibration {
    /// Current LSB in µA: `max_current / 2^15`, rounded up to a round number (1-2-5 series).
    pub current_lsb_ua: i64,
    /// Power LSB in µW: 20 × the current LSB.
    pub power_lsb_uw: i64,
    /// The calibration register: `trunc(0.04096 / (Current_LSB × R_shunt))`, bit 0 clear.
    pub register: u16,
    int: IntCalibration,
}

impl Calibration {
    pub fn for_shunt(shunt_ohms: f64, max_current_a: f64) -> Result<Calibration, String> {
        let r_uohm = (shunt_ohms * 1e6).round();
        if !(1.0..=f64::from(u32::MAX)).contains(&r_uohm) {
            return Err(format!("shunt of {shunt_ohms} Ω is out of range"));
        }
        let min_lsb_ua = (max_current_a * 1e6 / 32768.0).ceil().max(1.0);
        let current_lsb_ua = round_up_125(min_lsb_ua as i64);
        let int = IntCalibration::new(MicroAmpere(current_lsb_ua), r_uohm as u32).ok_or_else(|| {
            format!(
                "no calibration register fits a {shunt_ohms} Ω shunt with a {current_lsb_ua} µA current LSB (max current {max_current_a} A)"
            )
        })?;
        Ok(Calibration {
            current_lsb_ua,
            power_lsb_uw: int.power_lsb().0,
            register: int.as_bits(),
            int,
        })
    }
}

/// The smallest value of the series 1, 2, 5, 10, 20, 50, … that is at least `v`.
fn round_up_125(v: i64) -> i64 {
    let mut decade = 1;
    loop {
        for m in [1, 2, 5] {
            if m * decade >= v {
                return m * decade;
            }
        }
        decade *= 10;
    }
}

fn resolution(adc: Adc) -> Resolution {
    match adc {
        Adc::Bits9 => Resolution::Res9Bit,
        Adc::Bits10 => Resolution::Res10Bit,
        Adc::Bits11 => Resolution::Res11Bit,
        Adc::Bits12 => Resolution::Res12Bit,
        Adc::Avg(2) => Resolution::Avg2,
        Adc::Avg(4) => Resolution::Avg4,
        Adc::Avg(8) => Resolution::Avg8,
        Adc::Avg(16) => Resolution::Avg16,
        Adc::Avg(32) => Resolution::Avg32,
        Adc::Avg(64) => Resolution::Avg64,
        Adc::Avg(_) => Resolution::Avg128,
    }
}

/// The configuration register for our settings: continuous shunt and bus conversions.
pub fn configuration(cfg: &Ina219Config) -> Configuration {
    Configuration {
        bus_voltage_range: if cfg.bus_range_v <= 16 {
            BusVoltageRange::Fsr16v
        } else {
            BusVoltageRange::Fsr32v
        },
        shunt_voltage_range: match cfg.shunt_range_mv {
            40 => ShuntVoltageRange::Fsr40mv,
            80 => ShuntVoltageRange::Fsr80mv,
            160 => ShuntVoltageRange::Fsr160mv,
            _ => ShuntVoltageRange::Fsr320mv,
        },
        bus_resolution: resolution(cfg.bus_adc),
        shunt_resolution: resolution(cfg.shunt_adc),
        operating_mode: OperatingMode::Continous(MeasuredSignals::ShutAndBusVoltage),
        ..Default::default()
    }
}

/// One full conversion cycle: the shunt window followed by the bus window (datasheet table 5).
pub fn conversion_period(cfg: &Ina219Config) -> Duration {
    let us = resolution(cfg.shunt_adc).conversion_time_us()
        + resolution(cfg.bus_adc).conversion_time_us();
    Duration::from_micros(u64::from(us))
}

/// The INA219 read through the `ina219` driver on any embedded-hal I2C bus.
pub struct Ina219Sensor<I> {
    driver: Option<SyncIna219<I, IntCalibration>>,
    /// The bus while no driver holds it (after a failed initialisation).
    spare: Option<I>,
    cfg: Ina219Config,
    calibration: Calibration,
    kind: SensorKind,
    location: String,
    under_voltage: Volts,
    clock: SharedClock,
    period: Duration,
    /// When the last sample (or the initialisation) happened, for stall detection.
    last_progress: Duration,
}

impl<I> Ina219Sensor<I>
where
    I: I2c + Send,
    I::Error: Debug,
{
    /// Take the bus and initialise the chip. A chip that does not answer is not an error here:
    /// the sensor starts in fault and `reinit` is retried by the sampler.
    pub fn new(
        bus: I,
        cfg: Ina219Config,
        under_voltage: Volts,
        kind: SensorKind,
        clock: SharedClock,
    ) -> Result<(Self, Result<(), SensorError>), SensorError> {
        let prefix = if kind == SensorKind::Simulated {
            "simulated "
        } else {
            ""
        };
        let location = format!("{prefix}i2c-{}@{:#04x}", cfg.i2c_bus, cfg.address);
        let calibration =
            Calibration::for_shunt(cfg.shunt_ohms, cfg.max_current_a).map_err(|detail| {
                SensorError::Init {
                    at: location.clone(),
                    detail,
                }
            })?;
        let period = conversion_period(&cfg);
        let now = clock.now();
        let mut sensor = Self {
            driver: None,
            spare: Some(bus),
            cfg,
            calibration,
            kind,
            location,
            under_voltage,
            clock,
            period,
            last_progress: now,
        };
        let first = sensor.reinit();
        Ok((sensor, first))
    }

    pub fn calibration(&self) -> Calibration {
        self.calibration
    }

    fn bus_error(&self, detail: impl Into<String>) -> SensorError {
        SensorError::Bus {
            bus: self.location.clone(),
            detail: detail.into(),
        }
    }

    fn sample_from(&self, bus_mv: u16, shunt_10uv: i16, overflow: bool) -> Sample {
        let volts = Volts(f64::from(bus_mv) / 1000.0);
        let amps =
            Amps(f64::from(shunt_10uv) * 1e-5 / self.cfg.shunt_ohms * self.cfg.gain_correction);
        let full_scale = i32::from(self.cfg.shunt_range_mv) * 100;
        Sample {
            volts,
            amps,
            watts: volts * amps,
            window: self.period,
            flags: SampleFlags {
                over_range: i32::from(shunt_10uv).abs() >= full_scale,
                math_overflow: overflow,
                under_voltage: volts < self.under_voltage,
            },
        }
    }
}

impl<I> PowerSensor for Ina219Sensor<I>
where
    I: I2c + Send,
    I::Error: Debug,
{
    fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
        let now = self.clock.now();
        let Some(driver) = self.driver.as_mut() else {
            return Err(self.bus_error("not initialised"));
        };
        // A cheap look at the conversion-ready flag first (one register instead of four); the
        // flag is cleared only by reading the power register, which next_measurement does.
        let ready = match driver.bus_voltage() {
            Ok(bus) => bus.is_conversion_ready(),
            Err(ina219::errors::BusVoltageReadError::I2cError(e)) => {
                return Err(self.bus_error(format!("{e:?}")))
            }
            Err(e) => {
                return Err(SensorError::Implausible {
                    at: self.location.clone(),
                    detail: format!("{e:?}"),
                })
            }
        };
        let result = if ready {
            driver.next_measurement()
        } else {
            Ok(None)
        };
        match result {
            Ok(Some(m)) => {
                self.last_progress = now;
                Ok(Some(self.sample_from(
                    m.bus_voltage.voltage_mv(),
                    m.shunt_voltage.shunt_voltage_10uv(),
                    false,
                )))
            }
            Ok(None) => {
                let waited = now.saturating_sub(self.last_progress);
                if waited > self.period * STALL_PERIODS {
                    Err(SensorError::Stalled {
                        at: self.location.clone(),
                        waited,
                    })
                } else {
                    Ok(None)
                }
            }
            // The chip's own current/power arithmetic overflowed: a flagged sample.
            Err(MeasurementError::MathOverflow(m)) => {
                self.last_progress = now;
                Ok(Some(self.sample_from(
                    m.bus_voltage.voltage_mv(),
                    m.shunt_voltage.shunt_voltage_10uv(),
                    true,
                )))
            }
            Err(MeasurementError::I2cError(e)) => Err(self.bus_error(format!("{e:?}"))),
            Err(e @ MeasurementError::BusVoltageReadError(_))
            | Err(e @ MeasurementError::ShuntVoltageReadError(_)) => {
                Err(SensorError::Implausible {
                    at: self.location.clone(),
                    detail: e.to_string(),
                })
            }
        }
    }

    fn period(&self) -> Duration {
        self.period
    }

    fn reinit(&mut self) -> Result<(), SensorError> {
        let bus = match (self.driver.take(), self.spare.take()) {
            (Some(d), _) => d.destroy(),
            (None, Some(b)) => b,
            (None, None) => return Err(self.bus_error("bus lost")),
        };
        self.last_progress = self.clock.now();
        let address = Address::from_byte(self.cfg.address).map_err(|e| SensorError::Init {
            at: self.location.clone(),
            detail: e.to_string(),
        })?;
        match SyncIna219::new_calibrated(bus, address, self.calibration.int) {
            Ok(mut driver) => {
                let result = driver.set_configuration(configuration(&self.cfg));
                self.driver = Some(driver);
                self.last_progress = self.clock.now();
                result.map_err(|e| self.bus_error(format!("writing configuration: {e:?}")))
            }
            Err(e) => {
                let detail = format!("{:?}", e.reason);
                self.spare = Some(e.device);
                Err(SensorError::Init {
                    at: self.location.clone(),
                    detail,
                })
            }
        }
    }

    fn kind(&self) -> SensorKind {
        self.kind
    }

    fn location(&self) -> String {
        self.location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_matches_the_datasheet_example() {
        // SBOS448G §8.5.1: 0.1 Ω shunt, 3.2 A max → current LSB 100 µA, Cal 4096, power LSB 2 mW.
        let c = Calibration::for_shunt(0.1, 3.2).unwrap();
        assert_eq!(c.current_lsb_ua, 100);
        assert_eq!(c.register, 4096);
        assert_eq!(c.power_lsb_uw, 2000);
    }

    #[test]
    fn calibration_for_other_shunts() {
        // (shunt Ω, max A) → (current LSB µA, register)
        let cases = [
            ((0.1, 2.0), (100, 4096)),   // 61 µA rounds up to 100 µA
            ((0.01, 16.0), (500, 8192)), // Pi 5 with a 10 mΩ shunt at 160 mV
            ((0.05, 6.4), (200, 4096)),
            ((0.1, 0.4), (20, 20480)),
        ];
        for ((r, i), (lsb, reg)) in cases {
            let c = Calibration::for_shunt(r, i).unwrap();
            assert_eq!(
                (c.current_lsb_ua, c.register),
                (lsb, reg),
                "shunt {r} Ω, {i} A"
            );
            // The datasheet formula, independently.
            let expect = (0.04096 / (lsb as f64 * 1e-6 * r)).trunc() as u16 & !1;
            assert_eq!(c.register, expect);
        }
    }

    #[test]
    fn conversion_period_is_shunt_plus_bus_window() {
        let cfg = Ina219Config::default();
        assert_eq!(conversion_period(&cfg), Duration::from_micros(68_100 + 532));
    }

    use crate::clock::VirtualClock;
    use crate::power::ina219::sim::{BusFault, Ina219Sim};
    use crate::power::truth::Constant;
    use std::sync::Arc;

    fn sensor_on(
        volts: f64,
        amps: f64,
        cfg: Ina219Config,
    ) -> (Ina219Sensor<Ina219Sim>, Arc<VirtualClock>, sim::FaultHandle) {
        let clock = Arc::new(VirtualClock::new());
        let truth = Constant {
            volts: Volts(volts),
            amps: Amps(amps),
        };
        let sim = Ina219Sim::new(Box::new(truth), clock.clone(), cfg.shunt_ohms, cfg.address);
        let faults = sim.faults();
        let (s, first) =
            Ina219Sensor::new(sim, cfg, Volts(4.63), SensorKind::Simulated, clock.clone()).unwrap();
        first.unwrap();
        (s, clock, faults)
    }

    #[test]
    fn reads_the_datasheet_operating_point_through_the_real_driver() {
        // 5.0 V, 0.5 A through 0.1 Ω: shunt 50 mV (5000 × 10 µV), bus 1250 × 4 mV → 2.5 W.
        let (mut s, clock, _) = sensor_on(5.0, 0.5, Ina219Config::default());
        assert_eq!(s.poll().unwrap(), None, "no conversion has completed yet");
        clock.advance(s.period());
        let got = s.poll().unwrap().expect("a conversion after one period");
        assert_eq!(got.volts, Volts(5.0));
        assert!((got.amps.0 - 0.5).abs() < 1e-12);
        assert!((got.watts.0 - 2.5).abs() < 1e-12);
        assert_eq!(got.flags, SampleFlags::default());
        assert_eq!(got.window, Duration::from_micros(68_632));
        // Read once: the flag is cleared until the next conversion.
        assert_eq!(s.poll().unwrap(), None);
    }

    #[test]
    fn gain_correction_scales_current() {
        let cfg = Ina219Config {
            gain_correction: 1.01,
            ..Ina219Config::default()
        };
        let (mut s, clock, _) = sensor_on(5.0, 0.5, cfg);
        clock.advance(s.period());
        let got = s.poll().unwrap().unwrap();
        assert!((got.amps.0 - 0.505).abs() < 1e-12);
    }

    #[test]
    fn low_bus_voltage_is_an_under_voltage_warning_not_a_fault() {
        let (mut s, clock, _) = sensor_on(4.5, 0.5, Ina219Config::default());
        clock.advance(s.period());
        let got = s.poll().unwrap().unwrap();
        assert!(got.flags.under_voltage);
        assert!(!got.flags.is_fault());
    }

    #[test]
    fn a_math_overflow_keeps_the_voltages_hearth_reads() {
        // 2 A through 0.1 Ω = 200 mV, inside the 320 mV range; calibrated for 1 A, the chip's
        // current register would need 2 × 32767 counts: OVF. The shunt and bus voltages hearth
        // computes the current from are still valid, so the sample counts.
        let cfg = Ina219Config {
            max_current_a: 1.0,
            ..Ina219Config::default()
        };
        let (mut s, clock, _) = sensor_on(5.0, 2.0, cfg);
        clock.advance(s.period());
        let got = s.poll().unwrap().unwrap();
        assert!(got.flags.math_overflow, "{got:?}");
        assert!(!got.flags.is_fault(), "not a gap");
        assert!((got.amps.0 - 2.0).abs() < 1e-9);
        assert!((got.watts.0 - 10.0).abs() < 1e-9);
    }

    #[test]
    fn current_beyond_the_shunt_range_is_flagged_over_range() {
        // 4 A through 0.1 Ω is 400 mV: beyond the 320 mV range, the ADC saturates.
        let (mut s, clock, _) = sensor_on(5.0, 4.0, Ina219Config::default());
        clock.advance(s.period());
        let got = s.poll().unwrap().unwrap();
        assert!(got.flags.over_range, "{got:?}");
        assert!(got.flags.is_fault());
    }

    #[test]
    fn bus_faults_become_errors_and_reinit_recovers() {
        let (mut s, clock, faults) = sensor_on(5.0, 0.5, Ina219Config::default());
        faults.set(Some(BusFault::Nack));
        clock.advance(s.period());
        assert!(matches!(s.poll(), Err(SensorError::Bus { .. })));
        assert!(
            s.reinit().is_err(),
            "a chip that does not answer cannot be initialised"
        );
        faults.set(None);
        s.reinit().unwrap();
        clock.advance(s.period());
        assert!(s.poll().unwrap().is_some());
    }

    #[test]
    fn a_frozen_chip_is_reported_stalled() {
        let (mut s, clock, faults) = sensor_on(5.0, 0.5, Ina219Config::default());
        clock.advance(s.period());
        assert!(s.poll().unwrap().is_some());
        faults.set(Some(BusFault::Frozen));
        let mut stalled = false;
        for _ in 0..10 {
            clock.advance(s.period());
            match s.poll() {
                Ok(None) => {}
                Err(SensorError::Stalled { .. }) => {
                    stalled = true;
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(stalled);
    }

    #[test]
    fn an_all_ones_bus_is_implausible() {
        let (mut s, clock, faults) = sensor_on(5.0, 0.5, Ina219Config::default());
        faults.set(Some(BusFault::AllOnes));
        clock.advance(s.period());
        assert!(matches!(s.poll(), Err(SensorError::Implausible { .. })));
    }

    #[test]
    fn round_up_series() {
        let cases = [
            (1, 1),
            (2, 2),
            (3, 5),
            (6, 10),
            (98, 100),
            (101, 200),
            (250, 500),
        ];
        for (v, want) in cases {
            assert_eq!(round_up_125(v), want);
        }
    }
}
