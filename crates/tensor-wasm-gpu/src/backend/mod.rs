//! The device abstraction: one trait, two implementations (`cpu`, `cuda`).
//!
//! Buffers are named by [`BufferId`]s the backend issues; the backend owns the
//! memory. Sessions translate guest handles into ids and never hand a backend
//! an id they did not allocate themselves, so no guest can name another
//! session's memory. Backends still validate every length they are given.

use crate::error::GpuError;
use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub mod cpu;
pub mod cuda;

pub use cpu::CpuBackend;
pub use cuda::CudaBackend;

thread_local! {
    static CANCEL: std::cell::RefCell<Option<Arc<AtomicBool>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` (one backend op) with `flag` as its cancellation token: a
/// backend that works in chunks ([`CpuBackend`]) stops at the next chunk
/// once `flag` is set — the invocation that asked for the op has ended.
pub(crate) fn with_cancel<R>(flag: Arc<AtomicBool>, f: impl FnOnce() -> R) -> R {
    /// Puts the previous token back when the op ends, by return or unwind.
    struct Restore(Option<Arc<AtomicBool>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            CANCEL.with(|c| *c.borrow_mut() = previous);
        }
    }
    let _restore = Restore(CANCEL.with(|c| c.borrow_mut().replace(flag)));
    f()
}

/// The running op's cancellation token, if it has one (read once per op,
/// on the thread that started it, then shared with its parallel chunks).
#[derive(Clone, Default)]
pub(crate) struct CancelToken(Option<Arc<AtomicBool>>);

impl CancelToken {
    pub(crate) fn current() -> Self {
        CancelToken(CANCEL.with(|c| c.borrow().clone()))
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.as_ref().is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// `Err` once cancelled: what an op that stopped early returns.
    pub(crate) fn check(&self) -> Result<(), GpuError> {
        if self.is_cancelled() {
            Err(GpuError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// A backend-issued name for one device buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BufferId(pub u64);

/// Grid, block and dynamic shared memory of one kernel launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchDims {
    /// Blocks in x, y, z.
    pub grid: [u32; 3],
    /// Threads per block in x, y, z.
    pub block: [u32; 3],
    /// Dynamic shared memory per block, in bytes.
    pub shared_mem_bytes: u32,
}

/// One typed kernel argument, already resolved from guest handles.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KernelArg {
    /// A device buffer (passed as its device address).
    Buffer(BufferId),
    /// `i32` scalar.
    I32(i32),
    /// `u32` scalar.
    U32(u32),
    /// `i64` scalar.
    I64(i64),
    /// `u64` scalar.
    U64(u64),
    /// `f32` scalar.
    F32(f32),
    /// `f64` scalar.
    F64(f64),
}

/// A backend-specific compiled PTX module; opaque to everyone else.
#[derive(Clone)]
pub struct KernelModule(pub(crate) Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for KernelModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KernelModule")
    }
}

type FenceWait = Box<dyn FnOnce() -> Result<(), GpuError> + Send>;

/// A point in the device's work queue; waiting on it returns once everything
/// enqueued before it has completed.
pub struct Fence {
    wait: Option<FenceWait>,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("ready", &self.wait.is_none())
            .finish()
    }
}

impl Fence {
    /// A fence that has already been passed (synchronous backends).
    pub fn ready() -> Self {
        Fence { wait: None }
    }

    /// A fence completed by running `wait`, which blocks on a driver event.
    pub fn from_blocking(wait: impl FnOnce() -> Result<(), GpuError> + Send + 'static) -> Self {
        Fence {
            wait: Some(Box::new(wait)),
        }
    }

    /// Blocks the calling thread until the fence is passed.
    pub fn wait_blocking(self) -> Result<(), GpuError> {
        match self.wait {
            None => Ok(()),
            Some(wait) => wait(),
        }
    }

    /// Waits without blocking the async executor: the driver-event wait runs on
    /// tokio's blocking pool and wakes this task when the device signals
    /// completion (no timer polling). Outside a tokio runtime it blocks.
    pub async fn wait(self) -> Result<(), GpuError> {
        let Some(wait) = self.wait else {
            return Ok(());
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(wait)
                .await
                .map_err(|e| GpuError::Device(format!("fence wait task failed: {e}")))?,
            Err(_) => wait(),
        }
    }
}

/// A device that stores buffers and runs the built-in ops and PTX kernels.
///
/// All `f32` ops read and write element 0.. of the named buffers; `n`, `m`,
/// `k`, `rows`, `cols` are element counts. Output buffers may alias inputs.
pub trait Backend: Send + Sync + 'static {
    /// `"cuda"` or `"cpu"`.
    fn name(&self) -> &'static str;
    /// Human-readable device name.
    fn device_name(&self) -> String;
    /// True when every op has finished by the time its call returns.
    fn completes_synchronously(&self) -> bool;

    /// Allocates a zero-filled buffer of `bytes` bytes.
    fn alloc(&self, bytes: u64) -> Result<BufferId, GpuError>;
    /// Frees a buffer (in stream order on devices with queues).
    fn free(&self, buf: BufferId);
    /// Copies `data` into the buffer at byte `offset`.
    fn write(&self, buf: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError>;
    /// Copies from the buffer at byte `offset` into `out`, after all queued work.
    fn read(&self, buf: BufferId, offset: u64, out: &mut [u8]) -> Result<(), GpuError>;

    /// Compiles PTX text into a module (`key` is the BLAKE3 of the text).
    fn load_module(&self, ptx: &str, key: &blake3::Hash) -> Result<KernelModule, GpuError>;
    /// Launches `entry` of `module`; `args` have already been checked against
    /// the entry's PTX signature.
    fn launch(
        &self,
        module: &KernelModule,
        entry: &str,
        dims: LaunchDims,
        args: &[KernelArg],
    ) -> Result<(), GpuError>;

    /// `out[i] = a[i] + b[i]` for `i < n`.
    fn vector_add(&self, a: BufferId, b: BufferId, out: BufferId, n: usize)
    -> Result<(), GpuError>;
    /// `out[i] = alpha * x[i] + y[i]` for `i < n` (no fused multiply-add).
    fn saxpy(
        &self,
        alpha: f32,
        x: BufferId,
        y: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError>;
    /// `c = a · b` with `a` m×k, `b` k×n, `c` m×n, all row-major.
    fn matmul(
        &self,
        a: BufferId,
        b: BufferId,
        c: BufferId,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError>;
    /// Numerically stable softmax of each row of a `rows`×`cols` row-major matrix.
    fn softmax(&self, x: BufferId, out: BufferId, rows: usize, cols: usize)
    -> Result<(), GpuError>;
    /// `out[0] = Σ x[i]` for `i < n`.
    fn sum(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError>;
    /// `out[0] = max x[i]` for `i < n` (NaNs ignored unless all are NaN).
    fn max(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError>;
    /// `out[i] = max(x[i], 0)` for `i < n`.
    fn relu(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError>;

    /// A fence after all work enqueued so far.
    fn fence(&self) -> Result<Fence, GpuError>;
    /// Blocks until all enqueued work has completed.
    fn synchronize(&self) -> Result<(), GpuError> {
        self.fence()?.wait_blocking()
    }
}

/// Checks that `n` f32 elements fit in a buffer of `len_bytes` bytes.
pub(crate) fn check_f32_len(what: &str, n: usize, len_bytes: u64) -> Result<(), GpuError> {
    let need = (n as u64)
        .checked_mul(4)
        .ok_or_else(|| GpuError::OutOfRange(format!("{what}: {n} elements overflow")))?;
    if need > len_bytes {
        return Err(GpuError::OutOfRange(format!(
            "{what}: {n} f32 elements need {need} bytes, buffer has {len_bytes}"
        )));
    }
    Ok(())
}
