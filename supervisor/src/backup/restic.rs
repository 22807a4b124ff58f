//! restic, as a child process: the one place that knows its command line, its environment, its
//! JSON and its exit codes (restic ≥ 0.17: `--stdin-from-command`, exit 12 for a wrong key).
//!
//! Nothing restic does touches the SD card beyond what it reads: `--no-cache`, and `TMPDIR`
//! (where restic stages each pack before it leaves) is the caller's, a tmpfs on the appliance.
//! A target that fills up is stopped at once: restic retries a REST server's `507` for many
//! minutes, so its error output is read as it comes and the child is ended on the first sign.

use serde::Deserialize;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A repository and how to open it.
#[derive(Debug, Clone)]
pub struct Repo {
    /// What restic calls the repository: a folder, or `rest:https://…/`.
    pub location: String,
    /// The file holding the key (restic's "password").
    pub key_file: PathBuf,
    /// `user:password` for a REST server, when it asks for one.
    pub credentials_file: Option<PathBuf>,
    /// KiB/s toward the repository (0: no limit).
    pub limit_upload_kib: u32,
    /// A CA certificate (PEM) a `rest:https` server's certificate is checked against.
    pub ca_file: Option<PathBuf>,
}

/// Why restic failed, in words a family can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResticError {
    #[error("this recovery key does not open the backup at {0}")]
    WrongKey(String),
    #[error("there is no backup at {0}")]
    NoRepository(String),
    #[error("the backup at {0} is in use by another backup")]
    Locked(String),
    #[error("the backup target {0} is full")]
    Full(String),
    #[error("the backup target {0} refused to delete anything (it keeps every backup)")]
    Refused(String),
    #[error("restic did not finish within {1} s at {0}")]
    Timeout(String, u64),
    #[error("cannot run restic ({0}): {1}")]
    Spawn(String, String),
    #[error("restic failed at {0}: {1}")]
    Failed(String, String),
}

/// The last line of `restic backup --json`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Summary {
    pub snapshot_id: String,
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_duration: f64,
}

/// One snapshot as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Snapshot {
    pub id: String,
    pub time: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

/// What one call of restic gave back.
#[derive(Debug)]
pub struct Output {
    pub stdout: Vec<u8>,
}

/// The restic program and the environment every call gets.
#[derive(Debug, Clone)]
pub struct Restic {
    pub program: PathBuf,
    /// Where restic stages packs (a tmpfs on the appliance).
    pub tmp_dir: PathBuf,
    /// The longest one call may take.
    pub timeout: Duration,
}

/// Lines of restic's error output that mean the target is full (a REST server's 507, a disk's
/// ENOSPC): restic would retry the first for many minutes.
fn says_full(line: &str) -> bool {
    line.contains("(507)")
        || line.contains("Insufficient Storage")
        || line.contains("no space left on device")
}

