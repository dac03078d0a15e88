//! The key figures of a tensor-wasm server from one scrape: requests and
//! errors, invocations and failures, invoke and GPU-dispatch latency
//! quantiles. Pure, like the parser.

use serde::Serialize;

use super::{Histogram, Metrics, Sample};

/// Request counter (with or without `_total`).
pub const REQUESTS: &str = "tensor_wasm_http_requests";
/// Invocation counter by `outcome`.
pub const INVOCATIONS: &str = "tensor_wasm_invocations";
/// Invoke latency histogram.
pub const INVOKE_DURATION: &str = "tensor_wasm_invoke_duration_seconds";
/// GPU host-call latency histogram.
pub const GPU_DISPATCH_DURATION: &str = "tensor_wasm_gpu_dispatch_duration_seconds";

/// Latency quantiles in seconds (`None`: no observations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl Quantiles {
    /// p50, p95 and p99 of `h` (all `None` without a histogram or observations).
    pub fn of(h: Option<&Histogram>) -> Self {
        let q = |p| h.and_then(|h| h.quantile(p));
        Quantiles {
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}

/// The key figures of one scrape, cumulative since the server started
/// (what `tensor-wasm observe --once` prints and its dashboard shows).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyMetrics {
    /// Every HTTP request answered.
    pub requests_total: f64,
    /// Requests answered 5xx.
    pub request_errors_total: f64,
    /// Requests answered 4xx.
    pub request_client_errors_total: f64,
    /// Invocations, any outcome.
    pub invocations_total: f64,
    /// Invocations whose outcome was not `ok`.
    pub invoke_errors_total: f64,
    /// Invoke latency quantiles (seconds), estimated from the histogram buckets.
    pub invoke_latency_seconds: Quantiles,
    /// GPU host calls observed.
    pub gpu_dispatch_total: f64,
    /// GPU host-call latency p95 (seconds).
    pub gpu_dispatch_p95_seconds: Option<f64>,
}

fn status_class(s: &Sample, class: char) -> bool {
    s.label("status").is_some_and(|v| v.starts_with(class))
}

fn not_ok(s: &Sample) -> bool {
    s.label("outcome").is_some_and(|o| o != "ok")
}

impl KeyMetrics {
    /// Derives the figures from one scrape.
    pub fn from_metrics(m: &Metrics) -> Self {
        let invoke = m.histogram_where(INVOKE_DURATION, |_| true);
        let dispatch = m.histogram_where(GPU_DISPATCH_DURATION, |_| true);
        KeyMetrics {
            requests_total: m.counter_where(REQUESTS, |_| true).unwrap_or(0.0),
            request_errors_total: m
                .counter_where(REQUESTS, |s| status_class(s, '5'))
                .unwrap_or(0.0),
            request_client_errors_total: m
                .counter_where(REQUESTS, |s| status_class(s, '4'))
                .unwrap_or(0.0),
            invocations_total: m.counter_where(INVOCATIONS, |_| true).unwrap_or(0.0),
            invoke_errors_total: m.counter_where(INVOCATIONS, not_ok).unwrap_or(0.0),
            invoke_latency_seconds: Quantiles::of(invoke.as_ref()),
            gpu_dispatch_total: dispatch.as_ref().map_or(0.0, Histogram::count),
            gpu_dispatch_p95_seconds: dispatch.as_ref().and_then(|h| h.quantile(0.95)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::parse;

    #[test]
    fn key_figures_sum_series_and_estimate_latency() {
        let m = parse(
            "tensor_wasm_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 10\n\
             tensor_wasm_http_requests_total{method=\"POST\",route=\"/functions\",status=\"400\"} 3\n\
             tensor_wasm_http_requests_total{method=\"POST\",route=\"/functions/{id}/invoke\",status=\"503\"} 2\n\
             tensor_wasm_invocations_total{outcome=\"ok\"} 8\n\
             tensor_wasm_invocations_total{outcome=\"trap\"} 2\n\
             tensor_wasm_invoke_duration_seconds_bucket{mode=\"typed\",le=\"0.01\"} 5\n\
             tensor_wasm_invoke_duration_seconds_bucket{mode=\"typed\",le=\"0.1\"} 10\n\
             tensor_wasm_invoke_duration_seconds_bucket{mode=\"typed\",le=\"+Inf\"} 10\n",
        );
        let k = KeyMetrics::from_metrics(&m);
        assert_eq!(k.requests_total, 15.0);
        assert_eq!(k.request_errors_total, 2.0);
        assert_eq!(k.request_client_errors_total, 3.0);
        assert_eq!(k.invocations_total, 10.0);
        assert_eq!(k.invoke_errors_total, 2.0);
        let p50 = k.invoke_latency_seconds.p50.expect("p50");
        assert!((p50 - 0.01).abs() < 1e-12, "{p50}");
        // Rank 9.9 of 10 is 98% of the way through (0.01, 0.1].
        let p99 = k.invoke_latency_seconds.p99.expect("p99");
        assert!((p99 - 0.0982).abs() < 1e-12, "{p99}");
        // No GPU histogram: nothing dispatched, no p95.
        assert_eq!(k.gpu_dispatch_total, 0.0);
        assert_eq!(k.gpu_dispatch_p95_seconds, None);
        assert_eq!(
            KeyMetrics::from_metrics(&Metrics::default()),
            KeyMetrics::default()
        );
    }
}
