//! Capture → file → restore yields an instance indistinguishable from the
//! captured one.

mod support;

use proptest::prelude::*;
use support::{Harness, LOOKUP_WAT, STATEFUL_WAT, call, full_state};
use tensor_wasm_snapshot::VerifyPolicy;
use tensor_wasm_snapshot::format::{decode, encode};
use tensor_wasm_snapshot::warm::bake;

const PAGE: usize = 65536;

/// One random mutation of the live instance, applied through the guest's own
/// exports and through the host's view of memory.
#[derive(Debug, Clone)]
enum Mutation {
    Write {
        memory: usize,
        offset: usize,
        bytes: Vec<u8>,
    },
    Grow {
        memory: usize,
        pages: u32,
    },
    Globals {
        a: i32,
        b: i64,
        c: u32,
        d: u64,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (0..2usize, 0..(3 * PAGE), proptest::collection::vec(any::<u8>(), 1..9000))
            .prop_map(|(memory, offset, bytes)| Mutation::Write { memory, offset, bytes }),
        1 => (0..2usize, 0..3u32).prop_map(|(memory, pages)| Mutation::Grow { memory, pages }),
        1 => (any::<i32>(), any::<i64>(), any::<u32>(), any::<u64>())
            .prop_map(|(a, b, c, d)| Mutation::Globals { a, b, c, d }),
    ]
}

