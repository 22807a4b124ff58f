//! `hearth-coop`: the cooperative's services (cooperative/README.md).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cooperative::Config;

#[derive(Parser)]
#[command(
    name = "hearth-coop",
    about = "The cooperative's services for hearth boxes: the relay's edge and enrolment"
)]
struct Cli {
    /// The configuration file (TOML); without it, the embedded default on loopback.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the edge (443/80 by name) and the control listener (tunnels, API).
    Serve,
    /// Enrolment tokens for the cooperative's members.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Lists the enrolled boxes (name, public key, since), one JSON object a line.
    Boxes,
    /// The anonymous energy reports' token keys.
    Reports {
        #[command(subcommand)]
        command: ReportsCommand,
    },
}

#[derive(Subcommand)]
enum ReportsCommand {
    /// Makes a blind-RSA key file (PEM, 0600) and prints its id; never overwrites one. Put
    /// it first in `[reports] key` to sign with it (older keys after it still verify).
    Keygen {
        /// Where; default: the first `[reports] key` of the config.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Makes a single-use token and prints it (only its hash is stored).
    Issue {
        /// Who it is for, kept beside the hash.
        #[arg(long, default_value = "")]
        note: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config_file = cli.config.clone();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The name table's setting is the config file's `database`: say which file.
            match (
                &config_file,
                e.downcast_ref::<cooperative::store::OpenError>(),
            ) {
                (Some(file), Some(open)) => eprintln!("hearth-coop: {}: {open}", file.display()),
                (None, Some(open)) => eprintln!("hearth-coop: the embedded default config: {open}"),
                _ => eprintln!("hearth-coop: {e}"),
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    match cli.command {
        Command::Serve => {
            raise_open_files_limit();
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let running = cooperative::start(&config).await?;
                tracing::info!(
                    https = %running.https, http = %running.http, control = %running.control,
                    domain = %config.domain, "the cooperative's edge is up"
                );
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                running.stop().await;
                Ok(())
            })
        }
        Command::Token {
            command: TokenCommand::Issue { note },
        } => {
            let store = cooperative::store::Store::open(&config.database, &config.domain)?;
            println!("{}", store.issue_token(&note)?);
            Ok(())
        }
        Command::Reports {
            command: ReportsCommand::Keygen { out },
        } => {
            let path = out
                .or_else(|| config.reports.key.first().cloned())
                .ok_or_else(|| anyhow::anyhow!("no [reports] key in the config: give --out"))?;
            let id = cooperative::collector::keygen(&path)?;
            println!("{id} {}", path.display());
            Ok(())
        }
        Command::Boxes => {
            let store = cooperative::store::Store::open(&config.database, &config.domain)?;
            for b in store.boxes()? {
                println!("{}", serde_json::to_string(&b)?);
            }
            Ok(())
        }
    }
}

/// Every tunnel and every relayed connection is a file descriptor: the soft limit goes up to
/// the hard one (systemd's default soft limit is 1024, its hard one 512Ki).
fn raise_open_files_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::warn!("cannot raise the open-files limit: {e}");
        }
    }
    let now = getrlimit(Resource::Nofile);
    tracing::info!(open_files_limit = ?now.current, "open files");
}
