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

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path as AxumPath, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tensor_wasm_exec::TypedValue;
use tensor_wasm_snapshot::dir::{SIGNING_KEY_FILE, load_signing_key};
use tensor_wasm_snapshot::{
    SigningKey, SnapshotDir, SnapshotError, SnapshotHeader, SnapshotMeta, SnapshotModule,
    VerifyPolicy, WarmStart, warm_and_capture,
};

use crate::audit::{AuditLog, AuditRecord, AuditTargetRef, Outcome};
use crate::error::{ApiError, error_body};
use crate::limits::{is_json, media_type, read_body};
use crate::state::{AppState, Caller, DeployedFunction};

/// Prepared snapshots kept in memory (each holds a compiled module and its
/// memory image); beyond this the oldest-inserted is dropped.
const MAX_PREPARED: usize = 64;

/// Labels of `tensor_wasm_snapshots_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SnapshotLabels {
    action: &'static str,
    outcome: &'static str,
}

/// Snapshot state shared by the routes: directory, signing key, metrics and
/// caches of instrumented modules and prepared snapshots.
pub struct SnapshotService {
    dir: SnapshotDir,
    signing_key: Result<Option<SigningKey>, String>,
    total: Family<SnapshotLabels, Counter>,
    modules: Mutex<HashMap<String, SnapshotModule>>,
    prepared: Mutex<Vec<(String, Arc<WarmStart>)>>,
    latest: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for SnapshotService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotService")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SnapshotService {
    /// Registers `tensor_wasm_snapshots_total` and reads the signing key
    /// (`<data>/snapshot-signing.key`, when present: snapshots are then signed
    /// and must carry its signature to be used).
    pub fn register(registry: &mut Registry, data_dir: &Path) -> Self {
        let total = Family::<SnapshotLabels, Counter>::default();
        registry.register(
            "tensor_wasm_snapshots",
            "Snapshot operations by action (create, list, delete, restore, preload) and outcome",
            total.clone(),
        );
        let key_path = data_dir.join(SIGNING_KEY_FILE);
        let signing_key = if key_path.exists() {
            load_signing_key(&key_path).map(Some).map_err(|e| {
                tracing::error!(error = %e, "snapshot signing key unusable; snapshot operations will fail");
                e.to_string()
            })
        } else {
            Ok(None)
        };
        Self {
            dir: SnapshotDir::in_data_dir(data_dir),
            signing_key,
            total,
            modules: Mutex::default(),
            prepared: Mutex::default(),
            latest: Mutex::default(),
        }
    }

    fn count(&self, action: &'static str, outcome: &'static str) {
        self.total
            .get_or_create(&SnapshotLabels { action, outcome })
            .inc();
    }

    fn key(&self) -> Result<Option<&SigningKey>, SnapshotFailure> {
        self.signing_key
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| SnapshotFailure::Internal(format!("snapshot signing key: {e}")))
    }

    fn policy(&self) -> Result<VerifyPolicy, SnapshotFailure> {
        Ok(self.key()?.map(VerifyPolicy::require).unwrap_or_default())
    }

    fn prepared(&self, snapshot_id: &str) -> Option<Arc<WarmStart>> {
        lock(&self.prepared)
            .iter()
            .find(|(id, _)| id == snapshot_id)
            .map(|(_, w)| w.clone())
    }

    fn remember(&self, snapshot_id: String, warm: Arc<WarmStart>) {
        let mut prepared = lock(&self.prepared);
        prepared.retain(|(id, _)| *id != snapshot_id);
        if prepared.len() >= MAX_PREPARED {
            prepared.remove(0);
        }
        prepared.push((snapshot_id, warm));
    }

    /// Deletes every snapshot file of a deleted function and drops what is
    /// cached for it; returns how many files went. Blocking (file system).
    pub(crate) fn remove_function(&self, function_id: &str) -> Result<usize, SnapshotError> {
        let listed = self.dir.list_for_function(function_id)?;
        let mut removed = 0;
        for (snapshot_id, _) in &listed {
            match self.dir.delete(snapshot_id) {
                Ok(()) | Err(SnapshotError::NotFound(_)) => removed += 1,
                Err(e) => return Err(e),
            }
            lock(&self.prepared).retain(|(id, _)| id != snapshot_id);
        }
        lock(&self.latest).remove(function_id);
        let prefix = format!("{function_id}:");
        lock(&self.modules).retain(|key, _| !key.starts_with(&prefix));
        Ok(removed)
    }

    fn forget(&self, function_id: &str, snapshot_id: &str) {
        lock(&self.prepared).retain(|(id, _)| id != snapshot_id);
        let mut latest = lock(&self.latest);
        if latest.get(function_id).is_some_and(|l| l == snapshot_id) {
            latest.remove(function_id);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/functions/{id}/snapshots", post(create).get(list))
        .route("/functions/{id}/snapshots/{snapshot_id}", delete(remove))
        .route(
            "/functions/{id}/snapshots/{snapshot_id}/invoke",
            post(invoke),
        )
}

/// Why a snapshot request failed: a gateway error, or a snapshot error with
/// its own status and code.
enum SnapshotFailure {
    Api(ApiError),
    Snapshot(SnapshotError),
    Internal(String),
}

impl From<ApiError> for SnapshotFailure {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

impl From<SnapshotError> for SnapshotFailure {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Exec(e) => Self::Api(ApiError::Exec(e)),
            other => Self::Snapshot(other),
        }
    }
}

