//! The `FunctionStore` contract, checked on `RedbStore` and `MemoryStore`.

mod support;

use std::sync::Arc;
use std::thread;

use proptest::prelude::*;
use support::{assert_consistent, deploy, record, wait, wasm_for};
use tensor_wasm_store::{
    FunctionId, FunctionLimits, FunctionRecord, FunctionStore, MemoryStore, RedbStore,
    STORE_FILE_NAME, StoreError,
};

fn each_store(check: impl Fn(&dyn FunctionStore)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let redb = RedbStore::open_in_data_dir(dir.path()).expect("open");
    check(&redb);
    check(&MemoryStore::new());
}

#[test]
fn create_get_list_delete_round_trip() {
    each_store(|store| {
        assert_eq!(wait(store.count()).ok(), Some(0));
        let rec = deploy(store, "fn_a", "acme", 1);
        assert_eq!(wait(store.get(&rec.id)).expect("get"), Some(rec.clone()));
        assert_eq!(wait(store.wasm(&rec.id)).expect("wasm"), Some(wasm_for(1)));
        assert_eq!(wait(store.list(None)).expect("list"), vec![rec.clone()]);
        assert_eq!(wait(store.count()).ok(), Some(1));

        assert!(wait(store.delete(&rec.id)).expect("delete"));
        assert_eq!(wait(store.get(&rec.id)).expect("get"), None);
        assert_eq!(wait(store.wasm(&rec.id)).expect("wasm"), None);
        assert_eq!(wait(store.count()).ok(), Some(0));
        assert!(!wait(store.delete(&rec.id)).expect("second delete"));
    });
}

#[test]
fn missing_function_reads_as_none() {
    each_store(|store| {
        let id = FunctionId("fn_nope".to_owned());
        assert_eq!(wait(store.get(&id)).ok(), Some(None));
        assert_eq!(wait(store.wasm(&id)).ok(), Some(None));
    });
}

#[test]
fn list_filters_by_tenant_in_id_order() {
    each_store(|store| {
        let c = deploy(store, "fn_c", "acme", 3);
        let a = deploy(store, "fn_a", "acme", 1);
        let b = deploy(store, "fn_b", "globex", 2);
        assert_eq!(
            wait(store.list(Some("acme"))).expect("list"),
            vec![a.clone(), c.clone()]
        );
        assert_eq!(
            wait(store.list(Some("globex"))).expect("list"),
            vec![b.clone()]
        );
        assert_eq!(wait(store.list(Some("initech"))).expect("list"), vec![]);
        assert_eq!(wait(store.list(None)).expect("list"), vec![a, b, c]);
    });
}

#[test]
fn duplicate_id_is_already_exists_and_changes_nothing() {
    each_store(|store| {
        let first = deploy(store, "fn_dup", "acme", 1);
        let other = wasm_for(2);
        let second = record("fn_dup", "globex", &other);
        match wait(store.create(&second, &other)) {
            Err(StoreError::AlreadyExists(id)) => assert_eq!(id, first.id),
            other => panic!("expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(
            wait(store.get(&first.id)).expect("get"),
            Some(first.clone())
        );
        assert_eq!(
            wait(store.wasm(&first.id)).expect("wasm"),
            Some(wasm_for(1))
        );
        assert_eq!(wait(store.count()).ok(), Some(1));
    });
}

#[test]
fn functions_survive_reopen_with_same_ids_and_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deployed = Vec::new();
    {
        let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
        for i in 0..20 {
            deployed.push(deploy(&store, &format!("fn_{i:03}"), "acme", i));
        }
        assert!(wait(store.delete(&deployed[5].id)).expect("delete"));
        deployed.remove(5);
    }
    assert!(dir.path().join(STORE_FILE_NAME).is_file());
    let store = RedbStore::open_in_data_dir(dir.path()).expect("reopen");
    assert_eq!(wait(store.list(None)).expect("list"), deployed);
    for rec in &deployed {
        let seed: u64 = rec.id.0["fn_".len()..].parse().expect("seed");
        assert_eq!(
            wait(store.wasm(&rec.id)).expect("wasm"),
            Some(wasm_for(seed))
        );
    }
    assert_consistent(&store);
}

