//! The INA219 on I2C, through the `ina219` driver crate. Only `power/ina219/` knows its registers.

pub mod sim;
