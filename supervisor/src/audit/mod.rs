//! The tamper-evident audit log (PRODUCT.md §1, §4 `audit verify`, §6).
//!
//! Every access to member-scoped data (someone viewing another member's statement, exports,
//! changes to households and limits, admin-API calls the supervisor makes for a person, denied
//! attempts, failed sign-ins) is appended to the `audit_log` table of the supervisor's SQLite
//! database as a hash chain: each entry commits to the previous one, so changing, removing,
//! inserting or reordering a row breaks the chain from that row on, and `verify` names it.
//! Truncating the tail leaves a valid shorter chain; that is caught only against a head noted
//! earlier (the page shows the current head; `audit verify --head [SEQ:]HEX`).
//!
//! Append-only: this module has no update or delete, and triggers make SQLite refuse `UPDATE`
//! and `DELETE` on the table (defence in depth: someone holding the file can drop them, which the
//! chain still shows). Entries are kept forever. `time` is the wall clock, which on a Pi without
//! a real-time clock may jump back; the order of events is `seq`.
//!
//! Privacy (§6): `detail` is a small JSON object (at most [`MAX_DETAIL_BYTES`]) and never holds
//! message content or client IP addresses; `append` refuses values that are IP addresses and
//! keys that name one.
//!
//! ## The chain, for checking it without this code
//!
//! Columns: `seq` (1, 2, 3… without gaps), `time` (UTC, RFC 3339 with milliseconds,
//! `2026-11-26T10:00:00.123Z`), `actor` (a Matrix user id, `system` or `cli`), `action`
//! ([`Action`], snake_case), `subject` (the member whose data was touched, or NULL), `detail`
//! (compact JSON), `prev_hash`, `hash` (64 lowercase hex digits each). With `lp(s)` = the
//! UTF-8 byte length of `s` as 8 bytes big-endian followed by the bytes:
//!
//! `hash = SHA-256(prev_hash as 32 bytes ‖ seq as 8 bytes big-endian ‖ lp(time) ‖ lp(actor) ‖
//! lp(action) ‖ (0x00 if subject is NULL, else 0x01 ‖ lp(subject)) ‖ lp(detail))`,
//! and entry 1's `prev_hash` is 32 zero bytes. `supervisor/tools/audit-verify.py` does this in
//! 20 lines of Python (the integration tests hold it to the same verdicts as this module):
//!
//! ```text
//! python3 supervisor/tools/audit-verify.py /var/lib/hearth/hearth.db
//! ```

pub mod chain;

pub use chain::Hash;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::ValueRef;
use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use serde_json::{Map, Value};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

// The table, its indexes and the append-only triggers are migration 2 in
// `storage/schema.rs` (`AUDIT_LOG`).

/// The largest `detail` accepted, in bytes of compact JSON.
pub const MAX_DETAIL_BYTES: usize = 1024;

/// The most entries one page of `entries_visible_to` returns.
pub const MAX_PAGE: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("database {path}: {source}")]
    Sql {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: not a hearth database (no audit_log or power_minute table)")]
    NotHearth { path: String },
    /// An entry the code tried to append breaks the log's rules (a bug at the call site).
    #[error("audit entry refused: {0}")]
    Refused(String),
    /// A stored row that cannot be read back (only a tampered database has one; `verify` names it).
    #[error("database {path}: audit entry {seq}: {field}: {message}")]
    Malformed {
        path: String,
        seq: i64,
        field: &'static str,
        message: String,
    },
}

/// What happened. A closed list: the page translates each, and `verify` rejects others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Someone viewed another member's (or a household's) statement.
    ViewStatement,
    /// Someone viewed audit entries about another member.
    ViewAudit,
    /// Member data left the appliance (a download, a report preview with member figures).
    Export,
    /// A household was created, renamed or removed, or a member joined or left one.
    HouseholdChange,
    /// A member's or household's limit or budget changed.
    LimitChange,
    /// The supervisor called Synapse's admin API on behalf of or about a person.
    AdminApiCall,
    /// An attempt to see or change data the actor may not.
    Denied,
    /// A member signed in to the page.
    SignIn,
    /// A sign-in was refused.
    SignInFailed,
    /// Maintenance mode was switched on or off from the page.
    Maintenance,
    /// An invitation to create an account was made (detail: its number, household, expiry).
    InvitationCreated,
    /// An open invitation was revoked.
    InvitationRevoked,
    /// An invitation was used: an account was created with it (about the new member).
    InvitationUsed,
    /// A sign-up with an invitation was refused (used, expired, revoked, name taken…).
    SignupRefused,
    /// A server admin deactivated an account or reset its password from the page.
    AccountChange,
    /// The server's permanent name was chosen on `/setup` (with the setup code).
    ServerNameChosen,
    /// The anonymous monthly report to the cooperative was switched on or off.
    ReportChoice,
    /// Backups from the page: a run started, a USB disk erased for them, the recovery key shown
    /// (detail `what`: `run`, `prepare_disk`, `key_shown`).
    Backup,
    /// The costs were set on the page: the tariff, the supplier, the fixed costs.
    CostChange,
    /// Updates from the page: installed now, postponed, postponement taken back (detail
    /// `what`: `now`, `postpone`, `resume`).
    Update,
}

