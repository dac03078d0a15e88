//! [`MemoryStore`]: the [`FunctionStore`] contract held in memory, for tests
//! of other crates and as a second backend in the shared contract tests.
//! Not durable; one lock makes every call atomic.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};

use redb::ReadableDatabase;

use crate::export::{ScratchPath, SpooledExport, spool};
use crate::redb_store::{
    backend, not_empty, open_error, read_all, readable_export_info, write_store_file,
};
use crate::schema::{MIN_READER_VERSION, SCHEMA_VERSION};
use crate::{
    ExportInfo, ExportStream, FunctionId, FunctionRecord, FunctionStore, StoreError, StoreExport,
    StoreFuture,
};

type FunctionMap = BTreeMap<FunctionId, (FunctionRecord, Vec<u8>)>;

/// In-memory [`FunctionStore`]; its export is a real redb store file
/// ([`EXPORT_FORMAT`](crate::EXPORT_FORMAT)), like [`RedbStore`](crate::RedbStore)'s.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // Every map operation completes before the guard drops, so the data
    // behind a poisoned lock is still consistent and is used as is.
    functions: RwLock<FunctionMap>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl MemoryStore {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, FunctionMap> {
        self.functions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, FunctionMap> {
        self.functions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

// Each call does its work in one poll; no lock guard lives across an `.await`.
impl FunctionStore for MemoryStore {
    fn create<'a>(&'a self, record: &'a FunctionRecord, wasm: &'a [u8]) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let mut map = self.write();
            if map.contains_key(&record.id) {
                return Err(StoreError::AlreadyExists(record.id.clone()));
            }
            map.insert(record.id.clone(), (record.clone(), wasm.to_vec()));
            Ok(())
        })
    }

    fn get<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<FunctionRecord>> {
        Box::pin(async move { Ok(self.read().get(id).map(|(record, _)| record.clone())) })
    }

    fn wasm<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move { Ok(self.read().get(id).map(|(_, wasm)| wasm.clone())) })
    }

    fn list<'a>(&'a self, tenant: Option<&'a str>) -> StoreFuture<'a, Vec<FunctionRecord>> {
        Box::pin(async move {
            Ok(self
                .read()
                .values()
                .filter(|(record, _)| tenant.is_none_or(|t| t == record.tenant))
                .map(|(record, _)| record.clone())
                .collect())
        })
    }

    fn delete<'a>(&'a self, id: &'a FunctionId) -> StoreFuture<'a, bool> {
        Box::pin(async move { Ok(self.write().remove(id).is_some()) })
    }

    fn count(&self) -> StoreFuture<'_, u64> {
        Box::pin(async move { Ok(self.read().len() as u64) })
    }

    fn export(&self) -> StoreFuture<'_, StoreExport> {
        Box::pin(async move {
            // A test store: its scratch file goes to the temp dir, written
            // inline (no blocking pool needed for test-sized stores).
            let scratch = ScratchPath::new_in(&std::env::temp_dir(), "memory-export");
            let function_count = {
                let map = self.read();
                write_store_file(
                    scratch.path(),
                    map.values().map(|(record, wasm)| (record, wasm.as_slice())),
                )?;
                map.len() as u64
            };
            Ok(StoreExport {
                info: ExportInfo {
                    schema_version: SCHEMA_VERSION,
                    min_reader_version: MIN_READER_VERSION,
                    function_count,
                },
                stream: Box::new(SpooledExport::open(scratch)?),
            })
        })
    }

    fn import(&self, stream: ExportStream) -> StoreFuture<'_, ExportInfo> {
        Box::pin(async move {
            let scratch = spool(stream, &std::env::temp_dir())?;
            let (info, functions) = {
                let source = redb::ReadOnlyDatabase::open(scratch.path())
                    .map_err(|e| open_error(scratch.path(), e))?;
                let txn = source.begin_read().map_err(backend)?;
                (readable_export_info(&txn)?, read_all(&txn)?)
            };
            let mut map = self.write();
            if !map.is_empty() {
                return Err(not_empty());
            }
            map.extend(
                functions
                    .into_iter()
                    .map(|(record, wasm)| (record.id.clone(), (record, wasm))),
            );
            Ok(info)
        })
    }
}
