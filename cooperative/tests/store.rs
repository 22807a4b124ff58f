//! The name table, on both backends: a SQLite file, and a real PostgreSQL (`pg`: a server of
//! its own per test, on a Unix socket). The same tests run on each (`sqlite::…`, `postgres::…`),
//! and two `Store`s on one table stand for two edges behind DNS.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

mod pg;

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use cooperative::store::{EnrolError, Ingest, ReportRecord, Store};

const DOMAIN: &str = "coop.test";
const DB: &str = "coop";

/// One table, on one backend.
enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(pg::Postgres),
}

impl Db {
    fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Db {
        let server = pg::Postgres::start();
        server.create_db(DB);
        Db::Postgres(server)
    }

    /// The config's `database`.
    fn setting(&self) -> PathBuf {
        match self {
            Db::Sqlite(dir) => dir.path().join("coop.sqlite3"),
            Db::Postgres(server) => PathBuf::from(server.url(DB)),
        }
    }

    /// A `Store` on it: an edge starting (a second call: a second edge, or a restart).
    fn open(&self) -> Store {
        Store::open(&self.setting(), DOMAIN).unwrap()
    }

    /// What the table looks like at rest: the SQLite file and its WAL, or `pg_dump`'s output.
    fn at_rest(&self) -> Vec<Vec<u8>> {
        match self {
            Db::Sqlite(_) => {
                let path = self.setting();
                vec![
                    std::fs::read(&path).unwrap(),
                    std::fs::read(path.with_extension("sqlite3-wal")).unwrap_or_default(),
                ]
            }
            Db::Postgres(server) => vec![server.dump(DB)],
        }
    }
}

/// Each test once per backend: `sqlite::<test>` and `postgres::<test>`.
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $test() { super::$test(super::Db::sqlite()) } )*
        }
        mod postgres {
            $( #[test] fn $test() { super::$test(super::Db::postgres()) } )*
        }
    };
}

on_both_backends!(
    a_token_enrols_one_name_once_and_a_retry_is_harmless,
    one_box_cannot_take_another_boxes_name,
    bad_requests_are_refused_with_their_reason,
    the_table_survives_a_restart_and_tokens_are_stored_only_as_hashes,
    boxes_are_listed_in_byte_order_of_their_names,
    a_check_slot_is_taken_once_per_interval,
    two_edges_share_one_table,
    two_edges_enrolling_one_name_at_once_exactly_one_wins,
    one_token_spent_on_two_edges_at_once_enrols_one_name,
    the_check_slot_is_shared_by_the_edges,
    a_report_is_stored_once_and_its_token_spent_once,
    reports_racing_on_two_edges_are_stored_once,
    token_grants_are_counted_per_box_and_key,
);

fn report(id: &str, kwh: f64) -> ReportRecord {
    ReportRecord {
        id: id.into(),
        month: "2025-03".into(),
        hardware: "pi5".into(),
        members: "2-5".into(),
        energy_kwh: kwh,
        epsilon: 1.0,
        uptime_share: 0.95,
        synapse: "1.139".into(),
        supplier: None,
    }
}

fn a_report_is_stored_once_and_its_token_spent_once(db: Db) {
    let s = db.open();
    let a = report("a", 3.2);
    assert_eq!(
        s.ingest_report(&a, &[1; 32], "2025-04-02").unwrap(),
        Ingest::Stored
    );
    // The same report again (its answer got lost): nothing changes.
    assert_eq!(
        s.ingest_report(&a, &[1; 32], "2025-04-03").unwrap(),
        Ingest::Replay
    );
    // Another report under the same id, whatever its token.
    assert_eq!(
        s.ingest_report(&report("a", 9.9), &[2; 32], "2025-04-03")
            .unwrap(),
        Ingest::IdTaken
    );
    // The same token on another id.
    assert_eq!(
        s.ingest_report(&report("b", 3.2), &[1; 32], "2025-04-03")
            .unwrap(),
        Ingest::TokenSpent
    );
    assert_eq!(s.reports().unwrap(), vec![a.clone()]);
    assert_eq!(
        s.spent_tokens().unwrap(),
        1,
        "the refused ones spent nothing"
    );
    assert_eq!(
        s.ingest_report(&report("b", 1.0), &[2; 32], "2025-04-03")
            .unwrap(),
        Ingest::Stored
    );
    // A restart keeps both.
    drop(s);
    let s = db.open();
    assert_eq!(s.reports().unwrap().len(), 2);
    assert_eq!(s.spent_tokens().unwrap(), 2);
}

