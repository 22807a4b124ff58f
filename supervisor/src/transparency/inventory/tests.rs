use super::*;
use std::os::unix::fs::PermissionsExt as _;

/// Real keys made with `ssh-keygen`, and the fingerprints `ssh-keygen -lf` printed for them.
const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDLVT0EeCJkMpZPqK2Mklhoc6sQOnWWymsqVzrgT9WSQ alice@laptop";
const ED25519_FP: &str = "SHA256:P+nuGDnVFj44TMNZDPCyCVSgdUlnFvOKd7P732SsSec";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBMTQt8q7rYOcfj2n1aWHGgcVsK+fDMAkn/E2RBtsyq4bLPNB8uPHNFeGbaRYxJ1s8GR/Aasgzn7KIdNeZUBtgvQ= bob phone key";
const ECDSA_FP: &str = "SHA256:7hcDvnZHN0hTuGqXiG0xsEonyqklcPXzNXW4aoSjtNs";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQDXrbuJMwle5ta1bM/OwbOqhichkLZ/S4jYpydONMWRNnZYjQTuL28Wod4s+/aJVlNhBSW5HwgRwkJzQEHsevR1EkJ2tDR9tEZf2KhmuE9/nEYIYq+kEz6fHvBDXipWbspQXpqjqIKMAtu/xr0IgWwThNNitvsOzsBzP7JSWi37+Q==";
const RSA_FP: &str = "SHA256:aatZwnfBYO8jyAIshZhyUgzNz5JfNfj567FkNhooYt8";

struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Tree {
        Tree(tempfile::tempdir().unwrap())
    }
    fn root(&self) -> &Path {
        self.0.path()
    }
    fn put(&self, abs: &str, text: &str) -> &Tree {
        let p = at(self.root(), abs);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
        self
    }
    fn gather(&self) -> Inventory {
        gather(
            self.root(),
            DateTime::from_timestamp(1_795_651_200, 0).unwrap(),
        )
        .unwrap()
    }
}

/// A Debian-like appliance: root, an admin in `sudo`, a member of `wheel` by primary group,
/// a plain user, service accounts, the image's sshd drop-in.
fn appliance() -> Tree {
    let t = Tree::new();
    t.put(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n\
         daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
         alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n\
         bob:x:1001:1001::/home/bob:/bin/sh\n\
         carol:x:1002:10::/home/carol:/usr/sbin/nologin\n\
         hearth:x:998:998:hearth supervisor:/var/lib/hearth:/usr/sbin/nologin\n\
         backup:x:34:34:backup:/var/backups:/usr/sbin/nologin\n\
         broken line without colons\n\
         eve:x:abc:1003::/home/eve:/bin/bash\n\
         legacy:$6$salt$hash:1004:1004::/home/legacy:/bin/sh\n\
         zed:x:1005:1005::/home/zed:/bin/zsh\n",
    )
    .put(
        "/etc/shadow",
        "root:!:20000:0:99999:7:::\n\
         alice:$y$j9T$abc$def:20000:0:99999:7:::\n\
         bob::20000:0:99999:7:::\n\
         carol:*:20000::::::\n\
         hearth:!*:20000::::::\n",
    )
    .put(
        "/etc/shells",
        "# /etc/shells: valid login shells\n/bin/sh\n/bin/bash\n/usr/bin/bash\n",
    )
    .put(
        "/etc/group",
        "root:x:0:\nwheel:x:10:\nsudo:x:27:alice, bob\nadm:x:4:alice\nbad group line\nhearth:x:998:\n",
    )
    .put("/etc/sudoers.d/README", "# comments only\n")
    .put("/etc/sudoers.d/90-cloud-init-users", "alice ALL=(ALL) NOPASSWD:ALL\n")
    .put("/etc/sudoers.d/old.bak", "")
    .put(
        "/etc/ssh/sshd_config",
        "# Debian's default\nInclude /etc/ssh/sshd_config.d/*.conf\n\
         PasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
         Match User bob\n  PasswordAuthentication yes\n  AuthorizedKeysFile /nowhere\n",
    )
    .put(
        "/etc/ssh/sshd_config.d/hearth.conf",
        "AuthorizedKeysFile .ssh/authorized_keys /etc/ssh/hearth/authorized_keys\n\
         PasswordAuthentication=no\nPermitRootLogin prohibit-password\n",
    )
    .put("/etc/ssh/sshd_config.d/zz-later.conf", "PermitRootLogin yes\n")
    .put("/etc/ssh/sshd_config.d/not-included.txt", "PasswordAuthentication yes\n")
    .put(
        "/root/.ssh/authorized_keys",
        &format!(
            "# the owner's laptop\n{ED25519}\n\n\
             restrict,command=\"echo hi  there\" {RSA}\n\
             ssh-ed25519 AAAAnotbase64!! broken\n\
             just some text\n"
        ),
    )
    .put("/etc/ssh/hearth/authorized_keys", &format!("{ECDSA}\n"))
    .put("/home/carol/.ssh/authorized_keys", &format!("{ED25519}\n"))
    .put("/home/alice/.ssh/authorized_keys2", &format!("{RSA}\n"));
    std::fs::create_dir_all(at(t.root(), "/etc/systemd/system/multi-user.target.wants")).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/ssh.service",
        at(
            t.root(),
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
        ),
    )
    .unwrap();
    t
}

