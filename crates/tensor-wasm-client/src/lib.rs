//! `tensor-wasm-client`: a typed Rust client for the tensor-wasm HTTP API
//! (`API.md`), and a parser for the Prometheus text its `/metrics` serves.
//!
//! What it is: one [`Client`] with an async method per route — health,
//! deploy, list, invoke (typed and bytes), snapshots, admin backup, metrics —
//! returning the reply bodies as typed structs, and one [`Error`] that keeps
//! the API's stable error `code`, its message and `Retry-After`. The
//! `tensor-wasm` CLI (`observe`, `snapshot save --server`) and the gateway's
//! integration tests use it, and so can any Rust program.
//!
//! What it is not: a server, or a retry policy. It never depends on the
//! server crates (users link it), it retries nothing (a `429`/`503` comes back
//! as an error with [`Error::retry_after`], and the caller decides), and
//! [`metrics`] does no I/O.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tensor_wasm_client::Error> {
//! use tensor_wasm_client::{Client, Deploy};
//! let client = Client::new("http://localhost:8080", Some("my-token"))?;
//! let f = client.deploy(&Deploy::new("adder", std::fs::read("adder.wasm").unwrap_or_default())).await?;
//! let reply = client.invoke_typed(&f.id, "add", &[2.into(), 3.into()]).await?;
//! assert_eq!(reply.results, vec![serde_json::json!(5)]);
//! # Ok(()) }
//! ```

mod error;
pub mod metrics;
mod types;

use std::time::Duration;

use base64::Engine as _;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use error::{Error, HttpError};
pub use reqwest::StatusCode;
pub use types::{
    BackupReply, BytesReply, Deploy, EffectiveLimits, ExportSignature, Function, FunctionLimits,
    Health, InvokeReply, Readiness, Snapshot,
};

// The README's example is compiled with the doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeExample;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A client for one server. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Builds a [`Client`] with timeouts and a user agent.
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base: String,
    token: Option<String>,
    timeout: Option<Duration>,
    connect_timeout: Option<Duration>,
    user_agent: String,
    http: Option<reqwest::Client>,
}

impl ClientBuilder {
    /// Whole-request deadline (connect, send, and read the reply). None by default.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Deadline for opening the connection. None by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// `User-Agent` header (default `tensor-wasm-client/<version>`).
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Sends through `http`, an already configured `reqwest` client (its
    /// connection pool is shared with the caller); the timeouts and user
    /// agent set here are then not applied.
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// The client; fails only when the HTTP stack cannot start.
    pub fn build(self) -> Result<Client> {
        if let Some(http) = self.http {
            return Ok(Client {
                http,
                base: self.base,
                token: self.token,
            });
        }
        let mut http = reqwest::Client::builder().user_agent(self.user_agent);
        if let Some(t) = self.timeout {
            http = http.timeout(t);
        }
        if let Some(t) = self.connect_timeout {
            http = http.connect_timeout(t);
        }
        Ok(Client {
            http: http.build()?,
            base: self.base,
            token: self.token,
        })
    }
}

impl Client {
    /// A client for the server at `base_url` (e.g. `http://localhost:8080`),
    /// sending `token` as `Authorization: Bearer` on the routes that need one.
    pub fn new(base_url: impl Into<String>, token: Option<&str>) -> Result<Self> {
        Self::builder(base_url, token).build()
    }

    /// A [`ClientBuilder`] for timeouts and the user agent. An empty token
    /// counts as none.
    pub fn builder(base_url: impl Into<String>, token: Option<&str>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into().trim_end_matches('/').to_string(),
            token: token.filter(|t| !t.is_empty()).map(str::to_owned),
            timeout: None,
            connect_timeout: None,
            user_agent: concat!("tensor-wasm-client/", env!("CARGO_PKG_VERSION")).to_string(),
            http: None,
        }
    }

