//! The process backend of [`UnitControl`]: the supervisor spawns Synapse itself and behaves like
//! systemd would for a `Type=notify`, `Restart=on-failure` unit. Used by `make run` and `make test`
//! on machines without systemd; the appliance uses `systemd.rs`.
//!
//! One [`ProcessUnits`] manages ONE unit (e.g. `matrix-synapse.service`). Its event loop is the
//! [`UnitControl::watch`] future, which the owner spawns into its `TaskTracker`: it spawns the
//! child, reaps it, restarts it and reports [`UnitEvent`]s. `restart`/`start`/`reset_failed`
//! reach the loop through a channel; without a running `watch` they answer
//! `UnitError::Bus("process backend not running")`.
//!
//! What it mimics of systemd (v257, trixie):
//! - Readiness: the child gets `NOTIFY_SOCKET` (a datagram socket in a private temporary
//!   directory) and is `activating`/`start` until it sends `READY=1`, then `active`/`running`.
//!   `RELOADING=1` → `reloading`/`reload`, `STOPPING=1` → `deactivating`/`stop-sigterm`.
//!   No `READY=1` within `ready_timeout` → the start job ends `Timeout`, the child is stopped and
//!   that counts as a failure. The parent's `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID` and
//!   `LISTEN_*` are not passed on.
//! - Stop: SIGTERM to the child's process group (`deactivating`/`stop-sigterm`), SIGKILL after
//!   `stop_timeout` (`stop-sigkill`); leftovers of the group are SIGKILLed once the main process
//!   is gone (KillMode=control-group).
//! - Restarts: every exit that was not asked for (crash, signal, or even status 0) →
//!   `activating`/`auto-restart` for `restart_sec`, then a new start; `n_restarts` counts these
//!   automatic restarts. (systemd's `Restart=on-failure` would leave an unrequested exit with
//!   status 0 or by SIGTERM `inactive`/`dead`; Synapse exits cleanly only when told to, so here
//!   any exit we did not ask for is a failure.) A manual `start`/`restart` resets it to 0, like
//!   systemd's `flush_n_restarts`, and so does `reset_failed`.
//! - Start limit: every start (automatic or manual) is counted; a start that would be the
//!   `start_limit_burst + 1`-th within `start_limit_interval` is refused and the unit is
//!   `failed`/`failed` (systemd's "start request repeated too quickly"). Nothing respawns it until
//!   `reset_failed` (which clears the counter) and `start`, or until the interval has passed and
//!   someone calls `start`.
//!
//! The child runs in its own process group with stdin from /dev/null. Its stdout and stderr are
//! read line by line: each line is appended to `ProcessSpec::log` (or, without a log file,
//! forwarded to the supervisor's own stdout/stderr) and published on a broadcast channel,
//! [`ProcessUnits::output`], which the access-log accounting subscribes to.
//!
//! No child outlives the loop: when `watch` returns (its events receiver was dropped) the child
//! is stopped gracefully; when the `watch` future is dropped, or the backend itself, its process
//! group is SIGKILLed. (A supervisor killed with SIGKILL cannot do that: the child then lives on.)

use super::unit::{ActiveState, JobOutcome, UnitControl, UnitError, UnitEvent, UnitStatus};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::UnixDatagram;
use tokio::process::{Child, Command};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// What to run and how to treat it: the process backend's unit file.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// The unit's name, e.g. `matrix-synapse.service`; other names are `NoSuchUnit`.
    pub unit: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Added to the supervisor's environment (`NOTIFY_SOCKET`, `WATCHDOG_*`, `LISTEN_*` are
    /// never passed on, whether inherited or given here).
    pub env: Vec<(OsString, OsString)>,
    pub workdir: PathBuf,
    /// `RestartSec=`.
    pub restart_sec: Duration,
    /// `StartLimitBurst=`; 0 disables the start limit.
    pub start_limit_burst: u32,
    /// `StartLimitIntervalSec=`; zero disables the start limit.
    pub start_limit_interval: Duration,
    /// `TimeoutStopSec=`: SIGTERM, then SIGKILL after this long.
    pub stop_timeout: Duration,
    /// `TimeoutStartSec=`: how long to wait for `READY=1`.
    pub ready_timeout: Duration,
    /// Append the child's stdout and stderr here (a relative path is relative to the
    /// supervisor's working directory, not `workdir`); `None`: to the supervisor's stdout/stderr.
    pub log: Option<PathBuf>,
}

impl ProcessSpec {
    /// A spec with systemd-like defaults: restart after 1 s, at most 5 starts in 60 s,
    /// 10 s to stop, 120 s to become ready, working directory `.`, output not logged to a file.
    pub fn new(unit: impl Into<String>, program: impl Into<PathBuf>) -> Self {
        Self {
            unit: unit.into(),
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            workdir: PathBuf::from("."),
            restart_sec: Duration::from_secs(1),
            start_limit_burst: 5,
            start_limit_interval: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            ready_timeout: Duration::from_secs(120),
            log: None,
        }
    }
}

/// Which of the child's streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// One line the child wrote (lossy UTF-8, without the line break; lines longer than 64 KiB are
/// cut into pieces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub line: String,
}

/// Environment variables the child never inherits from us: they belong to our own service
/// manager (systemd's notify socket and watchdog, socket activation).
const NOT_PASSED_ON: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

const MAX_LINE: usize = 64 * 1024;
const OUTPUT_CAPACITY: usize = 1024;

/// Names the notify socket directories of the backends in this process.
static INSTANCE: AtomicU64 = AtomicU64::new(0);

fn not_running() -> UnitError {
    UnitError::Bus("process backend not running".to_string())
}

enum Cmd {
    Restart(oneshot::Sender<JobOutcome>),
    Start(oneshot::Sender<JobOutcome>),
    ResetFailed(oneshot::Sender<()>),
}

/// The process backend for one unit. See the module documentation.
pub struct ProcessUnits {
    spec: ProcessSpec,
    status: watch::Sender<UnitStatus>,
    commands: Mutex<Option<mpsc::Sender<Cmd>>>,
    running: AtomicBool,
    /// The child's process group (= its PID) while it exists, else 0.
    pgid: AtomicI32,
    output: broadcast::Sender<OutputLine>,
}

