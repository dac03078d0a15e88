//! Start-up (data dir, audit key, store, engine, registry warm-up) and the
//! serve loop with graceful shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::Router;
use prometheus_client::registry::Registry;
use tensor_wasm_exec::{EngineConfig, Executor};
use tensor_wasm_fs::{DataDir, Secret};
use tensor_wasm_store::{FunctionStore, StoreChoice};
use tokio::net::TcpListener;

use crate::audit::AuditLog;
use crate::auth::{Authenticator, TokenIdHasher};
use crate::config::ApiConfig;
use crate::error::StartupError;
use crate::metrics::GatewayMetrics;
use crate::rate::RateLimits;
use crate::state::{AppState, FunctionRegistry, Shared};

/// A ready-to-serve gateway.
pub struct Gateway {
    state: AppState,
    /// Stored functions not compiled before start-up's time budget ran out;
    /// [`Gateway::serve`] compiles them in the background.
    pending: Vec<tensor_wasm_store::FunctionRecord>,
    shutdown_grace: Duration,
    dev_warning_interval: Duration,
    connections: crate::conn::ConnectionLimits,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("dev_mode", &self.state.dev_mode())
            .field("functions", &self.state.functions().len())
            .finish()
    }
}

impl Gateway {
    /// Opens everything under `config.data_dir` with the default store
    /// backend ([`StoreChoice::default`], the embedded `functions.redb`), the
    /// audit key, the compile cache. The binary picks the backend itself and
    /// calls [`Gateway::with_store`].
    pub async fn open(config: ApiConfig) -> Result<Self, StartupError> {
        tensor_wasm_store::backup::check_no_interrupted_restore(&config.data_dir)?;
        prepare_data_dir(&config.data_dir)?;
        let store = StoreChoice::default().open(&config.data_dir).await?;
        Self::with_store(config, store).await
    }

    /// Like [`Gateway::open`] with a store of any backend chosen by the caller.
    pub async fn with_store(
        config: ApiConfig,
        store: Arc<dyn FunctionStore>,
    ) -> Result<Self, StartupError> {
        prepare_data_dir(&config.data_dir)?;
        let data = DataDir::new(&config.data_dir);
        let key = data.load_or_create_key(Secret::AuditKey)?;
        let auth = Authenticator::new(&config.tokens, TokenIdHasher::new(key));
        let dev_mode = auth.dev_mode();
        let audit = AuditLog::open(&config.audit).map_err(StartupError::AuditLog)?;

        let cache_key = data.load_or_create_key(Secret::CacheKey)?;

        let mut engine_config = EngineConfig {
            cache_dir: Some(data.compile_cache()),
            cache_key: Some(tensor_wasm_exec::CacheKey(cache_key)),
            ..config.engine.clone()
        };
        // The GPU runtime guests use is the one whose metrics, quotas and
        // raw-PTX allow-list are wired below.
        if let Some(gpu) = &config.gpu {
            let host = tensor_wasm_gpu::GpuHost::new(gpu.clone());
            engine_config.host_interfaces.push(host.into());
        }
        let max_memory_bytes = engine_config.pool_max_memory_bytes;
        config
            .tenant_limits
            .check_memory_ceiling(max_memory_bytes)
            .map_err(StartupError::TenantLimits)?;
        crate::config::check_limit_values(&config.ceiling, max_memory_bytes, "").map_err(|m| {
            StartupError::TenantLimits(format!(
                "server-wide ceiling (TENSOR_WASM_API_MAX_TIMEOUT_MS / \
                     TENSOR_WASM_API_MAX_MEMORY_BYTES): {m}"
            ))
        })?;
        let executor = Executor::new(engine_config).map_err(StartupError::Engine)?;

        let gpu_backend = config
            .gpu
            .as_ref()
            .map_or("none", |g| g.backend_name())
            .to_owned();
        let mut registry = Registry::default();
        let metrics = GatewayMetrics::register(&mut registry, &gpu_backend, dev_mode);
        executor.register_metrics(&mut registry);
        if let Some(gpu) = &config.gpu {
            gpu.register_metrics(&mut registry);
        }

        let snapshots =
            crate::snapshots::SnapshotService::register(&mut registry, &config.data_dir);
        let global = config.max_concurrent_invocations.max(1);
        let budget = config
            .memory_budget_bytes
            .unwrap_or_else(crate::admission::default_memory_budget_bytes);
        check_memory_budget(&config, budget)?;
        let admission = crate::admission::Admission::new(
            global,
            config
                .tenant_max_concurrent_invocations
                .unwrap_or(global / 4)
                .max(1),
            config.tenant_limits.concurrency_overrides().clone(),
            budget,
            config
                .tenant_cpu_slots
                .unwrap_or_else(crate::admission::default_tenant_cpu_slots),
        );
        if let Some(gpu) = &config.gpu {
            gpu.allow_raw_ptx(config.tenant_limits.raw_ptx_tenants().iter().cloned());
        }
        let state = AppState {
            inner: Arc::new(Shared {
                store,
                executor,
                functions: FunctionRegistry::default(),
                auth,
                rate: RateLimits::new(config.rate_limit, config.tokens.len()),
                audit,
                metrics,
                registry,
                admission,
                ceiling: config.ceiling.clone(),
                max_body_bytes: config.max_body_bytes,
                body_timeout: config.connections.body_timeout,
                trusted_proxies: config.trusted_proxies.clone(),
                audit_required: config.audit_required,
                quota_lock: tokio::sync::Mutex::new(()),
                loading: crate::state::Loading::default(),
                unauthenticated: crate::rate::UnauthenticatedLimit::new(
                    config.unauthenticated_rate_limit,
                ),
                default_limits: config.default_limits.clone(),
                tenant_limits: config.tenant_limits.clone(),
                max_memory_bytes,
                gpu_backend,
                gpu: config.gpu.clone(),
                data_dir: config.data_dir.clone(),
                otel: config.otlp_tracing,
                snapshots,
            }),
        };
        let records = state.store().list(None).await?;
        let total = records.len();
        state.inner.loading.total.store(total, Ordering::Relaxed);
        let deadline = Instant::now() + config.startup_load_budget;
        let pending = load_registry(&state, records, Some(deadline)).await;
        if pending.is_empty() {
            crate::snapshots::preload(&state);
        } else {
            state.inner.loading.active.store(true, Ordering::Release);
            tracing::info!(
                loaded = total - pending.len(),
                pending = pending.len(),
                "start-up load budget spent; the rest of the stored functions compile after the \
                 listener opens (/readyz answers 503 until they are done)"
            );
        }
        if dev_mode {
            warn_dev_mode();
        }
        Ok(Self {
            state,
            pending,
            shutdown_grace: config.shutdown_grace,
            dev_warning_interval: config.dev_mode_warning_interval,
            connections: config.connections,
        })
    }

