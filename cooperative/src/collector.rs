//! The collector of the boxes' anonymous energy reports, on the control listener's API
//! (cooperative/README.md, "Reports"):
//!
//! - `GET /api/v1/report-key`: the current blind-RSA public key and its id;
//! - `POST /api/v1/report-tokens`: an enrolled box, signing with its Ed25519 key (as for the
//!   outside-in check, with its own context `hearth-report-tokens/1`), sends blinded messages and
//!   gets them blind-signed — at most `[reports] tokens_per_box` per box and key, counted in the
//!   store. The collector sees only values that are uniformly random to it;
//! - `POST /api/v1/reports`: one report (`report_wire::parse`, the parser the box uses too) with
//!   one unblinded token. The token proves that some enrolled box sent it, not which; its
//!   message's hash is stored as spent, apart from the report, which keeps no token. 200 stored
//!   (or the same report again), 409 another report under this id or this token, 400 with the
//!   field that is wrong, 413 over `report_wire::MAX_BYTES` (before more is read), 503 without
//!   a key.
//!
//! An invalid report stores nothing: parsing and the token's check come before the store's one
//! transaction, which stores the report and spends the token together or not at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use report_wire::api::{ReportKey, TokenRequest, TokenResponse, MAX_BLINDED_PER_REQUEST};
use report_wire::token::{self, PublicKey, SecretKey};
use sha2::{Digest, Sha256};

use crate::api::ApiError;
use crate::store::{Ingest, ReportRecord, Store};

/// The collector's keys: the first file's signs new tokens, all of them verify reports.
pub struct Keys {
    signing: Option<(SecretKey, PublicKey, String)>,
    verifying: Vec<(String, PublicKey)>,
}

impl Keys {
    /// Reads the key files; a missing one is skipped with a warning (the collector then
    /// answers 503 until one is there), a broken one is an error naming the file.
    pub fn load(paths: &[PathBuf]) -> anyhow::Result<Keys> {
        let mut keys = Keys {
            signing: None,
            verifying: Vec::new(),
        };
        for (i, path) in paths.iter().enumerate() {
            let pem = match std::fs::read_to_string(path) {
                Ok(p) => p,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    tracing::warn!(
                        "[reports] key {}: not there (hearth-coop reports keygen makes one); \
                         the collector refuses reports and tokens until it is",
                        path.display()
                    );
                    continue;
                }
                Err(e) => anyhow::bail!("[reports] key {}: {e}", path.display()),
            };
            let sk = SecretKey::from_pem(&pem)
                .map_err(|e| anyhow::anyhow!("[reports] key {}: {e}", path.display()))?;
            let pk = sk
                .public_key()
                .map_err(|e| anyhow::anyhow!("[reports] key {}: {e}", path.display()))?;
            let id = token::key_id(&pk);
            if i == 0 {
                keys.signing = Some((sk, pk.clone(), id.clone()));
            }
            keys.verifying.push((id, pk));
        }
        Ok(keys)
    }

    pub fn from_secret(sks: Vec<SecretKey>) -> anyhow::Result<Keys> {
        let mut keys = Keys {
            signing: None,
            verifying: Vec::new(),
        };
        for sk in sks {
            let pk = sk.public_key().map_err(|e| anyhow::anyhow!("{e}"))?;
            let id = token::key_id(&pk);
            if keys.signing.is_none() {
                keys.signing = Some((sk, pk.clone(), id.clone()));
            }
            keys.verifying.push((id, pk));
        }
        Ok(keys)
    }

    pub fn current_id(&self) -> Option<&str> {
        self.signing.as_ref().map(|(_, _, id)| id.as_str())
    }
}

/// Makes a new key file (PEM, 0600); refuses to overwrite one. Returns the key's id.
pub fn keygen(path: &Path) -> anyhow::Result<String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let (pk, sk) = token::generate_key().map_err(|e| anyhow::anyhow!("{e}"))?;
    let pem = sk.to_pem().map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(token::key_id(&pk))
}

pub struct Collector {
    pub keys: Keys,
    pub tokens_per_box: u32,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    crate::site::civil(days).to_string()
}

