//! Snapshot routes: create, list and delete snapshots of a function's warmed
//! instance, and invoke from one.
//!
//! - `POST   /functions/{id}/snapshots` — body `{"init_export": "init"}`
//!   (optional): instantiate, call the init export, capture, write
//!   `<data>/snapshots/<snapshot_id>.tensor-wasm` → `201` with the snapshot.
//! - `GET    /functions/{id}/snapshots` — the function's snapshots, newest first.
//! - `DELETE /functions/{id}/snapshots/{snapshot_id}` → `204`.
//! - `POST   /functions/{id}/snapshots/{snapshot_id}/invoke` (`snapshot_id`
//!   may be `latest`) — a typed call (`{"export","args"}`, as for `invoke`) on
//!   a fresh instance that starts in the snapshot's state.
//!
//! Invoking from a snapshot is explicit: the plain invoke route keeps its
//! semantics (a fresh, cold instance), so a refused snapshot (corrupt, too
//! new after a rollback) never changes what a plain invocation does.
//! Snapshots are prepared once — verified, baked into a copy-on-write module
//! image and compiled (disk-cached) — and then start instances as cheaply as a
//! cold instantiation. Preparation runs right after a create, for the newest
//! snapshot of every function in a background thread at start-up
//! ([`preload`]), and otherwise on first use.
//!
//! Creates and deletes are audited (`snapshot.create`, `snapshot.delete`,
//! target `snapshot` = the id); every operation is counted in
//! `tensor_wasm_snapshots_total{action,outcome}` (`outcome` is `ok` or the
//! error code, e.g. `snapshot_newer_version`).

pub(crate) mod invoke;

use crate::snapshots::{lock, module_for};

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path as AxumPath, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};
use tensor_wasm_snapshot::{
    SnapshotError, SnapshotHeader, SnapshotMeta, WarmStart, warm_and_capture,
};
use utoipa::ToSchema;

use crate::audit::AuditTargetRef;
use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, Caller, DeployedFunction};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/functions/{id}/snapshots", post(create).get(list))
        .route("/functions/{id}/snapshots/{snapshot_id}", delete(remove))
        .route(
            "/functions/{id}/snapshots/{snapshot_id}/invoke",
            post(invoke::invoke),
        )
}

/// The `{id}` / `{snapshot_id}` path segments.
struct SnapshotPath {
    function_id: String,
    snapshot_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for SnapshotPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        AxumPath::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|AxumPath((function_id, snapshot_id))| Self {
                function_id,
                snapshot_id,
            })
            .map_err(|e| ApiError::InvalidRequest(format!("bad path: {e}")))
    }
}

/// A snapshot as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Snapshot)]
struct SnapshotView {
    /// Snapshot id (`snap-…`).
    id: String,
    function_id: String,
    /// RFC 3339, UTC.
    created_at: String,
    /// BLAKE3 of the module the snapshot belongs to, hex.
    module_blake3: String,
    /// The export run before capture, if any.
    init_export: Option<String>,
    /// Snapshot file format version.
    format_version: u16,
    /// Linear memory captured, bytes.
    memory_bytes: u64,
    /// Memory bytes stored (zero pages are not), bytes.
    stored_bytes: u64,
    /// Size of the snapshot file, bytes.
    file_bytes: u64,
    /// Whether the file is signed with the server's snapshot key.
    signed: bool,
}

/// The reply of `GET /functions/{id}/snapshots`, newest first.
#[derive(Serialize, ToSchema)]
struct SnapshotList {
    snapshots: Vec<SnapshotView>,
}

impl SnapshotView {
    fn new(id: &str, function_id: &str, h: &SnapshotHeader) -> Self {
        Self {
            id: id.to_owned(),
            function_id: function_id.to_owned(),
            created_at: h.created_at.clone(),
            module_blake3: h.module_blake3.clone(),
            init_export: h.meta.init_export.clone(),
            format_version: h.format_version,
            memory_bytes: h.memory_bytes,
            stored_bytes: h.stored_bytes,
            file_bytes: h.file_len,
            signed: h.signed,
        }
    }
}

/// The (optional) body of a snapshot create.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SnapshotCreateRequest)]
struct CreateBody {
    /// An export to run (no parameters) before the memory is captured.
    init_export: Option<String>,
}

fn target(f: &DeployedFunction, snapshot: Option<&str>) -> AuditTargetRef {
    AuditTargetRef {
        function_id: Some(f.record.id.0.clone()),
        function_name: Some(f.record.name.clone()),
        tenant: Some(f.record.tenant.clone()),
        snapshot: snapshot.map(str::to_owned),
        ..Default::default()
    }
}

