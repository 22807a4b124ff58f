//! The collector: reports with real blind-RSA tokens (report_wire's client side, as a box
//! does it), refused when malformed, oversized or badly signed, idempotent for a replayed
//! report, 409 for a token spent on another id — and nothing stored by any refusal. And the
//! token endpoint on the running cooperative (`served`): an enrolled box's tokens end to end
//! into a stored report, every refusal with its status and reason, the per-box limit, and
//! nothing granted by a refused request.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::sync::Arc;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use cooperative::collector::{Collector, Keys};
use cooperative::store::Store;
use hearth_tunnel::proto;
use report_wire::token;
use report_wire::{Hardware, MembersBucket, Report, Token};
use tower::ServiceExt;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Store,
    collector: Arc<Collector>,
    pk: token::PublicKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("coop.sqlite3"), "coop.test").unwrap();
    let path = dir.path().join("report-key.pem");
    let id = cooperative::collector::keygen(&path).unwrap();
    assert!(
        cooperative::collector::keygen(&path).is_err(),
        "never overwrites"
    );
    let keys = Keys::load(&[path, dir.path().join("missing.pem")]).unwrap();
    assert_eq!(keys.current_id(), Some(id.as_str()));
    let sk = token::SecretKey::from_pem(
        &std::fs::read_to_string(dir.path().join("report-key.pem")).unwrap(),
    )
    .unwrap();
    Fixture {
        _dir: dir,
        store,
        collector: Arc::new(Collector {
            keys,
            tokens_per_box: 16,
        }),
        pk: sk.public_key().unwrap(),
    }
}

/// A token as a box gets one: blinded, signed blind by the collector's key, finalized.
fn token_for(f: &Fixture) -> Token {
    let (req, blinding) = token::blind(&f.pk).unwrap();
    let sk = f.collector_secret();
    let sig = token::sign_blinded(&sk, &req.blinded).unwrap();
    token::finalize(&f.pk, blinding, &sig).unwrap()
}

impl Fixture {
    fn collector_secret(&self) -> token::SecretKey {
        token::SecretKey::from_pem(
            &std::fs::read_to_string(self._dir.path().join("report-key.pem")).unwrap(),
        )
        .unwrap()
    }

    fn router(&self) -> Router {
        let (c, s) = (self.collector.clone(), self.store.clone());
        Router::new().route(
            "/api/v1/reports",
            post(move |body| cooperative::collector::post_report(c, s, body))
                .layer(DefaultBodyLimit::max(report_wire::MAX_BYTES)),
        )
    }

