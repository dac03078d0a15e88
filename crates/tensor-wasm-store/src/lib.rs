//! Durable function registry.
//!
//! The gateway keeps every deployed function (its metadata and its Wasm
//! bytes) behind the async [`FunctionStore`] trait so that a single node can
//! use an embedded database while a fleet can share one (PostgreSQL, later).
//! The binary picks the backend ([`StoreChoice`]) and hands the gateway an
//! `Arc<dyn FunctionStore>`; nothing else names a backend.
//!
//! Invariant: a function is either fully present (record *and* bytes) or
//! absent; no reader ever observes a half-written deploy.
//!
//! What is here:
//! - [`FunctionStore`]: the contract, including [`export`](FunctionStore::export)
//!   and [`import`](FunctionStore::import) of the whole store as one byte
//!   stream ([`EXPORT_FORMAT`]), which is how backups copy and restore it;
//! - [`RedbStore`]: the embedded store, one redb file `functions.redb` in the
//!   data dir, carrying a schema version ([`schema`]);
//! - [`MemoryStore`]: the same contract in memory, for other crates' tests;
//! - [`StoreChoice`]: the backends the binary can open, from `--store`;
//! - [`backup`]: consistent copies of a data dir (store, snapshots, audit
//!   key) with a checksummed manifest, and their restore.
//!
//! What is not: caching, id generation, authorisation. The gateway decides
//! who may see a record; the store only filters by tenant when asked.

use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

pub mod backup;
mod export;
mod memory;
mod redb_store;
pub mod schema;
mod select;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use memory::MemoryStore;
pub use redb_store::{RedbStore, STORE_FILE_NAME};
pub use schema::{MIN_READER_VERSION, SCHEMA_VERSION, SchemaInfo};
pub use select::{StoreChoice, UnknownStore};

/// Opaque, unguessable function identifier (e.g. `fn_3k9…`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FunctionId(pub String);

impl std::fmt::Display for FunctionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-function limit overrides; `None` means "use the tenant/server default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionLimits {
    /// Wall-clock deadline per invocation, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Linear-memory cap per invocation, in bytes.
    pub max_memory_bytes: Option<u64>,
    /// Fuel per invocation.
    pub fuel: Option<u64>,
    /// Cap on captured stdout bytes (bytes calls).
    pub max_output_bytes: Option<u64>,
}

/// Metadata of one deployed function (the Wasm bytes are stored beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The function's id, unique across tenants.
    pub id: FunctionId,
    /// The tenant that owns the function.
    pub tenant: String,
    /// Human-readable name given at deploy time (not unique).
    pub name: String,
    /// Lower-case hex BLAKE3 of the Wasm bytes.
    pub blake3: String,
    /// Length of the Wasm bytes.
    pub size_bytes: u64,
    /// RFC 3339 creation time (UTC).
    pub created_at: String,
    /// Per-function limit overrides.
    #[serde(default)]
    pub limits: FunctionLimits,
}

/// Errors a caller of the store can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A function with this id already exists.
    #[error("function {0} already exists")]
    AlreadyExists(FunctionId),
    /// The on-disk store was written by a newer schema than this binary reads.
    #[error(
        "store schema version {found} is newer than this binary supports (reads up to {supported}); \
         run the release that wrote it or restore a backup taken by this release"
    )]
    SchemaTooNew {
        /// Schema version stored in the file.
        found: u32,
        /// Newest schema version this binary reads.
        supported: u32,
    },
    /// The store is unreadable or corrupt.
    #[error("store corrupt: {0}")]
    Corrupt(String),
    /// Underlying database or I/O failure.
    #[error("store backend: {0}")]
    Backend(String),
    /// An earlier write failed (a full disk): the database must be closed
    /// and reopened before it is used again. [`RedbStore`] does that itself.
    #[error("store needs reopening after an earlier I/O failure: {0}")]
    NeedsReopen(String),
}

/// What [`FunctionStore`] methods return: a boxed future, so the trait
/// stays object-safe (the gateway holds an `Arc<dyn FunctionStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The registry contract, the same for every backend; the gateway calls it
/// from async handlers and never wraps it in `spawn_blocking` itself: a
/// backend with blocking I/O (redb) moves that work off the async threads.
///
/// Atomicity and durability: `create` writes the record and the Wasm bytes
/// in one transaction and `delete` removes both in one transaction, and
/// every `Ok` from either means committed and durable (fsynced), so every
/// reader (`get`, `wasm`, `list`, `count`, `export`) sees a function either
/// whole or not at all, before and after a crash. Concurrent calls are
/// serialised by the implementation; none is lost. A `create` whose id
/// exists fails with [`StoreError::AlreadyExists`] and changes nothing.
///
/// Backup and restore go through [`export`](Self::export) and
/// [`import`](Self::import): one byte stream holding the whole store, which
/// the backup module writes into a backup as `functions.redb` and reads back
/// from it. No file paths cross this trait; see ARCHITECTURE.md, "How to add
/// a store backend".
pub trait FunctionStore: Send + Sync + 'static {
    /// Inserts a record and its Wasm bytes in one transaction.
    fn create<'a>(&'a self, record: &'a FunctionRecord, wasm: &'a [u8]) -> StoreFuture<'a, ()>;
    /// Looks a record up by id.
    fn get<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<FunctionRecord>>;
    /// The Wasm bytes of a function.
    fn wasm<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<Vec<u8>>>;
    /// All records of one tenant (`Some`) or of every tenant (`None`), ordered by id.
    fn list<'a>(&'a self, tenant: Option<&'a str>) -> StoreFuture<'a, Vec<FunctionRecord>>;
    /// Removes a function; `Ok(false)` when it did not exist.
    fn delete<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, bool>;
    /// Number of functions stored.
    fn count(&self) -> StoreFuture<'_, u64>;
    /// A consistent copy of the whole store (one snapshot) as a byte stream,
    /// taken while readers and writers continue.
    fn export(&self) -> StoreFuture<'_, StoreExport>;
    /// Loads a stream written by [`export`](Self::export) (of this or any
    /// backend writing the same [`EXPORT_FORMAT`]) into this store, which
    /// must be empty, in one transaction; refuses a stream whose schema this
    /// binary cannot read.
    fn import(&self, stream: ExportStream) -> StoreFuture<'_, ExportInfo>;
}

/// A blocking byte stream: the body of an export or an import.
pub type ExportStream = Box<dyn std::io::Read + Send>;

/// The one export format so far: a redb store file holding the `meta`,
/// `functions` and `wasm` tables of [`schema`]. A backend with its own
/// format names it here and in the backup manifest.
pub const EXPORT_FORMAT: &str = "redb";

/// What an export holds, as a backup manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportInfo {
    /// `schema_version` of the exported store.
    pub schema_version: u32,
    /// `min_reader_version` of the exported store.
    pub min_reader_version: u32,
    /// Number of functions in the export.
    pub function_count: u64,
}

/// One export: what it holds and the stream itself.
pub struct StoreExport {
    /// Schema numbers and function count of the stream.
    pub info: ExportInfo,
    /// The whole store, in [`EXPORT_FORMAT`]; read it to its end.
    pub stream: ExportStream,
}

impl std::fmt::Debug for StoreExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreExport")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}
