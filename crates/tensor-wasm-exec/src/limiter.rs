//! Per-store resource limits that remember *why* they said no, so a failed
//! invocation can report "memory limit exceeded" rather than a bare trap.

use wasmtime::ResourceLimiter;

use crate::Limits;

pub(crate) struct GuestLimiter {
    max_memory_bytes: usize,
    max_table_elements: usize,
    max_instances: usize,
    memory_denied: bool,
    instance_denied: bool,
}

impl GuestLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_memory_bytes: usize::try_from(limits.max_memory_bytes).unwrap_or(usize::MAX),
            max_table_elements: limits.max_table_elements as usize,
            max_instances: limits.max_instances as usize,
            memory_denied: false,
            instance_denied: false,
        }
    }

    /// Whether a memory growth (or an initial memory) was refused.
    pub fn memory_denied(&self) -> bool {
        self.memory_denied
    }

    /// Whether the store hit its instance cap.
    pub fn instance_denied(&self) -> bool {
        self.instance_denied
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory_bytes && maximum.is_none_or(|m| desired <= m);
        if !allowed {
            // `memory.grow` returns -1 to the guest, as the spec requires; we
            // remember the refusal so a subsequent trap is explained.
            self.memory_denied = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        self.max_instances
    }

    fn tables(&self) -> usize {
        self.max_instances.saturating_mul(4)
    }

    fn memories(&self) -> usize {
        self.max_instances.saturating_mul(4)
    }
}
