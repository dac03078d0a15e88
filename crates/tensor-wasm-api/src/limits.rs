//! Request limits: per-token rate limits, the body-size cap, and the
//! authentication + rate-limit layer that guards every tenant-facing route.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use tower::{Layer, Service};

use crate::audit::AuditTargetRef;
use crate::auth::{Actor, RateKey};
use crate::config::RateLimitConfig;
use crate::error::ApiError;
use crate::state::{AppState, Caller, RequestContext};

/// Token buckets: one per configured token, or per client address in dev mode.
pub(crate) enum RateLimits {
    Off,
    On {
        per_token: Vec<DefaultDirectRateLimiter>,
        per_client: DefaultKeyedRateLimiter<Option<IpAddr>>,
        clock: DefaultClock,
    },
}

impl RateLimits {
    pub(crate) fn new(cfg: Option<RateLimitConfig>, tokens: usize) -> Self {
        let Some(cfg) = cfg else {
            return Self::Off;
        };
        let quota = Quota::per_second(cfg.rps).allow_burst(cfg.burst);
        Self::On {
            per_token: (0..tokens)
                .map(|_| DefaultDirectRateLimiter::direct(quota))
                .collect(),
            per_client: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when the bucket is empty.
    pub(crate) fn check(&self, key: RateKey) -> Result<(), u64> {
        let Self::On {
            per_token,
            per_client,
            clock,
        } = self
        else {
            return Ok(());
        };
        let verdict = match key {
            RateKey::Token(i) => match per_token.get(i) {
                Some(l) => l.check(),
                None => return Ok(()),
            },
            RateKey::Client(ip) => per_client.check_key(&ip),
        };
        verdict.map_err(|not_until| retry_after(not_until.wait_time_from(clock.now())))
    }

    /// Forgets idle per-client buckets (dev mode keys by address).
    pub(crate) fn shrink(&self) {
        if let Self::On { per_client, .. } = self {
            per_client.retain_recent();
            per_client.shrink_to_fit();
        }
    }
}

/// A token bucket per client address, spent only by failed
/// authentications: a `401` flood from one address is answered `429`
/// without a token check's audit record once its budget is gone.
pub(crate) struct UnauthenticatedLimit {
    limiter: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    clock: DefaultClock,
}

impl UnauthenticatedLimit {
    pub(crate) fn new(cfg: Option<RateLimitConfig>) -> Self {
        Self {
            limiter: cfg.map(|cfg| {
                DefaultKeyedRateLimiter::keyed(Quota::per_second(cfg.rps).allow_burst(cfg.burst))
            }),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when `client` has spent its budget. IPv6
    /// clients share one budget per /64 (one subscriber's prefix: otherwise
    /// each of its 2^64 addresses would bring a fresh budget).
    pub(crate) fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&client.map(budget_key))
            .map_err(|not_until| retry_after(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets addresses whose buckets are full again.
    pub(crate) fn shrink(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The address a failed-authentication budget is kept for: IPv4 as is
/// (also when written IPv4-mapped), IPv6 cut to its /64.
pub(crate) fn budget_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// `Retry-After` in whole seconds, never "0".
fn retry_after(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// The address a request came from: its [`RequestContext`]'s client (the
/// TCP peer, or what a trusted proxy says), else the TCP peer.
pub(crate) fn client_addr(req: &Request) -> Option<IpAddr> {
    match req.extensions().get::<RequestContext>() {
        Some(ctx) => ctx.client,
        None => req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip()),
    }
}

/// True for calls that change state (and so must not happen unaudited):
/// every POST and DELETE except invocations.
fn changes_state(req: &Request) -> bool {
    use axum::http::Method;
    let m = req.method();
    (m == Method::POST || m == Method::DELETE || m == Method::PUT || m == Method::PATCH)
        && !req.uri().path().ends_with("/invoke")
}

/// Authenticates the caller, applies its rate limit, and attaches the
/// [`Actor`] to the request. Refusals (401, 429) are audited here. Like
/// [`crate::observe::ObserveLayer`], a plain service with a concrete future.
#[derive(Clone)]
pub(crate) struct GuardLayer {
    state: AppState,
}

impl GuardLayer {
    pub(crate) fn new(state: AppState) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;

    fn layer(&self, inner: S) -> Guard<S> {
        Guard {
            inner,
            state: self.state.clone(),
        }
    }
}

/// See [`GuardLayer`].
#[derive(Clone)]
pub(crate) struct Guard<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Guard<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        match admit(&self.state, &req) {
            Ok(actor) => {
                req.extensions_mut().insert(actor);
                GuardFuture::Admitted {
                    inner: self.inner.call(req),
                }
            }
            Err(refusal) => GuardFuture::Refused {
                response: Some(refusal.into_response()),
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Guard`].
    #[project = GuardProj]
    pub(crate) enum GuardFuture<F> {
        Admitted { #[pin] inner: F },
        Refused { response: Option<Response> },
    }
}

impl<F> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            GuardProj::Admitted { inner } => inner.poll(cx),
            GuardProj::Refused { response } => {
                Poll::Ready(Ok(response.take().unwrap_or_else(|| {
                    ApiError::Internal("guard polled after completion".into()).into_response()
                })))
            }
        }
    }
}

/// The caller's [`Actor`] when its token is valid and its bucket not empty;
/// otherwise the (audited) refusal.
fn admit(state: &AppState, req: &Request) -> Result<Arc<Actor>, ApiError> {
    let shared = &state.inner;
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let actor = match shared.auth.authenticate(auth_header) {
        Ok(actor) => actor,
        Err(failure) => {
            if let Err(retry_after_secs) = shared.unauthenticated.check(client_addr(req)) {
                shared.metrics.unauthenticated_throttled.inc();
                return Err(ApiError::RateLimited { retry_after_secs });
            }
            let err = ApiError::Unauthorized;
            audit_refusal(state, req, Arc::new(failure.actor), &err);
            return Err(err);
        }
    };
    let key = match actor.token_index {
        Some(i) => RateKey::Token(i),
        None => RateKey::Client(client_addr(req)),
    };
    if let Err(retry_after_secs) = shared.rate.check(key) {
        shared.metrics.rate_limited.inc();
        let err = ApiError::RateLimited { retry_after_secs };
        audit_refusal(state, req, actor, &err);
        return Err(err);
    }
    if shared.audit_required && !shared.audit.healthy() && changes_state(req) {
        // The refusal's own record is the probe: once it is written, the
        // sink is healthy again and the next call goes through.
        let err = ApiError::AuditUnavailable;
        audit_refusal(state, req, actor, &err);
        return Err(err);
    }
    Ok(actor)
}

fn audit_refusal(state: &AppState, req: &Request, actor: Arc<Actor>, err: &ApiError) {
    let Some(ctx) = req.extensions().get::<RequestContext>().cloned() else {
        return;
    };
    let target = AuditTargetRef {
        function_id: function_id_from_path(req.uri().path()),
        ..Default::default()
    };
    let action = action_for(ctx.method, ctx.route);
    let caller = Caller { actor, ctx };
    // Refused at the door (401, 403, 429, or 503 while audit records
    // cannot be written): the call never ran.
    state.audit_denied(&caller, action, err, &target);
}

/// The `{id}` segment of `/functions/{id}…`, for audit targets.
fn function_id_from_path(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/functions/")?;
    let id = rest.split('/').next().filter(|s| !s.is_empty())?;
    Some(id.to_owned())
}

/// The audit action name of a route.
pub(crate) fn action_for(method: &str, route: &str) -> &'static str {
    match (method, route) {
        ("POST", "/functions") => "function.create",
        ("GET", "/functions") => "function.list",
        ("GET", "/functions/{id}") => "function.get",
        ("DELETE", "/functions/{id}") => "function.delete",
        ("POST", "/functions/{id}/invoke") => "function.invoke",
        ("POST", "/admin/backup") => "admin.backup",
        (_, r) if r.starts_with("/snapshots") || r.contains("/snapshots") => "snapshot",
        _ => "request",
    }
}

/// Reads a whole body, refusing more than `limit` bytes with `413` and a
/// body that has not fully arrived within `timeout` with `408`.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            timeout_ms: timeout.as_millis() as u64,
        })?;
    read.map_err(|e| {
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(err) = source {
            if err.is::<http_body_util::LengthLimitError>() {
                return ApiError::PayloadTooLarge { limit };
            }
            source = err.source();
        }
        ApiError::InvalidRequest(format!("cannot read request body: {e}"))
    })
}

/// The media type of a request without parameters, lower-cased (`""` if absent).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// True for `application/json` and `application/*+json`.
pub(crate) fn is_json(media_type: &str) -> bool {
    media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn bucket_refuses_past_burst_with_positive_retry_after() {
        let cfg = RateLimitConfig::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(2));
        let limits = RateLimits::new(Some(cfg), 1);
        assert!(limits.check(RateKey::Token(0)).is_ok());
        assert!(limits.check(RateKey::Token(0)).is_ok());
        let wait = limits.check(RateKey::Token(0)).unwrap_err();
        assert!(wait >= 1);
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            budget_key(ip("2001:db8:1:2::1")),
            budget_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            budget_key(ip("2001:db8:1:2::1")),
            budget_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(budget_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(budget_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }

    #[test]
    fn function_ids_are_found_in_paths() {
        assert_eq!(
            function_id_from_path("/functions/fn_1/invoke").as_deref(),
            Some("fn_1")
        );
        assert_eq!(
            function_id_from_path("/functions/fn_1").as_deref(),
            Some("fn_1")
        );
        assert_eq!(function_id_from_path("/functions"), None);
    }
}
