//! [`UnitControl`] over systemd's D-Bus API (`org.freedesktop.systemd1`). The only module that
//! speaks D-Bus.
//!
//! What this relies on, from systemd's `org.freedesktop.systemd1(5)` and its sources
//! (`src/core/dbus-manager.c`, `dbus-unit.c`, `job.c`, `service.c`):
//!
//! - `LoadUnit(s name) -> o` returns a path even for a unit that has no unit file: the unit then
//!   has `LoadState` `not-found` (and `inactive`/`dead`). `status` reports that as
//!   [`UnitError::NoSuchUnit`]; `RestartUnit`/`StartUnit` answer such a unit with the error
//!   `org.freedesktop.systemd1.NoSuchUnit`.
//! - Most signals (`JobRemoved`, and the units' `PropertiesChanged`) are only sent while at least
//!   one client has called `Subscribe()`; systemd tracks subscribers per bus connection and keeps
//!   them across `daemon-reload`/`daemon-reexec`, and a second `Subscribe()` on the same
//!   connection fails with `org.freedesktop.systemd1.AlreadySubscribed`. So: one `Subscribe()`
//!   per connection, right after connecting.
//! - `JobRemoved(u id, o job, s unit, s result)`, result one of `done`, `canceled`, `timeout`,
//!   `failed`, `dependency`, `skipped`. A restart job is patched into a start job (same id and
//!   path) once its stop half is done, so one `JobRemoved` ends it.
//! - On a state change systemd emits `PropertiesChanged` twice on the unit's path: first for the
//!   type's interface (`org.freedesktop.systemd1.Service`: `NRestarts`, `MainPID`, ...), then for
//!   `org.freedesktop.systemd1.Unit` (`ActiveState`, `SubState`, ... in one signal); its sources
//!   promise that order so that clients can treat the pair as one change. `watch` therefore
//!   reports one status per `Unit` batch, with the `Service` values of the batch before it.
//!   Before every state change systemd flushes the pending signal of the previous state, so
//!   transient states (such as `failed`/`failed-before-auto-restart`) are seen.
//!
//! zbus stops reading a connection while any of its signal streams has a full queue (64
//! messages), method replies included; so every stream here is read continuously, and `watch`
//! never waits on its receiver while holding streams unread (see `Outbox`).

use super::unit::{ActiveState, JobOutcome, UnitControl, UnitError, UnitEvent, UnitStatus};
use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::{mpsc, Mutex};
use tokio::time::Instant;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{OwnedObjectPath, Value};
use zbus::Connection;

/// systemd's bus name.
const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const UNIT_IFACE: &str = "org.freedesktop.systemd1.Unit";
const SERVICE_IFACE: &str = "org.freedesktop.systemd1.Service";

/// How long `restart`/`start` wait for their job by default. A restart of
/// `matrix-synapse.service` is a stop (`TimeoutStopSec=60s`) and a start that ends with Synapse's
/// READY=1, after its schema migrations (`TimeoutStartSec=15min` on a Pi's SD card); systemd ends
/// the job itself within those bounds, so this only guards against a job we never hear about.
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(17 * 60);
/// Every method call (and the connection's handshake) gives up after this.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// `watch` reconnects after 0.5 s, doubling to at most 5 s while connecting keeps failing.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// `watch` pings systemd this often, and counts the connection lost if no answer comes in time.
const PING_INTERVAL: Duration = Duration::from_secs(15);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A `Service` batch is followed at once by its `Unit` batch; if none comes within this, the
/// `Service` change is reported on its own.
const SERVICE_BATCH_GRACE: Duration = Duration::from_millis(100);

const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
/// polkit's answer when authorisation would need a password prompt.
const INTERACTIVE_AUTHORIZATION_REQUIRED: &str =
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired";
const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const ALREADY_SUBSCRIBED: &str = "org.freedesktop.systemd1.AlreadySubscribed";
/// Errors meaning "systemd is not (or no longer) on the other end of this connection".
const GONE_ERRORS: &[&str] = &[
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Disconnected",
];
/// Errors reading a property the object does not have (`NRestarts` of a `.target`).
const MISSING_PROPERTY_ERRORS: &[&str] = &[
    "org.freedesktop.DBus.Error.UnknownProperty",
    "org.freedesktop.DBus.Error.UnknownInterface",
    "org.freedesktop.DBus.Error.InvalidArgs",
];

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1",
    gen_blocking = false
)]
trait Systemd1Manager {
    #[zbus(name = "Subscribe")]
    fn subscribe(&self) -> zbus::Result<()>;

    #[zbus(name = "LoadUnit")]
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "RestartUnit")]
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "StartUnit")]
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;

    #[zbus(name = "ResetFailedUnit")]
    fn reset_failed_unit(&self, name: &str) -> zbus::Result<()>;

    #[zbus(signal, name = "JobRemoved")]
    fn job_removed(
        &self,
        id: u32,
        job: zbus::zvariant::ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Systemd1Unit {
    #[zbus(property, name = "ActiveState")]
    fn active_state(&self) -> zbus::Result<String>;

    #[zbus(property, name = "SubState")]
    fn sub_state(&self) -> zbus::Result<String>;

    #[zbus(property, name = "LoadState")]
    fn load_state(&self) -> zbus::Result<String>;

    /// The unit's job: its id (0: none) and object path.
    #[zbus(property, name = "Job")]
    fn job(&self) -> zbus::Result<(u32, OwnedObjectPath)>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Systemd1Service {
    #[zbus(property, name = "NRestarts")]
    fn n_restarts(&self) -> zbus::Result<u32>;

    #[zbus(property, name = "MainPID")]
    fn main_pid(&self) -> zbus::Result<u32>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Timer",
    default_service = "org.freedesktop.systemd1",
    gen_blocking = false
)]
trait Systemd1Timer {
    /// When the timer elapses next, in µs since the Unix epoch (0: not scheduled).
    #[zbus(property, name = "NextElapseUSecRealtime")]
    fn next_elapse_usec_realtime(&self) -> zbus::Result<u64>;
}

/// Which bus to connect to.
#[derive(Debug, Clone)]
enum Bus {
    System,
    Address(String),
}

impl std::fmt::Display for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bus::System => f.write_str("the system bus"),
            Bus::Address(a) => write!(f, "the bus at {a}"),
        }
    }
}

/// The current connection, numbered so that a caller can drop exactly the one that failed it.
struct Link {
    conn: Connection,
    generation: u64,
}

#[derive(Default)]
struct Cache {
    link: Option<Link>,
    generations: u64,
}

/// systemd's units over D-Bus. Connects lazily, subscribes once per connection, and replaces
/// the connection after it fails (the dbus-daemon may be restarted under us).
pub struct SystemdUnits {
    bus: Bus,
    cache: Mutex<Cache>,
    job_timeout: Duration,
}

impl SystemdUnits {
    /// The system bus (`/run/dbus/system_bus_socket`, or `$DBUS_SYSTEM_BUS_ADDRESS`).
    pub fn system() -> Self {
        Self::new(Bus::System)
    }