impl SnapshotFailure {
    fn status(&self) -> StatusCode {
        match self {
            Self::Api(e) => e.status(),
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Snapshot(e) => match e {
                SnapshotError::NotFound(_) => StatusCode::NOT_FOUND,
                SnapshotError::InvalidModule(_) => StatusCode::BAD_REQUEST,
                SnapshotError::Io { .. } | SnapshotError::SigningKey { .. } => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                // The snapshot (or the module) cannot be used: refused, not a server fault.
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Api(e) => e.code(),
            Self::Internal(_) => "internal",
            Self::Snapshot(e) => e.code(),
        }
    }
}

impl IntoResponse for SnapshotFailure {
    fn into_response(self) -> Response {
        let (status, code) = (self.status(), self.code());
        let message = match self {
            Self::Api(e) => return e.into_response(),
            Self::Internal(m) => {
                tracing::error!(error = %m, "snapshot request failed");
                "internal error".to_string()
            }
            Self::Snapshot(e) => {
                if status.is_server_error() {
                    tracing::error!(error = %e, code, "snapshot request failed");
                }
                e.to_string()
            }
        };
        let mut resp = (status, error_body(code, &message)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
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
#[derive(Debug, Serialize)]
struct SnapshotView {
    id: String,
    function_id: String,
    created_at: String,
    module_blake3: String,
    init_export: Option<String>,
    format_version: u16,
    memory_bytes: u64,
    stored_bytes: u64,
    file_bytes: u64,
    signed: bool,
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

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CreateBody {
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

/// Audits a finished state change with the snapshot error's own code.
fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    result: Result<u16, &SnapshotFailure>,
    target: &AuditTargetRef,
) {
    let (outcome, status, error) = match result {
        Ok(status) => (Outcome::Success, status, None),
        Err(SnapshotFailure::Api(e)) => {
            return state.audit(caller, action, Outcome::Failure, &Err(e), target);
        }
        Err(e) => (Outcome::Failure, e.status().as_u16(), Some(e.code())),
    };
    let trace_id = caller.ctx.trace_id(state.inner.otel);
    state.inner.audit.write(&AuditRecord {
        time: AuditLog::now(),
        action,
        outcome,
        status,
        actor: &caller.actor,
        target,
        request_id: &caller.ctx.request_id,
        trace_id: trace_id.as_deref(),
        method: caller.ctx.method,
        route: caller.ctx.route,
        error,
    });
}

/// The function's instrumented module, instrumented and compiled once.
async fn module_for(
    state: &AppState,
    f: &Arc<DeployedFunction>,
) -> Result<SnapshotModule, SnapshotFailure> {
    let (state, f) = (state.clone(), f.clone());
    tokio::task::spawn_blocking(move || module_for_blocking(&state, &f))
        .await
        .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))?
}

fn module_for_blocking(
    state: &AppState,
    f: &DeployedFunction,
) -> Result<SnapshotModule, SnapshotFailure> {
    let service = &state.inner.snapshots;
    let key = format!("{}:{}", f.record.id.0, f.record.blake3);
    if let Some(m) = lock(&service.modules).get(&key) {
        return Ok(m.clone());
    }
    let wasm = state
        .store()
        .wasm(&f.record.id)
        .map_err(|e| SnapshotFailure::Api(e.into()))?
        .ok_or(SnapshotFailure::Api(ApiError::FunctionNotFound))?;
    let module = SnapshotModule::prepare(state.executor(), &wasm)?;
    lock(&service.modules).insert(key, module.clone());
    Ok(module)
}

/// Prepares the newest snapshot of every deployed function in a background
/// thread, so the first invocation from a snapshot after a restart is as
/// warm as any other. Failures are logged and counted; they only leave that
/// snapshot to be prepared (or refused) on first use.
pub(crate) fn preload(state: &AppState) {
    let state = state.clone();
    let spawned = std::thread::Builder::new()
        .name("tensor-wasm-snapshot-preload".into())
        .spawn(move || {
            let service = &state.inner.snapshots;
            let Ok(listed) = service.dir.list() else {
                return;
            };
            let mut newest: HashMap<String, String> = HashMap::new();
            for entry in listed {
                if let Ok(h) = &entry.header
                    && let Some(fid) = &h.meta.function_id
                {
                    // `list` is oldest first: the last one seen wins.
                    newest.insert(fid.clone(), entry.id);
                }
            }
            // Wasmtime builds a module's copy-on-write memory image on its first
            // instantiation: do that here, not in the first request.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok();
            let mut prepared = 0usize;
            for (function_id, snapshot_id) in newest.into_iter().take(MAX_PREPARED) {
                let Some(f) = state.functions().get(&function_id) else {
                    continue;
                };
                lock(&service.latest).insert(function_id.clone(), snapshot_id.clone());
                let result = service.policy().and_then(|policy| {
                    let module = module_for_blocking(&state, &f)?;
                    let snapshot = service.dir.load(&snapshot_id, &policy, None)?;
                    Ok(WarmStart::prepare(
                        state.executor(),
                        &module,
                        Arc::new(snapshot),
                    )?)
                });
                match result {
                    Ok(warm) => {
                        if let Some(rt) = &runtime {
                            let _ = rt.block_on(warm.instantiate(state.executor(), &f.context));
                        }
                        service.remember(snapshot_id, Arc::new(warm));
                        service.count("preload", "ok");
                        prepared += 1;
                    }
                    Err(e) => {
                        service.count("preload", e.code());
                        tracing::warn!(%function_id, %snapshot_id, code = e.code(),
                            "snapshot not preloaded; it will be prepared or refused on first use");
                    }
                }
            }
            if prepared > 0 {
                tracing::info!(prepared, "snapshots preloaded");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the snapshot preload thread");
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    AxumPath(id): AxumPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, SnapshotFailure> {
    let f = state.function_for(&caller, &id, "snapshot.create")?;
    let result = create_inner(&state, &f, &headers, body).await;
    let service = &state.inner.snapshots;
    match &result {
        Ok((view, _)) => {
            service.count("create", "ok");
            tracing::info!(function_id = %id, snapshot_id = %view.id, "snapshot created");
            audit(
                &state,
                &caller,
                "snapshot.create",
                Ok(201),
                &target(&f, Some(&view.id)),
            );
        }
        Err(e) => {
            service.count("create", e.code());
            audit(
                &state,
                &caller,
                "snapshot.create",
                Err(e),
                &target(&f, None),
            );
        }
    }
    let (view, warm) = result?;
    // Prepare the fast path now, off the request, so the first invoke is warm.
    let background = state.clone();
    let snapshot_id = view.id.clone();
    let context = f.context.clone();
    tokio::spawn(async move {
        let service = &background.inner.snapshots;
        if let Ok(Ok(prepared)) = tokio::task::spawn_blocking(warm).await {
            // The first instantiation builds the copy-on-write memory image.
            let _ = prepared.instantiate(background.executor(), &context).await;
            service.remember(snapshot_id, Arc::new(prepared));
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
) -> Result<(SnapshotView, Preparation), SnapshotFailure> {
    let body = read_body(headers, body, state.max_body_bytes()).await?;
    let request: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else if is_json(&media_type(headers)) || headers.get(header::CONTENT_TYPE).is_none() {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?
    } else {
        return Err(ApiError::UnsupportedMediaType(media_type(headers)).into());
    };
    let service = &state.inner.snapshots;
    let key = service.key()?.cloned();
    let module = module_for(state, f).await?;

    // Warming runs guest code: it takes an invocation slot like any call.
    let Ok(permit) = state.inner.invocations.clone().try_acquire_owned() else {
        return Err(ApiError::Overloaded.into());
    };
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
    drop(permit);

    let dir = service.dir.clone();
    let (snapshot, id, path) = tokio::task::spawn_blocking(move || {
        let (id, path) = dir.save(&mut snapshot, key.as_ref(), None)?;
        Ok::<_, SnapshotError>((snapshot, id, path))
    })
    .await
    .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))??;
    let header = tensor_wasm_snapshot::dir::read_header_file(&path)?;
    lock(&service.latest).insert(f.record.id.0.clone(), id.clone());

    let executor = state.executor().clone();
    let prepare: Preparation =
        Box::new(move || WarmStart::prepare(&executor, &module, Arc::new(snapshot)));
    Ok((SnapshotView::new(&id, &f.record.id.0, &header), prepare))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    AxumPath(id): AxumPath<String>,
) -> Result<Response, SnapshotFailure> {
    let f = state.function_for(&caller, &id, "snapshot.list")?;
    let service = &state.inner.snapshots;
    let dir = service.dir.clone();
    let function_id = f.record.id.0.clone();
    let listed = tokio::task::spawn_blocking(move || dir.list_for_function(&function_id))
        .await
        .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))?;
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
    Ok(axum::Json(serde_json::json!({ "snapshots": views })).into_response())
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    path: SnapshotPath,
) -> Result<StatusCode, SnapshotFailure> {
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
    .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))
    .and_then(|r| r.map_err(SnapshotFailure::from));
    let target = target(&f, Some(&path.snapshot_id));
    match &result {
        Ok(()) => {
            service.forget(&path.function_id, &path.snapshot_id);
            service.count("delete", "ok");
            audit(&state, &caller, "snapshot.delete", Ok(204), &target);
        }
        Err(e) => {
            service.count("delete", e.code());
            audit(&state, &caller, "snapshot.delete", Err(e), &target);
        }
    }
    result.map(|()| StatusCode::NO_CONTENT)
}

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
) -> Result<(String, Arc<WarmStart>), SnapshotFailure> {
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
                    .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))??
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
    if let Some(w) = service.prepared(&id) {
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
    .map_err(|e| SnapshotFailure::Internal(format!("snapshot task failed: {e}")))??;
    let warm = Arc::new(warm);
    service.remember(id.clone(), warm.clone());
    Ok((id, warm))
}

async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    path: SnapshotPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, SnapshotFailure> {
    let f = state.function_for(&caller, &path.function_id, "function.invoke")?;
    let body = read_body(&headers, body, state.max_body_bytes()).await?;
    if !is_json(&media_type(&headers)) {
        return Err(ApiError::InvalidRequest(
            "invoking from a snapshot takes a typed call: Content-Type application/json with \
             {\"export\", \"args\"}"
                .into(),
        )
        .into());
    }
    let call: TypedCall = serde_json::from_slice(&body)
        .map_err(|e| ApiError::InvalidRequest(format!("invalid JSON body: {e}")))?;
    let export = call.export.ok_or_else(|| {
        ApiError::InvalidRequest("a typed call needs `export` (and `args`)".into())
    })?;

    let service = &state.inner.snapshots;
    let (snapshot_id, warm) = match warm_start(&state, &f, &path.snapshot_id).await {
        Ok(w) => w,
        Err(e) => {
            service.count("restore", e.code());
            if let SnapshotFailure::Snapshot(err) = &e
                && err.is_bad_snapshot()
            {
                tracing::warn!(function_id = %path.function_id, snapshot = %path.snapshot_id,
                    code = err.code(), error = %err, "snapshot refused");
            }
            return Err(e);
        }
    };
    service.count("restore", "ok");

    let metrics = state.metrics();
    let Ok(_permit) = state.inner.invocations.clone().try_acquire_owned() else {
        metrics.invocation("busy");
        return Err(ApiError::Overloaded.into());
    };
    let started = Instant::now();
    let span = tracing::info_span!("invoke", mode = "snapshot", function_id = %path.function_id,
        snapshot_id = %snapshot_id, export = %export);
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
            return Err(ApiError::Exec(e).into());
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
            .map_err(|e| SnapshotFailure::Internal(format!("encoding results: {e}")))?,
    )
    .into_response())
}
