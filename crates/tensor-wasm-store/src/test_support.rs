//! Test-only helpers (feature `test-support`): make a store look as if a
//! newer release had written it, to drill rollbacks.

use std::path::Path;

use redb::Builder;

use crate::StoreError;
use crate::redb_store::{KEY_MIN_READER_VERSION, KEY_SCHEMA_VERSION, META, backend, open_error};

/// Rewrites the schema numbers of the closed store file at `path`:
/// `schema_version` to `version`, and `min_reader_version` to
/// `min_reader_version` (`None` removes it: "not backward-readable").
pub fn rewrite_schema(
    path: &Path,
    version: u32,
    min_reader_version: Option<u32>,
) -> Result<(), StoreError> {
    let db = Builder::new().open(path).map_err(|e| open_error(path, e))?;
    let txn = db.begin_write().map_err(backend)?;
    {
        let mut meta = txn.open_table(META).map_err(backend)?;
        meta.insert(KEY_SCHEMA_VERSION, version).map_err(backend)?;
        match min_reader_version {
            Some(min) => {
                meta.insert(KEY_MIN_READER_VERSION, min).map_err(backend)?;
            }
            None => {
                meta.remove(KEY_MIN_READER_VERSION).map_err(backend)?;
            }
        }
    }
    txn.commit().map_err(backend)?;
    db.close().map_err(|e| open_error(path, e))
}
