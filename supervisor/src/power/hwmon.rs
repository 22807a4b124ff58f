//! The Linux `ina2xx` hwmon driver through sysfs.
//!
//! An alternative to talking I2C ourselves: when the device tree binds the kernel's `ina2xx`
//! driver to the chip, it appears as `/sys/class/hwmon/hwmonN` with (Documentation/hwmon/ina2xx.rst):
//!
//! | file             | unit | what                                        |
//! |------------------|------|---------------------------------------------|
//! | `name`           |      | the chip, e.g. `ina219`                     |
//! | `in0_input`      | mV   | shunt voltage                               |
//! | `in1_input`      | mV   | bus voltage                                 |
//! | `curr1_input`    | mA   | current                                     |
//! | `power1_input`   | µW   | power                                       |
//! | `shunt_resistor` | µΩ   | optional, the shunt the driver calibrated for |
//! | `update_interval`| ms   | optional (INA226 family), conversion interval |
//!
//! Each holds one decimal integer and a newline. Every read of a value file makes the driver do
//! an I2C transfer; a failed transfer surfaces as `read()` failing with `EIO`.
//!
//! The driver decides the conversion timing, so a hwmon sample is a snapshot that stands for the
//! time since the previous one, not a conversion window.
//!
//! What the configuration says is checked and applied ([`Expect`]): the driver's
//! `shunt_resistor` must be the configured `shunt_ohms` (left at the driver's 10 mΩ default with
//! the usual 0.1 Ω shunt, every current would read ten times too high, silently), so a mismatch
//! refuses to open with the fix in the reason; `gain_correction` scales current and power as on
//! the INA219 path; and a shunt voltage at the driver's full scale (`in0_input`: 320 mV on an
//! INA219, whose driver fixes PGA /8; 81.92 mV on the INA226 family) is saturation, a gap.

use super::{PowerSensor, Sample, SampleFlags, SensorError, SensorKind, PI_UNDER_VOLTAGE};
use crate::clock::SharedClock;
use crate::units::{Amps, Volts, Watts};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the configuration says of the board: checked against the driver and applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expect {
    /// `[power] shunt_ohms`.
    pub shunt_ohms: f64,
    /// `[power] gain_correction`.
    pub gain_correction: f64,
}

/// The shunt voltage (mV, as `in0_input` reports it in whole mV) at which the chip's ADC is
/// at its full scale: from there on the real current may be higher.
fn full_scale_mv(chip: &str) -> Option<i64> {
    match chip {
        // The driver programs PGA /8: ±320 mV (register 32000 × 10 µV).
        "ina219" | "ina220" => Some(320),
        // ±81.92 mV (32767 × 2.5 µV): 81 mV in whole mV, within 1.2 % of it.
        "ina226" | "ina230" | "ina231" => Some(81),
        _ => None,
    }
}

/// A sysfs attribute kept open and re-read with `pread` at offset 0, which makes sysfs produce a
/// fresh value: one syscall per read instead of open/read/close.
#[derive(Debug)]
struct Attr {
    path: PathBuf,
    file: File,
}

impl Attr {
    fn open(dir: &Path, name: &str) -> Result<Self, SensorError> {
        let path = dir.join(name);
        match File::open(&path) {
            Ok(file) => Ok(Self { path, file }),
            Err(e) => Err(sysfs_error(&path, format!("cannot open: {e}"))),
        }
    }

