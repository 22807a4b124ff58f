//! `hearth-supervisor backup run`, as hearth-backup.service runs it (root, nightly and after
//! important changes): one run to every target that is there, one at a time under one lock, and
//! what happened in the status file the page reads.

use super::restic::{Repo, Restic, ResticError};
use super::{back_up, BackupError, Layout};
use crate::config::BackupConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// Where a run goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// `usb` or `cooperative`.
    pub name: &'static str,
    pub repo: Repo,
    /// A USB repository is used only while its disk is plugged in and was prepared.
    pub present: bool,
}

/// The configured targets.
pub fn targets(cfg: &BackupConfig) -> Vec<Target> {
    let mut t = vec![Target {
        name: "usb",
        present: cfg.usb_repository.join("config").exists(),
        repo: Repo {
            location: cfg.usb_repository.display().to_string(),
            key_file: cfg.key_file.clone(),
            credentials_file: None,
            limit_upload_kib: 0,
            ca_file: None,
        },
    }];
    // The cooperative's store: as configured, else as enrolment left it (crate::tunnel):
    // relay.toml's `backup_repository` with the account beside it, checked against
    // `cooperative_ca` or else the CA the box trusts for that cooperative.
    let cooperative = match &cfg.cooperative_repository {
        Some(location) => Some((
            location.clone(),
            cfg.cooperative_credentials_file.clone(),
            cfg.cooperative_ca.clone(),
        )),
        None => match crate::tunnel::RelayConfig::load(&cfg.relay_config) {
            Ok(relay) => relay.backup_repository.map(|location| {
                (
                    location,
                    Some(crate::tunnel::store_credentials(&cfg.relay_config)),
                    cfg.cooperative_ca.clone().or(relay.ca),
                )
            }),
            Err(e) => {
                if cfg.relay_config.exists() {
                    tracing::warn!("the cooperative's backup store: {e:#}");
                }
                None
            }
        },
    };
    if let Some((location, credentials_file, ca_file)) = cooperative {
        t.push(Target {
            name: "cooperative",
            present: true,
            repo: Repo {
                location,
                key_file: cfg.key_file.clone(),
                credentials_file,
                limit_upload_kib: cfg.limit_upload_kib,
                ca_file,
            },
        });
    }
    t
}

/// What the page shows of one target.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct TargetStatus {
    pub repository: String,
    /// The last run that finished, with its size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<Good>,
    /// The last attempt: its time (Unix s) and, when it failed, why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The disk was not plugged in at the last run.
    #[serde(default)]
    pub absent: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Good {
    pub run: String,
    pub at_s: i64,
    /// What the run read, and what it added to the repository.
    pub bytes: u64,
    pub added: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub targets: BTreeMap<String, TargetStatus>,
}

impl Status {
    pub fn load(path: &Path) -> Status {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Written whole (a temporary file, then renamed), readable by the supervisor.
    pub fn save(&self, path: &Path) -> Result<(), BackupError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
        let tmp = path.with_extension("json.tmp");
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BackupError::Invalid(format!("status: {e}")))?;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)
            .map_err(|e| BackupError::io(&tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| BackupError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| BackupError::io(path, e))?;
        Ok(())
    }
}

/// The run's name from its start time: `run-20261206T031500Z`.
pub fn run_name(now: chrono::DateTime<chrono::Utc>) -> String {
    format!("run-{}", now.format("%Y%m%dT%H%M%SZ"))
}

/// One target's outcome of a run: its name, and its error when it failed.
pub type TargetResult = (&'static str, Result<(), BackupError>);

/// One run to every present target, under the lock beside the status file (a second
/// `backup run` waits for the first). Returns each target's error; the status file has them.
pub fn run_all(
    cfg: &BackupConfig,
    restic: &Restic,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<TargetResult>, BackupError> {
    let lock_path = cfg.status_file.with_extension("lock");
    if let Some(dir) = lock_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    }
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| BackupError::io(&lock_path, e))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| BackupError::io(&lock_path, e.into()))?;
    if !cfg.key_file.exists() {
        return Err(BackupError::Invalid(format!(
            "{}: no backup key yet (hearth-supervisor backup init makes it)",
            cfg.key_file.display()
        )));
    }
    let layout = Layout {
        root: cfg.root.clone(),
    };
    let run = run_name(now);
    let mut status = Status::load(&cfg.status_file);
    let mut results = Vec::new();
    for t in targets(cfg) {
        let st = status.targets.entry(t.name.to_string()).or_default();
        st.repository = t.repo.location.clone();
        if !t.present {
            st.absent = true;
            continue;
        }
        st.absent = false;
        st.last_attempt_s = Some(now.timestamp());
        match back_up(restic, &t.repo, &layout, &run) {
            Ok(m) => {
                st.error = None;
                st.last_good = Some(Good {
                    run: run.clone(),
                    at_s: now.timestamp(),
                    bytes: m.parts.iter().map(|p| p.bytes).sum(),
                    added: m.parts.iter().map(|p| p.added).sum(),
                });
                results.push((t.name, Ok(())));
            }
            Err(e) => {
                st.error = Some(e.to_string());
                results.push((t.name, Err(e)));
            }
        }
        status.save(&cfg.status_file)?;
    }
    status.save(&cfg.status_file)?;
    Ok(results)
}

/// After a restore: the recovery key the family gave becomes this box's, when it has none yet.
pub fn keep_key(cfg: &BackupConfig, given: &Path) -> Result<(), BackupError> {
    if cfg.key_file.exists() {
        return Ok(());
    }
    let key = std::fs::read_to_string(given).map_err(|e| BackupError::io(given, e))?;
    write_key(&cfg.key_file, key.trim())
}

/// The key file, made new: 0600, root's.
fn write_key(path: &Path, key: &str) -> Result<(), BackupError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackupError::io(path, e))?;
    f.write_all(key.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| BackupError::io(path, e))
}

/// Prepare a target: the key file (made once, returned so it is shown once) and the repository.
/// A USB disk must be mounted at the repository's folder's parent.
pub fn init(
    cfg: &BackupConfig,
    restic: &Restic,
    which: &str,
) -> Result<Option<String>, BackupError> {
    let made = if cfg.key_file.exists() {
        None
    } else {
        let key = super::new_key()?;
        write_key(&cfg.key_file, &key)?;
        Some(key)
    };
    let t = targets(cfg)
        .into_iter()
        .find(|t| t.name == which)
        .ok_or_else(|| BackupError::Invalid(format!("no {which} target is configured")))?;
    if t.name == "usb" {
        let parent = cfg.usb_repository.parent().unwrap_or(Path::new("/"));
        if !parent.is_dir() {
            return Err(BackupError::Invalid(format!(
                "{}: the USB disk is not mounted there",
                parent.display()
            )));
        }
    }
    match restic.opens(&t.repo) {
        Ok(()) => {}
        Err(ResticError::NoRepository(_)) => restic.init(&t.repo)?,
        Err(e) => return Err(e.into()),
    }
    Ok(made)
}
