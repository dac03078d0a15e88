//! Typed gateway configuration. The binary fills it from flags and
//! environment variables; everything here is validated before the listener
//! opens.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tensor_wasm_store::FunctionLimits;

use crate::auth::{TokenList, is_valid_tenant};

/// Default cap on a request body (`TENSOR_WASM_API_MAX_BODY_BYTES`): 8 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 << 20;
/// Default bound on invocations running at once (`TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS`).
pub const DEFAULT_MAX_CONCURRENT_INVOCATIONS: usize = 512;
/// Default time in-flight requests get to finish after SIGTERM/SIGINT.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Longest invocation timeout a function or tenant may be given.
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// Default server-wide ceiling on a function's timeout when its tenant has
/// no override (`TENSOR_WASM_API_MAX_TIMEOUT_MS`): 60 s.
pub const DEFAULT_CEILING_TIMEOUT_MS: u64 = 60_000;
/// Default server-wide ceiling on a function's memory limit when its tenant
/// has no override (`TENSOR_WASM_API_MAX_MEMORY_BYTES`): 256 MiB.
pub const DEFAULT_CEILING_MEMORY_BYTES: u64 = 256 << 20;
/// Largest stdout cap a function or tenant may be given.
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// Smallest memory cap a function or tenant may be given (one Wasm page).
pub const MIN_MEMORY_BYTES: u64 = 65_536;
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
    /// Bounds on connections: cap, header-read, idle and body timeouts
    /// (`TENSOR_WASM_API_MAX_CONNECTIONS`, `_HEADER_READ_TIMEOUT_MS`,
    /// `_IDLE_TIMEOUT_MS`, `_BODY_TIMEOUT_MS`).
    pub connections: crate::conn::ConnectionLimits,
    /// Failed authentications allowed per client address
    /// (`TENSOR_WASM_API_UNAUTH_RATE_LIMIT_RPS` / `_BURST`); `None` = unlimited.
    pub unauthenticated_rate_limit: Option<RateLimitConfig>,
    /// Proxies whose `X-Forwarded-For` names the client
    /// (`TENSOR_WASM_API_TRUSTED_PROXIES`).
    pub trusted_proxies: TrustedProxies,
    /// With audit records failing to write, refuse state-changing calls
    /// with `503` (`TENSOR_WASM_API_AUDIT_REQUIRED=1`).
    pub audit_required: bool,
    /// Invocations allowed to run at once; more answer `503` (`TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS`).
    pub max_concurrent_invocations: usize,
    /// One tenant's invocations allowed to run at once unless the tenant
    /// limits file says otherwise; more answer `429`
    /// (`TENSOR_WASM_API_TENANT_MAX_CONCURRENT_INVOCATIONS`). `None`: a
    /// quarter of `max_concurrent_invocations`.
    pub tenant_max_concurrent_invocations: Option<usize>,
    /// How many of one tenant's guests may run Wasm at once past their first
    /// epoch tick (`TENSOR_WASM_API_TENANT_CPU_SLOTS`). `None`: half the
    /// machine's cores, at least one.
    pub tenant_cpu_slots: Option<usize>,
    /// Most memory the running invocations' limits may add up to; past it
    /// `503` (`TENSOR_WASM_API_MEMORY_BUDGET_BYTES`). `None`: the machine's
    /// physical memory.
    pub memory_budget_bytes: Option<u64>,
    /// Server-wide ceilings on per-function `timeout_ms` and
    /// `max_memory_bytes` for tenants whose limits file entry sets none
    /// (`TENSOR_WASM_API_MAX_TIMEOUT_MS`, `TENSOR_WASM_API_MAX_MEMORY_BYTES`).
    pub ceiling: FunctionLimits,
    /// Limits applied to invocations unless a tenant or function overrides them.
    pub default_limits: tensor_wasm_exec::Limits,
    /// Per-tenant overrides of `default_limits`, which are also the ceiling
    /// for that tenant's per-function settings (`TENSOR_WASM_TENANT_LIMITS`).
    pub tenant_limits: TenantLimits,
    /// Engine settings other than the cache directory (which is `<data>/jit-cache`);
    /// its host interfaces are linked besides the GPU's.
    pub engine: tensor_wasm_exec::EngineConfig,
    /// GPU runtime guests may use (linked as one more host interface, and
    /// its metrics and raw-PTX allow-list wired by the gateway); `None` = no
    /// GPU host interface.
    pub gpu: Option<Arc<tensor_wasm_gpu::GpuRuntime>>,
    /// True when spans are exported over OTLP (trace ids then come from the span).
    pub otlp_tracing: bool,
    /// How long start-up compiles stored functions before it opens the
    /// listener; the rest compile in the background while `/readyz`
    /// answers `503` with the progress (`TENSOR_WASM_STARTUP_LOAD_BUDGET_MS`).
    pub startup_load_budget: Duration,
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
            connections: crate::conn::ConnectionLimits::default(),
            trusted_proxies: TrustedProxies::default(),
            audit_required: false,
            unauthenticated_rate_limit: Some(DEFAULT_UNAUTHENTICATED_RATE_LIMIT),
            max_concurrent_invocations: DEFAULT_MAX_CONCURRENT_INVOCATIONS,
            tenant_max_concurrent_invocations: None,
            tenant_cpu_slots: None,
            memory_budget_bytes: None,
            ceiling: FunctionLimits {
                timeout_ms: Some(DEFAULT_CEILING_TIMEOUT_MS),
                max_memory_bytes: Some(DEFAULT_CEILING_MEMORY_BYTES),
                ..FunctionLimits::default()
            },
            default_limits: tensor_wasm_exec::Limits::default(),
            tenant_limits: TenantLimits::default(),
            engine: tensor_wasm_exec::EngineConfig::default(),
            gpu: None,
            otlp_tracing: false,
            startup_load_budget: DEFAULT_STARTUP_LOAD_BUDGET,
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
            .field("connections", &self.connections)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("audit_required", &self.audit_required)
            .field(
                "unauthenticated_rate_limit",
                &self.unauthenticated_rate_limit,
            )
            .field(
                "max_concurrent_invocations",
                &self.max_concurrent_invocations,
            )
            .field(
                "tenant_max_concurrent_invocations",
                &self.tenant_max_concurrent_invocations,
            )
            .field("tenant_cpu_slots", &self.tenant_cpu_slots)
            .field("memory_budget_bytes", &self.memory_budget_bytes)
            .field("ceiling", &self.ceiling)
            .field("default_limits", &self.default_limits)
            .field("tenant_limits", &self.tenant_limits)
            .field("engine", &self.engine)
            .field("gpu", &self.gpu.as_ref().map(|g| g.backend_name()))
            .field("otlp_tracing", &self.otlp_tracing)
            .field("startup_load_budget", &self.startup_load_budget)
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

