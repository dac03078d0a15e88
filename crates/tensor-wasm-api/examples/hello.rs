//! Baseline for `scripts/bench-http.sh`: a bare axum "hello" server on the
//! same runtime set-up as the gateway, with no auth, metrics, audit or Wasm.
//!
//! `cargo run --release -p tensor-wasm-api --example hello -- 127.0.0.1:18081`

use axum::Router;
use axum::routing::{get, post};

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            // Same request shape as the gateway benchmark (a small JSON POST).
            .route(
                "/invoke",
                post(|body: String| async move { body.len().to_string() }),
            );
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("hello listening on {addr}");
        axum::serve(listener, app).await
    })
}
