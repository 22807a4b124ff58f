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
    /// Suspend (on) or resume (off) the supervisor's restarts of Synapse, e.g. during an upgrade.
    Maintenance {
        #[arg(value_enum)]
        switch: Switch,
        /// Configuration file (names the maintenance switch file).
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
