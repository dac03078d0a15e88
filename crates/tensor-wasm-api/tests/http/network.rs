//! A hostile network: clients that never finish a request head or body,
//! that sit on idle connections, that open more connections than the server
//! holds, and that flood it with bad tokens. Each attack goes over raw TCP to
//! a real server; each asserts the attacker is cut off with a clear answer
//! and that an honest client is still served.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tensor_wasm_api::ConnectionLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

fn limits(header_ms: u64, idle_ms: u64, body_ms: u64, max: usize) -> ConnectionLimits {
    ConnectionLimits {
        max_connections: max,
        max_connections_per_client: tensor_wasm_api::conn::DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        header_read_timeout: Duration::from_millis(header_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        body_timeout: Duration::from_millis(body_ms),
    }
}

async fn start(connections: ConnectionLimits) -> TestServer {
    TestServer::start_with(Options {
        connections: Some(connections),
        ..Options::default()
    })
    .await
}

async fn connect(s: &TestServer) -> TcpStream {
    TcpStream::connect(s.base.trim_start_matches("http://"))
        .await
        .expect("connect")
}

/// Reads until the server closes the connection (or `within` passes, which
/// fails the test); returns what was read.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&all).into_owned(),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "server kept the connection open for {within:?}; read so far: {}",
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

async fn healthy(s: &TestServer) {
    let r = s.get("/healthz", None).send().await.expect("healthz");
    assert_eq!(r.status(), 200, "an honest client is still served");
}

#[tokio::test]
async fn half_sent_request_heads_are_cut_off_at_the_header_timeout() {
    let s = start(limits(400, 10_000, 10_000, 1024)).await;
    // The reported attack, scaled down: many connections that each send half
    // a request head and nothing more.
    let mut attackers = Vec::new();
    for _ in 0..100 {
        let mut c = connect(&s).await;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        attackers.push(c);
    }
    healthy(&s).await;
    let started = Instant::now();
    for c in &mut attackers {
        let got = read_until_closed(c, Duration::from_secs(5)).await;
        assert!(got.is_empty(), "no response to half a head: {got}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "all closed near the 400 ms header timeout"
    );
    let m = s.metrics().await;
    assert!(
        metric_value(
            &m,
            "tensor_wasm_http_connections_timed_out_total{phase=\"header\"}"
        ) >= 100.0,
        "{m}"
    );
    healthy(&s).await;
}

#[tokio::test]
async fn a_trickled_head_does_not_extend_its_deadline() {
    let s = start(limits(500, 10_000, 10_000, 1024)).await;
    let mut c = connect(&s).await;
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let mut closed_at = None;
    for byte in head {
        // One byte every 50 ms: the head would take 4 s to arrive.
        if c.write_all(&[*byte]).await.is_err() {
            closed_at = Some(started.elapsed());
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(50), c.read(&mut probe)).await
        {
            closed_at = Some(started.elapsed());
            break;
        }
    }
    let closed_at = closed_at.expect("the server closed the trickling connection");
    assert!(
        closed_at < Duration::from_secs(2),
        "closed after {closed_at:?}, not when the head finished"
    );
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_and_a_busy_one_is_not() {
    let s = start(limits(300, 600, 10_000, 1024)).await;
    // A request whose handling outlasts both timeouts is not cut off: the
    // invocation's own deadline bounds it.
    let id = s
        .deploy_json(
            Some(TENANT_7),
            json!({"name": "nap", "wasm_b64": b64(&wasm(NAP_WAT)), "limits": {"timeout_ms": 5000}}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut c = connect(&s).await;
    let body = json!({"export": "nap", "args": []}).to_string();
    let req = format!(
        "POST /functions/{id}/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TENANT_7}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let started = Instant::now();
    let got = read_until_closed(&mut c, Duration::from_secs(6)).await;
    assert!(
        got.starts_with("HTTP/1.1 200"),
        "busy request answered: {got}"
    );
    let open_for = started.elapsed();
    assert!(
        open_for >= Duration::from_millis(1500),
        "the 1 s nap plus the 600 ms idle timeout: {open_for:?}"
    );
    let m = s.metrics().await;
    assert!(
        metric_value(
            &m,
            "tensor_wasm_http_connections_timed_out_total{phase=\"idle\"}"
        ) >= 1.0
    );
}

/// Sleeps one second in WASI, then returns 0.
const NAP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "nap") (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (i32.const 0)))"#;

#[tokio::test]
async fn a_body_that_never_finishes_gets_408() {
    let s = start(limits(10_000, 10_000, 400, 1024)).await;
    let mut c = connect(&s).await;
    c.write_all(
        format!(
            "POST /functions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TENANT_7}\r\n\
             Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"name\":"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let got = read_until_closed(&mut c, Duration::from_secs(5)).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"request_timeout\""), "{got}");
    healthy(&s).await;
}

#[tokio::test]
async fn connections_past_the_cap_get_a_cheap_503_and_room_returns() {
    let s = start(limits(10_000, 10_000, 10_000, 4)).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(connect(&s).await);
    }
    // Give the accept loop a moment to take all four.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect(&s).await;
    let got = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("retry-after: 1"), "{got}");
    let body: Value = serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(error_code(&body), "too_many_connections");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Fresh client: no pooled connection.
    let client = reqwest::Client::new();
    let m = client
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metric_value(
            &m,
            r#"tensor_wasm_http_connections_refused_total{cap="server"}"#
        ) >= 1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, "tensor_wasm_http_connections_open"),
        1.0,
        "{m}"
    );
}

