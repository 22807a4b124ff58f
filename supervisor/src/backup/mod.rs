//! Backups (issue 16): everything that makes this server this server, encrypted by restic into
//! repositories the family's recovery key opens — a USB disk at home, the cooperative's
//! append-only store — and the restore that brings the same server back on a fresh card.
//!
//! One run is a few snapshots with one tag `run-<UTC time>`, the manifest last (only a run with
//! a manifest counts):
//!
//! | part | what | how |
//! |---|---|---|
//! | `synapse-db` | Synapse's database | `pg_dump -Fc` without `e2e_one_time_keys_json`'s rows, or `sqlite3 .dump`, streamed (`--stdin-from-command`: a failed dump makes no snapshot) |
//! | `hearth-db` | households, accounting, audit log | `sqlite3 .dump` of `hearth.db`, streamed |
//! | `files` | name, database choice, Synapse's configuration and secrets, signing key, local media and thumbnails, the supervisor's keys, TLS | restic reads them in place |
//! | `manifest` | the run: server name, database, each part's snapshot, the audit log's head | JSON from memory |
//!
//! Nothing is staged on the card: dumps are streamed, restic runs with `--no-cache` and stages
//! packs in `TMPDIR` (tmpfs). What is not saved, and why: remote media and URL previews (fetched
//! again), `hearth.db`'s and Synapse's SQLite files as files (their dumps are consistent, a copy
//! of a live file is not), first boot's marker, the setup code, the recovery key itself (the
//! family holds it on paper, and gives it back at the restore, which keeps it for the next runs).
//!
//! What is not restored as it was: Synapse's one-time keys (`e2e_one_time_keys_json`) and
//! fallback keys (`e2e_fallback_keys_json`) are emptied after the restore, before Synapse
//! starts — keys claimed after the backup would otherwise be handed out a second time and break
//! encryption; clients see none left and upload new ones (Synapse's backup documentation).

pub mod restic;
pub mod run;

use crate::audit::{self, NotedHead, Verdict};
use restic::{Repo, Restic, ResticError, Snapshot, Summary};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tag every hearth snapshot carries; a run's own is `run-<time>`.
pub const TAG: &str = "hearth";

/// Where the appliance's files are: `/` on the box, a folder in tests.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn at(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }
    pub fn hearth_db(&self) -> PathBuf {
        self.at("/var/lib/hearth/hearth.db")
    }
    pub fn synapse_sqlite(&self) -> PathBuf {
        self.at("/var/lib/matrix-synapse/homeserver.db")
    }
    /// First boot's choice: `postgresql` or `sqlite`.
    pub fn database(&self) -> Result<Database, BackupError> {
        let f = self.at("/etc/hearth/database");
        let text = std::fs::read_to_string(&f).map_err(|e| BackupError::io(&f, e))?;
        match text.trim() {
            "postgresql" => Ok(Database::Postgresql),
            "sqlite" => Ok(Database::Sqlite),
            other => Err(BackupError::Invalid(format!(
                "{}: line 1: '{other}' is neither postgresql nor sqlite",
                f.display()
            ))),
        }
    }
    pub fn server_name(&self) -> Result<String, BackupError> {
        let f = self.at("/etc/hearth/server_name");
        let text = std::fs::read_to_string(&f).map_err(|e| BackupError::io(&f, e))?;
        Ok(text.trim().to_string())
    }
    /// The files part: what restic reads in place.
    pub fn files(&self) -> Vec<PathBuf> {
        FILES
            .iter()
            .map(|p| self.at(p))
            .filter(|p| p.exists())
            .collect()
    }
}

