//! The backup store (issue 16): each enrolment makes the box's own account in the REST
//! server's htpasswd file and answers with it; then the real restic REST server (Debian's
//! restic-rest-server from `scripts/backup-tools`, run as the cooperative runs it:
//! `--private-repos --append-only --htpasswd-file`) and the real restic show what that
//! account can do: its own repository, nothing of another box's, no deletion, no wrong
//! password.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cooperative::api::EnrolAnswer;
use cooperative::backup_store::StoreAccount;
use cooperative::config::StoreConfig;
use cooperative::Config;
use hearth_tunnel::key::BoxKey;
use hearth_tunnel::proto;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DOMAIN: &str = "coop.test";
const CONTROL: &str = "relay.coop.test";

struct Coop {
    _dir: tempfile::TempDir,
    ca: CertificateDer<'static>,
    running: cooperative::Running,
}

async fn coop(store: Option<StoreConfig>) -> Coop {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![CONTROL.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    let mut config = Config {
        domain: DOMAIN.into(),
        database: dir.path().join("coop.sqlite3"),
        store,
        ..Config::default()
    };
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.control.listen = "127.0.0.1:0".parse().unwrap();
    config.site.listen = "127.0.0.1:0".parse().unwrap();
    config.control.name = CONTROL.into();
    config.control.cert = dir.path().join("cert.pem");
    config.control.key = dir.path().join("key.pem");
    let running = cooperative::start(&config).await.unwrap();
    Coop {
        _dir: dir,
        ca: CertificateDer::from(ca.der().to_vec()),
        running,
    }
}

impl Coop {
    /// POST /api/v1/enrol over TLS to the control listener: status and body.
    async fn enrol(&self, token: &str, label: &str, key: &BoxKey) -> (u16, String) {
        let body = serde_json::json!({"token": token, "label": label, "public_key": proto::encode(key.public())}).to_string();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let tcp = TcpStream::connect(self.running.control).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(ServerName::try_from(CONTROL).unwrap(), tcp)
            .await
            .unwrap();
        let req = format!(
            "POST /api/v1/enrol HTTP/1.1\r\nHost: {CONTROL}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
    }

    /// A new token, enrolled as `label` with `key`: the store account the answer carries.
    async fn enrolled(&self, label: &str, key: &BoxKey) -> StoreAccount {
        let token = self.running.store.issue_token(label).unwrap();
        let (status, body) = self.enrol(&token, label, key).await;
        assert_eq!(status, 200, "{body}");
        let answer: EnrolAnswer = serde_json::from_str(&body).unwrap();
        assert_eq!(answer.name, format!("{label}.{DOMAIN}"));
        answer.store.unwrap()
    }
}

/// The htpasswd file's lines: user → hash.
fn lines(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let (u, h) = l.split_once(':').unwrap();
            (u.to_owned(), h.to_owned())
        })
        .collect()
}

