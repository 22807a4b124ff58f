//! Invitations: how the rest of the family gets accounts (PRODUCT §1, journey 1).
//!
//! A server admin or a household admin makes an invitation on the page; it is a random token
//! (32 bytes from the OS, as hex) shown once as a link and a QR code ([`qr`]). Only its SHA-256
//! is stored ([`hash_token`]): the database alone lets nobody sign up. An invitation is for one
//! account, for the inviter's household (a server admin may choose any, or none), and expires
//! ([`expiry`]: 7 days unless the inviter chose fewer).
//!
//! Using one is taken in one SQL statement BEFORE the account is created at Synapse
//! ([`take`]): of two sign-ups with the same link exactly one gets it; the other is told the
//! invitation is used. Should Synapse refuse, the invitation is given back ([`give_back`]).
//! Once the account exists, [`complete`] records it, puts the new member into the household
//! (`accounting::directory::admit`, so it holds before the next directory sync) and appends
//! the `invitation_used` audit entry, all in one transaction.
//!
//! Only this module writes the `invitation` table.

pub mod qr;
pub mod synapse;

use crate::audit::{self, Action, Actor, AuditError, NewEntry};
use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use sha2::{Digest, Sha256};

// The table is migration 7 in `storage/schema.rs` (`INVITATION`).

/// An invitation is valid this many days unless the inviter chose fewer…
pub const DEFAULT_DAYS: u32 = 7;
/// …and never longer.
pub const MAX_DAYS: u32 = 7;

#[derive(Debug, thiserror::Error)]
pub enum InviteError {
    #[error("database {path}: {source}")]
    Sql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Audit(#[from] AuditError),
    #[error(transparent)]
    Directory(#[from] crate::accounting::directory::DirectoryError),
    #[error("no household {0:?}")]
    UnknownHousehold(String),
    #[error("days: {0} is not between 1 and {MAX_DAYS}")]
    BadDays(u32),
    #[error("no random source for the invitation's token")]
    NoRandom,
}

fn sql(conn: &Connection) -> impl Fn(rusqlite::Error) -> InviteError + '_ {
    move |source| InviteError::Sql {
        path: crate::accounting::directory::db_path(conn),
        source,
    }
}

fn sql_at(path: &str) -> impl Fn(rusqlite::Error) -> InviteError + '_ {
    move |source| InviteError::Sql {
        path: path.to_string(),
        source,
    }
}

/// The hex SHA-256 of a token: what the database keeps.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// When an invitation made at `created_s` expires: after `days` (default [`DEFAULT_DAYS`],
/// 1 to [`MAX_DAYS`]).
pub fn expiry(created_s: i64, days: Option<u32>) -> Result<i64, InviteError> {
    let d = days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&d) {
        return Err(InviteError::BadDays(d));
    }
    Ok(created_s + i64::from(d) * 86_400)
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Open,
    /// Taken by a sign-up (done or in progress).
    Used,
    Revoked,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Used => "used",
            State::Revoked => "revoked",
            State::Expired => "expired",
        }
    }
}

/// One row of the `invitation` table (without the token's hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    pub id: i64,
    pub inviter: String,
    pub household: Option<String>,
    pub created_s: i64,
    pub expires_s: i64,
    pub used_s: Option<i64>,
    pub user_id: Option<String>,
    pub revoked_s: Option<i64>,
}

impl Invitation {
    /// Used before revoked before expired: a used invitation stays used.
    pub fn state(&self, now_s: i64) -> State {
        if self.used_s.is_some() || self.user_id.is_some() {
            State::Used
        } else if self.revoked_s.is_some() {
            State::Revoked
        } else if now_s >= self.expires_s {
            State::Expired
        } else {
            State::Open
        }
    }

    pub fn to_json(&self, now_s: i64) -> serde_json::Value {
        serde_json::json!({
            "id": self.id,
            "inviter": self.inviter,
            "household": self.household,
            "created": rfc3339(self.created_s),
            "expires": rfc3339(self.expires_s),
            "state": self.state(now_s),
            "user_id": self.user_id,
        })
    }
}