    /// A bus by its D-Bus address, e.g. `unix:path=/tmp/x/bus` (tests).
    pub fn with_address(addr: &str) -> Self {
        Self::new(Bus::Address(addr.to_string()))
    }

    /// How long `restart`/`start` wait for their job ([`DEFAULT_JOB_TIMEOUT`] unless set).
    pub fn with_job_timeout(mut self, timeout: Duration) -> Self {
        self.job_timeout = timeout;
        self
    }

    fn new(bus: Bus) -> Self {
        Self {
            bus,
            cache: Mutex::new(Cache::default()),
            job_timeout: DEFAULT_JOB_TIMEOUT,
        }
    }

    /// The current connection, or a new, subscribed one.
    async fn link(&self) -> Result<Link, UnitError> {
        let mut cache = self.cache.lock().await;
        if let Some(link) = &cache.link {
            if !link.conn.is_closed() {
                return Ok(Link {
                    conn: link.conn.clone(),
                    generation: link.generation,
                });
            }
        }
        cache.link = None;
        let conn = match tokio::time::timeout(CALL_TIMEOUT, self.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(UnitError::Bus(format!("connecting to {}: {e}", self.bus))),
            Err(_) => {
                return Err(UnitError::Bus(format!(
                    "connecting to {}: no answer within {} s",
                    self.bus,
                    CALL_TIMEOUT.as_secs()
                )))
            }
        };
        cache.generations += 1;
        let generation = cache.generations;
        tracing::debug!(bus = %self.bus, generation, "connected to systemd");
        cache.link = Some(Link {
            conn: conn.clone(),
            generation,
        });
        Ok(Link { conn, generation })
    }

    async fn connect(&self) -> zbus::Result<Connection> {
        let builder = match &self.bus {
            Bus::System => zbus::connection::Builder::system()?,
            Bus::Address(a) => zbus::connection::Builder::address(a.as_str())?,
        };
        let conn = builder.method_timeout(CALL_TIMEOUT).build().await?;
        let manager = Systemd1ManagerProxy::new(&conn).await?;
        match manager.subscribe().await {
            Err(e) if error_name(&e).as_deref() == Some(ALREADY_SUBSCRIBED) => {}
            other => other?,
        }
        Ok(conn)
    }

    /// Forgets the connection `generation` (if it is still the current one): the next call
    /// connects anew.
    async fn invalidate(&self, generation: u64) {
        let mut cache = self.cache.lock().await;
        if cache.link.as_ref().map(|l| l.generation) == Some(generation) {
            tracing::debug!(generation, "dropping the bus connection");
            cache.link = None;
        }
    }

    /// Maps a failed call to our error, dropping the connection if the failure was its fault.
    async fn fail(&self, link: &Link, op: &str, unit: &str, e: zbus::Error) -> UnitError {
        if connection_failed(&e) {
            self.invalidate(link.generation).await;
        }
        unit_error(op, unit, e)
    }

