//! Snapshot files on disk: atomic writes and the `<data>/snapshots/` directory.
//!
//! Crash safety: files are written with [`tensor_wasm_fs::durable`] (a temp
//! file starting with `.` in the destination directory, fsynced, renamed
//! over its final name, the directory fsynced). A killed writer therefore
//! leaves either nothing, or a dot-named temp file that [`SnapshotDir::list`]
//! ignores, never a partial file under a final name; and even a file cut
//! short by other means (a partial copy) fails the length and checksum
//! checks in [`crate::format`]. Where the folder is, and what the files are
//! called, is the data dir's layout ([`tensor_wasm_fs::DataDir`]).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;

use crate::error::SnapshotError;
use tensor_wasm_fs::{DataDir, durable, names};

use crate::format::{self, FIXED_HEADER_LEN, Progress, SnapshotHeader, VerifyPolicy};
use crate::state::{Snapshot, hex};

/// Name of the signing key file inside the data directory.
pub const SIGNING_KEY_FILE: &str = names::SIGNING_KEY;

/// Writes `bytes` to `path` atomically and durably ([`durable::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    durable::write_atomic(path, bytes).map_err(|e| SnapshotError::io(path, e))
}

/// Reads a whole snapshot file, reporting progress for large ones.
pub fn read_file(
    path: &Path,
    mut progress: Option<Progress<'_>>,
) -> Result<Vec<u8>, SnapshotError> {
    let file = fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let total = file
        .metadata()
        .map_err(|e| SnapshotError::io(path, e))?
        .len();
    if total > format::MAX_FILE_LEN {
        return Err(SnapshotError::Malformed(format!(
            "file of {total} bytes exceeds the {}-byte cap",
            format::MAX_FILE_LEN
        )));
    }
    // The length can change under us: never read past the cap either way.
    let mut file = file.take(format::MAX_FILE_LEN + 1);
    let mut out = Vec::with_capacity(total.min(64 << 20) as usize);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| SnapshotError::io(path, e))?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if let Some(p) = progress.as_mut() {
            p(out.len() as u64, total);
        }
    }
    Ok(out)
}

/// Reads only the header and metadata of a snapshot file (no checksum, no
/// body): cheap enough for listing many files.
pub fn read_header_file(path: &Path) -> Result<SnapshotHeader, SnapshotError> {
    let mut file = fs::File::open(path).map_err(|e| SnapshotError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| SnapshotError::io(path, e))?
        .len();
    let mut prefix = Vec::with_capacity(FIXED_HEADER_LEN);
    (&mut file)
        .take(FIXED_HEADER_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| SnapshotError::io(path, e))?;
    if prefix.len() == FIXED_HEADER_LEN {
        // Fixed header complete: fetch the metadata it announces.
        let mut len = [0u8; 4];
        len.copy_from_slice(&prefix[120..124]);
        let meta_len = u32::from_le_bytes(len).min(1 << 20);
        (&mut file)
            .take(u64::from(meta_len) + 32 + 64)
            .read_to_end(&mut prefix)
            .map_err(|e| SnapshotError::io(path, e))?;
    }
    format::read_header(&prefix, file_len)
}

/// Loads, verifies and decodes a snapshot file.
pub fn load_file(
    path: &Path,
    policy: &VerifyPolicy,
    mut progress: Option<Progress<'_>>,
) -> Result<Snapshot, SnapshotError> {
    let bytes = match progress.as_mut() {
        Some(p) => read_file(path, Some(&mut **p))?,
        None => read_file(path, None)?,
    };
    format::decode(&bytes, policy, progress)
}