fn body_error(e: BytesRejection) -> Response {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        error(
            status,
            format!(
                "report too large (at most {} bytes)",
                report_wire::MAX_BYTES
            ),
        )
    } else {
        error(status, e.body_text())
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Stored {
    pub id: String,
    /// False: the same report had come before; nothing changed.
    pub new: bool,
}

/// What a report is checked and stored as; a pure step, also timed by the bench.
pub fn accept(collector: &Collector, store: &Store, body: &[u8], day: &str) -> Response {
    let report = match report_wire::parse(body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let Some((_, pk)) = collector
        .keys
        .verifying
        .iter()
        .find(|(id, _)| *id == report.token.key_id)
    else {
        if collector.keys.verifying.is_empty() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the collector has no token key yet",
            );
        }
        return error(
            StatusCode::BAD_REQUEST,
            "token.key_id: not a key of this collector",
        );
    };
    if !token::verify(pk, &report.token) {
        return error(
            StatusCode::BAD_REQUEST,
            "token.sig: the signature does not verify",
        );
    }
    let msg = base64_decode(&report.token.msg).unwrap_or_default();
    let spent = Sha256::digest(&msg).to_vec();
    let record = ReportRecord {
        id: report.id.clone(),
        month: report.month.clone(),
        hardware: report.hardware.as_str().to_owned(),
        members: report.members.as_str().to_owned(),
        energy_kwh: report.energy_kwh,
        epsilon: report.epsilon,
        uptime_share: report.uptime_share,
        synapse: report.synapse.clone(),
        supplier: report.supplier.clone(),
    };
    match store.ingest_report(&record, &spent, day) {
        Ok(Ingest::Stored) => Json(Stored {
            id: report.id,
            new: true,
        })
        .into_response(),
        Ok(Ingest::Replay) => Json(Stored {
            id: report.id,
            new: false,
        })
        .into_response(),
        Ok(Ingest::IdTaken) => error(
            StatusCode::CONFLICT,
            "id: another report was stored under this id",
        ),
        Ok(Ingest::TokenSpent) => error(
            StatusCode::CONFLICT,
            "token.msg: this token was spent on another report",
        ),
        Err(e) => {
            tracing::warn!("storing a report: {e}");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is not available",
            )
        }
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

pub async fn post_report(
    collector: Arc<Collector>,
    store: Store,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    tokio::task::spawn_blocking(move || accept(&collector, &store, &body, &today()))
        .await
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

pub fn report_key(collector: &Collector) -> Response {
    match &collector.keys.signing {
        Some((_, pk, id)) => match token::encode_public_key(pk) {
            Ok(public_key) => Json(ReportKey {
                key_id: id.clone(),
                public_key,
            })
            .into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        None => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector has no token key yet",
        ),
    }
}

pub async fn post_tokens(
    collector: Arc<Collector>,
    store: Store,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("not a token request: {e}")),
    };
    let Some((_, _, current)) = &collector.keys.signing else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the collector has no token key yet",
        );
    };
    if req.key_id != *current {
        return error(
            StatusCode::BAD_REQUEST,
            "key_id: not the current key (GET /api/v1/report-key)",
        );
    }
    if req.blinded.is_empty() || req.blinded.len() > MAX_BLINDED_PER_REQUEST {
        return error(
            StatusCode::BAD_REQUEST,
            format!("blinded: 1 to {MAX_BLINDED_PER_REQUEST} messages"),
        );
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if (now - req.at).abs() > crate::check::MAX_SKEW_S {
        return error(
            StatusCode::FORBIDDEN,
            "at: too far from now (check the box's clock)",
        );
    }
    let (c, s) = (collector.clone(), store.clone());
    let current = current.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let key = match s.key_for(&req.name) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("report tokens: {e}");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is not available",
                );
            }
        };
        let transcript =
            report_wire::api::tokens_transcript(&req.name, req.at, &req.key_id, &req.blinded);
        let signed = key.as_deref().is_some_and(|k| {
            hearth_tunnel::proto::decode(&req.sig)
                .is_some_and(|sig| hearth_tunnel::key::verify(k, &transcript, &sig))
        });
        if !signed {
            return error(
                StatusCode::FORBIDDEN,
                format!("{} is not enrolled with this key", req.name),
            );
        }
        let Some((sk, _, _)) = &c.keys.signing else {
            return error(StatusCode::SERVICE_UNAVAILABLE, "no token key");
        };
        let mut signatures = Vec::with_capacity(req.blinded.len());
        for (i, b) in req.blinded.iter().enumerate() {
            match token::sign_blinded(sk, b) {
                Ok(sig) => signatures.push(sig),
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("blinded[{i}]: {e}")),
            }
        }
        let n = req.blinded.len() as u32;
        match s.grant_tokens(&req.name, &current, n, c.tokens_per_box) {
            Ok(true) => {
                tracing::info!(name = %req.name, n, "report tokens signed");
                Json(TokenResponse { signatures }).into_response()
            }
            Ok(false) => error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this box has had its {} tokens for this key",
                    c.tokens_per_box
                ),
            ),
            Err(e) => {
                tracing::warn!("report tokens: {e}");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the store is not available",
                )
            }
        }
    })
    .await;
    answer.unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}
