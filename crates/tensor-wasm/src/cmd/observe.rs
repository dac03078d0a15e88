//! `tensor-wasm observe`: one JSON document (`--once`) or a live terminal
//! dashboard of a running server, from `/healthz`, `/readyz`, `/metrics`
//! and `GET /functions`.
//!
//! The HTTP calls go through `tensor-wasm-client` (which also parses the
//! metrics text); the figures live in [`model`], drawing in [`ui`], so both
//! are unit-tested without a server or a terminal.

mod model;
mod ui;

use std::io::Write;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tensor_wasm_client::{Client, Error as ClientError, StatusCode, metrics};

use model::{Dashboard, FunctionItem, Scrape, once_document};

/// Exit status when the server answers but is not healthy.
const EXIT_UNHEALTHY: u8 = 2;
/// Exit status when the token is refused (or none was given and one is needed).
const EXIT_AUTH: u8 = 3;
/// Exit status when the server runs in dev mode: it answers and is ready,
/// but admits every request without a token, so its auth is not healthy.
const EXIT_DEV_MODE: u8 = 4;
/// How often the dashboard refreshes.
const REFRESH: Duration = Duration::from_secs(1);

#[derive(clap::Args)]
pub struct ObserveArgs {
    /// Base URL of the server.
    #[arg(
        long,
        env = "TENSOR_WASM_SERVER",
        default_value = "http://localhost:8080"
    )]
    server: String,
    /// Print one JSON document and exit: 0 healthy, 2 unhealthy, 3 token
    /// refused or missing, 4 dev mode (no auth), 1 unreachable.
    #[arg(long)]
    once: bool,
    /// Bearer token for `GET /functions` (prefer the environment variable:
    /// a flag shows in `ps`).
    #[arg(long, env = "TENSOR_WASM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
}

/// Why a scrape failed.
#[derive(Debug)]
enum ScrapeError {
    /// The token was refused; the message says "unauthorized"/"forbidden".
    Auth(String),
    /// Nothing answered, or something other than our server did.
    Unreachable(String),
}

impl std::fmt::Display for ScrapeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScrapeError::Auth(m) | ScrapeError::Unreachable(m) => f.write_str(m),
        }
    }
}

struct Observer {
    client: Client,
    /// Drives the client's calls; `observe` itself stays synchronous.
    runtime: tokio::runtime::Runtime,
    server: String,
    origin: Instant,
}

/// An error and its causes on one line.
fn one_line(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg.replace('\n', " ")
}

impl Observer {
    fn new(args: &ObserveArgs) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(args.timeout_ms.max(1));
        let client = Client::builder(&args.server, args.token.as_deref())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tensor-wasm-observe/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        Ok(Observer {
            server: client.base_url().to_string(),
            client,
            runtime,
            origin: Instant::now(),
        })
    }

    /// A transport failure on `path`: nothing (or not our server) answered.
    fn unreachable(&self, path: &str, err: &dyn std::error::Error) -> ScrapeError {
        ScrapeError::Unreachable(format!("GET {}: {}", self.client.url(path), one_line(err)))
    }

    fn scrape(&self) -> Result<Scrape, ScrapeError> {
        let rt = &self.runtime;
        // Anything but a transport failure is an answer: judged below.
        let healthz_ok = match rt.block_on(self.client.healthz()) {
            Ok(h) => h.status == "ok",
            Err(ClientError::Transport(e)) => return Err(self.unreachable("/healthz", &e)),
            Err(_) => false,
        };
        let (ready, readyz) = match rt.block_on(self.client.readyz()) {
            Ok(r) => (true, serde_json::to_value(r).ok()),
            Err(ClientError::Transport(e)) => return Err(self.unreachable("/readyz", &e)),
            // 200 with a body that is not the readiness document.
            Err(ClientError::Decode(_)) => (true, None),
            Err(ClientError::Http(e)) => (false, serde_json::from_str(&e.body).ok()),
            Err(_) => (false, None),
        };
        let metrics = match rt.block_on(self.client.metrics()) {
            Ok(m) => m,
            Err(ClientError::Transport(e)) => return Err(self.unreachable("/metrics", &e)),
            Err(_) => metrics::Metrics::default(),
        };
        let functions = match rt.block_on(self.client.list_functions()) {
            Ok(list) => list
                .into_iter()
                .map(|f| FunctionItem {
                    id: f.id,
                    name: f.name,
                    tenant: f.tenant,
                })
                .collect(),
            Err(ClientError::Transport(e)) => return Err(self.unreachable("/functions", &e)),
            Err(ClientError::Decode(e)) => {
                return Err(ScrapeError::Unreachable(format!(
                    "GET {}/functions: unexpected reply ({e}); is this a tensor-wasm server?",
                    self.server
                )));
            }
            Err(e) if e.status() == Some(StatusCode::UNAUTHORIZED) => {
                let hint = if self.client.has_token() {
                    "the token in TENSOR_WASM_TOKEN / --token is not accepted"
                } else {
                    "set TENSOR_WASM_TOKEN (or --token) to a token the server accepts"
                };
                return Err(ScrapeError::Auth(format!(
                    "unauthorized: {} answered 401 to GET /functions; {hint}",
                    self.server
                )));
            }
            Err(e) if e.status() == Some(StatusCode::FORBIDDEN) => {
                return Err(ScrapeError::Auth(format!(
                    "forbidden: {} answered 403 to GET /functions for this token",
                    self.server
                )));
            }
            // Functions are a detail; an unhealthy server still gets a report.
            Err(_) => Vec::new(),
        };
        Ok(Scrape {
            healthz_ok,
            readyz,
            ready,
            metrics,
            functions,
            at_secs: self.origin.elapsed().as_secs_f64(),
        })
    }
}

