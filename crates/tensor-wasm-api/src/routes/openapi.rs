//! `GET /openapi.json`: the OpenAPI 3.1 description of this API, generated
//! from the code — each handler's `#[utoipa::path]` annotation and the
//! `ToSchema` derives on its request and response types — once, on first
//! request. Tests below check that it lists exactly the routes the router
//! serves, and every error code ([`crate::error::ERROR_CODES`]).

use std::sync::LazyLock;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::routes::{admin, functions, health, invoke, metrics, snapshots};
use crate::state::AppState;

/// The document's source: every route's annotation, the bearer scheme and
/// the error-code list.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "TensorWasm gateway",
        description = "Deploy and invoke WebAssembly functions. Authentication: \
            `Authorization: Bearer <token>` on every route except /healthz, /readyz, /metrics \
            and /openapi.json. Every non-2xx response has the body \
            {\"error\":{\"code\",\"message\"}}; `code` is one of the `Error` schema's values. \
            See API.md for the error-code table, limits and headers."
    ),
    paths(
        health::healthz,
        health::readyz,
        metrics::metrics,
        openapi,
        functions::create,
        functions::list,
        functions::get_one,
        functions::delete,
        invoke::invoke,
        snapshots::create,
        snapshots::list,
        snapshots::remove,
        snapshots::invoke::invoke,
        admin::backup,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerScheme, &ErrorCodes),
)]
pub struct ApiDoc;

/// The generated document, serialized once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document is plain data and always serializes")
});

/// The document as served at `GET /openapi.json`.
pub fn document() -> &'static str {
    &DOCUMENT
}

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi))
}

#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "operations",
    summary = "This document (no auth)",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = Object)),
)]
async fn openapi() -> Response {
    let mut resp = document().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `bearer` security scheme the guarded routes name.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Puts every code of [`crate::error::ERROR_CODES`] as the `enum` of the
/// `Error` schema's `code`.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        let detail = <crate::error::ErrorDetail<'_> as ToSchema>::name();
        if let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut(detail.as_ref())
            && let Some(RefOr::T(Schema::Object(code))) = detail.properties.get_mut("code")
        {
            code.enum_values = Some(
                crate::error::ERROR_CODES
                    .iter()
                    .map(|c| serde_json::Value::from(*c))
                    .collect(),
            );
        }
    }
}

/// `GET /healthz`'s reply (the handler writes it as a constant).
#[derive(Serialize, ToSchema)]
#[allow(dead_code, reason = "schema only: the handler answers a constant")]
pub(crate) struct Liveness {
    /// Always `ok`.
    #[schema(pattern = "^ok$")]
    status: String,
}

/// Schema of `tensor_wasm_exec::ExportSignature` (that crate knows nothing
/// of HTTP or OpenAPI).
#[derive(Serialize, ToSchema)]
#[schema(as = ExportSignature)]
#[allow(
    dead_code,
    reason = "schema only: mirrors tensor_wasm_exec::ExportSignature"
)]
pub(crate) struct ExportSignatureSchema {
    /// Export name.
    name: String,
    /// Parameter types (`i32`, `i64`, `f32`, `f64`, or another Wasm type name).
    params: Vec<String>,
    /// Result types.
    results: Vec<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::{Method, Request};
    use serde_json::Value;
    use tower::ServiceExt;

    use crate::auth::TokenList;
    use crate::config::ApiConfig;
    use crate::error::ERROR_CODES;
    use crate::server::Gateway;

