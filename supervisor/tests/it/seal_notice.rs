//! The monthly seal notice against a real Synapse: each member finds the access log's seal in
//! their server-notices room, once a month, and the seal is the one the log holds.

use super::synapse::{Synapse, User};
use hearth::accounting::directory;
use hearth::audit::{self, Action, Actor, NewEntry};
use hearth::health::probe::{AdminToken, Synapse as Probe};
use hearth::seal_notice::{state_file, tick, State};
use serde_json::Value;
use std::time::Duration;

/// The bodies of the messages in the member's server-notices room (joined on first sight).
pub(super) async fn notices(user: &User) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let room = loop {
        let sync = user.sync(None).await;
        let joined = sync["rooms"]["join"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let invited = sync["rooms"]["invite"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let notice_room = |r: &Value| {
            r.to_string().contains("m.server_notice") || r.to_string().contains("@notices:")
        };
        if let Some((id, _)) = joined.iter().find(|(_, r)| notice_room(r)) {
            break id.clone();
        }
        if let Some((id, _)) = invited.iter().find(|(_, r)| notice_room(r)) {
            user.join(id).await;
            break id.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: no server-notices room",
            user.user_id
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        room.replace('!', "%21").replace(':', "%3A")
    );
    let msgs = user.get(&path).await;
    msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str().map(String::from))
        .collect()
}

#[tokio::test]
async fn each_member_finds_the_logs_seal_in_a_server_notice_once_a_month() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let anna = s.register(&s.unique("anna"), false).await;
    let ben = s.register(&s.unique("ben"), false).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    drop(hearth::storage::Storage::open(&db).unwrap());
    let conn = hearth::storage::open_connection(&db).unwrap();
    for u in [&anna, &ben] {
        directory::admit(&conn, &u.user_id, None, "cli", chrono::Utc::now()).unwrap();
    }
    let probe = Probe::new(
        s.base_url(),
        Duration::from_secs(10),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    );
    let state = state_file(&db);

    // A new box notes the month and sends nothing.
    assert_eq!(tick(&db, &probe, &state, "2026-11").await, Ok(0));
    assert_eq!(State::read(&state).unwrap().month, "2026-11");
    // An admin looks at Anna's statement during the month: her seal moves past Ben's.
    audit::append(
        &conn,
        &NewEntry::new(
            Actor::User(supervisor.user_id.clone()),
            Action::ViewStatement,
        )
        .about(&anna.user_id),
    )
    .unwrap();
    let anna_seal = audit::newest_about(&conn, &anna.user_id).unwrap().unwrap();
    // No entry is about Ben: he gets the whole log's seal.
    assert_eq!(audit::newest_about(&conn, &ben.user_id).unwrap(), None);
    audit::append(&conn, &NewEntry::new(Actor::Cli, Action::Maintenance)).unwrap();
    let ben_seal = audit::head(&conn).unwrap();
    assert!(ben_seal.seq > anna_seal.seq);

    // The month turns: one notice each, with the seal after the newest entry about them.
    assert_eq!(tick(&db, &probe, &state, "2026-12").await, Ok(2));
    for (user, seal) in [(&anna, anna_seal), (&ben, ben_seal)] {
        let got = notices(user).await;
        let text = format!("{}:{}", seal.seq, seal.hash);
        assert_eq!(got.len(), 1, "{}: {got:?}", user.user_id);
        assert!(got[0].contains(&text), "{}: {}", user.user_id, got[0]);
        assert!(got[0].contains("Zugriffsprotokoll 2026-12"));
        let about_them = user.user_id == anna.user_id;
        assert_eq!(got[0].contains("newest entry about you"), about_them);
        // The log holds the seal the member got.
        assert_eq!(audit::hash_at(&conn, seal.seq).unwrap(), Some(seal.hash));
    }
    // Not twice in a month, and not for a clock jumped back.
    assert_eq!(tick(&db, &probe, &state, "2026-12").await, Ok(0));
    assert_eq!(tick(&db, &probe, &state, "2026-10").await, Ok(0));
    assert_eq!(notices(&anna).await.len(), 1);

    // Synapse down at the next month: nothing sent, both kept for the retry, which sends.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let down = Probe::new(
        &format!("http://{free}"),
        Duration::from_secs(2),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    );
    assert_eq!(tick(&db, &down, &state, "2027-01").await, Ok(0));
    let st = State::read(&state).unwrap();
    assert_eq!(st.month, "2027-01");
    assert_eq!(
        st.pending,
        [anna.user_id.clone(), ben.user_id.clone()].into()
    );
    assert_eq!(tick(&db, &probe, &state, "2027-01").await, Ok(2));
    assert!(State::read(&state).unwrap().pending.is_empty());
    assert_eq!(tick(&db, &probe, &state, "2027-01").await, Ok(0));
    let got = notices(&ben).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().any(|b| b.contains("access log 2027-01")));
}
