//! Configuration in two stages: [`RawConfig`] is what the TOML file says (serde, unknown keys
//! rejected), [`Config`] is what the daemon runs with (real types, validated ranges).
//!
//! Every error is one line naming the file, the line and the key, and the allowed range.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration error: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

// ---------------------------------------------------------------------------------------------
// Stage one: the file as written.

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub power: RawPower,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub health: RawHealth,
    #[serde(default)]
    pub led: RawLed,
    #[serde(default)]
    pub accounting: RawAccounting,
    #[serde(default)]
    pub transparency: RawTransparency,
    #[serde(default)]
    pub name: RawName,
    #[serde(default)]
    pub report: RawReport,
    #[serde(default)]
    pub backup: RawBackup,
    #[serde(default)]
    pub budget: RawBudget,
    #[serde(default)]
    pub update: RawUpdate,
}

/// `[update]`: how a release on trial is judged (`crate::update`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpdate {
    pub state_dir: Option<String>,
    pub key: Option<String>,
    pub postpone_file: Option<String>,
    pub verdict_file: Option<String>,
    pub cmdline: Option<String>,
    pub commit_after_s: Option<i64>,
    pub give_up_after_s: Option<i64>,
    pub source: Option<String>,
    pub rate_kbps: Option<i64>,
    pub disk: Option<String>,
    pub release_file: Option<String>,
    pub source_file: Option<String>,
}

/// `[budget]`: where Synapse's budget module asks for a member's limits (`crate::budget`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub limits_socket: Option<String>,
    pub socket_group: Option<String>,
}

/// `[backup]`: where hearth-backup.service saves the server (`crate::backup`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackup {
    pub key_file: Option<String>,
    pub status_file: Option<String>,
    pub restic: Option<String>,
    pub usb_repository: Option<String>,
    pub cooperative_repository: Option<String>,
    pub cooperative_credentials_file: Option<String>,
    pub cooperative_ca: Option<String>,
    pub limit_upload_kib: Option<i64>,
    pub timeout_s: Option<i64>,
    pub root: Option<String>,
    pub restore_request_file: Option<String>,
    pub restore_status_file: Option<String>,
}

/// `[report]`: the anonymous monthly energy report to the cooperative (`crate::report`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReport {
    pub enabled: Option<bool>,
    pub epsilon: Option<f64>,
    pub supplier: Option<String>,
    pub token_wait_s: Option<i64>,
    pub retry_s: Option<i64>,
}

/// `[name]`: the server's permanent name, chosen on `/setup`, and whether it is reachable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawName {
    pub server_name_file: Option<String>,
    pub cooperative_domain: Option<String>,
    pub cooperative_api: Option<String>,
    pub cooperative_ca: Option<String>,
    pub cooperative_file: Option<String>,
    pub relay_config: Option<String>,
    pub tunnel_key: Option<String>,
    pub tunnel_status: Option<String>,
    pub tls_dir: Option<String>,
    pub check_interval_s: Option<i64>,
}

/// `[transparency]`: the "who can access the data" and "what you are getting into" pages.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTransparency {
    /// The operator's Markdown pages, `<pages_dir>/<lang>/<name>.md`.
    pub pages_dir: Option<String>,
    /// The root-run collector's inventory (`hearth-supervisor access inventory --out`).
    pub access_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccounting {
    /// A number of watts, or the string `"auto"`.
    pub base_watts: Option<toml::Value>,
    pub tariff_per_kwh: Option<f64>,
    pub currency: Option<String>,
    pub storage_price_per_gib_month: Option<f64>,
    pub directory_sync_s: Option<i64>,
    pub journal_command: Option<String>,
    pub members_file: Option<String>,
    /// `[[accounting.fixed_cost]]` tables; spans give each error its line.
    #[serde(default)]
    pub fixed_cost: Vec<toml::Spanned<RawFixedCost>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFixedCost {
    pub name: toml::Spanned<String>,
    pub amount: toml::Spanned<f64>,
    pub per: toml::Spanned<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub backend: Option<String>,
    pub synapse_unit: Option<String>,
    pub database_unit: Option<String>,
    pub workers: Option<Vec<String>>,
    pub synapse_url: Option<String>,
    pub probe_interval_ms: Option<i64>,
    pub probe_timeout_ms: Option<i64>,
    pub start_grace_s: Option<i64>,
    pub hang_misses: Option<i64>,
    pub loop_restarts: Option<i64>,
    pub loop_window_s: Option<i64>,
    pub admin_token_file: Option<String>,
    pub maintenance_file: Option<String>,
    /// The file first boot writes its database choice to (`postgresql` or `sqlite`).
    pub database_choice_file: Option<String>,
    #[serde(default)]
    pub process: RawProcess,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProcess {
    pub program: Option<String>,
    pub args: Option<Vec<String>>,
    pub workdir: Option<String>,
    pub log: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLed {
    pub backend: Option<String>,
    pub sysfs_path: Option<String>,
    pub gpio_pin: Option<i64>,
    pub active_low: Option<bool>,
}

/// `i2c_bus`: a number or `"auto"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawBus {
    Number(i64),
    Word(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPower {
    pub backend: Option<String>,
    pub i2c_bus: Option<RawBus>,
    pub address: Option<i64>,
    pub shunt_ohms: Option<f64>,
    pub max_current_a: Option<f64>,
    pub gain_correction: Option<f64>,
    pub shunt_adc: Option<String>,
    pub bus_adc: Option<String>,
    pub shunt_range_mv: Option<i64>,
    pub bus_range_v: Option<i64>,
    pub under_voltage_v: Option<f64>,
    pub hwmon_path: Option<String>,
    pub hwmon_interval_ms: Option<i64>,
    #[serde(default)]
    pub simulated: RawSimulated,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimulated {
    pub idle_watts: Option<f64>,
    pub full_watts: Option<f64>,
    pub supply_volts: Option<f64>,
    pub source_ohms: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub path: Option<String>,
    pub flush_interval_s: Option<i64>,
    pub minute_retention_days: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub secure_cookies: Option<bool>,
    pub setup_code_file: Option<String>,
    pub max_connections: Option<i64>,
    pub header_timeout_s: Option<i64>,
    pub request_timeout_s: Option<i64>,
    pub shutdown_grace_s: Option<i64>,
    pub public_names: Option<Vec<String>>,
    pub server_name_file: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub device_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub level: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Stage two: what the daemon runs with.

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub power: PowerConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub log_level: String,
    pub health: HealthConfig,
    pub led: LedConfig,
    pub accounting: AccountingConfig,
    pub accountant: AccountantConfig,
    pub transparency: TransparencyConfig,
    pub name: NameConfig,
    pub report: ReportConfig,
    pub backup: BackupConfig,
    pub budget: BudgetConfig,
    pub update: UpdateConfig,
    /// Whether the file sets `[accounting] tariff_per_kwh`. The status page shows the month's
    /// electricity cost only then: the default tariff is a placeholder, not the family's price.
    pub tariff_configured: bool,
}

/// `[update]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateConfig {
    /// Where root's update steps keep `state.json` (the data partition: both slots see it;
    /// root's, world-readable).
    pub state_dir: PathBuf,
    /// The daemon's findings about an update (its own account's file).
    pub verdict_file: PathBuf,
    /// The image's public key releases are checked against (minisign).
    pub key: PathBuf,
    /// A server admin's postponement (Unix seconds; the nightly run waits until then).
    pub postpone_file: PathBuf,
    /// The running kernel's command line: which slot runs.
    pub cmdline: PathBuf,
    /// Synapse healthy this long without a break on a release on trial: it is kept.
    pub commit_after: Duration,
    /// Not kept this long after the supervisor's start on trial: rolled back.
    pub give_up_after: Duration,
    /// Where releases come from: the cooperative's `https://…/` directory or a folder (a USB
    /// stick); `None`: no updates until one is set.
    pub source: Option<String>,
    /// Download limit in kB/s (0: none).
    pub rate_kbps: u64,
    /// The card's partitions, `{}` for the number; `auto` (the default): the disk the running
    /// root is on.
    pub disk: String,
    /// The image's release (`hearth X.Y.Z (…)`): the version that runs.
    pub release_file: PathBuf,
    /// Where releases come from when `source` is not set here: one line, kept across updates
    /// (`update-carry` carries it; this file is the release's own and is not).
    pub source_file: PathBuf,
}

impl UpdateConfig {
    /// `source` from `source_file` when the configuration sets none: its one line that is not
    /// empty or a `#` comment, an `http(s)://` directory or a folder. No file: no source.
    pub fn apply_source_file(&mut self) -> Result<(), ConfigError> {
        if self.source.is_some() {
            return Ok(());
        }
        let file = self.source_file.display().to_string();
        let Some(text) = read_if_there(&self.source_file)? else {
            return Ok(());
        };
        let err = |line: usize, message: String| ConfigError {
            file: file.clone(),
            line: Some(line),
            key: Some("source".into()),
            message,
        };
        let mut found: Option<(usize, &str)> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((first, _)) = found {
                return Err(err(
                    i + 1,
                    format!("a second source (the first is on line {first})"),
                ));
            }
            if !(line.starts_with("https://")
                || line.starts_with("http://")
                || line.starts_with('/'))
            {
                return Err(err(
                    i + 1,
                    format!("'{line}' is neither an http(s):// directory nor a folder"),
                ));
            }
            found = Some((i + 1, line));
        }
        self.source = found.map(|(_, s)| s.to_string());
        Ok(())
    }
}

/// `[budget]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetConfig {
    /// The UNIX socket `hearth_limits.py` (Synapse's module) asks; `None`: none is served
    /// (the module then lets Synapse's defaults apply).
    pub limits_socket: Option<PathBuf>,
    /// The socket's group: Synapse's account is in it (sysusers.d/hearth.conf). `None`: the
    /// supervisor's own group (a developer's Synapse runs as the same user).
    pub socket_group: Option<String>,
}

/// `[backup]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupConfig {
    /// The recovery key: restic's password for every repository (root only, 0600).
    pub key_file: PathBuf,
    /// The last runs, per target, for the page (written by root, readable by all).
    pub status_file: PathBuf,
    pub restic: PathBuf,
    /// The USB disk's repository: used while it exists (the disk plugged in and prepared).
    pub usb_repository: PathBuf,
    /// The cooperative's append-only store (`rest:https://…/`), when the box has one.
    pub cooperative_repository: Option<String>,
    /// `user:password` for the cooperative's store.
    pub cooperative_credentials_file: Option<PathBuf>,
    pub cooperative_ca: Option<PathBuf>,
    /// KiB/s toward the cooperative (0: no limit): a nightly run must not fill the uplink.
    pub limit_upload_kib: u32,
    /// The longest one restic call may take.
    pub timeout: Duration,
    /// Where the appliance's files are (`/`; a folder in tests).
    pub root: PathBuf,
    /// The setup page's restore request (written by the supervisor, 0600; read and removed by
    /// hearth-restore.service, root).
    pub restore_request_file: PathBuf,
    /// Where hearth-restore.service says how the restore goes (JSON, world-readable).
    pub restore_status_file: PathBuf,
    /// The enrolment's relay.toml (`[name] relay_config`): its `backup_repository`, with the
    /// account beside it, is the cooperative's target when `cooperative_repository` is unset.
    pub relay_config: PathBuf,
}

/// `[name]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NameConfig {
    /// Where the root side writes the chosen name. `None`: no name step on `/setup` (the
    /// process and `none` health backends, unless the key is set: a developer's Synapse has
    /// its own name).
    pub server_name_file: Option<PathBuf>,
    /// The cooperative's domain under which a family may take a name (`<label>.<domain>`);
    /// `None` until the cooperative's relay is set up (the choice is shown disabled).
    pub cooperative_domain: Option<String>,
    /// The cooperative's relay, where the box enrols and dials its tunnel; `None`: no relay.
    pub relay: Option<RelaySettings>,
    /// A file with the cooperative's keys (`[name] cooperative_domain, cooperative_api,
    /// cooperative_ca`), written by first boot from hearth.txt; used when this file sets none.
    pub cooperative_file: Option<PathBuf>,
    /// The relay's files on the box (`relay_config`, `tunnel_key`, `tunnel_status`).
    pub relay_files: RelayFiles,
    /// The TLS proxy's files: `fullchain.pem`, `acme-status.json`.
    pub tls_dir: PathBuf,
    /// How often the box checks that its name resolves, and rereads the TLS files.
    pub check_interval: Duration,
}

