//! The `tw_gpu_v1` host interface seen from real (WAT) guests on the CPU
//! backend: bounds checks, handle isolation, argument checking, quotas,
//! cleanup after traps and deadlines, metrics.

mod support;

use support::{Guest, SAXPY_PTX, arg, cpu_runtime, engine, launch_record};
use tensor_wasm_gpu::abi::*;
use tensor_wasm_gpu::{GpuQuotas, Op};
use wasmtime::Val;

const PAGE: i32 = 65536;

#[tokio::test]
async fn abi_version_and_backend_kind_are_reported() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, cpu_runtime(GpuQuotas::default()), "t").await;
    assert_eq!(g.i32("abi_version", &[]).await, ABI_VERSION);
    assert_eq!(g.i32("backend_kind", &[]).await, 0);
}

#[tokio::test]
async fn out_of_range_pointers_are_rejected_without_side_effects() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, cpu_runtime(GpuQuotas::default()), "t").await;
    // Out-pointer past the end of memory: no buffer may be created.
    let rc = g
        .i32("buffer_create", &[Val::I64(64), Val::I32(PAGE - 2)])
        .await;
    assert_eq!(rc, ERR_INVALID_POINTER);
    assert_eq!(g.store.data().gpu.buffer_count(), 0);

    let h = g.create(64).await as i32;
    let cases: [(i32, i32); 4] = [(PAGE - 8, 16), (PAGE, 1), (-1, 4), (0, -1)];
    for (ptr, len) in cases {
        let w = g
            .i32(
                "buffer_write",
                &[Val::I32(h), Val::I64(0), Val::I32(ptr), Val::I32(len)],
            )
            .await;
        assert_eq!(w, ERR_INVALID_POINTER, "write ptr={ptr} len={len}");
        let r = g
            .i32(
                "buffer_read",
                &[Val::I32(h), Val::I64(0), Val::I32(ptr), Val::I32(len)],
            )
            .await;
        assert_eq!(r, ERR_INVALID_POINTER, "read ptr={ptr} len={len}");
    }
    // In bounds of memory but past the end of the buffer.
    let rc = g
        .i32(
            "buffer_write",
            &[Val::I32(h), Val::I64(60), Val::I32(0), Val::I32(8)],
        )
        .await;
    assert_eq!(rc, ERR_OUT_OF_RANGE);
    let rc = g
        .i32(
            "buffer_write",
            &[Val::I32(h), Val::I64(-1), Val::I32(0), Val::I32(1)],
        )
        .await;
    assert_eq!(rc, ERR_OUT_OF_RANGE);
    assert!(g.last_error().await.contains("exceed buffer"));
    // Launch and argument records outside memory.
    let rc = g
        .i32(
            "kernel_launch",
            &[Val::I32(1), Val::I32(PAGE - 4), Val::I32(0), Val::I32(0)],
        )
        .await;
    assert_eq!(rc, ERR_INVALID_POINTER);
}

#[tokio::test]
async fn freed_and_unknown_handles_are_rejected() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, cpu_runtime(GpuQuotas::default()), "t").await;
    let h = g.create(16).await as i32;
    assert_eq!(g.i32("buffer_free", &[Val::I32(h)]).await, OK);
    assert_eq!(
        g.i32("buffer_free", &[Val::I32(h)]).await,
        ERR_INVALID_HANDLE
    );
    let rc = g
        .i32(
            "buffer_write",
            &[Val::I32(h), Val::I64(0), Val::I32(0), Val::I32(4)],
        )
        .await;
    assert_eq!(rc, ERR_INVALID_HANDLE);
    assert_eq!(
        g.i32("buffer_size", &[Val::I32(9999), Val::I32(0)]).await,
        ERR_INVALID_HANDLE
    );
    // A new buffer never reuses the freed handle.
    let h2 = g.create(16).await as i32;
    assert_ne!(h, h2);
    // A buffer handle is not a kernel handle.
    assert_eq!(
        g.i32("kernel_free", &[Val::I32(h2)]).await,
        ERR_INVALID_HANDLE
    );
}