/// Proxies whose `X-Forwarded-For` is believed
/// (`TENSOR_WASM_API_TRUSTED_PROXIES`: comma-separated addresses or CIDR
/// ranges). A request's client address is its TCP peer, unless that peer
/// is trusted: then it is the right-most `X-Forwarded-For` entry that is
/// not itself trusted. Without trusted proxies the header is ignored — any
/// client could write it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

/// Most `X-Forwarded-For` entries walked for one request.
const MAX_FORWARDED_HOPS: usize = 16;

impl TrustedProxies {
    /// Parses `10.0.0.0/8,192.168.1.7,fd00::/8`; empty means none.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!(
                        "TENSOR_WASM_API_TRUSTED_PROXIES: `{entry}` is neither an IP address nor a CIDR range"
                    )
                })?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// True when no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client(
        &self,
        peer: Option<std::net::IpAddr>,
        headers: &axum::http::HeaderMap,
    ) -> Option<std::net::IpAddr> {
        let peer = peer?;
        if !self.trusts(peer) {
            return Some(peer);
        }
        let mut client = peer;
        // Split the raw bytes: a client's non-ASCII byte in its own part of
        // the header must not make the entries a proxy appended unreadable.
        let entries = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.as_bytes().rsplit(|b| *b == b','))
            .take(MAX_FORWARDED_HOPS);
        for entry in entries {
            let entry = std::str::from_utf8(entry).unwrap_or("!").trim();
            let Some(ip) = entry
                .parse::<std::net::IpAddr>()
                .ok()
                .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
            else {
                // Garbage: what lies left of it is not vouched for.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        Some(client)
    }
}

/// Default time start-up spends compiling stored functions before the
/// listener opens (the compile cache makes most start-ups finish within it).
pub const DEFAULT_STARTUP_LOAD_BUDGET: Duration = Duration::from_secs(5);

