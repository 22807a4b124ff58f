//! The supervisor's side of the backups (issue 16; the runs themselves are root's,
//! `crate::backup`, in hearth-backup.service):
//!
//! - **The notice.** When no backup has succeeded for two days — every target failing, or the
//!   only disk unplugged — the server admins get a Matrix server notice saying so and why (each
//!   target's last error), again every week while it lasts. Once a run succeeds the watch starts
//!   over. "Since when" is the newest good run of any target; a box whose backups never
//!   succeeded counts from when this watch first saw them failing. A box whose backups are not
//!   set up (no status file yet) gets no notice: the backup page says so instead.
//! - **After important changes.** A member who joins or leaves, a household added, renamed or
//!   rearranged: once the directory has been calm for [`CALM`], the supervisor starts
//!   hearth-backup.service (allowed by the polkit rule), so the nightly run is not the only one
//!   that has them. Nothing is started before the backups are set up.
//!
//! The state (since when failing, when last notified) is one small file beside the database
//! (`backup_notice.state`), written by rename; an unreadable one starts the watch over.

use crate::accounting::directory;
use crate::backup::run::Status;
use crate::health::probe::Synapse;
use crate::health::unit::StartUnit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// No good backup for this long: the admins are told.
pub const FAILING_FOR_S: i64 = 2 * 86_400;
/// While it lasts, the notice comes again after this long.
pub const REPEAT_S: i64 = 7 * 86_400;
/// How often the watch looks.
pub const EVERY: Duration = Duration::from_secs(60);
/// A change starts a backup once the directory has not changed for this long (a family adding
/// five accounts in a row gets one run, not five).
pub const CALM: Duration = Duration::from_secs(10 * 60);
/// The unit a change starts.
pub const UNIT: &str = "hearth-backup.service";

/// What the watch remembers across restarts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct State {
    /// Failing since (Unix s): the newest good run, or when the watch first saw no good one.
    pub failing_since_s: Option<i64>,
    pub notified_at_s: Option<i64>,
}

impl State {
    pub fn file(db: &Path) -> PathBuf {
        db.with_file_name("backup_notice.state")
    }

