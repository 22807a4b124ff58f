//! Where an update stands, in `/var/lib/hearth/update/state.json` (the data partition: both
//! slots see it). Root's steps write it (`update run`, `boot`, `commit`, `rollback`); the daemon
//! reads it, watches a trial and shows it on the page. Written whole and renamed into place.

use super::slots::Slot;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Writing the other slot (a power cut here leaves the running slot as it was).
    Writing,
    /// Written; the box reboots into it once, on trial.
    Trial,
    /// The trial was healthy: the new slot is the default.
    Committed,
    /// The trial failed (or never came up): the old slot runs again, with the data as it was
    /// before the update.
    RolledBack,
    /// Writing stopped (power cut, download dropped, a payload that did not check out):
    /// nothing changed, the next attempt starts over.
    Interrupted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Writing => "writing",
            Phase::Trial => "trial",
            Phase::Committed => "committed",
            Phase::RolledBack => "rolled_back",
            Phase::Interrupted => "interrupted",
        }
    }
    /// The update is over (nothing more happens without a new one).
    pub fn settled(self) -> bool {
        matches!(
            self,
            Phase::Committed | Phase::RolledBack | Phase::Interrupted
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub phase: Phase,
    /// The release being installed.
    pub version: String,
    /// The release that ran before.
    pub from_version: String,
    /// The slot written and tried.
    pub slot: Slot,
    /// Unix seconds: when this phase began.
    pub since: i64,
    /// Why it was rolled back or interrupted, in words for the page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Bytes written to the card by this update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_bytes: Option<u64>,
    /// The server admins were told of this outcome (a notice per settled update).
    #[serde(default)]
    pub told: bool,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// The state in `dir`; `Ok(None)` when no update ever ran. A state file that cannot be read is an
/// error naming it (the daemon shows it and does nothing rash).
pub fn load(dir: &Path) -> Result<Option<State>, String> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{}: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", p.display())),
    }
}

/// Writes the state (temporary file, fsync, rename, fsync of the directory).
pub fn save(dir: &Path, state: &State) -> Result<(), String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let p = path(dir);
    let tmp = dir.join(".state.json.tmp");
    let text = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &p)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", p.display()))
}
