//! The [`Executor`]: one Wasmtime `Engine` per process, modules compiled once,
//! one `Store` per invocation.
//!
//! # Why async Wasmtime
//!
//! Invocations run on the caller's tokio runtime through Wasmtime's async
//! API. The epoch ticker bumps the engine epoch every millisecond; at each
//! tick a running guest either yields to the executor (so a long guest never
//! starves other requests on the same worker) or, past its deadline, is
//! interrupted. Fibre stacks and instances come from the pooling allocator,
//! so an async call costs no `mmap`/`munmap` per invocation, which is what
//! made naive async gateways slow.
//!
//! # One deadline for everything a call does
//!
//! Epoch interruption only fires while Wasm code runs. A guest can also wait
//! in a host call — a WASI clock sleep, a GPU fence, a CPU-backend op — so
//! every await on a store (instantiate, call) is also raced against the
//! invocation's deadline (a `timeout_at` that arms its timer only once the
//! call has had to wait). When the deadline
//! wins, the call's future is dropped (Wasmtime unwinds the guest's fibre,
//! and a host call's future — a GPU op, say — with it), the store and its
//! host interfaces' per-store state are dropped with the [`LiveInstance`], and
//! the caller gets [`ExecError::DeadlineExceeded`]: whatever the guest was
//! doing, it ends at its deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use wasmtime::{
    Config, Engine, Instance, InstanceAllocationStrategy, InstancePre, Linker, Module,
    ModuleExport, PoolingAllocationConfig, Store, Trap, UpdateDeadline, Val,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;

use crate::cache::{CacheStats, ModuleCache};
use crate::host::{HostPlugin, HostSlot, StoreStates};
use crate::limiter::GuestLimiter;
use crate::output::BoundedOutput;
use crate::typed::{ExportSignature, TypedValue, parse_args};
use crate::{EngineConfig, ExecError, InvokeContext};

/// State owned by one `Store`: everything one invocation may touch.
///
/// A `Store` is the unit of isolation: it is created per invocation, owned by
/// exactly one tenant, and dropped (freeing its instance slot, memories and
/// any host resources) when the invocation ends — whether it returned,
/// trapped or timed out. Nothing in it is shared with another store.
pub struct HostState {
    wasi: Option<WasiP1Ctx>,
    limiter: GuestLimiter,
    tenant: Arc<str>,
    /// The host interfaces' per-store state (see [`crate::HostInterface`]).
    host: StoreStates,
    /// The tenant CPU slot this store holds between two epoch ticks; made on
    /// the first tick (calls shorter than a tick never allocate it) and
    /// released with the store.
    cpu_slot: Option<CpuSlot>,
}

/// Where a store's tenant CPU slot is kept: shared with the future that
/// queues for it at a tick, which has no access to the store.
type CpuSlot = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

impl HostState {
    fn wasi(&mut self) -> &mut WasiP1Ctx {
        // Typed calls get a WASI context with no stdio only if the guest
        // actually calls into WASI; building one eagerly costs a few µs.
        self.wasi
            .get_or_insert_with(|| WasiCtxBuilder::new().build_p1())
    }

    /// The tenant this store runs for.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The state `slot`'s host interface keeps in this store, made by
    /// [`crate::HostInterface::new_store_state`] on the first call and
    /// dropped with the store.
    ///
    /// # Panics
    ///
    /// If `slot` was not made by this store's engine (an interface passes on
    /// the slot it was linked with, nothing else), which no guest can cause.
    pub fn host_state_mut<S: Send + 'static>(&mut self, slot: HostSlot<S>) -> &mut S {
        self.host.get_or_make(slot, &self.tenant)
    }

    /// The state `slot`'s host interface keeps in this store, if the guest
    /// has called into that interface.
    pub fn host_state<S: Send + 'static>(&self, slot: HostSlot<S>) -> Option<&S> {
        self.host.get(slot)
    }
}