impl Restic {
    fn command(&self, repo: &Repo, args: &[&str]) -> Result<Command, ResticError> {
        let mut c = Command::new(&self.program);
        c.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.tmp_dir)
            .env("TMPDIR", &self.tmp_dir)
            .env("RESTIC_REPOSITORY", &repo.location)
            .env("RESTIC_PASSWORD_FILE", &repo.key_file)
            .env("RESTIC_PROGRESS_FPS", "0.016")
            .arg("--no-cache")
            .arg("--quiet");
        if let Some(ca) = &repo.ca_file {
            c.arg("--cacert").arg(ca);
        }
        if repo.limit_upload_kib > 0 {
            c.arg("--limit-upload")
                .arg(repo.limit_upload_kib.to_string());
        }
        if let Some(f) = &repo.credentials_file {
            let text = std::fs::read_to_string(f).map_err(|e| {
                ResticError::Failed(repo.location.clone(), format!("{}: {e}", f.display()))
            })?;
            let (user, password) = text.trim().split_once(':').ok_or_else(|| {
                ResticError::Failed(
                    repo.location.clone(),
                    format!("{}: line 1: expected user:password", f.display()),
                )
            })?;
            c.env("RESTIC_REST_USERNAME", user)
                .env("RESTIC_REST_PASSWORD", password);
        }
        c.args(args);
        Ok(c)
    }

    /// Run restic with `args` on `repo`; stdin from `input` when given.
    pub fn run(
        &self,
        repo: &Repo,
        args: &[&str],
        input: Option<Box<dyn Read + Send>>,
    ) -> Result<Output, ResticError> {
        let at = repo.location.clone();
        let mut cmd = self.command(repo, args)?;
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| ResticError::Spawn(self.program.display().to_string(), e.to_string()))?;
        let feeder = match (input, child.stdin.take()) {
            (Some(mut r), Some(mut w)) => Some(std::thread::spawn(move || {
                let _ = std::io::copy(&mut r, &mut w);
            })),
            _ => None,
        };
        let mut stdout = child.stdout.take();
        let reader = std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(s) = stdout.as_mut() {
                let _ = s.read_to_end(&mut out);
            }
            out
        });
        // Error output, line by line: a full target ends the child at once.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let stderr = child.stderr.take();
        let errs = std::thread::spawn(move || {
            if let Some(s) = stderr {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        });
        let t0 = Instant::now();
        let mut lines: Vec<String> = Vec::new();
        let mut full = false;
        let mut timed_out = false;
        let status = loop {
            while let Ok(line) = rx.try_recv() {
                if says_full(&line) {
                    full = true;
                }
                lines.push(line);
            }
            if full || t0.elapsed() > self.timeout {
                timed_out = !full;
                // SIGTERM lets restic remove its lock; a second chance is SIGKILL.
                let _ = rustix::process::kill_process(
                    rustix::process::Pid::from_child(&child),
                    rustix::process::Signal::TERM,
                );
                let deadline = Instant::now() + Duration::from_secs(10);
                let status = loop {
                    match child.try_wait() {
                        Ok(Some(s)) => break Some(s),
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(50))
                        }
                        _ => {
                            let _ = child.kill();
                            break child.wait().ok();
                        }
                    }
                };
                break status;
            }
            match child.try_wait() {
                Ok(Some(s)) => break Some(s),
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break None,
            }
        };
        let _ = errs.join();
        lines.extend(rx.try_iter());
        if let Some(f) = feeder {
            let _ = f.join();
        }
        let stdout = reader.join().unwrap_or_default();
        if full {
            return Err(ResticError::Full(at));
        }
        if timed_out {
            return Err(ResticError::Timeout(at, self.timeout.as_secs()));
        }
        let code = status.and_then(|s| s.code());
        match code {
            Some(0) => Ok(Output { stdout }),
            Some(10) => Err(ResticError::NoRepository(at)),
            Some(11) => Err(ResticError::Locked(at)),
            Some(12) => Err(ResticError::WrongKey(at)),
            _ => {
                if lines.iter().any(|l| l.contains("(403)")) {
                    return Err(ResticError::Refused(at));
                }
                if lines.iter().any(|l| says_full(l)) {
                    return Err(ResticError::Full(at));
                }
                Err(ResticError::Failed(at, failure(&lines, code)))
            }
        }
    }

    /// Whether `repo` exists and `repo.key_file` opens it.
    pub fn opens(&self, repo: &Repo) -> Result<(), ResticError> {
        self.run(repo, &["cat", "config"], None).map(|_| ())
    }

    /// Make the repository with `repo.key_file` as its key.
    pub fn init(&self, repo: &Repo) -> Result<(), ResticError> {
        self.run(repo, &["init"], None).map(|_| ())
    }

    /// Remove the locks a killed run left (the caller holds the one backup lock, so no restic
    /// of ours is running).
    pub fn unlock(&self, repo: &Repo) -> Result<(), ResticError> {
        self.run(repo, &["unlock"], None).map(|_| ())
    }

    /// `restic check`: the repository's structure is sound.
    pub fn check(&self, repo: &Repo) -> Result<(), ResticError> {
        self.run(repo, &["check"], None).map(|_| ())
    }

    /// A snapshot of `command`'s standard output, saved as `filename` (no snapshot when the
    /// command fails).
    pub fn backup_command(
        &self,
        repo: &Repo,
        tags: &[String],
        filename: &str,
        command: &[String],
    ) -> Result<Summary, ResticError> {
        let tag = tags.join(",");
        let mut args = stdin_backup_args(&tag, "--stdin-from-command", filename);
        args.push("--");
        args.extend(command.iter().map(String::as_str));
        let out = self.run(repo, &args, None)?;
        summary(&repo.location, &out.stdout)
    }

    /// A snapshot of `bytes`, saved as `filename` (the manifest).
    pub fn backup_bytes(
        &self,
        repo: &Repo,
        tags: &[String],
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Summary, ResticError> {
        let tag = tags.join(",");
        let args = stdin_backup_args(&tag, "--stdin", filename);
        let out = self.run(repo, &args, Some(Box::new(std::io::Cursor::new(bytes))))?;
        summary(&repo.location, &out.stdout)
    }

    /// A snapshot of `paths` (folders and files), without what matches `excludes`.
    pub fn backup_paths(
        &self,
        repo: &Repo,
        tags: &[String],
        paths: &[PathBuf],
        excludes: &[String],
    ) -> Result<Summary, ResticError> {
        let tag = tags.join(",");
        let mut args: Vec<String> = vec![
            "backup".into(),
            "--json".into(),
            "--host".into(),
            "hearth".into(),
            "--tag".into(),
            tag,
        ];
        for e in excludes {
            args.push("--exclude".into());
            args.push(e.clone());
        }
        args.push("--".into());
        args.extend(paths.iter().map(|p| p.display().to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(repo, &refs, None)?;
        summary(&repo.location, &out.stdout)
    }

    /// Every snapshot with `tag`.
    pub fn snapshots(&self, repo: &Repo, tag: &str) -> Result<Vec<Snapshot>, ResticError> {
        let out = self.run(repo, &["snapshots", "--json", "--tag", tag], None)?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| ResticError::Failed(repo.location.clone(), format!("snapshots: {e}")))
    }

    /// The file `path` of snapshot `id`, whole, into memory (the manifest).
    pub fn dump_to_vec(&self, repo: &Repo, id: &str, path: &str) -> Result<Vec<u8>, ResticError> {
        Ok(self.run(repo, &["dump", id, path], None)?.stdout)
    }

    /// The file `path` of snapshot `id` as a stream into `sink`'s standard input (a database
    /// restore), never a copy on the card. `sink`'s failure is restic's failure too.
    pub fn dump_into(
        &self,
        repo: &Repo,
        id: &str,
        path: &str,
        sink: &mut Command,
    ) -> Result<(), ResticError> {
        let at = repo.location.clone();
        let mut dump = self.command(repo, &["dump", id, path])?;
        dump.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut d = dump
            .spawn()
            .map_err(|e| ResticError::Spawn(self.program.display().to_string(), e.to_string()))?;
        let out = d.stdout.take().map(Stdio::from).unwrap_or_else(Stdio::null);
        let sink_out = sink
            .stdin(out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let mut derr = String::new();
        if let Some(mut e) = d.stderr.take() {
            let _ = e.read_to_string(&mut derr);
        }
        let dstatus = d.wait().ok().and_then(|s| s.code());
        match dstatus {
            Some(0) => {}
            Some(12) => return Err(ResticError::WrongKey(at)),
            Some(10) => return Err(ResticError::NoRepository(at)),
            _ => {
                return Err(ResticError::Failed(
                    at,
                    format!("dump {path}: {}", last_line(&derr)),
                ))
            }
        }
        match sink_out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(ResticError::Failed(
                at,
                format!(
                    "restoring {path}: {}",
                    last_line(&String::from_utf8_lossy(&o.stderr))
                ),
            )),
            Err(e) => Err(ResticError::Failed(at, format!("restoring {path}: {e}"))),
        }
    }

    /// Files of snapshot `id` into `target` (their paths below it as in the snapshot).
    pub fn restore(&self, repo: &Repo, id: &str, target: &Path) -> Result<(), ResticError> {
        let t = target.display().to_string();
        self.run(repo, &["restore", id, "--target", &t], None)
            .map(|_| ())
    }
}

/// One line for restic's failure: its last message (the text of a `--json` error object), and
/// what a dump command said on its way out (`subprocess …`), which is usually the cause.
fn failure(lines: &[String], code: Option<i32>) -> String {
    let text = |l: &str| -> String {
        serde_json::from_str::<serde_json::Value>(l)
            .ok()
            .and_then(|v| v.get("message")?.as_str().map(String::from))
            .unwrap_or_else(|| l.to_string())
    };
    let last = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| {
            text(l.trim())
                .trim()
                .trim_start_matches("Fatal: ")
                .to_string()
        })
        .unwrap_or_else(|| match code {
            Some(c) => format!("restic exited with status {c}"),
            None => "restic was ended by a signal".into(),
        });
    // A dump command's own words, or the first file restic could not restore ("There were 3
    // errors" alone says nothing).
    match lines
        .iter()
        .find(|l| l.starts_with("subprocess ") || l.starts_with("ignoring error for "))
    {
        Some(cause) => format!("{last} ({})", cause.trim()),
        None => last,
    }
}

