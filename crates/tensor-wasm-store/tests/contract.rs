//! One contract suite, run against every store backend through the
//! `FunctionStore` trait alone. A new backend (PostgreSQL) adds itself to
//! [`BACKENDS`] and must pass all of it, including export → import round
//! trips to and from every other backend.

mod support;

use std::sync::Arc;

use support::{record, wasm_for};
use tensor_wasm_store::backup::{backup_data_dir_with_store, import_backup_store};
use tensor_wasm_store::{
    FunctionId, FunctionStore, MemoryStore, RedbStore, SCHEMA_VERSION, StoreError,
};

/// A fresh, empty store of one backend; `_dir` keeps its files alive.
struct Fresh {
    store: Arc<dyn FunctionStore>,
    _dir: Option<tempfile::TempDir>,
}

/// Opens an empty store of one backend.
type Open = fn() -> Fresh;

/// Every backend under test: a name and how to open an empty store.
const BACKENDS: [(&str, Open); 2] = [("redb", redb), ("memory", memory)];

fn redb() -> Fresh {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_in_data_dir(dir.path()).expect("open redb");
    Fresh {
        store: Arc::new(store),
        _dir: Some(dir),
    }
}

fn memory() -> Fresh {
    Fresh {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
    }
}

async fn deploy(store: &dyn FunctionStore, id: &str, tenant: &str, seed: u64) {
    let wasm = wasm_for(seed);
    store
        .create(&record(id, tenant, &wasm), &wasm)
        .await
        .expect("create");
}

fn id(s: &str) -> FunctionId {
    FunctionId(s.to_owned())
}

fn ids(records: &[tensor_wasm_store::FunctionRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.0.as_str()).collect()
}

#[tokio::test]
async fn every_backend_deploys_reads_lists_and_deletes() {
    for (name, open) in BACKENDS {
        let fresh = open();
        let store = fresh.store.as_ref();
        assert_eq!(store.count().await.expect("count"), 0, "{name}");
        deploy(store, "fn_b", "acme", 2).await;
        deploy(store, "fn_a", "acme", 1).await;
        deploy(store, "fn_c", "globex", 3).await;

        let a = store.get(&id("fn_a")).await.expect("get");
        assert_eq!(a, Some(record("fn_a", "acme", &wasm_for(1))), "{name}");
        let bytes = store.wasm(&id("fn_c")).await.expect("wasm");
        assert_eq!(bytes, Some(wasm_for(3)), "{name}");
        assert_eq!(store.get(&id("fn_x")).await.expect("get"), None, "{name}");
        assert_eq!(store.wasm(&id("fn_x")).await.expect("wasm"), None, "{name}");
        let all = store.list(None).await.expect("list");
        assert_eq!(ids(&all), ["fn_a", "fn_b", "fn_c"], "{name}");
        assert_eq!(store.count().await.expect("count"), 3, "{name}");

        let wasm = wasm_for(9);
        match store.create(&record("fn_a", "globex", &wasm), &wasm).await {
            Err(StoreError::AlreadyExists(dup)) => assert_eq!(dup, id("fn_a"), "{name}"),
            other => panic!("{name}: expected AlreadyExists, got {other:?}"),
        }
        let bytes = store.wasm(&id("fn_a")).await.expect("wasm");
        assert_eq!(
            bytes,
            Some(wasm_for(1)),
            "{name}: a refused create changes nothing"
        );

        assert!(store.delete(&id("fn_b")).await.expect("delete"), "{name}");
        assert!(!store.delete(&id("fn_b")).await.expect("delete"), "{name}");
        assert_eq!(store.get(&id("fn_b")).await.expect("get"), None, "{name}");
        assert_eq!(store.wasm(&id("fn_b")).await.expect("wasm"), None, "{name}");
        assert_eq!(store.count().await.expect("count"), 2, "{name}");
    }
}

