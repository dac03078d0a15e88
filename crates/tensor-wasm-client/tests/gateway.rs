//! Every client method against a real gateway on 127.0.0.1:0: the typed
//! replies, the parsed error code, `Retry-After`, and transport failures.

use std::num::NonZeroU32;
use std::time::Duration;

use serde_json::json;
use tensor_wasm_api::auth::TokenList;
use tensor_wasm_api::{ApiConfig, AuditTarget, Gateway, RateLimitConfig};
use tensor_wasm_client::{Client, Deploy, Error, FunctionLimits, StatusCode};
use tokio::sync::oneshot;

const ADMIN: &str = "client-admin-token-0123456789";
const TENANT_7: &str = "client-tenant-seven-token";

const ADD_WAT: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

/// `init` stores 42 at address 0 and sets a flag; `get` answers the stored
/// value, or -1 when `init` never ran (a cold call).
const WARM_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))
  (func (export "init")
    (i32.store (i32.const 0) (i32.const 42))
    (global.set $ready (i32.const 1)))
  (func (export "get") (result i32)
    (if (result i32) (global.get $ready)
      (then (i32.load (i32.const 0)))
      (else (i32.const -1)))))"#;

/// A WASI command copying stdin to stdout and writing `warn` to stderr.
const ECHO_WAT: &str = include_str!("../../tensor-wasm-api/tests/fixtures/echo.wat");

fn wasm(src: &str) -> Vec<u8> {
    wat::parse_str(src).expect("test WAT parses")
}