    /// Two lines, `failing_since_s=` and `notified_at_s=` (empty: none). Missing or malformed:
    /// the default, with a warning for a malformed one (the worst that follows is a notice two
    /// days late, never one repeated every minute).
    pub fn read(path: &Path) -> State {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return State::default(),
            Err(e) => {
                tracing::warn!(file = %path.display(), "backup notice state unreadable: {e}");
                return State::default();
            }
        };
        let mut s = State::default();
        for (i, line) in text.lines().enumerate() {
            let (key, value) = line.split_once('=').unwrap_or((line, ""));
            let value = match value.trim() {
                "" => None,
                v => match v.parse::<i64>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        tracing::warn!(file = %path.display(), line = i + 1, key, "backup notice state: not a number");
                        return State::default();
                    }
                },
            };
            match key.trim() {
                "failing_since_s" => s.failing_since_s = value,
                "notified_at_s" => s.notified_at_s = value,
                other => {
                    tracing::warn!(file = %path.display(), line = i + 1, key = other, "backup notice state: unknown key");
                    return State::default();
                }
            }
        }
        s
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let show = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
        let text = format!(
            "failing_since_s={}\nnotified_at_s={}\n",
            show(self.failing_since_s),
            show(self.notified_at_s)
        );
        let tmp = path.with_extension("state.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

/// The newest good run of any target (Unix s).
pub fn newest_good(status: &Status) -> Option<i64> {
    status
        .targets
        .values()
        .filter_map(|t| t.last_good.as_ref().map(|g| g.at_s))
        .max()
}

/// One look: the state to keep, and the notice to send now (if any). Pure.
pub fn assess(status: &Status, state: State, now_s: i64) -> (State, Option<String>) {
    if status.targets.is_empty() {
        return (State::default(), None);
    }
    let good = newest_good(status);
    match good {
        // A clock behind the last good run: nothing to say, nothing to forget.
        Some(g) if now_s < g => return (state, None),
        Some(g) if now_s - g < FAILING_FOR_S => return (State::default(), None),
        _ => {}
    }
    let since = good.or(state.failing_since_s).unwrap_or(now_s);
    let mut next = State {
        failing_since_s: Some(since),
        notified_at_s: state.notified_at_s,
    };
    // A clock jumped back (before since, or before the last notice) sends nothing.
    let failing_long = now_s - since >= FAILING_FOR_S;
    let repeat_due = state.notified_at_s.is_none_or(|n| now_s - n >= REPEAT_S);
    if failing_long && repeat_due {
        next.notified_at_s = Some(now_s);
        return (next, Some(text(status, good, now_s - since)));
    }
    (next, None)
}

fn utc(s: i64) -> String {
    chrono::DateTime::from_timestamp(s, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// The notice, in English and German (the supervisor does not know an admin's language).
pub fn text(status: &Status, good: Option<i64>, failing_s: i64) -> String {
    let days = failing_s / 86_400;
    let (last_en, last_de) = match good {
        Some(g) => (
            format!("the last good one was at {}", utc(g)),
            format!("die letzte gelungene war am {}", utc(g)),
        ),
        None => (
            "none has succeeded yet".to_string(),
            "noch keine ist gelungen".to_string(),
        ),
    };
    let mut why_en = String::new();
    let mut why_de = String::new();
    for (name, t) in &status.targets {
        let (en, de) = if t.absent {
            (
                "the disk was not plugged in".to_string(),
                "die Platte war nicht angeschlossen".to_string(),
            )
        } else if let Some(e) = &t.error {
            (e.clone(), e.clone())
        } else {
            ("no run yet".to_string(), "noch kein Lauf".to_string())
        };
        why_en.push_str(&format!("\n- {name}: {en}"));
        why_de.push_str(&format!("\n- {name}: {de}"));
    }
    format!(
        "hearth: no backup of this server has succeeded for {days} days ({last_en}). \
         If the card fails now, what changed since is lost.{why_en}\n\
         The backup page (/backup) shows each target; `hearth-supervisor backup run` tries again.\n\n\
         hearth: Seit {days} Tagen ist keine Sicherung dieses Servers gelungen ({last_de}). \
         Fällt die Karte jetzt aus, ist verloren, was sich seitdem geändert hat.{why_de}\n\
         Die Seite der Sicherungen (/backup) zeigt jedes Ziel; `hearth-supervisor backup run` \
         versucht es erneut."
    )
}

/// What makes a change important enough for a backup: who is a member (and still is), and
/// the households and who is in which. Not the sync's timestamps.
pub fn fingerprint(listing: &directory::Listing) -> String {
    let mut f = String::new();
    for h in &listing.households {
        f.push_str(&format!("h {} {}\n", h.id, h.name));
        for m in &h.members {
            f.push_str(&format!(
                "m {} {} {}\n",
                m.user_id,
                h.id,
                m.left_s.is_some()
            ));
        }
    }
    for m in &listing.unassigned {
        f.push_str(&format!("m {} - {}\n", m.user_id, m.left_s.is_some()));
    }
    f
}

/// Debounces changes into backup runs.
#[derive(Debug, Default)]
pub struct Changes {
    last: Option<String>,
    pending_since: Option<tokio::time::Instant>,
}

impl Changes {
    /// Feed the current fingerprint; true when a run is due now. The first fingerprint only
    /// sets the baseline (a restart is not a change).
    pub fn observe(&mut self, fp: String, now: tokio::time::Instant, calm: Duration) -> bool {
        match &self.last {
            None => self.last = Some(fp),
            Some(l) if *l != fp => {
                self.last = Some(fp);
                self.pending_since = Some(now);
            }
            Some(_) => {}
        }
        match self.pending_since {
            Some(t) if now.duration_since(t) >= calm => {
                self.pending_since = None;
                true
            }
            _ => false,
        }
    }
}

/// What the task needs.
pub struct Watch {
    pub db: PathBuf,
    pub status_file: PathBuf,
    pub synapse: Synapse,
    /// hearth-backup.service is started through it (`None`: no systemd here, no runs).
    pub units: Option<Arc<dyn StartUnit>>,
    pub every: Duration,
    pub calm: Duration,
}

fn read_fingerprint(db: &Path) -> Result<String, String> {
    let conn = crate::storage::open_connection(db).map_err(|e| e.to_string())?;
    let listing = directory::list(&conn).map_err(|e| e.to_string())?;
    Ok(fingerprint(&listing))
}

/// The task: a look at start and every `every`.
pub async fn run(w: Watch, cancel: CancellationToken) {
    let state_file = State::file(&w.db);
    let mut changes = Changes::default();
    let mut t = tokio::time::interval(w.every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = t.tick() => {}
        }
        let status = Status::load(&w.status_file);
        let now_s = crate::clock::wall_secs_now();
        let before = State::read(&state_file);
        let (mut after, notice) = assess(&status, before, now_s);
        if let Some(body) = notice {
            match w.synapse.notify_admins(&body).await {
                Ok(n) => tracing::warn!(admins = n, "backups failing for two days: admins told"),
                Err(e) => {
                    tracing::warn!(
                        "backups failing for two days; the notice was not sent (retried): {e}"
                    );
                    after.notified_at_s = before.notified_at_s;
                }
            }
        }
        if after != before {
            if let Err(e) = after.write(&state_file) {
                tracing::warn!(file = %state_file.display(), "backup notice state: {e}");
            }
        }
        let Some(units) = &w.units else { continue };
        let db = w.db.clone();
        let fp = match tokio::task::spawn_blocking(move || read_fingerprint(&db)).await {
            Ok(Ok(fp)) => fp,
            Ok(Err(e)) => {
                tracing::warn!("backup after changes: {e}");
                continue;
            }
            Err(e) => {
                tracing::warn!("backup after changes: {e}");
                continue;
            }
        };
        if changes.observe(fp, tokio::time::Instant::now(), w.calm) && !status.targets.is_empty() {
            tracing::info!("members or households changed: a backup run starts");
            match units.start_unit(UNIT).await {
                Ok(outcome) => tracing::info!(?outcome, "backup after changes"),
                Err(e) => tracing::warn!("backup after changes: starting {UNIT}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::run::{Good, TargetStatus};

    const DAY: i64 = 86_400;

    fn status(good_at: Option<i64>, error: Option<&str>, usb_absent: bool) -> Status {
        let mut s = Status::default();
        s.targets.insert(
            "cooperative".into(),
            TargetStatus {
                repository: "rest:https://backup.coop.example/".into(),
                last_good: good_at.map(|at_s| Good {
                    run: "run-x".into(),
                    at_s,
                    bytes: 10,
                    added: 1,
                }),
                last_attempt_s: Some(0),
                error: error.map(String::from),
                absent: false,
            },
        );
        s.targets.insert(
            "usb".into(),
            TargetStatus {
                absent: usb_absent,
                ..Default::default()
            },
        );
        s
    }

    #[test]
    fn no_notice_while_a_backup_is_fresh_or_none_is_set_up() {
        let now = 100 * DAY;
        let (st, n) = assess(&status(Some(now - DAY), None, true), State::default(), now);
        assert_eq!((st, n), (State::default(), None));
        let (st, n) = assess(&Status::default(), State::default(), now);
        assert_eq!((st, n), (State::default(), None));
    }

    #[test]
    fn two_days_without_a_good_run_tell_the_admins_once_a_week() {
        let t0 = 100 * DAY;
        let s = status(
            Some(t0),
            Some("cooperative: HTTP 507: the store is full"),
            true,
        );
        // A day and 23 hours: not yet (a good run that recent is nothing to remember).
        let (st, n) = assess(&s, State::default(), t0 + 2 * DAY - 3600);
        assert_eq!((st, n), (State::default(), None));
        // Two days: the notice, with each target's reason and the last good run.
        let (st, n) = assess(&s, st, t0 + 2 * DAY);
        let n = n.expect("a notice at two days");
        assert!(n.contains("for 2 days"), "{n}");
        assert!(n.contains("HTTP 507: the store is full"), "{n}");
        assert!(n.contains("the disk was not plugged in"), "{n}");
        assert!(n.contains("Platte war nicht angeschlossen"), "{n}");
        assert!(n.contains(&utc(t0)), "{n}");
        // Not again the next minute, nor after six days; after seven, again.
        let (st, n) = assess(&s, st, t0 + 2 * DAY + 60);
        assert_eq!(n, None);
        let (st, n) = assess(&s, st, t0 + 8 * DAY);
        assert_eq!(n, None);
        let (st, n) = assess(&s, st, t0 + 9 * DAY);
        assert!(n.is_some_and(|n| n.contains("for 9 days")));
        // A good run ends it: the watch starts over.
        let ok = status(Some(t0 + 10 * DAY), None, false);
        let (st, n) = assess(&ok, st, t0 + 10 * DAY + 60);
        assert_eq!((st, n), (State::default(), None));
    }

    #[test]
    fn never_a_good_run_counts_from_when_the_watch_first_saw_it() {
        let t0 = 100 * DAY;
        let s = status(None, Some("cooperative: the key does not open it"), false);
        let (st, n) = assess(&s, State::default(), t0);
        assert_eq!((st.failing_since_s, n), (Some(t0), None));
        let (st, n) = assess(&s, st, t0 + DAY);
        assert_eq!((st.failing_since_s, n), (Some(t0), None));
        let (_, n) = assess(&s, st, t0 + 2 * DAY);
        assert!(n.is_some_and(|n| n.contains("none has succeeded yet")));
    }

    #[test]
    fn a_clock_jumped_back_sends_nothing() {
        let t0 = 100 * DAY;
        let s = status(Some(t0), Some("x"), false);
        let (st, n) = assess(&s, State::default(), t0 + 3 * DAY);
        assert!(n.is_some());
        // Back to before the last good run, then to a day after the notice.
        let (st, n) = assess(&s, st, t0 - DAY);
        assert_eq!(n, None);
        let (_, n) = assess(&s, st, t0 + 4 * DAY);
        assert_eq!(n, None);
    }

    #[test]
    fn state_round_trips_and_a_bad_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let p = State::file(&dir.path().join("hearth.db"));
        assert_eq!(State::read(&p), State::default());
        let s = State {
            failing_since_s: Some(5),
            notified_at_s: None,
        };
        s.write(&p).unwrap();
        assert_eq!(State::read(&p), s);
        std::fs::write(&p, "failing_since_s=yesterday\n").unwrap();
        assert_eq!(State::read(&p), State::default());
    }

    #[tokio::test(start_paused = true)]
    async fn changes_start_one_run_once_the_directory_is_calm() {
        let calm = Duration::from_secs(600);
        let mut c = Changes::default();
        let t = tokio::time::Instant::now();
        assert!(
            !c.observe("a".into(), t, calm),
            "the first look is the baseline"
        );
        assert!(
            !c.observe("a".into(), t + calm * 2, calm),
            "no change, no run"
        );
        assert!(!c.observe("b".into(), t + calm * 3, calm));
        // Another change within the calm period moves the run on.
        assert!(!c.observe("c".into(), t + calm * 3 + calm / 2, calm));
        assert!(!c.observe("c".into(), t + calm * 4, calm));
        assert!(c.observe("c".into(), t + calm * 4 + calm / 2, calm));
        assert!(
            !c.observe("c".into(), t + calm * 6, calm),
            "one run per change"
        );
    }

    #[test]
    fn the_fingerprint_ignores_the_sync_and_sees_who_is_where() {
        use directory::{HouseholdRow, Listing, MemberRow};
        let member = |u: &str, h: Option<&str>, left: bool, synced_at| MemberRow {
            user_id: u.into(),
            household: h.map(String::from),
            joined_s: Some(1),
            left_s: left.then_some(2),
            synced_at,
        };
        let listing = |synced_at, left| Listing {
            households: vec![HouseholdRow {
                id: "mueller".into(),
                name: "Familie Müller".into(),
                created_s: 1,
                members: vec![member("@anna:x", Some("mueller"), left, synced_at)],
            }],
            unassigned: vec![member("@ben:x", None, false, synced_at)],
        };
        assert_eq!(
            fingerprint(&listing(1, false)),
            fingerprint(&listing(99, false))
        );
        assert_ne!(
            fingerprint(&listing(1, false)),
            fingerprint(&listing(1, true))
        );
    }
}
