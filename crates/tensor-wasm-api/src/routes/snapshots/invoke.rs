//! `POST /functions/{id}/snapshots/{snapshot_id}/invoke`: a typed call on a
//! fresh instance that starts in the snapshot's state.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use tensor_wasm_snapshot::{SnapshotError, WarmStart};

use crate::body::{is_json, media_type, read_body};
use crate::error::{ApiError, ErrorBody};
use crate::invocation::{
    self, MAX_TYPED_CALL_BYTES, Mode, TypedCall, TypedCallBody, TypedReply, micros,
};
use crate::state::{AppState, Caller, DeployedFunction};

use super::{SnapshotPath, target};
use crate::snapshots::{lock, module_for};

/// The prepared snapshot `snapshot_id` (or the newest, for `latest`) of `f`.
async fn warm_start(
    state: &AppState,
    f: &Arc<DeployedFunction>,
    snapshot_id: &str,
) -> Result<(String, Arc<WarmStart>), ApiError> {
    let service = &state.inner.snapshots;
    let function_id = f.record.id.0.clone();
    let id = if snapshot_id == "latest" {
        let cached = lock(&service.latest).get(&function_id).cloned();
        match cached {
            Some(id) => id,
            None => {
                let dir = service.dir.clone();
                let fid = function_id.clone();
                let newest = tokio::task::spawn_blocking(move || dir.list_for_function(&fid))
                    .await
                    .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??
                    .pop()
                    .map(|(id, _)| id)
                    .ok_or_else(|| {
                        SnapshotError::NotFound(format!("latest (function {function_id} has none)"))
                    })?;
                lock(&service.latest).insert(function_id.clone(), newest.clone());
                newest
            }
        }
    } else {
        snapshot_id.to_owned()
    };
    if let Some(w) = service.prepared(&function_id, &id) {
        return Ok((id, w));
    }
    // Not prepared yet (an older snapshot, or one evicted from memory): one
    // preparation, however many calls arrive for it meanwhile. Its compiles
    // are bounded by the engine's compile slots.
    let preparation = service.preparation(&function_id, &id);
    let result = preparation
        .get_or_try_init(|| prepare(state, f, &id))
        .await
        .cloned();
    service.end_preparation(&function_id, &id, &preparation);
    Ok((id, result?))
}

/// Reads, verifies and prepares snapshot `id` of `f`, and keeps it prepared.
async fn prepare(
    state: &AppState,
    f: &Arc<DeployedFunction>,
    id: &str,
) -> Result<Arc<WarmStart>, ApiError> {
    let service = &state.inner.snapshots;
    let function_id = f.record.id.0.clone();
    let module = module_for(state, f).await?;
    let policy = service.policy()?;
    let dir = service.dir.clone();
    let executor = state.executor().clone();
    let sid = id.to_owned();
    let warm = tokio::task::spawn_blocking(move || {
        let snapshot = dir.load(&sid, &policy, None)?;
        if snapshot.meta.function_id.as_deref() != Some(function_id.as_str()) {
            return Err(SnapshotError::NotFound(sid));
        }
        WarmStart::prepare(&executor, &module, Arc::new(snapshot))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??;
    let warm = Arc::new(warm);
    service.remember(&f.record.id.0, id.to_owned(), warm.clone());
    Ok(warm)
}

#[utoipa::path(
    post, path = "/functions/{id}/snapshots/{snapshot_id}/invoke", operation_id = "invokeSnapshot", tag = "snapshots",
    summary = "A typed call on a fresh instance that starts in the snapshot's state",
    params(
        ("id" = String, Path, description = "Function id"),
        ("snapshot_id" = String, Path, description = "Snapshot id, or `latest`"),
    ),
    request_body(content((TypedCallBody = "application/json"))),
    responses(
        (status = 200, description = "The call ran", body = TypedReply),
        (status = 400, description = "`invalid_request` (also: not JSON), `missing_export`, `signature_mismatch`, `invalid_module`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found`, `snapshot_not_found`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (64 KiB)", body = ErrorBody),
        (status = 422, description = "The snapshot cannot be used (`snapshot_*`) or the guest failed (`trap`, `deadline_exceeded`, …)", body = ErrorBody),
        (status = 429, description = "`rate_limited`, `tenant_concurrency_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `io`, `snapshot_signing_key`", body = ErrorBody),
        (status = 503, description = "`overloaded`, `memory_budget_exhausted`, `busy`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
pub(super) async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    path: SnapshotPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &path.function_id, "function.invoke")?;
    let cap = state.max_body_bytes().min(MAX_TYPED_CALL_BYTES);
    let body = read_body(&headers, body, cap, state.body_timeout()).await?;
    if !is_json(&media_type(&headers)) {
        return Err(ApiError::InvalidRequest(
            "invoking from a snapshot takes a typed call: Content-Type application/json with \
             {\"export\", \"args\"}"
                .into(),
        ));
    }
    let TypedCall { export, args } = TypedCall::parse(&body)?;
    // Admitted before the snapshot is prepared: a caller over its share
    // starts no preparation.
    let permit = invocation::admit(&state, &f)?;

    let service = &state.inner.snapshots;
    let (snapshot_id, warm) = match warm_start(&state, &f, &path.snapshot_id).await {
        Ok(w) => w,
        Err(e) => {
            service.count("restore", e.code());
            if let ApiError::Snapshot(err) = &e
                && err.is_bad_snapshot()
            {
                tracing::warn!(function_id = %path.function_id, snapshot = %path.snapshot_id,
                    code = err.code(), error = %err, "snapshot refused");
            }
            // A snapshot id this function does not own — absent, or another
            // function's or tenant's — is a denied reference: audit it.
            if let ApiError::Snapshot(SnapshotError::NotFound(_)) = &e {
                state.audit_denied(
                    &caller,
                    "snapshot.invoke",
                    &e,
                    &target(&f, Some(&path.snapshot_id)),
                );
            }
            return Err(e);
        }
    };
    service.count("restore", "ok");

    let call = warm.call_typed(state.executor(), &export, &args, &f.context);
    let out = invocation::run(
        &state,
        &f,
        permit,
        Mode::Snapshot,
        &export,
        Some(&snapshot_id),
        call,
    )
    .await?;
    let reply = TypedReply {
        results: &out.results,
        duration_us: micros(out.duration),
        fuel_used: out.fuel_used,
        snapshot_id: Some(&snapshot_id),
        restore: Some(if warm.is_baked() { "baked" } else { "applied" }),
    };
    Ok(axum::Json(
        serde_json::to_value(&reply)
            .map_err(|e| ApiError::Internal(format!("encoding results: {e}")))?,
    )
    .into_response())
}
