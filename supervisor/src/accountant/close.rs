//! Statements from stored inputs: the monthly close, the month so far, and recomputing a
//! closed month to check it.
//!
//! A month closes once it is over (UTC) and every input of it is committed: the meter's flush
//! after the month's end has written its power minutes, the access-log reader has delivered
//! every line up to then ([`super::Pending::persisted_through_ms`]), with [`CLOSE_MARGIN`] to
//! spare for the last minute's CPU share and lines still on their way. Its statement is
//! computed by the same `accounting::inputs::statement` as the `account` command, from
//! `power_minute` (energy, estimated), `acct_minute`/`acct_weight` (weights, CPU share), the 7
//! days of minute means before the month (`base_watts = "auto"`) and the members that the
//! [`MemberSource`] gives for the month; it is stored with the SHA-256 of those inputs and never
//! changed again (the database refuses updates; request weights arriving for a closed month
//! are left out of the tables).
//!
//! [`recompute`] computes a closed month again from what is stored and compares. It matches
//! while the inputs are kept (minutes are pruned after `minute_retention_days`, never before
//! the month is closed) and the member source answers as it did; a power minute that a
//! backwards clock jump labelled into a closed month would show as a difference.

use super::members::{MemberSource, MemberSourceError};
use super::SharedPending;
use crate::accounting::inputs::{self, Rows};
use crate::accounting::model::{InputError, Period, StatementInputs};
use crate::accounting::statement::Statement;
use crate::config::{AccountingConfig, BaseWatts};
use crate::storage::{month_of, Storage, StorageError, StoredStatement, HISTORY_DAYS};
use chrono::{DateTime, Datelike};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long after a month's end its inputs must be committed before it closes.
pub const CLOSE_MARGIN: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Members(#[from] MemberSourceError),
    #[error("{period}: {source}")]
    Input {
        period: String,
        #[source]
        source: InputError,
    },
    #[error("{0}: no closed statement")]
    NotClosed(String),
    #[error("{period}: stored statement JSON: {message}")]
    StoredJson { period: String, message: String },
}

/// A statement and the hash of its inputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub statement: Statement,
    pub inputs_sha256: String,
}

/// The statement of `period` from what `storage` holds: the same code as `account`.
pub fn statement_of(
    storage: &Storage,
    period: &Period,
    members: &dyn MemberSource,
    config: &AccountingConfig,
) -> Result<Computed, CloseError> {
    let people = members.members(period)?;
    let media = members.media_bytes(period)?;
    let stored = storage.accounting_inputs(period.start_s(), period.end_s())?;
    let history = match config.base_watts {
        BaseWatts::Auto => {
            storage.minute_mean_watts(period.start_s() - HISTORY_DAYS * 86_400, period.start_s())?
        }
        BaseWatts::Fixed(_) => Vec::new(),
    };
    let (minutes, _) = inputs::minute_inputs(
        &people,
        period,
        Rows {
            energy: &stored.energy,
            weights: &stored.weights,
            shares: &stored.shares,
        },
    );
    let (statement, inputs_sha256) = inputs::statement(
        &StatementInputs {
            period,
            members: &people,
            minutes: &minutes,
            history_watts: &history,
            media_bytes: &media,
        },
        config,
    )
    .map_err(|source| CloseError::Input {
        period: period.label().to_string(),
        source,
    })?;
    Ok(Computed {
        statement,
        inputs_sha256,
    })
}

/// The current month from its start to the end of the minute containing `now_s`, as far as
/// it is stored (up to the last batch; the page calls this).
pub fn month_so_far(
    storage: &Storage,
    now_s: i64,
    members: &dyn MemberSource,
    config: &AccountingConfig,
) -> Result<Computed, CloseError> {
    let (_, start, _) = month_of(now_s).ok_or_else(|| CloseError::NotClosed(now_s.to_string()))?;
    let period =
        Period::range(start, now_s.div_euclid(60) * 60 + 60).map_err(|m| CloseError::Input {
            period: start.to_string(),
            source: InputError {
                minute: start.to_string(),
                message: m,
            },
        })?;
    statement_of(storage, &period, members, config)
}

/// Close `period` (a calendar month) at `now_s`: compute and store its statement unless one is
/// stored already. `Ok(true)` when this call closed it.
pub fn close_month(
    storage: &mut Storage,
    period: &Period,
    members: &dyn MemberSource,
    config: &AccountingConfig,
    now_s: i64,
) -> Result<bool, CloseError> {
    if storage.stored_statement(period.label())?.is_some() {
        return Ok(false);
    }
    let c = statement_of(storage, period, members, config)?;
    let json = serde_json::to_string(&c.statement).map_err(|e| CloseError::StoredJson {
        period: period.label().to_string(),
        message: e.to_string(),
    })?;
    Ok(storage.insert_statement(&StoredStatement {
        period: period.label().to_string(),
        json,
        inputs_sha256: c.inputs_sha256,
        closed_at_s: now_s,
    })?)
}

