//! [`RedbStore`]: the embedded function store, one redb file in the data dir.
//!
//! Crash safety: redb commits with a two-phase, copy-on-write protocol
//! (pages of the new tree are written and fsynced before the header slot
//! that points to them is switched and fsynced), and every `create` and
//! `delete` here is exactly one write transaction touching both the
//! `functions` and the `wasm` table, committed with the default
//! `Durability::Immediate`. A crash before the commit's final fsync leaves
//! the previous tree in force; after it, the new one; there is no state in
//! between, so a function is never visible without its bytes or the reverse.
//! On the next open redb repairs its allocator state from the last committed
//! tree. Backups copy every table out of a single read transaction (an MVCC
//! snapshot) into a fresh file that is renamed into place only once it is
//! complete and fsynced, so a backup file is either whole or absent. An
//! export is such a copy made beside the store (a scratch file, removed
//! when its stream is dropped; it needs free space the size of the store);
//! an import copies the rows of a checked stream into the store in one
//! write transaction.
//!
//! Sharing with other processes: the server opens the file in redb's
//! [`ConcurrencyMode::SingleWriter`] mode (byte-range locks, redb ≥ 4.5), so
//! that `tensor-wasm backup` in another process can open it read-only *while
//! the server runs* and copy a consistent snapshot; a second writer is still
//! refused. On a file system without byte-range locks the open falls back to
//! the exclusive whole-file lock, and an offline backup must then go through
//! the server's `POST /admin/backup` (which calls
//! [`FunctionStore::export`]). In single-writer mode each read
//! transaction takes two uncontended `fcntl` locks; the registry is read
//! once per deploy or cache miss, not per invocation, so that is noise.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Builder, ConcurrencyMode, Database, DatabaseError, MultimapTableHandle, ReadOnlyDatabase,
    ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata, StorageError,
    TableDefinition, TableError, TableHandle, WriteTransaction,
};

use crate::export::{ScratchPath, SpooledExport, spool};
use crate::schema::{self, Compatibility, MIN_READER_VERSION, SCHEMA_VERSION, SchemaInfo};
use crate::{
    ExportInfo, ExportStream, FunctionId, FunctionRecord, FunctionStore, StoreError, StoreExport,
    StoreFuture,
};

/// File name of the store inside a data dir (see [`tensor_wasm_fs::DataDir`]).
pub const STORE_FILE_NAME: &str = tensor_wasm_fs::names::STORE_FILE;

/// `&str` key → `u32`: `schema_version`, `min_reader_version`.
pub(crate) const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// Function id → JSON-encoded [`FunctionRecord`].
pub(crate) const FUNCTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("functions");
/// Function id → Wasm bytes.
pub(crate) const WASM: TableDefinition<&str, &[u8]> = TableDefinition::new("wasm");

pub(crate) const KEY_SCHEMA_VERSION: &str = "schema_version";
pub(crate) const KEY_MIN_READER_VERSION: &str = "min_reader_version";

/// Every table a schema-1 store holds; a backup refuses a store with others.
const KNOWN_TABLES: [&str; 3] = ["meta", "functions", "wasm"];

