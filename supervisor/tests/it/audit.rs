//! `hearth-supervisor audit verify` on real database files, as a family or a script runs it.

use hearth::audit::{append, Action, Actor, Head, NewEntry};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run(program: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn verify(args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["audit", "verify"];
    all.extend_from_slice(args);
    run(env!("CARGO_BIN_EXE_hearth-supervisor"), &all)
}

/// The chain checked by the documented 20-line Python script instead of our code.
fn python_verify(db: &Path) -> (i32, String, String) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/audit-verify.py");
    run("python3", &[script.to_str().unwrap(), db.to_str().unwrap()])
}

/// A database with three entries, as the daemon writes them; the connection is closed.
fn three(dir: &Path) -> (PathBuf, Head) {
    let db = dir.join("hearth.db");
    let conn = hearth::storage::open_connection(&db).unwrap();
    let alice = Actor::user("@alice:example.org").unwrap();
    append(
        &conn,
        &NewEntry::new(alice.clone(), Action::ViewStatement)
            .about("@bob:example.org")
            .detail("period", "2026-11"),
    )
    .unwrap();
    append(
        &conn,
        &NewEntry::new(Actor::System, Action::AdminApiCall).about("@bob:example.org"),
    )
    .unwrap();
    let head = append(&conn, &NewEntry::new(alice, Action::SignIn)).unwrap();
    (db, head)
}

fn tamper(db: &Path, sql: &str) {
    let c = Connection::open(db).unwrap();
    c.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;")
        .unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn an_intact_log_exits_0_with_its_head() {
    let dir = tempfile::tempdir().unwrap();
    let (db, head) = three(dir.path());
    let want = format!("audit log intact: 3 entries, head {}\n", head.hash);
    let (code, out, err) = verify(&["--db", db.to_str().unwrap()]);
    assert_eq!((code, out.as_str(), err.as_str()), (0, want.as_str(), ""));
    // Someone without hearth reaches the same verdict.
    let (code, out, err) = python_verify(&db);
    assert_eq!((code, out.as_str()), (0, want.as_str()), "{err}");
}

#[test]
fn a_changed_row_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = three(dir.path());
    tamper(
        &db,
        "UPDATE audit_log SET actor = '@mallory:example.org' WHERE seq = 2",
    );
    let (code, out, err) = verify(&["--db", db.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out, "");
    assert_eq!(
        err,
        "audit log tampered: entry 2: hash does not match the entry's contents: changed\n"
    );
    let (code, _, err) = python_verify(&db);
    assert_eq!((code, err.trim_end()), (1, "audit log tampered: entry 2"));
}

#[test]
fn a_removed_row_exits_1_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = three(dir.path());
    tamper(&db, "DELETE FROM audit_log WHERE seq = 1");
    let (code, _, err) = verify(&["--db", db.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("audit log tampered: entry 1: missing"),
        "{err}"
    );
    assert_eq!(python_verify(&db).0, 1);
}

#[test]
fn a_cut_tail_is_caught_only_against_the_noted_head() {
    let dir = tempfile::tempdir().unwrap();
    let (db, head) = three(dir.path());
    let noted = head.hash.to_string();
    let noted_seq = format!("3:{noted}");
    let db_s = db.to_str().unwrap();
    for h in [noted.as_str(), noted_seq.as_str()] {
        assert_eq!(verify(&["--db", db_s, "--head", h]).0, 0);
    }
    tamper(&db, "DELETE FROM audit_log WHERE seq = 3");
    assert_eq!(verify(&["--db", db_s]).0, 0, "a chain alone cannot see it");
    for h in [noted.as_str(), noted_seq.as_str()] {
        let (code, _, err) = verify(&["--db", db_s, "--head", h]);
        assert_eq!(code, 1);
        assert!(
            err.starts_with("audit log tampered: entry 3: missing: the log ends at entry 2"),
            "{err}"
        );
        assert!(err.contains(&noted), "{err}");
    }
}

#[test]
fn the_database_comes_from_the_configuration_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let (db, head) = three(dir.path());
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!("[storage]\npath = {:?}\n", db.to_str().unwrap()),
    )
    .unwrap();
    let (code, out, err) = verify(&["--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(&format!("head {}\n", head.hash)), "{out}");
}

#[test]
fn unreadable_input_exits_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![0x55u8; 4096]).unwrap();
    let missing_cfg = dir.path().join("missing.toml");
    let cases: [(Vec<&str>, &str); 3] = [
        (
            vec!["--db", "/nonexistent/hearth.db"],
            "/nonexistent/hearth.db",
        ),
        (vec!["--db", junk.to_str().unwrap()], "junk.db"),
        (
            vec!["--config", missing_cfg.to_str().unwrap()],
            "missing.toml",
        ),
    ];
    for (args, name) in cases {
        let (code, out, err) = verify(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(name), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!Path::new("/nonexistent/hearth.db").exists());
    let (code, _, err) = verify(&["--db", junk.to_str().unwrap(), "--head", "beef"]);
    assert_eq!(code, 2, "a malformed head is a usage error: {err}");
    assert!(err.contains("not a SHA-256 hash"), "{err}");
}