fn account<'a>(inv: &'a Inventory, name: &str) -> Option<&'a Account> {
    inv.accounts.iter().find(|a| a.name == name)
}

#[test]
fn accounts_that_can_log_in_with_their_password_state_and_admin_groups() {
    let inv = appliance().gather();
    let names: Vec<&str> = inv.accounts.iter().map(|a| a.name.as_str()).collect();
    // uid order; daemon, hearth and backup have no login shell, no group, no key; zed's
    // /bin/zsh is not in /etc/shells.
    assert_eq!(names, ["root", "alice", "bob", "carol", "legacy"]);
    let root = account(&inv, "root").unwrap();
    assert_eq!((root.uid, root.password), (0, Password::Locked));
    let alice = account(&inv, "alice").unwrap();
    assert_eq!(alice.password, Password::Set);
    assert_eq!(alice.admin_groups, ["sudo"]);
    assert!(alice.login_shell);
    assert_eq!(account(&inv, "bob").unwrap().password, Password::Empty);
    // carol: no login shell, but in wheel by her primary group and with an SSH key.
    let carol = account(&inv, "carol").unwrap();
    assert!(!carol.login_shell);
    assert_eq!(carol.admin_groups, ["wheel"]);
    assert_eq!(carol.password, Password::Locked);
    // A hash in /etc/passwd itself.
    assert_eq!(account(&inv, "legacy").unwrap().password, Password::Set);

    let groups: Vec<(&str, &[String])> = inv
        .admin_groups
        .iter()
        .map(|g| (g.name.as_str(), g.members.as_slice()))
        .collect();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0].0, "wheel");
    assert_eq!(groups[0].1, ["carol"]);
    assert_eq!(groups[1].1, ["alice", "bob"]);
    let sudoers: Vec<(&str, bool)> = inv
        .sudoers_d
        .iter()
        .map(|f| (f.name.as_str(), f.read_by_sudo))
        .collect();
    assert_eq!(
        sudoers,
        [
            ("90-cloud-init-users", true),
            ("README", true),
            ("old.bak", false)
        ]
    );
    assert_eq!(inv.gathered_at, "2026-11-26T00:00:00Z");
}

#[test]
fn malformed_lines_are_reported_with_file_and_line_never_fatal() {
    let inv = appliance().gather();
    let problems: Vec<String> = inv.problems.iter().map(|p| p.to_string()).collect();
    let has = |prefix: &str| problems.iter().any(|p| p.starts_with(prefix));
    assert!(has("/etc/passwd:8: 1 fields, expected 7"), "{problems:?}");
    assert!(has("/etc/passwd:9: uid \"abc\""), "{problems:?}");
    assert!(has("/etc/group:5: 1 fields"), "{problems:?}");
    assert!(
        has("/root/.ssh/authorized_keys:5: not a public key"),
        "{problems:?}"
    );
    assert!(
        has("/root/.ssh/authorized_keys:6: not a public key"),
        "{problems:?}"
    );
    assert_eq!(problems.len(), 5, "{problems:?}");
}

#[test]
fn sshd_settings_are_read_as_sshd_reads_them() {
    let inv = appliance().gather();
    let s = &inv.ssh;
    assert!(s.configured && s.enabled);
    // The drop-in's `no` comes first (Include at the top); the later `yes` does not count,
    // nor does the one in the Match block or in a file the Include pattern does not name.
    assert!(!s.password_authentication);
    assert_eq!(s.permit_root_login, "prohibit-password");
    assert_eq!(
        s.authorized_keys_files,
        [".ssh/authorized_keys", "/etc/ssh/hearth/authorized_keys"]
    );
    assert!(s.match_blocks);
    assert_eq!(s.authorized_keys_command, None);
}

