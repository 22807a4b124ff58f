//! The relay end to end on loopback: the cooperative's edge and control listener, a box's
//! tunnel client (hearth-tunnel), the box's TLS listener behind it with a certificate only the
//! box holds, and a phone. Real TLS everywhere, a real SQLite name table; and two edges sharing
//! one real PostgreSQL (`pg`: a server of the test's own on a Unix socket).
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

mod pg;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use cooperative::api::EnrolAnswer;
use cooperative::Config;
use hearth_tunnel::client::{self, Status};
use hearth_tunnel::key::BoxKey;
use hearth_tunnel::proto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const DOMAIN: &str = "coop.test";
const CONTROL: &str = "relay.coop.test";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A CA and a certificate for `name` from it: (CA DER, cert PEM, key PEM, cert DER, key DER).
struct Issued {
    ca: CertificateDer<'static>,
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

fn issue(name: &str) -> Issued {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Issued {
        ca: CertificateDer::from(ca.der().to_vec()),
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        cert: cert.der().clone(),
        key: key.serialize_der(),
    }
}

fn client_tls(ca: &CertificateDer<'static>, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(c)
}

struct Coop {
    _dir: tempfile::TempDir,
    config: Config,
    control_ca: CertificateDer<'static>,
    running: Option<cooperative::Running>,
}

async fn coop() -> Coop {
    coop_with(|_| {}).await
}

async fn coop_with(adjust: impl FnOnce(&mut Config)) -> Coop {
    let dir = tempfile::tempdir().unwrap();
    let issued = issue(CONTROL);
    std::fs::write(dir.path().join("cert.pem"), &issued.cert_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &issued.key_pem).unwrap();
    let mut config = Config {
        domain: DOMAIN.into(),
        database: dir.path().join("coop.sqlite3"),
        ..Config::default()
    };
    config.edge.https_listen = "127.0.0.1:0".parse().unwrap();
    config.edge.http_listen = "127.0.0.1:0".parse().unwrap();
    config.control.listen = "127.0.0.1:0".parse().unwrap();
    config.site.listen = "127.0.0.1:0".parse().unwrap();
    config.control.name = CONTROL.into();
    config.control.cert = dir.path().join("cert.pem");
    config.control.key = dir.path().join("key.pem");
    config.control.idle_timeout_s = 5;
    adjust(&mut config);
    let running = cooperative::start(&config).await.unwrap();
    // Later starts (an edge restart) keep these ports.
    config.edge.https_listen = running.https;
    config.edge.http_listen = running.http;
    config.control.listen = running.control;
    config.site.listen = running.site;
    Coop {
        _dir: dir,
        config,
        control_ca: issued.ca,
        running: Some(running),
    }
}

impl Coop {
    fn running(&self) -> &cooperative::Running {
        self.running.as_ref().unwrap()
    }

    /// POST /api/v1/enrol over TLS to the control listener (ALPN http/1.1): status and body.
    async fn enrol(&self, token: &str, label: &str, key: &BoxKey) -> (u16, String) {
        let body = serde_json::json!({"token": token, "label": label, "public_key": proto::encode(key.public())}).to_string();
        self.post("/api/v1/enrol", &body).await
    }

    /// POST /api/v1/check for `name`, signed by `key`.
    async fn check(&self, name: &str, key: &BoxKey) -> (u16, String) {
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let sig = proto::encode(key.sign(&cooperative::check::transcript(name, at)));
        let body = serde_json::json!({"name": name, "at": at, "sig": sig}).to_string();
        self.post("/api/v1/check", &body).await
    }

