//! The health state machine of one watched unit. Pure: it is given the time and its inputs and
//! returns actions; it does no IO and reads no clock.
//!
//! - `starting` while the unit is activating (Synapse is `Type=notify`: migrations included), and
//!   for a grace period after it became active until a probe answers;
//! - `healthy` when the liveness probe answers in time; `degraded` on a slow answer or a single
//!   miss;
//! - hung (`hang_misses` consecutive misses while systemd says active) → restart;
//! - crashed: systemd restarts it itself (`auto-restart`); if systemd gave up (`failed`), the
//!   supervisor starts it again;
//! - crash loop: more than `loop_restarts` crashes and restarts within `loop_window` → `failed`,
//!   no more restarts, the LED's failure pattern, a reason a person can act on;
//! - `down` when its dependency (the database) is down: no restart of Synapse can help then;
//! - maintenance: states are still reported, no action is taken;
//! - waiting for setup: before the server's permanent name is chosen Synapse is inactive on
//!   purpose (its start condition fails): `starting`, with a reason that says what to do.

use super::unit::{ActiveState, JobOutcome, UnitStatus};
use serde::Serialize;
use std::collections::VecDeque;
use std::time::Duration;

/// Monotonic time, as an offset from the monitor's start.
pub type Instant = Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Degraded,
    Down,
    Failed,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// After the unit became active, until its first answer, probe misses count as "starting"
    /// for this long and not towards a hang: right after READY=1 a slow board (a Pi 3 on first
    /// boot, with its SD card busy) may take seconds per request.
    pub start_grace: Duration,
    /// A probe slower than this is a degraded answer.
    pub slow: Duration,
    /// Consecutive misses while active that make the unit hung.
    pub hang_misses: u32,
    /// More restarts than this within `loop_window` is a crash loop.
    pub loop_restarts: u32,
    pub loop_window: Duration,
    /// How long a `failed` unit is left to systemd before the supervisor starts it.
    pub failed_grace: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            start_grace: Duration::from_secs(60),
            slow: Duration::from_millis(1500),
            hang_misses: 3,
            // Five crashes in ten minutes: one before systemd's own StartLimitBurst=5 stops
            // trying, so the supervisor's verdict comes first and it never adds a start.
            loop_restarts: 4,
            loop_window: Duration::from_secs(600),
            failed_grace: Duration::from_secs(2),
        }
    }
}

/// A probe's verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    Answered { latency: Duration },
    Missed { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Unit(UnitStatus),
    Probe(Probe),
    /// `Some(reason)` while the unit's dependency (Synapse's database) is down.
    Dependency(Option<String>),
    Maintenance(bool),
    /// Whether the server's permanent name is chosen (`false`: Synapse waits for `/setup`).
    NameChosen(bool),
    /// A job the machine asked for has finished.
    JobDone(Result<JobOutcome, String>),
    /// The service manager is unreachable (`Some`) or back (`None`).
    ManagerLost(Option<String>),
    Tick,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Restart {
        reason: String,
    },
    /// Start a unit that systemd gave up on; `reset_failed` first when it is `failed`.
    Start {
        reason: String,
        reset_failed: bool,
    },
    /// The unit recovered from an incident: tell the server admins.
    Recovered(Incident),
}

/// What went wrong, for the server notice after recovery.
#[derive(Debug, Clone, PartialEq)]
pub struct Incident {
    pub began: Instant,
    pub reason: String,
    pub restarted_at: Option<Instant>,
    pub recovered: Instant,
}

/// What the page and the API show about one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub state: Health,
    pub reason: String,
    pub active: ActiveState,
    pub sub: String,
    /// Times the unit came back after stopping or crashing (systemd's restarts and ours).
    pub restarts: u32,
    /// Restarts the supervisor itself asked for.
    pub supervisor_restarts: u32,
    pub last_restart: Option<Instant>,
    pub maintenance: bool,
    /// Inactive because no name is chosen yet: the box waits for the family at `/setup`.
    pub awaiting_setup: bool,
}

