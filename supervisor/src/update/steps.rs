//! Root's steps of an update, each a oneshot unit that runs `hearth-supervisor update …`:
//!
//! | step | unit | what |
//! |---|---|---|
//! | [`run`] | hearth-update.service | verify, snapshot the data, write the other slot, carry the box's choices into it, arm the trial, reboot with the trial flag |
//! | [`boot`] | hearth-update-boot.service (every boot, before Synapse and the supervisor) | settle what a restart interrupted: writing → interrupted; a trial whose new slot is not the one running → the data back as it was, rolled back |
//! | [`commit`] | hearth-update-commit.service (started by the daemon) | the slot on trial becomes the default in `autoboot.txt` |
//! | [`rollback`] | hearth-update-rollback.service (started by the daemon) | reboot without the trial flag: the firmware boots the old slot |

use super::state::{self, Phase, State};
use super::{slots, write, Disk, Options, Source, UpdateError};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the steps need of the box.
#[derive(Debug, Clone)]
pub struct Appliance {
    pub state_dir: PathBuf,
    /// The daemon's verdict file (its reason for giving a trial up, shown as the reason).
    pub verdict_file: PathBuf,
    pub disk: Disk,
    /// sysfs (`/sys`): the kernel's count of what was written to the card.
    pub sys: PathBuf,
    /// `/usr/lib/hearth/update-snapshot`, to which `take` or `restore` is added.
    pub snapshot: Vec<String>,
    /// `/usr/lib/hearth/update-carry`, to which the partition and the slot are added.
    pub carry: Vec<String>,
    /// The reboot into the trial, and the plain one (`systemctl reboot "0 tryboot"`, `systemctl
    /// reboot`); empty: no reboot (tests).
    pub reboot_trial: Vec<String>,
    pub reboot_plain: Vec<String>,
}

fn tool(argv: &[String]) -> Result<(), String> {
    let Some((prog, args)) = argv.split_first() else {
        return Ok(());
    };
    let out = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let said = String::from_utf8_lossy(&out.stderr);
        let last = said.trim().lines().last().unwrap_or("").to_string();
        Err(format!("{prog} {}: {last}", args.join(" ")))
    }
}

