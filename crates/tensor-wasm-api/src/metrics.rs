//! Gateway metrics (prometheus-client).
//!
//! `tensor_wasm_http_requests_total` is registered first and emits its series
//! in a stable order with the scrape endpoint's own series first, so the
//! first lines of `curl -s …/metrics | head -20` always hold a counter that
//! advances from one scrape to the next (the rollback runbook relies on it).

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Route label of requests that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Latency buckets (seconds) shared by the request and invoke histograms: 50 µs to 10 s.
const LATENCY_BUCKETS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Labels of `tensor_wasm_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, EncodeLabelSet)]
pub struct HttpLabels {
    /// HTTP method.
    pub method: &'static str,
    /// Matched route template, or `unmatched`.
    pub route: &'static str,
    /// Response status code.
    pub status: u16,
}

/// Labels of `tensor_wasm_http_request_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// HTTP method.
    pub method: &'static str,
    /// Matched route template, or `unmatched`.
    pub route: &'static str,
}

/// Labels of `tensor_wasm_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, or the failure's outcome label.
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ModeLabels {
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    gpu_backend: String,
}

/// The request counter, with a deterministic exposition order. Cheap to clone (shared).
#[derive(Debug, Default, Clone)]
pub struct HttpRequestCounter {
    series: std::sync::Arc<RwLock<HashMap<HttpLabels, Counter>>>,
}

impl HttpRequestCounter {
    /// Adds one request.
    pub fn inc(&self, labels: HttpLabels) {
        if let Ok(series) = self.series.read()
            && let Some(c) = series.get(&labels)
        {
            c.inc();
            return;
        }
        let mut series = match self.series.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        series.entry(labels).or_default().inc();
    }

    /// Creates a series at zero so that it is exported before its first request.
    pub fn touch(&self, labels: HttpLabels) {
        let mut series = match self.series.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        series.entry(labels).or_default();
    }

    /// Current value of one series (for tests and `observe`).
    pub fn get(&self, labels: &HttpLabels) -> u64 {
        self.series
            .read()
            .ok()
            .and_then(|s| s.get(labels).map(|c| c.get()))
            .unwrap_or(0)
    }
}

impl EncodeMetric for HttpRequestCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut rows: Vec<(HttpLabels, u64)> = match self.series.read() {
            Ok(s) => s.iter().map(|(l, c)| (*l, c.get())).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter()
                .map(|(l, c)| (*l, c.get()))
                .collect(),
        };
        rows.sort_by_key(|(l, _)| (l.route != "/metrics", *l));
        for (labels, value) in rows {
            let counter: Counter = Counter::default();
            counter.inc_by(value);
            counter.encode(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Every metric the gateway itself owns (cheap to clone: handles to shared series).
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    /// `tensor_wasm_http_requests_total{method,route,status}`.
    pub http_requests: HttpRequestCounter,
    /// `tensor_wasm_http_request_duration_seconds{method,route}`.
    pub http_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// `tensor_wasm_invocations_total{outcome}`.
    pub invocations: Family<OutcomeLabels, Counter>,
    /// `tensor_wasm_invoke_duration_seconds{mode="typed"}`.
    pub invoke_typed: Histogram,
    /// `tensor_wasm_invoke_duration_seconds{mode="bytes"}`.
    pub invoke_bytes: Histogram,
    /// `tensor_wasm_functions_deployed`.
    pub functions_deployed: Gauge,
    /// `tensor_wasm_dev_mode` (1 in dev mode).
    pub dev_mode: Gauge,
    /// `tensor_wasm_rate_limited_total`.
    pub rate_limited: Counter,
    /// `tensor_wasm_panics_total`.
    pub panics: Counter,
    /// `tensor_wasm_audit_write_errors_total`.
    pub audit_errors: Counter,
    /// `tensor_wasm_invocations_refused_total{tenant,reason}`: invocations
    /// turned away before they ran (tenant share, global slots, memory budget).
    pub refused: Family<RefusalLabels, Counter>,
    /// `tensor_wasm_http_connections_open`.
    pub connections_open: Gauge,
    /// `tensor_wasm_http_connections_refused_total{cap}`: accepted past a
    /// cap (`server`: all connections; `client`: one address's) and closed.
    pub connections_refused: Family<CapLabels, Counter>,
    /// `tensor_wasm_http_connections_timed_out_total{phase}`.
    pub connections_timed_out: Family<PhaseLabels, Counter>,
    /// `tensor_wasm_unauthenticated_throttled_total`: failed authentications
    /// past their client address's budget.
    pub unauthenticated_throttled: Counter,
}

/// Labels of `tensor_wasm_http_connections_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CapLabels {
    /// `server` (`TENSOR_WASM_API_MAX_CONNECTIONS`) or `client`
    /// (`TENSOR_WASM_API_MAX_CONNECTIONS_PER_CLIENT`).
    pub cap: &'static str,
}

/// Labels of `tensor_wasm_http_connections_timed_out_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct PhaseLabels {
    /// `header` (request head too slow) or `idle` (kept alive too long).
    pub phase: &'static str,
}

