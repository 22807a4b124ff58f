//! The member directory: who the members are, from Synapse, and which household each pays with
//! (PRODUCT §5), kept in the supervisor's database.
//!
//! - Members come from Synapse (`sync`: the admin API, every `[accounting] directory_sync_s`):
//!   every local account except guests, deactivated accounts, appservice users (bridges), `bot`
//!   and `support` users, and the supervisor's own account. A member's `joined_s` is Synapse's
//!   `creation_ts`; `left_s` is the first sync that no longer counted them (deactivated, gone,
//!   turned into a bot), so their history stays and past periods still bill them. An account
//!   reactivated later is a new membership: `joined_s` becomes that sync, `left_s` clears.
//!   An account that was already deactivated when the directory first saw it never was a member
//!   here (nothing says when it was active).
//! - Households are the family's (`hearth-supervisor household add|assign|remove|list`). Every
//!   change appends an audit entry (`household_change`) in the same transaction.
//! - A member without a household (`household` NULL, e.g. just created) is still a member and
//!   pays alone: [`members_for`] gives them a one-person household of their own, id
//!   `solo.<localpart>` (bytes other than letters, digits and `-` written `_xx` in hex, so two
//!   localparts never share one), named by their user id. The prefix `solo.` is reserved.
//! - Media: bytes each member has uploaded and Synapse still stores, stored as a step function
//!   (a row when the figure changes); [`media_bytes_for`] gives the time-weighted mean over a
//!   period, what "GiB stored per month" bills.
//!
//! [`members_for`] builds the same [`Members`] the Members file gives, so the model does not
//! care where members come from. Only this module writes the `household`, `member`,
//! `member_media` and `appservice_user` tables.

pub mod sync;

pub use sync::{run_directory_sync, SynapseDirectory};

use crate::accounting::members::{check_household_id, Household, Member, Members};
use crate::accounting::model::Period;
use crate::audit::{self, Action, Actor, AuditError, NewEntry};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::{BTreeMap, BTreeSet, HashSet};

// The tables are migrations 3, 5 and 6 in `storage/schema.rs` (`DIRECTORY`, `ROLES`,
// `NONMEMBER_ADMIN`).

/// Household ids with this prefix are the one-person households of members without one.
pub const PERSONAL_PREFIX: &str = "solo.";

/// The longest household name accepted.
pub const MAX_NAME_CHARS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("database {path}: {source}")]
    Sql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error("household {0:?} already exists")]
    HouseholdExists(String),
    #[error("no household {0:?} (`household list` shows them; `household add` creates one)")]
    UnknownHousehold(String),
    #[error("{0:?} is not a member (members come from Synapse; the daemon syncs them every few minutes)")]
    UnknownMember(String),
    #[error("{user_id:?} is not in household {household:?} (`household assign` first)")]
    NotInHousehold { user_id: String, household: String },
    #[error(
        "household {id:?} still has {members} member(s), past ones included; it cannot be removed"
    )]
    HouseholdNotEmpty { id: String, members: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("database {path}: the directory does not make a valid member list: {message}")]
    Inconsistent { path: String, message: String },
    #[error("Synapse {endpoint}: {reason}")]
    Synapse { endpoint: String, reason: String },
    #[error("no admin token for Synapse's admin API (health.admin_token_file)")]
    NoToken,
}

pub(crate) fn db_path(conn: &Connection) -> String {
    match conn.path() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => ":memory:".to_string(),
    }
}

pub(crate) fn sql_at(path: &str) -> impl Fn(rusqlite::Error) -> DirectoryError + '_ {
    move |source| DirectoryError::Sql {
        path: path.to_string(),
        source,
    }
}

pub(crate) fn sql(conn: &Connection) -> impl Fn(rusqlite::Error) -> DirectoryError + '_ {
    move |source| DirectoryError::Sql {
        path: db_path(conn),
        source,
    }
}

/// Who changes a household: the actor the audit log names, and for the command line the OS
/// user id that ran it (an account name could be made up; the uid cannot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedBy {
    pub actor: Actor,
    pub os_uid: Option<u32>,
}

