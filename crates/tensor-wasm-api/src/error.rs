//! Errors, and the one place they become HTTP responses.
//!
//! Every non-2xx response body is `{"error":{"code","message"}}`; `code` is
//! stable (clients switch on it), `message` is for humans. The table in
//! `API.md` mirrors [`ApiError::status`] and [`ApiError::code`]. Engine,
//! store and snapshot errors are variants here, so every route — snapshot
//! routes included — maps errors to status, code and audit outcome
//! ([`ApiError::audit_outcome`]) in this one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tensor_wasm_exec::ExecError;
use tensor_wasm_snapshot::SnapshotError;
use tensor_wasm_store::StoreError;

use crate::audit::Outcome;

/// Every `code` an error response can carry: [`ApiError::code`] for all its
/// variants (engine and snapshot codes included), plus the canned
/// `too_many_connections` refusal written by the connection limiter.
/// `GET /openapi.json` lists them as the `enum` of the error schema's `code`;
/// a unit test below proves the list complete.
pub const ERROR_CODES: &[&str] = &[
    "invalid_request",
    "invalid_module",
    "module_too_complex",
    "missing_export",
    "signature_mismatch",
    "unauthorized",
    "forbidden",
    "quota_exceeded",
    "function_not_found",
    "route_not_found",
    "method_not_allowed",
    "conflict",
    "request_timeout",
    "payload_too_large",
    "unsupported_media_type",
    "trap",
    "memory_limit_exceeded",
    "deadline_exceeded",
    "fuel_exhausted",
    "output_too_large",
    "rate_limited",
    "tenant_concurrency_limited",
    "internal",
    "store_error",
    "io",
    "overloaded",
    "memory_budget_exhausted",
    "too_many_connections",
    "audit_unavailable",
    "busy",
    "not_ready",
    "snapshot_not_found",
    "snapshot_truncated",
    "snapshot_bad_magic",
    "snapshot_checksum_mismatch",
    "snapshot_wrong_module",
    "snapshot_engine_mismatch",
    "snapshot_newer_version",
    "snapshot_too_old_version",
    "snapshot_bad_signature",
    "snapshot_signature_required",
    "snapshot_malformed",
    "snapshot_unsupported",
    "snapshot_layout_mismatch",
    "snapshot_restore_failed",
    "snapshot_signing_key",
];

