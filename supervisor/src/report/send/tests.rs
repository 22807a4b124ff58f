//! The sender against the cooperative's real collector, in-process on loopback: enrolment,
//! tokens, the outbox's retries while the collector is down, a lost answer, the wait after a
//! token request, a box without a name.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::storage::Storage;

/// The cooperative: control listener (API) on `control`, its CA in `dir/coop-ca.pem`, a token key.
async fn cooperative(dir: &Path, control: SocketAddr) -> cooperative::Running {
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
    config.site.listen = "127.0.0.1:0".parse().unwrap();
    config.control.listen = control;
    config.control.name = "localhost".into();
    config.control.cert = dir.join("coop-cert.pem");
    config.control.key = dir.join("coop-key.pem");
    config.reports.key = vec![dir.join("report-key.pem")];
    cooperative::start(&config).await.unwrap()
}

/// A port the cooperative binds itself (no race with other tests for a port picked earlier);
/// the box finds it in `Running::control`.
fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A port picked now and bound later: only for the test whose cooperative must come back on
/// the same address after a stop.
fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn unix_now() -> i64 {
    super::unix_now()
}

struct Appliance {
    sender: Sender,
    storage: Arc<Mutex<Storage>>,
}

/// A box that opted in long ago, whose report of last month is due now; enrolled as `label`
/// unless `label` is `None`.
async fn a_box(
    dir: &Path,
    coop: &cooperative::Running,
    label: Option<&str>,
    wait_s: i64,
) -> Appliance {
    let db = dir.join(format!("{}-hearth.db", label.unwrap_or("nameless")));
    let relay = dir.join(format!("{}-relay.toml", label.unwrap_or("nameless")));
    if let Some(label) = label {
        let token = coop.store.issue_token("a family").unwrap();
        crate::tunnel::enrol(
            &format!("https://localhost:{}", coop.control.port()),
            &token,
            label,
            Some(&dir.join("coop-ca.pem")),
            &dir.join(format!("{label}.key")),
            &relay,
        )
        .await
        .unwrap();
    }
    let storage = Storage::open(&db).unwrap();
    let now = unix_now();
    outbox::set_opt_in(storage.connection(), true, now - 90 * 86_400).unwrap();
    let month = outbox::month_to_report(now).unwrap();
    // The schedule's draw is stored the first time the month is looked at: here, "now".
    storage
        .connection()
        .execute(
            "INSERT INTO report_schedule (month, due_at) VALUES (?1, ?2)",
            rusqlite::params![month.label(), now - 1],
        )
        .unwrap();
    let storage = Arc::new(Mutex::new(storage));
    Appliance {
        sender: Sender {
            storage: storage.clone(),
            config: crate::config::ReportConfig {
                enabled: true,
                epsilon: 1.0,
                supplier: Some("Elektrizitätswerke Schönau".into()),
                token_wait_s: wait_s,
                retry_s: 2,
            },
            relay_config: relay,
            // Nothing listens there: Synapse's version is unknown.
            synapse_url: "http://127.0.0.1:9".into(),
            root: dir.join("no-device-tree"),
        },
        storage,
    }
}

