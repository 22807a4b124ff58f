//! Who can log in to the box, gathered from the system by a root-run collector
//! (`hearth-supervisor access inventory`, the `hearth-access-inventory` units) and read by the
//! daemon, which runs as `hearth` and cannot read `/etc/shadow` or anyone's `~/.ssh`.
//!
//! What it gathers, under a root directory that tests replace with a fake tree:
//! - accounts from `/etc/passwd` that can log in: a shell listed in `/etc/shells` that is not
//!   `nologin` or `false`, uid 0 always, members of an admin group, and anyone with an
//!   authorized SSH key; their password state from `/etc/shadow` (set, locked, empty) when it
//!   is readable;
//! - members of the groups `sudo`, `wheel` and `admin` (`/etc/group`, and whose primary group
//!   it is), and the names (not the contents) of the files in `/etc/sudoers.d/`;
//! - SSH: whether an SSH server is configured and enabled, whether it accepts passwords
//!   (`PasswordAuthentication`, first value wins across `sshd_config` and its `Include`s, as
//!   sshd reads it), `PermitRootLogin`, `AuthorizedKeysFile` (default `.ssh/authorized_keys
//!   .ssh/authorized_keys2`; `%h`, `%u`, `%U`, `%%` expanded per account), and for each key
//!   file that exists the accounts it lets in and its keys: type, the SHA256 fingerprint as
//!   `ssh-keygen -lf` prints it, comment, and whether options restrict the key.
//!
//! A line that does not parse is a [`Problem`] (`file:line: message`), never fatal; only an
//! unreadable `/etc/passwd` is (an inventory without accounts would mislead).
//! The daemon reads the file with [`load`]: missing, unreadable or malformed are states the
//! page shows, never a panic.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Where the collector writes and the daemon reads, by default.
pub const DEFAULT_OUT: &str = "/run/hearth/access.json";

/// The version of the file's shape; [`load`] refuses others.
pub const FORMAT: u32 = 1;

/// Groups whose members may become root (`sudo` on Debian, `wheel` and `admin` elsewhere).
pub const ADMIN_GROUPS: [&str; 3] = ["sudo", "wheel", "admin"];

/// OpenSSH's default `AuthorizedKeysFile`.
pub const DEFAULT_AUTHORIZED_KEYS: [&str; 2] = [".ssh/authorized_keys", ".ssh/authorized_keys2"];

