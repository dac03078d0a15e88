//! The function registry routes: deploy, list, get, delete.
//!
//! A deploy validates and compiles the module, commits it to the durable
//! store, and only then publishes it in the in-memory registry; a delete
//! removes it from the store first. Both are audited whatever their outcome.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tensor_wasm_exec::ExportSignature;
use tensor_wasm_store::{FunctionId, FunctionLimits, FunctionRecord};
use utoipa::{IntoParams, ToSchema};

use crate::audit::{AuditLog, AuditTargetRef};
use crate::auth::{Actor, DEFAULT_TENANT, ScopeKind, is_valid_tenant};
use crate::body::{is_json, media_type, read_body};
use crate::config::{above_ceiling, check_limit_values};
use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, Caller, DeployedFunction};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/functions", get(list).post(create))
        .route("/functions/{id}", get(get_one).delete(delete))
}

/// The `{id}` path segment, with rejections in the JSON error shape.
pub(crate) struct FunctionIdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for FunctionIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(id)| Self(id))
            .map_err(|e| ApiError::InvalidRequest(format!("bad function id in path: {e}")))
    }
}

/// Parses the query string, with rejections in the JSON error shape.
pub(crate) fn query<T: serde::de::DeserializeOwned>(uri: &Uri) -> Result<T, ApiError> {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .map_err(|e| ApiError::InvalidRequest(format!("bad query string: {}", e.body_text())))
}

/// A function as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Function)]
pub struct FunctionView<'a> {
    /// Opaque id: `fn_` and 128 random bits in hex.
    id: &'a str,
    name: &'a str,
    tenant: &'a str,
    /// BLAKE3 of the module, hex.
    blake3: &'a str,
    size_bytes: u64,
    /// RFC 3339, UTC.
    created_at: &'a str,
    /// The function's own settings (`null` = not set).
    #[schema(value_type = LimitsRequest)]
    limits: &'a FunctionLimits,
    effective_limits: EffectiveLimits,
    #[schema(value_type = Vec<crate::routes::openapi::ExportSignatureSchema>)]
    exports: &'a [ExportSignature],
}

/// The limits an invocation of the function actually gets (server
/// defaults, tenant overrides and the function's own settings applied).
#[derive(Debug, Serialize, ToSchema)]
struct EffectiveLimits {
    timeout_ms: u64,
    max_memory_bytes: u64,
    /// `null` = unlimited.
    fuel: Option<u64>,
    max_output_bytes: u64,
}

impl<'a> From<&'a DeployedFunction> for FunctionView<'a> {
    fn from(f: &'a DeployedFunction) -> Self {
        let r = &f.record;
        Self {
            id: &r.id.0,
            name: &r.name,
            tenant: &r.tenant,
            blake3: &r.blake3,
            size_bytes: r.size_bytes,
            created_at: &r.created_at,
            limits: &r.limits,
            effective_limits: {
                let l = &f.context.limits;
                EffectiveLimits {
                    timeout_ms: u64::try_from(l.timeout.as_millis()).unwrap_or(u64::MAX),
                    max_memory_bytes: l.max_memory_bytes,
                    fuel: l.fuel,
                    max_output_bytes: l.max_output_bytes as u64,
                }
            },
            exports: f.compiled.exports(),
        }
    }
}

/// Per-function limit overrides in a deploy request (`null` or absent =
/// the tenant's or server's default).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FunctionLimits)]
struct LimitsRequest {
    /// Wall-clock deadline per invocation, 1–300000 ms.
    #[schema(minimum = 1, maximum = 300000)]
    timeout_ms: Option<u64>,
    /// Linear-memory cap, 65536 bytes up to the engine's ceiling.
    #[schema(minimum = 65536)]
    max_memory_bytes: Option<u64>,
    /// Fuel per invocation, at least 1.
    #[schema(minimum = 1)]
    fuel: Option<u64>,
    /// Cap on captured stdout, at most 64 MiB.
    #[schema(maximum = 67108864)]
    max_output_bytes: Option<u64>,
}

/// The JSON deploy body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = DeployRequest)]
struct CreateJson {
    /// 1–128 characters of `[A-Za-z0-9._-]`; need not be unique.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    name: String,
    /// The module (or WAT text), standard base64, padding optional.
    #[schema(min_length = 1, pattern = "^[A-Za-z0-9+/]+=*$")]
    wasm_b64: String,
    /// Owning tenant: admins and dev mode only; a tenant token may name only its own.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: Option<String>,
    #[serde(default)]
    limits: Option<LimitsRequest>,
}

