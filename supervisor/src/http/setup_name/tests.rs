//! The name step through the router, with the fake systemd on a private bus and names that
//! resolve to loopback only.

use super::*;
use crate::health::machine::Health;
use crate::health::monitor::HealthReport;
use crate::health::systemd::tests::{Fake, FakeUnitState, World};
use crate::name::check::tests::{loopback_probe, loopback_resolver};
use axum::body::Body;
use axum::http::Request;
use std::path::Path;
use std::time::Duration;
use tower::ServiceExt;

const CODE: &str = "ABCD-1234";
const GOOD: &str = "family-home.example.org";
const REFUSED: &str = "refused.example.org";
const COOP_NAME: &str = "nord.coop.test";

struct Rig {
    state: AppState,
    world: World,
    dir: tempfile::TempDir,
}

async fn setup_box() -> Rig {
    setup_box_with(None).await
}

/// A box whose cooperative (domain, relay settings) is set up, or not.
async fn setup_box_with(coop: Option<(String, crate::config::RelaySettings)>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let fake = Fake::standard();
    {
        let mut units = fake.units.lock().unwrap();
        for name in [GOOD, REFUSED, COOP_NAME] {
            units.insert(
                crate::name::unit(name),
                FakeUnitState::service("inactive", "dead", 0),
            );
        }
        units.insert(
            crate::tunnel::UNIT.to_string(),
            FakeUnitState::service("inactive", "dead", 0),
        );
    }
    fake.failing
        .lock()
        .unwrap()
        .push(crate::name::unit(REFUSED));
    let world = World::with(fake).await;
    let checker = Checker {
        resolver: Arc::new(loopback_resolver(&[GOOD, REFUSED, "taken.test", COOP_NAME])),
        probe: loopback_probe().await,
        resolve_timeout: Duration::from_secs(2),
    };
    std::fs::write(dir.path().join("setup_code"), format!("{CODE}\n")).unwrap();
    let (domain, relay) = match coop {
        Some((d, r)) => (Some(d), Some(r)),
        None => (None, None),
    };
    let mut setup = NameSetup::new(
        dir.path().join("server_name"),
        domain,
        checker,
        Arc::new(world.units()),
        TaskTracker::new(),
    )
    .with_relay(relay);
    // No tunnel runs in this test: do not wait for one.
    setup.relay_wait = Duration::from_millis(100);
    let name = Arc::new(setup);
    let web = crate::http::Web {
        setup_code_file: dir.path().join("setup_code"),
        name: Some(name),
        ..crate::http::Web::new(
            &dir.path().join("web.db"),
            "http://127.0.0.1:9",
            Default::default(),
            Arc::new(crate::accountant::members::Directory::new(
                dir.path().join("web.db"),
            )),
            dir.path().join("maintenance"),
        )
        .unwrap()
    };
    let state = AppState::minimal(Some(Arc::new(web)));
    Rig { state, world, dir }
}

struct Answer {
    status: StatusCode,
    location: Option<String>,
    refresh: bool,
    body: String,
}

