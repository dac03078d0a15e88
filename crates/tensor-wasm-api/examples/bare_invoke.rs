//! Baseline for `scripts/bench-http.sh`: the gateway's invoke work (JSON
//! parse, pooled instantiate + typed call, JSON reply) behind a bare axum
//! route, with no auth, metrics, audit, tracing or registry. The gap between
//! this and the gateway is what the gateway's own layers cost.
//!
//! `cargo run --release -p tensor-wasm-api --example bare_invoke -- 127.0.0.1:18083`
//! then `POST /invoke` with `{"export":"add","args":[2,3]}`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use tensor_wasm_exec::{CompiledFunction, EngineConfig, Executor, InvokeContext};

struct App {
    executor: Executor,
    add: CompiledFunction,
    context: InvokeContext,
}

#[derive(serde::Deserialize)]
struct Call {
    export: String,
    args: Vec<serde_json::Value>,
}

async fn invoke(State(app): State<Arc<App>>, body: Bytes) -> (StatusCode, String) {
    let call: Call = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()),
    };
    match app
        .executor
        .call_typed(&app.add, &call.export, &call.args, &app.context)
        .await
    {
        Ok(out) => (
            StatusCode::OK,
            serde_json::json!({"results": out.results, "duration_us": out.duration.as_micros() as u64})
                .to_string(),
        ),
        Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18083".to_owned());
    let executor = Executor::new(EngineConfig::default())?;
    let add = executor.compile(
        br#"(module (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add))"#,
    )?;
    let app = Arc::new(App {
        executor,
        add,
        context: InvokeContext::new("bench"),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let router = Router::new().route("/invoke", post(invoke)).with_state(app);
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("bare_invoke listening on {addr}");
        axum::serve(listener, router).await
    })?;
    Ok(())
}