/// The box's side of the relay's files, wherever the cooperative's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayFiles {
    pub config: PathBuf,
    pub key: PathBuf,
    pub status: PathBuf,
}

/// The keys a cooperative file may hold (its `[name]` section).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCooperativeFile {
    #[serde(default)]
    name: RawCooperative,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCooperative {
    cooperative_domain: Option<String>,
    cooperative_api: Option<String>,
    cooperative_ca: Option<String>,
}

impl NameConfig {
    /// The cooperative's keys from `cooperative_file`, when it exists and the configuration
    /// itself names no cooperative. Its mistakes name that file, its line and the key.
    pub fn apply_cooperative_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.cooperative_file else {
            return Ok(());
        };
        if self.cooperative_domain.is_some() {
            return Ok(());
        }
        let file = path.display().to_string();
        let Some(text) = read_if_there(path)? else {
            return Ok(());
        };
        let raw: RawCooperativeFile = toml::from_str(&text).map_err(|e| ConfigError {
            file: file.clone(),
            line: e.span().map(|s| line_of_offset(&text, s.start)),
            key: None,
            message: e.message().trim().replace('\n', " "),
        })?;
        let v = Validator {
            file: &file,
            text: &text,
        };
        let (domain, relay) = v.cooperative(raw.name, &self.relay_files)?;
        self.cooperative_domain = domain;
        self.relay = relay;
        Ok(())
    }
}

/// `[name] cooperative_api` and the files of the box's side of the relay (`crate::tunnel`).
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySettings {
    /// The cooperative's control address, `https://relay.coop.example:7443`.
    pub api: String,
    /// Trust only this CA for the cooperative (a test or a private cooperative).
    pub ca: Option<PathBuf>,
    /// Written by enrolment, read by hearth-tunnel.service.
    pub config: PathBuf,
    pub key: PathBuf,
    /// hearth-tunnel.service's state, for the page.
    pub status: PathBuf,
}

pub const DEFAULT_SERVER_NAME_FILE: &str = "/etc/hearth/server_name";
pub const DEFAULT_TLS_DIR: &str = "/var/lib/hearth-tls";
/// Where first boot writes the cooperative's keys from hearth.txt (image/rootfs/usr/lib/hearth/setup).
pub const DEFAULT_COOPERATIVE_FILE: &str = "/etc/hearth/cooperative.toml";

/// `[report]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportConfig {
    /// The operator allows reports at all (default false). The family's own opt-in (the row
    /// `report_opt_in` in storage) is needed as well.
    pub enabled: bool,
    /// The privacy budget per report (default 1.0; 0.1 to 10).
    pub epsilon: f64,
    /// The electricity supplier, sent only when set here (the household's choice).
    pub supplier: Option<String>,
    /// When a due report finds no token and the box fetches some, it waits at least this long,
    /// and up to three times it at random, before sending: a token request and a report that
    /// follow each other closely would tell the collector whose report it is (default 1 day).
    pub token_wait_s: i64,
    /// The first retry after a failed attempt; doubling up to 12 hours (default 60 s).
    pub retry_s: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TransparencyConfig {
    pub pages_dir: PathBuf,
    pub access_file: PathBuf,
}

/// The base load `P_base` of the accounting model (PRODUCT §5).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaseWatts {
    /// The 10th percentile of 1-minute mean power over the trailing 7 days before the period.
    Auto,
    /// A fixed number of watts.
    Fixed(f64),
}

/// How often a fixed cost falls due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CostPer {
    Month,
    Year,
}

/// A running cost that does not depend on use (domain, SD cards, the Pi itself written off).
#[derive(Debug, Clone, PartialEq)]
pub struct FixedCost {
    pub name: String,
    /// In `currency`, per `per`.
    pub amount: f64,
    pub per: CostPer,
}

/// `[accounting]`: what the statement turns energy into money with.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountingConfig {
    pub base_watts: BaseWatts,
    /// Currency units per kWh.
    pub tariff_per_kwh: f64,
    /// ISO 4217 code, e.g. "EUR".
    pub currency: String,
    /// Currency units per GiB of media stored for a month.
    pub storage_price_per_gib_month: f64,
    pub fixed_costs: Vec<FixedCost>,
    /// How often the member directory is synced from Synapse's admin API (and once at start).
    pub directory_sync: Duration,
}

/// The daemon's own `[accounting]` keys (not inputs of the model, so not in
/// [`AccountingConfig`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AccountantConfig {
    /// The program that reads Synapse's journal (`journalctl`, or a stand-in that speaks its
    /// `--output=json` in tests).
    pub journal_command: PathBuf,
    /// A Members file to close months with, until the member directory provides them.
    /// `None`: months are not closed.
    pub members_file: Option<PathBuf>,
}

impl Default for AccountantConfig {
    fn default() -> Self {
        Self {
            journal_command: PathBuf::from("journalctl"),
            members_file: None,
        }
    }
}

