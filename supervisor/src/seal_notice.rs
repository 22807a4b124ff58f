//! The monthly seal notice: the access log's seal leaves the box, once a month, in a Matrix
//! server notice to each member. The seal a member gets is the chain's hash after the newest
//! entry about them (`audit::newest_about`; the whole log's head for a member no entry is about
//! yet): it seals every entry about them so far. Whoever can write `hearth.db` can rewrite the
//! chain so that `audit verify` finds it intact, but not the messages on the members' phones:
//! a log that no longer holds a seal a member kept was rewritten or cut (`audit verify --head
//! SEQ:HASH` and the access log page, which asks `GET /api/v1/audit/hash`, both say so).
//!
//! A round runs when the UTC month is later than the last round's (a box off on the 1st sends
//! when it comes up). The first start only notes the month, so a new box sends its first round
//! at the next month. A member whose notice failed (Synapse down, no admin token yet) is retried
//! at the next tick of the same month. A clock jumped back sends nothing until it passes the
//! last round's month again. The state is one small file beside the database
//! (`seal_notice.state`: the month, then the members still to notify), written by rename.

use crate::accounting::directory;
use crate::audit::{self, Head};
use crate::health::probe::Synapse;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the task looks at the month (and retries failed notices).
pub const EVERY: Duration = Duration::from_secs(3600);

/// The state file beside `db`.
pub fn state_file(db: &Path) -> PathBuf {
    db.with_file_name("seal_notice.state")
}

/// The last round's month (`YYYY-MM`) and the members it has still to notify.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    pub month: String,
    pub pending: BTreeSet<String>,
}

impl State {
    /// `None`: no file (a new box). An unreadable or malformed file is treated as absent, with
    /// a warning: the worst that follows is a round skipped, never a lost notice repeated forever.
    pub fn read(path: &Path) -> Option<State> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), "seal notice state unreadable: {e}");
                return None;
            }
        };
        let mut lines = text.lines();
        let month = lines.next().unwrap_or_default().trim().to_string();
        if !is_month(&month) {
            tracing::warn!(file = %path.display(), line = 1, "seal notice state: month: not YYYY-MM");
            return None;
        }
        let pending = lines
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        Some(State { month, pending })
    }

    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let mut text = format!("{}\n", self.month);
        for u in &self.pending {
            text.push_str(u);
            text.push('\n');
        }
        let tmp = path.with_extension("state.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

fn is_month(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[5..].iter().all(u8::is_ascii_digit)
}

/// The notice's text, in English and German (the supervisor does not know a member's language).
pub fn text(month: &str, seal: &Head, about_them: bool) -> String {
    let seal = format!("{}:{}", seal.seq, seal.hash);
    let (en, de) = if about_them {
        (
            "the chain's seal after the newest entry about you",
            "das Siegel der Kette nach dem neuesten Eintrag über Sie",
        )
    } else {
        (
            "the log's newest seal (no entry is about you yet)",
            "das neueste Siegel des Protokolls (noch kein Eintrag betrifft Sie)",
        )
    };
    format!(
        "hearth, access log {month}: {en} is\n{seal}\n\
         Keep this message. A log rewritten or cut since no longer holds this seal: the access \
         log page (/audit) warns, and `hearth-supervisor audit verify --head {seal}` says so.\n\n\
         hearth, Zugriffsprotokoll {month}: {de} ist\n{seal}\n\
         Bewahren Sie diese Nachricht auf. Ein seitdem umgeschriebenes oder gekürztes Protokoll \
         enthält dieses Siegel nicht mehr: Die Seite des Zugriffsprotokolls (/audit) warnt, und \
         `hearth-supervisor audit verify --head {seal}` sagt es."
    )
}

/// The current members (not those who left) and the seal each gets.
fn seals(db: &Path, only: Option<&BTreeSet<String>>) -> Result<Vec<(String, Head, bool)>, String> {
    let conn = crate::storage::open_connection(db).map_err(|e| e.to_string())?;
    let listing = directory::list(&conn).map_err(|e| e.to_string())?;
    let head = audit::head(&conn).map_err(|e| e.to_string())?;
    let members = listing
        .households
        .iter()
        .flat_map(|h| h.members.iter())
        .chain(listing.unassigned.iter())
        .filter(|m| m.left_s.is_none())
        .filter(|m| only.is_none_or(|o| o.contains(&m.user_id)));
    let mut out = Vec::new();
    for m in members {
        match audit::newest_about(&conn, &m.user_id).map_err(|e| e.to_string())? {
            Some(h) => out.push((m.user_id.clone(), h, true)),
            None => out.push((m.user_id.clone(), head, false)),
        }
    }
    Ok(out)
}

/// One look at `month` (the current UTC month, `YYYY-MM`): runs the round or the retries that
/// are due. Returns how many notices were sent.
pub async fn tick(
    db: &Path,
    synapse: &Synapse,
    state: &Path,
    month: &str,
) -> Result<usize, String> {
    let due = match State::read(state) {
        None => {
            State {
                month: month.to_string(),
                pending: BTreeSet::new(),
            }
            .write(state)
            .map_err(|e| format!("{}: {e}", state.display()))?;
            return Ok(0);
        }
        Some(s) if month > s.month.as_str() => None,
        Some(s) if month == s.month && !s.pending.is_empty() => Some(s.pending),
        Some(_) => return Ok(0),
    };
    let db2 = db.to_path_buf();
    let only = due.clone();
    let seals = tokio::task::spawn_blocking(move || seals(&db2, only.as_ref()))
        .await
        .map_err(|e| e.to_string())??;
    let mut pending = BTreeSet::new();
    let mut sent = 0;
    for (user, seal, about_them) in seals {
        match synapse.notify(&user, &text(month, &seal, about_them)).await {
            Ok(()) => sent += 1,
            Err(e) => {
                tracing::warn!(%user, "seal notice not sent (retried within the hour): {e}");
                pending.insert(user);
            }
        }
    }
    State {
        month: month.to_string(),
        pending,
    }
    .write(state)
    .map_err(|e| format!("{}: {e}", state.display()))?;
    if sent > 0 {
        tracing::info!(month, sent, "seal notices sent");
    }
    Ok(sent)
}

/// The task: a tick at start and every [`EVERY`].
pub async fn run(db: PathBuf, synapse: Synapse, every: Duration, cancel: CancellationToken) {
    let state = state_file(&db);
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = t.tick() => {}
        }
        let month = crate::clock::utc_now().format("%Y-%m").to_string();
        if let Err(e) = tick(&db, &synapse, &state, &month).await {
            tracing::warn!("seal notices: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_a_bad_file_is_no_state() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seal_notice.state");
        assert_eq!(State::read(&p), None);
        let s = State {
            month: "2026-12".into(),
            pending: ["@a:x".to_string(), "@b:x".to_string()].into(),
        };
        s.write(&p).unwrap();
        assert_eq!(State::read(&p), Some(s));
        std::fs::write(&p, "December\n@a:x\n").unwrap();
        assert_eq!(State::read(&p), None);
    }

    #[test]
    fn the_text_carries_the_seal_in_both_languages() {
        let head = Head {
            seq: 41,
            hash: crate::audit::Hash::GENESIS,
        };
        let t = text("2026-12", &head, true);
        let seal = format!("41:{}", "0".repeat(64));
        assert_eq!(t.matches(&seal).count(), 4, "{t}");
        assert!(t.contains("newest entry about you") && t.contains("Eintrag über Sie"));
        assert!(text("2026-12", &head, false).contains("no entry is about you yet"));
    }
}
