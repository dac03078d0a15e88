//! Typed and bytes invocations, guest failures, isolation.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_call_returns_results_duration_and_fuel() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(TENANT_7), "adder", &wasm(ADD_WAT)).await;
    let id = f["id"].as_str().unwrap();
    let (status, out) = s.invoke(Some(TENANT_7), id, "add", json!([2, 3])).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["results"], json!([5]));
    assert!(out["duration_us"].is_u64());
    assert!(out["fuel_used"].is_u64());
    let m = s.metrics().await;
    assert!(
        m.contains(r#"tensor_wasm_invocations_total{outcome="ok"} 1"#),
        "{m}"
    );
    assert!(m.contains(r#"tensor_wasm_invoke_duration_seconds_count{mode="typed"} 1"#));
    assert!(m.contains(r#"route="/functions/{id}/invoke""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_arguments_and_exports_are_400s_naming_the_signature() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(ADMIN), "adder", &wasm(ADD_WAT)).await;
    let id = f["id"].as_str().unwrap();
    for args in [
        json!(["two", 3]),
        json!([1]),
        json!([1.5, 2]),
        json!([1, 2, 3]),
    ] {
        let (status, v) = s.invoke(Some(ADMIN), id, "add", args.clone()).await;
        assert_eq!(status, 400, "{args}");
        assert_eq!(error_code(&v), "signature_mismatch");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("add(i32, i32) -> i32"),
            "{v}"
        );
    }
    let (status, v) = s.invoke(Some(ADMIN), id, "sub", json!([1, 2])).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&v), "missing_export");
    let r = s
        .post(&format!("/functions/{id}/invoke"), Some(ADMIN))
        .json(&json!({"args": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "invalid_request");
    assert!(
        s.metrics()
            .await
            .contains(r#"tensor_wasm_invocations_total{outcome="bad_request"} 5"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_call_pipes_stdin_to_stdout_with_headers() {
    let s = TestServer::start().await;
    let f = s.deploy(Some(ADMIN), "echo", &wasm(ECHO_WAT)).await;
    let id = f["id"].as_str().unwrap();
    for path in [
        format!("/functions/{id}/invoke"),
        format!("/functions/{id}/invoke?export=echo"),
    ] {
        let r = s
            .post(&path, Some(ADMIN))
            .header("Content-Type", "application/octet-stream")
            .body("hello, guest")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let h = r.headers().clone();
        assert_eq!(h["x-tensor-wasm-exit-code"], "0");
        assert!(
            h["x-tensor-wasm-duration-us"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .is_ok()
        );
        assert_eq!(h["x-tensor-wasm-stderr"], "warn");
        assert_eq!(r.text().await.unwrap(), "hello, guest");
    }
    let r = s
        .post(&format!("/functions/{id}/invoke?export=nope"), Some(ADMIN))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endless_loop_times_out_without_slowing_a_healthy_neighbour() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let spin = s
        .deploy_json(Some(ADMIN), json!({"name": "spin", "wasm_b64": b64(&wasm(SPIN_WAT)), "limits": {"timeout_ms": 1500}}))
        .await;
    let add = s.deploy(Some(ADMIN), "adder", &wasm(ADD_WAT)).await;
    let spin_id = spin["id"].as_str().unwrap().to_owned();
    let add_id = add["id"].as_str().unwrap().to_owned();

    let hostile = {
        let s = s.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, v) = s.invoke(Some(ADMIN), &spin_id, "spin", json!([])).await;
            (status, v, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the guest spins, a healthy call answers promptly.
    for _ in 0..5 {
        let started = Instant::now();
        let (status, v) = s.invoke(Some(ADMIN), &add_id, "add", json!([2, 3])).await;
        assert_eq!((status, v["results"][0].as_i64()), (200, Some(5)));
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "healthy call took {:?}",
            started.elapsed()
        );
    }
    let healthz_started = Instant::now();
    let r = s.get("/healthz", None).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(healthz_started.elapsed() < Duration::from_millis(200));

    let (status, v, took) = hostile.await.unwrap();
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_code(&v), "deadline_exceeded");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert!(
        s.metrics()
            .await
            .contains(r#"tensor_wasm_invocations_total{outcome="timeout"} 1"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invocation_bound_answers_503_with_retry_after() {
    let s = std::sync::Arc::new(
        TestServer::start_with(Options {
            max_concurrent_invocations: Some(1),
            ..Options::default()
        })
        .await,
    );
    // Two tenants, so the global bound (not tenant 7's share) refuses tenant 8.
    let spin = s
        .deploy_json(Some(TENANT_7), json!({"name": "spin", "wasm_b64": b64(&wasm(SPIN_WAT)), "limits": {"timeout_ms": 1000}}))
        .await;
    let add = s.deploy(Some(TENANT_8), "adder", &wasm(ADD_WAT)).await;
    let spin_id = spin["id"].as_str().unwrap().to_owned();
    let busy = {
        let s = s.clone();
        tokio::spawn(async move { s.invoke(Some(TENANT_7), &spin_id, "spin", json!([])).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .post(
            &format!("/functions/{}/invoke", add["id"].as_str().unwrap()),
            Some(TENANT_8),
        )
        .json(&json!({"export": "add", "args": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "overloaded");
    assert_eq!(busy.await.unwrap().0, 422);
    // The slot is free again.
    let (status, _) = s
        .invoke(
            Some(TENANT_8),
            add["id"].as_str().unwrap(),
            "add",
            json!([1, 2]),
        )
        .await;
    assert_eq!(status, 200);
}
