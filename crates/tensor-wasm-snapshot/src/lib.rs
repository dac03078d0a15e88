//! Snapshots of warmed instances: capture, restore, and the `*.tensor-wasm`
//! file format.
//!
//! A snapshot records a Wasm instance after its (possibly expensive)
//! initialisation — every linear memory and every mutable global — together
//! with the identity of the module it came from, so that the next first call
//! (after a restart, a rollback or a scale-out) starts warm.
//!
//! # Pieces
//!
//! - [`instrument`]: rewrites a module so all of its state is exported under
//!   reserved names (`__tw_snapshot_memory_N`, `__tw_snapshot_global_N`).
//! - [`capture`]: reads that state out of a live instance (diffing memories
//!   against a fresh instance) and writes it into a fresh one.
//! - [`format`]: the on-disk format (`FORMAT.md`): fixed header, JSON
//!   metadata, zstd-compressed postcard body, optional ed25519 signature,
//!   BLAKE3 checksum over the whole file.
//! - [`dir`]: atomic writes and the `<data>/snapshots/` directory.
//! - [`warm`]: bakes a snapshot into its module so instances start from a
//!   copy-on-write image of the captured memory (the fast restore path).
//! - [`live`]: the same operations over `tensor-wasm-exec`'s executor.
//!
//! # Why instrumentation rather than refusing
//!
//! Wasmtime's public API reaches only *exported* memories and globals, and
//! compilers routinely keep the stack pointer (and other runtime state) in a
//! non-exported mutable global. Refusing such modules would refuse nearly all
//! of them, and snapshotting them without that global would restore a wrong
//! stack pointer. So every module is snapshotted through its instrumented
//! rewrite, which differs from the original only by added exports; the
//! identity recorded is the BLAKE3 of the *original* bytes.
//!
//! # What is not captured, and what happens to it
//!
//! - **Tables** are re-created from the module's element segments. Modules
//!   whose code can mutate tables (`table.set/grow/fill/copy/init`,
//!   `elem.drop`) are refused rather than restored wrong.
//! - **Host resources** — GPU buffers, kernels and streams, WASI file
//!   descriptors, stdin/stdout/stderr, environment and clocks — belong to the
//!   host side of a store, not to the instance. A restored instance gets a
//!   fresh host context for the invocation; handles to GPU buffers kept in
//!   guest memory are then stale and the GPU interface rejects them as unknown
//!   handles. Initialise pure data in the init export, and acquire host
//!   resources per call. Bytes a guest buffered in its own memory but never
//!   flushed are part of memory, and are replayed by every restore.
//! - **Dropped passive data segments** (`data.drop`) are intact again after a
//!   restore; a later `memory.init` from one succeeds where the live instance
//!   would have trapped.
//! - **Shared memories** (threads) and mutable **reference-typed globals**
//!   are refused.
//!
//! # Invariant
//!
//! A file that is truncated, altered, foreign, too new or wrongly signed is
//! never restored: every such case is a distinct [`SnapshotError`] raised
//! before the body is used, and writes are atomic so a killed writer leaves no
//! readable-but-wrong file.

pub mod capture;
pub mod dir;
pub mod error;
pub mod format;
pub mod instrument;
pub mod live;
pub mod state;
pub mod warm;

pub use dir::SnapshotDir;
/// The ed25519 key types snapshots are signed and verified with.
pub use ed25519_dalek::{SigningKey, VerifyingKey};
pub use error::SnapshotError;
pub use format::{FORMAT_VERSION, OLDEST_READABLE_VERSION, SnapshotHeader, VerifyPolicy};
pub use instrument::{InstrumentedModule, StateLayout, instrument};
pub use live::{
    RestoreOptions, SnapshotModule, WarmStart, restore, restore_and_call, warm_and_capture,
};
pub use state::{
    EngineFingerprint, GlobalImage, GlobalValue, InstanceState, MemoryImage, MemorySegment,
    ModuleHash, Snapshot, SnapshotMeta,
};

/// Current time in milliseconds since the Unix epoch.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