impl ChangedBy {
    /// `hearth-supervisor household …`, run by the current OS user (the one who ran it, also
    /// after the switch to the database's owner).
    pub fn cli() -> ChangedBy {
        ChangedBy {
            actor: Actor::Cli,
            os_uid: Some(crate::owner::invoking_uid()),
        }
    }

    fn entry(&self, time: DateTime<Utc>, op: &str) -> NewEntry {
        let e = NewEntry::new(self.actor.clone(), Action::HouseholdChange)
            .at(time)
            .detail("op", op);
        match self.os_uid {
            Some(uid) => e.detail("os_uid", uid),
            None => e,
        }
    }
}

/// Create a household.
pub fn add_household(
    conn: &mut Connection,
    id: &str,
    name: &str,
    by: &ChangedBy,
    now: DateTime<Utc>,
) -> Result<(), DirectoryError> {
    check_household_id(id).map_err(|m| DirectoryError::Invalid(format!("household id: {m}")))?;
    if id.starts_with(PERSONAL_PREFIX) {
        return Err(DirectoryError::Invalid(format!(
            "household id: {id:?}: ids starting with {PERSONAL_PREFIX:?} are reserved for members without a household"
        )));
    }
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(DirectoryError::Invalid(format!(
            "household name: {name:?} must be 1 to {MAX_NAME_CHARS} characters, no control characters"
        )));
    }
    let path = db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    if household_name(&tx, id)?.is_some() {
        return Err(DirectoryError::HouseholdExists(id.to_string()));
    }
    tx.execute(
        "INSERT INTO household (id, name, created_s) VALUES (?1, ?2, ?3)",
        params![id, name, now.timestamp()],
    )
    .map_err(sql(&tx))?;
    audit::append(
        &tx,
        &by.entry(now, "add")
            .detail("household", id)
            .detail("name", name),
    )?;
    tx.commit().map_err(sql_at(&path))
}

