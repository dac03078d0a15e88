//! `GET /healthz` (liveness: constant answer, no I/O) and `GET /readyz`.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: always `{"status":"ok"}` — no auth, no I/O, no locks.
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "operations",
    summary = "Liveness: always `{\"status\":\"ok\"}` (no auth, no I/O)",
    responses((status = 200, description = "Alive", body = crate::routes::openapi::Liveness)),
)]
async fn healthz() -> Response {
    let mut resp = r#"{"status":"ok"}"#.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The reply of `GET /readyz`.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness<'a> {
    status: &'static str,
    version: &'static str,
    store: &'static str,
    functions: usize,
    gpu_backend: &'a str,
    dev_mode: bool,
}

/// Readiness: the store answers; reports backend, dev mode and version.
#[utoipa::path(
    get, path = "/readyz", operation_id = "readyz", tag = "operations",
    summary = "Readiness: the store answers; reports version, GPU backend and dev mode (no auth)",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "`not_ready`", body = crate::error::ErrorBody, headers(("Retry-After" = u64))),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.check_loaded()?;
    if let Err(err) = state.store().count().await {
        tracing::warn!(%err, "readiness check: store unavailable");
        return Err(ApiError::NotReady(format!(
            "function store unavailable: {err}"
        )));
    }
    let dev_mode = state.dev_mode();
    Ok(Json(Readiness {
        status: "ready",
        version: crate::VERSION,
        store: "ok",
        functions: state.functions().len(),
        gpu_backend: &state.inner.gpu_backend,
        dev_mode,
    })
    .into_response())
}
