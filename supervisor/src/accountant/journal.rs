//! Synapse's access lines from the journal (the appliance: matrix-synapse.service writes its log
//! to stdout, journald keeps it in RAM).
//!
//! A `journalctl --unit=<unit> --output=json --follow --all` child, one JSON object per entry;
//! we read `MESSAGE`, `__CURSOR` and `__REALTIME_TIMESTAMP`. `MESSAGE` is a string, or an array
//! of byte values when it is not valid UTF-8 (read lossily), or an array of those when an entry
//! carries the field more than once (each is read); `--all` keeps journalctl from replacing
//! long messages by `null`.
//!
//! # Where it starts
//!
//! With a stored cursor, at `--cursor=<cursor>`, which shows the cursor's own entry first:
//! that entry is already counted and is skipped. We do not use `--after-cursor`: journalctl
//! seeks an unknown cursor to the nearest entry by time and skips one entry blindly, so a
//! cursor the journal no longer has (a volatile journal after a reboot, or rotated away) would
//! go unnoticed and positioned by a clock that a Pi without RTC cannot trust. With `--cursor`
//! it is noticed: when another entry comes first, or none within [`VERIFY_WAIT`], the cursor
//! is unknown, and the reader starts again from the beginning of this boot (`--boot
//! --lines=all`) and says so in the log. Lines of the previous boot after the stored cursor are
//! gone with the volatile journal; those of this boot are all read. Without a stored cursor
//! (the first start) it also starts at the boot's beginning.
//!
//! When the child exits (journald restarted, journalctl killed), it is started again from the
//! last entry read, after a back-off of 1 s doubling to 30 s.
//!
//! The journal command is configurable (`[accounting] journal_command`) so that tests run a
//! stand-in that prints JSON lines and honours `--cursor`.

use super::{realtime_ms, SharedPending};
use crate::clock::wall_ms_now;
use serde::Deserialize;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// How long the cursor's own entry may take to appear before the cursor counts as unknown.
pub const VERIFY_WAIT: Duration = Duration::from_secs(5);
/// No entry for this long while following: the reader is at the journal's end (caught up).
pub const IDLE: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One journal entry, as far as accounting reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub cursor: String,
    /// `__REALTIME_TIMESTAMP`: µs since the epoch, when journald received the entry.
    pub realtime_us: u64,
    /// `MESSAGE` (usually one; none if the entry has no message).
    pub messages: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("journal entry: {field}: {message}")]
pub struct EntryError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
struct RawEntry {
    #[serde(rename = "__CURSOR")]
    cursor: Option<String>,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime: Option<Value>,
    #[serde(rename = "MESSAGE", default)]
    message: Value,
}

/// One line of `journalctl --output=json`.
pub fn parse_entry(line: &str) -> Result<Entry, EntryError> {
    let bad = |field, message: String| EntryError { field, message };
    let raw: RawEntry = serde_json::from_str(line).map_err(|e| bad("(json)", e.to_string()))?;
    let cursor = raw
        .cursor
        .filter(|c| !c.is_empty())
        .ok_or_else(|| bad("__CURSOR", "missing".into()))?;
    let realtime_us = match raw.realtime {
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        bad(
            "__REALTIME_TIMESTAMP",
            "missing or not a number of µs".into(),
        )
    })?;
    let mut messages = Vec::new();
    message_values(&raw.message, &mut messages);
    Ok(Entry {
        cursor,
        realtime_us,
        messages,
    })
}

/// A string; an array of byte values (not UTF-8); or an array of those (a repeated field).
fn message_values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_number) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            out.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        Value::Array(items) => {
            for item in items {
                message_values(item, out);
            }
        }
        _ => {}
    }
}

/// Where the child starts reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At this entry (shown first, then skipped).
    Cursor(String),
    /// At the beginning of the current boot.
    BootStart,
}

