//! The flusher: the meter's finished minutes, its gaps and the accounting inputs (with the
//! journal's cursor) go to the database in one transaction every `flush_interval`, off the
//! async workers; the page's day and month sums follow local midnight. What cannot be written
//! stays in memory and goes with the next batch (never lost while the daemon runs).

use crate::accountant::SharedPending;
use crate::clock::wall_ms_now;
use crate::meter::live::Shared;
use crate::storage::Storage;
use chrono::{Datelike, Local, TimeZone};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Local midnight today and local midnight on the first of this month, as Unix seconds.
pub fn day_and_month_start(now_ms: i64) -> (i64, i64) {
    let now = match Local.timestamp_millis_opt(now_ms).earliest() {
        Some(t) => t,
        None => return (0, 0),
    };
    let midnight = |d: chrono::NaiveDate| {
        d.and_hms_opt(0, 0, 0)
            .and_then(|n| Local.from_local_datetime(&n).earliest())
            .map_or(0, |t| t.timestamp())
    };
    let day = midnight(now.date_naive());
    let month = now.date_naive().with_day(1).map_or(day, midnight);
    (day, month)
}

/// Write pending minutes, gaps and accounting inputs (with the journal cursor) in one
/// transaction; on failure they go back into the pending sets (never lost while the daemon
/// runs). Whether the batch was written.
pub fn flush(
    meter: &Shared,
    acct: &SharedPending,
    storage: &Mutex<Storage>,
    prune_before: Option<i64>,
) -> bool {
    let now_ms = wall_ms_now();
    let (batch, gaps) = {
        let mut m = meter.lock();
        let batch = m.pending.take();
        m.in_flight = batch.clone();
        (batch, std::mem::take(&mut m.gaps))
    };
    let (acct_batch, through_ms) = acct.take(now_ms);
    let mut db = storage.lock().unwrap_or_else(|p| p.into_inner());
    let (day, month) = day_and_month_start(wall_ms_now());
    let written = db.write_batch_with(&batch, &gaps, &acct_batch);
    if let Some(before) = prune_before {
        if let Err(e) = db.prune_minutes(before) {
            tracing::warn!("pruning old minutes: {e}");
        }
    }
    let sums = db.sums(day, month);
    drop(db);
    let mut m = meter.lock();
    m.in_flight = Default::default();
    let ok = written.is_ok();
    match written {
        Ok(late) => {
            tracing::debug!(minutes = batch.len(), gaps = gaps.len(), "batch written");
            if late > 0 {
                tracing::warn!(
                    minutes = late,
                    "accounting inputs for months already closed were left out"
                );
            }
            acct.committed(through_ms);
        }
        Err(e) => {
            tracing::error!("writing the meter batch failed, keeping it in memory: {e}");
            acct.restore(acct_batch);
            m.pending.merge(batch);
            let mut gaps = gaps;
            gaps.append(&mut m.gaps);
            m.gaps = gaps;
        }
    }
    match sums {
        Ok(s) => {
            m.stored = s;
            m.day_start_s = day;
            m.month_start_s = month;
        }
        Err(e) => tracing::warn!("reading energy sums: {e}"),
    }
    ok
}

/// Flush every `every` (pruning minutes older than `retention_s` once an hour) and move the
/// day's and month's sums on at their boundaries, until `cancel`. The last flush is the
/// owner's, after every writer has stopped.
pub async fn run(
    meter: Shared,
    acct: SharedPending,
    storage: Arc<Mutex<Storage>>,
    every: Duration,
    retention_s: i64,
    cancel: CancellationToken,
) {
    let mut flush_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut boundary_tick = tokio::time::interval(Duration::from_secs(30));
    let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(7200);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = flush_tick.tick() => {
                let prune = (last_prune.elapsed() > Duration::from_secs(3600)).then(|| {
                    last_prune = tokio::time::Instant::now();
                    wall_ms_now() / 1000 - retention_s
                });
                let (m, a, s) = (meter.clone(), acct.clone(), storage.clone());
                let _ = tokio::task::spawn_blocking(move || flush(&m, &a, &s, prune)).await;
            }
            _ = boundary_tick.tick() => {
                let (day, month) = day_and_month_start(wall_ms_now());
                let changed = { let m = meter.lock(); m.day_start_s != day || m.month_start_s != month };
                if changed {
                    let s = storage.clone();
                    let sums = tokio::task::spawn_blocking(move || {
                        s.lock().unwrap_or_else(|p| p.into_inner()).sums(day, month)
                    }).await;
                    if let Ok(Ok(sums)) = sums {
                        let mut m = meter.lock();
                        m.stored = sums;
                        m.day_start_s = day;
                        m.month_start_s = month;
                    }
                }
            }
        }
    }
}