/// A closed month computed again.
#[derive(Debug, Clone, PartialEq)]
pub struct Recomputed {
    pub stored: StoredStatement,
    pub recomputed: Computed,
    /// Same inputs hash and the same statement JSON.
    pub same: bool,
}

/// Compute the closed month `label` (`"YYYY-MM"`) again from the stored inputs and compare.
pub fn recompute(
    storage: &Storage,
    label: &str,
    members: &dyn MemberSource,
    config: &AccountingConfig,
) -> Result<Recomputed, CloseError> {
    let stored = storage
        .stored_statement(label)?
        .ok_or_else(|| CloseError::NotClosed(label.to_string()))?;
    let period =
        Period::parse_month(label).map_err(|_| CloseError::NotClosed(label.to_string()))?;
    let recomputed = statement_of(storage, &period, members, config)?;
    let json =
        serde_json::to_string(&recomputed.statement).map_err(|e| CloseError::StoredJson {
            period: label.to_string(),
            message: e.to_string(),
        })?;
    let same = json == stored.json && recomputed.inputs_sha256 == stored.inputs_sha256;
    Ok(Recomputed {
        stored,
        recomputed,
        same,
    })
}

/// The months that may close now: from the first month with accounting inputs (request
/// weights or CPU shares) up to the last
/// one that ended [`CLOSE_MARGIN`] before `persisted_through_s`, without a statement yet.
pub fn months_to_close(
    storage: &Storage,
    persisted_through_s: i64,
) -> Result<Vec<Period>, CloseError> {
    let Some(first) = storage.first_accounting_minute()? else {
        return Ok(Vec::new());
    };
    let ready = persisted_through_s - CLOSE_MARGIN.as_secs() as i64;
    let mut out = Vec::new();
    let mut at = DateTime::from_timestamp(first, 0);
    while let Some(Ok(p)) = at.map(|t| Period::month(t.year(), t.month())) {
        if p.end_s() > ready {
            break;
        }
        if storage.stored_statement(p.label())?.is_none() {
            out.push(p.clone());
        }
        at = DateTime::from_timestamp(p.end_s(), 0);
    }
    Ok(out)
}

