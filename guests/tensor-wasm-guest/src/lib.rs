//! Guest SDK for TensorWasm GPU dispatch.
//!
//! Safe Rust over the `tw_gpu_v1` host imports (see `GPU-INTERFACE.md` at the
//! repository root): device [`Buffer`]s that free themselves when dropped,
//! PTX [`Kernel`]s with a typed [`Launch`] builder, the built-in tensor ops in
//! [`ops`], and typed [`Error`]s carrying the host's message.
//!
//! Build guests for `wasm32-wasip1`. On other targets the imports are stubs
//! that fail with [`ErrorKind::Device`], so this crate still compiles there.
//!
//! ```no_run
//! use tensor_wasm_guest::{Buffer, ops};
//!
//! let a = Buffer::from_f32(&[1.0, 2.0, 3.0])?;
//! let b = Buffer::from_f32(&[10.0, 20.0, 30.0])?;
//! let out = Buffer::zeros_f32(3)?;
//! ops::vector_add(&a, &b, &out, 3)?;
//! assert_eq!(out.to_vec_f32()?, vec![11.0, 22.0, 33.0]);
//! # Ok::<(), tensor_wasm_guest::Error>(())
//! ```

pub mod args;
pub mod sys;

mod buffer;
mod kernel;
pub mod ops;

pub use buffer::Buffer;
pub use kernel::{Kernel, KernelArg, Launch};

/// What went wrong, one variant per host error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A pointer/length passed to the host lies outside linear memory.
    InvalidPointer,
    /// The handle is unknown, freed, or of the wrong kind.
    InvalidHandle,
    /// An argument value is invalid.
    InvalidArgument,
    /// Kernel arguments do not match the kernel's PTX signature.
    ArgMismatch,
    /// An offset or element count exceeds a buffer.
    OutOfRange,
    /// The tenant's device-memory quota is exhausted.
    QuotaMemory,
    /// The tenant's concurrent-launch quota is exhausted; [`synchronize`] and retry.
    QuotaLaunches,
    /// The operation needs a CUDA device (raw PTX on the CPU backend).
    NeedsCuda,
    /// The PTX could not be loaded.
    KernelLoad,
    /// The device or driver failed.
    Device,
    /// Too many live handles.
    TooManyHandles,
    /// The module exports no `memory`.
    NoMemory,
    /// Raw PTX is not enabled for this tenant (the built-in ops are).
    RawPtxDisabled,
    /// A code this SDK version does not know.
    Unknown(i32),
}

impl ErrorKind {
    /// Maps a host return code (negative) to its kind.
    pub fn from_code(code: i32) -> Self {
        match code {
            sys::ERR_INVALID_POINTER => ErrorKind::InvalidPointer,
            sys::ERR_INVALID_HANDLE => ErrorKind::InvalidHandle,
            sys::ERR_INVALID_ARGUMENT => ErrorKind::InvalidArgument,
            sys::ERR_ARG_MISMATCH => ErrorKind::ArgMismatch,
            sys::ERR_OUT_OF_RANGE => ErrorKind::OutOfRange,
            sys::ERR_QUOTA_MEMORY => ErrorKind::QuotaMemory,
            sys::ERR_QUOTA_LAUNCHES => ErrorKind::QuotaLaunches,
            sys::ERR_NEEDS_CUDA => ErrorKind::NeedsCuda,
            sys::ERR_KERNEL_LOAD => ErrorKind::KernelLoad,
            sys::ERR_DEVICE => ErrorKind::Device,
            sys::ERR_TOO_MANY_HANDLES => ErrorKind::TooManyHandles,
            sys::ERR_NO_MEMORY => ErrorKind::NoMemory,
            sys::ERR_RAW_PTX_DISABLED => ErrorKind::RawPtxDisabled,
            other => ErrorKind::Unknown(other),
        }
    }
}

/// A failed GPU call: its kind and the host's explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind, from the host's error code.
    pub kind: ErrorKind,
    /// The host's message (from `last_error`).
    pub message: String,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Turns a host return code into a `Result`, fetching the message on error.
pub(crate) fn check(code: i32) -> Result<()> {
    if code == sys::OK {
        return Ok(());
    }
    Err(Error {
        kind: ErrorKind::from_code(code),
        message: last_error_message(),
    })
}

fn last_error_message() -> String {
    let mut buf = vec![0u8; 512];
    let mut len = 0u32;
    // SAFETY: `buf` is writable for `buf.len()` bytes and `len` is a valid u32.
    let rc = unsafe { sys::last_error(buf.as_mut_ptr(), buf.len() as u32, &mut len) };
    if rc != sys::OK {
        return String::from("(no message: the host is unavailable)");
    }
    buf.truncate((len as usize).min(buf.len()));
    String::from_utf8_lossy(&buf).into_owned()
}

/// Which device the host runs the GPU interface on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The CPU reference backend (raw PTX launches fail with [`ErrorKind::NeedsCuda`]).
    Cpu,
    /// An NVIDIA GPU.
    Cuda,
}

/// The host's backend.
///
/// ```no_run
/// if tensor_wasm_guest::backend() == tensor_wasm_guest::Backend::Cuda {
///     println!("running on a GPU");
/// }
/// ```
pub fn backend() -> Backend {
    // SAFETY: no arguments; the import only returns a number.
    match unsafe { sys::backend_kind() } {
        1 => Backend::Cuda,
        _ => Backend::Cpu,
    }
}

/// The interface version the host implements (1 for `tw_gpu_v1`).
pub fn abi_version() -> i32 {
    // SAFETY: no arguments; the import only returns a number.
    unsafe { sys::abi_version() }
}

/// Waits until all work this instance enqueued has finished; releases the
/// launch-quota slots that work held.
///
/// ```no_run
/// # use tensor_wasm_guest::{Buffer, ops};
/// let x = Buffer::from_f32(&[-1.0, 2.0])?;
/// ops::relu(&x, &x, 2)?;
/// tensor_wasm_guest::synchronize()?;
/// # Ok::<(), tensor_wasm_guest::Error>(())
/// ```
pub fn synchronize() -> Result<()> {
    // SAFETY: no arguments.
    check(unsafe { sys::synchronize() })
}
