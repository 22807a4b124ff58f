//! Where an update stands: `state.json` in `/data/update` (the data partition: both slots see
//! it; root's, world-readable). Only root's steps write it (`update run`, `boot`, `commit`); the
//! daemon reads it, watches a trial and shows it on the page. It never trusts the supervisor's
//! account with it: a state that says "trial" makes the old slot's boot step put the data back
//! as it was before the update, which must not be something that account can ask for.
//!
//! The daemon's own findings go into its [`Verdict`] file (its account's, in `/var/lib/hearth`):
//! why it gave up on a trial (shown, never acted on, by root) and which outcome it told the
//! admins of.

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
}

/// What the daemon found about one update (its own file).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The release it is about.
    pub version: String,
    /// Why the trial was given up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The outcome the admins were told of (`committed`, `rolled_back`, `interrupted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub told: Option<String>,
}

/// The longest reason root copies from the daemon's verdict into the state.
pub const MAX_REASON: usize = 500;

impl Verdict {
    pub fn load(file: &Path) -> Option<Verdict> {
        std::fs::read(file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
    }
    /// Written whole and renamed (the daemon's account, its own directory).
    pub fn save(&self, file: &Path) -> Result<(), String> {
        let dir = file.parent().unwrap_or(Path::new("."));
        write_whole(
            dir,
            file,
            &serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?,
        )
    }
    /// The daemon's reason, as root shows it: one line, at most [`MAX_REASON`] characters.
    pub fn reason_for(file: &Path, version: &str) -> Option<String> {
        let v = Verdict::load(file)?;
        if v.version != version {
            return None;
        }
        let line: String = v
            .reason?
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_REASON)
            .collect();
        (!line.trim().is_empty()).then_some(line)
    }
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

/// Writes the state (root's; the directory made 0755 if missing).
pub fn save(dir: &Path, state: &State) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    // Readable by the supervisor's account (the page, the trial): set, not left to the umask
    // (hearth-update.service runs with UMask=0077, which made both root's alone).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let text = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    write_whole(dir, &path(dir), &text)
}

/// Temporary file made new (never through a link someone left), fsync, rename, fsync of the
/// directory; readable by all (0644).
fn write_whole(dir: &Path, p: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let write = || -> std::io::Result<()> {
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)?;
        // fchmod: the umask does not narrow it.
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, p)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| format!("{}: {e}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_state_is_readable_by_the_supervisor_whatever_the_umask_made() {
        // As hearth-update.service (UMask=0077) left them: root's alone.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("update");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let s = State {
            phase: Phase::Writing,
            version: "1.2.3".into(),
            from_version: "1.2.2".into(),
            slot: Slot::B,
            since: 1,
            reason: None,
            card_bytes: None,
        };
        save(&dir, &s).unwrap();
        assert_eq!(mode(&dir), 0o755);
        assert_eq!(mode(&path(&dir)), 0o644);
        assert_eq!(load(&dir).unwrap(), Some(s));
    }
}