impl Default for AccountingConfig {
    fn default() -> Self {
        Self {
            base_watts: BaseWatts::Auto,
            tariff_per_kwh: 0.30,
            currency: "EUR".into(),
            storage_price_per_gib_month: 0.0,
            fixed_costs: Vec::new(),
            directory_sync: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthBackend {
    /// systemd over D-Bus (the appliance).
    Systemd,
    /// The supervisor spawns Synapse itself (`make run`).
    Process,
    /// Health is not monitored (tests of other parts).
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthConfig {
    pub backend: HealthBackend,
    pub synapse_unit: String,
    pub database_unit: Option<String>,
    pub workers: Vec<String>,
    pub synapse_url: String,
    pub probe_interval: Duration,
    pub probe_timeout: Duration,
    pub start_grace: Duration,
    pub hang_misses: u32,
    pub loop_restarts: u32,
    pub loop_window: Duration,
    pub admin_token_file: PathBuf,
    pub maintenance_file: PathBuf,
    /// Where first boot wrote which database Synapse uses (`[health] database_choice_file`).
    pub database_choice_file: Option<PathBuf>,
    /// Synapse's database as first boot chose it; `None` until [`Config::load`] found the
    /// choice (or where nothing chooses, as under `make run`).
    pub database: Option<Database>,
    pub process: ProcessConfig,
}

/// The database Synapse runs on. First boot picks it once, by the board's memory: PostgreSQL,
/// or SQLite on boards with under 1.5 GiB, where PostgreSQL's unit is then not watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    Postgresql,
    Sqlite,
}

impl Database {
    pub fn as_str(self) -> &'static str {
        match self {
            Database::Postgresql => "postgresql",
            Database::Sqlite => "sqlite",
        }
    }

    /// The choice file's text: one word on its first line.
    pub fn parse_choice(file: &str, text: &str) -> Result<Database, ConfigError> {
        let word = text.lines().next().unwrap_or("").trim();
        match word {
            "postgresql" => Ok(Database::Postgresql),
            "sqlite" => Ok(Database::Sqlite),
            other => Err(ConfigError {
                file: file.to_string(),
                line: Some(1),
                key: None,
                message: format!("expected \"postgresql\" or \"sqlite\", found {other:?}"),
            }),
        }
    }
}

impl HealthConfig {
    /// Applies first boot's database choice: on SQLite there is no database unit to watch.
    /// A missing file (first boot has not chosen yet) leaves the configuration as it is.
    pub fn apply_database_choice(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.database_choice_file else {
            return Ok(());
        };
        let Some(text) = read_if_there(path)? else {
            return Ok(());
        };
        let db = Database::parse_choice(&path.display().to_string(), &text)?;
        if db == Database::Sqlite {
            self.database_unit = None;
        }
        self.database = Some(db);
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProcessConfig {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub workdir: PathBuf,
    pub log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LedConfig {
    None,
    Sysfs(PathBuf),
    Gpio { pin: u8, active_low: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The userspace `ina219` driver over rppal's I2C (the appliance).
    Ina219,
    /// The kernel's `ina2xx` hwmon driver through sysfs.
    Hwmon,
    /// The register-level simulator, fed by the CPU power model (`make run`).
    Simulated,
}

/// ADC setting of one INA219 channel: a single conversion of 9–12 bits, or 12-bit averaging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adc {
    Bits9,
    Bits10,
    Bits11,
    Bits12,
    Avg(u8),
}

impl Adc {
    const NAMES: &'static str =
        "\"9bit\", \"10bit\", \"11bit\", \"12bit\", \"avg2\", \"avg4\", \"avg8\", \"avg16\", \"avg32\", \"avg64\", \"avg128\"";

    fn parse(s: &str) -> Option<Adc> {
        Some(match s {
            "9bit" => Adc::Bits9,
            "10bit" => Adc::Bits10,
            "11bit" => Adc::Bits11,
            "12bit" => Adc::Bits12,
            "avg2" => Adc::Avg(2),
            "avg4" => Adc::Avg(4),
            "avg8" => Adc::Avg(8),
            "avg16" => Adc::Avg(16),
            "avg32" => Adc::Avg(32),
            "avg64" => Adc::Avg(64),
            "avg128" => Adc::Avg(128),
            _ => return None,
        })
    }
}

/// The I2C bus the INA219 is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I2cBus {
    /// The bus of the Pi's header (pins 3 and 5), found by its controller's device-tree path
    /// ([`crate::power::i2c::header_bus`]): its number is not guaranteed to be 1.
    Auto,
    Number(u8),
}

impl I2cBus {
    /// The bus number on this board (`sys`: `/sys`); `Auto` without a match is 1, the usual.
    pub fn resolve(self, sys: &Path) -> u8 {
        match self {
            I2cBus::Number(n) => n,
            I2cBus::Auto => crate::power::i2c::header_bus(sys).unwrap_or(1),
        }
    }
}

impl fmt::Display for I2cBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            I2cBus::Auto => f.write_str("auto"),
            I2cBus::Number(n) => write!(f, "{n}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Ina219Config {
    pub i2c_bus: I2cBus,
    pub address: u8,
    pub shunt_ohms: f64,
    pub max_current_a: f64,
    pub gain_correction: f64,
    pub shunt_adc: Adc,
    pub bus_adc: Adc,
    pub shunt_range_mv: u16,
    pub bus_range_v: u8,
}

impl Default for Ina219Config {
    /// The defaults chosen for energy accuracy: see hardware/README.md.
    fn default() -> Self {
        Self {
            i2c_bus: I2cBus::Auto,
            address: 0x40,
            shunt_ohms: 0.1,
            max_current_a: 3.2,
            gain_correction: 1.0,
            shunt_adc: Adc::Avg(128),
            bus_adc: Adc::Bits12,
            shunt_range_mv: 320,
            bus_range_v: 16,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedConfig {
    pub idle_watts: f64,
    pub full_watts: f64,
    pub supply_volts: f64,
    pub source_ohms: f64,
}

impl Default for SimulatedConfig {
    /// A Raspberry Pi 4: about 2.7 W idle, 6.4 W with all cores busy, on the official 5.1 V supply.
    fn default() -> Self {
        Self {
            idle_watts: 2.7,
            full_watts: 6.4,
            supply_volts: 5.1,
            source_ohms: 0.15,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PowerConfig {
    pub backend: Backend,
    pub ina219: Ina219Config,
    pub under_voltage_v: f64,
    pub hwmon_path: Option<PathBuf>,
    pub hwmon_interval: Duration,
    pub simulated: SimulatedConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    pub path: PathBuf,
    pub flush_interval: Duration,
    pub minute_retention_days: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Mark the session cookie `Secure`: set it when a TLS proxy serves the page (a proxy that
    /// sends `X-Forwarded-Proto: https` gets them anyway).
    pub secure_cookies: bool,
    /// The one-time setup code first boot writes; `/setup` uses it up.
    pub setup_code_file: PathBuf,
    /// Connections served at once; more wait in the kernel's backlog (`http::serve`).
    pub max_connections: usize,
    /// A request's head must arrive within this long of the connection waiting for it (new,
    /// or idle after a response): slow headers and idle keep-alive connections end here.
    pub header_timeout: Duration,
    /// A request is answered within this long, or gets 503 and its connection closes.
    pub request_timeout: Duration,
    /// On shutdown, connections get this long to finish their request.
    pub shutdown_grace: Duration,
    /// The names the page answers for besides `hearth.local`, `localhost` and IP addresses
    /// (`http::host`): `[http] public_names`, then the server's name from `server_name_file`
    /// once [`Config::load`] read it.
    pub public_names: Vec<String>,
    /// Where the setup writes the server's chosen name (one line); read by [`Config::load`].
    pub server_name_file: Option<PathBuf>,
    /// Peers whose `X-Real-IP`/`X-Forwarded-For` name the client (the TLS proxy on the box).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The remembered-device cookies' key (32 random bytes, 0600, created once).
    pub device_key_file: PathBuf,
}

/// A host name as the `Host` header carries it: letters, digits, `-` and `.`, at most 253
/// characters, lower case; `None` when it is not one.
pub fn host_name(text: &str) -> Option<String> {
    let n = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    ok.then_some(n)
}

impl HttpConfig {
    /// Adds the server's name from `server_name_file` to the public names. A missing file (no
    /// name chosen yet) changes nothing.
    pub fn apply_server_name(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.server_name_file else {
            return Ok(());
        };
        let file = path.display().to_string();
        let Some(text) = read_if_there(path)? else {
            return Ok(());
        };
        let first = text.lines().next().unwrap_or("");
        let name = host_name(first).ok_or_else(|| ConfigError {
            file,
            line: Some(1),
            key: None,
            message: format!("expected a host name such as family.example.org, found {first:?}"),
        })?;
        if !self.public_names.contains(&name) {
            self.public_names.push(name);
        }
        Ok(())
    }
}

/// Where first boot writes the setup code (overlays/usr/lib/hearth/firstboot).
pub const DEFAULT_SETUP_CODE_FILE: &str = "/var/lib/hearth/setup_code";

/// The default configuration file of the appliance.
pub const DEFAULT_PATH: &str = "/etc/hearth/supervisor.toml";
/// The image's release file (`[update] release_file`): the version that runs.
pub const DEFAULT_RELEASE_FILE: &str = "/etc/hearth/release";

impl Config {
    /// Read and validate a configuration file, and the files it names that decide the
    /// configuration (first boot's database choice).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        let mut config = Self::parse(&path.display().to_string(), &text)?;
        config.health.apply_database_choice()?;
        config.http.apply_server_name()?;
        config.name.apply_cooperative_file()?;
        config.update.apply_source_file()?;
        Ok(config)
    }

    /// The configuration with every key at its default (the appliance's defaults).
    pub fn defaults() -> Config {
        // An empty document is always valid.
        match Self::parse("<defaults>", "") {
            Ok(c) => c,
            Err(e) => unreachable!("defaults must validate: {e}"),
        }
    }

    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            ConfigError {
                file: file.to_string(),
                line,
                key: None,
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        Validator { file, text }.config(raw)
    }
}

pub(crate) fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset).unwrap_or(text).matches('\n').count() + 1
}

/// Turns raw values into typed ones, naming the key and its line on failure.
struct Validator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, section: &str, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: find_key_line(self.text, section, key),
            key: Some(format!("{section}.{key}")),
            message,
        }
    }

    fn float(
        &self,
        section: &str,
        key: &str,
        value: Option<f64>,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        let v = value.unwrap_or(default);
        if v.is_finite() && (min..=max).contains(&v) {
            Ok(v)
        } else {
            Err(self.err(
                section,
                key,
                format!("{v} is out of range; allowed {min} to {max}"),
            ))
        }
    }

    fn int(
        &self,
        section: &str,
        key: &str,
        value: Option<i64>,
        default: i64,
        allowed: &[i64],
        range: Option<(i64, i64)>,
    ) -> Result<i64, ConfigError> {
        let v = value.unwrap_or(default);
        let ok = match range {
            Some((lo, hi)) => (lo..=hi).contains(&v),
            None => allowed.contains(&v),
        };
        if ok {
            Ok(v)
        } else {
            let allowed = match range {
                Some((lo, hi)) => format!("{lo} to {hi}"),
                None => allowed
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            Err(self.err(
                section,
                key,
                format!("{v} is out of range; allowed {allowed}"),
            ))
        }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let storage = self.storage(raw.storage)?;
        let state_dir = storage
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let tariff_configured = raw.accounting.tariff_per_kwh.is_some();
        let health = self.health(raw.health, &state_dir)?;
        let name = self.name(raw.name, health.backend)?;
        let relay_config = name.relay_files.config.clone();
        let budget = self.budget(raw.budget, health.backend)?;
        let update = self.update(raw.update)?;
        Ok(Config {
            update,
            health,
            name,
            tariff_configured,
            power: self.power(raw.power)?,
            http: self.http(raw.http, &state_dir)?,
            log_level: self.log(raw.log)?,
            led: self.led(raw.led)?,
            accountant: self.accountant(&raw.accounting)?,
            accounting: self.accounting(raw.accounting)?,
            transparency: self.transparency(raw.transparency)?,
            report: self.report(raw.report)?,
            backup: self.backup(raw.backup, relay_config)?,
            budget,
            storage,
        })
    }

    fn report(&self, r: RawReport) -> Result<ReportConfig, ConfigError> {
        const S: &str = "report";
        let supplier = match r.supplier {
            None => None,
            Some(s) => {
                report_wire::check_supplier(&s).map_err(|m| self.err(S, "supplier", m.into()))?;
                Some(s)
            }
        };
        Ok(ReportConfig {
            enabled: r.enabled.unwrap_or(false),
            epsilon: self.float(
                S,
                "epsilon",
                r.epsilon,
                1.0,
                report_wire::MIN_EPSILON,
                report_wire::MAX_EPSILON,
            )?,
            supplier,
            token_wait_s: self.int(
                S,
                "token_wait_s",
                r.token_wait_s,
                86_400,
                &[],
                Some((0, 7 * 86_400)),
            )?,
            retry_s: self.int(S, "retry_s", r.retry_s, 60, &[], Some((1, 3600)))?,
        })
    }

    fn name(&self, n: RawName, backend: HealthBackend) -> Result<NameConfig, ConfigError> {
        const S: &str = "name";
        let nonempty = |key: &str, v: Option<String>| match v {
            Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
            other => Ok(other),
        };
        let server_name_file = nonempty("server_name_file", n.server_name_file)?
            .or_else(|| {
                (backend == HealthBackend::Systemd).then(|| DEFAULT_SERVER_NAME_FILE.to_string())
            })
            .map(PathBuf::from);
        let path = |key: &str, v: Option<String>, default: &str| {
            nonempty(key, v).map(|v| PathBuf::from(v.unwrap_or_else(|| default.into())))
        };
        let relay_files = RelayFiles {
            config: path(
                "relay_config",
                n.relay_config,
                crate::tunnel::DEFAULT_CONFIG,
            )?,
            key: path("tunnel_key", n.tunnel_key, crate::tunnel::DEFAULT_KEY)?,
            status: path(
                "tunnel_status",
                n.tunnel_status,
                crate::tunnel::DEFAULT_STATUS,
            )?,
        };
        let (cooperative_domain, relay) = self.cooperative(
            RawCooperative {
                cooperative_domain: n.cooperative_domain,
                cooperative_api: n.cooperative_api,
                cooperative_ca: n.cooperative_ca,
            },
            &relay_files,
        )?;
        let cooperative_file = nonempty("cooperative_file", n.cooperative_file)?
            .or_else(|| {
                (backend == HealthBackend::Systemd).then(|| DEFAULT_COOPERATIVE_FILE.to_string())
            })
            .map(PathBuf::from);
        Ok(NameConfig {
            server_name_file,
            cooperative_domain,
            relay,
            cooperative_file,
            relay_files,
            tls_dir: PathBuf::from(
                nonempty("tls_dir", n.tls_dir)?.unwrap_or_else(|| DEFAULT_TLS_DIR.into()),
            ),
            check_interval: Duration::from_secs(self.int(
                S,
                "check_interval_s",
                n.check_interval_s,
                300,
                &[],
                Some((30, 86_400)),
            )? as u64),
        })
    }

    /// The cooperative's keys (from `[name]` or from the cooperative file).
    fn cooperative(
        &self,
        n: RawCooperative,
        files: &RelayFiles,
    ) -> Result<(Option<String>, Option<RelaySettings>), ConfigError> {
        const S: &str = "name";
        let nonempty = |key: &str, v: Option<String>| match v {
            Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
            other => Ok(other),
        };
        let cooperative_domain = match nonempty("cooperative_domain", n.cooperative_domain)? {
            Some(d) => match crate::name::parse(&d) {
                Ok(d) => Some(d.as_str().to_string()),
                _ => {
                    return Err(self.err(
                        S,
                        "cooperative_domain",
                        format!("{d:?} is not a DNS name such as \"hearth.example.coop\""),
                    ))
                }
            },
            None => None,
        };
        let relay = match nonempty("cooperative_api", n.cooperative_api)? {
            None => None,
            Some(api) => {
                let api = api.trim().trim_end_matches('/').to_string();
                let host = api.strip_prefix("https://").unwrap_or("");
                if host.is_empty() || host.contains('/') {
                    return Err(self.err(
                        S,
                        "cooperative_api",
                        format!(
                            "{api:?} is not an address such as \"https://relay.coop.example:7443\""
                        ),
                    ));
                }
                if cooperative_domain.is_none() {
                    return Err(self.err(
                        S,
                        "cooperative_api",
                        "needs cooperative_domain (the names the cooperative gives out)".into(),
                    ));
                }
                Some(RelaySettings {
                    api,
                    ca: nonempty("cooperative_ca", n.cooperative_ca)?.map(PathBuf::from),
                    config: files.config.clone(),
                    key: files.key.clone(),
                    status: files.status.clone(),
                })
            }
        };
        Ok((cooperative_domain, relay))
    }

    fn update(&self, u: RawUpdate) -> Result<UpdateConfig, ConfigError> {
        const S: &str = "update";
        let path = |key: &str, v: Option<String>, default: &str| match v {
            Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
            Some(p) => Ok(PathBuf::from(p)),
            None => Ok(PathBuf::from(default)),
        };
        let commit_after_s = self.int(
            S,
            "commit_after_s",
            u.commit_after_s,
            300,
            &[],
            Some((10, 3600)),
        )?;
        let give_up_after_s = self.int(
            S,
            "give_up_after_s",
            u.give_up_after_s,
            1200,
            &[],
            Some((30, 24 * 3600)),
        )?;
        if give_up_after_s <= commit_after_s {
            return Err(self.err(
                S,
                "give_up_after_s",
                format!("{give_up_after_s} must be more than commit_after_s ({commit_after_s})"),
            ));
        }
        Ok(UpdateConfig {
            state_dir: path("state_dir", u.state_dir, "/data/update")?,
            verdict_file: path(
                "verdict_file",
                u.verdict_file,
                "/var/lib/hearth/update-verdict.json",
            )?,
            key: path("key", u.key, "/usr/share/hearth/update.pub")?,
            postpone_file: path(
                "postpone_file",
                u.postpone_file,
                "/var/lib/hearth/update-postponed",
            )?,
            cmdline: path("cmdline", u.cmdline, "/proc/cmdline")?,
            commit_after: Duration::from_secs(commit_after_s as u64),
            give_up_after: Duration::from_secs(give_up_after_s as u64),
            source: u.source.filter(|s| !s.trim().is_empty()),
            rate_kbps: self.int(S, "rate_kbps", u.rate_kbps, 0, &[], Some((0, 1_000_000)))? as u64,
            disk: match u.disk {
                Some(d) if d != "auto" && !d.contains("{}") => {
                    return Err(self.err(
                        S,
                        "disk",
                        format!("'{d}' is neither auto nor has {{}} for the partition number"),
                    ))
                }
                Some(d) => d,
                None => "auto".into(),
            },
            release_file: path("release_file", u.release_file, DEFAULT_RELEASE_FILE)?,
            source_file: path("source_file", u.source_file, "/etc/hearth/update-source")?,
        })
    }

    fn budget(&self, b: RawBudget, backend: HealthBackend) -> Result<BudgetConfig, ConfigError> {
        const S: &str = "budget";
        let limits_socket = match b.limits_socket {
            Some(p) if p.trim().is_empty() => None,
            Some(p) => Some(PathBuf::from(p)),
            // The appliance's Synapse asks here (homeserver.yaml's `modules:`).
            None if backend == HealthBackend::Systemd => {
                Some(PathBuf::from("/run/hearth-limits/limits.sock"))
            }
            None => None,
        };
        let socket_group = b.socket_group.unwrap_or_else(|| "hearth-limits".into());
        if !socket_group
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        {
            return Err(self.err(S, "socket_group", "a group name, or empty".into()));
        }
        let socket_group = (!socket_group.is_empty()).then_some(socket_group);
        Ok(BudgetConfig {
            limits_socket,
            socket_group,
        })
    }

    fn backup(&self, b: RawBackup, relay_config: PathBuf) -> Result<BackupConfig, ConfigError> {
        const S: &str = "backup";
        let nonempty = |key: &str, v: Option<String>| match v {
            Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
            other => Ok(other),
        };
        let path = |key: &str, v: Option<String>, default: &str| {
            nonempty(key, v).map(|v| PathBuf::from(v.unwrap_or_else(|| default.into())))
        };
        let cooperative_repository = nonempty("cooperative_repository", b.cooperative_repository)?;
        if let Some(r) = &cooperative_repository {
            if !(r.starts_with("rest:https://") || r.starts_with("rest:http://")) {
                return Err(self.err(
                    S,
                    "cooperative_repository",
                    format!("'{r}' is not a REST repository (rest:https://…)"),
                ));
            }
        }
        Ok(BackupConfig {
            key_file: path("key_file", b.key_file, "/etc/hearth/backup/key")?,
            status_file: path(
                "status_file",
                b.status_file,
                "/var/lib/hearth-backup/status.json",
            )?,
            restic: path("restic", b.restic, "restic")?,
            usb_repository: path(
                "usb_repository",
                b.usb_repository,
                "/media/hearth-backup/hearth",
            )?,
            cooperative_repository,
            cooperative_credentials_file: nonempty(
                "cooperative_credentials_file",
                b.cooperative_credentials_file,
            )?
            .map(PathBuf::from),
            cooperative_ca: nonempty("cooperative_ca", b.cooperative_ca)?.map(PathBuf::from),
            limit_upload_kib: self.int(
                S,
                "limit_upload_kib",
                b.limit_upload_kib,
                1024,
                &[],
                Some((0, 1_000_000)),
            )? as u32,
            timeout: Duration::from_secs(self.int(
                S,
                "timeout_s",
                b.timeout_s,
                4 * 3600,
                &[],
                Some((10, 24 * 3600)),
            )? as u64),
            root: path("root", b.root, "/")?,
            restore_request_file: path(
                "restore_request_file",
                b.restore_request_file,
                "/var/lib/hearth/restore-request",
            )?,
            restore_status_file: path(
                "restore_status_file",
                b.restore_status_file,
                "/run/hearth-restore/status.json",
            )?,
            relay_config,
        })
    }

    fn transparency(&self, t: RawTransparency) -> Result<TransparencyConfig, ConfigError> {
        const S: &str = "transparency";
        let path = |key: &str, v: Option<String>, default: &str| match v {
            Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
            Some(p) => Ok(PathBuf::from(p)),
            None => Ok(PathBuf::from(default)),
        };
        Ok(TransparencyConfig {
            pages_dir: path(
                "pages_dir",
                t.pages_dir,
                crate::transparency::about::DEFAULT_DIR,
            )?,
            access_file: path(
                "access_file",
                t.access_file,
                crate::transparency::inventory::DEFAULT_OUT,
            )?,
        })
    }

    fn accountant(&self, a: &RawAccounting) -> Result<AccountantConfig, ConfigError> {
        const S: &str = "accounting";
        let journal_command = match &a.journal_command {
            None => AccountantConfig::default().journal_command,
            Some(c) if c.trim().is_empty() => {
                return Err(self.err(S, "journal_command", "must not be empty".into()))
            }
            Some(c) => PathBuf::from(c),
        };
        let members_file = match &a.members_file {
            Some(f) if f.trim().is_empty() => {
                return Err(self.err(S, "members_file", "must not be empty".into()))
            }
            f => f.as_ref().map(PathBuf::from),
        };
        Ok(AccountantConfig {
            journal_command,
            members_file,
        })
    }

    fn accounting(&self, a: RawAccounting) -> Result<AccountingConfig, ConfigError> {
        const S: &str = "accounting";
        let d = AccountingConfig::default();
        let base_watts = match a.base_watts {
            None => d.base_watts,
            Some(toml::Value::String(s)) if s == "auto" => BaseWatts::Auto,
            Some(v) => {
                let w = match v {
                    toml::Value::Float(f) => f,
                    toml::Value::Integer(i) => i as f64,
                    other => {
                        return Err(self.err(
                            S,
                            "base_watts",
                            format!("{other} is neither a number of watts nor \"auto\""),
                        ))
                    }
                };
                BaseWatts::Fixed(self.float(S, "base_watts", Some(w), 0.0, 0.0, 100.0)?)
            }
        };
        let currency = a.currency.unwrap_or(d.currency);
        if !(currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_uppercase())) {
            return Err(self.err(
                S,
                "currency",
                format!("{currency:?} is not an ISO 4217 code such as \"EUR\""),
            ));
        }
        let mut fixed_costs = Vec::with_capacity(a.fixed_cost.len());
        for (n, fc) in a.fixed_cost.into_iter().enumerate() {
            let fc = fc.into_inner();
            let at = |span: std::ops::Range<usize>, key: &str, message: String| ConfigError {
                file: self.file.to_string(),
                line: Some(line_of_offset(self.text, span.start)),
                key: Some(format!("{S}.fixed_cost[{}].{key}", n + 1)),
                message,
            };
            let name = fc.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(at(fc.name.span(), "name", "must not be empty".into()));
            }
            let amount = *fc.amount.get_ref();
            if !(amount.is_finite() && (0.0..=1_000_000.0).contains(&amount)) {
                return Err(at(
                    fc.amount.span(),
                    "amount",
                    format!("{amount} is out of range; allowed 0 to 1000000"),
                ));
            }
            let per = match fc.per.get_ref().as_str() {
                "month" => CostPer::Month,
                "year" => CostPer::Year,
                other => {
                    return Err(at(
                        fc.per.span(),
                        "per",
                        format!("unknown period {other:?}; allowed \"month\", \"year\""),
                    ))
                }
            };
            fixed_costs.push(FixedCost { name, amount, per });
        }
        Ok(AccountingConfig {
            base_watts,
            tariff_per_kwh: self.float(
                S,
                "tariff_per_kwh",
                a.tariff_per_kwh,
                d.tariff_per_kwh,
                0.0,
                100.0,
            )?,
            currency,
            storage_price_per_gib_month: self.float(
                S,
                "storage_price_per_gib_month",
                a.storage_price_per_gib_month,
                d.storage_price_per_gib_month,
                0.0,
                1000.0,
            )?,
            fixed_costs,
            directory_sync: Duration::from_secs(self.int(
                S,
                "directory_sync_s",
                a.directory_sync_s,
                d.directory_sync.as_secs() as i64,
                &[],
                Some((60, 86_400)),
            )? as u64),
        })
    }

    fn power(&self, p: RawPower) -> Result<PowerConfig, ConfigError> {
        const S: &str = "power";
        let d = Ina219Config::default();
        let backend = match p.backend.as_deref().unwrap_or("ina219") {
            "ina219" => Backend::Ina219,
            "hwmon" => Backend::Hwmon,
            "simulated" => Backend::Simulated,
            other => {
                return Err(self.err(
                    S,
                    "backend",
                    format!(
                        "unknown backend {other:?}; allowed \"ina219\", \"hwmon\", \"simulated\""
                    ),
                ))
            }
        };
        let adc = |key: &str, v: Option<String>, default: Adc| -> Result<Adc, ConfigError> {
            match v {
                None => Ok(default),
                Some(s) => Adc::parse(&s).ok_or_else(|| {
                    self.err(
                        S,
                        key,
                        format!("unknown ADC mode {s:?}; allowed {}", Adc::NAMES),
                    )
                }),
            }
        };
        let shunt_ohms = self.float(S, "shunt_ohms", p.shunt_ohms, d.shunt_ohms, 0.000_1, 10.0)?;
        let max_current_a = self.float(
            S,
            "max_current_a",
            p.max_current_a,
            d.max_current_a,
            0.01,
            100.0,
        )?;
        let shunt_range_mv = self.int(
            S,
            "shunt_range_mv",
            p.shunt_range_mv,
            320,
            &[40, 80, 160, 320],
            None,
        )?;
        // The shunt must be able to carry max_current_a within the chosen range.
        let full_scale_a = shunt_range_mv as f64 / 1000.0 / shunt_ohms;
        if max_current_a > full_scale_a * 1.000_001 {
            return Err(self.err(
                S,
                "max_current_a",
                format!(
                    "{max_current_a} A exceeds the full scale of a {shunt_ohms} Ω shunt at {shunt_range_mv} mV ({full_scale_a:.3} A); use a smaller shunt or a larger range"
                ),
            ));
        }
        let ina219 = Ina219Config {
            i2c_bus: match &p.i2c_bus {
                None => I2cBus::Auto,
                Some(RawBus::Word(w)) if w == "auto" => I2cBus::Auto,
                Some(RawBus::Word(w)) => {
                    return Err(self.err(
                        S,
                        "i2c_bus",
                        format!("{w:?} is not a bus; a number (0 to 255) or \"auto\""),
                    ))
                }
                Some(RawBus::Number(n)) => {
                    I2cBus::Number(self.int(S, "i2c_bus", Some(*n), 1, &[], Some((0, 255)))? as u8)
                }
            },
            address: self.int(S, "address", p.address, 0x40, &[], Some((0x40, 0x4F)))? as u8,
            shunt_ohms,
            max_current_a,
            gain_correction: self.float(
                S,
                "gain_correction",
                p.gain_correction,
                d.gain_correction,
                0.9,
                1.1,
            )?,
            shunt_adc: adc("shunt_adc", p.shunt_adc, d.shunt_adc)?,
            bus_adc: adc("bus_adc", p.bus_adc, d.bus_adc)?,
            shunt_range_mv: shunt_range_mv as u16,
            bus_range_v: self.int(S, "bus_range_v", p.bus_range_v, 16, &[16, 32], None)? as u8,
        };
        let under_voltage_v =
            self.float(S, "under_voltage_v", p.under_voltage_v, 4.63, 0.0, 32.0)?;
        let hwmon_interval = Duration::from_millis(self.int(
            S,
            "hwmon_interval_ms",
            p.hwmon_interval_ms,
            100,
            &[],
            Some((10, 60_000)),
        )? as u64);
        const SIM: &str = "power.simulated";
        let sd = SimulatedConfig::default();
        let sim = p.simulated;
        let simulated = SimulatedConfig {
            idle_watts: self.float(SIM, "idle_watts", sim.idle_watts, sd.idle_watts, 0.0, 100.0)?,
            full_watts: self.float(SIM, "full_watts", sim.full_watts, sd.full_watts, 0.0, 100.0)?,
            supply_volts: self.float(
                SIM,
                "supply_volts",
                sim.supply_volts,
                sd.supply_volts,
                1.0,
                26.0,
            )?,
            source_ohms: self.float(
                SIM,
                "source_ohms",
                sim.source_ohms,
                sd.source_ohms,
                0.0,
                1.0,
            )?,
        };
        if simulated.full_watts < simulated.idle_watts {
            return Err(self.err(
                SIM,
                "full_watts",
                format!(
                    "{} is below idle_watts ({}); allowed idle_watts to 100",
                    simulated.full_watts, simulated.idle_watts
                ),
            ));
        }
        Ok(PowerConfig {
            backend,
            ina219,
            under_voltage_v,
            hwmon_path: p.hwmon_path.map(PathBuf::from),
            hwmon_interval,
            simulated,
        })
    }

    fn health(&self, h: RawHealth, state_dir: &Path) -> Result<HealthConfig, ConfigError> {
        const S: &str = "health";
        let backend = match h.backend.as_deref().unwrap_or("systemd") {
            "systemd" => HealthBackend::Systemd,
            "process" => HealthBackend::Process,
            "none" => HealthBackend::None,
            other => {
                return Err(self.err(
                    S,
                    "backend",
                    format!(
                        "unknown backend {other:?}; allowed \"systemd\", \"process\", \"none\""
                    ),
                ))
            }
        };
        let url = h
            .synapse_url
            .unwrap_or_else(|| "http://127.0.0.1:8008".into());
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(self.err(
                S,
                "synapse_url",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        let ms = |key: &str,
                  v: Option<i64>,
                  d: i64,
                  lo: i64,
                  hi: i64|
         -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(
                self.int(S, key, v, d, &[], Some((lo, hi)))? as u64,
            ))
        };
        let secs = |key: &str,
                    v: Option<i64>,
                    d: i64,
                    lo: i64,
                    hi: i64|
         -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(
                self.int(S, key, v, d, &[], Some((lo, hi)))? as u64,
            ))
        };
        let probe_interval = ms("probe_interval_ms", h.probe_interval_ms, 2000, 100, 60_000)?;
        let probe_timeout = ms("probe_timeout_ms", h.probe_timeout_ms, 2000, 100, 60_000)?;
        let p = h.process;
        Ok(HealthConfig {
            backend,
            synapse_unit: h
                .synapse_unit
                .unwrap_or_else(|| "matrix-synapse.service".into()),
            database_unit: h.database_unit.filter(|d| !d.is_empty()),
            workers: h.workers.unwrap_or_default(),
            synapse_url: url,
            probe_interval,
            probe_timeout,
            start_grace: secs("start_grace_s", h.start_grace_s, 60, 0, 3600)?,
            hang_misses: self.int(S, "hang_misses", h.hang_misses, 3, &[], Some((1, 100)))? as u32,
            loop_restarts: self.int(S, "loop_restarts", h.loop_restarts, 4, &[], Some((1, 1000)))?
                as u32,
            loop_window: secs("loop_window_s", h.loop_window_s, 600, 10, 86_400)?,
            admin_token_file: h
                .admin_token_file
                .map(PathBuf::from)
                .unwrap_or_else(|| state_dir.join("admin_token")),
            maintenance_file: h
                .maintenance_file
                .map(PathBuf::from)
                .unwrap_or_else(|| state_dir.join("maintenance")),
            database_choice_file: h
                .database_choice_file
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
            database: None,
            process: ProcessConfig {
                program: PathBuf::from(
                    p.program
                        .unwrap_or_else(|| "var/synapse/venv/bin/python".into()),
                ),
                args: p.args.unwrap_or_else(|| {
                    [
                        "-m",
                        "synapse.app.homeserver",
                        "--config-path",
                        "var/synapse/homeserver.yaml",
                    ]
                    .map(String::from)
                    .to_vec()
                }),
                workdir: PathBuf::from(p.workdir.unwrap_or_else(|| ".".into())),
                log: p.log.map(PathBuf::from),
            },
        })
    }

    fn led(&self, l: RawLed) -> Result<LedConfig, ConfigError> {
        const S: &str = "led";
        Ok(match l.backend.as_deref().unwrap_or("none") {
            "none" => LedConfig::None,
            "sysfs" => LedConfig::Sysfs(PathBuf::from(
                l.sysfs_path.unwrap_or_else(|| "/sys/class/leds/ACT".into()),
            )),
            "gpio" => LedConfig::Gpio {
                pin: self.int(S, "gpio_pin", l.gpio_pin, 17, &[], Some((0, 27)))? as u8,
                active_low: l.active_low.unwrap_or(false),
            },
            other => {
                return Err(self.err(
                    S,
                    "backend",
                    format!("unknown backend {other:?}; allowed \"none\", \"sysfs\", \"gpio\""),
                ))
            }
        })
    }

    fn storage(&self, s: RawStorage) -> Result<StorageConfig, ConfigError> {
        const S: &str = "storage";
        Ok(StorageConfig {
            path: PathBuf::from(s.path.unwrap_or_else(|| "/var/lib/hearth/hearth.db".into())),
            flush_interval: Duration::from_secs(self.int(
                S,
                "flush_interval_s",
                s.flush_interval_s,
                300,
                &[],
                Some((1, 3600)),
            )? as u64),
            minute_retention_days: self.int(
                S,
                "minute_retention_days",
                s.minute_retention_days,
                31,
                &[],
                Some((1, 3660)),
            )? as u32,
        })
    }

    fn http(&self, h: RawHttp, state_dir: &Path) -> Result<HttpConfig, ConfigError> {
        const S: &str = "http";
        let secs = |key: &str, v: Option<i64>, default: i64, lo: i64, hi: i64| {
            self.int(S, key, v, default, &[], Some((lo, hi)))
                .map(|v| Duration::from_secs(v as u64))
        };
        let mut public_names = Vec::new();
        for n in h.public_names.unwrap_or_default() {
            let name = host_name(&n).ok_or_else(|| {
                self.err(
                    S,
                    "public_names",
                    format!("{n:?} is not a host name such as family.example.org"),
                )
            })?;
            public_names.push(name);
        }
        let mut trusted_proxies = Vec::new();
        for p in h
            .trusted_proxies
            .unwrap_or_else(|| vec!["127.0.0.1".into(), "::1".into()])
        {
            trusted_proxies.push(p.trim().parse().map_err(|_| {
                self.err(
                    S,
                    "trusted_proxies",
                    format!("{p:?} is not an IP address such as \"127.0.0.1\""),
                )
            })?);
        }
        let path = |key: &str, v: Option<String>| -> Result<Option<PathBuf>, ConfigError> {
            match v {
                Some(p) if p.trim().is_empty() => Err(self.err(S, key, "must not be empty".into())),
                Some(p) => Ok(Some(PathBuf::from(p))),
                None => Ok(None),
            }
        };
        let server_name_file = path("server_name_file", h.server_name_file)?
            .or_else(|| Some(PathBuf::from(DEFAULT_SERVER_NAME_FILE)));
        let device_key_file = path("device_key_file", h.device_key_file)?
            .unwrap_or_else(|| state_dir.join("device_key"));
        let max_connections = self.int(
            S,
            "max_connections",
            h.max_connections,
            256,
            &[],
            Some((1, 4096)),
        )? as usize;
        let header_timeout = secs("header_timeout_s", h.header_timeout_s, 10, 1, 120)?;
        let request_timeout = secs("request_timeout_s", h.request_timeout_s, 30, 1, 300)?;
        // With app::TASKS_MARGIN, SAMPLER_BOUND and FLUSH_BOUND (9 s) a stop stays inside the
        // unit's TimeoutStopSec=30s.
        let shutdown_grace = secs("shutdown_grace_s", h.shutdown_grace_s, 5, 0, 20)?;
        let text = h.listen.unwrap_or_else(|| "0.0.0.0:80".into());
        let listen = text.parse().map_err(|_| {
            self.err(
                "http",
                "listen",
                format!("{text:?} is not an address:port such as \"127.0.0.1:8080\""),
            )
        })?;
        Ok(HttpConfig {
            listen,
            secure_cookies: h.secure_cookies.unwrap_or(false),
            setup_code_file: PathBuf::from(
                h.setup_code_file
                    .unwrap_or_else(|| DEFAULT_SETUP_CODE_FILE.into()),
            ),
            max_connections,
            header_timeout,
            request_timeout,
            shutdown_grace,
            public_names,
            server_name_file,
            trusted_proxies,
            device_key_file,
        })
    }

    fn log(&self, l: RawLog) -> Result<String, ConfigError> {
        let level = l.level.unwrap_or_else(|| "info".into());
        match level.as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => Ok(level),
            _ => Err(self.err(
                "log",
                "level",
                format!("{level:?} is not a level; allowed \"error\", \"warn\", \"info\", \"debug\", \"trace\""),
            )),
        }
    }
}

/// The 1-based line of `key = …` inside `[section]`, found by a plain scan of the document.
fn find_key_line(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix('[') {
            current = rest.trim_end_matches(']').trim().to_string();
            continue;
        }
        if current == section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim().trim_matches('"') == key {
                    return Some(i + 1);
                }
            }
        }
    }
    None
}

