//! GPU dispatch benchmarks on the CPU backend, each beside its baseline:
//!
//! - `dispatch_overhead`: 1000 trivial ops (relu of one element) issued from a
//!   guest through `tw_gpu_v1` vs the same backend calls made from Rust.
//! - `vector_add_1m`: 1M-element vector add from a guest (write a, write b,
//!   add, read out; and the op alone) vs native Rust on the same backend.
//! - `matmul`: GFLOP/s of the CPU backend's matmul from a guest and from Rust
//!   vs `matrixmultiply::sgemm` called natively.
//!
//! Run: `cargo bench -p tensor-wasm-gpu --bench gpu_dispatch -- --warm-up-time 1 --measurement-time 3`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use tensor_wasm_gpu::{CpuBackend, GpuQuotas, GpuRuntime, GpuSession, add_to_linker};
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, TypedFunc};

const GUEST: &str = r#"
(module
  (import "tw_gpu_v1" "buffer_create" (func $create (param i64 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_write" (func $write (param i32 i64 i32 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_read" (func $read (param i32 i64 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_relu" (func $relu (param i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_vector_add" (func $vadd (param i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_matmul" (func $matmul (param i32 i32 i32 i32 i32 i32) (result i32)))
  ;; a at 0, b at 4 MiB, out at 8 MiB (n <= 1Mi elements)
  (memory (export "memory") 200)
  (func (export "create") (param $size i64) (result i32)
    (drop (call $create (local.get $size) (i32.const 12582912)))
    (i32.load (i32.const 12582912)))
  (func (export "relu_loop") (param $h i32) (param $iters i32) (result i32)
    (local $rc i32)
    (block $done
      (loop $l
        (br_if $done (i32.eqz (local.get $iters)))
        (local.set $rc (call $relu (local.get $h) (local.get $h) (i32.const 1)))
        (br_if $done (local.get $rc))
        (local.set $iters (i32.sub (local.get $iters) (i32.const 1)))
        (br $l)))
    (local.get $rc))
  (func (export "vadd_full") (param $a i32) (param $b i32) (param $o i32) (param $n i32) (result i32)
    (local $bytes i32)
    (local.set $bytes (i32.mul (local.get $n) (i32.const 4)))
    (drop (call $write (local.get $a) (i64.const 0) (i32.const 0) (local.get $bytes)))
    (drop (call $write (local.get $b) (i64.const 0) (i32.const 4194304) (local.get $bytes)))
    (drop (call $vadd (local.get $a) (local.get $b) (local.get $o) (local.get $n)))
    (call $read (local.get $o) (i64.const 0) (i32.const 8388608) (local.get $bytes)))
  (func (export "vadd_op") (param $a i32) (param $b i32) (param $o i32) (param $n i32) (result i32)
    (call $vadd (local.get $a) (local.get $b) (local.get $o) (local.get $n)))
  (func (export "matmul") (param $a i32) (param $b i32) (param $c i32) (param $n i32) (result i32)
    (call $matmul (local.get $a) (local.get $b) (local.get $c) (local.get $n) (local.get $n) (local.get $n)))
)
"#;

struct BenchGuest {
    store: Store<GpuSession>,
    instance: Instance,
    tokio: tokio::runtime::Runtime,
}

impl BenchGuest {
    fn new(rt: Arc<GpuRuntime>) -> Self {
        let engine = Engine::new(&Config::new()).expect("engine");
        let module = Module::new(&engine, wat::parse_str(GUEST).expect("wat")).expect("module");
        let mut linker: Linker<GpuSession> = Linker::new(&engine);
        add_to_linker(&mut linker, |s: &mut GpuSession| s).expect("link");
        let mut store = Store::new(&engine, GpuSession::new(rt, "bench"));
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio");
        let instance = tokio
            .block_on(linker.instantiate_async(&mut store, &module))
            .expect("instantiate");
        BenchGuest {
            store,
            instance,
            tokio,
        }
    }

    fn func<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        &mut self,
        name: &str,
    ) -> TypedFunc<P, R> {
        self.instance
            .get_typed_func(&mut self.store, name)
            .expect("export")
    }

    fn create(&mut self, bytes: i64) -> i32 {
        let f = self.func::<i64, i32>("create");
        self.tokio
            .block_on(f.call_async(&mut self.store, bytes))
            .expect("create")
    }

    fn call4(
        &mut self,
        f: &TypedFunc<(i32, i32, i32, i32), i32>,
        args: (i32, i32, i32, i32),
    ) -> i32 {
        self.tokio
            .block_on(f.call_async(&mut self.store, args))
            .expect("call")
    }
}

fn cpu_runtime() -> Arc<GpuRuntime> {
    GpuRuntime::with_backend(
        Arc::new(CpuBackend::new()),
        GpuQuotas {
            max_device_memory_bytes_per_tenant: 1 << 32,
            max_concurrent_launches_per_tenant: 64,
        },
    )
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn dispatch_overhead(c: &mut Criterion) {
    const OPS: i32 = 1000;
    let mut g = c.benchmark_group("dispatch_overhead");
    g.throughput(Throughput::Elements(OPS as u64));
    let rt = cpu_runtime();
    let backend = rt.backend().clone();
    let id = backend.alloc(4).expect("alloc");
    g.bench_function("native_backend_relu_x1000", |b| {
        b.iter(|| {
            for _ in 0..OPS {
                backend.relu(black_box(id), id, 1).expect("relu");
            }
        })
    });
    let mut guest = BenchGuest::new(rt.clone());
    let h = guest.create(4);
    let relu_loop = guest.func::<(i32, i32), i32>("relu_loop");
    g.bench_function("guest_relu_x1000", |b| {
        b.iter(|| {
            let rc = guest
                .tokio
                .block_on(relu_loop.call_async(&mut guest.store, (h, OPS)))
                .expect("call");
            assert_eq!(rc, 0);
        })
    });
    g.finish();
}

fn vector_add_1m(c: &mut Criterion) {
    const N: usize = 1 << 20;
    let mut g = c.benchmark_group("vector_add_1m");
    g.throughput(Throughput::Elements(N as u64));
    let rt = cpu_runtime();
    let backend = rt.backend().clone();
    let a = bytes_of(&(0..N).map(|i| i as f32).collect::<Vec<_>>());
    let bv = bytes_of(&(0..N).map(|i| (2 * i) as f32).collect::<Vec<_>>());
    let mut out = vec![0u8; N * 4];
    let (ia, ib, io) = (
        backend.alloc(N as u64 * 4).expect("a"),
        backend.alloc(N as u64 * 4).expect("b"),
        backend.alloc(N as u64 * 4).expect("out"),
    );
    g.bench_function("native_write_add_read", |b| {
        b.iter(|| {
            backend.write(ia, 0, &a).expect("write");
            backend.write(ib, 0, &bv).expect("write");
            backend.vector_add(ia, ib, io, N).expect("add");
            backend.read(io, 0, &mut out).expect("read");
            black_box(&out);
        })
    });
    g.bench_function("native_add_only", |b| {
        b.iter(|| backend.vector_add(ia, ib, io, N).expect("add"))
    });

    let mut guest = BenchGuest::new(rt.clone());
    let mem = guest
        .instance
        .get_memory(&mut guest.store, "memory")
        .expect("memory");
    mem.write(&mut guest.store, 0, &a).expect("a");
    mem.write(&mut guest.store, 4 << 20, &bv).expect("b");
    let (ga, gb, go) = (
        guest.create(N as i64 * 4),
        guest.create(N as i64 * 4),
        guest.create(N as i64 * 4),
    );
    let full = guest.func::<(i32, i32, i32, i32), i32>("vadd_full");
    let op = guest.func::<(i32, i32, i32, i32), i32>("vadd_op");
    g.bench_function("guest_write_add_read", |b| {
        b.iter(|| assert_eq!(guest.call4(&full, (ga, gb, go, N as i32)), 0))
    });
    g.bench_function("guest_add_only", |b| {
        b.iter(|| assert_eq!(guest.call4(&op, (ga, gb, go, N as i32)), 0))
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    let rt = cpu_runtime();
    let backend = rt.backend().clone();
    for n in [256usize, 512] {
        g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
        let a: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.1).collect();
        let bm: Vec<f32> = (0..n * n).map(|i| (i % 7) as f32 * 0.1).collect();
        let mut cm = vec![0f32; n * n];
        g.bench_function(format!("matrixmultiply_native_{n}"), |b| {
            b.iter(|| {
                // SAFETY: a, bm, cm are dense n×n row-major matrices.
                unsafe {
                    matrixmultiply::sgemm(
                        n,
                        n,
                        n,
                        1.0,
                        a.as_ptr(),
                        n as isize,
                        1,
                        bm.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        cm.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                };
                black_box(&cm);
            })
        });
        let bytes = (n * n * 4) as u64;
        let (ia, ib, ic) = (
            backend.alloc(bytes).expect("a"),
            backend.alloc(bytes).expect("b"),
            backend.alloc(bytes).expect("c"),
        );
        backend.write(ia, 0, &bytes_of(&a)).expect("a");
        backend.write(ib, 0, &bytes_of(&bm)).expect("b");
        g.bench_function(format!("cpu_backend_native_{n}"), |b| {
            b.iter(|| backend.matmul(ia, ib, ic, n, n, n).expect("matmul"))
        });
        let mut guest = BenchGuest::new(rt.clone());
        let (ga, gb, gc) = (
            guest.create(bytes as i64),
            guest.create(bytes as i64),
            guest.create(bytes as i64),
        );
        let f = guest.func::<(i32, i32, i32, i32), i32>("matmul");
        g.bench_function(format!("cpu_backend_guest_{n}"), |b| {
            b.iter(|| assert_eq!(guest.call4(&f, (ga, gb, gc, n as i32)), 0))
        });
    }
    g.finish();
}

criterion_group!(benches, dispatch_overhead, vector_add_1m, matmul);
criterion_main!(benches);