fn hash_of(path: &Path, user: &str) -> String {
    let l = lines(path);
    let mut of = l.iter().filter(|(u, _)| u == user);
    let (_, hash) = of
        .next()
        .unwrap_or_else(|| panic!("no line for {user}: {l:?}"));
    assert!(of.next().is_none(), "two lines for {user}: {l:?}");
    hash.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolment_answers_with_the_boxs_own_store_account_and_enrolling_again_renews_it() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let c = coop(Some(StoreConfig {
        url: "https://backup.coop.test/".into(),
        htpasswd: htpasswd.clone(),
    }))
    .await;
    assert_eq!(
        std::fs::read_to_string(&htpasswd).unwrap(),
        "",
        "made at start"
    );

    // The answer carries the store, exactly so; the file only the password's bcrypt hash.
    let nord_key = BoxKey::generate().unwrap().0;
    let token = c.running.store.issue_token("Familie Nord").unwrap();
    let (status, body) = c.enrol(&token, "nord", &nord_key).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let password = v["store"]["password"].as_str().unwrap().to_owned();
    assert_eq!(
        v,
        serde_json::json!({
            "name": "nord.coop.test",
            "tunnel": format!("{CONTROL}:{}", c.running.control.port()),
            "store": {"repository": "rest:https://backup.coop.test/nord/", "user": "nord", "password": password},
        })
    );
    assert!(password.len() >= 32, "192 random bits: {password}");
    let hash = hash_of(&htpasswd, "nord");
    assert!(hash.starts_with("$2b$"), "{hash}");
    assert!(bcrypt::verify(&password, &hash).unwrap());
    assert!(!std::fs::read_to_string(&htpasswd)
        .unwrap()
        .contains(&password));

    // A second box: its own line, its own password; nord's line as it was.
    let sued = c.enrolled("sued", &BoxKey::generate().unwrap().0).await;
    assert_eq!(sued.user, "sued");
    assert_eq!(sued.repository, "rest:https://backup.coop.test/sued/");
    assert_ne!(sued.password, password);
    assert_eq!(lines(&htpasswd).len(), 2);
    assert_eq!(hash_of(&htpasswd, "nord"), hash);
    assert!(bcrypt::verify(&sued.password, &hash_of(&htpasswd, "sued")).unwrap());

    // The same enrolment again (a retry), then a new code for the same box: each time a new
    // password, the old one gone, still one line for nord.
    let (status, body) = c.enrol(&token, "nord", &nord_key).await;
    assert_eq!(status, 200, "{body}");
    let again: EnrolAnswer = serde_json::from_str(&body).unwrap();
    let again = again.store.unwrap();
    assert_ne!(again.password, password);
    let renewed = c.enrolled("nord", &nord_key).await;
    assert_ne!(renewed.password, again.password);
    let hash = hash_of(&htpasswd, "nord");
    assert!(bcrypt::verify(&renewed.password, &hash).unwrap());
    assert!(!bcrypt::verify(&password, &hash).unwrap());
    assert!(!bcrypt::verify(&again.password, &hash).unwrap());
    assert_eq!(lines(&htpasswd).len(), 2);

    // Another box asking for nord's name is refused and changes no account.
    let before = std::fs::read_to_string(&htpasswd).unwrap();
    let token = c.running.store.issue_token("x").unwrap();
    let (status, body) = c
        .enrol(&token, "nord", &BoxKey::generate().unwrap().0)
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains("store"), "{body}");
    assert_eq!(std::fs::read_to_string(&htpasswd).unwrap(), before);
    c.running.stop().await;

    // A cooperative without a store: no `store` in the answer, which still reads.
    let c = coop(None).await;
    let token = c.running.store.issue_token("x").unwrap();
    let (status, body) = c
        .enrol(&token, "west", &BoxKey::generate().unwrap().0)
        .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(v.get("store").is_none(), "{body}");
    let answer: EnrolAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(answer.store, None);
    c.running.stop().await;
}

/// `var/tools/bin/<name>`, put there by scripts/backup-tools.
fn tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../var/tools/bin")
        .join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/backup-tools (make test-deps does) to install restic and \
         restic-rest-server",
        path.display()
    );
    path
}

/// The REST server as the cooperative runs it, on a port of its own on loopback; its log
/// lines arrive on `log`.
struct RestServer {
    child: Child,
    port: u16,
    log: mpsc::Receiver<String>,
}

impl RestServer {
    fn start(data: &Path, htpasswd: &Path) -> RestServer {
        let mut child = Command::new(tool("restic-rest-server"))
            .args(["--listen", "127.0.0.1:0", "--path"])
            .arg(data)
            .args(["--private-repos", "--append-only", "--htpasswd-file"])
            .arg(htpasswd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = RestServer {
            child,
            port: 0,
            log,
        };
        let line = server.wait_log("start server on");
        server.port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        server
    }

    fn wait_log(&mut self, what: &str) -> String {
        loop {
            match self.log.recv_timeout(Duration::from_secs(20)) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("the REST server never logged {what:?}: {e}"),
            }
        }
    }

    /// SIGHUP: the REST server rereads the htpasswd file at once (it also does by itself,
    /// within 30 s of a change, on the next request).
    fn reload(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
        self.wait_log("Reloaded htpasswd file");
    }

