//! Instantiate-and-call latency through `Executor` vs bare Wasmtime, and
//! compile-from-cache vs compile-from-scratch.
//!
//! A bench binary (not criterion) because the claims are about latency
//! percentiles: it times every iteration and prints p50/p99 beside the
//! baselines measured in the same run.
//!
//! Run: `cargo bench -p tensor-wasm-exec --bench invoke`

use std::time::Instant;

use serde_json::json;
use tensor_wasm_exec::{EngineConfig, Executor, InvokeContext, Limits};

const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
  local.get 0 local.get 1 i32.add))"#;

const ITERS: usize = 20_000;

#[path = "../../../benches/percentiles.rs"]
mod percentiles;
use percentiles::{Stats, report, stats};

fn bare_wasmtime(config: &wasmtime::Config) -> Stats {
    let engine = wasmtime::Engine::new(config).expect("engine");
    let wasm = wat::parse_str(ADD).expect("wat");
    let module = wasmtime::Module::new(&engine, &wasm).expect("module");
    let linker = wasmtime::Linker::<()>::new(&engine);
    let pre = linker.instantiate_pre(&module).expect("pre");
    let mut samples = Vec::with_capacity(ITERS);
    for i in 0..ITERS + 1000 {
        let t = Instant::now();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = pre.instantiate(&mut store).expect("instantiate");
        let add = instance
            .get_typed_func::<(i32, i32), i32>(&mut store, "add")
            .expect("add");
        let r = add.call(&mut store, (2, 3)).expect("call");
        drop(store);
        let dt = t.elapsed();
        assert_eq!(r, 5);
        if i >= 1000 {
            samples.push(dt);
        }
    }
    stats(samples)
}

fn bare_wasmtime_async(rt: &tokio::runtime::Runtime) -> Stats {
    let mut config = wasmtime::Config::new();
    config.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
    let engine = wasmtime::Engine::new(&config).expect("engine");
    let wasm = wat::parse_str(ADD).expect("wat");
    let module = wasmtime::Module::new(&engine, &wasm).expect("module");
    let linker = wasmtime::Linker::<()>::new(&engine);
    let pre = linker.instantiate_pre(&module).expect("pre");
    rt.block_on(async {
        let mut samples = Vec::with_capacity(ITERS);
        for i in 0..ITERS + 1000 {
            let t = Instant::now();
            let mut store = wasmtime::Store::new(&engine, ());
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .expect("instantiate");
            let add = instance
                .get_typed_func::<(i32, i32), i32>(&mut store, "add")
                .expect("add");
            let r = add.call_async(&mut store, (2, 3)).await.expect("call");
            drop(store);
            let dt = t.elapsed();
            assert_eq!(r, 5);
            if i >= 1000 {
                samples.push(dt);
            }
        }
        stats(samples)
    })
}

fn ours(rt: &tokio::runtime::Runtime) -> Stats {
    let exec = Executor::new(EngineConfig::default()).expect("executor");
    let f = exec.compile(ADD.as_bytes()).expect("compile");
    let ctx = InvokeContext::new("bench");
    let args = [json!(2), json!(3)];
    rt.block_on(async {
        let mut samples = Vec::with_capacity(ITERS);
        for i in 0..ITERS + 1000 {
            let t = Instant::now();
            let out = exec.call_typed(&f, "add", &args, &ctx).await.expect("call");
            let dt = t.elapsed();
            assert_eq!(out.results.len(), 1);
            if i >= 1000 {
                samples.push(dt);
            }
        }
        stats(samples)
    })
}

/// A module of realistic size: many functions with loops and arithmetic.
fn big_module() -> Vec<u8> {
    let mut wat = String::from("(module (memory (export \"memory\") 1)\n");
    for i in 0..1500 {
        wat.push_str(&format!(
            "(func (export \"f{i}\") (param i32) (result i32) (local i32)
               (loop $l
                 (local.set 1 (i32.add (local.get 1) (i32.mul (local.get 0) (i32.const {i}))))
                 (i32.store (i32.and (local.get 1) (i32.const 0xfffc)) (local.get 1))
                 (local.set 0 (i32.sub (local.get 0) (i32.const 1)))
                 (br_if $l (i32.gt_s (local.get 0) (i32.const 0))))
               (i32.xor (local.get 1) (i32.load (i32.const {off}))))\n",
            off = (i * 4) % 60000
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("valid wat")
}

fn compile_times() {
    let wasm = big_module();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = || EngineConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        pool_total_instances: 16,
        ..Default::default()
    };
    let mut scratch = Vec::new();
    let mut cached = Vec::new();
    for _ in 0..5 {
        let _ = std::fs::remove_dir_all(dir.path());
        let exec = Executor::new(cfg()).expect("executor");
        let t = Instant::now();
        exec.compile(&wasm).expect("compile");
        scratch.push(t.elapsed());
        assert_eq!(exec.cache_stats().compiles, 1);
        let exec = Executor::new(cfg()).expect("executor");
        let t = Instant::now();
        exec.compile(&wasm).expect("compile");
        cached.push(t.elapsed());
        assert_eq!(exec.cache_stats().hits, 1);
    }
    let (s, c) = (stats(scratch), stats(cached));
    println!(
        "compile {} KiB module: from scratch p50 {:.1} ms, from disk cache p50 {:.2} ms ({:.0}x faster)",
        wasm.len() / 1024,
        s.p50.as_secs_f64() * 1e3,
        c.p50.as_secs_f64() * 1e3,
        s.p50.as_secs_f64() / c.p50.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either. Run a short smoke version under `cargo test`.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut pooling_sync = wasmtime::Config::new();
    pooling_sync.allocation_strategy(wasmtime::InstanceAllocationStrategy::pooling());
    let bare_default = bare_wasmtime(&wasmtime::Config::new());
    let bare_pooling = bare_wasmtime(&pooling_sync);
    let bare_async = bare_wasmtime_async(&rt);
    let ours = ours(&rt);
    println!("instantiate + call add(2,3), {ITERS} iterations each:");
    report("bare wasmtime (default allocator, sync)", &bare_default);
    report("bare wasmtime (pooling allocator, sync)", &bare_pooling);
    report("bare wasmtime (pooling allocator, async)", &bare_async);
    report("tensor-wasm Executor::call_typed", &ours);
    let ratio = |a: &Stats, b: &Stats| a.p50.as_secs_f64() / b.p50.as_secs_f64();
    println!(
        "p50 ratio ours / bare pooling sync {:.2}x, / bare pooling async {:.2}x, / bare default {:.2}x",
        ratio(&ours, &bare_pooling),
        ratio(&ours, &bare_async),
        ratio(&ours, &bare_default),
    );
    compile_times();
    let _ = Limits::default();
}
