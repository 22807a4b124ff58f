//! systemd's watchdog (`WatchdogSec=` in hearth-supervisor.service): fed only while the
//! sampling thread is alive, so a stuck sampler (a hung I2C read, a deadlock) gets the daemon
//! restarted rather than a page that shows stale watts.

use crate::clock::SharedClock;
use crate::meter::live::Shared;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Feed the watchdog every `timeout / 3` while the meter's heartbeat is younger than half the
/// timeout, until `cancel`.
pub async fn run(timeout: Duration, meter: Shared, clock: SharedClock, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(timeout / 3);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                let age = (clock.now().as_millis() as u64).saturating_sub(meter.heartbeat());
                if u128::from(age) < timeout.as_millis() / 2 {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    tracing::error!(age_ms = age, "sampling loop stalled; not feeding the watchdog");
                }
            }
        }
    }
}
