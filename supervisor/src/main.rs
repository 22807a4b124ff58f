//! `hearth-supervisor`: parse, run, map the error to an exit code with its whole chain.

use anyhow::Context;
use clap::Parser;
use hearth::accounting::directory::{self, ChangedBy};
use hearth::audit::{NotedHead, Verdict};
use hearth::cli::{
    AccessCommand, AuditCommand, BackupCommand, Cli, Command, HouseholdCommand, ReportCommand,
    Switch, TunnelCommand, UpdateArgs, UpdateCommand,
};
use hearth::config::Config;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes.
            eprintln!("hearth-supervisor: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let config = Config::load(&config)?;
            hearth::logging::init(&config.log_level);
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                // The page's database calls wait for one connection; a flood of requests
                // queues tasks here, not threads (hearth-supervisor.service: TasksMax=128).
                .max_blocking_threads(32)
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(hearth::app::run(config))?;
        }
        Command::Tunnel { command } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            match command {
                TunnelCommand::Run { config } => {
                    let config = hearth::tunnel::RelayConfig::load(&config)?;
                    hearth::logging::init("info");
                    rt.block_on(hearth::tunnel::run(config))?;
                }
                TunnelCommand::Enrol {
                    api,
                    token,
                    label,
                    ca,
                    key,
                    config,
                } => {
                    let name = rt.block_on(hearth::tunnel::enrol(
                        &api,
                        &token,
                        &label,
                        ca.as_deref(),
                        &key,
                        &config,
                    ))?;
                    println!("{name}");
                }
            }
        }
        Command::Maintenance { switch, config } => {
            let config = load_as_db_owner(&config)?;
            let file = &config.health.maintenance_file;
            match switch {
                Switch::On | Switch::Off => {
                    let on = matches!(switch, Switch::On);
                    hearth::maintenance::switch_from_cli(
                        &config.storage.path,
                        file,
                        on,
                        hearth::owner::invoking_uid(),
                    )?;
                    if on {
                        println!("maintenance on: the supervisor will not restart Synapse");
                    } else {
                        println!("maintenance off: the supervisor keeps Synapse healthy again");
                    }
                }
                Switch::Status => {
                    let on = hearth::maintenance::is_on(file);
                    println!("maintenance {}", if on { "on" } else { "off" });
                }
            }
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
        }
        Command::Account {
            trace,
            start,
            access_log,
            members,
            config,
        } => {
            let config = match config {
                Some(path) => Config::load(&path)?,
                None => Config::defaults(),
            };
            hearth::logging::init("error");
            let start_ms = hearth::account::parse_start(&start)?;
            let trace = hearth::power::trace::Trace::from_path(&trace)?;
            let members = hearth::accountant::members::MembersFile::new(members);
            let a = hearth::account::account(trace, start_ms, &access_log, &members, &config)?;
            println!("{}", serde_json::to_string(&a.statement)?);
            eprintln!(
                "access log: {} lines, {} requests, {} skipped; {} minutes of requests outside the period; inputs sha256 {}",
                a.access.lines,
                a.access.access,
                a.access.skipped_total(),
                a.minutes_outside,
                a.inputs_sha256
            );
        }
        Command::Audit {
            command: AuditCommand::Verify { db, head, config },
        } => return Ok(audit_verify(db.as_deref(), head.as_ref(), &config)),
        Command::Household { command } => household(command)?,
        Command::Backup { command } => return backup(command),
        Command::Update { command } => return update(command),
        Command::Report {
            command: ReportCommand::Preview { config, root },
        } => {
            let config = load_as_db_owner(&config)?;
            let storage = hearth::storage::Storage::open(&config.storage.path)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let version = rt.block_on(hearth::report::gather::synapse_version(
                &config.health.synapse_url,
            ));
            let preview = hearth::report::gather::preview(
                &storage,
                &config.report,
                hearth::report::gather::hardware(&root),
                version,
                hearth::clock::utc_now().timestamp(),
            )?;
            for note in preview.notes() {
                eprintln!("hearth-supervisor: report: {note}");
            }
            println!("{}", preview.json);
        }
        Command::Report {
            command: ReportCommand::OptIn { config },
        } => report_choice(true, &config)?,
        Command::Report {
            command: ReportCommand::OptOut { config },
        } => report_choice(false, &config)?,
        Command::Report {
            command: ReportCommand::Status { config },
        } => {
            let config = load_as_db_owner(&config)?;
            let conn = hearth::storage::open_connection(&config.storage.path)?;
            print!(
                "{}",
                hearth::report::outbox::status_text(&conn, config.report.enabled)?
            );
        }
        Command::Access {
            command: AccessCommand::Inventory { root, out },
        } => {
            use hearth::transparency::inventory;
            let inv = inventory::gather(&root, hearth::clock::utc_now())?;
            inventory::write(&inv, &out)?;
            for p in &inv.problems {
                eprintln!("hearth-supervisor: access inventory: {p}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `household add|assign|remove|list`: on the daemon's database (WAL: safe while it runs).
/// The configuration of a command that opens the database, with the process switched to the
/// database's owner when root runs it (`hearth::owner`). Called before any runtime starts.
fn load_as_db_owner(config_path: &Path) -> anyhow::Result<Config> {
    let config = Config::load(config_path)?;
    hearth::owner::become_owner_of(&config.storage.path)
        .with_context(|| format!("becoming the owner of {}", config.storage.path.display()))?;
    Ok(config)
}

/// `report opt-in` / `opt-out`: the family's choice, audited.
fn report_choice(on: bool, config_path: &Path) -> anyhow::Result<()> {
    let config = load_as_db_owner(config_path)?;
    let mut conn = hearth::storage::open_connection(&config.storage.path)?;
    let by = hearth::audit::NewEntry::new(
        hearth::audit::Actor::Cli,
        hearth::audit::Action::ReportChoice,
    )
    .detail("os_uid", hearth::owner::invoking_uid());
    let changed =
        hearth::report::outbox::choose(&mut conn, on, by, hearth::clock::utc_now().timestamp())?;
    let what = if on { "on" } else { "off" };
    if changed {
        println!("reports: {what}");
    } else {
        println!("reports: already {what}");
    }
    if on && !config.report.enabled {
        eprintln!("hearth-supervisor: report: [report] enabled = false in {}: nothing is sent until it is true", config_path.display());
    }
    Ok(())
}

fn household(command: HouseholdCommand) -> anyhow::Result<()> {
    let open = |config: &Path| -> anyhow::Result<rusqlite::Connection> {
        let config = load_as_db_owner(config)?;
        Ok(hearth::storage::open_connection(&config.storage.path)?)
    };
    let now = hearth::clock::utc_now();
    match command {
        HouseholdCommand::Add { id, name, config } => {
            directory::add_household(&mut open(&config)?, &id, &name, &ChangedBy::cli(), now)?;
            println!("household {id} added");
        }
        HouseholdCommand::Assign {
            user_id,
            household,
            config,
        } => {
            let changed = directory::assign(
                &mut open(&config)?,
                &user_id,
                &household,
                &ChangedBy::cli(),
                now,
            )?;
            if changed {
                println!("{user_id} is now in household {household}");
            } else {
                println!("{user_id} was already in household {household}");
            }
        }
        HouseholdCommand::Admin {
            user_id,
            household,
            remove,
            config,
        } => {
            let changed = directory::set_household_admin(
                &mut open(&config)?,
                &user_id,
                &household,
                !remove,
                &ChangedBy::cli(),
                now,
            )?;
            let what = if remove { "no longer" } else { "now" };
            if changed {
                println!("{user_id} is {what} an admin of household {household}");
            } else {
                println!("{user_id} already was {what} an admin of household {household}; nothing changed");
            }
        }
        HouseholdCommand::Remove { id, config } => {
            directory::remove_household(&mut open(&config)?, &id, &ChangedBy::cli(), now)?;
            println!("household {id} removed");
        }
        HouseholdCommand::List { json, config } => {
            let listing = directory::list(&open(&config)?)?;
            if json {
                println!("{}", listing.to_json());
            } else {
                print!("{}", listing.to_text());
            }
        }
    }
    Ok(())
}

/// A repository named on the command line (`backup show`, `backup restore`).
fn given_repo(
    location: String,
    key_file: PathBuf,
    credentials_file: Option<PathBuf>,
    ca: Option<PathBuf>,
) -> hearth::backup::restic::Repo {
    hearth::backup::restic::Repo {
        location,
        key_file,
        credentials_file,
        limit_upload_kib: 0,
        ca_file: ca,
    }
}

/// The repository's newest complete run, or why there is none.
fn newest(
    r: &hearth::backup::restic::Restic,
    repo: &hearth::backup::restic::Repo,
) -> anyhow::Result<hearth::backup::Manifest> {
    hearth::backup::newest_run(r, repo)?
        .ok_or_else(|| anyhow::anyhow!("{}: no complete backup run in it", repo.location))
}

/// `update check|write`: the release's signed manifest; the other slot written (as root).
fn update(command: UpdateCommand) -> anyhow::Result<ExitCode> {
    use hearth::update::{self, Disk, Options, Source};
    let options = |args: &UpdateArgs, cmdline: String, rate: Option<u64>, scratch: PathBuf| {
        let key = std::fs::read_to_string(&args.key)
            .with_context(|| format!("{}: the update key", args.key.display()))?;
        anyhow::Ok(Options {
            key,
            ca: args.ca.clone(),
            rate,
            running_version: args.running_version.clone().unwrap_or_else(|| {
                update::running_version(Path::new(hearth::config::DEFAULT_RELEASE_FILE))
            }),
            cmdline,
            scratch,
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    match command {
        UpdateCommand::Check { args } => {
            let opts = options(&args, String::new(), None, std::env::temp_dir())?;
            let manifest =
                rt.block_on(update::fetch_manifest(&Source::parse(&args.from), &opts))?;
            println!("{}", serde_json::to_string(&manifest)?);
            Ok(if manifest.newer_than(&opts.running_version) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        UpdateCommand::Write {
            args,
            disk,
            cmdline,
            rate_kbps,
            scratch,
        } => {
            let line = std::fs::read_to_string(&cmdline)
                .with_context(|| format!("{}: the kernel command line", cmdline.display()))?;
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("{}: scratch directory", scratch.display()))?;
            let rate = (rate_kbps > 0).then_some(rate_kbps * 1000);
            let opts = options(&args, line, rate, scratch)?;
            let disk = Disk::resolve(&disk).map_err(anyhow::Error::msg)?;
            let written = rt.block_on(update::write_release(
                &Source::parse(&args.from),
                &disk,
                &opts,
            ))?;
            println!("{}", serde_json::to_string(&written)?);
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Run {
            from,
            key,
            ca,
            config,
        } => {
            let cfg = Config::load(&config)?.update;
            let Some(from) = from.or(cfg.source.clone()) else {
                eprintln!(
                    "hearth-supervisor: updates are off: neither {} nor {} names a source of releases",
                    cfg.source_file.display(),
                    config.display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let now = hearth::clock::wall_secs_now();
            if let Some(until) = hearth::http::update_page::postponed_until(&cfg.postpone_file, now)
            {
                eprintln!(
                    "hearth-supervisor: updates are postponed by a server admin until {} (Unix {until})",
                    chrono::DateTime::from_timestamp(until, 0)
                        .map(|t| t.to_rfc3339())
                        .unwrap_or_default()
                );
                return Ok(ExitCode::SUCCESS);
            }
            let line = std::fs::read_to_string(&cfg.cmdline)
                .with_context(|| format!("{}: the kernel command line", cfg.cmdline.display()))?;
            let args = UpdateArgs {
                from: from.clone(),
                key: key.unwrap_or_else(|| cfg.key.clone()),
                ca,
                running_version: Some(update::running_version(&cfg.release_file)),
            };
            let scratch = PathBuf::from("/run/hearth-update");
            std::fs::create_dir_all(&scratch)
                .with_context(|| format!("{}: scratch directory", scratch.display()))?;
            let rate = (cfg.rate_kbps > 0).then_some(cfg.rate_kbps * 1000);
            let opts = options(&args, line, rate, scratch)?;
            let b = update::steps::appliance(&cfg.state_dir, &cfg.verdict_file, &cfg.disk)?;
            match rt.block_on(update::steps::run(&Source::parse(&from), &b, &opts, now))? {
                Some(st) => println!("{}", serde_json::to_string(&st)?),
                None => eprintln!(
                    "hearth-supervisor: {from} offers nothing newer than {}",
                    opts.running_version
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Boot { config } => {
            let cfg = Config::load(&config)?.update;
            let b = update::steps::appliance(&cfg.state_dir, &cfg.verdict_file, &cfg.disk)?;
            let line = std::fs::read_to_string(&cfg.cmdline)
                .with_context(|| format!("{}: the kernel command line", cfg.cmdline.display()))?;
            let st = update::steps::boot(&b, &line, hearth::clock::wall_secs_now())?;
            println!("{}", serde_json::to_string(&st)?);
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Commit { config } => {
            let cfg = Config::load(&config)?.update;
            let b = update::steps::appliance(&cfg.state_dir, &cfg.verdict_file, &cfg.disk)?;
            let line = std::fs::read_to_string(&cfg.cmdline)
                .with_context(|| format!("{}: the kernel command line", cfg.cmdline.display()))?;
            let st = update::steps::commit(&b, &line, hearth::clock::wall_secs_now())?;
            println!("{}", serde_json::to_string(&st)?);
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Rollback { config } => {
            let cfg = Config::load(&config)?.update;
            update::steps::rollback(&update::steps::appliance(
                &cfg.state_dir,
                &cfg.verdict_file,
                &cfg.disk,
            )?)?;
            Ok(ExitCode::SUCCESS)
        }
        UpdateCommand::Status { config } => {
            let cfg = Config::load(&config)?.update;
            let st = update::state::load(&cfg.state_dir).map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&st)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `backup init|run|status|restore` (root: restic reads every part of the server).
fn backup(command: BackupCommand) -> anyhow::Result<ExitCode> {
    use hearth::backup::{self, restic::Restic};
    let restic = |cfg: &hearth::config::BackupConfig| Restic {
        program: cfg.restic.clone(),
        tmp_dir: std::env::temp_dir(),
        timeout: cfg.timeout,
    };
    match command {
        BackupCommand::Init { target, config } => {
            let cfg = Config::load(&config)?.backup;
            if let Some(key) = backup::run::init(&cfg, &restic(&cfg), &target)? {
                println!("The recovery key of this server's backups (shown once; keep it on paper, away from the box):\n\n    {key}\n\nWith it and the backup, a new card brings this server back. Without it, nobody can read the backup: not the cooperative, not us.");
            }
            println!("backup target {target} ready");
        }
        BackupCommand::Run { config } => {
            let cfg = Config::load(&config)?.backup;
            let results = backup::run::run_all(&cfg, &restic(&cfg), hearth::clock::utc_now())?;
            let mut failed = false;
            for (name, r) in results {
                match r {
                    Ok(()) => println!("backup {name}: done"),
                    Err(e) => {
                        failed = true;
                        eprintln!("hearth-supervisor: backup {name}: {e}");
                    }
                }
            }
            if failed {
                return Ok(ExitCode::FAILURE);
            }
        }
        BackupCommand::Status { config } => {
            let cfg = Config::load(&config)?.backup;
            let status = backup::run::Status::load(&cfg.status_file);
            println!("{}", serde_json::to_string_pretty(&status)?);
        }
        BackupCommand::Show {
            repository,
            key_file,
            credentials_file,
            ca,
            config,
        } => {
            let cfg = Config::load(&config)?.backup;
            let repo = given_repo(repository, key_file, credentials_file, ca);
            let m = newest(&restic(&cfg), &repo)?;
            println!("{}", serde_json::to_string_pretty(&m)?);
        }
        BackupCommand::Restore {
            repository,
            key_file,
            credentials_file,
            ca,
            config,
        } => {
            let cfg = Config::load(&config)?.backup;
            let repo = given_repo(repository, key_file, credentials_file, ca);
            let r = restic(&cfg);
            let layout = backup::Layout {
                root: cfg.root.clone(),
            };
            let m = newest(&r, &repo)?;
            let verdict = backup::restore(&r, &repo, &layout, &m)?;
            // The next runs go on with the key the family gave (the backup holds no key).
            backup::run::keep_key(&cfg, &repo.key_file)?;
            let audit = match verdict {
                Verdict::Intact { count, head } => {
                    format!("{count} entries, head {}:{}", head.seq, head.hash)
                }
                Verdict::Broken { seq, .. } => format!("broken at entry {seq}"),
            };
            println!(
                "restored {} of {} ({}) from {}; audit log: {audit}",
                m.run,
                m.server_name,
                match m.database {
                    backup::Database::Postgresql => "PostgreSQL",
                    backup::Database::Sqlite => "SQLite",
                },
                repo.location,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify`: 0 intact, 1 tampered, 2 when the log cannot be read (PRODUCT.md §4).
fn audit_verify(db: Option<&Path>, head: Option<&NotedHead>, config: &Path) -> ExitCode {
    let db: PathBuf = match db {
        Some(p) => p.to_path_buf(),
        None => match Config::load(config) {
            Ok(c) => c.storage.path,
            Err(e) => {
                eprintln!("hearth-supervisor: {e}");
                return ExitCode::from(2);
            }
        },
    };
    if let Err(e) = hearth::owner::become_owner_of(&db) {
        eprintln!(
            "hearth-supervisor: becoming the owner of {}: {e}",
            db.display()
        );
        return ExitCode::from(2);
    }
    match hearth::audit::verify_file(&db, head) {
        Ok(Verdict::Intact { count, head }) => {
            println!("audit log intact: {count} entries, head {}", head.hash);
            ExitCode::SUCCESS
        }
        Ok(Verdict::Broken { seq, reason }) => {
            eprintln!("audit log tampered: entry {seq}: {reason}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hearth-supervisor: {e}");
            ExitCode::from(2)
        }
    }
}
