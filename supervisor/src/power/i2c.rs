//! The Pi's I2C bus through rppal, opened lazily: a bus that is missing at start (I2C not enabled
//! yet, a loose cable) is a sensor fault that heals, not a daemon that refuses to start.

use embedded_hal::i2c::{ErrorKind, ErrorType, I2c, Operation};

#[derive(Debug)]
pub enum BusError {
    Open(String),
    Io(rppal::i2c::Error),
}

impl std::fmt::Display for BusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BusError::Open(e) => write!(
                f,
                "cannot open the I2C bus: {e} (is dtparam=i2c_arm=on set?)"
            ),
            BusError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl embedded_hal::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        match self {
            BusError::Open(_) => ErrorKind::Other,
            BusError::Io(e) => embedded_hal::i2c::Error::kind(e),
        }
    }
}

/// The device-tree paths of the controller behind the header's I2C pins (3 SDA, 5 SCL,
/// `dtparam=i2c_arm=on`): BCM2835/2837/2711's BSC1 (Pi 1–4), RP1's i2c1 (Pi 5).
pub const HEADER_CONTROLLERS: [&str; 2] = ["/soc/i2c@7e804000", "/rp1/i2c@74000"];

/// The number of the header's I2C bus on this board, from `<sys>/bus/i2c/devices/i2c-N/of_node`
/// (a link into `firmware/devicetree/base`): the kernel numbers adapters in probe order, so
/// `i2c-1` is usual but not guaranteed (an overlay, the HDMI DDC buses or an i2c-mux can come
/// first). `None` where no adapter is that controller (no device tree, I2C not enabled).
pub fn header_bus(sys: &std::path::Path) -> Option<u8> {
    let dir = sys.join("bus/i2c/devices");
    let mut found: Vec<u8> = std::fs::read_dir(&dir)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let n: u8 = e.file_name().to_str()?.strip_prefix("i2c-")?.parse().ok()?;
            let target = std::fs::read_link(e.path().join("of_node")).ok()?;
            let target = target.to_str()?;
            let dt = &target[target.find("/devicetree/base/")? + "/devicetree/base".len()..];
            HEADER_CONTROLLERS
                .iter()
                .any(|c| dt == *c || dt.ends_with(c))
                .then_some(n)
        })
        .collect();
    found.sort_unstable();
    found.first().copied()
}

/// `/dev/i2c-N`, opened on first use and reopened after an error.
pub struct LazyBus {
    bus: u8,
    inner: Option<rppal::i2c::I2c>,
}

impl LazyBus {
    pub fn new(bus: u8) -> Self {
        Self { bus, inner: None }
    }
}

impl ErrorType for LazyBus {
    type Error = BusError;
}

impl I2c for LazyBus {
    fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), BusError> {
        if self.inner.is_none() {
            let bus =
                rppal::i2c::I2c::with_bus(self.bus).map_err(|e| BusError::Open(e.to_string()))?;
            self.inner = Some(bus);
        }
        let Some(bus) = self.inner.as_mut() else {
            return Err(BusError::Open("bus vanished".into()));
        };
        let result = I2c::transaction(bus, address, operations).map_err(BusError::Io);
        if let Err(BusError::Io(rppal::i2c::Error::Io(_))) = &result {
            // Drop the file descriptor; the next transfer reopens the device node.
            self.inner = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    /// A fake `/sys`: adapters `i2c-N` whose `of_node` links to a device-tree path (or none).
    fn sys(adapters: &[(u8, Option<&str>)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let devices = t.path().join("bus/i2c/devices");
        std::fs::create_dir_all(&devices).unwrap();
        for (n, dt) in adapters {
            let d = t.path().join(format!("devices/platform/x/i2c-{n}"));
            std::fs::create_dir_all(&d).unwrap();
            if let Some(dt) = dt {
                symlink(
                    format!("../../../../firmware/devicetree/base{dt}"),
                    d.join("of_node"),
                )
                .unwrap();
            }
            symlink(&d, devices.join(format!("i2c-{n}"))).unwrap();
        }
        // A client device on a bus is not an adapter.
        std::fs::create_dir_all(devices.join("1-0040")).unwrap();
        t
    }

    #[test]
    fn the_header_bus_is_found_by_its_controller_not_its_number() {
        // A Pi 4 whose HDMI DDC adapters and the VideoCore's bus came first.
        let t = sys(&[
            (0, Some("/soc/i2c@7e205000")),
            (20, Some("/soc/i2c@7e804000")),
            (21, None),
        ]);
        assert_eq!(header_bus(t.path()), Some(20));
        // The usual case.
        let t = sys(&[
            (1, Some("/soc/i2c@7e804000")),
            (2, Some("/soc/i2c@7e805000")),
        ]);
        assert_eq!(header_bus(t.path()), Some(1));
        // A Pi 5: RP1's i2c1 under the PCIe bridge.
        let t = sys(&[(1, Some("/axi/pcie@120000/rp1/i2c@74000"))]);
        assert_eq!(header_bus(t.path()), Some(1));
    }

    #[test]
    fn no_header_controller_is_none_and_auto_falls_back_to_bus_1() {
        let t = sys(&[(0, Some("/soc/i2c@7e205000")), (3, None)]);
        assert_eq!(header_bus(t.path()), None);
        assert_eq!(header_bus(Path::new("/nonexistent")), None);
        assert_eq!(crate::config::I2cBus::Auto.resolve(t.path()), 1);
        assert_eq!(crate::config::I2cBus::Number(7).resolve(t.path()), 7);
        let t = sys(&[(5, Some("/soc/i2c@7e804000"))]);
        assert_eq!(crate::config::I2cBus::Auto.resolve(t.path()), 5);
    }
}
