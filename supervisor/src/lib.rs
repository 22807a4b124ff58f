//! hearth's supervisor: power metering, health, accounting and the status page of a family's
//! Matrix server. See ARCHITECTURE.md for the map.

pub mod clock;
pub mod power;
pub mod units;
