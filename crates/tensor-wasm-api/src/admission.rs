//! Admission: whether an invocation may start now, and what it holds while
//! it runs.
//!
//! Three bounds, checked in this order, each a fast refusal rather than a
//! queue:
//! 1. **the tenant's share** — at most `max_concurrent_invocations` of one
//!    tenant's invocations run at once (tenant limits file, else
//!    `TENSOR_WASM_API_TENANT_MAX_CONCURRENT_INVOCATIONS`, else a quarter of
//!    the global bound): past it `429 tenant_concurrency_limited`, so one
//!    tenant cannot take every slot;
//! 2. **the global bound** on concurrent invocations: `503 overloaded`;
//! 3. **the memory budget** — the sum of the memory limits of running
//!    invocations stays under `TENSOR_WASM_API_MEMORY_BUDGET_BYTES` (default:
//!    the machine's physical memory): `503 memory_budget_exhausted`, rather
//!    than the host running out of memory when every guest grows at once.
//!
//! Beside these, each tenant has **CPU slots**
//! (`TENSOR_WASM_API_TENANT_CPU_SLOTS`, default half the cores): a guest
//! that runs past its first epoch tick holds one while it runs and queues
//! for it again at every tick, so one tenant's spinning guests use at most
//! that many cores and other tenants' calls are not stuck behind them.
//!
//! An [`InvocationPermit`] holds all three until it is dropped, which the
//! handlers do only after the engine has returned (or the deadline dropped
//! the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, SemaphorePermit};

use crate::error::ApiError;
use crate::metrics::GatewayMetrics;

/// The unit the memory budget is counted in: one Wasm page.
const PAGE: u64 = 64 << 10;

/// A tenant's own bound on concurrent invocations; handed to each of its
/// deployed functions once, so admitting a call looks nothing up.
#[derive(Debug, Clone)]
pub struct TenantShare {
    tenant: Arc<str>,
    slots: Arc<Semaphore>,
    limit: usize,
    /// The tenant's CPU slots: how many of its guests may run Wasm at once
    /// past their first epoch tick (handed to the engine).
    pub(crate) cpu: Arc<Semaphore>,
}

/// The server-wide admission state.
#[derive(Debug)]
pub struct Admission {
    global: Semaphore,
    memory: Semaphore,
    memory_budget_bytes: u64,
    tenant_default: usize,
    tenant_overrides: HashMap<String, usize>,
    tenant_cpu_slots: usize,
    shares: Mutex<HashMap<String, TenantShare>>,
}

/// What a running invocation holds; dropping it releases everything. It
/// borrows the semaphores (no reference-count traffic on the hot path): the
/// handler holds the function and the state for as long as the call runs.
#[derive(Debug)]
pub struct InvocationPermit<'a> {
    _tenant: SemaphorePermit<'a>,
    _global: SemaphorePermit<'a>,
    _memory: SemaphorePermit<'a>,
}

impl Admission {
    /// `global` concurrent invocations, `tenant_default` per tenant unless
    /// `tenant_overrides` says otherwise, `memory_budget_bytes` of memory
    /// limits, and `tenant_cpu_slots` CPU slots per tenant.
    pub fn new(
        global: usize,
        tenant_default: usize,
        tenant_overrides: HashMap<String, usize>,
        memory_budget_bytes: u64,
        tenant_cpu_slots: usize,
    ) -> Self {
        let pages = usize::try_from(memory_budget_bytes / PAGE)
            .unwrap_or(usize::MAX)
            .clamp(1, Semaphore::MAX_PERMITS);
        Self {
            global: Semaphore::new(global.max(1)),
            memory: Semaphore::new(pages),
            memory_budget_bytes,
            tenant_default: tenant_default.max(1),
            tenant_overrides,
            tenant_cpu_slots: tenant_cpu_slots.max(1),
            shares: Mutex::default(),
        }
    }

