//! The daemon's part of an update: it knows better than anything whether Synapse is healthy.
//!
//! - **On trial** (the state says `trial` and the new slot runs): Synapse healthy without a
//!   break for `commit_after` → `hearth-update-commit.service` (root) makes the new slot the
//!   default. Synapse given up on by the health monitor (`failed`), or not healthy for
//!   `commit_after` within `give_up_after` of this start → the reason goes into its verdict
//!   file (root shows it, never acts on it) and `hearth-update-rollback.service` (root) reboots
//!   without the trial flag: the firmware boots the old slot, whose
//!   `hearth-update-boot.service` brings the data back as it was.
//! - **Settled** (committed, rolled back, interrupted) and not yet told: the server admins get
//!   a Matrix server notice, once per update.

use super::slots::Slot;
use super::state::{self, Phase, State, Verdict};
use crate::health::machine::Health;
use crate::health::monitor::SharedHealth;
use crate::health::probe::Synapse;
use crate::health::unit::StartUnit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub const COMMIT_UNIT: &str = "hearth-update-commit.service";
pub const ROLLBACK_UNIT: &str = "hearth-update-rollback.service";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Synapse healthy without a break for this long: the release is kept.
    pub commit_after: Duration,
    /// Not kept by then: rolled back.
    pub give_up_after: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    Wait,
    Commit,
    RollBack(String),
}

/// One trial, observed from the daemon's start (monotonic offsets).
#[derive(Debug, Clone, Default)]
pub struct Trial {
    healthy_since: Option<Duration>,
}

impl Trial {
    /// Feed the health monitor's view at `now` (time since the daemon started). Pure.
    pub fn observe(
        &mut self,
        policy: Policy,
        now: Duration,
        health: Option<(Health, &str)>,
    ) -> Judgement {
        match health {
            Some((Health::Healthy, _)) => {
                let since = *self.healthy_since.get_or_insert(now);
                if now.saturating_sub(since) >= policy.commit_after {
                    return Judgement::Commit;
                }
            }
            Some((Health::Failed, reason)) => {
                return Judgement::RollBack(format!("Synapse failed on the new release: {reason}"));
            }
            _ => self.healthy_since = None,
        }
        if now >= policy.give_up_after {
            let what = match health {
                Some((h, reason)) if !reason.is_empty() => format!("{} ({reason})", h.as_str()),
                Some((h, _)) => h.as_str().to_string(),
                None => "not checked yet".to_string(),
            };
            return Judgement::RollBack(format!(
                "Synapse was not healthy for {} s in a row within {} s of the new release's start; last seen {what}",
                policy.commit_after.as_secs(),
                policy.give_up_after.as_secs()
            ));
        }
        Judgement::Wait
    }
}

/// The admins' notice for a settled update, English then German.
pub fn notice(s: &State) -> Option<String> {
    let reason = s.reason.as_deref().unwrap_or("");
    match s.phase {
        Phase::Committed => Some(format!(
            "hearth: this server now runs release {v} (before: {f}). Synapse was healthy on it, so it stays. \
             Release notes: the update page (/update).\n\n\
             hearth: Dieser Server läuft jetzt mit Version {v} (vorher {f}). Synapse lief darauf gesund, \
             deshalb bleibt sie. Was neu ist: die Seite der Aktualisierungen (/update).",
            v = s.version,
            f = s.from_version
        )),
        Phase::RolledBack => Some(format!(
            "hearth: the update to release {v} was rolled back; release {f} runs again, with the data as it \
             was before the update (messages sent during the trial are not kept). Why: {reason}\n\n\
             hearth: Die Aktualisierung auf Version {v} wurde zurückgenommen; Version {f} läuft wieder, mit den \
             Daten wie vor der Aktualisierung (Nachrichten aus der Probezeit fehlen). Grund: {reason}",
            v = s.version,
            f = s.from_version
        )),
        Phase::Interrupted => Some(format!(
            "hearth: writing release {v} stopped before it was complete; nothing changed, release {f} runs. \
             Why: {reason}\n\n\
             hearth: Das Schreiben von Version {v} brach ab, bevor es fertig war; nichts hat sich geändert, \
             Version {f} läuft. Grund: {reason}",
            v = s.version,
            f = s.from_version
        )),
        Phase::Writing | Phase::Trial => None,
    }
}

pub struct Watch {
    pub state_dir: PathBuf,
    /// The daemon's own findings (`[update] verdict_file`).
    pub verdict_file: PathBuf,
    /// The running kernel's command line (`/proc/cmdline`): which slot runs.
    pub cmdline: PathBuf,
    pub health: SharedHealth,
    pub synapse: Synapse,
    pub units: Arc<dyn StartUnit>,
    pub policy: Policy,
    pub every: Duration,
}