impl ProcessUnits {
    pub fn new(spec: ProcessSpec) -> Self {
        let (output, _) = broadcast::channel(OUTPUT_CAPACITY);
        Self {
            spec,
            status: watch::Sender::new(dead_status(0)),
            commands: Mutex::new(None),
            running: AtomicBool::new(false),
            pgid: AtomicI32::new(0),
            output,
        }
    }

    pub fn spec(&self) -> &ProcessSpec {
        &self.spec
    }

    /// The child's output, line by line, from now on (all starts of the unit). A receiver that
    /// falls more than 1024 lines behind loses the oldest (`RecvError::Lagged`); the child is
    /// never held up by a slow reader.
    pub fn output(&self) -> broadcast::Receiver<OutputLine> {
        self.output.subscribe()
    }

    /// The child's process group while it exists (the Matrix service's CPU time is that
    /// group's).
    pub fn pgid(&self) -> Option<i32> {
        Some(self.pgid.load(Ordering::SeqCst)).filter(|&g| g > 0)
    }

    /// The unit's status as it changes (the same values `status` answers).
    pub fn subscribe(&self) -> watch::Receiver<UnitStatus> {
        self.status.subscribe()
    }

    fn check(&self, unit: &str) -> Result<(), UnitError> {
        if unit == self.spec.unit {
            Ok(())
        } else {
            Err(UnitError::NoSuchUnit(unit.to_string()))
        }
    }

    async fn command(&self, cmd: Cmd) -> Result<(), UnitError> {
        let sender = match self.commands.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => None,
        };
        match sender {
            Some(s) => s.send(cmd).await.map_err(|_| not_running()),
            None => Err(not_running()),
        }
    }

    fn kill_group(&self, signal: rustix::process::Signal) {
        let pgid = self.pgid.load(Ordering::SeqCst);
        signal_group(pgid, signal);
    }
}

impl Drop for ProcessUnits {
    fn drop(&mut self) {
        self.kill_group(rustix::process::Signal::KILL);
    }
}

impl UnitControl for ProcessUnits {
    async fn status(&self, unit: &str) -> Result<UnitStatus, UnitError> {
        self.check(unit)?;
        let status = self.status.borrow().clone();
        Ok(status)
    }

    async fn restart(&self, unit: &str) -> Result<JobOutcome, UnitError> {
        self.check(unit)?;
        let (tx, rx) = oneshot::channel();
        self.command(Cmd::Restart(tx)).await?;
        rx.await.map_err(|_| not_running())
    }

    async fn start(&self, unit: &str) -> Result<JobOutcome, UnitError> {
        self.check(unit)?;
        let (tx, rx) = oneshot::channel();
        self.command(Cmd::Start(tx)).await?;
        rx.await.map_err(|_| not_running())
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), UnitError> {
        self.check(unit)?;
        let (tx, rx) = oneshot::channel();
        self.command(Cmd::ResetFailed(tx)).await?;
        rx.await.map_err(|_| not_running())
    }

    async fn watch(&self, units: Vec<String>, events: mpsc::Sender<UnitEvent>) {
        if self.running.swap(true, Ordering::SeqCst) {
            tracing::error!(unit = %self.spec.unit, "process backend: watch is already running");
            return;
        }
        // From here on, whatever happens (return or drop of this future), the guard kills the
        // child's group, closes the command channel and removes the socket directory.
        let mut guard = WatchGuard {
            units: self,
            dir: None,
        };
        let report = units.contains(&self.spec.unit);
        for other in units.iter().filter(|u| **u != self.spec.unit) {
            tracing::warn!(unit = %other, "process backend: not a unit of mine; not watched");
        }

        let (dir, socket) = loop {
            match bind_notify_socket() {
                Ok((dir, socket)) => break (dir, socket),
                Err(e) => {
                    let reason = format!("cannot create the notify socket: {e}");
                    tracing::error!(unit = %self.spec.unit, "{reason}");
                    if events
                        .send(UnitEvent::Disconnected { reason })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    tokio::select! {
                        () = events.closed() => return,
                        () = tokio::time::sleep(self.spec.restart_sec.max(Duration::from_secs(1))) => {}
                    }
                }
            }
        };
        guard.dir = Some(dir.clone());
        let socket_path = dir.join("notify");

        let (tx, rx) = mpsc::channel(16);
        if let Ok(mut slot) = self.commands.lock() {
            *slot = Some(tx);
        }

        let mut engine = Engine {
            u: self,
            events,
            report,
            socket,
            socket_path,
            cmds: rx,
            phase: Phase::Dead,
            child: None,
            pending: Vec::new(),
            starts: VecDeque::new(),
            n_restarts: self.status.borrow().n_restarts,
            readers: JoinSet::new(),
            outbox: Vec::new(),
            last_sent: None,
        };
        engine.run().await;
    }
}

/// Cleans up after `watch`, however it ends.
struct WatchGuard<'a> {
    units: &'a ProcessUnits,
    dir: Option<PathBuf>,
}

impl Drop for WatchGuard<'_> {
    fn drop(&mut self) {
        let u = self.units;
        let pgid = u.pgid.swap(0, Ordering::SeqCst);
        signal_group(pgid, rustix::process::Signal::KILL);
        if let Ok(mut slot) = u.commands.lock() {
            *slot = None;
        }
        let n = u.status.borrow().n_restarts;
        u.status.send_replace(dead_status(n));
        if let Some(dir) = self.dir.take() {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::debug!("removing {}: {e}", dir.display());
            }
        }
        u.running.store(false, Ordering::SeqCst);
    }
}

fn dead_status(n_restarts: u32) -> UnitStatus {
    UnitStatus {
        active: ActiveState::Inactive,
        sub: "dead".to_string(),
        n_restarts,
        main_pid: 0,
        queued: false,
    }
}

fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        // ESRCH (the group is gone) is the usual answer and fine.
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A private directory (mode 700) under the temporary directory with a datagram socket in it.
fn bind_notify_socket() -> io::Result<(PathBuf, UnixDatagram)> {
    let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("hearth-units-{}-{n}", std::process::id()));
    if dir.exists() {
        // Left behind by an earlier process with our PID.
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    match UnixDatagram::bind(dir.join("notify")) {
        Ok(socket) => Ok((dir, socket)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterStop {
    /// A manual restart: start again at once.
    Start,
    /// The child failed (start timeout) or stops by itself (`STOPPING=1`): restart
    /// automatically after `restart_sec`.
    AutoRestart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Dead,
    Failed,
    Starting {
        deadline: Instant,
    },
    Running,
    Reloading,
    Stopping {
        /// SIGKILL then; `None` once SIGKILLed.
        deadline: Option<Instant>,
        then: AfterStop,
    },
    AutoRestart {
        at: Instant,
    },
}

impl Phase {
    fn deadline(self) -> Option<Instant> {
        match self {
            Phase::Starting { deadline } => Some(deadline),
            Phase::Stopping { deadline, .. } => deadline,
            Phase::AutoRestart { at } => Some(at),
            Phase::Dead | Phase::Failed | Phase::Running | Phase::Reloading => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartKind {
    Manual,
    Auto,
}

enum Ev {
    Closed,
    Cmd(Cmd),
    Notify(io::Result<Vec<u8>>),
    Exit(io::Result<ExitStatus>),
    Timer,
}

struct Engine<'a> {
    u: &'a ProcessUnits,
    events: mpsc::Sender<UnitEvent>,
    /// Whether the owner asked to watch our unit.
    report: bool,
    socket: UnixDatagram,
    socket_path: PathBuf,
    cmds: mpsc::Receiver<Cmd>,
    phase: Phase,
    child: Option<Child>,
    /// Start/restart jobs waiting for the next start attempt to end.
    pending: Vec<oneshot::Sender<JobOutcome>>,
    /// When the starts within the start-limit interval happened.
    starts: VecDeque<Instant>,
    n_restarts: u32,
    readers: JoinSet<()>,
    outbox: Vec<UnitStatus>,
    last_sent: Option<UnitStatus>,
}

impl Engine<'_> {
    fn unit(&self) -> &str {
        &self.u.spec.unit
    }

    async fn run(&mut self) {
        self.start(StartKind::Manual);
        if self.events.send(UnitEvent::Connected).await.is_err() {
            self.shutdown().await;
            return;
        }
        self.flush().await;
        let mut buf = vec![0u8; 4096];
        loop {
            let deadline = self.phase.deadline();
            let ev = tokio::select! {
                () = self.events.closed() => Ev::Closed,
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => Ev::Cmd(cmd),
                    None => Ev::Closed,
                },
                r = self.socket.recv(&mut buf) => Ev::Notify(r.map(|n| buf[..n].to_vec())),
                st = wait_child(&mut self.child) => Ev::Exit(st),
                () = sleep_until(deadline) => Ev::Timer,
            };
            match ev {
                Ev::Closed => {
                    self.shutdown().await;
                    return;
                }
                Ev::Cmd(cmd) => self.on_command(cmd),
                Ev::Notify(Ok(msg)) => self.on_notify(&msg),
                Ev::Notify(Err(e)) => {
                    tracing::warn!(unit = %self.unit(), "notify socket: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Ev::Exit(st) => self.on_exit(st),
                Ev::Timer => self.on_timer(),
            }
            self.flush().await;
        }
    }

    /// Records a state; it is sent as an event by `flush`.
    fn set(&mut self, active: ActiveState, sub: &str) {
        let main_pid = self.child.as_ref().and_then(Child::id).unwrap_or(0);
        let status = UnitStatus {
            active,
            sub: sub.to_string(),
            n_restarts: self.n_restarts,
            main_pid,
            queued: false,
        };
        self.u.status.send_replace(status.clone());
        if self.report {
            self.outbox.push(status);
        }
    }

    fn republish(&mut self) {
        let current = self.u.status.borrow().clone();
        self.set(current.active, &current.sub);
    }

    async fn flush(&mut self) {
        let outbox = std::mem::take(&mut self.outbox);
        for status in outbox {
            if self.last_sent.as_ref() == Some(&status) {
                continue;
            }
            self.last_sent = Some(status.clone());
            let ev = UnitEvent::Status {
                unit: self.u.spec.unit.clone(),
                status,
            };
            if self.events.send(ev).await.is_err() {
                // The loop notices the closed channel next.
                return;
            }
        }
    }

    fn resolve(&mut self, outcome: &JobOutcome) {
        for tx in self.pending.drain(..) {
            let _ = tx.send(outcome.clone());
        }
    }

    fn start_limit_hit(&mut self, now: Instant) -> bool {
        let spec = &self.u.spec;
        if spec.start_limit_burst == 0 || spec.start_limit_interval.is_zero() {
            return false;
        }
        while let Some(&first) = self.starts.front() {
            if now.duration_since(first) >= spec.start_limit_interval {
                self.starts.pop_front();
            } else {
                break;
            }
        }
        self.starts.len() >= spec.start_limit_burst as usize
    }

    fn start(&mut self, kind: StartKind) {
        let now = Instant::now();
        if self.start_limit_hit(now) {
            tracing::error!(
                unit = %self.unit(),
                "start request repeated too quickly ({} starts within {:?}); giving up",
                self.u.spec.start_limit_burst,
                self.u.spec.start_limit_interval
            );
            self.phase = Phase::Failed;
            self.resolve(&JobOutcome::Failed);
            self.set(ActiveState::Failed, "failed");
            return;
        }
        self.starts.push_back(now);
        if kind == StartKind::Manual {
            self.n_restarts = 0;
        }
        match self.spawn() {
            Ok(pid) => {
                tracing::info!(unit = %self.unit(), pid, "started; waiting for READY=1");
                self.phase = Phase::Starting {
                    deadline: now + self.u.spec.ready_timeout,
                };
                self.set(ActiveState::Activating, "start");
            }
            Err(e) => {
                tracing::error!(
                    unit = %self.unit(),
                    "cannot start {}: {e}",
                    self.u.spec.program.display()
                );
                self.resolve(&JobOutcome::Failed);
                self.schedule_auto_restart();
            }
        }
    }

    fn spawn(&mut self) -> io::Result<u32> {
        // Anything an earlier child sent is stale now (it has been reaped).
        let mut scratch = [0u8; 512];
        while self.socket.try_recv(&mut scratch).is_ok() {}
        while self.readers.try_join_next().is_some() {}

        let spec = &self.u.spec;
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.workdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        for name in NOT_PASSED_ON {
            cmd.env_remove(name);
        }
        for (k, v) in &spec.env {
            if !NOT_PASSED_ON.iter().any(|n| OsStr::new(n) == k) {
                cmd.env(k, v);
            }
        }
        cmd.env("NOTIFY_SOCKET", &self.socket_path);
        let mut child = cmd.spawn()?;
        let pid = child.id().unwrap_or(0);
        self.u
            .pgid
            .store(i32::try_from(pid).unwrap_or(0), Ordering::SeqCst);

        let file = spec.log.as_ref().and_then(|path| match open_log(path) {
            Ok(f) => Some(Arc::new(Mutex::new(f))),
            Err(e) => {
                tracing::warn!(
                    unit = %spec.unit,
                    "cannot open {}: {e}; the output goes to our own stdout/stderr",
                    path.display()
                );
                None
            }
        });
        if let Some(out) = child.stdout.take() {
            let sink = Sink::new(file.clone(), OutputStream::Stdout);
            self.readers
                .spawn(pump(out, OutputStream::Stdout, sink, self.u.output.clone()));
        }
        if let Some(err) = child.stderr.take() {
            let sink = Sink::new(file, OutputStream::Stderr);
            self.readers
                .spawn(pump(err, OutputStream::Stderr, sink, self.u.output.clone()));
        }
        self.child = Some(child);
        Ok(pid)
    }

    fn schedule_auto_restart(&mut self) {
        self.phase = Phase::AutoRestart {
            at: Instant::now() + self.u.spec.restart_sec,
        };
        self.set(ActiveState::Activating, "auto-restart");
    }

    /// SIGTERM to the group; SIGKILL at the deadline.
    fn request_stop(&mut self, then: AfterStop) {
        self.u.kill_group(rustix::process::Signal::TERM);
        self.phase = Phase::Stopping {
            deadline: Some(Instant::now() + self.u.spec.stop_timeout),
            then,
        };
        self.set(ActiveState::Deactivating, "stop-sigterm");
    }

    fn on_command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Restart(tx) => {
                self.pending.push(tx);
                match self.phase {
                    Phase::Starting { .. } | Phase::Running | Phase::Reloading => {
                        tracing::info!(unit = %self.unit(), "restart requested");
                        self.request_stop(AfterStop::Start);
                    }
                    Phase::Stopping { deadline, .. } => {
                        self.phase = Phase::Stopping {
                            deadline,
                            then: AfterStop::Start,
                        };
                    }
                    Phase::AutoRestart { .. } | Phase::Dead | Phase::Failed => {
                        self.start(StartKind::Manual);
                    }
                }
            }
            Cmd::Start(tx) => match self.phase {
                Phase::Running | Phase::Reloading => {
                    let _ = tx.send(JobOutcome::Done);
                }
                Phase::Starting { .. } | Phase::Stopping { .. } | Phase::AutoRestart { .. } => {
                    self.pending.push(tx);
                }
                Phase::Dead | Phase::Failed => {
                    self.pending.push(tx);
                    self.start(StartKind::Manual);
                }
            },
            Cmd::ResetFailed(tx) => {
                self.starts.clear();
                self.n_restarts = 0;
                if self.phase == Phase::Failed {
                    self.phase = Phase::Dead;
                    self.set(ActiveState::Inactive, "dead");
                } else {
                    self.republish();
                }
                let _ = tx.send(());
            }
        }
    }

    fn on_notify(&mut self, msg: &[u8]) {
        let text = String::from_utf8_lossy(msg);
        for assignment in text.lines() {
            match assignment.trim() {
                "READY=1" => match self.phase {
                    Phase::Starting { .. } | Phase::Reloading => {
                        if matches!(self.phase, Phase::Starting { .. }) {
                            tracing::info!(unit = %self.unit(), "ready");
                        }
                        self.phase = Phase::Running;
                        self.set(ActiveState::Active, "running");
                        self.resolve(&JobOutcome::Done);
                    }
                    _ => tracing::debug!(unit = %self.unit(), "READY=1 ignored ({:?})", self.phase),
                },
                "RELOADING=1" => {
                    if self.phase == Phase::Running {
                        self.phase = Phase::Reloading;
                        self.set(ActiveState::Reloading, "reload");
                    }
                }
                "STOPPING=1" => match self.phase {
                    Phase::Starting { .. } | Phase::Running | Phase::Reloading => {
                        tracing::info!(unit = %self.unit(), "stopping by itself");
                        self.resolve(&JobOutcome::Failed);
                        self.phase = Phase::Stopping {
                            deadline: Some(Instant::now() + self.u.spec.stop_timeout),
                            then: AfterStop::AutoRestart,
                        };
                        self.set(ActiveState::Deactivating, "stop-sigterm");
                    }
                    _ => {}
                },
                other => tracing::debug!(unit = %self.unit(), "sd_notify: {other}"),
            }
        }
    }

    fn on_exit(&mut self, st: io::Result<ExitStatus>) {
        let pid = self.child.take().and_then(|c| c.id()).unwrap_or(0);
        // KillMode=control-group: nothing of the group outlives its main process.
        let pgid = self.u.pgid.swap(0, Ordering::SeqCst);
        signal_group(pgid, rustix::process::Signal::KILL);
        let how = describe(&st);
        match self.phase {
            Phase::Stopping { then, .. } => {
                tracing::info!(unit = %self.unit(), pid, "stopped ({how})");
                match then {
                    AfterStop::Start => self.start(StartKind::Manual),
                    AfterStop::AutoRestart => self.schedule_auto_restart(),
                }
            }
            Phase::Starting { .. } => {
                tracing::warn!(unit = %self.unit(), pid, "exited before READY=1 ({how})");
                self.resolve(&JobOutcome::Failed);
                self.schedule_auto_restart();
            }
            Phase::Running | Phase::Reloading => {
                tracing::warn!(unit = %self.unit(), pid, "exited ({how}); restarting");
                self.schedule_auto_restart();
            }
            Phase::Dead | Phase::Failed | Phase::AutoRestart { .. } => {
                // No child in these phases; nothing to do.
                tracing::debug!(unit = %self.unit(), pid, "unexpected exit ({how})");
            }
        }
    }

    fn on_timer(&mut self) {
        match self.phase {
            Phase::Starting { .. } => {
                tracing::warn!(
                    unit = %self.unit(),
                    "no READY=1 within {:?}; stopping it",
                    self.u.spec.ready_timeout
                );
                self.resolve(&JobOutcome::Timeout);
                self.request_stop(AfterStop::AutoRestart);
            }
            Phase::Stopping {
                deadline: Some(_),
                then,
            } => {
                tracing::warn!(
                    unit = %self.unit(),
                    "did not stop within {:?}; SIGKILL",
                    self.u.spec.stop_timeout
                );
                self.u.kill_group(rustix::process::Signal::KILL);
                self.phase = Phase::Stopping {
                    deadline: None,
                    then,
                };
                self.set(ActiveState::Deactivating, "stop-sigkill");
            }
            Phase::AutoRestart { .. } => {
                self.n_restarts = self.n_restarts.saturating_add(1);
                self.start(StartKind::Auto);
            }
            Phase::Stopping { deadline: None, .. }
            | Phase::Dead
            | Phase::Failed
            | Phase::Running
            | Phase::Reloading => {}
        }
    }

    /// The events receiver is gone: stop the child gracefully and end.
    async fn shutdown(&mut self) {
        self.resolve(&JobOutcome::Canceled);
        if let Some(mut child) = self.child.take() {
            let pid = child.id().unwrap_or(0);
            self.u.kill_group(rustix::process::Signal::TERM);
            let st = match tokio::time::timeout(self.u.spec.stop_timeout, child.wait()).await {
                Ok(st) => st,
                Err(_) => {
                    tracing::warn!(unit = %self.unit(), pid, "did not stop in time; SIGKILL");
                    self.u.kill_group(rustix::process::Signal::KILL);
                    // SIGKILL cannot be ignored, but a process stuck in the kernel (D state)
                    // dies late: don't hold up the supervisor's shutdown for it.
                    match tokio::time::timeout(Duration::from_secs(5), child.wait()).await {
                        Ok(st) => st,
                        Err(_) => Err(io::Error::other("still there 5 s after SIGKILL")),
                    }
                }
            };
            tracing::info!(unit = %self.unit(), pid, "stopped ({})", describe(&st));
        }
        let pgid = self.u.pgid.swap(0, Ordering::SeqCst);
        signal_group(pgid, rustix::process::Signal::KILL);
        self.phase = Phase::Dead;
        self.set(ActiveState::Inactive, "dead");
        // Let the readers hand on the last lines.
        let readers = &mut self.readers;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while readers.join_next().await.is_some() {}
        })
        .await;
    }
}

async fn wait_child(child: &mut Option<Child>) -> io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn describe(st: &io::Result<ExitStatus>) -> String {
    match st {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(code), _) => format!("status {code}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => st.to_string(),
        },
        Err(e) => format!("wait failed: {e}"),
    }
}

