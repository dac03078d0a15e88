//! Behaviour of the execution core through its public API, with WAT guests.

use std::time::{Duration, Instant};

use serde_json::json;
use tensor_wasm_exec::{
    CommandInput, EngineConfig, ExecError, Executor, InvokeContext, Limits, TypedValue,
};

const ARITH: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "mul64") (param i64 i64) (result i64) local.get 0 local.get 1 i64.mul)
  (func (export "half32") (param f32) (result f32) local.get 0 f32.const 0.5 f32.mul)
  (func (export "hyp") (param f64 f64) (result f64)
    local.get 0 local.get 0 f64.mul local.get 1 local.get 1 f64.mul f64.add f64.sqrt)
  (func (export "div") (param i32 i32) (result i32) local.get 0 local.get 1 i32.div_s)
  (func (export "boom") unreachable)
  (func (export "spin") (loop br 0))
  (func $recurse (export "recurse") (param i32) (result i32)
    local.get 0 i32.const 1 i32.add call $recurse)
  (memory (export "memory") 1)
  (func (export "bomb")
    (loop
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      br 0))
)"#;

/// A WASI command that copies stdin to stdout (fd_read → fd_write loop).
const ECHO: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $again
      ;; iovec at 0: buf=64, len=1024; nread at 16
      (i32.store (i32.const 0) (i32.const 64))
      (i32.store (i32.const 4) (i32.const 1024))
      (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (if (i32.eqz (i32.load (i32.const 16))) (then return))
      (i32.store (i32.const 4) (i32.load (i32.const 16)))
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
      br $again))
)"#;

/// Writes 1 KiB to stdout forever-ish (4096 times), then exits with code 3.
const CHATTY: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1024))
    (local.set 0 (i32.const 4096))
    (loop $again
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
      (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
      (br_if $again (local.get 0)))
    (call $exit (i32.const 3)))
)"#;

fn executor() -> Executor {
    Executor::new(EngineConfig {
        pool_total_instances: 32,
        pool_max_memory_bytes: 256 << 20,
        ..Default::default()
    })
    .expect("engine builds")
}

fn ctx(limits: Limits) -> InvokeContext {
    InvokeContext {
        tenant: "t1".into(),
        limits,
        cpu_slots: None,
    }
}

async fn typed(
    exec: &Executor,
    wat: &str,
    export: &str,
    args: serde_json::Value,
) -> Result<Vec<TypedValue>, ExecError> {
    let f = exec.compile(wat.as_bytes())?;
    let args = args.as_array().cloned().unwrap_or_default();
    Ok(exec
        .call_typed(&f, export, &args, &ctx(Limits::default()))
        .await?
        .results)
}

#[tokio::test]
async fn typed_calls_cover_every_numeric_type() {
    let exec = executor();
    assert_eq!(
        typed(&exec, ARITH, "add", json!([2, 3])).await.unwrap(),
        [TypedValue::I32(5)]
    );
    assert_eq!(
        typed(&exec, ARITH, "mul64", json!([1_i64 << 40, 3]))
            .await
            .unwrap(),
        [TypedValue::I64(3 << 40)]
    );
    assert_eq!(
        typed(&exec, ARITH, "half32", json!([3.0])).await.unwrap(),
        [TypedValue::F32(1.5)]
    );
    assert_eq!(
        typed(&exec, ARITH, "hyp", json!([3.0, 4.0])).await.unwrap(),
        [TypedValue::F64(5.0)]
    );
}

#[tokio::test]
async fn typed_call_reports_duration_and_fuel() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let out = exec
        .call_typed(&f, "add", &[json!(1), json!(2)], &ctx(Limits::default()))
        .await
        .unwrap();
    assert!(out.fuel_used.unwrap() > 0);
    assert!(out.duration > Duration::ZERO);
}

#[tokio::test]
async fn missing_export_lists_what_exists() {
    let exec = executor();
    let err = typed(&exec, ARITH, "nope", json!([])).await.unwrap_err();
    assert_eq!(err.code(), "missing_export");
    assert!(err.to_string().contains("add"), "{err}");
}

