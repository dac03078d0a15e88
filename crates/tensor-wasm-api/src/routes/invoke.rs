//! `POST /functions/{id}/invoke`: the hot path.
//!
//! `application/json` bodies are typed calls (`{"export","args"}` →
//! `{"results","duration_us","fuel_used"}`); any other content type is a
//! bytes call (body → WASI stdin, stdout → body). No store access here: the
//! compiled function comes from the in-memory registry.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::body::{is_json, media_type, read_body};
use crate::error::{ApiError, ErrorBody};
use crate::invocation::{self, Mode, TypedCall, TypedCallBody, TypedReply, micros};
use crate::routes::functions::{FunctionIdPath, query};
use crate::state::{AppState, Caller};

pub use crate::invocation::MAX_TYPED_CALL_BYTES;

/// Most stderr bytes (after escaping) returned in `x-tensor-wasm-stderr`.
pub const STDERR_HEADER_LIMIT: usize = 1024;

static DURATION_HEADER: HeaderName = HeaderName::from_static("x-tensor-wasm-duration-us");
static EXIT_CODE_HEADER: HeaderName = HeaderName::from_static("x-tensor-wasm-exit-code");
static FUEL_HEADER: HeaderName = HeaderName::from_static("x-tensor-wasm-fuel-used");
static STDERR_HEADER: HeaderName = HeaderName::from_static("x-tensor-wasm-stderr");
static STDERR_TRUNCATED_HEADER: HeaderName =
    HeaderName::from_static("x-tensor-wasm-stderr-truncated");

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/functions/{id}/invoke", post(invoke))
}

/// The query of a bytes call.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BytesQuery {
    /// Bytes calls only: the export to run (it must take no parameters);
    /// default the WASI command entry point `_start`.
    export: Option<String>,
}

