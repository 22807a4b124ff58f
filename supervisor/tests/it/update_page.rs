//! Updates on the page, against a real Synapse (issue 18): every member sees the release that
//! runs, the last update's outcome and why (root's state file), and a verified newer release
//! with its notes in the page's language; only a server admin installs it now, postpones the
//! nightly update by a week or takes that back (CSRF; a member's attempt is 403 and a `denied`
//! entry; each action an `update` entry); the nightly run honours the postponement.

use super::invite::page_with;
use super::synapse::Synapse;
use axum::http::StatusCode;
use futures_util::future::BoxFuture;
use hearth::audit::{Action, Actor};
use hearth::health::unit::JobOutcome;
use hearth::http::update_page::{Offer, UpdateUnits, Updates};
use hearth::update::manifest::{Manifest, Notes, Payload};
use hearth::update::slots::Slot;
use hearth::update::state::{self, Phase, State};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Units {
    started: Mutex<usize>,
    run: tokio::sync::Notify,
}

impl UpdateUnits for Units {
    fn start(&self) -> BoxFuture<'_, Result<JobOutcome, String>> {
        Box::pin(async move {
            *self.started.lock().unwrap() += 1;
            self.run.notify_one();
            Ok(JobOutcome::Done)
        })
    }
}

fn payload(file: &str) -> Payload {
    Payload {
        file: file.into(),
        download_size: 1,
        size: 1,
        sha256: "0".repeat(64),
        used: None,
    }
}