fn open_log(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Where a stream's lines go besides the broadcast channel.
enum Sink {
    File(Arc<Mutex<std::fs::File>>),
    Stdout,
    Stderr,
}

impl Sink {
    fn new(file: Option<Arc<Mutex<std::fs::File>>>, stream: OutputStream) -> Self {
        match (file, stream) {
            (Some(f), _) => Sink::File(f),
            (None, OutputStream::Stdout) => Sink::Stdout,
            (None, OutputStream::Stderr) => Sink::Stderr,
        }
    }

    /// Writes one whole line (with its line break), so lines of stdout and stderr never mix.
    fn write_line(&self, line: &[u8]) {
        let result = match self {
            Sink::File(f) => match f.lock() {
                Ok(mut f) => f.write_all(line),
                Err(_) => Ok(()),
            },
            Sink::Stdout => io::stdout().lock().write_all(line),
            Sink::Stderr => io::stderr().lock().write_all(line),
        };
        if let Err(e) = result {
            tracing::debug!("writing the child's output: {e}");
        }
    }
}

/// Copies one of the child's streams to its sink and the broadcast channel, line by line,
/// until EOF.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    stream: OutputStream,
    sink: Sink,
    lines: broadcast::Sender<OutputLine>,
) {
    let mut chunk = vec![0u8; 8192];
    let mut line: Vec<u8> = Vec::with_capacity(1024);
    let emit = |line: &mut Vec<u8>| {
        if line.last() != Some(&b'\n') {
            line.push(b'\n');
        }
        sink.write_line(line);
        let text = String::from_utf8_lossy(&line[..line.len() - 1]);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        // No receiver is fine.
        let _ = lines.send(OutputLine { stream, line: text });
        line.clear();
    };
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("reading the child's output: {e}");
                break;
            }
        };
        let mut rest = &chunk[..n];
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            line.extend_from_slice(&rest[..=pos]);
            emit(&mut line);
            rest = &rest[pos + 1..];
        }
        line.extend_from_slice(rest);
        if line.len() >= MAX_LINE {
            emit(&mut line);
        }
    }
    if !line.is_empty() {
        emit(&mut line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;

    const UNIT: &str = "matrix-synapse.service";

    /// The fake service. `argv[1]` is the mode; `SPAWN_LOG` gets one line (its PID) per start.
    const FAKE: &str = r#"
import os, signal, socket, subprocess, sys, time

mode = sys.argv[1]
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "spawns"), "a") as f:
    f.write(f"{os.getpid()}\n")

