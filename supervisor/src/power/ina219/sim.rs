//! Register-level INA219 simulator.