fn with(argv: &[String], more: &[&str]) -> Vec<String> {
    argv.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

fn save(b: &Appliance, s: &State) -> Result<(), UpdateError> {
    state::save(&b.state_dir, s).map_err(UpdateError::Slot)
}

/// One update, from the verified manifest to the reboot into the trial. A release that is not
/// newer is `Ok(None)` (nothing to do). Any failure after writing began leaves the state
/// `interrupted` with the reason, the running slot the default, and returns the error.
pub async fn run(
    source: &Source,
    b: &Appliance,
    opts: &Options,
    now_s: i64,
) -> Result<Option<State>, UpdateError> {
    let manifest = super::fetch_manifest(source, opts).await?;
    if !manifest.newer_than(&opts.running_version) {
        return Ok(None);
    }
    let running = slots::running(&opts.cmdline).map_err(UpdateError::Slot)?;
    if let Some(s) = state::load(&b.state_dir).map_err(UpdateError::Slot)? {
        if s.phase == Phase::Trial {
            return Err(UpdateError::Pending(format!(
                "release {} is on trial in slot {}: no new update before it is settled",
                s.version, s.slot
            )));
        }
    }
    let mut st = State {
        phase: Phase::Writing,
        version: manifest.version.clone(),
        from_version: opts.running_version.clone(),
        slot: running.other(),
        since: now_s,
        reason: None,
        card_bytes: None,
    };
    save(b, &st)?;
    let written_before = b.disk.written_bytes(&b.sys);
    let result = async {
        tool(&with(&b.snapshot, &["take"])).map_err(|e| {
            UpdateError::Slot(format!("the data's snapshot before the update: {e}"))
        })?;
        let written = super::write_release(source, &b.disk, opts).await?;
        let part = b.disk.partition(written.slot.root_partition());
        tool(&with(
            &b.carry,
            &[&part.display().to_string(), &written.slot.to_string()],
        ))
        .map_err(|e| {
            UpdateError::Slot(format!(
                "carrying this box's choices into the new root: {e}"
            ))
        })?;
        Ok::<_, UpdateError>(written)
    }
    .await;
    match result {
        Ok(written) => {
            st.phase = Phase::Trial;
            // What the card took for this update (snapshot, slot, firmware, carried files), as
            // the kernel counted it once everything is on the card; where the kernel cannot
            // say (no sysfs entry), what the writer wrote.
            let _ = Command::new("sync").status();
            st.card_bytes = Some(
                written_before
                    .zip(b.disk.written_bytes(&b.sys))
                    .map(|(before, after)| after.saturating_sub(before))
                    .unwrap_or(written.card_bytes),
            );
            save(b, &st)?;
            if let Err(e) = tool(&b.reboot_trial) {
                // No trial follows. Left saying "trial", the state would make the next boot of
                // this slot, whenever it comes, put the data back as they were before this
                // update; and no update could run before then.
                let why = format!("the reboot into the trial did not start: {e}");
                st.phase = Phase::Interrupted;
                st.reason = Some(why.clone());
                // autoboot.txt needs nothing: its default is still the running slot.
                save(b, &st)?;
                return Err(UpdateError::Slot(why));
            }
            Ok(Some(st))
        }
        Err(e) => {
            st.phase = Phase::Interrupted;
            st.reason = Some(e.to_string());
            // autoboot.txt was armed last: if that is what failed, put it back.
            let _ = disarm(b, running);
            save(b, &st)?;
            Err(e)
        }
    }
}

/// The default stays the running slot; no trial of a slot that is not complete.
fn disarm(b: &Appliance, running: slots::Slot) -> Result<(), UpdateError> {
    let scratch = std::env::temp_dir();
    write::write_autoboot(&b.disk.partition(1), running, &scratch)?;
    Ok(())
}

/// At every boot, before Synapse and the supervisor start: settles an update a restart cut short.
/// Returns the state as it is now (None: no update ever ran).
pub fn boot(b: &Appliance, cmdline: &str, now_s: i64) -> Result<Option<State>, UpdateError> {
    let Some(mut s) = state::load(&b.state_dir).map_err(UpdateError::Slot)? else {
        return Ok(None);
    };
    let running = slots::running(cmdline).map_err(UpdateError::Slot)?;
    match s.phase {
        Phase::Writing => {
            // A power cut, or the box restarted, while the other slot was written: the firmware
            // booted the default, this slot, as before. The half-written slot is never tried.
            s.phase = Phase::Interrupted;
            s.reason = Some(format!(
                "the box restarted while release {} was being written (power cut?)",
                s.version
            ));
            s.since = now_s;
            let _ = disarm(b, running);
            save(b, &s)?;
        }
        Phase::Trial if running != s.slot => {
            // The trial is over and this is the old slot: the daemon gave up on the new one, or
            // it never came up (the firmware booted the default). The data back as it was.
            let why =
                state::Verdict::reason_for(&b.verdict_file, &s.version).unwrap_or_else(|| {
                    format!(
                        "release {} did not come up: the firmware booted slot {running} again",
                        s.version
                    )
                });
            tool(&with(&b.snapshot, &["restore"])).map_err(|e| {
                UpdateError::Slot(format!(
                    "bringing the data back after the failed trial: {e}"
                ))
            })?;
            s.phase = Phase::RolledBack;
            s.reason = Some(why);
            s.since = now_s;
            save(b, &s)?;
        }
        _ => {}
    }
    Ok(Some(s))
}

/// The slot on trial runs and Synapse was healthy on it: make it the default.
pub fn commit(b: &Appliance, cmdline: &str, now_s: i64) -> Result<State, UpdateError> {
    let mut s = state::load(&b.state_dir)
        .map_err(UpdateError::Slot)?
        .ok_or_else(|| UpdateError::Slot("no update to commit".into()))?;
    let running = slots::running(cmdline).map_err(UpdateError::Slot)?;
    if s.phase != Phase::Trial || running != s.slot {
        return Err(UpdateError::Slot(format!(
            "nothing on trial here: the update is {} and slot {running} runs",
            s.phase.as_str()
        )));
    }
    let scratch = std::env::temp_dir();
    write::write_autoboot(&b.disk.partition(1), running, &scratch)?;
    s.phase = Phase::Committed;
    s.since = now_s;
    save(b, &s)?;
    Ok(s)
}

/// The daemon gave up on the trial: reboot without the flag, into the default (old) slot.
pub fn rollback(b: &Appliance) -> Result<(), UpdateError> {
    tool(&b.reboot_plain).map_err(UpdateError::Slot)
}

/// The appliance's paths; `disk` as `[update] disk` says (`auto`: the running root's disk).
pub fn appliance(
    state_dir: &Path,
    verdict_file: &Path,
    disk: &str,
) -> Result<Appliance, UpdateError> {
    let sv = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    Ok(Appliance {
        state_dir: state_dir.to_path_buf(),
        verdict_file: verdict_file.to_path_buf(),
        disk: Disk::resolve(disk).map_err(UpdateError::Slot)?,
        sys: PathBuf::from("/sys"),
        snapshot: sv(&["/usr/lib/hearth/update-snapshot"]),
        carry: sv(&["/usr/lib/hearth/update-carry"]),
        reboot_trial: sv(&["/usr/lib/hearth/tryboot-reboot"]),
        reboot_plain: sv(&["systemctl", "reboot"]),
    })
}
