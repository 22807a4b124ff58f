//! The member directory against a real Synapse: who counts as a member, media per member,
//! households through the command line, and the audit trail of both.

use super::synapse::Synapse;
use hearth::accounting::directory::{self, sync::sync_once, SynapseDirectory};
use hearth::accounting::model::Period;
use hearth::audit::{entries_visible_to, Action, Actor, Viewer};
use hearth::health::probe::AdminToken;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn household(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .arg("household")
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run hearth-supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn now_s() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn the_directory_syncs_members_and_media_from_synapse_and_households_come_from_the_cli() {
    let s = Synapse::shared();
    // The supervisor's own admin account, three members, one deactivated before the first sync
    // (never a member) and one after it (a member who left).
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let [a, b, c, d, e] = ["alice", "bob", "carol", "dave", "eve"].map(|n| s.unique(n));
    let alice = s.register(&a, false).await;
    let bob = s.register(&b, false).await;
    let carol = s.register(&c, false).await;
    let dave = s.register(&d, false).await;
    let eve = s.register(&e, false).await;
    supervisor.deactivate(&eve.user_id).await;
    alice.upload(&[7u8; 3000], "application/octet-stream").await;
    bob.upload(&[1u8; 12_345], "application/octet-stream").await;
    bob.upload(b"x", "text/plain").await;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[health]\nsynapse_url = {:?}\n",
            db.display().to_string(),
            s.base_url()
        ),
    )
    .unwrap();
    let mut conn = hearth::storage::open_connection(&db).unwrap();
    let synapse = SynapseDirectory::new(
        s.base_url(),
        Duration::from_secs(30),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    )
    .with_page_size(2); // several pages even on a quiet server
    let first = now_s();
    sync_once(&mut conn, &synapse, first, true).await.unwrap();
    supervisor.deactivate(&dave.user_id).await;
    let second = first + 1;
    let report = sync_once(&mut conn, &synapse, second, true).await.unwrap();
    assert_eq!(report.left, std::slice::from_ref(&dave.user_id));

    // Other tests share this Synapse: look at this test's accounts only.
    let ours = [&supervisor, &alice, &bob, &carol, &dave, &eve].map(|u| u.user_id.clone());
    let now = Period::range(second + 60, second + 120).unwrap();
    let members = directory::members_for(&conn, &now).unwrap();
    let present: Vec<&str> = members
        .members()
        .iter()
        .map(|m| m.user_id.as_str())
        .filter(|u| ours.iter().any(|o| o == u))
        .collect();
    let mut want = [&alice, &bob, &carol].map(|u| u.user_id.as_str());
    want.sort();
    assert_eq!(present, want);
    // Dave was a member until the sync that saw him deactivated; Eve never was.
    let earlier = Period::range(first - 60, second).unwrap();
    let then = directory::members_for(&conn, &earlier).unwrap();
    assert!(then.index(&dave.user_id).is_some());
    assert!(then.index(&eve.user_id).is_none());
    assert!(then.index(&supervisor.user_id).is_none());
    // Joined is Synapse's creation time.
    let alice_m = members.get(members.index(&alice.user_id).unwrap()).unwrap();
    assert!((first - 120..=first).contains(&alice_m.joined_s.unwrap()));

    // Media as uploaded.
    let media = directory::media_bytes_for(&conn, &now).unwrap();
    assert_eq!(media.get(&alice.user_id), Some(&3000));
    assert_eq!(media.get(&bob.user_id), Some(&12_346));
    assert_eq!(media.get(&carol.user_id), None);

    // Households from the command line.
    drop(conn);
    let ok = |args: &[&str]| {
        let (code, out, err) = household(&config, args);
        assert_eq!(code, 0, "household {args:?}: {err}");
        out
    };
    ok(&["add", "fam", "Familie Test"]);
    ok(&["add", "club", "Schachclub"]);
    assert!(ok(&["assign", &alice.user_id, "fam"]).contains("is now in household fam"));
    ok(&["assign", &bob.user_id, "fam"]);
    ok(&["assign", &carol.user_id, "club"]);
    for (args, want) in [
        (
            vec!["assign", alice.user_id.as_str(), "nope"],
            "no household \"nope\"",
        ),
        (
            vec!["assign", "@nobody:localhost", "fam"],
            "\"@nobody:localhost\" is not a member",
        ),
        (
            vec!["add", "fam", "Again"],
            "household \"fam\" already exists",
        ),
        (vec!["remove", "fam"], "still has 2 member(s)"),
    ] {
        let (code, out, err) = household(&config, &args);
        assert_eq!(code, 1, "household {args:?}: {out}");
        assert_eq!(err.lines().count(), 1, "one line: {err:?}");
        assert!(err.contains(want), "{err}");
    }
    let listed: serde_json::Value =
        serde_json::from_str(&ok(&["list", "--json"])).expect("one JSON object");
    let members_of = |id: &str| -> Vec<String> {
        let h = listed["households"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap_or_else(|| panic!("household {id} in {listed}"));
        h["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap().to_string())
            .collect()
    };
    let mut fam = vec![alice.user_id.clone(), bob.user_id.clone()];
    fam.sort();
    assert_eq!(members_of("fam"), fam);
    assert_eq!(members_of("club"), std::slice::from_ref(&carol.user_id));
    let text = ok(&["list"]);
    assert!(text.contains("fam  Familie Test  (2 members)"), "{text}");
    assert!(text.contains(&format!("  {}\n", carol.user_id)), "{text}");

    // The model gets the households.
    let conn = hearth::storage::open_connection(&db).unwrap();
    let members = directory::members_for(&conn, &now).unwrap();
    let hh = |u: &str| {
        let i = members.index(u).unwrap();
        members.get(i).unwrap().household.clone()
    };
    assert_eq!(hh(&alice.user_id), "fam");
    assert_eq!(hh(&carol.user_id), "club");

    // The audit trail: each admin-API call by "system", each household change by "cli".
    let entries = entries_visible_to(&conn, &Viewer::ServerAdmin, 1000, None).unwrap();
    let calls: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::AdminApiCall)
        .collect();
    assert!(calls.iter().all(|e| e.actor == Actor::System));
    let endpoint = |e: &hearth::audit::Entry| e.detail["endpoint"].as_str().unwrap().to_string();
    assert!(calls
        .iter()
        .any(|e| endpoint(e).starts_with("GET /_synapse/admin/v2/users?from=2&limit=2")));
    assert!(calls
        .iter()
        .any(|e| endpoint(e).starts_with("GET /_synapse/admin/v1/statistics/users/media?")));
    // Alice's account details were read once, and the entry is about her.
    let about_alice: Vec<_> = calls
        .iter()
        .filter(|e| e.subject.as_deref() == Some(alice.user_id.as_str()))
        .collect();
    assert_eq!(about_alice.len(), 1);
    assert_eq!(
        endpoint(about_alice[0]),
        "GET /_synapse/admin/v2/users/{user_id}"
    );
    let changes: Vec<_> = entries
        .iter()
        .filter(|e| e.action == Action::HouseholdChange)
        .collect();
    assert_eq!(
        changes.len(),
        5,
        "2 adds, 3 assignments; refused ones not logged"
    );
    assert!(changes.iter().all(|e| e.actor == Actor::Cli));
    // And the chain holds.
    let (code, out, err) = {
        let o = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
            .args(["audit", "verify", "--db"])
            .arg(&db)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    assert_eq!(code, Some(0), "{out}{err}");
}

/// "Who can access the data": Synapse's admin flag, kept by the sync, read back as the page
/// lists it (members who are admins, then the supervisor's own account, said to be its own).
#[tokio::test]
async fn the_sync_keeps_who_is_a_server_admin() {
    let s = Synapse::shared();
    let supervisor = s.register(&s.unique("hearth"), true).await;
    let boss = s.register(&s.unique("boss"), true).await;
    let plain = s.register(&s.unique("plain"), false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut conn = hearth::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
    let synapse = SynapseDirectory::new(
        s.base_url(),
        Duration::from_secs(30),
        AdminToken::fixed(Some(supervisor.access_token.clone())),
    );
    sync_once(&mut conn, &synapse, now_s(), true).await.unwrap();
    // Other tests share this Synapse and register admins too: look at ours.
    let admins = directory::server_admins(&conn).unwrap();
    let find = |u: &str| admins.iter().find(|a| a.user_id == u);
    assert_eq!(find(&boss.user_id).unwrap().not_member, None);
    assert_eq!(
        find(&supervisor.user_id).unwrap().not_member.as_deref(),
        Some(directory::SUPERVISOR_ACCOUNT)
    );
    assert!(find(&plain.user_id).is_none());
    let member_first = admins
        .iter()
        .position(|a| a.user_id == boss.user_id)
        .unwrap();
    let own = admins
        .iter()
        .position(|a| a.user_id == supervisor.user_id)
        .unwrap();
    assert!(member_first < own, "members first: {admins:?}");

    // Synapse takes the flag away: the next sync says so.
    supervisor
        .put(
            &format!(
                "/_synapse/admin/v2/users/{}",
                boss.user_id.replace('@', "%40").replace(':', "%3A")
            ),
            serde_json::json!({"admin": false}),
        )
        .await;
    sync_once(&mut conn, &synapse, now_s() + 1, true)
        .await
        .unwrap();
    let admins = directory::server_admins(&conn).unwrap();
    assert!(
        admins.iter().all(|a| a.user_id != boss.user_id),
        "{admins:?}"
    );
}
