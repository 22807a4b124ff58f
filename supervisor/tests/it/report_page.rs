//! The monthly energy report on the page, against a real Synapse (issue 14): every member sees
//! the next report exactly as it will be sent and the outbox; only a server admin switches it
//! (CSRF, one audited `report_choice` per change, the sender woken); a member's attempt is 403
//! and a `denied` entry; both languages.

use super::invite::{page_with, Answer, Page};
use super::synapse::Synapse;
use axum::http::StatusCode;
use hearth::audit::{Action, Actor};
use hearth::config::ReportConfig;
use hearth::http::report_page::Reports;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The page with its report doors; the sender's wake-up to watch.
async fn report_page(
    s: &Synapse,
    members: &[&str],
    allowed: bool,
) -> (Page, Arc<tokio::sync::Notify>) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let w = wake.clone();
    let p = page_with(s, members, move |web| {
        web.reports = Some(Arc::new(Reports {
            config: ReportConfig {
                enabled: allowed,
                epsilon: 1.0,
                supplier: Some("Bürgerwerke eG".into()),
                token_wait_s: 86_400,
                retry_s: 60,
            },
            hardware: report_wire::Hardware::Pi4,
            relay_config: web.maintenance_file.with_file_name("relay.toml"),
            wake: w,
        }));
    })
    .await;
    (p, wake)
}

/// `POST /api/v1/report` with `body`, as the session (cookie, CSRF token).
async fn post_choice(p: &Page, (cookie, csrf): &(String, String), body: Value) -> Answer {
    p.call(
        "POST",
        "/api/v1/report",
        &[("cookie", cookie), ("x-csrf-token", csrf)],
        Some(body),
    )
    .await
}

fn choices(p: &Page) -> Vec<hearth::audit::Entry> {
    p.entries()
        .into_iter()
        .filter(|e| e.action == Action::ReportChoice)
        .collect()
}

/// Whether the sender was woken (a stored permit is taken at once).
async fn woken(wake: &tokio::sync::Notify) -> bool {
    tokio::time::timeout(Duration::from_millis(50), wake.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn report_page_a_server_admin_switches_it_a_member_sees_it_and_may_not() {
    let s = Synapse::shared();
    let (r, m) = (s.unique("root"), s.unique("mia"));
    let root = s.register(&r, true).await;
    let mia = s.register(&m, false).await;
    let (p, wake) = report_page(s, &[&root.user_id, &mia.user_id], true).await;
    let root_s = p.session(&r).await;
    let mia_s = p.session(&m).await;

    // A member sees what would leave the box: this month so far, no name, no person, and no
    // switch to press.
    let seen = p
        .call("GET", "/api/v1/report", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(seen.status, StatusCode::OK, "{}", seen.text);
    assert_eq!(seen.json["on"], false);
    assert_eq!(seen.json["allowed"], true);
    assert_eq!(seen.json["enrolled"], false);
    assert_eq!(seen.json["next"]["stage"], "so_far");
    let report = &seen.json["next"]["report"];
    assert_eq!(report["hardware"], "pi4");
    assert_eq!(report["members"], "2-5");
    assert_eq!(report["supplier"], "Bürgerwerke eG");
    let text = report.to_string();
    for who in [root.user_id.as_str(), &mia.user_id, "localhost", &r, &m] {
        assert!(!text.contains(who), "the report names {who}: {text}");
    }
    let html = p
        .call("GET", "/report", &[("cookie", &mia_s.0)], None)
        .await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.text.contains("This box sends no report."),
        "{}",
        html.text
    );
    assert!(html.text.contains("id=\"report-preview\""));
    assert!(html
        .text
        .contains("Nothing is sent while the report is switched off."));
    assert!(
        !html.text.contains("id=\"report-switch\""),
        "a member gets no switch"
    );
    assert!(
        html.text.contains("href=\"/report\""),
        "in the member's nav"
    );

    // A member may not switch it: 403, a `denied` entry, nothing changed, nobody woken.
    let no = post_choice(&p, &mia_s, json!({"on": true})).await;
    assert_eq!(no.status, StatusCode::FORBIDDEN, "{}", no.text);
    let denied = p.entries();
    let last = denied.last().unwrap();
    assert_eq!(last.action, Action::Denied);
    assert_eq!(last.actor, Actor::User(mia.user_id.clone()));
    assert!(choices(&p).is_empty());
    assert!(!woken(&wake).await);

    // Without the session's CSRF token nothing happens, not even for an admin.
    let forged = p
        .call(
            "POST",
            "/api/v1/report",
            &[("cookie", &root_s.0)],
            Some(json!({"on": true})),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let forged_form = p
        .form("/report", &[("cookie", &root_s.0)], &[("report", "on")])
        .await;
    assert_eq!(forged_form.status, StatusCode::FORBIDDEN);
    assert!(choices(&p).is_empty());

    // The admin switches it on, on the page: one entry, by them, and the sender wakes.
    let on = p
        .form(
            "/report",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("report", "on")],
        )
        .await;
    assert_eq!(on.status, StatusCode::SEE_OTHER, "{}", on.text);
    assert!(woken(&wake).await, "switching on wakes the sender");
    let c = choices(&p);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].actor, Actor::User(root.user_id.clone()));
    assert_eq!(c[0].detail["report"], "on");
    let after = p
        .call("GET", "/report?done=on", &[("cookie", &root_s.0)], None)
        .await;
    assert!(after.text.contains("Switched on"), "{}", after.text);
    assert!(after.text.contains("This box sends the report, since"));
    assert!(after.text.contains("Stop sending"));
    assert!(after.text.contains("not enrolled at a cooperative"));

    // The same choice again changes nothing and logs nothing.
    let again = post_choice(&p, &root_s, json!({"on": true})).await;
    assert_eq!(again.json, json!({"on": true, "changed": false}));
    assert_eq!(choices(&p).len(), 1);

    // Off again, over the API; a bad body is a clear 400.
    let bad = post_choice(&p, &root_s, json!({"on": "yes"})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.json["error"].as_str().unwrap().starts_with("body: "));
    let off = post_choice(&p, &root_s, json!({"on": false})).await;
    assert_eq!(off.json, json!({"on": false, "changed": true}));
    let c = choices(&p);
    assert_eq!(c.len(), 2);
    assert_eq!(c[1].detail["report"], "off");
    assert!(!woken(&wake).await, "switching off sends nothing");
}

