//! An LED on a GPIO pin through rppal: with `power/i2c.rs`, the only code that knows rppal
//! (checked by `tests/architecture.rs`).

use super::Led;

/// An LED on a GPIO pin through rppal; `active_low` when the pin sinks the LED's current.
pub struct GpioLed {
    pin: rppal::gpio::OutputPin,
    active_low: bool,
}

impl GpioLed {
    pub fn open(bcm_pin: u8, active_low: bool) -> Result<Self, rppal::gpio::Error> {
        let pin = rppal::gpio::Gpio::new()?.get(bcm_pin)?.into_output();
        Ok(Self { pin, active_low })
    }
}

impl Led for GpioLed {
    fn set(&mut self, on: bool) -> std::io::Result<()> {
        if on != self.active_low {
            self.pin.set_high();
        } else {
            self.pin.set_low();
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("GPIO {}", self.pin.pin())
    }
}
