//! Synapse's access lines from the process backend (`make run`): the child's output lines,
//! as `ProcessUnits::output` publishes them. No cursor: the child lives and dies with the
//! supervisor, and lines are read as they are written (the source is never behind).

use super::SharedPending;
use crate::clock::wall_ms_now;
use crate::health::process::OutputLine;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

/// Feed `lines` into `pending` until cancelled or the backend is gone.
pub async fn run(
    mut lines: broadcast::Receiver<OutputLine>,
    pending: SharedPending,
    token: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            _ = token.cancelled() => return,
            l = lines.recv() => l,
        };
        match line {
            Ok(l) => {
                // A whole line carries its own timestamp; a bare message gets now.
                let now_us = u64::try_from(wall_ms_now()).unwrap_or(0) * 1000;
                let _ = pending.lock().weights.ingest_journal(&l.line, now_us);
            }
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(lines = n, "the access-log reader fell behind Synapse's output; these lines are not counted");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
