//! What the supervisor needs from a service manager, behind one trait: [`UnitControl`].
//!
//! Two backends: `systemd.rs` (systemd's D-Bus API; the only module that knows D-Bus) and
//! `process.rs` (spawns Synapse itself, for `make run` on a machine without systemd). Both report
//! the same [`UnitStatus`] so the health state machine cannot tell them apart.

use serde::Serialize;
use std::future::Future;
use tokio::sync::mpsc;

/// systemd's `ActiveState` of a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    Unknown,
}

impl ActiveState {
    pub fn parse(s: &str) -> ActiveState {
        match s {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "maintenance" => Self::Maintenance,
            "refreshing" => Self::Refreshing,
            _ => Self::Unknown,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Reloading => "reloading",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Maintenance => "maintenance",
            Self::Refreshing => "refreshing",
            Self::Unknown => "unknown",
        }
    }
}

/// A unit's state as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitStatus {
    pub active: ActiveState,
    /// systemd's `SubState` (`running`, `auto-restart`, `start`, `dead`, `failed`, `exited`, …).
    pub sub: String,
    /// The service's `NRestarts` (automatic restarts by the service manager).
    pub n_restarts: u32,
    /// The main process, 0 when none.
    pub main_pid: u32,
    /// systemd holds a job for the unit (its `Job` property): at boot, a start queued behind
    /// the units it is ordered after (first boot, the database) — starting, not down.
    pub queued: bool,
}

impl UnitStatus {
    pub fn unknown() -> Self {
        Self {
            active: ActiveState::Unknown,
            sub: String::new(),
            n_restarts: 0,
            main_pid: 0,
            queued: false,
        }
    }
}

/// What `watch` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEvent {
    /// A watched unit's status, after a change (and once for every unit when watching starts
    /// or the connection comes back).
    Status { unit: String, status: UnitStatus },
    /// The connection to the service manager is lost (dbus-daemon restarted); statuses are stale
    /// until `Connected`.
    Disconnected { reason: String },
    /// (Re)connected and subscribed; fresh `Status` events for every unit follow.
    Connected,
}

/// How a start/restart job ended (systemd's `JobRemoved` result).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    Canceled,
    Timeout,
    Failed,
    Dependency,
    Skipped,
    Other(String),
}

impl JobOutcome {
    pub fn parse(s: &str) -> JobOutcome {
        match s {
            "done" => Self::Done,
            "canceled" => Self::Canceled,
            "timeout" => Self::Timeout,
            "failed" => Self::Failed,
            "dependency" => Self::Dependency,
            "skipped" => Self::Skipped,
            other => Self::Other(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error("service manager: {0}")]
    Bus(String),
    #[error("{unit}: access denied: {detail}")]
    Denied { unit: String, detail: String },
    #[error("{0}: no such unit")]
    NoSuchUnit(String),
    #[error("{unit}: the job did not finish within {secs} s")]
    JobTimeout { unit: String, secs: u64 },
}

/// Control of the service manager's units.
///
/// `restart` and `start` wait for their job to finish (systemd: listening for `JobRemoved`
/// before calling, then matching the job's object path). `watch` is a long-running future the
/// owner spawns: it sends events until its receiver is dropped, reconnecting by itself when the
/// connection is lost.
pub trait UnitControl: Send + Sync + 'static {
    fn status(&self, unit: &str) -> impl Future<Output = Result<UnitStatus, UnitError>> + Send;
    fn restart(&self, unit: &str) -> impl Future<Output = Result<JobOutcome, UnitError>> + Send;
    fn start(&self, unit: &str) -> impl Future<Output = Result<JobOutcome, UnitError>> + Send;
    fn reset_failed(&self, unit: &str) -> impl Future<Output = Result<(), UnitError>> + Send;
    fn watch(
        &self,
        units: Vec<String>,
        events: mpsc::Sender<UnitEvent>,
    ) -> impl Future<Output = ()> + Send;
}

/// Starting one unit and waiting for its job, behind `dyn` (the page holds it without knowing
/// the backend): `/setup` starts `hearth-name@<name>.service` through it.
pub trait StartUnit: Send + Sync {
    fn start_unit<'a>(
        &'a self,
        unit: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<JobOutcome, UnitError>>;
}

impl<U: UnitControl> StartUnit for U {
    fn start_unit<'a>(
        &'a self,
        unit: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<JobOutcome, UnitError>> {
        Box::pin(self.start(unit))
    }
}