fn apply(
    h: &Harness,
    store: &mut wasmtime::Store<()>,
    instance: &wasmtime::Instance,
    m: &Mutation,
) {
    match m {
        Mutation::Write {
            memory,
            offset,
            bytes,
        } => {
            let export = &h.instrumented.layout.memories[*memory].export;
            let mem = instance.get_memory(&mut *store, export).expect("memory");
            let data = mem.data_mut(&mut *store);
            let start = (*offset).min(data.len());
            let end = (start + bytes.len()).min(data.len());
            data[start..end].copy_from_slice(&bytes[..end - start]);
        }
        Mutation::Grow { memory, pages } => {
            let name = if *memory == 0 { "grow0" } else { "grow1" };
            let _: i32 = call(store, instance, name, *pages as i32);
        }
        Mutation::Globals { a, b, c, d } => {
            let () = call(
                store,
                instance,
                "set_globals",
                (*a, *b, f32::from_bits(*c), f64::from_bits(*d)),
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_memories_and_globals_survive_capture_file_restore(
        mutations in proptest::collection::vec(mutation(), 0..12)
    ) {
        let h = Harness::new(STATEFUL_WAT);
        let (mut store, live) = h.fresh();
        for m in &mutations {
            apply(&h, &mut store, &live, m);
        }
        let snapshot = h.capture(&mut store, &live);
        let file = encode(&snapshot, None, None).expect("encodes");
        let decoded = decode(&file, &VerifyPolicy::default(), None).expect("decodes");
        prop_assert_eq!(&decoded, &snapshot);

        let (mut rstore, restored) = h.restore(&decoded);
        prop_assert_eq!(full_state(&h, &mut store, &live), full_state(&h, &mut rstore, &restored));
        for export in ["get_i32", "get_f32_bits"] {
            let a: i32 = call(&mut store, &live, export, ());
            let b: i32 = call(&mut rstore, &restored, export, ());
            prop_assert_eq!(a, b);
        }
        for export in ["get_i64", "get_f64_bits", "get_v128_lane1"] {
            let a: i64 = call(&mut store, &live, export, ());
            let b: i64 = call(&mut rstore, &restored, export, ());
            prop_assert_eq!(a, b);
        }
        let a: i32 = call(&mut store, &live, "hash1", 2 * PAGE as i32);
        let b: i32 = call(&mut rstore, &restored, "hash1", 2 * PAGE as i32);
        prop_assert_eq!(a, b);

        // The baked module starts in exactly the same state.
        let baked = bake(&h.instrumented, &decoded.state).expect("bakes").expect("applies");
        let module = wasmtime::Module::new(&h.engine, &baked).expect("baked module compiles");
        let mut bstore = wasmtime::Store::new(&h.engine, ());
        let binst = wasmtime::Instance::new(&mut bstore, &module, &[]).expect("instantiates");
        prop_assert_eq!(full_state(&h, &mut store, &live), full_state(&h, &mut bstore, &binst));
    }
}

#[test]
fn only_pages_that_differ_from_a_fresh_instance_are_stored() {
    let h = Harness::new(STATEFUL_WAT);
    let (mut store, live) = h.fresh();
    let untouched = h.capture(&mut store, &live);
    assert_eq!(
        untouched.state.stored_bytes(),
        0,
        "a fresh instance stores nothing"
    );
    let () = call(&mut store, &live, "store1", (70_000, 1));
    let one_byte = h.capture(&mut store, &live);
    assert_eq!(one_byte.state.stored_bytes(), 4096, "one dirty chunk");
    assert_eq!(one_byte.state.memories[1].segments[0].offset, 65536 + 4096);
    // Pages added by growth are compared with zero, not stored wholesale.
    let _: i32 = call(&mut store, &live, "grow1", 4);
    let () = call(&mut store, &live, "store1", (3 * 65536 + 10, 1));
    let grown = h.capture(&mut store, &live);
    assert_eq!(grown.state.stored_bytes(), 2 * 4096);
}

#[test]
fn restored_lookup_guest_answers_like_the_live_one_without_running_init() {
    let h = Harness::new(LOOKUP_WAT);
    let (mut store, live) = h.fresh();
    let cold: i32 = call(&mut store, &live, "lookup", 12345);
    assert_eq!(cold, -1, "lookup before init");
    let () = call(&mut store, &live, "init", ());
    let snapshot = h.capture(&mut store, &live);
    // The table base is in a non-exported global: instrumentation reached it.
    assert_eq!(snapshot.state.globals.len(), 1);
    let file = encode(&snapshot, None, None).expect("encodes");
    let decoded = decode(&file, &VerifyPolicy::default(), None).expect("decodes");
    let (mut rstore, restored) = h.restore(&decoded);
    for key in [0, 1, 12345, 4_194_303, 999_999] {
        let a: i32 = call(&mut store, &live, "lookup", key);
        let b: i32 = call(&mut rstore, &restored, "lookup", key);
        assert_eq!(a, b, "key {key}");
        assert_ne!(b, -1);
    }
}

#[test]
fn module_with_start_function_is_captured_as_a_full_image() {
    let wat = r#"(module (memory (export "m") 1)
        (global $n (mut i32) (i32.const 0))
        (func $start (i32.store (i32.const 8) (i32.const 42)) (global.set $n (i32.const 1)))
        (start $start)
        (func (export "bump") (global.set $n (i32.add (global.get $n) (i32.const 1)))
            (i32.store (i32.const 8) (i32.const 0)) (i32.store (i32.const 100) (i32.const 5)))
        (func (export "read") (result i32)
            (i32.add (global.get $n) (i32.add (i32.load (i32.const 8)) (i32.load (i32.const 100))))))"#;
    let h = Harness::new(wat);
    let (mut store, live) = h.fresh();
    let () = call(&mut store, &live, "bump", ());
    let snapshot = h.capture(&mut store, &live);
    assert!(snapshot.state.full_image);
    assert!(
        bake(&h.instrumented, &snapshot.state)
            .expect("checks")
            .is_none(),
        "start functions are never baked"
    );
    let file = encode(&snapshot, None, None).expect("encodes");
    let decoded = decode(&file, &VerifyPolicy::default(), None).expect("decodes");
    assert!(decoded.state.full_image);
    let (mut rstore, restored) = h.restore(&decoded);
    // The start function wrote 42 at 8 again; the restore zero-filled it.
    let a: i32 = call(&mut store, &live, "read", ());
    let b: i32 = call(&mut rstore, &restored, "read", ());
    assert_eq!((a, b), (7, 7));
}