/// What a 200 promises the box on SQLite (the reports' connection is `synchronous=NORMAL`):
/// once `ingest_report` has returned, the report and its spent token survive the collector's
/// process being killed on the spot — no destructor, no checkpoint, no close. (A power cut may
/// roll back the last moments' reports: store/sqlite.rs says why that is the choice.)
#[test]
fn sqlite_a_stored_report_survives_its_process_being_killed() {
    const CHILD: &str = "HEARTH_STORE_TEST_KILLED_DB";
    if let Ok(path) = std::env::var(CHILD) {
        // The child: store, then die as SIGKILL would leave it.
        let s = Store::open(std::path::Path::new(&path), DOMAIN).unwrap();
        let t = s.issue_token("nord").unwrap();
        s.enrol(&t, "nord", &[3; 32]).unwrap();
        for i in 0..3u8 {
            let r = report(&format!("killed{i}"), f64::from(i));
            assert_eq!(
                s.ingest_report(&r, &[i; 32], "2025-04-02").unwrap(),
                Ingest::Stored
            );
        }
        std::process::abort();
    }
    let db = Db::sqlite();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite_a_stored_report_survives_its_process_being_killed",
            "--test-threads=1",
        ])
        .env(CHILD, db.setting())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was to die: {status}");
    let s = db.open();
    assert_eq!(s.reports().unwrap().len(), 3);
    assert_eq!(s.spent_tokens().unwrap(), 3);
    assert_eq!(s.key_for("nord.coop.test").unwrap(), Some(vec![3; 32]));
}

fn reports_racing_on_two_edges_are_stored_once(db: Db) {
    let stores: Vec<Store> = (0..4).map(|_| db.open()).collect();
    let stores = Arc::new(stores);
    // Four edges get the same report at once, then four reports with one token.
    let results = at_once(4, {
        let stores = stores.clone();
        move |i| {
            stores[i]
                .ingest_report(&report("same", 2.0), &[7; 32], "2025-04-02")
                .unwrap()
        }
    });
    assert_eq!(
        results.iter().filter(|r| **r == Ingest::Stored).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ingest::Stored | Ingest::Replay | Ingest::TokenSpent)),
        "{results:?}"
    );
    let results = at_once(4, {
        let stores = stores.clone();
        move |i| {
            stores[i]
                .ingest_report(&report(&format!("other{i}"), 2.0), &[8; 32], "2025-04-02")
                .unwrap()
        }
    });
    assert_eq!(
        results.iter().filter(|r| **r == Ingest::Stored).count(),
        1,
        "{results:?}"
    );
    assert_eq!(stores[0].reports().unwrap().len(), 2);
    assert_eq!(stores[0].spent_tokens().unwrap(), 2);
}

fn token_grants_are_counted_per_box_and_key(db: Db) {
    let s = db.open();
    assert!(s.grant_tokens("nord.coop.test", "k1", 10, 16).unwrap());
    assert!(
        !s.grant_tokens("nord.coop.test", "k1", 7, 16).unwrap(),
        "17 > 16"
    );
    assert!(s.grant_tokens("nord.coop.test", "k1", 6, 16).unwrap());
    assert!(!s.grant_tokens("nord.coop.test", "k1", 1, 16).unwrap());
    // Another key (the next period) and another box start again.
    assert!(s.grant_tokens("nord.coop.test", "k2", 16, 16).unwrap());
    assert!(s.grant_tokens("sued.coop.test", "k1", 16, 16).unwrap());
    assert!(!s.grant_tokens("west.coop.test", "k1", 17, 16).unwrap());
    // Edges at once: 16 asks of 1 each, over 4 stores, with room for 10.
    let stores = Arc::new((0..4).map(|_| db.open()).collect::<Vec<Store>>());
    let results = at_once(16, move |i| {
        stores[i % 4]
            .grant_tokens("ost.coop.test", "k1", 1, 10)
            .unwrap()
    });
    assert_eq!(results.iter().filter(|g| **g).count(), 10);
}

