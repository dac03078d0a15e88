//! The CPU reference backend: built-in ops on host memory, multi-threaded with
//! rayon and written so the compiler vectorises the inner loops; matmul via
//! `matrixmultiply`. Raw PTX launches answer [`GpuError::NeedsCuda`].
//!
//! `vector_add`, `saxpy` and `relu` are bit-for-bit equal to the CUDA kernels
//! (both round each multiply and add separately); `matmul`, `sum`, `max` and
//! `softmax` agree within the tolerances stated in `GPU-INTERFACE.md`.
//!
//! Large ops work in chunks and check the op's cancellation token between
//! them, so an op whose invocation has ended (its deadline passed) stops
//! within one chunk instead of running to completion on the shared pool.

use super::{
    Backend, BufferId, CancelToken, Fence, KernelArg, KernelModule, LaunchDims, check_f32_len,
};
use crate::error::GpuError;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// Elements per parallel task; below this an op runs on the calling thread.
const CHUNK: usize = 1 << 15;

/// One host-memory "device" buffer. Stored as `f32`s so ops need no
/// re-alignment; `len_bytes` is the size the guest asked for.
struct CpuBuffer {
    data: Vec<f32>,
    len_bytes: u64,
}

impl CpuBuffer {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `f32` has no padding and every byte is initialised; u8 has
        // alignment 1; the length covers exactly the same allocation.
        let all = unsafe {
            std::slice::from_raw_parts(self.data.as_ptr().cast::<u8>(), self.data.len() * 4)
        };
        &all[..self.len_bytes as usize]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len_bytes as usize;
        // SAFETY: as in `bytes`; additionally every bit pattern is a valid f32,
        // so arbitrary byte writes cannot create an invalid value.
        let all = unsafe {
            std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast::<u8>(), self.data.len() * 4)
        };
        &mut all[..len]
    }

    fn f32s(&self, what: &str, n: usize) -> Result<&[f32], GpuError> {
        check_f32_len(what, n, self.len_bytes)?;
        Ok(&self.data[..n])
    }
}

/// The CPU reference backend.
#[derive(Default)]
pub struct CpuBackend {
    buffers: RwLock<HashMap<BufferId, Arc<Mutex<CpuBuffer>>>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend").finish_non_exhaustive()
    }
}

fn lock(buf: &Mutex<CpuBuffer>) -> MutexGuard<'_, CpuBuffer> {
    // A panic while holding a buffer lock cannot leave it logically broken
    // (it is plain data), so a poisoned lock is still usable.
    buf.lock().unwrap_or_else(|p| p.into_inner())
}

impl CpuBackend {
    /// A backend with no buffers.
    pub fn new() -> Self {
        Self::default()
    }

    fn get(&self, id: BufferId) -> Result<Arc<Mutex<CpuBuffer>>, GpuError> {
        let map = self.buffers.read().unwrap_or_else(|p| p.into_inner());
        map.get(&id).cloned().ok_or(GpuError::InvalidHandle {
            kind: "buffer",
            handle: id.0 as u32,
        })
    }

    /// Runs `f` over the first `n_in` elements of each input and `n_out` of
    /// the output. Locks each distinct buffer once (in id order); an output
    /// that aliases an input sees a copy of the input taken first.
    fn with_buffers<R>(
        &self,
        inputs: &[(BufferId, usize)],
        out: (BufferId, usize),
        f: impl FnOnce(&[&[f32]], &mut [f32]) -> R,
    ) -> Result<R, GpuError> {
        let mut ids: Vec<BufferId> = inputs.iter().map(|(id, _)| *id).collect();
        ids.push(out.0);
        ids.sort_unstable();
        ids.dedup();
        let arcs = ids
            .iter()
            .map(|id| self.get(*id))
            .collect::<Result<Vec<_>, _>>()?;
        let mut guards: Vec<MutexGuard<'_, CpuBuffer>> = arcs.iter().map(|a| lock(a)).collect();
        let out_pos = ids
            .binary_search(&out.0)
            .map_err(|_| GpuError::Device("output buffer vanished".into()))?;
        check_f32_len("output", out.1, guards[out_pos].len_bytes)?;
        let alias_copy: Option<Vec<f32>> = inputs
            .iter()
            .any(|(id, _)| *id == out.0)
            .then(|| guards[out_pos].data.clone());
        let (before, rest) = guards.split_at_mut(out_pos);
        let (out_guard, after) = rest
            .split_first_mut()
            .ok_or_else(|| GpuError::Device("output buffer vanished".into()))?;
        let mut slices = Vec::with_capacity(inputs.len());
        for (id, n) in inputs {
            let slice = if *id == out.0 {
                let copy = alias_copy.as_deref().unwrap_or(&[]);
                check_f32_len("input", *n, out_guard.len_bytes)?;
                &copy[..*n]
            } else {
                let pos = ids
                    .binary_search(id)
                    .map_err(|_| GpuError::Device("input buffer vanished".into()))?;
                let guard = if pos < out_pos {
                    &before[pos]
                } else {
                    &after[pos - out_pos - 1]
                };
                guard.f32s("input", *n)?
            };
            slices.push(slice);
        }
        Ok(f(&slices, &mut out_guard.data[..out.1]))
    }