/// The files part (absolute paths on the box; missing ones are left out).
pub const FILES: &[&str] = &[
    "/etc/hearth",
    "/etc/matrix-synapse",
    "/var/lib/matrix-synapse/homeserver.signing.key",
    "/var/lib/matrix-synapse/media/local_content",
    "/var/lib/matrix-synapse/media/local_thumbnails",
    "/var/lib/hearth",
    "/var/lib/hearth-tls",
];
/// The folders the files part is restored into, one restic call each; every entry of [`FILES`]
/// lies in one of them (a file, the signing key, with its folder, which the backup holds only
/// the key and the local media of).
pub const RESTORE_FOLDERS: &[&str] = &[
    "/etc/hearth",
    "/etc/matrix-synapse",
    "/var/lib/matrix-synapse",
    "/var/lib/hearth",
    "/var/lib/hearth-tls",
];
/// Left out of the files part (restic's patterns).
pub const EXCLUDES: &[&str] = &[
    "/var/lib/hearth/hearth.db",
    "/var/lib/hearth/hearth.db-*",
    "/var/lib/hearth/setup_code*",
    "/etc/hearth/firstboot-done",
    "/etc/hearth/backup/key",
    "*.tmp",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Database {
    Postgresql,
    Sqlite,
}

/// Synapse's PostgreSQL database and its owner on the appliance.
pub const PG_DATABASE: &str = "synapse";
pub const PG_ROLE: &str = "matrix-synapse";

/// What a run saved: the manifest, the last snapshot of a run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub version: u32,
    pub run: String,
    /// Where the files part was read from (`/` on a box): restored from below it.
    #[serde(default = "slash")]
    pub root: String,
    pub server_name: String,
    pub database: Database,
    /// The audit log's head when the run began: the restored log must hold it.
    pub audit_seq: u64,
    pub audit_hash: String,
    pub parts: Vec<Part>,
}

