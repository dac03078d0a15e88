//! `POST /functions/{id}/invoke`: the hot path.
//!
//! `application/json` bodies are typed calls (`{"export","args"}` →
//! `{"results","duration_us","fuel_used"}`); any other content type is a
//! bytes call (body → WASI stdin, stdout → body). No store access here: the
//! compiled function comes from the in-memory registry.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};
use tensor_wasm_exec::{ExecError, TypedValue};
use tracing::Instrument;

use crate::error::ApiError;
use crate::limits::{is_json, media_type, read_body};
use crate::routes::functions::{FunctionIdPath, query};
use crate::state::{AppState, Caller};

/// Largest typed-call JSON body (`{"export","args"}`): 64 KiB.
pub const MAX_TYPED_CALL_BYTES: usize = 64 << 10;

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
}

#[derive(Deserialize)]
struct BytesQuery {
    export: Option<String>,
}

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
        let c: TypedCall = crate::json::parse_json(&body)?;
        let export = c.export.ok_or_else(|| {
            ApiError::InvalidRequest("a typed call needs `export` (and `args`)".into())
        })?;
        Call::Typed {
            export,
            args: c.args,
        }
    } else {
        let q: BytesQuery = query(&parts.uri)?;
        Call::Bytes { export: q.export }
    };

    let metrics = state.metrics();
    let _permit = state.admit(&f)?;
    let executor = state.executor();
    let started = Instant::now();
    match call {
        Call::Typed { export, args } => {
            let span = invoke_span(&state, "typed", &id, &export);
            // Boxed: the engine's future is ~2 KB, and left inline it would
            // be copied with the handler future at every move (measured in
            // `benches/router.rs`).
            let result = Box::pin(executor.call_typed(&f.compiled, &export, &args, &f.context))
                .instrument(span)
                .await;
            metrics
                .invoke_typed
                .observe(started.elapsed().as_secs_f64());
            let out = count(&state, result)?;
            let body = serde_json::to_vec(&TypedReply {
                results: &out.results,
                duration_us: micros(out.duration),
                fuel_used: out.fuel_used,
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
            let span = invoke_span(&state, "bytes", &id, export.as_deref().unwrap_or("_start"));
            let result = Box::pin(executor.call_bytes(
                &f.compiled,
                export.as_deref(),
                body.to_vec(),
                &f.context,
            ))
            .instrument(span)
            .await;
            metrics
                .invoke_bytes
                .observe(started.elapsed().as_secs_f64());
            let out = count(&state, result)?;
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
    Typed {
        export: String,
        args: Vec<serde_json::Value>,
    },
    Bytes {
        export: Option<String>,
    },
}

fn count<T>(state: &AppState, result: Result<T, ExecError>) -> Result<T, ApiError> {
    match result {
        Ok(v) => {
            state.metrics().invocation("ok");
            Ok(v)
        }
        Err(e) => {
            state.metrics().invocation(e.outcome());
            Err(ApiError::Exec(e))
        }
    }
}

/// The `invoke` span, a child of the request span. Only created when spans
/// are exported: in logs the request span already carries the context, and
/// formatting a second span per call is measurable on the hot path.
fn invoke_span(state: &AppState, mode: &'static str, id: &str, export: &str) -> tracing::Span {
    if state.inner.otel {
        tracing::info_span!("invoke", mode, function_id = %id, export = %export)
    } else {
        tracing::Span::none()
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
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