impl Action {
    pub const ALL: [Action; 20] = [
        Action::ViewStatement,
        Action::ViewAudit,
        Action::Export,
        Action::HouseholdChange,
        Action::LimitChange,
        Action::AdminApiCall,
        Action::Denied,
        Action::SignIn,
        Action::SignInFailed,
        Action::Maintenance,
        Action::InvitationCreated,
        Action::InvitationRevoked,
        Action::InvitationUsed,
        Action::SignupRefused,
        Action::AccountChange,
        Action::ServerNameChosen,
        Action::ReportChoice,
        Action::Backup,
        Action::CostChange,
        Action::Update,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ViewStatement => "view_statement",
            Action::ViewAudit => "view_audit",
            Action::Export => "export",
            Action::HouseholdChange => "household_change",
            Action::LimitChange => "limit_change",
            Action::AdminApiCall => "admin_api_call",
            Action::Denied => "denied",
            Action::SignIn => "sign_in",
            Action::SignInFailed => "sign_in_failed",
            Action::Maintenance => "maintenance",
            Action::InvitationCreated => "invitation_created",
            Action::InvitationRevoked => "invitation_revoked",
            Action::InvitationUsed => "invitation_used",
            Action::SignupRefused => "signup_refused",
            Action::AccountChange => "account_change",
            Action::ServerNameChosen => "server_name_chosen",
            Action::ReportChoice => "report_choice",
            Action::Backup => "backup",
            Action::CostChange => "cost_change",
            Action::Update => "update",
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(s: &str) -> Result<Action, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("unknown action {s:?}"))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who did it: a member (Matrix user id), the daemon itself, or someone at the command line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    User(String),
    System,
    Cli,
}

