//! The name table in a SQLite file: one edge (or several processes on one host). Writes take
//! SQLite's write lock first (`BEGIN IMMEDIATE`), so an enrolment reads and writes as one.
//!
//! Durability. The database is in WAL mode. The name table, enrolment tokens, check slots and
//! token grants are written on a connection with SQLite's default `synchronous=FULL`: each
//! commit is fsynced before it is answered, so it survives a power cut. The energy reports and
//! their spent tokens are written on a second connection with `synchronous=NORMAL`: a commit is
//! in the WAL file (written, not fsynced) before the collector answers 200, so it survives a
//! crash of the process (the kernel has the bytes), and the database stays consistent across a
//! power cut, but a power cut or kernel crash can roll back the reports of the last moments
//! (those since the WAL was last synced: at a checkpoint, or by the kernel's writeback, about
//! 30 s) — each report with its spent token, never one without the other. A box whose report is
//! lost so does not resend it (it had its 200); the month's aggregate has one sample fewer,
//! which it would have had if that family had not opted in. In return a report costs no fsync:
//! about twice the ingestion rate on one core (`make bench`, `collector_reports_per_s`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use rusqlite_migration::{Migrations, M};

use super::{verdict, EnrolError, Ingest, ReportRecord, Verdict};

#[derive(Clone)]
pub(super) struct Sqlite {
    /// Everything but the reports: `synchronous=FULL`.
    conn: Arc<Mutex<Connection>>,
    /// `reports` and `spent_tokens`: `synchronous=NORMAL` (see the module's doc).
    reports: Arc<Mutex<Connection>>,
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
        // The anonymous energy reports (collector/). WITHOUT ROWID: rows are kept in the order
        // of their random keys, so nothing records which report came in with which token.
        M::up(
            "CREATE TABLE reports (
                id TEXT PRIMARY KEY,            -- the box's random idempotency key
                month TEXT NOT NULL,            -- YYYY-MM
                hardware TEXT NOT NULL,
                members TEXT NOT NULL,          -- the bucket
                energy_kwh REAL NOT NULL,       -- clamped, noised, rounded
                epsilon REAL NOT NULL,
                uptime_share REAL NOT NULL,
                synapse TEXT NOT NULL,
                supplier TEXT,
                received_day TEXT NOT NULL,     -- YYYY-MM-DD: never the second it came in
                digest BLOB NOT NULL            -- SHA-256 of the fields above but the day: a replay is recognised
            ) STRICT, WITHOUT ROWID;
            CREATE INDEX reports_month ON reports (month);
            CREATE TABLE spent_tokens (
                hash BLOB PRIMARY KEY           -- SHA-256 of a token's message: each is accepted once
            ) STRICT, WITHOUT ROWID;
            CREATE TABLE token_grants (
                name TEXT NOT NULL,             -- the enrolled box that asked
                key_id TEXT NOT NULL,           -- the key period
                count INTEGER NOT NULL,         -- blind signatures given
                PRIMARY KEY (name, key_id)
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
        conn.pragma_update(None, "synchronous", "FULL")?;
        migrations().to_latest(&mut conn)?;
        let reports = Connection::open(path)?;
        reports.pragma_update(None, "busy_timeout", 5000)?;
        reports.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Sqlite {
            conn: Arc::new(Mutex::new(conn)),
            reports: Arc::new(Mutex::new(reports)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn with_reports<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let mut guard = self.reports.lock().unwrap_or_else(|p| p.into_inner());
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

    pub(super) fn ingest(
        &self,
        r: &ReportRecord,
        token_hash: &[u8],
        day: &str,
    ) -> anyhow::Result<Ingest> {
        let digest = r.digest();
        // Prepared once per connection (`prepare_cached`): parsing the SQL again for every
        // report cost more than executing it.
        Ok(self.with_reports(|c| -> rusqlite::Result<Ingest> {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let before: Option<Vec<u8>> = tx
                .prepare_cached("SELECT digest FROM reports WHERE id = ?1")?
                .query_row([&r.id], |row| row.get(0))
                .optional()?;
            if let Some(d) = before {
                return Ok(if d == digest {
                    Ingest::Replay
                } else {
                    Ingest::IdTaken
                });
            }
            let fresh = tx
                .prepare_cached(
                    "INSERT INTO spent_tokens (hash) VALUES (?1) ON CONFLICT (hash) DO NOTHING",
                )?
                .execute([token_hash])?;
            if fresh == 0 {
                return Ok(Ingest::TokenSpent);
            }
            tx.prepare_cached(
                "INSERT INTO reports (id, month, hardware, members, energy_kwh, epsilon,
                   uptime_share, synapse, supplier, received_day, digest)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                r.id,
                r.month,
                r.hardware,
                r.members,
                r.energy_kwh,
                r.epsilon,
                r.uptime_share,
                r.synapse,
                r.supplier,
                day,
                digest
            ])?;
            tx.commit()?;
            Ok(Ingest::Stored)
        })?)
    }

    pub(super) fn reports(&self) -> anyhow::Result<Vec<ReportRecord>> {
        Ok(self.with(|c| {
            let mut st = c.prepare(
                "SELECT id, month, hardware, members, energy_kwh, epsilon, uptime_share, synapse,
                        supplier FROM reports ORDER BY month, id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(ReportRecord {
                    id: r.get(0)?,
                    month: r.get(1)?,
                    hardware: r.get(2)?,
                    members: r.get(3)?,
                    energy_kwh: r.get(4)?,
                    epsilon: r.get(5)?,
                    uptime_share: r.get(6)?,
                    synapse: r.get(7)?,
                    supplier: r.get(8)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })?)
    }

    pub(super) fn spent_tokens(&self) -> anyhow::Result<i64> {
        Ok(self.with(|c| c.query_row("SELECT count(*) FROM spent_tokens", [], |r| r.get(0)))?)
    }

    /// One statement: `n` more signatures for `name` under `key_id` unless that makes more
    /// than `max`.
    pub(super) fn grant_tokens(
        &self,
        name: &str,
        key_id: &str,
        n: i64,
        max: i64,
    ) -> anyhow::Result<bool> {
        if n > max {
            return Ok(false);
        }
        let changed = self.with(|c| {
            c.execute(
                "INSERT INTO token_grants (name, key_id, count) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name, key_id) DO UPDATE SET count = token_grants.count + excluded.count
                 WHERE token_grants.count + excluded.count <= ?4",
                params![name, key_id, n, max],
            )
        })?;
        Ok(changed == 1)
    }
}
