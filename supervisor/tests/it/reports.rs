//! Anonymous reports end to end: three supervisors (processes, simulated sensors) enrolled at a
//! real cooperative on loopback send their monthly report while the collector is down, and the
//! reports arrive once each after it is back; a replayed report changes nothing; the
//! transparency site withholds the month (3 reports, k = 10).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::daemon::{free_port, start, wait_for};

fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hearth-supervisor"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn cooperative(dir: &Path, control: SocketAddr, site: SocketAddr) -> cooperative::Running {
    if !dir.join("coop-ca.pem").exists() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        std::fs::write(dir.join("coop-ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("coop-cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("coop-key.pem"), key.serialize_pem()).unwrap();
        cooperative::collector::keygen(&dir.join("report-key.pem")).unwrap();
    }
    let mut config = cooperative::Config {
        domain: "coop.test".into(),
        database: dir.join("coop.sqlite3"),
        ..Default::default()
    };
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.site.listen = site;
    config.control.listen = control;
    config.control.name = "localhost".into();
    config.control.cert = dir.join("coop-cert.pem");
    config.control.key = dir.join("coop-key.pem");
    config.reports.key = vec![dir.join("report-key.pem")];
    cooperative::start(&config).await.unwrap()
}

fn addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// A box: enrolled as `label`, opted in three months ago (seeded in its real database, as if
/// the family had chosen then), its report of last month due now.
fn a_box(dir: &Path, label: &str, api: &str, token: &str) -> (PathBuf, PathBuf, u16) {
    let d = dir.join(label);
    std::fs::create_dir_all(&d).unwrap();
    let relay = d.join("relay.toml");
    let name = cli(&[
        "tunnel",
        "enrol",
        "--api",
        api,
        "--token",
        token,
        "--label",
        label,
        "--ca",
        dir.join("coop-ca.pem").to_str().unwrap(),
        "--key",
        d.join("tunnel.key").to_str().unwrap(),
        "--config",
        relay.to_str().unwrap(),
    ]);
    assert_eq!(name.trim(), format!("{label}.coop.test"));
    let port = free_port();
    let db = d.join("hearth.db");
    let cfg = d.join("supervisor.toml");
    std::fs::write(
        &cfg,
        format!(
            "[power]\nbackend = \"simulated\"\n\n[storage]\npath = \"{}\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[log]\nlevel = \"warn\"\n\n[health]\nbackend = \"none\"\nsynapse_url = \"http://127.0.0.1:9\"\n\n[led]\nbackend = \"sysfs\"\nsysfs_path = \"/nonexistent/leds/ACT\"\n\n[name]\nrelay_config = \"{}\"\n\n[report]\nenabled = true\nretry_s = 1\ntoken_wait_s = 0\n",
            db.display(),
            relay.display()
        ),
    )
    .unwrap();
    let c = cfg.to_str().unwrap();
    assert_eq!(cli(&["report", "opt-in", "--config", c]), "reports: on\n");
    assert_eq!(
        cli(&["report", "opt-in", "--config", c]),
        "reports: already on\n"
    );
    let now = chrono::Utc::now().timestamp();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute(
        "UPDATE report_setting SET value = ?1 WHERE key = 'report_opt_in'",
        [(now - 90 * 86_400).to_string()],
    )
    .unwrap();
    let month = hearth::report::outbox::month_to_report(now).unwrap();
    conn.execute(
        "INSERT INTO report_schedule (month, due_at) VALUES (?1, ?2)",
        rusqlite::params![month.label(), now - 1],
    )
    .unwrap();
    // The choice is in the audit log, by the CLI.
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM audit_log")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        actions.iter().filter(|a| *a == "report_choice").count(),
        1,
        "{actions:?}"
    );
    (cfg, db, port)
}

#[test]
fn three_boxes_report_while_the_collector_is_down_and_each_report_arrives_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (control, site) = (addr(), addr());
    let coop = rt.block_on(cooperative(dir.path(), control, site));
    let api = format!("https://localhost:{}", control.port());
    let boxes: Vec<_> = ["nord", "sued", "ost"]
        .iter()
        .map(|l| {
            let token = coop.store.issue_token("a family").unwrap();
            a_box(dir.path(), l, &api, &token)
        })
        .collect();
    // The collector goes away; the boxes start and try.
    rt.block_on(coop.stop());
    let daemons: Vec<_> = boxes
        .iter()
        .map(|(cfg, _, port)| start(cfg, *port))
        .collect();
    for (cfg, _, _) in &boxes {
        let c = cfg.to_str().unwrap();
        let status = wait_for("a failed attempt", Duration::from_secs(30), || {
            let s = cli(&["report", "status", "--config", c]);
            s.contains("the collector at").then_some(s)
        });
        assert!(status.contains(": draft, next attempt"), "{status}");
    }
    // Back, with its store: the reports arrive.
    let coop = rt.block_on(cooperative(dir.path(), control, site));
    wait_for("three reports", Duration::from_secs(60), || {
        (coop.store.reports().unwrap().len() == 3).then_some(())
    });
    for (cfg, _, _) in &boxes {
        let c = cfg.to_str().unwrap();
        wait_for("delivered", Duration::from_secs(30), || {
            cli(&["report", "status", "--config", c])
                .contains(": delivered")
                .then_some(())
        });
    }
    // A while later: still three, once each (the ids are distinct).
    std::thread::sleep(Duration::from_secs(3));
    let stored = coop.store.reports().unwrap();
    assert_eq!(stored.len(), 3);
    let mut ids: Vec<_> = stored.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    // A box's exact report, replayed: accepted as already stored, nothing added.
    let json: String = rusqlite::Connection::open(&boxes[0].1)
        .unwrap()
        .query_row("SELECT json FROM report_outbox", [], |r| r.get(0))
        .unwrap();
    drop(daemons);
    let ca = std::fs::read(dir.path().join("coop-ca.pem")).unwrap();
    let status = rt.block_on(async {
        hearth::http_client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .build()
            .unwrap()
            .post(format!("{api}/api/v1/reports"))
            .header("content-type", "application/json")
            .body(json)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);
    assert_eq!(coop.store.reports().unwrap().len(), 3);
    // Three reports are fewer than k = 10: the site shows the month withheld, no figures.
    let (code, body) = crate::daemon::get(site.port(), "/energy?format=json").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(&stored[0].month), "{body}");
    assert!(body.contains("\"withheld\""), "{body}");
    assert!(!body.contains("\"published\""), "{body}");
    rt.block_on(coop.stop());
}
