//! The daemon: the one owner of every task.
//!
//! [`Daemon::start`] opens the database, starts the sampler thread (blocking I2C belongs on its
//! own thread), the flusher, the watchdog, health, accounting, the periodic tasks and the HTTP
//! server on a listener its caller bound; [`Daemon::shutdown`] cancels everything, waits for it
//! within bounds, closes the meter's books and writes the last batch. [`run`] is the process:
//! bind, start, READY, wait for SIGTERM/SIGINT, shut down. The task bodies live with what they
//! do (`flusher`, `watchdog` here; `led::follow`, `device::run`, `power::select` and the
//! modules of each periodic task); this module only wires them.

mod flusher;
mod watchdog;

use crate::accountant::cpu::{CpuReader, Scope};
use crate::accountant::journal::JournalSource;
use crate::accountant::members::{Directory, MemberSource, MembersFile};
use crate::accountant::{self, SharedPending};
use crate::clock::{wall_ms_now, MonotonicClock, SharedClock};
use crate::config::{Config, HealthBackend, LedConfig};
use crate::health::machine::Policy;
use crate::health::monitor::{self, MonitorConfig, SharedHealth};
use crate::health::probe::{AdminToken, Synapse};
use crate::health::unit::UnitControl;
use crate::http::{self, AppState};
use crate::led::{self, Led, Pattern};
use crate::meter::live::{LiveMeter, Shared};
use crate::meter::Sampler;
use crate::power::SensorError;
use crate::storage::{Storage, StorageError};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("power sensor: {0}")]
    Sensor(#[from] SensorError),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("starting: {0}")]
    Task(String),
}

/// What the health monitor needs from the owner.
struct MonitorCtx {
    tracker: TaskTracker,
    token: CancellationToken,
    synapse: Synapse,
    cfg: MonitorConfig,
    shared: SharedHealth,
    led_health: tokio::sync::watch::Sender<Option<led::Signal>>,
    clock: SharedClock,
}

/// Spawn the unit watcher and the monitor into the owner's tracker.
fn spawn_monitor<U: UnitControl>(units: Arc<U>, ctx: MonitorCtx) {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let mut names = vec![ctx.cfg.synapse_unit.clone()];
    names.extend(ctx.cfg.workers.iter().cloned());
    names.extend(ctx.cfg.database_unit.iter().cloned());
    {
        let (units, token) = (units.clone(), ctx.token.clone());
        ctx.tracker.spawn(async move {
            tokio::select! {
                _ = token.cancelled() => {}
                _ = units.watch(names, tx) => {}
            }
        });
    }
    let clock = ctx.clock.clone();
    ctx.tracker.spawn(monitor::run(
        units,
        rx,
        ctx.synapse,
        ctx.cfg,
        ctx.shared,
        ctx.led_health,
        Arc::new(move || clock.now()),
        Arc::new(wall_ms_now),
        ctx.token,
    ));
}

/// The configured LED and what the page says of it: "sysfs", "gpio", "none" (configured off)
/// or "absent" (configured, but not on this board: the daemon carries on without it).
fn open_led(cfg: &LedConfig) -> (Box<dyn Led>, &'static str) {
    let opened: Result<(Box<dyn Led>, &'static str), String> = match cfg {
        LedConfig::None => Ok((Box::new(led::NoLed), "none")),
        LedConfig::Sysfs(dir) => led::SysfsLed::open(dir)
            .map(|l| (Box::new(l) as Box<dyn Led>, "sysfs"))
            .map_err(|e| format!("{}: {e}", dir.display())),
        LedConfig::Gpio { pin, active_low } => led::GpioLed::open(*pin, *active_low)
            .map(|l| (Box::new(l) as Box<dyn Led>, "gpio"))
            .map_err(|e| format!("GPIO {pin}: {e}")),
    };
    opened.unwrap_or_else(|e| {
        tracing::warn!("status LED absent, continuing without it: {e}");
        (Box::new(led::NoLed), "absent")
    })
}

