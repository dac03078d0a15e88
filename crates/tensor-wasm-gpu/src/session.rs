//! One Wasm instance's view of the GPU: its handle table, its share of the
//! tenant quota, and the last error message.
//!
//! Invariant: a handle is only ever looked up in the table of the session
//! that issued it, and the backend only ever sees ids from this table, so a
//! guest cannot name a buffer or kernel it did not create. Dropping the
//! session (the `Store` that owns it) frees everything and returns the quota,
//! whichever way the instance ended (return, trap, deadline).

use crate::abi;
use crate::backend::{Backend, BufferId, KernelArg, LaunchDims, check_f32_len, with_cancel};
use crate::error::GpuError;
use crate::ptx::ParamKind;
use crate::runtime::{CachedModule, GpuRuntime};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Work (elements touched, or multiply-adds for matmul) above which a CPU op
/// runs as a rayon task instead of on the calling executor thread.
const INLINE_WORK_LIMIT: u64 = 1 << 16;

/// A kernel argument as a guest names it: buffers by session handle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgValue {
    /// A buffer handle of this session.
    Buffer(u32),
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

/// A built-in op over this session's buffer handles (counts in elements).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    /// `out = a + b`
    VectorAdd { a: u32, b: u32, out: u32, n: u32 },
    /// `out = alpha * x + y`
    Saxpy {
        alpha: f32,
        x: u32,
        y: u32,
        out: u32,
        n: u32,
    },
    /// `c (m×n) = a (m×k) · b (k×n)`, row-major
    MatMul {
        a: u32,
        b: u32,
        c: u32,
        m: u32,
        k: u32,
        n: u32,
    },
    /// Row-wise softmax of a `rows`×`cols` matrix
    Softmax {
        x: u32,
        out: u32,
        rows: u32,
        cols: u32,
    },
    /// `out[0] = Σ x`
    Sum { x: u32, out: u32, n: u32 },
    /// `out[0] = max x`
    Max { x: u32, out: u32, n: u32 },
    /// `out = max(x, 0)`
    Relu { x: u32, out: u32, n: u32 },
}

impl Op {
    /// The metric label of this op.
    pub fn name(&self) -> &'static str {
        match self {
            Op::VectorAdd { .. } => "vector_add",
            Op::Saxpy { .. } => "saxpy",
            Op::MatMul { .. } => "matmul",
            Op::Softmax { .. } => "softmax",
            Op::Sum { .. } => "sum",
            Op::Max { .. } => "max",
            Op::Relu { .. } => "relu",
        }
    }
}

/// An op with handles resolved to backend ids and sizes checked; runnable
/// on any thread.
#[derive(Debug, Clone, Copy)]
enum ResolvedOp {
    VectorAdd(BufferId, BufferId, BufferId, usize),
    Saxpy(f32, BufferId, BufferId, BufferId, usize),
    MatMul(BufferId, BufferId, BufferId, usize, usize, usize),
    Softmax(BufferId, BufferId, usize, usize),
    Sum(BufferId, BufferId, usize),
    Max(BufferId, BufferId, usize),
    Relu(BufferId, BufferId, usize),
}

impl ResolvedOp {
    fn run(self, backend: &dyn Backend) -> Result<(), GpuError> {
        match self {
            ResolvedOp::VectorAdd(a, b, o, n) => backend.vector_add(a, b, o, n),
            ResolvedOp::Saxpy(al, x, y, o, n) => backend.saxpy(al, x, y, o, n),
            ResolvedOp::MatMul(a, b, c, m, k, n) => backend.matmul(a, b, c, m, k, n),
            ResolvedOp::Softmax(x, o, r, c) => backend.softmax(x, o, r, c),
            ResolvedOp::Sum(x, o, n) => backend.sum(x, o, n),
            ResolvedOp::Max(x, o, n) => backend.max(x, o, n),
            ResolvedOp::Relu(x, o, n) => backend.relu(x, o, n),
        }
    }

