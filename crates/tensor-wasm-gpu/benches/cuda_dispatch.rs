//! CUDA figures beside native baselines, for a GPU machine
//! (`scripts/gpu-verify.sh` runs it there; without a device it prints why it
//! skipped and exits 0):
//!
//! - launch + synchronise of the saxpy PTX kernel (n = 4096): a Wasm guest
//!   through `tw_gpu_v1` (`kernel_launch`, `synchronize`) vs the same kernel
//!   launched with cudarc directly;
//! - sgemm 4096³: the guest's `op_matmul` (cuBLAS in the backend) vs cuBLAS
//!   called directly, in GFLOP/s.
//!
//! Plain timing loops (median of rounds), not criterion: the binary must run
//! on a machine without Rust and finish in seconds.

use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, DevicePtr, LaunchConfig, PushKernelArg};
use tensor_wasm_gpu::{CudaBackend, GpuQuotas, GpuRuntime, GpuSession, add_to_linker};
use wasmtime::{Config, Engine, Linker, Module, Store, TypedFunc};

const SAXPY_PTX: &str = include_str!("../../../guests/examples/ptx-saxpy/src/saxpy.ptx");
const N: u32 = 4096;
const LAUNCHES: i32 = 2000;
const ROUNDS: usize = 5;
const GEMM: usize = 4096;

const GUEST: &str = r#"
(module
  (import "tw_gpu_v1" "buffer_create" (func $create (param i64 i32) (result i32)))
  (import "tw_gpu_v1" "kernel_load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "kernel_launch" (func $launch (param i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "synchronize" (func $sync (result i32)))
  (import "tw_gpu_v1" "op_matmul" (func $matmul (param i32 i32 i32 i32 i32 i32) (result i32)))
  ;; 0: out handle; 16: entry name; 64: launch record; 128: 4 argument records; 4096: PTX
  (memory (export "memory") 4)
  (func (export "create") (param i64) (result i32)
    (drop (call $create (local.get 0) (i32.const 0)))
    (i32.load (i32.const 0)))
  (func (export "load") (param $len i32) (result i32)
    (local $rc i32)
    (local.set $rc (call $load (i32.const 4096) (local.get $len) (i32.const 16) (i32.const 5) (i32.const 0)))
    (if (result i32) (local.get $rc) (then (local.get $rc)) (else (i32.load (i32.const 0)))))
  (func (export "launch_sync") (param $k i32) (param $iters i32) (result i32)
    (local $rc i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $iters)))
        (local.set $rc (call $launch (local.get $k) (i32.const 64) (i32.const 128) (i32.const 4)))
        (br_if $done (local.get $rc))
        (local.set $rc (call $sync))
        (br_if $done (local.get $rc))
        (local.set $iters (i32.sub (local.get $iters) (i32.const 1)))
        (br $l)))
    (local.get $rc))
  (func (export "matmul_sync") (param $a i32) (param $b i32) (param $c i32) (param $n i32) (result i32)
    (local $rc i32)
    (local.set $rc (call $matmul (local.get $a) (local.get $b) (local.get $c) (local.get $n) (local.get $n) (local.get $n)))
    (if (result i32) (local.get $rc) (then (local.get $rc)) (else (call $sync)))))
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn record(tag: u32, payload: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(16);
    r.extend_from_slice(&tag.to_le_bytes());
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&payload.to_le_bytes());
    r
}

fn main() {
    let backend = match CudaBackend::new(0, None) {
        Ok(b) => b,
        Err(e) => {
            println!("SKIPPED cuda_dispatch: no CUDA device ({e})");
            return;
        }
    };
    println!(
        "device: {} (cuBLAS: {})",
        tensor_wasm_gpu::Backend::device_name(&backend),
        backend.uses_cublas()
    );
    let (guest_launch_us, guest_gflops) = guest_figures(backend);
    let (native_launch_us, native_gflops) = native_figures();
    println!();
    println!("| case | native (cudarc / cuBLAS) | guest (tw_gpu_v1) | guest / native |");
    println!("|---|---:|---:|---:|");
    println!(
        "| saxpy n={N} launch + synchronize | {native_launch_us:.2} µs | {guest_launch_us:.2} µs | {:.2}x |",
        guest_launch_us / native_launch_us
    );
    println!(
        "| sgemm {GEMM}³ | {native_gflops:.0} GFLOP/s | {guest_gflops:.0} GFLOP/s | {:.2}x |",
        guest_gflops / native_gflops
    );
}

