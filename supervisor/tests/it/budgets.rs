//! Budgets that Synapse really enforces (issue 17), end to end: a real Synapse with the
//! household budgets' module loaded (`hearth_limits.py`), asking the supervisor's own limits
//! socket (`budget::socket`), fed by the supervisor's enforcer (`budget::enforce::tick`) over
//! budgets set through the page's doors (sign-in, CSRF) by the family's admins.
//!
//! - A member over their storage budget gets a clear Matrix error (403 `M_USER_LIMIT_EXCEEDED`
//!   with the budget page's address) for an upload that does not fit, while a smaller one
//!   fits and another member uploads as before; with the supervisor stopped, the last answer
//!   keeps holding (the module's documented `stale_s`).
//! - A prepaid household with nothing paid: Synapse's per-user rate-limit override slows its
//!   member's messages to the budget's burst, then one a second (429 `M_LIMIT_EXCEEDED`), and
//!   the member finds the notice in their notices room, in the
//!   language they chose on the page; a server admin's top-up lifts it (the "lifted" notice,
//!   messages at Synapse's own rate again).
//! - A household admin cannot change another household's budget: 403 and a `denied` entry.
//! - A used-up energy budget slows messages and lifts when the month turns (the enforcer's
//!   pass at the next month's first minute), with the "lifted" notice.

use super::invite::page_with;
use super::seal_notice::notices;
use super::synapse::{Synapse, User};
use axum::http::StatusCode;
use hearth::accountant::members::Directory;
use hearth::accounting::directory::{self, ChangedBy};
use hearth::audit::{Action, Actor};
use hearth::budget::enforce::{tick, Enforcer};
use hearth::budget::socket::{self, SharedLimits};
use hearth::config::AccountingConfig;
use hearth::health::probe::{AdminToken, Synapse as Probe};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// A Synapse of the test's own whose module asks `socket` (started off the async runtime).
async fn synapse_asking(socket: &std::path::Path) -> Synapse {
    let socket = socket.to_path_buf();
    tokio::task::spawn_blocking(move || Synapse::start_with_limits(&socket))
        .await
        .expect("start Synapse")
}

/// The supervisor's limits socket at `path`, until `stop` is cancelled.
fn serve(path: &std::path::Path, shared: &SharedLimits, stop: &CancellationToken) {
    let listener = socket::bind(path, None).expect("bind the limits socket");
    tokio::spawn(socket::serve(
        listener,
        path.to_path_buf(),
        shared.clone(),
        stop.clone(),
    ));
}

/// The supervisor's limits socket served, a Synapse whose module asks it, a server admin, and
/// the supervisor's own account (its admin token: the directory, the notices).
struct World {
    _dir: tempfile::TempDir,
    sock: std::path::PathBuf,
    shared: SharedLimits,
    stop: CancellationToken,
    s: Synapse,
    admin: User,
    sup: User,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("limits.sock");
    let shared = SharedLimits::default();
    let stop = CancellationToken::new();
    serve(&sock, &shared, &stop);
    let s = synapse_asking(&sock).await;
    let admin = s.register(&s.unique("admin"), true).await;
    let sup = s.register(&s.unique("hearth"), true).await;
    World {
        _dir: dir,
        sock,
        shared,
        stop,
        s,
        admin,
        sup,
    }
}

fn enforcer(db: &std::path::Path, s: &Synapse, token: &str, shared: &SharedLimits) -> Enforcer {
    Enforcer {
        db: db.to_path_buf(),
        members: Arc::new(Directory::new(db.to_path_buf())),
        accounting: AccountingConfig::default(),
        tariff_in_file: false,
        synapse: Probe::new(
            s.base_url(),
            Duration::from_secs(10),
            AdminToken::fixed(Some(token.to_string())),
        ),
        shared: shared.clone(),
        name_file: None,
    }
}

