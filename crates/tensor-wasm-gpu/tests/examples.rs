//! The example guests (`guests/examples/*`) end to end on the CPU backend:
//! built for wasm32-wasip1 by this test, run as WASI commands with the GPU
//! imports linked, their stdout checked.

mod support;

use std::path::Path;
use support::cpu_runtime;
use tensor_wasm_gpu::{GpuQuotas, GpuSession, add_to_linker};
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

#[path = "../../../guests/build_support.rs"]
mod build_support;

fn guest_dir() -> &'static Path {
    build_support::guest_dir(env!("CARGO_MANIFEST_DIR"))
}

struct State {
    wasi: WasiP1Ctx,
    gpu: GpuSession,
}

struct Outcome {
    stdout: String,
    stderr: String,
    exit_code: i32,
}

async fn run_example(name: &str, args: &[&str], stdin: &str) -> Outcome {
    let wasm = std::fs::read(guest_dir().join(format!("{name}.wasm"))).expect("guest wasm");
    let engine = Engine::new(&wasmtime::Config::new()).expect("engine");
    let module = Module::new(&engine, &wasm).expect("compile guest");
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |s: &mut State| &mut s.wasi).expect("wasi");
    add_to_linker(&mut linker, |s: &mut State| &mut s.gpu).expect("gpu");
    let stdout = MemoryOutputPipe::new(1 << 20);
    let stderr = MemoryOutputPipe::new(1 << 20);
    let mut argv = vec![name];
    argv.extend_from_slice(args);
    let wasi = WasiCtxBuilder::new()
        .args(&argv)
        .stdin(MemoryInputPipe::new(stdin.as_bytes().to_vec()))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .build_p1();
    let rt = cpu_runtime(GpuQuotas::default());
    // The examples' tenant may load raw PTX (the operator's opt-in), so
    // ptx-saxpy shows the CPU backend's answer to a launch.
    rt.allow_raw_ptx(["examples".to_owned()]);
    let mut store = Store::new(
        &engine,
        State {
            wasi,
            gpu: GpuSession::new(rt.clone(), "examples"),
        },
    );
    let instance = linker
        .instantiate_async(&mut store, &module)
        .await
        .expect("instantiate");
    let start = instance
        .get_typed_func::<(), ()>(&mut store, "_start")
        .expect("_start");
    let exit_code = match start.call_async(&mut store, ()).await {
        Ok(()) => 0,
        Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(exit) => exit.0,
            None => panic!("{name} trapped: {e:?}"),
        },
    };
    drop(store);
    assert_eq!(rt.tenant_memory_in_use("examples"), 0, "buffers freed");
    Outcome {
        stdout: String::from_utf8_lossy(&stdout.contents()).into_owned(),
        stderr: String::from_utf8_lossy(&stderr.contents()).into_owned(),
        exit_code,
    }
}

#[tokio::test]
async fn vector_add_example_adds_a_million_elements() {
    let out = run_example("vector-add", &["1000000"], "").await;
    assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
    // Σ 3i for i < 1e6 = 1.5e12 - 1.5e6
    assert!(
        out.stdout
            .contains("vector-add n=1000000 backend=Cpu ok checksum=1499998500000"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn matmul_example_reads_its_size_from_stdin() {
    let out = run_example("matmul", &[], "96\n").await;
    assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("matmul n=96 backend=Cpu ok"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn ptx_saxpy_example_explains_it_needs_cuda_and_falls_back() {
    let out = run_example("ptx-saxpy", &["5000"], "").await;
    assert_eq!(out.exit_code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("needs a CUDA device"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("ptx-saxpy n=5000 backend=Cpu path=builtin ok"),
        "{}",
        out.stdout
    );
}
