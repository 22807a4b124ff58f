//! Accounting: who caused how much of the measured energy, and what it costs (PRODUCT §5).

pub mod members;