#[utoipa::path(
    post, path = "/functions/{id}/snapshots", operation_id = "createSnapshot", tag = "snapshots",
    summary = "Warm an instance (optionally running `init_export`) and capture its memory (audited)",
    params(("id" = String, Path, description = "Function id")),
    request_body(content((CreateBody = "application/json")), description = "Optional; an empty body means no init export"),
    responses(
        (status = 201, description = "Captured", body = SnapshotView),
        (status = 400, description = "`invalid_request`, `invalid_module`, `missing_export`, `signature_mismatch`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "`quota_exceeded` (`max_snapshots`)", body = ErrorBody),
        (status = 404, description = "`function_not_found`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 422, description = "The module cannot be snapshotted (`snapshot_unsupported`, …) or the init export failed (`trap`, `deadline_exceeded`, …)", body = ErrorBody),
        (status = 429, description = "`rate_limited`, `tenant_concurrency_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `io`, `snapshot_signing_key`", body = ErrorBody),
        (status = 503, description = "`overloaded`, `memory_budget_exhausted`, `busy`, `audit_unavailable`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AxumPath(id): AxumPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &id, "snapshot.create")?;
    let result = create_inner(&state, &f, &headers, body).await;
    let service = &state.inner.snapshots;
    match &result {
        Ok((view, _)) => {
            service.count("create", "ok");
            tracing::info!(function_id = %id, snapshot_id = %view.id, "snapshot created");
            state.audit(
                &caller,
                "snapshot.create",
                Ok(201),
                &target(&f, Some(&view.id)),
            );
        }
        Err(e) => {
            service.count("create", e.code());
            state.audit(&caller, "snapshot.create", Err(e), &target(&f, None));
        }
    }
    let (view, warm) = result?;
    // Prepare the fast path now, off the request, so the first invoke is warm.
    let background = state.clone();
    let snapshot_id = view.id.clone();
    let function_id = f.record.id.0.clone();
    let context = f.context.clone();
    tokio::spawn(async move {
        let service = &background.inner.snapshots;
        if let Ok(Ok(prepared)) = tokio::task::spawn_blocking(warm).await {
            // The first instantiation builds the copy-on-write memory image.
            let _ = prepared.instantiate(background.executor(), &context).await;
            service.remember(&function_id, snapshot_id, Arc::new(prepared));
        }
    });
    let mut resp = (StatusCode::CREATED, axum::Json(view)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

type Preparation = Box<dyn FnOnce() -> Result<WarmStart, SnapshotError> + Send>;

async fn create_inner(
    state: &AppState,
    f: &Arc<DeployedFunction>,
    headers: &HeaderMap,
    body: Body,
) -> Result<(SnapshotView, Preparation), ApiError> {
    let request: CreateBody =
        crate::body::read_json::<Option<CreateBody>>(state, headers, body, state.max_body_bytes())
            .await?
            .unwrap_or_default();
    let service = &state.inner.snapshots;
    let key = service.key()?.cloned();
    // A capped tenant's creation counts against its quota from the check
    // until its file is written. The check runs under the quota lock and
    // reads the in-flight count before listing the files, so concurrent
    // creations are never under-counted (one finishing in between may be
    // counted twice, which errs on the side of the quota).
    let mut creating = None;
    if let Some(max) = state
        .inner
        .tenant_limits
        .quota(&f.record.tenant)
        .max_snapshots
    {
        let _quota = state.inner.quota_lock.lock().await;
        let in_flight = service.creating(&f.record.tenant);
        let (dir, tenant) = (service.dir.clone(), f.record.tenant.clone());
        let held = tokio::task::spawn_blocking(move || {
            dir.list().map(|all| {
                all.iter()
                    .filter(|e| {
                        e.header
                            .as_ref()
                            .is_ok_and(|h| h.meta.tenant.as_deref() == Some(tenant.as_str()))
                    })
                    .count() as u64
            })
        })
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot count task failed: {e}")))??
            + in_flight;
        if held >= max {
            return Err(ApiError::QuotaExceeded(format!(
                "tenant `{}` already keeps or is creating {held} snapshots, its quota (max_snapshots {max}); \
                 delete one first",
                f.record.tenant
            )));
        }
        creating = Some(service.start_creating(&f.record.tenant));
    }
    let module = module_for(state, f).await?;

    // Warming runs guest code: it takes an invocation slot like any call.
    let permit = state.admit(f)?;
    let meta = SnapshotMeta {
        function_id: Some(f.record.id.0.clone()),
        function_name: Some(f.record.name.clone()),
        tenant: Some(f.record.tenant.clone()),
        ..SnapshotMeta::default()
    };
    let mut snapshot = warm_and_capture(
        state.executor(),
        &module,
        request.init_export.as_deref(),
        &f.context,
        meta,
    )
    .await?;

    // The slot is held until the captured copy is encoded and on disk: the
    // copies are this snapshot's memory cost, and a tenant starting many
    // must not hold more of them than it holds slots.
    let dir = service.dir.clone();
    let (snapshot, id, path) = tokio::task::spawn_blocking(move || {
        let (id, path) = dir.save(&mut snapshot, key.as_ref(), None)?;
        Ok::<_, SnapshotError>((snapshot, id, path))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))??;
    drop(permit);
    // On disk now: the listing counts it.
    drop(creating);
    let header = tensor_wasm_snapshot::dir::read_header_file(&path)?;
    lock(&service.latest).insert(f.record.id.0.clone(), id.clone());

    let executor = state.executor().clone();
    let prepare: Preparation =
        Box::new(move || WarmStart::prepare(&executor, &module, Arc::new(snapshot)));
    Ok((SnapshotView::new(&id, &f.record.id.0, &header), prepare))
}

#[utoipa::path(
    get, path = "/functions/{id}/snapshots", operation_id = "listSnapshots", tag = "snapshots",
    summary = "The function's snapshots, newest first",
    params(("id" = String, Path, description = "Function id")),
    responses(
        (status = 200, description = "The snapshots", body = SnapshotList),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `io`", body = ErrorBody),
        (status = 503, description = "`not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AxumPath(id): AxumPath<String>,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &id, "snapshot.list")?;
    let service = &state.inner.snapshots;
    let dir = service.dir.clone();
    let function_id = f.record.id.0.clone();
    let listed = tokio::task::spawn_blocking(move || dir.list_for_function(&function_id))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))?;
    let listed = match listed {
        Ok(l) => {
            service.count("list", "ok");
            l
        }
        Err(e) => {
            service.count("list", e.code());
            return Err(e.into());
        }
    };
    let views: Vec<SnapshotView> = listed
        .iter()
        .rev()
        .map(|(sid, h)| SnapshotView::new(sid, &id, h))
        .collect();
    Ok(axum::Json(SnapshotList { snapshots: views }).into_response())
}

#[utoipa::path(
    delete, path = "/functions/{id}/snapshots/{snapshot_id}", operation_id = "deleteSnapshot", tag = "snapshots",
    summary = "Delete a snapshot (audited)",
    params(
        ("id" = String, Path, description = "Function id"),
        ("snapshot_id" = String, Path, description = "Snapshot id"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "`invalid_request`: a malformed path", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found`, `snapshot_not_found` (or another function's)", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `io`", body = ErrorBody),
        (status = 503, description = "`audit_unavailable`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    path: SnapshotPath,
) -> Result<StatusCode, ApiError> {
    let f = state.function_for(&caller, &path.function_id, "snapshot.delete")?;
    let service = &state.inner.snapshots;
    let dir = service.dir.clone();
    let (function_id, snapshot_id) = (path.function_id.clone(), path.snapshot_id.clone());
    let result = tokio::task::spawn_blocking(move || {
        // Only a snapshot of this function may be deleted through it.
        let owned = dir
            .path_of(&snapshot_id)
            .and_then(|p| tensor_wasm_snapshot::dir::read_header_file(&p))
            .is_ok_and(|h| h.meta.function_id.as_deref() == Some(function_id.as_str()));
        if !owned {
            return Err(SnapshotError::NotFound(snapshot_id));
        }
        dir.delete(&snapshot_id)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))
    .and_then(|r| r.map_err(ApiError::from));
    let target = target(&f, Some(&path.snapshot_id));
    match &result {
        Ok(()) => {
            service.forget(state.executor(), &path.function_id, &path.snapshot_id);
            service.count("delete", "ok");
            state.audit(&caller, "snapshot.delete", Ok(204), &target);
        }
        Err(e) => {
            service.count("delete", e.code());
            state.audit(&caller, "snapshot.delete", Err(e), &target);
        }
    }
    result.map(|()| StatusCode::NO_CONTENT)
}
