//! The gateway's own cost per request, without the network: requests are
//! driven through the axum router in-process (`tower::ServiceExt::oneshot`),
//! so hyper and the kernel — identical for every server in
//! `scripts/bench-http.sh` and its noisiest part — are left out.
//!
//! Three routers answer in the same run: a bare "hello" route, the typed
//! `add(2,3)` call through the engine behind a bare route (what
//! `examples/bare_invoke.rs` serves), and the full gateway router (auth,
//! metrics, audit sink, request ids, tenancy, invocation permits). The
//! difference between the last two is what the gateway's layers cost.
//!
//! Run: `cargo bench -p tensor-wasm-api --bench router`

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::Request;
use axum::routing::{get, post};
use tensor_wasm_api::auth::TokenList;
use tensor_wasm_api::{ApiConfig, AuditTarget, Gateway};
use tensor_wasm_exec::{CompiledFunction, EngineConfig, Executor, InvokeContext};
use tower::ServiceExt;

// The binary's allocator, so that the figures match what `serve` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ADD: &str = r#"(module (func (export "add") (param i32 i32) (result i32)
  local.get 0 local.get 1 i32.add))"#;
const TOKEN: &str = "bench-admin-token-0123456789";
const BODY: &str = r#"{"export":"add","args":[2,3]}"#;
const ITERS: usize = 50_000;

#[path = "../../../benches/percentiles.rs"]
mod percentiles;
use percentiles::{Stats, report, stats};

/// Times `ITERS` requests built by `make` (after a warm-up); each response
/// must be 200 and its body is read in full.
async fn drive(router: &Router, make: impl Fn() -> Request<Body>) -> Stats {
    let mut samples = Vec::with_capacity(ITERS);
    for i in 0..ITERS + 2_000 {
        let req = make();
        let t = Instant::now();
        let resp = router.clone().oneshot(req).await.expect("infallible");
        assert_eq!(resp.status(), 200);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .expect("body");
        let elapsed = t.elapsed();
        assert!(!body.is_empty());
        if i >= 2_000 {
            samples.push(elapsed);
        }
    }
    stats(samples)
}

struct Bare {
    executor: Executor,
    add: CompiledFunction,
    context: InvokeContext,
}

#[derive(serde::Deserialize)]
struct Call {
    export: String,
    args: Vec<serde_json::Value>,
}

async fn bare_invoke(State(app): State<Arc<Bare>>, body: Bytes) -> String {
    let call: Call = serde_json::from_slice(&body).expect("json");
    let out = app
        .executor
        .call_typed(&app.add, &call.export, &call.args, &app.context)
        .await
        .expect("call");
    serde_json::json!({"results": out.results, "duration_us": out.duration.as_micros() as u64})
        .to_string()
}

fn invoke_request(path: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(path).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(BODY)).expect("request")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let hello = Router::new().route("/", get(|| async { "hello" }));
        let h = drive(&hello, || {
            Request::get("/").body(Body::empty()).expect("request")
        })
        .await;

        let executor = Executor::new(EngineConfig::default()).expect("engine");
        let add = executor.compile(ADD.as_bytes()).expect("compile");
        let bare = Router::new()
            .route("/invoke", post(bare_invoke))
            .with_state(Arc::new(Bare {
                executor,
                add,
                context: InvokeContext::new("bench"),
            }));
        let b = drive(&bare, || invoke_request("/invoke", None)).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ApiConfig::new(dir.path());
        config.tokens = TokenList::parse(&format!("{TOKEN}:tenant=*")).expect("tokens");
        config.audit = AuditTarget::File(dir.path().join("audit.log"));
        config.gpu = None;
        let store = Arc::new(tensor_wasm_store::MemoryStore::default());
        let gateway = Gateway::with_store(config, store).await.expect("gateway");
        let router = gateway.router();
        let wasm = wat::parse_str(ADD).expect("wat");
        let deploy = Request::post("/functions?name=add")
            .header("content-type", "application/wasm")
            .header("authorization", format!("Bearer {TOKEN}"))
            .body(Body::from(wasm))
            .expect("request");
        let resp = router.clone().oneshot(deploy).await.expect("infallible");
        assert_eq!(resp.status(), 201);
        let v: serde_json::Value = serde_json::from_slice(
            &axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .expect("body"),
        )
        .expect("json");
        let path = format!("/functions/{}/invoke", v["id"].as_str().expect("id"));
        let g = drive(&router, || invoke_request(&path, Some(TOKEN))).await;
        // `GATEWAY_ONLY=N`: N more gateway passes, for profiling with perf.
        let extra: usize = std::env::var("GATEWAY_ONLY")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        for _ in 0..extra {
            drive(&router, || invoke_request(&path, Some(TOKEN))).await;
        }

        println!("one request through the router, no network, {ITERS} iterations each:");
        report("hello route (GET /)", &h);
        report("bare invoke route (engine, no layers)", &b);
        report("gateway invoke (auth, metrics, audit)", &g);
        let gateway_only = g.mean.saturating_sub(b.mean);
        println!(
            "gateway layers: +{:.2} µs mean per call over the bare invoke route ({:.2}x)",
            gateway_only.as_secs_f64() * 1e6,
            g.mean.as_secs_f64() / b.mean.as_secs_f64()
        );
    });
}
