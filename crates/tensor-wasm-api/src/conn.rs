//! The accept loop, and what bounds one connection: a cap on open
//! connections, a smaller cap on those from one client address (so one
//! address cannot take every slot and hold them), a deadline for each
//! request head, and an idle timeout for a kept-alive connection with
//! nothing in flight. The request-body deadline
//! applies where bodies are read ([`crate::body::read_body`]).
//!
//! hyper serves each connection; a watchdog beside it closes the connection
//! when its deadline passes. A connection is in one of three phases:
//!
//! - **head**: from accept, or from the first byte after a response, until a
//!   whole request head has arrived — bounded by `header_read_timeout`, so a
//!   client that trickles half a header (slowloris) is cut off;
//! - **busy**: a request is being handled — bounded by the invocation
//!   deadline and the body timeout, not here;
//! - **idle**: a response is ready and no byte of the next request has
//!   come — bounded by `idle_timeout`, counted from the last byte moved in
//!   either direction, so a client that stops reading its response is also
//!   cut off.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use crate::config::TrustedProxies;
use crate::metrics::GatewayMetrics;

/// Default cap on open connections (`TENSOR_WASM_API_MAX_CONNECTIONS`).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Default cap on open connections from one client address
/// (`TENSOR_WASM_API_MAX_CONNECTIONS_PER_CLIENT`): IPv4 addresses each,
/// IPv6 per /64; trusted proxies are not capped.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 256;
/// Default time a client has to send a whole request head
/// (`TENSOR_WASM_API_HEADER_READ_TIMEOUT_MS`).
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a kept-alive connection may sit idle
/// (`TENSOR_WASM_API_IDLE_TIMEOUT_MS`). Longer than the 60 s idle timeout
/// of common load balancers, so that they, not we, close idle connections
/// (a server closing first races the balancer's next request into a 502).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default time a client has to send a whole request body
/// (`TENSOR_WASM_API_BODY_TIMEOUT_MS`).
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Refusals answered at once; past it a refused connection is just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 256;
/// How long a refused connection gets to take its `503`.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Bounds on connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at most; past it new ones get a canned `503` and are closed.
    pub max_connections: usize,
    /// Open connections from one address (IPv6: one /64) at most; past it
    /// the same canned `503`. Peers in `TENSOR_WASM_API_TRUSTED_PROXIES` are
    /// not capped: a load balancer carries every client.
    pub max_connections_per_client: usize,
    /// Time from accept (or from the first byte of a later request) to a whole request head.
    pub header_read_timeout: Duration,
    /// Time a connection with nothing in flight may move no byte.
    pub idle_timeout: Duration,
    /// Time from the start of reading a request body to its last byte.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
        }
    }
}

/// Why the watchdog closed a connection (the `phase` label of
/// `tensor_wasm_http_connections_timed_out_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimedOut {
    Header,
    Idle,
}

impl TimedOut {
    pub(crate) fn label(self) -> &'static str {
        match self {
            TimedOut::Header => "header",
            TimedOut::Idle => "idle",
        }
    }
}

/// "No request head in progress".
const NO_HEAD: u64 = u64::MAX;

