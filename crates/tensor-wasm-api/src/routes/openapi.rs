//! `GET /openapi.json`: the hand-written OpenAPI 3.1 description of this API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

/// The document, checked to be valid JSON by a unit test.
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

async fn openapi() -> Response {
    let mut resp = OPENAPI_JSON.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn openapi_document_is_valid_json_and_lists_every_route() {
        let v: serde_json::Value = serde_json::from_str(super::OPENAPI_JSON).unwrap();
        assert_eq!(v["openapi"], "3.1.0");
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/functions",
            "/functions/{id}",
            "/functions/{id}/invoke",
            "/admin/backup",
        ] {
            assert!(v["paths"][path].is_object(), "{path} missing");
        }
    }
}