#[tokio::test]
async fn every_backend_filters_the_list_by_tenant_in_id_order() {
    for (name, open) in BACKENDS {
        let fresh = open();
        let store = fresh.store.as_ref();
        deploy(store, "fn_3", "acme", 3).await;
        deploy(store, "fn_1", "acme", 1).await;
        deploy(store, "fn_2", "globex", 2).await;
        let acme = store.list(Some("acme")).await.expect("list");
        assert_eq!(ids(&acme), ["fn_1", "fn_3"], "{name}");
        let globex = store.list(Some("globex")).await.expect("list");
        assert_eq!(ids(&globex), ["fn_2"], "{name}");
        let nobody = store.list(Some("initech")).await.expect("list");
        assert!(nobody.is_empty(), "{name}");
    }
}

#[tokio::test]
async fn export_then_import_into_a_fresh_store_of_each_kind_keeps_every_function() {
    for (from_name, open_from) in BACKENDS {
        let source = open_from();
        for i in 0..6 {
            let tenant = if i % 2 == 0 { "acme" } else { "globex" };
            deploy(source.store.as_ref(), &format!("fn_{i}"), tenant, i).await;
        }
        let expected = source.store.list(None).await.expect("list");
        for (to_name, open_to) in BACKENDS {
            let case = format!("{from_name} -> {to_name}");
            let export = source.store.export().await.expect("export");
            assert_eq!(export.info.function_count, 6, "{case}");
            assert_eq!(export.info.schema_version, SCHEMA_VERSION, "{case}");
            let target = open_to();
            let info = target.store.import(export.stream).await.expect("import");
            assert_eq!(info, export.info, "{case}");
            assert_eq!(
                target.store.list(None).await.expect("list"),
                expected,
                "{case}"
            );
            for i in 0..6 {
                let bytes = target.store.wasm(&id(&format!("fn_{i}"))).await;
                assert_eq!(bytes.expect("wasm"), Some(wasm_for(i)), "{case}");
            }
            let acme = target.store.list(Some("acme")).await.expect("list");
            assert_eq!(ids(&acme), ["fn_0", "fn_2", "fn_4"], "{case}");
            // The imported store is an ordinary one: it takes new deploys.
            deploy(target.store.as_ref(), "fn_new", "acme", 99).await;
            assert_eq!(target.store.count().await.expect("count"), 7, "{case}");
        }
        // Exporting changed nothing in the source.
        assert_eq!(source.store.list(None).await.expect("list"), expected);
    }
}

#[tokio::test]
async fn import_into_a_store_that_holds_functions_is_refused_and_changes_nothing() {
    for (name, open) in BACKENDS {
        let source = open();
        deploy(source.store.as_ref(), "fn_in_export", "acme", 1).await;
        let export = source.store.export().await.expect("export");
        let target = open();
        deploy(target.store.as_ref(), "fn_kept", "acme", 2).await;
        let err = target
            .store
            .import(export.stream)
            .await
            .expect_err("non-empty target");
        assert!(err.to_string().contains("empty store"), "{name}: {err}");
        let left = target.store.list(None).await.expect("list");
        assert_eq!(ids(&left), ["fn_kept"], "{name}");
    }
}

#[tokio::test]
async fn import_of_a_stream_that_is_not_an_export_is_refused() {
    for (name, open) in BACKENDS {
        let target = open();
        let garbage: Box<dyn std::io::Read + Send> = Box::new(&b"not a store at all"[..]);
        target.store.import(garbage).await.expect_err(name);
        assert_eq!(target.store.count().await.expect("count"), 0, "{name}");
    }
}

#[tokio::test]
async fn online_backup_of_each_kind_imports_into_each_kind() {
    for (from_name, open_from) in BACKENDS {
        let source = open_from();
        deploy(source.store.as_ref(), "fn_a", "acme", 1).await;
        deploy(source.store.as_ref(), "fn_b", "globex", 2).await;
        let data = tempfile::tempdir().expect("data dir");
        let out = tempfile::tempdir().expect("out");
        let to = out.path().join("backup");
        let manifest = backup_data_dir_with_store(source.store.as_ref(), data.path(), &to)
            .await
            .expect("backup");
        assert_eq!(manifest.function_count, 2, "{from_name}");
        for (to_name, open_to) in BACKENDS {
            let target = open_to();
            import_backup_store(target.store.as_ref(), &to)
                .await
                .expect("import backup");
            let all = target.store.list(None).await.expect("list");
            assert_eq!(ids(&all), ["fn_a", "fn_b"], "{from_name} -> {to_name}");
        }
    }
}