/// A request failed; converts into the JSON error response.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, malformed or unknown bearer token.
    #[error("missing or unknown bearer token")]
    Unauthorized,
    /// Authenticated, but the scope does not allow this call.
    #[error("{0}")]
    Forbidden(String),
    /// The tenant's storage quota (tenant limits file) does not allow this.
    #[error("{0}")]
    QuotaExceeded(String),
    /// No such function (or it belongs to another tenant — indistinguishable on purpose).
    #[error("function not found")]
    FunctionNotFound,
    /// No route matches the path.
    #[error("no route for this path")]
    RouteNotFound,
    /// The route exists but not with this method.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// Malformed JSON, missing field, bad base64, bad name…
    #[error("{0}")]
    InvalidRequest(String),
    /// A content type the route does not accept.
    #[error("unsupported content type `{0}`")]
    UnsupportedMediaType(String),
    /// Body larger than `TENSOR_WASM_API_MAX_BODY_BYTES`.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit that applied.
        limit: usize,
    },
    /// The request body did not arrive within `TENSOR_WASM_API_BODY_TIMEOUT_MS`.
    #[error("the request body did not arrive within {timeout_ms} ms")]
    RequestTimeout {
        /// The body timeout that applied.
        timeout_ms: u64,
    },
    /// Per-token rate limit hit.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request will be admitted again.
        retry_after_secs: u64,
    },
    /// The invocation concurrency bound is reached.
    #[error("too many invocations in flight; retry shortly")]
    Overloaded,
    /// The caller's tenant already runs as many invocations as its share allows.
    #[error(
        "tenant `{tenant}` already runs {limit} invocations, its concurrency share; retry shortly"
    )]
    TenantConcurrencyLimited {
        /// The tenant.
        tenant: String,
        /// Its bound on concurrent invocations.
        limit: usize,
    },
    /// Starting this invocation would take the memory reserved by running
    /// invocations past the server's budget.
    #[error(
        "the server's invocation memory budget of {budget_bytes} bytes is in use; retry shortly"
    )]
    MemoryBudgetExhausted {
        /// The configured budget.
        budget_bytes: u64,
    },
    /// `TENSOR_WASM_API_AUDIT_REQUIRED=1` and audit records cannot be written.
    #[error("audit records cannot be written; state-changing calls are refused until they can")]
    AuditUnavailable,
    /// The engine refused or failed the call.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The durable store failed.
    #[error("store failure: {0}")]
    Store(#[from] StoreError),
    /// A snapshot could not be found, read, verified or restored (engine
    /// errors from snapshot work arrive as [`ApiError::Exec`]).
    #[error(transparent)]
    Snapshot(SnapshotError),
    /// A handler panicked.
    #[error("internal error (panic)")]
    Panic,
    /// `/readyz`: a dependency is not available.
    #[error("{0}")]
    NotReady(String),
    /// Anything else on the server's side.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) | Self::QuotaExceeded(_) => StatusCode::FORBIDDEN,
            Self::FunctionNotFound | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } | Self::TenantConcurrencyLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            Self::Overloaded
            | Self::MemoryBudgetExhausted { .. }
            | Self::NotReady(_)
            | Self::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Exec(e) => match e {
                ExecError::InvalidModule(_)
                | ExecError::ModuleTooComplex(_)
                | ExecError::MissingExport { .. }
                | ExecError::SignatureMismatch { .. } => StatusCode::BAD_REQUEST,
                // The guest's own fault (its code, its limits): 4xx, so a
                // tenant's slow or broken guest never spends our availability
                // budget (SLO.md §2).
                ExecError::Trap { .. }
                | ExecError::DeadlineExceeded { .. }
                | ExecError::MemoryLimitExceeded { .. }
                | ExecError::FuelExhausted { .. }
                | ExecError::OutputTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                ExecError::Busy => StatusCode::SERVICE_UNAVAILABLE,
                ExecError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            Self::Snapshot(e) => match e {
                SnapshotError::NotFound(_) => StatusCode::NOT_FOUND,
                SnapshotError::InvalidModule(_) => StatusCode::BAD_REQUEST,
                SnapshotError::Io { .. }
                | SnapshotError::SigningKey { .. }
                | SnapshotError::Exec(_) => StatusCode::INTERNAL_SERVER_ERROR,
                // The snapshot (or the module) cannot be used: refused, not a server fault.
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Self::Store(StoreError::AlreadyExists(_)) => StatusCode::CONFLICT,
            Self::Store(_) | Self::Panic | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::QuotaExceeded(_) => "quota_exceeded",
            Self::FunctionNotFound => "function_not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::RequestTimeout { .. } => "request_timeout",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::TenantConcurrencyLimited { .. } => "tenant_concurrency_limited",
            Self::MemoryBudgetExhausted { .. } => "memory_budget_exhausted",
            Self::NotReady(_) => "not_ready",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Exec(e) => e.code(),
            Self::Snapshot(e) => e.code(),
            Self::Store(StoreError::AlreadyExists(_)) => "conflict",
            Self::Store(_) => "store_error",
            Self::Panic | Self::Internal(_) => "internal",
        }
    }

    /// How the audit log records this error: `denied` when the caller was
    /// refused (401, 403 — quotas included — and 429), `failure` when the
    /// call was admitted and failed. (A 404 by tenancy is recorded as
    /// `denied` where it is decided: [`crate::state::AppState::audit_denied`].)
    pub(crate) fn audit_outcome(&self) -> Outcome {
        match self {
            Self::Unauthorized
            | Self::Forbidden(_)
            | Self::QuotaExceeded(_)
            | Self::RateLimited { .. }
            | Self::TenantConcurrencyLimited { .. } => Outcome::Denied,
            _ => Outcome::Failure,
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::Overloaded
            | Self::TenantConcurrencyLimited { .. }
            | Self::MemoryBudgetExhausted { .. }
            | Self::NotReady(_)
            | Self::AuditUnavailable
            | Self::Exec(ExecError::Busy) => Some(1),
            _ => None,
        }
    }

    /// The message sent to the client: server-side details stay in the log.
    fn public_message(&self) -> String {
        match self {
            Self::Store(StoreError::AlreadyExists(_)) => self.to_string(),
            Self::Store(_)
            | Self::Internal(_)
            | Self::Exec(ExecError::Internal(_))
            | Self::Snapshot(
                SnapshotError::Io { .. }
                | SnapshotError::SigningKey { .. }
                | SnapshotError::Exec(_),
            ) => "internal server error; the server log has details (search for the x-request-id)"
                .to_owned(),
            _ => self.to_string(),
        }
    }
}

