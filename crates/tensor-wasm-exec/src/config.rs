//! Engine-wide configuration and per-invocation limits.

use std::path::PathBuf;
use std::time::Duration;

/// The secret that authenticates compile-cache entries (`<data>/cache.key`,
/// shared with the GPU kernel cache); never printed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheKey(pub [u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(<redacted>)")
    }
}

impl CacheKey {
    /// A key of this process only (entries of other processes then fail).
    pub fn ephemeral() -> Self {
        let mut k = [0u8; 32];
        // Without OS randomness the key is still unknown outside this process.
        let _ = getrandom::fill(&mut k);
        CacheKey(k)
    }
}

/// Default cap on the compile cache's size on disk: 2 GiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 2 << 30;

/// Process-wide engine settings, fixed when the [`crate::Executor`] is built.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Where compiled modules are cached (`<data>/jit-cache`); `None` disables the disk cache.
    pub cache_dir: Option<PathBuf>,
    /// Slots in the pooling allocator: the most instances alive at once.
    pub pool_total_instances: u32,
    /// Hard ceiling on one instance's linear memory; per-invocation caps must fit under it.
    pub pool_max_memory_bytes: u64,
    /// Meter fuel in every store (needed for per-invocation fuel limits and `fuel_used`).
    pub fuel_metering: bool,
    /// Interval of the epoch ticker that enforces deadlines and yields long guests.
    pub epoch_tick: Duration,
    /// Host interfaces guests may import (the GPU's `tw_gpu_v1`, …), wired
    /// by the binary; imports of none of them stay undefined, so modules
    /// that use them fail to deploy.
    pub host_interfaces: Vec<crate::HostPlugin>,
    /// Secret that authenticates compile-cache entries (`<data>/cache.key`);
    /// `None`: a key of this process only.
    pub cache_key: Option<CacheKey>,
    /// Most bytes the compile cache keeps; the oldest entries go first.
    pub cache_max_bytes: u64,
    /// Shape limits checked before compiling, and the compile concurrency.
    pub compile_limits: crate::CompileLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            pool_total_instances: 1000,
            pool_max_memory_bytes: 1 << 30,
            fuel_metering: true,
            epoch_tick: Duration::from_millis(1),
            host_interfaces: Vec::new(),
            cache_key: None,
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
            compile_limits: crate::CompileLimits::default(),
        }
    }
}

/// Limits applied to one invocation (one `Store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline, enforced by epoch interruption.
    pub timeout: Duration,
    /// Linear-memory cap across all memories of the instance.
    pub max_memory_bytes: u64,
    /// Cap on the elements of any one table.
    pub max_table_elements: u32,
    /// Cap on instances created in the store.
    pub max_instances: u32,
    /// Fuel budget; `None` means unlimited (still metered when the engine meters fuel).
    pub fuel: Option<u64>,
    /// Cap on captured stdout (bytes calls).
    pub max_output_bytes: usize,
    /// Cap on captured stderr (bytes calls).
    pub max_stderr_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            max_memory_bytes: 128 << 20,
            max_table_elements: 100_000,
            max_instances: 10,
            fuel: None,
            max_output_bytes: 4 << 20,
            max_stderr_bytes: 64 << 10,
        }
    }
}

/// What one invocation runs as: the tenant (for GPU quotas and logs) and its limits.
#[derive(Debug, Clone)]
pub struct InvokeContext {
    /// Tenant that owns the function.
    pub tenant: std::sync::Arc<str>,
    /// Limits for this invocation.
    pub limits: Limits,
    /// The tenant's CPU slots, shared by all its invocations: a guest that
    /// runs past one epoch tick gives its slot back at every tick and queues
    /// (fairly) for one again, so a tenant's long-running guests use at most
    /// this many cores between them. Calls shorter than a tick never touch
    /// it. `None`: no gate.
    pub cpu_slots: Option<std::sync::Arc<tokio::sync::Semaphore>>,
}

impl InvokeContext {
    /// A context for `tenant` with default limits and no CPU gate.
    pub fn new(tenant: impl Into<std::sync::Arc<str>>) -> Self {
        Self {
            tenant: tenant.into(),
            limits: Limits::default(),
            cpu_slots: None,
        }
    }
}
