//! The process-wide GPU runtime: the chosen backend, per-tenant quota
//! accounting, the PTX kernel cache and the metrics.

use crate::backend::{Backend, CpuBackend, CudaBackend, KernelModule};
use crate::error::GpuError;
use crate::metrics::GpuMetrics;
use crate::ptx::ModuleSignature;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Which backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// CUDA when a device opens, otherwise the CPU backend.
    #[default]
    Auto,
    /// CUDA or fail.
    Cuda,
    /// The CPU reference backend.
    Cpu,
}

impl FromStr for BackendChoice {
    type Err = GpuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(BackendChoice::Auto),
            "cuda" => Ok(BackendChoice::Cuda),
            "cpu" => Ok(BackendChoice::Cpu),
            other => Err(GpuError::InvalidArgument(format!(
                "unknown GPU backend `{other}` (expected auto, cuda or cpu)"
            ))),
        }
    }
}

impl std::fmt::Display for BackendChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackendChoice::Auto => "auto",
            BackendChoice::Cuda => "cuda",
            BackendChoice::Cpu => "cpu",
        })
    }
}

/// Per-tenant limits, enforced across all of a tenant's instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuQuotas {
    /// Bytes of device buffers a tenant may hold at once (default 1 GiB).
    pub max_device_memory_bytes_per_tenant: u64,
    /// Launches/ops a tenant may have in flight at once (default 64).
    pub max_concurrent_launches_per_tenant: u32,
}

impl Default for GpuQuotas {
    fn default() -> Self {
        GpuQuotas {
            max_device_memory_bytes_per_tenant: 1 << 30,
            max_concurrent_launches_per_tenant: 64,
        }
    }
}

/// Configuration of a [`GpuRuntime`].
#[derive(Debug, Clone, Default)]
pub struct GpuConfig {
    /// Backend selection.
    pub backend: BackendChoice,
    /// Where linked kernels are cached (the data dir's kernel cache,
    /// `tensor_wasm_fs::DataDir::kernel_cache`). `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// Per-tenant quotas.
    pub quotas: GpuQuotas,
    /// Authenticates the kernel cache's entries (`<data>/cache.key`);
    /// `None`: a key of this process only.
    pub cache_key: Option<crate::CacheKey>,
}

#[derive(Debug, Default, Clone, Copy)]
struct TenantUsage {
    memory_bytes: u64,
    launches_in_flight: u32,
}

/// A PTX module compiled once and shared by every session that loads the same text.
#[derive(Debug, Clone)]
pub(crate) struct CachedModule {
    pub module: KernelModule,
    pub signature: Arc<ModuleSignature>,
}

/// Most distinct PTX modules kept in memory; the oldest is evicted beyond it.
const KERNEL_CACHE_CAPACITY: usize = 256;

#[derive(Default)]
struct KernelCache {
    entries: HashMap<blake3::Hash, CachedModule>,
    order: VecDeque<blake3::Hash>,
}

/// The process-wide GPU runtime. Create one with [`GpuRuntime::new`] and
/// give every Wasm instance its own [`crate::GpuSession`].
pub struct GpuRuntime {
    backend: Arc<dyn Backend>,
    quotas: GpuQuotas,
    tenants: Mutex<HashMap<String, TenantUsage>>,
    kernels: Mutex<KernelCache>,
    /// Tenants allowed to load raw PTX; everyone else has the built-in ops only.
    raw_ptx_tenants: std::sync::RwLock<std::collections::HashSet<String>>,
    pub(crate) metrics: GpuMetrics,
}

