//! Time: monotonic for measuring, in real or virtual form, and the wall clock for labels.
//!
//! Every interval the meter integrates comes from a [`Clock`], never from wall-clock differences:
//! a Pi has no RTC and its wall clock jumps when NTP first syncs. The virtual clock lets `replay`
//! run an hour of trace in well under a second through the very same sampler.
//!
//! The wall clock is read here and nowhere else ([`wall_ms_now`], [`wall_secs_now`], [`utc_now`],
//! [`local_now`]; checked by `tests/architecture.rs`): it labels minutes, months, audit entries
//! and pages. Code that needs a time it can be tested with takes it as an argument.

use chrono::{DateTime, Local, Utc};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Unix milliseconds now, from the wall clock (labels only). Before 1970 it is negative.
pub fn wall_ms_now() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Unix seconds now, from the wall clock (labels only): [`wall_ms_now`] rounded down.
pub fn wall_secs_now() -> i64 {
    wall_ms_now().div_euclid(1000)
}

/// The wall clock's time now in UTC.
pub fn utc_now() -> DateTime<Utc> {
    Utc::now()
}

/// The wall clock's time now in the system's time zone (the page's footer, local days).
pub fn local_now() -> DateTime<Local> {
    Local::now()
}

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