/// Labels of `tensor_wasm_invocations_refused_total`. Tenants are the
/// operator's (configured in tokens), so the series count stays bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RefusalLabels {
    /// Tenant whose invocation was refused.
    pub tenant: String,
    /// `tenant_concurrency`, `global_concurrency` or `memory_budget`.
    pub reason: &'static str,
}

impl GatewayMetrics {
    /// Creates the metrics and registers them (request counter first).
    pub fn register(registry: &mut Registry, gpu_backend: &str, dev_mode: bool) -> Self {
        let http_requests = HttpRequestCounter::default();
        registry.register(
            "tensor_wasm_http_requests",
            "HTTP requests answered, by method, matched route and status",
            http_requests.clone(),
        );
        // Series that exist before any traffic: a fresh server's first
        // scrape already shows the counter the runbooks look for.
        for route in ["/metrics", "/healthz"] {
            http_requests.touch(HttpLabels {
                method: "GET",
                route,
                status: 200,
            });
        }

        let http_duration =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        registry.register(
            "tensor_wasm_http_request_duration_seconds",
            "Time from request received to response headers ready, by method and matched route",
            http_duration.clone(),
        );

        let invocations = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "tensor_wasm_invocations",
            "Function invocations by outcome (ok, trap, timeout, oom, fuel, bad_request, output_too_large, busy, error)",
            invocations.clone(),
        );

        let invoke_duration =
            Family::<ModeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                latency_histogram,
            );
        let invoke_typed = invoke_duration
            .get_or_create(&ModeLabels { mode: "typed" })
            .clone();
        let invoke_bytes = invoke_duration
            .get_or_create(&ModeLabels { mode: "bytes" })
            .clone();
        registry.register(
            "tensor_wasm_invoke_duration_seconds",
            "Guest execution time per invocation, by calling convention (typed or bytes)",
            invoke_duration,
        );

        let functions_deployed = Gauge::default();
        registry.register(
            "tensor_wasm_functions_deployed",
            "Functions currently deployed (all tenants)",
            functions_deployed.clone(),
        );

        let dev_mode_gauge = Gauge::default();
        dev_mode_gauge.set(i64::from(dev_mode));
        registry.register(
            "tensor_wasm_dev_mode",
            "1 when no API tokens are configured and every request is admitted",
            dev_mode_gauge.clone(),
        );

        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: crate::VERSION.to_owned(),
                gpu_backend: gpu_backend.to_owned(),
            })
            .set(1);
        registry.register(
            "tensor_wasm_build_info",
            "Always 1; labels carry the version and the GPU backend",
            build_info,
        );

        let rate_limited = Counter::default();
        registry.register(
            "tensor_wasm_rate_limited",
            "Requests refused with 429 by the per-token rate limit",
            rate_limited.clone(),
        );
        let panics = Counter::default();
        registry.register(
            "tensor_wasm_panics",
            "Handler panics turned into 500 responses",
            panics.clone(),
        );
        let audit_errors = Counter::default();
        registry.register(
            "tensor_wasm_audit_write_errors",
            "Audit records that could not be written",
            audit_errors.clone(),
        );

        let refused = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "tensor_wasm_invocations_refused",
            "Invocations refused before running, by tenant and reason \
             (tenant_concurrency, global_concurrency, memory_budget)",
            refused.clone(),
        );

        let connections_open = Gauge::default();
        registry.register(
            "tensor_wasm_http_connections_open",
            "HTTP connections open now",
            connections_open.clone(),
        );
        let connections_refused = Family::<CapLabels, Counter>::default();
        for cap in ["server", "client"] {
            let _ = connections_refused.get_or_create(&CapLabels { cap });
        }
        registry.register(
            "tensor_wasm_http_connections_refused",
            "Connections answered 503 and closed because TENSOR_WASM_API_MAX_CONNECTIONS were open \
             (cap=server) or TENSOR_WASM_API_MAX_CONNECTIONS_PER_CLIENT from one address (cap=client)",
            connections_refused.clone(),
        );
        let connections_timed_out = Family::<PhaseLabels, Counter>::default();
        for phase in ["header", "idle"] {
            let _ = connections_timed_out.get_or_create(&PhaseLabels { phase });
        }
        registry.register(
            "tensor_wasm_http_connections_timed_out",
            "Connections closed by the server because a request head took too long (header) \
             or nothing moved on a kept-alive connection (idle)",
            connections_timed_out.clone(),
        );
        let unauthenticated_throttled = Counter::default();
        registry.register(
            "tensor_wasm_unauthenticated_throttled",
            "Requests with a missing or unknown token answered 429 (not audited) because \
             their client address had spent its budget of failed authentications",
            unauthenticated_throttled.clone(),
        );

        Self {
            refused,
            connections_open,
            connections_refused,
            connections_timed_out,
            unauthenticated_throttled,
            http_requests,
            http_duration,
            invocations,
            invoke_typed,
            invoke_bytes,
            functions_deployed,
            dev_mode: dev_mode_gauge,
            rate_limited,
            panics,
            audit_errors,
        }
    }

    /// Counts one invocation refused before it ran.
    pub fn refusal(&self, tenant: &str, reason: &'static str) {
        self.refused
            .get_or_create(&RefusalLabels {
                tenant: tenant.to_owned(),
                reason,
            })
            .inc();
    }

    /// Counts one connection refused at a cap.
    pub fn connection_refused(&self, cap: &'static str) {
        self.connections_refused
            .get_or_create(&CapLabels { cap })
            .inc();
    }

    /// Counts one connection closed by its watchdog.
    pub fn connection_timed_out(&self, phase: &'static str) {
        self.connections_timed_out
            .get_or_create(&PhaseLabels { phase })
            .inc();
    }

    /// Counts one invocation outcome.
    pub fn invocation(&self, outcome: &'static str) {
        self.invocations
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// Interns route templates as `&'static str` label values.
///
/// The gateway's own routes are matched against a fixed table; templates it
/// does not know (route groups added later) are leaked once each — the set of
/// templates is fixed when the router is built, so this is bounded.
pub(crate) fn route_label(template: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "/functions/{id}/invoke",
        "/functions/{id}",
        "/functions",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/admin/backup",
    ];
    if let Some(known) = KNOWN.iter().find(|k| **k == template) {
        return known;
    }
    static OTHERS: RwLock<Vec<&'static str>> = RwLock::new(Vec::new());
    if let Ok(others) = OTHERS.read()
        && let Some(found) = others.iter().find(|k| **k == template)
    {
        return found;
    }
    let mut others = match OTHERS.write() {
        Ok(o) => o,
        Err(poisoned) => poisoned.into_inner(),
    };
    if let Some(found) = others.iter().find(|k| **k == template) {
        return found;
    }
    let leaked: &'static str = Box::leak(template.to_owned().into_boxed_str());
    others.push(leaked);
    leaked
}

