//! Physical quantities as newtypes, parsed once at the boundary.
//!
//! Arithmetic between them is spelled out where it is physics (`Volts * Amps = Watts`,
//! `Watts * Duration = WattHours`), so a mixed-up unit is a compile error, not a wrong bill.

use serde::Serialize;
use std::ops::{Add, AddAssign, Mul, Sub};
use std::time::Duration;

macro_rules! quantity {
    ($name:ident, $unit:literal) => {
        #[derive(Debug, Default, Clone, Copy, PartialEq, PartialOrd, Serialize)]
        #[serde(transparent)]
        #[doc = concat!("A value in ", $unit, ".")]
        pub struct $name(pub f64);

        impl $name {
            pub const ZERO: Self = Self(0.0);
            pub fn get(self) -> f64 {
                self.0
            }
        }

        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }

        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }

        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{:.4} {}", self.0, $unit)
            }
        }
    };
}

quantity!(Volts, "V");
quantity!(Amps, "A");
quantity!(Watts, "W");
quantity!(WattHours, "Wh");

impl Mul<Amps> for Volts {
    type Output = Watts;
    fn mul(self, rhs: Amps) -> Watts {
        Watts(self.0 * rhs.0)
    }
}

impl Mul<Duration> for Watts {
    type Output = WattHours;
    fn mul(self, rhs: Duration) -> WattHours {
        WattHours(self.0 * rhs.as_secs_f64() / 3600.0)
    }
}

impl WattHours {
    /// The mean power over `over`, or zero for an empty interval.
    pub fn mean_power(self, over: Duration) -> Watts {
        let s = over.as_secs_f64();
        if s > 0.0 {
            Watts(self.0 * 3600.0 / s)
        } else {
            Watts::ZERO
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_times_time_is_energy() {
        let e = Volts(5.0) * Amps(0.6) * Duration::from_secs(3600);
        assert!((e.0 - 3.0).abs() < 1e-12);
        assert!((e.mean_power(Duration::from_secs(1800)).0 - 6.0).abs() < 1e-12);
        assert_eq!(WattHours(1.0).mean_power(Duration::ZERO), Watts::ZERO);
    }
}
