//! Accounts for the whole family, against a real Synapse (issue 12, item 3): invitations made
//! by server and household admins, the public sign-up they open (one account per link, even
//! when two people use it at once), the household the new member lands in, refusals (410 for
//! used, expired and revoked links; a taken name leaves the link usable), the welcome page in
//! both languages, a server admin's deactivation and password reset, CSRF and the audit log.

use super::synapse::Synapse;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Request, StatusCode};
use hearth::accountant::members::Directory;
use hearth::accounting::directory::{self, ChangedBy, Snapshot, SynapseAccount};
use hearth::audit::{entries_visible_to, Action, Viewer};
use hearth::config::AccountingConfig;
use hearth::health::probe::AdminToken;
use hearth::http::{router, AppState, Web};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use tower::ServiceExt;

pub(super) struct Page {
    app: axum::Router,
    pub(super) db: PathBuf,
    /// The page's wall clock (Unix seconds), which tests move.
    now: Arc<AtomicI64>,
    pub(super) _dir: tempfile::TempDir,
}

pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) json: Value,
    pub(super) text: String,
}

/// The page over a fresh database whose directory holds `members`, with the supervisor's
/// admin token of a fresh Synapse admin account.
async fn page(s: &Synapse, members: &[&str]) -> Page {
    page_with(s, members, |_| {}).await
}