/// Input of a bytes (WASI command) call.
#[derive(Debug, Clone, Default)]
pub struct CommandInput {
    /// Export to call; `None` means `_start`.
    pub export: Option<String>,
    /// Bytes presented as the guest's stdin.
    pub stdin: Vec<u8>,
    /// `argv` after `argv[0]`.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
}

/// Result of a typed call.
#[derive(Debug, Clone)]
pub struct TypedOutcome {
    /// The export's results.
    pub results: Vec<TypedValue>,
    /// Wall time of instantiate + call.
    pub duration: Duration,
    /// Fuel consumed, when the engine meters fuel.
    pub fuel_used: Option<u64>,
}

/// Result of a bytes call.
#[derive(Debug, Clone)]
pub struct BytesOutcome {
    /// Everything the guest wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything the guest wrote to stderr (bounded).
    pub stderr: Vec<u8>,
    /// WASI exit code (0 when the export returned normally).
    pub exit_code: i32,
    /// Wall time of instantiate + call.
    pub duration: Duration,
    /// Fuel consumed, when the engine meters fuel.
    pub fuel_used: Option<u64>,
}

/// A compiled, validated, link-checked module. Cheap to clone.
#[derive(Clone)]
pub struct CompiledFunction {
    inner: Arc<CompiledInner>,
}

struct CompiledInner {
    module: Module,
    pre: InstancePre<HostState>,
    blake3_hex: String,
    exports: Vec<ExportSignature>,
    /// Pre-resolved handles of `exports`, same order: a call looks its
    /// export up by index instead of hashing the name.
    export_handles: Vec<ModuleExport>,
}

impl std::fmt::Debug for CompiledFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledFunction")
            .field("blake3", &self.inner.blake3_hex)
            .field("exports", &self.inner.exports)
            .finish()
    }
}

impl CompiledFunction {
    /// The Wasmtime module.
    pub fn module(&self) -> &wasmtime::Module {
        &self.inner.module
    }

    /// Lower-case hex BLAKE3 of the module's Wasm bytes.
    pub fn blake3_hex(&self) -> &str {
        &self.inner.blake3_hex
    }

    /// Exported functions with their signatures.
    pub fn exports(&self) -> &[ExportSignature] {
        &self.inner.exports
    }

    fn export(&self, name: &str) -> Result<&ExportSignature, ExecError> {
        self.export_with_handle(name).map(|(sig, _)| sig)
    }

    fn export_with_handle(
        &self,
        name: &str,
    ) -> Result<(&ExportSignature, &ModuleExport), ExecError> {
        let i = self
            .inner
            .exports
            .iter()
            .position(|e| e.name == name)
            .ok_or_else(|| ExecError::MissingExport {
                export: name.to_owned(),
                available: self.export_names(),
            })?;
        Ok((&self.inner.exports[i], &self.inner.export_handles[i]))
    }

    fn export_names(&self) -> String {
        if self.inner.exports.is_empty() {
            return "none".into();
        }
        self.inner
            .exports
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The execution engine. Cheap to clone; one per process.
#[derive(Clone)]
pub struct Executor {
    inner: Arc<ExecutorInner>,
}

struct ExecutorInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: ModuleCache,
    counters: crate::cache::Counters,
    compile_slots: crate::compile_limits::CompileSlots,
    /// `config.host_interfaces`, shared with every store (`None`: none).
    host_interfaces: Option<Arc<[HostPlugin]>>,
    config: EngineConfig,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("config", &self.inner.config)
            .finish()
    }
}

impl Executor {
    /// Builds the engine, its linker and the epoch ticker.
    pub fn new(config: EngineConfig) -> Result<Self, ExecError> {
        let mut pool = PoolingAllocationConfig::default();
        let slots = config.pool_total_instances.max(1);
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .total_component_instances(0)
            .max_memory_size(usize::try_from(config.pool_max_memory_bytes).unwrap_or(usize::MAX))
            .table_elements(100_000)
            // Keep the first pages of each slot mapped between uses: small
            // guests then reuse warm pages instead of faulting fresh ones.
            .linear_memory_keep_resident(64 << 10)
            .table_keep_resident(16 << 10)
            .async_stack_keep_resident(16 << 10);

        let mut wasm_config = Config::new();
        wasm_config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true)
            .consume_fuel(config.fuel_metering)
            .max_wasm_stack(512 << 10)
            .async_stack_size(2 << 20);
        let engine =
            Engine::new(&wasm_config).map_err(|e| ExecError::Internal(format!("engine: {e}")))?;