impl Actor {
    /// A member, by Matrix user id (`@local:domain`).
    pub fn user(id: &str) -> Result<Actor, AuditError> {
        check_user_id("actor", id)?;
        Ok(Actor::User(id.to_string()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Actor::User(id) => id,
            Actor::System => "system",
            Actor::Cli => "cli",
        }
    }

    fn parse(s: &str) -> Option<Actor> {
        match s {
            "system" => Some(Actor::System),
            "cli" => Some(Actor::Cli),
            id if is_user_id(id) => Some(Actor::User(id.to_string())),
            _ => None,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An entry to append. `time` is truncated to milliseconds when stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    pub time: DateTime<Utc>,
    pub actor: Actor,
    pub action: Action,
    pub subject: Option<String>,
    pub detail: Map<String, Value>,
}

impl NewEntry {
    /// `actor` did `action` now, about nobody in particular, with no detail.
    pub fn new(actor: Actor, action: Action) -> NewEntry {
        NewEntry {
            time: crate::clock::utc_now(),
            actor,
            action,
            subject: None,
            detail: Map::new(),
        }
    }

    pub fn at(mut self, time: DateTime<Utc>) -> NewEntry {
        self.time = time;
        self
    }

    /// The member whose data was touched.
    pub fn about(mut self, user_id: &str) -> NewEntry {
        self.subject = Some(user_id.to_string());
        self
    }

    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> NewEntry {
        self.detail.insert(key.to_string(), value.into());
        self
    }
}

/// A stored entry, as a viewer sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub time: DateTime<Utc>,
    pub actor: Actor,
    pub action: Action,
    pub subject: Option<String>,
    pub detail: Map<String, Value>,
    pub hash: Hash,
}

/// The last entry: its number and hash. An empty log's head is `(0, GENESIS)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

/// Append `entry` and return the new head.
///
/// `conn` may be a plain connection (the read of the head and the insert then run in one
/// `BEGIN IMMEDIATE` transaction, so concurrent appends serialise) or a transaction the caller
/// holds (`&Transaction` derefs to `&Connection`): the entry then commits or rolls back with the
/// action it records. Should a caller's deferred transaction race another writer, SQLite refuses
/// one of them (busy, or the `seq` primary key); the chain never forks.
pub fn append(conn: &Connection, entry: &NewEntry) -> Result<Head, AuditError> {
    let time = entry.time.to_rfc3339_opts(SecondsFormat::Millis, true);
    if let Actor::User(id) = &entry.actor {
        check_user_id("actor", id)?;
    }
    if let Some(s) = &entry.subject {
        check_user_id("subject", s)?;
    }
    let detail = check_detail(&entry.detail)?;
    let fields = |seq| chain::Fields {
        seq,
        time: &time,
        actor: entry.actor.as_str(),
        action: entry.action.as_str(),
        subject: entry.subject.as_deref(),
        detail: &detail,
    };
    if conn.is_autocommit() {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| sql(conn, e))?;
        let head = insert(&tx, fields)?;
        tx.commit().map_err(|e| sql(conn, e))?;
        Ok(head)
    } else {
        insert(conn, fields)
    }
}

fn insert<'a>(
    conn: &Connection,
    fields: impl Fn(u64) -> chain::Fields<'a>,
) -> Result<Head, AuditError> {
    let prev = head(conn)?;
    let f = fields(prev.seq + 1);
    let hash = chain::entry_hash(&prev.hash, &f);
    conn.prepare_cached(
        "INSERT INTO audit_log (seq, time, actor, action, subject, detail, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut st| {
        st.execute(params![
            f.seq as i64,
            f.time,
            f.actor,
            f.action,
            f.subject,
            f.detail,
            prev.hash.to_string(),
            hash.to_string()
        ])
    })
    .map_err(|e| sql(conn, e))?;
    Ok(Head { seq: f.seq, hash })
}

