//! The board's own signals for the status page: free disk, SoC temperature, throttling and the
//! firmware's under-voltage flag. Read from sysfs under a configurable root so tests use fake
//! trees; anything a board does not expose is simply absent (`None`), never an error.
//!
//! - temperature: `/sys/class/thermal/thermal_zone0/temp` (millidegrees Celsius);
//! - under-voltage now: the Raspberry Pi firmware's hwmon device (`name` = `rpi_volt`,
//!   `in0_lcrit_alarm` = 1 while the supply is under 4.63 V);
//! - throttling: `/sys/devices/platform/soc/soc:firmware/get_throttled` where the kernel exposes
//!   the firmware's bit field (bit 0 under-voltage, 1 frequency capped, 2 throttled, 3 soft
//!   temperature limit; bits 16–19 the same "has occurred since boot").

use serde::Serialize;
use std::path::{Path, PathBuf};

/// Warn when free space is under 10 % or under 2 GB.
pub const DISK_WARN_FRACTION: f64 = 0.10;
pub const DISK_WARN_BYTES: u64 = 2_000_000_000;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Device {
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    pub disk_low: bool,
    pub soc_temp_c: Option<f64>,
    /// The firmware's under-voltage alarm, now.
    pub under_voltage: Option<bool>,
    /// Decoded `get_throttled` flags, now and since boot.
    pub throttled: Option<Throttled>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Throttled {
    pub under_voltage: bool,
    pub freq_capped: bool,
    pub throttled: bool,
    pub soft_temp_limit: bool,
    pub under_voltage_occurred: bool,
    pub freq_capped_occurred: bool,
    pub throttled_occurred: bool,
    pub soft_temp_limit_occurred: bool,
}

impl Throttled {
    pub fn from_bits(v: u32) -> Self {
        let b = |n: u32| v & (1 << n) != 0;
        Self {
            under_voltage: b(0),
            freq_capped: b(1),
            throttled: b(2),
            soft_temp_limit: b(3),
            under_voltage_occurred: b(16),
            freq_capped_occurred: b(17),
            throttled_occurred: b(18),
            soft_temp_limit_occurred: b(19),
        }
    }
}

/// The page's copy of the board's signals, read every `every` until `cancel` (off the async
/// workers: sysfs reads and statvfs can block on a sick card). Low disk is logged once per dip.
pub async fn run(
    sources: Sources,
    shared: std::sync::Arc<std::sync::Mutex<Device>>,
    every: std::time::Duration,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let s = sources.clone();
                if let Ok(d) = tokio::task::spawn_blocking(move || read(&s)).await {
                    if d.disk_low && !warned {
                        tracing::warn!(free = ?d.disk_free_bytes, "disk space is low");
                    }
                    warned = d.disk_low;
                    *shared.lock().unwrap_or_else(|p| p.into_inner()) = d;
                }
            }
        }
    }
}

/// Where to read from: `/` on the appliance, a temp dir in tests.
#[derive(Debug, Clone)]
pub struct Sources {
    pub sys_root: PathBuf,
    /// The file system whose free space matters (the one holding the data).
    pub data_path: PathBuf,
}

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

pub fn read(src: &Sources) -> Device {
    let sys = src.sys_root.join("sys");
    let soc_temp_c = read_trim(&sys.join("class/thermal/thermal_zone0/temp"))
        .and_then(|s| s.parse::<f64>().ok())
        .map(|m| m / 1000.0);
    let under_voltage = std::fs::read_dir(sys.join("class/hwmon"))
        .ok()
        .and_then(|dir| {
            dir.flatten()
                .map(|e| e.path())
                .find(|p| read_trim(&p.join("name")).as_deref() == Some("rpi_volt"))
                .and_then(|p| read_trim(&p.join("in0_lcrit_alarm")))
                .map(|v| v == "1")
        });
    let throttled = read_trim(&sys.join("devices/platform/soc/soc:firmware/get_throttled"))
        .and_then(|s| {
            let s = s.trim_start_matches("0x");
            u32::from_str_radix(s, 16).ok()
        })
        .map(Throttled::from_bits);
    let (free, total) = match rustix::fs::statvfs(&src.data_path) {
        Ok(st) => {
            let frsize = st.f_frsize.max(1);
            (Some(st.f_bavail * frsize), Some(st.f_blocks * frsize))
        }
        Err(_) => (None, None),
    };
    let disk_low = match (free, total) {
        (Some(f), Some(t)) if t > 0 => {
            f < DISK_WARN_BYTES || (f as f64) < t as f64 * DISK_WARN_FRACTION
        }
        _ => false,
    };
    Device {
        disk_free_bytes: free,
        disk_total_bytes: total,
        disk_low,
        soc_temp_c,
        under_voltage,
        throttled,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_pi_like_sysfs_tree() {
        let root = tempfile::tempdir().unwrap();
        let sys = root.path().join("sys");
        let w = |rel: &str, v: &str| {
            let p = sys.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, v).unwrap();
        };
        w("class/thermal/thermal_zone0/temp", "48312\n");
        w("class/hwmon/hwmon0/name", "cpu_thermal\n");
        w("class/hwmon/hwmon1/name", "rpi_volt\n");
        w("class/hwmon/hwmon1/in0_lcrit_alarm", "1\n");
        w("devices/platform/soc/soc:firmware/get_throttled", "50005\n");
        let d = read(&Sources {
            sys_root: root.path().into(),
            data_path: root.path().into(),
        });
        assert_eq!(d.soc_temp_c, Some(48.312));
        assert_eq!(d.under_voltage, Some(true));
        let t = d.throttled.unwrap();
        assert!(t.under_voltage && t.throttled && !t.freq_capped);
        assert!(t.under_voltage_occurred && t.throttled_occurred && !t.soft_temp_limit_occurred);
        assert!(d.disk_free_bytes.is_some() && d.disk_total_bytes.unwrap() > 0);
    }

    #[test]
    fn a_board_without_these_files_reports_nothing_rather_than_failing() {
        let root = tempfile::tempdir().unwrap();
        let d = read(&Sources {
            sys_root: root.path().into(),
            data_path: root.path().join("missing"),
        });
        assert_eq!(d, Device::default());
    }
}
