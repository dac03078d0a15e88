//! The `tw_gpu_v1` import module: guest-facing functions over a [`GpuSession`].
//!
//! Every guest pointer/length pair goes through [`guest_range`], the one
//! bounds check; every function returns an `i32` code (0 or a negative
//! `abi::ERR_*`) and writes results through out-pointers, which are checked
//! before any side effect happens.
//!
//! Short calls are `func_wrap` host functions. Calls that may wait for the
//! device or run long CPU work (`op_*`, `kernel_load`, `kernel_launch`,
//! `synchronize`, `buffer_read`, `buffer_write`) are `func_wrap_async`. On a
//! device backend the driver calls that wait — PTX JIT, host↔device copies,
//! fence waits — run on tokio's blocking pool, so the invocation's deadline
//! can still cancel the call; launches and built-in ops only enqueue work and
//! stay inline, as do `buffer_create`/`buffer_free` (allocation and
//! stream-ordered free), which the driver answers without waiting for the
//! device in the common case.

use crate::abi;
use crate::backend::LaunchDims;
use crate::error::GpuError;
use crate::session::{ArgValue, GpuSession, Op, off_executor};
use std::ops::Range;
use std::time::Instant;
use wasmtime::{Caller, Extern, Linker, Memory};

/// Accessor from the store's data to the instance's session: a plain
/// function or a closure that captures only `Copy` data (such as the engine's
/// [`tensor_wasm_exec::HostSlot`]), so host calls copy it for free.
pub trait SessionGetter<T>: Fn(&mut T) -> &mut GpuSession + Copy + Send + Sync + 'static {}

impl<T, G: Fn(&mut T) -> &mut GpuSession + Copy + Send + Sync + 'static> SessionGetter<T> for G {}

/// THE bounds check: `ptr..ptr+len` (both unsigned) must lie inside a linear
/// memory of `mem_len` bytes.
pub(crate) fn guest_range(mem_len: usize, ptr: i32, len: u64) -> Result<Range<usize>, GpuError> {
    let start = ptr as u32 as u64;
    match start.checked_add(len) {
        Some(end) if end <= mem_len as u64 => Ok(start as usize..end as usize),
        _ => Err(GpuError::InvalidPointer {
            ptr: ptr as u32,
            len,
        }),
    }
}

fn memory<T>(caller: &mut Caller<'_, T>) -> Result<Memory, GpuError> {
    match caller.get_export("memory") {
        Some(Extern::Memory(m)) => Ok(m),
        _ => Err(GpuError::NoMemoryExport),
    }
}