    fn elementwise(
        &self,
        inputs: &[BufferId],
        out: BufferId,
        n: usize,
        f: impl Fn(&[&[f32]], &mut [f32]) + Sync,
    ) -> Result<(), GpuError> {
        let ins: Vec<(BufferId, usize)> = inputs.iter().map(|id| (*id, n)).collect();
        let cancel = CancelToken::current();
        self.with_buffers(&ins, (out, n), |ins, out| {
            if n <= CHUNK {
                f(ins, out);
            } else {
                out.par_chunks_mut(CHUNK)
                    .enumerate()
                    .for_each(|(c, out_chunk)| {
                        if cancel.is_cancelled() {
                            return;
                        }
                        let start = c * CHUNK;
                        let end = start + out_chunk.len();
                        let chunk_ins: Vec<&[f32]> = ins.iter().map(|s| &s[start..end]).collect();
                        f(&chunk_ins, out_chunk);
                    });
            }
        })?;
        cancel.check()
    }

    fn reduce(
        &self,
        x: BufferId,
        out: BufferId,
        n: usize,
        chunk_fn: impl Fn(&[f32]) -> f32 + Sync,
        combine: impl Fn(f32, f32) -> f32 + Sync + Send,
        identity: f32,
    ) -> Result<(), GpuError> {
        if n == 0 {
            return Err(GpuError::InvalidArgument(
                "reduction over zero elements".into(),
            ));
        }
        let cancel = CancelToken::current();
        self.with_buffers(&[(x, n)], (out, 1), |ins, out| {
            let x = ins[0];
            out[0] = if n <= CHUNK {
                chunk_fn(x)
            } else {
                x.par_chunks(CHUNK)
                    .map(|c| {
                        if cancel.is_cancelled() {
                            identity
                        } else {
                            chunk_fn(c)
                        }
                    })
                    .reduce(|| identity, &combine)
            };
        })?;
        cancel.check()
    }
}

fn sum_lanes(x: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] += c[i];
        }
    }
    let mut total = acc.iter().sum::<f32>();
    for v in tail {
        total += v;
    }
    total
}

fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            acc[i] = acc[i].max(c[i]);
        }
    }
    let mut m = acc.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in tail {
        m = m.max(*v);
    }
    if m == f32::NEG_INFINITY && x.iter().all(|v| v.is_nan()) {
        return f32::NAN;
    }
    m
}

fn softmax_row(x: &[f32], out: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0f32;
    for (o, v) in out.iter_mut().zip(x) {
        let e = (v - m).exp();
        *o = e;
        s += e;
    }
    for o in out.iter_mut() {
        *o /= s;
    }
}

