//! Shared state of the gateway and the per-request context handlers see.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use prometheus_client::registry::Registry;
use tensor_wasm_exec::{CompiledFunction, Executor, InvokeContext, Limits};
use tensor_wasm_store::{FunctionLimits, FunctionRecord, FunctionStore};

use crate::audit::{AuditLog, AuditRecord, AuditTargetRef, Outcome};
use crate::auth::{Actor, Authenticator};
use crate::error::ApiError;
use crate::metrics::GatewayMetrics;
use crate::rate::RateLimits;

/// Start-up compile progress of the stored functions.
#[derive(Debug, Default)]
pub(crate) struct Loading {
    /// True while the rest load in the background after the listener opened.
    pub(crate) active: std::sync::atomic::AtomicBool,
    /// Stored functions processed so far.
    pub(crate) done: std::sync::atomic::AtomicUsize,
    /// Stored functions at start-up.
    pub(crate) total: std::sync::atomic::AtomicUsize,
}

/// A deployed function: its durable record and its compiled module.
#[derive(Debug)]
pub struct DeployedFunction {
    /// The record as stored.
    pub record: FunctionRecord,
    /// The compiled module.
    pub compiled: CompiledFunction,
    /// Tenant and effective limits, built once so invokes allocate nothing for them.
    pub context: InvokeContext,
    /// The tenant's concurrency share, resolved once (admission looks nothing up).
    pub share: crate::admission::TenantShare,
}

/// The in-memory registry of compiled functions: the invoke path reads only this.
#[derive(Debug, Default)]
pub struct FunctionRegistry {
    map: RwLock<HashMap<String, Arc<DeployedFunction>>>,
}

impl FunctionRegistry {
    /// Looks a function up by id.
    pub fn get(&self, id: &str) -> Option<Arc<DeployedFunction>> {
        match self.map.read() {
            Ok(m) => m.get(id).cloned(),
            Err(poisoned) => poisoned.into_inner().get(id).cloned(),
        }
    }

    /// Adds (or replaces) a function; returns the new count.
    pub fn insert(&self, f: Arc<DeployedFunction>) -> usize {
        let mut m = match self.map.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        m.insert(f.record.id.0.clone(), f);
        m.len()
    }

    /// Removes a function; returns it and the new count.
    pub fn remove(&self, id: &str) -> (Option<Arc<DeployedFunction>>, usize) {
        let mut m = match self.map.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let removed = m.remove(id);
        (removed, m.len())
    }

    /// Records visible under `tenant` (`None` = all), ordered by id.
    pub fn list(&self, tenant: Option<&str>) -> Vec<Arc<DeployedFunction>> {
        let m = match self.map.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut out: Vec<_> = m
            .values()
            .filter(|f| tenant.is_none_or(|t| f.record.tenant == t))
            .cloned()
            .collect();
        drop(m);
        out.sort_by(|a, b| a.record.id.cmp(&b.record.id));
        out
    }

    /// Number of deployed functions.
    pub fn len(&self) -> usize {
        match self.map.read() {
            Ok(m) => m.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    /// True when nothing is deployed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

pub(crate) struct Shared {
    pub(crate) store: Arc<dyn FunctionStore>,
    pub(crate) executor: Executor,
    pub(crate) functions: FunctionRegistry,
    pub(crate) auth: Authenticator,
    pub(crate) rate: RateLimits,
    pub(crate) audit: AuditLog,
    pub(crate) metrics: GatewayMetrics,
    pub(crate) registry: Registry,
    pub(crate) admission: crate::admission::Admission,
    pub(crate) ceiling: FunctionLimits,
    pub(crate) max_body_bytes: usize,
    pub(crate) body_timeout: std::time::Duration,
    pub(crate) trusted_proxies: crate::config::TrustedProxies,
    pub(crate) audit_required: bool,
    /// Held from a capped tenant's quota check to the registry insert, so
    /// concurrent deploys cannot together pass a quota.
    pub(crate) quota_lock: tokio::sync::Mutex<()>,
    /// Progress of compiling the stored functions at start-up.
    pub(crate) loading: Loading,
    pub(crate) unauthenticated: crate::rate::UnauthenticatedLimit,
    pub(crate) default_limits: Limits,
    pub(crate) tenant_limits: crate::config::TenantLimits,
    pub(crate) max_memory_bytes: u64,
    pub(crate) gpu_backend: String,
    pub(crate) gpu: Option<Arc<tensor_wasm_gpu::GpuRuntime>>,
    pub(crate) data_dir: PathBuf,
    pub(crate) otel: bool,
    pub(crate) snapshots: crate::snapshots::SnapshotService,
}

impl AppState {
    /// The durable function store.
    pub fn store(&self) -> &Arc<dyn FunctionStore> {
        &self.inner.store
    }

    /// The execution engine.
    pub fn executor(&self) -> &Executor {
        &self.inner.executor
    }

    /// The in-memory registry of compiled functions.
    pub fn functions(&self) -> &FunctionRegistry {
        &self.inner.functions
    }

    /// The gateway's metrics.
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.inner.metrics
    }

    /// The GPU runtime, when one is configured.
    pub fn gpu(&self) -> Option<&Arc<tensor_wasm_gpu::GpuRuntime>> {
        self.inner.gpu.as_ref()
    }

    /// The data directory (`snapshots/` lives under it).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// True in dev mode (no tokens configured).
    pub fn dev_mode(&self) -> bool {
        self.inner.auth.dev_mode()
    }

    /// Largest accepted request body.
    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// How long a request body may take to arrive.
    pub fn body_timeout(&self) -> std::time::Duration {
        self.inner.body_timeout
    }

    /// `503 not_ready` while stored functions are still being compiled after
    /// start-up: a function missing from the registry may just not be
    /// loaded yet, and a list would be incomplete.
    pub(crate) fn check_loaded(&self) -> Result<(), ApiError> {
        let l = &self.inner.loading;
        if l.active.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ApiError::NotReady(format!(
                "stored functions are still loading ({} of {} compiled)",
                l.done.load(std::sync::atomic::Ordering::Relaxed),
                l.total.load(std::sync::atomic::Ordering::Relaxed)
            )));
        }
        Ok(())
    }