        let mut linker: Linker<HostState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, HostState::wasi)
            .map_err(|e| ExecError::Internal(format!("linking WASI: {e}")))?;
        for (index, interface) in config.host_interfaces.iter().enumerate() {
            interface.link(&mut linker, index).map_err(|e| {
                ExecError::Internal(format!(
                    "linking the {} host interface: {e}",
                    interface.name()
                ))
            })?;
        }
        let host_interfaces = (!config.host_interfaces.is_empty())
            .then(|| Arc::from(config.host_interfaces.as_slice()));

        spawn_epoch_ticker(&engine, config.epoch_tick);
        let cache = ModuleCache::new(
            &engine,
            config.cache_dir.clone(),
            config.cache_key.map(|k| k.0),
            config.cache_max_bytes,
        );
        Ok(Self {
            inner: Arc::new(ExecutorInner {
                engine,
                linker,
                cache,
                counters: Default::default(),
                compile_slots: crate::compile_limits::CompileSlots::new(
                    config.compile_limits.max_concurrent,
                ),
                host_interfaces,
                config,
            }),
        })
    }

    /// The shared Wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The configuration the executor was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Compile-cache counters since start-up.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.counters.snapshot()
    }

    /// Registers the compile-cache counters.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let c = &self.inner.counters;
        registry.register(
            "tensor_wasm_compile_cache_hits",
            "Modules loaded from the on-disk compile cache",
            c.hits.clone(),
        );
        registry.register(
            "tensor_wasm_compile_cache_misses",
            "Compile-cache lookups that found no usable entry",
            c.misses.clone(),
        );
        registry.register(
            "tensor_wasm_module_compiles",
            "Modules compiled by Cranelift",
            c.compiles.clone(),
        );
    }

    /// Removes `f`'s entry from the disk compile cache (for a module made for
    /// something now deleted, such as a baked snapshot). `f` itself stays
    /// usable; a later compile of the same bytes compiles afresh.
    pub fn forget_cached(&self, f: &CompiledFunction) {
        if let Ok(key) = blake3::Hash::from_hex(f.blake3_hex()) {
            self.inner.cache.remove(&key);
        }
    }

    /// Validates and compiles Wasm bytes (or WAT text), using the disk cache.
    pub fn compile(&self, bytes: &[u8]) -> Result<CompiledFunction, ExecError> {
        let wasm: std::borrow::Cow<'_, [u8]> = if bytes.starts_with(b"\0asm") {
            bytes.into()
        } else {
            wat::parse_bytes(bytes).map_err(|e| {
                ExecError::InvalidModule(if std::str::from_utf8(bytes).is_ok() {
                    format!("not valid WAT: {e}")
                } else {
                    "not a WebAssembly module (missing `\\0asm` magic) and not WAT text".into()
                })
            })?
        };
        let inner = &self.inner;
        let limits = &inner.config.compile_limits;
        limits.check(&wasm)?;
        let key = blake3::hash(&wasm);
        let module = match inner.cache.load(&inner.engine, &key, &inner.counters) {
            Some(m) => m,
            None => {
                let _slot = inner.compile_slots.acquire(limits.queue_timeout)?;
                let m = Module::new(&inner.engine, &wasm)
                    .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
                inner.counters.compiles.inc();
                inner.cache.store(&key, &m);
                m
            }
        };
        let pre = inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| ExecError::InvalidModule(format!("{e:#}")))?;
        let (exports, export_handles) = module
            .exports()
            .filter_map(|e| {
                let sig = ExportSignature::new(e.name(), e.ty().func()?);
                Some((sig, module.get_export_index(e.name())?))
            })
            .unzip();
        Ok(CompiledFunction {
            inner: Arc::new(CompiledInner {
                module,
                pre,
                blake3_hex: key.to_hex().to_string(),
                exports,
                export_handles,
            }),
        })
    }

    /// Instantiates `f` and calls a numeric export with JSON arguments.
    pub async fn call_typed(
        &self,
        f: &CompiledFunction,
        export: &str,
        args: &[serde_json::Value],
        ctx: &InvokeContext,
    ) -> Result<TypedOutcome, ExecError> {
        let (sig, handle) = f.export_with_handle(export)?;
        let params = parse_args(sig, args)?;
        let mut live = self.instantiate_with(f, ctx, None).await?;
        let func = live
            .instance()
            .get_module_export(&mut live.store, handle)
            .and_then(wasmtime::Extern::into_func)
            .ok_or_else(|| ExecError::Internal(format!("export `{export}` vanished")))?;
        live.call_parsed(func, sig, params).await
    }

    /// Instantiates `f` and runs it as a WASI command: `stdin` in, stdout out.
    pub async fn call_bytes(
        &self,
        f: &CompiledFunction,
        export: Option<&str>,
        stdin: Vec<u8>,
        ctx: &InvokeContext,
    ) -> Result<BytesOutcome, ExecError> {
        let input = CommandInput {
            export: export.map(str::to_owned),
            stdin,
            ..Default::default()
        };
        self.call_command(f, input, ctx).await
    }

    /// Like [`Executor::call_bytes`], with `argv` and environment.
    pub async fn call_command(
        &self,
        f: &CompiledFunction,
        input: CommandInput,
        ctx: &InvokeContext,
    ) -> Result<BytesOutcome, ExecError> {
        let export = input.export.as_deref().unwrap_or("_start");
        let sig = f.export(export)?;
        if !sig.params.is_empty() {
            return Err(ExecError::SignatureMismatch {
                signature: sig.to_string(),
                message: "a bytes call needs an export that takes no parameters".into(),
            });
        }
        let limits = &ctx.limits;
        let stdout = BoundedOutput::new(limits.max_output_bytes);
        let stderr = BoundedOutput::new(limits.max_stderr_bytes);
        let mut argv = vec![export.to_owned()];
        argv.extend(input.args);
        let wasi = WasiCtxBuilder::new()
            .stdin(MemoryInputPipe::new(input.stdin))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&argv)
            .envs(&input.env)
            .build_p1();
        let started = Instant::now();
        let mut live = self.instantiate_with(f, ctx, Some(wasi)).await?;
        let instance = live.instance();
        let func = instance
            .get_func(&mut live.store, export)
            .ok_or_else(|| ExecError::Internal(format!("export `{export}` vanished")))?;
        let mut results = vec![Val::I32(0); sig.results.len()];
        let deadline = live.deadline;
        let call = match within(
            deadline,
            func.call_async(&mut live.store, &[], &mut results),
        )
        .await
        {
            Ok(call) => call,
            Err(expired) => return Err(live.expire(expired)),
        };
        if stdout.overflowed() {
            return Err(ExecError::OutputTooLarge {
                limit_bytes: limits.max_output_bytes,
            });
        }
        let exit_code = match call {
            Ok(()) => match results.first() {
                Some(Val::I32(code)) => *code,
                _ => 0,
            },
            Err(e) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(live.classify(e)),
            },
        };
        let fuel_used = live.fuel_used();
        drop(live);
        Ok(BytesOutcome {
            stdout: stdout.take(),
            stderr: stderr.take(),
            exit_code,
            duration: started.elapsed(),
            fuel_used,
        })
    }

    /// Instantiates `f` without calling any export (used by snapshots).
    pub async fn instantiate(
        &self,
        f: &CompiledFunction,
        ctx: &InvokeContext,
    ) -> Result<LiveInstance, ExecError> {
        self.instantiate_with(f, ctx, None).await
    }

    async fn instantiate_with(
        &self,
        f: &CompiledFunction,
        ctx: &InvokeContext,
        wasi: Option<WasiP1Ctx>,
    ) -> Result<LiveInstance, ExecError> {
        let started = Instant::now();
        let limits = ctx.limits.clone();
        let state = HostState {
            wasi,
            limiter: GuestLimiter::new(&limits),
            tenant: ctx.tenant.clone(),
            host: StoreStates::new(self.inner.host_interfaces.clone()),
            cpu_slot: None,
        };
        // One store per invocation: the isolation boundary (see `HostState`).
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        let fuel_start = if self.inner.config.fuel_metering {
            let budget = limits.fuel.unwrap_or(u64::MAX);
            store
                .set_fuel(budget)
                .map_err(|e| ExecError::Internal(format!("setting fuel: {e}")))?;
            Some(budget)
        } else {
            None
        };
        let deadline = started + limits.timeout;
        store.set_epoch_deadline(1);
        let gate = ctx.cpu_slots.clone();
        store.epoch_deadline_callback(move |mut cx| {
            if Instant::now() >= deadline {
                return Ok(UpdateDeadline::Interrupt);
            }
            let Some(gate) = &gate else {
                return Ok(UpdateDeadline::Yield(1));
            };
            // Give the tenant's CPU slot up and queue for it again behind
            // the tenant's other running guests (the semaphore is FIFO).
            let held = cx
                .data_mut()
                .cpu_slot
                .get_or_insert_with(Arc::default)
                .clone();
            drop(held.lock().unwrap_or_else(|p| p.into_inner()).take());
            let gate = gate.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    if let Ok(permit) = gate.acquire_owned().await {
                        *held.lock().unwrap_or_else(|p| p.into_inner()) = Some(permit);
                    }
                    // The guest that released the slot woke this one into
                    // the worker's LIFO slot, ahead of every other ready
                    // task: go to the back of the run queue before running
                    // on, or two spinning guests hand the core back and forth
                    // past other tenants' calls.
                    tokio::task::yield_now().await;
                }),
            ))
        });
        let mut live = LiveInstance {
            store,
            instance: None,
            started,
            deadline,
            expired: false,
            fuel_start,
            limits,
        };
        match within(deadline, f.inner.pre.instantiate_async(&mut live.store)).await {
            Ok(Ok(instance)) => {
                live.instance = Some(instance);
                Ok(live)
            }
            Ok(Err(e)) => Err(live.classify(e)),
            Err(expired) => Err(live.expire(expired)),
        }
    }
}

