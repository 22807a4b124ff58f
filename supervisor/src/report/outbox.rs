//! The reports' outbox in SQLite: one row per month, made once, sent until delivered.
//!
//! - Schedule: the report of month M is due at a random second in the first three days of M+1,
//!   drawn once and stored in `report_schedule` before any value is looked at (so when a report
//!   leaves says nothing about what it says).
//! - Exactly once: `report_outbox.month` is the primary key, so a month boundary passed twice (the
//!   clock jumping back and forth) cannot make two reports; the report's `id` is drawn once and
//!   kept, so a retry after a lost answer is recognised by the collector (200 or 409: delivered).
//! - Nothing lost: every state change is one committed statement; a restart resumes from the rows.
//! - The noise is in the stored draft: a retry re-sends the same value, never a fresh draw.
//!
//! States: `draft` (made, no token yet) → `ready` (its token attached: the exact bytes to send)
//! → `delivered`.

use rusqlite::{params, Connection, OptionalExtension};

use super::Draft;
use crate::accounting::model::Period;

// The tables are migration 8 in `storage/schema.rs` (`REPORT`).

/// The window after a month's end in which its report is sent: three days.
pub const WINDOW_S: i64 = 3 * 86_400;
/// First retry after one minute (`[report] retry_s`), doubling up to 12 hours.
pub const FIRST_BACKOFF_S: i64 = 60;
pub const MAX_BACKOFF_S: i64 = 12 * 3600;

/// The wait after the `attempts`-th failed attempt, the first being `first_s`.
pub fn backoff_s(first_s: i64, attempts: u32) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    (first_s.max(1) << doublings).min(MAX_BACKOFF_S)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub month: String,
    pub id: String,
    pub json: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
    pub last_error: Option<String>,
}

const ROW: &str = "SELECT month, id, json, state, attempts, next_attempt_at, created_at,
    delivered_at, last_error FROM report_outbox";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok(Row {
        month: r.get(0)?,
        id: r.get(1)?,
        json: r.get(2)?,
        state: r.get(3)?,
        attempts: r.get(4)?,
        next_attempt_at: r.get(5)?,
        created_at: r.get(6)?,
        delivered_at: r.get(7)?,
        last_error: r.get(8)?,
    })
}

/// When the family opted in (Unix seconds), if it has.
pub fn opted_in_at(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT value FROM report_setting WHERE key = 'report_opt_in'",
        [],
        |r| r.get::<_, String>(0),
    )
    .optional()
    .map(|v| v.and_then(|v| v.parse().ok()))
}

/// The family's choice (the page will flip it; until then the CLI or a test does).
pub fn set_opt_in(conn: &Connection, on: bool, now_s: i64) -> rusqlite::Result<()> {
    if on {
        conn.execute(
            "INSERT OR IGNORE INTO report_setting (key, value) VALUES ('report_opt_in', ?1)",
            params![now_s.to_string()],
        )?;
    } else {
        conn.execute("DELETE FROM report_setting WHERE key = 'report_opt_in'", [])?;
    }
    Ok(())
}

/// The family's choice with its audit entry, in one transaction; `false` when nothing changed
/// (nothing is logged then). `by` is who chose (the CLI, a server admin on the page).
pub fn choose(
    conn: &mut Connection,
    on: bool,
    by: crate::audit::NewEntry,
    now_s: i64,
) -> Result<bool, crate::audit::AuditError> {
    let path = conn.path().unwrap_or_default().to_string();
    let sql = |source| crate::audit::AuditError::Sql {
        path: path.clone(),
        source,
    };
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    if opted_in_at(&tx).map_err(sql)?.is_some() == on {
        return Ok(false);
    }
    set_opt_in(&tx, on, now_s).map_err(sql)?;
    crate::audit::append(&tx, &by.detail("report", if on { "on" } else { "off" }))?;
    tx.commit().map_err(sql)?;
    Ok(true)
}