/// Default budget of failed authentications per client address: 5 a
/// second, bursts of 20 — ample for a client with a mistyped token, little
/// for a `401` flood (each would otherwise cost a hash and an audit record).
pub const DEFAULT_UNAUTHENTICATED_RATE_LIMIT: RateLimitConfig = RateLimitConfig {
    rps: NonZeroU32::new(5).unwrap(),
    burst: NonZeroU32::new(20).unwrap(),
};

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

/// Per-tenant limit overrides, read once at start-up from a JSON file that
/// maps tenant ids to the same fields a deploy request's `limits` takes:
///
/// ```json
/// { "free-tier": { "timeout_ms": 500, "max_memory_bytes": 33554432 },
///   "batch":     { "timeout_ms": 120000 } }
/// ```
///
/// A field set for a tenant replaces the server default for that tenant's
/// functions and is the most a per-function setting may ask for (higher
/// requests are refused with `400`; stored settings above a lowered ceiling
/// are capped at load).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantLimits {
    by_tenant: HashMap<String, FunctionLimits>,
    concurrency: HashMap<String, usize>,
    raw_ptx: Vec<String>,
    quotas: HashMap<String, TenantQuota>,
}

/// What one tenant may keep stored (tenant limits file fields
/// `max_functions`, `max_stored_bytes`, `max_snapshots`); `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantQuota {
    /// Functions deployed at once.
    pub max_functions: Option<u64>,
    /// Sum of the tenant's modules' sizes, in bytes.
    pub max_stored_bytes: Option<u64>,
    /// Snapshots kept at once, over all of the tenant's functions.
    pub max_snapshots: Option<u64>,
}

impl TenantQuota {
    /// True when any cap is set.
    pub fn is_set(&self) -> bool {
        self.max_functions.is_some()
            || self.max_stored_bytes.is_some()
            || self.max_snapshots.is_some()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantLimitsEntry {
    timeout_ms: Option<u64>,
    max_memory_bytes: Option<u64>,
    fuel: Option<u64>,
    max_output_bytes: Option<u64>,
    max_concurrent_invocations: Option<usize>,
    #[serde(default)]
    raw_ptx: bool,
    max_functions: Option<u64>,
    max_stored_bytes: Option<u64>,
    max_snapshots: Option<u64>,
}

/// Why a tenant limits file was refused.
#[derive(Debug, thiserror::Error)]
pub enum TenantLimitsError {
    /// The file cannot be read.
    #[error("tenant limits file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON object of tenant objects with known fields.
    #[error(
        "tenant limits: {0} (expected a JSON object like {{\"TENANT\": {{\"timeout_ms\": 500}}}} \
         with fields timeout_ms, max_memory_bytes, fuel, max_output_bytes, \
         max_concurrent_invocations, raw_ptx, max_functions, max_stored_bytes, max_snapshots)"
    )]
    Syntax(String),
    /// A tenant id or a value is out of range.
    #[error("tenant limits: {0}")]
    Invalid(String),
}

