//! GPU dispatch for TensorWasm guests.
//!
//! Untrusted Wasm guests import one versioned module, `tw_gpu_v1`
//! ([`abi::MODULE`], documented in `GPU-INTERFACE.md`), to create device
//! buffers, copy data in and out of their linear memory, load PTX kernels and
//! launch them, and call built-in tensor ops (vector add, saxpy, matmul,
//! softmax, sum/max reductions, relu). Behind it sit two backends of one
//! [`Backend`] trait: CUDA (through `cudarc`, driver loaded at run time, cuBLAS
//! for matmul) and a multi-threaded CPU reference backend.
//!
//! Pieces: one process-wide [`GpuRuntime`] (backend, per-tenant quotas,
//! kernel cache keyed by BLAKE3, metrics) and one [`GpuSession`] per Wasm
//! instance (its handle table), wired into a `wasmtime::Linker` with
//! [`add_to_linker`] — or into the engine as one of its host interfaces with
//! [`GpuHost`], which the binary lists in
//! `tensor_wasm_exec::EngineConfig::host_interfaces`.
//!
//! Invariant: a guest can only name buffers and kernels through its own
//! session's handles, and every guest pointer is bounds-checked in one helper
//! before use; nothing a guest passes can reach the device unchecked.
//! Not here: HTTP, engine configuration, WASI — the exec crate owns those.

pub mod abi;
pub mod backend;
mod engine;
mod error;
mod host;
mod metrics;
pub mod ptx;
mod runtime;
mod sealed;
mod session;

pub use backend::{Backend, BufferId, CpuBackend, CudaBackend, Fence, KernelArg, LaunchDims};
pub use engine::GpuHost;
pub use error::GpuError;
pub use host::{SessionGetter, add_to_linker};
pub use runtime::{BackendChoice, GpuConfig, GpuQuotas, GpuRuntime};
pub use session::{ArgValue, GpuSession, Op};
pub use tensor_wasm_exec::CacheKey;
