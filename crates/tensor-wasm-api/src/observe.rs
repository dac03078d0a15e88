//! The outermost layer: request id, tracing span (with W3C `traceparent` as
//! parent), request metrics, and panic capture.
//!
//! Cheap on purpose: label values are `&'static str`, the request id is a
//! counter, and `traceparent` is only parsed when present.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tower::{Layer, Service};

use crate::error::{FailureLog, error_body};
use crate::metrics::{HttpLabels, RouteLabels, UNMATCHED_ROUTE, method_label, route_label};
use crate::state::{AppState, RequestContext};

/// Name of the per-request span.
pub(crate) const REQUEST_SPAN: &str = "request";

/// Response header carrying the request id.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The outermost layer (see the module docs). A hand-written service rather
/// than `axum::middleware::from_fn`: its future is a plain struct, so a
/// request costs no boxed future and no clone of the inner service.
#[derive(Clone)]
pub(crate) struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See [`ObserveLayer`].
#[derive(Clone)]
pub(crate) struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = axum::response::Response, Error = Infallible>,
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let started = Instant::now();
        let method = method_label(req.method());
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map_or(UNMATCHED_ROUTE, |p| route_label(p.as_str()));
        let request_id = incoming_request_id(req.headers()).unwrap_or_else(new_request_id);
        let traceparent_id = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(traceparent_trace_id)
            .map(Arc::from);

        // The span is built only when spans are exported: the log layers
        // skip it (see `telemetry::not_request_span`), so without OTLP it
        // would be pure cost on every request.
        let span = if self.state.inner.otel {
            // The name must stay equal to `REQUEST_SPAN` (the log filter
            // matches it); `tracing` needs a literal here.
            let span = tracing::info_span!(
                "request",
                method,
                route,
                status = tracing::field::Empty,
                request_id = %request_id,
            );
            if traceparent_id.is_some() {
                set_remote_parent(&span, req.headers());
            }
            span
        } else {
            tracing::Span::none()
        };
        let peer = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let client = self.state.inner.trusted_proxies.client(peer, req.headers());
        req.extensions_mut().insert(RequestContext {
            request_id: request_id.clone(),
            traceparent_id,
            method,
            route,
            client,
        });
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ObserveFuture {
            inner,
            span,
            started,
            method,
            route,
            request_id,
            state: self.state.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Observe`]: polls the inner future inside the
    /// request span, then records metrics and the request id header.
    pub(crate) struct ObserveFuture<F> {
        #[pin]
        inner: F,
        span: tracing::Span,
        started: Instant,
        method: &'static str,
        route: &'static str,
        request_id: Arc<str>,
        state: AppState,
    }
}

impl<F> Future for ObserveFuture<F>
where
    F: Future<Output = Result<axum::response::Response, Infallible>>,
{
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        let Ok(mut resp) = result;
        let status = resp.status().as_u16();
        this.span.record("status", status);
        let (method, route) = (*this.method, *this.route);
        let metrics = &this.state.inner.metrics;
        metrics.http_requests.inc(HttpLabels {
            method,
            route,
            status,
        });
        metrics
            .http_duration
            .get_or_create(&RouteLabels { method, route })
            .observe(this.started.elapsed().as_secs_f64());
        if let Some(failure) = resp.extensions_mut().remove::<FailureLog>() {
            tracing::error!(
                request_id = %this.request_id,
                method,
                route,
                status,
                code = failure.code,
                error = %failure.message,
                "request failed"
            );
        }
        if let Ok(v) = HeaderValue::from_str(this.request_id) {
            resp.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        Poll::Ready(Ok(resp))
    }
}

/// Accepts a caller's `x-request-id` when it is short, visible ASCII.
fn incoming_request_id(headers: &HeaderMap) -> Option<Arc<str>> {
    let v = headers.get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| Arc::from(v))
}

fn new_request_id() -> Arc<str> {
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        // A fixed prefix only makes ids collide across restarts; they stay unique within one.
        let _ = getrandom::fill(&mut b);
        u32::from_le_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // `req_` + 8 + 12 hex digits, built on the stack: one allocation (the Arc).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = *b"req_00000000000000000000";
    let digits = (u128::from(prefix) << 48) | u128::from(n & 0xffff_ffff_ffff);
    for (i, slot) in buf[4..].iter_mut().rev().enumerate() {
        *slot = HEX[((digits >> (4 * i)) & 0xf) as usize];
    }
    Arc::from(std::str::from_utf8(&buf).unwrap_or("req_unknown"))
}

/// The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub(crate) fn traceparent_trace_id(v: &str) -> Option<&str> {
    let mut parts = v.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent_id = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace_id, 32)
        && trace_id.bytes().any(|b| b != b'0')
        && hex(parent_id, 16)
        && parent_id.bytes().any(|b| b != b'0')
        && hex(flags, 2);
    valid.then_some(trace_id)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

fn set_remote_parent(span: &tracing::Span, headers: &HeaderMap) {
    use opentelemetry::propagation::TextMapPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let propagator = opentelemetry_sdk::propagation::TraceContextPropagator::new();
    let parent = propagator.extract(&HeaderExtractor(headers));
    if let Err(err) = span.set_parent(parent) {
        tracing::debug!(%err, "cannot attach remote trace parent");
    }
}

/// Turns a handler panic into a `500` JSON response and counts it.
#[derive(Clone)]
pub(crate) struct PanicResponder {
    pub(crate) panics: prometheus_client::metrics::counter::Counter,
}

impl tower_http::catch_panic::ResponseForPanic for PanicResponder {
    type ResponseBody = Body;

    fn response_for_panic(
        &mut self,
        err: Box<dyn std::any::Any + Send + 'static>,
    ) -> Response<Body> {
        self.panics.inc();
        let detail = err
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| err.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let mut resp = Response::new(Body::from(error_body(
            "internal",
            "internal server error (a handler panicked); the server log has details",
        )));
        *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // Logged with the request id by `ObserveFuture`.
        resp.extensions_mut().insert(FailureLog {
            code: "internal",
            message: format!("handler panicked: {detail}"),
        });
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_validated() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            traceparent_trace_id(tp),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            traceparent_trace_id("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(traceparent_trace_id("garbage"), None);
        assert_eq!(
            traceparent_trace_id("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
    }

    #[test]
    fn generated_request_ids_are_unique_and_well_formed() {
        let a = new_request_id();
        assert_ne!(a, new_request_id());
        assert_eq!(a.len(), 24);
        assert!(a.starts_with("req_") && a[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