fn a_token_enrols_one_name_once_and_a_retry_is_harmless(db: Db) {
    let s = db.open();
    let t = s.issue_token("Familie Nord").unwrap();
    assert_eq!(s.enrol(&t, "nord", &[1; 32]).unwrap(), "nord.coop.test");
    assert_eq!(
        s.enrol(&t, "nord", &[1; 32]).unwrap(),
        "nord.coop.test",
        "the same enrolment again"
    );
    assert_eq!(s.enrol(&t, "sued", &[1; 32]), Err(EnrolError::TokenUsed));
    assert_eq!(s.key_for("nord.coop.test").unwrap(), Some(vec![1; 32]));
    assert_eq!(s.key_for("sued.coop.test").unwrap(), None);
    // Lower case and spaces around a typed token do not matter.
    let t2 = s.issue_token("x").unwrap();
    assert!(s
        .enrol(&format!(" {} ", t2.to_lowercase()), "west", &[3; 32])
        .is_ok());
}

fn one_box_cannot_take_another_boxes_name(db: Db) {
    let s = db.open();
    let (a, b) = (s.issue_token("a").unwrap(), s.issue_token("b").unwrap());
    s.enrol(&a, "nord", &[1; 32]).unwrap();
    assert_eq!(
        s.enrol(&b, "nord", &[2; 32]),
        Err(EnrolError::Taken("nord.coop.test".into()))
    );
    // A spent token retried with another key: the name is still not its.
    assert_eq!(
        s.enrol(&a, "nord", &[2; 32]),
        Err(EnrolError::Taken("nord.coop.test".into()))
    );
    assert_eq!(
        s.key_for("nord.coop.test").unwrap(),
        Some(vec![1; 32]),
        "the owner keeps it"
    );
    // The refused attempt did not spend b's token.
    assert_eq!(s.enrol(&b, "sued", &[2; 32]).unwrap(), "sued.coop.test");
}

fn bad_requests_are_refused_with_their_reason(db: Db) {
    let s = db.open();
    let t = s.issue_token("a").unwrap();
    assert_eq!(
        s.enrol("0000-0000-0000-0000-0000", "nord", &[1; 32]),
        Err(EnrolError::UnknownToken)
    );
    assert_eq!(
        s.enrol(&t, "relay", &[1; 32]),
        Err(EnrolError::Reserved("relay.coop.test".into()))
    );
    for bad in [
        "ab",
        "Nord",
        "-nord",
        "nord-",
        "no.rd",
        "nörd",
        &"a".repeat(64),
    ] {
        assert!(
            matches!(s.enrol(&t, bad, &[1; 32]), Err(EnrolError::BadLabel(_))),
            "{bad}"
        );
    }
    assert_eq!(s.enrol(&t, "nord", &[1; 31]), Err(EnrolError::BadKey));
    assert!(s.boxes().unwrap().is_empty());
    assert_eq!(
        s.enrol(&t, "nord", &[1; 32]).unwrap(),
        "nord.coop.test",
        "the token is still good"
    );
}

fn the_table_survives_a_restart_and_tokens_are_stored_only_as_hashes(db: Db) {
    let (token, unused) = {
        let s = db.open();
        let t = s.issue_token("a").unwrap();
        s.enrol(&t, "nord", &[1; 32]).unwrap();
        assert!(s
            .take_check_slot("nord.coop.test", Duration::from_secs(3600))
            .unwrap());
        (t, s.issue_token("b").unwrap())
    };
    let s = db.open();
    assert_eq!(s.boxes().unwrap().len(), 1);
    assert_eq!(s.key_for("nord.coop.test").unwrap(), Some(vec![1; 32]));
    assert_eq!(s.enrol(&token, "nord", &[1; 32]).unwrap(), "nord.coop.test");
    assert_eq!(
        s.enrol(&token, "sued", &[1; 32]),
        Err(EnrolError::TokenUsed)
    );
    assert!(
        !s.take_check_slot("nord.coop.test", Duration::from_secs(3600))
            .unwrap(),
        "the last check is remembered"
    );
    assert_eq!(
        s.enrol(&unused, "sued", &[2; 32]).unwrap(),
        "sued.coop.test"
    );
    for bytes in db.at_rest() {
        for t in [&token, &unused] {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "a token is stored in the clear"
            );
        }
    }
}