pub fn rfc3339(s: i64) -> Option<String> {
    DateTime::from_timestamp(s, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
}

const COLS: &str =
    "SELECT id, inviter, household, created_s, expires_s, used_s, user_id, revoked_s FROM invitation";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Invitation> {
    Ok(Invitation {
        id: r.get(0)?,
        inviter: r.get(1)?,
        household: r.get(2)?,
        created_s: r.get(3)?,
        expires_s: r.get(4)?,
        used_s: r.get(5)?,
        user_id: r.get(6)?,
        revoked_s: r.get(7)?,
    })
}

/// A new token: 32 random bytes as hex.
fn new_token() -> Result<String, InviteError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| InviteError::NoRandom)?;
    Ok(hex::encode(b))
}

/// Make an invitation from `inviter` into `household` (checked to exist) valid for `days`;
/// returns it and its token (shown once, never stored). Audited (`invitation_created`).
pub fn create(
    conn: &mut Connection,
    inviter: &str,
    household: Option<&str>,
    days: Option<u32>,
    now: DateTime<Utc>,
) -> Result<(Invitation, String), InviteError> {
    let created_s = now.timestamp();
    let expires_s = expiry(created_s, days)?;
    let token = new_token()?;
    let actor = Actor::user(inviter)?;
    let path = crate::accounting::directory::db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    if let Some(h) = household {
        let known = tx
            .query_row("SELECT 1 FROM household WHERE id = ?1", [h], |_| Ok(()))
            .optional()
            .map_err(sql(&tx))?;
        if known.is_none() {
            return Err(InviteError::UnknownHousehold(h.to_string()));
        }
    }
    tx.execute(
        "INSERT INTO invitation (token_sha256, inviter, household, created_s, expires_s)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![hash_token(&token), inviter, household, created_s, expires_s],
    )
    .map_err(sql(&tx))?;
    let id = tx.last_insert_rowid();
    audit::append(
        &tx,
        &NewEntry::new(actor, Action::InvitationCreated)
            .at(now)
            .detail("invitation", id)
            .detail("household", household)
            .detail("expires", rfc3339(expires_s)),
    )?;
    tx.commit().map_err(sql_at(&path))?;
    Ok((
        Invitation {
            id,
            inviter: inviter.to_string(),
            household: household.map(str::to_string),
            created_s,
            expires_s,
            used_s: None,
            user_id: None,
            revoked_s: None,
        },
        token,
    ))
}

/// Open invitations, newest first: those `inviter` made, or all with `None`.
pub fn open(
    conn: &Connection,
    inviter: Option<&str>,
    now_s: i64,
) -> Result<Vec<Invitation>, InviteError> {
    let mut st = conn
        .prepare_cached(&format!(
            "{COLS} WHERE used_s IS NULL AND user_id IS NULL AND revoked_s IS NULL
               AND expires_s > ?1 AND (?2 IS NULL OR inviter = ?2) ORDER BY id DESC"
        ))
        .map_err(sql(conn))?;
    let rows = st
        .query_map(params![now_s, inviter], row)
        .map_err(sql(conn))?;
    rows.collect::<Result<_, _>>().map_err(sql(conn))
}

/// The invitation numbered `id`.
pub fn get(conn: &Connection, id: i64) -> Result<Option<Invitation>, InviteError> {
    conn.query_row(&format!("{COLS} WHERE id = ?1"), [id], row)
        .optional()
        .map_err(sql(conn))
}

/// The invitation a token belongs to.
pub fn find(conn: &Connection, token: &str) -> Result<Option<Invitation>, InviteError> {
    conn.query_row(
        &format!("{COLS} WHERE token_sha256 = ?1"),
        [hash_token(token)],
        row,
    )
    .optional()
    .map_err(sql(conn))
}