#[tokio::test]
async fn another_sessions_handles_name_nothing_here() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas::default());
    let mut a = Guest::passthrough(&engine, rt.clone(), "tenant-a").await;
    let mut b = Guest::passthrough(&engine, rt.clone(), "tenant-b").await;
    let ha1 = a.create(16).await as i32;
    let ha2 = a.create(16).await as i32;
    a.write(64, &[7u8; 16]);
    assert_eq!(
        a.i32(
            "buffer_write",
            &[Val::I32(ha2), Val::I64(0), Val::I32(64), Val::I32(16)]
        )
        .await,
        OK
    );
    // B holds no buffers: A's handle numbers mean nothing to it.
    for h in [ha1, ha2] {
        let rc = b
            .i32(
                "buffer_read",
                &[Val::I32(h), Val::I64(0), Val::I32(64), Val::I32(16)],
            )
            .await;
        assert_eq!(rc, ERR_INVALID_HANDLE);
    }
    // Even when B's own handles collide numerically, they name B's memory.
    let hb1 = b.create(16).await as i32;
    let hb2 = b.create(16).await as i32;
    assert_eq!((hb1, hb2), (ha1, ha2));
    let rc = b
        .i32(
            "buffer_read",
            &[Val::I32(hb2), Val::I64(0), Val::I32(64), Val::I32(16)],
        )
        .await;
    assert_eq!(rc, OK);
    assert_eq!(
        b.read(64, 16),
        vec![0u8; 16],
        "fresh buffers are zeroed and private"
    );
}

/// A CPU runtime on which tenant `t` may load raw PTX.
fn raw_ptx_runtime() -> std::sync::Arc<tensor_wasm_gpu::GpuRuntime> {
    let rt = cpu_runtime(GpuQuotas::default());
    rt.allow_raw_ptx(["t".to_owned()]);
    rt
}

/// Loads `entry` of `ptx` through `kernel_load`; the handle lands at address 0.
async fn load_kernel(g: &mut Guest, ptx: &[u8], entry: &[u8]) -> i32 {
    g.write(4096, ptx);
    g.write(100, entry);
    g.i32(
        "kernel_load",
        &[
            Val::I32(4096),
            Val::I32(ptx.len() as i32),
            Val::I32(100),
            Val::I32(entry.len() as i32),
            Val::I32(0),
        ],
    )
    .await
}

#[tokio::test]
async fn raw_ptx_is_refused_unless_the_operator_enables_it_for_the_tenant() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas::default());
    rt.allow_raw_ptx(["trusted".to_owned()]);
    let mut g = Guest::passthrough(&engine, rt.clone(), "t").await;
    assert_eq!(
        load_kernel(&mut g, SAXPY_PTX.as_bytes(), b"saxpy").await,
        ERR_RAW_PTX_DISABLED
    );
    assert!(
        g.last_error()
            .await
            .contains("raw PTX is disabled for tenant t")
    );
    // The built-in ops stay available to the same guest.
    let x = g.create(64).await;
    assert!(x > 0);
    // The tenant the operator opted in loads the same text.
    let mut trusted = Guest::passthrough(&engine, rt, "trusted").await;
    assert_eq!(
        load_kernel(&mut trusted, SAXPY_PTX.as_bytes(), b"saxpy").await,
        OK
    );
}

#[tokio::test]
async fn a_raw_integer_never_passes_as_a_pointer_parameter() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, raw_ptx_runtime(), "t").await;
    let y = g.create(64).await;
    assert_eq!(
        load_kernel(&mut g, SAXPY_PTX.as_bytes(), b"saxpy").await,
        OK
    );
    let k = g.read_u32(0) as i32;
    g.write(200, &launch_record([1, 1, 1], [16, 1, 1], 0));
    // An address of someone else's device memory, as u64 and as i64.
    for tag in [ARG_U64, ARG_I64] {
        let records = [
            arg(tag, 0x7f00_dead_0000),
            arg(ARG_BUFFER, y as u64),
            arg(ARG_F32, 2.0f32.to_bits() as u64),
            arg(ARG_U32, 16),
        ]
        .concat();
        g.write(300, &records);
        let rc = g
            .i32(
                "kernel_launch",
                &[Val::I32(k), Val::I32(200), Val::I32(300), Val::I32(4)],
            )
            .await;
        assert_eq!(rc, ERR_ARG_MISMATCH);
        assert!(g.last_error().await.contains("takes a buffer handle"));
    }
}