impl TenantLimits {
    /// Parses and validates the file's text.
    pub fn parse_json(text: &str) -> Result<Self, TenantLimitsError> {
        let raw: HashMap<String, TenantLimitsEntry> =
            serde_json::from_str(text).map_err(|e| TenantLimitsError::Syntax(e.to_string()))?;
        let mut by_tenant = HashMap::with_capacity(raw.len());
        let mut concurrency = HashMap::new();
        let mut raw_ptx = Vec::new();
        let mut quotas = HashMap::new();
        for (tenant, e) in raw {
            if !is_valid_tenant(&tenant) {
                return Err(TenantLimitsError::Invalid(format!(
                    "tenant id `{tenant}` must be 1-64 characters of [A-Za-z0-9._-]"
                )));
            }
            let limits = FunctionLimits {
                timeout_ms: e.timeout_ms,
                max_memory_bytes: e.max_memory_bytes,
                fuel: e.fuel,
                max_output_bytes: e.max_output_bytes,
            };
            check_limit_values(&limits, u64::MAX, "")
                .map_err(|m| TenantLimitsError::Invalid(format!("tenant `{tenant}`: {m}")))?;
            if let Some(n) = e.max_concurrent_invocations {
                if n == 0 {
                    return Err(TenantLimitsError::Invalid(format!(
                        "tenant `{tenant}`: `max_concurrent_invocations` must be at least 1"
                    )));
                }
                concurrency.insert(tenant.clone(), n);
            }
            if e.raw_ptx {
                raw_ptx.push(tenant.clone());
            }
            let quota = TenantQuota {
                max_functions: e.max_functions,
                max_stored_bytes: e.max_stored_bytes,
                max_snapshots: e.max_snapshots,
            };
            if quota.is_set() {
                quotas.insert(tenant.clone(), quota);
            }
            by_tenant.insert(tenant, limits);
        }
        raw_ptx.sort();
        Ok(Self {
            by_tenant,
            concurrency,
            raw_ptx,
            quotas,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, TenantLimitsError> {
        let text = std::fs::read_to_string(path).map_err(|source| TenantLimitsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse_json(&text)
    }

    /// The overrides of one tenant, if any.
    pub fn get(&self, tenant: &str) -> Option<&FunctionLimits> {
        self.by_tenant.get(tenant)
    }

    /// Tenants with their own bound on concurrent invocations.
    pub fn concurrency_overrides(&self) -> &HashMap<String, usize> {
        &self.concurrency
    }

    /// Tenants with their own `max_memory_bytes`, and its value.
    pub fn memory_overrides(&self) -> impl Iterator<Item = (&str, u64)> {
        self.by_tenant
            .iter()
            .filter_map(|(t, l)| l.max_memory_bytes.map(|m| (t.as_str(), m)))
    }

    /// What `tenant` may keep stored (no caps unless its entry sets them).
    pub fn quota(&self, tenant: &str) -> TenantQuota {
        self.quotas.get(tenant).copied().unwrap_or_default()
    }

    /// Tenants allowed to load raw PTX (`"raw_ptx": true`), sorted.
    pub fn raw_ptx_tenants(&self) -> &[String] {
        &self.raw_ptx
    }

    /// Number of tenants with overrides.
    pub fn len(&self) -> usize {
        self.by_tenant.len()
    }

    /// True when no tenant has overrides.
    pub fn is_empty(&self) -> bool {
        self.by_tenant.is_empty()
    }

    /// Every tenant's memory override must fit the engine's per-instance ceiling.
    pub(crate) fn check_memory_ceiling(&self, max_memory_bytes: u64) -> Result<(), String> {
        let mut tenants: Vec<_> = self.by_tenant.iter().collect();
        tenants.sort_by(|a, b| a.0.cmp(b.0));
        for (tenant, l) in tenants {
            check_limit_values(l, max_memory_bytes, "")
                .map_err(|m| format!("tenant `{tenant}`: {m}"))?;
        }
        Ok(())
    }
}

/// Range checks shared by deploy requests and the tenant limits file;
/// `prefix` names where the fields live (`limits.` in a deploy request).
pub(crate) fn check_limit_values(
    l: &FunctionLimits,
    max_memory_bytes: u64,
    prefix: &str,
) -> Result<(), String> {
    if let Some(t) = l.timeout_ms
        && !(1..=MAX_TIMEOUT_MS).contains(&t)
    {
        return Err(format!("`{prefix}timeout_ms` must be 1..={MAX_TIMEOUT_MS}"));
    }
    if let Some(m) = l.max_memory_bytes
        && !(MIN_MEMORY_BYTES..=max_memory_bytes).contains(&m)
    {
        return Err(if max_memory_bytes == u64::MAX {
            format!("`{prefix}max_memory_bytes` must be at least {MIN_MEMORY_BYTES}")
        } else {
            format!("`{prefix}max_memory_bytes` must be {MIN_MEMORY_BYTES}..={max_memory_bytes}")
        });
    }
    if l.fuel == Some(0) {
        return Err(format!("`{prefix}fuel` must be at least 1"));
    }
    if let Some(o) = l.max_output_bytes
        && o > MAX_OUTPUT_BYTES
    {
        return Err(format!(
            "`{prefix}max_output_bytes` must be at most {MAX_OUTPUT_BYTES}"
        ));
    }
    Ok(())
}

/// The first per-function setting above a tenant's ceiling, as
/// `(field, requested, ceiling)`.
pub(crate) fn above_ceiling(
    l: &FunctionLimits,
    ceiling: &FunctionLimits,
) -> Option<(&'static str, u64, u64)> {
    let fields = [
        ("timeout_ms", l.timeout_ms, ceiling.timeout_ms),
        (
            "max_memory_bytes",
            l.max_memory_bytes,
            ceiling.max_memory_bytes,
        ),
        ("fuel", l.fuel, ceiling.fuel),
        (
            "max_output_bytes",
            l.max_output_bytes,
            ceiling.max_output_bytes,
        ),
    ];
    fields.into_iter().find_map(|(name, v, c)| match (v, c) {
        (Some(v), Some(c)) if v > c => Some((name, v, c)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        use axum::http::{HeaderMap, HeaderValue};
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 1.2.3.4"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("10.0.0.9"));
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(Some(ip("10.0.0.1")), &headers),
            Some(ip("10.0.0.1"))
        );
        let lb = TrustedProxies::parse("10.0.0.0/8, 192.168.1.7").unwrap();
        // Right to left: 10.0.0.9 is another trusted hop, 1.2.3.4 is the
        // client; 6.6.6.6 was written by the client and is not believed.
        assert_eq!(
            lb.client(Some(ip("10.0.0.1")), &headers),
            Some(ip("1.2.3.4"))
        );
        // A client that is not a proxy cannot choose its address.
        assert_eq!(
            lb.client(Some(ip("8.8.8.8")), &headers),
            Some(ip("8.8.8.8"))
        );
        let mut garbage = HeaderMap::new();
        garbage.insert(
            "x-forwarded-for",
            HeaderValue::from_static("<script>, 10.0.0.3"),
        );
        assert_eq!(
            lb.client(Some(ip("192.168.1.7")), &garbage),
            Some(ip("10.0.0.3"))
        );
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }

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

    #[test]
    fn tenant_limits_parse_and_validate() {
        let t = TenantLimits::parse_json(
            r#"{"free": {"timeout_ms": 500, "max_memory_bytes": 1048576}, "batch": {"fuel": 10}}"#,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("free").unwrap().timeout_ms, Some(500));
        assert_eq!(t.get("free").unwrap().fuel, None);
        assert_eq!(t.get("batch").unwrap().fuel, Some(10));
        assert!(t.get("other").is_none());
        assert!(TenantLimits::parse_json("{}").unwrap().is_empty());

        let err = |text: &str| TenantLimits::parse_json(text).unwrap_err().to_string();
        assert!(err(r#"{"free": {"timeout": 5}}"#).contains("unknown field `timeout`"));
        assert!(err("[1]").contains("expected a JSON object"));
        assert!(err(r#"{"bad tenant": {}}"#).contains("tenant id `bad tenant`"));
        assert!(
            err(r#"{"free": {"timeout_ms": 0}}"#)
                .contains("tenant `free`: `timeout_ms` must be 1..=")
        );
        assert!(err(r#"{"free": {"max_memory_bytes": 1}}"#).contains("at least 65536"));
        assert!(err(r#"{"free": {"fuel": 0}}"#).contains("`fuel` must be at least 1"));

        assert!(
            err(r#"{"free": {"max_concurrent_invocations": 0}}"#)
                .contains("`max_concurrent_invocations` must be at least 1")
        );
        let shares = TenantLimits::parse_json(
            r#"{"a": {"max_concurrent_invocations": 3, "raw_ptx": true}, "b": {"raw_ptx": false}}"#,
        )
        .unwrap();
        assert_eq!(shares.concurrency_overrides().get("a"), Some(&3));
        assert_eq!(shares.concurrency_overrides().get("b"), None);
        assert_eq!(shares.raw_ptx_tenants(), ["a".to_owned()]);

        let big = TenantLimits::parse_json(r#"{"x": {"max_memory_bytes": 1073741824}}"#).unwrap();
        assert!(
            big.check_memory_ceiling(256 << 20)
                .unwrap_err()
                .contains("tenant `x`")
        );
        assert!(big.check_memory_ceiling(4 << 30).is_ok());
    }

    #[test]
    fn ceiling_reports_the_first_field_above_it() {
        let ceiling = FunctionLimits {
            timeout_ms: Some(500),
            fuel: Some(100),
            ..Default::default()
        };
        let ok = FunctionLimits {
            timeout_ms: Some(500),
            max_memory_bytes: Some(1 << 30),
            ..Default::default()
        };
        assert_eq!(above_ceiling(&ok, &ceiling), None);
        let high = FunctionLimits {
            fuel: Some(101),
            ..Default::default()
        };
        assert_eq!(above_ceiling(&high, &ceiling), Some(("fuel", 101, 100)));
    }
}