/// The child's arguments.
pub fn args(unit: &str, start: &Start) -> Vec<String> {
    let mut a = vec![
        format!("--unit={unit}"),
        "--output=json".to_string(),
        "--follow".to_string(),
        "--all".to_string(),
        "--no-pager".to_string(),
    ];
    match start {
        Start::Cursor(c) => a.push(format!("--cursor={c}")),
        Start::BootStart => {
            a.push("--boot".to_string());
            a.push("--lines=all".to_string());
        }
    }
    a
}

/// What reads the journal.
#[derive(Debug, Clone)]
pub struct JournalSource {
    pub command: PathBuf,
    pub unit: String,
}

/// Read `unit`'s entries into `pending` until cancelled, starting after `stored_cursor`.
pub async fn run(
    source: JournalSource,
    pending: SharedPending,
    stored_cursor: Option<String>,
    token: CancellationToken,
) {
    // Nothing is delivered until the reader has read up to the journal's end: a month does not
    // close on a journal that cannot be read.
    pending.lock().caught_up_ms.get_or_insert(i64::MIN);
    let mut start = match stored_cursor {
        Some(c) => Start::Cursor(c),
        None => {
            tracing::info!(unit = %source.unit, "no journal cursor stored: reading the access log from the start of this boot");
            Start::BootStart
        }
    };
    let mut backoff = BACKOFF_MIN;
    loop {
        let outcome = follow(&source, &pending, &start, &token).await;
        if token.is_cancelled() {
            return;
        }
        let wait = match outcome {
            Outcome::UnknownCursor(why) => {
                tracing::warn!(unit = %source.unit, "the stored journal cursor is not in the journal ({why}; a volatile journal after a reboot?): reading the access log from the start of this boot");
                start = Start::BootStart;
                Duration::ZERO
            }
            Outcome::Ended { last, read_any } => {
                if let Some(c) = last {
                    start = Start::Cursor(c);
                }
                if read_any {
                    backoff = BACKOFF_MIN;
                }
                let w = backoff;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                w
            }
        };
        tokio::select! {
            _ = token.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

enum Outcome {
    UnknownCursor(String),
    /// The child ended (or could not start); `last` is the last entry read.
    Ended {
        last: Option<String>,
        read_any: bool,
    },
}

async fn follow(
    source: &JournalSource,
    pending: &SharedPending,
    start: &Start,
    token: &CancellationToken,
) -> Outcome {
    let mut child = match Command::new(&source.command)
        .args(args(&source.unit, start))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(command = %source.command.display(), "cannot start the journal reader: {e}");
            return Outcome::Ended {
                last: None,
                read_any: false,
            };
        }
    };
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Outcome::Ended {
            last: None,
            read_any: false,
        };
    };
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let mut err_open = true;
    // The cursor whose own entry must come first.
    let mut verify = match start {
        Start::Cursor(c) => Some(c.clone()),
        Start::BootStart => None,
    };
    let mut last: Option<String> = None;
    let mut read_any = false;
    let mut bad_entries = 0u64;
    let opened = tokio::time::Instant::now();
    let mut last_line = opened;
    let outcome = loop {
        let quiet_until = if verify.is_some() {
            opened + VERIFY_WAIT
        } else {
            last_line + IDLE
        };
        tokio::select! {
            _ = token.cancelled() => break Outcome::Ended { last, read_any },
            line = out.next_line() => {
                let line = match line {
                    Ok(Some(l)) => l,
                    Ok(None) => break Outcome::Ended { last, read_any },
                    Err(e) => {
                        tracing::warn!("reading the journal: {e}");
                        break Outcome::Ended { last, read_any };
                    }
                };
                last_line = tokio::time::Instant::now();
                let entry = match parse_entry(&line) {
                    Ok(e) => e,
                    Err(e) => {
                        bad_entries += 1;
                        if bad_entries == 1 {
                            tracing::warn!("skipping a journal line: {e}");
                        }
                        continue;
                    }
                };
                if let Some(c) = verify.take() {
                    if entry.cursor == c {
                        // Already counted in the batch that stored this cursor.
                        continue;
                    }
                    break Outcome::UnknownCursor("another entry came first".into());
                }
                read_any = true;
                let mut p = pending.lock();
                for m in &entry.messages {
                    // Skips are counted in the aggregator (for /metrics), never fatal.
                    let _ = p.weights.ingest_journal(m, entry.realtime_us);
                }
                p.cursor = Some((source.unit.clone(), entry.cursor.clone()));
                p.caught_up_ms = Some(realtime_ms(entry.realtime_us));
                drop(p);
                last = Some(entry.cursor);
            }
            line = err.next_line(), if err_open => match line {
                Ok(Some(l)) => tracing::warn!(target: "journalctl", "{l}"),
                _ => err_open = false,
            },
            _ = tokio::time::sleep_until(quiet_until) => {
                if verify.is_some() {
                    break Outcome::UnknownCursor(format!("its entry did not appear within {} s", VERIFY_WAIT.as_secs()));
                }
                // At the end of the journal: everything up to now has been read.
                pending.lock().caught_up_ms = Some(wall_ms_now());
                last_line = tokio::time::Instant::now();
            }
        }
    };
    let _ = child.start_kill();
    let status = child.wait().await;
    if !token.is_cancelled() {
        if let Outcome::Ended { .. } = outcome {
            tracing::warn!(status = ?status.ok(), "the journal reader ended; starting it again");
        }
    }
    if bad_entries > 1 {
        tracing::warn!(count = bad_entries, "journal lines skipped");
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_with_string_byte_array_and_repeated_messages() {
        let e = parse_entry(
            r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1795687200200000","MESSAGE":"hello","_PID":"12"}"#,
        )
        .unwrap();
        assert_eq!(e.cursor, "s=1;i=2");
        assert_eq!(e.realtime_us, 1_795_687_200_200_000);
        assert_eq!(e.messages, vec!["hello"]);

        // "hé\xff" as bytes: not UTF-8, so journalctl prints an array.
        let e = parse_entry(
            r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,195,169,255]}"#,
        )
        .unwrap();
        assert_eq!(e.messages, vec!["hé\u{fffd}"]);

        let e = parse_entry(r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":["a",[98]]}"#)
            .unwrap();
        assert_eq!(e.messages, vec!["a", "b"]);

        // Too long without --all: null. The entry still moves the cursor.
        let e =
            parse_entry(r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":null}"#).unwrap();
        assert!(e.messages.is_empty());
    }

    #[test]
    fn malformed_entries_name_the_field() {
        for (line, field) in [
            (r#"{"__REALTIME_TIMESTAMP":"1","MESSAGE":"x"}"#, "__CURSOR"),
            (r#"{"__CURSOR":"c","MESSAGE":"x"}"#, "__REALTIME_TIMESTAMP"),
            (
                r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"soon"}"#,
                "__REALTIME_TIMESTAMP",
            ),
            ("-- No entries --", "(json)"),
        ] {
            assert_eq!(parse_entry(line).unwrap_err().field, field, "{line}");
        }
    }

    #[test]
    fn arguments_start_at_the_cursor_or_the_boot() {
        let a = args("matrix-synapse.service", &Start::Cursor("s=1".into()));
        assert_eq!(
            a,
            [
                "--unit=matrix-synapse.service",
                "--output=json",
                "--follow",
                "--all",
                "--no-pager",
                "--cursor=s=1"
            ]
        );
        let b = args("matrix-synapse.service", &Start::BootStart);
        assert!(b.ends_with(&["--boot".to_string(), "--lines=all".to_string()]));
    }
}

/// The reader against a stand-in `journalctl` (a shell script that prints a file of JSON
/// entries from `--cursor`, or all of them, then waits like `--follow`), with the daemon's own
/// batch path into SQLite between runs.
#[cfg(test)]
mod restart_tests {
    use super::*;
    use crate::accounting::accesslog::MinuteWeights;
    use crate::meter::buckets::Minutes;
    use crate::storage::Storage;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    const UNIT: &str = "matrix-synapse.service";
    /// 2026-11-26T10:00:00Z in µs.
    const T0_US: u64 = 1_795_687_200_000_000;

    fn line(n: u32) -> String {
        // Every line its own weight (n ms of user time) and its own second.
        format!(
            "2026-11-26 10:{:02}:{:02},000 - synapse.access.http.8008 - 123 - INFO - GET-{n} - 127.0.0.1 - 8008 - {{@u{}:x.org}} Processed request: 0.100sec/0.001sec ru=(0.{n:03}sec, 0.000sec) db=(0.000sec/0.000sec/0) 1B 200 \"GET /x HTTP/1.1\" \"c\" [0 dbevts]",
            n / 60,
            n % 60,
            n % 3
        )
    }

    fn entry(n: u32) -> String {
        serde_json::json!({
            "__CURSOR": format!("s=ab;i={n:x};b=boot;m=1;t=2;x=3"),
            "__REALTIME_TIMESTAMP": (T0_US + u64::from(n) * 1_000_000).to_string(),
            "MESSAGE": line(n),
            "_SYSTEMD_UNIT": UNIT,
        })
        .to_string()
    }

    fn cursor(n: u32) -> String {
        format!("s=ab;i={n:x};b=boot;m=1;t=2;x=3")
    }

    /// The journal holds entries 1..=n.
    fn journal(dir: &Path, n: u32) {
        let text: String = (1..=n).map(|i| entry(i) + "\n").collect();
        std::fs::write(dir.join("journal.jsonl"), text).unwrap();
    }

    fn fake_journalctl(dir: &Path) -> PathBuf {
        let script = dir.join("journalctl");
        let file = dir.join("journal.jsonl");
        let log = dir.join("args.log");
        std::fs::write(
            &script,
            format!(
                r#"#!/bin/sh
# Stand-in for journalctl --output=json --follow: from --cursor's entry if it is in the file,
# else (an unknown cursor, or --boot) every entry; then wait as --follow does.
echo "$*" >> '{log}'
cursor=""
for a in "$@"; do case "$a" in --cursor=*) cursor="${{a#--cursor=}}";; esac; done
if [ -n "$cursor" ] && grep -qF "\"__CURSOR\":\"$cursor\"" '{file}'; then
  awk -v c="\"__CURSOR\":\"$cursor\"" 'found || index($0, c) {{ found = 1; print }}' '{file}'
else
  cat '{file}'
fi
exec sleep 600
"#,
                log = log.display(),
                file = file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    /// A reader task, as the daemon spawns it at start-up (cursor from the database).
    struct Reader {
        pending: SharedPending,
        token: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(script: &Path, db: &Storage) -> Reader {
        let pending = SharedPending::new();
        let token = CancellationToken::new();
        let task = tokio::spawn(run(
            JournalSource {
                command: script.to_path_buf(),
                unit: UNIT.into(),
            },
            pending.clone(),
            db.journal_cursor(UNIT).unwrap(),
            token.clone(),
        ));
        Reader {
            pending,
            token,
            task,
        }
    }

    impl Reader {
        async fn wait_for(&self, n: u32) {
            let want = Some((UNIT.to_string(), cursor(n)));
            for _ in 0..200 {
                if self.pending.lock().cursor == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("the reader did not reach entry {n}");
        }

        /// The meter's flush: everything pending, one transaction with the cursor.
        fn flush(&self, db: &mut Storage) {
            let (batch, _) = self.pending.take(i64::MAX);
            db.write_batch_with(&Minutes::default(), &[], &batch)
                .unwrap();
        }

        /// kill -9: the process and its memory are gone, nothing more is written.
        async fn kill(self) {
            self.token.cancel();
            let _ = self.task.await;
        }
    }

    /// `(minute_s, R_i in ms)` per minute.
    type Totals = Vec<(i64, u64)>;

    /// Stored weights over the 10:00–10:10 window, and those of `lines` counted once each.
    fn stored_and_expected(db: &Storage, lines: std::ops::RangeInclusive<u32>) -> (Totals, Totals) {
        let start = (T0_US / 1_000_000) as i64;
        let stored = db
            .accounting_inputs(start, start + 600)
            .unwrap()
            .weights
            .iter()
            .map(|w| (w.minute_s, w.total_ms))
            .collect();
        let mut want = MinuteWeights::new();
        for n in lines {
            want.ingest_line(&line(n)).unwrap();
        }
        let want = want
            .drain_all()
            .iter()
            .map(|w| (w.minute_s, w.total_ms))
            .collect();
        (stored, want)
    }

    #[tokio::test]
    async fn a_crash_between_batches_neither_loses_nor_double_counts_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake_journalctl(dir.path());
        let mut db = Storage::open(&dir.path().join("hearth.db")).unwrap();

        // First run: 80 lines, one batch written, then 40 more read but not flushed; kill -9.
        journal(dir.path(), 80);
        let r = start(&script, &db);
        r.wait_for(80).await;
        r.flush(&mut db);
        assert_eq!(db.journal_cursor(UNIT).unwrap(), Some(cursor(80)));
        r.kill().await;
        journal(dir.path(), 120);
        let r = start(&script, &db);
        r.wait_for(120).await;
        r.kill().await; // lines 81..=120 were only in memory

        // Second run: resumes after line 80 (its own entry first, skipped), re-reads 81..=120.
        journal(dir.path(), 150);
        let r = start(&script, &db);
        r.wait_for(150).await;
        r.flush(&mut db);
        r.kill().await;
        let (stored, want) = stored_and_expected(&db, 1..=150);
        assert_eq!(stored, want);
        let args = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
        let runs: Vec<&str> = args.lines().collect();
        assert!(runs[0].ends_with("--boot --lines=all"), "{args}");
        assert!(
            runs[1].ends_with(&format!("--cursor={}", cursor(80))),
            "{args}"
        );
        assert!(
            runs[2].ends_with(&format!("--cursor={}", cursor(80))),
            "{args}"
        );
    }

    #[tokio::test]
    async fn an_unreadable_journal_holds_the_monthly_close_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Storage::open(&dir.path().join("hearth.db")).unwrap();
        let r = start(&dir.path().join("no-journalctl"), &db);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, through) = r.pending.take(i64::MAX);
        assert_eq!(through, i64::MIN, "nothing counts as delivered");
        r.kill().await;
    }

    #[tokio::test]
    async fn an_unknown_cursor_reads_the_boot_from_its_start() {
        let dir = tempfile::tempdir().unwrap();
        let script = fake_journalctl(dir.path());
        let mut db = Storage::open(&dir.path().join("hearth.db")).unwrap();
        // A cursor of the previous boot, gone with the volatile journal.
        db.write_batch_with(
            &Minutes::default(),
            &[],
            &crate::storage::AcctBatch {
                cursor: Some((UNIT.into(), "s=old;i=99;b=previous".into())),
                ..Default::default()
            },
        )
        .unwrap();
        journal(dir.path(), 30);
        let r = start(&script, &db);
        r.wait_for(30).await;
        r.flush(&mut db);
        r.kill().await;
        let (stored, want) = stored_and_expected(&db, 1..=30);
        assert_eq!(stored, want, "every line of this boot, once");
        let args = std::fs::read_to_string(dir.path().join("args.log")).unwrap();
        let runs: Vec<&str> = args.lines().collect();
        assert!(
            runs[0].ends_with("--cursor=s=old;i=99;b=previous"),
            "{args}"
        );
        assert!(runs[1].ends_with("--boot --lines=all"), "{args}");
    }
}
