//! The one invocation path. Every entry point — plain typed and bytes calls,
//! calls from a snapshot, and the wasi:http route to come — runs a guest the
//! same way:
//!
//! 1. the route resolves the function (ownership checked, another tenant's
//!    function is "not found": [`AppState::function_for`]) and parses its
//!    request before anything is reserved;
//! 2. [`admit`]: a permit from the tenant's share, the global bound and the
//!    memory budget — refused callers cost nothing more;
//! 3. [`run`]: the engine under the function's deadline (enforced inside
//!    the engine), in one `invoke` span, timed into the route's histogram
//!    and counted by outcome in `tensor_wasm_invocations_total`.
//!
//! Nothing here touches the store: the compiled function comes from the
//! in-memory registry, a prepared snapshot from the snapshot service.

use std::future::Future;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tensor_wasm_exec::{ExecError, TypedValue};
use tensor_wasm_snapshot::SnapshotError;
use tracing::Instrument;
use utoipa::ToSchema;

use crate::admission::InvocationPermit;
use crate::error::ApiError;
use crate::state::{AppState, DeployedFunction};

/// Largest typed-call JSON body (`{"export","args"}`): 64 KiB.
pub const MAX_TYPED_CALL_BYTES: usize = 64 << 10;

/// How a guest is called: the `mode` of the `invoke` span, and the
/// histogram the call is timed into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// JSON arguments to a numeric export.
    Typed,
    /// Body → stdin, stdout → body.
    Bytes,
    /// A typed call on an instance started from a snapshot.
    Snapshot,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Typed => "typed",
            Mode::Bytes => "bytes",
            Mode::Snapshot => "snapshot",
        }
    }
}

/// A typed call's request body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = TypedCall)]
pub(crate) struct TypedCallBody {
    /// The export to call.
    #[schema(value_type = String, required = true)]
    export: Option<String>,
    /// Arguments, numbers matching the export's parameters (`i32`, `i64`, `f32`, `f64`).
    #[serde(default)]
    #[schema(value_type = Vec<f64>)]
    args: Vec<serde_json::Value>,
}

/// A parsed typed call: `{"export", "args"}`.
#[derive(Debug)]
pub(crate) struct TypedCall {
    pub(crate) export: String,
    pub(crate) args: Vec<serde_json::Value>,
}

impl TypedCall {
    /// Parses a typed call's JSON body (`400 invalid_request` when malformed
    /// or without `export`).
    pub(crate) fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let c: TypedCallBody = crate::body::parse_json(body)?;
        let export = c.export.ok_or_else(|| {
            ApiError::InvalidRequest("a typed call needs `export` (and `args`)".into())
        })?;
        Ok(Self {
            export,
            args: c.args,
        })
    }
}

/// A typed call's reply.
#[derive(Serialize, ToSchema)]
pub(crate) struct TypedReply<'a> {
    /// The export's results, numbers (`null` for a NaN or infinite float).
    #[schema(value_type = Vec<Option<f64>>)]
    pub(crate) results: &'a [TypedValue],
    /// Instantiate + call time, microseconds.
    pub(crate) duration_us: u64,
    /// Fuel spent; present when the engine meters fuel (it does by default).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fuel_used: Option<u64>,
    /// The snapshot the instance started from (snapshot calls only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) snapshot_id: Option<&'a str>,
    /// `baked` (copy-on-write image) or `applied` (state written per call);
    /// snapshot calls only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, pattern = "^(baked|applied)$")]
    pub(crate) restore: Option<&'static str>,
}

/// An error a guest call can end with: its `outcome` label, and the API
/// error it becomes.
pub(crate) trait CallError: Into<ApiError> {
    /// The `outcome` label of `tensor_wasm_invocations_total`.
    fn outcome(&self) -> &'static str;
}

impl CallError for ExecError {
    fn outcome(&self) -> &'static str {
        ExecError::outcome(self)
    }
}

impl CallError for SnapshotError {
    fn outcome(&self) -> &'static str {
        match self {
            SnapshotError::Exec(e) => e.outcome(),
            _ => "error",
        }
    }
}

/// Admits one invocation of `f` (see the module docs): hold the permit
/// until the guest is done.
pub(crate) fn admit<'a>(
    state: &'a AppState,
    f: &'a DeployedFunction,
) -> Result<InvocationPermit<'a>, ApiError> {
    state.admit(f)
}

/// Runs an admitted call: `call` is the engine's future (not started yet).
/// `snapshot` names the snapshot a [`Mode::Snapshot`] call starts from.
pub(crate) async fn run<T, E: CallError>(
    state: &AppState,
    f: &DeployedFunction,
    _permit: InvocationPermit<'_>,
    mode: Mode,
    export: &str,
    snapshot: Option<&str>,
    call: impl Future<Output = Result<T, E>>,
) -> Result<T, ApiError> {
    // Only created when spans are exported: in logs the request span
    // already carries the context, and a second span per call is
    // measurable on the hot path.
    let span = if state.inner.otel {
        let span = tracing::info_span!("invoke", mode = mode.label(), function_id = %f.record.id.0,
            export = %export, snapshot_id = tracing::field::Empty);
        if let Some(id) = snapshot {
            span.record("snapshot_id", id);
        }
        span
    } else {
        tracing::Span::none()
    };
    let started = Instant::now();
    // Boxed: the engine's future is ~2 KB, and left inline it would be
    // copied with the handler future at every move (`benches/router.rs`).
    let result = Box::pin(call).instrument(span).await;
    let metrics = state.metrics();
    let histogram = match mode {
        Mode::Typed | Mode::Snapshot => &metrics.invoke_typed,
        Mode::Bytes => &metrics.invoke_bytes,
    };
    histogram.observe(started.elapsed().as_secs_f64());
    match result {
        Ok(v) => {
            metrics.invocation("ok");
            Ok(v)
        }
        Err(e) => {
            metrics.invocation(e.outcome());
            Err(e.into())
        }
    }
}

/// Whole microseconds, saturating.
pub(crate) fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_calls_need_an_export_and_nothing_unknown() {
        let c = TypedCall::parse(br#"{"export":"add","args":[1,2]}"#).unwrap();
        assert_eq!((c.export.as_str(), c.args.len()), ("add", 2));
        let e = TypedCall::parse(br#"{"args":[1]}"#).unwrap_err();
        assert!(e.to_string().contains("needs `export`"), "{e}");
        let e = TypedCall::parse(br#"{"export":"f","argz":[]}"#).unwrap_err();
        assert_eq!(e.code(), "invalid_request");
    }

    #[test]
    fn snapshot_errors_count_as_the_engine_error_inside_them() {
        let e = SnapshotError::Exec(ExecError::Busy);
        assert_eq!(CallError::outcome(&e), ExecError::Busy.outcome());
        assert_eq!(
            CallError::outcome(&SnapshotError::NotFound("x".into())),
            "error"
        );
    }
}