fn running(w: &Watch) -> Option<Slot> {
    let line = std::fs::read_to_string(&w.cmdline).ok()?;
    super::slots::running(&line).ok()
}

/// The task: from the daemon's start until the update in the state file is settled and told.
pub async fn run(w: Watch, cancel: CancellationToken) {
    let started = tokio::time::Instant::now();
    let mut trial = Trial::default();
    let mut asked = false;
    let mut t = tokio::time::interval(w.every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = t.tick() => {}
        }
        let s = match state::load(&w.state_dir) {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("update state: {e}");
                return;
            }
        };
        let mut verdict = Verdict::load(&w.verdict_file)
            .filter(|v| v.version == s.version)
            .unwrap_or_else(|| Verdict {
                version: s.version.clone(),
                ..Verdict::default()
            });
        if s.phase.settled() {
            if verdict.told.as_deref() == Some(s.phase.as_str()) {
                return;
            }
            let Some(body) = notice(&s) else { return };
            match w.synapse.notify_admins(&body).await {
                Ok(n) => {
                    tracing::info!(admins = n, phase = s.phase.as_str(), version = %s.version, "update: admins told");
                    verdict.told = Some(s.phase.as_str().to_string());
                    if let Err(e) = verdict.save(&w.verdict_file) {
                        tracing::warn!("update verdict: {e}");
                    }
                    return;
                }
                // Synapse may still be starting: again at the next look.
                Err(e) => tracing::info!("update notice not sent yet: {e}"),
            }
            continue;
        }
        if s.phase != Phase::Trial || running(&w) != Some(s.slot) || asked {
            // Writing (root's) or a trial that did not boot (the old slot's boot step settles it).
            continue;
        }
        let view = w.health.get().clone();
        let health = view.as_ref().map(|r| (r.state, r.reason.as_str()));
        match trial.observe(w.policy, started.elapsed(), health) {
            Judgement::Wait => {}
            Judgement::Commit => {
                tracing::info!(version = %s.version, "update: Synapse healthy on the new release; committing");
                asked = true;
                if let Err(e) = w.units.start_unit(COMMIT_UNIT).await {
                    tracing::error!("update: starting {COMMIT_UNIT}: {e}");
                    asked = false;
                }
            }
            Judgement::RollBack(reason) => {
                tracing::error!(version = %s.version, "update: rolling back: {reason}");
                verdict.reason = Some(reason);
                if let Err(e) = verdict.save(&w.verdict_file) {
                    tracing::warn!("update verdict: {e}");
                }
                asked = true;
                if let Err(e) = w.units.start_unit(ROLLBACK_UNIT).await {
                    tracing::error!("update: starting {ROLLBACK_UNIT}: {e}");
                    asked = false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: Policy = Policy {
        commit_after: Duration::from_secs(60),
        give_up_after: Duration::from_secs(600),
    };
    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn healthy_without_a_break_for_the_set_time_commits() {
        let mut t = Trial::default();
        assert_eq!(
            t.observe(P, s(5), Some((Health::Starting, ""))),
            Judgement::Wait
        );
        assert_eq!(
            t.observe(P, s(30), Some((Health::Healthy, ""))),
            Judgement::Wait
        );
        // A break starts the count again.
        assert_eq!(
            t.observe(P, s(60), Some((Health::Down, "probe failed"))),
            Judgement::Wait
        );
        assert_eq!(
            t.observe(P, s(70), Some((Health::Healthy, ""))),
            Judgement::Wait
        );
        assert_eq!(
            t.observe(P, s(129), Some((Health::Healthy, ""))),
            Judgement::Wait
        );
        assert_eq!(
            t.observe(P, s(130), Some((Health::Healthy, ""))),
            Judgement::Commit
        );
    }

    #[test]
    fn given_up_or_never_healthy_rolls_back_with_the_reason() {
        let mut t = Trial::default();
        match t.observe(
            P,
            s(40),
            Some((Health::Failed, "crash loop: 5 restarts in 300 s")),
        ) {
            Judgement::RollBack(r) => assert!(r.contains("crash loop"), "{r}"),
            v => panic!("{v:?}"),
        }
        let mut t = Trial::default();
        assert_eq!(
            t.observe(P, s(599), Some((Health::Degraded, "slow"))),
            Judgement::Wait
        );
        match t.observe(P, s(600), Some((Health::Degraded, "slow"))) {
            Judgement::RollBack(r) => {
                assert!(r.contains("600 s") && r.contains("degraded (slow)"), "{r}")
            }
            v => panic!("{v:?}"),
        }
        // Healthy only at the very end is not long enough.
        let mut t = Trial::default();
        assert_eq!(
            t.observe(P, s(580), Some((Health::Healthy, ""))),
            Judgement::Wait
        );
        assert!(matches!(
            t.observe(P, s(600), Some((Health::Healthy, ""))),
            Judgement::RollBack(_)
        ));
    }

    #[test]
    fn each_settled_update_has_a_notice_in_both_languages() {
        let mut st = State {
            phase: Phase::Committed,
            version: "0.2.0".into(),
            from_version: "0.1.0".into(),
            slot: Slot::B,
            since: 0,
            reason: None,
            card_bytes: None,
        };
        let n = notice(&st).unwrap();
        assert!(
            n.contains("release 0.2.0") && n.contains("Version 0.2.0"),
            "{n}"
        );
        st.phase = Phase::RolledBack;
        st.reason = Some("Synapse failed".into());
        let n = notice(&st).unwrap();
        assert!(
            n.contains("rolled back")
                && n.contains("zurückgenommen")
                && n.contains("Synapse failed"),
            "{n}"
        );
        st.phase = Phase::Trial;
        assert!(notice(&st).is_none());
    }

    // --- the task, with the health monitor's view and systemd stood in for ---

    use crate::health::monitor::HealthReport;
    use crate::health::unit::{JobOutcome, UnitError};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Started(Mutex<Vec<String>>);

    impl StartUnit for Started {
        fn start_unit<'a>(
            &'a self,
            unit: &'a str,
        ) -> futures_util::future::BoxFuture<'a, Result<JobOutcome, UnitError>> {
            self.0.lock().unwrap().push(unit.to_string());
            Box::pin(async { Ok(JobOutcome::Done) })
        }
    }

    fn report(state: Health, reason: &str) -> HealthReport {
        HealthReport {
            state,
            reason: reason.into(),
            units: vec![],
            last_restart_ms: None,
            maintenance: false,
            awaiting_setup: false,
        }
    }

    /// The task on a box whose state says `trial` in slot B and whose kernel runs `running`,
    /// with the monitor's view `health`, for `secs` of (paused) time.
    async fn watch(
        running: &str,
        health: HealthReport,
        secs: u64,
    ) -> (Vec<String>, State, Option<Verdict>) {
        let dir = tempfile::tempdir().unwrap();
        let st = State {
            phase: Phase::Trial,
            version: "0.2.0".into(),
            from_version: "0.1.0".into(),
            slot: Slot::B,
            since: 0,
            reason: None,
            card_bytes: None,
        };
        state::save(dir.path(), &st).unwrap();
        let cmdline = dir.path().join("cmdline");
        std::fs::write(&cmdline, format!("root=LABEL={running} rw\n")).unwrap();
        let shared = SharedHealth::default();
        shared.set(health);
        let started = Arc::new(Started::default());
        let token = CancellationToken::new();
        let task = tokio::spawn(run(
            Watch {
                state_dir: dir.path().to_path_buf(),
                verdict_file: dir.path().join("verdict.json"),
                cmdline,
                health: shared,
                synapse: Synapse::new(
                    "http://127.0.0.1:9",
                    Duration::from_millis(100),
                    crate::health::probe::AdminToken::none(),
                ),
                units: started.clone(),
                policy: P,
                every: Duration::from_secs(5),
            },
            token.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(secs)).await;
        token.cancel();
        task.await.unwrap();
        let units = started.0.lock().unwrap().clone();
        (
            units,
            state::load(dir.path()).unwrap().unwrap(),
            Verdict::load(&dir.path().join("verdict.json")),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_commits_a_healthy_trial_once() {
        let (units, st, _) = watch("RASPIROOT_B", report(Health::Healthy, ""), 59).await;
        assert!(
            units.is_empty(),
            "committed before a minute of health: {units:?}"
        );
        assert_eq!(st.phase, Phase::Trial);
        let (units, _, _) = watch("RASPIROOT_B", report(Health::Healthy, ""), 120).await;
        assert_eq!(units, [COMMIT_UNIT]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_rolls_back_a_failed_trial_with_its_reason() {
        let (units, st, verdict) = watch(
            "RASPIROOT_B",
            report(Health::Failed, "gave up: 5 restarts"),
            30,
        )
        .await;
        assert_eq!(units, [ROLLBACK_UNIT]);
        let verdict = verdict.expect("the daemon's verdict");
        assert_eq!(verdict.version, "0.2.0");
        assert!(verdict.reason.unwrap().contains("gave up: 5 restarts"));
        assert!(st.reason.is_none(), "the daemon wrote root's state");
        assert_eq!(
            st.phase,
            Phase::Trial,
            "the old slot's boot step settles it, not the daemon"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_old_slot_leaves_a_trial_to_its_boot_step() {
        let (units, st, _) = watch("RASPIROOT", report(Health::Healthy, ""), 700).await;
        assert!(units.is_empty(), "{units:?}");
        assert_eq!(st.phase, Phase::Trial);
    }
}
