//! Shared helpers for tests that drive the real `tensor-wasm` binary: start
//! `serve` on a free port in a data dir, wait for `/healthz`, stop it
//! (gracefully, or by kill on drop), and run CLI verbs.

#![allow(dead_code)]

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Path of the binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tensor-wasm"))
}

/// Environment variables that would leak the caller's setup into a child.
const SCRUBBED_ENV: &[&str] = &[
    "TENSOR_WASM_SERVER",
    "TENSOR_WASM_TOKEN",
    "TENSOR_WASM_DATA_DIR",
    "TENSOR_WASM_LISTEN",
    "TENSOR_WASM_API_TOKENS",
    "TENSOR_WASM_API_AUDIT_LOG",
    "TENSOR_WASM_API_RATE_LIMIT_RPS",
    "TENSOR_WASM_API_RATE_LIMIT_BURST",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// A `Command` for `bin` with a clean tensor-wasm environment.
pub fn command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `bin args…` with extra env vars and returns its output.
pub fn run_cli(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(bin);
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", bin.display()))
}

/// A blocking HTTP client with short timeouts.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(2))
        .build()
        .expect("http client")
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// Binary to run (a symlink in the rollback drill).
    pub bin: PathBuf,
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `TENSOR_WASM_API_TOKENS` (empty: dev mode).
    pub tokens: String,
    /// `TENSOR_WASM_API_AUDIT_LOG` (`file:…` or `stdout`).
    pub audit_log: Option<String>,
    /// More environment for the server, as an operator's env file sets it.
    pub env: Vec<(String, String)>,
}

impl ServerSpec {
    /// The binary under test, a data dir and tokens; audit to `<data>/audit.log`.
    pub fn new(data_dir: &Path, tokens: &str) -> Self {
        ServerSpec {
            bin: binary(),
            data_dir: data_dir.to_path_buf(),
            tokens: tokens.to_string(),
            audit_log: Some(format!("file:{}", data_dir.join("audit.log").display())),
            env: Vec::new(),
        }
    }
}

/// A running `tensor-wasm serve`; killed when dropped.
pub struct Server {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The port it listens on.
    pub port: u16,
    log: PathBuf,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

impl Server {
    /// Starts a server on a free port and waits (≤ 10 s) for `/healthz`;
    /// retries on another port if the chosen one was taken meanwhile.
    pub fn start(spec: &ServerSpec) -> Server {
        Self::start_on(spec, None)
    }

    /// As [`Server::start`], on `port` when given (no retry then).
    pub fn start_on(spec: &ServerSpec, port: Option<u16>) -> Server {
        let attempts = if port.is_some() { 1 } else { 5 };
        let mut last_log = String::new();
        for attempt in 0..attempts {
            let port = port.unwrap_or_else(free_port);
            let log = spec
                .data_dir
                .with_extension(format!("serve-{port}-{attempt}.log"));
            if let Some(parent) = log.parent() {
                fs::create_dir_all(parent).expect("log dir");
            }
            let log_file = fs::File::create(&log).expect("server log file");
            let mut cmd = command(&spec.bin);
            cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .arg("--data-dir")
                .arg(&spec.data_dir)
                .args(["--gpu", "cpu"])
                .env("TENSOR_WASM_API_TOKENS", &spec.tokens)
                .env("TENSOR_WASM_SHUTDOWN_GRACE_SECS", "2")
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log clone"))
                .stderr(log_file);
            if let Some(audit) = &spec.audit_log {
                cmd.env("TENSOR_WASM_API_AUDIT_LOG", audit);
            }
            cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", spec.bin.display()));
            let mut server = Server {
                child: Some(child),
                base: format!("http://127.0.0.1:{port}"),
                port,
                log: log.clone(),
            };
            if server.wait_healthy(Duration::from_secs(10)) {
                return server;
            }
            server.kill();
            last_log = fs::read_to_string(&log).unwrap_or_default();
            if !last_log.contains("cannot listen") {
                break;
            }
        }
        panic!("server did not become healthy; its log:\n{last_log}");
    }

    fn wait_healthy(&mut self, within: Duration) -> bool {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .expect("http client");
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && matches!(child.try_wait(), Ok(Some(_)))
            {
                return false;
            }
            if let Ok(resp) = client.get(format!("{}/healthz", self.base)).send()
                && resp.status().is_success()
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The server's combined stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `URL` for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server like `systemctl stop` (SIGTERM, then kill after 5 s).
    pub fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `{"name": …, "wasm_b64": …}` deploy; returns the new id.
pub fn deploy(server: &Server, token: &str, name: &str, wasm: &[u8]) -> String {
    let body = serde_json::json!({ "name": name, "wasm_b64": base64(wasm) });
    let resp = http()
        .post(server.url("/functions"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .expect("POST /functions");
    assert_eq!(resp.status().as_u16(), 201, "deploy {name}");
    let reply: serde_json::Value = resp.json().expect("deploy reply");
    reply["id"]
        .as_str()
        .expect("id in deploy reply")
        .to_string()
}

/// Ids listed by `GET /functions` for `token`.
pub fn list_ids(server: &Server, token: &str) -> Vec<String> {
    let resp = http()
        .get(server.url("/functions"))
        .bearer_auth(token)
        .send()
        .expect("GET /functions");
    assert_eq!(resp.status().as_u16(), 200, "GET /functions");
    let reply: serde_json::Value = resp.json().expect("list reply");
    reply["functions"]
        .as_array()
        .expect("functions array")
        .iter()
        .filter_map(|f| f["id"].as_str().map(str::to_string))
        .collect()
}

/// Typed call `add(a, b)`; returns the first result.
pub fn invoke_add(server: &Server, token: &str, id: &str, a: i64, b: i64) -> i64 {
    let resp = http()
        .post(server.url(&format!("/functions/{id}/invoke")))
        .bearer_auth(token)
        .json(&serde_json::json!({ "export": "add", "args": [a, b] }))
        .send()
        .expect("invoke");
    assert_eq!(resp.status().as_u16(), 200, "invoke {id}");
    let reply: serde_json::Value = resp.json().expect("invoke reply");
    reply["results"][0].as_i64().expect("an i64 result")
}

/// A module exporting `add(i32, i32) -> i32`.
pub fn adder_wasm() -> Vec<u8> {
    wat::parse_str(
        r#"(module (func (export "add") (param i32 i32) (result i32)
               local.get 0 local.get 1 i32.add))"#,
    )
    .expect("valid WAT")
}

/// Standard base64 with padding (enough for the tests; no extra dependency).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_runbook_module() {
    assert_eq!(base64(b"\0asm\x01\0\0\0"), "AGFzbQEAAAA=");
    assert_eq!(base64(b"ab"), "YWI=");
}