/// What `hearth-supervisor report status` prints: the choice, each month's report, the tokens.
pub fn status_text(conn: &Connection, enabled: bool) -> rusqlite::Result<String> {
    use std::fmt::Write;
    let time = |s: i64| {
        chrono::DateTime::from_timestamp(s, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_else(|| s.to_string())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "allowed by the configuration: {}",
        if enabled {
            "yes"
        } else {
            "no ([report] enabled = false)"
        }
    );
    let _ = match opted_in_at(conn)? {
        Some(at) => writeln!(out, "the family's choice: on since {}", time(at)),
        None => writeln!(out, "the family's choice: off"),
    };
    let _ = writeln!(out, "unused tokens: {}", unused_tokens_any(conn)?);
    for r in all(conn)? {
        let _ = match r.state.as_str() {
            "delivered" => writeln!(
                out,
                "{}: delivered {} (after {} attempts)",
                r.month,
                r.delivered_at.map(time).unwrap_or_default(),
                r.attempts
            ),
            state => writeln!(
                out,
                "{}: {state}, next attempt {}, {} attempts{}",
                r.month,
                time(r.next_attempt_at),
                r.attempts,
                r.last_error
                    .as_deref()
                    .map(|e| format!(", last: {e}"))
                    .unwrap_or_default()
            ),
        };
    }
    Ok(out)
}

pub fn get(conn: &Connection, month: &str) -> rusqlite::Result<Option<Row>> {
    conn.query_row(&format!("{ROW} WHERE month = ?1"), params![month], row)
        .optional()
}

pub fn all(conn: &Connection) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare(&format!("{ROW} ORDER BY month"))?;
    let rows = st.query_map([], row)?;
    rows.collect()
}

/// Rows not yet delivered whose next attempt is due, oldest month first.
pub fn due(conn: &Connection, now_s: i64) -> rusqlite::Result<Vec<Row>> {
    let mut st = conn.prepare(&format!(
        "{ROW} WHERE state != 'delivered' AND next_attempt_at <= ?1 ORDER BY month"
    ))?;
    let rows = st.query_map(params![now_s], row)?;
    rows.collect()
}

/// The month whose report is made during the month containing `now_s`: the one before.
pub fn month_to_report(now_s: i64) -> Option<Period> {
    let (_, start, _) = crate::storage::month_of(now_s)?;
    let (label, _, _) = crate::storage::month_of(start - 1)?;
    Period::parse_month(&label).ok()
}

/// What a tick of the outbox did.
#[derive(Debug, Clone, PartialEq)]
pub enum Tick {
    /// The family has not opted in (or the month ended before it did).
    NotOptedIn,
    /// The month's report is not due yet.
    Waiting { month: String, due_at: i64 },
    /// The month's report was made now.
    Made { month: String },
    /// It was made before (possibly: the clock passed the boundary twice).
    AlreadyMade { month: String },
}

/// Makes the previous month's report once it is due. `offset_draw` is a uniform draw in (0, 1)
/// for the schedule (used only the first time the month is looked at); `make` builds the draft
/// (the IO of `gather` and one noise draw) and is called only when a report is made.
pub fn tick<E: From<rusqlite::Error>>(
    conn: &Connection,
    now_s: i64,
    offset_draw: f64,
    make: impl FnOnce(&Period) -> Result<Draft, E>,
) -> Result<Tick, E> {
    let Some(period) = month_to_report(now_s) else {
        return Ok(Tick::NotOptedIn);
    };
    let month = period.label().to_string();
    match opted_in_at(conn)? {
        Some(at) if at < period.end_s() => {}
        _ => return Ok(Tick::NotOptedIn),
    }
    if get(conn, &month)?.is_some() {
        return Ok(Tick::AlreadyMade { month });
    }
    let offset = ((offset_draw.clamp(0.0, 1.0) * WINDOW_S as f64) as i64).min(WINDOW_S - 1);
    conn.execute(
        "INSERT OR IGNORE INTO report_schedule (month, due_at) VALUES (?1, ?2)",
        params![month, period.end_s() + offset],
    )?;
    let due_at: i64 = conn.query_row(
        "SELECT due_at FROM report_schedule WHERE month = ?1",
        params![month],
        |r| r.get(0),
    )?;
    if now_s < due_at {
        return Ok(Tick::Waiting { month, due_at });
    }
    let draft = make(&period)?;
    let json = serde_json::to_string(&draft)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    let n = conn.execute(
        "INSERT OR IGNORE INTO report_outbox (month, id, json, state, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, 'draft', ?4, ?4)",
        params![month, draft.id, json, now_s],
    )?;
    Ok(if n == 1 {
        Tick::Made { month }
    } else {
        Tick::AlreadyMade { month }
    })
}