#[tokio::test]
async fn update_page_members_see_the_outcome_and_only_an_admin_installs_or_postpones() {
    let s = Synapse::shared();
    let (r, m) = (s.unique("root"), s.unique("mia"));
    let root = s.register(&r, true).await;
    let mia = s.register(&m, false).await;
    let dir = tempfile::tempdir().unwrap();
    // The last update was rolled back, and why; release 0.3.0 is offered.
    let now = chrono::Utc::now().timestamp();
    state::save(
        &dir.path().join("update"),
        &State {
            phase: Phase::RolledBack,
            version: "0.2.0".into(),
            from_version: "0.1.0".into(),
            slot: Slot::B,
            since: now - 3600,
            reason: Some("Synapse failed on the new release: crash loop".into()),
            card_bytes: Some(2_700_000_000),
        },
    )
    .unwrap();
    let cmdline = dir.path().join("cmdline");
    std::fs::write(&cmdline, "root=LABEL=RASPIROOT rw\n").unwrap();
    let offer = Arc::new(Mutex::new(Offer::Available {
        manifest: Box::new(Manifest {
            format: 1,
            version: "0.3.0".into(),
            released: "2026-12-06".into(),
            notes: Notes {
                en: "Synapse 1.170: a security fix for media.".into(),
                de: "Synapse 1.170: eine Sicherheitskorrektur für Medien.".into(),
            },
            root: payload("root.ext4.zst"),
            firmware: payload("firmware.tar.zst"),
        }),
    }));
    let units = Arc::new(Units::default());
    let postpone = dir.path().join("update-postponed");
    let (u, st, pf, o) = (
        units.clone(),
        dir.path().join("update"),
        postpone.clone(),
        offer.clone(),
    );
    let p = page_with(s, &[&root.user_id, &mia.user_id], move |web| {
        web.updates = Some(Arc::new(Updates {
            state_dir: st,
            postpone_file: pf,
            cmdline,
            running_version: "0.1.0".into(),
            commit_after_s: 300,
            source_set: true,
            offer: o,
            units: Some(u as Arc<dyn UpdateUnits>),
            tasks: tokio_util::task::TaskTracker::new(),
        }));
    })
    .await;
    let root_s = p.session(&r).await;
    let mia_s = p.session(&m).await;

    // A member: what runs, what happened and why, what is offered; in German too; no buttons.
    let html = p
        .call("GET", "/update", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(html.status, StatusCode::OK, "{}", html.text);
    assert!(
        html.text
            .contains("This server runs hearth 0.1.0 (card half A)."),
        "{}",
        html.text
    );
    assert!(
        html.text
            .contains("The update to release 0.2.0 was rolled back on "),
        "{}",
        html.text
    );
    assert!(html
        .text
        .contains("Why: Synapse failed on the new release: crash loop"));
    assert!(html
        .text
        .contains("Release 0.3.0 (2026-12-06) is available."));
    assert!(html
        .text
        .contains("Synapse 1.170: a security fix for media."));
    assert!(html.text.contains("installed tonight"));
    assert!(
        !html.text.contains("id=\"update-now\""),
        "a member gets no button"
    );
    assert!(
        html.text.contains("href=\"/update\""),
        "in the member's nav"
    );
    let de = p
        .call(
            "GET",
            "/update",
            &[("cookie", &mia_s.0), ("accept-language", "de")],
            None,
        )
        .await;
    assert!(
        de.text
            .contains("Die Aktualisierung auf Version 0.2.0 wurde am "),
        "{}",
        de.text
    );
    assert!(de.text.contains("eine Sicherheitskorrektur für Medien"));
    let api = p
        .call("GET", "/api/v1/update", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(api.json["last"]["phase"], "rolled_back", "{}", api.text);
    assert_eq!(api.json["offer"]["state"], "available");
    assert_eq!(api.json["offer"]["manifest"]["version"], "0.3.0");
    assert_eq!(api.json["slot"], "A");

    // A member may not: 403 and a `denied` entry, nothing started or postponed.
    let no = p
        .form(
            "/update",
            &[("cookie", &mia_s.0)],
            &[("csrf", &mia_s.1), ("action", "now")],
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN, "{}", no.text);
    let last = p.entries().pop().unwrap();
    assert_eq!(
        (last.action, last.actor),
        (Action::Denied, Actor::User(mia.user_id.clone()))
    );
    // Without the session's CSRF token, not even an admin.
    let forged = p
        .form(
            "/update",
            &[("cookie", &root_s.0)],
            &[("action", "postpone")],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert!(!postpone.exists());

    // The admin postpones: a week from now, the page says so, and the nightly run waits.
    let html = p
        .call("GET", "/update", &[("cookie", &root_s.0)], None)
        .await;
    assert!(
        html.text.contains("id=\"update-now\"") && html.text.contains("id=\"update-postpone\""),
        "{}",
        html.text
    );
    let go = p
        .form(
            "/update",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("action", "postpone")],
        )
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.text);
    let until: i64 = std::fs::read_to_string(&postpone).unwrap().parse().unwrap();
    assert!((until - (now + 7 * 86_400)).abs() < 60, "{until}");
    let html = p
        .call(
            "GET",
            "/update?done=postpone",
            &[("cookie", &root_s.0)],
            None,
        )
        .await;
    assert!(html.text.contains("Updates are postponed for a week."));
    assert!(html.text.contains("Postponed by a server admin until "));
    assert!(html.text.contains("id=\"update-resume\""));
    assert_eq!(
        hearth::http::update_page::postponed_until(&postpone, now),
        Some(until)
    );
    // Taken back, then "now": the unit starts (off the request), the postponement is gone.
    let back = p
        .call(
            "POST",
            "/api/v1/update",
            &[("cookie", &root_s.0), ("x-csrf-token", &root_s.1)],
            Some(serde_json::json!({"action": "resume"})),
        )
        .await;
    assert_eq!(back.json["done"], "resume", "{}", back.text);
    assert!(!postpone.exists());
    p.form(
        "/update",
        &[("cookie", &root_s.0)],
        &[("csrf", &root_s.1), ("action", "postpone")],
    )
    .await;
    let now_go = p
        .form(
            "/update",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("action", "now")],
        )
        .await;
    assert_eq!(now_go.status, StatusCode::SEE_OTHER);
    tokio::time::timeout(Duration::from_secs(5), units.run.notified())
        .await
        .expect("the update was started");
    assert_eq!(*units.started.lock().unwrap(), 1);
    assert!(
        !postpone.exists(),
        "\"now\" must not wait for a postponement"
    );
    let acts: Vec<String> = p
        .entries()
        .into_iter()
        .filter(|e| e.action == Action::Update)
        .map(|e| e.detail["what"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(acts, ["postpone", "resume", "postpone", "now"]);
}

#[tokio::test]
async fn the_nightly_run_waits_while_postponed() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("supervisor.toml");
    let postpone = dir.path().join("postponed");
    std::fs::write(
        &cfg,
        format!(
            "[update]\nsource = \"{}\"\npostpone_file = \"{}\"\nstate_dir = \"{}\"\nkey = \"{}\"\ndisk = \"{}\"\n",
            dir.path().join("nowhere").display(),
            postpone.display(),
            dir.path().join("state").display(),
            dir.path().join("update.pub").display(),
            dir.path().join("p{}").display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("update.pub"),
        "untrusted comment: a key\nRWQ\n",
    )
    .unwrap();
    let until = chrono::Utc::now().timestamp() + 3600;
    std::fs::write(&postpone, until.to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(["update", "run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("postponed by a server admin until"), "{err}");
    assert!(
        !dir.path().join("state").exists(),
        "a postponed run wrote a state"
    );
    // Over: it goes on (and here finds no release where the source points).
    std::fs::write(&postpone, (until - 7200).to_string()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(["update", "run", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nowhere"), "{err}");
}
