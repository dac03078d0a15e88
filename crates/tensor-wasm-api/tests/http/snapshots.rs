//! Snapshot routes: capture after an init export, invoke from it, survive a
//! restart, refuse damaged files, stay inside the tenant.

use serde_json::{Value, json};

use crate::support::{TENANT_7, TENANT_8, TestServer, error_code, metric_value, wasm};

/// `init` fills a 64 KiB table with i*7+1; `lookup(i)` reads entry i, or -1
/// when `init` never ran (so a cold plain invoke is distinguishable).
const TABLE_WAT: &str = r#"(module
  (memory (export "memory") 2)
  (global $ready (mut i32) (i32.const 0))
  (func (export "init") (local $i i32)
    (loop $fill
      (i32.store (i32.shl (local.get $i) (i32.const 2))
                 (i32.add (i32.mul (local.get $i) (i32.const 7)) (i32.const 1)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 16384))))
    (global.set $ready (i32.const 1)))
  (func (export "lookup") (param $i i32) (result i32)
    (if (result i32) (global.get $ready)
      (then (i32.load (i32.shl (local.get $i) (i32.const 2))))
      (else (i32.const -1)))))"#;

async fn invoke_from(s: &TestServer, token: &str, id: &str, snap: &str, arg: i32) -> (u16, Value) {
    let resp = s
        .post(
            &format!("/functions/{id}/snapshots/{snap}/invoke"),
            Some(token),
        )
        .json(&json!({"export": "lookup", "args": [arg]}))
        .send()
        .await
        .expect("invoke from snapshot");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("JSON reply"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_captures_init_and_serves_warm_calls_across_a_restart() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(TENANT_7), "table", &wasm(TABLE_WAT)).await;
    let id = f["id"].as_str().unwrap().to_owned();

    // Cold: init never ran.
    let (status, cold) = s.invoke(Some(TENANT_7), &id, "lookup", json!([100])).await;
    assert_eq!((status, &cold["results"]), (200, &json!([-1])), "{cold}");

    let resp = s
        .post(&format!("/functions/{id}/snapshots"), Some(TENANT_7))
        .json(&json!({"init_export": "init"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let snap: Value = resp.json().await.unwrap();
    let snap_id = snap["id"].as_str().unwrap().to_owned();
    assert_eq!(snap["function_id"], id.as_str());

    let (status, warm) = invoke_from(&s, TENANT_7, &id, "latest", 100).await;
    assert_eq!((status, &warm["results"]), (200, &json!([701])), "{warm}");
    assert_eq!(warm["snapshot_id"], snap_id.as_str());

    // Another tenant sees nothing.
    let (status, other) = invoke_from(&s, TENANT_8, &id, "latest", 100).await;
    assert_eq!(status, 404, "{other}");

    let listed: Value = s
        .get_json(&format!("/functions/{id}/snapshots"), Some(TENANT_7))
        .await;
    assert_eq!(listed["snapshots"][0]["id"], snap_id.as_str());

    // Restart on the same data dir: the snapshot still answers warm.
    let (s, tmp) = s.restart().await;
    let (status, again) = invoke_from(&s, TENANT_7, &id, &snap_id, 16383).await;
    assert_eq!(
        (status, &again["results"]),
        (200, &json!([16383 * 7 + 1])),
        "{again}"
    );
    assert_eq!(again["restore"], "baked", "{again}");
    let cached = || {
        std::fs::read_dir(s.data_dir.join("jit-cache"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".cwasm")
            })
            .count()
    };
    let cached_with_snapshot = cached();

    // Delete, then it is gone.
    let resp = s
        .delete(
            &format!("/functions/{id}/snapshots/{snap_id}"),
            Some(TENANT_7),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        cached(),
        cached_with_snapshot - 1,
        "the baked module's compile-cache entry goes with its snapshot"
    );
    let (status, gone) = invoke_from(&s, TENANT_7, &id, "latest", 1).await;
    assert_eq!(
        (status, error_code(&gone)),
        (404, "snapshot_not_found"),
        "{gone}"
    );

    let actions: Vec<String> = s
        .audit_records()
        .iter()
        .filter_map(|r| r["action"].as_str().map(str::to_owned))
        .collect();
    assert!(
        actions.iter().any(|a| a == "snapshot.delete"),
        "{actions:?}"
    );
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_snapshot_file_is_quarantined_at_start_up() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(TENANT_7), "table", &wasm(TABLE_WAT)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let snap: Value = s
        .post_json(
            &format!("/functions/{id}/snapshots"),
            Some(TENANT_7),
            &json!({"init_export": "init"}),
        )
        .await;
    let snap_id = snap["id"].as_str().unwrap();
    let path = s
        .data_dir
        .join("snapshots")
        .join(format!("{snap_id}.tensor-wasm"));
    let mut bytes = std::fs::read(&path).expect("snapshot file exists");
    let last = bytes.len() - 1;
    bytes[last / 2] ^= 0x5a;
    std::fs::write(&path, bytes).unwrap();

    // A fresh server (nothing preloaded in memory) must read the file again.
    let (s, tmp) = s.restart().await;
    // Start-up preload finds it damaged and moves it aside, kept for inspection.
    let moved = s
        .data_dir
        .join("snapshots/quarantine")
        .join(format!("{snap_id}.tensor-wasm"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !moved.exists() {
        assert!(std::time::Instant::now() < deadline, "not quarantined");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(!path.exists());
    let (status, v) = invoke_from(&s, TENANT_7, &id, snap_id, 1).await;
    assert_eq!((status, error_code(&v)), (404, "snapshot_not_found"), "{v}");
    // Counted just after the move: poll for it too.
    loop {
        let m = s.metrics().await;
        if m.lines().any(|l| {
            l.starts_with("tensor_wasm_snapshots_total{")
                && l.contains("action=\"quarantine\"")
                && l.contains("snapshot_checksum_mismatch")
        }) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not counted: {m}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The plain route is unaffected.
    let (status, cold) = s.invoke(Some(TENANT_7), &id, "lookup", json!([1])).await;
    assert_eq!((status, &cold["results"]), (200, &json!([-1])), "{cold}");
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_function_deletes_its_snapshots_and_only_its_own() {
    let s = TestServer::start().await;
    let doomed = s.deploy(Some(TENANT_7), "table", &wasm(TABLE_WAT)).await;
    let kept = s.deploy(Some(TENANT_7), "table2", &wasm(TABLE_WAT)).await;
    let mut files = Vec::new();
    for f in [&doomed, &kept] {
        let id = f["id"].as_str().unwrap();
        let snap: Value = s
            .post_json(
                &format!("/functions/{id}/snapshots"),
                Some(TENANT_7),
                &json!({"init_export": "init"}),
            )
            .await;
        let path = s
            .data_dir
            .join("snapshots")
            .join(format!("{}.tensor-wasm", snap["id"].as_str().unwrap()));
        assert!(path.exists(), "{}", path.display());
        files.push(path);
    }
    let doomed_id = doomed["id"].as_str().unwrap();
    let r = s
        .delete(&format!("/functions/{doomed_id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert!(
        !files[0].exists(),
        "the deleted function's snapshot is still on disk"
    );
    assert!(files[1].exists(), "another function's snapshot was removed");
    // The surviving function still serves warm calls from its snapshot.
    let (status, warm) = invoke_from(&s, TENANT_7, kept["id"].as_str().unwrap(), "latest", 3).await;
    assert_eq!((status, &warm["results"]), (200, &json!([22])), "{warm}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_calls_from_an_unprepared_snapshot_prepare_it_once() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(TENANT_7), "table", &wasm(TABLE_WAT)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let mut snaps = Vec::new();
    for _ in 0..2 {
        let snap: Value = s
            .post_json(
                &format!("/functions/{id}/snapshots"),
                Some(TENANT_7),
                &json!({"init_export": "init"}),
            )
            .await;
        snaps.push(snap["id"].as_str().unwrap().to_owned());
    }
    // After a restart only the newest is prepared (preload); the older one
    // is prepared by its first calls.
    let (s, tmp) = s.restart().await;
    let lookups = |m: &str| {
        metric_value(m, "tensor_wasm_compile_cache_hits_total")
            + metric_value(m, "tensor_wasm_compile_cache_misses_total")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let before = loop {
        let m = s.metrics().await;
        if m.contains(r#"tensor_wasm_snapshots_total{action="preload",outcome="ok"} 1"#) {
            break lookups(&m);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "preload never finished: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let older = snaps[0].clone();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (client, url) = (
            s.client.clone(),
            s.url(&format!("/functions/{id}/snapshots/{older}/invoke")),
        );
        calls.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(TENANT_7)
                .json(&json!({"export": "lookup", "args": [i]}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        });
    }
    for (status, v) in calls.join_all().await {
        assert_eq!(status, 200, "{v}");
        assert_eq!(v["snapshot_id"], older.as_str(), "{v}");
    }
    let after = lookups(&s.metrics().await);
    assert_eq!(
        after - before,
        1.0,
        "eight concurrent first calls looked the baked module up once"
    );
    drop(s);
    drop(tmp);
}
