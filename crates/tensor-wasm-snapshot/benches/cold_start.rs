//! First-call latency from a snapshot vs a cold start that runs the guest's
//! initialisation, and snapshot size vs memory size.
//!
//! Guest: `guests/lookup_table.wat` — `init` builds a 16 MiB lookup table,
//! `lookup` reads it. Run: `cargo bench -p tensor-wasm-snapshot --bench cold_start`.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use tensor_wasm_exec::{EngineConfig, Executor, InvokeContext};
use tensor_wasm_snapshot::dir::load_file;
use tensor_wasm_snapshot::format::encode;
use tensor_wasm_snapshot::{
    SnapshotDir, SnapshotMeta, SnapshotModule, VerifyPolicy, WarmStart, restore_and_call,
    warm_and_capture,
};

const LOOKUP_WAT: &str = include_str!("../guests/lookup_table.wat");

/// Same table size, but `init` touches one page only: shows what the diff saves.
fn sparse_wat() -> String {
    LOOKUP_WAT.replace(
        "(br_if $fill (i32.lt_u (local.get $i) (global.get $entries))))",
        "(br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))",
    )
}

fn first_call(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data = tempfile::tempdir().expect("tempdir");
    let exec = Executor::new(EngineConfig {
        pool_total_instances: 16,
        // The server's setting: compiled modules cached under <data>/jit-cache.
        cache_dir: Some(data.path().join("jit-cache")),
        ..EngineConfig::default()
    })
    .expect("executor");
    let ctx = InvokeContext::new("bench");
    let plain = exec.compile(LOOKUP_WAT.as_bytes()).expect("compiles");
    let module = SnapshotModule::prepare(&exec, LOOKUP_WAT.as_bytes()).expect("prepares");
    let mut snapshot = rt
        .block_on(warm_and_capture(
            &exec,
            &module,
            Some("init"),
            &ctx,
            SnapshotMeta::default(),
        ))
        .expect("captures");
    let dir = SnapshotDir::in_data_dir(data.path());
    let (_, path) = dir.save(&mut snapshot, None, None).expect("saves");

    // Size report (not timed).
    for (name, wat) in [
        ("lookup (16 MiB table)", LOOKUP_WAT.to_string()),
        ("sparse (1 page touched)", sparse_wat()),
    ] {
        let m = SnapshotModule::prepare(&exec, wat.as_bytes()).expect("prepares");
        let s = rt
            .block_on(warm_and_capture(
                &exec,
                &m,
                Some("init"),
                &ctx,
                SnapshotMeta::default(),
            ))
            .expect("captures");
        let file = encode(&s, None, None).expect("encodes");
        eprintln!(
            "snapshot size: {name}: memory {} B, stored {} B, file {} B ({:.1}% of memory)",
            s.state.memory_bytes(),
            s.state.stored_bytes(),
            file.len(),
            100.0 * file.len() as f64 / s.state.memory_bytes() as f64
        );
    }

    let mut group = c.benchmark_group("snapshot_first_call");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("cold_init_and_call", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut live = exec.instantiate(&plain, &ctx).await.expect("instantiates");
                live.call_typed("init", &[]).await.expect("init");
                live.call_typed("lookup", &[json!(4242)])
                    .await
                    .expect("lookup")
            })
        })
    });
    let warm = WarmStart::prepare(&exec, &module, Arc::new(snapshot.clone())).expect("bakes");
    assert!(warm.is_baked());
    group.bench_function("baked_snapshot_call", |b| {
        b.iter(|| {
            rt.block_on(warm.call_typed(&exec, "lookup", &[json!(4242)], &ctx))
                .expect("calls")
        })
    });
    group.bench_function("restore_by_write_and_call", |b| {
        b.iter(|| {
            rt.block_on(restore_and_call(
                &exec,
                &module,
                &snapshot,
                "lookup",
                &[json!(4242)],
                &ctx,
            ))
            .expect("restores")
        })
    });
    // After a restart: read + verify + decode the file, bake, load the
    // compiled baked module from the jit-cache, instantiate, call.
    group.bench_function("restart_load_file_bake_and_call", |b| {
        b.iter(|| {
            let s = load_file(&path, &VerifyPolicy::default(), None).expect("loads");
            let warm = WarmStart::prepare(&exec, &module, Arc::new(s)).expect("bakes");
            rt.block_on(warm.call_typed(&exec, "lookup", &[json!(4242)], &ctx))
                .expect("calls")
        })
    });
    group.finish();
}

criterion_group!(benches, first_call);
criterion_main!(benches);