    /// Looks up a function the caller may access; another tenant's function
    /// is reported as not found (and audited as a denial) so its existence
    /// does not leak.
    pub fn function_for(
        &self,
        caller: &Caller,
        id: &str,
        action: &str,
    ) -> Result<Arc<DeployedFunction>, ApiError> {
        let Some(f) = self.inner.functions.get(id) else {
            self.check_loaded()?;
            return Err(ApiError::FunctionNotFound);
        };
        if caller.actor.can_access(&f.record.tenant) {
            return Ok(f);
        }
        let target = AuditTargetRef {
            function_id: Some(id.to_owned()),
            ..Default::default()
        };
        let err = ApiError::FunctionNotFound;
        self.audit_denied(caller, action, &err, &target);
        Err(err)
    }

    /// Writes the audit record of a call's result: `Ok(status)`, or the
    /// error about to be returned, recorded with the outcome it implies
    /// ([`ApiError::audit_outcome`]).
    pub fn audit(
        &self,
        caller: &Caller,
        action: &str,
        result: Result<u16, &ApiError>,
        target: &AuditTargetRef,
    ) {
        match result {
            Ok(status) => self.audit_record(caller, action, Outcome::Success, status, None, target),
            Err(e) => self.audit_record(
                caller,
                action,
                e.audit_outcome(),
                e.status().as_u16(),
                Some(e.code()),
                target,
            ),
        }
    }

    /// Writes the audit record of a call refused before it ran — at the
    /// door (auth, rate limits, an unwritable audit log) or for naming
    /// something that is not the caller's (answered `404`, as if absent) —
    /// recorded as `denied`.
    pub fn audit_denied(
        &self,
        caller: &Caller,
        action: &str,
        err: &ApiError,
        target: &AuditTargetRef,
    ) {
        self.audit_record(
            caller,
            action,
            Outcome::Denied,
            err.status().as_u16(),
            Some(err.code()),
            target,
        );
    }

    /// Writes one audit record (the one writer every route goes through);
    /// a failed write is counted in `tensor_wasm_audit_write_errors_total`.
    pub(crate) fn audit_record(
        &self,
        caller: &Caller,
        action: &str,
        outcome: Outcome,
        status: u16,
        error: Option<&str>,
        target: &AuditTargetRef,
    ) {
        let trace_id = caller.ctx.trace_id(self.inner.otel);
        let written = self.inner.audit.write(&AuditRecord {
            time: AuditLog::now(),
            action,
            outcome,
            status,
            actor: &caller.actor,
            target,
            request_id: &caller.ctx.request_id,
            client: caller.ctx.client,
            trace_id: trace_id.as_deref(),
            method: caller.ctx.method,
            route: caller.ctx.route,
            error,
        });
        if written.is_err() {
            self.inner.metrics.audit_errors.inc();
        }
    }

    /// A deployed function: `record` compiled, with its effective limits
    /// and its tenant's concurrency share resolved once.
    pub(crate) fn deployed(
        &self,
        record: FunctionRecord,
        compiled: CompiledFunction,
    ) -> Arc<DeployedFunction> {
        let share = self.inner.admission.share(&record.tenant);
        let context = InvokeContext {
            tenant: record.tenant.as_str().into(),
            limits: self.limits_for(&record.tenant, &record.limits),
            cpu_slots: Some(share.cpu.clone()),
        };
        Arc::new(DeployedFunction {
            record,
            compiled,
            context,
            share,
        })
    }

