//! Shared helpers for the HTTP tests: a real gateway on 127.0.0.1:0, a
//! reqwest client for raw requests and a `tensor-wasm-client` for the common
//! calls (deploy, invoke, metrics), test modules, and audit-log readers.

#![allow(dead_code)]

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use tensor_wasm_api::auth::TokenList;
use tensor_wasm_api::{ApiConfig, AuditTarget, Gateway, RateLimitConfig, TenantLimits};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "admin-token-0123456789";
pub const TENANT_7: &str = "tenant-seven-token";
pub const TENANT_8: &str = "tenant-eight-token";

/// `ADMIN` is `tenant=*`, `TENANT_7` is tenant 7, `TENANT_8` is tenant 8.
pub fn standard_tokens() -> String {
    format!("{ADMIN}:tenant=*,{TENANT_7}:tenant=7,{TENANT_8}:tenant=8")
}

/// The DR runbook's empty module.
pub const EMPTY_MODULE_B64: &str = "AGFzbQEAAAA=";

pub const ADD_WAT: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

pub const SPIN_WAT: &str = r#"(module
  (func (export "spin") (loop br 0)))"#;

/// A WASI command copying stdin to stdout and writing `warn` to stderr.
pub const ECHO_WAT: &str = include_str!("../fixtures/echo.wat");

pub fn wasm(wat_src: &str) -> Vec<u8> {
    wat::parse_str(wat_src).expect("test WAT parses")
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// How to start a test server.
#[derive(Clone)]
pub struct Options {
    pub tokens: String,
    pub rate_limit: Option<(u32, u32)>,
    pub max_body_bytes: Option<usize>,
    pub max_concurrent_invocations: Option<usize>,
    pub data_dir: Option<PathBuf>,
    /// Per-tenant limits file contents (JSON).
    pub tenant_limits: Option<String>,
    /// Default per-tenant bound on concurrent invocations.
    pub tenant_max_concurrent_invocations: Option<usize>,
    /// Budget for the sum of running invocations' memory limits.
    pub memory_budget_bytes: Option<u64>,
    /// Give guests the `tw_gpu_v1` interface on the CPU backend.
    pub gpu: bool,
    /// Server-wide ceiling on a function's `max_memory_bytes`.
    pub memory_ceiling: Option<u64>,
    /// Connection cap and timeouts (server defaults when `None`).
    pub connections: Option<tensor_wasm_api::ConnectionLimits>,
    /// Failed authentications per client address: `(rps, burst)`.
    pub unauthenticated_rate_limit: Option<(u32, u32)>,
    /// `TENSOR_WASM_API_TRUSTED_PROXIES`.
    pub trusted_proxies: Option<String>,
    /// Audit file other than `<data>/audit.log` (e.g. `/dev/full`).
    pub audit_file: Option<PathBuf>,
    /// `TENSOR_WASM_API_AUDIT_REQUIRED`.
    pub audit_required: bool,
    /// Time start-up compiles stored functions before the listener opens.
    pub startup_load_budget: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tokens: standard_tokens(),
            rate_limit: None,
            max_body_bytes: None,
            max_concurrent_invocations: None,
            data_dir: None,
            tenant_limits: None,
            tenant_max_concurrent_invocations: None,
            memory_budget_bytes: None,
            gpu: false,
            memory_ceiling: None,
            connections: None,
            unauthenticated_rate_limit: None,
            trusted_proxies: None,
            audit_file: None,
            audit_required: false,
            startup_load_budget: None,
        }
    }
}

impl Options {
    pub fn dev_mode() -> Self {
        Self {
            tokens: String::new(),
            ..Self::default()
        }
    }
}

