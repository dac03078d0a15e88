//! Capture and restore over `tensor-wasm-exec`: what the CLI and the HTTP
//! gateway call.
//!
//! A function is snapshotted through its instrumented rewrite
//! ([`SnapshotModule`]), compiled by the same executor (and cached on disk
//! like any module). Each capture and each restore uses fresh stores from the
//! executor: one store per invocation, nothing shared across tenants.

use std::sync::Arc;

use tensor_wasm_exec::{CompiledFunction, Executor, InvokeContext, LiveInstance, TypedOutcome};

use crate::capture::{capture_state, restore_state};
use crate::error::SnapshotError;
use crate::instrument::{InstrumentedModule, instrument};
use crate::state::{EngineFingerprint, ModuleHash, Snapshot, SnapshotMeta};

/// A module instrumented for snapshots and compiled by an executor.
#[derive(Clone, Debug)]
pub struct SnapshotModule {
    instrumented: Arc<InstrumentedModule>,
    compiled: CompiledFunction,
}

impl SnapshotModule {
    /// Instruments and compiles `module` (Wasm binary or WAT text).
    pub fn prepare(executor: &Executor, module: &[u8]) -> Result<Self, SnapshotError> {
        let instrumented = instrument(module)?;
        let compiled = executor.compile(&instrumented.wasm)?;
        Ok(Self {
            instrumented: Arc::new(instrumented),
            compiled,
        })
    }

    /// BLAKE3 of the original module (what snapshots record).
    pub fn original(&self) -> ModuleHash {
        self.instrumented.original
    }

    /// The instrumented module and its state layout.
    pub fn instrumented(&self) -> &InstrumentedModule {
        &self.instrumented
    }

    /// The compiled instrumented module.
    pub fn compiled(&self) -> &CompiledFunction {
        &self.compiled
    }
}

/// What a restore insists on beyond the module identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Refuse snapshots taken by an engine with another fingerprint (off by
    /// default: the captured state is engine-independent).
    pub strict_engine: bool,
}

/// Instantiates `module`, calls `init_export` (no arguments) when given, and
/// captures the warmed instance.
pub async fn warm_and_capture(
    executor: &Executor,
    module: &SnapshotModule,
    init_export: Option<&str>,
    ctx: &InvokeContext,
    mut meta: SnapshotMeta,
) -> Result<Snapshot, SnapshotError> {
    let mut live = executor.instantiate(&module.compiled, ctx).await?;
    if let Some(init) = init_export {
        live.call_typed(init, &[]).await?;
        meta.init_export = Some(init.to_string());
    }
    if meta.writer.is_none() {
        meta.writer = Some(concat!("tensor-wasm v", env!("CARGO_PKG_VERSION")).to_string());
    }
    capture_live(executor, module, &mut live, ctx, meta).await
}

/// Captures an already-warmed instance of `module`.
pub async fn capture_live(
    executor: &Executor,
    module: &SnapshotModule,
    live: &mut LiveInstance,
    ctx: &InvokeContext,
    meta: SnapshotMeta,
) -> Result<Snapshot, SnapshotError> {
    let layout = &module.instrumented.layout;
    // A fresh instance is the baseline the memory diff is taken against
    // (cheap: copy-on-write). Modules with a start function diff against
    // zero instead, so need none.
    let mut baseline = if layout.has_start {
        None
    } else {
        Some(executor.instantiate(&module.compiled, ctx).await?)
    };
    let live_instance = live.instance();
    let base_instance = baseline.as_ref().map(LiveInstance::instance);
    let base = match (baseline.as_mut(), base_instance.as_ref()) {
        (Some(b), Some(i)) => Some((b.store_mut(), i)),
        _ => None,
    };
    let state = capture_state(live.store_mut(), &live_instance, base, layout)?;
    Ok(Snapshot {
        module: module.original(),
        engine: EngineFingerprint::of(executor.engine()),
        created_at_unix_ms: crate::now_unix_ms(),
        meta,
        state,
    })
}

