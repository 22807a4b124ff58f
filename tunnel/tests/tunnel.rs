//! The tunnel end to end on loopback: a box's client against an edge's sessions, real TLS
//! (a test CA), real yamux, real TCP targets; faults: a foreign key, an edge that drops the
//! tunnel, a path that black-holes packets (a router's new address), a box that goes silent.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_tunnel::client::{self, Status};
use hearth_tunnel::edge::{self, Tunnel};
use hearth_tunnel::key::BoxKey;
use hearth_tunnel::proto::{self, StreamKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

const EDGE_NAME: &str = "edge.coop.test";
const BOX_NAME: &str = "nord.coop.test";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

struct Pki {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![EDGE_NAME.to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    server.alpn_protocols = vec![proto::ALPN.to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.der().to_vec())).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![proto::ALPN.to_vec()];
    Pki {
        server: Arc::new(server),
        client: Arc::new(client),
    }
}

/// A minimal edge: the name table, and every accepted tunnel reported on a channel.
struct Edge {
    addr: SocketAddr,
    tunnels: mpsc::UnboundedReceiver<Arc<Tunnel>>,
    refusals: mpsc::UnboundedReceiver<String>,
}

async fn edge(
    server: Arc<rustls::ServerConfig>,
    table: HashMap<String, Vec<u8>>,
    idle: Duration,
) -> Edge {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (t_tx, tunnels) = mpsc::unbounded_channel();
    let (r_tx, refusals) = mpsc::unbounded_channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, table, t_tx, r_tx) =
                (acceptor.clone(), table.clone(), t_tx.clone(), r_tx.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let claim = match edge::read_hello(&mut tls, Duration::from_secs(5)).await {
                    Ok(c) => c,
                    Err(e) => {
                        edge::refuse(&mut tls, &e).await;
                        let _ = r_tx.send(e);
                        return;
                    }
                };
                if table.get(&claim.name) != Some(&claim.public_key) {
                    let reason = format!("{} is not this box's name", claim.name);
                    edge::refuse(&mut tls, &reason).await;
                    let _ = r_tx.send(reason);
                    return;
                }
                let _ = t_tx.send(Tunnel::accept(tls, claim, idle).await.unwrap());
            });
        }
    });
    Edge {
        addr,
        tunnels,
        refusals,
    }
}

/// A box listener: answers `<tag>:` and then echoes what it reads, until EOF.
async fn target(tag: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                s.write_all(format!("{tag}:").as_bytes()).await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(edge: SocketAddr, https: SocketAddr, http: SocketAddr) -> client::Config {
    client::Config {
        edge: edge.to_string(),
        tls_name: ServerName::try_from(EDGE_NAME).unwrap(),
        name: BOX_NAME.into(),
        https_target: https,
        http_target: http,
        ping_interval: Duration::from_millis(200),
        ping_timeout: Duration::from_millis(400),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
    }
}

async fn wait_for(
    status: &mut watch::Receiver<Status>,
    what: &str,
    f: impl Fn(&Status) -> bool,
) -> Status {
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
    .unwrap_or_else(|_| {
        panic!(
            "the box's tunnel never became {what}: {:?}",
            status.borrow()
        )
    })
}

fn start_box(
    cfg: client::Config,
    key: BoxKey,
    tls: Arc<rustls::ClientConfig>,
) -> (watch::Receiver<Status>, CancellationToken) {
    let (tx, rx) = watch::channel(Status::Starting);
    let cancel = CancellationToken::new();
    tokio::spawn(client::run(cfg, Arc::new(key), tls, tx, cancel.clone()));
    (rx, cancel)
}

async fn roundtrip(t: &Tunnel, kind: StreamKind, payload: &[u8]) -> Vec<u8> {
    let mut s = t.open(kind).await.unwrap();
    s.write_all(payload).await.unwrap();
    s.shutdown().await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_connections_reach_the_box_listener_for_their_kind_byte_for_byte() {
    let pki = pki();
    let (key, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), key.public().to_vec())]),
        Duration::from_secs(5),
    )
    .await;
    let cfg = config(e.addr, target("https").await, target("http").await);
    let (mut status, _cancel) = start_box(cfg, key, pki.client);
    wait_for(&mut status, "connected", |s| {
        matches!(s, Status::Connected { .. })
    })
    .await;
    let t = e.tunnels.recv().await.unwrap();
    assert_eq!(t.name, BOX_NAME);

    assert_eq!(
        roundtrip(&t, StreamKind::Https, b"\x16\x03\x01client hello").await,
        b"https:\x16\x03\x01client hello"
    );
    assert_eq!(
        roundtrip(&t, StreamKind::Http, b"GET / HTTP/1.1\r\n\r\n").await,
        b"http:GET / HTTP/1.1\r\n\r\n"
    );
    // Many at once, and a large one (flow control, several windows).
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut jobs = Vec::new();
    for i in 0..20u8 {
        let t = t.clone();
        let data = if i == 0 { big.clone() } else { vec![i; 1000] };
        jobs.push(tokio::spawn(async move {
            (roundtrip(&t, StreamKind::Https, &data).await, data)
        }));
    }
    for j in jobs {
        let (got, sent) = j.await.unwrap();
        assert_eq!(&got[..6], b"https:");
        assert!(got[6..] == sent[..], "a stream's bytes changed on the way");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_with_another_key_for_the_name_is_refused_and_says_why() {
    let pki = pki();
    let (owner, _) = BoxKey::generate().unwrap();
    let (intruder, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), owner.public().to_vec())]),
        Duration::from_secs(5),
    )
    .await;
    let cfg = config(e.addr, target("https").await, target("http").await);
    let (mut status, _cancel) = start_box(cfg, intruder, pki.client);
    let s = wait_for(&mut status, "refused", |s| {
        matches!(s, Status::Refused { .. })
    })
    .await;
    assert_eq!(
        s,
        Status::Refused {
            reason: format!("{BOX_NAME} is not this box's name")
        }
    );
    assert!(e
        .refusals
        .recv()
        .await
        .unwrap()
        .contains("not this box's name"));
    assert!(e.tunnels.try_recv().is_err(), "no tunnel for the intruder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_box_dials_again_when_the_edge_drops_its_tunnel() {
    let pki = pki();
    let (key, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), key.public().to_vec())]),
        Duration::from_secs(5),
    )
    .await;
    let cfg = config(e.addr, target("https").await, target("http").await);
    let (mut status, _cancel) = start_box(cfg, key, pki.client);
    let first = e.tunnels.recv().await.unwrap();
    first.close(); // an edge restart, as the box sees it
    let second = tokio::time::timeout(Duration::from_secs(10), e.tunnels.recv())
        .await
        .unwrap()
        .unwrap();
    wait_for(&mut status, "connected again", |s| {
        matches!(s, Status::Connected { .. })
    })
    .await;
    assert_eq!(
        roundtrip(&second, StreamKind::Https, b"again").await,
        b"https:again"
    );
}