/// The method as a static label value.
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Encodes a registry in the OpenMetrics text format (ends with `# EOF`).
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::with_capacity(8 * 1024);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

/// Rewrites OpenMetrics text into the classic Prometheus text format 0.0.4:
/// a counter's `# HELP`/`# TYPE` lines name the `_total` series (OpenMetrics
/// names the family without the suffix), and the `# EOF` marker goes.
pub fn openmetrics_to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut pending_help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        if line.starts_with("# HELP ") {
            if let Some(help) = pending_help.replace(line) {
                out.push_str(help);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some(name) = rest.strip_suffix(" counter")
            && !name.ends_with("_total")
        {
            if let Some(help) = pending_help.take() {
                let text = help
                    .strip_prefix("# HELP ")
                    .and_then(|h| h.strip_prefix(name))
                    .unwrap_or("");
                out.push_str("# HELP ");
                out.push_str(name);
                out.push_str("_total");
                out.push_str(text);
                out.push('\n');
            }
            out.push_str("# TYPE ");
            out.push_str(name);
            out.push_str("_total counter\n");
            continue;
        }
        if let Some(help) = pending_help.take() {
            out.push_str(help);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(help) = pending_help {
        out.push_str(help);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counter_comes_first_and_scrape_series_leads() {
        let mut registry = Registry::default();
        let m = GatewayMetrics::register(&mut registry, "cpu", false);
        for status in [200, 201, 204, 400, 401, 404] {
            m.http_requests.inc(HttpLabels {
                method: "POST",
                route: "/functions",
                status,
            });
        }
        let text = encode(&registry).unwrap();
        let head: Vec<&str> = text.lines().take(4).collect();
        assert!(
            head[0].starts_with("# HELP tensor_wasm_http_requests "),
            "{head:?}"
        );
        assert!(
            head[2].starts_with(
                "tensor_wasm_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"}"
            ),
            "{head:?}"
        );
        assert!(text.contains("tensor_wasm_build_info{version=\""));
        assert!(text.contains("tensor_wasm_dev_mode 0"));
    }

    #[test]
    fn classic_text_names_counters_by_their_total_series() {
        let mut registry = Registry::default();
        let m = GatewayMetrics::register(&mut registry, "cpu", true);
        m.panics.inc();
        let text = openmetrics_to_prometheus_text(&encode(&registry).unwrap());
        assert!(text.starts_with("# HELP tensor_wasm_http_requests_total HTTP requests"));
        assert!(text.contains("# TYPE tensor_wasm_http_requests_total counter\n"));
        assert!(
            text.contains("# TYPE tensor_wasm_panics_total counter\ntensor_wasm_panics_total 1\n")
        );
        assert!(text.contains("# TYPE tensor_wasm_dev_mode gauge\ntensor_wasm_dev_mode 1\n"));
        assert!(!text.contains("# EOF"));
    }

    #[test]
    fn unknown_templates_are_interned_once() {
        let a = route_label("/snapshots/{name}");
        let b = route_label(&String::from("/snapshots/{name}"));
        assert!(std::ptr::eq(a, b));
        assert_eq!(route_label("/functions"), "/functions");
    }
}