fn guest_figures(backend: CudaBackend) -> (f64, f64) {
    let rt = GpuRuntime::with_backend(
        Arc::new(backend),
        GpuQuotas {
            max_device_memory_bytes_per_tenant: 1 << 32,
            max_concurrent_launches_per_tenant: 64,
        },
    );
    rt.allow_raw_ptx(["bench".to_owned()]);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let engine = Engine::new(&Config::new()).expect("engine");
    let module = Module::new(&engine, wat::parse_str(GUEST).expect("wat")).expect("module");
    let mut linker: Linker<GpuSession> = Linker::new(&engine);
    add_to_linker(&mut linker, |s: &mut GpuSession| s).expect("link");
    let mut store = Store::new(&engine, GpuSession::new(rt, "bench"));
    let instance = tokio
        .block_on(linker.instantiate_async(&mut store, &module))
        .expect("instantiate");
    let memory = instance
        .get_memory(&mut store, "memory")
        .expect("memory export");
    let create: TypedFunc<i64, i32> = instance.get_typed_func(&mut store, "create").unwrap();
    let load: TypedFunc<i32, i32> = instance.get_typed_func(&mut store, "load").unwrap();
    let launch: TypedFunc<(i32, i32), i32> =
        instance.get_typed_func(&mut store, "launch_sync").unwrap();
    let matmul: TypedFunc<(i32, i32, i32, i32), i32> =
        instance.get_typed_func(&mut store, "matmul_sync").unwrap();

    let call1 = |f: &TypedFunc<i64, i32>, store: &mut Store<GpuSession>, v: i64| {
        tokio.block_on(f.call_async(&mut *store, v)).expect("call")
    };
    let x = call1(&create, &mut store, i64::from(N) * 4);
    let y = call1(&create, &mut store, i64::from(N) * 4);
    memory.write(&mut store, 16, b"saxpy").unwrap();
    memory
        .write(&mut store, 4096, SAXPY_PTX.as_bytes())
        .unwrap();
    let k = tokio
        .block_on(load.call_async(&mut store, SAXPY_PTX.len() as i32))
        .expect("load");
    assert!(k > 0, "kernel_load failed with {k}");
    let mut launch_record = Vec::new();
    for v in [N.div_ceil(256), 1, 1, 256, 1, 1, 0] {
        launch_record.extend_from_slice(&v.to_le_bytes());
    }
    memory.write(&mut store, 64, &launch_record).unwrap();
    let args = [
        record(1, x as u64),
        record(1, y as u64),
        record(6, u64::from(2.0f32.to_bits())),
        record(3, u64::from(N)),
    ]
    .concat();
    memory.write(&mut store, 128, &args).unwrap();
    // Warm-up, then rounds.
    let rc = tokio
        .block_on(launch.call_async(&mut store, (k, 100)))
        .unwrap();
    assert_eq!(rc, 0, "guest launch failed with {rc}");
    let mut per_launch = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        tokio
            .block_on(launch.call_async(&mut store, (k, LAUNCHES)))
            .unwrap();
        per_launch.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(LAUNCHES));
    }

    let bytes = (GEMM * GEMM * 4) as i64;
    let (a, b, c) = (
        call1(&create, &mut store, bytes),
        call1(&create, &mut store, bytes),
        call1(&create, &mut store, bytes),
    );
    let n = GEMM as i32;
    tokio
        .block_on(matmul.call_async(&mut store, (a, b, c, n)))
        .unwrap();
    let mut gflops = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let rc = tokio
            .block_on(matmul.call_async(&mut store, (a, b, c, n)))
            .unwrap();
        assert_eq!(rc, 0, "guest matmul failed with {rc}");
        gflops.push(2.0 * (GEMM as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9);
    }
    (median(per_launch), median(gflops))
}

fn native_figures() -> (f64, f64) {
    let ctx = CudaContext::new(0).expect("context");
    let stream = ctx.default_stream();
    let module = ctx
        .load_module(cudarc::nvrtc::Ptx::from_src(SAXPY_PTX))
        .expect("module");
    let f = module.load_function("saxpy").expect("function");
    let x = stream.alloc_zeros::<f32>(N as usize).expect("alloc");
    let y = stream.alloc_zeros::<f32>(N as usize).expect("alloc");
    let cfg = LaunchConfig {
        grid_dim: (N.div_ceil(256), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let alpha = 2.0f32;
    let launch_sync = || {
        let mut b = stream.launch_builder(&f);
        b.arg(&x).arg(&y).arg(&alpha).arg(&N);
        // SAFETY: saxpy(x, y, alpha, n) over two live n-element buffers.
        unsafe { b.launch(cfg) }.expect("launch");
        stream.synchronize().expect("sync");
    };
    for _ in 0..100 {
        launch_sync();
    }
    let mut per_launch = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..LAUNCHES {
            launch_sync();
        }
        per_launch.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(LAUNCHES));
    }

    let blas = cudarc::cublas::CudaBlas::new(stream.clone()).expect("cuBLAS");
    let a = stream.alloc_zeros::<f32>(GEMM * GEMM).expect("alloc");
    let b = stream.alloc_zeros::<f32>(GEMM * GEMM).expect("alloc");
    let c = stream.alloc_zeros::<f32>(GEMM * GEMM).expect("alloc");
    let (ap, _sa) = a.device_ptr(&stream);
    let (bp, _sb) = b.device_ptr(&stream);
    let (cp, _sc) = c.device_ptr(&stream);
    let n = GEMM as i32;
    let sgemm = || {
        let (one, zero) = (1.0f32, 0.0f32);
        // SAFETY: three live n×n f32 device matrices; the handle is bound
        // to `stream`.
        unsafe {
            cudarc::cublas::result::sgemm(
                *blas.handle(),
                cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_N,
                n,
                n,
                n,
                &one,
                bp as *const f32,
                n,
                ap as *const f32,
                n,
                &zero,
                cp as *mut f32,
                n,
            )
        }
        .expect("sgemm");
        stream.synchronize().expect("sync");
    };
    sgemm();
    let mut gflops = Vec::new();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        sgemm();
        gflops.push(2.0 * (GEMM as f64).powi(3) / t.elapsed().as_secs_f64() / 1e9);
    }
    (median(per_launch), median(gflops))
}