    async fn run_job(&self, op: JobOp, unit: &str) -> Result<JobOutcome, UnitError> {
        let link = self.link().await?;
        let manager = match Systemd1ManagerProxy::new(&link.conn).await {
            Ok(m) => m,
            Err(e) => return Err(self.fail(&link, op.method(), unit, e).await),
        };
        // Listen before asking: the job may end before the reply reaches us.
        let mut removed = match manager.receive_job_removed().await {
            Ok(s) => s,
            Err(e) => return Err(self.fail(&link, op.method(), unit, e).await),
        };

        // Keep reading signals while the call is under way: zbus stops reading the socket (and
        // so the reply) while a stream's queue is full.
        let call = async {
            match op {
                JobOp::Restart => manager.restart_unit(unit, "replace").await,
                JobOp::Start => manager.start_unit(unit, "replace").await,
            }
        };
        tokio::pin!(call);
        let mut early = Vec::new();
        let mut open = true;
        let job = loop {
            tokio::select! {
                reply = &mut call => break reply,
                signal = removed.next(), if open => match signal {
                    Some(signal) => early.push(signal),
                    None => open = false,
                },
            }
        };
        let job = match job {
            Ok(job) => job,
            Err(e) => return Err(self.fail(&link, op.method(), unit, e).await),
        };
        tracing::debug!(unit, job = %job.as_str(), "{} queued", op.method());

        let ours = |signal: &JobRemoved| -> Option<JobOutcome> {
            let args = signal.args().ok()?;
            (args.job().as_str() == job.as_str()).then(|| JobOutcome::parse(args.result()))
        };
        if let Some(outcome) = early.iter().find_map(ours) {
            return Ok(outcome);
        }
        let wait = async {
            while open {
                match removed.next().await {
                    Some(signal) => {
                        if let Some(outcome) = ours(&signal) {
                            return Some(outcome);
                        }
                    }
                    None => open = false,
                }
            }
            None
        };
        match tokio::time::timeout(self.job_timeout, wait).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => {
                self.invalidate(link.generation).await;
                Err(UnitError::Bus(format!(
                    "{}({unit}): the bus connection was lost while waiting for job {}",
                    op.method(),
                    job.as_str()
                )))
            }
            Err(_) => Err(UnitError::JobTimeout {
                unit: unit.to_string(),
                secs: self.job_timeout.as_millis().div_ceil(1000) as u64,
            }),
        }
    }

    /// One connection's worth of watching: subscribe to the units' changes, report them, and
    /// return when the connection is lost or the receiver is gone. `connected` is set once
    /// the receiver has taken `Connected`.
    async fn watch_session(
        &self,
        units: &[String],
        events: &mpsc::Sender<UnitEvent>,
        connected: &mut bool,
    ) -> SessionEnd {
        let link = match self.link().await {
            Ok(link) => link,
            Err(e) => return SessionEnd::Lost(e.to_string()),
        };
        match watch_on(&link.conn, units, events, connected).await {
            Ok(SessionEnd::ReceiverGone) => SessionEnd::ReceiverGone,
            Ok(SessionEnd::Lost(reason)) => {
                self.invalidate(link.generation).await;
                SessionEnd::Lost(reason)
            }
            Err(e) => {
                self.invalidate(link.generation).await;
                SessionEnd::Lost(format!("watching units: {e}"))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum JobOp {
    Restart,
    Start,
}

impl JobOp {
    fn method(self) -> &'static str {
        match self {
            JobOp::Restart => "RestartUnit",
            JobOp::Start => "StartUnit",
        }
    }
}

enum SessionEnd {
    ReceiverGone,
    Lost(String),
}

impl SystemdUnits {
    /// When the timer unit `timer` elapses next (Unix seconds); `None` when it is not scheduled
    /// (stopped, or its unit not found).
    pub async fn next_elapse(&self, timer: &str) -> Result<Option<i64>, UnitError> {
        let link = self.link().await?;
        let read = async {
            let manager = Systemd1ManagerProxy::new(&link.conn).await?;
            let path = manager.load_unit(timer).await?;
            let t = Systemd1TimerProxy::builder(&link.conn)
                .path(path)?
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            t.next_elapse_usec_realtime().await
        };
        match zero_if_missing(read.await) {
            Ok(0) => Ok(None),
            Ok(us) => Ok(i64::try_from(us / 1_000_000).ok()),
            Err(e) => Err(self.fail(&link, "next_elapse", timer, e).await),
        }
    }
}

impl UnitControl for SystemdUnits {
    async fn status(&self, unit: &str) -> Result<UnitStatus, UnitError> {
        let link = self.link().await?;
        let read = async {
            let manager = Systemd1ManagerProxy::new(&link.conn).await?;
            let path = manager.load_unit(unit).await?;
            read_status(&link.conn, &path).await
        };
        match read.await {
            Ok((_, load_state)) if load_state == "not-found" => {
                Err(UnitError::NoSuchUnit(unit.to_string()))
            }
            Ok((status, _)) => Ok(status),
            Err(e) => Err(self.fail(&link, "status", unit, e).await),
        }
    }

    async fn restart(&self, unit: &str) -> Result<JobOutcome, UnitError> {
        self.run_job(JobOp::Restart, unit).await
    }

    async fn start(&self, unit: &str) -> Result<JobOutcome, UnitError> {
        self.run_job(JobOp::Start, unit).await
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), UnitError> {
        let link = self.link().await?;
        let call = async {
            Systemd1ManagerProxy::new(&link.conn)
                .await?
                .reset_failed_unit(unit)
                .await
        };
        match call.await {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&link, "ResetFailedUnit", unit, e).await),
        }
    }

    async fn watch(&self, units: Vec<String>, events: mpsc::Sender<UnitEvent>) {
        let mut backoff = BACKOFF_MIN;
        // Report the first failure of every outage (including the very first connection).
        let mut report_loss = true;
        loop {
            let mut connected = false;
            let reason = match self.watch_session(&units, &events, &mut connected).await {
                SessionEnd::ReceiverGone => return,
                SessionEnd::Lost(reason) => reason,
            };
            if connected {
                backoff = BACKOFF_MIN;
                report_loss = true;
            }
            if report_loss {
                tracing::warn!(%reason, "lost systemd; reconnecting");
                if events
                    .send(UnitEvent::Disconnected { reason })
                    .await
                    .is_err()
                {
                    return;
                }
                report_loss = false;
            } else {
                tracing::debug!(%reason, "still no systemd");
            }
            tokio::select! {
                _ = events.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            if !connected {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// A watched unit: where it lives, what we know, what we last reported.
struct Watched {
    unit: String,
    path: Option<OwnedObjectPath>,
    status: UnitStatus,
    reported: UnitStatus,
    /// A `Service` batch changed `status` and no `Unit` batch has followed yet.
    pending: bool,
}

type Changes = BoxStream<'static, (usize, Option<zbus::fdo::PropertiesChanged>)>;

async fn watch_on(
    conn: &Connection,
    units: &[String],
    events: &mpsc::Sender<UnitEvent>,
    connected: &mut bool,
) -> zbus::Result<SessionEnd> {
    let manager = Systemd1ManagerProxy::new(conn).await?;
    // systemd leaving the bus (daemon-reexec, a crash) ends this session like a lost connection.
    let bus = zbus::fdo::DBusProxy::new(conn).await?;
    let mut owner_changes = bus
        .receive_name_owner_changed_with_args(&[(0, SYSTEMD)])
        .await?;
    let peer = zbus::fdo::PeerProxy::builder(conn)
        .destination(SYSTEMD)?
        .path(MANAGER_PATH)?
        .build()
        .await?;

    // Listen first, then read: a change in between is seen twice rather than never.
    let mut watched = Vec::with_capacity(units.len());
    // A never-ending member keeps the merged stream alive with no units to watch.
    let mut streams: Vec<Changes> = vec![stream::pending().boxed()];
    for (i, unit) in units.iter().enumerate() {
        let path = match manager.load_unit(unit).await {
            Ok(path) => Some(path),
            Err(e) if error_name(&e).as_deref() == Some(NO_SUCH_UNIT) => {
                tracing::warn!(unit = %unit, "no such unit; not watching it");
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(path) = &path {
            let properties = zbus::fdo::PropertiesProxy::builder(conn)
                .destination(SYSTEMD)?
                .path(path.clone())?
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            let changes = properties.receive_properties_changed().await?;
            // A member stream that ends says so with a `None`.
            streams.push(
                changes
                    .map(move |signal| (i, Some(signal)))
                    .chain(stream::once(async move { (i, None) }))
                    .boxed(),
            );
        }
        watched.push(Watched {
            unit: unit.clone(),
            path,
            status: UnitStatus::unknown(),
            reported: UnitStatus::unknown(),
            pending: false,
        });
    }
    let mut changes = stream::select_all(streams);

    for w in &mut watched {
        if let Some(path) = &w.path {
            w.status = read_status(conn, path).await?.0;
        }
    }
    // Events wait in `outbox` until the channel takes them, while the signal streams keep being
    // read: zbus stops reading the (shared) connection when a stream's queue is full, which would
    // stall `status`/`restart` too. A consumer that falls behind gets a unit's latest status in
    // place of the ones it has not taken yet.
    let mut outbox = Outbox::default();
    outbox.events.push_back(UnitEvent::Connected);
    for w in &mut watched {
        w.reported = w.status.clone();
        outbox.status(&w.unit, &w.status);
    }
    tracing::info!(units = ?units, "watching systemd units");

    let mut ping = tokio::time::interval_at(Instant::now() + PING_INTERVAL, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut flush_at: Option<Instant> = None;
    loop {
        let flush_deadline = flush_at.unwrap_or_else(Instant::now);
        tokio::select! {
            // Hand over what is queued before taking in more.
            biased;
            permit = events.reserve(), if !outbox.events.is_empty() => {
                let Ok(permit) = permit else { return Ok(SessionEnd::ReceiverGone) };
                if let Some(event) = outbox.events.pop_front() {
                    *connected |= event == UnitEvent::Connected;
                    permit.send(event);
                }
            }
            _ = events.closed() => return Ok(SessionEnd::ReceiverGone),
            _ = conn.closed() => {
                return Ok(SessionEnd::Lost("the bus connection was closed".to_string()))
            }
            change = owner_changes.next() => {
                let reason = match change {
                    Some(_) => format!("{SYSTEMD} left the bus or changed owner"),
                    None => "the bus connection was closed".to_string(),
                };
                return Ok(SessionEnd::Lost(reason));
            }
            item = changes.next() => {
                let Some((i, Some(signal))) = item else {
                    return Ok(SessionEnd::Lost("a signal stream ended".to_string()));
                };
                let Some(w) = watched.get_mut(i) else { continue };
                match apply(w, &signal) {
                    Applied::Nothing => {}
                    Applied::Pending => {
                        flush_at.get_or_insert_with(|| Instant::now() + SERVICE_BATCH_GRACE);
                    }
                    Applied::Report => report(w, &mut outbox),
                    Applied::Reread => {
                        if let Some(path) = &w.path {
                            w.status = read_status(conn, path).await?.0;
                        }
                        report(w, &mut outbox);
                    }
                }
            }
            _ = tokio::time::sleep_until(flush_deadline), if flush_at.is_some() => {
                flush_at = None;
                for w in watched.iter_mut().filter(|w| w.pending) {
                    report(w, &mut outbox);
                }
            }
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, peer.ping()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Ok(SessionEnd::Lost(format!("pinging {SYSTEMD}: {e}"))),
                    Err(_) => {
                        return Ok(SessionEnd::Lost(format!(
                            "{SYSTEMD} did not answer a ping within {} s",
                            PING_TIMEOUT.as_secs()
                        )))
                    }
                }
            }
        }
    }
}

/// Events not yet taken by the receiver; a unit has at most one `Status` in it, its latest.
#[derive(Default)]
struct Outbox {
    events: VecDeque<UnitEvent>,
}

impl Outbox {
    fn status(&mut self, unit: &str, status: &UnitStatus) {
        for event in &mut self.events {
            if let UnitEvent::Status { unit: u, status: s } = event {
                if u == unit {
                    *s = status.clone();
                    return;
                }
            }
        }
        self.events.push_back(UnitEvent::Status {
            unit: unit.to_string(),
            status: status.clone(),
        });
    }
}

enum Applied {
    /// Not about anything we report.
    Nothing,
    /// A `Service` batch: report when its `Unit` batch comes (or after a grace period).
    Pending,
    /// A `Unit` batch: report now.
    Report,
    /// A property we report was invalidated without its value: read the status again.
    Reread,
}

/// Folds one `PropertiesChanged` into the unit's cached status.
fn apply(w: &mut Watched, signal: &zbus::fdo::PropertiesChanged) -> Applied {
    let Ok(args) = signal.args() else {
        tracing::debug!(unit = %w.unit, "undecodable PropertiesChanged");
        return Applied::Nothing;
    };
    let changed = args.changed_properties();
    let invalidated = args.invalidated_properties();
    let invalid = |names: &[&str]| invalidated.iter().any(|p| names.contains(p));
    match args.interface_name().as_str() {
        SERVICE_IFACE => {
            if invalid(&["NRestarts", "MainPID"]) {
                return Applied::Reread;
            }
            let mut touched = false;
            if let Some(n) = changed.get("NRestarts").and_then(value_u32) {
                w.status.n_restarts = n;
                touched = true;
            }
            if let Some(pid) = changed.get("MainPID").and_then(value_u32) {
                w.status.main_pid = pid;
                touched = true;
            }
            if touched {
                w.pending = true;
                Applied::Pending
            } else {
                Applied::Nothing
            }
        }
        UNIT_IFACE => {
            if invalid(&["ActiveState", "SubState", "Job"]) {
                return Applied::Reread;
            }
            if let Some(id) = changed.get("Job").and_then(job_id) {
                w.status.queued = id != 0;
            }
            if let Some(active) = changed.get("ActiveState").and_then(value_str) {
                w.status.active = ActiveState::parse(active);
            }
            if let Some(sub) = changed.get("SubState").and_then(value_str) {
                w.status.sub = sub.to_string();
            }
            // Ends the batch: report whatever changed, here or in the `Service` batch before.
            Applied::Report
        }
        _ => Applied::Nothing,
    }
}

/// Queues the unit's status if it differs from the last one queued.
fn report(w: &mut Watched, outbox: &mut Outbox) {
    w.pending = false;
    if w.status != w.reported {
        w.reported = w.status.clone();
        outbox.status(&w.unit, &w.status);
    }
}

fn value_str<'a>(v: &'a Value<'_>) -> Option<&'a str> {
    match v {
        Value::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The id in a `Job` property's `(uo)`.
fn job_id(v: &Value<'_>) -> Option<u32> {
    match v {
        Value::Structure(s) => s.fields().first().and_then(value_u32),
        _ => None,
    }
}

fn value_u32(v: &Value<'_>) -> Option<u32> {
    match v {
        Value::U32(n) => Some(*n),
        _ => None,
    }
}

/// The unit's status at `path`, and its `LoadState`.
async fn read_status(
    conn: &Connection,
    path: &OwnedObjectPath,
) -> zbus::Result<(UnitStatus, String)> {
    let unit = Systemd1UnitProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let service = Systemd1ServiceProxy::builder(conn)
        .path(path.clone())?
        .cache_properties(CacheProperties::No)
        .build()
        .await?;
    let (active, sub, load, job, n_restarts, main_pid) = tokio::join!(
        unit.active_state(),
        unit.sub_state(),
        unit.load_state(),
        unit.job(),
        service.n_restarts(),
        service.main_pid(),
    );
    let status = UnitStatus {
        active: ActiveState::parse(&active?),
        sub: sub?,
        n_restarts: zero_if_missing(n_restarts)?,
        main_pid: zero_if_missing(main_pid)?,
        queued: job?.0 != 0,
    };
    Ok((status, load?))
}

/// `NRestarts` and `MainPID` exist only on services, `NextElapseUSecRealtime` only on timers:
/// 0 elsewhere.
fn zero_if_missing<T: Default>(r: zbus::Result<T>) -> zbus::Result<T> {
    match r {
        Err(e)
            if error_name(&e)
                .as_deref()
                .is_some_and(|n| MISSING_PROPERTY_ERRORS.contains(&n)) =>
        {
            Ok(T::default())
        }
        other => other,
    }
}

/// The D-Bus error name of a method's error reply.
fn error_name(e: &zbus::Error) -> Option<String> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str().to_string()),
        zbus::Error::FDO(e) => Some(zbus::DBusError::name(e.as_ref()).as_str().to_string()),
        _ => None,
    }
}

/// Whether the connection (or systemd's presence on it) is what failed: then a new connection,
/// subscribed anew, is in order.
fn connection_failed(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::InputOutput(_) | zbus::Error::Connection(..) | zbus::Error::Handshake(_) => {
            true
        }
        _ => error_name(e).is_some_and(|n| GONE_ERRORS.contains(&n.as_str())),
    }
}

fn unit_error(op: &str, unit: &str, e: zbus::Error) -> UnitError {
    let detail = |e: &zbus::Error| match e {
        zbus::Error::MethodError(_, Some(detail), _) => detail.clone(),
        other => other.to_string(),
    };
    match error_name(&e).as_deref() {
        Some(ACCESS_DENIED | INTERACTIVE_AUTHORIZATION_REQUIRED) => UnitError::Denied {
            unit: unit.to_string(),
            detail: detail(&e),
        },
        Some(NO_SUCH_UNIT) => UnitError::NoSuchUnit(unit.to_string()),
        _ => UnitError::Bus(format!("{op}({unit}): {e}")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Against a fake `org.freedesktop.systemd1` served with zbus on a private dbus-daemon.
    //! `World` (the bus and the fake) is shared with other modules' tests (`/setup`'s name step).

    use super::*;
    use std::borrow::Cow;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex as StdMutex};
    use zbus::names::InterfaceName;
    use zbus::object_server::SignalEmitter;
    use zbus::zvariant::ObjectPath;

    const SYNAPSE: &str = "matrix-synapse.service";

    // ---- a private bus ------------------------------------------------------------------------

    /// A dbus-daemon of our own, listening on `dir/bus`. Killed when dropped.
    struct PrivateBus {
        dir: PathBuf,
        child: Option<Child>,
    }

    impl PrivateBus {
        fn start(dir: &Path) -> PrivateBus {
            let socket = dir.join("bus");
            let config = dir.join("bus.conf");
            std::fs::write(
                &config,
                format!(
                    r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                    socket.display()
                ),
            )
            .unwrap();
            // A killed daemon leaves its socket behind.
            let _ = std::fs::remove_file(&socket);
            // Its complaints (as root: "Failed to set fd limit") go to a file, shown on failure.
            let log = dir.join("dbus-daemon.log");
            let mut child = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--nopidfile", "--print-address=1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("dbus-daemon (Debian package dbus-daemon) is needed for these tests");
            // The address is printed once the socket listens.
            let stdout = child.stdout.take().unwrap();
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            assert!(
                line.starts_with("unix:"),
                "dbus-daemon printed {line:?}; its log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            PrivateBus {
                dir: dir.to_path_buf(),
                child: Some(child),
            }
        }

        /// Without the daemon's guid, so that the same address reaches a restarted daemon.
        fn address(&self) -> String {
            format!("unix:path={}", self.dir.join("bus").display())
        }

        fn kill(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for PrivateBus {
        fn drop(&mut self) {
            self.kill();
        }
    }

    // ---- a fake systemd -----------------------------------------------------------------------

    /// systemd's object path for a unit name (`bus_label_escape`: every byte but [A-Za-z0-9],
    /// and a leading digit, becomes `_xx`).
    fn unit_path(name: &str) -> String {
        let mut label = String::new();
        for (i, b) in name.bytes().enumerate() {
            if b.is_ascii_alphabetic() || (b.is_ascii_digit() && i > 0) {
                label.push(b as char);
            } else {
                label.push_str(&format!("_{b:02x}"));
            }
        }
        if label.is_empty() {
            label.push('_');
        }
        format!("{MANAGER_PATH}/unit/{label}")
    }

    #[derive(Debug, Clone)]
    pub(crate) struct FakeUnitState {
        active: String,
        sub: String,
        load: String,
        n_restarts: u32,
        main_pid: u32,
        is_service: bool,
        /// The unit's job id, 0 when none.
        job: u32,
    }

    impl FakeUnitState {
        pub(crate) fn service(active: &str, sub: &str, main_pid: u32) -> Self {
            Self {
                active: active.into(),
                sub: sub.into(),
                load: "loaded".into(),
                n_restarts: 0,
                main_pid,
                is_service: true,
                job: 0,
            }
        }
    }

    /// The fake's state, shared by its objects and the test.
    #[derive(Clone, Default)]
    pub(crate) struct Fake {
        pub(crate) units: Arc<StdMutex<HashMap<String, FakeUnitState>>>,
        /// Units whose start job ends `failed` (besides `failing.service`).
        pub(crate) failing: Arc<StdMutex<Vec<String>>>,
        next_job: Arc<AtomicU32>,
        subscribes: Arc<AtomicU32>,
        /// What the fake did, in order ("unrelated-removed", "ours-removed", ...).
        log: Arc<StdMutex<Vec<String>>>,
    }

    impl Fake {
        pub(crate) fn standard() -> Fake {
            let fake = Fake::default();
            fake.next_job.store(100, Ordering::SeqCst);
            {
                let mut units = fake.units.lock().unwrap();
                for name in [
                    SYNAPSE,
                    "failing.service",
                    "hang.service",
                    "instant.service",
                    "interactive.service",
                ] {
                    units.insert(name.into(), FakeUnitState::service("active", "running", 41));
                }
                units.insert(
                    "stopped.service".into(),
                    FakeUnitState::service("inactive", "dead", 0),
                );
                let mut ghost = FakeUnitState::service("inactive", "dead", 0);
                ghost.load = "not-found".into();
                units.insert("ghost.service".into(), ghost);
                units.insert(
                    "multi-user.target".into(),
                    FakeUnitState {
                        active: "active".into(),
                        sub: "active".into(),
                        load: "loaded".into(),
                        n_restarts: 0,
                        main_pid: 0,
                        is_service: false,
                        job: 0,
                    },
                );
            }
            fake
        }

        fn unit(&self, name: &str) -> FakeUnitState {
            self.units.lock().unwrap()[name].clone()
        }

        pub(crate) fn log(&self) -> Vec<String> {
            self.log.lock().unwrap().clone()
        }

        fn note(&self, what: &str) {
            self.log.lock().unwrap().push(what.to_string());
        }
    }

    #[derive(Debug, zbus::DBusError)]
    #[zbus(prefix = "org.freedesktop")]
    enum FakeError {
        #[zbus(error)]
        ZBus(zbus::Error),
        #[zbus(name = "systemd1.NoSuchUnit")]
        NoSuchUnit(String),
        #[zbus(name = "DBus.Error.AccessDenied")]
        AccessDenied(String),
        #[zbus(name = "DBus.Error.InteractiveAuthorizationRequired")]
        InteractiveAuthorizationRequired(String),
    }

    struct FakeManager {
        fake: Fake,
    }

    impl FakeManager {
        fn known(&self, name: &str) -> Result<(), FakeError> {
            if name == "forbidden.service" {
                return Err(FakeError::AccessDenied("Access denied".into()));
            }
            if !self.fake.units.lock().unwrap().contains_key(name) {
                return Err(FakeError::NoSuchUnit(format!("Unit {name} not found.")));
            }
            Ok(())
        }

        /// Queues a job for `name` and plays it out like systemd would.
        async fn job(
            &self,
            name: &str,
            conn: &Connection,
            emitter: &SignalEmitter<'_>,
        ) -> Result<OwnedObjectPath, FakeError> {
            self.known(name)?;
            if name == "interactive.service" {
                return Err(FakeError::InteractiveAuthorizationRequired(
                    "Interactive authentication required.".into(),
                ));
            }
            let id = self.fake.next_job.fetch_add(1, Ordering::SeqCst);
            let job = OwnedObjectPath::try_from(format!("{MANAGER_PATH}/job/{id}")).unwrap();
            match name {
                // Ends before the reply is sent: only a client that listened first sees it.
                "instant.service" => {
                    FakeManager::job_removed(emitter, id, job.as_ref(), name, "done").await?;
                    self.fake.note("ours-removed");
                }
                "hang.service" => {}
                _ => {
                    let (fake, conn, name, job) = (
                        self.fake.clone(),
                        conn.clone(),
                        name.to_string(),
                        job.clone(),
                    );
                    tokio::spawn(async move { play_job(fake, conn, id, job, name).await });
                }
            }
            Ok(job)
        }
    }

    /// An unrelated job ends first, then the unit goes through its states, then our job ends.
    async fn play_job(fake: Fake, conn: Connection, id: u32, job: OwnedObjectPath, name: String) {
        let emitter = SignalEmitter::new(&conn, MANAGER_PATH).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let other = ObjectPath::try_from(format!("{MANAGER_PATH}/job/{}", id + 1000)).unwrap();
        FakeManager::job_removed(&emitter, id + 1000, other, "unrelated.service", "done")
            .await
            .unwrap();
        fake.note("unrelated-removed");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let failing = name == "failing.service" || fake.failing.lock().unwrap().contains(&name);
        change(&conn, &fake, &name, |u| {
            u.active = "activating".into();
            u.sub = "start".into();
            u.main_pid = 0;
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        change(&conn, &fake, &name, |u| {
            if failing {
                u.active = "failed".into();
                u.sub = "failed".into();
            } else {
                u.active = "active".into();
                u.sub = "running".into();
                u.main_pid = 4242;
            }
        })
        .await;
        fake.note("ours-removed");
        let result = if failing { "failed" } else { "done" };
        FakeManager::job_removed(&emitter, id, job.as_ref(), &name, result)
            .await
            .unwrap();
    }

    /// A unit's `Job` property as systemd gives it: `(0, "/")` when there is none.
    fn fake_job(id: u32) -> (u32, OwnedObjectPath) {
        let path = match id {
            0 => "/".to_string(),
            id => format!("{MANAGER_PATH}/job/{id}"),
        };
        (id, OwnedObjectPath::try_from(path).unwrap())
    }

    /// Changes a unit and announces it like systemd: the `Service` batch, then the `Unit` batch.
    async fn change(
        conn: &Connection,
        fake: &Fake,
        name: &str,
        f: impl FnOnce(&mut FakeUnitState),
    ) {
        let state = {
            let mut units = fake.units.lock().unwrap();
            let unit = units.get_mut(name).unwrap();
            f(unit);
            unit.clone()
        };
        let emitter = SignalEmitter::new(conn, unit_path(name)).unwrap();
        if state.is_service {
            emit_service_batch(&emitter, &state).await;
        }
        let unit_props = HashMap::from([
            ("ActiveState", Value::from(state.active.as_str())),
            ("SubState", Value::from(state.sub.as_str())),
            ("LoadState", Value::from(state.load.as_str())),
            ("Job", Value::from(fake_job(state.job))),
        ]);
        zbus::fdo::Properties::properties_changed(
            &emitter,
            InterfaceName::from_static_str_unchecked(UNIT_IFACE),
            unit_props,
            Cow::Borrowed(&[]),
        )
        .await
        .unwrap();
    }

    async fn emit_service_batch(emitter: &SignalEmitter<'_>, state: &FakeUnitState) {
        let service_props = HashMap::from([
            ("NRestarts", Value::from(state.n_restarts)),
            ("MainPID", Value::from(state.main_pid)),
        ]);
        zbus::fdo::Properties::properties_changed(
            emitter,
            InterfaceName::from_static_str_unchecked(SERVICE_IFACE),
            service_props,
            Cow::Borrowed(&[]),
        )
        .await
        .unwrap();
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Manager")]
    impl FakeManager {
        #[zbus(name = "Subscribe")]
        fn subscribe(&self) {
            self.fake.subscribes.fetch_add(1, Ordering::SeqCst);
        }

        #[zbus(name = "LoadUnit")]
        fn load_unit(&self, name: &str) -> Result<OwnedObjectPath, FakeError> {
            self.known(name)?;
            Ok(OwnedObjectPath::try_from(unit_path(name)).unwrap())
        }

        #[zbus(name = "GetUnit")]
        fn get_unit(&self, name: &str) -> Result<OwnedObjectPath, FakeError> {
            self.load_unit(name)
        }

        #[zbus(name = "RestartUnit")]
        async fn restart_unit(
            &self,
            name: &str,
            mode: &str,
            #[zbus(connection)] conn: &Connection,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        ) -> Result<OwnedObjectPath, FakeError> {
            assert_eq!(mode, "replace");
            self.job(name, conn, &emitter).await
        }

        #[zbus(name = "StartUnit")]
        async fn start_unit(
            &self,
            name: &str,
            mode: &str,
            #[zbus(connection)] conn: &Connection,
            #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
        ) -> Result<OwnedObjectPath, FakeError> {
            assert_eq!(mode, "replace");
            self.fake.note(&format!("StartUnit {name}"));
            self.job(name, conn, &emitter).await
        }

        #[zbus(name = "ResetFailedUnit")]
        async fn reset_failed_unit(
            &self,
            name: &str,
            #[zbus(connection)] conn: &Connection,
        ) -> Result<(), FakeError> {
            self.known(name)?;
            self.fake.note(&format!("reset-failed {name}"));
            change(conn, &self.fake, name, |u| {
                if u.active == "failed" {
                    u.active = "inactive".into();
                    u.sub = "dead".into();
                }
            })
            .await;
            Ok(())
        }

        #[zbus(signal, name = "JobRemoved")]
        async fn job_removed(
            emitter: &SignalEmitter<'_>,
            id: u32,
            job: ObjectPath<'_>,
            unit: &str,
            result: &str,
        ) -> zbus::Result<()>;
    }

    struct FakeUnit {
        name: String,
        fake: Fake,
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Unit")]
    impl FakeUnit {
        #[zbus(property, name = "ActiveState")]
        fn active_state(&self) -> String {
            self.fake.unit(&self.name).active
        }

        #[zbus(property, name = "SubState")]
        fn sub_state(&self) -> String {
            self.fake.unit(&self.name).sub
        }

        #[zbus(property, name = "LoadState")]
        fn load_state(&self) -> String {
            self.fake.unit(&self.name).load
        }

        #[zbus(property, name = "Job")]
        fn job(&self) -> (u32, OwnedObjectPath) {
            fake_job(self.fake.unit(&self.name).job)
        }
    }

    struct FakeService {
        name: String,
        fake: Fake,
    }

    #[zbus::interface(name = "org.freedesktop.systemd1.Service")]
    impl FakeService {
        #[zbus(property, name = "NRestarts")]
        fn n_restarts(&self) -> u32 {
            self.fake.unit(&self.name).n_restarts
        }

        #[zbus(property, name = "MainPID")]
        fn main_pid(&self) -> u32 {
            self.fake.unit(&self.name).main_pid
        }
    }

    /// Serves `fake` as org.freedesktop.systemd1 on the bus at `address`.
    async fn serve(address: &str, fake: &Fake) -> Connection {
        let mut builder = zbus::connection::Builder::address(address)
            .unwrap()
            .name(SYSTEMD)
            .unwrap()
            .serve_at(MANAGER_PATH, FakeManager { fake: fake.clone() })
            .unwrap();
        let units = fake.units.lock().unwrap().clone();
        for (name, state) in units {
            let path = unit_path(&name);
            builder = builder
                .serve_at(
                    path.clone(),
                    FakeUnit {
                        name: name.clone(),
                        fake: fake.clone(),
                    },
                )
                .unwrap();
            if state.is_service {
                builder = builder
                    .serve_at(
                        path,
                        FakeService {
                            name,
                            fake: fake.clone(),
                        },
                    )
                    .unwrap();
            }
        }
        builder.build().await.unwrap()
    }

    /// A private bus with the fake systemd on it.
    pub(crate) struct World {
        _dir: tempfile::TempDir,
        bus: PrivateBus,
        pub(crate) fake: Fake,
        server: Connection,
    }

    impl World {
        async fn new() -> World {
            World::with(Fake::standard()).await
        }

        /// The fake with these units (add them to `Fake::standard()` before serving).
        pub(crate) async fn with(fake: Fake) -> World {
            let dir = tempfile::tempdir().unwrap();
            let bus = PrivateBus::start(dir.path());
            let server = serve(&bus.address(), &fake).await;
            World {
                _dir: dir,
                bus,
                fake,
                server,
            }
        }

        pub(crate) fn units(&self) -> SystemdUnits {
            SystemdUnits::with_address(&self.bus.address())
        }

        async fn change(&self, name: &str, f: impl FnOnce(&mut FakeUnitState)) {
            change(&self.server, &self.fake, name, f).await;
        }
    }

    fn status(active: ActiveState, sub: &str, n_restarts: u32, main_pid: u32) -> UnitStatus {
        UnitStatus {
            active,
            sub: sub.into(),
            n_restarts,
            main_pid,
            queued: false,
        }
    }

    fn status_event(unit: &str, status: UnitStatus) -> UnitEvent {
        UnitEvent::Status {
            unit: unit.into(),
            status,
        }
    }

    async fn next_event(rx: &mut mpsc::Receiver<UnitEvent>) -> UnitEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("no event within 5 s")
            .expect("watch ended")
    }

    async fn assert_quiet(rx: &mut mpsc::Receiver<UnitEvent>, for_: Duration) {
        if let Ok(event) = tokio::time::timeout(for_, rx.recv()).await {
            panic!("unexpected event {event:?}");
        }
    }

    // ---- tests --------------------------------------------------------------------------------

    #[test]
    fn unit_paths_are_escaped_like_systemd() {
        assert_eq!(
            unit_path("matrix-synapse.service"),
            "/org/freedesktop/systemd1/unit/matrix_2dsynapse_2eservice"
        );
        assert_eq!(
            unit_path("getty@tty1.service"),
            "/org/freedesktop/systemd1/unit/getty_40tty1_2eservice"
        );
        assert_eq!(unit_path("1a"), "/org/freedesktop/systemd1/unit/_31a");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn status_of_a_known_unit() {
        let world = World::new().await;
        let units = world.units();
        assert_eq!(
            units.status(SYNAPSE).await.unwrap(),
            status(ActiveState::Active, "running", 0, 41)
        );
        // Not a service: no NRestarts/MainPID.
        assert_eq!(
            units.status("multi-user.target").await.unwrap(),
            status(ActiveState::Active, "active", 0, 0)
        );
        // One connection, subscribed once.
        units.status(SYNAPSE).await.unwrap();
        assert_eq!(world.fake.subscribes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_and_denied_units() {
        let world = World::new().await;
        let units = world.units();
        assert_eq!(
            units.status("nope.service").await,
            Err(UnitError::NoSuchUnit("nope.service".into()))
        );
        // systemd's LoadUnit answers for a unit without a unit file: LoadState "not-found".
        assert_eq!(
            units.status("ghost.service").await,
            Err(UnitError::NoSuchUnit("ghost.service".into()))
        );
        assert_eq!(
            units.restart("nope.service").await,
            Err(UnitError::NoSuchUnit("nope.service".into()))
        );
        assert_eq!(
            units.status("forbidden.service").await,
            Err(UnitError::Denied {
                unit: "forbidden.service".into(),
                detail: "Access denied".into()
            })
        );
        assert_eq!(
            units.restart("interactive.service").await,
            Err(UnitError::Denied {
                unit: "interactive.service".into(),
                detail: "Interactive authentication required.".into()
            })
        );
        // Errors of systemd's are not the connection's: it is kept.
        assert_eq!(world.fake.subscribes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_bus_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let units =
            SystemdUnits::with_address(&format!("unix:path={}", dir.path().join("bus").display()));
        match units.status(SYNAPSE).await {
            Err(UnitError::Bus(msg)) => assert!(msg.contains("connecting to"), "{msg}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn restart_waits_for_its_own_job() {
        let world = World::new().await;
        let units = world.units();
        let outcome = units.restart(SYNAPSE).await.unwrap();
        // Returned after our JobRemoved, not at the unrelated one before it.
        assert_eq!(world.fake.log(), ["unrelated-removed", "ours-removed"]);
        assert_eq!(outcome, JobOutcome::Done);
        assert_eq!(
            units.status(SYNAPSE).await.unwrap(),
            status(ActiveState::Active, "running", 0, 4242)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_ends_before_the_reply_is_still_seen() {
        let world = World::new().await;
        let units = world.units().with_job_timeout(Duration::from_secs(2));
        assert_eq!(units.restart("instant.service").await, Ok(JobOutcome::Done));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failed_job_start_and_reset_failed() {
        let world = World::new().await;
        let units = world.units();
        assert_eq!(
            units.restart("failing.service").await,
            Ok(JobOutcome::Failed)
        );
        assert_eq!(
            units.status("failing.service").await.unwrap(),
            status(ActiveState::Failed, "failed", 0, 0)
        );
        units.reset_failed("failing.service").await.unwrap();
        assert_eq!(
            units.status("failing.service").await.unwrap(),
            status(ActiveState::Inactive, "dead", 0, 0)
        );
        assert_eq!(
            units.reset_failed("nope.service").await,
            Err(UnitError::NoSuchUnit("nope.service".into()))
        );

        assert_eq!(units.start("stopped.service").await, Ok(JobOutcome::Done));
        assert_eq!(
            units.status("stopped.service").await.unwrap().active,
            ActiveState::Active
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_never_ends_times_out() {
        let world = World::new().await;
        let units = world.units().with_job_timeout(Duration::from_millis(300));
        assert_eq!(
            units.restart("hang.service").await,
            Err(UnitError::JobTimeout {
                unit: "hang.service".into(),
                secs: 1
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_reports_each_change_batch_once() {
        let world = World::new().await;
        let units = Arc::new(world.units());
        let (tx, mut rx) = mpsc::channel(16);
        let watcher = {
            let units = units.clone();
            tokio::spawn(async move {
                units
                    .watch(vec![SYNAPSE.into(), "multi-user.target".into()], tx)
                    .await
            })
        };

        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, status(ActiveState::Active, "running", 0, 41))
        );
        assert_eq!(
            next_event(&mut rx).await,
            status_event(
                "multi-user.target",
                status(ActiveState::Active, "active", 0, 0)
            )
        );

        // A crash: systemd is about to restart it. Service and Unit batches: one event.
        world
            .change(SYNAPSE, |u| {
                u.active = "activating".into();
                u.sub = "auto-restart".into();
                u.n_restarts = 1;
                u.main_pid = 0;
            })
            .await;
        assert_eq!(
            next_event(&mut rx).await,
            status_event(
                SYNAPSE,
                status(ActiveState::Activating, "auto-restart", 1, 0)
            )
        );
        assert_quiet(&mut rx, Duration::from_millis(300)).await;

        // A Unit batch that changes nothing we report: no event.
        world.change(SYNAPSE, |_| {}).await;
        assert_quiet(&mut rx, Duration::from_millis(300)).await;

        // A Service batch alone (MainPID known): reported after the grace period.
        let state = {
            let mut units = world.fake.units.lock().unwrap();
            let u = units.get_mut(SYNAPSE).unwrap();
            u.main_pid = 777;
            u.clone()
        };
        let emitter = SignalEmitter::new(&world.server, unit_path(SYNAPSE)).unwrap();
        emit_service_batch(&emitter, &state).await;
        assert_eq!(
            next_event(&mut rx).await,
            status_event(
                SYNAPSE,
                status(ActiveState::Activating, "auto-restart", 1, 777)
            )
        );
        assert_quiet(&mut rx, Duration::from_millis(300)).await;

        // Dropping the receiver ends the watch.
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }

    /// At boot Synapse's start job waits behind first boot: the watcher says it is queued,
    /// from the first read and from the `Job` in later batches, and not once the job is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_reports_a_queued_job() {
        let world = World::new().await;
        world
            .change(SYNAPSE, |u| {
                u.active = "inactive".into();
                u.sub = "dead".into();
                u.main_pid = 0;
                u.job = 7;
            })
            .await;
        let units = Arc::new(world.units());
        let (tx, mut rx) = mpsc::channel(16);
        let watcher = {
            let units = units.clone();
            tokio::spawn(async move { units.watch(vec![SYNAPSE.into()], tx).await })
        };
        let queued = |active, sub: &str, pid| UnitStatus {
            queued: true,
            ..status(active, sub, 0, pid)
        };
        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, queued(ActiveState::Inactive, "dead", 0))
        );
        world
            .change(SYNAPSE, |u| {
                u.active = "activating".into();
                u.sub = "start".into();
                u.main_pid = 41;
            })
            .await;
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, queued(ActiveState::Activating, "start", 41))
        );
        world
            .change(SYNAPSE, |u| {
                u.active = "active".into();
                u.sub = "running".into();
                u.job = 0;
            })
            .await;
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, status(ActiveState::Active, "running", 0, 41))
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_receiver_stalls_nothing_and_gets_the_latest_status() {
        let world = World::new().await;
        let units = Arc::new(world.units());
        let (tx, mut rx) = mpsc::channel(1);
        let watcher = {
            let units = units.clone();
            tokio::spawn(async move { units.watch(vec![SYNAPSE.into()], tx).await })
        };
        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        next_event(&mut rx).await;

        // 200 signals nobody takes: more than zbus queues per stream (64).
        for n in 1..=100 {
            world.change(SYNAPSE, |u| u.n_restarts = n).await;
        }
        // The shared connection still answers.
        let status_now = tokio::time::timeout(Duration::from_secs(2), units.status(SYNAPSE))
            .await
            .expect("status() stalled behind unread signals")
            .unwrap();
        assert_eq!(status_now.n_restarts, 100);
        // Once the watch has read them all (a few ms), the receiver gets the one status it had
        // room for, then the latest.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut taken = Vec::new();
        loop {
            match next_event(&mut rx).await {
                UnitEvent::Status { status, .. } => {
                    taken.push(status.n_restarts);
                    if status.n_restarts == 100 {
                        break;
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(taken.len() <= 2, "statuses taken: {taken:?}");
        assert_quiet(&mut rx, Duration::from_millis(300)).await;
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_reconnects_after_the_bus_restarts() {
        let mut world = World::new().await;
        let units = Arc::new(world.units());
        let (tx, mut rx) = mpsc::channel(16);
        let watcher = {
            let units = units.clone();
            tokio::spawn(async move { units.watch(vec![SYNAPSE.into()], tx).await })
        };
        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, status(ActiveState::Active, "running", 0, 41))
        );
        assert_eq!(units.status(SYNAPSE).await.unwrap().main_pid, 41);

        // The dbus-daemon dies; meanwhile Synapse crashed and came back.
        world.bus.kill();
        match next_event(&mut rx).await {
            UnitEvent::Disconnected { reason } => assert!(!reason.is_empty()),
            other => panic!("expected Disconnected, got {other:?}"),
        }
        {
            let mut fake_units = world.fake.units.lock().unwrap();
            let u = fake_units.get_mut(SYNAPSE).unwrap();
            u.n_restarts = 7;
            u.main_pid = 99;
        }
        world.bus = PrivateBus::start(world._dir.path());
        world.server = serve(&world.bus.address(), &world.fake).await;

        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, status(ActiveState::Active, "running", 7, 99))
        );
        // The cached connection was replaced: status() works again, on the new bus.
        assert_eq!(units.status(SYNAPSE).await.unwrap().main_pid, 99);
        // Changes flow again on the new connection.
        world
            .change(SYNAPSE, |u| {
                u.active = "deactivating".into();
                u.sub = "stop-sigterm".into();
            })
            .await;
        assert_eq!(
            next_event(&mut rx).await,
            status_event(
                SYNAPSE,
                status(ActiveState::Deactivating, "stop-sigterm", 7, 99)
            )
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_without_a_bus_reports_disconnected_once() {
        let dir = tempfile::tempdir().unwrap();
        let units =
            SystemdUnits::with_address(&format!("unix:path={}", dir.path().join("bus").display()));
        let (tx, mut rx) = mpsc::channel(16);
        let watcher = tokio::spawn(async move { units.watch(vec![SYNAPSE.into()], tx).await });
        assert!(matches!(
            next_event(&mut rx).await,
            UnitEvent::Disconnected { .. }
        ));
        // Retries (0.5 s, 1 s, ...) stay quiet until something changes.
        assert_quiet(&mut rx, Duration::from_millis(1700)).await;
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn systemd_leaving_the_bus_ends_the_session() {
        let mut world = World::new().await;
        let units = Arc::new(world.units());
        let (tx, mut rx) = mpsc::channel(16);
        let watcher = {
            let units = units.clone();
            tokio::spawn(async move { units.watch(vec![SYNAPSE.into()], tx).await })
        };
        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        next_event(&mut rx).await;

        // systemd re-executes: its connection goes, a new one takes the name.
        world.server.clone().close().await.unwrap();
        assert!(matches!(
            next_event(&mut rx).await,
            UnitEvent::Disconnected { .. }
        ));
        world.server = serve(&world.bus.address(), &world.fake).await;
        assert_eq!(next_event(&mut rx).await, UnitEvent::Connected);
        assert_eq!(
            next_event(&mut rx).await,
            status_event(SYNAPSE, status(ActiveState::Active, "running", 0, 41))
        );
        drop(rx);
        tokio::time::timeout(Duration::from_secs(2), watcher)
            .await
            .expect("watch did not return")
            .unwrap();
    }
}