fn boxes_are_listed_in_byte_order_of_their_names(db: Db) {
    let s = db.open();
    for (i, label) in ["zed", "abc", "a0bc", "a-bc"].into_iter().enumerate() {
        let t = s.issue_token(label).unwrap();
        s.enrol(&t, label, &[i as u8; 32]).unwrap();
    }
    let rows = s.boxes().unwrap();
    let names: Vec<&str> = rows.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "a-bc.coop.test",
            "a0bc.coop.test",
            "abc.coop.test",
            "zed.coop.test"
        ]
    );
    assert_eq!(rows[3].public_key, hearth_tunnel::proto::encode([0u8; 32]));
    assert!(rows.iter().all(|b| b.enrolled_at > 1_700_000_000));
}

fn a_check_slot_is_taken_once_per_interval(db: Db) {
    let s = db.open();
    let minute = Duration::from_secs(60);
    assert!(s.take_check_slot("nord.coop.test", minute).unwrap());
    assert!(!s.take_check_slot("nord.coop.test", minute).unwrap());
    assert!(
        s.take_check_slot("sued.coop.test", minute).unwrap(),
        "per name"
    );
    assert!(
        s.take_check_slot("nord.coop.test", Duration::ZERO).unwrap(),
        "no interval: always"
    );
    assert!(!s.take_check_slot("nord.coop.test", Duration::MAX).unwrap());
}

fn two_edges_share_one_table(db: Db) {
    let (a, b) = (db.open(), db.open());
    let t = a.issue_token("nord").unwrap();
    assert_eq!(b.enrol(&t, "nord", &[1; 32]).unwrap(), "nord.coop.test");
    assert_eq!(a.key_for("nord.coop.test").unwrap(), Some(vec![1; 32]));
    assert_eq!(
        a.enrol(&t, "nord", &[1; 32]).unwrap(),
        "nord.coop.test",
        "the retry reaches the other edge"
    );
    let t2 = b.issue_token("sued").unwrap();
    assert_eq!(
        a.enrol(&t2, "nord", &[2; 32]),
        Err(EnrolError::Taken("nord.coop.test".into()))
    );
    assert_eq!(a.boxes().unwrap(), b.boxes().unwrap());
}

