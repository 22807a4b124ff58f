//! The supervisor's SQLite database. Only `storage/`, `audit/`, `accounting/directory/`,
//! `invite/` and `report/outbox.rs` hold SQL (checked by `tests/architecture.rs`).
//!
//! Written to spare the SD card: the meter keeps per-minute aggregates in memory and the daemon
//! writes them here in one transaction per batch (every `flush_interval_s`, default 5 minutes,
//! and at shutdown). WAL with `synchronous=NORMAL`: a committed batch survives a process crash
//! (`kill -9`) whole; a power cut may lose the last committed batches but never corrupts the file.
//! So a crash loses at most the unflushed batch: `flush_interval_s` plus the minute in progress.
//!
//! Tables: `power_minute` (kept `minute_retention_days`, default 31), `power_hour` (kept forever,
//! rolled up incrementally from the same batches), `sensor_gap` (every gap, with its estimate).
//! Every table's definition, also of the tables other modules write (`audit_log`, the
//! directory's, `invitation`, the reports'), is a migration in `schema.rs`: storage imports
//! nothing from the modules that write them.

use crate::accounting::accesslog::MinuteWeight;
use crate::meter::buckets::{Agg, Minutes};
use crate::meter::integrator::Gap;
use crate::meter::live::EnergySums;
use rusqlite::{params, Connection, OptionalExtension};
use rusqlite_migration::Migrations;
use std::path::{Path, PathBuf};

mod schema;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {source}")]
    Sql {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path}: migrating the schema: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: rusqlite_migration::Error,
    },
    #[error("database {path}: cannot create its directory: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The accounting part of a batch: request weights per minute, Matrix CPU shares per minute,
/// and the journal cursor of the last line those weights include (committed together, so a
/// restart resumes right after the last line stored: nothing lost, nothing counted twice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AcctBatch {
    pub weights: Vec<MinuteWeight>,
    /// `(minute_s, s_i)`.
    pub shares: Vec<(i64, f64)>,
    /// `(unit, cursor)`.
    pub cursor: Option<(String, String)>,
}

impl AcctBatch {
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty() && self.shares.is_empty() && self.cursor.is_none()
    }
}

/// A statement as stored at its month's close.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStatement {
    pub period: String,
    pub json: String,
    pub inputs_sha256: String,
    pub closed_at_s: i64,
}

/// The stored inputs of `[start, end)`: what `accounting::inputs` turns into a statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredInputs {
    /// `(minute_s, energy_wh, estimated_wh)` from `power_minute`.
    pub energy: Vec<(i64, f64, f64)>,
    pub weights: Vec<MinuteWeight>,
    pub shares: Vec<(i64, f64)>,
}

/// Days of 1-minute history kept before a month that is not closed yet: `base_watts = "auto"`
/// takes the 10th percentile over the 7 days before the period.
pub const HISTORY_DAYS: i64 = 7;

/// `"YYYY-MM"` of the UTC month containing `minute_s`, and that month's start and end.
pub fn month_of(minute_s: i64) -> Option<(String, i64, i64)> {
    use chrono::{DateTime, Datelike};
    let d = DateTime::from_timestamp(minute_s, 0)?;
    let p = crate::accounting::model::Period::month(d.year(), d.month()).ok()?;
    Some((p.label().to_string(), p.start_s(), p.end_s()))
}

pub struct Storage {
    conn: Connection,
    path: PathBuf,
}

