//! The anonymous monthly energy report to the cooperative (issue 14, PRODUCT.md §6).
//!
//! - this file: the pure builder. [`build`] turns a month's [`Inputs`] and one uniform draw into a
//!   [`Draft`]: the report without its token. It does no IO and reads no clock; the noise's
//!   randomness is an argument, so every clamp and rounding is tested exactly;
//! - `gather.rs`: the IO that collects the inputs (storage, the device tree, Synapse's version);
//! - `outbox.rs`: the SQLite outbox (one report per month, made once at a fixed random hour,
//!   delivered exactly once) and the stored tokens;
//! - `send.rs`: the sender task (tokens from the cooperative, delivery with backoff).
//!
//! Privacy (ARCHITECTURE.md "Anonymous reports" has the reasoning): the month's energy is clamped
//! to [0, P_max·hours] with P_max the board class's supply rating ([`max_watts`]), then Laplace
//! noise of scale P_max·hours/ε is added (the clamp range is the sensitivity of a monthly total),
//! then it is rounded to 0.1 kWh. The noise is drawn once, when the month's report is made, and
//! kept in the outbox: a retry re-sends the same value, so repeated sends cannot be averaged.

pub mod gather;
pub mod outbox;
pub mod send;

use report_wire::{Hardware, MembersBucket, Report, Token, SCHEMA};
use serde::{Deserialize, Serialize};

/// What one month's report is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Inputs {
    /// `YYYY-MM`, UTC.
    pub month: String,
    /// The month's length in hours (672..=744; a current month is still its whole length: the
    /// clamp, and so the noise, do not depend on how far the month has gone).
    pub month_hours: f64,
    /// The whole board's measured energy in the month, Wh.
    pub measured_wh: f64,
    /// Seconds of the month covered by measurements.
    pub measured_s: f64,
    pub hardware: Hardware,
    /// Members in the month.
    pub members: usize,
    /// Synapse's version as it reports it (`1.139.0`, `1.140.0rc1`); `None` when unknown.
    pub synapse_version: Option<String>,
    pub supplier: Option<String>,
    pub epsilon: f64,
    /// The report's idempotency key ([`report_wire::new_id`]).
    pub id: String,
}

/// A report before its token: what the outbox keeps from the moment the month's report is made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Draft {
    pub schema: String,
    pub id: String,
    pub month: String,
    pub energy_kwh: f64,
    pub epsilon: f64,
    pub hardware: Hardware,
    pub members: MembersBucket,
    pub uptime_share: f64,
    pub synapse: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplier: Option<String>,
}

impl Draft {
    pub fn with_token(self, token: Token) -> Report {
        Report {
            schema: self.schema,
            id: self.id,
            month: self.month,
            energy_kwh: self.energy_kwh,
            epsilon: self.epsilon,
            hardware: self.hardware,
            members: self.members,
            uptime_share: self.uptime_share,
            synapse: self.synapse,
            supplier: self.supplier,
            token,
        }
    }
}

/// The most a board of the class can draw, in watts ([`Hardware::max_watts`]).
pub fn max_watts(hardware: Hardware) -> f64 {
    hardware.max_watts()
}

/// The clamp bound of a month, kWh ([`Hardware::max_kwh`]).
pub fn max_kwh(hardware: Hardware, month_hours: f64) -> f64 {
    hardware.max_kwh(month_hours)
}

/// Synapse's `MAJOR.MINOR` from its version string; `0.0` when unknown or unreadable (the
/// collector groups those as unknown).
pub fn major_minor(version: Option<&str>) -> String {
    let parse = |v: &str| {
        let mut parts = v.trim().trim_start_matches('v').split('.');
        let major: u32 = parts.next()?.parse().ok()?;
        let minor: String = parts
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        let minor: u32 = minor.parse().ok()?;
        (major < 10_000 && minor < 10_000).then(|| format!("{major}.{minor}"))
    };
    version.and_then(parse).unwrap_or_else(|| "0.0".into())
}

/// The month's report without its token. `noise_uniform` is one draw in (0, 1) (the box's comes
/// from `getrandom`); the same inputs and draw always give the same draft.
pub fn build(inputs: &Inputs, noise_uniform: f64) -> Draft {
    let max = max_kwh(inputs.hardware, inputs.month_hours);
    let measured_kwh = if inputs.measured_wh.is_finite() {
        inputs.measured_wh / 1000.0
    } else {
        0.0
    };
    let clamped = measured_kwh.clamp(0.0, max);
    let epsilon = inputs
        .epsilon
        .clamp(report_wire::MIN_EPSILON, report_wire::MAX_EPSILON);
    let noised = clamped + report_wire::laplace(max / epsilon, noise_uniform);
    // Kept negative if the noise makes it so: see `Report::energy_kwh`.
    let energy_kwh = round_to(
        noised.clamp(-report_wire::MAX_ABS_KWH, report_wire::MAX_ABS_KWH),
        10.0,
    );
    let month_s = inputs.month_hours * 3600.0;
    let share = if month_s > 0.0 && inputs.measured_s.is_finite() {
        (inputs.measured_s / month_s).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Draft {
        schema: SCHEMA.into(),
        id: inputs.id.clone(),
        month: inputs.month.clone(),
        energy_kwh,
        epsilon,
        hardware: inputs.hardware,
        members: MembersBucket::of(inputs.members),
        uptime_share: round_to(share, 20.0),
        synapse: major_minor(inputs.synapse_version.as_deref()),
        supplier: inputs
            .supplier
            .clone()
            .filter(|s| report_wire::check_supplier(s).is_ok()),
    }
}

/// `x` rounded to a multiple of 1/`per_unit`, without the float noise of `0.30000000000000004`.
fn round_to(x: f64, per_unit: f64) -> f64 {
    let r = (x * per_unit).round() / per_unit;
    // Printing with the fewest digits that round-trip gives "0.3", not "0.30000000000000004".
    format!("{r:.3}").parse().unwrap_or(r)
}

#[cfg(test)]
mod tests;
