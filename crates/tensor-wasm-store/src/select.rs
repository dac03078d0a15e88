//! [`StoreChoice`]: which backend holds the registry, parsed from the
//! binary's `--store` flag (`TENSOR_WASM_STORE`), and opening it.
//!
//! One place knows every backend: a new one adds a variant, a parse rule
//! and an arm in [`StoreChoice::open`]; nothing else in the workspace names
//! a backend type.

use std::path::Path;
use std::sync::Arc;

use crate::{FunctionStore, RedbStore, StoreError};

/// The store backends this binary can open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreChoice {
    /// The embedded default: `functions.redb` in the data dir.
    #[default]
    Redb,
    // A shared PostgreSQL for replicas goes here as `Postgres(url)`, parsed
    // from `postgres://…` / `postgresql://…` (its password redacted in
    // `Display` and in the debug-printed configuration).
}

/// A `--store` value no backend answers to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown function store `{0}`: use `redb` (the embedded default, functions.redb in the \
     data dir); a PostgreSQL URL (postgres://…) is not supported yet"
)]
pub struct UnknownStore(pub String);

impl std::str::FromStr for StoreChoice {
    type Err = UnknownStore;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value.trim() {
            "redb" => Ok(Self::Redb),
            _ => Err(UnknownStore(redact(value.trim()))),
        }
    }
}

impl std::fmt::Display for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redb => f.write_str("redb"),
        }
    }
}

impl StoreChoice {
    /// Opens the chosen store for a server whose data dir is `data_dir`
    /// (created owner-only if absent; the embedded store lives in it).
    pub async fn open(&self, data_dir: &Path) -> Result<Arc<dyn FunctionStore>, StoreError> {
        match self {
            Self::Redb => {
                let data_dir = data_dir.to_path_buf();
                let store = tokio::task::spawn_blocking(move || {
                    let data = tensor_wasm_fs::DataDir::new(&data_dir);
                    data.create().map_err(|e| {
                        StoreError::Backend(format!("create data dir {}: {e}", data_dir.display()))
                    })?;
                    RedbStore::open(&data.store_file())
                })
                .await
                .map_err(|e| StoreError::Backend(format!("store open task failed: {e}")))??;
                Ok(Arc::new(store))
            }
        }
    }
}

/// A value echoed in an error keeps no password (`scheme://user:secret@…`).
fn redact(value: &str) -> String {
    match (value.find("://"), value.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &value[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &value[..scheme_end + 3],
                    &userinfo[..colon],
                    &value[at..]
                ),
                None => value.to_owned(),
            }
        }
        _ => value.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redb_parses_and_prints_back() {
        let choice: StoreChoice = "redb".parse().expect("redb");
        assert_eq!(choice, StoreChoice::Redb);
        assert_eq!(choice.to_string(), "redb");
        assert_eq!(StoreChoice::default(), StoreChoice::Redb);
    }

    #[test]
    fn unknown_store_is_refused_with_the_choices_and_no_password() {
        let err = "postgres://app:hunter2@db:5432/tw"
            .parse::<StoreChoice>()
            .expect_err("not yet");
        let msg = err.to_string();
        assert!(msg.contains("postgres://app:***@db:5432/tw"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("`redb`"), "{msg}");
        assert!("sqlite".parse::<StoreChoice>().is_err());
        assert!("".parse::<StoreChoice>().is_err());
    }

    #[tokio::test]
    async fn redb_choice_opens_the_store_file_in_a_new_data_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let store = StoreChoice::Redb.open(&data).await.expect("open");
        assert_eq!(store.count().await.expect("count"), 0);
        assert!(data.join(crate::STORE_FILE_NAME).is_file());
    }
}
