//! The command line (PRODUCT.md §4 "Supervisor CLI").

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "hearth-supervisor",
    version,
    about = "hearth's embedded supervisor"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Run {
        /// Configuration file.
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Replay a power trace through the simulated INA219 and the daemon's measurement path;
    /// prints one JSON object.
    Replay {
        /// Trace CSV (`t_s,volts,amps`).
        #[arg(long)]
        trace: PathBuf,
        /// Configuration file (its [power] settings choose the ADC modes); defaults if absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Recompute a statement from raw inputs with the daemon's accounting code: a trace
    /// replayed through the measurement path, Synapse's access log and a Members file.
    /// Prints the statement JSON (PRODUCT §5).
    Account {
        /// Trace CSV (`t_s,volts,amps`).
        #[arg(long)]
        trace: PathBuf,
        /// The UTC instant of the trace's `t_s = 0` (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        start: String,
        /// Synapse's access log (its default log format; other lines are skipped and counted).
        #[arg(long)]
        access_log: PathBuf,
        /// Members TOML (`[[household]]` and `[[member]]` tables).
        #[arg(long)]
        members: PathBuf,
        /// Configuration file (its [accounting] and [power] settings); defaults if absent.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Suspend (on) or resume (off) the supervisor's restarts of Synapse, e.g. during an upgrade.
    Maintenance {
        #[arg(value_enum)]
        switch: Switch,
        /// Configuration file (names the maintenance switch file).
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Updates: check a release's signed manifest, write it into the other slot.
    Update {
        #[command(subcommand)]
        command: UpdateCommand,
    },
    /// Encrypted backups (restic) to a USB disk and the cooperative's store, and the restore.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// The tamper-evident audit log of accesses to member data.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Households: who pays together (a family, a club). Members come from Synapse.
    Household {
        #[command(subcommand)]
        command: HouseholdCommand,
    },
    /// Who can technically access the data (the page's "who can access the data").
    Access {
        #[command(subcommand)]
        command: AccessCommand,
    },
    /// The anonymous monthly energy report to the cooperative.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// The cooperative's relay: enrol this box, keep its tunnel up (hearth-tunnel.service).
    Tunnel {
        #[command(subcommand)]
        command: TunnelCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// The family's choice: send the monthly report from next month's first days on (audited).
    OptIn {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Send no more reports (audited); what was sent stays sent.
    OptOut {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The choice, the outbox (each month's report: made, sent, retries, last error), the tokens.
    Status {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Print the next report exactly as it would be sent (pretty JSON; notes on stderr).
    Preview {
        /// Configuration file (its [storage] path names the database).
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
        /// The system's root directory, for the board's model (another tree for tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Prepare a target (`usb` or `cooperative`): the recovery key, made once and printed once,
    /// and the repository.
    Init {
        #[arg(value_parser = ["usb", "cooperative"])]
        target: String,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Save the server to every target that is there (hearth-backup.service); 1 when one failed.
    Run {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The last run per target: when, how much, what went wrong.
    Status {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// The newest complete run in a repository: its manifest as JSON (server name, database,
    /// run, audit head, parts), read-only. A fresh card learns from it what it is to become.
    Show {
        /// The repository: the USB disk's folder, or `rest:https://…/`.
        #[arg(long)]
        repository: String,
        /// A file holding the recovery key.
        #[arg(long)]
        key_file: PathBuf,
        /// `user:password` for the cooperative's store.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// The CA certificate the store's is checked against.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Bring the newest complete run back onto this box (Synapse and the supervisor stopped).
    Restore {
        /// The repository: the USB disk's folder, or `rest:https://…/`.
        #[arg(long)]
        repository: String,
        /// A file holding the recovery key.
        #[arg(long)]
        key_file: PathBuf,
        /// `user:password` for the cooperative's store.
        #[arg(long)]
        credentials_file: Option<PathBuf>,
        /// The CA certificate the store's is checked against.
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Keep the tunnel to the cooperative's edge up (until SIGTERM); its state in the status file.
    Run {
        /// The relay's configuration (written by `enrol`).
        #[arg(long, default_value = crate::tunnel::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Claim LABEL.<cooperative's domain> for this box with an enrolment token; makes the box's
    /// key if there is none and writes the relay's configuration. Prints the name.
    Enrol {
        /// The cooperative's control address, e.g. https://relay.coop.example:7443.
        #[arg(long)]
        api: String,
        /// The enrolment token the cooperative gave the family (single use).
        #[arg(long)]
        token: String,
        /// The name wanted under the cooperative's domain.
        #[arg(long)]
        label: String,
        /// Trust only this CA for the cooperative (a test or private cooperative).
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = crate::tunnel::DEFAULT_KEY)]
        key: PathBuf,
        #[arg(long, default_value = crate::tunnel::DEFAULT_CONFIG)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Gather the OS accounts that can log in, admin groups, sudoers.d and SSH keys into the
    /// file the daemon shows (run as root: it reads /etc/shadow and everyone's ~/.ssh).
    Inventory {
        /// The system's root directory (another tree for tests).
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// Where to write it (atomically, mode 0644); `-` prints it.
        #[arg(long, default_value = crate::transparency::inventory::DEFAULT_OUT)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum HouseholdCommand {
    /// Create a household.
    Add {
        /// Its id: letters, digits, ".", "_", "-" (e.g. "mueller").
        id: String,
        /// Its name as statements show it (e.g. "Familie Müller").
        name: String,
        /// Configuration file (its [storage] path names the database).
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Put a member into a household (moving them from another one).
    Assign {
        /// The member's Matrix user id, e.g. "@alice:example.org".
        user_id: String,
        /// The household's id.
        household: String,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Let a member see their household's statements and audit entries (or, with --remove,
    /// no longer). The member must be in the household.
    Admin {
        /// The member's Matrix user id.
        user_id: String,
        /// The household's id.
        household: String,
        /// Take the right back.
        #[arg(long)]
        remove: bool,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Remove a household that has no members, past ones included.
    Remove {
        id: String,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Households with their members, and the members without one.
    List {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain without changing the database: exit 0 intact,
    /// 1 tampered (naming the first bad entry), 2 when it cannot be read.
    Verify {
        /// The database file; by default the one the configuration names.
        #[arg(long)]
        db: Option<PathBuf>,
        /// A head noted earlier (`HEX` or `SEQ:HEX`, as the status page shows it): then entries
        /// removed from the end, or a rewritten log, are caught too.
        #[arg(long)]
        head: Option<crate::audit::NotedHead>,
        /// Configuration file (its [storage] path names the database); not read with --db.
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
    Status,
}

/// Where an update comes from and what the box is; defaults are the appliance's.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// The release: the cooperative's `https://…/` directory, or a folder (a USB stick).
    #[arg(long)]
    pub from: String,
    /// The image's public key (minisign).
    #[arg(long, default_value = "/usr/share/hearth/update.pub")]
    pub key: PathBuf,
    /// A CA certificate to trust for an HTTPS source besides the system's.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The version that runs (default: the image's, from /etc/hearth/release; else this
    /// binary's).
    #[arg(long)]
    pub running_version: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Verify a release's manifest and print it as JSON; exit 0 when it is newer than what runs,
    /// 3 when it is not, 1 when it cannot be verified.
    Check {
        #[command(flatten)]
        args: UpdateArgs,
    },
    /// Write a release into the slot this box does not run from and arm the trial boot in
    /// autoboot.txt (as root); prints what was written as JSON.
    Write {
        #[command(flatten)]
        args: UpdateArgs,
        /// The card's partitions, `{}` standing for the number; `auto`: the disk of the
        /// running root.
        #[arg(long, default_value = "auto")]
        disk: String,
        /// The running kernel's command line (it names the running slot's root).
        #[arg(long, default_value = "/proc/cmdline")]
        cmdline: PathBuf,
        /// Download limit in kilobytes a second (0: none).
        #[arg(long, default_value_t = 0)]
        rate_kbps: u64,
        /// Scratch space on tmpfs for the firmware files.
        #[arg(long, default_value = "/run/hearth-update")]
        scratch: PathBuf,
    },
    /// One whole update (hearth-update.service, root): verify, snapshot the data, write the
    /// other slot, carry this box's choices into it, reboot into it on trial. Exit 0 also when
    /// there is nothing newer (it says so).
    Run {
        /// The release (default: `[update] source`).
        #[arg(long)]
        from: Option<String>,
        /// The image's public key (default: `[update] key`).
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        ca: Option<PathBuf>,
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// At boot, before Synapse (hearth-update-boot.service, root): settle an update that a
    /// restart cut short (interrupted writing; a failed trial: the data back as it was).
    Boot {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Keep the release on trial: its slot becomes the default (hearth-update-commit.service).
    Commit {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Give up the release on trial: reboot into the old slot (hearth-update-rollback.service).
    Rollback {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Where the last update stands (state.json), as JSON.
    Status {
        #[arg(long, default_value = crate::config::DEFAULT_PATH)]
        config: PathBuf,
    },
}
