//! Prometheus metrics of GPU dispatch. Cheap to clone (atomics behind `Arc`s);
//! the runtime owns one set and registers clones into a caller's registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DispatchLabels {
    pub op: &'static str,
    pub backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DirectionLabels {
    pub direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct BackendInfoLabels {
    pub backend: &'static str,
    pub device: String,
}

/// Bucket bounds in seconds: 1 µs (a no-op host call) to 5 s (a large
/// matmul). 0.01, 0.1 and 0.25 are exact bounds because the SLO alert
/// thresholds (`deploy/prometheus/alerts.yml`) sit on them.
const DISPATCH_BUCKETS: [f64; 16] = [
    1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.1, 0.25, 1.0,
    5.0,
];

fn dispatch_histogram() -> Histogram {
    Histogram::new(DISPATCH_BUCKETS)
}

/// The metric families of one runtime.
#[derive(Clone)]
pub(crate) struct GpuMetrics {
    pub dispatch: Family<DispatchLabels, Histogram, fn() -> Histogram>,
    pub bytes: Family<DirectionLabels, Counter>,
    pub memory: Family<TenantLabels, Gauge>,
    pub kernel_cache: Family<ResultLabels, Counter>,
    pub info: Family<BackendInfoLabels, Gauge>,
    pub cancelled: Counter,
    pub backend: &'static str,
}

impl GpuMetrics {
    pub fn new(backend: &'static str, device: String) -> Self {
        let m = GpuMetrics {
            dispatch: Family::new_with_constructor(dispatch_histogram),
            bytes: Family::default(),
            memory: Family::default(),
            kernel_cache: Family::default(),
            info: Family::default(),
            cancelled: Counter::default(),
            backend,
        };
        m.info
            .get_or_create(&BackendInfoLabels { backend, device })
            .set(1);
        m
    }

    pub fn observe_dispatch(&self, op: &'static str, elapsed: Duration) {
        self.dispatch
            .get_or_create(&DispatchLabels {
                op,
                backend: self.backend,
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn add_bytes(&self, direction: &'static str, bytes: u64) {
        self.bytes
            .get_or_create(&DirectionLabels { direction })
            .inc_by(bytes);
    }

    pub fn set_memory(&self, tenant: &str, bytes: u64) {
        self.memory
            .get_or_create(&TenantLabels {
                tenant: tenant.to_string(),
            })
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn kernel_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.kernel_cache
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts an op stopped part-way because its invocation ended.
    pub fn op_cancelled(&self) {
        self.cancelled.inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tensor_wasm_gpu_ops_cancelled",
            "Built-in ops stopped part-way because their invocation ended (deadline)",
            self.cancelled.clone(),
        );
        registry.register(
            "tensor_wasm_gpu_dispatch_duration_seconds",
            "Time spent in one GPU host call, by op and backend",
            self.dispatch.clone(),
        );
        registry.register(
            "tensor_wasm_gpu_bytes_transferred",
            "Bytes copied between guest memory and device buffers (h2d, d2h)",
            self.bytes.clone(),
        );
        registry.register(
            "tensor_wasm_gpu_memory_in_use_bytes",
            "Device memory held by each tenant's live buffers",
            self.memory.clone(),
        );
        registry.register(
            "tensor_wasm_gpu_kernel_cache",
            "PTX kernel cache lookups (hit, miss)",
            self.kernel_cache.clone(),
        );
        registry.register(
            "tensor_wasm_gpu_backend_info",
            "The GPU backend in use (constant 1)",
            self.info.clone(),
        );
    }
}