/// A running gateway.
pub struct TestServer {
    pub base: String,
    /// The GPU runtime guests use, when `Options::gpu` is set.
    pub gpu: Option<std::sync::Arc<tensor_wasm_gpu::GpuRuntime>>,
    pub data_dir: PathBuf,
    pub audit_path: PathBuf,
    pub client: reqwest::Client,
    _tmp: Option<tempfile::TempDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(opts: Options) -> Self {
        let (tmp, data_dir) = match &opts.data_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().expect("temp dir");
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        let audit_path = opts
            .audit_file
            .clone()
            .unwrap_or_else(|| data_dir.join("audit.log"));
        let mut config = ApiConfig::new(&data_dir);
        config.tokens = TokenList::parse(&opts.tokens).expect("test tokens parse");
        config.audit = AuditTarget::File(audit_path.clone());
        config.rate_limit = opts.rate_limit.map(|(rps, burst)| {
            RateLimitConfig::new(
                NonZeroU32::new(rps).expect("rps > 0"),
                NonZeroU32::new(burst),
            )
        });
        if let Some(b) = opts.max_body_bytes {
            config.max_body_bytes = b;
        }
        if let Some(c) = opts.max_concurrent_invocations {
            config.max_concurrent_invocations = c;
        }
        config.tenant_max_concurrent_invocations = opts.tenant_max_concurrent_invocations;
        config.memory_budget_bytes = opts.memory_budget_bytes;
        if let Some(p) = &opts.trusted_proxies {
            config.trusted_proxies =
                tensor_wasm_api::TrustedProxies::parse(p).expect("test proxies parse");
        }
        config.audit_required = opts.audit_required;
        if let Some(b) = opts.startup_load_budget {
            config.startup_load_budget = b;
        }
        if let Some(c) = opts.connections {
            config.connections = c;
        }
        if let Some((rps, burst)) = opts.unauthenticated_rate_limit {
            config.unauthenticated_rate_limit = Some(RateLimitConfig::new(
                NonZeroU32::new(rps).expect("rps > 0"),
                NonZeroU32::new(burst),
            ));
        }
        if let Some(m) = opts.memory_ceiling {
            config.ceiling.max_memory_bytes = Some(m);
        }
        if opts.gpu {
            config.gpu = Some(
                tensor_wasm_gpu::GpuRuntime::new(tensor_wasm_gpu::GpuConfig {
                    backend: tensor_wasm_gpu::BackendChoice::Cpu,
                    ..Default::default()
                })
                .expect("CPU backend opens"),
            );
        }
        if let Some(text) = &opts.tenant_limits {
            config.tenant_limits =
                TenantLimits::parse_json(text).expect("test tenant limits parse");
        }
        // Small pools: many test servers live in one process.
        config.engine.pool_total_instances = 32;
        config.engine.pool_max_memory_bytes = 256 << 20;
        config.shutdown_grace = Duration::from_secs(5);
        let gpu = config.gpu.clone();
        let gateway = Gateway::open(config).await.expect("gateway opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            gateway
                .serve(listener, async move {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            gpu,
            base: format!("http://{addr}"),
            data_dir,
            audit_path,
            client: reqwest::Client::new(),
            _tmp: tmp,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has released the data dir.
    /// Returns the temp dir (if the server owned one) so a restart can reuse it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        // Idle pooled connections keep the server's graceful shutdown waiting.
        self.client = reqwest::Client::new();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .expect("server stops in time")
                .expect("server task");
        }
        self._tmp.take()
    }

    /// The GPU runtime (panics unless the server was started with `gpu: true`).
    pub fn executor_gpu(&self) -> &tensor_wasm_gpu::GpuRuntime {
        self.gpu.as_deref().expect("server started with gpu: true")
    }

    /// Stops this server and starts a fresh one (default options) on the
    /// same data dir; the second value keeps a temp data dir alive.
    pub async fn restart(self) -> (TestServer, Option<tempfile::TempDir>) {
        let data_dir = self.data_dir.clone();
        let tmp = self.stop().await;
        // Background work of the stopped server may hold the store a moment
        // longer (in-process restart only; a real restart is a new process).
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let s = TestServer::start_with(Options {
            data_dir: Some(data_dir),
            ..Options::default()
        })
        .await;
        (s, tmp)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        auth(self.client.get(self.url(path)), token)
    }

    pub fn post(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        auth(self.client.post(self.url(path)), token)
    }

    pub fn delete(&self, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        auth(self.client.delete(self.url(path)), token)
    }

    /// `GET path` with `token`; the reply's JSON body, whatever the status.
    pub async fn get_json(&self, path: &str, token: Option<&str>) -> Value {
        let r = self.get(path, token).send().await.expect("GET");
        r.json().await.expect("JSON reply")
    }

    /// `POST path` with `token` and a JSON `body`; the reply's JSON body,
    /// whatever the status.
    pub async fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Value {
        let r = self
            .post(path, token)
            .json(body)
            .send()
            .await
            .expect("POST");
        r.json().await.expect("JSON reply")
    }

    /// Deploys through the JSON form; panics unless it answers 201.
    pub async fn deploy(&self, token: Option<&str>, name: &str, wasm: &[u8]) -> Value {
        self.deploy_json(token, json!({"name": name, "wasm_b64": b64(wasm)}))
            .await
    }

    /// The typed API client acting with `token`; it shares [`Self::client`]'s
    /// connection pool.
    pub fn api(&self, token: Option<&str>) -> tensor_wasm_client::Client {
        tensor_wasm_client::Client::builder(&self.base, token)
            .http_client(self.client.clone())
            .build()
            .expect("API client")
    }

    pub async fn deploy_json(&self, token: Option<&str>, body: Value) -> Value {
        match self.api(token).deploy_json(&body).await {
            Ok(f) => serde_json::to_value(f).expect("deploy reply encodes"),
            Err(tensor_wasm_client::Error::Http(e)) => panic!("deploy failed: {}", e.body),
            Err(e) => panic!("deploy request: {e}"),
        }
    }

    /// Typed invoke; returns (status, body).
    pub async fn invoke(
        &self,
        token: Option<&str>,
        id: &str,
        export: &str,
        args: Value,
    ) -> (u16, Value) {
        let args = match args {
            Value::Array(a) => a,
            other => panic!("invoke args must be a JSON array, not {other}"),
        };
        match self.api(token).invoke_typed(id, export, &args).await {
            Ok(reply) => (200, serde_json::to_value(reply).expect("reply encodes")),
            Err(tensor_wasm_client::Error::Http(e)) => (
                e.status.as_u16(),
                serde_json::from_str(&e.body).expect("invoke reply is JSON"),
            ),
            Err(e) => panic!("invoke request: {e}"),
        }
    }

    /// Every audit record written so far.
    pub fn audit_records(&self) -> Vec<Value> {
        read_audit(&self.audit_path)
    }

    /// Raw `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.api(None)
            .metrics_text()
            .await
            .expect("metrics request")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

fn auth(rb: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => rb.bearer_auth(t),
        None => rb,
    }
}

pub fn read_audit(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

/// Asserts the JSON error shape and returns the code.
pub fn error_code(v: &Value) -> &str {
    let code = v["error"]["code"].as_str().expect("error.code");
    assert!(v["error"]["message"].is_string(), "error.message in {v}");
    code
}

/// Value of the first sample line starting with `prefix` within the first `n` lines.
pub fn sample_in_head(text: &str, n: usize, prefix: &str) -> Option<f64> {
    text.lines()
        .take(n)
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Value of the sample line that starts with `series` (anywhere in the
/// text); panics when there is none.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in metrics:\n{text}"))
}

/// Appends `v` as unsigned LEB128 (Wasm's integer encoding).
pub fn leb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}
