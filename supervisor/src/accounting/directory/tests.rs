use super::*;
use crate::audit::{entries_visible_to, Viewer};

fn db() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = crate::storage::open_connection(&dir.path().join("hearth.db")).unwrap();
    (dir, conn)
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(s, 0).unwrap()
}

fn account(user: &str, created_s: i64) -> SynapseAccount {
    SynapseAccount {
        user_id: user.into(),
        deactivated: false,
        is_guest: false,
        user_type: None,
        created_s: Some(created_s),
        admin: false,
    }
}

fn snap(accounts: Vec<SynapseAccount>) -> Snapshot {
    Snapshot {
        me: "@hearth:x.org".into(),
        accounts,
        ..Snapshot::default()
    }
}

fn by() -> ChangedBy {
    ChangedBy {
        actor: Actor::Cli,
        os_uid: Some(1000),
    }
}

fn entries(conn: &Connection) -> Vec<crate::audit::Entry> {
    let mut e = entries_visible_to(conn, &Viewer::ServerAdmin, 1000, None).unwrap();
    e.reverse();
    e
}

#[test]
fn households_are_added_assigned_listed_and_every_change_is_audited() {
    let (_d, mut conn) = db();
    apply(
        &mut conn,
        &snap(vec![
            account("@alice:x.org", 100),
            account("@bob:x.org", 200),
            account("@carol:x.org", 300),
        ]),
        1000,
    )
    .unwrap();
    add_household(&mut conn, "mueller", "Familie Müller", &by(), t(2000)).unwrap();
    add_household(&mut conn, "chess", "  Schachclub ", &by(), t(2001)).unwrap();
    assert!(assign(&mut conn, "@alice:x.org", "mueller", &by(), t(2002)).unwrap());
    assert!(assign(&mut conn, "@bob:x.org", "mueller", &by(), t(2003)).unwrap());
    // Already there: no change, no entry.
    assert!(!assign(&mut conn, "@bob:x.org", "mueller", &by(), t(2004)).unwrap());
    assert!(assign(&mut conn, "@bob:x.org", "chess", &by(), t(2005)).unwrap());

    let l = list(&conn).unwrap();
    assert_eq!(l.households.len(), 2);
    assert_eq!(l.households[0].id, "chess");
    assert_eq!(l.households[0].name, "Schachclub");
    assert_eq!(l.households[0].created_s, 2001);
    let users =
        |h: &HouseholdRow| -> Vec<String> { h.members.iter().map(|m| m.user_id.clone()).collect() };
    assert_eq!(users(&l.households[0]), ["@bob:x.org"]);
    assert_eq!(users(&l.households[1]), ["@alice:x.org"]);
    assert_eq!(l.unassigned.len(), 1);
    assert_eq!(l.unassigned[0].user_id, "@carol:x.org");
    let text = l.to_text();
    assert!(
        text.contains("mueller  Familie Müller  (1 member)\n  @alice:x.org\n"),
        "{text}"
    );
    assert!(
        text.contains("(no household: each pays alone)\n  @carol:x.org\n"),
        "{text}"
    );
    let json = l.to_json();
    assert_eq!(
        json["households"][1]["members"][0]["user_id"],
        "@alice:x.org"
    );
    assert_eq!(
        json["households"][1]["members"][0]["joined"],
        "1970-01-01T00:01:40Z"
    );
    assert_eq!(json["unassigned"][0]["left"], serde_json::Value::Null);

    let e = entries(&conn);
    assert_eq!(e.len(), 5);
    assert!(e
        .iter()
        .all(|e| e.action == Action::HouseholdChange && e.actor == Actor::Cli));
    assert_eq!(e[0].detail["op"], "add");
    assert_eq!(e[0].detail["household"], "mueller");
    assert_eq!(e[0].detail["os_uid"], 1000);
    assert_eq!(e[0].subject, None);
    // The member whose household changed is the subject: they see it on their page.
    assert_eq!(e[4].subject.as_deref(), Some("@bob:x.org"));
    assert_eq!(e[4].detail["previous"], "mueller");
    assert_eq!(e[4].detail["household"], "chess");
    assert_eq!(e[2].detail["previous"], serde_json::Value::Null);
}

