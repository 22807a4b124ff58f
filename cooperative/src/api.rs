//! The cooperative's HTTP API on the control listener.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::check::{CheckReport, CheckRequest, Prober};
use crate::registry::Registry;
use crate::store::{EnrolError, Store};

#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub registry: Registry,
    /// What a box dials for its tunnel: the control listener's name and port.
    pub tunnel_endpoint: String,
    pub prober: Arc<Prober>,
    /// One check per name per this, on every edge (the slot is in the store).
    pub min_interval: Duration,
    /// The energy reports' collector (collector.rs).
    pub collector: Arc<crate::collector::Collector>,
    /// The backup store's accounts (`[store]`), when the cooperative runs one.
    pub backup_store: Option<Arc<crate::backup_store::Accounts>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    pub token: String,
    /// The label the box wants: `<label>.<domain>`.
    pub label: String,
    /// base64url of the box's Ed25519 public key.
    pub public_key: String,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrolAnswer {
    pub name: String,
    pub tunnel: String,
    /// The box's own account in the cooperative's backup store, when it runs one: given once,
    /// here; a later enrolment of the name gives a new password. Absent from the answers of
    /// cooperatives without a store (and ignored by boxes that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<crate::backup_store::StoreAccount>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(ApiError { error: msg.into() })).into_response()
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/api/v1/enrol", post(enrol))
        .route("/api/v1/health", get(health))
        .route("/api/v1/check", post(check))
        .route(
            report_wire::api::REPORTS_PATH,
            post(|State(api): State<Api>, body| async move {
                crate::collector::post_report(api.collector, api.store, body).await
            })
            .layer(DefaultBodyLimit::max(report_wire::MAX_BYTES)),
        )
        .route(
            report_wire::api::REPORT_KEY_PATH,
            get(|State(api): State<Api>| async move {
                crate::collector::report_key(&api.collector)
            }),
        )
        // 16 blinded messages of 2048 bits in base64url are about 5.6 KB.
        .route(
            report_wire::api::REPORT_TOKENS_PATH,
            post(|State(api): State<Api>, body| async move {
                crate::collector::post_tokens(api.collector, api.store, body).await
            })
            .layer(DefaultBodyLimit::max(16 * 1024)),
        )
        .layer(DefaultBodyLimit::max(4096))
        .with_state(api)
}

async fn enrol(
    State(api): State<Api>,
    body: Result<Json<EnrolRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let Some(key) = hearth_tunnel::proto::decode(&req.public_key) else {
        return error(StatusCode::BAD_REQUEST, "public_key is not base64url");
    };
    let store = api.store.clone();
    let label = req.label.clone();
    let result =
        tokio::task::spawn_blocking(move || store.enrol(&req.token, &req.label, &key)).await;
    match result {
        Ok(Ok(name)) => {
            tracing::info!(%name, "enrolled");
            // The name is the box's now; its store account follows. Should that fail, the
            // box is told to try again: enrolling again with the same token, label and key is
            // harmless, and makes the account then.
            let store = match api.backup_store.clone() {
                None => None,
                Some(accounts) => {
                    match tokio::task::spawn_blocking(move || accounts.make(&label)).await {
                        Ok(Ok(account)) => {
                            tracing::info!(%name, user = %account.user, "backup store account made");
                            Some(account)
                        }
                        Ok(Err(e)) => {
                            tracing::error!(%name, "backup store account: {e:#}");
                            return error(
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!(
                                    "{name} is enrolled, but its backup store account could \
                                     not be made; enrol again with the same code: {e:#}"
                                ),
                            );
                        }
                        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                    }
                }
            };
            Json(EnrolAnswer {
                name,
                tunnel: api.tunnel_endpoint.clone(),
                store,
            })
            .into_response()
        }
        Ok(Err(e)) => {
            let status = match e {
                EnrolError::UnknownToken | EnrolError::TokenUsed => StatusCode::FORBIDDEN,
                EnrolError::Taken(_) | EnrolError::Reserved(_) => StatusCode::CONFLICT,
                EnrolError::BadLabel(_) | EnrolError::BadKey => StatusCode::BAD_REQUEST,
                EnrolError::Db(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub tunnels: usize,
}

async fn health(State(api): State<Api>) -> Json<Health> {
    Json(Health {
        ok: true,
        tunnels: api.registry.len(),
    })
}

/// `POST /api/v1/check`: an enrolled box, signing with its key, asks to be looked at from
/// outside. 403: not enrolled or not its signature; 429: asked too often.
async fn check(
    State(api): State<Api>,
    body: Result<Json<CheckRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(req) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if (now - req.at).abs() > crate::check::MAX_SKEW_S {
        return error(
            StatusCode::FORBIDDEN,
            "the request's time is too far from now (check the box's clock)",
        );
    }
    let store = api.store.clone();
    let name = req.name.clone();
    let key = match tokio::task::spawn_blocking(move || store.key_for(&name)).await {
        Ok(Ok(k)) => k,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let signed = key.as_deref().is_some_and(|k| {
        hearth_tunnel::proto::decode(&req.sig).is_some_and(|sig| {
            hearth_tunnel::key::verify(k, &crate::check::transcript(&req.name, req.at), &sig)
        })
    });
    if !signed {
        return error(
            StatusCode::FORBIDDEN,
            format!("{} is not enrolled with this key", req.name),
        );
    }
    let (store, name, interval) = (api.store.clone(), req.name.clone(), api.min_interval);
    match tokio::task::spawn_blocking(move || store.take_check_slot(&name, interval)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "checked a moment ago; ask again later",
            )
        }
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let report: CheckReport = api.prober.probe(&req.name, now).await;
    tracing::info!(name = %req.name, ok = report.matrix_ok, "outside-in check");
    Json(report).into_response()
}
