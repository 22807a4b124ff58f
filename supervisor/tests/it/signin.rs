//! Signing in to the page with a Matrix account, against a real Synapse, and what each role
//! may see: PRODUCT §4 (`/api/v1/session`, `/api/v1/members`, `/api/v1/audit`) and §6, and the
//! issue's security tests (401 without a session, 403 + an audit entry for another member's
//! data, 403 without the CSRF token, 1000 wrong passwords held by the limiter while the owner
//! still gets in).

use super::synapse::Synapse;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use hearth::accountant::members::Directory;
use hearth::accounting::directory::{self, ChangedBy, Snapshot, SynapseAccount};
use hearth::audit::{entries_visible_to, Action, Actor, Viewer};
use hearth::config::AccountingConfig;
use hearth::http::{router, AppState, Web};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

struct Page {
    app: axum::Router,
    db: PathBuf,
    maintenance: PathBuf,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    headers: axum::http::HeaderMap,
    json: Value,
}

impl Answer {
    fn cookie(&self, name: &str) -> Option<String> {
        self.cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap().to_string())
    }
}

impl Page {
    /// The page over a fresh database whose member directory holds `members` (user ids).
    fn new(s: &Synapse, members: &[&str]) -> Page {
        Page::with(s, members, |_, _| {})
    }

    /// The same, with `adjust` changing the doors' settings (given the temporary directory).
    fn with(
        s: &Synapse,
        members: &[&str],
        adjust: impl FnOnce(&mut Web, &std::path::Path),
    ) -> Page {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("hearth.db");
        let maintenance = dir.path().join("maintenance");
        let mut conn = hearth::storage::open_connection(&db).unwrap();
        let accounts = members
            .iter()
            .map(|u| SynapseAccount {
                user_id: u.to_string(),
                deactivated: false,
                is_guest: false,
                user_type: None,
                created_s: Some(1_000),
                admin: false,
            })
            .collect();
        directory::apply(
            &mut conn,
            &Snapshot {
                me: "@hearth:test".into(),
                accounts,
                ..Snapshot::default()
            },
            2_000,
        )
        .unwrap();
        drop(conn);
        let mut web = Web::new(
            &db,
            s.base_url(),
            AccountingConfig::default(),
            Arc::new(Directory::new(db.clone())),
            maintenance.clone(),
        )
        .unwrap();
        adjust(&mut web, dir.path());
        Page {
            app: router(AppState::minimal(Some(Arc::new(web)))),
            db,
            maintenance,
            _dir: dir,
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        from: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match body {
            Some(b) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let mut req = req.body(body).unwrap();
        let addr: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(addr));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let cookies = headers
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        // Not JSON (a page): its text, as `form` keeps it.
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            cookies,
            headers,
            json,
        }
    }

