//! Hostile tenants through the public API: tenant 7 attacks, tenant 8 is the
//! victim. Each test asserts the attacker gets its clear error, the victim
//! is served, and nothing of the victim's leaks.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// A guest that asks WASI for a one-hour sleep (`poll_oneoff`, relative
/// monotonic clock): a host call, where epoch interruption never fires.
const SLEEPER_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "sleep") (result i32)
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))))"#;

/// The classic hostile guests, one export each.
const HOSTILE_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "spin") (loop br 0))
  (func (export "bomb")
    (loop
      (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
      br 0))
  (func $recurse (export "recurse") (param i32) (result i32)
    local.get 0 i32.const 1 i32.add call $recurse)
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1024))
    (loop $again
      (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))
      br $again)))"#;

async fn deploy_with(s: &TestServer, token: &str, name: &str, wat: &str, limits: Value) -> String {
    s.deploy_json(
        Some(token),
        json!({"name": name, "wasm_b64": b64(&wasm(wat)), "limits": limits}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

/// Starts one typed call of `export` (no arguments) in the background;
/// resolves to its status, `Retry-After` header and JSON body.
fn spawn_invoke(
    s: &TestServer,
    token: &'static str,
    id: &str,
    export: &'static str,
) -> tokio::task::JoinHandle<(u16, Option<String>, Value)> {
    let (client, url) = (s.client.clone(), s.url(&format!("/functions/{id}/invoke")));
    tokio::spawn(async move {
        let r = client
            .post(url)
            .bearer_auth(token)
            .json(&json!({"export": export, "args": []}))
            .send()
            .await
            .expect("invoke request");
        let status = r.status().as_u16();
        let retry = r
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (status, retry, r.json().await.expect("JSON reply"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_sleeping_in_a_host_call_ends_at_its_deadline() {
    let s = TestServer::start().await;
    let id = deploy_with(
        &s,
        TENANT_7,
        "sleeper",
        SLEEPER_WAT,
        json!({"timeout_ms": 100}),
    )
    .await;
    let started = Instant::now();
    let (status, v) = s.invoke(Some(TENANT_7), &id, "sleep", json!([])).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(error_code(&v), "deadline_exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the one-hour sleep was not cut at its 100 ms deadline"
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"tensor_wasm_invocations_total{outcome="timeout"} 1"#),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_its_share_gets_429_while_another_tenant_is_served() {
    let s = TestServer::start_with(Options {
        max_concurrent_invocations: Some(8),
        ..Options::default()
    })
    .await;
    let sleeper = deploy_with(
        &s,
        TENANT_7,
        "sleeper",
        SLEEPER_WAT,
        json!({"timeout_ms": 4000}),
    )
    .await;
    let add = s.deploy(Some(TENANT_8), "add", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // 16 sleeping calls at once: more than the whole server's 8 slots.
    let attack: Vec<_> = (0..16)
        .map(|_| spawn_invoke(&s, TENANT_7, &sleeper, "sleep"))
        .collect();
    // While the attacker holds its share (4 s deadlines: all 16 calls arrive
    // while the first two still hold it), the victim is served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..5 {
        let (status, v) = s.invoke(Some(TENANT_8), &add, "add", json!([i, 1])).await;
        assert_eq!((status, &v["results"]), (200, &json!([i + 1])), "{v}");
    }
    let mut codes = Vec::new();
    for a in attack {
        let (status, retry, v) = a.await.unwrap();
        let retry = retry.is_some();
        let code = error_code(&v).to_owned();
        if status == 429 {
            assert_eq!(code, "tenant_concurrency_limited");
            assert!(retry, "429 without Retry-After");
        } else {
            assert_eq!((status, code.as_str()), (422, "deadline_exceeded"));
        }
        codes.push(status);
    }
    // The default share is a quarter of the 8 global slots.
    assert_eq!(codes.iter().filter(|c| **c == 422).count(), 2, "{codes:?}");
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(
            r#"tensor_wasm_invocations_refused_total{tenant="7",reason="tenant_concurrency"} 14"#
        ),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_limits_file_sets_a_tenants_share() {
    let s = TestServer::start_with(Options {
        max_concurrent_invocations: Some(16),
        tenant_max_concurrent_invocations: Some(1),
        tenant_limits: Some(r#"{"8": {"max_concurrent_invocations": 3}}"#.to_owned()),
        ..Options::default()
    })
    .await;
    let mut statuses = Vec::new();
    for (token, name) in [(TENANT_7, "s7"), (TENANT_8, "s8")] {
        let id = deploy_with(&s, token, name, SLEEPER_WAT, json!({"timeout_ms": 3000})).await;
        let calls: Vec<_> = (0..4)
            .map(|_| spawn_invoke(&s, token, &id, "sleep"))
            .collect();
        let mut got = Vec::new();
        for c in calls {
            got.push(c.await.unwrap().0);
        }
        got.sort();
        statuses.push(got);
    }
    assert_eq!(
        statuses[0],
        [422, 429, 429, 429],
        "tenant 7: default share of 1"
    );
    assert_eq!(
        statuses[1],
        [422, 422, 422, 429],
        "tenant 8: its file entry of 3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_refuses_invocations_before_the_host_runs_out() {
    // Two running invocations of 128 MiB each fill a 256 MiB budget.
    let s = TestServer::start_with(Options {
        memory_budget_bytes: Some(256 << 20),
        ..Options::default()
    })
    .await;
    let id = deploy_with(
        &s,
        TENANT_7,
        "sleeper",
        SLEEPER_WAT,
        json!({"timeout_ms": 4000, "max_memory_bytes": 134217728}),
    )
    .await;
    let add = s.deploy(Some(TENANT_8), "add", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hold: Vec<_> = (0..2)
        .map(|_| spawn_invoke(&s, TENANT_7, &id, "sleep"))
        .collect();
    // Both holders are admitted (they stay 4 s) before the victim asks.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let r = s
        .post(&format!("/functions/{add}/invoke"), Some(TENANT_8))
        .json(&json!({"export": "add", "args": [1, 2]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "memory_budget_exhausted");
    for h in hold {
        assert_eq!(h.await.unwrap().0, 422);
    }
    // Budget released with the invocations.
    let (status, v) = s.invoke(Some(TENANT_8), &add, "add", json!([1, 2])).await;
    assert_eq!((status, &v["results"]), (200, &json!([3])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_wide_ceilings_hold_without_a_tenant_limits_file() {
    // The default timeout ceiling (60 s) and a 64 MiB memory ceiling; the
    // engine itself would allow 300 s and 256 MiB.
    let s = TestServer::start_with(Options {
        memory_ceiling: Some(64 << 20),
        ..Options::default()
    })
    .await;
    for (limits, field) in [
        (json!({"timeout_ms": 300000}), "limits.timeout_ms"),
        (
            json!({"max_memory_bytes": 134217728}),
            "limits.max_memory_bytes",
        ),
    ] {
        let r = s
            .post("/functions", Some(TENANT_7))
            .json(&json!({"name": "greedy", "wasm_b64": b64(&wasm(ADD_WAT)), "limits": limits}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "invalid_request");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(field) && msg.contains("server's ceiling"),
            "{msg}"
        );
    }
    // At the ceiling is fine, and the default memory limit (128 MiB) is
    // capped at the lowered ceiling.
    let v = s
        .deploy_json(
            Some(TENANT_7),
            json!({"name": "fits", "wasm_b64": b64(&wasm(ADD_WAT)), "limits": {"timeout_ms": 60000}}),
        )
        .await;
    assert_eq!(v["effective_limits"]["timeout_ms"], 60000);
    assert_eq!(v["effective_limits"]["max_memory_bytes"], 64 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_call_body_is_bounded_before_it_is_parsed() {
    let s = TestServer::start().await;
    let id = s.deploy(Some(TENANT_7), "add", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let args = vec![0; 40_000];
    let r = s
        .post(&format!("/functions/{id}/invoke"), Some(TENANT_7))
        .json(&json!({"export": "add", "args": args}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "payload_too_large");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_classic_hostile_guests_end_alone_and_the_victim_is_served() {
    let s = TestServer::start().await;
    let evil = deploy_with(
        &s,
        TENANT_7,
        "evil",
        HOSTILE_WAT,
        json!({"timeout_ms": 500, "max_memory_bytes": 4194304, "max_output_bytes": 65536}),
    )
    .await;
    let add = s.deploy(Some(TENANT_8), "add", &wasm(ADD_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (export, args, code) in [
        ("spin", json!([]), "deadline_exceeded"),
        ("bomb", json!([]), "memory_limit_exceeded"),
        ("recurse", json!([0]), "trap"),
    ] {
        let (status, v) = s.invoke(Some(TENANT_7), &evil, export, args).await;
        assert_eq!((status, error_code(&v)), (422, code), "{export}: {v}");
        let (status, v) = s.invoke(Some(TENANT_8), &add, "add", json!([2, 3])).await;
        assert_eq!((status, &v["results"]), (200, &json!([5])));
    }
    // Output flood through the bytes convention.
    let r = s
        .post(&format!("/functions/{evil}/invoke"), Some(TENANT_7))
        .header("content-type", "text/plain")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert_eq!(error_code(&v), "output_too_large");
    // The attacker cannot even see the victim's function.
    let (status, _) = s.invoke(Some(TENANT_7), &add, "add", json!([2, 3])).await;
    assert_eq!(status, 404);
}

/// `init` sets a secret in memory; `peek` returns it (0 before `init`).
const SECRET_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "init") (i32.store (i32.const 0) (i32.const 4242)))
  (func (export "peek") (result i32) (i32.load (i32.const 0))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_functions_snapshot_cannot_be_run_through_your_own_function() {
    let s = TestServer::start().await;
    // The victim (tenant 8) warms its function with its secret and snapshots it.
    let victim = s.deploy(Some(TENANT_8), "vault", &wasm(SECRET_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = s
        .post(&format!("/functions/{victim}/snapshots"), Some(TENANT_8))
        .json(&json!({"init_export": "init"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let snap: Value = r.json().await.unwrap();
    let snap_id = snap["id"].as_str().unwrap().to_owned();
    // 128 random bits after the timestamp.
    let random = snap_id.rsplit('-').next().unwrap();
    assert_eq!(random.len(), 32, "{snap_id}");
    // The victim's own warm call works (and fills the prepared cache).
    let warm = s
        .post(
            &format!("/functions/{victim}/snapshots/{snap_id}/invoke"),
            Some(TENANT_8),
        )
        .json(&json!({"export": "peek"}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let warm: Value = warm.json().await.unwrap();
    assert_eq!(warm["results"], json!([4242]));

    // The attacker deploys the very same module under its own tenant (so the
    // module check alone would pass) and names the victim's snapshot id.
    let mine = s.deploy(Some(TENANT_7), "vault", &wasm(SECRET_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // And a second function of the victim's own tenant tries too.
    let sibling = s.deploy(Some(TENANT_8), "sibling", &wasm(SECRET_WAT)).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (token, fid) in [(TENANT_7, &mine), (TENANT_8, &sibling)] {
        let r = s
            .post(
                &format!("/functions/{fid}/snapshots/{snap_id}/invoke"),
                Some(token),
            )
            .json(&json!({"export": "peek"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{fid}");
        let v: Value = r.json().await.unwrap();
        assert!(!v.to_string().contains("4242"), "{v}");
    }
    let denied: Vec<_> = s
        .audit_records()
        .into_iter()
        .filter(|r| r["action"] == "snapshot.invoke" && r["outcome"] == "denied")
        .collect();
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(denied[0]["actor"]["tenant"], "7");
}

/// A guest that tries to load raw PTX; returns the host's code.
const PTX_LOADER_WAT: &str = r#"(module
  (import "tw_gpu_v1" "kernel_load" (func $load (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "k")
  (data (i32.const 1024) ".version 7.0\n.target sm_50\n.address_size 64\n.visible .entry k(\n.param .u64 p\n)\n{ ret; }\n")
  (func (export "load") (result i32)
    (call $load (i32.const 1024) (i32.const 88) (i32.const 100) (i32.const 1) (i32.const 0))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_ptx_is_off_unless_the_operator_enables_it_for_the_tenant() {
    let s = TestServer::start_with(Options {
        gpu: true,
        tenant_limits: Some(r#"{"8": {"raw_ptx": true}}"#.to_owned()),
        ..Options::default()
    })
    .await;
    let ptx_len = ".version 7.0\n.target sm_50\n.address_size 64\n.visible .entry k(\n.param .u64 p\n)\n{ ret; }\n".len();
    assert_eq!(ptx_len, 88);
    let mut rcs = Vec::new();
    for token in [TENANT_7, TENANT_8] {
        let id = s.deploy(Some(token), "ptx", &wasm(PTX_LOADER_WAT)).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, v) = s.invoke(Some(token), &id, "load", json!([])).await;
        assert_eq!(status, 200, "{v}");
        rcs.push(v["results"][0].as_i64().unwrap());
    }
    // Tenant 7: ERR_RAW_PTX_DISABLED; tenant 8 (opted in): loaded.
    assert_eq!(rcs, [-13, 0]);
}

/// Three 64 MiB buffers and a 4096³ matmul (~1.4e11 flops): seconds to tens
/// of seconds on the CPU backend, far past the 700 ms deadline.
const MATMUL_WAT: &str = r#"(module
  (import "tw_gpu_v1" "buffer_create" (func $create (param i64 i32) (result i32)))
  (import "tw_gpu_v1" "op_matmul" (func $matmul (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "big") (result i32)
    (drop (call $create (i64.const 67108864) (i32.const 0)))
    (drop (call $create (i64.const 67108864) (i32.const 4)))
    (drop (call $create (i64.const 67108864) (i32.const 8)))
    (call $matmul (i32.load (i32.const 0)) (i32.load (i32.const 4)) (i32.load (i32.const 8))
      (i32.const 4096) (i32.const 4096) (i32.const 4096))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_cpu_backend_op_stops_when_its_invocation_hits_the_deadline() {
    let s = TestServer::start_with(Options {
        gpu: true,
        ..Options::default()
    })
    .await;
    let id = deploy_with(
        &s,
        TENANT_7,
        "matmul",
        MATMUL_WAT,
        json!({"timeout_ms": 700}),
    )
    .await;
    let started = Instant::now();
    let (status, v) = s.invoke(Some(TENANT_7), &id, "big", json!([])).await;
    assert_eq!((status, error_code(&v)), (422, "deadline_exceeded"), "{v}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The op itself noticed and stopped (it does not run on in the pool).
    let mut cancelled = false;
    for _ in 0..100 {
        if s.metrics()
            .await
            .contains("tensor_wasm_gpu_ops_cancelled_total 1")
        {
            cancelled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cancelled, "the matmul was not cancelled");
    // Its device memory went back with the store, and so did the op's
    // launch slot once the op stopped (not one slot fewer per cut-off op).
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"tensor_wasm_gpu_memory_in_use_bytes{tenant="7"} 0"#),
        "{metrics}"
    );
    let gpu = s.executor_gpu();
    assert_eq!(gpu.tenant_launches_in_flight("7"), 0);
    assert_eq!(gpu.tenant_memory_in_use("7"), 0);
}

/// A module of one function with `locals` i32 locals and `nops` bytes of code.
fn heavy_module(locals: u32, nops: usize) -> Vec<u8> {
    let leb = leb128;
    let mut body = Vec::new();
    leb(1, &mut body); // one local declaration
    leb(u64::from(locals), &mut body);
    body.push(0x7f); // i32
    body.extend(std::iter::repeat_n(0x01, nops)); // nop
    body.push(0x0b); // end
    let mut code = Vec::new();
    leb(1, &mut code);
    leb(body.len() as u64, &mut code);
    code.extend(body);
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.extend([0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type: () -> ()
    m.extend([0x03, 0x02, 0x01, 0x00]); // one function of type 0
    m.push(0x0a);
    leb(code.len() as u64, &mut m);
    m.extend(code);
    m
}

#[tokio::test]
async fn modules_too_costly_to_compile_are_refused_before_compiling() {
    let s = TestServer::start().await;
    let started = Instant::now();
    for (what, module) in [
        ("locals", heavy_module(50_000, 10)),
        ("body", heavy_module(1, (1 << 20) + 1)),
    ] {
        let r = s
            .post("/functions", Some(TENANT_7))
            .json(&json!({"name": "heavy", "wasm_b64": b64(&module)}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{what}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(error_code(&v), "module_too_complex", "{what}: {v}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused without compiling: {:?}",
        started.elapsed()
    );
    // Within the limits it deploys.
    s.deploy(Some(TENANT_7), "fine", &heavy_module(100, 1000))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_quotas_stop_a_tenant_from_filling_the_disk() {
    let add = wasm(ADD_WAT);
    let limits = json!({
        "7": {"max_functions": 2, "max_snapshots": 1},
        "8": {"max_stored_bytes": add.len() * 2},
    });
    let s = TestServer::start_with(Options {
        tenant_limits: Some(limits.to_string()),
        ..Options::default()
    })
    .await;
    let deploy = |token: &'static str, name: &'static str| {
        let (client, url) = (s.client.clone(), s.url("/functions"));
        let body = json!({"name": name, "wasm_b64": b64(&add)});
        async move {
            let r = client
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let (st, first) = deploy(TENANT_7, "a").await;
    assert_eq!(st, 201);
    assert_eq!(deploy(TENANT_7, "b").await.0, 201);
    let (st, v) = deploy(TENANT_7, "c").await;
    assert_eq!((st, error_code(&v)), (403, "quota_exceeded"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_functions 2")
    );
    // The byte quota of another tenant.
    assert_eq!(deploy(TENANT_8, "a").await.0, 201);
    assert_eq!(deploy(TENANT_8, "b").await.0, 201);
    let (st, v) = deploy(TENANT_8, "c").await;
    assert_eq!((st, error_code(&v)), (403, "quota_exceeded"), "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_stored_bytes")
    );
    // An admin deploying for a tenant without caps is unaffected.
    let r = s
        .post("/functions", Some(ADMIN))
        .json(&json!({"name": "free", "wasm_b64": b64(&add), "tenant": "9"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Snapshots: one kept at most.
    let id = first["id"].as_str().unwrap();
    let snap = |n: u32| {
        let (client, url) = (
            s.client.clone(),
            s.url(&format!("/functions/{id}/snapshots")),
        );
        async move {
            let r = client.post(url).bearer_auth(TENANT_7).send().await.unwrap();
            let status = r.status().as_u16();
            let v: Value = r.json().await.unwrap();
            (n, status, v)
        }
    };
    let (_, st, v) = snap(1).await;
    assert_eq!(st, 201, "{v}");
    let (_, st, v) = snap(2).await;
    assert_eq!((st, error_code(&v)), (403, "quota_exceeded"), "{v}");
    // One audit rule for every route: a quota refusal is `denied`, whether
    // it refused a deploy or a snapshot.
    let refused: Vec<(String, String)> = s
        .audit_records()
        .iter()
        .filter(|r| r["error"] == "quota_exceeded")
        .map(|r| {
            let field = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (field("action"), field("outcome"))
        })
        .collect();
    for action in ["function.create", "snapshot.create"] {
        assert!(
            refused.contains(&(action.to_owned(), "denied".to_owned())),
            "{action} quota refusal recorded as denied: {refused:?}"
        );
    }
    assert!(refused.iter().all(|(_, o)| o == "denied"), "{refused:?}");
    // Deleting makes room again.
    let r = s
        .delete(&format!("/functions/{id}"), Some(TENANT_7))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(deploy(TENANT_7, "c").await.0, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_snapshot_creations_cannot_pass_the_quota_together() {
    let limits = json!({"7": {"max_snapshots": 2}});
    let s = TestServer::start_with(Options {
        tenant_limits: Some(limits.to_string()),
        ..Options::default()
    })
    .await;
    let f = s.deploy(Some(TENANT_7), "add", &wasm(ADD_WAT)).await;
    let id = f["id"].as_str().unwrap().to_owned();
    let url = s.url(&format!("/functions/{id}/snapshots"));
    let create = || {
        let (client, url) = (s.client.clone(), url.clone());
        async move {
            let r = client.post(url).bearer_auth(TENANT_7).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        tasks.spawn(create());
    }
    let burst = tasks.join_all().await;
    let created = burst.iter().filter(|(st, _)| *st == 201).count();
    for (st, v) in &burst {
        assert!(
            *st == 201 || (*st == 403 && error_code(v) == "quota_exceeded"),
            "{st} {v}"
        );
    }
    assert!(
        (1..=2).contains(&created),
        "a quota of 2 let {created} of 8 concurrent creations through"
    );
    // Whatever the burst left, the quota is exact afterwards.
    if created < 2 {
        assert_eq!(create().await.0, 201);
    }
    let (st, v) = create().await;
    assert_eq!((st, error_code(&v)), (403, "quota_exceeded"), "{v}");
    let listed: Value = s
        .get_json(&format!("/functions/{id}/snapshots"), Some(TENANT_7))
        .await;
    assert_eq!(listed["snapshots"].as_array().unwrap().len(), 2, "{listed}");
}