/// The current head: what the page shows people to note down.
pub fn head(conn: &Connection) -> Result<Head, AuditError> {
    let row = conn
        .query_row(
            "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(|e| sql(conn, e))?;
    match row {
        None => Ok(Head {
            seq: 0,
            hash: Hash::GENESIS,
        }),
        Some((seq, hash)) => Ok(Head {
            seq: u64::try_from(seq).map_err(|_| malformed(conn, seq, "seq", "negative"))?,
            hash: hash.parse().map_err(|m| malformed(conn, seq, "hash", m))?,
        }),
    }
}

/// The chain's hash after entry `seq` (`None`: no such entry). Whoever noted a head earlier
/// (a browser, a member's Matrix notice) checks with it that the log still holds that head:
/// a rewritten or truncated log no longer does.
pub fn hash_at(conn: &Connection, seq: u64) -> Result<Option<Hash>, AuditError> {
    let Ok(at) = i64::try_from(seq) else {
        return Ok(None);
    };
    let hash = conn
        .query_row("SELECT hash FROM audit_log WHERE seq = ?1", [at], |r| {
            r.get::<_, String>(0)
        })
        .optional()
        .map_err(|e| sql(conn, e))?;
    match hash {
        None if seq == 0 => Ok(Some(Hash::GENESIS)),
        None => Ok(None),
        Some(h) => Ok(Some(h.parse().map_err(|m| malformed(conn, at, "hash", m))?)),
    }
}

/// The chain's head after the newest entry about `subject` (`None`: no entry is about them).
/// The monthly seal notice gives each member this one: it seals every entry about them so far.
pub fn newest_about(conn: &Connection, subject: &str) -> Result<Option<Head>, AuditError> {
    let row = conn
        .query_row(
            "SELECT seq, hash FROM audit_log WHERE subject = ?1 ORDER BY seq DESC LIMIT 1",
            [subject],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()
        .map_err(|e| sql(conn, e))?;
    match row {
        None => Ok(None),
        Some((seq, hash)) => Ok(Some(Head {
            seq: u64::try_from(seq).map_err(|_| malformed(conn, seq, "seq", "negative"))?,
            hash: hash.parse().map_err(|m| malformed(conn, seq, "hash", m))?,
        })),
    }
}

/// Who is looking, and so which entries they may see (PRODUCT.md §2, §6).
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// A member sees the entries about them and those they caused.
    Member { user: &'a str },
    /// A household admin also sees the entries about the household's members.
    HouseholdAdmin {
        user: &'a str,
        members: &'a [String],
    },
    /// A server admin sees everything.
    ServerAdmin,
}

/// Newest first, at most `limit` (capped at [`MAX_PAGE`]), only entries numbered below
/// `before_seq` when given (the next page starts below the last seq of this one).
pub fn entries_visible_to(
    conn: &Connection,
    viewer: &Viewer<'_>,
    limit: u32,
    before_seq: Option<u64>,
) -> Result<Vec<Entry>, AuditError> {
    const COLS: &str = "SELECT seq, time, actor, action, subject, detail, hash FROM audit_log";
    let before = before_seq.map_or(i64::MAX, |s| i64::try_from(s).unwrap_or(i64::MAX));
    let limit = i64::from(limit.min(MAX_PAGE));
    let (q, user, members) = match viewer {
        Viewer::Member { user } => (
            format!("{COLS} WHERE (subject = ?3 OR actor = ?3) AND seq < ?1 ORDER BY seq DESC LIMIT ?2"),
            *user,
            String::new(),
        ),
        Viewer::HouseholdAdmin { user, members } => (
            format!(
                "{COLS} WHERE (subject = ?3 OR actor = ?3 OR subject IN (SELECT value FROM json_each(?4)))
                 AND seq < ?1 ORDER BY seq DESC LIMIT ?2"
            ),
            *user,
            serde_json::to_string(members).map_err(|e| AuditError::Refused(e.to_string()))?,
        ),
        Viewer::ServerAdmin => (
            format!("{COLS} WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2"),
            "",
            String::new(),
        ),
    };
    let mut st = conn.prepare_cached(&q).map_err(|e| sql(conn, e))?;
    let mut rows = match viewer {
        Viewer::Member { .. } => st.query(params![before, limit, user]),
        Viewer::HouseholdAdmin { .. } => st.query(params![before, limit, user, members]),
        Viewer::ServerAdmin => st.query(params![before, limit]),
    }
    .map_err(|e| sql(conn, e))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().map_err(|e| sql(conn, e))? {
        out.push(read_entry(r).map_err(|e| match e {
            ReadError::Sql(e) => sql(conn, e),
            ReadError::Bad(seq, field, message) => malformed(conn, seq, field, message),
        })?);
    }
    Ok(out)
}

enum ReadError {
    Sql(rusqlite::Error),
    Bad(i64, &'static str, String),
}

fn read_entry(r: &rusqlite::Row<'_>) -> Result<Entry, ReadError> {
    let seq: i64 = r.get(0).map_err(ReadError::Sql)?;
    let text = |i: usize| r.get::<_, String>(i).map_err(ReadError::Sql);
    let bad = |field, m: String| ReadError::Bad(seq, field, m);
    let time = DateTime::parse_from_rfc3339(&text(1)?)
        .map_err(|e| bad("time", e.to_string()))?
        .with_timezone(&Utc);
    let actor_s = text(2)?;
    let actor = Actor::parse(&actor_s).ok_or_else(|| bad("actor", format!("{actor_s:?}")))?;
    let action = text(3)?.parse().map_err(|m| bad("action", m))?;
    let subject: Option<String> = r.get(4).map_err(ReadError::Sql)?;
    let detail = match serde_json::from_str::<Value>(&text(5)?) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err(bad("detail", "not a JSON object".into())),
        Err(e) => return Err(bad("detail", e.to_string())),
    };
    let hash = text(6)?.parse().map_err(|m| bad("hash", m))?;
    Ok(Entry {
        seq: u64::try_from(seq).map_err(|_| bad("seq", "negative".into()))?,
        time,
        actor,
        action,
        subject,
        detail,
        hash,
    })
}

/// The `admin_api_call` entries since `since` (by their `time`), counted per logged endpoint
/// without its query (`GET /_synapse/admin/v2/users`), sorted by endpoint: where the
/// supervisor's admin token was used, for the page. An entry without an endpoint counts as
/// `?`.
pub fn admin_api_calls_since(
    conn: &Connection,
    since: DateTime<Utc>,
) -> Result<Vec<(String, u64)>, AuditError> {
    let mut st = conn
        .prepare_cached(
            "SELECT json_extract(detail, '$.endpoint'), COUNT(*) FROM audit_log
             WHERE action = ?1 AND time >= ?2 GROUP BY 1",
        )
        .map_err(|e| sql(conn, e))?;
    let since = since.to_rfc3339_opts(SecondsFormat::Millis, true);
    let rows = st
        .query_map(params![Action::AdminApiCall.as_str(), since], |r| {
            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
        })
        .map_err(|e| sql(conn, e))?;
    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for row in rows {
        let (endpoint, n) = row.map_err(|e| sql(conn, e))?;
        let endpoint = endpoint.unwrap_or_else(|| "?".into());
        let path = endpoint.split('?').next().unwrap_or("?").to_string();
        *counts.entry(path).or_default() += u64::try_from(n).unwrap_or(0);
    }
    Ok(counts.into_iter().collect())
}

/// A head noted earlier (from the page or a previous `verify`): `HEX`, or `SEQ:HEX` which also
/// says which entry it was, so a rewrite can be placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotedHead {
    pub seq: Option<u64>,
    pub hash: Hash,
}

impl FromStr for NotedHead {
    type Err = String;

    fn from_str(s: &str) -> Result<NotedHead, String> {
        let (seq, hex) = match s.split_once(':') {
            Some((n, h)) => (
                Some(
                    n.parse::<u64>()
                        .map_err(|_| format!("{n:?} is not an entry number"))?,
                ),
                h,
            ),
            None => (None, s),
        };
        Ok(NotedHead {
            seq,
            hash: hex.trim().to_ascii_lowercase().parse()?,
        })
    }
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Intact {
        count: u64,
        head: Head,
    },
    /// `seq` is the first entry that is wrong (or missing).
    Broken {
        seq: u64,
        reason: Break,
    },
}

/// Why an entry breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Break {
    /// The entry is not there; `next` is the entry found after the hole, if any.
    Missing { next: Option<u64> },
    /// An entry numbered below the next expected one (0, or negative): inserted.
    OutOfSequence { found: i64 },
    /// A column holds no text (or no integer) where the log has one.
    NotText { field: &'static str },
    /// Entry 1 does not commit to the genesis hash: the start of the log was replaced.
    BadGenesis,
    /// `prev_hash` is not the previous entry's hash: removed, inserted or reordered rows.
    PrevHash,
    /// `hash` is not the hash of the entry's contents: a field was changed.
    Hash,
    /// The action is not one the supervisor writes.
    UnknownAction(String),
    /// The audit table itself is gone.
    TableMissing,
    /// The noted head is in no entry: the log ends at `last`, so entries were removed from its
    /// end, or the whole log was rewritten.
    NotedHeadMissing { last: u64, noted: Hash },
    /// The entry noted as the head then now has another hash: the log was rewritten.
    NotedHeadDiffers { noted: Hash },
}

impl fmt::Display for Break {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Break::Missing { next: Some(n) } => {
                write!(f, "missing (the log continues at entry {n}): removed")
            }
            Break::Missing { next: None } => write!(f, "missing: removed"),
            Break::OutOfSequence { found } => {
                write!(f, "numbered {found}, out of sequence: inserted")
            }
            Break::NotText { field } => write!(f, "{field} has the wrong type: changed"),
            Break::BadGenesis => write!(
                f,
                "prev_hash is not the genesis hash: the start of the log was replaced"
            ),
            Break::PrevHash => write!(
                f,
                "prev_hash does not match the previous entry: rows removed, inserted or reordered"
            ),
            Break::Hash => write!(f, "hash does not match the entry's contents: changed"),
            Break::UnknownAction(a) => write!(f, "unknown action {a:?}: changed"),
            Break::TableMissing => write!(f, "the audit_log table is missing"),
            Break::NotedHeadMissing { last, noted } => write!(
                f,
                "missing: the log ends at entry {last} and the noted head {noted} is in none \
                 of its entries: entries removed from the end, or the log rewritten"
            ),
            Break::NotedHeadDiffers { noted } => write!(
                f,
                "hash differs from the noted head {noted}: the log was rewritten"
            ),
        }
    }
}

