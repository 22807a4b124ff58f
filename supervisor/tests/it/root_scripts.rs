//! Root's scripts that write into `/var/lib/hearth`, a folder user `hearth` owns: whatever the
//! supervisor's account planted there (a symlink to a file root can write, a FIFO), root must
//! neither write through it nor hang on it. The real scripts from `overlays/`, run here as the
//! user the tests run as (root in CI), in a temporary folder standing in for hearth's.

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../overlays/usr/lib/hearth")
        .join(name)
}

fn me() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A file someone else owns that root could write: what a planted link points at.
fn victim(dir: &Path) -> PathBuf {
    let v = dir.join("victim");
    fs::write(&v, "intact\n").unwrap();
    v
}

fn put(dest: &Path, data: &str, mode: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(script("hearthfs.py"))
        .args(["put", dest.to_str().unwrap(), mode, &me()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(data.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn put_replaces_a_planted_link_and_never_writes_through_it() {
    let tmp = tempfile::tempdir().unwrap();
    let v = victim(tmp.path());
    let state = tmp.path().join("state");
    fs::create_dir(&state).unwrap();
    let dest = state.join("admin_token");
    symlink(&v, &dest).unwrap();
    // The old scripts' fixed temporary name, planted too.
    symlink(&v, state.join("admin_token.tmp")).unwrap();

    let out = put(&dest, "secret-token\n", "0400");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(&v).unwrap(),
        "intact\n",
        "wrote through the link"
    );
    let meta = fs::symlink_metadata(&dest).unwrap();
    assert!(meta.file_type().is_file(), "the link is still there");
    assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
    assert_eq!(fs::read_to_string(&dest).unwrap(), "secret-token\n");
    // Nothing left behind but the planted temporary link (untouched) and the file.
    let mut names: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["admin_token", "admin_token.tmp"]);
}

#[test]
fn put_refuses_a_folder_that_is_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    symlink(&elsewhere, tmp.path().join("state")).unwrap();

    let out = put(&tmp.path().join("state/setup_code"), "CODE\n", "0400");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("state/setup_code"), "names the file: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn put_rejects_a_bad_mode_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let out = put(&tmp.path().join("f"), "x", "rw-r");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "hearthfs.py: MODE: not an octal mode: 'rw-r'"
    );
    assert!(!tmp.path().join("f").exists());
}

fn setup_code(state: &Path, boot: &Path) -> Output {
    Command::new(script("setup-code"))
        .env("HEARTH_STATE", state)
        .env("HEARTH_BOOT", boot)
        .env("HEARTH_USER", me())
        .output()
        .unwrap()
}

fn code_in(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    let code = text.trim().to_string();
    let shape = code.len() == 14
        && code.chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 9 {
                c == '-'
            } else {
                "ABCDEFGHJKLMNPQRSTUVWXYZ23456789".contains(c)
            }
        });
    assert!(shape, "not a setup code: {code:?}");
    code
}

#[test]
fn setup_code_renews_an_expired_code_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let v = victim(tmp.path());
    let state = tmp.path().join("state");
    let boot = tmp.path().join("boot");
    fs::create_dir(&state).unwrap();
    fs::create_dir(&boot).unwrap();
    fs::write(boot.join("config.txt"), "").unwrap();

    // First boot: a code, on the card too.
    let out = setup_code(&state, &boot);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = code_in(&state.join("setup_code"));
    let card = fs::read_to_string(boot.join("hearth-setup.txt")).unwrap();
    assert!(card.contains(&first), "{card}");
    // Again with a code in place: nothing changes.
    assert!(setup_code(&state, &boot).status.success());
    assert_eq!(code_in(&state.join("setup_code")), first);

    // The supervisor retired it; hearth's account also planted links at every name root writes.
    fs::rename(state.join("setup_code"), state.join("setup_code.expired")).unwrap();
    fs::write(state.join("setup_code.offered"), "x 604800\n").unwrap();
    symlink(&v, state.join("setup_code")).unwrap();
    symlink(&v, state.join("setup_code.tmp")).unwrap();
    let out = setup_code(&state, &boot);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read_to_string(&v).unwrap(), "intact\n");
    let meta = fs::symlink_metadata(state.join("setup_code")).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o400);
    assert_eq!(meta.uid(), fs::metadata(tmp.path()).unwrap().uid());
    let second = code_in(&state.join("setup_code"));
    assert_ne!(second, first, "a new code");
    assert!(!state.join("setup_code.expired").exists());
    assert!(!state.join("setup_code.offered").exists());
    assert!(fs::read_to_string(boot.join("hearth-setup.txt"))
        .unwrap()
        .contains(&second));
}

