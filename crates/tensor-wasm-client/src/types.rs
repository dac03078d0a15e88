//! Request and reply bodies of the API (`API.md`). Replies tolerate fields
//! this version does not know; fields a future server may drop default.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /healthz` reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// `"ok"` from a live server.
    pub status: String,
}

/// `GET /readyz` reply of a ready server (a server that is not ready answers
/// `503 not_ready`, an [`crate::Error::Http`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Readiness {
    /// `"ready"`.
    #[serde(default)]
    pub status: String,
    /// Server version, e.g. `v0.1.0`.
    #[serde(default)]
    pub version: String,
    /// `"ok"` when the function store answers.
    #[serde(default)]
    pub store: String,
    /// Functions loaded.
    #[serde(default)]
    pub functions: u64,
    /// `cuda`, `cpu` or `none`.
    #[serde(default)]
    pub gpu_backend: String,
    /// Every request is admitted without a token (no tokens configured).
    #[serde(default)]
    pub dev_mode: bool,
    /// Fields this client version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Per-function limit overrides; `None` means the tenant or server default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLimits {
    /// Wall-clock deadline per invocation, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Linear-memory cap per invocation, in bytes.
    pub max_memory_bytes: Option<u64>,
    /// Fuel per invocation.
    pub fuel: Option<u64>,
    /// Cap on captured stdout bytes (bytes calls).
    pub max_output_bytes: Option<u64>,
}

/// The limits each invocation of a function actually gets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EffectiveLimits {
    /// Wall-clock deadline, in milliseconds.
    pub timeout_ms: u64,
    /// Linear-memory cap, in bytes.
    pub max_memory_bytes: u64,
    /// Fuel budget; `None` is unlimited.
    pub fuel: Option<u64>,
    /// Cap on captured stdout bytes.
    pub max_output_bytes: u64,
}

/// One export's signature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSignature {
    /// Export name.
    pub name: String,
    /// Parameter types (`i32`, `i64`, `f32`, `f64`, …).
    #[serde(default)]
    pub params: Vec<String>,
    /// Result types.
    #[serde(default)]
    pub results: Vec<String>,
}

/// A deployed function (`POST /functions`, `GET /functions[/{id}]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// Opaque id, `fn_…`.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Owning tenant.
    #[serde(default)]
    pub tenant: String,
    /// BLAKE3 of the module bytes, hex.
    #[serde(default)]
    pub blake3: String,
    /// Module size.
    #[serde(default)]
    pub size_bytes: u64,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// The function's own limit settings.
    #[serde(default)]
    pub limits: FunctionLimits,
    /// What an invocation gets once defaults apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_limits: Option<EffectiveLimits>,
    /// Exported functions and their signatures.
    #[serde(default)]
    pub exports: Vec<ExportSignature>,
    /// Fields this client version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// A deploy request: name, module and optional tenant and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deploy {
    /// 1–128 characters of `[A-Za-z0-9._-]`.
    pub name: String,
    /// The module (binary Wasm, or WAT text).
    pub wasm: Vec<u8>,
    /// Owning tenant (admin tokens and dev mode only).
    pub tenant: Option<String>,
    /// Per-function limit overrides.
    pub limits: Option<FunctionLimits>,
}

impl Deploy {
    /// A deploy of `wasm` named `name`, into the caller's tenant, with default limits.
    pub fn new(name: impl Into<String>, wasm: impl Into<Vec<u8>>) -> Self {
        Deploy {
            name: name.into(),
            wasm: wasm.into(),
            tenant: None,
            limits: None,
        }
    }

    /// Deploys into `tenant` (admins only).
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets per-function limits.
    pub fn limits(mut self, limits: FunctionLimits) -> Self {
        self.limits = Some(limits);
        self
    }
}

/// Reply of a typed call (plain or from a snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvokeReply {
    /// Results, one JSON number per Wasm result.
    pub results: Vec<Value>,
    /// Instantiate + call time, in microseconds.
    #[serde(default)]
    pub duration_us: u64,
    /// Fuel used, when the engine meters it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel_used: Option<u64>,
    /// The snapshot the call started from (snapshot invokes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// `baked` or `applied` (snapshot invokes only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<String>,
    /// Fields this client version does not know, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

/// Reply of a bytes call: the guest's stdout and what the headers say.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BytesReply {
    /// The guest's stdout.
    pub body: Vec<u8>,
    /// The guest's exit code (`x-tensor-wasm-exit-code`); non-zero still answers 200.
    pub exit_code: Option<i32>,
    /// Instantiate + call time (`x-tensor-wasm-duration-us`).
    pub duration_us: Option<u64>,
    /// Fuel used (`x-tensor-wasm-fuel-used`).
    pub fuel_used: Option<u64>,
    /// The guest's stderr, escaped to visible ASCII and cut (`x-tensor-wasm-stderr`).
    pub stderr: Option<String>,
    /// stderr was cut (`x-tensor-wasm-stderr-truncated: true`).
    pub stderr_truncated: bool,
}

/// A snapshot of a function's warmed instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// `snap-<ms>-<hex>`.
    pub id: String,
    /// The function it belongs to.
    #[serde(default)]
    pub function_id: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: String,
    /// BLAKE3 of the module it was taken from.
    #[serde(default)]
    pub module_blake3: String,
    /// The export run before the capture.
    #[serde(default)]
    pub init_export: Option<String>,
    /// File format version.
    #[serde(default)]
    pub format_version: u16,
    /// Linear memory captured.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Memory bytes stored (non-zero pages).
    #[serde(default)]
    pub stored_bytes: u64,
    /// Size of the file.
    #[serde(default)]
    pub file_bytes: u64,
    /// Signed with the server's snapshot key.
    #[serde(default)]
    pub signed: bool,
}

/// Reply of `POST /admin/backup`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupReply {
    /// The directory written.
    pub to: String,
    /// Files written besides the manifest.
    #[serde(default)]
    pub files: u64,
    /// Their total size.
    #[serde(default)]
    pub size_bytes: u64,
    /// Functions in the backed-up store.
    #[serde(default)]
    pub function_count: u64,
    /// RFC 3339 completion time.
    #[serde(default)]
    pub completed_at: String,
}

#[derive(Deserialize)]
pub(crate) struct FunctionList {
    pub(crate) functions: Vec<Function>,
}

#[derive(Deserialize)]
pub(crate) struct SnapshotList {
    pub(crate) snapshots: Vec<Snapshot>,
}
