//! The name table: which box (public key) owns which name, and the enrolment tokens the
//! cooperative hands its members. SQLite here; every edge reads the same table, so an edge
//! holds nothing a second edge could not have (ARCHITECTURE.md, "The relay").

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rusqlite_migration::{Migrations, M};
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

#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    domain: String,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![M::up(
        "CREATE TABLE tokens (
            hash BLOB PRIMARY KEY,          -- SHA-256 of the token: the table never holds one
            note TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            used_for TEXT,                  -- the name it enrolled
            used_at INTEGER
        ) STRICT;
        CREATE TABLE boxes (
            name TEXT PRIMARY KEY,          -- full name, label.domain
            public_key BLOB NOT NULL,       -- Ed25519, 32 bytes
            enrolled_at INTEGER NOT NULL
        ) STRICT;",
    )])
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

/// A label a box may ask for: one DNS label, 3–63 of `a-z0-9-`, no hyphen at either end.
pub fn valid_label(label: &str) -> bool {
    (3..=63).contains(&label.len())
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl Store {
    pub fn open(path: &Path, domain: &str) -> anyhow::Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        migrations().to_latest(&mut conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            domain: domain.to_owned(),
        })
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
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
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, note, created_at) VALUES (?1, ?2, ?3)",
                params![hash(&token), note, now()],
            )
        })?;
        Ok(token)
    }

    /// Claims `label.domain` for `public_key` with `token`, atomically. Repeating a successful
    /// enrolment (the answer got lost) succeeds again and changes nothing.
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
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let used: Option<Option<String>> = tx
                .query_row(
                    "SELECT used_for FROM tokens WHERE hash = ?1",
                    [hash(token)],
                    |r| r.get(0),
                )
                .optional()?;
            let owner: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT public_key FROM boxes WHERE name = ?1",
                    [&name],
                    |r| r.get(0),
                )
                .optional()?;
            match (used, owner) {
                (None, _) => return Err(EnrolError::UnknownToken),
                (Some(_), Some(owner)) if owner != public_key => {
                    return Err(EnrolError::Taken(name))
                }
                (Some(Some(used_for)), Some(_)) if used_for == name => return Ok(name),
                (Some(Some(_)), _) => return Err(EnrolError::TokenUsed),
                (Some(None), _) => {}
            }
            tx.execute(
                "INSERT INTO boxes (name, public_key, enrolled_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, public_key, now()],
            )?;
            tx.execute(
                "UPDATE tokens SET used_for = ?1, used_at = ?2 WHERE hash = ?3",
                params![name, now(), hash(token)],
            )?;
            tx.commit()?;
            Ok(name)
        })
    }

    /// The public key that owns `name`, if any box does.
    pub fn key_for(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.with(|c| {
            c.query_row(
                "SELECT public_key FROM boxes WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
        })?)
    }

    pub fn boxes(&self) -> anyhow::Result<Vec<BoxRow>> {
        Ok(self.with(|c| {
            let mut st =
                c.prepare("SELECT name, public_key, enrolled_at FROM boxes ORDER BY name")?;
            let rows = st.query_map([], |r| {
                Ok(BoxRow {
                    name: r.get(0)?,
                    public_key: hearth_tunnel::proto::encode(r.get::<_, Vec<u8>>(1)?),
                    enrolled_at: r.get(2)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })?)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("coop.sqlite3"), "coop.test").unwrap();
        (dir, s)
    }

    #[test]
    fn a_token_enrols_one_name_once_and_a_retry_is_harmless() {
        let (_d, s) = store();
        let t = s.issue_token("Familie Nord").unwrap();
        assert_eq!(s.enrol(&t, "nord", &[1; 32]).unwrap(), "nord.coop.test");
        assert_eq!(
            s.enrol(&t, "nord", &[1; 32]).unwrap(),
            "nord.coop.test",
            "the same enrolment again"
        );
        assert_eq!(s.enrol(&t, "sued", &[1; 32]), Err(EnrolError::TokenUsed));
        assert_eq!(s.key_for("nord.coop.test").unwrap(), Some(vec![1; 32]));
        assert_eq!(s.key_for("sued.coop.test").unwrap(), None);
        // Lower case and spaces around a typed token do not matter.
        let t2 = s.issue_token("x").unwrap();
        assert!(s
            .enrol(&format!(" {} ", t2.to_lowercase()), "west", &[3; 32])
            .is_ok());
    }

    #[test]
    fn one_box_cannot_take_another_boxes_name() {
        let (_d, s) = store();
        let (a, b) = (s.issue_token("a").unwrap(), s.issue_token("b").unwrap());
        s.enrol(&a, "nord", &[1; 32]).unwrap();
        assert_eq!(
            s.enrol(&b, "nord", &[2; 32]),
            Err(EnrolError::Taken("nord.coop.test".into()))
        );
        assert_eq!(
            s.key_for("nord.coop.test").unwrap(),
            Some(vec![1; 32]),
            "the owner keeps it"
        );
        // The refused attempt did not spend b's token.
        assert_eq!(s.enrol(&b, "sued", &[2; 32]).unwrap(), "sued.coop.test");
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        let (_d, s) = store();
        let t = s.issue_token("a").unwrap();
        assert_eq!(
            s.enrol("0000-0000-0000-0000-0000", "nord", &[1; 32]),
            Err(EnrolError::UnknownToken)
        );
        assert_eq!(
            s.enrol(&t, "relay", &[1; 32]),
            Err(EnrolError::Reserved("relay.coop.test".into()))
        );
        for bad in [
            "ab",
            "Nord",
            "-nord",
            "nord-",
            "no.rd",
            "nörd",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(s.enrol(&t, bad, &[1; 32]), Err(EnrolError::BadLabel(_))),
                "{bad}"
            );
        }
        assert_eq!(s.enrol(&t, "nord", &[1; 31]), Err(EnrolError::BadKey));
        assert!(s.boxes().unwrap().is_empty());
        assert_eq!(
            s.enrol(&t, "nord", &[1; 32]).unwrap(),
            "nord.coop.test",
            "the token is still good"
        );
    }

    #[test]
    fn the_table_survives_a_restart_and_tokens_are_stored_only_as_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("coop.sqlite3");
        let token = {
            let s = Store::open(&path, "coop.test").unwrap();
            let t = s.issue_token("a").unwrap();
            s.enrol(&t, "nord", &[1; 32]).unwrap();
            t
        };
        let s = Store::open(&path, "coop.test").unwrap();
        assert_eq!(s.boxes().unwrap().len(), 1);
        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("sqlite3-wal")).unwrap_or_default();
        for bytes in [raw, wal] {
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "the token is stored in the clear"
            );
        }
    }
}
