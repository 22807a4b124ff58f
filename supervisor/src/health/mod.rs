//! Keeping Synapse healthy: unit control, probes, the health state machine, the status LED.

pub mod unit;
