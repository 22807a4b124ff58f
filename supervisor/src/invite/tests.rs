#![allow(clippy::unwrap_used)]

use super::*;
use crate::accounting::directory::{self, ChangedBy};
use crate::audit::{entries_visible_to, Viewer};

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
    (dir, conn)
}

fn at(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap()
}

const T0: i64 = 1_800_000_000;

#[test]
fn tokens_are_stored_only_as_their_sha256() {
    assert_eq!(
        hash_token("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        hash_token(" abc\n"),
        hash_token("abc"),
        "pasted with spaces"
    );
    let (_d, mut conn) = db();
    let (inv, token) = create(&mut conn, "@root:example.org", None, None, at(T0)).unwrap();
    assert_eq!(token.len(), 64);
    let stored: String = conn
        .query_row("SELECT token_sha256 FROM invitation", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, hash_token(&token));
    let dump: String = conn
        .query_row(
            "SELECT group_concat(quote(token_sha256) || inviter || created_s) FROM invitation",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!dump.contains(&token), "the token itself is nowhere");
    assert_eq!(find(&conn, &token).unwrap().unwrap().id, inv.id);
    assert!(find(&conn, &"0".repeat(64)).unwrap().is_none());
}

#[test]
fn expiry_is_seven_days_unless_shorter_was_chosen() {
    assert_eq!(expiry(T0, None).unwrap(), T0 + 7 * 86_400);
    assert_eq!(expiry(T0, Some(1)).unwrap(), T0 + 86_400);
    assert!(matches!(expiry(T0, Some(0)), Err(InviteError::BadDays(0))));
    assert!(matches!(expiry(T0, Some(8)), Err(InviteError::BadDays(8))));
    let inv = Invitation {
        id: 1,
        inviter: "@a:b".into(),
        household: None,
        created_s: T0,
        expires_s: T0 + 10,
        used_s: None,
        user_id: None,
        revoked_s: None,
    };
    assert_eq!(inv.state(T0 + 9), State::Open);
    assert_eq!(inv.state(T0 + 10), State::Expired);
    let revoked = Invitation {
        revoked_s: Some(T0),
        ..inv.clone()
    };
    assert_eq!(revoked.state(T0), State::Revoked);
    let used = Invitation {
        used_s: Some(T0),
        ..revoked
    };
    assert_eq!(used.state(T0 + 100), State::Used, "used stays used");
}

#[test]
fn an_invitation_is_taken_once_given_back_on_refusal_and_completed_into_its_household() {
    let (_d, mut conn) = db();
    directory::add_household(
        &mut conn,
        "mueller",
        "Familie Müller",
        &ChangedBy::cli(),
        at(T0),
    )
    .unwrap();
    assert!(matches!(
        create(&mut conn, "@root:example.org", Some("nope"), None, at(T0)),
        Err(InviteError::UnknownHousehold(_))
    ));
    let (inv, token) = create(
        &mut conn,
        "@root:example.org",
        Some("mueller"),
        Some(2),
        at(T0),
    )
    .unwrap();
    assert_eq!(open(&conn, None, T0).unwrap().len(), 1);
    assert_eq!(
        open(&conn, Some("@other:example.org"), T0).unwrap().len(),
        0
    );

    let taken = take(&mut conn, &token, T0 + 5).unwrap().unwrap();
    assert_eq!(taken.id, inv.id);
    // A second sign-up with the same link meanwhile: used.
    match take(&mut conn, &token, T0 + 6).unwrap() {
        Err(Unusable::Gone(_, State::Used)) => {}
        other => panic!("{other:?}"),
    }
    assert!(open(&conn, None, T0 + 6).unwrap().is_empty());
    // Synapse refused: usable again.
    give_back(&conn, inv.id).unwrap();
    let taken = take(&mut conn, &token, T0 + 7).unwrap().unwrap();
    let household = complete(&mut conn, &taken, "@erna:example.org", at(T0 + 8)).unwrap();
    assert_eq!(household.as_deref(), Some("mueller"));
    give_back(&conn, inv.id).unwrap();
    assert!(
        matches!(
            take(&mut conn, &token, T0 + 9).unwrap(),
            Err(Unusable::Gone(_, State::Used))
        ),
        "a completed invitation cannot be given back"
    );
    // The new member is in the household before any sync…
    let listing = directory::list(&conn).unwrap();
    assert_eq!(
        listing.households[0].members[0].user_id,
        "@erna:example.org"
    );
    // …and a sync that sees the account keeps it there.
    directory::apply(
        &mut conn,
        &directory::Snapshot {
            me: "@hearth:example.org".into(),
            accounts: vec![directory::SynapseAccount {
                user_id: "@erna:example.org".into(),
                deactivated: false,
                is_guest: false,
                user_type: None,
                created_s: Some(T0 + 8),
                admin: false,
            }],
            ..Default::default()
        },
        T0 + 60,
    )
    .unwrap();
    let listing = directory::list(&conn).unwrap();
    assert_eq!(listing.households[0].members.len(), 1);
    assert!(listing.unassigned.is_empty());

    let actions: Vec<(String, Option<String>)> =
        entries_visible_to(&conn, &Viewer::ServerAdmin, 100, None)
            .unwrap()
            .into_iter()
            .rev()
            .map(|e| (e.action.as_str().to_string(), e.subject))
            .collect();
    let erna = Some("@erna:example.org".to_string());
    assert_eq!(
        actions,
        [
            ("household_change".to_string(), None),
            ("invitation_created".to_string(), None),
            ("household_change".to_string(), erna.clone()),
            ("invitation_used".to_string(), erna),
        ]
    );
}

#[test]
fn unknown_expired_and_revoked_tokens_are_refused_and_say_why() {
    let (_d, mut conn) = db();
    assert_eq!(take(&mut conn, "nope", T0).unwrap(), Err(Unusable::Unknown));
    let (_, short) = create(&mut conn, "@root:example.org", None, Some(1), at(T0)).unwrap();
    match take(&mut conn, &short, T0 + 86_400).unwrap() {
        Err(Unusable::Gone(_, State::Expired)) => {}
        other => panic!("{other:?}"),
    }
    let (inv, token) = create(&mut conn, "@root:example.org", None, None, at(T0)).unwrap();
    assert!(revoke(&mut conn, inv.id, "@root:example.org", at(T0 + 1)).unwrap());
    assert!(
        !revoke(&mut conn, inv.id, "@root:example.org", at(T0 + 2)).unwrap(),
        "once"
    );
    match take(&mut conn, &token, T0 + 3).unwrap() {
        Err(Unusable::Gone(_, State::Revoked)) => {}
        other => panic!("{other:?}"),
    }
    // A household removed after the invitation: the new member pays alone.
    directory::add_household(&mut conn, "gone", "Gone", &ChangedBy::cli(), at(T0)).unwrap();
    let (_, t) = create(&mut conn, "@root:example.org", Some("gone"), None, at(T0)).unwrap();
    directory::remove_household(&mut conn, "gone", &ChangedBy::cli(), at(T0 + 1)).unwrap();
    let inv = take(&mut conn, &t, T0 + 2).unwrap().unwrap();
    assert_eq!(
        complete(&mut conn, &inv, "@solo:example.org", at(T0 + 3)).unwrap(),
        None
    );
}

#[test]
fn two_connections_taking_one_invitation_at_once_get_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.db");
    let mut conn = crate::storage::open_connection(&path).unwrap();
    for round in 0..20 {
        let (_, token) = create(&mut conn, "@root:example.org", None, None, at(T0)).unwrap();
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let takers: Vec<_> = (0..2)
            .map(|_| {
                let (path, token, barrier) = (path.clone(), token.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let mut c = crate::storage::open_connection(&path).unwrap();
                    barrier.wait();
                    // Small results across the thread boundary: the id, or the state refused.
                    take(&mut c, &token, T0 + 1)
                        .unwrap()
                        .map(|i| i.id)
                        .map_err(|e| match e {
                            Unusable::Gone(_, s) => Some(s),
                            Unusable::Unknown => None,
                        })
                })
            })
            .collect();
        let results: Vec<_> = takers.into_iter().map(|t| t.join().unwrap()).collect();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        assert!(results.contains(&Err(Some(State::Used))), "{results:?}");
    }
}