/// A running daemon: its tasks, the sampler thread and what the last flush needs. Made by
/// [`Daemon::start`] on a listener the caller bound; ended by [`Daemon::shutdown`].
pub struct Daemon {
    addr: SocketAddr,
    token: CancellationToken,
    tracker: TaskTracker,
    stop: Arc<AtomicBool>,
    sampler: std::thread::JoinHandle<()>,
    meter: Shared,
    acct: SharedPending,
    storage: Arc<Mutex<Storage>>,
    grace: Duration,
}

/// How a shutdown went: whatever did not finish in its bound was left behind, and said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Tasks still running when their time was up (the process's exit ends them).
    pub tasks_left: usize,
    /// The sampler thread had closed its books (otherwise it is stuck in a sensor read).
    pub sampler_stopped: bool,
    /// The last batch is in the database.
    pub flushed: bool,
}

impl Stopped {
    pub fn clean(&self) -> bool {
        self.tasks_left == 0 && self.sampler_stopped && self.flushed
    }
}

/// Time the tasks get beyond the HTTP server's drain (`[http] shutdown_grace_s`), for the
/// sampler to close its books, and for the last flush (SQLite's busy timeout is 5 s, so a
/// database another process holds locked fails it in time). With the largest allowed grace
/// (20 s) a stop takes at most 29 s, inside the unit's `TimeoutStopSec=30s`.
pub const TASKS_MARGIN: Duration = Duration::from_secs(2);
pub const SAMPLER_BOUND: Duration = Duration::from_secs(2);
pub const FLUSH_BOUND: Duration = Duration::from_secs(5);

/// Run the daemon until SIGTERM/SIGINT: bind, start, tell systemd READY, and on the signal shut
/// down within the bounds above. A second signal during shutdown exits at once.
pub async fn run(config: Config) -> Result<(), AppError> {
    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.http.listen,
            source,
        })?;
    let daemon = Daemon::start(config, listener).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    wait_for_shutdown().await.map_err(AppError::Signals)?;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    // A second signal exits at once.
    tokio::spawn(async {
        if wait_for_shutdown().await.is_ok() {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    });
    let stopped = daemon.shutdown().await;
    if stopped.clean() {
        tracing::info!("stopped");
    } else {
        tracing::warn!(
            tasks_left = stopped.tasks_left,
            sampler_stopped = stopped.sampler_stopped,
            flushed = stopped.flushed,
            "stopped, leaving behind what did not finish in time"
        );
    }
    Ok(())
}

