//! Rollback safety: a binary refuses a store written by a newer schema
//! unless that schema declared itself backward-readable.

mod support;

use support::{assert_consistent, deploy, wait};
use tensor_wasm_store::test_support::rewrite_schema;
use tensor_wasm_store::{
    FunctionId, FunctionStore, MIN_READER_VERSION, RedbStore, SCHEMA_VERSION, STORE_FILE_NAME,
    StoreError,
};

fn store_with_one_function() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
    deploy(&store, "fn_keep", "acme", 7);
    dir
}

#[test]
fn fresh_store_records_this_binarys_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RedbStore::open_in_data_dir(dir.path()).expect("open");
    let info = store.schema();
    assert_eq!(info.stored_version, SCHEMA_VERSION);
    assert_eq!(info.min_reader_version, MIN_READER_VERSION);
    assert!(!info.is_newer_than_binary());
}

#[test]
fn store_written_by_a_newer_schema_is_refused_naming_both_versions() {
    let dir = store_with_one_function();
    let path = dir.path().join(STORE_FILE_NAME);
    let newer = SCHEMA_VERSION + 1;
    rewrite_schema(&path, newer, None).expect("bump");
    let err = RedbStore::open(&path).expect_err("newer schema must be refused");
    match &err {
        StoreError::SchemaTooNew { found, supported } => {
            assert_eq!((*found, *supported), (newer, SCHEMA_VERSION));
        }
        other => panic!("expected SchemaTooNew, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&format!("version {newer}")), "{msg}");
    assert!(msg.contains(&format!("up to {SCHEMA_VERSION}")), "{msg}");
}

#[test]
fn newer_schema_that_needs_a_newer_reader_is_refused() {
    let dir = store_with_one_function();
    let path = dir.path().join(STORE_FILE_NAME);
    rewrite_schema(&path, SCHEMA_VERSION + 2, Some(SCHEMA_VERSION + 1)).expect("bump");
    assert!(matches!(
        RedbStore::open(&path),
        Err(StoreError::SchemaTooNew { .. })
    ));
}

#[test]
fn newer_backward_readable_schema_opens_serves_and_keeps_its_version() {
    let dir = store_with_one_function();
    let path = dir.path().join(STORE_FILE_NAME);
    let newer = SCHEMA_VERSION + 1;
    rewrite_schema(&path, newer, Some(SCHEMA_VERSION)).expect("bump");
    {
        let store = RedbStore::open(&path).expect("backward-readable store opens");
        let info = store.schema();
        assert_eq!(info.stored_version, newer);
        assert!(info.is_newer_than_binary());
        assert!(
            wait(store.get(&FunctionId("fn_keep".into())))
                .expect("get")
                .is_some()
        );
        deploy(&store, "fn_after_rollback", "acme", 8);
        assert_eq!(assert_consistent(&store).len(), 2);
    }
    // The rolled-back binary did not mark the store as older than it is.
    let store = RedbStore::open(&path).expect("reopen");
    assert_eq!(store.schema().stored_version, newer);
    assert_eq!(store.schema().min_reader_version, SCHEMA_VERSION);
}