/// A fresh instance of `module` with `snapshot` applied, ready to call.
pub async fn restore(
    executor: &Executor,
    module: &SnapshotModule,
    snapshot: &Snapshot,
    ctx: &InvokeContext,
    options: RestoreOptions,
) -> Result<LiveInstance, SnapshotError> {
    snapshot.ensure_module(module.original())?;
    if options.strict_engine {
        let this = EngineFingerprint::of(executor.engine());
        if this != snapshot.engine {
            return Err(SnapshotError::EngineMismatch {
                snapshot_engine: snapshot.engine.to_hex(),
                this_engine: this.to_hex(),
            });
        }
    }
    let mut live = executor.instantiate(&module.compiled, ctx).await?;
    let instance = live.instance();
    restore_state(
        live.store_mut(),
        &instance,
        &module.instrumented.layout,
        &snapshot.state,
    )?;
    Ok(live)
}

/// Restores `snapshot` and makes one typed call: the warm first call.
pub async fn restore_and_call(
    executor: &Executor,
    module: &SnapshotModule,
    snapshot: &Snapshot,
    export: &str,
    args: &[serde_json::Value],
    ctx: &InvokeContext,
) -> Result<TypedOutcome, SnapshotError> {
    let mut live = restore(executor, module, snapshot, ctx, RestoreOptions::default()).await?;
    Ok(live.call_typed(export, args).await?)
}

/// A snapshot made ready to start instances from, as cheaply as possible.
///
/// Preferably the snapshot is baked into its module ([`crate::warm::bake`]):
/// instances then start with the captured state through Wasmtime's
/// copy-on-write memory image, at the cost of a cold instantiation. Modules
/// that cannot be baked restore by writing the state into each fresh
/// instance instead.
#[derive(Clone, Debug)]
pub enum WarmStart {
    /// The snapshot baked into a compiled module.
    Baked {
        /// The compiled baked module.
        compiled: CompiledFunction,
        /// The snapshot's module identity.
        module: ModuleHash,
    },
    /// State written into every fresh instance.
    Applied {
        /// The instrumented module.
        module: SnapshotModule,
        /// The state to write.
        snapshot: Arc<Snapshot>,
    },
}

impl WarmStart {
    /// Checks `snapshot` belongs to `module` and prepares it (baking and
    /// compiling may take a while for large modules: call it off the
    /// request path, e.g. in `spawn_blocking`).
    pub fn prepare(
        executor: &Executor,
        module: &SnapshotModule,
        snapshot: Arc<Snapshot>,
    ) -> Result<Self, SnapshotError> {
        snapshot.ensure_module(module.original())?;
        match crate::warm::bake(&module.instrumented, &snapshot.state)? {
            Some(wasm) => Ok(Self::Baked {
                compiled: executor.compile(&wasm)?,
                module: module.original(),
            }),
            None => Ok(Self::Applied {
                module: module.clone(),
                snapshot,
            }),
        }
    }

    /// The compiled baked module, when there is one.
    pub fn baked_module(&self) -> Option<&CompiledFunction> {
        match self {
            Self::Baked { compiled, .. } => Some(compiled),
            Self::Applied { .. } => None,
        }
    }

    /// Whether instances start from a copy-on-write image of the snapshot.
    pub fn is_baked(&self) -> bool {
        matches!(self, Self::Baked { .. })
    }

    /// A fresh instance in the captured state.
    pub async fn instantiate(
        &self,
        executor: &Executor,
        ctx: &InvokeContext,
    ) -> Result<LiveInstance, SnapshotError> {
        match self {
            Self::Baked { compiled, .. } => Ok(executor.instantiate(compiled, ctx).await?),
            Self::Applied { module, snapshot } => {
                restore(executor, module, snapshot, ctx, RestoreOptions::default()).await
            }
        }
    }

    /// A fresh instance in the captured state, then one typed call.
    pub async fn call_typed(
        &self,
        executor: &Executor,
        export: &str,
        args: &[serde_json::Value],
        ctx: &InvokeContext,
    ) -> Result<TypedOutcome, SnapshotError> {
        match self {
            Self::Baked { compiled, .. } => {
                Ok(executor.call_typed(compiled, export, args, ctx).await?)
            }
            Self::Applied { .. } => {
                let mut live = self.instantiate(executor, ctx).await?;
                Ok(live.call_typed(export, args).await?)
            }
        }
    }
}