fn u32_at(mem: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&mem[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(mem: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&mem[at..at + 8]);
    u64::from_le_bytes(b)
}

/// Stores `result`'s error in the session (for `last_error`, and logged at
/// debug) and turns it into the guest's code.
fn record<R>(session: &mut GpuSession, result: Result<R, GpuError>) -> Result<R, i32> {
    session.record(result).map_err(|e| {
        tracing::debug!(tenant = session.tenant(), error = %e, "GPU host call failed");
        e.code()
    })
}

/// [`record`] for a call that returns only a code.
fn finish(session: &mut GpuSession, result: Result<(), GpuError>) -> i32 {
    record(session, result).map_or_else(|code| code, |()| abi::OK)
}

/// Runs `f` with the caller's memory and session; maps the outcome to a code.
fn with_memory<T>(
    caller: &mut Caller<'_, T>,
    get: impl SessionGetter<T>,
    f: impl FnOnce(&mut [u8], &mut GpuSession) -> Result<(), GpuError>,
) -> i32 {
    with_memory_value(caller, get, f).map_or_else(|code| code, |()| abi::OK)
}

/// Runs `f` with the caller's memory and session for a step that produces a
/// value; an error is recorded and comes back as the guest's code.
fn with_memory_value<T, R>(
    caller: &mut Caller<'_, T>,
    get: impl SessionGetter<T>,
    f: impl FnOnce(&mut [u8], &mut GpuSession) -> Result<R, GpuError>,
) -> Result<R, i32> {
    match memory(caller) {
        Ok(mem) => {
            let (data, state) = mem.data_and_store_mut(caller);
            let session = get(state);
            let r = f(data, session);
            record(session, r)
        }
        Err(e) => record(get(caller.data_mut()), Err(e)),
    }
}

/// True when the backend finishes every call before returning (CPU): its
/// copies then run inline, without a hop to the blocking pool.
fn synchronous<T>(caller: &mut Caller<'_, T>, get: impl SessionGetter<T>) -> bool {
    get(caller.data_mut())
        .runtime()
        .backend()
        .completes_synchronously()
}

fn decode_dims(mem: &[u8], ptr: i32) -> Result<LaunchDims, GpuError> {
    let r = guest_range(mem.len(), ptr, abi::LAUNCH_RECORD_SIZE as u64)?;
    let w = |i: usize| u32_at(mem, r.start + 4 * i);
    Ok(LaunchDims {
        grid: [w(0), w(1), w(2)],
        block: [w(3), w(4), w(5)],
        shared_mem_bytes: w(6),
    })
}

fn decode_args(mem: &[u8], ptr: i32, count: i32) -> Result<Vec<ArgValue>, GpuError> {
    let count = count as u32;
    if count > abi::MAX_KERNEL_ARGS {
        return Err(GpuError::ArgMismatch(format!(
            "{count} arguments exceed the limit of {}",
            abi::MAX_KERNEL_ARGS
        )));
    }
    let r = guest_range(mem.len(), ptr, count as u64 * abi::ARG_RECORD_SIZE as u64)?;
    let mut args = Vec::with_capacity(count as usize);
    for i in 0..count as usize {
        let at = r.start + i * abi::ARG_RECORD_SIZE as usize;
        let (tag, reserved, payload) = (u32_at(mem, at), u32_at(mem, at + 4), u64_at(mem, at + 8));
        if reserved != 0 {
            return Err(GpuError::InvalidArgument(format!(
                "argument {i}: reserved field must be 0"
            )));
        }
        let low = payload as u32;
        let narrow = |v: ArgValue| {
            if payload >> 32 == 0 {
                Ok(v)
            } else {
                Err(GpuError::InvalidArgument(format!(
                    "argument {i}: 32-bit value with non-zero upper payload bits"
                )))
            }
        };
        args.push(match tag {
            abi::ARG_BUFFER => narrow(ArgValue::Buffer(low))?,
            abi::ARG_I32 => narrow(ArgValue::I32(low as i32))?,
            abi::ARG_U32 => narrow(ArgValue::U32(low))?,
            abi::ARG_I64 => ArgValue::I64(payload as i64),
            abi::ARG_U64 => ArgValue::U64(payload),
            abi::ARG_F32 => narrow(ArgValue::F32(f32::from_bits(low)))?,
            abi::ARG_F64 => ArgValue::F64(f64::from_bits(payload)),
            other => {
                return Err(GpuError::ArgMismatch(format!(
                    "argument {i}: unknown type tag {other}"
                )));
            }
        });
    }
    Ok(args)
}

fn utf8<'a>(mem: &'a [u8], ptr: i32, len: i32, what: &str) -> Result<&'a str, GpuError> {
    let r = guest_range(mem.len(), ptr, len as u32 as u64)?;
    std::str::from_utf8(&mem[r])
        .map_err(|_| GpuError::InvalidArgument(format!("{what} is not UTF-8")))
}

fn observe(session: &GpuSession, op: &'static str, started: Instant) {
    session
        .runtime()
        .metrics
        .observe_dispatch(op, started.elapsed());
}

