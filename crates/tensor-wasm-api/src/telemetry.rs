//! Logging and tracing set-up for the process: `TENSOR_WASM_LOG` (an
//! `EnvFilter`), text or JSON log lines, and OTLP span export over HTTP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{EnvFilter, FilterFn, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Log line format (`TENSOR_WASM_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!(
                "log format must be `text` or `json`, got `{other}`"
            )),
        }
    }
}

/// Telemetry settings.
#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `TENSOR_WASM_LOG` filter directives; `None` = `info`.
    pub filter: Option<String>,
    /// Log line format.
    pub format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL; `/v1/traces` is appended).
    pub otlp_endpoint: Option<String>,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directives do not parse.
    #[error("TENSOR_WASM_LOG: {0}")]
    Filter(String),
    /// The OTLP exporter cannot be built.
    #[error("OTLP exporter for {endpoint}: {message}")]
    Otlp {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// A global subscriber is already installed.
    #[error("logging already initialised: {0}")]
    AlreadyInitialised(String),
}

/// Keeps the span exporter alive; flushes it on drop.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("otlp", &self.provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Whether spans are exported over OTLP.
    pub fn otlp_enabled(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take()
            && let Err(err) = p.shutdown()
        {
            eprintln!("tensor-wasm: flushing spans failed: {err}");
        }
    }
}

/// Log layers skip the per-request span: formatting its fields on every
/// request costs more than the rest of the gateway's own work (see
/// BENCHMARKS.md). Failed requests are logged with their request id by the
/// outermost layer instead (`observe.rs`); OTLP export still sees every span.
pub(crate) fn not_request_span() -> FilterFn {
    filter_fn(|meta| !(meta.is_span() && meta.name() == crate::observe::REQUEST_SPAN))
}

/// Installs the global subscriber. Call once, early, from the binary.
pub fn init(cfg: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match cfg
        .filter
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(directives) => {
            EnvFilter::try_new(directives).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        None => EnvFilter::new("info"),
    };
    let (text, json) = match cfg.format {
        LogFormat::Text => (
            Some(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    // Colour codes only for a terminal: journald, files and pipes get plain text.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(not_request_span()),
            ),
            None,
        ),
        LogFormat::Json => (
            None,
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_filter(not_request_span()),
            ),
        ),
    };

    let endpoint = cfg
        .otlp_endpoint
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let provider = match endpoint {
        Some(endpoint) => {
            let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(url)
                .build()
                .map_err(|e| TelemetryError::Otlp {
                    endpoint: endpoint.to_owned(),
                    message: e.to_string(),
                })?;
            let resource = opentelemetry_sdk::Resource::builder()
                // `OTEL_SERVICE_NAME` (the OpenTelemetry convention) wins when set.
                .with_service_name(
                    std::env::var("OTEL_SERVICE_NAME")
                        .ok()
                        .filter(|s| !s.trim().is_empty())
                        .unwrap_or_else(|| "tensor-wasm".to_owned()),
                )
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    crate::VERSION,
                ))
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tensor-wasm")));
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }

    tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel_layer)
        .try_init()
        .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))?;
    Ok(TelemetryGuard { provider })
}
