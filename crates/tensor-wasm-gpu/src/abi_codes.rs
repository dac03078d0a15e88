// The numbers of the `tw_gpu_v1` wire contract that host and guest must
// agree on: the import module name, error codes and kernel-argument tags.
// One file, compiled into both sides: the host crate includes it from
// `abi.rs`, the guest SDK (`guests/tensor-wasm-guest/src/sys.rs`, another
// workspace and target) through a `#[path]` module. Plain constants only,
// no `std`: the guest SDK builds it for wasm32. GPU-INTERFACE.md documents
// the same numbers.

/// The import module guests link against. The suffix is the ABI version: an
/// incompatible change gets a new module name, never a changed signature.
pub const MODULE: &str = "tw_gpu_v1";

/// Success.
pub const OK: i32 = 0;
/// A guest pointer/length pair lies (partly) outside linear memory.
pub const ERR_INVALID_POINTER: i32 = -1;
/// The handle is unknown to this instance: never issued, freed, or of the wrong kind.
pub const ERR_INVALID_HANDLE: i32 = -2;
/// An argument value is invalid (zero size, bad UTF-8, bad launch dimensions, ...).
pub const ERR_INVALID_ARGUMENT: i32 = -3;
/// Kernel arguments do not match the kernel's PTX signature (types or count).
pub const ERR_ARG_MISMATCH: i32 = -4;
/// An offset, length or element count exceeds the size of a device buffer.
pub const ERR_OUT_OF_RANGE: i32 = -5;
/// The tenant's device-memory quota would be exceeded.
pub const ERR_QUOTA_MEMORY: i32 = -6;
/// The tenant's concurrent-launch quota is exhausted (synchronise and retry).
pub const ERR_QUOTA_LAUNCHES: i32 = -7;
/// The operation needs a CUDA device (raw PTX launch on the CPU backend).
pub const ERR_NEEDS_CUDA: i32 = -8;
/// PTX could not be loaded: malformed, entry missing, unsupported parameter type.
pub const ERR_KERNEL_LOAD: i32 = -9;
/// The backend failed (device out of memory, driver error).
pub const ERR_DEVICE: i32 = -10;
/// The instance holds too many live handles.
pub const ERR_TOO_MANY_HANDLES: i32 = -11;
/// The calling module exports no linear memory named `memory`.
pub const ERR_NO_MEMORY: i32 = -12;
/// Raw PTX (`kernel_load`) is not enabled for this tenant; the built-in ops are.
pub const ERR_RAW_PTX_DISABLED: i32 = -13;

/// Kernel argument tag: a buffer handle (payload: handle in the low 32 bits).
pub const ARG_BUFFER: u32 = 1;
/// Kernel argument tag: `i32` scalar (low 32 bits).
pub const ARG_I32: u32 = 2;
/// Kernel argument tag: `u32` scalar (low 32 bits).
pub const ARG_U32: u32 = 3;
/// Kernel argument tag: `i64` scalar.
pub const ARG_I64: u32 = 4;
/// Kernel argument tag: `u64` scalar.
pub const ARG_U64: u32 = 5;
/// Kernel argument tag: `f32` scalar (IEEE bits in the low 32 bits).
pub const ARG_F32: u32 = 6;
/// Kernel argument tag: `f64` scalar (IEEE bits).
pub const ARG_F64: u32 = 7;