    /// The share of `tenant` (created on first use, then shared by all its functions).
    pub fn share(&self, tenant: &str) -> TenantShare {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        shares
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                let limit = self
                    .tenant_overrides
                    .get(tenant)
                    .copied()
                    .unwrap_or(self.tenant_default)
                    .max(1);
                TenantShare {
                    tenant: tenant.into(),
                    slots: Arc::new(Semaphore::new(limit)),
                    limit,
                    cpu: Arc::new(Semaphore::new(self.tenant_cpu_slots)),
                }
            })
            .clone()
    }

    /// Admits one invocation of a function of `share`'s tenant whose memory
    /// limit is `memory_bytes`, or refuses it (counted per tenant and reason).
    pub fn admit<'a>(
        &'a self,
        share: &'a TenantShare,
        memory_bytes: u64,
        metrics: &GatewayMetrics,
    ) -> Result<InvocationPermit<'a>, ApiError> {
        let Ok(tenant) = share.slots.try_acquire() else {
            metrics.invocation("throttled");
            metrics.refusal(&share.tenant, "tenant_concurrency");
            return Err(ApiError::TenantConcurrencyLimited {
                tenant: share.tenant.to_string(),
                limit: share.limit,
            });
        };
        let Ok(global) = self.global.try_acquire() else {
            metrics.invocation("busy");
            metrics.refusal(&share.tenant, "global_concurrency");
            return Err(ApiError::Overloaded);
        };
        let pages = u32::try_from(memory_bytes.div_ceil(PAGE)).unwrap_or(u32::MAX);
        let Ok(memory) = self.memory.try_acquire_many(pages) else {
            metrics.invocation("busy");
            metrics.refusal(&share.tenant, "memory_budget");
            return Err(ApiError::MemoryBudgetExhausted {
                budget_bytes: self.memory_budget_bytes,
            });
        };
        Ok(InvocationPermit {
            _tenant: tenant,
            _global: global,
            _memory: memory,
        })
    }

    /// The memory budget in bytes.
    pub fn memory_budget_bytes(&self) -> u64 {
        self.memory_budget_bytes
    }
}

/// The default CPU slots per tenant: half the machine's cores, at least one
/// — no tenant's long-running guests can take every core.
pub fn default_tenant_cpu_slots() -> usize {
    std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
}

/// The default memory budget: the machine's physical memory (`MemTotal` in
/// `/proc/meminfo`), or 16 GiB where that cannot be read.
pub fn default_memory_budget_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(16 << 30, |kib| kib.saturating_mul(1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn metrics() -> GatewayMetrics {
        GatewayMetrics::register(&mut Registry::default(), "none", false)
    }

    #[test]
    fn a_tenant_past_its_share_is_refused_while_another_is_admitted() {
        let m = metrics();
        let a = Admission::new(8, 2, HashMap::from([("big".into(), 3)]), 1 << 30, 1);
        let t1 = a.share("t1");
        let held: Vec<_> = (0..2).map(|_| a.admit(&t1, PAGE, &m).unwrap()).collect();
        let err = a.admit(&t1, PAGE, &m).unwrap_err();
        assert_eq!(err.code(), "tenant_concurrency_limited");
        assert_eq!(err.status(), 429);
        // The share is one per tenant, however many functions ask for it.
        let (t1_again, t2) = (a.share("t1"), a.share("t2"));
        assert!(a.admit(&t1_again, PAGE, &m).is_err());
        assert!(a.admit(&t2, PAGE, &m).is_ok());
        let big = a.share("big");
        let _b: Vec<_> = (0..3).map(|_| a.admit(&big, PAGE, &m).unwrap()).collect();
        assert!(a.admit(&big, PAGE, &m).is_err());
        drop(held);
        assert!(a.admit(&t1, PAGE, &m).is_ok());
    }

    #[test]
    fn the_memory_budget_bounds_the_sum_of_running_limits() {
        let m = metrics();
        let a = Admission::new(8, 8, HashMap::new(), 256 << 20, 1);
        let t = a.share("t");
        let first = a.admit(&t, 128 << 20, &m).unwrap();
        let second = a.admit(&t, 128 << 20, &m).unwrap();
        let err = a.admit(&t, 1, &m).unwrap_err();
        assert_eq!(err.code(), "memory_budget_exhausted");
        assert_eq!(err.status(), 503);
        drop(first);
        assert!(a.admit(&t, 64 << 20, &m).is_ok());
        drop(second);
    }

    #[test]
    fn the_global_bound_still_applies_across_tenants() {
        let m = metrics();
        let a = Admission::new(2, 2, HashMap::new(), 1 << 30, 1);
        let (x, y, z) = (a.share("x"), a.share("y"), a.share("z"));
        let _x = a.admit(&x, PAGE, &m).unwrap();
        let _y = a.admit(&y, PAGE, &m).unwrap();
        assert_eq!(a.admit(&z, PAGE, &m).unwrap_err().code(), "overloaded");
    }

    #[test]
    fn default_budget_reads_the_machine_memory() {
        assert!(default_memory_budget_bytes() >= 64 << 20);
    }
}