/// The query of a raw deploy (`application/wasm` body).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct CreateQuery {
    /// Function name; required for a raw upload.
    #[param(pattern = "^[A-Za-z0-9._-]{1,128}$")]
    name: Option<String>,
    /// Owning tenant (as in the JSON form).
    #[param(pattern = "^[A-Za-z0-9._-]{1,64}$")]
    tenant: Option<String>,
    /// Limit override (as in the JSON form's `limits`).
    #[param(minimum = 1, maximum = 300000)]
    timeout_ms: Option<u64>,
    /// Limit override (as in the JSON form's `limits`).
    #[param(minimum = 65536)]
    max_memory_bytes: Option<u64>,
    /// Limit override (as in the JSON form's `limits`).
    #[param(minimum = 1)]
    fuel: Option<u64>,
    /// Limit override (as in the JSON form's `limits`).
    #[param(maximum = 67108864)]
    max_output_bytes: Option<u64>,
}

struct CreateRequest {
    name: String,
    tenant: Option<String>,
    limits: LimitsRequest,
    wasm: Vec<u8>,
}

#[utoipa::path(
    post, path = "/functions", operation_id = "deployFunction", tag = "functions",
    summary = "Deploy a function: JSON with base64, or the raw module with `?name=`",
    description = "The module is validated and compiled before anything is stored; \
        every attempt is audited (`function.create`). Raw form: `application/wasm` or \
        `application/octet-stream` (or no content type and a body starting with the Wasm \
        magic), with the query parameters.",
    params(CreateQuery),
    request_body(content(
        (CreateJson = "application/json"),
        ([u8] = "application/wasm"),
        ([u8] = "application/octet-stream"),
    )),
    responses(
        (status = 201, description = "Deployed", body = FunctionView),
        (status = 400, description = "`invalid_request`, `invalid_module`, `module_too_complex`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "`forbidden` (another tenant), `quota_exceeded`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 409, description = "`conflict`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `store_error`", body = ErrorBody),
        (status = 503, description = "`audit_unavailable`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn create(
    State(state): State<AppState>,
    caller: Caller,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut target = AuditTargetRef::default();
    let result = deploy(&state, &caller, &uri, &headers, body, &mut target).await;
    let status = result.as_ref().map(|_| 201);
    state.audit(&caller, "function.create", status, &target);
    let f = result?;
    Ok((StatusCode::CREATED, Json(FunctionView::from(&*f))).into_response())
}

async fn deploy(
    state: &AppState,
    caller: &Caller,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    target: &mut AuditTargetRef,
) -> Result<Arc<DeployedFunction>, ApiError> {
    let body = read_body(headers, body, state.max_body_bytes(), state.body_timeout()).await?;
    let req = parse_create(uri, headers, body)?;
    target.function_name = Some(req.name.clone());
    let tenant = owning_tenant(&caller.actor, req.tenant)?;
    target.tenant = Some(tenant.clone());
    let limits = validate_limits(state, &tenant, req.limits)?;
    let size_bytes = req.wasm.len() as u64;
    let quota = state.inner.tenant_limits.quota(&tenant);
    let _quota_guard = if quota.max_functions.is_some() || quota.max_stored_bytes.is_some() {
        let guard = state.inner.quota_lock.lock().await;
        check_quota(state, &tenant, &quota, size_bytes)?;
        Some(guard)
    } else {
        None
    };

    let executor = state.executor().clone();
    let wasm = Arc::new(req.wasm);
    let wasm_for_compile = wasm.clone();
    let compiled = tokio::task::spawn_blocking(move || executor.compile(&wasm_for_compile))
        .await
        .map_err(|e| ApiError::Internal(format!("compile task failed: {e}")))??;

    let record = FunctionRecord {
        id: new_function_id(),
        tenant,
        name: req.name,
        blake3: compiled.blake3_hex().to_owned(),
        size_bytes,
        created_at: AuditLog::now(),
        limits,
    };
    target.function_id = Some(record.id.0.clone());
    state.store().create(&record, &wasm).await?;

    let f = state.deployed(record, compiled);
    let count = state.functions().insert(f.clone());
    state.metrics().functions_deployed.set(count as i64);
    tracing::info!(function_id = %f.record.id, name = %f.record.name, tenant = %f.record.tenant, "function deployed");
    Ok(f)
}

/// Refuses a deploy that would take `tenant` past its function count or
/// stored bytes (tenant limits file).
fn check_quota(
    state: &AppState,
    tenant: &str,
    quota: &crate::config::TenantQuota,
    size_bytes: u64,
) -> Result<(), ApiError> {
    state.check_loaded()?;
    let existing = state.functions().list(Some(tenant));
    if let Some(max) = quota.max_functions
        && existing.len() as u64 >= max
    {
        return Err(ApiError::QuotaExceeded(format!(
            "tenant `{tenant}` already has {} functions, its quota (max_functions {max}); delete one first",
            existing.len()
        )));
    }
    if let Some(max) = quota.max_stored_bytes {
        let stored: u64 = existing.iter().map(|f| f.record.size_bytes).sum();
        if stored.saturating_add(size_bytes) > max {
            return Err(ApiError::QuotaExceeded(format!(
                "tenant `{tenant}` stores {stored} bytes of modules; {size_bytes} more would pass \
                 its quota (max_stored_bytes {max})"
            )));
        }
    }
    Ok(())
}

fn parse_create(uri: &Uri, headers: &HeaderMap, body: Bytes) -> Result<CreateRequest, ApiError> {
    let media = media_type(headers);
    let raw = match media.as_str() {
        "application/wasm" | "application/octet-stream" => true,
        m if is_json(m) => false,
        // No content type: a Wasm binary announces itself.
        "" => body.starts_with(b"\0asm"),
        other => return Err(ApiError::UnsupportedMediaType(other.to_owned())),
    };
    let req = if raw {
        let q: CreateQuery = crate::routes::functions::query(uri)?;
        let name = q
            .name
            .ok_or_else(|| ApiError::InvalidRequest("a raw Wasm upload needs `?name=`".into()))?;
        CreateRequest {
            name,
            tenant: q.tenant,
            limits: LimitsRequest {
                timeout_ms: q.timeout_ms,
                max_memory_bytes: q.max_memory_bytes,
                fuel: q.fuel,
                max_output_bytes: q.max_output_bytes,
            },
            wasm: body.to_vec(),
        }
    } else {
        let j: CreateJson = crate::body::parse_json(&body)?;
        let wasm = decode_base64(&j.wasm_b64)?;
        CreateRequest {
            name: j.name,
            tenant: j.tenant,
            limits: j.limits.unwrap_or_default(),
            wasm,
        }
    };
    validate_name(&req.name)?;
    if req.wasm.is_empty() {
        return Err(ApiError::InvalidRequest("the module is empty".into()));
    }
    Ok(req)
}

fn decode_base64(s: &str) -> Result<Vec<u8>, ApiError> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT
        .decode(s.trim())
        .map_err(|e| ApiError::InvalidRequest(format!("`wasm_b64` is not valid base64: {e}")))
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(
            "`name` must be 1-128 characters of [A-Za-z0-9._-]".into(),
        ))
    }
}