/// Put a member (present or past) into a household. Returns false when they already were in it
/// (nothing changes, nothing is logged).
pub fn assign(
    conn: &mut Connection,
    user_id: &str,
    household: &str,
    by: &ChangedBy,
    now: DateTime<Utc>,
) -> Result<bool, DirectoryError> {
    let path = db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    let previous: Option<Option<String>> = tx
        .query_row(
            "SELECT household FROM member WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(&tx))?;
    let Some(previous) = previous else {
        return Err(DirectoryError::UnknownMember(user_id.to_string()));
    };
    if household_name(&tx, household)?.is_none() {
        return Err(DirectoryError::UnknownHousehold(household.to_string()));
    }
    if previous.as_deref() == Some(household) {
        return Ok(false);
    }
    tx.execute(
        "UPDATE member SET household = ?2 WHERE user_id = ?1",
        params![user_id, household],
    )
    .map_err(sql(&tx))?;
    // An admin of the household they leave is no longer one.
    tx.execute(
        "DELETE FROM household_admin WHERE user_id = ?1 AND household <> ?2",
        params![user_id, household],
    )
    .map_err(sql(&tx))?;
    audit::append(
        &tx,
        &by.entry(now, "assign")
            .about(user_id)
            .detail("household", household)
            .detail("previous", previous),
    )?;
    tx.commit().map_err(sql_at(&path))?;
    Ok(true)
}

/// Remove a household nobody ever belonged to (or whose members were all moved elsewhere):
/// a household with members, past ones included, stays, so past periods still add up.
pub fn remove_household(
    conn: &mut Connection,
    id: &str,
    by: &ChangedBy,
    now: DateTime<Utc>,
) -> Result<(), DirectoryError> {
    let path = db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    if household_name(&tx, id)?.is_none() {
        return Err(DirectoryError::UnknownHousehold(id.to_string()));
    }
    let members: i64 = tx
        .query_row(
            "SELECT COUNT(*) FROM member WHERE household = ?1",
            [id],
            |r| r.get(0),
        )
        .map_err(sql(&tx))?;
    if members > 0 {
        return Err(DirectoryError::HouseholdNotEmpty {
            id: id.to_string(),
            members: members as u64,
        });
    }
    tx.execute("DELETE FROM household WHERE id = ?1", [id])
        .map_err(sql(&tx))?;
    audit::append(&tx, &by.entry(now, "remove").detail("household", id))?;
    tx.commit().map_err(sql_at(&path))
}

/// Make a member an admin of their household (`admin`) or take that back. The member must be
/// in the household. Returns false when nothing changes (nothing is logged then).
pub fn set_household_admin(
    conn: &mut Connection,
    user_id: &str,
    household: &str,
    admin: bool,
    by: &ChangedBy,
    now: DateTime<Utc>,
) -> Result<bool, DirectoryError> {
    let path = db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    if household_name(&tx, household)?.is_none() {
        return Err(DirectoryError::UnknownHousehold(household.to_string()));
    }
    let current: Option<Option<String>> = tx
        .query_row(
            "SELECT household FROM member WHERE user_id = ?1",
            [user_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql(&tx))?;
    match current {
        None => return Err(DirectoryError::UnknownMember(user_id.to_string())),
        Some(h) if admin && h.as_deref() != Some(household) => {
            return Err(DirectoryError::NotInHousehold {
                user_id: user_id.to_string(),
                household: household.to_string(),
            })
        }
        Some(_) => {}
    }
    let changed = if admin {
        tx.execute(
            "INSERT OR IGNORE INTO household_admin (household, user_id, since_s) VALUES (?1, ?2, ?3)",
            params![household, user_id, now.timestamp()],
        )
    } else {
        tx.execute(
            "DELETE FROM household_admin WHERE household = ?1 AND user_id = ?2",
            params![household, user_id],
        )
    }
    .map_err(sql(&tx))?;
    if changed == 0 {
        return Ok(false);
    }
    audit::append(
        &tx,
        &by.entry(now, if admin { "admin" } else { "admin_removed" })
            .about(user_id)
            .detail("household", household),
    )?;
    tx.commit().map_err(sql_at(&path))?;
    Ok(true)
}

/// A new account made with an invitation (`invite::complete`, inside its transaction): a
/// member from now on, in `household` if that still exists. The row is what the next sync
/// would insert, with the household already set; the sync keeps the household of a member it
/// knows, so the assignment holds. Returns the household the member is in. A household change
/// is audited (`household_change`, op `invited`, by the inviter).
pub fn admit(
    tx: &Connection,
    user_id: &str,
    household: Option<&str>,
    invited_by: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, DirectoryError> {
    let household = match household {
        Some(h) if household_name(tx, h)?.is_some() => Some(h),
        Some(h) => {
            tracing::warn!(
                user = user_id,
                household = h,
                "the invitation's household is gone; the new member pays alone"
            );
            None
        }
        None => None,
    };
    let now_s = now.timestamp();
    tx.execute(
        "INSERT INTO member (user_id, household, joined_s, left_s, synced_at, server_admin)
         VALUES (?1, ?2, ?3, NULL, ?3, 0)
         ON CONFLICT (user_id) DO UPDATE SET household = COALESCE(excluded.household, household)",
        params![user_id, household, now_s],
    )
    .map_err(sql(tx))?;
    if let Some(h) = household {
        let by = ChangedBy {
            actor: Actor::user(invited_by)?,
            os_uid: None,
        };
        audit::append(
            tx,
            &by.entry(now, "invited")
                .about(user_id)
                .detail("household", h),
        )?;
    }
    Ok(household.map(str::to_string))
}

/// What the last sync said of an account, for a signed-in session (`http::signin::viewer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A member now; `server_admin` is Synapse's admin flag at the last sync.
    Member { server_admin: bool },
    /// A member once, no longer counted: deactivated, deleted, or no longer a person's account.
    Left,
    /// Not a member, and a server admin at the last sync (a bot or appservice account).
    NonmemberAdmin,
    /// The directory has not seen this account (not synced since it was created), or it is a
    /// non-member without the admin flag.
    Unknown,
}

/// [`Standing`] of `user_id`.
pub fn standing(conn: &Connection, user_id: &str) -> Result<Standing, DirectoryError> {
    let member: Option<(Option<i64>, bool)> = conn
        .prepare_cached("SELECT left_s, server_admin FROM member WHERE user_id = ?1")
        .and_then(|mut st| {
            st.query_row([user_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(sql(conn))?;
    Ok(match member {
        Some((Some(_), _)) => Standing::Left,
        Some((None, server_admin)) => Standing::Member { server_admin },
        None => {
            let admin: Option<i64> = conn
                .prepare_cached("SELECT 1 FROM nonmember_admin WHERE user_id = ?1")
                .and_then(|mut st| st.query_row([user_id], |r| r.get(0)).optional())
                .map_err(sql(conn))?;
            if admin.is_some() {
                Standing::NonmemberAdmin
            } else {
                Standing::Unknown
            }
        }
    })
}

/// The household `user_id` administers and its members (present and past, sorted), if any.
pub fn administered(
    conn: &Connection,
    user_id: &str,
) -> Result<Option<(String, Vec<String>)>, DirectoryError> {
    let household: Option<String> = conn
        .prepare_cached(
            "SELECT a.household FROM household_admin a JOIN member m
               ON m.user_id = a.user_id AND m.household = a.household
             WHERE a.user_id = ?1 ORDER BY a.household LIMIT 1",
        )
        .and_then(|mut st| st.query_row([user_id], |r| r.get(0)).optional())
        .map_err(sql(conn))?;
    let Some(household) = household else {
        return Ok(None);
    };
    let mut st = conn
        .prepare_cached("SELECT user_id FROM member WHERE household = ?1 ORDER BY user_id")
        .map_err(sql(conn))?;
    let members = st
        .query_map([&household], |r| r.get(0))
        .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
        .map_err(sql(conn))?;
    Ok(Some((household, members)))
}

fn household_name(conn: &Connection, id: &str) -> Result<Option<String>, DirectoryError> {
    conn.query_row("SELECT name FROM household WHERE id = ?1", [id], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql(conn))
}

/// Current members and the page language each last chose (`None`: never signed in to the
/// page, or no choice recorded); the budgets' notices speak it.
pub fn current_languages(
    conn: &Connection,
) -> Result<Vec<(String, Option<String>)>, DirectoryError> {
    let mut st = conn
        .prepare_cached("SELECT user_id, lang FROM member WHERE left_s IS NULL ORDER BY user_id")
        .map_err(sql(conn))?;
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql(conn))?;
    Ok(rows)
}

/// Note the page language a member chose (at sign-in). A user id that is not a member
/// changes nothing.
pub fn set_language(conn: &Connection, user_id: &str, lang: &str) -> Result<(), DirectoryError> {
    conn.execute(
        "UPDATE member SET lang = ?2 WHERE user_id = ?1 AND lang IS NOT ?2",
        params![user_id, lang],
    )
    .map_err(sql(conn))?;
    Ok(())
}

/// Each member's media in Synapse at the last directory sync that saw them.
pub fn media_bytes_now(conn: &Connection) -> Result<BTreeMap<String, u64>, DirectoryError> {
    let mut st = conn
        .prepare_cached(
            "SELECT user_id, media_bytes FROM member_media m
             WHERE synced_at = (SELECT MAX(synced_at) FROM member_media p
                                WHERE p.user_id = m.user_id)",
        )
        .map_err(sql(conn))?;
    let rows = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
            ))
        })
        .and_then(|rows| rows.collect::<Result<BTreeMap<_, _>, _>>())
        .map_err(sql(conn))?;
    Ok(rows)
}

/// One row of the `member` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub user_id: String,
    pub household: Option<String>,
    pub joined_s: Option<i64>,
    pub left_s: Option<i64>,
    pub synced_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HouseholdRow {
    pub id: String,
    pub name: String,
    pub created_s: i64,
    /// Sorted by user id; past members included (their `left_s` is set).
    pub members: Vec<MemberRow>,
}

/// Everything `household list` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Listing {
    /// Sorted by id.
    pub households: Vec<HouseholdRow>,
    /// Members without a household, sorted by user id.
    pub unassigned: Vec<MemberRow>,
}

