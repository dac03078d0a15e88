//! Latency percentiles for the bench binaries (`harness = false`) that time
//! every iteration: `crates/tensor-wasm-exec/benches/invoke.rs` and
//! `crates/tensor-wasm-api/benches/router.rs` include this file with
//! `#[path]`, as the tests include `guests/build_support.rs`.

use std::time::Duration;

/// p50, p99 and mean of a set of samples.
pub struct Stats {
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

/// Sorts `samples` (non-empty) and summarises them.
pub fn stats(mut samples: Vec<Duration>) -> Stats {
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
    let total: Duration = samples.iter().sum();
    Stats {
        p50: pick(0.50),
        p99: pick(0.99),
        mean: total / samples.len() as u32,
    }
}

/// One line: `name`, then p50, p99 and mean in µs.
pub fn report(name: &str, s: &Stats) {
    println!(
        "{name:<44} p50 {:>8.2} µs   p99 {:>8.2} µs   mean {:>8.2} µs",
        s.p50.as_secs_f64() * 1e6,
        s.p99.as_secs_f64() * 1e6,
        s.mean.as_secs_f64() * 1e6
    );
}