/// Keeps freshly unblinded tokens.
pub fn store_tokens(
    conn: &mut Connection,
    tokens: &[report_wire::Token],
    now_s: i64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for t in tokens {
        let json = serde_json::to_string(t)
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        tx.execute(
            "INSERT OR IGNORE INTO report_token (msg, key_id, json, obtained_at) VALUES (?1, ?2, ?3, ?4)",
            params![t.msg, t.key_id, json, now_s],
        )?;
    }
    tx.commit()
}

/// Unused tokens of `key_id`.
pub fn unused_tokens(conn: &Connection, key_id: &str) -> rusqlite::Result<usize> {
    conn.query_row(
        "SELECT COUNT(*) FROM report_token WHERE key_id = ?1 AND used_by IS NULL",
        params![key_id],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// Attaches an unused token of `key_id` to the month's draft, in one transaction: the report's
/// exact bytes and the token's use are committed together, so a token is never used twice and a
/// report never re-signed. Returns the report, or `None` without a token.
pub fn attach_token(
    conn: &mut Connection,
    month: &str,
    key_id: &str,
) -> rusqlite::Result<Option<report_wire::Report>> {
    let tx = conn.transaction()?;
    let found: Option<(String, String)> = tx
        .query_row(
            "SELECT msg, json FROM report_token WHERE key_id = ?1 AND used_by IS NULL
             ORDER BY obtained_at, msg LIMIT 1",
            params![key_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((msg, token_json)) = found else {
        return Ok(None);
    };
    let draft_json: String = tx.query_row(
        "SELECT json FROM report_outbox WHERE month = ?1 AND state = 'draft'",
        params![month],
        |r| r.get(0),
    )?;
    let bad = |e: serde_json::Error| rusqlite::Error::ToSqlConversionFailure(Box::new(e));
    let draft: Draft = serde_json::from_str(&draft_json).map_err(bad)?;
    let token: report_wire::Token = serde_json::from_str(&token_json).map_err(bad)?;
    let report = draft.with_token(token);
    let json = serde_json::to_string(&report).map_err(bad)?;
    tx.execute(
        "UPDATE report_outbox SET json = ?2, state = 'ready' WHERE month = ?1",
        params![month, json],
    )?;
    tx.execute(
        "UPDATE report_token SET used_by = ?2 WHERE msg = ?1",
        params![msg, month],
    )?;
    tx.commit()?;
    Ok(Some(report))
}

pub fn mark_delivered(conn: &Connection, month: &str, now_s: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE report_outbox SET state = 'delivered', delivered_at = ?2, last_error = NULL,
         attempts = attempts + 1 WHERE month = ?1 AND state != 'delivered'",
        params![month, now_s],
    )?;
    Ok(())
}

/// Counts a failed attempt and sets the next one after [`backoff_s`] (`first_s`: the first
/// retry's wait).
pub fn mark_failed(
    conn: &Connection,
    month: &str,
    now_s: i64,
    error: &str,
    first_s: i64,
) -> rusqlite::Result<i64> {
    let attempts: u32 = conn.query_row(
        "SELECT attempts FROM report_outbox WHERE month = ?1",
        params![month],
        |r| r.get(0),
    )?;
    let next = now_s + backoff_s(first_s, attempts + 1);
    conn.execute(
        "UPDATE report_outbox SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
         WHERE month = ?1 AND state != 'delivered'",
        params![month, next, error],
    )?;
    Ok(next)
}

/// Moves a report's next attempt to `at` without counting an attempt (it waits for its token to
/// age, see `send`).
pub fn postpone(conn: &Connection, month: &str, at: i64, why: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE report_outbox SET next_attempt_at = ?2, last_error = ?3
         WHERE month = ?1 AND state != 'delivered'",
        params![month, at, why],
    )?;
    Ok(())
}

/// A value the sender keeps between passes (`report_setting`).
pub fn setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT value FROM report_setting WHERE key = ?1",
        params![key],
        |r| r.get(0),
    )
    .optional()
}