    fn work(&self) -> u64 {
        match *self {
            ResolvedOp::VectorAdd(.., n)
            | ResolvedOp::Saxpy(.., n)
            | ResolvedOp::Sum(.., n)
            | ResolvedOp::Max(.., n)
            | ResolvedOp::Relu(.., n) => n as u64,
            ResolvedOp::MatMul(.., m, k, n) => {
                (m as u64).saturating_mul(k as u64).saturating_mul(n as u64)
            }
            ResolvedOp::Softmax(.., r, c) => (r as u64).saturating_mul(c as u64),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct BufferEntry {
    id: BufferId,
    size: u64,
}

#[derive(Debug, Clone)]
struct KernelEntry {
    module: CachedModule,
    entry: String,
    params: Vec<ParamKind>,
}

/// The GPU state of one Wasm instance. Create one per `Store`.
pub struct GpuSession {
    rt: Arc<GpuRuntime>,
    tenant: String,
    buffers: HashMap<u32, BufferEntry>,
    kernels: HashMap<u32, KernelEntry>,
    next_handle: u32,
    pending_launches: u32,
    last_error: String,
}

impl std::fmt::Debug for GpuSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuSession")
            .field("tenant", &self.tenant)
            .field("buffers", &self.buffers.len())
            .field("kernels", &self.kernels.len())
            .finish_non_exhaustive()
    }
}

impl GpuSession {
    /// A session for one instance of `tenant`'s code.
    pub fn new(rt: Arc<GpuRuntime>, tenant: &str) -> Self {
        GpuSession {
            rt,
            tenant: tenant.to_string(),
            buffers: HashMap::new(),
            kernels: HashMap::new(),
            next_handle: 1,
            pending_launches: 0,
            last_error: String::new(),
        }
    }

    /// The runtime this session dispatches to.
    pub fn runtime(&self) -> &Arc<GpuRuntime> {
        &self.rt
    }

    /// The tenant this session is charged to.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Live buffer handles.
    pub fn buffer_count(&self) -> usize {
        self.buffers.len()
    }

    /// The message of the most recent failed call (empty if none failed).
    pub fn last_error(&self) -> &str {
        &self.last_error
    }

    /// Remembers `r`'s error message for `last_error` and passes `r` through.
    pub(crate) fn record<R>(&mut self, r: Result<R, GpuError>) -> Result<R, GpuError> {
        if let Err(e) = &r {
            self.last_error = e.to_string();
        }
        r
    }

    fn issue_handle(&mut self) -> Result<u32, GpuError> {
        if self.buffers.len() + self.kernels.len() >= abi::MAX_HANDLES {
            return Err(GpuError::TooManyHandles(abi::MAX_HANDLES));
        }
        // Handles are never reused within a session and stay positive as i32,
        // so a stale handle can never name a newer object.
        let h = self.next_handle;
        if h > i32::MAX as u32 {
            return Err(GpuError::TooManyHandles(abi::MAX_HANDLES));
        }
        self.next_handle += 1;
        Ok(h)
    }

    fn buffer(&self, handle: u32) -> Result<BufferEntry, GpuError> {
        self.buffers
            .get(&handle)
            .copied()
            .ok_or(GpuError::InvalidHandle {
                kind: "buffer",
                handle,
            })
    }

    /// Allocates a zero-filled device buffer of `size` bytes.
    pub fn create_buffer(&mut self, size: u64) -> Result<u32, GpuError> {
        if size == 0 {
            return Err(GpuError::InvalidArgument("buffer size must be > 0".into()));
        }
        let handle = self.issue_handle()?;
        self.rt.reserve_memory(&self.tenant, size)?;
        match self.rt.backend().alloc(size) {
            Ok(id) => {
                self.buffers.insert(handle, BufferEntry { id, size });
                Ok(handle)
            }
            Err(e) => {
                self.rt.release_memory(&self.tenant, size);
                Err(e)
            }
        }
    }

    /// Frees a buffer; its handle is invalid afterwards.
    pub fn free_buffer(&mut self, handle: u32) -> Result<(), GpuError> {
        let entry = self
            .buffers
            .remove(&handle)
            .ok_or(GpuError::InvalidHandle {
                kind: "buffer",
                handle,
            })?;
        self.rt.backend().free(entry.id);
        self.rt.release_memory(&self.tenant, entry.size);
        Ok(())
    }

