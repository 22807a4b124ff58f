//! Keeping Synapse healthy: unit control, probes, the health state machine, the status LED.

pub mod machine;
pub mod unit;
