//! Helpers shared by this crate's integration tests.

#![allow(dead_code)]

use std::future::Future;
use std::sync::OnceLock;

use tensor_wasm_store::{FunctionId, FunctionLimits, FunctionRecord, FunctionStore};

/// Runs a store future to its end from synchronous test code (any thread):
/// the stores do their blocking work on this runtime's blocking pool.
pub fn wait<F: Future>(future: F) -> F::Output {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("test runtime")
        })
        .block_on(future)
}

/// The empty Wasm module (`AGFzbQEAAAA=`).
pub const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

/// Wasm-ish bytes that differ per seed, so a mixed-up pair is detected.
pub fn wasm_for(seed: u64) -> Vec<u8> {
    let mut bytes = EMPTY_MODULE.to_vec();
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes.resize(bytes.len() + (seed % 97) as usize, (seed % 251) as u8);
    bytes
}

/// A record for `wasm`, owned by `tenant`.
pub fn record(id: &str, tenant: &str, wasm: &[u8]) -> FunctionRecord {
    FunctionRecord {
        id: FunctionId(id.to_owned()),
        tenant: tenant.to_owned(),
        name: format!("name-of-{id}"),
        blake3: blake3::hash(wasm).to_hex().to_string(),
        size_bytes: wasm.len() as u64,
        created_at: "2025-01-02T03:04:05Z".to_owned(),
        limits: FunctionLimits {
            timeout_ms: Some(250),
            ..FunctionLimits::default()
        },
    }
}

/// Deploys `wasm_for(seed)` as `id` for `tenant`.
pub fn deploy(store: &dyn FunctionStore, id: &str, tenant: &str, seed: u64) -> FunctionRecord {
    let wasm = wasm_for(seed);
    let rec = record(id, tenant, &wasm);
    wait(store.create(&rec, &wasm)).expect("create");
    rec
}

/// Checks that every listed function has its bytes and that they match its
/// record; returns the ids in order.
pub fn assert_consistent(store: &dyn FunctionStore) -> Vec<String> {
    let records = wait(store.list(None)).expect("list");
    assert_eq!(records.len() as u64, wait(store.count()).expect("count"));
    for rec in &records {
        let wasm = wait(store.wasm(&rec.id))
            .expect("wasm")
            .unwrap_or_else(|| panic!("{} listed without bytes", rec.id));
        assert_eq!(
            blake3::hash(&wasm).to_hex().to_string(),
            rec.blake3,
            "{}",
            rec.id
        );
        assert_eq!(wasm.len() as u64, rec.size_bytes, "{}", rec.id);
    }
    records.into_iter().map(|r| r.id.0).collect()
}