#[tokio::test]
async fn wrong_arity_and_types_name_the_signature() {
    let exec = executor();
    let err = typed(&exec, ARITH, "add", json!([1])).await.unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
    assert!(err.to_string().contains("add(i32, i32) -> i32"), "{err}");
    let err = typed(&exec, ARITH, "add", json!([1, "two"]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
    let err = typed(&exec, ARITH, "add", json!([1, 2.5]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "signature_mismatch");
}

#[tokio::test]
async fn traps_are_reported_with_their_message() {
    let exec = executor();
    let err = typed(&exec, ARITH, "boom", json!([])).await.unwrap_err();
    assert_eq!(err.code(), "trap");
    assert!(err.to_string().contains("unreachable"), "{err}");
    let err = typed(&exec, ARITH, "div", json!([1, 0])).await.unwrap_err();
    assert_eq!(err.code(), "trap");
    assert!(err.to_string().contains("divide by zero"), "{err}");
}

#[tokio::test]
async fn deep_recursion_is_a_stack_overflow_trap() {
    let exec = executor();
    let err = typed(&exec, ARITH, "recurse", json!([0]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "trap");
    assert!(err.to_string().contains("stack"), "{err}");
}

#[tokio::test]
async fn deadline_stops_endless_loop_and_next_call_succeeds() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = exec
        .call_typed(&f, "spin", &[], &ctx(limits.clone()))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), "deadline_exceeded", "{err}");
    assert!(took < Duration::from_millis(400), "stopped after {took:?}");
    let ok = exec
        .call_typed(&f, "add", &[json!(2), json!(3)], &ctx(limits))
        .await
        .unwrap();
    assert_eq!(ok.results, [TypedValue::I32(5)]);
}

#[tokio::test(flavor = "current_thread")]
async fn endless_loop_yields_so_other_tasks_progress() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let spinner = {
        let (exec, f, c) = (exec.clone(), f.clone(), ctx(limits));
        tokio::spawn(async move { exec.call_typed(&f, "spin", &[], &c).await })
    };
    // On a single-threaded runtime this only completes while the spinner
    // runs if the guest yields at epoch ticks.
    let before = Instant::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        before.elapsed() < Duration::from_millis(200),
        "runtime was blocked by the guest"
    );
    assert_eq!(
        spinner.await.unwrap().unwrap_err().code(),
        "deadline_exceeded"
    );
}

#[tokio::test]
async fn memory_bomb_is_refused_at_the_cap() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let limits = Limits {
        max_memory_bytes: 8 << 20,
        ..Limits::default()
    };
    let err = exec
        .call_typed(&f, "bomb", &[], &ctx(limits))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "memory_limit_exceeded", "{err}");
    assert!(err.to_string().contains(&(8u64 << 20).to_string()));
}

#[tokio::test]
async fn initial_memory_over_the_cap_is_refused() {
    let exec = executor();
    let f = exec
        .compile(br#"(module (memory (export "memory") 64) (func (export "f")))"#)
        .unwrap();
    let limits = Limits {
        max_memory_bytes: 1 << 20,
        ..Limits::default()
    };
    let err = exec
        .call_typed(&f, "f", &[], &ctx(limits))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "memory_limit_exceeded", "{err}");
}

#[tokio::test]
async fn fuel_budget_is_enforced() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let limits = Limits {
        fuel: Some(10_000),
        ..Limits::default()
    };
    let err = exec
        .call_typed(&f, "spin", &[], &ctx(limits))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "fuel_exhausted", "{err}");
}

#[tokio::test]
async fn malformed_bytes_are_rejected_clearly() {
    let exec = executor();
    let err = exec.compile(b"\0asm\x01\0\0\0\x99garbage").unwrap_err();
    assert_eq!(err.code(), "invalid_module");
    let err = exec.compile(&[0xff, 0xfe, 0x00, 0x01]).unwrap_err();
    assert_eq!(err.code(), "invalid_module");
    assert!(err.to_string().contains("magic"), "{err}");
    let err = exec
        .compile(b"(module (func (export \"f\") i32.add))")
        .unwrap_err();
    assert_eq!(err.code(), "invalid_module");
}