impl std::fmt::Debug for GpuRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuRuntime")
            .field("backend", &self.backend.name())
            .field("device", &self.backend.device_name())
            .field("quotas", &self.quotas)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GpuRuntime {
    /// Opens the configured backend. `Auto` falls back to the CPU backend
    /// when no CUDA device opens, and logs the choice once.
    pub fn new(cfg: GpuConfig) -> Result<Arc<Self>, GpuError> {
        let cuda_cache = cfg.cache_dir.clone();
        let backend: Arc<dyn Backend> = match cfg.backend {
            BackendChoice::Cpu => Arc::new(CpuBackend::new()),
            BackendChoice::Cuda => {
                Arc::new(CudaBackend::new(0, cuda_cache)?.with_cache_key(cfg.cache_key))
            }
            BackendChoice::Auto => match CudaBackend::new(0, cuda_cache) {
                Ok(cuda) => Arc::new(cuda.with_cache_key(cfg.cache_key)),
                Err(e) => {
                    tracing::info!(reason = %e, "no CUDA device available; GPU dispatch uses the CPU backend");
                    Arc::new(CpuBackend::new())
                }
            },
        };
        Ok(Self::with_backend(backend, cfg.quotas))
    }

    /// A runtime over an already constructed backend (tests, benchmarks).
    pub fn with_backend(backend: Arc<dyn Backend>, quotas: GpuQuotas) -> Arc<Self> {
        let metrics = GpuMetrics::new(backend.name(), backend.device_name());
        tracing::info!(
            backend = backend.name(),
            device = %backend.device_name(),
            "GPU dispatch backend selected"
        );
        Arc::new(GpuRuntime {
            backend,
            quotas,
            tenants: Mutex::new(HashMap::new()),
            kernels: Mutex::new(KernelCache::default()),
            raw_ptx_tenants: Default::default(),
            metrics,
        })
    }

    /// Lets `tenants` load and launch raw PTX (`kernel_load`). Raw PTX is
    /// off for every other tenant: a hand-written kernel runs in the device
    /// context that all tenants share (see SECURITY.md), so the operator
    /// opts a tenant in (`"raw_ptx": true` in the tenant limits file).
    pub fn allow_raw_ptx(&self, tenants: impl IntoIterator<Item = String>) {
        let mut set = self
            .raw_ptx_tenants
            .write()
            .unwrap_or_else(|p| p.into_inner());
        set.extend(tenants);
    }

    /// Whether `tenant` may load raw PTX.
    pub fn raw_ptx_allowed(&self, tenant: &str) -> bool {
        self.raw_ptx_tenants
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(tenant)
    }

    /// `"cuda"` or `"cpu"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The device's name, e.g. `NVIDIA H100 80GB HBM3`.
    pub fn device_name(&self) -> String {
        self.backend.device_name()
    }

    /// The backend, for callers that dispatch directly from Rust.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The quotas in force.
    pub fn quotas(&self) -> GpuQuotas {
        self.quotas
    }

    /// Registers the GPU metric families.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.metrics.register(registry);
    }

    /// Bytes of device memory `tenant` holds now.
    pub fn tenant_memory_in_use(&self, tenant: &str) -> u64 {
        lock(&self.tenants)
            .get(tenant)
            .map_or(0, |u| u.memory_bytes)
    }

    /// Launches `tenant` has in flight now.
    pub fn tenant_launches_in_flight(&self, tenant: &str) -> u32 {
        lock(&self.tenants)
            .get(tenant)
            .map_or(0, |u| u.launches_in_flight)
    }

    pub(crate) fn reserve_memory(&self, tenant: &str, bytes: u64) -> Result<(), GpuError> {
        let mut tenants = lock(&self.tenants);
        let usage = tenants.entry(tenant.to_string()).or_default();
        let limit = self.quotas.max_device_memory_bytes_per_tenant;
        match usage.memory_bytes.checked_add(bytes) {
            Some(total) if total <= limit => {
                usage.memory_bytes = total;
                self.metrics.set_memory(tenant, total);
                Ok(())
            }
            _ => Err(GpuError::MemoryQuota {
                tenant: tenant.to_string(),
                requested: bytes,
                in_use: usage.memory_bytes,
                limit,
            }),
        }
    }

    pub(crate) fn release_memory(&self, tenant: &str, bytes: u64) {
        let mut tenants = lock(&self.tenants);
        if let Some(usage) = tenants.get_mut(tenant) {
            usage.memory_bytes = usage.memory_bytes.saturating_sub(bytes);
            self.metrics.set_memory(tenant, usage.memory_bytes);
            if usage.memory_bytes == 0 && usage.launches_in_flight == 0 {
                tenants.remove(tenant);
            }
        }
    }

    pub(crate) fn acquire_launch(&self, tenant: &str) -> Result<(), GpuError> {
        let mut tenants = lock(&self.tenants);
        let usage = tenants.entry(tenant.to_string()).or_default();
        let limit = self.quotas.max_concurrent_launches_per_tenant;
        if usage.launches_in_flight >= limit {
            return Err(GpuError::LaunchQuota {
                tenant: tenant.to_string(),
                limit,
            });
        }
        usage.launches_in_flight += 1;
        Ok(())
    }

    pub(crate) fn release_launches(&self, tenant: &str, count: u32) {
        if count == 0 {
            return;
        }
        let mut tenants = lock(&self.tenants);
        if let Some(usage) = tenants.get_mut(tenant) {
            usage.launches_in_flight = usage.launches_in_flight.saturating_sub(count);
            if usage.memory_bytes == 0 && usage.launches_in_flight == 0 {
                tenants.remove(tenant);
            }
        }
    }

    /// Looks `ptx` up for `tenant`; on a miss parses its signatures and
    /// loads it. Modules are cached per tenant: a loaded module carries its
    /// own `.global` state, which no other tenant may read or write. (The
    /// backend's disk cache of compiled code is keyed by the text alone:
    /// compiled code holds no state.)
    pub(crate) fn load_module(&self, tenant: &str, ptx: &str) -> Result<CachedModule, GpuError> {
        let text_key = blake3::hash(ptx.as_bytes());
        let key = {
            let mut h = blake3::Hasher::new();
            h.update(tenant.as_bytes());
            h.update(&[0]);
            h.update(text_key.as_bytes());
            h.finalize()
        };
        if let Some(hit) = lock(&self.kernels).entries.get(&key).cloned() {
            self.metrics.kernel_cache(true);
            return Ok(hit);
        }
        self.metrics.kernel_cache(false);
        // Compile outside the lock: JIT can take a while and other tenants'
        // lookups must not wait for it. Two racing misses both compile; the
        // second insert simply replaces the first.
        let signature = Arc::new(ModuleSignature::parse(ptx)?);
        let module = self.backend.load_module(ptx, &text_key)?;
        let entry = CachedModule { module, signature };
        let mut cache = lock(&self.kernels);
        if cache.entries.insert(key, entry.clone()).is_none() {
            cache.order.push_back(key);
        }
        while cache.entries.len() > KERNEL_CACHE_CAPACITY {
            match cache.order.pop_front() {
                Some(old) => {
                    cache.entries.remove(&old);
                }
                None => break,
            }
        }
        Ok(entry)
    }
}
