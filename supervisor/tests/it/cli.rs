//! The command line as a family or a script sees it: output, errors, exit codes.

use super::testdata;
use std::process::Command;

fn supervisor(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(args)
        .output()
        .expect("run hearth-supervisor");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

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