/// Households with their members, and the members without one.
pub fn list(conn: &Connection) -> Result<Listing, DirectoryError> {
    let mut out = Listing::default();
    {
        let mut st = conn
            .prepare("SELECT id, name, created_s FROM household ORDER BY id")
            .map_err(sql(conn))?;
        let rows = st
            .query_map([], |r| {
                Ok(HouseholdRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    created_s: r.get(2)?,
                    members: Vec::new(),
                })
            })
            .map_err(sql(conn))?;
        for h in rows {
            out.households.push(h.map_err(sql(conn))?);
        }
    }
    for m in member_rows(conn)? {
        match &m.household {
            None => out.unassigned.push(m),
            Some(h) => match out.households.binary_search_by(|x| x.id.as_str().cmp(h)) {
                Ok(i) => out.households[i].members.push(m),
                // A dangling reference cannot be written through this module; show it anyway.
                Err(_) => out.unassigned.push(m),
            },
        }
    }
    Ok(out)
}

fn member_rows(conn: &Connection) -> Result<Vec<MemberRow>, DirectoryError> {
    let mut st = conn
        .prepare(
            "SELECT user_id, household, joined_s, left_s, synced_at FROM member ORDER BY user_id",
        )
        .map_err(sql(conn))?;
    let rows = st
        .query_map([], |r| {
            Ok(MemberRow {
                user_id: r.get(0)?,
                household: r.get(1)?,
                joined_s: r.get(2)?,
                left_s: r.get(3)?,
                synced_at: r.get(4)?,
            })
        })
        .map_err(sql(conn))?;
    rows.collect::<Result<Vec<_>, _>>().map_err(sql(conn))
}