/// What one connection is doing, shared by its I/O wrapper, its service and
/// its watchdog. Times are milliseconds since accept.
struct Activity {
    accepted: Instant,
    /// Requests being handled (0 or 1: HTTP/1 handles one at a time).
    busy: AtomicU32,
    /// Last time a byte was read or written.
    last_io_ms: AtomicU64,
    /// When the head now arriving began, or [`NO_HEAD`].
    head_started_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            accepted: Instant::now(),
            busy: AtomicU32::new(0),
            last_io_ms: AtomicU64::new(0),
            // The first request's head is due from accept on.
            head_started_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.accepted.elapsed().as_millis() as u64
    }

    fn on_read(&self) {
        self.on_read_at(self.now_ms());
    }

    fn on_read_at(&self, now: u64) {
        self.last_io_ms.store(now, Ordering::Relaxed);
        if self.busy.load(Ordering::Relaxed) == 0 {
            let _ = self.head_started_ms.compare_exchange(
                NO_HEAD,
                now,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    fn on_write(&self) {
        self.on_write_at(self.now_ms());
    }

    fn on_write_at(&self, now: u64) {
        self.last_io_ms.store(now, Ordering::Relaxed);
    }

    fn begin_request(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.head_started_ms.store(NO_HEAD, Ordering::Relaxed);
    }

    fn end_request(&self) {
        self.end_request_at(self.now_ms());
    }

    fn end_request_at(&self, now: u64) {
        self.last_io_ms.store(now, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// When to close the connection and why; `None` while a request is handled.
    fn deadline(&self, limits: &ConnectionLimits) -> Option<(u64, TimedOut)> {
        if self.busy.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head_started_ms.load(Ordering::Relaxed);
        Some(if head != NO_HEAD {
            (
                head.saturating_add(limits.header_read_timeout.as_millis() as u64),
                TimedOut::Header,
            )
        } else {
            (
                self.last_io_ms
                    .load(Ordering::Relaxed)
                    .saturating_add(limits.idle_timeout.as_millis() as u64),
                TimedOut::Idle,
            )
        })
    }
}

/// Resolves when the connection has overstayed its phase. The phase can
/// change while it sleeps (a new head starting during an idle wait brings
/// the deadline forward), so it never sleeps longer than the shorter
/// timeout: a deadline is noticed at most that late.
async fn watchdog(activity: &Activity, limits: &ConnectionLimits) -> TimedOut {
    let recheck = limits.header_read_timeout.min(limits.idle_timeout);
    loop {
        match activity.deadline(limits) {
            None => tokio::time::sleep(recheck).await,
            Some((at, why)) => {
                let now = activity.now_ms();
                if now >= at {
                    return why;
                }
                tokio::time::sleep(Duration::from_millis(at - now).min(recheck)).await;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A stream that reports each read and write to its [`Activity`].
    struct Watched {
        #[pin]
        inner: TcpStream,
        activity: Arc<Activity>,
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.inner.poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.activity.on_read();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.project();
        let polled = this.inner.poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.on_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Marks a request handled when dropped (also when the handler is abandoned).
struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// Open connections per client address (see [`crate::rate::budget_key`]).
#[derive(Default)]
struct PerClient(Mutex<HashMap<IpAddr, usize>>);

impl PerClient {
    /// Counts one more connection from `key`, unless `max` are open.
    fn try_add(&self, key: IpAddr, max: usize) -> bool {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, key: IpAddr) {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

/// One open connection's slot: gives the slot (and its address's count)
/// back and lowers the gauge.
struct Slot {
    _permit: OwnedSemaphorePermit,
    client: Option<(IpAddr, Arc<PerClient>)>,
    metrics: GatewayMetrics,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((key, per_client)) = &self.client {
            per_client.remove(*key);
        }
        self.metrics.connections_open.dec();
    }
}

/// Accepts connections on `listener` and serves `router` on each until
/// `shutdown` resolves; then stops accepting, asks every connection to
/// finish its current request and close, and returns once all have.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    trusted_proxies: TrustedProxies,
    metrics: GatewayMetrics,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let per_client = Arc::new(PerClient::default());
    let per_client_max = limits.max_connections_per_client.max(1);
    let refusals = Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT));
    let (stop_tx, stop_rx) = watch::channel(false);
    // Connection tasks live in a set owned by this future: when the caller
    // gives up on it (the shutdown grace period is over), dropping it aborts
    // them all, and with them their hold on the shared state.
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, or a connection reset before
                    // accept: keep serving the connections we have.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let client =
            (!trusted_proxies.trusts(peer.ip())).then(|| crate::rate::budget_key(peer.ip()));
        if let Some(key) = client
            && !per_client.try_add(key, per_client_max)
        {
            metrics.connection_refused("client");
            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, permit, TOO_MANY_CLIENT_CONNECTIONS));
            }
            continue;
        }
        let client = client.map(|key| (key, per_client.clone()));
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics.connections_open.inc();
                let slot = Slot {
                    _permit: permit,
                    client,
                    metrics: metrics.clone(),
                };
                connections.spawn(serve_connection(
                    stream,
                    peer,
                    router.clone(),
                    limits,
                    metrics.clone(),
                    stop_rx.clone(),
                    slot,
                ));
            }
            Err(_) => {
                if let Some((key, per_client)) = client {
                    per_client.remove(key);
                }
                metrics.connection_refused("server");
                if let Ok(permit) = refusals.clone().try_acquire_owned() {
                    tokio::spawn(refuse(stream, permit, TOO_MANY_CONNECTIONS));
                }
                // Otherwise dropping the stream closes it.
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// The answer to a connection past the cap: fixed bytes, no parsing.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 95\r\n\
\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"the server has too many open connections\"}}\n";

/// The answer to a connection past its address's cap.
const TOO_MANY_CLIENT_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 97\r\n\
\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this address has too many open connections\"}}\n";

async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit, answer: &'static [u8]) {
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(answer).await?;
        stream.shutdown().await
    })
    .await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    metrics: GatewayMetrics,
    mut stop: watch::Receiver<bool>,
    _slot: Slot,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let for_requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        for_requests.begin_request();
        let guard = RequestGuard(for_requests.clone());
        req.extensions_mut().insert(ConnectInfo(peer));
        let call = router.clone().oneshot(req.map(Body::new));
        async move {
            let response = call.await;
            drop(guard);
            response
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let dog = watchdog(&activity, &limits);
    tokio::pin!(dog);
    let mut draining = *stop.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(err) = served {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
                return;
            }
            why = &mut dog => {
                metrics.connection_timed_out(why.label());
                tracing::debug!(%peer, phase = why.label(), "closing a connection that overstayed its phase");
                return;
            }
            _ = stop.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 1,
            max_connections_per_client: 1,
            header_read_timeout: Duration::from_millis(100),
            idle_timeout: Duration::from_millis(1000),
            body_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn phases_pick_their_own_deadline() {
        let a = Activity::new();
        let l = limits();
        assert_eq!(
            a.deadline(&l),
            Some((100, TimedOut::Header)),
            "first head due from accept"
        );
        a.begin_request();
        assert_eq!(
            a.deadline(&l),
            None,
            "no deadline while a request is handled"
        );
        a.end_request_at(500);
        assert_eq!(a.deadline(&l), Some((1500, TimedOut::Idle)));
        a.on_write_at(700);
        assert_eq!(
            a.deadline(&l),
            Some((1700, TimedOut::Idle)),
            "writes keep it alive"
        );
        a.on_read_at(700);
        assert_eq!(
            a.deadline(&l),
            Some((800, TimedOut::Header)),
            "a new head is due"
        );
        a.on_read_at(750);
        assert_eq!(
            a.deadline(&l),
            Some((800, TimedOut::Header)),
            "trickling does not extend it"
        );
    }

    #[test]
    fn the_canned_refusals_declare_their_body_length() {
        for canned in [TOO_MANY_CONNECTIONS, TOO_MANY_CLIENT_CONNECTIONS] {
            let text = std::str::from_utf8(canned).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.contains(&format!("content-length: {}", body.len())),
                "{head}"
            );
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"]["code"], "too_many_connections");
            let code = v["error"]["code"].as_str().unwrap();
            assert!(crate::error::ERROR_CODES.contains(&code), "{code}");
        }
    }

    #[test]
    fn per_client_counts_stop_at_the_cap_and_are_forgotten_at_zero() {
        let p = PerClient::default();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(p.try_add(a, 2) && p.try_add(a, 2));
        assert!(!p.try_add(a, 2), "third from one address refused");
        assert!(p.try_add(b, 2), "another address unaffected");
        p.remove(a);
        assert!(p.try_add(a, 2), "a closed connection frees its place");
        p.remove(a);
        p.remove(a);
        p.remove(b);
        assert!(p.0.lock().unwrap().is_empty(), "no entry left behind");
    }
}
