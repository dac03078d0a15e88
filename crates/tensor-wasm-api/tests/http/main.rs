//! HTTP behaviour of the gateway, seen through a real client.

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod auth;
mod disk;
mod functions;
mod hostile;
mod invoke;
mod limits;
mod network;
mod runbook;
mod snapshots;