    /// `(METHOD, path template)` of every operation in the document.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                if method != "parameters" {
                    ops.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    /// `(METHOD, path)` of every `.route("PATH", get(..).post(..))` outside
    /// tests in the Rust files under `src/routes`.
    fn registered() -> BTreeSet<(String, String)> {
        fn walk(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, files);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    files.push(path);
                }
            }
        }
        let mut files = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes"),
            &mut files,
        );
        let mut routes = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for call in code.split(".route(").skip(1) {
                let call = call.trim_start();
                let Some(rest) = call.strip_prefix('"') else {
                    continue;
                };
                let (path, rest) = rest.split_once('"').unwrap();
                // The method router: up to the `)` that closes `.route(`.
                let mut depth = 1;
                let end = rest
                    .char_indices()
                    .find(|&(_, c)| {
                        depth += match c {
                            '(' => 1,
                            ')' => -1,
                            _ => 0,
                        };
                        depth == 0
                    })
                    .map_or(rest.len(), |(i, _)| i);
                let methods = &rest[..end];
                for method in ["get", "post", "put", "patch", "delete", "head", "options"] {
                    let called = methods.match_indices(&format!("{method}(")).any(|(i, _)| {
                        !methods[..i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    });
                    if called {
                        routes.insert((method.to_uppercase(), path.to_owned()));
                    }
                }
            }
        }
        routes
    }

    fn doc() -> Value {
        serde_json::from_str(super::document()).expect("the document is JSON")
    }

    #[test]
    fn every_route_the_router_registers_is_documented_and_nothing_else() {
        let registered = registered();
        // The parser itself works: these routes exist.
        assert!(registered.contains(&("POST".into(), "/functions/{id}/invoke".into())));
        assert!(registered.contains(&("GET".into(), "/functions/{id}/snapshots".into())));
        let documented = documented(&doc());
        let undocumented: Vec<_> = registered.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&registered).collect();
        assert!(
            undocumented.is_empty(),
            "served but not documented: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "documented but not registered: {unserved:?}"
        );
    }

    #[tokio::test]
    async fn every_documented_operation_is_served_and_guarded_as_documented() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ApiConfig::new(dir.path());
        config.engine.pool_total_instances = 4;
        config.tokens = TokenList::parse("admin-0123456789abcdef:tenant=*").unwrap();
        config.audit = crate::config::AuditTarget::File(dir.path().join("audit.log"));
        let store = Arc::new(tensor_wasm_store::MemoryStore::default());
        let gateway = Gateway::with_store(config, store).await.unwrap();
        let app = crate::routes::router(gateway.state().clone());
        let doc = doc();
        for (method, template) in documented(&doc) {
            let path = template
                .replace("{id}", "fn_00000000000000000000000000000000")
                .replace("{snapshot_id}", "latest");
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&path)
                .body(Body::empty())
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let code = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned));
            let what = format!("{method} {path}: {status} {code:?}");
            assert!(
                !matches!(
                    code.as_deref(),
                    Some("route_not_found" | "method_not_allowed")
                ),
                "{what}"
            );
            let operation = &doc["paths"][&template][method.to_lowercase()];
            let guarded = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
            if guarded {
                assert_eq!(code.as_deref(), Some("unauthorized"), "{what}");
            } else {
                assert_ne!(status, 401, "{what}");
                assert!(operation.get("security").is_none(), "{what}");
            }
        }
    }

    #[test]
    fn the_error_schema_lists_every_error_code_and_every_error_response_uses_it() {
        let doc = doc();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let listed = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"];
        let listed: Vec<&str> = listed
            .as_array()
            .expect("`code` has an enum")
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(listed, ERROR_CODES);
        // The limit bounds are literals in the annotations: they follow the
        // constants the server checks.
        let limits = &doc["components"]["schemas"]["FunctionLimits"]["properties"];
        assert_eq!(
            limits["timeout_ms"]["maximum"],
            crate::config::MAX_TIMEOUT_MS
        );
        assert_eq!(
            limits["max_memory_bytes"]["minimum"],
            crate::config::MIN_MEMORY_BYTES
        );
        assert_eq!(
            limits["max_output_bytes"]["maximum"],
            crate::config::MAX_OUTPUT_BYTES
        );
        for (method, template) in documented(&doc) {
            let responses = &doc["paths"][&template][method.to_lowercase()]["responses"];
            for (status, response) in responses.as_object().unwrap() {
                if status.starts_with('2') {
                    continue;
                }
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/Error",
                    "{method} {template} {status}"
                );
                let retry = response["headers"].get("Retry-After").is_some();
                assert_eq!(
                    retry,
                    status == "429" || status == "503",
                    "Retry-After on {method} {template} {status}"
                );
            }
        }
    }
}
