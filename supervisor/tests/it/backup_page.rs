//! The backups on the page, against a real Synapse (issue 16): every member sees the last good
//! backup, its size and target, the next run and each target's state (from the status file
//! hearth-backup.service writes); a backup that is two days old is a warning; only a server admin
//! starts a run now (CSRF; a member's attempt is 403 and a `denied` entry); a box without
//! backups says so; both languages.

use super::invite::{page_with, Page};
use super::synapse::Synapse;
use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use hearth::audit::{Action, Actor};
use hearth::backup::run::{Good, Status, TargetStatus};
use hearth::backup_usb::Sources;
use hearth::health::unit::JobOutcome;
use hearth::http::backup_page::{BackupUnits, Backups, UsbSetup};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// systemd's side as the page sees it: the timer's next elapse, and the units started.
struct Units {
    next: Option<i64>,
    started: AtomicUsize,
    names: std::sync::Mutex<Vec<&'static str>>,
    run: tokio::sync::Notify,
}

impl BackupUnits for Units {
    fn next_run(&self) -> BoxFuture<'_, Result<Option<i64>, String>> {
        Box::pin(async move { Ok(self.next) })
    }
    fn running(&self) -> BoxFuture<'_, Result<bool, String>> {
        Box::pin(async move { Ok(false) })
    }
    fn start(&self, unit: &'static str) -> BoxFuture<'_, Result<JobOutcome, String>> {
        Box::pin(async move {
            self.names.lock().unwrap().push(unit);
            self.started.fetch_add(1, Ordering::SeqCst);
            self.run.notify_one();
            Ok(JobOutcome::Done)
        })
    }
}

async fn backup_page(
    s: &Synapse,
    members: &[&str],
    status: Option<&Status>,
    next: Option<i64>,
) -> (Page, Arc<Units>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("status.json");
    let usb_dir = dir.path().to_path_buf();
    if let Some(st) = status {
        st.save(&file).unwrap();
    }
    let units = Arc::new(Units {
        next,
        started: AtomicUsize::new(0),
        names: Default::default(),
        run: tokio::sync::Notify::new(),
    });
    let u = units.clone();
    let p = page_with(s, members, move |web| {
        web.backups = Some(Arc::new(Backups {
            status_file: file,
            units: Some(u as Arc<dyn BackupUnits>),
            tasks: tokio_util::task::TaskTracker::new(),
            usb: Some(usb_setup(&usb_dir)),
            // The cooperative's store is a target (as an enrolment with a store makes it).
            config: Some(
                hearth::config::Config::parse(
                    "supervisor.toml",
                    "[backup]\ncooperative_repository = \"rest:http://127.0.0.1:9/box/\"\n",
                )
                .unwrap()
                .backup,
            ),
        }));
    })
    .await;
    (p, units, dir)
}

/// The USB part's files under `dir`: a `/sys` with no disk yet, udev's data, the mounts.
fn usb_setup(dir: &std::path::Path) -> UsbSetup {
    std::fs::create_dir_all(dir.join("sys/block")).unwrap();
    std::fs::create_dir_all(dir.join("udev")).unwrap();
    std::fs::write(dir.join("mounts"), "/dev/mmcblk0p2 / ext4 rw 0 0\n").unwrap();
    UsbSetup {
        sources: Sources {
            sys: dir.join("sys"),
            udev_data: dir.join("udev"),
            mounts: dir.join("mounts"),
        },
        repository: dir.join("media/hearth"),
        request_file: dir.join("backup-setup-request"),
        status_file: dir.join("usb-status.json"),
        key_file: dir.join("backup-key-once"),
    }
}

/// A USB stick `sda` (32 GB) plugged in, as the kernel lays it out in `/sys`.
fn plug_in_stick(dir: &std::path::Path) {
    let dev =
        dir.join("sys/devices/platform/scb/usb2/2-2/2-2:1.0/host0/target0:0:0/0:0:0:0/block/sda");
    std::fs::create_dir_all(dev.join("device")).unwrap();
    std::fs::write(dev.join("size"), "62521344\n").unwrap();
    std::fs::write(dev.join("dev"), "8:0\n").unwrap();
    std::fs::write(dev.join("device/vendor"), "SanDisk \n").unwrap();
    std::fs::write(dev.join("device/model"), "Ultra\n").unwrap();
    std::os::unix::fs::symlink(
        "../devices/platform/scb/usb2/2-2/2-2:1.0/host0/target0:0:0/0:0:0:0/block/sda",
        dir.join("sys/block/sda"),
    )
    .unwrap();
}