#[test]
fn bad_household_changes_are_refused_and_change_nothing() {
    let (_d, mut conn) = db();
    apply(&mut conn, &snap(vec![account("@alice:x.org", 100)]), 1000).unwrap();
    add_household(&mut conn, "mueller", "Familie Müller", &by(), t(2000)).unwrap();
    let n = entries(&conn).len();
    let cases: Vec<(Result<(), DirectoryError>, &str)> = vec![
        (
            add_household(&mut conn, "mueller", "Again", &by(), t(1)),
            "household \"mueller\" already exists",
        ),
        (
            add_household(&mut conn, "Familie Müller", "x", &by(), t(1)),
            "household id: \"Familie Müller\" is not an id",
        ),
        (
            add_household(&mut conn, "solo.alice", "x", &by(), t(1)),
            "ids starting with \"solo.\" are reserved",
        ),
        (
            add_household(&mut conn, "ok", " ", &by(), t(1)),
            "household name: \"\" must be 1 to 100 characters",
        ),
        (
            add_household(&mut conn, "ok", &"x".repeat(101), &by(), t(1)),
            "must be 1 to 100 characters",
        ),
        (
            assign(&mut conn, "@alice:x.org", "nope", &by(), t(1)).map(drop),
            "no household \"nope\"",
        ),
        (
            assign(&mut conn, "@mallory:x.org", "mueller", &by(), t(1)).map(drop),
            "\"@mallory:x.org\" is not a member",
        ),
        (
            remove_household(&mut conn, "nope", &by(), t(1)),
            "no household \"nope\"",
        ),
    ];
    for (got, want) in cases {
        let e = got.unwrap_err().to_string();
        assert!(e.contains(want), "{e:?} should contain {want:?}");
        assert!(!e.contains('\n'));
    }
    assert_eq!(entries(&conn).len(), n, "refused changes are not logged");
    assert_eq!(list(&conn).unwrap().households.len(), 1);
}

#[test]
fn only_a_household_nobody_belongs_to_can_be_removed() {
    let (_d, mut conn) = db();
    apply(&mut conn, &snap(vec![account("@alice:x.org", 100)]), 1000).unwrap();
    add_household(&mut conn, "a", "A", &by(), t(2000)).unwrap();
    add_household(&mut conn, "b", "B", &by(), t(2000)).unwrap();
    assign(&mut conn, "@alice:x.org", "a", &by(), t(2001)).unwrap();
    // Alice leaves: she still belongs to "a" for the periods she was a member in.
    apply(&mut conn, &snap(vec![]), 3000).unwrap();
    let e = remove_household(&mut conn, "a", &by(), t(3001)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "household \"a\" still has 1 member(s), past ones included; it cannot be removed"
    );
    remove_household(&mut conn, "b", &by(), t(3002)).unwrap();
    let l = list(&conn).unwrap();
    assert_eq!(l.households.len(), 1);
    assert!(l
        .to_text()
        .contains("@alice:x.org (left 1970-01-01T00:50:00Z)"));
    let last = entries(&conn).pop().unwrap();
    assert_eq!(last.detail["op"], "remove");
    assert_eq!(last.detail["household"], "b");
}

#[test]
fn a_sync_keeps_members_history_when_they_leave_and_come_back() {
    let (_d, mut conn) = db();
    let a = account("@alice:x.org", 100);
    let b = account("@bob:x.org", 200);
    let r = apply(&mut conn, &snap(vec![a.clone(), b.clone()]), 1000).unwrap();
    assert_eq!(r.joined.len(), 2);
    // Bob is deactivated: he left at this sync, and stays in the table.
    let mut b_off = b.clone();
    b_off.deactivated = true;
    let r = apply(&mut conn, &snap(vec![a.clone(), b_off.clone()]), 2000).unwrap();
    assert_eq!(r.left, ["@bob:x.org"]);
    assert_eq!(r.members, 1);
    // Later syncs do not move the date he left.
    apply(&mut conn, &snap(vec![a.clone(), b_off]), 3000).unwrap();
    let rows = list(&conn).unwrap().unassigned;
    assert_eq!(rows[1].user_id, "@bob:x.org");
    assert_eq!((rows[1].joined_s, rows[1].left_s), (Some(200), Some(2000)));
    assert_eq!(rows[1].synced_at, 1000);
    assert_eq!((rows[0].left_s, rows[0].synced_at), (None, 3000));
    // Reactivated: a new membership from that sync on.
    let r = apply(&mut conn, &snap(vec![a.clone(), b.clone()]), 4000).unwrap();
    assert_eq!(r.joined, ["@bob:x.org"]);
    let rows = list(&conn).unwrap().unassigned;
    assert_eq!((rows[1].joined_s, rows[1].left_s), (Some(4000), None));
    // Gone from the list altogether (or become a bot): left too.
    let mut a_bot = a.clone();
    a_bot.user_type = Some("bot".into());
    let r = apply(&mut conn, &snap(vec![a_bot]), 5000).unwrap();
    assert_eq!(r.left, ["@alice:x.org", "@bob:x.org"]);
}