/// Revoke an open invitation (the caller checked who may). Returns false when it was not open
/// (nothing changes, nothing is logged). Audited (`invitation_revoked`).
pub fn revoke(
    conn: &mut Connection,
    id: i64,
    by: &str,
    now: DateTime<Utc>,
) -> Result<bool, InviteError> {
    let actor = Actor::user(by)?;
    let path = crate::accounting::directory::db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    let n = tx
        .execute(
            "UPDATE invitation SET revoked_s = ?2
             WHERE id = ?1 AND used_s IS NULL AND user_id IS NULL AND revoked_s IS NULL",
            params![id, now.timestamp()],
        )
        .map_err(sql(&tx))?;
    if n == 0 {
        return Ok(false);
    }
    audit::append(
        &tx,
        &NewEntry::new(actor, Action::InvitationRevoked)
            .at(now)
            .detail("invitation", id),
    )?;
    tx.commit().map_err(sql_at(&path))?;
    Ok(true)
}

/// Why a token cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// No invitation has this token.
    Unknown,
    /// It was used, revoked or has expired.
    Gone(Invitation, State),
}

/// Take the invitation of `token` for a sign-up: one `UPDATE`, so of two concurrent sign-ups
/// exactly one succeeds.
pub fn take(
    conn: &mut Connection,
    token: &str,
    now_s: i64,
) -> Result<Result<Invitation, Unusable>, InviteError> {
    let path = crate::accounting::directory::db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    let hash = hash_token(token);
    let n = tx
        .execute(
            "UPDATE invitation SET used_s = ?2
             WHERE token_sha256 = ?1 AND used_s IS NULL AND user_id IS NULL
               AND revoked_s IS NULL AND expires_s > ?2",
            params![hash, now_s],
        )
        .map_err(sql(&tx))?;
    let inv = tx
        .query_row(&format!("{COLS} WHERE token_sha256 = ?1"), [&hash], row)
        .optional()
        .map_err(sql(&tx))?;
    tx.commit().map_err(sql_at(&path))?;
    Ok(match inv {
        None => Err(Unusable::Unknown),
        Some(i) if n == 1 => Ok(i),
        Some(i) => {
            // Taken just now by another sign-up, or gone before.
            let state = match i.state(now_s) {
                State::Open => State::Used,
                s => s,
            };
            Err(Unusable::Gone(i, state))
        }
    })
}

/// Give a taken invitation back (Synapse refused the account): usable again until it expires.
pub fn give_back(conn: &Connection, id: i64) -> Result<(), InviteError> {
    conn.execute(
        "UPDATE invitation SET used_s = NULL WHERE id = ?1 AND user_id IS NULL",
        [id],
    )
    .map_err(sql(conn))?;
    Ok(())
}

/// The account `user_id` was created with the taken invitation `inv`: record it, put the new
/// member into the invitation's household (before any directory sync), audit
/// (`invitation_used` about the new member), in one transaction. Returns the household the
/// member is in (`None` when the invitation had none, or its household was removed since).
pub fn complete(
    conn: &mut Connection,
    inv: &Invitation,
    user_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<String>, InviteError> {
    let actor = Actor::user(user_id)?;
    let path = crate::accounting::directory::db_path(conn);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql_at(&path))?;
    tx.execute(
        "UPDATE invitation SET user_id = ?2, used_s = COALESCE(used_s, ?3) WHERE id = ?1",
        params![inv.id, user_id, now.timestamp()],
    )
    .map_err(sql(&tx))?;
    let household = crate::accounting::directory::admit(
        &tx,
        user_id,
        inv.household.as_deref(),
        &inv.inviter,
        now,
    )?;
    audit::append(
        &tx,
        &NewEntry::new(actor, Action::InvitationUsed)
            .at(now)
            .about(user_id)
            .detail("invitation", inv.id)
            .detail("inviter", inv.inviter.as_str())
            .detail("household", household.clone()),
    )?;
    tx.commit().map_err(sql_at(&path))?;
    Ok(household)
}

#[cfg(test)]
mod tests;
