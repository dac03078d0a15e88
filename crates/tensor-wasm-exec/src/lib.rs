//! TensorWasm's execution core.
//!
//! One Wasmtime [`wasmtime::Engine`] per process (pooling instance allocator,
//! copy-on-write memory images, epoch interruption, optional fuel); modules
//! compiled once and cached on disk by BLAKE3 of their bytes; every
//! invocation in its own `Store` with a wall-clock deadline, memory/table/
//! instance caps, an optional fuel budget and bounded output.
//!
//! Two calling conventions:
//! - **typed**: an export name and numeric JSON arguments, checked against
//!   the export's signature ([`Executor::call_typed`]);
//! - **bytes**: a WASI preview-1 command, stdin in and stdout out
//!   ([`Executor::call_bytes`]).
//!
//! Host interfaces beyond WASI (the GPU's `tw_gpu_v1` today) plug in through
//! one extension point, [`HostInterface`], listed in
//! [`EngineConfig::host_interfaces`] by the binary: the engine links each one
//! and keeps its per-store state, and depends on none of them.
//!
//! Invariant: this crate knows nothing about HTTP, tenants' credentials or
//! storage; every failure is an [`ExecError`] and no guest can make it panic.

mod cache;
mod compile_limits;
mod config;
mod engine;
mod error;
mod host;
mod limiter;
mod output;
mod typed;

pub use cache::CacheStats;
pub use compile_limits::CompileLimits;
pub use config::{CacheKey, DEFAULT_CACHE_MAX_BYTES, EngineConfig, InvokeContext, Limits};
pub use engine::{
    BytesOutcome, CommandInput, CompiledFunction, Executor, HostState, LiveInstance, TypedOutcome,
};
pub use error::ExecError;
pub use host::{HostInterface, HostPlugin, HostSlot};
pub use typed::{ExportSignature, TypedValue, parse_args};