    async fn post(&self, path: &str, body: &str) -> (u16, String) {
        let tcp = TcpStream::connect(self.running().control).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(client_tls(&self.control_ca, b"http/1.1"))
            .connect(ServerName::try_from(CONTROL).unwrap(), tcp)
            .await
            .unwrap();
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {CONTROL}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        let status = out[9..12].parse().unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }
}

/// The box's nginx stand-in: reads the PROXY v2 header, then terminates TLS for the box's name
/// with the box's own certificate and answers with the client address the header carried.
async fn box_listener(issued: &Issued) -> SocketAddr {
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![issued.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key.clone())),
        )
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let client = read_proxy_header(&mut s).await;
                let mut tls = acceptor.accept(s).await.unwrap();
                let mut req = [0u8; 1024];
                let n = tls.read(&mut req).await.unwrap();
                let line = String::from_utf8_lossy(&req[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                tls.write_all(format!("box saw {client} ask {line}\n").as_bytes())
                    .await
                    .unwrap();
                tls.shutdown().await.unwrap();
            });
        }
    });
    addr
}

/// Reads exactly one PROXY v2 header (16 bytes, then its length) and says whose it is.
async fn read_proxy_header(s: &mut TcpStream) -> String {
    let mut head = [0u8; 16];
    s.read_exact(&mut head).await.unwrap();
    let len = u16::from_be_bytes([head[14], head[15]]) as usize;
    let mut rest = vec![0u8; len];
    s.read_exact(&mut rest).await.unwrap();
    let whole = [head.to_vec(), rest].concat();
    match ppp::v2::Header::try_from(&whole[..]).unwrap().addresses {
        ppp::v2::Addresses::IPv4(a) => format!("{}:{}", a.source_address, a.source_port),
        other => format!("{other:?}"),
    }
}

/// The box's plain-HTTP listener stand-in: the PROXY header, then the request's first line.
async fn box_http_listener() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let client = read_proxy_header(&mut s).await;
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).await.unwrap();
                let line = String::from_utf8_lossy(&req[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                let body = format!("box saw {client} ask {line}\n");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            });
        }
    });
    addr
}

fn start_box(
    coop: &Coop,
    name: &str,
    key: BoxKey,
    https: SocketAddr,
    http: SocketAddr,
) -> (watch::Receiver<Status>, CancellationToken) {
    let cfg = client::Config {
        edge: coop.running().control.to_string(),
        tls_name: ServerName::try_from(CONTROL).unwrap(),
        name: name.into(),
        https_target: https,
        http_target: http,
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(1000),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(300),
    };
    let (tx, rx) = watch::channel(Status::Starting);
    let cancel = CancellationToken::new();
    tokio::spawn(client::run(
        cfg,
        Arc::new(key),
        client_tls(&coop.control_ca, proto::ALPN),
        tx,
        cancel.clone(),
    ));
    (rx, cancel)
}

/// The box says "connected" once it has the edge's yes; the edge registers the tunnel right
/// after sending it: wait for that too before a phone dials.
async fn wait_registered(running: &cooperative::Running, name: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while running.registry.get(name).is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the edge never registered {name}'s tunnel"));
}

async fn wait_for(status: &mut watch::Receiver<Status>, f: impl Fn(&Status) -> bool) -> Status {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = status.borrow_and_update().clone();
            if f(&s) {
                return s;
            }
            status.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the tunnel's state stayed {:?}", status.borrow()))
}