impl Storage {
    pub fn open(path: &Path) -> Result<Storage, StorageError> {
        Ok(Storage {
            conn: open_connection(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the modules that own their tables (audit log, member directory).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    fn err(&self, source: rusqlite::Error) -> StorageError {
        StorageError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    /// Write one batch in one transaction: minutes, their hourly roll-ups, the closed gaps.
    pub fn write_batch(&mut self, minutes: &Minutes, gaps: &[Gap]) -> Result<(), StorageError> {
        self.write_batch_with(minutes, gaps, &AcctBatch::default())
            .map(|_| ())
    }

    /// As [`write_batch`](Self::write_batch), with the accounting part of the batch in the same
    /// transaction. Weights and shares of minutes whose month is already closed are left out
    /// (a frozen statement's inputs never change); their number is returned.
    pub fn write_batch_with(
        &mut self,
        minutes: &Minutes,
        gaps: &[Gap],
        acct: &AcctBatch,
    ) -> Result<usize, StorageError> {
        let path = self.path.clone();
        let sql = |source| StorageError::Sql {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let mut late = 0;
        {
            let mut hours: std::collections::BTreeMap<i64, Agg> = Default::default();
            for (minute, agg) in minutes.iter() {
                upsert(&tx, "power_minute", "minute", minute, agg).map_err(sql)?;
                hours
                    .entry(minute.div_euclid(3600) * 3600)
                    .or_default()
                    .merge(agg);
            }
            for (hour, agg) in &hours {
                upsert(&tx, "power_hour", "hour", *hour, agg).map_err(sql)?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT INTO sensor_gap (end_ms, seconds, estimated_wh, reason) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            for g in gaps {
                ins.execute(params![
                    g.end_wall_ms,
                    g.duration.as_secs_f64(),
                    g.estimated.0,
                    g.reason
                ])
                .map_err(sql)?;
            }
            if !acct.is_empty() {
                late = write_acct(&tx, acct).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(late)
    }

    /// Drop per-minute rows (power and accounting) older than `keep_from_s`, but never those a
    /// statement still needs: every minute of a month not closed yet, and the
    /// [`HISTORY_DAYS`] before it (the automatic base load). Hours stay forever.
    pub fn prune_minutes(&mut self, keep_from_s: i64) -> Result<usize, StorageError> {
        let keep = match self.first_open_month().map_err(|e| self.err(e))? {
            Some(start) => keep_from_s.min(start - HISTORY_DAYS * 86_400),
            None => keep_from_s,
        };
        let run = |q: &str| self.conn.execute(q, [keep]).map_err(|e| self.err(e));
        let n = run("DELETE FROM power_minute WHERE minute < ?1")?;
        run("DELETE FROM acct_minute WHERE minute < ?1")?;
        run("DELETE FROM acct_weight WHERE minute < ?1")?;
        Ok(n)
    }

    /// Start of the earliest month that has stored minutes and no statement yet.
    fn first_open_month(&self) -> rusqlite::Result<Option<i64>> {
        let mut from = i64::MIN;
        loop {
            let first: Option<i64> = self.conn.query_row(
                "SELECT MIN(m) FROM (SELECT MIN(minute) AS m FROM power_minute WHERE minute >= ?1
                 UNION ALL SELECT MIN(minute) FROM acct_minute WHERE minute >= ?1)",
                [from],
                |r| r.get(0),
            )?;
            let Some(first) = first else { return Ok(None) };
            let Some((label, start, end)) = month_of(first) else {
                return Ok(None);
            };
            if self.statement(&label)?.is_none() {
                return Ok(Some(start));
            }
            from = end;
        }
    }

    /// The earliest minute with accounting inputs: months before it (metered before the
    /// accounting existed) are not closed.
    pub fn first_accounting_minute(&self) -> Result<Option<i64>, StorageError> {
        self.conn
            .query_row("SELECT MIN(minute) FROM acct_minute", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }

    /// The stored accounting inputs of the minutes in `[start_s, end_s)`, in time order.
    pub fn accounting_inputs(
        &self,
        start_s: i64,
        end_s: i64,
    ) -> Result<StoredInputs, StorageError> {
        self.read_inputs(start_s, end_s).map_err(|e| self.err(e))
    }

    fn read_inputs(&self, start_s: i64, end_s: i64) -> rusqlite::Result<StoredInputs> {
        let mut out = StoredInputs::default();
        let mut q = self.conn.prepare_cached(
            "SELECT minute, energy_wh, estimated_wh FROM power_minute
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute",
        )?;
        for row in q.query_map([start_s, end_s], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
            out.energy.push(row?);
        }
        let mut q = self.conn.prepare_cached(
            "SELECT minute, total_ms, requests, unauth_ms, matrix_share FROM acct_minute
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute",
        )?;
        let mut rows = q.query([start_s, end_s])?;
        while let Some(r) = rows.next()? {
            let minute: i64 = r.get(0)?;
            let (total, requests, unauth): (i64, i64, i64) = (r.get(1)?, r.get(2)?, r.get(3)?);
            if requests > 0 || total > 0 {
                out.weights.push(MinuteWeight {
                    minute_s: minute,
                    total_ms: total.max(0) as u64,
                    requests: requests.max(0) as u64,
                    unauthenticated_ms: unauth.max(0) as u64,
                    by_requester: Vec::new(),
                });
            }
            if let Some(share) = r.get::<_, Option<f64>>(4)? {
                out.shares.push((minute, share));
            }
        }
        let mut q = self.conn.prepare_cached(
            "SELECT minute, requester, weight_ms FROM acct_weight
             WHERE minute >= ?1 AND minute < ?2 ORDER BY minute, requester",
        )?;
        let mut rows = q.query([start_s, end_s])?;
        let mut at = 0usize;
        while let Some(r) = rows.next()? {
            let minute: i64 = r.get(0)?;
            let name: String = r.get(1)?;
            let w: i64 = r.get(2)?;
            while at < out.weights.len() && out.weights[at].minute_s < minute {
                at += 1;
            }
            match out.weights.get_mut(at) {
                Some(m) if m.minute_s == minute => {
                    m.by_requester.push((name.into(), w.max(0) as u64))
                }
                // A requester row without its minute row cannot be written by write_acct; the
                // weight still counts, in R as well, so nothing is lost.
                _ => {
                    out.weights.insert(
                        at,
                        MinuteWeight {
                            minute_s: minute,
                            total_ms: w.max(0) as u64,
                            requests: 0,
                            unauthenticated_ms: 0,
                            by_requester: vec![(name.into(), w.max(0) as u64)],
                        },
                    );
                }
            }
        }
        Ok(out)
    }

    /// 1-minute mean power (W) of the measured minutes in `[start_s, end_s)`: the history of
    /// `base_watts = "auto"`.
    pub fn minute_mean_watts(&self, start_s: i64, end_s: i64) -> Result<Vec<f64>, StorageError> {
        let run = || -> rusqlite::Result<Vec<f64>> {
            let mut q = self.conn.prepare_cached(
                "SELECT energy_wh, seconds FROM power_minute
                 WHERE minute >= ?1 AND minute < ?2 AND seconds > 0 ORDER BY minute",
            )?;
            let rows = q.query_map([start_s, end_s], |r| {
                Ok(r.get::<_, f64>(0)? * 3600.0 / r.get::<_, f64>(1)?)
            })?;
            rows.collect()
        };
        run().map_err(|e| self.err(e))
    }

    /// The journal cursor stored with the last batch of `unit`'s access lines.
    pub fn journal_cursor(&self, unit: &str) -> Result<Option<String>, StorageError> {
        self.conn
            .query_row(
                "SELECT cursor FROM journal_cursor WHERE unit = ?1",
                [unit],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// The closed statement of `period` (`"YYYY-MM"`), if any.
    /// The periods with a stored (closed) statement, oldest first.
    pub fn statement_periods(&self) -> Result<Vec<String>, StorageError> {
        let run = || -> rusqlite::Result<Vec<String>> {
            let mut st = self
                .conn
                .prepare_cached("SELECT period FROM statement ORDER BY period")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect()
        };
        run().map_err(|e| self.err(e))
    }

    pub fn stored_statement(&self, period: &str) -> Result<Option<StoredStatement>, StorageError> {
        self.statement(period).map_err(|e| self.err(e))
    }

    fn statement(&self, period: &str) -> rusqlite::Result<Option<StoredStatement>> {
        self.conn
            .query_row(
                "SELECT period, json, inputs_sha256, closed_at FROM statement WHERE period = ?1",
                [period],
                |r| {
                    Ok(StoredStatement {
                        period: r.get(0)?,
                        json: r.get(1)?,
                        inputs_sha256: r.get(2)?,
                        closed_at_s: r.get(3)?,
                    })
                },
            )
            .optional()
    }

    /// Store a closed statement. It is frozen: a second close of the same period is refused
    /// (`Ok(false)`, the first one stays), and triggers refuse UPDATE and DELETE.
    pub fn insert_statement(&mut self, s: &StoredStatement) -> Result<bool, StorageError> {
        self.conn
            .execute(
                "INSERT INTO statement (period, json, inputs_sha256, closed_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(period) DO NOTHING",
                params![s.period, s.json, s.inputs_sha256, s.closed_at_s],
            )
            .map(|n| n == 1)
            .map_err(|e| self.err(e))
    }

    /// Energy since the start of the day and of the month (Unix seconds), and in all.
    /// The energy of `[start_s, end_s)` (hour-aligned, e.g. a UTC month) and the seconds of it
    /// covered by measured samples, from `power_hour` (kept forever, unlike the minutes).
    pub fn period_energy(&self, start_s: i64, end_s: i64) -> Result<(f64, f64), StorageError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(energy_wh), 0), COALESCE(SUM(measured_s), 0) FROM power_hour
                 WHERE hour >= ?1 AND hour < ?2",
                params![start_s, end_s],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|source| StorageError::Sql {
                path: self.path.clone(),
                source,
            })
    }

    pub fn sums(&self, day_start_s: i64, month_start_s: i64) -> Result<EnergySums, StorageError> {
        let one = |q: &str, p: i64| -> Result<f64, StorageError> {
            self.conn
                .query_row(q, [p], |r| r.get::<_, Option<f64>>(0))
                .map(|v| v.unwrap_or(0.0))
                .map_err(|e| self.err(e))
        };
        // Whole hours from the roll-up, the rest of a partial first hour from minutes.
        let first_hour = (month_start_s + 3599).div_euclid(3600) * 3600;
        let since_month = one(
            "SELECT SUM(energy_wh) FROM power_hour WHERE hour >= ?1",
            first_hour,
        )? + self
            .conn
            .query_row(
                "SELECT SUM(energy_wh) FROM power_minute WHERE minute >= ?1 AND minute < ?2",
                [month_start_s, first_hour],
                |r| r.get::<_, Option<f64>>(0),
            )
            .map_err(|e| self.err(e))?
            .unwrap_or(0.0);
        Ok(EnergySums {
            since_day_wh: one(
                "SELECT SUM(energy_wh) FROM power_minute WHERE minute >= ?1",
                day_start_s,
            )?,
            since_month_wh: since_month,
            lifetime_wh: one("SELECT SUM(energy_wh) FROM power_hour WHERE ?1 = ?1", 0)?,
            lifetime_estimated_wh: one(
                "SELECT SUM(estimated_wh) FROM power_hour WHERE ?1 = ?1",
                0,
            )?,
        })
    }

    /// One stored minute, for tests and the page's history.
    pub fn minute(&self, minute_s: i64) -> Result<Option<Agg>, StorageError> {
        self.row("power_minute", "minute", minute_s)
    }

    pub fn hour(&self, hour_s: i64) -> Result<Option<Agg>, StorageError> {
        self.row("power_hour", "hour", hour_s)
    }

    fn row(&self, table: &str, key: &str, at: i64) -> Result<Option<Agg>, StorageError> {
        let q = format!(
            "SELECT energy_wh, estimated_wh, seconds, measured_s, volt_seconds, min_w, max_w, samples FROM {table} WHERE {key} = ?1"
        );
        self.conn
            .query_row(&q, [at], |r| {
                Ok(Agg {
                    energy_wh: r.get(0)?,
                    estimated_wh: r.get(1)?,
                    seconds: r.get(2)?,
                    measured_seconds: r.get(3)?,
                    volt_seconds: r.get(4)?,
                    min_w: r.get::<_, Option<f64>>(5)?.unwrap_or(f64::INFINITY),
                    max_w: r.get::<_, Option<f64>>(6)?.unwrap_or(f64::NEG_INFINITY),
                    samples: r.get::<_, i64>(7)?.max(0) as u64,
                })
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Number of stored gaps and their estimated energy.
    pub fn gaps(&self) -> Result<(u64, f64), StorageError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(estimated_wh), 0) FROM sensor_gap",
                [],
                |r| Ok((r.get::<_, i64>(0)?.max(0) as u64, r.get(1)?)),
            )
            .map_err(|e| self.err(e))
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StorageError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

/// Run a short blocking database step from async code without holding up the runtime's other
/// tasks: on the daemon's multi-thread runtime the worker hands its queue to another thread
/// while `f` runs (`tokio::task::block_in_place`); on a current-thread runtime (tests, the
/// command line), or outside one, `f` simply runs.
pub fn off_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Open (creating it and its directory if needed) the database at `path` with the daemon's
/// settings and the schema migrated to the latest version. `Storage` is built on this; the audit
/// log's tests and the bench use it directly.
/// Write a small file whole or not at all: a temporary file beside it, fsynced, renamed over it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    // The rename itself reaches the card with the directory.
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

pub fn open_connection(path: &Path) -> Result<Connection, StorageError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Dir {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let sql = |source| StorageError::Sql {
        path: path.to_path_buf(),
        source,
    };
    let mut conn = Connection::open(path).map_err(sql)?;
    // Small pages: each batch touches a handful of pages, and every page written is SD wear.
    // (page_size only takes effect on a new database, before WAL is enabled.)
    conn.pragma_update(None, "page_size", 1024).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sql)?;
    conn.pragma_update(None, "busy_timeout", 5000)
        .map_err(sql)?;
    Migrations::from_slice(schema::MIGRATIONS)
        .to_latest(&mut conn)
        .map_err(|source| StorageError::Migrate {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(conn)
}

/// The accounting part of a batch (see [`AcctBatch`]); returns the rows left out because their
/// month is closed.
fn write_acct(tx: &rusqlite::Transaction<'_>, acct: &AcctBatch) -> rusqlite::Result<usize> {
    let mut closed: std::collections::HashMap<String, bool> = Default::default();
    let mut is_closed = |minute: i64| -> rusqlite::Result<bool> {
        let Some((label, _, _)) = month_of(minute) else {
            return Ok(true);
        };
        if let Some(&c) = closed.get(&label) {
            return Ok(c);
        }
        let c = tx
            .query_row(
                "SELECT 1 FROM statement WHERE period = ?1",
                [&label],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        closed.insert(label, c);
        Ok(c)
    };
    let mut late = 0;
    let mut minute_row = tx.prepare_cached(
        "INSERT INTO acct_minute (minute, total_ms, requests, unauth_ms, matrix_share)
         VALUES (?1, ?2, ?3, ?4, NULL)
         ON CONFLICT(minute) DO UPDATE SET
           total_ms = total_ms + excluded.total_ms,
           requests = requests + excluded.requests,
           unauth_ms = unauth_ms + excluded.unauth_ms",
    )?;
    let mut weight_row = tx.prepare_cached(
        "INSERT INTO acct_weight (minute, requester, weight_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(minute, requester) DO UPDATE SET weight_ms = weight_ms + excluded.weight_ms",
    )?;
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    for m in &acct.weights {
        if is_closed(m.minute_s)? {
            late += 1;
            continue;
        }
        minute_row.execute(params![
            m.minute_s,
            int(m.total_ms),
            int(m.requests),
            int(m.unauthenticated_ms)
        ])?;
        for (name, w) in &m.by_requester {
            weight_row.execute(params![m.minute_s, name.as_ref(), int(*w)])?;
        }
    }
    let mut share_row = tx.prepare_cached(
        "INSERT INTO acct_minute (minute, total_ms, requests, unauth_ms, matrix_share)
         VALUES (?1, 0, 0, 0, ?2)
         ON CONFLICT(minute) DO UPDATE SET matrix_share = excluded.matrix_share",
    )?;
    for &(minute, share) in &acct.shares {
        if is_closed(minute)? {
            late += 1;
            continue;
        }
        share_row.execute(params![minute, share])?;
    }
    if let Some((unit, cursor)) = &acct.cursor {
        tx.execute(
            "INSERT INTO journal_cursor (unit, cursor) VALUES (?1, ?2)
             ON CONFLICT(unit) DO UPDATE SET cursor = excluded.cursor",
            [unit, cursor],
        )?;
    }
    Ok(late)
}

fn upsert(
    tx: &rusqlite::Transaction<'_>,
    table: &str,
    key: &str,
    at: i64,
    a: &Agg,
) -> rusqlite::Result<()> {
    // Merging, not replacing: a minute may arrive in several batches (it was still running at
    // a flush, or the wall clock went back). Min/max NULL means "nothing measured".
    let q = format!(
        "INSERT INTO {table} ({key}, energy_wh, estimated_wh, seconds, measured_s, volt_seconds, min_w, max_w, samples)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT({key}) DO UPDATE SET
           energy_wh = energy_wh + excluded.energy_wh,
           estimated_wh = estimated_wh + excluded.estimated_wh,
           seconds = seconds + excluded.seconds,
           measured_s = measured_s + excluded.measured_s,
           volt_seconds = volt_seconds + excluded.volt_seconds,
           min_w = CASE WHEN min_w IS NULL THEN excluded.min_w WHEN excluded.min_w IS NULL THEN min_w ELSE MIN(min_w, excluded.min_w) END,
           max_w = CASE WHEN max_w IS NULL THEN excluded.max_w WHEN excluded.max_w IS NULL THEN max_w ELSE MAX(max_w, excluded.max_w) END,
           samples = samples + excluded.samples"
    );
    let (min, max) = match a.min_max() {
        Some((lo, hi)) => (Some(lo), Some(hi)),
        None => (None, None),
    };
    tx.prepare_cached(&q)?.execute(params![
        at,
        a.energy_wh,
        a.estimated_wh,
        a.seconds,
        a.measured_seconds,
        a.volt_seconds,
        min,
        max,
        a.samples as i64
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_step_lets_the_runtimes_other_tasks_run() {
        // One worker: a step that blocked it in place would stop the ticker too.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ticks = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            });
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            let during = tokio::spawn({
                let ticks = ticks.clone();
                async move {
                    let before = ticks.load(std::sync::atomic::Ordering::Relaxed);
                    off_workers(|| std::thread::sleep(std::time::Duration::from_millis(400)));
                    ticks.load(std::sync::atomic::Ordering::Relaxed) - before
                }
            })
            .await
            .unwrap();
            ticker.abort();
            assert!(
                during >= 5,
                "the other task ticked {during} times in 400 ms"
            );
        });
        // Outside a runtime, and on a current-thread one, it simply runs.
        assert_eq!(off_workers(|| 7), 7);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(async { assert_eq!(off_workers(|| 8), 8) });
    }
    use crate::meter::integrator::Piece;
    use crate::units::{Volts, WattHours, Watts};
    use std::time::Duration;

    fn minutes(pieces: &[(i64, f64, f64)]) -> Minutes {
        let mut m = Minutes::default();
        for &(end_ms, secs, w) in pieces {
            let d = Duration::from_secs_f64(secs);
            m.add(&Piece {
                end_wall_ms: end_ms,
                duration: d,
                energy: Watts(w) * d,
                estimated: WattHours::ZERO,
                measured: Some((Watts(w), Volts(5.0))),
            });
        }
        m
    }

    #[test]
    fn batches_merge_into_minutes_and_hours() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Storage::open(&dir.path().join("sub/hearth.db")).unwrap();
        s.write_batch(&minutes(&[(30_000, 30.0, 3.6)]), &[])
            .unwrap();
        s.write_batch(
            &minutes(&[(60_000, 30.0, 7.2), (3_660_000, 60.0, 3.6)]),
            &[],
        )
        .unwrap();
        let m0 = s.minute(0).unwrap().unwrap();
        assert!((m0.energy_wh - 0.09).abs() < 1e-12);
        assert_eq!(m0.min_max(), Some((3.6, 7.2)));
        assert_eq!(m0.samples, 2);
        let h0 = s.hour(0).unwrap().unwrap();
        assert!((h0.energy_wh - 0.09).abs() < 1e-12);
        let h1 = s.hour(3600).unwrap().unwrap();
        assert!((h1.energy_wh - 0.06).abs() < 1e-12);
        let sums = s.sums(0, 0).unwrap();
        assert!((sums.lifetime_wh - 0.15).abs() < 1e-12);
        assert!((sums.since_day_wh - 0.15).abs() < 1e-12);
        assert!((sums.since_month_wh - 0.15).abs() < 1e-12);
        assert!((s.sums(3600, 3600).unwrap().since_month_wh - 0.06).abs() < 1e-12);
    }

    fn close(s: &mut Storage, period: &str) {
        assert!(s
            .insert_statement(&StoredStatement {
                period: period.into(),
                json: "{}".into(),
                inputs_sha256: "0".repeat(64),
                closed_at_s: 1,
            })
            .unwrap());
    }

    #[test]
    fn pruning_minutes_keeps_hours() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Storage::open(&dir.path().join("hearth.db")).unwrap();
        s.write_batch(
            &minutes(&[(30_000, 30.0, 3.6), (7_230_000, 30.0, 3.6)]),
            &[],
        )
        .unwrap();
        // January 1970 is open: its minutes (and the week before) are kept whatever the age.
        assert_eq!(s.prune_minutes(3600).unwrap(), 0);
        close(&mut s, "1970-01");
        assert_eq!(s.prune_minutes(3600).unwrap(), 1);
        assert!(s.minute(0).unwrap().is_none());
        assert!(s.hour(0).unwrap().is_some());
        assert!((s.sums(0, 0).unwrap().lifetime_wh - 0.06).abs() < 1e-12);
    }

    #[test]
    fn reopening_keeps_data_and_schema_version() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.db");
        {
            let mut s = Storage::open(&p).unwrap();
            s.write_batch(
                &minutes(&[(30_000, 30.0, 3.6)]),
                &[Gap {
                    end_wall_ms: 1,
                    duration: Duration::from_secs(2),
                    estimated: WattHours(0.5),
                    reason: "NACK".into(),
                }],
            )
            .unwrap();
        }
        let s = Storage::open(&p).unwrap();
        assert_eq!(s.gaps().unwrap(), (1, 0.5));
        assert!(s.minute(0).unwrap().is_some());
        assert_eq!(s.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hearth.db");
        std::fs::write(&p, vec![0x55u8; 4096]).unwrap();
        let e = Storage::open(&p).err().unwrap().to_string();
        assert!(e.contains("hearth.db"), "{e}");
    }
}