    /// The server's base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Whether a token is set.
    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A request on `path`, with the token when `auth` (public routes —
    /// health, readiness, metrics — never get it).
    fn request(&self, method: Method, path: &str, auth: bool) -> RequestBuilder {
        let req = self.http.request(method, self.url(path));
        match (&self.token, auth) {
            (Some(token), true) => req.bearer_auth(token),
            _ => req,
        }
    }

    /// Sends `req`; a non-2xx answer becomes [`Error::Http`].
    async fn send(req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Err(Error::Http(Box::new(HttpError::new(
            status, &headers, body,
        ))))
    }

    /// Sends `req` and decodes the JSON reply.
    async fn json<T: DeserializeOwned>(req: RequestBuilder) -> Result<T> {
        let text = Self::send(req).await?.text().await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// `GET /healthz`: liveness.
    pub async fn healthz(&self) -> Result<Health> {
        Self::json(self.request(Method::GET, "/healthz", false)).await
    }

    /// `GET /readyz`: readiness; a server that is not ready answers
    /// `503 not_ready` with `Retry-After`.
    pub async fn readyz(&self) -> Result<Readiness> {
        Self::json(self.request(Method::GET, "/readyz", false)).await
    }

    /// `POST /functions` (JSON form): validates, compiles and stores a module.
    pub async fn deploy(&self, deploy: &Deploy) -> Result<Function> {
        let mut body = json!({
            "name": deploy.name,
            "wasm_b64": base64::engine::general_purpose::STANDARD.encode(&deploy.wasm),
        });
        if let Some(tenant) = &deploy.tenant {
            body["tenant"] = json!(tenant);
        }
        if let Some(limits) = &deploy.limits {
            body["limits"] = serde_json::to_value(limits)?;
        }
        self.deploy_json(&body).await
    }

    /// `POST /functions` with a JSON body as given (for fields this client
    /// does not model, or requests the server should refuse).
    pub async fn deploy_json(&self, body: &Value) -> Result<Function> {
        Self::json(self.request(Method::POST, "/functions", true).json(body)).await
    }

    /// `GET /functions`: the caller's functions (every tenant's for admins).
    pub async fn list_functions(&self) -> Result<Vec<Function>> {
        let list: types::FunctionList =
            Self::json(self.request(Method::GET, "/functions", true)).await?;
        Ok(list.functions)
    }

    /// `GET /functions/{id}`.
    pub async fn get_function(&self, id: &str) -> Result<Function> {
        Self::json(self.request(Method::GET, &format!("/functions/{}", seg(id)), true)).await
    }

    /// `DELETE /functions/{id}`.
    pub async fn delete_function(&self, id: &str) -> Result<()> {
        Self::send(self.request(Method::DELETE, &format!("/functions/{}", seg(id)), true)).await?;
        Ok(())
    }

    /// `POST /functions/{id}/invoke`, typed: `export(args…)`.
    pub async fn invoke_typed(
        &self,
        id: &str,
        export: &str,
        args: &[Value],
    ) -> Result<InvokeReply> {
        let body = json!({"export": export, "args": args});
        Self::json(
            self.request(
                Method::POST,
                &format!("/functions/{}/invoke", seg(id)),
                true,
            )
            .json(&body),
        )
        .await
    }

    /// `POST /functions/{id}/invoke`, bytes: `input` is the guest's stdin, the
    /// reply carries its stdout. Runs `_start`, or `export` when given.
    pub async fn invoke_bytes(
        &self,
        id: &str,
        export: Option<&str>,
        input: impl Into<Vec<u8>>,
    ) -> Result<BytesReply> {
        let mut req = self
            .request(
                Method::POST,
                &format!("/functions/{}/invoke", seg(id)),
                true,
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(input.into());
        if let Some(export) = export {
            req = req.query(&[("export", export)]);
        }
        let resp = Self::send(req).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let mut reply = BytesReply {
            exit_code: header("x-tensor-wasm-exit-code").and_then(|v| v.parse().ok()),
            duration_us: header("x-tensor-wasm-duration-us").and_then(|v| v.parse().ok()),
            fuel_used: header("x-tensor-wasm-fuel-used").and_then(|v| v.parse().ok()),
            stderr: header("x-tensor-wasm-stderr"),
            stderr_truncated: header("x-tensor-wasm-stderr-truncated").as_deref() == Some("true"),
            body: Vec::new(),
        };
        reply.body = resp.bytes().await?.to_vec();
        Ok(reply)
    }

    /// `POST /functions/{id}/snapshots`: warms a fresh instance (running
    /// `init_export` when given) and saves a snapshot of it.
    pub async fn create_snapshot(&self, id: &str, init_export: Option<&str>) -> Result<Snapshot> {
        let text = self.create_snapshot_text(id, init_export).await?;
        Ok(serde_json::from_str(&text)?)
    }

    /// [`Client::create_snapshot`], returning the reply body as the server wrote it.
    pub async fn create_snapshot_text(
        &self,
        id: &str,
        init_export: Option<&str>,
    ) -> Result<String> {
        let body = match init_export {
            Some(init) => json!({ "init_export": init }),
            None => json!({}),
        };
        let req = self
            .request(
                Method::POST,
                &format!("/functions/{}/snapshots", seg(id)),
                true,
            )
            .json(&body);
        Ok(Self::send(req).await?.text().await?)
    }

    /// `GET /functions/{id}/snapshots`, newest first.
    pub async fn list_snapshots(&self, id: &str) -> Result<Vec<Snapshot>> {
        let list: types::SnapshotList = Self::json(self.request(
            Method::GET,
            &format!("/functions/{}/snapshots", seg(id)),
            true,
        ))
        .await?;
        Ok(list.snapshots)
    }

    /// `DELETE /functions/{id}/snapshots/{snapshot_id}`.
    pub async fn delete_snapshot(&self, id: &str, snapshot_id: &str) -> Result<()> {
        let path = format!("/functions/{}/snapshots/{}", seg(id), seg(snapshot_id));
        Self::send(self.request(Method::DELETE, &path, true)).await?;
        Ok(())
    }

    /// `POST /functions/{id}/snapshots/{snapshot_id}/invoke`: a typed call on
    /// a fresh instance restored from the snapshot (`snapshot_id` may be `latest`).
    pub async fn invoke_snapshot(
        &self,
        id: &str,
        snapshot_id: &str,
        export: &str,
        args: &[Value],
    ) -> Result<InvokeReply> {
        let path = format!(
            "/functions/{}/snapshots/{}/invoke",
            seg(id),
            seg(snapshot_id)
        );
        let body = json!({"export": export, "args": args});
        Self::json(self.request(Method::POST, &path, true).json(&body)).await
    }

    /// `POST /admin/backup`: a complete backup into `to`, an absolute path on
    /// the server that does not exist or is an empty directory. Admin only.
    pub async fn admin_backup(&self, to: &str) -> Result<BackupReply> {
        let body = json!({ "to": to });
        Self::json(
            self.request(Method::POST, "/admin/backup", true)
                .json(&body),
        )
        .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> Result<String> {
        Ok(Self::send(self.request(Method::GET, "/metrics", false))
            .await?
            .text()
            .await?)
    }

    /// `GET /metrics`, parsed.
    pub async fn metrics(&self) -> Result<metrics::Metrics> {
        Ok(metrics::parse(&self.metrics_text().await?))
    }
}

/// `s` as one URL path segment: ids are opaque to the client, so anything
/// outside the unreserved set (`/`, `?`, `%`, …) is percent-encoded and can
/// never reach another route.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_become_single_path_segments() {
        assert_eq!(seg("fn_0f4c9a2e"), "fn_0f4c9a2e");
        assert_eq!(seg("snap-1795645090686-260a"), "snap-1795645090686-260a");
        assert_eq!(seg("../admin/backup?x=1"), "..%2Fadmin%2Fbackup%3Fx%3D1");
        assert_eq!(seg("é"), "%C3%A9");
    }

    #[test]
    fn base_url_loses_its_trailing_slash_and_empty_tokens_count_as_none() {
        let c = Client::new("http://h:1//", Some("")).expect("client");
        assert_eq!(c.url("/healthz"), "http://h:1/healthz");
        assert!(!c.has_token());
        assert!(
            Client::new("http://h:1", Some("t"))
                .expect("client")
                .has_token()
        );
    }
}