#[test]
fn key_files_name_the_accounts_they_let_in_and_their_keys() {
    let inv = appliance().gather();
    let files: Vec<(&str, Vec<&str>)> = inv
        .ssh
        .key_files
        .iter()
        .map(|f| {
            (
                f.path.as_str(),
                f.accounts.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    // The shared file lets in everyone who can log in; carol's own file lets carol in even
    // without a login shell (port forwarding needs none). alice's authorized_keys2 is not
    // read: AuthorizedKeysFile does not name it here.
    assert_eq!(
        files,
        [
            (
                "/etc/ssh/hearth/authorized_keys",
                vec!["alice", "bob", "legacy", "root"]
            ),
            ("/home/carol/.ssh/authorized_keys", vec!["carol"]),
            ("/root/.ssh/authorized_keys", vec!["root"]),
        ]
    );
    let shared = &inv.ssh.key_files[0].keys;
    assert_eq!(shared.len(), 1);
    assert_eq!(
        (shared[0].key_type.as_str(), shared[0].fingerprint.as_str()),
        ("ecdsa-sha2-nistp256", ECDSA_FP)
    );
    assert_eq!(shared[0].comment, "bob phone key");
    let root = &inv.ssh.key_files[2].keys;
    assert_eq!(root.len(), 2);
    assert_eq!(
        (
            root[0].line,
            root[0].fingerprint.as_str(),
            root[0].comment.as_str(),
            root[0].options
        ),
        (2, ED25519_FP, "alice@laptop", false)
    );
    assert_eq!(
        (
            root[1].line,
            root[1].key_type.as_str(),
            root[1].fingerprint.as_str(),
            root[1].options
        ),
        (4, "ssh-rsa", RSA_FP, true)
    );
    assert_eq!(root[1].comment, "");
}

#[test]
fn without_sshd_the_default_key_files_are_read_and_passwords_count_as_accepted() {
    let t = Tree::new();
    t.put(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/bash\nu:x:1000:1000::/home/u:/bin/bash\n",
    )
    .put("/etc/shells", "/bin/bash\n")
    .put("/etc/group", "sudo:x:27:\n")
    .put("/home/u/.ssh/authorized_keys2", &format!("{ED25519}\n"));
    let inv = t.gather();
    assert!(!inv.ssh.configured && !inv.ssh.enabled);
    assert!(inv.ssh.password_authentication, "sshd's default");
    assert_eq!(inv.ssh.key_files.len(), 1);
    assert_eq!(inv.ssh.key_files[0].path, "/home/u/.ssh/authorized_keys2");
    // No shadow file: the states are unknown, and the page says why.
    assert!(inv.accounts.iter().all(|a| a.password == Password::Unknown));
    assert!(
        inv.problems.iter().any(|p| p.file == "/etc/shadow"),
        "{:?}",
        inv.problems
    );
    assert_eq!(inv.admin_groups[0].members, Vec::<String>::new());
}

#[test]
fn an_unreadable_passwd_is_the_one_fatal_error() {
    let t = Tree::new();
    let e = gather(t.root(), Utc::now()).unwrap_err();
    assert!(e.to_string().starts_with("/etc/passwd: cannot read"), "{e}");
}

#[test]
fn fingerprints_match_ssh_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    std::fs::write(&file, format!("{ED25519}\n{ECDSA}\n{RSA}\n")).unwrap();
    let ours: Vec<String> = [ED25519, ECDSA, RSA]
        .iter()
        .map(|l| parse_key_line(l).unwrap().fingerprint)
        .collect();
    assert_eq!(ours, [ED25519_FP, ECDSA_FP, RSA_FP]);
    // Ask ssh-keygen too (and about a fresh key it makes now); `make test-deps` installs it.
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&file)
        .output()
        .expect("ssh-keygen (make test-deps installs openssh-client)");
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split(' ').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(theirs, ours);
    let fresh = dir.path().join("fresh");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "fresh key", "-f"])
        .arg(&fresh)
        .status()
        .unwrap();
    assert!(made.success());
    let pub_line = std::fs::read_to_string(fresh.with_extension("pub")).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(fresh.with_extension("pub"))
        .output()
        .unwrap();
    let theirs = String::from_utf8_lossy(&out.stdout);
    let k = parse_key_line(pub_line.trim()).unwrap();
    assert_eq!(theirs.split(' ').nth(1).unwrap(), k.fingerprint);
    assert_eq!(k.comment, "fresh key");
}

