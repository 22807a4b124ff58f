//! The daemon's side of accounting: what reads the world for the pure model in `accounting/`.
//!
//! ```text
//! journal (journalctl --output=json) ── journal.rs ─┐
//! process backend output ─────────── output.rs ─────┤ Pending (MinuteWeights, shares, cursor)
//! /proc/stat, cgroup cpu.stat, /proc/<pid>/stat ── cpu.rs ┘        │ drained by the meter's flush
//!                                                                  ▼ (one transaction with the power minutes)
//!                          storage: acct_minute, acct_weight, journal_cursor
//!                                                                  │
//!  close.rs: month over and flushed → accounting::inputs → statement (frozen, with inputs_sha256)
//! ```
//!
//! Nothing is written per request: lines are summed per minute and requester in memory
//! ([`Pending`]) and the meter's flusher takes everything at once ([`SharedPending::take`]) into
//! the same transaction as its power minutes, with the journal cursor of the last line taken.
//! After a crash the reader resumes after that cursor: lines in memory but not committed are
//! read again, committed ones are not.
//!
//! - `members.rs`: [`members::MemberSource`], who the members of a period are.
//! - `journal.rs`: the journal reader (a `journalctl` child) and its JSON entries.
//! - `output.rs`: the process backend's output lines.
//! - `cpu.rs`: the Matrix service's share of busy CPU time per minute.
//! - `close.rs`: statements from stored inputs; the monthly close; recomputing a closed month.
//! - `view.rs`: a month as the page shows it (frozen or so far) with its days.

pub mod close;
pub mod cpu;
pub mod journal;
pub mod members;
pub mod output;
pub mod view;

use crate::accounting::accesslog::MinuteWeights;
use crate::storage::AcctBatch;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Accounting inputs read since the last batch.
#[derive(Debug, Default)]
pub struct Pending {
    pub weights: MinuteWeights,
    /// s_i per minute start (Unix seconds).
    pub shares: BTreeMap<i64, f64>,
    /// `(unit, cursor)` of the last journal entry whose line is in `weights`.
    pub cursor: Option<(String, String)>,
    /// How far (wall ms) the access-log source has delivered every line: the journal reader
    /// sets it (`i64::MIN` until it first reaches the journal's end; it may be reading a
    /// backlog); `None` for a live source that is never behind.
    pub caught_up_ms: Option<i64>,
    /// Every input up to this wall time (ms) is committed: the monthly close waits for it.
    pub persisted_through_ms: Option<i64>,
}

/// [`Pending`], shared between the readers, the flusher and the close.
#[derive(Debug, Clone, Default)]
pub struct SharedPending(Arc<Mutex<Pending>>);

impl SharedPending {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        // A reader that panicked left consistent data (every update is a few field writes).
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take everything for a batch at wall time `now_ms`; also returns the wall time up to which
    /// the batch completes the inputs (hand it to [`committed`](Self::committed) once written).
    pub fn take(&self, now_ms: i64) -> (AcctBatch, i64) {
        let mut p = self.lock();
        let through = p.caught_up_ms.map_or(now_ms, |c| c.min(now_ms));
        let batch = AcctBatch {
            weights: p.weights.drain_all(),
            shares: std::mem::take(&mut p.shares).into_iter().collect(),
            cursor: p.cursor.take(),
        };
        (batch, through)
    }

    /// The batch was written.
    pub fn committed(&self, through_ms: i64) {
        let mut p = self.lock();
        p.persisted_through_ms = Some(
            p.persisted_through_ms
                .map_or(through_ms, |t| t.max(through_ms)),
        );
    }

    /// Writing the batch failed: put it back (adding to what came in since; a newer share or
    /// cursor wins).
    pub fn restore(&self, batch: AcctBatch) {
        let mut p = self.lock();
        p.weights.restore(batch.weights);
        for (m, s) in batch.shares {
            p.shares.entry(m).or_insert(s);
        }
        if p.cursor.is_none() {
            p.cursor = batch.cursor;
        }
    }
}

/// Wall-clock Unix ms of a journal `__REALTIME_TIMESTAMP` (µs).
fn realtime_ms(us: u64) -> i64 {
    i64::try_from(us / 1000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "2026-11-26 10:00:00,123 - synapse.access.http.8008 - 123 - INFO - GET-42 - 127.0.0.1 - 8008 - {@alice:example.org} Processed request: 0.004sec/0.001sec ru=(0.003sec, 0.001sec) db=(0.000sec/0.002sec/3) 120B 200 \"GET /_matrix/client/v3/sync HTTP/1.1\" \"Element\" [0 dbevts]";

    #[test]
    fn a_failed_batch_goes_back_and_the_newer_cursor_wins() {
        let p = SharedPending::new();
        {
            let mut g = p.lock();
            g.weights.ingest_line(LINE).unwrap();
            g.cursor = Some(("u".into(), "c1".into()));
            g.shares.insert(60, 0.5);
            g.caught_up_ms = Some(1_000);
        }
        let (batch, through) = p.take(5_000);
        assert_eq!(through, 1_000, "not past what the journal delivered");
        assert_eq!(batch.weights.len(), 1);
        {
            let mut g = p.lock();
            g.weights.ingest_line(LINE).unwrap();
            g.cursor = Some(("u".into(), "c2".into()));
        }
        p.restore(batch);
        let (again, _) = p.take(6_000);
        assert_eq!(again.weights[0].total_ms, 12, "both lines, once each");
        assert_eq!(again.cursor, Some(("u".into(), "c2".into())));
        assert_eq!(again.shares, vec![(60, 0.5)]);
        assert_eq!(p.lock().persisted_through_ms, None);
        p.committed(6_000);
        assert_eq!(p.lock().persisted_through_ms, Some(6_000));
    }
}
