//! What `observe` knows about a server: one scrape, the `--once` JSON
//! document, and the dashboard's rolling state (the key figures come from
//! `tensor_wasm_client::metrics::KeyMetrics`).
//!
//! Pure: the HTTP calls live in `observe.rs`, the drawing in `ui.rs`, the
//! metrics parser in `tensor_wasm_client::metrics`.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use tensor_wasm_client::metrics::{
    GPU_DISPATCH_DURATION, Histogram, INVOKE_DURATION, KeyMetrics, Metrics, Quantiles, REQUESTS,
};

/// How many request-rate points the dashboard's sparkline keeps.
pub const HISTORY_LEN: usize = 120;

/// One function as `GET /functions` lists it (only what we show).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionItem {
    /// `fn_…` id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Owning tenant.
    #[serde(default)]
    pub tenant: String,
}

/// Everything one refresh fetched.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// `/healthz` answered 200 `{"status":"ok"}`.
    pub healthz_ok: bool,
    /// `/readyz` body (present even on 503 when it was JSON).
    pub readyz: Option<Value>,
    /// `/readyz` answered 200.
    pub ready: bool,
    /// Parsed `/metrics`.
    pub metrics: Metrics,
    /// `GET /functions`.
    pub functions: Vec<FunctionItem>,
    /// Seconds since an arbitrary origin (monotonic), for rates.
    pub at_secs: f64,
}

impl Scrape {
    /// Healthy: live and ready.
    pub fn healthy(&self) -> bool {
        self.healthz_ok && self.ready
    }

    /// `"ok"` or `"unhealthy"`.
    pub fn health_word(&self) -> &'static str {
        if self.healthy() { "ok" } else { "unhealthy" }
    }

    /// Why the server is unhealthy, in one line (`None` when healthy).
    pub fn unhealthy_reason(&self) -> Option<String> {
        if !self.healthz_ok {
            return Some("/healthz did not answer 200 {\"status\":\"ok\"}".into());
        }
        if !self.ready {
            let status = self
                .readyz_str("status")
                .unwrap_or_else(|| "no answer".into());
            return Some(format!("/readyz is not ready ({status})"));
        }
        None
    }

    fn readyz_str(&self, key: &str) -> Option<String> {
        self.readyz
            .as_ref()
            .and_then(|r| r.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    fn build_info(&self, label: &str) -> Option<String> {
        self.metrics
            .first("tensor_wasm_build_info")
            .and_then(|s| s.label(label))
            .map(str::to_string)
    }

    /// Server version, from `/readyz` or the `build_info` metric.
    pub fn version(&self) -> Option<String> {
        self.readyz_str("version")
            .or_else(|| self.build_info("version"))
    }

    /// `cuda`, `cpu` or `none`.
    pub fn gpu_backend(&self) -> Option<String> {
        self.readyz_str("gpu_backend")
            .or_else(|| self.build_info("gpu_backend"))
    }

    /// Whether the server admits every request (no tokens configured).
    pub fn dev_mode(&self) -> Option<bool> {
        self.readyz
            .as_ref()
            .and_then(|r| r.get("dev_mode"))
            .and_then(Value::as_bool)
            .or_else(|| {
                self.metrics
                    .sum_where("tensor_wasm_dev_mode", |_| true)
                    .map(|v| v >= 1.0)
            })
    }
}

/// The single JSON document `observe --once` prints.
pub fn once_document(server: &str, scrape: &Scrape) -> Value {
    json!({
        "server": server,
        "health": scrape.health_word(),
        "healthz": scrape.healthz_ok,
        "ready": scrape.ready,
        "version": scrape.version(),
        "dev_mode": scrape.dev_mode(),
        "gpu_backend": scrape.gpu_backend(),
        "functions": {
            "count": scrape.functions.len(),
            "items": scrape.functions,
        },
        "metrics": KeyMetrics::from_metrics(&scrape.metrics),
    })
}

/// Requests per second on one route over the last refresh.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRate {
    /// `METHOD route`.
    pub route: String,
    /// Requests per second.
    pub per_sec: f64,
    /// Requests since the server started.
    pub total: f64,
}