    /// A form POST (`application/x-www-form-urlencoded`).
    async fn form(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo("10.0.0.5:40000".parse::<SocketAddr>().unwrap()));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        Answer {
            status,
            cookies: Vec::new(),
            headers,
            json: Value::String(String::from_utf8_lossy(&bytes).into_owned()),
        }
    }

    async fn sign_in(&self, localpart: &str, from: &str, extra: &[(&str, &str)]) -> Answer {
        self.call(
            "POST",
            "/api/v1/session",
            from,
            extra,
            Some(json!({"user": localpart, "password": Synapse::password(localpart)})),
        )
        .await
    }

    /// Signed in as `localpart`: (cookie header value, CSRF token).
    async fn session(&self, localpart: &str) -> (String, String) {
        let a = self.sign_in(localpart, "10.0.0.2", &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{localpart}: {}", a.json);
        (
            a.cookie("hearth_session").unwrap(),
            a.json["csrf"].as_str().unwrap().to_string(),
        )
    }

    fn entries(&self) -> Vec<hearth::audit::Entry> {
        let conn = hearth::storage::open_connection(&self.db).unwrap();
        let mut e = entries_visible_to(&conn, &Viewer::ServerAdmin, 10_000, None).unwrap();
        e.reverse();
        e
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn users(v: &Value) -> Vec<String> {
    v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap().to_string())
        .collect()
}

async fn devices(admin: &super::synapse::User, user_id: &str) -> usize {
    let v = admin
        .get(&format!("/_synapse/admin/v2/users/{user_id}/devices"))
        .await;
    v["devices"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn without_a_session_member_data_is_401_and_signing_in_checks_the_password_with_synapse() {
    let s = Synapse::shared();
    let admin = s.register(&s.unique("root"), true).await;
    let a = s.unique("alice");
    let alice = s.register(&a, false).await;
    let page = Page::new(s, &[&alice.user_id]);

    for path in ["/api/v1/members", "/api/v1/audit", "/api/v1/session"] {
        let r = page.call("GET", path, "10.0.0.2", &[], None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(!r.json.to_string().contains(&alice.user_id));
    }
    let r = page
        .call(
            "GET",
            "/api/v1/members",
            "10.0.0.2",
            &[("cookie", "hearth_session=forged")],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // A wrong password: 401, nothing set.
    let r = page
        .call(
            "POST",
            "/api/v1/session",
            "10.0.0.2",
            &[],
            Some(json!({"user": a, "password": "wrong"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.cookie("hearth_session").is_none());

    // The right one: a strict session cookie, the role, a CSRF token; Synapse's token is gone.
    let before = devices(&admin, &alice.user_id).await;
    let r = page.sign_in(&a, "10.0.0.2", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["user_id"], alice.user_id);
    assert_eq!(r.json["role"], "member");
    let set = r
        .cookies
        .iter()
        .find(|c| c.starts_with("hearth_session="))
        .unwrap();
    assert!(
        set.contains("; HttpOnly") && set.contains("; SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP on the LAN: {set}");
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        devices(&admin, &alice.user_id).await,
        before,
        "the sign-in's Matrix token was logged out at once"
    );
    let cookie = r.cookie("hearth_session").unwrap();
    let me = page
        .call(
            "GET",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(me.json["user_id"], alice.user_id);

    // Behind a TLS proxy the cookie is Secure.
    let r = page
        .sign_in(&a, "10.0.0.2", &[("x-forwarded-proto", "https")])
        .await;
    assert!(r
        .cookies
        .iter()
        .any(|c| c.starts_with("hearth_session=") && c.contains("; Secure")));

    // A sign-in POSTed from another site is refused (login CSRF).
    let r = page
        .sign_in(
            &a,
            "10.0.0.2",
            &[("origin", "http://evil.example"), ("host", "hearth.local")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = page
        .sign_in(
            &a,
            "10.0.0.2",
            &[("sec-fetch-site", "cross-site"), ("origin", "null")],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = page
        .sign_in(
            &a,
            "10.0.0.2",
            &[("sec-fetch-site", "same-origin"), ("origin", "null")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "our own form under no-referrer");

    // Signing out needs the CSRF token, then the cookie is dead.
    let (cookie, csrf) = page.session(&a).await;
    let r = page
        .call(
            "DELETE",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "no CSRF token");
    let r = page
        .call(
            "DELETE",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = page
        .call(
            "GET",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Audited: the wrong password and each sign-in, about alice.
    let e = page.entries();
    assert!(e.iter().any(|e| e.action == Action::SignInFailed
        && e.subject.as_deref() == Some(&alice.user_id)
        && e.actor == Actor::System));
    assert!(e.iter().filter(|e| e.action == Action::SignIn).count() >= 3);
}

#[tokio::test]
async fn a_member_sees_their_own_statement_and_asking_for_another_is_403_and_audited() {
    let s = Synapse::shared();
    let (a, b, c, r) = (
        s.unique("alice"),
        s.unique("bob"),
        s.unique("carol"),
        s.unique("root"),
    );
    let alice = s.register(&a, false).await;
    let bob = s.register(&b, false).await;
    let carol = s.register(&c, false).await;
    let root = s.register(&r, true).await;
    let page = Page::new(s, &[&alice.user_id, &bob.user_id, &carol.user_id]);
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let now = chrono::Utc::now();
        let by = ChangedBy::cli();
        directory::add_household(&mut conn, "mueller", "Familie Müller", &by, now).unwrap();
        directory::assign(&mut conn, &alice.user_id, "mueller", &by, now).unwrap();
        directory::assign(&mut conn, &bob.user_id, "mueller", &by, now).unwrap();
    }

    // Alice, a member: her own row only, no household totals.
    let (cookie, _) = page.session(&a).await;
    let own = page
        .call(
            "GET",
            "/api/v1/members",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.json);
    assert_eq!(users(&own.json), vec![alice.user_id.clone()]);
    assert_eq!(own.json["households"], json!([]));
    assert!(!own.json.to_string().contains(&bob.user_id));
    let bad = page
        .call(
            "GET",
            "/api/v1/members?period=2026-13",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.json["error"].as_str().unwrap().starts_with("period:"),
        "{}",
        bad.json
    );

    let before = page.entries().len();
    let other = page
        .call(
            "GET",
            &format!("/api/v1/members?user={}", bob.user_id),
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(other.status, StatusCode::FORBIDDEN);
    let e = page.entries();
    assert_eq!(e.len(), before + 1);
    let denied = e.last().unwrap();
    assert_eq!(denied.action, Action::Denied);
    assert_eq!(denied.actor, Actor::User(alice.user_id.clone()));
    assert_eq!(denied.subject.as_deref(), Some(bob.user_id.as_str()));

    // Bob sees on his audit page that alice tried.
    let (bob_cookie, _) = page.session(&b).await;
    let log = page
        .call(
            "GET",
            "/api/v1/audit",
            "10.0.0.2",
            &[("cookie", &bob_cookie)],
            None,
        )
        .await;
    assert_eq!(log.status, StatusCode::OK);
    assert!(log.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "denied" && e["actor"] == alice.user_id.as_str()));
    assert_eq!(log.json["head"]["hash"].as_str().unwrap().len(), 64);
    // …and nothing about carol.
    assert!(!log.json.to_string().contains(&carol.user_id));

    // Alice becomes the household's admin: now she sees bob (not carol), and bob sees that.
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        directory::set_household_admin(
            &mut conn,
            &alice.user_id,
            "mueller",
            true,
            &ChangedBy::cli(),
            chrono::Utc::now(),
        )
        .unwrap();
    }
    let hh = page
        .call(
            "GET",
            "/api/v1/members",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(hh.status, StatusCode::OK, "{}", hh.json);
    let mut seen = users(&hh.json);
    seen.sort();
    let mut want = vec![alice.user_id.clone(), bob.user_id.clone()];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(hh.json["households"][0]["id"], "mueller");
    let viewed = page
        .entries()
        .into_iter()
        .filter(|e| e.action == Action::ViewStatement)
        .collect::<Vec<_>>();
    assert_eq!(viewed.len(), 1, "one view of one other member");
    assert_eq!(viewed[0].subject.as_deref(), Some(bob.user_id.as_str()));
    assert_eq!(viewed[0].actor, Actor::User(alice.user_id.clone()));

    // The server admin sees everyone; each other member's view is audited about them.
    let (root_cookie, _) = page.session(&r).await;
    let all = page
        .call(
            "GET",
            "/api/v1/members",
            "10.0.0.2",
            &[("cookie", &root_cookie)],
            None,
        )
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_eq!(users(&all.json).len(), 3);
    let by_root = page
        .entries()
        .into_iter()
        .filter(|e| {
            e.action == Action::ViewStatement && e.actor == Actor::User(root.user_id.clone())
        })
        .count();
    assert_eq!(by_root, 3);
}

#[tokio::test]
async fn state_changes_need_the_csrf_token_and_maintenance_needs_a_server_admin() {
    let s = Synapse::shared();
    let (a, r) = (s.unique("alice"), s.unique("root"));
    let alice = s.register(&a, false).await;
    s.register(&r, true).await;
    let page = Page::new(s, &[&alice.user_id]);

    let (root_cookie, root_csrf) = page.session(&r).await;
    let on = json!({"on": true});
    let r1 = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &root_cookie)],
            Some(on.clone()),
        )
        .await;
    assert_eq!(r1.status, StatusCode::FORBIDDEN, "no CSRF token");
    let r2 = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &root_cookie), ("x-csrf-token", "0000")],
            Some(on.clone()),
        )
        .await;
    assert_eq!(r2.status, StatusCode::FORBIDDEN, "a wrong CSRF token");
    assert!(!page.maintenance.exists());

    let (alice_cookie, alice_csrf) = page.session(&a).await;
    let r3 = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &alice_cookie), ("x-csrf-token", &alice_csrf)],
            Some(on.clone()),
        )
        .await;
    assert_eq!(r3.status, StatusCode::FORBIDDEN, "a member may not");
    assert!(!page.maintenance.exists());
    // Another session's token does not do either.
    let r4 = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &root_cookie), ("x-csrf-token", &alice_csrf)],
            Some(on.clone()),
        )
        .await;
    assert_eq!(r4.status, StatusCode::FORBIDDEN);

    let ok = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &root_cookie), ("x-csrf-token", &root_csrf)],
            Some(on),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.json);
    assert!(page.maintenance.exists());
    let off = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &root_cookie), ("x-csrf-token", &root_csrf)],
            Some(json!({"on": false})),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert!(!page.maintenance.exists());
    let e = page.entries();
    assert_eq!(
        e.iter().filter(|e| e.action == Action::Maintenance).count(),
        2
    );
    assert!(e
        .iter()
        .any(|e| e.action == Action::Denied && e.actor == Actor::User(alice.user_id.clone())));
}