/// Runs `f(i)` on `n` threads that start at the same moment; their answers in order.
fn at_once<T: Send + 'static>(n: usize, f: impl Fn(usize) -> T + Send + Sync + 'static) -> Vec<T> {
    let (barrier, f) = (Arc::new(Barrier::new(n)), Arc::new(f));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let (barrier, f) = (barrier.clone(), f.clone());
            std::thread::spawn(move || {
                barrier.wait();
                f(i)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn two_edges_enrolling_one_name_at_once_exactly_one_wins(db: Db) {
    let edges = [db.open(), db.open()];
    for round in 0..15 {
        let label = format!("race{round}");
        let name = format!("{label}.{DOMAIN}");
        // Four boxes, each with its own token and key, two on each edge.
        let tokens: Vec<String> = (0..4)
            .map(|i| edges[i % 2].issue_token("racer").unwrap())
            .collect();
        let (e, l, t) = (edges.clone(), label.clone(), tokens.clone());
        let results = at_once(4, move |i| e[i % 2].enrol(&t[i], &l, &[i as u8 + 1; 32]));
        let winners: Vec<usize> = (0..4).filter(|&i| results[i].is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let w = winners[0];
        assert_eq!(results[w], Ok(name.clone()));
        for (i, r) in results.iter().enumerate().filter(|(i, _)| *i != w) {
            assert_eq!(
                *r,
                Err(EnrolError::Taken(name.clone())),
                "round {round}, {i}"
            );
        }
        for edge in &edges {
            assert_eq!(edge.key_for(&name).unwrap(), Some(vec![w as u8 + 1; 32]));
        }
        // The losers' tokens were not spent.
        let loser = (w + 1) % 4;
        assert!(edges[0]
            .enrol(&tokens[loser], &format!("lost{round}"), &[9; 32])
            .is_ok());
    }
}

fn one_token_spent_on_two_edges_at_once_enrols_one_name(db: Db) {
    let edges = [db.open(), db.open()];
    for round in 0..10 {
        let token = edges[0].issue_token("one").unwrap();
        let (e, t) = (edges.clone(), token.clone());
        let results = at_once(2, move |i| {
            e[i].enrol(&t, &format!("r{round}side{i}"), &[7; 32])
        });
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "round {round}: {results:?}");
        assert!(results.contains(&Err(EnrolError::TokenUsed)), "{results:?}");
    }
    assert_eq!(edges[1].boxes().unwrap().len(), 10);
    // The same enrolment retried on both edges at once: both say yes, one box.
    let token = edges[1].issue_token("twice").unwrap();
    let (e, t) = (edges.clone(), token.clone());
    let results = at_once(2, move |i| e[i].enrol(&t, "twice", &[8; 32]));
    assert_eq!(
        results,
        vec![Ok("twice.coop.test".into()), Ok("twice.coop.test".into())]
    );
    assert_eq!(edges[0].boxes().unwrap().len(), 11);
}

fn the_check_slot_is_shared_by_the_edges(db: Db) {
    let (a, b) = (db.open(), db.open());
    let minute = Duration::from_secs(60);
    assert!(a.take_check_slot("nord.coop.test", minute).unwrap());
    assert!(
        !b.take_check_slot("nord.coop.test", minute).unwrap(),
        "asking the other edge does not help"
    );
    assert!(!a.take_check_slot("nord.coop.test", minute).unwrap());
    // Eight asks at once on two edges: one check.
    for round in 0..5 {
        let name = format!("r{round}.coop.test");
        let edges = [a.clone(), b.clone()];
        let taken = at_once(8, move |i| {
            edges[i % 2].take_check_slot(&name, minute).unwrap()
        });
        assert_eq!(
            taken.iter().filter(|t| **t).count(),
            1,
            "round {round}: {taken:?}"
        );
    }
}

// PostgreSQL only: what several edges starting and running against one server need.

#[test]
fn postgres_migrations_run_once_when_edges_start_together() {
    let db = Db::postgres();
    let Db::Postgres(server) = &db else {
        unreachable!()
    };
    let setting = db.setting();
    let stores = at_once(6, move |_| Store::open(&setting, DOMAIN));
    for s in &stores {
        assert!(s.is_ok(), "{:?}", s.as_ref().err());
    }
    assert_eq!(server.sql(DB, "SELECT version FROM coop_schema"), "2");
    assert_eq!(
        server.sql(
            DB,
            "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables \
             WHERE schemaname = 'public'"
        ),
        "boxes,checks,coop_schema,reports,spent_tokens,token_grants,tokens"
    );
    // Again, on a table in use: nothing to do, nothing lost.
    let s = stores.into_iter().next().unwrap().unwrap();
    let t = s.issue_token("a").unwrap();
    s.enrol(&t, "nord", &[1; 32]).unwrap();
    let again = db.open();
    assert_eq!(again.key_for("nord.coop.test").unwrap(), Some(vec![1; 32]));
    assert_eq!(server.sql(DB, "SELECT version FROM coop_schema"), "2");
}

#[test]
fn postgres_a_newer_schema_is_refused() {
    let db = Db::postgres();
    let Db::Postgres(server) = &db else {
        unreachable!()
    };
    db.open();
    server.sql(DB, "UPDATE coop_schema SET version = 99");
    let e = Store::open(&db.setting(), DOMAIN)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("version 99") && e.contains("update hearth-coop"),
        "{e}"
    );
}

#[test]
fn postgres_an_edge_carries_on_after_the_server_restarts() {
    let db = Db::postgres();
    let Db::Postgres(server) = &db else {
        unreachable!()
    };
    let s = db.open();
    let t = s.issue_token("a").unwrap();
    s.enrol(&t, "nord", &[1; 32]).unwrap();
    // Every pool thread gets a connection.
    let s2 = s.clone();
    at_once(8, move |_| s2.key_for("nord.coop.test").unwrap());
    server.restart();
    // Each broken connection is made again, and the call that found it broken still answers.
    let s2 = s.clone();
    for key in at_once(8, move |_| s2.key_for("nord.coop.test").unwrap()) {
        assert_eq!(key, Some(vec![1; 32]));
    }
    assert!(s
        .take_check_slot("nord.coop.test", Duration::from_secs(60))
        .unwrap());
    let t2 = s.issue_token("b").unwrap();
    assert_eq!(s.enrol(&t2, "sued", &[2; 32]).unwrap(), "sued.coop.test");
}

#[test]
fn postgres_an_unreachable_database_is_one_line_naming_the_setting() {
    let server = pg::Postgres::start();
    // No such database, then no server at all (a socket directory nobody listens in).
    let missing = server.url("nowhere");
    let e = Store::open(std::path::Path::new(&missing), DOMAIN)
        .err()
        .unwrap()
        .to_string();
    assert!(e.starts_with(&format!("database = {missing:?}: ")), "{e}");
    assert!(
        e.contains("database \"nowhere\" does not exist") && !e.contains('\n'),
        "{e}"
    );
    let empty = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql://coop:secret@{}/coop",
        empty.path().to_str().unwrap().replace('/', "%2F")
    );
    let e = Store::open(std::path::Path::new(&url), DOMAIN)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("error connecting to server: ") && e.contains("No such file"),
        "{e}"
    );
    assert!(!e.contains("secret") && e.contains("coop:***@"), "{e}");
    assert!(!e.contains('\n'), "{e}");
}

