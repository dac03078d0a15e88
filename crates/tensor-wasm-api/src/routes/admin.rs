//! Admin routes: `POST /admin/backup` (admin scope only, audited).

use std::path::PathBuf;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, AuditTargetRef};
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::{AppState, Caller};

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/admin/backup", post(backup))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    to: PathBuf,
}

/// Reply of a finished backup.
#[derive(Debug, Serialize)]
pub struct BackupReply {
    to: String,
    /// Files written besides the manifest (store, snapshots, keys).
    files: usize,
    /// Their total size.
    size_bytes: u64,
    function_count: u64,
    completed_at: String,
}

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