#[tokio::test]
async fn report_page_shows_the_made_report_as_it_is_sent_and_the_outbox_in_german() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let (p, _wake) = report_page(s, &[&root.user_id], false).await;
    let root_s = p.session(&r).await;
    // Two months in the outbox: one delivered, one made and failing to reach the collector.
    let draft = json!({"format": "hearth-report/1", "id": "r-2026-11", "month": "2026-11",
                       "hardware": "pi4", "kwh": 3.4, "members": "1", "uptime": 0.95,
                       "synapse": "1.143", "epsilon": 1.0});
    p.with_db(|c| {
        c.execute(
            "INSERT INTO report_outbox (month, id, json, state, attempts, next_attempt_at,
                created_at, delivered_at, last_error) VALUES
             ('2026-10', 'r-2026-10', '{}', 'delivered', 2, 0, 1, 1790000000, NULL),
             ('2026-11', 'r-2026-11', ?1, 'draft', 3, 1796000000, 2, NULL,
              'the collector did not answer (connection refused)')",
            [draft.to_string()],
        )
        .unwrap();
    });
    let api = p
        .call("GET", "/api/v1/report", &[("cookie", &root_s.0)], None)
        .await;
    assert_eq!(api.json["allowed"], false);
    assert_eq!(api.json["next"]["stage"], "draft");
    assert_eq!(api.json["next"]["month"], "2026-11");
    assert_eq!(
        api.json["next"]["report"], draft,
        "the stored report, unchanged"
    );
    let outbox = api.json["outbox"].as_array().unwrap();
    assert_eq!(outbox.len(), 2);
    assert_eq!(outbox[0]["state"], "delivered");
    assert_eq!(outbox[0]["next_attempt_at"], Value::Null);
    assert_eq!(outbox[1]["attempts"], 3);

    let html = p
        .call(
            "GET",
            "/report",
            &[("cookie", &root_s.0), ("accept-language", "de-DE,de;q=0.9")],
            None,
        )
        .await;
    assert_eq!(html.status, StatusCode::OK);
    for want in [
        "Der monatliche Energiebericht",
        "Die Konfiguration erlaubt keine Berichte",
        "Der Bericht für 2026-11 ist erstellt",
        "Es wird nichts gesendet: Die Konfiguration erlaubt es nicht.",
        "zugestellt",
        "the collector did not answer (connection refused)",
        "Monatsbericht senden",
        "&#34;id&#34;: &#34;r-2026-11&#34;",
    ] {
        assert!(
            html.text.contains(want),
            "missing {want:?} in {}",
            html.text
        );
    }
}

#[tokio::test]
async fn report_page_is_for_signed_in_members_only() {
    let s = Synapse::shared();
    let (p, _wake) = report_page(s, &[], true).await;
    let api = p.call("GET", "/api/v1/report", &[], None).await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    let html = p.call("GET", "/report", &[], None).await;
    assert_eq!(html.status, StatusCode::SEE_OTHER, "to the sign-in form");
    let post = p
        .call("POST", "/api/v1/report", &[], Some(json!({"on": true})))
        .await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);
}
