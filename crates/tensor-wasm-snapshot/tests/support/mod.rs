//! Shared helpers for the snapshot integration tests: a plain synchronous
//! Wasmtime engine, so these tests exercise capture/restore and the file
//! format without the executor's async machinery.
#![allow(dead_code)]

use tensor_wasm_snapshot::capture::{capture_state, restore_state};
use tensor_wasm_snapshot::{
    EngineFingerprint, InstrumentedModule, Snapshot, SnapshotMeta, instrument, now_unix_ms,
};
use wasmtime::{Engine, Instance, Module, Store};

/// A guest with state in every place a snapshot must reach: an exported and
/// a non-exported memory, and exported and non-exported mutable globals of
/// every numeric type.
pub const STATEFUL_WAT: &str = r#"(module
  (memory $m0 (export "memory") 1 64)
  (memory $m1 2 64)
  (global $g_i32 (export "counter") (mut i32) (i32.const 7))
  (global $g_i64 (mut i64) (i64.const -1))
  (global $g_f32 (mut f32) (f32.const 1.5))
  (global $g_f64 (mut f64) (f64.const -2.25))
  (global $g_v128 (mut v128) (v128.const i64x2 1 2))
  (global $const i32 (i32.const 99))
  (data (memory $m0) (i32.const 16) "static data")
  (func (export "set_globals") (param i32 i64 f32 f64)
    (global.set $g_i32 (local.get 0)) (global.set $g_i64 (local.get 1))
    (global.set $g_f32 (local.get 2)) (global.set $g_f64 (local.get 3))
    (global.set $g_v128 (i64x2.splat (local.get 1))))
  (func (export "get_i32") (result i32) (global.get $g_i32))
  (func (export "get_i64") (result i64) (global.get $g_i64))
  (func (export "get_f32_bits") (result i32) (i32.reinterpret_f32 (global.get $g_f32)))
  (func (export "get_f64_bits") (result i64) (i64.reinterpret_f64 (global.get $g_f64)))
  (func (export "get_v128_lane1") (result i64) (i64x2.extract_lane 1 (global.get $g_v128)))
  (func (export "grow0") (param i32) (result i32) (memory.grow $m0 (local.get 0)))
  (func (export "grow1") (param i32) (result i32) (memory.grow $m1 (local.get 0)))
  (func (export "store1") (param i32 i32) (i32.store8 $m1 (local.get 0) (local.get 1)))
  (func (export "load0") (param i32) (result i32) (i32.load8_u $m0 (local.get 0)))
  (func (export "load1") (param i32) (result i32) (i32.load8_u $m1 (local.get 0)))
  ;; FNV-1a over the first `len` bytes of memory 1 (a behavioural fingerprint)
  (func (export "hash1") (param $len i32) (result i32)
    (local $i i32) (local $h i32)
    (local.set $h (i32.const 0x811c9dc5))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
      (local.set $h (i32.mul (i32.xor (local.get $h) (i32.load8_u $m1 (local.get $i)))
                             (i32.const 0x01000193)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $h)))"#;

/// The lookup-table guest of the benchmark.
pub const LOOKUP_WAT: &str = include_str!("../../guests/lookup_table.wat");

/// A module instrumented for snapshots plus a synchronous engine to run it.
pub struct Harness {
    pub engine: Engine,
    pub module: Module,
    pub instrumented: InstrumentedModule,
}

impl Harness {
    pub fn new(source: &str) -> Self {
        let engine = Engine::default();
        let instrumented = instrument(source.as_bytes()).expect("module instruments");
        let module =
            Module::new(&engine, &instrumented.wasm).expect("instrumented module compiles");
        Self {
            engine,
            module,
            instrumented,
        }
    }

    pub fn fresh(&self) -> (Store<()>, Instance) {
        let mut store = Store::new(&self.engine, ());
        let instance = Instance::new(&mut store, &self.module, &[]).expect("instantiates");
        (store, instance)
    }

    pub fn capture(&self, store: &mut Store<()>, instance: &Instance) -> Snapshot {
        let (mut base_store, base) = self.fresh();
        let state = capture_state(
            &mut *store,
            instance,
            Some((&mut base_store, &base)),
            &self.instrumented.layout,
        )
        .expect("captures");
        Snapshot {
            module: self.instrumented.original,
            engine: EngineFingerprint::of(&self.engine),
            created_at_unix_ms: now_unix_ms(),
            meta: SnapshotMeta::default(),
            state,
        }
    }

    pub fn restore(&self, snapshot: &Snapshot) -> (Store<()>, Instance) {
        let (mut store, instance) = self.fresh();
        restore_state(
            &mut store,
            &instance,
            &self.instrumented.layout,
            &snapshot.state,
        )
        .expect("restores");
        (store, instance)
    }
}

pub fn call<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
    store: &mut Store<()>,
    instance: &Instance,
    name: &str,
    params: P,
) -> R {
    instance
        .get_typed_func::<P, R>(&mut *store, name)
        .expect("export exists")
        .call(&mut *store, params)
        .expect("call succeeds")
}

/// Every byte of every memory and every global the layout names.
pub fn full_state(
    h: &Harness,
    store: &mut Store<()>,
    instance: &Instance,
) -> (Vec<Vec<u8>>, Vec<String>) {
    let mems = h
        .instrumented
        .layout
        .memories
        .iter()
        .map(|m| {
            instance
                .get_memory(&mut *store, &m.export)
                .expect("memory export")
                .data(&*store)
                .to_vec()
        })
        .collect();
    let globals = h
        .instrumented
        .layout
        .globals
        .iter()
        .map(|g| {
            let v = instance
                .get_global(&mut *store, &g.export)
                .expect("global export")
                .get(&mut *store);
            match v {
                wasmtime::Val::I32(x) => format!("i32:{x}"),
                wasmtime::Val::I64(x) => format!("i64:{x}"),
                wasmtime::Val::F32(x) => format!("f32:{x:#x}"),
                wasmtime::Val::F64(x) => format!("f64:{x:#x}"),
                wasmtime::Val::V128(x) => format!("v128:{:#x}", x.as_u128()),
                other => format!("{other:?}"),
            }
        })
        .collect();
    (mems, globals)
}
