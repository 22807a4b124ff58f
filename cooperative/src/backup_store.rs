//! The boxes' backup store (issue 16): restic's REST server, run by the cooperative with
//! `--private-repos --append-only --htpasswd-file <htpasswd>`, so that each box reaches only
//! `/<label>/` and can add to its history but delete nothing of it. hearth-coop keeps the
//! accounts: an enrolment makes the box's account (user = the box's label, a fresh random
//! password) and answers with it once; the cooperative keeps only the password's bcrypt hash,
//! in the htpasswd file. What is in the repository is encrypted with the family's key, which
//! the cooperative never sees.
//!
//! The REST server (0.13, Debian's restic-rest-server) rereads the file by itself: on a
//! request, at most once every 30 s, when the file's modification time or size changed (its
//! `htpasswd.go`, `ReloadCheck`), and at once on SIGHUP. A new account therefore works within
//! about 30 s; `systemctl reload` (SIGHUP) makes it at once.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A box's account in the store, as the enrolment's answer carries it (`store`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreAccount {
    /// What restic opens: `rest:<url><user>/`.
    pub repository: String,
    pub user: String,
    pub password: String,
}

/// Never the password (the answer's `Debug` may reach a log).
impl std::fmt::Debug for StoreAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreAccount")
            .field("repository", &self.repository)
            .field("user", &self.user)
            .field("password", &"***")
            .finish()
    }
}

/// bcrypt's cost for the store's hashes. The passwords are 192 random bits, so the cost is not
/// what keeps them safe; the REST server checks a hash once a minute per box (it caches a
/// good check for a minute), and a lower cost keeps that cheap.
pub const BCRYPT_COST: u32 = 10;

/// Random bytes in a password: 192 bits from the OS.
const PASSWORD_BYTES: usize = 24;

/// The accounts of one store.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// The REST server's public base, ending in `/`.
    pub url: String,
    pub htpasswd: PathBuf,
}

impl Accounts {
    pub fn new(config: &crate::config::StoreConfig) -> Accounts {
        Accounts {
            url: config.url.clone(),
            htpasswd: config.htpasswd.clone(),
        }
    }

    /// At start: the htpasswd file exists (empty at first: the REST server refuses to start
    /// without it), and its folder is there for the replacements.
    pub fn prepare(&self) -> anyhow::Result<()> {
        let file = &self.htpasswd;
        let dir = parent(file);
        anyhow::ensure!(
            dir.is_dir(),
            "{}: store.htpasswd's folder {} does not exist",
            file.display(),
            dir.display()
        );
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(file)
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", file.display())),
        }
    }

    /// Makes `user`'s account with a new password, replacing the one it had (a box enrolled
    /// again gets a new password; the old one stops working). Blocking (bcrypt, the file).
    pub fn make(&self, user: &str) -> anyhow::Result<StoreAccount> {
        anyhow::ensure!(
            !user.is_empty()
                && user
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{user:?} is not a store user (a label: a-z, 0-9, -)"
        );
        let mut raw = [0u8; PASSWORD_BYTES];
        getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no random numbers: {e}"))?;
        use base64::Engine;
        let password = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let hash =
            bcrypt::hash(&password, BCRYPT_COST).map_err(|e| anyhow::anyhow!("bcrypt: {e}"))?;
        set_line(&self.htpasswd, user, &hash)?;
        Ok(StoreAccount {
            repository: format!("rest:{}{user}/", self.url),
            user: user.to_owned(),
            password,
        })
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Puts `user:hash` into the htpasswd file at `path`, in place of `user`'s line if it has one,
/// every other line kept as it was. One writer at a time (an exclusive `flock` on
/// `<path>.lock`, which holds between threads and between processes: two edges on one host,
/// or a second hearth-coop); the new file is written beside it and renamed over it, so the
/// REST server reads either the old file or the new one, never half of one. The new file
/// keeps the old one's mode and group (the REST server's user reads it through its group).
pub fn set_line(path: &Path, user: &str, hash: &str) -> anyhow::Result<()> {
    let at = |e: std::io::Error, p: &Path| anyhow::anyhow!("{}: {e}", p.display());
    let lock_path = beside(path, ".lock");
    let lock = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| at(e, &lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| at(e.into(), &lock_path))?;

    let (old, meta) = match std::fs::read_to_string(path) {
        Ok(text) => (
            text,
            Some(std::fs::metadata(path).map_err(|e| at(e, path))?),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (String::new(), None),
        Err(e) => return Err(at(e, path)),
    };
    let mut text = String::with_capacity(old.len() + hash.len() + user.len() + 2);
    for line in old.lines() {
        if line.split(':').next().map(str::trim) == Some(user) {
            continue;
        }
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(user);
    text.push(':');
    text.push_str(hash);
    text.push('\n');

    let tmp = beside(path, ".tmp");
    let mode = meta.as_ref().map_or(0o640, |m| m.mode() & 0o7777);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| at(e, &tmp))?;
    if let Some(m) = &meta {
        if m.gid() != f.metadata().map_err(|e| at(e, &tmp))?.gid() {
            std::os::unix::fs::fchown(&f, None, Some(m.gid())).map_err(|e| at(e, &tmp))?;
        }
    }
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| at(e, &tmp))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| at(e, &tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| at(e, path))?;
    let dir = parent(path);
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(e, dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_user_gets_one_line_others_and_comments_are_kept_the_mode_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        std::fs::write(&path, "# the store\nadmin:$2y$05$abc\nnord:old\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        set_line(&path, "nord", "$2b$10$new").unwrap();
        set_line(&path, "sued", "$2b$10$s").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "# the store\nadmin:$2y$05$abc\nnord:$2b$10$new\nsued:$2b$10$s\n"
        );
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
        assert!(!beside(&path, ".tmp").exists());
    }

    #[test]
    fn concurrent_accounts_lose_no_line() {
        let dir = tempfile::tempdir().unwrap();
        let accounts = Accounts {
            url: "https://backup.coop.test/".into(),
            htpasswd: dir.path().join("htpasswd"),
        };
        accounts.prepare().unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let a = accounts.clone();
                std::thread::spawn(move || a.make(&format!("box{i}")).unwrap())
            })
            .collect();
        let made: Vec<StoreAccount> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let text = std::fs::read_to_string(&accounts.htpasswd).unwrap();
        assert_eq!(text.lines().count(), 16, "{text}");
        for a in &made {
            let line = text
                .lines()
                .find(|l| l.starts_with(&format!("{}:", a.user)))
                .unwrap();
            let hash = line.split_once(':').unwrap().1;
            assert!(hash.starts_with("$2b$10$"), "{line}");
            assert!(bcrypt::verify(&a.password, hash).unwrap());
            assert!(!text.contains(&a.password));
            assert_eq!(
                a.repository,
                format!("rest:https://backup.coop.test/{}/", a.user)
            );
            assert!(a.password.len() >= 32, "{}", a.password);
        }
        assert!(!format!("{:?}", made[0]).contains(&made[0].password));
        assert!(accounts.make("No/Label").is_err());
    }
}
