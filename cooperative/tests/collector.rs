//! The collector: reports with real blind-RSA tokens (report_wire's client side, as a box
//! does it), refused when malformed, oversized or badly signed, idempotent for a replayed
//! report, 409 for a token spent on another id — and nothing stored by any refusal.
#![allow(clippy::unwrap_used)] // a test crate: a panic is a failed test

use std::sync::Arc;

use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::Router;
use cooperative::collector::{Collector, Keys};
use cooperative::store::Store;
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
