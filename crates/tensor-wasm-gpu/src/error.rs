//! The crate's error type and its mapping onto guest error codes.

use crate::abi;

/// Everything that can go wrong in GPU dispatch.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// A guest pointer/length pair is outside linear memory.
    #[error("guest pointer range {ptr:#x}+{len} is outside linear memory")]
    InvalidPointer {
        /// Guest address.
        ptr: u32,
        /// Length in bytes.
        len: u64,
    },
    /// The calling module has no exported `memory`.
    #[error("the calling module exports no linear memory named `memory`")]
    NoMemoryExport,
    /// A handle is unknown to this session.
    #[error("unknown {kind} handle {handle}")]
    InvalidHandle {
        /// `buffer` or `kernel`.
        kind: &'static str,
        /// The handle the guest passed.
        handle: u32,
    },
    /// An argument value is invalid.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Kernel arguments do not match the PTX signature.
    #[error("kernel argument mismatch: {0}")]
    ArgMismatch(String),
    /// Access past the end of a device buffer.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Tenant device-memory quota exceeded.
    #[error(
        "tenant {tenant}: device memory quota exceeded ({requested} bytes requested, {in_use} of {limit} in use)"
    )]
    MemoryQuota {
        /// Tenant id.
        tenant: String,
        /// Bytes requested.
        requested: u64,
        /// Bytes already in use.
        in_use: u64,
        /// The quota.
        limit: u64,
    },
    /// Tenant concurrent-launch quota exhausted.
    #[error("tenant {tenant}: concurrent launch quota of {limit} exhausted; synchronize and retry")]
    LaunchQuota {
        /// Tenant id.
        tenant: String,
        /// The quota.
        limit: u32,
    },
    /// The operation needs a CUDA device.
    #[error("{0} needs a CUDA device; this runtime uses the CPU backend")]
    NeedsCuda(&'static str),
    /// The tenant is not allowed to load raw PTX (the operator's opt-in).
    #[error(
        "raw PTX is disabled for tenant {0}; the built-in ops are available \
         (an operator enables raw PTX per tenant with \"raw_ptx\": true in the tenant limits file)"
    )]
    RawPtxDisabled(String),
    /// PTX could not be loaded.
    #[error("kernel load failed: {0}")]
    KernelLoad(String),
    /// The op was stopped part-way because its invocation ended (deadline).
    #[error("op cancelled: its invocation ended")]
    Cancelled,
    /// The backend reported a failure.
    #[error("device error: {0}")]
    Device(String),
    /// The session holds too many handles.
    #[error("too many live handles (limit {0})")]
    TooManyHandles(usize),
    /// The requested backend is not available (runtime construction only).
    #[error("GPU backend unavailable: {0}")]
    Unavailable(String),
    /// I/O on the kernel cache directory failed (runtime construction only).
    #[error("kernel cache at {path}: {source}")]
    CacheIo {
        /// The path involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl GpuError {
    /// The negative error code a guest sees for this error.
    pub fn code(&self) -> i32 {
        match self {
            GpuError::InvalidPointer { .. } => abi::ERR_INVALID_POINTER,
            GpuError::NoMemoryExport => abi::ERR_NO_MEMORY,
            GpuError::InvalidHandle { .. } => abi::ERR_INVALID_HANDLE,
            GpuError::InvalidArgument(_) => abi::ERR_INVALID_ARGUMENT,
            GpuError::ArgMismatch(_) => abi::ERR_ARG_MISMATCH,
            GpuError::OutOfRange(_) => abi::ERR_OUT_OF_RANGE,
            GpuError::MemoryQuota { .. } => abi::ERR_QUOTA_MEMORY,
            GpuError::LaunchQuota { .. } => abi::ERR_QUOTA_LAUNCHES,
            GpuError::NeedsCuda(_) => abi::ERR_NEEDS_CUDA,
            GpuError::KernelLoad(_) => abi::ERR_KERNEL_LOAD,
            GpuError::RawPtxDisabled(_) => abi::ERR_RAW_PTX_DISABLED,
            GpuError::TooManyHandles(_) => abi::ERR_TOO_MANY_HANDLES,
            GpuError::Device(_)
            | GpuError::Cancelled
            | GpuError::Unavailable(_)
            | GpuError::CacheIo { .. } => abi::ERR_DEVICE,
        }
    }
}
