//! The name table in a SQLite file: one edge (or several processes on one host). Writes take
//! SQLite's write lock first (`BEGIN IMMEDIATE`), so an enrolment reads and writes as one.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use super::{verdict, EnrolError, Verdict};

#[derive(Clone)]
pub(super) struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(
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
        ),
        // The outside-in check's rate limit, in the table rather than one edge's memory.
        M::up(
            "CREATE TABLE checks (
                name TEXT PRIMARY KEY,
                last_at INTEGER NOT NULL        -- unix seconds of the last check taken
            ) STRICT;",
        ),
    ])
}

impl Sqlite {
    pub(super) fn open(path: &Path) -> anyhow::Result<Sqlite> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        migrations().to_latest(&mut conn)?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    pub(super) fn insert_token(&self, hash: Vec<u8>, note: &str, now: i64) -> anyhow::Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO tokens (hash, note, created_at) VALUES (?1, ?2, ?3)",
                params![hash, note, now],
            )
        })?;
        Ok(())
    }

    pub(super) fn enrol(
        &self,
        hash: Vec<u8>,
        name: String,
        key: Vec<u8>,
        now: i64,
    ) -> Result<String, EnrolError> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let used: Option<Option<String>> = tx
                .query_row(
                    "SELECT used_for FROM tokens WHERE hash = ?1",
                    [&hash],
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
            match verdict(used, owner.as_deref(), &name, &key) {
                Verdict::Refuse(e) => return Err(e),
                Verdict::AlreadyDone => return Ok(name),
                Verdict::Claim => {}
            }
            tx.execute(
                "INSERT INTO boxes (name, public_key, enrolled_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
                params![name, key, now],
            )?;
            tx.execute(
                "UPDATE tokens SET used_for = ?1, used_at = ?2 WHERE hash = ?3",
                params![name, now, hash],
            )?;
            tx.commit()?;
            Ok(name)
        })
    }

    pub(super) fn key_for(&self, name: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.with(|c| {
            c.query_row(
                "SELECT public_key FROM boxes WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()
        })?)
    }

    pub(super) fn boxes(&self) -> anyhow::Result<Vec<(String, Vec<u8>, i64)>> {
        Ok(self.with(|c| {
            let mut st =
                c.prepare("SELECT name, public_key, enrolled_at FROM boxes ORDER BY name")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect::<Result<Vec<_>, _>>()
        })?)
    }

    /// One statement: a new row, or the old one moved to now only when it is old enough; the
    /// number of rows it changed says whether the slot was taken.
    pub(super) fn take_check_slot(&self, name: &str, interval_s: i64) -> anyhow::Result<bool> {
        let changed = self.with(|c| {
            c.execute(
                "INSERT INTO checks (name, last_at) VALUES (?1, CAST(strftime('%s', 'now') AS INTEGER))
                 ON CONFLICT (name) DO UPDATE SET last_at = excluded.last_at
                 WHERE excluded.last_at - checks.last_at >= ?2",
                params![name, interval_s],
            )
        })?;
        Ok(changed == 1)
    }
}
