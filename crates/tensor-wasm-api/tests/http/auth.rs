//! Tokens, scopes, tenancy, dev mode and their audit records.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_unknown_token_is_401_with_bearer_challenge_and_audited() {
    let s = TestServer::start().await;
    for token in [None, Some("not-a-token")] {
        let r = s.get("/functions", token).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .split(' ')
                .next(),
            Some("Bearer")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "unauthorized");
    }
    let r = s
        .post("/functions", None)
        .header("Authorization", "Basic abc")
        .json(&json!({"name": "x", "wasm_b64": EMPTY_MODULE_B64}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let denied: Vec<Value> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["status"] == 401)
        .collect();
    assert_eq!(denied.len(), 3);
    assert!(
        denied
            .iter()
            .all(|r| r["outcome"] == "denied" && r["actor"]["scope"]["kind"] == "anonymous")
    );
    assert!(denied[0]["actor"]["token_id"].is_null());
    assert!(
        denied[1]["actor"]["token_id"].is_string(),
        "an unknown token is fingerprinted"
    );
    assert_eq!(denied[2]["action"], "function.create");
    let raw = std::fs::read_to_string(&s.audit_path).unwrap();
    assert!(!raw.contains("not-a-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_see_only_their_functions_and_foreign_ids_are_404() {
    let s = TestServer::start().await;
    let mine = s.deploy(Some(TENANT_7), "mine", &wasm(ADD_WAT)).await;
    let theirs = s.deploy(Some(TENANT_8), "theirs", &wasm(ADD_WAT)).await;
    assert_eq!(mine["tenant"], "7");
    assert_eq!(theirs["tenant"], "8");
    let theirs_id = theirs["id"].as_str().unwrap();

    let list: Value = s.get_json("/functions", Some(TENANT_7)).await;
    let names: Vec<&str> = list["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mine"]);

    let before = s.audit_records().len();
    let r = s
        .get(&format!("/functions/{theirs_id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "function_not_found");
    let r = s
        .delete(&format!("/functions/{theirs_id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (status, v) = s
        .invoke(Some(TENANT_7), theirs_id, "add", json!([1, 2]))
        .await;
    assert_eq!(status, 404);
    assert_eq!(error_code(&v), "function_not_found");
    // Same answer as an id that does not exist at all.
    let r = s
        .get("/functions/fn_doesnotexist", Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    let denials: Vec<Value> = s.audit_records()[before..].to_vec();
    assert_eq!(
        denials.len(),
        3,
        "cross-tenant access is audited, a plain miss is not"
    );
    assert!(denials.iter().all(|d| d["outcome"] == "denied"
        && d["status"] == 404
        && d["target"]["function_id"] == theirs_id));
    assert_eq!(denials[1]["action"], "function.delete");
    assert_eq!(denials[2]["action"], "function.invoke");

    // Still there for its owner.
    let (status, v) = s
        .invoke(Some(TENANT_8), theirs_id, "add", json!([1, 2]))
        .await;
    assert_eq!((status, v["results"][0].as_i64()), (200, Some(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sees_all_tenants_and_creates_for_a_named_tenant() {
    let s = TestServer::start().await;
    s.deploy(Some(TENANT_7), "a", &wasm(ADD_WAT)).await;
    let for_8 = s
        .deploy_json(
            Some(ADMIN),
            json!({"name": "b", "wasm_b64": EMPTY_MODULE_B64, "tenant": "8"}),
        )
        .await;
    assert_eq!(for_8["tenant"], "8");
    let default = s.deploy(Some(ADMIN), "c", &wasm(ADD_WAT)).await;
    assert_eq!(default["tenant"], "default");

    let list: Value = s.get_json("/functions", Some(ADMIN)).await;
    assert_eq!(list["functions"].as_array().unwrap().len(), 3);
    let list: Value = s.get_json("/functions", Some(TENANT_8)).await;
    assert_eq!(list["functions"][0]["name"], "b");

    // A tenant token may not deploy into another tenant.
    let r = s
        .post("/functions", Some(TENANT_7))
        .json(&json!({"name": "x", "wasm_b64": EMPTY_MODULE_B64, "tenant": "8"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "forbidden");
    let last = s.audit_records().pop().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["outcome"].as_str()),
        (Some("function.create"), Some("denied"))
    );
    assert_eq!(last["actor"]["scope"]["kind"], "tenant");
    assert_eq!(last["actor"]["tenant"], "7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_admits_everything_and_says_so() {
    let s = TestServer::start_with(Options::dev_mode()).await;
    let f = s.deploy(None, "dev-fn", &wasm(ADD_WAT)).await;
    let id = f["id"].as_str().unwrap();
    let (status, _) = s.invoke(None, id, "add", json!([1, 1])).await;
    assert_eq!(status, 200);
    let r = s
        .delete(&format!("/functions/{id}"), Some("anything"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    let records = s.audit_records();
    assert_eq!(records.len(), 2);
    for r in &records {
        assert_eq!(r["actor"]["scope"]["kind"], "dev");
        assert_eq!(r["outcome"], "success");
    }
    let ready: Value = s.get_json("/readyz", None).await;
    assert_eq!(ready["dev_mode"], true);
    assert!(s.metrics().await.contains("tensor_wasm_dev_mode 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_trace_id_reaches_the_audit_record() {
    let s = TestServer::start().await;
    let r = s
        .post("/functions", Some(ADMIN))
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .header("x-request-id", "my-request-1")
        .json(&json!({"name": "traced", "wasm_b64": EMPTY_MODULE_B64}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-request-id"], "my-request-1");
    let rec = s.audit_records().pop().unwrap();
    assert_eq!(rec["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(rec["request_id"], "my-request-1");
    assert!(rec["time"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_is_admin_only_and_audited() {
    let s = TestServer::start().await;
    let id = s.deploy(Some(ADMIN), "keep", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let elsewhere = tempfile::tempdir().unwrap();
    let dest = elsewhere.path().join("backup-1");
    let body = json!({"to": dest});
    let r = s
        .post("/admin/backup", Some(TENANT_7))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!dest.exists());
    let r = s
        .post("/admin/backup", Some(ADMIN))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["function_count"], 1, "{v}");
    // The same complete, verifiable backup as `tensor-wasm backup --to`:
    // manifest, store, audit key — owner-only.
    let manifest = tensor_wasm_store::backup::verify_backup(&dest).expect("verifies");
    let names: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    assert!(
        names.contains(&"functions.redb") && names.contains(&"audit.key"),
        "{names:?}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "backup dir is owner-only");
    }
    // It restores into a data dir a server then serves the function from.
    let restored = elsewhere.path().join("data");
    tensor_wasm_store::backup::restore_data_dir(&dest, &restored).expect("restores");
    let r2 = TestServer::start_with(Options {
        data_dir: Some(restored),
        ..Options::default()
    })
    .await;
    let (status, out) = r2.invoke(Some(ADMIN), &id, "add", json!([2, 3])).await;
    assert_eq!(
        (status, out["results"][0].as_i64()),
        (200, Some(5)),
        "{out}"
    );
    drop(r2);
    // Never overwrites.
    let r = s
        .post("/admin/backup", Some(ADMIN))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let recs: Vec<Value> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["action"] == "admin.backup")
        .collect();
    let outcomes: Vec<&str> = recs
        .iter()
        .map(|r| r["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["denied", "success", "failure"]);
    assert_eq!(recs[1]["target"]["path"], dest.display().to_string());
}