#[tokio::test]
async fn a_thousand_wrong_passwords_are_held_back_and_the_owner_still_gets_in() {
    let s = Synapse::shared();
    let c = s.unique("carol");
    let carol = s.register(&c, false).await;
    let page = Page::new(s, &[&carol.user_id]);

    // Carol signed in from her phone before: the browser remembers it.
    let first = page.sign_in(&c, "192.168.1.20", &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    let device = first.cookie("hearth_device").unwrap();
    let audit_before = page.entries().len();

    // A thousand guesses from ten addresses, through the TLS proxy on the box: the TCP peer
    // is 127.0.0.1 and the proxy names the client in X-Real-IP.
    let (mut refused, mut limited) = (0, 0);
    let started = std::time::Instant::now();
    for i in 0..1000 {
        let from = format!("203.0.113.{}", i % 10);
        let r = page
            .call(
                "POST",
                "/api/v1/session",
                "127.0.0.1",
                &[("x-real-ip", &from)],
                Some(json!({"user": c, "password": format!("guess-{i}")})),
            )
            .await;
        match r.status {
            StatusCode::UNAUTHORIZED => refused += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                limited += 1;
                assert!(r.headers.contains_key(header::RETRY_AFTER));
            }
            s => panic!("attempt {i}: {s}"),
        }
    }
    assert_eq!(refused + limited, 1000);
    // Ten per address, and one more per address for each minute the guessing took (Synapse
    // checks each password for a while).
    let minutes = started.elapsed().as_secs() / 60 + 1;
    let most = 10 * (10 + minutes as usize);
    assert!(
        refused <= most,
        "{refused} guesses reached Synapse, more than {most}"
    );
    // The audit log holds the guesses that reached Synapse, not a thousand rows.
    let written = page.entries().len() - audit_before;
    assert!(written <= refused, "{written} audit entries");

    // A guesser's address stays held even with the right password…
    let r = page
        .sign_in(&c, "127.0.0.1", &[("x-real-ip", "203.0.113.3")])
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    // …but carol's own browser gets in…
    let r = page
        .sign_in(&c, "192.168.1.20", &[("cookie", &device)])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["user_id"], carol.user_id);
    // …and so does carol on a new phone, without the cookie, from anywhere else.
    let r = page
        .sign_in(&c, "127.0.0.1", &[("x-real-ip", "198.51.100.7")])
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = page.sign_in(&c, "192.168.1.31", &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[tokio::test]
async fn the_proxys_headers_count_only_from_the_proxy_and_attempts_at_once_are_held_too() {
    let s = Synapse::shared();
    let d = s.unique("dora");
    let dora = s.register(&d, false).await;
    let page = Page::new(s, &[&dora.user_id]);
    // A client that names a new address in every request is not believed: it is not the proxy.
    let mut reached = 0;
    for i in 0..30 {
        let fake = format!("198.51.100.{i}");
        let r = page
            .call(
                "POST",
                "/api/v1/session",
                "192.168.1.66",
                &[("x-real-ip", &fake), ("x-forwarded-for", &fake)],
                Some(json!({"user": d, "password": format!("guess-{i}")})),
            )
            .await;
        if r.status == StatusCode::UNAUTHORIZED {
            reached += 1;
        }
    }
    assert_eq!(reached, 10, "held by its own address");
    // Fifty guesses sent at once from one address: the limit holds (no check-then-take race).
    let guesses = (0..50).map(|i| {
        page.call(
            "POST",
            "/api/v1/session",
            "10.9.9.9",
            &[],
            Some(json!({"user": d, "password": format!("at-once-{i}")})),
        )
    });
    let answers = futures_util::future::join_all(guesses).await;
    let reached = answers
        .iter()
        .filter(|a| a.status == StatusCode::UNAUTHORIZED)
        .count();
    assert_eq!(reached, 10, "{reached} reached Synapse");
}

/// PRODUCT §6: a server admin's rights follow Synapse's admin flag as the directory syncs it,
/// and a deactivated account's sessions end.
#[tokio::test]
async fn a_demoted_admin_is_no_admin_at_the_next_request_and_a_deactivated_one_is_signed_out() {
    use hearth::accounting::directory::{sync::sync_once, SynapseDirectory};
    use hearth::health::probe::AdminToken;
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let b = s.unique("boss");
    let boss = s.register(&b, true).await;
    let page = Page::new(s, &[]);
    let synapse = SynapseDirectory::new(
        s.base_url(),
        std::time::Duration::from_secs(30),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    );
    let mut now = chrono::Utc::now().timestamp();
    let mut sync = || {
        now += 1;
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let synapse = &synapse;
        async move {
            sync_once(&mut conn, synapse, now, true).await.unwrap();
        }
    };
    sync().await;
    let (cookie, _) = page.session(&b).await;
    let role = |a: &Answer| a.json["role"].as_str().unwrap_or("").to_string();
    let me = page
        .call(
            "GET",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(role(&me), "server_admin");

    // Demoted in Synapse; the directory's next sync sees it; the next request is no admin's.
    supervisor
        .put(
            &format!("/_synapse/admin/v1/users/{}/admin", enc(&boss.user_id)),
            json!({"admin": false}),
        )
        .await;
    sync().await;
    let me = page
        .call(
            "GET",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(role(&me), "member");
    let csrf = me.json["csrf"].as_str().unwrap().to_string();
    let r = page
        .call(
            "POST",
            "/api/v1/maintenance",
            "10.0.0.2",
            &[("cookie", &cookie), ("x-csrf-token", &csrf)],
            Some(json!({"on": true})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "maintenance is for admins");
    assert!(!page.maintenance.exists());

    // Deactivated: the session ends.
    supervisor.deactivate(&boss.user_id).await;
    sync().await;
    let me = page
        .call(
            "GET",
            "/api/v1/session",
            "10.0.0.2",
            &[("cookie", &cookie)],
            None,
        )
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_setup_code_creates_the_first_server_admin_once() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let (page, code_file) = setup_page(s, supervisor.access_token.clone(), |_| {});
    let name = s.unique("mama");
    let pw = "a long family password";
    let get = page.call("GET", "/setup", "10.0.0.5", &[], None).await;
    assert_eq!(get.status, StatusCode::OK);

    // A wrong code: refused, the code stays, no account.
    let wrong = setup_post(&page, "AAAA-BBBB", &name, pw, pw).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(code_file.exists());
    // Passwords that differ: refused.
    let differ = setup_post(&page, "k7qm 4xpa", &name, pw, "other password").await;
    assert_eq!(differ.status, StatusCode::BAD_REQUEST);
    // An existing account is not taken over (its password stays).
    let own = supervisor
        .user_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap();
    let taken = setup_post(&page, "k7qm-4xpa", own, pw, pw).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(code_file.exists());

    // The right code (any case, spaces or dashes): the account, a server admin; the code is gone.
    let ok = setup_post(&page, "k7qm-4xpa", &name, pw, pw).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.json);
    assert_eq!(ok.headers[header::LOCATION], "/signin");
    assert!(!code_file.exists(), "the code is used up");
    let r = page
        .call(
            "POST",
            "/api/v1/session",
            "10.0.0.5",
            &[],
            Some(json!({"user": name, "password": pw})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["role"], "server_admin");

    // A second use: the box is set up.
    let again = setup_post(&page, "k7qm-4xpa", &s.unique("eve"), pw, pw).await;
    assert_eq!(again.status, StatusCode::GONE);
    assert!(page
        .entries()
        .iter()
        .any(|e| e.action == Action::AdminApiCall
            && e.subject.as_deref() == r.json["user_id"].as_str()));
}

/// `POST /setup` with the form's four fields.
async fn setup_post(
    page: &Page,
    code: &str,
    user: &str,
    password: &str,
    password2: &str,
) -> Answer {
    page.form(
        "/setup",
        &[
            ("code", code),
            ("user", user),
            ("password", password),
            ("password2", password2),
        ],
    )
    .await
}

/// The page with a setup code file (`K7QM-4XPA`) and the supervisor's admin token; the file.
fn setup_page(s: &Synapse, token: String, also: impl FnOnce(&std::path::Path)) -> (Page, PathBuf) {
    let code_file = std::cell::RefCell::new(PathBuf::new());
    let page = Page::with(s, &[], |web, dir| {
        let f = dir.join("setup_code");
        std::fs::write(&f, "K7QM-4XPA\n").unwrap();
        web.setup_code_file = f.clone();
        web.admin_token = hearth::health::probe::AdminToken::fixed(Some(token));
        *code_file.borrow_mut() = f;
        also(dir);
    });
    (page, code_file.into_inner())
}

#[tokio::test]
async fn two_setups_with_the_right_code_at_once_make_one_admin() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let (page, code_file) = setup_page(s, supervisor.access_token.clone(), |_| {});
    let pw = "a long family password";
    let (a, b) = (s.unique("mama"), s.unique("papa"));
    let post = |user: String| {
        let page = &page;
        async move { setup_post(page, "K7QM-4XPA", &user, pw, pw).await.status }
    };
    let (ra, rb) = tokio::join!(post(a.clone()), post(b.clone()));
    let mut got = [ra, rb];
    got.sort();
    assert_eq!(
        got,
        [StatusCode::SEE_OTHER, StatusCode::GONE],
        "one wins, one finds it set up"
    );
    assert!(!code_file.exists());
    // Exactly one of the two accounts exists at Synapse.
    let http = hearth::http_client::builder().build().unwrap();
    let mut made = 0;
    for u in [&a, &b] {
        let r = http
            .get(format!(
                "{}/_synapse/admin/v2/users/{}",
                s.base_url(),
                s.user_id(u).replace('@', "%40").replace(':', "%3A")
            ))
            .bearer_auth(&supervisor.access_token)
            .send()
            .await
            .unwrap();
        made += usize::from(r.status().is_success());
    }
    assert_eq!(made, 1, "one account, not two server admins");
}

#[tokio::test]
async fn setup_closes_once_a_server_admin_other_than_the_supervisor_exists() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let me = supervisor.user_id.clone();
    // The directory's sync saw the supervisor's own admin account only: setup stays open.
    let account = |user_id: &str| SynapseAccount {
        user_id: user_id.to_string(),
        deactivated: false,
        is_guest: false,
        user_type: None,
        created_s: Some(1_000),
        admin: true,
    };
    let sync = |dir: &std::path::Path, accounts: Vec<SynapseAccount>| {
        let mut conn = hearth::storage::open_connection(&dir.join("hearth.db")).unwrap();
        let snap = Snapshot {
            me: me.clone(),
            accounts,
            ..Snapshot::default()
        };
        directory::apply(&mut conn, &snap, 3_000).unwrap();
    };
    let dir_of = std::cell::RefCell::new(PathBuf::new());
    let (page, code_file) = setup_page(s, supervisor.access_token.clone(), |dir| {
        sync(dir, vec![account(&me)]);
        *dir_of.borrow_mut() = dir.to_path_buf();
    });
    let get = page.call("GET", "/setup", "10.0.0.5", &[], None).await;
    assert_eq!(get.status, StatusCode::OK);
    assert!(
        code_file.exists(),
        "only the supervisor is an admin: setup is open"
    );

    // An admin made elsewhere (over SSH, in Synapse): the next look at /setup closes it.
    let opa = s.register(&s.unique("opa"), true).await;
    sync(&dir_of.borrow(), vec![account(&me), account(&opa.user_id)]);
    let pw = "a long family password";
    let late = setup_post(&page, "K7QM-4XPA", &s.unique("eve"), pw, pw).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(!code_file.exists(), "the code is removed");
}

#[tokio::test]
async fn an_expired_setup_code_is_refused_and_the_page_says_how_to_get_a_new_one() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let (page, code_file) = setup_page(s, supervisor.access_token.clone(), |_| {});
    let text = |a: &Answer| a.json.as_str().unwrap_or_default().to_string();
    // A week of the box running with the code unused (the daemon's task adds it up).
    let week = hearth::setup_expiry::OFFERED_MAX;
    let t = hearth::setup_expiry::tick(&code_file, week, week).unwrap();
    assert_eq!(t, hearth::setup_expiry::Tick::Expired);

    let get = page.call("GET", "/setup", "10.0.0.5", &[], None).await;
    assert_eq!(get.status, StatusCode::OK);
    assert!(text(&get).contains("has expired"), "{}", text(&get));
    assert!(text(&get).contains("Restart the box"));
    assert!(
        !text(&get).contains("name=\"code\""),
        "no form for a dead code"
    );
    let pw = "a long family password";
    let late = setup_post(&page, "K7QM-4XPA", &s.unique("eve"), pw, pw).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(text(&late).contains("has expired"));

    // The restart: root's setup-code made a new code and removed the expired one.
    std::fs::write(&code_file, "NPQR-STUV-WXYZ\n").unwrap();
    std::fs::remove_file(hearth::setup_expiry::expired_file(&code_file)).unwrap();
    let get = page.call("GET", "/setup", "10.0.0.5", &[], None).await;
    assert!(text(&get).contains("name=\"code\""));
    let old = setup_post(&page, "K7QM-4XPA", &s.unique("eve"), pw, pw).await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED, "the old code is dead");
    let new = setup_post(&page, "NPQR-STUV-WXYZ", &s.unique("mama"), pw, pw).await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
}