/// Unit links that start an SSH server at boot.
const SSH_WANTS: [&str; 4] = [
    "etc/systemd/system/multi-user.target.wants/ssh.service",
    "etc/systemd/system/multi-user.target.wants/sshd.service",
    "etc/systemd/system/sockets.target.wants/ssh.socket",
    "etc/systemd/system/sockets.target.wants/sshd.socket",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// [`FORMAT`].
    pub format: u32,
    /// UTC, RFC 3339.
    pub gathered_at: String,
    /// Sorted by uid, then name.
    pub accounts: Vec<Account>,
    pub admin_groups: Vec<AdminGroup>,
    pub sudoers_d: Vec<SudoersFile>,
    pub ssh: Ssh,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub home: String,
    pub shell: String,
    /// The shell is in `/etc/shells` and is not `nologin` or `false`.
    pub login_shell: bool,
    pub password: Password,
    /// The admin groups ([`ADMIN_GROUPS`]) they are in.
    pub admin_groups: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Password {
    /// A password hash: logging in with a password works (where the service allows it).
    Set,
    /// `!` or `*`: no password login.
    Locked,
    /// An empty field: no password at all.
    Empty,
    /// `/etc/shadow` could not be read, or has no line for the account.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminGroup {
    pub name: String,
    pub gid: u32,
    /// Listed members and accounts whose primary group it is, sorted.
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SudoersFile {
    pub name: String,
    /// sudo's `@includedir` skips names with a `.` or ending in `~`.
    pub read_by_sudo: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ssh {
    /// `/etc/ssh/sshd_config` exists: an SSH server is installed.
    pub configured: bool,
    /// A unit link starts it at boot.
    pub enabled: bool,
    pub password_authentication: bool,
    /// As configured (`prohibit-password` by default).
    pub permit_root_login: String,
    pub authorized_keys_files: Vec<String>,
    /// Keys may also come from this command, which the inventory cannot see into.
    pub authorized_keys_command: Option<String>,
    /// `Match` blocks may change the above for some users or addresses (not evaluated).
    pub match_blocks: bool,
    /// Key files that exist, sorted by path.
    pub key_files: Vec<KeyFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub path: String,
    /// The accounts this file lets in.
    pub accounts: Vec<String>,
    pub keys: Vec<Key>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub line: usize,
    /// e.g. `ssh-ed25519`.
    pub key_type: String,
    /// `SHA256:` and unpadded base64, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    pub comment: String,
    /// Options precede the key (`from=`, `command=`, `restrict`, …).
    pub options: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Problem {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: cannot write: {source}")]
    Write {
        file: String,
        #[source]
        source: std::io::Error,
    },
}

/// `root` joined with an absolute path of the system (`/etc/passwd` → `<root>/etc/passwd`).
fn at(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

/// A file's text; `Ok(None)` when it does not exist.
fn read_opt(root: &Path, abs: &str) -> Result<Option<String>, std::io::Error> {
    match std::fs::read(at(root, abs)) {
        Ok(b) => Ok(Some(String::from_utf8_lossy(&b).into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The most of a key file that is read (a real one is a few KiB).
pub const MAX_KEY_FILE: u64 = 1 << 20;

/// A key file in an account's home, read as root but owned by that account: never through a
/// symlink (`~/.ssh/authorized_keys -> /etc/shadow` would show root's secrets as "malformed
/// keys"), only a regular file (a FIFO would hang the collector; the open does not block), and
/// at most [`MAX_KEY_FILE`] bytes (`/dev/zero` or a huge file would exhaust it). `Ok(None)`: it
/// does not exist; `Err`: why it was not read.
fn read_key_file(root: &Path, abs: &str) -> Result<Option<String>, String> {
    use rustix::fs::{FileType, Mode, OFlags};
    use std::io::Read as _;
    let path = at(root, abs);
    let fd = match rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(rustix::io::Errno::LOOP) => return Err("a symbolic link: not followed".into()),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| format!("cannot read: {e}"))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err("not a regular file: not read".into());
    }
    let mut bytes = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!("larger than {MAX_KEY_FILE} bytes: not read"));
    }
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// The lines that carry data: numbered from 1, without blank lines and `#` comments.
fn data_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

struct PasswdEntry {
    name: String,
    pw: String,
    uid: u32,
    gid: u32,
    home: String,
    shell: String,
}

/// Gather the inventory of the system under `root` at `now`.
pub fn gather(root: &Path, now: DateTime<Utc>) -> Result<Inventory, InventoryError> {
    let mut problems = Vec::new();
    let mut problem = |file: &str, line: Option<usize>, message: String| {
        problems.push(Problem {
            file: file.to_string(),
            line,
            message,
        })
    };

    // /etc/passwd: the only file without which there is nothing to say.
    let passwd_text =
        std::fs::read(at(root, "/etc/passwd")).map_err(|source| InventoryError::Read {
            file: "/etc/passwd".into(),
            source,
        })?;
    let passwd_text = String::from_utf8_lossy(&passwd_text);
    let mut passwd = Vec::new();
    for (n, line) in data_lines(&passwd_text) {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() != 7 {
            problem(
                "/etc/passwd",
                Some(n),
                format!(
                    "{} fields, expected 7 (name:password:uid:gid:gecos:home:shell)",
                    f.len()
                ),
            );
            continue;
        }
        let (Ok(uid), Ok(gid)) = (f[2].parse::<u32>(), f[3].parse::<u32>()) else {
            problem(
                "/etc/passwd",
                Some(n),
                format!("uid {:?} or gid {:?} is not a number", f[2], f[3]),
            );
            continue;
        };
        passwd.push(PasswdEntry {
            name: f[0].to_string(),
            pw: f[1].to_string(),
            uid,
            gid,
            home: f[5].to_string(),
            shell: f[6].to_string(),
        });
    }

    // /etc/shadow: the password field of each account.
    let mut shadow: Option<BTreeMap<String, String>> = match read_opt(root, "/etc/shadow") {
        Ok(Some(text)) => {
            let mut m = BTreeMap::new();
            for (n, line) in data_lines(&text) {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() < 2 {
                    problem("/etc/shadow", Some(n), "no password field".into());
                    continue;
                }
                m.insert(f[0].to_string(), f[1].to_string());
            }
            Some(m)
        }
        Ok(None) => {
            problem(
                "/etc/shadow",
                None,
                "missing: password states unknown".into(),
            );
            None
        }
        Err(e) => {
            problem(
                "/etc/shadow",
                None,
                format!("cannot read ({e}): password states unknown; the collector runs as root"),
            );
            None
        }
    };

    // /etc/shells.
    let shells: Option<BTreeSet<String>> = match read_opt(root, "/etc/shells") {
        Ok(Some(text)) => Some(data_lines(&text).map(|(_, l)| l.to_string()).collect()),
        Ok(None) => {
            problem(
                "/etc/shells",
                None,
                "missing: every shell but nologin and false counts as a login shell".into(),
            );
            None
        }
        Err(e) => {
            problem(
                "/etc/shells",
                None,
                format!(
                    "cannot read ({e}): every shell but nologin and false counts as a login shell"
                ),
            );
            None
        }
    };
    let login_shell = |shell: &str| {
        let base = shell.rsplit('/').next().unwrap_or(shell);
        !shell.is_empty()
            && !matches!(base, "nologin" | "false")
            && shells.as_ref().is_none_or(|s| s.contains(shell))
    };

    // /etc/group: the admin groups.
    let mut admin_groups = Vec::new();
    match read_opt(root, "/etc/group") {
        Ok(Some(text)) => {
            for (n, line) in data_lines(&text) {
                let f: Vec<&str> = line.split(':').collect();
                if f.len() != 4 {
                    problem(
                        "/etc/group",
                        Some(n),
                        format!("{} fields, expected 4 (name:password:gid:members)", f.len()),
                    );
                    continue;
                }
                if !ADMIN_GROUPS.contains(&f[0]) {
                    continue;
                }
                let Ok(gid) = f[2].parse::<u32>() else {
                    problem(
                        "/etc/group",
                        Some(n),
                        format!("gid {:?} is not a number", f[2]),
                    );
                    continue;
                };
                let mut members: BTreeSet<String> = f[3]
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(String::from)
                    .collect();
                members.extend(
                    passwd
                        .iter()
                        .filter(|p| p.gid == gid)
                        .map(|p| p.name.clone()),
                );
                admin_groups.push(AdminGroup {
                    name: f[0].to_string(),
                    gid,
                    members: members.into_iter().collect(),
                });
            }
        }
        Ok(None) => problem("/etc/group", None, "missing".into()),
        Err(e) => problem("/etc/group", None, format!("cannot read: {e}")),
    }

    // /etc/sudoers.d: names only.
    let mut sudoers_d = Vec::new();
    match std::fs::read_dir(at(root, "/etc/sudoers.d")) {
        Ok(dir) => {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                sudoers_d.push(SudoersFile {
                    read_by_sudo: !name.contains('.') && !name.ends_with('~'),
                    name,
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => problem("/etc/sudoers.d", None, format!("cannot list: {e}")),
    }
    sudoers_d.sort_by(|a, b| a.name.cmp(&b.name));

    // sshd's configuration.
    let mut ssh = Ssh {
        permit_root_login: "prohibit-password".into(),
        password_authentication: true,
        ..Ssh::default()
    };
    let mut keys_files: Option<Vec<String>> = None;
    if at(root, "/etc/ssh/sshd_config").exists() {
        ssh.configured = true;
        ssh.enabled = SSH_WANTS
            .iter()
            .any(|l| std::fs::symlink_metadata(root.join(l)).is_ok());
        let mut first = Sshd::default();
        read_sshd(root, "/etc/ssh/sshd_config", 0, &mut first, &mut problem);
        if let Some(v) = first.password_authentication {
            ssh.password_authentication = v;
        }
        if let Some(v) = first.permit_root_login {
            ssh.permit_root_login = v;
        }
        keys_files = first.authorized_keys_file;
        ssh.authorized_keys_command = first.authorized_keys_command.filter(|c| c != "none");
        ssh.match_blocks = first.match_blocks;
    }
    let patterns = keys_files.unwrap_or_else(|| {
        DEFAULT_AUTHORIZED_KEYS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    ssh.authorized_keys_files = patterns.clone();

    // Key files: each pattern expanded for each account; a file shared by everyone (an
    // absolute path without %u, %h, %U) counts for the accounts that can log in.
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for p in &passwd {
        let can_log_in = p.uid == 0 || login_shell(&p.shell);
        for pat in patterns.iter().filter(|p| p.as_str() != "none") {
            let personal =
                !pat.starts_with('/') || ["%h", "%u", "%U"].iter().any(|t| pat.contains(t));
            if !personal && !can_log_in {
                continue;
            }
            let path = expand(pat, p);
            files.entry(path).or_default().insert(p.name.clone());
        }
    }
    let mut keyed: BTreeSet<String> = BTreeSet::new();
    for (path, accounts) in files {
        let text = match read_key_file(root, &path) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                problem(&path, None, e);
                continue;
            }
        };
        let mut keys = Vec::new();
        for (n, line) in data_lines(&text) {
            match parse_key_line(line) {
                Ok(k) => keys.push(Key { line: n, ..k }),
                Err(m) => problem(&path, Some(n), m),
            }
        }
        if !keys.is_empty() {
            keyed.extend(accounts.iter().cloned());
        }
        ssh.key_files.push(KeyFile {
            path,
            accounts: accounts.into_iter().collect(),
            keys,
        });
    }

    let mut accounts: Vec<Account> = passwd
        .iter()
        .filter_map(|p| {
            let groups: Vec<String> = admin_groups
                .iter()
                .filter(|g| g.members.contains(&p.name))
                .map(|g| g.name.clone())
                .collect();
            let login = login_shell(&p.shell);
            if !(p.uid == 0 || login || !groups.is_empty() || keyed.contains(&p.name)) {
                return None;
            }
            let field = if p.pw == "x" {
                shadow.as_mut().and_then(|s| s.remove(&p.name))
            } else {
                Some(p.pw.clone())
            };
            Some(Account {
                name: p.name.clone(),
                uid: p.uid,
                home: p.home.clone(),
                shell: p.shell.clone(),
                login_shell: login,
                password: password_state(field.as_deref()),
                admin_groups: groups,
            })
        })
        .collect();
    accounts.sort_by(|a, b| a.uid.cmp(&b.uid).then_with(|| a.name.cmp(&b.name)));

    Ok(Inventory {
        format: FORMAT,
        gathered_at: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        accounts,
        admin_groups,
        sudoers_d,
        ssh,
        problems,
    })
}

fn password_state(field: Option<&str>) -> Password {
    match field {
        None => Password::Unknown,
        Some("") => Password::Empty,
        Some(f) if f.starts_with('!') || f.starts_with('*') => Password::Locked,
        Some(_) => Password::Set,
    }
}

/// `AuthorizedKeysFile` tokens for one account; relative paths are below the home directory.
fn expand(pattern: &str, p: &PasswdEntry) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(&p.home),
            Some('u') => out.push_str(&p.name),
            Some('U') => out.push_str(&p.uid.to_string()),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    if out.starts_with('/') {
        out
    } else {
        format!("{}/{out}", p.home.trim_end_matches('/'))
    }
}

/// One line of an authorized_keys file: `[options] type base64 [comment]`.
pub fn parse_key_line(line: &str) -> Result<Key, String> {
    // OpenSSH separates fields by any whitespace; the parser wants single spaces.
    let normal = normalise_spaces(line);
    let parse = |s: &str| {
        ssh_key::PublicKey::from_openssh(s).map_err(|e| format!("not a public key ({e})"))
    };
    // A line starts with options when its first field is not a key type; options may hold
    // quoted spaces (`command="…"`), which ssh-key's own line parser splits at.
    let (key, options) = match parse(&normal) {
        Ok(k) => (k, false),
        Err(first) => match split_options(&normal) {
            Some((_, rest)) => (parse(rest).map_err(|_| first)?, true),
            None => return Err(first),
        },
    };
    Ok(Key {
        line: 0,
        key_type: key.algorithm().as_str().to_string(),
        fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
        comment: key.comment().to_string(),
        options,
    })
}

/// `(options, the rest)`: the options end at the first blank outside double quotes.
fn split_options(line: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => return Some((&line[..i], &line[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Runs of blanks outside double quotes become one space.
fn normalise_spaces(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut quoted = false;
    let mut blank = false;
    for c in line.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if !quoted && (c == ' ' || c == '\t') {
            blank = true;
            continue;
        }
        if blank && !out.is_empty() {
            out.push(' ');
        }
        blank = false;
        out.push(c);
    }
    out
}

/// The first value of each setting sshd reads outside `Match` blocks.
#[derive(Debug, Default)]
struct Sshd {
    password_authentication: Option<bool>,
    permit_root_login: Option<String>,
    authorized_keys_file: Option<Vec<String>>,
    authorized_keys_command: Option<String>,
    match_blocks: bool,
}

/// Read one sshd configuration file (and its `Include`s) into `s`, first value winning.
fn read_sshd(
    root: &Path,
    file: &str,
    depth: usize,
    s: &mut Sshd,
    problem: &mut impl FnMut(&str, Option<usize>, String),
) {
    if depth > 8 {
        problem(file, None, "Include nested too deeply".into());
        return;
    }
    let text = match read_opt(root, file) {
        Ok(Some(t)) => t,
        Ok(None) => return,
        Err(e) => {
            problem(file, None, format!("cannot read: {e}"));
            return;
        }
    };
    let mut in_match = false;
    for (n, line) in data_lines(&text) {
        let (key, rest) = match line.find(|c: char| c.is_whitespace() || c == '=') {
            Some(i) => (
                &line[..i],
                line[i..].trim_start_matches(|c: char| c.is_whitespace() || c == '='),
            ),
            None => (line, ""),
        };
        let args = words(rest);
        let key = key.to_ascii_lowercase();
        if key == "match" {
            in_match = !args.first().is_some_and(|a| a.eq_ignore_ascii_case("all"));
            s.match_blocks |= in_match;
            continue;
        }
        if key == "include" {
            for pat in &args {
                let abs = if pat.starts_with('/') {
                    pat.clone()
                } else {
                    format!("/etc/ssh/{pat}")
                };
                for f in glob(root, &abs) {
                    read_sshd(root, &f, depth + 1, s, problem);
                }
            }
            continue;
        }
        if in_match {
            continue;
        }
        let Some(first) = args.first() else {
            problem(file, Some(n), format!("{key}: no value"));
            continue;
        };
        match key.as_str() {
            "passwordauthentication" if s.password_authentication.is_none() => {
                match first.to_ascii_lowercase().as_str() {
                    "yes" => s.password_authentication = Some(true),
                    "no" => s.password_authentication = Some(false),
                    other => problem(
                        file,
                        Some(n),
                        format!("PasswordAuthentication {other:?} is not yes or no"),
                    ),
                }
            }
            "permitrootlogin" if s.permit_root_login.is_none() => {
                s.permit_root_login = Some(first.to_ascii_lowercase());
            }
            "authorizedkeysfile" if s.authorized_keys_file.is_none() => {
                s.authorized_keys_file = Some(args.clone());
            }
            "authorizedkeyscommand" if s.authorized_keys_command.is_none() => {
                s.authorized_keys_command = Some(args.join(" "));
            }
            _ => {}
        }
    }
}

/// Whitespace-separated words; double quotes group.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

/// The files an `Include` pattern names, sorted (sshd's glob order): `*` and `?` in the last
/// component only, which is what sshd_config files use.
fn glob(root: &Path, pattern: &str) -> Vec<String> {
    let Some((dir, name)) = pattern.rsplit_once('/') else {
        return Vec::new();
    };
    if !name.contains(['*', '?']) {
        return vec![pattern.to_string()];
    }
    let Ok(entries) = std::fs::read_dir(at(root, dir)) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| wildcard(name.as_bytes(), n.as_bytes()))
        .map(|n| format!("{dir}/{n}"))
        .collect();
    out.sort();
    out
}

fn wildcard(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => wildcard(&p[1..], s) || (!s.is_empty() && wildcard(p, &s[1..])),
        (Some(b'?'), Some(_)) => wildcard(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => wildcard(&p[1..], &s[1..]),
        _ => false,
    }
}

/// Write `inv` to `out` atomically: a temporary file beside it, fsync, mode 0644, rename,
/// fsync of the directory. `-` prints it instead.
pub fn write(inv: &Inventory, out: &Path) -> Result<(), InventoryError> {
    let json = serde_json::to_string_pretty(inv).map_err(|e| InventoryError::Write {
        file: out.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    if out == Path::new("-") {
        println!("{json}");
        return Ok(());
    }
    let err = |source| InventoryError::Write {
        file: out.display().to_string(),
        source,
    };
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let name = out.file_name().map_or_else(
        || "access.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        // The mode of `open` is masked by the umask; the page's reader needs 0644.
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        f.write_all(json.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, out)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

/// What the daemon found at the inventory's path.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// The collector has not run (since boot: the file lives in /run).
    Missing,
    /// Unreadable, not JSON, or not this shape: the message says which.
    Bad(String),
    Ok(Box<Inventory>),
}

/// Read the collector's file.
pub fn load(path: &Path) -> Loaded {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Loaded::Missing,
        Err(e) => return Loaded::Bad(format!("{}: cannot read: {e}", path.display())),
    };
    match serde_json::from_str::<Inventory>(&text) {
        Ok(inv) if inv.format == FORMAT => Loaded::Ok(Box::new(inv)),
        Ok(inv) => Loaded::Bad(format!(
            "{}: format {} (this supervisor reads format {FORMAT})",
            path.display(),
            inv.format
        )),
        // serde_json's message names the line and column.
        Err(e) => Loaded::Bad(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests;
