use super::*;
use crate::accounting::directory::{apply, Snapshot, SynapseAccount};
use crate::audit::{append, Action, Actor, NewEntry};
use crate::meter::live::{LiveMeter, Shared};
use crate::power::SensorKind;
use crate::transparency::inventory;
use axum::body::Body;
use axum::http::Request;
use chrono::Utc;
use std::path::Path as FsPath;
use tower::ServiceExt;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDLVT0EeCJkMpZPqK2Mklhoc6sQOnWWymsqVzrgT9WSQ";
const FP: &str = "SHA256:P+nuGDnVFj44TMNZDPCyCVSgdUlnFvOKd7P732SsSec";

fn state(dir: &FsPath) -> AppState {
    let (_tx, led) = tokio::sync::watch::channel(crate::led::Pattern::Steady);
    AppState {
        meter: Shared::new(LiveMeter::new(SensorKind::Simulated, "sim".into())),
        health: Default::default(),
        led,
        led_device: "none",
        device: Default::default(),
        tariff: Default::default(),
        // The access page is for signed-in members: `get` signs one in.
        web: Some(std::sync::Arc::new(
            crate::http::Web::new(
                &dir.join("web.db"),
                "http://127.0.0.1:9",
                Default::default(),
                std::sync::Arc::new(crate::accountant::members::Directory::new(
                    dir.join("web.db"),
                )),
                dir.join("maintenance"),
            )
            .unwrap(),
        )),
        transparency: crate::transparency::Transparency {
            pages_dir: dir.join("pages"),
            access_file: dir.join("access.json"),
            db: Default::default(),
        },
        synapse_database: None,
        reach: Default::default(),
    }
}

