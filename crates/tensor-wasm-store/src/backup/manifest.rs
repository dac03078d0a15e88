//! `MANIFEST.json`: what a backup holds, and the checks that make restore
//! trust nothing else (allowed paths only, size and BLAKE3 of every file).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{AUDIT_KEY_FILE_NAME, BackupError, SIGNING_KEY_FILE_NAME, SNAPSHOTS_DIR, io_err};
use crate::StoreError;
use crate::redb_store::STORE_FILE_NAME;

/// Name of the manifest file in a backup directory.
pub const MANIFEST_FILE_NAME: &str = "MANIFEST.json";

/// Version of the manifest format this binary writes and reads.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// What a backup holds; stored as `MANIFEST.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupManifest {
    /// [`MANIFEST_FORMAT_VERSION`] of the writer.
    pub format_version: u32,
    /// Release that took the backup.
    pub tensor_wasm_version: String,
    /// `schema_version` stored in the copied function store.
    pub store_schema_version: u32,
    /// `min_reader_version` stored in the copied function store.
    pub store_min_reader_version: u32,
    /// RFC 3339 time the backup was taken (UTC).
    pub created_at: String,
    /// Number of functions in the copied store.
    pub function_count: u64,
    /// Every file of the backup except the manifest.
    pub files: Vec<ManifestFile>,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Path relative to the backup (and data) dir, `/`-separated.
    pub path: String,
    /// Length in bytes.
    pub size_bytes: u64,
    /// Lower-case hex BLAKE3 of the contents.
    pub blake3: String,
}

pub(super) fn is_snapshot_name(name: &str) -> bool {
    tensor_wasm_fs::names::snapshot_id(name).is_some()
}

/// Only the store, the audit key and `snapshots/<name>.tensor-wasm` may
/// appear in a manifest: nothing can make restore write elsewhere.
fn is_allowed_manifest_path(path: &str) -> bool {
    path == STORE_FILE_NAME
        || path == AUDIT_KEY_FILE_NAME
        || path == SIGNING_KEY_FILE_NAME
        || path
            .strip_prefix(SNAPSHOTS_DIR)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(is_snapshot_name)
}

pub(super) fn read_manifest(from_dir: &Path) -> Result<BackupManifest, BackupError> {
    let path = from_dir.join(MANIFEST_FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(BackupError::NotABackup(from_dir.to_path_buf()));
        }
        Err(e) => return Err(io_err("read", &path)(e)),
    };
    let bad = |reason: String| BackupError::Manifest {
        path: path.clone(),
        reason,
    };
    // Check the version before the shape, so a newer manifest gets the
    // message that says so rather than a parse error.
    let version = serde_json::from_slice::<serde_json::Value>(&bytes)
        .map_err(|e| bad(format!("not JSON: {e}")))?
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| bad("no format_version".to_owned()))?;
    if version > u64::from(MANIFEST_FORMAT_VERSION) {
        return Err(bad(format!(
            "format version {version} is newer than this binary reads ({MANIFEST_FORMAT_VERSION}); \
             restore with the release that took the backup"
        )));
    }
    let manifest: BackupManifest =
        serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if let Some(file) = manifest
        .files
        .iter()
        .find(|f| !is_allowed_manifest_path(&f.path))
    {
        return Err(bad(format!("lists a file it must not: {:?}", file.path)));
    }
    let mut paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    paths.sort_unstable();
    if paths.windows(2).any(|w| w[0] == w[1]) {
        return Err(bad("lists a file twice".to_owned()));
    }
    if !paths.contains(&STORE_FILE_NAME) {
        return Err(bad(format!("does not list {STORE_FILE_NAME}")));
    }
    Ok(manifest)
}

pub(super) fn write_manifest(to_dir: &Path, manifest: &BackupManifest) -> Result<(), BackupError> {
    let path = to_dir.join(MANIFEST_FILE_NAME);
    let mut json = serde_json::to_vec_pretty(manifest)
        .map_err(|e| BackupError::Store(StoreError::Backend(format!("encode manifest: {e}"))))?;
    json.push(b'\n');
    tensor_wasm_fs::durable::write_atomic(&path, &json).map_err(io_err("write", &path))
}

pub(super) fn check_entry(file: &ManifestFile, size: u64, hash: &str) -> Result<(), BackupError> {
    if size == file.size_bytes && hash == file.blake3 {
        Ok(())
    } else {
        Err(BackupError::ChecksumMismatch {
            file: file.path.clone(),
            expected: format!("{} bytes, blake3 {}", file.size_bytes, file.blake3),
            found: format!("{size} bytes, blake3 {hash}"),
        })
    }
}

/// Copies `src` to a new file `dst`, fsyncs it, and returns the size and
/// BLAKE3 of the bytes written.
pub(super) fn copy_hashed(src: &Path, dst: &Path) -> io::Result<(u64, String)> {
    let mut input = File::open(src)?;
    let mut output = OpenOptions::new().write(true).create_new(true).open(dst)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
        size += n as u64;
    }
    output.sync_all()?;
    Ok((size, hasher.finalize().to_hex().to_string()))
}

pub(super) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    let mut input = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let size = io::copy(&mut input, &mut hasher)?;
    Ok((size, hasher.finalize().to_hex().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_paths_cannot_escape_the_data_dir() {
        assert!(is_allowed_manifest_path("functions.redb"));
        assert!(is_allowed_manifest_path("audit.key"));
        assert!(is_allowed_manifest_path("snapshot-signing.key"));
        assert!(is_allowed_manifest_path("snapshots/add.tensor-wasm"));
        assert!(!is_allowed_manifest_path("snapshots/../x.tensor-wasm"));
        assert!(!is_allowed_manifest_path("snapshots/a/b.tensor-wasm"));
        assert!(!is_allowed_manifest_path("../functions.redb"));
        assert!(!is_allowed_manifest_path("/etc/passwd"));
        assert!(!is_allowed_manifest_path("snapshots/.tensor-wasm"));
        assert!(!is_allowed_manifest_path("snapshots/x.txt"));
    }
}
