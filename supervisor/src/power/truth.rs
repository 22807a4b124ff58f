//! Ground-truth electrical signals that the INA219 simulator measures.
//!
//! A [`GroundTruth`] is the real world on the far side of the shunt: the load-side bus voltage and
//! the current, as functions of time in seconds since the simulator started. The simulator asks
//! for window means because that is what the chip's integrating ADC reports.

/// The load's voltage and current over time (seconds since start).
pub trait GroundTruth: Send {
    /// Mean load-side voltage over `[t0, t1)`, `t1 > t0`. Past the end of a finite signal the last
    /// value holds.
    fn mean_volts(&mut self, t0: f64, t1: f64) -> f64;
    /// Mean current through the shunt over `[t0, t1)`.
    fn mean_amps(&mut self, t0: f64, t1: f64) -> f64;
    /// Where a finite signal ends (a trace's last row), `None` for a live one.
    fn end(&self) -> Option<f64>;
}