#[test]
fn accounts_that_are_not_members_never_enter_the_directory() {
    let (_d, mut conn) = db();
    let mut guest = account("@guest:x.org", 1);
    guest.is_guest = true;
    let mut support = account("@help:x.org", 1);
    support.user_type = Some("support".into());
    let mut off = account("@gone:x.org", 1);
    off.deactivated = true;
    let custom = SynapseAccount {
        user_type: Some("family".into()), // an extra user type: a normal user
        ..account("@dora:x.org", 1)
    };
    let mut s = snap(vec![
        guest,
        support,
        off,
        custom,
        account("@hearth:x.org", 1),
        account("@telegram_1:x.org", 1),
        account("not-a-user-id", 1),
    ]);
    s.appservice
        .insert("@telegram_1:x.org".into(), "telegram".into());
    let r = apply(&mut conn, &s, 1000).unwrap();
    assert_eq!(r.joined, ["@dora:x.org"]);
    // The appservice account is remembered, so its details are not read again.
    let known = known_accounts(&conn).unwrap();
    assert!(known.contains("@telegram_1:x.org") && known.contains("@dora:x.org"));
    assert!(!known.contains("@gone:x.org"));
    // Even listed without the appservice look-up later, it stays out.
    let r = apply(
        &mut conn,
        &snap(vec![
            account("@telegram_1:x.org", 1),
            account("@dora:x.org", 1),
        ]),
        2000,
    )
    .unwrap();
    assert_eq!(r.members, 1);
}

#[test]
fn leaving_is_after_joining_even_with_the_clock_behind() {
    let (_d, mut conn) = db();
    apply(&mut conn, &snap(vec![account("@alice:x.org", 5000)]), 6000).unwrap();
    // The Pi booted without NTP yet: the wall clock says 1970.
    apply(&mut conn, &snap(vec![]), 10).unwrap();
    let row = list(&conn).unwrap().unassigned.remove(0);
    assert_eq!(row.left_s, Some(5001));
    let p = Period::range(0, 10_000).unwrap();
    assert_eq!(members_for(&conn, &p).unwrap().members().len(), 1);
}

#[test]
fn members_for_gives_the_model_the_same_members_as_the_file() {
    let (_d, mut conn) = db();
    let nov = Period::parse_month("2026-11").unwrap();
    let (start, end) = (nov.start_s(), nov.end_s());
    apply(
        &mut conn,
        &snap(vec![
            account("@alice:x.org", start - 86_400),
            account("@bob:x.org", start + 14 * 86_400),
            account("@carol:x.org", start - 86_400),
            account("@dave:x.org", end + 10),
            account("@eve.o_b:x.org", start - 86_400),
        ]),
        start - 3600,
    )
    .unwrap();
    add_household(&mut conn, "mueller", "Familie Müller", &by(), t(start)).unwrap();
    add_household(&mut conn, "empty", "Nobody", &by(), t(start)).unwrap();
    assign(&mut conn, "@alice:x.org", "mueller", &by(), t(start)).unwrap();
    assign(&mut conn, "@bob:x.org", "mueller", &by(), t(start)).unwrap();
    // Carol left on the 20th.
    let still = |users: &[&str]| {
        snap(
            users
                .iter()
                .map(|u| account(u, start - 86_400))
                .collect::<Vec<_>>(),
        )
    };
    let mut s = still(&[
        "@alice:x.org",
        "@bob:x.org",
        "@dave:x.org",
        "@eve.o_b:x.org",
    ]);
    s.accounts[1].created_s = Some(start + 14 * 86_400);
    s.accounts[2].created_s = Some(end + 10);
    apply(&mut conn, &s, start + 19 * 86_400).unwrap();

    let got = members_for(&conn, &nov).unwrap();
    let file = Members::parse(
        "members.toml",
        &format!(
            r#"
[[household]]
id = "mueller"
name = "Familie Müller"
[[household]]
id = "solo.carol"
name = "@carol:x.org"
[[household]]
id = "solo.eve_2eo_5fb"
name = "@eve.o_b:x.org"

[[member]]
user_id = "@alice:x.org"
household = "mueller"
joined = "{a}"
[[member]]
user_id = "@bob:x.org"
household = "mueller"
joined = "{b}"
[[member]]
user_id = "@carol:x.org"
household = "solo.carol"
joined = "{a}"
left = "{c}"
[[member]]
user_id = "@eve.o_b:x.org"
household = "solo.eve_2eo_5fb"
joined = "{a}"
"#,
            a = rfc3339(start - 86_400).unwrap(),
            b = rfc3339(start + 14 * 86_400).unwrap(),
            c = rfc3339(start + 19 * 86_400).unwrap(),
        ),
    )
    .unwrap();
    // Dave joins after November; the empty household has nobody to bill.
    assert_eq!(got, file);

    // October: Bob had not joined, Carol was there.
    let oct = Period::parse_month("2026-10").unwrap();
    let users: Vec<_> = members_for(&conn, &oct)
        .unwrap()
        .members()
        .iter()
        .map(|m| m.user_id.clone())
        .collect();
    assert_eq!(users, ["@alice:x.org", "@carol:x.org", "@eve.o_b:x.org"]);
    // An empty directory is an empty member list, not an error.
    let (_d2, empty) = db();
    assert_eq!(members_for(&empty, &nov).unwrap(), Members::default());
}

