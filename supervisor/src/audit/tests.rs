//! The audit log on real SQLite files: appends, every kind of tampering, noted heads, who sees what.

use super::*;
use crate::storage::open_connection;
use std::path::PathBuf;

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
}

fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.db");
    let conn = open_connection(&path).unwrap();
    Db {
        _dir: dir,
        path,
        conn,
    }
}

const ALICE: &str = "@alice:example.org";
const BOB: &str = "@bob:example.org";
const CAROL: &str = "@carol:example.org";
const DAVE: &str = "@dave:example.org";

fn t(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_795_000_000_000 + ms).unwrap()
}

/// Five entries of different shapes; returns the head after each.
fn five(conn: &Connection) -> Vec<Head> {
    [
        NewEntry::new(Actor::user(ALICE).unwrap(), Action::ViewStatement)
            .about(BOB)
            .detail("period", "2026-11"),
        NewEntry::new(Actor::System, Action::AdminApiCall)
            .about(CAROL)
            .detail("endpoint", "/_synapse/admin/v2/users"),
        NewEntry::new(Actor::user(BOB).unwrap(), Action::Denied)
            .about(CAROL)
            .detail("wanted", "view_statement"),
        NewEntry::new(Actor::Cli, Action::HouseholdChange)
            .about(DAVE)
            .detail("household", "meier"),
        NewEntry::new(Actor::user(ALICE).unwrap(), Action::SignIn),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, e)| append(conn, &e.at(t(i as i64 * 1000 + 7))).unwrap())
    .collect()
}

/// Raw SQL as someone holding the file would run it: the triggers dropped first.
fn tamper(path: &Path, sql: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "DROP TRIGGER IF EXISTS audit_log_no_update; DROP TRIGGER IF EXISTS audit_log_no_delete;",
    )
    .unwrap();
    c.execute_batch(sql).unwrap();
}

