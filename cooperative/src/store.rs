//! The name table: which box (public key) owns which name, the enrolment tokens the cooperative
//! hands its members, and when each name last asked for an outside-in check. Either a SQLite
//! file (one edge, the embedded default) or PostgreSQL that several edges share
//! (`database = "postgresql://…"`): an edge holds nothing a second edge could not have
//! (ARCHITECTURE.md, "The relay"). The same database keeps the anonymous energy reports
//! (`reports`, without their tokens), the tokens spent (`spent_tokens`, only hashes of their
//! messages) and how many blind signatures each box was given per key (`token_grants`). Both backends give the same answers; the decisions are made
//! here, once, and each backend only reads and writes under its own locks.

mod pg;
mod sqlite;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

/// Labels a box may not claim: the cooperative's own services and names people would trust.
pub const RESERVED: &[&str] = &[
    "relay",
    "edge",
    "api",
    "www",
    "admin",
    "mail",
    "smtp",
    "imap",
    "ns",
    "ns1",
    "ns2",
    "matrix",
    "status",
    "report",
    "reports",
    "acme",
    "hearth",
    "cooperative",
    "coop",
    "root",
    "support",
    "help",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnrolError {
    #[error("unknown enrolment token")]
    UnknownToken,
    #[error("this enrolment token was already used for another name")]
    TokenUsed,
    #[error("the name {0} belongs to another box")]
    Taken(String),
    #[error("the name {0} is reserved")]
    Reserved(String),
    #[error("not a valid name: {0} (lower-case letters, digits and '-', 3 to 63 characters, no '-' at either end)")]
    BadLabel(String),
    #[error("the public key is not 32 bytes")]
    BadKey,
    #[error("database: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for EnrolError {
    fn from(e: rusqlite::Error) -> Self {
        EnrolError::Db(e.to_string())
    }
}

/// One enrolled box, as `hearth-coop boxes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BoxRow {
    pub name: String,
    pub public_key: String,
    pub enrolled_at: i64,
}

/// Where the table lives, from the config's `database`: a PostgreSQL URL
/// (`postgres://` or `postgresql://`), else a SQLite file's path.
#[derive(Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(Box<postgres::Config>),
}

impl Database {
    /// Reads the `database` setting; a PostgreSQL URL is checked here (the reason, one line).
    pub fn from_setting(setting: &Path) -> Result<Database, String> {
        match setting.to_str() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                pg::config(url).map(|c| Database::Postgres(Box::new(c)))
            }
            _ => Ok(Database::Sqlite(setting.to_owned())),
        }
    }
}

/// The setting as it may be shown: a PostgreSQL URL without its password.
pub fn redacted(setting: &Path) -> String {
    let text = setting.display().to_string();
    let Some((scheme, rest)) = text.split_once("://") else {
        return text;
    };
    if !(scheme == "postgres" || scheme == "postgresql") {
        return text;
    }
    let (authority, tail) = rest
        .find(['/', '?'])
        .map_or((rest, ""), |i| rest.split_at(i));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some(("password", _)) => "password=***".to_owned(),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The table could not be opened: the `database` setting (without a password) and why, on one
/// line. `hearth-coop` puts the config file's name in front.
#[derive(Debug, thiserror::Error)]
#[error("database = {setting:?}: {reason}")]
pub struct OpenError {
    pub setting: String,
    pub reason: String,
}

#[derive(Clone)]
pub struct Store {
    backend: Backend,
    domain: String,
}

#[derive(Clone)]
enum Backend {
    Sqlite(sqlite::Sqlite),
    Postgres(pg::Pg),
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.trim().to_ascii_uppercase().as_bytes()).to_vec()
}