/// Check the whole chain in order, and that it still holds `noted` if given. Reads only.
pub fn verify(conn: &Connection, noted: Option<&NotedHead>) -> Result<Verdict, AuditError> {
    let broken = |seq, reason| Ok(Verdict::Broken { seq, reason });
    let mut st = conn
        .prepare(
            "SELECT seq, time, actor, action, subject, detail, prev_hash, hash
             FROM audit_log ORDER BY seq",
        )
        .map_err(|e| sql(conn, e))?;
    let mut rows = st.query([]).map_err(|e| sql(conn, e))?;
    let mut prev = Hash::GENESIS;
    let mut count: u64 = 0;
    // The noted head is trivially present when it is the empty log's.
    let mut noted_seen = noted.is_some_and(|n| n.hash == Hash::GENESIS && n.seq.unwrap_or(0) == 0);
    while let Some(r) = rows.next().map_err(|e| sql(conn, e))? {
        let expected = count + 1;
        let seq = match r.get_ref(0).map_err(|e| sql(conn, e))? {
            ValueRef::Integer(i) => i,
            _ => return broken(expected, Break::NotText { field: "seq" }),
        };
        if seq < expected as i64 {
            return broken(expected, Break::OutOfSequence { found: seq });
        }
        if seq > expected as i64 {
            return broken(
                expected,
                Break::Missing {
                    next: Some(seq as u64),
                },
            );
        }
        let Stored {
            time,
            actor,
            action,
            subject,
            detail,
            prev_hash,
            hash,
        } = match stored(r).map_err(|e| sql(conn, e))? {
            Ok(s) => s,
            Err(reason) => return broken(expected, reason),
        };
        if prev_hash != prev.to_string() {
            let reason = if expected == 1 {
                Break::BadGenesis
            } else {
                Break::PrevHash
            };
            return broken(expected, reason);
        }
        let computed = chain::entry_hash(
            &prev,
            &chain::Fields {
                seq: expected,
                time,
                actor,
                action,
                subject,
                detail,
            },
        );
        if hash != computed.to_string() {
            return broken(expected, Break::Hash);
        }
        if action.parse::<Action>().is_err() {
            return broken(expected, Break::UnknownAction(action.to_string()));
        }
        if let Some(n) = noted {
            match n.seq {
                Some(s) if s == expected && computed != n.hash => {
                    return broken(expected, Break::NotedHeadDiffers { noted: n.hash })
                }
                Some(s) if s == expected => noted_seen = true,
                Some(_) => {}
                None => noted_seen |= computed == n.hash,
            }
        }
        prev = computed;
        count = expected;
    }
    if let Some(n) = noted.filter(|_| !noted_seen) {
        return broken(
            count + 1,
            Break::NotedHeadMissing {
                last: count,
                noted: n.hash,
            },
        );
    }
    Ok(Verdict::Intact {
        count,
        head: Head {
            seq: count,
            hash: prev,
        },
    })
}

