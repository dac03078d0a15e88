//! [`MemoryStore`]: the [`FunctionStore`] contract held in memory, for tests
//! of other crates. Not durable; one lock makes every call atomic.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock};

use crate::redb_store::write_store_file;
use crate::{FunctionId, FunctionRecord, FunctionStore, StoreError};

/// In-memory [`FunctionStore`]; `backup_to` writes a real redb store file.
#[derive(Debug, Default)]
pub struct MemoryStore {
    // Every map operation completes before the guard drops, so the data
    // behind a poisoned lock is still consistent and is used as is.
    functions: RwLock<BTreeMap<FunctionId, (FunctionRecord, Vec<u8>)>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl FunctionStore for MemoryStore {
    fn create(&self, record: &FunctionRecord, wasm: &[u8]) -> Result<(), StoreError> {
        let mut map = self
            .functions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if map.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists(record.id.clone()));
        }
        map.insert(record.id.clone(), (record.clone(), wasm.to_vec()));
        Ok(())
    }

    fn get(&self, id: &FunctionId) -> Result<Option<FunctionRecord>, StoreError> {
        let map = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(id).map(|(record, _)| record.clone()))
    }

    fn wasm(&self, id: &FunctionId) -> Result<Option<Vec<u8>>, StoreError> {
        let map = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(id).map(|(_, wasm)| wasm.clone()))
    }

    fn list(&self, tenant: Option<&str>) -> Result<Vec<FunctionRecord>, StoreError> {
        let map = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(map
            .values()
            .filter(|(record, _)| tenant.is_none_or(|t| t == record.tenant))
            .map(|(record, _)| record.clone())
            .collect())
    }

    fn delete(&self, id: &FunctionId) -> Result<bool, StoreError> {
        let mut map = self
            .functions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(map.remove(id).is_some())
    }

    fn count(&self) -> Result<u64, StoreError> {
        let map = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(map.len() as u64)
    }

    fn backup_to(&self, dest: &Path) -> Result<(), StoreError> {
        let map = self
            .functions
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        write_store_file(
            dest,
            map.values().map(|(record, wasm)| (record, wasm.as_slice())),
        )
    }
}
