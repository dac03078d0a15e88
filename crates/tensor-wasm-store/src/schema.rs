//! Schema versions of the durable store and the rule that decides whether a
//! binary may open a store another release wrote.
//!
//! Every store records two numbers in its `meta` table:
//!
//! - `schema_version`: the schema the newest binary that wrote it uses;
//! - `min_reader_version`: the oldest binary schema that may open it and keep
//!   using it (read *and* write) without misreading or damaging it. A writer
//!   whose change older binaries can safely ignore (a new optional JSON field
//!   with a serde default, a new table they never touch) keeps this low; a
//!   change they would misread raises it to the new version.
//!
//! A binary supporting schema `S` opens a store with `schema_version = F`
//! when `F <= S` (migrating it forward if `F < S`), or when `F > S` and
//! `min_reader_version <= S` (the newer release declared itself
//! backward-readable). Otherwise it refuses with
//! [`StoreError::SchemaTooNew`], naming both versions. An older binary never
//! lowers the stored numbers, so a store that went forward stays marked as
//! such. `STORE-COMPATIBILITY.md` at the repository root lists the versions.

use crate::StoreError;

/// Schema version this binary writes.
///
/// 1: tables `meta` (`&str → u32`), `functions` (id → JSON
/// [`FunctionRecord`](crate::FunctionRecord)), `wasm` (id → bytes).
pub const SCHEMA_VERSION: u32 = 1;

/// Oldest binary schema that may open a store this binary writes; stored as
/// `min_reader_version`.
pub const MIN_READER_VERSION: u32 = 1;

/// Oldest stored schema this binary still opens (migrating it forward).
pub const OLDEST_MIGRATABLE_VERSION: u32 = 1;

/// The schema numbers of an opened store, for `/readyz` and `observe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaInfo {
    /// `schema_version` stored in the file (after any migration).
    pub stored_version: u32,
    /// `min_reader_version` stored in the file.
    pub min_reader_version: u32,
    /// [`SCHEMA_VERSION`] of this binary.
    pub binary_version: u32,
}

impl SchemaInfo {
    /// True when the store was written by a newer, backward-readable schema.
    pub fn is_newer_than_binary(&self) -> bool {
        self.stored_version > self.binary_version
    }
}

/// What opening a store with the given stored numbers requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compatibility {
    /// Same schema: open as is.
    Current,
    /// Older schema: migrate from `from` to [`SCHEMA_VERSION`] in the open's
    /// write transaction.
    Migrate { from: u32 },
    /// Newer schema that declares this binary a sufficient reader: open
    /// without touching the stored numbers.
    NewerReadable,
}

/// Decides whether a binary at [`SCHEMA_VERSION`] may open a store whose
/// meta table holds `found` and `min_reader` (absent in stores whose writer
/// declared nothing: then only binaries at `found` or newer qualify).
pub(crate) fn check(found: u32, min_reader: Option<u32>) -> Result<Compatibility, StoreError> {
    check_against(SCHEMA_VERSION, found, min_reader)
}

fn check_against(
    supported: u32,
    found: u32,
    min_reader: Option<u32>,
) -> Result<Compatibility, StoreError> {
    if found == supported {
        return Ok(Compatibility::Current);
    }
    if found < supported {
        if found < OLDEST_MIGRATABLE_VERSION {
            return Err(StoreError::Corrupt(format!(
                "store schema version {found} predates the oldest this binary migrates \
                 ({OLDEST_MIGRATABLE_VERSION})"
            )));
        }
        return Ok(Compatibility::Migrate { from: found });
    }
    match min_reader {
        Some(min) if min <= supported => Ok(Compatibility::NewerReadable),
        _ => Err(StoreError::SchemaTooNew { found, supported }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_version_opens_as_is() {
        assert_eq!(
            check_against(3, 3, Some(1)).ok(),
            Some(Compatibility::Current)
        );
    }

    #[test]
    fn older_version_is_migrated() {
        assert_eq!(
            check_against(3, 2, None).ok(),
            Some(Compatibility::Migrate { from: 2 })
        );
    }

    #[test]
    fn newer_version_without_declaration_is_refused_naming_both_versions() {
        let err = check_against(1, 2, None).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("version 2"), "{msg}");
        assert!(msg.contains("up to 1"), "{msg}");
    }

    #[test]
    fn newer_version_requiring_a_newer_reader_is_refused() {
        assert!(matches!(
            check_against(1, 3, Some(2)),
            Err(StoreError::SchemaTooNew {
                found: 3,
                supported: 1
            })
        ));
    }

    #[test]
    fn newer_backward_readable_version_opens() {
        assert_eq!(
            check_against(1, 2, Some(1)).ok(),
            Some(Compatibility::NewerReadable)
        );
    }

    #[test]
    fn version_zero_is_not_a_schema() {
        assert!(matches!(
            check_against(1, 0, None),
            Err(StoreError::Corrupt(_))
        ));
    }
}