    /// Size of a buffer in bytes.
    pub fn buffer_size(&self, handle: u32) -> Result<u64, GpuError> {
        Ok(self.buffer(handle)?.size)
    }

    /// Copies `data` into the buffer at byte `offset`.
    pub fn write_buffer(&mut self, handle: u32, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        let entry = self.buffer(handle)?;
        check_range(offset, data.len() as u64, entry.size)?;
        self.rt.backend().write(entry.id, offset, data)?;
        self.rt.metrics.add_bytes("h2d", data.len() as u64);
        Ok(())
    }

    /// Copies from the buffer at byte `offset` into `out`, after queued work
    /// completes (so the launches it waited for release their quota slots).
    pub fn read_buffer(
        &mut self,
        handle: u32,
        offset: u64,
        out: &mut [u8],
    ) -> Result<(), GpuError> {
        let entry = self.buffer(handle)?;
        check_range(offset, out.len() as u64, entry.size)?;
        self.rt.backend().read(entry.id, offset, out)?;
        self.release_pending();
        self.rt.metrics.add_bytes("d2h", out.len() as u64);
        Ok(())
    }

    /// Loads `entry` of a PTX module (compiled once per distinct text and tenant).
    pub fn load_kernel(&mut self, ptx: &str, entry: &str) -> Result<u32, GpuError> {
        self.check_raw_ptx()?;
        let module = self.rt.load_module(&self.tenant, ptx)?;
        self.register_kernel(module, entry)
    }

    /// Like [`GpuSession::load_kernel`]; on a device backend the driver's
    /// JIT runs on tokio's blocking pool, never on an executor thread.
    pub async fn load_kernel_async(&mut self, ptx: String, entry: &str) -> Result<u32, GpuError> {
        self.check_raw_ptx()?;
        let rt = self.rt.clone();
        let tenant = self.tenant.clone();
        let module = off_executor(&self.rt, move || rt.load_module(&tenant, &ptx)).await?;
        self.register_kernel(module, entry)
    }

    fn check_raw_ptx(&self) -> Result<(), GpuError> {
        if self.rt.raw_ptx_allowed(&self.tenant) {
            Ok(())
        } else {
            Err(GpuError::RawPtxDisabled(self.tenant.clone()))
        }
    }

    /// Checks a copy of `len` bytes at `offset` of buffer `handle` and
    /// returns the backend's id for it (for copies run off the executor).
    pub(crate) fn copy_target(
        &self,
        handle: u32,
        offset: u64,
        len: u64,
    ) -> Result<BufferId, GpuError> {
        let entry = self.buffer(handle)?;
        check_range(offset, len, entry.size)?;
        Ok(entry.id)
    }

    /// Counts bytes copied in `direction` (`h2d` or `d2h`).
    pub(crate) fn count_bytes(&self, direction: &'static str, n: u64) {
        self.rt.metrics.add_bytes(direction, n);
    }

    fn register_kernel(&mut self, module: CachedModule, entry: &str) -> Result<u32, GpuError> {
        let params = module
            .signature
            .entry(entry)
            .ok_or_else(|| GpuError::KernelLoad(format!("PTX has no .entry named `{entry}`")))?
            .to_vec();
        let handle = self.issue_handle()?;
        self.kernels.insert(
            handle,
            KernelEntry {
                module,
                entry: entry.to_string(),
                params,
            },
        );
        Ok(handle)
    }

    /// Forgets a kernel handle (the compiled module stays cached).
    pub fn free_kernel(&mut self, handle: u32) -> Result<(), GpuError> {
        self.kernels
            .remove(&handle)
            .map(|_| ())
            .ok_or(GpuError::InvalidHandle {
                kind: "kernel",
                handle,
            })
    }

