//! `tensor-wasm-api`: the HTTP gateway behind `tensor-wasm serve`.
//!
//! What it is: an axum router plus the cross-cutting layers every request
//! passes through — request ids and tracing spans, metrics, panic capture,
//! bearer-token authentication with tenancy, per-token rate limits, the audit
//! log — and the route groups under [`routes`] (health, metrics, OpenAPI,
//! functions, invoke, admin). What it is not: an engine or a database; it
//! drives [`tensor_wasm_exec::Executor`] and a [`tensor_wasm_store::FunctionStore`].
//!
//! Invariant: the invoke path never touches the store. Every deployed function
//! is compiled once (at deploy, or at start-up from the store) and kept in an
//! in-memory map; the store is written before the map changes, so what a
//! client sees is always durable.

pub mod admission;
pub mod audit;
pub mod auth;
pub mod config;
pub mod conn;
pub mod error;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod snapshots;
pub mod state;
pub mod telemetry;

mod body;
mod guard;
mod invocation;
mod observe;
mod rate;

pub use config::{ApiConfig, AuditTarget, RateLimitConfig, TenantLimits, TrustedProxies};
pub use conn::ConnectionLimits;
pub use error::{ApiError, StartupError};
pub use server::{Gateway, shutdown_signal};
pub use state::AppState;

/// The version the gateway reports (`/readyz`, `tensor_wasm_build_info`).
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));