    async fn post(&self, body: impl Into<Vec<u8>>) -> (StatusCode, serde_json::Value) {
        let res = self
            .router()
            .oneshot(
                Request::post("/api/v1/reports")
                    .header("content-type", "application/json")
                    .body(Body::from(body.into()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(!text.contains('\n'), "one line: {text}");
        (status, serde_json::from_str(&text).unwrap())
    }

    fn stored(&self) -> (usize, i64) {
        (
            self.store.reports().unwrap().len(),
            self.store.spent_tokens().unwrap(),
        )
    }
}

fn report(token: Token) -> Report {
    Report {
        schema: report_wire::SCHEMA.into(),
        id: report_wire::new_id().unwrap(),
        month: "2025-03".into(),
        energy_kwh: 3.2,
        epsilon: 1.0,
        hardware: Hardware::Pi5,
        members: MembersBucket::TwoToFive,
        uptime_share: 0.95,
        synapse: "1.139".into(),
        supplier: None,
        token,
    }
}

fn json(r: &Report) -> Vec<u8> {
    serde_json::to_vec(r).unwrap()
}

#[tokio::test]
async fn a_report_is_stored_once_and_a_replay_is_harmless() {
    let f = fixture();
    let r = report(token_for(&f));
    let (s, v) = f.post(json(&r)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["new"], true);
    // The answer got lost: the box sends the same report again.
    let (s, v) = f.post(json(&r)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["new"], false);
    assert_eq!(f.stored(), (1, 1));
    // The same token under another id: 409, nothing stored.
    let mut other = r.clone();
    other.id = report_wire::new_id().unwrap();
    let (s, v) = f.post(json(&other)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("token.msg"), "{v}");
    // Another report under the same id: 409.
    let mut same_id = report(token_for(&f));
    same_id.id = r.id.clone();
    same_id.energy_kwh = 4.1;
    let (s, v) = f.post(json(&same_id)).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("id:"), "{v}");
    assert_eq!(f.stored(), (1, 1));
    // What is stored holds no token.
    let stored = serde_json::to_string(&f.store.reports().unwrap()).unwrap();
    assert!(!stored.contains(&r.token.msg) && !stored.contains(&r.token.sig));
}

#[tokio::test]
async fn malformed_oversized_and_badly_signed_reports_store_nothing() {
    let f = fixture();
    let good = report(token_for(&f));
    let mut cases: Vec<(Vec<u8>, StatusCode, &str)> = vec![
        (
            b"not json".to_vec(),
            StatusCode::BAD_REQUEST,
            "not a report",
        ),
        (
            json(&good)
                .iter()
                .copied()
                .chain(b"  ".iter().copied())
                .take(10)
                .collect(),
            StatusCode::BAD_REQUEST,
            "not a report",
        ),
        (
            vec![b' '; report_wire::MAX_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "too large",
        ),
    ];
    let mut r = good.clone();
    r.month = "2025-13".into();
    cases.push((json(&r), StatusCode::BAD_REQUEST, "month:"));
    let mut r = good.clone();
    r.epsilon = 50.0;
    cases.push((json(&r), StatusCode::BAD_REQUEST, "epsilon:"));
    let mut v = serde_json::to_value(&good).unwrap();
    v["household"] = "Nord".into();
    cases.push((
        serde_json::to_vec(&v).unwrap(),
        StatusCode::BAD_REQUEST,
        "unknown field",
    ));
    // A token signed by another key, one whose signature is another message's, a forged one.
    let mut r = good.clone();
    r.token.key_id = "0123456789abcdef".into();
    cases.push((json(&r), StatusCode::BAD_REQUEST, "token.key_id"));
    let mut r = good.clone();
    r.token.msg = token_for(&f).msg;
    cases.push((json(&r), StatusCode::BAD_REQUEST, "token.sig"));
    let (other_pk, other_sk) = token::generate_key().unwrap();
    let (req, blinding) = token::blind(&other_pk).unwrap();
    let sig = token::sign_blinded(&other_sk, &req.blinded).unwrap();
    let mut forged = token::finalize(&other_pk, blinding, &sig).unwrap();
    forged.key_id = good.token.key_id.clone();
    cases.push((json(&report(forged)), StatusCode::BAD_REQUEST, "token.sig"));
    for (body, status, says) in cases {
        let (s, v) = f.post(body).await;
        assert_eq!(s, status, "{v}");
        assert!(v["error"].as_str().unwrap().contains(says), "{says}: {v}");
    }
    assert_eq!(f.stored(), (0, 0), "no refusal stores or spends anything");
    // The good one still goes in afterwards: its token was not spent by the tries above.
    assert_eq!(f.post(json(&good)).await.0, StatusCode::OK);
    assert_eq!(f.stored(), (1, 1));
}

/// The collector as it runs: `cooperative::start` with a real config, its control listener's
/// HTTP API over TLS on loopback, boxes enrolled through `POST /api/v1/enrol` with their own
/// Ed25519 keys, tokens through `POST /api/v1/report-tokens`, reports through
/// `POST /api/v1/reports`.
mod served {
    use std::sync::Arc;

    use cooperative::Config;
    use hearth_tunnel::key::BoxKey;
    use hearth_tunnel::proto;
    use report_wire::api::{
        ReportKey, TokenRequest, TokenResponse, MAX_BLINDED_PER_REQUEST, REPORTS_PATH,
        REPORT_KEY_PATH, REPORT_TOKENS_PATH,
    };
    use report_wire::token::{self, Blinding};
    use report_wire::Token;
    use rustls::pki_types::{CertificateDer, ServerName};
    use serde_json::Value;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const DOMAIN: &str = "coop.test";
    const CONTROL: &str = "relay.coop.test";

    pub struct Coop {
        _dir: tempfile::TempDir,
        ca: CertificateDer<'static>,
        pub running: cooperative::Running,
        pub pk: token::PublicKey,
        pub key_id: String,
    }

    pub struct Member {
        pub name: String,
        pub key: BoxKey,
    }

    pub fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// A cooperative with a fresh report key; each box gets `tokens_per_box` signatures.
    pub async fn start(tokens_per_box: u32) -> Coop {
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
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        let report_key = dir.path().join("report-key.pem");
        cooperative::collector::keygen(&report_key).unwrap();
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
        config.check.ca_file = Some(dir.path().join("ca.pem"));
        config.reports.key = vec![report_key];
        config.reports.tokens_per_box = tokens_per_box;
        let running = cooperative::start(&config).await.unwrap();
        let mut coop = Coop {
            _dir: dir,
            ca: CertificateDer::from(ca.der().to_vec()),
            running,
            pk: token::generate_key().unwrap().0,
            key_id: String::new(),
        };
        // The box's way to the key: GET /api/v1/report-key.
        let (status, v) = coop.request("GET", REPORT_KEY_PATH, b"").await;
        assert_eq!(status, 200, "{v}");
        let key: ReportKey = serde_json::from_value(v).unwrap();
        coop.pk = token::decode_public_key(&key.public_key).unwrap();
        assert_eq!(token::key_id(&coop.pk), key.key_id);
        coop.key_id = key.key_id;
        coop
    }

    impl Coop {
        /// One request on its own TLS connection (the API answers one per connection).
        pub async fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
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
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tls))
                .connect(ServerName::try_from(CONTROL).unwrap(), tcp)
                .await
                .unwrap();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: {CONTROL}\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            tls.write_all(head.as_bytes()).await.unwrap();
            tls.write_all(body).await.unwrap();
            let mut out = String::new();
            tls.read_to_string(&mut out).await.unwrap();
            let status = out[9..12].parse().unwrap();
            let body = out.split_once("\r\n\r\n").unwrap().1;
            assert!(!body.trim_end().contains('\n'), "one line: {body}");
            (status, serde_json::from_str(body).unwrap())
        }

        /// A box enrolled as `label.coop.test` through the API, with its own key.
        pub async fn enrol(&self, label: &str) -> Member {
            let key = BoxKey::generate().unwrap().0;
            let token = self.running.store.issue_token(label).unwrap();
            let body = serde_json::json!({
                "token": token, "label": label, "public_key": proto::encode(key.public()),
            });
            let (status, v) = self
                .request("POST", "/api/v1/enrol", body.to_string().as_bytes())
                .await;
            assert_eq!(status, 200, "{v}");
            Member {
                name: v["name"].as_str().unwrap().to_owned(),
                key,
            }
        }

        pub async fn post_tokens(&self, req: &TokenRequest) -> (u16, Value) {
            self.request(
                "POST",
                REPORT_TOKENS_PATH,
                &serde_json::to_vec(req).unwrap(),
            )
            .await
        }

        pub async fn post_report(&self, report: &report_wire::Report) -> (u16, Value) {
            self.request("POST", REPORTS_PATH, &serde_json::to_vec(report).unwrap())
                .await
        }

        /// `n` fresh blindings for the collector's key: what the box keeps, what it sends.
        pub fn blind(&self, n: usize) -> (Vec<Blinding>, Vec<String>) {
            (0..n)
                .map(|_| {
                    let (req, blinding) = token::blind(&self.pk).unwrap();
                    (blinding, req.blinded)
                })
                .unzip()
        }

        /// Blinds `n`, asks as `member`, finalizes: the box's whole token acquisition.
        pub async fn tokens(&self, member: &Member, n: usize) -> Vec<Token> {
            let (blindings, blinded) = self.blind(n);
            let (status, v) = self
                .post_tokens(&member.ask(now(), &self.key_id, blinded))
                .await;
            assert_eq!(status, 200, "{v}");
            let answer: TokenResponse = serde_json::from_value(v).unwrap();
            assert_eq!(answer.signatures.len(), n);
            blindings
                .into_iter()
                .zip(&answer.signatures)
                .map(|(b, sig)| token::finalize(&self.pk, b, sig).unwrap())
                .collect()
        }

        pub fn stored(&self) -> (usize, i64) {
            (
                self.running.store.reports().unwrap().len(),
                self.running.store.spent_tokens().unwrap(),
            )
        }
    }

