//! The wire contract of the `tw_gpu_v1` import module: its name, error codes,
//! argument tags and record layouts. `GPU-INTERFACE.md` documents the same
//! numbers; the guest SDK compiles the same `abi_codes.rs`.

#[path = "abi_codes.rs"]
mod codes;
pub use codes::*;

/// Version number returned by `abi_version`.
pub const ABI_VERSION: i32 = 1;

/// Size of one kernel-argument record: `u32 tag, u32 reserved (0), u64 payload`, little-endian.
pub const ARG_RECORD_SIZE: u32 = 16;
/// Size of the launch-configuration record: grid x,y,z, block x,y,z, dynamic shared bytes (seven `u32`).
pub const LAUNCH_RECORD_SIZE: u32 = 28;

/// Most kernel arguments one launch accepts.
pub const MAX_KERNEL_ARGS: u32 = 64;
/// Largest PTX text `kernel_load` accepts.
pub const MAX_PTX_BYTES: u32 = 4 << 20;
/// Most live handles (buffers + kernels) one instance may hold.
pub const MAX_HANDLES: usize = 4096;
/// Largest dynamic shared memory one launch may request.
pub const MAX_SHARED_MEM_BYTES: u32 = 227 * 1024;
/// Most threads per block.
pub const MAX_THREADS_PER_BLOCK: u64 = 1024;
