//! Issue 5's end-to-end check: members of a real Synapse do clearly different amounts of work;
//! the supervisor's accounting — the member directory synced from Synapse's admin API, the
//! access log Synapse wrote, the simulated INA219 replaying a power trace, the same
//! `account` path the daemon's stored inputs go through — bills them accordingly.

use super::synapse::Synapse;
use hearth::account::account;
use hearth::accountant::members::Directory;
use hearth::accounting::directory::{self, sync::sync_once, ChangedBy, SynapseDirectory};
use hearth::config::{BaseWatts, Config};
use hearth::health::probe::AdminToken;
use hearth::power::trace::Trace;
use std::time::Duration;

#[tokio::test]
async fn members_who_do_more_pay_more_and_the_bill_adds_up() {
    let s = Synapse::shared();
    let t0_ms = chrono::Utc::now().timestamp_millis();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let [a, b, c] = ["alice", "bob", "carol"].map(|n| s.unique(n));
    let alice = s.register(&a, false).await;
    let bob = s.register(&b, false).await;
    let carol = s.register(&c, false).await;

    // The directory and two households: alice and bob a family, carol a club.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let mut conn = hearth::storage::open_connection(&db).unwrap();
    let synapse = SynapseDirectory::new(
        s.base_url(),
        Duration::from_secs(30),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    );
    let now = chrono::Utc::now();
    let by = ChangedBy::cli();
    directory::add_household(&mut conn, "fam", "Familie", &by, now).unwrap();
    directory::add_household(&mut conn, "club", "Verein", &by, now).unwrap();

    // Clearly different work: alice chats a lot and shares a photo (~120 requests), bob a
    // little (~25), carol only looks once (one sync, in no room: joining a busy room and
    // syncing it would cost more than a few messages).
    let work_start_ms = chrono::Utc::now().timestamp_millis();
    let room = alice.create_room().await;
    bob.join(&room).await;
    for i in 0..60 {
        alice.send_text(&room, &format!("Nachricht {i}")).await;
        alice.sync(None).await;
    }
    alice.upload(&[42u8; 200_000], "image/jpeg").await;
    for i in 0..12 {
        bob.send_text(&room, &format!("ok {i}")).await;
        bob.sync(None).await;
    }
    bob.upload(&[1u8; 1000], "image/png").await;
    carol.sync(None).await;
    let work_end_ms = chrono::Utc::now().timestamp_millis();

    sync_once(&mut conn, &synapse, chrono::Utc::now().timestamp(), true)
        .await
        .unwrap();
    for (who, house) in [(&alice, "fam"), (&bob, "fam"), (&carol, "club")] {
        directory::assign(&mut conn, &who.user_id, house, &by, chrono::Utc::now()).unwrap();
    }
    drop(conn);

    // Let the access log catch up with the last request, then take it as Synapse wrote it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = dir.path().join("access.log");
    std::fs::write(&log, s.access_log().join("\n")).unwrap();

    // The power the simulated INA219 saw meanwhile, as a board draws it: 2.5 W idle (5.0 V,
    // 0.5 A) from the start of the minute the test began until a minute after the work, and
    // 5.0 W (5.0 V, 1.0 A) while the members worked. The dynamic energy of each minute follows
    // the work done in it, so a minute boundary that leaves one member's last request alone in
    // a minute gives them that request's share, not a whole minute of someone else's work.
    let start_ms = t0_ms - t0_ms.rem_euclid(60_000);
    let s_of = |ms: i64| (ms - start_ms) as f64 / 1000.0;
    let (busy_from, busy_to) = (s_of(work_start_ms), s_of(work_end_ms + 200));
    let duration_s = s_of(chrono::Utc::now().timestamp_millis()).ceil() + 60.0;
    let trace = Trace::parse(
        "work.csv",
        &format!(
            "t_s,volts,amps\n0,5.0,0.5\n{busy_from},5.0,1.0\n{busy_to},5.0,0.5\n{duration_s},5.0,0.5\n"
        ),
    )
    .unwrap();
    let expected_wh = (2.5 * duration_s + 2.5 * (busy_to - busy_from)) / 3600.0;
    let mut config = Config::defaults();
    // The idle draw is the base load: only the work's minutes have dynamic energy to attribute.
    config.accounting.base_watts = BaseWatts::Fixed(2.5);
    let out = account(trace, start_ms, &log, &Directory::new(&db), &config).unwrap();
    let st = &out.statement;

    let m = |u: &str| {
        st.members
            .iter()
            .find(|m| m.user_id == u)
            .unwrap_or_else(|| panic!("{u} is not in the statement: {:#?}", st.members))
    };
    let (ma, mb, mc) = (m(&alice.user_id), m(&bob.user_id), m(&carol.user_id));
    assert!(
        ma.direct_wh > mb.direct_wh && mb.direct_wh > mc.direct_wh && mc.direct_wh >= 0.0,
        "direct_wh should follow the work: alice {} > bob {} > carol {}",
        ma.direct_wh,
        mb.direct_wh,
        mc.direct_wh
    );
    // The supervisor's own account is nobody's member.
    assert!(st.members.iter().all(|x| x.user_id != supervisor.user_id));
    // Conservation: every measured watt-hour is someone's, other services', or unattributed.
    let billed: f64 = st.members.iter().map(|x| x.total_wh).sum();
    let sum = billed + st.other_services_wh + st.unattributed_wh;
    assert!(
        (sum - st.measured_wh).abs() < 1e-9,
        "members {billed} + other {} + unattributed {} != measured {}",
        st.other_services_wh,
        st.unattributed_wh,
        st.measured_wh
    );
    assert!(
        (st.measured_wh - expected_wh).abs() < 0.01 * expected_wh,
        "measured {} Wh, the trace holds {expected_wh} Wh",
        st.measured_wh
    );
    // Media as uploaded.
    assert_eq!(ma.media_bytes, 200_000);
    assert_eq!(mb.media_bytes, 1000);
    assert_eq!(mc.media_bytes, 0);
    // Households sum their members.
    let h = |id: &str| st.households.iter().find(|h| h.id == id).unwrap();
    assert!((h("fam").total_wh - (ma.total_wh + mb.total_wh)).abs() < 1e-9);
    assert!((h("club").total_wh - mc.total_wh).abs() < 1e-9);
    assert!(out.access.access > 60, "{:?}", out.access);
}
