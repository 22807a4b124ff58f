//! The health monitor: feeds unit events, probes, the maintenance switch and time into one
//! [`Machine`] per watched unit, carries out their actions through [`UnitControl`], and publishes
//! what the page and the LED show.
//!
//! Synapse's machine is told its dependency is down when the database unit is not active or the
//! database probe keeps failing, so "Synapse is down because PostgreSQL is" is said as such and
//! no futile restart of Synapse is tried.
//!
//! Before the server's permanent name is chosen (`server_name_file` absent) Synapse is inactive
//! on purpose: its machines are told so (`Input::NameChosen`), and the report says the box
//! waits for its setup (the LED shows steady: ready for the family).

use super::machine::{Action, Health, Incident, Input, Machine, Policy, Probe, View};
use super::probe::Synapse;
use super::unit::{ActiveState, UnitControl, UnitEvent};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorConfig {
    pub synapse_unit: String,
    /// PostgreSQL's unit; `None` when Synapse runs on SQLite.
    pub database_unit: Option<String>,
    /// Synapse's worker units, watched like Synapse itself.
    pub workers: Vec<String>,
    pub probe_interval: Duration,
    pub policy: Policy,
    /// The maintenance switch: restarts are suspended while this file exists.
    pub maintenance_file: PathBuf,
    /// The chosen server name (`/etc/hearth/server_name`); `None` where the name is not
    /// chosen on the page (a developer's Synapse has its own).
    pub server_name_file: Option<PathBuf>,
}

/// One unit as the status API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitReport {
    pub name: String,
    pub view: View,
}

/// What the monitor publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// Synapse's state (which includes its database's).
    pub state: Health,
    pub reason: String,
    pub units: Vec<UnitReport>,
    /// Wall-clock Unix ms of the last restart of any watched unit.
    pub last_restart_ms: Option<i64>,
    pub maintenance: bool,
    /// No name chosen yet: Synapse waits for `/setup`.
    pub awaiting_setup: bool,
}

#[derive(Debug, Clone, Default)]
pub struct SharedHealth(Arc<Mutex<Option<HealthReport>>>);

impl SharedHealth {
    pub fn get(&self) -> MutexGuard<'_, Option<HealthReport>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    pub(crate) fn set(&self, r: HealthReport) {
        *self.get() = Some(r);
    }
}

struct Watched {
    name: String,
    machine: Machine,
}