impl Daemon {
    /// Open the database, start the sampler thread (blocking I2C belongs on its own thread),
    /// the flusher, the watchdog, health, accounting, the periodic tasks and the HTTP server on
    /// `listener`. The database is opened and read off the async workers.
    pub async fn start(config: Config, listener: TcpListener) -> Result<Daemon, AppError> {
        let addr = listener.local_addr().map_err(|source| AppError::Listen {
            addr: config.http.listen,
            source,
        })?;
        // The monthly close's members: the member directory (synced from Synapse, households
        // from the CLI), or a Members file when one is configured.
        let members: Arc<dyn MemberSource> = match &config.accountant.members_file {
            Some(path) => Arc::new(MembersFile::new(path.clone())),
            None => Arc::new(Directory::new(config.storage.path.clone())),
        };
        // Everything that can fail is done before the first task starts.
        let (storage, stored, journal_cursor, (day, month), web, tariff) = {
            let c = config.clone();
            let members = members.clone();
            tokio::task::spawn_blocking(move || -> Result<_, StorageError> {
                let storage = Storage::open(&c.storage.path)?;
                let (day, month) = flusher::day_and_month_start(wall_ms_now());
                let stored = storage.sums(day, month)?;
                let cursor = storage.journal_cursor(&c.health.synapse_unit)?;
                // The tariff a person set: on the budget page (the database), else the file.
                let tariff = crate::budget::effective(
                    storage.connection(),
                    &c.accounting,
                    c.tariff_configured,
                )
                .ok()
                .and_then(|(a, chosen)| {
                    chosen.then_some(http::pages::Tariff {
                        per_kwh: a.tariff_per_kwh,
                        currency: a.currency,
                    })
                });
                let web = http::Web::new(
                    &c.storage.path,
                    &c.health.synapse_url,
                    c.accounting.clone(),
                    members,
                    c.health.maintenance_file.clone(),
                )?;
                Ok((storage, stored, cursor, (day, month), web, tariff))
            })
            .await
            .map_err(|e| AppError::Task(e.to_string()))??
        };
        let storage = Arc::new(Mutex::new(storage));
        let tariff = http::pages::shared_tariff(tariff);
        let acct = SharedPending::new();

        let clock: SharedClock = Arc::new(MonotonicClock::new());
        let (sensor, first_fault) = crate::power::select::build(&config.power, clock.clone())?;
        let mut live = LiveMeter::new(sensor.kind(), sensor.location());
        live.device_node = crate::power::select::device_node(&config.power, Path::new("/sys"));
        live.stored = stored;
        live.day_start_s = day;
        live.month_start_s = month;
        let meter = Shared::new(live);

        let token = CancellationToken::new();
        let tracker = TaskTracker::new();

        // The sampler: its own thread, because I2C reads block.
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = {
            let meter = meter.clone();
            let stop = stop.clone();
            let clock = clock.clone();
            std::thread::Builder::new()
                .name("sampler".into())
                .spawn(move || {
                    let c = clock.clone();
                    let now_ms = Box::new(move || c.now().as_millis() as u64);
                    let mut obs = meter.observer(now_ms, Box::new(wall_ms_now));
                    // Labels: the wall clock read at each sample (it may jump; only labels move).
                    let mut sampler = Sampler::new(sensor, clock, Box::new(|_| wall_ms_now()));
                    sampler.run(
                        &mut obs,
                        &|| stop.load(Ordering::Relaxed),
                        None,
                        first_fault,
                    );
                })
                .map_err(|e| {
                    AppError::Sensor(SensorError::Init {
                        at: "sampler thread".into(),
                        detail: e.to_string(),
                    })
                })?
        };

        // The flusher: batches to the database, and the day/month boundaries.
        tracker.spawn(flusher::run(
            meter.clone(),
            acct.clone(),
            storage.clone(),
            config.storage.flush_interval,
            i64::from(config.storage.minute_retention_days) * 86_400,
            token.clone(),
        ));

        // The watchdog: fed only while the sampling loop is alive.
        if let Some(timeout) = sd_notify::watchdog_enabled() {
            tracker.spawn(watchdog::run(
                timeout,
                meter.clone(),
                clock.clone(),
                token.clone(),
            ));
        }

        // Health monitoring and the LED.
        let health = SharedHealth::default();
        let (led_health_tx, led_health_rx) = tokio::sync::watch::channel(None);
        let (pattern_tx, pattern_rx) = tokio::sync::watch::channel(Pattern::SlowBlink);
        let hc = &config.health;
        let monitor_cfg = MonitorConfig {
            synapse_unit: hc.synapse_unit.clone(),
            database_unit: hc.database_unit.clone(),
            workers: hc.workers.clone(),
            probe_interval: hc.probe_interval,
            policy: Policy {
                start_grace: hc.start_grace,
                hang_misses: hc.hang_misses,
                loop_restarts: hc.loop_restarts,
                loop_window: hc.loop_window,
                ..Policy::default()
            },
            maintenance_file: hc.maintenance_file.clone(),
            server_name_file: config.name.server_name_file.clone(),
        };
        let admin_token = AdminToken::file(hc.admin_token_file.clone());
        let synapse = Synapse::new(&hc.synapse_url, hc.probe_timeout, admin_token.clone());
        // The member directory: accounts from Synapse's admin API, at start and periodically.
        tracker.spawn(crate::accounting::directory::run_directory_sync(
            config.storage.path.clone(),
            crate::accounting::directory::SynapseDirectory::new(
                &hc.synapse_url,
                Duration::from_secs(30),
                admin_token,
            ),
            config.accounting.directory_sync,
            token.clone(),
        ));
        // The access log's seal, to each member once a month (crate::seal_notice).
        tracker.spawn(crate::seal_notice::run(
            config.storage.path.clone(),
            synapse.clone(),
            crate::seal_notice::EVERY,
            token.clone(),
        ));
        // Budgets: assessed every two minutes and after each change on the page; Synapse's
        // module asks the socket for a member's limits (crate::budget).
        let budget_limits = crate::budget::socket::SharedLimits::default();
        let budget_wake = Arc::new(tokio::sync::Notify::new());
        tracker.spawn(crate::budget::enforce::run(
            crate::budget::enforce::Enforcer {
                db: config.storage.path.clone(),
                members: members.clone(),
                accounting: config.accounting.clone(),
                tariff_in_file: config.tariff_configured,
                synapse: synapse.clone(),
                shared: budget_limits.clone(),
                name_file: config.name.server_name_file.clone(),
            },
            budget_wake.clone(),
            token.clone(),
        ));
        if let Some(path) = &config.budget.limits_socket {
            match crate::budget::socket::bind(path, config.budget.socket_group.as_deref()) {
                Ok(listener) => {
                    tracker.spawn(crate::budget::socket::serve(
                        listener,
                        path.clone(),
                        budget_limits.clone(),
                        token.clone(),
                    ));
                }
                // Synapse's module then lets its defaults apply: budgets go unenforced, the
                // family's messages and pictures keep working.
                Err(e) => tracing::error!(
                    socket = %path.display(),
                    "the budgets' socket could not be opened, limits are not enforced: {e}"
                ),
            }
        }
        // Backups: the admins told when none has succeeded for two days, a run after members or
        // households changed (crate::backup_watch). Runs are started only through systemd.
        tracker.spawn(crate::backup_watch::run(
            crate::backup_watch::Watch {
                db: config.storage.path.clone(),
                status_file: config.backup.status_file.clone(),
                synapse: synapse.clone(),
                units: (hc.backend == HealthBackend::Systemd).then(|| {
                    Arc::new(crate::health::systemd::SystemdUnits::system())
                        as Arc<dyn crate::health::unit::StartUnit>
                }),
                every: crate::backup_watch::EVERY,
                calm: crate::backup_watch::CALM,
            },
            token.clone(),
        ));
        // Updates: a release on trial kept once Synapse is healthy on it, or given up; the admins
        // told of each outcome (crate::update::trial). Only where systemd runs the units.
        if hc.backend == HealthBackend::Systemd {
            tracker.spawn(crate::update::trial::run(
                crate::update::trial::Watch {
                    state_dir: config.update.state_dir.clone(),
                    verdict_file: config.update.verdict_file.clone(),
                    cmdline: config.update.cmdline.clone(),
                    health: health.clone(),
                    synapse: synapse.clone(),
                    units: Arc::new(crate::health::systemd::SystemdUnits::system()),
                    policy: crate::update::trial::Policy {
                        commit_after: config.update.commit_after,
                        give_up_after: config.update.give_up_after,
                    },
                    every: Duration::from_secs(5),
                },
                token.clone(),
            ));
        }
        let ctx = MonitorCtx {
            tracker: tracker.clone(),
            token: token.clone(),
            synapse,
            cfg: monitor_cfg,
            shared: health.clone(),
            led_health: led_health_tx,
            clock: clock.clone(),
        };
        // The Matrix service's units: Synapse, its workers, its PostgreSQL.
        let mut matrix_units = vec![hc.synapse_unit.clone()];
        matrix_units.extend(hc.workers.iter().cloned());
        matrix_units.extend(hc.database_unit.iter().cloned());
        match hc.backend {
            HealthBackend::Systemd => {
                spawn_monitor(
                    Arc::new(crate::health::systemd::SystemdUnits::system()),
                    ctx,
                );
                // Access lines from the journal; CPU time from the units' cgroups.
                let source = JournalSource {
                    command: config.accountant.journal_command.clone(),
                    unit: hc.synapse_unit.clone(),
                };
                tracker.spawn(accountant::journal::run(
                    source,
                    acct.clone(),
                    journal_cursor,
                    token.clone(),
                ));
                tracker.spawn(accountant::cpu::run(
                    CpuReader::new("/", Scope::Units(matrix_units)),
                    acct.clone(),
                    token.clone(),
                ));
            }
            HealthBackend::Process => {
                use crate::health::process::{ProcessSpec, ProcessUnits};
                let p = &hc.process;
                let mut spec = ProcessSpec::new(hc.synapse_unit.clone(), p.program.clone());
                spec.args = p.args.iter().map(Into::into).collect();
                spec.workdir = p.workdir.clone();
                spec.log = p.log.clone();
                // Access-log times in UTC, as on the appliance (Environment=TZ=UTC).
                spec.env = vec![("TZ".into(), "UTC".into())];
                let units = Arc::new(ProcessUnits::new(spec));
                // Access lines from the child's output; CPU time of its process group.
                tracker.spawn(accountant::output::run(
                    units.output(),
                    acct.clone(),
                    token.clone(),
                ));
                let u = units.clone();
                tracker.spawn(accountant::cpu::run(
                    CpuReader::new("/", Scope::ProcessGroup(Arc::new(move || u.pgid()))),
                    acct.clone(),
                    token.clone(),
                ));
                spawn_monitor(units, ctx);
            }
            HealthBackend::None => drop(ctx),
        }
        // The monthly close.
        {
            tracker.spawn(accountant::close::run(
                storage.clone(),
                acct.clone(),
                members.clone(),
                config.accounting.clone(),
                token.clone(),
            ));
        }
        // The LED follows health, the sensor and the maintenance switch.
        let led_for_http = pattern_rx.clone();
        let (led, led_device) = open_led(&config.led);
        tracker.spawn(led::drive(led, pattern_rx));
        {
            let meter = meter.clone();
            tracker.spawn(led::follow(
                led_health_rx,
                hc.backend != HealthBackend::None,
                move || meter.lock().sensor_fault(),
                pattern_tx,
                token.clone(),
            ));
        }

        // The board's signals (disk, temperature, throttling), every 10 s.
        let device = Arc::new(Mutex::new(crate::device::Device::default()));
        tracker.spawn(crate::device::run(
            crate::device::Sources {
                sys_root: PathBuf::from("/"),
                data_path: config
                    .storage
                    .path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), PathBuf::from),
            },
            device.clone(),
            Duration::from_secs(10),
            token.clone(),
        ));

        // "Who can access the data": the database part, reread off the request path.
        let transparency = crate::transparency::Transparency::new(&config.transparency);
        tracker.spawn(crate::transparency::access::run_refresh(
            config.storage.path.clone(),
            transparency.db.clone(),
            token.clone(),
        ));

        // The anonymous monthly report to the cooperative: only when the operator allows it; it
        // leaves only after the family's opt-in (crate::report::send).
        let report_wake = Arc::new(tokio::sync::Notify::new());
        if config.report.enabled {
            tracker.spawn(crate::report::send::run(
                crate::report::send::Sender {
                    storage: storage.clone(),
                    config: config.report.clone(),
                    relay_config: config.name.relay_files.config.clone(),
                    synapse_url: config.health.synapse_url.clone(),
                    root: PathBuf::from("/"),
                },
                report_wake.clone(),
                token.clone(),
            ));
        }
        let reports = Arc::new(http::report_page::Reports {
            config: config.report.clone(),
            hardware: crate::report::gather::hardware(std::path::Path::new("/")),
            relay_config: config.name.relay_files.config.clone(),
            wake: report_wake,
        });

        // The setup code expires after a week of the box running unused (crate::setup_expiry).
        tracker.spawn(crate::setup_expiry::run(
            config.http.setup_code_file.clone(),
            crate::setup_expiry::SAVE_EVERY,
            crate::setup_expiry::OFFERED_MAX,
            token.clone(),
        ));

        // The server's name: chosen on /setup (through systemd), and whether it is reachable.
        let name_setup = match (&config.name.server_name_file, hc.backend) {
            (Some(file), HealthBackend::Systemd) => Some(Arc::new(
                http::setup_name::NameSetup::new(
                    file.clone(),
                    config.name.cooperative_domain.clone(),
                    crate::name::check::Checker::system(),
                    Arc::new(crate::health::systemd::SystemdUnits::system()),
                    tracker.clone(),
                )
                .with_relay(config.name.relay.clone())
                .with_restore(Some(http::setup_restore::RestoreSetup {
                    request_file: config.backup.restore_request_file.clone(),
                    status_file: config.backup.restore_status_file.clone(),
                    usb_repository: config.backup.usb_repository.clone(),
                })),
            )),
            _ => None,
        };
        let reach = crate::name::reach::SharedReach::default();
        if let Some(file) = &config.name.server_name_file {
            tracker.spawn(crate::name::reach::run(
                crate::name::reach::Sources {
                    server_name_file: file.clone(),
                    tls_dir: config.name.tls_dir.clone(),
                    resolver: Arc::new(crate::name::check::SystemResolver),
                    interval: config.name.check_interval,
                    files_every: Duration::from_secs(30),
                    relay: config
                        .name
                        .relay
                        .as_ref()
                        .map(|r| (r.config.clone(), r.status.clone())),
                },
                reach.clone(),
                token.clone(),
            ));
        }

        // HTTP.
        {
            let app = http::router(AppState {
                reach,
                transparency,
                synapse_database: config.health.database,
                device: device.clone(),
                meter: meter.clone(),
                health: health.clone(),
                led: led_for_http,
                led_device,
                tariff: tariff.clone(),
                web: Some(Arc::new(http::Web {
                    https: config.http.secure_cookies,
                    admin_token: crate::health::probe::AdminToken::file(
                        config.health.admin_token_file.clone(),
                    ),
                    setup_code_file: config.http.setup_code_file.clone(),
                    trusted_proxies: config.http.trusted_proxies.clone(),
                    // Remembered devices outlive a restart; without the key file they last as
                    // long as this process (degrade, don't die).
                    limiter: match http::session::device_key(&config.http.device_key_file) {
                        Ok(key) => http::session::Limiter::default().with_device_key(key),
                        Err(e) => {
                            tracing::warn!("remembered devices last until the next restart: {e}");
                            http::session::Limiter::default()
                        }
                    },
                    name: name_setup,
                    reports: Some(reports),
                    budgets: Some(Arc::new(http::budget_page::Budgets {
                        limits: budget_limits,
                        wake: budget_wake,
                        tariff_in_file: config.tariff_configured,
                        tariff: tariff.clone(),
                    })),
                    updates: Some(update_doors(&config, hc.backend, &tracker, &token)),
                    backups: Some(Arc::new(http::backup_page::Backups {
                        status_file: config.backup.status_file.clone(),
                        units: (hc.backend == HealthBackend::Systemd).then(|| {
                            Arc::new(crate::health::systemd::SystemdUnits::system())
                                as Arc<dyn http::backup_page::BackupUnits>
                        }),
                        tasks: tracker.clone(),
                        usb: (hc.backend == HealthBackend::Systemd).then(|| {
                            let data = config
                                .storage
                                .path
                                .parent()
                                .map_or_else(|| PathBuf::from("."), PathBuf::from);
                            http::backup_page::UsbSetup {
                                sources: crate::backup_usb::Sources::system(),
                                repository: config.backup.usb_repository.clone(),
                                request_file: data.join("backup-setup-request"),
                                status_file: PathBuf::from("/run/hearth-backup-setup/status.json"),
                                key_file: data.join("backup-key-once"),
                            }
                        }),
                        config: Some(config.backup.clone()),
                    })),
                    ..web
                })),
            });
            // Only for our own names (DNS rebinding), with the server's limits and timeouts.
            let app = http::host::guard(
                app,
                http::host::Allowed::new(&config.http.public_names)
                    .with_name_file(config.name.server_name_file.clone()),
            );
            let limits = http::serve::Limits {
                max_connections: config.http.max_connections,
                header_timeout: config.http.header_timeout,
                request_timeout: config.http.request_timeout,
                grace: config.http.shutdown_grace,
            };
            tracker.spawn(http::serve::run(
                listener,
                app,
                limits,
                token.clone().cancelled_owned(),
            ));
        }
        tracker.close();
        tracing::info!(listen = %addr, db = %config.storage.path.display(), "supervisor running");
        Ok(Daemon {
            addr,
            token,
            tracker,
            stop,
            sampler,
            meter,
            acct,
            storage,
            grace: config.http.shutdown_grace,
        })
    }

    /// Where the HTTP server listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cancel every task and wait for them for the HTTP grace plus [`TASKS_MARGIN`], for the
    /// sampler to close its books for [`SAMPLER_BOUND`], then write the last batch within
    /// [`FLUSH_BOUND`]. What does not finish in its time is left behind and reported.
    pub async fn shutdown(self) -> Stopped {
        self.token.cancel();
        self.stop.store(true, Ordering::Relaxed);
        let tasks_done = tokio::time::timeout(self.grace + TASKS_MARGIN, self.tracker.wait())
            .await
            .is_ok();
        let tasks_left = if tasks_done {
            0
        } else {
            self.tracker.len().max(1)
        };
        let sampler = self.sampler;
        let joined = tokio::task::spawn_blocking(move || sampler.join());
        let sampler_stopped = matches!(
            tokio::time::timeout(SAMPLER_BOUND, joined).await,
            Ok(Ok(Ok(())))
        );
        let (m, a, s) = (self.meter, self.acct, self.storage);
        let flush = tokio::task::spawn_blocking(move || flusher::flush(&m, &a, &s, None));
        let flushed = matches!(tokio::time::timeout(FLUSH_BOUND, flush).await, Ok(Ok(true)));
        Stopped {
            tasks_left,
            sampler_stopped,
            flushed,
        }
    }
}