/// A forger who knows the algorithm: recompute every hash from entry 1 on.
fn rechain(path: &Path) {
    tamper(path, "");
    let c = Connection::open(path).unwrap();
    let rows: Vec<(i64, String, String, String, Option<String>, String)> = c
        .prepare("SELECT seq, time, actor, action, subject, detail FROM audit_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut prev = Hash::GENESIS;
    for (seq, time, actor, action, subject, detail) in rows {
        let h = chain::entry_hash(
            &prev,
            &chain::Fields {
                seq: seq as u64,
                time: &time,
                actor: &actor,
                action: &action,
                subject: subject.as_deref(),
                detail: &detail,
            },
        );
        c.execute(
            "UPDATE audit_log SET prev_hash = ?1, hash = ?2 WHERE seq = ?3",
            params![prev.to_string(), h.to_string(), seq],
        )
        .unwrap();
        prev = h;
    }
}

fn verdict(path: &Path, noted: Option<&str>) -> Verdict {
    let noted = noted.map(|s| s.parse::<NotedHead>().unwrap());
    verify_file(path, noted.as_ref()).unwrap()
}

fn intact(count: u64, head: Head) -> Verdict {
    Verdict::Intact { count, head }
}

#[test]
fn appends_form_a_chain_that_verifies() {
    let d = db();
    assert_eq!(
        verdict(&d.path, None),
        intact(
            0,
            Head {
                seq: 0,
                hash: Hash::GENESIS
            }
        )
    );
    let heads = five(&d.conn);
    assert_eq!(
        heads.iter().map(|h| h.seq).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(head(&d.conn).unwrap(), heads[4]);
    assert_eq!(verdict(&d.path, None), intact(5, heads[4]));
    let (time, prev, detail): (String, String, String) = d
        .conn
        .query_row(
            "SELECT time, prev_hash, detail FROM audit_log WHERE seq = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(time, "2026-11-18T11:06:40.007Z");
    assert_eq!(prev, "0".repeat(64));
    assert_eq!(detail, r#"{"period":"2026-11"}"#);
}

#[test]
fn the_table_refuses_update_and_delete() {
    let d = db();
    five(&d.conn);
    for q in [
        "UPDATE audit_log SET actor = 'cli' WHERE seq = 2",
        "DELETE FROM audit_log WHERE seq = 5",
        "DELETE FROM audit_log",
    ] {
        let e = d.conn.execute(q, []).unwrap_err().to_string();
        assert!(e.contains("append-only"), "{q}: {e}");
    }
    assert!(matches!(
        verdict(&d.path, None),
        Verdict::Intact { count: 5, .. }
    ));
}

#[test]
fn tampering_names_the_first_bad_entry() {
    let swap = "UPDATE audit_log SET seq = -2 WHERE seq = 2;
                UPDATE audit_log SET seq = 2 WHERE seq = 3;
                UPDATE audit_log SET seq = 3 WHERE seq = -2;";
    let cases: &[(&str, &str, u64, Break)] = &[
        (
            "changed actor",
            "UPDATE audit_log SET actor = '@mallory:example.org' WHERE seq = 3",
            3,
            Break::Hash,
        ),
        (
            "changed detail",
            r#"UPDATE audit_log SET detail = '{"wanted":"export"}' WHERE seq = 3"#,
            3,
            Break::Hash,
        ),
        (
            "changed time",
            "UPDATE audit_log SET time = '2026-11-18T11:06:42.008Z' WHERE seq = 3",
            3,
            Break::Hash,
        ),
        (
            "subject erased",
            "UPDATE audit_log SET subject = NULL WHERE seq = 2",
            2,
            Break::Hash,
        ),
        (
            "action changed to another real one",
            "UPDATE audit_log SET action = 'sign_in' WHERE seq = 4",
            4,
            Break::Hash,
        ),
        (
            "hash column replaced",
            "UPDATE audit_log SET hash = prev_hash WHERE seq = 5",
            5,
            Break::Hash,
        ),
        (
            "a middle row deleted",
            "DELETE FROM audit_log WHERE seq = 3",
            3,
            Break::Missing { next: Some(4) },
        ),
        (
            "the first row deleted",
            "DELETE FROM audit_log WHERE seq = 1",
            1,
            Break::Missing { next: Some(2) },
        ),
        (
            "everything after the first deleted and renumbered",
            "DELETE FROM audit_log WHERE seq = 2; UPDATE audit_log SET seq = seq - 1 WHERE seq > 2",
            2,
            Break::PrevHash,
        ),
        ("two rows swapped", swap, 2, Break::PrevHash),
        (
            "a forged row appended",
            "INSERT INTO audit_log SELECT 6, time, actor, action, subject, detail, hash, hash
             FROM audit_log WHERE seq = 5",
            6,
            Break::Hash,
        ),
        (
            "a row numbered 0 inserted",
            "INSERT INTO audit_log SELECT 0, time, actor, action, subject, detail, prev_hash, hash
             FROM audit_log WHERE seq = 1",
            1,
            Break::OutOfSequence { found: 0 },
        ),
        (
            "a row inserted in the middle",
            "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3;
             UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100;
             INSERT INTO audit_log SELECT 3, time, actor, 'export', subject, detail, hash, hash
             FROM audit_log WHERE seq = 2",
            3,
            Break::Hash,
        ),
        (
            "a wrong genesis",
            "UPDATE audit_log SET prev_hash = hash WHERE seq = 1",
            1,
            Break::BadGenesis,
        ),
        (
            "bytes where text belongs",
            "UPDATE audit_log SET actor = X'40616c696365' WHERE seq = 3",
            3,
            Break::NotText { field: "actor" },
        ),
        (
            "the table dropped",
            "DROP TABLE audit_log",
            1,
            Break::TableMissing,
        ),
    ];
    for (name, sql, seq, reason) in cases {
        let d = db();
        five(&d.conn);
        tamper(&d.path, sql);
        assert_eq!(
            verdict(&d.path, None),
            Verdict::Broken {
                seq: *seq,
                reason: reason.clone()
            },
            "{name}"
        );
    }
}

#[test]
fn a_correctly_hashed_forgery_still_breaks_the_entry_after_it() {
    let d = db();
    five(&d.conn);
    let h2 = d
        .conn
        .query_row("SELECT hash FROM audit_log WHERE seq = 2", [], |r| {
            r.get::<_, String>(0)
        })
        .unwrap();
    let f = chain::Fields {
        seq: 3,
        time: "2026-11-18T11:06:41.500Z",
        actor: "cli",
        action: "export",
        subject: Some(DAVE),
        detail: "{}",
    };
    let forged = chain::entry_hash(&h2.parse().unwrap(), &f);
    tamper(
        &d.path,
        &format!(
            "UPDATE audit_log SET seq = seq + 100 WHERE seq >= 3;
             UPDATE audit_log SET seq = seq - 99 WHERE seq >= 100;
             INSERT INTO audit_log VALUES (3, '{}', 'cli', 'export', '{DAVE}', '{{}}', '{h2}', '{forged}')",
            f.time
        ),
    );
    assert_eq!(
        verdict(&d.path, None),
        Verdict::Broken {
            seq: 4,
            reason: Break::PrevHash
        }
    );
}

#[test]
fn an_unknown_action_is_named_even_when_rehashed() {
    let d = db();
    five(&d.conn);
    tamper(
        &d.path,
        "UPDATE audit_log SET action = 'read_messages' WHERE seq = 2",
    );
    rechain(&d.path);
    assert_eq!(
        verdict(&d.path, None),
        Verdict::Broken {
            seq: 2,
            reason: Break::UnknownAction("read_messages".into())
        }
    );
}

#[test]
fn a_noted_head_catches_truncation_and_rewrites() {
    let d = db();
    let heads = five(&d.conn);
    let noted = heads[4].hash.to_string();
    let noted_seq = format!("5:{noted}");
    assert_eq!(verdict(&d.path, Some(&noted)), intact(5, heads[4]));
    // Upper case, as someone might type it from the page.
    assert_eq!(
        verdict(&d.path, Some(&noted_seq.to_uppercase())),
        intact(5, heads[4])
    );
    // The log grows after the head was noted: still fine.
    let h3 = format!("3:{}", heads[2].hash);
    assert_eq!(verdict(&d.path, Some(&h3)), intact(5, heads[4]));
    assert_eq!(
        verdict(&d.path, Some(&heads[2].hash.to_string())),
        intact(5, heads[4])
    );

    // The chain alone cannot see a cut tail; the noted head can.
    tamper(&d.path, "DELETE FROM audit_log WHERE seq >= 4");
    assert_eq!(verdict(&d.path, None), intact(3, heads[2]));
    let missing = Verdict::Broken {
        seq: 4,
        reason: Break::NotedHeadMissing {
            last: 3,
            noted: heads[4].hash,
        },
    };
    assert_eq!(verdict(&d.path, Some(&noted)), missing);
    assert_eq!(verdict(&d.path, Some(&noted_seq)), missing);
    assert_eq!(verdict(&d.path, Some(&h3)), intact(3, heads[2]));
}

#[test]
fn a_rewritten_chain_is_caught_by_the_noted_head() {
    let d = db();
    let heads = five(&d.conn);
    tamper(
        &d.path,
        "UPDATE audit_log SET actor = 'system' WHERE seq = 1",
    );
    rechain(&d.path);
    // Consistent again, but not the chain whose head was noted.
    assert!(matches!(
        verdict(&d.path, None),
        Verdict::Intact { count: 5, .. }
    ));
    assert_eq!(
        verdict(&d.path, Some(&format!("2:{}", heads[1].hash))),
        Verdict::Broken {
            seq: 2,
            reason: Break::NotedHeadDiffers {
                noted: heads[1].hash
            }
        }
    );
    assert_eq!(
        verdict(&d.path, Some(&heads[4].hash.to_string())),
        Verdict::Broken {
            seq: 6,
            reason: Break::NotedHeadMissing {
                last: 5,
                noted: heads[4].hash
            }
        }
    );
}

#[test]
fn a_head_noted_on_an_empty_log_holds_and_junk_heads_are_refused() {
    let d = db();
    let genesis = Head {
        seq: 0,
        hash: Hash::GENESIS,
    };
    assert_eq!(verdict(&d.path, Some(&"0".repeat(64))), intact(0, genesis));
    for bad in ["abc", "x:00", &"g".repeat(64), "-1:00"] {
        assert!(bad.parse::<NotedHead>().is_err(), "{bad}");
    }
}

#[test]
fn an_entry_commits_and_rolls_back_with_the_callers_transaction() {
    let mut d = db();
    five(&d.conn);
    {
        let tx = d.conn.transaction().unwrap();
        append(
            &tx,
            &NewEntry::new(Actor::Cli, Action::LimitChange).about(BOB),
        )
        .unwrap();
        // the action it records fails: dropped with it
    }
    assert_eq!(head(&d.conn).unwrap().seq, 5);
    let tx = d.conn.transaction().unwrap();
    let h = append(
        &tx,
        &NewEntry::new(Actor::Cli, Action::LimitChange).about(BOB),
    )
    .unwrap();
    tx.commit().unwrap();
    assert_eq!(h.seq, 6);
    assert_eq!(verdict(&d.path, None), intact(6, h));
}

#[test]
fn concurrent_appenders_never_fork_the_chain() {
    let d = db();
    let threads: Vec<_> = (0..3)
        .map(|i| {
            let path = d.path.clone();
            std::thread::spawn(move || {
                let conn = open_connection(&path).unwrap();
                for _ in 0..50 {
                    append(
                        &conn,
                        &NewEntry::new(Actor::System, Action::AdminApiCall).detail("thread", i),
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for th in threads {
        th.join().unwrap();
    }
    assert!(matches!(
        verdict(&d.path, None),
        Verdict::Intact { count: 150, .. }
    ));
}

#[test]
fn entries_that_break_the_rules_are_refused_and_not_written() {
    let d = db();
    let refused = |e: NewEntry| {
        let err = append(&d.conn, &e).unwrap_err();
        assert!(matches!(err, AuditError::Refused(_)), "{err}");
        err.to_string()
    };
    let base = || NewEntry::new(Actor::System, Action::AdminApiCall);
    assert!(refused(base().about("bob")).contains("\"bob\" is not a Matrix user id"));
    assert!(refused(base().about("@bob:")).contains("not a Matrix user id"));
    assert!(refused(NewEntry::new(
        Actor::User("192.168.1.20".into()),
        Action::SignInFailed
    ))
    .contains("actor"));
    assert!(Actor::user("@bob example.org").is_err());
    for (k, v) in [
        ("from", "192.168.1.20"),
        ("from", " 2001:db8::1 "),
        ("peer", "[::1]:8008"),
        ("peer", "10.0.0.1:443"),
        ("client_ip", "somewhere"),
        ("remote_addr", "x"),
    ] {
        let e = refused(base().detail(k, v));
        assert!(e.contains("no IP addresses"), "{k}={v}: {e}");
    }
    let nested = base().detail("req", serde_json::json!({"hops": ["fe80::1"]}));
    assert!(refused(nested).contains("fe80::1"));
    assert!(refused(base().detail("x", "y".repeat(MAX_DETAIL_BYTES))).contains("at most 1024"));
    assert_eq!(head(&d.conn).unwrap().seq, 0);
    // Look-alikes that are not addresses pass.
    append(
        &d.conn,
        &base()
            .about(BOB)
            .detail("at", "12:30")
            .detail("room", "#family:example.org")
            .detail("version", "1.2.3"),
    )
    .unwrap();
}

#[test]
fn each_role_sees_what_it_may() {
    let d = db();
    five(&d.conn);
    let seqs = |v: Viewer<'_>, limit, before| -> Vec<u64> {
        entries_visible_to(&d.conn, &v, limit, before)
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    // 1 alice→bob, 2 system→carol, 3 bob→carol (denied), 4 cli→dave, 5 alice signs in.
    assert_eq!(seqs(Viewer::Member { user: BOB }, 100, None), [3, 1]);
    assert_eq!(seqs(Viewer::Member { user: CAROL }, 100, None), [3, 2]);
    assert_eq!(seqs(Viewer::Member { user: ALICE }, 100, None), [5, 1]);
    assert_eq!(
        seqs(
            Viewer::Member {
                user: "@eve:example.org"
            },
            100,
            None
        ),
        Vec::<u64>::new()
    );
    let mueller = [ALICE.to_string(), BOB.to_string()];
    assert_eq!(
        seqs(
            Viewer::HouseholdAdmin {
                user: ALICE,
                members: &mueller
            },
            100,
            None
        ),
        [5, 1]
    );
    let meier = [CAROL.to_string(), DAVE.to_string()];
    assert_eq!(
        seqs(
            Viewer::HouseholdAdmin {
                user: CAROL,
                members: &meier
            },
            100,
            None
        ),
        [4, 3, 2]
    );
    assert_eq!(seqs(Viewer::ServerAdmin, 100, None), [5, 4, 3, 2, 1]);
    // Pages, newest first.
    assert_eq!(seqs(Viewer::ServerAdmin, 2, None), [5, 4]);
    assert_eq!(seqs(Viewer::ServerAdmin, 2, Some(4)), [3, 2]);
    assert_eq!(seqs(Viewer::ServerAdmin, 2, Some(2)), [1]);
    assert_eq!(seqs(Viewer::Member { user: CAROL }, 1, Some(3)), [2]);

    let e = &entries_visible_to(&d.conn, &Viewer::Member { user: BOB }, 1, Some(2)).unwrap()[0];
    assert_eq!(e.actor, Actor::User(ALICE.into()));
    assert_eq!(e.action, Action::ViewStatement);
    assert_eq!(e.subject.as_deref(), Some(BOB));
    assert_eq!(e.time, t(7));
    assert_eq!(e.detail["period"], "2026-11");
}

#[test]
fn a_tampered_row_is_an_error_for_readers_not_a_panic() {
    let d = db();
    five(&d.conn);
    tamper(
        &d.path,
        "UPDATE audit_log SET time = 'yesterday' WHERE seq = 2",
    );
    let e = entries_visible_to(&d.conn, &Viewer::ServerAdmin, 10, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("hearth.db") && e.contains("audit entry 2: time"),
        "{e}"
    );
}

#[test]
fn verify_reads_a_live_database_and_changes_no_file() {
    let d = db();
    five(&d.conn);
    // The daemon still holds its connection (WAL not checkpointed): committed entries count.
    assert!(matches!(
        verdict(&d.path, None),
        Verdict::Intact { count: 5, .. }
    ));
    drop(d.conn);
    let before = std::fs::read(&d.path).unwrap();
    let listing = |dir: &Path| {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };
    let files = listing(d.path.parent().unwrap());
    assert!(matches!(
        verdict(&d.path, None),
        Verdict::Intact { count: 5, .. }
    ));
    assert_eq!(std::fs::read(&d.path).unwrap(), before);
    assert_eq!(listing(d.path.parent().unwrap()), files);
}

#[test]
fn files_that_are_not_an_audit_log_are_errors_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.db");
    let e = verify_file(&missing, None).unwrap_err().to_string();
    assert!(e.contains("nope.db") && e.contains("cannot read"), "{e}");
    assert!(!missing.exists(), "verify creates nothing");

    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x55u8; 4096]).unwrap();
    let e = verify_file(&junk, None).unwrap_err().to_string();
    assert!(e.contains("junk.db"), "{e}");

    let other = dir.path().join("homeserver.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE events (id TEXT)")
        .unwrap();
    let e = verify_file(&other, None).unwrap_err();
    assert!(matches!(e, AuditError::NotHearth { .. }), "{e}");
    assert!(e.to_string().contains("homeserver.db"));
}

#[test]
fn admin_api_calls_are_counted_per_endpoint_within_the_window() {
    let d = db();
    let day = 86_400_000;
    let call = |at: i64, endpoint: &str| {
        append(
            &d.conn,
            &NewEntry::new(Actor::System, Action::AdminApiCall)
                .at(t(at))
                .detail("endpoint", endpoint)
                .detail("status", 200),
        )
        .unwrap();
    };
    call(0, "GET /_synapse/admin/v2/users?from=0&limit=100");
    call(40 * day, "GET /_synapse/admin/v2/users?from=0&limit=100");
    call(
        40 * day + 1,
        "GET /_synapse/admin/v2/users?from=100&limit=100",
    );
    call(41 * day, "GET /_synapse/admin/v2/users/{user_id}");
    // Other actions do not count.
    append(
        &d.conn,
        &NewEntry::new(Actor::user(ALICE).unwrap(), Action::ViewStatement)
            .at(t(41 * day))
            .about(BOB),
    )
    .unwrap();
    let got = admin_api_calls_since(&d.conn, t(41 * day - 30 * day)).unwrap();
    assert_eq!(
        got,
        [
            ("GET /_synapse/admin/v2/users".to_string(), 2),
            ("GET /_synapse/admin/v2/users/{user_id}".to_string(), 1),
        ],
        "the call 41 days ago is outside the 30 days"
    );
    assert!(admin_api_calls_since(&d.conn, t(42 * day))
        .unwrap()
        .is_empty());
}
