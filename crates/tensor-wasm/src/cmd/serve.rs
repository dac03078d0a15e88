//! `tensor-wasm serve`: flags and environment → [`ApiConfig`] → gateway.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use tensor_wasm_api::auth::TokenList;
use tensor_wasm_api::config::{DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONCURRENT_INVOCATIONS};
use tensor_wasm_api::telemetry::{LogFormat, TelemetryConfig};
use tensor_wasm_api::{ApiConfig, AuditTarget, Gateway, RateLimitConfig, TenantLimits};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "TENSOR_WASM_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,

    /// Data directory [default: /var/lib/tensor-wasm when writable, else ./tensor-wasm-data].
    #[arg(long, env = "TENSOR_WASM_DATA_DIR")]
    data_dir: Option<PathBuf>,

    /// Function store backend: `redb` (embedded, `functions.redb` in the data
    /// dir). A PostgreSQL URL (`postgres://…`) for replicas will go here.
    // Parsed by `StoreChoice` in `main`, not by clap: clap would echo the
    // value, and a database URL may hold a password.
    #[arg(
        long,
        env = "TENSOR_WASM_STORE",
        default_value = "redb",
        hide_env_values = true
    )]
    store: String,

    /// GPU backend for guests: auto, cuda, cpu or off.
    #[arg(long, env = "TENSOR_WASM_GPU", default_value = "auto",
          value_parser = ["auto", "cuda", "cpu", "off"])]
    pub gpu: String,

    /// Per-tenant cap on GPU device memory held by guests at once, e.g. `2GiB`.
    #[arg(long, env = "TENSOR_WASM_GPU_TENANT_MAX_MEMORY", default_value = "1GiB",
          value_parser = super::units::parse_bytes)]
    gpu_tenant_max_memory: u64,

    /// Per-tenant cap on GPU launches in flight at once.
    #[arg(
        long,
        env = "TENSOR_WASM_GPU_TENANT_MAX_LAUNCHES",
        default_value_t = 64
    )]
    gpu_tenant_max_launches: u32,

    /// Log filter directives (tracing EnvFilter syntax), e.g. `info,tensor_wasm_api=debug`.
    #[arg(long, env = "TENSOR_WASM_LOG")]
    log: Option<String>,

    /// Log line format: text or json.
    #[arg(long, env = "TENSOR_WASM_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,

    /// Audit sink: `stdout` or `file:/path`.
    #[arg(long, env = "TENSOR_WASM_API_AUDIT_LOG", default_value = "stdout")]
    audit_log: AuditTarget,

    /// With 1, state-changing calls are refused with 503 while audit records
    /// cannot be written, rather than happen unaudited.
    /// (`1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`).
    #[arg(long, env = "TENSOR_WASM_API_AUDIT_REQUIRED",
          value_parser = clap::builder::BoolishValueParser::new())]
    audit_required: bool,

    /// Proxies (addresses or CIDR ranges, comma-separated) whose
    /// X-Forwarded-For names the client; unset: the header is ignored.
    #[arg(long, env = "TENSOR_WASM_API_TRUSTED_PROXIES", default_value = "")]
    trusted_proxies: String,

    /// Sustained requests per second per token (unset: no rate limit).
    #[arg(long, env = "TENSOR_WASM_API_RATE_LIMIT_RPS")]
    rate_limit_rps: Option<NonZeroU32>,

    /// Burst allowance per token [default: the RPS value].
    #[arg(long, env = "TENSOR_WASM_API_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<NonZeroU32>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "TENSOR_WASM_API_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: usize,

    /// Open connections at most; past it a new connection gets a canned 503 and is closed.
    #[arg(long, env = "TENSOR_WASM_API_MAX_CONNECTIONS",
          default_value_t = tensor_wasm_api::conn::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,

    /// Open connections from one client address (IPv6: one /64) at most;
    /// peers in TENSOR_WASM_API_TRUSTED_PROXIES are not capped.
    #[arg(long, env = "TENSOR_WASM_API_MAX_CONNECTIONS_PER_CLIENT",
          default_value_t = tensor_wasm_api::conn::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    max_connections_per_client: usize,

    /// Milliseconds a client has to send a whole request head (from connect,
    /// or from the first byte of a later request on a kept-alive connection).
    #[arg(
        long,
        env = "TENSOR_WASM_API_HEADER_READ_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    header_read_timeout_ms: u64,

    /// Milliseconds a kept-alive connection may sit with nothing in flight and no byte moving.
    #[arg(
        long,
        env = "TENSOR_WASM_API_IDLE_TIMEOUT_MS",
        default_value_t = 75_000
    )]
    idle_timeout_ms: u64,

    /// Milliseconds a client has to send a whole request body; slower is answered 408.
    #[arg(
        long,
        env = "TENSOR_WASM_API_BODY_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    body_timeout_ms: u64,

    /// Failed authentications per second allowed per client address; past
    /// the burst they are answered 429 and not audited (0: unlimited).
    #[arg(
        long,
        env = "TENSOR_WASM_API_UNAUTH_RATE_LIMIT_RPS",
        default_value_t = 5
    )]
    unauth_rate_limit_rps: u32,

    /// Burst of failed authentications allowed per client address.
    #[arg(
        long,
        env = "TENSOR_WASM_API_UNAUTH_RATE_LIMIT_BURST",
        default_value_t = 20
    )]
    unauth_rate_limit_burst: u32,

    /// Most functions a deployed module may define; more are refused (400 module_too_complex).
    #[arg(
        long,
        env = "TENSOR_WASM_API_MAX_MODULE_FUNCTIONS",
        default_value_t = 50_000
    )]
    max_module_functions: u32,

    /// Most locals one function of a deployed module may declare.
    #[arg(
        long,
        env = "TENSOR_WASM_API_MAX_FUNCTION_LOCALS",
        default_value_t = 10_000
    )]
    max_function_locals: u32,

    /// Largest function body of a deployed module, in bytes.
    #[arg(long, env = "TENSOR_WASM_API_MAX_FUNCTION_BODY_BYTES", default_value_t = 1 << 20)]
    max_function_body_bytes: u32,

    /// Compiles (deploys, snapshot preparation) running at once; more wait
    /// up to 30 s, then 503 busy [default: half the cores, at least 1].
    #[arg(long, env = "TENSOR_WASM_API_MAX_CONCURRENT_COMPILES")]
    max_concurrent_compiles: Option<usize>,

    /// Invocations allowed to run at once; more are answered 503 + Retry-After.
    #[arg(long, env = "TENSOR_WASM_API_MAX_CONCURRENT_INVOCATIONS",
          default_value_t = DEFAULT_MAX_CONCURRENT_INVOCATIONS)]
    max_concurrent_invocations: usize,

    /// One tenant's invocations allowed to run at once; more are answered
    /// 429 + Retry-After [default: a quarter of --max-concurrent-invocations].
    #[arg(long, env = "TENSOR_WASM_API_TENANT_MAX_CONCURRENT_INVOCATIONS")]
    tenant_max_concurrent_invocations: Option<usize>,

    /// How many of one tenant's guests may run Wasm at once past their first
    /// epoch tick (the rest wait their turn at each tick) [default: half the
    /// machine's cores, at least 1].
    #[arg(long, env = "TENSOR_WASM_API_TENANT_CPU_SLOTS")]
    tenant_cpu_slots: Option<usize>,

    /// Most memory the running invocations' limits may add up to, e.g.
    /// `16GiB`; past it 503 + Retry-After [default: the machine's memory].
    #[arg(long, env = "TENSOR_WASM_API_MEMORY_BUDGET_BYTES",
          value_parser = super::units::parse_bytes)]
    memory_budget: Option<u64>,

    /// Longest `limits.timeout_ms` a function may ask for unless its
    /// tenant's limits entry sets its own.
    #[arg(long, env = "TENSOR_WASM_API_MAX_TIMEOUT_MS",
          default_value_t = tensor_wasm_api::config::DEFAULT_CEILING_TIMEOUT_MS)]
    max_timeout_ms: u64,

    /// Largest `limits.max_memory_bytes` a function may ask for unless its
    /// tenant's limits entry sets its own, e.g. `512MiB`.
    #[arg(long, env = "TENSOR_WASM_API_MAX_MEMORY_BYTES", default_value = "256MiB",
          value_parser = super::units::parse_bytes)]
    max_memory: u64,

    /// JSON file of per-tenant limit overrides (and ceilings), e.g.
    /// `{"free-tier": {"timeout_ms": 500, "max_memory_bytes": 33554432}}`; read at start-up.
    #[arg(long, env = "TENSOR_WASM_TENANT_LIMITS")]
    tenant_limits: Option<PathBuf>,

    /// OTLP/HTTP collector base URL; spans are exported when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,

    /// Milliseconds start-up spends compiling stored functions before it
    /// listens; the rest compile in the background (/readyz answers 503
    /// with the progress until they are done).
    #[arg(
        long,
        env = "TENSOR_WASM_STARTUP_LOAD_BUDGET_MS",
        default_value_t = 5000
    )]
    startup_load_budget_ms: u64,

    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "TENSOR_WASM_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    shutdown_grace_secs: u64,
}