    /// Launches a kernel after checking `args` against its PTX signature.
    pub fn launch(
        &mut self,
        kernel: u32,
        dims: LaunchDims,
        args: &[ArgValue],
    ) -> Result<(), GpuError> {
        let started = Instant::now();
        let k = self
            .kernels
            .get(&kernel)
            .ok_or(GpuError::InvalidHandle {
                kind: "kernel",
                handle: kernel,
            })?
            .clone();
        validate_dims(&dims)?;
        if args.len() != k.params.len() {
            return Err(GpuError::ArgMismatch(format!(
                "kernel `{}` takes {} arguments, got {}",
                k.entry,
                k.params.len(),
                args.len()
            )));
        }
        let mut resolved = Vec::with_capacity(args.len());
        for (i, (arg, param)) in args.iter().zip(&k.params).enumerate() {
            let (value, fits) = match *arg {
                ArgValue::Buffer(h) => (
                    KernelArg::Buffer(self.buffer(h)?.id),
                    *param == ParamKind::Int64,
                ),
                ArgValue::I32(v) => (KernelArg::I32(v), *param == ParamKind::Int32),
                ArgValue::U32(v) => (KernelArg::U32(v), *param == ParamKind::Int32),
                // A 64-bit integer parameter is how PTX passes a pointer, and
                // the signature cannot tell the two apart: it takes a buffer
                // handle of this session only, never a raw integer that
                // could name another tenant's device memory.
                ArgValue::I64(_) | ArgValue::U64(_) if *param == ParamKind::Int64 => {
                    return Err(GpuError::ArgMismatch(format!(
                        "kernel `{}` argument {i}: a 64-bit integer parameter takes a buffer \
                         handle, not a raw integer (pass 64-bit scalars as two u32 values)",
                        k.entry
                    )));
                }
                ArgValue::I64(v) => (KernelArg::I64(v), false),
                ArgValue::U64(v) => (KernelArg::U64(v), false),
                ArgValue::F32(v) => (KernelArg::F32(v), *param == ParamKind::F32),
                ArgValue::F64(v) => (KernelArg::F64(v), *param == ParamKind::F64),
            };
            if !fits {
                return Err(GpuError::ArgMismatch(format!(
                    "kernel `{}` argument {i}: PTX expects {param:?}, got {arg:?}",
                    k.entry
                )));
            }
            resolved.push(value);
        }
        self.rt.acquire_launch(&self.tenant)?;
        let result = self
            .rt
            .backend()
            .launch(&k.module.module, &k.entry, dims, &resolved);
        self.settle_launch(result.is_ok());
        self.rt
            .metrics
            .observe_dispatch("launch", started.elapsed());
        result
    }

    fn resolve(&self, op: Op) -> Result<ResolvedOp, GpuError> {
        let buf = |h: u32, n: u64| -> Result<BufferId, GpuError> {
            let e = self.buffer(h)?;
            let n = usize::try_from(n)
                .map_err(|_| GpuError::InvalidArgument("count too large".into()))?;
            check_f32_len(&format!("buffer {h}"), n, e.size)?;
            Ok(e.id)
        };
        let nonzero = |what: &str, v: u32| {
            if v == 0 {
                Err(GpuError::InvalidArgument(format!("{what} must be > 0")))
            } else {
                Ok(v as usize)
            }
        };
        let prod = |a: u32, b: u32| a as u64 * b as u64;
        Ok(match op {
            Op::VectorAdd { a, b, out, n } => {
                let nn = n as u64;
                ResolvedOp::VectorAdd(buf(a, nn)?, buf(b, nn)?, buf(out, nn)?, n as usize)
            }
            Op::Saxpy {
                alpha,
                x,
                y,
                out,
                n,
            } => {
                let nn = n as u64;
                ResolvedOp::Saxpy(alpha, buf(x, nn)?, buf(y, nn)?, buf(out, nn)?, n as usize)
            }
            Op::MatMul { a, b, c, m, k, n } => {
                let (mm, kk, nn) = (nonzero("m", m)?, nonzero("k", k)?, nonzero("n", n)?);
                ResolvedOp::MatMul(
                    buf(a, prod(m, k))?,
                    buf(b, prod(k, n))?,
                    buf(c, prod(m, n))?,
                    mm,
                    kk,
                    nn,
                )
            }
            Op::Softmax { x, out, rows, cols } => {
                let (r, c) = (nonzero("rows", rows)?, nonzero("cols", cols)?);
                ResolvedOp::Softmax(buf(x, prod(rows, cols))?, buf(out, prod(rows, cols))?, r, c)
            }
            Op::Sum { x, out, n } => {
                ResolvedOp::Sum(buf(x, n as u64)?, buf(out, 1)?, nonzero("n", n)?)
            }
            Op::Max { x, out, n } => {
                ResolvedOp::Max(buf(x, n as u64)?, buf(out, 1)?, nonzero("n", n)?)
            }
            Op::Relu { x, out, n } => {
                let nn = n as u64;
                ResolvedOp::Relu(buf(x, nn)?, buf(out, nn)?, n as usize)
            }
        })
    }

