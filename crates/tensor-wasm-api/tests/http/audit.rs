//! The audit log under hostile input and a failing sink: records stay
//! bounded whatever the client sends, name the client's address (believing
//! `X-Forwarded-For` only from trusted proxies), and a sink that cannot be
//! written is counted — and, when the operator requires it, stops
//! state-changing calls instead of letting them happen unaudited.

use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn a_huge_path_makes_a_small_record_with_the_client_address() {
    let s = TestServer::start().await;
    let huge = format!("fn_{}", "a".repeat(60_000));
    let r = s
        .get(&format!("/functions/{huge}"), Some("not-a-token-of-ours"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-request-id", "x".repeat(5000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = std::fs::read_to_string(&s.audit_path).unwrap();
    let line = text.lines().last().expect("the denial is audited");
    assert!(line.len() < 2048, "record of {} bytes", line.len());
    let rec: Value = serde_json::from_str(line).unwrap();
    assert_eq!(rec["action"], "function.get");
    assert!(
        rec["target"]["function_id"]
            .as_str()
            .unwrap()
            .ends_with('…')
    );
    // No trusted proxy configured: the header is the client's own claim.
    assert_eq!(rec["client"], "127.0.0.1");
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let s = TestServer::start_with(Options {
        trusted_proxies: Some("127.0.0.0/8".into()),
        ..Options::default()
    })
    .await;
    let r = s
        .get("/functions", Some("no-such-token-anywhere"))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let rec = s.audit_records().pop().expect("401 audited");
    assert_eq!(rec["client"], "203.0.113.9", "right-most untrusted entry");
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn audit_write_failures_are_counted_and_can_stop_changes() {
    // /dev/full fails every write with ENOSPC: a full audit disk.
    let lenient = TestServer::start_with(Options {
        audit_file: Some("/dev/full".into()),
        ..Options::default()
    })
    .await;
    lenient.deploy(Some(TENANT_7), "a", &wasm(ADD_WAT)).await;
    lenient.deploy(Some(TENANT_7), "b", &wasm(ADD_WAT)).await;
    let m = lenient.metrics().await;
    assert_eq!(
        metric_value(&m, "tensor_wasm_audit_write_errors_total"),
        2.0
    );

    let strict = TestServer::start_with(Options {
        audit_file: Some("/dev/full".into()),
        audit_required: true,
        ..Options::default()
    })
    .await;
    // The first change is made (its record failing is how we learn of it:
    // the record goes to the error log instead) ...
    let id = strict.deploy(Some(TENANT_7), "a", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // ... and from then on changes are refused while the sink fails.
    let r = strict
        .post("/functions", Some(TENANT_7))
        .json(&serde_json::json!({"name": "b", "wasm_b64": b64(&wasm(ADD_WAT))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "audit_unavailable");
    let r = strict
        .delete(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "delete is a change too");
    // Reads and invocations change nothing and go on.
    let (status, v) = strict
        .invoke(Some(TENANT_7), &id, "add", serde_json::json!([2, 3]))
        .await;
    assert_eq!((status, v["results"][0].as_i64()), (200, Some(5)), "{v}");
    let m = strict.metrics().await;
    assert!(metric_value(&m, "tensor_wasm_audit_write_errors_total") >= 3.0);
}
