//! Shared helpers for the integration tests: an async engine configured like
//! the exec crate's, and a "passthrough" guest whose exports forward straight
//! to the `tw_gpu_v1` imports, so tests drive every host function through a
//! real Wasm call with arbitrary (including hostile) arguments.
#![allow(dead_code)]

use std::sync::Arc;
use tensor_wasm_gpu::{GpuConfig, GpuQuotas, GpuRuntime, GpuSession, add_to_linker};
use wasmtime::{Config, Engine, Instance, Linker, Module, Store, Val};

pub struct Host {
    pub gpu: GpuSession,
}

pub fn engine() -> Engine {
    let mut cfg = Config::new();
    // `async_support(true)` is implied in Wasmtime 48 (the setter is deprecated);
    // `call_async` below is what the exec crate uses.
    cfg.epoch_interruption(true);
    Engine::new(&cfg).expect("engine")
}

pub fn cpu_runtime(quotas: GpuQuotas) -> Arc<GpuRuntime> {
    GpuRuntime::new(GpuConfig {
        backend: "cpu".parse().expect("backend"),
        cache_dir: None,
        quotas,
        cache_key: None,
    })
    .expect("cpu runtime")
}

pub const PASSTHROUGH: &str = r#"
(module
  (import "tw_gpu_v1" "abi_version" (func $abi_version (result i32)))
  (import "tw_gpu_v1" "backend_kind" (func $backend_kind (result i32)))
  (import "tw_gpu_v1" "last_error" (func $last_error (param i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_create" (func $buffer_create (param i64 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_free" (func $buffer_free (param i32) (result i32)))
  (import "tw_gpu_v1" "buffer_size" (func $buffer_size (param i32 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_write" (func $buffer_write (param i32 i64 i32 i32) (result i32)))
  (import "tw_gpu_v1" "buffer_read" (func $buffer_read (param i32 i64 i32 i32) (result i32)))
  (import "tw_gpu_v1" "kernel_load" (func $kernel_load (param i32 i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "kernel_free" (func $kernel_free (param i32) (result i32)))
  (import "tw_gpu_v1" "kernel_launch" (func $kernel_launch (param i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "synchronize" (func $synchronize (result i32)))
  (import "tw_gpu_v1" "op_vector_add" (func $op_vector_add (param i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_saxpy" (func $op_saxpy (param f32 i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_matmul" (func $op_matmul (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_softmax" (func $op_softmax (param i32 i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_sum" (func $op_sum (param i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_max" (func $op_max (param i32 i32 i32) (result i32)))
  (import "tw_gpu_v1" "op_relu" (func $op_relu (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) call $abi_version)
  (func (export "backend_kind") (result i32) call $backend_kind)
  (func (export "last_error") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $last_error)
  (func (export "buffer_create") (param i64 i32) (result i32)
    local.get 0 local.get 1 call $buffer_create)
  (func (export "buffer_free") (param i32) (result i32) local.get 0 call $buffer_free)
  (func (export "buffer_size") (param i32 i32) (result i32)
    local.get 0 local.get 1 call $buffer_size)
  (func (export "buffer_write") (param i32 i64 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $buffer_write)
  (func (export "buffer_read") (param i32 i64 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $buffer_read)
  (func (export "kernel_load") (param i32 i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 call $kernel_load)
  (func (export "kernel_free") (param i32) (result i32) local.get 0 call $kernel_free)
  (func (export "kernel_launch") (param i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $kernel_launch)
  (func (export "synchronize") (result i32) call $synchronize)
  (func (export "op_vector_add") (param i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $op_vector_add)
  (func (export "op_saxpy") (param f32 i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 call $op_saxpy)
  (func (export "op_matmul") (param i32 i32 i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 local.get 4 local.get 5 call $op_matmul)
  (func (export "op_softmax") (param i32 i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 local.get 3 call $op_softmax)
  (func (export "op_sum") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $op_sum)
  (func (export "op_max") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $op_max)
  (func (export "op_relu") (param i32 i32 i32) (result i32)
    local.get 0 local.get 1 local.get 2 call $op_relu)
  ;; allocate a buffer, then trap: cleanup must still happen
  (func (export "alloc_then_trap") (param i64) (result i32)
    local.get 0 i32.const 0 call $buffer_create drop unreachable)
  ;; allocate a buffer, then spin until the deadline
  (func (export "alloc_then_spin") (param i64) (result i32)
    local.get 0 i32.const 0 call $buffer_create drop
    (loop $l br $l) i32.const 0)
)
"#;

/// One instance of a guest module with its own store and GPU session.
pub struct Guest {
    pub store: Store<Host>,
    pub instance: Instance,
}

impl Guest {
    pub async fn new(engine: &Engine, wat: &str, rt: Arc<GpuRuntime>, tenant: &str) -> Guest {
        let module = Module::new(engine, wat::parse_str(wat).expect("wat")).expect("module");
        let mut linker: Linker<Host> = Linker::new(engine);
        add_to_linker(&mut linker, |h: &mut Host| &mut h.gpu).expect("link");
        let mut store = Store::new(
            engine,
            Host {
                gpu: GpuSession::new(rt, tenant),
            },
        );
        store.set_epoch_deadline(1_000_000);
        let instance = linker
            .instantiate_async(&mut store, &module)
            .await
            .expect("instantiate");
        Guest { store, instance }
    }

    pub async fn passthrough(engine: &Engine, rt: Arc<GpuRuntime>, tenant: &str) -> Guest {
        Self::new(engine, PASSTHROUGH, rt, tenant).await
    }

    /// Calls export `name`; returns its i32 result.
    pub async fn call(&mut self, name: &str, args: &[Val]) -> anyhow::Result<i32> {
        let f = self
            .instance
            .get_func(&mut self.store, name)
            .ok_or_else(|| anyhow::anyhow!("no export {name}"))?;
        let mut out = [Val::I32(0)];
        f.call_async(&mut self.store, args, &mut out)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(out[0].unwrap_i32())
    }

    pub async fn i32(&mut self, name: &str, args: &[Val]) -> i32 {
        self.call(name, args).await.expect("call")
    }

    pub fn memory(&mut self) -> wasmtime::Memory {
        self.instance
            .get_memory(&mut self.store, "memory")
            .expect("memory export")
    }

    pub fn write(&mut self, at: usize, bytes: &[u8]) {
        let mem = self.memory();
        mem.write(&mut self.store, at, bytes).expect("write memory");
    }

    pub fn read(&mut self, at: usize, len: usize) -> Vec<u8> {
        let mem = self.memory();
        let mut out = vec![0; len];
        mem.read(&self.store, at, &mut out).expect("read memory");
        out
    }

    pub fn read_u32(&mut self, at: usize) -> u32 {
        u32::from_le_bytes(self.read(at, 4).try_into().expect("4 bytes"))
    }

    pub fn write_f32s(&mut self, at: usize, v: &[f32]) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.write(at, &bytes);
    }

    pub fn read_f32s(&mut self, at: usize, n: usize) -> Vec<f32> {
        self.read(at, n * 4)
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect()
    }

    /// Creates a buffer through the guest; returns its handle.
    pub async fn create(&mut self, size: i64) -> u32 {
        let rc = self
            .i32("buffer_create", &[Val::I64(size), Val::I32(0)])
            .await;
        assert_eq!(rc, 0, "buffer_create");
        self.read_u32(0)
    }

    pub async fn last_error(&mut self) -> String {
        let rc = self
            .i32("last_error", &[Val::I32(1024), Val::I32(1024), Val::I32(8)])
            .await;
        assert_eq!(rc, 0);
        let len = self.read_u32(8) as usize;
        String::from_utf8(self.read(1024, len.min(1024))).expect("utf8")
    }
}

/// Encodes a kernel argument record.
pub fn arg(tag: u32, payload: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(16);
    r.extend_from_slice(&tag.to_le_bytes());
    r.extend_from_slice(&0u32.to_le_bytes());
    r.extend_from_slice(&payload.to_le_bytes());
    r
}

/// Encodes a launch record.
pub fn launch_record(grid: [u32; 3], block: [u32; 3], shared: u32) -> Vec<u8> {
    grid.iter()
        .chain(block.iter())
        .chain(std::iter::once(&shared))
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

/// The `ptx-saxpy` example guest's kernel (one copy of the PTX).
pub const SAXPY_PTX: &str = include_str!("../../../../guests/examples/ptx-saxpy/src/saxpy.ptx");
