//! The layer that guards every tenant-facing route: authentication, the
//! per-token rate limit and the failed-authentication budget
//! ([`crate::rate`]), the audit of refusals, and — with
//! `TENSOR_WASM_API_AUDIT_REQUIRED` — no changes while audit records cannot
//! be written.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{ConnectInfo, Request};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::audit::AuditTargetRef;
use crate::auth::{Actor, RateKey};
use crate::error::ApiError;
use crate::state::{AppState, Caller, RequestContext};

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

#[cfg(test)]
mod tests {
    use super::*;

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
