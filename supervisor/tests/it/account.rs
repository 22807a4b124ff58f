//! `account`: the statement from raw inputs, and the same statement from the daemon's path.

use super::{supervisor, testdata};
use hearth::accountant::close::statement_of;
use hearth::accountant::members::MembersFile;
use hearth::accounting::accesslog::MinuteWeights;
use hearth::accounting::model::Period;
use hearth::config::{BaseWatts, Config};
use hearth::power::trace::Trace;
use hearth::storage::{AcctBatch, Storage};

const START: &str = "2026-11-26T10:00:00Z";
const START_MS: i64 = 1_795_687_200_000;

fn path(rel: &str) -> String {
    testdata(rel).to_str().unwrap().to_string()
}

fn account(
    trace: &str,
    start: &str,
    log: &str,
    members: &str,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec![
        "account",
        "--trace",
        trace,
        "--start",
        start,
        "--access-log",
        log,
        "--members",
        members,
    ];
    args.extend_from_slice(extra);
    supervisor(&args)
}

#[test]
fn account_prints_the_statement_of_the_raw_inputs() {
    let (code, out, err) = account(
        &path("traces/steps_10min.csv"),
        START,
        &path("accounting/access.log"),
        &path("accounting/members.toml"),
        &[],
    );
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    for key in [
        "period",
        "measured_wh",
        "other_services_wh",
        "estimated_wh",
        "members",
        "households",
        "tariff",
        "currency",
    ] {
        assert!(v.get(key).is_some(), "no {key} in {out}");
    }
    assert_eq!(v["period"], "2026-11-26T10:00:00Z/2026-11-26T10:10:00Z");
    // The whole trace is in the statement, measured through the simulated INA219.
    let truth = Trace::from_path(&testdata("traces/steps_10min.csv"))
        .unwrap()
        .true_energy_wh();
    let measured = v["measured_wh"].as_f64().unwrap();
    assert!(
        (measured - truth).abs() / truth < 0.002,
        "{measured} vs {truth}"
    );
    // Offline: CPU share 1 (nothing to other services), no history for "auto": said so.
    assert_eq!(v["other_services_wh"].as_f64(), Some(0.0));
    assert_eq!(v["base_source"], "auto_from_period");
    let members = v["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    let carol = members
        .iter()
        .find(|m| m["user_id"] == "@carol:example.org")
        .unwrap();
    assert_eq!(carol["minutes_present"], 5, "joined at 10:05");
    // Every Wh is in exactly one term.
    let billed: f64 = members
        .iter()
        .map(|m| m["total_wh"].as_f64().unwrap())
        .sum();
    assert!((billed - measured).abs() < 1e-9);
    // The line before the trace started and the stack trace are counted, not fatal.
    assert!(
        err.contains("2 skipped") && err.contains("1 minutes of requests outside"),
        "{err}"
    );
}

#[test]
fn bad_inputs_get_one_line_naming_the_file_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad_members = dir.path().join("members.toml");
    std::fs::write(
        &bad_members,
        "[[household]]\nid = \"h\"\nname = \"H\"\n\n[[member]]\nuser_id = \"@a:x.org\"\nhousehold = \"nope\"\n",
    )
    .unwrap();
    let bad_config = dir.path().join("c.toml");
    std::fs::write(&bad_config, "[accounting]\ntariff_per_kwh = -1\n").unwrap();
    let trace = path("traces/steps_10min.csv");
    let log = path("accounting/access.log");
    let members = path("accounting/members.toml");
    let cases: Vec<(Vec<String>, String)> = vec![
        (
            vec![
                trace.clone(),
                "yesterday".into(),
                log.clone(),
                members.clone(),
            ],
            "--start: \"yesterday\"".into(),
        ),
        (
            vec![
                trace.clone(),
                START.into(),
                "/nonexistent/access.log".into(),
                members.clone(),
            ],
            "/nonexistent/access.log: cannot read".into(),
        ),
        (
            vec![
                trace.clone(),
                START.into(),
                log.clone(),
                bad_members.display().to_string(),
            ],
            format!("{}:7: member[1].household", bad_members.display()),
        ),
        (
            vec![
                path("traces/bad/nan.csv"),
                START.into(),
                log.clone(),
                members.clone(),
            ],
            "nan.csv:".into(),
        ),
    ];
    for (args, want) in cases {
        let (code, out, err) = account(&args[0], &args[1], &args[2], &args[3], &[]);
        assert_eq!(code, 1, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(&want), "{err} should contain {want}");
    }
    let (code, _, err) = account(
        &trace,
        START,
        &log,
        &members,
        &["--config", bad_config.to_str().unwrap()],
    );
    assert_eq!(code, 1);
    assert!(err.contains("c.toml:2: accounting.tariff_per_kwh"), "{err}");
}

/// The daemon's path: the trace's minutes written by the meter's batches, access lines fed as
/// journal entries into the aggregator and flushed in batches with them, the statement
/// computed from what the database holds. `account` from the raw files must say the same.
fn daemon_statement(config: &Config, dir: &std::path::Path) -> String {
    let trace = Trace::from_path(&testdata("traces/steps_10min.csv")).unwrap();
    let (_, mut power) = hearth::replay::replay_minutes(trace, config, START_MS).unwrap();
    let mut db = Storage::open(&dir.join("hearth.db")).unwrap();
    let text = std::fs::read_to_string(testdata("accounting/access.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut weights = MinuteWeights::new();
    // Five batches, cut at minute boundaries for power (the meter's flush takes whole minutes
    // here) and anywhere for the access lines (their weights are integers).
    let start_s = START_MS / 1000;
    for (k, chunk) in lines.chunks(lines.len() / 5 + 1).enumerate() {
        for l in chunk {
            let _ = weights.ingest_journal(l, (START_MS as u64 + 1) * 1000);
        }
        let rest = power.split_off(start_s + 120 * (k as i64 + 1));
        let batch = AcctBatch {
            weights: weights.drain_all(),
            ..AcctBatch::default()
        };
        db.write_batch_with(&power, &[], &batch).unwrap();
        power = rest;
    }
    db.write_batch(&power, &[]).unwrap();
    let period = Period::range(start_s, start_s + 600).unwrap();
    let members = MembersFile::new(testdata("accounting/members.toml"));
    let s = statement_of(&db, &period, &members, &config.accounting).unwrap();
    serde_json::to_string(&s.statement).unwrap()
}

#[test]
fn account_and_the_daemon_give_the_same_statement() {
    for base in ["3.0", "\"auto\""] {
        let dir = tempfile::tempdir().unwrap();
        let cfg_path = dir.path().join("c.toml");
        std::fs::write(
            &cfg_path,
            format!("[accounting]\nbase_watts = {base}\ntariff_per_kwh = 0.42\n[[accounting.fixed_cost]]\nname = \"domain\"\namount = 12\nper = \"year\"\n"),
        )
        .unwrap();
        let config = Config::load(&cfg_path).unwrap();
        if base != "\"auto\"" {
            assert_eq!(config.accounting.base_watts, BaseWatts::Fixed(3.0));
        }
        // A fresh database has no minutes before the trace: "auto" falls back to the period
        // in both paths, and the statements say so.
        let daemon = daemon_statement(&config, dir.path());
        let (code, cli, err) = account(
            &path("traces/steps_10min.csv"),
            START,
            &path("accounting/access.log"),
            &path("accounting/members.toml"),
            &["--config", cfg_path.to_str().unwrap()],
        );
        assert_eq!(code, 0, "{err}");
        assert_eq!(cli.trim(), daemon, "base_watts = {base}");
    }
}