    /// Shared state (for route groups added by other crates and for tests).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The complete router.
    pub fn router(&self) -> Router {
        crate::routes::router(self.state.clone())
    }

    /// Serves until `shutdown` resolves, then stops accepting, gives
    /// in-flight requests up to the grace period, and flushes the audit log.
    pub async fn serve<F>(mut self, listener: TcpListener, shutdown: F) -> Result<(), StartupError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if !self.pending.is_empty() {
            let state = self.state.clone();
            let pending = std::mem::take(&mut self.pending);
            tokio::spawn(async move {
                let left = load_registry(&state, pending, None).await;
                debug_assert!(left.is_empty());
                state.inner.loading.active.store(false, Ordering::Release);
                crate::snapshots::preload(&state);
            });
        }
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            let _ = stop_tx.send(true);
        };
        let server = crate::conn::serve(
            listener,
            self.router(),
            self.connections,
            self.state.inner.trusted_proxies.clone(),
            self.state.metrics().clone(),
            graceful,
        );

        // Housekeeping: forget idle rate-limit buckets; repeat the dev-mode warning.
        let dev_mode = self.state.dev_mode();
        let interval = self.dev_warning_interval;
        let state = self.state.clone();
        let ticker = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tick.tick().await;
                if dev_mode {
                    warn_dev_mode();
                }
                state.inner.rate.shrink();
                state.inner.unauthenticated.shrink();
            }
        });

        let grace = self.shutdown_grace;
        let deadline = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = server => r.map_err(StartupError::Serve),
            () = deadline => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over; abandoning in-flight requests");
                Ok(())
            }
        };
        // Wait for the ticker to be gone: it holds the state, and with it
        // the store, which a restart in the same process must reopen.
        ticker.abort();
        let _ = ticker.await;
        self.state.inner.audit.flush();
        tracing::info!("server stopped");
        result
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn warn_dev_mode() {
    tracing::warn!(
        "DEV MODE: TENSOR_WASM_API_TOKENS is empty — every request is admitted without \
         authentication (audit records carry actor.scope.kind=\"dev\"). Never run this in production."
    );
}

