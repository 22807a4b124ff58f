//! From a month's figures and the budgets to each member's limits (pure: no IO, no clock).
//!
//! What each budget counts, and what happens when it is used up:
//! - energy and money: the household's members together (household budget) or the member alone
//!   (member budget), from the month so far's statement; money only once a person set a
//!   tariff. Used up: the member's messages slow to the budget's `limited_burst`
//!   and their uploads stop.
//! - prepaid (a household's): everything the household's statements cost since its first
//!   top-up against everything it paid. Used up: as above, until a top-up.
//! - media stored: the member's media in Synapse, or the household's together. Full: an upload
//!   larger than what is left is refused; nothing stored is touched.
//! - media uploaded per month: per member (the member's budget, else the household's), counted
//!   by Synapse itself over the calendar month.
//!
//! Each kind is at level 80 from 80 % of its limit and 100 from 100 %; a limit of 0 is used up.

use super::{Budget, Scope};
use serde::Serialize;
use std::collections::BTreeMap;

/// What a member used in the month so far.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberUse {
    pub user_id: String,
    /// The household in the `household` table; `None`: a household of their own.
    pub household: Option<String>,
    pub energy_wh: f64,
    /// The statement's cost (energy, fixed costs, storage).
    pub cost: f64,
    pub stored_bytes: u64,
    /// Media uploaded this month, when known (Synapse's admin API).
    pub uploaded_bytes: Option<u64>,
}

/// A prepaid household's account: what it paid, and what its statements cost since.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Prepaid {
    pub paid: f64,
    pub spent: f64,
}

impl Prepaid {
    pub fn balance(&self) -> f64 {
        self.paid - self.spent
    }
}

pub struct Inputs<'a> {
    pub members: &'a [MemberUse],
    pub budgets: &'a [(Scope, Budget)],
    /// A person set a tariff: money budgets count.
    pub money_counts: bool,
    pub prepaid: &'a BTreeMap<String, Prepaid>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Energy,
    Money,
    Prepaid,
    Stored,
    Uploaded,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Energy => "energy",
            Kind::Money => "money",
            Kind::Prepaid => "prepaid",
            Kind::Stored => "stored",
            Kind::Uploaded => "uploaded",
        }
    }

    /// Using it up slows messages and stops uploads.
    pub fn throttles(self) -> bool {
        matches!(self, Kind::Energy | Kind::Money | Kind::Prepaid)
    }
}

/// One budget of one kind as it applies to a member.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Standing {
    pub kind: Kind,
    /// Whose budget it is.
    pub scope: Scope,
    pub used: f64,
    pub limit: f64,
    /// 0, 80 or 100 (percent reached).
    pub level: u8,
}

/// A member's limits now.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Limits {
    pub user_id: String,
    /// Messages a minute while an energy, money or prepaid budget is used up; `None`: as usual.
    pub throttle_burst: Option<u32>,
    /// Uploads refused altogether (same cause).
    pub blocked: bool,
    /// Bytes the member may upload in the calendar month.
    pub uploaded_max_bytes: Option<u64>,
    /// Bytes that may still be stored.
    pub stored_remaining_bytes: Option<u64>,
    pub standings: Vec<Standing>,
}

impl Limits {
    /// Anything at all limits this member now.
    pub fn limited(&self) -> bool {
        self.throttle_burst.is_some() || self.blocked || self.stored_remaining_bytes == Some(0)
    }
}

pub fn level(used: f64, limit: f64) -> u8 {
    if limit <= 0.0 || used >= limit {
        100
    } else if used >= 0.8 * limit {
        80
    } else {
        0
    }
}

