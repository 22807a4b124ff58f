//! The statement (PRODUCT §5): every term of the model, as JSON.
//!
//! The fields §5 names are there under their names; the others make the remaining terms
//! visible (the base load and where it came from, fixed costs, storage price, energy and
//! costs no member was there to carry). Energies are Wh, money is in `currency`, unrounded
//! (the page rounds for display; rounding here would break conservation).

use crate::config::CostPer;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    /// `"YYYY-MM"` for a calendar month in UTC, else `"<start>/<end>"` (RFC 3339, UTC).
    pub period: String,
    /// The period as instants: `[start, end)`.
    pub start: String,
    pub end: String,
    /// Σ E_i.
    pub measured_wh: f64,
    /// Σ O_i: dynamic energy of other services on the device; nobody's bill.
    pub other_services_wh: f64,
    /// The part of `measured_wh` filled in over sensor gaps.
    pub estimated_wh: f64,
    /// Σ B_i and Σ D_i (`base_wh + dynamic_wh = measured_wh`).
    pub base_wh: f64,
    pub dynamic_wh: f64,
    /// B_i + D_i·s_i of minutes in which nobody was a member: no one to carry it, shown here.
    pub unattributed_wh: f64,
    pub members: Vec<MemberStatement>,
    pub households: Vec<HouseholdStatement>,
    /// Currency units per kWh.
    pub tariff: f64,
    pub currency: String,
    /// P_base used, and how it was found.
    pub base_watts: f64,
    pub base_source: BaseSource,
    /// How many 1-minute means the automatic base load was taken from (0 when configured).
    pub base_history_minutes: usize,
    /// Minutes in the period, and minutes with a measurement.
    pub minutes: usize,
    pub minutes_measured: usize,
    /// The period in calendar months (1 for a calendar month); fixed costs and storage scale by it.
    pub period_months: f64,
    pub fixed_costs: Vec<FixedCostLine>,
    pub storage_price_per_gib_month: f64,
    /// Fixed costs of minutes in which nobody was a member.
    pub unattributed_fixed_cost: f64,
}

/// Where `base_watts` came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BaseSource {
    /// `base_watts` in the configuration.
    Configured,
    /// The 10th percentile of at least a day of 1-minute means from the 7 days before.
    Auto,
    /// Less than a day of history before the period: the minimum 1-minute mean seen in it.
    AutoShortHistory,
    /// No history before the period (the first month): the same rule over the period's own
    /// minutes (10th percentile of at least a day of them, else their minimum).
    AutoFromPeriod,
    /// Nothing measured at all: 0 W, all energy is dynamic.
    AutoNoData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberStatement {
    pub user_id: String,
    pub household: String,
    pub base_wh: f64,
    pub direct_wh: f64,
    pub shared_wh: f64,
    pub total_wh: f64,
    pub media_bytes: u64,
    /// `energy_cost + fixed_cost + storage_cost`.
    pub cost: f64,
    /// `total_wh / 1000 · tariff`.
    pub energy_cost: f64,
    /// This member's part of the fixed costs: each minute's share split over those present.
    pub fixed_cost: f64,
    /// `media_bytes / 2^30 · storage_price_per_gib_month · period_months`.
    pub storage_cost: f64,
    /// Minutes of the period in which this person was a member.
    pub minutes_present: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdStatement {
    pub id: String,
    pub name: String,
    /// Sums over the household's members.
    pub total_wh: f64,
    pub cost: f64,
    pub member_count: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixedCostLine {
    pub name: String,
    pub amount: f64,
    pub per: CostPer,
    /// What falls on this period: a month's amount (a year's / 12) × `period_months`.
    pub period_amount: f64,
}