/// The synchronous client runs a runtime of its own; the store keeps it off tokio's threads,
/// so opening, using and dropping a store inside async code (the API's handlers, the
/// supervisor's in-process tests) cannot panic.
#[test]
fn postgres_the_store_is_safe_inside_tokio() {
    let db = Db::postgres();
    let setting = db.setting();
    for multi in [false, true] {
        let rt = if multi {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        };
        let setting = setting.clone();
        rt.block_on(async move {
            let s = Store::open(&setting, DOMAIN).unwrap();
            let t = s.issue_token("async").unwrap();
            let label = if multi { "multi" } else { "single" };
            s.enrol(&t, label, &[1; 32]).unwrap();
            assert!(s.key_for(&format!("{label}.{DOMAIN}")).unwrap().is_some());
            let s2 = s.clone();
            tokio::spawn(async move { s2.boxes().unwrap() })
                .await
                .unwrap();
            drop(s);
        });
    }
}

/// `hearth-coop` with a `database` it cannot use: one line naming the config file and the
/// field, exit 1, no panic. A URL that is not one is the config's mistake (with its line);
/// a database nobody answers for is found at start.
#[test]
fn postgres_hearth_coop_says_which_database_setting_failed() {
    let dir = tempfile::tempdir().unwrap();
    let run = |database: &str, args: &[&str]| {
        let config = dir.path().join("coop.toml");
        std::fs::write(
            &config,
            format!("domain = \"coop.example\"\ndatabase = \"{database}\"\n"),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hearth-coop"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "off")
            .output()
            .unwrap();
        let stderr = String::from_utf8(out.stderr).unwrap();
        (out.status.code(), stderr, config.display().to_string())
    };
    let (code, stderr, config) = run("postgresql://coop@db:notaport/coop", &["boxes"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "hearth-coop: {config}:2: database: not a PostgreSQL URL"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    let nobody = tempfile::tempdir().unwrap();
    let url = format!(
        "postgresql://coop:secret@{}/coop",
        nobody.path().to_str().unwrap().replace('/', "%2F")
    );
    for args in [&["boxes"][..], &["token", "issue"], &["serve"]] {
        let (code, stderr, config) = run(&url, args);
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        let redacted = url.replace(":secret@", ":***@");
        assert!(
            stderr.starts_with(&format!(
                "hearth-coop: {config}: database = {redacted:?}: PostgreSQL: error connecting"
            )),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            !stderr.contains("panick") && !stderr.contains("secret"),
            "{stderr}"
        );
    }
}