#[tokio::test]
async fn unknown_imports_are_rejected_at_compile_time() {
    let exec = executor();
    let err = exec
        .compile(br#"(module (import "env" "secret" (func)) (func (export "f")))"#)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_module");
    assert!(err.to_string().contains("secret"), "{err}");
}

#[tokio::test]
async fn empty_module_is_valid() {
    let exec = executor();
    let f = exec.compile(b"\0asm\x01\0\0\0").unwrap();
    assert!(f.exports().is_empty());
}

#[tokio::test]
async fn bytes_call_echoes_stdin_to_stdout() {
    let exec = executor();
    let f = exec.compile(ECHO.as_bytes()).unwrap();
    let input: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let out = exec
        .call_bytes(&f, None, input.clone(), &ctx(Limits::default()))
        .await
        .unwrap();
    assert_eq!(out.stdout, input);
    assert_eq!(out.exit_code, 0);
}

#[tokio::test]
async fn bytes_call_reports_exit_code_and_bounds_output() {
    let exec = executor();
    let f = exec.compile(CHATTY.as_bytes()).unwrap();
    let roomy = Limits {
        max_output_bytes: 8 << 20,
        ..Limits::default()
    };
    let out = exec
        .call_bytes(&f, None, vec![], &ctx(roomy))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout.len(), 4096 * 1024);
    let tight = Limits {
        max_output_bytes: 64 << 10,
        ..Limits::default()
    };
    let Err(err) = exec.call_bytes(&f, None, vec![], &ctx(tight)).await else {
        panic!("output over the cap was accepted");
    };
    assert_eq!(err.code(), "output_too_large", "{err}");
}

#[tokio::test]
async fn command_arguments_reach_the_guest() {
    // args_sizes_get reports argc; we return it as the exit code.
    let wat = r#"(module
      (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        (drop (call $sizes (i32.const 0) (i32.const 4)))
        (call $exit (i32.load (i32.const 0)))))"#;
    let exec = executor();
    let f = exec.compile(wat.as_bytes()).unwrap();
    let input = CommandInput {
        args: vec!["a".into(), "b".into()],
        ..Default::default()
    };
    let out = exec
        .call_command(&f, input, &ctx(Limits::default()))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 3);
}

#[tokio::test]
async fn compile_cache_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || EngineConfig {
        cache_dir: Some(dir.path().join("jit-cache")),
        cache_key: Some(tensor_wasm_exec::CacheKey([7; 32])),
        pool_total_instances: 8,
        ..Default::default()
    };
    let first = Executor::new(config()).unwrap();
    first.compile(ARITH.as_bytes()).unwrap();
    assert_eq!(first.cache_stats().compiles, 1);
    drop(first);

    // A second engine (a restarted process) loads from disk without compiling.
    let second = Executor::new(config()).unwrap();
    let f = second.compile(ARITH.as_bytes()).unwrap();
    let stats = second.cache_stats();
    assert_eq!((stats.hits, stats.compiles), (1, 0), "{stats:?}");
    let out = second
        .call_typed(&f, "add", &[json!(2), json!(3)], &ctx(Limits::default()))
        .await
        .unwrap();
    assert_eq!(out.results, [TypedValue::I32(5)]);
    drop(second);

    // A process with another key (or none: a key of its own) trusts none of
    // those entries: it recompiles instead of running unauthenticated code.
    let third = Executor::new(EngineConfig {
        cache_key: Some(tensor_wasm_exec::CacheKey([8; 32])),
        ..config()
    })
    .unwrap();
    third.compile(ARITH.as_bytes()).unwrap();
    let stats = third.cache_stats();
    assert_eq!(
        (stats.hits, stats.compiles, stats.rejected),
        (0, 1, 1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn corrupt_cache_entry_is_recompiled_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("jit-cache");
    let config = || EngineConfig {
        cache_dir: Some(cache.clone()),
        // The same key both times: the entry is refused for its flipped
        // byte, not for a key it was never written with.
        cache_key: Some(tensor_wasm_exec::CacheKey([7; 32])),
        pool_total_instances: 8,
        ..Default::default()
    };
    Executor::new(config())
        .unwrap()
        .compile(ARITH.as_bytes())
        .unwrap();
    let entry = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("a cache entry was written");
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, bytes).unwrap();

    let exec = Executor::new(config()).unwrap();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let stats = exec.cache_stats();
    assert_eq!(
        (stats.hits, stats.rejected, stats.compiles),
        (0, 1, 1),
        "{stats:?}"
    );
    let out = exec
        .call_typed(&f, "add", &[json!(20), json!(22)], &ctx(Limits::default()))
        .await
        .unwrap();
    assert_eq!(out.results, [TypedValue::I32(42)]);
}

