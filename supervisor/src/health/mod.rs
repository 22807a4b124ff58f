//! Keeping Synapse healthy: unit control, probes, the health state machine, the status LED.

pub mod machine;
pub mod monitor;
pub mod probe;
pub mod process;
pub mod systemd;
pub mod unit;