/// One row's text columns, borrowed from the row.
struct Stored<'r> {
    time: &'r str,
    actor: &'r str,
    action: &'r str,
    subject: Option<&'r str>,
    detail: &'r str,
    prev_hash: &'r str,
    hash: &'r str,
}

/// The row's columns 1..=7 as text (`subject` may be NULL), or which one is not.
fn stored<'r>(r: &'r rusqlite::Row<'_>) -> rusqlite::Result<Result<Stored<'r>, Break>> {
    let text =
        |i: usize, field: &'static str| -> rusqlite::Result<Result<Option<&'r str>, Break>> {
            Ok(match r.get_ref(i)? {
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .map(Some)
                    .map_err(|_| Break::NotText { field }),
                ValueRef::Null if field == "subject" => Ok(None),
                _ => Err(Break::NotText { field }),
            })
        };
    let required = |i, field| -> rusqlite::Result<Result<&'r str, Break>> {
        Ok(text(i, field)?.and_then(|t| t.ok_or(Break::NotText { field })))
    };
    macro_rules! get {
        ($e:expr) => {
            match $e? {
                Ok(v) => v,
                Err(b) => return Ok(Err(b)),
            }
        };
    }
    Ok(Ok(Stored {
        time: get!(required(1, "time")),
        actor: get!(required(2, "actor")),
        action: get!(required(3, "action")),
        subject: get!(text(4, "subject")),
        detail: get!(required(5, "detail")),
        prev_hash: get!(required(6, "prev_hash")),
        hash: get!(required(7, "hash")),
    }))
}