/// provision-admin's token reader, loaded from the real script with its file pointed here.
fn read_token(token_file: &Path) -> Output {
    let code = format!(
        "import importlib.machinery, importlib.util, sys\n\
         loader = importlib.machinery.SourceFileLoader('pa', {script:?})\n\
         spec = importlib.util.spec_from_loader('pa', loader)\n\
         pa = importlib.util.module_from_spec(spec)\n\
         loader.exec_module(pa)\n\
         pa.TOKEN_FILE = {file:?}\n\
         print(repr(pa.read_token()))\n",
        script = script("provision-admin").to_str().unwrap(),
        file = token_file.to_str().unwrap(),
    );
    let mut child = Command::new("python3")
        .args(["-c", &code])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A FIFO would hang a plain open(): give it 10 s, then fail rather than hang the suite.
    for _ in 0..100 {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    panic!(
        "provision-admin's token reader hung on {}",
        token_file.display()
    );
}

#[test]
fn provision_admin_reads_no_link_fifo_or_device_as_its_token() {
    let tmp = tempfile::tempdir().unwrap();
    let v = tmp.path().join("victim");
    fs::write(&v, "root-only contents\n").unwrap();

    let link = tmp.path().join("token-link");
    symlink(&v, &link).unwrap();
    let fifo = tmp.path().join("token-fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    let real = tmp.path().join("token");
    fs::write(&real, "syt_aGVhcnRo_token\n").unwrap();

    for (file, want) in [
        (&link, "None"),
        (&fifo, "None"),
        (&PathBuf::from("/dev/zero"), "None"),
        (&tmp.path().join("absent"), "None"),
        (&real, "'syt_aGVhcnRo_token'"),
    ] {
        let out = read_token(file);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            printed.lines().last().unwrap_or(""),
            want,
            "{}: {printed}",
            file.display()
        );
    }
}

/// `backup-setup` (hearth-backup-setup.service) against a fake `/sys`: it erases nothing unless
/// the request's disk is still a USB disk of the confirmed size with nothing mounted, and a
/// request planted as a symlink is never followed.
#[test]
fn backup_usb_checks_the_disk_again_before_it_erases_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let usb = "devices/platform/scb/usb2/2-2/2-2:1.0/host0/target0:0:0/0:0:0:0/block/sda";
    let sata = "devices/platform/ahci/ata1/host1/target1:0:0/1:0:0:0/block/sdb";
    for (name, path) in [("sda", usb), ("sdb", sata)] {
        fs::create_dir_all(d.join("sys").join(path)).unwrap();
        fs::write(d.join("sys").join(path).join("size"), "1000\n").unwrap();
        fs::create_dir_all(d.join("sys/block")).unwrap();
        symlink(format!("../{path}"), d.join("sys/block").join(name)).unwrap();
    }
    fs::create_dir_all(d.join("dev")).unwrap();
    fs::create_dir_all(d.join("state")).unwrap();
    let request = d.join("state/backup-setup-request");
    let run = |req: Option<&str>, mounts: &str| -> (bool, serde_json::Value) {
        if let Some(r) = req {
            fs::write(&request, r).unwrap();
        }
        fs::write(d.join("mounts"), mounts).unwrap();
        let out = Command::new(script("backup-setup"))
            .env("SYS", d.join("sys"))
            .env("DEV", d.join("dev"))
            .env("MOUNTS", d.join("mounts"))
            .env("REQUEST", &request)
            .env("STATUS_DIR", d.join("status"))
            .env("KEY_ONCE", d.join("state/backup-key-once"))
            .env("HEARTHFS", script("hearthfs.py"))
            .output()
            .unwrap();
        let status = fs::read_to_string(d.join("status/status.json")).unwrap();
        (out.status.success(), serde_json::from_str(&status).unwrap())
    };
    let error = |v: &serde_json::Value| v["error"].as_str().unwrap_or_default().to_string();

    let (ok, st) = run(Some("target=usb\ndisk=sdb\nbytes=512000\n"), "");
    assert!(!ok);
    assert_eq!(st["state"], "failed");
    assert_eq!(error(&st), "sdb is not a USB disk");
    assert!(
        !request.exists(),
        "a request is carried out once, refused or not"
    );

    let (_, st) = run(Some("disk=sda\nbytes=999\n"), "");
    assert!(
        error(&st).starts_with("sda is not the disk that was chosen"),
        "{st}"
    );

    let (_, st) = run(
        Some("disk=sda\nbytes=512000\n"),
        &format!(
            "{}/sda1 /media/fotos vfat rw 0 0\n",
            d.join("dev").display()
        ),
    );
    assert!(error(&st).contains("is in use"), "{st}");

    let (_, st) = run(Some("disk=../../etc/x\nbytes=512000\n"), "");
    assert!(error(&st).contains("is not a USB disk's name"), "{st}");
    let (_, st) = run(Some("disk=sda\nsize=1\n"), "");
    assert!(error(&st).contains("line 2: unknown key 'size'"), "{st}");
    let (_, st) = run(Some("target=cloud\n"), "");
    assert!(
        error(&st).contains("target: 'cloud' is neither usb nor cooperative"),
        "{st}"
    );

    // All checks passed: it stops only because this test's /dev has no block device.
    let (_, st) = run(Some("disk=sda\nbytes=512000\n"), "");
    assert_eq!(st["step"], "checking the disk");
    assert!(
        error(&st).ends_with("/dev/sda is not a block device"),
        "{st}"
    );

    // A request planted as a symlink (to a file the test owns) is neither followed nor kept.
    let v = victim(d);
    symlink(&v, &request).unwrap();
    let (_, st) = run(None, "");
    assert!(error(&st).starts_with("no request"), "{st}");
    assert_eq!(fs::read_to_string(&v).unwrap(), "intact\n");
    assert!(fs::symlink_metadata(&request).is_err());
}
