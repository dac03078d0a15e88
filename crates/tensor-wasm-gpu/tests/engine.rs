//! The GPU host interface plugged into the executor ([`GpuHost`]): linked
//! only when the engine lists it, one session per store, everything freed
//! when the store ends.

use std::time::Duration;

use tensor_wasm_exec::{EngineConfig, Executor, InvokeContext, Limits, TypedValue};
use tensor_wasm_gpu::{BackendChoice, GpuConfig, GpuHost, GpuRuntime};

/// Allocates a 1 MiB buffer, then either returns the status or traps/spins.
const GUEST: &str = r#"(module
  (import "tw_gpu_v1" "buffer_create" (func $create (param i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (result i32)
    (call $create (i64.const 1048576) (i32.const 0)))
  (func (export "alloc_then_trap")
    (drop (call $create (i64.const 1048576) (i32.const 0)))
    unreachable)
  (func (export "alloc_then_spin")
    (drop (call $create (i64.const 1048576) (i32.const 0)))
    (loop br 0))
  (func (export "alloc_out_of_bounds") (result i32)
    (call $create (i64.const 16) (i32.const 65534))))"#;

fn cpu_runtime() -> std::sync::Arc<GpuRuntime> {
    GpuRuntime::new(GpuConfig {
        backend: BackendChoice::Cpu,
        ..Default::default()
    })
    .expect("the CPU backend always opens")
}

fn ctx() -> InvokeContext {
    InvokeContext {
        tenant: "t1".into(),
        limits: Limits {
            timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        cpu_slots: None,
    }
}

#[test]
fn gpu_imports_fail_to_link_without_the_gpu_interface() {
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 4,
        ..Default::default()
    })
    .unwrap();
    let err = exec.compile(GUEST.as_bytes()).unwrap_err();
    assert_eq!(err.code(), "invalid_module");
    assert!(err.to_string().contains("tw_gpu_v1"), "{err}");
}

#[tokio::test]
async fn buffers_are_freed_when_the_invocation_ends_however_it_ends() {
    let rt = cpu_runtime();
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 4,
        host_interfaces: vec![GpuHost::new(rt.clone()).into()],
        ..Default::default()
    })
    .unwrap();
    let f = exec.compile(GUEST.as_bytes()).unwrap();

    let ok = exec.call_typed(&f, "alloc", &[], &ctx()).await.unwrap();
    assert_eq!(ok.results, [TypedValue::I32(0)]);
    assert_eq!(rt.tenant_memory_in_use("t1"), 0);

    let trap = exec
        .call_typed(&f, "alloc_then_trap", &[], &ctx())
        .await
        .unwrap_err();
    assert_eq!(trap.code(), "trap");
    assert_eq!(rt.tenant_memory_in_use("t1"), 0);

    let timeout = exec
        .call_typed(&f, "alloc_then_spin", &[], &ctx())
        .await
        .unwrap_err();
    assert_eq!(timeout.code(), "deadline_exceeded");
    assert_eq!(rt.tenant_memory_in_use("t1"), 0);
}

#[tokio::test]
async fn out_of_bounds_guest_pointer_is_an_error_code_not_a_crash() {
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 4,
        host_interfaces: vec![GpuHost::new(cpu_runtime()).into()],
        ..Default::default()
    })
    .unwrap();
    let f = exec.compile(GUEST.as_bytes()).unwrap();
    let out = exec
        .call_typed(&f, "alloc_out_of_bounds", &[], &ctx())
        .await
        .unwrap();
    assert_eq!(out.results, [TypedValue::I32(-1)], "ERR_INVALID_POINTER");
}
