//! Rate limits and body limits.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_per_token() {
    let s = TestServer::start_with(Options {
        rate_limit: Some((1, 3)),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(s.get("/functions", Some(TENANT_7)).send().await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..3], &[200, 200, 200]);
    assert_eq!(codes[4], 429);
    let limited = statuses.pop().unwrap();
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let v: Value = limited.json().await.unwrap();
    assert_eq!(error_code(&v), "rate_limited");
    // Another token has its own bucket; health checks are never limited.
    assert_eq!(
        s.get("/functions", Some(TENANT_8))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(s.get("/healthz", None).send().await.unwrap().status(), 200);

    let rec = s.audit_records().pop().unwrap();
    assert_eq!(
        (rec["status"].as_u64(), rec["outcome"].as_str()),
        (Some(429), Some("denied"))
    );
    assert_eq!(rec["actor"]["tenant"], "7");
    assert!(
        s.metrics()
            .await
            .contains("tensor_wasm_rate_limited_total 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413_json() {
    let s = TestServer::start_with(Options {
        max_body_bytes: Some(1024),
        ..Options::default()
    })
    .await;
    let big = "A".repeat(4096);
    let r = s
        .post("/functions", Some(ADMIN))
        .json(&json!({"name": "big", "wasm_b64": big}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "payload_too_large");

    // Chunked (no Content-Length) bodies are cut off too.
    let reply =
        raw_chunked_post(&s, "/functions?name=chunked", &[&[b'x'; 800], &[b'y'; 800]]).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains(r#""code":"payload_too_large""#), "{reply}");
}

/// Sends a chunked `application/wasm` POST over a plain socket; returns the raw reply.
async fn raw_chunked_post(s: &TestServer, path: &str, chunks: &[&[u8]]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN}\r\n\
         Content-Type: application/wasm\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    for c in chunks {
        sock.write_all(format!("{:x}\r\n", c.len()).as_bytes())
            .await
            .unwrap();
        sock.write_all(c).await.unwrap();
        sock.write_all(b"\r\n").await.unwrap();
    }
    // The server may answer and close before the terminating chunk; ignore that error.
    let _ = sock.write_all(b"0\r\n\r\n").await;
    let mut out = Vec::new();
    let _ = sock.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Grows memory by 32 pages (2 MiB); returns the old size in pages, or -1.
const GROW_WAT: &str = r#"(module
  (memory 1)
  (func (export "grow") (result i32) (memory.grow (i32.const 32))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_limits_replace_defaults_and_cap_function_settings() {
    let s = TestServer::start_with(Options {
        tenant_limits: Some(
            r#"{"7": {"timeout_ms": 300, "max_memory_bytes": 1048576}}"#.to_owned(),
        ),
        ..Options::default()
    })
    .await;

    // Above the tenant's ceiling: refused, naming the field and the ceiling.
    let r = s
        .post("/functions", Some(TENANT_7))
        .json(&json!({"name": "slow", "wasm_b64": b64(&wasm(SPIN_WAT)), "limits": {"timeout_ms": 5000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "invalid_request");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("limits.timeout_ms") && msg.contains("ceiling of 300"),
        "{msg}"
    );
    // An admin deploying into tenant 7 meets the same ceiling.
    let r = s
        .post("/functions", Some(ADMIN))
        .json(&json!({"name": "slow", "tenant": "7", "wasm_b64": b64(&wasm(SPIN_WAT)), "limits": {"timeout_ms": 5000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // No setting of its own: the tenant's override replaces the server default.
    let spin = s.deploy(Some(TENANT_7), "spin", &wasm(SPIN_WAT)).await;
    assert_eq!(spin["effective_limits"]["timeout_ms"], 300);
    assert_eq!(spin["effective_limits"]["max_memory_bytes"], 1048576);
    assert_eq!(spin["limits"]["timeout_ms"], Value::Null);
    let started = std::time::Instant::now();
    let (status, v) = s
        .invoke(
            Some(TENANT_7),
            spin["id"].as_str().unwrap(),
            "spin",
            json!([]),
        )
        .await;
    assert_eq!((status, error_code(&v)), (422, "deadline_exceeded"), "{v}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));

    // A lower setting of its own is kept.
    let quick = s
        .deploy_json(Some(TENANT_7), json!({"name": "quick", "wasm_b64": b64(&wasm(ADD_WAT)), "limits": {"timeout_ms": 100}}))
        .await;
    assert_eq!(quick["effective_limits"]["timeout_ms"], 100);

    // The memory ceiling binds tenant 7's guests; tenant 8 has the server default.
    let g7 = s.deploy(Some(TENANT_7), "grow", &wasm(GROW_WAT)).await;
    let g8 = s.deploy(Some(TENANT_8), "grow", &wasm(GROW_WAT)).await;
    let (status, v) = s
        .invoke(
            Some(TENANT_7),
            g7["id"].as_str().unwrap(),
            "grow",
            json!([]),
        )
        .await;
    assert_eq!((status, v["results"][0].as_i64()), (200, Some(-1)), "{v}");
    let (status, v) = s
        .invoke(
            Some(TENANT_8),
            g8["id"].as_str().unwrap(),
            "grow",
            json!([]),
        )
        .await;
    assert_eq!((status, v["results"][0].as_i64()), (200, Some(1)), "{v}");
    assert_ne!(g8["effective_limits"]["timeout_ms"], 300);

    // Other tenants may ask for more than tenant 7's ceiling.
    let long = s
        .deploy_json(Some(TENANT_8), json!({"name": "long", "wasm_b64": b64(&wasm(ADD_WAT)), "limits": {"timeout_ms": 5000}}))
        .await;
    assert_eq!(long["effective_limits"]["timeout_ms"], 5000);
}