/// `hearth-supervisor audit verify`: open `path` read-only (never creating or changing it) and
/// verify its chain.
pub fn verify_file(path: &Path, noted: Option<&NotedHead>) -> Result<Verdict, AuditError> {
    let name = path.display().to_string();
    // Opening read-only would report a missing file as "unable to open"; say what it is.
    std::fs::metadata(path).map_err(|source| AuditError::Io {
        path: name.clone(),
        source,
    })?;
    let conn = open_read_only(path).map_err(|source| AuditError::Sql {
        path: name.clone(),
        source,
    })?;
    let has = |table: &str| -> Result<bool, AuditError> {
        conn.query_row(
            "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|source| AuditError::Sql {
            path: name.clone(),
            source,
        })
    };
    if !has("audit_log")? {
        if !has("power_minute")? {
            return Err(AuditError::NotHearth { path: name });
        }
        return Ok(Verdict::Broken {
            seq: 1,
            reason: Break::TableMissing,
        });
    }
    verify(&conn, noted)
}

/// Open without creating or changing anything. A WAL database opened read-only gets `-wal` and
/// `-shm` files created beside it when they are missing; when there is no `-wal` (nobody has the
/// database open, or it was closed cleanly) all of it is in the main file, which is then opened
/// `immutable`. A `-wal` file present means the daemon may be writing: open it normally,
/// read-only, so committed entries in the WAL count.
fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    match path.to_str() {
        Some(p) if !Path::new(&wal).exists() => {
            let mut uri = String::from("file:");
            for c in p.chars() {
                match c {
                    '%' => uri.push_str("%25"),
                    '?' => uri.push_str("%3f"),
                    '#' => uri.push_str("%23"),
                    c => uri.push(c),
                }
            }
            uri.push_str("?immutable=1");
            Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)
        }
        _ => Connection::open_with_flags(path, flags),
    }
}

fn db_path(conn: &Connection) -> String {
    match conn.path() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => ":memory:".to_string(),
    }
}

fn sql(conn: &Connection, source: rusqlite::Error) -> AuditError {
    AuditError::Sql {
        path: db_path(conn),
        source,
    }
}

fn malformed(conn: &Connection, seq: i64, field: &'static str, m: impl Into<String>) -> AuditError {
    AuditError::Malformed {
        path: db_path(conn),
        seq,
        field,
        message: m.into(),
    }
}

fn is_user_id(s: &str) -> bool {
    s.len() <= 255
        && s.strip_prefix('@')
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn check_user_id(field: &str, s: &str) -> Result<(), AuditError> {
    if is_user_id(s) {
        Ok(())
    } else {
        Err(AuditError::Refused(format!(
            "{field} {s:?} is not a Matrix user id (@local:domain)"
        )))
    }
}

/// Compact JSON of `detail`, refused when too large or when it holds an IP address.
fn check_detail(detail: &Map<String, Value>) -> Result<String, AuditError> {
    fn ip_key(k: &str) -> bool {
        let k = k.to_ascii_lowercase();
        k == "ip"
            || k.starts_with("ip_")
            || k.ends_with("_ip")
            || k == "addr"
            || k.ends_with("_addr")
            || k.contains("ip_address")
    }
    fn ip_value(s: &str) -> bool {
        let s = s.trim();
        s.parse::<std::net::IpAddr>().is_ok()
            || s.parse::<std::net::SocketAddr>().is_ok()
            || s.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .is_some_and(|t| t.parse::<std::net::Ipv6Addr>().is_ok())
    }
    fn walk(v: &Value) -> Option<String> {
        match v {
            Value::String(s) if ip_value(s) => Some(format!("value {s:?} is an IP address")),
            Value::Array(a) => a.iter().find_map(walk),
            Value::Object(m) => walk_map(m),
            _ => None,
        }
    }
    fn walk_map(m: &Map<String, Value>) -> Option<String> {
        m.iter().find_map(|(k, v)| {
            if ip_key(k) {
                Some(format!("key {k:?} names an address"))
            } else {
                walk(v)
            }
        })
    }
    let text = serde_json::to_string(detail).map_err(|e| AuditError::Refused(e.to_string()))?;
    if text.len() > MAX_DETAIL_BYTES {
        return Err(AuditError::Refused(format!(
            "detail is {} bytes; at most {MAX_DETAIL_BYTES}",
            text.len()
        )));
    }
    if let Some(why) = walk_map(detail) {
        return Err(AuditError::Refused(format!(
            "detail {why}; the audit log stores no IP addresses"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
