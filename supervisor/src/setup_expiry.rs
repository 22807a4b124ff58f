//! The setup code expires: once it has been offered for [`OFFERED_MAX`] of the box running
//! without being used, the supervisor retires it (`setup_code` → `setup_code.expired`), the page
//! says so and how to get a new one (restart the box: `hearth-setup-code.service` makes a new
//! code at boot, on the card and the console).
//!
//! Counted in running time, never from the wall clock: a Pi has no clock of its own, and its
//! first NTP sync can jump months, which would expire a code the moment it was written (or
//! never). The time offered is added up from a monotonic clock and kept beside the code, in
//! `setup_code.offered` (`<code's hash> <seconds>`), written every [`SAVE_EVERY`] only while a
//! code waits; a restart loses at most that much of the count. A file that does not parse, or
//! that belongs to another code, starts the count again.

use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long an unused code is offered (running time).
pub const OFFERED_MAX: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often the count is saved while a code waits.
pub const SAVE_EVERY: Duration = Duration::from_secs(600);

/// Where the time offered so far is kept.
pub fn offered_file(code_file: &Path) -> PathBuf {
    with_suffix(code_file, ".offered")
}

/// What an expired code is renamed to; root's unit makes a new code at boot when it exists.
pub fn expired_file(code_file: &Path) -> PathBuf {
    with_suffix(code_file, ".expired")
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether the code on the page has expired (and no new one has been made since).
pub fn expired(code_file: &Path) -> bool {
    let code = super::http::setup::stored_code(code_file);
    code.is_none() && expired_file(code_file).exists()
}

/// The code's identity in the count file (not the code: the file is not secret).
fn code_id(code: &str) -> String {
    let d = Sha256::digest(code.as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The time offered so far for the code with `id`, from the count file's text.
fn offered_so_far(text: &str, id: &str) -> Duration {
    let mut words = text.split_whitespace();
    match (
        words.next(),
        words.next().map(str::parse::<u64>),
        words.next(),
    ) {
        (Some(w), Some(Ok(secs)), None) if w == id => Duration::from_secs(secs),
        _ => Duration::ZERO,
    }
}

/// What a tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// No code waits (set up, or already expired): nothing counted, nothing written.
    NoCode,
    /// The code waits; offered this long so far.
    Offered(Duration),
    /// The code had been offered `max` and is retired now.
    Expired,
}

/// Adds `add` of running time to the waiting code's count, and retires the code once the count
/// reaches `max`. Call it with the setup lock held (a setup in progress keeps its code).
pub fn tick(code_file: &Path, add: Duration, max: Duration) -> io::Result<Tick> {
    let Some(code) = super::http::setup::stored_code(code_file) else {
        return Ok(Tick::NoCode);
    };
    let id = code_id(&code);
    let count_file = offered_file(code_file);
    let before = match std::fs::read_to_string(&count_file) {
        Ok(text) => offered_so_far(&text, &id),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Duration::ZERO,
        Err(e) => {
            tracing::warn!(file = %count_file.display(), "setup code's count unreadable, counting again: {e}");
            Duration::ZERO
        }
    };
    let now = before + add;
    if now >= max {
        std::fs::rename(code_file, expired_file(code_file))?;
        let _ = std::fs::remove_file(&count_file);
        tracing::warn!(
            days = max.as_secs() / 86_400,
            "the setup code was offered unused for its whole time and has expired; restart the box for a new one"
        );
        return Ok(Tick::Expired);
    }
    write_replace(&count_file, format!("{id} {}\n", now.as_secs()).as_bytes())?;
    Ok(Tick::Offered(now))
}

/// A small file replaced whole (temporary name, rename): a power cut leaves old or new.
fn write_replace(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = with_suffix(path, ".new");
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// The daemon's task: every `every` of monotonic time, the time since the last tick is added.
pub async fn run(code_file: PathBuf, every: Duration, max: Duration, stop: CancellationToken) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = interval.tick() => {}
        }
        let now = tokio::time::Instant::now();
        // A suspended process (SIGSTOP, a debugger) does not count double: at most one period.
        let add = (now - last).min(every * 2);
        last = now;
        let _one_at_a_time = super::http::setup::lock().await;
        let file = code_file.clone();
        match tokio::task::spawn_blocking(move || tick(&file, add, max)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(file = %code_file.display(), "setup code's expiry: {e}")
            }
            Err(e) => tracing::error!("setup code's expiry task: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn with_code(dir: &Path, code: &str) -> PathBuf {
        let f = dir.join("setup_code");
        std::fs::write(&f, format!("{code}\n")).unwrap();
        f
    }

    #[test]
    fn counts_running_time_and_retires_the_code_after_max() {
        let dir = tempfile::tempdir().unwrap();
        let f = with_code(dir.path(), "ABCD-EFGH-JKLM");
        assert_eq!(tick(&f, 3 * DAY, 7 * DAY).unwrap(), Tick::Offered(3 * DAY));
        assert_eq!(tick(&f, 3 * DAY, 7 * DAY).unwrap(), Tick::Offered(6 * DAY));
        assert!(!expired(&f));
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::Expired);
        assert!(!f.exists());
        assert!(expired(&f));
        assert_eq!(
            std::fs::read_to_string(expired_file(&f)).unwrap(),
            "ABCD-EFGH-JKLM\n"
        );
        assert!(!offered_file(&f).exists());
        // Retired: nothing more is counted or written.
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::NoCode);
        assert!(!offered_file(&f).exists());
    }

    #[test]
    fn the_count_survives_a_restart_and_belongs_to_one_code() {
        let dir = tempfile::tempdir().unwrap();
        let f = with_code(dir.path(), "ABCD-EFGH-JKLM");
        tick(&f, 5 * DAY, 7 * DAY).unwrap();
        // A restart: the count is read back from the file.
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::Offered(6 * DAY));
        // Root made a new code (the old one expired): its count starts at zero.
        with_code(dir.path(), "NPQR-STUV-WXYZ");
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::Offered(DAY));
    }

    #[test]
    fn a_damaged_count_starts_again_and_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let f = with_code(dir.path(), "ABCD-EFGH-JKLM");
        for junk in ["", "garbage", "abc 12 34", "\u{0}\u{1}"] {
            std::fs::write(offered_file(&f), junk).unwrap();
            assert_eq!(
                tick(&f, DAY, 7 * DAY).unwrap(),
                Tick::Offered(DAY),
                "{junk:?}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(offered_file(&f)).unwrap(),
            format!("{} 86400\n", code_id("ABCDEFGHJKLM"))
        );
    }

    #[test]
    fn no_code_no_count() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("setup_code");
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::NoCode);
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(tick(&f, DAY, 7 * DAY).unwrap(), Tick::NoCode);
        assert!(!offered_file(&f).exists());
        assert!(!expired(&f));
    }

    /// The wall clock plays no part: the task adds tokio's monotonic time only. A paused tokio
    /// clock advanced by a week of ticks expires the code; nothing else does.
    #[tokio::test(start_paused = true)]
    async fn the_task_counts_monotonic_time() {
        let dir = tempfile::tempdir().unwrap();
        let f = with_code(dir.path(), "ABCD-EFGH-JKLM");
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            f.clone(),
            Duration::from_secs(600),
            Duration::from_secs(3600),
            stop.clone(),
        ));
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(600)).await;
            // Let the blocking tick finish.
            for _ in 0..50 {
                tokio::task::yield_now().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        assert!(f.exists(), "expired before its hour");
        tokio::time::sleep(Duration::from_secs(1300)).await;
        for _ in 0..200 {
            if expired(&f) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(expired(&f), "not expired after more than its hour");
        stop.cancel();
        task.await.unwrap();
    }
}