/// The reason shown while the box waits for its name.
pub const AWAITING_SETUP: &str = "waiting for setup: open /setup with the setup code";

#[derive(Debug, Clone)]
pub struct Machine {
    policy: Policy,
    unit: UnitStatus,
    manager_lost: Option<String>,
    /// Whether a liveness probe applies to this unit (Synapse yes, PostgreSQL no).
    probed: bool,
    active_since: Option<Instant>,
    failed_since: Option<Instant>,
    answered_since_active: bool,
    misses: u32,
    last_miss: Option<String>,
    slow: bool,
    restarts_window: VecDeque<Instant>,
    job_pending: bool,
    maintenance: bool,
    name_chosen: bool,
    awaiting_setup: bool,
    dependency: Option<String>,
    stopped_by_dependency: bool,
    was_active: bool,
    restarts: u32,
    supervisor_restarts: u32,
    last_restart: Option<Instant>,
    incident: Option<(Instant, String, Option<Instant>)>,
    state: Health,
    reason: String,
}

impl Machine {
    pub fn new(policy: Policy, probed: bool) -> Self {
        Self {
            policy,
            unit: UnitStatus::unknown(),
            manager_lost: None,
            probed,
            active_since: None,
            failed_since: None,
            answered_since_active: false,
            misses: 0,
            last_miss: None,
            slow: false,
            restarts_window: VecDeque::new(),
            job_pending: false,
            maintenance: false,
            name_chosen: true,
            awaiting_setup: false,
            dependency: None,
            stopped_by_dependency: false,
            was_active: false,
            restarts: 0,
            supervisor_restarts: 0,
            last_restart: None,
            incident: None,
            state: Health::Starting,
            reason: "waiting for the service manager".into(),
        }
    }

    pub fn view(&self) -> View {
        View {
            state: self.state,
            reason: self.reason.clone(),
            active: self.unit.active,
            sub: self.unit.sub.clone(),
            restarts: self.restarts,
            supervisor_restarts: self.supervisor_restarts,
            last_restart: self.last_restart,
            maintenance: self.maintenance,
            awaiting_setup: self.awaiting_setup,
        }
    }

    pub fn state(&self) -> Health {
        self.state
    }

    fn open_incident(&mut self, now: Instant, reason: &str) {
        if self.incident.is_none() {
            self.incident = Some((now, reason.to_string(), None));
        }
    }

    fn note_restart(&mut self, now: Instant) {
        self.restarts_window.push_back(now);
        self.last_restart = Some(now);
        if let Some((_, _, r)) = &mut self.incident {
            r.get_or_insert(now);
        }
    }

    fn crash_loop(&mut self, now: Instant) -> bool {
        while let Some(&t) = self.restarts_window.front() {
            if now.saturating_sub(t) > self.policy.loop_window {
                self.restarts_window.pop_front();
            } else {
                break;
            }
        }
        self.restarts_window.len() as u32 > self.policy.loop_restarts
    }

    /// Feed one input at `now`; returns what to do.
    pub fn step(&mut self, now: Instant, input: Input) -> Vec<Action> {
        match input {
            Input::Unit(status) => self.on_unit(now, status),
            Input::Probe(p) => self.on_probe(now, p),
            Input::Dependency(d) => {
                if d.is_none() && self.dependency.is_some() {
                    // Misses while the database was down were the database's.
                    self.misses = 0;
                }
                self.dependency = d;
            }
            Input::Maintenance(on) => self.maintenance = on,
            Input::NameChosen(chosen) => self.name_chosen = chosen,
            Input::JobDone(_) => {
                // A finished start/restart job means a new process: judge it afresh.
                self.job_pending = false;
                self.answered_since_active = false;
                self.misses = 0;
                if self.unit.active == ActiveState::Active {
                    self.active_since = Some(now);
                }
            }
            Input::ManagerLost(reason) => self.manager_lost = reason,
            Input::Tick => {}
        }
        self.evaluate(now)
    }