/// Defines the `tw_gpu_v1` import module in `linker`. `get` maps the store's
/// data to the instance's [`GpuSession`] (see [`SessionGetter`]); the engine
/// wires it through [`crate::GpuHost`] instead.
pub fn add_to_linker<T, G>(linker: &mut Linker<T>, get: G) -> wasmtime::Result<()>
where
    T: Send + 'static,
    G: Fn(&mut T) -> &mut GpuSession + Copy + Send + Sync + 'static,
{
    let m = abi::MODULE;

    linker.func_wrap(m, "abi_version", || -> i32 { abi::ABI_VERSION })?;

    linker.func_wrap(m, "backend_kind", move |mut caller: Caller<'_, T>| -> i32 {
        match get(caller.data_mut()).runtime().backend_name() {
            "cuda" => 1,
            _ => 0,
        }
    })?;

    linker.func_wrap(
        m,
        "last_error",
        move |mut caller: Caller<'_, T>, ptr: i32, cap: i32, out_len_ptr: i32| -> i32 {
            let Ok(mem) = memory(&mut caller) else {
                return abi::ERR_NO_MEMORY;
            };
            let (data, state) = mem.data_and_store_mut(&mut caller);
            let msg = get(state).last_error().as_bytes();
            let (Ok(dst), Ok(len_at)) = (
                guest_range(data.len(), ptr, cap as u32 as u64),
                guest_range(data.len(), out_len_ptr, 4),
            ) else {
                return abi::ERR_INVALID_POINTER;
            };
            let n = msg.len().min(dst.len());
            let full_len = msg.len() as u32;
            let head = msg[..n].to_vec();
            data[dst.start..dst.start + n].copy_from_slice(&head);
            data[len_at].copy_from_slice(&full_len.to_le_bytes());
            abi::OK
        },
    )?;

    linker.func_wrap(
        m,
        "buffer_create",
        move |mut caller: Caller<'_, T>, size: i64, out_handle_ptr: i32| -> i32 {
            let started = Instant::now();
            with_memory(&mut caller, get, |mem, s| {
                let out = guest_range(mem.len(), out_handle_ptr, 4)?;
                let h = s.create_buffer(size as u64)?;
                mem[out].copy_from_slice(&h.to_le_bytes());
                observe(s, "buffer_create", started);
                Ok(())
            })
        },
    )?;

    linker.func_wrap(
        m,
        "buffer_free",
        move |mut caller: Caller<'_, T>, handle: i32| -> i32 {
            let s = get(caller.data_mut());
            let r = s.free_buffer(handle as u32);
            finish(s, r)
        },
    )?;

    linker.func_wrap(
        m,
        "buffer_size",
        move |mut caller: Caller<'_, T>, handle: i32, out_size_ptr: i32| -> i32 {
            with_memory(&mut caller, get, |mem, s| {
                let out = guest_range(mem.len(), out_size_ptr, 8)?;
                let size = s.buffer_size(handle as u32)?;
                mem[out].copy_from_slice(&size.to_le_bytes());
                Ok(())
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "buffer_write",
        move |mut caller: Caller<'_, T>, (handle, offset, src, len): (i32, i64, i32, i32)| {
            Box::new(async move {
                let started = Instant::now();
                if synchronous(&mut caller, get) {
                    return with_memory(&mut caller, get, |mem, s| {
                        let r = guest_range(mem.len(), src, len as u32 as u64)?;
                        s.write_buffer(handle as u32, offset as u64, &mem[r])?;
                        observe(s, "buffer_write", started);
                        Ok(())
                    });
                }
                // A device copy blocks on the driver: take the bytes out of
                // guest memory and copy on the blocking pool.
                let job = with_memory_value(&mut caller, get, |mem, s| {
                    let r = guest_range(mem.len(), src, len as u32 as u64)?;
                    let id = s.copy_target(handle as u32, offset as u64, r.len() as u64)?;
                    Ok((id, mem[r].to_vec(), s.runtime().clone()))
                });
                let (id, bytes, rt) = match job {
                    Ok(job) => job,
                    Err(code) => return code,
                };
                let n = bytes.len() as u64;
                let backend = rt.clone();
                let r = off_executor(&rt, move || {
                    backend.backend().write(id, offset as u64, &bytes)
                })
                .await;
                let s = get(caller.data_mut());
                if r.is_ok() {
                    s.count_bytes("h2d", n);
                    observe(s, "buffer_write", started);
                }
                finish(s, r)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "buffer_read",
        move |mut caller: Caller<'_, T>, (handle, offset, dst, len): (i32, i64, i32, i32)| {
            Box::new(async move {
                let started = Instant::now();
                // Wait for queued device work without blocking the executor;
                // the copy itself then finds the stream idle.
                let fence = get(caller.data_mut()).runtime().backend().fence();
                let waited = match fence {
                    Ok(f) => f.wait().await,
                    Err(e) => Err(e),
                };
                if let Err(e) = waited {
                    return finish(get(caller.data_mut()), Err(e));
                }
                if synchronous(&mut caller, get) {
                    return with_memory(&mut caller, get, |mem, s| {
                        let r = guest_range(mem.len(), dst, len as u32 as u64)?;
                        s.read_buffer(handle as u32, offset as u64, &mut mem[r])?;
                        observe(s, "buffer_read", started);
                        Ok(())
                    });
                }
                // Device copy on the blocking pool into a host vector, then
                // into guest memory (checked again: the guest may not have
                // grown or shrunk in between, but the check is the rule).
                let job = with_memory_value(&mut caller, get, |mem, s| {
                    let r = guest_range(mem.len(), dst, len as u32 as u64)?;
                    let id = s.copy_target(handle as u32, offset as u64, r.len() as u64)?;
                    Ok((id, r.len(), s.runtime().clone()))
                });
                let (id, n, rt) = match job {
                    Ok(job) => job,
                    Err(code) => return code,
                };
                let backend = rt.clone();
                let copied = off_executor(&rt, move || {
                    let mut out = vec![0u8; n];
                    backend.backend().read(id, offset as u64, &mut out)?;
                    Ok(out)
                })
                .await;
                let bytes = match copied {
                    Ok(b) => b,
                    Err(e) => return finish(get(caller.data_mut()), Err(e)),
                };
                with_memory(&mut caller, get, |mem, s| {
                    let r = guest_range(mem.len(), dst, bytes.len() as u64)?;
                    mem[r].copy_from_slice(&bytes);
                    s.count_bytes("d2h", bytes.len() as u64);
                    s.settle_after_read();
                    observe(s, "buffer_read", started);
                    Ok(())
                })
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "kernel_load",
        move |mut caller: Caller<'_, T>,
              (ptx_ptr, ptx_len, entry_ptr, entry_len, out_handle_ptr): (
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let started = Instant::now();
                let args = with_memory_value(&mut caller, get, |mem, _| {
                    if ptx_len as u32 > abi::MAX_PTX_BYTES {
                        return Err(GpuError::InvalidArgument(format!(
                            "PTX of {} bytes exceeds {} bytes",
                            ptx_len as u32,
                            abi::MAX_PTX_BYTES
                        )));
                    }
                    guest_range(mem.len(), out_handle_ptr, 4)?;
                    let ptx = utf8(mem, ptx_ptr, ptx_len, "PTX")?.to_owned();
                    let entry = utf8(mem, entry_ptr, entry_len, "entry name")?.to_owned();
                    Ok((ptx, entry))
                });
                let (ptx, entry) = match args {
                    Ok(a) => a,
                    Err(code) => return code,
                };
                // The driver's JIT can take long: off the executor threads.
                let loaded = get(caller.data_mut()).load_kernel_async(ptx, &entry).await;
                let h = match loaded {
                    Ok(h) => h,
                    Err(e) => return finish(get(caller.data_mut()), Err(e)),
                };
                with_memory(&mut caller, get, |mem, s| {
                    let out = guest_range(mem.len(), out_handle_ptr, 4)?;
                    mem[out].copy_from_slice(&h.to_le_bytes());
                    observe(s, "kernel_load", started);
                    Ok(())
                })
            })
        },
    )?;

    linker.func_wrap(
        m,
        "kernel_free",
        move |mut caller: Caller<'_, T>, handle: i32| -> i32 {
            let s = get(caller.data_mut());
            let r = s.free_kernel(handle as u32);
            finish(s, r)
        },
    )?;

    linker.func_wrap_async(
        m,
        "kernel_launch",
        move |mut caller: Caller<'_, T>,
              (kernel, launch_ptr, args_ptr, args_len): (i32, i32, i32, i32)| {
            Box::new(async move {
                with_memory(&mut caller, get, |mem, s| {
                    let dims = decode_dims(mem, launch_ptr)?;
                    let args = decode_args(mem, args_ptr, args_len)?;
                    s.launch(kernel as u32, dims, &args)
                })
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "synchronize",
        move |mut caller: Caller<'_, T>, (): ()| {
            Box::new(async move {
                let s = get(caller.data_mut());
                let r = s.synchronize().await;
                finish(s, r)
            })
        },
    )?;

    define_op(
        linker,
        get,
        "op_vector_add",
        |(a, b, out, n): (i32, i32, i32, i32)| Op::VectorAdd {
            a: a as u32,
            b: b as u32,
            out: out as u32,
            n: n as u32,
        },
    )?;
    define_op(
        linker,
        get,
        "op_saxpy",
        |(alpha, x, y, out, n): (f32, i32, i32, i32, i32)| Op::Saxpy {
            alpha,
            x: x as u32,
            y: y as u32,
            out: out as u32,
            n: n as u32,
        },
    )?;
    define_op(
        linker,
        get,
        "op_matmul",
        |(a, b, c, mm, k, n): (i32, i32, i32, i32, i32, i32)| Op::MatMul {
            a: a as u32,
            b: b as u32,
            c: c as u32,
            m: mm as u32,
            k: k as u32,
            n: n as u32,
        },
    )?;
    define_op(
        linker,
        get,
        "op_softmax",
        |(x, out, rows, cols): (i32, i32, i32, i32)| Op::Softmax {
            x: x as u32,
            out: out as u32,
            rows: rows as u32,
            cols: cols as u32,
        },
    )?;
    define_op(linker, get, "op_sum", |(x, out, n): (i32, i32, i32)| {
        Op::Sum {
            x: x as u32,
            out: out as u32,
            n: n as u32,
        }
    })?;
    define_op(linker, get, "op_max", |(x, out, n): (i32, i32, i32)| {
        Op::Max {
            x: x as u32,
            out: out as u32,
            n: n as u32,
        }
    })?;
    define_op(linker, get, "op_relu", |(x, out, n): (i32, i32, i32)| {
        Op::Relu {
            x: x as u32,
            out: out as u32,
            n: n as u32,
        }
    })?;
    Ok(())
}

fn define_op<T: Send + 'static, P: wasmtime::WasmTyList + Send + 'static>(
    linker: &mut Linker<T>,
    get: impl SessionGetter<T>,
    name: &str,
    make: fn(P) -> Op,
) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        abi::MODULE,
        name,
        move |mut caller: Caller<'_, T>, params: P| {
            let op = make(params);
            Box::new(async move {
                let s = get(caller.data_mut());
                let r = s.run_op(op).await;
                finish(s, r)
            })
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::guest_range;

    #[test]
    fn guest_range_rejects_overflow_and_out_of_bounds() {
        assert_eq!(guest_range(100, 0, 100).unwrap(), 0..100);
        assert_eq!(guest_range(100, 100, 0).unwrap(), 100..100);
        assert!(guest_range(100, 1, 100).is_err());
        assert!(guest_range(100, -1, 2).is_err());
        assert!(guest_range(usize::MAX, -1, u64::MAX).is_err());
    }
}