async fn wait_for_shutdown() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// The updates' doors, and the look for a newer release when `[update] source` is set (an hour
/// after the start, then every six hours; a release that does not verify is never offered).
fn update_doors(
    config: &Config,
    backend: HealthBackend,
    tracker: &TaskTracker,
    token: &CancellationToken,
) -> Arc<http::update_page::Updates> {
    let u = &config.update;
    let offer = Arc::new(std::sync::Mutex::new(http::update_page::Offer::NotChecked));
    if let Some(source) = &u.source {
        match std::fs::read_to_string(&u.key) {
            Ok(key) => {
                let options = crate::update::Options {
                    key,
                    ca: None,
                    rate: None,
                    running_version: crate::update::running_version(&u.release_file),
                    cmdline: String::new(),
                    scratch: std::env::temp_dir(),
                };
                tracker.spawn(http::update_page::check(
                    source.clone(),
                    options,
                    offer.clone(),
                    Duration::from_secs(3600),
                    Duration::from_secs(6 * 3600),
                    token.clone(),
                ));
            }
            Err(e) => {
                tracing::error!(key = %u.key.display(), "updates: the image's key cannot be read, no release will be offered: {e}")
            }
        }
    }
    Arc::new(http::update_page::Updates {
        state_dir: u.state_dir.clone(),
        postpone_file: u.postpone_file.clone(),
        cmdline: u.cmdline.clone(),
        running_version: crate::update::running_version(&u.release_file),
        commit_after_s: u.commit_after.as_secs(),
        source_set: u.source.is_some(),
        offer,
        units: (backend == HealthBackend::Systemd).then(|| {
            Arc::new(crate::health::systemd::SystemdUnits::system())
                as Arc<dyn http::update_page::UpdateUnits>
        }),
        tasks: tracker.clone(),
    })
}