/// The tenant a new function belongs to.
fn owning_tenant(actor: &Actor, requested: Option<String>) -> Result<String, ApiError> {
    if let Some(t) = &requested
        && !is_valid_tenant(t)
    {
        return Err(ApiError::InvalidRequest(
            "`tenant` must be 1-64 characters of [A-Za-z0-9._-]".into(),
        ));
    }
    match actor.kind() {
        ScopeKind::Admin | ScopeKind::Dev => {
            Ok(requested.unwrap_or_else(|| DEFAULT_TENANT.to_owned()))
        }
        ScopeKind::Tenant | ScopeKind::Anonymous => {
            let own = actor.tenant.clone().unwrap_or_default();
            match requested {
                Some(t) if t != own => Err(ApiError::Forbidden(
                    "a tenant token can only deploy to its own tenant".into(),
                )),
                _ => Ok(own),
            }
        }
    }
}

fn validate_limits(
    state: &AppState,
    tenant: &str,
    l: LimitsRequest,
) -> Result<FunctionLimits, ApiError> {
    let limits = FunctionLimits {
        timeout_ms: l.timeout_ms,
        max_memory_bytes: l.max_memory_bytes,
        fuel: l.fuel,
        max_output_bytes: l.max_output_bytes,
    };
    check_limit_values(&limits, state.inner.max_memory_bytes, "limits.")
        .map_err(ApiError::InvalidRequest)?;
    if let Some((field, asked, most)) = above_ceiling(&limits, &state.ceiling_for(tenant)) {
        return Err(ApiError::InvalidRequest(
            if state.tenant_sets(tenant, field) {
                format!(
                    "`limits.{field}` = {asked} is above tenant `{tenant}`'s ceiling of {most} \
                 (set by the operator's tenant limits)"
                )
            } else {
                format!(
                    "`limits.{field}` = {asked} is above the server's ceiling of {most} \
                 (set by the operator; a tenant limits entry can raise it for a tenant)"
                )
            },
        ));
    }
    Ok(limits)
}