fn slash() -> String {
    "/".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Part {
    pub name: String,
    pub snapshot: String,
    /// The file inside the snapshot, for a streamed part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    pub bytes: u64,
    pub added: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Restic(#[from] ResticError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("restoring: {0}")]
    Restore(String),
}

impl BackupError {
    fn io(path: &Path, source: std::io::Error) -> BackupError {
        BackupError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// A command run as the owner of `file` when we are root and it is not (a dump reads a database
/// as the one who writes it: no root-owned `-shm` is left behind).
fn as_owner_of(file: &Path, program: &str) -> Vec<String> {
    let owner = file
        .metadata()
        .or_else(|_| {
            file.parent()
                .map_or(Err(std::io::ErrorKind::NotFound.into()), |p| p.metadata())
        })
        .map(|m| (m.uid(), m.gid()))
        .ok();
    match owner {
        Some((uid, gid)) if uid != 0 && rustix::process::geteuid().is_root() => vec![
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
            program.into(),
        ],
        _ => vec![program.into()],
    }
}

/// `program` as PostgreSQL's superuser (peer authentication on its socket). setpriv, not
/// runuser or su: no PAM session, so it works in hearth-backup.service's sandbox.
fn as_postgres(program: &str) -> Vec<String> {
    [
        "setpriv",
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
        program,
    ]
    .map(String::from)
    .to_vec()
}

/// `program` as postgres, ready to run.
fn postgres_command(program: &str) -> Command {
    let argv = as_postgres(program);
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// The command whose output is Synapse's database.
pub fn synapse_dump(layout: &Layout, db: Database) -> Vec<String> {
    match db {
        Database::Postgresql => {
            let mut c = as_postgres("pg_dump");
            c.extend(
                [
                    "--format=custom",
                    "--exclude-table-data=e2e_one_time_keys_json",
                    PG_DATABASE,
                ]
                .map(String::from),
            );
            c
        }
        Database::Sqlite => sqlite_dump(&layout.synapse_sqlite()),
    }
}

/// The command whose output is the supervisor's database.
pub fn hearth_dump(layout: &Layout) -> Vec<String> {
    sqlite_dump(&layout.hearth_db())
}

/// `sqlite3 FILE .dump` (one read transaction: consistent while the owner writes), then the
/// schema's version, which `.dump` leaves out and the supervisor's migrations go by.
fn sqlite_dump(f: &Path) -> Vec<String> {
    let mut c = as_owner_of(f, "sqlite3");
    c.extend([
        f.display().to_string(),
        ".dump".into(),
        "SELECT 'PRAGMA user_version = ' || user_version || ';' FROM pragma_user_version;".into(),
    ]);
    c
}

/// The audit log's head now, read-only.
fn audit_head(db: &Path) -> Result<audit::Head, BackupError> {
    let conn = rusqlite::Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| BackupError::Invalid(format!("{}: {e}", db.display())))?;
    audit::head(&conn).map_err(|e| BackupError::Invalid(format!("{}: {e}", db.display())))
}

/// One run to `repo`: the parts, then the manifest. `run` names it (`run-<UTC time>`).
pub fn back_up(
    restic: &Restic,
    repo: &Repo,
    layout: &Layout,
    run: &str,
) -> Result<Manifest, BackupError> {
    // A run that was killed left its lock; ours is the only restic here (the caller's lock).
    restic.unlock(repo)?;
    let database = layout.database()?;
    let server_name = layout.server_name()?;
    let head = audit_head(&layout.hearth_db())?;
    let tags = |part: &str| vec![TAG.to_string(), run.to_string(), format!("part-{part}")];
    let mut parts = Vec::new();
    let mut add = |name: &str, file: Option<&str>, s: Summary| {
        parts.push(Part {
            name: name.into(),
            snapshot: s.snapshot_id,
            file: file.map(String::from),
            bytes: s.total_bytes_processed,
            added: s.data_added,
        })
    };
    let synapse_file = match database {
        Database::Postgresql => "synapse.pgdump",
        Database::Sqlite => "synapse.sql",
    };
    let s = restic.backup_command(
        repo,
        &tags("synapse-db"),
        synapse_file,
        &synapse_dump(layout, database),
    )?;
    add("synapse-db", Some(synapse_file), s);
    let s = restic.backup_command(repo, &tags("hearth-db"), "hearth.sql", &hearth_dump(layout))?;
    add("hearth-db", Some("hearth.sql"), s);
    let excludes: Vec<String> = EXCLUDES
        .iter()
        .map(|e| {
            if e.starts_with('/') {
                layout.at(e).display().to_string()
            } else {
                e.to_string()
            }
        })
        .collect();
    let s = restic.backup_paths(repo, &tags("files"), &layout.files(), &excludes)?;
    add("files", None, s);
    let manifest = Manifest {
        version: 1,
        run: run.into(),
        root: layout.root.display().to_string(),
        server_name,
        database,
        audit_seq: head.seq,
        audit_hash: head.hash.to_string(),
        parts,
    };
    let bytes = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Invalid(format!("manifest: {e}")))?;
    restic.backup_bytes(repo, &tags("manifest"), "manifest.json", bytes)?;
    Ok(manifest)
}

/// The newest complete run in `repo` (one with a manifest), and its manifest.
pub fn newest_run(restic: &Restic, repo: &Repo) -> Result<Option<Manifest>, BackupError> {
    let snaps = restic.snapshots(repo, "part-manifest")?;
    let newest: Option<&Snapshot> = snaps.iter().max_by(|a, b| a.time.cmp(&b.time));
    let Some(s) = newest else { return Ok(None) };
    let bytes = restic.dump_to_vec(repo, &s.id, "manifest.json")?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Invalid(format!("manifest of snapshot {}: {e}", s.id)))?;
    Ok(Some(m))
}

/// Bring the run `m` back into `layout`: files in place, Synapse's database loaded fresh (its
/// one-time and fallback keys emptied), the supervisor's database loaded and its audit log
/// checked against the manifest's head before it replaces anything. Synapse and the supervisor
/// must be stopped. Returns the restored audit log's verdict.
pub fn restore(
    restic: &Restic,
    repo: &Repo,
    layout: &Layout,
    m: &Manifest,
) -> Result<Verdict, BackupError> {
    let part = |name: &str| {
        m.parts
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| BackupError::Restore(format!("the run {} has no {name} part", m.run)))
    };
    let (files, synapse, hearth) = (part("files")?, part("synapse-db")?, part("hearth-db")?);

    // The supervisor's database first, into a new file: it must verify with the old head
    // before anything on this box is replaced.
    let db = layout.hearth_db();
    let fresh = load_sqlite(restic, repo, hearth, "hearth.sql", &db)?;
    let seal: NotedHead = format!("{}:{}", m.audit_seq, m.audit_hash)
        .parse()
        .map_err(|e| BackupError::Restore(format!("the manifest's audit head: {e}")))?;
    let verdict = audit::verify_file(&fresh, Some(&seal))
        .map_err(|e| BackupError::Restore(format!("the restored audit log: {e}")))?;
    if let Verdict::Broken { seq, reason } = &verdict {
        let _ = std::fs::remove_file(&fresh);
        return Err(BackupError::Restore(format!(
            "the restored audit log does not verify: entry {seq}: {reason}"
        )));
    }

    // The files below the root they were read from, into this box's root: one folder at a time
    // (restic sets the metadata of every folder it restores, and the box's own /etc, /var and
    // /var/lib are not the backup's to change; hearth-restore.service cannot write them).
    let saved: Vec<String> = restic
        .snapshots(repo, "part-files")?
        .into_iter()
        .find(|s| s.id.starts_with(&files.snapshot) || files.snapshot.starts_with(&s.id))
        .ok_or_else(|| {
            BackupError::Restore(format!(
                "the run {} has no files snapshot {}",
                m.run, files.snapshot
            ))
        })?
        .paths;
    let base = m.root.trim_end_matches('/');
    for folder in RESTORE_FOLDERS {
        let from = format!("{base}{folder}");
        let below = format!("{from}/");
        if saved.iter().any(|p| *p == from || p.starts_with(&below)) {
            restic.restore(
                repo,
                &format!("{}:{from}", files.snapshot),
                &layout.at(folder),
            )?;
        }
    }

    match m.database {
        Database::Sqlite => {
            let target = layout.synapse_sqlite();
            let tmp = load_sqlite(restic, repo, synapse, "synapse.sql", &target)?;
            let out = Command::new("sqlite3")
                .arg(&tmp)
                .arg("DELETE FROM e2e_one_time_keys_json; DELETE FROM e2e_fallback_keys_json;")
                .output()
                .map_err(|e| BackupError::Restore(format!("sqlite3: {e}")))?;
            if !out.status.success() {
                return Err(BackupError::Restore(format!(
                    "emptying the one-time keys: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            replace(&tmp, &target)?;
        }
        Database::Postgresql => restore_postgresql(restic, repo, synapse)?,
    }
    replace(&fresh, &db)?;
    Ok(verdict)
}

/// A streamed SQLite dump loaded into a new database beside `target` (`<target>.restoring`),
/// which is returned: nothing of `target` is touched yet.
fn load_sqlite(
    restic: &Restic,
    repo: &Repo,
    part: &Part,
    default_file: &str,
    target: &Path,
) -> Result<PathBuf, BackupError> {
    let fresh = target.with_extension("db.restoring");
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(|e| BackupError::io(dir, e))?;
    }
    let _ = std::fs::remove_file(&fresh);
    restic.dump_into(
        repo,
        &part.snapshot,
        part.file.as_deref().unwrap_or(default_file),
        Command::new("sqlite3").arg(&fresh),
    )?;
    Ok(fresh)
}

/// `tmp` takes `target`'s place, owned as `target`'s folder is; a live database's `-wal` and
/// `-shm` of the old file go with it.
fn replace(tmp: &Path, target: &Path) -> Result<(), BackupError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let meta = dir.metadata().map_err(|e| BackupError::io(dir, e))?;
    std::os::unix::fs::chown(tmp, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| BackupError::io(tmp, e))?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut p = target.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
    std::fs::rename(tmp, target).map_err(|e| BackupError::io(target, e))
}

fn restore_postgresql(restic: &Restic, repo: &Repo, part: &Part) -> Result<(), BackupError> {
    let psql = |sql: &str| -> Result<(), BackupError> {
        let out = postgres_command("psql")
            .args(["--no-psqlrc", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(sql)
            .output()
            .map_err(|e| BackupError::Restore(format!("psql: {e}")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BackupError::Restore(format!(
                "psql: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    psql(&format!("DROP DATABASE IF EXISTS \"{PG_DATABASE}\""))?;
    psql(&format!(
        "CREATE DATABASE \"{PG_DATABASE}\" OWNER \"{PG_ROLE}\" ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
    ))?;
    restic.dump_into(
        repo,
        &part.snapshot,
        part.file.as_deref().unwrap_or("synapse.pgdump"),
        postgres_command("pg_restore").args([
            "--no-owner",
            "--exit-on-error",
            &format!("--role={PG_ROLE}"),
            "--dbname",
            PG_DATABASE,
        ]),
    )?;
    let out = postgres_command("psql")
        .args([
            "--no-psqlrc",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            PG_DATABASE,
            "-c",
        ])
        .arg("DELETE FROM e2e_one_time_keys_json; DELETE FROM e2e_fallback_keys_json;")
        .output()
        .map_err(|e| BackupError::Restore(format!("psql: {e}")))?;
    if !out.status.success() {
        return Err(BackupError::Restore(format!(
            "emptying the one-time keys: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// A new recovery key: 160 random bits as 32 characters of Crockford's base32 (no I, L, O or U
/// to misread on paper) in groups of four.
pub fn new_key() -> Result<String, BackupError> {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw)
        .map_err(|e| BackupError::Invalid(format!("the random source: {e}")))?;
    let letters: Vec<char> = raw
        .iter()
        .map(|b| ALPHABET[usize::from(b & 31)] as char)
        .collect();
    Ok(letters
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each saved path comes back through exactly one restore folder.
    #[test]
    fn every_saved_path_lies_in_one_restore_folder() {
        for f in FILES {
            let n = RESTORE_FOLDERS
                .iter()
                .filter(|d| f == *d || f.starts_with(&format!("{d}/")))
                .count();
            assert_eq!(n, 1, "{f}");
        }
    }
}