    /// Runs a built-in op. On the CPU backend large ops run as a task on the
    /// rayon pool and this future is woken by its completion (a oneshot
    /// channel), so no executor thread blocks on the work; on CUDA the op is
    /// only enqueued.
    pub async fn run_op(&mut self, op: Op) -> Result<(), GpuError> {
        let started = Instant::now();
        let resolved = self.resolve(op)?;
        self.rt.acquire_launch(&self.tenant)?;
        let backend = self.rt.backend().clone();
        let offload = backend.completes_synchronously() && resolved.work() > INLINE_WORK_LIMIT;
        if offload {
            let (done, finished) = tokio::sync::oneshot::channel();
            // Set when this future ends — completed, or dropped because the
            // invocation hit its deadline — so the op stops at its next chunk.
            let cancel = Arc::new(AtomicBool::new(false));
            let _stop_on_drop = StopOnDrop(cancel.clone());
            // The launch slot travels with the work: it goes back when the op
            // has really stopped, also if this future is dropped first.
            let slot = LaunchSlot {
                rt: self.rt.clone(),
                tenant: self.tenant.clone(),
            };
            rayon::spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| {
                    with_cancel(cancel, || resolved.run(backend.as_ref()))
                });
                let r = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                    Err(GpuError::Device("the op panicked; this is a bug".into()))
                });
                let rt = slot.rt.clone();
                drop(slot);
                if matches!(r, Err(GpuError::Cancelled)) {
                    rt.metrics.op_cancelled();
                }
                let _ = done.send(r);
            });
            let result = finished
                .await
                .unwrap_or_else(|_| Err(GpuError::Device("op task ended without a result".into())));
            self.rt
                .metrics
                .observe_dispatch(op.name(), started.elapsed());
            return result;
        }
        let result = resolved.run(backend.as_ref());
        self.settle_launch(result.is_ok());
        self.rt
            .metrics
            .observe_dispatch(op.name(), started.elapsed());
        result
    }

    /// Blocking form of [`GpuSession::run_op`] for callers outside async code.
    pub fn run_op_blocking(&mut self, op: Op) -> Result<(), GpuError> {
        let started = Instant::now();
        let resolved = self.resolve(op)?;
        self.rt.acquire_launch(&self.tenant)?;
        let result = resolved.run(self.rt.backend().as_ref());
        self.settle_launch(result.is_ok());
        self.rt
            .metrics
            .observe_dispatch(op.name(), started.elapsed());
        result
    }

    /// Waits until all work this session enqueued has completed; releases
    /// the launch-quota slots that work held.
    pub async fn synchronize(&mut self) -> Result<(), GpuError> {
        let started = Instant::now();
        let fence = self.rt.backend().fence()?;
        fence.wait().await?;
        self.release_pending();
        self.rt
            .metrics
            .observe_dispatch("synchronize", started.elapsed());
        Ok(())
    }

    /// A launch holds its quota slot until the work is known to be complete:
    /// at once on synchronous backends, else until the next synchronise/read.
    fn settle_launch(&mut self, enqueued: bool) {
        if enqueued && !self.rt.backend().completes_synchronously() {
            self.pending_launches += 1;
        } else {
            self.rt.release_launches(&self.tenant, 1);
        }
    }

    /// After a device-to-host copy that waited for queued work: the launches
    /// it waited for are complete, so their quota slots go back.
    pub(crate) fn settle_after_read(&mut self) {
        self.release_pending();
    }

    fn release_pending(&mut self) {
        let n = std::mem::take(&mut self.pending_launches);
        self.rt.release_launches(&self.tenant, n);
    }
}