/// `restic backup` of one stream (`--stdin` or `--stdin-from-command`) saved as `filename`.
fn stdin_backup_args<'a>(tag: &'a str, source: &'a str, filename: &'a str) -> Vec<&'a str> {
    vec![
        "backup",
        "--json",
        "--host",
        "hearth",
        "--tag",
        tag,
        source,
        "--stdin-filename",
        filename,
    ]
}

fn last_line(s: &str) -> String {
    s.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message")
        .trim()
        .to_string()
}

/// The summary line among `restic backup --json`'s output lines.
fn summary(at: &str, stdout: &[u8]) -> Result<Summary, ResticError> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.contains("\"message_type\":\"summary\""))
        .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
        .next_back()
        .ok_or_else(|| ResticError::Failed(at.into(), "no summary from restic backup".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_is_found_among_the_status_lines() {
        let out = br#"{"message_type":"status","percent_done":0.5}
{"message_type":"summary","files_new":1,"data_added":120,"total_bytes_processed":4096,"total_duration":0.25,"snapshot_id":"4a5b"}
"#;
        let s = summary("x", out).unwrap();
        assert_eq!(s.snapshot_id, "4a5b");
        assert_eq!((s.data_added, s.total_bytes_processed), (120, 4096));
        assert!(summary("x", b"{\"message_type\":\"status\"}\n").is_err());
    }

    #[test]
    fn a_failure_is_one_line_with_the_dump_commands_own_words() {
        let lines = [
            "no parent snapshot found, will read all files".to_string(),
            "subprocess setpriv: setpriv: setresuid failed: Operation not permitted".to_string(),
            r#"{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: failed to save /synapse.pgdump: Fatal: command failed: exit status 127"}"#.to_string(),
        ];
        assert_eq!(
            failure(&lines, Some(1)),
            "unable to save snapshot: failed to save /synapse.pgdump: Fatal: command failed: exit status 127 \
             (subprocess setpriv: setpriv: setresuid failed: Operation not permitted)"
        );
        assert_eq!(failure(&[], Some(3)), "restic exited with status 3");
    }

    #[test]
    fn a_full_target_is_recognised_in_restics_words() {
        assert!(says_full(
            "Save(<data/ab12>) returned error, retrying after 1m20s: unexpected HTTP response (507): 507 Insufficient Storage"
        ));
        assert!(says_full(
            "Fatal: unable to save snapshot: write /media/x/data/e2/1-tmp: no space left on device"
        ));
        assert!(!says_full(
            "repository 1234 opened (version 2, compression level auto)"
        ));
    }
}