/// A phone: TLS to the edge's 443 for `name`, verifying against the box's CA only.
async fn phone(
    edge: SocketAddr,
    name: &str,
    box_ca: &CertificateDer<'static>,
) -> Result<(String, SocketAddr), String> {
    let tcp = TcpStream::connect(edge).await.map_err(|e| e.to_string())?;
    let me = tcp.local_addr().unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_tls(box_ca, b"http/1.1"))
        .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(
        format!("GET /_matrix/client/versions HTTP/1.1\r\nHost: {name}\r\n\r\n").as_bytes(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    tls.read_to_string(&mut out)
        .await
        .map_err(|e| e.to_string())?;
    Ok((out, me))
}

async fn enrolled_box(
    coop: &Coop,
    label: &str,
) -> (Issued, watch::Receiver<Status>, CancellationToken) {
    let name = format!("{label}.{DOMAIN}");
    let key = BoxKey::generate().unwrap().0;
    let token = coop.running().store.issue_token(label).unwrap();
    let (status, body) = coop.enrol(&token, label, &key).await;
    assert_eq!(status, 200, "{body}");
    let answer: EnrolAnswer = serde_json::from_str(&body).unwrap();
    assert_eq!(answer.name, name);
    assert_eq!(
        answer.tunnel,
        format!("{CONTROL}:{}", coop.running().control.port())
    );
    let issued = issue(&name);
    let (https, http) = (box_listener(&issued).await, box_http_listener().await);
    let (mut st, cancel) = start_box(coop, &name, key, https, http);
    wait_for(&mut st, |s| matches!(s, Status::Connected { .. })).await;
    wait_registered(coop.running(), &name).await;
    (issued, st, cancel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_reaches_an_enrolled_box_by_name_with_the_boxs_own_certificate_and_its_address_arrives(
) {
    let c = coop().await;
    let (nord, _st, _cancel) = enrolled_box(&c, "nord").await;
    let (sued, _st2, _cancel2) = enrolled_box(&c, "sued").await;
    let (answer, me) = phone(c.running().https, "nord.coop.test", &nord.ca)
        .await
        .unwrap();
    assert_eq!(
        answer,
        format!("box saw {me} ask GET /_matrix/client/versions HTTP/1.1\n")
    );
    // Each name goes to its own box: sued's certificate for sued.
    let (answer, _) = phone(c.running().https, "sued.coop.test", &sued.ca)
        .await
        .unwrap();
    assert!(answer.starts_with("box saw 127.0.0.1:"), "{answer}");
    // The edge holds no key that could impersonate a box: a phone trusting only the
    // cooperative's CA cannot complete a handshake for a box's name.
    assert!(phone(c.running().https, "nord.coop.test", &c.control_ca)
        .await
        .is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_goes_to_the_box_by_host_and_unknown_names_get_a_clear_no() {
    let c = coop().await;
    let (_nord, _st, _cancel) = enrolled_box(&c, "nord").await;
    let mut s = TcpStream::connect(c.running().http).await.unwrap();
    let me = s.local_addr().unwrap();
    s.write_all(b"GET /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: nord.coop.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(
        out.ends_with(&format!(
            "box saw {me} ask GET /.well-known/acme-challenge/abc HTTP/1.1\n"
        )),
        "{out}"
    );

    let mut s = TcpStream::connect(c.running().http).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: nobody.coop.test\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert!(
        out.starts_with("HTTP/1.1 404") && out.contains("No hearth box"),
        "{out}"
    );

    // TLS for a name without a tunnel: the alert unrecognized_name, the phone says so.
    let err = phone(c.running().https, "nobody.coop.test", &c.control_ca)
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("unrecognizedname")
            || err.contains("UnrecognisedName")
            || err.contains("unrecognised"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_cannot_be_claimed_twice_and_an_unenrolled_box_gets_no_tunnel() {
    let c = coop().await;
    let (_nord, _st, _cancel) = enrolled_box(&c, "nord").await;
    let thief = BoxKey::generate().unwrap().0;
    let token = c.running().store.issue_token("thief").unwrap();
    let (status, body) = c.enrol(&token, "nord", &thief).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("belongs to another box"), "{body}");
    assert_eq!(
        c.enrol("AAAA-BBBB-CCCC-DDDD-EEEE", "west", &thief).await.0,
        403
    );
    assert_eq!(c.enrol(&token, "Not_A_Label", &thief).await.0, 400);
    assert_eq!(c.enrol(&token, "relay", &thief).await.0, 409);

    // The thief dials with nord's name anyway: refused, and nord keeps its tunnel.
    let (h, p) = (box_http_listener().await, box_http_listener().await);
    let (mut st, _c) = start_box(&c, "nord.coop.test", thief, h, p);
    let s = wait_for(&mut st, |s| matches!(s, Status::Refused { .. })).await;
    assert_eq!(
        s,
        Status::Refused {
            reason: "nord.coop.test belongs to another box".into()
        }
    );
    let stranger = BoxKey::generate().unwrap().0;
    let (mut st, _c) = start_box(&c, "west.coop.test", stranger, h, p);
    let s = wait_for(&mut st, |s| matches!(s, Status::Refused { .. })).await;
    assert_eq!(
        s,
        Status::Refused {
            reason: "west.coop.test is not enrolled with this cooperative".into()
        }
    );
    assert_eq!(c.running().registry.len(), 1);
    assert!(c.running().registry.get("nord.coop.test").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_edge_restart_the_tunnels_come_back_by_themselves() {
    let mut c = coop().await;
    let (nord, mut st, _cancel) = enrolled_box(&c, "nord").await;
    c.running.take().unwrap().stop().await;
    wait_for(&mut st, |s| !matches!(s, Status::Connected { .. })).await;
    // The same configuration and name table, the same ports.
    c.running = Some(cooperative::start(&c.config).await.unwrap());
    wait_for(&mut st, |s| matches!(s, Status::Connected { .. })).await;
    wait_registered(c.running(), "nord.coop.test").await;
    let (answer, _) = phone(c.running().https, "nord.coop.test", &nord.ca)
        .await
        .unwrap();
    assert!(answer.starts_with("box saw"), "{answer}");
}

/// The box's nginx stand-in as a Matrix server: the PROXY header, TLS with the box's own
/// certificate, and `/_matrix/client/versions`.
async fn matrix_listener(issued: &Issued) -> SocketAddr {
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![issued.cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key.clone())),
        )
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                read_proxy_header(&mut s).await;
                let Ok(mut tls) = acceptor.accept(s).await else {
                    return;
                };
                let mut req = [0u8; 1024];
                let _ = tls.read(&mut req).await;
                let body = r#"{"versions":["v1.11","v1.12"]}"#;
                let resp = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outside_in_check_sees_what_a_phone_would_and_only_the_owner_may_ask() {
    // The edge's 443 must be known before the cooperative starts (the check connects there).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nord_cert = issue("nord.coop.test");
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("box-ca.pem");
    std::fs::write(&ca_file, &nord_cert.ca_pem).unwrap();
    let c = coop_with(|config| {
        config.edge.https_listen = format!("127.0.0.1:{port}").parse().unwrap();
        config.check.ca_file = Some(ca_file.clone());
        config.check.connect = Some(format!("127.0.0.1:{port}").parse().unwrap());
        config.check.min_interval_s = 60;
    })
    .await;
    let mut enrolled = Vec::new();
    for (label, cert) in [("nord", &nord_cert), ("sued", &issue("sued.coop.test"))] {
        let (key, pkcs8) = BoxKey::generate().unwrap();
        let token = c.running().store.issue_token(label).unwrap();
        assert_eq!(c.enrol(&token, label, &key).await.0, 200);
        let (https, http) = (matrix_listener(cert).await, box_http_listener().await);
        let name = format!("{label}.{DOMAIN}");
        let (st, cancel) = start_box(
            &c,
            &name,
            BoxKey::from_pkcs8(&pkcs8, "test").unwrap(),
            https,
            http,
        );
        enrolled.push((name, key, st, cancel));
    }
    for (name, _, st, _) in &mut enrolled {
        wait_for(st, |s| matches!(s, Status::Connected { .. })).await;
        wait_registered(c.running(), name).await;
    }
    let (nord, nord_key) = (&enrolled[0].0, &enrolled[0].1);
    // Another key may not ask for nord.
    let stranger = BoxKey::generate().unwrap().0;
    let (status, body) = c.check(nord, &stranger).await;
    assert_eq!(status, 403, "{body}");
    // nord's own key: resolves (here: the edge's address), TLS valid for the name against the
    // public CAs the cooperative trusts, Matrix answers — through the relay, like a phone.
    let (status, body) = c.check(nord, nord_key).await;
    assert_eq!(status, 200, "{body}");
    let r: cooperative::check::CheckReport = serde_json::from_str(&body).unwrap();
    assert!(r.resolves && r.tls_ok && r.matrix_ok, "{r:?}");
    assert_eq!(r.addresses, vec!["127.0.0.1".to_string()]);
    assert!(r.tls_not_after.unwrap() > r.checked_at);
    assert_eq!(r.error, None);
    // Once a minute at most.
    assert_eq!(c.check(nord, nord_key).await.0, 429);
    // sued's certificate is from a CA the cooperative does not trust: said so.
    let (status, body) = c.check(&enrolled[1].0, &enrolled[1].1).await;
    assert_eq!(status, 200, "{body}");
    let r: cooperative::check::CheckReport = serde_json::from_str(&body).unwrap();
    assert!(r.resolves && !r.tls_ok && !r.matrix_ok, "{r:?}");
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .starts_with("TLS for sued.coop.test"),
        "{r:?}"
    );
}

/// Two edges behind DNS on one PostgreSQL: a box enrolled through one edge's API is let in by
/// the other, a phone reaches it there, a name taken on one is taken on both, and a box that
/// asks the second edge for another check right after the first is told to wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_on_one_postgresql_serve_the_same_boxes_and_share_the_check_limit() {
    let server = tokio::task::spawn_blocking(pg::Postgres::start)
        .await
        .unwrap();
    let url = server.create_db("coop");
    let b = coop_with(|c| {
        c.database = url.clone().into();
        c.check.min_interval_s = 60;
    })
    .await;
    // Edge a's outside-in check connects to edge b's 443 (where nord's tunnel is) and trusts
    // nord's CA.
    let nord_cert = issue("nord.coop.test");
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("box-ca.pem");
    std::fs::write(&ca_file, &nord_cert.ca_pem).unwrap();
    let edge_b = b.running().https;
    let a = coop_with(|c| {
        c.database = url.clone().into();
        c.check.min_interval_s = 60;
        c.check.ca_file = Some(ca_file.clone());
        c.check.connect = Some(edge_b);
    })
    .await;

    // The token from edge b's table, the enrolment through edge a's API.
    let (key, pkcs8) = BoxKey::generate().unwrap();
    let token = b.running().store.issue_token("Familie Nord").unwrap();
    let (status, body) = a.enrol(&token, "nord", &key).await;
    assert_eq!(status, 200, "{body}");
    // Another box cannot have the name on the other edge either.
    let thief = BoxKey::generate().unwrap().0;
    let token2 = a.running().store.issue_token("thief").unwrap();
    let (status, body) = b.enrol(&token2, "nord", &thief).await;
    assert_eq!(status, 409, "{body}");

    // nord's tunnel goes to edge b, which checks its key in the shared table.
    let (https, http) = (matrix_listener(&nord_cert).await, box_http_listener().await);
    let (mut st, _cancel) = start_box(
        &b,
        "nord.coop.test",
        BoxKey::from_pkcs8(&pkcs8, "test").unwrap(),
        https,
        http,
    );
    wait_for(&mut st, |s| matches!(s, Status::Connected { .. })).await;
    wait_registered(b.running(), "nord.coop.test").await;
    assert_eq!(
        a.running().registry.len(),
        0,
        "a box is on one edge at a time"
    );

    // Checked through edge a (which looks at the name through edge b, like a phone would);
    // asking edge b right after: 429, the limit is in the table.
    let (status, body) = a.check("nord.coop.test", &key).await;
    assert_eq!(status, 200, "{body}");
    let r: cooperative::check::CheckReport = serde_json::from_str(&body).unwrap();
    assert!(r.resolves && r.tls_ok && r.matrix_ok, "{r:?}");
    assert_eq!(b.check("nord.coop.test", &key).await.0, 429);
    assert_eq!(a.check("nord.coop.test", &key).await.0, 429);

    // Both edges list the same boxes.
    assert_eq!(
        a.running().store.boxes().unwrap(),
        b.running().store.boxes().unwrap()
    );
}