fn status(good_at: i64, bytes: u64) -> Status {
    let mut st = Status::default();
    st.targets.insert(
        "cooperative".into(),
        TargetStatus {
            repository: "rest:https://backup.coop.example/".into(),
            last_good: Some(Good {
                run: "run-20261205T031500Z".into(),
                at_s: good_at,
                bytes,
                added: 120_000,
            }),
            last_attempt_s: Some(good_at),
            error: None,
            absent: false,
        },
    );
    st.targets.insert(
        "usb".into(),
        TargetStatus {
            repository: "/media/hearth-backup/hearth".into(),
            last_attempt_s: Some(good_at),
            error: Some("usb: the disk is full (no space left on device)".into()),
            ..Default::default()
        },
    );
    st
}

#[tokio::test]
async fn backup_page_members_see_the_last_good_backup_and_only_an_admin_starts_one() {
    let s = Synapse::shared();
    let (r, m) = (s.unique("root"), s.unique("mia"));
    let root = s.register(&r, true).await;
    let mia = s.register(&m, false).await;
    let now = chrono::Utc::now().timestamp();
    let next = now + 6 * 3600;
    let (p, units, _dir) = backup_page(
        s,
        &[&root.user_id, &mia.user_id],
        Some(&status(now - 3600, 8_700_000)),
        Some(next),
    )
    .await;
    let root_s = p.session(&r).await;
    let mia_s = p.session(&m).await;

    // A member sees the state: the last good run, its size, where, the next run, each target.
    let seen = p
        .call("GET", "/api/v1/backup", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    assert_eq!(seen.json["set_up"], true);
    assert_eq!(seen.json["next_run_at"], next);
    assert_eq!(seen.json["last_good"]["target"], "cooperative");
    assert_eq!(seen.json["last_good"]["bytes"], 8_700_000);
    let usb = &seen.json["targets"][1];
    assert_eq!(usb["name"], "usb");
    assert_eq!(
        usb["error"],
        "usb: the disk is full (no space left on device)"
    );
    let html = p
        .call("GET", "/backup", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(html.text.contains("Last good backup: "), "{}", html.text);
    assert!(
        html.text.contains("8.7 MB, to The cooperative&#39;s store"),
        "{}",
        html.text
    );
    assert!(html.text.contains("failed: usb: the disk is full"));
    assert!(html.text.contains("Next backup: "));
    assert!(
        !html.text.contains("id=\"backup-stale\""),
        "an hour old is fresh"
    );
    assert!(
        !html.text.contains("id=\"backup-run\""),
        "a member gets no button"
    );
    assert!(
        html.text.contains("href=\"/backup\""),
        "in the member's nav"
    );

    // A member may not start one: 403 and a `denied` entry; nothing started.
    let no = p
        .call(
            "POST",
            "/api/v1/backup/run",
            &[("cookie", &mia_s.0), ("x-csrf-token", &mia_s.1)],
            None,
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN, "{}", no.text);
    let last = p.entries().pop().unwrap();
    assert_eq!(last.action, Action::Denied);
    assert_eq!(last.actor, Actor::User(mia.user_id.clone()));
    assert_eq!(last.detail["what"], "backup_run");
    // Without the session's CSRF token, not even an admin.
    let forged = p.form("/backup", &[("cookie", &root_s.0)], &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(units.started.load(Ordering::SeqCst), 0);

    // The admin's button starts a run (awaited off the request) and the page says so.
    let html = p
        .call("GET", "/backup", &[("cookie", &root_s.0)], None)
        .await;
    assert!(html.text.contains("id=\"backup-run\""), "{}", html.text);
    let go = p
        .form("/backup", &[("cookie", &root_s.0)], &[("csrf", &root_s.1)])
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.text);
    tokio::time::timeout(Duration::from_secs(5), units.run.notified())
        .await
        .expect("the run was started");
    assert_eq!(units.started.load(Ordering::SeqCst), 1);
    assert_eq!(*units.names.lock().unwrap(), ["hearth-backup.service"]);
    let runs: Vec<_> = p
        .entries()
        .into_iter()
        .filter(|e| e.action == Action::Backup)
        .collect();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].detail["what"], "run");
    assert_eq!(runs[0].actor, Actor::User(root.user_id.clone()));
    let after = p
        .call(
            "GET",
            "/backup?done=started",
            &[("cookie", &root_s.0)],
            None,
        )
        .await;
    assert!(
        after.text.contains("The backup has started."),
        "{}",
        after.text
    );
    let api = p
        .call(
            "POST",
            "/api/v1/backup/run",
            &[("cookie", &root_s.0), ("x-csrf-token", &root_s.1)],
            None,
        )
        .await;
    assert_eq!(api.json, json!({"started": true}), "{}", api.text);
}