#[tokio::test]
async fn kernel_arguments_are_checked_against_the_ptx_signature() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, raw_ptx_runtime(), "t").await;
    let x = g.create(64).await;
    let y = g.create(64).await;
    assert_eq!(
        load_kernel(&mut g, SAXPY_PTX.as_bytes(), b"saxpy").await,
        OK
    );
    let k = g.read_u32(0) as i32;
    g.write(200, &launch_record([1, 1, 1], [16, 1, 1], 0));

    let good = [
        arg(ARG_BUFFER, x as u64),
        arg(ARG_BUFFER, y as u64),
        arg(ARG_F32, 2.0f32.to_bits() as u64),
        arg(ARG_U32, 16),
    ];
    let launch = async |g: &mut Guest, records: &[Vec<u8>], count: i32| {
        g.write(300, &records.concat());
        g.i32(
            "kernel_launch",
            &[Val::I32(k), Val::I32(200), Val::I32(300), Val::I32(count)],
        )
        .await
    };
    // Too few arguments.
    assert_eq!(launch(&mut g, &good[..3], 3).await, ERR_ARG_MISMATCH);
    // f64 where the PTX takes f32.
    let mut wrong = good.clone();
    wrong[2] = arg(ARG_F64, 2.0f64.to_bits());
    assert_eq!(launch(&mut g, &wrong, 4).await, ERR_ARG_MISMATCH);
    // A scalar where the PTX takes a pointer-sized value of another class.
    let mut wrong = good.clone();
    wrong[0] = arg(ARG_F32, 0);
    assert_eq!(launch(&mut g, &wrong, 4).await, ERR_ARG_MISMATCH);
    // Unknown tag.
    let mut wrong = good.clone();
    wrong[3] = arg(99, 16);
    assert_eq!(launch(&mut g, &wrong, 4).await, ERR_ARG_MISMATCH);
    // Too many arguments for the limit.
    assert_eq!(launch(&mut g, &good, 1000).await, ERR_ARG_MISMATCH);
    // Unknown buffer handle.
    let mut wrong = good.clone();
    wrong[1] = arg(ARG_BUFFER, 4242);
    assert_eq!(launch(&mut g, &wrong, 4).await, ERR_INVALID_HANDLE);
    // Bad launch dimensions.
    g.write(200, &launch_record([1, 1, 1], [2048, 1, 1], 0));
    assert_eq!(launch(&mut g, &good, 4).await, ERR_INVALID_ARGUMENT);
    g.write(200, &launch_record([1, 1, 1], [16, 1, 1], 0));
    // Well-formed: the CPU backend explains it needs a CUDA device.
    assert_eq!(launch(&mut g, &good, 4).await, ERR_NEEDS_CUDA);
    assert!(g.last_error().await.contains("needs a CUDA device"));
    // Unknown kernel handle.
    let rc = g
        .i32(
            "kernel_launch",
            &[Val::I32(777), Val::I32(200), Val::I32(300), Val::I32(4)],
        )
        .await;
    assert_eq!(rc, ERR_INVALID_HANDLE);
}

#[tokio::test]
async fn malformed_ptx_and_missing_entries_fail_to_load() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, raw_ptx_runtime(), "t").await;
    let load = load_kernel;
    assert_eq!(load(&mut g, b"not ptx at all", b"k").await, ERR_KERNEL_LOAD);
    assert_eq!(
        load(&mut g, SAXPY_PTX.as_bytes(), b"nope").await,
        ERR_KERNEL_LOAD
    );
    assert_eq!(
        load(&mut g, &[0xff, 0xfe], b"k").await,
        ERR_INVALID_ARGUMENT
    );
}