    impl Member {
        /// A token request signed by this box's key.
        pub fn ask(&self, at: i64, key_id: &str, blinded: Vec<String>) -> TokenRequest {
            let transcript = report_wire::api::tokens_transcript(&self.name, at, key_id, &blinded);
            TokenRequest {
                name: self.name.clone(),
                at,
                sig: proto::encode(self.key.sign(&transcript)),
                key_id: key_id.to_owned(),
                blinded,
            }
        }
    }

    pub const MAX: usize = MAX_BLINDED_PER_REQUEST;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolled_box_gets_tokens_that_the_collector_then_accepts_once() {
    let coop = served::start(16).await;
    let nord = coop.enrol("nord").await;
    let tokens = coop.tokens(&nord, 3).await;
    for t in &tokens {
        assert!(token::verify(&coop.pk, t));
        assert_eq!(t.key_id, coop.key_id);
    }
    // Three distinct messages: nothing the collector signed names them.
    assert!(tokens[0].msg != tokens[1].msg && tokens[1].msg != tokens[2].msg);

    let first = report(tokens[0].clone());
    let (s, v) = coop.post_report(&first).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["new"], true);
    // The answer got lost: the identical report again is 200, and stored once.
    let (s, v) = coop.post_report(&first).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["new"], false);
    assert_eq!(coop.stored(), (1, 1));
    // The spent token in a second, different report: 409, nothing stored.
    let mut second = report(tokens[0].clone());
    second.energy_kwh = 7.4;
    let (s, v) = coop.post_report(&second).await;
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().starts_with("token.msg"), "{v}");
    assert_eq!(coop.stored(), (1, 1));
    // The same report with a fresh token is a report of its own.
    second.token = tokens[1].clone();
    let (s, v) = coop.post_report(&second).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(coop.stored(), (2, 2));
    // What is stored names no box and holds no token.
    let stored = serde_json::to_string(&coop.running.store.reports().unwrap()).unwrap();
    assert!(!stored.contains("nord") && !stored.contains(&tokens[0].msg));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_token_requests_grant_nothing_and_each_box_has_its_own_limit() {
    use report_wire::api::TokenRequest;
    let coop = served::start(4).await;
    let nord = coop.enrol("nord").await;
    let sued = coop.enrol("sued").await;
    let now = served::now();
    let one = || coop.blind(1).1;

    let mut cases: Vec<(TokenRequest, u16, String)> = Vec::new();
    // Signed by another key than the one enrolled for the name.
    let mut r = nord.ask(now, &coop.key_id, one());
    r.sig = sued.ask(now, &coop.key_id, one()).sig;
    cases.push((
        r,
        403,
        format!("{} is not enrolled with this key", nord.name),
    ));
    // A signature over another time than the one sent.
    let mut r = nord.ask(now - 1, &coop.key_id, one());
    r.at = now;
    cases.push((r, 403, "not enrolled with this key".into()));
    // A seen request's signature with other blinded messages (someone spending the box's
    // allowance for themselves).
    let mut r = nord.ask(now, &coop.key_id, one());
    r.blinded = one();
    cases.push((r, 403, "not enrolled with this key".into()));
    // Not base64 at all.
    let mut r = nord.ask(now, &coop.key_id, one());
    r.sig = "!!".into();
    cases.push((r, 403, "not enrolled with this key".into()));
    // A name nobody enrolled, signed by a key of its own.
    let west = served::Member {
        name: "west.coop.test".into(),
        key: hearth_tunnel::key::BoxKey::generate().unwrap().0,
    };
    cases.push((
        west.ask(now, &coop.key_id, one()),
        403,
        "west.coop.test is not enrolled".into(),
    ));
    // Stale, or from the future, beyond the 5 minutes (each correctly signed).
    cases.push((nord.ask(now - 400, &coop.key_id, one()), 403, "at:".into()));
    cases.push((nord.ask(now + 400, &coop.key_id, one()), 403, "at:".into()));
    // Another key than the current one.
    let (other_pk, _) = token::generate_key().unwrap();
    cases.push((
        nord.ask(now, &token::key_id(&other_pk), one()),
        400,
        "key_id:".into(),
    ));
    cases.push((
        nord.ask(now, "0123456789abcdef", one()),
        400,
        "key_id:".into(),
    ));
    // No blinded message, or more than one request may carry.
    cases.push((nord.ask(now, &coop.key_id, vec![]), 400, "blinded:".into()));
    cases.push((
        nord.ask(now, &coop.key_id, coop.blind(served::MAX + 1).1),
        400,
        "blinded:".into(),
    ));
    // Malformed blinded messages, named by their place: not base64url, all ones (not below
    // the modulus), empty.
    let mut blinded = coop.blind(2).1;
    blinded.push("not base64!".into());
    cases.push((
        nord.ask(now, &coop.key_id, blinded),
        400,
        "blinded[2]".into(),
    ));
    let mut blinded = coop.blind(1).1;
    blinded.push(proto::encode([0xffu8; 256]));
    cases.push((
        nord.ask(now, &coop.key_id, blinded),
        400,
        "blinded[1]".into(),
    ));
    cases.push((
        nord.ask(now, &coop.key_id, vec![String::new()]),
        400,
        "blinded[0]".into(),
    ));
    for (req, status, says) in &cases {
        let (s, v) = coop.post_tokens(req).await;
        assert_eq!(s, *status, "{says}: {v}");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(says.as_str()), "{says}: {v}");
        assert!(v.get("signatures").is_none(), "{v}");
    }
    // Not a token request at all.
    for body in [&b"{}"[..], b"not json", br#"{"name":"x","extra":1}"#] {
        let (s, v) = coop
            .request("POST", report_wire::api::REPORT_TOKENS_PATH, body)
            .await;
        assert_eq!(s, 400, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .starts_with("not a token request"),
            "{v}"
        );
    }

    // None of that counted: nord still gets its whole four, in two requests.
    assert_eq!(coop.tokens(&nord, 3).await.len(), 3);
    // One more than is left is refused whole, and counts nothing either.
    let (s, v) = coop
        .post_tokens(&nord.ask(served::now(), &coop.key_id, coop.blind(2).1))
        .await;
    assert_eq!(s, 429, "{v}");
    assert!(v["error"].as_str().unwrap().contains("4 tokens"), "{v}");
    let last = coop.tokens(&nord, 1).await;
    let (s, v) = coop
        .post_tokens(&nord.ask(served::now(), &coop.key_id, one()))
        .await;
    assert_eq!(s, 429, "{v}");
    // The last one granted is a good token.
    assert_eq!(coop.post_report(&report(last[0].clone())).await.0, 200);
    // Another box is not affected: sued has its own four.
    assert_eq!(coop.tokens(&sued, 4).await.len(), 4);
    assert_eq!(
        coop.post_tokens(&sued.ask(served::now(), &coop.key_id, one()))
            .await
            .0,
        429
    );
}