fn prepare_data_dir(dir: &Path) -> Result<(), StartupError> {
    DataDir::new(dir)
        .create()
        .map_err(|source| StartupError::DataDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Compiles stored functions into the registry until `deadline` (if any)
/// passes; returns the records not reached. A function that no longer
/// compiles is logged and left out (it stays in the store).
async fn load_registry(
    state: &AppState,
    records: Vec<tensor_wasm_store::FunctionRecord>,
    deadline: Option<Instant>,
) -> Vec<tensor_wasm_store::FunctionRecord> {
    let started = Instant::now();
    let total = records.len();
    let mut loaded = 0usize;
    let mut records = records.into_iter();
    for record in records.by_ref() {
        load_one(state, record).await;
        loaded += 1;
        state.inner.loading.done.fetch_add(1, Ordering::Relaxed);
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let pending: Vec<_> = records.collect();
    state
        .metrics()
        .functions_deployed
        .set(state.functions().len() as i64);
    tracing::info!(
        loaded,
        pending = pending.len(),
        total,
        in_registry = state.functions().len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "function registry loaded"
    );
    pending
}

async fn load_one(state: &AppState, record: tensor_wasm_store::FunctionRecord) {
    let wasm = match state.store().wasm(&record.id).await {
        Ok(Some(w)) => w,
        Ok(None) => {
            tracing::error!(function_id = %record.id, "stored record has no Wasm bytes; skipped");
            return;
        }
        Err(err) => {
            tracing::error!(function_id = %record.id, %err, "stored function cannot be read; skipped");
            return;
        }
    };
    // Compiling is CPU work: off the async threads.
    let executor = state.executor().clone();
    let compiled = match tokio::task::spawn_blocking(move || executor.compile(&wasm)).await {
        Ok(Ok(c)) => c,
        Err(err) => {
            tracing::error!(function_id = %record.id, %err, "compile task failed; skipped");
            return;
        }
        Ok(Err(err)) => {
            tracing::error!(function_id = %record.id, %err, "stored function no longer compiles; skipped");
            return;
        }
    };
    if let Some((field, stored, most)) =
        crate::config::above_ceiling(&record.limits, &state.ceiling_for(&record.tenant))
    {
        tracing::warn!(
            function_id = %record.id,
            tenant = %record.tenant,
            field,
            stored,
            ceiling = most,
            "function setting is above its ceiling (tenant or server-wide); the ceiling applies"
        );
    }
    state.functions().insert(state.deployed(record, compiled));
}

/// Every memory limit a function can get must fit the memory budget, or its
/// invocations would be refused for ever with a `503` that says "retry".
fn check_memory_budget(config: &ApiConfig, budget: u64) -> Result<(), StartupError> {
    let mut limits = vec![
        (
            "the default memory limit".to_owned(),
            Some(config.default_limits.max_memory_bytes),
        ),
        (
            "the server-wide ceiling TENSOR_WASM_API_MAX_MEMORY_BYTES".to_owned(),
            config.ceiling.max_memory_bytes,
        ),
    ];
    limits.extend(
        config
            .tenant_limits
            .memory_overrides()
            .map(|(t, m)| (format!("tenant `{t}`'s max_memory_bytes"), Some(m))),
    );
    for (what, bytes) in limits {
        if let Some(bytes) = bytes
            && bytes > budget
        {
            return Err(StartupError::TenantLimits(format!(
                "{what} ({bytes} bytes) exceeds the invocation memory budget of {budget} bytes \
                 (TENSOR_WASM_API_MEMORY_BUDGET_BYTES)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_limit_above_the_budget_stops_start_up() {
        let mut config = ApiConfig::new("/nonexistent");
        assert!(check_memory_budget(&config, 1 << 30).is_ok());
        let err = check_memory_budget(&config, 200 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("TENSOR_WASM_API_MAX_MEMORY_BYTES"), "{err}");
        config.ceiling.max_memory_bytes = Some(64 << 20);
        config.default_limits.max_memory_bytes = 64 << 20;
        config.tenant_limits =
            crate::TenantLimits::parse_json(r#"{"big": {"max_memory_bytes": 268435456}}"#).unwrap();
        let err = check_memory_budget(&config, 200 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("tenant `big`"), "{err}");
    }
}
