//! The daemon: the one owner of every task.
//!
//! `run` opens the database, starts the sampler thread (blocking I2C belongs on its own thread),
//! the flusher, the watchdog and the HTTP server, tells systemd READY, and on SIGTERM/SIGINT
//! cancels everything, waits for all of it, closes the meter's books and writes the last batch.
//! A second signal during shutdown exits at once.

use crate::accountant::cpu::{CpuReader, Scope};
use crate::accountant::journal::JournalSource;
use crate::accountant::members::{Directory, MemberSource, MembersFile};
use crate::accountant::{self, SharedPending};
use crate::clock::{wall_ms_now, MonotonicClock, SharedClock};
use crate::config::{Backend, Config, HealthBackend, LedConfig, PowerConfig};
use crate::health::machine::Policy;
use crate::health::monitor::{self, MonitorConfig, SharedHealth};
use crate::health::probe::{AdminToken, Synapse};
use crate::health::unit::UnitControl;
use crate::http::{self, AppState};
use crate::led::{self, Led, Pattern};
use crate::meter::live::{LiveMeter, Shared};
use crate::meter::Sampler;
use crate::power::hwmon::HwmonSensor;
use crate::power::i2c::LazyBus;
use crate::power::ina219::sim::Ina219Sim;
use crate::power::ina219::Ina219Sensor;
use crate::power::truth::CpuPowerModel;
use crate::power::{PowerSensor, Sample, SensorError, SensorKind};
use crate::storage::{Storage, StorageError};
use crate::units::Volts;
use chrono::{Datelike, Local, TimeZone};
use std::path::PathBuf;
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
}

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

/// Build the configured sensor. A sensor that cannot be initialised now is returned with its
/// first error: the sampler starts in fault and retries.
pub fn build_sensor(
    cfg: &PowerConfig,
    clock: SharedClock,
) -> Result<(Box<dyn PowerSensor>, Option<SensorError>), SensorError> {
    let uv = Volts(cfg.under_voltage_v);
    match cfg.backend {
        Backend::Simulated => {
            let truth = CpuPowerModel::new(
                cfg.simulated.idle_watts,
                cfg.simulated.full_watts,
                cfg.simulated.supply_volts,
                cfg.simulated.source_ohms,
            );
            let sim = Ina219Sim::new(
                Box::new(truth),
                clock.clone(),
                cfg.ina219.shunt_ohms,
                cfg.ina219.address,
            );
            let (s, first) =
                Ina219Sensor::new(sim, cfg.ina219.clone(), uv, SensorKind::Simulated, clock)?;
            Ok((Box::new(s), first.err()))
        }
        Backend::Ina219 => {
            // The header's bus, found once (the daemon restarts with the board).
            let n = cfg.ina219.i2c_bus.resolve(std::path::Path::new("/sys"));
            let ina = crate::config::Ina219Config {
                i2c_bus: crate::config::I2cBus::Number(n),
                ..cfg.ina219.clone()
            };
            let (s, first) =
                Ina219Sensor::new(LazyBus::new(n), ina, uv, SensorKind::Ina219, clock)?;
            Ok((Box::new(s), first.err()))
        }
        Backend::Hwmon => {
            let root = PathBuf::from("/sys/class/hwmon");
            let dir = cfg.hwmon_path.clone().or_else(|| HwmonSensor::find(&root));
            let interval = cfg.hwmon_interval;
            let expect = crate::power::hwmon::Expect {
                shunt_ohms: cfg.ina219.shunt_ohms,
                gain_correction: cfg.ina219.gain_correction,
            };
            let open = move |clock: SharedClock| -> Result<Box<dyn PowerSensor>, SensorError> {
                let dir = dir.clone().ok_or_else(|| SensorError::Sysfs {
                    path: root.display().to_string(),
                    detail: "no hwmon device named ina219 (is the i2c-sensor overlay loaded?)"
                        .into(),
                })?;
                Ok(Box::new(HwmonSensor::open(&dir, interval, clock, expect)?))
            };
            let mut retrying = Retrying {
                open: Box::new(open),
                clock,
                inner: None,
                period: interval,
                last_error: None,
            };
            let first = retrying.reinit().err();
            Ok((Box::new(retrying), first))
        }
    }
}

type Opener = Box<dyn Fn(SharedClock) -> Result<Box<dyn PowerSensor>, SensorError> + Send>;

/// A sensor that may not exist yet (a sysfs node that appears late): reopened on `reinit`.
struct Retrying {
    open: Opener,
    clock: SharedClock,
    inner: Option<Box<dyn PowerSensor>>,
    period: Duration,
    last_error: Option<SensorError>,
}

impl PowerSensor for Retrying {
    fn poll(&mut self) -> Result<Option<Sample>, SensorError> {
        match self.inner.as_mut() {
            Some(s) => s.poll(),
            None => Err(self.last_error.clone().unwrap_or(SensorError::Sysfs {
                path: "hwmon".into(),
                detail: "not open".into(),
            })),
        }
    }
    fn period(&self) -> Duration {
        self.period
    }
    fn reinit(&mut self) -> Result<(), SensorError> {
        match (self.open)(self.clock.clone()) {
            Ok(s) => {
                self.inner = Some(s);
                self.last_error = None;
                Ok(())
            }
            Err(e) => {
                self.inner = None;
                self.last_error = Some(e.clone());
                Err(e)
            }
        }
    }
    fn kind(&self) -> SensorKind {
        SensorKind::Hwmon
    }
    fn location(&self) -> String {
        self.inner
            .as_ref()
            .map_or_else(|| "hwmon".to_string(), |s| s.location())
    }
}

