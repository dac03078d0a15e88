//! The operator runbooks' verification steps, as written.

use serde_json::{Value, json};

use crate::support::*;

/// DR runbook "Verification": healthz body, metrics advancing in the first
/// 20 lines, dr-smoke create/delete with `jq -r .id`, audit tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dr_runbook_verification_steps_pass_as_written() {
    let s = TestServer::start().await;

    // 1. curl -sf http://localhost:8080/healthz  →  {"status":"ok"}
    let resp = s.get("/healthz", None).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), r#"{"status":"ok"}"#);

    // 2. tensor_wasm_http_requests_total advancing across two fetches (within head -20).
    let first = s.metrics().await;
    let second = s.metrics().await;
    let prefix = r#"tensor_wasm_http_requests_total{method="GET",route="/metrics",status="200"}"#;
    let a = sample_in_head(&first, 20, prefix).expect("counter in the first 20 lines");
    let b = sample_in_head(&second, 20, prefix).expect("counter in the first 20 lines");
    assert!(b > a, "counter advanced: {a} -> {b}");

    // 4. create + delete dr-smoke with the admin token; id extractable as `.id`.
    let resp = s
        .post("/functions", Some(ADMIN))
        .header("Content-Type", "application/json")
        .body(r#"{"name":"dr-smoke","wasm_b64":"AGFzbQEAAAA="}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let id = created["id"].as_str().expect(".id is a string").to_owned();
    assert!(!id.is_empty());
    assert_eq!(created["name"], "dr-smoke");
    let resp = s
        .delete(&format!("/functions/{id}"), Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "curl -sf DELETE succeeds: {}",
        resp.status()
    );

    // 5. the audit file holds the create/delete pair; its last line is the delete of dr-smoke.
    let records = s.audit_records();
    let n = records.len();
    assert!(n >= 2);
    let (create, delete) = (&records[n - 2], &records[n - 1]);
    assert_eq!(create["action"], "function.create");
    assert_eq!(create["outcome"], "success");
    assert_eq!(create["target"]["function_name"], "dr-smoke");
    assert_eq!(create["target"]["function_id"], id.as_str());
    assert_eq!(delete["action"], "function.delete");
    assert_eq!(delete["target"]["function_name"], "dr-smoke");
    assert_eq!(delete["target"]["function_id"], id.as_str());
    // `tail -n 1` alone shows the pair: the delete names when it was created.
    assert!(delete["target"]["created_at"].is_string());
    assert_eq!(delete["actor"]["scope"]["kind"], "admin");
    assert!(delete["actor"]["token_id"].is_string());
    let raw = std::fs::read_to_string(&s.audit_path).unwrap();
    assert!(
        !raw.contains(ADMIN),
        "the token never reaches the audit log"
    );
    let last = raw.lines().last().unwrap();
    assert!(last.contains("dr-smoke") && last.contains("function.delete"));
}

/// Rollback runbook step 3: `curl -s …/metrics | head -20` shows a counter
/// advancing, also on a server that has seen other traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_head_shows_advancing_counter_after_varied_traffic() {
    let s = TestServer::start().await;
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/nope",
        "/functions",
    ] {
        let _ = s.get(path, Some(ADMIN)).send().await.unwrap();
        let _ = s.get(path, None).send().await.unwrap();
    }
    let _ = s
        .post("/functions", Some(ADMIN))
        .body("x")
        .send()
        .await
        .unwrap();
    let first = s.metrics().await;
    let second = s.metrics().await;
    let prefix = r#"tensor_wasm_http_requests_total{method="GET",route="/metrics""#;
    let a = sample_in_head(&first, 20, prefix).unwrap();
    let b = sample_in_head(&second, 20, prefix).unwrap();
    assert!(b > a);
    assert!(second.contains(r#"route="unmatched""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_survives_restart_with_same_id_and_still_invokes() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(TENANT_7), "adder", &wasm(ADD_WAT)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let data_dir = s.data_dir.clone();
    let tmp = s.stop().await;

    let s = TestServer::start_with(Options {
        data_dir: Some(data_dir),
        ..Options::default()
    })
    .await;
    let resp = s
        .get(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "adder");
    assert_eq!(v["tenant"], "7");
    let (status, out) = s
        .invoke(Some(TENANT_7), &id, "add", serde_json::json!([2, 3]))
        .await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["results"], serde_json::json!([5]));
    drop(s);
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_readyz_and_openapi_need_no_token() {
    let s = TestServer::start().await;
    let r = s.get("/readyz", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "ready");
    assert_eq!(v["dev_mode"], false);
    assert_eq!(v["store"], "ok");
    assert!(v["version"].as_str().unwrap().starts_with('v'));
    assert!(v["gpu_backend"].is_string());

    let r = s.get("/openapi.json", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["openapi"], "3.1.0");

    let r = s.get("/metrics", None).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let r = s
        .get("/metrics", None)
        .header("Accept", "application/openmetrics-text;version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    assert!(text.trim_end().ends_with("# EOF"));
    let plain = s.metrics().await;
    assert!(plain.starts_with("# HELP tensor_wasm_http_requests_total "));
    assert!(!plain.contains("# EOF"));
    assert!(text.contains("tensor_wasm_build_info{version="));
    assert!(text.contains("tensor_wasm_compile_cache_hits_total"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_listens_before_every_stored_function_is_compiled() {
    let s = TestServer::start().await;
    let mut ids = Vec::new();
    for i in 0..40 {
        // Distinct modules: each is its own compile.
        let wat = format!(
            "(module (func (export \"add\") (param i32 i32) (result i32) \
             local.get 0 local.get 1 i32.add i32.const {i} drop))"
        );
        ids.push(
            s.deploy(Some(ADMIN), &format!("f{i}"), &wasm(&wat)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let data_dir = s.data_dir.clone();
    let tmp = s.stop().await;
    // A cold compile cache: every function compiles again at start-up.
    std::fs::remove_dir_all(data_dir.join("jit-cache")).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let s = TestServer::start_with(Options {
        data_dir: Some(data_dir),
        startup_load_budget: Some(std::time::Duration::ZERO),
        ..Options::default()
    })
    .await;
    // Liveness answers at once; readiness says how far loading is; a
    // function not loaded yet is "not ready", never "not found".
    let r = s.get("/healthz", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let last = ids.last().unwrap();
    let (status, v) = s.invoke(Some(ADMIN), last, "add", json!([1, 2])).await;
    assert!(
        status == 200 || (status == 503 && error_code(&v) == "not_ready"),
        "{status} {v}"
    );
    let mut saw_progress = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let r = s.get("/readyz", None).send().await.unwrap();
        if r.status() == 200 {
            break;
        }
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "not_ready", "{v}");
        saw_progress |= v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("of 40 compiled");
        assert!(
            std::time::Instant::now() < deadline,
            "loading never finished"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(saw_progress, "/readyz reported the loading progress");
    for id in &ids {
        let (status, v) = s.invoke(Some(ADMIN), id, "add", json!([1, 2])).await;
        assert_eq!((status, v["results"][0].as_i64()), (200, Some(3)), "{v}");
    }
    drop(s);
    drop(tmp);
}