/// Connects to `s` from the loopback address `from` (all of 127/8 is local).
async fn connect_from(s: &TestServer, from: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(format!("{from}:0").parse().unwrap())
        .expect("bind a loopback source address");
    socket
        .connect(s.base.trim_start_matches("http://").parse().unwrap())
        .await
        .expect("connect")
}

/// Sends `GET /healthz` on `c` and returns the status line.
async fn healthz_on(c: &mut TcpStream) -> String {
    c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_until_closed(c, Duration::from_secs(5)).await;
    got.lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn one_address_cannot_take_every_connection_slot() {
    let mut l = limits(10_000, 10_000, 10_000, 64);
    l.max_connections_per_client = 3;
    let s = start(l).await;
    // The attacker holds its share of the slots (an idle connection with a
    // cheap request now and then would keep them until the idle timeout).
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from(&s, "127.0.0.1").await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = connect_from(&s, "127.0.0.1").await;
    let got = read_until_closed(&mut extra, Duration::from_secs(3)).await;
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("this address has too many"), "{got}");
    // Another address is served while the attacker holds its three.
    let mut honest = connect_from(&s, "127.0.0.2").await;
    assert_eq!(healthz_on(&mut honest).await, "HTTP/1.1 200 OK");
    // The attacker gets its places back as its connections close.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = connect_from(&s, "127.0.0.1").await;
    assert_eq!(healthz_on(&mut again).await, "HTTP/1.1 200 OK");
    let m = reqwest::get(s.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_value(
            &m,
            r#"tensor_wasm_http_connections_refused_total{cap="client"}"#
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test]
async fn a_trusted_proxy_is_not_capped_per_address() {
    let mut l = limits(10_000, 10_000, 10_000, 64);
    l.max_connections_per_client = 2;
    let s = TestServer::start_with(Options {
        connections: Some(l),
        trusted_proxies: Some("127.0.0.1".into()),
        ..Options::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(connect_from(&s, "127.0.0.1").await);
    }
    for c in &mut held {
        assert_eq!(healthz_on(c).await, "HTTP/1.1 200 OK");
    }
}

#[tokio::test]
async fn a_bad_token_flood_is_throttled_per_address_without_audit_records() {
    let s = TestServer::start_with(Options {
        unauthenticated_rate_limit: Some((1, 3)),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..12 {
        let r = s
            .get("/functions", Some("not-a-real-token-at-all"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r.headers().get("retry-after").cloned();
            let v: Value = r.json().await.unwrap();
            assert_eq!(error_code(&v), "rate_limited");
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "the burst of 3 is answered 401, the rest 429: {statuses:?}"
    );
    assert!(retry_after.is_some(), "429 carries Retry-After");
    // A valid token from the same address is not throttled by the flood.
    let r = s.get("/functions", Some(TENANT_7)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let denied = s
        .audit_records()
        .into_iter()
        .filter(|r| r["error"] == "unauthorized")
        .count();
    assert_eq!(denied, 3, "only the 401s are audited");
    let m = s.metrics().await;
    assert_eq!(
        metric_value(&m, "tensor_wasm_unauthenticated_throttled_total"),
        9.0
    );
}
