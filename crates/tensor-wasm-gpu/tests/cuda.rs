//! CUDA backend tests. Always compiled; each skips with a printed reason when
//! no CUDA device opens (no driver library, no device), so the suite passes on
//! machines without a GPU. On a GPU machine they compare against the CPU backend.

mod support;

use std::sync::Arc;
use support::{Guest, SAXPY_PTX, arg, engine, launch_record};
use tensor_wasm_gpu::abi::*;
use tensor_wasm_gpu::{Backend, BufferId, CpuBackend, CudaBackend, GpuQuotas, GpuRuntime};
use wasmtime::Val;

fn cuda_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::new(0, None) {
        Ok(b) => Some(b),
        Err(e) => {
            skip(test, &e.to_string());
            None
        }
    }
}

/// Prints the skip reason past the test harness's output capture (which only
/// intercepts the `print!` family), so `cargo test` shows it.
fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no CUDA device ({reason})"
    );
}

fn upload(b: &dyn Backend, v: &[f32]) -> BufferId {
    let id = b.alloc((v.len() * 4) as u64).unwrap();
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    b.write(id, 0, &bytes).unwrap();
    id
}

fn download(b: &dyn Backend, id: BufferId, n: usize) -> Vec<f32> {
    let mut bytes = vec![0u8; n * 4];
    b.synchronize().unwrap();
    b.read(id, 0, &mut bytes).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 20000) as f32 / 1000.0 - 10.0
        })
        .collect()
}

#[test]
fn probing_without_a_driver_never_panics() {
    // Whatever the machine, probing and opening return a value.
    let _ = CudaBackend::probe();
    let _ = CudaBackend::cublas_present();
    let _ = CudaBackend::new(0, None);
    let auto = GpuRuntime::new(Default::default()).expect("auto always opens a backend");
    assert!(["cuda", "cpu"].contains(&auto.backend_name()));
}

#[test]
fn cuda_builtin_ops_agree_with_the_cpu_backend() {
    let Some(gpu) = cuda_or_skip("cuda_builtin_ops_agree_with_the_cpu_backend") else {
        return;
    };
    println!(
        "device: {} (cuBLAS: {})",
        gpu.device_name(),
        gpu.uses_cublas()
    );
    let cpu = CpuBackend::new();
    let n = 1_000_003;
    let (a, b) = (data(n, 1), data(n, 7));
    let run = |be: &dyn Backend| {
        let (ia, ib, out) = (
            upload(be, &a),
            upload(be, &b),
            be.alloc(n as u64 * 4).unwrap(),
        );
        be.vector_add(ia, ib, out, n).unwrap();
        let add = download(be, out, n);
        be.saxpy(1.5, ia, ib, out, n).unwrap();
        let saxpy = download(be, out, n);
        be.relu(ia, out, n).unwrap();
        let relu = download(be, out, n);
        be.sum(ia, out, n).unwrap();
        let sum = download(be, out, 1)[0];
        be.max(ia, out, n).unwrap();
        let max = download(be, out, 1)[0];
        (add, saxpy, relu, sum, max)
    };
    let g = run(&gpu);
    let c = run(&cpu);
    assert_eq!(g.0, c.0, "vector_add is bit-for-bit");
    assert_eq!(g.1, c.1, "saxpy is bit-for-bit");
    assert_eq!(g.2, c.2, "relu is bit-for-bit");
    let abs: f32 = a.iter().map(|v| v.abs()).sum();
    assert!((g.3 - c.3).abs() <= 1e-5 * abs, "sum {} vs {}", g.3, c.3);
    assert_eq!(g.4, c.4, "max");

    let (rows, cols) = (300, 513);
    let x = data(rows * cols, 3);
    let soft = |be: &dyn Backend| {
        let (ix, out) = (upload(be, &x), be.alloc((rows * cols * 4) as u64).unwrap());
        be.softmax(ix, out, rows, cols).unwrap();
        download(be, out, rows * cols)
    };
    for (g, c) in soft(&gpu).iter().zip(soft(&cpu)) {
        assert!(
            (g - c).abs() <= 1e-5 * c.abs().max(1e-6) + 1e-7,
            "softmax {g} vs {c}"
        );
    }

    let (m, k, nn) = (257, 129, 191);
    let (ma, mb) = (data(m * k, 5), data(k * nn, 9));
    let mm = |be: &dyn Backend| {
        let (ia, ib, ic) = (
            upload(be, &ma),
            upload(be, &mb),
            be.alloc((m * nn * 4) as u64).unwrap(),
        );
        be.matmul(ia, ib, ic, m, k, nn).unwrap();
        download(be, ic, m * nn)
    };
    for (g, c) in mm(&gpu).iter().zip(mm(&cpu)) {
        assert!((g - c).abs() <= 1e-4 * (1.0 + c.abs()), "matmul {g} vs {c}");
    }
}