/// A gateway serving until dropped.
struct Server {
    base: String,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

async fn start(rate_limit: Option<(u32, u32)>) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = ApiConfig::new(dir.path());
    config.tokens = TokenList::parse(&format!("{ADMIN}:tenant=*,{TENANT_7}:tenant=7"))
        .expect("test tokens parse");
    config.audit = AuditTarget::File(dir.path().join("audit.log"));
    config.rate_limit = rate_limit.map(|(rps, burst)| {
        RateLimitConfig::new(
            NonZeroU32::new(rps).expect("rps > 0"),
            NonZeroU32::new(burst),
        )
    });
    config.engine.pool_total_instances = 16;
    config.engine.pool_max_memory_bytes = 256 << 20;
    let gateway = Gateway::open(config).await.expect("gateway opens");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = gateway
            .serve(listener, async move {
                let _ = rx.await;
            })
            .await;
    });
    Server {
        // A trailing slash, as users type it, must not double up in paths.
        base: format!("http://{addr}/"),
        _dir: dir,
        _stop: tx,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_round_trips_against_a_real_gateway() {
    let s = start(None).await;
    let admin = Client::new(&s.base, Some(ADMIN)).expect("client");
    let tenant = Client::builder(&s.base, Some(TENANT_7))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");

    assert_eq!(admin.healthz().await.expect("healthz").status, "ok");
    let ready = admin.readyz().await.expect("readyz");
    assert_eq!(ready.status, "ready");
    assert!(!ready.dev_mode);
    assert_eq!(ready.functions, 0);

    // Deploy: typed reply, limits echoed, tenant honoured for admins.
    let limits = FunctionLimits {
        timeout_ms: Some(500),
        ..FunctionLimits::default()
    };
    let add = tenant
        .deploy(&Deploy::new("adder", wasm(ADD_WAT)).limits(limits.clone()))
        .await
        .expect("deploy");
    assert!(add.id.starts_with("fn_"), "{add:?}");
    assert_eq!(add.tenant, "7");
    assert_eq!(add.limits, limits);
    assert_eq!(
        add.effective_limits.as_ref().map(|l| l.timeout_ms),
        Some(500)
    );
    assert_eq!(add.exports[0].name, "add");
    assert_eq!(add.exports[0].params, ["i32", "i32"]);
    let other = admin
        .deploy(&Deploy::new("other", wasm(ADD_WAT)).tenant("9"))
        .await
        .expect("admin deploys into tenant 9");
    assert_eq!(other.tenant, "9");

    // List and get: the tenant sees its own, the admin both.
    let mine: Vec<String> = tenant
        .list_functions()
        .await
        .expect("list")
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(mine, std::slice::from_ref(&add.id));
    assert_eq!(admin.list_functions().await.expect("list").len(), 2);
    assert_eq!(tenant.get_function(&add.id).await.expect("get"), add);

    // Typed and bytes invokes.
    let reply = tenant
        .invoke_typed(&add.id, "add", &[json!(2), json!(3)])
        .await
        .expect("invoke");
    assert_eq!(reply.results, [json!(5)]);
    assert!(reply.snapshot_id.is_none());
    let echo = tenant
        .deploy(&Deploy::new("echo", wasm(ECHO_WAT)))
        .await
        .expect("deploy echo");
    let out = tenant
        .invoke_bytes(&echo.id, None, b"hello\n".to_vec())
        .await
        .expect("bytes invoke");
    assert_eq!(out.body, b"hello\n");
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.stderr.as_deref(), Some("warn"));
    assert!(out.duration_us.is_some());
    assert!(!out.stderr_truncated);

    // Snapshots: create after `init`, list, invoke warm, delete.
    let warm = tenant
        .deploy(&Deploy::new("warm", wasm(WARM_WAT)))
        .await
        .expect("deploy warm");
    let cold = tenant
        .invoke_typed(&warm.id, "get", &[])
        .await
        .expect("cold invoke");
    assert_eq!(cold.results, [json!(-1)]);
    let snap = tenant
        .create_snapshot(&warm.id, Some("init"))
        .await
        .expect("create snapshot");
    assert!(snap.id.starts_with("snap-"), "{snap:?}");
    assert_eq!(snap.function_id, warm.id);
    assert_eq!(snap.init_export.as_deref(), Some("init"));
    let listed = tenant
        .list_snapshots(&warm.id)
        .await
        .expect("list snapshots");
    assert_eq!(listed, std::slice::from_ref(&snap));
    for which in [snap.id.as_str(), "latest"] {
        let hot = tenant
            .invoke_snapshot(&warm.id, which, "get", &[])
            .await
            .expect("invoke from snapshot");
        assert_eq!(hot.results, [json!(42)]);
        assert_eq!(hot.snapshot_id.as_deref(), Some(snap.id.as_str()));
        assert!(hot.restore.is_some());
    }
    let raw = tenant
        .create_snapshot_text(&warm.id, None)
        .await
        .expect("create snapshot (text)");
    let second: serde_json::Value = serde_json::from_str(&raw).expect("reply is JSON");
    assert_eq!(second["init_export"], serde_json::Value::Null);
    tenant
        .delete_snapshot(&warm.id, &snap.id)
        .await
        .expect("delete snapshot");
    let err = tenant
        .delete_snapshot(&warm.id, &snap.id)
        .await
        .expect_err("already deleted");
    assert_eq!(err.code(), Some("snapshot_not_found"));

    // Admin backup: admins only, writes a manifest.
    let target = s._dir.path().join("backup");
    let to = target.to_str().expect("UTF-8 temp path");
    let err = tenant.admin_backup(to).await.expect_err("tenant refused");
    assert_eq!(err.status(), Some(StatusCode::FORBIDDEN));
    assert_eq!(err.code(), Some("forbidden"));
    let backup = admin.admin_backup(to).await.expect("backup");
    assert_eq!(backup.to, to);
    assert_eq!(backup.function_count, 4);
    assert!(target.join("MANIFEST.json").is_file());

    // Delete: gone afterwards, with the API's code.
    tenant.delete_function(&add.id).await.expect("delete");
    let err = tenant.get_function(&add.id).await.expect_err("deleted");
    let http = err.http().expect("an HTTP error");
    assert_eq!(http.status, StatusCode::NOT_FOUND);
    assert_eq!(http.code.as_deref(), Some("function_not_found"));
    assert!(!http.message.is_empty());
    assert_eq!(err.retry_after(), None);

    // Metrics: the text, and parsed figures that count what we just did.
    let text = admin.metrics_text().await.expect("metrics text");
    assert!(text.contains("tensor_wasm_build_info"), "{text}");
    let metrics = admin.metrics().await.expect("metrics");
    let ok = metrics
        .counter_where("tensor_wasm_invocations", |s| {
            s.label("outcome") == Some("ok")
        })
        .expect("invocation counter");
    assert!(ok >= 5.0, "{ok}");
    let latency = metrics
        .histogram_where("tensor_wasm_invoke_duration_seconds", |_| true)
        .expect("invoke latency histogram");
    assert!(latency.count() >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_api_code_and_retry_after() {
    let s = start(Some((1, 1))).await;

    let anonymous = Client::new(&s.base, None).expect("client");
    let err = anonymous.list_functions().await.expect_err("no token");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    assert_eq!(err.code(), Some("unauthorized"));

    let tenant = Client::new(&s.base, Some(TENANT_7)).expect("client");
    let err = tenant
        .deploy(&Deploy::new("bad name!", wasm(ADD_WAT)))
        .await
        .expect_err("invalid name");
    // The one request the bucket holds is spent; the next waits.
    assert_eq!(err.code(), Some("invalid_request"), "{err}");
    let err = tenant.list_functions().await.expect_err("rate limited");
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS), "{err}");
    assert_eq!(err.code(), Some("rate_limited"));
    let wait = err.retry_after().expect("Retry-After on 429");
    assert!(wait >= Duration::from_secs(1), "{wait:?}");
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = Client::builder(format!("http://{addr}"), None)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let err = client.healthz().await.expect_err("nothing listens");
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert_eq!(err.status(), None);
    assert_eq!(err.code(), None);
}