#[test]
fn personal_household_ids_are_valid_and_one_to_one() {
    let ids = [
        "@alice:x.org",
        "@a.b:x.org",
        "@a_2eb:x.org",
        "@a/b=c+d:x.org",
        "@Old.Style:x.org",
        "@a-b:x.org",
    ]
    .map(personal_household_id);
    for id in &ids {
        assert!(check_household_id(id).is_ok(), "{id}");
        assert!(id.starts_with(PERSONAL_PREFIX));
    }
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
    assert_eq!(ids[0], "solo.alice");
    assert_eq!(ids[1], "solo.a_2eb");
    assert_eq!(ids[2], "solo.a_5f2eb");
}

#[test]
fn media_is_stored_when_it_changes_and_averaged_over_a_period() {
    let (_d, mut conn) = db();
    let p = Period::range(0, 1000 * 60).unwrap();
    let (s0, mid, end) = (p.start_s(), p.start_s() + 30_000, p.end_s());
    let accounts = vec![account("@alice:x.org", 0), account("@bob:x.org", 0)];
    let mut s = snap(accounts);
    s.media.insert("@alice:x.org".into(), (1000, 1));
    let r = apply(&mut conn, &s, s0 + 100).unwrap();
    assert_eq!(r.media_changed, 1, "bob has none: no row");
    // Unchanged: no new row.
    assert_eq!(apply(&mut conn, &s, s0 + 700).unwrap().media_changed, 0);
    // Alice uploads more at mid-period; Bob's first upload.
    s.media.insert("@alice:x.org".into(), (3000, 2));
    s.media.insert("@bob:x.org".into(), (600, 1));
    assert_eq!(apply(&mut conn, &s, mid).unwrap().media_changed, 2);
    // Media of someone who is not a member is not stored.
    s.media.insert("@stranger:x.org".into(), (1, 1));
    apply(&mut conn, &s, mid + 1).unwrap();
    let rows: i64 = conn
        .query_row("SELECT COUNT(*) FROM member_media", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 3);

    let m = media_bytes_for(&conn, &p).unwrap();
    // Alice: 1000 for the first half (her first figure also stands for before it), 3000 after.
    assert_eq!(m["@alice:x.org"], 2000);
    // Bob: 600 from his first figure; before it, that figure too.
    assert_eq!(m["@bob:x.org"], 600);
    assert!(!m.contains_key("@stranger:x.org"));
    // A later period sees the last figure; its media was deleted at its start: 0 from there.
    let later = Period::range(end, end + 600).unwrap();
    s.media.remove("@alice:x.org");
    apply(&mut conn, &s, end + 300).unwrap();
    let m = media_bytes_for(&conn, &later).unwrap();
    assert_eq!(m["@alice:x.org"], 1500);
    assert_eq!(m["@bob:x.org"], 600);
}

