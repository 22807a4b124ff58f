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