    fn on_unit(&mut self, now: Instant, s: UnitStatus) {
        let before = self.unit.clone();
        // systemd ≥ 254 passes a crash through failed/failed-before-auto-restart, then
        // activating/auto-restart, auto-restart-queued, start: one crash, counted once.
        let crashed_now = restarting(&s.sub) && !restarting(&before.sub);
        let gave_up_now = gave_up(&s) && !gave_up(&before);
        if (crashed_now || gave_up_now) && before.active != ActiveState::Unknown {
            if !(gave_up_now && restarting(&before.sub)) {
                self.note_restart(now);
            }
            self.open_incident(
                now,
                if gave_up_now {
                    "crashed; systemd gave up"
                } else {
                    "crashed"
                },
            );
        }
        if s.active == ActiveState::Active && before.active != ActiveState::Active {
            if self.was_active {
                self.restarts += 1;
            }
            self.was_active = true;
            self.active_since = Some(now);
            self.answered_since_active = false;
            self.misses = 0;
            self.stopped_by_dependency = false;
        }
        if gave_up(&s) {
            self.failed_since.get_or_insert(now);
        } else {
            self.failed_since = None;
        }
        if s.active != ActiveState::Active {
            self.active_since = None;
            // Stopped while its database was down (Requires=/BindsTo=): start it when it is back.
            // A unit never seen running (still queued at boot) is systemd's to start, not ours.
            let was_running = matches!(
                before.active,
                ActiveState::Active | ActiveState::Deactivating | ActiveState::Reloading
            );
            if was_running && self.dependency.is_some() && s.active == ActiveState::Inactive {
                self.stopped_by_dependency = true;
            }
        }
        self.unit = s;
    }

    fn on_probe(&mut self, now: Instant, p: Probe) {
        // Probes say nothing while the unit is not up, or while our own restart is under way.
        if self.unit.active != ActiveState::Active
            || self.job_pending
            || self.manager_lost.is_some()
            || (self.dependency.is_some() && matches!(p, Probe::Missed { .. }))
        {
            return;
        }
        match p {
            Probe::Answered { latency } => {
                self.misses = 0;
                self.last_miss = None;
                self.answered_since_active = true;
                self.slow = latency > self.policy.slow;
            }
            Probe::Missed { reason } => {
                // Not answering yet, within the start grace: still starting, not hung.
                let starting = !self.answered_since_active
                    && self
                        .active_since
                        .is_some_and(|t| now.saturating_sub(t) < self.policy.start_grace);
                if !starting {
                    self.misses += 1;
                }
                self.last_miss = Some(reason);
            }
        }
    }

    fn set(&mut self, state: Health, reason: impl Into<String>) {
        self.state = state;
        self.reason = reason.into();
    }

