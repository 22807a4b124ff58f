//! `hearth-supervisor account`: a statement recomputed from raw inputs, so a family can check
//! its bill (PRODUCT §4).
//!
//! The trace is replayed through the daemon's measurement path ([`replay_minutes`]: simulated
//! INA219, driver, sampler, integrator, minute buckets) with wall-clock labels `start + t`; the
//! access log is read by the daemon's parser and aggregator (`accesslog::MinuteWeights`); the
//! rows go through the daemon's own [`inputs::minute_inputs`] and [`inputs::statement`]. The
//! period is `[start, start + trace duration)`, widened to whole minutes.
//!
//! What the command cannot know offline, and what it does instead:
//! - the Matrix service's CPU share s_i: unknown, so 1 (§5: "1 offline");
//! - the 7 days of history before the period for `base_watts = "auto"`: there are none, so the
//!   model's documented fallback takes the period's own minutes (`base_source:
//!   "auto_from_period"` in the statement says so);
//! - media bytes: not in the inputs, so 0.

use crate::accountant::members::{MemberSource, MemberSourceError};
use crate::accounting::accesslog::{IngestCounts, MinuteWeights};
use crate::accounting::inputs::{self, Rows};
use crate::accounting::model::{InputError, Period, StatementInputs};
use crate::accounting::statement::Statement;
use crate::config::Config;
use crate::power::trace::{Trace, TraceError};
use crate::power::SensorError;
use crate::replay::replay_minutes;
use std::io::BufRead;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("--start: {0:?} is not an RFC 3339 instant such as 2026-11-01T00:00:00Z")]
    Start(String),
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Members(#[from] MemberSourceError),
    /// (The io error is in the message, not a `source`: `main` prints the chain.)
    #[error("{path}: cannot read: {detail}")]
    AccessLog { path: String, detail: String },
    #[error("power sensor: {0}")]
    Sensor(#[from] SensorError),
    #[error("--start and the trace: {0}")]
    Period(String),
    #[error("statement: {0}")]
    Input(#[from] InputError),
}

/// What `account` found besides the statement (printed to stderr).
#[derive(Debug, Clone)]
pub struct Account {
    pub statement: Statement,
    pub inputs_sha256: String,
    /// Access-log lines read, requests, lines skipped by reason.
    pub access: IngestCounts,
    /// Access-log minutes outside the period (their requests are not in the statement).
    pub minutes_outside: usize,
}

/// `--start` as Unix ms.
pub fn parse_start(s: &str) -> Result<i64, AccountError> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .map(|t| t.timestamp_millis())
        .map_err(|_| AccountError::Start(s.to_string()))
}

/// Read an access-log file into per-minute weights: every line, whatever its encoding (a line
/// that is not UTF-8 is read lossily, and is skipped and counted if it is no access line).
pub fn read_access_log(path: &Path) -> Result<MinuteWeights, AccountError> {
    let err = |e: std::io::Error| AccountError::AccessLog {
        path: path.display().to_string(),
        detail: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(err)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut weights = MinuteWeights::new();
    let mut line = Vec::with_capacity(512);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(err)? == 0 {
            break;
        }
        // Skipped lines are counted in `weights.counts()`, never fatal.
        let _ = weights.ingest_line(&String::from_utf8_lossy(&line));
    }
    Ok(weights)
}

/// The statement of a trace that started at `start_ms` (Unix ms), the access lines of
/// `access_log` and the members `members` yields for the period.
pub fn account(
    trace: Trace,
    start_ms: i64,
    access_log: &Path,
    members: &dyn MemberSource,
    config: &Config,
) -> Result<Account, AccountError> {
    let duration_ms = (trace.duration_s() * 1000.0).ceil() as i64;
    let period = Period::range(
        start_ms.div_euclid(1000),
        (start_ms + duration_ms).div_euclid(1000) + i64::from((start_ms + duration_ms) % 1000 != 0),
    )
    .map_err(AccountError::Period)?;
    let members_now = members.members(&period)?;
    let media = members.media_bytes(&period)?;
    let mut weights = read_access_log(access_log)?;
    let access = weights.counts().clone();
    let weights = weights.drain_all();
    let (_, power) = replay_minutes(trace, config, start_ms)?;
    let energy: Vec<(i64, f64, f64)> = power
        .iter()
        .map(|(m, a)| (m, a.energy_wh, a.estimated_wh))
        .collect();
    let outside_weights = weights
        .iter()
        .filter(|w| w.minute_s < period.start_s() || w.minute_s >= period.end_s())
        .count();
    let (minutes, _) = inputs::minute_inputs(
        &members_now,
        &period,
        Rows {
            energy: &energy,
            weights: &weights,
            shares: &[],
        },
    );
    let (statement, inputs_sha256) = inputs::statement(
        &StatementInputs {
            period: &period,
            members: &members_now,
            minutes: &minutes,
            history_watts: &[],
            media_bytes: &media,
        },
        &config.accounting,
    )?;
    Ok(Account {
        statement,
        inputs_sha256,
        access,
        minutes_outside: outside_weights,
    })
}