impl Backend for CpuBackend {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        let threads = rayon::current_num_threads();
        format!("CPU reference backend ({threads} threads)")
    }

    fn completes_synchronously(&self) -> bool {
        true
    }

    fn alloc(&self, bytes: u64) -> Result<BufferId, GpuError> {
        let elems = usize::try_from(bytes.div_ceil(4))
            .map_err(|_| GpuError::InvalidArgument(format!("{bytes} bytes is too large")))?;
        let mut data = Vec::new();
        data.try_reserve_exact(elems).map_err(|e| {
            GpuError::Device(format!("host allocation of {bytes} bytes failed: {e}"))
        })?;
        data.resize(elems, 0f32);
        let id = BufferId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let buf = Arc::new(Mutex::new(CpuBuffer {
            data,
            len_bytes: bytes,
        }));
        self.buffers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, buf);
        Ok(id)
    }

    fn free(&self, buf: BufferId) {
        self.buffers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&buf);
    }

    fn write(&self, buf: BufferId, offset: u64, data: &[u8]) -> Result<(), GpuError> {
        let arc = self.get(buf)?;
        let mut guard = lock(&arc);
        let dst = byte_range(guard.bytes_mut(), offset, data.len())?;
        dst.copy_from_slice(data);
        Ok(())
    }

    fn read(&self, buf: BufferId, offset: u64, out: &mut [u8]) -> Result<(), GpuError> {
        let arc = self.get(buf)?;
        let guard = lock(&arc);
        let bytes = guard.bytes();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let src = start
            .checked_add(out.len())
            .and_then(|end| bytes.get(start..end))
            .ok_or_else(|| out_of_range(offset, out.len(), bytes.len()))?;
        out.copy_from_slice(src);
        Ok(())
    }

    fn load_module(&self, _ptx: &str, _key: &blake3::Hash) -> Result<KernelModule, GpuError> {
        // PTX is validated (signatures parsed) by the runtime; the CPU backend
        // keeps nothing, so guests can load kernels and fall back on launch.
        Ok(KernelModule(Arc::new(())))
    }

    fn launch(
        &self,
        _module: &KernelModule,
        _entry: &str,
        _dims: LaunchDims,
        _args: &[KernelArg],
    ) -> Result<(), GpuError> {
        Err(GpuError::NeedsCuda("launching a raw PTX kernel"))
    }

    fn vector_add(
        &self,
        a: BufferId,
        b: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError> {
        self.elementwise(&[a, b], out, n, |ins, out| {
            for ((o, x), y) in out.iter_mut().zip(ins[0]).zip(ins[1]) {
                *o = x + y;
            }
        })
    }

    fn saxpy(
        &self,
        alpha: f32,
        x: BufferId,
        y: BufferId,
        out: BufferId,
        n: usize,
    ) -> Result<(), GpuError> {
        self.elementwise(&[x, y], out, n, |ins, out| {
            for ((o, x), y) in out.iter_mut().zip(ins[0]).zip(ins[1]) {
                *o = alpha * x + y;
            }
        })
    }

    fn matmul(
        &self,
        a: BufferId,
        b: BufferId,
        c: BufferId,
        m: usize,
        k: usize,
        n: usize,
    ) -> Result<(), GpuError> {
        let dims = |x: usize, y: usize| {
            x.checked_mul(y)
                .ok_or_else(|| GpuError::InvalidArgument("matrix dimensions overflow".into()))
        };
        let (mk, kn, mn) = (dims(m, k)?, dims(k, n)?, dims(m, n)?);
        let strides = [m, k, n].iter().all(|d| isize::try_from(*d).is_ok());
        if !strides {
            return Err(GpuError::InvalidArgument(
                "matrix dimension too large".into(),
            ));
        }
        let cancel = CancelToken::current();
        // Row blocks of about 2^26 multiply-adds, and at least 64 rows: large
        // enough for sgemm's packing of `b` and its cache blocking to pay
        // off, small enough to notice a cancellation within a block.
        let rows_per_block = ((1usize << 26) / k.saturating_mul(n).max(1)).clamp(64, m.max(64));
        self.with_buffers(&[(a, mk), (b, kn)], (c, mn), |ins, c| {
            let (a, b) = (ins[0], ins[1]);
            let mut row = 0;
            while row < m && !cancel.is_cancelled() {
                let rows = rows_per_block.min(m - row);
                // SAFETY: `a` holds m·k, `b` k·n and `c` m·n f32s (checked by
                // `with_buffers`); rows `row..row+rows` of `a` (stride k) and
                // of `c` (stride n) lie inside them; the strides describe
                // dense row-major matrices; `c` does not alias `a` or `b`
                // (an aliasing output sees a private copy of the input).
                unsafe {
                    matrixmultiply::sgemm(
                        rows,
                        k,
                        n,
                        1.0,
                        a.as_ptr().add(row * k),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        c.as_mut_ptr().add(row * n),
                        n as isize,
                        1,
                    );
                }
                row += rows;
            }
        })?;
        cancel.check()
    }

    fn softmax(
        &self,
        x: BufferId,
        out: BufferId,
        rows: usize,
        cols: usize,
    ) -> Result<(), GpuError> {
        let total = rows
            .checked_mul(cols)
            .ok_or_else(|| GpuError::InvalidArgument("softmax dimensions overflow".into()))?;
        if cols == 0 {
            return Err(GpuError::InvalidArgument(
                "softmax with zero columns".into(),
            ));
        }
        let cancel = CancelToken::current();
        self.with_buffers(&[(x, total)], (out, total), |ins, out| {
            let x = ins[0];
            if total <= CHUNK {
                for (xr, or) in x.chunks(cols).zip(out.chunks_mut(cols)) {
                    softmax_row(xr, or);
                }
            } else {
                x.par_chunks(cols)
                    .zip(out.par_chunks_mut(cols))
                    .for_each(|(xr, or)| {
                        if !cancel.is_cancelled() {
                            softmax_row(xr, or);
                        }
                    });
            }
        })?;
        cancel.check()
    }

    fn sum(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        self.reduce(x, out, n, sum_lanes, |a, b| a + b, 0.0)
    }

    fn max(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        self.reduce(x, out, n, max_lanes, f32::max, f32::NEG_INFINITY)
    }

    fn relu(&self, x: BufferId, out: BufferId, n: usize) -> Result<(), GpuError> {
        self.elementwise(&[x], out, n, |ins, out| {
            for (o, v) in out.iter_mut().zip(ins[0]) {
                *o = v.max(0.0);
            }
        })
    }

    fn fence(&self) -> Result<Fence, GpuError> {
        Ok(Fence::ready())
    }
}

fn out_of_range(offset: u64, len: usize, size: usize) -> GpuError {
    GpuError::OutOfRange(format!(
        "{len} bytes at offset {offset} exceed buffer of {size} bytes"
    ))
}

fn byte_range(bytes: &mut [u8], offset: u64, len: usize) -> Result<&mut [u8], GpuError> {
    let size = bytes.len();
    let start = usize::try_from(offset).unwrap_or(usize::MAX);
    start
        .checked_add(len)
        .and_then(|end| bytes.get_mut(start..end))
        .ok_or_else(|| out_of_range(offset, len, size))
}