#[test]
fn a_household_admin_sees_the_household_until_moved_out_and_each_change_is_audited() {
    let (_d, mut conn) = db();
    apply(
        &mut conn,
        &snap(vec![
            account("@alice:x.org", 100),
            account("@bob:x.org", 200),
            account("@carol:x.org", 300),
        ]),
        1000,
    )
    .unwrap();
    add_household(&mut conn, "mueller", "Familie Müller", &by(), t(2000)).unwrap();
    add_household(&mut conn, "chess", "Schachclub", &by(), t(2001)).unwrap();
    assign(&mut conn, "@alice:x.org", "mueller", &by(), t(2002)).unwrap();
    assign(&mut conn, "@bob:x.org", "mueller", &by(), t(2003)).unwrap();
    let before = entries(&conn).len();

    // Only a member of the household can administer it.
    let e = set_household_admin(&mut conn, "@carol:x.org", "mueller", true, &by(), t(2004))
        .unwrap_err();
    assert!(
        e.to_string().contains("not in household \"mueller\""),
        "{e}"
    );
    assert!(matches!(
        set_household_admin(&mut conn, "@nobody:x.org", "mueller", true, &by(), t(2004)),
        Err(DirectoryError::UnknownMember(_))
    ));
    assert!(matches!(
        set_household_admin(&mut conn, "@alice:x.org", "nope", true, &by(), t(2004)),
        Err(DirectoryError::UnknownHousehold(_))
    ));
    assert_eq!(administered(&conn, "@carol:x.org").unwrap(), None);

    assert!(
        set_household_admin(&mut conn, "@alice:x.org", "mueller", true, &by(), t(2005)).unwrap()
    );
    assert!(
        !set_household_admin(&mut conn, "@alice:x.org", "mueller", true, &by(), t(2006)).unwrap()
    );
    assert_eq!(
        administered(&conn, "@alice:x.org").unwrap(),
        Some((
            "mueller".to_string(),
            vec!["@alice:x.org".to_string(), "@bob:x.org".to_string()]
        ))
    );
    assert_eq!(administered(&conn, "@bob:x.org").unwrap(), None);

    // Moving to another household ends the right in the old one.
    assign(&mut conn, "@alice:x.org", "chess", &by(), t(2007)).unwrap();
    assert_eq!(administered(&conn, "@alice:x.org").unwrap(), None);
    assign(&mut conn, "@alice:x.org", "mueller", &by(), t(2008)).unwrap();
    assert_eq!(
        administered(&conn, "@alice:x.org").unwrap(),
        None,
        "not restored by moving back"
    );
    assert!(set_household_admin(&mut conn, "@bob:x.org", "mueller", true, &by(), t(2009)).unwrap());
    assert!(
        set_household_admin(&mut conn, "@bob:x.org", "mueller", false, &by(), t(2010)).unwrap()
    );
    assert_eq!(administered(&conn, "@bob:x.org").unwrap(), None);

    let e = entries(&conn);
    let ops: Vec<_> = e[before..]
        .iter()
        .map(|e| {
            (
                e.detail["op"].as_str().unwrap().to_string(),
                e.subject.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("admin".to_string(), "@alice:x.org".to_string()),
            ("assign".to_string(), "@alice:x.org".to_string()),
            ("assign".to_string(), "@alice:x.org".to_string()),
            ("admin".to_string(), "@bob:x.org".to_string()),
            ("admin_removed".to_string(), "@bob:x.org".to_string()),
        ]
    );
}

#[test]
fn server_admins_are_the_flagged_members_and_every_other_admin_account() {
    let (_d, mut conn) = db();
    let admin = |user: &str| SynapseAccount {
        admin: true,
        ..account(user, 1)
    };
    let mut bot = admin("@bot:x.org");
    bot.user_type = Some("bot".into());
    let mut gone = admin("@gone:x.org");
    gone.deactivated = true;
    let mut s = snap(vec![
        admin("@alice:x.org"),
        account("@bob:x.org", 1),
        admin("@hearth:x.org"),
        bot,
        gone,
        admin("@telegram_1:x.org"),
    ]);
    s.appservice
        .insert("@telegram_1:x.org".into(), "telegram".into());
    apply(&mut conn, &s, 1000).unwrap();
    let got: Vec<(String, Option<String>)> = server_admins(&conn)
        .unwrap()
        .into_iter()
        .map(|a| (a.user_id, a.not_member))
        .collect();
    assert_eq!(
        got,
        [
            ("@alice:x.org".to_string(), None),
            ("@bot:x.org".into(), Some("bot or support account".into())),
            ("@hearth:x.org".into(), Some(SUPERVISOR_ACCOUNT.into())),
            (
                "@telegram_1:x.org".into(),
                Some("an appservice (bridge) account".into())
            ),
        ],
        "the deactivated admin cannot log in; bob is no admin"
    );

    // alice is no longer an admin, bob becomes one; the bot account is gone.
    let s2 = snap(vec![
        account("@alice:x.org", 1),
        admin("@bob:x.org"),
        admin("@hearth:x.org"),
    ]);
    apply(&mut conn, &s2, 1600).unwrap();
    let got: Vec<String> = server_admins(&conn)
        .unwrap()
        .into_iter()
        .map(|a| a.user_id)
        .collect();
    assert_eq!(got, ["@bob:x.org", "@hearth:x.org"]);

    // A member who left is no admin of this server any more.
    apply(&mut conn, &snap(vec![admin("@hearth:x.org")]), 2200).unwrap();
    let got = server_admins(&conn).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].not_member.as_deref(), Some(SUPERVISOR_ACCOUNT));
    assert_eq!(got[0].synced_at, 2200);
}
