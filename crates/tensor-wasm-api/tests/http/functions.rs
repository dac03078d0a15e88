//! Deploy, list, get, delete: success and failure paths.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_returns_record_with_exports_and_get_list_delete_work() {
    let s = TestServer::start().await;
    let add = wasm(ADD_WAT);
    let f = s
        .deploy_json(
            Some(TENANT_7),
            json!({"name": "adder", "wasm_b64": b64(&add), "limits": {"timeout_ms": 500, "fuel": 1000000}}),
        )
        .await;
    let id = f["id"].as_str().unwrap();
    assert!(id.starts_with("fn_"));
    assert_eq!(f["tenant"], "7");
    assert_eq!(f["size_bytes"], add.len());
    assert_eq!(f["blake3"], blake3::hash(&add).to_hex().as_str());
    assert_eq!(
        f["exports"],
        json!([{"name": "add", "params": ["i32", "i32"], "results": ["i32"]}])
    );
    assert_eq!(f["limits"]["timeout_ms"], 500);
    assert!(f["created_at"].as_str().unwrap().ends_with('Z'));

    let got: Value = s
        .get_json(&format!("/functions/{id}"), Some(TENANT_7))
        .await;
    assert_eq!(got, f);
    let list: Value = s.get_json("/functions", Some(TENANT_7)).await;
    assert_eq!(list["functions"], json!([f]));

    let r = s
        .delete(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .get(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s
        .delete(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "function_not_found");
    assert!(
        s.metrics()
            .await
            .contains("tensor_wasm_functions_deployed 0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_wasm_upload_with_name_query_works() {
    let s = TestServer::start().await;
    let r = s
        .post("/functions?name=raw-adder&timeout_ms=1000", Some(ADMIN))
        .header("Content-Type", "application/wasm")
        .body(wasm(ADD_WAT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let f: Value = r.json().await.unwrap();
    assert_eq!(f["name"], "raw-adder");
    assert_eq!(f["limits"]["timeout_ms"], 1000);
    let (status, out) = s
        .invoke(
            Some(ADMIN),
            f["id"].as_str().unwrap(),
            "add",
            json!([20, 22]),
        )
        .await;
    assert_eq!((status, out["results"][0].as_i64()), (200, Some(42)));

    let r = s
        .post("/functions", Some(ADMIN))
        .header("Content-Type", "application/wasm")
        .body(wasm(ADD_WAT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "raw upload without ?name=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deploys_get_clear_400s_and_415_and_are_audited_as_failures() {
    let s = TestServer::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"name": "bad", "wasm_b64": b64(b"\0asm\x01\0\0\0\x01\xff")}),
            "invalid_module",
        ),
        (
            json!({"name": "bad", "wasm_b64": b64(b"definitely not wasm")}),
            "invalid_module",
        ),
        (json!({"name": "bad", "wasm_b64": "!!!"}), "invalid_request"),
        (json!({"wasm_b64": EMPTY_MODULE_B64}), "invalid_request"),
        (
            json!({"name": "has space", "wasm_b64": EMPTY_MODULE_B64}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "wasm_b64": EMPTY_MODULE_B64, "limits": {"timeout_ms": 0}}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "wasm_b64": EMPTY_MODULE_B64, "limits": {"bogus": 1}}),
            "invalid_request",
        ),
        (
            json!({"name": "x", "wasm_b64": EMPTY_MODULE_B64, "tenant": "bad tenant"}),
            "invalid_request",
        ),
    ];
    for (body, code) in &cases {
        let r = s
            .post("/functions", Some(ADMIN))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), *code, "{body} -> {v}");
    }
    let r = s
        .post("/functions", Some(ADMIN))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = s
        .post("/functions", Some(ADMIN))
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "unsupported_media_type");

    let list: Value = s.get_json("/functions", Some(ADMIN)).await;
    assert_eq!(list["functions"], json!([]), "nothing half-deployed");
    let recs = s.audit_records();
    assert_eq!(recs.len(), cases.len() + 2);
    assert!(
        recs.iter()
            .all(|r| r["action"] == "function.create" && r["outcome"] == "failure")
    );
    assert_eq!(recs[0]["error"], "invalid_module");
    assert_eq!(recs[0]["target"]["function_name"], "bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_json_errors() {
    let s = TestServer::start().await;
    let r = s.get("/nope", Some(ADMIN)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "route_not_found");
    let r = s
        .client
        .put(s.url("/functions"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_deploy_invoke_delete_loses_and_duplicates_nothing() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let add = std::sync::Arc::new(wasm(ADD_WAT));
    let mut tasks = Vec::new();
    for t in 0..16 {
        let s = s.clone();
        let add = add.clone();
        tasks.push(tokio::spawn(async move {
            let mut kept = Vec::new();
            for i in 0..6 {
                let name = format!("t{t}-f{i}");
                let f = s.deploy(Some(ADMIN), &name, &add).await;
                let id = f["id"].as_str().unwrap().to_owned();
                let (status, out) = s.invoke(Some(ADMIN), &id, "add", json!([t, i])).await;
                assert_eq!(status, 200, "{out}");
                assert_eq!(out["results"][0].as_i64(), Some(t + i));
                if i % 2 == 0 {
                    let r = s
                        .delete(&format!("/functions/{id}"), Some(ADMIN))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 204);
                } else {
                    kept.push((id, name));
                }
            }
            kept
        }));
    }
    let mut expected = HashSet::new();
    for t in tasks {
        for k in t.await.unwrap() {
            assert!(expected.insert(k), "duplicate id");
        }
    }
    let list: Value = s.get_json("/functions", Some(ADMIN)).await;
    let listed: Vec<(String, String)> = list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["id"].as_str().unwrap().to_owned(),
                f["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(listed.len(), 48);
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), expected);
    let recs = s.audit_records();
    assert_eq!(
        recs.iter()
            .filter(|r| r["action"] == "function.create")
            .count(),
        96
    );
    assert_eq!(
        recs.iter()
            .filter(|r| r["action"] == "function.delete")
            .count(),
        48
    );
}