    fn evaluate(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let may_act = !self.maintenance && !self.job_pending && self.manager_lost.is_none();
        let looping = self.crash_loop(now);

        if let Some(reason) = &self.manager_lost {
            let r = format!("service manager unreachable: {reason}");
            self.set(Health::Down, r);
            return actions;
        }

        // A crash loop is sticky until the unit runs and answers again (a person fixed it).
        if self.state == Health::Failed {
            let fixed = self.unit.active == ActiveState::Active
                && (!self.probed || self.answered_since_active);
            if fixed {
                self.restarts_window.clear();
            } else {
                return actions;
            }
        } else if looping {
            let n = self.restarts_window.len();
            let mins = self.policy.loop_window.as_secs() / 60;
            self.set(
                Health::Failed,
                format!(
                    "crash loop: {n} restarts within {mins} min; restarting cannot help, a person is needed (see the journal)"
                ),
            );
            return actions;
        }

        let dependency = self.dependency.clone();
        self.awaiting_setup = false;
        match self.unit.active {
            ActiveState::Unknown => self.set(Health::Starting, "waiting for the service manager"),
            _ if restarting(&self.unit.sub) => {
                self.set(Health::Down, "crashed; systemd is restarting it")
            }
            ActiveState::Activating | ActiveState::Reloading | ActiveState::Refreshing => {
                self.set(Health::Starting, format!("starting ({})", self.unit.sub))
            }
            ActiveState::Deactivating => self.set(Health::Down, "stopping"),
            // Queued by systemd behind the units it is ordered after (at boot: first boot's
            // setup, the database): on its way up, not down — unless it went down before.
            ActiveState::Inactive
                if self.unit.queued && self.incident.is_none() && !self.job_pending =>
            {
                match &dependency {
                    Some(d) => self.set(
                        Health::Starting,
                        format!("waiting to start: its database is not up yet ({d})"),
                    ),
                    None => self.set(
                        Health::Starting,
                        "waiting to start (after the units it needs)",
                    ),
                }
            }
            // No name yet: Synapse's start condition fails on purpose. Not a fault; nothing to
            // restart. The family is to open /setup.
            ActiveState::Inactive if !self.name_chosen && self.incident.is_none() => {
                self.awaiting_setup = true;
                self.set(Health::Starting, AWAITING_SETUP);
            }
            ActiveState::Inactive | ActiveState::Failed | ActiveState::Maintenance => {
                let failed = self.unit.active == ActiveState::Failed;
                if let Some(d) = &dependency {
                    self.set(
                        Health::Down,
                        format!("down because its database is down: {d}"),
                    );
                } else if failed {
                    self.set(Health::Down, "failed; systemd gave up restarting it");
                    let waited = self
                        .failed_since
                        .is_some_and(|t| now.saturating_sub(t) >= self.policy.failed_grace);
                    if may_act && waited {
                        actions.push(Action::Start {
                            reason: "systemd gave up restarting it".into(),
                            reset_failed: true,
                        });
                    }
                } else if self.stopped_by_dependency {
                    self.set(Health::Down, "stopped with its database; starting it again");
                    if may_act {
                        actions.push(Action::Start {
                            reason: "its database is back".into(),
                            reset_failed: false,
                        });
                    }
                } else {
                    self.set(Health::Down, "stopped");
                }
            }
            ActiveState::Active => {
                let in_grace = self
                    .active_since
                    .is_some_and(|t| now.saturating_sub(t) < self.policy.start_grace);
                if let Some(d) = &dependency {
                    self.set(Health::Down, format!("its database is down: {d}"));
                } else if self.job_pending {
                    self.set(Health::Down, "restarting");
                } else if !self.probed {
                    self.set(Health::Healthy, "running");
                } else if self.misses >= self.policy.hang_misses {
                    let miss = self.last_miss.clone().unwrap_or_default();
                    let reason = format!(
                        "hung: {} probes in a row unanswered ({miss}) while systemd says it runs",
                        self.misses
                    );
                    self.open_incident(now, "hung: stopped answering");
                    self.set(Health::Down, format!("{reason}; restarting"));
                    if may_act {
                        actions.push(Action::Restart { reason });
                    }
                } else if !self.answered_since_active && (in_grace || self.misses == 0) {
                    self.set(Health::Starting, "started; waiting for the first answer");
                } else if self.misses > 0 {
                    let miss = self.last_miss.clone().unwrap_or_default();
                    self.set(Health::Degraded, format!("a probe went unanswered: {miss}"));
                } else if self.slow {
                    self.set(Health::Degraded, "answering slowly");
                } else {
                    self.set(Health::Healthy, "answering");
                    if let Some((began, reason, restarted_at)) = self.incident.take() {
                        actions.push(Action::Recovered(Incident {
                            began,
                            reason,
                            restarted_at,
                            recovered: now,
                        }));
                    }
                }
            }
        }
        if self.maintenance {
            self.reason = format!("maintenance (no restarts): {}", self.reason);
        }
        for a in &actions {
            if matches!(a, Action::Restart { .. } | Action::Start { .. }) {
                self.job_pending = true;
                self.supervisor_restarts += 1;
                self.note_restart(now);
                // Probe misses from before the restart say nothing about the new process.
                self.misses = 0;
            }
        }
        actions
    }
}