#[test]
fn second_writer_on_the_same_file_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _server = RedbStore::open_in_data_dir(dir.path()).expect("open");
    let err = RedbStore::open_in_data_dir(dir.path()).expect_err("second writer");
    let msg = err.to_string();
    assert!(msg.contains("already open"), "{msg}");
    assert!(msg.contains(STORE_FILE_NAME), "{msg}");
}

#[test]
fn concurrent_creates_and_deletes_from_many_threads_lose_nothing() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 25;
    let dir = tempfile::tempdir().expect("tempdir");
    let redb: Arc<dyn FunctionStore> =
        Arc::new(RedbStore::open_in_data_dir(dir.path()).expect("open"));
    let memory: Arc<dyn FunctionStore> = Arc::new(MemoryStore::new());
    for store in [redb, memory] {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let seed = t * 1000 + i;
                        let id = format!("fn_{t}_{i:03}");
                        deploy(store.as_ref(), &id, &format!("tenant-{t}"), seed);
                        // Delete every third one right away, racing the others.
                        if i % 3 == 0 {
                            assert!(wait(store.delete(&FunctionId(id))).expect("delete"));
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().expect("thread");
        }
        let ids = assert_consistent(store.as_ref());
        let mut expected: Vec<String> = (0..THREADS)
            .flat_map(|t| {
                (0..PER_THREAD)
                    .filter(|i| i % 3 != 0)
                    .map(move |i| format!("fn_{t}_{i:03}"))
            })
            .collect();
        expected.sort();
        assert_eq!(ids, expected);
        for t in 0..THREADS {
            let mine = wait(store.list(Some(&format!("tenant-{t}")))).expect("list");
            assert_eq!(mine.len() as u64, PER_THREAD - PER_THREAD.div_ceil(3));
        }
    }
}

#[test]
fn memory_store_export_is_a_store_file_that_opens() {
    let memory = MemoryStore::new();
    let a = deploy(&memory, "fn_a", "acme", 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("copy.redb");
    let mut export = wait(memory.export()).expect("export");
    let mut file = std::fs::File::create_new(&dest).expect("create");
    std::io::copy(&mut export.stream, &mut file).expect("copy");
    drop(file);
    let copy = RedbStore::open(&dest).expect("open copy");
    assert_eq!(wait(copy.list(None)).expect("list"), vec![a]);
    assert_eq!(
        wait(copy.wasm(&FunctionId("fn_a".into()))).expect("wasm"),
        Some(wasm_for(1))
    );
}

fn arb_record() -> impl Strategy<Value = (FunctionRecord, Vec<u8>)> {
    (
        "[a-zA-Z0-9_-]{1,40}",
        "\\PC{0,30}",
        "\\PC{0,60}",
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(id, tenant, name, wasm, t, m, f, o)| {
            let mut rec = record(&format!("fn_{id}"), &tenant, &wasm);
            rec.name = name;
            rec.limits = FunctionLimits {
                timeout_ms: t,
                max_memory_bytes: m,
                fuel: f,
                max_output_bytes: o,
            };
            (rec, wasm)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn any_record_and_bytes_round_trip_through_the_store_and_a_reopen(
        (rec, wasm) in arb_record()
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
            wait(store.create(&rec, &wasm)).expect("create");
            prop_assert_eq!(wait(store.get(&rec.id)).expect("get"), Some(rec.clone()));
        }
        let store = RedbStore::open_in_data_dir(dir.path()).expect("reopen");
        prop_assert_eq!(wait(store.get(&rec.id)).expect("get"), Some(rec.clone()));
        prop_assert_eq!(wait(store.wasm(&rec.id)).expect("wasm"), Some(wasm.clone()));
        prop_assert_eq!(wait(store.list(Some(&rec.tenant))).expect("list"), vec![rec.clone()]);
    }

    #[test]
    fn record_json_round_trips_and_tolerates_a_missing_limits_field(
        (rec, _wasm) in arb_record()
    ) {
        let json = serde_json::to_value(&rec).expect("encode");
        let back: FunctionRecord = serde_json::from_value(json.clone()).expect("decode");
        prop_assert_eq!(&back, &rec);
        let mut without_limits = json;
        without_limits.as_object_mut().expect("object").remove("limits");
        let old: FunctionRecord = serde_json::from_value(without_limits).expect("decode old");
        prop_assert_eq!(old.limits, FunctionLimits::default());
    }
}