#[tokio::test]
async fn guest_launches_raw_ptx_on_cuda() {
    let Some(gpu) = cuda_or_skip("guest_launches_raw_ptx_on_cuda") else {
        return;
    };
    let rt = GpuRuntime::with_backend(Arc::new(gpu), GpuQuotas::default());
    rt.allow_raw_ptx(["t".to_owned()]);
    let engine = engine();
    let mut g = Guest::passthrough(&engine, rt, "t").await;
    assert_eq!(g.i32("backend_kind", &[]).await, 1);
    let n = 1000usize;
    let x = g.create(n as i64 * 4).await;
    let y = g.create(n as i64 * 4).await;
    let xs: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let ys = vec![1.0f32; n];
    g.write_f32s(8192, &xs);
    g.write_f32s(16384, &ys);
    for (h, at) in [(x, 8192), (y, 16384)] {
        let rc = g
            .i32(
                "buffer_write",
                &[
                    Val::I32(h as i32),
                    Val::I64(0),
                    Val::I32(at),
                    Val::I32(n as i32 * 4),
                ],
            )
            .await;
        assert_eq!(rc, OK);
    }
    g.write(100, b"saxpy");
    g.write(30000, SAXPY_PTX.as_bytes());
    let rc = g
        .i32(
            "kernel_load",
            &[
                Val::I32(30000),
                Val::I32(SAXPY_PTX.len() as i32),
                Val::I32(100),
                Val::I32(5),
                Val::I32(0),
            ],
        )
        .await;
    assert_eq!(rc, OK, "{}", g.last_error().await);
    let k = g.read_u32(0) as i32;
    g.write(
        200,
        &launch_record([(n as u32).div_ceil(256), 1, 1], [256, 1, 1], 0),
    );
    let records = [
        arg(ARG_BUFFER, x as u64),
        arg(ARG_BUFFER, y as u64),
        arg(ARG_F32, 2.0f32.to_bits() as u64),
        arg(ARG_U32, n as u64),
    ]
    .concat();
    g.write(300, &records);
    let rc = g
        .i32(
            "kernel_launch",
            &[Val::I32(k), Val::I32(200), Val::I32(300), Val::I32(4)],
        )
        .await;
    assert_eq!(rc, OK, "{}", g.last_error().await);
    assert_eq!(g.i32("synchronize", &[]).await, OK);
    let rc = g
        .i32(
            "buffer_read",
            &[
                Val::I32(y as i32),
                Val::I64(0),
                Val::I32(16384),
                Val::I32(n as i32 * 4),
            ],
        )
        .await;
    assert_eq!(rc, OK);
    let got = g.read_f32s(16384, n);
    for (i, v) in got.iter().enumerate() {
        assert_eq!(*v, 2.0 * i as f32 + 1.0);
    }
}

#[test]
fn cuda_kernel_cache_writes_cubins_to_the_cache_dir() {
    let dir = tempfile::tempdir().unwrap();
    let gpu = match CudaBackend::new(0, Some(dir.path().to_path_buf())) {
        Ok(gpu) => gpu,
        Err(e) => {
            return skip(
                "cuda_kernel_cache_writes_cubins_to_the_cache_dir",
                &e.to_string(),
            );
        }
    };
    let key = blake3::hash(SAXPY_PTX.as_bytes());
    gpu.load_module(SAXPY_PTX, &key).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(files.len(), 1, "one cubin cached");
    // Second load comes from the cache file.
    gpu.load_module(SAXPY_PTX, &key).unwrap();
    // A tampered entry is never handed to the driver: it is relinked and
    // rewritten, sealed again.
    let path = files[0].as_ref().unwrap().path();
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    gpu.load_module(SAXPY_PTX, &key).unwrap();
    assert_ne!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the tampered entry was replaced"
    );
}