/// Close months as they end, until cancelled. Checks once a minute.
pub async fn run(
    storage: Arc<Mutex<Storage>>,
    pending: SharedPending,
    members: Arc<dyn MemberSource>,
    config: AccountingConfig,
    token: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let mut failing = false;
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(through_ms) = pending.lock().persisted_through_ms else {
            continue;
        };
        let (storage, members, config) = (storage.clone(), members.clone(), config.clone());
        let result = tokio::task::spawn_blocking(move || -> Result<Vec<String>, CloseError> {
            let mut db = storage.lock().unwrap_or_else(|p| p.into_inner());
            let mut closed = Vec::new();
            for p in months_to_close(&db, through_ms.div_euclid(1000))? {
                if close_month(
                    &mut db,
                    &p,
                    members.as_ref(),
                    &config,
                    crate::clock::wall_ms_now() / 1000,
                )? {
                    closed.push(p.label().to_string());
                }
            }
            Ok(closed)
        })
        .await;
        match result {
            Ok(Ok(closed)) => {
                for p in closed {
                    tracing::info!(period = %p, "month closed: statement stored");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::error!("closing the month failed, trying again each minute: {e}");
                }
                failing = true;
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::accounting::accesslog::MinuteWeights;
    use crate::accounting::members::Members;
    use crate::meter::buckets::Minutes;
    use crate::meter::integrator::Piece;
    use crate::storage::AcctBatch;
    use crate::units::{Volts, WattHours, Watts};

    /// 2026-11-01T00:00:00Z and 2026-12-01T00:00:00Z.
    const NOV: i64 = 1_793_491_200;
    const DEC: i64 = NOV + 30 * 86_400;

    pub(crate) fn members() -> Members {
        Members::parse(
            "m.toml",
            "[[household]]\nid = \"h\"\nname = \"H\"\n[[member]]\nuser_id = \"@alice:x.org\"\nhousehold = \"h\"\n\
             [[member]]\nuser_id = \"@bob:x.org\"\nhousehold = \"h\"\n",
        )
        .unwrap()
    }

    pub(crate) fn access(at_s: i64, who: &str, ms: u32) -> String {
        let t = DateTime::from_timestamp(at_s, 0)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S");
        format!("{t},000 - synapse.access.http.8008 - 1 - INFO - GET-1 - 127.0.0.1 - 8008 - {{{who}}} Processed request: 0.100sec/0.001sec ru=(0.{ms:03}sec, 0.000sec) db=(0.000sec/0.000sec/0) 1B 200 \"GET /x HTTP/1.1\" \"c\" [0 dbevts]")
    }

    /// The last hour of November (4 W, alice and bob busy, s = 0.5), as the daemon batches it.
    fn store_november(db: &mut Storage) {
        let mut power = Minutes::default();
        let d = std::time::Duration::from_secs(60);
        let mut weights = MinuteWeights::new();
        let mut shares = Vec::new();
        for i in 0..60 {
            let m = DEC - 3600 + 60 * i;
            power.add(&Piece {
                end_wall_ms: (m + 60) * 1000,
                duration: d,
                energy: Watts(4.0) * d,
                estimated: WattHours::ZERO,
                measured: Some((Watts(4.0), Volts(5.0))),
            });
            weights
                .ingest_line(&access(m + 1, "@alice:x.org", 30))
                .unwrap();
            weights
                .ingest_line(&access(m + 2, "@bob:x.org", 10))
                .unwrap();
            weights.ingest_line(&access(m + 3, "None", 10)).unwrap();
            shares.push((m, 0.5));
        }
        let batch = AcctBatch {
            weights: weights.drain_all(),
            shares,
            cursor: None,
        };
        assert_eq!(db.write_batch_with(&power, &[], &batch).unwrap(), 0);
    }

    fn config() -> AccountingConfig {
        AccountingConfig {
            base_watts: BaseWatts::Fixed(3.0),
            ..AccountingConfig::default()
        }
    }

    #[test]
    fn a_month_closes_once_flushed_is_frozen_and_recomputes_to_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Storage::open(&dir.path().join("hearth.db")).unwrap();
        store_november(&mut db);
        let ms = members();
        // Committed up to a minute after the month's end: not yet (the margin).
        assert!(months_to_close(&db, DEC + 60).unwrap().is_empty());
        let due = months_to_close(&db, DEC + 180).unwrap();
        assert_eq!(
            due.iter().map(|p| p.label()).collect::<Vec<_>>(),
            ["2026-11"]
        );
        assert!(close_month(&mut db, &due[0], &ms, &config(), DEC + 200).unwrap());
        assert!(months_to_close(&db, DEC + 180).unwrap().is_empty());

        let stored = db.stored_statement("2026-11").unwrap().unwrap();
        let s: Statement = serde_json::from_str(&stored.json).unwrap();
        // 60 minutes of 4 W: 4 Wh; base 3 W → 3 Wh; dynamic 1 Wh, half of it Matrix's.
        assert!((s.measured_wh - 4.0).abs() < 1e-9);
        assert!((s.other_services_wh - 0.5).abs() < 1e-9);
        // Matrix's 0.5 Wh: alice 3/5 direct, bob 1/5, the unauthenticated 1/5 shared.
        let alice = &s.members[0];
        assert!((alice.direct_wh - 0.3).abs() < 1e-9, "{alice:?}");
        assert!((alice.shared_wh - 0.05).abs() < 1e-9, "{alice:?}");

        let again = recompute(&db, "2026-11", &ms, &config()).unwrap();
        assert!(again.same, "{again:?}");

        // Frozen: a second close changes nothing; late lines for November are left out.
        assert!(!close_month(&mut db, &due[0], &ms, &config(), DEC + 999).unwrap());
        let mut late = MinuteWeights::new();
        late.ingest_line(&access(DEC - 30, "@bob:x.org", 999))
            .unwrap();
        let batch = AcctBatch {
            weights: late.drain_all(),
            shares: vec![(DEC - 60, 1.0)],
            cursor: None,
        };
        assert_eq!(
            db.write_batch_with(&Minutes::default(), &[], &batch)
                .unwrap(),
            2
        );
        assert_eq!(db.stored_statement("2026-11").unwrap().unwrap(), stored);
        assert!(recompute(&db, "2026-11", &ms, &config()).unwrap().same);

        // Other inputs (another tariff) give another hash: the comparison can fail.
        let dearer = AccountingConfig {
            tariff_per_kwh: 0.5,
            ..config()
        };
        assert!(!recompute(&db, "2026-11", &ms, &dearer).unwrap().same);
    }

    #[test]
    fn the_month_so_far_is_the_stored_part_of_the_month() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Storage::open(&dir.path().join("hearth.db")).unwrap();
        store_november(&mut db);
        let so_far = month_so_far(&db, DEC - 1, &members(), &config()).unwrap();
        assert_eq!(so_far.statement.start, "2026-11-01T00:00:00Z");
        assert_eq!(so_far.statement.period, "2026-11");
        assert!((so_far.statement.measured_wh - 4.0).abs() < 1e-9);
        let early = month_so_far(&db, DEC - 1800, &members(), &config()).unwrap();
        assert_eq!(early.statement.end, "2026-11-30T23:31:00Z");
        assert!((early.statement.measured_wh - 31.0 * 4.0 / 60.0).abs() < 1e-9);
    }
}