/// Errors of a database, on one line (PostgreSQL's carry DETAIL and HINT lines).
fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// A label a box may ask for: one DNS label, 3–63 of `a-z0-9-`, no hyphen at either end.
pub fn valid_label(label: &str) -> bool {
    (3..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// What an enrolment does, from the token's state (`None`: unknown; `Some(None)`: unused;
/// `Some(Some(name))`: used for that name) and the name's owner, both read under the backend's
/// locks. The one place both backends take this decision.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Refuse(EnrolError),
    /// The same enrolment again (its answer got lost): nothing changes.
    AlreadyDone,
    /// Spend the token on the name (the box row is there or goes in now).
    Claim,
}

fn verdict(used: Option<Option<String>>, owner: Option<&[u8]>, name: &str, key: &[u8]) -> Verdict {
    match (used, owner) {
        (None, _) => Verdict::Refuse(EnrolError::UnknownToken),
        (Some(_), Some(owner)) if owner != key => Verdict::Refuse(EnrolError::Taken(name.into())),
        (Some(Some(used_for)), Some(_)) if used_for == name => Verdict::AlreadyDone,
        (Some(Some(_)), _) => Verdict::Refuse(EnrolError::TokenUsed),
        (Some(None), _) => Verdict::Claim,
    }
}

impl Store {
    /// Opens the table `database` names (a SQLite path or a PostgreSQL URL) and brings its
    /// schema up to date. Safe to call from anywhere, async code included: PostgreSQL is only
    /// ever spoken to on the store's own threads.
    pub fn open(database: &Path, domain: &str) -> Result<Store, OpenError> {
        let fail = |reason: String| OpenError {
            setting: redacted(database),
            reason: one_line(reason),
        };
        let backend = match Database::from_setting(database).map_err(fail)? {
            Database::Sqlite(path) => {
                Backend::Sqlite(sqlite::Sqlite::open(&path).map_err(|e| fail(e.to_string()))?)
            }
            Database::Postgres(config) => Backend::Postgres(pg::Pg::open(*config).map_err(fail)?),
        };
        Ok(Store {
            backend,
            domain: domain.to_owned(),
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// A new single-use enrolment token (shown once; only its hash is kept).
    pub fn issue_token(&self, note: &str) -> anyhow::Result<String> {
        let mut raw = [0u8; 10];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
        let hex = hex::encode_upper(raw);
        let token = format!(
            "{}-{}-{}-{}-{}",
            &hex[0..4],
            &hex[4..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20]
        );
        match &self.backend {
            Backend::Sqlite(s) => s.insert_token(hash(&token), note, now())?,
            Backend::Postgres(p) => p.insert_token(hash(&token), note, now())?,
        }
        Ok(token)
    }

    /// Claims `label.domain` for `public_key` with `token`, atomically (across edges too: two
    /// at once for one name, exactly one wins and the other gets `Taken`). Repeating a
    /// successful enrolment (the answer got lost) succeeds again and changes nothing.
    pub fn enrol(&self, token: &str, label: &str, public_key: &[u8]) -> Result<String, EnrolError> {
        if !valid_label(label) {
            return Err(EnrolError::BadLabel(label.to_owned()));
        }
        let name = format!("{label}.{}", self.domain);
        if RESERVED.contains(&label) {
            return Err(EnrolError::Reserved(name));
        }
        if public_key.len() != hearth_tunnel::key::PUBLIC_LEN {
            return Err(EnrolError::BadKey);
        }
        match &self.backend {
            Backend::Sqlite(s) => s.enrol(hash(token), name, public_key.to_vec(), now()),
            Backend::Postgres(p) => p.enrol(hash(token), name, public_key.to_vec(), now()),
        }
    }

    /// The public key that owns `name`, if any box does.
    pub fn key_for(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.backend {
            Backend::Sqlite(s) => s.key_for(name),
            Backend::Postgres(p) => p.key_for(name),
        }
    }

    /// Every enrolled box, by name.
    pub fn boxes(&self) -> anyhow::Result<Vec<BoxRow>> {
        let rows = match &self.backend {
            Backend::Sqlite(s) => s.boxes()?,
            Backend::Postgres(p) => p.boxes()?,
        };
        Ok(rows
            .into_iter()
            .map(|(name, key, enrolled_at)| BoxRow {
                name,
                public_key: hearth_tunnel::proto::encode(key),
                enrolled_at,
            })
            .collect())
    }

    /// The outside-in check's rate limit, shared by every edge on this table: takes `name`'s
    /// check slot (true) unless its last check is less than `min_interval` ago (false).
    /// Atomic: of two edges asking at once, one gets it. Times are the database's clock.
    pub fn take_check_slot(&self, name: &str, min_interval: Duration) -> anyhow::Result<bool> {
        let interval = i64::try_from(min_interval.as_secs()).unwrap_or(i64::MAX);
        match &self.backend {
            Backend::Sqlite(s) => s.take_check_slot(name, interval),
            Backend::Postgres(p) => p.take_check_slot(name, interval),
        }
    }
}

/// One stored energy report: what the collector keeps of it (never its token).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReportRecord {
    pub id: String,
    pub month: String,
    pub hardware: String,
    pub members: String,
    pub energy_kwh: f64,
    pub epsilon: f64,
    pub uptime_share: f64,
    pub synapse: String,
    pub supplier: Option<String>,
}

impl ReportRecord {
    /// SHA-256 over every field, to tell a replay (the same report again) from another report
    /// under the same id.
    pub fn digest(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        for part in [
            self.id.as_str(),
            &self.month,
            &self.hardware,
            &self.members,
            &self.energy_kwh.to_bits().to_string(),
            &self.epsilon.to_bits().to_string(),
            &self.uptime_share.to_bits().to_string(),
            &self.synapse,
            self.supplier.as_deref().unwrap_or("\u{0}none"),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().to_vec()
    }
}

/// What storing a report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingest {
    /// New: stored, its token spent.
    Stored,
    /// This very report was stored before (its answer got lost): nothing changes.
    Replay,
    /// Another report has this id: nothing stored.
    IdTaken,
    /// The token was spent on another report: nothing stored.
    TokenSpent,
}

impl Store {
    /// Stores a verified report and spends its token, in one transaction: either both or
    /// neither. `day` (`YYYY-MM-DD`) is all that is kept of when it came.
    pub fn ingest_report(
        &self,
        report: &ReportRecord,
        token_hash: &[u8],
        day: &str,
    ) -> anyhow::Result<Ingest> {
        match &self.backend {
            Backend::Sqlite(s) => s.ingest(report, token_hash, day),
            Backend::Postgres(p) => p.ingest(report, token_hash, day),
        }
    }

    /// Every stored report, by month.
    pub fn reports(&self) -> anyhow::Result<Vec<ReportRecord>> {
        match &self.backend {
            Backend::Sqlite(s) => s.reports(),
            Backend::Postgres(p) => p.reports(),
        }
    }

    /// How many tokens were spent.
    pub fn spent_tokens(&self) -> anyhow::Result<i64> {
        match &self.backend {
            Backend::Sqlite(s) => s.spent_tokens(),
            Backend::Postgres(p) => p.spent_tokens(),
        }
    }

    /// Counts `n` more blind signatures for `name` under the key `key_id`, unless that makes
    /// more than `max` (false: nothing counted). Atomic across edges.
    pub fn grant_tokens(&self, name: &str, key_id: &str, n: u32, max: u32) -> anyhow::Result<bool> {
        let (n, max) = (i64::from(n), i64::from(max));
        match &self.backend {
            Backend::Sqlite(s) => s.grant_tokens(name, key_id, n, max),
            Backend::Postgres(p) => p.grant_tokens(name, key_id, n, max),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    // The backends' behaviour (both of them, against a real PostgreSQL) is tested in
    // cooperative/tests/store.rs.

    #[test]
    fn the_verdict_on_every_state_of_token_and_name() {
        let (n, k, other) = ("nord.coop.test", &[1u8; 32][..], &[2u8; 32][..]);
        use Verdict::*;
        assert_eq!(verdict(None, None, n, k), Refuse(EnrolError::UnknownToken));
        assert_eq!(
            verdict(None, Some(other), n, k),
            Refuse(EnrolError::UnknownToken)
        );
        assert_eq!(verdict(Some(None), None, n, k), Claim);
        assert_eq!(verdict(Some(None), Some(k), n, k), Claim);
        assert_eq!(
            verdict(Some(None), Some(other), n, k),
            Refuse(EnrolError::Taken(n.into()))
        );
        assert_eq!(verdict(Some(Some(n.into())), Some(k), n, k), AlreadyDone);
        assert_eq!(
            verdict(Some(Some(n.into())), Some(other), n, k),
            Refuse(EnrolError::Taken(n.into()))
        );
        assert_eq!(
            verdict(Some(Some("sued.coop.test".into())), None, n, k),
            Refuse(EnrolError::TokenUsed)
        );
        assert_eq!(
            verdict(Some(Some("sued.coop.test".into())), Some(k), n, k),
            Refuse(EnrolError::TokenUsed)
        );
    }

    #[test]
    fn the_setting_picks_the_backend_and_is_shown_without_its_password() {
        assert!(matches!(
            Database::from_setting(Path::new("var/coop.sqlite3")),
            Ok(Database::Sqlite(_))
        ));
        assert!(matches!(
            Database::from_setting(Path::new("postgresql://coop:pw@db.internal:5432/coop")),
            Ok(Database::Postgres(_))
        ));
        assert!(matches!(
            Database::from_setting(Path::new("postgres://coop@%2Frun%2Fpostgresql/coop")),
            Ok(Database::Postgres(_))
        ));
        let e = Database::from_setting(Path::new("postgresql://coop@db:notaport/coop"))
            .err()
            .unwrap();
        assert!(e.contains("port"), "{e}");
        let e = Database::from_setting(Path::new("postgresql://db/coop?sslmode=require"))
            .err()
            .unwrap();
        assert!(e.contains("TLS"), "{e}");
        assert_eq!(
            redacted(Path::new(
                "postgresql://coop:secret@db:5432/coop?password=x&a=b"
            )),
            "postgresql://coop:***@db:5432/coop?password=***&a=b"
        );
        assert_eq!(
            redacted(Path::new("postgres://coop@db/coop")),
            "postgres://coop@db/coop"
        );
        assert_eq!(
            redacted(Path::new("/var/lib/coop.sqlite3")),
            "/var/lib/coop.sqlite3"
        );
    }
}