/// [`page`], with `f` setting more of the page's [`Web`] (another door's parts).
pub(super) async fn page_with(s: &Synapse, members: &[&str], f: impl FnOnce(&mut Web)) -> Page {
    let token = s.register(&s.unique("hearth"), true).await.access_token;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let mut conn = hearth::storage::open_connection(&db).unwrap();
    // Each member as the directory's sync would record them: with Synapse's own admin flag (a
    // session's role follows the directory).
    let http = hearth::http_client::builder().build().unwrap();
    let mut accounts = Vec::new();
    for u in members {
        let details: Value = http
            .get(format!("{}/_synapse/admin/v2/users/{u}", s.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        accounts.push(SynapseAccount {
            user_id: u.to_string(),
            deactivated: false,
            is_guest: false,
            user_type: None,
            created_s: Some(1_000),
            admin: details["admin"].as_bool().unwrap_or(false),
        });
    }
    directory::apply(
        &mut conn,
        &Snapshot {
            me: "@hearth:localhost".into(),
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
        dir.path().join("maintenance"),
    )
    .unwrap();
    web.admin_token = AdminToken::fixed(Some(token));
    let now = Arc::new(AtomicI64::new(chrono::Utc::now().timestamp()));
    let clock = now.clone();
    web.now_s = Arc::new(move || clock.load(Ordering::SeqCst));
    f(&mut web);
    Page {
        app: router(AppState::minimal(Some(Arc::new(web)))),
        db,
        now,
        _dir: dir,
    }
}

impl Page {
    async fn send(&self, req: Request<Body>) -> Answer {
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo("10.0.0.7:40000".parse::<SocketAddr>().unwrap()));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer {
            status,
            json: serde_json::from_str(&text).unwrap_or(Value::Null),
            text,
        }
    }

    pub(super) async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "family.test");
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
        self.send(req.body(body).unwrap()).await
    }

    pub(super) async fn form(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        fields: &[(&str, &str)],
    ) -> Answer {
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", enc(v)))
            .collect::<Vec<_>>()
            .join("&");
        let mut req = Request::builder()
            .method("POST")
            .uri(path)
            .header(header::HOST, "family.test")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req.body(Body::from(body)).unwrap()).await
    }

    /// Signed in as `localpart` (the harness's password): (cookie, CSRF token).
    pub(super) async fn session(&self, localpart: &str) -> (String, String) {
        let req = Request::post("/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"user": localpart, "password": Synapse::password(localpart)}).to_string(),
            ))
            .unwrap();
        let mut req = req;
        req.extensions_mut()
            .insert(ConnectInfo("10.0.0.2:40000".parse::<SocketAddr>().unwrap()));
        let resp = self.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{localpart} signs in");
        let cookie = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .find(|c| c.starts_with("hearth_session="))
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        (cookie, v["csrf"].as_str().unwrap().to_string())
    }

    /// `POST /api/v1/invitations` as the session; the answer.
    async fn invite(&self, (cookie, csrf): &(String, String), body: Value) -> Answer {
        self.call(
            "POST",
            "/api/v1/invitations",
            &[("cookie", cookie), ("x-csrf-token", csrf)],
            Some(body),
        )
        .await
    }

    async fn sign_up(&self, token: &str, user: &str, password: &str) -> Answer {
        self.call(
            "POST",
            "/api/v1/signup",
            &[],
            Some(json!({"token": token, "user": user, "password": password})),
        )
        .await
    }

    pub(super) fn entries(&self) -> Vec<hearth::audit::Entry> {
        let conn = hearth::storage::open_connection(&self.db).unwrap();
        let mut e = entries_visible_to(&conn, &Viewer::ServerAdmin, 10_000, None).unwrap();
        e.reverse();
        e
    }

    fn household_of(&self, user_id: &str) -> Option<String> {
        let conn = hearth::storage::open_connection(&self.db).unwrap();
        let l = directory::list(&conn).unwrap();
        l.households
            .iter()
            .find(|h| h.members.iter().any(|m| m.user_id == user_id))
            .map(|h| h.id.clone())
    }

    pub(super) fn with_db(&self, f: impl FnOnce(&mut rusqlite::Connection)) {
        let mut conn = hearth::storage::open_connection(&self.db).unwrap();
        f(&mut conn);
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

/// Whether Synapse lets `user` in with `password`.
async fn can_log_in(s: &Synapse, user: &str, password: &str) -> bool {
    let r = hearth::http_client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(format!("{}/_matrix/client/v3/login", s.base_url()))
        .json(&json!({"type": "m.login.password",
                      "identifier": {"type": "m.id.user", "user": user},
                      "password": password}))
        .send()
        .await
        .unwrap();
    r.status().is_success()
}

/// Whether the account exists at Synapse (asked as `admin`).
async fn exists(s: &Synapse, admin: &super::synapse::User, user_id: &str) -> bool {
    hearth::http_client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .get(format!(
            "{}/_synapse/admin/v2/users/{}",
            s.base_url(),
            user_id.replace('@', "%40").replace(':', "%3A")
        ))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
}

fn household(p: &Page, id: &str, admin: Option<&str>) {
    p.with_db(|c| {
        let now = chrono::Utc::now();
        directory::add_household(c, id, &format!("Familie {id}"), &ChangedBy::cli(), now).unwrap();
        if let Some(a) = admin {
            directory::assign(c, a, id, &ChangedBy::cli(), now).unwrap();
            directory::set_household_admin(c, a, id, true, &ChangedBy::cli(), now).unwrap();
        }
    });
}

fn token_of(a: &Answer) -> String {
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    a.json["token"].as_str().unwrap().to_string()
}

const PW: &str = "correct horse battery";

#[tokio::test]
async fn invite_an_admin_invites_and_the_link_makes_one_account_in_the_household() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let p = page(s, &[&root.user_id]).await;
    household(&p, "mueller", None);
    let root_s = p.session(&r).await;

    let a = p.invite(&root_s, json!({"household": "mueller"})).await;
    let token = token_of(&a);
    let link = a.json["link"].as_str().unwrap();
    assert_eq!(link, format!("http://family.test/join/{token}"));
    assert_eq!(a.json["invitation"]["household"], "mueller");
    assert!(a.json["qr_svg"].as_str().unwrap().starts_with("<svg"));
    let listed = p
        .call("GET", "/api/v1/invitations", &[("cookie", &root_s.0)], None)
        .await;
    assert_eq!(listed.json["invitations"].as_array().unwrap().len(), 1);

    // The link's page: a form, no sign-in needed.
    let form = p.call("GET", &format!("/join/{token}"), &[], None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.text.contains("Familie mueller") && form.text.contains("localhost"));

    let erna = s.unique("erna");
    let up = p.sign_up(&token, &erna, PW).await;
    assert_eq!(up.status, StatusCode::CREATED, "{}", up.text);
    let erna_id = s.user_id(&erna);
    assert_eq!(up.json["user_id"], erna_id.as_str());
    assert_eq!(up.json["server_name"], "localhost");
    assert!(can_log_in(s, &erna, PW).await, "the chosen password works");
    assert_eq!(p.household_of(&erna_id).as_deref(), Some("mueller"));

    // The same link again: 410, nothing created.
    let other = s.unique("other");
    let again = p.sign_up(&token, &other, PW).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.text);
    assert!(again.text.contains("used already"));
    assert!(!exists(s, &root, &s.user_id(&other)).await);
    let page410 = p.call("GET", &format!("/join/{token}"), &[], None).await;
    assert_eq!(page410.status, StatusCode::GONE);
    assert!(
        page410.text.contains("used already")
            && !page410
                .text
                .contains("<form method=\"post\" action=\"/join")
    );
    let unknown = p.sign_up(&"ab".repeat(32), &other, PW).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let e = p.entries();
    let find = |a: Action| e.iter().filter(|x| x.action == a).collect::<Vec<_>>();
    assert_eq!(find(Action::InvitationCreated).len(), 1);
    let used = find(Action::InvitationUsed);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].subject.as_deref(), Some(erna_id.as_str()));
    assert_eq!(find(Action::SignupRefused)[0].detail["reason"], "used");
    assert!(find(Action::AdminApiCall)
        .iter()
        .any(
            |x| x.detail["endpoint"] == "PUT /_synapse/admin/v2/users/{user_id}"
                && x.subject.as_deref() == Some(erna_id.as_str())
        ));
    assert!(
        !e.iter().any(|x| Value::Object(x.detail.clone())
            .to_string()
            .contains("10.0.0.")),
        "no addresses in the audit log"
    );
}