/// A fresh opaque id: `fn_` and 128 random bits in hex.
fn new_function_id() -> FunctionId {
    let mut b = [0u8; 16];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: fall back to a time-seeded BLAKE3 (still unique per process).
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let h = blake3::hash(format!("{now}:{n}").as_bytes());
        b.copy_from_slice(&h.as_bytes()[..16]);
    }
    let mut s = String::with_capacity(35);
    s.push_str("fn_");
    for byte in b {
        use std::fmt::Write;
        let _ = write!(s, "{byte:02x}");
    }
    FunctionId(s)
}

/// The reply of `GET /functions`.
#[derive(Serialize, ToSchema)]
struct FunctionList<'a> {
    functions: Vec<FunctionView<'a>>,
}

#[utoipa::path(
    get, path = "/functions", operation_id = "listFunctions", tag = "functions",
    summary = "List functions (the caller's tenant; every tenant for admin tokens)",
    responses(
        (status = 200, description = "The functions", body = FunctionList),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "`not_ready`: stored functions still loading", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn list(State(state): State<AppState>, caller: Caller) -> Response {
    if let Err(e) = state.check_loaded() {
        return e.into_response();
    }
    let functions = state.functions().list(caller.actor.list_filter());
    let views = functions.iter().map(|f| FunctionView::from(&**f)).collect();
    Json(FunctionList { functions: views }).into_response()
}

#[utoipa::path(
    get, path = "/functions/{id}", operation_id = "getFunction", tag = "functions",
    summary = "One function",
    params(("id" = String, Path, description = "Function id")),
    responses(
        (status = 200, description = "The function", body = FunctionView),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found` (or another tenant's)", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 503, description = "`not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn get_one(
    State(state): State<AppState>,
    caller: Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &id, "function.get")?;
    Ok(Json(FunctionView::from(&*f)).into_response())
}

#[utoipa::path(
    delete, path = "/functions/{id}", operation_id = "deleteFunction", tag = "functions",
    summary = "Delete a function and its snapshots (audited)",
    params(("id" = String, Path, description = "Function id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `store_error`", body = ErrorBody),
        (status = 503, description = "`audit_unavailable`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    FunctionIdPath(id): FunctionIdPath,
) -> Result<StatusCode, ApiError> {
    let f = state.function_for(&caller, &id, "function.delete")?;
    let target = AuditTargetRef {
        function_id: Some(id.clone()),
        function_name: Some(f.record.name.clone()),
        tenant: Some(f.record.tenant.clone()),
        created_at: Some(f.record.created_at.clone()),
        ..Default::default()
    };
    let result = state
        .store()
        .delete(&f.record.id)
        .await
        .map_err(ApiError::from);
    if result.is_ok() {
        // Gone from the store (now, or by a concurrent delete): gone from the registry.
        let (_, count) = state.functions().remove(&id);
        state.metrics().functions_deployed.set(count as i64);
        // Its snapshots hold the tenant's warmed memory: they go with it.
        // The function is already deleted, so a failure here is logged, not
        // returned (the files stay listed by `tensor-wasm snapshot list`).
        let background = state.clone();
        let function_id = id.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let snapshots = &background.inner.snapshots;
            snapshots.remove_function(background.executor(), &function_id)
        })
        .await;
        match removed {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => {
                tracing::info!(function_id = %id, snapshots = n, "snapshots of the deleted function removed")
            }
            Ok(Err(e)) => {
                tracing::warn!(function_id = %id, error = %e, "could not remove the deleted function's snapshots")
            }
            Err(e) => {
                tracing::warn!(function_id = %id, error = %e, "snapshot clean-up task failed")
            }
        }
    }
    let result = match result {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        // A concurrent delete won the race.
        Ok(false) => Err(ApiError::FunctionNotFound),
        Err(e) => Err(e),
    };
    if result.is_ok() {
        tracing::info!(function_id = %id, "function deleted");
    }
    let status = result.as_ref().map(|s| s.as_u16());
    state.audit(&caller, "function.delete", status, &target);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_restricted_to_a_safe_alphabet() {
        assert!(validate_name("dr-smoke").is_ok());
        assert!(validate_name("a.b_c-1").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn base64_with_or_without_padding_decodes() {
        assert_eq!(decode_base64("AGFzbQEAAAA=").unwrap(), b"\0asm\x01\0\0\0");
        assert_eq!(decode_base64("AGFzbQEAAAA").unwrap(), b"\0asm\x01\0\0\0");
        assert!(decode_base64("***").is_err());
    }

    #[test]
    fn function_ids_are_opaque_and_distinct() {
        let a = new_function_id();
        assert!(a.0.starts_with("fn_") && a.0.len() == 35);
        assert_ne!(a, new_function_id());
    }
}
