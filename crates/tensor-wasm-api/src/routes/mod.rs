//! Route groups, one module each, assembled into the gateway's router.
//!
//! Adding a group: write `routes/<group>.rs` with a `pub fn router() ->
//! Router<AppState>` whose handlers take [`crate::state::Caller`] (the
//! authenticated actor and request context) and return
//! `Result<_, ApiError>`; then merge it into `protected` below. The guard
//! (auth + rate limit), request ids, tracing, metrics and panic capture then
//! apply to it without further work; record state changes with
//! [`AppState::audit`].

use axum::Router;
use axum::middleware::from_fn_with_state;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::observe::{PanicResponder, observe};
use crate::state::AppState;

pub mod admin;
pub mod functions;
pub mod health;
pub mod invoke;
pub mod metrics;
pub mod openapi;
pub mod snapshots;

/// The complete router: public routes, guarded routes, fallbacks and layers.
pub fn router(state: AppState) -> Router {
    assemble(state, Router::new())
}

/// [`router`] with `extra` merged among the guarded routes.
fn assemble(state: AppState, extra: Router<AppState>) -> Router {
    let public = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router());
    let protected = Router::new()
        .merge(functions::router())
        .merge(invoke::router())
        .merge(admin::router())
        .merge(snapshots::router())
        .merge(extra)
        .route_layer(from_fn_with_state(state.clone(), crate::limits::guard));
    let panics = PanicResponder {
        panics: state.inner.metrics.panics.clone(),
    };
    public
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panics))
        .layer(from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::config::ApiConfig;
    use crate::server::Gateway;

    #[tokio::test]
    async fn handler_panic_becomes_500_json_and_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ApiConfig::new(dir.path());
        config.engine.pool_total_instances = 4;
        config.audit = crate::config::AuditTarget::File(dir.path().join("audit.log"));
        let store = Arc::new(tensor_wasm_store::MemoryStore::default());
        let gateway = Gateway::with_store(config, store).unwrap();
        let state = gateway.state().clone();
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        let app = assemble(state.clone(), Router::new().route("/boom", get(boom)));
        let resp = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key("x-request-id"));
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "internal");
        assert_eq!(state.metrics().panics.get(), 1);
        let counted = state
            .metrics()
            .http_requests
            .get(&crate::metrics::HttpLabels {
                method: "GET",
                route: "/boom",
                status: 500,
            });
        assert_eq!(counted, 1);
    }
}