    /// The file's single integer.
    fn read_int(&self) -> Result<i64, SensorError> {
        // Values are at most 11 digits and a sign; anything longer is garbage, not a value.
        let mut buf = [0u8; 64];
        let mut len = 0;
        while len < buf.len() {
            match self.file.read_at(&mut buf[len..], len as u64) {
                Ok(0) => break,
                Ok(n) => {
                    len += n;
                    // sysfs hands over the whole value, newline included, in one read.
                    if buf[..len].ends_with(b"\n") {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(sysfs_error(&self.path, format!("read failed: {e}"))),
            }
        }
        parse_int(&buf[..len]).map_err(|detail| sysfs_error(&self.path, detail))
    }
}

fn parse_int(bytes: &[u8]) -> Result<i64, String> {
    let text = String::from_utf8_lossy(bytes);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty, expected an integer".to_owned());
    }
    trimmed.parse::<i64>().map_err(|_| {
        let shown: String = trimmed.chars().take(40).collect();
        format!("not an integer: {shown:?}")
    })
}

fn sysfs_error(path: &Path, detail: String) -> SensorError {
    SensorError::Sysfs {
        path: path.display().to_string(),
        detail,
    }
}

fn read_small_file(path: &Path) -> Result<String, SensorError> {
    std::fs::read_to_string(path).map_err(|e| sysfs_error(path, format!("cannot read: {e}")))
}

/// Whether a hwmon `name` belongs to the `ina2xx` family (ina219, ina220, ina226, ina230, …),
/// whose value files share the units above.
fn is_ina2xx(name: &str) -> bool {
    name.len() == 6 && name.starts_with("ina2") && name[4..].bytes().all(|b| b.is_ascii_digit())
}

/// The open value files of one hwmon device.
#[derive(Debug)]
struct Files {
    chip: String,
    bus_mv: Attr,
    current_ma: Attr,
    power_uw: Attr,
    /// `in0_input`, for saturation; optional (older drivers).
    shunt_mv: Option<Attr>,
    shunt_ohms: Option<f64>,
    update_interval: Option<Duration>,
}

impl Files {
    fn open(dir: &Path) -> Result<Self, SensorError> {
        let name_path = dir.join("name");
        let chip = read_small_file(&name_path)?.trim().to_owned();
        if !is_ina2xx(&chip) {
            return Err(sysfs_error(
                &name_path,
                format!("{chip:?} is not an ina2xx power monitor (ina219, ina226, …)"),
            ));
        }
        let bus_mv = Attr::open(dir, "in1_input")?;
        let current_ma = Attr::open(dir, "curr1_input")?;
        let power_uw = Attr::open(dir, "power1_input")?;
        let shunt_mv = Attr::open(dir, "in0_input").ok();
        // Optional: absent or unreadable is simply unknown.
        let optional = |name: &str| Attr::open(dir, name).and_then(|a| a.read_int()).ok();
        let shunt_ohms = optional("shunt_resistor").map(|uohm| uohm as f64 / 1e6);
        let update_interval = optional("update_interval")
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis);
        Ok(Self {
            chip,
            bus_mv,
            current_ma,
            power_uw,
            shunt_mv,
            shunt_ohms,
            update_interval,
        })
    }
}

/// The driver's shunt must be the configured one (within 1 %): else every reading is scaled
/// wrong. Its `shunt_resistor` is writable by root only, so the reason says how to fix it.
fn check_shunt(dir: &Path, files: &Files, expect: Expect) -> Result<(), SensorError> {
    let Some(driver) = files.shunt_ohms else {
        return Ok(());
    };
    if (driver - expect.shunt_ohms).abs() <= expect.shunt_ohms * 0.01 {
        return Ok(());
    }
    Err(sysfs_error(
        &dir.join("shunt_resistor"),
        format!(
            "the driver is calibrated for a {driver} Ω shunt but [power] shunt_ohms is {} Ω: \
             every current would read {:.2}× the truth; write {} to this file as root (or set \
             shunt-resistor in the device tree), or correct shunt_ohms",
            expect.shunt_ohms,
            expect.shunt_ohms / driver,
            (expect.shunt_ohms * 1e6).round() as i64
        ),
    ))
}

/// An INA2xx read through the kernel's hwmon driver.
pub struct HwmonSensor {
    dir: PathBuf,
    period: Duration,
    clock: SharedClock,
    expect: Expect,
    files: Files,
    /// When the last poll that read the device happened, and whether it produced a sample.
    last_read: Option<(Duration, bool)>,
}