/// Reads an ed25519 signing key: 32 raw bytes, or 64 hex characters.
pub fn load_signing_key(path: &Path) -> Result<SigningKey, SnapshotError> {
    let bytes = fs::read(path).map_err(|e| SnapshotError::SigningKey {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let seed = if bytes.len() == 32 {
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes);
        Some(seed)
    } else {
        std::str::from_utf8(&bytes)
            .ok()
            .and_then(crate::state::parse_hex32)
    };
    seed.map(|s| SigningKey::from_bytes(&s))
        .ok_or_else(|| SnapshotError::SigningKey {
            path: path.to_path_buf(),
            reason: "expected 32 raw bytes or 64 hex characters".into(),
        })
}

/// Generates a new signing key and writes it (hex, mode 0600) to `path`,
/// refusing to overwrite an existing key.
pub fn generate_signing_key(path: &Path) -> Result<SigningKey, SnapshotError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| SnapshotError::SigningKey {
        path: path.to_path_buf(),
        reason: format!("no randomness: {e}"),
    })?;
    // Written whole or not at all, owner-only, never over an existing key.
    durable::write_new(path, format!("{}\n", hex(&seed)).as_bytes()).map_err(|e| {
        SnapshotError::SigningKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// One entry of a directory listing.
#[derive(Debug)]
pub struct ListedSnapshot {
    /// Snapshot id (file stem).
    pub id: String,
    /// Full path.
    pub path: PathBuf,
    /// Header, or why it could not be read.
    pub header: Result<SnapshotHeader, SnapshotError>,
}

/// The `<data>/snapshots/` directory.
#[derive(Debug, Clone)]
pub struct SnapshotDir {
    root: PathBuf,
}

impl SnapshotDir {
    /// The snapshot directory of data directory `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            root: DataDir::new(data_dir).snapshots(),
        }
    }

    /// A snapshot directory at exactly `root`.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Path of snapshot `id` (validated).
    pub fn path_of(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        if !is_valid_id(id) {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        Ok(self.root.join(names::snapshot_file(id)))
    }

    /// Fresh id for a snapshot taken at `created_at_unix_ms`: sortable by
    /// time, with 128 random bits so that no one guesses another's id (the
    /// routes check ownership regardless).
    pub fn new_id(created_at_unix_ms: i64) -> String {
        format!("snap-{created_at_unix_ms:013}-{}", random_hex(16))
    }

    /// Writes `snapshot` under a new id (stored in its metadata) and returns
    /// the id and path.
    pub fn save(
        &self,
        snapshot: &mut Snapshot,
        signer: Option<&SigningKey>,
        progress: Option<Progress<'_>>,
    ) -> Result<(String, PathBuf), SnapshotError> {
        fs::create_dir_all(&self.root).map_err(|e| SnapshotError::io(&self.root, e))?;
        let id = Self::new_id(snapshot.created_at_unix_ms);
        snapshot.meta.snapshot_id = Some(id.clone());
        let path = self.path_of(&id)?;
        let bytes = format::encode(snapshot, signer, progress)?;
        write_atomic(&path, &bytes)?;
        Ok((id, path))
    }

    /// Loads and verifies snapshot `id`.
    pub fn load(
        &self,
        id: &str,
        policy: &VerifyPolicy,
        progress: Option<Progress<'_>>,
    ) -> Result<Snapshot, SnapshotError> {
        let path = self.path_of(id)?;
        if !path.is_file() {
            return Err(SnapshotError::NotFound(id.to_string()));
        }
        load_file(&path, policy, progress)
    }

    /// Deletes snapshot `id`.
    pub fn delete(&self, id: &str) -> Result<(), SnapshotError> {
        let path = self.path_of(id)?;
        match durable::remove(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(SnapshotError::NotFound(id.to_string()))
            }
            Err(e) => Err(SnapshotError::io(path, e)),
        }
    }

    /// Moves a damaged snapshot file aside, to `<root>/quarantine/`, so it is
    /// neither listed nor loaded again but is kept for inspection. Returns
    /// the new path.
    pub fn quarantine(&self, id: &str) -> Result<PathBuf, SnapshotError> {
        let path = self.path_of(id)?;
        let dir = self.root.join(names::QUARANTINE);
        fs::create_dir_all(&dir).map_err(|e| SnapshotError::io(&dir, e))?;
        let to = dir.join(names::snapshot_file(id));
        durable::rename(&path, &to).map_err(|e| SnapshotError::io(&path, e))?;
        Ok(to)
    }

    /// Every `*.tensor-wasm` file, oldest first; temp files (dot-named) are
    /// skipped. A missing directory lists as empty.
    pub fn list(&self) -> Result<Vec<ListedSnapshot>, SnapshotError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(SnapshotError::io(&self.root, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| SnapshotError::io(&self.root, e))?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(id) = names::snapshot_id(name) else {
                continue;
            };
            if !is_valid_id(id) || !path.is_file() {
                continue;
            }
            out.push(ListedSnapshot {
                id: id.to_string(),
                header: read_header_file(&path),
                path,
            });
        }
        out.sort_by(|a, b| {
            let key = |l: &ListedSnapshot| {
                l.header
                    .as_ref()
                    .map(|h| h.created_at_unix_ms)
                    .unwrap_or(i64::MIN)
            };
            key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
        });
        Ok(out)
    }

    /// Readable snapshots whose metadata names `function_id`, oldest first.
    pub fn list_for_function(
        &self,
        function_id: &str,
    ) -> Result<Vec<(String, SnapshotHeader)>, SnapshotError> {
        Ok(self
            .list()?
            .into_iter()
            .filter_map(|l| match l.header {
                Ok(h) if h.meta.function_id.as_deref() == Some(function_id) => Some((l.id, h)),
                _ => None,
            })
            .collect())
    }
}

/// Ids are file stems: ASCII letters, digits, `-`, `_`, `.`; 1–128 chars; not
/// starting with `.` (reserved for temp files). Nothing that walks paths.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    if getrandom::fill(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is what matters here: fall back to the clock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (nanos >> ((i % 4) * 8)) as u8;
        }
    }
    hex(&bytes)
}