def notify(msg):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(msg, os.environ["NOTIFY_SOCKET"])
    s.close()

def on_term(signum, frame):
    try:
        notify(b"STOPPING=1")
    finally:
        os._exit(0)

signal.signal(signal.SIGTERM, on_term)
print(f"fake {mode} {os.getpid()}", flush=True)
print("to stderr", file=sys.stderr, flush=True)

if mode == "ready":
    notify(b"READY=1\nMAINPID=%d" % os.getpid())
elif mode == "slow-ready":
    time.sleep(0.5)
    notify(b"READY=1")
elif mode == "crash-once":
    marker = os.path.join(here, "crashed")
    notify(b"READY=1")
    if not os.path.exists(marker):
        open(marker, "w").close()
        time.sleep(0.3)
        sys.exit(1)
elif mode == "crash":
    sys.exit(3)
elif mode == "noready":
    pass
elif mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    notify(b"READY=1")
elif mode == "env":
    with open(os.path.join(here, "env"), "w") as f:
        for k in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "HEARTH_TEST"]:
            f.write(f"{k}={os.environ.get(k, '<unset>')}\n")
    notify(b"READY=1")
elif mode == "grandchild":
    p = subprocess.Popen(["sleep", "1000"])
    with open(os.path.join(here, "grandchild"), "w") as f:
        f.write(str(p.pid))
    notify(b"READY=1")
