//! Admin routes: `POST /admin/backup` (admin scope only, audited).

use std::path::PathBuf;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{AuditLog, AuditTargetRef};
use crate::body::JsonBody;
use crate::error::{ApiError, ErrorBody};
use crate::state::{AppState, Caller};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/admin/backup", post(backup))
}

/// The body of `POST /admin/backup`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    /// Absolute path of a new (or empty) directory whose parent exists.
    #[schema(value_type = String, pattern = "^/")]
    to: PathBuf,
}

/// Reply of a finished backup.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupReply {
    /// The backup directory.
    to: String,
    /// Files written besides the manifest (store, snapshots, keys).
    files: usize,
    /// Their total size.
    size_bytes: u64,
    /// Functions in the copied store.
    function_count: u64,
    /// RFC 3339, UTC.
    completed_at: String,
}

#[utoipa::path(
    post, path = "/admin/backup", operation_id = "backup", tag = "admin",
    summary = "Write a complete backup (store, snapshots, keys, MANIFEST.json) to a new directory (admin tokens only, audited)",
    request_body(content((BackupRequest = "application/json"))),
    responses(
        (status = 200, description = "Written", body = BackupReply),
        (status = 400, description = "`invalid_request`: `to` not absolute, existing and not empty, or without parent", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 403, description = "`forbidden`: not an admin token", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`, `store_error`", body = ErrorBody),
        (status = 503, description = "`audit_unavailable`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn backup(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<JsonBody<BackupRequest>, ApiError>,
) -> Result<Json<BackupReply>, ApiError> {
    let mut target = AuditTargetRef::default();
    let result = run_backup(&state, &caller, body, &mut target).await;
    let status = result.as_ref().map(|_| 200);
    state.audit(&caller, "admin.backup", status, &target);
    result.map(Json)
}

async fn run_backup(
    state: &AppState,
    caller: &Caller,
    body: Result<JsonBody<BackupRequest>, ApiError>,
    target: &mut AuditTargetRef,
) -> Result<BackupReply, ApiError> {
    if !caller.actor.is_admin() {
        return Err(ApiError::Forbidden(
            "backups need an admin (`tenant=*`) token".into(),
        ));
    }
    let JsonBody(req) = body?;
    target.path = Some(req.to.display().to_string());
    if !req.to.is_absolute() {
        return Err(ApiError::InvalidRequest(
            "`to` must be an absolute path".into(),
        ));
    }
    if !req.to.parent().is_some_and(|p| p.is_dir()) {
        return Err(ApiError::InvalidRequest(format!(
            "the directory of `{}` does not exist",
            req.to.display()
        )));
    }
    // The same backup as `tensor-wasm backup --to`: manifest, store copy,
    // snapshots and keys, owner-only, verifiable with `backup --verify`.
    let manifest = tensor_wasm_store::backup::backup_data_dir_with_store(
        state.store().as_ref(),
        state.data_dir(),
        &req.to,
    )
    .await
    .map_err(|e| match e {
        tensor_wasm_store::backup::BackupError::TargetNotEmpty(p) => {
            ApiError::InvalidRequest(format!(
                "`{}` exists and is not an empty directory; a backup never overwrites",
                p.display()
            ))
        }
        e => ApiError::Internal(format!("backup failed: {e}")),
    })?;
    let size_bytes = manifest.files.iter().map(|f| f.size_bytes).sum();
    tracing::info!(to = %req.to.display(), size_bytes, files = manifest.files.len(), "data dir backed up");
    Ok(BackupReply {
        to: req.to.display().to_string(),
        files: manifest.files.len(),
        size_bytes,
        function_count: manifest.function_count,
        completed_at: AuditLog::now(),
    })
}