pub fn main(args: ObserveArgs) -> anyhow::Result<ExitCode> {
    let observer = Observer::new(&args)?;
    if args.once {
        once(&observer)
    } else {
        live(observer)
    }
}

fn once(observer: &Observer) -> anyhow::Result<ExitCode> {
    let scrape = match observer.scrape() {
        Ok(s) => s,
        Err(ScrapeError::Auth(msg)) => {
            eprintln!("tensor-wasm: error: {msg}");
            return Ok(ExitCode::from(EXIT_AUTH));
        }
        Err(ScrapeError::Unreachable(msg)) => {
            anyhow::bail!("server unreachable: {msg}")
        }
    };
    let doc = once_document(&observer.server, &scrape);
    let text = serde_json::to_string_pretty(&doc).context("encoding the report")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}").context("writing the report to stdout")?;
    out.flush().context("writing the report to stdout")?;
    if let Some(reason) = scrape.unhealthy_reason() {
        eprintln!(
            "tensor-wasm: error: {} is unhealthy: {reason}",
            observer.server
        );
        return Ok(ExitCode::from(EXIT_UNHEALTHY));
    }
    if scrape.dev_mode() == Some(true) {
        eprintln!(
            "tensor-wasm: error: {} runs in DEV MODE: every request is admitted without a \
             token (TENSOR_WASM_API_TOKENS is empty)",
            observer.server
        );
        return Ok(ExitCode::from(EXIT_DEV_MODE));
    }
    Ok(ExitCode::SUCCESS)
}

/// The live dashboard: a thread scrapes every second, the main thread
/// draws and handles keys, so a slow server never blocks quitting.
fn live(observer: Observer) -> anyhow::Result<ExitCode> {
    use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};

    let mut dashboard = Dashboard::new(observer.server.clone());
    let (tx, rx) = mpsc::channel::<Result<Scrape, String>>();
    std::thread::Builder::new()
        .name("observe-scrape".into())
        .spawn(move || {
            loop {
                let started = Instant::now();
                let result = observer.scrape().map_err(|e| e.to_string());
                if tx.send(result).is_err() {
                    return;
                }
                std::thread::sleep(REFRESH.saturating_sub(started.elapsed()));
            }
        })
        .context("starting the refresh thread")?;

    let mut terminal = ratatui::try_init()
        .context("opening the terminal (is this a TTY? use --once otherwise)")?;
    let result = (|| -> anyhow::Result<()> {
        loop {
            while let Ok(update) = rx.try_recv() {
                match update {
                    Ok(scrape) => dashboard.update(scrape),
                    Err(reason) => dashboard.fail(reason),
                }
            }
            let view = dashboard.view();
            terminal
                .draw(|frame| ui::render(frame, &view))
                .context("drawing the dashboard")?;
            if event::poll(Duration::from_millis(100)).context("reading the keyboard")?
                && let Event::Key(key) = event::read().context("reading the keyboard")?
            {
                let quit = key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL)));
                if quit {
                    return Ok(());
                }
            }
        }
    })();
    ratatui::restore();
    result.map(|()| ExitCode::SUCCESS)
}
