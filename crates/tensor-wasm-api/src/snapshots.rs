//! The snapshot service: the snapshot directory, the signing key, caches of
//! instrumented modules and prepared snapshots, and the start-up preload.
//! Gateway state ([`crate::state::Shared`] holds one); the HTTP routes over
//! it are in [`crate::routes::snapshots`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tensor_wasm_snapshot::dir::load_signing_key;
use tensor_wasm_snapshot::{
    SigningKey, SnapshotDir, SnapshotError, SnapshotModule, VerifyPolicy, WarmStart,
};

use tensor_wasm_exec::Executor;

use crate::error::ApiError;
use crate::state::{AppState, DeployedFunction};

/// Prepared snapshots kept in memory (each holds a compiled module and its
/// memory image); beyond this the oldest-inserted is dropped.
const MAX_PREPARED: usize = 64;

/// `(function id, snapshot id)`: what a prepared snapshot is filed under.
pub(crate) type PreparedKey = (String, String);

/// Labels of `tensor_wasm_snapshots_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SnapshotLabels {
    action: &'static str,
    outcome: &'static str,
}

/// Snapshot state shared by the routes: directory, signing key, metrics and
/// caches of instrumented modules and prepared snapshots.
pub struct SnapshotService {
    pub(crate) dir: SnapshotDir,
    pub(crate) signing_key: Result<Option<SigningKey>, String>,
    total: Family<SnapshotLabels, Counter>,
    pub(crate) modules: Mutex<HashMap<String, SnapshotModule>>,
    /// Prepared snapshots keyed by `(function id, snapshot id)`: a lookup
    /// only ever finds a snapshot of the function the caller already owns.
    pub(crate) prepared: Mutex<Vec<(PreparedKey, Arc<WarmStart>)>>,
    pub(crate) latest: Mutex<HashMap<String, String>>,
    /// Preparations under way: calls for a snapshot not prepared yet wait
    /// for one preparation instead of each compiling it.
    pub(crate) preparing: Mutex<HashMap<PreparedKey, Arc<Preparing>>>,
    /// Snapshots of capped tenants being created now (counted against
    /// `max_snapshots` until their file is written), by tenant.
    pub(crate) creating: Arc<Mutex<HashMap<String, u64>>>,
}

/// A preparation under way; every caller waiting for it gets its result.
pub(crate) type Preparing = tokio::sync::OnceCell<Arc<WarmStart>>;

/// One snapshot being created, counted against its tenant's quota until
/// dropped (its file written, or the creation failed).
pub(crate) struct Creating {
    creating: Arc<Mutex<HashMap<String, u64>>>,
    tenant: String,
}

impl Drop for Creating {
    fn drop(&mut self) {
        let mut creating = lock(&self.creating);
        if let Some(n) = creating.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                creating.remove(&self.tenant);
            }
        }
    }
}

