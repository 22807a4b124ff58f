//! `hearth-supervisor`: parse, run, map the error to an exit code with its whole chain.

use anyhow::Context;
use clap::Parser;
use hearth::cli::{Cli, Command, Switch};
use hearth::config::Config;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("hearth-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            hearth::logging::init(&config.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(hearth::app::run(config))?;
            Ok(())
        }
        Command::Maintenance { switch, config } => {
            let config = Config::load(&config)?;
            let file = &config.health.maintenance_file;
            match switch {
                Switch::On => {
                    std::fs::write(file, "on\n")
                        .with_context(|| format!("{}: cannot write", file.display()))?;
                    println!("maintenance on: the supervisor will not restart Synapse");
                }
                Switch::Off => {
                    match std::fs::remove_file(file) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(e)
                                .with_context(|| format!("{}: cannot remove", file.display()))
                        }
                    }
                    println!("maintenance off: the supervisor keeps Synapse healthy again");
                }
                Switch::Status => {
                    println!("maintenance {}", if file.exists() { "on" } else { "off" });
                }
            }
            Ok(())
        }
        Command::Replay { trace, config } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::defaults(),
            };
            hearth::logging::init("error");
            let trace = hearth::power::trace::Trace::from_path(&trace)?;
            let report = hearth::replay::replay(trace, &config)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
    }
}