impl Appliance {
    async fn pass(&self, now: i64) -> Duration {
        self.sender.pass(now, &mut os_uniform).await.unwrap()
    }
    fn rows(&self) -> Vec<outbox::Row> {
        outbox::all(self.storage.lock().unwrap().connection()).unwrap()
    }
    fn unused(&self) -> usize {
        outbox::unused_tokens_any(self.storage.lock().unwrap().connection()).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_report_is_made_signed_blind_and_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let coop = cooperative(dir.path(), any_port()).await;
    let b = a_box(dir.path(), &coop, Some("nord"), 0).await;
    let now = unix_now();
    b.pass(now).await;
    let rows = b.rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].state, "delivered", "{rows:?}");
    let stored = coop.store.reports().unwrap();
    assert_eq!(stored.len(), 1);
    let sent = report_wire::parse(rows[0].json.as_bytes()).unwrap();
    assert_eq!(stored[0].id, sent.id);
    assert_eq!(stored[0].month, rows[0].month);
    assert_eq!(stored[0].energy_kwh, sent.energy_kwh);
    assert_eq!(
        stored[0].supplier.as_deref(),
        Some("Elektrizitätswerke Schönau")
    );
    assert_eq!(stored[0].synapse, "0.0", "Synapse did not answer");
    // Nothing in the collector's record names the box.
    let record = format!("{:?}", stored[0]);
    assert!(!record.contains("nord"), "{record}");
    // The stock: three fetched, one spent.
    assert_eq!(b.unused(), STOCK - 1);
    // Later passes send nothing more.
    b.pass(now + 60).await;
    b.pass(now + 86_400).await;
    assert_eq!(coop.store.reports().unwrap().len(), 1);
    coop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_collector_is_down_the_report_waits_and_arrives_once_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let control = free_addr();
    let coop = cooperative(dir.path(), control).await;
    let b = a_box(dir.path(), &coop, Some("sued"), 0).await;
    // Tokens first (a regular refill happens mid-month; here: by hand through the same path).
    let now = unix_now();
    coop.stop().await;
    let sleep = b.pass(now).await;
    let row = &b.rows()[0];
    assert_ne!(row.state, "delivered");
    assert_eq!(row.attempts, 1);
    assert!(
        row.last_error.as_deref().unwrap().contains("the collector"),
        "{row:?}"
    );
    assert_eq!(row.next_attempt_at, now + 2, "retry_s");
    assert!(sleep <= Duration::from_secs(2), "{sleep:?}");
    // Still down: the wait doubles.
    b.pass(now + 2).await;
    let row = &b.rows()[0];
    assert_eq!((row.attempts, row.next_attempt_at), (2, now + 2 + 4));
    // Not yet due: a pass does nothing.
    b.pass(now + 3).await;
    assert_eq!(b.rows()[0].attempts, 2);
    // The collector is back (same store, same port); the report arrives, once.
    let coop = cooperative(dir.path(), control).await;
    b.pass(now + 6).await;
    let row = &b.rows()[0];
    assert_eq!(row.state, "delivered", "{row:?}");
    assert_eq!(row.last_error, None);
    b.pass(now + 600).await;
    assert_eq!(coop.store.reports().unwrap().len(), 1);
    coop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_answer_was_lost_is_sent_again_and_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let coop = cooperative(dir.path(), any_port()).await;
    let b = a_box(dir.path(), &coop, Some("ost"), 0).await;
    let now = unix_now();
    b.pass(now).await;
    assert_eq!(coop.store.reports().unwrap().len(), 1);
    // The box died between the collector's 200 and its own bookkeeping: the row is still
    // "ready" with the same bytes.
    b.storage
        .lock()
        .unwrap()
        .connection()
        .execute(
            "UPDATE report_outbox SET state = 'ready', delivered_at = NULL",
            [],
        )
        .unwrap();
    b.pass(now + 10).await;
    assert_eq!(b.rows()[0].state, "delivered");
    assert_eq!(
        coop.store.reports().unwrap().len(),
        1,
        "the same report, once"
    );
    coop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_that_had_to_fetch_its_token_waits_before_it_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let coop = cooperative(dir.path(), any_port()).await;
    let wait = 86_400;
    let b = a_box(dir.path(), &coop, Some("west"), wait).await;
    let now = unix_now();
    // The month's token refill is due in the same pass (its offset into the month drawn as 0):
    // the draft must not take one of the tokens fetched a moment ago either.
    outbox::set_setting(
        b.storage.lock().unwrap().connection(),
        "token_refill_offset",
        "0",
    )
    .unwrap();
    b.pass(now).await;
    let row = &b.rows()[0];
    assert_eq!(row.state, "draft", "no token attached yet");
    assert_eq!(row.attempts, 0, "waiting is not a failure");
    assert!(
        (now + wait..=now + 3 * wait).contains(&row.next_attempt_at),
        "{} not within [{}, {}]",
        row.next_attempt_at,
        now + wait,
        now + 3 * wait
    );
    assert_eq!(b.unused(), STOCK, "the tokens are fetched");
    assert!(coop.store.reports().unwrap().is_empty());
    // Its time comes: sent with a token fetched long before.
    let at = row.next_attempt_at;
    b.pass(at - 1).await;
    assert!(coop.store.reports().unwrap().is_empty());
    b.pass(at).await;
    assert_eq!(b.rows()[0].state, "delivered");
    assert_eq!(coop.store.reports().unwrap().len(), 1);
    coop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_without_a_name_at_the_cooperative_makes_its_report_and_says_why_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let coop = cooperative(dir.path(), any_port()).await;
    let b = a_box(dir.path(), &coop, None, 0).await;
    let now = unix_now();
    b.pass(now).await;
    let row = &b.rows()[0];
    assert_eq!(row.state, "draft");
    assert!(
        row.last_error
            .as_deref()
            .unwrap()
            .contains("no name under the cooperative's domain"),
        "{row:?}"
    );
    assert!(coop.store.reports().unwrap().is_empty());
    coop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_made_or_sent_without_the_opt_in_or_when_reports_are_off() {
    let dir = tempfile::tempdir().unwrap();
    let coop = cooperative(dir.path(), any_port()).await;
    let mut b = a_box(dir.path(), &coop, Some("nord"), 0).await;
    outbox::set_opt_in(b.storage.lock().unwrap().connection(), false, 0).unwrap();
    assert_eq!(b.pass(unix_now()).await, IDLE);
    assert!(b.rows().is_empty());
    outbox::set_opt_in(b.storage.lock().unwrap().connection(), true, 0).unwrap();
    b.sender.config.enabled = false;
    b.pass(unix_now()).await;
    assert!(b.rows().is_empty());
    assert_eq!(b.unused(), 0, "no token requested either");
    coop.stop().await;
}