/// What the dashboard draws, computed from the last two scrapes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardView {
    /// Server URL.
    pub server: String,
    /// `"ok"`, `"unhealthy"` or `"unreachable"`.
    pub health: String,
    /// Server version.
    pub version: String,
    /// GPU backend.
    pub gpu_backend: String,
    /// Dev mode flag (`None`: unknown).
    pub dev_mode: Option<bool>,
    /// Requests per second (`None` until two scrapes).
    pub request_rate: Option<f64>,
    /// Share of requests answered 5xx over the last refresh (0..=1).
    pub error_rate: Option<f64>,
    /// Invocations per second.
    pub invoke_rate: Option<f64>,
    /// Share of invocations that failed over the last refresh.
    pub invoke_error_rate: Option<f64>,
    /// Invoke latency over the last refresh (cumulative until then).
    pub invoke_latency: Quantiles,
    /// GPU dispatch p95 over the last refresh (cumulative until then).
    pub gpu_dispatch_p95: Option<f64>,
    /// Cumulative figures.
    pub totals: KeyMetrics,
    /// Busiest routes, busiest first.
    pub top_routes: Vec<RouteRate>,
    /// Functions the token can see.
    pub functions: Vec<FunctionItem>,
    /// Request-rate history for the sparkline (requests per second, rounded).
    pub rate_history: Vec<u64>,
    /// The last refresh's error, if it failed.
    pub last_error: Option<String>,
}

/// The dashboard's rolling state: the last two scrapes and a rate history.
#[derive(Debug, Default)]
pub struct Dashboard {
    server: String,
    previous: Option<Scrape>,
    current: Option<Scrape>,
    history: VecDeque<f64>,
    last_error: Option<String>,
}

fn per_sec(now: f64, before: f64, dt: f64) -> f64 {
    // A counter that went down means the server restarted: count from zero.
    let delta = if now >= before { now - before } else { now };
    if dt > 0.0 { delta / dt } else { 0.0 }
}

fn ratio(part: f64, whole: f64) -> Option<f64> {
    (whole > 0.0).then(|| (part / whole).clamp(0.0, 1.0))
}

impl Dashboard {
    /// An empty dashboard for `server`.
    pub fn new(server: impl Into<String>) -> Self {
        Dashboard {
            server: server.into(),
            ..Default::default()
        }
    }

    /// Takes a fresh scrape.
    pub fn update(&mut self, scrape: Scrape) {
        self.last_error = None;
        self.previous = self.current.take();
        self.current = Some(scrape);
        if let Some(rate) = self.view().request_rate {
            if self.history.len() == HISTORY_LEN {
                self.history.pop_front();
            }
            self.history.push_back(rate);
        }
    }

    /// Records a failed refresh (the last good figures stay on screen).
    pub fn fail(&mut self, reason: impl Into<String>) {
        self.last_error = Some(reason.into());
    }