    /// A plain HTTP request with basic authentication: the status code.
    fn status(&self, method: &str, path: &str, user: &str, password: &str) -> u16 {
        use base64::Engine;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\n\
             Accept: application/vnd.x.restic.rest.v2\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        std::str::from_utf8(&out[9..12]).unwrap().parse().unwrap()
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// restic on `repository` with the store's `user` and `password` and the family's `key`.
fn restic(
    repository: &str,
    user: &str,
    password: &str,
    key: &str,
    args: &[&str],
) -> (bool, String) {
    let out = Command::new(tool("restic"))
        .args(["--no-cache", "--retry-lock", "0s", "-r", repository])
        .args(args)
        .env("RESTIC_PASSWORD", key)
        .env("RESTIC_REST_USERNAME", user)
        .env("RESTIC_REST_PASSWORD", password)
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_backs_up_into_its_own_repository_and_can_neither_reach_another_nor_delete() {
    let (restic_bin, _) = (tool("restic"), tool("restic-rest-server"));
    assert!(restic_bin.exists());
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "").unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    let mut server = RestServer::start(&dir.path().join("data"), &htpasswd);
    let base = format!("http://127.0.0.1:{}/", server.port);
    let c = coop(Some(StoreConfig {
        url: base.clone(),
        htpasswd: htpasswd.clone(),
    }))
    .await;
    let nord_key = BoxKey::generate().unwrap().0;
    let a = c.enrolled("nord", &nord_key).await;
    let b = c.enrolled("sued", &BoxKey::generate().unwrap().0).await;
    assert_eq!(a.repository, format!("rest:{base}nord/"));
    server.reload();

    // A makes its repository and backs up into it, with its family's key.
    let files = dir.path().join("files");
    std::fs::create_dir(&files).unwrap();
    std::fs::write(files.join("photo.jpg"), b"the family's picture").unwrap();
    let files = files.to_str().unwrap();
    let (ok, out) = restic(&a.repository, &a.user, &a.password, "key A", &["init"]);
    assert!(ok, "{out}");
    let (ok, out) = restic(
        &a.repository,
        &a.user,
        &a.password,
        "key A",
        &["backup", files],
    );
    assert!(ok, "{out}");
    let (ok, out) = restic(
        &a.repository,
        &a.user,
        &a.password,
        "key A",
        &["snapshots", "--json"],
    );
    assert!(ok, "{out}");
    let snapshots: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(snapshots.len(), 1, "{out}");
    let id = snapshots[0]["id"].as_str().unwrap().to_owned();
    let (ok, out) = restic(&b.repository, &b.user, &b.password, "key B", &["init"]);
    assert!(ok, "{out}");

    // A cannot list or read B's repository, even knowing B's family key.
    for args in [&["snapshots"][..], &["cat", "config"][..]] {
        let (ok, out) = restic(&b.repository, &a.user, &a.password, "key B", args);
        assert!(!ok, "A reached B's repository: {out}");
    }
    assert_eq!(
        server.status("GET", "/nord/config", &a.user, &a.password),
        200
    );
    for path in ["/sued/config", "/sued/keys/", "/sued/snapshots/", "/"] {
        assert_eq!(
            server.status("GET", path, &a.user, &a.password),
            401,
            "{path}"
        );
    }

    // A cannot delete its history: forget --prune is refused, the snapshot stays.
    let (ok, out) = restic(
        &a.repository,
        &a.user,
        &a.password,
        "key A",
        &["forget", "--prune", &id],
    );
    assert!(!ok, "forget --prune went through: {out}");
    assert_eq!(
        server.status(
            "DELETE",
            &format!("/nord/snapshots/{id}"),
            &a.user,
            &a.password
        ),
        403
    );
    let (ok, out) = restic(
        &a.repository,
        &a.user,
        &a.password,
        "key A",
        &["snapshots", "--json"],
    );
    assert!(ok, "{out}");
    assert!(out.contains(&id), "{out}");

    // A wrong password is refused.
    let (ok, out) = restic(
        &a.repository,
        &a.user,
        "not-the-password",
        "key A",
        &["snapshots"],
    );
    assert!(!ok, "{out}");
    assert_eq!(
        server.status("GET", "/nord/config", &a.user, "not-the-password"),
        401
    );

    // Enrolled again, A's old password stops working and the new one opens its history.
    let renewed = c.enrolled("nord", &nord_key).await;
    server.reload();
    assert_eq!(
        server.status("GET", "/nord/config", &a.user, &a.password),
        401
    );
    let (ok, out) = restic(
        &renewed.repository,
        &renewed.user,
        &renewed.password,
        "key A",
        &["snapshots", "--json"],
    );
    assert!(ok, "{out}");
    assert!(out.contains(&id), "{out}");
    c.running.stop().await;
}