#[tokio::test]
async fn backup_page_warns_after_two_days_and_says_when_nothing_is_set_up_in_german() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let now = chrono::Utc::now().timestamp();
    let (p, _units, _dir) = backup_page(
        s,
        &[&root.user_id],
        Some(&status(now - 3 * 86_400 - 60, 1_250_000_000)),
        None,
    )
    .await;
    let root_s = p.session(&r).await;
    let html = p
        .call(
            "GET",
            "/backup",
            &[("cookie", &root_s.0), ("accept-language", "de")],
            None,
        )
        .await;
    assert!(
        html.text.contains("Sicherungen dieses Servers"),
        "{}",
        html.text
    );
    assert!(
        html.text
            .contains("Seit 3 Tagen ist keine Sicherung gelungen"),
        "{}",
        html.text
    );
    assert!(html.text.contains("1.2 GB"));
    assert!(html
        .text
        .contains("Wann die nächste Sicherung läuft, ist hier nicht bekannt."));

    // A box without a status file: not set up, in words, and no button.
    let (p, _units, _dir) = backup_page(s, &[&root.user_id], None, Some(now)).await;
    let root_s = p.session(&r).await;
    let html = p
        .call("GET", "/backup", &[("cookie", &root_s.0)], None)
        .await;
    assert!(
        html.text.contains("id=\"backup-not-set-up\""),
        "{}",
        html.text
    );
    assert!(!html.text.contains("id=\"backup-run\""));
    let api = p
        .call("GET", "/api/v1/backup", &[("cookie", &root_s.0)], None)
        .await;
    assert_eq!(api.json["set_up"], false);
    assert_eq!(api.json["last_good"], serde_json::Value::Null);
    // Signed out: nothing.
    let anon = p.call("GET", "/api/v1/backup", &[], None).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn backup_page_an_admin_erases_the_confirmed_usb_disk_and_prints_the_key_once() {
    use std::os::unix::fs::PermissionsExt;
    let s = Synapse::shared();
    let (r, m) = (s.unique("root"), s.unique("mia"));
    let root = s.register(&r, true).await;
    let mia = s.register(&m, false).await;
    let (p, units, dir) = backup_page(s, &[&root.user_id, &mia.user_id], None, None).await;
    let root_s = p.session(&r).await;
    let mia_s = p.session(&m).await;
    let get = |who: &(String, String), path: &'static str| {
        let cookie = who.0.clone();
        let p = &p;
        async move { p.call("GET", path, &[("cookie", &cookie)], None).await }
    };

    // Nothing plugged in: the admin is told to plug a disk in; a member sees no disk part.
    let html = get(&root_s, "/backup").await;
    assert!(html.text.contains("id=\"usb-none\""), "{}", html.text);
    assert!(!get(&mia_s, "/backup").await.text.contains("usb-title"));

    // A stick: offered by its name and size, with the box to tick.
    plug_in_stick(dir.path());
    let html = get(&root_s, "/backup").await;
    assert!(
        html.text
            .contains("Erase SanDisk Ultra (32.0 GB) and use it only for this server"),
        "{}",
        html.text
    );
    let bytes = (62_521_344u64 * 512).to_string();
    let request = dir.path().join("backup-setup-request");

    // Not ticked, or another size than the one shown: nothing is written, nothing started.
    let unticked = p
        .form(
            "/backup/usb",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("disk", "sda"), ("bytes", &bytes)],
        )
        .await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    assert!(unticked.text.contains("Tick the box"), "{}", unticked.text);
    let other = p
        .form(
            "/backup/usb",
            &[("cookie", &root_s.0)],
            &[
                ("csrf", &root_s.1),
                ("disk", "sda"),
                ("bytes", "1000"),
                ("erase", "on"),
            ],
        )
        .await;
    assert!(
        other.text.contains("not plugged in any more"),
        "{}",
        other.text
    );
    // A member may not: 403 and a `denied` entry.
    let no = p
        .form(
            "/backup/usb",
            &[("cookie", &mia_s.0)],
            &[
                ("csrf", &mia_s.1),
                ("disk", "sda"),
                ("bytes", &bytes),
                ("erase", "on"),
            ],
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    assert_eq!(
        p.entries().pop().unwrap().detail["what"],
        "backup_prepare_disk"
    );
    assert!(!request.exists());
    assert_eq!(units.started.load(Ordering::SeqCst), 0);

    // Ticked: the request for the root side (0600), the unit started, an audit entry.
    let go = p
        .form(
            "/backup/usb",
            &[("cookie", &root_s.0)],
            &[
                ("csrf", &root_s.1),
                ("disk", "sda"),
                ("bytes", &bytes),
                ("erase", "on"),
            ],
        )
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.text);
    assert_eq!(
        std::fs::read_to_string(&request).unwrap(),
        format!("target=usb\ndisk=sda\nbytes={bytes}\n")
    );
    assert_eq!(
        std::fs::metadata(&request).unwrap().permissions().mode() & 0o777,
        0o600
    );
    tokio::time::timeout(Duration::from_secs(5), units.run.notified())
        .await
        .expect("the disk's unit was started");
    assert_eq!(
        *units.names.lock().unwrap(),
        ["hearth-backup-setup.service"]
    );
    let e = p.entries().pop().unwrap();
    assert_eq!(
        (e.action, e.detail["what"].as_str()),
        (Action::Backup, Some("prepare_disk"))
    );
    assert_eq!(e.detail["disk"], "SanDisk Ultra (32.0 GB)");

    // The root side's progress and failure, in words.
    std::fs::write(
        dir.path().join("usb-status.json"),
        r#"{"state":"running","step":"making the file system","disk":"sda","error":null}"#,
    )
    .unwrap();
    assert!(get(&root_s, "/backup")
        .await
        .text
        .contains("Preparing the disk: making the file system"));
    std::fs::write(
        dir.path().join("usb-status.json"),
        r#"{"state":"failed","step":"checking the disk","disk":"sda","error":"sda is in use (/dev/sda1 is mounted): it is not erased"}"#,
    )
    .unwrap();
    assert!(get(&root_s, "/backup")
        .await
        .text
        .contains("Preparing the disk failed: sda is in use"));

    // The key, once: the admin is told, sees it on a printable page (audited), says it is on
    // paper, and it is gone from the box. A member never sees it.
    let key_file = dir.path().join("backup-key-once");
    std::fs::write(&key_file, "ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789\n").unwrap();
    assert!(get(&root_s, "/backup")
        .await
        .text
        .contains("id=\"backup-key-link\""));
    assert!(!get(&mia_s, "/backup")
        .await
        .text
        .contains("backup-key-link"));
    let denied = get(&mia_s, "/backup/key").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(!denied.text.contains("ABCD-EFGH"));
    let page = get(&root_s, "/backup/key").await;
    assert!(
        page.text
            .contains("ABCD-EFGH-JKMN-PQRS-TVWX-YZ01-2345-6789"),
        "{}",
        page.text
    );
    assert!(page.text.contains("id=\"print-key\""));
    let shown = p
        .entries()
        .into_iter()
        .filter(|e| e.action == Action::Backup && e.detail["what"] == "key_shown")
        .count();
    assert_eq!(shown, 1);
    let done = p
        .form(
            "/backup/key",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.text);
    assert!(!key_file.exists());
    let after = get(&root_s, "/backup/key").await;
    assert!(after.text.contains("id=\"key-none\""), "{}", after.text);
    assert!(!after.text.contains("ABCD-EFGH"));

    // The cooperative's store, never used yet: offered; pressed, its request and the same unit.
    let html = get(&root_s, "/backup").await;
    assert!(
        html.text.contains("id=\"backup-cooperative\""),
        "{}",
        html.text
    );
    assert!(!get(&mia_s, "/backup")
        .await
        .text
        .contains("backup-cooperative"));
    let coop = p
        .form(
            "/backup/cooperative",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1)],
        )
        .await;
    assert_eq!(coop.status, StatusCode::SEE_OTHER, "{}", coop.text);
    assert_eq!(
        std::fs::read_to_string(&request).unwrap(),
        "target=cooperative\n"
    );
    tokio::time::timeout(Duration::from_secs(5), async {
        while units.names.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the unit was started for the cooperative's store");
    let e = p.entries().pop().unwrap();
    assert_eq!(e.detail["what"], "setup_cooperative");
}