async fn get(st: &AppState, path: &str, lang: &str) -> (StatusCode, String) {
    let (token, _) = st
        .web
        .as_ref()
        .unwrap()
        .sessions
        .create("@member:x.org", false)
        .unwrap();
    let res = super::super::router(st.clone())
        .oneshot(
            Request::get(path)
                .header("accept-language", lang)
                .header("cookie", format!("hearth_session={token}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = res.status();
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A system with root (a key whose comment tries to inject markup), an admin in sudo, and a
/// malformed key line; written where the daemon reads it.
fn collect(dir: &FsPath) {
    let root = dir.join("root");
    let put = |p: &str, t: &str| {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    };
    put(
        "etc/passwd",
        "root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/bash\n",
    );
    put("etc/shadow", "root:!:1::::::\nalice::1::::::\n");
    put("etc/shells", "/bin/bash\n");
    put("etc/group", "sudo:x:27:alice\n");
    put("etc/ssh/sshd_config", "PasswordAuthentication no\n");
    put(
        "root/.ssh/authorized_keys",
        &format!("{KEY} <script>alert(1)</script>\nbroken line\n"),
    );
    let inv = inventory::gather(&root, Utc::now()).unwrap();
    inventory::write(&inv, &dir.join("access.json")).unwrap();
}

/// A database with two admins (a member and the supervisor) and audited admin-API calls,
/// read into the state as the daemon's refresh does.
fn database(st: &AppState, dir: &FsPath) {
    let mut conn = crate::storage::open_connection(&dir.join("hearth.db")).unwrap();
    let acc = |u: &str, admin: bool| SynapseAccount {
        user_id: u.into(),
        deactivated: false,
        is_guest: false,
        user_type: None,
        created_s: Some(1),
        admin,
    };
    let snap = Snapshot {
        me: "@hearth:x.org".into(),
        accounts: vec![
            acc("@alice:x.org", true),
            acc("@bob:x.org", false),
            acc("@hearth:x.org", true),
        ],
        ..Snapshot::default()
    };
    apply(&mut conn, &snap, Utc::now().timestamp()).unwrap();
    for e in [
        "GET /_synapse/admin/v2/users?from=0&limit=100",
        "GET /_synapse/admin/v2/users/{user_id}",
        "GET /_synapse/admin/v2/users/{user_id}",
        "GET /_synapse/admin/v2/users/{user_id}",
    ] {
        append(
            &conn,
            &NewEntry::new(Actor::System, Action::AdminApiCall).detail("endpoint", e),
        )
        .unwrap();
    }
    st.transparency
        .db
        .set(crate::transparency::access::read_db(&conn, Utc::now()));
}

#[tokio::test]
async fn who_can_access_the_data_is_for_signed_in_members() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    collect(dir.path());
    for (path, want) in [
        ("/access", StatusCode::SEE_OTHER),
        ("/api/v1/access", StatusCode::UNAUTHORIZED),
    ] {
        let res = super::super::router(st.clone())
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), want, "{path}");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains("SHA256:"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn before_the_collector_and_the_first_read_the_page_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (code, en) = get(&st, "/access", "en").await;
    assert_eq!(code, StatusCode::OK);
    assert!(en.contains("Who can access the data"));
    assert!(en.contains("The inventory has not run since the box started"));
    assert!(en.contains("Not read yet"));
    // The token's uses are known from the code even before anything was counted.
    assert!(en.contains("Health check: does the database answer"));
    assert!(en.contains("GET /_synapse/admin/v2/users/{user_id}"));
    let (_, de) = get(&st, "/access", "de").await;
    assert!(de.contains("Wer kann auf die Daten zugreifen"));
    assert!(de.contains("noch nicht gelaufen"));
    let (code, json) = get(&st, "/api/v1/access", "en").await;
    assert_eq!(code, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["os"]["state"], "missing");
    assert_eq!(v["synapse_admins"]["state"], "not_read");

    // A malformed file: said, not a crash.
    std::fs::write(dir.path().join("access.json"), "{ nope").unwrap();
    let (code, en) = get(&st, "/access", "en").await;
    assert_eq!(code, StatusCode::OK);
    assert!(en.contains("The inventory cannot be read:"), "{en}");
    assert!(en.contains("access.json"));
}

#[tokio::test]
async fn the_page_lists_accounts_keys_admins_and_the_tokens_uses() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    collect(dir.path());
    database(&st, dir.path());
    let (code, en) = get(&st, "/access", "en").await;
    assert_eq!(code, StatusCode::OK);
    // Accounts: root (locked), alice (sudo, an empty password flagged).
    assert!(en.contains("<th scope=\"row\">root"), "{en}");
    assert!(en.contains("locked: no password login"));
    assert!(en.contains("<td class=\"bad\">EMPTY: no password needed</td><td>sudo</td>"));
    // SSH: keys only; root's file with its key's fingerprint; the injected comment is text.
    assert!(en.contains("It accepts keys only, no passwords."));
    assert!(en.contains("/root/.ssh/authorized_keys lets in: root"));
    assert!(en.contains(FP));
    assert!(
        !en.contains("<script>alert"),
        "markup from a key comment is escaped"
    );
    assert!(
        en.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || en.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{en}"
    );
    assert!(en.contains("/root/.ssh/authorized_keys:2: not a public key"));
    // Synapse's admins: the member first, then the supervisor's own account, said so.
    let alice = en
        .find("<strong>@alice:x.org</strong>")
        .expect("alice listed");
    let hearth = en
        .find("<strong>@hearth:x.org</strong>")
        .expect("hearth listed");
    assert!(alice < hearth);
    assert!(
        en.contains("the supervisor&#39;s own account")
            || en.contains("the supervisor's own account")
    );
    assert!(!en.contains("@bob:x.org"), "bob is no admin");
    // The token's calls counted from the audit log.
    assert!(en.contains("Calls in the last 30 days"));
    assert!(en.contains("<td class=\"fp\">GET /_synapse/admin/v2/users/{user_id}</td><td>every call, about the person</td><td class=\"num\">3</td>"), "{en}");
    // No inline script or style on this page either.
    assert!(!en.contains("style=") && !en.contains("<style"));
    assert!(en.contains("href=\"/access\" aria-current=\"page\""));

    let (_, json) = get(&st, "/api/v1/access", "en").await;
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["os"]["state"], "ok");
    assert_eq!(v["os"]["inventory"]["accounts"][1]["name"], "alice");
    assert_eq!(
        v["synapse_admins"]["admins"][1]["not_member"],
        "the supervisor's own account"
    );
    let details = v["admin_token"]["uses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "account_details")
        .unwrap();
    assert_eq!(details["calls"], 3);
    assert_eq!(details["audited"], "each_call");
}

#[tokio::test]
async fn about_pages_come_from_templates_in_both_languages() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let (code, en) = get(&st, "/about", "en").await;
    assert_eq!(code, StatusCode::OK);
    for href in ["/about/business-model", "/about/legal", "/about/content"] {
        assert!(en.contains(&format!("href=\"{href}\"")), "{href}");
    }
    assert!(en.contains("Who pays – and with what?"));
    let (_, de) = get(&st, "/about", "de").await;
    assert!(de.contains("Wer zahlt – und womit?"));

    let (code, legal) = get(&st, "/about/legal", "en").await;
    assert_eq!(code, StatusCode::OK);
    assert!(legal.contains("Not legal advice"));
    assert!(legal.contains("Art. 2(2)(c)"));
    assert!(legal.contains("the template that comes with hearth; the operator has not written"));
    // The language switch comes back to this page.
    assert!(legal.contains("href=\"/lang/de?next=/about/legal\""));
    let (_, recht) = get(&st, "/about/legal", "de").await;
    assert!(recht.contains("Keine Rechtsberatung"));
    assert!(recht.contains("Art. 2 Abs. 2 lit. c DSGVO"));
    let (code, _) = get(&st, "/about/secrets", "en").await;
    assert_eq!(code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_operators_page_wins_and_its_html_is_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let st = state(dir.path());
    let de = dir.path().join("pages/de");
    std::fs::create_dir_all(&de).unwrap();
    std::fs::write(
        de.join("content.md"),
        "# Unsere Hausregeln\n\nEntscheidet: der Vorstand.\n\n<script>alert('x')</script>\n\n[klick](javascript:alert(1))\n",
    )
    .unwrap();
    let (_, page) = get(&st, "/about/content", "de").await;
    assert!(page.contains("<h1>Unsere Hausregeln</h1>"));
    assert!(page.contains("Entscheidet: der Vorstand."));
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
    assert!(!page.contains("javascript:"));
    assert!(
        !page.contains("Vorlage, die hearth mitbringt"),
        "no template note"
    );
    // English visitors get the operator's German page, marked as such.
    let (_, en) = get(&st, "/about/content", "en").await;
    assert!(en.contains("Unsere Hausregeln"));
    assert!(en.contains("This page is only written in Deutsch."));
    // The index uses the operator's title.
    let (_, index) = get(&st, "/about", "de").await;
    assert!(index.contains(">Unsere Hausregeln</a>"));

    // Unreadable: an error naming the file on the page, not the template, not a panic.
    std::fs::write(de.join("legal.md"), b"\xff\xfe").unwrap();
    let (code, page) = get(&st, "/about/legal", "de").await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        page.contains("Diese Seite kann nicht angezeigt werden:"),
        "{page}"
    );
    assert!(page.contains("de/legal.md: cannot be read"));
    assert!(!page.contains("Keine Rechtsberatung"));
}