impl std::fmt::Debug for SnapshotService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotService")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl SnapshotService {
    /// Registers `tensor_wasm_snapshots_total` and reads the signing key
    /// (`<data>/snapshot-signing.key`, when present: snapshots are then signed
    /// and must carry its signature to be used).
    pub fn register(registry: &mut Registry, data_dir: &Path) -> Self {
        let total = Family::<SnapshotLabels, Counter>::default();
        registry.register(
            "tensor_wasm_snapshots",
            "Snapshot operations by action (create, list, delete, restore, preload, quarantine) and outcome",
            total.clone(),
        );
        let key_path = tensor_wasm_fs::DataDir::new(data_dir).signing_key();
        let signing_key = if key_path.exists() {
            load_signing_key(&key_path).map(Some).map_err(|e| {
                tracing::error!(error = %e, "snapshot signing key unusable; snapshot operations will fail");
                e.to_string()
            })
        } else {
            Ok(None)
        };
        Self {
            dir: SnapshotDir::in_data_dir(data_dir),
            signing_key,
            total,
            modules: Mutex::default(),
            prepared: Mutex::default(),
            latest: Mutex::default(),
            preparing: Mutex::default(),
            creating: Arc::default(),
        }
    }

    /// Snapshots of `tenant` being created now.
    pub(crate) fn creating(&self, tenant: &str) -> u64 {
        lock(&self.creating).get(tenant).copied().unwrap_or(0)
    }

    /// Counts one more snapshot of `tenant` as being created.
    pub(crate) fn start_creating(&self, tenant: &str) -> Creating {
        *lock(&self.creating).entry(tenant.to_owned()).or_insert(0) += 1;
        Creating {
            creating: self.creating.clone(),
            tenant: tenant.to_owned(),
        }
    }

    pub(crate) fn count(&self, action: &'static str, outcome: &'static str) {
        self.total
            .get_or_create(&SnapshotLabels { action, outcome })
            .inc();
    }

    pub(crate) fn key(&self) -> Result<Option<&SigningKey>, ApiError> {
        self.signing_key
            .as_ref()
            .map(Option::as_ref)
            .map_err(|e| ApiError::Internal(format!("snapshot signing key: {e}")))
    }

    pub(crate) fn policy(&self) -> Result<VerifyPolicy, ApiError> {
        Ok(self.key()?.map(VerifyPolicy::require).unwrap_or_default())
    }

    /// The prepared snapshot `snapshot_id` of `function_id`; never one of
    /// another function, whatever id the caller names.
    pub(crate) fn prepared(&self, function_id: &str, snapshot_id: &str) -> Option<Arc<WarmStart>> {
        lock(&self.prepared)
            .iter()
            .find(|((f, s), _)| f == function_id && s == snapshot_id)
            .map(|(_, w)| w.clone())
    }

    /// The preparation of `snapshot_id` of `function_id` to wait for:
    /// the one under way, or a new one.
    pub(crate) fn preparation(&self, function_id: &str, snapshot_id: &str) -> Arc<Preparing> {
        lock(&self.preparing)
            .entry((function_id.to_owned(), snapshot_id.to_owned()))
            .or_default()
            .clone()
    }

    /// Forgets a finished preparation (its result is in `prepared` when it
    /// succeeded; a failed one is tried again by the next call).
    pub(crate) fn end_preparation(&self, function_id: &str, snapshot_id: &str, p: &Arc<Preparing>) {
        let mut preparing = lock(&self.preparing);
        let key = (function_id.to_owned(), snapshot_id.to_owned());
        if preparing.get(&key).is_some_and(|q| Arc::ptr_eq(q, p)) {
            preparing.remove(&key);
        }
    }

    pub(crate) fn remember(&self, function_id: &str, snapshot_id: String, warm: Arc<WarmStart>) {
        let mut prepared = lock(&self.prepared);
        prepared.retain(|((f, s), _)| !(f == function_id && *s == snapshot_id));
        if prepared.len() >= MAX_PREPARED {
            prepared.remove(0);
        }
        prepared.push(((function_id.to_owned(), snapshot_id), warm));
    }

    /// Deletes every snapshot file of a deleted function and drops what is
    /// cached for it; returns how many files went. Blocking (file system).
    pub(crate) fn remove_function(
        &self,
        executor: &Executor,
        function_id: &str,
    ) -> Result<usize, SnapshotError> {
        let listed = self.dir.list_for_function(function_id)?;
        let mut removed = 0;
        for (snapshot_id, _) in &listed {
            match self.dir.delete(snapshot_id) {
                Ok(()) | Err(SnapshotError::NotFound(_)) => removed += 1,
                Err(e) => return Err(e),
            }
        }
        self.drop_prepared(executor, |f, _| f == function_id);
        lock(&self.latest).remove(function_id);
        let prefix = format!("{function_id}:");
        lock(&self.modules).retain(|key, _| !key.starts_with(&prefix));
        Ok(removed)
    }

    /// Drops what is cached for a deleted snapshot, its baked module's
    /// compile-cache entry included.
    pub(crate) fn forget(&self, executor: &Executor, function_id: &str, snapshot_id: &str) {
        self.drop_prepared(executor, |f, s| f == function_id && s == snapshot_id);
        let mut latest = lock(&self.latest);
        if latest.get(function_id).is_some_and(|l| l == snapshot_id) {
            latest.remove(function_id);
        }
    }

    /// Drops the prepared snapshots `which` selects and removes their baked
    /// modules from the disk compile cache: nothing will load them again.
    /// (A baked module prepared by an earlier process and not prepared in
    /// this one stays until the cache's size cap evicts it.)
    fn drop_prepared(&self, executor: &Executor, which: impl Fn(&str, &str) -> bool) {
        let dropped: Vec<Arc<WarmStart>> = {
            let mut prepared = lock(&self.prepared);
            let (gone, kept) = std::mem::take(&mut *prepared)
                .into_iter()
                .partition(|((f, s), _)| which(f, s));
            *prepared = kept;
            gone.into_iter().map(|(_, w)| w).collect()
        };
        for baked in dropped.iter().filter_map(|w| w.baked_module()) {
            executor.forget_cached(baked);
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The function's instrumented module, instrumented and compiled once.
pub(crate) async fn module_for(
    state: &AppState,
    f: &Arc<DeployedFunction>,
) -> Result<SnapshotModule, ApiError> {
    let (state, f) = (state.clone(), f.clone());
    tokio::task::spawn_blocking(move || module_for_blocking(&state, &f))
        .await
        .map_err(|e| ApiError::Internal(format!("snapshot task failed: {e}")))?
}

pub(crate) fn module_for_blocking(
    state: &AppState,
    f: &DeployedFunction,
) -> Result<SnapshotModule, ApiError> {
    let service = &state.inner.snapshots;
    let key = format!("{}:{}", f.record.id.0, f.record.blake3);
    if let Some(m) = lock(&service.modules).get(&key) {
        return Ok(m.clone());
    }
    // A blocking thread inside the runtime (`spawn_blocking`, or the
    // preload thread, which enters it): wait for the async store here.
    let wasm = tokio::runtime::Handle::current()
        .block_on(state.store().wasm(&f.record.id))
        .map_err(ApiError::from)?
        .ok_or(ApiError::FunctionNotFound)?;
    let module = SnapshotModule::prepare(state.executor(), &wasm)?;
    lock(&service.modules).insert(key, module.clone());
    Ok(module)
}

/// Prepares the newest snapshot of every deployed function in a background
/// thread, so the first invocation from a snapshot after a restart is as
/// warm as any other. Failures are logged and counted; they only leave that
/// snapshot to be prepared (or refused) on first use.
pub(crate) fn preload(state: &AppState) {
    let state = state.clone();
    // Store reads block on the runtime this was called from.
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("snapshot preload skipped: no async runtime");
        return;
    };
    let spawned = std::thread::Builder::new()
        .name("tensor-wasm-snapshot-preload".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            let service = &state.inner.snapshots;
            let Ok(listed) = service.dir.list() else {
                return;
            };
            let mut newest: HashMap<String, String> = HashMap::new();
            for entry in listed {
                if let Ok(h) = &entry.header
                    && let Some(fid) = &h.meta.function_id
                {
                    // `list` is oldest first: the last one seen wins.
                    newest.insert(fid.clone(), entry.id);
                }
            }
            // Wasmtime builds a module's copy-on-write memory image on its first
            // instantiation: do that here, not in the first request.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok();
            let mut prepared = 0usize;
            for (function_id, snapshot_id) in newest.into_iter().take(MAX_PREPARED) {
                let Some(f) = state.functions().get(&function_id) else {
                    continue;
                };
                lock(&service.latest).insert(function_id.clone(), snapshot_id.clone());
                let result = service.policy().and_then(|policy| {
                    let module = module_for_blocking(&state, &f)?;
                    let snapshot = service.dir.load(&snapshot_id, &policy, None)?;
                    Ok(WarmStart::prepare(
                        state.executor(),
                        &module,
                        Arc::new(snapshot),
                    )?)
                });
                match result {
                    Ok(warm) => {
                        if let Some(rt) = &runtime {
                            let _ = rt.block_on(warm.instantiate(state.executor(), &f.context));
                        }
                        service.remember(&function_id, snapshot_id, Arc::new(warm));
                        service.count("preload", "ok");
                        prepared += 1;
                    }
                    Err(ApiError::Snapshot(e)) if e.is_damaged() => {
                        service.count("preload", e.code());
                        lock(&service.latest).remove(&function_id);
                        match service.dir.quarantine(&snapshot_id) {
                            Ok(to) => {
                                service.count("quarantine", e.code());
                                tracing::error!(%function_id, %snapshot_id, code = e.code(), error = %e,
                                    moved_to = %to.display(),
                                    "damaged snapshot file quarantined at start-up");
                            }
                            Err(move_err) => {
                                tracing::error!(%function_id, %snapshot_id, code = e.code(), error = %e,
                                    %move_err, "damaged snapshot file could not be quarantined");
                            }
                        }
                    }
                    Err(e) => {
                        service.count("preload", e.code());
                        tracing::warn!(%function_id, %snapshot_id, code = e.code(),
                            "snapshot not preloaded; it will be prepared or refused on first use");
                    }
                }
            }
            if prepared > 0 {
                tracing::info!(prepared, "snapshots preloaded");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the snapshot preload thread");
    }
}