#[test]
fn the_file_is_written_atomically_world_readable_and_read_back() {
    let inv = appliance().gather();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run/hearth/access.json");
    assert_eq!(load(&out), Loaded::Missing);
    write(&inv, &out).unwrap();
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let left: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary file left behind");
    assert_eq!(load(&out), Loaded::Ok(Box::new(inv.clone())));

    // A second run replaces it whole.
    let mut changed = inv.clone();
    changed.accounts.truncate(1);
    write(&changed, &out).unwrap();
    assert_eq!(load(&out), Loaded::Ok(Box::new(changed)));

    std::fs::write(&out, "{\"format\": 1, \"gathered_at\": ").unwrap();
    match load(&out) {
        Loaded::Bad(m) => assert!(m.starts_with(&format!("{}: ", out.display())), "{m}"),
        other => panic!("{other:?}"),
    }
    let mut v = serde_json::to_value(&inv).unwrap();
    v["format"] = 2.into();
    std::fs::write(&out, v.to_string()).unwrap();
    match load(&out) {
        Loaded::Bad(m) => assert!(m.contains("format 2"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sshd_words_globs_and_tokens() {
    assert_eq!(words("a  \"b c\" d"), ["a", "b c", "d"]);
    assert!(wildcard(b"*.conf", b"hearth.conf"));
    assert!(!wildcard(b"*.conf", b"hearth.txt"));
    let p = PasswdEntry {
        name: "u".into(),
        pw: "x".into(),
        uid: 7,
        gid: 7,
        home: "/home/u".into(),
        shell: "/bin/sh".into(),
    };
    assert_eq!(
        expand(".ssh/authorized_keys", &p),
        "/home/u/.ssh/authorized_keys"
    );
    assert_eq!(expand("/etc/keys/%u.%U%%", &p), "/etc/keys/u.7%");
    assert_eq!(expand("%h/k", &p), "/home/u/k");
}

#[test]
fn key_files_are_never_followed_through_links_nor_read_when_not_regular() {
    let t = appliance();
    // hearth's own home is the supervisor's to write: a link to root's secrets, a FIFO, and a
    // file too large to be a key file.
    t.put(
        "/secret/shadow",
        "root:$y$j9T$SECRET$HASH:20000:0:99999:7:::\n",
    );
    let home = |p: &str| at(t.root(), &format!("/home/carol/.ssh/{p}"));
    std::fs::remove_file(home("authorized_keys")).unwrap();
    std::os::unix::fs::symlink(at(t.root(), "/secret/shadow"), home("authorized_keys")).unwrap();
    let zed = at(t.root(), "/home/zed/.ssh");
    std::fs::create_dir_all(&zed).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        zed.join("authorized_keys"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let big = at(t.root(), "/home/bob/.ssh");
    std::fs::create_dir_all(&big).unwrap();
    std::fs::write(
        big.join("authorized_keys"),
        vec![b'#'; (MAX_KEY_FILE + 1) as usize],
    )
    .unwrap();

    // On a thread: a FIFO that blocked the open would hang the test, not fail it.
    let (tx, rx) = std::sync::mpsc::channel();
    let root = t.root().to_path_buf();
    std::thread::spawn(move || {
        let inv = gather(&root, DateTime::from_timestamp(1_795_651_200, 0).unwrap()).unwrap();
        let _ = tx.send(inv);
    });
    let inv = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the inventory finishes (a FIFO must not block it)");
    let problems: Vec<String> = inv.problems.iter().map(|p| p.to_string()).collect();
    let has = |s: &str| problems.iter().any(|p| p.contains(s));
    assert!(
        has("/home/carol/.ssh/authorized_keys: a symbolic link: not followed"),
        "{problems:?}"
    );
    assert!(
        has("/home/zed/.ssh/authorized_keys: not a regular file"),
        "{problems:?}"
    );
    assert!(
        has("/home/bob/.ssh/authorized_keys: larger than"),
        "{problems:?}"
    );
    let text = serde_json::to_string(&inv).unwrap();
    assert!(!text.contains("SECRET"), "the link's target leaked: {text}");
}