/// Run the monitor until `token` is cancelled. `events` come from `UnitControl::watch`, which
/// the owner runs beside this future.
#[allow(clippy::too_many_arguments)]
pub async fn run<U: UnitControl>(
    units: Arc<U>,
    mut events: mpsc::Receiver<UnitEvent>,
    synapse: Synapse,
    cfg: MonitorConfig,
    shared: SharedHealth,
    led_health: watch::Sender<Option<crate::led::Signal>>,
    now: Arc<dyn Fn() -> Duration + Send + Sync>,
    wall_ms: Arc<dyn Fn() -> i64 + Send + Sync>,
    token: CancellationToken,
) {
    let mut watched: Vec<Watched> = std::iter::once((cfg.synapse_unit.clone(), true))
        .chain(cfg.workers.iter().map(|w| (w.clone(), false)))
        .chain(cfg.database_unit.iter().map(|d| (d.clone(), false)))
        .map(|(name, probed)| Watched {
            name,
            machine: Machine::new(cfg.policy.clone(), probed),
        })
        .collect();
    let (done_tx, mut done_rx) =
        mpsc::channel::<(usize, Result<super::unit::JobOutcome, String>)>(8);
    let mut tick = tokio::time::interval(cfg.probe_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut db_misses = 0u32;
    let mut db_reason: Option<String> = None;
    let mut last_restart_ms: Option<i64> = None;
    let mut maintenance = crate::maintenance::is_on(&cfg.maintenance_file);
    let name_chosen = || {
        cfg.server_name_file
            .as_deref()
            .is_none_or(|f| crate::name::chosen(f).is_some())
    };
    let mut named = name_chosen();
    // The name concerns Synapse and its workers, not the database.
    let named_units: Vec<usize> = (0..watched.len())
        .filter(|&i| Some(&watched[i].name) != cfg.database_unit.as_ref())
        .collect();
    for w in &mut watched {
        w.machine.step(now(), Input::Maintenance(maintenance));
    }
    for &i in &named_units {
        watched[i].machine.step(now(), Input::NameChosen(named));
    }
    // Restart jobs run beside the loop; they end on their own (bounded by the job timeout).
    let jobs = tokio_util::task::TaskTracker::new();

    loop {
        let mut inputs: Vec<(Option<usize>, Input)> = Vec::new();
        tokio::select! {
            _ = token.cancelled() => break,
            ev = events.recv() => match ev {
                None => break,
                Some(UnitEvent::Status { unit, status }) => {
                    if let Some(i) = watched.iter().position(|w| w.name == unit) {
                        inputs.push((Some(i), Input::Unit(status)));
                    }
                }
                Some(UnitEvent::Disconnected { reason }) => {
                    tracing::warn!("lost the service manager: {reason}");
                    inputs.push((None, Input::ManagerLost(Some(reason))));
                }
                Some(UnitEvent::Connected) => inputs.push((None, Input::ManagerLost(None))),
            },
            Some((i, outcome)) = done_rx.recv() => inputs.push((Some(i), Input::JobDone(outcome))),
            _ = tick.tick() => {
                let m = crate::maintenance::is_on(&cfg.maintenance_file);
                if m != maintenance {
                    tracing::info!(on = m, "maintenance switch");
                    maintenance = m;
                    inputs.push((None, Input::Maintenance(m)));
                }
                let n = name_chosen();
                if n != named {
                    tracing::info!(chosen = n, "server name");
                    named = n;
                    for &i in &named_units {
                        inputs.push((Some(i), Input::NameChosen(n)));
                    }
                }
                let (live, db) = tokio::join!(synapse.liveness(), synapse.database());
                // The database probe goes through Synapse: it says something about the
                // database only while Synapse itself answers. A hung Synapse misses both, and
                // that is Synapse's fault (restart), not its database's (wait).
                let alive = matches!(live, Probe::Answered { .. });
                inputs.push((Some(0), Input::Probe(live)));
                match db {
                    Some(Probe::Answered { .. }) => { db_misses = 0; db_reason = None; }
                    Some(Probe::Missed { reason }) if alive => { db_misses += 1; db_reason = Some(reason); }
                    Some(Probe::Missed { .. }) | None => {}
                }
                inputs.push((None, Input::Tick));
            }
        }
        // Synapse's dependency: the database unit, and the database probe.
        let db_unit_down = cfg.database_unit.as_ref().and_then(|d| {
            let w = watched.iter().find(|w| &w.name == d)?;
            let v = w.machine.view();
            (v.active != ActiveState::Active && v.active != ActiveState::Unknown)
                .then(|| format!("{d} is {}", v.active.as_str()))
        });
        let dependency = db_unit_down.or_else(|| {
            (db_misses >= 2).then(|| {
                format!(
                    "the database does not answer: {}",
                    db_reason.clone().unwrap_or_default()
                )
            })
        });
        inputs.push((Some(0), Input::Dependency(dependency)));

        let t = now();
        for (target, input) in inputs {
            let targets: Vec<usize> = match target {
                Some(i) => vec![i],
                None => (0..watched.len()).collect(),
            };
            for i in targets {
                let actions = watched[i].machine.step(t, input.clone());
                for action in actions {
                    let name = watched[i].name.clone();
                    match action {
                        Action::Restart { reason } => {
                            tracing::warn!(unit = %name, "restarting: {reason}");
                            last_restart_ms = Some(wall_ms());
                            let (u, tx) = (units.clone(), done_tx.clone());
                            jobs.spawn(async move {
                                let r = u.restart(&name).await.map_err(|e| e.to_string());
                                let _ = tx.send((i, r)).await;
                            });
                        }
                        Action::Start {
                            reason,
                            reset_failed,
                        } => {
                            tracing::warn!(unit = %name, "starting: {reason}");
                            last_restart_ms = Some(wall_ms());
                            let (u, tx) = (units.clone(), done_tx.clone());
                            jobs.spawn(async move {
                                if reset_failed {
                                    if let Err(e) = u.reset_failed(&name).await {
                                        tracing::warn!(unit = %name, "reset-failed: {e}");
                                    }
                                }
                                let r = u.start(&name).await.map_err(|e| e.to_string());
                                let _ = tx.send((i, r)).await;
                            });
                        }
                        Action::Recovered(incident) => {
                            let text = notice_text(&name, &incident, &*wall_ms, &*now);
                            tracing::info!(unit = %name, "{text}");
                            let s = synapse.clone();
                            jobs.spawn(async move {
                                if s.has_token() {
                                    match s.notify_admins(&text).await {
                                        Ok(n) => tracing::info!(admins = n, "server notice sent"),
                                        Err(e) => tracing::warn!("server notice not sent: {e}"),
                                    }
                                }
                            });
                        }
                    }
                }
            }
        }
        // Restarts observed (systemd's own) also count as "last restart".
        let units_report: Vec<UnitReport> = watched
            .iter()
            .map(|w| UnitReport {
                name: w.name.clone(),
                view: w.machine.view(),
            })
            .collect();
        let main = &units_report[0].view;
        let report = HealthReport {
            state: main.state,
            reason: main.reason.clone(),
            units: units_report.clone(),
            last_restart_ms: last_restart_ms.or_else(|| {
                units_report
                    .iter()
                    .filter_map(|u| u.view.last_restart)
                    .max()
                    .map(|t| wall_ms() - (now().saturating_sub(t)).as_millis() as i64)
            }),
            maintenance,
            awaiting_setup: main.awaiting_setup,
        };
        let _ = led_health.send(Some(crate::led::Signal {
            health: report.state,
            maintenance: report.maintenance,
            awaiting_setup: report.awaiting_setup,
        }));
        if shared.get().as_ref() != Some(&report) {
            shared.set(report);
        }
    }
    jobs.close();
    jobs.wait().await;
}

/// The server notice after a recovery, in the words a family admin reads on their phone.
fn notice_text(
    unit: &str,
    i: &Incident,
    wall_ms: &dyn Fn() -> i64,
    now: &dyn Fn() -> Duration,
) -> String {
    let at = |t: Duration| {
        let ms = wall_ms() - now().saturating_sub(t).as_millis() as i64;
        chrono::DateTime::from_timestamp_millis(ms)
            .map(|d| {
                d.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S %Z")
                    .to_string()
            })
            .unwrap_or_else(|| "an unknown time".into())
    };
    let mut s = format!("hearth: {unit} {} at {}", i.reason, at(i.began));
    if let Some(r) = i.restarted_at {
        s += &format!("; it was restarted at {}", at(r));
    }
    s += &format!(" and has been healthy again since {}.", at(i.recovered));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::unit::{JobOutcome, UnitError, UnitStatus};
    use axum::routing::get;
    use axum::Router;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A service manager in memory: restarts emit the transitions systemd would.
    struct FakeUnits {
        events: mpsc::Sender<UnitEvent>,
        restarts: Mutex<Vec<String>>,
        hung: Arc<AtomicBool>,
    }

    fn status(active: &str, sub: &str) -> UnitStatus {
        UnitStatus {
            active: ActiveState::parse(active),
            sub: sub.into(),
            n_restarts: 0,
            main_pid: 42,
            queued: false,
        }
    }

    impl UnitControl for FakeUnits {
        async fn status(&self, _unit: &str) -> Result<UnitStatus, UnitError> {
            Ok(status("active", "running"))
        }
        async fn restart(&self, unit: &str) -> Result<JobOutcome, UnitError> {
            self.restarts.lock().unwrap().push(unit.to_string());
            for (a, s) in [
                ("deactivating", "stop-sigterm"),
                ("activating", "start"),
                ("active", "running"),
            ] {
                let _ = self
                    .events
                    .send(UnitEvent::Status {
                        unit: unit.into(),
                        status: status(a, s),
                    })
                    .await;
                if a == "activating" {
                    // The new process answers again.
                    self.hung.store(false, Ordering::SeqCst);
                }
            }
            Ok(JobOutcome::Done)
        }
        async fn start(&self, unit: &str) -> Result<JobOutcome, UnitError> {
            self.restart(unit).await
        }
        async fn reset_failed(&self, _unit: &str) -> Result<(), UnitError> {
            Ok(())
        }
        async fn watch(&self, _units: Vec<String>, _events: mpsc::Sender<UnitEvent>) {}
    }

    #[tokio::test]
    async fn a_hung_synapse_is_restarted_through_the_unit_control_and_reported_healthy_again() {
        let hung = Arc::new(AtomicBool::new(false));
        let h = hung.clone();
        let answer = move || {
            let h = h.clone();
            async move {
                if h.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                }
                "OK"
            }
        };
        // A hung Synapse misses the database probe too (it goes through Synapse's admin API):
        // that must still be a hang (restart), not "the database does not answer".
        let app = Router::new()
            .route("/health", get(answer.clone()))
            .route("/_synapse/admin/v2/users", get(answer));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });

        let (tx, rx) = mpsc::channel(16);
        let units = Arc::new(FakeUnits {
            events: tx.clone(),
            restarts: Mutex::new(Vec::new()),
            hung: hung.clone(),
        });
        let dir = tempfile::tempdir().unwrap();
        let cfg = MonitorConfig {
            synapse_unit: "matrix-synapse.service".into(),
            database_unit: None,
            workers: vec![],
            probe_interval: Duration::from_millis(100),
            policy: Policy {
                start_grace: Duration::from_millis(200),
                ..Policy::default()
            },
            maintenance_file: dir.path().join("maintenance"),
            server_name_file: None,
        };
        let shared = SharedHealth::default();
        let (led_tx, _led_rx) = watch::channel(None);
        let token = CancellationToken::new();
        let t0 = std::time::Instant::now();
        let task = tokio::spawn(run(
            units.clone(),
            rx,
            Synapse::new(
                &base,
                Duration::from_millis(100),
                crate::health::probe::AdminToken::fixed(Some("token".into())),
            ),
            cfg,
            shared.clone(),
            led_tx,
            Arc::new(move || t0.elapsed()),
            Arc::new(|| 0),
            token.clone(),
        ));
        tx.send(UnitEvent::Connected).await.unwrap();
        tx.send(UnitEvent::Status {
            unit: "matrix-synapse.service".into(),
            status: status("active", "running"),
        })
        .await
        .unwrap();
        let wait_for = |want: Health| {
            let shared = shared.clone();
            async move {
                for _ in 0..100 {
                    if shared.get().as_ref().map(|r| r.state) == Some(want) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                panic!("never {want:?}: {:?}", shared.get());
            }
        };
        wait_for(Health::Healthy).await;
        assert!(units.restarts.lock().unwrap().is_empty());
        // Hang it (SIGSTOP-like: the port accepts, nothing answers).
        hung.store(true, Ordering::SeqCst);
        // Down is passed through quickly; what matters is the restart, then healthy again.
        for _ in 0..100 {
            if !units.restarts.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        wait_for(Health::Healthy).await;
        assert_eq!(*units.restarts.lock().unwrap(), ["matrix-synapse.service"]);
        let report = shared.get().clone().unwrap();
        assert_eq!(report.units[0].view.supervisor_restarts, 1);
        assert_eq!(report.units[0].view.restarts, 1);
        // Maintenance on: a hang is not restarted.
        std::fs::write(dir.path().join("maintenance"), "").unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        hung.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            units.restarts.lock().unwrap().len(),
            1,
            "no restart in maintenance"
        );
        assert!(shared.get().as_ref().unwrap().maintenance);
        token.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn before_the_name_is_chosen_the_box_waits_for_setup_with_a_steady_led() {
        let app = Router::new().route("/health", get(|| async { "OK" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        let (tx, rx) = mpsc::channel(16);
        let units = Arc::new(FakeUnits {
            events: tx.clone(),
            restarts: Mutex::new(Vec::new()),
            hung: Arc::new(AtomicBool::new(false)),
        });
        let dir = tempfile::tempdir().unwrap();
        let name_file = dir.path().join("server_name");
        let cfg = MonitorConfig {
            synapse_unit: "matrix-synapse.service".into(),
            database_unit: None,
            workers: vec![],
            probe_interval: Duration::from_millis(50),
            policy: Policy::default(),
            maintenance_file: dir.path().join("maintenance"),
            server_name_file: Some(name_file.clone()),
        };
        let shared = SharedHealth::default();
        let (led_tx, led_rx) = watch::channel(None);
        let token = CancellationToken::new();
        let t0 = std::time::Instant::now();
        let task = tokio::spawn(run(
            units.clone(),
            rx,
            Synapse::new(
                &base,
                Duration::from_millis(100),
                crate::health::probe::AdminToken::none(),
            ),
            cfg,
            shared.clone(),
            led_tx,
            Arc::new(move || t0.elapsed()),
            Arc::new(|| 0),
            token.clone(),
        ));
        let send = |active: &'static str, sub: &'static str| {
            let tx = tx.clone();
            async move {
                tx.send(UnitEvent::Status {
                    unit: "matrix-synapse.service".into(),
                    status: status(active, sub),
                })
                .await
                .unwrap()
            }
        };
        tx.send(UnitEvent::Connected).await.unwrap();
        send("inactive", "dead").await;
        for _ in 0..100 {
            if shared.get().as_ref().is_some_and(|r| r.awaiting_setup) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = shared.get().clone().unwrap();
        assert_eq!(r.state, Health::Starting);
        assert_eq!(r.reason, crate::health::machine::AWAITING_SETUP);
        let signal = *led_rx.borrow();
        assert_eq!(
            crate::led::pattern(signal, false),
            crate::led::Pattern::Steady
        );
        // Still waiting a while later, and nothing restarted: it is not a fault.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(shared.get().as_ref().unwrap().awaiting_setup);
        assert!(units.restarts.lock().unwrap().is_empty());
        // The name unit wrote the name and started Synapse.
        std::fs::write(&name_file, "family.example.org\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        send("activating", "start").await;
        send("active", "running").await;
        for _ in 0..100 {
            if shared.get().as_ref().map(|r| r.state) == Some(Health::Healthy) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let r = shared.get().clone().unwrap();
        assert_eq!(r.state, Health::Healthy, "{r:?}");
        assert!(!r.awaiting_setup);
        assert_eq!(
            crate::led::pattern(*led_rx.borrow(), false),
            crate::led::Pattern::Steady
        );
        token.cancel();
        task.await.unwrap();
    }
}