/// Every member's limits, in the order of `inputs.members`.
pub fn assess(inputs: &Inputs<'_>) -> Vec<Limits> {
    let budget_of = |s: &Scope| inputs.budgets.iter().find(|(x, _)| x == s).map(|(_, b)| b);
    // The households' sums.
    let mut households: BTreeMap<&str, (f64, f64, u64)> = BTreeMap::new();
    for m in inputs.members {
        if let Some(h) = &m.household {
            let e = households.entry(h).or_default();
            e.0 += m.energy_wh;
            e.1 += m.cost;
            e.2 += m.stored_bytes;
        }
    }
    inputs
        .members
        .iter()
        .map(|m| {
            let hscope = m.household.clone().map(Scope::Household);
            let hb = hscope.as_ref().and_then(budget_of);
            let mscope = Scope::Member(m.user_id.clone());
            let mb = budget_of(&mscope);
            let hsum = m
                .household
                .as_deref()
                .and_then(|h| households.get(h))
                .copied()
                .unwrap_or_default();
            let mut standings = Vec::new();
            let mut throttle: Option<u32> = None;
            let mut push = |kind: Kind, scope: &Scope, b: &Budget, used: f64, limit: f64| {
                let level = level(used, limit);
                if level == 100 && kind.throttles() {
                    let r = b.limited_burst;
                    throttle = Some(throttle.map_or(r, |t| t.min(r)));
                }
                standings.push(Standing {
                    kind,
                    scope: scope.clone(),
                    used,
                    limit,
                    level,
                });
            };
            if let (Some(b), Some(s)) = (hb, &hscope) {
                if let Some(l) = b.energy_wh {
                    push(Kind::Energy, s, b, hsum.0, l);
                }
                if b.prepaid {
                    let p = m
                        .household
                        .as_deref()
                        .and_then(|h| inputs.prepaid.get(h))
                        .copied()
                        .unwrap_or_default();
                    push(Kind::Prepaid, s, b, p.spent, p.paid);
                } else if let (Some(l), true) = (b.money, inputs.money_counts) {
                    push(Kind::Money, s, b, hsum.1, l);
                }
                if let Some(l) = b.media_stored_bytes {
                    push(Kind::Stored, s, b, hsum.2 as f64, l as f64);
                }
            }
            if let Some(b) = mb {
                if let Some(l) = b.energy_wh {
                    push(Kind::Energy, &mscope, b, m.energy_wh, l);
                }
                if let (Some(l), true) = (b.money, inputs.money_counts) {
                    push(Kind::Money, &mscope, b, m.cost, l);
                }
                if let Some(l) = b.media_stored_bytes {
                    push(Kind::Stored, &mscope, b, m.stored_bytes as f64, l as f64);
                }
            }
            // Uploads per member: the member's own budget, else the household's.
            let upload = mb
                .and_then(|b| b.media_upload_bytes.map(|l| (b, &mscope, l)))
                .or_else(|| {
                    hb.zip(hscope.as_ref())
                        .and_then(|(b, s)| b.media_upload_bytes.map(|l| (b, s, l)))
                });
            if let (Some((b, s, l)), Some(used)) = (upload, m.uploaded_bytes) {
                push(Kind::Uploaded, s, b, used as f64, l as f64);
            }
            let stored_remaining_bytes = standings
                .iter()
                .filter(|s| s.kind == Kind::Stored)
                .map(|s| (s.limit - s.used).max(0.0) as u64)
                .min();
            Limits {
                user_id: m.user_id.clone(),
                throttle_burst: throttle,
                blocked: throttle.is_some(),
                uploaded_max_bytes: upload.map(|(_, _, l)| l),
                stored_remaining_bytes,
                standings,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(user: &str, household: Option<&str>, wh: f64, cost: f64, stored: u64) -> MemberUse {
        MemberUse {
            user_id: user.into(),
            household: household.map(String::from),
            energy_wh: wh,
            cost,
            stored_bytes: stored,
            uploaded_bytes: Some(0),
        }
    }

    fn run(members: &[MemberUse], budgets: &[(Scope, Budget)], money: bool) -> Vec<Limits> {
        assess(&Inputs {
            members,
            budgets,
            money_counts: money,
            prepaid: &BTreeMap::new(),
        })
    }

    #[test]
    fn a_household_energy_budget_counts_its_members_together() {
        let members = [
            member("@a:x", Some("h"), 600.0, 0.0, 0),
            member("@b:x", Some("h"), 300.0, 0.0, 0),
            member("@c:x", None, 5000.0, 0.0, 0),
        ];
        let budget = Budget {
            energy_wh: Some(1000.0),
            limited_burst: 3,
            ..Budget::default()
        };
        let l = run(
            &members,
            &[(Scope::Household("h".into()), budget.clone())],
            false,
        );
        assert_eq!(l[0].standings[0].level, 80, "900 of 1000 Wh");
        assert_eq!(l[0].throttle_burst, None);
        assert!(!l[2].limited(), "no budget, no limit, however much");

        let more = [
            member("@a:x", Some("h"), 700.0, 0.0, 0),
            member("@b:x", Some("h"), 300.0, 0.0, 0),
        ];
        let l = run(&more, &[(Scope::Household("h".into()), budget)], false);
        for m in &l {
            assert_eq!(m.throttle_burst, Some(3), "{}", m.user_id);
            assert!(m.blocked);
        }
    }

    #[test]
    fn money_counts_only_once_a_tariff_is_chosen() {
        let members = [member("@a:x", Some("h"), 10.0, 9.0, 0)];
        let b = [(
            Scope::Member("@a:x".into()),
            Budget {
                money: Some(5.0),
                ..Budget::default()
            },
        )];
        assert!(run(&members, &b, false)[0].standings.is_empty());
        assert!(run(&members, &b, true)[0].blocked);
    }

    #[test]
    fn a_full_store_refuses_uploads_only_beyond_what_is_left_and_never_throttles() {
        let members = [
            member("@a:x", Some("h"), 0.0, 0.0, 700),
            member("@b:x", Some("h"), 0.0, 0.0, 200),
        ];
        let b = [
            (
                Scope::Household("h".into()),
                Budget {
                    media_stored_bytes: Some(1000),
                    ..Budget::default()
                },
            ),
            (
                Scope::Member("@b:x".into()),
                Budget {
                    media_stored_bytes: Some(250),
                    ..Budget::default()
                },
            ),
        ];
        let l = run(&members, &b, false);
        assert_eq!(l[0].stored_remaining_bytes, Some(100));
        assert_eq!(
            l[1].stored_remaining_bytes,
            Some(50),
            "the tighter of the two"
        );
        assert!(l.iter().all(|m| m.throttle_burst.is_none() && !m.blocked));
    }

    #[test]
    fn uploads_per_month_take_the_members_budget_over_the_households() {
        let mut a = member("@a:x", Some("h"), 0.0, 0.0, 0);
        a.uploaded_bytes = Some(90);
        let b = [
            (
                Scope::Household("h".into()),
                Budget {
                    media_upload_bytes: Some(1000),
                    ..Budget::default()
                },
            ),
            (
                Scope::Member("@a:x".into()),
                Budget {
                    media_upload_bytes: Some(100),
                    ..Budget::default()
                },
            ),
        ];
        let l = run(&[a], &b, false);
        assert_eq!(l[0].uploaded_max_bytes, Some(100));
        assert_eq!(l[0].standings[0].level, 80);
    }

    #[test]
    fn prepaid_is_used_up_when_the_statements_cost_what_was_paid_and_lifts_with_a_top_up() {
        let members = [member("@a:x", Some("h"), 0.0, 0.0, 0)];
        let b = [(
            Scope::Household("h".into()),
            Budget {
                prepaid: true,
                money: Some(1.0),
                ..Budget::default()
            },
        )];
        let mut prepaid = BTreeMap::new();
        prepaid.insert(
            "h".to_string(),
            Prepaid {
                paid: 10.0,
                spent: 10.2,
            },
        );
        let inputs = |p: &BTreeMap<String, Prepaid>| {
            assess(&Inputs {
                members: &members,
                budgets: &b,
                money_counts: true,
                prepaid: p,
            })
        };
        let l = inputs(&prepaid);
        assert_eq!(l[0].throttle_burst, Some(crate::budget::DEFAULT_BURST));
        assert_eq!(
            l[0].standings.len(),
            1,
            "prepaid replaces the monthly money"
        );
        prepaid.get_mut("h").unwrap().paid += 20.0;
        assert!(!inputs(&prepaid)[0].limited());
        // Nothing paid yet: nothing to spend.
        prepaid.insert("h".into(), Prepaid::default());
        assert!(inputs(&prepaid)[0].blocked);
    }

    #[test]
    fn the_month_turning_lifts_monthly_limits() {
        // The same budget over a new month's first minute: nothing used yet.
        let b = [(
            Scope::Member("@a:x".into()),
            Budget {
                energy_wh: Some(100.0),
                ..Budget::default()
            },
        )];
        let end = run(&[member("@a:x", None, 150.0, 0.0, 0)], &b, false);
        let start = run(&[member("@a:x", None, 0.1, 0.0, 0)], &b, false);
        assert!(end[0].blocked);
        assert!(!start[0].limited());
    }

    #[test]
    fn levels() {
        assert_eq!(level(0.0, 0.0), 100, "a limit of 0 allows nothing");
        assert_eq!(level(79.9, 100.0), 0);
        assert_eq!(level(80.0, 100.0), 80);
        assert_eq!(level(100.0, 100.0), 100);
    }
}