pub fn main(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let store: tensor_wasm_store::StoreChoice =
        args.store.parse().context("--store / TENSOR_WASM_STORE")?;
    let _telemetry = tensor_wasm_api::telemetry::init(&TelemetryConfig {
        filter: args.log.clone(),
        format: args.log_format,
        otlp_endpoint: args.otlp_endpoint.clone(),
    })?;
    let otlp_tracing = _telemetry.otlp_enabled();

    // Tokens come from the environment only: a flag would show them in `ps`.
    let tokens = TokenList::parse(&std::env::var("TENSOR_WASM_API_TOKENS").unwrap_or_default())?;
    let data_dir = super::resolve_data_dir(args.data_dir);

    let mut config = ApiConfig::new(&data_dir);
    config.tokens = tokens;
    config.audit = args.audit_log;
    config.audit_required = args.audit_required;
    config.trusted_proxies = tensor_wasm_api::TrustedProxies::parse(&args.trusted_proxies)
        .map_err(anyhow::Error::msg)?;
    config.rate_limit = args
        .rate_limit_rps
        .map(|rps| RateLimitConfig::new(rps, args.rate_limit_burst));
    config.max_body_bytes = args.max_body_bytes;
    config.connections = tensor_wasm_api::ConnectionLimits {
        max_connections: positive(args.max_connections, "TENSOR_WASM_API_MAX_CONNECTIONS")?,
        max_connections_per_client: positive(
            args.max_connections_per_client,
            "TENSOR_WASM_API_MAX_CONNECTIONS_PER_CLIENT",
        )?,
        header_read_timeout: millis(
            args.header_read_timeout_ms,
            "TENSOR_WASM_API_HEADER_READ_TIMEOUT_MS",
        )?,
        idle_timeout: millis(args.idle_timeout_ms, "TENSOR_WASM_API_IDLE_TIMEOUT_MS")?,
        body_timeout: millis(args.body_timeout_ms, "TENSOR_WASM_API_BODY_TIMEOUT_MS")?,
    };
    let compile = &mut config.engine.compile_limits;
    compile.max_functions = args.max_module_functions;
    compile.max_locals_per_function = args.max_function_locals;
    compile.max_function_body_bytes = args.max_function_body_bytes;
    if let Some(n) = args.max_concurrent_compiles {
        compile.max_concurrent = positive(n, "TENSOR_WASM_API_MAX_CONCURRENT_COMPILES")?;
    }
    config.unauthenticated_rate_limit = NonZeroU32::new(args.unauth_rate_limit_rps)
        .map(|rps| RateLimitConfig::new(rps, NonZeroU32::new(args.unauth_rate_limit_burst)));
    config.max_concurrent_invocations = args.max_concurrent_invocations;
    config.tenant_max_concurrent_invocations = args.tenant_max_concurrent_invocations;
    config.memory_budget_bytes = args.memory_budget;
    config.tenant_cpu_slots = args.tenant_cpu_slots;
    config.ceiling.timeout_ms = Some(args.max_timeout_ms);
    config.ceiling.max_memory_bytes = Some(args.max_memory);
    if let Some(path) = &args.tenant_limits {
        config.tenant_limits = TenantLimits::load(path)?;
        tracing::info!(
            tenants = config.tenant_limits.len(),
            file = %path.display(),
            "per-tenant limits loaded"
        );
    }
    config.otlp_tracing = otlp_tracing;
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace_secs);
    config.startup_load_budget = Duration::from_millis(args.startup_load_budget_ms);
    // Nothing may be written into a half-restored data dir (the GPU runtime
    // below creates its cache key there).
    tensor_wasm_store::backup::check_no_interrupted_restore(&data_dir)?;
    let data = tensor_wasm_fs::DataDir::new(&data_dir);
    // GPU: `args.gpu` (auto|cuda|cpu|off) selects the runtime handed over in `config.gpu`.
    config.gpu = match args.gpu.as_str() {
        "off" => None,
        choice => super::gpu_runtime(
            choice,
            Some(data.kernel_cache()),
            tensor_wasm_gpu::GpuQuotas {
                max_device_memory_bytes_per_tenant: args.gpu_tenant_max_memory,
                max_concurrent_launches_per_tenant: args.gpu_tenant_max_launches,
            },
            Some(tensor_wasm_gpu::CacheKey(
                data.load_or_create_key(tensor_wasm_fs::Secret::CacheKey)
                    .with_context(|| format!("data directory {}", data_dir.display()))?,
            )),
        )?,
    };
    tracing::debug!(?config, listen = %args.listen, "configuration");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tensor-wasm")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        // The binary picks the store backend; the gateway only sees the trait.
        let store = store
            .open(&data_dir)
            .await
            .map_err(tensor_wasm_api::StartupError::from)
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        let gateway = Gateway::with_store(config, store)
            .await
            .with_context(|| format!("opening data directory {}", data_dir.display()))?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (set --listen / TENSOR_WASM_LISTEN)",
                    args.listen
                )
            })?;
        tracing::info!(
            listen = %args.listen,
            data_dir = %data_dir.display(),
            version = tensor_wasm_api::VERSION,
            "tensor-wasm serving"
        );
        gateway
            .serve(listener, tensor_wasm_api::shutdown_signal())
            .await?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// A count that must be at least 1.
fn positive(value: usize, name: &str) -> anyhow::Result<usize> {
    anyhow::ensure!(value > 0, "{name} must be at least 1");
    Ok(value)
}

/// A timeout in milliseconds that must be at least 1.
fn millis(value: u64, name: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(value > 0, "{name} must be at least 1 (milliseconds)");
    Ok(Duration::from_millis(value))
}
