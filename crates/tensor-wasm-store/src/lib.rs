//! Durable function registry.
//!
//! The gateway keeps every deployed function (its metadata and its Wasm
//! bytes) behind the [`FunctionStore`] trait so that a single node can use an
//! embedded database while a fleet can share one (PostgreSQL, later).
//!
//! Invariant: a function is either fully present (record *and* bytes) or
//! absent; no reader ever observes a half-written deploy.
//!
//! What is here:
//! - [`RedbStore`]: the embedded store, one redb file `functions.redb` in the
//!   data dir, carrying a schema version ([`schema`]);
//! - [`MemoryStore`]: the same contract in memory, for other crates' tests;
//! - [`backup`]: consistent copies of a data dir (store, snapshots, audit
//!   key) with a checksummed manifest, and their restore.
//!
//! What is not: caching, id generation, authorisation. The gateway decides
//! who may see a record; the store only filters by tenant when asked.

use serde::{Deserialize, Serialize};

pub mod backup;
mod memory;
mod redb_store;
pub mod schema;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;

pub use memory::MemoryStore;
pub use redb_store::{RedbStore, STORE_FILE_NAME};
pub use schema::{MIN_READER_VERSION, SCHEMA_VERSION, SchemaInfo};

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

/// The registry contract. Implementations must make `create` and `delete`
/// atomic and durable when they return `Ok` (committed and fsynced).
///
/// Atomicity: `create` writes the record and the Wasm bytes in one
/// transaction and `delete` removes both in one transaction, so every reader
/// (`get`, `wasm`, `list`, `count`, `backup_to`) sees a function either
/// whole or not at all. Concurrent calls are serialised by the
/// implementation; none is lost. A `create` whose id exists fails with
/// [`StoreError::AlreadyExists`] and changes nothing.
pub trait FunctionStore: Send + Sync + 'static {
    /// Inserts a record and its Wasm bytes in one transaction.
    fn create(&self, record: &FunctionRecord, wasm: &[u8]) -> Result<(), StoreError>;
    /// Looks a record up by id.
    fn get(&self, id: &FunctionId) -> Result<Option<FunctionRecord>, StoreError>;
    /// The Wasm bytes of a function.
    fn wasm(&self, id: &FunctionId) -> Result<Option<Vec<u8>>, StoreError>;
    /// All records of one tenant (`Some`) or of every tenant (`None`), ordered by id.
    fn list(&self, tenant: Option<&str>) -> Result<Vec<FunctionRecord>, StoreError>;
    /// Removes a function; `Ok(false)` when it did not exist.
    fn delete(&self, id: &FunctionId) -> Result<bool, StoreError>;
    /// Number of functions stored.
    fn count(&self) -> Result<u64, StoreError>;
    /// Writes a consistent copy of the whole store into `dest` (a file path
    /// that must not exist yet) while readers and writers continue.
    fn backup_to(&self, dest: &std::path::Path) -> Result<(), StoreError>;
}
