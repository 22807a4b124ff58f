//! Backups (issue 16) with the real tools: restic 0.18 and restic's REST server in append-only
//! mode on loopback (both from Debian trixie, `scripts/backup-tools`), the supervisor's command
//! line as hearth-backup.service and a family's restore run it, and a server's files laid out
//! in a folder as they are on the box. `make system-test` does the same on the real appliance
//! with PostgreSQL, Synapse and a Matrix client.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One of the tools `scripts/backup-tools` installs (make test-deps runs it).
fn tool(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../var/tools/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/backup-tools (make test does)",
        p.display()
    );
    p
}

use super::supervisor;

fn ok(args: &[&str]) -> String {
    let (code, out, err) = supervisor(args);
    assert_eq!(code, 0, "{args:?}: {out}{err}");
    out
}

/// restic's REST server, append-only, on a loopback port of its own.
struct RestServer {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
}

impl RestServer {
    fn start(max_size: Option<u64>) -> RestServer {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Command::new(tool("restic-rest-server"));
        c.args(["--append-only", "--no-auth", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--path")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(m) = max_size {
            c.arg("--max-size").arg(m.to_string());
        }
        let child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the REST server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        RestServer {
            child,
            url: format!("rest:http://127.0.0.1:{port}/"),
            dir,
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// restic itself, as an operator (or an attacker on the box) would call it.
fn restic(repo: &str, key_file: &Path, args: &[&str]) -> std::process::Output {
    let tmp = tempfile::tempdir().unwrap();
    Command::new(tool("restic"))
        .env("RESTIC_REPOSITORY", repo)
        .env("RESTIC_PASSWORD_FILE", key_file)
        .env("RESTIC_CACHE_DIR", tmp.path())
        .args(args)
        .output()
        .unwrap()
}

/// A server's files as they lie on the box, below `root`.
fn lay_out_server(root: &Path) -> RunningSynapse {
    let put = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    put("etc/hearth/server_name", b"mueller.example\n");
    put("etc/hearth/database", b"sqlite\n");
    put("etc/hearth/firstboot-done", b"");
    put(
        "etc/matrix-synapse/homeserver.yaml",
        b"server_name: mueller.example\n",
    );
    put(
        "etc/matrix-synapse/conf.d/secrets.yaml",
        b"macaroon_secret_key: s3cret\n",
    );
    put(
        "var/lib/matrix-synapse/homeserver.signing.key",
        b"ed25519 a_AbCd 0123456789abcdef\n",
    );
    put(
        "var/lib/matrix-synapse/media/local_content/ab/cd/efghij",
        b"a photo of the garden",
    );
    put(
        "var/lib/matrix-synapse/media/remote_content/other.example/xy/zz",
        b"somebody else's photo",
    );
    put("var/lib/hearth/setup_code", b"ABCD-EFGH");
    put(
        "var/lib/hearth-tls/cert.pem",
        b"-----BEGIN CERTIFICATE-----\n",
    );
    // Synapse is running: another process holds its database open, and the last writes are
    // still in the write-ahead log, not yet in the file.
    let mut synapse = Command::new("sqlite3")
        .arg(root.join("var/lib/matrix-synapse/homeserver.db"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sqlite3 (make test-deps installs it)");
    use std::io::{BufRead, Write};
    synapse
        .stdin
        .as_mut()
        .unwrap()
        .write_all(
            b"PRAGMA journal_mode=WAL;
         CREATE TABLE users(name TEXT PRIMARY KEY, password_hash TEXT);
         CREATE TABLE events(event_id TEXT PRIMARY KEY, room_id TEXT, json TEXT);
         CREATE TABLE e2e_one_time_keys_json(user_id TEXT, device_id TEXT, algorithm TEXT,
             key_id TEXT, ts_added_ms BIGINT, key_json TEXT);
         CREATE TABLE e2e_fallback_keys_json(user_id TEXT, device_id TEXT, algorithm TEXT,
             key_id TEXT, key_json TEXT, used BOOLEAN);
         INSERT INTO users VALUES ('@anna:mueller.example', '$2b$12$hash');
         INSERT INTO events VALUES ('$e1', '!family:mueller.example', '{\"body\":\"hallo\"}');
         INSERT INTO e2e_one_time_keys_json VALUES ('@anna:mueller.example', 'PHONE',
             'signed_curve25519', 'AAAAAQ', 1, '{}');
         INSERT INTO e2e_fallback_keys_json VALUES ('@anna:mueller.example', 'PHONE',
             'signed_curve25519', 'AAAAAg', '{}', 0);
.print ready
",
        )
        .unwrap();
    // `wal` (the pragma's answer), then `ready` once every statement ran.
    let out = std::io::BufReader::new(synapse.stdout.take().unwrap());
    let lines: Vec<String> = out
        .lines()
        .map(Result::unwrap)
        .take_while(|l| l != "ready")
        .collect();
    assert_eq!(lines, ["wal"]);
    RunningSynapse(synapse)
}

/// The process that holds Synapse's SQLite database open, as Synapse does; ended on drop.
struct RunningSynapse(Child);

impl Drop for RunningSynapse {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A video of `bytes` random (incompressible) bytes in the server's local media.
fn add_video(root: &Path, bytes: usize) {
    let mut noise = vec![0u8; bytes];
    getrandom::fill(&mut noise).unwrap();
    std::fs::write(
        root.join("var/lib/matrix-synapse/media/local_content/ab/cd/video"),
        &noise,
    )
    .unwrap();
}

/// A config for a box whose files are below `root`.
fn write_config(
    path: &Path,
    root: &Path,
    keys: &Path,
    usb: &Path,
    cooperative: &str,
    limit_kib: u32,
) {
    std::fs::write(
        path,
        format!(
            "[storage]\npath = {:?}\n\n[backup]\nroot = {:?}\nkey_file = {:?}\nstatus_file = {:?}\n\
             restic = {:?}\nusb_repository = {:?}\ncooperative_repository = {:?}\n\
             limit_upload_kib = {limit_kib}\ntimeout_s = 120\n",
            root.join("var/lib/hearth/hearth.db").display().to_string(),
            root.display().to_string(),
            keys.join("key").display().to_string(),
            keys.join("status.json").display().to_string(),
            tool("restic").display().to_string(),
            usb.display().to_string(),
            cooperative,
        ),
    )
    .unwrap();
}

fn audit_head(db: &Path) -> String {
    let conn = hearth::storage::open_connection(db).unwrap();
    let h = hearth::audit::head(&conn).unwrap();
    format!("{}:{}", h.seq, h.hash)
}

fn status(cfg: &str) -> serde_json::Value {
    serde_json::from_str(&ok(&["backup", "status", "--config", cfg])).unwrap()
}

/// Every file below `dir` with its size and a hash of its bytes, for "nothing on the box changed"
/// (but SQLite's `-shm`: the readers' shared-memory index, which any reader writes to).
fn tree(dir: &Path) -> Vec<(String, usize, u64)> {
    use std::hash::{Hash, Hasher};
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if !p.to_string_lossy().ends_with("-shm") {
                let bytes = std::fs::read(&p).unwrap();
                let mut h = std::collections::hash_map::DefaultHasher::new();
                bytes.hash(&mut h);
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, bytes.len(), h.finish()));
            }
        }
    }
    out.sort();
    out
}

/// The whole path a family meets: no key yet, prepare both targets (the key is shown once),
/// a nightly run, a change after it, the card lost; a restore onto an empty root from the
/// cooperative's store and from the USB disk brings back the same server as it was at the
/// run, with its one-time keys emptied and nothing that was left out on purpose.
#[test]
fn a_server_saved_to_both_targets_comes_back_from_either_on_an_empty_card() {
    let rest = RestServer::start(None);
    let old = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let usb_disk = tempfile::tempdir().unwrap();
    let usb = usb_disk.path().join("hearth");
    let synapse = lay_out_server(old.path());
    let config = keys.path().join("supervisor.toml");
    write_config(&config, old.path(), keys.path(), &usb, &rest.url, 0);
    let cfg = config.to_str().unwrap();
    ok(&[
        "household",
        "add",
        "mueller",
        "Familie Müller",
        "--config",
        cfg,
    ]);

    let (code, _, err) = supervisor(&["backup", "run", "--config", cfg]);
    assert_ne!(code, 0, "a run without a key must fail");
    assert!(err.contains("no backup key yet"), "{err}");

    let out = ok(&["backup", "init", "cooperative", "--config", cfg]);
    let key = std::fs::read_to_string(keys.path().join("key")).unwrap();
    assert!(
        out.contains(&key),
        "the key is shown when it is made: {out}"
    );
    assert_eq!(key.len(), 39, "32 letters in groups of four: {key}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(keys.path().join("key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The disk is not plugged in yet: the cooperative alone.
    ok(&["backup", "run", "--config", cfg]);
    let st = status(cfg);
    assert_eq!(st["targets"]["usb"]["absent"], true, "{st}");
    assert!(
        st["targets"]["cooperative"]["last_good"].is_object(),
        "{st}"
    );

    let out = ok(&["backup", "init", "usb", "--config", cfg]);
    assert!(!out.contains(&key), "the key is shown once only: {out}");
    let head_at_run = audit_head(&old.path().join("var/lib/hearth/hearth.db"));
    ok(&["backup", "run", "--config", cfg]);
    let st = status(cfg);
    for t in ["usb", "cooperative"] {
        let good = &st["targets"][t]["last_good"];
        assert!(good["bytes"].as_u64().unwrap() > 0, "{t}: {st}");
        assert!(st["targets"][t]["error"].is_null(), "{t}: {st}");
    }

    // What a fresh card learns before it restores: the newest complete run's manifest.
    let key_path = keys.path().join("key");
    for repository in [rest.url.clone(), usb.display().to_string()] {
        let out = ok(&[
            "backup",
            "show",
            "--repository",
            &repository,
            "--key-file",
            key_path.to_str().unwrap(),
            "--config",
            cfg,
        ]);
        let m: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(m["server_name"], "mueller.example", "{m}");
        assert_eq!(m["database"], "sqlite", "{m}");
        assert!(m["run"].as_str().unwrap().starts_with("run-"), "{m}");
        assert_eq!(
            format!("{}:{}", m["audit_seq"], m["audit_hash"].as_str().unwrap()),
            head_at_run,
            "the run's audit head"
        );
    }

    // After the run: a household more; then the card dies.
    ok(&[
        "household",
        "add",
        "schmidt",
        "Familie Schmidt",
        "--config",
        cfg,
    ]);
    drop(synapse);
    drop(old);

    let key_file = keys.path().join("key");
    for repository in [rest.url.clone(), usb.display().to_string()] {
        let new = tempfile::tempdir().unwrap();
        let new_keys = tempfile::tempdir().unwrap();
        let new_config = new_keys.path().join("supervisor.toml");
        write_config(&new_config, new.path(), new_keys.path(), &usb, &rest.url, 0);
        let ncfg = new_config.to_str().unwrap();
        let out = ok(&[
            "backup",
            "restore",
            "--repository",
            &repository,
            "--key-file",
            key_file.to_str().unwrap(),
            "--config",
            ncfg,
        ]);
        assert!(out.contains("mueller.example"), "{out}");
        let root = new.path();
        let read = |rel: &str| std::fs::read(root.join(rel)).unwrap();
        assert_eq!(read("etc/hearth/server_name"), b"mueller.example\n");
        assert_eq!(
            read("var/lib/matrix-synapse/homeserver.signing.key"),
            b"ed25519 a_AbCd 0123456789abcdef\n"
        );
        assert_eq!(
            read("etc/matrix-synapse/conf.d/secrets.yaml"),
            b"macaroon_secret_key: s3cret\n"
        );
        assert_eq!(
            read("var/lib/matrix-synapse/media/local_content/ab/cd/efghij"),
            b"a photo of the garden"
        );
        for left_out in [
            "var/lib/matrix-synapse/media/remote_content",
            "var/lib/hearth/setup_code",
            "etc/hearth/firstboot-done",
        ] {
            assert!(!root.join(left_out).exists(), "{left_out} came back");
        }
        // Synapse's database: what was written (the log's last writes too), keys emptied.
        let db =
            rusqlite::Connection::open(root.join("var/lib/matrix-synapse/homeserver.db")).unwrap();
        let count = |t: &str| -> i64 {
            db.query_row(&format!("SELECT count(*) FROM {t}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(count("users"), 1);
        assert_eq!(count("events"), 1);
        assert_eq!(
            count("e2e_one_time_keys_json"),
            0,
            "one-time keys handed out twice"
        );
        assert_eq!(count("e2e_fallback_keys_json"), 0);
        // The supervisor's database as it was at the run; the audit log verifies with its head.
        let listing = ok(&["household", "list", "--config", ncfg]);
        assert!(listing.contains("mueller"), "{listing}");
        assert!(
            !listing.contains("schmidt"),
            "a change after the run: {listing}"
        );
        ok(&["audit", "verify", "--head", &head_at_run, "--config", ncfg]);
        // The next nights go on with the key the family typed in.
        assert_eq!(
            std::fs::read_to_string(new_keys.path().join("key")).unwrap(),
            key
        );
    }

    // A wrong recovery key: a clear error, nothing written.
    let wrong = keys.path().join("wrong");
    std::fs::write(&wrong, "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH").unwrap();
    let new = tempfile::tempdir().unwrap();
    let new_keys = tempfile::tempdir().unwrap();
    let new_config = new_keys.path().join("supervisor.toml");
    write_config(&new_config, new.path(), new_keys.path(), &usb, &rest.url, 0);
    let (code, _, err) = supervisor(&[
        "backup",
        "restore",
        "--repository",
        &rest.url,
        "--key-file",
        wrong.to_str().unwrap(),
        "--config",
        new_config.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("this recovery key does not open"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(tree(new.path()).is_empty(), "a failed restore wrote files");
    let (code, out, err) = supervisor(&[
        "backup",
        "show",
        "--repository",
        &rest.url,
        "--key-file",
        wrong.to_str().unwrap(),
        "--config",
        new_config.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("this recovery key does not open"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");

    // Whoever holds the box (and its key) cannot delete the cooperative's copy.
    let out = restic(
        &rest.url,
        &key_file,
        &["forget", "--keep-last", "1", "--prune"],
    );
    assert!(
        !out.status.success(),
        "the append-only store deleted snapshots"
    );
    let out = restic(&rest.url, &key_file, &["snapshots", "--json"]);
    let snaps: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        snaps.len(),
        8,
        "two runs of four snapshots each are all there"
    );
    let out = restic(&rest.url, &key_file, &["check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// hearth-backup.service killed in the middle of a run (power cut, `kill -9` of its whole
/// group as systemd does): the next run works and the repository checks clean.
#[test]
fn a_run_killed_halfway_leaves_a_repository_the_next_run_uses_and_that_checks_clean() {
    let rest = RestServer::start(None);
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let _synapse = lay_out_server(root.path());
    // Enough media that a slow run is still uploading when it is killed.
    add_video(root.path(), 6 << 20);
    let usb = keys.path().join("no-disk/hearth");
    let config = keys.path().join("supervisor.toml");
    write_config(&config, root.path(), keys.path(), &usb, &rest.url, 512);
    let cfg = config.to_str().unwrap();
    ok(&[
        "household",
        "add",
        "mueller",
        "Familie Müller",
        "--config",
        cfg,
    ]);
    ok(&["backup", "init", "cooperative", "--config", cfg]);

    use std::os::unix::process::CommandExt;
    let mut run = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(["backup", "run", "--config", cfg])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Halfway: restic holds its lock and has sent some of the media's data.
    let repo = rest.dir.path();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let data: u64 = walk_size(&repo.join("data"));
        let locks = std::fs::read_dir(repo.join("locks"))
            .map(|d| d.count())
            .unwrap_or(0);
        if locks > 0 && data > 1 << 20 {
            break;
        }
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "the run never got halfway");
        std::thread::sleep(Duration::from_millis(50));
    }
    let group = rustix::process::Pid::from_child(&run);
    let children = children_of(run.id());
    assert!(!children.is_empty(), "restic runs");
    rustix::process::kill_process_group(group, rustix::process::Signal::KILL).unwrap();
    run.wait().unwrap();
    // Gone for good (reaped), as they are under systemd by the next night.
    let deadline = Instant::now() + Duration::from_secs(10);
    while children
        .iter()
        .any(|pid| Path::new(&format!("/proc/{pid}")).exists())
    {
        assert!(Instant::now() < deadline, "restic outlived its kill");
        std::thread::sleep(Duration::from_millis(20));
    }
    let locks = std::fs::read_dir(repo.join("locks")).unwrap().count();
    assert!(locks > 0, "a killed restic leaves its lock behind");

    // The next night, at full speed.
    write_config(&config, root.path(), keys.path(), &usb, &rest.url, 0);
    ok(&["backup", "run", "--config", cfg]);
    let st = status(cfg);
    assert!(
        st["targets"]["cooperative"]["last_good"].is_object(),
        "{st}"
    );
    let out = restic(&rest.url, &keys.path().join("key"), &["check"]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn walk_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| {
            if p.is_dir() {
                walk_size(&p)
            } else {
                p.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// A tmpfs of `size` mounted for the test (the USB disk that fills up), unmounted after.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={size}"))
            .arg("hearth-test-usb")
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success(), "mount a tmpfs (make test runs as root)");
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Both targets full — the USB disk out of space, the cooperative's store over its quota
/// (HTTP 507, which restic alone would retry for many minutes): each run ends soon with a
/// clear error per target, the status file says it, and nothing on the box changed.
#[test]
fn a_full_target_gets_a_clear_error_soon_and_nothing_on_the_box_is_lost() {
    let rest = RestServer::start(Some(2 << 20));
    let disk = SmallDisk::mount("3m");
    let root = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let _synapse = lay_out_server(root.path());
    add_video(root.path(), 8 << 20);
    let usb = disk.0.path().join("hearth");
    let config = keys.path().join("supervisor.toml");
    write_config(&config, root.path(), keys.path(), &usb, &rest.url, 0);
    let cfg = config.to_str().unwrap();
    ok(&[
        "household",
        "add",
        "mueller",
        "Familie Müller",
        "--config",
        cfg,
    ]);
    ok(&["backup", "init", "usb", "--config", cfg]);
    ok(&["backup", "init", "cooperative", "--config", cfg]);
    let before = tree(root.path());
    let head = audit_head(&root.path().join("var/lib/hearth/hearth.db"));

    let (code, _, err) = supervisor(&["backup", "run", "--config", cfg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!(
            "backup usb: the backup target {} is full",
            usb.display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "backup cooperative: the backup target {} is full",
            rest.url
        )),
        "{err}"
    );
    let st = status(cfg);
    for t in ["usb", "cooperative"] {
        assert!(
            st["targets"][t]["error"]
                .as_str()
                .unwrap()
                .ends_with("is full"),
            "{st}"
        );
        assert!(st["targets"][t]["last_good"].is_null(), "{st}");
    }
    assert_eq!(tree(root.path()), before, "the run changed the box's files");
    ok(&["audit", "verify", "--head", &head, "--config", cfg]);
}