pub fn set_setting(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO report_setting (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// Unused tokens of any key.
pub fn unused_tokens_any(conn: &Connection) -> rusqlite::Result<usize> {
    conn.query_row(
        "SELECT COUNT(*) FROM report_token WHERE used_by IS NULL",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// When the month's report is due to be made, if the schedule has been drawn.
pub fn scheduled(conn: &Connection, month: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT due_at FROM report_schedule WHERE month = ?1",
        params![month],
        |r| r.get(0),
    )
    .optional()
}

/// The earliest next attempt of a report not yet delivered.
pub fn next_attempt(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT MIN(next_attempt_at) FROM report_outbox WHERE state != 'delivered'",
        [],
        |r| r.get(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    fn draft(id: &str, month: &str) -> Draft {
        let mut d = crate::report::build(
            &crate::report::Inputs {
                month: month.into(),
                month_hours: 720.0,
                measured_wh: 3000.0,
                measured_s: 0.0,
                hardware: report_wire::Hardware::Pi4,
                members: 3,
                synapse_version: Some("1.139.0".into()),
                supplier: None,
                epsilon: 1.0,
                id: id.into(),
            },
            0.3,
        );
        d.id = id.into();
        d
    }

    const NOV_1: i64 = 1_793_491_200; // 2026-11-01T00:00:00Z
    const DEC_1: i64 = 1_796_083_200; // 2026-12-01T00:00:00Z

    fn open(dir: &tempfile::TempDir) -> Storage {
        Storage::open(&dir.path().join("hearth.db")).unwrap()
    }

    fn tick_at(s: &mut Storage, now: i64, draw: f64, made: &mut u32) -> Tick {
        tick::<rusqlite::Error>(s.connection(), now, draw, |p| {
            *made += 1;
            Ok(draft(&format!("{:032x}", now), p.label()))
        })
        .unwrap()
    }

    #[test]
    fn months_are_what_the_test_thinks() {
        assert_eq!(month_to_report(DEC_1).unwrap().label(), "2026-11");
        assert_eq!(month_to_report(DEC_1 - 1).unwrap().label(), "2026-10");
        assert_eq!(crate::storage::month_of(NOV_1).unwrap().0, "2026-11");
    }

    #[test]
    fn nothing_without_opt_in_and_nothing_for_months_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        let mut made = 0;
        assert_eq!(
            tick_at(&mut s, DEC_1 + 5 * 86_400, 0.5, &mut made),
            Tick::NotOptedIn
        );
        // Opting in on 5 December: November's report is not made, December's will be.
        set_opt_in(s.connection(), true, DEC_1 + 5 * 86_400).unwrap();
        assert_eq!(
            tick_at(&mut s, DEC_1 + 6 * 86_400, 0.5, &mut made),
            Tick::NotOptedIn
        );
        assert_eq!(made, 0);
        assert!(all(s.connection()).unwrap().is_empty());
    }

    #[test]
    fn made_once_at_the_stored_random_hour_even_when_the_clock_jumps() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        set_opt_in(s.connection(), true, NOV_1 + 3600).unwrap();
        let mut made = 0;
        // The draw 0.5 puts November's report 36 h into December.
        let due = DEC_1 + 36 * 3600;
        assert_eq!(
            tick_at(&mut s, DEC_1 + 60, 0.5, &mut made),
            Tick::Waiting {
                month: "2026-11".into(),
                due_at: due
            }
        );
        // A later tick with another draw does not move the schedule.
        assert_eq!(
            tick_at(&mut s, DEC_1 + 120, 0.01, &mut made),
            Tick::Waiting {
                month: "2026-11".into(),
                due_at: due
            }
        );
        assert_eq!(made, 0, "nothing is looked at before it is due");
        assert_eq!(
            tick_at(&mut s, due, 0.9, &mut made),
            Tick::Made {
                month: "2026-11".into()
            }
        );
        // The clock jumps back into November (October is before the opt-in: nothing) and
        // forward over the boundary again: still the one report.
        assert_eq!(
            tick_at(&mut s, DEC_1 - 600, 0.5, &mut made),
            Tick::NotOptedIn
        );
        assert_eq!(
            tick_at(&mut s, due + 3600, 0.5, &mut made),
            Tick::AlreadyMade {
                month: "2026-11".into()
            }
        );
        assert_eq!(made, 1);
        let rows = all(s.connection()).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, "draft");
        // A restart finds it as it was.
        drop(s);
        let s = open(&dir);
        assert_eq!(all(s.connection()).unwrap(), rows);
        assert_eq!(due_rows(&s, due), 1);
    }

    fn due_rows(s: &Storage, now: i64) -> usize {
        due(s.connection(), now).unwrap().len()
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_twelve_hours() {
        let got: Vec<i64> = (1..=12).map(|n| backoff_s(FIRST_BACKOFF_S, n)).collect();
        assert_eq!(
            got,
            [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 30720, 43200, 43200]
        );
        assert_eq!(backoff_s(FIRST_BACKOFF_S, 1000), MAX_BACKOFF_S);
        assert_eq!(backoff_s(2, 3), 8);
    }

    #[test]
    fn failures_wait_and_delivery_is_final() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        set_opt_in(s.connection(), true, NOV_1).unwrap();
        let mut made = 0;
        let now = DEC_1 + WINDOW_S;
        assert!(matches!(
            tick_at(&mut s, now, 0.0, &mut made),
            Tick::Made { .. }
        ));
        let next = mark_failed(s.connection(), "2026-11", now, "connection refused", 60).unwrap();
        assert_eq!(next, now + 60);
        assert_eq!(due_rows(&s, now + 59), 0);
        assert_eq!(due_rows(&s, now + 60), 1);
        let next = mark_failed(s.connection(), "2026-11", now + 60, "503", 60).unwrap();
        assert_eq!(next, now + 60 + 120);
        let row = get(s.connection(), "2026-11").unwrap().unwrap();
        assert_eq!((row.attempts, row.last_error.as_deref()), (2, Some("503")));
        mark_delivered(s.connection(), "2026-11", now + 200).unwrap();
        // Delivered is final: a late failure report changes nothing, nothing is due again.
        mark_failed(s.connection(), "2026-11", now + 300, "late", 60).unwrap();
        let row = get(s.connection(), "2026-11").unwrap().unwrap();
        assert_eq!(row.state, "delivered");
        assert_eq!(row.delivered_at, Some(now + 200));
        assert_eq!(due_rows(&s, i64::MAX), 0);
    }

    #[test]
    fn a_token_is_attached_once_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        set_opt_in(s.connection(), true, NOV_1).unwrap();
        let mut made = 0;
        tick_at(&mut s, DEC_1 + WINDOW_S, 0.0, &mut made);
        let token = crate::report::tests::format_token();
        // No token yet: the draft stays a draft.
        assert_eq!(
            attach_token(s.connection_mut(), "2026-11", &token.key_id).unwrap(),
            None
        );
        store_tokens(s.connection_mut(), std::slice::from_ref(&token), DEC_1).unwrap();
        assert_eq!(unused_tokens(s.connection(), &token.key_id).unwrap(), 1);
        let report = attach_token(s.connection_mut(), "2026-11", &token.key_id)
            .unwrap()
            .unwrap();
        assert_eq!(report.token, token);
        report.check().unwrap();
        assert_eq!(unused_tokens(s.connection(), &token.key_id).unwrap(), 0);
        let row = get(s.connection(), "2026-11").unwrap().unwrap();
        assert_eq!(row.state, "ready");
        // The stored bytes are the report, noise and id as drawn when it was made.
        assert_eq!(report_wire::parse(row.json.as_bytes()).unwrap(), report);
        assert_eq!(report.id, row.id);
    }
}