elif mode == "stop-self":
    notify(b"READY=1")
    time.sleep(0.3)
    notify(b"STOPPING=1")
    time.sleep(0.3)
    sys.exit(0)
while True:
    time.sleep(1)
"#;

    struct Fixture {
        dir: tempfile::TempDir,
        units: Arc<ProcessUnits>,
        events: mpsc::Receiver<UnitEvent>,
        task: Option<tokio::task::JoinHandle<()>>,
    }

    /// The interpreter behind `python3` (pyenv's shim alone takes a quarter of a second).
    fn python() -> PathBuf {
        static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
        PYTHON
            .get_or_init(|| {
                let out = std::process::Command::new("python3")
                    .args(["-c", "import sys; print(sys.executable)"])
                    .output()
                    .unwrap();
                PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
            })
            .clone()
    }

    fn spec(dir: &Path, mode: &str) -> ProcessSpec {
        let mut spec = ProcessSpec::new(UNIT, python());
        spec.args = vec![dir.join("fake.py").into(), mode.into()];
        spec.workdir = dir.to_path_buf();
        spec.restart_sec = Duration::from_millis(100);
        spec.start_limit_burst = 5;
        spec.start_limit_interval = Duration::from_secs(30);
        spec.stop_timeout = Duration::from_millis(500);
        spec.ready_timeout = Duration::from_secs(5);
        spec.log = Some(dir.join("out.log"));
        spec
    }

    fn fixture(mode: &str, tweak: impl FnOnce(&mut ProcessSpec)) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fake.py"), FAKE).unwrap();
        let mut spec = spec(dir.path(), mode);
        tweak(&mut spec);
        let units = Arc::new(ProcessUnits::new(spec));
        let (tx, events) = mpsc::channel(256);
        let u = units.clone();
        let task = tokio::spawn(async move { u.watch(vec![UNIT.to_string()], tx).await });
        Fixture {
            dir,
            units,
            events,
            task: Some(task),
        }
    }

    impl Fixture {
        async fn wait_for(&self, what: &str, f: impl FnMut(&UnitStatus) -> bool) -> UnitStatus {
            let mut rx = self.units.subscribe();
            let got = match tokio::time::timeout(Duration::from_secs(8), rx.wait_for(f)).await {
                Ok(Ok(s)) => Some(s.clone()),
                _ => None,
            };
            match got {
                Some(s) => s,
                None => panic!(
                    "timed out waiting for {what}; now {:?}",
                    self.status().await
                ),
            }
        }

        async fn status(&self) -> UnitStatus {
            self.units.status(UNIT).await.unwrap()
        }

        fn spawns(&self) -> Vec<u32> {
            std::fs::read_to_string(self.dir.path().join("spawns"))
                .unwrap_or_default()
                .lines()
                .map(|l| l.parse().unwrap())
                .collect()
        }

        /// The statuses reported so far.
        fn drain_events(&mut self) -> Vec<(ActiveState, String)> {
            let mut out = Vec::new();
            while let Ok(ev) = self.events.try_recv() {
                if let UnitEvent::Status { unit, status } = ev {
                    assert_eq!(unit, UNIT);
                    out.push((status.active, status.sub));
                }
            }
            out
        }
    }

    fn active(s: &UnitStatus) -> bool {
        s.active == ActiveState::Active
    }

    /// Gone, or a zombie nobody reaped yet (e.g. a grandchild whose parent here is init).
    fn gone(pid: u32) -> bool {
        let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
            return true;
        };
        if rustix::process::test_kill_process(p).is_err() {
            return true;
        }
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        }
    }

    async fn wait_gone(pid: u32) {
        let t0 = StdInstant::now();
        while !gone(pid) {
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "process {pid} still alive"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn starts_activating_then_active_on_ready() {
        let mut fx = fixture("slow-ready", |_| {});
        let s = fx
            .wait_for("activating", |s| s.active == ActiveState::Activating)
            .await;
        assert_eq!(s.sub, "start");
        assert_ne!(s.main_pid, 0);
        let s = fx.wait_for("active", active).await;
        assert_eq!(s.sub, "running");
        assert_eq!(s.n_restarts, 0);
        assert_eq!(fx.spawns(), vec![s.main_pid]);
        // Connected first, then the statuses in order.
        let first = fx.events.recv().await.unwrap();
        assert_eq!(first, UnitEvent::Connected);
        assert_eq!(
            fx.drain_events(),
            vec![
                (ActiveState::Activating, "start".to_string()),
                (ActiveState::Active, "running".to_string())
            ]
        );
        assert_eq!(fx.units.start(UNIT).await.unwrap(), JobOutcome::Done);
    }

    #[tokio::test]
    async fn output_goes_to_log_and_channel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("fake.py"), FAKE).unwrap();
        let units = Arc::new(ProcessUnits::new(spec(dir.path(), "ready")));
        let mut lines = units.output();
        let (tx, _rx) = mpsc::channel(64);
        let u = units.clone();
        let task = tokio::spawn(async move { u.watch(vec![UNIT.to_string()], tx).await });
        let mut got = Vec::new();
        while got.len() < 2 {
            let l = tokio::time::timeout(Duration::from_secs(5), lines.recv())
                .await
                .unwrap()
                .unwrap();
            got.push(l);
        }
        assert!(got.contains(&OutputLine {
            stream: OutputStream::Stderr,
            line: "to stderr".to_string()
        }));
        assert!(got
            .iter()
            .any(|l| l.stream == OutputStream::Stdout && l.line.starts_with("fake ready ")));
        let log = std::fs::read_to_string(dir.path().join("out.log")).unwrap();
        assert!(
            log.contains("to stderr\n") && log.contains("fake ready "),
            "{log}"
        );
        task.abort();
    }

    #[tokio::test]
    async fn crash_restarts_automatically() {
        let mut fx = fixture("crash-once", |_| {});
        let first = fx.wait_for("active", active).await.main_pid;
        let s = fx
            .wait_for("auto-restart", |s| s.sub == "auto-restart")
            .await;
        assert_eq!(s.active, ActiveState::Activating);
        assert_eq!(s.main_pid, 0);
        let s = fx
            .wait_for("active again", |s| active(s) && s.main_pid != first)
            .await;
        assert_eq!(s.n_restarts, 1);
        assert_eq!(fx.spawns().len(), 2);
        let events = fx.drain_events();
        assert!(
            events.contains(&(ActiveState::Activating, "auto-restart".to_string())),
            "{events:?}"
        );
        // A manual restart does not count, and flushes the counter (systemd's flush_n_restarts).
        assert_eq!(fx.units.restart(UNIT).await.unwrap(), JobOutcome::Done);
        assert_eq!(fx.status().await.n_restarts, 0);
    }

    #[tokio::test]
    async fn crash_loop_ends_failed_until_reset() {
        let fx = fixture("crash", |s| s.start_limit_burst = 3);
        let s = fx
            .wait_for("failed", |s| s.active == ActiveState::Failed)
            .await;
        assert_eq!(s.sub, "failed");
        assert_eq!(s.main_pid, 0);
        assert_eq!(s.n_restarts, 3);
        assert_eq!(fx.spawns().len(), 3);
        // It stays down.
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(fx.spawns().len(), 3);
        assert_eq!(fx.status().await.active, ActiveState::Failed);
        // Starting again is refused while the limit holds...
        assert_eq!(fx.units.start(UNIT).await.unwrap(), JobOutcome::Failed);
        assert_eq!(fx.spawns().len(), 3);
        // ...and allowed after reset_failed (it crashes again, so the job fails).
        fx.units.reset_failed(UNIT).await.unwrap();
        let s = fx.status().await;
        assert_eq!(
            (s.active, s.sub.as_str(), s.n_restarts),
            (ActiveState::Inactive, "dead", 0)
        );
        assert_eq!(fx.units.start(UNIT).await.unwrap(), JobOutcome::Failed);
        assert_eq!(fx.spawns().len(), 4);
    }

    #[tokio::test]
    async fn restart_waits_for_ready() {
        let fx = fixture("slow-ready", |_| {});
        let first = fx.wait_for("active", active).await.main_pid;
        let t0 = StdInstant::now();
        assert_eq!(fx.units.restart(UNIT).await.unwrap(), JobOutcome::Done);
        assert!(
            t0.elapsed() >= Duration::from_millis(500),
            "{:?}",
            t0.elapsed()
        );
        let s = fx.status().await;
        assert!(active(&s), "{s:?}");
        assert_ne!(s.main_pid, first);
        assert_eq!(s.n_restarts, 0);
        wait_gone(first).await;
    }

    #[tokio::test]
    async fn restart_kills_a_child_that_ignores_sigterm() {
        let fx = fixture("ignore-term", |s| {
            s.stop_timeout = Duration::from_millis(300)
        });
        let first = fx.wait_for("active", active).await.main_pid;
        let units = fx.units.clone();
        let job = tokio::spawn(async move { units.restart(UNIT).await });
        fx.wait_for("stop-sigterm", |s| s.sub == "stop-sigterm")
            .await;
        fx.wait_for("stop-sigkill", |s| s.sub == "stop-sigkill")
            .await;
        let t0 = StdInstant::now();
        assert_eq!(job.await.unwrap().unwrap(), JobOutcome::Done);
        assert!(t0.elapsed() < Duration::from_secs(3));
        wait_gone(first).await;
        assert_ne!(fx.status().await.main_pid, first);
    }

    #[tokio::test]
    async fn no_ready_times_out_and_fails() {
        let fx = fixture("noready", |s| {
            s.ready_timeout = Duration::from_millis(800);
            s.start_limit_burst = 2;
        });
        fx.wait_for("activating", |s| s.sub == "start").await;
        // The initial start is in progress: start joins it and ends with its outcome.
        assert_eq!(fx.units.start(UNIT).await.unwrap(), JobOutcome::Timeout);
        let s = fx
            .wait_for("failed", |s| s.active == ActiveState::Failed)
            .await;
        // As systemd: NRestarts counts the restart whose start then hit the limit.
        assert_eq!(s.n_restarts, 2);
        let spawns = fx.spawns();
        assert_eq!(spawns.len(), 2);
        for pid in spawns {
            wait_gone(pid).await;
        }
    }

    #[tokio::test]
    async fn restart_times_out_without_ready() {
        let fx = fixture("noready", |s| s.ready_timeout = Duration::from_millis(300));
        fx.wait_for("activating", |s| s.sub == "start").await;
        // Restarting during the start: one merged job, which times out.
        assert_eq!(fx.units.restart(UNIT).await.unwrap(), JobOutcome::Timeout);
    }

    #[tokio::test]
    async fn stopping_by_itself_is_restarted() {
        let mut fx = fixture("stop-self", |_| {});
        let first = fx.wait_for("active", active).await.main_pid;
        fx.wait_for("deactivating", |s| s.active == ActiveState::Deactivating)
            .await;
        let s = fx
            .wait_for("active again", |s| active(s) && s.main_pid != first)
            .await;
        assert_eq!(s.n_restarts, 1);
        let events = fx.drain_events();
        let subs: Vec<&str> = events.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(
            subs,
            [
                "start",
                "running",
                "stop-sigterm",
                "auto-restart",
                "start",
                "running"
            ]
        );
    }

    #[tokio::test]
    async fn child_environment() {
        let fx = fixture("env", |s| {
            s.env = vec![
                ("HEARTH_TEST".into(), "yes".into()),
                ("WATCHDOG_USEC".into(), "1000000".into()),
                ("WATCHDOG_PID".into(), "1".into()),
                ("NOTIFY_SOCKET".into(), "/nonexistent/notify".into()),
            ];
        });
        // READY=1 arrived, so the child's NOTIFY_SOCKET is ours.
        fx.wait_for("active", active).await;
        let env = std::fs::read_to_string(fx.dir.path().join("env")).unwrap();
        let sock = env
            .lines()
            .find_map(|l| l.strip_prefix("NOTIFY_SOCKET="))
            .unwrap();
        assert!(
            sock.starts_with(std::env::temp_dir().to_str().unwrap()) && sock.ends_with("/notify"),
            "{env}"
        );
        assert!(env.contains("WATCHDOG_USEC=<unset>\n"), "{env}");
        assert!(env.contains("WATCHDOG_PID=<unset>\n"), "{env}");
        assert!(env.contains("HEARTH_TEST=yes\n"), "{env}");
    }

    #[tokio::test]
    async fn dropping_watch_leaves_no_process() {
        let mut fx = fixture("grandchild", |_| {});
        let pid = fx.wait_for("active", active).await.main_pid;
        let grandchild: u32 = std::fs::read_to_string(fx.dir.path().join("grandchild"))
            .unwrap()
            .parse()
            .unwrap();
        assert!(!gone(pid) && !gone(grandchild));
        let socket_dir = {
            let env_dir = std::env::temp_dir();
            std::fs::read_dir(&env_dir)
                .unwrap()
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with(&format!("hearth-units-{}-", std::process::id()))
                    })
                })
                .count()
        };
        assert!(socket_dir >= 1);
        // The owner's task is cancelled: the future is dropped mid-flight.
        let task = fx.task.take().unwrap();
        task.abort();
        let _ = task.await;
        wait_gone(pid).await;
        wait_gone(grandchild).await;
        let s = fx.status().await;
        assert_eq!((s.active, s.main_pid), (ActiveState::Inactive, 0));
        // Commands now say the loop is gone.
        assert_eq!(fx.units.restart(UNIT).await, Err(not_running()));
    }

    #[tokio::test]
    async fn watch_returns_when_events_are_dropped() {
        let mut fx = fixture("ready", |_| {});
        let pid = fx.wait_for("active", active).await.main_pid;
        let (_, placeholder) = mpsc::channel(1);
        drop(std::mem::replace(&mut fx.events, placeholder));
        let task = fx.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(3), task)
            .await
            .unwrap()
            .unwrap();
        // Stopped gracefully: our fake answers SIGTERM with STOPPING=1 and status 0.
        wait_gone(pid).await;
        let log = std::fs::read_to_string(fx.dir.path().join("out.log")).unwrap();
        assert!(log.contains("fake ready"), "{log}");
    }

    #[tokio::test]
    async fn unknown_unit_and_not_running() {
        let units = ProcessUnits::new(ProcessSpec::new(UNIT, "/bin/false"));
        let other = "postgresql.service";
        let no = UnitError::NoSuchUnit(other.to_string());
        assert_eq!(units.status(other).await, Err(no.clone()));
        assert_eq!(units.restart(other).await, Err(no.clone()));
        assert_eq!(units.start(other).await, Err(no.clone()));
        assert_eq!(units.reset_failed(other).await, Err(no));
        // Before watch runs: inactive, and commands say so.
        let s = units.status(UNIT).await.unwrap();
        assert_eq!((s.active, s.sub.as_str()), (ActiveState::Inactive, "dead"));
        assert_eq!(units.restart(UNIT).await, Err(not_running()));
        assert_eq!(units.start(UNIT).await, Err(not_running()));
        assert_eq!(units.reset_failed(UNIT).await, Err(not_running()));
    }

    #[tokio::test]
    async fn missing_program_is_a_failed_start() {
        let fx = fixture("ready", |s| {
            s.program = "/nonexistent/synapse".into();
            s.start_limit_burst = 2;
        });
        let s = fx
            .wait_for("failed", |s| s.active == ActiveState::Failed)
            .await;
        assert_eq!(s.n_restarts, 2);
    }

    /// The real developer Synapse (scripts/dev-synapse) through this backend. Run by hand:
    /// `HEARTH_REAL_SYNAPSE=1 cargo test -p hearth-supervisor real_synapse -- --nocapture`.
    #[tokio::test]
    async fn real_synapse() {
        if std::env::var_os("HEARTH_REAL_SYNAPSE").is_none() {
            eprintln!("skipped: set HEARTH_REAL_SYNAPSE=1 to run the real Synapse");
            return;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let t0 = StdInstant::now();
        let ok = std::process::Command::new(root.join("scripts/dev-synapse"))
            .status()
            .unwrap();
        assert!(ok.success());
        eprintln!("dev-synapse: {:?}", t0.elapsed());
        let dir = root.join("var/synapse");
        let mut spec = ProcessSpec::new(UNIT, dir.join("venv/bin/python"));
        spec.args = ["-m", "synapse.app.homeserver", "-c", "homeserver.yaml"]
            .iter()
            .map(OsString::from)
            .collect();
        spec.env = vec![("TZ".into(), "UTC".into())];
        spec.workdir = dir.clone();
        spec.stop_timeout = Duration::from_secs(20);
        let units = Arc::new(ProcessUnits::new(spec));
        let mut lines = units.output();
        let (tx, _rx) = mpsc::channel(64);
        let u = units.clone();
        let t0 = StdInstant::now();
        let task = tokio::spawn(async move { u.watch(vec![UNIT.to_string()], tx).await });
        let mut st = units.subscribe();
        let s = tokio::time::timeout(
            Duration::from_secs(120),
            st.wait_for(|s| {
                s.active == ActiveState::Active
                    || s.active == ActiveState::Failed
                    || s.sub == "auto-restart"
            }),
        )
        .await
        .unwrap()
        .unwrap()
        .clone();
        assert!(active(&s), "{s:?}");
        eprintln!(
            "REAL SYNAPSE: READY after {:?} (pid {})",
            t0.elapsed(),
            s.main_pid
        );
        let api =
            crate::synapse_api::SynapseApi::new("http://127.0.0.1:8008", Duration::from_secs(10));
        let health = api.get("/health", None).await.unwrap();
        assert_eq!(health.body, "OK");
        // /health is logged at DEBUG by Synapse; this one gets an access line.
        let versions = api.get("/_matrix/client/versions", None).await.unwrap();
        assert!(versions.ok());
        let access = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let l = lines.recv().await.unwrap();
                if l.line.contains("synapse.access.http.8008")
                    && l.line.contains("/_matrix/client/versions")
                {
                    return l;
                }
            }
        })
        .await
        .unwrap();
        eprintln!("REAL SYNAPSE access line: {}", access.line);
        let t1 = StdInstant::now();
        assert_eq!(units.restart(UNIT).await.unwrap(), JobOutcome::Done);
        eprintln!("REAL SYNAPSE: restart took {:?}", t1.elapsed());
        let pid = units.status(UNIT).await.unwrap().main_pid;
        task.abort();
        let _ = task.await;
        wait_gone(pid).await;
    }
}
