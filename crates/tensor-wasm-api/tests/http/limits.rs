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
