//! Typed gateway configuration. The binary fills it from flags and
//! environment variables; everything here is validated before the listener
//! opens.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::TokenList;

/// Default cap on a request body (`TENSOR_WASM_API_MAX_BODY_BYTES`): 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Default bound on invocations running at once (`TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS`).
pub const DEFAULT_MAX_CONCURRENT_INVOCATIONS: usize = 512;
/// Default time in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// How often dev mode repeats its warning.
pub const DEV_MODE_WARNING_INTERVAL: Duration = Duration::from_secs(300);

/// Everything the gateway needs to start.
#[derive(Clone)]
pub struct ApiConfig {
    /// Data directory: `functions.redb`, `audit.key`, `snapshots/`, `jit-cache/`.
    pub data_dir: PathBuf,
    /// Parsed `TENSOR_WASM_API_TOKENS`; empty means dev mode.
    pub tokens: TokenList,
    /// Where audit records go (`TENSOR_WASM_API_AUDIT_LOG`).
    pub audit: AuditTarget,
    /// Per-token rate limit (`TENSOR_WASM_API_RATE_LIMIT_RPS` / `_BURST`); `None` = unlimited.
    pub rate_limit: Option<RateLimitConfig>,
    /// Largest accepted request body (`TENSOR_WASM_API_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Invocations allowed to run at once; more answer `503` (`TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS`).
    pub max_concurrent_invocations: usize,
    /// Limits applied to invocations unless a function overrides them.
    pub default_limits: tensor_wasm_exec::Limits,
    /// Engine settings other than the cache directory (which is `<data>/jit-cache`).
    pub engine: tensor_wasm_exec::EngineConfig,
    /// GPU runtime guests may use; `None` = no GPU host interface.
    pub gpu: Option<Arc<tensor_wasm_gpu::GpuRuntime>>,
    /// True when spans are exported over OTLP (trace ids then come from the span).
    pub otlp_tracing: bool,
    /// How long in-flight requests may run after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Period of the dev-mode warning.
    pub dev_mode_warning_interval: Duration,
}

impl ApiConfig {
    /// A configuration with defaults for everything but the data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tokens: TokenList::default(),
            audit: AuditTarget::Stdout,
            rate_limit: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent_invocations: DEFAULT_MAX_CONCURRENT_INVOCATIONS,
            default_limits: tensor_wasm_exec::Limits::default(),
            engine: tensor_wasm_exec::EngineConfig::default(),
            gpu: None,
            otlp_tracing: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            dev_mode_warning_interval: DEV_MODE_WARNING_INTERVAL,
        }
    }
}

impl std::fmt::Debug for ApiConfig {
    // Hand-written so that nothing about tokens beyond their count is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("data_dir", &self.data_dir)
            .field("tokens", &self.tokens)
            .field("audit", &self.audit)
            .field("rate_limit", &self.rate_limit)
            .field("max_body_bytes", &self.max_body_bytes)
            .field(
                "max_concurrent_invocations",
                &self.max_concurrent_invocations,
            )
            .field("default_limits", &self.default_limits)
            .field("engine", &self.engine)
            .field("gpu", &self.gpu.as_ref().map(|g| g.backend_name()))
            .field("otlp_tracing", &self.otlp_tracing)
            .field("shutdown_grace", &self.shutdown_grace)
            .finish()
    }
}

/// Where audit records are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditTarget {
    /// One JSON line per record on standard output.
    Stdout,
    /// Appended to a file (opened `O_APPEND`, so `logrotate copytruncate` is safe).
    File(PathBuf),
}

/// A malformed `TENSOR_WASM_API_AUDIT_LOG` value.
#[derive(Debug, thiserror::Error)]
#[error("TENSOR_WASM_API_AUDIT_LOG must be `stdout` or `file:/absolute/path`, got `{0}`")]
pub struct AuditTargetParseError(String);

impl FromStr for AuditTarget {
    type Err = AuditTargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("stdout") {
            return Ok(Self::Stdout);
        }
        match s.strip_prefix("file:") {
            Some(path) if !path.is_empty() => Ok(Self::File(PathBuf::from(path))),
            _ => Err(AuditTargetParseError(s.to_owned())),
        }
    }
}

/// Token-bucket rate limit applied per token (per client IP in dev mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Sustained requests per second.
    pub rps: NonZeroU32,
    /// Requests allowed in a burst above the sustained rate.
    pub burst: NonZeroU32,
}

impl RateLimitConfig {
    /// Builds a limit from the two environment values; burst defaults to `rps`.
    pub fn new(rps: NonZeroU32, burst: Option<NonZeroU32>) -> Self {
        Self {
            rps,
            burst: burst.unwrap_or(rps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_target_parses_stdout_and_file_forms() {
        assert_eq!(
            "stdout".parse::<AuditTarget>().unwrap(),
            AuditTarget::Stdout
        );
        assert_eq!(
            "file:/var/lib/tensor-wasm/audit.log"
                .parse::<AuditTarget>()
                .unwrap(),
            AuditTarget::File("/var/lib/tensor-wasm/audit.log".into())
        );
        assert!("file:".parse::<AuditTarget>().is_err());
        assert!("syslog".parse::<AuditTarget>().is_err());
    }

    #[test]
    fn burst_defaults_to_rps() {
        let rps = NonZeroU32::new(5).unwrap();
        assert_eq!(RateLimitConfig::new(rps, None).burst, rps);
    }
}
