//! `POST /functions/{id}/snapshots/{snapshot_id}/invoke`: a typed call on a
//! fresh instance that starts in the snapshot's state.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tensor_wasm_exec::TypedValue;
use tensor_wasm_snapshot::{SnapshotError, WarmStart};

use crate::error::ApiError;
use crate::limits::{is_json, media_type, read_body};
use crate::state::{AppState, Caller, DeployedFunction};

use super::service::{lock, module_for};
use super::{SnapshotPath, target};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypedCall {
    export: Option<String>,
    #[serde(default)]
    args: Vec<serde_json::Value>,
}

#[derive(Serialize)]
struct TypedReply<'a> {
    results: &'a [TypedValue],
    duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    fuel_used: Option<u64>,
    snapshot_id: &'a str,
    /// `baked` (copy-on-write image) or `applied` (state written per call).
    restore: &'static str,
}

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
    let module = module_for(state, f).await?;
    let policy = service.policy()?;
    let dir = service.dir.clone();
    let executor = state.executor().clone();
    let sid = id.clone();
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
    service.remember(&f.record.id.0, id.clone(), warm.clone());
    Ok((id, warm))
}

pub(super) async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    path: SnapshotPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &path.function_id, "function.invoke")?;
    let cap = state
        .max_body_bytes()
        .min(crate::routes::invoke::MAX_TYPED_CALL_BYTES);
    let body = read_body(&headers, body, cap, state.body_timeout()).await?;
    if !is_json(&media_type(&headers)) {
        return Err(ApiError::InvalidRequest(
            "invoking from a snapshot takes a typed call: Content-Type application/json with \
             {\"export\", \"args\"}"
                .into(),
        ));
    }
    let call: TypedCall = crate::json::parse_json(&body)?;
    let export = call.export.ok_or_else(|| {
        ApiError::InvalidRequest("a typed call needs `export` (and `args`)".into())
    })?;

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

    let metrics = state.metrics();
    let _permit = state.admit(&f)?;
    let started = Instant::now();
    // Like the plain invoke route: a span only when spans are exported.
    let span = if state.inner.otel {
        tracing::info_span!("invoke", mode = "snapshot", function_id = %path.function_id,
            snapshot_id = %snapshot_id, export = %export)
    } else {
        tracing::Span::none()
    };
    let result = tracing::Instrument::instrument(
        warm.call_typed(state.executor(), &export, &call.args, &f.context),
        span,
    )
    .await;
    metrics
        .invoke_typed
        .observe(started.elapsed().as_secs_f64());
    let out = match result {
        Ok(out) => {
            metrics.invocation("ok");
            out
        }
        Err(SnapshotError::Exec(e)) => {
            metrics.invocation(e.outcome());
            return Err(ApiError::Exec(e));
        }
        Err(e) => {
            metrics.invocation("error");
            return Err(e.into());
        }
    };
    let reply = TypedReply {
        results: &out.results,
        duration_us: u64::try_from(out.duration.as_micros()).unwrap_or(u64::MAX),
        fuel_used: out.fuel_used,
        snapshot_id: &snapshot_id,
        restore: if warm.is_baked() { "baked" } else { "applied" },
    };
    Ok(axum::Json(
        serde_json::to_value(&reply)
            .map_err(|e| ApiError::Internal(format!("encoding results: {e}")))?,
    )
    .into_response())
}