/// The body of every non-2xx response: `{"error":{"code","message"}}`.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Error)]
pub(crate) struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

/// What went wrong: a stable `code` to switch on, a `message` for humans.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorDetail<'a> {
    /// Stable machine-readable code: switch on it.
    code: &'a str,
    /// Human-readable explanation; generic for server-side failures.
    message: &'a str,
}

/// The JSON body of an error response.
pub(crate) fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&ErrorBody {
        error: ErrorDetail { code, message },
    })
    .unwrap_or_else(|_| br#"{"error":{"code":"internal","message":"internal error"}}"#.to_vec())
}

/// A server-side failure to log, attached to the error response; the
/// outermost layer (`observe.rs`) logs it with the request's id, method and
/// route, so a log line can be matched to the client's `x-request-id`.
#[derive(Debug, Clone)]
pub(crate) struct FailureLog {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut failure = None;
        if status.is_server_error()
            && !matches!(
                self,
                Self::Overloaded
                    | Self::MemoryBudgetExhausted { .. }
                    | Self::NotReady(_)
                    | Self::Exec(ExecError::Busy)
            )
        {
            // Logged by the outermost layer, which knows the request id.
            failure = Some(FailureLog {
                code: self.code(),
                message: self.to_string(),
            });
        }
        let body = error_body(self.code(), &self.public_message());
        let mut resp = (status, body).into_response();
        if let Some(f) = failure {
            resp.extensions_mut().insert(f);
        }
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, Self::Unauthorized) {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tensor-wasm\""),
            );
        }
        resp
    }
}

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::Exec(e) => Self::Exec(e),
            other => Self::Snapshot(other),
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The data directory cannot be created or used.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The I/O failure.
        source: std::io::Error,
    },
    /// `audit.key` or `cache.key` cannot be read or created.
    #[error(transparent)]
    Key(#[from] tensor_wasm_fs::KeyError),
    /// A tenant's limits do not fit the engine (e.g. memory above the pool's ceiling).
    #[error("tenant limits: {0}")]
    TenantLimits(String),
    /// The data dir is half-restored (see `tensor-wasm restore`).
    #[error("{0}")]
    Backup(#[from] tensor_wasm_store::backup::BackupError),
    /// The audit sink cannot be opened.
    #[error("audit log: {0}")]
    AuditLog(std::io::Error),
    /// The function store cannot be opened or read.
    #[error("function store: {0}")]
    Store(#[from] StoreError),
    /// The engine cannot be built.
    #[error("engine: {0}")]
    Engine(ExecError),
    /// Binding or serving the listener failed.
    #[error("server: {0}")]
    Serve(std::io::Error),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::time::Duration;

    use tensor_wasm_store::FunctionId;

    use super::*;

    /// One of each [`ExecError`] variant, and its index in an exhaustive
    /// match: a new variant does not compile until it is given an index,
    /// and then fails the test until it is sampled.
    fn exec_errors() -> Vec<ExecError> {
        fn index(e: &ExecError) -> usize {
            match e {
                ExecError::InvalidModule(_) => 0,
                ExecError::ModuleTooComplex(_) => 1,
                ExecError::MissingExport { .. } => 2,
                ExecError::SignatureMismatch { .. } => 3,
                ExecError::Trap { .. } => 4,
                ExecError::DeadlineExceeded { .. } => 5,
                ExecError::MemoryLimitExceeded { .. } => 6,
                ExecError::FuelExhausted { .. } => 7,
                ExecError::OutputTooLarge { .. } => 8,
                ExecError::Busy => 9,
                ExecError::Internal(_) => 10,
            }
        }
        let s = String::new;
        let all = vec![
            ExecError::InvalidModule(s()),
            ExecError::ModuleTooComplex(s()),
            ExecError::MissingExport {
                export: s(),
                available: s(),
            },
            ExecError::SignatureMismatch {
                signature: s(),
                message: s(),
            },
            ExecError::Trap { message: s() },
            ExecError::DeadlineExceeded {
                timeout: Duration::ZERO,
            },
            ExecError::MemoryLimitExceeded { limit_bytes: 0 },
            ExecError::FuelExhausted { fuel: 0 },
            ExecError::OutputTooLarge { limit_bytes: 0 },
            ExecError::Busy,
            ExecError::Internal(s()),
        ];
        assert_every_index(all.iter().map(index), 11);
        all
    }

    /// One of each [`SnapshotError`] variant, checked like [`exec_errors`].
    fn snapshot_errors() -> Vec<SnapshotError> {
        fn index(e: &SnapshotError) -> usize {
            match e {
                SnapshotError::Truncated { .. } => 0,
                SnapshotError::BadMagic { .. } => 1,
                SnapshotError::ChecksumMismatch { .. } => 2,
                SnapshotError::WrongModule { .. } => 3,
                SnapshotError::EngineMismatch { .. } => 4,
                SnapshotError::NewerVersion { .. } => 5,
                SnapshotError::TooOldVersion { .. } => 6,
                SnapshotError::BadSignature { .. } => 7,
                SnapshotError::SignatureRequired => 8,
                SnapshotError::Malformed(_) => 9,
                SnapshotError::Unsupported(_) => 10,
                SnapshotError::InvalidModule(_) => 11,
                SnapshotError::LayoutMismatch(_) => 12,
                SnapshotError::Restore(_) => 13,
                SnapshotError::SigningKey { .. } => 14,
                SnapshotError::NotFound(_) => 15,
                SnapshotError::Exec(_) => 16,
                SnapshotError::Io { .. } => 17,
            }
        }
        let s = String::new;
        let all = vec![
            SnapshotError::Truncated {
                expected: 0,
                actual: 0,
            },
            SnapshotError::BadMagic { found: s() },
            SnapshotError::ChecksumMismatch {
                stored: s(),
                computed: s(),
            },
            SnapshotError::WrongModule {
                snapshot_module: s(),
                given_module: s(),
            },
            SnapshotError::EngineMismatch {
                snapshot_engine: s(),
                this_engine: s(),
            },
            SnapshotError::NewerVersion {
                file_version: 0,
                reader_version: 0,
                oldest_readable: 0,
            },
            SnapshotError::TooOldVersion {
                file_version: 0,
                reader_version: 0,
                oldest_readable: 0,
            },
            SnapshotError::BadSignature { reason: s() },
            SnapshotError::SignatureRequired,
            SnapshotError::Malformed(s()),
            SnapshotError::Unsupported(s()),
            SnapshotError::InvalidModule(s()),
            SnapshotError::LayoutMismatch(s()),
            SnapshotError::Restore(s()),
            SnapshotError::SigningKey {
                path: PathBuf::new(),
                reason: s(),
            },
            SnapshotError::NotFound(s()),
            SnapshotError::Exec(ExecError::Busy),
            SnapshotError::Io {
                path: PathBuf::new(),
                source: std::io::Error::other("disk"),
            },
        ];
        assert_every_index(all.iter().map(index), 18);
        all
    }

    /// Every [`ApiError`] a request can end in: each variant, with every
    /// engine, snapshot and (code-distinct) store error inside.
    fn api_errors() -> Vec<ApiError> {
        fn index(e: &ApiError) -> usize {
            match e {
                ApiError::Unauthorized => 0,
                ApiError::Forbidden(_) => 1,
                ApiError::QuotaExceeded(_) => 2,
                ApiError::FunctionNotFound => 3,
                ApiError::RouteNotFound => 4,
                ApiError::MethodNotAllowed => 5,
                ApiError::InvalidRequest(_) => 6,
                ApiError::UnsupportedMediaType(_) => 7,
                ApiError::PayloadTooLarge { .. } => 8,
                ApiError::RequestTimeout { .. } => 9,
                ApiError::RateLimited { .. } => 10,
                ApiError::Overloaded => 11,
                ApiError::TenantConcurrencyLimited { .. } => 12,
                ApiError::MemoryBudgetExhausted { .. } => 13,
                ApiError::AuditUnavailable => 14,
                ApiError::Exec(_) => 15,
                ApiError::Store(_) => 16,
                ApiError::Snapshot(_) => 17,
                ApiError::Panic => 18,
                ApiError::NotReady(_) => 19,
                ApiError::Internal(_) => 20,
            }
        }
        let s = String::new;
        let mut all = vec![
            ApiError::Unauthorized,
            ApiError::Forbidden(s()),
            ApiError::QuotaExceeded(s()),
            ApiError::FunctionNotFound,
            ApiError::RouteNotFound,
            ApiError::MethodNotAllowed,
            ApiError::InvalidRequest(s()),
            ApiError::UnsupportedMediaType(s()),
            ApiError::PayloadTooLarge { limit: 0 },
            ApiError::RequestTimeout { timeout_ms: 0 },
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Overloaded,
            ApiError::TenantConcurrencyLimited {
                tenant: s(),
                limit: 0,
            },
            ApiError::MemoryBudgetExhausted { budget_bytes: 0 },
            ApiError::AuditUnavailable,
            ApiError::Store(StoreError::AlreadyExists(FunctionId(s()))),
            ApiError::Store(StoreError::Corrupt(s())),
            ApiError::Panic,
            ApiError::NotReady(s()),
            ApiError::Internal(s()),
        ];
        all.extend(exec_errors().into_iter().map(ApiError::Exec));
        // Through `From`, as the routes convert them (engine errors inside
        // become `ApiError::Exec`), and directly as `ApiError::Snapshot`.
        all.extend(snapshot_errors().into_iter().map(ApiError::from));
        all.extend(snapshot_errors().into_iter().map(ApiError::Snapshot));
        assert_every_index(all.iter().map(index), 21);
        all
    }

    fn assert_every_index(seen: impl Iterator<Item = usize>, variants: usize) {
        let seen: BTreeSet<usize> = seen.collect();
        let missing: Vec<usize> = (0..variants).filter(|i| !seen.contains(i)).collect();
        assert!(missing.is_empty(), "variants not sampled: {missing:?}");
    }

    #[test]
    fn every_code_an_error_can_carry_is_in_error_codes() {
        let exec = exec_errors();
        let emitted: BTreeSet<&str> = api_errors()
            .iter()
            .map(ApiError::code)
            .chain(exec.iter().map(ExecError::code))
            .chain(snapshot_errors().iter().map(SnapshotError::code))
            .collect();
        let listed: BTreeSet<&str> = ERROR_CODES.iter().copied().collect();
        let unlisted: Vec<&&str> = emitted.difference(&listed).collect();
        assert!(
            unlisted.is_empty(),
            "codes missing from ERROR_CODES: {unlisted:?}"
        );
        // And nothing listed that no error produces, except the connection
        // limiter's canned refusal (checked in `conn.rs`).
        let unused: Vec<&&str> = listed.difference(&emitted).collect();
        assert_eq!(
            unused,
            [&"too_many_connections"],
            "listed but never emitted"
        );
        assert_eq!(
            listed.len(),
            ERROR_CODES.len(),
            "ERROR_CODES has duplicates"
        );
    }
}
