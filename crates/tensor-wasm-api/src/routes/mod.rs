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
    let public = Router::new()
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router());
    let protected = Router::new()
        .merge(functions::router())
        .merge(invoke::router())
        .merge(admin::router())
        .merge(snapshots::router())
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