impl Drop for GpuSession {
    fn drop(&mut self) {
        let mut freed = 0u64;
        for (_, entry) in self.buffers.drain() {
            // Freed in stream order on devices with queues.
            self.rt.backend().free(entry.id);
            freed += entry.size;
        }
        let pending = std::mem::take(&mut self.pending_launches);
        if self.rt.backend().completes_synchronously() || (pending == 0 && freed == 0) {
            self.rt.release_memory(&self.tenant, freed);
            self.rt.release_launches(&self.tenant, pending);
            return;
        }
        // Work still queued on the device keeps its quota — the launch slots
        // and the memory it uses — until the device has finished it, also
        // when the invocation ended at its deadline: a tenant cannot hold
        // more than its quota by launching and timing out in a loop.
        let fence = match self.rt.backend().fence() {
            Ok(f) => f,
            Err(_) => {
                self.rt.release_memory(&self.tenant, freed);
                return self.rt.release_launches(&self.tenant, pending);
            }
        };
        let (rt, tenant) = (self.rt.clone(), self.tenant.clone());
        let release = move || {
            let _ = fence.wait_blocking();
            rt.release_memory(&tenant, freed);
            rt.release_launches(&tenant, pending);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(release);
            }
            Err(_) => release(),
        }
    }
}

/// One launch-quota slot, released when dropped.
struct LaunchSlot {
    rt: Arc<GpuRuntime>,
    tenant: String,
}

impl Drop for LaunchSlot {
    fn drop(&mut self) {
        self.rt.release_launches(&self.tenant, 1);
    }
}

/// Sets its flag when dropped: the cancellation of an offloaded op.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` on tokio's blocking pool when the backend talks to a device
/// (its calls block on the driver), inline on synchronous backends (the CPU
/// reference backend, whose cheap calls would only pay for the hop).
pub(crate) async fn off_executor<T: Send + 'static>(
    rt: &GpuRuntime,
    work: impl FnOnce() -> Result<T, GpuError> + Send + 'static,
) -> Result<T, GpuError> {
    if rt.backend().completes_synchronously() {
        return work();
    }
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(work)
            .await
            .map_err(|e| GpuError::Device(format!("blocking GPU task failed: {e}")))?,
        Err(_) => work(),
    }
}

fn check_range(offset: u64, len: u64, size: u64) -> Result<(), GpuError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(GpuError::OutOfRange(format!(
            "{len} bytes at offset {offset} exceed buffer of {size} bytes"
        ))),
    }
}

fn validate_dims(d: &LaunchDims) -> Result<(), GpuError> {
    let bad = |msg: String| Err(GpuError::InvalidArgument(msg));
    if d.grid.contains(&0) || d.block.contains(&0) {
        return bad(format!(
            "grid {:?} and block {:?} must be non-zero",
            d.grid, d.block
        ));
    }
    if d.grid[0] > i32::MAX as u32 || d.grid[1] > 65_535 || d.grid[2] > 65_535 {
        return bad(format!("grid {:?} exceeds (2^31-1, 65535, 65535)", d.grid));
    }
    let threads = d.block.iter().map(|v| *v as u64).product::<u64>();
    if threads > abi::MAX_THREADS_PER_BLOCK || d.block[2] > 64 {
        return bad(format!(
            "block {:?} exceeds 1024 threads or z > 64",
            d.block
        ));
    }
    if d.shared_mem_bytes > abi::MAX_SHARED_MEM_BYTES {
        return bad(format!(
            "{} bytes of shared memory exceed {}",
            d.shared_mem_bytes,
            abi::MAX_SHARED_MEM_BYTES
        ));
    }
    Ok(())
}
