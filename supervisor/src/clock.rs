//! Monotonic time for measuring, in real or virtual form.
//!
//! Every interval the meter integrates comes from a [`Clock`], never from wall-clock differences:
//! a Pi has no RTC and its wall clock jumps when NTP first syncs. The virtual clock lets `replay`
//! run an hour of trace in well under a second through the very same sampler.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A monotonic clock: time since an arbitrary origin, and a way to wait.
pub trait Clock: Send + Sync {
    /// Time since this clock's origin.
    fn now(&self) -> Duration;
    /// Block until `d` has passed on this clock.
    fn sleep(&self, d: Duration);
}

pub type SharedClock = Arc<dyn Clock>;

/// The real monotonic clock (`CLOCK_MONOTONIC` through `Instant`).
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Virtual time: `sleep` advances the clock instantly. Nanosecond resolution.
#[derive(Debug, Default)]
pub struct VirtualClock {
    nanos: AtomicU64,
}

impl VirtualClock {
    pub fn new() -> Self {
        Self::default()
    }
    /// Move time forward without anyone sleeping (e.g. a bus transfer that takes time).
    pub fn advance(&self, d: Duration) {
        let n = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(n, Ordering::SeqCst);
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }
    fn sleep(&self, d: Duration) {
        self.advance(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_sleep_advances_instantly() {
        let c = VirtualClock::new();
        c.sleep(Duration::from_secs(3600));
        c.advance(Duration::from_millis(5));
        assert_eq!(c.now(), Duration::from_millis(3_600_005));
    }

    #[test]
    fn monotonic_clock_never_goes_back() {
        let c = MonotonicClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
    }
}