#[tokio::test]
async fn ops_run_through_the_guest_and_validate_sizes() {
    let engine = engine();
    let mut g = Guest::passthrough(&engine, cpu_runtime(GpuQuotas::default()), "t").await;
    let a = g.create(16).await as i32;
    let b = g.create(16).await as i32;
    let out = g.create(16).await as i32;
    g.write_f32s(64, &[1.0, 2.0, 3.0, 4.0]);
    g.write_f32s(80, &[10.0, 20.0, 30.0, 40.0]);
    for (h, at) in [(a, 64), (b, 80)] {
        let rc = g
            .i32(
                "buffer_write",
                &[Val::I32(h), Val::I64(0), Val::I32(at), Val::I32(16)],
            )
            .await;
        assert_eq!(rc, OK);
    }
    let rc = g
        .i32(
            "op_vector_add",
            &[Val::I32(a), Val::I32(b), Val::I32(out), Val::I32(4)],
        )
        .await;
    assert_eq!(rc, OK);
    assert_eq!(g.i32("synchronize", &[]).await, OK);
    let rc = g
        .i32(
            "buffer_read",
            &[Val::I32(out), Val::I64(0), Val::I32(128), Val::I32(16)],
        )
        .await;
    assert_eq!(rc, OK);
    assert_eq!(g.read_f32s(128, 4), vec![11.0, 22.0, 33.0, 44.0]);

    // In place: a = 0.5 * a + b
    let rc = g
        .i32(
            "op_saxpy",
            &[
                Val::F32(0.5f32.to_bits()),
                Val::I32(a),
                Val::I32(b),
                Val::I32(a),
                Val::I32(4),
            ],
        )
        .await;
    assert_eq!(rc, OK);
    let rc = g
        .i32(
            "buffer_read",
            &[Val::I32(a), Val::I64(0), Val::I32(128), Val::I32(16)],
        )
        .await;
    assert_eq!(rc, OK);
    assert_eq!(g.read_f32s(128, 4), vec![10.5, 21.0, 31.5, 42.0]);

    // More elements than the buffers hold.
    let rc = g
        .i32(
            "op_vector_add",
            &[Val::I32(a), Val::I32(b), Val::I32(out), Val::I32(5)],
        )
        .await;
    assert_eq!(rc, ERR_OUT_OF_RANGE);
    // 2x2 · 2x2 fits; 3x3 does not.
    let rc = g
        .i32(
            "op_matmul",
            &[
                Val::I32(a),
                Val::I32(b),
                Val::I32(out),
                Val::I32(2),
                Val::I32(2),
                Val::I32(2),
            ],
        )
        .await;
    assert_eq!(rc, OK);
    let rc = g
        .i32(
            "op_matmul",
            &[
                Val::I32(a),
                Val::I32(b),
                Val::I32(out),
                Val::I32(3),
                Val::I32(3),
                Val::I32(3),
            ],
        )
        .await;
    assert_eq!(rc, ERR_OUT_OF_RANGE);
    // Reductions over nothing are invalid.
    assert_eq!(
        g.i32("op_sum", &[Val::I32(a), Val::I32(out), Val::I32(0)])
            .await,
        ERR_INVALID_ARGUMENT
    );
    assert_eq!(
        g.i32("op_max", &[Val::I32(a), Val::I32(out), Val::I32(4)])
            .await,
        OK
    );
    let rc = g
        .i32(
            "buffer_read",
            &[Val::I32(out), Val::I64(0), Val::I32(128), Val::I32(4)],
        )
        .await;
    assert_eq!(rc, OK);
    assert_eq!(g.read_f32s(128, 1), vec![42.0]);
}

#[tokio::test]
async fn memory_quota_is_enforced_across_a_tenants_sessions() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas {
        max_device_memory_bytes_per_tenant: 1000,
        max_concurrent_launches_per_tenant: 8,
    });
    let mut a = Guest::passthrough(&engine, rt.clone(), "acme").await;
    let mut b = Guest::passthrough(&engine, rt.clone(), "acme").await;
    let mut other = Guest::passthrough(&engine, rt.clone(), "globex").await;
    a.create(800).await;
    let rc = b.i32("buffer_create", &[Val::I64(300), Val::I32(0)]).await;
    assert_eq!(rc, ERR_QUOTA_MEMORY);
    assert!(b.last_error().await.contains("quota"));
    other.create(900).await;
    assert_eq!(rt.tenant_memory_in_use("acme"), 800);
    drop(a);
    assert_eq!(rt.tenant_memory_in_use("acme"), 0);
    b.create(1000).await;
    let rc = b.i32("buffer_create", &[Val::I64(1), Val::I32(0)]).await;
    assert_eq!(rc, ERR_QUOTA_MEMORY);
}