/// systemd is restarting the unit after a crash (`Restart=`): `auto-restart`,
/// `auto-restart-queued`, and since v254 `failed-before-auto-restart` / `dead-before-auto-restart`.
fn restarting(sub: &str) -> bool {
    sub == "auto-restart" || sub == "auto-restart-queued" || sub.ends_with("-before-auto-restart")
}

/// systemd gave up: `failed`/`failed`, not a step on the way to an automatic restart.
fn gave_up(s: &UnitStatus) -> bool {
    s.active == ActiveState::Failed && !restarting(&s.sub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(active: &str, sub: &str) -> Input {
        Input::Unit(UnitStatus {
            active: ActiveState::parse(active),
            sub: sub.into(),
            n_restarts: 0,
            main_pid: 1,
            queued: false,
        })
    }
    fn ok() -> Input {
        Input::Probe(Probe::Answered {
            latency: Duration::from_millis(20),
        })
    }
    fn miss() -> Input {
        Input::Probe(Probe::Missed {
            reason: "timed out after 2 s".into(),
        })
    }
    fn s(secs: u64) -> Instant {
        Duration::from_secs(secs)
    }

    /// Feed a script of (second, input); return the actions and the final state.
    fn run(m: &mut Machine, script: &[(u64, Input)]) -> Vec<(u64, Action)> {
        let mut out = Vec::new();
        for (t, input) in script {
            for a in m.step(s(*t), input.clone()) {
                out.push((*t, a));
            }
        }
        out
    }

    fn synapse() -> Machine {
        Machine::new(Policy::default(), true)
    }

    #[test]
    fn before_the_name_is_chosen_an_inactive_synapse_is_waiting_for_setup_not_down() {
        let mut m = synapse();
        let actions = run(
            &mut m,
            &[
                (0, Input::NameChosen(false)),
                (0, st("inactive", "dead")),
                (5, Input::Tick),
                (3600, Input::Tick),
            ],
        );
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(m.state(), Health::Starting);
        assert_eq!(m.view().reason, AWAITING_SETUP);
        assert!(m.view().awaiting_setup);
        // The name is chosen: the name unit starts Synapse; it is starting, then healthy.
        run(
            &mut m,
            &[
                (3700, Input::NameChosen(true)),
                (3700, st("activating", "start")),
            ],
        );
        assert_eq!(m.state(), Health::Starting);
        assert!(!m.view().awaiting_setup);
        let actions = run(&mut m, &[(3800, st("active", "running")), (3801, ok())]);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(m.state(), Health::Healthy);
        // With a name, a stopped Synapse is down again.
        run(&mut m, &[(3900, st("inactive", "dead"))]);
        assert_eq!(m.state(), Health::Down);
        assert!(!m.view().awaiting_setup);
    }

    #[test]
    fn a_failed_synapse_is_a_fault_even_before_the_name() {
        let mut m = synapse();
        run(
            &mut m,
            &[(0, Input::NameChosen(false)), (0, st("failed", "failed"))],
        );
        assert_eq!(m.state(), Health::Down);
        assert!(!m.view().awaiting_setup);
    }

    #[test]
    fn a_cold_start_with_slow_migrations_is_never_restarted() {
        let mut m = synapse();
        let mut script = vec![(0, st("activating", "start"))];
        // Five minutes of migrations: activating the whole time, probes failing (not listening).
        for t in 1..300 {
            script.push((t, miss()));
        }
        script.push((300, st("active", "running")));
        script.push((301, miss()));
        script.push((303, miss()));
        script.push((305, ok()));
        let actions = run(&mut m, &script);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(m.state(), Health::Healthy);
        assert_eq!(m.view().restarts, 0);
    }

    /// Seen on a 1 GB board's first boot (QEMU): Synapse said READY=1, then took more than the
    /// probe's 2 s per request for a while. Three misses right after the start were taken for a
    /// hang and Synapse was restarted, the LED blinking a fault at the family's first start.
    #[test]
    fn a_slow_first_answer_within_the_start_grace_is_starting_not_a_hang() {
        let mut m = synapse();
        let grace = Policy::default().start_grace.as_secs();
        let mut script = vec![
            (0, st("activating", "start")),
            (100, st("active", "running")),
        ];
        for t in (102..100 + grace).step_by(2) {
            script.push((t, miss()));
        }
        let actions = run(&mut m, &script);
        assert!(actions.is_empty(), "{actions:?}");
        assert_eq!(m.state(), Health::Starting);
        assert_eq!(m.view().restarts, 0);
        // It answers before the grace is over: healthy, nothing restarted.
        assert!(run(&mut m, &[(100 + grace - 1, ok())]).is_empty());
        assert_eq!(m.state(), Health::Healthy);

        // One that never answers is hung once the grace is over and hang_misses more went
        // unanswered: restarted.
        let mut m = synapse();
        let mut script = vec![(0, st("active", "running"))];
        for t in (2..grace).step_by(2) {
            script.push((t, miss()));
        }
        assert!(run(&mut m, &script).is_empty());
        assert_eq!(m.state(), Health::Starting);
        let a = run(
            &mut m,
            &[(grace, miss()), (grace + 2, miss()), (grace + 4, miss())],
        );
        assert!(
            matches!(&a[..], [(t, Action::Restart { reason })] if *t == grace + 4 && reason.contains("hung")),
            "{a:?}"
        );
    }

    #[test]
    fn a_hung_process_is_restarted_after_k_misses_and_recovery_is_announced() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        assert_eq!(m.state(), Health::Healthy);
        assert!(run(&mut m, &[(10, miss())]).is_empty());
        assert_eq!(m.state(), Health::Degraded);
        assert!(run(&mut m, &[(12, miss())]).is_empty());
        let a = run(&mut m, &[(14, miss())]);
        assert!(
            matches!(&a[..], [(14, Action::Restart { reason })] if reason.contains("hung")),
            "{a:?}"
        );
        assert_eq!(m.state(), Health::Down);
        // While the restart job runs, no second restart.
        assert!(run(&mut m, &[(16, miss()), (18, miss()), (20, miss())]).is_empty());
        let a = run(
            &mut m,
            &[
                (21, Input::JobDone(Ok(JobOutcome::Done))),
                (21, st("deactivating", "stop-sigterm")),
                (22, st("activating", "start")),
                (30, st("active", "running")),
                (31, ok()),
            ],
        );
        assert_eq!(m.state(), Health::Healthy);
        match &a[..] {
            [(31, Action::Recovered(i))] => {
                assert_eq!(i.began, s(14));
                assert_eq!(i.restarted_at, Some(s(14)));
                assert!(i.reason.contains("hung"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(m.view().restarts, 1);
        assert_eq!(m.view().supervisor_restarts, 1);
    }

    #[test]
    fn a_crash_that_systemd_restarts_is_left_to_systemd() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        let a = run(
            &mut m,
            &[
                (5, st("activating", "auto-restart")),
                (6, st("activating", "start")),
                (8, st("active", "running")),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.view().restarts, 1);
        assert_eq!(m.view().supervisor_restarts, 0);
        let a = run(&mut m, &[(9, ok())]);
        assert!(matches!(&a[..], [(9, Action::Recovered(i))] if i.reason == "crashed"));
    }

    #[test]
    fn a_trixie_crash_sequence_counts_once() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        let a = run(
            &mut m,
            &[
                (5, st("failed", "failed-before-auto-restart")),
                (5, st("activating", "auto-restart")),
                (7, Input::Tick),
                (10, st("activating", "auto-restart-queued")),
                (10, st("activating", "start")),
                (12, st("active", "running")),
            ],
        );
        assert!(
            a.is_empty(),
            "systemd restarts it; nothing for us to do: {a:?}"
        );
        assert_eq!(m.view().restarts, 1);
        let a = run(&mut m, &[(13, ok())]);
        assert!(
            matches!(&a[..], [(13, Action::Recovered(i))] if i.reason == "crashed"),
            "{a:?}"
        );
        // Five such crashes within ten minutes are a loop; four are not.
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        for k in 0..4u64 {
            let t = 10 + k * 20;
            run(
                &mut m,
                &[
                    (t, st("failed", "failed-before-auto-restart")),
                    (t, st("activating", "auto-restart")),
                    (t + 5, st("activating", "start")),
                    (t + 8, st("active", "running")),
                    (t + 9, ok()),
                ],
            );
        }
        assert_eq!(m.state(), Health::Healthy, "{}", m.view().reason);
        run(
            &mut m,
            &[
                (200, st("failed", "failed-before-auto-restart")),
                (200, st("activating", "auto-restart")),
            ],
        );
        assert_eq!(m.state(), Health::Failed);
    }

    #[test]
    fn a_unit_systemd_gave_up_on_is_started_after_a_grace() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        assert!(run(&mut m, &[(5, st("failed", "failed"))]).is_empty());
        let a = run(&mut m, &[(8, Input::Tick)]);
        assert!(
            matches!(
                &a[..],
                [(
                    8,
                    Action::Start {
                        reset_failed: true,
                        ..
                    }
                )]
            ),
            "{a:?}"
        );
    }

    #[test]
    fn a_crash_loop_gives_up_loudly_and_stops_restarting() {
        let mut m = synapse();
        let mut script = vec![(0, st("active", "running")), (1, ok())];
        // A broken config: every start fails.
        for k in 0..10u64 {
            let t = 10 + k * 10;
            script.push((t, st("activating", "auto-restart")));
            script.push((t + 1, st("activating", "start")));
        }
        let actions = run(&mut m, &script);
        assert!(
            actions.is_empty(),
            "systemd restarts; we do not add a storm: {actions:?}"
        );
        assert_eq!(m.state(), Health::Failed);
        assert!(m.view().reason.contains("crash loop"));
        // systemd's own start limit then marks it failed: still no start from us.
        let a = run(
            &mut m,
            &[
                (200, st("failed", "failed")),
                (210, Input::Tick),
                (300, Input::Tick),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Failed);
        // A person fixes the config and starts it: it answers, failed is cleared.
        run(
            &mut m,
            &[
                (400, st("activating", "start")),
                (405, st("active", "running")),
                (406, ok()),
            ],
        );
        assert_eq!(m.state(), Health::Healthy);
    }

    #[test]
    fn database_down_is_the_reason_and_no_restart_is_tried() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        let a = run(
            &mut m,
            &[
                (
                    5,
                    Input::Dependency(Some("postgresql.service is inactive".into())),
                ),
                (6, miss()),
                (8, miss()),
                (10, miss()),
                (12, miss()),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Down);
        assert!(m.view().reason.contains("database"));
        run(&mut m, &[(20, Input::Dependency(None)), (21, ok())]);
        assert_eq!(m.state(), Health::Healthy);
    }

    #[test]
    fn stopped_with_its_database_it_is_started_when_the_database_is_back() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        let a = run(
            &mut m,
            &[
                (
                    5,
                    Input::Dependency(Some("postgresql.service is inactive".into())),
                ),
                (5, st("inactive", "dead")),
                (30, Input::Dependency(None)),
            ],
        );
        assert!(
            matches!(
                &a[..],
                [(
                    30,
                    Action::Start {
                        reset_failed: false,
                        ..
                    }
                )]
            ),
            "{a:?}"
        );
    }

    #[test]
    fn at_boot_a_unit_waiting_for_its_database_is_left_to_systemd() {
        let mut m = synapse();
        let a = run(
            &mut m,
            &[
                (
                    0,
                    Input::Dependency(Some("postgresql@17-main.service is inactive".into())),
                ),
                (0, st("inactive", "dead")),
                (2, Input::Dependency(None)),
                (3, st("activating", "start")),
                (8, st("active", "running")),
                (9, ok()),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Healthy);
        assert_eq!(m.view().supervisor_restarts, 0);
    }

    fn queued(active: &str, sub: &str) -> Input {
        match st(active, sub) {
            Input::Unit(u) => Input::Unit(UnitStatus { queued: true, ..u }),
            _ => unreachable!(),
        }
    }

    /// First boot: Synapse's start waits for the setup and for PostgreSQL's new cluster. The
    /// LED must say "starting" all the way, never "down", and nothing is restarted or started.
    #[test]
    fn queued_at_first_boot_is_starting_not_down() {
        let mut m = synapse();
        let a = run(&mut m, &[(0, queued("inactive", "dead")), (1, Input::Tick)]);
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Starting);
        assert_eq!(
            m.view().reason,
            "waiting to start (after the units it needs)"
        );
        let a = run(
            &mut m,
            &[
                (
                    2,
                    Input::Dependency(Some("postgresql@17-main.service is inactive".into())),
                ),
                (90, Input::Tick),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Starting);
        assert!(
            m.view().reason.contains("its database is not up yet"),
            "{}",
            m.view().reason
        );
        run(
            &mut m,
            &[
                (91, Input::Dependency(None)),
                (92, queued("activating", "start")),
                (150, st("active", "running")),
                (151, ok()),
                (170, Input::Tick),
            ],
        );
        assert_eq!(m.state(), Health::Healthy);
        // Stopped later without a job: down, as before.
        run(&mut m, &[(200, st("inactive", "dead"))]);
        assert_eq!(m.state(), Health::Down);
        assert_eq!(m.view().reason, "stopped");
    }

    #[test]
    fn stopped_by_an_administrator_is_left_alone() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        let a = run(
            &mut m,
            &[
                (5, st("deactivating", "stop-sigterm")),
                (6, st("inactive", "dead")),
                (60, Input::Tick),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert_eq!(m.state(), Health::Down);
        assert_eq!(m.view().reason, "stopped");
    }

    #[test]
    fn maintenance_suspends_every_restart() {
        let mut m = synapse();
        run(
            &mut m,
            &[
                (0, st("active", "running")),
                (1, ok()),
                (2, Input::Maintenance(true)),
            ],
        );
        let a = run(
            &mut m,
            &[
                (3, miss()),
                (5, miss()),
                (7, miss()),
                (9, miss()),
                (20, st("failed", "failed")),
                (40, Input::Tick),
            ],
        );
        assert!(a.is_empty(), "{a:?}");
        assert!(m.view().reason.starts_with("maintenance"));
        assert!(m.view().maintenance);
        let a = run(&mut m, &[(41, Input::Maintenance(false))]);
        assert!(matches!(&a[..], [(41, Action::Start { .. })]), "{a:?}");
    }

    #[test]
    fn a_slow_answer_is_degraded_and_a_lost_manager_is_down_without_actions() {
        let mut m = synapse();
        run(&mut m, &[(0, st("active", "running")), (1, ok())]);
        run(
            &mut m,
            &[(
                3,
                Input::Probe(Probe::Answered {
                    latency: Duration::from_secs(2),
                }),
            )],
        );
        assert_eq!(m.state(), Health::Degraded);
        let a = run(
            &mut m,
            &[
                (4, Input::ManagerLost(Some("dbus-daemon gone".into()))),
                (5, miss()),
                (7, miss()),
                (9, miss()),
            ],
        );
        assert!(a.is_empty());
        assert_eq!(m.state(), Health::Down);
        run(
            &mut m,
            &[
                (10, Input::ManagerLost(None)),
                (10, st("active", "running")),
                (11, ok()),
            ],
        );
        assert_eq!(m.state(), Health::Healthy);
    }

    #[test]
    fn an_unprobed_unit_is_healthy_when_active() {
        let mut m = Machine::new(Policy::default(), false);
        run(&mut m, &[(0, st("active", "running"))]);
        assert_eq!(m.state(), Health::Healthy);
        run(&mut m, &[(1, st("inactive", "dead"))]);
        assert_eq!(m.state(), Health::Down);
    }
}