#[tokio::test]
async fn invite_expired_and_revoked_links_are_refused_and_state_changes_need_csrf() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let p = page(s, &[&root.user_id]).await;
    let root_s = p.session(&r).await;

    // Without the CSRF token: 403, nothing made.
    let no = p
        .call(
            "POST",
            "/api/v1/invitations",
            &[("cookie", &root_s.0)],
            Some(json!({})),
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let form = p
        .form("/invitations", &[("cookie", &root_s.0)], &[("days", "7")])
        .await;
    assert_eq!(form.status, StatusCode::FORBIDDEN);
    assert!(p
        .entries()
        .iter()
        .all(|e| e.action != Action::InvitationCreated));
    assert_eq!(
        p.invite(&root_s, json!({"days": 8})).await.status,
        StatusCode::BAD_REQUEST
    );

    let expiring = token_of(&p.invite(&root_s, json!({"days": 1})).await);
    let a = p.invite(&root_s, json!({})).await;
    let revoked = token_of(&a);
    let id = a.json["invitation"]["id"].as_i64().unwrap();
    let del = format!("/api/v1/invitations/{id}");
    assert_eq!(
        p.call("DELETE", &del, &[("cookie", &root_s.0)], None)
            .await
            .status,
        StatusCode::FORBIDDEN,
        "no CSRF token"
    );
    let ok = p
        .call(
            "DELETE",
            &del,
            &[("cookie", &root_s.0), ("x-csrf-token", &root_s.1)],
            None,
        )
        .await;
    assert_eq!(ok.status, StatusCode::NO_CONTENT);
    let listed = p
        .call("GET", "/api/v1/invitations", &[("cookie", &root_s.0)], None)
        .await;
    assert_eq!(
        listed.json["invitations"].as_array().unwrap().len(),
        1,
        "only the open one"
    );

    let name = s.unique("late");
    let r1 = p.sign_up(&revoked, &name, PW).await;
    assert_eq!(r1.status, StatusCode::GONE);
    assert!(r1.text.contains("withdrawn"), "{}", r1.text);
    p.now.fetch_add(86_400 + 1, Ordering::SeqCst);
    let r2 = p.sign_up(&expiring, &name, PW).await;
    assert_eq!(r2.status, StatusCode::GONE);
    assert!(r2.text.contains("expired"), "{}", r2.text);
    let de = p
        .call(
            "GET",
            &format!("/join/{expiring}"),
            &[("accept-language", "de")],
            None,
        )
        .await;
    assert_eq!(de.status, StatusCode::GONE);
    assert!(de.text.contains("abgelaufen"));
    assert!(!exists(s, &root, &s.user_id(&name)).await);
    let reasons: Vec<String> = p
        .entries()
        .iter()
        .filter(|e| e.action == Action::SignupRefused)
        .map(|e| e.detail["reason"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(reasons, ["revoked", "expired"]);
    assert!(p
        .entries()
        .iter()
        .any(|e| e.action == Action::InvitationRevoked));
}

#[tokio::test]
async fn invite_a_taken_name_is_refused_clearly_and_the_link_stays_usable() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let taken = s.unique("taken");
    s.register(&taken, false).await;
    let p = page(s, &[&root.user_id]).await;
    let root_s = p.session(&r).await;
    let token = token_of(&p.invite(&root_s, json!({})).await);

    let t = p.sign_up(&token, &taken, PW).await;
    assert_eq!(t.status, StatusCode::CONFLICT);
    assert!(t.text.contains("taken"), "{}", t.text);
    assert!(
        can_log_in(s, &taken, &Synapse::password(&taken)).await,
        "the owner's password is untouched"
    );
    assert_eq!(
        p.sign_up(&token, "Bad Name", PW).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        p.sign_up(&token, &s.unique("shortpw"), "short")
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    // The HTML form says it too, in German, and keeps the link usable.
    let de = p
        .form(
            &format!("/join/{token}"),
            &[("accept-language", "de")],
            &[("user", &taken), ("password", PW), ("password2", PW)],
        )
        .await;
    assert_eq!(de.status, StatusCode::CONFLICT);
    assert!(de.text.contains("vergeben"), "{}", de.text);

    let fresh = s.unique("fresh");
    let welcome = p
        .form(
            &format!("/join/{token}"),
            &[("accept-language", "de")],
            &[("user", &fresh), ("password", PW), ("password2", PW)],
        )
        .await;
    assert_eq!(welcome.status, StatusCode::CREATED, "{}", welcome.text);
    for needle in ["Willkommen", "Element X", "localhost", fresh.as_str()] {
        assert!(
            welcome.text.contains(needle),
            "{needle} in {}",
            welcome.text
        );
    }
    assert!(can_log_in(s, &fresh, PW).await);
    assert!(p
        .entries()
        .iter()
        .any(|e| e.action == Action::SignupRefused && e.detail["reason"] == "name_taken"));
}

#[tokio::test]
async fn invite_a_household_admin_invites_into_their_household_only_and_a_member_not_at_all() {
    let s = Synapse::shared();
    let h = s.unique("mama");
    let mama = s.register(&h, false).await;
    let m = s.unique("kid");
    let kid = s.register(&m, false).await;
    let p = page(s, &[&mama.user_id, &kid.user_id]).await;
    household(&p, "klein", Some(&mama.user_id));
    household(&p, "gross", None);
    let mama_s = p.session(&h).await;

    let no = p.invite(&mama_s, json!({"household": "gross"})).await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let a = p.invite(&mama_s, json!({})).await;
    let token = token_of(&a);
    assert_eq!(a.json["invitation"]["household"], "klein");
    let baby = s.unique("baby");
    assert_eq!(
        p.sign_up(&token, &baby, PW).await.status,
        StatusCode::CREATED
    );
    assert_eq!(p.household_of(&s.user_id(&baby)).as_deref(), Some("klein"));
    // The invitations page is in a household admin's nav, without the account forms.
    let html = p
        .call("GET", "/invitations", &[("cookie", &mama_s.0)], None)
        .await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.text.contains("href=\"/invitations\"") && !html.text.contains("/accounts/deactivate")
    );

    let kid_s = p.session(&m).await;
    let no = p.invite(&kid_s, json!({})).await;
    assert_eq!(no.status, StatusCode::FORBIDDEN);
    let list = p
        .call("GET", "/api/v1/invitations", &[("cookie", &kid_s.0)], None)
        .await;
    assert_eq!(list.status, StatusCode::FORBIDDEN);
    let stmt = p
        .call("GET", "/statement", &[("cookie", &kid_s.0)], None)
        .await;
    assert!(
        !stmt.text.contains("href=\"/invitations\""),
        "not in a member's nav"
    );
    let denied: Vec<_> = p
        .entries()
        .into_iter()
        .filter(|e| e.action == Action::Denied)
        .map(|e| e.actor.as_str().to_string())
        .collect();
    assert_eq!(
        denied,
        [
            mama.user_id.clone(),
            kid.user_id.clone(),
            kid.user_id.clone()
        ]
    );
    assert_eq!(
        p.entries()
            .iter()
            .filter(|e| e.action == Action::InvitationCreated)
            .count(),
        1
    );
}

#[tokio::test]
async fn invite_server_admins_deactivate_and_reset_passwords_household_admins_may_not() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let h = s.unique("papa");
    let papa = s.register(&h, false).await;
    let t = s.unique("target");
    let target = s.register(&t, false).await;
    let p = page(s, &[&root.user_id, &papa.user_id, &target.user_id]).await;
    household(&p, "fam", Some(&papa.user_id));
    let root_s = p.session(&r).await;
    let papa_s = p.session(&h).await;
    let body = json!({"user_id": target.user_id, "password": "a new password 1"});

    for (path, who) in [
        ("/api/v1/accounts/password", &papa_s),
        ("/api/v1/accounts/deactivate", &papa_s),
    ] {
        let a = p
            .call(
                "POST",
                path,
                &[("cookie", &who.0), ("x-csrf-token", &who.1)],
                Some(body.clone()),
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}");
    }
    let no_csrf = p
        .call(
            "POST",
            "/api/v1/accounts/password",
            &[("cookie", &root_s.0)],
            Some(body.clone()),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
    assert!(
        can_log_in(s, &t, &Synapse::password(&t)).await,
        "nothing changed yet"
    );

    let ok = p
        .call(
            "POST",
            "/api/v1/accounts/password",
            &[("cookie", &root_s.0), ("x-csrf-token", &root_s.1)],
            Some(body.clone()),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert!(
        !can_log_in(s, &t, &Synapse::password(&t)).await,
        "the old password fails"
    );
    assert!(
        can_log_in(s, &t, "a new password 1").await,
        "the new one works"
    );

    // Deactivating, from the page's form.
    let html = p
        .form(
            "/accounts/deactivate",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("user_id", &target.user_id)],
        )
        .await;
    assert_eq!(html.status, StatusCode::OK, "{}", html.text);
    assert!(!can_log_in(s, &t, "a new password 1").await, "deactivated");
    let me = p
        .call(
            "POST",
            "/api/v1/accounts/deactivate",
            &[("cookie", &root_s.0), ("x-csrf-token", &root_s.1)],
            Some(json!({"user_id": root.user_id})),
        )
        .await;
    assert_eq!(me.status, StatusCode::BAD_REQUEST, "not oneself");

    let e = p.entries();
    let changes: Vec<_> = e
        .iter()
        .filter(|x| x.action == Action::AccountChange)
        .map(|x| {
            (
                x.subject.clone().unwrap(),
                x.detail["op"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            (target.user_id.clone(), "reset_password".to_string()),
            (target.user_id.clone(), "deactivate".to_string())
        ]
    );
    assert_eq!(
        e.iter()
            .filter(|x| x.action == Action::Denied && x.actor.as_str() == papa.user_id)
            .count(),
        2
    );
}

#[tokio::test]
async fn invite_two_sign_ups_with_one_link_at_once_make_exactly_one_account() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let p = page(s, &[&root.user_id]).await;
    let root_s = p.session(&r).await;
    let token = token_of(&p.invite(&root_s, json!({})).await);
    let (a, b) = (s.unique("twin"), s.unique("twin"));
    let (ra, rb) = tokio::join!(p.sign_up(&token, &a, PW), p.sign_up(&token, &b, PW));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::GONE],
        "{} / {}",
        ra.text,
        rb.text
    );
    let made = [
        exists(s, &root, &s.user_id(&a)).await,
        exists(s, &root, &s.user_id(&b)).await,
    ];
    assert_eq!(made.iter().filter(|x| **x).count(), 1, "{made:?}");
}

#[tokio::test]
async fn invite_the_page_shows_a_new_invitation_once_as_link_and_qr_code() {
    let s = Synapse::shared();
    let r = s.unique("root");
    let root = s.register(&r, true).await;
    let p = page(s, &[&root.user_id]).await;
    let root_s = p.session(&r).await;
    let get = p
        .call("GET", "/invitations", &[("cookie", &root_s.0)], None)
        .await;
    assert_eq!(get.status, StatusCode::OK);
    assert!(get
        .text
        .contains("href=\"/invitations\" aria-current=\"page\""));
    let made = p
        .form(
            "/invitations",
            &[("cookie", &root_s.0)],
            &[("csrf", &root_s.1), ("household", ""), ("days", "3")],
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text);
    assert!(made.text.contains("<svg class=\"qr\""));
    assert!(
        !made.text.contains("style="),
        "no inline style under the CSP"
    );
    let link = made
        .text
        .split("id=\"invite-link\" href=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    assert!(link.starts_with("http://family.test/join/"));
    let again = p
        .call("GET", "/invitations", &[("cookie", &root_s.0)], None)
        .await;
    assert!(!again.text.contains(&link), "shown once");
    assert!(again.text.contains("/revoke"));
}
