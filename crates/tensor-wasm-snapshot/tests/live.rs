//! Capture and restore through the real executor (pooling allocator,
//! copy-on-write images, limits), as the CLI and the gateway use them.

mod support;

use serde_json::json;
use support::LOOKUP_WAT;
use tensor_wasm_exec::{EngineConfig, Executor, InvokeContext, TypedValue};
use tensor_wasm_snapshot::format::{decode, encode};
use tensor_wasm_snapshot::{
    RestoreOptions, SnapshotError, SnapshotMeta, SnapshotModule, VerifyPolicy, WarmStart, restore,
    restore_and_call, warm_and_capture,
};

fn executor() -> Executor {
    Executor::new(EngineConfig {
        pool_total_instances: 16,
        ..EngineConfig::default()
    })
    .expect("executor")
}

fn i32_result(results: &[TypedValue]) -> i32 {
    match results {
        [TypedValue::I32(v)] => *v,
        other => panic!("expected one i32, got {other:?}"),
    }
}

#[tokio::test]
async fn first_call_from_a_snapshot_answers_like_the_warmed_instance() {
    let exec = executor();
    let ctx = InvokeContext::new("t1");
    let module = SnapshotModule::prepare(&exec, LOOKUP_WAT.as_bytes()).expect("prepares");

    // Cold: a fresh instance has no table.
    let cold = exec
        .call_typed(module.compiled(), "lookup", &[json!(7)], &ctx)
        .await
        .expect("calls");
    assert_eq!(i32_result(&cold.results), -1);

    let snapshot = warm_and_capture(&exec, &module, Some("init"), &ctx, SnapshotMeta::default())
        .await
        .expect("captures");
    assert_eq!(snapshot.meta.init_export.as_deref(), Some("init"));
    assert_eq!(
        snapshot.state.stored_bytes(),
        16 << 20,
        "exactly the table is stored"
    );
    let file = encode(&snapshot, None, None).expect("encodes");
    let decoded = decode(&file, &VerifyPolicy::default(), None).expect("decodes");

    let decoded = std::sync::Arc::new(decoded);
    let warm = WarmStart::prepare(&exec, &module, decoded.clone()).expect("prepares");
    assert!(warm.is_baked());
    // The reference answers, from an instance warmed the slow way.
    let mut reference = exec
        .instantiate(module.compiled(), &ctx)
        .await
        .expect("instantiates");
    reference.call_typed("init", &[]).await.expect("init");
    for key in [0, 7, 4242, 4_194_303] {
        let expected = i32_result(
            &reference
                .call_typed("lookup", &[json!(key)])
                .await
                .expect("calls")
                .results,
        );
        let got = restore_and_call(&exec, &module, &decoded, "lookup", &[json!(key)], &ctx)
            .await
            .expect("restores and calls");
        assert_eq!(i32_result(&got.results), expected, "key {key}");
        let baked = warm
            .call_typed(&exec, "lookup", &[json!(key)], &ctx)
            .await
            .expect("calls");
        assert_eq!(i32_result(&baked.results), expected, "baked, key {key}");
    }
}

#[tokio::test]
async fn snapshot_is_refused_by_another_module_and_by_a_lower_memory_limit() {
    let exec = executor();
    let ctx = InvokeContext::new("t1");
    let module = SnapshotModule::prepare(&exec, LOOKUP_WAT.as_bytes()).expect("prepares");
    let snapshot = warm_and_capture(&exec, &module, Some("init"), &ctx, SnapshotMeta::default())
        .await
        .expect("captures");

    let other = SnapshotModule::prepare(
        &exec,
        LOOKUP_WAT.replace("0x45d9f3b", "0x45d9f3c").as_bytes(),
    )
    .expect("prepares");
    let Err(err) = restore(&exec, &other, &snapshot, &ctx, RestoreOptions::default()).await else {
        panic!("restore into another module succeeded");
    };
    assert!(matches!(err, SnapshotError::WrongModule { .. }), "{err}");

    let mut small = InvokeContext::new("t1");
    small.limits.max_memory_bytes = 8 << 20;
    let Err(err) = restore(&exec, &module, &snapshot, &small, RestoreOptions::default()).await
    else {
        panic!("restore above the memory limit succeeded");
    };
    assert!(matches!(err, SnapshotError::Restore(_)), "{err}");
}