fn rfc3339(s: i64) -> Option<String> {
    DateTime::from_timestamp(s, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

impl Listing {
    /// `household list --json`.
    pub fn to_json(&self) -> serde_json::Value {
        let member = |m: &MemberRow| {
            serde_json::json!({
                "user_id": m.user_id,
                "joined": m.joined_s.and_then(rfc3339),
                "left": m.left_s.and_then(rfc3339),
            })
        };
        serde_json::json!({
            "households": self.households.iter().map(|h| serde_json::json!({
                "id": h.id,
                "name": h.name,
                "created": rfc3339(h.created_s),
                "members": h.members.iter().map(member).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "unassigned": self.unassigned.iter().map(member).collect::<Vec<_>>(),
        })
    }

    /// `household list`: one line per household, its members indented below.
    pub fn to_text(&self) -> String {
        let member = |m: &MemberRow| {
            let mut line = format!("  {}", m.user_id);
            if let Some(l) = m.left_s.and_then(rfc3339) {
                line.push_str(&format!(" (left {l})"));
            }
            line.push('\n');
            line
        };
        let mut out = String::new();
        for h in &self.households {
            out.push_str(&format!(
                "{}  {}  ({} member{})\n",
                h.id,
                h.name,
                h.members.len(),
                if h.members.len() == 1 { "" } else { "s" }
            ));
            for m in &h.members {
                out.push_str(&member(m));
            }
        }
        if !self.unassigned.is_empty() {
            out.push_str("(no household: each pays alone)\n");
            for m in &self.unassigned {
                out.push_str(&member(m));
            }
        }
        if out.is_empty() {
            out.push_str("no households and no members yet\n");
        }
        out
    }
}

/// The one-person household of a member without one: `solo.` and the localpart, with every
/// byte other than an ASCII letter, digit or `-` written `_xx` (so the mapping is one-to-one).
pub fn personal_household_id(user_id: &str) -> String {
    let local = user_id
        .strip_prefix('@')
        .and_then(|r| r.split_once(':'))
        .map_or(user_id, |(l, _)| l);
    let mut id = String::from(PERSONAL_PREFIX);
    for b in local.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            id.push(char::from(b));
        } else {
            id.push_str(&format!("_{b:02x}"));
        }
    }
    id
}

/// The members of `period` (everyone whose membership overlaps it) and their households, as the
/// model takes them: the same type as the Members file gives. Households without a member in
/// the period are left out; members without one get their own (see the module docs).
pub fn members_for(conn: &Connection, period: &Period) -> Result<Members, DirectoryError> {
    let rows: Vec<MemberRow> = member_rows(conn)?
        .into_iter()
        .filter(|m| {
            m.joined_s.is_none_or(|j| j < period.end_s())
                && m.left_s.is_none_or(|l| l > period.start_s())
        })
        .collect();
    let names: BTreeMap<String, String> = {
        let mut st = conn
            .prepare("SELECT id, name FROM household")
            .map_err(sql(conn))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(sql(conn))?;
        rows.collect::<Result<_, _>>().map_err(sql(conn))?
    };
    let mut households: BTreeMap<String, String> = BTreeMap::new();
    let mut members = Vec::with_capacity(rows.len());
    for m in rows {
        let household = match m.household {
            Some(h) => {
                let name = names
                    .get(&h)
                    .cloned()
                    .ok_or_else(|| DirectoryError::Inconsistent {
                        path: db_path(conn),
                        message: format!("member {:?}: no household {h:?}", m.user_id),
                    })?;
                households.insert(h.clone(), name);
                h
            }
            None => {
                let id = personal_household_id(&m.user_id);
                households.insert(id.clone(), m.user_id.clone());
                id
            }
        };
        members.push(Member {
            user_id: m.user_id,
            household,
            joined_s: m.joined_s,
            left_s: m.left_s,
        });
    }
    let households = households
        .into_iter()
        .map(|(id, name)| Household { id, name })
        .collect();
    Members::new(households, members).map_err(|message| DirectoryError::Inconsistent {
        path: db_path(conn),
        message,
    })
}

/// Each member's media over `period`: the time-weighted mean of the bytes stored (the figure of
/// a sync holds until the next one; before a member's first figure, that first figure). Members
/// with no figure are left out (the model counts them as 0).
pub fn media_bytes_for(
    conn: &Connection,
    period: &Period,
) -> Result<BTreeMap<String, u64>, DirectoryError> {
    let mut st = conn
        .prepare(
            "SELECT user_id, synced_at, media_bytes FROM member_media
             WHERE synced_at < ?2
               AND synced_at >= COALESCE((SELECT MAX(p.synced_at) FROM member_media p
                                          WHERE p.user_id = member_media.user_id
                                            AND p.synced_at <= ?1), ?1)
             ORDER BY user_id, synced_at",
        )
        .map_err(sql(conn))?;
    let rows = st
        .query_map(params![period.start_s(), period.end_s()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(sql(conn))?;
    let mut steps: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
    for row in rows {
        let (user, at, bytes) = row.map_err(sql(conn))?;
        steps
            .entry(user)
            .or_default()
            .push((at, u64::try_from(bytes).unwrap_or(0)));
    }
    let (start, end) = (period.start_s(), period.end_s());
    let len = (end - start) as f64;
    Ok(steps
        .into_iter()
        .map(|(user, s)| {
            let mut weighted = 0.0;
            for (i, &(at, bytes)) in s.iter().enumerate() {
                let from = if i == 0 { start } else { at.max(start) };
                let to = s.get(i + 1).map_or(end, |n| n.0.min(end));
                weighted += bytes as f64 * (to - from).max(0) as f64;
            }
            (user, (weighted / len).round() as u64)
        })
        .collect())
}

/// What Synapse says about its accounts at one sync (the admin API's user list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynapseAccount {
    pub user_id: String,
    pub deactivated: bool,
    pub is_guest: bool,
    pub user_type: Option<String>,
    /// Unix seconds.
    pub created_s: Option<i64>,
    /// A Synapse server admin: can read and change every account and room through the admin API.
    pub admin: bool,
}

/// One complete sync: every local account, who the supervisor is, media per user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The supervisor's own account (whoami of its token).
    pub me: String,
    pub accounts: Vec<SynapseAccount>,
    /// Accounts found (by their details) to belong to an appservice: user → appservice id.
    pub appservice: BTreeMap<String, String>,
    /// user → (bytes, count) of media Synapse stores for them.
    pub media: BTreeMap<String, (u64, u64)>,
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Members now.
    pub members: usize,
    pub joined: Vec<String>,
    pub left: Vec<String>,
    pub media_changed: usize,
}

/// A Synapse server admin as the last complete sync saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServerAdmin {
    pub user_id: String,
    /// `None` for a member; else why the account is not one ([`SUPERVISOR_ACCOUNT`] for the
    /// supervisor's own).
    pub not_member: Option<String>,
    /// The sync that saw it (Unix seconds).
    pub synced_at: i64,
}

/// [`not_a_member`]'s words for the supervisor's own account.
pub const SUPERVISOR_ACCOUNT: &str = "the supervisor's own account";

/// The current server admins: members (present, not past) with Synapse's admin flag, then the
/// admin accounts that are not members; each sorted by user id.
pub fn server_admins(conn: &Connection) -> Result<Vec<ServerAdmin>, DirectoryError> {
    let mut st = conn
        .prepare(
            "SELECT user_id, NULL, synced_at FROM member WHERE server_admin = 1 AND left_s IS NULL
             UNION ALL
             SELECT user_id, why, synced_at FROM nonmember_admin
             ORDER BY 2 IS NOT NULL, 1",
        )
        .map_err(sql(conn))?;
    let rows = st
        .query_map([], |r| {
            Ok(ServerAdmin {
                user_id: r.get(0)?,
                not_member: r.get(1)?,
                synced_at: r.get(2)?,
            })
        })
        .map_err(sql(conn))?;
    rows.collect::<Result<_, _>>().map_err(sql(conn))
}

/// Why an account is not a member, or `None` when it is one.
pub fn not_a_member(a: &SynapseAccount, me: &str) -> Option<&'static str> {
    if a.user_id == me {
        Some(SUPERVISOR_ACCOUNT)
    } else if a.is_guest {
        Some("guest")
    } else if a.deactivated {
        Some("deactivated")
    } else if matches!(a.user_type.as_deref(), Some("bot" | "support")) {
        Some("bot or support account")
    } else if crate::accounting::members::check_user_id(&a.user_id).is_err() {
        Some("not a valid user id")
    } else {
        None
    }
}

/// Accounts the directory has already classified: members (present and past) and appservice
/// users. Only the others need their details read.
pub fn known_accounts(conn: &Connection) -> Result<HashSet<String>, DirectoryError> {
    let mut st = conn
        .prepare("SELECT user_id FROM member UNION SELECT user_id FROM appservice_user")
        .map_err(sql(conn))?;
    let rows = st.query_map([], |r| r.get(0)).map_err(sql(conn))?;
    rows.collect::<Result<_, _>>().map_err(sql(conn))
}

/// Bring the tables in line with a complete snapshot taken at `now_s`, in one transaction.
pub fn apply(
    conn: &mut Connection,
    snap: &Snapshot,
    now_s: i64,
) -> Result<SyncReport, DirectoryError> {
    let path = db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    let mut report = SyncReport::default();
    for (user, app) in &snap.appservice {
        tx.execute(
            "INSERT OR REPLACE INTO appservice_user (user_id, appservice_id) VALUES (?1, ?2)",
            params![user, app],
        )
        .map_err(sql(&tx))?;
    }
    let appservice: HashSet<String> = {
        let mut st = tx
            .prepare("SELECT user_id FROM appservice_user")
            .map_err(sql(&tx))?;
        let rows = st.query_map([], |r| r.get(0)).map_err(sql(&tx))?;
        rows.collect::<Result<_, _>>().map_err(sql(&tx))?
    };
    let existing: BTreeMap<String, MemberRow> = member_rows(&tx)?
        .into_iter()
        .map(|m| (m.user_id.clone(), m))
        .collect();
    let counted: BTreeMap<&str, &SynapseAccount> = snap
        .accounts
        .iter()
        .filter(|a| not_a_member(a, &snap.me).is_none() && !appservice.contains(&a.user_id))
        .map(|a| (a.user_id.as_str(), a))
        .collect();
    for (user, a) in &counted {
        match existing.get(*user) {
            Some(m) if m.left_s.is_none() => {
                tx.execute(
                    "UPDATE member SET synced_at = ?2, server_admin = ?3 WHERE user_id = ?1",
                    params![user, now_s, a.admin],
                )
                .map_err(sql(&tx))?;
            }
            Some(_) => {
                // Reactivated: a new membership from now on (the earlier one is history).
                tx.execute(
                    "UPDATE member SET joined_s = ?2, left_s = NULL, synced_at = ?2, server_admin = ?3
                     WHERE user_id = ?1",
                    params![user, now_s, a.admin],
                )
                .map_err(sql(&tx))?;
                report.joined.push(user.to_string());
            }
            None => {
                tx.execute(
                    "INSERT INTO member (user_id, household, joined_s, left_s, synced_at, server_admin)
                     VALUES (?1, NULL, ?2, NULL, ?3, ?4)",
                    params![user, a.created_s, now_s, a.admin],
                )
                .map_err(sql(&tx))?;
                report.joined.push(user.to_string());
            }
        }
    }
    for (user, m) in &existing {
        if m.left_s.is_none() && !counted.contains_key(user.as_str()) {
            // After joining, even should the wall clock be behind (a Pi without a real-time clock).
            let left = m.joined_s.map_or(now_s, |j| now_s.max(j + 1));
            tx.execute(
                "UPDATE member SET left_s = ?2 WHERE user_id = ?1",
                params![user, left],
            )
            .map_err(sql(&tx))?;
            report.left.push(user.clone());
        }
    }
    // Admin accounts that are not members, replaced whole. A deactivated account cannot log
    // in, so its flag gives nobody access.
    tx.execute("DELETE FROM nonmember_admin", [])
        .map_err(sql(&tx))?;
    for a in snap
        .accounts
        .iter()
        .filter(|a| a.admin && !a.deactivated && !counted.contains_key(a.user_id.as_str()))
    {
        let why = match not_a_member(a, &snap.me) {
            Some(why) => why,
            None if appservice.contains(&a.user_id) => "an appservice (bridge) account",
            None => "not a member",
        };
        tx.execute(
            "INSERT OR REPLACE INTO nonmember_admin (user_id, why, synced_at) VALUES (?1, ?2, ?3)",
            params![a.user_id, why, now_s],
        )
        .map_err(sql(&tx))?;
    }
    // Media, for everyone the directory knows (past members' media is still stored).
    let mut last = tx
        .prepare(
            "SELECT media_bytes, media_count FROM member_media WHERE user_id = ?1
             ORDER BY synced_at DESC LIMIT 1",
        )
        .map_err(sql(&tx))?;
    let mut insert = tx
        .prepare(
            "INSERT OR REPLACE INTO member_media (user_id, synced_at, media_bytes, media_count)
             VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(sql(&tx))?;
    let users: BTreeSet<&str> = existing
        .keys()
        .map(String::as_str)
        .chain(counted.keys().copied())
        .collect();
    for user in users {
        let now = snap.media.get(user).copied().unwrap_or((0, 0));
        let before: Option<(i64, i64)> = last
            .query_row([user], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(sql(&tx))?;
        let before = before.map(|(b, c)| (b.max(0) as u64, c.max(0) as u64));
        if before != Some(now) && !(before.is_none() && now == (0, 0)) {
            insert
                .execute(params![
                    user,
                    now_s,
                    i64::try_from(now.0).unwrap_or(i64::MAX),
                    i64::try_from(now.1).unwrap_or(i64::MAX)
                ])
                .map_err(sql(&tx))?;
            report.media_changed += 1;
        }
    }
    drop((last, insert));
    report.members = counted.len();
    tx.commit().map_err(sql_at(&path))?;
    Ok(report)
}

#[cfg(test)]
mod tests;