impl HwmonSensor {
    /// `dir` is e.g. /sys/class/hwmon/hwmon2. Checks that `name` is ina219/ina226/ina2xx-like and
    /// the files exist (it does not read the values: a bus error then is a gap, not a failure
    /// to start).
    pub fn open(
        dir: &Path,
        period: Duration,
        clock: SharedClock,
        expect: Expect,
    ) -> Result<Self, SensorError> {
        let files = Files::open(dir)?;
        check_shunt(dir, &files, expect)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            period,
            clock,
            expect,
            files,
            last_read: None,
        })
    }

    /// Find the first hwmon dir under `root` (normally /sys/class/hwmon) whose `name` file is
    /// "ina219". Directories are tried in numeric order (`hwmon2` before `hwmon10`).
    pub fn find(root: &Path) -> Option<PathBuf> {
        let mut dirs: Vec<(u64, String)> = std::fs::read_dir(root)
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let n = name
                    .strip_prefix("hwmon")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(u64::MAX);
                (n, name)
            })
            .collect();
        dirs.sort();
        dirs.into_iter()
            .map(|(_, name)| root.join(name))
            .find(|dir| {
                std::fs::read_to_string(dir.join("name")).is_ok_and(|n| n.trim() == "ina219")
            })
    }

    /// The chip name the driver reports (`ina219`, …).
    pub fn chip(&self) -> &str {
        &self.files.chip
    }

    /// The shunt the driver is calibrated for, when it says.
    pub fn shunt_ohms(&self) -> Option<f64> {
        self.files.shunt_ohms
    }

    /// The driver's conversion interval, when it has one (INA226 family only).
    pub fn update_interval(&self) -> Option<Duration> {
        self.files.update_interval
    }

    fn read(&self) -> Result<Sample, SensorError> {
        let bus_mv = self.files.bus_mv.read_int()?;
        let current_ma = self.files.current_ma.read_int()?;
        let power_uw = self.files.power_uw.read_int()?;
        let over_range = match (&self.files.shunt_mv, full_scale_mv(&self.files.chip)) {
            (Some(a), Some(fs)) => a.read_int()?.abs() >= fs,
            _ => false,
        };
        let g = self.expect.gain_correction;
        let volts = Volts(bus_mv as f64 / 1e3);
        let amps = Amps(current_ma as f64 / 1e3 * g);
        // Watts from `power1_input`, not volts × amps: the driver rounds the current to whole mA
        // (a 5 mW step at 5 V) although the chip resolves it much finer, while the power
        // register is the chip's own product of its current and bus-voltage registers, exposed
        // at its full resolution: LSB = 20 × current LSB, i.e. 2 mW for the 0.1 Ω shunt (driver
        // current LSB 100 µA; 0.625 mW on an INA226). It needs the right `shunt-resistor` in the
        // device tree; with the driver's 10 mΩ default the step would be 20 mW, and every value
        // would be scaled wrong anyway.
        let watts = Watts(power_uw as f64 / 1e6 * g);
        Ok(Sample {
            volts,
            amps,
            watts,
            window: Duration::ZERO,
            flags: SampleFlags {
                under_voltage: volts < PI_UNDER_VOLTAGE,
                over_range,
                ..SampleFlags::default()
            },
        })
    }
}