/// An instantiated module with its own `Store` (one tenant, one invocation).
pub struct LiveInstance {
    store: Store<HostState>,
    instance: Option<Instance>,
    started: Instant,
    /// When this invocation ends, wherever it is (see the module docs).
    deadline: Instant,
    /// Set once a call was cut off at the deadline: the store may hold a
    /// half-run guest, so nothing more runs in it.
    expired: bool,
    fuel_start: Option<u64>,
    limits: crate::Limits,
}

/// The deadline passed while a future on the store was pending.
struct Expired;

/// Races `fut` against `deadline`.
fn within<F: Future>(deadline: Instant, fut: F) -> Within<F> {
    Within {
        fut,
        deadline,
        timer: None,
    }
}

pin_project_lite::pin_project! {
    /// `tokio::time::timeout_at`, except that the timer is only created once
    /// the inner future has returned `Pending`: most typed calls finish on
    /// their first poll and so never touch the timer wheel (the hot path).
    struct Within<F> {
        #[pin]
        fut: F,
        deadline: Instant,
        timer: Option<Pin<Box<tokio::time::Sleep>>>,
    }
}

impl<F: Future> Future for Within<F> {
    type Output = Result<F::Output, Expired>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Ok(v));
        }
        let deadline = *this.deadline;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Expired)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl LiveInstance {
    /// The store (for reading/writing memories and globals).
    pub fn store_mut(&mut self) -> &mut Store<HostState> {
        &mut self.store
    }

    /// The instance.
    pub fn instance(&self) -> Instance {
        // Only `instantiate_with` builds a `LiveInstance`, and it returns an
        // error instead when instantiation fails.
        self.instance
            .expect("LiveInstance is only handed out after instantiation succeeded")
    }

    /// Calls a numeric export with JSON arguments.
    pub async fn call_typed(
        &mut self,
        export: &str,
        args: &[serde_json::Value],
    ) -> Result<TypedOutcome, ExecError> {
        let instance = self.instance();
        let func =
            instance
                .get_func(&mut self.store, export)
                .ok_or_else(|| ExecError::MissingExport {
                    export: export.to_owned(),
                    available: "see the module's exports".into(),
                })?;
        let ty = func.ty(&self.store);
        let sig = ExportSignature::new(export, &ty);
        let params = parse_args(&sig, args)?;
        self.call_parsed(func, &sig, params).await
    }

    async fn call_parsed(
        &mut self,
        func: wasmtime::Func,
        sig: &ExportSignature,
        params: Vec<TypedValue>,
    ) -> Result<TypedOutcome, ExecError> {
        if self.expired {
            return Err(self.deadline_error());
        }
        if let Some(bad) = sig.results.iter().find(|r| !is_numeric(r)) {
            return Err(ExecError::SignatureMismatch {
                signature: sig.to_string(),
                message: format!("result type {bad} cannot be returned by a typed call"),
            });
        }
        let vals: Vec<Val> = params.into_iter().map(TypedValue::into_val).collect();
        let mut results = vec![Val::I32(0); sig.results.len()];
        match within(
            self.deadline,
            func.call_async(&mut self.store, &vals, &mut results),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(self.classify(e)),
            Err(expired) => return Err(self.expire(expired)),
        }
        let results = results.iter().filter_map(TypedValue::from_val).collect();
        Ok(TypedOutcome {
            results,
            duration: self.started.elapsed(),
            fuel_used: self.fuel_used(),
        })
    }

    fn fuel_used(&self) -> Option<u64> {
        let start = self.fuel_start?;
        Some(start.saturating_sub(self.store.get_fuel().unwrap_or(0)))
    }

    fn deadline_error(&self) -> ExecError {
        ExecError::DeadlineExceeded {
            timeout: self.limits.timeout,
        }
    }

    /// The deadline cut a pending call off: the store is not used again.
    fn expire(&mut self, _: Expired) -> ExecError {
        self.expired = true;
        self.deadline_error()
    }

    /// Turns a Wasmtime error into the invocation's typed error.
    fn classify(&self, err: wasmtime::Error) -> ExecError {
        if self.store.data().limiter.memory_denied() {
            return ExecError::MemoryLimitExceeded {
                limit_bytes: self.limits.max_memory_bytes,
            };
        }
        if let Some(trap) = err.downcast_ref::<Trap>() {
            return match trap {
                Trap::Interrupt => ExecError::DeadlineExceeded {
                    timeout: self.limits.timeout,
                },
                Trap::OutOfFuel => ExecError::FuelExhausted {
                    fuel: self.limits.fuel.unwrap_or(u64::MAX),
                },
                other => ExecError::Trap {
                    message: other.to_string(),
                },
            };
        }
        if err
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
        {
            return ExecError::Busy;
        }
        let message = format!("{err:#}");
        if self.store.data().limiter.instance_denied() {
            return ExecError::InvalidModule(message);
        }
        ExecError::Trap { message }
    }
}

fn is_numeric(t: &str) -> bool {
    matches!(t, "i32" | "i64" | "f32" | "f64")
}

fn spawn_epoch_ticker(engine: &Engine, tick: Duration) {
    let weak = engine.weak();
    let tick = tick.max(Duration::from_micros(100));
    let spawned = std::thread::Builder::new()
        .name("tensor-wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(tick);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the epoch ticker; deadlines will not fire");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn store_state_can_move_between_threads() {
        fn is_send<T: Send>() {}
        is_send::<super::HostState>();
        is_send::<super::LiveInstance>();
    }
}