#[tokio::test]
async fn exhausted_pool_answers_busy() {
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 2,
        ..Default::default()
    })
    .unwrap();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let c = ctx(Limits::default());
    let _a = exec.instantiate(&f, &c).await.unwrap();
    let _b = exec.instantiate(&f, &c).await.unwrap();
    let err = exec
        .instantiate(&f, &c)
        .await
        .err()
        .expect("third instance refused");
    assert_eq!(err.code(), "busy", "{err}");
}

/// A guest that asks WASI for a one-hour relative clock sleep (`poll_oneoff`),
/// as a typed export and as a command: the sleep is a host call, where epoch
/// interruption never fires.
const SLEEPER: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $sleep (export "sleep") (result i32)
    ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1 (monotonic),
    ;; timeout 3600 s, precision 0, flags 0 (relative)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
  (func (export "_start") (drop (call $sleep))))"#;

#[tokio::test]
async fn deadline_ends_a_guest_sleeping_in_a_wasi_host_call() {
    let exec = executor();
    let f = exec.compile(SLEEPER.as_bytes()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let started = Instant::now();
    let err = exec
        .call_typed(&f, "sleep", &[], &ctx(limits.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "deadline_exceeded", "{err}");
    assert_eq!(err.outcome(), "timeout");
    let err = exec
        .call_bytes(&f, None, Vec::new(), &ctx(limits))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "deadline_exceeded", "{err}");
    // Both calls ended at their deadline, not after the hour the guest asked for.
    assert!(started.elapsed() < Duration::from_secs(5));
    // The instance slots were released: the engine still serves calls.
    assert_eq!(
        typed(&exec, ARITH, "add", json!([1, 1])).await.unwrap(),
        [TypedValue::I32(2)]
    );
}

#[tokio::test]
async fn a_live_instance_cut_off_at_its_deadline_runs_nothing_more() {
    let exec = executor();
    let f = exec.compile(SLEEPER.as_bytes()).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let mut live = exec.instantiate(&f, &ctx(limits)).await.unwrap();
    let first = live.call_typed("sleep", &[]).await.unwrap_err();
    assert_eq!(first.code(), "deadline_exceeded");
    let again = live.call_typed("sleep", &[]).await.unwrap_err();
    assert_eq!(again.code(), "deadline_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_spinning_guests_take_turns_on_its_cpu_slots_and_still_end_at_their_deadline() {
    let exec = executor();
    let f = exec.compile(ARITH.as_bytes()).unwrap();
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
    let ctx = InvokeContext {
        tenant: "t1".into(),
        limits: Limits {
            timeout: Duration::from_millis(300),
            ..Limits::default()
        },
        cpu_slots: Some(slots.clone()),
    };
    let started = Instant::now();
    let spin = || exec.call_typed(&f, "spin", &[], &ctx);
    let watch = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        slots.available_permits()
    };
    let (a, b, c, free_mid_run) = tokio::join!(spin(), spin(), spin(), watch);
    // Mid-run, one guest holds the tenant's only slot; the others wait for
    // it — and waiting does not let them outlive their deadline.
    assert_eq!(free_mid_run, 0);
    for r in [a, b, c] {
        assert_eq!(r.unwrap_err().code(), "deadline_exceeded");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // The slot went back with the stores.
    assert_eq!(slots.available_permits(), 1);
}