impl PowerSensor for HwmonSensor {
    /// At most one sample per `period` of the clock. A sample's `window` is the time since the
    /// previous sample; after a read error (or for the very first sample) it is `period`, so
    /// the time before a failed read belongs to the error, i.e. is reported as a gap, and is
    /// never silently attributed to the next good reading. Failed reads are rate-limited too.
    fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
        let now = self.clock.now();
        let since_last = self.last_read.map(|(at, ok)| (now.saturating_sub(at), ok));
        if let Some((elapsed, _)) = since_last {
            if elapsed < self.period {
                return Ok(None);
            }
        }
        match self.read() {
            Ok(mut sample) => {
                sample.window = match since_last {
                    Some((elapsed, true)) => elapsed,
                    _ => self.period,
                };
                self.last_read = Some((now, true));
                Ok(Some(sample))
            }
            Err(e) => {
                self.last_read = Some((now, false));
                Err(e)
            }
        }
    }

    fn period(&self) -> Duration {
        self.period
    }

    /// Reopen the files (the driver may have been unbound and rebound) and start a new run of
    /// samples.
    fn reinit(&mut self) -> Result<(), SensorError> {
        let files = Files::open(&self.dir)?;
        check_shunt(&self.dir, &files, self.expect)?;
        self.files = files;
        self.last_read = None;
        Ok(())
    }

    fn kind(&self) -> SensorKind {
        SensorKind::Hwmon
    }

    fn location(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use std::sync::Arc;
    use tempfile::TempDir;

    const MS: Duration = Duration::from_millis(1);
    const EXPECT: Expect = Expect {
        shunt_ohms: 0.1,
        gain_correction: 1.0,
    };

    fn write(path: &Path, content: &str) {
        if let Err(e) = std::fs::write(path, content) {
            panic!("{}: {e}", path.display());
        }
    }

    fn tempdir() -> TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        }
    }

    /// A fake hwmon device dir as the ina2xx driver lays it out.
    fn fake_device(dir: &Path, name: &str, bus_mv: i64, current_ma: i64, power_uw: i64) {
        if let Err(e) = std::fs::create_dir_all(dir) {
            panic!("{e}");
        }
        write(&dir.join("name"), &format!("{name}\n"));
        write(&dir.join("in0_input"), &format!("{}\n", current_ma / 10));
        write(&dir.join("in1_input"), &format!("{bus_mv}\n"));
        write(&dir.join("curr1_input"), &format!("{current_ma}\n"));
        write(&dir.join("power1_input"), &format!("{power_uw}\n"));
        write(&dir.join("shunt_resistor"), "100000\n");
    }

    fn open(dir: &Path, clock: &Arc<VirtualClock>) -> HwmonSensor {
        match HwmonSensor::open(dir, 100 * MS, clock.clone(), EXPECT) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn sample(s: &mut HwmonSensor) -> Sample {
        match s.poll() {
            Ok(Some(x)) => x,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reads_a_good_sample() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon2");
        fake_device(&dir, "ina219", 5012, 734, 3_678_000);
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        let x = sample(&mut s);
        assert_eq!(x.volts, Volts(5.012));
        assert_eq!(x.amps, Amps(0.734));
        assert_eq!(x.watts, Watts(3.678));
        assert_eq!(x.window, 100 * MS);
        assert_eq!(x.flags, SampleFlags::default());
        assert_eq!(s.kind(), SensorKind::Hwmon);
        assert_eq!(s.period(), 100 * MS);
        assert_eq!(s.location(), dir.display().to_string());
        assert_eq!(s.chip(), "ina219");
        assert_eq!(s.shunt_ohms(), Some(0.1));
        assert_eq!(s.update_interval(), None);
    }

    #[test]
    fn a_driver_left_at_its_default_shunt_is_refused_with_the_fix() {
        // The kernel's default 10 mΩ with the usual 0.1 Ω shunt: ten times the energy.
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon1");
        fake_device(&dir, "ina219", 5000, 7340, 36_700_000);
        write(&dir.join("shunt_resistor"), "10000\n");
        let clock = Arc::new(VirtualClock::new());
        let e = match HwmonSensor::open(&dir, 100 * MS, clock.clone(), EXPECT) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("opened with a 10 mΩ calibration and a 0.1 Ω shunt"),
        };
        assert!(e.contains("shunt_resistor"), "{e}");
        assert!(e.contains("10.00×") && e.contains("write 100000"), "{e}");
        // Within 1 % it opens (the driver stores whole µΩ).
        write(&dir.join("shunt_resistor"), "100500\n");
        assert!(HwmonSensor::open(&dir, 100 * MS, clock.clone(), EXPECT).is_ok());
        // Fixed while running: a reinit checks again.
        let mut s = open(&dir, &clock);
        write(&dir.join("shunt_resistor"), "10000\n");
        assert!(s.reinit().is_err());
    }

    #[test]
    fn gain_correction_scales_current_and_power() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon1");
        fake_device(&dir, "ina219", 5000, 1000, 5_000_000);
        let clock = Arc::new(VirtualClock::new());
        let expect = Expect {
            gain_correction: 1.0074,
            ..EXPECT
        };
        let mut s = match HwmonSensor::open(&dir, 100 * MS, clock.clone(), expect) {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        let x = sample(&mut s);
        assert!((x.amps.0 - 1.0074).abs() < 1e-12, "{x:?}");
        assert!((x.watts.0 - 5.037).abs() < 1e-12, "{x:?}");
        assert_eq!(x.volts, Volts(5.0), "the bus voltage is not scaled");
    }

    #[test]
    fn a_shunt_at_full_scale_is_saturation_a_gap() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon1");
        // 3.1 A through 0.1 Ω: 310 mV, inside the INA219 driver's 320 mV.
        fake_device(&dir, "ina219", 5000, 3100, 15_500_000);
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        assert!(!sample(&mut s).flags.is_fault());
        // More than 3.2 A: the ADC sits at 320 mV and the driver reports 3200 mA.
        write(&dir.join("in0_input"), "320\n");
        write(&dir.join("curr1_input"), "3200\n");
        clock.advance(100 * MS);
        let x = sample(&mut s);
        assert!(x.flags.over_range && x.flags.is_fault(), "{x:?}");
        // An INA226 saturates at 81.92 mV.
        let dir = tmp.path().join("hwmon2");
        fake_device(&dir, "ina226", 5000, 500, 2_500_000);
        write(&dir.join("in0_input"), "-81\n");
        let mut s = open(&dir, &clock);
        assert!(sample(&mut s).flags.over_range);
    }

    #[test]
    fn flags_under_voltage_and_rereads_changed_values() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon0");
        fake_device(&dir, "ina226", 5000, 500, 2_500_000);
        write(&dir.join("update_interval"), "35\n");
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        assert!(!sample(&mut s).flags.under_voltage);
        write(&dir.join("in1_input"), "4600\n");
        clock.advance(100 * MS);
        let x = sample(&mut s);
        assert_eq!(x.volts, Volts(4.6));
        assert!(x.flags.under_voltage);
        assert!(!x.flags.is_fault());
        assert_eq!(s.update_interval(), Some(35 * MS));
    }

    #[test]
    fn a_missing_file_fails_open_naming_it() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon1");
        fake_device(&dir, "ina219", 5012, 734, 3_678_000);
        let gone = dir.join("curr1_input");
        if let Err(e) = std::fs::remove_file(&gone) {
            panic!("{e}");
        }
        let clock = Arc::new(VirtualClock::new());
        match HwmonSensor::open(&dir, 100 * MS, clock, EXPECT) {
            Err(SensorError::Sysfs { path, detail }) => {
                assert_eq!(path, gone.display().to_string());
                assert!(detail.starts_with("cannot open: "), "{detail}");
                assert!(detail.contains("No such file"), "{detail}");
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened without curr1_input"),
        }
    }

    #[test]
    fn a_sensor_that_is_not_an_ina2xx_is_refused() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon0");
        fake_device(&dir, "cpu_thermal", 5012, 734, 3_678_000);
        let e = HwmonSensor::open(&dir, 100 * MS, Arc::new(VirtualClock::new()), EXPECT).err();
        assert_eq!(
            e.map(|e| e.to_string()),
            Some(format!(
                "{}: \"cpu_thermal\" is not an ina2xx power monitor (ina219, ina226, …)",
                dir.join("name").display()
            ))
        );
        let none = tmp.path().join("empty");
        let e = HwmonSensor::open(&none, 100 * MS, Arc::new(VirtualClock::new()), EXPECT).err();
        assert!(matches!(e, Some(SensorError::Sysfs { path, .. }) if path.ends_with("name")));
    }

    #[test]
    fn garbage_content_is_an_error_not_a_panic() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon3");
        fake_device(&dir, "ina219", 5012, 734, 3_678_000);
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        let power = dir.join("power1_input");
        for (content, detail) in [
            ("abc\n", "not an integer: \"abc\""),
            ("", "empty, expected an integer"),
            ("12.5\n", "not an integer: \"12.5\""),
            (
                "99999999999999999999999\n",
                "not an integer: \"99999999999999999999999\"",
            ),
        ] {
            write(&power, content);
            clock.advance(100 * MS);
            assert_eq!(
                s.poll(),
                Err(SensorError::Sysfs {
                    path: power.display().to_string(),
                    detail: detail.to_owned()
                })
            );
        }
        // Recovery: the next good reading is a fresh start, its window one period.
        write(&power, "3678000\n");
        clock.advance(150 * MS);
        assert_eq!(sample(&mut s).window, 100 * MS);
    }

    #[test]
    fn an_unreadable_file_is_an_eio_like_error() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon4");
        fake_device(&dir, "ina219", 5012, 734, 3_678_000);
        // A directory opens but fails every read, as a sysfs file does when the bus fails (EIO).
        let bus = dir.join("in1_input");
        if let Err(e) = std::fs::remove_file(&bus).and_then(|()| std::fs::create_dir(&bus)) {
            panic!("{e}");
        }
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        match s.poll() {
            Err(SensorError::Sysfs { path, detail }) => {
                assert_eq!(path, bus.display().to_string());
                assert!(detail.starts_with("read failed: "), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // Failed reads are rate-limited like good ones.
        assert_eq!(s.poll(), Ok(None));
        // Repair the file; reinit reopens it.
        if let Err(e) = std::fs::remove_dir(&bus) {
            panic!("{e}");
        }
        write(&bus, "5012\n");
        assert_eq!(s.reinit(), Ok(()));
        assert_eq!(sample(&mut s).volts, Volts(5.012));
    }

    #[test]
    fn find_picks_the_ina219_among_other_hwmon_dirs() {
        let tmp = tempdir();
        let root = tmp.path();
        for (dir, name) in [
            ("hwmon0", "cpu_thermal"),
            ("hwmon1", "rpi_volt"),
            ("hwmon10", "ina219"),
            ("hwmon3", "ina226"),
            ("hwmon2", "ina219"),
        ] {
            fake_device(&root.join(dir), name, 5000, 500, 2_500_000);
        }
        // A dir without a name file is skipped, not an error.
        if let Err(e) = std::fs::create_dir(root.join("hwmon5")) {
            panic!("{e}");
        }
        assert_eq!(HwmonSensor::find(root), Some(root.join("hwmon2")));
        assert_eq!(HwmonSensor::find(&root.join("hwmon5")), None);
        assert_eq!(HwmonSensor::find(&root.join("missing")), None);
    }

    #[test]
    fn at_most_one_sample_per_period_with_the_time_since_the_last_as_window() {
        let tmp = tempdir();
        let dir = tmp.path().join("hwmon2");
        fake_device(&dir, "ina219", 5012, 734, 3_678_000);
        let clock = Arc::new(VirtualClock::new());
        let mut s = open(&dir, &clock);
        assert_eq!(sample(&mut s).window, 100 * MS);
        assert_eq!(s.poll(), Ok(None));
        clock.advance(50 * MS);
        assert_eq!(s.poll(), Ok(None));
        clock.advance(49 * MS);
        assert_eq!(s.poll(), Ok(None));
        clock.advance(11 * MS);
        assert_eq!(sample(&mut s).window, 110 * MS);
        clock.advance(100 * MS);
        assert_eq!(sample(&mut s).window, 100 * MS);
        clock.advance(Duration::from_secs(3));
        assert_eq!(sample(&mut s).window, Duration::from_secs(3));
        assert_eq!(s.poll(), Ok(None));
    }
}