/// A TCP forwarder that can black-hole traffic without closing anything (what a home router
/// that changed its public address does to the old connection).
async fn blackholing_path(to: SocketAddr) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dead = Arc::new(AtomicBool::new(false));
    let d = dead.clone();
    tokio::spawn(async move {
        loop {
            let (a, _) = listener.accept().await.unwrap();
            let b = TcpStream::connect(to).await.unwrap();
            let (d1, d2) = (d.clone(), d.clone());
            let (mut ar, mut aw) = a.into_split();
            let (mut br, mut bw) = b.into_split();
            // Connections made after the change work (the new address).
            let born_dead = d.load(Ordering::SeqCst);
            let (held1, held2) = (
                Arc::new(Mutex::new(born_dead)),
                Arc::new(Mutex::new(born_dead)),
            );
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = ar.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if d1.load(Ordering::SeqCst) && !*held1.lock().unwrap() {
                        continue; // dropped on the floor
                    }
                    if bw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16384];
                while let Ok(n) = br.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if d2.load(Ordering::SeqCst) && !*held2.lock().unwrap() {
                        continue;
                    }
                    if aw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_path_is_noticed_by_the_pings_and_the_box_comes_back() {
    let pki = pki();
    let (key, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), key.public().to_vec())]),
        Duration::from_secs(60),
    )
    .await;
    let (path, dead) = blackholing_path(e.addr).await;
    let cfg = config(path, target("https").await, target("http").await);
    let (mut status, _cancel) = start_box(cfg, key, pki.client);
    let first = e.tunnels.recv().await.unwrap();
    wait_for(&mut status, "connected", |s| {
        matches!(s, Status::Connected { .. })
    })
    .await;
    dead.store(true, Ordering::SeqCst);
    let s = wait_for(&mut status, "aware of the dead path", |s| {
        matches!(s, Status::Connecting { .. })
    })
    .await;
    assert!(
        format!("{s:?}").contains("ping"),
        "the reason names the ping: {s:?}"
    );
    let second = tokio::time::timeout(Duration::from_secs(10), e.tunnels.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        roundtrip(&second, StreamKind::Https, b"back").await,
        b"https:back"
    );
    assert!(!second.is_closed());
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_closes_the_tunnel_of_a_box_that_stopped_pinging() {
    let pki = pki();
    let (key, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), key.public().to_vec())]),
        Duration::from_millis(500),
    )
    .await;
    // A box that says hello and then nothing: no pings.
    let tcp = TcpStream::connect(e.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(pki.client)
        .connect(ServerName::try_from(EDGE_NAME).unwrap(), tcp)
        .await
        .unwrap();
    let mut exporter = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut exporter, proto::EXPORTER_LABEL, None)
        .unwrap();
    proto::write_line(&mut tls, &proto::Hello::new(BOX_NAME, &key, &exporter))
        .await
        .unwrap();
    let v: proto::Verdict = proto::read_line(&mut tls).await.unwrap();
    assert!(v.ok);
    let t = e.tunnels.recv().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), t.closed())
        .await
        .expect("the silent tunnel was never closed");
    assert!(t.open(StreamKind::Https).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hello_recorded_on_one_connection_is_refused_on_another() {
    let pki = pki();
    let (key, _) = BoxKey::generate().unwrap();
    let mut e = edge(
        pki.server,
        HashMap::from([(BOX_NAME.to_owned(), key.public().to_vec())]),
        Duration::from_secs(5),
    )
    .await;
    let hello = proto::Hello::new(BOX_NAME, &key, &[7u8; 32]); // signed for some other session
    let tcp = TcpStream::connect(e.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(pki.client)
        .connect(ServerName::try_from(EDGE_NAME).unwrap(), tcp)
        .await
        .unwrap();
    proto::write_line(&mut tls, &hello).await.unwrap();
    let v: proto::Verdict = proto::read_line(&mut tls).await.unwrap();
    assert!(!v.ok);
    assert_eq!(
        e.refusals.recv().await.unwrap(),
        "the signature does not match the key"
    );
}
