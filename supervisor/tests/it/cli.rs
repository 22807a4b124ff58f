//! The command line as a family or a script sees it: output, errors, exit codes.

use super::{supervisor, testdata};

#[test]
fn replay_prints_exactly_the_contract_object() {
    let trace = testdata("traces/tiny.csv");
    let (code, out, err) = supervisor(&["replay", "--trace", trace.to_str().unwrap()]);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON object");
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "duration_s",
            "energy_wh",
            "gap_s",
            "mean_w",
            "peak_w",
            "samples"
        ]
    );
    let truth = hearth::power::trace::Trace::from_path(&trace).unwrap();
    let e = obj["energy_wh"].as_f64().unwrap();
    assert!(
        (e - truth.true_energy_wh()).abs() / truth.true_energy_wh() < 0.002,
        "replayed {e} Wh, true {} Wh",
        truth.true_energy_wh()
    );
    assert_eq!(obj["duration_s"].as_f64().unwrap(), truth.duration_s());
    assert_eq!(obj["gap_s"].as_f64().unwrap(), 0.0);
    assert!(obj["samples"].as_u64().unwrap() > 0);
}

#[test]
fn bad_traces_get_one_line_naming_file_and_line() {
    let dir = testdata("traces/bad");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        seen += 1;
        let (code, out, err) = supervisor(&["replay", "--trace", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{}: stdout {out}", path.display());
        assert!(out.is_empty(), "nothing on stdout for a bad trace: {out}");
        let line = err.trim_end();
        assert_eq!(line.lines().count(), 1, "one line: {err:?}");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(line.contains(name), "names the file: {line}");
        assert!(!line.contains("panicked"), "{line}");
    }
    assert!(seen >= 5, "the bad traces are there");
}

#[test]
fn a_missing_trace_is_named() {
    let (code, _, err) = supervisor(&["replay", "--trace", "/nonexistent/trace.csv"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/trace.csv"), "{err}");
}

#[test]
fn bad_config_gets_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("supervisor.toml");
    std::fs::write(&cfg, "[power]\nshunt_ohms = 0.1\nshunt_adc = \"avg1000\"\n").unwrap();
    let trace = testdata("traces/tiny.csv");
    for args in [
        vec![
            "replay",
            "--trace",
            trace.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
        vec!["run", "--config", cfg.to_str().unwrap()],
    ] {
        let (code, _, err) = supervisor(&args);
        assert_eq!(code, 1);
        let want = format!(
            "{}:3: power.shunt_adc: unknown ADC mode \"avg1000\"",
            cfg.display()
        );
        assert!(err.contains(&want), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    }
}

#[test]
fn access_inventory_writes_the_file_the_page_reads_and_names_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("root/.ssh")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/bash\nnot a passwd line\n",
    )
    .unwrap();
    std::fs::write(
        root.join("root/.ssh/authorized_keys"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDLVT0EeCJkMpZPqK2Mklhoc6sQOnWWymsqVzrgT9WSQ laptop\n",
    )
    .unwrap();
    let out = dir.path().join("run/hearth/access.json");
    let (code, _, err) = supervisor(&[
        "access",
        "inventory",
        "--root",
        root.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("access inventory: /etc/passwd:2: 1 fields, expected 7"),
        "{err}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(v["accounts"][0]["name"], "root");
    assert_eq!(
        v["ssh"]["key_files"][0]["keys"][0]["fingerprint"],
        "SHA256:P+nuGDnVFj44TMNZDPCyCVSgdUlnFvOKd7P732SsSec"
    );

    // No /etc/passwd: one line naming it, exit 1, the previous file left as it was.
    let (code, _, err) = supervisor(&[
        "access",
        "inventory",
        "--root",
        dir.path().join("empty").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/etc/passwd: cannot read"), "{err}");
    assert!(std::fs::read_to_string(&out).unwrap().contains("laptop"));
}

#[test]
fn report_preview_prints_the_report_as_it_would_be_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let conf = dir.path().join("supervisor.toml");
    std::fs::write(
        &conf,
        format!(
            "[storage]\npath = {:?}\n[health]\nbackend = \"none\"\nsynapse_url = \"http://127.0.0.1:9\"\n[report]\nenabled = true\nsupplier = \"Stadtwerke Nord\"\n",
            db
        ),
    )
    .unwrap();
    let args = [
        "report",
        "preview",
        "--config",
        conf.to_str().unwrap(),
        "--root",
        dir.path().to_str().unwrap(),
    ];
    let (code, out, err) = supervisor(&args);
    assert_eq!(code, 0, "stderr: {err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON object");
    assert_eq!(v["schema"], "hearth-report/1");
    assert_eq!(v["hardware"], "other", "no device tree under --root");
    assert_eq!(v["members"], "1");
    assert_eq!(v["uptime_share"], 0.0);
    assert_eq!(v["synapse"], "0.0", "Synapse does not answer");
    assert_eq!(v["supplier"], "Stadtwerke Nord");
    assert_eq!(v["epsilon"], 1.0);
    assert!(v.get("token").is_none());
    assert!(err.contains("no token yet"), "{err}");
    assert!(err.contains("not opted in"), "{err}");
    // The month in progress, UTC.
    assert_eq!(
        v["month"],
        chrono::Utc::now().format("%Y-%m").to_string().as_str()
    );
    // With a token it is what a collector accepts: the draft's fields are the report's.
    let mut with_token = v.clone();
    let b64 = |n: usize| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(vec![1u8; n])
    };
    with_token["token"] = serde_json::json!({
        "key_id": "0123456789abcdef", "msg": b64(32), "randomizer": b64(32), "sig": b64(256)
    });
    report_wire_parse(&with_token);
}

fn report_wire_parse(v: &serde_json::Value) {
    let text = v.to_string();
    if let Err(e) = report_wire::parse(text.as_bytes()) {
        panic!("{e}: {text}");
    }
}

#[test]
fn maintenance_from_the_command_line_is_audited_and_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hearth.db");
    let file = dir.path().join("maintenance");
    let config = dir.path().join("supervisor.toml");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[health]\nmaintenance_file = {:?}\n",
            db.display().to_string(),
            file.display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    let (code, out, err) = supervisor(&["maintenance", "on", "--config", cfg]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(out.contains("maintenance on"), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "on\n");
    let (code, out, _) = supervisor(&["maintenance", "status", "--config", cfg]);
    assert_eq!((code, out.trim()), (0, "maintenance on"));
    let (code, _, err) = supervisor(&["maintenance", "off", "--config", cfg]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(!file.exists());
    // Both switches are in the audit log (newest first), by the command line, with the
    // operator's uid.
    let conn = hearth::storage::open_connection(&db).unwrap();
    let all =
        hearth::audit::entries_visible_to(&conn, &hearth::audit::Viewer::ServerAdmin, 100, None)
            .unwrap();
    let switches: Vec<_> = all
        .iter()
        .filter(|e| e.action == hearth::audit::Action::Maintenance)
        .map(|e| {
            (
                e.actor.clone(),
                e.detail["on"].clone(),
                e.detail["os_uid"].is_u64(),
            )
        })
        .collect();
    assert_eq!(
        switches,
        [
            (hearth::audit::Actor::Cli, serde_json::json!(false), true),
            (hearth::audit::Actor::Cli, serde_json::json!(true), true)
        ]
    );
    // A switch file that cannot be written: one line naming it, a non-zero exit, no panic.
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[health]\nmaintenance_file = {:?}\n",
            db.display().to_string(),
            dir.path().join("gone/maintenance").display().to_string()
        ),
    )
    .unwrap();
    let (code, _, err) = supervisor(&["maintenance", "on", "--config", cfg]);
    assert_ne!(code, 0);
    assert!(err.contains("gone/maintenance: cannot write"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// Root runs the command line on the box (the only SSH login), but hearth.db is user hearth's.
/// A command works as the database's owner: every file it leaves is the owner's (a root-owned
/// database, -wal or -shm would lock the daemon out), and the audit log still names root.
#[test]
fn root_at_the_command_line_leaves_every_file_to_the_databases_owner() {
    use std::os::unix::fs::MetadataExt;
    assert!(
        rustix::process::geteuid().is_root(),
        "make test runs as root (as CI does): this is root's command line"
    );
    const NOBODY: u32 = 65534;
    let data = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(data.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let etc = tempfile::tempdir().unwrap();
    let config = etc.path().join("supervisor.toml");
    let db = data.path().join("hearth.db");
    std::fs::write(
        &config,
        format!(
            "[storage]\npath = {:?}\n[health]\nmaintenance_file = {:?}\n",
            db.display().to_string(),
            data.path().join("maintenance").display().to_string()
        ),
    )
    .unwrap();
    let cfg = config.to_str().unwrap();
    for args in [
        &[
            "household",
            "add",
            "mueller",
            "Familie Müller",
            "--config",
            cfg,
        ][..],
        &["maintenance", "on", "--config", cfg],
        &["report", "opt-in", "--config", cfg],
        &["household", "list", "--config", cfg],
        &["audit", "verify", "--config", cfg],
    ] {
        let (code, _, err) = supervisor(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    }
    let files: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.file_name().into_string().unwrap(), m.uid(), m.gid())
        })
        .collect();
    assert!(files.iter().any(|f| f.0 == "hearth.db"), "{files:?}");
    assert!(files.iter().any(|f| f.0 == "maintenance"), "{files:?}");
    for (name, uid, gid) in &files {
        assert_eq!((*uid, *gid), (NOBODY, NOBODY), "{name} is not the owner's");
    }
    let conn = hearth::storage::open_connection(&db).unwrap();
    let all =
        hearth::audit::entries_visible_to(&conn, &hearth::audit::Viewer::ServerAdmin, 100, None)
            .unwrap();
    let uids: Vec<_> = all
        .iter()
        .filter(|e| e.actor == hearth::audit::Actor::Cli)
        .map(|e| e.detail["os_uid"].clone())
        .collect();
    assert_eq!(uids.len(), 3, "{all:?}");
    assert!(uids.iter().all(|u| u == 0), "root ran them: {uids:?}");
}