/// The embedded, durable [`FunctionStore`]: one redb file.
///
/// After a failed write (a full disk) redb refuses every later operation
/// until the database is reopened; the store does that itself on the next
/// call, so a server recovers once space returns, without a restart
/// (RELIABILITY.md, "Store failures"). Every call runs its redb work on
/// tokio's blocking pool (`spawn_blocking`), so it must be made inside a
/// tokio runtime.
#[derive(Clone)]
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None` while a reopen has failed (retried on the next call); the
    /// number counts reopens, so callers that saw the same failure reopen
    /// once between them, not once each.
    db: std::sync::RwLock<(u64, Option<Database>)>,
    path: PathBuf,
    schema: SchemaInfo,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.inner.path)
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (creating if absent) the store file at `path`, checking its
    /// schema version; refuses a store written by a newer, not
    /// backward-readable schema with [`StoreError::SchemaTooNew`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = open_writer(path)?;
        let schema = init_or_check_schema(&db)?;
        if schema.is_newer_than_binary() {
            tracing::warn!(
                path = %path.display(),
                stored = schema.stored_version,
                supported = SCHEMA_VERSION,
                "function store was written by a newer, backward-readable schema; opening it"
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                db: std::sync::RwLock::new((0, Some(db))),
                path: path.to_path_buf(),
                schema,
            }),
        })
    }

    /// Opens `<data_dir>/functions.redb`, creating the data dir if needed.
    pub fn open_in_data_dir(data_dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Backend(format!("create data dir {}: {e}", data_dir.display()))
        })?;
        Self::open(&tensor_wasm_fs::DataDir::new(data_dir).store_file())
    }

    /// Path of the store file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Schema numbers of the opened store.
    pub fn schema(&self) -> SchemaInfo {
        self.inner.schema
    }

    /// Runs `op` on the database on tokio's blocking pool (see [`Inner::with_db`]).
    fn run<T: Send + 'static>(
        &self,
        op: impl Fn(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'static, T> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || inner.with_db(op))
                .await
                .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
        })
    }
}

impl Inner {
    /// Runs `op` on the database; when redb reports that an earlier I/O
    /// failure poisoned it (or a reopen failed before), closes and reopens
    /// the file first and runs `op` once more.
    fn with_db<T>(&self, op: impl Fn(&Database) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let seen = {
            let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
            if let Some(db) = guard.1.as_ref() {
                match op(db) {
                    Err(StoreError::NeedsReopen(_)) => {}
                    other => return other,
                }
            }
            guard.0
        };
        self.reopen(seen)?;
        let guard = self.db.read().unwrap_or_else(|p| p.into_inner());
        match guard.1.as_ref() {
            Some(db) => op(db),
            None => Err(StoreError::NeedsReopen("reopen failed".into())),
        }
    }

    /// Reopens the file unless another caller already did since `seen`.
    fn reopen(&self, seen: u64) -> Result<(), StoreError> {
        let mut guard = self.db.write().unwrap_or_else(|p| p.into_inner());
        if guard.0 != seen && guard.1.is_some() {
            return Ok(());
        }
        guard.0 += 1;
        // Close first: the open database holds the file's lock.
        guard.1 = None;
        match open_writer(&self.path) {
            Ok(db) => {
                tracing::warn!(path = %self.path.display(),
                    "function store reopened after an I/O failure; writes work again");
                guard.1 = Some(db);
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e,
                    "function store cannot be reopened yet; retrying on the next call");
                Err(StoreError::NeedsReopen(e.to_string()))
            }
        }
    }
}

impl FunctionStore for RedbStore {
    fn create<'a>(&'a self, record: &'a FunctionRecord, wasm: &'a [u8]) -> StoreFuture<'a, ()> {
        let json = match serde_json::to_vec(record) {
            Ok(json) => json,
            Err(e) => {
                let err = StoreError::Backend(format!("encode record {}: {e}", record.id));
                return Box::pin(std::future::ready(Err(err)));
            }
        };
        let id = record.id.clone();
        let wasm = wasm.to_vec();
        self.run(move |db| {
            let key = id.0.as_str();
            let txn = db.begin_write().map_err(backend)?;
            let exists = {
                let mut functions = txn.open_table(FUNCTIONS).map_err(backend)?;
                let exists = functions.get(key).map_err(backend)?.is_some();
                if !exists {
                    functions.insert(key, json.as_slice()).map_err(backend)?;
                    let mut bytes = txn.open_table(WASM).map_err(backend)?;
                    bytes.insert(key, wasm.as_slice()).map_err(backend)?;
                }
                exists
            };
            if exists {
                txn.abort().map_err(backend)?;
                return Err(StoreError::AlreadyExists(id.clone()));
            }
            txn.commit().map_err(backend)
        })
    }

    fn get<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<FunctionRecord>> {
        let id = id.clone();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            get_record(&txn, &id)
        })
    }

    fn wasm<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<Vec<u8>>> {
        let id = id.clone();
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let table = match txn.open_table(WASM) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(backend(e)),
            };
            let bytes = table.get(id.0.as_str()).map_err(backend)?;
            Ok(bytes.map(|guard| guard.value().to_vec()))
        })
    }

    fn list<'a>(&'a self, tenant: Option<&'a str>) -> StoreFuture<'a, Vec<FunctionRecord>> {
        let tenant = tenant.map(str::to_owned);
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            list_records(&txn, tenant.as_deref())
        })
    }

    fn delete<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, bool> {
        let id = id.clone();
        self.run(move |db| {
            let key = id.0.as_str();
            let txn = db.begin_write().map_err(backend)?;
            let existed = {
                let mut functions = txn.open_table(FUNCTIONS).map_err(backend)?;
                let existed = functions.remove(key).map_err(backend)?.is_some();
                let mut bytes = txn.open_table(WASM).map_err(backend)?;
                let had_bytes = bytes.remove(key).map_err(backend)?.is_some();
                existed || had_bytes
            };
            if existed {
                txn.commit().map_err(backend)?;
            } else {
                txn.abort().map_err(backend)?;
            }
            Ok(existed)
        })
    }

    fn count(&self) -> StoreFuture<'_, u64> {
        self.run(|db| {
            let txn = db.begin_read().map_err(backend)?;
            match txn.open_table(FUNCTIONS) {
                Ok(table) => table.len().map_err(backend),
                Err(TableError::TableDoesNotExist(_)) => Ok(0),
                Err(e) => Err(backend(e)),
            }
        })
    }

    fn export(&self) -> StoreFuture<'_, StoreExport> {
        // The copy is spooled beside the store: same file system, and the
        // scratch file is removed when the stream is dropped.
        let dir = scratch_dir(&self.inner.path);
        self.run(move |db| {
            let txn = db.begin_read().map_err(backend)?;
            let info = snapshot_info(&txn)?;
            let scratch = ScratchPath::new_in(&dir, "functions-export");
            copy_snapshot(&txn, scratch.path())?;
            Ok(StoreExport {
                info,
                stream: Box::new(SpooledExport::open(scratch)?),
            })
        })
    }

    fn import(&self, stream: ExportStream) -> StoreFuture<'_, ExportInfo> {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let scratch = spool(stream, &scratch_dir(&inner.path))?;
                let source = redb::ReadOnlyDatabase::open(scratch.path())
                    .map_err(|e| open_error(scratch.path(), e))?;
                let from = source.begin_read().map_err(backend)?;
                let info = readable_export_info(&from)?;
                inner.with_db(|db| {
                    let txn = db.begin_write().map_err(backend)?;
                    {
                        let mut functions = txn.open_table(FUNCTIONS).map_err(backend)?;
                        let mut bytes = txn.open_table(WASM).map_err(backend)?;
                        if !functions.is_empty().map_err(backend)?
                            || !bytes.is_empty().map_err(backend)?
                        {
                            return Err(not_empty());
                        }
                        // This store keeps its own schema numbers: the
                        // stream was checked readable, and rows are copied
                        // as stored. (A later schema migrates rows of an
                        // older stream here, as `open` migrates a file.)
                        copy_rows(&from, FUNCTIONS, &mut functions)?;
                        copy_rows(&from, WASM, &mut bytes)?;
                    }
                    txn.commit().map_err(backend)
                })?;
                Ok(info)
            })
            .await
            .map_err(|e| StoreError::Backend(format!("store task failed: {e}")))?
        })
    }
}

/// The refusal of an import into a store that holds functions.
pub(crate) fn not_empty() -> StoreError {
    StoreError::Backend(
        "import needs an empty store: this one holds functions (restore into a new one)".into(),
    )
}

/// Where scratch copies of the store at `path` go: its own directory.
fn scratch_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Copies every row of `table` in the snapshot `from` into `to`.
fn copy_rows(
    from: &ReadTransaction,
    table: TableDefinition<&str, &[u8]>,
    to: &mut redb::Table<&str, &[u8]>,
) -> Result<(), StoreError> {
    let rows = match from.open_table(table) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(e) => return Err(backend(e)),
    };
    for entry in rows.iter().map_err(backend)? {
        let (k, v) = entry.map_err(backend)?;
        to.insert(k.value(), v.value()).map_err(backend)?;
    }
    Ok(())
}

/// Schema numbers and function count of a snapshot.
pub(crate) fn snapshot_info(txn: &ReadTransaction) -> Result<ExportInfo, StoreError> {
    let (version, min_reader) = read_versions(txn)?;
    let function_count = match txn.open_table(FUNCTIONS) {
        Ok(table) => table.len().map_err(backend)?,
        Err(TableError::TableDoesNotExist(_)) => 0,
        Err(e) => return Err(backend(e)),
    };
    Ok(ExportInfo {
        schema_version: version,
        min_reader_version: min_reader.unwrap_or(version),
        function_count,
    })
}

/// [`snapshot_info`] of an export this binary can read and that holds no
/// table it does not know; what an import checks before copying anything.
pub(crate) fn readable_export_info(txn: &ReadTransaction) -> Result<ExportInfo, StoreError> {
    check_readable(txn)?;
    check_known_tables(txn)?;
    snapshot_info(txn)
}

/// Every `(record, bytes)` of a snapshot, in id order; a record without
/// bytes is corruption.
pub(crate) fn read_all(
    txn: &ReadTransaction,
) -> Result<Vec<(FunctionRecord, Vec<u8>)>, StoreError> {
    let records = list_records(txn, None)?;
    let bytes = match txn.open_table(WASM) {
        Ok(t) => Some(t),
        Err(TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(backend(e)),
    };
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        let wasm = match &bytes {
            Some(t) => t.get(record.id.0.as_str()).map_err(backend)?,
            None => None,
        };
        let wasm = wasm
            .ok_or_else(|| StoreError::Corrupt(format!("record {} has no Wasm bytes", record.id)))?
            .value()
            .to_vec();
        out.push((record, wasm));
    }
    Ok(out)
}

/// Opens the file for writing in single-writer mode (see the module doc),
/// falling back to the exclusive mode where byte-range locks are missing.
fn open_writer(path: &Path) -> Result<Database, StoreError> {
    let shared = Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .create(path);
    match shared {
        Ok(db) => Ok(db),
        Err(DatabaseError::Storage(StorageError::Unsupported)) => {
            tracing::warn!(
                path = %path.display(),
                "file system lacks byte-range locks; function store locked exclusively, \
                 so offline backups must use the server's POST /admin/backup"
            );
            Builder::new().create(path).map_err(|e| open_error(path, e))
        }
        Err(e) => Err(open_error(path, e)),
    }
}

/// Opens the file read-only beside a possibly running single-writer server.
pub(crate) fn open_shared_read_only(path: &Path) -> Result<ReadOnlyDatabase, DatabaseError> {
    Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(path)
}

pub(crate) fn open_error(path: &Path, e: DatabaseError) -> StoreError {
    match e {
        DatabaseError::DatabaseAlreadyOpen | DatabaseError::LockProtocolMismatch => {
            StoreError::Backend(format!(
                "function store {} is already open for writing by another process \
                 (is a tensor-wasm server running on this data dir?)",
                path.display()
            ))
        }
        DatabaseError::Storage(StorageError::Corrupted(msg)) => {
            StoreError::Corrupt(format!("{}: {msg}", path.display()))
        }
        other => StoreError::Backend(format!("open {}: {other}", path.display())),
    }
}

/// Maps any redb error to a [`StoreError`], keeping corruption apart.
pub(crate) fn backend(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(msg),
        redb::Error::PreviousIo => {
            StoreError::NeedsReopen("an earlier write failed (disk full?)".into())
        }
        other => StoreError::Backend(other.to_string()),
    }
}

/// Creates the tables and meta numbers of a fresh store, or checks (and
/// migrates) an existing one, in one write transaction.
fn init_or_check_schema(db: &Database) -> Result<SchemaInfo, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let stored = read_versions_in(&txn)?;
    let info = match stored {
        None => {
            let has_data = txn.list_tables().map_err(backend)?.next().is_some();
            if has_data {
                return Err(StoreError::Corrupt(
                    "store holds tables but no schema version".to_owned(),
                ));
            }
            write_current_versions(&txn)?;
            create_tables(&txn)?;
            txn.commit().map_err(backend)?;
            current_info()
        }
        Some((found, min_reader)) => match schema::check(found, min_reader)? {
            Compatibility::Current => {
                create_tables(&txn)?;
                txn.commit().map_err(backend)?;
                SchemaInfo {
                    stored_version: found,
                    min_reader_version: min_reader.unwrap_or(found),
                    binary_version: SCHEMA_VERSION,
                }
            }
            Compatibility::Migrate { from } => {
                // Each later schema adds its step here, applied in order
                // from `from`; schema 1 is the first, so there is none yet.
                tracing::info!(from, to = SCHEMA_VERSION, "migrating function store schema");
                create_tables(&txn)?;
                write_current_versions(&txn)?;
                txn.commit().map_err(backend)?;
                current_info()
            }
            Compatibility::NewerReadable => {
                // Leave a newer store exactly as its writer marked it.
                txn.abort().map_err(backend)?;
                SchemaInfo {
                    stored_version: found,
                    min_reader_version: min_reader.unwrap_or(found),
                    binary_version: SCHEMA_VERSION,
                }
            }
        },
    };
    Ok(info)
}

fn current_info() -> SchemaInfo {
    SchemaInfo {
        stored_version: SCHEMA_VERSION,
        min_reader_version: MIN_READER_VERSION,
        binary_version: SCHEMA_VERSION,
    }
}

fn create_tables(txn: &WriteTransaction) -> Result<(), StoreError> {
    txn.open_table(FUNCTIONS).map_err(backend)?;
    txn.open_table(WASM).map_err(backend)?;
    Ok(())
}

fn write_current_versions(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut meta = txn.open_table(META).map_err(backend)?;
    meta.insert(KEY_SCHEMA_VERSION, SCHEMA_VERSION)
        .map_err(backend)?;
    meta.insert(KEY_MIN_READER_VERSION, MIN_READER_VERSION)
        .map_err(backend)?;
    Ok(())
}

/// `(schema_version, min_reader_version)` from a write transaction; `None`
/// for a file without a meta table (a fresh one).
fn read_versions_in(txn: &WriteTransaction) -> Result<Option<(u32, Option<u32>)>, StoreError> {
    let exists = txn
        .list_tables()
        .map_err(backend)?
        .any(|t| t.name() == META.name());
    if !exists {
        return Ok(None);
    }
    let meta = txn.open_table(META).map_err(backend)?;
    let version = meta
        .get(KEY_SCHEMA_VERSION)
        .map_err(backend)?
        .map(|v| v.value());
    let min_reader = meta
        .get(KEY_MIN_READER_VERSION)
        .map_err(backend)?
        .map(|v| v.value());
    match version {
        Some(v) => Ok(Some((v, min_reader))),
        None => Err(StoreError::Corrupt(
            "store meta table has no schema_version".to_owned(),
        )),
    }
}

/// `(schema_version, min_reader_version)` of a snapshot, for checks made on
/// read-only handles (backup, restore).
pub(crate) fn read_versions(txn: &ReadTransaction) -> Result<(u32, Option<u32>), StoreError> {
    let meta = match txn.open_table(META) {
        Ok(meta) => meta,
        Err(TableError::TableDoesNotExist(_)) => {
            return Err(StoreError::Corrupt(
                "store has no meta table (no schema version)".to_owned(),
            ));
        }
        Err(e) => return Err(backend(e)),
    };
    let version = meta
        .get(KEY_SCHEMA_VERSION)
        .map_err(backend)?
        .map(|v| v.value());
    let min_reader = meta
        .get(KEY_MIN_READER_VERSION)
        .map_err(backend)?
        .map(|v| v.value());
    version
        .map(|v| (v, min_reader))
        .ok_or_else(|| StoreError::Corrupt("store meta table has no schema_version".to_owned()))
}

/// Checks that this binary may open a store with the snapshot's numbers.
pub(crate) fn check_readable(txn: &ReadTransaction) -> Result<SchemaInfo, StoreError> {
    let (found, min_reader) = read_versions(txn)?;
    schema::check(found, min_reader)?;
    Ok(SchemaInfo {
        stored_version: found,
        min_reader_version: min_reader.unwrap_or(found),
        binary_version: SCHEMA_VERSION,
    })
}

fn decode(key: &str, bytes: &[u8]) -> Result<FunctionRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("record {key}: {e}")))
}

fn get_record(
    txn: &ReadTransaction,
    id: &FunctionId,
) -> Result<Option<FunctionRecord>, StoreError> {
    let table = match txn.open_table(FUNCTIONS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(backend(e)),
    };
    let key = id.0.as_str();
    match table.get(key).map_err(backend)? {
        Some(guard) => decode(key, guard.value()).map(Some),
        None => Ok(None),
    }
}

/// Records of one tenant or all, in id order, from one snapshot.
pub(crate) fn list_records(
    txn: &ReadTransaction,
    tenant: Option<&str>,
) -> Result<Vec<FunctionRecord>, StoreError> {
    let table = match txn.open_table(FUNCTIONS) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(backend(e)),
    };
    let mut out = Vec::new();
    for entry in table.iter().map_err(backend)? {
        let (key, value) = entry.map_err(backend)?;
        let record = decode(key.value(), value.value())?;
        if tenant.is_none_or(|t| t == record.tenant) {
            out.push(record);
        }
    }
    Ok(out)
}

/// Refuses a snapshot holding tables this release does not know (written
/// by a newer schema): copying it would drop them.
fn check_known_tables(txn: &ReadTransaction) -> Result<(), StoreError> {
    let unknown: Vec<String> = txn
        .list_tables()
        .map_err(backend)?
        .map(|t| t.name().to_owned())
        .chain(
            txn.list_multimap_tables()
                .map_err(backend)?
                .map(|t| t.name().to_owned()),
        )
        .filter(|name| !KNOWN_TABLES.contains(&name.as_str()))
        .collect();
    if !unknown.is_empty() {
        let (found, _) = read_versions(txn)?;
        return Err(StoreError::Backend(format!(
            "store (schema {found}) holds tables this release (schema {SCHEMA_VERSION}) does not \
             know: {}; back it up with the release that wrote it",
            unknown.join(", ")
        )));
    }
    Ok(())
}

/// Copies every table of a snapshot into a new store file at `dest`.
pub(crate) fn copy_snapshot(txn: &ReadTransaction, dest: &Path) -> Result<(), StoreError> {
    check_known_tables(txn)?;
    write_new_store_file(dest, |out| {
        let meta_in = txn.open_table(META).map_err(backend)?;
        let mut meta_out = out.open_table(META).map_err(backend)?;
        for entry in meta_in.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            meta_out.insert(k.value(), v.value()).map_err(backend)?;
        }
        for table in [FUNCTIONS, WASM] {
            let mut table_out = out.open_table(table).map_err(backend)?;
            let table_in = match txn.open_table(table) {
                Ok(t) => t,
                Err(TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(backend(e)),
            };
            for entry in table_in.iter().map_err(backend)? {
                let (k, v) = entry.map_err(backend)?;
                table_out.insert(k.value(), v.value()).map_err(backend)?;
            }
        }
        Ok(())
    })
}

/// Writes a schema-current store file at `dest` holding the given functions
/// (used by [`MemoryStore`](crate::MemoryStore)'s exports).
pub(crate) fn write_store_file<'a>(
    dest: &Path,
    functions: impl IntoIterator<Item = (&'a FunctionRecord, &'a [u8])>,
) -> Result<(), StoreError> {
    write_new_store_file(dest, |out| {
        write_current_versions(out)?;
        let mut records = out.open_table(FUNCTIONS).map_err(backend)?;
        let mut bytes = out.open_table(WASM).map_err(backend)?;
        for (record, wasm) in functions {
            let json = serde_json::to_vec(record)
                .map_err(|e| StoreError::Backend(format!("encode record {}: {e}", record.id)))?;
            records
                .insert(record.id.0.as_str(), json.as_slice())
                .map_err(backend)?;
            bytes.insert(record.id.0.as_str(), wasm).map_err(backend)?;
        }
        Ok(())
    })
}

/// Builds a store file beside `dest` and renames it into place once it is
/// committed, closed and fsynced, so `dest` is either whole or absent.
fn write_new_store_file(
    dest: &Path,
    fill: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if dest.exists() {
        return Err(StoreError::Backend(format!(
            "backup destination {} already exists",
            dest.display()
        )));
    }
    let file_name = dest
        .file_name()
        .ok_or_else(|| {
            StoreError::Backend(format!(
                "backup destination {} has no file name",
                dest.display()
            ))
        })?
        .to_string_lossy()
        .into_owned();
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let partial = parent.join(format!(".{file_name}.partial-{}", std::process::id()));
    let result = (|| {
        // A leftover from an interrupted backup by a process with our pid.
        let _ = fs::remove_file(&partial);
        let db = Builder::new()
            .create(&partial)
            .map_err(|e| open_error(&partial, e))?;
        let txn = db.begin_write().map_err(backend)?;
        fill(&txn)?;
        txn.commit().map_err(backend)?;
        db.close().map_err(|e| open_error(&partial, e))?;
        sync_file(&partial)?;
        tensor_wasm_fs::durable::rename(&partial, dest).map_err(|e| {
            StoreError::Backend(format!(
                "rename {} to {}: {e}",
                partial.display(),
                dest.display()
            ))
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn sync_file(path: &Path) -> Result<(), StoreError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Backend(format!("fsync {}: {e}", path.display())))
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    tensor_wasm_fs::durable::sync_dir(dir)
        .map_err(|e| StoreError::Backend(format!("fsync directory {}: {e}", dir.display())))
}
