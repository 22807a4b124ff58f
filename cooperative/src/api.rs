//! The cooperative's HTTP API on the control listener.

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::registry::Registry;
use crate::store::{EnrolError, Store};

#[derive(Clone)]
pub struct Api {
    pub store: Store,
    pub registry: Registry,
    /// What a box dials for its tunnel: the control listener's name and port.
    pub tunnel_endpoint: String,
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
    let result =
        tokio::task::spawn_blocking(move || store.enrol(&req.token, &req.label, &key)).await;
    match result {
        Ok(Ok(name)) => {
            tracing::info!(%name, "enrolled");
            Json(EnrolAnswer {
                name,
                tunnel: api.tunnel_endpoint.clone(),
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