async fn send(st: &AppState, req: Request<Body>) -> Answer {
    let res = super::super::router(st.clone()).oneshot(req).await.unwrap();
    let status = res.status();
    let location = res
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string());
    let refresh = res.headers().contains_key(header::REFRESH);
    let body = axum::body::to_bytes(res.into_body(), 1 << 20)
        .await
        .unwrap();
    Answer {
        status,
        location,
        refresh,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get(st: &AppState, lang: &str) -> Answer {
    send(
        st,
        Request::get("/setup")
            .header("accept-language", lang)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(st: &AppState, path: &str, form: &[(&str, &str)], lang: &str) -> Answer {
    let body = form
        .iter()
        .map(|(k, v)| format!("{k}={}", crate::synapse_api::segment(v)))
        .collect::<Vec<_>>()
        .join("&");
    send(
        st,
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("sec-fetch-site", "same-origin")
            .header("accept-language", lang)
            .body(Body::from(body))
            .unwrap(),
    )
    .await
}

fn own(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("code", CODE.to_string()),
        ("kind", "own".to_string()),
        ("domain", name.to_string()),
    ]
}

async fn post_own(st: &AppState, name: &str, lang: &str) -> Answer {
    let f = own(name);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post(st, "/setup/name", &f, lang).await
}

async fn confirm(st: &AppState, name: &str, understood: bool) -> Answer {
    let mut f = vec![("code", CODE), ("kind", "own"), ("name", name)];
    if understood {
        f.push(("understood", "on"));
    }
    post(st, "/setup/name/confirm", &f, "en").await
}

fn job(st: &AppState) -> Job {
    st.web.as_ref().unwrap().name.as_ref().unwrap().job()
}

async fn wait_job(st: &AppState) -> Job {
    for _ in 0..200 {
        let j = job(st);
        if !matches!(j, Job::Running { .. }) {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the name job never ended");
}

fn audit_entries(dir: &Path) -> Vec<crate::audit::Entry> {
    let db = crate::storage::Storage::open(&dir.join("web.db")).unwrap();
    crate::audit::entries_visible_to(
        db.connection(),
        &crate::audit::Viewer::ServerAdmin,
        100,
        None,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_name_is_checked_confirmed_and_started_through_systemd() {
    let b = setup_box().await;
    let st = &b.state;
    // Before the name: the name form, in both languages; the cooperative's choice waits for
    // the relay.
    let a = get(st, "en").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body.contains("Choose the server&#39;s name")
            || a.body.contains("Choose the server's name"),
        "{}",
        a.body
    );
    assert!(a.body.contains("value=\"cooperative\" disabled"));
    assert!(a.body.contains("Available when the cooperative"));
    let de = get(st, "de").await;
    assert!(de.body.contains("Den Namen des Servers wählen"));
    // The first admin cannot be made before the name.
    let early = post(
        st,
        "/setup",
        &[
            ("code", CODE),
            ("user", "anna"),
            ("password", "0123456789"),
            ("password2", "0123456789"),
        ],
        "en",
    )
    .await;
    assert_eq!(early.status, StatusCode::CONFLICT);
    assert!(early.body.contains("Choose the server"));

    // A wrong code is refused before anything is asked.
    let mut f = own(GOOD);
    f[0].1 = "WRONG".into();
    let fv: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let wrong = post(st, "/setup/name", &fv, "en").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    // Refusals, each with its reason on the page.
    for (name, en, de) in [
        (
            "hearth.local",
            "work only inside your home network",
            "nur im eigenen Heimnetz",
        ),
        (
            "localhost",
            "only this box itself",
            "nur dieses Gerät selbst",
        ),
        ("192.0.2.1", "not an IP address", "keine IP-Adresse"),
        ("example.org:8448", "without a port", "ohne Port"),
        ("nowhere.example.org", "does not resolve", "nicht auflösen"),
        (
            "taken.test",
            "A Matrix server already answers",
            "bereits ein Matrix-Server",
        ),
    ] {
        let a = post_own(st, name, "en").await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{name}");
        assert!(a.body.contains(en), "{name}: {}", a.body);
        assert!(
            a.body.contains(&format!("value=\"{name}\"")),
            "the form keeps {name}"
        );
        let a = post_own(st, name, "de").await;
        assert!(a.body.contains(de), "{name}: {}", a.body);
    }

    // A good name: the confirmation says it can never change, and needs the checkbox.
    let a = post_own(st, "Family-Home.Example.org", "en").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert!(a
        .body
        .contains("The server will be called family-home.example.org."));
    assert!(a.body.contains("resolves to 127.0.0.1"));
    assert!(a.body.contains("can never change"));
    assert!(a.body.contains("name=\"understood\" value=\"on\" required"));
    let unticked = confirm(st, GOOD, false).await;
    assert_eq!(unticked.status, StatusCode::BAD_REQUEST);
    assert!(unticked.body.contains("Please confirm"));
    assert_eq!(job(st), Job::Idle);
    assert!(!b
        .world
        .fake
        .log()
        .iter()
        .any(|l| l.starts_with("StartUnit")));

    // Confirmed: the unit of the escaped name is started, the page shows progress until
    // Synapse answers.
    *st.health.get() = Some(HealthReport {
        state: Health::Starting,
        reason: "started; waiting for the first answer".into(),
        units: vec![],
        last_restart_ms: None,
        maintenance: false,
        awaiting_setup: false,
    });
    let a = confirm(st, GOOD, true).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.location.as_deref(), Some("/setup"));
    let progress = get(st, "en").await;
    assert!(progress.refresh, "the progress page reloads itself");
    assert!(progress.body.contains("Setting up family-home.example.org"));
    assert_eq!(wait_job(st).await, Job::Done { name: GOOD.into() });
    assert!(b
        .world
        .fake
        .log()
        .contains(&"StartUnit hearth-name@family\\x2dhome.example.org.service".to_string()));
    // The setup code is still valid (the first admin does not exist yet).
    assert!(b.dir.path().join("setup_code").exists());

    // Audited: the name and the kind of choice; no address.
    let entries = audit_entries(b.dir.path());
    let e = entries
        .iter()
        .find(|e| e.action == crate::audit::Action::ServerNameChosen)
        .expect("an audit entry for the name");
    assert_eq!(e.detail["name"], GOOD);
    assert_eq!(e.detail["choice"], "own");
    assert!(!serde_json::to_string(&e.detail)
        .unwrap()
        .contains("127.0.0.1"));

    // Synapse not up yet: still setting up; a second confirmation changes nothing.
    let a = get(st, "en").await;
    assert!(
        a.body.contains("started; waiting for the first answer"),
        "{}",
        a.body
    );
    let again = confirm(st, "other.example.org", true).await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let starts = b
        .world
        .fake
        .log()
        .iter()
        .filter(|l| l.starts_with("StartUnit"))
        .count();
    assert_eq!(starts, 1);
    // The root side wrote the name; Synapse answers: the first admin's form, as before.
    std::fs::write(b.dir.path().join("server_name"), format!("{GOOD}\n")).unwrap();
    st.health.get().as_mut().unwrap().state = Health::Healthy;
    let a = get(st, "en").await;
    assert!(!a.refresh);
    assert!(a.body.contains("name=\"password2\""), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_the_box_refuses_is_shown_with_the_journal_to_read() {
    let b = setup_box().await;
    let st = &b.state;
    assert_eq!(post_own(st, REFUSED, "en").await.status, StatusCode::OK);
    assert_eq!(
        confirm(st, REFUSED, true).await.status,
        StatusCode::SEE_OTHER
    );
    let j = wait_job(st).await;
    assert!(
        matches!(&j, Job::Failed { why: Why::Result { result, .. }, .. } if result == "failed"),
        "{j:?}"
    );
    let a = get(st, "en").await;
    assert!(
        a.body.contains("The box refused the name (failed)"),
        "{}",
        a.body
    );
    assert!(
        a.body
            .contains("journalctl -u &#39;hearth-name@refused.example.org.service&#39;")
            || a.body
                .contains("journalctl -u 'hearth-name@refused.example.org.service'"),
        "{}",
        a.body
    );
    // The form is back: another try is possible.
    assert!(a.body.contains("action=\"/setup/name\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_under_the_cooperatives_domain_once_it_is_set_up() {
    let b = setup_box().await;
    let mut web = crate::http::Web::new(
        &b.dir.path().join("web2.db"),
        "http://127.0.0.1:9",
        Default::default(),
        Arc::new(crate::accountant::members::Directory::new(
            b.dir.path().join("web2.db"),
        )),
        b.dir.path().join("maintenance"),
    )
    .unwrap();
    web.setup_code_file = b.dir.path().join("setup_code");
    let old = b.state.web.as_ref().unwrap().name.as_ref().unwrap();
    web.name = Some(Arc::new(NameSetup::new(
        b.dir.path().join("server_name"),
        Some("example.org".into()),
        Checker {
            resolver: Arc::new(loopback_resolver(&[GOOD])),
            ..old.checker.clone()
        },
        old.units.clone(),
        TaskTracker::new(),
    )));
    let st = AppState::minimal(Some(Arc::new(web)));
    let a = get(&st, "en").await;
    assert!(!a.body.contains("value=\"cooperative\" disabled"));
    assert!(a.body.contains(".example.org</span>"));
    let bad = post(
        &st,
        "/setup/name",
        &[("code", CODE), ("kind", "cooperative"), ("label", "a.b")],
        "en",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("no dots"));
    let ok = post(
        &st,
        "/setup/name",
        &[
            ("code", CODE),
            ("kind", "cooperative"),
            ("label", "family-home"),
        ],
        "en",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok
        .body
        .contains("The server will be called family-home.example.org."));
    assert!(ok.body.contains("name=\"kind\" value=\"cooperative\""));
}

/// The cooperative's own services in this process (hearth-coop's library), on loopback, with a
/// certificate for "localhost" from a CA in `dir/coop-ca.pem`.
async fn cooperative(dir: &Path) -> (cooperative::Running, crate::config::RelaySettings) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.join("coop-ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.join("coop-cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("coop-key.pem"), key.serialize_pem()).unwrap();
    let mut config = cooperative::Config {
        domain: "coop.test".into(),
        database: dir.join("coop.sqlite3"),
        ..Default::default()
    };
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.control.listen = "127.0.0.1:0".parse().unwrap();
    config.site.listen = "127.0.0.1:0".parse().unwrap();
    config.control.name = "localhost.test".into();
    config.control.cert = dir.join("coop-cert.pem");
    config.control.key = dir.join("coop-key.pem");
    let running = cooperative::start(&config).await.unwrap();
    let relay = crate::config::RelaySettings {
        api: format!("https://localhost:{}", running.control.port()),
        ca: Some(dir.join("coop-ca.pem")),
        config: dir.join("relay.toml"),
        key: dir.join("tunnel.key"),
        status: dir.join("tunnel-status.json"),
    };
    (running, relay)
}

fn coop_form(token: &str) -> Vec<(&'static str, &str)> {
    vec![
        ("code", CODE),
        ("kind", "cooperative"),
        ("label", "nord"),
        ("token", token),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cooperative_name_is_enrolled_with_the_familys_code_and_the_tunnel_started_first() {
    let coop_dir = tempfile::tempdir().unwrap();
    let (coop, relay) = cooperative(coop_dir.path()).await;
    let b = setup_box_with(Some(("coop.test".into(), relay.clone()))).await;
    let st = &b.state;
    // The form asks for the cooperative's enrolment code.
    let a = get(st, "de").await;
    assert!(
        a.body.contains("Anmeldecode der Genossenschaft"),
        "{}",
        a.body
    );
    let a = get(st, "en").await;
    assert!(a.body.contains("name=\"token\""));
    // Without it: the reason, nothing asked.
    let none = post(st, "/setup/name", &coop_form(""), "en").await;
    assert_eq!(none.status, StatusCode::BAD_REQUEST);
    assert!(
        none.body.contains("Enter the enrolment code"),
        "{}",
        none.body
    );

    // A code the cooperative does not know: the confirmation, then the cooperative's reason
    // on the form; no name unit, no tunnel.
    let ok = post(
        st,
        "/setup/name",
        &coop_form("AAAA-BBBB-CCCC-DDDD-EEEE"),
        "en",
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert!(ok
        .body
        .contains("name=\"token\" value=\"AAAA-BBBB-CCCC-DDDD-EEEE\""));
    let confirm_coop = |token: &str| {
        let token = token.to_string();
        async move {
            post(
                st,
                "/setup/name/confirm",
                &[
                    ("code", CODE),
                    ("kind", "cooperative"),
                    ("name", COOP_NAME),
                    ("token", &token),
                    ("understood", "on"),
                ],
                "en",
            )
            .await
        }
    };
    assert_eq!(
        confirm_coop("AAAA-BBBB-CCCC-DDDD-EEEE").await.status,
        StatusCode::SEE_OTHER
    );
    let failed = wait_job(st).await;
    assert!(
        matches!(&failed, Job::Failed { why: Why::Error(e), .. } if e.contains("unknown enrolment token")),
        "{failed:?}"
    );
    let a = get(st, "en").await;
    assert!(a.body.contains("unknown enrolment token"), "{}", a.body);
    assert!(!b
        .world
        .fake
        .log()
        .iter()
        .any(|l| l.starts_with("StartUnit")));
    assert!(!relay.config.exists());

    // The cooperative's code: enrolled (the box's own key), the tunnel started, then the name.
    let token = coop.store.issue_token("Familie Nord").unwrap();
    assert_eq!(confirm_coop(&token).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        wait_job(st).await,
        Job::Done {
            name: COOP_NAME.into()
        }
    );
    let starts: Vec<String> = b
        .world
        .fake
        .log()
        .into_iter()
        .filter(|l| l.starts_with("StartUnit"))
        .collect();
    assert_eq!(
        starts,
        vec![
            "StartUnit hearth-tunnel.service".to_string(),
            format!("StartUnit {}", crate::name::unit(COOP_NAME)),
        ]
    );
    let written = crate::tunnel::RelayConfig::load(&relay.config).unwrap();
    assert_eq!(written.name, COOP_NAME);
    assert_eq!(
        written.edge,
        format!("localhost.test:{}", coop.control.port())
    );
    let key = hearth_tunnel::key::BoxKey::load_or_create(&relay.key).unwrap();
    assert_eq!(
        coop.store.key_for(COOP_NAME).unwrap(),
        Some(key.public().to_vec())
    );
    let e = audit_entries(b.dir.path())
        .into_iter()
        .find(|e| e.action == crate::audit::Action::ServerNameChosen)
        .unwrap();
    assert_eq!(e.detail["choice"], "cooperative");
    assert!(
        !serde_json::to_string(&e.detail).unwrap().contains(&token),
        "the code is not kept"
    );
    coop.stop().await;
}