/// The page's budget doors see the enforcer's limits.
fn with_budgets(web: &mut hearth::http::Web, shared: &SharedLimits) {
    web.budgets = Some(Arc::new(hearth::http::budget_page::Budgets {
        limits: shared.clone(),
        wake: Arc::new(tokio::sync::Notify::new()),
        tariff_in_file: false,
        tariff: Default::default(),
    }));
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Until `f` holds (the module caches an answer for a second in these tests).
async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn a_member_over_the_storage_budget_gets_a_clear_error_and_others_upload_as_before() {
    let World {
        _dir,
        sock,
        shared,
        stop,
        s,
        admin,
        sup,
    } = world().await;
    let anna = s.register(&s.unique("anna"), false).await;
    let ben = s.register(&s.unique("ben"), false).await;
    let page = page_with(&s, &[&admin.user_id, &anna.user_id, &ben.user_id], |web| {
        with_budgets(web, &shared)
    })
    .await;
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let t = chrono::Utc::now();
        directory::add_household(&mut conn, "mueller", "Müller", &ChangedBy::cli(), t).unwrap();
        directory::assign(&mut conn, &anna.user_id, "mueller", &ChangedBy::cli(), t).unwrap();
        directory::assign(&mut conn, &ben.user_id, "mueller", &ChangedBy::cli(), t).unwrap();
    }
    // Anna keeps 4 KiB of pictures; the directory's sync reads that from Synapse.
    anna.upload(&[1u8; 4096], "image/jpeg").await;
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let d = directory::sync::SynapseDirectory::new(
            s.base_url(),
            Duration::from_secs(10),
            AdminToken::fixed(Some(sup.access_token.clone())),
        );
        directory::sync::sync_once(&mut conn, &d, now_s(), false)
            .await
            .unwrap();
    }
    // The server admin gives Anna 5000 bytes of storage on the page (904 left).
    let localpart = admin.user_id[1..].split(':').next().unwrap().to_string();
    let (cookie, csrf) = page.session(&localpart).await;
    let set = page
        .form(
            "/budget",
            &[("cookie", &cookie)],
            &[
                ("csrf", &csrf),
                ("scope", "member"),
                ("id", &anna.user_id),
                ("stored_gib", &format!("{}", 5000.0 / (1u64 << 30) as f64)),
            ],
        )
        .await;
    assert_eq!(set.status, StatusCode::SEE_OTHER, "{}", set.text);
    let e = enforcer(&page.db, &s, &sup.access_token, &shared);
    tick(&e, now_s()).await.unwrap();
    let left = shared.read().unwrap().members[&anna.user_id].stored_remaining_bytes;
    assert_eq!(left, Some(904));

    eventually("Anna's 2000-byte upload is refused", || async {
        let (status, body) = anna.try_upload(&[2u8; 2000], "image/jpeg").await;
        if status == reqwest::StatusCode::FORBIDDEN {
            assert_eq!(body["errcode"], "M_USER_LIMIT_EXCEEDED", "{body}");
            return true;
        }
        false
    })
    .await;
    // What still fits goes through; Ben has no budget of his own and is not held up.
    let (status, body) = anna.try_upload(&[3u8; 500], "image/jpeg").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (status, body) = ben.try_upload(&[4u8; 2000], "image/jpeg").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    // The admin's page, in German: Anna limited, the household's forms, the top-up and costs.
    let html = page
        .call(
            "GET",
            "/budget",
            &[("cookie", &format!("{cookie}; lang=de"))],
            None,
        )
        .await;
    assert_eq!(html.status, StatusCode::OK, "{}", html.text);
    for want in [
        "Budgets und Grenzen",
        "id=\"budget-household-mueller\"",
        "nicht begrenzt",
        "id=\"budget-topup\"",
        "Noch hat niemand einen Stromtarif eingetragen",
    ] {
        assert!(html.text.contains(want), "{want}: {}", html.text);
    }
    // The member sees it on the page.
    let (ac, _) = page
        .session(anna.user_id[1..].split(':').next().unwrap())
        .await;
    let mine = page
        .call("GET", "/api/v1/budget", &[("cookie", &ac)], None)
        .await;
    assert_eq!(
        mine.json["limits"]["stored_remaining_bytes"], 904,
        "{}",
        mine.text
    );

    // The supervisor stops: the module keeps the last answer (stale_s), uploads that do not
    // fit stay refused, and nothing breaks for anyone.
    stop.cancel();
    eventually("the socket is gone", || async { !sock.exists() }).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = anna.try_upload(&[5u8; 2000], "image/jpeg").await;
    assert_eq!(status, reqwest::StatusCode::FORBIDDEN, "{body}");
    let (status, body) = ben.try_upload(&[6u8; 100], "image/jpeg").await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_used_up_prepaid_budget_slows_messages_tells_the_member_and_a_top_up_lifts_it() {
    let World {
        _dir,
        sock: _,
        shared,
        stop,
        s,
        admin,
        sup,
    } = world().await;
    let clara = s.register(&s.unique("clara"), false).await;
    let ha = s.register(&s.unique("hadmin"), false).await;
    let page = page_with(&s, &[&admin.user_id, &clara.user_id, &ha.user_id], |web| {
        with_budgets(web, &shared)
    })
    .await;
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let t = chrono::Utc::now();
        for (id, name) in [("schmidt", "Schmidt"), ("weber", "Weber")] {
            directory::add_household(&mut conn, id, name, &ChangedBy::cli(), t).unwrap();
        }
        directory::assign(&mut conn, &clara.user_id, "schmidt", &ChangedBy::cli(), t).unwrap();
        directory::assign(&mut conn, &ha.user_id, "weber", &ChangedBy::cli(), t).unwrap();
        directory::set_household_admin(&mut conn, &ha.user_id, "weber", true, &ChangedBy::cli(), t)
            .unwrap();
    }
    let local = |u: &str| u[1..].split(':').next().unwrap().to_string();

    // Weber's household admin tries to change Schmidt's budget: 403, and the log says so.
    let (hc, hcsrf) = page.session(&local(&ha.user_id)).await;
    let denied = page
        .call(
            "POST",
            "/api/v1/budget",
            &[("cookie", &hc), ("x-csrf-token", &hcsrf)],
            Some(json!({"scope": "household", "id": "schmidt", "budget": {"prepaid": true}})),
        )
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    // Their own household is theirs to set.
    let own = page
        .call(
            "POST",
            "/api/v1/budget",
            &[("cookie", &hc), ("x-csrf-token", &hcsrf)],
            Some(json!({"scope": "household", "id": "weber", "budget": {"energy_wh": 20000.0}})),
        )
        .await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    {
        let conn = hearth::storage::open_connection(&page.db).unwrap();
        let entries = hearth::audit::entries_visible_to(
            &conn,
            &hearth::audit::Viewer::ServerAdmin,
            1000,
            None,
        )
        .unwrap();
        assert!(
            entries.iter().any(|e| e.action == Action::Denied
                && e.actor == Actor::User(ha.user_id.clone())
                && e.detail["what"] == "budget of household schmidt"),
            "a denied entry for the attempt"
        );
        assert!(entries
            .iter()
            .any(|e| e.action == Action::LimitChange && e.detail["household"] == "weber"));
    }

    // Clara chose German on the page; the server admin makes Schmidt prepaid, 3 messages a
    // minute once used up, and nothing is paid yet.
    let signed = page
        .call(
            "POST",
            "/api/v1/session",
            &[("cookie", "lang=de")],
            Some(json!({"user": local(&clara.user_id),
                        "password": Synapse::password(&local(&clara.user_id))})),
        )
        .await;
    assert_eq!(signed.status, StatusCode::OK, "{}", signed.text);
    let (c, csrf) = page.session(&local(&admin.user_id)).await;
    let r = page
        .call(
            "POST",
            "/api/v1/budget",
            &[("cookie", &c), ("x-csrf-token", &csrf)],
            Some(json!({"scope": "household", "id": "schmidt",
                        "budget": {"prepaid": true, "limited_burst": 3}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let e = enforcer(&page.db, &s, &sup.access_token, &shared);
    assert_eq!(tick(&e, now_s()).await.unwrap(), 1, "one notice: Clara's");
    assert_eq!(tick(&e, now_s()).await.unwrap(), 0, "told once");

    let room = clara.create_room().await;
    eventually("Clara's fourth quick message is refused", || async {
        let mut refused = None;
        for i in 0..4 {
            let (status, body) = clara.try_send_text(&room, &format!("Hallo {i}")).await;
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                refused = Some(body);
                break;
            }
        }
        match refused {
            Some(body) => {
                assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
                assert!(body["retry_after_ms"].as_u64().unwrap_or(0) > 0, "{body}");
                true
            }
            None => false,
        }
    })
    .await;
    let told = notices(&clara).await;
    assert!(
        told.iter()
            .any(|b| b.contains("Guthaben") && b.contains("(3 hintereinander")),
        "the notice, in German: {told:?}"
    );
    assert!(
        !told.iter().any(|b| b.contains("Your")),
        "German only: {told:?}"
    );

    // The admin records a top-up (cash): the limit lifts, Clara is told, and messages flow.
    let t = page
        .call(
            "POST",
            "/api/v1/budget/topup",
            &[("cookie", &c), ("x-csrf-token", &csrf)],
            Some(json!({"household": "schmidt", "amount": 20.0, "method": "cash", "note": "Oma"})),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{}", t.text);
    assert_eq!(tick(&e, now_s()).await.unwrap(), 1, "the lift's notice");
    eventually("Clara's messages flow again", || async {
        for i in 0..6 {
            let (status, _) = clara.try_send_text(&room, &format!("wieder {i}")).await;
            if status != reqwest::StatusCode::OK {
                return false;
            }
        }
        true
    })
    .await;
    let told = notices(&clara).await;
    assert!(
        told.iter().any(|b| b.contains("aufgehoben")),
        "the lift, in German: {told:?}"
    );
    // A member sees their household's balance and top-ups.
    let (cc, _) = page.session(&local(&clara.user_id)).await;
    let mine = page
        .call("GET", "/api/v1/budget", &[("cookie", &cc)], None)
        .await;
    assert_eq!(
        mine.json["top_ups"]["schmidt"][0]["amount"], 20.0,
        "{}",
        mine.text
    );
    assert_eq!(mine.json["limits"]["blocked"], false, "{}", mine.text);
    // The statement says what was paid and what was used.
    let st = page
        .call(
            "GET",
            "/statement",
            &[("cookie", &format!("{cc}; lang=de"))],
            None,
        )
        .await;
    assert!(
        st.text.contains("eingezahlt 20,00"),
        "the statement shows the prepaid account: {}",
        st.text
    );
    stop.cancel();
}

/// The month's first hour at 6 W, as the meter's flush writes it (power minutes, nobody's
/// requests): every member's base share of it counts against their energy budget.
fn an_hour_of_power(db: &std::path::Path, month_start_s: i64) {
    use hearth::meter::buckets::Minutes;
    use hearth::meter::integrator::Piece;
    use hearth::units::{Volts, WattHours, Watts};
    let mut storage = hearth::storage::Storage::open(db).unwrap();
    let mut power = Minutes::default();
    for m in (month_start_s..month_start_s + 3600).step_by(60) {
        let d = Duration::from_secs(60);
        let w = Watts(6.0);
        power.add(&Piece {
            end_wall_ms: (m + 60) * 1000,
            duration: d,
            energy: w * d,
            estimated: WattHours::ZERO,
            measured: Some((w, Volts(5.0))),
        });
    }
    storage
        .write_batch_with(&power, &[], &hearth::storage::AcctBatch::default())
        .unwrap();
}

#[tokio::test]
async fn a_used_up_energy_budget_lifts_when_the_month_turns() {
    let World {
        _dir,
        sock: _,
        shared,
        stop,
        s,
        admin,
        sup,
    } = world().await;
    let dora = s.register(&s.unique("dora"), false).await;
    let page = page_with(&s, &[&admin.user_id, &dora.user_id], |web| {
        with_budgets(web, &shared)
    })
    .await;
    let now = now_s();
    let (_, month_start, month_end) = hearth::storage::month_of(now).unwrap();
    an_hour_of_power(&page.db, month_start);
    // Dora may use 1 Wh this month; her share of 6 Wh is more.
    {
        let mut conn = hearth::storage::open_connection(&page.db).unwrap();
        let b = hearth::budget::Budget {
            energy_wh: Some(1.0),
            limited_burst: 2,
            ..hearth::budget::Budget::default()
        };
        let by = hearth::audit::NewEntry::new(Actor::Cli, Action::LimitChange);
        hearth::budget::set(
            &mut conn,
            &hearth::budget::Scope::Member(dora.user_id.clone()),
            &b,
            by,
        )
        .unwrap();
    }
    let e = enforcer(&page.db, &s, &sup.access_token, &shared);
    // After that hour (also when this runs in the month's first hour).
    tick(&e, now.max(month_start + 3660)).await.unwrap();
    assert_eq!(
        shared.read().unwrap().members[&dora.user_id].throttle_burst,
        Some(2)
    );
    let room = dora.create_room().await;
    // A quick burst is slowed: some message of it refused (on a loaded machine the sends may
    // be far enough apart for the bucket of one a second to refill between two of them).
    eventually("Dora's quick messages are slowed", || async {
        for i in 0..4 {
            let (status, body) = dora.try_send_text(&room, &format!("m{i}")).await;
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED", "{body}");
                return true;
            }
        }
        false
    })
    .await;
    // The month turns: nothing used yet in the new one, the limit lifts and Dora is told.
    assert_eq!(
        tick(&e, month_end + 60).await.unwrap(),
        1,
        "the lift's notice"
    );
    assert!(!shared.read().unwrap().members[&dora.user_id].limited());
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..5 {
        let (status, body) = dora.try_send_text(&room, &format!("neu {i}")).await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    }
    let told = notices(&dora).await;
    assert!(told.iter().any(|b| b.contains("lifted")), "{told:?}");
    stop.cancel();
}