/// Write pending minutes, gaps and accounting inputs (with the journal cursor) in one
/// transaction; on failure they go back into the pending sets (never lost).
fn flush(
    meter: &Shared,
    acct: &SharedPending,
    storage: &Mutex<Storage>,
    prune_before: Option<i64>,
) {
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

/// Run the daemon until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), AppError> {
    let storage = Storage::open(&config.storage.path)?;
    let (day, month) = day_and_month_start(wall_ms_now());
    let stored = storage.sums(day, month)?;
    let journal_cursor = storage.journal_cursor(&config.health.synapse_unit)?;
    let storage = Arc::new(Mutex::new(storage));
    let acct = SharedPending::new();

    let mono = MonotonicClock::new();
    let clock: SharedClock = Arc::new(mono);
    let (sensor, first_fault) = build_sensor(&config.power, clock.clone())?;
    let mut live = LiveMeter::new(sensor.kind(), sensor.location());
    live.device_node = match config.power.backend {
        crate::config::Backend::Ina219 => Some(PathBuf::from(format!(
            "/dev/i2c-{}",
            config
                .power
                .ina219
                .i2c_bus
                .resolve(std::path::Path::new("/sys"))
        ))),
        crate::config::Backend::Hwmon => config.power.hwmon_path.clone(),
        crate::config::Backend::Simulated => None,
    };
    live.stored = stored;
    live.day_start_s = day;
    live.month_start_s = month;
    let meter = Shared::new(live);

    let listener = TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: config.http.listen,
            source,
        })?;

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
    {
        let meter = meter.clone();
        let acct = acct.clone();
        let storage = storage.clone();
        let token = token.clone();
        let every = config.storage.flush_interval;
        let retention_s = i64::from(config.storage.minute_retention_days) * 86_400;
        tracker.spawn(async move {
            let mut flush_tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            let mut boundary_tick = tokio::time::interval(Duration::from_secs(30));
            let mut last_prune = tokio::time::Instant::now() - Duration::from_secs(7200);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
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
        });
    }

    // The watchdog: fed only while the sampling loop is alive.
    if let Some(timeout) = sd_notify::watchdog_enabled() {
        let meter = meter.clone();
        let token = token.clone();
        let clock = clock.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(timeout / 3);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
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
        });
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
    // The monthly close, with the members of the member directory (synced from Synapse,
    // households from the CLI), or of a Members file when one is configured.
    let members: Arc<dyn MemberSource> = match &config.accountant.members_file {
        Some(path) => Arc::new(MembersFile::new(path.clone())),
        None => Arc::new(Directory::new(config.storage.path.clone())),
    };
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
    {
        tracker.spawn(led::drive(led, pattern_rx));
        let (meter, token) = (meter.clone(), token.clone());
        let monitored = hc.backend != HealthBackend::None;
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        let signal = (*led_health_rx.borrow()).or((!monitored).then(led::Signal::healthy));
                        // An absent sensor is not a fault: the page explains it, the LED stays steady.
                        let sensor_fault = meter.lock().sensor_fault();
                        let p = led::pattern(signal, sensor_fault);
                        pattern_tx.send_if_modified(|cur| {
                            let changed = *cur != p;
                            *cur = p;
                            changed
                        });
                    }
                }
            }
            // Dropping pattern_tx ends the driver, which switches the LED off.
        });
    }

    // The board's signals (disk, temperature, throttling), every 10 s.
    let device = Arc::new(Mutex::new(crate::device::Device::default()));
    {
        let (device, token) = (device.clone(), token.clone());
        let sources = crate::device::Sources {
            sys_root: PathBuf::from("/"),
            data_path: config
                .storage
                .path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
        };
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            let mut warned = false;
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        let s = sources.clone();
                        if let Ok(d) = tokio::task::spawn_blocking(move || crate::device::read(&s)).await {
                            if d.disk_low && !warned {
                                tracing::warn!(free = ?d.disk_free_bytes, "disk space is low");
                            }
                            warned = d.disk_low;
                            *device.lock().unwrap_or_else(|p| p.into_inner()) = d;
                        }
                    }
                }
            }
        });
    }

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
            .with_relay(config.name.relay.clone()),
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
            tariff: config.tariff_configured.then(|| http::pages::Tariff {
                per_kwh: config.accounting.tariff_per_kwh,
                currency: config.accounting.currency.clone(),
            }),
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
                ..http::Web::new(
                    &config.storage.path,
                    &config.health.synapse_url,
                    config.accounting.clone(),
                    members,
                    config.health.maintenance_file.clone(),
                )?
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

    tracing::info!(listen = %config.http.listen, db = %config.storage.path.display(), "supervisor running");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    wait_for_shutdown().await.map_err(AppError::Signals)?;
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    token.cancel();
    stop.store(true, Ordering::Relaxed);

    // A second signal exits at once.
    tokio::spawn(async {
        if wait_for_shutdown().await.is_ok() {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    });
    tracker.wait().await;
    let _ = tokio::task::spawn_blocking(move || sampler.join()).await;
    let (m, a, s) = (meter.clone(), acct.clone(), storage.clone());
    let _ = tokio::task::spawn_blocking(move || flush(&m, &a, &s, None)).await;
    tracing::info!("stopped");
    Ok(())
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