    /// What to draw now.
    pub fn view(&self) -> DashboardView {
        let mut view = DashboardView {
            server: self.server.clone(),
            health: "unreachable".into(),
            version: "?".into(),
            gpu_backend: "?".into(),
            rate_history: self.history.iter().map(|r| r.round() as u64).collect(),
            last_error: self.last_error.clone(),
            ..Default::default()
        };
        let Some(cur) = &self.current else {
            return view;
        };
        view.health = if self.last_error.is_some() {
            "unreachable".into()
        } else {
            cur.health_word().into()
        };
        view.version = cur.version().unwrap_or_else(|| "?".into());
        view.gpu_backend = cur.gpu_backend().unwrap_or_else(|| "?".into());
        view.dev_mode = cur.dev_mode();
        view.functions = cur.functions.clone();
        view.totals = KeyMetrics::from_metrics(&cur.metrics);

        let invoke_now = cur.metrics.histogram_where(INVOKE_DURATION, |_| true);
        let dispatch_now = cur.metrics.histogram_where(GPU_DISPATCH_DURATION, |_| true);
        view.invoke_latency = view.totals.invoke_latency_seconds;
        view.gpu_dispatch_p95 = view.totals.gpu_dispatch_p95_seconds;

        let mut routes: Vec<RouteRate> = Vec::new();
        for s in cur.metrics.counter_series(REQUESTS) {
            let route = format!(
                "{} {}",
                s.label("method").unwrap_or("?"),
                s.label("route").unwrap_or("?")
            );
            match routes.iter_mut().find(|r| r.route == route) {
                Some(r) => r.total += s.value,
                None => routes.push(RouteRate {
                    route,
                    per_sec: 0.0,
                    total: s.value,
                }),
            }
        }

        if let Some(prev) = &self.previous {
            let dt = cur.at_secs - prev.at_secs;
            let before = KeyMetrics::from_metrics(&prev.metrics);
            let t = &view.totals;
            view.request_rate = Some(per_sec(t.requests_total, before.requests_total, dt));
            view.invoke_rate = Some(per_sec(t.invocations_total, before.invocations_total, dt));
            view.error_rate = Some(
                ratio(
                    per_sec(t.request_errors_total, before.request_errors_total, 1.0),
                    per_sec(t.requests_total, before.requests_total, 1.0),
                )
                .unwrap_or(0.0),
            );
            view.invoke_error_rate = ratio(
                per_sec(t.invoke_errors_total, before.invoke_errors_total, 1.0),
                per_sec(t.invocations_total, before.invocations_total, 1.0),
            );
            // Latency over the last refresh when something happened in it.
            let window = |now: &Option<Histogram>, name: &str| {
                let then = prev.metrics.histogram_where(name, |_| true);
                match (now, then) {
                    (Some(n), Some(t)) => Some(n.since(&t)).filter(|w| w.count() > 0.0),
                    (Some(n), None) => Some(n.clone()).filter(|w| w.count() > 0.0),
                    _ => None,
                }
            };
            if let Some(w) = window(&invoke_now, INVOKE_DURATION) {
                view.invoke_latency = Quantiles::of(Some(&w));
            }
            if let Some(w) = window(&dispatch_now, GPU_DISPATCH_DURATION) {
                view.gpu_dispatch_p95 = w.quantile(0.95);
            }
            for r in &mut routes {
                let before_total: f64 = prev
                    .metrics
                    .counter_series(REQUESTS)
                    .into_iter()
                    .filter(|s| {
                        format!(
                            "{} {}",
                            s.label("method").unwrap_or("?"),
                            s.label("route").unwrap_or("?")
                        ) == r.route
                    })
                    .map(|s| s.value)
                    .sum();
                r.per_sec = per_sec(r.total, before_total, dt);
            }
        }
        routes.sort_by(|a, b| {
            b.per_sec
                .total_cmp(&a.per_sec)
                .then(b.total.total_cmp(&a.total))
        });
        routes.truncate(8);
        view.top_routes = routes;
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensor_wasm_client::metrics::parse;

    fn scrape(at: f64, requests: u64, errors: u64, fast: u64, slow: u64) -> Scrape {
        let total = fast + slow;
        let text = format!(
            "tensor_wasm_http_requests_total{{method=\"GET\",route=\"/healthz\",status=\"200\"}} {requests}\n\
             tensor_wasm_http_requests_total{{method=\"POST\",route=\"/functions/{{id}}/invoke\",status=\"500\"}} {errors}\n\
             tensor_wasm_invocations_total{{outcome=\"ok\"}} {total}\n\
             tensor_wasm_invoke_duration_seconds_bucket{{mode=\"typed\",le=\"0.001\"}} {fast}\n\
             tensor_wasm_invoke_duration_seconds_bucket{{mode=\"typed\",le=\"0.1\"}} {total}\n\
             tensor_wasm_invoke_duration_seconds_bucket{{mode=\"typed\",le=\"+Inf\"}} {total}\n\
             tensor_wasm_build_info{{version=\"v0.1.0\",gpu_backend=\"cpu\"}} 1\n\
             tensor_wasm_dev_mode 0\n"
        );
        Scrape {
            healthz_ok: true,
            readyz: Some(
                json!({"status":"ready","version":"v0.1.0","gpu_backend":"cpu","dev_mode":false}),
            ),
            ready: true,
            metrics: parse(&text),
            functions: vec![FunctionItem {
                id: "fn_1".into(),
                name: "adder".into(),
                tenant: "7".into(),
            }],
            at_secs: at,
        }
    }

    #[test]
    fn once_document_has_the_contract_keys() {
        let doc = once_document("http://x:1", &scrape(0.0, 10, 2, 4, 0));
        for key in [
            "server",
            "health",
            "version",
            "dev_mode",
            "gpu_backend",
            "functions",
            "metrics",
        ] {
            assert!(doc.get(key).is_some(), "missing {key}: {doc}");
        }
        assert_eq!(doc["health"], "ok");
        assert_eq!(doc["version"], "v0.1.0");
        assert_eq!(doc["dev_mode"], false);
        assert_eq!(doc["functions"]["count"], 1);
        assert_eq!(doc["functions"]["items"][0]["tenant"], "7");
        assert_eq!(doc["metrics"]["requests_total"], 12.0);
        assert_eq!(doc["metrics"]["request_errors_total"], 2.0);
        assert_eq!(doc["metrics"]["invocations_total"], 4.0);
        let p50 = doc["metrics"]["invoke_latency_seconds"]["p50"]
            .as_f64()
            .expect("p50");
        assert!(p50 > 0.0 && p50 <= 0.001);
        assert!(doc["metrics"]["gpu_dispatch_p95_seconds"].is_null());
    }

    #[test]
    fn unhealthy_when_not_ready() {
        let mut s = scrape(0.0, 1, 0, 0, 0);
        s.ready = false;
        s.readyz = Some(json!({"status":"not_ready"}));
        assert_eq!(s.health_word(), "unhealthy");
        assert!(
            s.unhealthy_reason()
                .is_some_and(|r| r.contains("not_ready"))
        );
        // Version falls back to build_info.
        assert_eq!(s.version().as_deref(), Some("v0.1.0"));
    }

    #[test]
    fn dashboard_rates_use_the_last_refresh() {
        let mut d = Dashboard::new("http://x:1");
        assert_eq!(d.view().health, "unreachable");
        d.update(scrape(0.0, 100, 0, 10, 0));
        assert_eq!(d.view().request_rate, None);
        // 2 s later: 40 more requests of which 10 are errors; 10 slow invokes.
        d.update(scrape(2.0, 130, 10, 10, 10));
        let v = d.view();
        assert_eq!(v.request_rate, Some(20.0));
        assert_eq!(v.error_rate, Some(0.25));
        assert_eq!(v.invoke_rate, Some(5.0));
        // Window latency only sees the slow ones (0.001, 0.1].
        let p50 = v.invoke_latency.p50.expect("p50");
        assert!(p50 > 0.001, "{p50}");
        assert_eq!(v.top_routes[0].route, "GET /healthz");
        assert_eq!(v.top_routes[0].per_sec, 15.0);
        assert_eq!(v.rate_history, vec![20]);
        d.fail("connection refused");
        assert_eq!(d.view().health, "unreachable");
        assert_eq!(d.view().last_error.as_deref(), Some("connection refused"));
    }

    #[test]
    fn restart_does_not_give_negative_rates() {
        let mut d = Dashboard::new("s");
        d.update(scrape(0.0, 1000, 0, 0, 0));
        d.update(scrape(1.0, 5, 0, 0, 0));
        assert_eq!(d.view().request_rate, Some(5.0));
    }
}
