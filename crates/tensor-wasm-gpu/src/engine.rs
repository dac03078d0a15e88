//! The GPU as one of the engine's host interfaces: [`GpuHost`] links
//! `tw_gpu_v1` into the exec crate's linker and gives every store that
//! calls it its own [`GpuSession`], opened on the guest's first GPU call and
//! closed (every buffer freed, quota released) when the store drops.
//!
//! Nothing else is needed for the invocation's deadline: an op cut off at the
//! deadline is cancelled when the engine drops the call's future, and the
//! session's buffers are freed when it drops the store.

use std::sync::Arc;

use tensor_wasm_exec::{HostInterface, HostSlot, HostState};
use wasmtime::Linker;

use crate::{GpuRuntime, GpuSession, add_to_linker};

/// The `tw_gpu_v1` host interface over one [`GpuRuntime`], for
/// `tensor_wasm_exec::EngineConfig::host_interfaces`.
#[derive(Clone)]
pub struct GpuHost {
    runtime: Arc<GpuRuntime>,
}

impl GpuHost {
    /// The interface dispatching to `runtime`.
    pub fn new(runtime: Arc<GpuRuntime>) -> Self {
        Self { runtime }
    }

    /// The runtime guests' calls go to.
    pub fn runtime(&self) -> &Arc<GpuRuntime> {
        &self.runtime
    }
}

impl std::fmt::Debug for GpuHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuHost")
            .field("backend", &self.runtime.backend_name())
            .finish()
    }
}

impl HostInterface for GpuHost {
    type StoreState = GpuSession;

    fn name(&self) -> &'static str {
        "GPU"
    }

    fn add_to_linker(
        &self,
        linker: &mut Linker<HostState>,
        slot: HostSlot<GpuSession>,
    ) -> wasmtime::Result<()> {
        add_to_linker(linker, move |state: &mut HostState| {
            state.host_state_mut(slot)
        })
    }

    fn new_store_state(&self, tenant: &str) -> GpuSession {
        GpuSession::new(self.runtime.clone(), tenant)
    }
}
