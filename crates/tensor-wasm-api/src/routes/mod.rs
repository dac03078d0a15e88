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
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::guard::GuardLayer;
use crate::observe::{ObserveLayer, PanicResponder};
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
        .route_layer(GuardLayer::new(state.clone()));
    let panics = PanicResponder {
        panics: state.inner.metrics.panics.clone(),
    };
    public
        .merge(protected)
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(CatchPanicLayer::custom(panics))
        .layer(ObserveLayer::new(state.clone()))
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
        let gateway = Gateway::with_store(config, store).await.unwrap();
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

    /// A `Vec` behind a lock that a fmt layer writes log lines into.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn server_errors_are_logged_once_with_the_request_id() {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt;
        let logs = Captured::default();
        let writer = logs.clone();
        // The same per-layer filter as `telemetry::init`: the request span is
        // not formatted, so the failure line must carry the id itself.
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(crate::telemetry::not_request_span()),
        );
        let _default = tracing::subscriber::set_default(subscriber);

        let dir = tempfile::tempdir().unwrap();
        let mut config = ApiConfig::new(dir.path());
        config.engine.pool_total_instances = 4;
        config.audit = crate::config::AuditTarget::File(dir.path().join("audit.log"));
        let store = Arc::new(tensor_wasm_store::MemoryStore::default());
        let gateway = Gateway::with_store(config, store).await.unwrap();
        async fn broken() -> ApiError {
            ApiError::Internal("disk on fire".into())
        }
        async fn fine() -> &'static str {
            "ok"
        }
        let extra = Router::new()
            .route("/broken", get(broken))
            .route("/fine", get(fine));
        let app = assemble(gateway.state().clone(), extra);
        let resp = app
            .clone()
            .oneshot(Request::get("/broken").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 500);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        let resp = app
            .oneshot(Request::get("/fine").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);

        let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let failures: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("request failed"))
            .collect();
        assert_eq!(failures.len(), 1, "one failure line expected in:\n{text}");
        let line = failures[0];
        assert!(line.contains(&format!("request_id={id}")), "{line}");
        assert!(
            line.contains("route=\"/broken\"") || line.contains("route=/broken"),
            "{line}"
        );
        assert!(
            line.contains("status=500") && line.contains("disk on fire"),
            "{line}"
        );
    }
}