    /// Admits one invocation of `f` (tenant share, global slots, memory
    /// budget), or refuses it with `429`/`503`.
    pub(crate) fn admit<'a>(
        &'a self,
        f: &'a DeployedFunction,
    ) -> Result<crate::admission::InvocationPermit<'a>, ApiError> {
        self.inner.admission.admit(
            &f.share,
            f.context.limits.max_memory_bytes,
            &self.inner.metrics,
        )
    }

    /// Effective limits of a function: the server defaults, replaced by its
    /// tenant's overrides, replaced by its own settings — which never go
    /// above the tenant's (the operator's ceiling wins).
    pub(crate) fn limits_for(&self, tenant: &str, own: &FunctionLimits) -> Limits {
        let mut limits = self.inner.default_limits.clone();
        if let Some(overrides) = self.inner.tenant_limits.get(tenant) {
            apply(&mut limits, overrides);
        }
        let capped = |v: Option<u64>, c: Option<u64>| match (v, c) {
            (Some(v), Some(c)) => Some(v.min(c)),
            (v, _) => v,
        };
        let c = self.ceiling_for(tenant);
        // A server default above a lowered server-wide ceiling is capped too.
        if let Some(ms) = c.timeout_ms {
            limits.timeout = limits.timeout.min(std::time::Duration::from_millis(ms));
        }
        if let Some(bytes) = c.max_memory_bytes {
            limits.max_memory_bytes = limits.max_memory_bytes.min(bytes);
        }
        apply(
            &mut limits,
            &FunctionLimits {
                timeout_ms: capped(own.timeout_ms, c.timeout_ms),
                max_memory_bytes: capped(own.max_memory_bytes, c.max_memory_bytes),
                fuel: capped(own.fuel, c.fuel),
                max_output_bytes: capped(own.max_output_bytes, c.max_output_bytes),
            },
        );
        limits
    }
}

impl AppState {
    /// The most a function of `tenant` may ask for: the tenant's own entry
    /// in the limits file where it sets a field, else the server-wide
    /// ceiling (timeout and memory), which holds even without a limits file.
    pub(crate) fn ceiling_for(&self, tenant: &str) -> FunctionLimits {
        let server = &self.inner.ceiling;
        let own = self
            .inner
            .tenant_limits
            .get(tenant)
            .cloned()
            .unwrap_or_default();
        FunctionLimits {
            timeout_ms: own.timeout_ms.or(server.timeout_ms),
            max_memory_bytes: own.max_memory_bytes.or(server.max_memory_bytes),
            fuel: own.fuel.or(server.fuel),
            max_output_bytes: own.max_output_bytes.or(server.max_output_bytes),
        }
    }

    /// Whether `tenant` has its own entry in the limits file for `field`.
    pub(crate) fn tenant_sets(&self, tenant: &str, field: &str) -> bool {
        self.inner
            .tenant_limits
            .get(tenant)
            .is_some_and(|l| match field {
                "timeout_ms" => l.timeout_ms.is_some(),
                "max_memory_bytes" => l.max_memory_bytes.is_some(),
                "fuel" => l.fuel.is_some(),
                "max_output_bytes" => l.max_output_bytes.is_some(),
                _ => false,
            })
    }
}

/// Replaces the fields of `limits` that `overrides` sets.
fn apply(limits: &mut Limits, overrides: &FunctionLimits) {
    if let Some(ms) = overrides.timeout_ms {
        limits.timeout = std::time::Duration::from_millis(ms);
    }
    if let Some(bytes) = overrides.max_memory_bytes {
        limits.max_memory_bytes = bytes;
    }
    if let Some(fuel) = overrides.fuel {
        limits.fuel = Some(fuel);
    }
    if let Some(bytes) = overrides.max_output_bytes {
        limits.max_output_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    }
}

/// Per-request facts set by the outermost layer.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// Request id (echoed as `x-request-id`).
    pub request_id: Arc<str>,
    /// Trace id from an incoming `traceparent`, if any.
    pub(crate) traceparent_id: Option<Arc<str>>,
    /// HTTP method label.
    pub method: &'static str,
    /// Matched route template label.
    pub route: &'static str,
    /// The client's address (see [`crate::guard::client_addr`]).
    pub client: Option<std::net::IpAddr>,
}

impl RequestContext {
    /// The W3C trace id of this request, if it is traced.
    pub fn trace_id(&self, otel: bool) -> Option<String> {
        if let Some(id) = &self.traceparent_id {
            return Some(id.to_string());
        }
        if otel {
            use opentelemetry::trace::TraceContextExt;
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let cx = tracing::Span::current().context();
            let sc = cx.span().span_context().clone();
            if sc.is_valid() {
                return Some(sc.trace_id().to_string());
            }
        }
        None
    }
}

/// The authenticated caller and its request context; the extractor handlers use.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who is calling.
    pub actor: Arc<Actor>,
    /// The request's context.
    pub ctx: RequestContext,
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let actor = parts
            .extensions
            .get::<Arc<Actor>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is missing the auth layer".into()))?;
        let ctx = parts
            .extensions
            .get::<RequestContext>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is missing the request layer".into()))?;
        Ok(Self { actor, ctx })
    }
}