#[utoipa::path(
    post, path = "/functions/{id}/invoke", operation_id = "invokeFunction", tag = "invoke",
    summary = "Invoke: a typed call for application/json, a bytes call (stdin to stdout) otherwise",
    description = "Not audited; counted in `tensor_wasm_invocations_total{outcome}`. A bytes \
        call whose guest exits non-zero still answers 200: read `x-tensor-wasm-exit-code`.",
    params(("id" = String, Path, description = "Function id"), BytesQuery),
    request_body(content(
        (TypedCallBody = "application/json"),
        ([u8] = "application/octet-stream"),
    )),
    responses(
        (status = 200, description = "The call ran", content(
            (TypedReply = "application/json"),
            ([u8] = "application/octet-stream"),
        ), headers(
            ("x-tensor-wasm-duration-us" = u64, description = "Bytes calls: instantiate + run time, microseconds"),
            ("x-tensor-wasm-exit-code" = i32, description = "Bytes calls: the guest's exit code"),
            ("x-tensor-wasm-fuel-used" = u64, description = "Bytes calls: fuel spent, when metered"),
            ("x-tensor-wasm-stderr" = String, description = "Bytes calls: stderr escaped to visible ASCII, at most 1024 characters"),
            ("x-tensor-wasm-stderr-truncated" = String, description = "Bytes calls: `true` when stderr was cut"),
        )),
        (status = 400, description = "`invalid_request`, `missing_export`, `signature_mismatch`", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody, headers(("WWW-Authenticate" = String))),
        (status = 404, description = "`function_not_found`", body = ErrorBody),
        (status = 408, description = "`request_timeout`", body = ErrorBody),
        (status = 413, description = "`payload_too_large` (a typed call's body is capped at 64 KiB)", body = ErrorBody),
        (status = 422, description = "The guest's fault: `trap`, `deadline_exceeded`, `memory_limit_exceeded`, `fuel_exhausted`, `output_too_large`", body = ErrorBody),
        (status = 429, description = "`rate_limited`, `tenant_concurrency_limited`", body = ErrorBody, headers(("Retry-After" = u64))),
        (status = 500, description = "`internal`", body = ErrorBody),
        (status = 503, description = "`overloaded`, `memory_budget_exhausted`, `busy`, `not_ready`", body = ErrorBody, headers(("Retry-After" = u64))),
    ),
    security(("bearer" = [])),
)]
async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    FunctionIdPath(id): FunctionIdPath,
    req: Request,
) -> Result<Response, ApiError> {
    let f = state.function_for(&caller, &id, "function.invoke")?;
    // The whole request, split here, rather than `HeaderMap` and `Uri`
    // extractors: those clone the header map on every call.
    let (parts, body) = req.into_parts();
    let typed = is_json(&media_type(&parts.headers));
    // A typed call carries a handful of numbers: its JSON is bounded far
    // below the general body cap before serde expands it into values.
    let cap = if typed {
        state.max_body_bytes().min(MAX_TYPED_CALL_BYTES)
    } else {
        state.max_body_bytes()
    };
    let body = read_body(&parts.headers, body, cap, state.body_timeout()).await?;
    // Parse before taking a slot: malformed requests never occupy one.
    let call = if typed {
        Call::Typed(TypedCall::parse(&body)?)
    } else {
        let q: BytesQuery = query(&parts.uri)?;
        Call::Bytes { export: q.export }
    };

    let permit = invocation::admit(&state, &f)?;
    let executor = state.executor();
    match call {
        Call::Typed(TypedCall { export, args }) => {
            let call = executor.call_typed(&f.compiled, &export, &args, &f.context);
            let out = invocation::run(&state, &f, permit, Mode::Typed, &export, None, call).await?;
            let body = serde_json::to_vec(&TypedReply {
                results: &out.results,
                duration_us: micros(out.duration),
                fuel_used: out.fuel_used,
                snapshot_id: None,
                restore: None,
            })
            .map_err(|e| ApiError::Internal(format!("encoding results: {e}")))?;
            let mut resp = (StatusCode::OK, body).into_response();
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(resp)
        }
        Call::Bytes { export } => {
            let name = export.as_deref().unwrap_or("_start");
            let call =
                executor.call_bytes(&f.compiled, export.as_deref(), body.to_vec(), &f.context);
            let out = invocation::run(&state, &f, permit, Mode::Bytes, name, None, call).await?;
            let mut resp = (StatusCode::OK, out.stdout).into_response();
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            h.insert(
                DURATION_HEADER.clone(),
                HeaderValue::from(micros(out.duration)),
            );
            h.insert(EXIT_CODE_HEADER.clone(), HeaderValue::from(out.exit_code));
            if let Some(fuel) = out.fuel_used {
                h.insert(FUEL_HEADER.clone(), HeaderValue::from(fuel));
            }
            if !out.stderr.is_empty() {
                let (text, truncated) = escape_stderr(&out.stderr);
                if let Ok(v) = HeaderValue::from_str(&text) {
                    h.insert(STDERR_HEADER.clone(), v);
                }
                if truncated {
                    h.insert(
                        STDERR_TRUNCATED_HEADER.clone(),
                        HeaderValue::from_static("true"),
                    );
                }
            }
            Ok(resp)
        }
    }
}

enum Call {
    Typed(TypedCall),
    Bytes { export: Option<String> },
}

/// Escapes stderr into visible ASCII (`\n`, `\xNN`, …) of at most
/// [`STDERR_HEADER_LIMIT`] characters; `true` when something was cut.
fn escape_stderr(stderr: &[u8]) -> (String, bool) {
    let mut out = String::with_capacity(stderr.len().min(STDERR_HEADER_LIMIT));
    for (i, b) in stderr.iter().enumerate() {
        let escaped = std::ascii::escape_default(*b);
        if out.len() + escaped.len() > STDERR_HEADER_LIMIT {
            return (out, true);
        }
        out.extend(escaped.map(char::from));
        // A trailing newline is noise in a header; drop it rather than escape it.
        if i + 1 == stderr.len() && *b == b'\n' {
            out.truncate(out.len() - 2);
        }
    }
    (out, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_escaped_and_bounded() {
        let (s, cut) = escape_stderr(b"oops\tbad\x01\n");
        assert_eq!(s, "oops\\tbad\\x01");
        assert!(!cut);
        let (s, cut) = escape_stderr(&[b'a'; 5000]);
        assert_eq!(s.len(), STDERR_HEADER_LIMIT);
        assert!(cut);
    }
}