/// A file that may not be there yet (first boot writes it): its text, `None` when missing, and
/// a one-line error naming it when it cannot be read.
fn read_if_there(path: &std::path::Path) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError {
            file: path.display().to_string(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match Config::parse("test.toml", text) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_update_disk_is_found_unless_named() {
        assert_eq!(Config::defaults().update.disk, "auto");
        let c = Config::parse("t.toml", "[update]\ndisk = \"/dev/sda{}\"\n").unwrap();
        assert_eq!(c.update.disk, "/dev/sda{}");
        let e = err("[update]\ndisk = \"/dev/sda\"\n");
        assert!(
            e.starts_with("test.toml:2: update.disk:") && e.contains("neither auto"),
            "{e}"
        );
    }

    #[test]
    fn the_update_source_comes_from_its_own_file_kept_across_updates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("update-source");
        let toml = format!(
            "[update]\nsource_file = \"{}\"\ncommit_after_s = 30\n",
            file.display()
        );
        let load = |text: &str| {
            let mut c = Config::parse("supervisor.toml", text).unwrap();
            c.update.apply_source_file().map(|_| c.update.source)
        };
        assert_eq!(load(&toml).unwrap(), None, "no file: no updates");
        std::fs::write(
            &file,
            "# where releases come from\n\nhttps://updates.coop.example/stable\n",
        )
        .unwrap();
        assert_eq!(
            load(&toml).unwrap().as_deref(),
            Some("https://updates.coop.example/stable")
        );
        // The configuration's own source wins.
        let own = toml.replace("[update]\n", "[update]\nsource = \"/media/stick/stable\"\n");
        assert_eq!(load(&own).unwrap().as_deref(), Some("/media/stick/stable"));
        std::fs::write(&file, "# x\nftp://old.example/\n").unwrap();
        let e = load(&toml).unwrap_err().to_string();
        assert!(
            e.contains("update-source:2")
                && e.contains("source")
                && e.contains("ftp://old.example/"),
            "{e}"
        );
        std::fs::write(&file, "/media/a\n/media/b\n").unwrap();
        let e = load(&toml).unwrap_err().to_string();
        assert!(e.contains(":2") && e.contains("first is on line 1"), "{e}");
    }

    #[test]
    fn report_settings_default_off_and_are_checked() {
        let d = Config::defaults().report;
        assert!(!d.enabled);
        assert_eq!(d.epsilon, 1.0);
        assert_eq!(d.supplier, None);
        let c = Config::parse(
            "test.toml",
            "[report]\nenabled = true\nepsilon = 0.5\nsupplier = \"Stadtwerke Nord\"\n",
        )
        .unwrap()
        .report;
        assert!(c.enabled);
        assert_eq!(c.epsilon, 0.5);
        assert_eq!(c.supplier.as_deref(), Some("Stadtwerke Nord"));
        assert_eq!(
            err("[report]\nepsilon = 0\n"),
            "test.toml:2: report.epsilon: 0 is out of range; allowed 0.1 to 10"
        );
        assert_eq!(
            err("[report]\nsupplier = \" Nord\"\n"),
            "test.toml:2: report.supplier: surrounding spaces"
        );
    }

    #[test]
    fn first_boots_database_choice_decides_the_watched_unit() {
        let dir = tempfile::tempdir().unwrap();
        let choice = dir.path().join("database");
        let conf = dir.path().join("supervisor.toml");
        std::fs::write(
            &conf,
            format!(
                "[health]\ndatabase_unit = \"postgresql@17-main.service\"\ndatabase_choice_file = {:?}\n",
                choice.display().to_string()
            ),
        )
        .unwrap();
        // Not chosen yet (the supervisor started before first boot got there): as configured.
        let c = Config::load(&conf).unwrap();
        assert_eq!(c.health.database, None);
        assert_eq!(
            c.health.database_unit.as_deref(),
            Some("postgresql@17-main.service")
        );

        std::fs::write(&choice, "postgresql\n").unwrap();
        let c = Config::load(&conf).unwrap();
        assert_eq!(c.health.database, Some(Database::Postgresql));
        assert_eq!(
            c.health.database_unit.as_deref(),
            Some("postgresql@17-main.service")
        );

        // A 1 GB board: Synapse on SQLite, no PostgreSQL unit to watch (it never starts there).
        std::fs::write(&choice, "sqlite\n").unwrap();
        let c = Config::load(&conf).unwrap();
        assert_eq!(c.health.database, Some(Database::Sqlite));
        assert_eq!(c.health.database_unit, None);

        std::fs::write(&choice, "mysql\n").unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:1: expected \"postgresql\" or \"sqlite\", found \"mysql\"",
                choice.display()
            )
        );
        std::fs::write(&choice, "").unwrap();
        assert!(Config::load(&conf).is_err(), "an empty choice is no choice");

        // Parsing alone reads no other file.
        let c = Config::parse("t.toml", &std::fs::read_to_string(&conf).unwrap()).unwrap();
        assert_eq!(c.health.database, None);
        assert_eq!(
            c.health.database_choice_file.as_deref(),
            Some(choice.as_path())
        );
    }

    #[test]
    fn empty_file_gives_the_appliance_defaults() {
        let c = Config::defaults();
        assert_eq!(c.power.backend, Backend::Ina219);
        assert_eq!(c.power.ina219, Ina219Config::default());
        assert_eq!(c.power.ina219.shunt_adc, Adc::Avg(128));
        assert_eq!(c.storage.flush_interval, Duration::from_secs(300));
        assert_eq!(c.http.listen, "0.0.0.0:80".parse::<SocketAddr>().unwrap());
        assert_eq!(c.health.backend, HealthBackend::Systemd);
        assert_eq!(c.health.synapse_unit, "matrix-synapse.service");
        assert_eq!(c.health.probe_interval, Duration::from_secs(2));
        assert_eq!(
            c.health.maintenance_file,
            PathBuf::from("/var/lib/hearth/maintenance")
        );
        assert_eq!(c.led, LedConfig::None);
        assert_eq!(c.accounting, AccountingConfig::default());
        assert_eq!(c.accounting.base_watts, BaseWatts::Auto);
        assert_eq!(c.accounting.currency, "EUR");
        assert_eq!(c.accounting.directory_sync, Duration::from_secs(600));
    }

    #[test]
    fn accounting_section_is_read() {
        let c = Config::parse(
            "test.toml",
            "[accounting]\nbase_watts = 3\ntariff_per_kwh = 0.42\ncurrency = \"CHF\"\n\
             storage_price_per_gib_month = 0.02\ndirectory_sync_s = 120\n\
             [[accounting.fixed_cost]]\nname = \"domain\"\namount = 12\nper = \"year\"\n\
             [[accounting.fixed_cost]]\nname = \"SD card\"\namount = 0.5\nper = \"month\"\n",
        )
        .unwrap();
        let a = c.accounting;
        assert_eq!(a.base_watts, BaseWatts::Fixed(3.0));
        assert_eq!(a.tariff_per_kwh, 0.42);
        assert!(c.tariff_configured);
        assert!(
            !Config::defaults().tariff_configured,
            "a default is not a family's price"
        );
        assert_eq!(a.currency, "CHF");
        assert_eq!(a.storage_price_per_gib_month, 0.02);
        assert_eq!(a.directory_sync, Duration::from_secs(120));
        assert_eq!(
            a.fixed_costs,
            vec![
                FixedCost {
                    name: "domain".into(),
                    amount: 12.0,
                    per: CostPer::Year
                },
                FixedCost {
                    name: "SD card".into(),
                    amount: 0.5,
                    per: CostPer::Month
                },
            ]
        );
        let auto = Config::parse("t", "[accounting]\nbase_watts = \"auto\"\n").unwrap();
        assert_eq!(auto.accounting.base_watts, BaseWatts::Auto);
        assert_eq!(auto.accountant, AccountantConfig::default());
        assert_eq!(auto.accountant.journal_command, PathBuf::from("journalctl"));
    }

    #[test]
    fn the_http_limits_and_names_are_read_and_checked() {
        let c = Config::defaults();
        assert_eq!(c.http.max_connections, 256);
        assert_eq!(c.http.header_timeout, Duration::from_secs(10));
        assert_eq!(c.http.request_timeout, Duration::from_secs(30));
        assert_eq!(c.http.shutdown_grace, Duration::from_secs(5));
        assert_eq!(
            c.http.trusted_proxies,
            vec![
                "127.0.0.1".parse::<std::net::IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(
            c.http.device_key_file,
            PathBuf::from("/var/lib/hearth/device_key")
        );
        assert_eq!(
            c.http.server_name_file.as_deref(),
            Some(Path::new(DEFAULT_SERVER_NAME_FILE))
        );
        let c = Config::parse(
            "t.toml",
            "[http]\nmax_connections = 64\npublic_names = [\"Family.Example.org.\"]\ntrusted_proxies = []\n",
        )
        .unwrap();
        assert_eq!(c.http.max_connections, 64);
        assert_eq!(c.http.public_names, vec!["family.example.org".to_string()]);
        assert!(c.http.trusted_proxies.is_empty());
        assert_eq!(
            err("[http]\nmax_connections = 0\n"),
            "test.toml:2: http.max_connections: 0 is out of range; allowed 1 to 4096"
        );
        assert_eq!(
            err("[http]\n\nheader_timeout_s = 600\n"),
            "test.toml:3: http.header_timeout_s: 600 is out of range; allowed 1 to 120"
        );
        assert!(err("[http]\nrequest_timeout_s = 0\n").contains("allowed 1 to 300"));
        assert!(err("[http]\nshutdown_grace_s = 60\n").contains("allowed 0 to 20"));
        assert!(err("[http]\npublic_names = [\"evil.com/x\"]\n").contains("not a host name"));
        assert!(err("[http]\ntrusted_proxies = [\"nginx\"]\n").contains("not an IP address"));
    }

    #[test]
    fn the_server_name_file_adds_a_public_name() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("server_name");
        let conf = dir.path().join("supervisor.toml");
        std::fs::write(
            &conf,
            format!(
                "[http]\npublic_names = [\"hearth.example.org\"]\nserver_name_file = {:?}\n",
                name.display().to_string()
            ),
        )
        .unwrap();
        // Not chosen yet.
        let c = Config::load(&conf).unwrap();
        assert_eq!(c.http.public_names, vec!["hearth.example.org".to_string()]);
        std::fs::write(&name, "Family.Hearth.Test\n").unwrap();
        let c = Config::load(&conf).unwrap();
        assert_eq!(
            c.http.public_names,
            vec![
                "hearth.example.org".to_string(),
                "family.hearth.test".into()
            ]
        );
        std::fs::write(&name, "not a name\n").unwrap();
        let e = Config::load(&conf).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:1: expected a host name", name.display())),
            "{e}"
        );
    }

    #[test]
    fn the_accountants_keys_are_read_and_checked() {
        let c = Config::parse(
            "t.toml",
            "[accounting]\njournal_command = \"/usr/bin/journalctl\"\nmembers_file = \"/etc/hearth/members.toml\"\n",
        )
        .unwrap();
        assert_eq!(
            c.accountant.journal_command,
            PathBuf::from("/usr/bin/journalctl")
        );
        assert_eq!(
            c.accountant.members_file,
            Some(PathBuf::from("/etc/hearth/members.toml"))
        );
        let e = Config::parse("t.toml", "[accounting]\nmembers_file = \" \"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.toml:2: accounting.members_file: must not be empty"
        );
    }

    #[test]
    fn the_transparency_section_is_read_and_checked() {
        let c = Config::defaults();
        assert_eq!(c.transparency.pages_dir, Path::new("/etc/hearth/pages"));
        assert_eq!(
            c.transparency.access_file,
            Path::new("/run/hearth/access.json")
        );
        let c = Config::parse(
            "t.toml",
            "[transparency]\npages_dir = \"var/pages\"\naccess_file = \"var/access.json\"\n",
        )
        .unwrap();
        assert_eq!(c.transparency.pages_dir, Path::new("var/pages"));
        assert_eq!(c.transparency.access_file, Path::new("var/access.json"));
        assert_eq!(
            err("[transparency]\n\npages_dir = \"\"\n"),
            "test.toml:3: transparency.pages_dir: must not be empty"
        );
        assert!(err("[transparency]\npages = \"x\"\n").contains("unknown field `pages`"));
    }

    #[test]
    fn the_name_section() {
        let ok = |t: &str| Config::parse("test.toml", t).unwrap().name;
        let err = |t: &str| Config::parse("test.toml", t).unwrap_err().to_string();
        // The appliance (systemd): the name step, the default files.
        let d = Config::defaults().name;
        assert_eq!(
            d.server_name_file.as_deref(),
            Some(Path::new("/etc/hearth/server_name"))
        );
        assert_eq!(d.cooperative_domain, None);
        assert_eq!(
            d.cooperative_file.as_deref(),
            Some(Path::new("/etc/hearth/cooperative.toml"))
        );
        assert_eq!(d.tls_dir, Path::new("/var/lib/hearth-tls"));
        assert_eq!(d.check_interval, Duration::from_secs(300));
        // A developer's Synapse has its own name: no name step unless the file is configured.
        assert_eq!(
            ok("[health]\nbackend = \"process\"\n").server_name_file,
            None
        );
        assert_eq!(
            ok("[health]\nbackend = \"process\"\n[name]\nserver_name_file = \"var/n\"\n")
                .server_name_file
                .as_deref(),
            Some(Path::new("var/n"))
        );
        assert_eq!(
            ok("[name]\ncooperative_domain = \"Hearth.Example.coop\"\n").cooperative_domain,
            Some("hearth.example.coop".into())
        );
        assert_eq!(
            err("[name]\ncooperative_domain = \"hearth.local\"\n"),
            "test.toml:2: name.cooperative_domain: \"hearth.local\" is not a DNS name such as \"hearth.example.coop\""
        );
        assert_eq!(
            err("[name]\ncheck_interval_s = 5\n"),
            "test.toml:2: name.check_interval_s: 5 is out of range; allowed 30 to 86400"
        );
        // The cooperative's relay: its address, the box's files at their defaults.
        let r = ok("[name]\ncooperative_domain = \"coop.example\"\ncooperative_api = \"https://relay.coop.example:7443/\"\n")
            .relay
            .unwrap();
        assert_eq!(r.api, "https://relay.coop.example:7443");
        assert_eq!(r.config, Path::new("/var/lib/hearth/relay.toml"));
        assert_eq!(r.key, Path::new("/var/lib/hearth/tunnel.key"));
        assert_eq!(r.status, Path::new("/run/hearth-tunnel/status.json"));
        assert_eq!(r.ca, None);
        assert_eq!(ok("").relay, None);
        assert_eq!(
            err("[name]\ncooperative_api = \"https://relay.coop.example:7443\"\n"),
            "test.toml:2: name.cooperative_api: needs cooperative_domain (the names the cooperative gives out)"
        );
        assert_eq!(
            err("[name]\ncooperative_domain = \"coop.example\"\ncooperative_api = \"http://relay.coop.example\"\n"),
            "test.toml:3: name.cooperative_api: \"http://relay.coop.example\" is not an address such as \"https://relay.coop.example:7443\""
        );
    }

    #[test]
    fn the_cooperative_file_from_first_boot_names_the_cooperative_unless_the_config_does() {
        let dir = tempfile::tempdir().unwrap();
        let coop = dir.path().join("cooperative.toml");
        let main = dir.path().join("supervisor.toml");
        let load = |main_text: &str| {
            std::fs::write(&main, main_text).unwrap();
            Config::load(&main)
        };
        let with_file = format!("[name]\ncooperative_file = \"{}\"\n", coop.display());
        // No file yet (no cooperative in hearth.txt): no cooperative.
        let c = load(&with_file).unwrap().name;
        assert_eq!((c.cooperative_domain, c.relay), (None, None));
        // The file: the domain, the API, the CA; the relay's files stay the configuration's.
        std::fs::write(
            &coop,
            "# from hearth.txt\n[name]\ncooperative_domain = \"Coop.Example\"\ncooperative_api = \"https://relay.coop.example:7443\"\ncooperative_ca = \"/etc/hearth/cooperative-ca.pem\"\n",
        )
        .unwrap();
        let c = load(&format!("{with_file}tunnel_status = \"/run/t/s.json\"\n"))
            .unwrap()
            .name;
        assert_eq!(c.cooperative_domain.as_deref(), Some("coop.example"));
        let r = c.relay.unwrap();
        assert_eq!(r.api, "https://relay.coop.example:7443");
        assert_eq!(
            r.ca.as_deref(),
            Some(Path::new("/etc/hearth/cooperative-ca.pem"))
        );
        assert_eq!(r.status, Path::new("/run/t/s.json"));
        // The configuration's own keys win.
        let c = load(&format!(
            "{with_file}cooperative_domain = \"other.example\"\n"
        ))
        .unwrap()
        .name;
        assert_eq!(c.cooperative_domain.as_deref(), Some("other.example"));
        assert_eq!(c.relay, None);
        // Its mistakes name it, the line and the key.
        std::fs::write(
            &coop,
            "[name]\ncooperative_domain = \"coop.example\"\ncooperative_api = \"ftp://x\"\n",
        )
        .unwrap();
        let e = load(&with_file).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}:3: name.cooperative_api: \"ftp://x\" is not an address such as \"https://relay.coop.example:7443\"", coop.display())
        );
        std::fs::write(&coop, "[name]\ncooperative_doman = \"coop.example\"\n").unwrap();
        let e = load(&with_file).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:2: unknown field `cooperative_doman`",
                coop.display()
            )),
            "{e}"
        );
    }

    /// First boot's script (image/rootfs/usr/lib/hearth/setup) with hearth.txt's cooperative
    /// keys, its files in `dir`: (exit status, stderr).
    fn hearth_setup(dir: &Path, hearth_txt: &str) -> (bool, String) {
        let boot = dir.join("boot");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::write(boot.join("hearth.txt"), hearth_txt).unwrap();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../image/rootfs/usr/lib/hearth/setup");
        let out = std::process::Command::new("bash")
            .arg(script)
            .env("HEARTH_TXT", boot.join("hearth.txt"))
            .env("HEARTH_ETC", dir.join("etc"))
            .env("HEARTH_SSH_DIR", dir.join("ssh"))
            .env("HEARTH_RELAY_TOML", dir.join("relay.toml"))
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    #[test]
    fn hearth_txt_names_the_cooperative_and_the_supervisor_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("etc")).unwrap();
        std::fs::create_dir_all(d.join("boot")).unwrap();
        let main = d.join("supervisor.toml");
        std::fs::write(
            &main,
            format!(
                "[name]\ncooperative_file = \"{}\"\n",
                d.join("etc/cooperative.toml").display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("boot/coop-ca.pem"),
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (ok, err) = hearth_setup(
            d,
            "# ours\ncooperative_domain=hearth.example.coop\ncooperative_api=https://relay.hearth.example.coop:7443/\ncooperative_ca_file=coop-ca.pem\n",
        );
        assert!(ok && err.is_empty(), "{err}");
        let name = Config::load(&main).unwrap().name;
        assert_eq!(
            name.cooperative_domain.as_deref(),
            Some("hearth.example.coop")
        );
        let relay = name.relay.unwrap();
        assert_eq!(relay.api, "https://relay.hearth.example.coop:7443");
        assert_eq!(relay.ca, Some(d.join("etc/cooperative-ca.pem")));
        assert!(std::fs::read_to_string(d.join("etc/cooperative-ca.pem"))
            .unwrap()
            .contains("BEGIN CERTIFICATE"));

        // A mistake: said with hearth.txt's line, nothing changed.
        let (_, err) = hearth_setup(
            d,
            "cooperative_domain=hearth.example.coop\ncooperative_api=http://relay.hearth.example.coop\n",
        );
        assert!(
            err.contains("hearth.txt:2: cooperative_api: an address such as https://"),
            "{err}"
        );
        assert_eq!(
            Config::load(&main).unwrap().name.relay.unwrap().api,
            "https://relay.hearth.example.coop:7443"
        );
        // The keys removed: no cooperative (the box was never enrolled).
        let (ok, err) = hearth_setup(d, "#cooperative_domain=hearth.example.coop\n");
        assert!(ok, "{err}");
        let name = Config::load(&main).unwrap().name;
        assert_eq!((name.cooperative_domain, name.relay), (None, None));
        assert!(!d.join("etc/cooperative-ca.pem").exists());
        // An enrolled box keeps its cooperative when the keys go.
        hearth_setup(
            d,
            "cooperative_domain=hearth.example.coop\ncooperative_api=https://relay.hearth.example.coop\n",
        );
        std::fs::write(d.join("relay.toml"), "").unwrap();
        hearth_setup(d, "");
        assert!(Config::load(&main).unwrap().name.relay.is_some());
    }

    #[test]
    fn the_i2c_bus_is_found_unless_a_number_is_given() {
        let bus = |text: &str| Config::parse("t.toml", text).unwrap().power.ina219.i2c_bus;
        assert_eq!(bus(""), I2cBus::Auto);
        assert_eq!(bus("[power]\ni2c_bus = \"auto\"\n"), I2cBus::Auto);
        assert_eq!(bus("[power]\ni2c_bus = 3\n"), I2cBus::Number(3));
    }

    #[test]
    fn the_shipped_configs_parse() {
        for path in ["config/dev.toml", "../overlays/etc/hearth/supervisor.toml"] {
            let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
            if let Err(e) = Config::load(&full) {
                panic!("{e}");
            }
        }
    }

    #[test]
    fn errors_name_file_line_key_and_range() {
        let cases = [
            (
                "[power]\nshunt_ohms = 0.1\nbogus = 3\n",
                "test.toml:3: unknown field `bogus`",
            ),
            (
                "[power]\n\nshunt_ohms = -1.0\n",
                "test.toml:3: power.shunt_ohms: -1 is out of range; allowed 0.0001 to 10",
            ),
            (
                "[power]\naddress = 0x39\n",
                "test.toml:2: power.address: 57 is out of range; allowed 64 to 79",
            ),
            (
                "[power]\nshunt_adc = \"avg3\"\n",
                "test.toml:2: power.shunt_adc: unknown ADC mode \"avg3\"",
            ),
            (
                "[power]\ni2c_bus = \"one\"\n",
                "test.toml:2: power.i2c_bus: \"one\" is not a bus; a number (0 to 255) or \"auto\"",
            ),
            (
                "[power]\ni2c_bus = 300\n",
                "test.toml:2: power.i2c_bus: 300 is out of range; allowed 0 to 255",
            ),
            (
                "[power]\nshunt_range_mv = 100\n",
                "test.toml:2: power.shunt_range_mv: 100 is out of range; allowed 40, 80, 160, 320",
            ),
            (
                "[power]\nshunt_ohms = 0.1\nmax_current_a = 5.0\n",
                "test.toml:3: power.max_current_a: 5 A exceeds the full scale",
            ),
            (
                "[http]\nlisten = \"localhost\"\n",
                "test.toml:2: http.listen: \"localhost\" is not an address:port",
            ),
            (
                "[storage]\nflush_interval_s = 0\n",
                "test.toml:2: storage.flush_interval_s: 0 is out of range; allowed 1 to 3600",
            ),
            (
                "[power.simulated]\nidle_watts = 5\nfull_watts = 3.0\n",
                "test.toml:3: power.simulated.full_watts: 3 is below",
            ),
            ("[power\n", "test.toml:1: "),
            ("[nope]\n", "test.toml:1: unknown field `nope`"),
            (
                "[health]\nbackend = \"docker\"\n",
                "test.toml:2: health.backend: unknown backend \"docker\"",
            ),
            (
                "[health]\nhang_misses = 0\n",
                "test.toml:2: health.hang_misses: 0 is out of range; allowed 1 to 100",
            ),
            (
                "[health]\nsynapse_url = \"localhost:8008\"\n",
                "test.toml:2: health.synapse_url: \"localhost:8008\" is not an http",
            ),
            (
                "[led]\nbackend = \"gpio\"\ngpio_pin = 40\n",
                "test.toml:3: led.gpio_pin: 40 is out of range; allowed 0 to 27",
            ),
            (
                "[health.process]\nprogramme = \"x\"\n",
                "test.toml:2: unknown field `programme`",
            ),
            (
                "[accounting]\nbase_watts = \"low\"\n",
                "test.toml:2: accounting.base_watts: \"low\" is neither a number of watts nor \"auto\"",
            ),
            (
                "[accounting]\nbase_watts = -2\n",
                "test.toml:2: accounting.base_watts: -2 is out of range; allowed 0 to 100",
            ),
            (
                "[accounting]\ntariff_per_kwh = -0.3\n",
                "test.toml:2: accounting.tariff_per_kwh: -0.3 is out of range; allowed 0 to 100",
            ),
            (
                "[accounting]\ncurrency = \"euro\"\n",
                "test.toml:2: accounting.currency: \"euro\" is not an ISO 4217 code",
            ),
            (
                "[accounting]\nstorage_price_per_gib_month = 1e9\n",
                "test.toml:2: accounting.storage_price_per_gib_month: 1000000000 is out of range; allowed 0 to 1000",
            ),
            (
                "[accounting]\ndirectory_sync_s = 5\n",
                "test.toml:2: accounting.directory_sync_s: 5 is out of range; allowed 60 to 86400",
            ),
            (
                "[accounting]\ntarif_per_kwh = 0.3\n",
                "test.toml:2: unknown field `tarif_per_kwh`",
            ),
            (
                "[[accounting.fixed_cost]]\nname = \"a\"\namount = 1\nper = \"month\"\n\
                 [[accounting.fixed_cost]]\nname = \"b\"\namount = 1\nper = \"week\"\n",
                "test.toml:8: accounting.fixed_cost[2].per: unknown period \"week\"; allowed \"month\", \"year\"",
            ),
            (
                "[[accounting.fixed_cost]]\nname = \"a\"\namount = -5.0\nper = \"month\"\n",
                "test.toml:3: accounting.fixed_cost[1].amount: -5 is out of range; allowed 0 to 1000000",
            ),
            (
                "[[accounting.fixed_cost]]\nname = \" \"\namount = 5.0\nper = \"month\"\n",
                "test.toml:2: accounting.fixed_cost[1].name: must not be empty",
            ),
            (
                "[[accounting.fixed_cost]]\nname = \"a\"\nper = \"month\"\n",
                "test.toml:1: missing field `amount`",
            ),
            (
                "[[accounting.fixed_cost]]\nname = \"a\"\namount = 1\nper = \"month\"\ncost = 2\n",
                "test.toml:5: unknown field `cost`",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(
                got.starts_with(want),
                "for {text:?}\n got: {got}\nwant: {want}…"
            );
            assert!(!got.contains('\n'), "one line: {got:?}");
        }
    }

    #[test]
    fn unreadable_file_is_named() {
        let e = Config::load(Path::new("/nonexistent/hearth.toml")).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("/nonexistent/hearth.toml: cannot read"));
    }
}
