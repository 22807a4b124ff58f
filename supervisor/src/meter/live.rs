//! The daemon's live view of the meter, shared by the sampler thread (writes), the flusher
//! (moves pending minutes to the database) and the HTTP handlers (read a snapshot, including
//! the last hour per minute for the page's chart).
//!
//! Critical sections are a few field updates; nothing here does IO.

use super::buckets::Minutes;
use super::integrator::{Gap, Piece, Sink};
use super::recent::RecentMinutes;
use super::Observer;
use crate::power::{Sample, SensorError, SensorKind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Energy sums the status page shows, from the database (`Storage::sums`). Defined here, not in
/// storage/, so that meter/ imports nothing from storage/ (storage stores meter's types).
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct EnergySums {
    pub since_day_wh: f64,
    pub since_month_wh: f64,
    pub lifetime_wh: f64,
    pub lifetime_estimated_wh: f64,
}

/// The sensor as the status page reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum SensorState {
    /// No conversion yet.
    Starting,
    Ok,
    Fault {
        reason: String,
        since_ms: i64,
    },
}

impl LiveMeter {
    /// The sensor is not on this board: its reads fail and its device node does not exist (a
    /// family that has not wired the INA219; QEMU). A state the page explains, not a fault.
    pub fn sensor_absent(&self) -> bool {
        matches!(self.state, SensorState::Fault { .. })
            && self.device_node.as_ref().is_some_and(|p| !p.exists())
    }

    /// The sensor is there and failing: the LED's business.
    pub fn sensor_fault(&self) -> bool {
        matches!(self.state, SensorState::Fault { .. }) && !self.sensor_absent()
    }
}

#[derive(Debug, Clone)]
pub struct LiveMeter {
    pub kind: SensorKind,
    pub location: String,
    /// The device node the sensor needs (`/dev/i2c-1`, the hwmon directory): a fault while it
    /// does not exist is reported as "absent" (no sensor on this board, e.g. under QEMU).
    pub device_node: Option<std::path::PathBuf>,
    pub state: SensorState,
    pub latest: Option<Sample>,
    /// Minutes not yet written.
    pub pending: Minutes,
    /// Minutes being written right now (still counted in the totals).
    pub in_flight: Minutes,
    /// Closed gaps not yet written.
    pub gaps: Vec<Gap>,
    /// The last hour per minute, for the status page's chart (never flushed, never read back).
    pub recent: RecentMinutes,
    /// Sums from the database as of the last write, for `day_start_s` / `month_start_s`.
    pub stored: EnergySums,
    pub day_start_s: i64,
    pub month_start_s: i64,
    pub samples: u64,
    pub gap_count: u64,
}

/// What the status API shows about energy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EnergyView {
    pub today_wh: f64,
    pub month_wh: f64,
    pub lifetime_wh: f64,
}

impl LiveMeter {
    pub fn new(kind: SensorKind, location: String) -> Self {
        Self {
            kind,
            location,
            device_node: None,
            state: SensorState::Starting,
            latest: None,
            pending: Minutes::default(),
            in_flight: Minutes::default(),
            gaps: Vec::new(),
            recent: RecentMinutes::default(),
            stored: EnergySums::default(),
            day_start_s: 0,
            month_start_s: 0,
            samples: 0,
            gap_count: 0,
        }
    }

    pub fn energy(&self) -> EnergyView {
        let unstored =
            |from: i64| self.pending.energy_since(from) + self.in_flight.energy_since(from);
        EnergyView {
            today_wh: self.stored.since_day_wh + unstored(self.day_start_s),
            month_wh: self.stored.since_month_wh + unstored(self.month_start_s),
            lifetime_wh: self.stored.lifetime_wh + self.pending.energy() + self.in_flight.energy(),
        }
    }
}

/// The handle everyone shares.
#[derive(Debug, Clone)]
pub struct Shared {
    inner: Arc<Mutex<LiveMeter>>,
    /// Monotonic ms of the sampling loop's last iteration: the watchdog feeds on it.
    heartbeat_ms: Arc<AtomicU64>,
}

impl Shared {
    pub fn new(meter: LiveMeter) -> Self {
        Self {
            inner: Arc::new(Mutex::new(meter)),
            heartbeat_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lock the state. A panic elsewhere while holding the lock must not take the page down:
    /// the data is plain values, so a poisoned lock is simply used.
    pub fn lock(&self) -> MutexGuard<'_, LiveMeter> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn heartbeat(&self) -> u64 {
        self.heartbeat_ms.load(Ordering::Relaxed)
    }

    /// The sampler's observer, which stamps heartbeats with `now_ms()`.
    pub fn observer(
        &self,
        now_ms: Box<dyn Fn() -> u64 + Send>,
        wall_ms: Box<dyn Fn() -> i64 + Send>,
    ) -> LiveObserver {
        LiveObserver {
            shared: self.clone(),
            now_ms,
            wall_ms,
        }
    }
}

pub struct LiveObserver {
    shared: Shared,
    now_ms: Box<dyn Fn() -> u64 + Send>,
    wall_ms: Box<dyn Fn() -> i64 + Send>,
}

impl Sink for LiveObserver {
    fn piece(&mut self, piece: Piece) {
        let mut m = self.shared.lock();
        m.pending.add(&piece);
        m.recent.add(&piece);
    }
    fn gap(&mut self, gap: Gap) {
        let mut m = self.shared.lock();
        m.gap_count += 1;
        m.gaps.push(gap);
    }
}

impl Observer for LiveObserver {
    fn sample(&mut self, sample: &Sample) {
        let mut m = self.shared.lock();
        m.latest = Some(*sample);
        m.samples += 1;
        m.state = SensorState::Ok;
    }
    fn fault(&mut self, error: &SensorError) {
        let wall = (self.wall_ms)();
        let mut m = self.shared.lock();
        let reason = error.to_string();
        match &m.state {
            SensorState::Fault { reason: r, .. } if *r == reason => {}
            SensorState::Fault { since_ms, .. } => {
                let since_ms = *since_ms;
                m.state = SensorState::Fault { reason, since_ms };
            }
            _ => {
                m.state = SensorState::Fault {
                    reason,
                    since_ms: wall,
                }
            }
        }
    }
    fn alive(&mut self) {
        self.shared
            .heartbeat_ms
            .store((self.now_ms)(), Ordering::Relaxed);
    }
}