#[tokio::test]
async fn launch_quota_is_enforced() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas {
        max_device_memory_bytes_per_tenant: 1 << 20,
        max_concurrent_launches_per_tenant: 0,
    });
    let mut g = Guest::passthrough(&engine, rt.clone(), "t").await;
    let x = g.create(16).await as i32;
    let rc = g
        .i32("op_relu", &[Val::I32(x), Val::I32(x), Val::I32(4)])
        .await;
    assert_eq!(rc, ERR_QUOTA_LAUNCHES);

    // With room for one, a synchronous backend frees the slot on return.
    let rt = cpu_runtime(GpuQuotas {
        max_device_memory_bytes_per_tenant: 1 << 20,
        max_concurrent_launches_per_tenant: 1,
    });
    let mut g = Guest::passthrough(&engine, rt.clone(), "t").await;
    let x = g.create(16).await as i32;
    for _ in 0..3 {
        assert_eq!(
            g.i32("op_relu", &[Val::I32(x), Val::I32(x), Val::I32(4)])
                .await,
            OK
        );
    }
    assert_eq!(rt.tenant_launches_in_flight("t"), 0);
    // Direct Rust callers hit the same accounting.
    let s = &mut g.store.data_mut().gpu;
    s.run_op_blocking(Op::Relu {
        x: x as u32,
        out: x as u32,
        n: 4,
    })
    .expect("relu");
}

#[tokio::test]
async fn a_trap_releases_buffers_and_quota_when_the_store_drops() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas::default());
    let mut g = Guest::passthrough(&engine, rt.clone(), "t").await;
    let err = g
        .call("alloc_then_trap", &[Val::I64(4096)])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("unreachable"), "{err:?}");
    assert_eq!(rt.tenant_memory_in_use("t"), 4096);
    drop(g);
    assert_eq!(rt.tenant_memory_in_use("t"), 0);
}

#[tokio::test]
async fn a_deadline_releases_buffers_and_quota_when_the_store_drops() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas::default());
    let mut g = Guest::passthrough(&engine, rt.clone(), "t").await;
    g.store.set_epoch_deadline(1);
    let ticker = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                engine.increment_epoch();
            }
        })
    };
    let err = g
        .call("alloc_then_spin", &[Val::I64(8192)])
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("interrupt"), "{err:?}");
    assert_eq!(rt.tenant_memory_in_use("t"), 8192);
    drop(g);
    assert_eq!(rt.tenant_memory_in_use("t"), 0);
    ticker.join().expect("ticker");
}

#[tokio::test]
async fn kernel_cache_hits_and_metrics_are_exported() {
    let engine = engine();
    let rt = cpu_runtime(GpuQuotas::default());
    rt.allow_raw_ptx(["a".to_owned(), "b".to_owned()]);
    let mut registry = prometheus_client::registry::Registry::default();
    rt.register_metrics(&mut registry);
    // A compiled module is shared by one tenant's sessions only: tenant b
    // loading the same text gets a module (and `.global` state) of its own.
    for tenant in ["a", "a", "b"] {
        let mut g = Guest::passthrough(&engine, rt.clone(), tenant).await;
        assert_eq!(
            load_kernel(&mut g, SAXPY_PTX.as_bytes(), b"saxpy").await,
            OK
        );
        let h = g.create(64).await as i32;
        let rc = g
            .i32(
                "buffer_write",
                &[Val::I32(h), Val::I64(0), Val::I32(0), Val::I32(64)],
            )
            .await;
        assert_eq!(rc, OK);
        g.i32("op_relu", &[Val::I32(h), Val::I32(h), Val::I32(16)])
            .await;
    }
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
    for needle in [
        "tensor_wasm_gpu_kernel_cache_total{result=\"miss\"} 2",
        "tensor_wasm_gpu_kernel_cache_total{result=\"hit\"} 1",
        "tensor_wasm_gpu_dispatch_duration_seconds_count{op=\"relu\",backend=\"cpu\"} 3",
        "tensor_wasm_gpu_bytes_transferred_total{direction=\"h2d\"} 192",
        "tensor_wasm_gpu_memory_in_use_bytes{tenant=\"a\"} 0",
        "tensor_wasm_gpu_backend_info{backend=\"cpu\"",
    ] {
        assert!(text.contains(needle), "missing `{needle}` in:\n{text}");
    }
}

#[test]
fn backend_choice_parses_and_rejects_unknown_names() {
    use tensor_wasm_gpu::BackendChoice;
    assert_eq!(
        "auto".parse::<BackendChoice>().unwrap(),
        BackendChoice::Auto
    );
    assert_eq!(
        "CUDA".parse::<BackendChoice>().unwrap(),
        BackendChoice::Cuda
    );
    assert_eq!("cpu".parse::<BackendChoice>().unwrap(), BackendChoice::Cpu);
    assert!("tpu".parse::<BackendChoice>().is_err());
}
